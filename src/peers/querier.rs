//! What cuttle's ICP and HTCP queriers share: the client socket, bound on
//! `udp_outgoing_address` with an ephemeral port (peers answer to the
//! query's source), the task that reads replies for as long as a client
//! lives, the wait for the one reply of a one-off query (the CLI's), and
//! the table that late replies are credited to.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::table::PeerTable;

/// A non-blocking UDP socket on `local` (udp_outgoing_address; every
/// address when `None`) with an ephemeral port.
pub fn bind(local: Option<IpAddr>) -> io::Result<std::net::UdpSocket> {
    let ip = local.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Reads datagrams of up to `max_datagram` bytes from `socket` for as long
/// as the task runs, handing each to `reply` with its sender and arrival
/// time. `protocol` names the client in messages.
pub async fn receive(
    protocol: &str,
    socket: &UdpSocket,
    max_datagram: usize,
    mut reply: impl FnMut(&[u8], SocketAddr, Instant),
) {
    let mut buf = vec![0u8; max_datagram];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port-unreachable from an earlier send surfaces here
                // on some systems: not fatal.
                tracing::debug!("{protocol} client receive: {e}");
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
