//! A real Squid uses cuttle as its ICP sibling: a private Debian Squid 5.7
//! on 127.0.2.1 has `cache_peer 127.0.2.2 sibling HTTP ICP no-digest`, and
//! cuttle answers its ICP queries on 127.0.2.2 (its own address: Squid
//! ignores ICP from its own IP). The origin runs inside this test on
//! 127.0.0.1.
//!
//! 1. An object cached only in cuttle (fetched through cuttle first) is
//!    requested through Squid: Squid logs `SIBLING_HIT/127.0.2.2`, cuttle
//!    logs the UDP_HIT and the TCP hit it served to Squid, and the origin
//!    saw only cuttle's one fetch.
//! 2. A URL cuttle does not hold: cuttle answers MISS, Squid goes DIRECT
//!    (`HIER_DIRECT/127.0.0.1`) and cuttle fetches nothing: the origin saw
//!    exactly one request, Squid's.
//!
//! Squid's own counters (`mgr:server_list`) must show cuttle's replies as
//! ICP_HIT and ICP_MISS from the peer: replies from the wrong port or with
//! a wrong reqnum would not be counted there. Fails, never skips, when
//! squid is missing (CI installs Debian's package).

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Conf, Cuttle, Origin, Reply, Req, TempDir};

const SQUID_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
const CUTTLE_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 2);
const STARTUP: Duration = Duration::from_secs(10);

/// Debian's squid: /usr/sbin/squid, else `squid` on PATH.
fn squid_binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/squid");
    if debian.is_file() {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("squid"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "squid not found (looked for /usr/sbin/squid and `squid` on PATH): this test \
                 runs a real Squid 5.7; install it with `apt-get install squid` (.ci/run does)"
            )
        })
}

fn free_tcp_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0 ({e}); is 127.0.0.0/8 routed to lo?"))
        .port()
}

fn free_udp_port(ip: Ipv4Addr) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind UDP {ip}:0 ({e})"))
        .port()
}

/// uid and gid of the `proxy` user, Squid's cache_effective_user on Debian.
fn proxy_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("proxy:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn tail(path: &Path, lines: usize) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Squid started by this test; SIGTERM, then SIGKILL, and its shared
/// memory segments removed on drop (panics included).
struct Squid {
    child: Child,
    service: String,
    dir: PathBuf,
}

impl Drop for Squid {
    fn drop(&mut self) {
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
            let prefix = format!("{}-", self.service);
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- squid cache.log:\n{}\n--- squid access.log:\n{}",
                tail(&self.dir.join("cache.log"), 30),
                tail(&self.dir.join("access.log"), 30)
            );
        }
    }
}

/// `squid -k parse` (no complaints allowed), then `squid -N`; waits until
/// cache.log says it accepts HTTP connections.
fn start_squid(squid: &Path, dir: &Path, conf: &Path, service: &str) -> Squid {
    let parse = Command::new(squid)
        .args(["-n", service, "-k", "parse", "-f"])
        .arg(conf)
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
    let child = Command::new(squid)
        .args(["-n", service, "-N", "-f"])
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(stdio.try_clone().expect("clone"))
        .stderr(stdio)
        .spawn()
        .expect("spawn squid");
    let mut node = Squid {
        child,
        service: service.to_string(),
        dir: dir.to_path_buf(),
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
        assert!(
            Instant::now() < deadline,
            "squid did not accept connections within {STARTUP:?}; cache.log:\n{}",
            tail(&cache_log, 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Squid's `mgr:server_list` page, through its HTTP port.
async fn server_list(squid: SocketAddr) -> String {
    // Written by hand: `cache_object` is not a scheme `http::Uri` accepts.
    let request = format!(
        "GET cache_object://{SQUID_ADDR}/server_list HTTP/1.0\r\nHost: {SQUID_ADDR}\r\n\r\n"
    );
    support::raw(squid, request.as_bytes()).await
}

/// Lines of a native access.log naming `url`, split into fields; waits up
/// to 5 s for `want` of them (both programs buffer their logs a moment).
async fn log_lines(log: &Path, url: &str, want: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Vec<String>> = text
            .lines()
            .filter(|l| l.split_whitespace().nth(6) == Some(url))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        if lines.len() >= want || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The count after `label :` in the server_list histogram.
fn histogram(page: &str, label: &str) -> u64 {
    page.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == label)
                .then(|| rest.split_whitespace().next()?.parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn squid_gets_sibling_hits_from_cuttle_and_goes_direct_on_its_misses() {
    let squid_bin = squid_binary();
    let origin = Origin::start().await;
    origin.route("/in-cuttle", |_| {
        Reply::ok("held by cuttle\n").cc("max-age=3600")
    });
    origin.route("/nowhere", |_| {
        Reply::ok("from the origin\n").cc("max-age=3600")
    });

    // cuttle: its usual 127.0.0.1 port for the test client, plus an
    // http_port and the ICP socket on 127.0.2.2 for Squid.
    let cuttle_http = free_tcp_port(CUTTLE_ADDR);
    let cuttle_icp = free_udp_port(CUTTLE_ADDR);
    let cuttle = Cuttle::start(
        &Conf::new()
            .extra(&format!("http_port {CUTTLE_ADDR}:{cuttle_http}"))
            .extra(&format!("icp_port {cuttle_icp}"))
            .extra(&format!("udp_incoming_address {CUTTLE_ADDR}"))
            .extra(&format!("acl squid_sibling src {SQUID_ADDR}"))
            .extra("icp_access allow squid_sibling")
            .extra("icp_access deny all")
            .extra("miss_access deny squid_sibling"),
    );
    cuttle
        .wait_output(&format!("cuttle: ICP on {CUTTLE_ADDR}:{cuttle_icp}"), false)
        .await;
    cuttle
        .wait_output(&format!("listening on {CUTTLE_ADDR}:{cuttle_http}"), false)
        .await;

    let tmp = TempDir::new("squid-sibling");
    let dir = tmp.path().join("squid");
    std::fs::create_dir_all(&dir).expect("squid dir");
    let squid_port = free_tcp_port(SQUID_ADDR);
    let squid_icp = free_udp_port(SQUID_ADDR);
    let d = dir.display();
    let conf = dir.join("squid.conf");
    // pinger_enable off + minimum_direct_rtt 0: else NetDB sends known
    // sites DIRECT without asking peers. icp_query_timeout: the dynamic one
    // starts at a 5 ms floor (squid-interop.md); cuttle answers in
    // microseconds, and Squid stops waiting as soon as the reply is in, so
    // a generous fixed timeout only guards against a slow test machine.
    std::fs::write(
        &conf,
        format!(
            "# private Squid for tests/squid_sibling_of_cuttle.rs; nothing outside {d}\n\
             http_port {SQUID_ADDR}:{squid_port}\n\
             icp_port {squid_icp}\n\
             htcp_port 0\n\
             udp_incoming_address {SQUID_ADDR}\n\
             udp_outgoing_address {SQUID_ADDR}\n\
             tcp_outgoing_address {SQUID_ADDR}\n\
             visible_hostname squid-sibling-test\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log squid\n\
             cache_store_log none\n\
             netdb_filename none\n\
             coredump_dir {d}\n\
             cache_mem 8 MB\n\
             pinger_enable off\n\
             minimum_direct_rtt 0\n\
             icp_query_timeout 2000\n\
             dns_nameservers 127.0.0.1\n\
             shutdown_lifetime 0 seconds\n\
             cache_peer {CUTTLE_ADDR} sibling {cuttle_http} {cuttle_icp} no-digest no-netdb-exchange\n\
             acl test_clients src 127.0.0.0/8\n\
             http_access allow test_clients\n\
             http_access deny all\n"
        ),
    )
    .expect("write squid.conf");
    // As root, Squid switches to cache_effective_user (Debian: proxy)
    // before it opens its logs: that user must own the directory.
    if std::fs::metadata(tmp.path()).expect("tmp").uid() == 0 {
        let (uid, gid) = proxy_user().expect(
            "running as root and there is no `proxy` user for Squid's cache_effective_user",
        );
        for p in [&dir, &conf] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to proxy");
        }
    }
    let service = format!("cuttlesib{}", std::process::id());
    let _squid = start_squid(&squid_bin, &dir, &conf, &service);
    let squid = SocketAddr::from((SQUID_ADDR, squid_port));

    // Squid uses a peer only after its TCP probe of the peer's HTTP port
    // succeeded (squid-spec 1.8): wait for "Status : Up".
    let deadline = Instant::now() + STARTUP;
    loop {
        let page = server_list(squid).await;
        if page.contains("Status     : Up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cuttle never came up in Squid:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. In cuttle only: fetched through cuttle, then asked of Squid.
    let held = origin.url("/in-cuttle");
    let r = Req::get(&held).send(&cuttle).await;
    assert_eq!(r.status, 200, "{r:?}");
    // The store commits once the body is through: wait until cuttle holds
    // it (an only-if-cached request is answered 200, not 504).
    let deadline = Instant::now() + STARTUP;
    loop {
        let r = Req::get(&held)
            .header("cache-control", "only-if-cached")
            .send(&cuttle)
            .await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "cuttle never stored {held}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = Req::get(&held).send_to(squid).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "held by cuttle\n".to_string()),
        "{r:?}"
    );
    assert_eq!(origin.count("/in-cuttle"), 1, "only cuttle's fetch");

    // 2. Nowhere: cuttle says MISS, Squid goes to the origin itself.
    let nowhere = origin.url("/nowhere");
    let r = Req::get(&nowhere).send_to(squid).await;
    assert_eq!((r.status, r.text()), (200, "from the origin\n".to_string()));

    let squid_log = dir.join("access.log");
    let hit = log_lines(&squid_log, &held, 1).await;
    assert_eq!(hit.len(), 1, "{}", tail(&squid_log, 10));
    assert_eq!(hit[0][3], "TCP_MISS/200", "{:?}", hit[0]);
    assert_eq!(
        hit[0][8],
        format!("SIBLING_HIT/{CUTTLE_ADDR}"),
        "{:?}",
        hit[0]
    );
    let direct = log_lines(&squid_log, &nowhere, 1).await;
    assert_eq!(direct.len(), 1, "{}", tail(&squid_log, 10));
    assert_eq!(direct[0][3], "TCP_MISS/200", "{:?}", direct[0]);
    assert_eq!(direct[0][8], "HIER_DIRECT/127.0.0.1", "{:?}", direct[0]);

    // The origin saw one request for it, from Squid and not through cuttle.
    let seen = origin.requests("/nowhere");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let via = seen[0].header("via");
    assert!(via.contains("squid-sibling-test"), "via: {via}");
    assert!(!via.contains("(cuttle/"), "cuttle fetched it: via {via}");

    // cuttle: ICP HIT then the TCP hit it served to Squid; ICP MISS and
    // nothing else for the other URL.
    let cuttle_log = cuttle.log_path();
    let held_lines = log_lines(&cuttle_log, &held, 3).await;
    let from_squid: Vec<(String, String)> = held_lines
        .iter()
        .filter(|l| l[2] == SQUID_ADDR.to_string())
        .map(|l| (l[3].clone(), l[5].clone()))
        .collect();
    assert_eq!(from_squid.len(), 2, "{held_lines:?}");
    assert_eq!(
        from_squid[0],
        ("UDP_HIT/000".to_string(), "ICP_QUERY".to_string())
    );
    assert!(
        matches!(from_squid[1].0.as_str(), "TCP_HIT/200" | "TCP_MEM_HIT/200"),
        "{held_lines:?}"
    );
    let nowhere_lines = log_lines(&cuttle_log, &nowhere, 1).await;
    let codes: Vec<&str> = nowhere_lines.iter().map(|l| l[3].as_str()).collect();
    assert_eq!(codes, ["UDP_MISS/000"], "{nowhere_lines:?}");
    assert_eq!(nowhere_lines[0][2], SQUID_ADDR.to_string());

    // Squid counted both replies as coming from its peer.
    let page = server_list(squid).await;
    assert!(histogram(&page, "ICP_HIT") >= 1, "{page}");
    assert!(histogram(&page, "ICP_MISS") >= 1, "{page}");
}
