//! cuttle's CARP, userhash and sourcehash against a real Squid 5.7: a
//! private Debian Squid forwards every request (`cache deny all`,
//! `never_direct allow all`) to one of five parents with different weights
//! and names; each parent is a tiny HTTP server in this test that answers
//! with its own name and the request target it saw (Squid's canonical URL).
//! For every request, `cuttle_protocol::carp` must pick the parent Squid
//! picked, and Squid's access.log must say it chose by hash (`CARP/`,
//! `USERHASH_PARENT/`, `SOURCEHASH_PARENT/`), never a fallback. Runs: plain
//! CARP over 1,200 varied URLs, a different `carp-key=` per member, CARP
//! with one parent dead (the running hash still passes through it), 1,000
//! Basic-auth users, 30 client addresses. Fails, never skips, when squid
//! is missing (CI installs Debian's package).

mod peer_lab;
mod support;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cuttle_protocol::carp::{carp_key, Carp, CarpKeyParts, CarpMember, SourceHash, UrlParts};
use peer_lab::{free_tcp_port, squid_lab_lines, Squid};
use support::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Concurrent client connections to Squid.
const CLIENT_THREADS: usize = 8;

/// The parents of every run: names in mixed case with a non-ASCII byte
/// (hashed as signed chars), weights unequal with one tie (the tie keeps
/// configuration order).
const PARENTS: [(&str, u32); 5] = [
    ("alpha", 1),
    ("Beta", 3),
    ("gamma-3", 2),
    ("Delta.Parent", 3),
    ("épsilon", 5),
];

/// One parent: keep-alive HTTP/1.1, a thread per connection. Every request
/// is answered 200, `no-store`, with a body of `name` LF request-target.
struct Parent {
    name: &'static str,
    addr: SocketAddr,
    /// Connections accepted, Squid's empty liveness probes included.
    accepted: Arc<AtomicUsize>,
    /// Set by `stop`: the listener closes (connections are refused) and
    /// open connections close without an answer.
    stopped: Arc<AtomicBool>,
}

impl Parent {
    fn start(name: &'static str, ip: Ipv4Addr) -> Parent {
        let listener = TcpListener::bind((ip, 0)).expect("parent bind");
        let addr = listener.local_addr().expect("parent addr");
        // Non-blocking accepts, so the loop notices `stopped` and drops
        // (closes) the listening socket.
        listener.set_nonblocking(true).expect("parent nonblocking");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (count, stop) = (Arc::clone(&accepted), Arc::clone(&stopped));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let stop = Arc::clone(&stop);
                        let _ = stream.set_nonblocking(false);
                        std::thread::spawn(move || Parent::serve(name, stream, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Parent {
            name,
            addr,
            accepted,
            stopped,
        }
    }

    /// Closes the parent: Squid's next connection to it is refused.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // The accept loop polls every 2 ms; after this its socket is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
            assert!(Instant::now() < deadline, "{} still accepts", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn serve(name: &str, stream: TcpStream, stopped: &AtomicBool) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let Ok(reader) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(reader);
        let mut out = stream;
        loop {
            let mut request_line = Vec::new();
            match reader.read_until(b'\n', &mut request_line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == b"\r\n" || line == b"\n" {
                    break;
                }
            }
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            // "GET <target> HTTP/1.1": the target may hold raw UTF-8.
            let target: Vec<u8> = request_line
                .split(|&b| b == b' ')
                .nth(1)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            let mut body = format!("{name}\n").into_bytes();
            body.extend_from_slice(&target);
            // Warm-ups close their connection: Squid logs the hierarchy code
            // a pooled connection was opened with for every request that
            // reuses it, so a connection opened by a warm-up's fallback
            // (ANY_OLD_PARENT) must not serve the compared requests.
            let warmup = target.windows(8).any(|w| w == b"/warmup/");
            let head = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\n{}\r\n",
                body.len(),
                if warmup { "Connection: close\r\n" } else { "" }
            );
            if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() || warmup {
                return;
            }
        }
    }
}

/// A Squid for one run on `addr`: `extra` holds the run's own lines
/// (cache_peer, auth); `tag` names it.
fn start_squid(dir: &Path, addr: SocketAddr, tag: &str, extra: &str) -> Squid {
    let SocketAddr::V4(addr) = addr else {
        panic!("{addr}: the lab's Squids listen on 127.0.0.0/8")
    };
    let d = dir.display();
    let ip = addr.ip();
    // Memory only and `cache deny all`: every request is forwarded;
    // never_direct: only to a parent. no-netdb-exchange and no-digest
    // keep Squid's own fetches from the parents out of the counts.
    // debug_options 15,2: cache.log says when a parent's probe succeeded.
    let conf = format!(
        "# private Squid for tests/carp_squid.rs; nothing outside {d}\n\
         http_port {addr}\n\
         icp_port 0\n\
         htcp_port 0\n\
         visible_hostname carp-{tag}\n\
         {lab}\
         cache deny all\n\
         tcp_outgoing_address {ip}\n\
         never_direct allow all\n\
         debug_options ALL,1 15,2\n\
         {extra}",
        lab = squid_lab_lines(dir)
    );
    Squid::start_with_conf(dir, *ip, addr.port(), 0, &conf)
}

impl Squid {
    /// Hierarchy fields (`CARP/127.0.1.2`, ...) of access.log lines for
    /// URLs containing `marker` (warm-ups left out), waiting up to 10 s for `want` of them
    /// (Squid buffers its log for a moment).
    fn hierarchy_codes(&self, marker: &str, want: usize) -> Vec<String> {
        let log = self.dir.join("access.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text =
                String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).to_string();
            let codes: Vec<String> = text
                .lines()
                .filter(|l| l.contains(marker) && !l.contains("/warmup/"))
                .filter_map(|l| l.split_whitespace().nth(8).map(str::to_string))
                .collect();
            if codes.len() >= want || Instant::now() > deadline {
                return codes;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What one request through Squid came back with.
#[derive(Debug, Clone)]
struct Outcome {
    /// The URL as the client sent it.
    sent: Vec<u8>,
    status: u16,
    /// The parent that answered, and the request target it saw.
    parent: String,
    target: Vec<u8>,
}

/// One request: absolute-form through the proxy, `Connection: close`, the
/// client socket bound to `source` (sourcehash keys on it), optional
/// `Proxy-Authorization` (userhash keys on the user).
async fn get_via_proxy(
    proxy: SocketAddr,
    source: Ipv4Addr,
    url: Vec<u8>,
    host: String,
    credentials: Option<String>,
) -> Result<Outcome, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::from((source, 0)))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let mut s = tokio::time::timeout(Duration::from_secs(5), socket.connect(proxy))
        .await
        .map_err(|_| format!("connect to {proxy} timed out"))?
        .map_err(|e| format!("connect to {proxy}: {e}"))?;
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(&url);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cuttle-carp-test\r\n").as_bytes(),
    );
    if let Some(c) = &credentials {
        request
            .extend_from_slice(format!("Proxy-Authorization: Basic {}\r\n", base64(c)).as_bytes());
    }
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut raw = Vec::new();
    let exchange = async {
        s.write_all(&request).await?;
        s.read_to_end(&mut raw).await
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no complete response within 30 s".to_string())?
        .map_err(|e| format!("exchange: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header block in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let body = &raw[split + 4..];
    let (parent, target) = match body.iter().position(|&b| b == b'\n') {
        Some(at) if status == 200 => (
            String::from_utf8_lossy(&body[..at]).to_string(),
            body[at + 1..].to_vec(),
        ),
        _ => (String::new(), Vec::new()),
    };
    Ok(Outcome {
        sent: url,
        status,
        parent,
        target,
    })
}

/// Standard base64 of `text` (Basic credentials).
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One request to send: the URL as written by the client (Squid
/// canonicalises it), its Host header, the client address, the user.
#[derive(Debug, Clone)]
struct Request {
    url: Vec<u8>,
    host: String,
    source: Ipv4Addr,
    user: Option<String>,
}

/// Sends `requests` through Squid, CLIENT_THREADS at a time; outcomes in
/// request order.
fn send_all(proxy: SocketAddr, requests: &[Request]) -> Vec<Result<Outcome, String>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let chunk_len = requests.len().div_ceil(CLIENT_THREADS).max(1);
        let mut tasks = Vec::new();
        for chunk in requests.chunks(chunk_len) {
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::with_capacity(chunk.len());
                for r in chunk {
                    outcomes.push(get_via_proxy(proxy, r.source, r.url, r.host, r.user).await);
                }
                outcomes
            }));
        }
        let mut all = Vec::with_capacity(requests.len());
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        all
    })
}

/// Parents named after PARENTS on 127.0.1.{first_ip}.. (one address each,
/// so Squid's access.log names the parent by address).
fn start_parents(first_ip: u8) -> Vec<Parent> {
    PARENTS
        .iter()
        .zip(first_ip..)
        .map(|(&(name, _), last)| Parent::start(name, Ipv4Addr::new(127, 0, 1, last)))
        .collect()
}

/// The `cache_peer` lines for `parents`, parent `i` with the hash options
/// `options(i)` (`carp`, `sourcehash`, `carp carp-key=host`, ...).
fn peer_lines(parents: &[Parent], options: impl Fn(usize) -> String) -> String {
    parents
        .iter()
        .zip(PARENTS)
        .enumerate()
        .map(|(i, (p, (name, weight)))| {
            format!(
                "cache_peer {} parent {} 0 {} no-query no-digest no-netdb-exchange \
                 name={name} weight={weight}\n",
                p.addr.ip(),
                p.addr.port(),
                options(i)
            )
        })
        .collect()
}

/// Waits until Squid has probed every parent (a peer is unused until its
/// liveness probe succeeded, squid-spec 1.8). Squid 5.7 probes every
/// parent at start; should a probe be missing, warm-up requests (from
/// `source`, as `user`) make Squid consult, and so probe, the parents not
/// up yet. Warm-ups are marked `/warmup/` and left out of the comparison.
fn wait_until_probed(
    squid: &Squid,
    proxy: SocketAddr,
    parents: &[Parent],
    source: Ipv4Addr,
    user: Option<&str>,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    while parents
        .iter()
        .any(|p| p.accepted.load(Ordering::SeqCst) == 0)
    {
        assert!(
            Instant::now() < deadline,
            "Squid did not probe every parent within 20 s: {:?}",
            parents
                .iter()
                .map(|p| (p.name, p.accepted.load(Ordering::SeqCst)))
                .collect::<Vec<_>>()
        );
        let warmups: Vec<Request> = (0..10)
            .map(|i| Request {
                url: format!("http://warmup.example.test/warmup/{round}/{i}").into_bytes(),
                host: "warmup.example.test".into(),
                source,
                user: user.map(str::to_string),
            })
            .collect();
        for o in send_all(proxy, &warmups) {
            if let Err(e) = o {
                panic!("warm-up request failed: {e}");
            }
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    // Squid notes a probe's success in its event loop after our accept:
    // wait for its word (a fixed pause lost that race on a busy machine).
    for p in parents {
        squid.wait_probed(p.addr);
    }
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

/// `count` distinct URLs with varied hosts (names, upper case, IPv4 and
/// IPv6 literals), ports (none, default written out, others), paths (raw
/// UTF-8, escapes, `;params`) and query strings.
fn varied_urls(count: usize, source: Ipv4Addr) -> Vec<Request> {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    (0..count)
        .map(|i| {
            let host = match i % 6 {
                0 => format!("site{}.example.test", dice.next(50)),
                1 => format!("WWW.Example{}.TEST", dice.next(20)),
                2 => format!(
                    "10.{}.{}.{}",
                    dice.next(256),
                    dice.next(256),
                    dice.next(256)
                ),
                3 => format!("cdn-{}.images.example.test", dice.next(7)),
                4 => format!("[2001:db8::{:x}]", dice.next(0xffff) + 1),
                _ => format!("xn--caf-dma{}.example.test", dice.next(9)),
            };
            let port = match (i / 6) % 5 {
                0 | 1 => String::new(),
                2 => ":80".to_string(),
                3 => ":8080".to_string(),
                _ => format!(":{}", 1024 + dice.next(60_000)),
            };
            let path = match dice.next(8) {
                0 => "/".to_string(),
                1 => format!("/p/{i}"),
                2 => format!("/a/b/c/{i}.html"),
                3 => format!("/img/{i}.PNG"),
                4 => format!("/%7Euser/{i}/index%20page"),
                5 => format!("/café/{i}"),
                6 => format!("/naïve/ü/{i}"),
                _ => format!("/x;param={i}/y"),
            };
            let query = match dice.next(4) {
                0 => String::new(),
                1 => format!("?q={i}"),
                2 => format!("?a=1&b={}&c=%C3%A9", dice.next(1000)),
                _ => format!("?{i}"),
            };
            // Every URL is distinct: the path or the query carries `i`.
            let query = if path == "/" || query.starts_with("?a=") {
                format!("{query}{}id={i}", if query.is_empty() { "?" } else { "&" })
            } else {
                query
            };
            Request {
                url: format!("http://{host}{port}{path}{query}").into_bytes(),
                host: format!("{host}{port}"),
                source,
                user: None,
            }
        })
        .collect()
}

/// Compares every outcome with `predict` (index into PARENTS of the
/// parent cuttle would pick); panics with the first mismatches. Returns
/// how many requests each parent served.
fn compare(
    algorithm: &str,
    requests: &[Request],
    outcomes: &[Result<Outcome, String>],
    squid: &Squid,
    mut predict: impl FnMut(&Request, &Outcome) -> Option<usize>,
) -> BTreeMap<String, usize> {
    let mut failures = Vec::new();
    let mut mismatches = Vec::new();
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for (request, outcome) in requests.iter().zip(outcomes) {
        let outcome = match outcome {
            Ok(o) if o.status == 200 && !o.parent.is_empty() => o,
            Ok(o) => {
                failures.push(format!(
                    "{}: status {}",
                    String::from_utf8_lossy(&request.url),
                    o.status
                ));
                continue;
            }
            Err(e) => {
                failures.push(format!("{}: {e}", String::from_utf8_lossy(&request.url)));
                continue;
            }
        };
        *served.entry(outcome.parent.clone()).or_default() += 1;
        let predicted = predict(request, outcome).map(|i| PARENTS[i].0);
        if predicted != Some(outcome.parent.as_str()) {
            mismatches.push(format!(
                "sent {:?} (user {:?}, from {}), parent saw {:?}: Squid chose {}, cuttle {:?}",
                String::from_utf8_lossy(&outcome.sent),
                request.user,
                request.source,
                String::from_utf8_lossy(&outcome.target),
                outcome.parent,
                predicted
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{algorithm}: {} of {} requests failed, first: {:#?}\nsquid cache.log:\n{}",
        failures.len(),
        requests.len(),
        &failures[..failures.len().min(10)],
        squid.cache_log()
    );
    assert!(
        mismatches.is_empty(),
        "{algorithm}: cuttle and Squid disagree on {} of {} requests; first:\n{}",
        mismatches.len(),
        requests.len(),
        mismatches[..mismatches.len().min(15)].join("\n")
    );
    served
}

/// Squid's access.log must show every compared request was routed by the
/// hash (`code/<parent address>`), with the same per-parent counts the
/// parents' answers gave.
fn assert_logged_as(
    squid: &Squid,
    code: &str,
    marker: &str,
    parents: &[Parent],
    served: &BTreeMap<String, usize>,
    total: usize,
) {
    let codes = squid.hierarchy_codes(marker, total);
    assert_eq!(codes.len(), total, "access.log lines for {marker}");
    let mut logged: BTreeMap<String, usize> = BTreeMap::new();
    for c in &codes {
        let parent = parents
            .iter()
            .find(|p| *c == format!("{code}/{}", p.addr.ip()))
            .unwrap_or_else(|| panic!("access.log hierarchy {c:?}, expected {code}/<parent>"));
        *logged.entry(parent.name.to_string()).or_default() += 1;
    }
    assert_eq!(&logged, served, "access.log versus the parents' answers");
}

fn members() -> Vec<CarpMember<'static>> {
    PARENTS
        .iter()
        .map(|&(name, weight)| CarpMember { name, weight })
        .collect()
}

#[test]
fn carp_picks_the_same_parent_as_squid_for_every_url() {
    let started = Instant::now();
    let tmp = TempDir::new("carp-squid");
    let squid_ip = Ipv4Addr::new(127, 0, 1, 1);
    let parents = start_parents(2);
    let proxy = SocketAddr::from((squid_ip, free_tcp_port(squid_ip)));
    let squid = start_squid(
        &tmp.path().join("squid"),
        proxy,
        "carp",
        &(peer_lines(&parents, |_| "carp".to_string())
            + "acl test_clients src 127.0.0.0/8\n\
               http_access allow test_clients\n\
               http_access deny all\n"),
    );
    wait_until_probed(&squid, proxy, &parents, squid_ip, None);

    let requests = varied_urls(1200, squid_ip);
    let outcomes = send_all(proxy, &requests);
    let carp = Carp::new(&members());
    // The key is the URL exactly as the parent received it: Squid's
    // canonical absolute URI (host lower-cased, default port dropped).
    let served = compare("carp", &requests, &outcomes, &squid, |_, o| {
        carp.choose(&o.target, |_| true)
    });
    let distinct: HashSet<&[u8]> = outcomes
        .iter()
        .flatten()
        .map(|o| o.target.as_slice())
        .collect();
    assert!(
        distinct.len() >= 1000,
        "only {} distinct URLs",
        distinct.len()
    );
    let rewritten = outcomes
        .iter()
        .flatten()
        .filter(|o| o.sent != o.target)
        .count();
    assert!(rewritten > 0, "no URL was canonicalised by Squid");
    for p in &parents {
        assert!(
            served.get(p.name).copied().unwrap_or(0) > 0,
            "{} got nothing: {served:?}",
            p.name
        );
    }
    assert_logged_as(&squid, "CARP", "http://", &parents, &served, requests.len());
    eprintln!(
        "carp: {} URLs ({} distinct, {rewritten} canonicalised by Squid), 0 mismatches, \
         per parent {served:?}, {:?}",
        requests.len(),
        distinct.len(),
        started.elapsed()
    );
}

#[test]
fn userhash_picks_the_same_parent_as_squid_for_every_user() {
    let started = Instant::now();
    let tmp = TempDir::new("userhash-squid");
    let squid_ip = Ipv4Addr::new(127, 0, 1, 7);
    let parents = start_parents(8);
    let proxy = SocketAddr::from((squid_ip, free_tcp_port(squid_ip)));
    let helper = "/usr/lib/squid/basic_fake_auth";
    assert!(
        Path::new(helper).is_file(),
        "{helper} not found: Debian's squid package ships it (apt-get install squid)"
    );
    // basic_fake_auth accepts every user. `casesensitive` stays at its
    // default (off): Squid lower-cases Basic user names before hashing.
    let squid = start_squid(
        &tmp.path().join("squid"),
        proxy,
        "userhash",
        &(peer_lines(&parents, |_| "userhash".to_string())
            + &format!("auth_param basic program {helper}\n")
            + "\
               auth_param basic children 5 startup=1 idle=1\n\
               auth_param basic realm cuttle-carp-test\n\
               acl authenticated proxy_auth REQUIRED\n\
               http_access allow authenticated\n\
               http_access deny all\n"),
    );
    wait_until_probed(&squid, proxy, &parents, squid_ip, Some("warmup:x"));

    let requests: Vec<Request> = (0..1000)
        .map(|i| {
            let user = match i % 5 {
                0 => format!("user{i}"),
                1 => format!("Alice.{i}"),
                2 => format!("ÜBER-{i}"),
                3 => format!("bob_{i}@Example.TEST"),
                _ => format!("{i}"),
            };
            Request {
                url: format!("http://userhash.example.test/u/{i}").into_bytes(),
                host: "userhash.example.test".into(),
                source: squid_ip,
                user: Some(format!("{user}:secret{i}")),
            }
        })
        .collect();
    let outcomes = send_all(proxy, &requests);
    let hash = SourceHash::new(&members());
    let served = compare("userhash", &requests, &outcomes, &squid, |r, _| {
        let credentials = r.user.as_deref().unwrap_or_default();
        let name = credentials.split(':').next().unwrap_or_default();
        hash.choose(name.to_ascii_lowercase().as_bytes(), |_| true)
    });
    for p in &parents {
        assert!(
            served.get(p.name).copied().unwrap_or(0) > 0,
            "{} got nothing: {served:?}",
            p.name
        );
    }
    assert_logged_as(
        &squid,
        "USERHASH_PARENT",
        "http://",
        &parents,
        &served,
        requests.len(),
    );
    eprintln!(
        "userhash: {} users, 0 mismatches, per parent {served:?}, {:?}",
        requests.len(),
        started.elapsed()
    );
}

#[test]
fn sourcehash_picks_the_same_parent_as_squid_for_every_client_address() {
    let started = Instant::now();
    let tmp = TempDir::new("sourcehash-squid");
    let squid_ip = Ipv4Addr::new(127, 0, 1, 13);
    let parents = start_parents(14);
    let proxy = SocketAddr::from((squid_ip, free_tcp_port(squid_ip)));
    let squid = start_squid(
        &tmp.path().join("squid"),
        proxy,
        "sourcehash",
        &(peer_lines(&parents, |_| "sourcehash".to_string())
            + "acl test_clients src 127.0.0.0/8\n\
               http_access allow test_clients\n\
               http_access deny all\n"),
    );
    // Warm-ups from each address until every parent was probed (one
    // address always hashes to the same parent).
    for last in 1..=30 {
        if parents
            .iter()
            .all(|p| p.accepted.load(Ordering::SeqCst) > 0)
        {
            break;
        }
        wait_until_probed_once(proxy, Ipv4Addr::new(127, 0, 1, last));
    }
    wait_until_probed(&squid, proxy, &parents, squid_ip, None);

    // Our 30 loopback addresses, 10 URLs each.
    let requests: Vec<Request> = (0..300)
        .map(|i| Request {
            url: format!("http://sourcehash.example.test/s/{i}").into_bytes(),
            host: "sourcehash.example.test".into(),
            source: Ipv4Addr::new(127, 0, 1, 1 + (i % 30) as u8),
            user: None,
        })
        .collect();
    let outcomes = send_all(proxy, &requests);
    let hash = SourceHash::new(&members());
    let served = compare("sourcehash", &requests, &outcomes, &squid, |r, _| {
        hash.choose(r.source.to_string().as_bytes(), |_| true)
    });
    let used = served.len();
    assert!(
        used >= 3,
        "30 addresses reached only {used} parents: {served:?}"
    );
    assert_logged_as(
        &squid,
        "SOURCEHASH_PARENT",
        "http://",
        &parents,
        &served,
        requests.len(),
    );
    eprintln!(
        "sourcehash: {} requests from 30 addresses, 0 mismatches, per parent {served:?}, {:?}",
        requests.len(),
        started.elapsed()
    );
}

/// One warm-up request from `source` (see `wait_until_probed`).
fn wait_until_probed_once(proxy: SocketAddr, source: Ipv4Addr) {
    let warmup = Request {
        url: format!("http://warmup.example.test/warmup/{source}").into_bytes(),
        host: "warmup.example.test".into(),
        source,
        user: None,
    };
    for o in send_all(proxy, &[warmup]) {
        if let Err(e) = o {
            panic!("warm-up request from {source} failed: {e}");
        }
    }
    std::thread::sleep(Duration::from_millis(100));
}

/// The parts of an absolute `http://` URL as the parent received it, with
/// the default port filled in as Squid holds it.
fn url_parts(target: &[u8]) -> Option<UrlParts<'_>> {
    let rest = target.strip_prefix(b"http://")?;
    let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(slash);
    // An IPv6 literal keeps its brackets; the port follows the last `]`.
    let host_end = authority
        .iter()
        .rposition(|&b| b == b']')
        .map_or(0, |at| at + 1);
    let (host, port) = match authority[host_end..].iter().position(|&b| b == b':') {
        Some(at) => {
            let (host, port) = authority.split_at(host_end + at);
            (host, std::str::from_utf8(&port[1..]).ok()?.parse().ok()?)
        }
        None => (authority, 80),
    };
    Some(UrlParts {
        full: target,
        scheme: b"http",
        host,
        port,
        path_and_query,
    })
}

#[test]
fn carp_key_picks_the_same_parent_as_squid() {
    let started = Instant::now();
    let tmp = TempDir::new("carp-key-squid");
    let squid_ip = Ipv4Addr::new(127, 0, 1, 19);
    let parents = start_parents(20);
    let proxy = SocketAddr::from((squid_ip, free_tcp_port(squid_ip)));
    // Each member its own carp-key (one none: the full URL), so the running
    // hash mixes keys of different shapes, members in Squid's order.
    let part = |scheme, host, port, path, params| CarpKeyParts {
        scheme,
        host,
        port,
        path,
        params,
    };
    let keys: [(&str, Option<CarpKeyParts>); 5] = [
        ("host", Some(part(false, true, false, false, false))),
        ("path,host", Some(part(false, true, false, true, false))),
        ("", None),
        (
            "scheme,host,port",
            Some(part(true, true, true, false, false)),
        ),
        ("params,path", Some(part(false, false, false, true, true))),
    ];
    let squid = start_squid(
        &tmp.path().join("squid"),
        proxy,
        "carpkey",
        &(peer_lines(&parents, |i| match keys[i].0 {
            "" => "carp".to_string(),
            key => format!("carp carp-key={key}"),
        }) + "acl test_clients src 127.0.0.0/8\n\
               http_access allow test_clients\n\
               http_access deny all\n"),
    );
    wait_until_probed(&squid, proxy, &parents, squid_ip, None);

    let requests = varied_urls(1000, squid_ip);
    let outcomes = send_all(proxy, &requests);
    let carp = Carp::new(&members());
    let served = compare("carp-key", &requests, &outcomes, &squid, |_, o| {
        let parts = url_parts(&o.target)?;
        carp.choose_keyed(
            |member| match keys[member].1 {
                Some(selected) => carp_key(selected, &parts),
                None => Cow::Borrowed(parts.full),
            },
            |_| true,
        )
    });
    assert_logged_as(&squid, "CARP", "http://", &parents, &served, requests.len());
    eprintln!(
        "carp-key: {} URLs, 0 mismatches, per parent {served:?}, {:?}",
        requests.len(),
        started.elapsed()
    );
}

#[test]
fn carp_skips_a_dead_parent_without_moving_the_other_parents_urls() {
    // Squid scores every member and tests liveness only when comparing, so
    // the running URL hash still passes through a dead member: cuttle's
    // `choose(url, |i| i != dead)` must give Squid's choice.
    let started = Instant::now();
    let tmp = TempDir::new("carp-dead-squid");
    let squid_ip = Ipv4Addr::new(127, 0, 1, 25);
    let parents = start_parents(26);
    let proxy = SocketAddr::from((squid_ip, free_tcp_port(squid_ip)));
    // connect-fail-limit=1: one refused connection makes a parent DEAD.
    let squid = start_squid(
        &tmp.path().join("squid"),
        proxy,
        "carpdead",
        &(peer_lines(&parents, |_| "carp connect-fail-limit=1".to_string())
            + "acl test_clients src 127.0.0.0/8\n\
               http_access allow test_clients\n\
               http_access deny all\n"),
    );
    wait_until_probed(&squid, proxy, &parents, squid_ip, None);

    // Beta (weight 3, second of the equal-weight pair) goes away before
    // Squid has a connection to it; a request CARP gives to Beta then
    // fails over to another parent and Squid declares Beta dead.
    let dead = 1;
    parents[dead].stop();
    let carp = Carp::new(&members());
    let killer = (0..1000)
        .map(|i| format!("http://warmup.example.test/warmup/dead/{i}"))
        .find(|url| carp.choose(url.as_bytes(), |_| true) == Some(dead))
        .expect("some URL maps to the dead parent");
    let first = send_all(
        proxy,
        &[Request {
            url: killer.clone().into_bytes(),
            host: "warmup.example.test".into(),
            source: squid_ip,
            user: None,
        }],
    );
    match first.first() {
        Some(Ok(o)) if o.status == 200 => {}
        other => panic!("request to the dead parent did not fail over: {other:?}"),
    }
    let cache_log = tmp.path().join("squid/cache.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&cache_log)
        .unwrap_or_default()
        .contains("Detected DEAD Parent: Beta")
    {
        assert!(
            Instant::now() < deadline,
            "Squid did not declare Beta dead; cache.log:\n{}",
            squid.cache_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let requests = varied_urls(1000, squid_ip);
    let outcomes = send_all(proxy, &requests);
    let mut moved = 0;
    let served = compare(
        "carp with a dead parent",
        &requests,
        &outcomes,
        &squid,
        |_, o| {
            let all_up = carp.choose(&o.target, |_| true);
            let chosen = carp.choose(&o.target, |i| i != dead);
            if all_up == Some(dead) {
                moved += 1;
            }
            chosen
        },
    );
    assert!(!served.contains_key("Beta"), "{served:?}");
    assert!(moved > 100, "only {moved} URLs belonged to Beta");
    assert_logged_as(&squid, "CARP", "http://", &parents, &served, requests.len());
    eprintln!(
        "carp, Beta dead: {} URLs ({moved} of them Beta's, moved), 0 mismatches, per parent \
         {served:?}, {:?}",
        requests.len(),
        started.elapsed()
    );
}
