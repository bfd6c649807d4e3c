//! HTCP MON subscriptions between cuttle peers (README "HTCP MON"): three
//! real cuttle siblings on 127.0.62.1-3, each monitoring the other two with
//! `htcp=monitor`, and an origin on 127.0.62.9.
//!
//! 1. An object fetched at A shows in B's monitored set of A, and B's next
//!    request for it is a `MON_SIBLING_HIT` to A; A never received an HTCP
//!    TST or an ICP query (its access.log has no such line).
//! 2. After a PURGE at A, B's set loses the object and B fetches it DIRECT.
//! 3. `kill -9` A, empty its cache, restart it: B resynchronises (a new
//!    subscription and a full resync) and an object A held before the crash
//!    is not a MON hit at B any more; one fetched at the new A is.
//! 4. A replay of distinct objects at A: the notification bytes A sent per
//!    subscriber and per second are printed (not asserted).
//!
//! The waits poll B's `mgr:htcp_monitor` page in bounded loops; nothing is
//! timed (the delay from A's fetch to B's knowing is printed).

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use peer_lab::{free_udp_port, get, mgr_page, spawn_cuttle, start_cuttle, text_origin, CuttleNode};
use support::{Req, TempDir};

const IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 62, 1),
    Ipv4Addr::new(127, 0, 62, 2),
    Ipv4Addr::new(127, 0, 62, 3),
];
const ORIGIN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 62, 9);

/// What a node's `mgr:htcp_monitor` says of one monitored peer.
#[derive(Debug, Clone, Default)]
struct Monitored {
    state: String,
    objects: u64,
    resyncs: u64,
    hits: u64,
}

/// The `peer NAME key=value...` line of `peer` on `page`.
fn monitored(page: &str, peer: Ipv4Addr) -> Option<Monitored> {
    let prefix = format!("peer {peer} ");
    let line = page.lines().find(|l| l.starts_with(&prefix))?;
    let mut m = Monitored::default();
    for field in line.split_whitespace() {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        match k {
            "state" => m.state = v.to_string(),
            "objects" => m.objects = v.parse().ok()?,
            "resyncs" => m.resyncs = v.parse().ok()?,
            "hits" => m.hits = v.parse().ok()?,
            _ => {}
        }
    }
    Some(m)
}

/// Polls `node`'s view of `peer` until `want` holds (at most 20 s).
async fn wait_view(
    node: &CuttleNode,
    peer: Ipv4Addr,
    want: impl Fn(&Monitored) -> bool,
) -> Monitored {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = mgr_page(node.addr, "htcp_monitor").await;
        if let Some(m) = monitored(&page, peer) {
            if want(&m) {
                return m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}'s view of {peer} never became what was wanted:\n{page}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The cuttle.conf lines of node `i`: HTCP on its own port, MON answered,
/// the other two as `htcp=monitor cuttle` siblings (none when `peers` is
/// false: ports are not known yet).
fn lines(i: usize, htcp: &[u16; 3], http: Option<&[SocketAddr; 3]>) -> String {
    let ip = IPS[i];
    let mut s = format!(
        "icp_port 0\n\
         htcp_port {}\n\
         udp_incoming_address {ip}\n\
         udp_outgoing_address {ip}\n\
         tcp_outgoing_address {ip}\n\
         htcp_access allow test_clients\n\
         htcp_monitor_max_subscribers 4\n\
         htcp_monitor_max_lease 5 seconds\n\
         acl purge method PURGE\n\
         http_access allow purge test_clients\n",
        htcp[i]
    );
    if let Some(http) = http {
        for j in (0..3).filter(|&j| j != i) {
            s.push_str(&format!(
                "cache_peer {} sibling {} {} htcp=monitor cuttle no-digest\n",
                IPS[j],
                http[j].port(),
                htcp[j]
            ));
        }
    }
    s
}

/// The access.log lines of `node` for `url`, and every HTCP/ICP query line.
fn log_text(node: &CuttleNode) -> String {
    std::fs::read_to_string(&node.log).unwrap_or_default()
}

/// The hierarchy field of `node`'s `nth` GET of `url` (CLRs that a PURGE
/// elsewhere sent are logged too, as HTCP_CLR).
fn hierarchy_of(node: &CuttleNode, url: &str, nth: usize) -> String {
    let lines = peer_lab::lines_where(&node.log, url, |f| f.get(5).is_some_and(|m| m == "GET"));
    lines
        .get(nth)
        .and_then(|f| f.get(8).cloned())
        .unwrap_or_else(|| {
            panic!(
                "no line {nth} for {url} in {}:\n{}",
                node.log.display(),
                log_text(node)
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_siblings_monitor_each_other() {
    let tmp = TempDir::new("htcp-monitor");
    let mut paths: Vec<String> = ["/one", "/two", "/three", "/four"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Under what A's 16 MB cache_dir holds (1,024 slots): none evicted.
    const REPLAY: usize = 1000;
    paths.extend((0..REPLAY).map(|i| format!("/r/{i}")));
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let origin = text_origin(ORIGIN_IP, &refs).await;
    let url = |p: &str| origin.url(p);

    let htcp = [0, 1, 2].map(|i| free_udp_port(IPS[i]));
    let mut nodes: Vec<CuttleNode> = (0..3)
        .map(|i| {
            start_cuttle(
                &tmp.path().join(format!("n{i}")),
                IPS[i],
                &lines(i, &htcp, None),
            )
        })
        .collect();
    let http = [nodes[0].addr, nodes[1].addr, nodes[2].addr];
    for (i, n) in nodes.iter().enumerate() {
        n.reload(&lines(i, &htcp, Some(&http)));
    }
    // Everyone's view of everyone: synced (an empty store resynced).
    for (i, n) in nodes.iter().enumerate() {
        for j in (0..3).filter(|&j| j != i) {
            wait_view(n, IPS[j], |m| m.state == "synced").await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while mgr_page(n.addr, "server_list")
            .await
            .matches("Status     : Up")
            .count()
            < 2
        {
            assert!(
                Instant::now() < deadline,
                "peers of {} never came up",
                n.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (a, b) = (&nodes[0], &nodes[1]);

    // 1. Fetched at A, a MON_SIBLING_HIT at B.
    let fetched = Instant::now();
    assert_eq!(get(a.addr, &url("/one")).await.0, 200);
    let seen = wait_view(b, IPS[0], |m| m.objects == 1).await;
    println!(
        "B knew of A's new object {:?} after A's reply",
        fetched.elapsed()
    );
    assert_eq!(seen.state, "synced");
    assert_eq!(get(b.addr, &url("/one")).await.0, 200);
    assert_eq!(
        hierarchy_of(b, &url("/one"), 0),
        format!("MON_SIBLING_HIT/{}", IPS[0])
    );
    let a_log = log_text(a);
    assert!(
        !a_log.contains("HTCP_TST") && !a_log.contains("ICP_QUERY"),
        "A was queried:\n{a_log}"
    );
    wait_view(b, IPS[0], |m| m.hits == 1).await;

    // 2. PURGE at A: B no longer picks A for it.
    assert_eq!(get(a.addr, &url("/two")).await.0, 200);
    wait_view(b, IPS[0], |m| m.objects == 2).await;
    let purged = Req::new("PURGE", &url("/two")).send_to(a.addr).await;
    assert_eq!(purged.status, 200, "PURGE at A");
    wait_view(b, IPS[0], |m| m.objects == 1).await;
    assert_eq!(get(b.addr, &url("/two")).await.0, 200);
    assert_eq!(
        hierarchy_of(b, &url("/two"), 0),
        format!("HIER_DIRECT/{ORIGIN_IP}")
    );

    // 3. kill -9 A, empty its cache, restart it: B resynchronises and
    // does not take A's pre-crash object for a hit.
    assert_eq!(get(a.addr, &url("/three")).await.0, 200);
    let before = wait_view(b, IPS[0], |m| m.objects == 2).await;
    let a = nodes.remove(0);
    let (a_addr, a_dir, a_log) = (a.addr, a.dir.clone(), a.log.clone());
    drop(a.node); // SIGKILL
    std::fs::remove_dir_all(a_dir.join("cache")).expect("remove A's cache");
    let a = CuttleNode {
        node: spawn_cuttle(&a_dir.join("cuttle.conf")),
        addr: a_addr,
        log: a_log,
        dir: a_dir,
    };
    let b = &nodes[0];
    let after = wait_view(b, IPS[0], |m| {
        m.state == "synced" && m.resyncs > before.resyncs && m.objects == 0
    })
    .await;
    println!("B resynced A: {after:?}");
    assert_eq!(get(b.addr, &url("/three")).await.0, 200);
    assert_eq!(
        hierarchy_of(b, &url("/three"), 0),
        format!("HIER_DIRECT/{ORIGIN_IP}")
    );
    // The new A's objects are known again.
    assert_eq!(get(a.addr, &url("/four")).await.0, 200);
    wait_view(b, IPS[0], |m| m.objects == 1).await;
    assert_eq!(get(b.addr, &url("/four")).await.0, 200);
    assert_eq!(
        hierarchy_of(b, &url("/four"), 0),
        format!("MON_SIBLING_HIT/{}", IPS[0])
    );

    // Every request at B was decided from the sets: a synced set's miss is
    // not asked either, so neither A nor C ever got a TST.
    for n in [&a, &nodes[1]] {
        let log = log_text(n);
        assert!(!log.contains("HTCP_TST"), "{} was queried:\n{log}", n.addr);
    }
    let metrics = mgr_page(b.addr, "metrics").await;
    for series in [
        format!("cuttle_htcp_monitor_hits_total{{peer=\"{}\"}} 2", IPS[0]),
        format!(
            "cuttle_htcp_monitor_false_hits_total{{peer=\"{}\"}} 0",
            IPS[0]
        ),
        format!("cuttle_htcp_monitor_usable{{peer=\"{}\"}} 1", IPS[0]),
    ] {
        assert!(
            metrics.contains(&series),
            "no {series} in B's metrics:\n{metrics}"
        );
    }

    let status = mgr_page(b.addr, "status").await;
    assert!(
        status.contains(&format!(
            "<tr data-peer=\"{}\"><td>{}</td><td>synced</td>",
            IPS[0], IPS[0]
        )),
        "no synced row for A on B's status page:\n{status}"
    );
    // B's and C's subscriptions: C's may still be on its way on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = mgr_page(a.addr, "status").await;
        let subscribers = status.matches("<tr class=\"subscriber\">").count();
        if subscribers == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{subscribers} subscribers:\n{status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 4. Notification traffic under a replay of distinct objects at A.
    // Eight clients at once, each its share of the objects (bounded).
    const CLIENTS: usize = 8;
    let sent_before = mgr_page(a.addr, "htcp_monitor").await;
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (proxy, base) = (a.addr, origin.url("/r/"));
            tokio::spawn(async move {
                for i in (c..REPLAY).step_by(CLIENTS) {
                    assert_eq!(get(proxy, &format!("{base}{i}")).await.0, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("a replay client");
    }
    wait_view(b, IPS[0], |m| m.objects == 1 + REPLAY as u64).await;
    let elapsed = started.elapsed().as_secs_f64();
    let sent_after = mgr_page(a.addr, "htcp_monitor").await;
    let bytes = |p: &str| -> Vec<u64> {
        p.lines()
            .filter(|l| l.starts_with("subscriber "))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("bytes=")?.parse().ok())
            })
            .collect()
    };
    let (b0, b1) = (bytes(&sent_before), bytes(&sent_after));
    assert_eq!(b1.len(), 2, "A has two subscribers:\n{sent_after}");
    for (k, after) in b1.iter().enumerate() {
        let delta = after - b0.get(k).copied().unwrap_or(0);
        println!(
            "subscriber {k}: {delta} notification bytes for {REPLAY} objects in {elapsed:.2} s: {:.0} bytes/s ({:.1} bytes/object, {:.0} req/s)",
            delta as f64 / elapsed,
            delta as f64 / REPLAY as f64,
            REPLAY as f64 / elapsed
        );
    }
    drop(a);
}

/// `cuttle check` refuses `htcp=monitor` toward a peer not marked `cuttle`
/// (it could be a Squid, which ignores MON), and takes it with the mark.
#[test]
fn check_refuses_monitor_without_the_cuttle_mark() {
    let tmp = TempDir::new("htcp-monitor-check");
    let check = |peer_line: &str| {
        let conf = tmp.path().join("check.conf");
        std::fs::write(
            &conf,
            format!("pid_filename none\nhtcp_port 4827\n{peer_line}\n"),
        )
        .expect("conf");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["check", "-f"])
            .arg(&conf)
            .output()
            .expect("run cuttle check");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check("cache_peer squid.example sibling 3128 4827 htcp=monitor");
    assert!(!ok, "accepted:\n{text}");
    assert!(
        text.contains("htcp=monitor subscribes with HTCP MON, which only cuttle answers"),
        "{text}"
    );
    let (ok, text) = check("cache_peer 127.0.0.2 sibling 3128 4827 htcp=monitor cuttle");
    assert!(ok, "refused:\n{text}");
}

/// A Squid 5.7 wrongly marked `cuttle`: it answers no MON, so cuttle's set
/// of it never becomes usable and cuttle asks it with HTCP TST as a plain
/// `htcp` peer (SIBLING_HIT for what Squid holds). Fails, never skips,
/// when squid is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_marked_cuttle_is_asked_with_tst() {
    use peer_lab::{free_tcp_port, tail, Squid};
    let tmp = TempDir::new("htcp-monitor-squid");
    let (squid_ip, cuttle_ip) = (Ipv4Addr::new(127, 0, 62, 20), Ipv4Addr::new(127, 0, 62, 21));
    let origin = text_origin(Ipv4Addr::new(127, 0, 62, 29), &["/held"]).await;
    let url = origin.url("/held");
    let dir = tmp.path().join("squid");
    let (http, htcp_port) = (free_tcp_port(squid_ip), free_udp_port(squid_ip));
    let d = dir.display();
    let conf = format!(
        "http_port {squid_ip}:{http}\n\
         icp_port 0\n\
         htcp_port {htcp_port}\n\
         udp_incoming_address {squid_ip}\n\
         udp_outgoing_address {squid_ip}\n\
         tcp_outgoing_address {squid_ip}\n\
         visible_hostname squid-{squid_ip}\n\
         pid_filename {d}/squid.pid\n\
         cache_log {d}/cache.log\n\
         access_log stdio:{d}/access.log squid\n\
         cache_store_log none\n\
         netdb_filename none\n\
         coredump_dir {d}\n\
         cache_mem 8 MB\n\
         pinger_enable off\n\
         dns_nameservers 127.0.0.1\n\
         shutdown_lifetime 0 seconds\n\
         acl test_clients src 127.0.0.0/8\n\
         htcp_access allow test_clients\n\
         http_access allow test_clients\n\
         http_access deny all\n"
    );
    let squid = Squid::start_with_conf(&dir, squid_ip, http, 0, &conf);
    let cache_log = dir.join("cache.log");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&cache_log)
        .unwrap_or_default()
        .contains("Accepting HTCP messages")
    {
        assert!(
            Instant::now() < deadline,
            "no HTCP in Squid:\n{}",
            tail(&cache_log, 20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(squid.http_addr(), &url).await.0, 200, "cached at Squid");
    let ours = free_udp_port(cuttle_ip);
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "icp_port 0\n\
             htcp_port {ours}\n\
             udp_incoming_address {cuttle_ip}\n\
             udp_outgoing_address {cuttle_ip}\n\
             tcp_outgoing_address {cuttle_ip}\n\
             icp_query_timeout 4000\n\
             cache_peer {squid_ip} sibling {http} {htcp_port} htcp=monitor cuttle no-digest\n"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mgr_page(cuttle.addr, "server_list")
        .await
        .contains("Status     : Up")
    {
        assert!(Instant::now() < deadline, "Squid never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Squid stays silent to MON: after a few tries the set is still unusable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let page = mgr_page(cuttle.addr, "htcp_monitor").await;
    let line = page
        .lines()
        .find(|l| l.starts_with(&format!("peer {squid_ip} ")))
        .unwrap_or_else(|| panic!("no line for Squid:\n{page}"));
    assert!(
        line.contains("state=subscribing")
            && line.contains("usable=no")
            && line.contains("objects=0"),
        "{line}"
    );
    assert_eq!(get(cuttle.addr, &url).await.0, 200);
    assert_eq!(
        hierarchy_of(&cuttle, &url, 0),
        format!("SIBLING_HIT/{squid_ip}")
    );
}
