//! HTCP between cuttle and a real Squid 5.7, both ways: a private Debian
//! Squid on 127.0.11.1 and cuttle on 127.0.11.2 are each other's `htcp`
//! sibling (`cache_peer ... sibling HTTP HTCP htcp no-digest`).
//!
//! 1. An object only cuttle holds, asked of Squid: Squid's HTCP TST gets
//!    cuttle's "found" (Squid logs `SIBLING_HIT/127.0.11.2`, its
//!    server_list counts an HTCP hit), cuttle logs `UDP_HIT ... HTCP_TST`.
//!    One cuttle does not hold: "not found", Squid goes `HIER_DIRECT`
//!    at once (not `TIMEOUT_HIER_DIRECT`: Squid took the three-field miss).
//! 2. The reverse: an object only Squid holds, asked of cuttle: cuttle's
//!    TST gets Squid's "found", cuttle logs `SIBLING_HIT/127.0.11.1`.
//! 3. `cuttle htcp tst` and `cuttle htcp clr` against Squid and cuttle.
//! 4. A PURGE sent to cuttle sends CLRs (GET, HEAD) that remove the object
//!    from Squid (Squid logs `UDP_HIT ... HTCP_CLR`, its next request for
//!    it is a miss); a PURGE sent to Squid sends a CLR naming PURGE, which
//!    cuttle takes as a purge of the GET object (an only-if-cached request
//!    to cuttle is then a 504).
//!
//! Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use peer_lab::{
    cuttle_query, free_tcp_port, free_udp_port, get, lines_where, log_lines, mgr_page as mgr,
    squid_binary, squid_lab_lines, start_cuttle, tail, text_body as body, text_origin,
    wait_peer_up, Squid, STARTUP,
};
use support::{Req, TempDir};

const SQUID_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 11, 1);
const CUTTLE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 11, 2);
const CLI_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 11, 3);
/// Where the test's own HTTP requests come from.
const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// `cuttle htcp SUBCOMMAND --peer PEER --from CLI_IP URL...`: its output
/// lines split at tabs, and whether it exited 0.
fn htcp_cli(sub: &str, peer: SocketAddr, urls: &[&str]) -> (Vec<Vec<String>>, bool, String) {
    cuttle_query(&["htcp", sub], peer, CLI_IP, urls)
}

/// Waits until `log` has a line for `url` from `client` whose result and
/// method fields are `result` and `method`.
fn wait_line(
    log: &std::path::Path,
    client: Ipv4Addr,
    url: &str,
    result: &str,
    method: &str,
) -> Vec<String> {
    let client = client.to_string();
    lines_where(log, url, |l| {
        l[2] == client && l[3] == result && l[5] == method
    })
    .into_iter()
    .next()
    .unwrap_or_else(|| {
        panic!(
            "no `{result} {method} {url}` line in {}:\n{}",
            log.display(),
            tail(log, 20)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htcp_both_ways_with_a_real_squid_tst_clr_and_purge() {
    squid_binary();
    let paths = [
        "/in-cuttle",
        "/nowhere",
        "/in-squid",
        "/purge-via-cuttle",
        "/purge-via-squid",
        "/cli",
        "/warm",
    ];
    let origin = text_origin(LOCAL, &paths).await;
    let tmp = TempDir::new("htcp-squid");

    let squid_http = free_tcp_port(SQUID_IP);
    let squid_htcp = free_udp_port(SQUID_IP);
    let cuttle_htcp = free_udp_port(CUTTLE_IP);

    // cuttle first (Squid probes its HTTP port at start): its own
    // http_port on 127.0.11.2, Squid as an htcp sibling.
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        CUTTLE_IP,
        &format!(
            "htcp_port {cuttle_htcp}\n\
             udp_incoming_address {CUTTLE_IP}\n\
             udp_outgoing_address {CUTTLE_IP}\n\
             acl peers src {SQUID_IP} {CLI_IP}\n\
             htcp_access allow peers\n\
             htcp_access deny all\n\
             htcp_clr_access allow peers\n\
             htcp_clr_access deny all\n\
             acl purge method PURGE\n\
             http_access allow purge test_clients\n\
             icp_query_timeout 3000\n\
             cache_peer {SQUID_IP} sibling {squid_http} {squid_htcp} htcp no-digest name=squid\n"
        ),
    );
    cuttle.wait_output("cuttle: HTCP on", STARTUP);

    let dir = tmp.path().join("squid");
    let d = dir.display();
    let conf = format!(
        "# private Squid for tests/htcp_squid.rs; nothing outside {d}\n\
         http_port {SQUID_IP}:{squid_http}\n\
         icp_port 0\n\
         htcp_port {squid_htcp}\n\
         udp_incoming_address {SQUID_IP}\n\
         udp_outgoing_address {SQUID_IP}\n\
         tcp_outgoing_address {SQUID_IP}\n\
         visible_hostname squid-htcp-test\n\
         {lab}\
         icp_query_timeout 3000\n\
         cache_peer {CUTTLE_IP} sibling {} {cuttle_htcp} htcp no-digest no-netdb-exchange name=cuttle\n\
         acl peers src {CUTTLE_IP} {CLI_IP}\n\
         htcp_access allow peers\n\
         htcp_access deny all\n\
         htcp_clr_access allow peers\n\
         htcp_clr_access deny all\n\
         acl purge method PURGE\n\
         acl test_clients src 127.0.0.0/8\n\
         http_access allow purge test_clients\n\
         http_access allow test_clients\n\
         http_access deny all\n",
        cuttle.addr.port(),
        lab = squid_lab_lines(&dir)
    );
    let squid = Squid::start_with_conf(&dir, SQUID_IP, squid_http, 0, &conf);
    let squid_addr = squid.http_addr();
    let squid_log = squid.access_log();
    let cuttle_log = cuttle.log.clone();

    // Squid uses a peer once its TCP probe succeeded: wait for "Up".
    wait_peer_up(async || mgr(squid_addr, "server_list").await).await;

    // cuttle probed Squid's HTTP port before Squid ran, so it holds Squid
    // down until a probe (at most one a second, when a request consults
    // the peer) succeeds; a down peer is asked only after a quiet
    // dead_peer_timeout. A TST for a second warm-up URL shows it up.
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in 0.. {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let warm = origin.url(&format!("/warm?{n}"));
        assert_eq!(get(cuttle.addr, &warm).await.0, 200);
        let asked = log_lines(&squid_log, &warm, 1)
            .iter()
            .any(|l| l[5] == "HTCP_TST" && l[2] == CUTTLE_IP.to_string());
        if asked && n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "Squid never up in cuttle");
    }

    // 1. Only cuttle holds it: fetched through cuttle (Squid answers its
    // TST "not found"), then asked of Squid.
    let in_cuttle = origin.url("/in-cuttle");
    assert_eq!(
        get(cuttle.addr, &in_cuttle).await,
        (200, body("/in-cuttle"))
    );
    wait_line(
        &squid_log,
        CUTTLE_IP,
        &in_cuttle,
        "UDP_MISS/000",
        "HTCP_TST",
    );
    let l = wait_line(&cuttle_log, LOCAL, &in_cuttle, "TCP_MISS/200", "GET");
    assert_eq!(l[8], "HIER_DIRECT/127.0.0.1", "{l:?}");
    let (lines, ok, text) = htcp_cli(
        "tst",
        SocketAddr::from((CUTTLE_IP, cuttle_htcp)),
        &[&in_cuttle],
    );
    assert!(
        ok && lines[0][1] == "FOUND",
        "cuttle never stored it:\n{text}"
    );
    assert_eq!(get(squid_addr, &in_cuttle).await, (200, body("/in-cuttle")));
    assert_eq!(origin.count("/in-cuttle"), 1, "only cuttle's fetch");
    let l = wait_line(&squid_log, LOCAL, &in_cuttle, "TCP_MISS/200", "GET");
    assert_eq!(l[8], format!("SIBLING_HIT/{CUTTLE_IP}"), "{l:?}");
    let l = wait_line(&cuttle_log, SQUID_IP, &in_cuttle, "UDP_HIT/000", "HTCP_TST");
    assert_eq!(
        (l[2].as_str(), l[4].as_str()),
        (SQUID_IP.to_string().as_str(), "0")
    );

    let nowhere = origin.url("/nowhere");
    assert_eq!(get(squid_addr, &nowhere).await, (200, body("/nowhere")));
    let l = wait_line(&squid_log, LOCAL, &nowhere, "TCP_MISS/200", "GET");
    assert_eq!(
        l[8], "HIER_DIRECT/127.0.0.1",
        "Squid took cuttle's miss: {l:?}"
    );
    wait_line(&cuttle_log, SQUID_IP, &nowhere, "UDP_MISS/000", "HTCP_TST");
    let page = mgr(squid_addr, "server_list").await;
    assert!(page.contains("Hits\t       1"), "{page}");

    // 2. Only Squid holds it (it was just fetched through Squid, which
    // asked cuttle first): asked of cuttle, fetched from Squid.
    let in_squid = origin.url("/in-squid");
    assert_eq!(get(squid_addr, &in_squid).await, (200, body("/in-squid")));
    assert_eq!(get(cuttle.addr, &in_squid).await, (200, body("/in-squid")));
    assert_eq!(
        origin.count("/in-squid"),
        1,
        "only Squid's fetch; cuttle said:\n{}",
        cuttle.output()
    );
    let l = wait_line(&cuttle_log, LOCAL, &in_squid, "TCP_MISS/200", "GET");
    assert_eq!(l[8], format!("SIBLING_HIT/{SQUID_IP}"), "{l:?}");
    let l = wait_line(&squid_log, CUTTLE_IP, &in_squid, "UDP_HIT/000", "HTCP_TST");
    assert_eq!(l[2], CUTTLE_IP.to_string());

    // 3. The CLI against both.
    let squid_udp = SocketAddr::from((SQUID_IP, squid_htcp));
    let cuttle_udp = SocketAddr::from((CUTTLE_IP, cuttle_htcp));
    let cli = origin.url("/cli");
    for peer in [squid_udp, cuttle_udp] {
        let (lines, ok, text) = htcp_cli("tst", peer, &[&in_squid, &cli]);
        assert!(ok, "{peer}: {text}");
        assert_eq!(
            (lines[0][1].as_str(), lines[1][1].as_str()),
            ("FOUND", "NOT_FOUND"),
            "{peer}: {text}"
        );
        assert!(lines[0].iter().any(|f| f.starts_with("Age: ")), "{text}");
    }
    // Both hold /in-squid now (cuttle stored Squid's copy): purge each.
    for peer in [squid_udp, cuttle_udp] {
        let (lines, ok, text) = htcp_cli("clr", peer, &[&in_squid, &in_squid]);
        assert!(ok, "{peer}: {text}");
        assert_eq!(
            (lines[0][1].as_str(), lines[1][1].as_str()),
            ("PURGED", "NOT_FOUND"),
            "{peer}: {text}"
        );
    }
    wait_line(&squid_log, CLI_IP, &in_squid, "UDP_HIT/000", "HTCP_CLR");
    wait_line(&cuttle_log, CLI_IP, &in_squid, "UDP_HIT/000", "HTCP_CLR");

    // 4a. PURGE sent to cuttle purges Squid's copy through CLR.
    let via_cuttle = origin.url("/purge-via-cuttle");
    assert_eq!(
        get(squid_addr, &via_cuttle).await,
        (200, body("/purge-via-cuttle"))
    );
    let (lines, _, text) = htcp_cli("tst", squid_udp, &[&via_cuttle]);
    assert_eq!(lines[0][1], "FOUND", "{text}");
    let r = Req::new("PURGE", &via_cuttle).send_to(cuttle.addr).await;
    assert!(matches!(r.status, 200 | 404), "{r:?}");
    wait_line(
        &squid_log,
        CUTTLE_IP,
        &via_cuttle,
        "UDP_HIT/000",
        "HTCP_CLR",
    );
    let (lines, _, text) = htcp_cli("tst", squid_udp, &[&via_cuttle]);
    assert_eq!(lines[0][1], "NOT_FOUND", "Squid kept it:\n{text}");
    // Squid's next request for it is a miss (fetched again).
    assert_eq!(
        get(squid_addr, &via_cuttle).await,
        (200, body("/purge-via-cuttle"))
    );
    assert_eq!(origin.count("/purge-via-cuttle"), 2);

    // 4b. PURGE sent to Squid: its CLR names PURGE; cuttle purges GET.
    let via_squid = origin.url("/purge-via-squid");
    assert_eq!(
        get(cuttle.addr, &via_squid).await,
        (200, body("/purge-via-squid"))
    );
    let (lines, _, text) = htcp_cli("tst", cuttle_udp, &[&via_squid]);
    assert_eq!(lines[0][1], "FOUND", "{text}");
    // Squid holds it too (a miss there goes to cuttle, SIBLING_HIT).
    assert_eq!(
        get(squid_addr, &via_squid).await,
        (200, body("/purge-via-squid"))
    );
    let r = Req::new("PURGE", &via_squid).send_to(squid_addr).await;
    assert_eq!(r.status, 200, "{r:?}\n{}", tail(&squid_log, 10));
    let l = wait_line(&cuttle_log, SQUID_IP, &via_squid, "UDP_HIT/000", "HTCP_CLR");
    assert_eq!(l[2], SQUID_IP.to_string());
    let r = Req::get(&via_squid)
        .header("cache-control", "only-if-cached")
        .send_to(cuttle.addr)
        .await;
    assert_eq!(r.status, 504, "cuttle kept it: {r:?}");
}
