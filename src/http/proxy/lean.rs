//! The lean hit, proxy side: a GET or HEAD the memory cache answers fresh,
//! decided and answered without hyper and without a response field map
//! (the connection side is `crate::http::lean`). It takes the general
//! path's steps for such a request with the same code wherever something
//! is decided (the target and manager URLs, http_access, the memory
//! cache's freshness, the fields a hit changes), so the bytes sent, the
//! access.log line and the counters are those the general path gives.
//! Anything else (a denial, an ACL that needs DNS, http_reply_access
//! rules, a miss, a Range, a conditional, a cache directive) is answered
//! `None` before any trace of the request is left, and hyper takes it.
//!
//! The response head of an object is encoded once, at its first lean hit,
//! by the general path's own field steps on a copy of its stored fields
//! and in hyper's encoding; a hit splices its Age value in.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri};

use crate::access;
use crate::access_log::ResultCode;
use crate::caching::{self, plan};
use crate::http::hot::{HotEntry, LeanHead, LeanHeadFor};
use crate::http::server::ConnInfo;

use super::admit::{Arrival, RequestDetails};
use super::lookup::plain;
use super::manage::{classify, Addressed};
use super::txn::{head_size, Txn};
use super::{unix_now, url_key, Proxy};

/// A request the connection parsed and the lean path may answer: GET or
/// HEAD, HTTP/1.1, no body, no Connection option but keep-alive, no
/// Upgrade or Expect.
pub struct LeanRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// A lean hit's response, ready to write: its access.log line is written
/// (as the general path writes a memory hit's when hyper takes its body).
pub struct LeanAnswer {
    pub head: Vec<u8>,
    /// Empty for HEAD.
    pub body: Bytes,
}

/// Answers `req` from the memory cache if the general path would answer it
/// there with a whole stored object; `None` (nothing done, nothing logged)
/// otherwise.
pub async fn lean_hit(proxy: &Proxy, conn: &ConnInfo, req: &LeanRequest) -> Option<LeanAnswer> {
    let addressed = classify(proxy, conn, &req.method, &req.uri, &req.headers).await;
    let Ok(Addressed::Elsewhere(target)) = addressed else {
        return None;
    };
    // The memory cache's own condition (`cached`), and what would make
    // `send_entry` cut a range.
    if !plain(&req.headers) || req.headers.contains_key(header::RANGE) {
        return None;
    }
    // Hit metering counts (and reads children's reports) on the general path.
    if config_meters(proxy) && (req.headers.contains_key("meter") || proxy.metered(&target.url)) {
        return None;
    }
    // An owner's answers carry the owner mark, or a share list instead of
    // the body: the general path's (share_owner.rs).
    if proxy.config.share.log.value.on {
        return None;
    }
    let config = &proxy.config;
    if !config.http_reply_access.is_empty() {
        return None;
    }
    let details = RequestDetails::of(config, conn).await;
    let arrival = Arrival::of(conn);
    let acl = arrival.acl_request(conn.client.ip(), req.method.as_str(), &target);
    match access::try_check_with(
        &config.http_access,
        config,
        &acl,
        &details.get(&req.headers),
    ) {
        Ok(decision) if decision.allowed() => {}
        _ => return None,
    }
    let key = url_key(&target.url);
    let obj = proxy.hot.get(&key, &proxy.store)?;
    let now = unix_now();
    if now >= obj.fresh_until {
        return None;
    }
    let head = lean_head(proxy, &obj, (proxy.generation, conn.local.port()))?;
    let body = match obj.body.as_slice() {
        [one] => one.clone(),
        _ => return None,
    };
    let age = caching::age_value(now.saturating_sub(u64::from(obj.entry.times.date)));
    let age = age.as_bytes();
    let mut bytes = Vec::with_capacity(head.before_age.len() + age.len() + head.after_age.len());
    bytes.extend_from_slice(&head.before_age);
    bytes.extend_from_slice(age);
    bytes.extend_from_slice(&head.after_age);

    proxy.count_interval_hit(&key, &obj);
    proxy.note_mon_use(&target.url);
    let mut txn = Txn::new(proxy, conn, &req.method, target.url.clone(), Some(&target));
    txn.result = ResultCode::new(plan::hit_tag(true, false, obj.entry.status));
    let body = if req.method == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let sent = body.len() as u64;
    txn.active
        .request()
        .bytes_out
        .fetch_add(sent, Ordering::Relaxed);
    // Under the connection side's name, whose lines these are.
    tracing::debug!(target: "cuttle::http::lean", url = %txn.url, "lean hit");
    let size = head.logged_size + age.len() as u64 + sent;
    let content_type = head.content_type.clone();
    txn.end(
        &proxy.logger,
        &proxy.mgr.stats,
        (obj.entry.status, size),
        content_type,
        true,
    );
    Some(LeanAnswer { head: bytes, body })
}

/// `obj`'s lean head for this configuration and port, encoded if it was
/// not yet (or for another).
fn lean_head(proxy: &Proxy, obj: &HotEntry, made_for: (u64, u16)) -> Option<Arc<LeanHead>> {
    let mut held = obj.lean_head.lock().unwrap_or_else(|p| p.into_inner());
    match &*held {
        Some(known) if known.made_for == made_for => known.head.clone(),
        _ => {
            let head = encode_head(proxy, obj, made_for.1).map(Arc::new);
            *held = Some(LeanHeadFor {
                made_for,
                head: head.clone(),
            });
            head
        }
    }
}

/// The head the general path sends for a memory hit of `obj` (`send_entry`
/// and `Proxy::respond`, with Age 0), as hyper encodes it for an HTTP/1.1
/// keep-alive request; `None` when hyper would write it otherwise than
/// field by field (no Date of its own, a Connection or Trailer field, no
/// body to frame).
fn encode_head(proxy: &Proxy, obj: &HotEntry, port: u16) -> Option<LeanHead> {
    let status = obj.entry.status;
    let body_len: u64 = obj.body.iter().map(|c| c.len() as u64).sum();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || body_len == 0
    {
        return None;
    }
    let mut headers = obj.entry.headers.clone();
    headers.insert(header::AGE, HeaderValue::from_static("0"));
    proxy.cache_status(&mut headers, true, Some((true, port)));
    caching::frame_by_body(&mut headers, status, body_len);
    caching::targeted::remove_internal(&mut headers);
    headers.append(header::VIA, proxy.via.clone());
    if !headers.contains_key(header::DATE)
        || headers.contains_key(header::CONNECTION)
        || headers.contains_key(header::TRAILER)
        || headers.contains_key(header::TRANSFER_ENCODING)
    {
        return None;
    }
    let mut before = Vec::with_capacity(512);
    if status == StatusCode::OK {
        before.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        before.extend_from_slice(b"HTTP/1.1 ");
        before.extend_from_slice(status.as_str().as_bytes());
        before.push(b' ');
        before.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        before.extend_from_slice(b"\r\n");
    }
    let mut after: Option<Vec<u8>> = None;
    for (name, value) in &headers {
        let out = after.as_mut().unwrap_or(&mut before);
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        if name == header::AGE {
            after = Some(b"\r\n".to_vec());
            continue;
        }
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut after = after?;
    after.extend_from_slice(b"\r\n");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Some(LeanHead {
        before_age: Bytes::from(before),
        after_age: Bytes::from(after),
        // Less the placeholder's one digit.
        logged_size: head_size(status, &headers) - 1,
        content_type,
    })
}

/// `hit_metering on` in the proxy's config.
fn config_meters(proxy: &Proxy) -> bool {
    proxy.config.hit_metering.value
}
