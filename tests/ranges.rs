//! Range requests answered from a stored complete response (RFC 9110 §14):
//! a memory hit, a disk hit and a revalidated hit all send 206 with the
//! asked range (byte-range, open-ended, suffix), several ranges as
//! multipart/byteranges, 416 with `Content-Range: bytes */LEN` when no
//! range overlaps, the whole 200 for an invalid Range or an If-Range that
//! does not hold; conditionals come first (§13.2.2). Logged with status
//! 206 as Squid does.

mod support;

use support::{http_date, Conf, Cuttle, Origin, Reply, Req, Resp};

const BODY: &str = "01234567890";
/// Long before any response's Date: a strong Last-Modified.
const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// An origin (that knows nothing of ranges) whose `/r` is BODY, fresh for
/// an hour, with a strong ETag and a strong Last-Modified.
async fn origin() -> Origin {
    let origin = Origin::start().await;
    origin.route("/r", |_| {
        Reply::ok(BODY)
            .cc("max-age=3600")
            .header("content-type", "text/plain")
            .header("etag", "\"r1\"")
            .header("last-modified", MODIFIED)
    });
    origin
}

/// Stores `/r` (a miss) and returns its URL.
async fn stored(origin: &Origin, proxy: &Cuttle) -> String {
    let url = origin.url("/r");
    let first = Req::get(&url).send(proxy).await;
    assert_eq!((first.status, first.text().as_str()), (200, BODY));
    url
}

async fn ranged(url: &str, proxy: &Cuttle, range: &str) -> Resp {
    Req::get(url).header("range", range).send(proxy).await
}

fn assert_partial(resp: &Resp, body: &str, content_range: &str) {
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(resp.text(), body);
    assert_eq!(resp.header("content-range"), content_range);
    assert_eq!(resp.header("content-length"), body.len().to_string());
    // The stored fields a 200 would carry come along (§15.3.7).
    assert_eq!(resp.header("etag"), "\"r1\"");
    assert_eq!(resp.header("cache-control"), "max-age=3600");
    assert_eq!(resp.header("content-type"), "text/plain");
}

fn assert_whole(resp: &Resp) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), BODY);
    assert!(!resp.has("content-range"), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hit_serves_byte_open_ended_and_suffix_ranges() {
    let origin = origin().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = stored(&origin, &proxy).await;
    assert_partial(
        &ranged(&url, &proxy, "bytes=0-1").await,
        "01",
        "bytes 0-1/11",
    );
    assert_partial(
        &ranged(&url, &proxy, "bytes=1-").await,
        "1234567890",
        "bytes 1-10/11",
    );
    assert_partial(
        &ranged(&url, &proxy, "bytes=-1").await,
        "0",
        "bytes 10-10/11",
    );
    // Past the end is clipped; a suffix longer than the body is all of it.
    assert_partial(
        &ranged(&url, &proxy, "bytes=9-99").await,
        "90",
        "bytes 9-10/11",
    );
    assert_partial(
        &ranged(&url, &proxy, "bytes=-50").await,
        BODY,
        "bytes 0-10/11",
    );
    assert_eq!(origin.count("/r"), 1, "all from the cache");
    let results: Vec<String> = proxy.log(6).await.iter().map(|l| l.result()).collect();
    assert_eq!(
        results,
        [
            "TCP_MISS/200",
            "TCP_MEM_HIT/206",
            "TCP_MEM_HIT/206",
            "TCP_MEM_HIT/206",
            "TCP_MEM_HIT/206",
            "TCP_MEM_HIT/206"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_hit_serves_a_range() {
    let origin = origin().await;
    // Nothing fits the memory cache: every hit is read from the cache_dir.
    let proxy = Cuttle::start(&Conf::new().extra("maximum_object_size_in_memory 0 KB"));
    let url = stored(&origin, &proxy).await;
    assert_partial(
        &ranged(&url, &proxy, "bytes=3-5").await,
        "345",
        "bytes 3-5/11",
    );
    assert_eq!(origin.count("/r"), 1);
    let log = proxy.log(2).await;
    assert_eq!(log[1].result(), "TCP_HIT/206", "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overlapping_range_is_a_416_with_the_length() {
    let origin = origin().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = stored(&origin, &proxy).await;
    for range in ["bytes=11-", "bytes=20-30", "bytes=-0", "bytes=11-12,50-"] {
        let resp = ranged(&url, &proxy, range).await;
        assert_eq!(resp.status, 416, "{range}: {resp:?}");
        assert_eq!(resp.header("content-range"), "bytes */11", "{range}");
        assert_eq!(resp.text(), "", "{range}");
        // Not the stored response: none of its fields that would let a
        // downstream cache keep this answer.
        assert!(!resp.has("etag") && !resp.has("cache-control"), "{resp:?}");
    }
    assert_eq!(origin.count("/r"), 1);
    assert_eq!(proxy.log(5).await[1].result(), "TCP_MEM_HIT/416");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_range_is_ignored() {
    let origin = origin().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = stored(&origin, &proxy).await;
    // A valid one first, so this test fails where ranges are not served.
    assert_partial(
        &ranged(&url, &proxy, "bytes=0-0").await,
        "0",
        "bytes 0-0/11",
    );
    for range in ["bytes=5-2", "items=0-1", "bytes=a-", "bytes=", "bytes 0-1"] {
        assert_whole(&ranged(&url, &proxy, range).await);
    }
    // Range applies to GET only: a HEAD gets the 200's head.
    let head = Req::new("HEAD", &url)
        .header("range", "bytes=0-1")
        .send(&proxy)
        .await;
    assert_eq!(
        (head.status, head.header("content-length").as_str()),
        (200, "11")
    );
    assert_eq!(origin.count("/r"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_with_the_stored_validator_gets_the_range_else_everything() {
    let origin = origin().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = stored(&origin, &proxy).await;
    let with_if_range = |value: String| {
        Req::get(&url)
            .header("range", "bytes=0-1")
            .header("if-range", value)
            .send(&proxy)
    };
    let same_tag = with_if_range("\"r1\"".into()).await;
    assert_partial(&same_tag, "01", "bytes 0-1/11");
    // The stored Last-Modified, long before its Date: strong.
    let same_date = with_if_range(MODIFIED.into()).await;
    assert_partial(&same_date, "01", "bytes 0-1/11");
    for other in [
        "\"r2\"".to_string(),
        "W/\"r1\"".into(),
        http_date(-50),
        "Sun, 06 Nov 1994 08:49:38 GMT".into(),
    ] {
        assert_whole(&with_if_range(other).await);
    }
    // A failed If-Range sends everything, even for a range past the end.
    let past_end = Req::get(&url)
        .header("range", "bytes=50-")
        .header("if-range", "\"r2\"")
        .send(&proxy)
        .await;
    assert_whole(&past_end);
    assert_eq!(origin.count("/r"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_that_matches_comes_before_the_range() {
    let origin = origin().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = stored(&origin, &proxy).await;
    assert_partial(
        &ranged(&url, &proxy, "bytes=0-1").await,
        "01",
        "bytes 0-1/11",
    );
    let matched = Req::get(&url)
        .header("range", "bytes=0-1")
        .header("if-none-match", "\"r1\"")
        .send(&proxy)
        .await;
    assert_eq!(matched.status, 304, "{matched:?}");
    assert!(!matched.has("content-range"));
    let other = Req::get(&url)
        .header("range", "bytes=0-1")
        .header("if-none-match", "\"r9\"")
        .send(&proxy)
        .await;
    assert_partial(&other, "01", "bytes 0-1/11");
}

/// Several ranges: one multipart/byteranges body (RFC 9110 §14.6), in the
/// order asked, each part with the stored Content-Type and its own
/// Content-Range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_ranges_come_as_multipart_byteranges() {
    let origin = origin().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = stored(&origin, &proxy).await;
    let resp = ranged(&url, &proxy, "bytes=7-8, 0-1, -1").await;
    assert_eq!(resp.status, 206, "{resp:?}");
    assert!(!resp.has("content-range"));
    let content_type = resp.header("content-type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type:?}"));
    assert_eq!(resp.header("content-length"), resp.body.len().to_string());
    let parts = multipart_parts(&resp.text(), boundary);
    assert_eq!(
        parts,
        [
            ("bytes 7-8/11".to_string(), "78".to_string()),
            ("bytes 0-1/11".to_string(), "01".to_string()),
            ("bytes 10-10/11".to_string(), "0".to_string()),
        ]
    );
    assert_eq!(origin.count("/r"), 1);
    assert_eq!(proxy.log(2).await[1].result(), "TCP_MEM_HIT/206");
}

/// (Content-Range, body) of each part of a multipart/byteranges body, each
/// part checked to carry Content-Type: text/plain.
fn multipart_parts(body: &str, boundary: &str) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}");
    let (pieces, end) = body
        .rsplit_once(&format!("{delimiter}--"))
        .unwrap_or_else(|| panic!("no close delimiter in {body:?}"));
    assert!(end.is_empty() || end == "\r\n", "{end:?}");
    pieces
        .split(&delimiter)
        .skip(1)
        .map(|part| {
            let part = part.strip_prefix("\r\n").expect("CRLF after a delimiter");
            let (head, data) = part.split_once("\r\n\r\n").expect("part head");
            let data = data.strip_suffix("\r\n").expect("CRLF before a delimiter");
            let mut content_range = String::new();
            let mut content_type = String::new();
            for line in head.split("\r\n") {
                let (name, value) = line.split_once(':').expect("a field");
                match name.to_ascii_lowercase().as_str() {
                    "content-range" => content_range = value.trim().to_string(),
                    "content-type" => content_type = value.trim().to_string(),
                    _ => {}
                }
            }
            assert_eq!(content_type, "text/plain");
            (content_range, data.to_string())
        })
        .collect()
}

/// A stale hit revalidated with a 304 is served as a range too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidated_hit_serves_the_range() {
    let origin = Origin::start().await;
    origin.route("/s", |s| {
        if s.header("if-none-match") == "\"s1\"" {
            return Reply::status(304).header("etag", "\"s1\"").cc("max-age=0");
        }
        Reply::ok(BODY).header("etag", "\"s1\"").cc("max-age=0")
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/s");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), BODY);
    let resp = ranged(&url, &proxy, "bytes=2-3").await;
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(resp.text(), "23");
    assert_eq!(resp.header("content-range"), "bytes 2-3/11");
    assert_eq!(origin.count("/s"), 2);
    let log = proxy.log(2).await;
    assert_eq!(log[1].result(), "TCP_REFRESH_UNMODIFIED/206", "{log:#?}");
}

/// A revalidation asks for the whole object, never the client's range: an
/// origin that honours Range would otherwise answer a changed object with a
/// 206, which cannot replace the stored one (the entry was lost and the
/// next client missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_asks_for_the_whole_object() {
    let origin = Origin::start().await;
    origin.route("/v", |s| {
        let body = if s.n == 1 { BODY } else { "abcdefghijk" };
        if s.header("range") == "bytes=2-3" {
            return Reply::status(206)
                .body(&body[2..4])
                .header("content-range", "bytes 2-3/11")
                .header("etag", "\"v2\"")
                .cc("max-age=0");
        }
        let etag = if s.n == 1 { "\"v1\"" } else { "\"v2\"" };
        Reply::ok(body).header("etag", etag).cc("max-age=0")
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/v");
    assert_eq!(Req::get(&url).send(&proxy).await.text(), BODY);
    let resp = ranged(&url, &proxy, "bytes=2-3").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "abcdefghijk"));
    assert!(!origin.last("/v").has("range"), "{:?}", origin.last("/v"));
    // The changed object was stored: the next request revalidates it.
    let whole = Req::get(&url).send(&proxy).await;
    assert_eq!((whole.status, whole.text().as_str()), (200, "abcdefghijk"));
    assert_eq!(origin.last("/v").header("if-none-match"), "\"v2\"");
}

/// Only a stored 200 is a representation to take ranges of: a stored 404
/// is sent whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_error_is_sent_whole() {
    let origin = origin().await;
    origin.route("/gone", |_| {
        Reply::status(404).body("not here").cc("max-age=3600")
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = stored(&origin, &proxy).await;
    assert_partial(
        &ranged(&url, &proxy, "bytes=0-1").await,
        "01",
        "bytes 0-1/11",
    );
    let gone = origin.url("/gone");
    assert_eq!(Req::get(&gone).send(&proxy).await.status, 404);
    let again = ranged(&gone, &proxy, "bytes=0-1").await;
    assert_eq!((again.status, again.text().as_str()), (404, "not here"));
    assert_eq!(origin.count("/gone"), 1);
}

/// A miss forwards the client's Range (as Squid with its default
/// range_offset_limit 0): an origin's 206 is passed on and not stored; an
/// origin's whole 200 of known length is stored, and the client that
/// asked for a range gets its 206 cut from it as it streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_that_brings_the_whole_object_sends_the_range() {
    let origin = origin().await;
    origin.route("/chunked", |_| Reply::ok(BODY).cc("max-age=3600").chunked());
    origin.route("/partial", |s| {
        if s.has("range") {
            return Reply::status(206)
                .body("12")
                .header("content-range", "bytes 1-2/11")
                .cc("max-age=3600");
        }
        Reply::ok(BODY).cc("max-age=3600")
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/r");
    let resp = Req::get(&url)
        .header("range", "bytes=2-4")
        .send(&proxy)
        .await;
    assert_partial(&resp, "234", "bytes 2-4/11");
    assert_eq!(origin.last("/r").header("range"), "bytes=2-4");
    // What was stored is the whole object.
    assert_whole(&Req::get(&url).send(&proxy).await);
    assert_eq!(origin.count("/r"), 1);
    let log = proxy.log(2).await;
    assert_eq!(log[0].result(), "TCP_MISS/206", "{log:#?}");
    assert_eq!(log[1].result(), "TCP_MEM_HIT/200", "{log:#?}");
    // No length known before the body ends: the whole 200.
    let chunked = origin.url("/chunked");
    let resp = Req::get(&chunked)
        .header("range", "bytes=2-4")
        .send(&proxy)
        .await;
    assert_eq!((resp.status, resp.text().as_str()), (200, BODY));
    // The origin's own 206 is passed on, and not stored.
    let partial = origin.url("/partial");
    let resp = Req::get(&partial)
        .header("range", "bytes=1-2")
        .send(&proxy)
        .await;
    assert_eq!((resp.status, resp.text().as_str()), (206, "12"));
    assert_eq!(resp.header("content-range"), "bytes 1-2/11");
    assert_eq!(Req::get(&partial).send(&proxy).await.text(), BODY);
    assert_eq!(origin.count("/partial"), 2);
}

/// The client that asked for the first bytes of a big miss is done long
/// before the body is: the fetch goes on and stores the whole object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_at_the_start_of_a_big_miss_leaves_the_whole_object_stored() {
    let origin = Origin::start().await;
    let big = support::pattern(7, 300_000);
    let sent = big.clone();
    origin.route("/big", move |_| {
        Reply::ok(sent.clone())
            .cc("max-age=3600")
            .pieces(6, std::time::Duration::from_millis(20))
    });
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url("/big");
    let resp = Req::get(&url)
        .header("range", "bytes=10-19")
        .send(&proxy)
        .await;
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(resp.body, big[10..20]);
    assert_eq!(resp.header("content-range"), "bytes 10-19/300000");
    origin.wait_finished("/big", 1).await;
    // Stored whole: a later range deep inside it is a hit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let resp = Req::get(&url)
            .header("range", "bytes=299990-")
            .send(&proxy)
            .await;
        if resp.x_cache() == "HIT" {
            assert_eq!(resp.status, 206, "{resp:?}");
            assert_eq!(resp.body, big[299_990..]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never stored");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(origin.count("/big"), 1);
}
