//! Invalidation by unsafe methods (RFC 9111 §4.4): which responses invalidate the target
//! URL, and the same-origin Location / Content-Location URLs invalidated with it, resolved
//! (RFC 3986 §5.2) into the canonical form the store key hashes.

use http::header::{HeaderMap, CONTENT_LOCATION, LOCATION};
use http::{Method, StatusCode};

/// Safe methods (RFC 9110 §9.2.1) never invalidate.
pub fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a response to `method` invalidates the stored responses for the
/// target URL: an unsafe method (POST, PUT, DELETE, PATCH, any unknown
/// method; not CONNECT, which has no URL in the cache) with a non-error
/// (2xx or 3xx) status.
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !is_safe(method)
        && *method != Method::CONNECT
        && (status.is_success() || status.is_redirection())
}

/// The URLs to invalidate after a response to `method` for `target_url`
/// (the canonical URL of the request): none if [`invalidates`] is false;
/// else the target, then the Location and Content-Location URLs (resolved
/// against the target) that have the same origin (scheme, host, port),
/// each once, in the canonical form (lower-case scheme and host, default
/// port omitted, dot segments removed, no fragment). For each, the proxy
/// releases the GET and HEAD keys (a Vary marker under the GET key takes
/// its variants with it).
pub fn invalidated_urls(
    method: &Method,
    status: StatusCode,
    target_url: &str,
    response: &HeaderMap,
) -> Vec<String> {
    if !invalidates(method, status) {
        return Vec::new();
    }
    let mut out = vec![target_url.to_string()];
    let Some(base) = Url::parse_absolute(target_url) else {
        return out;
    };
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(reference) = response.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(url) = base.resolve(reference.trim()) {
            if url.same_origin(&base) {
                let text = url.canonical();
                if !out.contains(&text) {
                    out.push(text);
                }
            }
        }
    }
    out
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

/// An absolute http(s)/ftp URL, split as the store's canonical form needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    port: u16,
    path: String,
    query: Option<String>,
}

/// A URI reference split per RFC 3986 §3 (fragment dropped).
struct Reference<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_reference(text: &str) -> Reference<'_> {
    let text = text.split('#').next().unwrap_or("");
    let mut rest = text;
    let mut scheme = None;
    if let Some(colon) = rest.find(':') {
        let candidate = &rest[..colon];
        let valid = candidate
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && candidate
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if valid {
            scheme = Some(candidate);
            rest = &rest[colon + 1..];
        }
    }
    let mut authority = None;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?']).unwrap_or(after.len());
        authority = Some(&after[..end]);
        rest = &after[end..];
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    Reference {
        scheme,
        authority,
        path,
        query,
    }
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output: Vec<&str> = Vec::new();
    // Work on segments: each output element is "/seg" (or "seg" first when relative).
    let absolute = input.starts_with('/');
    if absolute {
        input = &input[1..];
    }
    let segments: Vec<&str> = input.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            s => {
                output.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&output.join("/"));
    if trailing_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

impl Url {
    fn from_parts(scheme: &str, authority: &str, path: &str, query: Option<&str>) -> Option<Url> {
        let scheme = scheme.to_ascii_lowercase();
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (inside, after) = v6.split_once(']')?;
            let host = format!("[{}]", inside.to_ascii_lowercase());
            let port = if after.is_empty() || after == ":" {
                default_port(&scheme)?
            } else {
                after.strip_prefix(':')?.parse().ok()?
            };
            (host, port)
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !p.is_empty() => (h, p.parse().ok()?),
                Some((h, _)) => (h, default_port(&scheme)?),
                None => (authority, default_port(&scheme)?),
            };
            (host.trim_end_matches('.').to_ascii_lowercase(), port)
        };
        if host.is_empty() || default_port(&scheme).is_none() {
            return None;
        }
        Some(Url {
            scheme,
            host,
            port,
            path: remove_dot_segments(path),
            query: query.map(str::to_string),
        })
    }

    fn parse_absolute(text: &str) -> Option<Url> {
        let r = split_reference(text);
        Url::from_parts(r.scheme?, r.authority?, r.path, r.query)
    }

    /// RFC 3986 §5.2.2 with `self` as the base URI.
    fn resolve(&self, reference: &str) -> Option<Url> {
        let r = split_reference(reference);
        if let Some(scheme) = r.scheme {
            return Url::from_parts(scheme, r.authority?, r.path, r.query);
        }
        if let Some(authority) = r.authority {
            return Url::from_parts(&self.scheme, authority, r.path, r.query);
        }
        let mut url = self.clone();
        if r.path.is_empty() {
            if r.query.is_some() {
                url.query = r.query.map(str::to_string);
            }
        } else {
            let merged = if r.path.starts_with('/') {
                r.path.to_string()
            } else {
                let dir = match self.path.rfind('/') {
                    Some(i) => &self.path[..=i],
                    None => "/",
                };
                format!("{dir}{}", r.path)
            };
            url.path = remove_dot_segments(&merged);
            url.query = r.query.map(str::to_string);
        }
        Some(url)
    }

    fn same_origin(&self, other: &Url) -> bool {
        self.scheme == other.scheme && self.host == other.host && self.port == other.port
    }

    /// The store's canonical form (as `http::target` writes it).
    fn canonical(&self) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        let query = self
            .query
            .as_ref()
            .map_or(String::new(), |q| format!("?{q}"));
        if default_port(&self.scheme) == Some(self.port) {
            format!("{}://{}{path}{query}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}{path}{query}", self.scheme, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::h;

    #[test]
    fn which_methods_and_statuses() {
        let ok = StatusCode::OK;
        for m in ["POST", "PUT", "DELETE", "PATCH", "PURGE", "FROB"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(invalidates(&m, ok), "{m}");
            assert!(invalidates(&m, StatusCode::SEE_OTHER), "{m}");
            assert!(!invalidates(&m, StatusCode::NOT_FOUND), "{m}");
            assert!(!invalidates(&m, StatusCode::INTERNAL_SERVER_ERROR), "{m}");
        }
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ] {
            assert!(!invalidates(&m, ok), "{m}");
        }
    }

    #[test]
    fn target_plus_same_origin_locations() {
        let resp = h(&[
            ("location", "/items/42?x=1#frag"),
            ("content-location", "HTTP://Example.COM:80/items/./42/../43"),
        ]);
        let urls = invalidated_urls(
            &Method::POST,
            StatusCode::CREATED,
            "http://example.com/items/",
            &resp,
        );
        assert_eq!(
            urls,
            [
                "http://example.com/items/",
                "http://example.com/items/42?x=1",
                "http://example.com/items/43",
            ]
        );
        assert!(
            invalidated_urls(&Method::GET, StatusCode::OK, "http://example.com/", &resp).is_empty()
        );
    }

    #[test]
    fn other_origins_are_left_alone() {
        let base = "http://example.com/a/b";
        for loc in [
            "http://evil.example/a",
            "https://example.com/a",
            "http://example.com:8080/a",
            "//other.example/a",
            "mailto:x@example.com",
        ] {
            let urls = invalidated_urls(
                &Method::PUT,
                StatusCode::NO_CONTENT,
                base,
                &h(&[("location", loc)]),
            );
            assert_eq!(urls, [base], "{loc}");
        }
        let urls = invalidated_urls(
            &Method::PUT,
            StatusCode::OK,
            "http://example.com:8080/a",
            &h(&[("location", "//EXAMPLE.com.:8080/z")]),
        );
        assert_eq!(
            urls,
            ["http://example.com:8080/a", "http://example.com:8080/z"]
        );
    }

    #[test]
    fn rfc_3986_examples() {
        // RFC 3986 §5.4.1 and §5.4.2, base "http://a/b/c/d;p?q".
        let base = Url::parse_absolute("http://a/b/c/d;p?q").unwrap();
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
        ];
        for (reference, want) in cases {
            assert_eq!(
                base.resolve(reference).unwrap().canonical(),
                want,
                "{reference}"
            );
        }
    }

    #[test]
    fn canonical_forms() {
        let u = Url::parse_absolute("HTTPS://user:pw@WWW.Example.org.:443").unwrap();
        assert_eq!(u.canonical(), "https://www.example.org/");
        let u = Url::parse_absolute("http://[2001:DB8::1]:8080/x").unwrap();
        assert_eq!(u.canonical(), "http://[2001:db8::1]:8080/x");
        assert!(Url::parse_absolute("gopher://h/").is_none());
        assert!(Url::parse_absolute("http://h:99999/").is_none());
        assert!(Url::parse_absolute("http:///x").is_none());
    }
}
