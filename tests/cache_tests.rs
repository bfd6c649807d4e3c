//! The public HTTP cache-tests suite (tests/cache-tests, vendored from
//! github.com/http-tests/cache-tests) against cuttle as an accelerator, as
//! the suite's own docker/squid setup runs Squid: the suite's origin server
//! bound to 127.0.0.1, cuttle in front of it, the suite's CLI, and its JSON
//! compared with tests/cache-tests/expectations.json. Every test the file
//! says passes must pass; newly passing tests are printed so the file can be
//! updated. `CUTTLE_CACHE_TESTS_UPDATE=1` rewrites the file from the run
//! (keeping the reasons already written for tests that still do not pass).
//! Takes about a minute: the suite pauses between requests.
//!
//! `CUTTLE_CACHE_TESTS_HTTPS=1` runs the suite through an `https_port`
//! instead (issue 17): the same squid.conf with its http_port line made an
//! https_port presenting a throwaway certificate for `localhost` (made at
//! run time, its CA given to node with NODE_EXTRA_CA_CERTS), the suite's
//! base URL `https://localhost:PORT`, and the results compared with the
//! same expectations.json.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use support::{free_port, Cuttle, TempDir};

const UPDATE_ENV: &str = "CUTTLE_CACHE_TESTS_UPDATE";
const HTTPS_ENV: &str = "CUTTLE_CACHE_TESTS_HTTPS";
const SETUP_HINT: &str =
    "run ./.ci/run: it installs nodejs and npm, then `npm ci --prefix tests/cache-tests`";
/// A whole run takes about a minute; a hung one is cut off here.
const SUITE_LIMIT: Duration = Duration::from_secs(600);
/// One test run alone (a retry) takes seconds.
const ONE_LIMIT: Duration = Duration::from_secs(60);

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cache-tests")
}

fn expectations_path() -> PathBuf {
    suite_dir().join("expectations.json")
}

/// One test of the suite, as tests/cache-tests/list.mjs describes it.
struct SuiteTest {
    id: String,
    /// None: required (the suite's default).
    kind: Option<String>,
    browser_only: bool,
    needs_undici: bool,
}

impl SuiteTest {
    fn required(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("required"))
    }
}

/// A child process killed and reaped when dropped (a failing test must not
/// leave the suite's origin server behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node() -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(suite_dir());
    // The suite reads its settings from npm's environment; none may leak in
    // from a caller that runs under npm.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("npm_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `v20.20.2` -> (20, 20, 2).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text
        .trim()
        .trim_start_matches(['v', '>', '='])
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

fn node_version() -> (String, (u32, u32, u32)) {
    let out = node()
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): {SETUP_HINT}"));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version = parse_version(&text)
        .unwrap_or_else(|| panic!("`node --version` printed {text:?}: {SETUP_HINT}"));
    (text, version)
}

/// The node version the installed undici needs (its package.json's
/// `engines.node`, `>=20.18.1` for undici 7).
fn undici_min_node() -> (String, (u32, u32, u32)) {
    let manifest = suite_dir().join("node_modules/undici/package.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
        panic!(
            "undici is not installed ({}: {e}): {SETUP_HINT}",
            manifest.display()
        )
    });
    let manifest: Value = serde_json::from_str(&text).expect("undici's package.json");
    let range = manifest["engines"]["node"]
        .as_str()
        .unwrap_or(">=0.0.0")
        .to_string();
    let version =
        parse_version(&range).unwrap_or_else(|| panic!("undici's engines.node {range:?}"));
    (range, version)
}

fn suite_tests() -> Vec<SuiteTest> {
    let out = node().arg("list.mjs").output().expect("run node list.mjs");
    assert!(
        out.status.success(),
        "node list.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("list.mjs prints JSON");
    list.iter()
        .map(|t| SuiteTest {
            id: t["id"].as_str().expect("id").to_string(),
            kind: t["kind"].as_str().map(str::to_string),
            browser_only: t["browser_only"] == true,
            needs_undici: t["needs_undici"] == true,
        })
        .collect()
}

/// Lines of `stream`, as they come, on a channel.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The suite's origin server on a free loopback port (loopback.mjs makes
/// its `listen(port)` bind 127.0.0.1 only), once it listens.
fn start_origin(dir: &Path) -> (Reaped, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut child = node()
            .args([
                "--import",
                "./loopback.mjs",
                "test-engine/server/server.mjs",
            ])
            .env("npm_config_port", port.to_string())
            .env("npm_package_config_protocol", "http")
            .env("npm_config_pidfile", dir.join("origin.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node ({e}): {SETUP_HINT}"));
        let out = lines_of(child.stdout.take().expect("stdout"));
        let err = lines_of(child.stderr.take().expect("stderr"));
        let child = Reaped(child);
        let want = format!("Listening on http://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match out.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line == want => {
                    // The server logs as it serves; nobody reads it now.
                    std::thread::spawn(move || out.into_iter().for_each(drop));
                    std::thread::spawn(move || err.into_iter().for_each(drop));
                    return (child, port);
                }
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        seen.extend(err.try_iter());
        last = seen.join("\n");
        // Another process took the port between the probe and the bind.
        if !last.contains("EADDRINUSE") {
            break;
        }
    }
    panic!("the suite's origin server did not start:\n{last}");
}

/// How the suite's CLI reaches cuttle.
struct Front {
    /// `http://localhost:PORT` or `https://localhost:PORT`.
    base: String,
    /// With HTTPS: the test CA's PEM file, for NODE_EXTRA_CA_CERTS.
    ca: Option<PathBuf>,
}

/// cuttle configured as the suite's docker/squid/squid.conf configures
/// Squid (an accelerator with the origin as `originserver` parent), with a
/// cache_dir, pid file and logs in its temp dir; with `https`, on an
/// https_port.
fn start_cuttle(origin_port: u16, https: bool) -> (Cuttle, Front) {
    let dir = TempDir::new("cache-tests");
    let port = free_port();
    let squid_conf = std::fs::read_to_string(suite_dir().join("docker/squid/squid.conf"))
        .expect("docker/squid/squid.conf");
    let (port_line, front) = if https {
        let pki = support::tls::Pki::new(dir.path(), "cache-tests");
        let leaf = pki.leaf("localhost", &["localhost"]);
        (
            format!(
                "https_port 127.0.0.1:{port} tls-cert={} tls-key={} ",
                leaf.cert_path.display(),
                leaf.key_path.display()
            ),
            Front {
                base: format!("https://localhost:{port}"),
                ca: Some(pki.ca_path().to_path_buf()),
            },
        )
    } else {
        (
            format!("http_port 127.0.0.1:{port} "),
            Front {
                base: format!("http://localhost:{port}"),
                ca: None,
            },
        )
    };
    let mut conf = squid_conf.replace("http_port 8001 ", &port_line).replace(
        "cache_peer localhost parent 8000 ",
        &format!("cache_peer 127.0.0.1 parent {origin_port} "),
    );
    assert!(
        conf.contains(&format!(":{port} ")) && conf.contains(&format!(" {origin_port} ")),
        "docker/squid/squid.conf no longer has the http_port and cache_peer lines this test rewrites:\n{squid_conf}"
    );
    let d = dir.path().display();
    conf.push_str(&format!(
        "cache_dir mmap {d}/cache 100\npid_filename {d}/cuttle.pid\n\
         access_log stdio:{d}/access.log squid\ncache_log {d}/cache.log\n"
    ));
    let conf_path = dir.path().join("squid.conf");
    std::fs::write(&conf_path, conf).expect("write squid.conf");
    let args = [
        "run".to_string(),
        "-f".to_string(),
        conf_path.display().to_string(),
    ];
    (
        Cuttle::start_raw(&args, &[], port, dir, "cache-tests"),
        front,
    )
}

/// Runs the suite's CLI against cuttle: the whole suite (`id` empty) or one
/// test; its stdout.
fn run_cli(front: &Front, id: &str, limit: Duration) -> String {
    let mut cmd = node();
    if let Some(ca) = &front.ca {
        cmd.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let mut child = cmd
        .args(["--no-warnings", "test-engine/cli.mjs"])
        .env("npm_config_base", &front.base)
        // Empty: the whole suite. The CLI crashes when it is unset.
        .env("npm_package_config_id", id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): {SETUP_HINT}"));
    let out = lines_of(child.stdout.take().expect("stdout"));
    let err = lines_of(child.stderr.take().expect("stderr"));
    let mut child = Reaped(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the CLI") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the suite's CLI did not finish in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout: Vec<String> = out.into_iter().collect();
    let stderr: Vec<String> = err.into_iter().collect();
    assert!(
        status.success(),
        "the suite's CLI failed ({status}):\n{}",
        stderr.join("\n")
    );
    stdout.join("\n")
}

/// A result of the suite's JSON: `true` is a pass, anything else (e.g.
/// `["Assertion", "Response 2 does not come from cache"]`) says why not.
fn failure_text(result: Option<&Value>) -> String {
    match result {
        None => "no result: the CLI did not run it".to_string(),
        Some(Value::Array(parts)) => match (parts.first(), parts.get(1)) {
            (Some(Value::String(kind)), Some(Value::String(message))) if kind == "Assertion" => {
                message.clone()
            }
            (Some(Value::String(kind)), Some(Value::String(message))) => {
                format!("{kind}: {message}")
            }
            _ => Value::Array(parts.clone()).to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn load_expectations() -> Map<String, Value> {
    let path = expectations_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => map,
            _ => panic!("{} is not a JSON object", path.display()),
        },
        Err(_) => Map::new(),
    }
}

const ABOUT: &str = "The cache-tests suite's tests (tests/cache-tests) as cuttle's \
tests/cache_tests.rs expects them. tests: one entry per test id, in the suite's order: \
\"pass\", or why cuttle does not pass it: \"deliberate: ...\" (a Squid-compatible \
choice, README's \"HTTP conformance\"), \"not yet: ...\", or \"untested: ...\" (only a \
browser cache runs it). needs_undici: the tests that need the undici package, run only \
where node is as new as undici asks (package.json engines) and otherwise reported as \
skipped. Rewrite with CUTTLE_CACHE_TESTS_UPDATE=1 cargo test --test cache_tests \
(reasons already written are kept).";

/// Writes to the real stderr, past the test harness's capture: a passing
/// run's newly passing, flaky and skipped tests must show in CI's log.
fn notice(text: String) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Why a test does not pass: a choice, or work to do.
fn is_reason(status: &str) -> bool {
    status.starts_with("deliberate: ") || status.starts_with("not yet: ")
}

const BROWSER_ONLY: &str = "untested: only a browser cache runs it";

#[test]
fn cache_tests_suite_matches_expectations() {
    let update = std::env::var_os(UPDATE_ENV).is_some();
    let (node_text, node_version) = node_version();
    let (undici_range, undici_node) = undici_min_node();
    let undici_runs = node_version >= undici_node;
    let tests = suite_tests();
    let expected = load_expectations();
    let statuses = expected
        .get("tests")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();

    let started = Instant::now();
    let scratch = TempDir::new("cache-tests-origin");
    let (origin, origin_port) = start_origin(scratch.path());
    let https = std::env::var_os(HTTPS_ENV).is_some();
    let (cuttle, front) = start_cuttle(origin_port, https);
    let output = run_cli(&front, "", SUITE_LIMIT);
    let results: Map<String, Value> = serde_json::from_str(&output)
        .unwrap_or_else(|e| panic!("the suite's CLI printed no JSON ({e}):\n{output}"));
    let passed = |id: &str| results.get(id) == Some(&Value::Bool(true));

    let mut problems = Vec::new();
    let mut regressions = Vec::new();
    let mut newly_passing = Vec::new();
    let mut skipped = Vec::new();
    let mut flaky = Vec::new();
    let (mut ran, mut passes, mut required, mut required_passes) = (0, 0, 0, 0);
    let suite_ids: BTreeSet<&str> = tests.iter().map(|t| t.id.as_str()).collect();
    for id in statuses.keys() {
        if !suite_ids.contains(id.as_str()) {
            problems.push(format!("{id}: listed, but the suite has no such test"));
        }
    }
    let listed_undici: BTreeSet<&str> = expected
        .get("needs_undici")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let suite_undici: BTreeSet<&str> = tests
        .iter()
        .filter(|t| t.needs_undici)
        .map(|t| t.id.as_str())
        .collect();
    if listed_undici != suite_undici {
        problems.push(format!(
            "needs_undici lists {listed_undici:?}, the suite's tests that need undici are {suite_undici:?}"
        ));
    }

    let mut new_statuses = Map::new();
    for test in &tests {
        let status = statuses.get(&test.id).and_then(Value::as_str);
        if test.browser_only {
            if status != Some(BROWSER_ONLY) {
                problems.push(format!(
                    "{}: only a browser cache runs it; list it as {BROWSER_ONLY:?}",
                    test.id
                ));
            }
            new_statuses.insert(test.id.clone(), json!(BROWSER_ONLY));
            continue;
        }
        if test.needs_undici && !undici_runs {
            skipped.push(test.id.as_str());
            if let Some(status) = status {
                new_statuses.insert(test.id.clone(), json!(status));
            }
            continue;
        }
        ran += 1;
        let pass = passed(&test.id);
        passes += usize::from(pass);
        if test.required() {
            required += 1;
            required_passes += usize::from(pass);
        }
        let failure = failure_text(results.get(&test.id));
        match status {
            None if pass => problems.push(format!("{}: not listed (it passes)", test.id)),
            None => problems.push(format!("{}: not listed (it fails: {failure})", test.id)),
            Some("pass") if !pass => regressions.push((test.id.as_str(), failure.clone())),
            Some(s) if pass && s != "pass" => newly_passing.push(test.id.as_str()),
            Some(s) if !pass && !is_reason(s) => problems.push(format!(
                "{}: {s:?} is neither \"pass\", \"not yet: ...\" nor \"deliberate: ...\"",
                test.id
            )),
            _ => {}
        }
        let new_status = match status {
            _ if pass => "pass".to_string(),
            Some(s) if s != "pass" => s.to_string(),
            _ => format!("not yet: {failure}"),
        };
        new_statuses.insert(test.id.clone(), json!(new_status));
    }

    // The suite runs 25 tests at once with pauses between their requests;
    // a regression must also fail when run alone, so that a test that lost
    // a race once is reported as such instead of failing CI.
    regressions.retain(|(id, failure)| {
        let alone = run_cli(&front, id, ONE_LIMIT);
        let verdict = alone.lines().last().unwrap_or_default();
        let passes_alone = verdict.starts_with("\u{2705} ") || verdict.starts_with("Y ");
        if passes_alone {
            flaky.push(format!("{id} ({failure})"));
            let status = new_statuses.get_mut(*id).expect("listed");
            *status = json!("pass");
        }
        !passes_alone
    });
    drop(cuttle);
    drop(origin);

    let needs_undici: Vec<&str> = suite_undici.iter().copied().collect();
    notice(format!(
        "cache-tests{}: {passes} of {ran} pass (required: {required_passes} of {required}), in {:.0?}",
        if https { " through https_port" } else { "" },
        started.elapsed()
    ));
    if !skipped.is_empty() {
        notice(format!(
            "SKIPPED on node {node_text} (undici needs node {undici_range}): {}",
            skipped.join(", ")
        ));
    }
    for f in &flaky {
        notice(format!(
            "FLAKY (failed in the suite's run, passed alone): {f}"
        ));
    }
    if !newly_passing.is_empty() {
        notice(format!(
            "NEWLY PASSING (mark them \"pass\" in {}, or rerun with {UPDATE_ENV}=1): {}",
            expectations_path().display(),
            newly_passing.join(", ")
        ));
    }

    if update {
        let file = json!({
            "about": ABOUT,
            "suite": expected.get("suite").cloned().unwrap_or(json!("github.com/http-tests/cache-tests b55b8bd")),
            "needs_undici": needs_undici,
            "tests": new_statuses,
        });
        let mut text = serde_json::to_string_pretty(&file).expect("serialize");
        text.push('\n');
        std::fs::write(expectations_path(), text).expect("write expectations.json");
        for (id, failure) in &regressions {
            notice(format!(
                "NO LONGER PASSING, now \"not yet\": {id}: {failure}"
            ));
        }
        notice(format!(
            "rewrote {} (it had: {})",
            expectations_path().display(),
            if problems.is_empty() {
                "no other problem".to_string()
            } else {
                problems.join("; ")
            }
        ));
        return;
    }

    let mut report = problems;
    report.extend(
        regressions
            .iter()
            .map(|(id, failure)| format!("{id}: expected to pass, fails: {failure}")),
    );
    assert!(
        report.is_empty(),
        "cache-tests do not match {} (rerun with {UPDATE_ENV}=1 to rewrite it from this run):\n{}",
        expectations_path().display(),
        report.join("\n")
    );
}
