//! The lean hit path (issue 24): a plain GET or HEAD answered from the
//! memory cache without hyper must be the general path's hit on the wire,
//! in access.log and in the counters. Each test asks the same request
//! twice: once as a connection's first request (the lean path answers,
//! which cache.log shows at `RUST_LOG=cuttle::http::lean=debug`) and once
//! after a request the lean path leaves to hyper (`Content-Length: 0`),
//! from which hyper serves the rest of the connection; the two answers
//! are compared byte for byte but for the Age value.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::tls::Pki;
use support::{free_port, http_date, mgr_page, Conf, Cuttle, LogLine, Origin, Reply, TempDir};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The tests' configuration: a cache.log for the lean path's debug lines.
fn lean_conf() -> Conf {
    Conf::new().extra("cache_log {dir}/cache.log")
}

/// Starts cuttle on `conf` (a [`lean_conf`]) with the lean path's debug
/// lines on.
fn start(conf: &Conf) -> Cuttle {
    let dir = TempDir::new("lean");
    let port = free_port();
    let text = conf.text(dir.path(), port);
    let conf_path = dir.path().join("squid.conf");
    std::fs::write(&conf_path, text).expect("write config");
    let args = [
        "run".to_string(),
        "-f".into(),
        conf_path.display().to_string(),
    ];
    let filter = Path::new("warn,cuttle::http::lean=debug");
    Cuttle::start_raw(&args, &[("RUST_LOG", filter)], port, dir, &conf.name)
}

/// Lean hits cache.log has recorded so far.
fn lean_hits(cuttle: &Cuttle) -> usize {
    std::fs::read_to_string(cuttle.dir.path().join("cache.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("lean hit"))
        .count()
}

/// Waits until cache.log shows `n` lean hits, failing with what it has
/// after a while (the line may be written after the answer is read).
async fn expect_lean_hits(cuttle: &Cuttle, n: usize) {
    for _ in 0..100 {
        if lean_hits(cuttle) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lean_hits(cuttle), n, "lean hits in cache.log");
}

/// An origin whose /obj is 1 KiB, fresh for an hour, with repeated and
/// assorted fields (their order must survive).
async fn origin() -> Origin {
    let origin = Origin::start().await;
    origin.route("/obj", |_| {
        Reply::ok(vec![b'x'; 1024])
            .header("Date", http_date(-5))
            .header("Last-Modified", http_date(-3600))
            .header("Cache-Control", "max-age=3600")
            .header("Content-Type", "text/plain")
            .header("X-Two", "one")
            .header("ETag", "\"v1\"")
            .header("X-Two", "two")
            .header("Via", "1.1 upstream")
    });
    origin
}

/// Reads one response off `s`: the head and body bytes as sent (no body
/// for HEAD, else Content-Length of it).
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, head: bool) -> Vec<u8> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().expect("content-length"));
            let total = end + 4 + if head { 0 } else { len };
            if buf.len() >= total {
                return buf.drain(..total).collect();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes `requests` at once and reads their responses (`true`: a HEAD).
async fn exchange<S>(s: &mut S, requests: &[(&str, bool)]) -> Vec<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let all: String = requests.iter().map(|(r, _)| *r).collect();
    s.write_all(all.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for (_, head) in requests {
        let r = read_response(s, &mut buf, *head).await;
        out.push(String::from_utf8_lossy(&r).into_owned());
    }
    out
}

/// A response with its Age value blanked (a second may pass between two).
fn without_age(response: &str) -> String {
    response
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("age: ") {
                "age: _"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn request(method: &str, target: &str, host: &str, extra: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lean-test\r\n{extra}\r\n")
}

/// The access.log lines, less the time and elapsed fields.
fn log_lines(cuttle: &Cuttle) -> Vec<String> {
    std::fs::read_to_string(cuttle.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = LogLine::parse(l);
            format!(
                "{} {} {} {} {} {} {} {}",
                l.client, l.code, l.status, l.bytes, l.method, l.url, l.hierarchy, l.content_type
            )
        })
        .collect()
}

/// Waits for `n` access.log lines.
async fn wait_log(cuttle: &Cuttle, n: usize) -> Vec<String> {
    for _ in 0..250 {
        if log_lines(cuttle).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = log_lines(cuttle);
    assert_eq!(lines.len(), n, "access.log:\n{}", lines.join("\n"));
    lines
}

/// Gets `url` through `cuttle` until it is a memory hit.
async fn warm(cuttle: &Cuttle, target: &str, host: &str) {
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    // A miss, then hits until the object is in the memory cache.
    exchange(
        &mut s,
        &[
            (
                &request("GET", target, host, "Content-Length: 0\r\n"),
                false,
            ),
            (
                &request("GET", target, host, "Content-Length: 0\r\n"),
                false,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_lean_hit_is_the_general_paths_hit_byte_for_byte() {
    let origin = origin().await;
    let cuttle = start(&lean_conf());
    let url = origin.url("/obj");
    let host = format!("127.0.0.1:{}", origin.port());
    warm(&cuttle, &url, &host).await;
    let logged = wait_log(&cuttle, 2).await.len();
    assert_eq!(lean_hits(&cuttle), 0);
    let force = request("GET", &url, &host, "Content-Length: 0\r\n");
    for (method, head) in [("GET", false), ("HEAD", true)] {
        let asked = request(method, &url, &host, "Accept: */*\r\n");
        let before = lean_hits(&cuttle);
        let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
        let lean = exchange(&mut s, &[(&asked, head)]).await.remove(0);
        expect_lean_hits(&cuttle, before + 1).await;
        let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
        let general = exchange(&mut s, &[(&force, false), (&asked, head)])
            .await
            .remove(1);
        expect_lean_hits(&cuttle, before + 1).await;
        assert!(lean.starts_with("HTTP/1.1 200 OK\r\n"), "{lean}");
        assert!(lean.contains("x-cache: HIT from itest1"), "{lean}");
        assert_eq!(without_age(&lean), without_age(&general), "{method}");
        // Its log line: the general path's, field for field.
        let lines = wait_log(&cuttle, logged + 3 * (1 + usize::from(head))).await;
        let n = lines.len();
        assert_eq!(lines[n - 3], lines[n - 1], "{method}: lean, then general");
        assert!(
            lines[n - 3].contains(" TCP_MEM_HIT 200 "),
            "{}",
            lines[n - 3]
        );
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_hyper_takes_the_rest() {
    let origin = origin().await;
    let cuttle = start(&lean_conf());
    let url = origin.url("/obj");
    let host = format!("127.0.0.1:{}", origin.port());
    warm(&cuttle, &url, &host).await;
    let get = request("GET", &url, &host, "");
    let head = request("HEAD", &url, &host, "Connection: keep-alive\r\n");
    let force = request("GET", &url, &host, "Content-Length: 0\r\n");
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    let got = exchange(
        &mut s,
        &[
            (&get, false),
            (&head, true),
            (&get, false),
            (&force, false),
            (&get, false),
            (&head, true),
        ],
    )
    .await;
    // The first three lean, then hyper for the rest of the connection.
    expect_lean_hits(&cuttle, 3).await;
    assert_eq!(without_age(&got[0]), without_age(&got[2]));
    assert_eq!(without_age(&got[0]), without_age(&got[4]));
    assert_eq!(without_age(&got[1]), without_age(&got[5]));
    assert!(
        got[1].ends_with("\r\n\r\n") && !got[1].contains("xxx"),
        "{}",
        got[1]
    );
    // Still open for more, on hyper.
    let more = exchange(&mut s, &[(&get, false)]).await;
    assert_eq!(without_age(&more[0]), without_age(&got[0]));
    expect_lean_hits(&cuttle, 3).await;
    // A request with a body is hyper's, from that request on.
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    let with_body = request("GET", &url, &host, "Content-Length: 5\r\n") + "hello";
    let got = exchange(&mut s, &[(&get, false), (&with_body, false), (&get, false)]).await;
    expect_lean_hits(&cuttle, 4).await;
    assert_eq!(without_age(&got[0]), without_age(&got[2]));
    assert_eq!(without_age(&got[0]), without_age(&got[1]));
    // Connection: close and HTTP/1.0 are hyper's: closed after the answer.
    for asked in [
        request("GET", &url, &host, "Connection: close\r\n"),
        request("GET", &url, &host, "").replace("HTTP/1.1", "HTTP/1.0"),
    ] {
        let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
        s.write_all(asked.as_bytes()).await.expect("write");
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
            .await
            .expect("closed in time")
            .expect("read");
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains(" 200 OK\r\n") && text.ends_with(&"x".repeat(1024)),
            "{text}"
        );
    }
    expect_lean_hits(&cuttle, 4).await;
}

/// The `*_total` series of the metrics page.
async fn metric_totals(cuttle: &Cuttle) -> BTreeMap<String, f64> {
    let (status, page) = mgr_page(cuttle, "metrics").await;
    assert_eq!(status, 200, "{page}");
    page.lines()
        // The pages' own sizes differ (their numbers grow): bytes sent
        // to clients are compared as hit bytes and as log lines.
        .filter(|l| {
            !l.starts_with('#')
                && !l.contains("seconds")
                && !l.starts_with("cuttle_client_http_sent_bytes")
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            name.ends_with("_total")
                .then(|| Some((series.to_string(), value.parse().ok()?)))?
        })
        .collect()
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

#[tokio::test]
async fn a_lean_hit_counts_as_the_general_paths_hit() {
    let origin = origin().await;
    let cuttle = start(&lean_conf());
    let url = origin.url("/obj");
    let host = format!("127.0.0.1:{}", origin.port());
    warm(&cuttle, &url, &host).await;
    let force = request("GET", &url, &host, "Content-Length: 0\r\n");
    let asked = request("GET", &url, &host, "");
    let start = metric_totals(&cuttle).await;
    // The same requests and bytes: the hit lean on a connection of its own...
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    exchange(&mut s, &[(&force, false)]).await;
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    exchange(&mut s, &[(&asked, false)]).await;
    expect_lean_hits(&cuttle, 1).await;
    wait_log(&cuttle, 5).await;
    let middle = metric_totals(&cuttle).await;
    // ...and through hyper after the request that hands it over.
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    exchange(&mut s, &[(&force, false), (&asked, false)]).await;
    wait_log(&cuttle, 8).await;
    let end = metric_totals(&cuttle).await;
    expect_lean_hits(&cuttle, 1).await;
    let lean = delta(&start, &middle);
    assert!(
        lean.keys()
            .any(|k| k.starts_with("cuttle_client_http_hits_total")),
        "{lean:?}"
    );
    assert_eq!(lean, delta(&middle, &end));
}

/// Writes `request` and closes the sending side at once; true when an
/// answer came before cuttle closed.
async fn ask_and_leave(cuttle: &Cuttle, requests: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    s.write_all(requests.as_bytes()).await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await;
    all
}

#[tokio::test]
async fn a_client_gone_before_its_answer_is_logged_only_when_answered() {
    let origin = origin().await;
    let cuttle = start(&lean_conf());
    let url = origin.url("/obj");
    let host = format!("127.0.0.1:{}", origin.port());
    warm(&cuttle, &url, &host).await;
    let force = request("GET", &url, &host, "Content-Length: 0\r\n");
    let asked = request("GET", &url, &host, "");
    // hyper (no half-close) looks for the client's end before it answers
    // a request with nothing after it: found, there is no answer and no
    // log line; not yet there (a race), an answer and its line. Either
    // way, lean or not, every answer has its line and no other is written.
    let mut logged = 2;
    for requests in [
        asked.clone(),
        force.clone() + &asked,
        asked.clone() + &asked,
    ] {
        let got = ask_and_leave(&cuttle, &requests).await;
        let answers = String::from_utf8_lossy(&got)
            .matches("HTTP/1.1 200 OK")
            .count();
        // A request after them shows their lines are all written.
        let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
        exchange(&mut s, &[(&asked, false)]).await;
        logged += answers + 1;
        let lines = wait_log(&cuttle, logged).await;
        assert!(
            lines[2..].iter().all(|l| l.contains(" TCP_MEM_HIT 200 1")),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn lean_hits_over_tls_match_the_general_path() {
    let dir = TempDir::new("lean-tls");
    let pki = Pki::new(dir.path(), "lean");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let origin = origin().await;
    let conf = lean_conf()
        .port_line(&format!(
            "https_port 127.0.0.1:{{port}} accel defaultsite=www.example.com tls-cert={} tls-key={}",
            leaf.cert_path.display(),
            leaf.key_path.display()
        ))
        .extra(&format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query no-digest originserver name=origin",
            origin.port()
        ));
    let cuttle = start(&conf);
    let host = "www.example.com";
    let force = request("GET", "/obj", host, "Content-Length: 0\r\n");
    let asked = request("GET", "/obj", host, "");
    let connect = || support::tls::connect(cuttle.addr(), host, pki.ca_path());
    let mut s = connect().await.expect("TLS");
    exchange(&mut s, &[(&force, false), (&force, false)]).await;
    let mut s = connect().await.expect("TLS");
    let lean = exchange(&mut s, &[(&asked, false), (&asked, false)]).await;
    expect_lean_hits(&cuttle, 2).await;
    let mut s = connect().await.expect("TLS");
    let general = exchange(&mut s, &[(&force, false), (&asked, false)]).await;
    expect_lean_hits(&cuttle, 2).await;
    assert!(lean[0].contains("x-cache: HIT from itest1"), "{}", lean[0]);
    assert_eq!(without_age(&lean[1]), without_age(&general[1]));
    let lines = wait_log(&cuttle, 6).await;
    assert_eq!(lines[3], lines[5]);
}

#[tokio::test]
async fn after_a_reload_lean_hits_carry_the_new_configuration() {
    let origin = origin().await;
    let cuttle = start(&lean_conf());
    let url = origin.url("/obj");
    let host = format!("127.0.0.1:{}", origin.port());
    warm(&cuttle, &url, &host).await;
    let asked = request("GET", &url, &host, "");
    let force = request("GET", &url, &host, "Content-Length: 0\r\n");
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    let first = exchange(&mut s, &[(&asked, false)]).await.remove(0);
    assert!(first.contains("x-cache: HIT from itest1\r\n"), "{first}");
    let mut renamed = lean_conf();
    renamed.name = "itest2".into();
    cuttle.rewrite_config(&renamed);
    cuttle.signal("HUP");
    let mut lean = String::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
        lean = exchange(&mut s, &[(&asked, false)]).await.remove(0);
        if lean.contains("x-cache: HIT from itest2\r\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lean.contains("x-cache: HIT from itest2\r\n"), "{lean}");
    assert!(lean.contains("(cuttle/"), "{lean}");
    let mut s = TcpStream::connect(cuttle.addr()).await.expect("connect");
    let general = exchange(&mut s, &[(&force, false), (&asked, false)])
        .await
        .remove(1);
    assert_eq!(without_age(&lean), without_age(&general));
    let hits = lean_hits(&cuttle);
    assert!(hits >= 2, "lean hits: {hits}");
}
