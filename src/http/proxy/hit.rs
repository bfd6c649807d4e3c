//! Serving a stored entry (or a 304 to the client's own conditional).

use std::hash::{BuildHasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::{Method, Response, StatusCode};

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::plan::tag_of;
use crate::caching::range::{self, ByteRange, Ranged};
use crate::caching::{self, Outcome};
use crate::http::body::{ClientBody, ProxyBody};

use super::headers::content_length;
use super::lookup::Found;
use super::txn::Txn;
use super::Proxy;

/// Sends a stored entry (or a 304 when the client's own conditional
/// matches), logged with the transaction's tag, else `outcome`'s.
pub(super) fn serve_hit(
    proxy: &Proxy,
    mut txn: Txn,
    parts: &http::request::Parts,
    found: Found,
    age: u64,
    outcome: Outcome,
) -> Response<ClientBody> {
    if let Some(cond) =
        caching::client_not_modified(&parts.method, &parts.headers, &found.entry().headers)
    {
        txn.result = ResultCode::new(tag_of(cond));
        return not_modified(proxy, txn, &found, age);
    }
    if txn.result.tag == ResultTag::None {
        txn.result = ResultCode::new(tag_of(outcome));
    }
    send_entry(proxy, txn, parts, found, age)
}

/// A 304 from the stored entry, to the client's own conditional.
pub(super) fn not_modified(
    proxy: &Proxy,
    txn: Txn,
    found: &Found,
    age: u64,
) -> Response<ClientBody> {
    let port = txn.local_port;
    let mut headers = caching::not_modified_headers(&found.entry().headers);
    headers.insert(header::AGE, caching::age_value(age));
    proxy.cache_status(&mut headers, true, Some((true, port)));
    proxy.respond(txn, StatusCode::NOT_MODIFIED, headers, ProxyBody::Empty)
}

/// The stored entry itself, with this `Age`: whole, or the range a GET
/// asks for (RFC 9110 §14).
pub(super) fn send_entry(
    proxy: &Proxy,
    txn: Txn,
    parts: &http::request::Parts,
    found: Found,
    age: u64,
) -> Response<ClientBody> {
    // The one lookup a request without Range pays. Only a stored 200 is a
    // whole representation to take ranges of; HEAD ignores Range.
    if parts.headers.contains_key(header::RANGE)
        && parts.method == Method::GET
        && found.entry().status == StatusCode::OK
    {
        let len = body_len(&found);
        match range::select(&parts.headers, &found.entry().headers, len) {
            Ranged::Whole => {}
            Ranged::Partial(one) => return send_range(proxy, txn, found, age, one, len),
            Ranged::Multiple(ranges) => return send_ranges(proxy, txn, found, age, &ranges, len),
            Ranged::Unsatisfiable => {
                let cache = (true, Some((true, txn.local_port)));
                return unsatisfiable(proxy, txn, Some(age), len, cache);
            }
        }
    }
    let port = txn.local_port;
    let mut headers = found.entry().headers.clone();
    headers.insert(header::AGE, caching::age_value(age));
    proxy.cache_status(&mut headers, true, Some((true, port)));
    // Framed by the bytes sent (HEAD: the bytes a GET would get), never by
    // a stored field: a wrong length would let a pipelining client read
    // part of this body as its next response.
    caching::frame_by_body(&mut headers, found.entry().status, body_len(&found));
    let body = if parts.method == Method::HEAD {
        ProxyBody::Empty
    } else {
        ProxyBody::from_chunks(found.obj.body.iter().cloned())
    };
    proxy.respond(txn, found.entry().status, headers, body)
}

/// The stored body's length: the bytes held, never a stored field.
fn body_len(found: &Found) -> u64 {
    found.obj.body.iter().map(|c| c.len() as u64).sum()
}

/// The stored fields with this `Age` and the cache's own, for a 206.
fn partial_headers(proxy: &Proxy, txn: &Txn, found: &Found, age: u64) -> HeaderMap {
    let mut headers = found.entry().headers.clone();
    headers.insert(header::AGE, caching::age_value(age));
    proxy.cache_status(&mut headers, true, Some((true, txn.local_port)));
    headers
}

/// 206 with one range of the stored body of `len` bytes.
fn send_range(
    proxy: &Proxy,
    txn: Txn,
    found: Found,
    age: u64,
    one: ByteRange,
    len: u64,
) -> Response<ClientBody> {
    let mut headers = partial_headers(proxy, &txn, &found, age);
    headers.insert(header::CONTENT_RANGE, one.content_range(len));
    caching::frame_by_body(&mut headers, StatusCode::PARTIAL_CONTENT, one.size());
    let body = ProxyBody::from_chunks(range::slice_chunks(&found.obj.body, one));
    proxy.respond(txn, StatusCode::PARTIAL_CONTENT, headers, body)
}

/// 206 multipart/byteranges with several ranges of the stored body.
fn send_ranges(
    proxy: &Proxy,
    txn: Txn,
    found: Found,
    age: u64,
    ranges: &[ByteRange],
    len: u64,
) -> Response<ClientBody> {
    let mut headers = partial_headers(proxy, &txn, &found, age);
    let parts = range::multipart(
        ranges,
        &found.obj.body,
        len,
        found.entry().headers.get(header::CONTENT_TYPE),
        &boundary(),
    );
    headers.insert(header::CONTENT_TYPE, parts.content_type);
    caching::frame_by_body(&mut headers, StatusCode::PARTIAL_CONTENT, parts.len);
    let body = ProxyBody::from_chunks(parts.body);
    proxy.respond(txn, StatusCode::PARTIAL_CONTENT, headers, body)
}

/// A multipart boundary no origin can predict, so none can plant it in a
/// body: a per-process random key over the time.
fn boundary() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("cuttle-{:016x}", RandomState::new().hash_one(nanos))
}

/// X-Cache and X-Cache-Lookup as [`Proxy::cache_status`] takes them: (a
/// hit, (anything stored, port)).
type CacheStatus = (bool, Option<(bool, u16)>);

/// 416 for a body of `len` bytes: none of the response's fields, which
/// describe a 200 (a downstream cache must not keep this as the object).
fn unsatisfiable(
    proxy: &Proxy,
    txn: Txn,
    age: Option<u64>,
    len: u64,
    (hit, lookup): CacheStatus,
) -> Response<ClientBody> {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_RANGE, range::unsatisfied_content_range(len));
    if let Some(age) = age {
        headers.insert(header::AGE, caching::age_value(age));
    }
    proxy.cache_status(&mut headers, hit, lookup);
    caching::frame_by_body(&mut headers, StatusCode::RANGE_NOT_SATISFIABLE, 0);
    proxy.respond(
        txn,
        StatusCode::RANGE_NOT_SATISFIABLE,
        headers,
        ProxyBody::Empty,
    )
}

/// A fetched response (a miss) to a GET with Range: a whole 200 of known
/// length goes out as the asked range, cut as it streams (the store keeps
/// the whole); anything else as it came: the origin's own 206, several
/// ranges (multipart is made from stored bodies only), a body whose length
/// is known only at its end.
pub(super) fn send_fetched_range(
    proxy: &Proxy,
    txn: Txn,
    parts: &http::request::Parts,
    (status, mut headers, body): (StatusCode, HeaderMap, ProxyBody),
    (hit, lookup): CacheStatus,
) -> Response<ClientBody> {
    let len = (parts.method == Method::GET && status == StatusCode::OK)
        .then(|| content_length(&headers))
        .flatten();
    let ranged = len.map(|len| (len, range::select(&parts.headers, &headers, len)));
    match ranged {
        Some((len, Ranged::Partial(one))) => {
            headers.insert(header::CONTENT_RANGE, one.content_range(len));
            caching::frame_by_body(&mut headers, StatusCode::PARTIAL_CONTENT, one.size());
            proxy.cache_status(&mut headers, hit, lookup);
            let body = body.window(one.first, one.size());
            proxy.respond(txn, StatusCode::PARTIAL_CONTENT, headers, body)
        }
        Some((len, Ranged::Unsatisfiable)) => unsatisfiable(proxy, txn, None, len, (hit, lookup)),
        _ => {
            proxy.cache_status(&mut headers, hit, lookup);
            proxy.respond(txn, status, headers, body)
        }
    }
}
