//! The answering side of HTCP MON: the subscriptions this cuttle accepted
//! (at most `htcp_monitor_max_subscribers`, leases of at most
//! `htcp_monitor_max_lease`), and the task that streams the store's
//! changes to them from the HTCP socket.
//!
//! The HTCP responder's thread hands each allowed MON request to
//! [`Publisher::request`], which only records it (a short lock) and wakes
//! the task; the task does the rest every [`TICK`]: it drains the store's
//! change feed into every subscriber's pending set (a key changed twice
//! is told once), looks each key up in the index at send time (held: an
//! Added with its times; gone: a Deleted), walks a new subscriber's
//! resync (a listing of every key, taken by the task), and sends at most
//! [`PER_TICK`] notices per subscriber per tick (the rate limit), all in
//! one `sendmmsg`. A quiet subscriber gets a heartbeat every
//! [`super::HEARTBEAT`]. When the feed overflowed, every subscription is
//! ended (subscribers resync). The feed is on only while someone
//! subscribes.
//!
//! Pushed invalidation and update (issue 22): the proxy tells
//! [`Publisher::changed`] when it learns an object changed (a new version
//! from a revalidation, a PURGE, an unsafe method, an accepted CLR) and
//! counts every use of an object ([`Publisher::note_use`], only while
//! someone subscribes and `htcp_monitor_update_hits` is not 0) in a
//! fixed-size reference counter (`peers::refcount`, the sketch
//! `peer_store_threshold` uses). Every subscriber gets a change notice
//! ([`wire::Change`]), before the round's object notices, kind by
//! `caching::push::push_kind`; an update for an object no longer held at
//! send time goes as an invalidation.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::wire::{self, Change, Notice};
use super::HEARTBEAT;
use crate::caching::push::{push_kind, PushKind, DEFAULT_UPDATE_HITS, DEFAULT_UPDATE_WINDOW_SECS};
use crate::config::MonitorUpdateHits;
use crate::peers::batch_io::SendBatch;
use crate::peers::querier::QuerySockets;
use crate::peers::refcount::RefCounts;
use crate::store::{Key, Store};
use cuttle_protocol::key::{store_key, Method as KeyMethod};

/// How often the task sends what is pending.
pub const TICK: Duration = Duration::from_millis(10);

/// Notices per subscriber per tick, at most (6,400 a second).
pub const PER_TICK: usize = 64;

/// Change notices kept per subscriber until sent; past this a change is
/// dropped (counted): the subscriber's copy then ages by its own
/// freshness, as without MON.
pub const CHANGES_MAX: usize = 4096;

/// Counters of the publisher (all subscribers).
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub accepted: AtomicU64,
    pub renewed: AtomicU64,
    pub refused: AtomicU64,
    pub ended: AtomicU64,
    pub notices_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub send_errors: AtomicU64,
    /// The change feed overflowed and every subscription was ended.
    pub overflows: AtomicU64,
    /// Change notices sent: invalidations and updates (issue 22).
    pub invalidations_sent: AtomicU64,
    pub updates_sent: AtomicU64,
    /// Change notices dropped: a subscriber's queue was full.
    pub changes_dropped: AtomicU64,
}

#[derive(Debug)]
struct Subscription {
    addr: SocketAddr,
    id: u32,
    minor: u8,
    next_seq: u32,
    lease_until: Instant,
    /// Controls to send before anything else (Start, Synced, Ended).
    controls: VecDeque<Notice>,
    /// Keys of the resync still to send; `None` until the task lists them.
    resync: Option<Vec<Key>>,
    /// The resync's Synced is queued once `resync` is empty.
    synced_sent: bool,
    pending: VecDeque<Key>,
    pending_set: HashSet<Key>,
    /// Change notices to send (before `pending`).
    changes: VecDeque<(Key, String, PushKind)>,
    last_sent: Instant,
    /// Remove once its controls are out (ended).
    ending: bool,
    notices: u64,
    bytes: u64,
    started: Instant,
}

/// What the manager pages show of one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberView {
    pub addr: SocketAddr,
    pub lease_left: Duration,
    pub notices: u64,
    pub bytes: u64,
    /// Notices waiting (resync and live).
    pub backlog: usize,
    pub since: Duration,
}

#[derive(Debug, Default)]
struct State {
    subs: Vec<Subscription>,
}

/// The subscriptions of this node; shared by the HTCP responder, the task,
/// the proxy (changes and uses) and the manager.
#[derive(Debug)]
pub struct Publisher {
    state: Mutex<State>,
    wake: Notify,
    pub stats: PublisherStats,
    /// Subscriptions not ending, for the proxy's lock-free checks.
    live: AtomicUsize,
    /// `htcp_monitor_update_hits` N (0: invalidations only).
    update_hits: AtomicU32,
    /// Uses per object within `htcp_monitor_update_hits`' window.
    uses: RefCounts,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher {
            state: Mutex::default(),
            wake: Notify::new(),
            stats: PublisherStats::default(),
            live: AtomicUsize::new(0),
            update_hits: AtomicU32::new(DEFAULT_UPDATE_HITS),
            uses: RefCounts::new(
                Duration::from_secs(DEFAULT_UPDATE_WINDOW_SECS),
                Instant::now(),
            ),
        }
    }
}

/// A MON request as the HTCP responder received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonRequest {
    pub from: SocketAddr,
    /// TRANS-ID: the subscription id.
    pub id: u32,
    /// The request's MINOR (the responses' layout).
    pub minor: u8,
    /// Lease seconds wanted; 0 ends the subscription.
    pub time: u8,
}

/// `htcp_monitor_max_subscribers` and `htcp_monitor_max_lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_subscribers: usize,
    pub max_lease: Duration,
}

/// What [`Publisher::request`] answers at once (the rest goes from the task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Immediate {
    /// Recorded; the task sends.
    Queued,
    /// Refused (too many subscribers): this RESPONSE code.
    Refused(u8),
}

impl Publisher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `htcp_monitor_update_hits` of the running configuration (a reload
    /// keeps the counts).
    pub fn set_update_hits(&self, setting: Option<MonitorUpdateHits>) {
        let hits = setting.map_or(DEFAULT_UPDATE_HITS, |s| s.hits);
        let window = setting
            .and_then(|s| s.window)
            .unwrap_or(Duration::from_secs(DEFAULT_UPDATE_WINDOW_SECS));
        self.update_hits.store(hits, Ordering::Relaxed);
        self.uses.set_window(window);
    }

    /// Whether anyone subscribes (a relaxed read: the proxy's fast check).
    pub fn has_subscribers(&self) -> bool {
        self.live.load(Ordering::Relaxed) > 0
    }

    /// A use of the object of `key` (a GET or HEAD for its URL): counted
    /// only while someone subscribes and updates are pushed.
    pub fn note_use(&self, key: &Key, now: Instant) {
        if self.has_subscribers() && self.update_hits.load(Ordering::Relaxed) > 0 {
            self.uses.note(key, now);
        }
    }

    /// The object of `url` changed here: every subscriber is told, by an
    /// update when it was used at least `htcp_monitor_update_hits` times
    /// within the window, else by an invalidation.
    pub fn changed(&self, url: &str, now: Instant) {
        if !self.has_subscribers() {
            return;
        }
        let key = store_key(KeyMethod::Get, url.as_bytes());
        let hits = self.update_hits.load(Ordering::Relaxed);
        let uses = if hits > 0 {
            self.uses.estimate(&key, now)
        } else {
            0
        };
        let kind = push_kind(uses, hits);
        let mut st = self.lock();
        for s in st.subs.iter_mut().filter(|s| !s.ending) {
            if s.changes.iter().any(|(k, _, _)| *k == key) {
                continue;
            }
            if s.changes.len() >= CHANGES_MAX {
                self.stats.changes_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            s.changes.push_back((key, url.to_string(), kind));
        }
        drop(st);
        self.wake.notify_one();
    }

    /// A MON request `htcp_access` allowed: a new subscription, a renewal
    /// (same address and id) or, with TIME 0, an end; under the config's
    /// `limits`.
    pub fn request(&self, req: MonRequest, limits: Limits, now: Instant) -> Immediate {
        let MonRequest {
            from,
            id,
            minor,
            time,
        } = req;
        let (max_subscribers, max_lease) = (limits.max_subscribers, limits.max_lease);
        let lease = Duration::from_secs(time.into()).min(max_lease);
        let mut st = self.lock();
        let existing = st.subs.iter().position(|s| s.addr == from && !s.ending);
        if time == 0 {
            if let Some(i) = existing.filter(|&i| st.subs[i].id == id) {
                st.subs[i].controls.push_back(Notice::Ended);
                st.subs[i].ending = true;
                self.stats.ended.fetch_add(1, Ordering::Relaxed);
            }
            drop(st);
            self.wake.notify_one();
            return Immediate::Queued;
        }
        match existing {
            Some(i) if st.subs[i].id == id => {
                let s = &mut st.subs[i];
                s.lease_until = now + lease;
                // Mid-resync, the resync's own Synced says it (a Synced
                // now would make the subscriber trust a partial set).
                if s.synced_sent {
                    s.controls.push_back(Notice::Synced);
                }
                self.stats.renewed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                // One subscription per address: a new id replaces the old.
                if let Some(i) = existing {
                    st.subs.remove(i);
                }
                let live = st.subs.iter().filter(|s| !s.ending).count();
                if live >= max_subscribers {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    return Immediate::Refused(wire::REFUSED_TOO_MANY);
                }
                st.subs.push(Subscription {
                    addr: from,
                    id,
                    minor,
                    next_seq: 0,
                    lease_until: now + lease,
                    controls: VecDeque::from([Notice::Start]),
                    resync: None,
                    synced_sent: false,
                    pending: VecDeque::new(),
                    pending_set: HashSet::new(),
                    changes: VecDeque::new(),
                    last_sent: now,
                    ending: false,
                    notices: 0,
                    bytes: 0,
                    started: now,
                });
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let live = st.subs.iter().filter(|s| !s.ending).count();
        self.live.store(live, Ordering::Relaxed);
        drop(st);
        self.wake.notify_one();
        Immediate::Queued
    }

    pub fn subscribers(&self, now: Instant) -> Vec<SubscriberView> {
        self.lock()
            .subs
            .iter()
            .map(|s| SubscriberView {
                addr: s.addr,
                lease_left: s.lease_until.saturating_duration_since(now),
                notices: s.notices,
                bytes: s.bytes,
                backlog: s.pending.len() + s.resync.as_ref().map_or(0, Vec::len),
                since: now.saturating_duration_since(s.started),
            })
            .collect()
    }

    /// One round of the task: the keys `changed` since the last round
    /// (`overflowed`: some were lost), leases, resyncs; the notices go into
    /// `out`. Reads the index only (`peek`, `keys`), never the map.
    fn round(
        &self,
        store: &Store,
        changed: &[Key],
        overflowed: bool,
        now: Instant,
        out: &mut SendBatch<()>,
    ) {
        let mut st = self.lock();
        if !st.subs.is_empty() {
            // On before any listing is taken: a change after the listing
            // is then in the feed for the next round.
            store.changes().set_enabled(true);
        }
        if overflowed && !st.subs.is_empty() {
            self.stats.overflows.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("HTCP MON: the store's change feed overflowed; ending every subscription (subscribers resync)");
        }
        let mut listing: Option<Vec<Key>> = None;
        let mut buf = Vec::with_capacity(256);
        for s in st.subs.iter_mut() {
            if s.ending {
                continue;
            }
            if overflowed || now >= s.lease_until {
                s.controls.push_back(Notice::Ended);
                s.ending = true;
                self.stats.ended.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if s.resync.is_none() {
                // Listed once per round for all new subscribers; changes
                // from here on are in the feed.
                let keys = listing.get_or_insert_with(|| store.keys());
                s.resync = Some(keys.clone());
            }
            for key in changed {
                if s.pending_set.insert(*key) {
                    s.pending.push_back(*key);
                }
            }
        }
        for s in st.subs.iter_mut() {
            let mut budget = PER_TICK;
            let lease_left = s
                .lease_until
                .saturating_duration_since(now)
                .as_secs()
                .min(255) as u8;
            let mut emit = |s: &mut Subscription, notice: Outgoing, out: &mut SendBatch<()>| {
                buf.clear();
                let trans_id = s.id.wrapping_add(s.next_seq);
                let encoded = match &notice {
                    Outgoing::Notice(n) => {
                        wire::encode_notice(s.minor, trans_id, lease_left, n, &mut buf)
                    }
                    Outgoing::Change(c) => {
                        wire::encode_change(s.minor, trans_id, lease_left, c, &mut buf)
                    }
                };
                if encoded.is_ok() {
                    out.push(&buf, s.addr, ());
                    s.next_seq = s.next_seq.wrapping_add(1);
                    s.notices += 1;
                    s.bytes += buf.len() as u64;
                    s.last_sent = now;
                    self.stats.notices_sent.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_sent
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                }
            };
            while budget > 0 {
                let Some(c) = s.controls.pop_front() else {
                    break;
                };
                emit(s, Outgoing::Notice(c), out);
                budget -= 1;
            }
            if s.ending {
                continue;
            }
            let object = |key: Key| Notice::Object {
                key,
                times: store.peek(&key).map(|summary| summary.times),
            };
            while budget > 0 {
                let Some((key, url, kind)) = s.changes.pop_front() else {
                    break;
                };
                // An update names a version held here; gone since, the
                // subscriber can only drop its copy.
                let times = store.peek(&key).map(|summary| summary.times);
                let kind = if times.is_none() {
                    PushKind::Invalidate
                } else {
                    kind
                };
                let counter = match kind {
                    PushKind::Invalidate => &self.stats.invalidations_sent,
                    PushKind::Update => &self.stats.updates_sent,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let change = Change {
                    key,
                    url,
                    kind,
                    times,
                };
                emit(s, Outgoing::Change(change), out);
                budget -= 1;
                // An invalidation takes the key out of the subscriber's
                // set: what is held here now follows as an object notice.
                if kind == PushKind::Invalidate && times.is_some() && s.pending_set.insert(key) {
                    s.pending.push_back(key);
                }
            }
            while budget > 0 {
                let Some(key) = s.pending.pop_front() else {
                    break;
                };
                s.pending_set.remove(&key);
                emit(s, Outgoing::Notice(object(key)), out);
                budget -= 1;
            }
            while budget > 0 {
                let Some(key) = s.resync.as_mut().and_then(Vec::pop) else {
                    break;
                };
                emit(s, Outgoing::Notice(object(key)), out);
                budget -= 1;
            }
            if budget > 0 && !s.synced_sent && s.resync.as_ref().is_some_and(Vec::is_empty) {
                s.synced_sent = true;
                emit(s, Outgoing::Notice(Notice::Synced), out);
            } else if s.synced_sent && now.saturating_duration_since(s.last_sent) >= HEARTBEAT {
                emit(s, Outgoing::Notice(Notice::Synced), out);
            }
        }
        st.subs.retain(|s| !(s.ending && s.controls.is_empty()));
        store.changes().set_enabled(!st.subs.is_empty());
        let live = st.subs.iter().filter(|s| !s.ending).count();
        self.live.store(live, Ordering::Relaxed);
    }

    /// Whether a round has work without waiting for a wake-up.
    fn busy(&self) -> bool {
        !self.lock().subs.is_empty()
    }
}

/// What a round sends a subscriber.
enum Outgoing {
    Notice(Notice),
    Change(Change),
}

/// The publisher's task: runs for the life of the process, sending from
/// the HTCP responder's socket (none while HTCP is off: nothing to do).
pub async fn run(publisher: Arc<Publisher>, store: Arc<Store>, sockets: Arc<QuerySockets>) {
    let mut changed = Vec::new();
    let mut out = SendBatch::new();
    loop {
        if publisher.busy() {
            tokio::select! {
                _ = publisher.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        } else {
            publisher.wake.notified().await;
        }
        changed.clear();
        let overflowed = store.changes().drain(&mut changed);
        publisher.round(&store, &changed, overflowed, Instant::now(), &mut out);
        if out.is_empty() {
            continue;
        }
        let socket = sockets.htcp.get().and_then(|q| q.socket.upgrade());
        let Some(socket) = socket else {
            // No HTCP socket (a reload turned it off): dropped; the
            // subscribers see silence and stop trusting their sets.
            out = SendBatch::new();
            continue;
        };
        let stats = &publisher.stats;
        out.send(&*socket, |(), to, outcome| {
            if let Err(e) = outcome {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%to, error = %e, "HTCP MON notice not sent");
            }
        });
    }
}

#[cfg(test)]
mod tests;
