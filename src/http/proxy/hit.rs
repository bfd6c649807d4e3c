//! Serving a stored entry (or a 304 to the client's own conditional).

use http::header;
use http::{Method, Response, StatusCode};

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::plan::tag_of;
use crate::caching::{self, Outcome};
use crate::http::body::{ClientBody, ProxyBody};

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

/// The stored entry itself, with this `Age`.
pub(super) fn send_entry(
    proxy: &Proxy,
    txn: Txn,
    parts: &http::request::Parts,
    found: Found,
    age: u64,
) -> Response<ClientBody> {
    let port = txn.local_port;
    let mut headers = found.entry().headers.clone();
    headers.insert(header::AGE, caching::age_value(age));
    proxy.cache_status(&mut headers, true, Some((true, port)));
    // Framed by the bytes sent (HEAD: the bytes a GET would get), never by
    // a stored field: a wrong length would let a pipelining client read
    // part of this body as its next response.
    let body_len = found.obj.body.iter().map(|c| c.len() as u64).sum();
    caching::frame_by_body(&mut headers, found.entry().status, body_len);
    let body = if parts.method == Method::HEAD {
        ProxyBody::Empty
    } else {
        ProxyBody::from_chunks(found.obj.body.iter().cloned())
    };
    proxy.respond(txn, found.entry().status, headers, body)
}
