//! cuttle as the parent of a real Squid: a private Debian Squid 5.7 on
//! 127.0.0.2 sends every miss to cuttle on 127.0.0.3 (`cache_peer ... parent`,
//! `never_direct allow all`), cuttle fetches from an origin inside this test
//! on 127.0.0.1. Two requests through Squid (which caches nothing) reach
//! cuttle; the first is a miss that goes to the origin, the second a hit.
//! Asserts on both access.logs and on the origin's request count. Fails,
//! never skips, when squid is missing (CI installs Debian's package).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use support::TempDir;

const SQUID_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CUTTLE_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const ORIGIN_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const STARTUP: Duration = Duration::from_secs(10);

/// Debian's squid: /usr/sbin/squid, else `squid` on PATH.
fn squid_binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/squid");
    if debian.is_file() {
        return debian;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("squid"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "squid not found (looked for /usr/sbin/squid and `squid` on PATH): this test runs a \
             real Squid 5.7 as cuttle's child; install it with `apt-get install squid` \
             (.ci/run does)"
        )
    })
}

/// A port that was free a moment ago on `ip` (neither cuttle nor Squid
/// accepts port 0 in http_port).
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0 ({e}); is 127.0.0.0/8 routed to lo?"))
        .port()
}

/// uid and gid of the `proxy` user, Squid's cache_effective_user on Debian.
fn proxy_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("proxy:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

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

/// The processes this test started; stopped on drop, panics included.
struct Node {
    child: Child,
    /// Squid's service name (-n): its shared-memory segments are named after it.
    squid_service: Option<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(svc) = &self.squid_service {
            // SIGTERM lets Squid remove its /dev/shm segments; it exits within
            // about a second with shutdown_lifetime 0.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Ok(entries) = std::fs::read_dir("/dev/shm") {
                let prefix = format!("{svc}-");
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts cuttle and waits for its "listening on" line.
fn start_cuttle(conf: &Path) -> (Node, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["run", "-f"])
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cuttle");
    let output = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let (output, tx) = (Arc::clone(&output), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                output.lock().unwrap().push_str(&format!("{line}\n"));
                if line.starts_with("cuttle: listening on") {
                    let _ = tx.send(());
                }
            }
        });
    }
    let node = Node {
        child,
        squid_service: None,
    };
    if rx.recv_timeout(STARTUP).is_err() {
        panic!(
            "cuttle did not start listening within {STARTUP:?}; its output:\n{}",
            output.lock().unwrap()
        );
    }
    (node, output)
}

/// `squid -k parse`, then `squid -N`; waits until cache.log says it accepts
/// HTTP connections (a probe connection would add an access.log line).
fn start_squid(squid: &Path, dir: &Path, conf: &Path, service: &str) -> Node {
    let parse = Command::new(squid)
        .args(["-n", service, "-k", "parse", "-f"])
        .arg(conf)
        .output()
        .expect("run squid -k parse");
    let parse_text = String::from_utf8_lossy(&parse.stderr).to_string()
        + &String::from_utf8_lossy(&parse.stdout);
    let complaints: Vec<&str> = parse_text
        .lines()
        .filter(|l| l.contains("FATAL") || l.contains("ERROR") || l.contains("WARNING"))
        .collect();
    assert!(
        parse.status.success() && complaints.is_empty(),
        "squid -k parse rejects the test's squid.conf ({}):\n{parse_text}",
        parse.status
    );
    let stdio = std::fs::File::create(dir.join("squid.stdout")).expect("squid.stdout");
    let child = Command::new(squid)
        .args(["-n", service, "-N", "-f"])
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(stdio.try_clone().expect("clone"))
        .stderr(stdio)
        .spawn()
        .expect("spawn squid");
    let mut node = Node {
        child,
        squid_service: Some(service.to_string()),
    };
    let cache_log = dir.join("cache.log");
    let deadline = Instant::now() + STARTUP;
    loop {
        let log = std::fs::read_to_string(&cache_log).unwrap_or_default();
        if log.contains("Accepting HTTP Socket connections") {
            return node;
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!(
                "squid exited at start ({status}); cache.log:\n{}\nstdout/stderr:\n{}",
                tail(&cache_log, 20),
                tail(&dir.join("squid.stdout"), 20)
            );
        }
        if Instant::now() > deadline {
            panic!(
                "squid did not accept connections within {STARTUP:?}; cache.log:\n{}",
                tail(&cache_log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
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

/// Lines of `log` mentioning `url`, waiting up to 5 s for `want` of them
/// (both programs buffer their logs for a moment).
fn log_lines(log: &Path, url: &str, want: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Vec<String>> = text
            .lines()
            .filter(|l| l.contains(url))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        if lines.len() >= want || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn squid_uses_cuttle_as_its_parent_and_the_second_request_is_a_cuttle_hit() {
    let started = Instant::now();
    let squid = squid_binary();
    let tmp = TempDir::new("squid-interop");
    let squid_dir = tmp.path().join("squid");
    let cuttle_cache = tmp.path().join("cuttle-cache");
    std::fs::create_dir_all(&squid_dir).unwrap();
    std::fs::create_dir_all(&cuttle_cache).unwrap();

    let origin = Origin::start();
    let cuttle_port = free_port(CUTTLE_ADDR);
    let squid_port = free_port(SQUID_ADDR);

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
             visible_hostname cuttle-parent\n",
            cuttle_cache.display(),
            cuttle_log.display()
        ),
    )
    .unwrap();

    // Squid caches nothing (`cache deny all`), so both requests reach cuttle;
    // never_direct makes cuttle the only way out. no-netdb-exchange: Squid
    // would otherwise fetch /squid-internal-dynamic/netdb from its parent
    // about 30 s after start.
    let d = squid_dir.display();
    let squid_conf = squid_dir.join("squid.conf");
    std::fs::write(
        &squid_conf,
        format!(
            "# private Squid for tests/squid_interop.rs; nothing outside {d}\n\
             http_port {SQUID_ADDR}:{squid_port}\n\
             icp_port 0\n\
             htcp_port 0\n\
             visible_hostname squid-child\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log squid\n\
             cache_store_log none\n\
             netdb_filename none\n\
             coredump_dir {d}\n\
             cache_mem 8 MB\n\
             cache deny all\n\
             pinger_enable off\n\
             minimum_direct_rtt 0\n\
             dns_nameservers 127.0.0.1\n\
             shutdown_lifetime 0 seconds\n\
             tcp_outgoing_address {SQUID_ADDR}\n\
             cache_peer {CUTTLE_ADDR} parent {cuttle_port} 0 no-query default no-digest no-netdb-exchange\n\
             never_direct allow all\n\
             acl test_clients src 127.0.0.0/8\n\
             http_access allow test_clients\n\
             http_access deny all\n"
        ),
    )
    .unwrap();
    // As root, Squid switches to cache_effective_user (Debian: proxy) before
    // it opens its logs: that user must own the directory.
    if std::fs::metadata(tmp.path()).unwrap().uid() == 0 {
        let (uid, gid) = proxy_user().expect(
            "running as root and there is no `proxy` user for Squid's cache_effective_user",
        );
        for p in [&squid_dir, &squid_conf] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to proxy");
        }
    }

    let (_cuttle, cuttle_output) = start_cuttle(&cuttle_conf);
    let service = format!("cuttletest{}", std::process::id());
    let _squid = start_squid(&squid, &squid_dir, &squid_conf, &service);

    let host = origin.addr.to_string();
    let url = format!("http://{host}/interop/object.txt");
    let squid_addr = SocketAddr::from((SQUID_ADDR, squid_port));
    let (s1, h1, b1) = get_via_proxy(squid_addr, &url, &host);
    let (s2, h2, b2) = get_via_proxy(squid_addr, &url, &host);
    let diag = || {
        format!(
            "\nsquid cache.log:\n{}\ncuttle output:\n{}",
            tail(&squid_dir.join("cache.log"), 15),
            cuttle_output.lock().unwrap()
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
    assert_eq!(hit[3], "TCP_HIT/200", "cuttle: {hit:?}");
    assert_eq!(hit[8], "HIER_NONE/-", "cuttle: {hit:?}");

    eprintln!(
        "squid access.log:\n{}",
        tail(&squid_dir.join("access.log"), 10)
    );
    eprintln!("cuttle access.log:\n{}", tail(&cuttle_log, 10));
    eprintln!("squid interop: {:?} before shutdown", started.elapsed());
}
