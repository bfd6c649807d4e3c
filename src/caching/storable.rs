//! Whether a response may be stored by a shared cache (RFC 9111 §3 with Squid's
//! conventions), and the header block and index times to store it with.

use std::fmt;

use http::header::{HeaderMap, HeaderName, CONTENT_LENGTH, CONTENT_TYPE, DATE};
use http::{Method, StatusCode};

use super::adaptive::{Poll, PollResult};
use super::directives::RequestDirectives;
use super::freshness::{
    heuristically_cacheable, http_date_value, lifetime_of, squid_negative, times_of, times_polled,
    Exchange, Facts,
};
use super::head::{remove_hop_by_hop, trim_values, write_head, MAX_FIELDS, MAX_HEAD_LEN};
use super::rule::Rule;
use super::vary::{is_internal_field, vary_fields};
use crate::store::Times;

/// Squid's `minimum_expiry_time` (default 60 s): a response fresh for less
/// than this when it arrives counts as "stale on arrival".
pub const MINIMUM_EXPIRY_TIME: u64 = 60;

/// Why a response is not stored (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStorable {
    /// Only responses to GET are stored. (A HEAD request may be answered
    /// from the stored GET response; HEAD responses themselves are not stored.)
    Method(Method),
    /// 206: cuttle does not store partial content.
    PartialContent,
    /// The status code is neither heuristically cacheable nor given explicit
    /// freshness (or `public`); 1xx and 304 are never stored.
    Status(StatusCode),
    /// `must-understand` with a status code cuttle does not implement.
    MustUnderstand(StatusCode),
    /// `Cache-Control: no-store` in the request.
    RequestNoStore,
    /// `Cache-Control: no-store` in the response (no `ignore-no-store`).
    ResponseNoStore,
    /// `Cache-Control: private` (no `ignore-private`): cuttle is a shared cache.
    Private,
    /// The request had `Authorization` and the response has none of
    /// `public`, `s-maxage`, `must-revalidate` (RFC 9111 §3.5).
    Authorization,
    /// `Vary: *`, or a Vary that is not a list of field names.
    Vary,
    /// `multipart/x-mixed-replace` (server push), never reusable.
    MultipartReplace,
    /// Stale on arrival (fresh for less than [`MINIMUM_EXPIRY_TIME`]) and
    /// with an empty body: nothing worth revalidating (Squid's rule; no
    /// `store-stale`).
    StaleAndEmpty,
    /// The header block to store would exceed the stored-head bounds.
    HeadTooLarge,
}

impl fmt::Display for NotStorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStorable::Method(m) => write!(f, "method {m} is not cached"),
            NotStorable::PartialContent => f.write_str("partial content is not cached"),
            NotStorable::Status(s) => write!(f, "status {} is not cacheable", s.as_u16()),
            NotStorable::MustUnderstand(s) => {
                write!(
                    f,
                    "must-understand with status {} not understood",
                    s.as_u16()
                )
            }
            NotStorable::RequestNoStore => f.write_str("request has Cache-Control: no-store"),
            NotStorable::ResponseNoStore => f.write_str("response has Cache-Control: no-store"),
            NotStorable::Private => f.write_str("response has Cache-Control: private"),
            NotStorable::Authorization => {
                f.write_str("authorized request without public, s-maxage or must-revalidate")
            }
            NotStorable::Vary => f.write_str("response varies on everything (Vary: *)"),
            NotStorable::MultipartReplace => f.write_str("multipart/x-mixed-replace"),
            NotStorable::StaleAndEmpty => f.write_str("stale on arrival and empty"),
            NotStorable::HeadTooLarge => f.write_str("header block too large"),
        }
    }
}

impl std::error::Error for NotStorable {}

/// Status codes defined by RFC 9110, whose caching requirements cuttle
/// implements (for `must-understand`).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        100 | 101 | 200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

fn has_explicit_freshness(f: &Facts) -> bool {
    f.cc.s_maxage.is_some() || f.cc.max_age.is_some() || f.expires.is_some()
}

fn empty_body(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::NO_CONTENT
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"0")
}

/// Whether a response may be stored, judged on its header fields as given.
///
/// In order: the method must be GET; 1xx, 206 and 304 are refused; request
/// `no-store`; `must-understand` with a status cuttle does not know;
/// response `no-store` (unless `must-understand` with a known status, or
/// `ignore-no-store`); `private` (unless `ignore-private`); `Authorization`
/// in the request without `public`, `s-maxage` or `must-revalidate`;
/// `Vary: *`; `multipart/x-mixed-replace`. (A `Set-Cookie` does not
/// prevent storing, RFC 9111 §7.3; the origin keeps it out with `private`
/// or `private="Set-Cookie"`.) Then the status: one Squid caches
/// negatively ([`squid_negative`]) without an explicit expiry only while it
/// has a lifetime (`negative_ttl`, or for 204/404/405/414/501 the
/// last-modified heuristic); else a heuristically cacheable one
/// ([`heuristically_cacheable`]), `public`, or any final status with a
/// positive explicit lifetime. Last, Squid's reusability rule: a response
/// that is stale on arrival (fresh for less than [`MINIMUM_EXPIRY_TIME`], or
/// always to be revalidated) is still stored, to be revalidated on its
/// next hit, unless its body is empty (204, `Content-Length: 0`) and the
/// pattern lacks `store-stale`.
pub fn check_storable(
    method: &Method,
    request: &RequestDirectives,
    status: StatusCode,
    headers: &HeaderMap,
    rule: &Rule,
    exchange: Exchange,
) -> Result<(), NotStorable> {
    let f = Facts::parse(headers);
    check(method, request, status, headers, &f, rule, exchange)
}

fn check(
    method: &Method,
    request: &RequestDirectives,
    status: StatusCode,
    headers: &HeaderMap,
    f: &Facts,
    rule: &Rule,
    exchange: Exchange,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method(method.clone()));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(NotStorable::PartialContent);
    }
    if status.is_informational() || status == StatusCode::NOT_MODIFIED {
        return Err(NotStorable::Status(status));
    }
    if request.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    let cc = &f.cc;
    if cc.must_understand && !understood(status) {
        return Err(NotStorable::MustUnderstand(status));
    }
    if cc.no_store && !cc.must_understand && !rule.ignore_no_store {
        return Err(NotStorable::ResponseNoStore);
    }
    if cc.private && !rule.ignore_private {
        return Err(NotStorable::Private);
    }
    if request.authorization && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    if vary_fields(headers).is_err() {
        return Err(NotStorable::Vary);
    }
    if headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .trim_ascii_start()
            .get(..25)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"multipart/x-mixed-replace"))
    }) {
        return Err(NotStorable::MultipartReplace);
    }
    let birth = exchange
        .response_time
        .saturating_sub(super::freshness::corrected_initial_age_of(f, exchange));
    let lifetime = lifetime_of(status, f, rule, birth).secs;
    // Squid's "negative" statuses (404, 5xx, ...) without an expiry of
    // their own: only while they have a lifetime (negative_ttl, or the
    // last-modified heuristic for 204/404/405/414/501, see lifetime_of).
    let status_ok = if squid_negative(status) && !has_explicit_freshness(f) {
        lifetime > 0
    } else {
        heuristically_cacheable(status) || cc.public || (has_explicit_freshness(f) && lifetime > 0)
    };
    if !status_ok {
        return Err(NotStorable::Status(status));
    }
    let age = exchange.response_time.saturating_sub(birth);
    let remaining = lifetime.saturating_sub(age);
    let stale_on_arrival = remaining < MINIMUM_EXPIRY_TIME || cc.revalidate_always();
    if stale_on_arrival && empty_body(status, headers) && !rule.store_stale {
        return Err(NotStorable::StaleAndEmpty);
    }
    Ok(())
}

/// What to store for a response: its head as kept in the store and its
/// index times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePlan {
    pub status: StatusCode,
    /// The fields as stored (see [`plan_store`]).
    pub headers: HeaderMap,
    /// `headers` written as the store's header block.
    pub head: Vec<u8>,
    pub times: Times,
    /// The response's Vary field names (lower case, sorted); empty = no
    /// Vary. When not empty, store it as a variant (see [`super::vary`]).
    pub vary: Vec<HeaderName>,
    /// The revalidation whose result set `times` (adaptive polling,
    /// [`StorePlan::after_poll`]); `None` for any other store.
    pub polled: Option<PollResult>,
}

impl StorePlan {
    /// The plan of a response that a revalidation of an adaptive object
    /// received in `exchange` (`poll`: see [`super::adaptive`]): its times
    /// carry the interval after the poll when its lifetime is heuristic.
    pub fn after_poll(mut self, rule: &Rule, exchange: Exchange, poll: Option<Poll>) -> StorePlan {
        let Some(poll) = poll else {
            return self;
        };
        let f = Facts::parse(&self.headers);
        let (times, polled) = times_polled(self.status, &f, rule, exchange, Some(poll));
        self.times = times;
        self.polled = polled.then_some(poll.result);
        self
    }
}

/// Decides whether to store a response received in `exchange` and, if so,
/// what. The hop-by-hop fields are removed first (with a Content-Length
/// that came beside Transfer-Encoding: it does not describe the body; and values trimmed of
/// surrounding whitespace, as the stored block keeps them) and the rest judged by
/// [`check_storable`]. The stored fields then lose those that must not
/// reach other users: the fields named by `private="..."` and
/// `no-cache="..."`, and cuttle's internal `X-Cuttle-*` fields. Everything
/// else is kept, `Set-Cookie` and `Set-Cookie2` included (RFC 9111 §3.1). A `Date` is added when missing
/// (RFC 9110 §6.6.1: the response time). The times come from
/// [`super::entry_times`] on the stored fields.
pub fn plan_store(
    method: &Method,
    request: &RequestDirectives,
    status: StatusCode,
    response: &HeaderMap,
    rule: &Rule,
    exchange: Exchange,
) -> Result<StorePlan, NotStorable> {
    let mut headers = response.clone();
    remove_hop_by_hop(&mut headers);
    trim_values(&mut headers);
    let f = Facts::parse(&headers);
    check(method, request, status, &headers, &f, rule, exchange)?;
    for name in f.cc.private_fields.iter().chain(&f.cc.no_cache_fields) {
        headers.remove(name);
    }
    let internal: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_internal_field(n))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
    if !headers.contains_key(DATE) || f.date.is_none() {
        headers.insert(DATE, http_date_value(exchange.response_time));
    }
    let head = write_head(status, &headers);
    if head.len() > MAX_HEAD_LEN || headers.len() > MAX_FIELDS {
        return Err(NotStorable::HeadTooLarge);
    }
    let f = Facts::parse(&headers);
    let times = times_of(status, &f, rule, exchange);
    let vary = vary_fields(&headers).unwrap_or_default();
    Ok(StorePlan {
        status,
        headers,
        head,
        times,
        vary,
        polled: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::head::parse_head;
    use crate::caching::test_support::{date, h, rule};
    use http::HeaderValue;

    const T0: u64 = 1_700_000_000;

    fn ex() -> Exchange {
        Exchange {
            request_time: T0,
            response_time: T0,
        }
    }

    fn get() -> Method {
        Method::GET
    }

    fn check_with(
        req: &[(&str, &str)],
        status: u16,
        resp: &[(&str, &str)],
        rule: &Rule,
    ) -> Result<(), NotStorable> {
        let mut resp = h(resp);
        if !resp.contains_key("date") {
            resp.insert(DATE, HeaderValue::from_str(&date(T0)).unwrap());
        }
        check_storable(
            &get(),
            &RequestDirectives::parse(&h(req)),
            StatusCode::from_u16(status).unwrap(),
            &resp,
            rule,
            ex(),
        )
    }

    fn check_simple(status: u16, resp: &[(&str, &str)]) -> Result<(), NotStorable> {
        check_with(&[], status, resp, &rule())
    }

    #[test]
    fn only_get() {
        let r = check_storable(
            &Method::HEAD,
            &RequestDirectives::default(),
            StatusCode::OK,
            &h(&[("cache-control", "max-age=60")]),
            &rule(),
            ex(),
        );
        assert_eq!(r, Err(NotStorable::Method(Method::HEAD)));
        let r = check_storable(
            &Method::POST,
            &RequestDirectives::default(),
            StatusCode::OK,
            &h(&[("cache-control", "max-age=60")]),
            &rule(),
            ex(),
        );
        assert_eq!(r, Err(NotStorable::Method(Method::POST)));
    }

    #[test]
    fn status_codes() {
        let lm = date(T0 - 86400);
        let plain = [("last-modified", lm.as_str())];
        for ok in [200, 203, 300, 301, 308, 410] {
            assert_eq!(check_simple(ok, &plain), Ok(()), "{ok}");
        }
        // RFC 9110 §15.1's heuristically cacheable ones among Squid's
        // negative statuses: with a Last-Modified, the heuristic; without,
        // only with negative_ttl.
        for neg in [204, 404, 405, 414, 501] {
            assert_eq!(check_simple(neg, &plain), Ok(()), "{neg}");
            assert_eq!(
                check_simple(neg, &[]),
                Err(NotStorable::Status(StatusCode::from_u16(neg).unwrap())),
                "{neg}"
            );
        }
        assert_eq!(check_simple(206, &plain), Err(NotStorable::PartialContent));
        for no in [302, 303, 307, 403, 500, 503] {
            assert_eq!(
                check_simple(no, &plain),
                Err(NotStorable::Status(StatusCode::from_u16(no).unwrap())),
                "{no}"
            );
        }
        assert_eq!(
            check_simple(304, &[("cache-control", "max-age=60")]),
            Err(NotStorable::Status(StatusCode::NOT_MODIFIED))
        );
        // Explicit positive freshness makes other statuses storable.
        assert_eq!(
            check_simple(302, &[("cache-control", "max-age=60")]),
            Ok(())
        );
        let exp = date(T0 + 60);
        assert_eq!(check_simple(307, &[("expires", exp.as_str())]), Ok(()));
        assert_eq!(
            check_simple(503, &[("cache-control", "s-maxage=60")]),
            Ok(())
        );
        // ...but not an Expires at or before Date (Squid: "Expires <= Date").
        let past = date(T0);
        assert_eq!(
            check_simple(302, &[("expires", past.as_str())]),
            Err(NotStorable::Status(StatusCode::FOUND))
        );
        // public allows heuristic freshness for any status.
        assert_eq!(check_simple(302, &[("cache-control", "public")]), Ok(()));
    }

    #[test]
    fn negative_ttl_stores_squids_negative_statuses() {
        let r = Rule {
            negative_ttl: 300,
            ..rule()
        };
        assert_eq!(check_with(&[], 503, &[], &r), Ok(()));
        assert_eq!(check_with(&[], 403, &[], &r), Ok(()));
        assert_eq!(
            check_with(&[], 302, &[], &r),
            Err(NotStorable::Status(StatusCode::FOUND))
        );
    }

    #[test]
    fn no_store() {
        assert_eq!(
            check_with(
                &[("cache-control", "no-store")],
                200,
                &[("cache-control", "max-age=60")],
                &rule()
            ),
            Err(NotStorable::RequestNoStore)
        );
        assert_eq!(
            check_simple(200, &[("cache-control", "no-store, max-age=60")]),
            Err(NotStorable::ResponseNoStore)
        );
        let r = Rule {
            ignore_no_store: true,
            ..rule()
        };
        assert_eq!(
            check_with(&[], 200, &[("cache-control", "no-store, max-age=60")], &r),
            Ok(())
        );
        // Request no-store is not a response directive: ignore-no-store does not apply.
        assert_eq!(
            check_with(
                &[("cache-control", "no-store")],
                200,
                &[("cache-control", "max-age=60")],
                &r
            ),
            Err(NotStorable::RequestNoStore)
        );
    }

    #[test]
    fn must_understand() {
        // RFC 9111 §5.2.2.3: a cache that understands the status ignores no-store.
        assert_eq!(
            check_simple(
                200,
                &[("cache-control", "must-understand, no-store, max-age=60")]
            ),
            Ok(())
        );
        assert_eq!(
            check_simple(
                299,
                &[("cache-control", "must-understand, no-store, max-age=60")]
            ),
            Err(NotStorable::MustUnderstand(
                StatusCode::from_u16(299).unwrap()
            ))
        );
    }

    #[test]
    fn private() {
        assert_eq!(
            check_simple(200, &[("cache-control", "private, max-age=60")]),
            Err(NotStorable::Private)
        );
        let r = Rule {
            ignore_private: true,
            ..rule()
        };
        assert_eq!(
            check_with(
                &[],
                200,
                &[
                    ("cache-control", "private, max-age=60"),
                    ("content-length", "5")
                ],
                &r
            ),
            Ok(())
        );
        // Qualified private is storable (the named fields are dropped, below).
        assert_eq!(
            check_simple(200, &[("cache-control", "private=\"x-user\", max-age=60")]),
            Ok(())
        );
    }

    #[test]
    fn authorization() {
        let auth = [("authorization", "Basic eDp5")];
        assert_eq!(
            check_with(&auth, 200, &[("cache-control", "max-age=60")], &rule()),
            Err(NotStorable::Authorization)
        );
        for cc in ["public", "s-maxage=60", "must-revalidate, max-age=60"] {
            assert_eq!(
                check_with(&auth, 200, &[("cache-control", cc)], &rule()),
                Ok(()),
                "{cc}"
            );
        }
    }

    /// RFC 9111 §3.1/§7.3: Set-Cookie does not prevent storing in a shared
    /// cache, and it is stored with the rest unless `private="..."` or
    /// `no-cache="..."` names it.
    #[test]
    fn set_cookie_is_stored_unless_named_private_or_no_cache() {
        assert_eq!(
            check_simple(
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "s=1")]
            ),
            Ok(())
        );
        let plan = |cc: &str| {
            plan_store(
                &get(),
                &RequestDirectives::default(),
                StatusCode::OK,
                &h(&[
                    ("cache-control", cc),
                    ("set-cookie", "s=1"),
                    ("set-cookie", "t=2"),
                    ("set-cookie2", "a=c"),
                    ("content-length", "3"),
                ]),
                &rule(),
                ex(),
            )
            .unwrap()
            .headers
        };
        let kept = plan("max-age=60");
        let cookies: Vec<_> = kept.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["s=1", "t=2"]);
        assert_eq!(kept.get("set-cookie2").unwrap(), "a=c");
        for cc in [
            "max-age=60, private=\"Set-Cookie\"",
            "max-age=60, no-cache=\"set-cookie, Set-Cookie2\"",
        ] {
            let h = plan(cc);
            assert!(!h.contains_key("set-cookie"), "{cc}");
        }
        assert!(
            !plan("max-age=60, no-cache=\"set-cookie, Set-Cookie2\"").contains_key("set-cookie2")
        );
    }

    #[test]
    fn vary_star_and_push() {
        assert_eq!(
            check_simple(
                200,
                &[("cache-control", "max-age=60"), ("vary", "Accept, *")]
            ),
            Err(NotStorable::Vary)
        );
        assert_eq!(
            check_simple(
                200,
                &[("cache-control", "max-age=60"), ("vary", "Accept Encoding")]
            ),
            Err(NotStorable::Vary)
        );
        assert_eq!(
            check_simple(
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept-encoding")]
            ),
            Ok(())
        );
        assert_eq!(
            check_simple(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-type", "Multipart/X-Mixed-Replace; boundary=x")
                ]
            ),
            Err(NotStorable::MultipartReplace)
        );
    }

    #[test]
    fn stale_on_arrival_is_stored_unless_empty() {
        // Squid 4+: no validator, no freshness: stored (revalidated next time).
        assert_eq!(check_simple(200, &[("content-length", "10")]), Ok(()));
        assert_eq!(check_simple(200, &[]), Ok(()));
        assert_eq!(
            check_simple(200, &[("content-length", "0")]),
            Err(NotStorable::StaleAndEmpty)
        );
        // 204 is one of Squid's negative statuses: not stored without expiry.
        assert_eq!(
            check_simple(204, &[]),
            Err(NotStorable::Status(StatusCode::NO_CONTENT))
        );
        assert_eq!(
            check_simple(
                200,
                &[("content-length", "0"), ("cache-control", "max-age=59")]
            ),
            Err(NotStorable::StaleAndEmpty)
        );
        assert_eq!(
            check_simple(
                200,
                &[("content-length", "0"), ("cache-control", "max-age=60")]
            ),
            Ok(())
        );
        assert_eq!(
            check_simple(204, &[("cache-control", "no-cache, max-age=600")]),
            Err(NotStorable::StaleAndEmpty)
        );
        let r = Rule {
            store_stale: true,
            ..rule()
        };
        assert_eq!(check_with(&[], 200, &[("content-length", "0")], &r), Ok(()));
        // An Age that uses up the lifetime makes it stale on arrival.
        assert_eq!(
            check_simple(
                200,
                &[
                    ("content-length", "0"),
                    ("cache-control", "max-age=100"),
                    ("age", "50")
                ]
            ),
            Err(NotStorable::StaleAndEmpty)
        );
    }

    #[test]
    fn plan_strips_and_dates() {
        let resp = h(&[
            (
                "cache-control",
                "public, max-age=60, private=\"X-User\", no-cache=\"x-secret\"",
            ),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            // Did not frame the body (Transfer-Encoding did): not stored.
            ("content-length", "5"),
            ("set-cookie", "s=1"),
            ("x-user", "alice"),
            ("x-secret", "s"),
            ("x-cuttle-vary-marker", "7"),
            ("content-type", "text/plain"),
            ("vary", "Accept-Encoding, accept-language"),
        ]);
        let ex = Exchange {
            request_time: T0 - 1,
            response_time: T0,
        };
        let plan = plan_store(
            &get(),
            &RequestDirectives::default(),
            StatusCode::OK,
            &resp,
            &rule(),
            ex,
        )
        .unwrap();
        let mut names: Vec<_> = plan.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "cache-control",
                "content-type",
                "date",
                "set-cookie",
                "vary"
            ]
        );
        assert_eq!(plan.headers.get("date").unwrap(), date(T0).as_str());
        assert_eq!(plan.vary, ["accept-encoding", "accept-language"]);
        // No Date and a 1 s delay: born 1 s before receipt.
        assert_eq!(u64::from(plan.times.date), T0 - 1);
        assert_eq!(u64::from(plan.times.expires), T0 + 59);
        assert_eq!(
            parse_head(&plan.head).unwrap(),
            (StatusCode::OK, plan.headers.clone())
        );
    }

    #[test]
    fn plan_judges_after_removing_hop_by_hop() {
        // A Cache-Control named in Connection was meant for us only; it is gone.
        let resp = h(&[
            ("connection", "cache-control"),
            ("cache-control", "no-store"),
            ("date", &date(T0)),
            ("content-length", "3"),
        ]);
        let plan = plan_store(
            &get(),
            &RequestDirectives::default(),
            StatusCode::OK,
            &resp,
            &rule(),
            ex(),
        );
        assert!(plan.is_ok());
    }

    #[test]
    fn plan_refuses_huge_heads() {
        let mut resp = h(&[("cache-control", "max-age=60")]);
        for i in 0..MAX_FIELDS {
            resp.append(
                HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let r = plan_store(
            &get(),
            &RequestDirectives::default(),
            StatusCode::OK,
            &resp,
            &rule(),
            ex(),
        );
        assert_eq!(r, Err(NotStorable::HeadTooLarge));
    }
}
