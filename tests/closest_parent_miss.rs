//! CLOSEST_PARENT_MISS both ways with real Squid 5.7s (squid-spec 1.3, 1.6,
//! 3.2): a parent that has fetched from an origin reports its RTT to it in
//! an ICP MISS (ICP_FLAG_SRC_RTT), and a child with `query_icmp on` sends
//! its miss to the parent reporting the smallest RTT.
//! - Squid child, cuttle and another Squid as its parents: cuttle, which
//!   fetched from the origin before (its NetDB timed the handshake),
//!   answers with the flag; Squid logs `CLOSEST_PARENT_MISS/<cuttle>`.
//! - cuttle child, two Squid parents: the one that fetched from the
//!   origin answers SRC_RTT with rtt 1 (Squid's NetDB placeholder, pinger
//!   off) and cuttle logs `CLOSEST_PARENT_MISS/<that Squid>`; with
//!   `closest-only` on the other parent, that one is never the
//!   FIRST_PARENT_MISS, and with it on both, a miss nobody reports an RTT
//!   for goes to the first parent in config order (FIRSTUP_PARENT), as
//!   Squid 5.7 does (seen).
//!
//! Every node has its own address in 127.0.8.0/24 (Squid ignores ICP from
//! its own IP). The child Squid has `never_direct`: Squid 5.7 learns the
//! origin's host in its own NetDB from any forwarded request (rtt 1), and
//! from then on goes CLOSEST_DIRECT when its own RTT is no worse than the
//! parent's (seen). Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use peer_lab::{
    free_udp_port, get, lines_where, log_lines, start_cuttle, tail, text_body, text_origin,
    CuttleNode, Squid, STARTUP,
};
use support::TempDir;

const SRC_RTT: u32 = 0x4000_0000;

/// Sends an ICP query for `url` with ICP_FLAG_SRC_RTT from `from` to `to`;
/// returns the reply's (opcode, options, option data).
fn ask_src_rtt(from: Ipv4Addr, to: SocketAddr, url: &str) -> (u8, u32, u32) {
    let sock = UdpSocket::bind((from, 0)).expect("bind the asker");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut q = support::query(0x5eed, url);
    q[8..12].copy_from_slice(&SRC_RTT.to_be_bytes());
    sock.send_to(&q, to).expect("send the query");
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("an ICP reply");
    assert!(n >= 20, "short reply: {:?}", &buf[..n]);
    let word = |at: usize| u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    assert_eq!(word(4), 0x5eed, "reqnum echoed");
    (buf[0], word(8), word(12))
}

/// The hierarchy field of the single GET line for `url` in `log`.
fn hierarchy_of(log: &Path, url: &str) -> String {
    let gets = lines_where(log, url, |l| l[5] == "GET");
    assert_eq!(gets.len(), 1, "GET lines for {url}: {gets:?}");
    gets[0][8].clone()
}

const ICP_MISS: u8 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squid_child_sends_its_miss_to_cuttle_which_reports_the_origin_rtt() {
    let origin_ip = Ipv4Addr::new(127, 0, 8, 1);
    let cuttle_ip = Ipv4Addr::new(127, 0, 8, 2);
    let other_ip = Ipv4Addr::new(127, 0, 8, 3);
    let child_ip = Ipv4Addr::new(127, 0, 8, 4);
    let asker_ip = Ipv4Addr::new(127, 0, 8, 5);
    let tmp = TempDir::new("closest-squid-child");
    let origin = text_origin(origin_ip, &["/warm", "/a", "/b"]).await;

    // cuttle, a parent answering ICP to the child and to this test.
    let icp_port = free_udp_port(cuttle_ip);
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "icp_port {icp_port}\n\
             udp_incoming_address {cuttle_ip}\n\
             tcp_outgoing_address {cuttle_ip}\n\
             acl icp_peers src {child_ip}/32 {asker_ip}/32\n\
             icp_access allow icp_peers\n\
             icp_access deny all\n\
             log_icp_queries on"
        ),
    );
    let cuttle_icp = SocketAddr::from((cuttle_ip, icp_port));
    cuttle.wait_output(&format!("cuttle: ICP on {cuttle_icp}"), STARTUP);

    // Before cuttle has fetched from the origin: no RTT to report.
    let asked = origin.url("/asked");
    let (op, flags, data) = ask_src_rtt(asker_ip, cuttle_icp, &asked);
    assert_eq!((op, flags, data), (ICP_MISS, 0, 0), "{}", cuttle.output());
    // cuttle fetches from the origin itself (DIRECT): the handshake is timed.
    assert_eq!(get(cuttle.addr, &origin.url("/warm")).await.0, 200);
    assert_eq!(
        hierarchy_of(&cuttle.log, &origin.url("/warm")),
        format!("HIER_DIRECT/{origin_ip}")
    );
    let (op, flags, data) = ask_src_rtt(asker_ip, cuttle_icp, &asked);
    assert_eq!((op, flags), (ICP_MISS, SRC_RTT), "{}", cuttle.output());
    assert!(
        (1..0xFFFF).contains(&(data & 0xFFFF)) && data >> 16 == 0,
        "rtt 1..0xFFFE ms, hops 0: {data:#010x}"
    );
    // Another host (same address, other name): unknown, no flag.
    let by_name = format!("http://localhost:{}/asked", origin.port());
    assert_eq!(
        ask_src_rtt(asker_ip, cuttle_icp, &by_name),
        (ICP_MISS, 0, 0)
    );

    // The other parent: a Squid that never fetched from the origin.
    let other = Squid::start(
        &tmp.path().join("other"),
        other_ip,
        &format!("{child_ip}/32"),
        "",
    );
    // The child: query_icmp on, never_direct, both parents ICP-queried,
    // the other one first in config order (FIRSTUP_PARENT would name it).
    // cache deny all and no persistent connections to servers: each
    // request is selected anew and logged with its own code (see
    // tests/squid_child_of_cuttle.rs). debug 15,2 shows the TCP probes.
    let child = Squid::start(
        &tmp.path().join("child"),
        child_ip,
        "127.0.0.1/32",
        &format!(
            "query_icmp on\n\
             never_direct allow all\n\
             icp_query_timeout 5000\n\
             cache deny all\n\
             server_persistent_connections off\n\
             debug_options ALL,1 15,2\n\
             cache_peer {other_ip} parent {} {} no-digest name=other\n\
             cache_peer {cuttle_ip} parent {} {icp_port} no-digest name=cuttle",
            other.http_port,
            other.icp_port,
            cuttle.addr.port()
        ),
    );
    // The child's TCP probes of its parents.
    child.wait_probed(other.http_addr());
    child.wait_probed(cuttle.addr);
    let diag = || {
        format!(
            "\nchild access.log:\n{}\nother access.log:\n{}\ncuttle access.log:\n{}",
            tail(&child.access_log(), 10),
            tail(&other.access_log(), 10),
            tail(&cuttle.log, 12)
        )
    };

    for path in ["/a", "/b"] {
        let url = origin.url(path);
        assert_eq!(get(child.http_addr(), &url).await, (200, text_body(path)));
        assert_eq!(
            hierarchy_of(&child.access_log(), &url),
            format!("CLOSEST_PARENT_MISS/{cuttle_ip}"),
            "{}",
            diag()
        );
        // Both parents were asked; cuttle fetched the object DIRECT.
        let child = child_ip.to_string();
        let asked = lines_where(&cuttle.log, &url, |l| {
            l[2] == child && l[3] == "UDP_MISS/000"
        });
        assert_eq!(asked.len(), 1, "{}", diag());
        let fetched = lines_where(&cuttle.log, &url, |l| {
            l[2] == child && l[5] == "GET" && l[8] == format!("HIER_DIRECT/{origin_ip}")
        });
        assert_eq!(fetched.len(), 1, "{}", diag());
        let theirs = lines_where(&other.access_log(), &url, |l| l[3] == "UDP_MISS/000");
        assert_eq!(theirs.len(), 1, "{}", diag());
        let other_gets = log_lines(&other.access_log(), &url, 0)
            .into_iter()
            .filter(|l| l[5] == "GET")
            .count();
        assert_eq!(other_gets, 0, "{}", diag());
    }
    assert_eq!((origin.count("/a"), origin.count("/b")), (1, 1));
}

/// A cuttle child on `ip` of two Squid parents (`first` before `second` in
/// config order, each with its extra cache_peer options), query_icmp on;
/// returns once it has probed both.
fn start_child(dir: &Path, ip: Ipv4Addr, parents: [(&Squid, &str, &str); 2]) -> CuttleNode {
    let mut lines = format!(
        "query_icmp on\n\
         icp_query_timeout 5000\n\
         udp_outgoing_address {ip}\n\
         udp_incoming_address {ip}\n\
         icp_port {icp}\n\
         tcp_outgoing_address {ip}\n",
        icp = free_udp_port(ip)
    );
    for (squid, name, options) in &parents {
        lines.push_str(&format!(
            "cache_peer {} parent {} {} no-digest name={name} {options}\n",
            squid.ip, squid.http_port, squid.icp_port
        ));
    }
    let cuttle = start_cuttle(dir, ip, &lines);
    for (_, name, _) in &parents {
        cuttle.wait_output(&format!("TCP probe succeeded peer={name}"), STARTUP);
    }
    cuttle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_child_sends_its_miss_to_the_squid_that_reports_the_origin_rtt() {
    let origin_ip = Ipv4Addr::new(127, 0, 8, 21);
    let near_ip = Ipv4Addr::new(127, 0, 8, 22);
    let far_ip = Ipv4Addr::new(127, 0, 8, 23);
    let cuttle_ip = Ipv4Addr::new(127, 0, 8, 24);
    let asker_ip = Ipv4Addr::new(127, 0, 8, 25);
    let cuttle2_ip = Ipv4Addr::new(127, 0, 8, 26);
    let unknown_ip = Ipv4Addr::new(127, 0, 8, 27);
    let cuttle3_ip = Ipv4Addr::new(127, 0, 8, 28);
    let third_ip = Ipv4Addr::new(127, 0, 8, 29);
    let tmp = TempDir::new("closest-cuttle-child");
    let paths = ["/warm", "/x", "/y", "/z", "/u1", "/u2", "/u4"];
    let origin = text_origin(origin_ip, &paths).await;
    // Two more origin hosts neither Squid has fetched from.
    let unknown = text_origin(unknown_ip, &paths).await;
    let third = text_origin(third_ip, &paths).await;

    let clients = format!("{cuttle_ip}/32 {cuttle2_ip}/32 {cuttle3_ip}/32 {asker_ip}/32");
    let near = Squid::start(&tmp.path().join("near"), near_ip, &clients, "");
    let far = Squid::start(&tmp.path().join("far"), far_ip, &clients, "");
    // `near` fetches from the origin once: its NetDB now has the host.
    assert_eq!(get(near.http_addr(), &origin.url("/warm")).await.0, 200);

    // What the two Squids answer a SRC_RTT query (the behaviour cuttle
    // relies on, seen here rather than assumed): the flag and rtt 1 from
    // the one that fetched from the host, nothing from the other, and
    // nothing for a host neither knows.
    let near_icp = SocketAddr::from((near_ip, near.icp_port));
    let far_icp = SocketAddr::from((far_ip, far.icp_port));
    assert_eq!(
        ask_src_rtt(asker_ip, near_icp, &origin.url("/asked")),
        (ICP_MISS, SRC_RTT, 1),
        "near: {}",
        near.cache_log()
    );
    assert_eq!(
        ask_src_rtt(asker_ip, far_icp, &origin.url("/asked")),
        (ICP_MISS, 0, 0)
    );
    assert_eq!(
        ask_src_rtt(asker_ip, near_icp, &unknown.url("/asked")),
        (ICP_MISS, 0, 0)
    );

    // `far` first in config order: FIRSTUP_PARENT would name it.
    let cuttle = start_child(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        [(&far, "far", ""), (&near, "near", "")],
    );
    let diag = |c: &CuttleNode| {
        format!(
            "\ncuttle access.log:\n{}\nnear access.log:\n{}\nfar access.log:\n{}\ncuttle output:\n{}",
            tail(&c.log, 10),
            tail(&near.access_log(), 10),
            tail(&far.access_log(), 10),
            c.output()
        )
    };
    for path in ["/x", "/y"] {
        let url = origin.url(path);
        assert_eq!(get(cuttle.addr, &url).await, (200, text_body(path)));
        assert_eq!(
            hierarchy_of(&cuttle.log, &url),
            format!("CLOSEST_PARENT_MISS/{near_ip}"),
            "{}",
            diag(&cuttle)
        );
        let fetched = lines_where(&near.access_log(), &url, |l| {
            l[2] == cuttle_ip.to_string()
                && l[5] == "GET"
                && l[8] == format!("HIER_DIRECT/{origin_ip}")
        });
        assert_eq!(
            fetched.len(),
            1,
            "near fetched it for cuttle{}",
            diag(&cuttle)
        );
        let asked = lines_where(&far.access_log(), &url, |l| l[3] == "UDP_MISS/000");
        assert_eq!(asked.len(), 1, "{}", diag(&cuttle));
        let far_gets = log_lines(&far.access_log(), &url, 0)
            .into_iter()
            .filter(|l| l[5] == "GET")
            .count();
        assert_eq!(far_gets, 0, "{}", diag(&cuttle));
    }
    drop(cuttle);

    // `closest-only` on `far`: it is never the first parent miss. For the
    // known host `near` is still the closest. For a host neither Squid
    // has fetched from nobody reports an RTT, and only `near` may be the
    // first parent miss; once `near` has fetched from that host it knows
    // it too (Squid learns a host from every request it forwards).
    let cuttle = start_child(
        &tmp.path().join("cuttle2"),
        cuttle2_ip,
        [(&far, "far", "closest-only"), (&near, "near", "")],
    );
    for (url, code) in [
        (origin.url("/z"), "CLOSEST_PARENT_MISS"),
        (unknown.url("/u1"), "FIRST_PARENT_MISS"),
        (unknown.url("/u2"), "CLOSEST_PARENT_MISS"),
    ] {
        assert_eq!(get(cuttle.addr, &url).await.0, 200);
        assert_eq!(
            hierarchy_of(&cuttle.log, &url),
            format!("{code}/{near_ip}"),
            "{}",
            diag(&cuttle)
        );
        // `far` was asked and answered, but never fetched from.
        let asked = lines_where(&far.access_log(), &url, |l| {
            l[2] == cuttle2_ip.to_string() && l[3] == "UDP_MISS/000"
        });
        assert_eq!(asked.len(), 1, "{}", diag(&cuttle));
    }
    drop(cuttle);

    // `closest-only` on both, a host nobody has fetched from: neither is
    // a parent miss; the parent algorithms pick the first in config order.
    let cuttle = start_child(
        &tmp.path().join("cuttle3"),
        cuttle3_ip,
        [
            (&far, "far", "closest-only"),
            (&near, "near", "closest-only"),
        ],
    );
    let url = third.url("/u4");
    assert_eq!(get(cuttle.addr, &url).await, (200, text_body("/u4")));
    assert_eq!(
        hierarchy_of(&cuttle.log, &url),
        format!("FIRSTUP_PARENT/{far_ip}"),
        "{}",
        diag(&cuttle)
    );
}
