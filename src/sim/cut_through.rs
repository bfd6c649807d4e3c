//! `cut_through` in the simulator (issue 20): each node reads its line
//! from its squid.conf (the production reader) and races a miss whose
//! first source is a parent exactly as the proxy does
//! (`http::proxy::cut_through`): the hierarchy is asked with
//! only-if-cached (each level answers from its store; a level with
//! `cut_through on` passes its miss to its first parent, as the proxy's
//! relay does; none fetches), and the origin after the head start
//! (`CutThrough::head_start` of twice the link's latency, the RTT the
//! proxy would measure), or at once when the hierarchy's 504 comes back
//! first. Whoever's answer head arrives first wins. An origin request
//! sent and then beaten by the hierarchy is counted as dropped: the
//! origin saw it, nobody used it.
//!
//! A node's depth is the one the mesh gives it (parent levels above it:
//! 0 without a parent, else 1 + its nearest parent's), which `depth=N`
//! overrides, as discovery's reported depth would in the proxy.

use serde::Serialize;

use super::engine::{Class, Engine, Served};
use super::report::Latencies;
use crate::caching::freshness::is_fresh;
use crate::config::{CutThrough, PeerType};
use crate::peers::select::{peer_type_for, Source};

/// Every node's cut-through state and the run's figures.
pub struct CutThroughs {
    /// Per node: its line when it races at its depth.
    racing: Vec<Option<CutThrough>>,
    /// Per node: its first parent's node, for a relayed lookup, when it
    /// has `cut_through on`.
    relay_to: Vec<Option<usize>>,
    /// Per node: parent levels above it in the mesh, or its `depth=`.
    depth: Vec<u32>,
    /// Some node's config has a `cut_through` line: the report has the
    /// summary (on or off, so both runs of a comparison show it).
    written: bool,
    raced: u64,
    won_by_origin: u64,
    won_by_hierarchy: u64,
    dropped_origin: u64,
    /// Latency of the requests not served from the asked node's own store,
    /// at nodes of depth 2 or more.
    deep_misses: Latencies,
    deep_miss_count: u64,
}

/// The hierarchy's hit: when its head and its last byte are back at the
/// asking node, the copy's birth, bytes x hops, and the node that held it.
struct Found {
    head_ms: f64,
    done_ms: f64,
    birth: u64,
    bytes_hops: f64,
    holder: usize,
    /// The parent's proxy-only: the asking node does not keep the copy.
    proxy_only: bool,
    size: u64,
}

/// The run's cut-through figures (the report's `cut_through`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub raced: u64,
    pub won_by_origin: u64,
    pub won_by_hierarchy: u64,
    /// Origin requests sent, then beaten by the hierarchy.
    pub dropped_origin_requests: u64,
    /// Nodes at depth 2 or more, and their requests not served locally.
    pub deep_nodes: usize,
    pub deep_misses: u64,
    pub deep_miss_mean_ms: f64,
    pub deep_miss_p99_ms: f64,
}

impl Summary {
    /// The lines under the report's table.
    pub fn lines(&self, origin_requests: u64) -> String {
        format!(
            "cut-through: {} raced, {} won by the fast request (origin or exit), {} by the hierarchy; \
             origin requests {} (+{} dropped)\n\
             depth >= 2 ({} nodes): {} misses, mean {:.1} ms, p99 {:.1} ms\n",
            self.raced,
            self.won_by_origin,
            self.won_by_hierarchy,
            origin_requests,
            self.dropped_origin_requests,
            self.deep_nodes,
            self.deep_misses,
            self.deep_miss_mean_ms,
            self.deep_miss_p99_ms
        )
    }
}

/// Each node's parent nodes (cache_peer parents that are mesh nodes).
fn parents_of(engine_nodes: &[super::node::SimNode<'_>]) -> Vec<Vec<usize>> {
    engine_nodes
        .iter()
        .map(|n| {
            n.config
                .cache_peers
                .iter()
                .enumerate()
                .filter(|(_, cp)| cp.value.peer_type == PeerType::Parent)
                .filter_map(|(id, _)| n.peers.get(id).and_then(|p| p.node))
                .collect()
        })
        .collect()
}

/// Parent levels above each node: 0 without parents, else 1 + its first
/// parent's, the one its misses climb through (a cycle of parents stops
/// at the node count).
fn depths(parents: &[Vec<usize>]) -> Vec<u32> {
    let n = parents.len();
    let mut depth: Vec<u32> = parents
        .iter()
        .map(|p| if p.is_empty() { 0 } else { u32::MAX })
        .collect();
    for _ in 0..n {
        let mut changed = false;
        for i in 0..n {
            let best = parents[i]
                .first()
                .map_or(0, |&p| depth[p].saturating_add(1));
            if best < depth[i] {
                depth[i] = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth.iter().map(|&d| d.min(n as u32)).collect()
}

impl CutThroughs {
    pub(super) fn of(mesh: &super::Mesh, nodes: &[super::node::SimNode<'_>]) -> CutThroughs {
        let parents = parents_of(nodes);
        let lines: Vec<CutThrough> = mesh
            .nodes
            .iter()
            .map(|n| n.config.cut_through.value)
            .collect();
        // The mesh's depth unless the line writes one (as the proxy's
        // depth= wins over a reported one).
        let depth: Vec<u32> = depths(&parents)
            .iter()
            .zip(&lines)
            .zip(&parents)
            .map(|((&d, c), p)| c.node_depth(!p.is_empty(), Some(d)))
            .collect();
        CutThroughs {
            racing: lines
                .iter()
                .zip(&depth)
                .map(|(c, &d)| c.applies_at(d).then_some(*c))
                .collect(),
            relay_to: lines
                .iter()
                .zip(&parents)
                .map(|(c, p)| c.enabled.then(|| p.first().copied()).flatten())
                .collect(),
            written: mesh
                .nodes
                .iter()
                .any(|n| n.config.cut_through.location.is_some()),
            depth,
            raced: 0,
            won_by_origin: 0,
            won_by_hierarchy: 0,
            dropped_origin: 0,
            deep_misses: Latencies::default(),
            deep_miss_count: 0,
        }
    }

    /// A client request at `at` ended as `class` after `ms`.
    pub(super) fn note(&mut self, at: usize, class: Class, ms: f64) {
        // Reported only when some node has a `cut_through` line.
        if self.written && self.depth[at] >= 2 && !matches!(class, Class::Local | Class::Failed) {
            self.deep_misses.add(ms);
            self.deep_miss_count += 1;
        }
    }

    /// The summary, when some node has a `cut_through` line.
    pub(super) fn summary(&self) -> Option<Summary> {
        self.written.then(|| Summary {
            raced: self.raced,
            won_by_origin: self.won_by_origin,
            won_by_hierarchy: self.won_by_hierarchy,
            dropped_origin_requests: self.dropped_origin,
            deep_nodes: self.depth.iter().filter(|&&d| d >= 2).count(),
            deep_misses: self.deep_miss_count,
            deep_miss_mean_ms: self.deep_misses.mean_ms(),
            deep_miss_p99_ms: self.deep_misses.quantile_ms(0.99),
        })
    }
}

impl Engine<'_> {
    /// The cut-through race for a miss at `at` whose sources are
    /// `sources`, when `at` races and the first source is a parent and
    /// DIRECT is allowed; `None` leaves the walk to [`Engine`]'s fetch.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cut_through_fetch(
        &mut self,
        at: usize,
        object: u32,
        size: u64,
        head: bool,
        host: &str,
        sources: &[Source],
        now_ms: f64,
        epoch: f64,
    ) -> Option<(Served, bool)> {
        let line = self.cut_throughs.racing[at]?;
        let first = sources.first()?;
        let cp = &self.nodes[at].config.cache_peers.get(first.peer?)?.value;
        // exit=: the fast request goes to that node (it need not be DIRECT).
        let exit = match line.exit {
            Some(id) => Some(self.nodes[at].peers.get(id).and_then(|p| p.node)?),
            None => None,
        };
        if head
            || !first.absolute_form
            || peer_type_for(cp, host) != PeerType::Parent
            || (exit.is_none() && !sources.iter().any(|s| s.peer.is_none()))
            || exit.is_some_and(|x| x == at || self.topology.path(at, x).unreachable)
        {
            return None;
        }
        let parent = self.nodes[at].peers.get(first.peer?).and_then(|p| p.node)?;
        let link = self.topology.path(at, parent);
        if link.unreachable || parent == at {
            return None;
        }
        self.cut_throughs.raced += 1;
        let rtt_ms = (2.0 * link.latency_ms).round() as u64;
        let wait_ms = line.head_start(rtt_ms).as_secs_f64() * 1000.0;
        let guard = self.nodes.len();
        let found = self
            .look_up(at, parent, object, size, now_ms, epoch, guard)
            .map(|f| Found {
                proxy_only: first.proxy_only,
                ..f
            });
        let origin_start = match &found {
            Ok(_) => now_ms + wait_ms,
            Err(no_ms) => (now_ms + wait_ms).min(*no_ms),
        };
        if let Some(x) = exit {
            return Some(self.race_exit(at, x, object, size, found, origin_start, epoch));
        }
        let origin_head = origin_start + 2.0 * self.topology.origin(at).latency_ms;
        match found {
            Ok(f) if f.head_ms <= origin_head => {
                if f.head_ms > origin_start {
                    self.cut_throughs.dropped_origin += 1;
                }
                Some(self.hierarchy_won(&f))
            }
            _ => {
                self.cut_throughs.won_by_origin += 1;
                Some((
                    self.origin(at, object, (size, head), origin_start, epoch),
                    false,
                ))
            }
        }
    }

    /// The fast request to the exit node `x`, sent at `start_ms`, against
    /// the hierarchy's `found`. The exit serves it as any request (from
    /// its store, or fetching and keeping it). When the exit would have to
    /// fetch and the hierarchy's copy is back before the origin could
    /// answer the exit, the hierarchy wins and the exit's fetch is counted
    /// as dropped, not replayed (its store does not get the object).
    #[allow(clippy::too_many_arguments)]
    fn race_exit(
        &mut self,
        at: usize,
        x: usize,
        object: u32,
        size: u64,
        found: Result<Found, f64>,
        start_ms: f64,
        epoch: f64,
    ) -> (Served, bool) {
        let link = self.topology.path(at, x);
        let arrive = start_ms + link.latency_ms;
        let now = (epoch + arrive / 1000.0).max(0.0) as u64;
        let exit_holds = self.nodes[x]
            .store
            .peek(&self.holdings, object)
            .is_some_and(|h| is_fresh(&h.times, now));
        if let Ok(f) = &found {
            let exit_fetch_back =
                arrive + 2.0 * self.topology.origin(x).latency_ms + link.latency_ms;
            let beaten = f.head_ms <= start_ms || (!exit_holds && f.head_ms <= exit_fetch_back);
            if beaten {
                if f.head_ms > start_ms {
                    self.cut_throughs.dropped_origin += 1;
                }
                return self.hierarchy_won(f);
            }
        }
        self.stats[x].peer_requests += 1;
        let from = self.nodes[at].address;
        let got = self.serve(x, object, size, false, from, arrive);
        let exit_head = got.done_ms + link.latency_ms;
        match found {
            Ok(f) if f.head_ms <= exit_head => self.hierarchy_won(&f),
            _ => {
                self.cut_throughs.won_by_origin += 1;
                self.stats[x].proxy_bytes += size;
                let class = if got.class == Class::Origin {
                    Class::Origin
                } else {
                    Class::Parent
                };
                let served = Served {
                    class,
                    done_ms: exit_head + link.transfer_ms(size),
                    bytes_hops: got.bytes_hops + size as f64 * f64::from(link.hops),
                    birth: got.birth,
                };
                let exit_id = self.cut_throughs.racing[at].and_then(|l| l.exit);
                let proxy_only = exit_id
                    .and_then(|id| self.nodes[at].config.cache_peers.get(id))
                    .is_some_and(|cp| cp.value.proxy_only);
                (served, proxy_only)
            }
        }
    }

    /// The hierarchy's copy `f` won the race.
    fn hierarchy_won(&mut self, f: &Found) -> (Served, bool) {
        self.cut_throughs.won_by_hierarchy += 1;
        self.stats[f.holder].proxy_bytes += f.size;
        let served = Served {
            class: Class::Parent,
            done_ms: f.done_ms,
            bytes_hops: f.bytes_hops,
            birth: f.birth,
        };
        (served, f.proxy_only)
    }

    /// An only-if-cached request from `from` to `to` sent at `send_ms`:
    /// what `to` (or, relaying, the levels above it) holds fresh, or when
    /// the 504 is back at `from`.
    #[allow(clippy::too_many_arguments)]
    fn look_up(
        &mut self,
        from: usize,
        to: usize,
        object: u32,
        size: u64,
        send_ms: f64,
        epoch: f64,
        guard: usize,
    ) -> Result<Found, f64> {
        let link = self.topology.path(from, to);
        if link.unreachable {
            return Err(send_ms);
        }
        self.stats[to].peer_requests += 1;
        let ready = self.nodes[to].serve(send_ms + link.latency_ms);
        let now = (epoch + ready / 1000.0).max(0.0) as u64;
        let back = |ms: f64| ms + link.latency_ms;
        if let Some(held) = self.nodes[to].store.peek(&self.holdings, object) {
            if is_fresh(&held.times, now) {
                self.nodes[to].store.touch(&self.holdings, object);
                return Ok(Found {
                    head_ms: back(ready),
                    done_ms: back(ready) + link.transfer_ms(size),
                    birth: u64::from(held.times.date),
                    bytes_hops: size as f64 * f64::from(link.hops),
                    holder: to,
                    proxy_only: false,
                    size,
                });
            }
        }
        match self.cut_throughs.relay_to[to] {
            Some(up) if guard > 0 && up != from => {
                match self.look_up(to, up, object, size, ready, epoch, guard - 1) {
                    Ok(f) => Ok(Found {
                        head_ms: back(f.head_ms),
                        done_ms: back(f.done_ms) + link.transfer_ms(size),
                        bytes_hops: f.bytes_hops + size as f64 * f64::from(link.hops),
                        ..f
                    }),
                    Err(no_ms) => Err(back(no_ms)),
                }
            }
            _ => Err(back(ready)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::depths;
    use crate::sim::engine::{Engine, Options};
    use crate::sim::mesh::Mesh;
    use crate::sim::tests::get;
    use crate::sim::trace::SkipCounts;

    #[test]
    fn depth_is_one_more_than_the_first_parents() {
        // 0 <- 1 <- 2, and 3 with parents 0 then 2; 4 and 5 each other's.
        let parents = vec![vec![], vec![0], vec![1], vec![0, 2], vec![5], vec![4]];
        assert_eq!(depths(&parents), [0, 1, 2, 1, 6, 6]);
    }

    /// child -(10 ms)- mid -(10 ms)- top, each reaching the origin in 50
    /// ms on its own, serving in 1 ms; child and mid have `child_line`
    /// and `mid_line`. /a is asked at the child; /b at the top, then at
    /// the child. Per node: (origin requests, parent hits), the report's
    /// cut-through summary, and the child's latency of each request.
    fn chain(
        tag: &str,
        child_line: &str,
        mid_line: &str,
    ) -> (Vec<(u64, u64)>, Option<super::Summary>, f64) {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-ct-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = |parent: &str, line: &str| {
            let peer = if parent.is_empty() {
                String::new()
            } else {
                format!("cache_peer {parent} parent 3128 0 no-query\n")
            };
            format!("http_port 3128\npid_filename none\ncache_mem 1 MB\n{peer}{line}\n")
        };
        std::fs::write(dir.join("child.conf"), conf("10.0.0.2", child_line)).unwrap();
        std::fs::write(dir.join("mid.conf"), conf("10.0.0.3", mid_line)).unwrap();
        std::fs::write(dir.join("top.conf"), conf("", "")).unwrap();
        let mut toml = String::from("origin_latency_ms = 50\nreply_jitter_ms = 0\n");
        for (name, n, clients) in [
            ("child", 1, "10.1.0.0/16"),
            ("mid", 2, ""),
            ("top", 3, "10.3.0.0/16"),
        ] {
            let clients = if clients.is_empty() {
                String::new()
            } else {
                format!("\"{clients}\"")
            };
            toml.push_str(&format!(
                "[nodes.{name}]\nconfig = \"{name}.conf\"\naddress = \"10.0.0.{n}\"\n\
                 clients = [{clients}]\nservice_ms = 1\n"
            ));
        }
        toml.push_str("[[links]]\na = \"child\"\nb = \"mid\"\nlatency_ms = 10\n");
        toml.push_str("[[links]]\na = \"mid\"\nb = \"top\"\nlatency_ms = 10\n");
        std::fs::write(dir.join("mesh.toml"), toml).unwrap();
        let mesh = Mesh::load(&dir.join("mesh.toml")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut engine = Engine::new(&mesh, Options::default()).unwrap();
        engine.request(&get(0.0, "10.1.0.1", "/a", 1000));
        let first = engine.stats()[0].latency.mean_ms();
        engine.request(&get(1.0, "10.3.0.1", "/b", 1000));
        engine.request(&get(2.0, "10.1.0.1", "/b", 1000));
        let report = engine.finish(SkipCounts::default()).unwrap();
        let per_node = engine
            .stats()
            .iter()
            .map(|s| (s.origin_requests, s.parent_hits))
            .collect();
        (per_node, report.cut_through, first)
    }

    #[test]
    fn a_child_at_depth_2_races_and_the_origin_sees_one_request_each() {
        // Off: /a climbs to the top, which fetches it: 1 + 10 + 1 + 10 +
        // 1 + 100 + 10 + 10 = 143 ms; /b is the top's, a parent hit for the
        // child. The summary is there (a cut_through line is written).
        let (off, summary, first) = chain("off", "cut_through off", "cut_through off");
        assert_eq!(off, [(0, 1), (0, 0), (2, 0)]);
        assert!((first - 143.0).abs() < 0.01, "{first}");
        let summary = summary.unwrap();
        assert_eq!(
            (summary.raced, summary.deep_nodes, summary.deep_misses),
            (0, 1, 2)
        );
        // On (background): /a's lookup comes back 504 at 43 ms (the mid
        // passes it to the top), before the 50 ms head start: the child
        // fetches it at 43 -> 143 ms, the only origin request for /a. /b
        // is found at the top, back at the child at 43 ms, before the
        // origin request would start: a parent hit, nothing dropped.
        let line = "cut_through on min_depth=2";
        let (on, summary, first) = chain("on", line, line);
        assert_eq!(on, [(1, 1), (0, 0), (1, 0)]);
        assert!((first - 143.0).abs() < 0.01, "{first}");
        let s = summary.unwrap();
        assert_eq!((s.raced, s.won_by_origin, s.won_by_hierarchy), (2, 1, 1));
        assert_eq!(s.dropped_origin_requests, 0);
        // Foreground: the origin request leaves at 1 ms: /a in 101 ms; /b's
        // origin request is sent too and beaten (43 < 101): dropped.
        let fg = "cut_through on min_depth=2 foreground";
        let (on, summary, first) = chain("fg", fg, line);
        assert_eq!(on, [(1, 1), (0, 0), (1, 0)]);
        assert!((first - 101.0).abs() < 0.01, "{first}");
        assert_eq!(summary.unwrap().dropped_origin_requests, 1);
        // Without the mid's line, the lookup stops at the mid (504) and
        // the child fetches /b itself.
        let (on, _, _) = chain("norelay", line, "");
        assert_eq!(on, [(2, 0), (0, 0), (1, 0)]);
    }

    #[test]
    fn with_an_exit_the_top_fetches_and_keeps_what_the_child_raced_for() {
        // The child also has the top as parent `top` (after the mid) and
        // `exit=top`, foreground: /a goes child -> top at 1 ms (20 ms over
        // the two links), the top is ready at 23 ms (its FIFO took the
        // hierarchy's lookup, replayed first, at 22-23) and fetches it (+
        // 100): back at 143 ms, after the hierarchy's 504 (43 ms): one
        // origin request, the top's. /b (the top's already): the top
        // takes the lookup first again (22-23), so the fast request's hit
        // is back at 44 ms, after the hierarchy's copy (43 ms): a parent
        // hit; the fast request cost the origin nothing.
        let exit = "cache_peer 10.0.0.3 parent 3128 0 no-query name=top\n\
                    cut_through on min_depth=2 foreground exit=top";
        let (on, summary, first) = chain("exit", exit, "cut_through on min_depth=2");
        assert_eq!(on, [(0, 1), (0, 0), (2, 0)]);
        assert!((first - 143.0).abs() < 0.01, "{first}");
        let s = summary.unwrap();
        assert_eq!((s.raced, s.won_by_origin, s.won_by_hierarchy), (2, 1, 1));
        assert_eq!(s.dropped_origin_requests, 0);
    }
}
