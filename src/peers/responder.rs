//! What cuttle's datagram responders (ICP, HTCP) share: the receive loop
//! (one OS thread owns a UDP socket, drains it without blocking, hands each
//! datagram to a [`Handler`], and tells the handler when the socket has
//! nothing more queued so it can send what it batched) and the access.log
//! line of an answer ([`AnswerLine`]).
//!
//! Why the shape: at hundreds of thousands of queries a second the per-query
//! cost is the kernel's UDP path plus whatever the answer does; batching
//! the access.log lines saves most of the latter, and "the queue is empty"
//! is the moment to hand a batch over, so an idle responder's lines reach
//! the log at once and in order with the HTTP lines that follow them. The
//! socket is non-blocking; the thread sleeps in `epoll` (mio) only when the
//! queue is empty, so a busy responder makes one `recvfrom` per datagram.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::icp_server::UrlParts;
use crate::access;
use crate::access_log::{Entry, Hierarchy, LineBatch, Logger, ResultCode, ResultTag};
use crate::config::Config;

/// How often an idle loop looks at the stop flag.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// How long an emptied socket is watched before the thread sleeps. Waking a
/// sleeping thread costs tens of microseconds (more on a virtual CPU) and
/// comes on top of every answer's latency when queries arrive one at a
/// time; a peer's queries come in bursts (one per peer per client miss), so
/// a short watch catches the next one. An idle responder pays this once per
/// burst.
const SPIN: Duration = Duration::from_micros(50);

/// What a responder does with its datagrams.
pub trait Handler: Send + 'static {
    /// Answers (or drops) one datagram; replies go out on `socket`, the one
    /// it came in on (Squid accepts replies only from the port it asked).
    fn datagram(&mut self, socket: &UdpSocket, datagram: &[u8], from: SocketAddr);

    /// Nothing more is queued on the socket, or the loop is stopping: send
    /// whatever waits.
    fn idle(&mut self);

    /// A receive failed (not "would block"); counted by the handler.
    fn recv_error(&mut self, error: &io::Error);
}

/// A running receive loop; stopped (and its socket closed) on drop.
pub struct Responder {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Starts a thread named `name` serving `socket` with `handler`; the
    /// buffer holds datagrams of up to `max_datagram` bytes (one byte more
    /// is read, so an oversized datagram shows as such).
    pub fn spawn(
        name: &str,
        socket: UdpSocket,
        max_datagram: usize,
        handler: impl Handler,
    ) -> io::Result<Responder> {
        let local = socket.local_addr()?;
        socket.set_nonblocking(true)?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&socket.as_raw_fd()),
            Token(0),
            Interest::READABLE,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name(name.into()).spawn({
            let stop = Arc::clone(&stop);
            move || serve(socket, local, poll, max_datagram, &stop, handler)
        })?;
        Ok(Responder {
            local,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
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

impl Drop for Responder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Watches the socket for [`SPIN`] without sleeping; true when a datagram
/// is queued (left for the caller to receive).
fn spin_for_datagram(socket: &UdpSocket) -> bool {
    let start = std::time::Instant::now();
    let mut probe = [0u8; 1];
    while start.elapsed() < SPIN {
        match socket.peek_from(&mut probe) {
            Ok(_) => return true,
            // A datagram larger than the probe still counts as queued.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(_) => return true,
        }
    }
    false
}

fn serve(
    socket: UdpSocket,
    local: SocketAddr,
    mut poll: Poll,
    max_datagram: usize,
    stop: &AtomicBool,
    mut handler: impl Handler,
) {
    let mut datagram = vec![0u8; max_datagram + 1];
    let mut events = Events::with_capacity(4);
    while !stop.load(Ordering::Acquire) {
        match socket.recv_from(&mut datagram) {
            // Our own datagram (a loop): never answer it.
            Ok((_, from)) if from == local => {}
            Ok((len, from)) => handler.datagram(&socket, &datagram[..len], from),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                handler.idle();
                if spin_for_datagram(&socket) {
                    continue;
                }
                // Edge-triggered: the queue was drained above, so the next
                // datagram wakes us.
                if let Err(e) = poll.poll(&mut events, Some(IDLE_TICK)) {
                    if e.kind() != io::ErrorKind::Interrupted {
                        tracing::warn!("datagram responder: poll failed: {e}");
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
    /// The request the datagram asked about (URL parts and method), what
    /// `access_log` ACLs look at; `None` when it named no usable URL (only
    /// the sender's address can match then).
    pub asked: Option<(UrlParts<'a>, &'a str)>,
}

impl AnswerLine<'_> {
    /// Adds the line to `batch` (for the `access_log` lines it matches).
    pub fn log(&self, logger: &Logger, config: &Config, batch: &mut LineBatch) {
        if logger.is_disabled() {
            return;
        }
        let entry = Entry {
            end: std::time::SystemTime::now(),
            elapsed: Duration::ZERO,
            client: Some(self.client),
            result: ResultCode::new(self.tag),
            status: 0,
            size: self.size,
            method: self.method.into(),
            url: self.url.into(),
            user: None,
            hierarchy: Hierarchy::none(),
            content_type: None,
        };
        logger.log_batched(batch, &entry, |acls| {
            let nothing = UrlParts {
                scheme: "",
                host: "",
                port: 0,
                path: "",
            };
            let (parts, method) = self.asked.unwrap_or((nothing, "GET"));
            let mut req = parts.request(self.client, self.url);
            req.method = method;
            access::matches_all(acls, config, &req)
        });
    }
}
