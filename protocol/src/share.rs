//! Proxy sharing (issue 21, after Jeffery and Das): the `Cache-Share`
//! field and the `Link: <...>; rel=duplicate` values of a share list.
//!
//! One field, three shapes, told apart by their parameters:
//! - an offer, on a request from a proxy that will cache the answer and
//!   lets others fetch it there:
//!   `Cache-Share: url="http://me:3128/"; ttl=3600[; load=0.42][; failed="URL URL"]`
//!   (`failed`: candidates whose probes failed, reported back to the owner);
//! - a share list, on the owner's `300 Multiple Choices`:
//!   `Cache-Share: candidates=N[; length=BYTES]`, with one `Link: <PROXY-URL>; rel=duplicate`
//!   per candidate. RFC 6249 says `rel=duplicate` names another copy of the
//!   resource; here the target is the candidate *proxy* to ask, in absolute
//!   form, for the same URL;
//! - the owner mark, `Cache-Share: log`, on every other response of an
//!   owner that keeps a share log, so requesters learn whom to offer to.
//!
//! Parameters are `name[=value]` separated by `;`, a value a token or a
//! quoted string without backslash escapes (URLs need none); names are
//! case-insensitive, unknown ones are skipped, a repeated one is an error.

use crate::error::{Error, ErrorKind};

/// The field's name (lower case, as `http::HeaderName` wants it).
pub const FIELD: &str = "cache-share";
/// How long an offer stands when it names no `ttl`, seconds.
pub const DEFAULT_TTL: u32 = 3600;
/// The most candidates a list may announce (the paper's per-resource log).
pub const MAX_CANDIDATES: u32 = 64;
/// The most failed candidates one offer may report.
pub const MAX_FAILED: usize = 16;

/// A `Cache-Share` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Share<'a> {
    Offer(Offer<'a>),
    List(List),
    Owner,
}

/// A requester's offer to share the copy it is about to cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer<'a> {
    /// Where other proxies reach the requester (an `http://` proxy URL).
    pub url: &'a str,
    /// Seconds the offer stands.
    pub ttl: u32,
    /// The requester's own load, 0 idle, 1 saturated (may exceed 1).
    pub load: Option<f32>,
    /// Candidates the requester probed in vain since its last offer.
    pub failed: Vec<&'a str>,
}

/// The head of a share list: how many `Link` values name candidates, and
/// the owner's copy's length (a bodiless 300 cannot say it in
/// Content-Length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List {
    pub candidates: u32,
    pub length: Option<u64>,
}

/// One `Link` value: its target, whether one of its relations is
/// `duplicate`, and its `anchor` (RFC 8288 3.2: the link is about that
/// URL, not the response's own; a piggybacked candidate names the
/// embedded object it holds this way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link<'a> {
    pub target: &'a str,
    pub duplicate: bool,
    pub anchor: Option<&'a str>,
}

fn err(kind: ErrorKind, field: &'static str, offset: usize) -> Error {
    Error::new(kind, field, offset)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A cursor over a field value.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
    field: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], field: &'static str) -> Result<Self, Error> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| err(ErrorKind::Invalid("not UTF-8"), field, e.valid_up_to()))?;
        if let Some(at) = text
            .bytes()
            .position(|b| b.is_ascii_control() && b != b'\t')
        {
            return Err(err(ErrorKind::Invalid("control character"), field, at));
        }
        Ok(Cursor { text, at: 0, field })
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.at += 1;
        }
    }

    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn fail<T>(&self, why: &'static str) -> Result<T, Error> {
        let kind = if self.done() {
            ErrorKind::Truncated
        } else {
            ErrorKind::Invalid(why)
        };
        Err(err(kind, self.field, self.at))
    }

    fn token(&mut self) -> Result<&'a str, Error> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == start {
            return self.fail("expected a token");
        }
        Ok(&self.text[start..self.at])
    }

    fn quoted(&mut self) -> Result<&'a str, Error> {
        // The opening quote is the caller's peek.
        self.at += 1;
        let start = self.at;
        loop {
            match self.peek() {
                None => return self.fail("unterminated quoted string"),
                Some(b'"') => break,
                Some(b'\\') => return self.fail("backslash in quoted string"),
                Some(_) => self.at += 1,
            }
        }
        let value = &self.text[start..self.at];
        self.at += 1;
        Ok(value)
    }

    /// `name [= value]` with optional whitespace around `=`.
    fn param(&mut self) -> Result<Param<'a>, Error> {
        self.skip_ows();
        let at = self.at;
        let name = self.token()?;
        self.skip_ows();
        let mut value = None;
        if self.peek() == Some(b'=') {
            self.at += 1;
            self.skip_ows();
            value = Some(if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                self.token()?
            });
            self.skip_ows();
        }
        Ok(Param { name, value, at })
    }
}

struct Param<'a> {
    name: &'a str,
    value: Option<&'a str>,
    at: usize,
}

/// `name[=value]` parameters separated by `;`, up to the end.
fn params<'a>(bytes: &'a [u8], field: &'static str) -> Result<Vec<Param<'a>>, Error> {
    let mut cursor = Cursor::new(bytes, field)?;
    let mut out: Vec<Param<'a>> = Vec::new();
    loop {
        let p = cursor.param()?;
        if out.iter().any(|q| q.name.eq_ignore_ascii_case(p.name)) {
            return Err(err(ErrorKind::Invalid("repeated parameter"), field, p.at));
        }
        out.push(p);
        match cursor.peek() {
            None => return Ok(out),
            Some(b';') => cursor.at += 1,
            Some(_) => return cursor.fail("expected ';'"),
        }
    }
}

/// An `http://` URL with a host, and nothing that would need quoting.
pub fn is_proxy_url(url: &str) -> bool {
    let Some(rest) = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .and_then(|_| url.get(7..))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && !host.starts_with(':')
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"<>\\".contains(&b))
}

fn number(p: &Param<'_>, field: &'static str) -> Result<u32, Error> {
    let v = p.value.unwrap_or("");
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(ErrorKind::Invalid("not a number"), field, p.at));
    }
    v.parse()
        .map_err(|_| err(ErrorKind::Invalid("number too large"), field, p.at))
}

/// Parses a `Cache-Share` value.
pub fn parse(bytes: &[u8]) -> Result<Share<'_>, Error> {
    let params = params(bytes, "cache_share")?;
    let find = |name: &str| params.iter().find(|p| p.name.eq_ignore_ascii_case(name));
    match (find("url"), find("candidates"), find("log")) {
        (Some(url), None, None) => {
            let value = url.value.unwrap_or("");
            if !is_proxy_url(value) {
                return Err(err(ErrorKind::Invalid("not an http:// URL"), "url", url.at));
            }
            let ttl = match find("ttl") {
                Some(p) => number(p, "ttl")?,
                None => DEFAULT_TTL,
            };
            let load = match find("load") {
                Some(p) => {
                    let value: f32 = p
                        .value
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| err(ErrorKind::Invalid("not a number"), "load", p.at))?;
                    if !value.is_finite() || value < 0.0 {
                        return Err(err(ErrorKind::Invalid("out of range"), "load", p.at));
                    }
                    Some(value)
                }
                None => None,
            };
            let failed = match find("failed") {
                Some(p) => {
                    let list: Vec<&str> = p.value.unwrap_or("").split_ascii_whitespace().collect();
                    if list.len() > MAX_FAILED {
                        let kind = ErrorKind::TooLong {
                            len: list.len(),
                            max: MAX_FAILED,
                        };
                        return Err(err(kind, "failed", p.at));
                    }
                    if !list.iter().all(|u| is_proxy_url(u)) {
                        let kind = ErrorKind::Invalid("not an http:// URL");
                        return Err(err(kind, "failed", p.at));
                    }
                    list
                }
                None => Vec::new(),
            };
            Ok(Share::Offer(Offer {
                url: value,
                ttl,
                load,
                failed,
            }))
        }
        (None, Some(p), None) => {
            let candidates = number(p, "candidates")?;
            if candidates == 0 || candidates > MAX_CANDIDATES {
                let kind = ErrorKind::Invalid("candidates out of range");
                return Err(err(kind, "candidates", p.at));
            }
            let length = match find("length") {
                Some(p) => {
                    let v = p.value.unwrap_or("");
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(err(ErrorKind::Invalid("not a number"), "length", p.at));
                    }
                    let n = v
                        .parse()
                        .map_err(|_| err(ErrorKind::Invalid("number too large"), "length", p.at))?;
                    Some(n)
                }
                None => None,
            };
            Ok(Share::List(List { candidates, length }))
        }
        (None, None, Some(p)) if p.value.is_none() => Ok(Share::Owner),
        _ => Err(err(
            ErrorKind::Invalid("exactly one of url=, candidates= or log"),
            "cache_share",
            0,
        )),
    }
}

/// The `Link` values of one field value (RFC 8288: comma-separated
/// `<target>` with `;` parameters).
pub fn parse_links(bytes: &[u8]) -> Result<Vec<Link<'_>>, Error> {
    let mut cursor = Cursor::new(bytes, "link")?;
    let mut links = Vec::new();
    loop {
        cursor.skip_ows();
        if cursor.peek() != Some(b'<') {
            return cursor.fail("expected '<'");
        }
        cursor.at += 1;
        let start = cursor.at;
        let Some(len) = cursor.text[start..].find('>') else {
            return cursor.fail("unterminated '<'");
        };
        let target = &cursor.text[start..start + len];
        if target.is_empty() || target.bytes().any(|b| b == b' ' || b == b'<') {
            return Err(err(ErrorKind::Invalid("bad target"), "link", start));
        }
        cursor.at = start + len + 1;
        let mut duplicate = false;
        let mut rel_seen = false;
        let mut anchor = None;
        loop {
            cursor.skip_ows();
            match cursor.peek() {
                Some(b';') => {
                    cursor.at += 1;
                    let p = cursor.param()?;
                    // RFC 8288 3.3: only the first rel counts.
                    if p.name.eq_ignore_ascii_case("anchor") && anchor.is_none() {
                        anchor = p.value;
                    }
                    if p.name.eq_ignore_ascii_case("rel") && !rel_seen {
                        rel_seen = true;
                        duplicate = p.value.is_some_and(|v| {
                            v.split_ascii_whitespace()
                                .any(|r| r.eq_ignore_ascii_case("duplicate"))
                        });
                    }
                }
                Some(b',') | None => break,
                Some(_) => return cursor.fail("expected ';' or ','"),
            }
        }
        links.push(Link {
            target,
            duplicate,
            anchor,
        });
        match cursor.peek() {
            None => return Ok(links),
            _ => cursor.at += 1,
        }
    }
}

/// Writes the `Cache-Share` value of `offer`; `None` when a URL in it is
/// not one [`parse`] would accept.
pub fn encode_offer(offer: &Offer<'_>) -> Option<String> {
    if !is_proxy_url(offer.url)
        || !offer.failed.iter().all(|u| is_proxy_url(u))
        || offer.failed.len() > MAX_FAILED
    {
        return None;
    }
    let mut out = format!("url=\"{}\"; ttl={}", offer.url, offer.ttl);
    if let Some(load) = offer.load.filter(|l| l.is_finite() && *l >= 0.0) {
        out.push_str(&format!("; load={load:.2}"));
    }
    if !offer.failed.is_empty() {
        out.push_str(&format!("; failed=\"{}\"", offer.failed.join(" ")));
    }
    Some(out)
}

/// Writes the `Cache-Share` value of a share list.
pub fn encode_list(list: List) -> String {
    match list.length {
        Some(length) => format!("candidates={}; length={length}", list.candidates),
        None => format!("candidates={}", list.candidates),
    }
}

/// The owner mark's value.
pub const OWNER: &str = "log";

/// Writes the `Link` value naming `proxy_url` as a candidate; `None` when
/// it is not an acceptable proxy URL.
pub fn encode_duplicate(proxy_url: &str) -> Option<String> {
    is_proxy_url(proxy_url).then(|| format!("<{proxy_url}>; rel=duplicate"))
}

/// Writes the `Link` value naming `proxy_url` as a candidate holding
/// `url` (piggybacked on another response: `anchor` names the object);
/// `None` when either would not parse back.
pub fn encode_duplicate_of(proxy_url: &str, url: &str) -> Option<String> {
    let plain = |u: &str| {
        (u.starts_with("http://") || u.starts_with("https://"))
            && u.bytes()
                .all(|b| b.is_ascii_graphic() && !b"\"\\<>".contains(&b))
    };
    (is_proxy_url(proxy_url) && plain(url))
        .then(|| format!("<{proxy_url}>; rel=duplicate; anchor=\"{url}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_round_trips() {
        let offer = Offer {
            url: "http://127.0.0.1:3128/",
            ttl: 600,
            load: Some(0.5),
            failed: vec!["http://c2:3128/", "http://c3:8080/"],
        };
        let wire = encode_offer(&offer).expect("encodes");
        assert_eq!(
            wire,
            "url=\"http://127.0.0.1:3128/\"; ttl=600; load=0.50; failed=\"http://c2:3128/ http://c3:8080/\""
        );
        assert_eq!(parse(wire.as_bytes()), Ok(Share::Offer(offer)));
    }

    #[test]
    fn offer_defaults_and_spacing() {
        let parsed = parse(b" URL = \"http://me.example:3128/\" ;Extra=1").expect("parses");
        assert_eq!(
            parsed,
            Share::Offer(Offer {
                url: "http://me.example:3128/",
                ttl: DEFAULT_TTL,
                load: None,
                failed: vec![],
            })
        );
    }

    #[test]
    fn list_and_owner() {
        for length in [None, Some(5 << 20)] {
            let list = List {
                candidates: 3,
                length,
            };
            assert_eq!(parse(encode_list(list).as_bytes()), Ok(Share::List(list)));
        }
        assert_eq!(parse(OWNER.as_bytes()), Ok(Share::Owner));
    }

    #[test]
    fn malformed_values_are_errors() {
        let bad: &[&[u8]] = &[
            b"",
            b";",
            b"url=",
            b"url=\"http://x/",
            b"url=\"ftp://x/\"",
            b"url=\"http:///\"",
            b"url=\"http://x/\"; ttl=-1",
            b"url=\"http://x/\"; ttl=99999999999",
            b"url=\"http://x/\"; load=nan",
            b"url=\"http://x/\"; load=-2",
            b"url=\"http://x/\"; failed=\"gopher://y/\"",
            b"url=\"http://x/\"; url=\"http://y/\"",
            b"url=\"http://x/\"; candidates=2",
            b"url=\"a\\\"b\"",
            b"candidates=0",
            b"candidates=65",
            b"candidates=1; length=x",
            b"candidates",
            b"log=1",
            b"url=\"http://x/\" garbage",
            b"url=\"http://x/\"\r\n",
            b"\xff",
        ];
        for value in bad {
            assert!(
                parse(value).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(value)
            );
        }
        let many = format!(
            "url=\"http://x/\"; failed=\"{}\"",
            vec!["http://y/"; MAX_FAILED + 1].join(" ")
        );
        assert!(parse(many.as_bytes()).is_err());
    }

    #[test]
    fn errors_name_field_and_offset() {
        let e = parse(b"url=\"http://x/\"; ttl=abc").expect_err("bad ttl");
        assert_eq!((e.field, e.offset), ("ttl", 17));
        let e = parse(b"url=\"http://x/").expect_err("unterminated");
        assert_eq!(e.kind, ErrorKind::Truncated);
    }

    #[test]
    fn links() {
        let value = b"<http://c1:3128/>; rel=duplicate, <http://c2/>;rel=\"alternate Duplicate\", <http://c3/>; rel=next; rel=duplicate, <http://c4/>";
        let links = parse_links(value).expect("parses");
        let got: Vec<(&str, bool)> = links.iter().map(|l| (l.target, l.duplicate)).collect();
        assert_eq!(
            got,
            [
                ("http://c1:3128/", true),
                ("http://c2/", true),
                ("http://c3/", false),
                ("http://c4/", false)
            ]
        );
        let encoded = encode_duplicate("http://c1:3128/").expect("encodes");
        assert_eq!(
            parse_links(encoded.as_bytes()),
            Ok(vec![Link {
                target: "http://c1:3128/",
                duplicate: true,
                anchor: None
            }])
        );
        let piggybacked =
            encode_duplicate_of("http://c1:3128/", "http://www.example/a.jpg").expect("encodes");
        assert_eq!(
            parse_links(piggybacked.as_bytes()),
            Ok(vec![Link {
                target: "http://c1:3128/",
                duplicate: true,
                anchor: Some("http://www.example/a.jpg")
            }])
        );
        assert_eq!(
            encode_duplicate_of("http://c1:3128/", "http://www.example/a\"b"),
            None
        );
    }

    #[test]
    fn malformed_links_are_errors() {
        let bad: &[&[u8]] = &[
            b"",
            b"http://c1/",
            b"<http://c1/",
            b"<>; rel=duplicate",
            b"<http://c1/> rel=duplicate",
            b"<http://c1/>; rel=\"duplicate",
            b"<http://c1/>; =x",
            b"<http://c1/>,",
        ];
        for value in bad {
            assert!(
                parse_links(value).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(encode_duplicate("http://bad url/"), None);
    }
}
