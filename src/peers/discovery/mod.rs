//! Multicast discovery and the self-built parent tree (`mesh_discovery`,
//! issue 20, after LSAM's auto-configuring routing hierarchy): every node
//! announces itself on a multicast group (protocol::discovery) and listens
//! for the others; `exit` nodes go to origins directly (depth 0), `client`
//! nodes take a parent but are never one (nor a sibling), `auto` nodes
//! pick their parent. [`tree`] is the pure state machine; the daemon feeds
//! it datagrams, RTTs and ticks, and turns its choice into a `cache_peer`
//! parent, its nodes of the same depth into siblings ([`Tree::siblings`]),
//! and on a client node the others' addresses into refused queries
//! ([`Discovered`]).
//!
//! # The tree rule
//!
//! A node's depth is 1 + its parent's announced depth (exits 0; 255 = no
//! path). A node without a parent takes, among the candidates (not
//! clients, a path of announced parents to an exit that does not pass
//! through itself), one whose RTT is within the hysteresis margin of the
//! fastest, preferring the deepest (more caches on the way), then the
//! least loaded. An attached node moves only to a candidate of lower depth
//! than its own that beats its parent's RTT by more than 20% at two
//! evaluations in a row, so the tree does not flap. It detaches (depth 255,
//! announced at once) when its parent is silent for 3 intervals, announces
//! no path, announces a depth not below its own, or names it as parent;
//! after a detach it waits one interval before taking a new parent.
//!
//! # Why no cycle forms
//!
//! Claim: along every parent link A -> P, depth(A) > depth(P) at all times,
//! so following parents strictly lowers the depth and cannot come back to
//! a node. (1) When A attaches to P, depth(A) = d + 1 where d is P's
//! depth as A last heard it. (2) While attached, A's depth never rises: it
//! only switches to a parent of lower depth than its own, and when its
//! parent's announced depth rises to A's own or beyond, A detaches instead
//! of following it up. So the only way P's real depth can exceed what A
//! heard is that P detached and re-attached deeper. The stale-depth race:
//! P detaches, A has not heard it yet, P re-attaches below A's subtree.
//! It is closed by the hold-down: P announces its detach (depth 255) at
//! once and takes no parent for one interval, during which the detach
//! reaches A (and, triggered the same way, every node under A), so A
//! detaches before P can have a new depth. Also, a node never takes a
//! candidate whose chain of announced parents passes through itself. A
//! lost detach datagram could still leave a stale link; the depths along
//! such a cycle would then rise at every announcement, which rule (2)
//! turns into detaches, so it dissolves within a few intervals.
//! `tests.rs` checks the claim with nodes joining and leaving in random
//! order, announcements delivered after random delays.

pub mod tree;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use cuttle_protocol::discovery::{Role, NO_DEPTH};

use crate::config::{CachePeer, PeerType};
pub use tree::{Node, Tree};

/// The tree as this node sees it, and what the discovery task counted:
/// shared by the task (writer) and the cache manager (reader).
#[derive(Debug, Default)]
pub struct MeshView {
    pub tree: Mutex<Option<Tree>>,
    /// `group ADDR:PORT ttl N interval T key on|off`, when discovery runs.
    pub settings: Mutex<String>,
    pub announced: AtomicU64,
    pub heard: AtomicU64,
    pub malformed: AtomicU64,
    /// Announcements without a valid MAC while a key is set (ignored).
    pub unauthenticated: AtomicU64,
    /// Times this node took, changed or lost its parent.
    pub parent_changes: AtomicU64,
    /// This node's announced address and http/icp ports.
    pub own: Mutex<Option<(Option<std::net::IpAddr>, u16, u16)>>,
}

fn depth_text(depth: u8) -> String {
    if depth == NO_DEPTH {
        "-".to_string()
    } else {
        depth.to_string()
    }
}

impl MeshView {
    /// `mgr:mesh`: the counters, then one line per node (this one first,
    /// marked `*`): name, role, depth, parent, RTT, age of its last
    /// announcement, address and ports, load.
    pub fn render(&self, now: Instant) -> String {
        let guard = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tree) = guard.as_ref() else {
            return "mesh_discovery is off\n".to_string();
        };
        let settings = self.settings.lock().map(|s| s.clone()).unwrap_or_default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut o = String::new();
        let _ = writeln!(o, "Mesh discovery: {settings}");
        let _ = writeln!(o, "Announcements sent: {}", load(&self.announced));
        let _ = writeln!(o, "Announcements heard: {}", load(&self.heard));
        let _ = writeln!(o, "Announcements malformed: {}", load(&self.malformed));
        let _ = writeln!(
            o,
            "Announcements without a valid MAC (ignored): {}",
            load(&self.unauthenticated)
        );
        let _ = writeln!(o, "Parent changes: {}", load(&self.parent_changes));
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<24} {:<6} {:>5} {:<24} {:>8} {:>6}  {:<22} {:>5} {:>5} {:>5}",
            "NODE", "ROLE", "DEPTH", "PARENT", "RTT_MS", "AGE_S", "ADDRESS", "HTTP", "ICP", "LOAD"
        );
        let parent = tree.parent().map_or("-", |p| p.name.as_str());
        let own = self.own.lock().map(|o| *o).unwrap_or_default();
        let (addr, http, icp) = match own {
            Some((addr, http, icp)) => (
                addr.map_or("-".to_string(), |a| a.to_string()),
                http.to_string(),
                icp.to_string(),
            ),
            None => ("-".to_string(), "-".to_string(), "-".to_string()),
        };
        let _ = writeln!(
            o,
            "{:<24} {:<6} {:>5} {:<24} {:>8} {:>6}  {:<22} {:>5} {:>5} {:>5}",
            format!("{}*", tree.me()),
            tree.role().name(),
            depth_text(tree.depth()),
            parent,
            "-",
            "0.0",
            addr,
            http,
            icp,
            "-"
        );
        for n in tree.nodes() {
            let rtt = n
                .rtt
                .map_or("-".to_string(), |r| format!("{:.3}", r.as_secs_f64() * 1e3));
            let parent = if n.parent.is_empty() { "-" } else { &n.parent };
            let age = now.saturating_duration_since(n.heard).as_secs_f64();
            let _ = writeln!(
                o,
                "{:<24} {:<6} {:>5} {:<24} {:>8} {:>6.1}  {:<22} {:>5} {:>5} {:>5}",
                n.name,
                n.role.name(),
                depth_text(n.depth),
                parent,
                rtt,
                age,
                n.addr.to_string(),
                n.http_port,
                n.icp_port,
                n.load
            );
        }
        o
    }
}

/// What the tree gives the running config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovered {
    /// Parent and siblings ([`peer_configs`]).
    pub peers: Vec<CachePeer>,
    /// On a `client` node, the addresses of the nodes it knows: it
    /// accepts no ICP/HTCP queries from them but the RTT probe (LSAM's
    /// client serves only its own users). Empty on other nodes.
    pub refused: Vec<std::net::IpAddr>,
}

/// The URL path of the ICP query that measures a node's RTT: a client
/// node answers it from every node (its RTT is shown in `mgr:mesh`).
pub const RTT_PROBE_PATH: &str = "/cuttle-mesh-rtt";

/// The peers and (on a client node) the refused addresses `tree` gives.
pub fn discovered(tree: &Tree) -> Discovered {
    let mut refused: Vec<std::net::IpAddr> = if tree.role() == Role::Client {
        tree.nodes().map(|n| n.addr.to_canonical()).collect()
    } else {
        Vec::new()
    };
    refused.sort();
    refused.dedup();
    Discovered {
        peers: peer_configs(tree),
        refused,
    }
}

/// The `cache_peer` entries the tree gives this node, marked discovered:
/// its parent (queried with ICP when it has an ICP port), then its
/// siblings ([`Tree::siblings`], always ICP).
pub fn peer_configs(tree: &Tree) -> Vec<CachePeer> {
    let peer = |n: &Node, peer_type| {
        let mut peer = CachePeer::new(
            n.addr.to_string(),
            n.name.clone(),
            peer_type,
            n.http_port,
            n.icp_port,
        );
        peer.discovered = true;
        // Without ICP the only parent is used as is (Squid's rule for a
        // no-query parent).
        peer.no_query = n.icp_port == 0;
        peer
    };
    let parent = tree.parent().map(|p| peer(p, PeerType::Parent));
    let siblings = tree
        .siblings()
        .into_iter()
        .map(|n| peer(n, PeerType::Sibling));
    parent.into_iter().chain(siblings).collect()
}

/// The node lines of a `mgr:mesh` page, back as nodes (this node's own
/// line included when it gives its address); `now` becomes their
/// last-heard time.
pub fn parse_page(page: &str, now: Instant) -> Vec<Node> {
    page.lines()
        .skip_while(|l| !l.starts_with("NODE "))
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [name, role, depth, parent, rtt, _age, addr, http, icp, load] = f.as_slice() else {
                return None;
            };
            let role = match *role {
                "client" => Role::Client,
                "exit" => Role::Exit,
                "auto" => Role::Auto,
                _ => return None,
            };
            Some(Node {
                name: name.trim_end_matches('*').to_string(),
                addr: addr.parse().ok()?,
                http_port: http.parse().ok()?,
                icp_port: icp.parse().ok()?,
                htcp_port: 0,
                role,
                depth: depth.parse().unwrap_or(NO_DEPTH),
                load: load.parse().unwrap_or(0),
                parent: if *parent == "-" {
                    String::new()
                } else {
                    parent.to_string()
                },
                heard: now,
                rtt: rtt
                    .parse::<f64>()
                    .ok()
                    .map(|ms| std::time::Duration::from_secs_f64(ms / 1e3)),
            })
        })
        .collect()
}

/// `cuttle mesh emit-squid-conf`: lines a plain Squid can use to join the
/// tree as this node sees it: the deepest non-client nodes of the tree
/// (the best attachment points) as parents, nearest first, `default` on
/// the exit so a Squid always has somewhere to go. Squid cannot discover;
/// re-run this when the tree changes.
pub fn squid_conf_lines(nodes: &[Node]) -> String {
    let mut usable: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.role != Role::Client && n.depth != NO_DEPTH)
        .collect();
    usable.sort_by(|a, b| b.depth.cmp(&a.depth).then(a.name.cmp(&b.name)));
    let mut o = String::from("# cache_peer lines for a Squid joining this cuttle mesh\n");
    for n in usable {
        let host = match n.addr {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        let query = if n.icp_port == 0 { " no-query" } else { "" };
        let default = if n.depth == 0 { " default" } else { "" };
        // Squid takes `#` only at the start of a line as a comment.
        let _ = writeln!(o, "# {} (depth {})", n.name, n.depth);
        let _ = writeln!(
            o,
            "cache_peer {host} parent {} {}{query}{default} name={}",
            n.http_port, n.icp_port, n.name
        );
    }
    o
}

#[cfg(test)]
mod tests;
