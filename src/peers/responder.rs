//! What cuttle's datagram responders (ICP, HTCP) share: the receive loop
//! (one OS thread owns a UDP socket, takes whatever is queued on it in one
//! `recvmmsg`, answers each datagram into a send batch that goes out in one
//! `sendmmsg`, and sends the access.log lines it batched when it is about
//! to sleep), binding the socket where the config
//! says, the settings swapped in on reload, and the access.log line of an
//! answer ([`AnswerLine`]). The socket is also the one cuttle's own
//! queries of that protocol leave from (as Squid's do): replies to them
//! arrive here and go to the querier's [`Inbox`] untouched; a look at a
//! byte or two tells them from queries, and only they take the inbox's
//! lock. Each protocol brings a [`Protocol`]: what it
//! answers and counts; a running one is a [`Responder`].
//!
//! Why the shape: at hundreds of thousands of queries a second the per-query
//! cost is the kernel's UDP path plus whatever the answer does. Most of the
//! kernel's part is the cost of a system call, so the loop receives and
//! sends in batches ([`super::batch_io`], which says why `recvmmsg` and
//! `sendmmsg` over libc): a receive takes what is queued, up to 32
//! datagrams, and never waits for more, so at low load a batch is one
//! datagram and its answer leaves at once; under load one call each way
//! serves the whole queue. A reply is counted (and, for ICP, logged) when
//! the send says it went out; one the kernel refuses is dropped and counted
//! as a send error, as a lone `sendto` was (see [`SendBatch::send`]).
//! Batching the access.log lines saves most of the answer's own cost, and
//! "the thread goes to sleep" is the moment to hand a batch over: an idle
//! responder's lines reach the log within [`SPIN`], before the HTTP lines
//! of the requests its answers lead to, while a busy one hands over a full
//! batch (or one [`LOG_BATCH_WAIT`] old) rather than waking the log writer
//! for every few answers. The socket is non-blocking; the thread sleeps in
//! `epoll` (mio) only when the queue stayed empty for [`SPIN`]. A reload
//! swaps the settings behind a lock the thread never takes on a datagram:
//! it compares a generation counter (one atomic load) and takes the lock
//! only when the counter moved (after sending the replies answered with the
//! old settings).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::batch_io::{RecvBatch, SendBatch};
use super::icp_server::UrlParts;
use super::querier::{Inbox, QuerySocket};
use super::resolve::PeerAddrs;
use crate::access;
use crate::access_log::{Entry, Hierarchy, LineBatch, Logger, ResultCode, ResultTag};
use crate::config::{Config, Setting};

/// How often an idle loop looks at the stop flag.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// How long an emptied socket is watched before the thread sleeps. Waking a
/// sleeping thread costs tens of microseconds (more on a virtual CPU) and
/// comes on top of every answer's latency when queries arrive one at a
/// time; a peer's queries come in bursts (one per peer per client miss), so
/// a short watch catches the next one. An idle responder pays this once per
/// burst.
const SPIN: Duration = Duration::from_micros(50);

/// Longest an access.log line waits in a responder's batch while the
/// socket stays busy.
const LOG_BATCH_WAIT: Duration = Duration::from_millis(5);

/// One datagram protocol's part of a responder: how it answers and what it
/// counts. Called on the responder's thread only, so it may keep mutable
/// state (reply buffers) without locks.
pub trait Protocol: Send + 'static {
    /// `ICP`, `HTCP`: in messages.
    const NAME: &'static str;
    /// The responder thread's name.
    const THREAD: &'static str;
    /// The largest datagram it reads (one byte more is read, so an
    /// oversized datagram shows as such).
    const MAX_DATAGRAM: usize;
    /// What it works out from the config at start and on each reload,
    /// rather than per datagram (HTCP: its forward-clr peers).
    type Derived: Send + Sync + 'static;
    /// What a queued reply carries to [`Protocol::sent`]: what to count
    /// and log once it is known to have gone out.
    type Sent: Send + 'static;

    /// Its port directive (`icp_port`, `htcp_port`); 0 turns it off.
    fn port(config: &Config) -> &Setting<u16>;

    fn derive(config: &Config, addrs: &PeerAddrs) -> Self::Derived;

    /// Whether `datagram` is a reply to cuttle's own queries (for the
    /// querier) rather than something to answer. Runs on every datagram:
    /// it looks at a byte or two, no more.
    fn is_reply(datagram: &[u8]) -> bool;

    /// The socket is bound and not yet served (ICP joins its multicast
    /// groups here).
    fn bound(_socket: &UdpSocket, _config: &Config) {}

    /// Answers (or drops) one datagram; replies go into `replies`, which
    /// the responder sends on the socket the datagram came in on (Squid
    /// accepts replies only from the port it asked), with the rest of the
    /// batch. Log lines go into `lines`, which the responder sends.
    fn answer(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        settings: &Settings<Self::Derived>,
        replies: &mut SendBatch<Self::Sent>,
        lines: &mut LineBatch,
    );

    /// A reply queued by [`Protocol::answer`] was sent to `to` (`Ok`: its
    /// length) or refused by the kernel (dropped).
    fn sent(
        &mut self,
        tag: Self::Sent,
        to: SocketAddr,
        outcome: io::Result<usize>,
        settings: &Settings<Self::Derived>,
        lines: &mut LineBatch,
    );

    /// A receive failed (not "would block"): count it.
    fn recv_error(&mut self);

    /// Every reply queued so far went out (each passed to
    /// [`Protocol::sent`]): what the protocol kept per batch rather than
    /// per reply can be settled now.
    fn batch_sent(&mut self) {}
}

/// The squid.conf view a responder answers with; swapped on reload.
pub struct Settings<D> {
    pub config: Arc<Config>,
    pub logger: Logger,
    /// What the protocol works out from `config` ([`Protocol::Derived`]).
    pub derived: D,
}

impl<D> Settings<D> {
    fn new<P: Protocol<Derived = D>>(
        config: Arc<Config>,
        addrs: &PeerAddrs,
        logger: Logger,
    ) -> Settings<D> {
        Settings {
            derived: P::derive(&config, addrs),
            config,
            logger,
        }
    }
}

/// Settings one thread reads on every datagram and another swaps. The
/// reader keeps its own `Arc` and re-reads it only when the generation
/// moved: one atomic load per datagram, no lock.
struct Swappable<S> {
    current: Mutex<Arc<S>>,
    /// Bumped on every swap.
    generation: AtomicU64,
}

impl<S> Swappable<S> {
    fn new(settings: S) -> Swappable<S> {
        Swappable {
            current: Mutex::new(Arc::new(settings)),
            generation: AtomicU64::new(0),
        }
    }

    fn swap(&self, settings: S) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(settings);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Arc<S> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What the receive loop does with its datagrams.
trait Handler: Send + 'static {
    /// Answers (or drops) one datagram that came in on `socket`; its
    /// replies wait for [`Handler::flush`].
    fn datagram(&mut self, socket: &UdpSocket, datagram: &[u8], from: SocketAddr);

    /// The datagrams of one receive are answered: send the replies.
    fn flush(&mut self, socket: &UdpSocket);

    /// The socket stayed empty for [`SPIN`] and the thread is about to
    /// sleep, or the loop is stopping: send whatever waits.
    fn idle(&mut self);

    /// A receive failed (not "would block").
    fn recv_error(&mut self, error: &io::Error);
}

/// The responder thread's state around its protocol's: the settings it
/// answers with, followed across reloads, and the access.log lines not yet
/// sent. Lines are sent when the thread is about to sleep (the socket
/// stayed empty for [`SPIN`]), when the batch is full, or when its oldest
/// line has waited [`LOG_BATCH_WAIT`] (a socket that never stays empty).
struct Answering<P: Protocol> {
    protocol: P,
    /// Where replies to our own queries go.
    inbox: Arc<Inbox>,
    shared: Arc<Swappable<Settings<P::Derived>>>,
    settings: Arc<Settings<P::Derived>>,
    seen_generation: u64,
    batch: LineBatch,
    replies: SendBatch<P::Sent>,
}

impl<P: Protocol> Answering<P> {
    /// Sends the queued replies and hands each outcome to the protocol.
    fn send_replies(&mut self, socket: &UdpSocket) {
        let Answering {
            protocol,
            settings,
            batch,
            replies,
            ..
        } = self;
        replies.send(socket, |tag, to, outcome| {
            protocol.sent(tag, to, outcome, settings, batch);
        });
        protocol.batch_sent();
    }
}

impl<P: Protocol> Handler for Answering<P> {
    fn datagram(&mut self, socket: &UdpSocket, datagram: &[u8], from: SocketAddr) {
        if P::is_reply(datagram) {
            self.inbox.deliver(datagram, from);
            return;
        }
        let generation = self.shared.generation();
        if generation != self.seen_generation {
            self.seen_generation = generation;
            // Replies answered so far, and their lines, belong to the old
            // settings and the old logger's files.
            self.send_replies(socket);
            self.settings.logger.send_batch(&mut self.batch);
            self.settings = self.shared.current();
        }
        self.protocol.answer(
            datagram,
            from,
            &self.settings,
            &mut self.replies,
            &mut self.batch,
        );
    }

    fn flush(&mut self, socket: &UdpSocket) {
        self.send_replies(socket);
        if !self.batch.is_empty()
            && (self.batch.is_full() || self.batch.age(Instant::now()) >= LOG_BATCH_WAIT)
        {
            self.settings.logger.send_batch(&mut self.batch);
        }
    }

    fn idle(&mut self) {
        self.settings.logger.send_batch(&mut self.batch);
    }

    fn recv_error(&mut self, error: &io::Error) {
        self.protocol.recv_error();
        tracing::warn!(protocol = P::NAME, %error, "datagram receive failed");
    }
}

/// A running responder of protocol `P`; stopped (and its socket closed)
/// on drop.
pub struct Responder<P: Protocol> {
    local: SocketAddr,
    /// A duplicate of the socket, lent (weakly) to the querier: it closes
    /// when the responder goes.
    sending: Arc<UdpSocket>,
    /// Where replies to the querier's queries go.
    inbox: Arc<Inbox>,
    settings: Arc<Swappable<Settings<P::Derived>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<P: Protocol> Responder<P> {
    /// Where the socket listens for `config`: `udp_incoming_address` (else
    /// every IPv4 address) and the protocol's port; `None` when that is 0.
    pub fn listen_addr(config: &Config) -> Option<SocketAddr> {
        let port = P::port(config).value;
        (port != 0).then(|| {
            let ip = config
                .udp_incoming_address
                .value
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            SocketAddr::new(ip, port)
        })
    }

    /// Binds [`Responder::listen_addr`] and starts answering with
    /// `protocol` on a thread of its own; `Ok(None)` when the protocol's
    /// port is 0.
    pub fn start(
        config: Arc<Config>,
        addrs: &PeerAddrs,
        logger: Logger,
        protocol: P,
    ) -> io::Result<Option<Self>> {
        let Some(addr) = Self::listen_addr(&config) else {
            return Ok(None);
        };
        // A separate outgoing socket will share the port.
        let shared = config
            .udp_outgoing_address
            .value
            .is_some_and(|ip| ip != addr.ip());
        Self::start_at(addr, shared, config, addrs, logger, protocol).map(Some)
    }

    /// Binds `addr` and starts answering there with `protocol` (the
    /// listening socket, or Squid's separate outgoing one on
    /// udp_outgoing_address). `shared_port`: the listening and the
    /// outgoing socket share the port (SO_REUSEADDR on both, as Squid
    /// binds them), which a wildcard listening address needs.
    pub fn start_at(
        addr: SocketAddr,
        shared_port: bool,
        config: Arc<Config>,
        addrs: &PeerAddrs,
        logger: Logger,
        protocol: P,
    ) -> io::Result<Self> {
        let socket = bind_udp(addr, shared_port).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind {} on {addr}: {e}", P::NAME))
        })?;
        P::bound(&socket, &config);
        let shared = Arc::new(Swappable::new(Settings::new::<P>(config, addrs, logger)));
        let sending = Arc::new(socket.try_clone()?);
        let inbox = Arc::new(Inbox::default());
        let handler = Answering {
            protocol,
            inbox: Arc::clone(&inbox),
            settings: shared.current(),
            seen_generation: shared.generation(),
            shared: Arc::clone(&shared),
            batch: LineBatch::new(),
            replies: SendBatch::new(),
        };
        let local = socket.local_addr()?;
        socket.set_nonblocking(true)?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&socket.as_raw_fd()),
            Token(0),
            Interest::READABLE,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name(P::THREAD.into()).spawn({
            let stop = Arc::clone(&stop);
            move || serve(socket, local, poll, P::MAX_DATAGRAM, &stop, handler)
        })?;
        Ok(Responder {
            local,
            sending,
            inbox,
            settings: shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket cuttle's own queries of this protocol leave from, and
    /// the inbox their replies reach.
    pub fn query_socket(&self) -> QuerySocket {
        QuerySocket {
            socket: Arc::downgrade(&self.sending),
            inbox: Arc::clone(&self.inbox),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answers with `config` and logs to `logger` from the next datagram
    /// on. The socket stays: rebind by stopping and starting when
    /// [`Responder::listen_addr`] changed.
    pub fn reconfigure(&self, config: Arc<Config>, addrs: &PeerAddrs, logger: Logger) {
        self.settings
            .swap(Settings::new::<P>(config, addrs, logger));
    }

    /// Stops the thread (within [`IDLE_TICK`]) and closes the socket.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("a datagram responder thread panicked");
            }
        }
    }
}

impl<P: Protocol> Drop for Responder<P> {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A UDP socket bound to `addr`, with SO_REUSEADDR when `shared_port`.
fn bind_udp(addr: SocketAddr, shared_port: bool) -> io::Result<UdpSocket> {
    if !shared_port {
        return UdpSocket::bind(addr);
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn serve(
    socket: UdpSocket,
    local: SocketAddr,
    mut poll: Poll,
    max_datagram: usize,
    stop: &AtomicBool,
    mut handler: impl Handler,
) {
    // One byte more than the largest datagram: an oversized one shows.
    let mut received = RecvBatch::new(max_datagram + 1);
    let mut events = Events::with_capacity(4);
    // When the queue was found empty: the thread watches it for SPIN
    // (receiving, without sleeping) before it sleeps in epoll.
    let mut emptied: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        match received.recv(&socket) {
            Ok(_) => {
                emptied = None;
                for (datagram, from) in received.datagrams() {
                    match from {
                        // Our own datagram (a loop): never answer it.
                        Some(from) if from != local => handler.datagram(&socket, datagram, from),
                        _ => {}
                    }
                }
                handler.flush(&socket);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let since = *emptied.get_or_insert_with(Instant::now);
                if since.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                emptied = None;
                // About to sleep: the lines batched go to the log now.
                handler.idle();
                // Edge-triggered: the queue was drained above, so the next
                // datagram wakes us.
                if let Err(e) = poll.poll(&mut events, Some(IDLE_TICK)) {
                    if e.kind() != io::ErrorKind::Interrupted {
                        tracing::warn!(error = %e, "datagram responder: poll failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                handler.recv_error(&e);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    handler.flush(&socket);
    handler.idle();
}

/// The access.log line of a datagram answered (squid-spec 1.11, 2.4, 2.6):
/// status 000, elapsed 0, `HIER_NONE/-`.
pub struct AnswerLine<'a> {
    pub tag: ResultTag,
    /// `ICP_QUERY`, `HTCP_TST`, `HTCP_CLR`.
    pub method: &'static str,
    pub url: &'a str,
    /// Bytes of the reply (ICP); 0 for HTCP, as Squid logs it.
    pub size: u64,
    pub client: IpAddr,
    /// The method of the request the datagram asked about, what
    /// `access_log` ACLs look at with `url`'s parts (split only when an ACL
    /// asks); `None` when it named no usable request (only the sender's
    /// address can match then).
    pub asked: Option<&'a str>,
}

impl AnswerLine<'_> {
    /// Adds the line to `batch` (for the `access_log` lines it matches).
    /// `scratch` is the caller's entry, rebuilt for each line so that its
    /// strings' buffers serve every line rather than being allocated per
    /// answer.
    pub fn log(
        &self,
        logger: &Logger,
        config: &Config,
        batch: &mut LineBatch,
        scratch: &mut Entry,
    ) {
        if logger.is_disabled() {
            return;
        }
        let mut method = std::mem::take(&mut scratch.method);
        method.clear();
        method.push_str(self.method);
        let mut url = std::mem::take(&mut scratch.url);
        url.clear();
        url.push_str(self.url);
        *scratch = Entry {
            end: std::time::SystemTime::now(),
            elapsed: Duration::ZERO,
            client: Some(self.client),
            result: ResultCode::new(self.tag),
            status: 0,
            size: self.size,
            method,
            url,
            user: None,
            hierarchy: Hierarchy::none(),
            content_type: None,
        };
        logger.log_batched(batch, scratch, |acls| {
            let nothing = UrlParts {
                scheme: "",
                host: "",
                port: 0,
                path: "",
            };
            let (parts, method) = self
                .asked
                .and_then(|method| Some((UrlParts::split(self.url)?, method)))
                .unwrap_or((nothing, "GET"));
            let mut req = parts.request(self.client, self.url);
            req.method = method;
            access::matches_all(acls, config, &req)
        });
    }
}
