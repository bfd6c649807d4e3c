//! PURGE: removing a URL's stored objects.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::access_log::ResultTag;
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::errors::ErrorKind;
use crate::http::target::Target;
use crate::peers::htcp_client::ClrTrigger;
use cuttle_protocol::key::{store_key, Method as KeyMethod};

use super::txn::Txn;
use super::{url_key, Proxy};

/// PURGE: remove the URL's object (allowed only where http_access lets the
/// PURGE method through). Squid logs it as TCP_MISS with 200 or 404.
pub(super) fn purge(proxy: &Proxy, txn: Txn, target: &Target) -> Response<ClientBody> {
    if !proxy.purge_enabled {
        // Squid honours PURGE only when the config names the method in
        // an ACL (its enable_purge); without one it is refused.
        return proxy.error(
            txn.with(ResultTag::TcpDenied),
            ErrorKind::AccessDenied,
            "PURGE is not enabled (no acl ... method PURGE)",
        );
    }
    let store = &proxy.store;
    let removed = tokio::task::block_in_place(|| {
        let get = store.purge(&url_key(&target.url));
        let head = store.purge(&store_key(KeyMethod::Head, target.url.as_bytes()));
        get || head
    });
    proxy.meter_purged(&target.url, txn.arrival);
    // The mesh purges too, whether or not we held it (squid-spec 2.6).
    proxy.neighbours.send_clr(&target.url, ClrTrigger::Purge);
    let status = if removed {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    proxy.respond(
        txn.with(ResultTag::TcpMiss),
        status,
        headers,
        ProxyBody::Empty,
    )
}
