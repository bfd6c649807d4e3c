//! A miss: join the fetch of the same key running, or start one
//! (collapsed forwarding).

use std::sync::Arc;

use http::header;
use http::Response;

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::{RequestDirectives, Rule, VaryMarker};
use crate::config::Config;
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::collapse::{Event, Role, Window};
use crate::http::errors::ErrorKind;
use crate::http::target::Target;

use super::fetch::FetchJob;
use super::txn::Txn;
use super::{url_key, Proxy};

/// The limits of every fetch under `config`: Squid's `read_ahead_gap`;
/// latecomers join while the body so far fits what the memory cache would
/// keep of an object (as Squid's collapsed readers read an object in
/// transit from memory); a reader holds the fetch up for `read_timeout` at
/// most.
pub(super) fn fetch_window(config: &Config) -> Window {
    Window {
        gap: config.read_ahead_gap.value.max(1),
        join_limit: config
            .maximum_object_size_in_memory
            .value
            .min(config.maximum_object_size.value),
        stall: config.read_timeout.value,
    }
}

/// A miss: join the fetch of this key if one runs, else start one.
#[allow(clippy::too_many_arguments)]
pub(super) async fn miss(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    parts: http::request::Parts,
    directives: RequestDirectives,
    rule: Rule,
    marker: Option<VaryMarker>,
    anything: bool,
) -> Response<ClientBody> {
    let port = txn.local_port;
    // Requests with credentials or cookies fetch alone: they may get a
    // response meant for them only.
    let private = parts.headers.contains_key(header::AUTHORIZATION)
        || parts.headers.contains_key(header::COOKIE);
    let fetch_key = match &marker {
        Some(m) => url_key(&m.variant_url(&target.url, &parts.headers)),
        None => url_key(&target.url),
    };
    let (leader, mut reader) = if private {
        let (leader, reader) = proxy.collapser.alone();
        (Some(leader), reader)
    } else {
        match proxy.collapser.join_or_start(fetch_key) {
            Role::Leader(leader, reader) => (Some(leader), reader),
            Role::Follower(reader) => {
                txn.result = txn.result.collapsed();
                txn.result.tag = ResultTag::TcpHit;
                (None, reader)
            }
        }
    };
    if let Some(leader) = leader {
        FetchJob {
            proxy: Arc::clone(&proxy),
            client: txn.client,
            arrival: txn.arrival,
            target: target.clone(),
            request_headers: parts.headers.clone(),
            directives: directives.clone(),
            rule,
            marker: marker.clone(),
            leader,
        }
        .spawn();
    }
    let first = tokio::time::timeout(proxy.timeouts.read, reader.next()).await;
    match first {
        Ok(Some(Event::Head(head))) => {
            if txn.result.collapsed && !head.shareable_with(&parts.headers) {
                // The response varies on something this request differs in.
                // Let go of the shared fetch first: a reader that takes
                // nothing would hold it (and its other clients) up.
                drop(reader);
                txn.result = ResultCode::new(ResultTag::TcpMiss);
                return Box::pin(uncollapsed_miss(
                    proxy, txn, target, parts, directives, rule, marker, anything,
                ))
                .await;
            }
            if !txn.result.collapsed {
                txn.hierarchy = head.hierarchy.clone();
            }
            let mut headers = proxy.client_headers(&head.headers);
            proxy.cache_status(&mut headers, txn.result.collapsed, Some((anything, port)));
            proxy.respond(txn, head.status, headers, ProxyBody::Shared(reader))
        }
        Ok(Some(Event::Failed(f))) => proxy.error(txn, f.kind, &f.detail),
        Ok(Some(_)) | Ok(None) => proxy.error(
            txn,
            ErrorKind::ReadError,
            "the fetch ended without a response",
        ),
        Err(_) => proxy.error(
            txn,
            ErrorKind::ReadTimeout,
            "no response from upstream in time",
        ),
    }
}

/// A miss that must not share a fetch (Vary mismatch with the one running).
#[allow(clippy::too_many_arguments)]
pub(super) async fn uncollapsed_miss(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    parts: http::request::Parts,
    directives: RequestDirectives,
    rule: Rule,
    marker: Option<VaryMarker>,
    anything: bool,
) -> Response<ClientBody> {
    let (leader, mut reader) = proxy.collapser.alone();
    FetchJob {
        proxy: Arc::clone(&proxy),
        client: txn.client,
        arrival: txn.arrival,
        target: target.clone(),
        request_headers: parts.headers.clone(),
        directives,
        rule,
        marker,
        leader,
    }
    .spawn();
    match tokio::time::timeout(proxy.timeouts.read, reader.next()).await {
        Ok(Some(Event::Head(head))) => {
            if !txn.result.collapsed {
                txn.hierarchy = head.hierarchy.clone();
            }
            let mut headers = proxy.client_headers(&head.headers);
            proxy.cache_status(&mut headers, false, Some((anything, txn.local_port)));
            proxy.respond(txn, head.status, headers, ProxyBody::Shared(reader))
        }
        Ok(Some(Event::Failed(f))) => proxy.error(txn, f.kind, &f.detail),
        Ok(_) => proxy.error(
            txn,
            ErrorKind::ReadError,
            "the fetch ended without a response",
        ),
        Err(_) => proxy.error(
            txn,
            ErrorKind::ReadTimeout,
            "no response from upstream in time",
        ),
    }
}
