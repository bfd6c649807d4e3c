//! The real-process mesh lab (benches/mesh_lab/lab.rs) on the 5-node
//! meshes of examples/mesh5/: Squid-only, cuttle-only and mixed.
//!
//! CI runs the short form (a few hundred generated requests per mesh);
//! benches/mesh.sh runs the full form (`full_lab`, ignored here) with the
//! mesh, request count and concurrency from the environment.

#[path = "../benches/mesh_lab/lab.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;

use lab::{LabOptions, LabReport};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Clients of the three siblings of examples/mesh5.
const MESH5_CLIENTS: &str = "10.1.0.0/16,10.2.0.0/16,10.3.0.0/16";

fn generate_trace(path: &Path, requests: usize, seed: u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["trace", "generate", "--clients", MESH5_CLIENTS])
        .args(["--requests", &requests.to_string()])
        .args(["--seed", &seed.to_string()])
        .arg("-o")
        .arg(path)
        .output()
        .expect("cuttle runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn options(
    mesh: &str,
    work: &Path,
    trace: &Path,
    requests: usize,
    concurrency: usize,
) -> LabOptions {
    LabOptions {
        mesh: manifest().join("examples/mesh5").join(mesh),
        trace: trace.to_path_buf(),
        requests,
        concurrency,
        cuttle: PathBuf::from(env!("CARGO_BIN_EXE_cuttle")),
        squid: PathBuf::from("/usr/sbin/squid"),
        work: work.to_path_buf(),
    }
}

fn run_lab(options: &LabOptions) -> LabReport {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(lab::run(options));
    match report {
        Ok(report) => report,
        Err(e) => panic!("{}: {e}", options.mesh.display()),
    }
}

/// Every request was answered, logged once at its node, and the origin's
/// count is the nodes' DIRECT lines.
fn assert_sane(mesh: &str, report: &LabReport, requests: u64) {
    let shown = lab::table(report);
    println!("{mesh}\n{shown}");
    let total = report.total();
    assert_eq!(total.sent, requests, "{mesh}: requests sent\n{shown}");
    assert_eq!(total.client_errors, 0, "{mesh}: client errors\n{shown}");
    for node in &report.nodes {
        assert_eq!(
            node.requests, node.sent,
            "{mesh}: {} logs each request once\n{shown}",
            node.name
        );
        assert_eq!(
            node.local_hits + node.sibling_hits + node.to_parent,
            node.requests,
            "{mesh}: {}: every request is a local hit, a sibling hit or sent to the parent\n{shown}",
            node.name
        );
    }
    assert_eq!(
        total.origin_requests, report.origin_requests,
        "{mesh}: origin requests\n{shown}"
    );
    assert_eq!(
        total.peer_requests_served,
        total.to_parent + total.sibling_hits,
        "{mesh}: every request a node sent to a peer is logged once there\n{shown}"
    );
    assert_eq!(report.origin_unattributed, 0, "{mesh}\n{shown}");
    assert_eq!(total.origin_bytes, report.origin_bytes, "{mesh}\n{shown}");
    assert!(
        report.origin_requests > 0 && report.origin_requests < requests,
        "{mesh}\n{shown}"
    );
    assert!(
        total.local_hits > 0,
        "{mesh}: a Zipf trace has local hits\n{shown}"
    );
}

#[test]
fn the_three_mesh5_variants_answer_every_request_and_their_logs_add_up() {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mesh_lab");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let trace = work.join("trace.log");
    let requests = 300;
    generate_trace(&trace, requests, 18);
    for mesh in ["squid.toml", "mixed.toml", "cuttle.toml"] {
        let dir = work.join(mesh.trim_end_matches(".toml"));
        let options = options(mesh, &dir, &trace, requests, 4);
        let report = run_lab(&options);
        assert_sane(mesh, &report, requests as u64);
    }
    std::fs::remove_dir_all(&work).expect("clean up");
}

/// The full form: benches/mesh.sh runs it (MESH_LAB_MESH, default
/// examples/mesh5/cuttle.toml; MESH_LAB_REQUESTS, default 20000;
/// MESH_LAB_CONCURRENCY, default 8; MESH_LAB_WORK, where logs are kept).
#[test]
#[ignore]
fn full_lab() {
    let var = |name: &str| std::env::var(name).ok();
    let mesh = var("MESH_LAB_MESH").map_or_else(
        || manifest().join("examples/mesh5/cuttle.toml"),
        PathBuf::from,
    );
    let requests: usize = var("MESH_LAB_REQUESTS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let concurrency: usize = var("MESH_LAB_CONCURRENCY")
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let stem = mesh
        .file_stem()
        .map_or("mesh".into(), |s| s.to_string_lossy().into_owned());
    let work = var("MESH_LAB_WORK").map_or_else(
        || {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("mesh_lab_full")
                .join(stem)
        },
        PathBuf::from,
    );
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let trace = match var("MESH_LAB_TRACE") {
        Some(t) => PathBuf::from(t),
        None => {
            let t = work.join("trace.log");
            generate_trace(&t, requests, 18);
            t
        }
    };
    let mut options = options("cuttle.toml", &work, &trace, requests, concurrency);
    options.mesh = mesh;
    let report = run_lab(&options);
    println!(
        "mesh: {}\ntrace: {} ({} requests)",
        options.mesh.display(),
        trace.display(),
        requests
    );
    println!("{}", lab::full_report(&options, &report));
    assert_eq!(report.total().client_errors, 0);
}
