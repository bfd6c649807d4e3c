//! Simulations small enough to work out by hand: the figures asserted are
//! derived in the comments from the mesh's latencies, sizes and rules.

use std::net::IpAddr;
use std::path::PathBuf;

use super::engine::{Engine, Options};
use super::mesh::Mesh;
use super::report::Report;
use super::trace::{SkipCounts, TraceRequest};

/// The trace's first time: 2001-09-09, any time well after 1970 works.
const T0: f64 = 1_000_000_000.0;

pub(super) struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mesh from its TOML and its nodes' squid.confs (name, text).
pub(super) fn mesh(tag: &str, toml: &str, confs: &[(&str, &str)]) -> (Dir, Mesh) {
    let dir = std::env::temp_dir().join(format!("cuttle-sim-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in confs {
        std::fs::write(
            dir.join(format!("{name}.conf")),
            format!("http_port 3128\npid_filename none\n{text}"),
        )
        .unwrap();
    }
    let path = dir.join("mesh.toml");
    std::fs::write(&path, toml).unwrap();
    let mesh = Mesh::load(&path).unwrap();
    (Dir(dir), mesh)
}

/// A GET of `path` on origin.example at `secs` into the trace (the other
/// sim test modules use it too).
pub(super) fn get(secs: f64, client: &str, path: &str, size: u64) -> TraceRequest {
    TraceRequest {
        time: T0 + secs,
        client: client.parse::<IpAddr>().unwrap(),
        method: http::Method::GET,
        url: format!("http://origin.example{path}"),
        size,
    }
}

fn run<'m>(mesh: &'m Mesh, options: Options, trace: &[TraceRequest]) -> (Engine<'m>, Report) {
    let mut engine = Engine::new(mesh, options).unwrap();
    for r in trace {
        engine.request(r);
    }
    let report = engine.finish(SkipCounts::default()).unwrap();
    (engine, report)
}

fn node<'r>(report: &'r Report, name: &str) -> &'r super::report::Row {
    report.nodes.iter().find(|r| r.node == name).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b.abs() * 0.001 + 1e-9
}

const LINE: &str = r#"
origin_latency_ms = 50
reply_jitter_ms = 0
[nodes.child]
config = "child.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
service_ms = 1
[nodes.parent]
config = "parent.conf"
address = "10.0.0.2"
service_ms = 1
[[links]]
a = "child"
b = "parent"
latency_ms = 10
bandwidth_mbps = 8
"#;

#[test]
fn a_line_of_child_parent_and_origin_worked_by_hand() {
    // child -(10 ms, 8 Mbit/s: 1 ms per 1000 bytes)- parent -(50 ms)- origin.
    // Each node serves in 1 ms. The child holds 2 KB (cache_mem, LRU); its
    // parent is asked nothing (no-query) and is the first-up parent.
    let (_dir, mesh) = mesh(
        "line",
        LINE,
        &[
            (
                "child",
                "cache_mem 2 KB\ncache_peer 10.0.0.2 parent 3128 0 no-query\n",
            ),
            ("parent", "cache_mem 1 MB\n"),
        ],
    );
    let trace = [
        // 1. /a (1000 B), a miss everywhere: child ready at 1, parent gets it
        //    at 11, ready at 12, origin round trip 100 -> 112; back over the
        //    link: 10 + 1 (transfer) -> 123 ms. bytes x hops: 1000 x 1
        //    (origin-parent) + 1000 x 1 (parent-child) = 2000.
        get(0.0, "10.1.0.1", "/a", 1000),
        // 2. /a again, fresh at the child (20 % of an age of an hour or more):
        //    a local hit, 1 ms, no bytes moved.
        get(1.0, "10.1.0.1", "/a", 1000),
        // 3. /b (2000 B), a miss: 1 + 10 + 1 + 100 + 10 + 2 = 124 ms;
        //    bytes x hops 2000 x 2 = 4000. Storing it evicts /a (2 KB store).
        get(2.0, "10.1.0.1", "/b", 2000),
        // 4. /a: gone from the child, a hit at the parent: 1 + 10 + 1 + 10 +
        //    1 = 23 ms; bytes x hops 1000 x 1 = 1000.
        get(3.0, "10.1.0.1", "/a", 1000),
    ];
    let (_, report) = run(&mesh, Options::default(), &trace);
    let child = node(&report, "child");
    assert_eq!(child.requests, 4);
    // Hit ratios: 1 local, 1 parent of 4; 2 misses.
    assert_eq!(child.hit_ratio_local, 0.25);
    assert_eq!(child.hit_ratio_parent, 0.25);
    assert_eq!(child.hit_ratio_sibling, 0.0);
    // The origin fetches are the parent's: 1000 + 2000 bytes.
    let parent = node(&report, "parent");
    assert_eq!((parent.origin_requests, parent.origin_bytes), (2, 3000));
    assert_eq!(parent.peer_requests, 3);
    assert_eq!(child.origin_requests, 0);
    // 2000 + 0 + 4000 + 1000.
    assert_eq!(child.bytes_hops, 7000.0);
    // (123 + 1 + 124 + 23) / 4 = 67.75; sorted 1, 23, 123, 124: the median
    // (2nd) is 23, p99 (4th) is 124.
    assert!(
        close(child.latency_mean_ms, 67.75),
        "{}",
        child.latency_mean_ms
    );
    assert!(
        close(child.latency_p50_ms, 23.0),
        "{}",
        child.latency_p50_ms
    );
    assert!(
        close(child.latency_p99_ms, 124.0),
        "{}",
        child.latency_p99_ms
    );
    assert_eq!(report.total.bytes_hops, 7000.0);
    assert_eq!(report.total.origin_bytes, 3000);
}

/// Two nodes, a and b, 5 ms apart (the other sim test modules use it too).
pub(super) const PAIR: &str = r#"
origin_latency_ms = 50
reply_jitter_ms = 0
[nodes.a]
config = "a.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.b]
config = "b.conf"
address = "10.0.0.2"
clients = ["10.2.0.0/16"]
[[links]]
a = "a"
b = "b"
latency_ms = 5
"#;

#[test]
fn a_sibling_hit_found_by_icp_once_its_rtt_is_learnt() {
    // Siblings 5 ms apart that answer each other's ICP; digests off.
    let sib = |other: &str| {
        format!(
            "icp_port 3130\nicp_access allow all\ndigest_generation off\ncache_mem 1 MB\n\
             cache_peer {other} sibling 3128 3130\n"
        )
    };
    let (_dir, mesh) = mesh(
        "icp",
        PAIR,
        &[("a", &sib("10.0.0.2")), ("b", &sib("10.0.0.1"))],
    );
    let trace = [
        // b asks a: the RTT is unknown (0), so the wait is the 5 ms floor
        // and the MISS (10 ms round trip) comes late; b fetches from the
        // origin and stores.
        get(0.0, "10.2.0.1", "/x", 1000),
        // a's first round times out likewise (a miss), but the reply comes
        // while the origin fetch is in flight: a learns b's RTT, 10 ms
        // (squid-spec 1.7's bootstrapping trap).
        get(5.0, "10.1.0.1", "/w", 1000),
        // Now a waits 2 x 10 ms, b answers HIT, a fetches from b: 0.5
        // service + 10 round + 5 + 0.5 (b's service) + 5 = 21 ms.
        get(10.0, "10.1.0.1", "/x", 1000),
    ];
    let (_, report) = run(&mesh, Options::default(), &trace);
    let (a, b) = (node(&report, "a"), node(&report, "b"));
    assert_eq!(a.hit_ratio_sibling, 0.5, "{report:#?}");
    assert_eq!((a.origin_requests, b.origin_requests), (1, 1));
    // a: 2 queries and 1 reply; b: 1 query and 2 replies.
    assert_eq!((a.icp_sent, b.icp_sent), (3, 3));
    // /w: 0.5 + 5 (timeout) + 100 (origin); /x: 21.
    assert!(
        close(a.latency_mean_ms, (105.5 + 21.0) / 2.0),
        "{}",
        a.latency_mean_ms
    );
    // 1000 bytes over 1 hop from the origin, then 1000 over 1 link.
    assert_eq!(a.bytes_hops, 2000.0);
}

#[test]
fn a_sibling_without_icp_access_answers_denied_and_nothing_is_shared() {
    let sib = |other: &str| {
        format!(
            "icp_port 3130\ndigest_generation off\ncache_mem 1 MB\n\
             cache_peer {other} sibling 3128 3130\n"
        )
    };
    let (_dir, mesh) = mesh(
        "denied",
        PAIR,
        &[("a", &sib("10.0.0.2")), ("b", &sib("10.0.0.1"))],
    );
    let trace = [
        get(0.0, "10.2.0.1", "/x", 1000),
        get(10.0, "10.1.0.1", "/x", 1000),
    ];
    let (_, report) = run(&mesh, Options::default(), &trace);
    assert_eq!(node(&report, "a").hit_ratio_sibling, 0.0);
    assert_eq!(report.total.origin_requests, 2);
}

#[test]
fn a_sibling_hit_found_in_its_digest_without_a_query() {
    // No ICP (no-query); b's digest is rebuilt every second and a uses it.
    let conf = |other: &str| {
        format!(
            "digest_rebuild_period 1 second\ncache_mem 1 MB\n\
             cache_peer {other} sibling 3128 0 no-query\n"
        )
    };
    let (_dir, mesh) = mesh(
        "digest",
        PAIR,
        &[("a", &conf("10.0.0.2")), ("b", &conf("10.0.0.1"))],
    );
    let trace = [
        get(0.0, "10.2.0.1", "/x", 1000),
        // Before b's next digest: a does not know, goes to the origin.
        get(0.5, "10.1.0.1", "/y", 1000),
        get(10.0, "10.1.0.1", "/x", 1000),
    ];
    let (_, report) = run(&mesh, Options::default(), &trace);
    let a = node(&report, "a");
    assert_eq!(a.requests, 2);
    assert_eq!(a.hit_ratio_sibling, 0.5);
    assert_eq!(a.icp_sent + a.htcp_sent, 0);
    assert_eq!(report.total.origin_requests, 2);
}

#[test]
fn a_parent_chain_fetches_once_and_the_middle_parent_serves_again() {
    // c -> p1 -> p2 -> origin; c stores nothing (no cache_dir, cache_mem 0).
    let toml = r#"
origin_latency_ms = 40
[nodes.c]
config = "c.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.p1]
config = "p1.conf"
address = "10.0.0.2"
[nodes.p2]
config = "p2.conf"
address = "10.0.0.3"
[[links]]
a = "c"
b = "p1"
latency_ms = 2
[[links]]
a = "p1"
b = "p2"
latency_ms = 3
"#;
    let (_dir, mesh) = mesh(
        "chain",
        toml,
        &[
            ("c", "cache_mem 0\ncache_peer 10.0.0.2 parent 3128 0 no-query\n"),
            (
                "p1",
                "cache_mem 1 MB\ncache_peer 10.0.0.3 parent 3128 0 no-query\nnever_direct allow all\n",
            ),
            ("p2", "cache_mem 1 MB\n"),
        ],
    );
    let trace = [
        get(0.0, "10.1.0.1", "/x", 500),
        get(1.0, "10.1.0.1", "/x", 500),
    ];
    let (_, report) = run(&mesh, Options::default(), &trace);
    let c = node(&report, "c");
    assert_eq!(c.hit_ratio_parent, 0.5);
    assert_eq!(c.hit_ratio_local, 0.0);
    assert_eq!(node(&report, "p2").origin_requests, 1);
    assert_eq!(node(&report, "p1").origin_requests, 0);
    // 500 x 3 hops (origin-p2-p1-c), then 500 x 1.
    assert_eq!(c.bytes_hops, 2000.0);
}

#[test]
fn origin_via_routes_the_fetch_through_another_node() {
    // a reaches the origin through b: 5 ms + 50 ms, two hops.
    let toml = PAIR.replace(
        "clients = [\"10.1.0.0/16\"]",
        "clients = [\"10.1.0.0/16\"]\norigin_via = \"b\"\nservice_ms = 0",
    );
    let (_dir, mesh) = mesh(
        "via",
        &toml,
        &[("a", "cache_mem 1 MB\n"), ("b", "cache_mem 1 MB\n")],
    );
    let (_, report) = run(
        &mesh,
        Options::default(),
        &[get(0.0, "10.1.0.1", "/x", 100)],
    );
    let a = node(&report, "a");
    assert_eq!(a.origin_requests, 1);
    assert_eq!(a.bytes_hops, 200.0);
    // 2 x (5 + 50).
    assert!(close(a.latency_mean_ms, 110.0), "{}", a.latency_mean_ms);
}

#[test]
fn carp_spreads_urls_over_the_parents_and_keeps_each_on_one() {
    let toml = r#"
[nodes.c]
config = "c.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.p1]
config = "p.conf"
address = "10.0.0.2"
[nodes.p2]
config = "p.conf"
address = "10.0.0.3"
[[links]]
a = "c"
b = "p1"
latency_ms = 1
[[links]]
a = "c"
b = "p2"
latency_ms = 1
"#;
    let (_dir, mesh) = mesh(
        "carp",
        toml,
        &[
            (
                "c",
                "cache_mem 0\nnever_direct allow all\n\
                 cache_peer 10.0.0.2 parent 3128 0 no-query carp name=p1\n\
                 cache_peer 10.0.0.3 parent 3128 0 no-query carp name=p2\n",
            ),
            ("p", "cache_mem 1 MB\n"),
        ],
    );
    let mut trace = Vec::new();
    for round in 0..2 {
        for i in 0..20 {
            trace.push(get(
                f64::from(round * 20 + i),
                "10.1.0.1",
                &format!("/{i}"),
                100,
            ));
        }
    }
    let (_, report) = run(&mesh, Options::default(), &trace);
    let (p1, p2) = (node(&report, "p1"), node(&report, "p2"));
    // Both parents got some URLs, and the second round found each URL at
    // the parent that fetched it: 20 parent hits, 20 origin fetches.
    assert!(
        p1.origin_requests > 0 && p2.origin_requests > 0,
        "{report:?}"
    );
    assert_eq!(p1.origin_requests + p2.origin_requests, 20);
    assert_eq!(node(&report, "c").hit_ratio_parent, 0.5);
}

#[test]
fn ttl_sets_every_lifetime() {
    // With --ttl 60, a copy stored at 0 is stale at 100 s: fetched again.
    let (_dir, mesh) = mesh("ttl", PAIR, &[("a", "cache_mem 1 MB\n"), ("b", "")]);
    let trace = [
        get(0.0, "10.1.0.1", "/x", 100),
        get(30.0, "10.1.0.1", "/x", 100),
        get(100.0, "10.1.0.1", "/x", 100),
    ];
    let (_, report) = run(
        &mesh,
        Options {
            ttl: Some(60),
            ..Options::default()
        },
        &trace,
    );
    let a = node(&report, "a");
    assert_eq!((a.origin_requests, a.hit_ratio_local), (2, 1.0 / 3.0));
    let (_, report) = run(&mesh, Options::default(), &trace);
    assert_eq!(node(&report, "a").origin_requests, 1);
}

#[test]
fn every_run_passes_the_conservation_checks() {
    let (_dir, mesh) = mesh(
        "conserve",
        LINE,
        &[
            (
                "child",
                "cache_mem 3 KB\ncache_peer 10.0.0.2 parent 3128 0 no-query\n",
            ),
            ("parent", "cache_mem 10 KB\n"),
        ],
    );
    let trace: Vec<TraceRequest> = (0..200u32)
        .map(|i| {
            get(
                f64::from(i),
                "10.1.0.1",
                &format!("/{}", i * 7 % 13),
                300 + u64::from(i),
            )
        })
        .collect();
    let (engine, report) = run(&mesh, Options::default(), &trace);
    let s = &engine.stats()[0];
    assert_eq!(s.requests, s.hits() + s.misses + s.failed);
    assert_eq!(report.total.requests, 200);
}

#[test]
fn a_forwarding_loop_fails_instead_of_recursing() {
    // a and b are each other's parent and may not go direct: a request
    // goes round until the hop limit (2 x 2 nodes), then fails.
    let conf = |other: &str| {
        format!(
            "cache_mem 1 MB\nnever_direct allow all\ncache_peer {other} parent 3128 0 no-query\n"
        )
    };
    let (_dir, mesh) = mesh(
        "loop",
        PAIR,
        &[("a", &conf("10.0.0.2")), ("b", &conf("10.0.0.1"))],
    );
    let (_, report) = run(
        &mesh,
        Options::default(),
        &[get(0.0, "10.1.0.1", "/x", 100)],
    );
    let a = node(&report, "a");
    assert_eq!((a.requests, a.failed, a.origin_requests), (1, 1, 0));
}

#[test]
fn htcp_siblings_find_each_others_objects_and_htcp_access_refuses_silently() {
    // Siblings 1 ms apart queried with HTCP TST (the `htcp` option); the
    // round trip (2 ms) is inside the 5 ms floor, so the first round counts.
    let sib = |other: &str, access: &str| {
        format!(
            "icp_port 3130\nhtcp_port 4827\n{access}digest_generation off\ncache_mem 1 MB\n\
             cache_peer {other} sibling 3128 4827 htcp\n"
        )
    };
    let toml = PAIR.replace("\nlatency_ms = 5\n", "\nlatency_ms = 1\n");
    let trace = [
        get(0.0, "10.2.0.1", "/x", 1000),
        get(10.0, "10.1.0.1", "/x", 1000),
    ];
    let allow = "htcp_access allow all\n";
    let (_dir, mesh) = mesh(
        "htcp",
        &toml,
        &[
            ("a", &sib("10.0.0.2", allow)),
            ("b", &sib("10.0.0.1", allow)),
        ],
    );
    let (_, report) = run(&mesh, Options::default(), &trace);
    let (a, b) = (node(&report, "a"), node(&report, "b"));
    assert_eq!(a.hit_ratio_sibling, 1.0, "{report:#?}");
    // A TST and a reply each; no ICP.
    assert_eq!((a.htcp_sent, b.htcp_sent, a.icp_sent), (2, 2, 0));
    // Without htcp_access (deny): no reply at all, the wait runs out.
    let (_dir2, denied) = super::tests::mesh(
        "htcp-denied",
        &toml,
        &[("a", &sib("10.0.0.2", "")), ("b", &sib("10.0.0.1", ""))],
    );
    let (_, report) = run(&denied, Options::default(), &trace);
    let (a, b) = (node(&report, "a"), node(&report, "b"));
    assert_eq!(a.hit_ratio_sibling, 0.0);
    assert_eq!((a.htcp_sent, b.htcp_sent), (1, 1));
    // 0.5 service + 5 ms (the wait runs out) + 100 to the origin.
    assert!(close(a.latency_mean_ms, 105.5), "{}", a.latency_mean_ms);
}

/// `asker` queries two siblings, s1 1 ms away and s2 `{s2_ms}` ms, that
/// each hold every object; `{jitter}` is the mesh's reply_jitter_ms line.
const TIE: &str = r#"
origin_latency_ms = 50
{jitter}
[nodes.asker]
config = "asker.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.s1]
config = "s1.conf"
address = "10.0.0.2"
clients = ["10.2.0.0/16"]
[nodes.s2]
config = "s2.conf"
address = "10.0.0.3"
clients = ["10.3.0.0/16"]
[[links]]
a = "asker"
b = "s1"
latency_ms = 1
[[links]]
a = "asker"
b = "s2"
latency_ms = {s2_ms}
"#;

/// The TIE mesh: s1 and s2 fetch objects 0..n from the origin, then the
/// asker asks for each; returns (served by s1, served by s2) and the report.
fn race(tag: &str, s2_ms: f64, jitter_line: &str, seed: u64, n: u32) -> ((u64, u64), Report) {
    let answering = "icp_port 3130\nicp_access allow all\ndigest_generation off\ncache_mem 1 MB\n";
    let (_dir, mesh) = mesh(
        tag,
        &TIE.replace("{jitter}", jitter_line)
            .replace("{s2_ms}", &s2_ms.to_string()),
        &[
            (
                "asker",
                "icp_port 3130\ndigest_generation off\ncache_mem 1 MB\n\
                 cache_peer 10.0.0.2 sibling 3128 3130\n\
                 cache_peer 10.0.0.3 sibling 3128 3130\n",
            ),
            ("s1", answering),
            ("s2", answering),
        ],
    );
    let mut trace = Vec::new();
    for i in 0..n {
        let path = format!("/{i}");
        let t = f64::from(i);
        trace.push(get(t, "10.2.0.1", &path, 100));
        trace.push(get(t + 0.1, "10.3.0.1", &path, 100));
        trace.push(get(t + 0.2, "10.1.0.1", &path, 100));
    }
    let options = Options {
        seed,
        ..Options::default()
    };
    let (engine, report) = run(&mesh, options, &trace);
    let served = |i: usize| engine.stats()[i].peer_requests;
    ((served(1), served(2)), report)
}

#[test]
fn ties_between_equally_near_siblings_are_split() {
    // Both siblings answer HIT after the same 2 ms round trip. Without
    // jitter the first queried wins, and the asker starts its queries at
    // the next peer each round (as Squid does): an exact alternation.
    let ((s1, s2), report) = race("tie0", 1.0, "reply_jitter_ms = 0", 1, 50);
    assert_eq!(node(&report, "asker").hit_ratio_sibling, 1.0, "{report:#?}");
    assert_eq!((s1, s2), (25, 25));
    // With the default jitter, about half each.
    let ((s1, s2), _) = race("tie", 1.0, "", 1, 200);
    assert_eq!(s1 + s2, 200);
    assert!(s1 >= 70 && s2 >= 70, "s1 served {s1}, s2 served {s2}");
}

#[test]
fn reply_jitter_lets_a_slightly_farther_sibling_win_some_races() {
    // s2's round trip is 0.1 ms longer. Without jitter s1 always answers
    // first. With 1 ms of jitter s2 wins when its draw is more than 0.1 ms
    // below s1's: probability 0.9^2 / 2 = 0.405, about 81 of 200 races.
    let ((s1, s2), _) = race("near0", 1.05, "reply_jitter_ms = 0", 1, 200);
    assert_eq!((s1, s2), (200, 0));
    let ((s1, s2), _) = race("near", 1.05, "reply_jitter_ms = 1", 1, 200);
    assert_eq!(s1 + s2, 200);
    assert!((50..=115).contains(&s2), "s1 served {s1}, s2 served {s2}");
}

#[test]
fn reply_jitter_is_the_same_for_a_seed_and_differs_between_seeds() {
    let (a, _) = race("seed-a", 1.05, "reply_jitter_ms = 1", 7, 100);
    let (b, _) = race("seed-b", 1.05, "reply_jitter_ms = 1", 7, 100);
    let (c, _) = race("seed-c", 1.05, "reply_jitter_ms = 1", 8, 100);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn a_client_remembered_by_its_prefix_finds_the_node_its_address_does() {
    // Ranges of several lengths, nested (the /24 inside the /16 belongs
    // to the node listed first by name) and IPv6: the cut is at /26.
    let toml = r#"
[nodes.a]
config = "a.conf"
address = "10.0.0.1"
clients = ["10.1.2.0/24", "10.3.0.64/26", "2001:db8::/32"]
[nodes.b]
config = "b.conf"
address = "10.0.0.2"
clients = ["10.1.0.0/16", "10.3.0.0/26", "2001:db8:1::/48"]
"#;
    let (_dir, mesh) = mesh("client-prefix", toml, &[("a", ""), ("b", "")]);
    let mut nodes = super::mesh::ClientNodes::new(&mesh, 4);
    for text in [
        "10.1.2.7",
        "10.1.3.7",
        "10.1.2.200",
        "10.3.0.65",
        "10.3.0.1",
        "10.3.0.130",
        "10.2.0.1",
        "2001:db8:1::5",
        "2001:db8:2::5",
        "2001:db9::1",
        "10.1.2.8",
    ] {
        let ip: IpAddr = text.parse().unwrap();
        assert_eq!(nodes.node(&mesh, ip), mesh.node_for_client(ip), "{text}");
    }
}
