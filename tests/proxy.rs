//! Integration tests of the proxy against a real local origin: the cuttle
//! binary runs with its own squid.conf, a scripted origin inside the test
//! counts and records what reaches it, and every test checks what the client
//! got, what the origin saw and the exact access.log lines.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use support::{
    echo_server, free_port, http_date, pattern, raw, read_head, read_log, Conf, Conn, Cuttle,
    LogLine, Origin, Reply, Req, Resp, Seen, TempDir, WAIT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOCAL: &str = "127.0.0.1";

/// `CODE/STATUS` of each line, a memory hit counted as a hit: Squid (and
/// cuttle's cache_mem) log TCP_MEM_HIT for a hit served from memory, and
/// which of the two a hit is depends on what the memory cache kept.
fn results(log: &[LogLine]) -> Vec<String> {
    log.iter()
        .map(|l| l.result().replace("TCP_MEM_HIT/", "TCP_HIT/"))
        .collect()
}

fn is_hit(l: &LogLine) -> bool {
    matches!(l.code.as_str(), "TCP_HIT" | "TCP_MEM_HIT")
}

/// Asserts the log has exactly these `CODE/STATUS` results, in order
/// (`TCP_HIT` stands for TCP_HIT or TCP_MEM_HIT).
fn assert_results(log: &[LogLine], want: &[&str]) {
    let got = results(log);
    assert_eq!(
        got,
        want,
        "access.log:\n{}",
        log.iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn assert_hit(r: &Resp, proxy: &Cuttle) {
    assert_eq!(
        r.header("x-cache"),
        format!("HIT from {}", proxy.name),
        "{r:?}"
    );
}

fn assert_miss(r: &Resp, proxy: &Cuttle) {
    assert_eq!(
        r.header("x-cache"),
        format!("MISS from {}", proxy.name),
        "{r:?}"
    );
}

fn assert_error(r: &Resp, status: u16, name: &str) {
    assert_eq!(r.status, status, "{r:?}\n{}", r.text());
    assert_eq!(r.header("x-squid-error"), format!("{name} 0"), "{r:?}");
    assert!(
        r.text().contains(name),
        "error page names {name}: {}",
        r.text()
    );
}

/// An origin route that honours If-None-Match for one entity-tag: 304
/// (with the tag and `cc`) when it matches, else 200 with `body`.
fn conditional(tag: &'static str, cc: &'static str, body: &'static str) -> impl Fn(&Seen) -> Reply {
    move |seen: &Seen| {
        if seen.header("if-none-match") == tag {
            Reply::status(304).header("etag", tag).cc(cc)
        } else {
            Reply::ok(body).header("etag", tag).cc(cc)
        }
    }
}

async fn start(conf: Conf) -> (Origin, Cuttle) {
    let origin = Origin::start().await;
    let proxy = Cuttle::start(&conf);
    (origin, proxy)
}

// ------------------------------------------------------------ 1. forward proxy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_miss_then_hit() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/obj", |_| {
        Reply::ok("hello from the origin\n")
            .cc("max-age=600")
            .header("content-type", "text/plain")
    });
    let url = origin.url("/obj");

    let first = Req::get(&url).send(&proxy).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "hello from the origin\n");
    assert_miss(&first, &proxy);
    assert_eq!(
        first.header("x-cache-lookup"),
        format!("MISS from {}:{}", proxy.name, proxy.port)
    );
    assert!(
        first.header("via").starts_with(&proxy.via_header()),
        "Via: {}",
        first.header("via")
    );

    let second = Req::get(&url).send(&proxy).await;
    assert_eq!(second.status, 200);
    assert_hit(&second, &proxy);
    assert_eq!(
        second.header("x-cache-lookup"),
        format!("HIT from {}:{}", proxy.name, proxy.port)
    );
    assert!(
        second.header("via").starts_with(&proxy.via_header()),
        "Via: {}",
        second.header("via")
    );
    let age: u64 = second.header("age").parse().expect("an Age on the hit");
    assert!(age < 5, "Age {age}");
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("content-type"), "text/plain");
    assert_eq!(origin.count("/obj"), 1);

    let log = proxy.log(2).await;
    assert_results(&log, &["TCP_MISS/200", "TCP_HIT/200"]);
    for line in &log {
        assert_eq!(line.client, LOCAL);
        assert_eq!(line.method, "GET");
        assert_eq!(line.url, url);
        assert_eq!(line.user, "-");
        assert_eq!(line.content_type, "text/plain");
        assert!(line.bytes > 22, "{}", line.raw);
    }
    assert_eq!(log[0].hierarchy, "HIER_DIRECT/127.0.0.1");
    assert_eq!(log[1].hierarchy, "HIER_NONE/-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_and_are_cached() {
    let (origin, proxy) = start(Conf::new()).await;
    let big = pattern(7, 1 << 20);
    let body = big.clone();
    origin.route("/big", move |_| {
        Reply::ok(body.clone())
            .cc("max-age=600")
            .pieces(16, Duration::from_millis(5))
    });
    let body = pattern(9, (1 << 20) + 12345);
    let chunked = body.clone();
    origin.route("/big-chunked", move |_| {
        Reply::ok(body.clone())
            .cc("max-age=600")
            .chunked()
            .pieces(20, Duration::from_millis(5))
    });

    for (path, want) in [("/big", &big), ("/big-chunked", &chunked)] {
        let url = origin.url(path);
        let first = Req::get(&url).send(&proxy).await;
        assert_eq!(first.status, 200);
        assert_miss(&first, &proxy);
        assert!(
            first.body[..] == want[..],
            "{path}: miss body differs ({} bytes)",
            first.body.len()
        );
        let second = Req::get(&url).send(&proxy).await;
        assert_hit(&second, &proxy);
        assert!(
            second.body[..] == want[..],
            "{path}: hit body differs ({} bytes)",
            second.body.len()
        );
        assert_eq!(origin.count(path), 1, "{path}");
    }
    let log = proxy.log(4).await;
    assert_results(
        &log,
        &["TCP_MISS/200", "TCP_HIT/200", "TCP_MISS/200", "TCP_HIT/200"],
    );
    assert!(log[1].bytes > 1 << 20, "{}", log[1].raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_from_the_stored_get() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/h", |s| {
        Reply::ok(format!("body {}", s.n))
            .cc("max-age=600")
            .header("content-type", "text/plain")
    });
    let url = origin.url("/h");
    // A HEAD miss goes upstream as HEAD and stores nothing.
    let r = Req::new("HEAD", &url).send(&proxy).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(origin.last("/h").method, "HEAD");
    let get = Req::get(&url).send(&proxy).await;
    assert_miss(&get, &proxy);
    assert_eq!(get.text(), "body 2");
    let r = Req::new("HEAD", &url).send(&proxy).await;
    assert_eq!(r.status, 200);
    assert_hit(&r, &proxy);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), "6");
    assert_eq!(r.header("content-type"), "text/plain");
    assert_eq!(origin.count("/h"), 2);
    let log = proxy.log(3).await;
    assert_results(&log, &["TCP_MISS/200", "TCP_MISS/200", "TCP_HIT/200"]);
    assert_eq!(log[0].method, "HEAD");
    assert_eq!(log[2].method, "HEAD");
}

// ---------------------------------------------------------------- 2. freshness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_max_age_and_s_maxage() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/max-age", |s| {
        Reply::ok(format!("v{}", s.n)).cc("max-age=600")
    });
    // s-maxage wins over max-age in a shared cache, both ways.
    origin.route("/s-maxage", |s| {
        Reply::ok(format!("v{}", s.n)).cc("max-age=0, s-maxage=600")
    });
    origin.route("/s-maxage-0", |s| {
        Reply::ok(format!("v{}", s.n)).cc("max-age=600, s-maxage=0")
    });
    // Born two minutes ago, fresh for one: stale on arrival.
    origin.route("/old", |s| {
        Reply::ok(format!("v{}", s.n))
            .cc("max-age=60")
            .header("date", http_date(-120))
    });
    // 100 s old when it left an upstream cache (Age), fresh for 60.
    origin.route("/aged", |s| {
        Reply::ok(format!("v{}", s.n))
            .cc("max-age=60")
            .header("age", "100")
    });

    let mut want = Vec::new();
    for (path, fresh) in [
        ("/max-age", true),
        ("/s-maxage", true),
        ("/s-maxage-0", false),
        ("/old", false),
        ("/aged", false),
    ] {
        let url = origin.url(path);
        assert_eq!(Req::get(&url).send(&proxy).await.text(), "v1");
        let again = Req::get(&url).send(&proxy).await;
        if fresh {
            assert_eq!(again.text(), "v1", "{path}");
            assert_hit(&again, &proxy);
            assert_eq!(origin.count(path), 1, "{path}");
            want.extend(["TCP_MISS/200", "TCP_HIT/200"]);
        } else {
            assert_eq!(again.text(), "v2", "{path}");
            assert_eq!(origin.count(path), 2, "{path}");
            want.extend(["TCP_MISS/200", "TCP_REFRESH_MODIFIED/200"]);
        }
    }
    assert_results(&proxy.log(10).await, &want);
}

/// The Age a hit carries counts the age the response arrived with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_carry_the_age_they_arrived_with() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/aged", |_| {
        Reply::ok("aged").cc("max-age=600").header("age", "100")
    });
    let url = origin.url("/aged");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    let age: u64 = r.header("age").parse().expect("Age");
    assert!((100..110).contains(&age), "Age {age}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_expires() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/future", |s| {
        Reply::ok(format!("v{}", s.n)).header("expires", http_date(600))
    });
    origin.route("/past", |s| {
        Reply::ok(format!("v{}", s.n)).header("expires", http_date(-600))
    });
    // max-age overrides Expires.
    origin.route("/past-max-age", |s| {
        Reply::ok(format!("v{}", s.n))
            .header("expires", http_date(-600))
            .cc("max-age=600")
    });
    let mut want = Vec::new();
    for (path, fresh) in [("/future", true), ("/past", false), ("/past-max-age", true)] {
        let url = origin.url(path);
        Req::get(&url).send(&proxy).await;
        let again = Req::get(&url).send(&proxy).await;
        assert_eq!(again.text(), if fresh { "v1" } else { "v2" }, "{path}");
        assert_eq!(origin.count(path), if fresh { 1 } else { 2 }, "{path}");
        want.extend([
            "TCP_MISS/200",
            if fresh {
                "TCP_HIT/200"
            } else {
                "TCP_REFRESH_MODIFIED/200"
            },
        ]);
    }
    assert_results(&proxy.log(6).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_heuristic_from_last_modified() {
    let (origin, proxy) = start(Conf::new()).await;
    // Modified 10 days ago: 20% of that (Squid's default rule) is 2 days.
    origin.route("/lm", |s| {
        Reply::ok(format!("v{}", s.n)).header("last-modified", http_date(-10 * 86400))
    });
    // Nothing at all: the default rule's min is 0, stale at once; it is
    // revalidated with its Date as If-Modified-Since (Squid does so).
    origin.route("/nothing", |s| Reply::ok(format!("v{}", s.n)));

    let lm = origin.url("/lm");
    Req::get(&lm).send(&proxy).await;
    let again = Req::get(&lm).send(&proxy).await;
    assert_hit(&again, &proxy);
    assert_eq!(again.text(), "v1");
    assert_eq!(origin.count("/lm"), 1);

    let nothing = origin.url("/nothing");
    Req::get(&nothing).send(&proxy).await;
    let again = Req::get(&nothing).send(&proxy).await;
    assert_eq!(again.text(), "v2");
    assert_eq!(origin.count("/nothing"), 2);
    let second = origin.last("/nothing");
    assert!(
        second.has("if-modified-since"),
        "revalidation without a validator: {second:?}"
    );

    assert_results(
        &proxy.log(4).await,
        &[
            "TCP_MISS/200",
            "TCP_HIT/200",
            "TCP_MISS/200",
            "TCP_REFRESH_MODIFIED/200",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_pattern_min_makes_a_url_fresh() {
    let conf = Conf::new().extra("refresh_pattern /rp/ 5 20% 10");
    let (origin, proxy) = start(conf).await;
    origin.route("/rp/x", |s| Reply::ok(format!("v{}", s.n)));
    origin.route("/other/x", |s| Reply::ok(format!("v{}", s.n)));

    let url = origin.url("/rp/x");
    Req::get(&url).send(&proxy).await;
    let again = Req::get(&url).send(&proxy).await;
    assert_hit(&again, &proxy);
    assert_eq!(again.text(), "v1");
    assert_eq!(origin.count("/rp/x"), 1);

    // Not matched: Squid's default rule, stale at once.
    let url = origin.url("/other/x");
    Req::get(&url).send(&proxy).await;
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v2");
    assert_eq!(origin.count("/other/x"), 2);

    assert_results(
        &proxy.log(4).await,
        &[
            "TCP_MISS/200",
            "TCP_HIT/200",
            "TCP_MISS/200",
            "TCP_REFRESH_MODIFIED/200",
        ],
    );
}

// ------------------------------------------------------------- 3. revalidation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_with_etag() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/etag", |s| match s.n {
        1 => Reply::ok("version one")
            .header("etag", "\"a\"")
            .cc("max-age=0"),
        2 => Reply::status(304).header("etag", "\"a\"").cc("max-age=0"),
        _ => Reply::ok("version two")
            .header("etag", "\"b\"")
            .cc("max-age=600"),
    });
    let url = origin.url("/etag");

    assert_eq!(Req::get(&url).send(&proxy).await.text(), "version one");
    let unmodified = Req::get(&url).send(&proxy).await;
    assert_eq!(unmodified.status, 200);
    assert_eq!(unmodified.text(), "version one");
    assert_eq!(origin.last("/etag").header("if-none-match"), "\"a\"");

    let modified = Req::get(&url).send(&proxy).await;
    assert_eq!(modified.status, 200);
    assert_eq!(modified.text(), "version two");
    assert_eq!(origin.last("/etag").header("if-none-match"), "\"a\"");

    let hit = Req::get(&url).send(&proxy).await;
    assert_hit(&hit, &proxy);
    assert_eq!(hit.text(), "version two");
    assert_eq!(hit.header("etag"), "\"b\"");
    assert_eq!(origin.count("/etag"), 3);

    let log = proxy.log(4).await;
    assert_results(
        &log,
        &[
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200",
            "TCP_REFRESH_MODIFIED/200",
            "TCP_HIT/200",
        ],
    );
    assert_eq!(log[1].hierarchy, "HIER_DIRECT/127.0.0.1");
    assert_eq!(log[2].hierarchy, "HIER_DIRECT/127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_with_last_modified() {
    let (origin, proxy) = start(Conf::new()).await;
    let lm = http_date(-86400);
    let lm2 = http_date(-3600);
    let l = lm.clone();
    // A 304 that makes the entry fresh for 10 minutes.
    origin.route("/lm", move |s| match s.n {
        1 => Reply::ok("old body")
            .header("last-modified", l.clone())
            .cc("max-age=0"),
        _ => Reply::status(304)
            .header("last-modified", l.clone())
            .cc("max-age=600"),
    });
    let l = lm.clone();
    origin.route("/lm2", move |s| match s.n {
        1 => Reply::ok("old body")
            .header("last-modified", l.clone())
            .cc("max-age=0"),
        _ => Reply::ok("new body")
            .header("last-modified", lm2.clone())
            .cc("max-age=600"),
    });

    let url = origin.url("/lm");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (200, "old body"));
    assert_eq!(origin.last("/lm").header("if-modified-since"), lm);
    assert!(!origin.last("/lm").has("if-none-match"));
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "old body");
    assert_eq!(origin.count("/lm"), 2);

    let url = origin.url("/lm2");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (200, "new body"));
    assert_eq!(origin.last("/lm2").header("if-modified-since"), lm);
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "new body");
    assert_eq!(origin.count("/lm2"), 2);

    assert_results(
        &proxy.log(6).await,
        &[
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200",
            "TCP_HIT/200",
            "TCP_MISS/200",
            "TCP_REFRESH_MODIFIED/200",
            "TCP_HIT/200",
        ],
    );
}

// ------------------------------------------------------- 4. client conditionals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_conditionals_on_a_fresh_hit() {
    let (origin, proxy) = start(Conf::new()).await;
    let lm = http_date(-86400);
    let l = lm.clone();
    origin.route("/cond", move |_| {
        Reply::ok("conditional body")
            .header("etag", "\"c1\"")
            .header("last-modified", l.clone())
            .cc("max-age=600")
    });
    let url = origin.url("/cond");
    Req::get(&url).send(&proxy).await;

    let inm = Req::get(&url)
        .header("if-none-match", "\"c1\"")
        .send(&proxy)
        .await;
    assert_eq!(inm.status, 304);
    assert!(inm.body.is_empty());
    assert_eq!(inm.header("etag"), "\"c1\"");

    let ims = Req::get(&url)
        .header("if-modified-since", lm.clone())
        .send(&proxy)
        .await;
    assert_eq!(ims.status, 304);
    assert!(ims.body.is_empty());

    let other = Req::get(&url)
        .header("if-none-match", "\"zz\"")
        .send(&proxy)
        .await;
    assert_eq!(
        (other.status, other.text().as_str()),
        (200, "conditional body")
    );
    let older = Req::get(&url)
        .header("if-modified-since", http_date(-10 * 86400))
        .send(&proxy)
        .await;
    assert_eq!(
        (older.status, older.text().as_str()),
        (200, "conditional body")
    );
    assert_eq!(origin.count("/cond"), 1);

    assert_results(
        &proxy.log(5).await,
        &[
            "TCP_MISS/200",
            "TCP_INM_HIT/304",
            "TCP_IMS_HIT/304",
            "TCP_HIT/200",
            "TCP_HIT/200",
        ],
    );
}

// --------------------------------------------------------- 5. request directives

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reload_with_no_cache_and_pragma() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/reload", |s| {
        Reply::ok(format!("v{}", s.n))
            .header("etag", format!("\"r{}\"", s.n))
            .cc("max-age=600")
    });
    let url = origin.url("/reload");
    Req::get(&url).send(&proxy).await;

    let r = Req::get(&url)
        .header("cache-control", "no-cache")
        .send(&proxy)
        .await;
    assert_eq!(r.text(), "v2");
    // RFC 9111 5.2.1.4: a reload validates the stored response (issue 16).
    assert_eq!(
        origin.last("/reload").header("if-none-match"),
        "\"r1\"",
        "a reload carries the stored validator"
    );
    let r = Req::get(&url)
        .header("pragma", "no-cache")
        .send(&proxy)
        .await;
    assert_eq!(r.text(), "v3");
    assert_eq!(origin.last("/reload").header("if-none-match"), "\"r2\"");
    // The reloads replaced the stored object.
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "v3");
    assert_eq!(origin.count("/reload"), 3);

    assert_results(
        &proxy.log(4).await,
        &[
            "TCP_MISS/200",
            "TCP_REFRESH_MODIFIED/200",
            "TCP_REFRESH_MODIFIED/200",
            "TCP_HIT/200",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_max_age_and_min_fresh() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/ma", conditional("\"m\"", "max-age=600", "max-age body"));
    let url = origin.url("/ma");
    Req::get(&url).send(&proxy).await;

    // max-age=0: revalidate.
    let r = Req::get(&url)
        .header("cache-control", "max-age=0")
        .send(&proxy)
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "max-age body"));
    assert_eq!(origin.count("/ma"), 2);
    assert_eq!(origin.last("/ma").header("if-none-match"), "\"m\"");
    // max-age larger than the age: a hit.
    let r = Req::get(&url)
        .header("cache-control", "max-age=3600")
        .send(&proxy)
        .await;
    assert_hit(&r, &proxy);
    // min-fresh within the lifetime left: a hit; beyond it: revalidate.
    let r = Req::get(&url)
        .header("cache-control", "min-fresh=60")
        .send(&proxy)
        .await;
    assert_hit(&r, &proxy);
    assert_eq!(origin.count("/ma"), 2);
    let r = Req::get(&url)
        .header("cache-control", "min-fresh=1000")
        .send(&proxy)
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "max-age body"));
    assert_eq!(origin.count("/ma"), 3);

    assert_results(
        &proxy.log(5).await,
        &[
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200",
            "TCP_HIT/200",
            "TCP_HIT/200",
            "TCP_REFRESH_UNMODIFIED/200",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_max_stale_serves_a_stale_entry() {
    let (origin, proxy) = start(Conf::new()).await;
    // Born 100 s ago, fresh for 10: 90 s stale.
    origin.route("/ms", |s| {
        if s.header("if-none-match") == "\"s\"" {
            Reply::status(304)
                .header("etag", "\"s\"")
                .cc("max-age=10")
                .header("date", http_date(-100))
        } else {
            Reply::ok("stale body")
                .header("etag", "\"s\"")
                .cc("max-age=10")
                .header("date", http_date(-100))
        }
    });
    let url = origin.url("/ms");
    Req::get(&url).send(&proxy).await;

    let r = Req::get(&url)
        .header("cache-control", "max-stale=1000")
        .send(&proxy)
        .await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "stale body");
    let r = Req::get(&url)
        .header("cache-control", "max-stale")
        .send(&proxy)
        .await;
    assert_hit(&r, &proxy);
    assert_eq!(origin.count("/ms"), 1);
    // Too stale for this client.
    let r = Req::get(&url)
        .header("cache-control", "max-stale=5")
        .send(&proxy)
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "stale body"));
    assert_eq!(origin.count("/ms"), 2);

    assert_results(
        &proxy.log(4).await,
        &[
            "TCP_MISS/200",
            "TCP_HIT/200",
            "TCP_HIT/200",
            "TCP_REFRESH_UNMODIFIED/200",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/oic", |_| Reply::ok("cached").cc("max-age=600"));
    origin.route("/oic-stale", |_| {
        Reply::ok("stale")
            .cc("max-age=10")
            .header("date", http_date(-100))
    });

    let missing = origin.url("/oic-missing");
    let r = Req::get(&missing)
        .header("cache-control", "only-if-cached")
        .send(&proxy)
        .await;
    assert_error(&r, 504, "ERR_ONLY_IF_CACHED_MISS");
    assert_eq!(origin.count("/oic-missing"), 0);

    let url = origin.url("/oic");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url)
        .header("cache-control", "only-if-cached")
        .send(&proxy)
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "cached"));
    assert_hit(&r, &proxy);

    let stale = origin.url("/oic-stale");
    Req::get(&stale).send(&proxy).await;
    let r = Req::get(&stale)
        .header("cache-control", "only-if-cached")
        .send(&proxy)
        .await;
    assert_error(&r, 504, "ERR_ONLY_IF_CACHED_MISS");
    assert_eq!(origin.count("/oic-stale"), 1);

    let log = proxy.log(5).await;
    assert_eq!(log[0].result(), "TCP_MISS/504", "{}", log[0].raw);
    assert_eq!(log[0].url, missing);
    assert_eq!(log[0].hierarchy, "HIER_NONE/-");
    assert!(is_hit(&log[2]) && log[2].status == 200, "{}", log[2].raw);
    assert_eq!(log[4].status, 504, "{}", log[4].raw);
}

// ------------------------------------------------------------- 6. not stored

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_and_private_are_not_stored() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/no-store", |s| {
        Reply::ok(format!("v{}", s.n)).cc("no-store, max-age=600")
    });
    origin.route("/private", |s| {
        Reply::ok(format!("v{}", s.n)).cc("private, max-age=600")
    });
    origin.route("/req-no-store", |s| {
        Reply::ok(format!("v{}", s.n)).cc("max-age=600")
    });

    for path in ["/no-store", "/private"] {
        let url = origin.url(path);
        assert_eq!(Req::get(&url).send(&proxy).await.text(), "v1");
        let again = Req::get(&url).send(&proxy).await;
        assert_eq!(again.text(), "v2", "{path} was stored");
        assert_miss(&again, &proxy);
        assert_eq!(origin.count(path), 2);
    }
    // A request's no-store keeps its response out of the cache.
    let url = origin.url("/req-no-store");
    Req::get(&url)
        .header("cache-control", "no-store")
        .send(&proxy)
        .await;
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v2");
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "v2");

    let mut want = vec!["TCP_MISS/200"; 6];
    want.push("TCP_HIT/200");
    assert_results(&proxy.log(7).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_requests_are_stored_only_when_public() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/auth", |s| {
        Reply::ok(format!("v{}", s.n)).cc("max-age=600")
    });
    origin.route("/auth-public", |s| {
        Reply::ok(format!("v{}", s.n)).cc("public, max-age=600")
    });
    let creds = "Basic dXNlcjpwYXNz";

    let url = origin.url("/auth");
    Req::get(&url)
        .header("authorization", creds)
        .send(&proxy)
        .await;
    assert_eq!(origin.last("/auth").header("authorization"), creds);
    let r = Req::get(&url)
        .header("authorization", creds)
        .send(&proxy)
        .await;
    assert_eq!(
        r.text(),
        "v2",
        "a response to an authorized request was stored"
    );
    assert_eq!(origin.count("/auth"), 2);

    let url = origin.url("/auth-public");
    Req::get(&url)
        .header("authorization", creds)
        .send(&proxy)
        .await;
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "v1");
    assert_eq!(origin.count("/auth-public"), 1);

    assert_results(
        &proxy.log(4).await,
        &[
            "TCP_MISS/200",
            "TCP_MISS/200",
            "TCP_MISS/200",
            "TCP_HIT/200",
        ],
    );
}

/// src/caching/storable.rs: a Set-Cookie does not prevent storing (RFC 9111
/// §7.3), and the stored response is served whole, its Set-Cookie included
/// (more in tests/conformance_freshness.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_responses() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/cookie", |s| {
        Reply::ok(format!("v{}", s.n))
            .cc("max-age=600")
            .header("set-cookie", "s=1")
    });
    origin.route("/cookie-public", |s| {
        Reply::ok(format!("v{}", s.n))
            .cc("public, max-age=600")
            .header("set-cookie", "s=2")
    });

    for (path, cookie) in [("/cookie", "s=1"), ("/cookie-public", "s=2")] {
        let url = origin.url(path);
        let r = Req::get(&url).send(&proxy).await;
        assert_eq!(r.header("set-cookie"), cookie);
        let r = Req::get(&url).send(&proxy).await;
        assert_hit(&r, &proxy);
        assert_eq!(r.text(), "v1");
        assert_eq!(
            r.header("set-cookie"),
            cookie,
            "the stored response is served whole"
        );
        assert_eq!(origin.count(path), 1);
    }

    assert_results(
        &proxy.log(4).await,
        &["TCP_MISS/200", "TCP_HIT/200", "TCP_MISS/200", "TCP_HIT/200"],
    );
}

/// `no-cache` in a response: stored, but revalidated before every use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_cache_response_is_revalidated_every_time() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/nc", conditional("\"nc\"", "no-cache", "no-cache body"));
    let url = origin.url("/nc");
    for _ in 0..3 {
        let r = Req::get(&url).send(&proxy).await;
        assert_eq!((r.status, r.text().as_str()), (200, "no-cache body"));
    }
    assert_eq!(origin.count("/nc"), 3);
    assert_eq!(origin.last("/nc").header("if-none-match"), "\"nc\"");
    assert_results(
        &proxy.log(3).await,
        &[
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200",
            "TCP_REFRESH_UNMODIFIED/200",
        ],
    );
}

/// Errors: kept only with explicit freshness (negative_ttl is 0 by
/// default), and a hit on one is Squid's TCP_NEGATIVE_HIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_are_cached_only_with_explicit_freshness() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/gone", |s| {
        Reply::status(404).body(format!("gone {}", s.n))
    });
    origin.route("/gone-cacheable", |s| {
        Reply::status(404)
            .body(format!("gone {}", s.n))
            .cc("max-age=600")
    });
    let url = origin.url("/gone");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (404, "gone 2"));
    assert_eq!(origin.count("/gone"), 2);
    let url = origin.url("/gone-cacheable");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (404, "gone 1"));
    assert_hit(&r, &proxy);
    let log = proxy.log(4).await;
    // Squid would log the second as TCP_MISS (negative_ttl 0: nothing
    // kept); cuttle keeps the 404 heuristically (RFC 9110 allows it) and
    // revalidates it, so only the status is asserted there.
    assert_eq!(log[1].status, 404, "{}", log[1].raw);
    assert_results(
        &[log[0].clone(), log[2].clone(), log[3].clone()],
        &["TCP_MISS/404", "TCP_MISS/404", "TCP_NEGATIVE_HIT/404"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_star_is_not_stored() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/vary-star", |s| {
        Reply::ok(format!("v{}", s.n))
            .cc("max-age=600")
            .header("vary", "*")
    });
    let url = origin.url("/vary-star");
    Req::get(&url).send(&proxy).await;
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v2");
    assert_eq!(origin.count("/vary-star"), 2);
    assert_results(&proxy.log(2).await, &["TCP_MISS/200", "TCP_MISS/200"]);
}

// ----------------------------------------------------------------------- 7. Vary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_accept_encoding_keeps_one_variant_each() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/vary", |s| {
        Reply::ok(format!(
            "encoding={} n={}",
            s.header("accept-encoding"),
            s.n
        ))
        .cc("max-age=600")
        .header("vary", "Accept-Encoding")
    });
    let url = origin.url("/vary");
    let get = |enc: &'static str| Req::get(&url).header("accept-encoding", enc);

    assert_eq!(get("gzip").send(&proxy).await.text(), "encoding=gzip n=1");
    assert_eq!(get("br").send(&proxy).await.text(), "encoding=br n=2");
    assert_eq!(origin.count("/vary"), 2);
    let r = get("gzip").send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "encoding=gzip n=1");
    let r = get("br").send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "encoding=br n=2");
    assert_eq!(origin.count("/vary"), 2);

    assert_results(
        &proxy.log(4).await,
        &["TCP_MISS/200", "TCP_MISS/200", "TCP_HIT/200", "TCP_HIT/200"],
    );
}

// ------------------------------------------------- 8. stale-while/if-error

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_and_refreshes() {
    let (origin, proxy) = start(Conf::new()).await;
    // The refresh is held until the stale hit is in: a proxy that waited
    // for it would answer nothing in time (no clock to race).
    let (release, held) = tokio::sync::watch::channel(false);
    origin.route("/swr", move |s| match s.n {
        // 29 s stale, within stale-while-revalidate.
        1 => Reply::ok("v1")
            .header("etag", "\"s1\"")
            .cc("max-age=1, stale-while-revalidate=600")
            .header("date", http_date(-30)),
        _ => Reply::ok("v2")
            .header("etag", "\"s2\"")
            .cc("max-age=600")
            .hold(held.clone()),
    });
    let url = origin.url("/swr");
    Req::get(&url).send(&proxy).await;

    let r = Req::get(&url)
        .try_send(&proxy)
        .await
        .unwrap_or_else(|e| panic!("the stale hit waited for the held refresh: {e}"));
    assert_eq!(r.text(), "v1");
    assert_hit(&r, &proxy);
    let _ = release.send(true);

    origin.wait_count("/swr", 2).await;
    assert_eq!(origin.last("/swr").header("if-none-match"), "\"s1\"");
    // Hits until the refreshed object is in; then it is fresh.
    let deadline = Instant::now() + WAIT;
    let mut hits = 1;
    loop {
        let r = Req::get(&url).send(&proxy).await;
        assert_hit(&r, &proxy);
        hits += 1;
        if r.text() == "v2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background refresh never stored v2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(origin.count("/swr"), 2, "one background refresh, no more");
    let log = proxy.log(1 + hits).await;
    assert_eq!(log.len(), 1 + hits, "{log:?}");
    assert_eq!(log[0].result(), "TCP_MISS/200");
    for l in &log[1..] {
        assert!(is_hit(l) && l.status == 200, "{}", l.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_stale_on_a_server_error() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/sie", |s| match s.n {
        1 => Reply::ok("old but good")
            .cc("max-age=1, stale-if-error=600")
            .header("date", http_date(-30)),
        _ => Reply::status(500).body("origin broke"),
    });
    let url = origin.url("/sie");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (200, "old but good"));
    assert_eq!(origin.count("/sie"), 2);
    assert_results(
        &proxy.log(2).await,
        &["TCP_MISS/200", "TCP_REFRESH_FAIL_OLD/200"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_stale_when_the_origin_is_down() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/down", |_| {
        Reply::ok("old but good")
            .cc("max-age=1, stale-if-error=600")
            .header("date", http_date(-30))
    });
    let url = origin.url("/down");
    Req::get(&url).send(&proxy).await;
    origin.stop().await;
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (200, "old but good"));
    assert_results(
        &proxy.log(2).await,
        &["TCP_MISS/200", "TCP_REFRESH_FAIL_OLD/200"],
    );
}

/// When the stale entry may not be served (its stale-if-error is exceeded,
/// or must-revalidate), Squid forwards the origin's 5xx as it is
/// (TCP_REFRESH_FAIL_ERR, client_side_reply.cc handleIMSReply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stale_if_error_a_server_error_reaches_the_client() {
    let (origin, proxy) = start(Conf::new()).await;
    // 29 s stale, stale-if-error allows 5.
    origin.route("/sie-short", |s| match s.n {
        1 => Reply::ok("old")
            .cc("max-age=1, stale-if-error=5")
            .header("date", http_date(-30)),
        _ => Reply::status(500).body("origin broke"),
    });
    origin.route("/must", |s| match s.n {
        1 => Reply::ok("old")
            .cc("max-age=1, must-revalidate")
            .header("date", http_date(-30)),
        _ => Reply::status(500).body("origin broke"),
    });
    for path in ["/sie-short", "/must"] {
        let url = origin.url(path);
        Req::get(&url).send(&proxy).await;
        let r = Req::get(&url).send(&proxy).await;
        assert_ne!(r.text(), "old", "{path}: stale entry served");
        assert_eq!(origin.count(path), 2);
        assert_eq!(
            (r.status, r.text().as_str()),
            (500, "origin broke"),
            "{path}: {r:?}"
        );
    }
    assert_results(
        &proxy.log(4).await,
        &[
            "TCP_MISS/200",
            "TCP_REFRESH_FAIL_ERR/500",
            "TCP_MISS/200",
            "TCP_REFRESH_FAIL_ERR/500",
        ],
    );
}

/// must-revalidate and the origin down: the connect error, not the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_revalidate_with_the_origin_down_is_an_error() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/must-down", |_| {
        Reply::ok("old")
            .cc("max-age=1, must-revalidate")
            .header("date", http_date(-30))
    });
    let url = origin.url("/must-down");
    Req::get(&url).send(&proxy).await;
    origin.stop().await;
    let r = Req::get(&url).send(&proxy).await;
    assert_ne!(r.text(), "old", "stale must-revalidate entry served");
    assert_error(&r, 503, "ERR_CONNECT_FAIL");
    assert_results(
        &proxy.log(2).await,
        &["TCP_MISS/200", "TCP_REFRESH_FAIL_ERR/503"],
    );
}

// ------------------------------------------------------------ 9. unsafe methods

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_pass_through_and_invalidate() {
    let (origin, proxy) = start(Conf::new()).await;
    for path in ["/inv/a", "/inv/b", "/inv/c", "/inv/d", "/inv/e"] {
        origin.route(path, |s| match s.method.as_str() {
            "GET" => Reply::ok(format!("get {}", s.n)).cc("max-age=600"),
            "POST" if s.target == "/inv/a" => Reply::status(201)
                .header("location", "/inv/b")
                .body("created"),
            "POST" => Reply::status(403).body("no"),
            _ => Reply::status(204),
        });
    }
    let url = |p: &str| origin.url(p);
    for p in ["/inv/a", "/inv/b", "/inv/c", "/inv/d", "/inv/e"] {
        Req::get(&url(p)).send(&proxy).await;
        assert_hit(&Req::get(&url(p)).send(&proxy).await, &proxy);
    }

    let r = Req::new("POST", &url("/inv/a"))
        .body("form=1&x=2")
        .send(&proxy)
        .await;
    assert_eq!((r.status, r.text().as_str()), (201, "created"));
    let post = origin
        .requests("/inv/a")
        .into_iter()
        .find(|s| s.method == "POST")
        .expect("POST reached the origin");
    assert_eq!(&post.body[..], b"form=1&x=2");
    let r = Req::new("PUT", &url("/inv/c"))
        .body("new content")
        .send(&proxy)
        .await;
    assert_eq!(r.status, 204);
    let r = Req::new("DELETE", &url("/inv/d")).send(&proxy).await;
    assert_eq!(r.status, 204);
    // An error answer invalidates nothing.
    let r = Req::new("POST", &url("/inv/e"))
        .body("x")
        .send(&proxy)
        .await;
    assert_eq!(r.status, 403);

    // The targets and the same-origin Location are gone; /inv/e stays.
    // (The origin counts every method: the unsafe request was its n-th.)
    for (p, n) in [("/inv/a", 3), ("/inv/b", 2), ("/inv/c", 3), ("/inv/d", 3)] {
        let r = Req::get(&url(p)).send(&proxy).await;
        assert_miss(&r, &proxy);
        assert_eq!(r.text(), format!("get {n}"), "{p}");
    }
    assert_hit(&Req::get(&url("/inv/e")).send(&proxy).await, &proxy);

    let log = proxy.log(19).await;
    let unsafe_lines: Vec<_> = log.iter().filter(|l| l.method != "GET").collect();
    assert_eq!(
        unsafe_lines
            .iter()
            .map(|l| format!("{} {}", l.method, l.result()))
            .collect::<Vec<_>>(),
        [
            "POST TCP_MISS/201",
            "PUT TCP_MISS/204",
            "DELETE TCP_MISS/204",
            "POST TCP_MISS/403"
        ]
    );
    for l in unsafe_lines {
        assert_eq!(l.hierarchy, "HIER_DIRECT/127.0.0.1", "{}", l.raw);
    }
    assert_results(
        &log[14..],
        &[
            "TCP_MISS/200",
            "TCP_MISS/200",
            "TCP_MISS/200",
            "TCP_MISS/200",
            "TCP_HIT/200",
        ],
    );
}

// ------------------------------------------------------------------- 10. PURGE

fn purge_conf() -> Conf {
    Conf::new().access(&[
        "acl purge method PURGE",
        "acl localnet src 127.0.0.0/8",
        "http_access allow purge localhost",
        "http_access deny purge",
        "http_access allow localnet",
        "http_access deny all",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_allowed_by_an_acl() {
    let (origin, proxy) = start(purge_conf()).await;
    origin.route("/p", |s| Reply::ok(format!("v{}", s.n)).cc("max-age=600"));
    let url = origin.url("/p");
    Req::get(&url).send(&proxy).await;
    assert_hit(&Req::get(&url).send(&proxy).await, &proxy);

    assert_eq!(Req::new("PURGE", &url).send(&proxy).await.status, 200);
    assert_eq!(Req::new("PURGE", &url).send(&proxy).await.status, 404);
    let r = Req::get(&url).send(&proxy).await;
    assert_miss(&r, &proxy);
    assert_eq!(r.text(), "v2");
    assert_eq!(origin.count("/p"), 2);

    let log = proxy.log(5).await;
    assert_results(
        &log,
        &[
            "TCP_MISS/200",
            "TCP_HIT/200",
            "TCP_MISS/200",
            "TCP_MISS/404",
            "TCP_MISS/200",
        ],
    );
    assert_eq!(
        (log[2].method.as_str(), log[2].url.as_str()),
        ("PURGE", url.as_str())
    );
    assert_eq!(log[2].hierarchy, "HIER_NONE/-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_denied_by_http_access() {
    let (origin, proxy) = start(purge_conf()).await;
    origin.route("/p", |s| Reply::ok(format!("v{}", s.n)).cc("max-age=600"));
    let url = origin.url("/p");
    Req::get(&url).send(&proxy).await;
    // 127.0.0.2 is in localnet but not localhost.
    let r = Req::new("PURGE", &url)
        .from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .send(&proxy)
        .await;
    assert_error(&r, 403, "ERR_ACCESS_DENIED");
    assert_hit(&Req::get(&url).send(&proxy).await, &proxy);

    let log = proxy.log(3).await;
    assert_results(&log, &["TCP_MISS/200", "TCP_DENIED/403", "TCP_HIT/200"]);
    assert_eq!(
        (log[1].method.as_str(), log[1].client.as_str()),
        ("PURGE", "127.0.0.2")
    );
}

/// Squid refuses PURGE outright unless some `acl ... method PURGE` exists
/// (Config2.onoff.enable_purge): a config that merely allows localnet does
/// not let anyone purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_needs_a_purge_method_acl() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/p", |s| Reply::ok(format!("v{}", s.n)).cc("max-age=600"));
    let url = origin.url("/p");
    Req::get(&url).send(&proxy).await;
    let r = Req::new("PURGE", &url).send(&proxy).await;
    assert_error(&r, 403, "ERR_ACCESS_DENIED");
    assert_hit(&Req::get(&url).send(&proxy).await, &proxy);
    assert_results(
        &proxy.log(3).await,
        &["TCP_MISS/200", "TCP_DENIED/403", "TCP_HIT/200"],
    );
}

// ---------------------------------------------------------- 11. collapsed forwarding

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collapsed_forwarding_fetches_once_for_twenty_clients() {
    let (origin, proxy) = start(Conf::new()).await;
    let body = pattern(3, 200_000);
    let b = body.clone();
    // The answer waits until cuttle lists all twenty requests: a client a
    // busy machine let in late would find the object stored, a hit.
    let (release, held) = tokio::sync::watch::channel(false);
    origin.route("/slow", move |_| {
        Reply::ok(b.clone())
            .cc("max-age=600")
            .delay(Duration::from_millis(500))
            .hold(held.clone())
            .pieces(8, Duration::from_millis(20))
    });
    let url = origin.url("/slow");
    let mut conns = Vec::new();
    for _ in 0..20 {
        conns.push(Conn::open(proxy.addr()).await);
    }
    let mut tasks = Vec::new();
    for mut c in conns {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { c.send(Req::get(&url)).await }));
    }
    let deadline = Instant::now() + WAIT;
    let mut polls = 1;
    while active_requests(&proxy, &url).await < 20 {
        polls += 1;
        assert!(
            Instant::now() < deadline,
            "the twenty requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = release.send(true);
    for t in tasks {
        let r = t.await.expect("client task");
        assert_eq!(r.status, 200);
        assert!(
            r.body[..] == body[..],
            "a client got {} bytes, not the object",
            r.body.len()
        );
    }
    assert_eq!(
        origin.count("/slow"),
        1,
        "collapsed forwarding let several fetches through"
    );

    // The manager's answers are logged too.
    let log: Vec<LogLine> = proxy
        .log(20 + polls)
        .await
        .into_iter()
        .filter(|l| l.url == url)
        .collect();
    assert_eq!(log.len(), 20);
    let misses: Vec<_> = log
        .iter()
        .filter(|l| l.result() == "TCP_MISS/200")
        .collect();
    let collapsed: Vec<_> = log
        .iter()
        .filter(|l| l.code.contains("_CF_") && l.status == 200)
        .collect();
    assert_eq!(misses.len(), 1, "{log:#?}");
    assert_eq!(collapsed.len(), 19, "{log:#?}");
    assert_eq!(misses[0].hierarchy, "HIER_DIRECT/127.0.0.1");
    for l in &collapsed {
        assert!(l.bytes > 200_000, "{}", l.raw);
    }
}

/// How many requests for `url` cuttle's `mgr:active_requests` lists.
async fn active_requests(proxy: &Cuttle, url: &str) -> usize {
    let (_, page) = support::mgr_page(proxy, "active_requests").await;
    page.matches(&format!("\nuri {url}\n")).count()
}

/// `collapsed_forwarding off` (Squid's default, which cuttle does not
/// share: it collapses unless told not to) makes every concurrent miss
/// fetch on its own, as in Squid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collapsed_forwarding_off_fetches_once_per_client() {
    let (origin, proxy) = start(Conf::new().extra("collapsed_forwarding off")).await;
    origin.route("/slow", |_| {
        Reply::ok("slow object")
            .cc("max-age=600")
            .delay(Duration::from_millis(300))
    });
    let url = origin.url("/slow");
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(Conn::open(proxy.addr()).await);
    }
    let mut tasks = Vec::new();
    for mut c in conns {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { c.send(Req::get(&url)).await }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("client task").status, 200);
    }
    assert_eq!(origin.count("/slow"), 3, "the misses were collapsed");
    let log = proxy.log(3).await;
    assert!(log.iter().all(|l| l.result() == "TCP_MISS/200"), "{log:#?}");
}

/// Squid's collapsed_forwarding: the waiting requests use the first one's
/// response only "if it happens to be cachable". A `private` response with
/// a Set-Cookie is one user's: it must not reach the other waiting clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collapsed_requests_do_not_share_a_private_response() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/private-slow", |s| {
        Reply::ok(format!("for client {}", s.n))
            .cc("private")
            .header("set-cookie", format!("session={}", s.n))
            .delay(Duration::from_millis(500))
    });
    let url = origin.url("/private-slow");
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(Conn::open(proxy.addr()).await);
    }
    let mut tasks = Vec::new();
    for mut c in conns {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { c.send(Req::get(&url)).await }));
    }
    let mut cookies = Vec::new();
    for t in tasks {
        let r = t.await.expect("client task");
        assert_eq!(r.status, 200);
        cookies.push(r.header("set-cookie"));
    }
    cookies.sort();
    let mut distinct = cookies.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        5,
        "one client's private response (and cookie) went to others: {cookies:?}; \
         the origin saw {} requests",
        origin.count("/private-slow")
    );
    assert_eq!(origin.count("/private-slow"), 5);
}

// ------------------------------------------------- 12. streaming and store safety

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_body_does_not_corrupt_the_store() {
    let (origin, proxy) = start(Conf::new()).await;
    let body = pattern(5, 512 * 1024);
    let b = body.clone();
    // The rest of the body waits until the client is gone: however late
    // a busy machine lets it read, cuttle cannot have sent all by then.
    let (release, stalled) = tokio::sync::watch::channel(false);
    origin.route("/abort", move |_| {
        Reply::ok(b.clone())
            .cc("max-age=600")
            .pieces(16, Duration::from_millis(20))
            .stall(2, stalled.clone())
    });
    let url = origin.url("/abort");
    {
        let mut s = support::connect(proxy.addr(), None).await;
        s.write_all(format!("GET {url} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.addr).as_bytes())
            .await
            .expect("write");
        let (head, mut got) = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut buf = [0u8; 8192];
        while got.len() < 40_000 {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(body.starts_with(&got), "the first bytes are wrong");
        // Dropped here, with most of the body still to come.
    }
    let _ = release.send(true);
    let first = read_log(&proxy.log_path(), 1).await;
    assert_eq!(
        first[0].result(),
        "TCP_MISS_ABORTED/200",
        "{}",
        first[0].raw
    );
    origin.wait_finished("/abort", 1).await;

    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body[..] == body[..],
        "after the abort: {} bytes, not the object",
        r.body.len()
    );
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    assert!(
        r.body[..] == body[..],
        "the stored object is not the origin's"
    );
    let log = proxy.log(3).await;
    assert_eq!(log.len(), 3);
    assert_eq!(
        origin.count("/abort"),
        if log[1].result() == "TCP_MISS/200" {
            2
        } else {
            1
        },
        "{log:#?}"
    );
}

/// An origin that breaks the connection mid-body: the client sees a
/// broken response (not a short one that looks complete) and nothing is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cut_mid_body_is_not_stored() {
    let (origin, proxy) = start(Conf::new()).await;
    let body = pattern(4, 200_000);
    let b = body.clone();
    origin.route("/cut", move |s| {
        let r = Reply::ok(b.clone())
            .cc("max-age=600")
            .pieces(4, Duration::from_millis(10));
        if s.n == 1 {
            r.cut_after(70_000)
        } else {
            r
        }
    });
    let url = origin.url("/cut");
    match Req::get(&url).try_send(&proxy).await {
        Err(_) => {}
        Ok(r) => panic!(
            "a cut response looked complete: {} of {} bytes, {r:?}",
            r.body.len(),
            body.len()
        ),
    }
    let r = Req::get(&url).send(&proxy).await;
    assert_miss(&r, &proxy);
    assert!(r.body[..] == body[..], "{} bytes", r.body.len());
    assert_eq!(origin.count("/cut"), 2);
    let r = Req::get(&url).send(&proxy).await;
    assert_hit(&r, &proxy);
    assert!(r.body[..] == body[..], "{} bytes", r.body.len());
    let log = proxy.log(3).await;
    assert_eq!(log[0].code, "TCP_MISS_ABORTED", "{}", log[0].raw);
    assert_results(&log[1..], &["TCP_MISS/200", "TCP_HIT/200"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_maximum_object_size_pass_through_unstored() {
    let (origin, proxy) = start(Conf::new().extra("maximum_object_size 100 KB")).await;
    let body = pattern(11, 300 * 1024);
    let b = body.clone();
    origin.route("/huge", move |_| {
        Reply::ok(b.clone())
            .cc("max-age=600")
            .pieces(6, Duration::ZERO)
    });
    let b = body.clone();
    origin.route("/huge-chunked", move |_| {
        Reply::ok(b.clone())
            .cc("max-age=600")
            .chunked()
            .pieces(6, Duration::ZERO)
    });
    for path in ["/huge", "/huge-chunked"] {
        let url = origin.url(path);
        for _ in 0..2 {
            let r = Req::get(&url).send(&proxy).await;
            assert_eq!(r.status, 200);
            assert_miss(&r, &proxy);
            assert!(
                r.body[..] == body[..],
                "{path}: {} bytes, not the object",
                r.body.len()
            );
        }
        assert_eq!(origin.count(path), 2, "{path} was stored");
    }
    assert_results(&proxy.log(4).await, &["TCP_MISS/200"; 4]);
}

// ----------------------------------------------------------- 13. access control

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_access_denials() {
    let (origin, proxy) = start(Conf::new().access(&[
        "acl localnet src 127.0.0.0/8",
        "acl badclient src 127.0.0.2",
        "acl baddomain dstdomain .blocked.example",
        "acl baddst dst 127.0.0.3",
        "acl badport port 9",
        "acl badmethod method DELETE",
        "http_access deny badclient",
        "http_access deny baddomain",
        "http_access deny baddst",
        "http_access deny badport",
        "http_access deny badmethod",
        "http_access allow localnet",
        "http_access deny all",
    ]))
    .await;
    origin.route("/ok", |_| Reply::ok("fine"));
    let ok = origin.url("/ok");
    let denied = [
        Req::get(&ok).from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        Req::get("http://www.blocked.example/x"),
        Req::get(&format!("http://127.0.0.3:{}/x", origin.port())),
        Req::get("http://127.0.0.1:9/x"),
        Req::new("DELETE", &ok),
    ];
    let mut want = Vec::new();
    for req in denied {
        want.push((req.method.clone(), req.target.clone()));
        let r = req.send(&proxy).await;
        assert_error(&r, 403, "ERR_ACCESS_DENIED");
    }
    let r = Req::get(&ok).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (200, "fine"));
    assert_eq!(origin.count("/ok"), 1);
    assert_eq!(origin.count("/x"), 0);

    let log = proxy.log(6).await;
    for (line, (method, url)) in log.iter().zip(&want) {
        assert_eq!(line.result(), "TCP_DENIED/403", "{}", line.raw);
        assert_eq!((&line.method, &line.url), (method, url), "{}", line.raw);
        assert_eq!(line.hierarchy, "HIER_NONE/-", "{}", line.raw);
    }
    assert_eq!(log[0].client, "127.0.0.2");
    assert_eq!(log[5].result(), "TCP_MISS/200");
}

/// Squid's default rules with SSL_ports naming the test's echo port.
fn connect_conf(ssl_port: u16) -> Conf {
    let ssl = format!("acl SSL_ports port 443 {ssl_port}");
    Conf::new().access(&[
        ssl.as_str(),
        "acl Safe_ports port 80 21 443 70 210 1025-65535 280 488 591 777",
        "http_access deny !Safe_ports",
        "http_access deny CONNECT !SSL_ports",
        "http_access allow localhost manager",
        "http_access deny manager",
        "http_access allow localhost",
        "http_access deny all",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_port_outside_ssl_ports_is_denied() {
    let echo = echo_server().await;
    let other = echo_server().await;
    let proxy = Cuttle::start(&connect_conf(echo.port()));
    let text = raw(
        proxy.addr(),
        format!("CONNECT {other} HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-squid-error: err_access_denied 0"),
        "{text}"
    );
    let log = proxy.log(1).await;
    assert_results(&log, &["TCP_DENIED/403"]);
    assert_eq!(
        (log[0].method.as_str(), log[0].url.as_str()),
        ("CONNECT", other.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_bytes_both_ways() {
    let echo = echo_server().await;
    let proxy = Cuttle::start(&connect_conf(echo.port()));
    let mut s = support::connect(proxy.addr(), None).await;
    s.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (head, rest) = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(rest.is_empty());
    let payload = pattern(1, 100_000);
    let (mut r, mut w) = s.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(b"ping\n").await.expect("write");
        w.write_all(&sent).await.expect("write");
        w.shutdown().await.expect("shutdown");
    });
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut back))
        .await
        .expect("tunnel closed in time")
        .expect("read");
    writer.await.expect("writer");
    assert_eq!(&back[..5], b"ping\n");
    assert!(back[5..] == payload[..], "echoed {} bytes", back.len());

    let log = proxy.log(1).await;
    assert_results(&log, &["TCP_TUNNEL/200"]);
    assert_eq!(log[0].method, "CONNECT");
    assert_eq!(log[0].url, echo.to_string());
    assert_eq!(log[0].hierarchy, "HIER_DIRECT/127.0.0.1");
    assert!(log[0].bytes >= 100_005, "{}", log[0].raw);
}

/// `access_log` lines with ACLs: Squid takes them in order and a matching
/// `access_log none` stops there, so HEADs and 127.0.0.2 go unlogged while
/// everything else reaches the file named after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_with_acls_pick_what_is_logged() {
    let (origin, proxy) = start(Conf::new().access(&[
        "acl localnet src 127.0.0.0/8",
        "acl heads method HEAD",
        "acl quiet src 127.0.0.2",
        "http_access allow localnet",
        "http_access deny all",
        "access_log none heads",
        "access_log none quiet",
    ]))
    .await;
    origin.route("/l", |_| Reply::ok("x").cc("max-age=600"));
    let url = origin.url("/l");
    Req::get(&url).send(&proxy).await;
    Req::new("HEAD", &url).send(&proxy).await;
    let quiet = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(Req::get(&url).from(quiet).send(&proxy).await.status, 200);
    Req::get(&url).send(&proxy).await;

    let log = proxy.log(2).await;
    assert_results(&log, &["TCP_MISS/200", "TCP_HIT/200"]);
    assert!(log.iter().all(|l| l.method == "GET" && l.client == LOCAL));
}

// ------------------------------------------------------------------ 14. Via loop

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_loops_are_refused_on_a_miss_but_hits_are_served() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/loop", |_| Reply::ok("cached").cc("max-age=600"));
    let looped = format!("1.1 {} (cuttle/0.0.1)", proxy.name);

    let r = Req::get(&origin.url("/never"))
        .header("via", looped.clone())
        .send(&proxy)
        .await;
    assert_error(&r, 403, "ERR_ACCESS_DENIED");
    assert_eq!(origin.count("/never"), 0);

    let url = origin.url("/loop");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url).header("via", looped).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (200, "cached"));
    assert_hit(&r, &proxy);

    let log = proxy.log(3).await;
    assert_eq!(log[0].status, 403, "{}", log[0].raw);
    assert_results(&log[1..], &["TCP_MISS/200", "TCP_HIT/200"]);
}

// ----------------------------------------------------- 15. forwarded headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_carry_xff_and_via_but_no_hop_by_hop_fields() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/hdr", |_| {
        Reply::ok("ok")
            .cc("no-store")
            .header("connection", "x-resp-hop")
            .header("x-resp-hop", "1")
            .header("x-resp-end", "kept")
    });
    let url = origin.url("/hdr");
    let r = Req::get(&url)
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("proxy-connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-forwarded-for", "10.1.2.3")
        .header("via", "1.0 downstream")
        .header("x-end", "kept")
        .send(&proxy)
        .await;
    assert_eq!(r.status, 200);
    assert!(
        !r.has("x-resp-hop"),
        "a response hop-by-hop field was passed on: {r:?}"
    );
    assert_eq!(r.header("x-resp-end"), "kept");

    let seen = origin.last("/hdr");
    for name in ["x-hop", "proxy-connection", "keep-alive", "te"] {
        assert!(!seen.has(name), "{name} reached the origin: {seen:?}");
    }
    assert!(!seen.header("connection").contains("x-hop"), "{seen:?}");
    assert_eq!(seen.header("x-end"), "kept");
    assert_eq!(seen.header("x-forwarded-for"), "10.1.2.3, 127.0.0.1");
    let via = seen.header("via");
    assert!(via.starts_with("1.0 downstream, "), "Via: {via}");
    assert!(via.contains(&proxy.via_header()), "Via: {via}");
    assert_eq!(seen.header("host"), origin.addr.to_string());
    assert_eq!(seen.target, "/hdr", "origin-form upstream");

    Req::get(&url).send(&proxy).await;
    let seen = origin.last("/hdr");
    assert_eq!(seen.header("x-forwarded-for"), "127.0.0.1");
    assert!(
        seen.header("via").starts_with(&proxy.via_header()),
        "{seen:?}"
    );
}

// ---------------------------------------------------------------------- 16. errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_is_err_connect_fail() {
    let proxy = Cuttle::start(&Conf::new());
    let url = format!("http://127.0.0.1:{}/x", free_port());
    let r = Req::get(&url).send(&proxy).await;
    assert_error(&r, 503, "ERR_CONNECT_FAIL");
    let log = proxy.log(1).await;
    assert_results(&log, &["TCP_MISS/503"]);
    assert_eq!(log[0].url, url);
    assert_eq!(log[0].hierarchy, "HIER_NONE/-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_host_is_err_dns_fail() {
    let proxy = Cuttle::start(&Conf::new());
    let r = Req::get("http://nonexistent.invalid/x").send(&proxy).await;
    assert_error(&r, 503, "ERR_DNS_FAIL");
    let log = proxy.log(1).await;
    assert_results(&log, &["TCP_MISS/503"]);
    assert_eq!(log[0].url, "http://nonexistent.invalid/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_origin_is_err_read_timeout() {
    let (origin, proxy) = start(Conf::new().extra("read_timeout 1 second")).await;
    origin.route("/hang", |_| {
        Reply::ok("too late").delay(Duration::from_secs(30))
    });
    let started = Instant::now();
    let r = Req::get(&origin.url("/hang")).send(&proxy).await;
    assert_error(&r, 504, "ERR_READ_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_results(&proxy.log(1).await, &["TCP_MISS/504"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_form_on_a_forward_port_is_err_invalid_url() {
    let proxy = Cuttle::start(&Conf::new());
    let text = raw(
        proxy.addr(),
        b"GET /foo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-squid-error: err_invalid_url 0"),
        "{text}"
    );
    let log = proxy.log(1).await;
    assert_eq!(log[0].status, 400, "{}", log[0].raw);
    assert_eq!(log[0].method, "GET");
}

// ------------------------------------------------------------------ 17. accelerator

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accelerator_mode_serves_and_caches_origin_form_requests() {
    let origin = Origin::start().await;
    origin.route("/acc", |s| {
        Reply::ok(format!("accel v{}", s.n)).cc("max-age=600")
    });
    let line = format!(
        "http_port 127.0.0.1:{{port}} accel defaultsite=127.0.0.1:{} vhost allow-direct",
        origin.port()
    );
    let proxy = Cuttle::start(&Conf::new().port_line(&line));
    assert!(
        proxy.stdout().iter().any(|l| l.contains("(accelerator)")),
        "{:?}",
        proxy.stdout()
    );
    let host = origin.addr.to_string();

    let r = Req::get("/acc")
        .header("host", host.clone())
        .send(&proxy)
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "accel v1"));
    assert_miss(&r, &proxy);
    assert_eq!(origin.last("/acc").header("host"), host);
    let r = Req::get("/acc")
        .header("host", host.clone())
        .send(&proxy)
        .await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "accel v1");
    // No Host: defaultsite names the same object.
    let r = Req::get("/acc").no_host().send(&proxy).await;
    assert_hit(&r, &proxy);
    assert_eq!(r.text(), "accel v1");
    assert_eq!(origin.count("/acc"), 1);

    let log = proxy.log(3).await;
    assert_results(&log, &["TCP_MISS/200", "TCP_HIT/200", "TCP_HIT/200"]);
    assert_eq!(log[0].url, origin.url("/acc"));
    assert_eq!(log[2].url, origin.url("/acc"));
    assert_eq!(log[0].hierarchy, "HIER_DIRECT/127.0.0.1");
}

// ---------------------------------------------------------------------- 18. signals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_response_in_flight_finish() {
    let (origin, mut proxy) = start(Conf::new().extra("shutdown_lifetime 10 seconds")).await;
    let body = pattern(2, 64 * 1024);
    let b = body.clone();
    origin.route("/slow", move |_| {
        Reply::ok(b.clone())
            .cc("max-age=600")
            .delay(Duration::from_millis(400))
            .pieces(4, Duration::from_millis(100))
    });
    let url = origin.url("/slow");
    let addr = proxy.addr();
    let request = tokio::spawn(async move { Req::get(&url).send_to(addr).await });
    origin.wait_count("/slow", 1).await;
    proxy.signal("TERM");

    let r = request.await.expect("client task");
    assert_eq!(r.status, 200);
    assert!(r.body[..] == body[..], "got {} bytes", r.body.len());
    let status = proxy.wait_exit().await;
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        proxy.stderr().join("\n")
    );
    let out = proxy.stdout();
    assert!(out.iter().any(|l| l == "cuttle: shutting down"), "{out:?}");
    assert_eq!(
        out.last().map(String::as_str),
        Some("cuttle: stopped"),
        "{out:?}"
    );
    assert_results(&proxy.log(1).await, &["TCP_MISS/200"]);
}

fn reload_conf(extra_deny: bool) -> Conf {
    let mut access = vec!["acl localnet src 127.0.0.0/8"];
    if extra_deny {
        access.extend([
            "acl blocked urlpath_regex ^/blocked",
            "http_access deny blocked",
        ]);
    }
    access.extend(["http_access allow localnet", "http_access deny all"]);
    Conf::new().access(&access)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_config_without_dropping_connections() {
    let (origin, proxy) = start(reload_conf(false)).await;
    origin.route("/a", |_| Reply::ok("a").cc("max-age=600"));
    origin.route("/blocked", |_| Reply::ok("b").cc("max-age=600"));
    let mut conn = Conn::open(proxy.addr()).await;
    assert_eq!(conn.send(Req::get(&origin.url("/a"))).await.status, 200);
    assert_eq!(
        conn.send(Req::get(&origin.url("/blocked"))).await.status,
        200
    );

    proxy.rewrite_config(&reload_conf(true));
    proxy.signal("HUP");
    proxy
        .wait_output("cuttle: configuration reloaded", false)
        .await;

    assert!(!conn.is_closed(), "the keep-alive connection was dropped");
    let r = conn.send(Req::get(&origin.url("/blocked"))).await;
    assert_error(&r, 403, "ERR_ACCESS_DENIED");
    let r = conn.send(Req::get(&origin.url("/a"))).await;
    assert_eq!(r.status, 200);
    assert_hit(&r, &proxy);
    assert_results(
        &proxy.log(4).await,
        &[
            "TCP_MISS/200",
            "TCP_MISS/200",
            "TCP_DENIED/403",
            "TCP_HIT/200",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_old_one() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/a", |_| Reply::ok("a").cc("max-age=600"));
    assert_eq!(Req::get(&origin.url("/a")).send(&proxy).await.status, 200);

    // Denies everything, but does not load: the regex is invalid.
    let broken = Conf::new()
        .access(&["http_access deny all"])
        .extra("refresh_pattern ( 0 20% 10");
    proxy.rewrite_config(&broken);
    proxy.signal("HUP");
    proxy.wait_output("keeping the old one", true).await;
    let err = proxy.stderr().join("\n");
    assert!(
        err.contains("refresh_pattern"),
        "the error names the bad line:\n{err}"
    );
    assert!(
        err.contains(&proxy.conf_path.display().to_string()),
        "{err}"
    );

    let r = Req::get(&origin.url("/a")).send(&proxy).await;
    assert_eq!(r.status, 200);
    assert_hit(&r, &proxy);
    assert!(!proxy
        .stdout()
        .iter()
        .any(|l| l.contains("configuration reloaded")));
    assert_results(&proxy.log(2).await, &["TCP_MISS/200", "TCP_HIT/200"]);
}

// ------------------------------------------------------------ 19. embedded default

const NETNS_ENV: &str = "CUTTLE_ITEST_IN_NETNS";

/// `cuttle` with no arguments: localhost:3128, cache under
/// $XDG_CACHE_HOME/cuttle. Port 3128 is taken from a private network
/// namespace (`unshare -rn`) where the test re-runs itself; without user
/// namespaces it runs here if 3128 is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_config() {
    if std::env::var_os(NETNS_ENV).is_some() {
        return embedded_default_config_here().await;
    }
    let unshare_works = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link set lo up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if unshare_works {
        let me = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new("unshare")
            .args(["-rn", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
            .arg(&me)
            .args([
                "embedded_default_config",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NETNS_ENV, "1")
            .output()
            .expect("run the test in a network namespace");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "in the namespace:\n{text}");
        assert!(
            text.contains("1 passed"),
            "the inner test did not run:\n{text}"
        );
        return;
    }
    assert!(
        std::net::TcpListener::bind("127.0.0.1:3128").is_ok()
            && std::net::UdpSocket::bind("127.0.0.1:3130").is_ok()
            && std::net::UdpSocket::bind("127.0.0.1:4827").is_ok(),
        "cannot test the embedded default: `unshare -rn` is not available and 127.0.0.1:3128 \
         (TCP), 3130 or 4827 (UDP) is in use"
    );
    embedded_default_config_here().await;
}

async fn embedded_default_config_here() {
    let origin = Origin::start().await;
    origin.route("/dflt", |_| Reply::ok("default config").cc("max-age=600"));
    let dir = TempDir::new("default");
    let xdg = dir.path().join("xdg");
    let cache = xdg.join("cuttle");
    let proxy = Cuttle::start_raw(&[], &[("XDG_CACHE_HOME", &xdg)], 3128, dir, "default");
    let out = proxy.stdout();
    assert!(
        out.iter()
            .any(|l| l == "cuttle: listening on 127.0.0.1:3128 (forward proxy)"),
        "{out:?}"
    );
    assert!(
        out.iter().any(|l| l.contains(&cache.display().to_string())),
        "{out:?}"
    );
    assert!(cache.is_dir(), "no cache_dir under {}", xdg.display());

    let url = origin.url("/dflt");
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!((r.status, r.text().as_str()), (200, "default config"));
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.x_cache(), "HIT");
    let log = read_log(&cache.join("access.log"), 2).await;
    assert_results(&log, &["TCP_MISS/200", "TCP_HIT/200"]);
    assert_eq!(log[0].url, url);
    // ICP and HTCP on their standard ports, for localhost.
    let out = proxy.stdout();
    for line in [
        "cuttle: ICP on 127.0.0.1:3130",
        "cuttle: HTCP on 127.0.0.1:4827",
    ] {
        assert!(out.iter().any(|l| l == line), "no {line:?} in {out:?}");
    }
    let asker = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    asker
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    asker
        .send_to(&support::query(7, &url), "127.0.0.1:3130")
        .expect("send ICP");
    let mut reply = [0u8; 512];
    let n = asker.recv(&mut reply).expect("an ICP reply");
    assert_eq!(&reply[..n], support::expected_reply(2, 7, &url).as_slice());
    // Our own default must not draw warnings from our own reader.
    let err = proxy.stderr();
    assert!(
        !err.iter()
            .any(|l| l.contains("WARN") || l.contains("warning")),
        "{err:?}"
    );
}
