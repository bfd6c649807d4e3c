//! GET and HEAD: look the request up, and serve, revalidate or fetch it.

use std::sync::Arc;

use http::{Method, Request, Response};

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::plan::{self, Denial, Plan};
use crate::caching::{RequestDirectives, Rule};
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::client_io::IncomingBody;
use crate::http::errors::ErrorKind;
use crate::http::target::Target;
use crate::stats::AdaptiveEvent;

use super::cut_through::relay_only_if_cached;
use super::forward::Forwarding;
use super::hit::{not_modified, send_entry};
use super::lookup::{plain, Found};
use super::miss::miss;
use super::revalidate::{background_refresh, revalidate};
use super::txn::Txn;
use super::{unix_now, url_key, Proxy};

/// GET and HEAD: the cache.
pub(super) async fn cached(
    proxy: Arc<Proxy>,
    txn: Txn,
    target: Target,
    req: Request<IncomingBody>,
    looped: bool,
) -> Response<ClientBody> {
    // The body (a GET may have one) is held, unread, until the response.
    let (parts, _body) = req.into_parts();
    proxy.note_mon_use(&target.url);
    look_up(proxy, txn, target, parts, looped).await
}

/// Looks the request up and serves, revalidates or fetches it: from
/// [`cached`], and again from a miss that finds the object was stored while
/// it waited (miss.rs).
pub(super) async fn look_up(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    parts: http::request::Parts,
    looped: bool,
) -> Response<ClientBody> {
    // RFC 2227 usage limit reached: this use revalidates.
    let limited = parts.method == Method::GET && proxy.meter_limit_reached(&target.url);
    // The memory cache's fast path: a plain request for a fresh hot object.
    if plain(&parts.headers) && !limited {
        let key = url_key(&target.url);
        if let Some(obj) = proxy.hot.get(&key, &proxy.store) {
            let now = unix_now();
            if now < obj.fresh_until {
                txn.result = ResultCode::new(plan::hit_tag(true, false, obj.entry.status));
                let age = now.saturating_sub(u64::from(obj.entry.times.date));
                proxy.count_interval_hit(&key, &obj);
                let found = Found {
                    obj,
                    key,
                    memory: true,
                };
                if parts.method == Method::GET {
                    proxy.meter_use(&target.url, true);
                }
                return send_entry(&proxy, txn, &parts, found, age);
            }
        }
    }
    let mut directives = RequestDirectives::parse(&parts.headers);
    if limited {
        directives.max_age = Some(0);
    }
    let rule = Rule::for_url(&proxy.config, &target.url);
    let lookup = proxy.find(&target.url, &parts.headers, &rule);
    let lookup_port = txn.local_port;
    let request = plan::Request {
        method: &parts.method,
        headers: &parts.headers,
        directives: &directives,
        looped,
        miss_denied: txn.miss_denied,
    };
    let stored = lookup.found.as_ref().map(|found| plan::Stored {
        entry: found.entry(),
        memory: found.memory,
    });
    let policy = plan::Policy {
        offline: proxy.config.offline(),
        collapse: proxy.config.collapsed_forwarding.value,
    };
    let now = unix_now();
    let fetch = match (
        plan::plan(&request, stored, &rule, policy, now),
        lookup.found,
    ) {
        (Plan::Serve { tag, age, refresh }, Some(found))
        | (Plan::NotModified { tag, age, refresh }, Some(found)) => {
            if let Some(validators) = refresh {
                background_refresh(&proxy, &target, &parts.headers, &found, validators, &txn);
            } else if let Some(validators) = proxy.revalidate_ahead(&found, now) {
                // Never where this request may not be forwarded (as the
                // plan's own revalidations).
                let forwards = !(policy.offline || looped || txn.miss_denied);
                if forwards
                    && background_refresh(&proxy, &target, &parts.headers, &found, validators, &txn)
                {
                    proxy.mgr.stats.note_adaptive(AdaptiveEvent::Ahead);
                }
            }
            txn.result = ResultCode::new(tag);
            if parts.method == Method::GET {
                proxy.meter_use(&target.url, true);
            }
            return if matches!(tag, ResultTag::TcpImsHit | ResultTag::TcpInmHit) {
                not_modified(&proxy, txn, &found, age)
            } else {
                send_entry(&proxy, txn, &parts, found, age)
            };
        }
        (Plan::Revalidate { validators }, Some(found)) => {
            // Boxed (as the miss below): a hit's future stays small.
            return Box::pin(revalidate(
                proxy, txn, target, parts, found, validators, directives, rule,
            ))
            .await;
        }
        (Plan::Deny { tag, why }, found) => {
            let txn = txn.with(tag);
            return match why {
                Denial::OnlyIfCached if found.is_some() => {
                    proxy.error(txn, ErrorKind::OnlyIfCachedMiss, "stale and only-if-cached")
                }
                // cut_through on: the parents may hold it (cut_through.rs).
                Denial::OnlyIfCached => {
                    match relay_only_if_cached(&proxy, txn, &target, &parts).await {
                        Ok(relayed) => relayed,
                        Err(txn) => proxy.error(
                            txn,
                            ErrorKind::OnlyIfCachedMiss,
                            "not in the cache and only-if-cached",
                        ),
                    }
                }
                Denial::Loop => {
                    proxy.error(txn, ErrorKind::AccessDenied, "forwarding loop detected")
                }
                Denial::MissAccess => proxy.forwarding_denied(txn),
            };
        }
        (Plan::Fetch(fetch), _) => fetch,
        // The plan serves and revalidates only what was found.
        (Plan::Serve { .. } | Plan::NotModified { .. } | Plan::Revalidate { .. }, None) => {
            return proxy.error(txn, ErrorKind::ReadError, "no stored entry to serve");
        }
    };
    txn.result = ResultCode::new(fetch.tag);
    if !fetch.store {
        // A HEAD miss: forwarded as HEAD, nothing stored.
        let fwd = Forwarding {
            method: &parts.method,
            target: &target,
            headers: &parts.headers,
            client: txn.client,
            arrival: txn.arrival,
            siblings_ok: fetch.siblings_ok,
            body: None,
            share_offer: false,
        };
        let sent = Box::pin(proxy.forward_along(&fwd, &mut txn.hierarchy)).await;
        let resp = match sent {
            Ok(f) => f.resp,
            Err(e) => return proxy.not_forwarded(txn, &e),
        };
        let (rp, rb) = resp.into_parts();
        proxy.note_size(&target.url, rp.status, &rp.headers);
        let mut headers = proxy.client_headers(&rp.headers);
        proxy.cache_status(&mut headers, false, Some((lookup.anything, lookup_port)));
        return proxy.respond(txn, rp.status, headers, ProxyBody::Upstream(Box::new(rb)));
    }
    Box::pin(miss(
        proxy,
        txn,
        target,
        parts,
        directives,
        rule,
        fetch,
        lookup.marker,
        lookup.anything,
    ))
    .await
}
