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
//! waits mcast_icp_query_timeout (squid-spec 1.9). A round's queries go
//! out together, in one `sendmmsg` ([`super::batch_io`]); only a multicast
//! group with another TTL than one already queued starts a second batch.
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

use super::batch_io::SendBatch;
use super::core::round::{Protocol, QueryRound, Step};
use super::netdb::SrcRtt;
use super::querier::{self, lock, CurrentTable};
use super::table::{mcast_replies_expected, PeerId, PeerTable};
use crate::config::PeerType;

pub use super::core::round::{ParentMisses, Replies, Reply};

/// What a round asks about: the URL (in Squid's canonical form: the peer
/// looks it up verbatim), its host (the peers' types depend on it), and
/// when the request's selection started (the caller's one clock read).
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub url: &'a str,
    pub host: &'a str,
    pub now: Instant,
}

/// Another protocol's queries in an ICP round (HTCP TST): called with the
/// peers the core asks that way, the round's start and reply channel;
/// returns how many queries went out.
pub type CoQuery<'a> =
    dyn Fn(&[PeerId], Instant, &mpsc::UnboundedSender<Reply>) -> usize + Send + Sync + 'a;

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
        let host = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_string))
            .unwrap_or_default();
        let ask = Ask {
            url,
            host: &host,
            now: Instant::now(),
        };
        self.query_with(table, ask, targets, None).await.0
    }

    /// [`IcpClient::query`] for `ask`, with the `htcp` peers
    /// among `targets` asked by `htcp` (HTCP TST, squid-spec 2.5) in the
    /// same round: it gets the round's start and reply channel and returns
    /// how many it asked. Their replies count like ICP ones (same timeout,
    /// RTT and dead-peer rules). Returns the replies and when the round
    /// ended (the last reply's arrival, or the deadline).
    pub async fn query_with(
        &self,
        table: &Arc<PeerTable>,
        ask: Ask<'_>,
        targets: &[(PeerId, PeerType)],
        htcp: Option<&CoQuery<'_>>,
    ) -> (Replies, Instant) {
        let Some(sender) = self.sender.as_ref().and_then(querier::SendSocket::get) else {
            // Squid skips each ICP peer with this line; HTCP peers are
            // still asked.
            let htcp_only: Vec<(PeerId, PeerType)> = targets
                .iter()
                .filter(|(id, _)| {
                    let by_htcp = table.get(*id).is_some_and(|p| p.speaks_htcp());
                    if !by_htcp {
                        let peer = table.get(*id).map_or("", |p| p.name());
                        tracing::warn!(peer, "ICP is disabled! Cannot send ICP request to peer.");
                    }
                    by_htcp
                })
                .copied()
                .collect();
            if htcp_only.is_empty() {
                return (Replies::default(), ask.now);
            }
            return self.round(table, ask, &htcp_only, htcp, None).await;
        };
        self.round(table, ask, targets, htcp, Some(&sender)).await
    }

    /// One round of [`IcpClient::query_with`], driving the core's
    /// [`QueryRound`]: ICP queries go out on `sender` (`None`: only the
    /// HTCP ones), replies and the deadline go back in.
    async fn round(
        &self,
        table: &Arc<PeerTable>,
        ask: Ask<'_>,
        targets: &[(PeerId, PeerType)],
        htcp: Option<&CoQuery<'_>>,
        sender: Option<&Arc<std::net::UdpSocket>>,
    ) -> (Replies, Instant) {
        let Ask { url, host, now } = ask;
        let reqnum = self.next_reqnum();
        let mut datagram = Vec::new();
        let mut query = Message::query(reqnum, url.as_bytes());
        if query.encode(&mut datagram).is_err() {
            // A URL ICP cannot carry (NUL inside, too long): nothing asked.
            return (Replies::default(), now);
        }
        // The same query asking for the origin RTT, for the peers that get it.
        let mut asking_rtt = Vec::new();
        if table.query_icmp {
            query.options = icp::Options(icp::Options::SRC_RTT);
            if query.encode(&mut asking_rtt).is_err() {
                asking_rtt.clear();
            }
        }
        // And asking for the load, for `load-aware` peers (peers/load.rs).
        let load_aware = |id: PeerId| table.get(id).is_some_and(|p| p.config.load_aware);
        let mut asking_load = Vec::new();
        if targets.iter().any(|(id, _)| load_aware(*id)) {
            query.options = super::load::report::ask();
            if query.encode(&mut asking_load).is_err() {
                asking_load.clear();
            }
        }
        let (mut round, queries, effects) =
            QueryRound::start(table.as_ref(), host, targets, sender.is_some(), now);
        table.apply_all(&effects);
        let via_group = queries.iter().any(|q| q.multicast_ttl.is_some())
            || targets.iter().any(|(id, _)| {
                table
                    .get(*id)
                    .is_some_and(|p| p.config.peer_type == PeerType::Multicast)
            });
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
        let mut batch = SendBatch::new();
        // The multicast TTL the queued queries need: the socket's when the
        // batch goes out.
        let mut queued_ttl = None;
        for q in &queries {
            // HTCP peers are asked with TST by `htcp`, below.
            let (Protocol::Icp { src_rtt }, Some(sender)) = (q.protocol, sender) else {
                continue;
            };
            if let Some(ttl) = q.multicast_ttl {
                if queued_ttl.is_some_and(|queued| queued != ttl) {
                    sent += self.send_queries(sender, &mut batch);
                }
                queued_ttl = Some(ttl);
                // One datagram to the group, with the peer's ttl= (0 keeps
                // it on this host, as Squid's mcastSetTtl would).
                if let Err(e) = sender.set_multicast_ttl_v4(u32::from(ttl)) {
                    tracing::debug!(addr = %q.to, error = %e, "multicast TTL not set");
                }
            }
            table.apply(&q.effect);
            let wire = if src_rtt && !asking_rtt.is_empty() {
                &asking_rtt
            } else if load_aware(q.peer) && !asking_load.is_empty() {
                &asking_load
            } else {
                &datagram
            };
            batch.push(wire, q.to, ());
        }
        if let Some(sender) = sender {
            sent += self.send_queries(sender, &mut batch);
        }
        // The peers the core asks with TST.
        let tst: Vec<PeerId> = queries
            .iter()
            .filter(|q| q.protocol == Protocol::Htcp)
            .map(|q| q.peer)
            .collect();
        if let (Some(htcp), false) = (htcp, tst.is_empty()) {
            sent += htcp(&tst, now, &tx);
        }
        drop(tx);
        round.note_sent(sent);
        let mut step = round.step();
        let mut ended = now;
        let out = loop {
            let deadline = match step {
                Step::Done(replies) => break replies,
                Step::Wait { deadline } => deadline,
            };
            step = match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(reply)) => {
                    ended = Instant::now();
                    let peer = table.get(reply.peer).map_or("", |p| p.name());
                    tracing::debug!(peer, code = reply.opcode.name(), rtt = ?reply.rtt, "peer reply");
                    round.on_reply(table.as_ref(), reply, ended)
                }
                Ok(None) => round.on_closed(),
                Err(_) => {
                    ended = deadline;
                    round.on_timeout(deadline)
                }
            };
        };
        lock(&self.pending).remove(&reqnum);
        (out, ended)
    }

    /// Sends the queries in `batch`; returns how many went out. Without
    /// waiting: a full socket buffer drops a query, as Squid's second
    /// failed try does.
    fn send_queries(&self, sender: &std::net::UdpSocket, batch: &mut SendBatch<()>) -> usize {
        let mut sent = 0;
        batch.send(sender, |(), to, outcome| match outcome {
            Ok(n) => {
                sent += 1;
                self.counters.queries_sent.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .query_bytes_sent
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(addr = %to, error = %e, "ICP query not sent"),
        });
        sent
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
            tracing::debug!(%addr, error = %e, "multicast TTL not set");
        }
        table.note_mcast_query_sent(id, now);
        match sender.send_to(&datagram, addr) {
            Ok(_) => {
                self.counters.queries_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                lock(&self.pending).remove(&reqnum);
                tracing::debug!(%addr, error = %e, "multicast count query not sent");
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
                    tracing::debug!(%from, error = %e, "malformed ICP reply dropped");
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
            tracing::debug!(%from, code = opcode.name(), "ICP reply from a non-peer ignored");
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
        if let Some(ms) = super::load::report::decode(msg.options.0, msg.option_data) {
            if let Some(c) = table.get(peer) {
                c.state().load.note_reported(ms, received);
            }
        }
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

/// IP_MULTICAST_IF by interface address (std has no setter for it).
/// Queries to a multicast group leave by the interface of
/// udp_outgoing_address (`local`), not the default route's.
fn set_multicast_interface(socket: &std::net::UdpSocket, local: Option<IpAddr>) {
    if let Some(IpAddr::V4(v4)) = local {
        if !v4.is_unspecified() {
            if let Err(e) = set_multicast_if_v4(socket, v4) {
                tracing::warn!(%v4, error = %e, "IP_MULTICAST_IF not set");
            }
        }
    }
}

fn set_multicast_if_v4(socket: &std::net::UdpSocket, interface: Ipv4Addr) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_multicast_if_v4(&interface)
}

#[cfg(test)]
mod tests;
