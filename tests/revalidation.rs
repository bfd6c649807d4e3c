//! A revalidation's reply does the same to the stored entry whether a
//! client waits for it or it runs in the background
//! (stale-while-revalidate): a 304 freshens it, a 5xx leaves it, any other
//! reply replaces it, and the old entry goes when the new reply may not be
//! stored (RFC 9111 §4.3.3, Squid's TCP_REFRESH_MODIFIED).

mod support;

use std::time::{Duration, Instant};

use support::{http_date, Conf, Cuttle, Origin, Reply, Req};

/// An origin whose `/r` is first a stale `v1` (within
/// stale-while-revalidate), then `vN` that may not be stored.
async fn origin() -> Origin {
    let origin = Origin::start().await;
    origin.route("/r", |s| match s.n {
        1 => Reply::ok("v1")
            .header("etag", "\"r1\"")
            .cc("max-age=1, stale-while-revalidate=600")
            .header("date", http_date(-30)),
        n => Reply::ok(format!("v{n}")).cc("no-store"),
    });
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_refresh_that_may_not_be_stored_releases_the_old_entry() {
    let origin = origin().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/r");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v1");
    // Stale: served, and refreshed in the background.
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v1");
    origin.wait_finished("/r", 2).await;
    // The refresh brought a new object that may not be stored: the stale
    // one must not be served again (as a foreground revalidation does).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = Req::get(&url).send(&proxy).await.text();
        if text != "v1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stale v1 is still served after a refresh replaced it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_revalidation_that_may_not_be_stored_releases_the_old_entry() {
    let origin = Origin::start().await;
    origin.route("/f", |s| match s.n {
        1 => Reply::ok("v1")
            .header("etag", "\"f1\"")
            .cc("max-age=1")
            .header("date", http_date(-30)),
        n => Reply::ok(format!("v{n}")).cc("no-store"),
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/f");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v1");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v2");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "v3");
    assert_eq!(origin.count("/f"), 3);
}

/// A 304 whose ETag is not the stored one cannot freshen it (RFC 9111
/// §4.3.4), and a client that sent no validator must never receive a 304:
/// cuttle asks again without validators and passes that response on
/// (cache-tests `304-etag-update-response-ETag` got a 304 with no body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_for_another_etag_gets_an_unconditional_client_the_object() {
    let origin = Origin::start().await;
    origin.route("/e", |s| {
        if s.n == 1 {
            return Reply::ok("first")
                .header("etag", "\"e1\"")
                .cc("max-age=1")
                .header("date", http_date(-30));
        }
        if s.has("if-none-match") {
            return Reply::status(304)
                .header("etag", "\"e2\"")
                .cc("max-age=600");
        }
        Reply::ok("second")
            .header("etag", "\"e2\"")
            .cc("max-age=600")
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/e");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), "first");
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.status, 200, "an unconditional GET got {}", r.status);
    assert_eq!(r.text(), "second");
    assert_eq!(r.header("etag"), "\"e2\"");
    // The new object is stored: the next request is a hit.
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.text(), "second");
    assert_eq!(origin.count("/e"), 3, "the third request was not a hit");
}
