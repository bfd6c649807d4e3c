//! Shared by the peer tests: a private Squid 5.7 on a loopback address of
//! the test's own (with ICP), cuttle started on another loopback address
//! (and reloaded with new lines), both stopped on drop, a fake peer
//! written here (ICP and HTTP, recording what it gets), an origin serving
//! text, readers for their access.logs and cache manager pages, and
//! `cuttle icp|htcp` runs. Each node gets its own address because Squid
//! ignores ICP from its own IP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Origin, Reply, Req};

pub const STARTUP: Duration = Duration::from_secs(15);

/// Debian's squid: /usr/sbin/squid, else `squid` on PATH. Panics (the test
/// fails, never skips) when there is none.
pub fn squid_binary() -> PathBuf {
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
            "squid not found (looked for /usr/sbin/squid and `squid` on PATH): this test runs \
             a real Squid 5.7; install it with `apt-get install squid` (.ci/run does)"
        )
    })
}

/// A TCP port free on `ip` a moment ago (neither cuttle nor Squid accepts
/// port 0 in http_port).
pub fn free_tcp_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0 ({e}); is 127.0.0.0/8 routed to lo?"))
        .port()
}

/// A UDP port free on `ip` a moment ago.
pub fn free_udp_port(ip: Ipv4Addr) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind udp {ip}:0 ({e})"))
        .port()
}

/// uid and gid of the `proxy` user, Squid's cache_effective_user on Debian.
fn proxy_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("proxy:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// Whether a socket listens on `addr` (IPv4), from /proc/net/tcp: asked
/// without connecting, since Squid logs a connection that sends nothing.
fn listening(addr: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = addr else {
        return false;
    };
    // The kernel writes the address as the hex of its bytes in memory
    // order, then the port: "0102007F:AEB7" is 127.0.2.1:44727.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    const LISTEN: &str = "0A";
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&LISTEN)
        })
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A process this test started; stopped on drop, panics included.
pub struct Node {
    child: Child,
    squid_service: Option<String>,
    pub output: Arc<Mutex<String>>,
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

/// A private Squid with ICP on `ip`.
pub struct Squid {
    pub node: Node,
    pub ip: Ipv4Addr,
    pub http_port: u16,
    pub icp_port: u16,
    pub dir: PathBuf,
}

impl Squid {
    /// Starts Squid on `ip` (HTTP and ICP on free ports) answering ICP from
    /// `icp_clients` (src ACL text) with `extra` config lines; `dir` holds
    /// its files. Lab settings of squid-interop.md: pinger off,
    /// minimum_direct_rtt 0, own addresses for everything.
    pub fn start(dir: &Path, ip: Ipv4Addr, icp_clients: &str, extra: &str) -> Squid {
        let http_port = free_tcp_port(ip);
        let icp_port = free_udp_port(ip);
        let d = dir.display();
        let conf = format!(
            "# private Squid for a cuttle test; nothing outside {d}\n\
             http_port {ip}:{http_port}\n\
             icp_port {icp_port}\n\
             htcp_port 0\n\
             udp_incoming_address {ip}\n\
             udp_outgoing_address {ip}\n\
             tcp_outgoing_address {ip}\n\
             visible_hostname squid-{ip}\n\
             {lab}\
             acl icp_clients src {icp_clients}\n\
             icp_access allow icp_clients\n\
             icp_access deny all\n\
             acl test_clients src 127.0.0.0/8\n\
             http_access allow test_clients\n\
             http_access deny all\n\
             {extra}\n",
            lab = squid_lab_lines(dir)
        );
        Squid::start_with_conf(dir, ip, http_port, icp_port, &conf)
    }

    /// Starts Squid from `conf`, a whole squid.conf the caller wrote: HTTP
    /// on `ip`:`http_port`, ICP on `icp_port` (0: none), every file in
    /// `dir` (pid, cache.log, access.log). Writes it to dir/squid.conf,
    /// lets `squid -k parse` check it (no FATAL, ERROR or WARNING line),
    /// runs `squid -N` and waits until cache.log says it accepts HTTP
    /// connections (and ICP messages, with ICP). Waiting on cache.log, not
    /// a probe connection, keeps access.log free of the test's own lines.
    pub fn start_with_conf(
        dir: &Path,
        ip: Ipv4Addr,
        http_port: u16,
        icp_port: u16,
        conf: &str,
    ) -> Squid {
        let squid = squid_binary();
        std::fs::create_dir_all(dir).expect("squid dir");
        let conf_path = dir.join("squid.conf");
        std::fs::write(&conf_path, conf).expect("squid.conf");
        // As root, Squid switches to cache_effective_user (Debian: proxy)
        // before it opens its logs: that user must own the directory.
        if std::fs::metadata(dir).expect("dir").uid() == 0 {
            let (uid, gid) = proxy_user().expect(
                "running as root and there is no `proxy` user for Squid's cache_effective_user",
            );
            for p in [dir, conf_path.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to proxy");
            }
        }
        // Squid names its shared-memory segments after the service (-n):
        // one per test process and address, so parallel Squids never meet.
        let service = format!("cuttlepeer{}x{}", std::process::id(), ip.octets()[3]);
        let parse = Command::new(&squid)
            .args(["-n", &service, "-k", "parse", "-f"])
            .arg(&conf_path)
            .output()
            .expect("run squid -k parse");
        let text = String::from_utf8_lossy(&parse.stderr).to_string()
            + &String::from_utf8_lossy(&parse.stdout);
        let complaints: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("FATAL") || l.contains("ERROR") || l.contains("WARNING"))
            .collect();
        assert!(
            parse.status.success() && complaints.is_empty(),
            "squid -k parse rejects the test's squid.conf ({}):\n{text}",
            parse.status
        );
        let stdio = std::fs::File::create(dir.join("squid.stdout")).expect("squid.stdout");
        let child = Command::new(&squid)
            .args(["-n", &service, "-N", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().expect("clone"))
            .stderr(stdio)
            .spawn()
            .expect("spawn squid");
        let mut node = Node {
            child,
            squid_service: Some(service),
            output: Arc::default(),
        };
        let cache_log = dir.join("cache.log");
        let deadline = Instant::now() + STARTUP;
        loop {
            let log = std::fs::read_to_string(&cache_log).unwrap_or_default();
            // Squid logs "Accepting" before it calls listen() (an async
            // step after it): until then a connection is refused.
            if log.contains("Accepting HTTP Socket connections")
                && (icp_port == 0 || log.contains("Accepting ICP messages"))
                && listening(SocketAddr::from((ip, http_port)))
            {
                break;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!(
                    "squid exited at start ({status}); cache.log:\n{}\nstdout/stderr:\n{}",
                    tail(&cache_log, 20),
                    tail(&dir.join("squid.stdout"), 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "squid did not start within {STARTUP:?}; cache.log:\n{}",
                tail(&cache_log, 20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Squid {
            node,
            ip,
            http_port,
            icp_port,
            dir: dir.to_path_buf(),
        }
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.http_port))
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    /// The last 30 lines of its cache.log, for failure messages.
    pub fn cache_log(&self) -> String {
        tail(&self.dir.join("cache.log"), 30)
    }

    /// Waits until cache.log says Squid's TCP probe of the peer at `peer`
    /// (its HTTP port) succeeded: Squid uses no peer before that
    /// (squid-spec 1.8). Needs `debug_options ALL,1 15,2`.
    pub fn wait_probed(&self, peer: SocketAddr) {
        let probed = format!("TCP connection to {}/{} succeeded", peer.ip(), peer.port());
        let cache_log = self.dir.join("cache.log");
        let deadline = Instant::now() + STARTUP;
        while !std::fs::read_to_string(&cache_log)
            .unwrap_or_default()
            .contains(&probed)
        {
            assert!(
                Instant::now() < deadline,
                "Squid's probe of {peer} did not succeed; cache.log:\n{}",
                tail(&cache_log, 20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The squid.conf lines every private Squid of these tests has: all its
/// files in `dir` and none elsewhere (no store log, no netdb file, memory
/// only), the lab settings of squid-interop.md (pinger off and
/// minimum_direct_rtt 0, else NetDB sends known sites DIRECT without
/// asking peers), a name server that knows nothing (origins are IP
/// addresses) and no wait at shutdown.
pub fn squid_lab_lines(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "pid_filename {d}/squid.pid\n\
         cache_log {d}/cache.log\n\
         access_log stdio:{d}/access.log squid\n\
         cache_store_log none\n\
         netdb_filename none\n\
         coredump_dir {d}\n\
         cache_mem 8 MB\n\
         pinger_enable off\n\
         minimum_direct_rtt 0\n\
         dns_nameservers 127.0.0.1\n\
         shutdown_lifetime 0 seconds\n"
    )
}

impl Drop for Squid {
    /// A failing test shows what Squid logged (its node stops after this).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- squid {} cache.log:\n{}\n--- squid {} access.log:\n{}",
                self.ip,
                self.cache_log(),
                self.ip,
                tail(&self.access_log(), 30)
            );
        }
    }
}

/// A cuttle on its own loopback address.
pub struct CuttleNode {
    pub node: Node,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// Its cuttle.conf and cache directory.
    pub dir: PathBuf,
}

/// cuttle.conf of a [`CuttleNode`]: http_port on `addr`, a cache_dir and
/// an access.log in `dir`, then `lines`.
fn cuttle_conf(dir: &Path, addr: SocketAddr, lines: &str) -> String {
    let ip = addr.ip();
    format!(
        "http_port {addr}\n\
         acl test_clients src 127.0.0.0/8\n\
         http_access allow test_clients\n\
         http_access deny all\n\
         cache_dir mmap {}/cache 16\n\
         access_log stdio:{}/access.log squid\n\
         pid_filename {}/cuttle.pid\n\
         visible_hostname cuttle-{ip}\n\
         {lines}\n",
        dir.display(),
        dir.display(),
        dir.display()
    )
}

/// Starts `cuttle run -f` with `lines` plus http_port on `ip`, a cache_dir
/// and an access.log in `dir`; waits for its "listening on" line.
pub fn start_cuttle(dir: &Path, ip: Ipv4Addr, lines: &str) -> CuttleNode {
    std::fs::create_dir_all(dir).expect("cuttle dir");
    let addr = SocketAddr::from((ip, free_tcp_port(ip)));
    let conf = dir.join("cuttle.conf");
    std::fs::write(&conf, cuttle_conf(dir, addr, lines)).expect("cuttle.conf");
    CuttleNode {
        node: spawn_cuttle(&conf),
        addr,
        log: dir.join("access.log"),
        dir: dir.to_path_buf(),
    }
}

/// Runs `cuttle run -f conf` (a config the caller wrote) and waits for its
/// "listening on" line; its stdout and stderr gather in `Node::output`.
pub fn spawn_cuttle(conf: &Path) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["run", "-f"])
        .arg(conf)
        .env("RUST_LOG", "cuttle=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cuttle");
    let output = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let (output, tx) = (Arc::clone(&output), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                output
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&format!("{line}\n"));
                if line.starts_with("cuttle: listening on") {
                    let _ = tx.send(());
                }
            }
        });
    }
    let node = Node {
        child,
        squid_service: None,
        output: Arc::clone(&output),
    };
    if rx.recv_timeout(STARTUP).is_err() {
        panic!(
            "cuttle did not start listening within {STARTUP:?}; its output:\n{}",
            output.lock().unwrap_or_else(|p| p.into_inner())
        );
    }
    node
}

impl CuttleNode {
    pub fn output(&self) -> String {
        self.node
            .output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rewrites cuttle.conf with `lines` in place of the ones it started
    /// with, sends SIGHUP and waits until cuttle says it reloaded.
    pub fn reload(&self, lines: &str) {
        let reloaded = |out: &str| out.matches("cuttle: configuration reloaded").count();
        let before = reloaded(&self.output());
        std::fs::write(
            self.dir.join("cuttle.conf"),
            cuttle_conf(&self.dir, self.addr, lines),
        )
        .expect("cuttle.conf");
        let status = Command::new("kill")
            .args(["-HUP", &self.node.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
        let deadline = Instant::now() + STARTUP;
        while reloaded(&self.output()) == before {
            assert!(
                Instant::now() < deadline,
                "cuttle did not reload within {STARTUP:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until cuttle says its TCP probe of the peer named `peer` (its
    /// host unless `name=`) succeeded: the peer is up from then on (cuttle
    /// notes it before it says it). Needs `RUST_LOG=cuttle=debug`, which
    /// [`spawn_cuttle`] sets.
    pub fn wait_probed(&self, peer: &str) {
        let deadline = Instant::now() + STARTUP;
        while !self.probed(peer) {
            assert!(
                Instant::now() < deadline,
                "cuttle's probe of {peer} never succeeded:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether cuttle said its TCP probe of `peer` succeeded (the name
    /// ends the line: 127.0.0.1 is not 127.0.0.10).
    fn probed(&self, peer: &str) -> bool {
        let said = format!(" peer={peer}");
        self.output()
            .lines()
            .any(|l| l.contains("TCP probe succeeded") && l.ends_with(&said))
    }

    /// Waits up to `within` until cuttle's output has a line containing
    /// `needle`.
    pub fn wait_output(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} from cuttle within {within:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How a [`FakePeer`] answers ICP queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcpMode {
    Silent,
    Garbage,
    Answer(cuttle_protocol::icp::Opcode),
}

/// How a [`FakePeer`] answers HTTP requests (after reading the whole
/// request, body included).
#[derive(Debug, Clone, Copy)]
pub enum HttpMode {
    /// 504 (Squid's only-if-cached miss).
    GatewayTimeout,
    /// 200 "from peer", fresh for 10 minutes.
    Ok,
    /// This status, empty body.
    Status(u16),
    /// The response this function writes for the request.
    Reply(fn(&HttpSeen) -> String),
}

/// One HTTP request a [`FakePeer`] received.
#[derive(Debug, Clone)]
pub struct HttpSeen {
    /// Request line and fields, as received.
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpSeen {
    /// The value of field `name` (case-insensitive), "" when absent.
    pub fn header(&self, name: &str) -> String {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }

    /// The request line.
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
}

/// A fake peer written here: an ICP socket and an HTTP listener on `ip`,
/// recording the queries (with their source) and requests it gets.
pub struct FakePeer {
    pub ip: Ipv4Addr,
    pub icp_port: u16,
    pub http_port: u16,
    icp_mode: Arc<Mutex<IcpMode>>,
    /// Request heads received over HTTP.
    pub http_seen: Arc<Mutex<Vec<String>>>,
    /// Requests received over HTTP, bodies included.
    pub requests: Arc<Mutex<Vec<HttpSeen>>>,
    /// Queries received (reqnum, URL).
    pub queries: Arc<Mutex<Vec<(u32, String)>>>,
    /// Where each query came from.
    pub query_sources: Arc<Mutex<Vec<SocketAddr>>>,
    /// TCP connections accepted (cuttle's liveness probe is the first).
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakePeer {
    /// Must run inside a tokio runtime.
    pub async fn start(ip: Ipv4Addr, icp_mode: IcpMode, http_mode: HttpMode) -> FakePeer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let udp = tokio::net::UdpSocket::bind((ip, 0))
            .await
            .expect("fake icp bind");
        let icp_port = udp.local_addr().expect("addr").port();
        let tcp = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("fake http bind");
        let http_port = tcp.local_addr().expect("addr").port();
        let mode = Arc::new(Mutex::new(icp_mode));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let query_sources = Arc::new(Mutex::new(Vec::new()));
        let (m, q, qs) = (
            Arc::clone(&mode),
            Arc::clone(&queries),
            Arc::clone(&query_sources),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16384];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = cuttle_protocol::icp::parse(&buf[..n]) else {
                    continue;
                };
                q.lock().unwrap().push((
                    query.reqnum,
                    String::from_utf8_lossy(query.body.url().0).to_string(),
                ));
                qs.lock().unwrap().push(from);
                let mode = *m.lock().unwrap();
                let mut out = Vec::new();
                match mode {
                    IcpMode::Silent => continue,
                    IcpMode::Garbage => out.extend_from_slice(b"\x02\x02\x00\x99not icp at all"),
                    IcpMode::Answer(op) => {
                        if let Some(reply) = query.reply(op) {
                            reply.encode(&mut out).expect("encode reply");
                        }
                    }
                }
                let _ = udp.send_to(&out, from).await;
            }
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, r, a) = (
            Arc::clone(&seen),
            Arc::clone(&requests),
            Arc::clone(&accepted),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return, // a liveness probe
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
                    let mut seen = HttpSeen {
                        head: head.clone(),
                        body: data[head_end..].to_vec(),
                    };
                    let length: usize = seen.header("content-length").parse().unwrap_or(0);
                    while seen.body.len() < length {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.body.extend_from_slice(&buf[..n]),
                        }
                    }
                    s.lock().unwrap().push(head);
                    r.lock().unwrap().push(seen.clone());
                    let response = match http_mode {
                        HttpMode::GatewayTimeout => "HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                        HttpMode::Ok => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=600\r\nContent-Length: 9\r\nConnection: close\r\n\r\nfrom peer".to_string(),
                        HttpMode::Status(code) => format!("HTTP/1.1 {code} Status {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                        HttpMode::Reply(f) => f(&seen),
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        FakePeer {
            ip,
            icp_port,
            http_port,
            icp_mode: mode,
            http_seen: seen,
            requests,
            queries,
            query_sources,
            accepted,
        }
    }

    /// Waits until `cuttle`'s liveness probe reached this peer and cuttle
    /// noted it (it uses a peer only after one succeeded), by its own word:
    /// a fixed pause after the accept lost that race on a busy machine.
    pub async fn wait_probed(&self, cuttle: &CuttleNode) {
        let deadline = Instant::now() + STARTUP;
        while self.accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "cuttle never probed the peer at {}",
                self.ip
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let deadline = Instant::now() + STARTUP;
        while !cuttle.probed(&self.ip.to_string()) {
            assert!(
                Instant::now() < deadline,
                "cuttle never noted its probe of {} as a success:\n{}",
                self.ip,
                cuttle.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn set_icp(&self, mode: IcpMode) {
        *self.icp_mode.lock().unwrap() = mode;
    }

    /// The cache_peer line for this peer.
    pub fn line(&self, kind: &str, options: &str) -> String {
        format!(
            "cache_peer {} {kind} {} {} {options}",
            self.ip, self.http_port, self.icp_port
        )
    }

    /// `http://IP:PORT` of its HTTP listener, to use it as an origin.
    pub fn origin(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<HttpSeen> {
        self.requests.lock().unwrap().clone()
    }
}

/// What the peer tests' origins serve at `path`: numbered lines naming it
/// (a body from another URL shows), 300 of them, so a few fetches move the
/// byte counters by kilobytes.
pub fn text_body(path: &str) -> String {
    (0..300).map(|i| format!("{path} {i:04}\n")).collect()
}

/// An origin on `ip` serving each of `paths` as its [`text_body`],
/// cacheable for an hour.
pub async fn text_origin(ip: Ipv4Addr, paths: &[&str]) -> Origin {
    let origin = Origin::start_on(ip).await;
    for p in paths {
        let text = text_body(p);
        origin.route(p, move |_| {
            Reply::ok(text.clone())
                .cc("max-age=3600")
                .header("content-type", "text/plain")
        });
    }
    origin
}

/// GET `url` through the proxy at `proxy`: (status, body).
pub async fn get(proxy: SocketAddr, url: &str) -> (u16, String) {
    let r = Req::get(url).send_to(proxy).await;
    (r.status, r.text())
}

/// A cache manager page of the proxy (Squid or cuttle) at `proxy`, head
/// included, asked as squidclient asks: `cache_object://HOST/PAGE`.
pub async fn mgr_page(proxy: SocketAddr, page: &str) -> String {
    // Written by hand: `cache_object` is not a scheme `http::Uri` accepts.
    let host = proxy.ip();
    let request = format!("GET cache_object://{host}/{page} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    crate::support::raw(proxy, request.as_bytes()).await
}

/// Waits until `server_list` (a proxy's mgr:server_list page) says a peer
/// is Up: a proxy uses a peer only once its TCP probe of the peer's HTTP
/// port succeeded (squid-spec 1.8).
pub async fn wait_peer_up(server_list: impl AsyncFn() -> String) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let page = server_list().await;
        if page.contains("Status     : Up") {
            return;
        }
        assert!(Instant::now() < deadline, "the peer never came up:\n{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of `log` whose URL field is `url`, split into fields, waiting up
/// to 5 s for `want` of them (logs are buffered for a moment).
pub fn log_lines(log: &Path, url: &str, want: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Vec<String>> = text
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.get(6).is_some_and(|u| u == url))
            .collect();
        if lines.len() >= want || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of `log` for `url` that `want` accepts, waiting up to 10 s
/// for at least one (a log line is written a moment after the reply).
pub fn lines_where(log: &Path, url: &str, want: impl Fn(&[String]) -> bool) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Vec<String>> = log_lines(log, url, 0)
            .into_iter()
            .filter(|l| want(l))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `cuttle COMMAND --timeout 3000 --peer PEER --from FROM URL...` (`icp
/// query`, `htcp tst`, `htcp clr`): its output lines split at tabs (URL,
/// answer, RTT...), whether it exited 0, and all it printed.
pub fn cuttle_query(
    command: &[&str],
    peer: SocketAddr,
    from: Ipv4Addr,
    urls: &[&str],
) -> (Vec<Vec<String>>, bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(command)
        .args(["--timeout", "3000", "--peer"])
        .arg(peer.to_string())
        .arg("--from")
        .arg(from.to_string())
        .args(urls)
        .output()
        .unwrap_or_else(|e| panic!("run cuttle {}: {e}", command.join(" ")));
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
