//! Origin round-trip times for ICP's SRC_RTT answers: a small NetDB in the
//! spirit of Squid's (squid-spec 1.3, 3.8), fed by the TCP handshakes of
//! cuttle's own DIRECT fetches (cuttle has no ICMP pinger) and read by the
//! ICP responder, which tells a querier that sets ICP_FLAG_SRC_RTT how far
//! the URL's host is from here.
//!
//! Keyed as Squid keys its NetDB: a measurement belongs to the host's
//! network (the /24 of an IPv4 address, the /64 of an IPv6 one), and host
//! names map to networks. A lookup is by the URL's host name exactly (case
//! and a trailing dot aside): like Squid 5.7, which answers SRC_RTT for
//! `http://127.0.8.1/` once it fetched from there but not for
//! `http://localhost/` (seen), a name never connected to is unknown even
//! when its network is known, while every name of a network shares that
//! network's average.
//!
//! The RTT is the handshake time of a new connection (one SYN, SYN-ACK
//! round trip), averaged over the last few samples of the network; an
//! answer says at least 1 ms (Squid's own placeholder for a site it has
//! fetched from, without a ping, is 1 ms too) and hops 0 (unknown).
//!
//! The responder answers ~300k queries a second on one thread, so a
//! lookup takes no lock and allocates nothing: both tables are fixed
//! arrays of slots, each a sequence lock over a few atomic words. Readers
//! retry a torn read a few times and then treat the host as unknown;
//! writers (tokio tasks after a connect) take a slot's sequence with one
//! compare-and-swap and drop their sample when another writer holds it.
//! A full table replaces the slot updated longest ago in the probe window.
//! Names are stored as keyed 64-bit hashes, not text: two names that
//! collide share an answer (odds about 2^-64 per pair).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Name slots (host name -> network).
pub const NAME_SLOTS: usize = 8192;
/// Network slots (network -> RTT). Squid keeps up to 1000 networks by
/// default (netdb_high); room for more costs little here.
pub const NET_SLOTS: usize = 4096;
/// Slots looked at from a key's home slot before replacing one.
const PROBE: usize = 8;
/// A network's RTT is the running average over this many latest samples.
const AVG_WINDOW: u64 = 5;
/// Attempts at reading a slot that a writer is changing.
const READ_TRIES: usize = 4;
/// The most an answer says: 0xFFFF is out of the range Squid's querier
/// records in its own NetDB (0 < rtt < 0xFFFF).
const MAX_RTT_MS: u16 = 0xFFFE;

/// What an ICP reply with SRC_RTT carries (squid-spec 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrcRtt {
    /// Milliseconds, at least 1.
    pub rtt_ms: u16,
    /// Router hops; 0 = unknown (always, without ICMP).
    pub hops: u16,
}

impl SrcRtt {
    /// The option data word: `(hops << 16) | rtt`.
    pub fn option_data(self) -> u32 {
        cuttle_protocol::icp::join_src_rtt(self.rtt_ms, self.hops)
    }
}

/// The network a host's address belongs to (Squid's NetDB key): the /24
/// of IPv4 (IPv4-mapped IPv6 included), the /64 of IPv6. `hi` is the
/// family (4 or 6), never 0, so a slot holding it is occupied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    hi: u64,
    lo: u64,
}

impl Network {
    pub fn of(addr: IpAddr) -> Network {
        match addr.to_canonical() {
            IpAddr::V4(v4) => Network {
                hi: 4,
                lo: u64::from(u32::from(v4) & 0xFFFF_FF00),
            },
            IpAddr::V6(v6) => Network {
                hi: 6,
                lo: (u128::from(v6) >> 64) as u64,
            },
        }
    }
}

/// A sequence lock over `N` atomic words. An even sequence is stable; a
/// writer makes it odd, writes, and makes it even again.
#[derive(Debug)]
struct Slot<const N: usize> {
    seq: AtomicU32,
    words: [AtomicU64; N],
}

impl<const N: usize> Default for Slot<N> {
    fn default() -> Self {
        Slot {
            seq: AtomicU32::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl<const N: usize> Slot<N> {
    /// A consistent copy of the words; `None` when writers kept changing
    /// them through every try (the caller treats the slot as unknown).
    fn read(&self) -> Option<[u64; N]> {
        for _ in 0..READ_TRIES {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let words: [u64; N] = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
            // Orders the loads above before the re-check: a word from a
            // writer that started meanwhile implies we see its odd sequence.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(words);
            }
        }
        None
    }

    /// Replaces the words with `change(current)` unless it says `None`.
    /// Returns false, changing nothing, when another writer holds the slot.
    fn write(&self, change: impl FnOnce([u64; N]) -> Option<[u64; N]>) -> bool {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq & 1 == 1
            || self
                .seq
                .compare_exchange(
                    seq,
                    seq.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return false;
        }
        // Pairs with the readers' fence: they cannot take the words below
        // for the ones of the even sequence they started from.
        fence(Ordering::Release);
        let current: [u64; N] = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
        let changed = change(current);
        if let Some(words) = changed {
            for (slot, w) in self.words.iter().zip(words) {
                slot.store(w, Ordering::Relaxed);
            }
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
        changed.is_some()
    }
}

/// Name slot words: [name hash (0 = empty), network hi, network lo, stamp].
type NameSlot = Slot<4>;
/// Network slot words: [network hi (0 = empty), network lo, average RTT in
/// microseconds, samples << 32 | stamp].
type NetSlot = Slot<4>;

/// The table. Shared (`Arc`) by the fetch path, which writes, and the ICP
/// responder, which reads; it outlives reloads.
#[derive(Debug)]
pub struct NetDb {
    names: Box<[NameSlot]>,
    nets: Box<[NetSlot]>,
    /// Keys the name hash: hosts in URLs come from clients, so the slots
    /// they land in must not be predictable.
    hasher: RandomState,
    /// Stamps are seconds since this instant.
    epoch: Instant,
}

impl Default for NetDb {
    fn default() -> Self {
        NetDb::with_slots(NAME_SLOTS, NET_SLOTS)
    }
}

impl NetDb {
    /// A table of `names` and `nets` slots (each rounded up to a power of
    /// two, at least [`PROBE`]).
    pub fn with_slots(names: usize, nets: usize) -> NetDb {
        let size = |n: usize| n.max(PROBE).next_power_of_two();
        NetDb {
            names: (0..size(names)).map(|_| NameSlot::default()).collect(),
            nets: (0..size(nets)).map(|_| NetSlot::default()).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// A TCP connection to `host` (as in the URL) reached `addr` after a
    /// handshake of `took`: one RTT sample for the address's network, and
    /// `host` now names that network. Never blocks: a sample that meets
    /// another writer on its slot is dropped.
    pub fn note_connect(&self, host: &str, addr: IpAddr, took: Duration) {
        self.note_connect_at(host, addr, took, Instant::now());
    }

    fn note_connect_at(&self, host: &str, addr: IpAddr, took: Duration, now: Instant) {
        let Some(name) = self.name_hash(host) else {
            return;
        };
        let net = Network::of(addr);
        let stamp = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .min(u64::from(u32::MAX));
        let sample = took.as_micros().min(u128::from(u32::MAX)) as u64;
        upsert(
            &self.nets,
            home(net.hi ^ net.lo.rotate_left(17), self.nets.len()),
            |w| w[0] == net.hi && w[1] == net.lo,
            |w| {
                let matches = w[0] == net.hi && w[1] == net.lo;
                let samples = if matches { w[3] >> 32 } else { 0 };
                let n = (samples + 1).min(AVG_WINDOW);
                let avg = if matches {
                    (w[2] * (n - 1) + sample) / n
                } else {
                    sample
                };
                [
                    net.hi,
                    net.lo,
                    avg,
                    ((samples + 1).min(u64::from(u32::MAX)) << 32) | stamp,
                ]
            },
            |w| w[3] & 0xFFFF_FFFF,
        );
        upsert(
            &self.names,
            home(name, self.names.len()),
            |w| w[0] == name,
            |_| [name, net.hi, net.lo, stamp],
            |w| w[3],
        );
    }

    /// What to answer a SRC_RTT query about a URL whose host is `host`:
    /// `None` when no connection to that name was timed. No lock, no
    /// allocation.
    pub fn lookup(&self, host: &str) -> Option<SrcRtt> {
        let name = self.name_hash(host)?;
        let words = find(&self.names, home(name, self.names.len()), |w| w[0] == name)?;
        let (hi, lo) = (words[1], words[2]);
        let net = find(
            &self.nets,
            home(hi ^ lo.rotate_left(17), self.nets.len()),
            |w| w[0] == hi && w[1] == lo,
        )?;
        let ms = net[2].div_ceil(1000).clamp(1, u64::from(MAX_RTT_MS)) as u16;
        Some(SrcRtt {
            rtt_ms: ms,
            hops: 0,
        })
    }

    /// The keyed hash of a host name as URLs and connects spell it: ASCII
    /// case, IPv6 brackets and a trailing dot do not count; never 0 (an
    /// empty slot). `None` for an empty name.
    fn name_hash(&self, host: &str) -> Option<u64> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let bare = bare.trim_end_matches('.');
        if bare.is_empty() {
            return None;
        }
        let mut h = self.hasher.build_hasher();
        // Lower-cased a chunk at a time on the stack: no allocation.
        let mut buf = [0u8; 64];
        for chunk in bare.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            h.write(lower);
        }
        Some(h.finish() | 1)
    }
}

/// The home slot of `hash` in a table of `len` slots (a power of two).
fn home(hash: u64, len: usize) -> usize {
    // Fibonacci hashing spreads structured keys (networks) over the table.
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (len - 1)
}

/// The words of the first slot in the probe window from `start` that
/// `is_key` accepts. Slots are never emptied, so an empty one ends the
/// search.
fn find<const N: usize>(
    slots: &[Slot<N>],
    start: usize,
    is_key: impl Fn(&[u64; N]) -> bool,
) -> Option<[u64; N]> {
    for i in 0..PROBE {
        let slot = slots.get((start + i) & (slots.len() - 1))?;
        let words = slot.read()?;
        if words[0] == 0 {
            return None;
        }
        if is_key(&words) {
            return Some(words);
        }
    }
    None
}

/// Writes `new(current)` into the key's slot in the probe window from
/// `start`: the slot holding the key, else the first empty one, else the
/// one with the smallest `stamp` (replaced). The sample is dropped when a
/// slot of the window is busy, or when the chosen slot changed meanwhile.
fn upsert<const N: usize>(
    slots: &[Slot<N>],
    start: usize,
    is_key: impl Fn(&[u64; N]) -> bool,
    new: impl FnOnce(&[u64; N]) -> [u64; N],
    stamp: impl Fn(&[u64; N]) -> u64,
) {
    enum Choice<const N: usize> {
        Key,
        Empty,
        Oldest([u64; N]),
    }
    let mask = slots.len() - 1;
    let mut chosen: Option<(usize, Choice<N>)> = None;
    for i in 0..PROBE {
        let at = (start + i) & mask;
        let Some(words) = slots.get(at).and_then(Slot::read) else {
            return;
        };
        if is_key(&words) {
            chosen = Some((at, Choice::Key));
            break;
        }
        if words[0] == 0 {
            // Nothing lives past an empty slot (see `find`).
            chosen = Some((at, Choice::Empty));
            break;
        }
        let older = match &chosen {
            Some((_, Choice::Oldest(best))) => stamp(&words) < stamp(best),
            _ => true,
        };
        if older {
            chosen = Some((at, Choice::Oldest(words)));
        }
    }
    let Some((at, choice)) = chosen else { return };
    if let Some(slot) = slots.get(at) {
        slot.write(|current| {
            let still = match &choice {
                Choice::Key => is_key(&current),
                Choice::Empty => current[0] == 0,
                Choice::Oldest(seen) => current == *seen,
            };
            still.then(|| new(&current))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unknown_until_a_connect_then_at_least_one_millisecond() {
        let db = NetDb::default();
        assert_eq!(db.lookup("origin.example"), None);
        db.note_connect(
            "origin.example",
            ip("192.0.2.10"),
            Duration::from_micros(80),
        );
        assert_eq!(
            db.lookup("origin.example"),
            Some(SrcRtt { rtt_ms: 1, hops: 0 }),
            "a loopback-fast handshake still says 1 ms, like Squid's placeholder"
        );
        assert_eq!(db.lookup("other.example"), None);
        assert_eq!(SrcRtt { rtt_ms: 1, hops: 0 }.option_data(), 0x0000_0001);
        assert_eq!(SrcRtt { rtt_ms: 7, hops: 2 }.option_data(), 0x0002_0007);
    }

    #[test]
    fn names_match_as_urls_spell_them() {
        let db = NetDb::default();
        db.note_connect("Origin.Example.", ip("192.0.2.10"), ms(12));
        for same in ["origin.example", "ORIGIN.EXAMPLE", "origin.example."] {
            assert_eq!(db.lookup(same).map(|r| r.rtt_ms), Some(12), "{same}");
        }
        db.note_connect("[2001:db8::1]", ip("2001:db8::1"), ms(30));
        assert_eq!(db.lookup("[2001:db8::1]").map(|r| r.rtt_ms), Some(30));
        assert_eq!(db.lookup("2001:db8::1").map(|r| r.rtt_ms), Some(30));
        assert_eq!(db.lookup(""), None);
        assert_eq!(db.lookup("[]"), None);
        // A name longer than the lower-casing buffer.
        let long = format!("{}.Example", "a".repeat(150));
        db.note_connect(&long, ip("198.51.100.1"), ms(3));
        assert_eq!(db.lookup(&long.to_lowercase()).map(|r| r.rtt_ms), Some(3));
        assert_eq!(db.lookup(&format!("{}.example", "a".repeat(149))), None);
    }

    #[test]
    fn a_network_is_the_slash_24_or_slash_64_and_its_names_share_it() {
        assert_eq!(
            Network::of(ip("192.0.2.10")),
            Network::of(ip("192.0.2.250"))
        );
        assert_ne!(Network::of(ip("192.0.2.10")), Network::of(ip("192.0.3.10")));
        assert_eq!(
            Network::of(ip("::ffff:192.0.2.9")),
            Network::of(ip("192.0.2.10"))
        );
        assert_eq!(
            Network::of(ip("2001:db8:1:2::1")),
            Network::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Network::of(ip("2001:db8:1:2::1")),
            Network::of(ip("2001:db8:1:3::1"))
        );

        let db = NetDb::default();
        db.note_connect("a.example", ip("192.0.2.10"), ms(10));
        // Another name: unknown until connected to, though its network is
        // known (Squid looks hosts up by name).
        assert_eq!(db.lookup("b.example"), None);
        db.note_connect("b.example", ip("192.0.2.20"), ms(20));
        // Both names now read the network's average of 10 and 20.
        assert_eq!(db.lookup("a.example").map(|r| r.rtt_ms), Some(15));
        assert_eq!(db.lookup("b.example").map(|r| r.rtt_ms), Some(15));
        // A name that moves to another network follows it.
        db.note_connect("a.example", ip("198.51.100.1"), ms(90));
        assert_eq!(db.lookup("a.example").map(|r| r.rtt_ms), Some(90));
        assert_eq!(db.lookup("b.example").map(|r| r.rtt_ms), Some(15));
    }

    #[test]
    fn rtt_averages_the_last_five_samples() {
        let db = NetDb::default();
        let h = "avg.example";
        let addr = ip("203.0.113.5");
        db.note_connect(h, addr, ms(10));
        db.note_connect(h, addr, ms(40));
        assert_eq!(db.lookup(h).map(|r| r.rtt_ms), Some(25), "(10 + 40) / 2");
        for _ in 0..3 {
            db.note_connect(h, addr, ms(25));
        }
        assert_eq!(db.lookup(h).map(|r| r.rtt_ms), Some(25));
        // From the sixth sample on the window stays at five: 25*4/5 + 100/5.
        db.note_connect(h, addr, ms(100));
        assert_eq!(db.lookup(h).map(|r| r.rtt_ms), Some(40));
        // Sub-millisecond remainders round up; huge ones stop below 0xFFFF.
        let db = NetDb::default();
        db.note_connect(h, addr, Duration::from_micros(2_001));
        assert_eq!(db.lookup(h).map(|r| r.rtt_ms), Some(3));
        db.note_connect("slow.example", ip("203.0.114.5"), Duration::from_secs(100));
        assert_eq!(db.lookup("slow.example").map(|r| r.rtt_ms), Some(0xFFFE));
    }

    #[test]
    fn a_full_table_replaces_the_oldest_entry_of_the_window() {
        // The smallest tables: 8 slots, one probe window.
        let db = NetDb::with_slots(1, 1);
        let t0 = db.epoch;
        for n in 0..8u64 {
            let host = format!("h{n}.example");
            let addr = IpAddr::from([10, 0, n as u8, 1]);
            db.note_connect_at(&host, addr, ms(n + 1), t0 + Duration::from_secs(n));
        }
        for n in 0..8u64 {
            assert_eq!(
                db.lookup(&format!("h{n}.example")).map(|r| r.rtt_ms),
                Some(n as u16 + 1)
            );
        }
        // h0 was updated longest ago: a ninth host takes its slots.
        db.note_connect_at(
            "h8.example",
            ip("10.0.8.1"),
            ms(9),
            t0 + Duration::from_secs(9),
        );
        assert_eq!(db.lookup("h8.example").map(|r| r.rtt_ms), Some(9));
        assert_eq!(db.lookup("h0.example"), None);
        for n in 1..8u64 {
            assert!(db.lookup(&format!("h{n}.example")).is_some(), "h{n}");
        }
    }

    #[test]
    fn a_busy_slot_drops_the_write_and_readers_never_see_it_half_done() {
        let slot: Slot<2> = Slot::default();
        assert!(slot.write(|_| Some([1, 2])));
        assert_eq!(slot.read(), Some([1, 2]));
        // A writer in the middle (odd sequence): readers give up, writers
        // do not wait.
        slot.seq.fetch_add(1, Ordering::AcqRel);
        assert_eq!(slot.read(), None);
        assert!(!slot.write(|_| Some([3, 4])));
        slot.seq.fetch_add(1, Ordering::AcqRel);
        assert_eq!(slot.read(), Some([1, 2]));
        // A change that declines leaves the words as they were.
        assert!(!slot.write(|_| None));
        assert_eq!(slot.read(), Some([1, 2]));
    }

    #[test]
    fn a_slot_read_alongside_a_writer_is_never_torn() {
        // The writer keeps all four words equal; a read that mixed two
        // writes would show different ones.
        let slot: Arc<Slot<4>> = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (slot, done) = (Arc::clone(&slot), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    i += 1;
                    slot.write(|_| Some([i; 4]));
                }
            })
        };
        let mut whole = 0u32;
        for _ in 0..2_000_000 {
            if let Some(w) = slot.read() {
                assert!(w.iter().all(|&x| x == w[0]), "torn read: {w:?}");
                if w[0] != 0 {
                    whole += 1;
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        assert!(whole > 0, "no read ever completed");
    }

    #[test]
    fn concurrent_writers_and_readers_see_whole_entries() {
        // Each writer keeps one host on its own network with a constant
        // RTT, so any answer that mixes two entries would show a wrong
        // value; readers run alongside.
        let db = Arc::new(NetDb::with_slots(64, 64));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4u8)
            .map(|w| {
                let db = Arc::clone(&db);
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let k = (i % 40) as u8;
                        let host = format!("w{w}-{k}.example");
                        let rtt = u64::from(w) * 100 + u64::from(k) + 1;
                        db.note_connect(&host, IpAddr::from([10, w, k, 1]), ms(rtt));
                    }
                })
            })
            .collect();
        let reader = {
            let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for w in 0..4u8 {
                        for k in 0..40u8 {
                            if let Some(r) = db.lookup(&format!("w{w}-{k}.example")) {
                                let want = u16::from(w) * 100 + u16::from(k) + 1;
                                assert_eq!(r.rtt_ms, want, "w{w}-{k}");
                                seen += 1;
                            }
                        }
                    }
                }
                seen
            })
        };
        for w in writers {
            w.join().expect("writer");
        }
        stop.store(true, Ordering::Relaxed);
        let seen = reader.join().expect("reader");
        assert!(seen > 0, "the reader never found an entry");
    }
}
