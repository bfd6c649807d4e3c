//! The decision core of peer selection, sans-IO in the style of
//! quinn-proto: it reads the peers through a [`PeerView`] (config, health,
//! RTT, and hooks later issues fill: what a Cache Digest or a MON
//! subscription says a peer holds, origin RTTs), takes `now` with every
//! event, and answers with steps: the queries of a round ([`round`]), then
//! a decision ([`decide`]) and the [`Effect`]s the caller applies to the
//! live table. Nothing here reads a clock, a socket, DNS or a runtime: the
//! async side (`select::Neighbours`, `icp_client`, `htcp_client`) sends the
//! datagrams, feeds replies and timeouts back and applies the effects, and
//! the simulator can drive the same code on a virtual clock.

pub mod decide;
mod hash_parents;
pub mod health;
pub mod round;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::CachePeer;

pub use super::table::{PeerId, Timing};

/// What the core reads about one peer at one moment.
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo<'a> {
    pub config: &'a CachePeer,
    /// `config.host`, shared: the sources naming the peer hold it without
    /// copying it per request.
    pub host: &'a Arc<str>,
    /// Where its ICP (or HTCP) queries go; `None`: no port or no address.
    pub icp_addr: Option<SocketAddr>,
    pub health: Health,
}

/// The live state selection depends on (a copy of the table's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Health {
    /// TCP credit: 0 = unusable.
    pub tcp_up: u32,
    /// Disabled by the DENIED-ratio rule until the next reconfigure.
    pub disabled: bool,
    /// When the oldest unanswered query went out.
    pub icp_probe_start: Option<Instant>,
    pub last_query: Option<Instant>,
    pub open_conns: u32,
    /// Running RTT average in milliseconds (0 until learnt).
    pub rtt_ms: u64,
    /// Round-robin (or weighted-round-robin) counter.
    pub rr_count: u64,
    /// ICP version of the last reply (2 until told otherwise).
    pub icp_version: u8,
    /// Multicast groups: running average of the responders counted.
    pub mcast_avg_members: f64,
}

/// The peers as the core sees them. The hooks with defaults are where the
/// next features plug in; a view that knows nothing about them keeps the
/// defaults and selection behaves as Squid without digests or MON.
pub trait PeerView {
    /// How many peers (ids are `0..peer_count()`, config order).
    fn peer_count(&self) -> usize;
    fn peer(&self, id: PeerId) -> Option<PeerInfo<'_>>;
    fn timing(&self) -> Timing;
    /// `query_icmp on`: SRC_RTT is asked for and parents' reports count.
    fn query_icmp(&self) -> bool;
    /// When the round-robin counters were last reset.
    fn rr_reset_at(&self) -> Instant;
    /// What a Cache Digest says peer `id` holds for `url`: `Some(true)` a
    /// predicted hit, `Some(false)` a miss, `None` no usable digest.
    fn digest_holds(&self, _id: PeerId, _url: &str) -> Option<bool> {
        None
    }
    /// What a MON subscription says peer `id` holds for `url`.
    fn mon_holds(&self, _id: PeerId, _url: &str) -> Option<bool> {
        None
    }
    /// Peer `id`'s measured load in milliseconds (`load-aware` CARP,
    /// peers/load.rs), when known.
    fn load_ms(&self, _id: PeerId, _now: Instant) -> Option<f64> {
        None
    }
    /// This cache's RTT to the origin `host` (NetDB), when known.
    fn origin_rtt(&self, _host: &str) -> Option<Duration> {
        None
    }
}

/// A change to the live peer table the caller applies after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A query went to the peer at `at` (a multicast group: counted, but
    /// its dead-peer clock never starts).
    QuerySent {
        peer: PeerId,
        at: Instant,
        multicast: bool,
    },
    /// The peer's round-robin counter grows by `by`.
    RoundRobinStep { peer: PeerId, by: u64 },
    /// Every round-robin counter back to 0, the 5-minute period restarting
    /// at `at` (Squid's peerClearRR).
    ResetRoundRobin { at: Instant },
    /// Every counter back to 0 without restarting the period (a
    /// weighted-round-robin counter overflowed).
    ClearRoundRobin,
    /// The peer was found ICP-dead ("Detected DEAD" is logged once).
    FoundDead { peer: PeerId },
}
