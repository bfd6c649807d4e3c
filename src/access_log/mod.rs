//! Squid-format access.log: one `Entry` per transaction, formatted in Squid's native `squid` logformat byte for byte, written by a `Logger` built from squid.conf's `access_log` lines.
//!
//! Layer 2 of DESIGN.md: imports only `config`. The ACLs of an
//! `access_log` line are evaluated by the caller (see [`Logger::log_if`]).
//!
//! - [`codes`]: result codes (`TCP_MISS`, `UDP_HIT`, `_CF`, `_ABORTED`, ...)
//!   and hierarchy codes (`HIER_DIRECT`, `TIMEOUT_`, `/peer`).
//! - [`Entry`] and [`write_native`]: the line (squid-spec.md section 7).
//! - [`Logger`]: destinations, the non-blocking queue, the writer thread,
//!   reopening for log rotation.

pub mod codes;
mod entry;
mod logger;

#[cfg(test)]
mod fixture_tests;

pub use codes::{Hierarchy, HierarchyCode, ResultCode, ResultTag, UnknownCode};
pub use entry::{mask_manager_password, write_native, Entry, FormatOptions, MASKED_PASSWORD};
pub use logger::{
    rotate_file_names, LineBatch, LogError, LogStats, Logger, LoggerOptions,
    SQUID_DEFAULT_ACCESS_LOG,
};
