//! Age and freshness lifetime (RFC 9111 §4.2): s-maxage > max-age > Expires − Date, else
//! Squid's refresh_pattern heuristic; and the three times the store index keeps per entry.

use http::header::{HeaderMap, HeaderValue, AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::StatusCode;

use super::adaptive::{self, Poll};
use super::directives::{delta_seconds, directives, ResponseDirectives, DELTA_SECONDS_MAX};
use super::rule::Rule;
use crate::store::Times;

/// When the proxy sent the request and received the response head, unix
/// seconds (RFC 9111 §4.2.3 `request_time`, `response_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub request_time: u64,
    pub response_time: u64,
}

pub use super::http_date::{http_date_value, parse_http_date};

/// Status codes "heuristically cacheable" by default (RFC 9110 §15.1), less
/// 206: cuttle does not store partial content.
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses Squid caches "negatively" for `negative_ttl` when they carry no
/// explicit expiry (http.cc, `HttpStateData::reusableReply`).
pub fn squid_negative(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        204 | 305 | 400 | 403 | 404 | 405 | 414 | 421 | 500 | 501 | 502 | 503 | 504
    )
}

/// The fields of a response head that the freshness rules read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    pub cc: ResponseDirectives,
    pub date: Option<u64>,
    /// An Expires that does not parse counts as already expired (0),
    /// RFC 9111 §5.3. The first field line is used.
    pub expires: Option<u64>,
    pub last_modified: Option<u64>,
    pub age: Option<u64>,
}

impl Facts {
    pub fn parse(headers: &HeaderMap) -> Facts {
        let headers = &*super::targeted::effective(headers); // RFC 9213: in place of CC, Expires
        Facts {
            cc: ResponseDirectives::parse_effective(headers),
            date: headers.get(DATE).and_then(parse_http_date),
            expires: headers
                .get(EXPIRES)
                .map(|v| parse_http_date(v).unwrap_or(0)),
            last_modified: headers.get(LAST_MODIFIED).and_then(parse_http_date),
            age: directives(headers, &AGE)
                .first()
                .filter(|d| d.value.is_none())
                .and_then(|d| delta_seconds(&d.name)),
        }
    }
}

/// RFC 9111 §4.2.3 `corrected_initial_age`: the larger of the apparent age
/// (response_time − Date) and the Age field plus the response delay.
pub fn corrected_initial_age(headers: &HeaderMap, exchange: Exchange) -> u64 {
    corrected_initial_age_of(&Facts::parse(headers), exchange)
}

pub(crate) fn corrected_initial_age_of(f: &Facts, exchange: Exchange) -> u64 {
    let apparent_age = f
        .date
        .map_or(0, |date| exchange.response_time.saturating_sub(date));
    let response_delay = exchange.response_time.saturating_sub(exchange.request_time);
    let corrected_age_value = f.age.unwrap_or(0).saturating_add(response_delay);
    apparent_age.max(corrected_age_value)
}

/// When the response's age was 0 by RFC 9111 §4.2.3:
/// `response_time − corrected_initial_age` (Squid's entry timestamp). Its
/// age at `now` is `now − birth`.
pub fn birth_time(headers: &HeaderMap, exchange: Exchange) -> u64 {
    exchange
        .response_time
        .saturating_sub(corrected_initial_age(headers, exchange))
}

/// Where a freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeSource {
    SMaxAge,
    MaxAge,
    /// Expires − Date.
    Expires,
    /// An explicit lifetime raised to the pattern's `min` (`override-expire`).
    OverrideExpire,
    /// Squid's last-modified factor: (birth − Last-Modified) × percent, at most `max`.
    LastModifiedFactor,
    /// The factor raised to the pattern's `min` (`override-lastmod`).
    OverrideLastmod,
    /// No usable Last-Modified: the pattern's `min` (at most `max`).
    Min,
    /// Squid's negative caching (`negative_ttl`).
    NegativeTtl,
    /// Neither explicit nor heuristic freshness is allowed for this status.
    None,
}

/// A freshness lifetime in seconds and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub secs: u64,
    pub source: LifetimeSource,
}

/// The freshness lifetime of a response (RFC 9111 §4.2.1), for a shared
/// cache: `s-maxage`, else `max-age`, else `Expires − Date` (Date absent:
/// `birth`), else Squid's heuristic for `rule`:
///
/// * a status Squid caches negatively (404, 5xx, ...): for those RFC 9110
///   §15.1 calls heuristically cacheable (204, 404, 405, 414, 501) with a
///   Last-Modified before `birth`, the last-modified factor below (if > 0);
///   else `negative_ttl` (0 = not cached);
/// * only for heuristically cacheable statuses or `public` responses:
/// * with a Last-Modified before `birth`: `(birth − Last-Modified) × percent`
///   (computed in floating point and truncated, exactly as Squid does),
///   raised to `min` under `override-lastmod`, at most `max`;
/// * otherwise `min`, at most `max`.
///
/// `override-expire` raises an explicit lifetime to `min` (bounded by the
/// lifetime plus `max_stale`, as Squid checks max_stale first).
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    rule: &Rule,
    birth: u64,
) -> Lifetime {
    lifetime_of(status, &Facts::parse(headers), rule, birth)
}

pub(crate) fn lifetime_of(status: StatusCode, f: &Facts, rule: &Rule, birth: u64) -> Lifetime {
    let explicit = if let Some(s) = f.cc.s_maxage {
        Some((s, LifetimeSource::SMaxAge))
    } else if let Some(s) = f.cc.max_age {
        Some((s, LifetimeSource::MaxAge))
    } else {
        f.expires.map(|e| {
            let date = f.date.unwrap_or(birth);
            (e.saturating_sub(date), LifetimeSource::Expires)
        })
    };
    if let Some((secs, source)) = explicit {
        if rule.override_expire {
            let floor = rule.min.min(secs.saturating_add(rule.max_stale));
            if floor > secs {
                return Lifetime {
                    secs: floor,
                    source: LifetimeSource::OverrideExpire,
                };
            }
        }
        return Lifetime { secs, source };
    }
    if squid_negative(status) {
        // RFC 9110 §15.1 allows a heuristic for 204, 404, 405, 414 and 501;
        // cuttle gives them one only from a Last-Modified (a pattern's
        // `min` alone would keep every missing page), else Squid's rule for
        // all its negative statuses: negative_ttl or nothing.
        if heuristically_cacheable(status) {
            let l = heuristic(f, rule, birth);
            let from_last_modified = matches!(
                l.source,
                LifetimeSource::LastModifiedFactor | LifetimeSource::OverrideLastmod
            );
            if from_last_modified && l.secs > 0 {
                return l;
            }
        }
        return Lifetime {
            secs: rule.negative_ttl,
            source: if rule.negative_ttl > 0 {
                LifetimeSource::NegativeTtl
            } else {
                LifetimeSource::None
            },
        };
    }
    if !(heuristically_cacheable(status) || f.cc.public) {
        return Lifetime {
            secs: 0,
            source: LifetimeSource::None,
        };
    }
    heuristic(f, rule, birth)
}

/// Squid's refresh_pattern heuristic: the last-modified factor when a
/// Last-Modified precedes `birth`, else the pattern's `min`.
fn heuristic(f: &Facts, rule: &Rule, birth: u64) -> Lifetime {
    match f.last_modified.filter(|&lm| lm < birth) {
        Some(lm) => {
            let delta = birth - lm;
            // Squid: static_cast<time_t>(lastmod_delta * (percent / 100.0)).
            let stale_age = (delta as f64 * (f64::from(rule.percent) / 100.0)) as u64;
            let mut l = Lifetime {
                secs: stale_age,
                source: LifetimeSource::LastModifiedFactor,
            };
            if rule.override_lastmod {
                let floor = rule.min.min(stale_age.saturating_add(rule.max_stale));
                if floor > stale_age {
                    l = Lifetime {
                        secs: floor,
                        source: LifetimeSource::OverrideLastmod,
                    };
                }
            }
            l.secs = l.secs.min(rule.max);
            l
        }
        None => Lifetime {
            secs: rule.min.min(rule.max),
            source: LifetimeSource::Min,
        },
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The store index times of a response received in `exchange`:
/// * `date`: its birth time ([`birth_time`], Squid's entry timestamp), so
///   its age at `now` is `now − date` from the index alone;
/// * `expires`: `date + lifetime`, the first second it is stale (the index
///   alone answers ICP/HTCP: fresh iff `now < expires`); for responses that
///   must always be revalidated (`no-cache`, `private`) it is `date`;
/// * `last_modified`: its Last-Modified, 0 if none.
///
/// Values past 2106 are cropped to `u32::MAX`.
pub fn entry_times(
    status: StatusCode,
    headers: &HeaderMap,
    rule: &Rule,
    exchange: Exchange,
) -> Times {
    let f = Facts::parse(headers);
    times_of(status, &f, rule, exchange)
}

pub(crate) fn times_of(status: StatusCode, f: &Facts, rule: &Rule, exchange: Exchange) -> Times {
    times_polled(status, f, rule, exchange, None).0
}

/// [`times_of`] for a response stored after `poll` (adaptive polling,
/// [`adaptive::store_lifetime`]); true when its lifetime is a poll interval.
pub(crate) fn times_polled(
    status: StatusCode,
    f: &Facts,
    rule: &Rule,
    exchange: Exchange,
    poll: Option<Poll>,
) -> (Times, bool) {
    let birth = exchange
        .response_time
        .saturating_sub(corrected_initial_age_of(f, exchange));
    let (lifetime, polled) = if f.cc.revalidate_always() {
        (0, false)
    } else {
        let heuristic = lifetime_of(status, f, rule, birth);
        (
            adaptive::store_lifetime(rule, heuristic, poll).secs,
            adaptive::applies(rule, heuristic),
        )
    };
    let times = Times {
        date: clamp_u32(birth),
        expires: clamp_u32(birth.saturating_add(lifetime)),
        last_modified: clamp_u32(f.last_modified.unwrap_or(0)),
    };
    (times, polled)
}

/// The lifetime of a stored response (status, parsed fields, index times)
/// under `rule`: recomputed from its fields, so a reloaded refresh_pattern
/// applies at once, but for an adaptive pattern's poll interval, which only
/// the index times keep.
pub(crate) fn stored_lifetime_of(
    status: StatusCode,
    f: &Facts,
    rule: &Rule,
    times: &Times,
) -> Lifetime {
    let lifetime = lifetime_of(status, f, rule, u64::from(times.date));
    adaptive::stored_lifetime(rule, lifetime, times)
}

/// The entry's current age at `now` (RFC 9111 §4.2.3 `current_age`):
/// `now − times.date`.
pub fn current_age(times: &Times, now: u64) -> u64 {
    now.saturating_sub(u64::from(times.date))
}

/// The index-only freshness answer for ICP and HTCP: `now < times.expires`.
pub fn is_fresh(times: &Times, now: u64) -> bool {
    now < u64::from(times.expires)
}

/// The `Age` field value for an age (RFC 9111 §5.1; capped at 2^31).
pub fn age_value(age: u64) -> HeaderValue {
    HeaderValue::from(age.min(DELTA_SECONDS_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::{date, h, rule};
    use http::HeaderName;

    /// 1994-11-06 08:49:37 UTC, RFC 9110's example date.
    pub const T0: u64 = 784_111_777;

    fn ok() -> StatusCode {
        StatusCode::OK
    }

    #[test]
    fn corrected_initial_age_rfc_9111_4_2_3() {
        let ex = Exchange {
            request_time: T0 + 98,
            response_time: T0 + 100,
        };
        // apparent_age = 100 - 0 = 100; corrected_age_value = 0 + 2 = 2.
        let headers = h(&[("date", &date(T0))]);
        assert_eq!(corrected_initial_age(&headers, ex), 100);
        assert_eq!(birth_time(&headers, ex), T0);
        // An upstream cache's Age dominates: 300 + 2 = 302.
        let headers = h(&[("date", &date(T0 + 100)), ("age", "300")]);
        assert_eq!(corrected_initial_age(&headers, ex), 302);
        assert_eq!(birth_time(&headers, ex), T0 + 100 - 302);
        // A Date in the future gives no negative apparent age.
        let headers = h(&[("date", &date(T0 + 5000))]);
        assert_eq!(corrected_initial_age(&headers, ex), 2);
        // No Date, no Age: the response delay alone.
        assert_eq!(corrected_initial_age(&HeaderMap::new(), ex), 2);
        // A malformed Age is ignored; of a list (two caches joined them) the first counts.
        let headers = h(&[("age", "abc")]);
        assert_eq!(corrected_initial_age(&headers, ex), 2);
        let headers = h(&[("age", "60, 70")]);
        assert_eq!(corrected_initial_age(&headers, ex), 62);
    }

    #[test]
    fn explicit_lifetime_precedence() {
        let r = rule();
        let b = T0;
        let base = [
            ("date", date(T0)),
            ("expires", date(T0 + 1000)),
            ("last-modified", date(T0 - 100_000)),
        ];
        let with = |cc: Option<&str>| {
            let mut m = HeaderMap::new();
            for (n, v) in &base {
                m.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            if let Some(cc) = cc {
                m.append("cache-control", HeaderValue::from_str(cc).unwrap());
            }
            freshness_lifetime(ok(), &m, &r, b)
        };
        let l = with(Some("max-age=60, s-maxage=30"));
        assert_eq!((l.secs, l.source), (30, LifetimeSource::SMaxAge));
        let l = with(Some("max-age=60"));
        assert_eq!((l.secs, l.source), (60, LifetimeSource::MaxAge));
        let l = with(None);
        assert_eq!((l.secs, l.source), (1000, LifetimeSource::Expires));
        // Invalid max-age: stale, and Expires is still ignored (RFC 9111 §5.2.2.1 says ignore Expires).
        let l = with(Some("max-age=soon"));
        assert_eq!((l.secs, l.source), (0, LifetimeSource::MaxAge));
    }

    #[test]
    fn expires_edge_cases() {
        let r = rule();
        // Expires "0" or garbage: already expired (RFC 9111 §5.3).
        let m = h(&[("date", &date(T0)), ("expires", "0")]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0).secs, 0);
        // Expires before Date.
        let m = h(&[("date", &date(T0)), ("expires", &date(T0 - 10))]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0).secs, 0);
        // No Date: birth stands in.
        let m = h(&[("expires", &date(T0 + 50))]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0 + 20).secs, 30);
        // Two Expires: the first.
        let m = h(&[
            ("date", &date(T0)),
            ("expires", &date(T0 + 10)),
            ("expires", &date(T0 + 99)),
        ]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0).secs, 10);
    }

    #[test]
    fn squid_lm_factor() {
        // refresh_pattern . 0 20% 4320: modified 10 000 s before birth -> 2000 s.
        let r = rule();
        let m = h(&[("date", &date(T0)), ("last-modified", &date(T0 - 10_000))]);
        let l = freshness_lifetime(ok(), &m, &r, T0);
        assert_eq!(
            (l.secs, l.source),
            (2000, LifetimeSource::LastModifiedFactor)
        );
        // Capped by max (3 days).
        let m = h(&[("last-modified", &date(T0 - 100 * 86400))]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0).secs, 259_200);
        // Squid's double arithmetic: 100 s at 29% is 28, not 29.
        let r29 = Rule { percent: 29, ..r };
        let m = h(&[("last-modified", &date(T0 - 100))]);
        assert_eq!(freshness_lifetime(ok(), &m, &r29, T0).secs, 28);
        // A Last-Modified at or after birth is not used: min applies.
        let rmin = Rule { min: 600, ..r };
        let m = h(&[("last-modified", &date(T0 + 5))]);
        let l = freshness_lifetime(ok(), &m, &rmin, T0);
        assert_eq!((l.secs, l.source), (600, LifetimeSource::Min));
    }

    #[test]
    fn squid_min_only_without_last_modified() {
        // Squid's order: with a usable Last-Modified the factor decides and min is not a floor.
        let r = Rule {
            min: 3600,
            ..rule()
        };
        let m = h(&[("last-modified", &date(T0 - 1000))]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0).secs, 200);
        let l = freshness_lifetime(ok(), &HeaderMap::new(), &r, T0);
        assert_eq!((l.secs, l.source), (3600, LifetimeSource::Min));
        // min above max: max wins.
        let r = Rule {
            min: 3600,
            max: 60,
            ..rule()
        };
        assert_eq!(freshness_lifetime(ok(), &HeaderMap::new(), &r, T0).secs, 60);
    }

    #[test]
    fn override_lastmod_and_expire() {
        let r = Rule {
            min: 3600,
            override_lastmod: true,
            ..rule()
        };
        let m = h(&[("last-modified", &date(T0 - 1000))]);
        let l = freshness_lifetime(ok(), &m, &r, T0);
        assert_eq!((l.secs, l.source), (3600, LifetimeSource::OverrideLastmod));
        let r = Rule {
            min: 3600,
            override_expire: true,
            ..rule()
        };
        let m = h(&[("cache-control", "max-age=60")]);
        let l = freshness_lifetime(ok(), &m, &r, T0);
        assert_eq!((l.secs, l.source), (3600, LifetimeSource::OverrideExpire));
        // Never lowers a longer explicit lifetime.
        let m = h(&[("cache-control", "max-age=7200")]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0).secs, 7200);
        // Bounded by max_stale past the explicit expiry.
        let r = Rule {
            max_stale: 100,
            ..r
        };
        let m = h(&[("cache-control", "max-age=60")]);
        assert_eq!(freshness_lifetime(ok(), &m, &r, T0).secs, 160);
    }

    #[test]
    fn heuristics_only_for_heuristically_cacheable_or_public() {
        let r = Rule { min: 600, ..rule() };
        let found = StatusCode::FOUND;
        let l = freshness_lifetime(found, &HeaderMap::new(), &r, T0);
        assert_eq!((l.secs, l.source), (0, LifetimeSource::None));
        let m = h(&[("cache-control", "public")]);
        assert_eq!(freshness_lifetime(found, &m, &r, T0).secs, 600);
        let m = h(&[("cache-control", "max-age=5")]);
        assert_eq!(freshness_lifetime(found, &m, &r, T0).secs, 5);
        // Squid's negative statuses get negative_ttl, never a heuristic.
        let nf = freshness_lifetime(StatusCode::NOT_FOUND, &HeaderMap::new(), &r, T0);
        assert_eq!((nf.secs, nf.source), (0, LifetimeSource::None));
        let ttl = Rule {
            negative_ttl: 30,
            ..r
        };
        let nf = freshness_lifetime(StatusCode::NOT_FOUND, &HeaderMap::new(), &ttl, T0);
        assert_eq!((nf.secs, nf.source), (30, LifetimeSource::NegativeTtl));
    }

    /// RFC 9110 §15.1: 204, 404, 405, 414 and 501 are heuristically cacheable.
    /// cuttle gives them the refresh_pattern's last-modified factor when they
    /// have a Last-Modified; otherwise they stay Squid's negative statuses.
    #[test]
    fn heuristically_cacheable_negative_statuses_use_the_last_modified_factor() {
        let r = Rule { min: 600, ..rule() };
        let lm = h(&[("last-modified", &date(T0 - 10_000))]);
        for code in [204, 404, 405, 414, 501] {
            let status = StatusCode::from_u16(code).unwrap();
            let l = freshness_lifetime(status, &lm, &r, T0);
            assert_eq!(
                (l.secs, l.source),
                (2000, LifetimeSource::LastModifiedFactor),
                "{code}"
            );
            // No Last-Modified: no heuristic (the pattern's min is not used).
            let l = freshness_lifetime(status, &HeaderMap::new(), &r, T0);
            assert_eq!((l.secs, l.source), (0, LifetimeSource::None), "{code}");
        }
        // Squid's other negative statuses never get a heuristic.
        for code in [400, 403, 500, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            let l = freshness_lifetime(status, &lm, &r, T0);
            assert_eq!((l.secs, l.source), (0, LifetimeSource::None), "{code}");
        }
        // refresh_pattern still rules: 0% gives nothing, and negative_ttl is left.
        let zero = Rule {
            percent: 0,
            negative_ttl: 30,
            ..r
        };
        let l = freshness_lifetime(StatusCode::NOT_FOUND, &lm, &zero, T0);
        assert_eq!((l.secs, l.source), (30, LifetimeSource::NegativeTtl));
    }

    #[test]
    fn negative_ttl() {
        let r = Rule {
            negative_ttl: 300,
            ..rule()
        };
        let l = freshness_lifetime(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), &r, T0);
        assert_eq!((l.secs, l.source), (300, LifetimeSource::NegativeTtl));
        // Explicit freshness still wins.
        let m = h(&[("cache-control", "max-age=5")]);
        assert_eq!(
            freshness_lifetime(StatusCode::NOT_FOUND, &m, &r, T0).secs,
            5
        );
        // Off by default.
        let l = freshness_lifetime(
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            &rule(),
            T0,
        );
        assert_eq!(l.source, LifetimeSource::None);
    }

    #[test]
    fn entry_times_for_the_index() {
        let ex = Exchange {
            request_time: T0 + 9,
            response_time: T0 + 10,
        };
        let m = h(&[
            ("date", &date(T0)),
            ("cache-control", "max-age=100"),
            ("last-modified", &date(T0 - 50)),
        ]);
        let t = entry_times(ok(), &m, &rule(), ex);
        assert_eq!(u64::from(t.date), T0);
        assert_eq!(u64::from(t.expires), T0 + 100);
        assert_eq!(u64::from(t.last_modified), T0 - 50);
        assert_eq!(current_age(&t, T0 + 30), 30);
        assert!(is_fresh(&t, T0 + 99));
        assert!(!is_fresh(&t, T0 + 100));
        // no-cache: stale for ICP from the start.
        let m = h(&[
            ("date", &date(T0)),
            ("cache-control", "no-cache, max-age=100"),
        ]);
        let t = entry_times(ok(), &m, &rule(), ex);
        assert_eq!(t.expires, t.date);
        // Far future is cropped.
        let m = h(&[("cache-control", "max-age=2147483648")]);
        let far = Exchange {
            request_time: 4_000_000_000,
            response_time: 4_000_000_000,
        };
        assert_eq!(entry_times(ok(), &m, &rule(), far).expires, u32::MAX);
    }

    #[test]
    fn age_values_are_capped() {
        assert_eq!(age_value(42), "42");
        assert_eq!(age_value(u64::MAX), "2147483648");
    }
}
