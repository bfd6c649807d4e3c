//! `peer_store_threshold` in the simulator (issue 19): each node reads its
//! own directive from its squid.conf and counts references with the
//! proxy's own counter ([`RefCounts`], same sketch, same window) on the
//! virtual clock, counting where the proxy counts (a GET that is not a
//! fresh local hit and goes to its sources, or is redirected to a
//! holder), and deciding with the
//! proxy's own rule ([`peer_reply_forwarded`], with the node's `scope=`). Also the mesh-wide figures
//! of what the stores hold at the end of a run.

use std::time::Instant;

use serde::Serialize;

use super::mesh::Mesh;
use super::store::Holdings;
use crate::access_log::HierarchyCode;
use crate::caching::peer_store::peer_reply_forwarded;
use crate::config::PeerStoreThreshold;
use crate::peers::refcount::RefCounts;

/// Every node's threshold and counter, and what the last request that
/// went to its sources counted.
pub struct Thresholds {
    nodes: Vec<Option<(PeerStoreThreshold, RefCounts)>>,
    last_seen: Vec<u32>,
}

impl Thresholds {
    /// The thresholds of `mesh`'s nodes' configs (no counter for a node
    /// without one: nothing allocated, nothing counted, as the proxy).
    pub fn of(mesh: &Mesh, clock: Instant) -> Thresholds {
        let nodes: Vec<Option<(PeerStoreThreshold, RefCounts)>> = mesh
            .nodes
            .iter()
            .map(|n| {
                let t = n.config.peer_store_threshold.value;
                (t.count > 0).then(|| (t, RefCounts::new(t.window, clock)))
            })
            .collect();
        Thresholds {
            last_seen: vec![0; nodes.len()],
            nodes,
        }
    }

    /// Node `at` goes to its sources for the object of `key` at `now`.
    pub fn note(&mut self, at: usize, key: &[u8; 16], now: Instant) {
        let seen = match self.nodes.get(at) {
            Some(Some((_, counts))) => counts.note(key, now),
            _ => 0,
        };
        if let Some(slot) = self.last_seen.get_mut(at) {
            *slot = seen;
        }
    }

    /// With a threshold at node `at`: how many times it will have seen
    /// the object of `key` at `now` counting one more reference (what a
    /// redirect is decided on, `peers::holder::Ask::references`); nothing
    /// is counted. `None` without a threshold.
    pub fn next(&self, at: usize, key: &[u8; 16], now: Instant) -> Option<u32> {
        match self.nodes.get(at) {
            Some(Some((_, counts))) => Some(counts.estimate(key, now).saturating_add(1)),
            _ => None,
        }
    }

    /// Whether node `at` delivers what the source of `code` sent without
    /// storing it (its last counted request).
    pub fn forwards(&self, at: usize, code: HierarchyCode) -> bool {
        match (self.nodes.get(at), self.last_seen.get(at)) {
            (Some(Some((threshold, _))), Some(&seen)) => {
                peer_reply_forwarded(code, threshold, seen)
            }
            _ => false,
        }
    }
}

/// What the mesh's stores hold at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stored {
    /// Objects held by at least one node.
    pub distinct_objects: u64,
    /// Objects held, counted once per node holding them.
    pub copies: u64,
}

/// What the mesh's stores hold.
pub fn stored(holdings: &Holdings, nodes: usize) -> Stored {
    // Object ids are dense (0..objects): a flag per id, not a hash set.
    let mut held = Vec::new();
    let mut out = Stored::default();
    for node in 0..nodes {
        for object in holdings.held_by(node) {
            out.copies += 1;
            let i = object as usize;
            if held.len() <= i {
                held.resize(i + 1, false);
            }
            if let Some(seen) = held.get_mut(i) {
                out.distinct_objects += u64::from(!*seen);
                *seen = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {

    use super::super::engine::{Engine, Options};
    use super::super::mesh::Mesh;
    use super::super::tests::{get, PAIR};
    use super::super::trace::SkipCounts;

    /// Siblings a and b; a with `a_extra` (its threshold). b fetches /x,
    /// a learns b's RTT on /w, then a's clients ask for /x five times.
    fn five_asks(tag: &str, a_extra: &str) -> (u64, u64, u64, super::Stored) {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-thr-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sib = |other: &str, extra: &str| {
            format!(
                "http_port 3128\npid_filename none\nicp_port 3130\nicp_access allow all\n\
                 digest_generation off\ncache_mem 1 MB\ncache_peer {other} sibling 3128 3130\n{extra}\n"
            )
        };
        std::fs::write(dir.join("a.conf"), sib("10.0.0.2", a_extra)).unwrap();
        std::fs::write(dir.join("b.conf"), sib("10.0.0.1", "")).unwrap();
        std::fs::write(dir.join("mesh.toml"), PAIR).unwrap();
        let mesh = Mesh::load(&dir.join("mesh.toml")).unwrap();
        let mut engine = Engine::new(&mesh, Options::default()).unwrap();
        engine.request(&get(0.0, "10.2.0.1", "/x", 1000));
        engine.request(&get(5.0, "10.1.0.1", "/w", 1000));
        for i in 0..5 {
            engine.request(&get(10.0 + f64::from(i), "10.1.0.1", "/x", 1000));
        }
        let report = engine.finish(SkipCounts::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let a = &engine.stats()[0];
        (
            a.local_hits,
            a.sibling_hits,
            report.total.origin_requests,
            report.stored,
        )
    }

    /// Child a with parent b (no ICP, `never_direct`), a's `a_extra`
    /// (its threshold); a's clients ask for /x four times. Returns a's
    /// local and parent hits, the origin's requests, and the stores.
    fn four_asks_through_a_parent(tag: &str, a_extra: &str) -> (u64, u64, u64, super::Stored) {
        let dir =
            std::env::temp_dir().join(format!("cuttle-sim-thrp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = format!(
            "http_port 3128\npid_filename none\ndigest_generation off\ncache_mem 1 MB\n\
             cache_peer 10.0.0.2 parent 3128 0 no-query default\nnever_direct allow all\n{a_extra}\n"
        );
        let b = "http_port 3128\npid_filename none\ndigest_generation off\ncache_mem 1 MB\n";
        std::fs::write(dir.join("a.conf"), a).unwrap();
        std::fs::write(dir.join("b.conf"), b).unwrap();
        std::fs::write(dir.join("mesh.toml"), PAIR).unwrap();
        let mesh = Mesh::load(&dir.join("mesh.toml")).unwrap();
        let mut engine = Engine::new(&mesh, Options::default()).unwrap();
        for i in 0..4 {
            engine.request(&get(f64::from(i), "10.1.0.1", "/x", 1000));
        }
        let report = engine.finish(SkipCounts::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let a = &engine.stats()[0];
        (
            a.local_hits,
            a.parent_hits,
            report.total.origin_requests,
            report.stored,
        )
    }

    #[test]
    fn with_scope_peers_a_child_forwards_its_parents_replies_then_stores() {
        // Threshold 1, scope=peers: the first fetch through b (b's miss)
        // is delivered unstored, the second (b's hit) stored, then two
        // local hits; the origin served b once.
        let (local, parent, origin, stored) =
            four_asks_through_a_parent("peers", "peer_store_threshold 1 scope=peers");
        assert_eq!((local, parent, origin), (2, 1, 1));
        assert_eq!((stored.distinct_objects, stored.copies), (1, 2));
        // The default scope (peer hits only): a parent's answer is stored
        // at once, as Squid stores it; three local hits.
        let (local, parent, origin, _) =
            four_asks_through_a_parent("hits", "peer_store_threshold 1");
        assert_eq!((local, parent, origin), (3, 0, 1));
    }

    #[test]
    fn a_node_forwards_n_sibling_hits_then_stores_as_the_proxy_does() {
        // Threshold 2: two unstored sibling hits, the third stored, then
        // two local hits; one origin fetch for /x (b's) and one for /w.
        let (local, sibling, origin, stored) = five_asks("two", "peer_store_threshold 2");
        assert_eq!((local, sibling, origin), (2, 3, 2));
        // /x at both, /w at a.
        assert_eq!((stored.distinct_objects, stored.copies), (2, 3));
        // Without: the first sibling hit is stored, four local hits.
        let (local, sibling, origin, stored) = five_asks("none", "");
        assert_eq!((local, sibling, origin), (4, 1, 2));
        assert_eq!((stored.distinct_objects, stored.copies), (2, 3));
    }
}
