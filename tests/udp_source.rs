//! Where cuttle's ICP and HTCP queries come from, as Squid sends them: from
//! the icp_port / htcp_port socket (a Squid peer's `icp_access` lists that
//! address), replies heard on that same socket; with udp_outgoing_address,
//! from a socket on that address and the same port. With no icp_port (no
//! htcp_port) nothing is asked, and cuttle says so as Squid does; `cuttle
//! check` warns about each peer that will never be asked.
//! Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use cuttle_protocol::icp::Opcode;
use peer_lab::{
    free_udp_port, get, log_lines, start_cuttle, tail, text_body, text_origin, FakePeer, HttpMode,
    IcpMode, Squid,
};
use support::TempDir;

/// A recording peer answering MISS; cuttle on `cuttle_ip` with `lines`
/// asks it about one URL of an origin. Returns the sources of the queries
/// it got and cuttle's access.log line for the URL.
async fn one_query(
    tmp: &TempDir,
    peer_ip: Ipv4Addr,
    cuttle_ip: Ipv4Addr,
    lines: &str,
) -> (Vec<SocketAddr>, Vec<String>, String) {
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/asked"]).await;
    let peer = FakePeer::start(peer_ip, IcpMode::Answer(Opcode::Miss), HttpMode::Ok).await;
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "{}\nicp_query_timeout 3000\n{lines}",
            peer.line("sibling", "no-digest")
        ),
    );
    peer.wait_probed(&cuttle).await;
    let url = origin.url("/asked");
    assert_eq!(get(cuttle.addr, &url).await, (200, text_body("/asked")));
    let line = log_lines(&cuttle.log, &url, 1).remove(0);
    let sources = peer.query_sources.lock().unwrap().clone();
    (sources, line, cuttle.output())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icp_queries_leave_from_the_icp_port_and_its_replies_are_heard_there() {
    let (peer_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 41, 1), Ipv4Addr::new(127, 0, 41, 2));
    let tmp = TempDir::new("udpsrc-icp");
    let icp_port = free_udp_port(cuttle_ip);
    let (sources, line, output) = one_query(
        &tmp,
        peer_ip,
        cuttle_ip,
        &format!("icp_port {icp_port}\nudp_incoming_address {cuttle_ip}"),
    )
    .await;
    assert_eq!(
        sources,
        [SocketAddr::from((cuttle_ip, icp_port))],
        "queries' sources\n{output}"
    );
    // The MISS came back to the icp_port and ended the wait: no timeout.
    assert_eq!(line[8], "HIER_DIRECT/127.0.0.1", "{line:?}\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_udp_outgoing_address_icp_queries_leave_from_it_on_the_icp_port() {
    let peer_ip = Ipv4Addr::new(127, 0, 41, 11);
    let (incoming, outgoing) = (Ipv4Addr::new(127, 0, 41, 12), Ipv4Addr::new(127, 0, 41, 13));
    let tmp = TempDir::new("udpsrc-outgoing");
    let icp_port = free_udp_port(outgoing);
    let (sources, line, output) = one_query(
        &tmp,
        peer_ip,
        incoming,
        &format!(
            "icp_port {icp_port}\nudp_incoming_address {incoming}\nudp_outgoing_address {outgoing}"
        ),
    )
    .await;
    assert_eq!(
        sources,
        [SocketAddr::from((outgoing, icp_port))],
        "queries' sources\n{output}"
    );
    assert_eq!(line[8], "HIER_DIRECT/127.0.0.1", "{line:?}\n{output}");
}

/// Squid binds its outgoing socket beside a wildcard listening one (both
/// on the icp_port); so does cuttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_udp_outgoing_address_and_no_udp_incoming_address_too() {
    let (peer_ip, outgoing) = (Ipv4Addr::new(127, 0, 41, 51), Ipv4Addr::new(127, 0, 41, 52));
    let tmp = TempDir::new("udpsrc-wildcard");
    let icp_port = free_udp_port(Ipv4Addr::UNSPECIFIED);
    let (sources, line, output) = one_query(
        &tmp,
        peer_ip,
        outgoing,
        &format!("icp_port {icp_port}\nudp_outgoing_address {outgoing}"),
    )
    .await;
    assert_eq!(
        sources,
        [SocketAddr::from((outgoing, icp_port))],
        "queries' sources\n{output}"
    );
    assert_eq!(line[8], "HIER_DIRECT/127.0.0.1", "{line:?}\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_icp_port_no_icp_query_is_sent_and_cuttle_says_so_as_squid_does() {
    let (peer_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 41, 21), Ipv4Addr::new(127, 0, 41, 22));
    let tmp = TempDir::new("udpsrc-noicp");
    let (sources, line, output) = one_query(&tmp, peer_ip, cuttle_ip, "").await;
    assert_eq!(sources, [], "queries were sent\n{output}");
    assert_eq!(line[8], "HIER_DIRECT/127.0.0.1", "{line:?}\n{output}");
    assert!(
        output.contains("ICP is disabled! Cannot send ICP request to peer."),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_htcp_port_no_htcp_query_is_sent_and_cuttle_says_so_as_squid_does() {
    let (peer_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 41, 31), Ipv4Addr::new(127, 0, 41, 32));
    let tmp = TempDir::new("udpsrc-nohtcp");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/asked"]).await;
    // A recording HTCP peer: any datagram to it counts.
    let htcp = tokio::net::UdpSocket::bind((peer_ip, 0)).await.unwrap();
    let peer = FakePeer::start(peer_ip, IcpMode::Silent, HttpMode::Ok).await;
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "cache_peer {peer_ip} sibling {} {} htcp no-digest\n\
             icp_port {}\nudp_incoming_address {cuttle_ip}\nicp_query_timeout 500",
            peer.http_port,
            htcp.local_addr().unwrap().port(),
            free_udp_port(cuttle_ip)
        ),
    );
    peer.wait_probed(&cuttle).await;
    let url = origin.url("/asked");
    assert_eq!(get(cuttle.addr, &url).await, (200, text_body("/asked")));
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(300), htcp.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "an HTCP query was sent: {got:?}\n{}",
        cuttle.output()
    );
    cuttle.wait_output(
        "HTCP is disabled! Cannot send HTCP request to peer.",
        Duration::from_secs(5),
    );
}

/// HTCP TSTs leave from the htcp_port socket, with or without an ICP
/// port (here without: the HTCP peer is still asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htcp_queries_leave_from_the_htcp_port() {
    let (peer_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 41, 61), Ipv4Addr::new(127, 0, 41, 62));
    let tmp = TempDir::new("udpsrc-htcp");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/asked"]).await;
    let htcp = tokio::net::UdpSocket::bind((peer_ip, 0)).await.unwrap();
    let peer = FakePeer::start(peer_ip, IcpMode::Silent, HttpMode::Ok).await;
    let htcp_port = free_udp_port(cuttle_ip);
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "cache_peer {peer_ip} sibling {} {} htcp no-digest\n\
             htcp_port {htcp_port}\nudp_incoming_address {cuttle_ip}\nicp_query_timeout 500",
            peer.http_port,
            htcp.local_addr().unwrap().port(),
        ),
    );
    peer.wait_probed(&cuttle).await;
    let url = origin.url("/asked");
    assert_eq!(get(cuttle.addr, &url).await, (200, text_body("/asked")));
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), htcp.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no HTCP query arrived\n{}", cuttle.output()))
        .unwrap();
    let tst = cuttle_protocol::htcp::parse(&buf[..n]).expect("an HTCP datagram");
    assert_eq!(tst.opcode(), cuttle_protocol::htcp::Opcode::Tst);
    assert_eq!(
        from,
        SocketAddr::from((cuttle_ip, htcp_port)),
        "{}",
        cuttle.output()
    );
}

#[test]
fn check_warns_about_each_peer_never_asked_without_icp_port_or_htcp_port() {
    let tmp = TempDir::new("udpsrc-check");
    let conf = tmp.path().join("squid.conf");
    std::fs::write(
        &conf,
        "http_port 3128\n\
         cache_peer 10.0.0.1 sibling 3128 3130\n\
         cache_peer 10.0.0.2 parent 3128 3130 no-query\n\
         cache_peer 10.0.0.3 parent 3128 4827 htcp\n\
         cache_peer 10.0.0.4 parent 3128 0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["check", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let path = conf.display();
    assert!(
        err.contains(&format!(
            "{path}:2: warning: cache_peer 10.0.0.1 will never be asked: ICP is disabled \
             (no icp_port); add icp_port, or mark the peer no-query"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:4: warning: cache_peer 10.0.0.3 will never be asked: HTCP is disabled \
             (no htcp_port); add htcp_port, or mark the peer no-query"
        )),
        "{err}"
    );
    // A no-query peer and one with no ICP port are never asked anyway.
    assert!(!err.contains(":3: warning"), "{err}");
    assert!(!err.contains(":5: warning"), "{err}");

    std::fs::write(
        &conf,
        "http_port 3128\nicp_port 3130\nhtcp_port 4827\n\
         cache_peer 10.0.0.1 sibling 3128 3130\n\
         cache_peer 10.0.0.3 parent 3128 4827 htcp\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["check", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("never be asked"), "{err}");
}

/// A Squid sibling that answers ICP only from cuttle's icp_port address
/// (`acl cuttle src ADDR`; udp_outgoing_address unset on cuttle): its HIT
/// reaches cuttle, which fetches the object from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_sibling_allowing_only_cuttles_icp_address_answers_hit() {
    let (squid_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 41, 41), Ipv4Addr::new(127, 0, 41, 42));
    let tmp = TempDir::new("udpsrc-squid");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/cached"]).await;
    let cached = origin.url("/cached");
    let squid = Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        &cuttle_ip.to_string(),
        "",
    );
    assert_eq!(get(squid.http_addr(), &cached).await.0, 200);
    let icp_port = free_udp_port(cuttle_ip);
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "cache_peer {squid_ip} sibling {} {} no-digest\n\
             icp_port {icp_port}\n\
             udp_incoming_address {cuttle_ip}\n\
             tcp_outgoing_address {cuttle_ip}\n\
             icp_query_timeout 3000",
            squid.http_port, squid.icp_port
        ),
    );
    // cuttle asks the peer only once its TCP probe succeeded.
    cuttle.wait_probed(&squid_ip.to_string());
    let diag = || {
        format!(
            "\ncuttle output:\n{}\nsquid access.log:\n{}",
            cuttle.output(),
            tail(&squid.access_log(), 10)
        )
    };
    assert_eq!(
        get(cuttle.addr, &cached).await,
        (200, text_body("/cached")),
        "{}",
        diag()
    );
    assert_eq!(origin.count("/cached"), 1, "the origin was asked{}", diag());
    let ours = log_lines(&cuttle.log, &cached, 1);
    assert_eq!(
        ours[0][8],
        format!("SIBLING_HIT/{squid_ip}"),
        "{:?}{}",
        ours[0],
        diag()
    );
    let theirs = log_lines(&squid.access_log(), &cached, 3);
    assert!(
        theirs
            .iter()
            .any(|l| l[2] == cuttle_ip.to_string() && l[3] == "UDP_HIT/000"),
        "{}",
        diag()
    );
}
