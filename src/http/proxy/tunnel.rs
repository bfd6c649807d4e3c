//! CONNECT: a tunnel to the target.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::HeaderMap;
use http::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::access_log::{Entry, Hierarchy, HierarchyCode, ResultCode, ResultTag};
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::client_io::IncomingBody;
use crate::http::target::Target;
use crate::peers::select::{self as peer_select};

use super::txn::{note_code, Txn};
use super::Proxy;

/// CONNECT: connect to the target, answer 200, then copy bytes both ways.
pub(super) async fn tunnel(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    req: Request<IncomingBody>,
) -> Response<ClientBody> {
    if txn.miss_denied {
        return proxy.forwarding_denied(txn.with(ResultTag::TcpTunnel));
    }
    let local = {
        let method = Method::CONNECT;
        let req = proxy.select_request(
            &target,
            txn.client,
            &method,
            &HeaderMap::new(),
            false,
            txn.arrival,
        );
        peer_select::tcp_outgoing_address(&proxy.config, &req.access)
    };
    let connecting =
        proxy
            .upstream
            .connect_tcp_from(&target.host, target.port, local, proxy.timeouts.connect);
    let connected = connecting.await;
    proxy.note_forwarding(connected.as_ref().err());
    let (mut server, addr) = match connected {
        Ok(s) => s,
        Err(e) => return proxy.fetch_error(txn.with(ResultTag::TcpTunnel), &e),
    };
    txn.result = ResultCode::new(ResultTag::TcpTunnel);
    note_code(&txn.result, http::StatusCode::OK);
    txn.hierarchy = Hierarchy::new(HierarchyCode::HierDirect, Some(addr.ip().to_string()));
    let logger = proxy.logger.clone();
    let stats = proxy.stats();
    tokio::spawn(async move {
        let (mut sent, mut status) = (0u64, 200u16);
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                match tokio::io::copy_bidirectional(&mut client, &mut server).await {
                    Ok((_, to_client)) => sent = to_client,
                    Err(e) => tracing::debug!(url = %target.url, error = %e, "tunnel ended"),
                }
            }
            Err(e) => {
                status = 0;
                tracing::debug!(url = %target.url, error = %e, "CONNECT upgrade failed");
            }
        }
        let entry = Entry {
            end: SystemTime::now(),
            elapsed: txn.start.elapsed(),
            client: Some(txn.client),
            result: txn.result,
            status,
            size: sent,
            method: txn.method,
            url: txn.url,
            user: None,
            hierarchy: txn.hierarchy,
            content_type: None,
        };
        stats.note_transaction(&entry);
        Txn::log(&logger, txn.log_scope.as_deref(), &entry);
    });
    let mut resp = Response::new(ClientBody::new(
        ProxyBody::Empty,
        Some(0),
        Box::new(|_, _| {}),
    ));
    *resp.status_mut() = StatusCode::OK;
    resp
}
