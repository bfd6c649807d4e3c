//! What the real binary serves and leaves behind when its cache_dir's bytes
//! change under it or its store fills up: a memory hit is never served
//! from bytes changed on disk after it came into memory, a disk hit whose
//! bytes changed is caught, logged and fetched again, and a clean stop of a
//! store that evicted leaves `cuttle store verify` with nothing to report.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use support::{free_port, pattern, read_log, Conf, Cuttle, LogLine, Origin, Reply, Req, TempDir};

fn results(log: &[LogLine]) -> Vec<String> {
    log.iter().map(|l| l.result()).collect()
}

/// Flips one byte in the middle of `body`'s only copy in the data file,
/// with a plain write to the file (the map is MAP_SHARED, so the running
/// cuttle sees the change at once).
fn corrupt_on_disk(data_file: &Path, body: &[u8]) {
    let bytes = std::fs::read(data_file).expect("read the data file");
    let at = bytes
        .windows(body.len())
        .position(|w| w == body)
        .expect("the body is stored in one piece");
    assert!(
        bytes[at + 1..].windows(body.len()).all(|w| w != body),
        "the body is stored once"
    );
    let victim = at + body.len() / 2;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(data_file)
        .expect("open the data file");
    file.seek(SeekFrom::Start(victim as u64)).expect("seek");
    file.write_all(&[!bytes[victim]]).expect("write");
    file.sync_data().expect("sync");
}

#[tokio::test]
async fn a_memory_hit_is_not_served_from_bytes_changed_on_disk() {
    let origin = Origin::start().await;
    let body = pattern(51, 6000);
    let served = body.clone();
    origin.route("/hot", move |_| {
        Reply::ok(served.clone()).cc("max-age=3600")
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/hot");
    for _ in 0..3 {
        let r = Req::get(&url).send(&proxy).await;
        assert_eq!(r.body, body);
    }
    let log = read_log(&proxy.log_path(), 3).await;
    assert_eq!(
        results(&log),
        ["TCP_MISS/200", "TCP_MEM_HIT/200", "TCP_MEM_HIT/200"]
    );

    corrupt_on_disk(&proxy.dir.path().join("cache/cuttle.store"), &body);

    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "served corrupt: {} of {} bytes differ",
        r.body.iter().zip(&body).filter(|(a, b)| a != b).count(),
        body.len()
    );
    let log = read_log(&proxy.log_path(), 4).await;
    assert_eq!(results(&log)[3], "TCP_MEM_HIT/200");
    assert_eq!(origin.count("/hot"), 1);
}

#[tokio::test]
async fn a_disk_hit_from_bytes_changed_on_disk_is_logged_and_fetched_again() {
    let origin = Origin::start().await;
    let body = pattern(52, 6000);
    let served = body.clone();
    origin.route("/cold", move |_| {
        Reply::ok(served.clone()).cc("max-age=3600")
    });
    // Too big for the memory cache: every hit reads the cache_dir.
    let proxy = Cuttle::start(&Conf::new().extra("maximum_object_size_in_memory 1 KB"));
    let url = origin.url("/cold");
    for _ in 0..2 {
        let r = Req::get(&url).send(&proxy).await;
        assert_eq!(r.body, body);
    }

    corrupt_on_disk(&proxy.dir.path().join("cache/cuttle.store"), &body);

    let r = Req::get(&url).send(&proxy).await;
    assert!(r.body == body, "served corrupt");
    let log = read_log(&proxy.log_path(), 3).await;
    assert_eq!(
        results(&log),
        ["TCP_MISS/200", "TCP_HIT/200", "TCP_MISS/200"]
    );
    assert_eq!(origin.count("/cold"), 2);
    proxy
        .wait_output("cached entry failed verification", true)
        .await;
}

/// Objects of tens of KB through a 2 MB cache_dir of 16 KiB slots, many
/// times its size, so entries of several slots are evicted and replaced;
/// then SIGTERM and `cuttle store verify`.
#[tokio::test]
async fn a_clean_stop_after_eviction_leaves_a_clean_store() {
    let origin = Origin::start().await;
    const OBJECTS: usize = 120;
    for n in 0..OBJECTS {
        let body = pattern(n as u8, 20_000 + (n % 7) * 7_000);
        origin.route(&format!("/obj/{n}"), move |_| {
            Reply::ok(body.clone()).cc("max-age=3600")
        });
    }
    let dir = TempDir::new("integrity");
    let port = free_port();
    let store_dir = dir.path().join("small");
    let conf = format!(
        "http_port 127.0.0.1:{port}\n\
         acl localnet src 127.0.0.0/8\n\
         http_access allow localnet\n\
         http_access deny all\n\
         cache_dir mmap {store} 2\n\
         access_log none\n\
         pid_filename {pid}\n\
         visible_hostname integrity\n",
        store = store_dir.display(),
        pid = dir.path().join("cuttle.pid").display()
    );
    let conf_path = dir.path().join("squid.conf");
    std::fs::write(&conf_path, conf).expect("write config");
    let args = [
        "run".to_string(),
        "-f".to_string(),
        conf_path.display().to_string(),
    ];
    let mut proxy = Cuttle::start_raw(&args, &[], port, dir, "integrity");
    // 120 objects of 20-62 KB (~5 MB) through 2 MB, some of them twice
    // (hits, and a replacement when a reload refetches).
    for n in 0..OBJECTS {
        let url = origin.url(&format!("/obj/{n}"));
        let r = Req::get(&url).send(&proxy).await;
        assert_eq!(r.status, 200);
        if n % 10 == 0 {
            Req::get(&url).send(&proxy).await;
            Req::get(&url)
                .header("Cache-Control", "no-cache")
                .send(&proxy)
                .await;
        }
    }
    proxy.signal("TERM");
    let status = proxy.wait_exit().await;
    assert!(status.success(), "{status}");

    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["store", "verify"])
        .arg(&store_dir)
        .output()
        .expect("cuttle store verify runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "verify after a clean stop:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("orphaned: 0\n"), "{stdout}");
    let entries: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("entries: "))
        .and_then(|n| n.parse().ok())
        .expect("an entries line");
    assert!(entries > 10, "the store was filled: {stdout}");
}
