//! A miss: join the fetch of the same key running, or start one
//! (collapsed forwarding).

use std::sync::Arc;

use http::Response;

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::plan;
use crate::caching::{RequestDirectives, Rule, VaryMarker};
use crate::config::Config;
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::collapse::{self, Answer, Miss, Window};
use crate::http::errors::ErrorKind;
use crate::http::target::Target;

use super::cached::look_up;
use super::fetch::FetchJob;
use super::hit::send_fetched_range;
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
    txn: Txn,
    target: Target,
    parts: http::request::Parts,
    directives: RequestDirectives,
    rule: Rule,
    plan: plan::Fetch,
    marker: Option<VaryMarker>,
    anything: bool,
) -> Response<ClientBody> {
    // A sibling holds it: the client may fetch it there (redirect.rs).
    let mut txn = match proxy
        .redirect_to_holder(txn, &target, &parts, plan.siblings_ok)
        .await
    {
        Ok(redirected) => return redirected,
        Err(txn) => txn,
    };
    let fetch_key = match &marker {
        Some(m) => url_key(&m.variant_url(&target.url, &parts.headers)),
        None => url_key(&target.url),
    };
    let generation = |p: &Proxy| p.store.peek(&fetch_key).map(|s| s.generation);
    let looked_up = generation(&proxy);
    let stored_since = || generation(&proxy).is_some_and(|g| Some(g) != looked_up);
    let miss = Miss {
        key: plan.collapse.then_some(fetch_key),
        url: &target.url,
        headers: &parts.headers,
        wait: proxy.timeouts.read,
        stored_since: &stored_since,
    };
    let (client, arrival) = (txn.client, txn.arrival);
    let fetch = |leader| {
        FetchJob {
            proxy: Arc::clone(&proxy),
            client,
            arrival,
            target: target.clone(),
            request_headers: parts.headers.clone(),
            directives,
            rule,
            marker,
            siblings_ok: plan.siblings_ok,
            leader,
        }
        .spawn();
    };
    let (answer, followed) = match proxy.collapser.forward(miss, fetch).await {
        collapse::Outcome::Lead(r) | collapse::Outcome::Uncollapsed(r) => (r, false),
        collapse::Outcome::GaveUp(r) => {
            txn.result = ResultCode::new(ResultTag::TcpMiss);
            (r, false)
        }
        collapse::Outcome::Follow(r) => (r, true),
        collapse::Outcome::Failed(f) => return proxy.error(txn, f.kind, &f.detail),
        collapse::Outcome::TimedOut { following } => {
            if following {
                txn.result = txn.result.collapsed();
                txn.result.tag = ResultTag::TcpHit;
            }
            let detail = "no response from upstream in time";
            return proxy.error(txn, ErrorKind::ReadTimeout, detail);
        }
        // Forwarding was not refused (this is a miss), so it is no loop.
        collapse::Outcome::StoredMeanwhile => {
            return Box::pin(look_up(proxy, txn, target, parts, false)).await;
        }
    };
    let Answer { head, reader } = answer;
    if followed {
        txn.result = txn.result.collapsed();
        txn.result.tag = ResultTag::TcpHit;
    } else {
        txn.hierarchy = head.hierarchy.clone();
    }
    proxy.note_size(&target.url, head.status, &head.headers);
    let mut headers = proxy.client_headers(&head.headers);
    let lookup = Some((anything, txn.local_port));
    let body = ProxyBody::Shared(reader);
    if parts.headers.contains_key(http::header::RANGE) {
        let fetched = (head.status, headers, body);
        return send_fetched_range(&proxy, txn, &parts, fetched, (followed, lookup));
    }
    proxy.cache_status(&mut headers, followed, lookup);
    proxy.respond(txn, head.status, headers, body)
}
