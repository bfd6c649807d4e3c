//! The ICP responder: answers peers' ICP queries on `icp_port` the way a
//! Squid 5.7 sibling does (squid-spec 1.1-1.5, 1.11-1.13), so a Squid can
//! use cuttle as an ICP `cache_peer`.
//!
//! One OS thread owns the UDP socket: receive, decide, reply from the same
//! socket (Squid accepts replies only from the port on its `cache_peer`
//! line), log. The decision reads the store's in-RAM index only
//! ([`Store::peek`]) and never waits on disk or the network.
//! With `mcast_groups` the socket also joins those groups (squid-spec
//! 1.9); a query that came to a group is answered unicast like any other.
//! On Linux a socket bound to a unicast address receives no group
//! traffic, so a node joining groups should leave `udp_incoming_address`
//! unset (a warning says so otherwise).
//!
//! What a query gets (first that applies):
//!
//! | case | answer |
//! |---|---|
//! | shorter than the header, length field ≠ datagram size, unknown opcode or version | nothing (counted) |
//! | not a QUERY (a reply, HIT_OBJ, SECHO, ...) | nothing: never answer a reply (counted) |
//! | QUERY whose URL is missing, unterminated or has a NUL inside | ERR with an empty URL (Squid ≥ 7.5) |
//! | URL with whitespace or other bytes outside printable ASCII | ERR with the URL %-escaped |
//! | URL that is not an absolute `scheme://host[:port]/path` | ERR with the URL |
//! | `icp_access` refuses the sender (no rules: deny) | DENIED |
//! | GET object cached and fresh 30 s from now (any age with `icp_hit_stale on`) | HIT |
//! | hit-only mode ([`HitOnly`]: the failure ratio tripped) or `offline_mode on` | MISS_NOFETCH |
//! | otherwise | MISS |
//!
//! Replies are version 2 and echo the reqnum and the query's URL byte for
//! byte. A version-2 query with ICP_FLAG_SRC_RTT gets its HIT, MISS or
//! MISS_NOFETCH with the flag and option data `(hops << 16) | rtt_ms` when
//! the [`NetDb`] knows the URL's host (cuttle fetched from it directly);
//! otherwise no options (Squid 5.7's bytes), except that a query with
//! cuttle's load flag gets its HIT or MISS with cuttle's own load (peers/
//! load.rs `report`: bits Squid ignores). HIT_OBJ is never sent. Squid's "cutoff" (silence towards a sender that gets more than
//! 95 % DENIED) is not implemented: such a sender keeps getting DENIED.
//!
//! Freshness from the index alone: `Times::expires` is the expiry computed
//! with the refresh_pattern in force when the object was stored. Squid
//! re-evaluates its refresh rules on the entry; the index cannot, so a
//! refresh_pattern changed since the object was stored is not seen until
//! it is stored again. A Vary marker carries its variant's times and is
//! answered from them (Squid answers from its own marker object, which is
//! fresh for 100000 s: a HIT either way while the variant is fresh).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use cuttle_protocol::icp::{self, Body, Message, Opcode, Options, Version};
use cuttle_protocol::key::{store_key, Method as KeyMethod};
use cuttle_protocol::Text;

use super::netdb::{NetDb, SrcRtt};
use crate::access::{self, Verdict};
use crate::access_log::{Entry, LineBatch, ResultTag};
use crate::caching::is_fresh;
use crate::config::{Config, Setting};
use crate::store::{Key, Store, Times};

use super::batch_io::SendBatch;
use super::resolve::PeerAddrs;
use super::responder::{AnswerLine, Protocol, Responder, Settings};

mod url;
pub use url::{escape_url, UrlParts};

/// Squid's `refreshCheckICP` margin: a HIT must stay fresh this much longer
/// (the querier fetches it next).
pub const HIT_FRESH_MARGIN_SECS: u64 = 30;

/// Opcodes are bytes; Squid counts replies in an array bounded by ICP_END (24).
const OPCODE_SLOTS: usize = 24;

/// Counters of the responder (Squid's `icp.*` in mgr:counters, responder
/// side). Shared: they outlive a rebind on reload.
#[derive(Debug)]
pub struct IcpServerStats {
    /// Datagrams received (`icp.pkts_recv`).
    pub pkts_recv: AtomicU64,
    /// Bytes received (`icp.kbytes_recv` × 1024).
    pub bytes_recv: AtomicU64,
    /// QUERY datagrams received, answered or not (`icp.queries_recv`).
    pub queries_recv: AtomicU64,
    /// Bytes of those queries (`icp.q_kbytes_recv` × 1024).
    pub query_bytes_recv: AtomicU64,
    /// Replies sent (`icp.replies_sent`, `icp.pkts_sent` for a responder).
    pub replies_sent: AtomicU64,
    /// Bytes of those replies (`icp.r_kbytes_sent` × 1024).
    pub reply_bytes_sent: AtomicU64,
    /// Replies sent, by opcode (index = opcode number).
    pub replies_by_opcode: [AtomicU64; OPCODE_SLOTS],
    /// Datagrams dropped unanswered because they are malformed: shorter
    /// than the header, wrong length field, unknown opcode or version.
    pub malformed: AtomicU64,
    /// Datagrams dropped because they are not queries (replies, HIT_OBJ,
    /// SECHO, DECHO...): a responder never answers a reply.
    pub not_queries: AtomicU64,
    /// Replies the kernel refused to send (Squid's `replies_dropped`).
    pub send_errors: AtomicU64,
    /// Receive errors other than timeouts.
    pub recv_errors: AtomicU64,
    /// Replies sent per client address, by opcode name (`mgr:client_list`).
    per_client:
        Mutex<std::collections::HashMap<IpAddr, std::collections::BTreeMap<&'static str, u64>>>,
}

impl Default for IcpServerStats {
    fn default() -> Self {
        IcpServerStats {
            pkts_recv: AtomicU64::new(0),
            bytes_recv: AtomicU64::new(0),
            queries_recv: AtomicU64::new(0),
            query_bytes_recv: AtomicU64::new(0),
            replies_sent: AtomicU64::new(0),
            reply_bytes_sent: AtomicU64::new(0),
            replies_by_opcode: std::array::from_fn(|_| AtomicU64::new(0)),
            malformed: AtomicU64::new(0),
            not_queries: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            recv_errors: AtomicU64::new(0),
            per_client: Mutex::default(),
        }
    }
}

/// Client addresses remembered for `mgr:client_list`; past this, new ones
/// are not counted.
const MAX_CLIENTS: usize = 65_536;

impl IcpServerStats {
    /// `count` replies with `opcode` went to `client`.
    fn note_client_replies(&self, client: IpAddr, opcode: Opcode, count: u64) {
        let mut clients = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() < MAX_CLIENTS || clients.contains_key(&client) {
            *clients
                .entry(client)
                .or_default()
                .entry(opcode.name())
                .or_default() += count;
        }
    }

    /// Per client address: the replies it got, by opcode name.
    pub fn client_replies(&self) -> Vec<(IpAddr, std::collections::BTreeMap<&'static str, u64>)> {
        let clients = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        clients.iter().map(|(ip, m)| (*ip, m.clone())).collect()
    }

    /// Replies sent with `opcode`.
    pub fn replies(&self, opcode: Opcode) -> u64 {
        self.replies_by_opcode
            .get(usize::from(opcode.value()))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// How long hit-only mode lasts once the failure ratio trips (Squid's
/// FAILURE_MODE_TIME, 5 minutes).
pub const HIT_ONLY_SECS: u64 = 300;

/// Squid's "hit-only mode": while set, misses are answered MISS_NOFETCH
/// (we would not fetch for the peer now: upstream known to be failing).
/// The fetch path feeds it every forwarded request's outcome
/// ([`HitOnly::note_forwarding`]); the responder only reads it.
#[derive(Debug, Default)]
pub struct HitOnly {
    /// Unix seconds until which misses are MISS_NOFETCH; 0 = off.
    until: AtomicU64,
    ratio: Mutex<FailureRatio>,
}

impl HitOnly {
    /// Answer misses with MISS_NOFETCH until `unix_secs` (0 turns it off).
    pub fn set_until(&self, unix_secs: u64) {
        self.until.store(unix_secs, Ordering::Relaxed);
    }

    pub fn is_on(&self, now: u64) -> bool {
        now < self.until.load(Ordering::Relaxed)
    }

    /// One forwarded request ended (`failed`: a DNS, connect or read
    /// error). When the failure ratio trips, hit-only mode starts for
    /// [`HIT_ONLY_SECS`] from `now`, with a warning as Squid logs it.
    /// Returns whether it tripped.
    pub fn note_forwarding(&self, failed: bool, now: u64) -> bool {
        let mut ratio = self.ratio.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = ratio.note(failed, self.is_on(now)) else {
            return false;
        };
        self.set_until(now.saturating_add(HIT_ONLY_SECS));
        // Squid's cache.log wording, values included, as operators grep it;
        // the fields carry them for structured logs.
        tracing::warn!(
            ratio = at,
            minutes = HIT_ONLY_SECS / 60,
            "Failure Ratio at {at:.3}; ICP going into hit-only mode for {} minutes: \
             misses are answered MISS_NOFETCH",
            HIT_ONLY_SECS / 60
        );
        true
    }

    /// The current failure ratio (failures per success, decayed).
    pub fn failure_ratio(&self) -> f64 {
        self.ratio.lock().unwrap_or_else(|p| p.into_inner()).value()
    }
}

/// Squid's request failure ratio (`checkFailureRatio`, squid-spec 1.5):
/// failures per success over a decaying window of about 100 requests.
/// Each outcome rebuilds the window's counts from the ratio (good =
/// 100 / (1 + ratio), bad = 100 - good), adds itself to one of them and
/// takes bad / good again, so old outcomes fade as new ones come. From a
/// clean start 70 failures in a row trip it. Pure: no clock, no I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FailureRatio {
    ratio: f64,
}

impl FailureRatio {
    /// Requests the window stands for (Squid's `magic_factor`).
    const WINDOW: f64 = 100.0;
    /// At or above this ratio (as many failures as successes) the ratio
    /// trips (Squid returns early only while below 1.0).
    pub const LIMIT: f64 = 1.0;
    /// Where the ratio restarts after tripping: just under the limit, so
    /// failures that go on trip it again soon after hit-only mode ends.
    const AFTER_TRIP: f64 = 0.8;

    pub fn value(&self) -> f64 {
        self.ratio
    }

    /// Notes one forwarded request's outcome. `hit_only` says hit-only mode
    /// is already on: the ratio moves but cannot trip. Returns the ratio it
    /// tripped at (the caller starts hit-only mode); the ratio then
    /// restarts at 0.8.
    pub fn note(&mut self, failed: bool, hit_only: bool) -> Option<f64> {
        let good = Self::WINDOW / (1.0 + self.ratio);
        let bad = Self::WINDOW - good;
        self.ratio = if failed {
            (bad + 1.0) / good
        } else {
            bad / (good + 1.0)
        };
        if hit_only || self.ratio < Self::LIMIT {
            return None;
        }
        let at = self.ratio;
        self.ratio = Self::AFTER_TRIP;
        Some(at)
    }
}

/// Why a datagram got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Shorter than the header, wrong length field, unknown opcode/version.
    Malformed,
    /// Not a QUERY: never answered.
    NotAQuery,
}

/// What to send back for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'d> {
    pub opcode: Opcode,
    pub reqnum: u32,
    /// The URL the reply carries: the query's as received, or for ERR the
    /// escaped or empty one Squid sends.
    pub url: Cow<'d, [u8]>,
    /// The query was a QUERY with a usable URL (what the log line's ACLs
    /// can look at); false for ERR.
    pub well_formed: bool,
    /// Sent as ICP_FLAG_SRC_RTT and its option data: the query asked and
    /// the NetDB knows the host.
    pub src_rtt: Option<SrcRtt>,
}

impl Reply<'_> {
    /// The reply datagram, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), cuttle_protocol::Error> {
        let body =
            Body::url_only(self.opcode, Text(&self.url)).unwrap_or(Body::Err { url: Text(b"") });
        let (options, option_data) = match self.src_rtt {
            Some(r) => (Options(Options::SRC_RTT), r.option_data()),
            None => (Options::default(), 0),
        };
        Message {
            version: Version::V2,
            reqnum: self.reqnum,
            options,
            option_data,
            sender: Ipv4Addr::UNSPECIFIED,
            body,
        }
        .encode(out)
    }

    /// The access.log result tag (squid-spec 1.11).
    pub fn log_tag(&self) -> ResultTag {
        match self.opcode {
            Opcode::Hit => ResultTag::UdpHit,
            Opcode::Miss => ResultTag::UdpMiss,
            Opcode::MissNoFetch => ResultTag::UdpMissNofetch,
            Opcode::Denied => ResultTag::UdpDenied,
            _ => ResultTag::UdpInvalid,
        }
    }
}

/// The decision for one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'d> {
    Reply(Reply<'d>),
    Drop(Dropped),
}

/// What the decision may look at besides the datagram.
pub struct Facts<'a> {
    pub config: &'a Config,
    /// Unix seconds.
    pub now: u64,
    pub hit_only: bool,
    /// Origin RTTs for SRC_RTT answers (`None`: nothing known).
    pub netdb: Option<&'a NetDb>,
}

/// Decides the answer to `datagram` from `from`. `peek` is the store's
/// index lookup (times of the entry under a key). Pure: no I/O.
pub fn decide<'d>(
    datagram: &'d [u8],
    from: IpAddr,
    facts: &Facts<'_>,
    peek: impl Fn(&Key) -> Option<Times>,
) -> Decision<'d> {
    let query = match icp::parse(datagram) {
        Ok(m) => m,
        Err(_) => return undecodable(datagram),
    };
    // Squid drops what it cannot name as malformed, not as a reply.
    if !query.opcode().is_known() || !query.version.is_known() {
        return Decision::Drop(Dropped::Malformed);
    }
    let Body::Query { url, .. } = query.body else {
        return Decision::Drop(Dropped::NotAQuery);
    };
    let reqnum = query.reqnum;
    let url = url.as_bytes();
    let err = |url: Cow<'d, [u8]>| {
        Decision::Reply(Reply {
            opcode: Opcode::Err,
            reqnum,
            url,
            well_formed: false,
            src_rtt: None,
        })
    };
    if url.is_empty() {
        return err(Cow::Borrowed(url));
    }
    if url.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return err(Cow::Owned(escape_url(url)));
    }
    // Printable ASCII: valid UTF-8.
    let Ok(text) = std::str::from_utf8(url) else {
        return err(Cow::Owned(escape_url(url)));
    };
    let Some(parts) = UrlParts::split(text) else {
        return err(Cow::Borrowed(url));
    };
    let reply = |opcode, src_rtt| {
        Decision::Reply(Reply {
            opcode,
            reqnum,
            url: Cow::Borrowed(url),
            well_formed: true,
            src_rtt,
        })
    };
    let allowed = access::check(
        &facts.config.icp_access,
        facts.config,
        &parts.request(from, text),
    )
    .or_if_no_rules(Verdict::Deny)
    .allowed();
    if !allowed {
        return reply(Opcode::Denied, None);
    }
    // Asked in a version-2 query (Squid's v3 answers never carry it) and
    // known: a lock-free table read, nothing waited for.
    let src_rtt = (query.version == Version::V2 && query.options.src_rtt())
        .then(|| facts.netdb.and_then(|db| db.lookup(parts.host)))
        .flatten();
    if let Some(times) = peek(&store_key(KeyMethod::Get, url)) {
        if answers_hit(facts.config, &times, facts.now) {
            return reply(Opcode::Hit, src_rtt);
        }
    }
    // Not fetching for peers now: upstream failing (hit-only mode) or
    // offline_mode (cuttle's choice; Squid 5.7 answers MISS there).
    if facts.hit_only || facts.config.offline() {
        return reply(Opcode::MissNoFetch, src_rtt);
    }
    reply(Opcode::Miss, src_rtt)
}

/// Whether an object with `times` held at `now` is a HIT for an allowed
/// query: fresh [`HIT_FRESH_MARGIN_SECS`] from now, or any age with
/// `icp_hit_stale on` (the simulator answers its queries with this too).
pub fn answers_hit(config: &Config, times: &Times, now: u64) -> bool {
    config.icp_hit_stale.value || is_fresh(times, now.saturating_add(HIT_FRESH_MARGIN_SECS))
}

/// A datagram `icp::parse` refused: a QUERY whose header is sound but whose
/// URL is not (missing, unterminated, NUL inside, too long) gets ERR with an
/// empty URL, as Squid ≥ 7.5 answers; anything else is dropped. Oversized
/// datagrams (cut by the receive buffer) are dropped as Squid drops them:
/// their header does not parse.
fn undecodable(datagram: &[u8]) -> Decision<'_> {
    let header = match icp::parse_header(datagram) {
        Ok(h) if h.opcode.is_known() && h.version.is_known() => h,
        _ => return Decision::Drop(Dropped::Malformed),
    };
    if header.opcode != Opcode::Query {
        return Decision::Drop(Dropped::NotAQuery);
    }
    Decision::Reply(Reply {
        opcode: Opcode::Err,
        reqnum: header.reqnum,
        url: Cow::Borrowed(b""),
        well_formed: false,
        src_rtt: None,
    })
}

/// A running ICP responder ([`Icp`] on a [`Responder`]); stopped when
/// dropped.
pub type IcpServer = Responder<Icp>;

/// `mcast_groups`: the ICP socket joins each IPv4 group on the interface
/// of `udp_incoming_address` (any interface when unset), so queries sent
/// to a group reach it (squid-spec 1.9); replies still go unicast to the
/// sender. A group that cannot be joined is logged and skipped, as Squid
/// only reports it in cache.log.
fn join_mcast_groups(socket: &UdpSocket, config: &Config) {
    let interface = match config.udp_incoming_address.value {
        Some(IpAddr::V4(v4)) => v4,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    // A bound interface receiving no group traffic, and IPv6 groups, are
    // reported by the config loader (cuttle check says it too).
    for group in &config.mcast_groups {
        match group.value {
            IpAddr::V4(g) if g.is_multicast() => {
                if let Err(e) = socket.join_multicast_v4(&g, &interface) {
                    tracing::warn!(group = %g, error = %e, "mcast_groups: cannot join");
                }
            }
            _ => {}
        }
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The ICP side of a responder: what the answers read (the store's index,
/// hit-only mode, the NetDB behind SRC_RTT), its counters, and the reply
/// buffer. Settings from the config: icp_port, udp_incoming_address,
/// mcast_groups, icp_access, icp_hit_stale, offline_mode, log_icp_queries.
pub struct Icp {
    store: Arc<Store>,
    stats: Arc<IcpServerStats>,
    hit_only: Arc<HitOnly>,
    netdb: Arc<NetDb>,
    out: Vec<u8>,
    /// The URLs of the replies queued to be logged, end to end; emptied
    /// when the batch is sent ([`LoggedReply`] says where each is).
    logged_urls: Vec<u8>,
    /// Each access.log line is built in this one ([`AnswerLine::log`]).
    line: Entry,
    /// Replies sent to one client with one opcode not yet added to
    /// `stats`' per-client table: a run of them (a peer's burst) costs
    /// one lock, when the client or opcode changes or the batch is sent.
    client_run: Option<(IpAddr, Opcode, u64)>,
}

impl Icp {
    /// `netdb` holds the origin RTTs SRC_RTT answers give; `stats` and
    /// `hit_only` outlive a rebind on reload.
    pub fn new(
        store: Arc<Store>,
        stats: Arc<IcpServerStats>,
        hit_only: Arc<HitOnly>,
        netdb: Arc<NetDb>,
    ) -> Icp {
        Icp {
            store,
            stats,
            hit_only,
            netdb,
            out: Vec::with_capacity(icp::MAX_DATAGRAM),
            logged_urls: Vec::new(),
            line: Entry::default(),
            client_run: None,
        }
    }
}

/// A queued ICP reply: what is counted and logged once it went out.
pub struct IcpSent {
    opcode: Opcode,
    client: IpAddr,
    /// `None` when no line is written (log_icp_queries off, no log).
    logged: Option<LoggedReply>,
}

/// What the access.log line of a reply needs: its URL is
/// `Icp::logged_urls[url_start..url_end]` (copied there, not allocated).
struct LoggedReply {
    tag: ResultTag,
    url_start: usize,
    url_end: usize,
    well_formed: bool,
}

impl Protocol for Icp {
    const NAME: &'static str = "ICP";
    const THREAD: &'static str = "cuttle-icp";
    const MAX_DATAGRAM: usize = icp::MAX_DATAGRAM;
    type Derived = ();
    type Sent = IcpSent;

    fn port(config: &Config) -> &Setting<u16> {
        &config.icp_port
    }

    /// Every opcode but QUERY is a reply (Squid's icpHandleUdp splits the
    /// same way); unknown opcodes stay with the responder, which drops them.
    fn is_reply(datagram: &[u8]) -> bool {
        icp::opcode_of(datagram).is_some_and(|op| op.is_known() && op != Opcode::Query)
    }

    fn derive(_config: &Config, _addrs: &PeerAddrs) {}

    fn bound(socket: &UdpSocket, config: &Config) {
        join_mcast_groups(socket, config);
    }

    /// Decides one datagram and queues its reply.
    fn answer(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        settings: &Settings<()>,
        replies: &mut SendBatch<IcpSent>,
        _lines: &mut LineBatch,
    ) {
        let stats = &*self.stats;
        let len = datagram.len() as u64;
        stats.pkts_recv.fetch_add(1, Ordering::Relaxed);
        stats.bytes_recv.fetch_add(len, Ordering::Relaxed);
        if icp::opcode_of(datagram) == Some(Opcode::Query) {
            stats.queries_recv.fetch_add(1, Ordering::Relaxed);
            stats.query_bytes_recv.fetch_add(len, Ordering::Relaxed);
        }
        let config = &*settings.config;
        let now = unix_now();
        let facts = Facts {
            config,
            now,
            hit_only: self.hit_only.is_on(now),
            netdb: Some(&self.netdb),
        };
        let client = canonical_ip(from.ip());
        let store = &self.store;
        let reply = match decide(datagram, client, &facts, |key| {
            store.peek(key).map(|s| s.times)
        }) {
            Decision::Reply(r) => r,
            Decision::Drop(why) => {
                let counter = match why {
                    Dropped::Malformed => &stats.malformed,
                    Dropped::NotAQuery => &stats.not_queries,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %from, ?why, "ICP datagram dropped");
                return;
            }
        };
        let out = &mut self.out;
        out.clear();
        if let Err(e) = reply.encode(out) {
            // Unreachable: the URL came out of a datagram of legal size.
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %from, error = %e, "ICP reply not encodable");
            return;
        }
        super::load::report::stamp(datagram, out);
        // Logged once sent; the URL is copied only for a line to write.
        let logged = (config.log_icp_queries.value && !settings.logger.is_disabled()).then(|| {
            let url_start = self.logged_urls.len();
            self.logged_urls.extend_from_slice(&reply.url);
            LoggedReply {
                tag: reply.log_tag(),
                url_start,
                url_end: self.logged_urls.len(),
                well_formed: reply.well_formed,
            }
        });
        let tag = IcpSent {
            opcode: reply.opcode,
            client,
            logged,
        };
        replies.push(out, from, tag);
    }

    /// Counts (and logs) a reply sent, or counts it refused.
    fn sent(
        &mut self,
        tag: IcpSent,
        to: SocketAddr,
        outcome: std::io::Result<usize>,
        settings: &Settings<()>,
        lines: &mut LineBatch,
    ) {
        let stats = &*self.stats;
        let size = match outcome {
            Ok(size) => size as u64,
            Err(e) => {
                // Squid queues once and then drops; a datagram socket that
                // refuses now is full or the peer is gone: drop and count.
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %to, error = %e, "ICP reply not sent");
                return;
            }
        };
        stats.replies_sent.fetch_add(1, Ordering::Relaxed);
        stats.reply_bytes_sent.fetch_add(size, Ordering::Relaxed);
        if let Some(c) = stats.replies_by_opcode.get(usize::from(tag.opcode.value())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match &mut self.client_run {
            Some((client, opcode, count)) if *client == tag.client && *opcode == tag.opcode => {
                *count += 1;
            }
            run => {
                if let Some((client, opcode, count)) = run.replace((tag.client, tag.opcode, 1)) {
                    stats.note_client_replies(client, opcode, count);
                }
            }
        }
        if let Some(logged) = &tag.logged {
            let url = &self.logged_urls[logged.url_start..logged.url_end];
            log(
                settings,
                logged,
                url,
                tag.client,
                size,
                lines,
                &mut self.line,
            );
        }
    }

    fn recv_error(&mut self) {
        self.stats.recv_errors.fetch_add(1, Ordering::Relaxed);
    }

    fn batch_sent(&mut self) {
        self.logged_urls.clear();
        if let Some((client, opcode, count)) = self.client_run.take() {
            self.stats.note_client_replies(client, opcode, count);
        }
    }
}

/// An IPv4-mapped IPv6 sender is the IPv4 address (ACLs and logs).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One access.log line per reply sent (squid-spec 1.11): status 000, size =
/// reply datagram length, method ICP_QUERY, elapsed 0, HIER_NONE/-.
fn log(
    settings: &Settings<()>,
    reply: &LoggedReply,
    url: &[u8],
    client: IpAddr,
    size: u64,
    batch: &mut LineBatch,
    scratch: &mut Entry,
) {
    // Answered URLs are printable ASCII (decide checked); ERR ones escaped.
    let url = match std::str::from_utf8(url) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(url),
    };
    let line = AnswerLine {
        tag: reply.tag,
        method: "ICP_QUERY",
        url: &url,
        size,
        client,
        // An ERR has no request: only the sender's address can match.
        asked: reply.well_formed.then_some("GET"),
    };
    line.log(&settings.logger, &settings.config, batch, scratch);
}

#[cfg(test)]
mod tests;
