//! cuttle as an ICP client of a real Squid 5.7: a private Squid on its own
//! loopback address holds an object; `cuttle icp query` gets ICP_HIT for it
//! and ICP_MISS for another URL; a cuttle on another address with Squid as
//! its sibling fetches the object from Squid (SIBLING_HIT, origin not
//! contacted) and goes DIRECT for what Squid lacks; with Squid as its
//! parent, PARENT_HIT and FIRST_PARENT_MISS, as Squid would log them.
//! Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};

use peer_lab::{
    cuttle_query, free_udp_port, get, log_lines, start_cuttle, tail, text_body, text_origin, Squid,
};
use support::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_queries_squid_sibling_fetches_its_hit_and_goes_direct_for_its_miss() {
    let squid_ip = Ipv4Addr::new(127, 0, 3, 1);
    let cuttle_ip = Ipv4Addr::new(127, 0, 3, 2);
    let cli_ip = Ipv4Addr::new(127, 0, 3, 3);
    let tmp = TempDir::new("icp-sibling");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/cached", "/other"]).await;
    let cached = origin.url("/cached");
    let other = origin.url("/other");

    let squid = Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        &format!("{cuttle_ip} {cli_ip}"),
        "",
    );
    // Squid fetches and keeps the object.
    assert_eq!(
        get(squid.http_addr(), &cached).await,
        (200, text_body("/cached"))
    );
    assert_eq!(origin.count("/cached"), 1);

    // `cuttle icp query` against the real Squid: HIT for what it holds,
    // MISS for what it does not.
    let icp = SocketAddr::from((squid_ip, squid.icp_port));
    let (lines, ok, text) = cuttle_query(&["icp", "query"], icp, cli_ip, &[&cached, &other]);
    assert!(ok, "cuttle icp query failed:\n{text}");
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0][0], cached);
    assert_eq!(lines[0][1], "ICP_HIT", "{text}");
    assert_eq!(lines[1][1], "ICP_MISS", "{text}");
    assert!(lines[0][2].ends_with(" ms"), "{text}");
    let squid_udp = log_lines(&squid.access_log(), &cached, 2);
    assert!(
        squid_udp
            .iter()
            .any(|l| l[2] == cli_ip.to_string() && l[3] == "UDP_HIT/000" && l[5] == "ICP_QUERY"),
        "squid access.log:\n{}",
        tail(&squid.access_log(), 10)
    );

    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "cache_peer {squid_ip} sibling {} {} no-digest\n\
             udp_outgoing_address {cuttle_ip}\n\
             udp_incoming_address {cuttle_ip}\n\
             icp_port {icp}\n\
             tcp_outgoing_address {cuttle_ip}\n\
             icp_query_timeout 3000",
            squid.http_port,
            squid.icp_port,
            icp = free_udp_port(cuttle_ip)
        ),
    );
    // The TCP liveness probe of the peer runs at start: cuttle asks the
    // peer only once it succeeded.
    cuttle.wait_probed(&squid_ip.to_string());
    let diag = || {
        format!(
            "\ncuttle output:\n{}\nsquid access.log:\n{}",
            cuttle.output(),
            tail(&squid.access_log(), 10)
        )
    };

    let (status, text) = get(cuttle.addr, &cached).await;
    assert_eq!(status, 200, "{}", diag());
    assert_eq!(text, text_body("/cached"));
    assert_eq!(
        origin.count("/cached"),
        1,
        "the origin was contacted{}",
        diag()
    );
    let ours = log_lines(&cuttle.log, &cached, 1);
    assert_eq!(ours.len(), 1, "{}", diag());
    assert_eq!(ours[0][3], "TCP_MISS/200", "{:?}{}", ours[0], diag());
    assert_eq!(
        ours[0][8],
        format!("SIBLING_HIT/{squid_ip}"),
        "{:?}{}",
        ours[0],
        diag()
    );

    // Squid saw our query and our fetch from cuttle's own addresses
    // (udp_outgoing_address, tcp_outgoing_address) and served a hit.
    let theirs = log_lines(&squid.access_log(), &cached, 4);
    let from_cuttle: Vec<&Vec<String>> = theirs
        .iter()
        .filter(|l| l[2] == cuttle_ip.to_string())
        .collect();
    assert!(
        from_cuttle
            .iter()
            .any(|l| l[3] == "UDP_HIT/000" && l[5] == "ICP_QUERY"),
        "{}",
        diag()
    );
    assert!(
        from_cuttle
            .iter()
            .any(|l| l[3].contains("HIT/200") && l[5] == "GET" && l[8] == "HIER_NONE/-"),
        "{}",
        diag()
    );

    // What Squid lacks: its ICP_MISS arrives in time, cuttle goes DIRECT.
    let (status, text) = get(cuttle.addr, &other).await;
    assert_eq!((status, text), (200, text_body("/other")), "{}", diag());
    assert_eq!(origin.count("/other"), 1);
    let ours = log_lines(&cuttle.log, &other, 1);
    assert_eq!(ours[0][3], "TCP_MISS/200", "{}", diag());
    assert_eq!(
        ours[0][8],
        "HIER_DIRECT/127.0.0.1",
        "{:?}{}",
        ours[0],
        diag()
    );
    let theirs = log_lines(&squid.access_log(), &other, 2);
    assert!(
        theirs
            .iter()
            .any(|l| l[2] == cuttle_ip.to_string() && l[3] == "UDP_MISS/000"),
        "{}",
        diag()
    );
    // Squid was not asked for the object over HTTP (siblings serve hits only).
    assert!(
        !theirs
            .iter()
            .any(|l| l[5] == "GET" && l[2] == cuttle_ip.to_string()),
        "{}",
        diag()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_with_squid_as_parent_logs_parent_hit_and_first_parent_miss() {
    let squid_ip = Ipv4Addr::new(127, 0, 3, 4);
    let cuttle_ip = Ipv4Addr::new(127, 0, 3, 5);
    let tmp = TempDir::new("icp-parent");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/p-cached", "/p-miss"]).await;
    let cached = origin.url("/p-cached");
    let missing = origin.url("/p-miss");

    let squid = Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        &cuttle_ip.to_string(),
        "",
    );
    assert_eq!(get(squid.http_addr(), &cached).await.0, 200);
    assert_eq!(origin.count("/p-cached"), 1);

    // proxy-only: what the parent sends is not stored, so asking twice
    // goes to the parent twice.
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "cache_peer {squid_ip} parent {} {} no-digest proxy-only\n\
             udp_outgoing_address {cuttle_ip}\n\
             udp_incoming_address {cuttle_ip}\n\
             icp_port {icp}\n\
             tcp_outgoing_address {cuttle_ip}\n\
             icp_query_timeout 3000",
            squid.http_port,
            squid.icp_port,
            icp = free_udp_port(cuttle_ip)
        ),
    );
    // cuttle asks the peer only once its TCP probe succeeded.
    cuttle.wait_probed(&squid_ip.to_string());
    let diag = || {
        format!(
            "\ncuttle output:\n{}\nsquid access.log:\n{}",
            cuttle.output(),
            tail(&squid.access_log(), 12)
        )
    };

    for _ in 0..2 {
        let (status, text) = get(cuttle.addr, &cached).await;
        assert_eq!((status, text), (200, text_body("/p-cached")), "{}", diag());
    }
    assert_eq!(origin.count("/p-cached"), 1, "{}", diag());
    let ours = log_lines(&cuttle.log, &cached, 2);
    assert_eq!(ours.len(), 2, "{}", diag());
    for l in &ours {
        assert_eq!(l[3], "TCP_MISS/200", "{l:?}{}", diag());
        assert_eq!(l[8], format!("PARENT_HIT/{squid_ip}"), "{l:?}{}", diag());
    }

    // A URL the parent lacks: its MISS makes it the FIRST_PARENT_MISS, and
    // the object comes through it (a parent gets no only-if-cached).
    let (status, text) = get(cuttle.addr, &missing).await;
    assert_eq!((status, text), (200, text_body("/p-miss")), "{}", diag());
    let ours = log_lines(&cuttle.log, &missing, 1);
    assert_eq!(
        ours[0][8],
        format!("FIRST_PARENT_MISS/{squid_ip}"),
        "{:?}{}",
        ours[0],
        diag()
    );
    assert_eq!(origin.count("/p-miss"), 1);
    let seen = origin.last("/p-miss");
    assert!(
        seen.header("via").contains(&format!("squid-{squid_ip}")),
        "the origin was not reached through Squid: {:?}",
        seen.header("via")
    );
    let theirs = log_lines(&squid.access_log(), &missing, 2);
    assert!(
        theirs.iter().any(|l| l[2] == cuttle_ip.to_string()
            && l[3] == "TCP_MISS/200"
            && l[8] == "HIER_DIRECT/127.0.0.1"),
        "{}",
        diag()
    );
}
