//! Message framing at both ends of cuttle (issue 12): a response framed by
//! both Transfer-Encoding and Content-Length must reach clients framed by
//! the bytes actually sent, on a miss and on every kind of hit, so a
//! pipelining client can never read part of one body as the next response;
//! a request with a transfer coding cuttle does not implement is refused
//! (501, as Squid); a malformed request body is the client's error (400),
//! never counted against the origin.
//!
//! The origin of the framing tests is a raw TCP server writing exact bytes
//! (no HTTP library would send both framing fields), and the client is a
//! raw pipelining one that frames responses itself (RFC 9112 §6.3).
//! Addresses: ICP on 127.0.21.1, its asker on 127.0.21.2.

mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{expected_reply, free_udp_port, query, Conf, Cuttle, Origin, Reply, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

// ------------------------------------------------------------- raw origin

/// What the raw origin writes for a path: the whole response, or a first
/// part and the rest once `release` is notified.
#[derive(Clone)]
struct RawReply {
    first: Vec<u8>,
    rest: Vec<u8>,
    release: Option<Arc<Notify>>,
}

impl RawReply {
    fn whole(bytes: impl Into<Vec<u8>>) -> RawReply {
        RawReply {
            first: bytes.into(),
            rest: Vec::new(),
            release: None,
        }
    }
}

type Handler = Arc<dyn Fn(&str) -> RawReply + Send + Sync>;

/// A keep-alive origin that answers each request head (bodies are not
/// expected) with the bytes its path's handler gives; it counts requests
/// per path and keeps each request head.
struct RawOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl RawOrigin {
    async fn start(routes: Vec<(&'static str, Handler)>) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes: Arc<HashMap<&'static str, Handler>> = Arc::new(routes.into_iter().collect());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve_raw(s, Arc::clone(&routes), Arc::clone(&log)));
            }
        });
        RawOrigin { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }

    fn heads(&self, path: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

async fn serve_raw(
    mut s: TcpStream,
    routes: Arc<HashMap<&'static str, Handler>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            seen.lock().unwrap().push((path.clone(), head.clone()));
            let reply = match routes.get(path.as_str()) {
                Some(h) => h(&head),
                None => {
                    RawReply::whole(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec())
                }
            };
            if s.write_all(&reply.first).await.is_err() {
                return;
            }
            if let Some(release) = &reply.release {
                release.notified().await;
            }
            if s.write_all(&reply.rest).await.is_err() {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The forged response the poisoned body carries after "hello".
const FORGED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Forged: yes\r\nCache-Control: max-age=3600\r\n\r\nforged";

/// The de-chunked body of the poisoned response: what a correct recipient
/// (which ignores the Content-Length) takes as its body.
fn poisoned_body() -> Vec<u8> {
    let mut body = b"hello".to_vec();
    body.extend_from_slice(FORGED);
    body
}

/// A response framed by both fields: `Content-Length: 5` and a chunked
/// body whose one chunk is "hello" followed by a complete second response.
fn poisoned_head(extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n{extra}\r\n")
        .into_bytes()
}

fn poisoned_chunks() -> Vec<u8> {
    let body = poisoned_body();
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

fn poisoned(extra: &'static str) -> Handler {
    Arc::new(move |_| {
        let mut bytes = poisoned_head(extra);
        bytes.extend_from_slice(&poisoned_chunks());
        RawReply::whole(bytes)
    })
}

/// The honest response of the second URL.
fn real() -> Handler {
    Arc::new(|_| {
        RawReply::whole(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=3600\r\n\r\nreal"
                .to_vec(),
        )
    })
}

// ------------------------------------------------------------- raw client

/// A response as a raw client framed it.
#[derive(Debug)]
struct RawResp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResp {
    /// A field's values joined with ", " ("" when absent).
    fn header(&self, name: &str) -> String {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn has(&self, name: &str) -> bool {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .any(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    }
}

/// One keep-alive client connection that pipelines.
struct RawClient {
    s: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    async fn open(addr: SocketAddr) -> RawClient {
        RawClient {
            s: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    /// Writes all `requests` at once (pipelined) as `METHOD URL` pairs.
    async fn pipeline(&mut self, requests: &[(&str, &str)]) {
        let mut out = Vec::new();
        for (method, url) in requests {
            let host = url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            out.extend_from_slice(
                format!("{method} {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            );
        }
        self.s.write_all(&out).await.expect("write requests");
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
            .await
            .expect("response bytes in time")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await,
                "connection closed {} bytes into a {n}-byte part",
                self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(i + 2).await;
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill().await, "connection closed inside a chunk line");
        }
    }

    /// Reads the next response, framed as RFC 9112 §6.3 says (`head_request`:
    /// it answers a HEAD, so it has no body). A response carrying both
    /// Transfer-Encoding and Content-Length is itself a failure.
    async fn response(&mut self, head_request: bool) -> RawResp {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill().await,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.take(end).await).into_owned();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let mut resp = RawResp {
            status,
            head,
            body: Vec::new(),
        };
        assert!(
            !(resp.has("transfer-encoding") && resp.has("content-length")),
            "a response framed by both fields: {:?}",
            resp.head
        );
        if head_request || status == 304 || status == 204 {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .eq_ignore_ascii_case("chunked")
        {
            loop {
                let size_line = self.line().await;
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                let data = self.take(size).await;
                resp.body.extend_from_slice(&data);
                assert_eq!(self.line().await, "", "chunk not followed by CRLF");
            }
        } else if resp.has("content-length") {
            let n: usize = resp
                .header("content-length")
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length in {:?}", resp.head));
            resp.body = self.take(n).await;
        } else {
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }
}

/// The second response of a pipelined pair must be the real one, never
/// the response forged inside the poisoned body.
fn assert_real(resp: &RawResp, what: &str) {
    assert_eq!(
        (resp.status, resp.body.as_slice(), resp.has("x-forged")),
        (200, &b"real"[..], false),
        "{what}: the response after the poisoned one is not the real one: {resp:?}"
    );
}

fn assert_poisoned_whole(resp: &RawResp, what: &str) {
    assert_eq!(resp.status, 200, "{what}: {resp:?}");
    assert_eq!(
        String::from_utf8_lossy(&resp.body),
        String::from_utf8_lossy(&poisoned_body()),
        "{what}: the body must be the origin's chunks, whatever its Content-Length said; head {:?}",
        resp.head
    );
    if resp.has("content-length") {
        assert_eq!(
            resp.header("content-length"),
            poisoned_body().len().to_string(),
            "{what}"
        );
    }
}

// ------------------------------------------------------------- item 1

#[tokio::test(flavor = "multi_thread")]
async fn the_miss_of_a_response_framed_by_both_fields_goes_out_by_its_chunks() {
    let origin = RawOrigin::start(vec![
        ("/poisoned", poisoned("Cache-Control: max-age=3600\r\n")),
        ("/real", real()),
    ])
    .await;
    let cuttle = Cuttle::start(&Conf::new());
    let (bad, good) = (origin.url("/poisoned"), origin.url("/real"));

    let mut c = RawClient::open(cuttle.addr()).await;
    c.pipeline(&[("GET", &bad), ("GET", &good)]).await;
    let first = c.response(false).await;
    assert_poisoned_whole(&first, "miss");
    assert_eq!(first.header("x-cache").split(' ').next(), Some("MISS"));
    assert_real(&c.response(false).await, "after the miss");
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_of_a_response_framed_by_both_fields_are_framed_by_the_stored_body() {
    let origin = RawOrigin::start(vec![
        ("/poisoned", poisoned("Cache-Control: max-age=3600\r\n")),
        ("/real", real()),
    ])
    .await;
    let cuttle = Cuttle::start(&Conf::new());
    let (bad, good) = (origin.url("/poisoned"), origin.url("/real"));

    // The miss stores it; read only the poisoned response, by its chunks.
    let mut c = RawClient::open(cuttle.addr()).await;
    c.pipeline(&[("GET", &bad)]).await;
    let _ = c.response(false).await;
    drop(c);

    // A hit from disk, then one from memory, then HEAD: each followed on
    // the same connection by a request for another URL.
    for what in ["disk hit", "memory hit"] {
        let mut c = RawClient::open(cuttle.addr()).await;
        c.pipeline(&[("GET", &bad), ("GET", &good)]).await;
        let hit = c.response(false).await;
        assert_eq!(
            hit.header("x-cache").split(' ').next(),
            Some("HIT"),
            "{what}: {hit:?}"
        );
        assert_poisoned_whole(&hit, what);
        assert_real(&c.response(false).await, what);
    }
    let mut c = RawClient::open(cuttle.addr()).await;
    c.pipeline(&[("HEAD", &bad), ("GET", &good)]).await;
    let head = c.response(true).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("content-length"),
        poisoned_body().len().to_string(),
        "HEAD hit: the length a GET would get; {head:?}"
    );
    assert_real(&c.response(false).await, "after HEAD");
    assert_eq!(origin.count("/poisoned"), 1, "all but the first were hits");

    let log = cuttle.log(6).await;
    let poisoned_lines: Vec<String> = log
        .iter()
        .filter(|l| l.url == bad)
        .map(|l| format!("{} {}", l.method, l.result()))
        .collect();
    assert_eq!(
        poisoned_lines,
        [
            "GET TCP_MISS/200",
            "GET TCP_MEM_HIT/200",
            "GET TCP_MEM_HIT/200",
            "HEAD TCP_MEM_HIT/200"
        ],
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revalidated_hit_is_framed_by_the_stored_body_not_by_any_content_length() {
    // Stale at once (max-age=0): every hit is revalidated, and the 304
    // carries a Content-Length of its own, which must not replace the
    // stored body's length either.
    let validated: Handler = Arc::new(|head: &str| {
        if head.to_ascii_lowercase().contains("if-none-match") {
            RawReply::whole(
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=0\r\nContent-Length: 1\r\n\r\n"
                    .to_vec(),
            )
        } else {
            let mut bytes = poisoned_head("ETag: \"v1\"\r\nCache-Control: max-age=0\r\n");
            bytes.extend_from_slice(&poisoned_chunks());
            RawReply::whole(bytes)
        }
    });
    let origin = RawOrigin::start(vec![("/stale", validated), ("/real", real())]).await;
    let cuttle = Cuttle::start(&Conf::new());
    let (bad, good) = (origin.url("/stale"), origin.url("/real"));

    let mut c = RawClient::open(cuttle.addr()).await;
    c.pipeline(&[("GET", &bad)]).await;
    let _ = c.response(false).await;
    drop(c);
    for n in 1..=2 {
        let mut c = RawClient::open(cuttle.addr()).await;
        c.pipeline(&[("GET", &bad), ("GET", &good)]).await;
        let what = format!("revalidated hit {n}");
        assert_poisoned_whole(&c.response(false).await, &what);
        assert_real(&c.response(false).await, &what);
    }
    let heads = origin.heads("/stale");
    assert_eq!(heads.len(), 3, "{heads:#?}");
    assert!(
        heads[1..]
            .iter()
            .all(|h| h.to_ascii_lowercase().contains("if-none-match: \"v1\"")),
        "{heads:#?}"
    );
    let log = cuttle.log(5).await;
    let results: Vec<String> = log
        .iter()
        .filter(|l| l.url == bad)
        .map(|l| l.result())
        .collect();
    assert_eq!(
        results,
        [
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200",
            "TCP_REFRESH_UNMODIFIED/200"
        ],
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collapsed_readers_of_a_response_framed_by_both_fields_get_its_chunks() {
    // The origin sends the head and holds the body until released, so the
    // later requests find the fetch running and join it.
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let slow: Handler = Arc::new(move |_| RawReply {
        first: poisoned_head("Cache-Control: max-age=3600\r\n"),
        rest: poisoned_chunks(),
        release: Some(Arc::clone(&gate)),
    });
    let origin = RawOrigin::start(vec![("/slow", slow), ("/real", real())]).await;
    let cuttle = Cuttle::start(&Conf::new());
    let (bad, good) = (origin.url("/slow"), origin.url("/real"));

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = RawClient::open(cuttle.addr()).await;
        c.pipeline(&[("GET", &bad), ("GET", &good)]).await;
        clients.push(c);
        // The first request reached the origin: the fetch is running.
        while origin.count("/slow") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Give the followers' requests time to join before the body comes
    // (should one miss the fetch it is a hit: framed the same way).
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.notify_one();
    for (n, c) in clients.iter_mut().enumerate() {
        let what = format!("reader {n}");
        assert_poisoned_whole(&c.response(false).await, &what);
        assert_real(&c.response(false).await, &what);
    }
    assert_eq!(origin.count("/slow"), 1, "one fetch for all three");
}

// ------------------------------------------------------------- item 7

/// Writes `request` on a new connection; the response text and whether the
/// server closed the connection after it (within WAIT).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .is_ok_and(|r| r.is_ok());
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_coding_other_than_chunked_gets_501_unsup_req_and_goes_nowhere() {
    let origin = Origin::start().await;
    origin.route("/te", |s| Reply::ok(s.body.clone()));
    let cuttle = Cuttle::start(&Conf::new());
    let url = origin.url("/te");
    let host = url.trim_start_matches("http://").trim_end_matches("/te");

    // Squid 5.7 answers 501 ERR_UNSUP_REQ, and closes, for any
    // Transfer-Encoding but "chunked" alone (checked on a private Squid).
    for te in ["gzip, chunked", "chunked, chunked", "x-custom;a=1, chunked"] {
        let request = format!(
            "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let (resp, closed) = exchange(cuttle.addr(), request.as_bytes()).await;
        assert!(
            resp.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
            "Transfer-Encoding: {te}: {resp}"
        );
        assert!(
            resp.to_ascii_lowercase()
                .contains("\r\nx-squid-error: err_unsup_req 0\r\n"),
            "{resp}"
        );
        assert!(closed, "the connection must close after the 501: {resp}");
    }
    assert_eq!(origin.count("/te"), 0, "nothing was forwarded");

    // Plain chunked is forwarded, its body whole.
    let request = format!(
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let (resp, _) = exchange(cuttle.addr(), request.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("hello"), "{resp}");
    assert_eq!(origin.last("/te").body.as_ref(), b"hello");

    // Logged as Squid does: NONE_NONE/501 ... POST url - HIER_NONE/- text/html.
    let log = cuttle.log(4).await;
    let lines: Vec<String> = log
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {} {}",
                l.result(),
                l.method,
                l.url,
                l.hierarchy,
                l.content_type
            )
        })
        .collect();
    let refused = format!("NONE_NONE/501 POST {url} HIER_NONE/- text/html");
    assert_eq!(
        lines[..3],
        [refused.clone(), refused.clone(), refused],
        "{log:#?}"
    );
    assert!(lines[3].starts_with("TCP_MISS/200 POST"), "{log:#?}");
}

// ------------------------------------------------------------- item 9

const ICP_MISS: u8 = 3;
const ICP_MISS_NOFETCH: u8 = 21;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_request_bodies_are_the_clients_error_and_never_trip_hit_only_mode() {
    let origin = Origin::start().await;
    origin.route("/post", |s| {
        Reply::ok(format!("got {} bytes", s.body.len()))
    });
    let (icp_ip, asker_ip) = (Ipv4Addr::new(127, 0, 21, 1), Ipv4Addr::new(127, 0, 21, 2));
    let icp_port = free_udp_port(icp_ip);
    let cuttle = Cuttle::start(
        &Conf::new()
            .extra(&format!("icp_port {icp_port}"))
            .extra(&format!("udp_incoming_address {icp_ip}"))
            .extra(&format!("acl siblings src {asker_ip}"))
            .extra("icp_access allow siblings")
            .extra("icp_access deny all"),
    );
    let icp = SocketAddr::from((icp_ip, icp_port));
    cuttle
        .wait_output(&format!("cuttle: ICP on {icp}"), false)
        .await;
    let url = origin.url("/post");
    let host = url.trim_start_matches("http://").trim_end_matches("/post");

    // Far more than the 70 failures in a row that trip hit-only mode.
    const POSTS: usize = 100;
    let request = format!(
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    );
    for n in 1..=POSTS {
        let (resp, closed) = exchange(cuttle.addr(), request.as_bytes()).await;
        assert!(
            resp.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "POST {n} with an invalid chunk size: {resp}"
        );
        assert!(
            resp.to_ascii_lowercase()
                .contains("\r\nx-squid-error: err_invalid_req 0\r\n"),
            "{resp}"
        );
        assert!(closed, "the connection must close after the 400: {resp}");
    }

    // The origin is healthy: ICP still answers MISS, not MISS_NOFETCH.
    let asker = UdpSocket::bind((asker_ip, 0)).expect("bind asker");
    asker.set_read_timeout(Some(WAIT)).expect("read timeout");
    let uncached = origin.url("/never-fetched");
    asker
        .send_to(&query(7, &uncached), icp)
        .expect("send query");
    let mut buf = [0u8; 17000];
    let (n, _) = asker.recv_from(&mut buf).expect("an ICP reply");
    assert_ne!(
        buf[0], ICP_MISS_NOFETCH,
        "hit-only mode after client errors"
    );
    assert_eq!(buf[..n], expected_reply(ICP_MISS, 7, &uncached));
    assert!(
        !cuttle.stderr().iter().any(|l| l.contains("hit-only mode")),
        "{:#?}",
        cuttle.stderr()
    );

    // Each is logged as the client's error.
    let log = cuttle.log(POSTS + 1).await;
    let posts: Vec<_> = log.iter().filter(|l| l.method == "POST").collect();
    assert_eq!(posts.len(), POSTS, "{log:#?}");
    for l in posts {
        assert_eq!(
            (l.result(), l.url.as_str(), l.hierarchy.as_str()),
            ("TCP_MISS/400".to_string(), url.as_str(), "HIER_NONE/-"),
            "{}",
            l.raw
        );
    }
}
