//! Changes worked out by hand: one document, its versions, and what a
//! Squid heuristic, adaptive polling and a MON subscription serve of it.

use crate::sim::engine::{Engine, Options};
use crate::sim::mesh::Mesh;
use crate::sim::report::Report;
use crate::sim::tests::{get, mesh};
use crate::sim::trace::{Change, SkipCounts};

use super::Counts;

/// The trace's first request time (crate::sim::tests' T0).
const T0: f64 = 1_000_000_000.0;

/// A trace line: a GET of /d at a second, or a change of /d.
enum Ev {
    Get(f64),
    Change(f64),
}

fn replay(mesh: &Mesh, options: Options, events: &[Ev]) -> (Report, Counts) {
    let mut engine = Engine::new(mesh, options).unwrap();
    for e in events {
        match *e {
            Ev::Get(secs) => engine.request(&get(secs, "10.1.0.1", "/d", 1000)),
            Ev::Change(secs) => engine.change(&Change {
                time: T0 + secs,
                url: "http://origin.example/d".into(),
            }),
        }
    }
    let report = engine.finish(SkipCounts::default()).unwrap();
    let counts = report
        .changes
        .as_ref()
        .expect("changes counted")
        .total
        .clone();
    (report, counts)
}

const ONE: &str = r#"
origin_latency_ms = 50
reply_jitter_ms = 0
[nodes.a]
config = "a.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
service_ms = 1
"#;

#[test]
fn a_heuristically_fresh_old_version_is_a_stale_hit_and_an_expired_copy_is_revalidated() {
    let (_dir, mesh) = mesh(
        "changes-squid",
        ONE,
        &[("a", "cache_mem 1 MB\nrefresh_pattern . 0 20% 4320\n")],
    );
    let (report, c) = replay(
        &mesh,
        Options::default(),
        &[
            // Last modified 1000 s before the first request: fresh 200 s.
            Ev::Change(-1000.0),
            Ev::Get(0.0),
            Ev::Change(50.0),
            // Fresh by the heuristic, but the origin has a newer version.
            Ev::Get(100.0),
            // Expired: a validation finds the new version (a miss); fresh
            // 20% of its 250 s age.
            Ev::Get(300.0),
            Ev::Get(301.0),
            // Expired, unchanged: 304, a hit.
            Ev::Get(400.0),
        ],
    );
    assert_eq!(
        (
            c.stale_hits,
            c.stale_beyond_notice,
            c.validations,
            c.not_modified
        ),
        (1, 1, 2, 1)
    );
    assert_eq!(
        (report.total.requests, report.total.origin_requests),
        (5, 2)
    );
    assert!((report.total.hit_ratio_local - 0.6).abs() < 1e-9);
}

#[test]
fn without_change_lines_nothing_is_counted() {
    let (_dir, mesh) = mesh("changes-none", ONE, &[("a", "cache_mem 1 MB\n")]);
    let mut engine = Engine::new(&mesh, Options::default()).unwrap();
    engine.request(&get(0.0, "10.1.0.1", "/d", 1000));
    assert!(engine
        .finish(SkipCounts::default())
        .unwrap()
        .changes
        .is_none());
}

/// Adaptive polling against Squid's heuristic on the same versions.
fn polled(tag: &str, pattern: &str) -> Counts {
    let (_dir, mesh) = mesh(tag, ONE, &[("a", &format!("cache_mem 1 MB\n{pattern}\n"))]);
    replay(
        &mesh,
        Options::default(),
        &[
            Ev::Change(-1000.0),
            // A miss: the estimate, 200 s (20% of 1000).
            Ev::Get(0.0),
            // 304: adaptive doubles to 400 s (fresh to 650); Squid's is
            // 20% of 1250 s (fresh to 500).
            Ev::Get(250.0),
            // Adaptive: a hit. Squid: 304, then fresh 320 s (to 920).
            Ev::Get(600.0),
            Ev::Change(620.0),
            // Both serve the old version.
            Ev::Get(640.0),
            // Adaptive: expired, the new version, interval halved (200 s).
            // Squid: still fresh, stale again.
            Ev::Get(700.0),
            Ev::Get(850.0),
        ],
    )
    .1
}

#[test]
fn adaptive_polling_doubles_on_304_halves_on_a_change_and_serves_fewer_stale_hits() {
    let adaptive = polled("changes-adaptive", "refresh_pattern . 1 20% 60 adaptive=0");
    let squid = polled("changes-lmf", "refresh_pattern . 1 20% 60");
    assert_eq!(
        (
            adaptive.stale_hits,
            adaptive.validations,
            adaptive.not_modified
        ),
        (1, 2, 1)
    );
    assert_eq!(
        (squid.stale_hits, squid.validations, squid.not_modified),
        (3, 2, 2)
    );
}

#[test]
fn a_popular_adaptive_copy_is_revalidated_ahead_of_its_expiry() {
    let ahead = |tag: &str, n: u32| {
        let pattern = format!("cache_mem 1 MB\nrefresh_pattern . 1 20% 60 adaptive={n}\n");
        let (_dir, mesh) = mesh(tag, ONE, &[("a", &pattern)]);
        replay(
            &mesh,
            Options::default(),
            &[
                Ev::Change(-1000.0),
                // Fresh 200 s; its last tenth from 180 s.
                Ev::Get(0.0),
                // The first hit: not popular yet.
                Ev::Get(185.0),
                // The second, in the last tenth: revalidated in the
                // background (304).
                Ev::Get(190.0),
            ],
        )
        .1
    };
    let c = ahead("changes-ahead", 2);
    assert_eq!((c.validations, c.not_modified), (1, 1));
    assert_eq!(ahead("changes-ahead-off", 0).validations, 0);
}

const FRONT_EDGE: &str = r#"
origin_latency_ms = 50
reply_jitter_ms = 0
[nodes.edge]
config = "edge.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
service_ms = 1
origin_via = "front"
[nodes.front]
config = "front.conf"
address = "10.0.0.2"
service_ms = 1
[[links]]
a = "edge"
b = "front"
latency_ms = 10
"#;

fn pushed(tag: &str, monitor: &str, update_hits: Option<u32>) -> (Report, Counts) {
    let edge = format!(
        "cache_mem 1 MB\ncache_peer 10.0.0.2 parent 3128 4827 no-query default {monitor}\nnever_direct allow all\n"
    );
    let front = "cache_mem 1 MB\nhtcp_port 4827\nhtcp_monitor_max_subscribers 4\n";
    let (_dir, mesh) = mesh(tag, FRONT_EDGE, &[("edge", &edge), ("front", front)]);
    replay(
        &mesh,
        Options {
            update_hits,
            ..Options::default()
        },
        &[
            Ev::Change(-1000.0),
            // A miss through the front: both hold it, fresh 200 s.
            Ev::Get(0.0),
            // The CMS tells the front; its notice reaches the edge 20 ms
            // later (10 ms link, 10 ms batch tick).
            Ev::Change(50.0),
            // 10 ms after the change: the old copy, within the delay.
            Ev::Get(50.01),
            // 30 ms after: the edge has dropped it (or taken the update).
            Ev::Get(50.03),
        ],
    )
}

#[test]
fn a_subscriber_is_stale_only_within_the_notification_delay() {
    let (report, c) = pushed("changes-push", "htcp=monitor cuttle", None);
    assert_eq!((c.stale_hits, c.stale_beyond_notice), (1, 0));
    assert_eq!((c.push_notices, c.push_updates), (1, 0));
    // Invalidated: the third request is a miss.
    assert_eq!(report.total.origin_requests, 2);
    let (_, polled) = pushed("changes-nopush", "", None);
    assert_eq!((polled.stale_hits, polled.stale_beyond_notice), (2, 2));
    assert_eq!(polled.push_notices, 0);
}

#[test]
fn a_used_object_is_pushed_as_an_update() {
    // One use at the front (the first miss) meets a threshold of 1.
    let (report, c) = pushed("changes-update", "htcp=monitor cuttle", Some(1));
    assert_eq!((c.stale_hits, c.stale_beyond_notice), (1, 0));
    assert_eq!(
        (c.push_notices, c.push_updates, c.background_fetches),
        (1, 1, 1)
    );
    // The update arrived born at the change, so already expired by the
    // heuristic (age 0): the edge revalidates through the front (304).
    assert_eq!((c.validations, c.not_modified), (1, 1));
    assert_eq!(report.total.origin_requests, 1);
}

/// The README's trace for "Freshness in the simulator" (`cuttle trace
/// generate --requests 100000 --duration 86400 --change-rate 0.2 --clients
/// 10.1.0.0/16,10.2.0.0/16,10.3.0.0/16`), replayed over `mesh`.
fn readme_run(mesh: &Mesh, options: Options) -> Report {
    use crate::sim::generate::{Generator, Line, TraceSpec, DEFAULT_START, DEFAULT_ZIPF};
    use crate::sim::trace::TraceRequest;
    use crate::sim::ClientRange;
    let spec = TraceSpec {
        objects: 100_000,
        requests: 100_000,
        zipf: DEFAULT_ZIPF,
        clients: ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"]
            .iter()
            .map(|c| ClientRange::parse(c).unwrap())
            .collect(),
        seed: 1,
        duration: 86_400.0,
        start: DEFAULT_START,
        max_size: 4 << 20,
        change_rate: Some(0.2),
    };
    let mut engine = Engine::new(mesh, options).unwrap();
    for line in Generator::new(spec).unwrap().lines() {
        match line {
            Line::Request(r) => engine.request(&TraceRequest {
                time: (r.time * 1000.0).round() / 1000.0,
                client: r.client,
                method: http::Method::GET,
                url: r.url,
                size: r.size,
            }),
            Line::Change(c) => engine.change(&Change {
                time: c.time,
                url: c.url,
            }),
        }
    }
    engine.finish(SkipCounts::default()).unwrap()
}

fn row(label: &str, r: &Report) -> String {
    let c = &r.changes.as_ref().unwrap().total;
    let t = &r.total;
    format!(
        "| {label} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {} |",
        c.stale_hits,
        c.validations,
        t.origin_requests,
        (t.hit_ratio_local + t.hit_ratio_sibling + t.hit_ratio_parent) * 100.0,
        t.latency_mean_ms,
        c.background_fetches,
        c.push_notices,
        c.push_updates
    )
}

/// The README's tables: `cargo test --lib sim::changes::tests::freshness_tables
/// -- --ignored --nocapture` prints them (a minute or two in a debug build).
#[test]
#[ignore]
fn freshness_tables() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/freshness");
    let load = |name: &str| Mesh::load(&examples.join(name)).unwrap();
    println!("| policy | stale hits | validations | origin fetches | hit % | mean ms | background fetches | push notices | updates |");
    for name in ["squid", "push"] {
        let r = readme_run(&load(&format!("{name}.toml")), Options::default());
        println!("{}", row(name, &r));
    }
    // adaptive=N: the same mesh with N in every pattern.
    for n in [0, 1, 2, 4, 8, 16] {
        let dir = std::env::temp_dir().join(format!("cuttle-simfresh-n{n}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf/adaptive")).unwrap();
        for entry in std::fs::read_dir(examples.join("conf/adaptive")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace(" adaptive\n", &format!(" adaptive={n}\n"));
            std::fs::write(
                dir.join("conf/adaptive").join(path.file_name().unwrap()),
                text,
            )
            .unwrap();
        }
        std::fs::copy(examples.join("adaptive.toml"), dir.join("adaptive.toml")).unwrap();
        let r = readme_run(
            &Mesh::load(&dir.join("adaptive.toml")).unwrap(),
            Options::default(),
        );
        println!("{}", row(&format!("adaptive={n}"), &r));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let push = load("push.toml");
    for n in [0, 1, 2, 4, 8] {
        let r = readme_run(
            &push,
            Options {
                update_hits: Some(n),
                ..Options::default()
            },
        );
        assert_eq!(r.changes.as_ref().unwrap().total.stale_beyond_notice, 0);
        println!("{}", row(&format!("update_hits {n}"), &r));
    }
}
