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
