//! A real Squid 5.7 reads cuttle's Cache Digest right (issue 15): Squid is
//! cuttle's sibling with a plain `no-query` line (digests on), cuttle holds
//! enough objects that the mask runs past byte 3967, so Squid's reception
//! bug (squid-spec 5.5) would shift most of it if header and mask came in
//! one read. After Squid's digest fetch, each object cuttle holds is taken
//! from cuttle as `CD_SIBLING_HIT/<cuttle>` and each it does not goes
//! DIRECT: Squid's choices are exactly what the served mask says. Fails,
//! never skips, when squid is missing.

mod peer_lab;
mod support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cuttle_protocol::digest::parse;
use cuttle_protocol::key::{store_key, Method};
use support::{Origin, Reply, Req, TempDir};

const DIGEST: &str = "/squid-internal-periodic/store_digest";
/// Objects cuttle holds (its 16 MB cache_dir keeps 1,024): at 40 bits an
/// entry, a 5,000-byte mask, 3,840 of
/// whose bytes Squid would garble.
const HELD: usize = 1000;
const BITS_PER_ENTRY: usize = 40;
/// Asked through Squid: every `STRIDE`th held object, and as many absent.
const STRIDE: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_sibling_takes_what_cuttles_digest_says_without_garbling() {
    let (squid_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 43, 1), Ipv4Addr::new(127, 0, 43, 2));
    let tmp = TempDir::new("digest-squid");
    let origin = Arc::new(Origin::start_on(Ipv4Addr::LOCALHOST).await);
    for i in 0..HELD {
        origin.route(&format!("/held/{i}"), move |_| {
            Reply::ok(format!("held {i}\n")).cc("max-age=86400")
        });
    }
    // Squid logs URLs without their query: one path each.
    for i in 0..=HELD / STRIDE {
        origin.route(&format!("/absent/{i}"), |_| {
            Reply::ok("absent\n").cc("max-age=86400")
        });
    }
    let cuttle = peer_lab::start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!("digest_bits_per_entry {BITS_PER_ENTRY}\ndigest_rebuild_period 2 seconds"),
    );

    // cuttle fetches the objects itself; Squid looks nothing up yet (its
    // first lookup fetches the digest, then not again for minutes).
    let mut warm = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let origin = Arc::clone(&origin);
        let addr = cuttle.addr;
        warm.spawn(async move {
            for i in (worker..HELD).step_by(8) {
                let r = Req::get(&origin.url(&format!("/held/{i}")))
                    .send_to(addr)
                    .await;
                assert_eq!(r.status, 200, "held {i}: {}", r.text());
            }
        });
    }
    while let Some(done) = warm.join_next().await {
        done.expect("warming");
    }
    // A build after the last store holds them all: ask until the served
    // digest does (a fixed pause may end before a busy machine's build).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = Req::get(DIGEST).send_to(cuttle.addr).await;
        let count = parse(&r.body).map_or(0, |d| d.header.count as usize);
        if r.status == 200 && count == HELD {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cuttle's digest never held the {HELD} objects (status {}, count {count})",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

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
    // Squid's first lookup asks cuttle for its digest.
    let (status, _) = peer_lab::get(
        squid.http_addr(),
        &origin.url(&format!("/absent/{}", HELD / STRIDE)),
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&cuttle.log).unwrap_or_default();
        // Squid's fetch, not the test's own above.
        let from_squid = format!(" {squid_ip} TCP_HIT/200 ");
        if log
            .lines()
            .any(|l| l.contains(DIGEST) && l.contains(&from_squid))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Squid never fetched cuttle's digest\n{}\n{}",
            cuttle.output(),
            squid.cache_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Squid uses the digest once it has taken it in, and says so (72,2:
    // "peerDigestPDFinish: received valid digest from", or "re-used old
    // digest from" for the first one; an error shows in the choices below).
    let cache_log = squid.dir.join("cache.log");
    while !std::fs::read_to_string(&cache_log)
        .unwrap_or_default()
        .contains("peerDigestPDFinish: ")
    {
        assert!(
            Instant::now() < deadline,
            "Squid never took cuttle's digest in:\n{}",
            squid.cache_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What cuttle served (unchanged since: the store is).
    let served = Req::get(DIGEST).send_to(cuttle.addr).await;
    assert_eq!(served.status, 200);
    let digest = parse(&served.body).expect("cuttle's digest parses");
    assert_eq!(digest.header.count as usize, HELD, "{:?}", digest.header);
    assert!(digest.header.mask_size > 3968, "{:?}", digest.header);

    let held: Vec<String> = (0..HELD)
        .step_by(STRIDE)
        .map(|i| origin.url(&format!("/held/{i}")))
        .collect();
    let mut absent: Vec<String> = (0..HELD / STRIDE)
        .map(|i| origin.url(&format!("/absent/{i}")))
        .collect();
    // And one absent URL the mask claims (a false positive, found by
    // trying; about one in 12,000 is), so that path is taken every run.
    let claimed = (0..1_000_000)
        .map(|i| format!("/claimed/{i}"))
        .find(|p| digest.contains(&store_key(Method::Get, origin.url(p).as_bytes())))
        .expect("a false positive within a million URLs");
    origin.route(&claimed, |_| Reply::ok("absent\n").cc("max-age=86400"));
    absent.push(origin.url(&claimed));
    for url in held.iter().chain(&absent) {
        let (status, _) = peer_lab::get(squid.http_addr(), url).await;
        assert_eq!(status, 200, "{url}");
    }
    // Squid's hierarchy field for each URL asked.
    let want = held.len() + absent.len() + 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    let chosen: HashMap<String, String> = loop {
        let log = std::fs::read_to_string(squid.access_log()).unwrap_or_default();
        let chosen: HashMap<String, String> = log
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 8)
            .map(|f| (f[6].to_string(), f[8].to_string()))
            .collect();
        if chosen.len() >= want || Instant::now() > deadline {
            break chosen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let from_cuttle = format!("CD_SIBLING_HIT/{cuttle_ip}");
    // Whether cuttle's log shows Squid asking it for `url` (waits: the
    // line is written a moment after the answer).
    let asked_cuttle = |url: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let asked = std::fs::read_to_string(&cuttle.log)
                .unwrap_or_default()
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .any(|f| f.len() > 6 && f[2] == squid_ip.to_string() && f[6] == url);
            if asked || Instant::now() > deadline {
                return asked;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut wrong = Vec::new();
    let mut hits = 0;
    for url in held.iter().chain(&absent) {
        let in_mask = digest.contains(&store_key(Method::Get, url.as_bytes()));
        let got = chosen
            .get(url)
            .map(String::as_str)
            .unwrap_or("(not logged)");
        let expected = if in_mask {
            from_cuttle.as_str()
        } else {
            "HIER_DIRECT/127.0.0.1"
        };
        if got == from_cuttle {
            hits += 1;
        }
        // A false positive of the mask (in about one run of 60: 200 absent
        // URLs, whose keys carry the origin's port, at 40 bits an entry):
        // Squid follows the mask to cuttle, gets its only-if-cached 504
        // and forwards again, direct, which its line shows. Cuttle's log
        // shows it was asked.
        let false_positive =
            in_mask && absent.contains(url) && got == "HIER_DIRECT/127.0.0.1" && asked_cuttle(url);
        if got != expected && !false_positive {
            wrong.push(format!("{url}: Squid {got}, the mask says {expected}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} choices differ from the mask ({hits} CD_SIBLING_HIT for {} held):\n{}",
        wrong.len(),
        held.len() + absent.len(),
        held.len(),
        wrong
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(hits, held.len(), "every held object is a digest hit");
}
