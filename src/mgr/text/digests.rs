//! The digest_stats page: Squid 5.7's "Cache Digest and ICP blob" (see
//! fixtures/squid-mgr/digest_stats-digest-sibling.txt): the counters and
//! 5-minute averages, then each peer's digest (its fetch history, state,
//! traffic and structure), the algorithm usage and cuttle's own digest.
//!
//! Squid 5.7 prints "no guess stats" even after digest hits (see
//! digest_stats-digest-sibling-cd-hits.txt), so there is no layout of its
//! guess stats to follow; once cuttle has looked a key up in a digest it
//! prints its own counters there: lookups, predicted hits and false hits
//! (the peer answered 504).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cuttle_protocol::digest::{self, Header};

use super::counter_pages::{averages, counters};
use super::FIVE_MIN;
use crate::mgr::{percent, Manager, Sources};
use crate::peers::peer_digest::wants_digest;
use crate::peers::table::Peer;

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Squid's percentage for a ratio whose whole may be zero: -1 then.
fn percent_or_minus_one(part: u64, whole: u64) -> i64 {
    if whole == 0 {
        -1
    } else {
        i64::try_from(percent(part, whole)).unwrap_or(i64::MAX)
    }
}

/// A peer's lookups, predicted hits and false hits, as one line.
fn guesses(lookups: u64, hits: u64, false_hits: u64) -> String {
    let ratio = if hits == 0 {
        0.0
    } else {
        false_hits as f64 * 100.0 / hits as f64
    };
    format!("\t lookups: {lookups} hits: {hits} false hits: {false_hits} ( {ratio:.2} %)\n")
}

/// Runs of equal bits in `mask` (Squid's "bit-seq" count).
fn bit_runs(mask: &[u8]) -> u64 {
    let mut runs = 0u64;
    let mut last: Option<bool> = None;
    for byte in mask {
        for i in 0..8 {
            let bit = byte & (1 << i) != 0;
            if last != Some(bit) {
                runs += 1;
                last = Some(bit);
            }
        }
    }
    runs
}

/// The structure lines of a digest, after its first line.
fn structure(o: &mut String, h: &Header, mask: &[u8]) {
    let bits = mask.len() as u64 * 8;
    let on: u64 = mask.iter().map(|b| u64::from(b.count_ones())).sum();
    let runs = bit_runs(mask);
    let _ = writeln!(
        o,
        "\t entries: count: {} capacity: {} util: {}%",
        h.count,
        h.capacity,
        percent(u64::from(h.count), u64::from(h.capacity))
    );
    let _ = writeln!(o, "\t deletion attempts: {}", h.del_count);
    let _ = writeln!(
        o,
        "\t bits: per entry: {} on: {on} capacity: {bits} util: {}%",
        h.bits_per_entry,
        percent(on, bits)
    );
    let avg = if runs == 0 {
        0.0
    } else {
        bits as f64 / runs as f64
    };
    let _ = writeln!(o, "\t bit-seq: count: {runs} avg.len: {avg:.2}");
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One peer's block under "Per-peer statistics:".
fn peer_block(o: &mut String, p: &Peer, now: SystemTime, instant: Instant) {
    let host = &p.config.host;
    let slot = &p.digest;
    let _ = writeln!(o, "\npeer digest from {host}");
    let (lookups, hits, false_hits) = (
        slot.lookups.load(Ordering::Relaxed),
        slot.hits.load(Ordering::Relaxed),
        slot.false_hits.load(Ordering::Relaxed),
    );
    if lookups == 0 {
        let _ = writeln!(o, "no guess stats for {host} available");
    } else {
        let _ = writeln!(o, "Digest guesses stats for {host}:");
        o.push_str(&guesses(lookups, hits, false_hits));
    }
    let e = slot.history();
    let next_check = slot.next_check().map(|at| {
        if at >= instant {
            now + (at - instant)
        } else {
            now - (instant - at)
        }
    });
    let init = epoch_secs(e.initialized);
    let now_secs = epoch_secs(now);
    let _ = writeln!(o, "\nevent\t timestamp\t secs from now\t secs from init");
    for (name, at) in [
        ("initialized", Some(e.initialized)),
        ("needed", e.needed),
        ("requested", e.requested),
        ("received", e.received),
        ("next_check", next_check),
    ] {
        if let Some(at) = at {
            let t = epoch_secs(at);
            let _ = writeln!(o, "{name}\t {t}\t {:+}\t {:+}", t - now_secs, t - init);
        }
    }
    let current = slot.current();
    let _ = writeln!(o, "peer digest state:");
    let _ = writeln!(
        o,
        "\tneeded: {:>3}, usable: {:>3}, requested: {:>3}",
        yes_no(slot.is_needed()),
        yes_no(current.is_some()),
        yes_no(e.in_flight)
    );
    let _ = writeln!(
        o,
        "\n\tlast retry delay: {} secs",
        e.last_retry_delay.as_secs()
    );
    let _ = writeln!(
        o,
        "\tlast request response time: {} secs",
        e.last_response_time.as_secs()
    );
    let result = if e.last_result.is_empty() {
        "none"
    } else {
        e.last_result.as_str()
    };
    let _ = writeln!(o, "\tlast request result: {result}");
    // cuttle does not count the bytes of its (small) digest requests.
    let _ = writeln!(o, "\npeer digest traffic:");
    let _ = writeln!(o, "\trequests sent: {}, volume: 0 KB", e.requests);
    let _ = writeln!(
        o,
        "\treplies recv:  {}, volume: {} KB",
        e.replies,
        e.reply_bytes / 1024
    );
    let _ = writeln!(o, "\npeer digest structure:");
    if let Some(received) = current {
        if let Ok(d) = digest::parse(&received.bytes) {
            let _ = writeln!(o, "{host} digest: size: {} bytes", d.header.mask_size);
            structure(o, &d.header, d.mask);
        }
    } else {
        let _ = writeln!(o, "no {host} digest available");
    }
    o.push('\n');
}

pub(super) fn digest_stats(m: &Manager, s: &Sources<'_>) -> String {
    let mut o = String::from("Counters:\n");
    o.push_str(&counters(m, s));
    o.push_str("\n5 Min Averages:\n");
    o.push_str(&averages(m, s, FIVE_MIN));

    let now = SystemTime::now();
    let instant = Instant::now();
    let digest_peers: Vec<&Peer> = s
        .peers
        .peers
        .iter()
        .filter(|p| wants_digest(&p.config))
        .collect();
    let (lookups, hits, false_hits) = digest_peers.iter().fold((0, 0, 0), |(l, h, f), p| {
        (
            l + p.digest.lookups.load(Ordering::Relaxed),
            h + p.digest.hits.load(Ordering::Relaxed),
            f + p.digest.false_hits.load(Ordering::Relaxed),
        )
    });
    o.push_str("\nPeer Digests:\n");
    if lookups == 0 {
        o.push_str("no guess stats for all peers available\n");
    } else {
        o.push_str("Digest guesses stats for all peers:\n");
        o.push_str(&guesses(lookups, hits, false_hits));
    }
    o.push_str("\nPer-peer statistics:\n");
    for p in &digest_peers {
        peer_block(&mut o, p, now, instant);
    }

    let t = m.sample(s).client;
    let total = t.cd_times_used + t.icp_times_used;
    o.push_str("\nAlgorithm usage:\n");
    for (name, n) in [
        ("Cache Digest:", t.cd_times_used),
        ("Icp:", t.icp_times_used),
        ("Total:", total),
    ] {
        let _ = writeln!(
            o,
            "{name:<13}{n:>8} ({:>3}%)",
            percent_or_minus_one(n, total)
        );
    }

    o.push_str("\nLocal Digest:\n");
    match s.store_digest {
        Some(local) if s.config.digest_generation.value => {
            let served = local.current(s.store, s.config, now);
            let h = &served.header;
            let _ = writeln!(o, "store digest: size: {} bytes", h.mask_size);
            structure(&mut o, h, &served.mask());
            let added = u64::from(h.count);
            let rejected = served.considered.saturating_sub(added);
            let rejected_pct = if served.considered == 0 {
                0.0
            } else {
                rejected as f64 * 100.0 / served.considered as f64
            };
            let _ = writeln!(
                o,
                "\t added: {added} rejected: {rejected} ( {rejected_pct:.2} %) del-ed: {}",
                h.del_count
            );
        }
        _ => o.push_str("store digest: disabled.\n"),
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_runs_count_sequences_of_equal_bits() {
        assert_eq!(bit_runs(&[]), 0);
        assert_eq!(bit_runs(&[0]), 1);
        assert_eq!(bit_runs(&[0xff, 0xff]), 1);
        // 0b0000_0001: bit 0 on, bits 1-7 off.
        assert_eq!(bit_runs(&[0x01]), 2);
        assert_eq!(bit_runs(&[0x01, 0x01]), 4);
    }

    #[test]
    fn algorithm_usage_is_minus_one_without_a_total() {
        assert_eq!(percent_or_minus_one(0, 0), -1);
        assert_eq!(percent_or_minus_one(1, 2), 50);
    }
}
