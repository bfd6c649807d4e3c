//! Revalidation ahead of expiry (`refresh_pattern ... adaptive=N`, issue
//! 22): the hits a popular adaptive object gets within its current poll
//! interval are counted, and a hit in the interval's last tenth on one hit
//! at least N times starts its revalidation in the background
//! (`caching::adaptive::revalidate_ahead`), through stale-while-revalidate's
//! background path, so its clients keep getting hits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::caching::adaptive::{self, PollResult};
use crate::caching::{StorePlan, Validators};
use crate::http::hot::HotEntry;
use crate::stats::AdaptiveEvent;
use crate::store::Key;

use super::lookup::Found;
use super::Proxy;

/// Slots of [`IntervalHits`] (a power of two: the index is a mask).
const SLOTS: usize = 1 << 14;

/// Hits of adaptive objects within their current interval: a direct-mapped
/// table of [`SLOTS`] counters (128 KiB, allocated at the first count), so
/// counting costs no allocation per URL and no lock. A slot holds one
/// object's interval (a tag of its key and stored date) and its hits; a
/// revalidation changes the date, so the count starts again. Two objects
/// that share a slot take it from each other, each then counting from 1:
/// an object is revalidated ahead later than it could be, never wrongly.
#[derive(Debug, Default)]
pub(super) struct IntervalHits {
    slots: OnceLock<Box<[AtomicU64]>>,
}

impl IntervalHits {
    /// One hit on the entry under `key` stored at `date` (its interval's
    /// start): its hits in this interval so far, this one included.
    pub(super) fn hit(&self, key: &Key, date: u32) -> u32 {
        let slots = self
            .slots
            .get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect());
        let [a, b, c, d, e, f, g, h, i, j, k, l, ..] = *key;
        let index = u64::from_le_bytes([a, b, c, d, e, f, g, h]) as usize & (SLOTS - 1);
        let tag = u32::from_le_bytes([i, j, k, l]) ^ date.rotate_left(16);
        let Some(slot) = slots.get(index) else {
            return 1;
        };
        let next = |packed: u64| {
            let hits = if (packed >> 32) as u32 == tag {
                (packed as u32).saturating_add(1)
            } else {
                1
            };
            Some((u64::from(tag) << 32) | u64::from(hits))
        };
        // `next` always answers, so the update cannot fail; a lost race
        // retries with the other thread's count.
        let before = slot
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, next)
            .unwrap_or_else(|packed| packed);
        next(before).map_or(1, |packed| packed as u32)
    }
}

impl Proxy {
    /// Counts the interval a revalidation set by adaptive polling, if it did.
    pub(super) fn note_poll(&self, plan: &StorePlan) {
        let event = match plan.polled {
            Some(PollResult::Unchanged) => AdaptiveEvent::Doubled,
            Some(PollResult::Changed) => AdaptiveEvent::Halved,
            None => return,
        };
        self.mgr.stats.note_adaptive(event);
    }

    /// Counts a hit on `obj` served without the plan (the memory cache's
    /// fast paths serve an adaptive object only before its last tenth).
    pub(super) fn count_interval_hit(&self, key: &Key, obj: &HotEntry) {
        if obj.ahead_hits > 0 {
            self.interval_hits.hit(key, obj.entry.times.date);
        }
    }

    /// Counts a hit the plan served (fresh, no revalidation of its own) and
    /// answers the validators to revalidate it with ahead of its expiry,
    /// when it is popular and in its interval's last tenth.
    pub(super) fn revalidate_ahead(&self, found: &Found, now: u64) -> Option<Validators> {
        let obj = &found.obj;
        if obj.ahead_hits == 0 {
            return None;
        }
        let hits = self.interval_hits.hit(&found.key, obj.entry.times.date);
        let interval = adaptive::stored_interval(&obj.entry.times);
        adaptive::revalidate_ahead(hits, obj.ahead_hits, obj.entry.age(now), interval)
            .then(|| obj.entry.validators())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_count_per_interval() {
        let hits = IntervalHits::default();
        let key = [7u8; 16];
        assert_eq!(hits.hit(&key, 100), 1);
        assert_eq!(hits.hit(&key, 100), 2);
        assert_eq!(hits.hit(&key, 100), 3);
        // Revalidated: a new interval starts from 1.
        assert_eq!(hits.hit(&key, 160), 1);
        // Another object in the same slot takes it.
        let mut other = key;
        other[8] = 8;
        assert_eq!(hits.hit(&other, 160), 1);
        assert_eq!(hits.hit(&key, 160), 1);
        // Another slot is left alone.
        let mut elsewhere = key;
        elsewhere[0] = 1;
        assert_eq!(hits.hit(&elsewhere, 160), 1);
        assert_eq!(hits.hit(&key, 160), 2);
    }
}
