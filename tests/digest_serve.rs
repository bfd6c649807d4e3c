//! cuttle serves its Cache Digest (squid-spec 5.3) at
//! `/squid-internal-periodic/store_digest` on its http_ports, as Squid
//! does: `200 Cache Digest OK`, `application/cache-digest`, Last-Modified
//! at the build and Expires at the next rebuild, the 128-byte header and
//! the mask over the public keys of what it holds fresh; logged
//! `TCP_HIT/200 ... HIER_NONE/- application/cache-digest`; subject to
//! http_access; `digest_generation off` keeps Squid's 404.

mod support;

use std::time::{Duration, Instant};

use cuttle_protocol::digest::parse;
use cuttle_protocol::key::{store_key, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{Conf, Cuttle, Origin, Reply, Req, WAIT};

const DIGEST: &str = "/squid-internal-periodic/store_digest";
const STORED: usize = 40;

async fn origin_with_objects() -> Origin {
    let origin = Origin::start().await;
    for i in 0..STORED {
        origin.route(&format!("/obj/{i}"), move |_| {
            Reply::ok(format!("object {i}")).cc("max-age=86400")
        });
    }
    origin
}

fn claimed(digest: &cuttle_protocol::digest::DigestRef<'_>, url: &str) -> bool {
    digest.contains(&store_key(Method::Get, url.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_holds_what_cuttle_stored_and_is_logged_as_squid_logs_it() {
    let origin = origin_with_objects().await;
    // Rebuilt every second: what is stored now is in the digest soon after.
    let cuttle = Cuttle::start(&Conf::new().extra("digest_rebuild_period 1 second"));
    for i in 0..STORED {
        let r = Req::get(&origin.url(&format!("/obj/{i}")))
            .send(&cuttle)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A rebuild that started after the last store serves them all: ask
    // until one has (a fixed pause may end before a busy machine's
    // rebuild does).
    let deadline = Instant::now() + WAIT;
    let r = loop {
        let r = Req::get(DIGEST).send_to(cuttle.addr()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let count = parse(&r.body).map_or(0, |d| d.header.count as usize);
        if count >= STORED || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.header("content-type"), "application/cache-digest");
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    for name in ["date", "last-modified", "expires"] {
        assert!(r.has(name), "no {name}: {:?}", r.headers);
    }
    let last_modified = httpdate::parse_http_date(&r.header("last-modified")).unwrap();
    let expires = httpdate::parse_http_date(&r.header("expires")).unwrap();
    assert_eq!(
        expires.duration_since(last_modified).unwrap(),
        Duration::from_secs(1)
    );
    let digest = parse(&r.body).expect("the served digest parses");
    assert_eq!(digest.header.current_version, 5);
    assert_eq!(digest.header.required_version, 3);
    assert_eq!(digest.header.bits_per_entry, 5);
    assert_eq!(digest.header.hash_functions, 4);
    assert_eq!(digest.header.count as usize, STORED, "{:?}", digest.header);
    for i in 0..STORED {
        let url = origin.url(&format!("/obj/{i}"));
        assert!(claimed(&digest, &url), "{url} not in the digest");
    }
    let absent = (0..1000)
        .filter(|i| claimed(&digest, &origin.url(&format!("/never/{i}"))))
        .count();
    assert!(absent < 300, "{absent} of 1000 absent URLs claimed");

    let log = cuttle.log(STORED + 1).await;
    let line = log.last().unwrap();
    assert_eq!(line.result(), "TCP_HIT/200", "{line:?}");
    assert_eq!(
        line.url,
        format!("http://{}:{}{DIGEST}", cuttle.name, cuttle.port)
    );
    assert_eq!(line.hierarchy, "HIER_NONE/-", "{line:?}");
    assert_eq!(line.content_type, "application/cache-digest", "{line:?}");
}

/// Squid's status line, which `Resp` does not keep.
#[tokio::test]
async fn the_status_line_is_squids() {
    let cuttle = Cuttle::start(&Conf::new());
    let mut conn = tokio::net::TcpStream::connect(cuttle.addr()).await.unwrap();
    conn.write_all(
        format!("GET {DIGEST} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 Cache Digest OK\r\n"),
        "{}",
        text.lines().next().unwrap_or_default()
    );
}

#[tokio::test]
async fn digest_generation_off_keeps_squids_404() {
    let cuttle = Cuttle::start(&Conf::new().extra("digest_generation off"));
    let r = Req::get(DIGEST).send_to(cuttle.addr()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.text(), "This cache is currently building its digest.\n");
}

#[tokio::test]
async fn http_access_applies_to_the_digest() {
    let cuttle = Cuttle::start(&Conf::new().access(&[
        "acl digest urlpath_regex ^/squid-internal-periodic/",
        "http_access deny digest",
        "http_access allow all",
    ]));
    let r = Req::get(DIGEST).send_to(cuttle.addr()).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let log = cuttle.log(1).await;
    assert_eq!(log[0].result(), "TCP_DENIED/403", "{:?}", log[0]);
}
