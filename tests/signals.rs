//! Signals and files as Squid's: SIGUSR1 rotates the logs (`logfile_rotate`),
//! no signal Squid uses kills cuttle, `pid_filename` is written and removed,
//! `cuttle -k ACTION -f FILE` signals the running instance through it (with
//! Squid's messages when none runs), `cache_log` gets Squid-form lines, and
//! a sibling that goes down and comes back is logged DEAD then REVIVED once.

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cuttle_protocol::icp::Opcode;
use peer_lab::{free_udp_port, start_cuttle, FakePeer, HttpMode, IcpMode};
use support::{Conf, Cuttle, Origin, Reply, Req, TempDir, WAIT};

async fn origin() -> Origin {
    let origin = Origin::start().await;
    origin.route("/", |_| Reply::ok("hello").cc("no-store"));
    origin
}

/// Lines of `path` (empty when missing).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `path` has exactly `n` lines.
async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = lines(path);
        if got.len() == n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, not {n}:\n{}",
            path.display(),
            got.len(),
            got.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn numbered(path: &Path, i: u32) -> PathBuf {
    PathBuf::from(format!("{}.{i}", path.display()))
}

/// `n` requests for `/?tag=i`, each answered 200.
async fn requests(cuttle: &Cuttle, origin: &Origin, tag: &str, n: usize) {
    for i in 0..n {
        let r = Req::get(&format!("{}?{tag}{i}", origin.url("/")))
            .send_to(cuttle.addr())
            .await;
        assert_eq!(r.status, 200, "request {tag}{i}");
    }
}

/// Runs `cuttle ARGS`; its exit code, stdout and stderr.
fn cuttle_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .output()
        .expect("run cuttle");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_squid_time_stamped(line: &str) -> bool {
    // YYYY/MM/DD HH:MM:SS|
    let b = line.as_bytes();
    b.len() > 21
        && b[4] == b'/'
        && b[7] == b'/'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && &line[19..21] == "| "
        && line[..19].bytes().filter(u8::is_ascii_digit).count() == 14
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_rotates_the_access_log_as_logfile_rotate_says_losing_nothing() {
    let origin = origin().await;
    let cuttle = Cuttle::start(
        &Conf::new()
            .extra("logfile_rotate 2")
            .extra("strip_query_terms off"),
    );
    let log = cuttle.log_path();
    requests(&cuttle, &origin, "first", 3).await;
    wait_lines(&log, 3).await;
    cuttle.signal("USR1");
    wait_lines(&numbered(&log, 0), 3).await;
    requests(&cuttle, &origin, "second", 4).await;
    wait_lines(&log, 4).await;
    cuttle.signal("USR1");
    wait_lines(&numbered(&log, 1), 3).await;
    requests(&cuttle, &origin, "third", 2).await;
    let third = wait_lines(&log, 2).await;
    let second = wait_lines(&numbered(&log, 0), 4).await;
    let first = wait_lines(&numbered(&log, 1), 3).await;
    for (batch, tag) in [(&first, "first"), (&second, "second"), (&third, "third")] {
        assert!(
            batch.iter().all(|l| l.contains(&format!("?{tag}"))),
            "{tag}: {batch:?}"
        );
    }
    assert!(
        !numbered(&log, 2).exists(),
        "logfile_rotate 2 keeps .0 and .1"
    );
    // Still serving after two rotations.
    requests(&cuttle, &origin, "after", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_squids_signals_do_not_kill_it() {
    let origin = origin().await;
    let cuttle = Cuttle::start(&Conf::new());
    for _ in 0..10 {
        for sig in ["USR2", "HUP", "USR1"] {
            cuttle.signal(sig);
        }
    }
    // USR2 toggles debugging and says so.
    cuttle.wait_output("SIGUSR2", false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    requests(&cuttle, &origin, "storm", 3).await;
    cuttle.signal("USR2");
    tokio::time::sleep(Duration::from_millis(100)).await;
    requests(&cuttle, &origin, "calm", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pid_file_is_written_at_start_and_removed_at_a_clean_stop() {
    let mut cuttle = Cuttle::start(&Conf::new());
    let pid_file = cuttle.dir.path().join("cuttle.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap_or_default(),
        format!("{}\n", cuttle.pid())
    );
    cuttle
        .wait_output(&format!("pid_filename {}", pid_file.display()), false)
        .await;
    cuttle.signal("TERM");
    assert!(cuttle.wait_exit().await.success());
    assert!(!pid_file.exists(), "{} still there", pid_file.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_instance_blocks_a_second_start_and_a_stale_pid_file_does_not() {
    let shared = TempDir::new("shared-pid");
    let pid_file = shared.path().join("cuttle.pid");
    let conf = Conf::new().extra(&format!("pid_filename {}", pid_file.display()));
    let first = Cuttle::start(&conf);
    // A second cuttle on another port with the same pid_filename.
    let second = Cuttle::try_start(&conf);
    let err = second.err().expect("the second instance started");
    assert!(
        err.contains(&format!(
            "is already running: Found fresh instance PID file ({}) with PID {}",
            pid_file.display(),
            first.pid()
        )),
        "{err}"
    );
    drop(first);
    // The first was killed (SIGKILL): its pid file stays, stale.
    assert!(pid_file.exists());
    let third = Cuttle::start(&conf);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap_or_default(),
        format!("{}\n", third.pid())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_reconfigure_reloads_the_running_instance_and_k_shutdown_stops_it() {
    let mut cuttle = Cuttle::start(&Conf::new());
    let conf = cuttle.conf_path.display().to_string();
    let (code, _, err) = cuttle_cmd(&["-k", "check", "-f", &conf]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cuttle_cmd(&["-k", "reconfigure", "-f", &conf]);
    assert_eq!(code, 0, "{err}");
    cuttle
        .wait_output("cuttle: configuration reloaded", false)
        .await;
    let (code, _, err) = cuttle_cmd(&["-k", "rotate", "-f", &conf]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cuttle_cmd(&["-k", "shutdown", "-f", &conf]);
    assert_eq!(code, 0, "{err}");
    assert!(cuttle.wait_exit().await.success());
    assert!(cuttle.stdout().iter().any(|l| l == "cuttle: stopped"));
}

#[test]
fn k_without_a_running_instance_says_what_squid_says() {
    let dir = TempDir::new("k-none");
    let missing = dir.path().join("nobody.pid");
    let conf = dir.path().join("squid.conf");
    std::fs::write(
        &conf,
        format!(
            "http_port 127.0.0.1:3128\naccess_log none\npid_filename {}\n",
            missing.display()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    for action in [
        "reconfigure",
        "rotate",
        "shutdown",
        "interrupt",
        "kill",
        "check",
    ] {
        let (code, _, err) = cuttle_cmd(&["-k", action, "-f", &conf]);
        assert_eq!(code, 1, "-k {action}: {err}");
        let line = err.lines().next().unwrap_or_default();
        assert!(is_squid_time_stamped(line), "{line}");
        assert_eq!(
            &line[21..],
            format!(
                "FATAL: failed to open {}: (2) No such file or directory",
                missing.display()
            ),
            "-k {action}"
        );
    }
    // A stale pid file: the process is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&missing, format!("{gone_pid}\n")).unwrap();
    let (code, _, err) = cuttle_cmd(&["-k", "check", "-f", &conf]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "| FATAL: failed to send signal 0 to cuttle instance with PID {gone_pid}: (3) No such process"
        )),
        "{err}"
    );
    // pid_filename none.
    std::fs::write(
        dir.path().join("none.conf"),
        "http_port 3128\npid_filename none\n",
    )
    .unwrap();
    let none = dir.path().join("none.conf").display().to_string();
    let (code, _, err) = cuttle_cmd(&["-k", "reconfigure", "-f", &none]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.ends_with("| FATAL: no pid_filename configured\n"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_log_gets_squid_form_lines_and_rotates() {
    let dir = TempDir::new("cache-log-path");
    let cache_log = dir.path().join("cache.log");
    let cuttle = Cuttle::start(
        &Conf::new()
            .extra(&format!("cache_log {}", cache_log.display()))
            .extra("logfile_rotate 1")
            // Not used by cuttle: a warning, which goes to cache_log.
            .extra("coredump_dir /tmp"),
    );
    cuttle
        .wait_output(&format!("cuttle: cache_log {}", cache_log.display()), false)
        .await;
    cuttle
        .wait_output(
            &format!("cuttle: access_log {}", cuttle.log_path().display()),
            false,
        )
        .await;
    // cuttle prints a start-up line on stdout and then writes it to the
    // cache_log: the "listening on" Cuttle::start saw may not be there yet.
    let deadline = Instant::now() + WAIT;
    while !lines(&cache_log)
        .iter()
        .any(|l| l.contains("| cuttle: listening on 127.0.0.1:"))
    {
        assert!(Instant::now() < deadline, "{:?}", lines(&cache_log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = lines(&cache_log);
    assert!(
        !got.is_empty() && got.iter().all(|l| is_squid_time_stamped(l)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|l| l.contains("| WARNING: ") && l.contains("coredump_dir")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|l| l.contains("| cuttle: listening on 127.0.0.1:")),
        "{got:?}"
    );
    cuttle.signal("USR1");
    let deadline = Instant::now() + WAIT;
    while !numbered(&cache_log, 0).exists() {
        assert!(Instant::now() < deadline, "no cache.log.0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines(&numbered(&cache_log, 0)).len(), got.len());
    cuttle.signal("USR2");
    cuttle.wait_output("SIGUSR2", false).await;
    let deadline = Instant::now() + WAIT;
    while !lines(&cache_log).iter().any(|l| l.contains("SIGUSR2")) {
        assert!(Instant::now() < deadline, "{:?}", lines(&cache_log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sibling_going_down_then_up_is_logged_dead_then_revived_once_each() {
    let origin = Origin::start().await;
    for p in ["/1", "/2", "/3", "/4", "/5", "/6", "/7"] {
        origin.route(p, move |_| Reply::ok(format!("origin {p}")).cc("no-store"));
    }
    let peer_ip = Ipv4Addr::new(127, 0, 23, 2);
    let peer = FakePeer::start(peer_ip, IcpMode::Answer(Opcode::Miss), HttpMode::Ok).await;
    let tmp = TempDir::new("dead-revived");
    let own_ip = Ipv4Addr::new(127, 0, 23, 1);
    // ICP queries leave from the icp_port, as Squid's: no port, no queries.
    let icp = free_udp_port(own_ip);
    let cuttle = start_cuttle(
        tmp.path(),
        own_ip,
        &format!(
            "{}\nudp_incoming_address 127.0.23.1\nicp_port {icp}\nicp_query_timeout 200\ndead_peer_timeout 1 second",
            peer.line("sibling", "")
        ),
    );
    peer.wait_probed(&cuttle).await;
    let get = async |path: &str| {
        let r = Req::get(&origin.url(path)).send_to(cuttle.addr).await;
        assert_eq!(r.status, 200, "{path}: {}", cuttle.output());
    };
    get("/1").await;
    let dead = format!("Detected DEAD Sibling: {peer_ip}");
    let revived = format!("Detected REVIVED Sibling: {peer_ip}");
    // Up from the start: neither line.
    assert!(
        !cuttle.output().contains("Detected "),
        "{}",
        cuttle.output()
    );
    peer.set_icp(IcpMode::Silent);
    get("/2").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    get("/3").await;
    cuttle.wait_output(&dead, Duration::from_secs(5));
    get("/4").await;
    peer.set_icp(IcpMode::Answer(Opcode::Miss));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    get("/5").await;
    cuttle.wait_output(&revived, Duration::from_secs(5));
    get("/6").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    get("/7").await;
    let out = cuttle.output();
    assert_eq!(out.matches(&dead).count(), 1, "{out}");
    assert_eq!(out.matches(&revived).count(), 1, "{out}");
}
