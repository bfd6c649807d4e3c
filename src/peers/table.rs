//! The neighbour table: one entry per `cache_peer` line with its live
//! state as Squid keeps it (RTT average, TCP credit, ICP liveness,
//! round-robin counters, counters for reports), rebuilt on reload while
//! keeping the state of peers that stay (squid-spec 1.6, 1.7, 1.8, 3.4).
//! A multicast group keeps the running average of how many responders
//! answer it (squid-spec 1.9), from counts made by a probe of its own 10
//! seconds after the group appears and every 15 minutes after, averaged
//! over 10 counts.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::core::{health, Effect, Health, PeerInfo, PeerView};
use super::monitor::{monitored, MonitorSlot};
use super::peer_digest::{wants_digest, DigestSlot};
use super::resolve::PeerAddrs;
use crate::config::{CachePeer, Config, PeerType};
use crate::upstream::TlsClient;
use cuttle_protocol::key::{store_key, Method};

/// Index of a peer in its [`PeerTable`] (config order).
pub type PeerId = usize;

/// RTT samples outside 1..=10000 ms are discarded (Squid's neighborUpdateRtt).
const RTT_SAMPLE_MAX_MS: u64 = 10_000;
/// Averaging window: Squid's RTT_AV_FACTOR, and RTT_BACKGROUND_AV_FACTOR for
/// weighted-round-robin peers.
const RTT_AV_FACTOR: u64 = 50;
const RTT_WRR_AV_FACTOR: u64 = 25;
/// At most one TCP probe round per peer per second (Squid's peerProbeConnect).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The DENIED-ratio rule: over 100 acked pings and over 95 % denied.
const DENIED_MIN_ACKED: u64 = 100;

/// Live state of one peer. All times are this process's monotonic clock.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    /// Running RTT average in milliseconds (0 until learnt).
    pub rtt_ms: u64,
    pub pings_sent: u64,
    pub pings_acked: u64,
    /// Replies by opcode number (index = opcode, 0..24).
    pub replies_by_opcode: [u64; 24],
    /// HTCP TST replies: [not found, found] (Squid's two-bucket histogram
    /// of server_list for `htcp` peers).
    pub htcp_replies: [u64; 2],
    /// HTCP CLR datagrams sent to this peer.
    pub clrs_sent: u64,
    /// Replies that matched no query in flight (late, or not asked).
    pub replies_ignored: u64,
    /// When the oldest unanswered query was sent (Squid's probe_start);
    /// `None` once any reply arrived.
    pub icp_probe_start: Option<Instant>,
    pub last_query: Option<Instant>,
    pub last_reply: Option<Instant>,
    /// ICP version of the last reply (2 until told otherwise).
    pub icp_version: u8,
    /// TCP credit: 0 = unusable; a success resets it to connect-fail-limit.
    pub tcp_up: u32,
    pub last_tcp_probe: Option<Instant>,
    /// A TCP probe is running.
    pub probing: bool,
    /// Round-robin (or weighted-round-robin) counter.
    pub rr_count: u64,
    /// Requests forwarded to this peer.
    pub fetches: u64,
    /// Its service times and self-reported load (`load-aware` CARP).
    pub load: super::load::LoadMeter,
    /// Connections (requests) open to it now, for `max-conn=`.
    pub open_conns: u32,
    /// Disabled by the DENIED-ratio rule until the next reconfigure.
    pub disabled: bool,
    /// "Detected DEAD" was logged and "Detected REVIVED" not yet (Squid's
    /// logged_state): each is said once per going down and coming back.
    pub logged_dead: bool,
    /// Multicast peers: running average of the group's responders
    /// (Squid's mcast.avg_n_members) and how many counts made it.
    pub mcast_avg_members: f64,
    pub mcast_times_counted: u64,
    /// When the group's responders were last counted.
    pub mcast_last_count: Option<Instant>,
    /// When they are counted next (multicast peers only).
    pub mcast_next_count: Option<Instant>,
    /// Every RTT sample of a matched reply, sub-millisecond ones included
    /// (for the cache manager's metrics; the average above skips those).
    pub rtt_histogram: RttHistogram,
    /// Its hits delivered without being stored (`peer_store_threshold`).
    pub hits_not_stored: u64,
    /// Chosen as the nearest (by RTT) of several holders of a URL, and of
    /// those, chosen although another holder's HIT came first.
    pub nearest_chosen: u64,
    pub nearest_over_first: u64,
}

/// Upper bounds of the RTT histogram's buckets, in microseconds.
pub const RTT_BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000,
];

/// RTT samples by bucket (cumulative counts are the reader's job).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RttHistogram {
    /// Samples at or below each bound of [`RTT_BUCKETS_US`]' bucket (not cumulative).
    pub buckets: [u64; RTT_BUCKETS_US.len()],
    pub count: u64,
    pub sum_us: u64,
}

impl RttHistogram {
    pub fn add(&mut self, sample: Duration) {
        let us = sample.as_micros() as u64;
        if let Some(i) = RTT_BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_us += us;
    }
}

/// One `cache_peer` and its state.
#[derive(Debug)]
pub struct Peer {
    pub config: CachePeer,
    /// `config.host`, shared with the selections that name it.
    pub host: Arc<str>,
    /// The address ICP queries go to and replies must come from; `None`
    /// when the host is not an address and did not resolve.
    pub icp_addr: Option<SocketAddr>,
    state: Mutex<PeerState>,
    /// Its Cache Digest and when it is fetched next.
    pub digest: Arc<DigestSlot>,
    /// `htcp=monitor`: its HTCP MON subscription and the objects it holds.
    pub mon: Arc<MonitorSlot>,
    /// `tls` peers: the TLS client its connections use (built with the
    /// table, once per config load), or why it could not be built.
    pub tls: Option<Result<TlsClient, String>>,
}

impl Peer {
    pub fn state(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether this peer is queried at all (ICP or HTCP port, not no-query,
    /// not a multicast responder, not `htcp=only-clr`).
    pub fn queryable(&self) -> bool {
        health::queryable(&self.info())
    }

    /// What the decision core reads about this peer now.
    pub fn info(&self) -> PeerInfo<'_> {
        let s = self.state();
        PeerInfo {
            config: &self.config,
            host: &self.host,
            icp_addr: self.icp_addr,
            health: Health {
                tcp_up: s.tcp_up,
                disabled: s.disabled,
                icp_probe_start: s.icp_probe_start,
                last_query: s.last_query,
                open_conns: s.open_conns,
                rtt_ms: s.rtt_ms,
                rr_count: s.rr_count,
                icp_version: s.icp_version,
                mcast_avg_members: s.mcast_avg_members,
            },
        }
    }

    /// Queried with HTCP TST rather than ICP (`htcp` option).
    pub fn speaks_htcp(&self) -> bool {
        self.config.htcp.is_some()
    }
}

/// What the table needs from the config.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub dead_peer_timeout: Duration,
    pub icp_query_timeout: Duration,
    pub maximum_icp_query_timeout: Duration,
    pub minimum_icp_query_timeout: Duration,
    /// How long a count of a multicast group's responders waits.
    pub mcast_icp_query_timeout: Duration,
}

impl Timing {
    pub fn of(config: &Config) -> Timing {
        Timing {
            dead_peer_timeout: config.dead_peer_timeout.value,
            icp_query_timeout: config.icp_query_timeout.value,
            maximum_icp_query_timeout: config.maximum_icp_query_timeout.value,
            minimum_icp_query_timeout: config.minimum_icp_query_timeout.value,
            mcast_icp_query_timeout: config.mcast_icp_query_timeout.value,
        }
    }
}

/// The neighbour table.
#[derive(Debug)]
pub struct PeerTable {
    pub peers: Vec<Peer>,
    pub timing: Timing,
    /// `query_icmp`: queries to peers whose last reply was version 2 ask
    /// for their origin RTT (SRC_RTT), and parents' answers pick the
    /// closest parent (squid-spec 1.3, 1.6).
    pub query_icmp: bool,
    /// When round-robin counters were last reset.
    rr_reset: Mutex<Instant>,
    /// Where the next ping round starts (Squid rotates the first peer).
    next_to_ping: AtomicU64,
}

/// Squid's intAverage: `(avg * (n - 1) + sample) / n`.
pub fn int_average(avg: u64, sample: u64, n: u64, max: u64) -> u64 {
    let n = n.clamp(1, max);
    (avg * (n - 1) + sample) / n
}

/// Weight of the multicast group-size average (Squid averages over 10).
const MCAST_AV_FACTOR: u64 = 10;
/// A multicast group's responders are recounted this often (Squid's
/// MCAST_COUNT_RATE, 15 minutes).
pub const MCAST_COUNT_PERIOD: Duration = Duration::from_secs(900);
/// A new multicast group is first counted this long after it appears
/// (Squid counts 10 s after resolving the peer, at start and reconfigure).
pub const MCAST_FIRST_COUNT: Duration = Duration::from_secs(10);

/// Squid's doubleAverage: `(avg * (n - 1) + sample) / n`, n clamped to 1..=max.
pub fn double_average(avg: f64, sample: f64, n: u64, max: u64) -> f64 {
    let n = n.clamp(1, max) as f64;
    (avg * (n - 1.0) + sample) / n
}

/// How many replies a query to a multicast group should wait for: the
/// whole part of the running average of its counts (Squid's
/// mcast.n_replies_expected), 0 until the first count: until then a query
/// to the group waits for nobody (as in Squid).
pub fn mcast_replies_expected(state: &PeerState) -> u64 {
    state.mcast_avg_members as u64
}

/// The ICP wait as Squid computes it (squid-spec 1.7): `icp_query_timeout`
/// when set, else twice the mean RTT of the expected parents, or of the
/// multicast groups when replies from a group are expected, or of the
/// expected siblings, or 2 s when nobody is;
/// clamped to the maximum, then raised to the minimum.
pub fn query_timeout(timing: &Timing, expected: &[(PeerType, u64)]) -> Duration {
    let mut rtts = ExpectedRtts::default();
    expected.iter().for_each(|&(t, rtt_ms)| rtts.add(t, rtt_ms));
    query_timeout_of(timing, &rtts)
}

/// The RTTs a query round waits on, summed by peer type: what
/// [`query_timeout`] reads, gathered without a list (a round is made per
/// request).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExpectedRtts {
    /// (sum of RTTs in ms, how many) for parents, siblings, groups.
    by_type: [(u64, u64); 3],
}

impl ExpectedRtts {
    fn slot(t: PeerType) -> usize {
        match t {
            PeerType::Parent => 0,
            PeerType::Sibling => 1,
            PeerType::Multicast => 2,
        }
    }

    pub fn add(&mut self, t: PeerType, rtt_ms: u64) {
        let (sum, n) = &mut self.by_type[Self::slot(t)];
        *sum += rtt_ms;
        *n += 1;
    }

    fn mean(&self, t: PeerType) -> Option<u64> {
        let (sum, n) = self.by_type[Self::slot(t)];
        (n > 0).then(|| sum / n)
    }
}

/// [`query_timeout`] of RTTs already summed.
pub fn query_timeout_of(timing: &Timing, expected: &ExpectedRtts) -> Duration {
    if !timing.icp_query_timeout.is_zero() {
        return timing.icp_query_timeout;
    }
    let dynamic = match expected
        .mean(PeerType::Parent)
        .or_else(|| expected.mean(PeerType::Multicast))
        .or_else(|| expected.mean(PeerType::Sibling))
    {
        Some(ms) => Duration::from_millis(2 * ms),
        None => Duration::from_millis(2000),
    };
    dynamic
        .min(timing.maximum_icp_query_timeout)
        .max(timing.minimum_icp_query_timeout)
}

impl PeerTable {
    /// The table for `config` at `now`, with the peers' ICP addresses from
    /// `addrs` (resolved beforehand: a name missing there has none); peers
    /// of `old` with the same name keep their state (RTT, liveness,
    /// counters), except the DENIED-ratio disabling and round-robin
    /// counters, which a reconfigure clears as in Squid.
    pub fn new(
        config: &Config,
        old: Option<&PeerTable>,
        now: Instant,
        addrs: &PeerAddrs,
    ) -> PeerTable {
        let peers = config
            .cache_peers
            .iter()
            .map(|located| {
                let cp = located.value.clone();
                let icp_addr = addrs.icp_addr(&cp.host, cp.icp_port);
                let same = old.and_then(|o| {
                    o.peers
                        .iter()
                        .find(|p| p.config.name.eq_ignore_ascii_case(&cp.name))
                        .filter(|p| p.config.host == cp.host && p.config.http_port == cp.http_port)
                });
                let kept = same.map(|p| p.state().clone());
                let digest = same
                    .filter(|p| p.config.digest_url == cp.digest_url)
                    .map_or_else(Arc::default, |p| Arc::clone(&p.digest));
                let mon = same
                    .filter(|p| p.config.icp_port == cp.icp_port && monitored(&p.config))
                    .map_or_else(Arc::default, |p| Arc::clone(&p.mon));
                let state = match kept {
                    Some(mut s) => {
                        s.disabled = false;
                        s.rr_count = 0;
                        s.tcp_up = s.tcp_up.min(cp.connect_fail_limit);
                        s
                    }
                    None => PeerState {
                        icp_version: 2,
                        mcast_next_count: (cp.peer_type == PeerType::Multicast)
                            .then(|| now + MCAST_FIRST_COUNT),
                        ..PeerState::default()
                    },
                };
                let tls = cp.tls.then(|| {
                    TlsClient::build(&cp.tls_options).inspect_err(|e| {
                        tracing::error!(peer = %cp.name, "cache_peer {}: TLS: {e}; connections to it will fail", cp.name)
                    })
                });
                Peer {
                    host: Arc::from(cp.host.as_str()),
                    config: cp,
                    icp_addr,
                    state: Mutex::new(state),
                    digest,
                    mon,
                    tls,
                }
            })
            .collect();
        PeerTable {
            peers,
            timing: Timing::of(config),
            query_icmp: config.query_icmp.value,
            rr_reset: Mutex::new(now),
            next_to_ping: AtomicU64::new(0),
        }
    }

    pub fn get(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// The peer whose ICP address is `from` (IP and configured ICP port, as
    /// Squid's whichPeer).
    pub fn by_icp_addr(&self, from: SocketAddr) -> Option<PeerId> {
        self.peers.iter().position(|p| {
            p.icp_addr
                .is_some_and(|a| a.ip() == canonical_ip(from.ip()) && a.port() == from.port())
        })
    }

    /// Where the next ping round starts, advancing it.
    pub fn next_ping_start(&self) -> usize {
        let n = self.peers.len().max(1) as u64;
        (self.next_to_ping.fetch_add(1, Ordering::Relaxed) % n) as usize
    }

    /// ICP-dead: a query unanswered for longer than dead_peer_timeout.
    /// The first time a peer is found so, "Detected DEAD" is logged.
    pub fn icp_dead(&self, id: PeerId, now: Instant) -> bool {
        let Some(p) = self.get(id) else { return true };
        let dead = health::icp_dead(&p.info(), &self.timing, now);
        if dead {
            log_dead(p, &mut p.state());
        }
        dead
    }

    fn icp_dead_in(&self, p: &Peer, now: Instant) -> bool {
        health::icp_dead(&p.info(), &self.timing, now)
    }

    /// Squid's neighborUp: TCP up and (no-query or not ICP-dead).
    pub fn is_up(&self, id: PeerId, now: Instant) -> bool {
        let Some(p) = self.get(id) else { return false };
        let up = health::is_up(&p.info(), &self.timing, now);
        self.icp_dead(id, now);
        up
    }

    /// Squid's peerHTTPOkay without the access check: up and below max-conn.
    pub fn http_okay(&self, id: PeerId, now: Instant) -> bool {
        self.get(id)
            .is_some_and(|p| health::http_okay_with(&p.info(), || self.is_up(id, now)))
    }

    /// Whether a ping round at `now` includes this (otherwise eligible)
    /// peer: up peers always, down ones when not queried for more than
    /// dead_peer_timeout (squid-spec 1.8, 3.3).
    pub fn ping_due(&self, id: PeerId, now: Instant) -> bool {
        self.get(id).is_some_and(|p| {
            health::ping_due_with(&p.info(), &self.timing, now, || self.is_up(id, now))
        })
    }

    /// Applies one of the decision core's effects.
    pub fn apply(&self, effect: &Effect) {
        match *effect {
            Effect::QuerySent {
                peer,
                at,
                multicast: false,
            } => self.note_query_sent(peer, at),
            Effect::QuerySent {
                peer,
                at,
                multicast: true,
            } => self.note_mcast_query_sent(peer, at),
            Effect::RoundRobinStep { peer, by } => {
                if let Some(p) = self.get(peer) {
                    p.state().rr_count += by;
                }
            }
            Effect::ResetRoundRobin { at } => self.reset_rr(at),
            Effect::ClearRoundRobin => {
                for p in &self.peers {
                    p.state().rr_count = 0;
                }
            }
            Effect::FoundDead { peer } => {
                if let Some(p) = self.get(peer) {
                    log_dead(p, &mut p.state());
                }
            }
        }
    }

    /// Applies every effect, in order.
    pub fn apply_all(&self, effects: &[Effect]) {
        for e in effects {
            self.apply(e);
        }
    }

    /// A query went to the peer at `now`.
    pub fn note_query_sent(&self, id: PeerId, now: Instant) {
        if let Some(p) = self.get(id) {
            let mut s = p.state();
            s.pings_sent += 1;
            s.last_query = Some(now);
            if s.icp_probe_start.is_none() {
                s.icp_probe_start = Some(now);
            }
        }
    }

    /// Any accepted ICP reply from the peer (Squid's neighborAlive): clears
    /// the dead-peer clock, counts an acked ping. Returns whether the peer
    /// was dead before (it revives now).
    pub fn note_reply(&self, id: PeerId, opcode: u8, version: u8, now: Instant) -> bool {
        self.note_alive(id, now, |p, s| {
            s.icp_version = version;
            if let Some(slot) = s.replies_by_opcode.get_mut(usize::from(opcode)) {
                *slot += 1;
            }
            let denied = s.replies_by_opcode.get(22).copied().unwrap_or(0);
            if s.pings_acked > DENIED_MIN_ACKED && denied * 100 > s.pings_acked * 95 && !s.disabled
            {
                s.disabled = true;
                tracing::warn!(
                    peer = %p.config.name,
                    "disabling cache_peer until reconfigure: over 95% of its replies are UDP_DENIED"
                );
            }
        })
    }

    /// Any accepted HTCP TST reply (Squid's neighborAliveHtcp): the same
    /// liveness rules as ICP; `found` feeds the two-bucket histogram.
    pub fn note_htcp_reply(&self, id: PeerId, found: bool, now: Instant) -> bool {
        self.note_alive(id, now, |_, s| s.htcp_replies[usize::from(found)] += 1)
    }

    fn note_alive(
        &self,
        id: PeerId,
        now: Instant,
        count: impl FnOnce(&Peer, &mut PeerState),
    ) -> bool {
        let Some(p) = self.get(id) else { return false };
        let was_dead = self.icp_dead_in(p, now);
        let mut s = p.state();
        s.pings_acked += 1;
        s.icp_probe_start = None;
        s.last_reply = Some(now);
        count(p, &mut s);
        if s.tcp_up > 0 {
            log_revived(p, &mut s);
        }
        was_dead
    }

    /// An RTT sample for a reply to a query still in flight.
    pub fn note_rtt(&self, id: PeerId, sample: Duration) {
        let Some(p) = self.get(id) else { return };
        p.state().rtt_histogram.add(sample);
        let ms = sample.as_millis() as u64;
        if !(1..=RTT_SAMPLE_MAX_MS).contains(&ms) {
            return;
        }
        let max = if p.config.weighted_round_robin {
            RTT_WRR_AV_FACTOR
        } else {
            RTT_AV_FACTOR
        };
        let mut s = p.state();
        s.rtt_ms = int_average(s.rtt_ms, ms, s.pings_acked, max);
    }

    /// A count of multicast group `id` heard `responders` replies within
    /// mcast_icp_query_timeout: folds it into the group-size average.
    pub fn note_mcast_count(&self, id: PeerId, responders: u64, now: Instant) {
        let Some(p) = self.get(id) else { return };
        let mut s = p.state();
        s.mcast_times_counted += 1;
        s.mcast_avg_members = double_average(
            s.mcast_avg_members,
            responders as f64,
            s.mcast_times_counted,
            MCAST_AV_FACTOR,
        );
        s.mcast_last_count = Some(now);
    }

    /// The multicast groups due a count at `now`; each is next due
    /// [`MCAST_COUNT_PERIOD`] later (Squid schedules the next count when
    /// one starts).
    pub fn mcast_counts_due(&self, now: Instant) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (id, p) in self.peers.iter().enumerate() {
            let mut s = p.state();
            if s.mcast_next_count.is_some_and(|t| t <= now) {
                s.mcast_next_count = Some(now + MCAST_COUNT_PERIOD);
                due.push(id);
            }
        }
        due
    }

    /// A query went to multicast group `id`: counted, but no dead-peer
    /// clock (the group itself never answers; its responders do).
    pub fn note_mcast_query_sent(&self, id: PeerId, now: Instant) {
        if let Some(p) = self.get(id) {
            let mut s = p.state();
            s.pings_sent += 1;
            s.last_query = Some(now);
        }
    }

    pub fn note_ignored(&self, id: PeerId) {
        if let Some(p) = self.get(id) {
            p.state().replies_ignored += 1;
        }
    }

    /// A TCP connection to the peer succeeded (now).
    pub fn note_tcp_success(&self, id: PeerId) {
        self.note_tcp_success_at(id, Instant::now());
    }

    /// A TCP connection to the peer succeeded at `now`: full credit; a
    /// revival resets every round-robin counter (Squid's peerConnectSucceded).
    pub fn note_tcp_success_at(&self, id: PeerId, now: Instant) {
        let Some(p) = self.get(id) else { return };
        let dead = self.icp_dead_in(p, now);
        let revived = {
            let mut s = p.state();
            let revived = s.tcp_up == 0 && s.last_tcp_probe.is_some();
            s.tcp_up = p.config.connect_fail_limit.max(1);
            if !dead {
                log_revived(p, &mut s);
            }
            revived
        };
        if revived {
            self.reset_rr(now);
        }
    }

    /// A TCP connection to the peer failed: one credit less; at 0 it is dead.
    pub fn note_tcp_failure(&self, id: PeerId) {
        let Some(p) = self.get(id) else { return };
        let mut s = p.state();
        if s.tcp_up > 0 {
            s.tcp_up -= 1;
            if s.tcp_up == 0 {
                log_dead(p, &mut s);
            }
        }
    }

    /// Round-robin counters: reset every 5 minutes (and on revival), the
    /// period restarting at `now`.
    pub fn reset_rr(&self, now: Instant) {
        for p in &self.peers {
            p.state().rr_count = 0;
        }
        *self.rr_reset.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Peers whose TCP state is down and whose last probe is over a second
    /// old: the caller probes them ([`PeerTable::probe`]).
    pub fn probes_due(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                let s = p.state();
                s.tcp_up == 0
                    && !s.probing
                    && s.last_tcp_probe
                        .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Squid's liveness probe: open a TCP connection to the peer's HTTP
    /// port, send nothing, close it; success makes the peer usable.
    pub async fn probe(self: Arc<Self>, id: PeerId, local: Option<IpAddr>, timeout: Duration) {
        let Some(p) = self.get(id) else { return };
        {
            let mut s = p.state();
            if s.probing {
                return;
            }
            s.probing = true;
            s.last_tcp_probe = Some(Instant::now());
        }
        let target = (
            p.config.host.trim_matches(['[', ']']).to_string(),
            p.config.http_port,
        );
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(target).await {
            Ok(it) => it.collect(),
            Err(_) => Vec::new(),
        };
        let mut ok = false;
        for addr in addrs {
            let attempt =
                tokio::time::timeout(timeout, crate::upstream::connect_from(addr, local)).await;
            if matches!(attempt, Ok(Ok(_))) {
                ok = true;
            }
        }
        p.state().probing = false;
        if ok {
            // Noted before it is said: a reader of the line (the tests) may
            // count on the peer being up already.
            self.note_tcp_success(id);
            tracing::debug!(peer = %p.config.name, "TCP probe succeeded");
        } else {
            tracing::debug!(peer = %p.config.name, "TCP probe failed");
        }
    }
}

impl PeerView for PeerTable {
    fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn peer(&self, id: PeerId) -> Option<PeerInfo<'_>> {
        self.get(id).map(Peer::info)
    }

    fn timing(&self) -> Timing {
        self.timing
    }

    fn query_icmp(&self) -> bool {
        self.query_icmp
    }

    fn mon_holds(&self, id: PeerId, url: &str) -> Option<bool> {
        let p = self.peers.get(id)?;
        if !monitored(&p.config) {
            return None;
        }
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        p.mon.holds(
            &store_key(Method::Get, url.as_bytes()),
            Instant::now(),
            unix_now,
        )
    }

    fn digest_holds(&self, id: PeerId, url: &str) -> Option<bool> {
        let p = self.peers.get(id)?;
        if !wants_digest(&p.config) {
            return None;
        }
        p.digest.holds(&store_key(Method::Get, url.as_bytes()))
    }

    fn load_ms(&self, id: PeerId, now: Instant) -> Option<f64> {
        let s = self.get(id)?.state();
        s.load.load_ms(s.rtt_ms, now)
    }

    fn rr_reset_at(&self) -> Instant {
        *self.rr_reset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// "Detected DEAD Sibling: NAME", once until the peer revives.
fn log_dead(p: &Peer, s: &mut PeerState) {
    if !s.logged_dead {
        s.logged_dead = true;
        // Squid's cache.log wording, which operators grep for; the name is
        // a field too.
        tracing::warn!(
            peer = %p.config.name,
            "Detected DEAD {}: {}",
            kind(&p.config),
            p.config.name
        );
    }
}

/// "Detected REVIVED Sibling: NAME", only after a logged DEAD (not at
/// start-up, nor for a peer just added).
fn log_revived(p: &Peer, s: &mut PeerState) {
    if s.logged_dead {
        s.logged_dead = false;
        // Squid's cache.log wording, which operators grep for; the name is
        // a field too.
        tracing::warn!(
            peer = %p.config.name,
            "Detected REVIVED {}: {}",
            kind(&p.config),
            p.config.name
        );
    }
}

fn kind(p: &CachePeer) -> &'static str {
    match p.peer_type {
        PeerType::Parent => "Parent",
        _ => "Sibling",
    }
}

/// An IPv4-mapped IPv6 source address compared as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
