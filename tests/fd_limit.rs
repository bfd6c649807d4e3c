//! The open-file limit as Squid's: `cuttle run` raises its soft
//! RLIMIT_NOFILE to the hard limit at start, or to `max_filedescriptors N`
//! (at most the hard limit), and says how many it has.

mod support;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use support::{Conf, Cuttle};

/// Lowers this test process's soft limit (which cuttle inherits) to 256,
/// keeping the hard one, which is returned.
fn lower_soft_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.expect("a finite hard open-file limit");
    assert!(hard > 1000, "the hard limit {hard} leaves nothing to raise");
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(256),
            maximum: Some(hard),
        },
    )
    .expect("lower the soft limit");
    hard
}

/// `(soft, hard)` "Max open files" of process `pid`.
fn open_files_limits(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

async fn started_line(cuttle: &Cuttle, n: u64) {
    cuttle
        .wait_output(&format!("With {n} file descriptors available"), false)
        .await;
}

#[tokio::test]
async fn soft_limit_is_raised_to_the_hard_limit() {
    let hard = lower_soft_limit();
    let cuttle = Cuttle::start(&Conf::new());
    assert_eq!(open_files_limits(cuttle.pid()), (hard, hard));
    started_line(&cuttle, hard).await;
}

#[tokio::test]
async fn max_filedescriptors_sets_the_soft_limit() {
    let hard = lower_soft_limit();
    let cuttle = Cuttle::start(&Conf::new().extra("max_filedescriptors 1000"));
    assert_eq!(open_files_limits(cuttle.pid()), (1000, hard));
    started_line(&cuttle, 1000).await;
}

#[tokio::test]
async fn max_filedescriptors_above_the_hard_limit_gets_the_hard_limit() {
    let hard = lower_soft_limit();
    let conf = Conf::new().extra(&format!("max_filedescriptors {}", hard + 1));
    let cuttle = Cuttle::start(&conf);
    assert_eq!(open_files_limits(cuttle.pid()), (hard, hard));
    started_line(&cuttle, hard).await;
}
