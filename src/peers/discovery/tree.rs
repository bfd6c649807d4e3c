//! The discovery tree as a pure, synchronous state machine: what this node
//! knows of the others (last announcement, when heard, measured RTT) and
//! its choice of parent. No sockets, no clock: the caller passes `now`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cuttle_protocol::discovery::{Announcement, Role, NO_DEPTH};

/// A node silent for this many intervals leaves the tree.
pub const SILENT_INTERVALS: u32 = 3;
/// A better parent must beat the current one's RTT by this factor...
const SWITCH_FACTOR: f64 = 0.8;
/// ...at this many evaluations in a row before the node switches.
const SWITCH_EVALUATIONS: u32 = 2;
/// At most this many siblings: the nearest non-client nodes of this
/// node's own depth (each costs an ICP query per miss).
pub const MAX_SIBLINGS: usize = 3;
/// RTTs closer than this count as equal (loopback and LAN jitter).
const RTT_FLOOR: Duration = Duration::from_millis(2);

/// Another node, as last heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub addr: IpAddr,
    pub http_port: u16,
    pub icp_port: u16,
    pub htcp_port: u16,
    pub role: Role,
    pub depth: u8,
    pub load: u16,
    /// Its parent's name, "" for none.
    pub parent: String,
    pub heard: Instant,
    /// The last measured round trip (ICP), if any.
    pub rtt: Option<Duration>,
}

impl Node {
    /// `a` heard from `source` (the address it gives, else the datagram's).
    pub fn from_announcement(a: &Announcement<'_>, source: IpAddr, now: Instant) -> Node {
        Node {
            name: a.name.to_string(),
            addr: a.addr.unwrap_or(source),
            http_port: a.http_port,
            icp_port: a.icp_port,
            htcp_port: a.htcp_port,
            role: a.role,
            depth: a.depth,
            load: a.load,
            parent: a.parent.to_string(),
            heard: now,
            rtt: None,
        }
    }
}

/// What changed after an event: the caller re-announces at once when
/// this node's own depth or parent changed (a detach must reach the
/// children before this node can re-attach, see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed {
    /// This node's parent or depth changed: announce now.
    pub announce: bool,
}

/// This node's view of the mesh and its place in it.
#[derive(Debug, Clone)]
pub struct Tree {
    me: String,
    role: Role,
    interval: Duration,
    nodes: BTreeMap<String, Node>,
    parent: Option<String>,
    depth: u8,
    /// After a detach, no parent is taken before this instant.
    hold_until: Option<Instant>,
    /// A better parent seen at consecutive evaluations, and how many.
    challenger: Option<(String, u32)>,
}

impl Tree {
    pub fn new(me: &str, role: Role, interval: Duration) -> Tree {
        Tree {
            me: me.to_string(),
            role,
            interval,
            nodes: BTreeMap::new(),
            parent: None,
            depth: if role == Role::Exit { 0 } else { NO_DEPTH },
            hold_until: None,
            challenger: None,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Hops to an exit; [`NO_DEPTH`] when there is no path.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The parent's name, also after it left the table.
    pub fn parent_name(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    pub fn parent(&self) -> Option<&Node> {
        self.parent.as_ref().and_then(|p| self.nodes.get(p))
    }

    /// The other nodes, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The nodes this node asks as ICP siblings: non-client nodes of its
    /// own depth with an ICP port (its parent's other children, or other
    /// exits for an exit), the [`MAX_SIBLINGS`] nearest by RTT (rounded to
    /// [`RTT_FLOOR`] so jitter does not reshuffle them; unmeasured last,
    /// then by name). None while detached. Siblings are never candidates
    /// for the parent, so they cannot change the tree.
    pub fn siblings(&self) -> Vec<&Node> {
        if self.depth == NO_DEPTH {
            return Vec::new();
        }
        let mut same_depth: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| n.role != Role::Client && n.depth == self.depth && n.icp_port != 0)
            .collect();
        let floor = RTT_FLOOR.as_nanos().max(1);
        same_depth.sort_by_key(|n| {
            (
                n.rtt.map_or(u128::MAX, |r| r.as_nanos() / floor),
                n.name.clone(),
            )
        });
        same_depth.truncate(MAX_SIBLINGS);
        same_depth
    }

    /// An announcement arrived (already authenticated by the caller).
    pub fn heard(&mut self, node: Node) -> Changed {
        if node.name == self.me {
            return Changed::default();
        }
        let now = node.heard;
        let rtt = self.nodes.get(&node.name).and_then(|n| n.rtt);
        self.nodes.insert(node.name.clone(), Node { rtt, ..node });
        self.check_parent(now)
    }

    /// A round trip to `name` was measured.
    pub fn measured(&mut self, name: &str, rtt: Duration) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.rtt = Some(rtt);
        }
    }

    /// Periodic evaluation: drops silent nodes, then keeps, changes or
    /// takes a parent.
    pub fn tick(&mut self, now: Instant) -> Changed {
        let silence = self.interval * SILENT_INTERVALS;
        self.nodes
            .retain(|_, n| now.saturating_duration_since(n.heard) < silence);
        let mut changed = self.check_parent(now);
        if self.role == Role::Exit {
            return changed;
        }
        if self.parent.is_none() {
            if self.hold_until.is_some_and(|h| now < h) {
                return changed;
            }
            self.hold_until = None;
            if let Some(best) = self.best_candidate(NO_DEPTH) {
                self.attach(&best);
                changed.announce = true;
            }
            return changed;
        }
        if self.consider_switch() {
            changed.announce = true;
        }
        changed
    }

    fn attach(&mut self, name: &str) {
        let depth = self.nodes.get(name).map_or(NO_DEPTH, |n| n.depth);
        self.parent = Some(name.to_string());
        self.depth = depth.saturating_add(1).min(NO_DEPTH - 1);
        self.challenger = None;
    }

    /// Follows the parent's depth down; detaches from a parent that left,
    /// lost its path, got deeper (this node's depth would have to rise) or
    /// now names this node as its parent.
    fn check_parent(&mut self, now: Instant) -> Changed {
        let Some(name) = &self.parent else {
            return Changed::default();
        };
        let kept = self.nodes.get(name).and_then(|p| {
            (p.role != Role::Client && p.depth < self.depth && p.parent != self.me)
                .then(|| p.depth + 1)
        });
        if let Some(depth) = kept {
            let lower = depth < self.depth;
            self.depth = depth;
            return Changed { announce: lower };
        }
        self.parent = None;
        self.depth = NO_DEPTH;
        self.challenger = None;
        // Announced (depth 255) before any new parent can be taken.
        self.hold_until = Some(now + self.interval);
        Changed { announce: true }
    }

    /// Whether `name`'s chain of announced parents reaches an exit
    /// without passing through this node or looping.
    fn reaches_exit(&self, name: &str) -> bool {
        let mut at = name;
        for _ in 0..=self.nodes.len() {
            let Some(n) = self.nodes.get(at) else {
                return false;
            };
            if n.role == Role::Exit {
                return n.depth == 0;
            }
            if n.depth == NO_DEPTH || n.parent.is_empty() || n.parent == self.me {
                return false;
            }
            at = &n.parent;
        }
        false
    }

    /// The candidates: not clients, depth below `below`, a path to an
    /// exit that does not pass through this node.
    fn candidates(&self, below: u8) -> Vec<&Node> {
        self.nodes
            .values()
            .filter(|n| n.role != Role::Client && n.depth < below && n.depth < NO_DEPTH - 1)
            .filter(|n| self.reaches_exit(&n.name))
            .collect()
    }

    /// The parent to take: among candidates whose RTT is within the
    /// hysteresis margin of the best known one (unmeasured ones count as
    /// near), the deepest (more caches on the way, fewer requests on the
    /// exits), then the least loaded, then the fastest, then by name.
    fn best_candidate(&self, below: u8) -> Option<String> {
        let candidates = self.candidates(below);
        let best_rtt = candidates.iter().filter_map(|n| n.rtt).min();
        candidates
            .into_iter()
            .filter(|n| match (n.rtt, best_rtt) {
                (Some(rtt), Some(best)) => !clearly_better(best, rtt),
                _ => true,
            })
            .min_by(|a, b| {
                b.depth
                    .cmp(&a.depth)
                    .then(a.load.cmp(&b.load))
                    .then(
                        a.rtt
                            .unwrap_or(Duration::MAX)
                            .cmp(&b.rtt.unwrap_or(Duration::MAX)),
                    )
                    .then(a.name.cmp(&b.name))
            })
            .map(|n| n.name.clone())
    }

    /// An attached node moves only to a parent of lower depth than its
    /// own, clearly faster than the current one, seen so at
    /// [`SWITCH_EVALUATIONS`] evaluations in a row.
    fn consider_switch(&mut self) -> bool {
        let current = self.parent().and_then(|p| p.rtt);
        let better = self.candidates(self.depth).into_iter().filter(|n| {
            Some(&n.name) != self.parent.as_ref()
                && match (n.rtt, current) {
                    (Some(rtt), Some(now)) => clearly_better(rtt, now),
                    _ => false,
                }
        });
        let Some(best) = better.min_by_key(|n| n.rtt).map(|n| n.name.clone()) else {
            self.challenger = None;
            return false;
        };
        let seen = match &self.challenger {
            Some((name, count)) if *name == best => count + 1,
            _ => 1,
        };
        if seen >= SWITCH_EVALUATIONS {
            self.attach(&best);
            return true;
        }
        self.challenger = Some((best, seen));
        false
    }
}

/// `a` beats `b` by more than the hysteresis margin.
fn clearly_better(a: Duration, b: Duration) -> bool {
    a.as_secs_f64() < b.as_secs_f64() * SWITCH_FACTOR && b - a > RTT_FLOOR
}
