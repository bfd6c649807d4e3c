//! The response head as the store keeps it ("HTTP/1.1 200 OK\r\nName: value\r\n...\r\n\r\n"):
//! a strict, bounded parser and its writer, and the hop-by-hop field removal used both when
//! storing and when forwarding.

use std::fmt;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING,
};
use http::StatusCode;

/// Largest header block accepted (Squid's `reply_header_max_size` default, 64 KB).
pub const MAX_HEAD_LEN: usize = 64 * 1024;

/// Most field lines accepted in one block.
pub const MAX_FIELDS: usize = 512;

/// Why a stored header block did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD_LEN`].
    TooLarge(usize),
    /// More than [`MAX_FIELDS`] field lines.
    TooManyFields,
    /// Does not end with the empty line (CRLF CRLF), or has bytes after it.
    Unterminated,
    /// The status line is not `HTTP/d.d SSS[ reason]`.
    StatusLine,
    /// Field line `line` (1 = the first after the status line) is malformed.
    Field { line: usize, reason: &'static str },
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge(n) => write!(f, "header block of {n} bytes exceeds {MAX_HEAD_LEN}"),
            HeadError::TooManyFields => write!(f, "more than {MAX_FIELDS} header fields"),
            HeadError::Unterminated => f.write_str("header block does not end with an empty line"),
            HeadError::StatusLine => f.write_str("malformed status line"),
            HeadError::Field { line, reason } => write!(f, "header field {line}: {reason}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_status_line(line: &[u8]) -> Result<StatusCode, HeadError> {
    let rest = line.strip_prefix(b"HTTP/").ok_or(HeadError::StatusLine)?;
    let (version, rest) = rest.split_at_checked(3).ok_or(HeadError::StatusLine)?;
    if !(version[0].is_ascii_digit() && version[1] == b'.' && version[2].is_ascii_digit()) {
        return Err(HeadError::StatusLine);
    }
    let rest = rest.strip_prefix(b" ").ok_or(HeadError::StatusLine)?;
    let (code, reason) = rest.split_at_checked(3).ok_or(HeadError::StatusLine)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::StatusLine);
    }
    // "SSS" alone is tolerated (RFC 9112 §4: recipients should accept a missing reason).
    if !reason.is_empty() {
        let reason = reason.strip_prefix(b" ").ok_or(HeadError::StatusLine)?;
        if reason
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(HeadError::StatusLine);
        }
    }
    StatusCode::from_bytes(code).map_err(|_| HeadError::StatusLine)
}

/// Parses a stored response head into its status and fields.
///
/// Strict: CRLF line ends only, no obsolete line folding, no whitespace
/// before the colon, field names must be tokens and values free of control
/// characters; the block must end with the empty line and hold nothing after
/// it. Never panics; sizes are bounded by [`MAX_HEAD_LEN`] and [`MAX_FIELDS`].
/// The reason phrase is not kept.
pub fn parse_head(block: &[u8]) -> Result<(StatusCode, HeaderMap), HeadError> {
    if block.len() > MAX_HEAD_LEN {
        return Err(HeadError::TooLarge(block.len()));
    }
    let text = block
        .strip_suffix(b"\r\n\r\n")
        .ok_or(HeadError::Unterminated)?;
    let mut lines = crlf_lines(text);
    let status_line = lines.next().unwrap_or_default();
    if status_line.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(HeadError::StatusLine);
    }
    let status = parse_status_line(status_line)?;
    Ok((status, parse_field_lines(lines)?))
}

/// Parses a bare block of field lines, as HTCP carries request and
/// response headers ("Name: value\r\n" each, no status line; a final
/// empty line and a missing last CRLF are accepted, an empty block is no
/// fields). Same strictness
/// and bounds as [`parse_head`]; line 1 is the first field line.
pub fn parse_fields(block: &[u8]) -> Result<HeaderMap, HeadError> {
    if block.len() > MAX_HEAD_LEN {
        return Err(HeadError::TooLarge(block.len()));
    }
    if block.is_empty() || block == b"\r\n" {
        return Ok(HeaderMap::new());
    }
    let text = block.strip_suffix(b"\r\n\r\n").unwrap_or(block);
    // Lenient on input: the last line's CRLF may be missing.
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    parse_field_lines(crlf_lines(text))
}

/// Field lines (without their CRLF); errors number them from 1.
fn parse_field_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<HeaderMap, HeadError> {
    let mut headers = HeaderMap::new();
    for (i, line) in lines.enumerate() {
        let n = i + 1;
        if n > MAX_FIELDS {
            return Err(HeadError::TooManyFields);
        }
        let field = |reason| HeadError::Field { line: n, reason };
        if line.contains(&b'\n') {
            return Err(field("bare LF"));
        }
        if line.contains(&b'\r') {
            return Err(field("bare CR"));
        }
        if line.is_empty() {
            return Err(field("empty line inside the block"));
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(field("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(field("no colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(field("field name is not a token"));
        }
        let name = HeaderName::from_bytes(name).map_err(|_| field("bad field name"))?;
        let value = HeaderValue::from_bytes(trim_ows(value))
            .map_err(|_| field("control character in value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Writes `headers` as a bare block of field lines ("name: value\r\n"
/// each, no empty line): the inverse of [`parse_fields`].
pub fn write_fields(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() * 32);
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The lines of `text` split at each CRLF (a lone CR or LF stays inside its line).
fn crlf_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                rest = r.get(i + 2..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Writes `status` and `headers` as a stored response head: an HTTP/1.1
/// status line with the canonical reason phrase, one line per field value
/// (names in lower case, values verbatim), and the empty line.
/// [`parse_head`] gives back the same status and fields, provided each value
/// has no leading or trailing whitespace (as RFC 9110 field values never do)
/// and the result is within [`MAX_HEAD_LEN`] and [`MAX_FIELDS`].
pub fn write_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + headers.len() * 32);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&write_fields(headers));
    out.extend_from_slice(b"\r\n");
    out
}

/// Trims leading and trailing whitespace off every field value (as
/// [`parse_head`] does), so that [`write_head`] and [`parse_head`] agree.
pub fn trim_values(headers: &mut HeaderMap) {
    let untrimmed = headers
        .values()
        .any(|v| trim_ows(v.as_bytes()).len() != v.as_bytes().len());
    if !untrimmed {
        return;
    }
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let v =
            HeaderValue::from_bytes(trim_ows(value.as_bytes())).unwrap_or_else(|_| value.clone());
        out.append(name.clone(), v);
    }
    *headers = out;
}

/// The hop-by-hop fields removed whatever `Connection` says (RFC 9110 §7.6.1,
/// plus the non-standard `Proxy-Connection`).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is one of the fixed hop-by-hop fields ([`HOP_BY_HOP`]).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Removes the hop-by-hop fields: those listed in `Connection` (and
/// `Proxy-Connection`) and every field of [`HOP_BY_HOP`]. A `Content-Length`
/// received with `Transfer-Encoding` goes too: it did not frame the body
/// (RFC 9112 §6.3: Transfer-Encoding overrides it, and an intermediary
/// must remove it before forwarding), and kept once Transfer-Encoding is
/// gone it would frame the message for the next recipient, a smuggling
/// vector. Use it on a response before storing it and on any message
/// before forwarding it.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
    let mut listed: Vec<HeaderName> = Vec::new();
    for name in [CONNECTION, HeaderName::from_static("proxy-connection")] {
        for value in headers.get_all(&name) {
            for token in value.as_bytes().split(|&b| b == b',') {
                if let Ok(n) = HeaderName::from_bytes(trim_ows(token)) {
                    listed.push(n);
                }
            }
        }
    }
    for name in listed {
        headers.remove(&name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Frames a response whose whole body is at hand (a stored one) by that
/// body: `Content-Length` is its real length, whatever the stored head
/// says, and no `Transfer-Encoding`. Statuses that never carry content
/// (1xx, 204, 304) get no `Content-Length`. So a head can never promise a
/// length other than the bytes that follow it.
pub fn frame_by_body(headers: &mut HeaderMap, status: StatusCode, body_len: u64) {
    headers.remove(TRANSFER_ENCODING);
    headers.remove(CONTENT_LENGTH);
    let no_content = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !no_content {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body_len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::h;

    #[test]
    fn parses_a_stored_block() {
        let block = b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nCache-Control:  max-age=60 \r\nVary: a\r\nVary: b\r\n\r\n";
        let (status, headers) = parse_head(block).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers.get("date").unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(headers.get("cache-control").unwrap(), "max-age=60");
        let vary: Vec<_> = headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["a", "b"]);
    }

    #[test]
    fn status_line_forms() {
        assert_eq!(
            parse_head(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap().0,
            404
        );
        assert_eq!(parse_head(b"HTTP/1.1 299\r\n\r\n").unwrap().0, 299);
        assert_eq!(parse_head(b"HTTP/1.1 200 \r\n\r\n").unwrap().0, 200);
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/11 200 OK\r\n\r\n",
            b"HTTX/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1 099 OK\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
            b"HTTP/1.1 200OK\r\n\r\n",
            b"",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rejects_what_is_not_strict() {
        let cases: &[(&[u8], &str)] = &[
            (b"HTTP/1.1 200 OK\r\nA: b\r\n", "unterminated"),
            (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody", "trailing bytes"),
            (b"HTTP/1.1 200 OK\r\nA: b\n\r\n", "bare LF"),
            (b"HTTP/1.1 200 OK\nA: b\r\n\r\n", "bare LF after status"),
            (b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", "bare CR"),
            (b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", "space before colon"),
            (b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "obs-fold"),
            (b"HTTP/1.1 200 OK\r\nAb\r\n\r\n", "no colon"),
            (b"HTTP/1.1 200 OK\r\n: b\r\n\r\n", "empty name"),
            (b"HTTP/1.1 200 OK\r\nA: b\x00\r\n\r\n", "NUL"),
            (
                b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nB: c\r\n\r\n",
                "empty line inside",
            ),
        ];
        for (block, why) in cases {
            assert!(parse_head(block).is_err(), "{why}");
        }
    }

    #[test]
    fn bounds_sizes() {
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_LEN));
        big.extend_from_slice(b": b\r\n\r\n");
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge(big.len())));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_FIELDS {
            many.extend_from_slice(b"a: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooManyFields));
    }

    #[test]
    fn obs_text_survives() {
        let (_, headers) = parse_head(b"HTTP/1.1 200 OK\r\nX: caf\xe9\r\n\r\n").unwrap();
        assert_eq!(headers.get("x").unwrap().as_bytes(), b"caf\xe9");
    }

    #[test]
    fn writes_and_round_trips() {
        let headers = h(&[
            ("Content-Type", "text/html"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]);
        let block = write_head(StatusCode::NOT_FOUND, &headers);
        assert!(block.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(block.ends_with(b"\r\n\r\n"));
        let (status, back) = parse_head(&block).unwrap();
        assert_eq!((status, back), (StatusCode::NOT_FOUND, headers));
        let odd = write_head(StatusCode::from_u16(599).unwrap(), &HeaderMap::new());
        assert_eq!(odd, b"HTTP/1.1 599 \r\n\r\n");
        assert_eq!(parse_head(&odd).unwrap().0, 599);
    }

    #[test]
    fn hop_by_hop_fields_go() {
        let mut headers = h(&[
            ("Connection", "close, X-Secret"),
            ("Connection", "x-other"),
            ("X-Secret", "1"),
            ("X-Other", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive, x-pc"),
            ("X-Pc", "1"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Trailer", "Expires"),
            ("Upgrade", "h2c"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Content-Type", "text/plain"),
            ("Cache-Control", "max-age=1"),
        ]);
        remove_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type", "cache-control"]);
    }

    #[test]
    fn a_content_length_beside_transfer_encoding_goes_with_it() {
        let mut both = h(&[
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "text/plain"),
        ]);
        remove_hop_by_hop(&mut both);
        let left: Vec<_> = both.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
        let mut alone = h(&[("Content-Length", "5")]);
        remove_hop_by_hop(&mut alone);
        assert_eq!(alone.get("content-length").unwrap(), "5");
    }

    #[test]
    fn a_body_at_hand_frames_its_response() {
        let mut headers = h(&[
            ("Content-Length", "5"),
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
            ("ETag", "\"a\""),
        ]);
        frame_by_body(&mut headers, StatusCode::OK, 93);
        assert_eq!(headers, h(&[("ETag", "\"a\""), ("Content-Length", "93")]));
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            let mut headers = h(&[("Content-Length", "5")]);
            frame_by_body(&mut headers, status, 0);
            assert!(headers.is_empty(), "{status}");
        }
    }

    #[test]
    fn bare_field_blocks_parse_and_write_back() {
        let h = parse_fields(b"Cache-Control: max-age=0\r\nAccept-Language:  en \r\n").unwrap();
        assert_eq!(h.get("cache-control").unwrap(), "max-age=0");
        assert_eq!(h.get("accept-language").unwrap(), "en");
        assert_eq!(parse_fields(&write_fields(&h)).unwrap(), h);
        assert_eq!(
            write_fields(&h),
            b"cache-control: max-age=0\r\naccept-language: en\r\n"
        );
        assert!(parse_fields(b"").unwrap().is_empty());
        assert!(parse_fields(b"\r\n").unwrap().is_empty());
        assert_eq!(parse_fields(b"A: 1\r\n\r\n").unwrap().len(), 1);
        assert_eq!(parse_fields(b"A: 1").unwrap().len(), 1);
        assert_eq!(
            parse_fields(b"A: 1\r\nno colon\r\n"),
            Err(HeadError::Field {
                line: 2,
                reason: "no colon"
            })
        );
        assert!(parse_fields(b"A: 1\r\n\r\nB: 2\r\n").is_err());
    }
}
