//! Every squid.conf example in README.md works as written when pasted:
//! each is marked `<!-- check: cuttle -->` (run through `cuttle check`)
//! or `<!-- check: squid -->` (run through Squid's own `squid -k parse`)
//! on the line before its fence, and a code block that looks like a
//! squid.conf but carries no mark fails this test, so a new example cannot
//! slip past it.

use std::path::Path;
use std::process::Command;

mod support;
use support::TempDir;

/// Directives that make a code block a squid.conf example.
const CONFIG_STARTS: &[&str] = &[
    "http_port ",
    "https_port ",
    "cache_peer ",
    "icp_port ",
    "htcp_port ",
    "acl ",
    "http_access ",
    "cache_dir ",
    "udp_incoming_address ",
];

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// What the mark before it asks: "cuttle", "squid", or none.
    check: Option<String>,
    text: String,
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with("```") {
            i += 1;
            continue;
        }
        let line = i + 1;
        let check = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!-- check: "))
            .and_then(|rest| rest.strip_suffix(" -->"))
            .map(str::to_string);
        let mut text = String::new();
        i += 1;
        while i < lines.len() && !lines[i].starts_with("```") {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        out.push(Block { line, check, text });
        i += 1;
    }
    out
}

fn looks_like_a_config(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .any(|l| CONFIG_STARTS.iter().any(|d| l.starts_with(d)))
        && !text.trim_start().starts_with('$')
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_config_example_in_the_readme_is_checked_and_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let dir = TempDir::new("readme-configs");
    let mut failures = Vec::new();
    let (mut cuttle_checked, mut squid_checked) = (0, 0);
    for block in blocks(&readme) {
        let path = dir.path().join(format!("readme-{}.conf", block.line));
        match block.check.as_deref() {
            None if looks_like_a_config(&block.text) => failures.push(format!(
                "README.md:{}: a squid.conf example with no <!-- check: cuttle|squid --> mark",
                block.line
            )),
            None => {}
            Some("cuttle") => {
                cuttle_checked += 1;
                std::fs::write(&path, &block.text).expect("write config");
                let (ok, text) = run(Command::new(env!("CARGO_BIN_EXE_cuttle"))
                    .args(["check", "-f"])
                    .arg(&path));
                if !ok || text.contains(": error:") {
                    failures.push(format!(
                        "README.md:{}: cuttle check failed:\n{text}",
                        block.line
                    ));
                }
            }
            Some("squid") => {
                squid_checked += 1;
                std::fs::write(&path, &block.text).expect("write config");
                // Squid's own parser: README.md's set-up installs Debian's squid.
                let (ok, text) = run(Command::new("squid").args(["-k", "parse", "-f"]).arg(&path));
                let complaints: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("ERROR") || l.contains("FATAL"))
                    .collect();
                if !ok || !complaints.is_empty() {
                    failures.push(format!(
                        "README.md:{}: squid -k parse failed:\n{text}",
                        block.line
                    ));
                }
            }
            Some(other) => failures.push(format!(
                "README.md:{}: unknown check {other:?} (cuttle or squid)",
                block.line
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The README has examples of both: a test that checked none proves nothing.
    assert!(
        cuttle_checked >= 3 && squid_checked >= 2,
        "checked {cuttle_checked} cuttle and {squid_checked} Squid examples"
    );
}

#[test]
fn an_unmarked_config_block_is_found() {
    let readme = "text\n\n```\nhttp_port 3128\n```\n\n<!-- check: cuttle -->\n```\nicp_port 3130\n```\n\n```console\n$ cuttle check -f x\n```\n";
    let found = blocks(readme);
    assert_eq!(found.len(), 3);
    assert!(found[0].check.is_none() && looks_like_a_config(&found[0].text));
    assert_eq!(found[1].check.as_deref(), Some("cuttle"));
    assert!(!looks_like_a_config(&found[2].text));
}
