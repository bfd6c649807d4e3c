//! Unit tests of the ICP responder: decisions from datagrams (Squid's
//! captures and crafted ones), counters, hit-only mode and URL parsing.

use super::*;
use crate::config::{load_str, LoadOptions};
use std::time::Duration;

const URL: &[u8] = b"http://127.0.0.1:18080/obj/5k";

fn config(text: &str) -> Config {
    let loaded = load_str(text, "t.conf", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config
}

fn allow_all() -> Config {
    config("icp_access allow all\n")
}

fn query(reqnum: u32, url: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Message::query(reqnum, url).encode(&mut out).unwrap();
    out
}

fn from() -> IpAddr {
    "127.0.2.9".parse().unwrap()
}

const NOW: u64 = 1_800_000_000;

/// The store holds `URL` (GET key) with these times.
fn stored(times: Times) -> impl Fn(&Key) -> Option<Times> {
    let key = store_key(KeyMethod::Get, URL);
    move |k| (*k == key).then_some(times)
}

fn expiring_in(secs: i64) -> Times {
    Times {
        date: (NOW - 100) as u32,
        expires: (NOW as i64 + secs) as u32,
        last_modified: 0,
    }
}

fn decide_with(
    datagram: &[u8],
    config: &Config,
    hit_only: bool,
    peek: impl Fn(&Key) -> Option<Times>,
) -> Decision<'static> {
    decide_knowing(datagram, config, hit_only, None, peek)
}

fn decide_knowing(
    datagram: &[u8],
    config: &Config,
    hit_only: bool,
    netdb: Option<&NetDb>,
    peek: impl Fn(&Key) -> Option<Times>,
) -> Decision<'static> {
    let facts = Facts {
        config,
        now: NOW,
        hit_only,
        netdb,
    };
    match decide(datagram, from(), &facts, peek) {
        Decision::Reply(r) => Decision::Reply(Reply {
            url: Cow::Owned(r.url.into_owned()),
            ..r
        }),
        Decision::Drop(d) => Decision::Drop(d),
    }
}

fn opcode_of(d: &Decision<'_>) -> Option<Opcode> {
    match d {
        Decision::Reply(r) => Some(r.opcode),
        Decision::Drop(_) => None,
    }
}

#[test]
fn fresh_object_is_a_hit_and_the_reply_is_squids_bytes() {
    let wire = query(1, URL);
    let d = decide_with(&wire, &allow_all(), false, stored(expiring_in(3600)));
    let Decision::Reply(r) = d else {
        panic!("no reply")
    };
    assert_eq!((r.opcode, r.reqnum, &*r.url), (Opcode::Hit, 1, URL));
    let mut out = Vec::new();
    r.encode(&mut out).unwrap();
    // Byte for byte what Squid 5.7 sent for this query.
    let squid: &[u8] = include_bytes!("../../../fixtures/icp/v2-hit-squid57.bin");
    assert_eq!(out, squid);
}

#[test]
fn must_stay_fresh_for_thirty_more_seconds() {
    let c = allow_all();
    let wire = query(2, URL);
    let at = |secs| opcode_of(&decide_with(&wire, &c, false, stored(expiring_in(secs))));
    assert_eq!(at(31), Some(Opcode::Hit));
    assert_eq!(at(30), Some(Opcode::Miss));
    assert_eq!(at(5), Some(Opcode::Miss));
    assert_eq!(at(-10), Some(Opcode::Miss));
}

#[test]
fn icp_hit_stale_answers_hit_for_stale_objects() {
    let c = config("icp_access allow all\nicp_hit_stale on\n");
    let wire = query(3, URL);
    let d = decide_with(&wire, &c, false, stored(expiring_in(-3600)));
    assert_eq!(opcode_of(&d), Some(Opcode::Hit));
    // Still a miss when nothing is stored.
    let d = decide_with(&wire, &c, false, |_| None);
    assert_eq!(opcode_of(&d), Some(Opcode::Miss));
}

#[test]
fn absent_object_is_a_miss_or_nofetch_in_hit_only_mode() {
    let c = allow_all();
    let wire = query(4, URL);
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, false, |_| None)),
        Some(Opcode::Miss)
    );
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, true, |_| None)),
        Some(Opcode::MissNoFetch)
    );
    // Hit-only mode still answers hits.
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, true, stored(expiring_in(600)))),
        Some(Opcode::Hit)
    );
    let mut fixture = Vec::new();
    let Decision::Reply(r) = decide_with(&query(1, URL), &c, false, |_| None) else {
        panic!()
    };
    r.encode(&mut fixture).unwrap();
    let squid: &[u8] = include_bytes!("../../../fixtures/icp/v2-miss-squid57.bin");
    // Squid's MISS fixture is for /obj/6k: compare all but the URL.
    assert_eq!(fixture[..20], squid[..20]);
}

#[test]
fn icp_access_denies_with_denied_and_no_rules_deny_all() {
    let wire = query(7, URL);
    let d = decide_with(&wire, &config(""), false, stored(expiring_in(600)));
    let Decision::Reply(r) = d else { panic!() };
    assert_eq!(r.opcode, Opcode::Denied);
    let mut out = Vec::new();
    r.encode(&mut out).unwrap();
    let squid: &[u8] = include_bytes!("../../../fixtures/icp/v2-denied-squid57.bin");
    assert_eq!(out, squid);

    let c = config("acl sib src 127.0.2.0/24\nicp_access allow sib\nicp_access deny all\n");
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, false, |_| None)),
        Some(Opcode::Miss)
    );
    let c = config("acl sib src 10.0.0.0/8\nicp_access allow sib\nicp_access deny all\n");
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, false, |_| None)),
        Some(Opcode::Denied)
    );
    // ACLs on the URL work too (a GET of the queried URL).
    let c =
        config("acl secret urlpath_regex ^/obj/\nicp_access deny secret\nicp_access allow all\n");
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, false, |_| None)),
        Some(Opcode::Denied)
    );
}

#[test]
fn unusable_urls_get_err_like_squid() {
    let c = allow_all();
    let reply = |url: &[u8]| {
        let Decision::Reply(r) = decide_with(&query(0x6d, url), &c, false, |_| None) else {
            panic!("no reply for {url:?}")
        };
        let mut out = Vec::new();
        r.encode(&mut out).unwrap();
        (r, out)
    };
    let (r, out) = reply(b"not a url");
    assert_eq!((r.opcode, &*r.url), (Opcode::Err, &b"not%20a%20url"[..]));
    let squid: &[u8] = include_bytes!("../../../fixtures/icp/v2-err-garbage-url-squid57.bin");
    assert_eq!(out, squid);
    assert_eq!(r.log_tag(), ResultTag::UdpInvalid);

    let (r, out) = reply(b"/obj/19k");
    assert_eq!((r.opcode, &*r.url), (Opcode::Err, &b"/obj/19k"[..]));
    let squid: &[u8] = include_bytes!("../../../fixtures/icp/v2-err-relative-url-squid57.bin");
    assert_eq!(out[20..], squid[20..]);

    let (r, out) = reply(b"");
    assert_eq!((r.opcode, &*r.url), (Opcode::Err, &b""[..]));
    let squid: &[u8] = include_bytes!("../../../fixtures/icp/v2-err-empty-url-squid57.bin");
    assert_eq!(out[20..], squid[20..]);
    assert_eq!(out[..4], squid[..4]);

    for bad in [
        &b"http://"[..],
        b"http://a b/",
        b"http://h:99999/",
        b"http://h:x/",
        b"ht tp://h/",
        b"http://[zz]/",
    ] {
        assert_eq!(
            reply(bad).0.opcode,
            Opcode::Err,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        reply(b"http://h\x01/").0.url,
        Cow::Borrowed(&b"http://h%01/"[..])
    );
}

#[test]
fn a_query_without_a_usable_url_field_gets_err_with_an_empty_url() {
    let c = allow_all();
    let mut wire = query(0x1234_5678, b"http://a/");
    let last = wire.len() - 1;
    wire[last] = b'x'; // no NUL
    let Decision::Reply(r) = decide_with(&wire, &c, false, |_| None) else {
        panic!()
    };
    assert_eq!(
        (r.opcode, r.reqnum, &*r.url),
        (Opcode::Err, 0x1234_5678, &b""[..])
    );
    let mut inner = query(9, b"http://a/b");
    inner[24 + 8] = 0; // a NUL inside
    let d = decide_with(&inner, &c, false, |_| None);
    assert!(matches!(
        d,
        Decision::Reply(Reply {
            opcode: Opcode::Err,
            reqnum: 9,
            ..
        })
    ));
    // No room for the requester field.
    let mut short = query(5, b"")[..20].to_vec();
    short[3] = 20;
    let d = decide_with(&short, &c, false, |_| None);
    assert!(matches!(
        d,
        Decision::Reply(Reply {
            opcode: Opcode::Err,
            reqnum: 5,
            ..
        })
    ));
}

#[test]
fn malformed_datagrams_and_replies_are_dropped() {
    let c = allow_all();
    let mut wrong_len = query(1, URL);
    wrong_len[3] += 1;
    let mut bad_version = query(1, URL);
    bad_version[1] = 9;
    let mut bad_opcode = query(1, URL);
    bad_opcode[0] = 99;
    // Kept as values by the codec, still malformed here: an unknown
    // opcode with a payload of any shape, an unknown version whose URL is
    // broken too, historic opcodes (SEND = 5, NOTIFY = 12).
    let mut unknown_payload = query(1, b"");
    unknown_payload[0] = 200;
    unknown_payload.truncate(icp::HEADER_LEN + 1);
    unknown_payload[3] = icp::HEADER_LEN as u8 + 1;
    let mut bad_version_and_url = bad_version.clone();
    let last = bad_version_and_url.len() - 1;
    bad_version_and_url[last] = b'x';
    let mut send = query(1, URL);
    send[0] = 5;
    let mut notify = query(1, URL);
    notify[0] = 12;
    for kept in [&bad_opcode, &unknown_payload, &bad_version, &send, &notify] {
        assert!(icp::parse(kept).is_ok());
    }
    let mut oversized = query(1, &[b'a'; 8000]);
    oversized.extend_from_slice(&[0; icp::MAX_DATAGRAM]);
    oversized.truncate(icp::MAX_DATAGRAM + 1);
    for (what, d) in [
        ("oversized", &oversized[..]),
        ("too short", &[1u8, 2, 0][..]),
        ("length", &wrong_len),
        ("version", &bad_version),
        ("opcode", &bad_opcode),
        ("opcode, any payload", &unknown_payload),
        ("version and URL", &bad_version_and_url),
        ("SEND", &send),
        ("NOTIFY", &notify),
    ] {
        assert_eq!(
            decide_with(d, &c, false, |_| None),
            Decision::Drop(Dropped::Malformed),
            "{what}"
        );
    }
    // Replies (ours or anyone's) are never answered.
    for fixture in [
        &include_bytes!("../../../fixtures/icp/v2-hit-squid57.bin")[..],
        include_bytes!("../../../fixtures/icp/v2-miss-squid57.bin"),
        include_bytes!("../../../fixtures/icp/v2-denied-squid57.bin"),
        include_bytes!("../../../fixtures/icp/v2-decho-squid57.bin"),
        include_bytes!("../../../fixtures/icp/v2-err-empty-url-squid57.bin"),
    ] {
        assert_eq!(
            decide_with(fixture, &c, false, |_| None),
            Decision::Drop(Dropped::NotAQuery)
        );
    }
}

#[test]
fn squid_queries_are_answered_never_with_hit_obj() {
    let c = allow_all();
    for fixture in [
        &include_bytes!("../../../fixtures/icp/v2-query-squid57.bin")[..],
        include_bytes!("../../../fixtures/icp/v2-query-src-rtt-squid57.bin"),
        include_bytes!("../../../fixtures/icp/v3-query-crafted.bin"),
    ] {
        let mut hit_obj_asked = fixture.to_vec();
        hit_obj_asked[8] |= 0x80; // ICP_FLAG_HIT_OBJ
        for wire in [fixture.to_vec(), hit_obj_asked] {
            let Decision::Reply(r) = decide_with(&wire, &c, false, |_| Some(expiring_in(600)))
            else {
                panic!()
            };
            assert_eq!(r.opcode, Opcode::Hit);
            assert_eq!(
                r.reqnum,
                u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]])
            );
            let mut out = Vec::new();
            r.encode(&mut out).unwrap();
            assert_eq!(out[1], 2, "always version 2");
            assert_eq!(&out[8..20], &[0; 12], "no options, no RTT, no address");
            assert_eq!(&out[20..], &wire[24..], "the URL and its NUL, echoed");
        }
    }
    // The v3 query's answer is Squid's, byte for byte but the URL/reqnum.
    let squid: &[u8] =
        include_bytes!("../../../fixtures/icp/v2-hit-answer-to-v3-query-squid57.bin");
    assert_eq!(squid[..2], [2, 2]);
}

/// A NetDB that timed a connection to the fixtures' origin host.
fn knows_fixture_origin() -> NetDb {
    let db = NetDb::default();
    let addr: IpAddr = "127.0.0.1".parse().unwrap();
    db.note_connect("127.0.0.1", addr, Duration::from_micros(90));
    db
}

fn encoded(d: Decision<'_>) -> Vec<u8> {
    let Decision::Reply(r) = d else {
        panic!("no reply")
    };
    let mut out = Vec::new();
    r.encode(&mut out).unwrap();
    out
}

#[test]
fn src_rtt_answers_are_squids_bytes_when_the_host_is_known() {
    let c = allow_all();
    let db = knows_fixture_origin();
    let q: &[u8] = include_bytes!("../../../fixtures/icp/v2-query-src-rtt-squid57.bin");
    let url17 = b"http://127.0.0.1:28180/obj/17k";
    let fresh17 = {
        let key = store_key(KeyMethod::Get, url17);
        move |k: &Key| (*k == key).then_some(expiring_in(600))
    };
    // Squid's answers to its own SRC_RTT queries, byte for byte: the
    // flag and option data 1 (hops 0, rtt 1 ms), on a HIT and a MISS.
    let hit = encoded(decide_knowing(q, &c, false, Some(&db), fresh17));
    let squid_hit: &[u8] = include_bytes!("../../../fixtures/icp/v2-hit-src-rtt-squid57.bin");
    assert_eq!(hit, squid_hit);
    let mut q18 = Vec::new();
    let mut m = Message::query(2, b"http://127.0.0.1:28180/obj/18k");
    m.options = Options(Options::SRC_RTT);
    m.encode(&mut q18).unwrap();
    let miss = encoded(decide_knowing(&q18, &c, false, Some(&db), |_| None));
    let squid_miss: &[u8] = include_bytes!("../../../fixtures/icp/v2-miss-src-rtt-squid57.bin");
    assert_eq!(miss, squid_miss);
    // MISS_NOFETCH carries it too; a slower origin reports its RTT.
    db.note_connect(
        "127.0.0.1",
        "127.0.0.1".parse().unwrap(),
        Duration::from_millis(40),
    );
    let nofetch = encoded(decide_knowing(&q18, &c, true, Some(&db), |_| None));
    assert_eq!(nofetch[0], Opcode::MissNoFetch.value());
    assert_eq!(
        nofetch[8..16],
        [0x40, 0, 0, 0, 0, 0, 0, 21],
        "(0.09 + 40) / 2 ms, rounded up"
    );
}

#[test]
fn src_rtt_only_when_asked_in_v2_for_a_known_name_and_answered_hit_or_miss() {
    let db = knows_fixture_origin();
    let options = |d: Decision<'_>| {
        let out = encoded(d);
        (out[0], out[8..16].to_vec())
    };
    let none = vec![0u8; 8];
    let flagged = |reqnum: u32, url: &[u8]| {
        let mut out = Vec::new();
        let mut m = Message::query(reqnum, url);
        m.options = Options(Options::SRC_RTT);
        m.encode(&mut out).unwrap();
        out
    };
    let c = allow_all();
    let known = b"http://127.0.0.1:28180/x";
    // Not asked: nothing, though known.
    assert_eq!(
        options(decide_knowing(
            &query(1, known),
            &c,
            false,
            Some(&db),
            |_| None
        )),
        (Opcode::Miss.value(), none.clone())
    );
    // Asked, known (the host's case does not matter).
    let with = vec![0x40, 0, 0, 0, 0, 0, 0, 1];
    assert_eq!(
        options(decide_knowing(
            &flagged(2, known),
            &c,
            false,
            Some(&db),
            |_| None
        )),
        (Opcode::Miss.value(), with)
    );
    // Asked, unknown: another host, or the same address by another
    // name (Squid 5.7 answers that one without the flag too).
    for url in [
        &b"http://127.0.0.2:28180/x"[..],
        b"http://localhost:28180/x",
    ] {
        assert_eq!(
            options(decide_knowing(
                &flagged(3, url),
                &c,
                false,
                Some(&db),
                |_| None
            )),
            (Opcode::Miss.value(), none.clone()),
            "{}",
            String::from_utf8_lossy(url)
        );
    }
    // Asked in a version-3 query: never (squid-spec 1.10).
    let mut v3 = flagged(4, known);
    v3[1] = 3;
    assert_eq!(
        options(decide_knowing(&v3, &c, false, Some(&db), |_| None)),
        (Opcode::Miss.value(), none.clone())
    );
    // DENIED and ERR: never (Squid 5.7, seen).
    assert_eq!(
        options(decide_knowing(
            &flagged(5, known),
            &config(""),
            false,
            Some(&db),
            |_| None
        )),
        (Opcode::Denied.value(), none.clone())
    );
    assert_eq!(
        options(decide_knowing(
            &flagged(6, b"not a url"),
            &c,
            false,
            Some(&db),
            |_| None
        )),
        (Opcode::Err.value(), none)
    );
}

#[test]
fn url_parts_follow_squid_request_targets() {
    let p = UrlParts::split("http://Example.COM:8080/a/b?c").unwrap();
    assert_eq!(
        (p.scheme, p.host, p.port, p.path),
        ("http", "Example.COM", 8080, "/a/b?c")
    );
    let p = UrlParts::split("https://h").unwrap();
    assert_eq!((p.port, p.path), (443, "/"));
    let p = UrlParts::split("http://u:pw@h:81/x").unwrap();
    assert_eq!((p.host, p.port), ("h", 81));
    let p = UrlParts::split("http://[::1]:3128/x").unwrap();
    assert_eq!((p.host, p.port), ("[::1]", 3128));
    let p = UrlParts::split("http://h?q").unwrap();
    assert_eq!((p.host, p.path), ("h", "?q"));
    for bad in [
        "/x",
        "h/x",
        "://h/",
        "1http://h/",
        "http://:80/",
        "http://h:0/",
        "http://h:+80/",
    ] {
        assert!(UrlParts::split(bad).is_none(), "{bad}");
    }
}

#[test]
fn escaping_matches_squids_rfc1738() {
    assert_eq!(escape_url(b"not a url"), b"not%20a%20url");
    assert_eq!(escape_url(b"a%b\"c\x7f\xc3"), b"a%25b%22c%7F%C3");
    assert_eq!(escape_url(b"http://h/a-b_c.d"), b"http://h/a-b_c.d");
}

#[test]
fn offline_mode_answers_misses_nofetch_and_hits_hit() {
    let c = config("icp_access allow all\noffline_mode on\n");
    let wire = query(5, URL);
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, false, |_| None)),
        Some(Opcode::MissNoFetch)
    );
    // A stale object is not a HIT (icp_hit_stale off): MISS_NOFETCH.
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, false, stored(expiring_in(10)))),
        Some(Opcode::MissNoFetch)
    );
    assert_eq!(
        opcode_of(&decide_with(&wire, &c, false, stored(expiring_in(600)))),
        Some(Opcode::Hit)
    );
}

/// Failures in a row from a clean start until the ratio trips.
fn failures_to_trip(ratio: &mut FailureRatio) -> usize {
    (1..=1000)
        .find(|_| ratio.note(true, false).is_some())
        .expect("the ratio never tripped")
}

#[test]
fn failure_ratio_trips_after_seventy_failures_in_a_row() {
    let mut r = FailureRatio::default();
    // The first failure: bad 1 against good 100.
    assert_eq!(r.note(true, false), None);
    assert!((r.value() - 0.01).abs() < 1e-12, "{}", r.value());
    let mut r = FailureRatio::default();
    assert_eq!(failures_to_trip(&mut r), 70);
    // After tripping the ratio restarts at 0.8: 11 more failures trip it.
    assert!((r.value() - 0.8).abs() < 1e-12);
    assert_eq!(failures_to_trip(&mut r), 11);
}

#[test]
fn failure_ratio_trips_at_exactly_one() {
    // Ratio 99/101 is good 50.5, bad 49.5: one more failure makes
    // them equal, ratio exactly 1.0, which trips.
    let mut r = FailureRatio {
        ratio: 99.0 / 101.0,
    };
    assert_eq!(r.note(true, false), Some(1.0));
    // Just below: no trip.
    let mut r = FailureRatio {
        ratio: 98.9 / 101.1,
    };
    assert_eq!(r.note(true, false), None);
    assert!(r.value() < FailureRatio::LIMIT);
}

#[test]
fn successes_decay_the_failure_ratio() {
    let mut r = FailureRatio::default();
    for _ in 0..60 {
        assert_eq!(r.note(true, false), None);
    }
    let high = r.value();
    assert_eq!(r.note(false, false), None);
    assert!(r.value() < high);
    // Enough successes bring it back near zero ...
    for _ in 0..500 {
        r.note(false, false);
    }
    assert!(r.value() < 0.01, "{}", r.value());
    // ... so it takes nearly as many failures again to trip.
    assert!(failures_to_trip(&mut r) >= 69);
    // One failure per two successes settles near 0.5: never trips.
    let mut r = FailureRatio::default();
    for _ in 0..5000 {
        assert_eq!(r.note(true, false), None);
        assert_eq!(r.note(false, false), None);
        assert_eq!(r.note(false, false), None);
    }
    assert!((0.4..0.6).contains(&r.value()), "{}", r.value());
    // As many failures as successes does, eventually (ratio 1).
    let tripped = (0..5000).any(|_| {
        let failed = r.note(true, false).is_some();
        r.note(false, false);
        failed
    });
    assert!(tripped);
}

#[test]
fn failure_ratio_does_not_trip_while_hit_only() {
    let mut r = FailureRatio::default();
    for _ in 0..200 {
        assert_eq!(r.note(true, true), None);
    }
    assert!(r.value() > 1.0);
    // Hit-only mode over: the next failure trips at once.
    assert!(r.note(true, false).is_some());
}

#[test]
fn hit_only_starts_for_five_minutes_when_the_ratio_trips() {
    let h = HitOnly::default();
    for n in 1..70 {
        assert!(!h.note_forwarding(true, NOW), "tripped after {n}");
    }
    assert!(!h.is_on(NOW));
    assert!(h.note_forwarding(true, NOW));
    assert!(h.is_on(NOW) && h.is_on(NOW + HIT_ONLY_SECS - 1));
    assert!(!h.is_on(NOW + HIT_ONLY_SECS));
    // While on, more failures do not extend it.
    assert!(!h.note_forwarding(true, NOW + 10));
    assert!(!h.is_on(NOW + HIT_ONLY_SECS));
}

#[test]
fn hit_only_expires() {
    let h = HitOnly::default();
    assert!(!h.is_on(NOW));
    h.set_until(NOW + 5);
    assert!(h.is_on(NOW) && h.is_on(NOW + 4) && !h.is_on(NOW + 5));
    h.set_until(0);
    assert!(!h.is_on(NOW));
}

#[test]
fn listen_addr_follows_icp_port_and_udp_incoming_address() {
    assert_eq!(IcpServer::listen_addr(&config("")), None);
    assert_eq!(
        IcpServer::listen_addr(&config("icp_port 3130\n")),
        Some("0.0.0.0:3130".parse().unwrap())
    );
    assert_eq!(
        IcpServer::listen_addr(&config("icp_port 3130\nudp_incoming_address 127.0.2.2\n")),
        Some("127.0.2.2:3130".parse().unwrap())
    );
}

#[test]
fn replies_go_to_the_querier_and_unknown_opcodes_stay_here() {
    let q = query(1, URL);
    assert!(!Icp::is_reply(&q));
    for reply in [2u8, 3, 4, 10, 11, 21, 22, 23] {
        let mut r = q.clone();
        r[0] = reply;
        assert!(Icp::is_reply(&r), "{reply}");
    }
    for unknown in [0u8, 5, 99, 255] {
        let mut u = q.clone();
        u[0] = unknown;
        assert!(!Icp::is_reply(&u), "{unknown}");
    }
    assert!(!Icp::is_reply(&[]));
}
