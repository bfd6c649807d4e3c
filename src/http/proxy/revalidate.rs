//! Revalidating a stale entry, in the foreground (the client waits) and
//! in the background (stale-while-revalidate, and a MON peer's pushed
//! update: [`refetch_from`]).

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Response, StatusCode};

use tracing::Instrument;

use crate::access_log::{Hierarchy, ResultCode, ResultTag};
use crate::caching::plan::{self, Purpose, Revalidated};
use crate::caching::{self, Exchange, Outcome, RequestDirectives, Rule, StoredEntry};
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::hot::HotEntry;
use crate::http::target::Target;
use crate::store::{Key, Store, StoreError};
use crate::upstream::PooledBody;

use super::admit::{Arrival, PortUse};
use super::fetch::stream_and_store;
use super::forward::{Fetched, Forwarding, Route};
use super::hit::serve_hit;
use super::lookup::Found;
use super::miss::miss;
use super::txn::Txn;
use super::{unix_now, Proxy};

/// Stores a new head with the body of `obj` (after a 304).
pub(super) fn restore(
    store: &Store,
    key: Key,
    url: &str,
    head: &[u8],
    times: crate::store::Times,
    obj: &HotEntry,
) {
    let written = store
        .writer(key, times, url.as_bytes(), head, Some(obj.body_len))
        .and_then(|mut w| {
            for chunk in &obj.body {
                w.write(chunk)?;
            }
            w.commit()
        });
    if let Err(e) = written {
        if !matches!(e, StoreError::Superseded) {
            tracing::debug!(url, error = %e, "cannot update the stored entry");
        }
    }
}

/// A stale hit: ask upstream with the validators; a 304 refreshes the
/// stored copy, a new response replaces it, a failure may serve it stale.
#[allow(clippy::too_many_arguments)]
pub(super) async fn revalidate(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    parts: http::request::Parts,
    found: Found,
    validators: caching::Validators,
    directives: RequestDirectives,
    rule: Rule,
) -> Response<ClientBody> {
    let mut headers = parts.headers.clone();
    // The client's own conditionals are answered here, not upstream.
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    validators.apply(&mut headers);
    let request_time = unix_now();
    // A HEAD asks for no body (RFC 9111 4.3.5): its reply updates the
    // stored fields only.
    let head = (parts.method == Method::HEAD).then_some(found.obj.body_len);
    let method = if head.is_some() {
        Method::HEAD
    } else {
        Method::GET
    };
    // A revalidation may use parents (and ask them with ICP).
    let fwd = Forwarding {
        method: &method,
        target: &target,
        headers: &headers,
        client: txn.client,
        arrival: txn.arrival,
        siblings_ok: plan::siblings_ok(Purpose::Revalidate, &directives),
        body: None,
        share_offer: false,
    };
    let sent = proxy
        .forward_along(&fwd, &mut txn.hierarchy)
        .await
        .map(|f| f.resp);
    let now = unix_now();
    let stale_ok = caching::may_serve_stale_on_error(found.entry(), &directives, &rule, now);
    let serve_stale = |proxy: &Proxy, mut txn: Txn, found: Found| {
        txn.result = ResultCode::new(ResultTag::TcpRefreshFailOld);
        let age = found.entry().age(now);
        serve_hit(proxy, txn, &parts, found, age, Outcome::RefreshFailOld)
    };
    let resp = match sent {
        Ok(r) => r,
        Err(_) if stale_ok => return serve_stale(&proxy, txn, found),
        Err(e) => return proxy.not_forwarded(txn.with(ResultTag::TcpRefreshFailErr), &e),
    };
    let exchange = Exchange {
        request_time,
        response_time: now,
    };
    let entry = found.entry().clone();
    let stored = Stored {
        key: found.key,
        obj: &found.obj,
        url: &target.url,
        head: head.is_some(),
    };
    let applied = apply_reply(&proxy, stored, &entry, resp, &directives, rule, exchange).await;
    if matches!(applied, Applied::Modified(..)) {
        proxy.mon_changed(&target.url);
    }
    match applied {
        Applied::Unmodified(freshened) => {
            txn.result = ResultCode::new(ResultTag::TcpRefreshUnmodified);
            if parts.method == Method::GET {
                // A use, not a reuse: the origin was asked.
                proxy.meter_use(&target.url, false);
            }
            let age = freshened.age(now);
            let refreshed = Found {
                obj: Arc::new(HotEntry {
                    generation: found.obj.generation,
                    entry: freshened,
                    body: found.obj.body.clone(),
                    body_len: found.obj.body_len,
                    fresh_until: 0,
                    ahead_hits: 0,
                    lean_head: std::sync::Mutex::default(),
                }),
                key: found.key,
                memory: false,
            };
            serve_hit(
                &proxy,
                txn,
                &parts,
                refreshed,
                age,
                Outcome::RefreshUnmodified,
            )
        }
        Applied::Failed(_) if stale_ok => serve_stale(&proxy, txn, found),
        Applied::Failed(resp) => {
            // The origin's own error goes to the client, as Squid does.
            txn.result = ResultCode::new(ResultTag::TcpRefreshFailErr);
            let (rp, rb) = resp.into_parts();
            let mut headers = proxy.client_headers(&rp.headers);
            proxy.cache_status(&mut headers, false, Some((true, txn.local_port)));
            proxy.respond(txn, rp.status, headers, ProxyBody::Upstream(Box::new(rb)))
        }
        Applied::Modified(rp, _)
            if rp.status == StatusCode::NOT_MODIFIED && !client_conditional(&parts.headers) =>
        {
            // A 304 for another validator freshens nothing (RFC 9111
            // 4.3.4), and a client that sent no validator must get the
            // object: ask again without validators, as a miss that stores.
            txn.result = ResultCode::new(ResultTag::TcpRefreshModified);
            let fetch = plan::Fetch {
                tag: ResultTag::TcpRefreshModified,
                store: true,
                collapse: false,
                siblings_ok: false,
            };
            Box::pin(miss(
                proxy, txn, target, parts, directives, rule, fetch, None, true,
            ))
            .await
        }
        Applied::Modified(rp, body) => {
            // A new object, or a 304 for another validator to a client's
            // own conditional request: passed on as it is.
            txn.result = ResultCode::new(ResultTag::TcpRefreshModified);
            let mut headers = proxy.client_headers(&rp.headers);
            proxy.cache_status(&mut headers, false, Some((true, txn.local_port)));
            proxy.respond(txn, rp.status, headers, body)
        }
    }
}

/// The client asked conditionally itself (a 304 may answer it).
fn client_conditional(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_NONE_MATCH) || headers.contains_key(header::IF_MODIFIED_SINCE)
}

/// The stored entry a revalidation is about.
#[derive(Clone, Copy)]
struct Stored<'a> {
    key: Key,
    obj: &'a Arc<HotEntry>,
    url: &'a str,
    /// Revalidated by the client's HEAD (RFC 9111 4.3.5), not a GET.
    head: bool,
}

/// What a revalidation's reply did to the stored entry.
enum Applied {
    /// A 304 freshened it: the entry to serve now.
    Unmodified(StoredEntry),
    /// A 5xx: the entry stays; the reply, to pass on or not.
    Failed(Response<PooledBody<ProxyBody>>),
    /// A new object replaced it: its head, and its body (being stored when
    /// it may be).
    Modified(http::response::Parts, ProxyBody),
}

/// Applies a revalidation's reply to the stored entry by
/// [`plan::revalidated`]: the one implementation for the foreground and
/// the background.
async fn apply_reply(
    proxy: &Arc<Proxy>,
    stored: Stored<'_>,
    entry: &StoredEntry,
    resp: Response<PooledBody<ProxyBody>>,
    directives: &RequestDirectives,
    rule: Rule,
    exchange: Exchange,
) -> Applied {
    let verdict = plan::revalidated(
        entry,
        stored.head.then_some(stored.obj.body_len),
        resp.status(),
        resp.headers(),
        directives,
        &rule,
        exchange,
    );
    match verdict {
        Revalidated::Unmodified(freshened) => {
            let store = Arc::clone(&proxy.store);
            match &freshened.store {
                Ok(plan) => {
                    proxy.note_poll(plan);
                    tokio::task::block_in_place(|| {
                        restore(
                            &store, stored.key, stored.url, &plan.head, plan.times, stored.obj,
                        )
                    })
                }
                Err(_) => {
                    store.purge(&stored.key);
                }
            }
            proxy.hot.remove(&stored.key);
            // The refreshed copy is kept in memory, as the first one was.
            if proxy.hot.admits(stored.obj.body_len) {
                tokio::task::block_in_place(|| proxy.remember(stored.key, stored.url, &rule));
            }
            Applied::Unmodified(freshened.entry)
        }
        Revalidated::Failed => Applied::Failed(resp),
        Revalidated::Modified(Some(plan)) => {
            proxy.note_poll(&plan);
            let (rp, rb) = resp.into_parts();
            // Store while streaming, as for a miss, through a fetch of its own.
            let (leader, reader) = proxy.collapser.alone_body();
            let (fetcher, url, key) = (Arc::clone(proxy), stored.url.to_string(), stored.key);
            tokio::spawn(async move {
                stream_and_store(&fetcher, rb, key, &url, plan, rule, leader).await;
            });
            Applied::Modified(rp, ProxyBody::Shared(reader))
        }
        Revalidated::Modified(None) => {
            proxy.store.purge(&stored.key);
            let (rp, rb) = resp.into_parts();
            Applied::Modified(rp, ProxyBody::Upstream(Box::new(rb)))
        }
    }
}

/// stale-while-revalidate, and adaptive polling's revalidation ahead:
/// refresh `found` in the background (once per key: false when a refresh
/// of it is already running).
pub(super) fn background_refresh(
    proxy: &Arc<Proxy>,
    target: &Target,
    request: &HeaderMap,
    found: &Found,
    validators: caching::Validators,
    txn: &Txn,
) -> bool {
    let (client, arrival) = (txn.client, txn.arrival);
    {
        let mut busy = proxy.refreshing.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(found.key) {
            return false;
        }
    }
    let proxy = Arc::clone(proxy);
    let target = target.clone();
    let mut headers = request.clone();
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    validators.apply(&mut headers);
    let entry = found.entry().clone();
    let hit = Arc::clone(&found.obj);
    let key = found.key;
    // In the request's span, as a miss's fetch.
    tokio::spawn(
        async move {
            let directives = RequestDirectives::parse(&headers);
            let rule = Rule::for_url(&proxy.config, &target.url);
            let request_time = unix_now();
            let fwd = Forwarding {
                method: &Method::GET,
                target: &target,
                headers: &headers,
                client,
                arrival,
                siblings_ok: plan::siblings_ok(Purpose::Revalidate, &directives),
                body: None,
                share_offer: false,
            };
            let mut hierarchy = Hierarchy::none();
            if let Ok(Fetched { resp, .. }) = proxy.forward_along(&fwd, &mut hierarchy).await {
                let exchange = Exchange {
                    request_time,
                    response_time: unix_now(),
                };
                let stored = Stored {
                    key,
                    obj: &hit,
                    url: &target.url,
                    head: false,
                };
                // No client reads it: a new object's body is read for the
                // store alone.
                let applied =
                    apply_reply(&proxy, stored, &entry, resp, &directives, rule, exchange).await;
                if matches!(applied, Applied::Modified(..)) {
                    proxy.mon_changed(&target.url);
                }
            }
            proxy
                .refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
        .in_current_span(),
    );
    true
}

/// A MON peer pushed an update of `target` (issue 22): fetch it from the
/// peer along `route` on a CS1-marked connection and put the reply over
/// our copy `found` as a revalidation's would go. True when our copy is
/// current afterwards (the new one stored, or ours was it already).
pub(super) async fn refetch_from(
    proxy: &Arc<Proxy>,
    route: &Route,
    target: &Target,
    found: &Found,
) -> bool {
    {
        let mut busy = proxy.refreshing.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(found.key) {
            // A revalidation of it runs already.
            return true;
        }
    }
    let headers = HeaderMap::new();
    let fwd = Forwarding {
        method: &Method::GET,
        target,
        headers: &headers,
        client: std::net::Ipv4Addr::UNSPECIFIED.into(),
        arrival: Arrival {
            kind: PortUse::Forward,
            local: std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
            port_name: "",
        },
        siblings_ok: true,
        body: None,
        share_offer: false,
    };
    let low_priority = proxy.upstream.marked(crate::upstream::TOS_LOWER_EFFORT);
    let request_time = unix_now();
    let mut hierarchy = Hierarchy::none();
    let sent = proxy
        .send_via(&low_priority, route, &fwd, &mut hierarchy)
        .await;
    let current = match sent {
        Ok(resp) => {
            let exchange = Exchange {
                request_time,
                response_time: unix_now(),
            };
            let stored = Stored {
                key: found.key,
                obj: &found.obj,
                url: &target.url,
                head: false,
            };
            let directives = RequestDirectives::default();
            let rule = Rule::for_url(&proxy.config, &target.url);
            match apply_reply(
                proxy,
                stored,
                found.entry(),
                resp,
                &directives,
                rule,
                exchange,
            )
            .await
            {
                Applied::Unmodified(_) => true,
                Applied::Failed(_) => false,
                Applied::Modified(head, body) => head.status.is_success() && drained(body).await,
            }
        }
        Err(e) => {
            tracing::debug!(url = %target.url, error = %e, "HTCP MON update: refetch failed");
            false
        }
    };
    proxy
        .refreshing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&found.key);
    current
}

/// Reads `body` to its end (the store is written as it is read); false
/// when it broke off.
async fn drained(mut body: ProxyBody) -> bool {
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return false;
        }
    }
    true
}
