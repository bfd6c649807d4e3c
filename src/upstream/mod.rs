//! The HTTP client cuttle fetches with: to origin servers and peers, in
//! cleartext or over TLS ([`tls`]). One keep-alive pool per (host, port,
//! local address, TLS identity): a connection goes back to its pool when
//! the response body it carried has been read to the end.
//! Failures are classified the way Squid names them on its error pages.
//! A response that came over a connection made for it carries the TCP
//! handshake time ([`NewConnection`]), which the NetDB behind ICP's
//! SRC_RTT answers is fed from.
//!
//! Traffic is counted for the cache manager's `server.*` lines.
//!
//! 1xx interim responses (103 Early Hints, 102 Processing) are relayed as
//! they arrive (RFC 9110 15.2) to the client connection whose request
//! caused the fetch ([`interim`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub mod interim;
pub mod tls;
pub use interim::{interim_target, relaying_interim, InterimSink, InterimTarget};
pub use tls::{TlsClient, TlsClients};

/// Why a fetch failed, in Squid's terms (the error page names).
#[derive(Debug)]
pub enum FetchError {
    /// The host name did not resolve (ERR_DNS_FAIL).
    Dns { host: String, reason: String },
    /// No address accepted a connection in time (ERR_CONNECT_FAIL).
    Connect { host: String, reason: String },
    /// The TLS handshake failed: a certificate refused, no common
    /// protocol... (Squid's 503 ERR_SECURE_CONNECT_FAIL). A connect
    /// failure for the peer's health.
    SecureConnect { host: String, reason: String },
    /// The server took too long to answer (ERR_READ_TIMEOUT).
    Timeout,
    /// The server broke the protocol or closed early (ERR_READ_ERROR).
    Read(String),
    /// The request's own body failed while being sent (the body handed to
    /// [`Upstream::send`] returned a [`RequestBodyError`]): a client's
    /// malformed or cut-short body, its error (ERR_INVALID_REQ), which
    /// says nothing about the server.
    RequestBody(String),
    /// The server's reply head was over `reply_header_max_size`
    /// (Squid's 502 ERR_TOO_BIG).
    TooBig(String),
}

/// The error a request body given to [`Upstream::send`] fails with when it
/// cannot be read from whoever supplies it (a client's malformed chunking,
/// a client gone mid-body), so the failure is classified
/// [`FetchError::RequestBody`], not blamed on the server.
#[derive(Debug)]
pub struct RequestBodyError(pub String);

impl std::fmt::Display for RequestBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RequestBodyError {}

/// A failed exchange, in Squid's terms: the request body's own failure if
/// that is what stopped it, else what [`read_error`] makes of it.
fn classify(e: hyper::Error) -> FetchError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(body) = c.downcast_ref::<RequestBodyError>() {
            return FetchError::RequestBody(body.0.clone());
        }
        cause = c.source();
    }
    read_error(&e)
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Dns { host, reason } => write!(f, "cannot resolve {host}: {reason}"),
            FetchError::Connect { host, reason } => write!(f, "cannot connect to {host}: {reason}"),
            FetchError::SecureConnect { host, reason } => {
                write!(f, "TLS handshake with {host} failed: {reason}")
            }
            FetchError::Timeout => f.write_str("read timeout"),
            FetchError::Read(reason) => write!(f, "read error: {reason}"),
            FetchError::RequestBody(reason) => {
                write!(f, "the client's request body could not be read: {reason}")
            }
            FetchError::TooBig(reason) => write!(f, "reply too big: {reason}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A failure to get a reply head, in Squid's terms.
fn read_error(e: &hyper::Error) -> FetchError {
    if e.is_parse_too_large() {
        FetchError::TooBig(e.to_string())
    } else {
        FetchError::Read(e.to_string())
    }
}

/// In the extensions of a response that came over a new connection (not
/// one from the pool): how long its TCP handshake with the server took,
/// about one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConnection {
    pub handshake: Duration,
}

/// Timeouts for fetching (squid.conf's `connect_timeout`, `read_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(60),
            read: Duration::from_secs(15 * 60),
        }
    }
}

/// A connection's request half and the address it is connected to.
type Sender<B> = (SendRequest<B>, SocketAddr);
/// (server host, server port, local address bound: tcp_outgoing_address,
/// TLS identity: `None` for cleartext, the IP TOS / traffic class its
/// packets are marked with: `None` for the kernel's).
type PoolKey = (String, u16, Option<IpAddr>, Option<Arc<str>>, Option<u32>);

struct Pool<B> {
    idle: Mutex<HashMap<PoolKey, Vec<Sender<B>>>>,
}

/// Server-side traffic since start (Squid's `server.all.*`, all of it
/// HTTP): requests sent to origins and peers, the ones that failed, and
/// bytes written and read (heads and bodies).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// The client. Cheap to clone.
pub struct Upstream<B> {
    pool: Arc<Pool<B>>,
    timeouts: Timeouts,
    /// `reply_header_max_size`: bytes of a reply's status line and fields;
    /// a larger head is a read error (Squid's 502).
    reply_header_max: usize,
    counters: Arc<Counters>,
    /// The TOS byte (IPv4) or traffic class (IPv6) of the connections this
    /// client opens: DSCP CS1 for low-priority fetches; `None`: unmarked.
    tos: Option<u32>,
}

/// DSCP CS1 ("lower effort", RFC 8622) as a TOS byte: DSCP 8 << 2.
pub const TOS_LOWER_EFFORT: u32 = 0x20;

impl<B> Clone for Upstream<B> {
    fn clone(&self) -> Self {
        Upstream {
            pool: Arc::clone(&self.pool),
            timeouts: self.timeouts,
            reply_header_max: self.reply_header_max,
            counters: Arc::clone(&self.counters),
            tos: self.tos,
        }
    }
}

impl<B> Upstream<B> {
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The same client (pool, counters) with another
    /// `reply_header_max_size`, for connections made from now on.
    pub fn with_reply_header_max_size(mut self, bytes: u64) -> Self {
        self.reply_header_max = usize::try_from(bytes).unwrap_or(usize::MAX);
        self
    }

    /// The same client (pool, counters) whose connections are marked with
    /// `tos` (e.g. [`TOS_LOWER_EFFORT`]); they are pooled apart from the
    /// unmarked ones, so a marked request never rides an unmarked
    /// connection nor the reverse.
    pub fn marked(&self, tos: u32) -> Self {
        Upstream {
            tos: Some(tos),
            ..self.clone()
        }
    }
}

/// Bytes of a request head on the wire (request line, fields, blank line),
/// plus its body when the length is known.
fn request_size<B: Body>(req: &Request<B>) -> u64 {
    let line = req.method().as_str().len() + 1 + req.uri().to_string().len() + 11;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    (line + fields + 2) as u64 + req.body().size_hint().exact().unwrap_or(0)
}

/// Bytes of a response head on the wire.
fn response_head_size<B>(resp: &Response<B>) -> u64 {
    let line = 13 + resp.status().canonical_reason().map_or(0, str::len) + 2;
    let fields: usize = resp
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    (line + fields + 2) as u64
}

// Limits of hyper's HTTP/1 parser, for replies here and for requests in
// the proxy server.

/// hyper's default read buffer limit (about 400 KB); raised when a
/// request header may be larger.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;
/// The shortest header field line ("a:" and a bare LF, which hyper
/// accepts): the field count that cannot bind before a byte limit does.
const SHORTEST_FIELD: usize = 3;
/// hyper also wants a field count; this many fill Squid's default 64 KB of
/// head and cost hyper 1.4 MB of parser space per head (64 bytes a field).
const MAX_HEADER_FIELDS: usize = DEFAULT_HEADER_MAX_SIZE as usize / SHORTEST_FIELD + 1;

/// hyper's field count for a header of at most `bytes`: never the limit
/// that binds first, up to [`MAX_HEADER_FIELDS`].
pub fn header_field_limit(bytes: usize) -> usize {
    (bytes / SHORTEST_FIELD + 1).min(MAX_HEADER_FIELDS)
}

/// The field count for client request heads. hyper prepares parser space
/// for its whole limit on every head it parses (64 bytes a field): at
/// [`MAX_HEADER_FIELDS`] that cost 5 times the throughput of 1 KiB hits
/// (`benches/hits.sh`), at 256 fields about 10%. Reply heads, parsed once
/// per fetch, keep the limit by bytes alone.
pub const MAX_REQUEST_HEADER_FIELDS: usize = 256;

/// hyper's field count for a request header of at most `bytes`.
pub fn request_field_limit(bytes: usize) -> usize {
    header_field_limit(bytes).min(MAX_REQUEST_HEADER_FIELDS)
}

/// hyper's read buffer limit for a header of at most `bytes`.
pub fn read_buffer_limit(bytes: usize) -> usize {
    HYPER_DEFAULT_MAX_BUF.max(bytes.saturating_add(8192))
}

/// Squid's default `reply_header_max_size` (and `request_header_max_size`).
pub const DEFAULT_HEADER_MAX_SIZE: u64 = 64 * 1024;

/// Idle connections kept per server.
const MAX_IDLE_PER_SERVER: usize = 32;

impl<B> Upstream<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(timeouts: Timeouts) -> Self {
        Upstream {
            pool: Arc::new(Pool {
                idle: Mutex::new(HashMap::new()),
            }),
            timeouts,
            reply_header_max: DEFAULT_HEADER_MAX_SIZE as usize,
            counters: Arc::default(),
            tos: None,
        }
    }

    /// Sends `req` to `host:port` over a pooled or new connection and
    /// returns the response with the server's address. The request must
    /// already be in the form the server expects (origin-form for origins,
    /// absolute-form for proxies) with its Host header.
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        req: Request<B>,
    ) -> Result<(Response<PooledBody<B>>, SocketAddr), FetchError> {
        self.send_from(host, port, None, None, None, req).await
    }

    /// [`Upstream::send`] from the local address `local`
    /// (`tcp_outgoing_address`; `None` = the kernel's choice), connecting
    /// within `connect_timeout` (a peer's connect-timeout=; `None` = the
    /// configured connect_timeout), over TLS with `tls` when given.
    pub async fn send_from(
        &self,
        host: &str,
        port: u16,
        local: Option<IpAddr>,
        connect_timeout: Option<Duration>,
        tls: Option<&TlsClient>,
        mut req: Request<B>,
    ) -> Result<(Response<PooledBody<B>>, SocketAddr), FetchError> {
        interim::relay_interim_of(&mut req);
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.bytes_out.fetch_add(request_size(&req), Ordering::Relaxed);
        let sent = self
            .send_counted(host, port, local, connect_timeout, tls, req)
            .await;
        // A client's bad request body is no server error.
        if matches!(&sent, Err(e) if !matches!(e, FetchError::RequestBody(_))) {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    async fn send_counted(
        &self,
        host: &str,
        port: u16,
        local: Option<IpAddr>,
        connect_timeout: Option<Duration>,
        tls: Option<&TlsClient>,
        req: Request<B>,
    ) -> Result<(Response<PooledBody<B>>, SocketAddr), FetchError> {
        let identity = tls.map(|t| Arc::clone(t.identity()));
        let key = (host.to_ascii_lowercase(), port, local, identity, self.tos);
        let mut req = Some(req);
        // A pooled connection may have been closed by the server meanwhile:
        // retry once on a fresh one when the reused one fails before sending.
        if let Some((mut sender, addr)) = self.take_idle(&key) {
            if let Some(r) = req.take() {
                let sent = tokio::time::timeout(self.timeouts.read, sender.try_send_request(r))
                    .await
                    .map_err(|_| FetchError::Timeout)?;
                match sent {
                    Ok(resp) => return Ok((self.wrap(resp, (sender, addr), key), addr)),
                    Err(mut e) => match e.take_message() {
                        Some(back) => req = Some(back),
                        None => return Err(classify(e.into_error())),
                    },
                }
            }
        }
        let Some(req) = req else {
            return Err(FetchError::Read("request lost".into()));
        };
        let timeout = connect_timeout.unwrap_or(self.timeouts.connect);
        let ((mut sender, addr), handshake) = self.connect(host, port, local, timeout, tls).await?;
        let mut resp = tokio::time::timeout(self.timeouts.read, sender.send_request(req))
            .await
            .map_err(|_| FetchError::Timeout)?
            .map_err(|e| match tls.and_then(|_| tls::refusal(&e)) {
                // TLS 1.3: the server judges our certificate after our
                // handshake is over; its refusal comes with the first read.
                Some(reason) => FetchError::SecureConnect {
                    host: host.to_string(),
                    reason: format!("{addr}: {reason}"),
                },
                None => classify(e),
            })?;
        resp.extensions_mut().insert(NewConnection { handshake });
        Ok((self.wrap(resp, (sender, addr), key), addr))
    }

    /// A plain TCP connection to `host:port` (for CONNECT tunnels).
    pub async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr), FetchError> {
        self.connect_tcp_from(host, port, None, self.timeouts.connect)
            .await
    }

    /// A plain TCP connection to `host:port` from the local address `local`
    /// (port chosen by the kernel), each address tried for `timeout`.
    pub async fn connect_tcp_from(
        &self,
        host: &str,
        port: u16,
        local: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<(TcpStream, SocketAddr), FetchError> {
        self.connect_timed(host, port, local, timeout)
            .await
            .map(|(stream, addr, _)| (stream, addr))
    }

    /// [`Upstream::connect_tcp_from`], with how long the handshake with the
    /// address that accepted took.
    async fn connect_timed(
        &self,
        host: &str,
        port: u16,
        local: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<(TcpStream, SocketAddr, Duration), FetchError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| FetchError::Dns {
                host: host.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(FetchError::Dns {
                host: host.to_string(),
                reason: "no address".into(),
            });
        }
        let mut last = String::from("no address tried");
        for addr in addrs {
            let start = Instant::now();
            match tokio::time::timeout(timeout, connect_marked(addr, local, self.tos)).await {
                Ok(Ok(stream)) => {
                    let handshake = start.elapsed();
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr, handshake));
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        Err(FetchError::Connect {
            host: host.to_string(),
            reason: last,
        })
    }

    fn wrap(
        &self,
        resp: Response<Incoming>,
        sender: Sender<B>,
        key: PoolKey,
    ) -> Response<PooledBody<B>> {
        let keep = !resp
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let pool = Arc::downgrade(&self.pool);
        self.counters
            .bytes_in
            .fetch_add(response_head_size(&resp), Ordering::Relaxed);
        let counters = Arc::clone(&self.counters);
        resp.map(|inner| PooledBody {
            inner,
            back: keep.then_some((sender, key, pool)),
            counters,
        })
    }

    fn take_idle(&self, key: &PoolKey) -> Option<Sender<B>> {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(sender) = list.pop() {
            if sender.0.is_ready() && !sender.0.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(
        &self,
        host: &str,
        port: u16,
        local: Option<IpAddr>,
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> Result<(Sender<B>, Duration), FetchError> {
        let (stream, addr, handshake) = self.connect_timed(host, port, local, timeout).await?;
        let sender = match tls {
            None => self.http1(host, stream).await?,
            Some(tls) => {
                let secure_fail = |reason: String| FetchError::SecureConnect {
                    host: host.to_string(),
                    reason,
                };
                let name = tls.server_name(host).map_err(secure_fail)?;
                let connector = tokio_rustls::TlsConnector::from(tls.config());
                let stream = tokio::time::timeout(timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| secure_fail(format!("{addr}: TLS handshake timed out")))?
                    .map_err(|e| secure_fail(format!("{addr}: {e}")))?;
                self.http1(host, stream).await?
            }
        };
        Ok(((sender, addr), handshake))
    }

    /// An HTTP/1.1 client connection over `io`, driven by a task of its own.
    async fn http1<T>(&self, host: &str, io: T) -> Result<SendRequest<B>, FetchError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_header_size(self.reply_header_max)
            .max_headers(header_field_limit(self.reply_header_max))
            .max_buf_size(READ_BUFFER.max(self.reply_header_max.saturating_add(8192)))
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| FetchError::Connect {
                host: host.to_string(),
                reason: e.to_string(),
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// What hyper's read buffer for a server grows to (its default is
/// 408 KiB), so about the most one read takes. A body chunk is a view of
/// that buffer and keeps its allocation alive while a fetch's read-ahead
/// window holds it: this bounds the memory a stalled client costs. Raised
/// to hold a reply head of `reply_header_max_size` when that is larger.
const READ_BUFFER: usize = 64 * 1024;

/// Connects to `addr`, first binding `local` when it is of the same family
/// (a v4 tcp_outgoing_address does not apply to a v6 server, as in Squid).
pub async fn connect_from(addr: SocketAddr, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    connect_marked(addr, local, None).await
}

/// [`connect_from`] with every packet, the SYN included, marked with `tos`
/// (IP_TOS for IPv4, IPV6_TCLASS for IPv6). A mark the kernel refuses is
/// no reason to fail the fetch: it goes unmarked.
pub async fn connect_marked(
    addr: SocketAddr,
    local: Option<IpAddr>,
    tos: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(tos) = tos {
        let s = socket2::SockRef::from(&socket);
        let marked = match addr {
            SocketAddr::V4(_) => s.set_tos_v4(tos),
            SocketAddr::V6(_) => s.set_tclass_v6(tos),
        };
        if let Err(e) = marked {
            tracing::debug!(%addr, tos, error = %e, "could not mark the connection");
        }
    }
    if let Some(ip) = local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// A response body that returns its connection to the pool once read to
/// the end (a body dropped half-read takes its connection with it).
pub struct PooledBody<B> {
    inner: Incoming,
    back: Option<(Sender<B>, PoolKey, Weak<Pool<B>>)>,
    /// Body bytes read count as `server.all.kbytes_in`.
    counters: Arc<Counters>,
}

impl<B> PooledBody<B> {
    fn give_back(&mut self) {
        if let Some((sender, key, pool)) = self.back.take() {
            if let Some(pool) = pool.upgrade() {
                let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = idle.entry(key).or_default();
                if list.len() < MAX_IDLE_PER_SERVER {
                    list.push(sender);
                }
            }
        }
    }
}

impl<B: Unpin> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counters
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        if this.inner.is_end_stream() {
            this.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A keep-alive server on `ip` answering every request with "ok";
    /// returns its port and a count of connections accepted.
    async fn server(ip: &str) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(answer_ok(s));
            }
        });
        (port, accepted)
    }

    /// Answers every request on `s` with "ok", keeping the connection.
    pub(super) async fn answer_ok<S>(mut s: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if s.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    }

    /// A request body that fails at once, as a client's bad chunking does.
    struct FailingBody;

    impl Body for FailingBody {
        type Data = Bytes;
        type Error = RequestBodyError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
            Poll::Ready(Some(Err(RequestBodyError("invalid chunk size".into()))))
        }
    }

    #[tokio::test]
    async fn a_failing_request_body_is_its_own_error_not_the_servers() {
        let (port, _) = server("127.0.8.1").await;
        let up: Upstream<FailingBody> = Upstream::new(Timeouts::default());
        let post = Request::post("/")
            .header("host", "127.0.8.1")
            .header("transfer-encoding", "chunked")
            .body(FailingBody)
            .expect("request");
        match up.send("127.0.8.1", port, post).await {
            Err(FetchError::RequestBody(reason)) => assert_eq!(reason, "invalid chunk size"),
            other => panic!("{:?}", other.map(|(r, _)| r.status())),
        }
        assert_eq!(up.counters().errors.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_new_connection_carries_its_handshake_time_and_a_pooled_one_does_not() {
        let (port, accepted) = server("127.0.8.1").await;
        let up: Upstream<Empty<Bytes>> = Upstream::new(Timeouts::default());
        let get = || {
            Request::get("/")
                .header("host", "127.0.8.1")
                .body(Empty::new())
                .expect("request")
        };
        let (resp, _) = up.send("127.0.8.1", port, get()).await.expect("first");
        let first = resp.extensions().get::<NewConnection>().copied();
        assert!(first.is_some(), "a new connection is marked");
        // Read to the end: the connection goes back to the pool.
        resp.into_body().collect().await.expect("body");
        let (resp, _) = up.send("127.0.8.1", port, get()).await.expect("second");
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "reused"
        );
        assert_eq!(resp.extensions().get::<NewConnection>(), None);
    }

    /// Answers the first request of each connection with `reply`.
    async fn replying(reply: Vec<u8>) -> u16 {
        let listener = tokio::net::TcpListener::bind(("127.0.8.2", 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let _ = s.write_all(&reply).await;
                });
            }
        });
        port
    }

    /// Squid limits a reply head by bytes only: the densest head that fits
    /// in 64 KB (one field per 3 bytes, "a:" and a bare LF) is read, and one
    /// byte more is ERR_TOO_BIG.
    #[tokio::test]
    async fn reply_heads_are_limited_by_bytes_not_fields() {
        let status = b"HTTP/1.1 200 OK\n".as_slice();
        let end = b"Content-Length: 0\n\n".as_slice();
        let fields = (DEFAULT_HEADER_MAX_SIZE as usize - status.len() - end.len()) / 3;
        let head = |fields: usize, pad: &[u8]| [status, &b"a:\n".repeat(fields), pad, end].concat();
        let densest = head(fields, b"");
        assert!(densest.len() <= DEFAULT_HEADER_MAX_SIZE as usize);
        assert!(fields > 21_000, "{fields}");
        let over = head(
            fields,
            &b"b".repeat(DEFAULT_HEADER_MAX_SIZE as usize + 1 - densest.len()),
        );
        let get = || {
            Request::get("/")
                .header("host", "127.0.8.2")
                .body(Empty::<Bytes>::new())
                .expect("request")
        };
        let up: Upstream<Empty<Bytes>> = Upstream::new(Timeouts::default());
        let port = replying(densest).await;
        let (resp, _) = up.send("127.0.8.2", port, get()).await.expect("densest");
        assert_eq!(resp.headers().get_all("a").iter().count(), fields);
        let port = replying(over).await;
        match up.send("127.0.8.2", port, get()).await {
            Err(FetchError::TooBig(_)) => {}
            other => panic!("one byte over: {:?}", other.map(|(r, _)| r.status())),
        }
    }
}
