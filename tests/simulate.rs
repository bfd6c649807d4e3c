//! `cuttle simulate` as a user runs it: a tiny mesh and trace on disk,
//! the table, `--json`, `--compare` and `--svg`, and a mesh error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("cuttle-simulate-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cuttle(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .arg("simulate")
        .args(args)
        .output()
        .unwrap()
}

/// Two siblings (ICP) 2 ms apart, each serving its own clients; `parent`:
/// b is a's parent instead.
fn write_mesh(dir: &Path, name: &str, a_peer: &str) -> PathBuf {
    let common = "http_port 3128\npid_filename none\ncache_mem 1 MB\nicp_port 3130\n\
                  icp_access allow all\ndigest_generation off\n";
    std::fs::write(
        dir.join(format!("{name}-a.conf")),
        format!("{common}cache_peer 10.0.0.2 {a_peer} 3128 3130\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}-b.conf")),
        format!("{common}cache_peer 10.0.0.1 sibling 3128 3130\n"),
    )
    .unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "origin_latency_ms = 50\n\
             [nodes.a]\nconfig = \"{name}-a.conf\"\naddress = \"10.0.0.1\"\nclients = [\"10.1.0.0/16\"]\n\
             [nodes.b]\nconfig = \"{name}-b.conf\"\naddress = \"10.0.0.2\"\nclients = [\"10.2.0.0/16\"]\n\
             [[links]]\na = \"a\"\nb = \"b\"\nlatency_ms = 2\n"
        ),
    )
    .unwrap();
    path
}

const TRACE: &str = "\
1000000000.000 10 10.2.0.5 TCP_MISS/200 4000 GET http://example.com/x - HIER_DIRECT/192.0.2.1 text/html
1000000001.000 10 10.1.0.5 TCP_MISS/200 4000 GET http://example.com/x - HIER_DIRECT/192.0.2.1 text/html
1000000002.000 10 10.1.0.5 TCP_MISS/200 4000 GET http://example.com/x - HIER_DIRECT/192.0.2.1 text/html
1000000003.000 10 10.1.0.5 TCP_TUNNEL/200 900 CONNECT example.com:443 - HIER_DIRECT/192.0.2.1 -
";

#[test]
fn simulate_prints_a_table_json_a_comparison_and_a_chart() {
    let dir = Dir::new("run");
    let siblings = write_mesh(&dir.0, "siblings", "sibling");
    let parent = write_mesh(&dir.0, "parent", "parent");
    let trace = dir.0.join("access.log");
    std::fs::write(&trace, TRACE).unwrap();

    let out = cuttle(&[&siblings, &trace]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = stdout.lines().find(|l| l.starts_with("total")).unwrap();
    // 3 requests; a: one sibling hit (ICP), one local hit; b: a miss.
    assert!(total.split_whitespace().nth(1) == Some("3"), "{stdout}");
    assert!(stdout.contains("1 not cacheable"), "{stdout}");

    let out = cuttle(&[&siblings, &trace, Path::new("--json")]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &json["runs"][0];
    assert_eq!(run["total"]["requests"], 3);
    assert_eq!(run["total"]["origin_requests"], 1);
    assert_eq!(run["total"]["origin_bytes"], 4000);
    let a = &run["nodes"][0];
    assert_eq!(a["node"], "a");
    assert_eq!(a["hit_ratio_sibling"], 0.5);
    assert_eq!(a["hit_ratio_local"], 0.5);

    let svg = dir.0.join("chart.svg");
    let out = cuttle(&[
        &siblings,
        &trace,
        Path::new("--compare"),
        &parent,
        Path::new("--svg"),
        &svg,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("B vs A") && stdout.contains("parent.toml"),
        "{stdout}"
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("hit ratio %"),
        "{chart}"
    );
}

#[test]
fn a_bad_mesh_exits_1_naming_the_file() {
    let dir = Dir::new("bad");
    let mesh = dir.0.join("mesh.toml");
    std::fs::write(
        &mesh,
        "[nodes.a]\nconfig = \"missing.conf\"\naddress = \"10.0.0.1\"\n",
    )
    .unwrap();
    let trace = dir.0.join("access.log");
    std::fs::write(&trace, TRACE).unwrap();
    let out = cuttle(&[&mesh, &trace]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.conf"), "{stderr}");
}

/// The totals row of run `run` of a `--json` output.
fn total(json: &serde_json::Value, run: usize) -> (f64, u64) {
    let t = &json["runs"][run]["total"];
    (
        t["hit_ratio_sibling"].as_f64().unwrap(),
        t["origin_bytes"].as_u64().unwrap(),
    )
}

#[test]
fn cuttle_offices_share_more_through_digests_than_squid_offices() {
    // examples/digests: three small offices that share only through Cache
    // Digests. A Squid garbles the digests Squids serve it (squid-spec
    // 5.5); cuttle serves around that and reads any digest exactly.
    let dir = Dir::new("digests");
    let trace = dir.0.join("access.log");
    let generated = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args([
            "trace",
            "generate",
            "--requests",
            "6000",
            "--duration",
            "86400",
        ])
        .args([
            "--clients",
            "10.1.0.0/16,10.2.0.0/16,10.3.0.0/16",
            "--seed",
            "15",
        ])
        .arg("-o")
        .arg(&trace)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digests");
    let out = cuttle(&[
        &examples.join("squid.toml"),
        &trace,
        Path::new("--compare"),
        &examples.join("cuttle.toml"),
        Path::new("--json"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (squid_sibling, squid_origin) = total(&json, 0);
    let (cuttle_sibling, cuttle_origin) = total(&json, 1);
    assert!(
        cuttle_sibling > squid_sibling,
        "sibling hit ratio: cuttle {cuttle_sibling}, squid {squid_sibling}"
    );
    assert!(
        cuttle_origin < squid_origin,
        "origin bytes: cuttle {cuttle_origin}, squid {squid_origin}"
    );
}
