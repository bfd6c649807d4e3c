//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` and any other field named
//! by `targeted_cache_control`, for responses to requests that came in on an accelerator
//! port.
//!
//! A targeted field is a Structured Field Dictionary (RFC 8941 §3.2), parsed strictly: a
//! value that does not parse, or a known directive of the wrong type (`max-age="60"`), makes
//! the whole field invalid, and an invalid or empty field is ignored as if absent. The first
//! field of the configured list that is present and valid replaces Cache-Control and Expires
//! for cuttle's own caching (RFC 9213 §2.1).
//!
//! How the rest of `caching` sees it: when a response arrives from upstream, [`intake`]
//! records the chosen field's directives, written in Cache-Control syntax, in the response's
//! [`INTERNAL_FIELD`] (stored with the entry, updated by a 304 that brings a new targeted
//! field). Every reader of response directives goes through [`effective`], which shows them
//! a head whose Cache-Control is that field and which has no Expires or Pragma. The internal
//! field never leaves cuttle ([`remove_internal`]).

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, EXPIRES, PRAGMA};

/// Where the directives of the targeted field in force are kept, in Cache-Control syntax.
/// Not `x-cuttle-*`: those are dropped from stored heads, and this one must be stored.
pub const INTERNAL_FIELD: &str = "cuttle-targeted-cache-control";
/// The same, parsed once: a hit looks it up several times, and a `&str` key is parsed on
/// every lookup.
const INTERNAL: HeaderName = HeaderName::from_static(INTERNAL_FIELD);

/// A structured field value's bare item (RFC 8941 §3.3).
#[derive(Debug, Clone, PartialEq)]
enum Bare {
    Integer(i64),
    Decimal,
    String(String),
    Token(String),
    Bytes,
    Boolean(bool),
}

/// A dictionary member's value: an item or an inner list (parameters are parsed and
/// dropped: RFC 9213 §2.2 says to ignore them).
#[derive(Debug, Clone, PartialEq)]
enum Member {
    Item(Bare),
    InnerList(Vec<Bare>),
}

/// Why a field value is not a valid Dictionary (details do not matter: it is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invalid;

/// RFC 8941 §4.2 parser over one field value (the field lines already joined).
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn dictionary(&mut self) -> Result<Vec<(String, Member)>, Invalid> {
        let mut out: Vec<(String, Member)> = Vec::new();
        self.skip_sp();
        while self.peek().is_some() {
            let key = self.key()?;
            let member = if self.eat(b'=') {
                self.member()?
            } else {
                self.parameters()?;
                Member::Item(Bare::Boolean(true))
            };
            // A later duplicate overrides the earlier one, keeping its place (§4.2.2).
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = member,
                None => out.push((key, member)),
            }
            self.skip_ows();
            if self.peek().is_none() {
                break;
            }
            if !self.eat(b',') {
                return Err(Invalid);
            }
            self.skip_ows();
            if self.peek().is_none() {
                // A trailing comma.
                return Err(Invalid);
            }
        }
        self.skip_sp();
        if self.peek().is_some() {
            return Err(Invalid);
        }
        Ok(out)
    }

    fn key(&mut self) -> Result<String, Invalid> {
        let start = self.pos;
        match self.next() {
            Some(b) if b.is_ascii_lowercase() || b == b'*' => {}
            _ => return Err(Invalid),
        }
        while matches!(self.peek(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
        {
            self.pos += 1;
        }
        Ok(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn member(&mut self) -> Result<Member, Invalid> {
        if self.eat(b'(') {
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    self.parameters()?;
                    return Ok(Member::InnerList(items));
                }
                items.push(self.bare()?);
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return Err(Invalid);
                }
            }
        }
        let item = self.bare()?;
        self.parameters()?;
        Ok(Member::Item(item))
    }

    fn parameters(&mut self) -> Result<(), Invalid> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare()?;
            }
        }
        Ok(())
    }

    fn bare(&mut self) -> Result<Bare, Invalid> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => Ok(self.token()),
            Some(b':') => self.bytes(),
            Some(b'?') => self.boolean(),
            _ => Err(Invalid),
        }
    }

    fn number(&mut self) -> Result<Bare, Invalid> {
        let negative = self.eat(b'-');
        let start = self.pos;
        let mut dot = None;
        while let Some(b) = self.peek() {
            if b.is_ascii_digit() {
                self.pos += 1;
            } else if b == b'.' && dot.is_none() {
                dot = Some(self.pos);
                self.pos += 1;
            } else {
                break;
            }
            let len = self.pos - start;
            if (dot.is_none() && len > 15) || (dot.is_some() && len > 16) {
                return Err(Invalid);
            }
        }
        let digits = &self.input[start..self.pos];
        match dot {
            None => {
                if digits.is_empty() {
                    return Err(Invalid);
                }
                let n: i64 = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(Invalid)?;
                Ok(Bare::Integer(if negative { -n } else { n }))
            }
            Some(at) => {
                let int_len = at - start;
                let frac_len = self.pos - at - 1;
                if int_len == 0 || int_len > 12 || frac_len == 0 || frac_len > 3 {
                    return Err(Invalid);
                }
                Ok(Bare::Decimal)
            }
        }
    }

    fn string(&mut self) -> Result<Bare, Invalid> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(Invalid),
                Some(b'"') => return Ok(Bare::String(out)),
                Some(b'\\') => match self.next() {
                    Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => return Err(Invalid),
                },
                Some(c @ 0x20..=0x7e) => out.push(char::from(c)),
                Some(_) => return Err(Invalid),
            }
        }
    }

    fn token(&mut self) -> Bare {
        let start = self.pos;
        self.pos += 1;
        while matches!(self.peek(), Some(b) if super::head::is_tchar(b) || b == b':' || b == b'/') {
            self.pos += 1;
        }
        Bare::Token(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn bytes(&mut self) -> Result<Bare, Invalid> {
        self.pos += 1;
        loop {
            match self.next() {
                Some(b':') => return Ok(Bare::Bytes),
                Some(b) if b.is_ascii_alphanumeric() || b"+/=".contains(&b) => {}
                _ => return Err(Invalid),
            }
        }
    }

    fn boolean(&mut self) -> Result<Bare, Invalid> {
        self.pos += 1;
        match self.next() {
            Some(b'0') => Ok(Bare::Boolean(false)),
            Some(b'1') => Ok(Bare::Boolean(true)),
            _ => Err(Invalid),
        }
    }
}

/// Directives taking no argument (`no-store`, which a dictionary writes as Boolean true).
const FLAGS: [&str; 7] = [
    "public",
    "no-store",
    "no-transform",
    "must-revalidate",
    "proxy-revalidate",
    "must-understand",
    "immutable",
];

/// Directives whose argument is delta-seconds (an Integer in a dictionary).
const SECONDS: [&str; 4] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// A Cache-Control quoted-string of `text`.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One dictionary member as a Cache-Control directive: `Ok(None)` when it says nothing
/// cuttle reads (an extension directive, or a flag set to false); `Err` when a known
/// directive has a value of the wrong type.
fn directive(name: &str, member: &Member) -> Result<Option<String>, Invalid> {
    let flag = |b: &Bare| match b {
        Bare::Boolean(true) => Ok(Some(name.to_string())),
        Bare::Boolean(false) => Ok(None),
        _ => Err(Invalid),
    };
    if FLAGS.contains(&name) {
        return match member {
            Member::Item(b) => flag(b),
            Member::InnerList(_) => Err(Invalid),
        };
    }
    if SECONDS.contains(&name) {
        return match member {
            Member::Item(Bare::Integer(n)) if *n >= 0 => Ok(Some(format!("{name}={n}"))),
            _ => Err(Invalid),
        };
    }
    if name == "no-cache" || name == "private" {
        // Unqualified as a Boolean; with field names as a String or an Inner List of them.
        return match member {
            Member::Item(Bare::String(fields)) => Ok(Some(format!("{name}={}", quoted(fields)))),
            Member::Item(b) => flag(b),
            Member::InnerList(items) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Bare::String(n) | Bare::Token(n) => names.push(n.as_str()),
                        _ => return Err(Invalid),
                    }
                }
                Ok(Some(format!("{name}={}", quoted(&names.join(", ")))))
            }
        };
    }
    Ok(None)
}

/// The directives of one targeted field's value (its lines joined with ", "), in
/// Cache-Control syntax; `None` when the field is empty or invalid, and must be ignored.
pub fn directives_of(value: &[u8]) -> Option<String> {
    let members = Parser {
        input: value,
        pos: 0,
    }
    .dictionary()
    .ok()?;
    if members.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (name, member) in &members {
        if let Some(d) = directive(name, member).ok()? {
            out.push(d);
        }
    }
    Some(out.join(", "))
}

/// The first field of `targets` (in order) present in `headers` with a valid, non-empty
/// value, as [`directives_of`] gives it.
pub fn select<S: AsRef<str>>(headers: &HeaderMap, targets: &[S]) -> Option<String> {
    targets.iter().find_map(|name| {
        let mut lines = headers.get_all(name.as_ref()).iter().peekable();
        lines.peek()?;
        // Field lines combine into one value (RFC 8941 §4.2).
        let joined = lines
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b", "[..]);
        directives_of(&joined)
    })
}

/// What cuttle does with targeted fields for one upstream response.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a, S> {
    /// The configured fields, highest precedence first; empty: none.
    pub targets: &'a [S],
    /// The request came in on an accelerator port (only those obey targeted fields).
    pub accelerated: bool,
    /// Remove the configured fields from the response (RFC 9213 §3 allows it).
    pub remove: bool,
}

/// Prepares a response head from upstream: drops any [`INTERNAL_FIELD`] it came with (only
/// cuttle writes it), then, for an accelerated request, records the targeted field in
/// force and, when asked, removes the configured fields.
pub fn intake<S: AsRef<str>>(headers: &mut HeaderMap, how: Intake<'_, S>) {
    headers.remove(INTERNAL);
    if !how.accelerated || how.targets.is_empty() {
        return;
    }
    if let Some(text) = select(headers, how.targets) {
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.insert(INTERNAL, v);
        }
    }
    if how.remove {
        for name in how.targets {
            headers.remove(name.as_ref());
        }
    }
}

/// The head the caching rules read: `headers` itself, or, when a targeted field is in force,
/// a copy whose Cache-Control is that field's directives and which has no Expires or
/// Pragma (RFC 9213 §2.1: the targeted field is used instead of them).
pub fn effective(headers: &HeaderMap) -> Cow<'_, HeaderMap> {
    let Some(recorded) = headers.get(INTERNAL) else {
        return Cow::Borrowed(headers);
    };
    let mut view = headers.clone();
    view.insert(CACHE_CONTROL, recorded.clone());
    view.remove(EXPIRES);
    view.remove(PRAGMA);
    view.remove(INTERNAL);
    Cow::Owned(view)
}

/// Removes cuttle's record of the targeted field from a head about to leave cuttle.
pub fn remove_internal(headers: &mut HeaderMap) {
    headers.remove(INTERNAL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::h;

    fn d(text: &str) -> Option<String> {
        directives_of(text.as_bytes())
    }

    #[test]
    fn dictionary_members_become_cache_control_directives() {
        assert_eq!(d("max-age=3600").as_deref(), Some("max-age=3600"));
        assert_eq!(
            d("no-store, must-revalidate=?1, public=?0").as_deref(),
            Some("no-store, must-revalidate")
        );
        assert_eq!(d("foobar, max-age=60").as_deref(), Some("max-age=60"));
        assert_eq!(d("foo").as_deref(), Some(""));
        assert_eq!(
            d("max-age=99999999999").as_deref(),
            Some("max-age=99999999999")
        );
        assert_eq!(
            d(r#"private="set-cookie", no-cache=("a" b)"#).as_deref(),
            Some(r#"private="set-cookie", no-cache="a, b""#)
        );
        // Parameters are ignored; a later duplicate wins.
        assert_eq!(
            d("max-age=5;x=1, max-age=10").as_deref(),
            Some("max-age=10")
        );
        assert_eq!(
            d("  max-age=1 ,\tno-cache  ").as_deref(),
            Some("max-age=1, no-cache")
        );
    }

    #[test]
    fn every_structured_field_type_is_understood() {
        for (text, want) in [
            ("foo=:aGVsbG8=:, max-age=1", "max-age=1"),
            ("foo=(a b;p=1 \"s\");q, max-age=1", "max-age=1"),
            ("foo=(), max-age=1", "max-age=1"),
            ("*foo=tok/en:x, max-age=1", "max-age=1"),
            ("foo=1.5, foo2=-3, max-age=1", "max-age=1"),
            ("foo=\"a \\\"b\\\"\", max-age=1", "max-age=1"),
            ("max-age=1\t,\tno-store", "max-age=1, no-store"),
            ("no-store;a;b=?0", "no-store"),
        ] {
            assert_eq!(d(text).as_deref(), Some(want), "{text:?}");
        }
    }

    #[test]
    fn invalid_or_empty_fields_are_ignored() {
        for text in [
            "",
            "   ",
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age=1.5",
            "max-age=-1",
            "MaX-aGe=3600",
            "max-age =100",
            "max-age= 100",
            "max-age=1,",
            "no-store=3",
            "max-age=1234567890123456",
            "private=:AAA",
            "x=\"unterminated",
            "x=\"bad \\n escape\"",
            "x=?2",
            "x=(a",
            "x=(a,b)",
            "x=1.",
            "x=1.2345",
            "x=:not base64!:",
            "\tmax-age=1",
            "max-age=1;",
            "max-age=1,,no-store",
            "max-age=1 no-store",
            "private=(1)",
        ] {
            assert_eq!(d(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_config_refuses_the_internal_field() {
        let loaded = crate::config::load_str_sandboxed(
            &format!("targeted_cache_control {INTERNAL_FIELD}\n"),
            "squid.conf",
        );
        assert!(loaded.has_errors(), "{:?}", loaded.diagnostics);
    }

    #[test]
    fn first_valid_field_of_the_list_wins() {
        let heads = h(&[
            ("cuttle-cache-control", "max-age=\"bad\""),
            ("cdn-cache-control", "max-age=60"),
            ("cdn-cache-control", "no-cache"),
        ]);
        let list = ["cuttle-cache-control", "cdn-cache-control"];
        assert_eq!(
            select(&heads, &list).as_deref(),
            Some("max-age=60, no-cache")
        );
        assert_eq!(select(&heads, &["other"]), None);
    }

    #[test]
    fn intake_records_and_the_view_replaces_cache_control_and_expires() {
        let mut heads = h(&[
            ("cache-control", "no-store"),
            ("expires", "0"),
            ("pragma", "no-cache"),
            ("cdn-cache-control", "max-age=600"),
            (INTERNAL_FIELD, "forged"),
        ]);
        let targets = ["cdn-cache-control"];
        intake(
            &mut heads,
            Intake {
                targets: &targets,
                accelerated: true,
                remove: false,
            },
        );
        assert_eq!(heads[INTERNAL_FIELD], "max-age=600");
        assert_eq!(heads["cdn-cache-control"], "max-age=600");
        let view = effective(&heads);
        assert_eq!(view[CACHE_CONTROL], "max-age=600");
        assert!(!view.contains_key(EXPIRES));
        assert!(!view.contains_key(PRAGMA));
        assert!(!view.contains_key(INTERNAL_FIELD));

        intake(
            &mut heads,
            Intake {
                targets: &targets,
                accelerated: true,
                remove: true,
            },
        );
        assert!(!heads.contains_key("cdn-cache-control"));
        assert_eq!(heads[INTERNAL_FIELD], "max-age=600");
    }

    #[test]
    fn forward_traffic_keeps_cache_control_and_loses_a_forged_record() {
        let mut heads = h(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
            (INTERNAL_FIELD, "max-age=600"),
        ]);
        intake(
            &mut heads,
            Intake {
                targets: &["cdn-cache-control"],
                accelerated: false,
                remove: true,
            },
        );
        assert!(!heads.contains_key(INTERNAL_FIELD));
        assert_eq!(heads["cdn-cache-control"], "max-age=600");
        assert!(matches!(effective(&heads), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panicking_and_give_cache_control(value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Some(text) = directives_of(&value) {
                // What is recorded must be a valid field value, as intake stores it.
                proptest::prop_assert!(HeaderValue::from_str(&text).is_ok(), "{text:?}");
            }
        }

        #[test]
        fn dictionary_like_text_parses_without_panicking(value in "[a-z*?=\"(): ;,.0-9\\-]{0,40}") {
            let _ = directives_of(value.as_bytes());
        }
    }
}
