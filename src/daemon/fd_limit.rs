//! The open-file limit at start, as Squid's: the soft RLIMIT_NOFILE is
//! raised to the hard limit (10,000 clients need 10,000 sockets, and a
//! distribution's default soft limit is often 1024), or set to
//! `max_filedescriptors N`, at most the hard limit.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Where the kernel caps an unlimited hard limit for open files.
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// Sets the soft open-file limit for `configured` (0 = the hard limit) and
/// returns the limit in force, or why it could not be changed.
pub(super) fn raise(configured: u32) -> Result<u64, String> {
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit still stops at nr_open for open files.
    let hard = match limit.maximum {
        Some(hard) => hard,
        None => std::fs::read_to_string(NR_OPEN)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("cannot read {NR_OPEN}"))?,
    };
    let wanted = match configured {
        0 => hard,
        n => u64::from(n).min(hard),
    };
    if limit.current == Some(wanted) {
        return Ok(wanted);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(wanted),
            maximum: limit.maximum,
        },
    )
    .map_err(|e| format!("cannot set the open-file limit to {wanted}: {e}"))?;
    Ok(wanted)
}
