//! A real Squid uses cuttle as its ICP sibling: a private Debian Squid 5.7
//! on 127.0.2.1 has `cache_peer 127.0.2.2 sibling HTTP ICP no-digest`, and
//! cuttle answers its ICP queries on 127.0.2.2 (its own address: Squid
//! ignores ICP from its own IP). The origin runs inside this test on
//! 127.0.0.1.
//!
//! 1. An object cached only in cuttle (fetched through cuttle first) is
//!    requested through Squid: Squid logs `SIBLING_HIT/127.0.2.2`, cuttle
//!    logs the UDP_HIT and the TCP hit it served to Squid, and the origin
//!    saw only cuttle's one fetch.
//! 2. A URL cuttle does not hold: cuttle answers MISS, Squid goes DIRECT
//!    (`HIER_DIRECT/127.0.0.1`) and cuttle fetches nothing: the origin saw
//!    exactly one request, Squid's.
//!
//! Squid's own counters (`mgr:server_list`) must show cuttle's replies as
//! ICP_HIT and ICP_MISS from the peer: replies from the wrong port or with
//! a wrong reqnum would not be counted there. Fails, never skips, when
//! squid is missing (CI installs Debian's package).

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use peer_lab::{
    free_tcp_port, free_udp_port, log_lines, mgr_page, squid_binary, squid_lab_lines, tail,
    wait_peer_up, Squid, STARTUP,
};
use support::{Conf, Cuttle, Origin, Reply, Req, TempDir};

const SQUID_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
const CUTTLE_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 2);

/// The count after `label :` in the server_list histogram.
fn histogram(page: &str, label: &str) -> u64 {
    page.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == label)
                .then(|| rest.split_whitespace().next()?.parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn squid_gets_sibling_hits_from_cuttle_and_goes_direct_on_its_misses() {
    // Fails here, before anything starts, when squid is missing.
    squid_binary();
    let origin = Origin::start().await;
    origin.route("/in-cuttle", |_| {
        Reply::ok("held by cuttle\n").cc("max-age=3600")
    });
    origin.route("/nowhere", |_| {
        Reply::ok("from the origin\n").cc("max-age=3600")
    });

    // cuttle: its usual 127.0.0.1 port for the test client, plus an
    // http_port and the ICP socket on 127.0.2.2 for Squid.
    let cuttle_http = free_tcp_port(CUTTLE_ADDR);
    let cuttle_icp = free_udp_port(CUTTLE_ADDR);
    let cuttle = Cuttle::start(
        &Conf::new()
            .extra(&format!("http_port {CUTTLE_ADDR}:{cuttle_http}"))
            .extra(&format!("icp_port {cuttle_icp}"))
            .extra(&format!("udp_incoming_address {CUTTLE_ADDR}"))
            .extra(&format!("acl squid_sibling src {SQUID_ADDR}"))
            .extra("icp_access allow squid_sibling")
            .extra("icp_access deny all")
            .extra("miss_access deny squid_sibling"),
    );
    cuttle
        .wait_output(&format!("cuttle: ICP on {CUTTLE_ADDR}:{cuttle_icp}"), false)
        .await;
    cuttle
        .wait_output(&format!("listening on {CUTTLE_ADDR}:{cuttle_http}"), false)
        .await;

    let tmp = TempDir::new("squid-sibling");
    let dir = tmp.path().join("squid");
    let squid_port = free_tcp_port(SQUID_ADDR);
    let squid_icp = free_udp_port(SQUID_ADDR);
    let d = dir.display();
    // icp_query_timeout: the dynamic one
    // starts at a 5 ms floor (squid-interop.md); cuttle answers in
    // microseconds, and Squid stops waiting as soon as the reply is in, so
    // a generous fixed timeout only guards against a slow test machine.
    let conf = format!(
            "# private Squid for tests/squid_sibling_of_cuttle.rs; nothing outside {d}\n\
             http_port {SQUID_ADDR}:{squid_port}\n\
             icp_port {squid_icp}\n\
             htcp_port 0\n\
             udp_incoming_address {SQUID_ADDR}\n\
             udp_outgoing_address {SQUID_ADDR}\n\
             tcp_outgoing_address {SQUID_ADDR}\n\
             visible_hostname squid-sibling-test\n\
             {lab}\
             icp_query_timeout 2000\n\
             cache_peer {CUTTLE_ADDR} sibling {cuttle_http} {cuttle_icp} no-digest no-netdb-exchange\n\
             acl test_clients src 127.0.0.0/8\n\
             http_access allow test_clients\n\
             http_access deny all\n",
            lab = squid_lab_lines(&dir)
        );
    let squid_node = Squid::start_with_conf(&dir, SQUID_ADDR, squid_port, squid_icp, &conf);
    let squid = squid_node.http_addr();

    // Squid uses a peer only after its TCP probe of the peer's HTTP port
    // succeeded (squid-spec 1.8): wait for "Status : Up".
    wait_peer_up(async || mgr_page(squid, "server_list").await).await;

    // 1. In cuttle only: fetched through cuttle, then asked of Squid.
    let held = origin.url("/in-cuttle");
    let r = Req::get(&held).send(&cuttle).await;
    assert_eq!(r.status, 200, "{r:?}");
    // The store commits once the body is through: wait until cuttle holds
    // it (an only-if-cached request is answered 200, not 504).
    let deadline = Instant::now() + STARTUP;
    loop {
        let r = Req::get(&held)
            .header("cache-control", "only-if-cached")
            .send(&cuttle)
            .await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "cuttle never stored {held}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = Req::get(&held).send_to(squid).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "held by cuttle\n".to_string()),
        "{r:?}"
    );
    assert_eq!(origin.count("/in-cuttle"), 1, "only cuttle's fetch");

    // 2. Nowhere: cuttle says MISS, Squid goes to the origin itself.
    let nowhere = origin.url("/nowhere");
    let r = Req::get(&nowhere).send_to(squid).await;
    assert_eq!((r.status, r.text()), (200, "from the origin\n".to_string()));

    let squid_log = dir.join("access.log");
    let hit = log_lines(&squid_log, &held, 1);
    assert_eq!(hit.len(), 1, "{}", tail(&squid_log, 10));
    assert_eq!(hit[0][3], "TCP_MISS/200", "{:?}", hit[0]);
    assert_eq!(
        hit[0][8],
        format!("SIBLING_HIT/{CUTTLE_ADDR}"),
        "{:?}",
        hit[0]
    );
    let direct = log_lines(&squid_log, &nowhere, 1);
    assert_eq!(direct.len(), 1, "{}", tail(&squid_log, 10));
    assert_eq!(direct[0][3], "TCP_MISS/200", "{:?}", direct[0]);
    assert_eq!(direct[0][8], "HIER_DIRECT/127.0.0.1", "{:?}", direct[0]);

    // The origin saw one request for it, from Squid and not through cuttle.
    let seen = origin.requests("/nowhere");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let via = seen[0].header("via");
    assert!(via.contains("squid-sibling-test"), "via: {via}");
    assert!(!via.contains("(cuttle/"), "cuttle fetched it: via {via}");

    // cuttle: ICP HIT then the TCP hit it served to Squid; ICP MISS and
    // nothing else for the other URL.
    // ICP lines are written in batches (up to 5 ms late): wait for both of
    // Squid's (the local ones are one per only-if-cached poll above).
    let cuttle_log = cuttle.log_path();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (held_lines, from_squid) = loop {
        let held_lines = log_lines(&cuttle_log, &held, 1);
        let from_squid: Vec<(String, String)> = held_lines
            .iter()
            .filter(|l| l[2] == SQUID_ADDR.to_string())
            .map(|l| (l[3].clone(), l[5].clone()))
            .collect();
        if from_squid.len() >= 2 || Instant::now() >= deadline {
            break (held_lines, from_squid);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(from_squid.len(), 2, "{held_lines:?}");
    // ICP lines are written in batches (up to 5 ms late), so the two lines
    // may be in either order in the file.
    assert!(
        from_squid.contains(&("UDP_HIT/000".to_string(), "ICP_QUERY".to_string())),
        "{held_lines:?}"
    );
    assert!(
        from_squid.iter().any(|(code, method)| method == "GET"
            && matches!(code.as_str(), "TCP_HIT/200" | "TCP_MEM_HIT/200")),
        "{held_lines:?}"
    );
    let nowhere_lines = log_lines(&cuttle_log, &nowhere, 1);
    let codes: Vec<&str> = nowhere_lines.iter().map(|l| l[3].as_str()).collect();
    assert_eq!(codes, ["UDP_MISS/000"], "{nowhere_lines:?}");
    assert_eq!(nowhere_lines[0][2], SQUID_ADDR.to_string());

    // Squid counted both replies as coming from its peer.
    let page = mgr_page(squid, "server_list").await;
    assert!(histogram(&page, "ICP_HIT") >= 1, "{page}");
    assert!(histogram(&page, "ICP_MISS") >= 1, "{page}");
}
