//! The store's change feed: the keys whose entry was committed or removed
//! (replaced, purged, evicted), for whoever tells others what this cache
//! holds (HTCP MON, `peers::monitor`). A key is only a hint: the reader
//! looks the key up in the index when it drains the feed and tells what it
//! finds then, so a burst of changes to one key costs one notice and the
//! order of a commit and a removal in another cache_dir cannot mislead.
//!
//! Cheap when nobody listens: one relaxed atomic load per change. While
//! enabled, a change is a short lock and a push onto a bounded queue; a
//! full queue drops the key and marks the feed overflowed, and the reader
//! must then start everyone over from a full listing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::Key;

/// Keys kept until the reader drains them.
pub const FEED_CAPACITY: usize = 65_536;

#[derive(Debug, Default)]
pub struct ChangeFeed {
    enabled: AtomicBool,
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    keys: VecDeque<Key>,
    overflowed: bool,
}

impl ChangeFeed {
    /// Start (or stop) keeping changes; stopping forgets those kept.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        if !on {
            let mut q = self.lock();
            q.keys.clear();
            q.overflowed = false;
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// `key`'s entry changed (called under the cache_dir's lock: the feed's
    /// own lock is a leaf).
    pub fn note(&self, key: &Key) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut q = self.lock();
        if q.keys.len() >= FEED_CAPACITY {
            q.overflowed = true;
            return;
        }
        q.keys.push_back(*key);
    }

    /// Moves the kept keys into `out`; true when some were dropped since
    /// the last drain (the queue was full).
    pub fn drain(&self, out: &mut Vec<Key>) -> bool {
        let mut q = self.lock();
        out.extend(q.keys.drain(..));
        std::mem::take(&mut q.overflowed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_only_while_enabled_and_bounded() {
        let feed = ChangeFeed::default();
        feed.note(&[1; 16]);
        let mut out = Vec::new();
        assert!(!feed.drain(&mut out));
        assert!(out.is_empty(), "disabled: nothing kept");
        feed.set_enabled(true);
        feed.note(&[2; 16]);
        feed.note(&[3; 16]);
        assert!(!feed.drain(&mut out));
        assert_eq!(out, vec![[2; 16], [3; 16]]);
        for i in 0..=FEED_CAPACITY {
            feed.note(&[(i % 250) as u8; 16]);
        }
        out.clear();
        assert!(feed.drain(&mut out), "overflow reported");
        assert_eq!(out.len(), FEED_CAPACITY);
        assert!(!feed.drain(&mut out), "reported once");
    }
}
