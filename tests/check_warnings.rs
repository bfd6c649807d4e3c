//! `cuttle check` reports everything `cuttle run` warns about for a
//! config, and run says each of those once: access_log formats and modules
//! cuttle does not write were warned about only when the logger started.

mod support;

use std::process::Command;

use support::{free_port, Conf, Cuttle, TempDir};

fn conf() -> Conf {
    Conf::new()
        .extra("logformat mine %ts %ru")
        .extra("access_log stdio:{dir}/mine.log logformat=mine")
        .extra("access_log stdio:{dir}/combined.log combined")
        .extra("access_log syslog:local4.info")
}

/// What the warnings must say (each a distinct piece of one line).
const EXPECTED: &[&str] = &[
    "access_log: log format \"mine\" is not supported yet",
    "access_log: log format \"combined\" is not supported yet",
    "access_log: module syslog (local4.info) is not supported by cuttle",
];

#[test]
fn check_reports_the_access_log_warnings() {
    let dir = TempDir::new("check");
    let path = dir.path().join("squid.conf");
    std::fs::write(&path, conf().text(dir.path(), free_port())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["check", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for want in EXPECTED {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(want)).collect();
        assert_eq!(lines.len(), 1, "{want:?} in:\n{text}");
        assert!(lines[0].contains(": warning: "), "{}", lines[0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_says_each_warning_once() {
    let cuttle = Cuttle::start(&conf());
    let stderr = cuttle.stderr();
    for want in EXPECTED {
        let n = stderr.iter().filter(|l| l.contains(want)).count();
        assert_eq!(n, 1, "{want:?} in:\n{}", stderr.join("\n"));
    }
}
