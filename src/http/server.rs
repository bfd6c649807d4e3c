//! Accepting connections on the http_ports: hyper 1 over tokio, HTTP/1
//! only, with upgrades (CONNECT) and graceful shutdown together, as
//! hyper-util's auto builder allows. Idle connections that sent nothing
//! (Squid's liveness probes of its peers) are closed quietly. Each
//! connection is read through [`ClientIo`] (bytes counted; Squid's
//! `cache_object://` request line made parsable).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::client_io::ClientIo;
use super::proxy::{self, Proxy};
use super::target::PortKind;

/// One listening http_port.
pub struct Listener {
    pub listener: TcpListener,
    pub kind: PortKind,
    /// `name=` of the http_port (or its text as written).
    pub name: String,
}

/// What a request knows about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub kind: PortKind,
    pub port_name: Arc<str>,
}

/// Serves every listener until `shutdown` turns true, then stops accepting
/// and waits up to `grace` for in-flight requests to finish.
pub async fn serve(
    listeners: Vec<Listener>,
    proxy: watch::Receiver<Arc<Proxy>>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(1024);
    let mut accepters = Vec::new();
    for l in listeners {
        let tx = conn_tx.clone();
        let mut stop = shutdown.clone();
        let name: Arc<str> = Arc::from(l.name.as_str());
        accepters.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = l.listener.accept() => match accepted {
                        Ok((stream, client)) => {
                            let local = stream.local_addr().unwrap_or(client);
                            let info = ConnInfo { client, local, kind: l.kind.clone(), port_name: Arc::clone(&name) };
                            if tx.send((stream, info)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            // Out of descriptors and the like: back off, do not spin.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    drop(conn_tx);

    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .keep_alive(true);
    let builder = Arc::new(builder);

    loop {
        tokio::select! {
            next = conn_rx.recv() => {
                let Some((stream, info)) = next else { break };
                let _ = stream.set_nodelay(true);
                let stream = ClientIo::new(stream, proxy.borrow().stats());
                let proxy = proxy.clone();
                let conn_info = info.clone();
                let service = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy.borrow());
                    let info = conn_info.clone();
                    async move { Ok::<_, Infallible>(proxy::handle(proxy, info, req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(client = %info.client, "connection ended: {e}");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    for a in accepters {
        a.abort();
    }
    tracing::info!("stopped accepting; waiting up to {grace:?} for requests in flight");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown_lifetime passed with requests still in flight; closing them");
    }
}
