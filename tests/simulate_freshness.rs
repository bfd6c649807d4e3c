//! `cuttle trace generate --change-rate` and `cuttle simulate` on
//! examples/freshness as a user runs them: the change lines are written
//! and read, Squid's heuristic serves stale hits, leases and push serve
//! none beyond the notification delay, and a trace without changes
//! reports no change figures.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cuttle(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cuttle {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn generate(dir: &Path, name: &str, extra: &[&str]) -> String {
    let path = dir.join(name).display().to_string();
    let mut args = vec![
        "trace",
        "generate",
        "--requests",
        "6000",
        "--duration",
        "86400",
        "--clients",
        "10.1.0.0/16,10.2.0.0/16,10.3.0.0/16",
        "-o",
        &path,
    ];
    args.extend_from_slice(extra);
    cuttle(&args);
    path
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/freshness")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn squid_heuristic_serves_stale_hits_and_push_none_beyond_the_notification_delay() {
    let dir = Dir(std::env::temp_dir().join(format!("cuttle-simfresh-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let trace = generate(&dir.0, "changes.log", &["--change-rate", "1"]);
    let text = std::fs::read_to_string(&trace).unwrap();
    let changes = text.lines().filter(|l| l.starts_with("#change ")).count();
    assert!(changes > 1000, "{changes} change lines");

    let table = cuttle(&["simulate", &example("squid.toml"), &trace]);
    assert!(
        table.contains(&format!("changes: {changes} at the origin")),
        "{table}"
    );

    let json = cuttle(&[
        "simulate",
        &example("squid.toml"),
        &trace,
        "--compare",
        &example("push.toml"),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let total = |run: usize, key: &str| v["runs"][run]["changes"]["total"][key].as_u64().unwrap();
    assert!(total(0, "stale_hits") > 0);
    assert_eq!(total(0, "stale_hits"), total(0, "stale_beyond_notice"));
    assert!(total(0, "validations") > total(0, "not_modified"));
    assert_eq!(total(0, "push_notices"), 0);
    assert_eq!(total(1, "stale_beyond_notice"), 0);
    assert!(total(1, "push_notices") > 0);

    let plain = generate(&dir.0, "plain.log", &[]);
    let json = cuttle(&["simulate", &example("squid.toml"), &plain, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["runs"][0]["changes"].is_null());
}
