//! Multicast ICP between two real cuttle nodes (squid-spec 1.9), inside a
//! private network namespace the test makes for itself (`unshare -rn`), so
//! that `lo` can carry multicast without touching the host:
//! node A (127.0.7.2) joins 239.255.77.1 with `mcast_groups` and holds an
//! object; node B (127.0.7.3) has `cache_peer 239.255.77.1 multicast ...`
//! and A as a `multicast-responder` sibling. B counts the group's members
//! by itself first, as Squid does: a probe query for the group's own URL
//! (A answers it) 10 s after start, whose count client queries then wait
//! for. B must ask the group, take A's HIT and fetch from A
//! (SIBLING_HIT/127.0.7.2, origin not contacted), and go DIRECT for what
//! A lacks, having heard the one reply it waited for (no TIMEOUT_).
//!
//! In the namespace the local route's preferred source is 127.0.7.2:
//! A's ICP socket listens on the wildcard address (a socket bound to a
//! unicast address does not receive datagrams sent to a group), so its
//! unicast replies take the route's source, which must be A's address for
//! B to match them to the responder entry (as Squid's whichPeer does).

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use peer_lab::{free_udp_port, log_lines, start_cuttle};
use support::{Origin, Reply, Req, TempDir};

const NETNS_ENV: &str = "CUTTLE_ITEST_IN_MCAST_NETNS";
const TEST_NAME: &str = "sibling_hit_through_a_multicast_group";
const GROUP: &str = "239.255.77.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sibling_hit_through_a_multicast_group() {
    if std::env::var_os(NETNS_ENV).is_some() {
        return in_namespace().await;
    }
    let me = std::env::current_exe().expect("test binary");
    // lo up; replies from wildcard sockets leave from 127.0.7.2 (see the
    // module doc); the group is routed over lo.
    let setup = "ip link set lo up \
        && ip link set lo multicast on \
        && ip route replace local 127.0.0.0/8 dev lo src 127.0.7.2 table local \
        && ip route add 239.0.0.0/8 dev lo \
        && exec \"$0\" \"$@\"";
    let out = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", setup])
        .arg(&me)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .output()
        .expect("run `unshare -rn` (util-linux) for a private network namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "in the namespace:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run:\n{text}"
    );
}

async fn in_namespace() {
    let origin = Origin::start().await;
    origin.route("/hot", |_| Reply::ok("held by A").cc("max-age=600"));
    origin.route("/cold", |_| Reply::ok("nobody has it").cc("max-age=600"));
    let tmp = TempDir::new("icp-multicast");
    let a_ip = Ipv4Addr::new(127, 0, 7, 2);
    let b_ip = Ipv4Addr::new(127, 0, 7, 3);
    let a_icp = free_udp_port(Ipv4Addr::UNSPECIFIED);
    let a = start_cuttle(
        &tmp.path().join("a"),
        a_ip,
        &format!(
            "icp_port {a_icp}\n\
             mcast_groups {GROUP}\n\
             icp_access allow test_clients\n\
             tcp_outgoing_address {a_ip}\n"
        ),
    );
    // A fetches and caches /hot.
    let hot = origin.url("/hot");
    let r = Req::get(&hot).send_to(a.addr).await;
    assert_eq!((r.status, r.text().as_str()), (200, "held by A"));
    assert_eq!(origin.count("/hot"), 1);

    let a_http = a.addr.port();
    let b_icp = free_udp_port(b_ip);
    let b = start_cuttle(
        &tmp.path().join("b"),
        b_ip,
        &format!(
            "icp_port {b_icp}\n\
             udp_incoming_address {b_ip}\n\
             udp_outgoing_address {b_ip}\n\
             tcp_outgoing_address {b_ip}\n\
             cache_peer {GROUP} multicast 3128 {a_icp} ttl=1\n\
             cache_peer {a_ip} sibling {a_http} {a_icp} multicast-responder\n\
             mcast_icp_query_timeout 500\n\
             icp_query_timeout 2000\n"
        ),
    );
    // The group's RTT is never learnt (its members answer, not the group),
    // so the dynamic wait would be the 5 ms floor: icp_query_timeout above
    // keeps a loaded machine from turning A's answers into timeouts.
    //
    // B counts the group with a query of its own, without any client
    // request: 10 s after start, then every 15 minutes.
    b.wait_output("multicast group counted", Duration::from_secs(40));
    assert!(
        b.output().contains("responders=1"),
        "B counted:\n{}",
        b.output()
    );
    let probe = format!("http://{GROUP}:{a_icp}/");
    let probed = log_lines(&a.log, &probe, 1);
    assert!(
        probed
            .iter()
            .any(|l| l[2] == b_ip.to_string() && l[5] == "ICP_QUERY"),
        "A's log for {probe}: {probed:?}"
    );
    let r = Req::get(&hot).send_to(b.addr).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "held by A"),
        "B:\n{}\nA:\n{}",
        b.output(),
        a.output()
    );
    let lines = log_lines(&b.log, &hot, 1);
    assert_eq!(lines.len(), 1, "B's log for {hot}:\n{}", b.output());
    assert_eq!(
        lines[0][8],
        format!("SIBLING_HIT/{a_ip}"),
        "B:\n{}",
        b.output()
    );
    assert_eq!(origin.count("/hot"), 1, "the origin was asked again");
    // A answered a query that came over the group from B.
    let a_icp_log = log_lines(&a.log, &hot, 3);
    assert!(
        a_icp_log
            .iter()
            .any(|l| l[3] == "UDP_HIT/000" && l[2] == b_ip.to_string()),
        "A's log for {hot}: {a_icp_log:?}"
    );

    // What A lacks: A answers MISS, B goes direct.
    let cold = origin.url("/cold");
    let r = Req::get(&cold).send_to(b.addr).await;
    assert_eq!((r.status, r.text().as_str()), (200, "nobody has it"));
    let lines = log_lines(&b.log, &cold, 1);
    assert_eq!(lines.len(), 1, "B's log for {cold}:\n{}", b.output());
    assert_eq!(
        lines[0][8],
        "HIER_DIRECT/127.0.0.1",
        "{:?}\nB:\n{}",
        lines[0],
        b.output()
    );
    assert_eq!(origin.count("/cold"), 1);
    let a_cold = log_lines(&a.log, &cold, 1);
    assert!(
        a_cold.iter().any(|l| l[3] == "UDP_MISS/000"),
        "A's log for {cold}: {a_cold:?}"
    );
}
