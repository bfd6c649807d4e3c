//! `cut_through` with real processes (issue 20): a three-level chain,
//! bottom cuttle B -> cuttle M -> Squid 5.7 S -> an origin that answers
//! after 200 ms. B has `cut_through on min_depth=2 depth=2`; M has
//! `cut_through on min_depth=2` (its depth is 1), so it passes B's
//! only-if-cached request on to S and races nothing itself.
//!
//! A miss at B goes up the chain with only-if-cached (every level answers
//! from its cache or 504, none goes to the origin) and straight to the
//! origin from B: the origin sees one request, from B alone (its Via names
//! B only). An object S holds is served from S (`PARENT_HIT` at B) and the
//! origin sees nothing more. The times are printed, not asserted.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use peer_lab::{
    get, log_lines, mgr_page, start_cuttle, tail, text_body, wait_peer_up, CuttleNode, Squid,
};
use support::{Origin, Reply, TempDir};

/// M's line: it takes part (passes only-if-cached misses on to S) but at
/// its depth (1: one parent) never races a miss of its own.
const MID_LINE: &str = "cut_through on min_depth=2";

/// The origin's answer time.
const ORIGIN_DELAY: Duration = Duration::from_millis(200);

/// The chain and its origin, each on its own loopback address.
struct Chain {
    origin: Origin,
    origin_ip: Ipv4Addr,
    squid: Squid,
    mid: CuttleNode,
    bottom: CuttleNode,
    _tmp: TempDir,
}

/// An origin on `ip` serving every path in `paths` as its text body,
/// cacheable for an hour, after [`ORIGIN_DELAY`].
async fn slow_origin(ip: Ipv4Addr, paths: &[&str]) -> Origin {
    let origin = Origin::start_on(ip).await;
    for p in paths {
        let text = text_body(p);
        origin.route(p, move |_| {
            Reply::ok(text.clone())
                .cc("max-age=3600")
                .header("content-type", "text/plain")
                .delay(ORIGIN_DELAY)
        });
    }
    origin
}

/// A cuttle's lines for one parent at `parent` (no ICP), its outgoing
/// address `ip`, then `more`.
fn child_lines(ip: Ipv4Addr, parent: SocketAddr, more: &str) -> String {
    format!(
        "cache_peer {} parent {} 0 no-query no-digest\n\
         tcp_outgoing_address {ip}\n\
         {more}\n",
        parent.ip(),
        parent.port()
    )
}

impl Chain {
    /// Starts the chain on 127.0.`net`.1 (B), .2 (M), .3 (S), .9 (origin)
    /// with `bottom_line` as B's cut_through line.
    async fn start(tag: &str, net: u8, paths: &[&str], bottom_line: &str) -> Chain {
        let ip = |n| Ipv4Addr::new(127, 0, net, n);
        let tmp = TempDir::new(tag);
        let origin_ip = ip(9);
        let origin = slow_origin(origin_ip, paths).await;
        let squid = Squid::start(&tmp.path().join("squid"), ip(3), "127.0.0.0/8", "");
        let mid = start_cuttle(
            &tmp.path().join("mid"),
            ip(2),
            &child_lines(ip(2), squid.http_addr(), MID_LINE),
        );
        let bottom = start_cuttle(
            &tmp.path().join("bottom"),
            ip(1),
            &child_lines(ip(1), mid.addr, bottom_line),
        );
        for node in [&mid, &bottom] {
            let addr = node.addr;
            wait_peer_up(async || mgr_page(addr, "server_list").await).await;
        }
        Chain {
            origin,
            origin_ip,
            squid,
            mid,
            bottom,
            _tmp: tmp,
        }
    }

    /// Everything the three logs say, for a failure message.
    fn logs(&self) -> String {
        format!(
            "B:\n{}\nM:\n{}\nS:\n{}\nB's output:\n{}",
            tail(&self.bottom.log, 10),
            tail(&self.mid.log, 10),
            tail(&self.squid.access_log(), 10),
            self.bottom.output()
        )
    }
}

/// `code/status hierarchy/host` of the `n`th (from 1) line of `log` for `url`.
fn outcome(log: &Path, url: &str, n: usize) -> String {
    log_lines(log, url, n)
        .get(n - 1)
        .map(|f| format!("{} {}", f[3], f[8]))
        .unwrap_or_default()
}

/// Waits until `log` has `n` lines for `url` (the level answered).
fn wait_lines(log: &Path, url: &str, n: usize) {
    assert!(log_lines(log, url, n).len() >= n, "{}", tail(log, 10));
}

/// The value of `name = N` on B's counters page.
async fn counter(node: &CuttleNode, name: &str) -> String {
    let page = mgr_page(node.addr, "counters").await;
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .unwrap_or("(absent)")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_at_the_bottom_reaches_the_origin_once_and_from_the_bottom() {
    let chain = Chain::start(
        "cut-through-miss",
        20,
        &["/miss"],
        "cut_through on min_depth=2 depth=2",
    )
    .await;
    let url = chain.origin.url("/miss");
    let started = Instant::now();
    assert_eq!(
        get(chain.bottom.addr, &url).await,
        (200, text_body("/miss"))
    );
    let took = started.elapsed();
    // Both upper levels answered (504: not cached, and nobody fetched).
    wait_lines(&chain.mid.log, &url, 1);
    wait_lines(&chain.squid.access_log(), &url, 1);
    assert_eq!(
        outcome(&chain.bottom.log, &url, 1),
        format!("TCP_MISS/200 CUT_THROUGH_DIRECT/{}", chain.origin_ip),
        "{}",
        chain.logs()
    );
    assert_eq!(
        outcome(&chain.squid.access_log(), &url, 1),
        "TCP_MISS/504 HIER_NONE/-",
        "S answered only-if-cached from its cache\n{}",
        chain.logs()
    );
    // Anything late would have arrived by now.
    tokio::time::sleep(ORIGIN_DELAY).await;
    let seen = chain.origin.requests("/miss");
    assert_eq!(seen.len(), 1, "one origin request\n{}", chain.logs());
    let via = seen[0].header("via");
    assert!(
        via.contains("cuttle-127.0.20.1") && !via.contains("127.0.20.2") && !via.contains("squid"),
        "the origin's request came from B alone: Via {via:?}"
    );
    // B stored what it fetched: the next request is B's own hit.
    assert_eq!(
        get(chain.bottom.addr, &url).await,
        (200, text_body("/miss"))
    );
    assert!(outcome(&chain.bottom.log, &url, 2).ends_with("/200 HIER_NONE/-"));
    assert_eq!(chain.origin.count("/miss"), 1);
    assert_eq!(counter(&chain.bottom, "cut_through.requests").await, "1");
    assert_eq!(
        counter(&chain.bottom, "cut_through.won_by_origin").await,
        "1"
    );
    assert_eq!(
        counter(&chain.bottom, "cut_through.won_by_hierarchy").await,
        "0"
    );
    let metrics = support::raw(
        chain.bottom.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        metrics.contains("cuttle_cut_through_total{won_by=\"origin\"} 1"),
        "{metrics}"
    );
    let status = mgr_page(chain.bottom.addr, "status").await;
    assert!(
        status.contains(
            "<tr><td>requests</td><td>1</td></tr><tr><td>won by origin</td><td>1</td></tr>\
             <tr><td>won by hierarchy</td><td>0</td></tr>"
        ),
        "the status page's cut-through table:\n{status}"
    );
    eprintln!(
        "a miss through the chain with cut-through took {took:?} (origin delay {ORIGIN_DELAY:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_at_the_squid_parent_is_served_from_it_and_the_origin_sees_nothing() {
    let chain = Chain::start(
        "cut-through-hit",
        21,
        &["/warm"],
        "cut_through on min_depth=2 depth=2 background",
    )
    .await;
    let url = chain.origin.url("/warm");
    // S holds the object (one client request, one origin request).
    assert_eq!(
        get(chain.squid.http_addr(), &url).await,
        (200, text_body("/warm"))
    );
    assert_eq!(chain.origin.count("/warm"), 1);
    let started = Instant::now();
    assert_eq!(
        get(chain.bottom.addr, &url).await,
        (200, text_body("/warm"))
    );
    let took = started.elapsed();
    let mid_ip = chain.mid.addr.ip();
    assert_eq!(
        outcome(&chain.bottom.log, &url, 1),
        format!("TCP_MISS/200 PARENT_HIT/{mid_ip}"),
        "{}",
        chain.logs()
    );
    let squid_line = outcome(&chain.squid.access_log(), &url, 2);
    assert!(
        squid_line.starts_with("TCP_HIT/200") || squid_line.starts_with("TCP_MEM_HIT/200"),
        "S served it from its cache: {squid_line}\n{}",
        chain.logs()
    );
    tokio::time::sleep(ORIGIN_DELAY).await;
    assert_eq!(
        chain.origin.count("/warm"),
        1,
        "the hierarchy's hit cost the origin nothing\n{}",
        chain.logs()
    );
    assert_eq!(counter(&chain.bottom, "cut_through.requests").await, "1");
    assert_eq!(
        counter(&chain.bottom, "cut_through.won_by_hierarchy").await,
        "1"
    );
    eprintln!("a hit at S through the chain with cut-through took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cut_through_a_miss_climbs_every_level() {
    // The same chain, cut_through off at B: the miss goes B -> M -> S ->
    // origin, once (the baseline the times above compare with).
    let chain = Chain::start("cut-through-off", 22, &["/climb"], "cut_through off").await;
    let url = chain.origin.url("/climb");
    let started = Instant::now();
    assert_eq!(
        get(chain.bottom.addr, &url).await,
        (200, text_body("/climb"))
    );
    let took = started.elapsed();
    let mid_ip = chain.mid.addr.ip();
    let line = outcome(&chain.bottom.log, &url, 1);
    assert!(
        line.starts_with("TCP_MISS/200 ") && line.ends_with(&format!("/{mid_ip}")),
        "{line}\n{}",
        chain.logs()
    );
    tokio::time::sleep(ORIGIN_DELAY).await;
    let seen = chain.origin.requests("/climb");
    assert_eq!(seen.len(), 1);
    let via = seen[0].header("via");
    assert!(
        via.contains("cuttle-127.0.22.2"),
        "M forwarded it: Via {via:?}"
    );
    assert_eq!(
        outcome(&chain.squid.access_log(), &url, 1),
        format!("TCP_MISS/200 HIER_DIRECT/{}", chain.origin_ip),
        "S fetched it"
    );
    assert_eq!(
        counter(&chain.bottom, "cut_through.requests").await,
        "(absent)"
    );
    eprintln!("a miss through the chain without cut-through took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_exit_the_fast_request_goes_to_the_exit_which_keeps_the_object() {
    // B also has S as a parent named `exit` (after M, so M stays its
    // first): `exit=exit` sends the fast request to S instead of the
    // origin. S fetches (one origin request) and keeps it; the hierarchy
    // request (via M, only-if-cached) finds nothing.
    let net = 23;
    let squid_ip = Ipv4Addr::new(127, 0, net, 3);
    let tmp = TempDir::new("cut-through-exit");
    let origin_ip = Ipv4Addr::new(127, 0, net, 9);
    let origin = slow_origin(origin_ip, &["/exit"]).await;
    let squid = Squid::start(&tmp.path().join("squid"), squid_ip, "127.0.0.0/8", "");
    let mid_ip = Ipv4Addr::new(127, 0, net, 2);
    let mid = start_cuttle(
        &tmp.path().join("mid"),
        mid_ip,
        &child_lines(mid_ip, squid.http_addr(), MID_LINE),
    );
    let b_ip = Ipv4Addr::new(127, 0, net, 1);
    let exit_line = format!(
        "cache_peer {squid_ip} parent {} 0 no-query no-digest name=exit\n\
         cut_through on min_depth=2 depth=2 foreground exit=exit",
        squid.http_port
    );
    let bottom = start_cuttle(
        &tmp.path().join("bottom"),
        b_ip,
        &child_lines(b_ip, mid.addr, &exit_line),
    );
    for node in [&mid, &bottom] {
        let addr = node.addr;
        wait_peer_up(async || mgr_page(addr, "server_list").await).await;
    }
    let url = origin.url("/exit");
    let started = Instant::now();
    assert_eq!(get(bottom.addr, &url).await, (200, text_body("/exit")));
    let took = started.elapsed();
    let logs = || {
        format!(
            "B:\n{}\nM:\n{}\nS:\n{}\nB's output:\n{}",
            tail(&bottom.log, 10),
            tail(&mid.log, 10),
            tail(&squid.access_log(), 10),
            bottom.output()
        )
    };
    assert_eq!(
        outcome(&bottom.log, &url, 1),
        format!("TCP_MISS/200 CUT_THROUGH_EXIT/{squid_ip}"),
        "{}",
        logs()
    );
    // S saw both: the hierarchy's only-if-cached (504) and the fetch.
    wait_lines(&squid.access_log(), &url, 2);
    let mut squid_lines: Vec<String> = (1..=2)
        .map(|n| outcome(&squid.access_log(), &url, n))
        .collect();
    squid_lines.sort();
    assert_eq!(
        squid_lines,
        [
            "TCP_MISS/200 HIER_DIRECT/127.0.23.9".to_string(),
            "TCP_MISS/504 HIER_NONE/-".to_string()
        ],
        "{}",
        logs()
    );
    tokio::time::sleep(ORIGIN_DELAY).await;
    assert_eq!(origin.count("/exit"), 1, "{}", logs());
    // S kept it: a client of S gets S's hit, the origin sees nothing more.
    assert_eq!(
        get(squid.http_addr(), &url).await,
        (200, text_body("/exit"))
    );
    let line = outcome(&squid.access_log(), &url, 3);
    assert!(
        line.starts_with("TCP_HIT/200") || line.starts_with("TCP_MEM_HIT/200"),
        "{line}"
    );
    assert_eq!(origin.count("/exit"), 1);
    eprintln!("a miss with cut-through to the exit took {took:?}");
}
