//! A client connection as hyper reads it: counts the bytes clients send
//! (`client_http.kbytes_in`), makes Squid's cache manager URL parsable,
//! answers the HTTP/2 preface as Squid does, and closes connections that
//! wait too long, with Squid's timeouts.
//!
//! `squidclient mgr:info` and the Prometheus squid exporter send
//! `GET cache_object://HOST/info HTTP/1.0`. RFC 3986 allows no `_` in a
//! scheme, so hyper would answer 400 before cuttle saw the request. The
//! first request line of a connection is therefore read ahead, and a
//! target starting `cache_object:` (any case) is handed to hyper as
//! `cache-object:` (same length, so nothing else moves); the manager
//! recognises that spelling. Only the first request of a connection is
//! looked at: those tools send one request per connection, and the
//! manager's answer closes it, as Squid's does.
//!
//! An http_port speaks HTTP/1 only. A connection opening with the HTTP/2
//! preface (`PRI * HTTP/2.0`) is handed to hyper as the HTTP/1.1 request
//! `PRI *` with `Connection: close`, which the proxy answers 400
//! ERR_INVALID_URL, as Squid 5.7 does; nothing after that line is read.
//!
//! The timeouts depend on what the connection is doing, which its service
//! and bodies report to an [`Activity`]: before the first byte,
//! `request_start_timeout` (from the accept); while a request head is
//! incomplete, `request_timeout` (from the accept for the first request,
//! from its first byte for later ones); between requests,
//! `client_idle_pconn_timeout`; while the proxy waits for more of a request
//! body, `read_timeout`. A connection that waits too long for a request is
//! closed quietly (as Squid does); a stalled body is a read error, which
//! ends the request and the connection. Tunnels (CONNECT) are not timed
//! here.
//!
//! 1xx interim responses an origin sends (103 Early Hints, 102) are written
//! here, as hyper's server has no way to send them: a fetch relays them to
//! the connection's [`Activity`] ([`InterimSink`]), which queues their
//! bytes and wakes the connection's task; its next flush writes them. hyper
//! flushes through to this IO only with nothing of its own buffered, so an
//! interim response never lands inside an earlier response, and the
//! request's service holds its final response back until they are written
//! ([`Activity::interim_written`]), so none comes after it. A request that
//! never fetches (a hit) takes no lock for this: a few plain atomic loads
//! and stores.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::stats::Stats;
use crate::upstream::interim::SinkId;
use crate::upstream::InterimSink;

mod interim;
use interim::{
    interim_head, interim_phase, InterimQueue, INTERIM_ARMED, INTERIM_FINAL, INTERIM_IDLE,
    INTERIM_PHASE_BITS, MAX_INTERIM_QUEUED,
};

/// The scheme as Squid's tools send it, and as hyper is given it.
const SQUID_SCHEME: &[u8] = b"cache_object:";
/// Enough of a request line to decide: a method, a space, the scheme.
const LOOKAHEAD: usize = 64;
/// The first line of the HTTP/2 connection preface (RFC 9113, 3.4).
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// What hyper is given instead: an HTTP/1 request the proxy refuses.
const H2_PREFACE_AS_HTTP1: &[u8] = b"PRI * HTTP/1.1\r\nConnection: close\r\n\r\n";

/// How long a client connection may wait, in each state (squid.conf's
/// values when the connection was accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// `request_start_timeout`: for the first byte.
    pub request_start: Duration,
    /// `request_timeout`: for a complete request head.
    pub request: Duration,
    /// `client_idle_pconn_timeout`: between requests.
    pub idle: Duration,
    /// `read_timeout`: while the proxy waits for more of a request body.
    pub read: Duration,
}

#[derive(Debug)]
struct ActivityState {
    accepted: Instant,
    /// Requests handed to the proxy so far.
    requests: u64,
    /// A request is being answered: its response has not ended.
    in_flight: bool,
    /// The request in flight has a body that has not been read to its end.
    body_open: bool,
    /// Since when the proxy has been waiting for more of that body. Only
    /// then is a quiet client stalling it: when the proxy does not ask
    /// (its server is slow to take the body), hyper does not read.
    body_wanted_since: Option<Instant>,
    /// The connection became a tunnel (CONNECT): bytes, not requests.
    tunnel: bool,
    /// When the last response ended.
    idle_since: Option<Instant>,
    /// When the request head being read began, once it has.
    head_started: Option<Instant>,
    /// Close the connection while it waits for a request (descriptors are
    /// short).
    evict: bool,
    /// The task reading the connection, to wake on changes.
    reader: Option<Waker>,
    /// Interim responses for the request in flight.
    interim: InterimQueue,
}

/// What a client connection is doing, shared by its reader ([`ClientIo`]),
/// its service and the bodies of its requests and responses.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<ActivityState>,
    /// The request in flight's number and its interim phase
    /// ([`INTERIM_ARMED`] and the others), lock-free so that a request
    /// that never fetches costs no lock for it.
    interim_phase: AtomicU64,
    /// Where the fetches of its requests find it.
    sink_id: SinkId,
}

/// Why a waiting read ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No request, or an incomplete one: close quietly.
    Quiet,
    /// A request body stalled.
    BodyStalled,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new_cyclic(|me: &std::sync::Weak<Activity>| Activity {
            state: Mutex::new(ActivityState {
                accepted: Instant::now(),
                requests: 0,
                in_flight: false,
                body_open: false,
                body_wanted_since: None,
                tunnel: false,
                idle_since: None,
                head_started: None,
                evict: false,
                reader: None,
                interim: InterimQueue::default(),
            }),
            interim_phase: AtomicU64::new(interim_phase(0, INTERIM_FINAL)),
            sink_id: SinkId::register(me.clone()),
        })
    }

    /// Where the fetches of its requests find this connection
    /// ([`crate::upstream::interim::Serving`]).
    pub fn sink_id(&self) -> &SinkId {
        &self.sink_id
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request head was parsed and goes to the proxy; its number on the
    /// connection (from 1). `interim`: its client may get interim
    /// responses (RFC 9110 15.2: not an HTTP/1.0 one).
    pub fn request_started(&self, has_body: bool, interim: bool) -> u64 {
        let mut s = self.lock();
        s.requests += 1;
        s.in_flight = true;
        s.body_open = has_body;
        s.body_wanted_since = None;
        s.idle_since = None;
        s.head_started = None;
        if !s.interim.bytes.is_empty() {
            // Left by an earlier request that ended early.
            s.interim.bytes.clear();
            s.interim.written = 0;
        }
        s.interim.waiter = None;
        let phase = if interim { INTERIM_IDLE } else { INTERIM_FINAL };
        self.interim_phase
            .store(interim_phase(s.requests, phase), Ordering::Release);
        s.requests
    }

    /// Waits until the interim responses relayed for `request` are written,
    /// then lets no more come: its final response goes next. Immediate when
    /// no fetch of the request could relay any.
    pub fn interim_written(&self, request: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_interim_written(request, cx))
    }

    fn poll_interim_written(&self, request: u64, cx: &mut Context<'_>) -> Poll<()> {
        let armed = interim_phase(request, INTERIM_ARMED);
        let closed = interim_phase(request, INTERIM_FINAL);
        if self.interim_phase.load(Ordering::Acquire) != armed {
            // An arm racing this store fails to relay: relays check the
            // phase under the lock, and flushes write only while armed.
            self.interim_phase.store(closed, Ordering::Release);
            return Poll::Ready(());
        }
        let mut s = self.lock();
        let q = &mut s.interim;
        if q.written < q.bytes.len() {
            match &q.waiter {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => q.waiter = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        q.bytes.clear();
        q.written = 0;
        q.waiter = None;
        q.flusher = None;
        self.interim_phase.store(closed, Ordering::Release);
        Poll::Ready(())
    }

    /// Whether the connection's flushes must look at the interim queue.
    fn interim_armed(&self) -> bool {
        self.interim_phase.load(Ordering::Acquire) & ((1 << INTERIM_PHASE_BITS) - 1)
            == INTERIM_ARMED
    }

    /// The request in flight became a tunnel.
    pub fn tunnel_opened(&self) {
        self.lock().tunnel = true;
    }

    fn body_ended(&self) {
        let mut s = self.lock();
        s.body_open = false;
        s.body_wanted_since = None;
    }

    /// The proxy asked for more of the request body and must wait.
    fn body_wanted(&self) {
        self.lock()
            .body_wanted_since
            .get_or_insert_with(Instant::now);
    }

    /// The proxy got a piece of the request body.
    fn body_delivered(&self) {
        self.lock().body_wanted_since = None;
    }

    /// The response in flight was sent (or abandoned).
    pub fn response_ended(&self) {
        let mut s = self.lock();
        if !s.in_flight {
            return;
        }
        s.in_flight = false;
        s.body_open = false;
        s.idle_since = Some(Instant::now());
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
    }

    /// Where the connection stands in line to be closed when descriptors
    /// run out, if it may be: first (0) keep-alive connections idle between
    /// requests, by when they became idle; then (1) connections waiting
    /// for a request head (nothing sent yet, or part of a head), by when
    /// they began waiting. Never one with a request in flight or a tunnel.
    pub fn eviction_rank(&self) -> Option<(u8, Instant)> {
        let s = self.lock();
        // One already asked to close is on its way out.
        if s.in_flight || s.tunnel || s.evict {
            return None;
        }
        Some(match (s.idle_since, s.head_started) {
            (Some(idle), None) => (0, idle),
            (_, Some(started)) => (1, started),
            (None, None) => (1, s.accepted),
        })
    }

    /// Closes the connection if it is still waiting for a request.
    pub fn evict(&self) {
        let mut s = self.lock();
        s.evict = true;
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
    }

    /// Bytes arrived from the client.
    fn note_bytes(&self) {
        let mut s = self.lock();
        if !s.in_flight && s.head_started.is_none() {
            // Squid times the first request from the connection's start.
            s.head_started = Some(if s.requests == 0 {
                s.accepted
            } else {
                Instant::now()
            });
        }
    }

    /// When a read pending since `waiting_since` must end, and how.
    fn deadline(&self, t: &ClientTimeouts, waiting_since: Instant) -> Option<(Instant, Expiry)> {
        let s = self.lock();
        if s.tunnel {
            None
        } else if s.in_flight {
            let wanted = s.body_wanted_since.filter(|_| s.body_open)?;
            Some((wanted.max(waiting_since) + t.read, Expiry::BodyStalled))
        } else if let Some(started) = s.head_started {
            Some((started + t.request, Expiry::Quiet))
        } else if let Some(idle) = s.idle_since {
            Some((idle + t.idle, Expiry::Quiet))
        } else {
            Some((s.accepted + t.request_start, Expiry::Quiet))
        }
    }

    /// Whether the connection was asked to close and is still waiting for
    /// a request.
    pub(super) fn evicted(&self) -> bool {
        let s = self.lock();
        s.evict && !s.in_flight && !s.tunnel
    }

    fn park(&self, waker: &Waker) {
        let mut s = self.lock();
        match &s.reader {
            Some(w) if w.will_wake(waker) => {}
            _ => s.reader = Some(waker.clone()),
        }
    }
}

impl InterimSink for Activity {
    fn relayable_request(&self) -> Option<u64> {
        let phase = self.interim_phase.load(Ordering::Acquire);
        (phase & ((1 << INTERIM_PHASE_BITS) - 1) != INTERIM_FINAL)
            .then_some(phase >> INTERIM_PHASE_BITS)
    }

    fn arm(&self, request: u64) -> bool {
        let armed = interim_phase(request, INTERIM_ARMED);
        match self.interim_phase.compare_exchange(
            interim_phase(request, INTERIM_IDLE),
            armed,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(now) => now == armed,
        }
    }

    fn relay(&self, request: u64, status: StatusCode, fields: &HeaderMap) {
        let head = interim_head(status, fields);
        let mut s = self.lock();
        // Checked under the lock: the final response is not on its way.
        if self.interim_phase.load(Ordering::Acquire) != interim_phase(request, INTERIM_ARMED) {
            return;
        }
        let q = &mut s.interim;
        if q.bytes.len() - q.written + head.len() > MAX_INTERIM_QUEUED {
            tracing::debug!(status = %status, "interim response dropped: too many queued");
            return;
        }
        q.bytes.extend_from_slice(&head);
        let flusher = q.flusher.clone();
        drop(s);
        if let Some(w) = flusher {
            w.wake();
        }
    }
}

/// A client's request body as hyper delivers it; tells the connection's
/// [`Activity`] when it has been read to its end (or given up).
pub struct IncomingBody {
    inner: Incoming,
    activity: Option<Arc<Activity>>,
}

impl IncomingBody {
    pub fn new(inner: Incoming, activity: Arc<Activity>) -> IncomingBody {
        let activity = (!inner.is_end_stream()).then_some(activity);
        IncomingBody { inner, activity }
    }

    fn ended(&mut self) {
        if let Some(a) = self.activity.take() {
            a.body_ended();
        }
    }
}

impl Drop for IncomingBody {
    fn drop(&mut self) {
        self.ended();
    }
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) else {
            if let Some(a) = &this.activity {
                a.body_wanted();
            }
            return Poll::Pending;
        };
        if let Some(a) = &this.activity {
            a.body_delivered();
        }
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.ended();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the connection's [`Activity`] when it has
/// been sent or abandoned.
pub struct TrackedBody<B> {
    inner: B,
    activity: Arc<Activity>,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, activity: Arc<Activity>) -> TrackedBody<B> {
        TrackedBody { inner, activity }
    }
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.activity.response_ended();
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.activity.response_ended();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

enum State {
    /// Reading the start of the first request line.
    Looking(Vec<u8>),
    /// Handing hyper what was read ahead, from this offset.
    Replaying(Vec<u8>, usize),
    Passing,
    /// Handing hyper the stand-in for the HTTP/2 preface; nothing more is
    /// read from the client after it.
    Refusing(Vec<u8>, usize),
    /// After the stand-in: the proxy's answer closes the connection.
    Refused,
}

pub struct ClientIo<S> {
    inner: S,
    state: State,
    stats: Arc<Stats>,
    activity: Arc<Activity>,
    timeouts: ClientTimeouts,
    /// Since when the read hyper is waiting on has been pending.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> ClientIo<S> {
    pub fn new(
        inner: S,
        stats: Arc<Stats>,
        activity: Arc<Activity>,
        timeouts: ClientTimeouts,
    ) -> ClientIo<S> {
        ClientIo {
            inner,
            state: State::Looking(Vec::new()),
            stats,
            activity,
            timeouts,
            waiting_since: None,
            timer: None,
        }
    }
}

/// What the start of a connection shows.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Not enough yet.
    Wait,
    /// An ordinary request: pass it on as it is.
    Pass,
    /// Squid's manager scheme; the `_` is at this offset.
    SquidScheme(usize),
    /// The HTTP/2 connection preface.
    H2Preface,
}

/// What `head` (the start of a connection) is.
fn decide(head: &[u8]) -> Decision {
    let n = head.len().min(H2_PREFACE_LINE.len());
    if head[..n] == H2_PREFACE_LINE[..n] {
        return if n == H2_PREFACE_LINE.len() {
            Decision::H2Preface
        } else {
            Decision::Wait
        };
    }
    let line_end = head.iter().position(|&b| b == b'\n');
    let line_over = line_end.is_some() || head.len() >= LOOKAHEAD;
    let line = &head[..line_end.unwrap_or(head.len())];
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        // No space yet: wait for more, unless the line is already over.
        return if line_over {
            Decision::Pass
        } else {
            Decision::Wait
        };
    };
    let target = &line[space + 1..];
    let n = target.len().min(SQUID_SCHEME.len());
    if !target[..n].eq_ignore_ascii_case(&SQUID_SCHEME[..n]) {
        return Decision::Pass;
    }
    if n == SQUID_SCHEME.len() {
        return Decision::SquidScheme(space + 1 + 5);
    }
    if line_over {
        Decision::Pass
    } else {
        Decision::Wait
    }
}

impl<S: AsyncRead + Unpin> ClientIo<S> {
    /// Reads from the client, counting the bytes.
    fn poll_inner(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        if n > 0 {
            self.stats.note_bytes_in(n as u64);
            self.activity.note_bytes();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_states(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Passing => return self.poll_inner(cx, buf),
                State::Replaying(held, at) | State::Refusing(held, at) => {
                    let rest = held.get(*at..).unwrap_or(&[]);
                    let n = rest.len().min(buf.remaining());
                    buf.put_slice(&rest[..n]);
                    *at += n;
                    if *at >= held.len() {
                        self.state = match self.state {
                            State::Refusing(..) => State::Refused,
                            _ => State::Passing,
                        };
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Refused => return Poll::Pending,
                State::Looking(_) => {
                    let mut chunk = [0u8; 4096];
                    let mut read = ReadBuf::new(&mut chunk);
                    ready!(self.poll_inner(cx, &mut read))?;
                    let got = read.filled();
                    let State::Looking(held) = &mut self.state else {
                        continue;
                    };
                    held.extend_from_slice(got);
                    let decision = if got.is_empty() {
                        // The client closed: hand over what came.
                        Decision::Pass
                    } else {
                        decide(held)
                    };
                    let mut held = match decision {
                        Decision::Wait => continue,
                        _ => std::mem::take(held),
                    };
                    self.state = match decision {
                        Decision::H2Preface => State::Refusing(H2_PREFACE_AS_HTTP1.to_vec(), 0),
                        _ if held.is_empty() => State::Passing,
                        _ => {
                            if let Decision::SquidScheme(i) = decision {
                                if let Some(b) = held.get_mut(i) {
                                    *b = b'-';
                                }
                            }
                            State::Replaying(held, 0)
                        }
                    };
                }
            }
        }
    }

    /// The read is pending: ends it when the connection has waited too
    /// long in its state.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.activity.park(cx.waker());
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let Some((at, expiry)) = self.activity.deadline(&self.timeouts, since) else {
            self.timer = None;
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(t) => {
                // Moved only when the deadline came closer: a later one
                // (the next request's) is met by re-arming when the timer
                // fires early, which spares every request a reset.
                if t.deadline() > at {
                    t.as_mut().reset(at);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        ready!(timer.as_mut().poll(cx));
        if timer.deadline() < at {
            timer.as_mut().reset(at);
            ready!(timer.as_mut().poll(cx));
        }
        self.timer = None;
        self.waiting_since = None;
        Poll::Ready(match expiry {
            // End of input: hyper closes without an answer, as Squid does.
            Expiry::Quiet => Ok(()),
            Expiry::BodyStalled => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request body stalled for read_timeout",
            )),
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.evicted() {
            return Poll::Ready(Ok(()));
        }
        match this.poll_states(cx, buf) {
            Poll::Pending => this.poll_deadline(cx),
            ready => {
                this.waiting_since = None;
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> ClientIo<S> {
    /// Writes the queued interim responses. `started_only`: only the rest of
    /// one already begun, before bytes of hyper's go out (which may belong
    /// to an earlier response when nothing is begun).
    fn poll_interim(&mut self, cx: &mut Context<'_>, started_only: bool) -> Poll<io::Result<()>> {
        let mut s = self.activity.lock();
        let q = &mut s.interim;
        match &q.flusher {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.flusher = Some(cx.waker().clone()),
        }
        if started_only && q.written == 0 {
            return Poll::Ready(Ok(()));
        }
        while q.written < q.bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &q.bytes[q.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            q.written += n;
        }
        q.bytes.clear();
        q.written = 0;
        let waiter = q.waiter.take();
        drop(s);
        if let Some(w) = waiter {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.activity.interim_armed() {
            ready!(this.poll_interim(cx, true))?;
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.activity.interim_armed() {
            ready!(this.poll_interim(cx, true))?;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper flushes through to here only with nothing of its own
    /// buffered: the moment interim responses may go out.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.interim_armed() {
            ready!(this.poll_interim(cx, false))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests;
