//! The receive loop of cuttle's datagram responders (ICP, HTCP): one OS
//! thread owns a UDP socket, drains it without blocking, hands each
//! datagram to a [`Handler`], and tells the handler when the socket has
//! nothing more queued so it can send what it batched (log lines).
//!
//! Why the shape: at hundreds of thousands of queries a second the per-query
//! cost is the kernel's UDP path plus whatever the answer does; batching
//! the access.log lines saves most of the latter, and "the queue is empty"
//! is the moment to hand a batch over, so an idle responder's lines reach
//! the log at once and in order with the HTTP lines that follow them. The
//! socket is non-blocking; the thread sleeps in `epoll` (mio) only when the
//! queue is empty, so a busy responder makes one `recvfrom` per datagram.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// How often an idle loop looks at the stop flag.
const IDLE_TICK: Duration = Duration::from_millis(100);

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
