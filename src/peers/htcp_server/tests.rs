//! Unit tests of the HTCP responder: decisions for TST, CLR, NOP, MON and
//! SET from Squid's captures and crafted datagrams, CLR relaying and counters.

use super::*;
use crate::caching::VaryMarker;
use crate::config::{load_str, LoadOptions};
use http::HeaderName;
use std::cell::RefCell;
use std::collections::HashMap;

const NOW: u64 = 1_800_000_000;

fn config(text: &str) -> Config {
    let loaded = load_str(text, "t.conf", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config
}

fn allow_all() -> Config {
    config("htcp_access allow all\nhtcp_clr_access allow all\n")
}

/// A cache of index entries and known markers; purges are recorded.
#[derive(Default)]
struct Fake {
    entries: RefCell<HashMap<Key, Summary>>,
    markers: HashMap<Key, VaryMarker>,
    purged: RefCell<Vec<Key>>,
}

impl Fake {
    fn with(url: &str, times: Times) -> Fake {
        let f = Fake::default();
        f.put(KeyMethod::Get, url, times);
        f
    }

    fn put(&self, method: KeyMethod, url: &str, times: Times) {
        self.entries.borrow_mut().insert(
            store_key(method, url.as_bytes()),
            Summary {
                times,
                generation: 1,
            },
        );
    }

    fn holds(&self, method: KeyMethod, url: &str) -> bool {
        self.entries
            .borrow()
            .contains_key(&store_key(method, url.as_bytes()))
    }
}

impl Cache for Fake {
    fn peek(&self, key: &Key) -> Option<Summary> {
        self.entries.borrow().get(key).copied()
    }
    fn marker(&self, key: &Key, generation: u32) -> Option<VaryMarker> {
        (generation == 1).then(|| self.markers.get(key).cloned())?
    }
    fn purge(&self, key: &Key) -> bool {
        self.purged.borrow_mut().push(*key);
        self.entries.borrow_mut().remove(key).is_some()
    }
}

fn expiring_in(secs: i64) -> Times {
    Times {
        date: (NOW - 100) as u32,
        expires: (NOW as i64 + secs) as u32,
        last_modified: (NOW - 86_400) as u32,
    }
}

fn from() -> IpAddr {
    "127.0.10.9".parse().unwrap()
}

fn run(datagram: &[u8], config: &Config, cache: &Fake) -> Decision {
    let facts = Facts { config, now: NOW };
    decide(datagram, from(), &facts, cache)
}

fn reply(d: &Decision) -> Vec<u8> {
    let mut out = Vec::new();
    d.encode_reply(&mut out).unwrap();
    out
}

fn tst(url: &str, req_hdrs: &str) -> Vec<u8> {
    let mut spec = Specifier::new("GET", url);
    spec.req_hdrs = req_hdrs.into();
    let mut out = Vec::new();
    Message::tst_request(42, spec).encode(&mut out).unwrap();
    out
}

const SQUID_TST: &[u8] = include_bytes!("../../../fixtures/htcp/tst-request-squid57.bin");
const SQUID_TST_URL: &str = "http://127.0.0.1:18080/obj/5k";

#[test]
fn squids_tst_for_a_fresh_object_is_found_with_age_and_dates() {
    let cache = Fake::with(SQUID_TST_URL, expiring_in(3600));
    let d = run(SQUID_TST, &allow_all(), &cache);
    assert_eq!(d.log, Some(ResultTag::UdpHit));
    assert_eq!(d.url, SQUID_TST_URL);
    let wire = reply(&d);
    let m = htcp::parse(&wire).unwrap();
    assert_eq!((m.minor, m.trans_id, m.response, m.f1), (1, 1, 0, false));
    let Op::TstResponse(TstReply::Detail(detail)) = m.op else {
        panic!("{m:?}")
    };
    assert_eq!(detail.resp_hdrs.as_bytes(), b"Age: 100\r\n");
    assert_eq!(
        detail.entity_hdrs.to_str().unwrap(),
        "Expires: Fri, 15 Jan 2027 09:00:00 GMT\r\nLast-Modified: Thu, 14 Jan 2027 08:00:00 GMT\r\n"
    );
    assert!(detail.cache_hdrs.is_empty());
    // The shape of Squid's own hit reply (no Cache-to-Origin: no NetDB).
    let squid: &[u8] =
        include_bytes!("../../../fixtures/htcp/tst-response-hit-no-cache-to-origin-squid57.bin");
    let sm = htcp::parse(squid).unwrap();
    assert_eq!((sm.minor, sm.response, sm.f1), (m.minor, m.response, m.f1));
    // Squid's said `Age: 8`, ours `Age: 100`: otherwise the same lengths.
    assert_eq!(squid.len() + 2, wire.len(), "same fields as Squid's");
}

#[test]
fn a_miss_is_squids_bytes_three_empty_fields() {
    let d = run(SQUID_TST, &allow_all(), &Fake::default());
    assert_eq!(d.log, Some(ResultTag::UdpMiss));
    let squid: &[u8] = include_bytes!("../../../fixtures/htcp/tst-response-miss-squid57.bin");
    assert_eq!(reply(&d), squid);
    // Stale within the 10 s margin: a miss too.
    let cache = Fake::with(SQUID_TST_URL, expiring_in(10));
    assert_eq!(
        run(SQUID_TST, &allow_all(), &cache).log,
        Some(ResultTag::UdpMiss)
    );
    let cache = Fake::with(SQUID_TST_URL, expiring_in(11));
    assert_eq!(
        run(SQUID_TST, &allow_all(), &cache).log,
        Some(ResultTag::UdpHit)
    );
}

#[test]
fn old_layout_requests_get_old_layout_replies_with_their_trans_id() {
    let url = "http://127.0.0.1:28180/obj/13k";
    let mut req =
        include_bytes!("../../../fixtures/htcp/tst-request-oldsquid-squid57.bin").to_vec();
    // Squid's oldsquid query has trans-id 0; give it one to echo.
    req[8..12].copy_from_slice(&7u32.to_be_bytes());
    let d = run(&req, &allow_all(), &Fake::default());
    let wire = reply(&d);
    let squid: &[u8] =
        include_bytes!("../../../fixtures/htcp/tst-response-miss-oldsquid-squid57.bin");
    assert_eq!(wire[..8], squid[..8], "MINOR 0, opcode in the low nibble");
    assert_eq!(wire[8..12], 7u32.to_be_bytes());
    assert_eq!(wire[12..], squid[12..]);
    let cache = Fake::with(url, expiring_in(3600));
    let wire = reply(&run(&req, &allow_all(), &cache));
    let squid: &[u8] =
        include_bytes!("../../../fixtures/htcp/tst-response-hit-oldsquid-squid57.bin");
    assert_eq!((wire[3], wire[6], wire[7]), (squid[3], squid[6], squid[7]));
}

#[test]
fn tst_without_rd_is_ignored_and_not_logged() {
    let mut req = SQUID_TST.to_vec();
    req[7] &= !0x02; // RD off
    let d = run(
        &req,
        &allow_all(),
        &Fake::with(SQUID_TST_URL, expiring_in(600)),
    );
    assert_eq!(
        (d.dropped, d.log, d.answer),
        (Some(Dropped::NoReplyWanted), None, None)
    );
}

#[test]
fn htcp_access_denies_silently_but_logs_and_no_rules_deny() {
    let cache = Fake::with(SQUID_TST_URL, expiring_in(600));
    for text in [
        "",
        "acl far src 10.0.0.0/8\nhtcp_access allow far\nhtcp_access deny all\n",
    ] {
        let d = run(SQUID_TST, &config(text), &cache);
        assert_eq!(
            (d.log, d.answer.clone()),
            (Some(ResultTag::UdpDenied), None),
            "{text}"
        );
        assert!(reply(&d).is_empty());
    }
    let near = config("acl near src 127.0.10.0/24\nhtcp_access allow near\n");
    assert_eq!(run(SQUID_TST, &near, &cache).log, Some(ResultTag::UdpHit));
    // htcp_access is for TST: it does not let CLRs through.
    let clr: &[u8] = include_bytes!("../../../fixtures/htcp/clr-request-get-crafted.bin");
    assert_eq!(run(clr, &near, &cache).log, Some(ResultTag::UdpDenied));
}

#[test]
fn head_tst_is_answered_from_the_get_object_and_other_methods_miss() {
    let cache = Fake::with("http://a.test/x", expiring_in(600));
    let mut out = Vec::new();
    Message::tst_request(3, Specifier::new("HEAD", "http://a.test/x"))
        .encode(&mut out)
        .unwrap();
    assert_eq!(run(&out, &allow_all(), &cache).log, Some(ResultTag::UdpHit));
    out.clear();
    Message::tst_request(3, Specifier::new("POST", "http://a.test/x"))
        .encode(&mut out)
        .unwrap();
    assert_eq!(
        run(&out, &allow_all(), &cache).log,
        Some(ResultTag::UdpMiss)
    );
}

#[test]
fn request_headers_tighten_freshness() {
    let cache = Fake::with("http://a.test/x", expiring_in(600));
    let at = |hdrs: &str| run(&tst("http://a.test/x", hdrs), &allow_all(), &cache).log;
    assert_eq!(at(""), Some(ResultTag::UdpHit));
    // Age 100 (+ 10 s margin) against max-age.
    assert_eq!(
        at("Cache-Control: max-age=110\r\n"),
        Some(ResultTag::UdpHit)
    );
    assert_eq!(
        at("Cache-Control: max-age=109\r\n"),
        Some(ResultTag::UdpMiss)
    );
    assert_eq!(
        at("Cache-Control: min-fresh=589\r\n"),
        Some(ResultTag::UdpHit)
    );
    assert_eq!(
        at("Cache-Control: min-fresh=590\r\n"),
        Some(ResultTag::UdpMiss)
    );
    assert_eq!(at("Cache-Control: no-cache\r\n"), Some(ResultTag::UdpMiss));
    // Headers that do not parse: a miss, as Squid.
    assert_eq!(at("no colon here\r\n"), Some(ResultTag::UdpMiss));
}

#[test]
fn vary_picks_the_variant_of_the_request_headers() {
    let url = "http://a.test/v";
    let marker = VaryMarker {
        fields: vec![HeaderName::from_static("accept-language")],
        epoch: 5,
    };
    let mut cache = Fake::with(url, expiring_in(600));
    cache
        .markers
        .insert(store_key(KeyMethod::Get, url.as_bytes()), marker.clone());
    let mut en = HeaderMap::new();
    en.insert("accept-language", "en".parse().unwrap());
    cache.put(
        KeyMethod::Get,
        &marker.variant_url(url, &en),
        expiring_in(600),
    );
    let at = |hdrs: &str| run(&tst(url, hdrs), &allow_all(), &cache).log;
    assert_eq!(at("Accept-Language: en\r\n"), Some(ResultTag::UdpHit));
    assert_eq!(at("Accept-Language: de\r\n"), Some(ResultTag::UdpMiss));
    assert_eq!(
        at("User-Agent: x\r\n"),
        Some(ResultTag::UdpMiss),
        "no language: another variant"
    );
    // No request headers at all (Squid's TST): the marker answers.
    assert_eq!(at(""), Some(ResultTag::UdpHit));
}

#[test]
fn unusable_specifiers_are_logged_invalid_and_not_answered() {
    for url in ["", "/obj/1", "not a url", "http://"] {
        let d = run(&tst(url, ""), &allow_all(), &Fake::default());
        assert_eq!(
            (d.log, d.answer.clone()),
            (Some(ResultTag::UdpInvalid), None),
            "{url:?}"
        );
    }
}

#[test]
fn malformed_datagrams_and_responses_are_dropped() {
    let c = allow_all();
    let cache = Fake::default();
    let mut wrong_len = SQUID_TST.to_vec();
    wrong_len[1] += 1;
    let mut major = SQUID_TST.to_vec();
    major[2] = 1;
    // Opcodes RFC 2756 does not define parse (the codec keeps the value)
    // but are malformed to the responder, requests and responses alike, in
    // either layout.
    let mut unknown_rfc = SQUID_TST.to_vec();
    unknown_rfc[6] = 0x90;
    let mut unknown_response = unknown_rfc.clone();
    unknown_response[7] |= 0x01;
    let mut unknown_old = SQUID_TST.to_vec();
    unknown_old[3] = htcp::MINOR_OLD;
    unknown_old[6] = 0x0f;
    for unknown in [&unknown_rfc, &unknown_response, &unknown_old] {
        assert!(!htcp::parse(unknown).expect("parses").opcode().is_known());
    }
    for bad in [
        &b""[..],
        b"\x00\x04\x00",
        &wrong_len,
        &major,
        &unknown_rfc,
        &unknown_response,
        &unknown_old,
    ] {
        assert_eq!(run(bad, &c, &cache).dropped, Some(Dropped::Malformed));
    }
    for response in [
        &include_bytes!("../../../fixtures/htcp/tst-response-hit-squid57.bin")[..],
        include_bytes!("../../../fixtures/htcp/tst-response-miss-squid57.bin"),
        include_bytes!("../../../fixtures/htcp/clr-response-squid57.bin"),
        include_bytes!("../../../fixtures/htcp/clr-response-forwarded-bounce-squid57.bin"),
    ] {
        assert_eq!(
            run(response, &c, &cache).dropped,
            Some(Dropped::NotARequest)
        );
    }
}

#[test]
fn a_malformed_auth_section_is_ignored_as_squid_does() {
    let mut req = SQUID_TST.to_vec();
    req.truncate(req.len() - 2);
    req.extend_from_slice(&[0, 9, 1, 2, 3]); // AUTH length 9, 3 bytes
    let len = req.len() as u16;
    req[..2].copy_from_slice(&len.to_be_bytes());
    // The codec keeps it unparsed; nobody reads it.
    let parsed = htcp::parse(&req).expect("DATA is sound");
    assert_eq!(parsed.auth, htcp::Auth::Unparsed(&[0, 9, 1, 2, 3]));
    let d = run(&req, &allow_all(), &Fake::default());
    assert_eq!(d.log, Some(ResultTag::UdpMiss));
    assert_eq!(d.answer, Some(Answer::NotFound));
}

#[test]
fn clr_from_squid_naming_purge_removes_get_and_head() {
    let url = "http://127.0.0.1:18080/obj/5k";
    let cache = Fake::with(url, expiring_in(600));
    cache.put(KeyMethod::Head, url, expiring_in(600));
    let clr: &[u8] = include_bytes!("../../../fixtures/htcp/clr-request-purge-squid57.bin");
    let d = run(clr, &allow_all(), &cache);
    assert_eq!(d.log, Some(ResultTag::UdpHit));
    assert!(!cache.holds(KeyMethod::Get, url) && !cache.holds(KeyMethod::Head, url));
    assert_eq!(d.answer, None, "Squid's CLRs want no reply");
    assert_eq!(d.forward, Some(0));
    // Again: nothing left.
    assert_eq!(run(clr, &allow_all(), &cache).log, Some(ResultTag::UdpMiss));
}

#[test]
fn clr_with_rd_is_answered_like_squid() {
    let url = "http://127.0.0.1:18080/obj/11k";
    let clr: &[u8] = include_bytes!("../../../fixtures/htcp/clr-request-get-crafted.bin");
    let cache = Fake::with(url, expiring_in(600));
    let d = run(clr, &allow_all(), &cache);
    let squid: &[u8] = include_bytes!("../../../fixtures/htcp/clr-response-squid57.bin");
    assert_eq!(reply(&d), squid);
    let d = run(clr, &allow_all(), &cache);
    let wire = reply(&d);
    let squid: &[u8] = include_bytes!("../../../fixtures/htcp/clr-response-not-found-squid57.bin");
    assert_eq!(wire[..8], squid[..8]);
    assert_eq!(wire[12..], squid[12..]);
}

#[test]
fn mediawiki_head_clr_in_the_old_layout_purges_the_get_object() {
    let url = "http://127.0.0.1:18191/obj/2k.a";
    let cache = Fake::with(url, expiring_in(600));
    let clr: &[u8] =
        include_bytes!("../../../fixtures/htcp/clr-request-mediawiki-head-crafted.bin");
    let d = run(clr, &allow_all(), &cache);
    assert_eq!((d.log, d.minor), (Some(ResultTag::UdpHit), 0));
    assert!(!cache.holds(KeyMethod::Get, url));
}

#[test]
fn invalidation_clrs_purge_and_denied_ones_do_not() {
    let url = "http://127.0.0.1:28180/obj/61k";
    for fixture in [
        &include_bytes!("../../../fixtures/htcp/clr-request-post-squid57.bin")[..],
        include_bytes!("../../../fixtures/htcp/clr-request-delete-squid57.bin"),
    ] {
        let cache = Fake::with(url, expiring_in(600));
        let d = run(fixture, &config(""), &cache);
        assert_eq!((d.log, d.forward), (Some(ResultTag::UdpDenied), None));
        assert!(cache.purged.borrow().is_empty() && cache.holds(KeyMethod::Get, url));
        let d = run(fixture, &allow_all(), &cache);
        assert_eq!(d.log, Some(ResultTag::UdpHit));
        assert!(!cache.holds(KeyMethod::Get, url));
    }
}

#[test]
fn clr_keys_by_method() {
    let url = "http://a/";
    let get = store_key(KeyMethod::Get, url.as_bytes());
    let head = store_key(KeyMethod::Head, url.as_bytes());
    for m in ["GET", "HEAD", "PURGE", "POST", "DELETE", "BREW"] {
        assert_eq!(clr_keys(m, url), vec![get, head], "{m}");
    }
    assert_eq!(
        clr_keys("OPTIONS", url),
        vec![store_key(KeyMethod::Options, url.as_bytes())]
    );
}

#[test]
fn nop_is_answered_and_mon_set_are_not_implemented() {
    let c = allow_all();
    let cache = Fake::default();
    let request = |op| {
        let m = Message {
            minor: 1,
            response: 0,
            f1: true,
            reserved: 0,
            trans_id: 9,
            op,
            auth: htcp::Auth::None,
        };
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    };
    let d = run(&request(Op::NopRequest), &c, &cache);
    let m = htcp::parse(&reply(&d)).unwrap().to_owned_op();
    assert_eq!(m, (Opcode::Nop, 0, false, 9));
    for op in [
        Op::MonRequest { time: 30 },
        Op::SetRequest(htcp::Identity::default()),
    ] {
        let d = run(&request(op), &c, &cache);
        assert_eq!(d.log, None, "not logged, as in Squid");
        let m = htcp::parse(&reply(&d)).unwrap().to_owned_op();
        assert_eq!(
            m,
            (op.opcode(), 2, true, 9),
            "MO set: opcode not implemented"
        );
    }
    // Refused senders and RD=0 get nothing.
    let d = run(&request(Op::NopRequest), &config(""), &cache);
    assert_eq!(d.dropped, Some(Dropped::NoReplyWanted));
}

trait Summarise {
    fn to_owned_op(&self) -> (Opcode, u8, bool, u32);
}

impl Summarise for Message<'_> {
    fn to_owned_op(&self) -> (Opcode, u8, bool, u32) {
        assert!(self.is_response());
        (self.opcode(), self.response, self.f1, self.trans_id)
    }
}

#[test]
fn clr_datagrams_name_get_and_head_in_the_peers_layout() {
    let mut n = 0;
    let wires = clr_datagrams("http://a/x", 0, false, false, || {
        n += 1;
        n
    });
    let methods: Vec<(String, u32, u8, bool)> = wires
        .iter()
        .map(|w| {
            let m = htcp::parse(w).unwrap();
            let Op::ClrRequest { specifier, .. } = m.op else {
                panic!()
            };
            (specifier.method.to_string(), m.trans_id, m.minor, m.f1)
        })
        .collect();
    assert_eq!(
        methods,
        [("GET".into(), 1, 1, false), ("HEAD".into(), 2, 1, false)]
    );
    let old = clr_datagrams("http://a/x", 1, true, true, || 5);
    assert!(old
        .iter()
        .all(|w| w[3] == 0 && w[6] == 0x04 && w[7] == 0x40));
}

/// A forward-clr peer named by a host name takes the address the daemon
/// resolved ahead; building the responder's settings never asks DNS.
#[tokio::test]
async fn forward_targets_take_names_resolved_ahead() {
    let c = config("cache_peer localhost sibling 3128 4827 htcp=forward-clr\n");
    assert_eq!(forward_targets(&c, &PeerAddrs::literal_only()), []);
    let resolved = forward_targets(&c, &PeerAddrs::resolve(&c).await);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(resolved[0].addr.ip().is_loopback());
    assert_eq!(resolved[0].addr.port(), 4827);
}

#[test]
fn forward_targets_are_the_forward_clr_peers() {
    let c = config(
        "cache_peer 127.0.10.2 sibling 3128 4827 htcp=forward-clr\n\
         cache_peer 127.0.10.3 sibling 3128 4828 htcp=forward-clr,oldsquid\n\
         cache_peer 127.0.10.4 sibling 3128 4829 htcp\n\
         cache_peer 127.0.10.5 sibling 3128 3130\n",
    );
    assert_eq!(
        forward_targets(&c, &PeerAddrs::literal_only()),
        [
            ForwardTarget {
                addr: "127.0.10.2:4827".parse().unwrap(),
                oldsquid: false
            },
            ForwardTarget {
                addr: "127.0.10.3:4828".parse().unwrap(),
                oldsquid: true
            }
        ]
    );
}

#[test]
fn listen_addr_follows_htcp_port_and_udp_incoming_address() {
    assert_eq!(HtcpServer::listen_addr(&config("")), None);
    assert_eq!(
        HtcpServer::listen_addr(&config("htcp_port 4827\nudp_incoming_address 127.0.10.2\n")),
        Some("127.0.10.2:4827".parse().unwrap())
    );
}

/// The exchange captured between a real Squid 5.7 and cuttle (a UDP
/// relay between them recorded it; Squid then logged SIBLING_HIT for
/// the found URL and HIER_DIRECT at once for the other): cuttle's
/// replies are in the shape Squid took, and deciding on Squid's
/// requests again gives the same bytes but the Age and date values.
#[test]
fn the_exchange_captured_with_squid_replays() {
    let url = "http://127.0.10.1:18182/hit";
    let tst: &[u8] = include_bytes!("../../../fixtures/htcp/tst-request-squid57-to-cuttle.bin");
    let hit: &[u8] = include_bytes!("../../../fixtures/htcp/tst-response-hit-cuttle.bin");
    let miss: &[u8] = include_bytes!("../../../fixtures/htcp/tst-response-miss-cuttle.bin");
    let clr: &[u8] =
        include_bytes!("../../../fixtures/htcp/clr-request-purge-squid57-to-cuttle.bin");
    let q = htcp::parse(tst).unwrap();
    let h = htcp::parse(hit).unwrap();
    assert_eq!(
        (h.trans_id, h.response, h.f1, h.minor),
        (q.trans_id, 0, false, 1)
    );
    let Op::TstResponse(TstReply::Detail(d)) = h.op else {
        panic!("{h:?}")
    };
    assert!(d.resp_hdrs.to_string().starts_with("Age: "));
    assert!(d.entity_hdrs.to_string().starts_with("Expires: "));
    // The miss Squid took: its own form, three empty fields.
    let squid_miss: &[u8] = include_bytes!("../../../fixtures/htcp/tst-response-miss-squid57.bin");
    assert_eq!(
        (&miss[..8], &miss[12..]),
        (&squid_miss[..8], &squid_miss[12..])
    );

    let cache = Fake::with(url, expiring_in(600));
    cache
        .entries
        .borrow_mut()
        .values_mut()
        .for_each(|s| s.times.last_modified = 0);
    let again = reply(&run(tst, &allow_all(), &cache));
    assert_eq!(again.len(), hit.len() + 2, "Age: 100 against Age: 5");
    // MINOR, opcode, flags, transaction id; the lengths differ by 2.
    assert_eq!((&again[2..4], &again[6..12]), (&hit[2..4], &hit[6..12]));
    let d = run(clr, &allow_all(), &cache);
    assert_eq!(
        (d.method.as_str(), d.log),
        ("PURGE", Some(ResultTag::UdpHit))
    );
    assert!(!cache.holds(KeyMethod::Get, url));
}

/// What the responder thread does with an allowed CLR, over real
/// sockets: the reply goes to the sender, and the CLR is relayed to the
/// forward-clr peer as CLRs for GET and HEAD wanting no reply (ids
/// counting from 1); the same URL again within FORWARD_DEDUP is not
/// relayed, nor is a CLR the peer itself sent.
/// What the responder's loop does with one datagram: answer it, then send
/// the batch of replies (and relayed CLRs) on `socket`.
fn answer_and_send(
    htcp: &mut Htcp,
    socket: &std::net::UdpSocket,
    datagram: &[u8],
    from: SocketAddr,
    settings: &Settings<Vec<ForwardTarget>>,
    lines: &mut LineBatch,
) {
    let mut replies = SendBatch::new();
    htcp.answer(datagram, from, settings, &mut replies, lines);
    replies.send(socket, |tag, to, outcome| {
        htcp.sent(tag, to, outcome, settings, lines);
    });
}

#[test]
fn an_allowed_clr_is_relayed_once_to_the_forward_clr_peers() {
    use crate::access_log::Logger;
    use crate::store::StoreOptions;
    use std::net::UdpSocket;
    let bind = |ip: &str| {
        let s = UdpSocket::bind((ip, 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s
    };
    let (responder, sender, peer) = (
        bind("127.0.10.30"),
        bind("127.0.10.32"),
        bind("127.0.10.31"),
    );
    let port = |s: &UdpSocket| s.local_addr().expect("addr");
    let c = config(&format!(
        "htcp_clr_access allow all\n\
         cache_peer 127.0.10.31 sibling 3128 {} htcp=forward-clr\n",
        port(&peer).port()
    ));
    let settings = Settings {
        derived: forward_targets(&c, &PeerAddrs::literal_only()),
        config: Arc::new(c),
        logger: Logger::disabled(),
    };
    let (store, _) = Store::open(&[], StoreOptions::default()).expect("an empty store");
    let stats = Arc::new(HtcpServerStats::default());
    let mut htcp = Htcp::new(
        Arc::new(store),
        Arc::default(),
        Arc::clone(&stats),
        Arc::default(),
    );
    let url = "http://example.test/gone";
    let clr = |url: &str, rd: bool| clr_datagrams(url, 0, false, rd, || 77).remove(0);
    let mut lines = LineBatch::new();
    let mut buf = [0u8; 9000];

    answer_and_send(
        &mut htcp,
        &responder,
        &clr(url, true),
        port(&sender),
        &settings,
        &mut lines,
    );
    let (n, from) = sender.recv_from(&mut buf).expect("the CLR reply");
    assert_eq!(from, port(&responder));
    let r = htcp::parse(&buf[..n]).expect("HTCP");
    assert_eq!((r.op, r.response), (Op::ClrResponse, htcp::clr::NOT_FOUND));
    for (id, method) in [(1, "GET"), (2, "HEAD")] {
        let (n, from) = peer.recv_from(&mut buf).expect("a relayed CLR");
        assert_eq!(from, port(&responder));
        let m = htcp::parse(&buf[..n]).expect("HTCP");
        let Op::ClrRequest { specifier, .. } = m.op else {
            panic!("{m:?}")
        };
        assert_eq!((m.trans_id, m.response_desired()), (id, false));
        assert_eq!(specifier.method.to_str(), Some(method));
        assert_eq!(specifier.uri.as_bytes(), url.as_bytes());
    }
    assert_eq!(stats.clr_forwarded.load(Ordering::Relaxed), 2);

    // Relayed lately; and the peer's own CLR never goes back to it.
    answer_and_send(
        &mut htcp,
        &responder,
        &clr(url, false),
        port(&sender),
        &settings,
        &mut lines,
    );
    let own = "http://example.test/peers-own";
    answer_and_send(
        &mut htcp,
        &responder,
        &clr(own, false),
        port(&peer),
        &settings,
        &mut lines,
    );
    assert!(peer.recv_from(&mut buf).is_err(), "relayed again");
    assert_eq!(stats.clr_forwarded.load(Ordering::Relaxed), 2);
}

#[test]
fn mon_goes_to_the_publisher_when_subscriptions_are_on() {
    use crate::access_log::Logger;
    use crate::peers::monitor::wire;
    use crate::store::StoreOptions;
    use std::net::UdpSocket;
    let mon = |id| wire::request(id, 30);
    // Off (the default): "not implemented", as before.
    let d = run(&mon(5), &allow_all(), &Fake::default());
    assert_eq!(d.answer, Some(Answer::NotImplemented));
    let c = config("htcp_access allow all\nhtcp_monitor_max_subscribers 1\n");
    let d = run(&mon(5), &c, &Fake::default());
    assert_eq!(d.answer, Some(Answer::Monitor(30)));
    assert!(reply(&d).is_empty(), "the publisher answers");
    // Through the responder: the first subscriber is recorded, the second
    // refused at once (RESPONSE 1), from the responder's socket.
    let bind = || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s
    };
    let (responder, first, second) = (bind(), bind(), bind());
    let addr = |s: &UdpSocket| s.local_addr().expect("addr");
    let settings = Settings {
        derived: Vec::new(),
        config: Arc::new(c),
        logger: Logger::disabled(),
    };
    let (store, _) = Store::open(&[], StoreOptions::default()).expect("an empty store");
    let (stats, publisher) = (
        Arc::new(HtcpServerStats::default()),
        Arc::new(Publisher::default()),
    );
    let mut htcp = Htcp::new(
        Arc::new(store),
        Arc::default(),
        Arc::clone(&stats),
        Arc::clone(&publisher),
    );
    let mut lines = LineBatch::new();
    answer_and_send(
        &mut htcp,
        &responder,
        &mon(7),
        addr(&first),
        &settings,
        &mut lines,
    );
    let subs = publisher.subscribers(Instant::now());
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].addr, addr(&first));
    answer_and_send(
        &mut htcp,
        &responder,
        &mon(8),
        addr(&second),
        &settings,
        &mut lines,
    );
    let mut buf = [0u8; 512];
    let (n, from) = second.recv_from(&mut buf).expect("a refusal");
    assert_eq!(from, addr(&responder));
    assert_eq!(
        wire::parse(&buf[..n]),
        Some(wire::Incoming::Refused {
            trans_id: 8,
            code: wire::REFUSED_TOO_MANY
        })
    );
    assert_eq!(stats.mon_requests.load(Ordering::Relaxed), 2);
}
