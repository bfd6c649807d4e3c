//! The mesh discovery task (`mesh_discovery`): announces this node on the
//! multicast group every interval (and at once when its place in the tree
//! changes), listens for the others, measures their RTT with an ICP query
//! each interval, feeds peers::discovery's state machine, and hands the
//! chosen parent and siblings to the serve loop, which rebuilds the peer table with it
//! beside the configured `cache_peer` lines, as a reload does.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cuttle_protocol::discovery::{self, Announcement};
use cuttle_protocol::icp;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::config::{CachePeer, Config, ListenAddr, Located, Location, MeshDiscovery, PeerType};
use crate::http::proxy::Proxy;
use crate::peers::discovery::{peer_configs, MeshView, Node, Tree};
use crate::peers::querier::QuerySockets;
use crate::peers::resolve::PeerAddrs;
use crate::stats::Stats;

/// Where this node's ports listen, as announced: the first http_port's
/// address when it names one, else udp_incoming_address, else none (the
/// others use the datagram's source).
fn own_address(config: &Config) -> Option<IpAddr> {
    let from_port = config.http_ports.first().and_then(|p| match p.address {
        ListenAddr::Ip(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    });
    from_port.or(config
        .udp_incoming_address
        .value
        .filter(|ip| !ip.is_unspecified()))
}

/// This node's name in the tree: unique_hostname, visible_hostname, else
/// the system's host name and the http port (two nodes on one host).
fn own_name(config: &Config) -> String {
    let configured = config
        .unique_hostname
        .value
        .clone()
        .or_else(|| config.visible_hostname.value.clone());
    let name = configured.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let port = config.http_ports.first().map_or(0, |p| p.port);
        format!("{host}-{port}")
    });
    // Names travel as one visible-ASCII word of at most 255 bytes.
    let word: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if word.is_empty() {
        "cuttle".to_string()
    } else {
        word
    }
}

/// The group socket: bound to the group's port, joined on the interface
/// of this node's address, loopback on (other nodes on this host hear
/// it), the configured TTL.
fn group_socket(settings: &MeshDiscovery, own: Option<IpAddr>) -> std::io::Result<UdpSocket> {
    let group = settings.group;
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    match group.ip() {
        IpAddr::V4(g) => {
            socket.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), group.port()).into())?;
            let interface = match own {
                Some(IpAddr::V4(v4)) => v4,
                _ => Ipv4Addr::UNSPECIFIED,
            };
            socket.join_multicast_v4(&g, &interface)?;
            if !interface.is_unspecified() {
                socket.set_multicast_if_v4(&interface)?;
            }
            socket.set_multicast_loop_v4(true)?;
            socket.set_multicast_ttl_v4(u32::from(settings.ttl))?;
        }
        IpAddr::V6(g) => {
            socket.set_only_v6(true)?;
            socket.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), group.port()).into())?;
            socket.join_multicast_v6(&g, 0)?;
            socket.set_multicast_loop_v6(true)?;
            socket.set_multicast_hops_v6(u32::from(settings.ttl))?;
        }
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Starts the task when `mesh_discovery` is set: its settings are read
/// once (a change takes effect at the next restart). Chosen parents
/// arrive on the returned receiver.
pub fn start(
    config: &Config,
    view: Arc<MeshView>,
    stats: Arc<Stats>,
) -> Result<Option<mpsc::UnboundedReceiver<Vec<CachePeer>>>, String> {
    let Some(settings) = config.mesh.discovery.value.clone() else {
        return Ok(None);
    };
    let at = config
        .mesh
        .discovery
        .location
        .as_ref()
        .map_or(String::new(), |l| format!("{l}: "));
    let own = own_address(config);
    let group = group_socket(&settings, own)
        .map_err(|e| format!("{at}mesh_discovery: cannot join {}: {e}", settings.group))?;
    let ping_from = SocketAddr::new(own.unwrap_or(Ipv4Addr::UNSPECIFIED.into()), 0);
    let ping = std::net::UdpSocket::bind(ping_from)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UdpSocket::from_std)
        .map_err(|e| format!("{at}mesh_discovery: cannot bind the RTT socket: {e}"))?;
    let name = own_name(config);
    let tree = Tree::new(&name, settings.role, settings.interval);
    if let Ok(mut s) = view.settings.lock() {
        *s = format!(
            "group {} ttl {} interval {:.3} s key {}",
            settings.group,
            settings.ttl,
            settings.interval.as_secs_f64(),
            if config.mesh.key.value.is_some() {
                "on"
            } else {
                "off"
            }
        );
    }
    *view.tree.lock().unwrap_or_else(|e| e.into_inner()) = Some(tree);
    if let Ok(mut o) = view.own.lock() {
        *o = Some((
            own,
            config.http_ports.first().map_or(0, |p| p.port),
            config.icp_port.value,
        ));
    }
    let me = Me {
        addr: own,
        http_port: config.http_ports.first().map_or(0, |p| p.port),
        icp_port: config.icp_port.value,
        htcp_port: config.htcp_port.value,
        key: config.mesh.key.value.clone(),
        group: settings.group,
    };
    println!(
        "cuttle: mesh_discovery {} as {name} ({}), every {:?}",
        settings.group,
        settings.role.name(),
        settings.interval
    );
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(me, group, ping, view, stats, tx));
    Ok(Some(rx))
}

/// What this node announces besides its place in the tree.
struct Me {
    addr: Option<IpAddr>,
    http_port: u16,
    icp_port: u16,
    htcp_port: u16,
    key: Option<String>,
    group: SocketAddr,
}

async fn run(
    me: Me,
    group: UdpSocket,
    ping: UdpSocket,
    view: Arc<MeshView>,
    stats: Arc<Stats>,
    parents: mpsc::UnboundedSender<Vec<CachePeer>>,
) {
    let interval = with_tree(&view, |t| t.interval()).unwrap_or(Duration::from_secs(10));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u32;
    let mut reqnum = 0u32;
    let mut pings: HashMap<u32, (String, Instant)> = HashMap::new();
    let mut applied: Vec<CachePeer> = Vec::new();
    let mut requests = stats.totals().requests;
    let mut load = 0u16;
    let mut buf = vec![0u8; 2048];
    let mut icp_buf = vec![0u8; icp::MAX_DATAGRAM];
    loop {
        let announce = tokio::select! {
            _ = ticker.tick() => {
                let now_requests = stats.totals().requests;
                load = u16::try_from(now_requests.saturating_sub(requests)).unwrap_or(u16::MAX);
                requests = now_requests;
                pings.retain(|_, (_, sent)| sent.elapsed() < interval * 3);
                let targets = with_tree(&view, |t| {
                    t.tick(Instant::now());
                    t.nodes()
                        .filter(|n| n.icp_port != 0)
                        .map(|n| (n.name.clone(), SocketAddr::new(n.addr, n.icp_port)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
                for (name, to) in targets {
                    reqnum = reqnum.wrapping_add(1);
                    let url = format!("http://{name}/cuttle-mesh-rtt");
                    let mut wire = Vec::new();
                    if icp::Message::query(reqnum, url.as_bytes()).encode(&mut wire).is_ok()
                        && ping.send_to(&wire, to).await.is_ok()
                    {
                        pings.insert(reqnum, (name, Instant::now()));
                    }
                }
                true
            }
            got = group.recv_from(&mut buf) => match got {
                Ok((len, from)) => heard(&view, &me, buf.get(..len).unwrap_or(&[]), from.ip()),
                Err(e) => {
                    tracing::warn!(error = %e, "mesh_discovery: receive failed");
                    false
                }
            },
            got = ping.recv_from(&mut icp_buf) => {
                if let Ok((len, _)) = got {
                    if let Ok(reply) = icp::parse(icp_buf.get(..len).unwrap_or(&[])) {
                        if let Some((name, sent)) = pings.remove(&reply.reqnum) {
                            with_tree(&view, |t| t.measured(&name, sent.elapsed()));
                        }
                    }
                }
                false
            }
        };
        if !announce {
            continue;
        }
        seq = seq.wrapping_add(1);
        send_announcement(&view, &me, &group, seq, load).await;
        let found = with_tree(&view, |t| peer_configs(t)).unwrap_or_default();
        if found != applied {
            let parent_of = |peers: &[CachePeer]| {
                peers
                    .iter()
                    .find(|p| p.peer_type == PeerType::Parent)
                    .map(|p| p.name.clone())
            };
            let parent = parent_of(&found);
            if parent != parent_of(&applied) {
                view.parent_changes.fetch_add(1, Ordering::Relaxed);
                let parent = parent.unwrap_or_else(|| "none (direct)".to_string());
                println!("cuttle: mesh_discovery: parent {parent}");
            }
            let siblings: Vec<&str> = found
                .iter()
                .filter(|p| p.peer_type == PeerType::Sibling)
                .map(|p| p.name.as_str())
                .collect();
            println!("cuttle: mesh_discovery: siblings [{}]", siblings.join(", "));
            applied = found.clone();
            if parents.send(found).is_err() {
                return;
            }
        }
    }
}

fn with_tree<T>(view: &MeshView, f: impl FnOnce(&mut Tree) -> T) -> Option<T> {
    let mut guard = view.tree.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_mut().map(f)
}

/// One datagram from the group; true when this node's place changed (it
/// then announces at once).
fn heard(view: &MeshView, me: &Me, datagram: &[u8], source: IpAddr) -> bool {
    let parsed = match discovery::parse(datagram) {
        Ok(p) => p,
        Err(e) => {
            view.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%source, error = %e, "mesh_discovery: malformed announcement");
            return false;
        }
    };
    if let Some(key) = &me.key {
        if !parsed.verify(key.as_bytes()) {
            view.unauthenticated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%source, "mesh_discovery: announcement without a valid MAC ignored");
            return false;
        }
    }
    view.heard.fetch_add(1, Ordering::Relaxed);
    let node = Node::from_announcement(&parsed.announcement, source, Instant::now());
    with_tree(view, |t| t.heard(node).announce).unwrap_or(false)
}

async fn send_announcement(view: &MeshView, me: &Me, group: &UdpSocket, seq: u32, load: u16) {
    let wire = with_tree(view, |t| {
        let parent = t.parent().map(|p| p.name.clone()).unwrap_or_default();
        let a = Announcement {
            name: t.me(),
            addr: me.addr,
            http_port: me.http_port,
            icp_port: me.icp_port,
            htcp_port: me.htcp_port,
            role: t.role(),
            depth: t.depth(),
            load,
            seq,
            parent: &parent,
        };
        let mut wire = Vec::new();
        discovery::encode(&a, me.key.as_deref().map(str::as_bytes), &mut wire).map(|()| wire)
    });
    match wire {
        Some(Ok(wire)) => match group.send_to(&wire, me.group).await {
            Ok(_) => {
                view.announced.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "mesh_discovery: cannot announce"),
        },
        Some(Err(e)) => tracing::warn!(error = %e, "mesh_discovery: cannot encode"),
        None => {}
    }
}

/// Adds discovered peers to `config`, except where a configured line
/// already names the same peer (by name, or host and http port).
pub fn add_discovered(config: &mut Config, found: &[CachePeer]) {
    let location = config
        .mesh
        .discovery
        .location
        .clone()
        .unwrap_or_else(|| Location::new("<mesh_discovery>", 0));
    config.cache_peers.retain(|p| !p.discovered);
    for peer in found {
        let clash = config.cache_peers.iter().any(|p| {
            p.name.eq_ignore_ascii_case(&peer.name)
                || (p.host == peer.host && p.http_port == peer.http_port)
        });
        if !clash {
            config
                .cache_peers
                .push(Located::new(peer.clone(), location.clone()));
        }
    }
}

/// The serve loop's side: the running config with `found` in place of the
/// discovered peers it had, swapped in as a reload does (configured
/// peers keep their state; the ICP/HTCP responders are reconfigured by
/// the caller).
pub async fn apply(
    proxy: &watch::Sender<Arc<Proxy>>,
    query_sockets: &QuerySockets,
    found: &[CachePeer],
) {
    let mut config = (*proxy.borrow().config()).clone();
    add_discovered(&mut config, found);
    query_sockets.set_peer_addrs(PeerAddrs::resolve(&config).await);
    let next = proxy.borrow().with_config(Arc::new(config));
    let _ = proxy.send(Arc::new(next));
}

/// After a SIGHUP: the new config keeps the peers discovered so far.
pub fn carry_discovered(old: &Config, new: &mut Config) {
    let found: Vec<CachePeer> = old
        .cache_peers
        .iter()
        .filter(|p| p.discovered)
        .map(|p| p.value.clone())
        .collect();
    add_discovered(new, &found);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions};

    fn config(text: &str) -> Config {
        let loaded = load_str(text, "squid.conf", &LoadOptions::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.config
    }

    fn discovered(name: &str, host: &str) -> CachePeer {
        let mut p = CachePeer::new(host.into(), name.into(), PeerType::Parent, 3128, 3130);
        p.discovered = true;
        p
    }

    #[test]
    fn discovered_parents_replace_each_other_beside_configured_lines_which_win() {
        let mut c = config(
            "cache_peer 10.0.0.9 parent 3128 3130 name=configured\n\
             mesh_discovery 239.1.1.1:4999\n",
        );
        add_discovered(&mut c, &[discovered("a", "10.0.0.1")]);
        let names = |c: &Config| {
            c.cache_peers
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&c), ["configured", "a"]);
        assert_eq!(
            c.cache_peers[1].location.line, 2,
            "located at mesh_discovery"
        );
        add_discovered(&mut c, &[discovered("b", "10.0.0.2")]);
        assert_eq!(names(&c), ["configured", "b"]);
        // Same name, or same host and port, as a configured line: not added.
        add_discovered(&mut c, &[discovered("CONFIGURED", "10.0.0.3")]);
        assert_eq!(names(&c), ["configured"]);
        add_discovered(&mut c, &[discovered("other", "10.0.0.9")]);
        assert_eq!(names(&c), ["configured"]);
    }

    #[test]
    fn a_reload_keeps_the_discovered_parent() {
        let mut old = config("mesh_discovery 239.1.1.1:4999\n");
        add_discovered(&mut old, &[discovered("a", "10.0.0.1")]);
        let mut new = config("mesh_discovery 239.1.1.1:4999\nvisible_hostname x\n");
        carry_discovered(&old, &mut new);
        assert_eq!(new.cache_peers.len(), 1);
        assert!(new.cache_peers[0].discovered);
    }
}
