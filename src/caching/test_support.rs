//! Helpers shared by the caching rules' unit tests.

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::rule::Rule;

/// A header map from name/value pairs, in order (repeats append).
pub fn h(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in pairs {
        m.append(
            HeaderName::from_bytes(n.as_bytes()).expect("test header name"),
            HeaderValue::from_str(v).expect("test header value"),
        );
    }
    m
}

/// An HTTP-date for unix seconds.
pub fn date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Squid's default refresh rule (0 20% 3 days) with a week's max-stale.
pub fn rule() -> Rule {
    Rule::squid_default(Duration::from_secs(7 * 86400), Duration::ZERO)
}
