//! Adaptive polling (`refresh_pattern ... adaptive[=N]`, issue 22) with a
//! real cuttle and origin: an object whose lifetime is heuristic is polled
//! at an interval of its own, doubled by each 304 and halved by each new
//! version (seen in `mgr:objects` as `EX − LV`), so it costs the origin
//! fewer validations than Squid's fixed last-modified factor; and a popular
//! object is revalidated in the background before it expires, so its
//! clients keep getting hits. Intervals are seconds (min 0, floor 1 s).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{http_date, mgr_page, Conf, Cuttle, LogLine, Origin, Reply, Seen};

/// The pause between a client's requests.
const PACE: Duration = Duration::from_millis(200);

/// A version `v0` last modified `lm_age` seconds before the origin started,
/// answered 304 to its own ETag; once `changing` is set, every request gets
/// a new version (`vN`, modified 2 s ago).
fn versioned(lm_age: i64, changing: Arc<AtomicBool>) -> impl Fn(&Seen) -> Reply + Send + Sync {
    let last_modified = http_date(-lm_age);
    move |s: &Seen| {
        if changing.load(Ordering::SeqCst) {
            return Reply::ok(format!("v{}", s.n))
                .header("etag", format!("\"v{}\"", s.n))
                .header("last-modified", http_date(-2))
                .header("date", http_date(0));
        }
        if s.header("if-none-match") == "\"v0\"" {
            return Reply::status(304)
                .header("etag", "\"v0\"")
                .header("date", http_date(0));
        }
        Reply::ok("v0")
            .header("etag", "\"v0\"")
            .header("last-modified", last_modified.clone())
            .header("date", http_date(0))
    }
}

/// The interval `url` is stored with: `EX − LV` of its `mgr:objects` entry.
async fn stored_interval(proxy: &Cuttle, url: &str) -> Option<i64> {
    let (status, page) = mgr_page(proxy, "objects").await;
    assert_eq!(status, 200, "{page}");
    let entry = page
        .split("KEY ")
        .find(|e| e.contains(&format!("GET {url}\n")))?;
    let time = |field: &str| -> Option<i64> {
        let at = entry.find(field)? + field.len();
        entry[at..].split_whitespace().next()?.parse().ok()
    };
    Some(time("EX:")? - time("LV:")?)
}

/// The value of the line of `page` that starts with `name`.
fn counter(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|n| n.trim().parse().ok())
}

/// Requests `url` until its stored interval is `until`, noting each new
/// interval in `seen` (bounded: fails after 20 s).
async fn poll_until(proxy: &Cuttle, url: &str, until: i64, seen: &mut Vec<i64>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = support::Req::get(url).send(proxy).await;
        assert_eq!(resp.status, 200);
        if let Some(interval) = stored_interval(proxy, url).await {
            if seen.last() != Some(&interval) {
                seen.push(interval);
            }
            if interval == until {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the interval of {url} never reached {until}: {seen:?}"
        );
        tokio::time::sleep(PACE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interval_doubles_on_304s_and_halves_on_new_versions() {
    let origin = Origin::start().await;
    let changing = Arc::new(AtomicBool::new(false));
    // 1% of 10 s is 0: the first interval is the 1 s floor.
    origin.route("/p", versioned(10, Arc::clone(&changing)));
    let proxy = Cuttle::start(&Conf::new().extra("refresh_pattern /p 0 1% 1 adaptive=0"));
    let url = origin.url("/p");
    let mut seen = Vec::new();
    poll_until(&proxy, &url, 4, &mut seen).await;
    changing.store(true, Ordering::SeqCst);
    poll_until(&proxy, &url, 1, &mut seen).await;
    assert_eq!(seen, [1, 2, 4, 2, 1], "intervals stored, in order");
    let (_, counters) = mgr_page(&proxy, "counters").await;
    assert_eq!(counter(&counters, "refresh.adaptive_doubled = "), Some(2));
    // A new version is stored while it streams: a request that comes
    // before the store has it revalidates the old entry once more.
    let halved = counter(&counters, "refresh.adaptive_halved = ");
    assert!(halved >= Some(2), "{counters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_polling_validates_less_than_the_fixed_factor() {
    let origin = Origin::start().await;
    let same = Arc::new(AtomicBool::new(false));
    origin.route("/fixed", versioned(10, Arc::clone(&same)));
    origin.route("/adaptive", versioned(10, same));
    // 10% of a Last-Modified age of 10 s and more: 1 s, then 2 s.
    let proxy = Cuttle::start(
        &Conf::new()
            .extra("refresh_pattern /fixed 0 10% 1")
            .extra("refresh_pattern /adaptive 0 10% 1 adaptive=0"),
    );
    let (fixed, adaptive) = (origin.url("/fixed"), origin.url("/adaptive"));
    for _ in 0..60 {
        for url in [&fixed, &adaptive] {
            assert_eq!(support::Req::get(url).send(&proxy).await.text(), "v0");
        }
        tokio::time::sleep(PACE).await;
    }
    // Minus the first fetch: the validations.
    let fixed_validations = origin.count("/fixed") - 1;
    let adaptive_validations = origin.count("/adaptive") - 1;
    println!(
        "validations over 60 requests: fixed {fixed_validations}, adaptive {adaptive_validations}"
    );
    assert!(
        adaptive_validations * 2 < fixed_validations,
        "adaptive {adaptive_validations} vs fixed {fixed_validations} validations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popular_object_is_revalidated_before_it_expires() {
    let origin = Origin::start().await;
    let same = Arc::new(AtomicBool::new(false));
    origin.route("/hot", versioned(100, Arc::clone(&same)));
    origin.route("/cold", versioned(100, same));
    // 10% of 100 s: an interval of 10 s; its last tenth starts at age 9.
    // `/cold` is as popular, but its pattern never revalidates ahead.
    let proxy = Cuttle::start(
        &Conf::new()
            .extra("refresh_pattern /hot 0 10% 1 adaptive=3")
            .extra("refresh_pattern /cold 0 10% 1 adaptive=0"),
    );
    let (hot, cold) = (origin.url("/hot"), origin.url("/cold"));
    let rounds = 65;
    for _ in 0..rounds {
        for url in [&hot, &cold] {
            assert_eq!(support::Req::get(url).send(&proxy).await.text(), "v0");
        }
        tokio::time::sleep(PACE).await;
    }
    let lines = proxy.log(2 * rounds).await;
    let codes = |url: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l: &&LogLine| l.url == url)
            .map(|l| l.code.clone())
            .collect()
    };
    let (hot_codes, cold_codes) = (codes(&hot), codes(&cold));
    assert_eq!(hot_codes.len(), rounds);
    assert_eq!(hot_codes[0], "TCP_MISS");
    assert!(
        hot_codes[1..]
            .iter()
            .all(|c| c == "TCP_HIT" || c == "TCP_MEM_HIT"),
        "{hot_codes:?}"
    );
    // Revalidated in the background all the same, and counted.
    assert!(origin.count("/hot") >= 2, "never revalidated");
    let (_, counters) = mgr_page(&proxy, "counters").await;
    let ahead = counter(&counters, "refresh.adaptive_ahead = ");
    assert!(ahead >= Some(1), "{counters}");
    let metrics = support::raw(
        proxy.addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        counter(&metrics, "cuttle_adaptive_revalidations_ahead_total "),
        ahead,
        "{metrics}"
    );
    // Without revalidation ahead, a client waits for it.
    assert!(
        cold_codes.iter().any(|c| c == "TCP_REFRESH_UNMODIFIED"),
        "{cold_codes:?}"
    );
}
