//! Reference counts per URL for `peer_store_threshold` (issue 19): how
//! often this cache has seen a URL within the last window, kept in a
//! count-min sketch of fixed size so that counting costs no allocation per
//! URL and no lock on the request path.
//!
//! Memory: [`DEPTH`] rows of [`WIDTH`] 16-bit counters, twice (the current
//! and the previous window): 1 MiB whatever the number of URLs, allocated
//! on the first count (a cache without a threshold never allocates it).
//! A URL touches one counter per row, 8 bytes per window, shared with
//! the URLs that hash alike. A count errs high, not low (but for two
//! references to one URL counted at the same instant on two threads,
//! which may count once); with `n` references in a window it is
//! over-estimated by more than
//! `e * n / WIDTH` (41 for a million) with probability below `e^-DEPTH`
//! (2%), and less in practice with conservative update (only the rows at
//! the minimum grow). An over-estimate stores a copy sooner: Squid's
//! behaviour, never a lost object.
//!
//! The window slides: the estimate is the current window's count plus the
//! previous window's, weighted by how much of it still lies within one
//! window of `now` (the rate-limiter approximation). Counters saturate at
//! `u16::MAX`. Time is passed in, so the simulator drives the same
//! counter on its virtual clock.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Rows of the sketch: one 32-bit slice of the (MD5) store key each.
pub const DEPTH: usize = 4;
/// Counters per row (a power of two: the index is a mask of the slice).
pub const WIDTH: usize = 1 << 16;

/// The bytes the sketch takes once allocated.
pub const MEMORY_BYTES: usize = 2 * DEPTH * WIDTH * std::mem::size_of::<u16>();

// The module doc promises 1 MiB.
const _: () = assert!(MEMORY_BYTES == 1 << 20);

/// The reference counter of one cache; shared by every request (and kept
/// across reloads by the daemon).
#[derive(Debug)]
pub struct RefCounts {
    /// Instants are stored as nanoseconds since this one.
    origin: Instant,
    window_nanos: AtomicU64,
    /// When the current window began (nanoseconds since `origin`).
    window_start: AtomicU64,
    /// Which half of `counters` is the current window (0 or 1).
    current: AtomicUsize,
    /// Two windows of DEPTH rows of WIDTH counters.
    counters: OnceLock<Box<[AtomicU16]>>,
    /// Held while a window ends (rare: once a window).
    turning: Mutex<()>,
}

impl RefCounts {
    /// An empty counter whose window starts at `now`.
    pub fn new(window: Duration, now: Instant) -> RefCounts {
        RefCounts {
            origin: now,
            window_nanos: AtomicU64::new(nanos(window).max(1)),
            window_start: AtomicU64::new(0),
            current: AtomicUsize::new(0),
            counters: OnceLock::new(),
            turning: Mutex::new(()),
        }
    }

    /// A reload's new window: the counts so far are kept.
    pub fn set_window(&self, window: Duration) {
        self.window_nanos
            .store(nanos(window).max(1), Ordering::Relaxed);
    }

    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos.load(Ordering::Relaxed))
    }

    /// One reference to `key` (a store key) at `now`; returns how many
    /// times it has been seen within the window, this one included.
    pub fn note(&self, key: &[u8; 16], now: Instant) -> u32 {
        let (current, previous, weight) = self.turn(now);
        let counters = self.counters();
        let slots = slots(key);
        let seen = min_over(counters, current, &slots);
        let next = seen.saturating_add(1);
        // Conservative update: only the rows at the minimum grow.
        for (row, slot) in slots.iter().enumerate() {
            if let Some(c) = counters.get(index(current, row, *slot)) {
                c.fetch_max(next, Ordering::Relaxed);
            }
        }
        u32::from(next) + weighted(min_over(counters, previous, &slots), weight)
    }

    /// How many times `key` has been seen within the window at `now`.
    pub fn estimate(&self, key: &[u8; 16], now: Instant) -> u32 {
        let Some(counters) = self.counters.get() else {
            return 0;
        };
        let (current, previous, weight) = self.turn(now);
        let slots = slots(key);
        u32::from(min_over(counters, current, &slots))
            + weighted(min_over(counters, previous, &slots), weight)
    }

    fn counters(&self) -> &[AtomicU16] {
        self.counters
            .get_or_init(|| (0..2 * DEPTH * WIDTH).map(|_| AtomicU16::new(0)).collect())
    }

    /// Ends the windows that `now` is past; returns the current and the
    /// previous half, and the previous window's weight in 1/65536ths.
    fn turn(&self, now: Instant) -> (usize, usize, u64) {
        let now = nanos(now.saturating_duration_since(self.origin));
        let window = self.window_nanos.load(Ordering::Relaxed);
        let mut start = self.window_start.load(Ordering::Acquire);
        if now.saturating_sub(start) >= window {
            let _turning = self.turning.lock().unwrap_or_else(|e| e.into_inner());
            start = self.window_start.load(Ordering::Acquire);
            let ended = now.saturating_sub(start) / window;
            if ended > 0 {
                self.end_windows(ended);
                start = start.saturating_add(ended.saturating_mul(window));
                self.window_start.store(start, Ordering::Release);
            }
        }
        let current = self.current.load(Ordering::Acquire) & 1;
        let into = now.saturating_sub(start).min(window);
        // The part of the previous window still within one window of now.
        let weight = ((window - into) as u128 * 65_536 / u128::from(window)) as u64;
        (current, current ^ 1, weight)
    }

    /// `ended` windows are over: the current becomes the previous (or,
    /// past two, both are forgotten).
    fn end_windows(&self, ended: u64) {
        let Some(counters) = self.counters.get() else {
            return;
        };
        let current = self.current.load(Ordering::Acquire) & 1;
        let clear = |half: usize| {
            for c in counters
                .iter()
                .skip(half * DEPTH * WIDTH)
                .take(DEPTH * WIDTH)
            {
                c.store(0, Ordering::Relaxed);
            }
        };
        if ended >= 2 {
            clear(0);
            clear(1);
        } else {
            clear(current ^ 1);
            self.current.store(current ^ 1, Ordering::Release);
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The counter of each row for `key`: its 4 bytes for that row, masked.
fn slots(key: &[u8; 16]) -> [usize; DEPTH] {
    let mut out = [0usize; DEPTH];
    for (row, slot) in out.iter_mut().enumerate() {
        let b = |i: usize| key.get(row * 4 + i).copied().unwrap_or(0);
        let word = u32::from_le_bytes([b(0), b(1), b(2), b(3)]);
        *slot = word as usize & (WIDTH - 1);
    }
    out
}

fn index(half: usize, row: usize, slot: usize) -> usize {
    (half * DEPTH + row) * WIDTH + slot
}

fn min_over(counters: &[AtomicU16], half: usize, slots: &[usize; DEPTH]) -> u16 {
    slots
        .iter()
        .enumerate()
        .map(|(row, slot)| {
            counters
                .get(index(half, row, *slot))
                .map_or(0, |c| c.load(Ordering::Relaxed))
        })
        .min()
        .unwrap_or(0)
}

fn weighted(count: u16, weight: u64) -> u32 {
    ((u64::from(count) * weight) >> 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_protocol::key::{store_key, Method};

    fn key(url: &str) -> [u8; 16] {
        store_key(Method::Get, url.as_bytes())
    }

    #[test]
    fn counts_each_url_apart() {
        let t0 = Instant::now();
        let c = RefCounts::new(Duration::from_secs(60), t0);
        let (a, b) = (key("http://o/a"), key("http://o/b"));
        assert_eq!(c.estimate(&a, t0), 0);
        assert_eq!(c.note(&a, t0), 1);
        assert_eq!(c.note(&a, t0), 2);
        assert_eq!(c.note(&b, t0), 1);
        assert_eq!(c.note(&a, t0 + Duration::from_secs(59)), 3);
        assert_eq!(c.estimate(&a, t0 + Duration::from_secs(59)), 3);
        assert_eq!(c.estimate(&b, t0), 1);
    }

    #[test]
    fn counts_fade_over_the_next_window_and_vanish_after_it() {
        let t0 = Instant::now();
        let w = Duration::from_secs(100);
        let c = RefCounts::new(w, t0);
        let a = key("http://o/a");
        for _ in 0..10 {
            c.note(&a, t0);
        }
        // A quarter into the next window, three quarters of the old count.
        assert_eq!(c.estimate(&a, t0 + Duration::from_secs(125)), 7);
        assert_eq!(c.note(&a, t0 + Duration::from_secs(125)), 8);
        // Two windows on, only what was seen since counts.
        assert_eq!(c.estimate(&a, t0 + Duration::from_secs(299)), 0);
        assert_eq!(c.note(&a, t0 + Duration::from_secs(500)), 1);
    }

    #[test]
    fn a_new_window_keeps_the_counts() {
        let t0 = Instant::now();
        let c = RefCounts::new(Duration::from_secs(60), t0);
        let a = key("http://o/a");
        c.note(&a, t0);
        c.note(&a, t0);
        c.set_window(Duration::from_secs(600));
        assert_eq!(c.window(), Duration::from_secs(600));
        assert_eq!(c.note(&a, t0 + Duration::from_secs(120)), 3);
    }

    #[test]
    fn many_urls_leave_a_rare_one_near_its_count() {
        let t0 = Instant::now();
        let c = RefCounts::new(Duration::from_secs(60), t0);
        for i in 0..100_000 {
            c.note(&key(&format!("http://o/{i}")), t0);
        }
        let rare = key("http://o/rare");
        let n = c.note(&rare, t0);
        // The bound above: e * 100000 / 65536 ≈ 4 over, nearly always.
        assert!((1..=5).contains(&n), "{n}");
    }

    #[test]
    fn counters_saturate() {
        let t0 = Instant::now();
        let c = RefCounts::new(Duration::from_secs(60), t0);
        let a = key("http://o/a");
        for _ in 0..70_000 {
            c.note(&a, t0);
        }
        assert_eq!(c.estimate(&a, t0), u32::from(u16::MAX));
    }
}
