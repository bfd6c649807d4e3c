//! Proxy sharing in the simulator (issue 21): with `share_log = true` in
//! the mesh file the origin is an owner keeping a share log, and a node
//! whose squid.conf has `share_offer on` offers what it fetches from the
//! origin. As the proxy (`http::proxy::share_owner`), the owner answers an
//! offering node's request for an object of at least `share_log`'s default
//! `min_size` with a list when its log holds a node nearer to the asker
//! than the origin (here: a shorter path, the mesh having no localities),
//! naming the most recent `candidates` of them (the asker excluded); else
//! it sends the body and logs the asker (the newest 10 per object). The
//! asker probes its first `probes` candidates at once (each a round trip;
//! a candidate holds the object fresh or answers 504) and fetches from the
//! quickest holder; when none holds it, it asks the origin again with a
//! plain request once every probe has answered. An asker that got a list
//! is logged all the same: it offered, and holds a copy either way. The
//! list's round trip to the origin carries a few hundred bytes, not
//! counted in the origin's bytes.

use std::collections::{HashMap, VecDeque};

use super::engine::{unix, Class, Engine, Served};
use crate::caching::freshness::is_fresh;
use crate::config::ShareLog;
use crate::peers::share_log::PER_RESOURCE;

/// The owner's log and what sharing did.
pub struct Sharing {
    /// Per node: its squid.conf says `share_offer on`.
    offers: Vec<bool>,
    min_size: u64,
    candidates: usize,
    /// Per object, the nodes that offered it and got it (from the origin
    /// or a candidate), oldest first.
    log: HashMap<u32, VecDeque<usize>>,
    /// Lists the origin sent.
    pub lists: u64,
    /// Bodies fetched from a candidate.
    pub share_hits: u64,
    /// Lists after which the origin sent the body after all.
    pub fallbacks: u64,
}

impl Sharing {
    /// The mesh's sharing, if its file says `share_log = true`.
    pub fn of(mesh: &super::Mesh) -> Option<Sharing> {
        let log = ShareLog::default();
        mesh.share_log.then(|| Sharing {
            offers: mesh
                .nodes
                .iter()
                .map(|n| n.config.share.offer.value.on)
                .collect(),
            min_size: log.min_size,
            candidates: log.candidates as usize,
            log: HashMap::new(),
            lists: 0,
            share_hits: 0,
            fallbacks: 0,
        })
    }

    fn note(&mut self, at: usize, object: u32) {
        let entries = self.log.entry(object).or_default();
        entries.retain(|&n| n != at);
        if entries.len() >= PER_RESOURCE {
            entries.pop_front();
        }
        entries.push_back(at);
    }
}

/// What the owner's answer to a fetch from the origin came to.
pub(super) enum Shared {
    /// No list: the origin sends the body, and logs the asker when `log`.
    Body { log: bool },
    /// A candidate sent it.
    Hit(Served),
    /// A list whose candidates all failed: the origin sends the body
    /// from this time on (ms).
    Fallback(f64),
}

impl Engine<'_> {
    /// Node `at` is about to fetch `object` (`size` bytes) from the origin
    /// at `now_ms`: what proxy sharing makes of it.
    pub(super) fn shared(
        &mut self,
        at: usize,
        object: u32,
        size: u64,
        now_ms: f64,
        epoch: f64,
    ) -> Shared {
        let Some(sharing) = &self.sharing else {
            return Shared::Body { log: false };
        };
        if !sharing.offers.get(at).copied().unwrap_or(false) || size < sharing.min_size {
            return Shared::Body { log: false };
        }
        let origin = self.topology.origin(at);
        let near: Vec<usize> = sharing
            .log
            .get(&object)
            .into_iter()
            .flat_map(|l| l.iter().rev().copied())
            .filter(|&c| {
                let p = self.topology.path(c, at);
                c != at && !p.unreachable && p.latency_ms < origin.latency_ms
            })
            .take(sharing.candidates)
            .collect();
        if near.is_empty() {
            return Shared::Body { log: true };
        }
        let probes = self.nodes[at].config.share.offer.value.probes as usize;
        let listed = now_ms + 2.0 * origin.latency_ms;
        let mut all_answered = listed;
        let mut quickest: Option<(f64, usize, u64)> = None;
        for &c in near.iter().take(probes) {
            let answered = listed + 2.0 * self.topology.path(c, at).latency_ms;
            all_answered = all_answered.max(answered);
            let held = self.nodes[c]
                .store
                .peek(&self.holdings, object)
                .filter(|h| is_fresh(&h.times, unix(epoch, answered)));
            if let Some(h) = held {
                if quickest.is_none_or(|(t, _, _)| answered < t) {
                    quickest = Some((answered, c, u64::from(h.times.date)));
                }
            }
        }
        let Some(sharing) = self.sharing.as_mut() else {
            return Shared::Body { log: false };
        };
        sharing.lists += 1;
        // As the proxy's owner: the asker offered and will hold a copy,
        // from a candidate or from the origin, so it is logged now.
        sharing.note(at, object);
        let Some((answered, c, birth)) = quickest else {
            sharing.fallbacks += 1;
            return Shared::Fallback(all_answered);
        };
        sharing.share_hits += 1;
        let p = self.topology.path(c, at);
        self.stats[c].peer_requests += 1;
        self.nodes[c].store.touch(&self.holdings, object);
        Shared::Hit(Served {
            class: Class::Sibling,
            done_ms: answered + 2.0 * p.latency_ms + p.transfer_ms(size),
            bytes_hops: size as f64 * f64::from(p.hops),
            birth,
        })
    }

    /// Node `at` got `object`'s body from the origin after offering it.
    pub(super) fn share_logged(&mut self, at: usize, object: u32) {
        if let Some(sharing) = self.sharing.as_mut() {
            sharing.note(at, object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::{Engine, Options};
    use super::super::mesh::Mesh;
    use super::super::tests::get;
    use super::super::trace::SkipCounts;

    /// a and b 5 ms apart, c 100 ms from a; the origin 50 ms from each.
    const TRIO: &str = r#"
origin_latency_ms = 50
reply_jitter_ms = 0
share_log = true
[nodes.a]
config = "a.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.b]
config = "b.conf"
address = "10.0.0.2"
clients = ["10.2.0.0/16"]
[nodes.c]
config = "c.conf"
address = "10.0.0.3"
clients = ["10.3.0.0/16"]
[[links]]
a = "a"
b = "b"
latency_ms = 5
[[links]]
a = "a"
b = "c"
latency_ms = 100
"#;

    #[test]
    fn a_near_node_fetches_from_the_one_the_origin_logged() {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-sharing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(
                dir.join(format!("{name}.conf")),
                "http_port 3128\npid_filename none\nshare_offer on\n",
            )
            .unwrap();
        }
        let path = dir.join("mesh.toml");
        std::fs::write(&path, TRIO).unwrap();
        let mesh = Mesh::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut engine = Engine::new(&mesh, Options::default()).unwrap();
        let trace = [
            get(0.0, "10.1.0.1", "/big", 100_000),
            get(10.0, "10.2.0.1", "/big", 100_000),
            get(20.0, "10.3.0.1", "/big", 100_000),
            get(30.0, "10.1.0.1", "/small", 5_000),
            get(40.0, "10.2.0.1", "/small", 5_000),
        ];
        for r in &trace {
            engine.request(r);
        }
        let sharing = engine.sharing.as_ref().expect("share_log = true");
        assert_eq!(
            (sharing.lists, sharing.share_hits, sharing.fallbacks),
            (1, 1, 0)
        );
        let report = engine.finish(SkipCounts::default()).unwrap();
        let row = |name: &str| report.nodes.iter().find(|r| r.node == name).unwrap();
        // b got /big from a; c, far from a, and /small (under 10 KB) from the origin.
        assert_eq!(
            [row("a"), row("b"), row("c")].map(|r| r.origin_requests),
            [2, 1, 1]
        );
        assert_eq!(row("b").hit_ratio_sibling, 0.5);
        assert_eq!(row("a").peer_requests, 1);
        assert_eq!(report.total.origin_bytes, 210_000);
    }

    /// a and b 28 ms apart, d 5 ms from b (33 ms from a); the origin 30 ms
    /// from each: a is nearer than the origin to b, not to d.
    const CHAIN: &str = r#"
origin_latency_ms = 30
reply_jitter_ms = 0
share_log = true
[nodes.a]
config = "a.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.b]
config = "b.conf"
address = "10.0.0.2"
clients = ["10.2.0.0/16"]
[nodes.d]
config = "d.conf"
address = "10.0.0.4"
clients = ["10.4.0.0/16"]
[[links]]
a = "a"
b = "b"
latency_ms = 28
[[links]]
a = "b"
b = "d"
latency_ms = 5
"#;

    #[test]
    fn a_node_that_fetched_from_a_candidate_is_logged_as_one() {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b", "d"] {
            std::fs::write(
                dir.join(format!("{name}.conf")),
                "http_port 3128\npid_filename none\nshare_offer on\n",
            )
            .unwrap();
        }
        let path = dir.join("mesh.toml");
        std::fs::write(&path, CHAIN).unwrap();
        let mesh = Mesh::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut engine = Engine::new(&mesh, Options::default()).unwrap();
        for r in [
            get(0.0, "10.1.0.1", "/big", 100_000),
            get(10.0, "10.2.0.1", "/big", 100_000),
            get(20.0, "10.4.0.1", "/big", 100_000),
        ] {
            engine.request(&r);
        }
        // b got it from a and offered it: d, too far from a, gets it from b.
        let sharing = engine.sharing.as_ref().expect("share_log = true");
        assert_eq!((sharing.lists, sharing.share_hits), (2, 2));
        let report = engine.finish(SkipCounts::default()).unwrap();
        assert_eq!(report.total.origin_bytes, 100_000);
    }
}
