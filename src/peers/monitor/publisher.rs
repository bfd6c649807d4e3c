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

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::wire::{self, Notice};
use super::HEARTBEAT;
use crate::peers::batch_io::SendBatch;
use crate::peers::querier::QuerySockets;
use crate::store::{Key, Store};

/// How often the task sends what is pending.
pub const TICK: Duration = Duration::from_millis(10);

/// Notices per subscriber per tick, at most (6,400 a second).
pub const PER_TICK: usize = 64;

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

/// The subscriptions of this node; shared by the HTCP responder, the task
/// and the manager.
#[derive(Debug, Default)]
pub struct Publisher {
    state: Mutex<State>,
    wake: Notify,
    pub stats: PublisherStats,
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
                    last_sent: now,
                    ending: false,
                    notices: 0,
                    bytes: 0,
                    started: now,
                });
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
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
            let mut emit = |s: &mut Subscription, notice: Notice, out: &mut SendBatch<()>| {
                buf.clear();
                let trans_id = s.id.wrapping_add(s.next_seq);
                if wire::encode_notice(s.minor, trans_id, lease_left, &notice, &mut buf).is_ok() {
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
                emit(s, c, out);
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
                let Some(key) = s.pending.pop_front() else {
                    break;
                };
                s.pending_set.remove(&key);
                emit(s, object(key), out);
                budget -= 1;
            }
            while budget > 0 {
                let Some(key) = s.resync.as_mut().and_then(Vec::pop) else {
                    break;
                };
                emit(s, object(key), out);
                budget -= 1;
            }
            if budget > 0 && !s.synced_sent && s.resync.as_ref().is_some_and(Vec::is_empty) {
                s.synced_sent = true;
                emit(s, Notice::Synced, out);
            } else if s.synced_sent && now.saturating_duration_since(s.last_sent) >= HEARTBEAT {
                emit(s, Notice::Synced, out);
            }
        }
        st.subs.retain(|s| !(s.ending && s.controls.is_empty()));
        store.changes().set_enabled(!st.subs.is_empty());
    }

    /// Whether a round has work without waiting for a wake-up.
    fn busy(&self) -> bool {
        !self.lock().subs.is_empty()
    }
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
