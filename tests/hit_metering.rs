//! RFC 2227 hit metering and usage limiting (`hit_metering on`): cuttle
//! offers metering upstream, counts the uses of a metered object it serves
//! from its cache, reports them once (on the next request for it upstream,
//! or in a HEAD when the object is purged), survives a restart without
//! reporting twice, revalidates when `max-uses` is reached, totals its
//! children's reports as an accelerator, and changes nothing when off.

mod peer_lab;
mod support;

use std::path::Path;

use support::{free_port, Conf, Cuttle, Origin, Reply, Req, Seen, TempDir};

/// An origin whose `/obj` is cacheable for an hour with an ETag and the
/// given `Meter` directives; a conditional request gets a 304.
async fn metered_origin(meter: &'static str) -> Origin {
    let origin = Origin::start().await;
    origin.route("/obj", move |seen: &Seen| {
        let reply = if seen.header("if-none-match") == "\"v1\"" {
            Reply::status(304)
        } else {
            Reply::ok("metered body")
        };
        reply
            .cc("max-age=3600")
            .header("etag", "\"v1\"")
            .header("meter", meter)
            .header("connection", "meter")
    });
    origin
}

fn metering_conf() -> Conf {
    Conf::new()
        .access(&[
            "acl localnet src 127.0.0.0/8",
            "acl purge method PURGE",
            "http_access allow localnet",
            "http_access deny all",
        ])
        .extra("hit_metering on")
}

/// The `Meter` fields of every request the origin saw for `path`, in order.
fn meters(origin: &Origin, path: &str) -> Vec<(String, String)> {
    origin
        .requests(path)
        .iter()
        .map(|s| (s.method.to_string(), s.header("meter")))
        .collect()
}

/// How many of the origin's requests for `path` carried `count=U/R`.
fn reports_of(origin: &Origin, path: &str, count: &str) -> usize {
    meters(origin, path)
        .iter()
        .filter(|(_, m)| m.split(',').any(|d| d.trim() == count))
        .count()
}

async fn get(proxy: &Cuttle, url: &str) -> support::Resp {
    let r = Req::get(url).send(proxy).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.has("meter"), "Meter is hop-by-hop: {r:?}");
    r
}

/// A GET the client forces to revalidate (`max-age=0`).
async fn revalidating_get(proxy: &Cuttle, url: &str) {
    let r = Req::get(url)
        .header("cache-control", "max-age=0")
        .send(proxy)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_hits_are_reported_once_on_the_next_revalidation() {
    let origin = metered_origin("do-report").await;
    let proxy = Cuttle::start(&metering_conf());
    let url = origin.url("/obj");
    get(&proxy, &url).await;
    let first = origin.last("/obj");
    assert_eq!(first.header("meter"), "will-report-and-limit", "{first:?}");
    assert!(
        first
            .header("connection")
            .to_ascii_lowercase()
            .contains("meter"),
        "{first:?}"
    );
    for _ in 0..10 {
        assert!(get(&proxy, &url).await.x_cache().starts_with("HIT"));
    }
    assert_eq!(origin.count("/obj"), 1);
    revalidating_get(&proxy, &url).await;
    assert_eq!(origin.count("/obj"), 2);
    let second = origin.last("/obj");
    assert_eq!(second.header("if-none-match"), "\"v1\"");
    assert_eq!(
        second.header("meter"),
        "will-report-and-limit, count=10/10",
        "{second:?}"
    );
    // The next request reports only what came after: the revalidated use.
    revalidating_get(&proxy, &url).await;
    assert_eq!(origin.count("/obj"), 3);
    assert_eq!(reports_of(&origin, "/obj", "count=10/10"), 1);
    assert_eq!(
        origin.last("/obj").header("meter"),
        "will-report-and-limit, count=1/0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_reports_the_counts_in_a_head_once() {
    let origin = metered_origin("do-report").await;
    let proxy = Cuttle::start(&metering_conf());
    let url = origin.url("/obj");
    get(&proxy, &url).await;
    for _ in 0..10 {
        get(&proxy, &url).await;
    }
    assert_eq!(Req::new("PURGE", &url).send(&proxy).await.status, 200);
    origin.wait_count("/obj", 2).await;
    let report = origin.last("/obj");
    assert_eq!(report.method, "HEAD");
    assert_eq!(report.header("meter"), "count=10/10", "{report:?}");
    assert!(report
        .header("connection")
        .to_ascii_lowercase()
        .contains("meter"));
    // Fetched again and purged with no use since: nothing is owed, and
    // the HEAD of the first purge is not repeated.
    get(&proxy, &url).await;
    assert_eq!(Req::new("PURGE", &url).send(&proxy).await.status, 200);
    get(&proxy, &url).await;
    get(&proxy, &url).await;
    assert_eq!(Req::new("PURGE", &url).send(&proxy).await.status, 200);
    origin.wait_count("/obj", 5).await;
    assert_eq!(reports_of(&origin, "/obj", "count=10/10"), 1);
    let methods: Vec<String> = meters(&origin, "/obj").into_iter().map(|m| m.0).collect();
    assert_eq!(methods, ["GET", "HEAD", "GET", "GET", "HEAD"]);
    assert_eq!(origin.last("/obj").header("meter"), "count=1/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_uses_three_means_the_fourth_use_revalidates() {
    let origin = metered_origin("max-uses=3").await;
    let proxy = Cuttle::start(&metering_conf());
    let url = origin.url("/obj");
    get(&proxy, &url).await;
    for _ in 0..3 {
        let hit = get(&proxy, &url).await;
        assert!(hit.x_cache().starts_with("HIT"));
        // No limit is passed on: a shared cache below must come back for
        // every use (and so is counted here), a browser may keep it.
        assert_eq!(
            hit.header("cache-control"),
            "max-age=3600, s-maxage=0",
            "{hit:?}"
        );
    }
    assert_eq!(origin.count("/obj"), 1, "three uses are within the limit");
    let fourth = get(&proxy, &url).await;
    assert_eq!(fourth.text(), "metered body");
    assert_eq!(origin.count("/obj"), 2, "the fourth use revalidates");
    let revalidation = origin.last("/obj");
    assert_eq!(revalidation.header("if-none-match"), "\"v1\"");
    // No report was asked for: none is sent.
    assert_eq!(revalidation.header("meter"), "will-report-and-limit");
    let log = proxy.log(5).await;
    assert_eq!(log[4].code, "TCP_REFRESH_UNMODIFIED", "{log:?}");
}

/// A config of its own, with the cache_dir in `cache` (kept across runs).
fn start_in(conf_dir: TempDir, cache: &Path) -> Cuttle {
    start_sized(conf_dir, cache, 32)
}

/// [`start_in`] with a cache_dir of `megabytes`.
fn start_sized(conf_dir: TempDir, cache: &Path, megabytes: u32) -> Cuttle {
    let port = free_port();
    let conf = conf_dir.path().join("squid.conf");
    let text = format!(
        "http_port 127.0.0.1:{port}\n\
         acl localnet src 127.0.0.0/8\n\
         http_access allow localnet\n\
         http_access deny all\n\
         cache_dir mmap {cache} {megabytes}\n\
         pid_filename {dir}/cuttle.pid\n\
         access_log stdio:{dir}/access.log squid\n\
         visible_hostname restart\n\
         hit_metering on\n",
        cache = cache.display(),
        dir = conf_dir.path().display(),
    );
    std::fs::write(&conf, text).unwrap();
    let args = [
        "run".to_string(),
        "-f".to_string(),
        conf.display().to_string(),
    ];
    Cuttle::start_raw(&args, &[], port, conf_dir, "restart")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_kill_and_are_never_reported_twice() {
    let origin = metered_origin("do-report").await;
    let cache = TempDir::new("meter-cache");
    let url = origin.url("/obj");
    {
        let proxy = start_in(TempDir::new("meter-1"), cache.path());
        get(&proxy, &url).await;
        for _ in 0..5 {
            get(&proxy, &url).await;
        }
        // Dropped: SIGKILL, no clean shutdown.
    }
    {
        let proxy = start_in(TempDir::new("meter-2"), cache.path());
        revalidating_get(&proxy, &url).await;
        assert_eq!(
            origin.last("/obj").header("meter"),
            "will-report-and-limit, count=5/5"
        );
    }
    {
        let proxy = start_in(TempDir::new("meter-3"), cache.path());
        revalidating_get(&proxy, &url).await;
    }
    assert_eq!(origin.count("/obj"), 3);
    assert_eq!(
        reports_of(&origin, "/obj", "count=5/5"),
        1,
        "{:?}",
        meters(&origin, "/obj")
    );
    assert_eq!(
        origin.last("/obj").header("meter"),
        "will-report-and-limit, count=1/0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_reports_the_counts_in_a_head() {
    let origin = metered_origin("do-report").await;
    let big = vec![b'x'; 200 * 1024];
    origin.route("/big", move |_| Reply::ok(big.clone()).cc("max-age=3600"));
    let cache = TempDir::new("meter-evict");
    let proxy = start_sized(TempDir::new("meter-evict-conf"), cache.path(), 1);
    let url = origin.url("/obj");
    get(&proxy, &url).await;
    for _ in 0..3 {
        get(&proxy, &url).await;
    }
    // Five times its size in other objects push it out of the 1 MB cache_dir.
    for i in 0..25 {
        get(&proxy, &origin.url(&format!("/big?{i}"))).await;
    }
    origin.wait_count("/obj", 2).await;
    let report = origin.last("/obj");
    assert_eq!(report.method, "HEAD");
    assert_eq!(report.header("meter"), "count=3/3", "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_is_asked_to_report_what_the_origin_asked_us_to() {
    let origin = metered_origin("do-report").await;
    origin.route("/plain", |_| Reply::ok("plain").cc("max-age=3600"));
    let proxy = Cuttle::start(&metering_conf());
    let offer = |path: &str| {
        Req::get(&origin.url(path))
            .header("meter", "will-report-and-limit")
            .header("connection", "meter")
    };
    let r = offer("/obj").send(&proxy).await;
    assert_eq!(r.header("meter"), "do-report", "{r:?}");
    let r = offer("/obj").send(&proxy).await;
    assert_eq!(r.header("meter"), "do-report", "a hit too: {r:?}");
    // Not asked by the origin: nothing asked of the child.
    let r = offer("/plain").send(&proxy).await;
    assert!(!r.has("meter"), "{r:?}");
    // A child that will not report is not asked.
    let r = Req::get(&origin.url("/obj"))
        .header("meter", "wont-report")
        .send(&proxy)
        .await;
    assert!(!r.has("meter"), "{r:?}");
    // Its report is folded into ours and goes to the origin.
    let report = Req::get(&origin.url("/obj"))
        .header("meter", "count=4/4")
        .header("cache-control", "max-age=0")
        .send(&proxy)
        .await;
    assert_eq!(report.status, 200);
    // Our hits: the second offer and the wont-report request.
    assert_eq!(
        origin.last("/obj").header("meter"),
        "will-report-and-limit, count=6/6"
    );
}

/// The `hit_metering` page's line for `url`: origin fetches, local hits,
/// downstream uses, downstream reuses.
async fn totals_of(proxy: &Cuttle, url: &str) -> Vec<u64> {
    let page = Req::get(&format!(
        "http://127.0.0.1:{}/squid-internal-mgr/hit_metering",
        proxy.port
    ))
    .send(proxy)
    .await
    .text();
    let line = page
        .lines()
        .find(|l| l.ends_with(&format!(" {url}")))
        .unwrap_or_else(|| panic!("no line for {url} in:\n{page}"));
    line.split_whitespace()
        .take(4)
        .map(|n| n.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cuttle_reports_to_its_accelerator() {
    // An origin that asks nothing: the accelerator asks its children itself.
    let origin = Origin::start().await;
    origin.route("/obj", |seen: &Seen| {
        if seen.header("if-none-match") == "\"v1\"" {
            Reply::status(304)
                .cc("max-age=3600")
                .header("etag", "\"v1\"")
        } else {
            Reply::ok("site body")
                .cc("max-age=3600")
                .header("etag", "\"v1\"")
        }
    });
    let accel = Cuttle::start(
        &Conf::new()
            .port_line(&format!(
                "http_port 127.0.0.1:{{port}} accel defaultsite=127.0.0.1:{}",
                origin.port()
            ))
            .extra(&format!(
                "cache_peer 127.0.0.1 parent {} 0 no-query originserver",
                origin.port()
            ))
            .extra("hit_metering on"),
    );
    let mut child_conf = metering_conf()
        .extra(&format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query",
            accel.port
        ))
        .extra("never_direct allow all");
    child_conf.name = "child".into();
    let child = Cuttle::start(&child_conf);
    // The child names the site; it sends it to the accelerator in absolute form.
    let url = origin.url("/obj");
    get(&child, &url).await;
    for _ in 0..5 {
        assert!(get(&child, &url).await.x_cache().starts_with("HIT"));
    }
    // The child's revalidation carries its five hits to the accelerator.
    revalidating_get(&child, &url).await;
    let totals = totals_of(&accel, &url).await;
    assert_eq!(
        totals[2..],
        [5, 5],
        "downstream uses and reuses: {totals:?}"
    );
    // The origin was asked nothing of metering (it asked for nothing).
    assert!(origin
        .requests("/obj")
        .iter()
        .all(|s| !s.header("meter").contains("count")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_nothing_changes() {
    let origin = metered_origin("do-report, max-uses=1").await;
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/obj");
    for _ in 0..4 {
        Req::get(&url).send(&proxy).await;
    }
    assert_eq!(origin.count("/obj"), 1, "no limit without hit_metering");
    assert!(!origin.last("/obj").has("meter"));
}

/// The value of the series `name` whose labels contain `label` on a
/// /metrics page.
fn metric(page: &str, name: &str, label: &str) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accelerator_totals_its_childrens_reports() {
    let origin = metered_origin("do-report").await;
    let conf = Conf::new()
        .port_line(&format!(
            "http_port 127.0.0.1:{{port}} accel defaultsite=127.0.0.1:{}",
            origin.port()
        ))
        .extra(&format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query originserver",
            origin.port()
        ))
        .extra("hit_metering on");
    let proxy = Cuttle::start(&conf);
    // A child cache's first fetch offers metering and is asked to report.
    let first = Req::get("/obj")
        .header("meter", "will-report-and-limit")
        .header("connection", "meter")
        .send(&proxy)
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("meter"), "do-report", "{first:?}");
    // Two local hits, then the child's report of its own seven uses.
    Req::get("/obj").send(&proxy).await;
    Req::get("/obj").send(&proxy).await;
    let report = Req::get("/obj")
        .header("meter", "count=7/6")
        .header("connection", "meter")
        .header("cache-control", "max-age=0")
        .send(&proxy)
        .await;
    assert_eq!(report.status, 200);
    let page = Req::get(&format!(
        "http://127.0.0.1:{}/squid-internal-mgr/hit_metering",
        proxy.port
    ))
    .send(&proxy)
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    let line = page
        .text()
        .lines()
        .find(|l| l.contains("/obj"))
        .unwrap_or_else(|| panic!("no /obj line in:\n{}", page.text()))
        .to_string();
    // origin fetches (the first GET and the revalidation), local hits,
    // downstream uses/reuses.
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[..4], ["2", "3", "7", "6"], "{line}");
    let metrics = Req::get(&format!(
        "http://127.0.0.1:{}/squid-internal-mgr/metrics",
        proxy.port
    ))
    .send(&proxy)
    .await
    .text();
    let site = format!("site=\"127.0.0.1:{}\"", origin.port());
    assert_eq!(
        metric(&metrics, "cuttle_hit_metering_downstream_uses_total", &site),
        Some(7.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "cuttle_hit_metering_local_hits_total", &site),
        Some(3.0)
    );
    assert_eq!(
        metric(&metrics, "cuttle_hit_metering_origin_fetches_total", &site),
        Some(2.0)
    );
}

/// Squid 5.7 between cuttle and the origin ignores `Meter` and, as the
/// RFC has it, drops the fields `Connection` lists: cuttle's offers and
/// reports never reach the origin through it, requests still succeed, and
/// no count (right or wrong) appears at the origin. With the origin's
/// `Meter` not listed in `Connection`, Squid passes it on and cuttle
/// meters and counts; its reports still stop at Squid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_in_the_path_breaks_nothing_and_no_wrong_counts_appear() {
    use std::net::Ipv4Addr;
    let origin_ip = Ipv4Addr::new(127, 0, 52, 1);
    let squid_ip = Ipv4Addr::new(127, 0, 52, 2);
    let cuttle_ip = Ipv4Addr::new(127, 0, 52, 3);
    let tmp = TempDir::new("meter-squid");
    let origin = Origin::start_on(origin_ip).await;
    for (path, listed) in [("/listed", true), ("/unlisted", false)] {
        origin.route(path, move |seen: &Seen| {
            let reply = if seen.header("if-none-match") == "\"v1\"" {
                Reply::status(304)
            } else {
                Reply::ok("body")
            };
            let reply = reply
                .cc("max-age=3600")
                .header("etag", "\"v1\"")
                .header("meter", "do-report");
            if listed {
                reply.header("connection", "meter")
            } else {
                reply
            }
        });
    }
    let squid = peer_lab::Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        &cuttle_ip.to_string(),
        "",
    );
    let cuttle = peer_lab::start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "cache_peer {squid_ip} parent {} 0 no-query\n\
             never_direct allow all\n\
             acl purge method PURGE\n\
             hit_metering on\n",
            squid.http_port
        ),
    );
    for path in ["/listed", "/unlisted"] {
        let url = origin.url(path);
        for _ in 0..6 {
            let (status, body) = peer_lab::get(cuttle.addr, &url).await;
            assert_eq!((status, body.as_str()), (200, "body"));
        }
        let r = Req::get(&url)
            .header("cache-control", "max-age=0")
            .send_to(cuttle.addr)
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(!r.has("meter"), "{r:?}");
        let purge = Req::new("PURGE", &url).send_to(cuttle.addr).await;
        assert_eq!(purge.status, 200);
        let (status, _) = peer_lab::get(cuttle.addr, &url).await;
        assert_eq!(status, 200);
    }
    // cuttle stored /unlisted as metered and owed its uses when purged.
    let page = peer_lab::mgr_page(cuttle.addr, "hit_metering").await;
    assert!(page.contains("hit_metering on"), "{page}");
    let local_hits = |path: &str| -> u64 {
        let line = page
            .lines()
            .find(|l| l.ends_with(&origin.url(path)))
            .unwrap_or_else(|| panic!("no line for {path}:\n{page}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Squid dropped the listed Meter: nothing metered, nothing counted.
    assert_eq!(local_hits("/listed"), 0, "{page}");
    // The five hits are counted (the revalidation is a use too when
    // Squid answers it 304, not when it sends the object whole), though
    // the report never gets past Squid.
    assert!(local_hits("/unlisted") >= 5, "{page}");
    for path in ["/listed", "/unlisted"] {
        for seen in origin.requests(path) {
            assert!(
                !seen.has("meter"),
                "Meter reached the origin through Squid: {seen:?}"
            );
        }
        assert!(origin.count(path) >= 1);
    }
}
