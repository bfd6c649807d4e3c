//! Pushed invalidation and update over HTCP MON (README "HTCP MON between
//! cuttle peers", issue 22): two real cuttle siblings, B (127.0.63.2)
//! monitoring A (127.0.63.1) with `htcp=monitor`, and an origin on
//! 127.0.63.9 whose objects change on demand (body and ETag `v1`, `v2`).
//!
//! B holds objects it fetched through A (MON_SIBLING_HIT), fresh for an
//! hour. Then:
//! 1. A rarely used object changes at the origin and A revalidates it (a
//!    client's `max-age=0`): A pushes an invalidation, B drops its copy and
//!    its next request gets the new version, not from its own cache.
//! 2. A popular object (used `htcp_monitor_update_hits 4` times at A)
//!    changes the same way: A pushes an update, B refetches the new
//!    version from A in the background, and B's next request is a local
//!    hit with the new version; A sees no request from B for it then.
//! 3. A PURGE at A, and a POST through A (an unsafe method invalidating
//!    the URL): B drops its copies.
//!
//! The waits poll B's `mgr:htcp_monitor` page in bounded loops; nothing is
//! timed.

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peer_lab::{free_udp_port, get, mgr_page, start_cuttle, CuttleNode};
use support::{Origin, Reply, Req, TempDir};

const A_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 63, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 63, 2);
const ORIGIN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 63, 9);

/// `key=value` of B's `peer <A>` line on its `mgr:htcp_monitor` page.
fn field(page: &str, peer: Ipv4Addr, key: &str) -> Option<u64> {
    let prefix = format!("peer {peer} ");
    let line = page.lines().find(|l| l.starts_with(&prefix))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{key}="))?.parse().ok())
}

/// Polls `node`'s view of A until `key` is at least `want` (at most 20 s).
async fn wait_field(node: &CuttleNode, key: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = mgr_page(node.addr, "htcp_monitor").await;
        if field(&page, A_IP, key).is_some_and(|v| v >= want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never reached {want} at {}:\n{page}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until B's set of A is synced and says A holds `objects`.
async fn wait_synced_with(b: &CuttleNode, objects: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = mgr_page(b.addr, "htcp_monitor").await;
        let synced = page.contains(&format!("peer {A_IP} ")) && page.contains("state=synced");
        if synced && field(&page, A_IP, "objects") == Some(objects) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "B's set of A never held {objects}:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// (result code/status, hierarchy) of `node`'s `nth` log line for `url`
/// (waiting a moment for it: logs are buffered).
fn line(node: &CuttleNode, url: &str, nth: usize) -> (String, String) {
    let lines = peer_lab::log_lines(&node.log, url, nth + 1);
    let f = lines.get(nth).unwrap_or_else(|| {
        panic!(
            "no line {nth} for {url}:\n{}",
            std::fs::read_to_string(&node.log).unwrap_or_default()
        )
    });
    (f[3].clone(), f[8].clone())
}

/// The origin: `path` answers `vN` (body and ETag) for the current N,
/// fresh for an hour; POST answers 200 (and changes nothing).
fn changing(origin: &Origin, path: &str) -> Arc<AtomicU32> {
    let version = Arc::new(AtomicU32::new(1));
    let v = Arc::clone(&version);
    origin.route(path, move |_| {
        let n = v.load(Ordering::SeqCst);
        Reply::ok(format!("v{n}"))
            .cc("max-age=3600")
            .header("etag", format!("\"v{n}\""))
            .header("content-type", "text/plain")
    });
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_at_a_reach_b_as_invalidations_and_updates() {
    let tmp = TempDir::new("mon-push");
    let origin = Origin::start_on(ORIGIN_IP).await;
    let paths = ["/rare", "/hot", "/purged", "/posted"];
    let versions: Vec<Arc<AtomicU32>> = paths.iter().map(|p| changing(&origin, p)).collect();
    let url = |p: &str| origin.url(p);

    let a_htcp = free_udp_port(A_IP);
    let a = start_cuttle(
        &tmp.path().join("a"),
        A_IP,
        &format!(
            "icp_port 0\n\
             htcp_port {a_htcp}\n\
             udp_incoming_address {A_IP}\n\
             udp_outgoing_address {A_IP}\n\
             tcp_outgoing_address {A_IP}\n\
             htcp_access allow test_clients\n\
             htcp_monitor_max_subscribers 4\n\
             htcp_monitor_update_hits 4 window=10minutes\n\
             acl purge method PURGE\n\
             http_access allow purge test_clients\n"
        ),
    );
    let b = start_cuttle(
        &tmp.path().join("b"),
        B_IP,
        &format!(
            "icp_port 0\n\
             udp_outgoing_address {B_IP}\n\
             tcp_outgoing_address {B_IP}\n\
             cache_peer {A_IP} sibling {} {a_htcp} htcp=monitor cuttle no-digest\n",
            a.addr.port()
        ),
    );
    wait_synced_with(&b, 0).await;
    let b_addr = b.addr;
    peer_lab::wait_peer_up(async || mgr_page(b_addr, "server_list").await).await;

    // B holds each object, fetched through A; "/hot" is used four times
    // at A first (A counts uses only while someone subscribes).
    for (i, p) in paths.iter().enumerate() {
        let uses = if *p == "/hot" { 4 } else { 1 };
        for _ in 0..uses {
            assert_eq!(get(a.addr, &url(p)).await, (200, "v1".to_string()));
        }
        wait_synced_with(&b, i as u64 + 1).await;
        assert_eq!(get(b.addr, &url(p)).await, (200, "v1".to_string()));
        assert_eq!(
            line(&b, &url(p), 0).1,
            format!("MON_SIBLING_HIT/{A_IP}"),
            "B fetched {p} through A"
        );
    }

    // 1. A rarely used object changes; A revalidates it: invalidation.
    versions[0].store(2, Ordering::SeqCst);
    let reload = Req::get(&url("/rare"))
        .header("cache-control", "max-age=0")
        .send_to(a.addr)
        .await;
    assert_eq!((reload.status, reload.text()), (200, "v2".to_string()));
    wait_field(&b, "invalidations", 1).await;
    assert_eq!(get(b.addr, &url("/rare")).await, (200, "v2".to_string()));
    let last = line(&b, &url("/rare"), 1);
    assert!(
        !last.0.contains("HIT"),
        "B served /rare from its own cache after the invalidation: {last:?}"
    );

    // 2. A popular object changes: update, refetched in the background.
    versions[1].store(2, Ordering::SeqCst);
    let reload = Req::get(&url("/hot"))
        .header("cache-control", "max-age=0")
        .send_to(a.addr)
        .await;
    assert_eq!((reload.status, reload.text()), (200, "v2".to_string()));
    wait_field(&b, "refetches_done", 1).await;
    // A's lines for /hot: four uses, B's fetch, the reload, B's refetch
    // (from B's address, low priority).
    let at_a = peer_lab::log_lines(&a.log, &url("/hot"), 7);
    let from_b = |lines: &[Vec<String>]| lines.iter().filter(|f| f[2] == B_IP.to_string()).count();
    assert_eq!(from_b(&at_a), 2, "{at_a:?}");
    assert_eq!(get(b.addr, &url("/hot")).await, (200, "v2".to_string()));
    let last = line(&b, &url("/hot"), 1);
    assert!(
        last.0.starts_with("TCP_HIT/200") || last.0.starts_with("TCP_MEM_HIT/200"),
        "B's request after the update was not a local hit: {last:?}"
    );
    assert_eq!(last.1, "HIER_NONE/-", "{last:?}");
    // A logs in order: once a later request of ours is there, any request
    // B sent for /hot would be too.
    get(a.addr, &url("/sentinel")).await;
    peer_lab::log_lines(&a.log, &url("/sentinel"), 1);
    let at_a = peer_lab::log_lines(&a.log, &url("/hot"), 7);
    assert_eq!(from_b(&at_a), 2, "B went to A at request time: {at_a:?}");

    // 3. PURGE at A, and a POST through A: B drops its copies.
    let purged = Req::new("PURGE", &url("/purged")).send_to(a.addr).await;
    assert_eq!(purged.status, 200, "PURGE at A");
    let posted = Req::new("POST", &url("/posted")).send_to(a.addr).await;
    assert_eq!(posted.status, 200, "POST through A");
    wait_field(&b, "invalidations", 3).await;
    for p in ["/purged", "/posted"] {
        assert_eq!(get(b.addr, &url(p)).await, (200, "v1".to_string()));
        let last = line(&b, &url(p), 1);
        assert!(
            !last.0.contains("HIT"),
            "B served {p} from its own cache after A's change: {last:?}"
        );
    }

    // The counters, on both sides.
    let a_page = mgr_page(a.addr, "htcp_monitor").await;
    assert!(
        a_page.contains("invalidations_sent=3 updates_sent=1"),
        "{a_page}"
    );
    let metrics = mgr_page(b.addr, "metrics").await;
    for series in [
        format!("cuttle_htcp_monitor_updates_received_total{{peer=\"{A_IP}\"}} 1"),
        format!("cuttle_htcp_monitor_invalidations_received_total{{peer=\"{A_IP}\"}} 3"),
        format!("cuttle_htcp_monitor_refetches_done_total{{peer=\"{A_IP}\"}} 1"),
        format!("cuttle_htcp_monitor_refetches_failed_total{{peer=\"{A_IP}\"}} 0"),
    ] {
        assert!(
            metrics.contains(&series),
            "no {series} in B's metrics:\n{metrics}"
        );
    }
    let metrics = mgr_page(a.addr, "metrics").await;
    for series in [
        "cuttle_htcp_monitor_invalidations_sent_total 3",
        "cuttle_htcp_monitor_updates_sent_total 1",
    ] {
        assert!(
            metrics.contains(series),
            "no {series} in A's metrics:\n{metrics}"
        );
    }
}

/// The notification traffic a subscriber receives under a 2,000 req/s
/// replay at A (README "HTCP MON between cuttle peers", Traffic): 16
/// clients on keep-alive connections, each paced at 125 req/s for 10 s
/// (20,000 requests, bounded), URLs drawn from 1,000 objects by a Zipf
/// law (exponent 0.8: a first miss of each, then mostly hits), and every
/// 100th request first changes its object at the origin and asks A with
/// `max-age=0` (A revalidates: a new version, a change notice). B
/// subscribes and sends nothing. Prints the bytes A sent B per second and
/// the achieved request rate; asserts only that the replay ran. Run it
/// with `cargo test --release --test mon_push -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn notification_traffic_at_2000_req_s() {
    const OBJECTS: usize = 1000;
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 1250;
    const PACE: Duration = Duration::from_millis(8);
    let tmp = TempDir::new("mon-push-traffic");
    let (a_ip, b_ip, origin_ip) = (
        Ipv4Addr::new(127, 0, 63, 11),
        Ipv4Addr::new(127, 0, 63, 12),
        Ipv4Addr::new(127, 0, 63, 19),
    );
    let origin = Origin::start_on(origin_ip).await;
    let versions: Arc<Vec<Arc<AtomicU32>>> = Arc::new(
        (0..OBJECTS)
            .map(|i| changing(&origin, &format!("/z/{i}")))
            .collect(),
    );
    let a_htcp = free_udp_port(a_ip);
    let a = start_cuttle(
        &tmp.path().join("a"),
        a_ip,
        &format!(
            "icp_port 0\n\
             htcp_port {a_htcp}\n\
             udp_incoming_address {a_ip}\n\
             udp_outgoing_address {a_ip}\n\
             htcp_access allow test_clients\n\
             htcp_monitor_max_subscribers 4\n"
        ),
    );
    let b = start_cuttle(
        &tmp.path().join("b"),
        b_ip,
        &format!(
            "icp_port 0\n\
             udp_outgoing_address {b_ip}\n\
             cache_peer {a_ip} sibling {} {a_htcp} htcp=monitor cuttle no-digest\n",
            a.addr.port()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mgr_page(b.addr, "htcp_monitor")
        .await
        .contains("state=synced")
    {
        assert!(Instant::now() < deadline, "B never synced with A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Zipf(0.8) over the objects, as a cumulative table.
    let weights: Vec<f64> = (1..=OBJECTS).map(|r| (r as f64).powf(-0.8)).collect();
    let total: f64 = weights.iter().sum();
    let cdf: Arc<Vec<f64>> = Arc::new(
        weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect(),
    );
    let subscriber_bytes = |page: &str| -> u64 {
        page.lines()
            .filter(|l| l.starts_with("subscriber "))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("bytes=")?.parse::<u64>().ok())
            })
            .sum()
    };
    let before = subscriber_bytes(&mgr_page(a.addr, "htcp_monitor").await);
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (proxy, base) = (a.addr, origin.url("/z/"));
            let (cdf, versions) = (Arc::clone(&cdf), Arc::clone(&versions));
            tokio::spawn(async move {
                let mut conn = support::Conn::open(proxy).await;
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
                let mut tick = tokio::time::interval(PACE);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut ok = 0usize;
                for n in 0..PER_CLIENT {
                    tick.tick().await;
                    // xorshift64*: a uniform draw in [0, 1).
                    seed ^= seed >> 12;
                    seed ^= seed << 25;
                    seed ^= seed >> 27;
                    let u = (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64
                        / (1u64 << 53) as f64;
                    let i = cdf.partition_point(|&p| p < u).min(OBJECTS - 1);
                    let mut req = Req::get(&format!("{base}{i}"));
                    if n % 100 == 99 {
                        versions[i].fetch_add(1, Ordering::SeqCst);
                        req = req.header("cache-control", "max-age=0");
                    }
                    if conn.send(req).await.status == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for c in clients {
        ok += c.await.expect("a replay client");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The notices of the last round: A's backlog drained.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page = mgr_page(a.addr, "htcp_monitor").await;
    let bytes = subscriber_bytes(&page) - before;
    assert_eq!(ok, CLIENTS * PER_CLIENT, "every request answered 200");
    let field = |k: &str| -> u64 {
        page.lines()
            .find(|l| l.starts_with("totals "))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(&format!("{k}="))?.parse().ok())
            })
            .unwrap_or(0)
    };
    println!(
        "{ok} requests in {elapsed:.2} s ({:.0} req/s): {bytes} notification bytes to the subscriber, {:.0} bytes/s; {} notices sent, of them {} invalidations and {} updates",
        ok as f64 / elapsed,
        bytes as f64 / elapsed,
        field("notices_sent"),
        field("invalidations_sent"),
        field("updates_sent"),
    );
    drop(b);
}
