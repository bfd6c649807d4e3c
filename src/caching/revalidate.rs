//! After a revalidation: classifying the reply, folding a 304 into the stored response
//! (RFC 9111 §4.3.3–4.3.4), and the Squid result names the proxy logs.

use http::header::{HeaderMap, HeaderName, AGE, CONTENT_LENGTH, DATE, ETAG, LAST_MODIFIED};
use http::{Method, StatusCode};

use super::adaptive::{self, PollResult};
use super::directives::RequestDirectives;
use super::freshness::{http_date_value, parse_http_date, times_polled, Exchange, Facts};
use super::head::{is_hop_by_hop, remove_hop_by_hop};
use super::hit::{weak_match, StoredEntry};
use super::rule::Rule;
use super::storable::{plan_store, NotStorable, StorePlan};
use super::vary::is_internal_field;

/// The Squid result names (access.log "TCP_..." tags) the caching rules lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Served from the store without contacting the origin.
    Hit,
    /// Not in the store (or not usable), fetched.
    Miss,
    /// A client reload fetched afresh.
    ClientRefreshMiss,
    /// Revalidated: 304, the stored response was served.
    RefreshUnmodified,
    /// Revalidated: a new response replaced the stored one.
    RefreshModified,
    /// Revalidation failed; the stale response was served.
    RefreshFailOld,
    /// Revalidation failed; the error was passed on.
    RefreshFailErr,
    /// The client's If-Modified-Since was answered 304 from the store.
    ImsHit,
    /// The client's If-None-Match was answered 304 from the store.
    InmHit,
}

impl Outcome {
    /// The tag as Squid writes it in access.log.
    pub fn squid_tag(self) -> &'static str {
        match self {
            Outcome::Hit => "TCP_HIT",
            Outcome::Miss => "TCP_MISS",
            Outcome::ClientRefreshMiss => "TCP_CLIENT_REFRESH_MISS",
            Outcome::RefreshUnmodified => "TCP_REFRESH_UNMODIFIED",
            Outcome::RefreshModified => "TCP_REFRESH_MODIFIED",
            Outcome::RefreshFailOld => "TCP_REFRESH_FAIL_OLD",
            Outcome::RefreshFailErr => "TCP_REFRESH_FAIL_ERR",
            Outcome::ImsHit => "TCP_IMS_HIT",
            Outcome::InmHit => "TCP_INM_HIT",
        }
    }
}

/// What a reply to a revalidation means (Squid's handleIMSReply split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidationReply {
    /// 304: freshen the stored response ([`freshen`]); TCP_REFRESH_UNMODIFIED.
    NotModified,
    /// Any other status below 500: a new response replaces the stored one
    /// (store it by [`plan_store`], else release the old entry);
    /// TCP_REFRESH_MODIFIED.
    Replaced,
    /// 5xx: a failure; serve the stale response if
    /// [`super::may_serve_stale_on_error`] (TCP_REFRESH_FAIL_OLD), else pass
    /// the reply on (TCP_REFRESH_FAIL_ERR). An unreachable upstream is the same.
    Failed,
}

/// Classifies the status of the reply to a revalidation.
pub fn classify_revalidation(status: StatusCode) -> RevalidationReply {
    if status == StatusCode::NOT_MODIFIED {
        RevalidationReply::NotModified
    } else if status.as_u16() < 500 {
        RevalidationReply::Replaced
    } else {
        RevalidationReply::Failed
    }
}

/// The log result of a revalidation: from the reply's status, or `None` when
/// the upstream could not be reached; `stale_served` says whether the stale
/// response was served after a failure.
pub fn revalidation_outcome(status: Option<StatusCode>, stale_served: bool) -> Outcome {
    match status.map(classify_revalidation) {
        Some(RevalidationReply::NotModified) => Outcome::RefreshUnmodified,
        Some(RevalidationReply::Replaced) => Outcome::RefreshModified,
        Some(RevalidationReply::Failed) | None if stale_served => Outcome::RefreshFailOld,
        Some(RevalidationReply::Failed) | None => Outcome::RefreshFailErr,
    }
}

fn strong_etag(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    !v.starts_with(b"W/") && v.starts_with(b"\"")
}

/// Whether a 304 selects the stored response for update (RFC 9111 §4.3.4):
/// a strong ETag in the 304 must equal the stored one (strong too); a weak
/// one must match weakly; without an ETag, a Last-Modified in the 304 must
/// equal the stored one. A 304 carrying no validator at all answers the
/// conditional request cuttle sent for this one response, and is taken as
/// matching. When it does not match, refetch without validators.
pub fn not_modified_matches(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    if let Some(new) = not_modified.get(ETAG) {
        let Some(old) = stored.get(ETAG) else {
            return false;
        };
        return if strong_etag(new.as_bytes()) {
            strong_etag(old.as_bytes())
                && new.as_bytes().trim_ascii() == old.as_bytes().trim_ascii()
        } else {
            weak_match(new.as_bytes(), old.as_bytes())
        };
    }
    if let Some(new) = not_modified.get(LAST_MODIFIED) {
        let old = stored.get(LAST_MODIFIED).and_then(parse_http_date);
        return parse_http_date(new).is_some() && parse_http_date(new) == old;
    }
    true
}

/// Whether a 200 to a HEAD describes the stored response, so that its
/// fields may update it (RFC 9111 §4.3.5): the same ETag and Last-Modified
/// (both absent counts as the same: the origin has none to change) and, if
/// it has a Content-Length, the stored body's length.
pub fn head_matches(stored: &HeaderMap, stored_len: u64, head: &HeaderMap) -> bool {
    let same_etag = match (stored.get(ETAG), head.get(ETAG)) {
        (None, None) => true,
        (Some(old), Some(new)) => old.as_bytes().trim_ascii() == new.as_bytes().trim_ascii(),
        _ => false,
    };
    let same_lm = match (stored.get(LAST_MODIFIED), head.get(LAST_MODIFIED)) {
        (None, None) => true,
        (Some(old), Some(new)) => {
            parse_http_date(new).is_some() && parse_http_date(old) == parse_http_date(new)
        }
        _ => false,
    };
    let same_len = head.get(CONTENT_LENGTH).is_none_or(|v| {
        v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) == Some(stored_len)
    });
    same_etag && same_lm && same_len
}

/// Fields of a 304 that never replace the stored ones: Content-Length (it
/// frames the stored body; RFC 9111 §3.2), Vary (the variant key depends
/// on it; Squid keeps the stored one too), the obsolete Warning, and
/// cuttle's internal fields. Hop-by-hop fields are dropped too.
fn kept_from_stored(name: &HeaderName) -> bool {
    matches!(name.as_str(), "content-length" | "vary" | "warning")
        || is_hop_by_hop(name)
        || is_internal_field(name)
}

/// The stored fields updated by a 304 (RFC 9111 §3.2, §4.3.4): each field
/// of the 304 replaces all stored lines of that name (Content-Encoding,
/// Content-Range and Set-Cookie too, as Squid does), except hop-by-hop
/// fields, Content-Length, Vary (the variant key depends on it; Squid keeps
/// the stored one too), Warning and cuttle's `X-Cuttle-*` fields. A 304
/// without Date gets `response_time` (RFC 9110 §6.6.1); a 304 without Age
/// drops the stored Age (it described the old transfer).
pub fn merge_not_modified(
    stored: &HeaderMap,
    not_modified: &HeaderMap,
    response_time: u64,
) -> HeaderMap {
    let mut update = not_modified.clone();
    remove_hop_by_hop(&mut update);
    let mut out = stored.clone();
    let names: Vec<HeaderName> = update.keys().cloned().collect();
    for name in names {
        if kept_from_stored(&name) {
            continue;
        }
        out.remove(&name);
        for v in update.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    if !update.contains_key(DATE) {
        out.insert(DATE, http_date_value(response_time));
    }
    if !update.contains_key(AGE) {
        out.remove(AGE);
    }
    out
}

/// A stored response freshened by a 304.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshened {
    /// What to serve now: the merged fields (to this client even those not
    /// stored, e.g. a field the 304 names in `private="..."`) and the new times.
    pub entry: StoredEntry,
    /// What to store in place of the old entry (same body), or why the
    /// merged response may no longer be stored (then release the entry).
    pub store: Result<StorePlan, NotStorable>,
}

/// Folds a 304 received in `exchange` into `stored`
/// ([`merge_not_modified`]) and recomputes freshness and storability from
/// the merged fields, as for a GET response ([`plan_store`]); under an
/// `adaptive` pattern, a heuristic lifetime becomes twice the interval
/// `stored` was polled at ([`super::adaptive`]). Check
/// [`not_modified_matches`] first.
pub fn freshen(
    stored: &StoredEntry,
    not_modified: &HeaderMap,
    request: &RequestDirectives,
    rule: &Rule,
    exchange: Exchange,
) -> Freshened {
    let headers = merge_not_modified(&stored.headers, not_modified, exchange.response_time);
    let f = Facts::parse(&headers);
    // Adaptive polling: unchanged, the interval doubles.
    let poll = adaptive::poll_of(
        rule,
        stored.lifetime(rule),
        &stored.times,
        PollResult::Unchanged,
    );
    let (times, _) = times_polled(stored.status, &f, rule, exchange, poll);
    let store = plan_store(
        &Method::GET,
        request,
        stored.status,
        &headers,
        rule,
        exchange,
    )
    .map(|plan| plan.after_poll(rule, exchange, poll));
    Freshened {
        entry: StoredEntry {
            status: stored.status,
            headers,
            times,
        },
        store,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::hit::{decide_hit, HitDecision};
    use crate::caching::test_support::{date, h, rule};
    use crate::store::Times;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn outcome_tags() {
        assert_eq!(
            Outcome::RefreshUnmodified.squid_tag(),
            "TCP_REFRESH_UNMODIFIED"
        );
        assert_eq!(Outcome::InmHit.squid_tag(), "TCP_INM_HIT");
        assert_eq!(
            Outcome::ClientRefreshMiss.squid_tag(),
            "TCP_CLIENT_REFRESH_MISS"
        );
    }

    #[test]
    fn classifying_replies() {
        assert_eq!(
            revalidation_outcome(Some(StatusCode::NOT_MODIFIED), false),
            Outcome::RefreshUnmodified
        );
        assert_eq!(
            revalidation_outcome(Some(StatusCode::OK), false),
            Outcome::RefreshModified
        );
        assert_eq!(
            revalidation_outcome(Some(StatusCode::NOT_FOUND), true),
            Outcome::RefreshModified
        );
        assert_eq!(
            revalidation_outcome(Some(StatusCode::BAD_GATEWAY), true),
            Outcome::RefreshFailOld
        );
        assert_eq!(
            revalidation_outcome(Some(StatusCode::SERVICE_UNAVAILABLE), false),
            Outcome::RefreshFailErr
        );
        assert_eq!(revalidation_outcome(None, true), Outcome::RefreshFailOld);
        assert_eq!(revalidation_outcome(None, false), Outcome::RefreshFailErr);
    }

    #[test]
    fn matching_304s() {
        let stored = h(&[("etag", "\"a\""), ("last-modified", &date(T0))]);
        assert!(not_modified_matches(&stored, &h(&[("etag", "\"a\"")])));
        assert!(!not_modified_matches(&stored, &h(&[("etag", "\"b\"")])));
        assert!(not_modified_matches(&stored, &h(&[("etag", "W/\"a\"")])));
        let weak = h(&[("etag", "W/\"a\"")]);
        assert!(!not_modified_matches(&weak, &h(&[("etag", "\"a\"")])));
        assert!(not_modified_matches(&weak, &h(&[("etag", "W/\"a\"")])));
        assert!(not_modified_matches(
            &stored,
            &h(&[("last-modified", &date(T0))])
        ));
        assert!(!not_modified_matches(
            &stored,
            &h(&[("last-modified", &date(T0 + 1))])
        ));
        assert!(not_modified_matches(&stored, &HeaderMap::new()));
        assert!(!not_modified_matches(
            &HeaderMap::new(),
            &h(&[("etag", "\"a\"")])
        ));
    }

    #[test]
    fn a_head_200_matches_the_same_validators_and_length() {
        let stored = h(&[("etag", "\"a\""), ("last-modified", &date(T0))]);
        let same = h(&[
            ("etag", "\"a\""),
            ("last-modified", &date(T0)),
            ("content-length", "5"),
        ]);
        assert!(head_matches(&stored, 5, &same));
        assert!(!head_matches(&stored, 6, &same), "another length");
        assert!(!head_matches(&stored, 5, &h(&[("etag", "\"b\"")])));
        assert!(
            !head_matches(&stored, 5, &h(&[("last-modified", &date(T0))])),
            "the ETag went away"
        );
        // Neither has a validator: nothing says the body changed.
        assert!(head_matches(&HeaderMap::new(), 5, &HeaderMap::new()));
        assert!(!head_matches(
            &HeaderMap::new(),
            5,
            &h(&[("etag", "\"a\"")])
        ));
    }

    #[test]
    fn merge_rfc_9111_4_3_4() {
        let stored = h(&[
            ("date", &date(T0)),
            ("age", "30"),
            ("cache-control", "max-age=60"),
            ("content-length", "1234"),
            ("content-type", "text/html"),
            ("etag", "\"a\""),
            ("vary", "accept-encoding"),
            ("x-old", "1"),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ]);
        let nm = h(&[
            ("date", &date(T0 + 500)),
            ("cache-control", "max-age=600"),
            ("content-length", "0"),
            ("vary", "cookie"),
            ("etag", "\"a\""),
            ("x-multi", "c"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("x-cuttle-vary-marker", "9"),
        ]);
        let merged = merge_not_modified(&stored, &nm, T0 + 501);
        assert_eq!(merged.get("date").unwrap(), date(T0 + 500).as_str());
        assert_eq!(merged.get("cache-control").unwrap(), "max-age=600");
        assert_eq!(merged.get("content-length").unwrap(), "1234");
        assert_eq!(merged.get("content-type").unwrap(), "text/html");
        assert_eq!(merged.get("vary").unwrap(), "accept-encoding");
        assert_eq!(merged.get("x-old").unwrap(), "1");
        assert_eq!(merged.get_all("x-multi").iter().collect::<Vec<_>>(), ["c"]);
        assert!(!merged.contains_key("age"));
        for gone in ["x-hop", "keep-alive", "connection", "x-cuttle-vary-marker"] {
            assert!(!merged.contains_key(gone), "{gone}");
        }
        // A 304 without Date is dated on receipt.
        let merged = merge_not_modified(&stored, &h(&[("etag", "\"a\"")]), T0 + 900);
        assert_eq!(merged.get("date").unwrap(), date(T0 + 900).as_str());
    }

    #[test]
    fn a_304_updates_content_encoding_content_range_and_set_cookie() {
        let stored = h(&[
            ("content-encoding", "a"),
            ("content-range", "bytes 0-4/5"),
            ("content-length", "5"),
            ("set-cookie", "a=b"),
            ("set-cookie2", "a=b"),
        ]);
        let nm = h(&[
            ("content-encoding", "b"),
            ("content-range", "bytes 0-4/10"),
            ("content-length", "10"),
            ("set-cookie", "a=c"),
            ("set-cookie2", "a=c"),
        ]);
        let merged = merge_not_modified(&stored, &nm, T0);
        assert_eq!(merged.get("content-encoding").unwrap(), "b");
        assert_eq!(merged.get("content-range").unwrap(), "bytes 0-4/10");
        // Content-Length describes the stored body (RFC 9111 3.2).
        assert_eq!(merged.get("content-length").unwrap(), "5");
        for cookie in ["set-cookie", "set-cookie2"] {
            let values: Vec<_> = merged.get_all(cookie).iter().collect();
            assert_eq!(values, ["a=c"], "{cookie}");
        }
    }

    #[test]
    fn freshen_recomputes_freshness() {
        let stored = StoredEntry {
            status: StatusCode::OK,
            headers: h(&[
                ("date", &date(T0)),
                ("cache-control", "max-age=60"),
                ("etag", "\"a\""),
                ("content-length", "5"),
            ]),
            times: Times {
                date: T0 as u32,
                expires: (T0 + 60) as u32,
                last_modified: 0,
            },
        };
        let now = T0 + 1000;
        assert!(matches!(
            decide_hit(&stored, &RequestDirectives::default(), &rule(), now),
            HitDecision::Revalidate { .. }
        ));
        let nm = h(&[
            ("date", &date(now)),
            ("etag", "\"a\""),
            ("cache-control", "max-age=300"),
        ]);
        let ex = Exchange {
            request_time: now,
            response_time: now + 1,
        };
        let f = freshen(&stored, &nm, &RequestDirectives::default(), &rule(), ex);
        assert_eq!(u64::from(f.entry.times.date), now);
        assert_eq!(u64::from(f.entry.times.expires), now + 300);
        let plan = f.store.unwrap();
        assert_eq!(plan.times, f.entry.times);
        assert_eq!(
            decide_hit(&f.entry, &RequestDirectives::default(), &rule(), now + 10),
            HitDecision::Serve {
                age: 10,
                stale: false
            }
        );
        // A 304 that now says no-store: serve it, stop storing it.
        let nm = h(&[("etag", "\"a\""), ("cache-control", "no-store")]);
        let f = freshen(&stored, &nm, &RequestDirectives::default(), &rule(), ex);
        assert_eq!(f.store, Err(NotStorable::ResponseNoStore));
        // A Set-Cookie on the 304 reaches this client and is stored (RFC 9111 §3.1).
        let nm = h(&[
            ("etag", "\"a\""),
            ("cache-control", "public, max-age=10"),
            ("set-cookie", "s=1"),
        ]);
        let f = freshen(&stored, &nm, &RequestDirectives::default(), &rule(), ex);
        assert!(f.entry.headers.contains_key("set-cookie"));
        assert!(f.store.unwrap().headers.contains_key("set-cookie"));
    }
}
