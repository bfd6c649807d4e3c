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
    let removed = tokio::task::block_in_place(|| proxy.remove_url(&target.url));
    proxy.meter_purged(&target.url, txn.arrival);
    // The mesh purges too, whether or not we held it (squid-spec 2.6).
    proxy.neighbours.send_clr(&target.url, ClrTrigger::Purge);
    proxy.mon_changed(&target.url);
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

impl Proxy {
    /// Removes the URL's GET and HEAD objects (blocking: call from
    /// `block_in_place`); true if something was removed.
    pub(super) fn remove_url(&self, url: &str) -> bool {
        let get = self.store.purge(&url_key(url));
        let head = self
            .store
            .purge(&store_key(KeyMethod::Head, url.as_bytes()));
        get || head
    }
}
