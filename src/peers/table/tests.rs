//! Unit tests of the peer table: RTT averages, dynamic timeouts, dead and
//! revived peers, TCP credit, the DENIED ratio, multicast group sizes.

use super::*;
use crate::config::load_str_sandboxed;
use crate::peers::resolve::PeerAddrs;

fn table(text: &str) -> PeerTable {
    let loaded = load_str_sandboxed(text, "test");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    PeerTable::new(
        &loaded.config,
        None,
        Instant::now(),
        &PeerAddrs::literal_only(),
    )
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
    let again = PeerTable::new(
        &loaded.config,
        Some(&t),
        Instant::now(),
        &PeerAddrs::literal_only(),
    );
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
    let again = PeerTable::new(
        &loaded.config,
        Some(&t),
        Instant::now(),
        &PeerAddrs::literal_only(),
    );
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
