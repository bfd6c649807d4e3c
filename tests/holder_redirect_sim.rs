//! `cuttle simulate` on the shipped examples/mirrors (README "Redirect to
//! the holder in the simulator"): the accelerators as Squids and as cuttle
//! with `holder_redirect`, over a small generated trace of large objects.

mod support;

use std::path::Path;

use support::TempDir;

/// Both meshes run (the conservation checks pass); with redirects the
/// nodes send fewer bytes, the origin serves no more, and the mesh holds
/// more distinct objects.
#[test]
fn the_mirrors_example_runs_and_redirects_to_the_holder() {
    let tmp = TempDir::new("redirect-sim");
    let cuttle = env!("CARGO_BIN_EXE_cuttle");
    let generated = std::process::Command::new(cuttle)
        .args([
            "trace",
            "generate",
            "--requests",
            "4000",
            "--objects",
            "2000",
        ])
        .args([
            "--clients",
            "10.1.0.0/16,10.2.0.0/16,10.3.0.0/16,10.4.0.0/16",
        ])
        .output()
        .expect("run cuttle trace generate");
    assert!(generated.status.success(), "{generated:?}");
    // Sizes x 32, as the README's run: a download site's objects.
    let text = String::from_utf8(generated.stdout).expect("utf-8 trace");
    let scaled: String = text
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            let size: u64 = fields[4].parse().expect("size field");
            fields[4] = (size * 32).to_string();
            fields.join(" ") + "\n"
        })
        .collect();
    let trace = tmp.path().join("trace.log");
    std::fs::write(&trace, scaled).expect("write trace");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mirrors");
    let run = |mesh: &str| -> serde_json::Value {
        let out = std::process::Command::new(cuttle)
            .arg("simulate")
            .arg(examples.join(mesh))
            .arg(&trace)
            .arg("--json")
            .output()
            .expect("run cuttle simulate");
        assert!(out.status.success(), "{mesh}: {out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["runs"][0].clone()
    };
    let squid = run("squid.toml");
    let redirect = run("cuttle.toml");
    let f = |run: &serde_json::Value, key: &str| run["total"][key].as_f64().unwrap();
    let diag = format!("squid {squid}\nredirect {redirect}");
    assert_eq!(f(&squid, "redirects"), 0.0, "{diag}");
    assert!(f(&redirect, "redirects") > 0.0, "{diag}");
    assert!(
        f(&redirect, "proxy_bytes") < f(&squid, "proxy_bytes"),
        "{diag}"
    );
    assert!(
        f(&redirect, "origin_bytes") <= f(&squid, "origin_bytes"),
        "{diag}"
    );
    let distinct = |run: &serde_json::Value| run["stored"]["distinct_objects"].as_u64().unwrap();
    assert!(distinct(&redirect) >= distinct(&squid), "{diag}");
    // The size floor's variant runs too.
    let floor = run("cuttle-min.toml");
    assert!(f(&floor, "redirects") > 0.0, "{floor}");
}

/// `examples/worldnet/redirect/small` (README "Redirect to the holder in
/// the simulator"): the border routers redirect their clients' held misses
/// while a URL is seen at most N times, then store it. Every variant runs
/// (the conservation checks pass); with N = 1 the IGRs redirect less and
/// keep more copies than with N = 8, and only the IGRs redirect.
#[test]
fn the_worldnet_igr_variants_run_and_the_threshold_stores_past_n() {
    let tmp = TempDir::new("redirect-sim-worldnet");
    let trace = tmp.path().join("trace.log");
    let cuttle = env!("CARGO_BIN_EXE_cuttle");
    let clients = "172.16.0.0/16,172.17.0.0/16,172.18.0.0/16,172.19.0.0/16,\
                   10.1.0.0/16,10.2.0.0/16,10.3.0.0/16,10.4.0.0/16,10.5.0.0/16,\
                   10.6.0.0/16,10.7.0.0/16,10.8.0.0/16,10.9.0.0/16";
    let generated = std::process::Command::new(cuttle)
        .args([
            "trace",
            "generate",
            "--requests",
            "4000",
            "--objects",
            "500",
        ])
        .args(["--clients", clients, "-o"])
        .arg(&trace)
        .output()
        .expect("run cuttle trace generate");
    assert!(generated.status.success(), "{generated:?}");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/worldnet/redirect/small");
    let run = |mesh: &str| -> serde_json::Value {
        let out = std::process::Command::new(cuttle)
            .arg("simulate")
            .arg(examples.join(mesh))
            .arg(&trace)
            .arg("--json")
            .output()
            .expect("run cuttle simulate");
        assert!(out.status.success(), "{mesh}: {out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["runs"][0].clone()
    };
    let runs: Vec<serde_json::Value> = ["t0", "t1", "t2", "t4", "t8", "always"]
        .iter()
        .map(|v| run(&format!("cuttle-{v}.toml")))
        .collect();
    let redirects = |r: &serde_json::Value| r["total"]["redirects"].as_u64().unwrap();
    let copies = |r: &serde_json::Value| r["stored"]["copies"].as_u64().unwrap();
    let (store, one, eight, always) = (&runs[0], &runs[1], &runs[4], &runs[5]);
    let diag = format!("t0 {store}\nt1 {one}\nt8 {eight}\nalways {always}");
    assert_eq!(redirects(store), 0, "{diag}");
    assert!(redirects(one) > 0 && redirects(always) > 0, "{diag}");
    // A higher N forwards (redirects) longer and keeps fewer copies.
    assert!(redirects(one) < redirects(eight), "{diag}");
    assert!(copies(one) > copies(eight), "{diag}");
    for r in &runs {
        for node in r["nodes"].as_array().unwrap() {
            let name = node["node"].as_str().unwrap();
            if !name.starts_with("igr") {
                assert_eq!(node["redirects"].as_u64(), Some(0), "{name}: {r}");
            }
        }
    }
}
