//! Origin changes in `cuttle simulate` (issue 22): a trace's `#change`
//! lines give each document versions, and the run counts what each
//! freshness policy makes of them.
//!
//! A version is the document's Last-Modified: a change at T makes the
//! origin's Last-Modified T, and a copy is as new as the Last-Modified it
//! was stored with. A copy served while the origin has a newer version is
//! a **stale hit** (counted once per client request, at the client's
//! node). A node going to the origin while it holds an expired copy sends
//! a conditional request (a **validation**): 304 when the copy is the
//! current version (the copy is stamped anew: a hit), else the new body
//! (a miss). What each node does besides:
//!
//! - Squid's heuristic (any node): the proxy's freshness code, as without
//!   changes.
//! - `refresh_pattern ... adaptive[=N]`: [`crate::caching::adaptive`]: the
//!   copy's interval starts at the heuristic's estimate, doubles when a
//!   validation finds it unchanged and halves when it changed; a popular
//!   copy (N hits in its interval) is revalidated in the background in
//!   its interval's last tenth, straight with the origin.
//! - Leases and push: a node that holds `cache_peer ... htcp=monitor
//!   cuttle` on a node answering MON (`htcp_monitor_max_subscribers` above
//!   0) subscribes to it. A publisher that subscribes to no one stands in
//!   front of the origin and learns each change at once (as a CMS's PURGE
//!   tells it): it drops its copy and, if it held one, sends each
//!   subscriber a notice that arrives after the link latency plus its
//!   batch tick; [`crate::caching::push::push_kind`] on the publisher's
//!   recent uses picks an invalidation (the subscriber drops an older
//!   copy) or an update (the publisher refetches the new version in the
//!   background and the subscriber takes it from there). A subscriber that
//!   publishes too passes the notice on when it arrives.
//!
//! All of it lives here, behind one `Option` in the engine: a trace
//! without change lines runs as before, at the same cost.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::Serialize;

use super::node::SimNode;
use super::objects::Objects;
use super::store::{Held, Holdings};
use super::topology::Topology;
use crate::caching::adaptive::{self, Bounds, PollResult};
use crate::caching::push::{push_kind, PushKind, DEFAULT_UPDATE_HITS, DEFAULT_UPDATE_WINDOW_SECS};
use crate::caching::Rule;
use crate::store::Times;

/// The publisher sends what is pending every tick (the proxy's MON
/// publisher round).
const BATCH_TICK_MS: f64 = 10.0;

/// What one node did about changes.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Client requests served a copy older than the origin's version.
    pub stale_hits: u64,
    /// Of those, served later after the change than the node's
    /// notification delay (all of them at a node that subscribes to none).
    pub stale_beyond_notice: u64,
    /// Conditional requests sent to the origin (answered 304 or with the
    /// new version), the adaptive background ones included.
    pub validations: u64,
    /// Validations answered 304 Not Modified.
    pub not_modified: u64,
    /// Change notices sent to subscribers.
    pub push_notices: u64,
    /// New versions taken from the publisher on an update notice.
    pub push_updates: u64,
    /// Bodies fetched from the origin in the background (an adaptive
    /// revalidation that found a change; a publisher's refetch for an
    /// update), not counted as client misses.
    pub background_fetches: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.stale_hits += o.stale_hits;
        self.stale_beyond_notice += o.stale_beyond_notice;
        self.validations += o.validations;
        self.not_modified += o.not_modified;
        self.push_notices += o.push_notices;
        self.push_updates += o.push_updates;
        self.background_fetches += o.background_fetches;
    }
}

/// The run's figures about changes.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Change lines replayed.
    pub changes: u64,
    pub total: Counts,
    /// Per node, in mesh order.
    pub nodes: Vec<(String, Counts)>,
}

impl Summary {
    /// The lines the table ends with.
    pub fn lines(&self) -> String {
        let t = &self.total;
        format!(
            "changes: {} at the origin; {} stale hits served ({} beyond the notification delay); {} validations sent to the origin ({} answered 304); {} push notices ({} updates taken); {} background fetches\n",
            self.changes,
            t.stale_hits,
            t.stale_beyond_notice,
            t.validations,
            t.not_modified,
            t.push_notices,
            t.push_updates,
            t.background_fetches
        )
    }
}

/// A notice on its way to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Notice {
    /// When it arrives, microseconds since the trace's start.
    at_us: u64,
    node: u32,
    object: u32,
    update: bool,
}

/// The engine's parts a change touches.
pub(super) struct World<'a, 'm> {
    pub nodes: &'a mut [SimNode<'m>],
    pub holdings: &'a mut Holdings,
    pub objects: &'a mut Objects,
    /// The trace's first time, unix seconds.
    pub epoch: f64,
}

impl World<'_, '_> {
    fn unix(&self, ms: f64) -> u64 {
        super::engine::unix(self.epoch, ms)
    }

    fn rule(&self, node: usize, object: u32) -> Rule {
        Rule::for_url(self.nodes[node].config, &self.objects.get(object).full)
    }
}

/// The state of a run with changes.
pub(super) struct Changes {
    changes: u64,
    /// Each object's latest change, ms since the trace's start.
    changed_ms: Vec<f64>,
    /// The Last-Modified of the body the request in progress got last
    /// (the copy or the origin version it was served from): what a node
    /// storing it keeps.
    pub(super) body_lm: u32,
    /// The request in progress was served a stale copy somewhere.
    stale: bool,
    counts: Vec<Counts>,
    /// Each node's notification delay (ms) when it subscribes.
    notice_delay: Vec<Option<f64>>,
    /// Each node's subscribers and the delay of a notice to each (ms).
    subscribers: Vec<Vec<(usize, f64)>>,
    /// Whether a node subscribes to someone (it learns changes by notice).
    subscribes: Vec<bool>,
    pending: BinaryHeap<Reverse<Notice>>,
    /// Publishers' uses of an object: (node, object) → (window, uses).
    uses: HashMap<(u32, u32), (u64, u32)>,
    /// Adaptive nodes' hits on a copy: (node, object) → (its date, hits).
    hits: HashMap<(u32, u32), (u32, u32)>,
    /// Whether a node has an `adaptive` refresh_pattern.
    adaptive: Vec<bool>,
    update_hits: u32,
    /// Documents have an explicit lifetime (`--ttl`): no heuristic to adapt.
    ttl: bool,
}

impl Changes {
    pub(super) fn new(
        nodes: &[SimNode],
        topology: &Topology,
        ttl: bool,
        update_hits: Option<u32>,
    ) -> Changes {
        let n = nodes.len();
        let mut subscribers = vec![Vec::new(); n];
        let mut subscribes = vec![false; n];
        let mut notice_delay = vec![None; n];
        for (s, node) in nodes.iter().enumerate() {
            for peer in &node.peers {
                let monitors = peer.config.htcp.as_ref().is_some_and(|h| h.monitor);
                let Some(p) = peer.node.filter(|&p| p != s && monitors) else {
                    continue;
                };
                if nodes[p].config.htcp_monitor_max_subscribers.value == 0 {
                    continue;
                }
                let path = topology.path(p, s);
                if path.unreachable {
                    continue;
                }
                let delay = path.latency_ms + BATCH_TICK_MS;
                subscribers[p].push((s, delay));
                subscribes[s] = true;
                notice_delay[s] = Some(notice_delay[s].map_or(delay, |d: f64| d.max(delay)));
            }
        }
        let adaptive = nodes
            .iter()
            .map(|n| {
                n.config
                    .refresh_patterns
                    .iter()
                    .any(|p| p.value.adaptive.is_some())
            })
            .collect();
        Changes {
            changes: 0,
            changed_ms: Vec::new(),
            body_lm: 0,
            stale: false,
            counts: vec![Counts::default(); n],
            notice_delay,
            subscribers,
            subscribes,
            pending: BinaryHeap::new(),
            uses: HashMap::new(),
            hits: HashMap::new(),
            adaptive,
            update_hits: update_hits.unwrap_or(DEFAULT_UPDATE_HITS),
            ttl,
        }
    }

    /// `object` changed at `at_ms` (its Last-Modified is now `lm`, unix
    /// seconds): the publishers in front of the origin learn it.
    pub(super) fn change(&mut self, object: u32, at_ms: f64, w: &mut World) {
        self.deliver(at_ms, w);
        self.changes += 1;
        let i = object as usize;
        if self.changed_ms.len() <= i {
            self.changed_ms.resize(i + 1, f64::NEG_INFINITY);
        }
        self.changed_ms[i] = at_ms;
        for p in 0..self.subscribers.len() {
            if !self.subscribers[p].is_empty() && !self.subscribes[p] {
                self.publish(p, object, at_ms, w);
            }
        }
    }

    /// Publisher `p` learnt that `object` changed at `at_ms`: if it held
    /// a copy, it drops it (or, for an update, refetches the new version)
    /// and notifies its subscribers.
    fn publish(&mut self, p: usize, object: u32, at_ms: f64, w: &mut World) {
        let Some(held) = w.nodes[p].store.peek(w.holdings, object) else {
            return;
        };
        let kind = self.kind(p, object, at_ms, w);
        if kind == PushKind::Update {
            // The publisher refetches the new version for its subscribers.
            self.counts[p].background_fetches += 1;
            self.replace(p, object, held, at_ms, w);
        } else {
            w.nodes[p].store.remove(w.holdings, object);
        }
        self.notify(p, object, at_ms, kind);
    }

    /// Invalidation or update, by `p`'s recent uses of `object`.
    fn kind(&self, p: usize, object: u32, at_ms: f64, w: &World) -> PushKind {
        let uses = self
            .uses
            .get(&(p as u32, object))
            .filter(|(window, _)| *window == window_of(w.unix(at_ms)))
            .map_or(0, |(_, n)| *n);
        push_kind(uses, self.update_hits)
    }

    fn notify(&mut self, p: usize, object: u32, at_ms: f64, kind: PushKind) {
        for &(s, delay) in &self.subscribers[p] {
            self.counts[p].push_notices += 1;
            self.pending.push(Reverse(Notice {
                at_us: ((at_ms + delay) * 1000.0) as u64,
                node: s as u32,
                object,
                update: kind == PushKind::Update,
            }));
        }
    }

    /// `node` takes the new version of `object` in place of `held`.
    fn replace(&self, node: usize, object: u32, held: Held, at_ms: f64, w: &mut World) {
        let times = self.fetched_times(node, object, held, at_ms, w);
        w.nodes[node].store.insert(
            w.holdings,
            object,
            Held {
                size: held.size,
                times,
            },
        );
    }

    /// The times of a new version of `object` fetched by `node` at `at_ms`
    /// in place of `held`: the heuristic on its Last-Modified (adaptive:
    /// `held`'s interval halved).
    fn fetched_times(&self, node: usize, object: u32, held: Held, at_ms: f64, w: &World) -> Times {
        let now = w.unix(at_ms);
        let lm = w.objects.get(object).last_modified;
        let rule = w.rule(node, object);
        let facts = crate::caching::freshness::Facts {
            date: Some(now),
            last_modified: Some(lm),
            ..Default::default()
        };
        let exchange = crate::caching::freshness::Exchange {
            request_time: now,
            response_time: now,
        };
        let times =
            crate::caching::freshness::times_of(http::StatusCode::OK, &facts, &rule, exchange);
        self.stored_times(node, &rule, Some(held), times)
    }

    /// Notices due by `now_ms` arrive: an older copy is dropped, or, on an
    /// update, replaced by the new version from the publisher.
    pub(super) fn deliver(&mut self, now_ms: f64, w: &mut World) {
        while let Some(&Reverse(n)) = self.pending.peek() {
            let at_ms = n.at_us as f64 / 1000.0;
            if at_ms > now_ms {
                break;
            }
            self.pending.pop();
            let s = n.node as usize;
            let lm = w.objects.get(n.object).last_modified;
            let Some(held) = w.nodes[s].store.peek(w.holdings, n.object) else {
                continue;
            };
            if u64::from(held.times.last_modified) >= lm {
                continue;
            }
            if n.update {
                self.counts[s].push_updates += 1;
                self.replace(s, n.object, held, at_ms, w);
            } else {
                w.nodes[s].store.remove(w.holdings, n.object);
            }
            if !self.subscribers[s].is_empty() {
                // It publishes too: its subscribers hear of it now, by its
                // own uses.
                let kind = self.kind(s, n.object, at_ms, w);
                self.notify(s, n.object, at_ms, kind);
            }
        }
    }

    /// A client request for `object` (Last-Modified `lm`) starts at
    /// `now_ms`.
    pub(super) fn begin(&mut self, lm: u64, now_ms: f64, w: &mut World) {
        self.deliver(now_ms, w);
        self.stale = false;
        self.body_lm = clamp_u32(lm);
    }

    /// The client request that arrived at `at` at `now_ms` is done.
    pub(super) fn end(&mut self, at: usize, object: u32, now_ms: f64) {
        if !self.stale {
            return;
        }
        let c = &mut self.counts[at];
        c.stale_hits += 1;
        let since = now_ms - self.changed_ms.get(object as usize).copied().unwrap_or(0.0);
        if since > self.notice_delay[at].unwrap_or(0.0) {
            c.stale_beyond_notice += 1;
        }
    }

    /// A request for `object` reached `node` (a publisher counts it as a
    /// use).
    pub(super) fn used(&mut self, node: usize, object: u32, now: u64) {
        if self.subscribers[node].is_empty() {
            return;
        }
        let window = window_of(now);
        let e = self
            .uses
            .entry((node as u32, object))
            .or_insert((window, 0));
        if e.0 != window {
            *e = (window, 0);
        }
        e.1 += 1;
    }

    /// `node` served its copy `held` of `object` (a local or sibling hit)
    /// at `now_ms`; `local`: to its own client, where an adaptive node may
    /// revalidate a popular copy ahead of its expiry.
    pub(super) fn served(
        &mut self,
        node: usize,
        object: u32,
        held: Held,
        now_ms: f64,
        local: bool,
        w: &mut World,
    ) {
        let lm = clamp_u32(w.objects.get(object).last_modified);
        self.body_lm = held.times.last_modified;
        self.stale |= held.times.last_modified < lm;
        if !(local && self.adaptive[node]) || self.ttl {
            return;
        }
        let rule = w.rule(node, object);
        let Some(popular) = rule.adaptive else {
            return;
        };
        let e = self
            .hits
            .entry((node as u32, object))
            .or_insert((held.times.date, 0));
        if e.0 != held.times.date {
            *e = (held.times.date, 0);
        }
        e.1 += 1;
        let now = w.unix(now_ms);
        let interval = u64::from(held.times.expires.saturating_sub(held.times.date));
        let age = now.saturating_sub(u64::from(held.times.date));
        if !adaptive::revalidate_ahead(e.1, popular, age, interval) {
            return;
        }
        let c = &mut self.counts[node];
        c.validations += 1;
        let result = if held.times.last_modified == lm {
            c.not_modified += 1;
            PollResult::Unchanged
        } else {
            c.background_fetches += 1;
            PollResult::Changed
        };
        let next = adaptive::next_interval(interval, result, Bounds::new(rule.min, rule.max));
        let times = Times {
            date: clamp_u32(now),
            expires: clamp_u32(now.saturating_add(next)),
            last_modified: lm,
        };
        w.nodes[node].store.insert(
            w.holdings,
            object,
            Held {
                size: held.size,
                times,
            },
        );
    }

    /// `node` goes to the origin for `object` at `now_ms`: with a copy it
    /// asks conditionally. `Some(copy)`: 304, the copy is current.
    pub(super) fn conditional(
        &mut self,
        node: usize,
        object: u32,
        holdings: &Holdings,
        nodes: &[SimNode],
        objects: &Objects,
    ) -> Option<Held> {
        let lm = clamp_u32(objects.get(object).last_modified);
        self.body_lm = lm;
        let held = nodes[node].store.peek(holdings, object)?;
        let c = &mut self.counts[node];
        c.validations += 1;
        (held.times.last_modified == lm).then(|| {
            c.not_modified += 1;
            held
        })
    }

    /// The times `node` stores a body with: `times` by the heuristic, or,
    /// under an `adaptive` pattern, the interval that follows `prev`'s (the
    /// copy it held, if any).
    pub(super) fn stored_times(
        &self,
        node: usize,
        rule: &Rule,
        prev: Option<Held>,
        times: Times,
    ) -> Times {
        if self.ttl || !self.adaptive[node] || rule.adaptive.is_none() {
            return times;
        }
        let bounds = Bounds::new(rule.min, rule.max);
        let interval = match prev {
            Some(p) => adaptive::next_interval(
                u64::from(p.times.expires.saturating_sub(p.times.date)),
                if p.times.last_modified == times.last_modified {
                    PollResult::Unchanged
                } else {
                    PollResult::Changed
                },
                bounds,
            ),
            None => adaptive::first_interval(
                u64::from(times.expires.saturating_sub(times.date)),
                bounds,
            ),
        };
        Times {
            expires: clamp_u32(u64::from(times.date).saturating_add(interval)),
            ..times
        }
    }

    pub(super) fn summary(&self, names: &[&str]) -> Summary {
        let mut total = Counts::default();
        for c in &self.counts {
            total.add(c);
        }
        Summary {
            changes: self.changes,
            total,
            nodes: names
                .iter()
                .map(|n| n.to_string())
                .zip(self.counts.iter().cloned())
                .collect(),
        }
    }
}

fn window_of(now: u64) -> u64 {
    now / DEFAULT_UPDATE_WINDOW_SECS
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
