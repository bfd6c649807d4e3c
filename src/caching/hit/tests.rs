//! Unit tests of the hit decision, revalidation fields and client conditionals.

use super::*;
use crate::caching::test_support::{date, h, rule};

const T0: u64 = 1_700_000_000;

/// A 200 born at T0 with these extra fields (Date T0 always present).
fn entry(pairs: &[(&str, &str)]) -> StoredEntry {
    let mut headers = h(pairs);
    headers.insert(DATE, HeaderValue::from_str(&date(T0)).unwrap());
    StoredEntry {
        status: StatusCode::OK,
        headers,
        times: Times {
            date: T0 as u32,
            expires: 0,
            last_modified: 0,
        },
    }
}

fn req(cc: &str) -> RequestDirectives {
    RequestDirectives::parse(&h(&[("cache-control", cc)]))
}

fn none() -> RequestDirectives {
    RequestDirectives::default()
}

fn reason(d: &HitDecision) -> Option<RevalidateReason> {
    match d {
        HitDecision::Revalidate { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[test]
fn fresh_then_stale() {
    let e = entry(&[("cache-control", "max-age=100"), ("etag", "\"v1\"")]);
    assert_eq!(
        decide_hit(&e, &none(), &rule(), T0 + 99),
        HitDecision::Serve {
            age: 99,
            stale: false
        }
    );
    let d = decide_hit(&e, &none(), &rule(), T0 + 100);
    assert_eq!(
        d,
        HitDecision::Revalidate {
            validators: Validators {
                if_none_match: Some(HeaderValue::from_static("\"v1\"")),
                if_modified_since: None,
            },
            reason: RevalidateReason::Stale,
        }
    );
}

#[test]
fn headers_at_sets_age() {
    let e = entry(&[("cache-control", "max-age=100"), ("age", "5")]);
    let sent = e.headers_at(T0 + 42);
    assert_eq!(sent.get_all(AGE).iter().collect::<Vec<_>>(), ["42"]);
}

#[test]
fn client_no_cache_and_squid_options() {
    let e = entry(&[
        ("cache-control", "max-age=100"),
        ("last-modified", &date(T0 - 10)),
    ]);
    let reload = req("no-cache");
    let pragma = RequestDirectives::parse(&h(&[("pragma", "no-cache")]));
    // A validator of the origin's: the reload revalidates with it.
    for r in [&reload, &pragma] {
        let d = decide_hit(&e, r, &rule(), T0 + 1);
        assert_eq!(reason(&d), Some(RevalidateReason::ClientNoCache));
    }
    // None (only Date): a plain refetch.
    let bare = entry(&[("cache-control", "max-age=100")]);
    for r in [&reload, &pragma] {
        assert_eq!(decide_hit(&bare, r, &rule(), T0 + 1), HitDecision::Reload);
    }
    let ims = Rule {
        reload_into_ims: true,
        ..rule()
    };
    let d = decide_hit(&e, &reload, &ims, T0 + 1);
    assert_eq!(reason(&d), Some(RevalidateReason::ReloadIntoIms));
    let ignore = Rule {
        ignore_reload: true,
        ..rule()
    };
    assert_eq!(
        decide_hit(&e, &reload, &ignore, T0 + 1),
        HitDecision::Serve {
            age: 1,
            stale: false
        }
    );
    // ignore-reload also ignores max-age=0, but not max-age=N.
    assert_eq!(
        decide_hit(&e, &req("max-age=0"), &ignore, T0 + 1),
        HitDecision::Serve {
            age: 1,
            stale: false
        }
    );
    let d = decide_hit(&e, &req("max-age=5"), &ignore, T0 + 6);
    assert_eq!(reason(&d), Some(RevalidateReason::ClientMaxAge));
}

#[test]
fn client_max_age_and_min_fresh() {
    let e = entry(&[("cache-control", "max-age=100")]);
    assert_eq!(
        decide_hit(&e, &req("max-age=50"), &rule(), T0 + 50),
        HitDecision::Serve {
            age: 50,
            stale: false
        }
    );
    let d = decide_hit(&e, &req("max-age=50"), &rule(), T0 + 51);
    assert_eq!(reason(&d), Some(RevalidateReason::ClientMaxAge));
    // max-age=0 always revalidates (Squid), even at age 0.
    let d = decide_hit(&e, &req("max-age=0"), &rule(), T0);
    assert_eq!(reason(&d), Some(RevalidateReason::ClientMaxAge));
    // immutable ignores the client's max-age while fresh.
    let imm = entry(&[("cache-control", "max-age=100, immutable")]);
    assert_eq!(
        decide_hit(&imm, &req("max-age=0"), &rule(), T0 + 10),
        HitDecision::Serve {
            age: 10,
            stale: false
        }
    );
    // min-fresh: must still be fresh min-fresh seconds from now.
    assert_eq!(
        decide_hit(&e, &req("min-fresh=20"), &rule(), T0 + 79),
        HitDecision::Serve {
            age: 79,
            stale: false
        }
    );
    let d = decide_hit(&e, &req("min-fresh=20"), &rule(), T0 + 80);
    assert_eq!(reason(&d), Some(RevalidateReason::Stale));
}

#[test]
fn client_max_stale() {
    let e = entry(&[("cache-control", "max-age=100")]);
    assert_eq!(
        decide_hit(&e, &req("max-stale=30"), &rule(), T0 + 130),
        HitDecision::Serve {
            age: 130,
            stale: true
        }
    );
    let d = decide_hit(&e, &req("max-stale=30"), &rule(), T0 + 131);
    assert_eq!(reason(&d), Some(RevalidateReason::Stale));
    assert_eq!(
        decide_hit(&e, &req("max-stale"), &rule(), T0 + 1_000_000),
        HitDecision::Serve {
            age: 1_000_000,
            stale: true
        }
    );
}

#[test]
fn must_revalidate_family_forbids_stale() {
    for cc in [
        "max-age=100, must-revalidate",
        "max-age=100, proxy-revalidate",
        "s-maxage=100",
    ] {
        let e = entry(&[("cache-control", cc), ("last-modified", &date(T0 - 10))]);
        assert_eq!(
            decide_hit(&e, &req("max-stale"), &rule(), T0 + 50),
            HitDecision::Serve {
                age: 50,
                stale: false
            },
            "{cc}"
        );
        let d = decide_hit(&e, &req("max-stale"), &rule(), T0 + 100);
        assert_eq!(reason(&d), Some(RevalidateReason::MustRevalidate), "{cc}");
        assert!(
            !may_serve_stale_on_error(&e, &none(), &rule(), T0 + 101),
            "{cc}"
        );
    }
}

#[test]
fn response_no_cache_always_revalidates() {
    for e in [
        entry(&[("cache-control", "no-cache, max-age=100")]),
        entry(&[("cache-control", "private, max-age=100")]),
        entry(&[("pragma", "no-cache"), ("expires", &date(T0 + 100))]),
    ] {
        let d = decide_hit(&e, &none(), &rule(), T0 + 1);
        assert_eq!(reason(&d), Some(RevalidateReason::NoCache));
    }
}

#[test]
fn refresh_ims() {
    let e = entry(&[("cache-control", "max-age=100")]);
    let ims = RequestDirectives::parse(&h(&[("if-modified-since", &date(T0))]));
    assert_eq!(
        decide_hit(&e, &ims, &rule(), T0 + 1),
        HitDecision::Serve {
            age: 1,
            stale: false
        }
    );
    let r = Rule {
        refresh_ims: true,
        ..rule()
    };
    assert_eq!(
        reason(&decide_hit(&e, &ims, &r, T0 + 1)),
        Some(RevalidateReason::RefreshIms)
    );
}

#[test]
fn stale_while_revalidate() {
    let e = entry(&[
        ("cache-control", "max-age=100, stale-while-revalidate=60"),
        ("last-modified", &date(T0 - 10)),
    ]);
    let v = e.validators();
    assert_eq!(
        decide_hit(&e, &none(), &rule(), T0 + 160),
        HitDecision::ServeStaleWhileRevalidate {
            age: 160,
            validators: v
        }
    );
    let d = decide_hit(&e, &none(), &rule(), T0 + 161);
    assert_eq!(reason(&d), Some(RevalidateReason::Stale));
}

#[test]
fn only_if_cached() {
    let e = entry(&[("cache-control", "max-age=100")]);
    let oic = req("only-if-cached");
    assert_eq!(
        decide_hit(&e, &oic, &rule(), T0 + 1),
        HitDecision::Serve {
            age: 1,
            stale: false
        }
    );
    assert_eq!(
        decide_hit(&e, &oic, &rule(), T0 + 100),
        HitDecision::OnlyIfCachedMiss
    );
    // A sibling's only-if-cached with max-stale takes the stale copy.
    assert_eq!(
        decide_hit(&e, &req("only-if-cached, max-stale=10"), &rule(), T0 + 105),
        HitDecision::Serve {
            age: 105,
            stale: true
        }
    );
    assert_eq!(
        decide_hit(&e, &req("only-if-cached, no-cache"), &rule(), T0 + 1),
        HitDecision::OnlyIfCachedMiss
    );
}

#[test]
fn heuristic_hit_uses_the_rule_at_hit_time() {
    // Modified 1000 s before birth: 20% -> fresh for 200 s.
    let e = entry(&[("last-modified", &date(T0 - 1000))]);
    assert_eq!(
        decide_hit(&e, &none(), &rule(), T0 + 199),
        HitDecision::Serve {
            age: 199,
            stale: false
        }
    );
    let d = decide_hit(&e, &none(), &rule(), T0 + 200);
    assert_eq!(reason(&d), Some(RevalidateReason::Stale));
    let pct50 = Rule {
        percent: 50,
        ..rule()
    };
    assert_eq!(
        decide_hit(&e, &none(), &pct50, T0 + 200),
        HitDecision::Serve {
            age: 200,
            stale: false
        }
    );
}

#[test]
fn validators() {
    let lm = date(T0 - 10);
    let v = Validators::of(&h(&[("etag", "W/\"x\""), ("last-modified", &lm)]));
    assert_eq!(v.if_none_match.unwrap(), "W/\"x\"");
    assert_eq!(v.if_modified_since.unwrap(), lm.as_str());
    // No ETag, no Last-Modified: the Date, as Squid does.
    let d = date(T0);
    let v = Validators::of(&h(&[("date", &d)]));
    assert_eq!(
        (v.if_none_match, v.if_modified_since.unwrap()),
        (None, HeaderValue::from_str(&d).unwrap())
    );
    // A malformed ETag is not sent.
    let v = Validators::of(&h(&[("etag", "unquoted")]));
    assert!(v.is_empty());
    let mut r = h(&[
        ("if-none-match", "\"client\""),
        ("if-match", "\"m\""),
        ("accept", "*/*"),
    ]);
    Validators::of(&h(&[("etag", "\"s\"")])).apply(&mut r);
    assert_eq!(r.get(IF_NONE_MATCH).unwrap(), "\"s\"");
    assert!(!r.contains_key("if-match") && r.contains_key("accept"));
}

#[test]
fn stale_if_error() {
    let e = entry(&[("cache-control", "max-age=100, stale-if-error=50")]);
    assert!(may_serve_stale_on_error(&e, &none(), &rule(), T0 + 150));
    assert!(!may_serve_stale_on_error(&e, &none(), &rule(), T0 + 151));
    // The client's stale-if-error widens it.
    assert!(may_serve_stale_on_error(
        &e,
        &req("stale-if-error=500"),
        &rule(),
        T0 + 151
    ));
    // Without stale-if-error: Squid's max_stale.
    let e = entry(&[("cache-control", "max-age=100")]);
    let r = Rule {
        max_stale: 1000,
        ..rule()
    };
    assert!(may_serve_stale_on_error(&e, &none(), &r, T0 + 1100));
    assert!(!may_serve_stale_on_error(&e, &none(), &r, T0 + 1101));
    // A fresh entry revalidated for another reason falls back too.
    assert!(may_serve_stale_on_error(&e, &none(), &r, T0 + 10));
    let e = entry(&[("cache-control", "no-cache, max-age=100")]);
    assert!(!may_serve_stale_on_error(&e, &none(), &rule(), T0 + 10));
}

#[test]
fn client_conditionals() {
    let lm = date(T0 - 100);
    let stored = h(&[
        ("etag", "\"a\""),
        ("last-modified", &lm),
        ("date", &date(T0)),
    ]);
    let get = Method::GET;
    let inm = |v: &str| h(&[("if-none-match", v)]);
    assert_eq!(
        client_not_modified(&get, &inm("\"a\""), &stored),
        Some(Outcome::InmHit)
    );
    assert_eq!(
        client_not_modified(&get, &inm("W/\"a\""), &stored),
        Some(Outcome::InmHit)
    );
    assert_eq!(
        client_not_modified(&get, &inm("\"b\", \"a\""), &stored),
        Some(Outcome::InmHit)
    );
    assert_eq!(
        client_not_modified(&get, &inm("*"), &stored),
        Some(Outcome::InmHit)
    );
    assert_eq!(client_not_modified(&get, &inm("\"b\""), &stored), None);
    // A malformed stored ETag matches only the same characters.
    let unquoted = h(&[("etag", "abc")]);
    assert_eq!(
        client_not_modified(&get, &inm("abc"), &unquoted),
        Some(Outcome::InmHit)
    );
    assert_eq!(client_not_modified(&get, &inm("\"abc\""), &unquoted), None);
    assert_eq!(client_not_modified(&get, &inm("ab"), &unquoted), None);
    // If-None-Match present: If-Modified-Since is ignored.
    let both = h(&[("if-none-match", "\"b\""), ("if-modified-since", &date(T0))]);
    assert_eq!(client_not_modified(&get, &both, &stored), None);
    let ims = |t: u64| h(&[("if-modified-since", &date(t))]);
    assert_eq!(
        client_not_modified(&get, &ims(T0 - 100), &stored),
        Some(Outcome::ImsHit)
    );
    assert_eq!(client_not_modified(&get, &ims(T0 - 101), &stored), None);
    // No Last-Modified: the Date (RFC 9111 §4.3.2).
    let dated = h(&[("date", &date(T0))]);
    assert_eq!(
        client_not_modified(&get, &ims(T0), &dated),
        Some(Outcome::ImsHit)
    );
    assert_eq!(client_not_modified(&Method::POST, &ims(T0), &dated), None);
    let invalid = h(&[("if-modified-since", "yesterday")]);
    assert_eq!(client_not_modified(&get, &invalid, &stored), None);
}

#[test]
fn not_modified_fields() {
    let stored = h(&[
        ("etag", "\"a\""),
        ("last-modified", &date(T0)),
        ("date", &date(T0)),
        ("cache-control", "max-age=5"),
        ("content-type", "text/html"),
        ("content-length", "10"),
        ("vary", "accept-encoding"),
    ]);
    let mut names: Vec<_> = not_modified_headers(&stored)
        .keys()
        .map(|k| k.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["cache-control", "date", "etag", "vary"]);
    let no_etag = h(&[("last-modified", &date(T0))]);
    assert!(not_modified_headers(&no_etag).contains_key(LAST_MODIFIED));
}
