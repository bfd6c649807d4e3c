//! Cache Digests on the cache manager pages, with the real binary: a fake
//! sibling (an in-process HTTP server, `no-query`) serves a digest of some
//! URLs; after cuttle fetched it, used it (a digest hit) and met a false
//! hit (the sibling answers 504), `mgr:digest_stats` shows the peer's
//! digest and counters and cuttle's own digest in the layout of Squid
//! 5.7's page (fixtures/squid-mgr/digest_stats-digest-sibling.txt), and
//! the status page shows the peer's digest age and false-hit ratio.

mod support;

use std::time::Duration;

use cuttle_protocol::digest::mask_len;
use support::{Conf, Cuttle, Origin, Reply, Req};

const DIGEST_PATH: &str = "/squid-internal-periodic/store_digest";
/// The capacity of the fake sibling's digest.
const CAPACITY: u32 = 1000;

/// A cuttle whose sibling's digest gave one hit taken from the sibling and
/// one false hit (41 URLs in the digest).
async fn cuttle_after_a_hit_and_a_false_hit() -> (Cuttle, Origin, Origin) {
    let origin = Origin::start().await;
    let peer = Origin::start().await;
    let held: Vec<String> = (0..40).map(|i| origin.url(&format!("/held/{i}"))).collect();
    let gone = origin.url("/gone");
    let mut in_digest = held.clone();
    in_digest.push(gone.clone());
    let body = support::digest_of(CAPACITY, &in_digest);
    peer.route(DIGEST_PATH, move |_| {
        Reply::ok(body.clone())
            .header("Content-Type", "application/cache-digest")
            .header("Expires", support::http_date(3600))
    });
    for i in 0..40 {
        let path = format!("/held/{i}");
        origin.route(&path, |_| Reply::ok("from origin").cc("max-age=600"));
        peer.route(&path, |_| Reply::ok("from sibling").cc("max-age=600"));
    }
    origin.route("/gone", |_| Reply::ok("from origin").cc("max-age=600"));
    peer.route("/gone", |_| Reply::status(504));
    origin.route("/first", |_| Reply::ok("from origin"));

    let cuttle = Cuttle::start(&Conf::new().extra(&format!(
        "cache_peer 127.0.0.1 sibling {} 0 no-query name=fake",
        peer.port()
    )));
    assert_eq!(
        Req::get(&origin.url("/first")).send(&cuttle).await.status,
        200
    );
    peer.wait_count(DIGEST_PATH, 1).await;
    // cuttle uses the digest a moment after the sibling sent it.
    let mut hit = false;
    for url in &held {
        assert_eq!(Req::get(url).send(&cuttle).await.status, 200);
        if support::log_line_for(&cuttle.log_path(), url)
            .await
            .hierarchy
            == "CD_SIBLING_HIT/127.0.0.1"
        {
            hit = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hit, "no digest hit");
    let r = Req::get(&gone).send(&cuttle).await;
    assert_eq!(r.text(), "from origin");
    assert_eq!(peer.count("/gone"), 1, "the false hit went to the sibling");
    (cuttle, origin, peer)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/squid-mgr")
            .join(name),
    )
    .expect("fixture")
}

/// The lines of `page` that start a section of Squid's digest report, in
/// order.
fn sections(page: &str) -> Vec<String> {
    const HEADS: &[&str] = &[
        "Counters:",
        "5 Min Averages:",
        "Peer Digests:",
        "Per-peer statistics:",
        "peer digest from ",
        "event\t timestamp",
        "peer digest state:",
        "peer digest traffic:",
        "peer digest structure:",
        "Algorithm usage:",
        "Local Digest:",
        "store digest: size: ",
    ];
    page.lines()
        .filter_map(|l| HEADS.iter().find(|h| l.starts_with(**h)))
        .map(|h| h.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_stats_shows_peer_and_local_digests_in_squids_layout() {
    let (cuttle, _origin, _peer) = cuttle_after_a_hit_and_a_false_hit().await;
    let (status, page) = support::mgr_page(&cuttle, "digest_stats").await;
    assert_eq!(status, 200, "{page}");
    let squid = fixture("digest_stats-digest-sibling.txt");
    assert_eq!(sections(&page), sections(&squid), "{page}");

    let size = mask_len(CAPACITY, 5);
    assert!(
        page.contains(&format!("\n127.0.0.1 digest: size: {size} bytes\n")),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "\n\t entries: count: 41 capacity: {CAPACITY} util: 4%\n"
        )),
        "{page}"
    );
    assert!(
        page.contains("\tneeded: yes, usable: yes, requested:  no\n"),
        "{page}"
    );
    assert!(page.contains("\trequests sent: 1, volume: "), "{page}");
    // cuttle's own counters of the digest's guesses.
    let lookups = page
        .lines()
        .find(|l| l.starts_with("\t lookups: "))
        .unwrap_or_else(|| panic!("no lookups line:\n{page}"));
    assert!(lookups.contains(" false hits: 1 "), "{lookups}");
    assert!(!lookups.contains(" hits: 0 "), "{lookups}");
    // Algorithm usage as Squid's after digest hits and no ICP.
    let squid_hits = fixture("digest_stats-digest-sibling-cd-hits.txt");
    let icp = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("Icp:"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no Icp line:\n{text}"))
    };
    assert_eq!(icp(&page), icp(&squid_hits));
    let cd = page
        .lines()
        .find(|l| l.starts_with("Cache Digest:"))
        .unwrap_or_else(|| panic!("no Cache Digest line:\n{page}"));
    assert!(
        cd.ends_with(" (100%)") && cd.len() == "Cache Digest:       5 (100%)".len(),
        "{cd}"
    );
    // The local digest (cuttle serves one: digest_generation is on).
    assert!(page.contains("\nstore digest: size: "), "{page}");
    assert!(page.contains("\n\t bits: per entry: 5 on: "), "{page}");
    // The menu lists the page.
    let (_, menu) = support::mgr_page(&cuttle, "menu").await;
    assert!(menu.contains(" digest_stats "), "{menu}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_each_peers_digest_age_and_false_hit_ratio() {
    let (cuttle, _origin, _peer) = cuttle_after_a_hit_and_a_false_hit().await;
    let (status, page) = support::mgr_page(&cuttle, "status").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<th>Digest age</th><th>False hits</th>"),
        "{page}"
    );
    let row = page
        .lines()
        .find(|l| l.contains("data-peer=\"fake\""))
        .unwrap_or_else(|| panic!("no row for the peer:\n{page}"));
    assert!(row.contains("<td class=\"digest-age\">"), "{row}");
    assert!(!row.contains("<td class=\"digest-age\">none"), "{row}");
    // Hits predicted: the one taken and the false one (more if the next
    // URLs were hits); false: one.
    let cell = row
        .split("<td class=\"false-hits\">")
        .nth(1)
        .and_then(|r| r.split("</td>").next())
        .unwrap_or_else(|| panic!("no false-hits cell: {row}"));
    assert!(cell.starts_with("1/2 (50.0%)"), "{cell}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_list_of_a_digest_peer_has_no_digest_lines_as_in_squid() {
    let (cuttle, _origin, _peer) = cuttle_after_a_hit_and_a_false_hit().await;
    let (status, page) = support::mgr_page(&cuttle, "server_list").await;
    assert_eq!(status, 200);
    let squid = fixture("server_list-digest-sibling.txt");
    // Squid 5.7 with a usable peer digest: no digest line, and the flags
    // lack no-digest. cuttle's page for its digest peer is alike.
    for text in [&squid, &page] {
        let flags = text
            .lines()
            .find(|l| l.starts_with("Flags      : "))
            .unwrap_or_else(|| panic!("no Flags line:\n{text}"));
        assert!(!flags.contains("no-digest"), "{flags}");
        assert!(
            !text
                .lines()
                .skip_while(|l| !l.is_empty())
                .any(|l| l.to_lowercase().contains("digest")),
            "{text}"
        );
    }
}
