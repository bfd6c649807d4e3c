//! Peer names to addresses, resolved by the daemon (asynchronously, with
//! tokio's resolver) before a peer table is built: building a table never
//! touches DNS. A name that does not resolve leaves its peer without an
//! ICP address, so it is never queried (as before: Squid waits for DNS).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;

/// The resolved ICP address of every `cache_peer` host named by a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerAddrs(HashMap<(String, u16), SocketAddr>);

impl PeerAddrs {
    /// No names resolved: peers given by address still get theirs.
    pub fn literal_only() -> PeerAddrs {
        PeerAddrs::default()
    }

    /// Resolves the host of every peer of `config` that has an ICP port
    /// and is named rather than given by address (first address wins).
    pub async fn resolve(config: &Config) -> PeerAddrs {
        let mut out = HashMap::new();
        for peer in &config.cache_peers {
            let p = &peer.value;
            let bare = bare_host(&p.host);
            if p.icp_port == 0 || bare.parse::<IpAddr>().is_ok() {
                continue;
            }
            let key = (bare.to_ascii_lowercase(), p.icp_port);
            if out.contains_key(&key) {
                continue;
            }
            match tokio::net::lookup_host((bare, p.icp_port)).await {
                Ok(mut addrs) => {
                    if let Some(addr) = addrs.next() {
                        out.insert(key, addr);
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %p.name, host = bare, error = %e, "cache_peer name does not resolve");
                }
            }
        }
        PeerAddrs(out)
    }

    /// The ICP address of `host`:`port`; `None` without a port, or for a
    /// name that did not resolve.
    pub fn icp_addr(&self, host: &str, port: u16) -> Option<SocketAddr> {
        if port == 0 {
            return None;
        }
        let bare = bare_host(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, port));
        }
        self.0.get(&(bare.to_ascii_lowercase(), port)).copied()
    }
}

fn bare_host(host: &str) -> &str {
    host.trim_matches(['[', ']'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::select::tests::config;

    #[tokio::test]
    async fn names_are_resolved_ahead_and_an_unresolved_one_has_no_address() {
        let c = config(
            "cache_peer localhost sibling 3128 3130 name=a\n\
             cache_peer nonexistent.invalid sibling 3128 3130 name=b\n\
             cache_peer 127.0.0.9 sibling 3128 3130 name=c\n",
        );
        let addrs = PeerAddrs::resolve(&c).await;
        assert!(addrs
            .icp_addr("localhost", 3130)
            .is_some_and(|a| a.ip().is_loopback() && a.port() == 3130));
        assert_eq!(addrs.icp_addr("nonexistent.invalid", 3130), None);
        assert_eq!(addrs.icp_addr("localhost", 0), None);
        // Addresses need no resolving; names do.
        let none = PeerAddrs::literal_only();
        assert_eq!(
            none.icp_addr("[127.0.0.9]", 3130),
            Some(SocketAddr::from(([127, 0, 0, 9], 3130)))
        );
        assert_eq!(none.icp_addr("localhost", 3130), None);
    }
}
