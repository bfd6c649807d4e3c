//! One logged transaction (`Entry`) and the formatter for Squid's native `squid` logformat, byte for byte as Squid 5.7 writes it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::codes::{Hierarchy, ResultCode, ResultTag};

/// Squid's `MAX_URL`: a logged URL is cut to one byte less.
const MAX_URL: usize = 8192;

/// One transaction, as the native access.log line describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the transaction ended (the line's time stamp, `%ts.%03tu`).
    pub end: SystemTime,
    /// How long it took (`%6tr`, milliseconds); 0 for ICP/HTCP.
    pub elapsed: Duration,
    /// The client's address (`%>a`); `None` prints `-`. An IPv4-mapped IPv6
    /// address prints as IPv4, as Squid does.
    pub client: Option<IpAddr>,
    /// `%Ss`.
    pub result: ResultCode,
    /// HTTP status sent to the client (`%03>Hs`); 0 prints `000` (UDP lines,
    /// no reply).
    pub status: u16,
    /// Bytes sent to the client, headers included (`%<st`); for ICP the
    /// reply datagram's size, for HTCP 0.
    pub size: u64,
    /// Request method as received (`GET`, `ICP_QUERY`, `HTCP_TST`, ...);
    /// empty prints `-`.
    pub method: String,
    /// Request URL as received (absolute URL, or `host:port` for CONNECT);
    /// empty prints `-`. The formatter applies strip_query_terms and the
    /// control-character escaping; the caller passes it raw.
    pub url: String,
    /// Authenticated user (`%[un`); `None` or empty prints `-`.
    pub user: Option<String>,
    /// `%Sh/%<a`.
    pub hierarchy: Hierarchy,
    /// The reply's Content-Type header value as received (`%mt`): Squid
    /// logs it up to the first `;`, space or tab; `None` or empty prints `-`.
    pub content_type: Option<String>,
}

impl Default for Entry {
    /// A blank `NONE_NONE/000` line at the epoch; fill in what is known.
    fn default() -> Self {
        Entry {
            end: UNIX_EPOCH,
            elapsed: Duration::ZERO,
            client: None,
            result: ResultCode::new(ResultTag::None),
            status: 0,
            size: 0,
            method: String::new(),
            url: String::new(),
            user: None,
            hierarchy: Hierarchy::none(),
            content_type: None,
        }
    }
}

impl Entry {
    /// This entry as one native `squid` line, without the trailing newline.
    pub fn to_native_line(&self, options: &FormatOptions) -> String {
        let mut out = String::with_capacity(160 + self.url.len());
        write_native(self, options, &mut out);
        out
    }
}

/// Settings from squid.conf that change what the native format prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatOptions {
    /// `strip_query_terms` (default on): drop what follows `?` in the URL,
    /// keeping the `?` (not for CONNECT or `urn:` URLs).
    pub strip_query_terms: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            strip_query_terms: true,
        }
    }
}

/// Appends `entry` to `out` in Squid's native format
/// (`%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`), without
/// the trailing newline.
pub fn write_native(entry: &Entry, options: &FormatOptions, out: &mut String) {
    // Plain pushes rather than `write!`: every request and every ICP/HTCP
    // answer writes a line, and core::fmt's padding machinery was the
    // largest user-space cost of an ICP answer.
    // Time: seconds `%9ld`, milliseconds truncated from microseconds.
    let since = entry
        .end
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    push_number(out, since.as_secs(), 9, ' ');
    out.push('.');
    // Truncated, as Squid does with tv_usec / 1000.
    push_number(out, u64::from(since.subsec_millis()), 3, '0');
    out.push(' ');
    let elapsed = u64::try_from(entry.elapsed.as_millis()).unwrap_or(u64::MAX);
    push_number(out, elapsed, 6, ' ');
    out.push(' ');
    match entry.client {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => push_ipv4(out, v4),
            None => {
                let _ = write!(out, "{v6}");
            }
        },
        Some(IpAddr::V4(v4)) => push_ipv4(out, v4),
        None => out.push('-'),
    }
    out.push(' ');
    entry.result.push_to(out);
    out.push('/');
    push_number(out, u64::from(entry.status), 3, '0');
    out.push(' ');
    push_number(out, entry.size, 0, ' ');
    out.push(' ');
    push_token(out, &entry.method);
    out.push(' ');
    push_url(out, &entry.method, &entry.url, options);
    out.push(' ');
    match entry.user.as_deref().filter(|u| !u.is_empty()) {
        Some(user) => push_username(out, user),
        None => out.push('-'),
    }
    out.push(' ');
    entry.hierarchy.push_to(out);
    out.push(' ');
    let media_type = entry
        .content_type
        .as_deref()
        .map(|t| t.split([';', ' ', '\t']).next().unwrap_or(""))
        .unwrap_or("");
    push_token(out, media_type);
}

/// `n` in decimal, right-aligned to `width` with `pad` (`{:9}`, `{:03}`).
fn push_number(out: &mut String, n: u64, width: usize, pad: char) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(n);
    for _ in text.len()..width {
        out.push(pad);
    }
    out.push_str(text);
}

fn push_ipv4(out: &mut String, ip: std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// A field Squid prints raw (method, media type); `-` when empty. Bytes
/// that would break the line (controls, DEL) are %-escaped: they cannot
/// occur in valid HTTP, so this never changes a line Squid would write.
fn push_token(out: &mut String, text: &str) {
    if text.is_empty() {
        out.push('-');
        return;
    }
    if !text.bytes().any(|b| b.is_ascii_control()) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        if c.is_ascii_control() {
            let _ = write!(out, "%{:02X}", u32::from(c));
        } else {
            out.push(c);
        }
    }
}

/// What a cache manager password is logged as.
pub const MASKED_PASSWORD: &str = "XXXXXXXX";

/// `url` with the cache manager password of a manager URL
/// (`cache_object://HOST/NAME@PASSWORD`, `SCHEME://HOST/squid-internal-mgr/NAME@PASSWORD`,
/// the password running to `?` or `#`) replaced by [`MASKED_PASSWORD`].
/// Squid logs it in the clear; a log is read by more people than the
/// manager's password is meant for.
pub fn mask_manager_password(url: &str) -> Cow<'_, str> {
    const MGR: &str = "/squid-internal-mgr/";
    // Byte scans rather than str patterns: every logged line passes here,
    // and `split_once("://")`'s substring searcher alone cost about a
    // third of an ICP line's formatting.
    let bytes = url.as_bytes();
    let mut from = 0;
    let sep = loop {
        let Some(colon) = bytes[from..].iter().position(|&b| b == b':') else {
            return Cow::Borrowed(url);
        };
        let at = from + colon;
        if bytes[at + 1..].starts_with(b"//") {
            break at;
        }
        from = at + 1;
    };
    let (scheme, rest) = (&url[..sep], &url[sep + 3..]);
    let Some(path_start) = rest.bytes().position(|b| matches!(b, b'/' | b'?' | b'#')) else {
        return Cow::Borrowed(url);
    };
    let path = &rest[path_start..];
    let page_start = if scheme.eq_ignore_ascii_case("cache_object")
        || scheme.eq_ignore_ascii_case("cache-object")
    {
        1
    } else if path
        .get(..MGR.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(MGR))
    {
        MGR.len()
    } else {
        return Cow::Borrowed(url);
    };
    let Some(page) = path.get(page_start..).filter(|_| path.starts_with('/')) else {
        return Cow::Borrowed(url);
    };
    let page = &page[..page.find(['?', '#']).unwrap_or(page.len())];
    let Some(at) = page.find('@').filter(|at| at + 1 < page.len()) else {
        return Cow::Borrowed(url);
    };
    let password_start = url.len() - rest.len() + path_start + page_start + at + 1;
    let password_end = password_start + (page.len() - at - 1);
    let mut masked = String::with_capacity(url.len());
    masked.push_str(&url[..password_start]);
    masked.push_str(MASKED_PASSWORD);
    masked.push_str(&url[password_end..]);
    Cow::Owned(masked)
}

/// The URL field: the manager password masked, strip_query_terms, CONNECT as `host:port`, then Squid's
/// escaping when the URL holds control characters, cut to `MAX_URL - 1`.
fn push_url(out: &mut String, method: &str, url: &str, options: &FormatOptions) {
    if url.is_empty() {
        out.push('-');
        return;
    }
    let connect = method == "CONNECT";
    let masked = mask_manager_password(url);
    let mut url = truncate(&masked, MAX_URL - 1);
    let authority;
    if connect {
        authority = connect_authority(url);
        url = &authority;
    }
    let is_urn = url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("urn:"));
    if options.strip_query_terms && !connect && !is_urn {
        if let Some(q) = url.find('?') {
            url = &url[..=q];
        }
    }
    if !has_control(url) {
        out.push_str(url);
        return;
    }
    // Squid's rfc1738_escape_unescaped over the whole URL: letters and
    // digits stay; the RFC 1738 unsafe characters, space, controls, DEL and
    // every non-ASCII byte become %XX; `%` and the reserved characters stay.
    let start = out.len();
    for &b in url.as_bytes() {
        let escape = !b.is_ascii_alphanumeric()
            && (b <= b' ' || b >= 0x7f || b"<>\"#{}|\\^~[]`'".contains(&b));
        if escape {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    // The escaped text is ASCII: cutting it cannot split a character.
    out.truncate(start + (out.len() - start).min(MAX_URL - 1));
}

/// Squid's `stringHasCntl`: C0 controls, DEL and the C1 range 0x80-0x9F
/// (bytes, so a UTF-8 character with such a byte counts too).
fn has_control(url: &str) -> bool {
    url.bytes().any(|b| b <= 0x1f || (0x7f..=0x9f).contains(&b))
}

/// `url` cut to at most `max` bytes, at a character boundary.
fn truncate(url: &str, max: usize) -> &str {
    if url.len() <= max {
        return url;
    }
    let mut end = max;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    &url[..end]
}

/// A CONNECT target as Squid logs it: `host:port`. Given an absolute URL
/// instead of the request's authority form, keeps the authority (without
/// user info) and adds the default port 443 when none is given.
fn connect_authority(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let has_port = match host_port.rfind(']') {
        Some(close) => host_port[close..].contains(':'),
        None => host_port.contains(':'),
    };
    if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:443")
    }
}

/// Squid's `QuoteUrlEncodeUsername` (its MIME-blob quoting): CR and LF as
/// `\r` `\n`, backslash doubled, controls, DEL, non-ASCII bytes, `%`, `[`
/// and `]` as lower-case `%xx`; everything else (space included) raw.
fn push_username(out: &mut String, user: &str) {
    for &b in user.as_bytes() {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            b if b <= 0x1f || b >= 0x7f || matches!(b, b'%' | b'[' | b']') => {
                let _ = write!(out, "%{b:02x}");
            }
            b => out.push(char::from(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::codes::HierarchyCode;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    fn base() -> Entry {
        Entry {
            end: at(1795371307, 250_999),
            elapsed: Duration::from_micros(1_999),
            client: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            result: ResultTag::TcpMiss.into(),
            status: 200,
            size: 5696,
            method: "GET".into(),
            url: "http://127.0.0.1:28180/obj/5k".into(),
            user: None,
            hierarchy: Hierarchy::new(HierarchyCode::HierDirect, Some("127.0.0.1")),
            content_type: Some("application/octet-stream".into()),
        }
    }

    fn line(e: &Entry) -> String {
        e.to_native_line(&FormatOptions::default())
    }

    #[test]
    fn milliseconds_are_truncated_not_rounded() {
        assert_eq!(
            line(&base()),
            "1795371307.250      1 127.0.0.1 TCP_MISS/200 5696 GET http://127.0.0.1:28180/obj/5k - HIER_DIRECT/127.0.0.1 application/octet-stream"
        );
        let e = Entry {
            end: at(1, 999_999),
            elapsed: Duration::from_millis(1_234_567),
            ..base()
        };
        assert!(
            line(&e).starts_with("        1.999 1234567 "),
            "{}",
            line(&e)
        );
    }

    #[test]
    fn missing_fields_print_dashes_and_status_zero_is_000() {
        let e = Entry {
            end: at(1795371305, 369_000),
            ..Entry::default()
        };
        assert_eq!(
            line(&e),
            "1795371305.369      0 - NONE_NONE/000 0 - - - HIER_NONE/- -"
        );
        let e = Entry {
            user: Some(String::new()),
            content_type: Some("; charset=x".into()),
            ..e
        };
        assert!(line(&e).ends_with(" - - - HIER_NONE/- -"));
    }

    #[test]
    fn query_terms_are_stripped_keeping_the_question_mark() {
        let e = Entry {
            url: "http://site2.example.test/path/58?a=1&b=2".into(),
            ..base()
        };
        assert!(line(&e).contains(" http://site2.example.test/path/58? "));
        let kept = e.to_native_line(&FormatOptions {
            strip_query_terms: false,
        });
        assert!(kept.contains(" http://site2.example.test/path/58?a=1&b=2 "));
        let urn = Entry {
            url: "urn:x-foo:bar?baz".into(),
            ..base()
        };
        assert!(line(&urn).contains(" urn:x-foo:bar?baz "));
    }

    #[test]
    fn connect_is_host_and_port() {
        let e = Entry {
            method: "CONNECT".into(),
            url: "example.com:443".into(),
            result: ResultTag::TcpTunnel.into(),
            content_type: None,
            ..base()
        };
        assert!(
            line(&e).contains(" CONNECT example.com:443 - "),
            "{}",
            line(&e)
        );
        for (given, logged) in [
            ("https://user@example.com/x?y", "example.com:443"),
            ("https://example.com:8443/", "example.com:8443"),
            ("https://[2001:db8::1]/", "[2001:db8::1]:443"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
        ] {
            let e = Entry {
                url: given.into(),
                ..e.clone()
            };
            assert!(
                line(&e).contains(&format!(" CONNECT {logged} ")),
                "{}",
                line(&e)
            );
        }
    }

    #[test]
    fn manager_passwords_are_masked() {
        let masked = |url: &str| mask_manager_password(url).into_owned();
        for (given, logged) in [
            (
                "cache_object://127.0.0.1/config@s3cret",
                "cache_object://127.0.0.1/config@XXXXXXXX",
            ),
            (
                "cache-object://h:3128/config@s3cret?x=1",
                "cache-object://h:3128/config@XXXXXXXX?x=1",
            ),
            (
                "http://cache1:3128/squid-internal-mgr/config@pw/with/slash#f",
                "http://cache1:3128/squid-internal-mgr/config@XXXXXXXX#f",
            ),
            (
                "HTTPS://u:p@cache1/Squid-Internal-Mgr/info@pw",
                "HTTPS://u:p@cache1/Squid-Internal-Mgr/info@XXXXXXXX",
            ),
            // Not a password: none given, or not a manager URL.
            ("cache_object://h/config@", "cache_object://h/config@"),
            (
                "cache_object://h/config?a=@b",
                "cache_object://h/config?a=@b",
            ),
            (
                "http://user:pw@h/x/squid-internal-mgr/a@b",
                "http://user:pw@h/x/squid-internal-mgr/a@b",
            ),
            (
                "http://h?/squid-internal-mgr/a@b",
                "http://h?/squid-internal-mgr/a@b",
            ),
            ("h:443", "h:443"),
        ] {
            assert_eq!(masked(given), logged, "{given}");
        }
        let line = Entry {
            method: "GET".into(),
            url: "http://cache1:3128/squid-internal-mgr/config@s3cret?x".into(),
            ..base()
        }
        .to_native_line(&FormatOptions::default());
        assert!(
            line.contains(" http://cache1:3128/squid-internal-mgr/config@XXXXXXXX? "),
            "{line}"
        );
    }

    #[test]
    fn control_characters_escape_the_whole_url_as_squid_does() {
        // No control character: printed raw, spaces and UTF-8 included.
        let e = Entry {
            url: "http://h/caf\u{e9} x".into(),
            ..base()
        };
        assert!(line(&e).contains(" http://h/caf\u{e9} x "));
        // A control character: rfc1738_escape_unescaped over the whole URL
        // (unsafe characters and non-ASCII too; `%` and reserved ones stay).
        let e = Entry {
            url: "http://h/a\tb c<%41>\u{e9}?q".into(),
            ..base()
        };
        assert!(
            line(&e).contains(" http://h/a%09b%20c%3C%41%3E%C3%A9? "),
            "{}",
            line(&e)
        );
        // A C1 byte inside a UTF-8 character (U+20AC is E2 82 AC) counts.
        let e = Entry {
            url: "http://h/\u{20ac}".into(),
            ..base()
        };
        assert!(line(&e).contains(" http://h/%E2%82%AC "), "{}", line(&e));
    }

    #[test]
    fn long_urls_are_cut_to_max_url() {
        let long = format!("http://h/{}", "a".repeat(10_000));
        let e = Entry {
            url: long.clone(),
            ..base()
        };
        assert!(line(&e).contains(&format!(" {} ", &long[..MAX_URL - 1])));
    }

    #[test]
    fn users_are_quoted_like_squid() {
        let e = Entry {
            user: Some("DOM\\j doe[1]%\r\n\u{e9}".into()),
            ..base()
        };
        assert!(
            line(&e).contains(" DOM\\\\j doe%5b1%5d%25\\r\\n%c3%a9 HIER_DIRECT"),
            "{}",
            line(&e)
        );
    }

    #[test]
    fn clients_print_like_squid() {
        let mapped = Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped();
        let e = Entry {
            client: Some(IpAddr::V6(mapped)),
            ..base()
        };
        assert!(line(&e).contains(" 10.1.2.3 TCP_MISS/200 "));
        let e = Entry {
            client: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ..base()
        };
        assert!(line(&e).contains(" ::1 TCP_MISS/200 "));
    }

    #[test]
    fn content_type_stops_at_parameters() {
        for raw in [
            "text/html; charset=utf-8",
            "text/html;q",
            "text/html\tx",
            "text/html x",
        ] {
            let e = Entry {
                content_type: Some(raw.into()),
                ..base()
            };
            assert!(line(&e).ends_with(" text/html"), "{raw}");
        }
    }

    #[test]
    fn line_breaking_bytes_never_reach_the_log() {
        let e = Entry {
            method: "GE\nT".into(),
            content_type: Some("a\r\nb".into()),
            url: "http://h/\n".into(),
            ..base()
        };
        let l = line(&e);
        assert!(!l.contains(['\n', '\r']), "{l}");
        assert_eq!(l.split(' ').filter(|f| !f.is_empty()).count(), 10, "{l}");
    }
}
