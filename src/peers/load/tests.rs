//! Unit tests of the load meter, the scale rule and the ICP carrier.

use super::*;

#[test]
fn service_time_is_a_moving_average_over_about_sixteen_fetches() {
    let mut m = LoadMeter::default();
    let now = Instant::now();
    assert_eq!(m.load_ms(0, now), None);
    m.note_service(Duration::from_millis(100), 1.0);
    assert_eq!(m.load_ms(0, now), Some(100.0));
    m.note_service(Duration::from_millis(260), 1.0);
    assert_eq!(m.load_ms(0, now), Some(110.0));
    // The ICP RTT and a fresh self-report count when larger.
    assert_eq!(m.load_ms(500, now), Some(500.0));
    m.note_reported(800, now);
    assert_eq!(m.load_ms(500, now), Some(800.0));
    assert_eq!(m.load_ms(0, now + REPORT_FRESH * 2), Some(110.0));
}

#[test]
fn a_scaled_down_peer_is_judged_by_the_fetches_it_still_gets() {
    let mut m = LoadMeter::default();
    let now = Instant::now();
    m.note_service(Duration::from_millis(250), 1.0);
    // At half its weight a fetch counts 1/8: the window still spans
    // about 16 fetches' worth of requests to the set.
    m.note_service(Duration::from_millis(90), 0.5);
    assert_eq!(m.load_ms(0, now), Some(230.0));
    // At the trickle one fast fetch is the whole window: its share comes
    // back on it, not after 16 of them (which, at 1/128 of its weight,
    // would take thousands of requests).
    m.note_service(Duration::from_millis(4), MIN_SCALE);
    assert_eq!(m.load_ms(0, now), Some(4.0));
    m.note_service(Duration::from_millis(250), f64::NAN);
    assert_eq!(m.load_ms(0, now), Some(4.0 + 246.0 / 16.0), "unknown: 1/16");
}

#[test]
fn a_slow_member_is_scaled_down_within_bounds_and_the_rest_keep_their_weight() {
    let fast = Some(20.0);
    assert_eq!(
        scales(&[(fast, true), (Some(30.0), true), (fast, true)]),
        [1.0, 1.0, 1.0],
        "within the tolerance: nothing changes"
    );
    assert_eq!(
        scales(&[(fast, true), (Some(60.0), true), (fast, true)]),
        [1.0, 0.25, 1.0],
        "(1.5 x 20 / 60) squared"
    );
    let ten_times = scales(&[(fast, true), (Some(200.0), true), (fast, true)])[1];
    assert!(
        (ten_times / 0.0225 - 1.0).abs() < 0.03,
        "(1.5 x 20 / 200) squared, rounded to 2^(1/16): {ten_times}"
    );
    assert_eq!(
        scales(&[(fast, true), (Some(5000.0), true), (fast, true)]),
        [1.0, MIN_SCALE, 1.0],
        "never below the floor"
    );
    assert_eq!(
        scales(&[(fast, true), (Some(60.0), false), (fast, true)]),
        [1.0, 1.0, 1.0],
        "a member without load-aware keeps its weight"
    );
    assert_eq!(
        scales(&[(Some(0.2), true), (Some(9.0), true), (None, true)]),
        [1.0, 1.0, 1.0],
        "loopback-fast loads sit under the floor; unknown loads keep 1"
    );
}

#[test]
fn scales_change_smoothly_with_the_load() {
    let mut last = 1.0;
    for ms in 20..=400 {
        let s = scales(&[
            (Some(20.0), true),
            (Some(f64::from(ms)), true),
            (Some(20.0), true),
        ])[1];
        // 1 ms more: the scale falls by at most the square of (ms + 1)/ms
        // and one rounding step.
        assert!(s <= last && last / s <= 1.12, "{ms} ms: {last} -> {s}");
        last = s;
    }
}

#[test]
fn the_table_follows_the_loads_and_is_plain_carp_when_they_agree() {
    let members = vec![
        ("p1".to_string(), 1, true),
        ("p2".to_string(), 1, true),
        ("p3".to_string(), 1, true),
    ];
    let carp = LoadAwareCarp::new(members.clone()).expect("load-aware members");
    let plain = Carp::new(&carp_members(&members));
    assert_eq!(*carp.table(|_| Some(15.0)), plain);
    let slow = carp.table(|i| Some(if i == 1 { 500.0 } else { 15.0 }));
    assert_ne!(*slow, plain);
    assert_eq!(carp.scales(), [1.0, MIN_SCALE, 1.0]);
    assert_eq!(carp.scale(1), MIN_SCALE);
    assert_eq!(*carp.table(|_| Some(15.0)), plain, "recovered");
    assert!(LoadAwareCarp::new(vec![("p".into(), 1, false)]).is_none());
}

#[test]
fn the_icp_carrier_stays_clear_of_src_rtt() {
    let (flags, data) = report::encode(42);
    assert_eq!(report::decode(flags, data), Some(42));
    assert_eq!(report::decode(0, 42), None, "no flag: Squid's pad");
    let src_rtt = cuttle_protocol::icp::Options::SRC_RTT;
    assert_eq!(report::decode(flags | src_rtt, 42), None);
    assert_eq!(
        flags & (src_rtt | cuttle_protocol::icp::Options::HIT_OBJ),
        0
    );
}

#[test]
fn a_reply_carries_the_load_only_when_the_query_asked() {
    use cuttle_protocol::icp::{Message, Opcode, Options};
    let url = b"http://example.test/x";
    let mut query = Message::query(7, url);
    let mut plain = Vec::new();
    query.encode(&mut plain).expect("query");
    query.options = report::ask();
    let mut asking = Vec::new();
    query.encode(&mut asking).expect("query");
    let reply = |opcode, options: u32| {
        let mut m = query.reply(opcode).expect("reply");
        m.options = Options(options);
        let mut out = Vec::new();
        m.encode(&mut out).expect("reply");
        out
    };
    let miss = reply(Opcode::Miss, 0);
    let mut stamped = miss.clone();
    report::stamp(&plain, &mut stamped);
    assert_eq!(stamped, miss, "Squid's query: Squid's bytes");
    report::stamp(&asking, &mut stamped);
    let flags = u32::from_be_bytes([stamped[8], stamped[9], stamped[10], stamped[11]]);
    assert_eq!(flags, report::FLAG);
    let denied = reply(Opcode::Denied, 0);
    let mut still = denied.clone();
    report::stamp(&asking, &mut still);
    assert_eq!(still, denied, "only answers carry it");
    let with_rtt = reply(Opcode::Hit, Options::SRC_RTT);
    let mut kept = with_rtt.clone();
    report::stamp(&asking, &mut kept);
    assert_eq!(kept, with_rtt, "SRC_RTT owns the option data");
}

#[test]
fn this_process_reports_its_own_moving_average() {
    // The process-wide meter: other tests may feed it too, so only what
    // one huge sample must do whatever came before (1/16 of it is still
    // over 65,535 ms) is checked.
    note_own_service(Duration::from_secs(20_000));
    assert_eq!(own_report_ms(), u16::MAX, "saturated to 16 bits");
}
