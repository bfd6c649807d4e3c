//! Load-aware CARP (`cache_peer ... carp load-aware`, cuttle's option):
//! a parent's measured load scales its CARP weight down, smoothly and
//! within bounds, so a slow parent sheds part of its URLs to the others
//! while every other URL keeps its owner ([`Carp::scaled`]).
//!
//! What is measured, per peer ([`LoadMeter`]):
//! - service time: from sending a request to the peer to its response
//!   head (connect, network RTT and the peer's own work), a moving
//!   average over about the last [`SERVICE_WINDOW`] fetches it would get
//!   at its full weight: a fetch counts 1/16, or 1/(16 × scale) while
//!   its weight is scaled down to `scale` (all of it at 1/16 or below),
//!   so a peer sent only a trickle is judged by its latest fetches and
//!   its share comes back on the first fast one;
//! - the ICP RTT average the table keeps already (Squid's, over 50 replies);
//! - what a cuttle peer reports about itself in its ICP replies (its own
//!   service time, [`report`]), while fresh ([`REPORT_FRESH`]).
//!
//! The load is the largest of the three. A member's weight is scaled by
//! `(TOLERANCE × reference / load)²`, clamped to `MIN_SCALE..=1`, where
//! the reference is the lower median of the members' loads (a lone slow
//! parent cannot raise it) and loads below [`LOAD_FLOOR_MS`] count as the
//! floor (loopback jitter moves nothing). So a parent up to 1.5 times the
//! typical load keeps its full share; beyond, its share falls with the
//! square of its slowness, so the waiting it adds (share × load) falls
//! as it slows, where a proportional rule would keep it constant and a
//! slow parent would stay in the tail (p99) of every client. It never
//! falls below 1/128 of its weight: a trickle (with three equal parents,
//! about 0.4% of the requests) keeps it measured, and its share comes
//! back when it recovers. Scales are rounded to steps of 2^(1/16) (about
//! 4%) so the table is rebuilt only on a real change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::carp::{Carp, CarpMember};

/// Weight of a new service-time sample at full weight: 1/16 (about the
/// last 16 fetches).
pub const SERVICE_WINDOW: f64 = 16.0;
/// Loads below this count as this (milliseconds).
pub const LOAD_FLOOR_MS: f64 = 10.0;
/// A load up to this multiple of the reference costs nothing.
pub const TOLERANCE: f64 = 1.5;
/// The least a member's weight is scaled to: the trickle that keeps a
/// slow member measured.
pub const MIN_SCALE: f64 = 1.0 / 128.0;
/// Scales are rounded to powers of 2^(1/SCALE_STEPS).
pub const SCALE_STEPS: f64 = 16.0;
/// A peer's self-report counts for this long after it arrived.
pub const REPORT_FRESH: Duration = Duration::from_secs(60);

/// One peer's measured load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadMeter {
    /// Moving average of the service time in milliseconds (0: no sample).
    pub service_ms: f64,
    pub samples: u64,
    /// The load the peer last reported about itself (ms) and when.
    pub reported: Option<(u16, Instant)>,
}

impl LoadMeter {
    /// One fetch from the peer got its response head after `took`, while
    /// its CARP weight was scaled by `scale` (1 when it is not scaled).
    pub fn note_service(&mut self, took: Duration, scale: f64) {
        let ms = took.as_secs_f64() * 1000.0;
        // A scaled-down peer gets `scale` of its fetches: each counts that
        // much more, so the window spans as many requests to the set.
        let weight = if scale.is_finite() && scale > 0.0 {
            (1.0 / (SERVICE_WINDOW * scale.min(1.0))).min(1.0)
        } else {
            1.0 / SERVICE_WINDOW
        };
        self.service_ms = if self.samples == 0 {
            ms
        } else {
            self.service_ms + (ms - self.service_ms) * weight
        };
        self.samples += 1;
    }

    /// The peer said its own load is `ms`.
    pub fn note_reported(&mut self, ms: u16, now: Instant) {
        self.reported = Some((ms, now));
    }

    /// The load to weigh the peer by, given its ICP RTT average
    /// (`rtt_ms`, 0 unknown); `None` while nothing is known.
    pub fn load_ms(&self, rtt_ms: u64, now: Instant) -> Option<f64> {
        let service = (self.samples > 0).then_some(self.service_ms);
        let reported = self
            .reported
            .filter(|(_, at)| now.saturating_duration_since(*at) <= REPORT_FRESH)
            .map(|(ms, _)| f64::from(ms));
        let rtt = (rtt_ms > 0).then_some(rtt_ms as f64);
        [service, reported, rtt]
            .into_iter()
            .flatten()
            .reduce(f64::max)
    }
}

/// The weight scale of each member given its load (`None`: unknown, kept
/// at 1) and whether it is `load-aware` (others stay at 1 but count
/// towards the reference).
pub fn scales(loads: &[(Option<f64>, bool)]) -> Vec<f64> {
    let mut known: Vec<f64> = loads
        .iter()
        .filter_map(|(l, _)| l.map(|l| l.max(LOAD_FLOOR_MS)))
        .collect();
    known.sort_by(f64::total_cmp);
    let Some(&reference) = known.get(known.len().saturating_sub(1) / 2) else {
        return vec![1.0; loads.len()];
    };
    loads
        .iter()
        .map(|&(load, aware)| match load {
            Some(l) if aware => {
                let s = (TOLERANCE * reference / l.max(LOAD_FLOOR_MS))
                    .powi(2)
                    .clamp(MIN_SCALE, 1.0);
                // Rounded in the log so small scales keep their precision;
                // 1 stays exactly 1 (plain CARP's table).
                ((s.log2() * SCALE_STEPS).round() / SCALE_STEPS).exp2()
            }
            _ => 1.0,
        })
        .collect()
}

/// The CARP table of a member set with `load-aware` members: rebuilt
/// from the members' scales when they change, shared by selections.
#[derive(Debug, Clone, Default)]
pub struct LoadAwareCarp {
    /// (name, weight, load-aware) per member index.
    members: Vec<(String, u32, bool)>,
    current: Arc<Mutex<(Vec<f64>, Arc<Carp>)>>,
}

impl LoadAwareCarp {
    /// `None` when no member is `load-aware` (plain CARP then).
    pub fn new(members: Vec<(String, u32, bool)>) -> Option<LoadAwareCarp> {
        if !members.iter().any(|m| m.2) {
            return None;
        }
        let plain = Carp::new(&carp_members(&members));
        Some(LoadAwareCarp {
            current: Arc::new(Mutex::new((vec![1.0; members.len()], Arc::new(plain)))),
            members,
        })
    }

    /// The table for these loads (by member index).
    pub fn table(&self, loads: impl Fn(usize) -> Option<f64>) -> Arc<Carp> {
        let wanted = scales(
            &self
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| (loads(i), m.2))
                .collect::<Vec<_>>(),
        );
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != wanted {
            let carp = Carp::scaled(&carp_members(&self.members), |i| {
                wanted.get(i).copied().unwrap_or(1.0)
            });
            tracing::debug!(scales = ?wanted, "load-aware CARP weights changed");
            *current = (wanted, Arc::new(carp));
        }
        Arc::clone(&current.1)
    }

    /// The scale in force for member `index` (1 if out of range).
    pub fn scale(&self, index: usize) -> f64 {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .get(index)
            .copied()
            .unwrap_or(1.0)
    }

    /// The scales in force (by member index), for reports.
    pub fn scales(&self) -> Vec<f64> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }
}

fn carp_members(members: &[(String, u32, bool)]) -> Vec<CarpMember<'_>> {
    members
        .iter()
        .map(|(name, weight, _)| CarpMember {
            name,
            weight: *weight,
        })
        .collect()
}

/// The ICP carrier of a cuttle's self-reported load: an option flag bit
/// Squid neither sets nor reads (it honours only SRC_RTT, squid-spec 1.3)
/// and the option data word, which Squid reads only with SRC_RTT. A
/// cuttle asks with the flag in its queries to `load-aware` peers (a Squid
/// responder ignores it); a cuttle responder answers such a query's HIT,
/// MISS or MISS_NOFETCH without SRC_RTT with the flag and its own service
/// time in milliseconds in the option data. Replies to Squid's queries
/// (which never carry the flag) stay byte for byte what Squid sends.
pub mod report {
    use cuttle_protocol::icp::{Opcode, Options};

    /// The flag bit: "option data holds the sender's load" in a reply,
    /// "tell me your load" in a query.
    pub const FLAG: u32 = 0x0100_0000;

    /// (flags, option data) for a reply reporting `load_ms`.
    pub fn encode(load_ms: u16) -> (u32, u32) {
        (FLAG, u32::from(load_ms))
    }

    /// Adds this process's load to the encoded `reply` of `query` when
    /// the query asked and the reply's option fields are free.
    pub fn stamp(query: &[u8], reply: &mut [u8]) {
        let word = |b: &[u8], at: usize| {
            b.get(at..at + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map(u32::from_be_bytes)
        };
        let answer = reply.first().is_some_and(|&op| {
            [Opcode::Hit, Opcode::Miss, Opcode::MissNoFetch]
                .iter()
                .any(|o| o.value() == op)
        });
        let asked = word(query, 8).is_some_and(|f| f & FLAG != 0);
        if !(answer && asked && word(reply, 8) == Some(0) && word(reply, 12) == Some(0)) {
            return;
        }
        let (flags, data) = encode(super::own_report_ms());
        reply[8..12].copy_from_slice(&flags.to_be_bytes());
        reply[12..16].copy_from_slice(&data.to_be_bytes());
    }

    /// `options` asking a peer for its load.
    pub fn ask() -> Options {
        Options(FLAG)
    }

    /// The load a reply reports, if it carries one.
    pub fn decode(flags: u32, option_data: u32) -> Option<u16> {
        (flags & FLAG != 0 && flags & cuttle_protocol::icp::Options::SRC_RTT == 0)
            .then_some((option_data & 0xffff) as u16)
    }
}

/// This process's own service time (what its ICP replies report): the
/// moving average over its forwarded fetches, peers' and origins' alike,
/// as f64 bits (`u64::MAX`: no fetch yet). One per process, like the load
/// it describes: every forwarder feeds it and the ICP responder reads it,
/// across reloads; an atomic, so forwarders never wait on each other.
static OWN_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// A fetch this process forwarded got its response head after `took`.
pub fn note_own_service(took: Duration) {
    let ms = took.as_secs_f64() * 1000.0;
    let _ = OWN_MS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        let next = if bits == u64::MAX {
            ms
        } else {
            let avg = f64::from_bits(bits);
            avg + (ms - avg) / SERVICE_WINDOW
        };
        Some(next.to_bits())
    });
}

/// This process's service time in milliseconds, saturated to 16 bits; 0
/// before any fetch.
pub fn own_report_ms() -> u16 {
    let bits = OWN_MS.load(Ordering::Relaxed);
    let ms = if bits == u64::MAX {
        0.0
    } else {
        f64::from_bits(bits)
    };
    ms.round().clamp(0.0, f64::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests;
