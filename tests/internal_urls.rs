//! `/squid-internal-*` URLs, which Squid peers request from each other
//! (the cache digest, the NetDB exchange), answered on every port as a
//! Squid 5.7 with no digest built (`digest_generation off` here; the digest
//! served is tests/digest_serve.rs's) and an empty NetDB answers them (seen:
//! `digest_generation off`, `pinger_enable off`): the digest 404
//! text/plain "This cache is currently building its digest.", the NetDB
//! 200 with an empty body, any other internal path 404 ERR_INVALID_REQ;
//! logged `TCP_MISS/STATUS ... http://NAME:PORT/PATH - HIER_NONE/- TYPE`.
//! A real Squid sibling fetching cuttle's digest then logs only what it
//! logs about a Squid peer with no digest yet. Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::{Conf, Cuttle, Req, TempDir};

const DIGEST: &str = "/squid-internal-periodic/store_digest";
const NETDB: &str = "/squid-internal-dynamic/netdb";

#[tokio::test]
async fn origin_form_internal_urls_get_squids_answers_on_a_forward_port() {
    let cuttle = Cuttle::start(&Conf::new().extra("digest_generation off"));
    let name = &cuttle.name;
    let port = cuttle.port;

    let r = Req::get(DIGEST).send_to(cuttle.addr()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("content-type"), "text/plain");
    assert_eq!(r.text(), "This cache is currently building its digest.\n");

    let r = Req::get(NETDB).send_to(cuttle.addr()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "");
    assert!(!r.has("content-type"), "{:?}", r.headers);

    let r = Req::get("/squid-internal-dynamic/other")
        .send_to(cuttle.addr())
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-squid-error"), "ERR_INVALID_REQ 0");

    let log = cuttle.log(3).await;
    let seen: Vec<(String, &str, &str, &str)> = log
        .iter()
        .map(|l| {
            (
                l.result(),
                l.url.as_str(),
                l.hierarchy.as_str(),
                l.content_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "TCP_MISS/404".to_string(),
                format!("http://{name}:{port}{DIGEST}").as_str(),
                "HIER_NONE/-",
                "text/plain"
            ),
            (
                "TCP_MISS/200".to_string(),
                format!("http://{name}:{port}{NETDB}").as_str(),
                "HIER_NONE/-",
                "-"
            ),
            (
                "TCP_MISS/404".to_string(),
                format!("http://{name}:{port}/squid-internal-dynamic/other").as_str(),
                "HIER_NONE/-",
                "text/html"
            ),
        ],
        "{log:?}"
    );
}

#[tokio::test]
async fn absolute_form_internal_urls_naming_cuttle_and_any_port_kind() {
    let cuttle = Cuttle::start(&Conf::new().extra("digest_generation off"));
    let (name, port) = (cuttle.name.clone(), cuttle.port);
    // By address and by visible_hostname.
    for host in ["127.0.0.1".to_string(), name.clone()] {
        let r = Req::get(&format!("http://{host}:{port}{NETDB}"))
            .send_to(cuttle.addr())
            .await;
        assert_eq!((r.status, r.text().as_str()), (200, ""), "{host}");
        let r = Req::get(&format!("http://{host}:{port}{DIGEST}"))
            .send_to(cuttle.addr())
            .await;
        assert_eq!(r.status, 404, "{host}: {}", r.text());
        assert_eq!(r.text(), "This cache is currently building its digest.\n");
    }
    // Not the manager's (Squid's own check): an unknown internal object.
    let r = Req::get(&format!(
        "http://127.0.0.1:{port}/squid-internal-mgr%2Finfo"
    ))
    .send_to(cuttle.addr())
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-squid-error"), "ERR_INVALID_REQ 0");
    let log = cuttle.log(5).await;
    for l in &log {
        assert!(
            l.url
                .starts_with(&format!("http://{name}:{port}/squid-internal-")),
            "{l:?}"
        );
        assert_eq!(l.hierarchy, "HIER_NONE/-", "{l:?}");
    }

    // An accelerator port answers origin-form internal URLs too.
    let accel = Cuttle::start(
        &Conf::new()
            .port_line("http_port 127.0.0.1:{port} accel defaultsite=www.example.test")
            .extra("digest_generation off"),
    );
    let r = Req::get(DIGEST).send_to(accel.addr()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.text(), "This cache is currently building its digest.\n");
}

/// A Squid sibling of cuttle that fetches digests (no `no-digest`): it
/// asks cuttle for its digest on its first lookup, gets the 404 of a
/// cache that has not built one, and logs only what it logs about such a
/// Squid peer (no error, no warning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_sibling_fetching_cuttles_digest_logs_no_error() {
    let (squid_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 42, 1), Ipv4Addr::new(127, 0, 42, 2));
    let tmp = TempDir::new("internal-squid");
    let origin = peer_lab::text_origin(Ipv4Addr::LOCALHOST, &["/page"]).await;
    let cuttle = peer_lab::start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        "digest_generation off",
    );
    let squid = peer_lab::Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        "127.0.0.1",
        &format!(
            "cache_peer {cuttle_ip} sibling {} 0 no-query name=cuttle\n\
             debug_options ALL,1 15,2 72,2",
            cuttle.addr.port()
        ),
    );
    squid.wait_probed(cuttle.addr);
    let (status, _) = peer_lab::get(squid.http_addr(), &origin.url("/page")).await;
    assert_eq!(status, 200);
    // Squid's digest fetch follows its first lookup.
    let digest_url = format!("http://cuttle-{cuttle_ip}:{}{DIGEST}", cuttle.addr.port());
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let log = std::fs::read_to_string(&cuttle.log).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains(DIGEST)) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "Squid never asked for cuttle's digest\n{}\n{}",
            cuttle.output(),
            squid.cache_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], squid_ip.to_string(), "{line}");
    assert_eq!(fields[3], "TCP_MISS/404", "{line}");
    assert_eq!(fields[6], digest_url, "{line}");
    // Let Squid read the reply and log whatever it makes of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cache_log = std::fs::read_to_string(squid.dir.join("cache.log")).unwrap();
    // What Squid logs about a peer that has not built its digest yet (it
    // asks again later); a 400 or 403 would be "(Bad Request)" or
    // "(Forbidden)".
    assert!(
        cache_log.contains(&format!(
            "temporary disabling (Not Found) digest from {cuttle_ip}"
        )),
        "{}",
        squid.cache_log()
    );
    for alarming in ["ERROR", "WARNING", "Bad Request", "Forbidden"] {
        assert!(
            !cache_log.contains(alarming),
            "Squid's cache.log says {alarming:?}:\n{}",
            squid.cache_log()
        );
    }
}

/// A Squid sibling of cuttle that exchanges NetDBs (no
/// `no-netdb-exchange`) asks for cuttle's 20 to 40 seconds after start
/// (Squid's schedule), gets an empty one, and logs no error about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_sibling_exchanging_netdbs_gets_an_empty_one_quietly() {
    let (squid_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 42, 11), Ipv4Addr::new(127, 0, 42, 12));
    let tmp = TempDir::new("internal-netdb");
    let cuttle = peer_lab::start_cuttle(&tmp.path().join("cuttle"), cuttle_ip, "");
    let squid = peer_lab::Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        "127.0.0.1",
        &format!(
            "cache_peer {cuttle_ip} sibling {} 0 no-query no-digest name=cuttle\n\
             debug_options ALL,1 15,2 38,3",
            cuttle.addr.port()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(50);
    let line = loop {
        let log = std::fs::read_to_string(&cuttle.log).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains(NETDB)) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "Squid never asked for cuttle's NetDB\n{}\n{}",
            cuttle.output(),
            squid.cache_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], squid_ip.to_string(), "{line}");
    assert_eq!(fields[3], "TCP_MISS/200", "{line}");
    assert_eq!(
        fields[6],
        format!("http://cuttle-{cuttle_ip}:{}{NETDB}", cuttle.addr.port()),
        "{line}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cache_log = std::fs::read_to_string(squid.dir.join("cache.log")).unwrap();
    for alarming in ["ERROR", "WARNING", "Bad Request", "Forbidden", "disabling"] {
        assert!(
            !cache_log.contains(alarming),
            "Squid's cache.log says {alarming:?}:\n{}",
            squid.cache_log()
        );
    }
}
