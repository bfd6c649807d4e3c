//! Client connection limits, against the real binary: connections that
//! never finish a request, idle keep-alive connections and stalled request
//! bodies are closed after Squid's timeouts (`request_start_timeout`,
//! `request_timeout`, `client_idle_pconn_timeout`, `read_timeout`); the
//! HTTP/2 preface on an http_port is answered 400 as Squid does; header
//! limits are by bytes (`request_header_max_size`, `reply_header_max_size`),
//! not by field count; and when descriptors run out, idle keep-alive
//! connections are closed to make room for new clients.
//!
//! Timeouts are set to a second so the tests are quick; what is asserted is
//! that the connection is closed (or not) by cuttle, never how fast.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{connect, echo_server, read_head, Conf, Conn, Cuttle, Origin, Reply, Req, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads until cuttle closes the connection: what it sent, or `Err` when
/// the connection was still open after `WAIT`.
async fn until_closed(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16384];
    let reading = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                // A reset is a close too.
                Err(_) => return,
            }
        }
    };
    match tokio::time::timeout(WAIT, reading).await {
        Ok(()) => Ok(out),
        Err(_) => Err(format!(
            "still open after {WAIT:?}; got {:?}",
            String::from_utf8_lossy(&out)
        )),
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_request_start_timeout() {
    let proxy = Cuttle::start(&Conf::new().extra("request_start_timeout 1 second"));
    let mut s = connect(proxy.addr(), None).await;
    let got = until_closed(&mut s)
        .await
        .unwrap_or_else(|e| panic!("silent connection: {e}"));
    assert!(got.is_empty(), "closed quietly, as Squid does: {got:?}");
}

/// A request line or head that never ends: Squid closes it after
/// `request_timeout` (measured from the connection's start), not after
/// `request_start_timeout`, which only waits for the first byte.
#[tokio::test]
async fn a_request_that_never_ends_is_closed_after_request_timeout() {
    let proxy = Cuttle::start(&Conf::new().extra("request_timeout 1 second"));
    for partial in [
        &b"G"[..],
        b"GET",
        b"GET http://127.0.0.1:1/ HT",
        b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n",
    ] {
        let mut s = connect(proxy.addr(), None).await;
        s.write_all(partial).await.expect("write");
        let got = until_closed(&mut s)
            .await
            .unwrap_or_else(|e| panic!("after {:?}: {e}", String::from_utf8_lossy(partial)));
        assert!(got.is_empty(), "closed quietly, as Squid does: {got:?}");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_client_idle_pconn_timeout() {
    let origin = Origin::start().await;
    origin.route("/page", |_| Reply::ok("hello"));
    let proxy = Cuttle::start(&Conf::new().extra("client_idle_pconn_timeout 1 second"));
    let mut s = connect(proxy.addr(), None).await;
    let url = origin.url("/page");
    let host = url.trim_start_matches("http://").trim_end_matches("/page");
    s.write_all(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (head, body) = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let rest = until_closed(&mut s)
        .await
        .unwrap_or_else(|e| panic!("idle keep-alive connection: {e}"));
    assert_eq!(
        [body, rest].concat(),
        b"hello",
        "only the body, then the close"
    );
}

/// Every client timeout at a second: what is in flight is not cut. A
/// reply that takes three seconds (its origin never silent for a second)
/// arrives whole, and a CONNECT tunnel left quiet for two seconds still
/// carries bytes.
#[tokio::test]
async fn replies_in_flight_and_tunnels_are_not_cut_by_client_timeouts() {
    let origin = Origin::start().await;
    origin.route("/slow", |_| {
        Reply::ok(vec![b'x'; 10]).pieces(10, Duration::from_millis(300))
    });
    let echo = echo_server().await;
    let proxy = Cuttle::start(
        &Conf::new()
            .access(&["http_access allow all"])
            .extra("request_start_timeout 1 second")
            .extra("request_timeout 1 second")
            .extra("client_idle_pconn_timeout 1 second")
            .extra("read_timeout 1 second"),
    );
    let resp = Req::get(&origin.url("/slow")).send(&proxy).await;
    assert_eq!((resp.status, resp.text()), (200, "x".repeat(10)));

    let mut s = connect(proxy.addr(), None).await;
    s.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (head, _) = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.write_all(b"still there?").await.expect("write");
    let mut back = [0u8; 12];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("the tunnel is open");
    assert_eq!(&back, b"still there?");
}

/// An origin that answers at once, never reads the request body, and
/// sends its body slowly (a chunk every 200 ms for 8 s, so it is never
/// silent for cuttle's 1 s read_timeout) then the last chunk.
async fn slow_streaming_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                for _ in 0..40 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if s.write_all(b"1\r\nx\r\n").await.is_err() {
                        return;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
                tokio::time::sleep(WAIT).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_stalled_request_body_is_cut_off_after_read_timeout() {
    let origin = slow_streaming_origin().await;
    let proxy = Cuttle::start(&Conf::new().extra("read_timeout 1 second"));
    let mut s = connect(proxy.addr(), None).await;
    // 10 bytes of the 100 promised, then nothing.
    s.write_all(
        format!(
            "POST http://{origin}/upload HTTP/1.1\r\nHost: {origin}\r\n\
             Content-Length: 100\r\n\r\n0123456789"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let got = until_closed(&mut s)
        .await
        .unwrap_or_else(|e| panic!("stalled request body: {e}"));
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the reply ran to its end: the stalled body was not noticed:\n{text}"
    );
}

#[tokio::test]
async fn the_http2_preface_gets_400_and_no_http2() {
    let proxy = Cuttle::start(&Conf::new());
    let mut s = connect(proxy.addr(), None).await;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    let got = until_closed(&mut s)
        .await
        .unwrap_or_else(|e| panic!("HTTP/2 preface: {e}"));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "Squid answers the preface 400 over HTTP/1.1 and closes; got {:?}",
        &got[..got.len().min(80)]
    );
    assert!(text.contains("ERR_INVALID_URL"), "{text}");
    let log = proxy.log(1).await;
    assert_eq!(log[0].result(), "NONE_NONE/400", "{:?}", log[0]);
}

/// Sends `head` on a new connection; the response head.
async fn head_for(proxy: &Cuttle, head: String) -> String {
    let mut s = connect(proxy.addr(), None).await;
    s.write_all(head.as_bytes()).await.expect("write");
    read_head(&mut s).await.0
}

/// hyper's default limit was 100 fields. The reply is read raw: the
/// test's client keeps hyper's limit.
#[tokio::test]
async fn a_reply_with_101_header_fields_is_relayed() {
    let origin = Origin::start().await;
    origin.route("/many", |_| {
        (0..101).fold(Reply::ok("many"), |r, i| {
            r.header(&format!("x-reply-{i}"), "v")
        })
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/many");
    let head = head_for(
        &proxy,
        format!("GET {url} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.addr),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let relayed = head.lines().filter(|l| l.starts_with("x-reply-")).count();
    assert_eq!(relayed, 101, "the reply's fields relayed: {head}");
}

/// The request is answered from the cache, so only cuttle has to read it
/// (the test's origin keeps hyper's limit of 100).
#[tokio::test]
async fn a_request_with_101_header_fields_is_served() {
    let origin = Origin::start().await;
    origin.route("/hot", |_| Reply::ok("hot").cc("max-age=3600"));
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/hot");
    assert_eq!(Req::get(&url).send(&proxy).await.status, 200);
    // 101 (hyper's default limit was 100) and 255 + Host: the request
    // field count cuttle documents (README, Header sizes).
    for n in [101, 255] {
        let fields: String = (0..n).map(|i| format!("x-request-{i}: v\r\n")).collect();
        let head = head_for(
            &proxy,
            format!(
                "GET {url} HTTP/1.1\r\nHost: {}\r\n{fields}\r\n",
                origin.addr
            ),
        )
        .await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{n} fields: {head}"
        );
        assert!(head.contains("x-cache: HIT"), "{n} fields: {head}");
    }
    // One field more is over hyper's count, not over the byte limit.
    let fields: String = (0..256).map(|i| format!("x-request-{i}: v\r\n")).collect();
    let head = head_for(
        &proxy,
        format!(
            "GET {url} HTTP/1.1\r\nHost: {}\r\n{fields}\r\n",
            origin.addr
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 431 "), "257 fields: {head}");
}

#[tokio::test]
async fn an_oversize_request_header_gets_431_and_an_oversize_reply_header_502() {
    let origin = Origin::start().await;
    origin.route("/small", |_| Reply::ok("small"));
    origin.route("/big", |_| {
        Reply::ok("big").header("x-big", "b".repeat(10_000))
    });
    let proxy = Cuttle::start(
        &Conf::new()
            .extra("request_header_max_size 8 KB")
            .extra("reply_header_max_size 8 KB"),
    );
    // Just under the limits: served.
    let resp = Req::get(&origin.url("/small"))
        .header("x-pad", "p".repeat(7_000))
        .send(&proxy)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let resp = Req::get(&origin.url("/small"))
        .header("x-pad", "p".repeat(10_000))
        .send(&proxy)
        .await;
    assert_eq!(
        resp.status, 431,
        "request header over request_header_max_size"
    );

    let resp = Req::get(&origin.url("/big")).send(&proxy).await;
    assert_eq!(resp.status, 502, "reply header over reply_header_max_size");
    // Squid 5.7 names it so (and keeps the client connection).
    assert_eq!(resp.header("x-squid-error"), "ERR_TOO_BIG 0");
}

#[tokio::test]
async fn a_reload_applies_new_timeouts_to_new_connections() {
    let conf = Conf::new().extra("request_start_timeout 1 hour");
    let proxy = Cuttle::start(&conf);
    // Served once: the server runs, so the signal handlers are in place.
    Req::get("http://127.0.0.1:1/").send(&proxy).await;
    proxy.rewrite_config(&conf.clone().extra("request_start_timeout 1 second"));
    proxy.signal("HUP");
    proxy.wait_output("configuration reloaded", false).await;
    let mut s = connect(proxy.addr(), None).await;
    until_closed(&mut s)
        .await
        .unwrap_or_else(|e| panic!("after the reload: {e}"));
}

fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Lowers cuttle's descriptor limit (prlimit) to what it has open now plus
/// `room`; returns the new limit.
fn leave_descriptors(proxy: &Cuttle, room: usize) -> usize {
    let limit = open_descriptors(proxy.pid()) + room;
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", proxy.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed");
    limit
}

/// With few descriptors left, idle keep-alive connections give way to new
/// clients (oldest idle first), and the shortage is logged a bounded number
/// of times rather than once per failed accept.
#[tokio::test]
async fn when_descriptors_run_out_idle_keep_alive_connections_make_room() {
    let origin = Origin::start().await;
    origin.route("/hot", |_| Reply::ok("hot").cc("max-age=3600"));
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/hot");
    // Cached first, so later requests need no descriptor for the origin.
    assert_eq!(Req::get(&url).send(&proxy).await.status, 200);
    let mut first = Conn::open(proxy.addr()).await;
    assert_eq!(first.send(Req::get(&url)).await.x_cache(), "HIT");

    // Room for about ten more connections.
    let limit = leave_descriptors(&proxy, 10);

    let mut held = Vec::new();
    for i in 0..30 {
        let mut conn = Conn::open(proxy.addr()).await;
        let resp = conn
            .try_send(Req::get(&url))
            .await
            .unwrap_or_else(|e| panic!("client {i} with {limit} descriptors: {e}"));
        assert_eq!(resp.status, 200);
        held.push(conn);
    }
    assert!(
        first.is_closed(),
        "the oldest idle connection was closed to make room"
    );
    let warnings = proxy
        .stderr()
        .iter()
        .filter(|l| l.contains("descriptors"))
        .count();
    assert!(
        (1..=3).contains(&warnings),
        "the shortage is logged, but not once per failed accept: {:#?}",
        proxy.stderr()
    );
}

/// The attack of issue 12: connections that never send a request hold
/// every descriptor. When no keep-alive connection is idle, those waiting
/// longest for a request are closed to make room, so a new client is
/// served before request_start_timeout (5 minutes here) frees anything.
#[tokio::test]
async fn when_descriptors_run_out_silent_connections_make_room() {
    let origin = Origin::start().await;
    origin.route("/hot", |_| Reply::ok("hot").cc("max-age=3600"));
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/hot");
    assert_eq!(Req::get(&url).send(&proxy).await.status, 200);

    let limit = leave_descriptors(&proxy, 10);

    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(connect(proxy.addr(), None).await);
    }
    let resp = Conn::open(proxy.addr())
        .await
        .try_send(Req::get(&url))
        .await
        .unwrap_or_else(|e| panic!("a client after 20 silent ones, {limit} descriptors: {e}"));
    assert_eq!(resp.status, 200);
    let first = until_closed(&mut silent[0])
        .await
        .unwrap_or_else(|e| panic!("the oldest silent connection: {e}"));
    assert!(first.is_empty());
}
