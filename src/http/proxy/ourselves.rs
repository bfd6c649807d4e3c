//! Whether a request names this cache itself: one of its own listening
//! sockets, by name or by address (as a fetch would resolve it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use crate::config::ListenAddr;

use super::{Proxy, Target};

/// Whether `target` names one of this cache's own listening sockets: its
/// port is an http_port's and its host is visible_hostname or
/// unique_hostname, or an address (literal or resolved, as a fetch would
/// resolve it) that http_port accepts on.
pub(super) async fn names_us(proxy: &Proxy, target: &Target) -> bool {
    let ports: Vec<&ListenAddr> = proxy
        .config
        .http_ports
        .iter()
        .filter(|p| p.port == target.port)
        .map(|p| &p.address)
        .collect();
    if ports.is_empty() {
        return false;
    }
    let host = target.host.trim_matches(['[', ']']);
    let is_name = |name: &str| host.eq_ignore_ascii_case(name.trim_end_matches('.'));
    if is_name(&proxy.name)
        || proxy
            .config
            .unique_hostname
            .value
            .as_deref()
            .is_some_and(is_name)
    {
        return true;
    }
    let destinations = resolve(host, target.port).await;
    if destinations.is_empty() {
        return false;
    }
    for address in ports {
        let bound = match address {
            ListenAddr::Any => vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
            ListenAddr::Ip(ip) => vec![*ip],
            ListenAddr::Host(name) => resolve(name, target.port).await,
        };
        if destinations
            .iter()
            .any(|d| bound.iter().any(|b| accepts(*b, *d)))
        {
            return true;
        }
    }
    false
}

/// `host`'s addresses (an address literal as is), none when it does not
/// resolve.
async fn resolve(host: &str, port: u16) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    tokio::net::lookup_host((host, port))
        .await
        .map(|it| it.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// Whether a socket bound to `bound` gets a connection made to
/// `destination` (same port).
fn accepts(bound: IpAddr, destination: IpAddr) -> bool {
    let destination = match destination.to_canonical() {
        // Connecting to 0.0.0.0 or :: reaches this host's loopback.
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        d => d,
    };
    let bound = bound.to_canonical();
    if bound.is_unspecified() {
        is_local(destination)
    } else {
        bound == destination
    }
}

/// Whether `ip` is one of this host's own addresses: loopback, or one the
/// kernel routes locally (a connected UDP socket's source address is the
/// destination itself; nothing is sent).
fn is_local(ip: IpAddr) -> bool {
    if ip.is_loopback() {
        return true;
    }
    let any = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|s| {
            s.connect(SocketAddr::new(ip, 9))?;
            s.local_addr()
        })
        .is_ok_and(|local| local.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn which_sockets_a_destination_reaches() {
        // A specific address: that address, in any spelling.
        assert!(accepts(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(accepts(ip("127.0.0.1"), ip("::ffff:127.0.0.1")));
        assert!(!accepts(ip("127.0.0.1"), ip("127.0.0.2")));
        assert!(!accepts(ip("127.0.0.1"), ip("::1")));
        // 0.0.0.0 and :: as destinations reach loopback.
        assert!(accepts(ip("127.0.0.1"), ip("0.0.0.0")));
        assert!(accepts(ip("::1"), ip("::")));
        assert!(!accepts(ip("127.0.0.3"), ip("0.0.0.0")));
        // A wildcard: every local address, nothing else.
        for wildcard in ["0.0.0.0", "::"] {
            assert!(accepts(ip(wildcard), ip("127.0.0.9")));
            assert!(accepts(ip(wildcard), ip("0.0.0.0")));
            assert!(!accepts(ip(wildcard), ip("192.0.2.77")));
            assert!(!accepts(ip(wildcard), ip("2001:db8::77")));
        }
    }
}
