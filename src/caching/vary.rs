//! Vary (RFC 9111 §4.1): the field names a response varies on, the normalised "variant
//! key" of a request, and the small marker entry stored under the plain URL that says
//! which fields select the variant.
//!
//! How the proxy stores a response whose [`StorePlan::vary`](super::StorePlan) is not empty:
//!
//! 1. Under the plain key, `key(GET, url)`, store a *marker*: [`VaryMarker::head`] as the
//!    header block, an empty body, and the variant's times (so ICP/HTCP, which know only the
//!    URL, answer from the marker). Keep the marker that is there if its field list is the
//!    same ([`VaryMarker::from_head`]); write a new one, with a new epoch, when there is none
//!    or the list changed.
//! 2. Store the response itself under `key(GET, marker.variant_url(url, request_headers))`.
//!
//! On a lookup, the plain key gives either an ordinary entry (no Vary) or a marker; for a
//! marker, look up `key(GET, marker.variant_url(url, request_headers))` and use what is
//! found only if [`VaryMarker::matches`] its Vary. The epoch is part of every variant URL,
//! so releasing (or replacing) the marker makes all its old variants unreachable at once:
//! invalidating a URL needs only the marker to go.

use http::header::{HeaderMap, HeaderName, HeaderValue, VARY};
use http::StatusCode;

use super::head::{is_tchar, parse_head, write_head};

/// The field that marks a vary marker entry (its value is the epoch).
/// Fields named `x-cuttle-*` are cuttle's own and are dropped from
/// responses before they are stored.
pub const MARKER_FIELD: &str = "x-cuttle-vary-marker";

/// Most field names a usable Vary may list.
pub const MAX_VARY_FIELDS: usize = 32;

/// Whether `name` is one of cuttle's internal fields (`x-cuttle-*`).
pub fn is_internal_field(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-cuttle-")
}

/// The response varies on everything (`Vary: *`), or its Vary is not a list of
/// field names: it never matches a later request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnusableVary;

/// The field names of every Vary line: lower case, sorted, without
/// duplicates; empty when the response does not vary.
pub fn vary_fields(headers: &HeaderMap) -> Result<Vec<HeaderName>, UnusableVary> {
    let mut names = Vec::new();
    for value in headers.get_all(VARY) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            if item == b"*" || !item.iter().all(|&b| is_tchar(b)) {
                return Err(UnusableVary);
            }
            names.push(HeaderName::from_bytes(item).map_err(|_| UnusableVary)?);
        }
    }
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    if names.len() > MAX_VARY_FIELDS {
        return Err(UnusableVary);
    }
    Ok(names)
}

fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The normalised value of one request field for matching: all its lines
/// joined as one list, each member trimmed, runs of whitespace inside a
/// member made one space, empty members dropped, members joined by ",".
fn normalised(values: &[&HeaderValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        for member in value.as_bytes().split(|&b| b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(b',');
            }
            let mut in_space = false;
            for &b in member {
                if b == b' ' || b == b'\t' {
                    in_space = true;
                    continue;
                }
                if in_space {
                    out.push(b' ');
                    in_space = false;
                }
                out.push(b);
            }
        }
    }
    out
}

/// The variant key of a request for `fields` (as [`vary_fields`] gives
/// them): for each field, a line `\nname` when the request lacks it, else
/// `\nname=value` with the value normalised (see above; case is kept) and
/// bytes outside printable ASCII (and `%`) percent-escaped. Equivalent
/// requests give the same key; an absent field differs from an empty one.
pub fn variant_key(fields: &[HeaderName], request: &HeaderMap) -> String {
    let mut key = String::new();
    for name in fields {
        key.push('\n');
        key.push_str(name.as_str());
        let values: Vec<&HeaderValue> = request.get_all(name).iter().collect();
        if values.is_empty() {
            continue;
        }
        key.push('=');
        push_escaped(&mut key, &normalised(&values));
    }
    key
}

/// The marker stored under a URL's plain key when its responses vary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryMarker {
    /// As [`vary_fields`] gives them (not empty).
    pub fields: Vec<HeaderName>,
    /// Distinguishes this marker's variants from those of an earlier marker
    /// of the same URL: any value the proxy does not reuse for the URL (a
    /// counter, or the time in nanoseconds).
    pub epoch: u64,
}

impl VaryMarker {
    /// The header block to store as the marker (with an empty body).
    pub fn head(&self) -> Vec<u8> {
        let mut headers = HeaderMap::new();
        let list: Vec<&str> = self.fields.iter().map(HeaderName::as_str).collect();
        if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
            headers.insert(VARY, v);
        }
        headers.insert(MARKER_FIELD, HeaderValue::from(self.epoch));
        write_head(StatusCode::OK, &headers)
    }

    /// The marker in a stored entry's fields, if it is one.
    pub fn from_headers(headers: &HeaderMap) -> Option<VaryMarker> {
        let epoch = headers.get(MARKER_FIELD)?.to_str().ok()?.parse().ok()?;
        let fields = vary_fields(headers).ok()?;
        if fields.is_empty() {
            return None;
        }
        Some(VaryMarker { fields, epoch })
    }

    /// The marker in a stored header block, if it is one.
    pub fn from_head(head: &[u8]) -> Option<VaryMarker> {
        parse_head(head)
            .ok()
            .and_then(|(_, h)| VaryMarker::from_headers(&h))
    }

    /// The text whose store key holds the variant for `request`: the URL, a
    /// newline (never part of a URL), the epoch and the [`variant_key`].
    pub fn variant_url(&self, url: &str, request: &HeaderMap) -> String {
        format!(
            "{url}\nvary-epoch={}{}",
            self.epoch,
            variant_key(&self.fields, request)
        )
    }

    /// Whether a variant found through this marker has the same Vary (a
    /// variant stored under an older Vary list is not used).
    pub fn matches(&self, variant: &HeaderMap) -> bool {
        vary_fields(variant).is_ok_and(|f| f == self.fields)
    }
}

/// Most markers [`KnownMarkers`] holds; past it, it starts over (markers
/// come back as the proxy meets them again).
pub const KNOWN_MARKERS_MAX: usize = 65_536;

/// The Vary markers the proxy has read or written, in RAM, each with the
/// store generation of its entry. ICP and HTCP answers read only the
/// store's index, which says an entry exists but not that it is a marker
/// nor what it varies on (that is in its header block, on disk): with this
/// an HTCP TST finds the variant for the querier's request headers. A
/// marker is used only while the store holds the same generation of its
/// key, so a replaced or purged marker is never used. Markers stored
/// before a restart are unknown until the proxy meets them again; until
/// then a TST is answered from the marker's own times (as ICP always is).
#[derive(Debug, Default)]
pub struct KnownMarkers {
    inner: std::sync::Mutex<std::collections::HashMap<crate::store::Key, (u32, VaryMarker)>>,
}

impl KnownMarkers {
    /// `marker` is stored under `key` (a URL's plain key) at `generation`.
    pub fn note(&self, key: crate::store::Key, generation: u32, marker: &VaryMarker) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KNOWN_MARKERS_MAX && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, (generation, marker.clone()));
    }

    /// The marker under `key` if the store's entry there is the one noted
    /// (same `generation`).
    pub fn get(&self, key: &crate::store::Key, generation: u32) -> Option<VaryMarker> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, m)| m.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::h;

    #[test]
    fn fields_are_normalised() {
        let resp = h(&[
            ("vary", "Accept-Language, accept-encoding"),
            ("vary", " ACCEPT-ENCODING ,,"),
        ]);
        assert_eq!(
            vary_fields(&resp).unwrap(),
            ["accept-encoding", "accept-language"]
        );
        assert_eq!(
            vary_fields(&HeaderMap::new()).unwrap(),
            Vec::<HeaderName>::new()
        );
        assert_eq!(
            vary_fields(&h(&[("vary", "")])).unwrap(),
            Vec::<HeaderName>::new()
        );
        assert_eq!(vary_fields(&h(&[("vary", "*")])), Err(UnusableVary));
        assert_eq!(vary_fields(&h(&[("vary", "a, *")])), Err(UnusableVary));
        assert_eq!(vary_fields(&h(&[("vary", "a b")])), Err(UnusableVary));
        let many: Vec<String> = (0..=MAX_VARY_FIELDS).map(|i| format!("x-{i}")).collect();
        assert_eq!(
            vary_fields(&h(&[("vary", &many.join(","))])),
            Err(UnusableVary)
        );
    }

    #[test]
    fn equivalent_requests_share_a_key() {
        let fields = vary_fields(&h(&[("vary", "accept-encoding, accept-language")])).unwrap();
        let a = h(&[("accept-encoding", "gzip,  br"), ("accept-language", "en")]);
        let b = h(&[
            ("Accept-Encoding", "gzip"),
            ("accept-encoding", "br"),
            ("accept-language", " en "),
        ]);
        let c = h(&[
            ("accept-encoding", "gzip,br,"),
            ("accept-language", "en"),
            ("cookie", "x"),
        ]);
        let ka = variant_key(&fields, &a);
        assert_eq!(ka, "\naccept-encoding=gzip,br\naccept-language=en");
        assert_eq!(ka, variant_key(&fields, &b));
        assert_eq!(ka, variant_key(&fields, &c));
        // Order and case of values matter.
        assert_ne!(
            ka,
            variant_key(
                &fields,
                &h(&[("accept-encoding", "br, gzip"), ("accept-language", "en")])
            )
        );
        assert_ne!(
            ka,
            variant_key(
                &fields,
                &h(&[("accept-encoding", "GZIP, br"), ("accept-language", "en")])
            )
        );
    }

    #[test]
    fn absent_differs_from_empty() {
        let fields = vary_fields(&h(&[("vary", "accept-encoding")])).unwrap();
        let absent = variant_key(&fields, &HeaderMap::new());
        let empty = variant_key(&fields, &h(&[("accept-encoding", "")]));
        assert_eq!(absent, "\naccept-encoding");
        assert_eq!(empty, "\naccept-encoding=");
    }

    #[test]
    fn escapes_keep_keys_unambiguous() {
        let fields = vary_fields(&h(&[("vary", "x")])).unwrap();
        let mut req = HeaderMap::new();
        req.insert("x", HeaderValue::from_bytes(b"a%\xff\tb").unwrap());
        assert_eq!(variant_key(&fields, &req), "\nx=a%25%FF b");
    }

    #[test]
    fn marker_round_trip_and_variant_urls() {
        let m = VaryMarker {
            fields: vary_fields(&h(&[("vary", "Accept-Encoding")])).unwrap(),
            epoch: 42,
        };
        let head = m.head();
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nvary: accept-encoding\r\nx-cuttle-vary-marker: 42\r\n\r\n"
        );
        assert_eq!(VaryMarker::from_head(&head), Some(m.clone()));
        // An ordinary response is not a marker.
        assert_eq!(
            VaryMarker::from_head(b"HTTP/1.1 200 OK\r\nvary: a\r\n\r\n"),
            None
        );
        let req = h(&[("accept-encoding", "gzip")]);
        assert_eq!(
            m.variant_url("http://h/x", &req),
            "http://h/x\nvary-epoch=42\naccept-encoding=gzip"
        );
        let newer = VaryMarker {
            epoch: 43,
            ..m.clone()
        };
        assert_ne!(
            m.variant_url("http://h/x", &req),
            newer.variant_url("http://h/x", &req)
        );
        assert!(m.matches(&h(&[("vary", "accept-encoding")])));
        assert!(!m.matches(&h(&[("vary", "accept-encoding, cookie")])));
        assert!(!m.matches(&HeaderMap::new()));
    }

    #[test]
    fn known_markers_answer_only_for_the_noted_generation() {
        let known = KnownMarkers::default();
        let m = VaryMarker {
            fields: vec![HeaderName::from_static("accept-language")],
            epoch: 7,
        };
        known.note([1; 16], 3, &m);
        assert_eq!(known.get(&[1; 16], 3), Some(m.clone()));
        assert_eq!(known.get(&[1; 16], 4), None, "replaced since");
        assert_eq!(known.get(&[2; 16], 3), None);
        for i in 0..KNOWN_MARKERS_MAX as u32 {
            let mut key = [0; 16];
            key[..4].copy_from_slice(&i.to_be_bytes());
            key[15] = 9;
            known.note(key, 1, &m);
        }
        assert!(known.inner.lock().unwrap().len() <= KNOWN_MARKERS_MAX);
    }
}
