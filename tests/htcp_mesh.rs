//! HTCP paths beyond the basic exchange, with real Squid 5.7s on
//! 127.0.13.0/24 (tests/htcp_squid.rs has TST and CLR both ways):
//!
//! 1. `htcp=oldsquid` (MINOR 0, opcode in the low nibble), both directions,
//!    with a UDP tap in front of the answering node that records every
//!    datagram (and forwards TCP, so the peer's HTTP port is the tap's too).
//!    A Squid 5.7 asking that way takes no answer at all, cuttle's or a
//!    Squid's; cuttle asking a Squid that way works.
//! 2. `htcp=forward-clr`: a CLR from Squid A relayed by cuttle to Squid B;
//!    a CLR cuttle refuses is not relayed.
//! 3. NOP, MON and SET: Squid answers none; cuttle answers each.
//!
//! Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::htcp::{self, Op};
use peer_lab::{
    free_tcp_port, free_udp_port, log_lines, squid_binary, start_cuttle, tail, text_body,
    text_origin, CuttleNode, Squid,
};
use support::{Req, TempDir};

/// GET `url` through the proxy at `proxy`, from `client`; (status, body).
async fn get(proxy: SocketAddr, client: Ipv4Addr, url: &str) -> (u16, String) {
    let r = Req::get(url).from(IpAddr::V4(client)).send_to(proxy).await;
    (r.status, r.text())
}

/// A lab Squid with HTCP (no ICP) on `ip`: its htcp_port, then `extra`
/// (peers, htcp_access...). Waits until it accepts HTCP too.
fn start_squid(dir: &Path, ip: Ipv4Addr, extra: &str) -> (Squid, u16) {
    let http = free_tcp_port(ip);
    let htcp_port = free_udp_port(ip);
    let d = dir.display();
    let conf = format!(
        "# private Squid for tests/htcp_mesh.rs; nothing outside {d}\n\
         http_port {ip}:{http}\n\
         icp_port 0\n\
         htcp_port {htcp_port}\n\
         udp_incoming_address {ip}\n\
         udp_outgoing_address {ip}\n\
         tcp_outgoing_address {ip}\n\
         visible_hostname squid-{ip}\n\
         pid_filename {d}/squid.pid\n\
         cache_log {d}/cache.log\n\
         access_log stdio:{d}/access.log squid\n\
         cache_store_log none\n\
         netdb_filename none\n\
         coredump_dir {d}\n\
         cache_mem 8 MB\n\
         pinger_enable off\n\
         minimum_direct_rtt 0\n\
         dns_nameservers 127.0.0.1\n\
         shutdown_lifetime 0 seconds\n\
         acl purge method PURGE\n\
         acl test_clients src 127.0.13.0/24\n\
         http_access allow purge test_clients\n\
         http_access allow test_clients\n\
         http_access deny all\n\
         {extra}\n"
    );
    let squid = Squid::start_with_conf(dir, ip, http, 0, &conf);
    let cache_log = dir.join("cache.log");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&cache_log)
        .unwrap_or_default()
        .contains("Accepting HTCP messages")
    {
        assert!(
            Instant::now() < deadline,
            "no HTCP in Squid:\n{}",
            tail(&cache_log, 20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (squid, htcp_port)
}

/// Starts cuttle on `ip` with HTCP on a free port and `lines`; returns it
/// and its HTCP address once it says HTCP is on.
fn cuttle_with_htcp(dir: &Path, ip: Ipv4Addr, lines: &str) -> (CuttleNode, SocketAddr) {
    let port = free_udp_port(ip);
    let cuttle = start_cuttle(
        dir,
        ip,
        &format!(
            "htcp_port {port}\n\
             udp_incoming_address {ip}\n\
             udp_outgoing_address {ip}\n\
             {lines}\n"
        ),
    );
    cuttle.wait_output("cuttle: HTCP on", Duration::from_secs(15));
    (cuttle, SocketAddr::from((ip, port)))
}

/// A page of a Squid's cache manager, asked from the Squid's own address.
async fn mgr(squid: &Squid, page: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET cache_object://{ip}/{page} HTTP/1.0\r\nHost: {ip}\r\n\r\n",
        ip = squid.ip
    );
    let mut s = support::connect(squid.http_addr(), Some(IpAddr::V4(squid.ip))).await;
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(support::WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until `squid`'s server_list shows `peers` peers up (its TCP
/// probe of each succeeded: Squid asks only those).
async fn wait_peers_up(squid: &Squid, peers: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = mgr(squid, "server_list").await;
        if page.matches("Status     : Up").count() >= peers {
            return;
        }
        assert!(Instant::now() < deadline, "peers never up:\n{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `log` has a line for `url` from `client` with `result` and
/// `method` (fields 4 and 6).
fn wait_line(log: &Path, client: Ipv4Addr, url: &str, result: &str, method: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = log_lines(log, url, 1)
            .into_iter()
            .find(|l| l[2] == client.to_string() && l[3] == result && l[5] == method);
        if let Some(l) = found {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no `{client} {result} {method} {url}` line in {}:\n{}",
            log.display(),
            tail(log, 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------ the tap

/// Which way a datagram crossed a [`Tap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// From the querier to the node behind the tap.
    In,
    /// From the node back to the querier.
    Out,
}

/// Datagrams a [`Tap`] relayed, in order.
type Seen = Arc<Mutex<Vec<(Dir, Vec<u8>)>>>;

/// A relay on its own address in front of a node: HTCP datagrams sent to
/// `udp` go on to the node (from the tap's address) and the node's answers
/// come back from `udp`, all recorded; TCP connections to `http` are
/// forwarded to the node's HTTP port. A querier's `cache_peer` names the
/// tap, and the node sees the tap's address as its client.
struct Tap {
    ip: Ipv4Addr,
    udp: u16,
    http: u16,
    seen: Seen,
}

impl Tap {
    async fn start(ip: Ipv4Addr, node_udp: SocketAddr, node_http: SocketAddr) -> Tap {
        use tokio::net::{TcpListener, TcpSocket, UdpSocket};
        let front = Arc::new(UdpSocket::bind((ip, 0)).await.expect("tap bind"));
        let back = Arc::new(UdpSocket::bind((ip, 0)).await.expect("tap bind"));
        let udp = front.local_addr().expect("addr").port();
        let seen: Seen = Arc::default();
        let querier: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (f, b, s, q) = (
            Arc::clone(&front),
            Arc::clone(&back),
            Arc::clone(&seen),
            Arc::clone(&querier),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 9000];
            while let Ok((n, from)) = f.recv_from(&mut buf).await {
                s.lock().unwrap().push((Dir::In, buf[..n].to_vec()));
                *q.lock().unwrap() = Some(from);
                let _ = b.send_to(&buf[..n], node_udp).await;
            }
        });
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 9000];
            while let Ok((n, from)) = back.recv_from(&mut buf).await {
                if from != node_udp {
                    continue;
                }
                s.lock().unwrap().push((Dir::Out, buf[..n].to_vec()));
                let to = *querier.lock().unwrap();
                if let Some(to) = to {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
        let listener = TcpListener::bind((ip, 0)).await.expect("tap tcp bind");
        let http = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(socket) = TcpSocket::new_v4() else {
                        return;
                    };
                    if socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).is_err() {
                        return;
                    }
                    let Ok(mut node) = socket.connect(node_http).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
                });
            }
        });
        Tap {
            ip,
            udp,
            http,
            seen,
        }
    }

    /// The datagrams recorded so far.
    fn seen(&self) -> Vec<(Dir, Vec<u8>)> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits for the first TST request naming `url` and the first response
    /// after it (the node answers in order); returns both datagrams.
    fn exchange_for(&self, url: &str) -> (Vec<u8>, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen();
            let at = seen.iter().position(|(dir, d)| {
                *dir == Dir::In && request_uri(d, htcp::Opcode::Tst).as_deref() == Some(url)
            });
            if let Some(at) = at {
                if let Some((_, reply)) = seen[at + 1..].iter().find(|(dir, _)| *dir == Dir::Out) {
                    return (seen[at].1.clone(), reply.clone());
                }
            }
            assert!(
                Instant::now() < deadline,
                "no TST exchange for {url} through the tap at {}: {:02x?}",
                self.ip,
                seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The URI of `d` when it is a TST or CLR request (`opcode`).
fn request_uri(d: &[u8], opcode: htcp::Opcode) -> Option<String> {
    let m = htcp::parse(d).ok()?;
    let spec = match m.op {
        Op::TstRequest(spec)
        | Op::ClrRequest {
            specifier: spec, ..
        } => spec,
        _ => return None,
    };
    (m.opcode() == opcode).then(|| String::from_utf8_lossy(spec.uri.as_bytes()).into_owned())
}

/// DATA bytes 2-3 (opcode/response, flags) and the TRANS-ID of a datagram.
fn data_fields(d: &[u8]) -> (u8, u8, u32) {
    assert!(d.len() >= 12, "{d:02x?}");
    (d[6], d[7], u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
}

// ------------------------------------------------------------ 1. oldsquid

/// 1a. A Squid 5.7 with `htcp=oldsquid` siblings asks in the MINOR-0 layout,
/// with transaction id 0. cuttle answers in that layout (its "not found"
/// byte for byte what a Squid sibling sends), yet the asking Squid takes
/// neither cuttle's nor the Squid sibling's answer: every request waits out
/// the timeout (`TIMEOUT_HIER_DIRECT`) and none is a `SIBLING_HIT`. Its CLR
/// after a PURGE, in the same layout, does purge cuttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldsquid_squid_asks_cuttle_and_a_squid() {
    squid_binary();
    const ASKER: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 1);
    const CUTTLE: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 2);
    const CUTTLE_TAP: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 3);
    const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 4);
    const OTHER_TAP: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 5);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 6);
    let origin = text_origin(
        Ipv4Addr::new(127, 0, 13, 7),
        &["/only-cuttle", "/only-squid", "/nowhere", "/purged"],
    )
    .await;
    let tmp = TempDir::new("htcp-oldsquid-squid-asks");

    let (cuttle, cuttle_htcp) = cuttle_with_htcp(
        &tmp.path().join("cuttle"),
        CUTTLE,
        &format!(
            "acl taps src {CUTTLE_TAP}\n\
             htcp_access allow taps\n\
             htcp_clr_access allow taps\n"
        ),
    );
    let (other, other_htcp) = start_squid(
        &tmp.path().join("other"),
        OTHER,
        &format!(
            "acl taps src {OTHER_TAP}\n\
             htcp_access allow taps\n\
             htcp_access deny all\n"
        ),
    );
    let cuttle_tap = Tap::start(CUTTLE_TAP, cuttle_htcp, cuttle.addr).await;
    let other_tap = Tap::start(
        OTHER_TAP,
        SocketAddr::from((OTHER, other_htcp)),
        other.http_addr(),
    )
    .await;
    // Debug section 31 (HTCP) at level 3 says why replies are dropped.
    let (asker, _) = start_squid(
        &tmp.path().join("asker"),
        ASKER,
        &format!(
            "icp_query_timeout 2000\n\
             debug_options ALL,1 31,3\n\
             cache_peer {CUTTLE_TAP} sibling {} {} htcp=oldsquid no-digest \
             no-netdb-exchange name=cuttle\n\
             cache_peer {OTHER_TAP} sibling {} {} htcp=oldsquid no-digest \
             no-netdb-exchange name=other\n",
            cuttle_tap.http, cuttle_tap.udp, other_tap.http, other_tap.udp
        ),
    );
    wait_peers_up(&asker, 2).await;

    // Each sibling holds one object.
    let only_cuttle = origin.url("/only-cuttle");
    let only_squid = origin.url("/only-squid");
    let nowhere = origin.url("/nowhere");
    assert_eq!(get(cuttle.addr, CLIENT, &only_cuttle).await.0, 200);
    assert_eq!(get(other.http_addr(), CLIENT, &only_squid).await.0, 200);
    for url in [&only_cuttle, &only_squid, &nowhere] {
        assert_eq!(get(asker.http_addr(), CLIENT, url).await.0, 200);
    }

    // cuttle took the MINOR-0 TSTs and answered them.
    wait_line(
        &cuttle.log,
        CUTTLE_TAP,
        &only_cuttle,
        "UDP_HIT/000",
        "HTCP_TST",
    );
    for url in [&only_squid, &nowhere] {
        wait_line(&cuttle.log, CUTTLE_TAP, url, "UDP_MISS/000", "HTCP_TST");
    }
    wait_line(
        &other.access_log(),
        OTHER_TAP,
        &only_squid,
        "UDP_HIT/000",
        "HTCP_TST",
    );

    // On the wire: Squid asks in the old layout (opcode 1 in the low
    // nibble, RD = 0x40) with transaction id 0; cuttle answers in it
    // (RR = 0x80, response in the high nibble: 0x01 found, 0x11 not),
    // echoing the id, as the Squid sibling does.
    for (tap, holds) in [(&cuttle_tap, &only_cuttle), (&other_tap, &only_squid)] {
        for url in [&only_cuttle, &only_squid, &nowhere] {
            let (query, reply) = tap.exchange_for(url);
            assert_eq!(query[2..4], [0, 0], "MAJOR 0, MINOR 0: {query:02x?}");
            assert_eq!(data_fields(&query), (0x01, 0x40, 0), "{url}: {query:02x?}");
            assert_eq!(reply[2..4], [0, 0], "{url}: {reply:02x?}");
            let code = if url == holds { 0x01 } else { 0x11 };
            assert_eq!(
                data_fields(&reply),
                (code, 0x80, 0),
                "{} {url}: {reply:02x?}",
                tap.ip
            );
            let m = htcp::parse(&reply).expect("a well-formed reply");
            assert!(
                matches!(m.op, Op::TstResponse(htcp::TstReply::Detail(_))),
                "{m:?}"
            );
        }
    }
    let (_, cuttle_miss) = cuttle_tap.exchange_for(&nowhere);
    let (_, squid_miss) = other_tap.exchange_for(&nowhere);
    assert_eq!(cuttle_miss, squid_miss, "cuttle's not-found is Squid's");

    // The asking Squid used none of the six answers: each request waited
    // out icp_query_timeout and went direct, even with two "found"s.
    for url in [&only_cuttle, &only_squid, &nowhere] {
        let l = wait_line(&asker.access_log(), CLIENT, url, "TCP_MISS/200", "GET");
        assert_eq!(
            l[8],
            format!("TIMEOUT_HIER_DIRECT/{}", origin.addr.ip()),
            "{l:?}"
        );
    }
    assert_eq!(
        origin.count("/only-cuttle"),
        2,
        "cuttle's fetch, the asker's"
    );
    assert_eq!(origin.count("/only-squid"), 2);
    // Why (debug section 31): Squid files each query under an id of its
    // own, which its MINOR-0 TST does not carry; the reply's id 0 finds no
    // query to that sender, and Squid drops it as from an unexpected source.
    let cache_log = std::fs::read_to_string(asker.dir.join("cache.log")).unwrap_or_default();
    for tap in [CUTTLE_TAP, OTHER_TAP] {
        assert!(
            cache_log.contains(&format!("Unexpected response source {tap}:")),
            "{}",
            tail(&asker.dir.join("cache.log"), 40)
        );
    }

    // A PURGE at the asking Squid sends its CLR (method PURGE) to cuttle in
    // the old layout (opcode 4, no RD, id 0); cuttle purges the GET object.
    let purged = origin.url("/purged");
    assert_eq!(get(cuttle.addr, CLIENT, &purged).await.0, 200);
    assert_eq!(get(asker.http_addr(), CLIENT, &purged).await.0, 200);
    let r = Req::new("PURGE", &purged)
        .from(IpAddr::V4(CLIENT))
        .send_to(asker.http_addr())
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    wait_line(&cuttle.log, CUTTLE_TAP, &purged, "UDP_HIT/000", "HTCP_CLR");
    let clr = cuttle_tap
        .seen()
        .into_iter()
        .find(|(dir, d)| {
            *dir == Dir::In && request_uri(d, htcp::Opcode::Clr).as_deref() == Some(&purged)
        })
        .expect("the CLR went through the tap")
        .1;
    assert_eq!(clr[3], 0, "MINOR 0: {clr:02x?}");
    assert_eq!(data_fields(&clr), (0x04, 0x00, 0), "{clr:02x?}");
    let m = htcp::parse(&clr).expect("parsed above");
    assert!(
        matches!(m.op, Op::ClrRequest { specifier, .. } if specifier.method.as_bytes() == b"PURGE"),
        "{m:?}"
    );
    let r = Req::get(&purged)
        .from(IpAddr::V4(CLIENT))
        .header("cache-control", "only-if-cached")
        .send_to(cuttle.addr)
        .await;
    assert_eq!(r.status, 504, "cuttle kept it: {r:?}");
}

/// 1b. cuttle with `cache_peer <squid> ... htcp=oldsquid` asks in the
/// MINOR-0 layout (its own transaction ids); Squid 5.7 answers in that
/// layout with transaction id 0, and cuttle still takes the answer:
/// `SIBLING_HIT` for what Squid holds, `HIER_DIRECT` at once otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_asks_an_oldsquid_squid() {
    squid_binary();
    const SQUID: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 11);
    const CUTTLE: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 12);
    const TAP: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 13);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 14);
    let origin = text_origin(
        Ipv4Addr::new(127, 0, 13, 15),
        &["/in-squid", "/nowhere", "/also-in-squid"],
    )
    .await;
    let tmp = TempDir::new("htcp-oldsquid-cuttle-asks");
    let (squid, squid_htcp) = start_squid(
        &tmp.path().join("squid"),
        SQUID,
        &format!(
            "acl taps src {TAP}\n\
             htcp_access allow taps\n\
             htcp_access deny all\n"
        ),
    );
    let tap = Tap::start(
        TAP,
        SocketAddr::from((SQUID, squid_htcp)),
        squid.http_addr(),
    )
    .await;
    let (cuttle, _) = cuttle_with_htcp(
        &tmp.path().join("cuttle"),
        CUTTLE,
        &format!(
            "icp_query_timeout 3000\n\
             cache_peer {TAP} sibling {} {} htcp=oldsquid no-digest name=squid\n",
            tap.http, tap.udp
        ),
    );
    cuttle.wait_output("TCP probe succeeded peer=squid", Duration::from_secs(15));

    let in_squid = origin.url("/in-squid");
    let also = origin.url("/also-in-squid");
    let nowhere = origin.url("/nowhere");
    for url in [&in_squid, &also] {
        assert_eq!(get(squid.http_addr(), CLIENT, url).await.0, 200);
    }
    for (url, path) in [
        (&in_squid, "/in-squid"),
        (&nowhere, "/nowhere"),
        (&also, "/also-in-squid"),
    ] {
        assert_eq!(
            get(cuttle.addr, CLIENT, url).await,
            (200, text_body(path)),
            "{url}"
        );
    }
    for (url, hier) in [
        (&in_squid, format!("SIBLING_HIT/{TAP}")),
        (&nowhere, format!("HIER_DIRECT/{}", origin.addr.ip())),
        (&also, format!("SIBLING_HIT/{TAP}")),
    ] {
        let l = wait_line(&cuttle.log, CLIENT, url, "TCP_MISS/200", "GET");
        assert_eq!(l[8], hier, "{l:?}\n{}", cuttle.output());
    }
    assert_eq!(origin.count("/in-squid"), 1, "only Squid's fetch");
    assert_eq!(origin.count("/also-in-squid"), 1, "only Squid's fetch");
    wait_line(
        &squid.access_log(),
        TAP,
        &in_squid,
        "UDP_HIT/000",
        "HTCP_TST",
    );
    wait_line(
        &squid.access_log(),
        TAP,
        &nowhere,
        "UDP_MISS/000",
        "HTCP_TST",
    );

    // On the wire: cuttle's TST in the old layout with an id of its own;
    // Squid's answer in the old layout with id 0.
    for (url, code) in [(&in_squid, 0x01), (&nowhere, 0x11), (&also, 0x01)] {
        let (query, reply) = tap.exchange_for(url);
        assert_eq!(query[2..4], [0, 0], "{query:02x?}");
        let (op, flags, id) = data_fields(&query);
        assert_eq!((op, flags), (0x01, 0x40), "{query:02x?}");
        assert_ne!(id, 0, "cuttle numbers its queries: {query:02x?}");
        assert_eq!(reply[2..4], [0, 0], "{reply:02x?}");
        assert_eq!(data_fields(&reply), (code, 0x80, 0), "{url}: {reply:02x?}");
    }
}

// ---------------------------------------------------------- 2. forward-clr

/// Lines of `log` for `url` with `method` (any result, any client).
fn lines_with(log: &Path, url: &str, method: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.get(6).is_some_and(|u| u == url) && f.get(5).is_some_and(|m| m == method))
        .collect()
}

/// `cuttle htcp SUB --timeout MS --peer PEER --from FROM URL...`: its
/// output lines split at tabs, whether it exited 0, and all it printed.
fn htcp_cli(
    sub: &str,
    peer: SocketAddr,
    from: Ipv4Addr,
    timeout_ms: u32,
    urls: &[&str],
) -> (Vec<Vec<String>>, bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["htcp", sub, "--timeout", &timeout_ms.to_string(), "--peer"])
        .arg(peer.to_string())
        .arg("--from")
        .arg(from.to_string())
        .args(urls)
        .output()
        .expect("run cuttle htcp");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    (
        lines,
        out.status.success(),
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

/// 2. A PURGE at Squid A sends a CLR (method PURGE) to cuttle (A's
/// `htcp=only-clr` peer); cuttle, whose htcp_clr_access allows A, purges
/// and relays it to Squid B, its `htcp=forward-clr` peer, as CLRs for GET
/// and HEAD: B logs the CLR from cuttle and its next request for the
/// object is a miss. A CLR cuttle refuses (a sender htcp_clr_access denies)
/// is not relayed: B keeps that object and its next request is a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_clr_relays_a_squid_purge_to_another_squid() {
    squid_binary();
    const A: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 21);
    const CUTTLE: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 22);
    const B: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 23);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 24);
    const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 25);
    let origin = text_origin(
        Ipv4Addr::new(127, 0, 13, 26),
        &["/relayed", "/refused", "/marker"],
    )
    .await;
    let tmp = TempDir::new("htcp-forward-clr");
    let (b, b_htcp) = start_squid(
        &tmp.path().join("b"),
        B,
        &format!(
            "acl cuttle src {CUTTLE}\n\
             htcp_clr_access allow cuttle\n\
             htcp_clr_access deny all\n\
             acl asker src {CLIENT}\n\
             htcp_access allow asker\n\
             htcp_access deny all\n"
        ),
    );
    let (cuttle, cuttle_htcp) = cuttle_with_htcp(
        &tmp.path().join("cuttle"),
        CUTTLE,
        &format!(
            "acl squid_a src {A}\n\
             htcp_clr_access allow squid_a\n\
             htcp_clr_access deny all\n\
             cache_peer {B} sibling {} {b_htcp} htcp=forward-clr no-digest name=b\n",
            b.http_port
        ),
    );
    // `no-query`: without it Squid 5.7 queries an `only-clr` peer with ICP
    // (sent to the HTCP port, with icp_port set: seen, every request then
    // waits out the timeout).
    let (a, _) = start_squid(
        &tmp.path().join("a"),
        A,
        &format!(
            "cache_peer {CUTTLE} sibling {} {} htcp=only-clr no-query no-digest \
             no-netdb-exchange name=cuttle\n",
            cuttle.addr.port(),
            cuttle_htcp.port()
        ),
    );
    wait_peers_up(&a, 1).await;

    let relayed = origin.url("/relayed");
    let refused = origin.url("/refused");
    let marker = origin.url("/marker");
    // B holds all three; A holds what it will purge (PURGE sends CLRs
    // only for objects it held).
    for url in [&relayed, &refused, &marker] {
        assert_eq!(get(b.http_addr(), CLIENT, url).await.0, 200);
        let (lines, _, text) = htcp_cli("tst", SocketAddr::from((B, b_htcp)), CLIENT, 3000, &[url]);
        assert_eq!(lines[0][1], "FOUND", "{text}");
    }
    for url in [&relayed, &marker] {
        assert_eq!(get(a.http_addr(), CLIENT, url).await.0, 200);
    }

    // Relayed: A's CLR reaches cuttle (which held nothing), B purges.
    let r = Req::new("PURGE", &relayed)
        .from(IpAddr::V4(CLIENT))
        .send_to(a.http_addr())
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    wait_line(&cuttle.log, A, &relayed, "UDP_MISS/000", "HTCP_CLR");
    wait_line(&b.access_log(), CUTTLE, &relayed, "UDP_HIT/000", "HTCP_CLR");
    let (lines, _, text) = htcp_cli(
        "tst",
        SocketAddr::from((B, b_htcp)),
        CLIENT,
        3000,
        &[&relayed],
    );
    assert_eq!(lines[0][1], "NOT_FOUND", "B kept it:\n{text}");
    assert_eq!(
        get(b.http_addr(), CLIENT, &relayed).await,
        (200, text_body("/relayed"))
    );
    let fetches = log_lines(&b.access_log(), &relayed, 2);
    let gets: Vec<&Vec<String>> = fetches.iter().filter(|l| l[5] == "GET").collect();
    assert_eq!(gets.len(), 2, "{fetches:?}");
    assert_eq!(gets[1][3], "TCP_MISS/200", "{:?}", gets[1]);
    assert_eq!(origin.count("/relayed"), 3, "B, A, then B again");

    // Refused: a CLR from a sender cuttle's htcp_clr_access denies is
    // logged UDP_DENIED and not relayed. A relayed CLR after it (A's PURGE
    // of the marker) shows B has had everything cuttle sent before.
    let (lines, ok, text) = htcp_cli("clr", cuttle_htcp, STRANGER, 500, &[&refused]);
    assert!(!ok && lines[0][1] == "TIMEOUT", "{text}");
    wait_line(
        &cuttle.log,
        STRANGER,
        &refused,
        "UDP_DENIED/000",
        "HTCP_CLR",
    );
    let r = Req::new("PURGE", &marker)
        .from(IpAddr::V4(CLIENT))
        .send_to(a.http_addr())
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    wait_line(&b.access_log(), CUTTLE, &marker, "UDP_HIT/000", "HTCP_CLR");
    let clrs = lines_with(&b.access_log(), &refused, "HTCP_CLR");
    assert!(clrs.is_empty(), "relayed a refused CLR: {clrs:?}");
    assert_eq!(
        get(b.http_addr(), CLIENT, &refused).await,
        (200, text_body("/refused"))
    );
    wait_line(&b.access_log(), CLIENT, &refused, "TCP_MEM_HIT/200", "GET");
    assert_eq!(origin.count("/refused"), 1, "B's first fetch only");
}

// ------------------------------------------------------ 3. NOP, MON, SET

/// A request with RD set (unless `rd` is false), MINOR `minor`.
fn request(minor: u8, trans_id: u32, rd: bool, op: Op<'_>) -> Vec<u8> {
    let m = htcp::Message {
        minor,
        response: 0,
        f1: rd,
        reserved: 0,
        trans_id,
        op,
        auth: htcp::Auth::None,
    };
    let mut out = Vec::new();
    m.encode(&mut out).expect("encode");
    out
}

/// Sends `datagrams` from `socket` to `to`, then a TST for `url` with id
/// `barrier`, and returns every datagram that came back up to and with the
/// TST's answer (the node answers in order: nothing else will follow).
async fn answers_before_tst(
    socket: &tokio::net::UdpSocket,
    to: SocketAddr,
    datagrams: &[Vec<u8>],
    barrier: u32,
    url: &str,
) -> Vec<Vec<u8>> {
    for d in datagrams {
        socket.send_to(d, to).await.expect("send");
    }
    let tst = htcp::Message::tst_request(barrier, htcp::Specifier::new("GET", url));
    let mut out = Vec::new();
    tst.encode(&mut out).expect("encode");
    socket.send_to(&out, to).await.expect("send");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 9000];
    loop {
        let (n, from) = tokio::time::timeout(support::WAIT, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer to the TST from {to}; got {got:02x?}"))
            .expect("recv");
        assert_eq!(from, to);
        got.push(buf[..n].to_vec());
        let parsed = htcp::parse(&buf[..n]);
        if matches!(parsed, Ok(m) if m.trans_id == barrier && matches!(m.op, Op::TstResponse(_))) {
            return got;
        }
    }
}

/// 3. NOP, MON and SET (RD set) to a Squid 5.7 and to cuttle, each followed
/// by a TST whose answer closes the exchange. Squid answers none of the
/// three and logs none; cuttle answers NOP with a NOP response (code 0,
/// MINOR and id of the request) and MON and SET with RFC 2756's overall
/// "opcode not implemented" (MO set, code 2). Without RD, or from a sender
/// cuttle's htcp_access refuses, cuttle answers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nop_mon_set_squid_answers_none_cuttle_nop_and_not_implemented() {
    squid_binary();
    const SQUID: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 31);
    const CUTTLE: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 32);
    const SENDER: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 33);
    const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 34);
    let tmp = TempDir::new("htcp-nop-mon-set");
    let (squid, squid_htcp) = start_squid(
        &tmp.path().join("squid"),
        SQUID,
        &format!(
            "debug_options ALL,1 31,3\n\
             acl sender src {SENDER}\n\
             htcp_access allow sender\n\
             htcp_access deny all\n\
             htcp_clr_access allow sender\n\
             htcp_clr_access deny all\n"
        ),
    );
    let (cuttle, cuttle_htcp) = cuttle_with_htcp(
        &tmp.path().join("cuttle"),
        CUTTLE,
        &format!(
            "acl sender src {SENDER}\n\
             htcp_access allow sender\n\
             htcp_access deny all\n"
        ),
    );
    let url = "http://127.0.13.35/nop-mon-set";
    let identity = htcp::Identity {
        specifier: htcp::Specifier::new("GET", url),
        detail: htcp::Detail {
            resp_hdrs: "Age: 5\r\n".into(),
            entity_hdrs: "Expires: Thu, 01 Jan 2037 00:00:00 GMT\r\n".into(),
            cache_hdrs: "".into(),
        },
    };
    let asks = [
        request(1, 101, true, Op::NopRequest),
        request(1, 102, true, Op::MonRequest { time: 60 }),
        request(1, 103, true, Op::SetRequest(identity)),
        request(0, 104, true, Op::NopRequest),
        request(1, 105, false, Op::NopRequest),
        request(1, 106, false, Op::MonRequest { time: 60 }),
    ];
    let socket = tokio::net::UdpSocket::bind((SENDER, 0))
        .await
        .expect("bind");

    let got = answers_before_tst(
        &socket,
        SocketAddr::from((SQUID, squid_htcp)),
        &asks,
        107,
        url,
    )
    .await;
    assert_eq!(got.len(), 1, "Squid answered: {got:02x?}");
    wait_line(&squid.access_log(), SENDER, url, "UDP_MISS/000", "HTCP_TST");
    let logged = std::fs::read_to_string(squid.access_log()).unwrap_or_default();
    let squid_lines: Vec<&str> = logged.lines().filter(|l| l.contains("HTCP_")).collect();
    assert_eq!(squid_lines.len(), 1, "{squid_lines:?}");
    // It read each (debug section 31 at level 3 says so) and dropped it.
    let cache_log = std::fs::read_to_string(squid.dir.join("cache.log")).unwrap_or_default();
    for (what, times) in [("NOP", 3), ("MON", 2), ("SET", 1)] {
        let said = format!("HTCP {what} not implemented");
        assert_eq!(cache_log.matches(&said).count(), times, "{said}");
    }

    let got = answers_before_tst(&socket, cuttle_htcp, &asks, 107, url).await;
    let replies: Vec<htcp::Message<'_>> = got
        .iter()
        .map(|d| htcp::parse(d).expect("well-formed"))
        .collect();
    let summary: Vec<(u8, u32, htcp::Opcode, bool, u8)> = replies
        .iter()
        .map(|m| (m.minor, m.trans_id, m.opcode(), m.f1, m.response))
        .collect();
    use htcp::Opcode::{Mon, Nop, Set, Tst};
    assert_eq!(
        summary,
        [
            (1, 101, Nop, false, 0),
            (1, 102, Mon, true, htcp::overall::OPCODE_NOT_IMPLEMENTED),
            (1, 103, Set, true, htcp::overall::OPCODE_NOT_IMPLEMENTED),
            (0, 104, Nop, false, 0),
            (1, 107, Tst, false, htcp::tst::NOT_FOUND),
        ],
        "{replies:?}"
    );
    assert!(replies.iter().all(|m| m.is_response()));
    assert_eq!(replies[0].op, Op::NopResponse);
    assert_eq!(replies[1].op, Op::MonResponse(None));
    assert_eq!(replies[2].op, Op::SetResponse);
    let cuttle_lines: Vec<Vec<String>> = std::fs::read_to_string(&cuttle.log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert!(
        cuttle_lines.iter().all(|l| l[5] == "HTCP_TST"),
        "{cuttle_lines:?}"
    );

    // From a sender htcp_access refuses: nothing, not even for the TST
    // (logged UDP_DENIED once its turn came, after the three before it).
    let stranger = tokio::net::UdpSocket::bind((STRANGER, 0))
        .await
        .expect("bind");
    for d in &asks[..3] {
        stranger.send_to(d, cuttle_htcp).await.expect("send");
    }
    let tst = htcp::Message::tst_request(108, htcp::Specifier::new("GET", url));
    let mut out = Vec::new();
    tst.encode(&mut out).expect("encode");
    stranger.send_to(&out, cuttle_htcp).await.expect("send");
    wait_line(&cuttle.log, STRANGER, url, "UDP_DENIED/000", "HTCP_TST");
    let mut buf = [0u8; 2048];
    let stray = stranger.try_recv_from(&mut buf);
    assert!(
        matches!(&stray, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "cuttle answered a refused sender: {stray:?}"
    );
}
