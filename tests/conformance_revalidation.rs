//! Conditional behaviour the cache-tests suite checks (issue 16): a
//! client's `no-cache` revalidates what can be revalidated, HEAD on a stale
//! entry goes upstream as HEAD, Authorization reaches an originserver
//! parent.

mod support;

use support::{http_date, Conf, Cuttle, Origin, Reply, Req};

/// Answers 304 when the request's validator matches `etag`, else a new
/// 200 `vN` with that ETag, fresh for an hour.
fn conditional(etag: &'static str) -> impl Fn(&support::Seen) -> Reply + Send + Sync {
    move |s| {
        if s.header("if-none-match") == etag {
            Reply::status(304).header("etag", etag)
        } else {
            Reply::ok(format!("v{}", s.n))
                .header("etag", etag)
                .cc("max-age=3600")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_no_cache_revalidates_a_stored_etag() {
    let origin = Origin::start().await;
    origin.route("/e", conditional("\"e1\""));
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/e");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v1");
    for reload in [("cache-control", "no-cache"), ("pragma", "no-cache")] {
        let r = Req::get(&url).header(reload.0, reload.1).send(&proxy).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "v1", "{reload:?}: the stored body, revalidated");
        assert_eq!(
            origin.last("/e").header("if-none-match"),
            "\"e1\"",
            "{reload:?}: the reload asks conditionally"
        );
    }
    assert_eq!(origin.count("/e"), 3);
    let results: Vec<String> = proxy.log(3).await.iter().map(|l| l.result()).collect();
    assert_eq!(
        results,
        [
            "TCP_MISS/200",
            "TCP_REFRESH_UNMODIFIED/200",
            "TCP_REFRESH_UNMODIFIED/200"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_no_cache_revalidates_a_stored_last_modified() {
    let origin = Origin::start().await;
    let lm = http_date(-10_000);
    let stored_lm = lm.clone();
    origin.route("/lm", move |s| {
        if s.header("if-modified-since") == stored_lm {
            Reply::status(304)
        } else {
            Reply::ok(format!("v{}", s.n))
                .header("last-modified", stored_lm.clone())
                .cc("max-age=3600")
        }
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/lm");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url)
        .header("cache-control", "no-cache")
        .send(&proxy)
        .await;
    assert_eq!(r.text(), "v1");
    assert_eq!(origin.last("/lm").header("if-modified-since"), lm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_no_cache_without_a_stored_validator_refetches_unconditionally() {
    let origin = Origin::start().await;
    origin.route("/n", |s| Reply::ok(format!("v{}", s.n)).cc("max-age=3600"));
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/n");
    Req::get(&url).send(&proxy).await;
    let r = Req::get(&url)
        .header("cache-control", "no-cache")
        .send(&proxy)
        .await;
    assert_eq!(r.text(), "v2");
    let seen = origin.last("/n");
    assert!(
        !seen.has("if-modified-since") && !seen.has("if-none-match"),
        "no validator of the origin's to send: {:?}",
        seen.headers
    );
    let results: Vec<String> = proxy.log(2).await.iter().map(|l| l.result()).collect();
    assert_eq!(results, ["TCP_MISS/200", "TCP_CLIENT_REFRESH_MISS/200"]);
}

/// cuttle as an accelerator in front of `origin`, an originserver parent
/// with `peer_options` on its cache_peer line.
fn accelerator(origin: &Origin, peer_options: &str) -> Cuttle {
    let conf = Conf::new()
        .port_line("http_port 127.0.0.1:{port} accel defaultsite=localhost no-vhost")
        .extra(&format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query no-digest originserver {peer_options} name=origin",
            origin.port()
        ));
    Cuttle::start(&conf)
}

fn accel_get(path: &str) -> Req {
    Req::new("GET", path).header("host", "localhost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_originserver_parent_gets_the_clients_authorization() {
    let origin = Origin::start().await;
    origin.route("/private", |s| {
        Reply::ok(format!("v{}", s.n)).cc("max-age=3600")
    });
    origin.route("/public", |s| {
        Reply::ok(format!("v{}", s.n)).cc("max-age=3600, public")
    });
    let proxy = accelerator(&origin, "");
    for _ in 0..2 {
        let r = accel_get("/private")
            .header("authorization", "FOO")
            .send(&proxy)
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(origin.last("/private").header("authorization"), "FOO");
    }
    // RFC 9111 3.5: not reused without public, s-maxage or must-revalidate...
    assert_eq!(origin.count("/private"), 2);
    // ...and reused with public.
    for _ in 0..2 {
        let r = accel_get("/public")
            .header("authorization", "FOO")
            .send(&proxy)
            .await;
        assert_eq!(r.text(), "v1");
    }
    assert_eq!(origin.last("/public").header("authorization"), "FOO");
    assert_eq!(origin.count("/public"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_login_keeps_squids_meaning_for_an_originserver_parent() {
    let origin = Origin::start().await;
    origin.route("/a", |_| Reply::ok("a"));
    // login=user:password: the peer's own credentials replace the client's.
    let proxy = accelerator(&origin, "login=u:p");
    accel_get("/a")
        .header("authorization", "FOO")
        .send(&proxy)
        .await;
    assert_eq!(origin.last("/a").header("authorization"), "Basic dTpw");
}

fn head(url: &str) -> Req {
    Req::new("HEAD", url)
}

/// `/h`: first a stale 200 `body` (Template-A: 1, ETag "h1"), then what
/// `later` answers.
async fn stale_then(later: fn(&support::Seen) -> Reply) -> (Origin, Cuttle, String) {
    let origin = Origin::start().await;
    origin.route("/h", move |s| match s.n {
        1 => Reply::ok("body")
            .header("etag", "\"h1\"")
            .header("template-a", "1")
            .cc("max-age=1")
            .header("date", http_date(-30)),
        _ => later(s),
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/h");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "body");
    (origin, proxy, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_for_a_stale_entry_goes_upstream_as_head_and_updates_it() {
    let (origin, proxy, url) = stale_then(|_| {
        // Content-Length 4, as the stored body.
        Reply::ok("body")
            .header("etag", "\"h1\"")
            .header("template-b", "2")
            .cc("max-age=3600")
    })
    .await;
    let r = head(&url).send(&proxy).await;
    assert_eq!(r.status, 200);
    assert_eq!(origin.last("/h").method, "HEAD", "written through as HEAD");
    assert_eq!(r.header("template-a"), "1", "stored fields are kept");
    assert_eq!(r.header("template-b"), "2", "the HEAD's fields are applied");
    // The HEAD's freshness now applies to the stored GET response.
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.text(), "body");
    assert_eq!(r.header("template-b"), "2");
    assert_eq!(origin.count("/h"), 2, "the GET is a hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_200_for_another_entity_releases_the_stored_entry() {
    let (origin, proxy, url) = stale_then(|s| {
        Reply::ok(format!("v{}", s.n))
            .header("etag", "\"h2\"")
            .cc("max-age=3600")
    })
    .await;
    let r = head(&url).send(&proxy).await;
    assert_eq!((r.status, r.header("etag").as_str()), (200, "\"h2\""));
    assert_eq!(origin.last("/h").method, "HEAD");
    // Neither the old body nor the new head alone may answer a GET.
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.text(), "v3");
    assert_eq!(origin.count("/h"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_updates_the_stored_content_encoding_and_content_range() {
    let origin = Origin::start().await;
    origin.route("/u", |s| match s.n {
        1 => Reply::ok("body")
            .header("etag", "\"u1\"")
            .header("content-encoding", "x-old")
            .header("content-range", "x-old-range")
            .cc("max-age=1")
            .header("date", http_date(-30)),
        _ => Reply::status(304)
            .header("etag", "\"u1\"")
            .header("content-encoding", "x-new")
            .header("content-range", "x-new-range")
            .cc("max-age=3600"),
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/u");
    Req::get(&url).send(&proxy).await;
    // Revalidated, then a hit: both carry the 304's values (RFC 9111 3.2).
    for _ in 0..2 {
        let r = Req::get(&url).send(&proxy).await;
        assert_eq!(r.text(), "body");
        assert_eq!(r.header("content-encoding"), "x-new");
        assert_eq!(r.header("content-range"), "x-new-range");
    }
    assert_eq!(origin.count("/u"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_if_none_match_identical_to_a_malformed_stored_etag_gets_304() {
    let origin = Origin::start().await;
    for (path, etag) in [
        ("/unquoted", "abcdef"),
        ("/lower", "w/\"abcdef\""),
        ("/backslash", "W\\\"abcdef\""),
        ("/noslash", "W\"abcdef\""),
    ] {
        origin.route(path, move |_| {
            Reply::ok("x").header("etag", etag).cc("max-age=3600")
        });
    }
    let proxy = Cuttle::start(&Conf::new());
    for (path, etag) in [
        ("/unquoted", "abcdef"),
        ("/lower", "w/\"abcdef\""),
        ("/backslash", "W\\\"abcdef\""),
        ("/noslash", "W\"abcdef\""),
    ] {
        let url = origin.url(path);
        Req::get(&url).send(&proxy).await;
        let r = Req::get(&url)
            .header("if-none-match", etag)
            .send(&proxy)
            .await;
        assert_eq!(r.status, 304, "{path}: {etag}");
        // Not the same characters: no match.
        let r = Req::get(&url)
            .header("if-none-match", "\"abcdef\"")
            .send(&proxy)
            .await;
        assert_eq!(r.status, 200, "{path}: a quoted \"abcdef\"");
        assert_eq!(origin.count(path), 1);
    }
}
