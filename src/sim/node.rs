//! One simulated node: its squid.conf, its simulated store, its peers
//! (its cache_peer lines, each mapped to the mesh node at that address)
//! with their live state, and the [`PeerView`] through which peer
//! selection's sans-IO core reads them, exactly as the proxy's peer table
//! is read. Effects the core returns are applied here as the table applies
//! them (`PeerTable::apply`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use cuttle_protocol::digest::{self, KeyWords};
use cuttle_protocol::key::StoreKey;

use super::mesh::{Kind, Mesh};
use super::store::{Holdings, SimStore};
use crate::config::{CachePeer, Config};
use crate::peers::core::{Effect, Health, PeerId, PeerInfo, PeerView, Timing};
use crate::peers::select::HashParents;
use crate::peers::store_digest;
use crate::peers::table::int_average;

/// Squid's RTT_AV_FACTOR and RTT_WRR_AV_FACTOR (the table's averaging).
const RTT_AV_FACTOR: u64 = 50;
const RTT_WRR_AV_FACTOR: u64 = 25;
/// RTT samples above this are not averaged (the table's bound).
const RTT_SAMPLE_MAX_MS: u64 = 10_000;

/// One cache_peer line of a node, as the simulation sees it.
#[derive(Debug, Clone)]
pub struct SimPeer<'m> {
    /// Its cache_peer line.
    pub config: &'m CachePeer,
    /// `config.host`, shared with the selections that name it.
    pub host: std::sync::Arc<str>,
    /// The mesh node at the peer's address (`None`: not in the mesh, it
    /// never answers and cannot be fetched from).
    pub node: Option<usize>,
    pub icp_addr: Option<SocketAddr>,
    pub health: Health,
    pub pings_acked: u64,
    /// Service times of fetches from it (`load-aware` CARP, sim/load.rs).
    pub load: crate::peers::load::LoadMeter,
}

/// What a node publishes as its Cache Digest: a real one (the proxy's
/// own Bloom filter, sized as the proxy sizes it) of the objects it held
/// at its last rebuild, so lookups have its false hits; and, for a Squid
/// node, the mask as a Squid peer receives it (squid-spec 5.5).
#[derive(Debug, Clone, Default)]
pub struct Digest {
    exact: Option<digest::Digest>,
    /// The mask a Squid reader builds from this digest when a Squid serves
    /// it (Bug 5510); `None` when the server is cuttle (it serves around
    /// the bug, so every reader gets the exact mask).
    garbled: Option<Vec<u8>>,
}

impl Digest {
    /// The objects node `node` holds now (`keys`: each object's store
    /// key), with the capacity the proxy's store digest would give it.
    pub fn of(
        table: &Holdings,
        node: usize,
        keys: &[StoreKey],
        store: &SimStore,
        bits_per_entry: u8,
        served_by_squid: bool,
    ) -> Digest {
        let capacity = store_digest::capacity(
            store.len() as u64,
            store.used(),
            store.capacity(),
            bits_per_entry,
        );
        let mut exact = digest::Digest::new(capacity, bits_per_entry);
        for object in table.held_by(node) {
            if let Some(key) = keys.get(object as usize) {
                exact.add(key);
            }
        }
        Digest::served(exact, served_by_squid)
    }

    /// `exact` as served by a Squid (`served_by_squid`) or by cuttle.
    pub fn served(exact: digest::Digest, served_by_squid: bool) -> Digest {
        let garbled = served_by_squid.then(|| squid_received_mask(exact.mask()));
        Digest {
            exact: Some(exact),
            garbled,
        }
    }

    /// Whether a reader finds the key split into `words` in this digest
    /// (`squid_reader`: the reader is a Squid, which garbles what a Squid
    /// serves).
    pub fn holds(&self, words: &KeyWords, squid_reader: bool) -> bool {
        let Some(exact) = &self.exact else {
            return false;
        };
        match (&self.garbled, squid_reader) {
            (Some(mask), true) => words.in_mask(mask),
            _ => exact.contains_words(words),
        }
    }
}

/// Squid's reader buffer (squid-spec 5.5): 4 KiB.
const SQUID_READ_BUFFER: usize = 4096;

/// The mask a Squid up to 7.6 builds from `mask` served in one burst
/// (squid-spec 5.5, Bug 5510): its first read holds the 128-byte header
/// and the start of the mask in a 4 KiB buffer, of which it slides only
/// 128 bytes after the header, so `mask'[j] = mask[j - 128]` for `128 <=
/// j < first - 128` (`first`: the bytes of the first read, header
/// included); the rest is read correctly.
pub fn squid_received_mask(mask: &[u8]) -> Vec<u8> {
    let header = digest::HEADER_LEN;
    let first = SQUID_READ_BUFFER.min(header + mask.len());
    let mut out = mask.to_vec();
    let end = first.saturating_sub(header);
    if end > header {
        out[header..end].copy_from_slice(&mask[..end - header]);
    }
    out
}

/// A FIFO server with a fixed service time, kept as its backlog (ms of
/// work queued) as of the latest arrival. The trace is replayed request by
/// request, so a node can see an arrival earlier than one it already saw
/// (a nested fetch runs ahead in virtual time): that one waits for the
/// backlog as last known, and the backlog never runs ahead of the clock
/// (a queue of reservations would, and feed on itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo {
    backlog_ms: f64,
    at_ms: f64,
}

impl Fifo {
    /// A request arriving at `arrive` (ms) needing `service_ms`: when it
    /// is done.
    pub fn serve(&mut self, arrive: f64, service_ms: f64) -> f64 {
        if arrive > self.at_ms {
            self.backlog_ms = (self.backlog_ms - (arrive - self.at_ms)).max(0.0);
            self.at_ms = arrive;
        }
        let done = arrive + self.backlog_ms + service_ms;
        self.backlog_ms += service_ms;
        done
    }
}

#[derive(Debug)]
pub struct SimNode<'m> {
    pub name: &'m str,
    /// Squid nodes garble the Squid digests they read (squid-spec 5.5).
    pub kind: Kind,
    pub config: &'m Config,
    pub address: IpAddr,
    pub service_ms: f64,
    pub store: SimStore,
    pub peers: Vec<SimPeer<'m>>,
    pub hashes: HashParents,
    pub timing: Timing,
    pub rr_reset_at: Instant,
    pub next_ping: u64,
    /// The node's FIFO queue of work.
    pub queue: Fifo,
    /// The digest it publishes, and when (ms) it is rebuilt next.
    pub digest: Digest,
    pub next_digest_ms: f64,
}

impl<'m> SimNode<'m> {
    pub fn new(mesh: &'m Mesh, index: usize, clock: Instant) -> SimNode<'m> {
        let node = &mesh.nodes[index];
        let config = &node.config;
        let peers = config
            .cache_peers
            .iter()
            .map(|located| {
                let cp: &CachePeer = &located.value;
                let ip: Option<IpAddr> = cp.host.parse().ok();
                SimPeer {
                    config: cp,
                    host: cp.host.as_str().into(),
                    node: ip.and_then(|ip| mesh.node_at(ip)),
                    icp_addr: ip
                        .filter(|_| cp.icp_port != 0)
                        .map(|ip| SocketAddr::new(ip, cp.icp_port)),
                    health: Health {
                        // Every peer starts up: the simulation has no
                        // connection failures.
                        tcp_up: cp.connect_fail_limit.max(1),
                        icp_version: 2,
                        ..Health::default()
                    },
                    pings_acked: 0,
                    load: Default::default(),
                }
            })
            .collect();
        let mut sim = SimNode {
            name: &node.name,
            kind: node.kind,
            config,
            address: node.address,
            service_ms: node.service_ms,
            store: SimStore::of(config, index),
            peers,
            hashes: HashParents::default(),
            timing: Timing::of(config),
            rr_reset_at: clock,
            next_ping: 0,
            queue: Fifo::default(),
            digest: Digest::default(),
            next_digest_ms: 0.0,
        };
        sim.hashes = HashParents::new(&sim);
        sim
    }

    /// Squid rotates the first peer of each ping round.
    pub fn next_ping_start(&mut self) -> usize {
        let n = self.peers.len().max(1) as u64;
        let start = self.next_ping % n;
        self.next_ping += 1;
        start as usize
    }

    /// A request arriving at `arrive` (ms): when the node has served it.
    pub fn serve(&mut self, arrive: f64) -> f64 {
        let service = self.service_ms;
        self.queue.serve(arrive, service)
    }

    pub fn apply(&mut self, effect: &Effect) {
        match *effect {
            Effect::QuerySent { peer, at, .. } => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.health.last_query = Some(at);
                    p.health.icp_probe_start.get_or_insert(at);
                }
            }
            Effect::RoundRobinStep { peer, by } => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.health.rr_count += by;
                }
            }
            Effect::ResetRoundRobin { at } => {
                self.rr_reset_at = at;
                self.peers.iter_mut().for_each(|p| p.health.rr_count = 0);
            }
            Effect::ClearRoundRobin => {
                self.peers.iter_mut().for_each(|p| p.health.rr_count = 0);
            }
            Effect::FoundDead { .. } => {}
        }
    }

    /// Inlined: most lists a request applies are empty.
    #[inline]
    pub fn apply_all(&mut self, effects: &[Effect]) {
        for e in effects {
            self.apply(e);
        }
    }

    /// A reply from peer `id` (Squid's neighborAlive) and, when it came
    /// while its request was in flight, its RTT sample (squid-spec 1.7: a
    /// later reply teaches nothing).
    pub fn note_reply(&mut self, id: PeerId, rtt_ms: Option<u64>) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        p.pings_acked += 1;
        p.health.icp_probe_start = None;
        let Some(rtt_ms) = rtt_ms else { return };
        if (1..=RTT_SAMPLE_MAX_MS).contains(&rtt_ms) {
            let weighted = self
                .config
                .cache_peers
                .get(id)
                .is_some_and(|cp| cp.value.weighted_round_robin);
            let max = if weighted {
                RTT_WRR_AV_FACTOR
            } else {
                RTT_AV_FACTOR
            };
            p.health.rtt_ms = int_average(p.health.rtt_ms, rtt_ms, p.pings_acked, max);
        }
    }
}

impl PeerView for SimNode<'_> {
    #[inline]
    fn peer_count(&self) -> usize {
        self.peers.len()
    }

    #[inline]
    fn peer(&self, id: PeerId) -> Option<PeerInfo<'_>> {
        let p = self.peers.get(id)?;
        Some(PeerInfo {
            config: p.config,
            host: &p.host,
            icp_addr: p.icp_addr,
            health: p.health,
        })
    }

    fn timing(&self) -> Timing {
        self.timing
    }

    fn query_icmp(&self) -> bool {
        self.config.query_icmp.value
    }

    fn rr_reset_at(&self) -> Instant {
        self.rr_reset_at
    }

    fn load_ms(&self, id: PeerId, now: Instant) -> Option<f64> {
        super::load::load_ms(self, id, now)
    }
}

/// A node's view for one request: its own peers, and what its peers'
/// published digests say of the requested object.
pub struct View<'a, 'm> {
    pub nodes: &'a [SimNode<'m>],
    pub at: usize,
    /// `nodes[at]`, looked up once.
    node: &'a SimNode<'m>,
    /// The request's store key, split once for every peer's digest.
    pub words: KeyWords,
}

impl<'a, 'm> View<'a, 'm> {
    pub fn new(nodes: &'a [SimNode<'m>], at: usize, key: &StoreKey) -> View<'a, 'm> {
        View {
            nodes,
            at,
            node: &nodes[at],
            words: KeyWords::of(key),
        }
    }

    fn node(&self) -> &SimNode<'_> {
        self.node
    }
}

impl PeerView for View<'_, '_> {
    #[inline]
    fn peer_count(&self) -> usize {
        self.node().peer_count()
    }

    #[inline]
    fn peer(&self, id: PeerId) -> Option<PeerInfo<'_>> {
        self.node.peer(id)
    }

    fn timing(&self) -> Timing {
        self.node().timing
    }

    fn query_icmp(&self) -> bool {
        self.node().query_icmp()
    }

    fn rr_reset_at(&self) -> Instant {
        self.node().rr_reset_at
    }

    fn load_ms(&self, id: PeerId, now: Instant) -> Option<f64> {
        self.node().load_ms(id, now)
    }

    /// The request's object in the peer's published digest; `None` when
    /// the peer line says `no-digest`, the peer is not in the mesh or does
    /// not generate digests (`digest_generation off`).
    fn digest_holds(&self, id: PeerId, _url: &str) -> Option<bool> {
        let node = self.node();
        let p = node.peers.get(id)?;
        if p.config.no_digest {
            return None;
        }
        let peer = &self.nodes[p.node?];
        if !peer.config.digest_generation.value {
            return None;
        }
        Some(peer.digest.holds(&self.words, node.kind == Kind::Squid))
    }
}

#[cfg(test)]
mod tests {
    use super::{squid_received_mask, Digest, Fifo};
    use cuttle_protocol::digest;
    use cuttle_protocol::key::{store_key, Method};

    #[test]
    fn a_squid_reader_shifts_mask_bytes_128_to_3967_by_128() {
        // Every byte names its position (mod 251, a prime: no period of 128).
        let mask: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
        let got = squid_received_mask(&mask);
        assert_eq!(got.len(), 5000);
        assert_eq!(got[..128], mask[..128]);
        assert_eq!(got[128..3968], mask[..3840]);
        assert_eq!(got[3968..], mask[3968..]);
        // A mask whose whole digest fits the first read: damaged to its end.
        let small: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
        let got = squid_received_mask(&small);
        assert_eq!(got[..128], small[..128]);
        assert_eq!(got[128..], small[..872]);
        // Up to 128 bytes of mask: nothing to shift.
        let tiny: Vec<u8> = (0..128).map(|i| i as u8).collect();
        assert_eq!(squid_received_mask(&tiny), tiny);
    }

    #[test]
    fn only_a_squid_reading_a_squid_digest_misses_members() {
        // squid-spec 5.5's case: capacity 16,000 (a 10,000-byte mask), 1,500 URLs.
        let keys: Vec<_> = (0..1500)
            .map(|i| store_key(Method::Get, format!("http://example.com/o/{i}").as_bytes()))
            .collect();
        let mut exact = digest::Digest::new(16_000, 5);
        keys.iter().for_each(|k| exact.add(k));
        assert_eq!(exact.mask().len(), 10_000);
        let found = |d: &Digest, squid_reader: bool| {
            keys.iter()
                .filter(|k| d.holds(&digest::KeyWords::of(k), squid_reader))
                .count()
        };
        let by_squid = Digest::served(exact.clone(), true);
        let by_cuttle = Digest::served(exact, false);
        let squid_of_squid = found(&by_squid, true);
        assert!(
            squid_of_squid < 500,
            "a Squid found {squid_of_squid}/1500 in a Squid's digest"
        );
        assert_eq!(
            found(&by_cuttle, true),
            1500,
            "a Squid reading cuttle's digest"
        );
        assert_eq!(
            found(&by_squid, false),
            1500,
            "cuttle reading a Squid's digest"
        );
        assert_eq!(found(&by_cuttle, false), 1500);
    }

    #[test]
    fn the_fifo_queues_and_drains_with_the_clock() {
        let mut q = Fifo::default();
        // 1 ms each: two at 0 -> done at 1 and 2; at 0.5 the backlog is
        // 1.5 ms -> 3; at 10 it has drained -> 11.
        assert_eq!(q.serve(0.0, 1.0), 1.0);
        assert_eq!(q.serve(0.0, 1.0), 2.0);
        assert_eq!(q.serve(0.5, 1.0), 3.0);
        assert_eq!(q.serve(10.0, 1.0), 11.0);
        // An arrival earlier than the last waits for the backlog as of the
        // last (1 ms), not for work reserved further ahead.
        assert_eq!(q.serve(5.0, 1.0), 7.0);
    }
}
