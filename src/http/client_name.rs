//! Reverse DNS of client addresses for `srcdomain` ACLs, as Squid's fqdn
//! cache does it: a PTR lookup (no forward confirmation), `none` when it
//! fails. The lookup (getnameinfo, which blocks) runs on tokio's blocking
//! pool, only for a config whose rules reach a `srcdomain` ACL; answers are
//! cached: names for [`FOUND_TTL`], failures for [`FAILED_TTL`] (Squid's
//! negative_dns_ttl default).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a name found is used.
pub const FOUND_TTL: Duration = Duration::from_secs(300);
/// How long a failed lookup is remembered.
pub const FAILED_TTL: Duration = Duration::from_secs(60);
/// Entries kept at most; the cache starts over when full.
const MAX_ENTRIES: usize = 10_000;
/// Squid's name for a client whose lookup failed.
pub const NO_NAME: &str = "none";

type Cache = Mutex<HashMap<IpAddr, (Arc<str>, Instant)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// The client's name (lower-case, no trailing dot), or `none`.
pub async fn lookup(ip: IpAddr) -> Arc<str> {
    let ip = ip.to_canonical();
    let now = Instant::now();
    if let Some((name, expires)) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(&ip) {
        if *expires > now {
            return Arc::clone(name);
        }
    }
    let found = tokio::task::spawn_blocking(move || reverse(ip))
        .await
        .ok()
        .flatten();
    let (name, ttl): (Arc<str>, _) = match found {
        Some(name) => (name.into(), FOUND_TTL),
        None => (NO_NAME.into(), FAILED_TTL),
    };
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    cache.insert(ip, (Arc::clone(&name), now + ttl));
    name
}

/// getnameinfo with NI_NAMEREQD: the PTR name, or `None`.
fn reverse(ip: IpAddr) -> Option<String> {
    let (host, _) = dns_lookup::getnameinfo(&SocketAddr::new(ip, 0), libc::NI_NAMEREQD).ok()?;
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_has_a_name_and_is_cached() {
        // /etc/hosts names 127.0.0.1 (localhost) on every system we run on.
        let name = lookup("127.0.0.1".parse().unwrap()).await;
        assert_ne!(&*name, NO_NAME);
        assert!(cache()
            .lock()
            .unwrap()
            .contains_key(&"127.0.0.1".parse().unwrap()));
    }
}
