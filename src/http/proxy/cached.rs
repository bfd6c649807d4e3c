//! GET and HEAD: look the request up, and serve, revalidate or fetch it.

use std::sync::Arc;

use http::{Method, Request, Response};

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::{self, HitDecision, Outcome, RequestDirectives, Rule};
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::client_io::IncomingBody;
use crate::http::errors::ErrorKind;
use crate::http::target::Target;

use super::forward::Forwarding;
use super::hit::serve_hit;
use super::lookup::{plain, Found};
use super::miss::miss;
use super::revalidate::{background_refresh, revalidate};
use super::txn::Txn;
use super::{unix_now, url_key, Proxy};

/// GET and HEAD: the cache.
pub(super) async fn cached(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    req: Request<IncomingBody>,
    looped: bool,
) -> Response<ClientBody> {
    let (parts, _body) = req.into_parts();
    // The memory cache's fast path: a plain request for a fresh hot object.
    if plain(&parts.headers) {
        let key = url_key(&target.url);
        if let Some(obj) = proxy.hot.get(&key, &proxy.store) {
            let now = unix_now();
            if now < obj.fresh_until {
                txn.result = ResultCode::new(ResultTag::TcpMemHit);
                let age = now.saturating_sub(u64::from(obj.entry.times.date));
                let found = Found {
                    obj,
                    key,
                    memory: true,
                };
                return serve_hit(&proxy, txn, &parts, found, age, Outcome::Hit);
            }
        }
    }
    let directives = RequestDirectives::parse(&parts.headers);
    let rule = Rule::for_url(&proxy.config, &target.url);
    let lookup = proxy.find(&target.url, &parts.headers, &rule);
    let lookup_port = txn.local_port;
    if let Some(found) = lookup.found {
        let now = unix_now();
        let offline = proxy.config.offline();
        // Squid tags a hit from disk TCP_OFFLINE_HIT under offline_mode.
        let hit_tag = match (found.memory, offline) {
            (true, _) => ResultTag::TcpMemHit,
            (false, true) => ResultTag::TcpOfflineHit,
            (false, false) => ResultTag::TcpHit,
        };
        let decision = match caching::decide_hit(found.entry(), &directives, &rule, now) {
            // offline_mode: never validate, whatever made the entry stale
            // (a client reload still fetches).
            HitDecision::Revalidate { .. }
            | HitDecision::ServeStaleWhileRevalidate { .. }
            | HitDecision::OnlyIfCachedMiss
                if offline =>
            {
                HitDecision::Serve {
                    age: found.entry().age(now),
                    stale: true,
                }
            }
            decision => decision,
        };
        match decision {
            HitDecision::Serve { age, .. } => {
                txn.result = ResultCode::new(hit_tag);
                return serve_hit(&proxy, txn, &parts, found, age, Outcome::Hit);
            }
            HitDecision::ServeStaleWhileRevalidate { age, validators } => {
                background_refresh(&proxy, &target, &parts.headers, &found, validators, &txn);
                txn.result = ResultCode::new(hit_tag);
                return serve_hit(&proxy, txn, &parts, found, age, Outcome::Hit);
            }
            HitDecision::OnlyIfCachedMiss => {
                return proxy.error(
                    txn.with(ResultTag::TcpHit),
                    ErrorKind::OnlyIfCachedMiss,
                    "stale and only-if-cached",
                );
            }
            HitDecision::Revalidate { validators, .. } => {
                if looped {
                    return proxy.error(
                        txn.with(ResultTag::TcpMiss),
                        ErrorKind::AccessDenied,
                        "forwarding loop detected",
                    );
                }
                if txn.miss_denied {
                    return proxy.forwarding_denied(txn.with(ResultTag::TcpMiss));
                }
                return revalidate(
                    proxy, txn, target, parts, found, validators, directives, rule,
                )
                .await;
            }
            HitDecision::Reload => {
                txn.result = ResultCode::new(ResultTag::TcpClientRefreshMiss);
            }
        }
    } else {
        txn.result = ResultCode::new(ResultTag::TcpMiss);
        if directives.only_if_cached {
            return proxy.error(
                txn,
                ErrorKind::OnlyIfCachedMiss,
                "not in the cache and only-if-cached",
            );
        }
    }
    if looped {
        return proxy.error(txn, ErrorKind::AccessDenied, "forwarding loop detected");
    }
    if txn.miss_denied {
        return proxy.forwarding_denied(txn);
    }
    if parts.method == Method::HEAD {
        // HEAD misses are forwarded as HEAD and not stored.
        let fwd = Forwarding {
            method: &Method::HEAD,
            target: &target,
            headers: &parts.headers,
            client: txn.client,
            arrival: txn.arrival,
            siblings_ok: !directives.no_cache,
            body: None,
        };
        let sent = proxy.forward_along(&fwd, &mut txn.hierarchy).await;
        let resp = match sent {
            Ok(f) => f.resp,
            Err(e) => return proxy.not_forwarded(txn, &e),
        };
        let (rp, rb) = resp.into_parts();
        let mut headers = proxy.client_headers(&rp.headers);
        proxy.cache_status(&mut headers, false, Some((lookup.anything, lookup_port)));
        return proxy.respond(txn, rp.status, headers, ProxyBody::Upstream(Box::new(rb)));
    }
    miss(
        proxy,
        txn,
        target,
        parts,
        directives,
        rule,
        lookup.marker,
        lookup.anything,
    )
    .await
}
