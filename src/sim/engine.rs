//! The simulation: trace requests replayed over the mesh on a virtual
//! clock (the trace's own times). A request at its node is a local hit
//! when the node holds a fresh copy (`caching::is_fresh`); else peer
//! selection runs the proxy's sans-IO core (`peers::core`: digest choice,
//! who to ping, the query round, the decision) over the node's
//! [`PeerView`](crate::peers::core::PeerView), the queried nodes answering
//! from their simulated stores by the responders' own rules
//! (`icp_server::answers_hit`, `htcp_server::tst_finds`, `icp_access`,
//! `htcp_access`). The sources are tried in order: a sibling serves only
//! what it holds fresh (unless `allow-miss`); a parent runs the whole
//! request path itself; DIRECT goes to the origin (through `origin_via`).
//! The requesting node stores what it got unless the peer is `proxy-only`,
//! the request is a HEAD or the object is too big, with times computed by
//! the proxy's freshness code from a synthetic Last-Modified (a document
//! was last modified 1 hour to 30 days, fixed by its URL, before the
//! trace began) or, with `--ttl`, an explicit max-age. A node with
//! `holder_redirect` may instead send the client to the holder
//! ([`super::redirect`]).
//!
//! A trace's `#change` lines give documents versions ([`super::changes`]):
//! then stale hits are counted, an expired copy is revalidated, adaptive
//! polling and pushed notices run. Without them a stale copy is fetched
//! again in full (no revalidation). Nothing fails but what the mesh
//! cannot reach.
//! Digests are real Cache Digests (with their false hits), and a Squid
//! node reads a Squid node's digest garbled as Squid does (squid-spec 5.5).

use std::time::{Duration, Instant};

use http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::mesh::{ClientNodes, Kind, Mesh};
use super::node::{Digest, SimNode, View};
use super::objects::{Objects, Url};
use super::report::{check_conservation, NodeStats, Report, Row};
use super::store::{Held, Holdings};
use super::topology::Topology;
use super::trace::{Change, SkipCounts, TraceRequest};
use super::verdicts::{DirectVerdicts, QueryVerdicts};
use crate::access;
use crate::caching::freshness::{is_fresh, times_of, Exchange, Facts};
use crate::caching::Rule;
use crate::peers::core::decide::{decide_in, digest_choice, direct_by, to_ping_into, Kept};
use crate::peers::core::round::{Query, Replies, Reply};
use crate::peers::core::{Effect, PeerId};
use crate::peers::select::{hierarchical, queries_wanted, stoplisted, SelectRequest, Source};

/// How many client addresses' nodes are remembered.
const CLIENT_CACHE: usize = 1 << 16;

mod round;

/// Options of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Every document's lifetime (an explicit max-age) instead of the
    /// refresh_pattern heuristics on its synthetic Last-Modified.
    pub ttl: Option<u64>,
    /// Seeds the reply jitter: a seed gives the same run every time.
    pub seed: u64,
    /// Publishers' `htcp_monitor_update_hits` (`None`:
    /// `caching::push::DEFAULT_UPDATE_HITS`), for runs with changes.
    pub update_hits: Option<u32>,
}

/// Where a request's object came from, as the node that asked sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Local,
    Sibling,
    Parent,
    Origin,
    Failed,
}

/// A request's outcome at one node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Served {
    pub(super) class: Class,
    /// When the node has the whole object (ms since the trace's start).
    pub(super) done_ms: f64,
    pub(super) bytes_hops: f64,
    /// When the copy served was born (its Date), unix seconds.
    pub(super) birth: u64,
}

/// A mesh being simulated.
pub struct Engine<'m> {
    pub(super) mesh: &'m Mesh,
    options: Options,
    pub(super) topology: Topology,
    pub(super) nodes: Vec<SimNode<'m>>,
    pub(super) stats: Vec<NodeStats>,
    /// What every node holds (the stores' entries, object by object).
    pub(super) holdings: Holdings,
    /// The earliest of the nodes' next digest rebuilds (ms).
    next_digest_ms: f64,
    /// The trace's URLs, numbered (store keys and parts worked out once).
    pub(super) objects: Objects,
    clock: Instant,
    /// The trace's first time (unix seconds): ms count from here.
    epoch: Option<f64>,
    /// Nodes a request is passing through (loop detection, as Via does).
    pub(super) chain: Vec<usize>,
    replies: Vec<(f64, Reply)>,
    /// The node of client addresses seen lately.
    clients: ClientNodes,
    /// Replies after their round's end: (when, peer, RTT ms), the rounds
    /// of the requests in progress one after the other (a nested request's
    /// after its asker's; each takes its own off the end when done).
    late: Vec<(f64, usize, u64)>,
    unrouted: u64,
    /// Draws each ICP/HTCP reply's jitter (seeded: a run is repeatable).
    jitter: StdRng,
    /// Each node's peer_store_threshold and reference counter.
    pub(super) thresholds: super::threshold::Thresholds,
    /// The responders' icp_access/htcp_access verdicts, node by node.
    verdicts: QueryVerdicts,
    /// The nodes' always_direct/never_direct verdicts that are fixed.
    direct_verdicts: DirectVerdicts,
    /// Each node's holder_redirect state (`sim::redirect`).
    pub(super) redirects: super::redirect::Redirects,
    /// The owner's share log, with a `share_owner` whose config says
    /// `share_log on` (`sim::sharing`).
    pub(super) sharing: Option<super::sharing::Sharing>,
    /// The selection core's lists, kept from request to request.
    lists: CoreLists,
    /// Each node's `cut_through` and the run's figures (`sim::cut_through`).
    pub(super) cut_throughs: super::cut_through::CutThroughs,
    /// Versions, validations and pushed notices, from the trace's first
    /// change line on (`sim::changes`).
    pub(super) changes: Option<Box<super::changes::Changes>>,
}

/// The lists a query round fills, kept by the engine so that a request
/// allocates none: the peers to ask, the last round's replies (their
/// lists reused by the next round), the queries and their effects.
#[derive(Default)]
struct CoreLists {
    /// Emptied sources lists for the next selections to fill (one per
    /// request in progress: a parent's selection runs inside its child's).
    sources: Vec<Vec<Source>>,
    /// The usable parents a decision lists.
    parents: Vec<PeerId>,
    targets: Vec<(PeerId, crate::config::PeerType)>,
    spare: Replies,
    queries: Vec<Query>,
    effects: Vec<Effect>,
}

/// Unix seconds, whole, for the freshness code.
pub(super) fn unix(epoch: f64, ms: f64) -> u64 {
    (epoch + ms / 1000.0).max(0.0) as u64
}

/// Seconds from 1 hour to 30 days, fixed by the key: how long before the
/// trace began a document was last modified.
fn modified_before(key: &[u8; 16]) -> u64 {
    let spread = u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    3600 + spread % (30 * 86_400 - 3600)
}

impl<'m> Engine<'m> {
    pub fn new(mesh: &'m Mesh, options: Options) -> Result<Engine<'m>, String> {
        let topology = Topology::of(mesh)?;
        let clock = Instant::now();
        let nodes: Vec<SimNode<'m>> = (0..mesh.nodes.len())
            .map(|i| SimNode::new(mesh, i, clock))
            .collect();
        let cut_throughs = super::cut_through::CutThroughs::of(mesh, &nodes);
        Ok(Engine {
            mesh,
            options,
            topology,
            nodes,
            stats: vec![NodeStats::default(); mesh.nodes.len()],
            holdings: Holdings::new(mesh.nodes.len()),
            next_digest_ms: 0.0,
            objects: Objects::default(),
            clock,
            epoch: None,
            chain: Vec::new(),
            replies: Vec::new(),
            late: Vec::new(),
            lists: CoreLists::default(),
            clients: ClientNodes::new(mesh, CLIENT_CACHE),
            unrouted: 0,
            jitter: StdRng::seed_from_u64(options.seed),
            thresholds: super::threshold::Thresholds::of(mesh, clock),
            verdicts: QueryVerdicts::new(mesh.nodes.iter().map(|n| &n.config)),
            direct_verdicts: DirectVerdicts::new(mesh.nodes.iter().map(|n| &n.config)),
            redirects: super::redirect::Redirects::of(mesh),
            cut_throughs,
            sharing: super::sharing::Sharing::of(mesh),
            changes: None,
        })
    }

    /// Replays one `#change` line: the document's new version at the
    /// origin (`sim::changes`).
    pub fn change(&mut self, c: &Change) {
        let epoch = self.epoch.unwrap_or(c.time);
        let first = self.objects.len();
        let object = self.objects.intern(&c.url, epoch, modified_before);
        self.objects
            .set_modified(object, c.time.max(0.0) as u64, object as usize == first);
        let changes = self.changes.get_or_insert_with(|| {
            Box::new(super::changes::Changes::new(
                &self.nodes,
                &self.topology,
                self.options.ttl.is_some(),
                self.options.update_hits,
            ))
        });
        let mut world = super::changes::World {
            nodes: &mut self.nodes,
            holdings: &mut self.holdings,
            objects: &mut self.objects,
            epoch,
        };
        changes.change(object, (c.time - epoch) * 1000.0, &mut world);
    }

    /// The parts of the engine `sim::changes` works on, and its state.
    fn changes_world(
        &mut self,
    ) -> Option<(&mut super::changes::Changes, super::changes::World<'_, 'm>)> {
        let changes = self.changes.as_deref_mut()?;
        Some((
            changes,
            super::changes::World {
                nodes: &mut self.nodes,
                holdings: &mut self.holdings,
                objects: &mut self.objects,
                epoch: self.epoch.unwrap_or(0.0),
            },
        ))
    }

    /// Distinct objects seen so far.
    pub fn objects(&self) -> usize {
        self.objects.len()
    }

    pub(super) fn instant(&self, ms: f64) -> Instant {
        // Whole nanoseconds: cheaper than from_secs_f64, and as exact here.
        self.clock + Duration::from_nanos((ms.max(0.0) * 1e6) as u64)
    }

    /// Replays one trace request.
    pub fn request(&mut self, r: &TraceRequest) {
        let epoch = *self.epoch.get_or_insert(r.time);
        let mesh = self.mesh;
        let Some(at) = self.clients.node(mesh, r.client) else {
            self.unrouted += 1;
            return;
        };
        let object = self.objects.intern(&r.url, epoch, modified_before);
        let arrive = (r.time - epoch) * 1000.0;
        let head = r.method == http::Method::HEAD;
        self.rebuild_digests(arrive);
        self.chain.clear();
        if let Some((c, mut w)) = self.changes_world() {
            let lm = w.objects.get(object).last_modified;
            c.begin(lm, arrive, &mut w);
        }
        let served = self.serve(at, object, r.size, head, r.client, arrive);
        if let Some(c) = self.changes.as_deref_mut() {
            c.end(at, object, arrive);
        }
        let redirected = self.redirects.take_redirected();
        let s = &mut self.stats[at];
        if served.class != Class::Failed && !head && !redirected {
            s.proxy_bytes += r.size;
        }
        s.requests += 1;
        s.client_bytes += r.size;
        s.bytes_hops += served.bytes_hops;
        match served.class {
            Class::Local => s.local_hits += 1,
            Class::Sibling => s.sibling_hits += 1,
            Class::Parent => s.parent_hits += 1,
            Class::Origin => {
                s.misses += 1;
                s.miss_bytes += r.size;
            }
            Class::Failed => s.failed += 1,
        }
        if served.class != Class::Failed {
            s.latency.add(served.done_ms - arrive);
        }
        self.cut_throughs
            .note(at, served.class, served.done_ms - arrive);
    }

    fn rebuild_digests(&mut self, now_ms: f64) {
        if now_ms < self.next_digest_ms {
            return;
        }
        self.next_digest_ms = f64::INFINITY;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if node.config.digest_generation.value && now_ms >= node.next_digest_ms {
                let bits_per_entry =
                    u8::try_from(node.config.digest_bits_per_entry.value.clamp(1, 255))
                        .unwrap_or(5);
                node.digest = Digest::of(
                    &self.holdings,
                    i,
                    self.objects.keys(),
                    &node.store,
                    bits_per_entry,
                    node.kind == Kind::Squid,
                );
                let period = node.config.digest_rebuild_period.value.as_secs_f64() * 1000.0;
                node.next_digest_ms = now_ms + period.max(1.0);
            }
            if node.config.digest_generation.value {
                self.next_digest_ms = self.next_digest_ms.min(node.next_digest_ms);
            }
        }
    }

    /// A request for `object` arriving at node `at` at `arrive` (ms) from
    /// `client` (a trace client, or the asking node's address).
    pub(super) fn serve(
        &mut self,
        at: usize,
        object: u32,
        size: u64,
        head: bool,
        client: std::net::IpAddr,
        arrive: f64,
    ) -> Served {
        let epoch = self.epoch.unwrap_or(0.0);
        let looped = self.chain.contains(&at);
        let node = &mut self.nodes[at];
        let ready = node.serve(arrive);
        // A loop the config keeps forwarding (never_direct) would never
        // end: it fails after twice as many hops as the mesh has nodes.
        if self.chain.len() >= 2 * self.mesh.nodes.len() {
            return Served {
                class: Class::Failed,
                done_ms: ready,
                bytes_hops: 0.0,
                birth: 0,
            };
        }
        self.chain.push(at);
        let held = node.store.peek(&self.holdings, object);
        if let Some(c) = self.changes.as_deref_mut() {
            c.used(at, object, unix(epoch, ready));
        }
        if let Some(held) = held {
            if is_fresh(&held.times, unix(epoch, ready)) {
                self.nodes[at].store.touch(&self.holdings, object);
                self.chain.pop();
                if let Some((c, mut w)) = self.changes_world() {
                    c.served(at, object, held, ready, true, &mut w);
                }
                return Served {
                    class: Class::Local,
                    done_ms: ready,
                    bytes_hops: 0.0,
                    birth: u64::from(held.times.date),
                };
            }
        }
        let (url, parts) = {
            let o = self.objects.get(object);
            (o.full.clone(), o.url.clone())
        };
        let (s, not_stored) = self.forward(at, object, size, head, client, parts, looped, ready);
        self.chain.pop();
        // Whether the node keeps what it got (from the origin, a parent or
        // a sibling's hit): not a failure, a HEAD or a proxy-only peer's.
        if s.class == Class::Failed || head || not_stored {
            return s;
        }
        let config = self.nodes[at].config;
        let last_modified = match &self.changes {
            Some(c) => u64::from(c.body_lm),
            None => self.objects.get(object).last_modified,
        };
        let mut facts = Facts {
            date: Some(s.birth),
            last_modified: Some(last_modified),
            ..Facts::default()
        };
        facts.cc.max_age = self.options.ttl;
        let exchange = Exchange {
            request_time: unix(epoch, ready),
            response_time: unix(epoch, s.done_ms),
        };
        let rule = Rule::for_url(config, &url);
        let mut times = times_of(StatusCode::OK, &facts, &rule, exchange);
        if let Some(c) = &self.changes {
            times = c.stored_times(at, &rule, held, times);
        }
        self.nodes[at]
            .store
            .insert(&mut self.holdings, object, Held { size, times });
        s
    }

    /// [`Engine::walk`], then the round's late replies: each revives its
    /// peer, and teaches its RTT when it came before the object did.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        at: usize,
        object: u32,
        size: u64,
        head: bool,
        client: std::net::IpAddr,
        url: Option<Url>,
        looped: bool,
        ready: f64,
    ) -> (Served, bool) {
        let Some(url) = url else {
            let epoch = self.epoch.unwrap_or(0.0);
            return (self.origin(at, object, (size, head), ready, epoch), false);
        };
        // This request's late replies are those its round adds from here.
        let late_from = self.late.len();
        let (sources, now_ms, now) = self.select(at, object, head, client, &url, looped, ready);
        let redirected =
            self.redirect_to_holder(at, object, size, head, client, &sources, (now, now_ms));
        if !head && redirected.is_none() {
            self.thresholds.note(at, self.objects.key(object), now);
        }
        let served = match redirected {
            Some(served) => (served, true),
            None => {
                let fetched = self.fetch(at, object, size, head, &url.host, &sources, now_ms);
                if fetched.0.class != Class::Failed {
                    self.redirects.note_size(at, self.objects.key(object), size);
                }
                fetched
            }
        };
        for &(when, peer, rtt_ms) in &self.late[late_from..] {
            let in_flight = when <= served.0.done_ms;
            self.nodes[at].note_reply(peer, in_flight.then_some(rtt_ms));
        }
        self.late.truncate(late_from);
        let mut sources = sources;
        sources.clear();
        self.lists.sources.push(sources);
        served
    }

    /// Peer selection as the proxy runs it for an absolute URL: the
    /// ordered sources, when the query round (if any) ended, and `ready`
    /// as an instant.
    #[allow(clippy::too_many_arguments)]
    fn select(
        &mut self,
        at: usize,
        object: u32,
        head: bool,
        client: std::net::IpAddr,
        parts: &Url,
        looped: bool,
        ready: f64,
    ) -> (Vec<Source>, f64, Instant) {
        let url: &str = &parts.full;
        let host: &str = &parts.host;
        let method = if head { "HEAD" } else { "GET" };
        let config = self.nodes[at].config;
        let access = access::Request {
            client,
            method,
            scheme: parts.scheme(),
            host,
            port: parts.port,
            path: parts.path(),
            url,
            local_ip: Some(self.nodes[at].address),
            local_port: 0,
            port_name: "",
            dst_addrs: None,
        };
        let req = SelectRequest {
            access,
            hierarchical: hierarchical(method, false, false, looped) && !stoplisted(config, url),
            siblings_ok: !looped,
            looped,
            accel_no_direct: false,
        };
        let mut now_ms = ready;
        let now = self.instant(ready);
        let fixed = &self.direct_verdicts;
        let direct = direct_by(
            || fixed.allowed(at, false, config, &req.access),
            || fixed.allowed(at, true, config, &req.access),
            &req,
        );
        let mut replies = None;
        let mut digest_hit = None;
        if queries_wanted(direct, &req) {
            let start = self.nodes[at].next_ping_start();
            let view = View::new(&self.nodes, at, self.objects.key(object));
            let (hit, effects) = digest_choice(&view, config, &req, start, now);
            let mut targets = std::mem::take(&mut self.lists.targets);
            targets.clear();
            let more = if hit.is_none() {
                to_ping_into(&view, config, &req, start, now, &mut targets)
            } else {
                Vec::new()
            };
            self.nodes[at].apply_all(&effects);
            self.nodes[at].apply_all(&more);
            digest_hit = hit;
            if targets.is_empty() {
                self.lists.targets = targets;
            } else {
                let (r, ended) = self.query_round(at, object, &req, host, targets, ready, now);
                replies = r;
                now_ms = ended;
            }
        }
        let view = View::new(&self.nodes, at, self.objects.key(object));
        let mut parents = std::mem::take(&mut self.lists.parents);
        let kept = Kept {
            sources: self.lists.sources.pop().unwrap_or_default(),
            direct_host: Some(&parts.host),
            parents: Some(&mut parents),
        };
        // One call for both cases: a digest hit makes no round (no
        // replies, and the request's own time).
        let mut decision = decide_in(
            &view,
            &self.nodes[at].hashes,
            config,
            &req,
            direct,
            digest_hit,
            replies,
            // No round: the decision's time is the request's.
            if now_ms == ready {
                now
            } else {
                self.instant(now_ms)
            },
            kept,
        );
        self.lists.parents = parents;
        self.nodes[at].apply_all(&decision.effects);
        // The round's lists serve the next round.
        if let Some(mut r) = decision.selection.replies.take() {
            self.lists.targets = std::mem::take(&mut r.asked);
            self.lists.spare = r;
        }
        (decision.selection.sources, now_ms, now)
    }

    /// The walk down the sources from `now_ms`; the flag: the copy is not
    /// to be stored (proxy-only, or nothing got).
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &mut self,
        at: usize,
        object: u32,
        size: u64,
        head: bool,
        host: &str,
        sources: &[Source],
        mut now_ms: f64,
    ) -> (Served, bool) {
        let epoch = self.epoch.unwrap_or(0.0);
        // cut_through: the parent and the origin raced (sim::cut_through).
        if let Some(raced) =
            self.cut_through_fetch(at, object, size, head, host, sources, now_ms, epoch)
        {
            return raced;
        }
        let config = self.nodes[at].config;
        let from = self.nodes[at].address;
        for source in sources {
            let Some(id) = source.peer else {
                return (self.origin(at, object, (size, head), now_ms, epoch), false);
            };
            let Some(peer) = self.nodes[at].peers.get(id).and_then(|p| p.node) else {
                continue;
            };
            let path = self.topology.path(at, peer);
            if path.unreachable || peer == at {
                continue;
            }
            let arrive = now_ms + path.latency_ms;
            self.stats[peer].peer_requests += 1;
            let got = if source.only_if_cached {
                // A sibling without allow-miss: only what it holds fresh.
                let node = &mut self.nodes[peer];
                let ready = node.serve(arrive);
                match node.store.peek(&self.holdings, object) {
                    Some(held) if is_fresh(&held.times, unix(epoch, ready)) => {
                        node.store.touch(&self.holdings, object);
                        if let Some((c, mut w)) = self.changes_world() {
                            c.served(peer, object, held, ready, false, &mut w);
                        }
                        Served {
                            class: Class::Sibling,
                            done_ms: ready,
                            bytes_hops: 0.0,
                            birth: u64::from(held.times.date),
                        }
                    }
                    _ => {
                        // Refused (504): the next source, after the round trip.
                        now_ms = ready + path.latency_ms;
                        continue;
                    }
                }
            } else {
                let got = self.serve(peer, object, size, head, from, arrive);
                if got.class == Class::Failed {
                    now_ms = got.done_ms + path.latency_ms;
                    continue;
                }
                got
            };
            let class = match got.class {
                Class::Origin => Class::Origin,
                _ if source.only_if_cached => Class::Sibling,
                _ => {
                    let cp = &config.cache_peers[id].value;
                    match crate::peers::select::peer_type_for(cp, host) {
                        crate::config::PeerType::Parent => Class::Parent,
                        _ => Class::Sibling,
                    }
                }
            };
            if !head {
                self.stats[peer].proxy_bytes += size;
            }
            let answered = got.done_ms + path.latency_ms;
            super::load::note_fetch(&mut self.nodes[at], id, now_ms, answered);
            return (
                Served {
                    class,
                    done_ms: got.done_ms + path.latency_ms + path.transfer_ms(size),
                    bytes_hops: got.bytes_hops + size as f64 * f64::from(path.hops),
                    birth: got.birth,
                },
                source.proxy_only || self.thresholds.forwards(at, source.code),
            );
        }
        (
            Served {
                class: Class::Failed,
                done_ms: now_ms,
                bytes_hops: 0.0,
                birth: 0,
            },
            true,
        )
    }

    /// A fetch from the origin by node `at`, starting at `now_ms`.
    pub(super) fn origin(
        &mut self,
        at: usize,
        object: u32,
        (size, head): (u64, bool),
        now_ms: f64,
        epoch: f64,
    ) -> Served {
        // Proxy sharing may send the node to a copy near it (`sim::sharing`).
        let now_ms = match self.shared(at, object, (size, head), now_ms, epoch) {
            super::sharing::Shared::Hit(served) => return served,
            super::sharing::Shared::Fallback(at_ms) => at_ms,
            super::sharing::Shared::Body => now_ms,
        };
        let path = self.topology.origin(at);
        if let Some(c) = self.changes.as_deref_mut() {
            if c.conditional(at, object, &self.holdings, &self.nodes, &self.objects)
                .is_some()
            {
                // 304: the copy is current, stamped anew when stored.
                let done_ms = now_ms + 2.0 * path.latency_ms;
                return Served {
                    class: Class::Local,
                    done_ms,
                    bytes_hops: 0.0,
                    birth: unix(epoch, done_ms),
                };
            }
        }
        let s = &mut self.stats[at];
        s.origin_requests += 1;
        s.origin_bytes += size;
        let done_ms = now_ms + 2.0 * path.latency_ms + path.transfer_ms(size);
        Served {
            class: Class::Origin,
            done_ms,
            bytes_hops: size as f64 * f64::from(path.hops),
            birth: unix(epoch, done_ms),
        }
    }

    /// The run's figures, after the conservation checks.
    pub fn finish(&self, skipped: SkipCounts) -> Result<Report, String> {
        let names: Vec<&str> = self.mesh.nodes.iter().map(|n| n.name.as_str()).collect();
        check_conservation(&names, &self.stats)?;
        let mut total = NodeStats::default();
        for s in &self.stats {
            total.add(s);
        }
        Ok(Report {
            mesh: self.mesh.path.display().to_string(),
            nodes: names
                .iter()
                .zip(&self.stats)
                .map(|(n, s)| Row::of(n, s))
                .collect(),
            total: Row::of("total", &total),
            skipped_malformed: skipped.malformed,
            skipped_not_cacheable: skipped.not_cacheable,
            skipped_errors: skipped.errors,
            unrouted: self.unrouted,
            stored: super::threshold::stored(&self.holdings, self.nodes.len()),
            holder_redirect: self
                .mesh
                .nodes
                .iter()
                .any(|n| !n.config.holder_redirect.is_empty()),
            cut_through: self.cut_throughs.summary(),
            sharing: self.sharing.as_ref().map(|s| s.summary()),
            changes: self.changes.as_ref().map(|c| c.summary(&names)),
        })
    }

    /// The raw counts per node (mesh order).
    pub fn stats(&self) -> &[NodeStats] {
        &self.stats
    }
}
