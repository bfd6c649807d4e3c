//! The tree rule under churn: nodes join and leave in random order,
//! announcements arrive after random delays; no parent link ever closes a
//! cycle, and once the churn stops every node's parent chain reaches an
//! exit. Plus the rule's single steps (hysteresis, re-parenting, clients).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use cuttle_protocol::discovery::{Role, NO_DEPTH};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tree::{Node, Tree, MAX_SIBLINGS};
use super::{peer_configs, squid_conf_lines};
use crate::config::PeerType;

const INTERVAL: Duration = Duration::from_secs(1);

fn announcement(tree: &Tree, now: Instant) -> Node {
    Node {
        name: tree.me().to_string(),
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        http_port: 3128,
        icp_port: 3130,
        htcp_port: 0,
        role: tree.role(),
        depth: tree.depth(),
        load: 0,
        parent: tree.parent_name().unwrap_or("").to_string(),
        heard: now,
        rtt: None,
    }
}

/// A mesh of trees exchanging announcements through a delayed channel.
struct Sim {
    rng: StdRng,
    start: Instant,
    /// Milliseconds since start.
    now: u64,
    nodes: BTreeMap<String, Tree>,
    /// When each node ticks next.
    next_tick: HashMap<String, u64>,
    /// (delivery time, to, announcement).
    in_flight: Vec<(u64, String, Node)>,
    rtts: HashMap<(String, String), Duration>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        Sim {
            rng: StdRng::seed_from_u64(seed),
            start: Instant::now(),
            now: 0,
            nodes: BTreeMap::new(),
            next_tick: HashMap::new(),
            in_flight: Vec::new(),
            rtts: HashMap::new(),
        }
    }

    fn at(&self) -> Instant {
        self.start + Duration::from_millis(self.now)
    }

    fn join(&mut self, name: &str, role: Role) {
        self.nodes
            .insert(name.to_string(), Tree::new(name, role, INTERVAL));
        let phase = self.rng.gen_range(0..1000);
        self.next_tick.insert(name.to_string(), self.now + phase);
    }

    fn leave(&mut self, name: &str) {
        self.nodes.remove(name);
        self.next_tick.remove(name);
    }

    fn rtt(&mut self, a: &str, b: &str) -> Duration {
        let key = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        let ms = self.rng.gen_range(1..60);
        *self.rtts.entry(key).or_insert(Duration::from_millis(ms))
    }

    fn broadcast(&mut self, from: &str) {
        let Some(tree) = self.nodes.get(from) else {
            return;
        };
        let node = announcement(tree, self.at());
        let names: Vec<String> = self.nodes.keys().filter(|n| *n != from).cloned().collect();
        for to in names {
            // Delivered well within the one-interval hold-down.
            let delay = self.rng.gen_range(1..200);
            self.in_flight.push((self.now + delay, to, node.clone()));
        }
    }

    /// Advances 10 ms: deliveries, then ticks.
    fn step(&mut self) {
        self.now += 10;
        let now = self.now;
        let due: Vec<(u64, String, Node)> = {
            let (due, later) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|(t, _, _)| *t <= now);
            self.in_flight = later;
            due
        };
        for (_, to, mut node) in due {
            let rtt = self.rtt(&to, &node.name);
            node.heard = self.at();
            let Some(tree) = self.nodes.get_mut(&to) else {
                continue;
            };
            let name = node.name.clone();
            let changed = tree.heard(node);
            tree.measured(&name, rtt);
            if changed.announce {
                self.broadcast(&to);
            }
        }
        let ticking: Vec<String> = self
            .next_tick
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in ticking {
            let at = self.at();
            if let Some(tree) = self.nodes.get_mut(&name) {
                tree.tick(at);
            }
            self.next_tick.insert(name.clone(), now + 1000);
            // Announces at every tick, as the daemon does.
            self.broadcast(&name);
        }
    }

    /// Panics when the parent links (as the nodes hold them now) close a
    /// cycle.
    fn assert_no_cycle(&self, seed: u64) {
        for start in self.nodes.keys() {
            let mut seen = vec![start.as_str()];
            let mut at = start.as_str();
            while let Some(parent) = self.nodes.get(at).and_then(|t| t.parent_name()) {
                assert!(
                    !seen.contains(&parent),
                    "seed {seed}, t={} ms: cycle {seen:?} -> {parent}",
                    self.now
                );
                seen.push(parent);
                at = parent;
            }
        }
    }

    /// Every node's chain reaches a live exit, with depths counting hops.
    fn assert_settled(&self, seed: u64) {
        for (name, tree) in &self.nodes {
            let mut at = name.as_str();
            let mut hops = 0u8;
            loop {
                let t = &self.nodes[at];
                if t.role() == Role::Exit {
                    break;
                }
                let parent = t.parent_name().unwrap_or_else(|| {
                    panic!("seed {seed}: {at} (on {name}'s chain) has no parent")
                });
                assert!(
                    self.nodes.contains_key(parent),
                    "seed {seed}: {at}'s parent {parent} is gone"
                );
                assert_ne!(
                    self.nodes[parent].role(),
                    Role::Client,
                    "seed {seed}: a client is a parent"
                );
                at = parent;
                hops += 1;
                assert!(hops < 100, "seed {seed}: no end to {name}'s chain");
            }
            assert_eq!(tree.depth(), hops, "seed {seed}: {name}'s depth");
        }
    }
}

#[test]
fn random_joins_and_leaves_never_close_a_cycle_and_settle_on_an_exit() {
    for seed in 0..60u64 {
        let mut sim = Sim::new(seed);
        let mut waiting: Vec<(String, Role)> = (0..12)
            .map(|i| {
                let role = match i {
                    0 | 1 => Role::Exit,
                    2 | 3 => Role::Client,
                    _ => Role::Auto,
                };
                (format!("n{i}"), role)
            })
            .collect();
        // Random order, one exit first-or-later like any other.
        for i in (1..waiting.len()).rev() {
            let j = sim.rng.gen_range(0..=i);
            waiting.swap(i, j);
        }
        let mut left = 0;
        // 40 s of churn: a join or a leave every 0.2-3 s.
        let mut next_event = 0u64;
        while sim.now < 40_000 {
            if sim.now >= next_event {
                next_event = sim.now + sim.rng.gen_range(200..3000);
                let live: Vec<String> = sim.nodes.keys().cloned().collect();
                let exits = live
                    .iter()
                    .filter(|n| sim.nodes[*n].role() == Role::Exit)
                    .count();
                let leave = !live.is_empty() && (waiting.is_empty() || sim.rng.gen_bool(0.35));
                if leave && left < 6 {
                    let victim = live[sim.rng.gen_range(0..live.len())].clone();
                    // At least one exit stays, so that there is a tree.
                    if sim.nodes[&victim].role() != Role::Exit || exits > 1 {
                        sim.leave(&victim);
                        left += 1;
                    }
                } else if let Some((name, role)) = waiting.pop() {
                    sim.join(&name, role);
                }
            }
            sim.step();
            sim.assert_no_cycle(seed);
        }
        for (name, role) in waiting.drain(..) {
            sim.join(&name, role);
        }
        if !sim.nodes.values().any(|t| t.role() == Role::Exit) {
            sim.join("late-exit", Role::Exit);
        }
        // Settling: 3 intervals to notice a silent node, 1 of hold-down,
        // then a few per level of the tree.
        while sim.now < 40_000 + 20_000 {
            sim.step();
            sim.assert_no_cycle(seed);
        }
        sim.assert_settled(seed);
    }
}

fn node(name: &str, role: Role, depth: u8, parent: &str, at: Instant) -> Node {
    Node {
        name: name.to_string(),
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        http_port: 3128,
        icp_port: 3130,
        htcp_port: 0,
        role,
        depth,
        load: 0,
        parent: parent.to_string(),
        heard: at,
        rtt: None,
    }
}

#[test]
fn an_exit_never_takes_a_parent_and_a_client_is_never_one() {
    let t0 = Instant::now();
    let mut exit = Tree::new("e", Role::Exit, INTERVAL);
    exit.heard(node("x", Role::Exit, 0, "", t0));
    exit.tick(t0);
    assert_eq!((exit.depth(), exit.parent_name()), (0, None));

    let mut auto = Tree::new("a", Role::Auto, INTERVAL);
    auto.heard(node("c", Role::Client, 1, "e", t0));
    auto.tick(t0);
    assert_eq!((auto.depth(), auto.parent_name()), (NO_DEPTH, None));
    auto.heard(node("e", Role::Exit, 0, "", t0));
    auto.tick(t0);
    assert_eq!((auto.depth(), auto.parent_name()), (1, Some("e")));
    let peers = peer_configs(&auto);
    assert_eq!(peers.len(), 1);
    assert!(peers[0].discovered && peers[0].name == "e" && peers[0].host == "127.0.0.2");
}

/// (name, peer type) of each discovered cache_peer, in order.
fn peer_list(tree: &Tree) -> Vec<(String, PeerType)> {
    peer_configs(tree)
        .into_iter()
        .inspect(|p| assert!(p.discovered, "{p:?}"))
        .map(|p| (p.name, p.peer_type))
        .collect()
}

#[test]
fn siblings_are_the_nearest_non_client_nodes_of_the_same_depth() {
    let t0 = Instant::now();
    let mut a = Tree::new("a", Role::Auto, INTERVAL);
    a.heard(node("e", Role::Exit, 0, "", t0));
    a.tick(t0);
    assert_eq!((a.parent_name(), a.depth()), (Some("e"), 1));
    // Same depth: auto nodes b, c, d, f (two of them under another exit),
    // a client at depth 1 and a node without ICP; deeper and shallower
    // nodes, and a detached one.
    a.heard(node("x", Role::Exit, 0, "", t0));
    for (name, parent) in [("b", "e"), ("c", "e"), ("d", "x"), ("f", "x")] {
        a.heard(node(name, Role::Auto, 1, parent, t0));
    }
    a.heard(node("client", Role::Client, 1, "e", t0));
    a.heard(Node {
        icp_port: 0,
        ..node("no-icp", Role::Auto, 1, "e", t0)
    });
    a.heard(node("deep", Role::Auto, 2, "b", t0));
    a.heard(node("lost", Role::Auto, NO_DEPTH, "", t0));
    a.measured("b", Duration::from_millis(30));
    a.measured("c", Duration::from_millis(5));
    a.measured("d", Duration::from_millis(50));
    a.measured("f", Duration::from_millis(9));
    let sib = PeerType::Sibling;
    // The parent first, then the MAX_SIBLINGS nearest (d, the slowest,
    // is left out; the other exit is no sibling of a depth-1 node).
    assert_eq!(
        peer_list(&a),
        [
            ("e".to_string(), PeerType::Parent),
            ("c".to_string(), sib),
            ("f".to_string(), sib),
            ("b".to_string(), sib),
        ]
    );
    assert_eq!(MAX_SIBLINGS, 3);
    // RTTs within RTT_FLOOR of each other count as equal: by name, so
    // loopback jitter does not reshuffle the peer table.
    a.measured("f", Duration::from_millis(5));
    a.measured("c", Duration::from_micros(5500));
    assert_eq!(
        peer_list(&a)[1..3],
        [("c".to_string(), sib), ("f".to_string(), sib)]
    );
    // Siblings never move the tree: same parent, same depth.
    a.tick(t0);
    assert_eq!((a.parent_name(), a.depth()), (Some("e"), 1));
    // Exits are siblings of each other; a detached node has none.
    let mut e = Tree::new("e", Role::Exit, INTERVAL);
    e.heard(node("x", Role::Exit, 0, "", t0));
    e.heard(node("b", Role::Auto, 1, "e", t0));
    assert_eq!(peer_list(&e), [("x".to_string(), sib)]);
    let mut lone = Tree::new("lone", Role::Auto, INTERVAL);
    lone.heard(node("b", Role::Auto, NO_DEPTH, "", t0));
    assert!(peer_list(&lone).is_empty());
    // A client node uses siblings too (it only never serves them).
    let mut c = Tree::new("c2", Role::Client, INTERVAL);
    c.heard(node("e", Role::Exit, 0, "", t0));
    c.tick(t0);
    c.heard(node("b", Role::Auto, 1, "e", t0));
    assert_eq!(peer_list(&c)[1..], [("b".to_string(), sib)]);
}

#[test]
fn a_faster_lower_parent_wins_only_when_clearly_faster_twice_in_a_row() {
    let t0 = Instant::now();
    let mut a = Tree::new("a", Role::Auto, INTERVAL);
    a.heard(node("mid", Role::Auto, 1, "e", t0));
    a.heard(node("e", Role::Exit, 0, "", t0));
    a.measured("mid", Duration::from_millis(20));
    a.measured("e", Duration::from_millis(18));
    a.tick(t0);
    // Both within the margin: the deeper one.
    assert_eq!((a.parent_name(), a.depth()), (Some("mid"), 2));
    // 10% faster: not enough.
    a.tick(t0);
    a.tick(t0);
    assert_eq!(a.parent_name(), Some("mid"));
    // Clearly faster: switches at the second evaluation, not the first.
    a.measured("e", Duration::from_millis(5));
    a.tick(t0);
    assert_eq!(a.parent_name(), Some("mid"));
    a.tick(t0);
    assert_eq!((a.parent_name(), a.depth()), (Some("e"), 1));
}

#[test]
fn a_node_whose_parent_falls_silent_re_parents_after_the_hold_down() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut a = Tree::new("a", Role::Auto, INTERVAL);
    a.heard(node("mid", Role::Auto, 1, "e", t0));
    a.heard(node("e", Role::Exit, 0, "", t0));
    a.tick(t0);
    assert_eq!(a.parent_name(), Some("mid"));
    // e keeps announcing, mid falls silent.
    for i in 1..=3 {
        a.heard(node("e", Role::Exit, 0, "", t0 + s(i)));
        a.tick(t0 + s(i));
    }
    assert_eq!((a.parent_name(), a.depth()), (None, NO_DEPTH));
    assert!(a.node("mid").is_none());
    a.tick(t0 + s(3) + Duration::from_millis(500));
    assert_eq!(a.parent_name(), None, "held down for one interval");
    a.heard(node("e", Role::Exit, 0, "", t0 + s(4)));
    a.tick(t0 + s(4));
    assert_eq!((a.parent_name(), a.depth()), (Some("e"), 1));
}

#[test]
fn a_parent_that_gets_deeper_or_adopts_its_child_is_dropped() {
    let t0 = Instant::now();
    let mut a = Tree::new("a", Role::Auto, INTERVAL);
    a.heard(node("p", Role::Auto, 1, "e", t0));
    a.heard(node("e", Role::Exit, 0, "", t0));
    a.tick(t0);
    assert_eq!((a.parent_name(), a.depth()), (Some("p"), 2));
    assert!(a.heard(node("p", Role::Auto, 2, "q", t0)).announce);
    assert_eq!((a.parent_name(), a.depth()), (None, NO_DEPTH));
    // A candidate whose chain runs through this node is never taken.
    a.heard(node("p", Role::Auto, 3, "a", t0));
    a.tick(t0 + INTERVAL);
    assert_eq!(a.parent_name(), Some("e"));
}

#[test]
fn emit_squid_conf_lists_the_deepest_usable_nodes_first_and_the_exit_as_default() {
    let t0 = Instant::now();
    let nodes = [
        node("e", Role::Exit, 0, "", t0),
        node("m", Role::Auto, 1, "e", t0),
        node("c", Role::Client, 2, "m", t0),
        node("lost", Role::Auto, NO_DEPTH, "", t0),
    ];
    assert_eq!(
        squid_conf_lines(&nodes),
        "# cache_peer lines for a Squid joining this cuttle mesh\n\
         # m (depth 1)\n\
         cache_peer 127.0.0.2 parent 3128 3130 name=m\n\
         # e (depth 0)\n\
         cache_peer 127.0.0.2 parent 3128 3130 default name=e\n"
    );
}
