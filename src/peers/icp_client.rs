//! The ICP client: asks peers whether they hold a URL (squid-spec 1.4,
//! 1.6, 1.7). One UDP socket bound to `udp_outgoing_address` (ephemeral
//! port: peers answer to the query's source), a request-number allocator
//! that never yields 0, and a receive task that matches replies by reqnum
//! AND by sender (IP and the configured ICP port, as Squid's whichPeer);
//! anything else is counted and dropped. A multicast peer gets one query
//! sent to its group (TTL from `ttl=`, out of udp_outgoing_address's
//! interface); replies to it come from `multicast-responder` peers, which
//! are matched like any peer. A group due a count makes the round a
//! counting round: it waits mcast_icp_query_timeout (or a HIT) and feeds
//! the number of responders into the group-size average (squid-spec 1.9).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cuttle_protocol::icp::{self, Message, Opcode};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::table::{mcast_replies_expected, query_timeout, PeerId, PeerTable};
use crate::config::PeerType;

/// One reply that matched a query in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub peer: PeerId,
    pub opcode: Opcode,
    /// From sending the queries to receiving this reply.
    pub rtt: Duration,
}

/// What a round of queries brought back.
#[derive(Debug, Clone, Default)]
pub struct Replies {
    /// The first peer to answer HIT ("first HIT wins").
    pub hit: Option<PeerId>,
    /// The parent whose MISS came first (by weighted time).
    pub first_parent_miss: Option<PeerId>,
    /// The wait ended by timeout rather than by all expected replies (or a HIT).
    pub timed_out: bool,
    /// Every matched reply, in arrival order.
    pub replies: Vec<Reply>,
    /// Queries sent / replies expected (up peers among them).
    pub sent: usize,
    pub expected: usize,
    /// How long the wait was allowed to last.
    pub timeout: Duration,
}

/// Counters of datagrams the client dropped.
#[derive(Debug, Default)]
pub struct ClientCounters {
    pub queries_sent: AtomicU64,
    /// Bytes of the queries sent (`icp.q_kbytes_sent`).
    pub query_bytes_sent: AtomicU64,
    /// Well-formed datagrams received, matched or not (`icp.replies_recv`).
    pub replies_recv: AtomicU64,
    /// Their bytes (`icp.r_kbytes_recv`).
    pub reply_bytes_recv: AtomicU64,
    pub replies_matched: AtomicU64,
    /// Not a valid ICP datagram.
    pub malformed: AtomicU64,
    /// From an address/port that is no peer's ICP address (stray or spoofed).
    pub from_non_peer: AtomicU64,
    /// From a peer, but for no query in flight to that peer (late, replayed
    /// or spoofed reqnum).
    pub unmatched: AtomicU64,
    /// Opcodes a querier ignores (ERR, QUERY, HIT_OBJ, SECHO).
    pub ignored_opcode: AtomicU64,
}

struct Pending {
    table: Arc<PeerTable>,
    sent_at: Instant,
    /// Peers queried, and whether each already answered.
    targets: Vec<(PeerId, bool)>,
    /// A multicast group was among the targets: replies from
    /// `multicast-responder` peers are accepted (squid-spec 1.9).
    via_group: bool,
    tx: mpsc::UnboundedSender<Reply>,
}

type PendingMap = Arc<Mutex<HashMap<u32, Pending>>>;

/// The client. Dropping it stops its receive task.
pub struct IcpClient {
    socket: Arc<UdpSocket>,
    next_reqnum: AtomicU32,
    pending: PendingMap,
    current: Arc<RwLock<Arc<PeerTable>>>,
    pub counters: Arc<ClientCounters>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for IcpClient {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

/// Largest reqnum before wrapping to 1 (Squid wraps at INT_MAX).
const REQNUM_MAX: u32 = i32::MAX as u32;

impl IcpClient {
    /// Binds the socket on `local` (udp_outgoing_address; unspecified when
    /// `None`) with an ephemeral port and starts the receive task. Must run
    /// inside a tokio runtime.
    pub fn bind(local: Option<IpAddr>, table: Arc<PeerTable>) -> std::io::Result<IcpClient> {
        let ip = local.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        std_socket.set_nonblocking(true)?;
        if let IpAddr::V4(v4) = ip {
            if !v4.is_unspecified() {
                // Queries to a multicast group leave by the interface of
                // udp_outgoing_address, not the default route's.
                if let Err(e) = set_multicast_if_v4(&std_socket, v4) {
                    tracing::warn!(%v4, "IP_MULTICAST_IF not set: {e}");
                }
            }
        }
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let pending: PendingMap = Arc::default();
        let current = Arc::new(RwLock::new(table));
        let counters = Arc::new(ClientCounters::default());
        let receiver = tokio::spawn(receive_loop(
            Arc::clone(&socket),
            Arc::clone(&pending),
            Arc::clone(&current),
            Arc::clone(&counters),
        ));
        Ok(IcpClient {
            socket,
            next_reqnum: AtomicU32::new(0),
            pending,
            current,
            counters,
            receiver,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Replies that match no query in flight are credited to peers of this
    /// table (after a reload).
    pub fn set_table(&self, table: Arc<PeerTable>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = table;
    }

    /// The next request number: counts up, wraps from INT_MAX to 1, never 0
    /// (a reply with reqnum 0 would disable a Squid peer's private keys).
    pub fn next_reqnum(&self) -> u32 {
        let prev = self
            .next_reqnum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(if n >= REQNUM_MAX { 1 } else { n + 1 })
            })
            .unwrap_or(0);
        if prev >= REQNUM_MAX {
            1
        } else {
            prev + 1
        }
    }

    /// Queries `targets` (peer and its type for this URL) about `url` in
    /// parallel and waits as Squid does: until a HIT, until every expected
    /// reply arrived (up peers; DENIED does not count), or until the
    /// dynamic timeout. `url` must be in Squid's canonical form: the peer
    /// looks it up verbatim.
    pub async fn query(
        &self,
        table: &Arc<PeerTable>,
        url: &str,
        targets: &[(PeerId, PeerType)],
    ) -> Replies {
        let now = Instant::now();
        let reqnum = self.next_reqnum();
        let mut datagram = Vec::new();
        if Message::query(reqnum, url.as_bytes())
            .encode(&mut datagram)
            .is_err()
        {
            // A URL ICP cannot carry (NUL inside, too long): nothing asked.
            return Replies::default();
        }
        let is_group = |id: PeerId| {
            table
                .get(id)
                .is_some_and(|p| p.config.peer_type == PeerType::Multicast)
        };
        // Unicast peers count when up; a group counts its expected size,
        // or, when due a count, makes this round a counting round that
        // waits mcast_icp_query_timeout (or until a HIT) and then updates
        // the group-size average (squid-spec 1.7, 1.9).
        let mut expected_rtts: Vec<(PeerType, u64)> = Vec::new();
        let mut expected = 0usize;
        let mut counting: Vec<PeerId> = Vec::new();
        for (id, t) in targets {
            let Some(p) = table.get(*id) else { continue };
            if is_group(*id) {
                let state = p.state();
                match mcast_replies_expected(&state, now) {
                    Some(n) => {
                        expected += n as usize;
                        if n > 0 {
                            expected_rtts.push((PeerType::Multicast, state.rtt_ms));
                        }
                    }
                    None => counting.push(*id),
                }
            } else if table.is_up(*id, now) {
                expected += 1;
                expected_rtts.push((*t, p.state().rtt_ms));
            }
        }
        let timeout = if counting.is_empty() {
            query_timeout(&table.timing, &expected_rtts)
        } else {
            table.timing.mcast_icp_query_timeout
        };
        let via_group = targets.iter().any(|(id, _)| is_group(*id));
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(
            reqnum,
            Pending {
                table: Arc::clone(table),
                sent_at: now,
                targets: targets.iter().map(|(id, _)| (*id, false)).collect(),
                via_group,
                tx,
            },
        );
        let mut sent = 0;
        for (id, _) in targets {
            let Some(p) = table.get(*id) else { continue };
            let Some(addr) = p.icp_addr else { continue };
            if is_group(*id) {
                // One datagram to the group, with the peer's ttl= (0 keeps
                // it on this host, as Squid's mcastSetTtl would).
                if let Err(e) = self.socket.set_multicast_ttl_v4(u32::from(p.config.ttl)) {
                    tracing::debug!(%addr, "multicast TTL not set: {e}");
                }
                table.note_mcast_query_sent(*id, now);
            } else {
                table.note_query_sent(*id, now);
            }
            match self.socket.send_to(&datagram, addr).await {
                Ok(n) => {
                    sent += 1;
                    self.counters.queries_sent.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .query_bytes_sent
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(%addr, "ICP query not sent: {e}"),
            }
        }
        let mut out = Replies {
            sent,
            expected,
            timeout,
            ..Replies::default()
        };
        if expected > 0 || !counting.is_empty() {
            let deadline = tokio::time::Instant::from_std(now) + timeout;
            let mut counted = 0usize;
            let mut best_parent: Option<(PeerId, u64)> = None;
            loop {
                let reply = match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(_) => {
                        out.timed_out = true;
                        break;
                    }
                };
                out.replies.push(reply);
                let peer_type = targets
                    .iter()
                    .find(|(id, _)| *id == reply.peer)
                    .map(|(_, t)| *t)
                    .or_else(|| responder_type(table, targets, reply.peer))
                    .unwrap_or(PeerType::Sibling);
                match reply.opcode {
                    Opcode::Hit => {
                        out.hit = Some(reply.peer);
                        break;
                    }
                    Opcode::Miss | Opcode::Decho if peer_type == PeerType::Parent => {
                        if let Some(p) = table.get(reply.peer).filter(|p| !p.config.closest_only) {
                            let base = p.config.basetime.as_millis() as u64;
                            let w = ((reply.rtt.as_millis() as u64).saturating_sub(base)
                                / u64::from(p.config.weight.max(1)))
                            .max(1);
                            if best_parent.is_none_or(|(_, bw)| w < bw) {
                                best_parent = Some((reply.peer, w));
                            }
                        }
                    }
                    _ => {}
                }
                if reply.opcode != Opcode::Denied {
                    counted += 1;
                }
                // A counting round waits its whole timeout (or a HIT).
                if counting.is_empty() && counted >= expected {
                    break;
                }
            }
            out.first_parent_miss = best_parent.map(|(id, _)| id);
        }
        lock(&self.pending).remove(&reqnum);
        if !counting.is_empty() {
            let responders = out
                .replies
                .iter()
                .filter(|r| {
                    table
                        .get(r.peer)
                        .is_some_and(|p| p.config.multicast_responder)
                })
                .count() as u64;
            for id in counting {
                table.note_mcast_count(id, responders, Instant::now());
            }
            // A counting round that ended by HIT or ran out is not a
            // timeout of the ordinary kind (Squid's count is a separate
            // probe): only report one when nothing was heard at all.
            out.timed_out = out.timed_out && out.replies.is_empty() && expected > 0;
        }
        out
    }

    /// Sends one query to `to` and waits up to `timeout` for the reply from
    /// exactly that address with the same reqnum (for `cuttle icp query`).
    /// Returns the opcode and the round-trip time, or `None` on timeout.
    pub async fn query_one(
        &self,
        to: SocketAddr,
        url: &str,
        timeout: Duration,
    ) -> std::io::Result<Option<(Opcode, Duration, u32)>> {
        let reqnum = self.next_reqnum();
        let mut datagram = Vec::new();
        Message::query(reqnum, url.as_bytes())
            .encode(&mut datagram)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let start = Instant::now();
        self.socket.send_to(&datagram, to).await?;
        let deadline = tokio::time::Instant::from_std(start) + timeout;
        let mut buf = vec![0u8; icp::MAX_DATAGRAM];
        loop {
            let got = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await;
            let (n, from) = match got {
                Err(_) => return Ok(None),
                Ok(r) => r?,
            };
            let Some(data) = buf.get(..n) else { continue };
            let Ok(msg) = icp::parse(data) else {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if from != to || msg.reqnum != reqnum {
                self.counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return Ok(Some((msg.opcode(), start.elapsed(), reqnum)));
        }
    }

    /// A bare client for one-off queries (no receive task reading the
    /// socket, so [`IcpClient::query_one`] can read it).
    pub fn bind_plain(local: Option<IpAddr>) -> std::io::Result<IcpClient> {
        let ip = local.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        std_socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let config = crate::config::Config::default();
        Ok(IcpClient {
            socket,
            next_reqnum: AtomicU32::new(0),
            pending: Arc::default(),
            current: Arc::new(RwLock::new(Arc::new(PeerTable::new(&config, None)))),
            counters: Arc::default(),
            receiver: tokio::spawn(async {}),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads replies for as long as the client lives.
async fn receive_loop(
    socket: Arc<UdpSocket>,
    pending: PendingMap,
    current: Arc<RwLock<Arc<PeerTable>>>,
    counters: Arc<ClientCounters>,
) {
    let mut buf = vec![0u8; icp::MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port-unreachable from an earlier send surfaces here
                // on some systems: not fatal.
                tracing::debug!("ICP client receive: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let received = Instant::now();
        let Some(data) = buf.get(..n) else { continue };
        let msg = match icp::parse(data) {
            Ok(m) => m,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, "malformed ICP reply dropped: {e}");
                continue;
            }
        };
        counters.replies_recv.fetch_add(1, Ordering::Relaxed);
        counters
            .reply_bytes_recv
            .fetch_add(n as u64, Ordering::Relaxed);
        handle_reply(&msg, from, received, &pending, &current, &counters);
    }
}

fn handle_reply(
    msg: &Message<'_>,
    from: SocketAddr,
    received: Instant,
    pending: &PendingMap,
    current: &RwLock<Arc<PeerTable>>,
    counters: &ClientCounters,
) {
    let opcode = msg.opcode();
    // Squid's querier: ERR, HIT_OBJ and anything not a reply have no side
    // effects at all (the peer is not even marked alive).
    if !matches!(
        opcode,
        Opcode::Hit | Opcode::Miss | Opcode::MissNoFetch | Opcode::Denied | Opcode::Decho
    ) {
        counters.ignored_opcode.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let version = match msg.version {
        icp::Version::V3 => 3,
        _ => 2,
    };
    let mut map = lock(pending);
    if let Some(p) = map.get_mut(&msg.reqnum) {
        let table = Arc::clone(&p.table);
        let Some(peer) = table.by_icp_addr(from) else {
            counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, "ICP {} from a non-peer ignored", opcode.name());
            return;
        };
        table.note_reply(peer, opcode as u8, version, received);
        let responder = p.via_group
            && table
                .get(peer)
                .is_some_and(|c| c.config.multicast_responder)
            && !p.targets.iter().any(|(id, _)| *id == peer);
        if responder {
            // First reply from this group member: it joins the targets, so
            // a duplicate is dropped like any other.
            p.targets.push((peer, false));
        }
        let Some(slot) = p
            .targets
            .iter_mut()
            .find(|(id, done)| *id == peer && !*done)
        else {
            // A peer we did not ask with this reqnum, or a duplicate.
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
            table.note_ignored(peer);
            return;
        };
        slot.1 = true;
        let rtt = received.saturating_duration_since(p.sent_at);
        table.note_rtt(peer, rtt);
        counters.replies_matched.fetch_add(1, Ordering::Relaxed);
        let _ = p.tx.send(Reply { peer, opcode, rtt });
        return;
    }
    drop(map);
    // No query in flight: a late reply still shows the peer alive.
    let table = Arc::clone(&current.read().unwrap_or_else(|p| p.into_inner()));
    match table.by_icp_addr(from) {
        Some(peer) => {
            table.note_reply(peer, opcode as u8, version, received);
            table.note_ignored(peer);
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// IP_MULTICAST_IF by interface address (std has no setter for it).
fn set_multicast_if_v4(socket: &std::net::UdpSocket, interface: Ipv4Addr) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_multicast_if_v4(&interface)
}

/// The type a multicast responder answers as: a sibling when a queried
/// group has `multicast-siblings`, else its own `cache_peer` type.
fn responder_type(
    table: &PeerTable,
    targets: &[(PeerId, PeerType)],
    responder: PeerId,
) -> Option<PeerType> {
    let p = table.get(responder)?;
    if !p.config.multicast_responder {
        return None;
    }
    let siblings = targets.iter().any(|(id, _)| {
        table.get(*id).is_some_and(|g| {
            g.config.peer_type == PeerType::Multicast && g.config.multicast_siblings
        })
    });
    Some(if siblings {
        PeerType::Sibling
    } else {
        p.config.peer_type
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_interface_is_set_by_a_local_address_only() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // A byte-order mistake would name 1.0.0.127, which is no local
        // address, and fail like the documentation address below.
        set_multicast_if_v4(&s, Ipv4Addr::LOCALHOST).expect("lo's address");
        assert!(set_multicast_if_v4(&s, Ipv4Addr::new(192, 0, 2, 1)).is_err());
    }

    #[tokio::test]
    async fn reqnums_count_up_and_skip_zero_when_wrapping() {
        let c = IcpClient::bind_plain(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))).expect("bind");
        assert_eq!(c.next_reqnum(), 1);
        assert_eq!(c.next_reqnum(), 2);
        c.next_reqnum.store(REQNUM_MAX - 1, Ordering::Relaxed);
        assert_eq!(c.next_reqnum(), REQNUM_MAX);
        assert_eq!(c.next_reqnum(), 1, "wraps from INT_MAX to 1, never 0");
        c.next_reqnum.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(c.next_reqnum(), 1);
    }
}
