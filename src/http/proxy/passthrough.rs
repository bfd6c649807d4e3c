//! Methods the cache does not answer (anything but GET, HEAD, PURGE,
//! CONNECT): forwarded, never stored; a success invalidates the URL.

use std::sync::Arc;

use http::{Request, Response};

use crate::access_log::{ResultCode, ResultTag};
use crate::caching::plan::{self, Purpose};
use crate::caching::{self, RequestDirectives};
use crate::http::body::{ClientBody, ProxyBody, RequestBody};
use crate::http::client_io::IncomingBody;
use crate::http::target::Target;
use crate::peers::htcp_client::ClrTrigger;

use super::forward::Forwarding;
use super::txn::Txn;
use super::Proxy;

/// Any method but GET, HEAD, PURGE and CONNECT: forwarded as is, never
/// stored; a success invalidates what is stored for the URL (RFC 9111 §4.4).
pub(super) async fn forward(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    req: Request<IncomingBody>,
) -> Response<ClientBody> {
    if txn.miss_denied {
        return proxy.forwarding_denied(txn.with(ResultTag::TcpMiss));
    }
    let (parts, body) = req.into_parts();
    txn.result = ResultCode::new(ResultTag::TcpMiss);
    let siblings_ok = plan::siblings_ok(Purpose::Fetch, &RequestDirectives::parse(&parts.headers));
    let fwd = Forwarding {
        method: &parts.method,
        target: &target,
        headers: &parts.headers,
        client: txn.client,
        arrival: txn.arrival,
        siblings_ok,
        body: Some(RequestBody::new(body)),
        share_offer: false,
    };
    let sent = proxy.forward_along(&fwd, &mut txn.hierarchy).await;
    let resp = match sent {
        Ok(f) => f.resp,
        Err(e) => return proxy.not_forwarded(txn, &e),
    };
    let (resp_parts, resp_body) = resp.into_parts();
    let urls = caching::invalidated_urls(
        &parts.method,
        resp_parts.status,
        &target.url,
        &resp_parts.headers,
    );
    if !urls.is_empty() {
        tokio::task::block_in_place(|| {
            for url in &urls {
                proxy.remove_url(url);
            }
        });
        for url in &urls {
            proxy.neighbours.send_clr(url, ClrTrigger::Invalidation);
            proxy.mon_changed(url);
        }
    }
    let mut headers = proxy.client_headers(&resp_parts.headers);
    proxy.cache_status(&mut headers, false, None);
    proxy.respond(
        txn,
        resp_parts.status,
        headers,
        ProxyBody::Upstream(Box::new(resp_body)),
    )
}
