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
//! ones. [`store_lifetime`] is where a stored response gets its interval
//! (`freshness` calls it for every store and freshen) and [`stored_lifetime`]
//! where a hit reads it back.

use super::freshness::{Lifetime, LifetimeSource};
use super::rule::Rule;
use crate::store::Times;

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

/// A revalidation of an adaptive object: the interval it was stored with
/// and what the poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    pub previous: u64,
    pub result: PollResult,
}

/// Whether a lifetime from `source` is heuristic, the only kind adaptive
/// polling replaces (never an explicit max-age or Expires).
pub fn polls(source: LifetimeSource) -> bool {
    matches!(
        source,
        LifetimeSource::LastModifiedFactor | LifetimeSource::OverrideLastmod | LifetimeSource::Min
    )
}

/// Whether `rule` polls a response whose lifetime is `lifetime` adaptively.
pub fn applies(rule: &Rule, lifetime: Lifetime) -> bool {
    rule.adaptive.is_some() && polls(lifetime.source)
}

/// The interval an entry was stored with: `expires − date`.
pub fn stored_interval(times: &Times) -> u64 {
    u64::from(times.expires.saturating_sub(times.date))
}

/// The poll that revalidated an entry stored with `times` under `rule`
/// (its fields parsed gave `lifetime`): `None` when the entry is not polled
/// adaptively, so a new version starts afresh at its first interval.
pub fn poll_of(rule: &Rule, lifetime: Lifetime, times: &Times, result: PollResult) -> Option<Poll> {
    applies(rule, lifetime).then(|| Poll {
        previous: stored_interval(times),
        result,
    })
}

/// The lifetime a response is stored with under `rule`: under `adaptive`,
/// a heuristic `lifetime` gives way to the poll interval, the first one or
/// the one after `poll`.
pub fn store_lifetime(rule: &Rule, lifetime: Lifetime, poll: Option<Poll>) -> Lifetime {
    if !applies(rule, lifetime) {
        return lifetime;
    }
    let bounds = Bounds::new(rule.min, rule.max);
    let secs = match poll {
        None => first_interval(lifetime.secs, bounds),
        Some(p) => next_interval(p.previous, p.result, bounds),
    };
    Lifetime { secs, ..lifetime }
}

/// The lifetime of a stored entry under `rule` (`lifetime` as its fields
/// give it): under `adaptive`, a heuristic one is the interval the entry was
/// stored with (within the pattern's bounds, should they have been reloaded).
pub fn stored_lifetime(rule: &Rule, lifetime: Lifetime, times: &Times) -> Lifetime {
    if !applies(rule, lifetime) {
        return lifetime;
    }
    let secs = Bounds::new(rule.min, rule.max).clamp(stored_interval(times));
    Lifetime { secs, ..lifetime }
}

/// The age from which a hit on a popular object with this `interval` may
/// revalidate it ahead ([`revalidate_ahead`]): the start of its last tenth.
/// Before it, the memory cache's fast path serves without asking.
pub fn ahead_from(interval: u64) -> u64 {
    interval.saturating_mul(AHEAD_AT_TENTHS).div_ceil(10)
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
    fn ahead_from_is_where_revalidate_ahead_starts() {
        for interval in [1, 9, 10, 11, 19, 100, 3601] {
            let from = ahead_from(interval);
            assert!(!revalidate_ahead(9, 1, from.saturating_sub(1), interval) || from == 0);
            assert_eq!(revalidate_ahead(9, 1, from, interval), from < interval);
        }
        assert_eq!(ahead_from(10), 9);
        assert_eq!(ahead_from(11), 10);
    }

    fn lifetime(secs: u64, source: LifetimeSource) -> Lifetime {
        Lifetime { secs, source }
    }

    fn adaptive_rule() -> Rule {
        Rule {
            min: 0,
            max: 3600,
            adaptive: Some(DEFAULT_POPULAR_HITS),
            ..crate::caching::test_support::rule()
        }
    }

    #[test]
    fn only_heuristic_lifetimes_under_an_adaptive_pattern_are_polled() {
        let r = adaptive_rule();
        let heuristic = lifetime(0, LifetimeSource::LastModifiedFactor);
        assert_eq!(store_lifetime(&r, heuristic, None).secs, FLOOR_SECS);
        let unchanged = Some(Poll {
            previous: 600,
            result: PollResult::Unchanged,
        });
        assert_eq!(store_lifetime(&r, heuristic, unchanged).secs, 1200);
        let min = lifetime(0, LifetimeSource::Min);
        let changed = Some(Poll {
            previous: 600,
            result: PollResult::Changed,
        });
        assert_eq!(store_lifetime(&r, min, changed).secs, 300);
        // Explicit lifetimes, and Squid's patterns, keep theirs.
        let max_age = lifetime(60, LifetimeSource::MaxAge);
        assert_eq!(store_lifetime(&r, max_age, unchanged), max_age);
        let fixed = Rule {
            adaptive: None,
            ..r
        };
        assert_eq!(store_lifetime(&fixed, heuristic, unchanged), heuristic);
    }

    #[test]
    fn a_stored_entry_is_read_back_with_its_interval() {
        let r = adaptive_rule();
        let times = Times {
            date: 1000,
            expires: 1400,
            last_modified: 0,
        };
        let heuristic = lifetime(20, LifetimeSource::LastModifiedFactor);
        assert_eq!(stored_lifetime(&r, heuristic, &times).secs, 400);
        assert_eq!(
            poll_of(&r, heuristic, &times, PollResult::Changed),
            Some(Poll {
                previous: 400,
                result: PollResult::Changed
            })
        );
        let max_age = lifetime(20, LifetimeSource::MaxAge);
        assert_eq!(stored_lifetime(&r, max_age, &times), max_age);
        assert_eq!(poll_of(&r, max_age, &times, PollResult::Changed), None);
        // A pattern reloaded with a smaller max bounds what was stored.
        let smaller = Rule { max: 100, ..r };
        assert_eq!(stored_lifetime(&smaller, heuristic, &times).secs, 100);
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
