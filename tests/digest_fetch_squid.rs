//! cuttle reads a real Squid 5.7's Cache Digest: a private Squid on
//! 127.0.31.1 caches some objects and builds its digest (rebuilt every few
//! seconds here, instead of hourly, so the test need not wait); cuttle has
//! it as a plain `cache_peer ... sibling HTTP 0 no-query` (no `no-digest`,
//! no ICP). After cuttle's first miss it fetches Squid's digest, and the
//! objects Squid holds are logged `CD_SIBLING_HIT/127.0.31.1` and served
//! by Squid, while another URL goes DIRECT. Fails, never skips, when squid
//! is missing (CI installs Debian's package).

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cuttle_protocol::key::{store_key, Method};
use peer_lab::{free_tcp_port, squid_binary, squid_lab_lines, tail, Squid, STARTUP};
use support::{Conf, Cuttle, Origin, Reply, Req, TempDir, WAIT};

const SQUID_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 31, 1);
/// Where the test itself asks Squid for its digest from (cuttle is on
/// 127.0.0.1).
const TEST_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 31, 9);
const DIGEST_PATH: &str = "/squid-internal-periodic/store_digest";

/// `squid -z` for `conf`'s cache_dir: Squid builds its own digest only
/// once a disk store has finished loading (a memory-only Squid never
/// does). As root, Squid works as `proxy`, which must own `dir`.
fn make_swap_dirs(dir: &std::path::Path, conf: &str) {
    std::fs::create_dir_all(dir).expect("squid dir");
    let conf_path = dir.join("squid.conf");
    std::fs::write(&conf_path, conf).expect("squid.conf");
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(dir).expect("dir").uid() == 0 {
        let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
        let f: Vec<&str> = passwd
            .lines()
            .find(|l| l.starts_with("proxy:"))
            .expect("a proxy user for Squid")
            .split(':')
            .collect();
        let (uid, gid) = (f[2].parse().expect("uid"), f[3].parse().expect("gid"));
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown");
    }
    let out = std::process::Command::new(squid_binary())
        .args([
            "-n",
            &format!("cuttledigestz{}", std::process::id()),
            "-N",
            "-z",
            "-f",
        ])
        .arg(&conf_path)
        .output()
        .expect("squid -z");
    assert!(
        out.status.success(),
        "squid -z: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_uses_a_real_squid_siblings_digest() {
    squid_binary();
    let origin = Origin::start().await;
    let held: Vec<String> = (0..20).map(|i| origin.url(&format!("/held/{i}"))).collect();
    for i in 0..20 {
        origin.route(&format!("/held/{i}"), |_| {
            Reply::ok("from the origin\n").cc("max-age=86400")
        });
    }
    origin.route("/other", |_| {
        Reply::ok("from the origin\n").cc("max-age=86400")
    });
    origin.route("/first", |_| Reply::ok("from the origin\n"));

    let tmp = TempDir::new("digest-fetch-squid");
    let dir = tmp.path().join("squid");
    let port = free_tcp_port(SQUID_ADDR);
    let d = dir.display();
    let conf = format!(
        "# private Squid for tests/digest_fetch_squid.rs; nothing outside {d}\n\
         http_port {SQUID_ADDR}:{port}\n\
         icp_port 0\n\
         htcp_port 0\n\
         tcp_outgoing_address {SQUID_ADDR}\n\
         visible_hostname squid-digest-test\n\
         {lab}\
         cache_dir ufs {d}/spool 16 16 16\n\
         digest_rebuild_period 2 seconds\n\
         digest_rewrite_period 2 seconds\n\
         acl test_clients src 127.0.0.0/8\n\
         http_access allow test_clients\n\
         http_access deny all\n",
        lab = squid_lab_lines(&dir)
    );
    make_swap_dirs(&dir, &conf);
    let squid = Squid::start_with_conf(&dir, SQUID_ADDR, port, 0, &conf);
    let squid_addr = squid.http_addr();
    for url in &held {
        let r = Req::get(url).send_to(squid_addr).await;
        assert_eq!(r.status, 200, "{url}");
    }
    // Wait until Squid's digest holds every object (a rebuild after they
    // were cached), asked as a peer asks (origin-form: an absolute URL
    // naming Squid itself would be a forwarding loop) and read as cuttle
    // will.
    let deadline = Instant::now() + STARTUP + WAIT;
    loop {
        let r = Req::get(DIGEST_PATH)
            .header("host", squid_addr.to_string())
            .from(TEST_CLIENT.into())
            .send_to(squid_addr)
            .await;
        if r.status == 200 {
            let parsed = cuttle_protocol::digest::parse(&r.body).expect("Squid's digest parses");
            if held
                .iter()
                .all(|u| parsed.contains(&store_key(Method::Get, u.as_bytes())))
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Squid's digest never held the objects (last status {}); cache.log:\n{}",
            r.status,
            squid.cache_log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let squid_log = squid.access_log();
    let digest_fetches = || {
        std::fs::read_to_string(&squid_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(DIGEST_PATH) && l.split_whitespace().nth(2) == Some("127.0.0.1"))
            .count()
    };
    assert_eq!(digest_fetches(), 0);
    let cuttle = Cuttle::start(&Conf::new().extra(&format!(
        "cache_peer {SQUID_ADDR} sibling {port} 0 no-query name=squid"
    )));
    // The first lookup wants the digest: cuttle fetches it at once.
    let first = origin.url("/first");
    assert_eq!(Req::get(&first).send(&cuttle).await.status, 200);
    let deadline = Instant::now() + WAIT;
    loop {
        if digest_fetches() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cuttle never fetched Squid's digest:\n{}\n{:?}",
            tail(&squid_log, 10),
            cuttle.stdout()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Squid's held objects: CD_SIBLING_HIT (once cuttle has parsed the
    // digest, a moment after Squid logged sending it).
    let mut hits = 0;
    for url in &held {
        let r = Req::get(url).send(&cuttle).await;
        assert_eq!(r.status, 200, "{url}");
        let l = support::log_line_for(&cuttle.log_path(), url).await;
        if l.hierarchy == format!("CD_SIBLING_HIT/{SQUID_ADDR}") {
            hits += 1;
        } else {
            assert_eq!(hits, 0, "a miss after a digest hit: {}", l.raw);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        hits >= 10,
        "{hits} digest hits of 20:\n{}",
        tail(&cuttle.log_path(), 25)
    );
    // Squid served them from its cache (only-if-cached hits).
    let last = held.last().expect("held");
    let l = support::log_line_for(&squid_log, last).await;
    assert!(
        matches!(l.code.as_str(), "TCP_HIT" | "TCP_MEM_HIT"),
        "{}",
        l.raw
    );
    // The origin saw each object once: Squid's fetch.
    assert_eq!(origin.count("/held/19"), 1);

    // Not in Squid's digest: DIRECT.
    let other = origin.url("/other");
    assert_eq!(Req::get(&other).send(&cuttle).await.status, 200);
    assert_eq!(
        support::log_line_for(&cuttle.log_path(), &other)
            .await
            .hierarchy,
        "HIER_DIRECT/127.0.0.1"
    );
}
