//! Range requests answered from a stored complete response (RFC 9110 §14):
//! parsing `Range`, fitting it to the stored body's length, and `If-Range`.
//! Pure functions; the hit path calls [`select`] only when the request has
//! a `Range` field, so a plain hit pays one header lookup for all this.

use http::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use http::{HeaderMap, HeaderValue};

use super::freshness::parse_http_date;

/// More ranges than this in one request are not worth answering piece by
/// piece (RFC 9110 §14.2 lets a server ignore such a request): the whole
/// response is sent.
pub const MAX_RANGES: usize = 64;

/// One byte-range-spec as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `first-last` (`last` absent: to the end).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// A satisfiable range of a body: both ends inclusive, `first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// Bytes in the range (at least one).
    pub fn size(&self) -> u64 {
        self.last - self.first + 1
    }

    /// `Content-Range: bytes first-last/complete`.
    pub fn content_range(&self, complete: u64) -> HeaderValue {
        let text = format!("bytes {}-{}/{complete}", self.first, self.last);
        // Digits and punctuation: always a valid value.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("bytes */0"))
    }
}

/// How to answer a ranged GET for a stored 200 of `len` body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// The whole response (200): no usable Range, an If-Range that does
    /// not hold, or ranges that overlap (together more bytes than the
    /// body: a request could otherwise make one stored byte cost many
    /// sent, RFC 9110 §14.2).
    Whole,
    /// 206 with this one range.
    Partial(ByteRange),
    /// 206 multipart/byteranges with these ranges, in the client's order.
    Multiple(Vec<ByteRange>),
    /// 416: no range overlaps the body.
    Unsatisfiable,
}

/// Parses a `Range` value: `None` when it is not a valid `bytes` range set
/// (such a field is ignored, RFC 9110 §14.2), or has too many ranges.
pub fn parse(value: &HeaderValue) -> Option<Vec<Spec>> {
    let text = value.to_str().ok()?;
    let (unit, set) = text.trim().split_once('=')?;
    // The unit is a token, compared case-insensitively (§14.1).
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // A list (§5.6.1): empty elements are allowed and skipped.
    for item in set.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (first, last) = item.split_once('-')?;
        let spec = if first.is_empty() {
            Spec::Suffix(number(last)?)
        } else {
            let first = number(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(number(last)?)
            };
            // last < first makes the whole set invalid (§14.1.1).
            if last.is_some_and(|l| l < first) {
                return None;
            }
            Spec::From { first, last }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// 1*DIGIT; a number too large for u64 is as good as infinite here.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// The ranges of `specs` that overlap a body of `len` bytes, clipped to it,
/// in the client's order (§14.1.1: a range starting past the end, or an
/// empty suffix, is not satisfiable and is dropped).
pub fn satisfy(specs: &[Spec], len: u64) -> Vec<ByteRange> {
    if len == 0 {
        return Vec::new();
    }
    specs
        .iter()
        .filter_map(|spec| match *spec {
            Spec::From { first, last } if first < len => Some(ByteRange {
                first,
                last: last.map_or(len - 1, |l| l.min(len - 1)),
            }),
            Spec::From { .. } | Spec::Suffix(0) => None,
            Spec::Suffix(n) => Some(ByteRange {
                first: len - n.min(len),
                last: len - 1,
            }),
        })
        .collect()
}

/// Whether an `If-Range` lets the range apply to the stored response
/// (RFC 9110 §13.1.5): an entity-tag must equal the stored ETag, both
/// strong; a date must equal the stored Last-Modified, and that must be
/// strong: at least a second before the stored Date (§8.8.2.2). Anything
/// else (a weak tag, an unparsable value) does not hold.
pub fn if_range_holds(if_range: &HeaderValue, stored: &HeaderMap) -> bool {
    let asked = if_range.as_bytes().trim_ascii();
    if asked.starts_with(b"\"") {
        return stored
            .get(ETAG)
            .map(|v| v.as_bytes().trim_ascii())
            .is_some_and(|tag| is_strong_tag(tag) && tag == asked && is_strong_tag(asked));
    }
    if asked.starts_with(b"W/") {
        return false;
    }
    let (Some(asked), Some(modified)) = (
        parse_http_date(if_range),
        stored.get(LAST_MODIFIED).and_then(parse_http_date),
    ) else {
        return false;
    };
    let date = stored.get(http::header::DATE).and_then(parse_http_date);
    asked == modified && date.is_some_and(|d| d > modified)
}

/// `"opaque"` with no quote inside.
fn is_strong_tag(v: &[u8]) -> bool {
    v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' && !v[1..v.len() - 1].contains(&b'"')
}

/// How to answer `request` (a GET with a `Range` field) from a stored 200
/// with `stored` fields and `len` body bytes. A stored response that
/// already carries Content-Range is not a whole representation: sent whole.
pub fn select(request: &HeaderMap, stored: &HeaderMap, len: u64) -> Ranged {
    let mut fields = request.get_all(RANGE).iter();
    let (Some(range), None) = (fields.next(), fields.next()) else {
        return Ranged::Whole;
    };
    if stored.contains_key(CONTENT_RANGE) {
        return Ranged::Whole;
    }
    if let Some(if_range) = request.get(IF_RANGE) {
        if !if_range_holds(if_range, stored) {
            return Ranged::Whole;
        }
    }
    let Some(specs) = parse(range) else {
        return Ranged::Whole;
    };
    // An empty body cannot be described by a Content-Range range: whole.
    if len == 0 {
        return Ranged::Whole;
    }
    let ranges = satisfy(&specs, len);
    match ranges.as_slice() {
        [] => Ranged::Unsatisfiable,
        [one] => Ranged::Partial(*one),
        _ if overlap(&ranges) => Ranged::Whole,
        _ => Ranged::Multiple(ranges),
    }
}

/// Whether some byte is in two of `ranges`.
fn overlap(ranges: &[ByteRange]) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable_by_key(|r| r.first);
    sorted.windows(2).any(|w| w[1].first <= w[0].last)
}

/// A multipart/byteranges body (RFC 9110 §14.6).
pub struct Multipart {
    /// `multipart/byteranges; boundary=...`.
    pub content_type: HeaderValue,
    /// Part heads and views of the stored body, in order.
    pub body: Vec<bytes::Bytes>,
    pub len: u64,
}

/// The parts for `ranges` of a body of `complete` bytes held in `chunks`,
/// each headed by the stored `part_type` (if any) and its Content-Range,
/// separated by `boundary` (which the caller makes unlikely to occur in
/// the body: 1 to 70 characters of `bchars`, RFC 2046 §5.1.1).
pub fn multipart(
    ranges: &[ByteRange],
    chunks: &[bytes::Bytes],
    complete: u64,
    part_type: Option<&HeaderValue>,
    boundary: &str,
) -> Multipart {
    let mut body = Vec::with_capacity(ranges.len() * 2 + 1);
    for (n, range) in ranges.iter().enumerate() {
        let mut head = Vec::with_capacity(96);
        if n > 0 {
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if let Some(t) = part_type {
            head.extend_from_slice(b"Content-Type: ");
            head.extend_from_slice(t.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(
            format!(
                "Content-Range: bytes {}-{}/{complete}\r\n\r\n",
                range.first, range.last
            )
            .as_bytes(),
        );
        body.push(bytes::Bytes::from(head));
        body.extend(slice_chunks(chunks, *range));
    }
    body.push(bytes::Bytes::from(format!("\r\n--{boundary}--\r\n")));
    let len = body.iter().map(|b| b.len() as u64).sum();
    let content_type = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
        .unwrap_or(HeaderValue::from_static("multipart/byteranges"));
    Multipart {
        content_type,
        body,
        len,
    }
}

/// `Content-Range: bytes */len`, for a 416.
pub fn unsatisfied_content_range(len: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{len}"))
        .unwrap_or(HeaderValue::from_static("bytes */0"))
}

/// The bytes of `range` out of a body held in `chunks`, as views of them
/// (no copy).
pub fn slice_chunks(chunks: &[bytes::Bytes], range: ByteRange) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let end = range.last + 1;
    let mut at = 0u64;
    for chunk in chunks {
        let chunk_end = at + chunk.len() as u64;
        if chunk_end > range.first && at < end {
            let from = range.first.saturating_sub(at) as usize;
            let to = (end.min(chunk_end) - at) as usize;
            out.push(chunk.slice(from..to));
        }
        at = chunk_end;
        if at >= end {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::{date, h};
    use bytes::Bytes;

    fn p(v: &str) -> Option<Vec<Spec>> {
        parse(&HeaderValue::from_str(v).unwrap())
    }

    fn from(first: u64, last: Option<u64>) -> Spec {
        Spec::From { first, last }
    }

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    #[test]
    fn parses_the_three_forms_and_lists() {
        assert_eq!(p("bytes=0-1"), Some(vec![from(0, Some(1))]));
        assert_eq!(p("bytes=1-"), Some(vec![from(1, None)]));
        assert_eq!(p("bytes=-5"), Some(vec![Spec::Suffix(5)]));
        assert_eq!(
            p("Bytes=0-0, -1"),
            Some(vec![from(0, Some(0)), Spec::Suffix(1)])
        );
        assert_eq!(
            p(" bytes=0-1 ,,2-3"),
            Some(vec![from(0, Some(1)), from(2, Some(3))])
        );
        assert_eq!(
            p("bytes=99999999999999999999999-"),
            Some(vec![from(u64::MAX, None)])
        );
    }

    #[test]
    fn rejects_what_is_not_a_bytes_range_set() {
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=a-b",
            "bytes=1-0",
            "bytes=-",
            "bytes=0-1-2",
            "bytes=+1-2",
            "bytes=0-1,x",
            "bytes = 0-1",
            "bytes=- 1",
            "bytes=1",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(p(&many), None);
        let enough = format!("bytes={}", vec!["0-0"; MAX_RANGES].join(","));
        assert_eq!(p(&enough).map(|s| s.len()), Some(MAX_RANGES));
    }

    #[test]
    fn fits_ranges_to_the_length() {
        assert_eq!(satisfy(&[from(0, Some(1))], 11), [r(0, 1)]);
        assert_eq!(satisfy(&[from(1, None)], 11), [r(1, 10)]);
        assert_eq!(satisfy(&[from(5, Some(100))], 11), [r(5, 10)]);
        assert_eq!(satisfy(&[Spec::Suffix(1)], 11), [r(10, 10)]);
        assert_eq!(satisfy(&[Spec::Suffix(100)], 11), [r(0, 10)]);
        assert_eq!(satisfy(&[from(11, None)], 11), []);
        assert_eq!(satisfy(&[Spec::Suffix(0)], 11), []);
        assert_eq!(satisfy(&[from(20, None), from(3, Some(4))], 11), [r(3, 4)]);
        assert_eq!(satisfy(&[from(0, None)], 0), []);
    }

    #[test]
    fn if_range_needs_a_strong_equal_validator() {
        let stored = h(&[
            ("etag", "\"v1\""),
            ("last-modified", &date(1000)),
            ("date", &date(1001)),
        ]);
        let holds = |v: &str| if_range_holds(&HeaderValue::from_str(v).unwrap(), &stored);
        assert!(holds("\"v1\""));
        assert!(!holds("\"v2\""));
        assert!(!holds("W/\"v1\""));
        assert!(holds(&date(1000)));
        assert!(!holds(&date(999)));
        assert!(!holds("garbage"));
        // A weak stored tag never matches.
        let weak = h(&[("etag", "W/\"v1\"")]);
        assert!(!if_range_holds(&HeaderValue::from_static("\"v1\""), &weak));
        // Last-Modified in the same second as Date is weak.
        let same_second = h(&[("last-modified", &date(1000)), ("date", &date(1000))]);
        let v = HeaderValue::from_str(&date(1000)).unwrap();
        assert!(!if_range_holds(&v, &same_second));
        assert!(!if_range_holds(&v, &h(&[("last-modified", &date(1000))])));
    }

    #[test]
    fn selects_partial_whole_or_unsatisfiable() {
        let stored = h(&[("etag", "\"v1\"")]);
        let ask = |pairs: &[(&str, &str)], len| select(&h(pairs), &stored, len);
        assert_eq!(ask(&[("range", "bytes=0-1")], 11), Ranged::Partial(r(0, 1)));
        assert_eq!(ask(&[("range", "bytes=20-")], 11), Ranged::Unsatisfiable);
        assert_eq!(ask(&[("range", "bytes=1-0")], 11), Ranged::Whole);
        assert_eq!(
            ask(&[("range", "bytes=3-4,0-1")], 11),
            Ranged::Multiple(vec![r(3, 4), r(0, 1)])
        );
        // Overlapping ranges: the whole response rather than bytes twice.
        assert_eq!(ask(&[("range", "bytes=0-4,4-5")], 11), Ranged::Whole);
        assert_eq!(ask(&[("range", "bytes=0-,-1")], 11), Ranged::Whole);
        assert_eq!(
            ask(&[("range", "bytes=0-4,5-")], 11),
            Ranged::Multiple(vec![r(0, 4), r(5, 10)])
        );
        assert_eq!(
            ask(&[("range", "bytes=0-1,30-")], 11),
            Ranged::Partial(r(0, 1))
        );
        assert_eq!(
            ask(&[("range", "bytes=0-1"), ("range", "bytes=2-3")], 11),
            Ranged::Whole
        );
        assert_eq!(ask(&[("range", "bytes=0-1")], 0), Ranged::Whole);
        let if_range = |tag| ask(&[("range", "bytes=0-1"), ("if-range", tag)], 11);
        assert_eq!(if_range("\"v1\""), Ranged::Partial(r(0, 1)));
        assert_eq!(if_range("\"v2\""), Ranged::Whole);
        // If-Range is checked before the range is fitted: a failed one
        // means the whole response, not a 416.
        assert_eq!(
            ask(&[("range", "bytes=20-"), ("if-range", "\"v2\"")], 11),
            Ranged::Whole
        );
        let partial = h(&[("content-range", "bytes 0-4/10")]);
        assert_eq!(
            select(&h(&[("range", "bytes=0-1")]), &partial, 5),
            Ranged::Whole
        );
    }

    #[test]
    fn multipart_heads_each_part_and_closes() {
        let chunks = [Bytes::from_static(b"01234"), Bytes::from_static(b"56789")];
        let t = HeaderValue::from_static("text/plain");
        let m = multipart(&[r(4, 5), r(0, 0)], &chunks, 10, Some(&t), "B");
        let text = String::from_utf8(m.body.concat()).unwrap();
        assert_eq!(
            text,
            "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 4-5/10\r\n\r\n45\
             \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/10\r\n\r\n0\
             \r\n--B--\r\n"
        );
        assert_eq!(m.len, text.len() as u64);
        assert_eq!(m.content_type, "multipart/byteranges; boundary=B");
        let untyped = multipart(&[r(0, 0), r(9, 9)], &chunks, 10, None, "B");
        assert!(!String::from_utf8(untyped.body.concat())
            .unwrap()
            .contains("Content-Type"));
    }

    #[test]
    fn slices_across_chunks_without_copying() {
        let chunks = [
            Bytes::from_static(b"0123"),
            Bytes::from_static(b"4567"),
            Bytes::from_static(b"89"),
        ];
        let text = |range| -> Vec<u8> { slice_chunks(&chunks, range).concat() };
        assert_eq!(text(r(0, 1)), b"01");
        assert_eq!(text(r(3, 8)), b"345678");
        assert_eq!(text(r(9, 9)), b"9");
        assert_eq!(text(r(4, 7)), b"4567");
        assert_eq!(slice_chunks(&chunks, r(4, 7)).len(), 1);
        assert_eq!(text(r(0, 9)), b"0123456789");
    }
}
