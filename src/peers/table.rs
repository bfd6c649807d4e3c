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

use crate::config::{CachePeer, Config, PeerType};

/// Index of a peer in its [`PeerTable`] (config order).
pub type PeerId = usize;

/// RTT samples outside 1..=10000 ms are discarded (Squid's neighborUpdateRtt).
const RTT_SAMPLE_MAX_MS: u64 = 10_000;
/// Averaging window: Squid's RTT_AV_FACTOR, and RTT_BACKGROUND_AV_FACTOR for
/// weighted-round-robin peers.
const RTT_AV_FACTOR: u64 = 50;
const RTT_WRR_AV_FACTOR: u64 = 25;
/// Round-robin counters are reset this often (Squid's peerClearRR event).
const RR_RESET_PERIOD: Duration = Duration::from_secs(300);
/// Weighted-round-robin counters are reset past this value.
const WRR_COUNT_LIMIT: u64 = 1_000_000;
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
    /// The address ICP queries go to and replies must come from; `None`
    /// when the host is not an address and did not resolve.
    pub icp_addr: Option<SocketAddr>,
    state: Mutex<PeerState>,
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
        self.config.icp_port != 0
            && !self.config.no_query
            && !self.config.multicast_responder
            && !self.config.htcp.is_some_and(|h| h.only_clr)
            && self.icp_addr.is_some()
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
    if !timing.icp_query_timeout.is_zero() {
        return timing.icp_query_timeout;
    }
    let mean = |of: PeerType| {
        let rtts: Vec<u64> = expected
            .iter()
            .filter(|(t, _)| *t == of)
            .map(|(_, r)| *r)
            .collect();
        (!rtts.is_empty()).then(|| rtts.iter().sum::<u64>() / rtts.len() as u64)
    };
    let dynamic = match mean(PeerType::Parent)
        .or_else(|| mean(PeerType::Multicast))
        .or_else(|| mean(PeerType::Sibling))
    {
        Some(ms) => Duration::from_millis(2 * ms),
        None => Duration::from_millis(2000),
    };
    dynamic
        .min(timing.maximum_icp_query_timeout)
        .max(timing.minimum_icp_query_timeout)
}

impl PeerTable {
    /// The table for `config`; peers of `old` with the same name keep their
    /// state (RTT, liveness, counters), except the DENIED-ratio disabling
    /// and round-robin counters, which a reconfigure clears as in Squid.
    pub fn new(config: &Config, old: Option<&PeerTable>) -> PeerTable {
        let peers = config
            .cache_peers
            .iter()
            .map(|located| {
                let cp = located.value.clone();
                let icp_addr = resolve(&cp.host, cp.icp_port);
                let kept = old.and_then(|o| {
                    o.peers
                        .iter()
                        .find(|p| p.config.name.eq_ignore_ascii_case(&cp.name))
                        .filter(|p| p.config.host == cp.host && p.config.http_port == cp.http_port)
                        .map(|p| p.state().clone())
                });
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
                            .then(|| Instant::now() + MCAST_FIRST_COUNT),
                        ..PeerState::default()
                    },
                };
                Peer {
                    config: cp,
                    icp_addr,
                    state: Mutex::new(state),
                }
            })
            .collect();
        PeerTable {
            peers,
            timing: Timing::of(config),
            query_icmp: config.query_icmp.value,
            rr_reset: Mutex::new(Instant::now()),
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
        let mut s = p.state();
        let dead = self.icp_dead_in(p, &s, now);
        if dead {
            log_dead(p, &mut s);
        }
        dead
    }

    fn icp_dead_in(&self, p: &Peer, s: &PeerState, now: Instant) -> bool {
        !p.config.no_query
            && s.icp_probe_start
                .is_some_and(|t| now.saturating_duration_since(t) > self.timing.dead_peer_timeout)
    }

    /// Squid's neighborUp: TCP up and (no-query or not ICP-dead).
    pub fn is_up(&self, id: PeerId, now: Instant) -> bool {
        let Some(p) = self.get(id) else { return false };
        let tcp = {
            let s = p.state();
            s.tcp_up > 0 && !s.disabled
        };
        tcp && !self.icp_dead(id, now)
    }

    /// Squid's peerHTTPOkay without the access check: up and below max-conn.
    pub fn http_okay(&self, id: PeerId, now: Instant) -> bool {
        let Some(p) = self.get(id) else { return false };
        if let Some(max) = p.config.max_conn {
            if p.state().open_conns >= max {
                return false;
            }
        }
        self.is_up(id, now)
    }

    /// Whether a ping round at `now` includes this (otherwise eligible)
    /// peer: up peers always, down ones when not queried for more than
    /// dead_peer_timeout (squid-spec 1.8, 3.3).
    pub fn ping_due(&self, id: PeerId, now: Instant) -> bool {
        let Some(p) = self.get(id) else { return false };
        if p.state().disabled {
            return false;
        }
        // A multicast group is asked every round: it is never fetched from
        // (no TCP state) and never answers itself (no ICP-dead clock); its
        // responders' replies are what count.
        if p.config.peer_type == PeerType::Multicast {
            return true;
        }
        let last = p.state().last_query;
        let quiet =
            last.is_none_or(|t| now.saturating_duration_since(t) > self.timing.dead_peer_timeout);
        quiet || self.is_up(id, now)
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
        let mut s = p.state();
        let was_dead = self.icp_dead_in(p, &s, now);
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

    /// A TCP connection to the peer succeeded: full credit; a revival
    /// resets every round-robin counter (Squid's peerConnectSucceded).
    pub fn note_tcp_success(&self, id: PeerId) {
        let Some(p) = self.get(id) else { return };
        let revived = {
            let mut s = p.state();
            let revived = s.tcp_up == 0 && s.last_tcp_probe.is_some();
            s.tcp_up = p.config.connect_fail_limit.max(1);
            if !self.icp_dead_in(p, &s, Instant::now()) {
                log_revived(p, &mut s);
            }
            revived
        };
        if revived {
            self.reset_rr();
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

    /// Round-robin counters: reset every 5 minutes (and on revival).
    pub fn reset_rr(&self) {
        for p in &self.peers {
            p.state().rr_count = 0;
        }
        *self.rr_reset.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn maybe_reset_rr(&self, now: Instant) {
        let due = {
            let last = self.rr_reset.lock().unwrap_or_else(|p| p.into_inner());
            now.saturating_duration_since(*last) >= RR_RESET_PERIOD
        };
        if due {
            self.reset_rr();
        }
    }

    /// Round-robin among `candidates`: the smallest rr_count / weight, ties
    /// to the later peer; its counter goes up by one.
    pub fn pick_round_robin(&self, candidates: &[PeerId], now: Instant) -> Option<PeerId> {
        self.maybe_reset_rr(now);
        let mut best: Option<(PeerId, u64, u64)> = None;
        for &id in candidates {
            let Some(p) = self.get(id) else { continue };
            let count = p.state().rr_count;
            let weight = u64::from(p.config.weight.max(1));
            // count/weight <= best_count/best_weight, compared without division.
            let better = match best {
                None => true,
                Some((_, bc, bw)) => count * bw <= bc * weight,
            };
            if better {
                best = Some((id, count, weight));
            }
        }
        let (id, _, _) = best?;
        if let Some(p) = self.get(id) {
            p.state().rr_count += 1;
        }
        Some(id)
    }

    /// Weighted round-robin: the smallest rr_count, ties to the later peer;
    /// it grows by max(1, (rtt - basetime) / weight).
    pub fn pick_weighted_round_robin(&self, candidates: &[PeerId], now: Instant) -> Option<PeerId> {
        self.maybe_reset_rr(now);
        let mut best: Option<(PeerId, u64)> = None;
        for &id in candidates {
            let Some(p) = self.get(id) else { continue };
            let count = p.state().rr_count;
            if best.is_none_or(|(_, bc)| count <= bc) {
                best = Some((id, count));
            }
        }
        let (id, _) = best?;
        let p = self.get(id)?;
        let step = {
            let s = p.state();
            let base = p.config.basetime.as_millis() as u64;
            (s.rtt_ms.saturating_sub(base) / u64::from(p.config.weight.max(1))).max(1)
        };
        let overflow = {
            let mut s = p.state();
            s.rr_count += step;
            s.rr_count > WRR_COUNT_LIMIT
        };
        if overflow {
            for q in &self.peers {
                q.state().rr_count = 0;
            }
        }
        Some(id)
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
            tracing::debug!(peer = %p.config.name, "TCP probe succeeded");
            self.note_tcp_success(id);
        } else {
            tracing::debug!(peer = %p.config.name, "TCP probe failed");
        }
    }
}

/// "Detected DEAD Sibling: NAME", once until the peer revives.
fn log_dead(p: &Peer, s: &mut PeerState) {
    if !s.logged_dead {
        s.logged_dead = true;
        tracing::warn!("Detected DEAD {}: {}", kind(&p.config), p.config.name);
    }
}

/// "Detected REVIVED Sibling: NAME", only after a logged DEAD (not at
/// start-up, nor for a peer just added).
fn log_revived(p: &Peer, s: &mut PeerState) {
    if s.logged_dead {
        s.logged_dead = false;
        tracing::warn!("Detected REVIVED {}: {}", kind(&p.config), p.config.name);
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

/// The peer's first address and ICP port; `None` without an ICP port or an
/// address. Host names are resolved once, here (std's blocking resolver:
/// tables are built at start and reload, not per request).
pub fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if port == 0 {
        return None;
    }
    let bare = host.trim_matches(['[', ']']);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    std::net::ToSocketAddrs::to_socket_addrs(&(bare, port))
        .ok()
        .and_then(|mut it| it.next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str_sandboxed;

    fn table(text: &str) -> PeerTable {
        let loaded = load_str_sandboxed(text, "test");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        PeerTable::new(&loaded.config, None)
    }

    fn timing(fixed: u64) -> Timing {
        Timing {
            dead_peer_timeout: Duration::from_secs(10),
            icp_query_timeout: Duration::from_millis(fixed),
            maximum_icp_query_timeout: Duration::from_millis(2000),
            minimum_icp_query_timeout: Duration::from_millis(5),
            mcast_icp_query_timeout: Duration::from_millis(2000),
        }
    }

    #[test]
    fn rtt_average_is_squids_int_average_with_window_50() {
        let t = table("cache_peer 127.0.0.9 sibling 3128 3130\n");
        let now = Instant::now();
        t.note_reply(0, 3, 2, now);
        t.note_rtt(0, Duration::from_millis(20));
        assert_eq!(t.peers[0].state().rtt_ms, 20, "n = 1: the sample itself");
        t.note_reply(0, 3, 2, now);
        t.note_rtt(0, Duration::from_millis(40));
        assert_eq!(t.peers[0].state().rtt_ms, 30, "(20*1 + 40)/2");
        t.note_reply(0, 3, 2, now);
        t.note_rtt(0, Duration::from_millis(31));
        assert_eq!(
            t.peers[0].state().rtt_ms,
            30,
            "(30*2 + 31)/3 = 30 (integer)"
        );
        // Samples below 1 ms or above 10 s are discarded.
        t.note_rtt(0, Duration::from_micros(500));
        t.note_rtt(0, Duration::from_secs(11));
        assert_eq!(t.peers[0].state().rtt_ms, 30);
        assert_eq!(int_average(100, 200, 80, 50), (100 * 49 + 200) / 50);
        assert_eq!(int_average(100, 200, 80, 25), (100 * 24 + 200) / 25);
    }

    #[test]
    fn timeout_is_dynamic_as_squid_computes_it() {
        let t = timing(0);
        // Nobody expected: 2 s.
        assert_eq!(query_timeout(&t, &[]), Duration::from_millis(2000));
        // RTT not learnt yet: the 5 ms floor (the bootstrapping trap).
        assert_eq!(
            query_timeout(&t, &[(PeerType::Sibling, 0)]),
            Duration::from_millis(5)
        );
        // Siblings only: twice their mean.
        assert_eq!(
            query_timeout(&t, &[(PeerType::Sibling, 10), (PeerType::Sibling, 30)]),
            Duration::from_millis(40)
        );
        // Parents expected: only parents count.
        assert_eq!(
            query_timeout(&t, &[(PeerType::Sibling, 500), (PeerType::Parent, 7)]),
            Duration::from_millis(14)
        );
        // Clamped to maximum_icp_query_timeout.
        assert_eq!(
            query_timeout(&t, &[(PeerType::Parent, 5000)]),
            Duration::from_millis(2000)
        );
        // A fixed icp_query_timeout is used as is.
        assert_eq!(
            query_timeout(&timing(700), &[(PeerType::Parent, 5000)]),
            Duration::from_millis(700)
        );
    }

    #[test]
    fn dead_peer_after_dead_peer_timeout_unanswered_and_revived_by_a_reply() {
        let t = table("dead_peer_timeout 2 seconds\ncache_peer 127.0.0.9 sibling 3128 3130\n");
        t.note_tcp_success(0);
        let t0 = Instant::now();
        assert!(t.is_up(0, t0));
        t.note_query_sent(0, t0);
        // A later query does not move the clock of the oldest unanswered one.
        t.note_query_sent(0, t0 + Duration::from_secs(1));
        assert!(t.is_up(0, t0 + Duration::from_secs(2)));
        let later = t0 + Duration::from_millis(2001);
        assert!(t.icp_dead(0, later) && !t.is_up(0, later));
        // Dead and queried within dead_peer_timeout: not pinged again yet.
        assert!(!t.ping_due(0, later));
        assert!(t.ping_due(0, t0 + Duration::from_millis(3001)));
        assert!(t.note_reply(0, 3, 2, later), "the reply revives it");
        assert!(t.is_up(0, later));
    }

    #[test]
    fn tcp_credit_starts_at_zero_and_connect_fail_limit_failures_kill() {
        let t = table("cache_peer 127.0.0.9 parent 3128 0 connect-fail-limit=2\n");
        let now = Instant::now();
        assert!(!t.is_up(0, now), "unusable until a probe succeeds");
        assert_eq!(t.probes_due(now), vec![0]);
        t.note_tcp_success(0);
        assert!(t.is_up(0, now) && t.probes_due(now).is_empty());
        t.note_tcp_failure(0);
        assert!(t.is_up(0, now));
        t.note_tcp_failure(0);
        assert!(!t.is_up(0, now));
    }

    #[test]
    fn round_robin_ties_go_to_the_later_peer_and_weights_divide() {
        let t = table(
            "cache_peer 127.0.0.7 parent 3128 0 round-robin\n\
             cache_peer 127.0.0.8 parent 3128 0 round-robin weight=2\n",
        );
        let now = Instant::now();
        let picks: Vec<PeerId> = (0..6)
            .map(|_| t.pick_round_robin(&[0, 1], now).unwrap_or(9))
            .collect();
        // counts (0,0): tie -> 1; (0,1): 0/1 <= 1/2 -> 0; (1,1): 1/2 < 1 -> 1;
        // (1,2): 2/2 <= 1/1 -> 1 (tie, later); (1,3): 1 < 3/2 -> 0; (2,3): 3/2 <= 2 -> 1
        assert_eq!(picks, vec![1, 0, 1, 1, 0, 1]);
    }

    #[test]
    fn denied_ratio_disables_the_peer_until_reconfigure() {
        let text = "cache_peer 127.0.0.9 sibling 3128 3130\n";
        let t = table(text);
        let now = Instant::now();
        for _ in 0..101 {
            t.note_reply(0, 22, 2, now);
        }
        assert!(t.peers[0].state().disabled);
        assert!(!t.ping_due(0, now));
        let loaded = load_str_sandboxed(text, "test");
        let again = PeerTable::new(&loaded.config, Some(&t));
        assert!(!again.peers[0].state().disabled);
        assert_eq!(again.peers[0].state().pings_acked, 101, "state kept");
    }

    #[test]
    fn multicast_group_size_is_counted_then_averaged_over_ten() {
        let start = Instant::now();
        let t = table(
            "cache_peer 239.255.77.1 multicast 3128 3130 ttl=1\n\
                       cache_peer 127.0.9.2 sibling 3128 3130 multicast-responder\n",
        );
        // Never counted: nobody is waited for.
        assert_eq!(mcast_replies_expected(&t.peers[0].state()), 0);
        // The first count is due 10 s after the group appeared, the next
        // 15 minutes after that one started; only groups are counted.
        let first = start + MCAST_FIRST_COUNT;
        assert!(t.mcast_counts_due(start).is_empty());
        let now = first + Duration::from_secs(1);
        assert_eq!(t.mcast_counts_due(now), vec![0]);
        assert!(t.mcast_counts_due(now + MCAST_COUNT_PERIOD / 2).is_empty());
        assert_eq!(t.mcast_counts_due(now + MCAST_COUNT_PERIOD), vec![0]);
        t.note_mcast_count(0, 3, now);
        assert_eq!(mcast_replies_expected(&t.peers[0].state()), 3);
        // (3 * 1 + 1) / 2 = 2
        t.note_mcast_count(0, 1, now);
        assert_eq!(mcast_replies_expected(&t.peers[0].state()), 2);
        // A reload keeps the average and the schedule.
        let loaded = load_str_sandboxed(
            "cache_peer 239.255.77.1 multicast 3128 3130 ttl=1\n",
            "test",
        );
        let again = PeerTable::new(&loaded.config, Some(&t));
        assert_eq!(mcast_replies_expected(&again.peers[0].state()), 2);
        assert!(again.mcast_counts_due(now + MCAST_COUNT_PERIOD).is_empty());
        // The weight stops growing at 10: a zero count after many keeps 9/10.
        let mut avg = 0.0;
        for n in 1..=20 {
            avg = double_average(avg, 10.0, n, MCAST_AV_FACTOR);
        }
        assert!((avg - 10.0).abs() < 1e-9);
        assert!((double_average(avg, 0.0, 21, MCAST_AV_FACTOR) - 9.0).abs() < 1e-9);
        // The group itself never gets a dead-peer clock.
        t.note_mcast_query_sent(0, now);
        assert!(t.peers[0].state().icp_probe_start.is_none());
        // ...and is asked every round, though it has no TCP credit.
        assert!(!t.is_up(0, now));
        assert!(t.ping_due(0, now));
    }

    #[test]
    fn multicast_rtt_sets_the_wait_when_no_parent_is_expected() {
        let tm = timing(0);
        let w = query_timeout(&tm, &[(PeerType::Sibling, 400), (PeerType::Multicast, 30)]);
        assert_eq!(w, Duration::from_millis(60));
        let w = query_timeout(&tm, &[(PeerType::Parent, 100), (PeerType::Multicast, 30)]);
        assert_eq!(w, Duration::from_millis(200));
    }
}
