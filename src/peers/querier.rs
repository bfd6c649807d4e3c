//! What cuttle's ICP and HTCP queriers share: the socket queries leave
//! from, the task that reads replies for as long as a client lives, the
//! wait for the one reply of a one-off query (the CLI's), and the table
//! that late replies are credited to.
//!
//! The proxy's queries leave from the responder's socket (icp_port,
//! htcp_port), as Squid sends them: Squid peers' `icp_access` rules name
//! that address, and they answer to the query's source. The responder's
//! thread reads that socket and hands the replies it gets to the querier
//! through an [`Inbox`]; the querier sends on a duplicate of the socket
//! ([`QuerySocket`]). The daemon publishes the running responders'
//! sockets in [`QuerySockets`]. With no port there is no socket, and no
//! query is sent ("ICP is disabled!", as Squid says). One-off queries (the
//! CLI's) and unit tests bind a socket of their own with an ephemeral port.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::resolve::PeerAddrs;
use super::table::PeerTable;

/// A non-blocking UDP socket on `local` (udp_outgoing_address; every
/// address when `None`) with an ephemeral port.
pub fn bind(local: Option<IpAddr>) -> io::Result<std::net::UdpSocket> {
    let ip = local.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A reply a responder received for its protocol's querier.
#[derive(Debug)]
pub struct Forwarded {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    pub received: Instant,
}

/// Replies waiting for the querier's task; more are dropped, as a full
/// socket buffer would drop them (a flood of forged replies cannot grow
/// memory).
const INBOX_DEPTH: usize = 4096;

/// Where a responder hands the replies it receives: the querier that
/// listens last (one per socket), or nowhere.
#[derive(Debug, Default)]
pub struct Inbox(Mutex<Option<mpsc::Sender<Forwarded>>>);

impl Inbox {
    /// Hands a reply to the listening querier; dropped when none listens
    /// or [`INBOX_DEPTH`] wait. Called on the responder's thread, for
    /// replies only (queries never take this lock).
    pub fn deliver(&self, data: &[u8], from: SocketAddr) {
        let received = Instant::now();
        if let Some(tx) = lock(&self.0).as_ref() {
            let _ = tx.try_send(Forwarded {
                data: data.to_vec(),
                from,
                received,
            });
        }
    }

    /// The replies from now on go to the returned receiver.
    pub fn listen(&self) -> mpsc::Receiver<Forwarded> {
        let (tx, rx) = mpsc::channel(INBOX_DEPTH);
        *lock(&self.0) = Some(tx);
        rx
    }
}

/// A responder's socket lent to its protocol's querier: queries are sent
/// on `socket` (a duplicate of the responder's, never read here; weak, so
/// it closes with the responder and a rebind on reload finds the port
/// free), replies come through `inbox`.
#[derive(Debug, Clone)]
pub struct QuerySocket {
    pub socket: Weak<std::net::UdpSocket>,
    pub inbox: Arc<Inbox>,
}

/// The socket a client sends on.
#[derive(Debug)]
pub enum SendSocket {
    /// Its own (one-off queries, tests).
    Own(Arc<std::net::UdpSocket>),
    /// A responder's, while it runs.
    Lent(Weak<std::net::UdpSocket>),
}

impl SendSocket {
    /// The socket, unless its responder stopped.
    pub fn get(&self) -> Option<Arc<std::net::UdpSocket>> {
        match self {
            SendSocket::Own(s) => Some(Arc::clone(s)),
            SendSocket::Lent(s) => s.upgrade(),
        }
    }
}

impl QuerySocket {
    /// Whether `other` is the same responder's socket.
    pub fn same(&self, other: &QuerySocket) -> bool {
        Arc::ptr_eq(&self.inbox, &other.inbox)
    }
}

/// The sockets of the running responders, for the queriers: set by the
/// daemon when a responder starts, stops or is rebound.
#[derive(Debug, Default)]
pub struct QuerySockets {
    pub icp: Slot,
    pub htcp: Slot,
    /// The peers' addresses the daemon resolved for the newest
    /// configuration; tables are built from them.
    peer_addrs: Mutex<PeerAddrs>,
}

impl QuerySockets {
    /// Addresses for the next tables built (the daemon's, before it
    /// builds or reloads the proxy).
    pub fn set_peer_addrs(&self, addrs: PeerAddrs) {
        *lock(&self.peer_addrs) = addrs;
    }

    pub fn peer_addrs(&self) -> PeerAddrs {
        lock(&self.peer_addrs).clone()
    }
}

/// One protocol's [`QuerySocket`], if its responder runs.
#[derive(Debug, Default)]
pub struct Slot(Mutex<Option<QuerySocket>>);

impl Slot {
    pub fn set(&self, socket: Option<QuerySocket>) {
        *lock(&self.0) = socket;
    }

    pub fn get(&self) -> Option<QuerySocket> {
        lock(&self.0).clone()
    }
}

/// Where a client's replies come from: a socket of its own, or the
/// responder whose socket it sends on.
pub enum Incoming {
    Socket(Arc<UdpSocket>),
    Inbox(mpsc::Receiver<Forwarded>),
}

/// Reads replies of up to `max_datagram` bytes from `incoming` for as
/// long as the task runs, handing each to `reply` with its sender and
/// arrival time. `protocol` names the client in messages.
pub async fn receive(
    protocol: &str,
    incoming: Incoming,
    max_datagram: usize,
    mut reply: impl FnMut(&[u8], SocketAddr, Instant),
) {
    let socket = match incoming {
        Incoming::Socket(socket) => socket,
        Incoming::Inbox(mut rx) => {
            while let Some(f) = rx.recv().await {
                reply(&f.data, f.from, f.received);
            }
            return;
        }
    };
    let mut buf = vec![0u8; max_datagram];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port-unreachable from an earlier send surfaces here
                // on some systems: not fatal.
                tracing::debug!(protocol, error = %e, "client receive failed");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let received = Instant::now();
        let Some(data) = buf.get(..n) else { continue };
        reply(data, from, received);
    }
}

/// Receives on `socket` (datagrams of up to `max_datagram` bytes) until
/// `accept` takes one, returning what it made of it, or until `deadline`
/// (`Ok(None)`). For a client with no receive task reading the socket.
pub async fn first_reply<T>(
    socket: &UdpSocket,
    max_datagram: usize,
    deadline: tokio::time::Instant,
    mut accept: impl FnMut(&[u8], SocketAddr) -> Option<T>,
) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; max_datagram];
    loop {
        let got = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
        let (n, from) = match got {
            Err(_) => return Ok(None),
            Ok(r) => r?,
        };
        let Some(data) = buf.get(..n) else { continue };
        if let Some(taken) = accept(data, from) {
            return Ok(Some(taken));
        }
    }
}

/// The newest peer table, shared by a client and its receive task: replies
/// that match no query in flight are credited to its peers.
#[derive(Clone)]
pub struct CurrentTable(Arc<RwLock<Arc<PeerTable>>>);

impl CurrentTable {
    pub fn new(table: Arc<PeerTable>) -> CurrentTable {
        CurrentTable(Arc::new(RwLock::new(table)))
    }

    /// A table with no peers, for a client that only sends one-off queries.
    pub fn empty() -> CurrentTable {
        CurrentTable::new(Arc::new(PeerTable::new(
            &crate::config::Config::default(),
            None,
            Instant::now(),
            &PeerAddrs::literal_only(),
        )))
    }

    pub fn get(&self) -> Arc<PeerTable> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn set(&self, table: Arc<PeerTable>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = table;
    }
}

/// Locks `m`; a thread that panicked holding it left nothing half-done
/// that matters here (maps of queries in flight).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
