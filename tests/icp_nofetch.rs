//! When cuttle cannot fetch now its ICP responder answers misses with
//! ICP_MISS_NOFETCH (squid-spec 1.5), seen from the wire with the real
//! binary: `offline_mode on`, and hit-only mode after Squid's request
//! failure ratio trips (70 connect failures in a row from a clean start).
//! Hits stay HIT either way. Addresses: cuttle's ICP on 127.0.6.1 and
//! 127.0.6.3, askers on 127.0.6.2 and 127.0.6.4, a dead origin on 127.0.6.5.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::{
    expected_reply, free_udp_port, http_date, query, Conf, Cuttle, LogLine, Origin, Reply, Req,
    WAIT,
};

/// ICP opcodes (RFC 2186 §2; protocol/src/icp.rs).
const ICP_HIT: u8 = 2;
const ICP_MISS: u8 = 3;
const ICP_MISS_NOFETCH: u8 = 21;

struct Asker {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Asker {
    fn new(ip: Ipv4Addr, server: SocketAddr) -> Asker {
        let socket = UdpSocket::bind((ip, 0)).expect("bind asker");
        socket.set_read_timeout(Some(WAIT)).expect("read timeout");
        Asker { socket, server }
    }

    /// The reply to a query for `url`, which must come from the ICP port.
    fn reply(&self, reqnum: u32, url: &str) -> Vec<u8> {
        self.socket
            .send_to(&query(reqnum, url), self.server)
            .expect("send query");
        let mut buf = [0u8; 17000];
        let (n, from) = self
            .socket
            .recv_from(&mut buf)
            .expect("no ICP reply within the wait");
        assert_eq!(from, self.server, "the reply must leave from icp_port");
        buf[..n].to_vec()
    }
}

/// cuttle answering ICP on `icp_ip` to `asker` only.
async fn start(icp_ip: Ipv4Addr, asker: Ipv4Addr, extra: &[&str]) -> (Cuttle, SocketAddr) {
    let icp_port = free_udp_port(icp_ip);
    let mut conf = Conf::new()
        .extra(&format!("icp_port {icp_port}"))
        .extra(&format!("udp_incoming_address {icp_ip}"))
        .extra(&format!("acl siblings src {asker}"))
        .extra("icp_access allow siblings")
        .extra("icp_access deny all");
    for line in extra {
        conf = conf.extra(line);
    }
    let cuttle = Cuttle::start(&conf);
    let icp = SocketAddr::from((icp_ip, icp_port));
    cuttle
        .wait_output(&format!("cuttle: ICP on {icp}"), false)
        .await;
    (cuttle, icp)
}

/// Fetches `url` through cuttle (a miss it stores), then waits until its
/// ICP answer turns HIT (the store commits after the body ends).
async fn cache_through(cuttle: &Cuttle, asker: &Asker, url: &str) {
    let r = Req::get(url).send(cuttle).await;
    assert_eq!(r.status, 200, "{r:?}");
    let deadline = Instant::now() + WAIT;
    while asker.reply(1, url)[0] != ICP_HIT {
        assert!(Instant::now() < deadline, "{url} never became an ICP HIT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The access.log line of the ICP answer for `url` with result `code`.
fn has_icp_line(log: &[LogLine], code: &str, url: &str) -> bool {
    log.iter()
        .any(|l| l.method == "ICP_QUERY" && l.url == url && l.code == code)
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_mode_answers_misses_nofetch_and_serves_stale_hits_unvalidated() {
    let origin = Origin::start().await;
    origin.route("/fresh", |_| Reply::ok("fresh\n").cc("max-age=3600"));
    // Born 100 s ago, fresh for 10: stale as soon as it is stored.
    origin.route("/stale", |_| {
        Reply::ok("stale body")
            .header("etag", "\"s\"")
            .cc("max-age=10")
            .header("date", http_date(-100))
    });
    let asker_ip = Ipv4Addr::new(127, 0, 6, 2);
    let (cuttle, icp) = start(
        Ipv4Addr::new(127, 0, 6, 1),
        asker_ip,
        &[
            "offline_mode on",
            // Served from the cache_dir: Squid tags that TCP_OFFLINE_HIT
            // (a hit from memory stays TCP_MEM_HIT, in Squid as here).
            "maximum_object_size_in_memory 0 KB",
        ],
    )
    .await;
    let asker = Asker::new(asker_ip, icp);

    // Not cached: MISS_NOFETCH, byte for byte.
    let absent = origin.url("/absent");
    assert_eq!(
        asker.reply(41, &absent),
        expected_reply(ICP_MISS_NOFETCH, 41, &absent)
    );
    assert_eq!(origin.count("/absent"), 0);

    // Misses are still fetched over HTTP (as Squid in offline_mode); a
    // fresh object is then an ICP HIT.
    let fresh = origin.url("/fresh");
    cache_through(&cuttle, &asker, &fresh).await;
    assert_eq!(asker.reply(42, &fresh), expected_reply(ICP_HIT, 42, &fresh));

    // A stale object is served without asking the origin again.
    let stale = origin.url("/stale");
    for _ in 0..2 {
        let r = Req::get(&stale).send(&cuttle).await;
        assert_eq!((r.status, r.text().as_str()), (200, "stale body"));
    }
    assert_eq!(
        origin.count("/stale"),
        1,
        "offline_mode must not revalidate"
    );
    // Stale is not an ICP HIT (icp_hit_stale off): MISS_NOFETCH.
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = asker.reply(43, &stale);
        if reply == expected_reply(ICP_MISS_NOFETCH, 43, &stale) {
            break;
        }
        assert_ne!(reply[0], ICP_HIT, "a stale object is no ICP HIT");
        assert!(Instant::now() < deadline, "no MISS_NOFETCH for {stale}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let log = cuttle.log(6).await;
    assert!(has_icp_line(&log, "UDP_MISS_NOFETCH", &absent), "{log:#?}");
    assert!(has_icp_line(&log, "UDP_MISS_NOFETCH", &stale), "{log:#?}");
    let stale_lines: Vec<String> = log
        .iter()
        .filter(|l| l.method == "GET" && l.url == stale)
        .map(LogLine::result)
        .collect();
    assert_eq!(
        stale_lines,
        ["TCP_MISS/200", "TCP_OFFLINE_HIT/200"],
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_trips_hit_only_mode_after_seventy_failures() {
    let origin = Origin::start().await;
    origin.route("/fresh", |_| Reply::ok("fresh\n").cc("max-age=3600"));
    let asker_ip = Ipv4Addr::new(127, 0, 6, 4);
    let (cuttle, icp) = start(Ipv4Addr::new(127, 0, 6, 3), asker_ip, &[]).await;
    let asker = Asker::new(asker_ip, icp);
    let fresh = origin.url("/fresh");
    cache_through(&cuttle, &asker, &fresh).await;

    // An origin that refuses connections: a port bound and released on
    // an address only this test uses.
    let dead = std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 6, 5), 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.6.5:0");
    let uncached = origin.url("/never-fetched");
    let mut reqnum = 100;
    // From a clean start (one success keeps the ratio at 0) Squid's ratio
    // reaches 1.0 at the 70th failure in a row: MISS until then.
    for n in 1..=70 {
        let r = Req::get(&format!("http://{dead}/gone/{n}"))
            .send(&cuttle)
            .await;
        assert_eq!(r.status, 503, "request {n} to a closed port: {r:?}");
        reqnum += 1;
        let want = if n < 70 { ICP_MISS } else { ICP_MISS_NOFETCH };
        assert_eq!(
            asker.reply(reqnum, &uncached),
            expected_reply(want, reqnum, &uncached),
            "ICP answer after {n} failures"
        );
    }
    // A fresh cached object is still a HIT in hit-only mode.
    assert_eq!(asker.reply(7, &fresh), expected_reply(ICP_HIT, 7, &fresh));
    cuttle.wait_output("Failure Ratio at 1.007", true).await;
    cuttle
        .wait_output("hit-only mode for 5 minutes", true)
        .await;
    assert_eq!(origin.count("/never-fetched"), 0);

    let log = cuttle.log(70).await;
    assert!(
        has_icp_line(&log, "UDP_MISS_NOFETCH", &uncached),
        "{log:#?}"
    );
    let failures = log
        .iter()
        .filter(|l| l.method == "GET" && l.url.contains("/gone/"))
        .count();
    assert_eq!(failures, 70);
}
