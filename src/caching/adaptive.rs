//! Adaptive polling (`refresh_pattern ... adaptive[=N]`): an object whose
//! freshness lifetime is heuristic carries its own poll interval. It starts
//! at the heuristic's estimate (Squid's last-modified factor, or the
//! pattern's min without a Last-Modified), doubles when a revalidation finds
//! the object unchanged (304) and halves when it finds a new version, always
//! within the pattern's min and max. The interval is the object's stored
//! lifetime (`expires − date` in the index), so it needs no store field of
//! its own: the next interval follows from the one the entry was stored
//! with.
//!
//! Popular objects are revalidated in the background shortly before they
//! expire, so their clients keep getting hits: `N` (default
//! [`DEFAULT_POPULAR_HITS`]) is the access-rate threshold, in hits within
//! the object's current interval; `adaptive=0` turns that off.
//!
//! Pure functions on seconds: the proxy and `cuttle simulate` call the same
//! ones.

/// The shortest interval an adaptive object is polled at, whatever the
/// pattern's min: from a min of 0 (Squid's usual `refresh_pattern . 0 20%
/// 4320`) halving would stick at 0, and 0 never doubles.
pub const FLOOR_SECS: u64 = 1;

pub use crate::config::ADAPTIVE_POPULAR_HITS as DEFAULT_POPULAR_HITS;

/// The part of its interval an object has lived, in tenths, after which a
/// popular one is revalidated in the background (the last tenth).
const AHEAD_AT_TENTHS: u64 = 9;

/// The bounds of a pattern's intervals: `[max(min, FLOOR_SECS), max(max, that)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    /// From a pattern's `min` and `max`, in seconds.
    pub fn new(min: u64, max: u64) -> Bounds {
        let min = min.max(FLOOR_SECS);
        Bounds {
            min,
            max: max.max(min),
        }
    }

    fn clamp(self, secs: u64) -> u64 {
        secs.clamp(self.min, self.max)
    }
}

/// What a revalidation of an adaptive object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollResult {
    /// 304 Not Modified (or the same validators).
    Unchanged,
    /// A new version.
    Changed,
}

/// The interval of an object stored for the first time: the heuristic's
/// estimate, within bounds.
pub fn first_interval(heuristic_secs: u64, bounds: Bounds) -> u64 {
    bounds.clamp(heuristic_secs)
}

/// The interval after a revalidation of an object polled every `current`
/// seconds: doubled when unchanged, halved when changed, within bounds.
pub fn next_interval(current: u64, result: PollResult, bounds: Bounds) -> u64 {
    match result {
        PollResult::Unchanged => bounds.clamp(current.saturating_mul(2)),
        PollResult::Changed => bounds.clamp(current / 2),
    }
}

/// Whether a hit on an object of this `age` and `interval`, hit
/// `hits_this_interval` times so far in that interval (this hit included),
/// should start a background revalidation: the object is popular (at least
/// `popular_hits`, which 0 turns off), still fresh, and in the last tenth of
/// its interval.
pub fn revalidate_ahead(
    hits_this_interval: u32,
    popular_hits: u32,
    age: u64,
    interval: u64,
) -> bool {
    popular_hits > 0
        && hits_this_interval >= popular_hits
        && age < interval
        && age.saturating_mul(10) >= interval.saturating_mul(AHEAD_AT_TENTHS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_have_a_floor_and_max_is_at_least_min() {
        assert_eq!(
            Bounds::new(0, 4320 * 60),
            Bounds {
                min: 1,
                max: 259_200
            }
        );
        assert_eq!(Bounds::new(600, 60), Bounds { min: 600, max: 600 });
    }

    #[test]
    fn first_interval_is_the_estimate_within_bounds() {
        let b = Bounds::new(60, 3600);
        assert_eq!(first_interval(0, b), 60);
        assert_eq!(first_interval(900, b), 900);
        assert_eq!(first_interval(86_400, b), 3600);
    }

    #[test]
    fn unchanged_doubles_and_changed_halves_within_bounds() {
        let b = Bounds::new(60, 3600);
        assert_eq!(next_interval(600, PollResult::Unchanged, b), 1200);
        assert_eq!(next_interval(2400, PollResult::Unchanged, b), 3600);
        assert_eq!(next_interval(600, PollResult::Changed, b), 300);
        assert_eq!(next_interval(100, PollResult::Changed, b), 60);
        assert_eq!(next_interval(u64::MAX, PollResult::Unchanged, b), 3600);
        let zero_min = Bounds::new(0, 3600);
        assert_eq!(next_interval(1, PollResult::Changed, zero_min), 1);
        assert_eq!(next_interval(1, PollResult::Unchanged, zero_min), 2);
    }

    #[test]
    fn only_popular_objects_in_their_last_tenth_are_revalidated_ahead() {
        assert!(revalidate_ahead(4, 4, 90, 100));
        assert!(!revalidate_ahead(3, 4, 95, 100), "not popular");
        assert!(!revalidate_ahead(9, 4, 89, 100), "too early");
        assert!(!revalidate_ahead(9, 4, 100, 100), "already stale");
        assert!(!revalidate_ahead(9, 0, 95, 100), "turned off");
    }
}
