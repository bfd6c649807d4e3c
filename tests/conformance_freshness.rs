//! Issue 16, freshness and storing (src/caching/freshness.rs, storable.rs): what the
//! cache-tests suite showed, checked end to end through the real binary against a
//! scripted origin. Parsing details have unit tests in those modules.

mod support;

use support::{http_date, Conf, Cuttle, Origin, Reply, Req, Resp};

async fn start(conf: Conf) -> (Origin, Cuttle) {
    let origin = Origin::start().await;
    let proxy = Cuttle::start(&conf);
    (origin, proxy)
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

/// RFC 9111 §3.1 and §7.3: Set-Cookie does not keep a shared cache from
/// storing a response, and the stored fields (Set-Cookie and Set-Cookie2
/// among them) are served on hits (cache-tests headers-store-Set-Cookie,
/// -Set-Cookie2, other-set-cookie).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_responses_are_stored_and_served_whole() {
    let (origin, proxy) = start(Conf::new()).await;
    origin.route("/cookie", |s| {
        Reply::ok(format!("v{}", s.n))
            .cc("max-age=600")
            .header("set-cookie", "a=b")
            .header("set-cookie2", "a=c")
    });
    let url = origin.url("/cookie");
    let first = Req::get(&url).send(&proxy).await;
    assert_miss(&first, &proxy);
    assert_eq!(first.header("set-cookie"), "a=b");
    let hit = Req::get(&url).send(&proxy).await;
    assert_hit(&hit, &proxy);
    assert_eq!(hit.text(), "v1");
    assert_eq!(hit.header("set-cookie"), "a=b");
    assert_eq!(hit.header("set-cookie2"), "a=c");
    assert_eq!(origin.count("/cookie"), 1);
}

/// The origin keeps a cookie to one client with `private="Set-Cookie"` or
/// `no-cache="Set-Cookie"` (the rest is stored and served without it), or
/// the whole response with `private`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_keeps_its_cookie_out_of_the_cache() {
    let (origin, proxy) = start(Conf::new()).await;
    for (path, cc) in [
        ("/private-field", "max-age=600, private=\"Set-Cookie\""),
        ("/no-cache-field", "max-age=600, no-cache=\"set-cookie\""),
        ("/private", "private, max-age=600"),
    ] {
        origin.route(path, move |s| {
            Reply::ok(format!("v{}", s.n))
                .cc(cc)
                .header("set-cookie", format!("session={}", s.n))
        });
    }
    for path in ["/private-field", "/no-cache-field"] {
        let url = origin.url(path);
        let first = Req::get(&url).send(&proxy).await;
        assert_eq!(first.header("set-cookie"), "session=1", "{path}");
        let hit = Req::get(&url).send(&proxy).await;
        assert_hit(&hit, &proxy);
        assert_eq!(hit.text(), "v1", "{path}");
        assert!(
            !hit.has("set-cookie"),
            "{path}: a cookie was replayed: {hit:?}"
        );
        assert_eq!(origin.count(path), 1, "{path}");
    }
    let url = origin.url("/private");
    for n in 1..=2 {
        let r = Req::get(&url).send(&proxy).await;
        assert_miss(&r, &proxy);
        assert_eq!(r.header("set-cookie"), format!("session={n}"));
    }
    assert_eq!(origin.count("/private"), 2);
}

/// RFC 9110 §15.1: 204, 404, 405, 414 and 501 are heuristically cacheable;
/// with a Last-Modified, refresh_pattern's last-modified factor gives them
/// a lifetime as it does a 200 (cache-tests heuristic-*-cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heuristically_cacheable_statuses_get_the_refresh_pattern_heuristic() {
    let (origin, proxy) = start(Conf::new()).await;
    for code in [204u16, 404, 405, 414, 501] {
        origin.route(&format!("/h{code}"), move |s| {
            let r = Reply::status(code).header("last-modified", http_date(-86_400));
            if code == 204 {
                r
            } else {
                r.body(format!("v{}", s.n))
            }
        });
    }
    for code in [204u16, 404, 405, 414, 501] {
        let path = format!("/h{code}");
        let url = origin.url(&path);
        let first = Req::get(&url).send(&proxy).await;
        assert_eq!(first.status, code);
        let second = Req::get(&url).send(&proxy).await;
        assert_eq!(second.status, code);
        assert_hit(&second, &proxy);
        if code != 204 {
            assert_eq!(second.text(), "v1", "{code}");
        }
        assert_eq!(origin.count(&path), 1, "{code}");
    }
}

/// What stays Squid's: a 404 without Last-Modified has no heuristic lifetime
/// (only `negative_ttl`, off by default), and refresh_pattern still rules the
/// heuristic (`0 0% 0` gives none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_statuses_without_a_heuristic_are_not_cached() {
    let (origin, proxy) =
        start(Conf::new().extra("refresh_pattern ^http://[^/]*/zero/ 0 0% 0")).await;
    origin.route("/plain404", |s| {
        Reply::status(404).body(format!("v{}", s.n))
    });
    origin.route("/zero/lm404", |s| {
        Reply::status(404)
            .header("last-modified", http_date(-86_400))
            .body(format!("v{}", s.n))
    });
    for path in ["/plain404", "/zero/lm404"] {
        let url = origin.url(path);
        for n in 1..=2 {
            let r = Req::get(&url).send(&proxy).await;
            assert_eq!((r.status, r.text()), (404, format!("v{n}")), "{path}");
            assert_miss(&r, &proxy);
        }
        assert_eq!(origin.count(path), 2, "{path}");
    }
}

/// RFC 9110 §5.6.7: an Expires in asctime form (here with a weekday that
/// does not match the date) or with names in the wrong case is a date, not
/// "already expired" (cache-tests freshness-expires-ansi-c, -wrong-case-*).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_expires_forms_give_freshness() {
    let (origin, proxy) = start(Conf::new()).await;
    let forms = [
        ("/asctime", "Thu Aug  8 02:01:18 2050"),
        ("/case", "THU, 18 AUG 2050 02:01:18 gmt"),
    ];
    for (path, expires) in forms {
        origin.route(path, move |s| {
            Reply::ok(format!("v{}", s.n))
                .header("date", http_date(0))
                .header("expires", expires)
        });
    }
    for (path, _) in forms {
        let url = origin.url(path);
        Req::get(&url).send(&proxy).await;
        let hit = Req::get(&url).send(&proxy).await;
        assert_hit(&hit, &proxy);
        assert_eq!(hit.text(), "v1", "{path}");
        assert_eq!(origin.count(path), 1, "{path}");
    }
}
