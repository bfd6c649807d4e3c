//! Batched datagram IO for the ICP and HTCP sockets: [`RecvBatch`] takes
//! whatever is queued on a socket with one `recvmmsg`, [`SendBatch`] sends
//! the datagrams collected for one moment with one `sendmmsg`.
//!
//! Why this shape: on loopback about three quarters of a responder's core
//! went to the kernel's per-call cost of `recvfrom` and `sendto`; the
//! `*mmsg` calls pay it once per batch. libc is already a dependency and
//! these two calls are all that is needed: nix is not a dependency,
//! rustix has `sendmmsg` but no `recvmmsg`, socket2 has neither, and
//! quinn-udp does the same thing over libc (its GSO/GRO and ECN machinery
//! serve QUIC, not 1,000-byte queries to many senders). io_uring would
//! save the same calls at the price of a ring per socket, a kernel that
//! allows it (often disabled in containers) and much more `unsafe`. So the
//! calls are made here over libc, and this file is the only place their
//! `unsafe` lives (tests/tidy.rs allows it here and in store/map.rs).
//!
//! Neither call ever waits: a receive returns what is queued (a batch of
//! one at low load, so no latency is added), a send that the kernel
//! refuses (EAGAIN: the socket's buffer is full) fails that datagram only.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::ptr;

use socket2::SockAddr;

/// Datagrams per system call. A responder's queue at window 16 from a few
/// peers rarely holds more; a larger batch only costs header setup.
pub const BATCH: usize = 32;

/// Up to [`BATCH`] datagrams received by one `recvmmsg`, each in a buffer
/// of its own of the size given at construction.
pub struct RecvBatch {
    /// `BATCH` slots of `slot` bytes each.
    buffers: Vec<u8>,
    slot: usize,
    names: Vec<libc::sockaddr_storage>,
    /// Of the last receive: each datagram's length and sender (`None`: a
    /// family other than IPv4/IPv6, which a UDP socket never reports).
    got: Vec<(usize, Option<SocketAddr>)>,
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to `slot` bytes. A datagram
    /// larger than `slot` arrives cut to `slot` bytes, so reading one byte
    /// more than the largest legal datagram shows an oversized one.
    pub fn new(slot: usize) -> RecvBatch {
        let slot = slot.max(1);
        RecvBatch {
            // calloc'd: pages are only touched as datagrams fill them.
            buffers: vec![0u8; slot * BATCH],
            slot,
            names: vec![zeroed_storage(); BATCH],
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Receives what is queued on `socket`, up to [`BATCH`] datagrams,
    /// without waiting; `WouldBlock` when nothing is. Returns how many.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.got.clear();
        let mut iovecs = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        for (iov, buffer) in iovecs.iter_mut().zip(self.buffers.chunks_mut(self.slot)) {
            iov.iov_base = buffer.as_mut_ptr().cast();
            iov.iov_len = buffer.len();
        }
        let mut headers = zeroed_headers();
        for ((h, iov), name) in headers
            .iter_mut()
            .zip(iovecs.iter_mut())
            .zip(self.names.iter_mut())
        {
            h.msg_hdr.msg_name = ptr::from_mut(name).cast();
            h.msg_hdr.msg_namelen = storage_len();
            h.msg_hdr.msg_iov = ptr::from_mut(iov);
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each of the BATCH headers points at its own iovec (on
        // this stack frame) and sockaddr_storage (in self.names), and each
        // iovec at its own slot of self.buffers with that slot's length;
        // all outlive the call, and the kernel writes within those lengths
        // only. No timeout pointer: MSG_DONTWAIT returns at once.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (h, name) in headers.iter().zip(&self.names).take(n) {
            let len = (h.msg_len as usize).min(self.slot);
            self.got
                .push((len, socket_addr(name, h.msg_hdr.msg_namelen)));
        }
        Ok(n)
    }

    /// The datagrams of the last receive, in arrival order, with their
    /// senders.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> {
        self.got
            .iter()
            .zip(self.buffers.chunks(self.slot))
            .map(|(&(len, from), buffer)| (&buffer[..len], from))
    }
}

/// One datagram waiting in a [`SendBatch`].
struct Queued<T> {
    start: usize,
    len: usize,
    to: SockAddr,
    tag: T,
}

/// Datagrams to send together with `sendmmsg`, each with a `tag` its
/// sender gets back with the outcome (what to count or log once it is
/// known to have gone out).
pub struct SendBatch<T> {
    bytes: Vec<u8>,
    queued: Vec<Queued<T>>,
    outcomes: Vec<io::Result<usize>>,
}

impl<T> Default for SendBatch<T> {
    fn default() -> Self {
        SendBatch {
            bytes: Vec::new(),
            queued: Vec::new(),
            outcomes: Vec::new(),
        }
    }
}

impl<T> SendBatch<T> {
    pub fn new() -> SendBatch<T> {
        SendBatch::default()
    }

    /// Queues a copy of `datagram` for `to`.
    pub fn push(&mut self, datagram: &[u8], to: SocketAddr, tag: T) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(datagram);
        self.queued.push(Queued {
            start,
            len: datagram.len(),
            to: SockAddr::from(to),
            tag,
        });
    }

    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Sends every queued datagram on `socket`, in order, [`BATCH`] per
    /// `sendmmsg`, without waiting, then hands each tag to `done` with its
    /// destination and outcome (bytes sent, or why not). The batch is empty
    /// afterwards.
    ///
    /// Each datagram gets one try, as a `sendto` each would: when the
    /// kernel stops short (it sent the first k and failed on the next), the
    /// rest is sent again from the one it failed on; a call that fails
    /// outright fails its first datagram only (dropped and reported to
    /// `done`), and the rest are tried after it. A full buffer (EAGAIN) is
    /// not waited out: the responder's thread must not stall on one slow
    /// socket, and a UDP sender would drop there anyway; the receiver's
    /// timeout is the recovery, as for a datagram lost on the way.
    pub fn send(
        &mut self,
        socket: &impl AsRawFd,
        mut done: impl FnMut(T, SocketAddr, io::Result<usize>),
    ) {
        self.outcomes.clear();
        let mut next = 0;
        while next < self.queued.len() {
            let chunk = &self.queued[next..self.queued.len().min(next + BATCH)];
            match send_chunk(socket, &self.bytes, chunk, &mut self.outcomes) {
                Ok(sent) if sent > 0 => next += sent,
                // sendmmsg sends at least one or fails; guard the loop.
                Ok(_) => {
                    next += 1;
                    self.outcomes.push(Err(io::ErrorKind::WriteZero.into()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    next += 1;
                    self.outcomes.push(Err(e));
                }
            }
        }
        self.bytes.clear();
        for (q, outcome) in self.queued.drain(..).zip(self.outcomes.drain(..)) {
            // Built from a SocketAddr in push.
            if let Some(to) = q.to.as_socket() {
                done(q.tag, to, outcome);
            }
        }
    }
}

/// One `sendmmsg` of `chunk` (at most [`BATCH`] datagrams, their bytes in
/// `bytes`): how many went out (the first k), their lengths pushed to
/// `sent`.
fn send_chunk<T>(
    socket: &impl AsRawFd,
    bytes: &[u8],
    chunk: &[Queued<T>],
    sent: &mut Vec<io::Result<usize>>,
) -> io::Result<usize> {
    let mut iovecs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    let mut headers = zeroed_headers();
    for ((h, iov), q) in headers.iter_mut().zip(iovecs.iter_mut()).zip(chunk) {
        let datagram = &bytes[q.start..q.start + q.len];
        // The kernel only reads through these pointers (sendmmsg).
        iov.iov_base = datagram.as_ptr().cast_mut().cast();
        iov.iov_len = datagram.len();
        h.msg_hdr.msg_name = q.to.as_ptr().cast_mut().cast();
        h.msg_hdr.msg_namelen = q.to.len();
        h.msg_hdr.msg_iov = ptr::from_mut(iov);
        h.msg_hdr.msg_iovlen = 1;
    }
    let count = chunk.len().min(BATCH);
    // SAFETY: the first `count` headers point at their own iovec (on this
    // stack frame) and destination (in `chunk`), each iovec at its
    // datagram's bytes inside `bytes`; all outlive the call, and sendmmsg
    // only reads them (writing msg_len into the headers themselves).
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    sent.extend(headers.iter().take(n).map(|h| Ok(h.msg_len as usize)));
    Ok(n)
}

fn zeroed_headers() -> [libc::mmsghdr; BATCH] {
    // SAFETY: mmsghdr is plain data (pointers, lengths, flags); all zero
    // is a valid value (null pointers, empty lengths).
    unsafe { std::mem::zeroed() }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all zero is AF_UNSPEC.
    unsafe { std::mem::zeroed() }
}

fn storage_len() -> libc::socklen_t {
    size_of::<libc::sockaddr_storage>() as libc::socklen_t
}

/// The address the kernel wrote into `name` (`len` bytes of it).
fn socket_addr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, and a
            // sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
