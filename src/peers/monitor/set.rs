//! One monitored peer's subscription as its subscriber keeps it: the
//! phase, the sequence, the lease, and the set of objects the peer holds
//! (store key and times), with the counters the manager pages show; and
//! the peer's change notices (pushed invalidations and updates) waiting
//! for the proxy, which drops or refetches its own copies.
//! Sans-IO: every call takes `now`; what to send comes back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::wire::{Change, Incoming, Notice};
use super::{ANSWER_WAIT, LEASE_WANTED, MAX_OBJECTS, REFUSED_RETRY, SILENCE_LIMIT};
use crate::caching::push::PushKind;

/// Updates waiting for their refetch, per peer; past this a change is
/// taken as an invalidation (the copy is dropped rather than kept stale).
pub const UPDATES_MAX: usize = 256;

/// Invalidations waiting for the proxy (it takes them every few
/// milliseconds); past this the oldest is dropped (counted).
pub const INVALIDATIONS_MAX: usize = 4096;

/// Unanswered subscription requests, [`ANSWER_WAIT`] apart, before the
/// subscriber slows to one per [`REFUSED_RETRY`].
const UNANSWERED_TRIES: u32 = 3;
use crate::peers::htcp_server::tst_finds;
use crate::store::{Key, Times};

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// None yet, or dropped: subscribe now.
    Idle,
    /// A request went out; its answer is awaited.
    Subscribing,
    /// Accepted; the full resync is coming in.
    Resyncing,
    /// The set is exact: selection may use it.
    Synced,
    /// Refused or not implemented: ask again later.
    Refused,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Subscribing => "subscribing",
            Phase::Resyncing => "resyncing",
            Phase::Synced => "synced",
            Phase::Refused => "refused",
        }
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// The subscription id (TRANS-ID of n = 0).
    id: u32,
    next_seq: u32,
    /// When the last request went out.
    asked_at: Option<Instant>,
    /// Subscription requests in a row that got no answer at all.
    unanswered: u32,
    lease_until: Option<Instant>,
    /// The lease granted, for renewing halfway.
    granted: Duration,
    heard_at: Option<Instant>,
    objects: HashMap<Key, Times>,
    /// URLs whose copies here the peer said changed: to drop, to refetch.
    invalidations: VecDeque<String>,
    updates: VecDeque<String>,
    counters: Counters,
    /// (when, notifications then): the start of the rate's window.
    rate_mark: (Option<Instant>, u64),
    rate: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    notifications: u64,
    resyncs: u64,
    gaps: u64,
    hits: u64,
    false_hits: u64,
    refusals: u64,
    overflows: u64,
    invalidations: u64,
    updates: u64,
    refetches_done: u64,
    refetches_failed: u64,
    changes_dropped: u64,
}

/// What the manager pages show of one monitored peer.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorView {
    pub phase: Phase,
    /// Whether selection uses the set now.
    pub usable: bool,
    pub lease_left: Duration,
    pub objects: usize,
    pub notifications: u64,
    /// Notifications per second over the last few seconds.
    pub notifications_per_sec: f64,
    pub resyncs: u64,
    pub gaps: u64,
    pub hits: u64,
    pub false_hits: u64,
    pub refusals: u64,
    pub overflows: u64,
    /// Invalidations applied (this cache's copies dropped; an update
    /// past [`UPDATES_MAX`] included), and update notices received.
    pub invalidations: u64,
    pub updates: u64,
    /// Background refetches of updated objects from the peer.
    pub refetches_done: u64,
    pub refetches_failed: u64,
    /// Changes not acted on (a full queue).
    pub changes_dropped: u64,
}

/// One monitored peer's subscription; shared by the peer table (reads for
/// selection) and the subscriber task, and carried across reloads.
#[derive(Debug)]
pub struct MonitorSlot(Mutex<State>);

impl Default for MonitorSlot {
    fn default() -> Self {
        MonitorSlot(Mutex::new(State {
            phase: Phase::Idle,
            id: 0,
            next_seq: 0,
            asked_at: None,
            unanswered: 0,
            lease_until: None,
            granted: Duration::ZERO,
            heard_at: None,
            objects: HashMap::new(),
            invalidations: VecDeque::new(),
            updates: VecDeque::new(),
            counters: Counters::default(),
            rate_mark: (None, 0),
            rate: 0.0,
        }))
    }
}

impl State {
    fn usable(&self, now: Instant) -> bool {
        self.phase == Phase::Synced
            && self.lease_until.is_some_and(|t| now < t)
            && self
                .heard_at
                .is_some_and(|h| now.saturating_duration_since(h) < SILENCE_LIMIT)
    }

    /// Forget the set; subscribe again at the next tick.
    fn drop_set(&mut self) {
        self.phase = Phase::Idle;
        self.objects = HashMap::new();
        self.lease_until = None;
    }
}

impl MonitorSlot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the peer holds a fresh copy of `key` at Unix time
    /// `unix_now`: `None` while the set is not usable (then the peer is
    /// asked as without MON).
    pub fn holds(&self, key: &Key, now: Instant, unix_now: u64) -> Option<bool> {
        let st = self.lock();
        if !st.usable(now) {
            return None;
        }
        Some(st.objects.get(key).is_some_and(|t| tst_finds(t, unix_now)))
    }

    /// Selection picked the peer from the set.
    pub fn note_hit(&self) {
        self.lock().counters.hits += 1;
    }

    /// The peer did not have what the set said (a 504 to only-if-cached).
    pub fn note_false_hit(&self) {
        self.lock().counters.false_hits += 1;
    }

    /// What to send the peer now, if anything: a new subscription (with
    /// a fresh id from `new_id`) or a renewal halfway through the lease.
    pub fn tick(&self, now: Instant, new_id: impl FnOnce() -> u32) -> Option<Vec<u8>> {
        let mut st = self.lock();
        let since = |at: Option<Instant>| at.map(|t| now.saturating_duration_since(t));
        if matches!(st.phase, Phase::Synced | Phase::Resyncing) {
            let expired = st.lease_until.is_none_or(|t| now >= t);
            let silent = since(st.heard_at).is_none_or(|d| d >= SILENCE_LIMIT);
            if expired || silent {
                tracing::info!(
                    expired,
                    silent,
                    "HTCP MON: subscription lost; subscribing again"
                );
                st.drop_set();
            }
        }
        let send = match st.phase {
            Phase::Idle => true,
            Phase::Subscribing => {
                // A silent peer (a Squid marked `cuttle` by mistake) is
                // asked every REFUSED_RETRY after a few tries.
                let wait = if st.unanswered >= UNANSWERED_TRIES {
                    REFUSED_RETRY
                } else {
                    ANSWER_WAIT
                };
                since(st.asked_at).is_none_or(|d| d >= wait)
            }
            Phase::Refused => since(st.asked_at).is_none_or(|d| d >= REFUSED_RETRY),
            Phase::Resyncing | Phase::Synced => {
                let renew_at = st.granted / 2;
                if since(st.asked_at).is_some_and(|d| d >= renew_at) {
                    st.asked_at = Some(now);
                    return Some(super::wire::request(st.id, LEASE_WANTED));
                }
                false
            }
        };
        if !send {
            return None;
        }
        if st.phase != Phase::Refused {
            st.unanswered += 1;
            if st.unanswered == UNANSWERED_TRIES {
                tracing::warn!(tries = UNANSWERED_TRIES, "HTCP MON: a monitored peer answers no subscription request (is it cuttle, with htcp_access allowing us?); asking every 30 s");
            }
        }
        let mut id = new_id();
        if id == 0 {
            id = 1;
        }
        st.id = id;
        st.next_seq = 0;
        st.asked_at = Some(now);
        if st.phase != Phase::Refused {
            st.phase = Phase::Subscribing;
        }
        Some(super::wire::request(id, LEASE_WANTED))
    }

    /// URLs the peer invalidated since the last call: the proxy drops
    /// its copies.
    pub fn take_invalidations(&self) -> Vec<String> {
        let mut st = self.lock();
        let urls: Vec<String> = st.invalidations.drain(..).collect();
        // Counted as they are taken: the counter says the copies are gone.
        st.counters.invalidations += urls.len() as u64;
        urls
    }

    /// The next URL the peer updated: the proxy refetches it from the
    /// peer (one at a time per peer).
    pub fn next_update(&self) -> Option<String> {
        self.lock().updates.pop_front()
    }

    /// A background refetch of an updated object ended.
    pub fn note_refetch(&self, done: bool) {
        let mut st = self.lock();
        if done {
            st.counters.refetches_done += 1;
        } else {
            st.counters.refetches_failed += 1;
        }
    }

    /// A change notice: queued for the proxy whatever the subscription's
    /// state (a change is true news even out of sequence, and acting on
    /// it twice is harmless).
    fn queue_change(st: &mut State, change: &Change) {
        let url = change.url.clone();
        if change.kind == PushKind::Update {
            st.counters.updates += 1;
            if st.updates.contains(&url) {
                return;
            }
            if st.updates.len() < UPDATES_MAX {
                st.updates.push_back(url);
                return;
            }
        }
        if st.invalidations.len() >= INVALIDATIONS_MAX {
            st.invalidations.pop_front();
            st.counters.changes_dropped += 1;
        }
        st.invalidations.push_back(url);
    }

    /// A MON response from the peer. True when the subscriber should call
    /// [`MonitorSlot::tick`] at once (the set was dropped).
    pub fn receive(&self, incoming: Incoming, now: Instant, peer: &str) -> bool {
        let mut st = self.lock();
        let incoming = match incoming {
            Incoming::Change {
                trans_id,
                lease,
                change,
            } => {
                Self::queue_change(&mut st, &change);
                // For the set, the object notice it also is.
                let notice = Notice::Object {
                    key: change.key,
                    times: change.times,
                };
                Incoming::Notice {
                    trans_id,
                    lease,
                    notice,
                }
            }
            other => other,
        };
        let (trans_id, lease, notice) = match incoming {
            Incoming::Refused { trans_id, code } | Incoming::NotImplemented { trans_id, code }
                if trans_id == st.id =>
            {
                if st.phase != Phase::Refused {
                    tracing::warn!(peer, code, not_implemented = matches!(incoming, Incoming::NotImplemented { .. }), "HTCP MON subscription refused by the peer (does it run cuttle with htcp_monitor_max_subscribers?); asking again later");
                }
                st.counters.refusals += 1;
                st.unanswered = 0;
                st.drop_set();
                st.phase = Phase::Refused;
                return false;
            }
            Incoming::Refused { .. } | Incoming::NotImplemented { .. } => return false,
            Incoming::Notice {
                trans_id,
                lease,
                notice,
            } => (trans_id, lease, notice),
            Incoming::Change { .. } => return false,
        };
        if st.phase == Phase::Idle || st.phase == Phase::Refused && notice != Notice::Start {
            return false;
        }
        let seq = trans_id.wrapping_sub(st.id);
        if seq >= 1 << 31 {
            // Before this subscription: an old one's.
            return false;
        }
        if notice == Notice::Start && seq == 0 {
            if st.phase != Phase::Subscribing {
                // The publisher answered a renewal as a new subscription:
                // it lost ours (a restart).
                tracing::info!(peer, "HTCP MON: the peer started over; resynchronising");
            }
            st.phase = Phase::Resyncing;
            st.unanswered = 0;
            st.objects = HashMap::new();
            st.next_seq = 1;
            st.heard_at = Some(now);
            st.granted = Duration::from_secs(lease.into());
            st.lease_until = Some(now + st.granted);
            st.counters.resyncs += 1;
            return false;
        }
        if seq < st.next_seq {
            return false;
        }
        if seq > st.next_seq || st.phase == Phase::Subscribing {
            st.counters.gaps += 1;
            tracing::info!(
                peer,
                expected = st.next_seq,
                got = seq,
                "HTCP MON: notifications lost; resynchronising"
            );
            st.drop_set();
            return true;
        }
        st.next_seq = st.next_seq.wrapping_add(1);
        st.heard_at = Some(now);
        st.lease_until = Some(now + Duration::from_secs(lease.into()));
        match notice {
            Notice::Start => {
                // Only n = 0 starts a subscription: this breaks the profile.
                st.counters.gaps += 1;
                st.drop_set();
                return true;
            }
            Notice::Synced => st.phase = Phase::Synced,
            Notice::Ended => {
                tracing::info!(peer, "HTCP MON: the peer ended the subscription");
                st.drop_set();
                return true;
            }
            Notice::Object { key, times } => {
                st.counters.notifications += 1;
                match times {
                    Some(t) => {
                        if st.objects.len() >= MAX_OBJECTS && !st.objects.contains_key(&key) {
                            tracing::warn!(peer, max = MAX_OBJECTS, "HTCP MON: the peer holds more objects than kept per peer; not monitored until it holds fewer");
                            st.counters.overflows += 1;
                            st.drop_set();
                            st.phase = Phase::Refused;
                            return false;
                        }
                        st.objects.insert(key, t);
                    }
                    None => {
                        st.objects.remove(&key);
                    }
                }
            }
        }
        false
    }

    pub fn view(&self, now: Instant) -> MonitorView {
        let mut st = self.lock();
        // The rate over a window of at least 2 s, moved along when read.
        let n = st.counters.notifications;
        match st.rate_mark {
            (Some(at), then) => {
                let span = now.saturating_duration_since(at);
                if span >= Duration::from_secs(2) {
                    st.rate = (n - then) as f64 / span.as_secs_f64();
                    st.rate_mark = (Some(now), n);
                }
            }
            (None, _) => st.rate_mark = (Some(now), n),
        }
        let c = st.counters;
        MonitorView {
            phase: st.phase,
            usable: st.usable(now),
            lease_left: st
                .lease_until
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
            objects: st.objects.len(),
            notifications: c.notifications,
            notifications_per_sec: st.rate,
            resyncs: c.resyncs,
            gaps: c.gaps,
            hits: c.hits,
            false_hits: c.false_hits,
            refusals: c.refusals,
            overflows: c.overflows,
            invalidations: c.invalidations,
            updates: c.updates,
            refetches_done: c.refetches_done,
            refetches_failed: c.refetches_failed,
            changes_dropped: c.changes_dropped,
        }
    }
}

#[cfg(test)]
mod tests;
