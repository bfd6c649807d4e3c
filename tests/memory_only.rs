//! The memory cache without and with a cache_dir, through the real binary:
//! a squid.conf with no cache_dir (Debian's default) caches in memory
//! (`cache_mem`) and logs TCP_MEM_HIT, Vary and revalidation work there,
//! a small cache_mem evicts, ICP answers from it; a stored object's first
//! hit is TCP_MEM_HIT; SIGHUP keeps the memory cache and every counter;
//! mgr:info's Mean Object Size is the mean object size.

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::{
    expected_reply, free_port, free_udp_port, query, Conf, Cuttle, LogLine, Origin, Reply, Req,
    TempDir, WAIT,
};

/// Starts cuttle on a squid.conf without any cache_dir; `extra` lines are
/// appended.
fn start_memory_only(extra: &[&str]) -> Cuttle {
    let dir = TempDir::new("memonly");
    let port = free_port();
    let mut text = format!(
        "http_port 127.0.0.1:{port}\n\
         acl localnet src 127.0.0.0/8\n\
         http_access allow localnet\n\
         http_access deny all\n\
         access_log stdio:{dir}/access.log squid\n\
         visible_hostname memonly\n",
        dir = dir.path().display()
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    let conf = dir.path().join("squid.conf");
    std::fs::write(&conf, text).expect("write config");
    let args = [
        "run".to_string(),
        "-f".to_string(),
        conf.display().to_string(),
    ];
    Cuttle::start_raw(&args, &[], port, dir, "memonly")
}

fn codes(log: &[LogLine]) -> Vec<String> {
    log.iter().map(LogLine::result).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_dir_caches_in_memory_and_logs_mem_hits() {
    let origin = Origin::start().await;
    origin.route("/obj", |_| Reply::ok("kept in memory\n").cc("max-age=600"));
    let cuttle = start_memory_only(&[]);
    cuttle
        .wait_output(
            "cuttle: no cache_dir: caching in memory (cache_mem 256 MB)",
            false,
        )
        .await;
    let url = origin.url("/obj");
    for _ in 0..3 {
        let r = Req::get(&url).send(&cuttle).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "kept in memory\n");
    }
    assert_eq!(origin.count("/obj"), 1, "the origin is asked once");
    assert_eq!(
        codes(&cuttle.log(3).await),
        ["TCP_MISS/200", "TCP_MEM_HIT/200", "TCP_MEM_HIT/200"]
    );
    // mgr:info counts the object as held in memory (one 16 KB slot).
    let info = mgr_page(&cuttle, "info").await;
    assert!(info.contains("\tStorage Mem size:\t16 KB\n"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_and_revalidation_work_in_memory() {
    let origin = Origin::start().await;
    origin.route("/vary", |seen| {
        let lang = seen.header("accept-language");
        Reply::ok(format!("in {lang}\n"))
            .cc("max-age=600")
            .header("vary", "Accept-Language")
    });
    origin.route("/etag", |seen| {
        if seen.header("if-none-match") == "\"v1\"" {
            Reply::status(304).header("etag", "\"v1\"").cc("max-age=0")
        } else {
            Reply::ok("validated\n")
                .header("etag", "\"v1\"")
                .cc("max-age=0")
        }
    });
    let cuttle = start_memory_only(&[]);
    let url = origin.url("/vary");
    for lang in ["en", "fr", "en", "fr"] {
        let r = Req::get(&url)
            .header("accept-language", lang)
            .send(&cuttle)
            .await;
        assert_eq!(r.text(), format!("in {lang}\n"));
    }
    assert_eq!(origin.count("/vary"), 2, "one fetch per variant");
    let etag = origin.url("/etag");
    for _ in 0..2 {
        let r = Req::get(&etag).send(&cuttle).await;
        assert_eq!(r.text(), "validated\n");
    }
    assert_eq!(origin.count("/etag"), 2);
    assert_eq!(origin.last("/etag").header("if-none-match"), "\"v1\"");
    assert_eq!(
        codes(&cuttle.log(6).await),
        [
            "TCP_MISS/200",
            "TCP_MISS/200",
            "TCP_MEM_HIT/200",
            "TCP_MEM_HIT/200",
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cache_mem_evicts_the_oldest_objects() {
    let origin = Origin::start().await;
    origin.route("/big", |_| Reply::ok(vec![b'x'; 100_000]).cc("max-age=600"));
    let cuttle = start_memory_only(&["cache_mem 1 MB"]);
    cuttle
        .wait_output(
            "cuttle: no cache_dir: caching in memory (cache_mem 1 MB)",
            false,
        )
        .await;
    // 30 objects of 100 KB do not fit in 1 MB.
    for i in 0..30 {
        let r = Req::get(&origin.url(&format!("/big?{i}")))
            .send(&cuttle)
            .await;
        assert_eq!(r.body.len(), 100_000);
    }
    let last = Req::get(&origin.url("/big?29")).send(&cuttle).await;
    assert_eq!(last.x_cache(), "HIT", "the newest object is kept");
    let first = Req::get(&origin.url("/big?0")).send(&cuttle).await;
    assert_eq!(first.x_cache(), "MISS", "the oldest object was evicted");
    assert_eq!(first.body.len(), 100_000);
    assert_eq!(origin.count("/big"), 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icp_answers_hit_for_an_object_cached_in_memory() {
    let icp_ip = Ipv4Addr::new(127, 0, 9, 1);
    let asker_ip = Ipv4Addr::new(127, 0, 9, 2);
    let origin = Origin::start().await;
    origin.route("/obj", |_| {
        Reply::ok("for the siblings\n").cc("max-age=3600")
    });
    let icp_port = free_udp_port(icp_ip);
    let cuttle = start_memory_only(&[
        &format!("icp_port {icp_port}"),
        &format!("udp_incoming_address {icp_ip}"),
        &format!("acl siblings src {asker_ip}"),
        "icp_access allow siblings",
        "icp_access deny all",
    ]);
    let icp = SocketAddr::from((icp_ip, icp_port));
    cuttle
        .wait_output(&format!("cuttle: ICP on {icp}"), false)
        .await;
    let socket = UdpSocket::bind((asker_ip, 0)).expect("bind asker");
    socket.set_read_timeout(Some(WAIT)).expect("read timeout");
    let ask = |reqnum: u32, url: &str| {
        socket.send_to(&query(reqnum, url), icp).expect("send");
        let mut buf = [0u8; 17000];
        let (n, _) = socket.recv_from(&mut buf).expect("ICP reply");
        buf[..n].to_vec()
    };
    let url = origin.url("/obj");
    assert_eq!(ask(1, &url), expected_reply(3, 1, &url), "MISS before");
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = ask(2, &url);
        if reply == expected_reply(2, 2, &url) {
            break;
        }
        assert!(Instant::now() < deadline, "never an ICP HIT: {reply:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `name = value` lines of a counters page.
fn counters(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(" = ")?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The Prometheus counters (`*_total` series) of a /metrics page.
fn metric_totals(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            name.ends_with("_total")
                .then(|| Some((series.to_string(), value.parse().ok()?)))?
        })
        .collect()
}

async fn mgr_page(cuttle: &Cuttle, page: &str) -> String {
    let r = Req::get(&format!(
        "http://127.0.0.1:{}/squid-internal-mgr/{page}",
        cuttle.port
    ))
    .send(cuttle)
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_object_is_a_memory_hit_from_its_first_hit() {
    let origin = Origin::start().await;
    origin.route("/obj", |_| {
        Reply::ok("first hit from memory\n").cc("max-age=600")
    });
    let cuttle = Cuttle::start(&Conf::new());
    let url = origin.url("/obj");
    for _ in 0..3 {
        Req::get(&url).send(&cuttle).await;
    }
    assert_eq!(origin.count("/obj"), 1);
    assert_eq!(
        codes(&cuttle.log(3).await),
        ["TCP_MISS/200", "TCP_MEM_HIT/200", "TCP_MEM_HIT/200"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_memory_cache_and_every_counter() {
    let origin = Origin::start().await;
    origin.route("/obj", |_| {
        Reply::ok("survives a reload\n").cc("max-age=600")
    });
    let cuttle = Cuttle::start(&Conf::new());
    let url = origin.url("/obj");
    for _ in 0..3 {
        Req::get(&url).send(&cuttle).await;
    }
    let log = cuttle.log(3).await;
    assert_eq!(log[2].result(), "TCP_MEM_HIT/200", "warmed into memory");
    let before = counters(&mgr_page(&cuttle, "counters").await);
    let metrics_before = metric_totals(&mgr_page(&cuttle, "metrics").await);
    assert!(!metrics_before.is_empty());
    assert!(before["client_http.hits"] >= 2.0, "{before:?}");

    cuttle.signal("HUP");
    cuttle
        .wait_output("cuttle: configuration reloaded", false)
        .await;
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.text(), "survives a reload\n");
    // Three hits before, two manager pages, then this one.
    let log = cuttle.log(6).await;
    let hits: Vec<String> = log
        .iter()
        .filter(|l| l.url == url)
        .map(LogLine::result)
        .collect();
    assert_eq!(
        hits.last().map(String::as_str),
        Some("TCP_MEM_HIT/200"),
        "still in memory: {hits:?}"
    );
    let after = counters(&mgr_page(&cuttle, "counters").await);
    let went_down: Vec<_> = before
        .iter()
        .filter(|(name, value)| {
            !name.contains("kbytes_per_sec") && after.get(*name).is_some_and(|a| a < *value)
        })
        .map(|(name, value)| format!("{name}: {value} -> {}", after[name]))
        .collect();
    assert!(went_down.is_empty(), "counters went down: {went_down:?}");
    let metrics_after = metric_totals(&mgr_page(&cuttle, "metrics").await);
    let metrics_down: Vec<_> = metrics_before
        .iter()
        .filter(|(name, value)| metrics_after.get(*name).is_none_or(|a| a < *value))
        .map(|(name, value)| format!("{name}: {value} -> {:?}", metrics_after.get(name)))
        .collect();
    assert!(
        metrics_down.is_empty(),
        "/metrics counters went down: {metrics_down:?}"
    );
    assert!(after["client_http.requests"] > before["client_http.requests"]);
    assert!(after["client_http.hits"] > before["client_http.hits"]);
    assert_eq!(origin.count("/obj"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mgr_info_mean_object_size_is_the_mean_object_size() {
    let origin = Origin::start().await;
    origin.route("/small", |_| Reply::ok(vec![b's'; 1000]).cc("max-age=600"));
    let cuttle = Cuttle::start(&Conf::new());
    for i in 0..4 {
        Req::get(&origin.url(&format!("/small?{i}")))
            .send(&cuttle)
            .await;
    }
    let info = mgr_page(&cuttle, "info").await;
    let mean: f64 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Mean Object Size:"))
        .and_then(|v| v.trim().strip_suffix(" KB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Mean Object Size in\n{info}"));
    // 1000 body bytes plus URL, headers and the entry's prefix each.
    assert!(
        (1.0..1.5).contains(&mean),
        "Mean Object Size {mean} KB:\n{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_refreshed_by_a_304_stays_a_memory_hit() {
    let origin = Origin::start().await;
    origin.route("/etag", |seen| {
        if seen.header("if-none-match") == "\"v1\"" {
            Reply::status(304)
                .header("etag", "\"v1\"")
                .cc("max-age=600")
        } else {
            Reply::ok("refreshed\n")
                .header("etag", "\"v1\"")
                .cc("max-age=0")
        }
    });
    let cuttle = Cuttle::start(&Conf::new());
    let url = origin.url("/etag");
    for _ in 0..3 {
        let r = Req::get(&url).send(&cuttle).await;
        assert_eq!(r.text(), "refreshed\n");
    }
    assert_eq!(origin.count("/etag"), 2);
    assert_eq!(
        codes(&cuttle.log(3).await),
        [
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200",
            "TCP_MEM_HIT/200"
        ]
    );
}
