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

use crate::config::{
    AccessRule, Acl, AclData, AclRef, AclRegex, Action, CachePeer, Config, IpAclEntry, ListenAddr,
    Located, Location, MeshDiscovery, PeerType,
};
use crate::http::proxy::Proxy;
use crate::peers::discovery::{discovered, Discovered, MeshView, Node, Tree, RTT_PROBE_PATH};
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
) -> Result<Option<mpsc::UnboundedReceiver<Discovered>>, String> {
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
    parents: mpsc::UnboundedSender<Discovered>,
) {
    let interval = with_tree(&view, |t| t.interval()).unwrap_or(Duration::from_secs(10));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u32;
    let mut reqnum = 0u32;
    let mut pings: HashMap<u32, (String, Instant)> = HashMap::new();
    let mut applied = Discovered::default();
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
                    let url = format!("http://{name}{RTT_PROBE_PATH}");
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
        let found = with_tree(&view, |t| discovered(t)).unwrap_or_default();
        if found != applied {
            let parent_of = |peers: &[CachePeer]| {
                peers
                    .iter()
                    .find(|p| p.peer_type == PeerType::Parent)
                    .map(|p| p.name.clone())
            };
            let parent = parent_of(&found.peers);
            if parent != parent_of(&applied.peers) {
                view.parent_changes.fetch_add(1, Ordering::Relaxed);
                let parent = parent.unwrap_or_else(|| "none (direct)".to_string());
                println!("cuttle: mesh_discovery: parent {parent}");
            }
            let siblings: Vec<&str> = found
                .peers
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
/// already names the same peer (by name, or host and http port), and on
/// a client node the refusal of the other nodes' queries.
pub fn add_discovered(config: &mut Config, found: &Discovered) {
    let location = config
        .mesh
        .discovery
        .location
        .clone()
        .unwrap_or_else(|| Location::new("<mesh_discovery>", 0));
    config.cache_peers.retain(|p| !p.discovered);
    for peer in &found.peers {
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
    refuse_queries(config, &found.refused, &location);
}

/// The ACL naming the discovered nodes a client node refuses, and the one
/// matching the RTT probe it still answers (long, specific names no
/// squid.conf is likely to use; a configured ACL of the same name would
/// be replaced).
const NODES_ACL: &str = "cuttle_mesh_discovered_nodes";
const PROBE_ACL: &str = "cuttle_mesh_rtt_probe";

/// A client node accepts no requests from other proxies (LSAM): its
/// icp_access, htcp_access and htcp_clr_access get a first rule denying
/// the discovered nodes' addresses, except, for ICP, the RTT probe.
/// Replaces the rules a previous call added. An empty list is left empty
/// (it already denies everyone, and a lone deny rule would allow the
/// rest).
fn refuse_queries(config: &mut Config, refused: &[IpAddr], location: &Location) {
    let ours = |name: &str| name == NODES_ACL || name == PROBE_ACL;
    config.acls.retain(|a| !ours(&a.name));
    for list in [
        &mut config.icp_access,
        &mut config.htcp_access,
        &mut config.htcp_clr_access,
    ] {
        list.retain(|r| !r.value.acls.iter().any(|a| ours(&a.name)));
    }
    if refused.is_empty() {
        return;
    }
    let pattern = format!("^{}$", regex::escape(RTT_PROBE_PATH));
    let regex = match regex::bytes::Regex::new(&pattern) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "mesh_discovery: cannot build the RTT probe ACL");
            return;
        }
    };
    let host = |ip: IpAddr| {
        let mask = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::MAX)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        };
        Located::new(
            IpAclEntry::Net {
                first: ip,
                last: ip,
                mask,
            },
            location.clone(),
        )
    };
    // Appended last: dropping them again shifts no other ACL's index.
    let nodes = AclRef {
        name: NODES_ACL.to_string(),
        negated: false,
        index: config.acls.len(),
    };
    let not_probe = AclRef {
        name: PROBE_ACL.to_string(),
        negated: true,
        index: config.acls.len() + 1,
    };
    config.acls.push(Acl {
        name: NODES_ACL.to_string(),
        location: location.clone(),
        data: AclData::Src(refused.iter().map(|ip| host(ip.to_canonical())).collect()),
        builtin: false,
    });
    config.acls.push(Acl {
        name: PROBE_ACL.to_string(),
        location: location.clone(),
        data: AclData::UrlPathRegex(vec![Located::new(
            AclRegex {
                pattern,
                case_insensitive: false,
                regex,
            },
            location.clone(),
        )]),
        builtin: false,
    });
    let deny = |acls: Vec<AclRef>| {
        Located::new(
            AccessRule {
                action: Action::Deny,
                acls,
            },
            location.clone(),
        )
    };
    if !config.icp_access.is_empty() {
        let rule = deny(vec![nodes.clone(), not_probe]);
        config.icp_access.insert(0, rule);
    }
    for list in [&mut config.htcp_access, &mut config.htcp_clr_access] {
        if !list.is_empty() {
            list.insert(0, deny(vec![nodes.clone()]));
        }
    }
}

/// The serve loop's side: the running config with `found` in place of
/// what discovery gave it before, swapped in as a reload does (configured
/// peers keep their state; the ICP/HTCP responders are reconfigured by
/// the caller).
pub async fn apply(
    proxy: &watch::Sender<Arc<Proxy>>,
    query_sockets: &QuerySockets,
    found: &Discovered,
) {
    let mut config = (*proxy.borrow().config()).clone();
    add_discovered(&mut config, found);
    query_sockets.set_peer_addrs(PeerAddrs::resolve(&config).await);
    let next = proxy.borrow().with_config(Arc::new(config));
    let _ = proxy.send(Arc::new(next));
}

/// After a SIGHUP: the new config keeps what discovery gave the old one.
pub fn carry_discovered(old: &Config, new: &mut Config) {
    let peers = old
        .cache_peers
        .iter()
        .filter(|p| p.discovered)
        .map(|p| p.value.clone())
        .collect();
    let refused = old
        .acls
        .iter()
        .filter(|a| a.name == NODES_ACL)
        .flat_map(|a| match &a.data {
            AclData::Src(entries) => entries
                .iter()
                .filter_map(|e| match e.value {
                    IpAclEntry::Net { first, .. } => Some(first),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    add_discovered(new, &Discovered { peers, refused });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, AccessList, LoadOptions};

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

    fn found(peers: Vec<CachePeer>) -> Discovered {
        Discovered {
            peers,
            refused: Vec::new(),
        }
    }

    #[test]
    fn discovered_parents_replace_each_other_beside_configured_lines_which_win() {
        let mut c = config(
            "cache_peer 10.0.0.9 parent 3128 3130 name=configured\n\
             mesh_discovery 239.1.1.1:4999\n",
        );
        add_discovered(&mut c, &found(vec![discovered("a", "10.0.0.1")]));
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
        add_discovered(&mut c, &found(vec![discovered("b", "10.0.0.2")]));
        assert_eq!(names(&c), ["configured", "b"]);
        // Same name, or same host and port, as a configured line: not added.
        add_discovered(&mut c, &found(vec![discovered("CONFIGURED", "10.0.0.3")]));
        assert_eq!(names(&c), ["configured"]);
        add_discovered(&mut c, &found(vec![discovered("other", "10.0.0.9")]));
        assert_eq!(names(&c), ["configured"]);
    }

    #[test]
    fn a_reload_keeps_the_discovered_parent() {
        let mut old = config("mesh_discovery 239.1.1.1:4999\n");
        add_discovered(&mut old, &found(vec![discovered("a", "10.0.0.1")]));
        let mut new = config("mesh_discovery 239.1.1.1:4999\nvisible_hostname x\n");
        carry_discovered(&old, &mut new);
        assert_eq!(new.cache_peers.len(), 1);
        assert!(new.cache_peers[0].discovered);
    }

    #[test]
    fn a_client_node_refuses_the_discovered_nodes_and_replaces_the_rule_each_time() {
        let mut c = config(
            "acl peers src 10.0.0.0/8\nicp_access allow peers\nhtcp_access allow peers\n\
             mesh_discovery 239.1.1.1:4999 role=client\n",
        );
        let acls = c.acls.len();
        let refuse = |ips: &[&str]| Discovered {
            peers: Vec::new(),
            refused: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        };
        add_discovered(&mut c, &refuse(&["10.0.0.1"]));
        add_discovered(&mut c, &refuse(&["10.0.0.1", "10.0.0.2"]));
        assert_eq!(c.acls.len(), acls + 2, "replaced, not added again");
        let names = |list: &AccessList| {
            list.iter()
                .map(|r| {
                    let acls: Vec<String> = r
                        .value
                        .acls
                        .iter()
                        .map(|a| format!("{}{}", if a.negated { "!" } else { "" }, a.name))
                        .collect();
                    format!("{:?} {}", r.value.action, acls.join(" "))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&c.icp_access),
            [
                "Deny cuttle_mesh_discovered_nodes !cuttle_mesh_rtt_probe",
                "Allow peers"
            ]
        );
        assert_eq!(
            names(&c.htcp_access),
            ["Deny cuttle_mesh_discovered_nodes", "Allow peers"]
        );
        // No htcp_clr_access rules: it denies everyone already.
        assert!(c.htcp_clr_access.is_empty());
        let AclData::Src(entries) = &c.acls[acls].data else {
            panic!("{:?}", c.acls[acls]);
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(entries.iter().any(|e| e.value.contains(ip("10.0.0.2"))));
        assert!(!entries.iter().any(|e| e.value.contains(ip("10.0.0.3"))));
        // A reload keeps the refusal; an empty list drops it.
        let mut new = config(
            "acl peers src 10.0.0.0/8\nicp_access allow peers\n\
             mesh_discovery 239.1.1.1:4999 role=client\n",
        );
        carry_discovered(&c, &mut new);
        assert_eq!(new.icp_access.len(), 2);
        add_discovered(&mut new, &refuse(&[]));
        assert_eq!(names(&new.icp_access), ["Allow peers"]);
    }
}
