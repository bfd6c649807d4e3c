//! The refresh_pattern that applies to a URL (first regex match in config order, else
//! Squid's built-in default), as plain numbers the freshness rules use.

use std::time::Duration;

use crate::config::{Config, RefreshPattern};

/// Squid crops refresh_pattern `min` and `max` to one year (cache_cf.cc).
const ONE_YEAR: u64 = 365 * 24 * 3600;

/// Squid's rule when no refresh_pattern matches: min 0, 20%, max 3 days.
const DEFAULT_MAX: u64 = 3 * 24 * 3600;

/// The refresh rule for one URL. All times are seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Index in `config.refresh_patterns` of the pattern that matched;
    /// `None` = Squid's default rule.
    pub index: Option<usize>,
    pub min: u64,
    /// Last-modified factor, percent (may exceed 100).
    pub percent: u32,
    pub max: u64,
    pub override_expire: bool,
    pub override_lastmod: bool,
    pub reload_into_ims: bool,
    pub ignore_reload: bool,
    pub ignore_no_store: bool,
    pub ignore_private: bool,
    pub refresh_ims: bool,
    pub store_stale: bool,
    /// The pattern's `max-stale=N`, else the global `max_stale`.
    pub max_stale: u64,
    /// The global `negative_ttl` (Squid's negative caching; 0 = off).
    pub negative_ttl: u64,
    /// The pattern's `adaptive[=N]`: popular hits per interval; `None` =
    /// Squid's fixed heuristic (see `caching::adaptive`).
    pub adaptive: Option<u32>,
}

impl Rule {
    /// Squid's default rule (min 0, 20%, max 3 days), with the given global
    /// `max_stale` and `negative_ttl`.
    pub fn squid_default(max_stale: Duration, negative_ttl: Duration) -> Rule {
        Rule {
            index: None,
            min: 0,
            percent: 20,
            max: DEFAULT_MAX,
            override_expire: false,
            override_lastmod: false,
            reload_into_ims: false,
            ignore_reload: false,
            ignore_no_store: false,
            ignore_private: false,
            refresh_ims: false,
            store_stale: false,
            max_stale: max_stale.as_secs(),
            negative_ttl: negative_ttl.as_secs(),
            adaptive: None,
        }
    }

    /// The rule of one refresh_pattern (its `min` and `max` cropped to one
    /// year as Squid does).
    pub fn from_pattern(
        p: &RefreshPattern,
        index: Option<usize>,
        max_stale: Duration,
        negative_ttl: Duration,
    ) -> Rule {
        Rule {
            index,
            min: p.min.as_secs().min(ONE_YEAR),
            percent: p.percent,
            max: p.max.as_secs().min(ONE_YEAR),
            override_expire: p.override_expire,
            override_lastmod: p.override_lastmod,
            reload_into_ims: p.reload_into_ims,
            ignore_reload: p.ignore_reload,
            ignore_no_store: p.ignore_no_store,
            ignore_private: p.ignore_private,
            refresh_ims: p.refresh_ims,
            store_stale: p.store_stale,
            max_stale: p.max_stale.unwrap_or(max_stale).as_secs(),
            negative_ttl: negative_ttl.as_secs(),
            adaptive: p.adaptive,
        }
    }

    /// The rule for `url` (the canonical URL, as the store key hashes it):
    /// the first refresh_pattern whose regex matches, else Squid's default.
    pub fn for_url(config: &Config, url: &str) -> Rule {
        let max_stale = config.max_stale.value;
        let negative_ttl = config.negative_ttl.value;
        config
            .refresh_patterns
            .iter()
            .enumerate()
            .find(|(_, p)| p.regex.is_match(url))
            .map_or_else(
                || Rule::squid_default(max_stale, negative_ttl),
                |(i, p)| Rule::from_pattern(p, Some(i), max_stale, negative_ttl),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions};

    fn config(text: &str) -> Config {
        let loaded = load_str(text, "t.conf", &LoadOptions::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.config
    }

    #[test]
    fn default_rule_when_nothing_matches() {
        let c = Config::default();
        let r = Rule::for_url(&c, "http://example.com/");
        assert_eq!(r.index, None);
        assert_eq!((r.min, r.percent, r.max), (0, 20, 259_200));
        assert_eq!(r.max_stale, 7 * 24 * 3600);
        assert_eq!(r.negative_ttl, 0);
    }

    #[test]
    fn first_match_wins_with_its_options() {
        let c = config(
            "max_stale 1 day\nnegative_ttl 5 minutes\n\
             refresh_pattern ^ftp: 1440 20% 10080\n\
             refresh_pattern -i \\.JPG$ 60 50% 120 override-expire ignore-reload max-stale=30\n\
             refresh_pattern -i (/cgi-bin/|\\?) 0 0% 0\n\
             refresh_pattern . 0 20% 4320 refresh-ims\n",
        );
        let r = Rule::for_url(&c, "http://h/a.jpg");
        assert_eq!(r.index, Some(1));
        assert_eq!((r.min, r.percent, r.max), (3600, 50, 7200));
        assert!(r.override_expire && r.ignore_reload && !r.refresh_ims);
        assert_eq!(r.max_stale, 30);
        assert_eq!(r.negative_ttl, 300);
        let r = Rule::for_url(&c, "http://h/x?y");
        assert_eq!((r.index, r.min, r.percent, r.max), (Some(2), 0, 0, 0));
        let r = Rule::for_url(&c, "http://h/x");
        assert_eq!(r.index, Some(3));
        assert!(r.refresh_ims);
        assert_eq!(r.max_stale, 24 * 3600);
        assert_eq!(Rule::for_url(&c, "ftp://h/f").min, 86_400);
    }

    #[test]
    fn min_and_max_are_cropped_to_a_year() {
        let c = config("refresh_pattern . 9999999 20% 9999999\n");
        let r = Rule::for_url(&c, "http://h/");
        assert_eq!((r.min, r.max), (ONE_YEAR, ONE_YEAR));
    }
}
