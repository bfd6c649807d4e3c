//! The HTCP client: asks `htcp` peers about a URL with TST in the same
//! round as the ICP queries (squid-spec 2.5), and sends CLR to purge a URL
//! across the mesh (2.6).
//!
//! The proxy's client sends from the HTCP responder's socket (htcp_port,
//! see `querier`) and hears replies through it; with no htcp_port there
//! is no client ("HTCP is disabled!", as Squid logs). Each TST carries its own transaction id;
//! a reply is taken only from exactly the queried address and port, only
//! while its round waits, and never with MO set (Squid's rules). Its answer
//! joins the round as an ICP HIT or MISS would ([`Reply`]), so the wait,
//! timeout, RTT and dead-peer rules are the ICP client's. A reply that comes
//! after its round still shows the peer alive (no RTT sample, as Squid).
//!
//! The TST's SPECIFIER carries the client's request headers (without
//! hop-by-hop fields), so a peer can pick the Vary variant; Squid sends
//! none (a bug it has had for long, squid-spec 2.3). CLRs name GET and HEAD
//! (never PURGE, which a Squid peer would look up under its own key and
//! keep the object), want no reply, and go to every `htcp` peer but
//! `htcp=no-clr` ones, and for a PURGE not to `htcp=no-purge-clr` ones.
//!
//! A peer in `htcp=oldsquid` mode gets MINOR 0 and the old layout. A Squid
//! answers those with transaction id 0 (squid-spec 2.1, fixtures): such a
//! reply is matched to the oldest query in flight to its sender.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::htcp::{self, Message, Op, Specifier};
use cuttle_protocol::icp::Opcode;
use http::HeaderMap;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::batch_io::SendBatch;
use super::htcp_server::{clr_datagrams, MAX_DATAGRAM};
use super::icp_client::Reply;
use super::querier::{self, lock, CurrentTable};
use super::table::{PeerId, PeerTable};
use crate::caching::{is_hop_by_hop, write_fields};

/// Queries remembered for late replies (Squid's ring size).
const RECENT_QUERIES: usize = 8192;

/// Request headers larger than this are not sent (the datagram must stay
/// within Squid's 8 KB buffers with the URL).
const MAX_REQ_HDRS: usize = 4096;

/// Counters of the client.
#[derive(Debug, Default)]
pub struct HtcpClientCounters {
    pub tst_sent: AtomicU64,
    pub clr_sent: AtomicU64,
    /// Replies taken by a waiting round.
    pub replies_matched: AtomicU64,
    /// Not a valid HTCP datagram.
    pub malformed: AtomicU64,
    /// From an address/port that was not asked (stray or spoofed).
    pub from_non_peer: AtomicU64,
    /// From a peer, but for no round still waiting (late or replayed).
    pub unmatched: AtomicU64,
    /// Not a TST response, or MO set ("error condition"): dropped.
    pub ignored: AtomicU64,
}

/// Why a CLR goes out (squid-spec 2.6): REASON and which peers get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClrTrigger {
    /// A PURGE: REASON 0; not to `htcp=no-purge-clr` peers.
    Purge,
    /// A successful unsafe request (POST, PUT, DELETE...): REASON 1.
    Invalidation,
}

struct Pending {
    table: Arc<PeerTable>,
    peer: PeerId,
    addr: SocketAddr,
    sent_at: Instant,
    tx: mpsc::UnboundedSender<Reply>,
}

type PendingMap = Arc<Mutex<HashMap<u32, Pending>>>;

/// The client. Dropping it stops its receive task.
pub struct HtcpClient {
    /// A socket of its own, read by [`HtcpClient::exchange`] (the CLI's).
    socket: Option<Arc<UdpSocket>>,
    /// Where queries and CLRs leave from, sent from synchronous code (a
    /// new tokio socket refuses `try_send_to` until it has polled
    /// writable).
    sender: querier::SendSocket,
    /// Queries sent lately, oldest first (Squid's ring of 8192): a reply
    /// after its round ended shows its peer alive only if it is one of them.
    recent: Arc<Mutex<VecDeque<(u32, SocketAddr)>>>,
    next_trans_id: AtomicU32,
    pending: PendingMap,
    current: CurrentTable,
    pub counters: Arc<HtcpClientCounters>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for HtcpClient {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl HtcpClient {
    /// Binds the socket on `local` (udp_outgoing_address; unspecified when
    /// `None`) with an ephemeral port and starts the receive task. Must run
    /// inside a tokio runtime.
    pub fn bind(
        local: Option<IpAddr>,
        table: Arc<PeerTable>,
        counters: Arc<HtcpClientCounters>,
    ) -> std::io::Result<HtcpClient> {
        let std_socket = querier::bind(local)?;
        let sender = Arc::new(std_socket.try_clone()?);
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        Ok(HtcpClient::start(
            querier::SendSocket::Own(sender),
            querier::Incoming::Socket(socket),
            table,
            counters,
        ))
    }

    /// A client sending from the HTCP responder's socket `on` (htcp_port,
    /// as Squid sends), hearing replies through its inbox. Must run inside
    /// a tokio runtime. `counters` outlive the client (see
    /// [`crate::peers::icp_client::IcpClient::on`]).
    pub fn on(
        on: &querier::QuerySocket,
        table: Arc<PeerTable>,
        counters: Arc<HtcpClientCounters>,
    ) -> HtcpClient {
        HtcpClient::start(
            querier::SendSocket::Lent(on.socket.clone()),
            querier::Incoming::Inbox(on.inbox.listen()),
            table,
            counters,
        )
    }

    fn start(
        sender: querier::SendSocket,
        incoming: querier::Incoming,
        table: Arc<PeerTable>,
        counters: Arc<HtcpClientCounters>,
    ) -> HtcpClient {
        let pending: PendingMap = Arc::default();
        let recent = Arc::default();
        let current = CurrentTable::new(table);
        let receiver = tokio::spawn(receive_loop(
            incoming,
            Arc::clone(&pending),
            Arc::clone(&recent),
            current.clone(),
            Arc::clone(&counters),
        ));
        HtcpClient {
            socket: None,
            sender,
            recent,
            next_trans_id: AtomicU32::new(0),
            pending,
            current,
            counters,
            receiver,
        }
    }

    /// Where queries leave from.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sender
            .get()
            .ok_or_else(|| std::io::Error::other("the HTCP socket is closed"))?
            .local_addr()
    }

    /// Late replies are credited to peers of this table (after a reload).
    pub fn set_table(&self, table: Arc<PeerTable>) {
        self.current.set(table);
    }

    /// The next transaction id: counts up from 1, never 0 (Squid's oldsquid
    /// replies carry 0, which must never match a query).
    pub fn next_trans_id(&self) -> u32 {
        loop {
            let id = self
                .next_trans_id
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if id != 0 {
                return id;
            }
        }
    }

    /// Starts a TST round for `url` with the client's `headers`; its
    /// queries are sent by [`TstRound::send`] and forgotten when it drops.
    pub fn round<'c>(
        &'c self,
        table: &Arc<PeerTable>,
        url: &str,
        headers: &HeaderMap,
    ) -> TstRound<'c> {
        TstRound {
            client: self,
            table: Arc::clone(table),
            url: url.to_string(),
            req_hdrs: request_headers(headers),
            ids: Mutex::new(Vec::new()),
        }
    }

    /// Sends CLRs for `url` to the peers of `table` whose options allow it;
    /// returns how many datagrams went out.
    pub fn send_clr(&self, table: &PeerTable, url: &str, trigger: ClrTrigger) -> usize {
        let reason = match trigger {
            ClrTrigger::Purge => htcp::clr::REASON_UNSPECIFIED,
            ClrTrigger::Invalidation => htcp::clr::REASON_GONE,
        };
        let Some(sender) = self.sender.get() else {
            return 0;
        };
        let mut batch = SendBatch::new();
        for p in &table.peers {
            let Some(h) = p.config.htcp else { continue };
            if h.no_clr || (trigger == ClrTrigger::Purge && h.no_purge_clr) {
                continue;
            }
            let Some(addr) = p.icp_addr else { continue };
            for datagram in clr_datagrams(url, reason, h.oldsquid, false, || self.next_trans_id()) {
                batch.push(&datagram, addr, p);
            }
        }
        // All in one sendmmsg, from any task: a full socket buffer drops a
        // CLR, as it would drop any datagram.
        let mut sent = 0;
        batch.send(&*sender, |p, addr, outcome| match outcome {
            Ok(_) => {
                sent += 1;
                p.state().clrs_sent += 1;
                self.counters.clr_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(%addr, error = %e, "HTCP CLR not sent"),
        });
        sent
    }

    /// Sends one datagram to `to` and waits up to `timeout` for a response
    /// with the same transaction id from exactly that address (for `cuttle
    /// htcp tst|clr`). Returns the response's bytes and the round-trip time.
    pub async fn exchange(
        &self,
        to: SocketAddr,
        datagram: &[u8],
        trans_id: u32,
        timeout: Duration,
    ) -> std::io::Result<Option<(Vec<u8>, Duration)>> {
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| std::io::Error::other("not a one-off client"))?;
        let start = Instant::now();
        socket.send_to(datagram, to).await?;
        let deadline = tokio::time::Instant::from_std(start) + timeout;
        let reply = querier::first_reply(socket, MAX_DATAGRAM + 1, deadline, |data, from| {
            let Some(msg) = htcp::parse(data).ok().filter(is_strict) else {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            // Squid answers a MINOR-0 request with transaction id 0.
            let same =
                msg.trans_id == trans_id || (msg.minor == htcp::MINOR_OLD && msg.trans_id == 0);
            if from != to || !same || !msg.is_response() {
                self.counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(data.to_vec())
        })
        .await?;
        Ok(reply.map(|wire| (wire, start.elapsed())))
    }

    /// A bare client for one-off exchanges (no receive task reading the
    /// socket, so [`HtcpClient::exchange`] can read it).
    pub fn bind_plain(local: Option<IpAddr>) -> std::io::Result<HtcpClient> {
        let std_socket = querier::bind(local)?;
        let sender = Arc::new(std_socket.try_clone()?);
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        Ok(HtcpClient {
            socket: Some(socket),
            sender: querier::SendSocket::Own(sender),
            recent: Arc::default(),
            next_trans_id: AtomicU32::new(0),
            pending: Arc::default(),
            current: CurrentTable::empty(),
            counters: Arc::default(),
            receiver: tokio::spawn(async {}),
        })
    }
}

/// The REQ-HDRS of a TST: the request's end-to-end fields, or none when
/// they would not fit a datagram.
fn request_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut e2e = HeaderMap::new();
    for (name, value) in headers {
        if !is_hop_by_hop(name) && name != http::header::HOST {
            e2e.append(name.clone(), value.clone());
        }
    }
    let block = write_fields(&e2e);
    if block.len() > MAX_REQ_HDRS {
        return Vec::new();
    }
    block
}

/// One round's TST queries; they stop matching replies when it drops.
pub struct TstRound<'c> {
    client: &'c HtcpClient,
    table: Arc<PeerTable>,
    url: String,
    req_hdrs: Vec<u8>,
    ids: Mutex<Vec<u32>>,
}

impl TstRound<'_> {
    /// Sends a TST to each HTCP peer among `targets` (the others are ICP's),
    /// noting the query in the table; matched replies go to `tx` as ICP
    /// HIT / MISS. Returns how many went out.
    pub fn send(
        &self,
        targets: &[PeerId],
        sent_at: Instant,
        tx: &mpsc::UnboundedSender<Reply>,
    ) -> usize {
        let mut batch = SendBatch::new();
        for &id in targets {
            let Some(p) = self.table.get(id) else {
                continue;
            };
            let (Some(h), Some(addr)) = (p.config.htcp, p.icp_addr) else {
                continue;
            };
            let trans_id = self.client.next_trans_id();
            let mut spec = Specifier::new("GET", &self.url);
            spec.req_hdrs = self.req_hdrs.as_slice().into();
            let mut msg = Message::tst_request(trans_id, spec);
            if h.oldsquid {
                msg.minor = htcp::MINOR_OLD;
            }
            let mut datagram = Vec::new();
            if msg.encode(&mut datagram).is_err() || datagram.len() > MAX_DATAGRAM {
                // A URL HTCP cannot carry: this peer is not asked.
                continue;
            }
            self.table.note_query_sent(id, sent_at);
            lock(&self.client.pending).insert(
                trans_id,
                Pending {
                    table: Arc::clone(&self.table),
                    peer: id,
                    addr,
                    sent_at,
                    tx: tx.clone(),
                },
            );
            lock(&self.ids).push(trans_id);
            {
                let mut recent = lock(&self.client.recent);
                if recent.len() >= RECENT_QUERIES {
                    recent.pop_front();
                }
                recent.push_back((trans_id, addr));
            }
            batch.push(&datagram, addr, ());
        }
        // The round's TSTs in one sendmmsg.
        let Some(sender) = self.client.sender.get() else {
            return 0;
        };
        let mut sent = 0;
        batch.send(&*sender, |(), addr, outcome| match outcome {
            Ok(_) => {
                sent += 1;
                let counters = &self.client.counters;
                counters.tst_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(%addr, error = %e, "HTCP TST not sent"),
        });
        sent
    }
}

impl Drop for TstRound<'_> {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *lock(&self.ids));
        let mut pending = lock(&self.client.pending);
        for id in ids {
            pending.remove(&id);
        }
    }
}

/// Reads replies for as long as the client lives.
async fn receive_loop(
    incoming: querier::Incoming,
    pending: PendingMap,
    recent: Arc<Mutex<VecDeque<(u32, SocketAddr)>>>,
    current: CurrentTable,
    counters: Arc<HtcpClientCounters>,
) {
    querier::receive(
        "HTCP",
        incoming,
        MAX_DATAGRAM + 1,
        |data, from, received| {
            let msg = match htcp::parse(data) {
                Ok(m) if is_strict(&m) => m,
                Ok(_) => {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, "HTCP reply with an unknown opcode or bad AUTH dropped");
                    return;
                }
                Err(e) => {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, error = %e, "malformed HTCP reply dropped");
                    return;
                }
            };
            handle_reply(&msg, from, received, &pending, &recent, &current, &counters);
        },
    )
    .await;
}

/// What the codec keeps but a querier counts as malformed: an unknown
/// opcode, an AUTH section that does not parse.
fn is_strict(msg: &Message<'_>) -> bool {
    msg.opcode().is_known() && !matches!(msg.auth, htcp::Auth::Unparsed(_))
}

fn handle_reply(
    msg: &Message<'_>,
    from: SocketAddr,
    received: Instant,
    pending: &PendingMap,
    recent: &Mutex<VecDeque<(u32, SocketAddr)>>,
    current: &CurrentTable,
    counters: &HtcpClientCounters,
) {
    // Only TST responses matter; MO set is an error condition (Squid
    // discards those). Any response code but 0 is a miss.
    if !matches!(msg.op, Op::TstResponse(_)) || msg.is_overall_response() {
        counters.ignored.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let found = msg.response == htcp::tst::FOUND;
    let mut map = lock(pending);
    let trans_id = if msg.trans_id == 0 && msg.minor == htcp::MINOR_OLD {
        // A Squid's MINOR-0 reply: the oldest query in flight to its sender.
        map.iter()
            .filter(|(_, p)| p.addr == from)
            .min_by_key(|(id, p)| (p.sent_at, **id))
            .map(|(id, _)| *id)
    } else {
        Some(msg.trans_id)
    };
    if let Some(p) = trans_id.and_then(|id| map.get(&id)) {
        if p.addr != from {
            counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, "HTCP reply from a non-peer ignored");
            return;
        }
        let p = trans_id.and_then(|id| map.remove(&id));
        drop(map);
        let Some(p) = p else { return };
        p.table.note_htcp_reply(p.peer, found, received);
        let rtt = received.saturating_duration_since(p.sent_at);
        p.table.note_rtt(p.peer, rtt);
        counters.replies_matched.fetch_add(1, Ordering::Relaxed);
        let opcode = if found { Opcode::Hit } else { Opcode::Miss };
        let _ = p.tx.send(Reply {
            peer: p.peer,
            opcode,
            rtt,
            // Squid never reads Cache-to-Origin back (squid-spec 2.5): HTCP
            // never makes a closest parent.
            src_rtt: None,
        });
        return;
    }
    drop(map);
    // No round waiting: a late reply to a query of ours still shows the
    // peer alive; anything else is dropped (Squid's trans-id check).
    let asked = lock(recent)
        .iter()
        .any(|&(id, to)| to == from && (id == msg.trans_id || msg.trans_id == 0));
    let table = current.get();
    match (table.by_icp_addr(from), asked) {
        (Some(peer), true) => {
            table.note_htcp_reply(peer, found, received);
            table.note_ignored(peer);
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        (Some(_), false) => {
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        (None, _) => {
            counters.from_non_peer.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PeerType;
    use crate::peers::select::tests::{config, neighbours_up, request};
    use crate::peers::select::Neighbours;
    use cuttle_protocol::htcp::{Detail, TstReply};
    use std::sync::atomic::Ordering::Relaxed;

    fn tst_reply(q: &Message<'_>, response: u8, mo: bool) -> Vec<u8> {
        let mut r = q.response(
            response,
            Op::TstResponse(TstReply::Detail(Detail::default())),
        );
        r.f1 = mo;
        let mut out = Vec::new();
        r.encode(&mut out).expect("encode");
        out
    }

    /// An ICP sibling answering MISS and an HTCP sibling answering HIT (after
    /// a stranger's HIT, an MO reply and a wrong transaction id, all
    /// ignored): one round, SIBLING_HIT from the HTCP peer, request headers
    /// carried in the TST.
    #[tokio::test]
    async fn tst_in_the_icp_round_first_hit_wins_strays_ignored() {
        use tokio::net::UdpSocket;
        let icp = UdpSocket::bind("127.0.10.1:0").await.expect("bind");
        let htcp_peer = UdpSocket::bind("127.0.10.2:0").await.expect("bind");
        let text = format!(
            "cache_peer 127.0.10.1 sibling 3128 {} name=i\n\
             cache_peer 127.0.10.2 sibling 3128 {} name=h htcp\n\
             icp_query_timeout 3000\n",
            icp.local_addr().expect("addr").port(),
            htcp_peer.local_addr().expect("addr").port()
        );
        let c = config(&text);
        let n = neighbours_up(&c);
        let icp_task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let (len, from) = icp.recv_from(&mut buf).await.expect("query");
            let q = cuttle_protocol::icp::parse(&buf[..len]).expect("an ICP query");
            let mut out = Vec::new();
            q.reply(cuttle_protocol::icp::Opcode::Miss)
                .expect("reply")
                .encode(&mut out)
                .expect("encode");
            icp.send_to(&out, from).await.expect("send");
        });
        let htcp_task = tokio::spawn(async move {
            let mut buf = [0u8; 9000];
            let (len, from) = htcp_peer.recv_from(&mut buf).await.expect("TST");
            let q = htcp::parse(&buf[..len]).expect("an HTCP TST");
            let Op::TstRequest(spec) = q.op else {
                panic!("{q:?}")
            };
            assert!(q.response_desired() && q.minor == 1);
            assert_eq!(spec.uri.as_bytes(), b"http://example.test/x");
            let hdrs = spec.req_hdrs.to_string();
            assert!(hdrs.contains("accept-language: de\r\n"), "{hdrs:?}");
            assert!(!hdrs.contains("connection"), "hop-by-hop kept: {hdrs:?}");
            let stranger = UdpSocket::bind("127.0.10.3:0").await.expect("bind");
            stranger
                .send_to(&tst_reply(&q, 0, false), from)
                .await
                .expect("send");
            htcp_peer
                .send_to(&tst_reply(&q, 0, true), from)
                .await
                .expect("send");
            let mut wrong = q;
            wrong.trans_id = q.trans_id.wrapping_add(99);
            htcp_peer
                .send_to(&tst_reply(&wrong, 0, false), from)
                .await
                .expect("send");
            tokio::time::sleep(Duration::from_millis(50)).await;
            htcp_peer
                .send_to(&tst_reply(&q, 0, false), from)
                .await
                .expect("send");
        });
        let url = "http://example.test/x";
        let mut headers = HeaderMap::new();
        headers.insert("accept-language", "de".parse().unwrap());
        headers.insert("connection", "keep-alive".parse().unwrap());
        n.open_clients();
        let s = n
            .select(&c, &request("GET", "example.test", url), &headers)
            .await;
        icp_task.await.expect("icp peer");
        htcp_task.await.expect("htcp peer");
        let first = &s.sources[0];
        assert_eq!(
            (first.peer, first.code.to_string()),
            (Some(1), "SIBLING_HIT".to_string()),
            "{s:?}"
        );
        assert!(!s.timed_out);
        let client = n.htcp_client().expect("client");
        assert_eq!(client.counters.tst_sent.load(Relaxed), 1);
        assert_eq!(client.counters.ignored.load(Relaxed), 1, "the MO reply");
        assert!(
            client.counters.from_non_peer.load(Relaxed) + client.counters.unmatched.load(Relaxed)
                >= 2
        );
        let state = n.table.get(1).expect("peer").state().clone();
        assert_eq!((state.pings_sent, state.pings_acked), (1, 1));
        assert_eq!(state.htcp_replies, [0, 1]);
        assert_eq!(n.table.get(0).expect("peer").state().pings_sent, 1);
        let _ = PeerType::Sibling;
    }

    #[tokio::test]
    async fn clr_goes_to_htcp_peers_by_their_options() {
        use tokio::net::UdpSocket;
        let socks = [
            UdpSocket::bind("127.0.10.11:0").await.expect("bind"),
            UdpSocket::bind("127.0.10.12:0").await.expect("bind"),
            UdpSocket::bind("127.0.10.13:0").await.expect("bind"),
            UdpSocket::bind("127.0.10.14:0").await.expect("bind"),
        ];
        let port = |i: usize| socks[i].local_addr().expect("addr").port();
        let text = format!(
            "cache_peer 127.0.10.11 sibling 3128 {} htcp\n\
             cache_peer 127.0.10.12 sibling 3128 {} htcp=no-clr\n\
             cache_peer 127.0.10.13 parent 3128 {} htcp=no-purge-clr,oldsquid\n\
             cache_peer 127.0.10.14 sibling 3128 {}\n",
            port(0),
            port(1),
            port(2),
            port(3)
        );
        let n = Neighbours::new(&config(&text));
        let url = "http://example.test/gone";
        assert_eq!(
            n.send_clr(url, ClrTrigger::Purge),
            2,
            "GET and HEAD to peer 0"
        );
        assert_eq!(
            n.send_clr(url, ClrTrigger::Invalidation),
            4,
            "peers 0 and 2"
        );
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        for _ in 0..4 {
            let (len, _) = socks[0].recv_from(&mut buf).await.expect("CLR");
            let m = htcp::parse(&buf[..len]).expect("CLR");
            let Op::ClrRequest {
                reason, specifier, ..
            } = m.op
            else {
                panic!("{m:?}")
            };
            assert!(!m.response_desired() && m.minor == 1);
            assert_eq!(specifier.uri.as_bytes(), url.as_bytes());
            got.push((specifier.method.to_string(), reason));
        }
        assert_eq!(
            got,
            [
                ("GET".to_string(), 0),
                ("HEAD".to_string(), 0),
                ("GET".to_string(), 1),
                ("HEAD".to_string(), 1)
            ]
        );
        let (len, _) = socks[2].recv_from(&mut buf).await.expect("CLR");
        assert_eq!(buf[3], 0, "oldsquid: MINOR 0");
        assert!(htcp::parse(&buf[..len]).is_ok());
        assert_eq!(n.table.get(0).expect("peer").state().clrs_sent, 4);
        assert_eq!(n.table.get(1).expect("peer").state().clrs_sent, 0);
    }
}
