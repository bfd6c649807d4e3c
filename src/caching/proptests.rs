//! Property tests: the caching rules never panic on arbitrary header bytes and times, the
//! stored header block round-trips, and the index-only freshness agrees with a hit.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use proptest::prelude::*;

use super::*;
use crate::store::Times;

const NAMES: &[&str] = &[
    "cache-control",
    "pragma",
    "date",
    "expires",
    "last-modified",
    "age",
    "etag",
    "vary",
    "set-cookie",
    "content-length",
    "content-type",
    "connection",
    "location",
    "content-location",
    "authorization",
    "if-modified-since",
    "if-none-match",
    "x-cuttle-vary-marker",
    "cdn-cache-control",
    "cuttle-targeted-cache-control",
    "accept-encoding",
];

/// Values that look like what these fields carry, with junk mixed in.
fn plausible_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "(max-age|s-maxage|max-stale|min-fresh|stale-if-error|stale-while-revalidate)=[0-9]{1,25}",
        "(no-cache|no-store|private|public|must-revalidate|proxy-revalidate|immutable|must-understand|only-if-cached)",
        "(private|no-cache)=\"[a-z, -]{0,20}\"",
        "[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        "W?/?\"[a-z0-9]{0,8}\"",
        "[a-z*, -]{0,30}",
        "[0-9]{1,22}",
        "(/|//|http://|https://)[a-zA-Z0-9./:?#@\\[\\]-]{0,30}",
    ]
}

fn any_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        plausible_value().prop_filter_map("valid", |s| HeaderValue::from_str(&s).ok()),
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..=0xff], 0..48)
            .prop_filter_map("valid", |b| HeaderValue::from_bytes(&b).ok()),
    ]
}

fn any_headers() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((0..NAMES.len(), any_value()), 0..12).prop_map(|pairs| {
        let mut m = HeaderMap::new();
        for (i, v) in pairs {
            m.append(HeaderName::from_static(NAMES[i]), v);
        }
        m
    })
}

fn any_time() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..5_000_000_000,
        1_700_000_000u64..1_700_100_000
    ]
}

fn any_status() -> impl Strategy<Value = StatusCode> {
    (100u16..1000).prop_map(|c| StatusCode::from_u16(c).unwrap_or(StatusCode::OK))
}

fn any_rule() -> impl Strategy<Value = Rule> {
    (
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        proptest::collection::vec(any::<bool>(), 8),
    )
        .prop_map(|((min, percent, max, max_stale, negative_ttl), f)| Rule {
            index: None,
            min,
            percent,
            max,
            override_expire: f[0],
            override_lastmod: f[1],
            reload_into_ims: f[2],
            ignore_reload: f[3],
            ignore_no_store: f[4],
            ignore_private: f[5],
            refresh_ims: f[6],
            store_stale: f[7],
            max_stale,
            negative_ttl,
            adaptive: None,
        })
}

fn any_times() -> impl Strategy<Value = Times> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(date, expires, last_modified)| Times {
        date,
        expires,
        last_modified,
    })
}

proptest! {
    #[test]
    fn parse_head_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok((status, headers)) = parse_head(&bytes) {
            // What parses, writes back to something that parses the same.
            let again = parse_head(&write_head(status, &headers));
            prop_assert_eq!(again, Ok((status, headers)));
        }
    }

    #[test]
    fn parse_head_never_panics_on_near_misses(
        lines in proptest::collection::vec("[ -~\t\r\n:]{0,30}", 0..8),
        end in prop_oneof![Just("\r\n\r\n"), Just("\r\n"), Just("\n\n"), Just("")],
    ) {
        let text = format!("HTTP/1.1 200 OK\r\n{}{end}", lines.join("\r\n"));
        let _ = parse_head(text.as_bytes());
    }

    #[test]
    fn head_round_trips(
        status in any_status(),
        fields in proptest::collection::vec(
            ("[a-z][a-z0-9-]{0,15}", "([!-~]([ -~]{0,30}[!-~])?)?"),
            0..20,
        ),
    ) {
        let mut headers = HeaderMap::new();
        for (n, v) in &fields {
            headers.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let block = write_head(status, &headers);
        prop_assert_eq!(parse_head(&block), Ok((status, headers)));
    }

    #[test]
    fn rules_never_panic(
        request in any_headers(),
        response in any_headers(),
        reply in any_headers(),
        status in any_status(),
        rule in any_rule(),
        times in any_times(),
        (t1, t2, now) in (any_time(), any_time(), any_time()),
        method in prop_oneof![Just(Method::GET), Just(Method::HEAD), Just(Method::POST), Just(Method::PUT)],
    ) {
        let exchange = Exchange { request_time: t1, response_time: t2 };
        let req = RequestDirectives::parse(&request);
        let _ = ResponseDirectives::parse(&response);
        let _ = check_storable(&method, &req, status, &response, &rule, exchange);
        let _ = plan_store(&method, &req, status, &response, &rule, exchange);
        let _ = entry_times(status, &response, &rule, exchange);
        let _ = freshness_lifetime(status, &response, &rule, t2);
        let _ = corrected_initial_age(&response, exchange);
        let entry = StoredEntry { status, headers: response.clone(), times };
        let _ = decide_hit(&entry, &req, &rule, now);
        let _ = may_serve_stale_on_error(&entry, &req, &rule, now);
        let _ = entry.headers_at(now);
        let _ = client_not_modified(&method, &request, &response);
        let _ = not_modified_headers(&response);
        let _ = not_modified_matches(&response, &reply);
        let _ = freshen(&entry, &reply, &req, &rule, exchange);
        let _ = revalidation_outcome(Some(status), now % 2 == 0);
        if let Ok(fields) = vary_fields(&response) {
            let key = variant_key(&fields, &request);
            if !fields.is_empty() {
                let marker = VaryMarker { fields, epoch: now };
                prop_assert_eq!(VaryMarker::from_head(&marker.head()), Some(marker.clone()));
                prop_assert!(marker.variant_url("http://h/", &request).ends_with(&key));
            }
        }
        let _ = invalidated_urls(&method, status, "http://example.com/a/b?c", &response);
        let _ = is_fresh(&times, now);
        let _ = current_age(&times, now);
    }

    #[test]
    fn a_planned_entry_is_consistent(
        response in any_headers(),
        status in any_status(),
        rule in any_rule(),
        t in 1_000_000_000u64..2_000_000_000,
        delay in 0u64..100,
        later in 0u64..10_000_000,
    ) {
        let exchange = Exchange { request_time: t, response_time: t + delay };
        let req = RequestDirectives::default();
        if let Ok(plan) = plan_store(&Method::GET, &req, status, &response, &rule, exchange) {
            // The stored head parses back to the stored fields.
            prop_assert_eq!(parse_head(&plan.head), Ok((status, plan.headers.clone())));
            prop_assert!(u64::from(plan.times.date) <= t + delay);
            prop_assert!(plan.times.expires >= plan.times.date);
            // A fresh hit is fresh for ICP too (same rule, same fields).
            let entry = StoredEntry::from_head(&plan.head, plan.times).unwrap();
            let now = t + delay + later;
            if let HitDecision::Serve { stale: false, age } = decide_hit(&entry, &req, &rule, now) {
                prop_assert!(is_fresh(&plan.times, now));
                prop_assert_eq!(age, now - u64::from(plan.times.date));
            }
        }
    }
}
