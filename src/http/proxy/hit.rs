//! Serving a stored entry (or a 304 to the client's own conditional).

use http::header;
use http::{Method, Response, StatusCode};

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::{self, Outcome};
use crate::http::body::{ClientBody, ProxyBody};

use super::lookup::Found;
use super::txn::Txn;
use super::Proxy;

/// Sends a stored entry (or a 304 when the client's own conditional matches).
pub(super) fn serve_hit(
    proxy: &Proxy,
    mut txn: Txn,
    parts: &http::request::Parts,
    found: Found,
    age: u64,
    outcome: Outcome,
) -> Response<ClientBody> {
    let port = txn.local_port;
    if let Some(cond) =
        caching::client_not_modified(&parts.method, &parts.headers, &found.entry().headers)
    {
        txn.result = ResultCode::new(tag_of(cond));
        let mut headers = caching::not_modified_headers(&found.entry().headers);
        headers.insert(header::AGE, caching::age_value(age));
        proxy.cache_status(&mut headers, true, Some((true, port)));
        return proxy.respond(txn, StatusCode::NOT_MODIFIED, headers, ProxyBody::Empty);
    }
    if txn.result.tag == ResultTag::None {
        txn.result = ResultCode::new(tag_of(outcome));
    }
    // A cached error response (negative caching) is Squid's NEGATIVE_HIT.
    if matches!(
        txn.result.tag,
        ResultTag::TcpHit | ResultTag::TcpMemHit | ResultTag::TcpOfflineHit
    ) && found.entry().status.as_u16() >= 400
    {
        txn.result.tag = ResultTag::TcpNegativeHit;
    }
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

pub(super) fn tag_of(outcome: Outcome) -> ResultTag {
    match outcome {
        Outcome::Hit => ResultTag::TcpHit,
        Outcome::Miss => ResultTag::TcpMiss,
        Outcome::ClientRefreshMiss => ResultTag::TcpClientRefreshMiss,
        Outcome::RefreshUnmodified => ResultTag::TcpRefreshUnmodified,
        Outcome::RefreshModified => ResultTag::TcpRefreshModified,
        Outcome::RefreshFailOld => ResultTag::TcpRefreshFailOld,
        Outcome::RefreshFailErr => ResultTag::TcpRefreshFailErr,
        Outcome::ImsHit => ResultTag::TcpImsHit,
        Outcome::InmHit => ResultTag::TcpInmHit,
    }
}
