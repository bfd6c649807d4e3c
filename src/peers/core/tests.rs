//! The core on a virtual clock: every event carries its `now`, so timeouts
//! and dead-peer rules are crossed by adding durations, never by sleeping.

use std::time::{Duration, Instant};

use cuttle_protocol::icp::Opcode;

use super::decide::{decide, direct, to_ping, HashParents};
use super::round::{answer_type, QueryRound, Reply, Step};
use super::{Effect, PeerView};
use crate::config::PeerType;
use crate::peers::resolve::PeerAddrs;
use crate::peers::select::tests::{config, request};
use crate::peers::select::Selection;
use crate::peers::table::PeerTable;

/// The table of `text` at `now`, every peer TCP-up (probed).
fn table_up(text: &str, now: Instant) -> PeerTable {
    let t = PeerTable::new(&config(text), None, now, &PeerAddrs::literal_only());
    for id in 0..t.peers.len() {
        t.note_tcp_success_at(id, now);
    }
    t
}

/// The sources as access.log shows them (`TIMEOUT_` when the wait ran out).
fn codes(s: &Selection) -> Vec<String> {
    let prefix = if s.timed_out { "TIMEOUT_" } else { "" };
    s.sources
        .iter()
        .map(|src| format!("{prefix}{}/{}", src.code.as_str(), src.host))
        .collect()
}

fn reply(peer: usize, opcode: Opcode, rtt_ms: u64) -> Reply {
    Reply {
        peer,
        opcode,
        rtt: Duration::from_millis(rtt_ms),
        src_rtt: None,
    }
}

/// What one request does at `now`, as `Neighbours::select` drives it: the
/// peers to ask, a round fed `replies` (each `at` a time after `now`; a
/// round still waiting after them times out at its deadline), then the
/// decision; effects applied in order. Returns the codes and the effects.
fn request_at(
    t: &PeerTable,
    text: &str,
    now: Instant,
    replies: &[(Duration, Reply)],
) -> (Vec<String>, Vec<Effect>) {
    let c = config(text);
    let req = request("GET", "example.test", "http://example.test/x");
    let d = direct(&c, &req);
    let (targets, mut effects) = to_ping(t, &c, &req, 0, now);
    t.apply_all(&effects);
    let mut end = now;
    let mut round_replies = None;
    if !targets.is_empty() {
        let (mut round, queries, looked) =
            QueryRound::start(t, "example.test", &targets, true, now);
        t.apply_all(&looked);
        effects.extend(looked);
        for q in &queries {
            t.apply(&q.effect);
            effects.push(q.effect);
        }
        round.note_sent(queries.len());
        let mut step = round.step();
        for (after, r) in replies {
            let Step::Wait { deadline } = step else { break };
            let at = now + *after;
            if at >= deadline {
                break;
            }
            // The receive path notes every accepted reply in the table.
            t.note_reply(r.peer, r.opcode.value(), 2, at);
            end = at;
            step = round.on_reply(t, *r, at);
        }
        if let Step::Wait { deadline } = step {
            end = deadline;
            step = round.on_timeout(deadline);
        }
        let Step::Done(r) = step else {
            panic!("a round past its deadline is over")
        };
        round_replies = Some(r);
    }
    let decision = decide(
        t,
        &HashParents::new(t),
        &c,
        &req,
        d,
        round_replies.as_ref(),
        end,
    );
    t.apply_all(&decision.effects);
    effects.extend(decision.effects);
    (codes(&decision.selection), effects)
}

const SIBLING: &str =
    "cache_peer 127.0.0.2 sibling 3128 3130\nicp_query_timeout 200\ndead_peer_timeout 1 second\n";

/// The logic of tests/peer_faults.rs's silent-sibling test on a virtual
/// clock: an unanswered query times out; dead_peer_timeout later the peer
/// is dead (asked, not waited for, its HIT unused); the reply to that
/// query revives it and its next HIT is used.
#[test]
fn a_silent_sibling_is_marked_dead_and_its_next_reply_revives_it() {
    let t0 = Instant::now();
    let t = table_up(SIBLING, t0);
    let dead_after = t.timing.dead_peer_timeout;
    // 1. Unanswered: the full wait, TIMEOUT_.
    let (codes, effects) = request_at(&t, SIBLING, t0, &[]);
    assert_eq!(codes, vec!["TIMEOUT_HIER_DIRECT/example.test"]);
    assert!(effects.contains(&Effect::QuerySent {
        peer: 0,
        at: t0,
        multicast: false
    }));
    // 2. Past dead_peer_timeout: asked again (quiet that long) but dead, so
    // nothing is awaited: no TIMEOUT_, and a HIT arriving later is unused.
    let t1 = t0 + dead_after + Duration::from_millis(300);
    let (codes, effects) = request_at(&t, SIBLING, t1, &[]);
    assert_eq!(codes, vec!["HIER_DIRECT/example.test"]);
    assert!(
        effects.contains(&Effect::FoundDead { peer: 0 }),
        "{effects:?}"
    );
    assert!(effects.contains(&Effect::QuerySent {
        peer: 0,
        at: t1,
        multicast: false
    }));
    assert_eq!(t.get(0).map(|p| p.state().pings_sent), Some(2));
    // Its late HIT revives it.
    let late = t1 + Duration::from_millis(10);
    assert!(t.note_reply(0, Opcode::Hit.value(), 2, late), "it was dead");
    // 3. The next miss waits for it and uses its HIT.
    let t2 = late + Duration::from_millis(200);
    let (codes, _) = request_at(
        &t,
        SIBLING,
        t2,
        &[(Duration::from_millis(5), reply(0, Opcode::Hit, 5))],
    );
    assert_eq!(codes[0], "SIBLING_HIT/127.0.0.2");
}

#[test]
fn a_dead_peer_is_asked_only_once_per_dead_peer_timeout() {
    let t0 = Instant::now();
    let t = table_up(SIBLING, t0);
    let dead_after = t.timing.dead_peer_timeout;
    request_at(&t, SIBLING, t0, &[]);
    let t1 = t0 + dead_after + Duration::from_millis(1);
    request_at(&t, SIBLING, t1, &[]);
    // Dead and queried less than dead_peer_timeout ago: not asked.
    let (_, effects) = request_at(&t, SIBLING, t1 + dead_after, &[]);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::QuerySent { .. })),
        "{effects:?}"
    );
    // Quiet for longer than that: asked again.
    let (_, effects) = request_at(&t, SIBLING, t1 + dead_after + Duration::from_millis(1), &[]);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::QuerySent { .. })));
}

const MESH: &str = "cache_peer 127.0.0.2 sibling 3128 3130\n\
                    cache_peer 127.0.0.3 parent 3128 3130\n\
                    cache_peer 127.0.0.4 parent 3128 3130\n\
                    icp_query_timeout 500\n";

#[test]
fn the_first_hit_ends_the_round_and_wins() {
    let t0 = Instant::now();
    let t = table_up(MESH, t0);
    let (codes, _) = request_at(
        &t,
        MESH,
        t0,
        &[
            (Duration::from_millis(1), reply(2, Opcode::Miss, 1)),
            (Duration::from_millis(2), reply(0, Opcode::Hit, 2)),
            (Duration::from_millis(3), reply(1, Opcode::Hit, 3)),
        ],
    );
    assert_eq!(codes[0], "SIBLING_HIT/127.0.0.2");
}

#[test]
fn a_round_ends_when_every_expected_reply_arrived_and_denied_does_not_count() {
    let t0 = Instant::now();
    let t = table_up(MESH, t0);
    let c = config(MESH);
    let req = request("GET", "example.test", "http://example.test/x");
    let (targets, _) = to_ping(&t, &c, &req, 0, t0);
    let (mut round, queries, _) = QueryRound::start(&t, "example.test", &targets, true, t0);
    assert_eq!(queries.len(), 3);
    let Step::Wait { deadline } = round.step() else {
        panic!("three replies are expected")
    };
    assert_eq!(deadline, t0 + Duration::from_millis(500));
    let at = t0 + Duration::from_millis(4);
    assert!(matches!(
        round.on_reply(&t, reply(0, Opcode::Denied, 4), at),
        Step::Wait { .. }
    ));
    assert!(matches!(
        round.on_reply(&t, reply(2, Opcode::Miss, 4), at),
        Step::Wait { .. }
    ));
    // An early wake-up changes nothing.
    assert!(matches!(round.on_timeout(at), Step::Wait { .. }));
    assert!(matches!(
        round.on_reply(&t, reply(1, Opcode::Miss, 6), at),
        Step::Wait { .. }
    ));
    // The deadline: over, timed out, the first parent miss known.
    let Step::Done(r) = round.on_timeout(deadline) else {
        panic!("the deadline ends it")
    };
    assert!(r.timed_out);
    assert_eq!(r.first_parent_miss, Some(2));
    assert_eq!(r.replies.len(), 3);
}

#[test]
fn no_expected_reply_ends_the_round_at_once() {
    let t0 = Instant::now();
    // TCP-down peers are asked but not waited for.
    let t = PeerTable::new(&config(MESH), None, t0, &PeerAddrs::literal_only());
    let (mut round, queries, _) = QueryRound::start(
        &t,
        "example.test",
        &[(1, PeerType::Parent), (2, PeerType::Parent)],
        true,
        t0,
    );
    assert_eq!(queries.len(), 2);
    let Step::Done(r) = round.step() else {
        panic!("nothing to wait for")
    };
    assert!(!r.timed_out);
    assert_eq!(r.expected, 0);
}

#[test]
fn the_timeout_is_twice_the_mean_rtt_of_the_expected_parents() {
    let text = "cache_peer 127.0.0.2 sibling 3128 3130\n\
                cache_peer 127.0.0.3 parent 3128 3130\n";
    let t0 = Instant::now();
    let t = table_up(text, t0);
    for (id, ms) in [(0, 300), (1, 40)] {
        t.note_reply(id, Opcode::Miss.value(), 2, t0);
        t.note_rtt(id, Duration::from_millis(ms));
    }
    let (round, _, _) = QueryRound::start(
        &t,
        "example.test",
        &[(0, PeerType::Sibling), (1, PeerType::Parent)],
        true,
        t0,
    );
    let mut round = round;
    let Step::Wait { deadline } = round.step() else {
        panic!("two replies are expected")
    };
    assert_eq!(deadline - t0, Duration::from_millis(80));
}

/// A multicast responder's reply counts as its own type unless a group
/// asked in this round has `multicast-siblings` (squid-spec 1.9: Squid
/// matches the reply's sender against its neighbours; its type is the one
/// it has for this request). A sibling group that was not asked (here:
/// denied for the request) changes nothing.
#[test]
fn a_responder_answers_as_a_sibling_only_for_a_sibling_group_that_was_asked() {
    let text = "cache_peer 224.0.9.1 multicast 3128 3130 ttl=1 multicast-siblings name=sibgroup\n\
                cache_peer 224.0.9.2 multicast 3128 3130 ttl=1 name=pargroup\n\
                cache_peer 127.0.0.5 parent 3128 3130 multicast-responder name=resp\n\
                acl nowhere dstdomain nowhere.test\n\
                cache_peer_access sibgroup allow nowhere\n";
    let t0 = Instant::now();
    let t = table_up(text, t0);
    let c = config(text);
    let req = request("GET", "example.test", "http://example.test/x");
    let (targets, _) = to_ping(&t, &c, &req, 0, t0);
    assert_eq!(targets, vec![(1, PeerType::Multicast)]);
    assert_eq!(
        answer_type(&t, &targets, 2, "example.test"),
        PeerType::Parent
    );
    let asked_both = [(0, PeerType::Multicast), (1, PeerType::Multicast)];
    assert_eq!(
        answer_type(&t, &asked_both, 2, "example.test"),
        PeerType::Sibling
    );
    // The round and the decision agree: its HIT is a PARENT_HIT.
    let (mut round, _, _) = QueryRound::start(&t, "example.test", &targets, true, t0);
    let Step::Done(r) = round.on_reply(&t, reply(2, Opcode::Hit, 3), t0) else {
        panic!("a HIT ends the round")
    };
    let d = decide(
        &t,
        &HashParents::new(&t),
        &c,
        &req,
        direct(&c, &req),
        Some(&r),
        t0,
    );
    assert_eq!(codes(&d.selection)[0], "PARENT_HIT/127.0.0.5");
}

#[test]
fn round_robin_ties_go_to_the_later_peer_and_weights_divide() {
    let text = "cache_peer 127.0.0.7 parent 3128 0 round-robin\n\
                cache_peer 127.0.0.8 parent 3128 0 round-robin weight=2\n";
    let now = Instant::now();
    let t = table_up(text, now);
    let picks: Vec<String> = (0..6)
        .map(|_| request_at(&t, text, now, &[]).0[0].clone())
        .collect();
    // counts (0,0): tie -> 1; (0,1): 0/1 <= 1/2 -> 0; (1,1): 1/2 < 1 -> 1;
    // (1,2): 2/2 <= 1/1 -> 1 (tie, later); (1,3): 1 < 3/2 -> 0; (2,3): 3/2 <= 2 -> 1
    let want = [8, 7, 8, 8, 7, 8].map(|n| format!("ROUNDROBIN_PARENT/127.0.0.{n}"));
    assert_eq!(picks, want);
}

#[test]
fn round_robin_counters_reset_every_five_minutes_at_the_time_given() {
    let text = "cache_peer 127.0.0.7 parent 3128 0 round-robin\n\
                cache_peer 127.0.0.8 parent 3128 0 round-robin\n";
    let t0 = Instant::now();
    let t = table_up(text, t0);
    for _ in 0..3 {
        request_at(&t, text, t0, &[]);
    }
    assert_eq!(t.get(1).map(|p| p.state().rr_count), Some(2));
    let later = t0 + super::decide::RR_RESET_PERIOD;
    let (codes, effects) = request_at(&t, text, later, &[]);
    assert_eq!(effects[0], Effect::ResetRoundRobin { at: later });
    // After the reset the tie goes to the later peer again.
    assert_eq!(codes[0], "ROUNDROBIN_PARENT/127.0.0.8");
    assert_eq!(t.rr_reset_at(), later);
}

#[test]
fn deciding_changes_nothing_until_the_effects_are_applied() {
    let text = "cache_peer 127.0.0.7 parent 3128 0 round-robin\n\
                cache_peer 127.0.0.8 parent 3128 0 round-robin\n";
    let now = Instant::now();
    let t = table_up(text, now);
    let c = config(text);
    let req = request("GET", "example.test", "http://example.test/x");
    let hashes = HashParents::new(&t);
    let first = decide(&t, &hashes, &c, &req, direct(&c, &req), None, now);
    let again = decide(&t, &hashes, &c, &req, direct(&c, &req), None, now);
    assert_eq!(codes(&first.selection), codes(&again.selection));
    assert_eq!(
        first.effects,
        vec![Effect::RoundRobinStep { peer: 1, by: 1 }]
    );
    t.apply_all(&first.effects);
    let next = decide(&t, &hashes, &c, &req, direct(&c, &req), None, now);
    assert_eq!(codes(&next.selection)[0], "ROUNDROBIN_PARENT/127.0.0.7");
}

/// The core stays sans-IO: no runtime, socket, clock or resolver in its
/// code (the async side in `select`, `icp_client` and `htcp_client` does
/// those).
#[test]
fn the_core_reads_no_clock_socket_dns_or_runtime() {
    let files = [
        ("mod.rs", include_str!("mod.rs")),
        ("decide.rs", include_str!("decide.rs")),
        ("health.rs", include_str!("health.rs")),
        ("round.rs", include_str!("round.rs")),
    ];
    for (name, text) in files {
        for banned in [
            "tokio",
            "Instant::now",
            "SystemTime",
            "UdpSocket",
            "TcpStream",
            "lookup_host",
            "to_socket_addrs",
            "std::thread",
            "Mutex",
        ] {
            assert!(!text.contains(banned), "core/{name} uses {banned}");
        }
    }
}

/// The logic of tests/peer_faults.rs's down-parent test on a virtual
/// clock: a parent never probed is skipped (DIRECT); a probe is due at
/// most once a second; once a probe succeeds the next miss uses it.
#[test]
fn a_down_parent_is_skipped_until_a_probe_finds_it_up() {
    let text = "cache_peer 127.0.0.18 parent 3128 0 no-query\n";
    let t0 = Instant::now();
    let t = PeerTable::new(&config(text), None, t0, &PeerAddrs::literal_only());
    let (codes, _) = request_at(&t, text, t0, &[]);
    assert_eq!(codes, vec!["HIER_DIRECT/example.test"]);
    assert_eq!(t.probes_due(t0), vec![0]);
    // A probe starts (and fails): the next is due a second later.
    t.get(0).expect("peer").state().last_tcp_probe = Some(t0);
    assert!(t.probes_due(t0 + Duration::from_millis(999)).is_empty());
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(t.probes_due(t1), vec![0]);
    // That one connects: up, and used.
    t.note_tcp_success_at(0, t1);
    let (codes, _) = request_at(&t, text, t1, &[]);
    assert_eq!(codes[0], "FIRSTUP_PARENT/127.0.0.18");
}

// Cache Digests (squid-spec 3.2 a, 5.4).

use crate::peers::peer_digest::{self, Outcome};
use cuttle_protocol::digest::Digest;
use cuttle_protocol::key::{store_key, Method};
use std::sync::Arc;

/// A digest holding `urls`, as a peer serves it.
fn digest_bytes(urls: &[&str]) -> Arc<[u8]> {
    let mut d = Digest::new(100, 5);
    for url in urls {
        d.add(&store_key(Method::Get, url.as_bytes()));
    }
    let mut out = Vec::new();
    d.encode(&mut out);
    Arc::from(out)
}

fn give_digest(t: &PeerTable, id: usize, urls: &[&str], now: Instant) {
    let bytes = digest_bytes(urls);
    t.peers[id].digest.note(
        Outcome::Digest {
            bytes,
            expires_in: Some(Duration::from_secs(3600)),
        },
        now,
    );
}

/// Selection as `Neighbours::select` drives it, up to the query round:
/// the digest's choice, else the peers a round would ask (as
/// `PING:<id>`), else the decision without a round.
fn digest_step(t: &PeerTable, text: &str, url: &str, now: Instant) -> Vec<String> {
    let c = config(text);
    let req = request("GET", "example.test", url);
    let d = direct(&c, &req);
    let (hit, effects) = super::decide::digest_choice(t, &c, &req, 0, now);
    t.apply_all(&effects);
    if hit.is_some() {
        let decision =
            super::decide::decide_with_digest(t, &HashParents::new(t), &c, &req, d, hit, None, now);
        return codes(&decision.selection);
    }
    let (targets, _) = to_ping(t, &c, &req, 0, now);
    targets.iter().map(|(id, _)| format!("PING:{id}")).collect()
}

const DIGEST_SIBLINGS: &str = "cache_peer 127.0.0.2 sibling 3128 3130\n\
     cache_peer 127.0.0.3 sibling 3128 3130\n";

#[test]
fn a_digest_hit_picks_the_sibling_without_a_query() {
    let t0 = Instant::now();
    let t = table_up(DIGEST_SIBLINGS, t0);
    give_digest(&t, 1, &["http://example.test/held"], t0);
    assert_eq!(
        digest_step(&t, DIGEST_SIBLINGS, "http://example.test/held", t0),
        vec!["CD_SIBLING_HIT/127.0.0.3", "HIER_DIRECT/example.test"]
    );
    let slot = &t.peers[1].digest;
    assert_eq!(slot.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_digest_hit_on_a_parent_is_cd_parent_hit() {
    let text = "cache_peer 127.0.0.2 parent 3128 3130\n";
    let t0 = Instant::now();
    let t = table_up(text, t0);
    give_digest(&t, 0, &["http://example.test/held"], t0);
    assert_eq!(
        digest_step(&t, text, "http://example.test/held", t0),
        vec!["CD_PARENT_HIT/127.0.0.2", "HIER_DIRECT/example.test"]
    );
}

#[test]
fn a_digest_miss_still_asks_every_peer_as_squid_does() {
    let t0 = Instant::now();
    let t = table_up(DIGEST_SIBLINGS, t0);
    give_digest(&t, 0, &[], t0);
    give_digest(&t, 1, &["http://example.test/held"], t0);
    // squid-spec 3.2 [V]: a usable digest saying miss does not stop the
    // query (the peer may have stored it since its digest was built).
    assert_eq!(
        digest_step(&t, DIGEST_SIBLINGS, "http://example.test/other", t0),
        vec!["PING:0", "PING:1"]
    );
    let slot = &t.peers[1].digest;
    assert_eq!(slot.lookups.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(slot.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_digest_hit_on_a_peer_down_is_not_used() {
    let t0 = Instant::now();
    let t = PeerTable::new(
        &config(DIGEST_SIBLINGS),
        None,
        t0,
        &PeerAddrs::literal_only(),
    );
    t.note_tcp_success_at(0, t0);
    give_digest(&t, 1, &["http://example.test/held"], t0);
    // Peer 1 never answered its TCP probe: its digest is read, not used
    // (and, down and never asked, it is asked now: Squid's ping_due).
    let got = digest_step(&t, DIGEST_SIBLINGS, "http://example.test/held", t0);
    assert!(got.iter().all(|c| c.starts_with("PING:")), "{got:?}");
}

#[test]
fn no_digest_peers_are_never_looked_up_and_stay_queried() {
    let text = "cache_peer 127.0.0.2 sibling 3128 3130 no-digest\n";
    let t0 = Instant::now();
    let t = table_up(text, t0);
    give_digest(&t, 0, &["http://example.test/held"], t0);
    assert_eq!(
        digest_step(&t, text, "http://example.test/held", t0),
        vec!["PING:0"]
    );
}

#[test]
fn the_digest_schedule_follows_squid() {
    let t0 = Instant::now();
    let t = table_up(DIGEST_SIBLINGS, t0);
    let slot = &t.peers[0].digest;
    // Not wanted until a lookup asks for it; then due at once.
    assert!(!slot.due(t0));
    assert_eq!(slot.holds(&store_key(Method::Get, b"http://a/")), None);
    assert!(slot.due(t0));
    // A success: next at Expires + 5 minutes.
    give_digest(&t, 0, &[], t0);
    assert_eq!(
        slot.next_check(),
        Some(t0 + Duration::from_secs(3600 + 300))
    );
    assert!(!slot.due(t0 + Duration::from_secs(3899)));
    assert!(slot.due(t0 + Duration::from_secs(3900)));
    // Expires already past: never sooner than 5 minutes.
    slot.note(
        Outcome::Digest {
            bytes: digest_bytes(&[]),
            expires_in: Some(Duration::ZERO),
        },
        t0,
    );
    assert_eq!(slot.next_check(), Some(t0 + Duration::from_secs(300)));
    // Failures drop the digest and back off 5, 10, 20 minutes.
    for minutes in [5, 10, 20] {
        slot.note(Outcome::Failed("the peer answered 404".into()), t0);
        assert_eq!(
            slot.next_check(),
            Some(t0 + Duration::from_secs(minutes * 60))
        );
        assert!(slot.current().is_none());
    }
    // A success resets the back-off.
    give_digest(&t, 0, &[], t0);
    slot.note(Outcome::Failed("again".into()), t0);
    assert_eq!(slot.next_check(), Some(t0 + Duration::from_secs(300)));
}

#[test]
fn a_failed_fetch_drops_the_digest_and_its_hits() {
    let t0 = Instant::now();
    let t = table_up(DIGEST_SIBLINGS, t0);
    give_digest(&t, 1, &["http://example.test/held"], t0);
    assert_eq!(
        digest_step(&t, DIGEST_SIBLINGS, "http://example.test/held", t0),
        vec!["CD_SIBLING_HIT/127.0.0.3", "HIER_DIRECT/example.test"]
    );
    t.peers[1]
        .digest
        .note(Outcome::Failed("the peer answered 404".into()), t0);
    assert_eq!(
        digest_step(&t, DIGEST_SIBLINGS, "http://example.test/held", t0),
        vec!["PING:0", "PING:1"]
    );
}

#[test]
fn malformed_and_useless_digests_are_refused_naming_the_field() {
    let good = digest_bytes(&["http://example.test/held"]);
    assert!(peer_digest::validate(&good).is_ok());
    // A mask shorter than announced.
    let short = &good[..good.len() - 1];
    let why = peer_digest::validate(short).unwrap_err();
    assert!(why.contains("field mask"), "{why}");
    // Absurd capacity: mask_size disagrees.
    let mut absurd = good.to_vec();
    absurd[4..8].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
    let why = peer_digest::validate(&absurd).unwrap_err();
    assert!(why.contains("mask_size"), "{why}");
    // Over 65 % of the bits set.
    let mut full = good.to_vec();
    for b in &mut full[128..] {
        *b = 0xff;
    }
    let why = peer_digest::validate(&full).unwrap_err();
    assert!(why.contains("useless"), "{why}");
}

#[test]
fn a_slot_keeps_the_fetch_history_digest_stats_shows() {
    let t0 = Instant::now();
    let t = table_up(DIGEST_SIBLINGS, t0);
    let slot = &t.peers[0].digest;
    let e = slot.history();
    assert!(e.needed.is_none() && e.requested.is_none() && e.received.is_none());
    assert_eq!(slot.holds(&store_key(Method::Get, b"http://a/")), None);
    assert!(slot.history().needed.is_some());
    slot.note_request();
    let e = slot.history();
    assert!(e.in_flight && e.requested.is_some());
    assert_eq!(e.requests, 1);
    slot.note(Outcome::Failed("the peer answered 404".into()), t0);
    let e = slot.history();
    assert!(!e.in_flight && e.received.is_none());
    assert_eq!(e.last_result, "the peer answered 404");
    assert_eq!(e.last_retry_delay, Duration::from_secs(300));
    slot.note_request();
    let bytes = digest_bytes(&[]);
    let len = bytes.len() as u64;
    slot.note(
        Outcome::Digest {
            bytes,
            expires_in: None,
        },
        t0,
    );
    let e = slot.history();
    assert_eq!((e.requests, e.replies, e.reply_bytes), (2, 1, len));
    assert_eq!(e.last_result, "success");
    assert_eq!(e.last_retry_delay, Duration::ZERO);
    assert!(e.received.is_some());
}

/// Two siblings; the first one farther by RTT than the second.
const TWO_HOLDERS: &str = "cache_peer 127.0.0.2 sibling 3128 3130\n\
                           cache_peer 127.0.0.3 sibling 3128 3130\n\
                           icp_query_timeout 200\n\
                           dead_peer_timeout 1 second\n";

fn holders_at(far_ms: u64, near_ms: u64, t0: Instant) -> PeerTable {
    let t = table_up(TWO_HOLDERS, t0);
    t.note_rtt(0, Duration::from_millis(far_ms));
    t.note_rtt(1, Duration::from_millis(near_ms));
    t
}

#[test]
fn of_two_hits_the_nearer_by_table_rtt_wins_though_it_came_second() {
    let t0 = Instant::now();
    let t = holders_at(150, 10, t0);
    let (codes, _) = request_at(
        &t,
        TWO_HOLDERS,
        t0,
        &[
            (Duration::from_millis(2), reply(0, Opcode::Hit, 2)),
            (Duration::from_millis(30), reply(1, Opcode::Hit, 30)),
        ],
    );
    assert_eq!(codes[0], "SIBLING_HIT/127.0.0.3");
}

#[test]
fn equal_rtts_keep_the_first_hit_and_end_the_round_at_it() {
    let t0 = Instant::now();
    let t = holders_at(10, 10, t0);
    let c = config(TWO_HOLDERS);
    let req = request("GET", "example.test", "http://example.test/x");
    let (targets, _) = to_ping(&t, &c, &req, 0, t0);
    let (mut round, _, _) = QueryRound::start(&t, "example.test", &targets, true, t0);
    let Step::Done(r) = round.on_reply(&t, reply(0, Opcode::Hit, 2), t0) else {
        panic!("no nearer peer to wait for: the round ends at the first HIT")
    };
    assert_eq!(
        (r.hit, r.hits.clone(), r.timed_out),
        (Some(0), vec![0], false)
    );
}

#[test]
fn a_nearer_peer_that_misses_or_stays_silent_leaves_the_farther_hit() {
    let t0 = Instant::now();
    let t = holders_at(150, 10, t0);
    // Its MISS ends the wait at once.
    let (codes, _) = request_at(
        &t,
        TWO_HOLDERS,
        t0,
        &[
            (Duration::from_millis(2), reply(0, Opcode::Hit, 2)),
            (Duration::from_millis(5), reply(1, Opcode::Miss, 5)),
        ],
    );
    assert_eq!(codes[0], "SIBLING_HIT/127.0.0.2");
    // Silent: the round waits to its deadline, then uses the HIT it has
    // (not logged as TIMEOUT_: a copy was in hand).
    let t1 = t0 + Duration::from_millis(500);
    let (codes, _) = request_at(
        &t,
        TWO_HOLDERS,
        t1,
        &[(Duration::from_millis(2), reply(0, Opcode::Hit, 2))],
    );
    assert_eq!(codes[0], "SIBLING_HIT/127.0.0.2");
}

#[test]
fn a_dead_nearer_peer_is_not_waited_for() {
    // A third, far sibling keeps the round from ending by count alone.
    let text = format!("{TWO_HOLDERS}cache_peer 127.0.0.4 sibling 3128 3130\n");
    let t0 = Instant::now();
    let t = table_up(&text, t0);
    t.note_rtt(0, Duration::from_millis(150));
    t.note_rtt(1, Duration::from_millis(10));
    t.note_rtt(2, Duration::from_millis(200));
    // The near one left a query unanswered for over dead_peer_timeout.
    t.note_query_sent(1, t0);
    let t1 = t0 + Duration::from_secs(2);
    let c = config(&text);
    let req = request("GET", "example.test", "http://example.test/x");
    let (targets, _) = to_ping(&t, &c, &req, 0, t1);
    let (mut round, _, _) = QueryRound::start(&t, "example.test", &targets, true, t1);
    let Step::Done(r) = round.on_reply(&t, reply(0, Opcode::Hit, 2), t1) else {
        panic!("a dead peer is not waited for")
    };
    assert_eq!(r.hit, Some(0));
}

#[test]
fn a_finished_rounds_replies_move_out_once_and_its_lists_serve_the_next_round() {
    let text = "cache_peer 127.0.0.2 sibling 3128 3130\ncache_peer 127.0.0.3 sibling 3128 3130\n";
    let t0 = Instant::now();
    let t = table_up(text, t0);
    let targets = vec![(0, PeerType::Sibling), (1, PeerType::Sibling)];
    let (mut first, _, _) = QueryRound::start(&t, "example.test", &targets, true, t0);
    let Step::Done(spare) = first.on_reply(&t, reply(0, Opcode::Hit, 2), t0) else {
        panic!("a HIT ends the round")
    };
    assert_eq!((spare.hit, spare.replies.len()), (Some(0), 1));
    // The replies left the round: a call after its end gets none.
    let Step::Done(after) = first.on_timeout(t0 + Duration::from_secs(10)) else {
        panic!("the round is over")
    };
    assert!(after.hit.is_none() && after.replies.is_empty(), "{after:?}");
    // A round on the first one's lists starts with none of its replies.
    let (mut queries, mut effects) = (Vec::new(), Vec::new());
    let mut second = QueryRound::start_in(
        &t,
        "example.test",
        targets.clone(),
        spare,
        true,
        t0,
        &mut queries,
        &mut effects,
    );
    assert_eq!(queries.len(), 2);
    assert!(matches!(
        second.on_reply(&t, reply(1, Opcode::Miss, 2), t0),
        Step::Wait { .. }
    ));
    let Step::Done(r) = second.on_reply(&t, reply(0, Opcode::Miss, 3), t0) else {
        panic!("both peers answered")
    };
    let peers: Vec<usize> = r.replies.iter().map(|r| r.peer).collect();
    assert_eq!((peers, r.hit, r.hits.len()), (vec![1, 0], None, 0), "{r:?}");
}
