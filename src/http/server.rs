//! Accepting connections on the http_ports and https_ports: hyper 1's
//! HTTP/1 server over tokio, with upgrades (CONNECT) and graceful shutdown;
//! on an https_port after a TLS handshake (see [`super::tls_accept`]) done
//! in the connection's own task, within `request_start_timeout`; a failed
//! handshake is a cache.log line, never an access.log one. HTTP/1 only: no
//! HTTP/2 code is built in (hyper-util's `auto` builder, used before,
//! sniffed the HTTP/2 preface even when told `http1_only`, because
//! `serve_connection_with_upgrades` ignores that setting).
//!
//! A connection's first requests are served by the lean hit path
//! (`http::lean`) for as long as each is a plain memory-cache hit;
//! hyper takes the connection at the first other request.
//!
//! Each connection is read through [`ClientIo`] (bytes counted; Squid's
//! `cache_object://` request line made parsable; the HTTP/2 preface
//! refused; Squid's client timeouts; interim responses written). An
//! HTTP/1.1 request's fetches relay the 1xx interim responses they get to
//! its connection ([`Serving`]). Limits come from the configuration
//! current when the connection is accepted, so after a reload new
//! connections use the new values.
//!
//! When accepting fails for want of file descriptors, connections waiting
//! for a request are closed to make room: keep-alive connections idle
//! longest first, then those waiting longest for a request head (which
//! otherwise hold their descriptor for `request_start_timeout` or
//! `request_timeout`, 5 minutes). The shortage is logged at most once per
//! [`SHORTAGE_LOG_EVERY`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::client_io::{Activity, ClientIo, ClientTimeouts, IncomingBody, TrackedBody};
use super::lean::{self, Ended, LeanConn, Rewind};
use super::proxy::{self, Proxy};
use super::target::PortKind;
use crate::config::Config;
use crate::upstream::interim::Serving;
use crate::upstream::{read_buffer_limit, request_field_limit};

/// One listening http_port.
pub struct Listener {
    pub listener: TcpListener,
    pub kind: PortKind,
    /// `name=` of the http_port (or its text as written).
    pub name: String,
    /// An https_port's TLS settings (certificates, ALPN).
    pub tls: Option<TlsAcceptor>,
}

/// What a request knows about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub kind: PortKind,
    pub port_name: Arc<str>,
    /// Connections open per client address, for `maxconn` ACLs.
    pub per_client: PerClient,
}

/// How many connections each client address has open (`maxconn` ACLs).
#[derive(Debug, Clone, Default)]
pub struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerClient {
    /// Connections open from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Counts a connection from `ip` until the returned guard drops.
    fn opened(&self, ip: IpAddr) -> CountedConnection {
        let ip = ip.to_canonical();
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ip)
            .or_insert(0) += 1;
        CountedConnection {
            per_client: self.clone(),
            ip,
        }
    }
}

/// One connection counted in [`PerClient`].
struct CountedConnection {
    per_client: PerClient,
    ip: IpAddr,
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        let mut counts = self.per_client.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// At most one line about a descriptor shortage per this long.
pub const SHORTAGE_LOG_EVERY: Duration = Duration::from_secs(10);
/// Waiting connections closed at a time when descriptors run out: a new
/// client may need one for itself and one for its server.
const EVICT_BATCH: usize = 8;
/// How long to wait before accepting again after a failure.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long closing connections get to release their descriptors before
/// the next accept (closing one takes well under this).
const EVICTION_PAUSE: Duration = Duration::from_millis(10);

/// The client timeouts a configuration asks for.
fn client_timeouts(config: &Config) -> ClientTimeouts {
    ClientTimeouts {
        request_start: config.request_start_timeout.value,
        request: config.request_timeout.value,
        idle: config.client_idle_pconn_timeout.value,
        read: config.read_timeout.value,
    }
}

/// The HTTP/1 server settings a configuration asks for.
fn http1_builder(config: &Config) -> http1::Builder {
    let header_max = usize::try_from(config.request_header_max_size.value).unwrap_or(usize::MAX);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // ClientIo times the request head (request_timeout); hyper's own
        // timer would also cut idle keep-alive connections.
        .header_read_timeout(None)
        .keep_alive(true)
        .max_header_size(header_max)
        .max_headers(request_field_limit(header_max))
        .max_buf_size(read_buffer_limit(header_max));
    builder
}

/// The connections open now, to find idle ones when descriptors run out.
#[derive(Default)]
struct OpenConnections {
    next: u64,
    open: HashMap<u64, Arc<Activity>>,
}

type Registry = Arc<Mutex<OpenConnections>>;

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, OpenConnections> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes a connection off the registry when its task ends.
struct Registered {
    registry: Registry,
    id: u64,
}

impl Registered {
    fn new(registry: &Registry, activity: Arc<Activity>) -> Registered {
        let mut r = lock(registry);
        let id = r.next;
        r.next += 1;
        r.open.insert(id, activity);
        Registered {
            registry: Arc::clone(registry),
            id,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.registry).open.remove(&self.id);
    }
}

/// Asks `n` connections waiting for a request to close: those idle longest
/// between requests first, then those waiting longest for their request
/// ([`Activity::eviction_rank`]); how many were asked.
fn evict_waiting(registry: &Registry, n: usize) -> usize {
    let mut waiting: Vec<((u8, Instant), Arc<Activity>)> = lock(registry)
        .open
        .values()
        .filter_map(|a| a.eviction_rank().map(|rank| (rank, Arc::clone(a))))
        .collect();
    waiting.sort_by_key(|(rank, _)| *rank);
    waiting.truncate(n);
    for (_, a) in &waiting {
        a.evict();
    }
    waiting.len()
}

/// Whether an accept error means the process or system is out of
/// descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Logs accept failures at a bounded rate.
struct ShortageLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ShortageLog {
    fn note(&mut self, e: &io::Error, evicted: usize) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < SHORTAGE_LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        let also = match self.suppressed {
            0 => String::new(),
            n => format!(" ({n} more failed accepts since the last report)"),
        };
        if out_of_descriptors(e) {
            tracing::warn!(
                "accept failed, out of file descriptors: {e}; closed {evicted} connections waiting for a request to make room{also}"
            );
        } else {
            tracing::warn!(error = %e, "accept failed{also}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Resolves when `stop` turns true; never when its sender is gone.
pub(super) async fn until_stopping(mut stop: watch::Receiver<bool>) {
    let stopping = stop.wait_for(|stopping| *stopping).await.is_ok();
    if !stopping {
        std::future::pending::<()>().await;
    }
}

/// Serves HTTP/1.1 on one accepted connection (plain, or TLS once its
/// handshake is done) in a task of its own.
fn start_connection<S>(
    stream: S,
    info: ConnInfo,
    proxy: &watch::Receiver<Arc<Proxy>>,
    registry: &Registry,
    shutdown: &watch::Receiver<bool>,
    alive: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let current = Arc::clone(&proxy.borrow());
    let config = current.config();
    let activity = Activity::new();
    let registered = Registered::new(registry, Arc::clone(&activity));
    let counted = info.per_client.opened(info.client.ip());
    let stream = ClientIo::new(
        stream,
        current.stats(),
        Arc::clone(&activity),
        client_timeouts(&config),
    );
    let builder = http1_builder(&config);
    let header_max = usize::try_from(config.request_header_max_size.value).unwrap_or(usize::MAX);
    drop(current);
    let lean_proxy = proxy.clone();
    let proxy = proxy.clone();
    let conn_info = info.clone();
    let service_activity = Arc::clone(&activity);
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let proxy = Arc::clone(&proxy.borrow());
        let info = conn_info.clone();
        let activity = Arc::clone(&service_activity);
        async move {
            let connect = req.method() == Method::CONNECT;
            // RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
            let request = activity.request_started(
                !hyper::body::Body::is_end_stream(req.body()),
                req.version() == Version::HTTP_11,
            );
            let req = req.map(|body| IncomingBody::new(body, Arc::clone(&activity)));
            let span = proxy::request_span(&req);
            // Served so that its fetches find the connection; pinned in
            // place: `Serving` holds a reference, not a copy of the large
            // future.
            let resp = if span.is_disabled() {
                let dispatching = std::pin::pin!(proxy::dispatch(proxy, info, req));
                Serving::new(activity.sink_id(), dispatching).await
            } else {
                let handling = std::pin::pin!(proxy::handle(proxy, info, req, span));
                Serving::new(activity.sink_id(), handling).await
            };
            activity.interim_written(request).await;
            if connect && resp.status().is_success() {
                activity.tunnel_opened();
            }
            Ok::<_, Infallible>(resp.map(|body| TrackedBody::new(body, activity)))
        }
    });
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _registered = registered;
        let _counted = counted;
        let _alive = alive;
        let mut stream = stream;
        let lean = LeanConn {
            proxy: &lean_proxy,
            info: &info,
            activity: &activity,
            header_max,
        };
        let read = match lean::serve(&mut stream, &lean, &stop).await {
            Ended::Closed => return,
            Ended::HandOver(read) => read,
        };
        // Boxed: hyper's connection state is allocated at hand-over, not
        // reserved in the task of every connection the lean path serves.
        let mut conn = Box::pin(
            builder
                .serve_connection(TokioIo::new(Rewind::new(read, stream)), service)
                .with_upgrades(),
        );
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            () = until_stopping(stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(client = %info.client, error = %e, "connection ended");
        }
    });
}

/// Starts serving one accepted connection: plain at once, TLS after its
/// handshake, which runs in a task of its own so that a slow client never
/// holds up the accept loop.
fn accepted(
    stream: tokio::net::TcpStream,
    info: ConnInfo,
    tls: Option<TlsAcceptor>,
    proxy: &watch::Receiver<Arc<Proxy>>,
    registry: &Registry,
    shutdown: &watch::Receiver<bool>,
    alive: &watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        start_connection(stream, info, proxy, registry, shutdown, alive.clone());
        return;
    };
    let handshake_limit = proxy.borrow().config().request_start_timeout.value;
    let (proxy, registry, stop) = (proxy.clone(), Arc::clone(registry), shutdown.clone());
    let alive = alive.clone();
    tokio::spawn(async move {
        let handshake = tokio::time::timeout(handshake_limit, tls.accept(stream));
        // At shutdown a handshake is dropped: no request is in it.
        let done = tokio::select! {
            done = handshake => done,
            () = until_stopping(stop.clone()) => return,
        };
        match done {
            Ok(Ok(stream)) => start_connection(stream, info, &proxy, &registry, &stop, alive),
            // A peer's TCP probe (Squid's, cuttle's) connects and
            // closes without a byte: no failure worth a warning.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => tracing::debug!(
                "TLS handshake with {} on https_port {}: closed before a handshake ({e})",
                info.client, info.port_name
            ),
            Ok(Err(e)) => tracing::warn!(
                "TLS handshake with {} on https_port {} failed: {e}",
                info.client, info.port_name
            ),
            Err(_) => tracing::warn!(
                "TLS handshake with {} on https_port {} failed: not done in {handshake_limit:?} (request_start_timeout)",
                info.client, info.port_name
            ),
        }
    });
}

/// Serves every listener until `shutdown` turns true, then stops accepting
/// and waits up to `grace` for in-flight requests to finish.
///
/// Each listener's accept loop starts its connections itself and takes
/// every connection the kernel has queued each time it runs, outside
/// tokio's cooperative budget: with thousands of busy connections in the
/// run queue, an accept loop that yielded after each budget's worth (or
/// handed each connection to another task) ran once per pass over them,
/// and 10,000 clients connecting at once could overflow the listen queue,
/// whose dropped handshakes the kernel retries only after a second.
pub async fn serve(
    listeners: Vec<Listener>,
    proxy: watch::Receiver<Arc<Proxy>>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let registry: Registry = Arc::default();
    let per_client = PerClient::default();
    // Every connection task holds a receiver: the sender's `closed()` is
    // the moment the last one ended (the accept loops' own go with them).
    let (alive, alive_rx) = watch::channel(());
    let mut accepters = Vec::new();
    for l in listeners {
        let mut stop = shutdown.clone();
        let name: Arc<str> = Arc::from(l.name.as_str());
        let registry = Arc::clone(&registry);
        let per_client = per_client.clone();
        let (proxy, alive) = (proxy.clone(), alive_rx.clone());
        let shutdown = shutdown.clone();
        accepters.push(tokio::spawn(tokio::task::unconstrained(async move {
            let mut log = ShortageLog {
                last: None,
                suppressed: 0,
            };
            loop {
                tokio::select! {
                    accepted_conn = l.listener.accept() => match accepted_conn {
                        Ok((stream, client)) => {
                            let local = stream.local_addr().unwrap_or(client);
                            let info = ConnInfo { client, local, kind: l.kind.clone(), port_name: Arc::clone(&name), per_client: per_client.clone() };
                            accepted(stream, info, l.tls.clone(), &proxy, &registry, &shutdown, &alive);
                        }
                        Err(e) => {
                            let evicted = if out_of_descriptors(&e) {
                                evict_waiting(&registry, EVICT_BATCH)
                            } else {
                                0
                            };
                            log.note(&e, evicted);
                            // Let the evicted connections close (or, with
                            // none to close, do not spin).
                            tokio::time::sleep(if evicted > 0 {
                                EVICTION_PAUSE
                            } else {
                                ACCEPT_BACKOFF
                            })
                            .await;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        })));
    }
    drop(alive_rx);
    // Any change is shutdown, and so is its sender going away.
    let _ = shutdown.changed().await;
    for a in accepters {
        a.abort();
        // Dropped (and its receiver of `alive` with it) before the wait.
        let _ = a.await;
    }
    tracing::info!(grace = ?grace, "stopped accepting; waiting for requests in flight");
    if tokio::time::timeout(grace, alive.closed()).await.is_err() {
        tracing::warn!("shutdown_lifetime passed with requests still in flight; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_out_of_descriptors_errors_evict() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_connections_are_evicted_first() {
        let registry: Registry = Arc::default();
        // Waiting longest of all, but for its first request: after the
        // keep-alive ones all the same.
        let never_asked = Activity::new();
        let busy = Activity::new();
        busy.request_started(false, true);
        let mut idle = Vec::new();
        for _ in 0..3 {
            let a = Activity::new();
            a.request_started(false, true);
            a.response_ended();
            idle.push(a);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let held: Vec<Registered> = [&busy, &idle[2], &idle[0], &idle[1], &never_asked]
            .into_iter()
            .map(|a| Registered::new(&registry, Arc::clone(a)))
            .collect();
        assert_eq!(evict_waiting(&registry, 2), 2);
        assert!(
            idle[0].evicted() && idle[1].evicted(),
            "the two idle longest"
        );
        assert!(!idle[2].evicted());
        assert!(!busy.evicted(), "a request in flight is never cut");
        assert!(!never_asked.evicted(), "keep-alive connections first");
        assert_eq!(evict_waiting(&registry, 2), 2, "not the same ones again");
        assert!(idle[2].evicted());
        assert!(never_asked.evicted(), "then those waiting for a request");
        assert_eq!(evict_waiting(&registry, 8), 0);
        drop(held);
        assert!(lock(&registry).open.is_empty(), "ended connections leave");
    }
}
