//! cuttle's ICP client against misbehaving peers, all written here in Rust
//! on the test's own loopback addresses: a peer that never answers, one
//! that sends garbage, one that is down, one that answers HIT and then 504
//! over HTTP (a false hit), a sibling that goes silent (dead) and comes
//! back, a parent that is down and comes back. Every client request must
//! still succeed, within icp_query_timeout plus the origin's time.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::icp::Opcode;
use peer_lab::{
    free_tcp_port, free_udp_port, log_lines, start_cuttle, CuttleNode, FakePeer, HttpMode, IcpMode,
};
use support::{Origin, Reply, Req, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn origin() -> Origin {
    let origin = Origin::start().await;
    for p in ["/a", "/b", "/c", "/d", "/e", "/f"] {
        origin.route(p, move |_| {
            Reply::ok(format!("origin {p}")).cc("max-age=600")
        });
    }
    origin
}

/// GET `url` through cuttle; the status, body and how long it took.
async fn get(cuttle: &CuttleNode, url: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let r = Req::get(url).send_to(cuttle.addr).await;
    (r.status, r.text(), start.elapsed())
}

fn hierarchy(cuttle: &CuttleNode, url: &str) -> String {
    let lines = log_lines(&cuttle.log, url, 1);
    assert_eq!(
        lines.len(),
        1,
        "access.log lines for {url}:\n{}",
        cuttle.output()
    );
    lines[0][8].clone()
}

const LIMIT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_garbage_and_down_peers_cost_at_most_the_icp_timeout() {
    let origin = origin().await;
    let silent = FakePeer::start(Ipv4Addr::new(127, 0, 3, 10), IcpMode::Silent, HttpMode::Ok).await;
    let garbage =
        FakePeer::start(Ipv4Addr::new(127, 0, 3, 11), IcpMode::Garbage, HttpMode::Ok).await;
    // Down: nothing listens on its ports.
    let down_ip = Ipv4Addr::new(127, 0, 3, 12);
    let down = format!(
        "cache_peer {down_ip} sibling {} {}",
        free_tcp_port(down_ip),
        free_udp_port(down_ip)
    );
    let tmp = TempDir::new("peer-faults-1");
    let cuttle = start_cuttle(
        tmp.path(),
        Ipv4Addr::new(127, 0, 3, 9),
        &format!(
            "{}\n{}\n{down}\nudp_incoming_address 127.0.3.9\nicp_port {icp}\nicp_query_timeout 300",
            silent.line("sibling", ""),
            garbage.line("sibling", ""),
            icp = free_udp_port(Ipv4Addr::new(127, 0, 3, 9))
        ),
    );
    // Only peers whose TCP probe succeeded are asked.
    cuttle.wait_probed("127.0.3.10");
    cuttle.wait_probed("127.0.3.11");
    let url = origin.url("/a");
    let (status, text, took) = get(&cuttle, &url).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "origin /a"),
        "{}",
        cuttle.output()
    );
    assert!(took < Duration::from_millis(300) + LIMIT, "took {took:?}");
    // Nobody answered usefully: the wait ended by timeout.
    assert_eq!(hierarchy(&cuttle, &url), "TIMEOUT_HIER_DIRECT/127.0.0.1");
    // Both live peers were asked, with a non-zero reqnum and the URL as is.
    for p in [&silent, &garbage] {
        let q = p.queries.lock().unwrap().clone();
        assert_eq!(q.len(), 1, "{q:?}");
        assert_ne!(q[0].0, 0);
        assert_eq!(q[0].1, url);
        assert!(
            p.http_seen.lock().unwrap().is_empty(),
            "no HTTP to a peer without a hit"
        );
    }
    assert!(
        cuttle.output().contains("malformed ICP reply dropped"),
        "{}",
        cuttle.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_hit_falls_back_direct_and_the_sibling_got_squids_request() {
    let origin = origin().await;
    let liar = FakePeer::start(
        Ipv4Addr::new(127, 0, 3, 14),
        IcpMode::Answer(Opcode::Hit),
        HttpMode::GatewayTimeout,
    )
    .await;
    let tmp = TempDir::new("peer-faults-2");
    let cuttle = start_cuttle(
        tmp.path(),
        Ipv4Addr::new(127, 0, 3, 13),
        &format!(
            "{}\nudp_incoming_address 127.0.3.13\nicp_port {icp}\ntcp_outgoing_address 127.0.3.13\nicp_query_timeout 1000",
            liar.line("sibling", ""),
            icp = free_udp_port(Ipv4Addr::new(127, 0, 3, 13))
        ),
    );
    liar.wait_probed(&cuttle).await;
    let url = origin.url("/b");
    let (status, text, took) = get(&cuttle, &url).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "origin /b"),
        "{}",
        cuttle.output()
    );
    assert!(took < Duration::from_millis(1000) + LIMIT, "took {took:?}");
    // The code of the source actually used (squid-spec 3.2).
    assert_eq!(hierarchy(&cuttle, &url), "HIER_DIRECT/127.0.0.1");
    assert_eq!(origin.count("/b"), 1);
    let seen = liar.http_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = seen[0].to_ascii_lowercase();
    assert!(
        head.starts_with(&format!("get {url} http/1.1\r\n")),
        "absolute-form to a peer: {head}"
    );
    assert!(
        head.contains("\r\ncache-control: max-age=259200, only-if-cached\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nvia: 1.1 cuttle-127.0.3.13 (cuttle/"),
        "{head}"
    );
    // The object came from the origin and was stored: a second request is a hit.
    let (status, _, _) = get(&cuttle, &url).await;
    assert_eq!(status, 200);
    let lines = log_lines(&cuttle.log, &url, 2);
    // Kept in memory when stored: its first hit is a memory hit.
    assert_eq!(lines[1][3], "TCP_MEM_HIT/200", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sibling_is_marked_dead_and_its_next_reply_revives_it() {
    let origin = origin().await;
    let peer = FakePeer::start(Ipv4Addr::new(127, 0, 3, 16), IcpMode::Silent, HttpMode::Ok).await;
    let tmp = TempDir::new("peer-faults-3");
    let cuttle = start_cuttle(
        tmp.path(),
        Ipv4Addr::new(127, 0, 3, 15),
        &format!(
            "{}\nudp_incoming_address 127.0.3.15\nicp_port {icp}\nicp_query_timeout 200\ndead_peer_timeout 1 second",
            peer.line("sibling", ""),
            icp = free_udp_port(Ipv4Addr::new(127, 0, 3, 15))
        ),
    );
    peer.wait_probed(&cuttle).await;
    // 1. Unanswered: the full (200 ms) wait.
    let c = origin.url("/c");
    assert_eq!(get(&cuttle, &c).await.0, 200);
    assert_eq!(hierarchy(&cuttle, &c), "TIMEOUT_HIER_DIRECT/127.0.0.1");
    // 2. Over dead_peer_timeout later the peer is dead: still asked (once
    // per dead_peer_timeout), but no reply is awaited, so even its HIT
    // is not used and there is no TIMEOUT_.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    peer.set_icp(IcpMode::Answer(Opcode::Hit));
    let d = origin.url("/d");
    let (status, _, took) = get(&cuttle, &d).await;
    assert_eq!(status, 200);
    assert!(took < LIMIT);
    assert_eq!(
        hierarchy(&cuttle, &d),
        "HIER_DIRECT/127.0.0.1",
        "{}",
        cuttle.output()
    );
    assert_eq!(peer.queries.lock().unwrap().len(), 2);
    // 3. That reply revived it (it comes after the request ended: wait
    // for cuttle to say so): the next miss uses its HIT.
    cuttle.wait_output("REVIVED", Duration::from_secs(10));
    let e = origin.url("/e");
    let (status, text, _) = get(&cuttle, &e).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "from peer"),
        "{}",
        cuttle.output()
    );
    assert_eq!(hierarchy(&cuttle, &e), "SIBLING_HIT/127.0.3.16");
    assert_eq!(origin.count("/e"), 0);
    assert!(cuttle.output().contains("REVIVED"), "{}", cuttle.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_parent_is_skipped_until_a_probe_finds_it_up() {
    let origin = origin().await;
    let parent_ip = Ipv4Addr::new(127, 0, 3, 18);
    let parent_port = free_tcp_port(parent_ip);
    let tmp = TempDir::new("peer-faults-4");
    let cuttle = start_cuttle(
        tmp.path(),
        Ipv4Addr::new(127, 0, 3, 17),
        &format!(
            "cache_peer {parent_ip} parent {parent_port} 0 no-query\ntcp_outgoing_address 127.0.3.17"
        ),
    );
    // The probe at start must find the parent down (not yet listening).
    cuttle.wait_output("TCP probe failed", Duration::from_secs(10));
    let a = origin.url("/a");
    let (status, _, took) = get(&cuttle, &a).await;
    assert_eq!(status, 200);
    assert!(took < LIMIT);
    assert_eq!(hierarchy(&cuttle, &a), "HIER_DIRECT/127.0.0.1");
    // The parent comes up; the next request that consults it (a second
    // later) probes it, the one after uses it.
    let listener = TcpListener::bind(SocketAddr::from((parent_ip, parent_port)))
        .await
        .expect("parent port still free");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, from)) = listener.accept().await else {
                return;
            };
            s.lock().unwrap().push(from.ip());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if let Ok(n) = stream.read(&mut buf).await {
                    if n > 0 {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nfrom parent")
                            .await;
                    }
                }
            });
        }
    });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = origin.url("/b");
    assert_eq!(get(&cuttle, &b).await.0, 200);
    assert_eq!(hierarchy(&cuttle, &b), "HIER_DIRECT/127.0.0.1");
    // The probe that request started runs beside it: wait for its result.
    cuttle.wait_probed(&parent_ip.to_string());
    let f = origin.url("/f");
    let (status, text, _) = get(&cuttle, &f).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "from parent"),
        "{}",
        cuttle.output()
    );
    assert_eq!(
        hierarchy(&cuttle, &f),
        format!("FIRSTUP_PARENT/{parent_ip}")
    );
    // Probe and fetch came from tcp_outgoing_address.
    let from = seen.lock().unwrap().clone();
    assert!(
        from.len() >= 2 && from.iter().all(|ip| ip.to_string() == "127.0.3.17"),
        "{from:?}"
    );
}
