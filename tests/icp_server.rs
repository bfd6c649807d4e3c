//! cuttle's ICP responder seen from the wire: the real binary with
//! `icp_port` on its own loopback address, an object put in its cache over
//! HTTP, then real ICP datagrams from a UDP socket. Every reply is checked
//! byte for byte (opcode, version, echoed reqnum and URL, no options) and
//! must come from the icp_port itself; access.log must carry Squid's UDP_*
//! lines. Addresses: cuttle's ICP on 127.0.2.3-127.0.2.6, askers on 127.0.2.7-127.0.2.9.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::{
    expected_reply, free_udp_port, query, Conf, Cuttle, LogLine, Origin, Reply, Req, WAIT,
};

const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 7);
const REFUSED: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 8);

struct Asker {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Asker {
    fn new(ip: Ipv4Addr, server: SocketAddr) -> Asker {
        let socket = UdpSocket::bind((ip, 0)).expect("bind asker");
        Asker { socket, server }
    }

    /// Sends `datagram`; the reply and where it came from, or `None` after `wait`.
    fn ask(&self, datagram: &[u8], wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        self.socket
            .send_to(datagram, self.server)
            .expect("send query");
        self.socket
            .set_read_timeout(Some(wait))
            .expect("read timeout");
        let mut buf = [0u8; 17000];
        match self.socket.recv_from(&mut buf) {
            Ok((n, from)) => Some((buf[..n].to_vec(), from)),
            Err(_) => None,
        }
    }

    /// The reply to `datagram`, which must come from the ICP port.
    fn reply(&self, datagram: &[u8]) -> Vec<u8> {
        let (reply, from) = self
            .ask(datagram, WAIT)
            .expect("no ICP reply within the wait");
        assert_eq!(from, self.server, "the reply must leave from icp_port");
        reply
    }
}

async fn start(icp_ip: Ipv4Addr, extra: &[&str]) -> (Cuttle, SocketAddr) {
    let icp_port = free_udp_port(icp_ip);
    let mut conf = Conf::new()
        .extra(&format!("icp_port {icp_port}"))
        .extra(&format!("udp_incoming_address {icp_ip}"))
        .extra(&format!("acl siblings src {ALLOWED}"))
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

/// Fetches `url` through cuttle once (a miss it stores), then waits until
/// its ICP answer turns HIT (the store commits after the body ends).
async fn cache_through(cuttle: &Cuttle, asker: &Asker, url: &str) {
    let r = Req::get(url).send(cuttle).await;
    assert_eq!(r.status, 200, "{r:?}");
    let deadline = Instant::now() + WAIT;
    while asker.reply(&query(1, url))[0] != 2 {
        assert!(Instant::now() < deadline, "{url} never became an ICP HIT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn icp_lines(log: &[LogLine]) -> Vec<&LogLine> {
    log.iter().filter(|l| l.method == "ICP_QUERY").collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_hit_miss_denied_and_err_from_the_icp_port_and_logs_them() {
    let origin = Origin::start().await;
    origin.route("/obj", |_| Reply::ok("cached object\n").cc("max-age=3600"));
    let (cuttle, icp) = start(Ipv4Addr::new(127, 0, 2, 3), &[]).await;
    let asker = Asker::new(ALLOWED, icp);
    let url = origin.url("/obj");
    cache_through(&cuttle, &asker, &url).await;
    // The fetch's TCP_MISS line and the UDP lines of the wait for the HIT.
    let warmup = icp_lines(&cuttle.log(2).await).len();

    // HIT, byte for byte, reqnum echoed (a large one too).
    for reqnum in [77, 0x7fff_fff0] {
        assert_eq!(
            asker.reply(&query(reqnum, &url)),
            expected_reply(2, reqnum, &url)
        );
    }
    // MISS for what is not cached; cuttle does not fetch it.
    let absent = origin.url("/absent");
    assert_eq!(
        asker.reply(&query(78, &absent)),
        expected_reply(3, 78, &absent)
    );
    // The URL is looked up exactly as received: another spelling is a miss.
    let other_case = url.replace("/obj", "/OBJ");
    assert_eq!(
        asker.reply(&query(79, &other_case)),
        expected_reply(3, 79, &other_case)
    );
    // DENIED for a sender icp_access refuses (even for a cached object).
    let refused = Asker::new(REFUSED, icp);
    assert_eq!(
        refused.reply(&query(80, &url)),
        expected_reply(22, 80, &url)
    );
    // ERR with the %-escaped URL for an unusable one.
    assert_eq!(
        asker.reply(&query(81, "not a url")),
        expected_reply(4, 81, "not%20a%20url")
    );
    // Garbage and replies get nothing; the next query is still answered.
    let mut wrong_length = query(82, &url);
    wrong_length[3] ^= 1;
    let hit_reply = expected_reply(2, 83, &url);
    for silent in [
        &b"\x01\x02\x00"[..],
        &wrong_length,
        &hit_reply,
        &[0u8; 64][..],
    ] {
        assert_eq!(
            asker.ask(silent, Duration::from_millis(300)),
            None,
            "answered {silent:?}"
        );
    }
    assert_eq!(asker.reply(&query(84, &url)), expected_reply(2, 84, &url));
    assert_eq!(origin.count("/absent"), 0, "a MISS must not fetch");

    let want = [
        ("UDP_HIT", url.as_str()),
        ("UDP_HIT", url.as_str()),
        ("UDP_MISS", absent.as_str()),
        ("UDP_MISS", other_case.as_str()),
        ("UDP_DENIED", url.as_str()),
        ("UDP_INVALID", "not%20a%20url"),
        ("UDP_HIT", url.as_str()),
    ];
    let log = cuttle.log(1 + warmup + want.len()).await;
    let lines = icp_lines(&log);
    assert_eq!(lines.len(), warmup + want.len(), "{log:#?}");
    let answered = &lines[warmup..];
    for (line, (code, logged_url)) in answered.iter().zip(want) {
        assert_eq!(line.code, code, "{}", line.raw);
        assert_eq!(line.status, 0, "{}", line.raw);
        assert_eq!(line.url, logged_url, "{}", line.raw);
        assert_eq!(
            line.bytes as usize,
            20 + logged_url.len() + 1,
            "size = reply datagram: {}",
            line.raw
        );
        assert_eq!(line.user, "-");
        assert_eq!(line.hierarchy, "HIER_NONE/-", "{}", line.raw);
        assert_eq!(line.content_type, "-", "{}", line.raw);
        let elapsed = line.raw.split_whitespace().nth(1).unwrap_or("");
        assert_eq!(elapsed, "0", "{}", line.raw);
        let client = if code == "UDP_DENIED" {
            REFUSED
        } else {
            ALLOWED
        };
        assert_eq!(line.client, client.to_string(), "{}", line.raw);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_icp_queries_off_and_icp_hit_stale_on() {
    let origin = Origin::start().await;
    // Fresh for 10 s: stale for ICP (which wants 30 s more), still a HIT
    // with icp_hit_stale on.
    origin.route("/short", |_| Reply::ok("short-lived\n").cc("max-age=10"));
    let (cuttle, icp) = start(
        Ipv4Addr::new(127, 0, 2, 4),
        &["log_icp_queries off", "icp_hit_stale on"],
    )
    .await;
    let asker = Asker::new(ALLOWED, icp);
    let url = origin.url("/short");
    cache_through(&cuttle, &asker, &url).await;
    assert_eq!(asker.reply(&query(5, &url)), expected_reply(2, 5, &url));
    let log = cuttle.log(1).await;
    assert!(icp_lines(&log).is_empty(), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_that_expire_within_thirty_seconds_are_misses() {
    let origin = Origin::start().await;
    origin.route("/short", |_| Reply::ok("short-lived\n").cc("max-age=10"));
    let (cuttle, icp) = start(Ipv4Addr::new(127, 0, 2, 5), &[]).await;
    let asker = Asker::new(ALLOWED, icp);
    let url = origin.url("/short");
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 200);
    // The object is cached (a second GET is a hit) but ICP says MISS.
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.header("x-cache"), format!("HIT from {}", cuttle.name));
    assert_eq!(asker.reply(&query(6, &url)), expected_reply(3, 6, &url));
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_new_icp_access_and_rebinds_a_new_port() {
    let icp_ip = Ipv4Addr::new(127, 0, 2, 6);
    let (cuttle, icp) = start(icp_ip, &[]).await;
    let url = "http://127.0.0.1:9/x";
    let refused = Asker::new(REFUSED, icp);
    assert_eq!(refused.reply(&query(1, url))[0], 22);

    // Same port, icp_access opened to everyone: answered in place.
    let open = |port: u16| {
        Conf::new()
            .extra(&format!("icp_port {port}"))
            .extra(&format!("udp_incoming_address {icp_ip}"))
            .extra("icp_access allow all")
    };
    cuttle.rewrite_config(&open(icp.port()));
    cuttle.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while refused.reply(&query(2, url))[0] != 3 {
        assert!(Instant::now() < deadline, "the reload did not reach ICP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A new port: the old socket closes, the new one answers.
    let new_port = free_udp_port(icp_ip);
    cuttle.rewrite_config(&open(new_port));
    cuttle.signal("HUP");
    let moved = SocketAddr::from((icp_ip, new_port));
    cuttle
        .wait_output(&format!("cuttle: ICP on {moved}"), false)
        .await;
    let asker = Asker::new(REFUSED, moved);
    assert_eq!(asker.reply(&query(3, url)), expected_reply(3, 3, url));
    assert_eq!(
        refused.ask(&query(4, url), Duration::from_millis(300)),
        None
    );
}
