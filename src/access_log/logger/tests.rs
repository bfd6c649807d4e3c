//! Unit tests of the access-log writer: destinations, formats, the writer thread, flushing and rotation.

use super::*;
use crate::access_log::{Entry, Hierarchy, HierarchyCode, ResultTag};
use crate::config::{load_str, LoadOptions};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::time::UNIX_EPOCH;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "cuttle-access-log-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(text: &str) -> Config {
    let loaded = load_str(text, "t.conf", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config
}

fn entry(n: u64, client: [u8; 4]) -> Entry {
    Entry {
        end: UNIX_EPOCH + Duration::from_millis(1_795_371_307_250 + n),
        elapsed: Duration::from_millis(n),
        client: Some(IpAddr::V4(Ipv4Addr::from(client))),
        result: ResultTag::TcpMiss.into(),
        status: 200,
        size: 1000 + n,
        method: "GET".into(),
        url: format!("http://example.com/{n}?secret"),
        user: None,
        hierarchy: Hierarchy::new(HierarchyCode::HierDirect, Some("192.0.2.1")),
        content_type: Some("text/plain; charset=utf-8".into()),
    }
}

fn line(n: u64, client: [u8; 4]) -> String {
    format!(
        "{}\n",
        entry(n, client).to_native_line(&FormatOptions::default())
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn logger_is_shareable() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Logger>();
}

#[test]
fn appends_to_existing_files_and_creates_missing_ones() {
    let dir = TempDir::new();
    let old = dir.file("old.log");
    let new = dir.file("new.log");
    std::fs::write(&old, "earlier line\n").unwrap();
    let logger = Logger::from_config(&config(&format!(
        "access_log stdio:{} squid\naccess_log daemon:{}\n",
        old.display(),
        new.display()
    )))
    .unwrap();
    assert!(logger.warnings().is_empty(), "{:?}", logger.warnings());
    for n in 0..3 {
        logger.log(&entry(n, [10, 0, 0, 1]));
    }
    logger.flush();
    let lines: String = (0..3).map(|n| line(n, [10, 0, 0, 1])).collect();
    assert_eq!(read(&old), format!("earlier line\n{lines}"));
    assert_eq!(read(&new), lines);
    assert!(lines.contains(" http://example.com/0? "), "{lines}");
    assert!(lines.ends_with(" HIER_DIRECT/192.0.2.1 text/plain\n"));
    let stats = logger.stats();
    assert_eq!((stats.queued, stats.written, stats.dropped), (6, 6, 0));
}

#[test]
fn strip_query_terms_off_keeps_queries() {
    let dir = TempDir::new();
    let path = dir.file("a.log");
    let logger = Logger::from_config(&config(&format!(
        "strip_query_terms off\naccess_log {}\n",
        path.display()
    )))
    .unwrap();
    logger.log(&entry(1, [10, 0, 0, 1]));
    logger.flush();
    assert!(read(&path).contains(" http://example.com/1?secret "));
}

#[test]
fn lines_reach_the_file_within_the_flush_interval() {
    let dir = TempDir::new();
    let path = dir.file("a.log");
    let logger = Logger::from_config(&config(&format!("access_log {}\n", path.display()))).unwrap();
    let start = Instant::now();
    logger.log(&entry(7, [10, 0, 0, 1]));
    while read(&path).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    assert_eq!(read(&path), line(7, [10, 0, 0, 1]));
    // 100 ms flush interval; generous slack for a loaded machine.
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

#[test]
fn dropping_the_last_clone_flushes() {
    let dir = TempDir::new();
    let path = dir.file("a.log");
    let logger = Logger::with_options(
        &config(&format!("access_log {}\n", path.display())),
        LoggerOptions {
            flush_interval: Duration::from_secs(3600),
            ..LoggerOptions::default()
        },
    )
    .unwrap();
    let clone = logger.clone();
    clone.log(&entry(1, [10, 0, 0, 1]));
    drop(logger);
    clone.log(&entry(2, [10, 0, 0, 1]));
    drop(clone);
    assert_eq!(
        read(&path),
        format!("{}{}", line(1, [10, 0, 0, 1]), line(2, [10, 0, 0, 1]))
    );
}

#[test]
fn an_unopenable_file_is_an_error_naming_it() {
    let dir = TempDir::new();
    let bad = dir.file("no-such-dir").join("access.log");
    let good = dir.file("good.log");
    let err = Logger::from_config(&config(&format!(
        "access_log {}\naccess_log stdio:{}\n",
        good.display(),
        bad.display()
    )))
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("t.conf:2: access_log: cannot open "),
        "{text}"
    );
    assert!(text.contains(&bad.display().to_string()), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
    assert_eq!(err.path, bad);
}

#[test]
fn reopen_follows_a_renamed_log() {
    let dir = TempDir::new();
    let path = dir.file("access.log");
    let rotated = dir.file("access.log.1");
    let logger = Logger::from_config(&config(&format!("access_log {}\n", path.display()))).unwrap();
    logger.log(&entry(1, [10, 0, 0, 1]));
    logger.flush();
    std::fs::rename(&path, &rotated).unwrap();
    logger.log(&entry(2, [10, 0, 0, 1]));
    logger.flush(); // still the old file (now access.log.1)
    logger.reopen();
    logger.log(&entry(3, [10, 0, 0, 1]));
    logger.flush();
    assert_eq!(
        read(&rotated),
        format!("{}{}", line(1, [10, 0, 0, 1]), line(2, [10, 0, 0, 1]))
    );
    assert_eq!(read(&path), line(3, [10, 0, 0, 1]));
    assert_eq!(logger.stats().reopen_errors, 0);
}

#[test]
fn a_failed_reopen_keeps_the_old_file() {
    let dir = TempDir::new();
    let sub = dir.file("logs");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("access.log");
    let logger = Logger::from_config(&config(&format!("access_log {}\n", path.display()))).unwrap();
    let moved = dir.file("moved");
    std::fs::rename(&sub, &moved).unwrap();
    logger.reopen();
    logger.log(&entry(1, [10, 0, 0, 1]));
    logger.flush();
    assert_eq!(logger.stats().reopen_errors, 1);
    assert_eq!(read(&moved.join("access.log")), line(1, [10, 0, 0, 1]));
}

#[test]
fn acls_are_the_callers_and_none_stops_like_squid() {
    let dir = TempDir::new();
    let (a, b) = (dir.file("a.log"), dir.file("b.log"));
    let logger = Logger::from_config(&config(&format!(
        "acl lan src 10.0.0.0/8\n\
             access_log {} squid lan\n\
             access_log none localhost\n\
             access_log {}\n",
        a.display(),
        b.display()
    )))
    .unwrap();
    assert!(logger.has_acls());
    // The caller's evaluator: `lan` is 10/8, `localhost` 127.0.0.1.
    let evaluate = |client: [u8; 4]| {
        move |acls: &[AclRef]| {
            acls.iter().all(|acl| {
                let hit = match acl.name.as_str() {
                    "lan" => client[0] == 10,
                    "localhost" => client == [127, 0, 0, 1],
                    other => panic!("unexpected ACL {other}"),
                };
                hit != acl.negated
            })
        }
    };
    for (n, client) in [
        (1, [10, 0, 0, 1]),
        (2, [127, 0, 0, 1]),
        (3, [192, 168, 0, 1]),
    ] {
        logger.log_if(&entry(n, client), evaluate(client));
    }
    logger.flush();
    assert_eq!(read(&a), line(1, [10, 0, 0, 1]));
    assert_eq!(
        read(&b),
        format!("{}{}", line(1, [10, 0, 0, 1]), line(3, [192, 168, 0, 1]))
    );
    // Without an evaluator every ACL list counts as matching: the
    // `none` line then stops everything after it.
    logger.log(&entry(4, [192, 168, 0, 2]));
    logger.flush();
    assert!(read(&a).ends_with(&line(4, [192, 168, 0, 2])));
    assert!(!read(&b).contains(&line(4, [192, 168, 0, 2])));
}

#[test]
fn batched_lines_arrive_in_order_with_their_own_files_and_counts() {
    let dir = TempDir::new();
    let (a, b) = (dir.file("a.log"), dir.file("b.log"));
    let logger = Logger::from_config(&config(&format!(
        "acl lan src 10.0.0.0/8\n\
             access_log {} squid lan\n\
             access_log {}\n",
        a.display(),
        b.display()
    )))
    .unwrap();
    let lan = |client: [u8; 4]| move |_: &[AclRef]| client[0] == 10;
    let mut batch = LineBatch::new();
    // Two lines for a and b, then one for b alone: the file set changed,
    // so the first two leave as one message before the third is added.
    logger.log_batched(&mut batch, &entry(1, [10, 0, 0, 1]), lan([10, 0, 0, 1]));
    logger.log_batched(&mut batch, &entry(2, [10, 0, 0, 2]), lan([10, 0, 0, 2]));
    assert_eq!(logger.stats().queued, 0, "nothing leaves before it must");
    logger.log_batched(&mut batch, &entry(3, [192, 0, 2, 3]), lan([192, 0, 2, 3]));
    assert_eq!(logger.stats().queued, 4);
    assert!(!batch.is_empty());
    logger.send_batch(&mut batch);
    assert!(batch.is_empty() && batch.age(Instant::now()) == Duration::ZERO);
    logger.send_batch(&mut batch); // empty: sends nothing
    logger.flush();
    assert_eq!(
        read(&a),
        format!("{}{}", line(1, [10, 0, 0, 1]), line(2, [10, 0, 0, 2]))
    );
    assert_eq!(
        read(&b),
        format!(
            "{}{}{}",
            line(1, [10, 0, 0, 1]),
            line(2, [10, 0, 0, 2]),
            line(3, [192, 0, 2, 3])
        )
    );
    let stats = logger.stats();
    assert_eq!((stats.queued, stats.written, stats.dropped), (5, 5, 0));
}

#[test]
fn a_batch_is_sent_once_full() {
    let dir = TempDir::new();
    let path = dir.file("a.log");
    let logger = Logger::from_config(&config(&format!("access_log {}\n", path.display()))).unwrap();
    let mut batch = LineBatch::new();
    let mut n = 0;
    while !batch.is_full() {
        logger.log_batched(&mut batch, &entry(n, [10, 0, 0, 1]), |_| true);
        n += 1;
    }
    assert_eq!(logger.stats().queued, 0);
    logger.log_batched(&mut batch, &entry(n, [10, 0, 0, 1]), |_| true);
    assert_eq!(
        logger.stats().queued,
        n,
        "the full batch left before line {n}"
    );
    logger.send_batch(&mut batch);
    logger.flush();
    let lines: String = (0..=n).map(|i| line(i, [10, 0, 0, 1])).collect();
    assert_eq!(read(&path), lines);
}

#[test]
fn one_file_named_twice_is_opened_once_and_gets_each_line_once() {
    let dir = TempDir::new();
    let a = dir.file("a.log");
    let logger = Logger::from_config(&config(&format!(
        "access_log {0}\naccess_log stdio:{0}\n",
        a.display()
    )))
    .unwrap();
    logger.log(&entry(1, [10, 0, 0, 1]));
    logger.flush();
    // Squid would write it twice (two handles on one file).
    assert_eq!(read(&a), line(1, [10, 0, 0, 1]));
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = TempDir::new();
    let path = dir.file("a.log");
    let (open_gate, gate) = mpsc::channel();
    let logger = Logger::build(
        &config(&format!("access_log {}\n", path.display())),
        LoggerOptions {
            queue_capacity: 3,
            ..LoggerOptions::default()
        },
        Some(gate),
    )
    .unwrap();
    let start = Instant::now();
    for n in 0..10 {
        logger.log(&entry(n, [10, 0, 0, 1]));
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    let stats = logger.stats();
    assert_eq!((stats.queued, stats.dropped), (3, 7));
    open_gate.send(()).unwrap();
    logger.flush();
    let lines: String = (0..3).map(|n| line(n, [10, 0, 0, 1])).collect();
    assert_eq!(read(&path), lines);
    assert_eq!(logger.stats().written, 3);
}

#[test]
fn unsupported_destinations_and_formats_warn() {
    let dir = TempDir::new();
    let path = dir.file("a.log");
    let logger = Logger::from_config(&config(&format!(
        "logformat mine %ts %ru\n\
             access_log syslog:local4.info\n\
             access_log tcp://192.0.2.9:514\n\
             access_log {} logformat=mine rotate=3\n\
             access_log {} common\n",
        path.display(),
        path.display()
    )))
    .unwrap();
    let w = logger.warnings();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[0].starts_with(
        "t.conf:2: warning: access_log: module syslog (local4.info) is not supported"
    ));
    assert!(w[1].starts_with("t.conf:3: warning: access_log: module tcp"));
    assert!(w[2].contains("t.conf:4: warning: access_log: log format \"mine\" is not supported yet; writing the native squid format instead"));
    assert!(w[3].contains("t.conf:5: warning: access_log: log format \"common\""));
    logger.log(&entry(1, [10, 0, 0, 1]));
    logger.flush();
    assert_eq!(read(&path), line(1, [10, 0, 0, 1]));
}

#[test]
fn rotate_renames_as_squid_and_rotate_option_overrides_logfile_rotate() {
    let dir = TempDir::new();
    let (a, b) = (dir.file("a.log"), dir.file("b.log"));
    let logger = Logger::from_config(&config(&format!(
        "access_log {}\naccess_log {} rotate=0\n",
        a.display(),
        b.display()
    )))
    .unwrap();
    let numbered = |p: &Path, i: u32| PathBuf::from(format!("{}.{i}", p.display()));
    for n in 0..3 {
        logger.log(&entry(n, [10, 0, 0, 1]));
        logger.rotate(2);
        logger.flush();
    }
    logger.log(&entry(3, [10, 0, 0, 1]));
    logger.flush();
    assert_eq!(read(&numbered(&a, 1)), line(1, [10, 0, 0, 1]));
    assert_eq!(read(&numbered(&a, 0)), line(2, [10, 0, 0, 1]));
    assert!(
        !numbered(&a, 2).exists(),
        "logfile_rotate 2 keeps .0 and .1"
    );
    assert_eq!(read(&a), line(3, [10, 0, 0, 1]));
    // rotate=0: reopened in place, nothing renamed.
    assert!(!numbered(&b, 0).exists());
    let all: String = (0..4).map(|n| line(n, [10, 0, 0, 1])).collect();
    assert_eq!(read(&b), all);
}

#[test]
fn none_alone_writes_nothing() {
    let logger = Logger::from_config(&config("access_log none\n")).unwrap();
    assert!(logger.is_disabled());
    logger.log(&entry(1, [10, 0, 0, 1]));
    logger.reopen();
    logger.flush();
    assert_eq!(logger.stats(), LogStats::default());
    assert!(Logger::disabled().is_disabled());
}

#[test]
fn many_tasks_log_whole_lines() {
    let dir = TempDir::new();
    let path = dir.file("a.log");
    let logger = Logger::from_config(&config(&format!("access_log {}\n", path.display()))).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..8u8)
            .map(|t| {
                let logger = logger.clone();
                tokio::spawn(async move {
                    for n in 0..1000 {
                        logger.log(&entry(n, [10, 0, 0, t]));
                        if n % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    logger.flush();
    let text = read(&path);
    let mut got: Vec<&str> = text.lines().collect();
    let mut want: Vec<String> = (0..8u8)
        .flat_map(|t| (0..1000).map(move |n| line(n, [10, 0, 0, t])))
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    let want: Vec<&str> = want.iter().map(|l| l.trim_end()).collect();
    assert_eq!(logger.stats().dropped, 0);
    assert_eq!(got, want);
}

const STDOUT_CHILD: &str = "CUTTLE_ACCESS_LOG_STDOUT_CHILD";

/// Runs in a child process (see `stdio_dev_stdout_writes_to_standard_output`).
#[test]
fn stdout_child() {
    if std::env::var_os(STDOUT_CHILD).is_none() {
        return;
    }
    let logger = Logger::from_config(&config("access_log stdio:/dev/stdout\n")).unwrap();
    logger.log(&entry(42, [10, 0, 0, 42]));
}

#[test]
fn stdio_dev_stdout_writes_to_standard_output() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "access_log::logger::tests::stdout_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STDOUT_CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    // libtest prints `test NAME ... ` first, on the same line.
    assert!(
        stdout.contains(&format!(" {}", line(42, [10, 0, 0, 42]))),
        "{stdout}"
    );
}
