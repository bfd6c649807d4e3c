//! The pages about the process's sockets and name caches: filedescriptors (from /proc/net and /proc/self/fd), ipcache and fqdncache.

use std::fmt::Write as _;

use crate::mgr::Sources;

/// A socket of /proc/net/{tcp,udp}{,6}: local, remote, listening.
#[derive(Debug, Clone, Copy)]
struct SocketRow {
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    listening: bool,
    udp: bool,
}

/// `0100007F:0CEA` (IPv4) or 32 hex digits (IPv6, four host-order words)
/// and a port, as /proc/net/* prints addresses.
pub(super) fn proc_addr(text: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = match ip.len() {
        8 => std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_le_bytes()).into(),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            let v6 = std::net::Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(v6.into(), Into::into)
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// The sockets of this network namespace, by inode.
fn sockets() -> std::collections::HashMap<u64, SocketRow> {
    let mut found = std::collections::HashMap::new();
    for (file, udp) in [
        ("/proc/self/net/tcp", false),
        ("/proc/self/net/tcp6", false),
        ("/proc/self/net/udp", true),
        ("/proc/self/net/udp6", true),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            let (Some(local), Some(remote), Ok(inode)) =
                (proc_addr(local), proc_addr(remote), inode.parse())
            else {
                continue;
            };
            // 0A is TCP_LISTEN.
            let listening = !udp && *state == "0A";
            found.insert(
                inode,
                SocketRow {
                    local,
                    remote,
                    listening,
                    udp,
                },
            );
        }
    }
    found
}

/// `filedescriptors`: the process's open descriptors from /proc/self/fd,
/// each as Squid types and describes it as far as cuttle can tell.
/// cuttle keeps no timeouts or per-descriptor byte counts: those are 0.
pub(super) fn filedescriptors(s: &Sources<'_>) -> String {
    let mut o = String::from("Active file descriptors:\n");
    o.push_str("File Type   Tout Nread  * Nwrite * Remote Address        Description\n");
    o.push_str(
        "---- ------ ---- -------- -------- --------------------- ------------------------------\n",
    );
    let mut fds: Vec<(u64, String)> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some((fd, target.display().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    // The directory listing's own descriptor is not the process's.
    let listing = format!("/proc/{}/fd", std::process::id());
    fds.retain(|(_, target)| *target != listing);
    fds.sort();
    let table = sockets();
    let http_ports: Vec<u16> = table
        .values()
        .filter(|r| r.listening)
        .map(|r| r.local.port())
        .collect();
    let icp = s.config.icp_port.value;
    let htcp = s.config.htcp_port.value;
    for (fd, target) in fds {
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        let (kind, address, description) = match inode.and_then(|i| table.get(&i)) {
            Some(r) if r.listening => ("Socket", r.local.to_string(), "HTTP Socket".to_string()),
            Some(r) if r.udp => {
                let port = r.local.port();
                let what = if port != 0 && port == icp {
                    "ICP Socket"
                } else if port != 0 && port == htcp {
                    "HTCP Socket"
                } else {
                    "UDP Socket"
                };
                ("Socket", r.local.to_string(), what.to_string())
            }
            Some(r) if http_ports.contains(&r.local.port()) => (
                "Socket",
                r.remote.to_string(),
                "Client connection".to_string(),
            ),
            Some(r) => (
                "Socket",
                r.remote.to_string(),
                "Server connection".to_string(),
            ),
            None if inode.is_some() => ("Socket", String::new(), "Socket".to_string()),
            None if target.starts_with("pipe:") => ("Pipe", String::new(), target),
            None if target.starts_with('/') => ("File", String::new(), target),
            None => ("Unknown", String::new(), target),
        };
        let _ = writeln!(
            o,
            "{fd:>4} {kind:<6.6} {:>4} {:>7}  {:>7}  {address:<21} {description}",
            0, 0, 0
        );
    }
    o
}

/// `ipcache`: Squid's statistics and table header. cuttle resolves names
/// through the system's resolver and keeps no IP cache: every count is 0.
pub(super) fn ipcache() -> String {
    let mut o = String::from("IP Cache Statistics:\n");
    for (label, pad) in [
        ("Entries Cached:", 2),
        ("Requests:", 1),
        ("Hits:", 12),
        ("Negative Hits:", 7),
        ("Numeric Hits:", 8),
        ("Misses:", 10),
        ("Retrieved A:", 5),
        ("Retrieved AAAA:", 2),
        ("Retrieved CNAME:", 1),
        ("CNAME-Only Response:", 1),
        ("Invalid Request:", 1),
    ] {
        let _ = writeln!(o, "IPcache {label}{:pad$}0", "");
    }
    o.push_str("\n\nIP Cache Contents:\n\n");
    let _ = writeln!(
        o,
        " {:<31.31} {:>3} {:>6} {:>6}  {:>4}",
        "Hostname", "Flg", "lstref", "TTL", "N(b)"
    );
    o
}

/// `fqdncache`: Squid's statistics and table header; cuttle keeps no FQDN
/// cache: every count is 0.
pub(super) fn fqdncache() -> String {
    let mut o = String::from("FQDN Cache Statistics:\n");
    for label in [
        "Entries In Use",
        "Entries Cached",
        "Requests",
        "Hits",
        "Negative Hits",
        "Misses",
    ] {
        let _ = writeln!(o, "FQDNcache {label}: 0");
    }
    o.push_str("FQDN Cache Contents:\n\n");
    let _ = writeln!(
        o,
        "{:<45.45} {:>3} {:>3} {:>3} Hostnames",
        "Address", "Flg", "TTL", "Cnt"
    );
    o
}
