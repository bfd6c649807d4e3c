//! The ICP client: asks peers whether they hold a URL (squid-spec 1.4,
//! 1.6, 1.7). The proxy's client sends from the ICP responder's socket
//! (icp_port, see `querier`) and hears replies through it; with no
//! icp_port it sends no query ("ICP is disabled!", as Squid logs). A
//! request-number allocator that never yields 0, and a receive task that
//! matches replies by reqnum AND by sender (IP and the configured ICP
//! port, as Squid's whichPeer); anything else is counted and dropped. A
//! multicast peer gets one query sent to its group (TTL from `ttl=`, out
//! of udp_outgoing_address's interface); replies to it come from
//! `multicast-responder` peers, which are matched like any peer. A client
//! query waits for as many of them as the group's average count; the
//! count itself is a separate probe ([`IcpClient::count_group`]) that
//! waits mcast_icp_query_timeout (squid-spec 1.9).
//!
//! SRC_RTT (squid-spec 1.3, 1.6): with `query_icmp on`, a query to a peer
//! whose last reply was version 2 (a new peer counts as 2) sets
//! ICP_FLAG_SRC_RTT. A parent's MISS or DECHO carrying the flag reports
//! its RTT to the origin (low 16 bits of the option data; hops in the high
//! 16): the parent with the smallest non-zero RTT becomes the closest
//! parent miss, ties to the first to answer, 0xFFFF included, as Squid 5.7
//! chooses (seen). A `closest-only` parent, and any parent answering once
//! a closest one is known, never becomes the first parent miss
//! ([`ParentMisses`]). Squid also files each reported RTT in its NetDB
//! under the parent (for CLOSEST_PARENT without queries); cuttle does not.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::icp::{self, Message, Opcode};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::netdb::SrcRtt;
use super::querier::{self, lock, CurrentTable};
use super::table::{mcast_replies_expected, query_timeout, PeerId, PeerTable};
use crate::config::{CachePeer, PeerType};

/// One reply that matched a query in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub peer: PeerId,
    pub opcode: Opcode,
    /// From sending the queries to receiving this reply.
    pub rtt: Duration,
    /// The reply carried ICP_FLAG_SRC_RTT: the peer's RTT to the origin.
    pub src_rtt: Option<SrcRtt>,
}

/// What a round of queries brought back.
#[derive(Debug, Clone, Default)]
pub struct Replies {
    /// The first peer to answer HIT ("first HIT wins").
    pub hit: Option<PeerId>,
    /// The parent whose MISS came first (by weighted time). Like the
    /// closest, set even when the wait then timed out; selection decides.
    pub first_parent_miss: Option<PeerId>,
    /// The parent whose MISS reported the smallest origin RTT (SRC_RTT,
    /// `query_icmp on`).
    pub closest_parent_miss: Option<PeerId>,
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

/// Another protocol's queries in an ICP round (HTCP TST): called with the
/// round's start and reply channel, returns how many queries went out.
pub type CoQuery<'a> = dyn Fn(Instant, &mpsc::UnboundedSender<Reply>) -> usize + Send + Sync + 'a;

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
    /// A socket of its own, read by [`IcpClient::query_one`] (the CLI's).
    socket: Option<Arc<UdpSocket>>,
    /// Where queries leave from; `None`: ICP is disabled (no icp_port).
    sender: Option<querier::SendSocket>,
    next_reqnum: AtomicU32,
    pending: PendingMap,
    current: CurrentTable,
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
    pub fn bind(
        local: Option<IpAddr>,
        table: Arc<PeerTable>,
        counters: Arc<ClientCounters>,
    ) -> std::io::Result<IcpClient> {
        let std_socket = querier::bind(local)?;
        set_multicast_interface(&std_socket, local);
        let sender = Arc::new(std_socket.try_clone()?);
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        Ok(IcpClient::start(
            Some(querier::SendSocket::Own(sender)),
            querier::Incoming::Socket(socket),
            table,
            counters,
        ))
    }

    /// A client sending from the ICP responder's socket `on` (Squid's
    /// one ICP socket), hearing replies through its inbox; with `None` (no
    /// icp_port) a client that asks no ICP peer. `multicast_interface`:
    /// udp_outgoing_address. `counters` outlive the client, so a client
    /// made anew (after a reload) keeps counting where the last one was.
    /// Must run inside a tokio runtime.
    pub fn on(
        on: Option<&querier::QuerySocket>,
        multicast_interface: Option<IpAddr>,
        table: Arc<PeerTable>,
        counters: Arc<ClientCounters>,
    ) -> IcpClient {
        match on {
            Some(q) => {
                if let Some(socket) = q.socket.upgrade() {
                    set_multicast_interface(&socket, multicast_interface);
                }
                IcpClient::start(
                    Some(querier::SendSocket::Lent(q.socket.clone())),
                    querier::Incoming::Inbox(q.inbox.listen()),
                    table,
                    counters,
                )
            }
            None => IcpClient::start(
                None,
                querier::Incoming::Inbox(querier::Inbox::default().listen()),
                table,
                counters,
            ),
        }
    }

    fn start(
        sender: Option<querier::SendSocket>,
        incoming: querier::Incoming,
        table: Arc<PeerTable>,
        counters: Arc<ClientCounters>,
    ) -> IcpClient {
        let pending: PendingMap = Arc::default();
        let current = CurrentTable::new(table);
        let receiver = tokio::spawn(receive_loop(
            incoming,
            Arc::clone(&pending),
            current.clone(),
            Arc::clone(&counters),
        ));
        IcpClient {
            socket: None,
            sender,
            next_reqnum: AtomicU32::new(0),
            pending,
            current,
            counters,
            receiver,
        }
    }

    /// Where queries leave from.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.sender.as_ref().and_then(querier::SendSocket::get) {
            Some(s) => s.local_addr(),
            None => Err(std::io::Error::other("ICP is disabled")),
        }
    }

    /// Replies that match no query in flight are credited to peers of this
    /// table (after a reload).
    pub fn set_table(&self, table: Arc<PeerTable>) {
        self.current.set(table);
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
        self.query_with(table, url, targets, None).await
    }

    /// [`IcpClient::query`] with the `htcp` peers among `targets` asked by
    /// `htcp` (HTCP TST, squid-spec 2.5) in the same round: it gets the
    /// round's start and reply channel and returns how many it asked. Their
    /// replies count like ICP ones (same timeout, RTT and dead-peer rules).
    pub async fn query_with(
        &self,
        table: &Arc<PeerTable>,
        url: &str,
        targets: &[(PeerId, PeerType)],
        htcp: Option<&CoQuery<'_>>,
    ) -> Replies {
        let Some(sender) = self.sender.as_ref().and_then(querier::SendSocket::get) else {
            // Squid skips each ICP peer with this line; HTCP peers are
            // still asked.
            let htcp_only: Vec<(PeerId, PeerType)> = targets
                .iter()
                .filter(|(id, _)| {
                    let by_htcp = table.get(*id).is_some_and(|p| p.speaks_htcp());
                    if !by_htcp {
                        tracing::warn!("ICP is disabled! Cannot send ICP request to peer.");
                    }
                    by_htcp
                })
                .copied()
                .collect();
            if htcp_only.is_empty() {
                return Replies::default();
            }
            return self.round(table, url, &htcp_only, htcp, None).await;
        };
        self.round(table, url, targets, htcp, Some(&sender)).await
    }

    /// One round of [`IcpClient::query_with`]; ICP queries go out on
    /// `sender` (`None`: only the HTCP ones).
    async fn round(
        &self,
        table: &Arc<PeerTable>,
        url: &str,
        targets: &[(PeerId, PeerType)],
        htcp: Option<&CoQuery<'_>>,
        sender: Option<&Arc<std::net::UdpSocket>>,
    ) -> Replies {
        let now = Instant::now();
        let reqnum = self.next_reqnum();
        let mut datagram = Vec::new();
        let mut query = Message::query(reqnum, url.as_bytes());
        if query.encode(&mut datagram).is_err() {
            // A URL ICP cannot carry (NUL inside, too long): nothing asked.
            return Replies::default();
        }
        // The same query asking for the origin RTT, for the peers that get it.
        let mut asking_rtt = Vec::new();
        if table.query_icmp {
            query.options = icp::Options(icp::Options::SRC_RTT);
            if query.encode(&mut asking_rtt).is_err() {
                asking_rtt.clear();
            }
        }
        let is_group = |id: PeerId| {
            table
                .get(id)
                .is_some_and(|p| p.config.peer_type == PeerType::Multicast)
        };
        // Unicast peers count when up; a group counts the whole part of
        // its average number of responders (squid-spec 1.7, 1.9).
        let mut expected_rtts: Vec<(PeerType, u64)> = Vec::new();
        let mut expected = 0usize;
        for (id, t) in targets {
            let Some(p) = table.get(*id) else { continue };
            if is_group(*id) {
                let state = p.state();
                let n = mcast_replies_expected(&state);
                expected += n as usize;
                if n > 0 {
                    expected_rtts.push((PeerType::Multicast, state.rtt_ms));
                }
            } else if table.is_up(*id, now) {
                expected += 1;
                expected_rtts.push((*t, p.state().rtt_ms));
            }
        }
        let timeout = query_timeout(&table.timing, &expected_rtts);
        let via_group = targets.iter().any(|(id, _)| is_group(*id));
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(
            reqnum,
            Pending {
                table: Arc::clone(table),
                sent_at: now,
                targets: targets.iter().map(|(id, _)| (*id, false)).collect(),
                via_group,
                tx: tx.clone(),
            },
        );
        let mut sent = 0;
        for (id, _) in targets {
            let Some(p) = table.get(*id) else { continue };
            let Some(addr) = p.icp_addr else { continue };
            if p.speaks_htcp() {
                // Asked with TST by `htcp`, below.
                continue;
            }
            let Some(sender) = sender else { continue };
            if is_group(*id) {
                // One datagram to the group, with the peer's ttl= (0 keeps
                // it on this host, as Squid's mcastSetTtl would).
                if let Err(e) = sender.set_multicast_ttl_v4(u32::from(p.config.ttl)) {
                    tracing::debug!(%addr, "multicast TTL not set: {e}");
                }
                table.note_mcast_query_sent(*id, now);
            } else {
                table.note_query_sent(*id, now);
            }
            let wire = if asks_src_rtt(table, p) && !asking_rtt.is_empty() {
                &asking_rtt
            } else {
                &datagram
            };
            // Non-blocking: a full socket buffer drops the query, as
            // Squid's second failed try does.
            match sender.send_to(wire, addr) {
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
        if let Some(htcp) = htcp {
            sent += htcp(now, &tx);
        }
        drop(tx);
        let mut out = Replies {
            sent,
            expected,
            timeout,
            ..Replies::default()
        };
        if expected > 0 {
            let deadline = tokio::time::Instant::from_std(now) + timeout;
            let mut counted = 0usize;
            let mut misses = ParentMisses::default();
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
                        if let Some(p) = table.get(reply.peer) {
                            misses.note(&reply, &p.config, table.query_icmp);
                        }
                    }
                    _ => {}
                }
                if reply.opcode != Opcode::Denied {
                    counted += 1;
                }
                if counted >= expected {
                    break;
                }
            }
            out.first_parent_miss = misses.first.map(|(id, _)| id);
            out.closest_parent_miss = misses.closest.map(|(id, _)| id);
        }
        lock(&self.pending).remove(&reqnum);
        out
    }

    /// Counts the responders of multicast group `id` as Squid does
    /// (squid-spec 1.9): one query of its own, for the group's URL
    /// (`http://GROUP:PORT/`), sent to the group; every
    /// `multicast-responder` peer that answers within
    /// mcast_icp_query_timeout counts, and the count is folded into the
    /// group's average, which client queries then wait for. Returns the
    /// count (`None` when nothing could be sent).
    pub async fn count_group(&self, table: &Arc<PeerTable>, id: PeerId) -> Option<u64> {
        let group = table.get(id)?;
        let addr = group.icp_addr?;
        let sender = self.sender.as_ref()?.get()?;
        let url = format!("http://{addr}/");
        let reqnum = self.next_reqnum();
        let mut datagram = Vec::new();
        Message::query(reqnum, url.as_bytes())
            .encode(&mut datagram)
            .ok()?;
        let now = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel();
        // No targets: only responders' replies match (via_group).
        lock(&self.pending).insert(
            reqnum,
            Pending {
                table: Arc::clone(table),
                sent_at: now,
                targets: Vec::new(),
                via_group: true,
                tx,
            },
        );
        if let Err(e) = sender.set_multicast_ttl_v4(u32::from(group.config.ttl)) {
            tracing::debug!(%addr, "multicast TTL not set: {e}");
        }
        table.note_mcast_query_sent(id, now);
        match sender.send_to(&datagram, addr) {
            Ok(_) => {
                self.counters.queries_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                lock(&self.pending).remove(&reqnum);
                tracing::debug!(%addr, "multicast count query not sent: {e}");
                return None;
            }
        }
        let deadline = tokio::time::Instant::from_std(now) + table.timing.mcast_icp_query_timeout;
        let mut responders = 0u64;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            responders += 1;
        }
        lock(&self.pending).remove(&reqnum);
        table.note_mcast_count(id, responders, Instant::now());
        tracing::debug!(
            group = %group.config.name,
            responders,
            expected = mcast_replies_expected(&group.state()),
            "multicast group counted"
        );
        Some(responders)
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
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| std::io::Error::other("not a one-off client"))?;
        let start = Instant::now();
        socket.send_to(&datagram, to).await?;
        let deadline = tokio::time::Instant::from_std(start) + timeout;
        let reply = querier::first_reply(socket, icp::MAX_DATAGRAM, deadline, |data, from| {
            // The codec keeps unknown opcodes and versions; to a querier
            // they are malformed.
            let Some(msg) = icp::parse(data).ok().filter(is_known) else {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            if from != to || msg.reqnum != reqnum {
                self.counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(msg.opcode())
        })
        .await?;
        Ok(reply.map(|opcode| (opcode, start.elapsed(), reqnum)))
    }

    /// A bare client for one-off queries (no receive task reading the
    /// socket, so [`IcpClient::query_one`] can read it).
    pub fn bind_plain(local: Option<IpAddr>) -> std::io::Result<IcpClient> {
        let std_socket = querier::bind(local)?;
        let sender = Arc::new(std_socket.try_clone()?);
        Ok(IcpClient {
            socket: Some(Arc::new(UdpSocket::from_std(std_socket)?)),
            sender: Some(querier::SendSocket::Own(sender)),
            next_reqnum: AtomicU32::new(0),
            pending: Arc::default(),
            current: CurrentTable::empty(),
            counters: Arc::default(),
            receiver: tokio::spawn(async {}),
        })
    }
}

/// Reads replies for as long as the client lives.
async fn receive_loop(
    incoming: querier::Incoming,
    pending: PendingMap,
    current: CurrentTable,
    counters: Arc<ClientCounters>,
) {
    querier::receive(
        "ICP",
        incoming,
        icp::MAX_DATAGRAM,
        |data, from, received| {
            let msg = match icp::parse(data) {
                Ok(m) if is_known(&m) => m,
                Ok(m) => {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, opcode = m.opcode().value(), "unknown ICP reply dropped");
                    return;
                }
                Err(e) => {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, "malformed ICP reply dropped: {e}");
                    return;
                }
            };
            counters.replies_recv.fetch_add(1, Ordering::Relaxed);
            counters
                .reply_bytes_recv
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            handle_reply(&msg, from, received, &pending, &current, &counters);
        },
    )
    .await;
}

/// An opcode and version the codec names (it keeps others as values).
fn is_known(msg: &Message<'_>) -> bool {
    msg.opcode().is_known() && msg.version.is_known()
}

fn handle_reply(
    msg: &Message<'_>,
    from: SocketAddr,
    received: Instant,
    pending: &PendingMap,
    current: &CurrentTable,
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
        table.note_reply(peer, opcode.value(), version, received);
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
        let src_rtt = msg.options.src_rtt().then(|| {
            let (rtt_ms, hops) = icp::split_src_rtt(msg.option_data);
            SrcRtt { rtt_ms, hops }
        });
        let _ = p.tx.send(Reply {
            peer,
            opcode,
            rtt,
            src_rtt,
        });
        return;
    }
    drop(map);
    // No query in flight: a late reply still shows the peer alive.
    let table = current.get();
    match table.by_icp_addr(from) {
        Some(peer) => {
            table.note_reply(peer, opcode.value(), version, received);
            table.note_ignored(peer);
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a query to `peer` sets ICP_FLAG_SRC_RTT: `query_icmp on` and
/// the peer's last reply was version 2 (Squid stops asking a peer that
/// answered version 3; a peer not heard yet counts as version 2).
fn asks_src_rtt(table: &PeerTable, peer: &super::table::Peer) -> bool {
    table.query_icmp && peer.state().icp_version == 2
}

/// Squid's handleIcpParentMiss over one round of queries (squid-spec 1.3,
/// 1.6): fed every MISS or DECHO from a peer that is a parent for the URL,
/// in arrival order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParentMisses {
    /// The parent that reported the smallest non-zero origin RTT, and it.
    pub closest: Option<(PeerId, u16)>,
    /// The parent whose MISS came first by weighted time, and that time:
    /// max(1, (ms since the queries went out - basetime) / weight).
    pub first: Option<(PeerId, u64)>,
}

impl ParentMisses {
    /// One parent's MISS (or DECHO). Its RTT report counts only with
    /// `query_icmp` on; a smaller one replaces the closest, a tie keeps the
    /// earlier. It is a first-parent-miss candidate unless it is
    /// `closest-only` or a closest parent is known by now.
    pub fn note(&mut self, reply: &Reply, parent: &CachePeer, query_icmp: bool) {
        if let Some(r) = reply.src_rtt.filter(|_| query_icmp) {
            if r.rtt_ms != 0 && self.closest.is_none_or(|(_, best)| r.rtt_ms < best) {
                self.closest = Some((reply.peer, r.rtt_ms));
            }
        }
        if parent.closest_only || self.closest.is_some() {
            return;
        }
        let base = parent.basetime.as_millis() as u64;
        let w = ((reply.rtt.as_millis() as u64).saturating_sub(base)
            / u64::from(parent.weight.max(1)))
        .max(1);
        if self.first.is_none_or(|(_, best)| w < best) {
            self.first = Some((reply.peer, w));
        }
    }
}

/// IP_MULTICAST_IF by interface address (std has no setter for it).
/// Queries to a multicast group leave by the interface of
/// udp_outgoing_address (`local`), not the default route's.
fn set_multicast_interface(socket: &std::net::UdpSocket, local: Option<IpAddr>) {
    if let Some(IpAddr::V4(v4)) = local {
        if !v4.is_unspecified() {
            if let Err(e) = set_multicast_if_v4(socket, v4) {
                tracing::warn!(%v4, "IP_MULTICAST_IF not set: {e}");
            }
        }
    }
}

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

    fn parent(options: &str) -> CachePeer {
        let text = format!("cache_peer 127.0.8.50 parent 3128 3130 {options}\n");
        let loaded = crate::config::load_str_sandboxed(&text, "test");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.config.cache_peers[0].value.clone()
    }

    /// A MISS from `peer` after `ms`, with SRC_RTT option data when given.
    fn miss(peer: PeerId, ms: u64, option_data: Option<u32>) -> Reply {
        Reply {
            peer,
            opcode: Opcode::Miss,
            rtt: Duration::from_millis(ms),
            src_rtt: option_data.map(|d| {
                let (rtt_ms, hops) = icp::split_src_rtt(d);
                SrcRtt { rtt_ms, hops }
            }),
        }
    }

    /// The round's (closest, first) after these replies, in this order.
    fn round(
        replies: &[(Reply, &CachePeer)],
        query_icmp: bool,
    ) -> (Option<PeerId>, Option<PeerId>) {
        let mut m = ParentMisses::default();
        for (r, p) in replies {
            m.note(r, p, query_icmp);
        }
        (m.closest.map(|c| c.0), m.first.map(|f| f.0))
    }

    // Each case below is one Squid 5.7 was seen to decide (two fake
    // parents answering a child with query_icmp on).

    #[test]
    fn the_smallest_reported_rtt_is_the_closest_whatever_the_order_or_hops() {
        let p = parent("");
        // rtt 5 first, rtt 3 later: the later one.
        let r = [(miss(1, 1, Some(5)), &p), (miss(2, 2, Some(3)), &p)];
        assert_eq!(round(&r, true).0, Some(2));
        // hops (high half) do not count: rtt 2 with hops 0xFFFF beats 3.
        let r = [
            (miss(2, 1, Some(3)), &p),
            (miss(1, 2, Some(0xFFFF_0002)), &p),
        ];
        assert_eq!(round(&r, true).0, Some(1));
        // 0xFFFF is an RTT like any other (Squid chose that parent).
        let r = [(miss(2, 1, None), &p), (miss(1, 2, Some(0xFFFF)), &p)];
        assert_eq!(round(&r, true), (Some(1), Some(2)));
        // A tie keeps the first to answer.
        for (a, b) in [(1, 2), (2, 1)] {
            let r = [(miss(a, 1, Some(1)), &p), (miss(b, 2, Some(1)), &p)];
            assert_eq!(round(&r, true).0, Some(a));
        }
    }

    #[test]
    fn no_closest_without_a_flagged_nonzero_rtt_or_with_query_icmp_off() {
        let p = parent("");
        // The flag with rtt 0 (hops 1): no closest; the first to answer is
        // the first parent miss.
        let r = [(miss(1, 1, Some(0x0001_0000)), &p), (miss(2, 2, None), &p)];
        assert_eq!(round(&r, true), (None, Some(1)));
        // Option data without the flag never gets here (no src_rtt).
        let r = [(miss(1, 1, None), &p), (miss(2, 2, None), &p)];
        assert_eq!(round(&r, true), (None, Some(1)));
        // query_icmp off: a reported RTT is ignored.
        let r = [(miss(2, 1, None), &p), (miss(1, 2, Some(1)), &p)];
        assert_eq!(round(&r, false), (None, Some(2)));
    }

    #[test]
    fn once_a_closest_parent_is_known_later_misses_are_not_first() {
        let p = parent("");
        // Flagged first: it is the closest; the later plain MISS is not
        // made the first parent miss.
        let r = [(miss(1, 1, Some(4)), &p), (miss(2, 2, None), &p)];
        assert_eq!(round(&r, true), (Some(1), None));
        // A first parent miss from before stays (selection prefers the
        // closest anyway).
        let r = [(miss(1, 1, None), &p), (miss(2, 2, Some(9)), &p)];
        assert_eq!(round(&r, true), (Some(2), Some(1)));
    }

    #[test]
    fn closest_only_parents_are_never_the_first_parent_miss() {
        let only = parent("closest-only");
        let plain = parent("");
        let r = [(miss(1, 1, None), &only), (miss(2, 2, None), &plain)];
        assert_eq!(round(&r, true), (None, Some(2)));
        let r = [(miss(1, 1, None), &only), (miss(2, 2, None), &only)];
        assert_eq!(round(&r, true), (None, None));
        // ... but one may be the closest.
        let r = [(miss(2, 1, None), &only), (miss(1, 2, Some(4)), &only)];
        assert_eq!(round(&r, true), (Some(1), None));
    }

    #[test]
    fn first_parent_miss_time_is_weighted() {
        // 30 ms / weight 3 = 10 beats 20 ms / 1; basetime comes off first.
        let heavy = parent("weight=3");
        let plain = parent("");
        let r = [(miss(1, 20, None), &plain), (miss(2, 30, None), &heavy)];
        assert_eq!(round(&r, false).1, Some(2));
        let based = parent("basetime=15");
        let r = [(miss(1, 10, None), &plain), (miss(2, 20, None), &based)];
        assert_eq!(round(&r, false).1, Some(2), "max(1, 20 - 15) < 10");
    }

    #[tokio::test]
    async fn a_group_is_counted_by_a_probe_and_queries_wait_for_that_many() {
        use tokio::net::UdpSocket;
        let bind = |last: u8| UdpSocket::bind((Ipv4Addr::new(127, 0, 9, last), 0));
        let (group, responder, stranger) = (
            bind(81).await.expect("bind"),
            bind(82).await.expect("bind"),
            bind(83).await.expect("bind"),
        );
        let port = |s: &UdpSocket| s.local_addr().expect("addr").port();
        // A unicast stand-in for the group; a long icp_query_timeout, so
        // only the expected count can end a query early.
        let text = format!(
            "cache_peer 127.0.9.81 multicast 3128 {} ttl=1\n\
             cache_peer 127.0.9.82 sibling 3128 {} multicast-responder\n\
             cache_peer 127.0.9.83 sibling 3128 {}\n\
             mcast_icp_query_timeout 300\nicp_query_timeout 5000\n",
            port(&group),
            port(&responder),
            port(&stranger)
        );
        let loaded = crate::config::load_str_sandboxed(&text, "test");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let table = Arc::new(PeerTable::new(&loaded.config, None));
        let local = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 80));
        let client =
            IcpClient::bind(Some(local), Arc::clone(&table), Arc::default()).expect("bind");
        // The "group" hands each query to its members; both answer, but
        // only the multicast-responder counts.
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&asked);
        tokio::spawn(async move {
            let mut buf = vec![0u8; icp::MAX_DATAGRAM];
            while let Ok((n, from)) = group.recv_from(&mut buf).await {
                let q = icp::parse(&buf[..n]).expect("a query");
                lock(&seen).push(String::from_utf8_lossy(q.body.url().0).to_string());
                let mut reply = Vec::new();
                q.reply(Opcode::Miss)
                    .expect("reply")
                    .encode(&mut reply)
                    .expect("encode");
                for member in [&responder, &stranger] {
                    member.send_to(&reply, from).await.expect("send");
                }
            }
        });
        assert_eq!(mcast_replies_expected(&table.peers[0].state()), 0);
        assert_eq!(client.count_group(&table, 0).await, Some(1));
        assert_eq!(
            lock(&asked).clone(),
            [format!("http://127.0.9.81:{}/", port_of(&table, 0))]
        );
        assert_eq!(mcast_replies_expected(&table.peers[0].state()), 1);
        // A client query expects one reply and ends with it.
        let r = client
            .query(&table, "http://example.test/x", &[(0, PeerType::Multicast)])
            .await;
        assert_eq!((r.expected, r.timed_out), (1, false), "{r:?}");
        assert_eq!(r.replies.first().map(|r| r.peer), Some(1), "{r:?}");
    }

    fn port_of(table: &PeerTable, id: PeerId) -> u16 {
        table
            .get(id)
            .and_then(|p| p.icp_addr)
            .map_or(0, |a| a.port())
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
