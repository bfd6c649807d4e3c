//! Worldnet with CARP parents and one slow border router: the same trace
//! with plain `carp` and with `carp load-aware` on the POPs' parent lines.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::sim::engine::{Engine, Options};
use crate::sim::mesh::Mesh;
use crate::sim::report::Latencies;
use crate::sim::trace::TraceRequest;

/// The slow node and its per-request service time (the others: 0.5 ms).
const SLOW: &str = "igr2";
const SLOW_SERVICE_MS: f64 = 15.0;
const REQUESTS: usize = 40_000;
const BORDER: [&str; 4] = ["igr1", "igr2", "igr3", "igr4"];

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// examples/worldnet with every POP's parent line replaced by the four
/// border routers as `carp` parents (with `extra` options), no ICP to
/// them, and `slow_ms` of service time on the slow router.
fn worldnet_carp(tag: &str, extra: &str, slow_ms: f64) -> (Dir, Mesh) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/worldnet");
    let dir = std::env::temp_dir().join(format!("cuttle-sim-load-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf")).expect("temp dir");
    for entry in std::fs::read_dir(example.join("conf")).expect("worldnet confs") {
        let path = entry.expect("conf").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("conf");
        let text = if name.starts_with("pop") {
            text.lines()
                .map(|l| {
                    if l.starts_with("cache_peer") && l.contains(" parent ") {
                        (1..=4)
                            .map(|i| {
                                format!(
                                    "cache_peer 10.0.0.1{i} parent 3128 0 carp no-query {extra}"
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        std::fs::write(dir.join("conf").join(&name), text + "\n").expect("write conf");
    }
    let toml = std::fs::read_to_string(example.join("cuttle.toml")).expect("worldnet mesh");
    let mut out = String::new();
    for line in toml.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(node) = line
            .strip_prefix("[nodes.")
            .and_then(|l| l.strip_suffix(']'))
        {
            let ms = if node == SLOW { slow_ms } else { 0.5 };
            out.push_str(&format!("service_ms = {ms}\n"));
        }
    }
    let path = dir.join("mesh.toml");
    std::fs::write(&path, out).expect("write mesh");
    let mesh = Mesh::load(&path).expect("mesh");
    (Dir(dir), mesh)
}

/// POP clients asking for 8,000 objects (a few hot, most not), one
/// request every 2 ms in all.
fn trace() -> Vec<TraceRequest> {
    (0..REQUESTS)
        .map(|i| {
            let object = (i * i + 7 * i) % 8_000;
            TraceRequest {
                time: 1_000_000_000.0 + i as f64 * 0.002,
                client: format!("10.{}.0.1", i % 9 + 1)
                    .parse::<IpAddr>()
                    .expect("client"),
                method: http::Method::GET,
                url: format!("http://origin.example/o/{object}"),
                size: 8_000,
            }
        })
        .collect()
}

/// (each border router's share of the POPs' parent fetches, POP clients'
/// latencies).
fn run(mesh: &Mesh) -> (Vec<f64>, Latencies) {
    let mut engine = Engine::new(
        mesh,
        Options {
            ttl: Some(86_400),
            seed: 1,
            update_hits: None,
        },
    )
    .expect("engine");
    for r in &trace() {
        engine.request(r);
    }
    let index = |name: &str| mesh.nodes.iter().position(|n| n.name == name);
    let stats = engine.stats();
    let counts: Vec<u64> = BORDER
        .iter()
        .map(|b| index(b).map_or(0, |i| stats[i].peer_requests))
        .collect();
    let total: u64 = counts.iter().sum();
    let mut latency = Latencies::default();
    for (i, node) in mesh.nodes.iter().enumerate() {
        if node.name.starts_with("pop") {
            latency.merge(&stats[i].latency);
        }
    }
    (
        counts
            .iter()
            .map(|&c| c as f64 / total.max(1) as f64)
            .collect(),
        latency,
    )
}

#[test]
fn worldnet_with_a_slow_border_router_sheds_its_carp_share_under_load_aware() {
    let (_d1, plain) = worldnet_carp("plain", "", SLOW_SERVICE_MS);
    let (_d2, aware) = worldnet_carp("aware", "load-aware", SLOW_SERVICE_MS);
    let (_d3, healthy) = worldnet_carp("healthy", "load-aware", 0.5);
    let (plain_shares, plain_latency) = run(&plain);
    let (aware_shares, aware_latency) = run(&aware);
    let (healthy_shares, _) = run(&healthy);
    let line = |l: &Latencies| {
        format!(
            "mean {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
            l.mean_ms(),
            l.quantile_ms(0.90),
            l.quantile_ms(0.99)
        )
    };
    println!(
        "worldnet, {SLOW} at {SLOW_SERVICE_MS} ms per request; shares of igr1..4: plain carp \
         {plain_shares:.3?}, load-aware {aware_shares:.3?}, load-aware with {SLOW} healthy \
         {healthy_shares:.3?}; POP clients: plain {}; load-aware {}",
        line(&plain_latency),
        line(&aware_latency)
    );
    let slow = BORDER.iter().position(|&b| b == SLOW).expect("slow node");
    assert!(
        aware_shares[slow] < plain_shares[slow] - 0.05,
        "{aware_shares:?} vs {plain_shares:?}"
    );
    assert!(
        (healthy_shares[slow] - plain_shares[slow]).abs() < 0.05,
        "healthy: about its hash share: {healthy_shares:?} vs {plain_shares:?}"
    );
}
