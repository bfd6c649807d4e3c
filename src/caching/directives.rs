//! Cache-Control (and Pragma) parsing for requests and responses (RFC 9111 §5.2, §5.4),
//! lenient about quoting, case and duplicates, never failing. Whitespace around `=` is
//! tolerated in requests; in a response it makes the directive malformed (§5.2's grammar
//! has none there), which for a freshness directive means stale (§4.2.1).

use http::header::{
    HeaderMap, HeaderName, AUTHORIZATION, CACHE_CONTROL, IF_MODIFIED_SINCE, PRAGMA,
};

/// The largest delta-seconds value kept: RFC 9111 §1.2.2 says a larger (or
/// overflowing) value is to be taken as 2^31.
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// One `name[=value]` directive: the name in lower case, the value unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub name: String,
    pub value: Option<String>,
    /// Whitespace before or after the `=` (`max-age = 60`), which the
    /// grammar does not allow.
    pub loose_equals: bool,
}

/// Splits a comma-separated list of directives, honouring quoted strings
/// (a comma inside quotes does not split; `\` escapes inside them).
fn split_directives(text: &str, out: &mut Vec<Directive>) {
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == b',' {
            push_directive(&text[start..i], out);
            start = i + 1;
        }
    }
    push_directive(&text[start..], out);
}

fn push_directive(item: &str, out: &mut Vec<Directive>) {
    let item = item.trim_matches([' ', '\t']);
    if item.is_empty() {
        return;
    }
    let is_space = |c: char| c == ' ' || c == '\t';
    let (name, value, loose_equals) = match item.split_once('=') {
        Some((n, v)) => (
            n,
            Some(unquote(v.trim_matches([' ', '\t']))),
            n.ends_with(is_space) || v.starts_with(is_space),
        ),
        None => (item, None, false),
    };
    let name = name.trim_matches([' ', '\t']).to_ascii_lowercase();
    if name.is_empty() {
        return;
    }
    out.push(Directive {
        name,
        value,
        loose_equals,
    });
}

/// The content of a quoted-string (escapes resolved; an unterminated one runs
/// to the end), or the text itself when it is not quoted.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"') else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// Every directive of every `name` field line, in order.
pub(crate) fn directives(headers: &HeaderMap, name: &HeaderName) -> Vec<Directive> {
    let mut out = Vec::new();
    for value in headers.get_all(name) {
        split_directives(&String::from_utf8_lossy(value.as_bytes()), &mut out);
    }
    out
}

/// `delta-seconds` (digits only, quotes already removed), capped at
/// [`DELTA_SECONDS_MAX`]; `None` when it is not a number.
pub(crate) fn delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        v.parse::<u64>()
            .map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX)),
    )
}

/// Whether a comma-separated field (e.g. `Pragma`) lists `token` (any case).
pub(crate) fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    directives(headers, name)
        .iter()
        .any(|d| d.name == token && d.value.is_none())
}

/// The request's `max-stale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStale {
    /// `max-stale` without a value: any staleness is acceptable.
    Any,
    /// `max-stale=N`.
    Secs(u64),
}

/// What the caching rules need from a request: its Cache-Control
/// directives (RFC 9111 §5.2.1), `Pragma: no-cache`, and whether it carries
/// `Authorization` or `If-Modified-Since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache`, or `Pragma: no-cache` when the request has no
    /// Cache-Control field (RFC 9111 §5.4).
    pub no_cache: bool,
    pub no_store: bool,
    /// Duplicates: the smallest. An invalid value is ignored.
    pub max_age: Option<u64>,
    /// Duplicates: the most restrictive.
    pub max_stale: Option<MaxStale>,
    /// Duplicates: the largest.
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
    /// RFC 5861 `stale-if-error=N` sent by the client.
    pub stale_if_error: Option<u64>,
    /// The request has an `Authorization` field (RFC 9111 §3.5).
    pub authorization: bool,
    /// The request has an `If-Modified-Since` field (refresh_pattern `refresh-ims`).
    pub if_modified_since: bool,
}

fn keep_min(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.map_or(v, |old| old.min(v)));
}

impl RequestDirectives {
    /// Reads the request's header fields. Unknown directives are ignored.
    pub fn parse(headers: &HeaderMap) -> RequestDirectives {
        let mut out = RequestDirectives {
            authorization: headers.contains_key(AUTHORIZATION),
            if_modified_since: headers.contains_key(IF_MODIFIED_SINCE),
            ..RequestDirectives::default()
        };
        for d in directives(headers, &CACHE_CONTROL) {
            let secs = d.value.as_deref().and_then(delta_seconds);
            match d.name.as_str() {
                "no-cache" => out.no_cache = true,
                "no-store" => out.no_store = true,
                "only-if-cached" => out.only_if_cached = true,
                "max-age" => {
                    if let Some(s) = secs {
                        keep_min(&mut out.max_age, s);
                    }
                }
                "min-fresh" => {
                    if let Some(s) = secs {
                        out.min_fresh = Some(out.min_fresh.map_or(s, |old| old.max(s)));
                    }
                }
                "stale-if-error" => {
                    if let Some(s) = secs {
                        keep_min(&mut out.stale_if_error, s);
                    }
                }
                "max-stale" => {
                    let new = match (&d.value, secs) {
                        (None, _) => Some(MaxStale::Any),
                        (Some(_), Some(s)) => Some(MaxStale::Secs(s)),
                        (Some(_), None) => None,
                    };
                    out.max_stale = match (out.max_stale, new) {
                        (old, None) => old,
                        (None, new) => new,
                        (Some(MaxStale::Secs(a)), Some(MaxStale::Secs(b))) => {
                            Some(MaxStale::Secs(a.min(b)))
                        }
                        (Some(MaxStale::Secs(a)), Some(MaxStale::Any))
                        | (Some(MaxStale::Any), Some(MaxStale::Secs(a))) => Some(MaxStale::Secs(a)),
                        (Some(MaxStale::Any), Some(MaxStale::Any)) => Some(MaxStale::Any),
                    };
                }
                _ => {}
            }
        }
        if !headers.contains_key(CACHE_CONTROL) && lists_token(headers, &PRAGMA, "no-cache") {
            out.no_cache = true;
        }
        out
    }
}

/// A response's Cache-Control directives (RFC 9111 §5.2.2, RFC 5861, RFC 8246).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub public: bool,
    /// Unqualified `private` (the whole response is for one user).
    pub private: bool,
    /// `private="a, b"`: those fields are for one user only.
    pub private_fields: Vec<HeaderName>,
    /// Unqualified `no-cache`, or `Pragma: no-cache` when the response has no
    /// Cache-Control field (a Squid convention; Pragma is only defined for requests).
    pub no_cache: bool,
    /// `no-cache="a, b"`: those fields must not be sent without revalidation.
    pub no_cache_fields: Vec<HeaderName>,
    pub no_store: bool,
    pub no_transform: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub immutable: bool,
    /// Duplicates: the first (RFC 9111 §4.2.1). An invalid value (not
    /// digits, or whitespace around `=`): 0, stale, as §4.2.1 encourages.
    pub max_age: Option<u64>,
    /// As `max_age`.
    pub s_maxage: Option<u64>,
    /// Duplicates: the smallest. An invalid value is ignored.
    pub stale_while_revalidate: Option<u64>,
    /// Duplicates: the smallest. An invalid value is ignored.
    pub stale_if_error: Option<u64>,
}

/// A field-name list given as a directive's argument (`private="a, b"`).
fn field_list(v: &str) -> Vec<HeaderName> {
    v.split(',')
        .filter_map(|n| HeaderName::from_bytes(n.trim_matches([' ', '\t']).as_bytes()).ok())
        .collect()
}

/// Keeps the first occurrence of an explicit-freshness directive (RFC 9111
/// §4.2.1 allows the first or "stale"; most published caches take the
/// first); an invalid value means "stale" (0).
fn keep_freshness(slot: &mut Option<u64>, value: Option<&str>) {
    if slot.is_none() {
        *slot = Some(value.and_then(delta_seconds).unwrap_or(0));
    }
}

impl ResponseDirectives {
    /// Reads the response's Cache-Control (and Pragma) fields. Unknown
    /// directives are ignored.
    pub fn parse(headers: &HeaderMap) -> ResponseDirectives {
        // RFC 9213: a targeted field in force counts in place of Cache-Control.
        Self::parse_effective(&super::targeted::effective(headers))
    }

    /// [`ResponseDirectives::parse`] of a head [`super::targeted::effective`]
    /// already made (a hit reads its directives several times; each look
    /// for the targeted record hashes its name).
    pub(crate) fn parse_effective(headers: &HeaderMap) -> ResponseDirectives {
        let mut out = ResponseDirectives::default();
        for d in directives(headers, &CACHE_CONTROL) {
            // A malformed argument is kept as an empty one: invalid for a
            // number (stale, or ignored) and, for `private`/`no-cache`, the
            // stricter unqualified form.
            let value = if d.loose_equals {
                Some("")
            } else {
                d.value.as_deref()
            };
            match d.name.as_str() {
                "public" => out.public = true,
                "private" => match value.map(field_list) {
                    Some(fields) if !fields.is_empty() => out.private_fields.extend(fields),
                    _ => out.private = true,
                },
                "no-cache" => match value.map(field_list) {
                    Some(fields) if !fields.is_empty() => out.no_cache_fields.extend(fields),
                    _ => out.no_cache = true,
                },
                "no-store" => out.no_store = true,
                "no-transform" => out.no_transform = true,
                "must-revalidate" => out.must_revalidate = true,
                "proxy-revalidate" => out.proxy_revalidate = true,
                "must-understand" => out.must_understand = true,
                "immutable" => out.immutable = true,
                "max-age" => keep_freshness(&mut out.max_age, value),
                "s-maxage" => keep_freshness(&mut out.s_maxage, value),
                "stale-while-revalidate" => {
                    if let Some(s) = value.and_then(delta_seconds) {
                        keep_min(&mut out.stale_while_revalidate, s);
                    }
                }
                "stale-if-error" => {
                    if let Some(s) = value.and_then(delta_seconds) {
                        keep_min(&mut out.stale_if_error, s);
                    }
                }
                _ => {}
            }
        }
        if !headers.contains_key(CACHE_CONTROL) && lists_token(headers, &PRAGMA, "no-cache") {
            out.no_cache = true;
        }
        out
    }

    /// The response may never be served without revalidation: unqualified
    /// `no-cache` or `private` (the latter only stored through
    /// refresh_pattern `ignore-private`; Squid revalidates it every time).
    pub fn revalidate_always(&self) -> bool {
        self.no_cache || self.private
    }

    /// Once stale, the response must not be served without successful
    /// revalidation: `must-revalidate`, `proxy-revalidate`, or `s-maxage`
    /// (which implies proxy-revalidate for a shared cache, RFC 9111 §5.2.2.10).
    pub fn revalidate_when_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::h;
    use http::HeaderValue;

    fn req(cc: &str) -> RequestDirectives {
        RequestDirectives::parse(&h(&[("cache-control", cc)]))
    }

    fn resp(cc: &str) -> ResponseDirectives {
        ResponseDirectives::parse(&h(&[("cache-control", cc)]))
    }

    #[test]
    fn request_directives() {
        let d = req("no-cache, no-store, max-age=60, max-stale=30, min-fresh=10, only-if-cached, stale-if-error=5, x-unknown=\"a,b\"");
        assert_eq!(
            d,
            RequestDirectives {
                no_cache: true,
                no_store: true,
                max_age: Some(60),
                max_stale: Some(MaxStale::Secs(30)),
                min_fresh: Some(10),
                only_if_cached: true,
                stale_if_error: Some(5),
                authorization: false,
                if_modified_since: false,
            }
        );
        assert_eq!(req("max-stale").max_stale, Some(MaxStale::Any));
        assert_eq!(req("").max_age, None);
    }

    #[test]
    fn odd_spacing_case_and_quoting() {
        let d = req("  MAX-AGE = \"120\" ,,, No-Cache ,max-stale=\"7\"\t");
        assert_eq!(d.max_age, Some(120));
        assert!(d.no_cache);
        assert_eq!(d.max_stale, Some(MaxStale::Secs(7)));
        // A comma inside a quoted value does not split.
        let d = req("x=\"a, max-age=1\", min-fresh=3");
        assert_eq!((d.max_age, d.min_fresh), (None, Some(3)));
        // Escapes inside quotes.
        let d = req(r#"x="a\"b, max-age=2", max-age=9"#);
        assert_eq!(d.max_age, Some(9));
    }

    #[test]
    fn request_duplicates_take_the_most_restrictive() {
        let d = RequestDirectives::parse(&h(&[
            ("cache-control", "max-age=100, min-fresh=5"),
            (
                "cache-control",
                "max-age=50, min-fresh=9, max-stale, max-stale=20",
            ),
        ]));
        assert_eq!(d.max_age, Some(50));
        assert_eq!(d.min_fresh, Some(9));
        assert_eq!(d.max_stale, Some(MaxStale::Secs(20)));
    }

    #[test]
    fn invalid_request_values_are_ignored() {
        let d = req("max-age=abc, max-stale=-1, min-fresh=1.5");
        assert_eq!((d.max_age, d.max_stale, d.min_fresh), (None, None, None));
    }

    #[test]
    fn huge_values_are_capped_at_2_pow_31() {
        assert_eq!(
            req("max-age=99999999999999999999999").max_age,
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(resp("max-age=4294967296").max_age, Some(DELTA_SECONDS_MAX));
    }

    #[test]
    fn pragma_only_without_cache_control() {
        let d = RequestDirectives::parse(&h(&[("pragma", "No-Cache")]));
        assert!(d.no_cache);
        let d = RequestDirectives::parse(&h(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5"),
        ]));
        assert!(!d.no_cache);
        let d = RequestDirectives::parse(&h(&[("pragma", "x, no-cache")]));
        assert!(d.no_cache);
        let d = RequestDirectives::parse(&h(&[("pragma", "no-cache=1")]));
        assert!(!d.no_cache);
    }

    #[test]
    fn request_facts() {
        let d = RequestDirectives::parse(&h(&[
            ("authorization", "Basic eDp5"),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]));
        assert!(d.authorization && d.if_modified_since);
    }

    #[test]
    fn response_directives() {
        let d = resp("public, must-revalidate, proxy-revalidate, no-transform, immutable, must-understand, max-age=10, s-maxage=20, stale-while-revalidate=30, stale-if-error=40, no-store");
        assert!(d.public && d.must_revalidate && d.proxy_revalidate && d.no_transform);
        assert!(d.immutable && d.must_understand && d.no_store);
        assert_eq!(
            (
                d.max_age,
                d.s_maxage,
                d.stale_while_revalidate,
                d.stale_if_error
            ),
            (Some(10), Some(20), Some(30), Some(40))
        );
        assert!(d.revalidate_when_stale() && !d.revalidate_always());
    }

    #[test]
    fn qualified_private_and_no_cache() {
        let d = resp("private=\"Set-Cookie, X-User\", no-cache=\"x-a\"");
        assert!(!d.private && !d.no_cache);
        assert_eq!(d.private_fields, ["set-cookie", "x-user"]);
        assert_eq!(d.no_cache_fields, ["x-a"]);
        let d = resp("private, no-cache");
        assert!(d.private && d.no_cache && d.revalidate_always());
        // An empty list means the unqualified form.
        assert!(resp("private=\"\"").private);
    }

    #[test]
    fn response_freshness_invalid_means_stale() {
        assert_eq!(resp("max-age=60, max-age=60").max_age, Some(60));
        assert_eq!(resp("max-age=60, max-age=120").max_age, Some(60));
        assert_eq!(resp("max-age=abc").max_age, Some(0));
        assert_eq!(resp("max-age").max_age, Some(0));
        assert_eq!(resp("s-maxage=-5").s_maxage, Some(0));
        assert_eq!(resp("max-age=\"30\"").max_age, Some(30));
    }

    /// RFC 9111 §4.2.1: of duplicates "the first occurrence should be used or the
    /// response should be considered stale"; the first, as most published caches do
    /// (cache-tests freshness-max-age-two-*).
    #[test]
    fn response_freshness_duplicates_take_the_first() {
        assert_eq!(resp("max-age=1800, max-age=1").max_age, Some(1800));
        assert_eq!(resp("max-age=1, max-age=1800").max_age, Some(1));
        let two_lines = |a: &str, b: &str| {
            ResponseDirectives::parse(&h(&[("cache-control", a), ("cache-control", b)]))
        };
        assert_eq!(two_lines("max-age=1800", "max-age=1").max_age, Some(1800));
        assert_eq!(two_lines("max-age=1", "max-age=1800").max_age, Some(1));
        assert_eq!(resp("s-maxage=30, s-maxage=0").s_maxage, Some(30));
        // An invalid first occurrence is still the one used: stale.
        assert_eq!(resp("max-age=soon, max-age=60").max_age, Some(0));
    }

    /// The §5.2 grammar (`token [ "=" ( token / quoted-string ) ]`) has no
    /// whitespace around `=`: such a response directive is malformed, and a
    /// malformed freshness directive means stale (§4.2.1).
    #[test]
    fn response_space_around_equals_is_invalid() {
        assert_eq!(resp("max-age =3600").max_age, Some(0));
        assert_eq!(resp("max-age= 3600").max_age, Some(0));
        assert_eq!(resp("s-maxage = 3600").s_maxage, Some(0));
        assert_eq!(
            resp("stale-while-revalidate =30").stale_while_revalidate,
            None
        );
        // A malformed field list is taken as the unqualified (stricter) form.
        assert!(resp("private= \"x-user\"").private);
        assert!(resp("no-cache =\"x-a\"").no_cache);
        // Whitespace around the directive itself is list syntax (OWS): fine.
        assert_eq!(resp(" max-age=3600 ,\tpublic").max_age, Some(3600));
    }

    #[test]
    fn response_pragma_no_cache() {
        assert!(ResponseDirectives::parse(&h(&[("pragma", "no-cache")])).no_cache);
        assert!(
            !ResponseDirectives::parse(&h(&[
                ("pragma", "no-cache"),
                ("cache-control", "max-age=1")
            ]))
            .no_cache
        );
    }

    #[test]
    fn non_utf8_does_not_break_parsing() {
        let mut m = HeaderMap::new();
        m.append(
            CACHE_CONTROL,
            HeaderValue::from_bytes(b"max-age=5, x=\xff\xfe").unwrap(),
        );
        assert_eq!(ResponseDirectives::parse(&m).max_age, Some(5));
    }
}
