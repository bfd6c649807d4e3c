//! cuttle reading its peers' Cache Digests (squid-spec 5.4), with the real
//! binary: a fake sibling (an in-process HTTP server) configured
//! `no-query` serves a digest of some URLs; once cuttle has fetched it,
//! a URL in the digest goes to the sibling as CD_SIBLING_HIT (with
//! only-if-cached, and no ICP), others go DIRECT, a false hit (the sibling
//! answers 504) falls back to DIRECT, and a malformed digest is refused
//! with a log line naming the peer and the field.

mod support;

use std::time::{Duration, Instant};

use support::{Conf, Cuttle, Origin, Reply, Req, WAIT};

const DIGEST_PATH: &str = "/squid-internal-periodic/store_digest";

fn serve_digest(peer: &Origin, body: Vec<u8>) {
    peer.route(DIGEST_PATH, move |_| {
        Reply::ok(body.clone())
            .header("Content-Type", "application/cache-digest")
            .header("Expires", support::http_date(3600))
    });
}

/// cuttle with `peer` as a no-query sibling (no ICP at all).
fn cuttle_with_sibling(peer: &Origin) -> Cuttle {
    Cuttle::start(&Conf::new().extra(&format!(
        "cache_peer 127.0.0.1 sibling {} 0 no-query name=fake",
        peer.port()
    )))
}

/// Requests `urls` one by one until one is logged with `hierarchy`
/// (cuttle uses the digest as soon as it has parsed it, a moment after the
/// peer sent it); returns the index of that URL.
async fn first_logged_as(cuttle: &Cuttle, urls: &[String], hierarchy: &str) -> usize {
    for (i, url) in urls.iter().enumerate() {
        let r = Req::get(url).send(cuttle).await;
        assert_eq!(r.status, 200, "{url}");
        if support::log_line_for(&cuttle.log_path(), url)
            .await
            .hierarchy
            == hierarchy
        {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(cuttle.log_path()).unwrap_or_default();
    panic!(
        "no request logged {hierarchy}:\n{text}\n{:?}",
        cuttle.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sibling_digest_hit_is_cd_sibling_hit_and_others_go_direct() {
    let origin = Origin::start().await;
    let peer = Origin::start().await;
    let held: Vec<String> = (0..40).map(|i| origin.url(&format!("/held/{i}"))).collect();
    let gone = origin.url("/gone");
    let mut in_digest = held.clone();
    in_digest.push(gone.clone());
    serve_digest(&peer, support::digest_of(1000, &in_digest));
    for i in 0..40 {
        let path = format!("/held/{i}");
        origin.route(&path, |_| Reply::ok("from origin").cc("max-age=600"));
        peer.route(&path, |_| Reply::ok("from sibling").cc("max-age=600"));
    }
    origin.route("/gone", |_| Reply::ok("from origin").cc("max-age=600"));
    // The sibling no longer has it: only-if-cached gets 504.
    peer.route("/gone", |_| Reply::status(504));
    origin.route("/other", |_| Reply::ok("from origin").cc("max-age=600"));
    origin.route("/first", |_| Reply::ok("from origin"));

    let cuttle = cuttle_with_sibling(&peer);
    // The first lookup wants the digest; cuttle fetches it at once.
    let first = origin.url("/first");
    assert_eq!(Req::get(&first).send(&cuttle).await.status, 200);
    peer.wait_count(DIGEST_PATH, 1).await;
    let asked = peer.last(DIGEST_PATH);
    assert_eq!(asked.target, DIGEST_PATH);
    assert!(
        asked.header("accept").contains("application/cache-digest"),
        "{:?}",
        asked.headers
    );

    let i = first_logged_as(&cuttle, &held, "CD_SIBLING_HIT/127.0.0.1").await;
    let url = &held[i];
    let l = support::log_line_for(&cuttle.log_path(), url).await;
    assert_eq!(l.result(), "TCP_MISS/200", "{}", l.raw);
    let path = format!("/held/{i}");
    assert_eq!(origin.count(&path), 0, "went to the origin too");
    let seen = peer.last(&path);
    assert!(
        seen.header("cache-control").contains("only-if-cached"),
        "{:?}",
        seen.headers
    );
    // The next held URL is a digest hit too.
    if let Some(next) = held.get(i + 1) {
        let r = Req::get(next).send(&cuttle).await;
        assert_eq!(r.text(), "from sibling");
        assert_eq!(
            support::log_line_for(&cuttle.log_path(), next)
                .await
                .hierarchy,
            "CD_SIBLING_HIT/127.0.0.1"
        );
    }

    // Not in the digest: DIRECT.
    let other = origin.url("/other");
    let r = Req::get(&other).send(&cuttle).await;
    assert_eq!(r.text(), "from origin");
    let l = support::log_line_for(&cuttle.log_path(), &other).await;
    assert_eq!(l.hierarchy, "HIER_DIRECT/127.0.0.1", "{}", l.raw);

    // A false hit: the sibling's 504 sends the request on to the origin.
    let r = Req::get(&gone).send(&cuttle).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "from origin");
    assert_eq!(peer.count("/gone"), 1);
    let l = support::log_line_for(&cuttle.log_path(), &gone).await;
    assert_eq!(l.hierarchy, "HIER_DIRECT/127.0.0.1", "{}", l.raw);

    // mgr:counters counts the transactions a digest chose (cd.times_used).
    let counters = Req::get(&format!(
        "http://{}/squid-internal-mgr/counters",
        cuttle.addr()
    ))
    .send(&cuttle)
    .await
    .text();
    let cd_used = counters
        .lines()
        .find_map(|l| l.strip_prefix("cd.times_used = "))
        .unwrap_or_else(|| panic!("no cd.times_used in:\n{counters}"));
    let want = if i + 1 < held.len() { "2" } else { "1" };
    assert_eq!(cd_used.trim(), want, "{counters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_digest_is_refused_naming_the_peer_and_the_field() {
    let origin = Origin::start().await;
    let peer = Origin::start().await;
    let url = origin.url("/held");
    let mut body = support::digest_of(1000, std::slice::from_ref(&url));
    // The mask cut short of what the header announces.
    body.truncate(body.len() - 10);
    serve_digest(&peer, body);
    origin.route("/held", |_| Reply::ok("from origin").cc("max-age=600"));
    peer.route("/held", |_| Reply::ok("from sibling").cc("max-age=600"));
    let cuttle = cuttle_with_sibling(&peer);
    let first = origin.url("/first");
    origin.route("/first", |_| Reply::ok("from origin"));
    assert_eq!(Req::get(&first).send(&cuttle).await.status, 200);
    peer.wait_count(DIGEST_PATH, 1).await;
    let l = refusal(&cuttle).await;
    assert!(l.contains("fake"), "{l}");
    assert!(l.contains("field mask"), "{l}");
    // Without a usable digest the URL goes DIRECT (the peer is no-query).
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.text(), "from origin");
    assert_eq!(
        support::log_line_for(&cuttle.log_path(), &url)
            .await
            .hierarchy,
        "HIER_DIRECT/127.0.0.1"
    );
}

/// Waits for the one "peer digest refused" line and returns it.
async fn refusal(cuttle: &Cuttle) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out: Vec<String> = cuttle.stdout().into_iter().chain(cuttle.stderr()).collect();
        if let Some(l) = out.iter().find(|l| l.contains("peer digest refused")) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            out.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_announcing_more_than_the_largest_mask_is_refused_before_reading() {
    let origin = Origin::start().await;
    let peer = Origin::start().await;
    // 1 GB announced, nothing sent: cuttle must not wait for it nor
    // make room for it.
    peer.route(DIGEST_PATH, |_| {
        Reply::ok("")
            .header("Content-Type", "application/cache-digest")
            .header("Content-Length", "1000000000")
            .cut_after(0)
    });
    origin.route("/first", |_| Reply::ok("from origin"));
    let cuttle = cuttle_with_sibling(&peer);
    assert_eq!(
        Req::get(&origin.url("/first")).send(&cuttle).await.status,
        200
    );
    peer.wait_count(DIGEST_PATH, 1).await;
    let l = refusal(&cuttle).await;
    assert!(l.contains("fake"), "{l}");
    assert!(l.contains("Content-Length 1000000000"), "{l}");
    assert!(l.contains("field mask_size"), "{l}");
}
