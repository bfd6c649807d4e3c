//! 1xx interim responses (RFC 9110 15.2): cuttle relays an origin's 103
//! Early Hints and 102 Processing to an HTTP/1.1 client as they come, before
//! the final response, without their hop-by-hop fields; never to an
//! HTTP/1.0 client; never stores them, so a hit carries no interim response
//! and none of its fields. The origin here is a raw TCP server (the
//! support Origin cannot send 1xx), and so is the client, which sees
//! cuttle's bytes as they are.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use support::{Conf, Cuttle, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the raw origin does for a path, in order.
#[derive(Clone)]
enum Part {
    /// These bytes, written at once.
    Send(Vec<u8>),
    /// Waits until the test says so.
    Hold(Arc<Notify>),
    /// Reads this many bytes of the request body.
    ReadBody(usize),
}

/// A loopback origin that answers each path with its script of parts, on
/// keep-alive connections; counts the requests per path.
struct RawOrigin {
    addr: SocketAddr,
    scripts: Arc<Mutex<HashMap<String, Vec<Part>>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes of a complete response: a 200 with `fields`, cacheable, with `body`.
fn final_200(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=100000\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one request head from `s` into `buf`, taking it off `buf` (what
/// came after it stays there).
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..i + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 65536 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl RawOrigin {
    async fn start() -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let scripts: Arc<Mutex<HashMap<String, Vec<Part>>>> = Arc::default();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (s, c) = (Arc::clone(&scripts), Arc::clone(&counts));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (scripts, counts) = (Arc::clone(&s), Arc::clone(&c));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while let Some(head) = read_request(&mut conn, &mut buf).await {
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        *counts.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                        let script = scripts.lock().unwrap().get(&path).cloned();
                        let script = script.unwrap_or_else(|| {
                            vec![Part::Send(
                                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                            )]
                        });
                        for part in script {
                            match part {
                                Part::Send(bytes) => {
                                    if conn.write_all(&bytes).await.is_err() {
                                        return;
                                    }
                                }
                                Part::Hold(go) => go.notified().await,
                                Part::ReadBody(n) => {
                                    let mut chunk = [0u8; 4096];
                                    while buf.len() < n {
                                        match conn.read(&mut chunk).await {
                                            Ok(got) if got > 0 => {
                                                buf.extend_from_slice(&chunk[..got])
                                            }
                                            _ => return,
                                        }
                                    }
                                    buf.drain(..n);
                                }
                            }
                        }
                    }
                });
            }
        });
        RawOrigin {
            addr,
            scripts,
            counts,
            task,
        }
    }

    fn route(&self, path: &str, script: Vec<Part>) {
        self.scripts
            .lock()
            .unwrap()
            .insert(path.to_string(), script);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A client connection reading cuttle's bytes response head by response
/// head.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn open(proxy: &Cuttle) -> Client {
        let s = TcpStream::connect(proxy.addr()).await.expect("connect");
        Client { s, buf: Vec::new() }
    }

    async fn get(&mut self, url: &str, version: &str) {
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        let req = format!("GET {url} {version}\r\nHost: {host}\r\n\r\n");
        self.s.write_all(req.as_bytes()).await.expect("write");
    }

    /// The next response head (an interim one or the final one); panics
    /// with `what` when none comes (cuttle holds it back).
    async fn head(&mut self, what: &str) -> String {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            let n = match tokio::time::timeout(WAIT, self.s.read(&mut chunk)).await {
                Ok(r) => r.expect("read"),
                Err(_) => panic!(
                    "{what}: no response head came; got so far {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            };
            assert!(
                n > 0,
                "{what}: connection closed; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The final response: its head and its body (by Content-Length).
    async fn final_response(&mut self, what: &str) -> (String, String) {
        let head = self.head(what).await;
        let len: usize = field(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no Content-Length in {head:?}"));
        let mut chunk = [0u8; 4096];
        while self.buf.len() < len {
            let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("body in time")
                .expect("read");
            assert!(n > 0, "{what}: closed mid-body");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = self.buf.drain(..len).collect();
        (head, String::from_utf8_lossy(&body).into_owned())
    }
}

/// The value of the field `name` in `head`, if present.
fn field(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn status_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

const EARLY_HINTS: &str = "HTTP/1.1 103 Early Hints\r\nLink: </styles.css>; rel=preload; as=style\r\nX-My-Header: test\r\nConnection: x-hop\r\nX-Hop: hop\r\nKeep-Alive: timeout=5\r\n\r\n";

async fn start() -> (RawOrigin, Cuttle) {
    let origin = RawOrigin::start().await;
    let cuttle = Cuttle::start(&Conf::new());
    (origin, cuttle)
}

/// Routes `path` to a 103, then the final 200 of `body` once the returned
/// signal is given: the test decides when the final response may come.
fn route_held_early_hints(origin: &RawOrigin, path: &str, body: &str) -> Arc<Notify> {
    let go = Arc::new(Notify::new());
    origin.route(
        path,
        vec![
            Part::Send(EARLY_HINTS.as_bytes().to_vec()),
            Part::Hold(Arc::clone(&go)),
            Part::Send(final_200(body)),
        ],
    );
    go
}

/// Reads the next response head from `client`, which must be the 103.
async fn expect_early_hints(client: &mut Client, what: &str) -> String {
    let head = client.head(what).await;
    assert_eq!(status_line(&head), "HTTP/1.1 103 Early Hints", "{head:?}");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_the_client_before_the_final_response_and_are_never_stored() {
    let (origin, cuttle) = start().await;
    let go = route_held_early_hints(&origin, "/hinted", "styled page");
    let url = origin.url("/hinted");
    let mut client = Client::open(&cuttle).await;
    client.get(&url, "HTTP/1.1").await;
    // The origin sends the final response only once the client has seen
    // the 103: it is relayed as it comes, not with the final response.
    let interim = expect_early_hints(
        &mut client,
        "the 103 while the origin holds the final response",
    )
    .await;
    assert_eq!(
        field(&interim, "link").as_deref(),
        Some("</styles.css>; rel=preload; as=style")
    );
    assert_eq!(field(&interim, "x-my-header").as_deref(), Some("test"));
    for hop in ["connection", "x-hop", "keep-alive"] {
        assert_eq!(field(&interim, hop), None, "hop-by-hop {hop}: {interim:?}");
    }
    go.notify_one();
    let (head, body) = client.final_response("the final response").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert_eq!(body, "styled page");
    for name in ["link", "x-my-header"] {
        assert_eq!(
            field(&head, name),
            None,
            "an interim field in the final response: {head:?}"
        );
    }

    // The same connection, then another one: hits, with no interim
    // response and none of its fields.
    client.get(&url, "HTTP/1.1").await;
    let (head, body) = client
        .final_response("the hit on the same connection")
        .await;
    assert!(
        head.starts_with("HTTP/1.1 200 "),
        "no interim response on a hit: {head:?}"
    );
    assert_eq!(body, "styled page");
    let mut other = Client::open(&cuttle).await;
    other.get(&url, "HTTP/1.1").await;
    let (head, _) = other.final_response("the hit on a new connection").await;
    assert!(
        head.starts_with("HTTP/1.1 200 "),
        "no interim response on a hit: {head:?}"
    );
    for name in ["link", "x-my-header"] {
        assert_eq!(
            field(&head, name),
            None,
            "an interim field stored: {head:?}"
        );
    }
    assert_eq!(origin.count("/hinted"), 1, "the later requests were hits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_is_relayed_too() {
    let (origin, cuttle) = start().await;
    let go = Arc::new(Notify::new());
    origin.route(
        "/slow",
        vec![
            Part::Send(b"HTTP/1.1 102 Processing\r\n\r\n".to_vec()),
            Part::Hold(Arc::clone(&go)),
            Part::Send(final_200("done")),
        ],
    );
    let mut client = Client::open(&cuttle).await;
    client.get(&origin.url("/slow"), "HTTP/1.1").await;
    let interim = client.head("the 102 while the origin works").await;
    assert_eq!(
        status_line(&interim),
        "HTTP/1.1 102 Processing",
        "{interim:?}"
    );
    go.notify_one();
    let (head, body) = client.final_response("the final response").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert_eq!(body, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_interim_responses_come_in_order() {
    let (origin, cuttle) = start().await;
    origin.route("/two", {
        let mut bytes = b"HTTP/1.1 102 Processing\r\n\r\n".to_vec();
        bytes.extend_from_slice(EARLY_HINTS.as_bytes());
        bytes.extend_from_slice(&final_200("both"));
        vec![Part::Send(bytes)]
    });
    let mut client = Client::open(&cuttle).await;
    client.get(&origin.url("/two"), "HTTP/1.1").await;
    let first = client.head("the 102").await;
    assert_eq!(status_line(&first), "HTTP/1.1 102 Processing", "{first:?}");
    expect_early_hints(&mut client, "the 103").await;
    let (head, body) = client.final_response("the final response").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert_eq!(body, "both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_gets_no_interim_response() {
    let (origin, cuttle) = start().await;
    origin.route("/old", {
        let mut bytes = EARLY_HINTS.as_bytes().to_vec();
        bytes.extend_from_slice(&final_200("plain"));
        vec![Part::Send(bytes)]
    });
    let mut client = Client::open(&cuttle).await;
    client.get(&origin.url("/old"), "HTTP/1.0").await;
    let (head, body) = client.final_response("the response").await;
    // hyper answers an HTTP/1.0 request in HTTP/1.0.
    assert!(
        head.starts_with("HTTP/1.0 200 "),
        "the first head: {head:?}"
    );
    assert_eq!(field(&head, "link"), None, "{head:?}");
    assert_eq!(body, "plain");
    // The HTTP/1.1 client afterwards is served from the cache.
    let mut next = Client::open(&cuttle).await;
    next.get(&origin.url("/old"), "HTTP/1.1").await;
    let (head, _) = next.final_response("the hit").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert_eq!(origin.count("/old"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_still_gets_one_100_continue() {
    let (origin, cuttle) = start().await;
    // The origin's own 100 Continue is not relayed: cuttle answers the
    // client's Expect itself, once.
    origin.route(
        "/upload",
        vec![
            Part::Send(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            Part::ReadBody(5),
            Part::Send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nuploaded"
                    .to_vec(),
            ),
        ],
    );
    let url = origin.url("/upload");
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut client = Client::open(&cuttle).await;
    let head = format!(
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    );
    client.s.write_all(head.as_bytes()).await.expect("write");
    let cont = client.head("the 100 Continue").await;
    assert_eq!(status_line(&cont), "HTTP/1.1 100 Continue", "{cont:?}");
    client.s.write_all(b"hello").await.expect("write body");
    let (head, body) = client.final_response("the final response").await;
    assert!(
        head.starts_with("HTTP/1.1 200 "),
        "one 100 Continue only: {head:?}"
    );
    assert_eq!(body, "uploaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_post_gets_its_interim_responses_too() {
    let (origin, cuttle) = start().await;
    origin.route("/form", {
        let mut bytes = EARLY_HINTS.as_bytes().to_vec();
        bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsent");
        vec![Part::Send(bytes)]
    });
    let url = origin.url("/form");
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut client = Client::open(&cuttle).await;
    let req = format!("POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n");
    client.s.write_all(req.as_bytes()).await.expect("write");
    expect_early_hints(&mut client, "the 103 of a POST").await;
    let (head, body) = client.final_response("the final response").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert_eq!(body, "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sharing_a_collapsed_fetch_gets_no_interim_response() {
    let (origin, cuttle) = start().await;
    let go = route_held_early_hints(&origin, "/shared", "shared");
    let url = origin.url("/shared");
    let mut first = Client::open(&cuttle).await;
    first.get(&url, "HTTP/1.1").await;
    expect_early_hints(&mut first, "the 103 to the client that started the fetch").await;
    // The second client joins the fetch in flight (the origin holds it).
    let mut second = Client::open(&cuttle).await;
    second.get(&url, "HTTP/1.1").await;
    // cuttle shows no sign of a request joining a fetch before it ends: give
    // it a moment to arrive. Arriving later, it is a hit, which must carry
    // no interim response either; the origin's count tells them apart.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    go.notify_one();
    let (head, body) = first.final_response("the first final response").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert_eq!(body, "shared");
    let (head, body) = second.final_response("the shared response").await;
    assert!(
        head.starts_with("HTTP/1.1 200 "),
        "no interim response: {head:?}"
    );
    assert_eq!(field(&head, "link"), None, "{head:?}");
    assert_eq!(body, "shared");
    assert_eq!(origin.count("/shared"), 1, "one fetch, shared");
}
