//! Simulator throughput: simulated requests per second replaying a Zipf
//! trace (50,000 documents, 200,000 requests, 80 % from POP clients) over
//! the 14-node Worldnet ICP mesh of `examples/worldnet/squid.toml`, one
//! core, a fresh engine (cold caches) per iteration.
//!
//! Run with `cargo bench --bench simulate`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use cuttle::sim::{Engine, Mesh, Options, SkipCounts, TraceRequest};

// The allocator `cuttle simulate` runs with (src/main.rs): the selection
// core allocates per request, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OBJECTS: u64 = 50_000;
const REQUESTS: usize = 200_000;

fn trace() -> Vec<TraceRequest> {
    let mut rng = StdRng::seed_from_u64(18);
    let zipf = Zipf::new(OBJECTS, 0.8).expect("zipf");
    let mut t = 1_000_000_000.0;
    (0..REQUESTS)
        .map(|_| {
            let doc = zipf.sample(&mut rng) as u64;
            t += rng.gen::<f64>() / 100.0;
            let client = if rng.gen_bool(0.8) {
                format!("10.{}.0.{}", rng.gen_range(1..10), rng.gen_range(1..255))
            } else {
                format!("172.{}.0.{}", rng.gen_range(16..20), rng.gen_range(1..255))
            };
            TraceRequest {
                time: t,
                client: client.parse().expect("address"),
                method: http::Method::GET,
                url: format!("http://site{}.example/doc{doc}.html", doc % 997),
                // A size fixed by the document: 1 KiB to ~64 KiB.
                size: 1024 + (doc.wrapping_mul(2_654_435_761) % 65_536),
            }
        })
        .collect()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mesh = Mesh::load(&root.join("examples/worldnet/squid.toml")).expect("the worldnet mesh");
    let trace = trace();
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut group = c.benchmark_group("simulate");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    group.bench_function("worldnet_icp_14_nodes", |b| {
        b.iter(|| {
            let mut engine = Engine::new(&mesh, Options::default()).expect("engine");
            for r in &trace {
                engine.request(black_box(r));
            }
            black_box(engine.finish(SkipCounts::default()).expect("conservation"))
        })
    });
    group.finish();
    c.final_summary();
}
