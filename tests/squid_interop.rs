//! cuttle as the parent of a real Squid: a private Debian Squid 5.7 on
//! 127.0.0.2 sends every miss to cuttle on 127.0.0.3 (`cache_peer ... parent`,
//! `never_direct allow all`), cuttle fetches from an origin inside this test
//! on 127.0.0.1. Two requests through Squid (which caches nothing) reach
//! cuttle; the first is a miss that goes to the origin, the second a hit.
//! Asserts on both access.logs and on the origin's request count. Fails,
//! never skips, when squid is missing (CI installs Debian's package).

mod peer_lab;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use peer_lab::{
    free_tcp_port, log_lines, spawn_cuttle, squid_binary, squid_lab_lines, tail, Squid,
};
use support::TempDir;

const SQUID_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CUTTLE_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const ORIGIN_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// The origin: HTTP/1.1 with keep-alive, one thread per connection. Every
/// GET gets the same cacheable body; each request line and its headers are
/// kept.
struct Origin {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
}

fn origin_body() -> Vec<u8> {
    (0..500)
        .flat_map(|i| format!("cuttle {i:04}\n").into_bytes())
        .collect()
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind((ORIGIN_ADDR, 0)).expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (reqs, n) = (Arc::clone(&requests), Arc::clone(&count));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (reqs, n) = (Arc::clone(&reqs), Arc::clone(&n));
                std::thread::spawn(move || Origin::serve(stream, &reqs, &n));
            }
        });
        Origin {
            addr,
            requests,
            count,
        }
    }

    fn serve(stream: TcpStream, reqs: &Mutex<Vec<String>>, n: &AtomicUsize) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut out = stream;
        loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" || line == "\n" {
                    break;
                }
                head.push_str(&line);
            }
            n.fetch_add(1, Ordering::SeqCst);
            let body = origin_body();
            let method = head.split(' ').next().unwrap_or("").to_string();
            reqs.lock().unwrap().push(head);
            let now = SystemTime::now();
            let response = format!(
                "HTTP/1.1 200 OK\r\nDate: {}\r\nLast-Modified: {}\r\n\
                 Cache-Control: max-age=3600\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\n\r\n",
                httpdate::fmt_http_date(now),
                httpdate::fmt_http_date(now - Duration::from_secs(86_400)),
                body.len()
            );
            let mut bytes = response.into_bytes();
            if method != "HEAD" {
                bytes.extend_from_slice(&body);
            }
            if out.write_all(&bytes).is_err() {
                return;
            }
        }
    }
}

/// One request through a proxy (absolute-form), connection closed after.
/// Returns the status code, the header block and the body.
fn get_via_proxy(proxy: SocketAddr, url: &str, host: &str) -> (u16, String, Vec<u8>) {
    let mut s =
        TcpStream::connect_timeout(&proxy, Duration::from_secs(5)).expect("connect to squid");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {url} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cuttle-interop-test\r\nConnection: close\r\n\r\n")
        .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head, raw[split + 4..].to_vec())
}

#[test]
fn squid_uses_cuttle_as_its_parent_and_the_second_request_is_a_cuttle_hit() {
    let started = Instant::now();
    // Fails here, before anything starts, when squid is missing.
    squid_binary();
    let tmp = TempDir::new("squid-interop");
    let squid_dir = tmp.path().join("squid");
    let cuttle_cache = tmp.path().join("cuttle-cache");
    std::fs::create_dir_all(&cuttle_cache).unwrap();

    let origin = Origin::start();
    let cuttle_port = free_tcp_port(CUTTLE_ADDR);
    let squid_port = free_tcp_port(SQUID_ADDR);

    let cuttle_log = tmp.path().join("cuttle-access.log");
    let cuttle_conf = tmp.path().join("cuttle.conf");
    std::fs::write(
        &cuttle_conf,
        format!(
            "http_port {CUTTLE_ADDR}:{cuttle_port}\n\
             acl squid_child src {SQUID_ADDR}\n\
             http_access allow squid_child\n\
             http_access deny all\n\
             cache_dir mmap {} 16\n\
             access_log stdio:{} squid\n\
             pid_filename {}/cuttle.pid\n\
             visible_hostname cuttle-parent\n",
            cuttle_cache.display(),
            cuttle_log.display(),
            tmp.path().display()
        ),
    )
    .unwrap();

    // Squid caches nothing (`cache deny all`), so both requests reach cuttle;
    // never_direct makes cuttle the only way out. no-netdb-exchange: Squid
    // would otherwise fetch /squid-internal-dynamic/netdb from its parent
    // about 30 s after start.
    let d = squid_dir.display();
    let squid_conf = format!(
            "# private Squid for tests/squid_interop.rs; nothing outside {d}\n\
             http_port {SQUID_ADDR}:{squid_port}\n\
             icp_port 0\n\
             htcp_port 0\n\
             visible_hostname squid-child\n\
             {lab}\
             cache deny all\n\
             tcp_outgoing_address {SQUID_ADDR}\n\
             cache_peer {CUTTLE_ADDR} parent {cuttle_port} 0 no-query default no-digest no-netdb-exchange\n\
             never_direct allow all\n\
             acl test_clients src 127.0.0.0/8\n\
             http_access allow test_clients\n\
             http_access deny all\n",
            lab = squid_lab_lines(&squid_dir)
        );

    let cuttle = spawn_cuttle(&cuttle_conf);
    let _squid = Squid::start_with_conf(&squid_dir, SQUID_ADDR, squid_port, 0, &squid_conf);

    let host = origin.addr.to_string();
    let url = format!("http://{host}/interop/object.txt");
    let squid_addr = SocketAddr::from((SQUID_ADDR, squid_port));
    let (s1, h1, b1) = get_via_proxy(squid_addr, &url, &host);
    let (s2, h2, b2) = get_via_proxy(squid_addr, &url, &host);
    let diag = || {
        format!(
            "\nsquid cache.log:\n{}\ncuttle output:\n{}",
            tail(&squid_dir.join("cache.log"), 15),
            cuttle.output.lock().unwrap()
        )
    };
    assert_eq!(s1, 200, "first response:\n{h1}{}", diag());
    assert_eq!(s2, 200, "second response:\n{h2}{}", diag());
    assert_eq!(b1, origin_body(), "first body");
    assert_eq!(b2, origin_body(), "second body");
    let lower2 = h2.to_ascii_lowercase();
    assert!(
        lower2.contains("x-cache: hit from cuttle-parent"),
        "second response:\n{h2}"
    );
    assert!(
        lower2.contains("x-cache: miss from squid-child"),
        "second response:\n{h2}"
    );

    // The origin saw one request, and it came through Squid and cuttle.
    assert_eq!(
        origin.count.load(Ordering::SeqCst),
        1,
        "origin requests: {:?}",
        origin.requests.lock().unwrap()
    );
    let seen = origin.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        seen.starts_with("get /interop/object.txt http/1.1"),
        "origin saw:\n{seen}"
    );
    assert!(
        seen.contains("squid-child (squid/"),
        "no Via from Squid:\n{seen}"
    );
    assert!(
        seen.contains("cuttle-parent (cuttle/"),
        "no Via from cuttle:\n{seen}"
    );

    // Squid 5.7 logs FIRSTUP_PARENT for this setup (never_direct, one
    // parent): peer selection tries the first parent that is up before the
    // `default` one.
    let squid_lines = log_lines(&squid_dir.join("access.log"), &url, 2);
    assert_eq!(
        squid_lines.len(),
        2,
        "squid access.log:\n{}",
        tail(&squid_dir.join("access.log"), 10)
    );
    for l in &squid_lines {
        assert_eq!(l[3], "TCP_MISS/200", "squid: {l:?}");
        assert_eq!(l[5], "GET", "squid: {l:?}");
        assert_eq!(
            l[8],
            format!("FIRSTUP_PARENT/{CUTTLE_ADDR}"),
            "squid: {l:?}"
        );
    }

    // cuttle: a miss fetched from the origin, then a hit; both for Squid.
    let cuttle_lines = log_lines(&cuttle_log, &url, 2);
    assert_eq!(
        cuttle_lines.len(),
        2,
        "cuttle access.log:\n{}",
        tail(&cuttle_log, 10)
    );
    let (miss, hit) = (&cuttle_lines[0], &cuttle_lines[1]);
    assert_eq!(miss[2], SQUID_ADDR.to_string(), "cuttle: {miss:?}");
    assert_eq!(miss[3], "TCP_MISS/200", "cuttle: {miss:?}");
    assert_eq!(
        miss[8],
        format!("HIER_DIRECT/{ORIGIN_ADDR}"),
        "cuttle: {miss:?}"
    );
    assert_eq!(hit[2], SQUID_ADDR.to_string(), "cuttle: {hit:?}");
    assert_eq!(hit[3], "TCP_MEM_HIT/200", "cuttle: {hit:?}");
    assert_eq!(hit[8], "HIER_NONE/-", "cuttle: {hit:?}");

    eprintln!(
        "squid access.log:\n{}",
        tail(&squid_dir.join("access.log"), 10)
    );
    eprintln!("cuttle access.log:\n{}", tail(&cuttle_log, 10));
    eprintln!("squid interop: {:?} before shutdown", started.elapsed());
}
