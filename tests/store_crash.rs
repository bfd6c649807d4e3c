//! Crash test with real processes: a child (this test binary run again)
//! writes, overwrites and purges objects of 10 B to ~300 KB in a small store
//! and is killed with SIGKILL at random moments, over 100 times on the same
//! cache_dir. After every kill the store must reopen, and every entry it
//! returns must be, byte for byte, a version the child's own log allows: the
//! last committed one (unless purged since) or one in flight at the kill;
//! killed between operations, the index must hold exactly the entries the
//! child last counted. A second test builds the image a kill inside a commit
//! across two cache_dirs leaves, and asks that the newer commit win.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use cuttle::config::ReplacementPolicy;
use cuttle::store::{DirSpec, Hit, Key, RebuildReport, Store, StoreOptions};
use cuttle_protocol::key::{store_key, Method};

mod common;
use common::{body, claimed, header_block, times};

/// Set (to the temp dir) only in the child process.
const CHILD_ENV: &str = "CUTTLE_CRASH_CHILD";
/// The child's random seed and round number (versions are unique per round).
const SEED_ENV: &str = "CUTTLE_CRASH_SEED";
const ROUND_ENV: &str = "CUTTLE_CRASH_ROUND";
/// Overrides the parent's seed, to replay a failing run.
const REPLAY_ENV: &str = "CUTTLE_CRASH_REPLAY_SEED";
const CHILD_TEST: &str = "crash_child_writes_until_killed";

/// Keys are drawn from this many URLs, so overwrites are frequent.
const KEYS: u64 = 300;
/// 8 MiB of 4 KiB slots: the live data (~300 keys of ~38 KB on average)
/// does not fit, so eviction runs.
const CAPACITY: u64 = 8 << 20;
const SLOT_SIZE: u32 = 4096;
const ROUNDS: u32 = 120;
/// The child gives up on its own after this long (if the parent died).
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

fn url(k: u64) -> String {
    format!("http://crash.example/object/{k}")
}

fn key(k: u64) -> Key {
    store_key(Method::Get, url(k).as_bytes())
}

/// Checks every byte of `hit` against what (key, version, length) it
/// claims to be; returns the claim.
fn verify_hit(hit: &Hit, k: u64) -> (u64, usize) {
    let (hk, version, len) = claimed(&hit.header_block).unwrap_or_else(|| {
        panic!(
            "key {k}: header block is not ours: {:?}",
            String::from_utf8_lossy(&hit.header_block[..hit.header_block.len().min(120)])
        )
    });
    assert_eq!(hk, k, "key {k}: the header block names key {hk}");
    assert_eq!(hit.key, key(k), "key {k}: Hit::key");
    assert_eq!(hit.url, url(k).as_bytes(), "key {k} v{version}: url");
    assert_eq!(
        hit.header_block,
        header_block(k, version, len).as_bytes(),
        "key {k} v{version}: header block"
    );
    assert_eq!(hit.times, times(k, version), "key {k} v{version}: times");
    assert_eq!(hit.body_len, len as u64, "key {k} v{version}: body_len");
    let got = hit.body_bytes();
    let want = body(k, version, len);
    if got != want {
        let at = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "key {k} v{version} len {len}: body differs (got {} bytes, first difference at {at:?})",
            got.len()
        );
    }
    (version, len)
}

fn spec(dir: &Path) -> DirSpec {
    DirSpec::new(dir.to_path_buf(), CAPACITY, SLOT_SIZE)
}

fn open(dir: &Path) -> (Store, RebuildReport) {
    Store::open(
        &[spec(dir)],
        StoreOptions {
            maximum_object_size: u64::MAX,
            policy: ReplacementPolicy::Lru,
        },
    )
    .unwrap_or_else(|e| panic!("the store must reopen after kill -9: {e}"))
}

/// The child's record of what it did, one line appended per event (no
/// fsync: SIGKILL keeps the page cache). Lines that end an operation also
/// give the number of entries in the index right after it:
///
/// ```text
/// START entries          BEGIN k version len     PURGING k
/// COMMIT k version len entries                   PURGE k entries
/// ABORT k version len entries
/// ```
struct Log(File);

impl Log {
    fn note(&mut self, line: String) {
        self.0
            .write_all(format!("{line}\n").as_bytes())
            .expect("append to the writer's log");
    }
}

/// An object size: log-uniform from 10 B to ~300 KB, and now and then one
/// whose entry ends right at (or one byte either side of) a slot boundary.
fn object_len(rng: &mut StdRng, k: u64, version: u64) -> usize {
    if rng.gen_ratio(1, 10) {
        let slots = rng.gen_range(1..=4usize);
        let end = slots * SLOT_SIZE as usize + rng.gen_range(0..=2) - 1;
        let head = |len: usize| 8 + url(k).len() + header_block(k, version, len).len();
        // Content-Length's digits depend on the length: settle it.
        let mut len = end.saturating_sub(head(0));
        for _ in 0..3 {
            len = end.saturating_sub(head(len));
        }
        return len.max(1);
    }
    10f64.powf(rng.gen_range(1.0..5.5)) as usize
}

/// Writes one version in chunks of random size; true if it committed.
fn put(store: &Store, rng: &mut StdRng, k: u64, version: u64, len: usize, abandon: bool) -> bool {
    let data = body(k, version, len);
    let hb = header_block(k, version, len);
    let known = rng.gen_bool(0.5).then_some(len as u64);
    let Ok(mut w) = store.writer(
        key(k),
        times(k, version),
        url(k).as_bytes(),
        hb.as_bytes(),
        known,
    ) else {
        return false;
    };
    let mut at = 0;
    while at < data.len() {
        let n = rng.gen_range(1..=20_000).min(data.len() - at);
        if w.write(&data[at..at + n]).is_err() {
            return false;
        }
        at += n;
    }
    // An abandoned writer is dropped: nothing may become visible.
    !abandon && w.commit().is_ok()
}

#[test]
#[ignore = "runs only as the child of store_survives_kill_9_at_random_moments"]
fn crash_child_writes_until_killed() {
    let Some(tmp) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_ENV)
        .expect("seed from the parent")
        .parse()
        .expect("numeric seed");
    let round: u64 = std::env::var(ROUND_ENV)
        .expect("round from the parent")
        .parse()
        .expect("numeric round");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Log(OpenOptions::new()
        .create(true)
        .append(true)
        .open(tmp.join("log"))
        .expect("open the log"));
    let (store, _) = open(&tmp.join("cache"));
    let entries = || store.usage()[0].entries;
    log.note(format!("START {}", entries()));
    println!("READY");
    std::io::stdout().flush().expect("flush stdout");

    let started = Instant::now();
    let mut version = round * 10_000_000;
    // Hits held across later writes (leases make zombies; kill them too).
    let mut held: Vec<(u64, Hit)> = Vec::new();
    while started.elapsed() < CHILD_LIFETIME {
        let k = rng.gen_range(0..KEYS);
        match rng.gen_range(0..100) {
            0..=5 => {
                log.note(format!("PURGING {k}"));
                store.purge(&key(k));
                log.note(format!("PURGE {k} {}", entries()));
            }
            6..=13 => {
                if let Some(hit) = store.lookup(&key(k)) {
                    verify_hit(&hit, k);
                    held.push((k, hit));
                }
                if held.len() > 3 || (!held.is_empty() && rng.gen_ratio(1, 3)) {
                    let (k, hit) = held.remove(0);
                    verify_hit(&hit, k);
                }
            }
            op => {
                version += 1;
                let len = object_len(&mut rng, k, version);
                log.note(format!("BEGIN {k} {version} {len}"));
                let what = if put(&store, &mut rng, k, version, len, op >= 96) {
                    "COMMIT"
                } else {
                    "ABORT"
                };
                log.note(format!("{what} {k} {version} {len} {}", entries()));
            }
        }
    }
    panic!("the crash child was not killed within {CHILD_LIFETIME:?}");
}

/// What the log says each key may hold after the kill.
#[derive(Default, Clone)]
struct Allowed {
    /// The last committed (version, length), unless purged since.
    committed: Option<(u64, usize)>,
    /// Versions begun since the last commit or purge and never finished:
    /// in flight at a kill, so they may or may not have committed.
    in_flight: Vec<(u64, usize)>,
}

/// What was under way at the kill, by the log's last complete line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
enum Pending {
    /// Between operations (or reading): the index held exactly the
    /// number of entries last logged.
    Nothing = 0,
    /// A write: it may have evicted entries and may have committed.
    Write = 1,
    /// A purge: it may have removed one entry.
    Purge = 2,
}

struct LogState {
    keys: HashMap<u64, Allowed>,
    pending: Pending,
    /// Entries in the index after the last logged operation.
    entries: usize,
    lines: usize,
    /// BEGIN, COMMIT and PURGE lines.
    events: [u64; 3],
}

fn read_log(path: &Path) -> LogState {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = LogState {
        keys: HashMap::new(),
        pending: Pending::Nothing,
        entries: 0,
        lines: 0,
        events: [0; 3],
    };
    // A last line without its newline was cut by the kill: not done.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    for line in complete.lines() {
        log.lines += 1;
        let words: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("bad log line {line:?}"))
        };
        if words[0] == "START" {
            log.entries = num(1) as usize;
            log.pending = Pending::Nothing;
            continue;
        }
        let a = log.keys.entry(num(1)).or_default();
        match words[0] {
            "BEGIN" => {
                log.events[0] += 1;
                log.pending = Pending::Write;
                a.in_flight.push((num(2), num(3) as usize));
            }
            "COMMIT" => {
                log.events[1] += 1;
                log.pending = Pending::Nothing;
                log.entries = num(4) as usize;
                a.committed = Some((num(2), num(3) as usize));
                a.in_flight.clear();
            }
            "ABORT" => {
                log.pending = Pending::Nothing;
                log.entries = num(4) as usize;
                let v = num(2);
                a.in_flight.retain(|&(iv, _)| iv != v);
            }
            "PURGING" => log.pending = Pending::Purge,
            "PURGE" => {
                log.events[2] += 1;
                log.pending = Pending::Nothing;
                log.entries = num(2) as usize;
                a.committed = None;
                a.in_flight.clear();
            }
            _ => panic!("bad log line {line:?}"),
        }
    }
    log
}

/// What one reopen found.
struct RoundCheck {
    report: RebuildReport,
    verified: u64,
    /// Keys whose last commit stands (not purged since).
    committed_live: u64,
    /// Of those, how many the store still holds at that version.
    committed_present: u64,
    /// Entries at a version that was in flight at the kill.
    in_flight_present: u64,
    /// Lines in the writer's log, and what the kill interrupted.
    log_lines: usize,
    pending: Pending,
    /// Writes begun, committed, purges done (over all rounds so far).
    events: [u64; 3],
}

/// Reopens the store and checks every entry in its index against the log.
fn check(tmp: &Path, round: u32, key_of: &HashMap<Key, u64>) -> RoundCheck {
    let log = read_log(&tmp.join("log"));
    let (store, report) = open(&tmp.join("cache"));
    let mut out = RoundCheck {
        report,
        verified: 0,
        committed_live: 0,
        committed_present: 0,
        in_flight_present: 0,
        log_lines: 0,
        pending: Pending::Nothing,
        events: [0; 3],
    };
    out.committed_live = log.keys.values().filter(|a| a.committed.is_some()).count() as u64;
    for key in store.keys() {
        let k = *key_of
            .get(&key)
            .unwrap_or_else(|| panic!("round {round}: a key that was never written: {key:02x?}"));
        let hit = store.lookup(&key).unwrap_or_else(|| {
            panic!("round {round}: key {k} is in the rebuilt index but does not verify")
        });
        let (version, len) = verify_hit(&hit, k);
        let allowed = log.keys.get(&k).cloned().unwrap_or_default();
        if allowed.committed == Some((version, len)) {
            out.committed_present += 1;
        } else if allowed.in_flight.contains(&(version, len)) {
            out.in_flight_present += 1;
        } else {
            panic!(
                "round {round}: key {k} came back at v{version} ({len} bytes); the log allows \
                 committed {:?}, in flight {:?}",
                allowed.committed, allowed.in_flight
            );
        }
        out.verified += 1;
    }
    assert_eq!(
        store.counters().bad.load(Ordering::Relaxed),
        0,
        "round {round}: entries failed verification"
    );
    // Eviction may drop any entry, but the child logged how many the index
    // held: between operations exactly those must all be back.
    let entries = store.keys().len();
    match log.pending {
        Pending::Nothing => assert_eq!(
            entries, log.entries,
            "round {round}: killed between operations with {} entries in the index, \
             but {entries} came back",
            log.entries
        ),
        Pending::Purge => assert!(
            entries == log.entries || entries + 1 == log.entries,
            "round {round}: killed in a purge with {} entries, {entries} came back",
            log.entries
        ),
        Pending::Write => assert!(
            entries <= log.entries + 1,
            "round {round}: killed in a write with {} entries, {entries} came back",
            log.entries
        ),
    }
    out.log_lines = log.lines;
    out.events = log.events;
    out.pending = log.pending;
    out
}

/// Kills the child (if still running) when dropped, so a failing test
/// leaves no process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stderr_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn store_survives_kill_9_at_random_moments() {
    let dir =
        RemovedOnDrop(std::env::temp_dir().join(format!("cuttle-crash-{}", std::process::id())));
    let tmp = dir.0.clone();
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let seed = std::env::var(REPLAY_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("seed {seed} (replay with {REPLAY_ENV}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let me = std::env::current_exe().expect("test binary path");
    let key_of: HashMap<Key, u64> = (0..KEYS).map(|k| (key(k), k)).collect();
    let started = Instant::now();

    let mut total = RebuildReport::default();
    let (mut verified, mut live, mut present, mut in_flight) = (0u64, 0u64, 0u64, 0u64);
    let mut rounds_verifying = 0u32;
    let mut early_kills = 0u32;
    // Kills that landed between operations / in a write / in a purge.
    let mut kills_at = [0u32; 3];
    let mut log_lines = 0;
    let mut events = [0u64; 3];
    for round in 0..ROUNDS {
        let stderr_path = tmp.join("child.stderr");
        let child = Command::new(&me)
            .args(["--exact", CHILD_TEST, "--nocapture", "--ignored"])
            .env(CHILD_ENV, &tmp)
            .env(SEED_ENV, rng.gen::<u64>().to_string())
            .env(ROUND_ENV, round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("child stderr file"))
            .spawn()
            .expect("spawn the crash child");
        let mut child = ChildGuard(child);
        if rng.gen_ratio(1, 8) {
            // Now and then kill it early: while it starts or rebuilds.
            early_kills += 1;
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
        } else {
            let stdout = child.0.stdout.take().expect("child stdout");
            let ready = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|l| l == "READY");
            assert!(
                ready,
                "round {round}: the child never opened the store:\n{}",
                stderr_of(&stderr_path)
            );
            std::thread::sleep(Duration::from_millis(rng.gen_range(5..=150)));
        }
        if let Some(status) = child.0.try_wait().expect("poll the child") {
            panic!(
                "round {round}: the child ended before the kill ({status}):\n{}",
                stderr_of(&stderr_path)
            );
        }
        child.0.kill().expect("SIGKILL the child");
        let status = child.0.wait().expect("reap the child");
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "round {round}: {status}");
        }
        drop(child);

        let r = check(&tmp, round, &key_of);
        // Only what this round's child logged says where this kill landed.
        if r.log_lines > log_lines {
            kills_at[r.pending as usize] += 1;
        }
        log_lines = r.log_lines;
        events = r.events;
        if r.verified > 0 {
            rounds_verifying += 1;
        }
        verified += r.verified;
        live += r.committed_live;
        present += r.committed_present;
        in_flight += r.in_flight_present;
        let rep = r.report;
        total.torn += rep.torn;
        total.orphaned += rep.orphaned;
        total.bad_chains += rep.bad_chains;
        total.duplicates += rep.duplicates;
        println!(
            "round {round:3} ({:?}): rebuild entries {:3} torn {} orphaned {:3} bad_chains {} \
             duplicates {}; verified {:3} ({} of {} live commits, {} in flight)",
            r.pending,
            rep.entries,
            rep.torn,
            rep.orphaned,
            rep.bad_chains,
            rep.duplicates,
            r.verified,
            r.committed_present,
            r.committed_live,
            r.in_flight_present
        );
        assert_eq!(
            rep.torn + rep.bad_chains,
            0,
            "round {round}: kill -9 tears nothing (every write reaches the page cache, \
             in order): {rep:?}"
        );
    }

    let share = present as f64 / live.max(1) as f64;
    println!(
        "SUMMARY: {ROUNDS} rounds in {:.1?}: kills while starting {early_kills}, between \
         operations {}, mid-write {}, mid-purge {}; the child began {} writes, committed {}, \
         purged {}; {verified} entries verified byte for byte; {present} of {live} live commits \
         present ({:.0}%), {in_flight} in-flight versions present; rebuild totals: torn {} \
         orphaned {} bad_chains {} duplicates {}",
        started.elapsed(),
        kills_at[Pending::Nothing as usize],
        kills_at[Pending::Write as usize],
        kills_at[Pending::Purge as usize],
        events[0],
        events[1],
        events[2],
        share * 100.0,
        total.torn,
        total.orphaned,
        total.bad_chains,
        total.duplicates,
    );
    assert!(verified > 0, "nothing was verified: the test is vacuous");
    assert!(
        rounds_verifying >= ROUNDS * 3 / 4,
        "only {rounds_verifying} of {ROUNDS} rounds verified any entry"
    );
    assert!(
        share > 0.2,
        "only {:.0}% of the live commits survived: eviction alone does not explain that",
        share * 100.0
    );
    assert!(
        kills_at[Pending::Write as usize] >= ROUNDS / 4,
        "only {} kills landed mid-write",
        kills_at[Pending::Write as usize]
    );
    let counted = kills_at[Pending::Nothing as usize] + kills_at[Pending::Purge as usize];
    assert!(
        counted >= ROUNDS / 10,
        "only {counted} kills landed where the entry count is known (between operations or in a purge)"
    );
}

/// A temp dir removed when the test ends, passed or not.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Commits (k, version) with its length announced, so the store picks the
/// cache_dir by size.
fn put_sized(store: &Store, k: u64, version: u64, len: usize) {
    let mut w = store
        .writer(
            key(k),
            times(k, version),
            url(k).as_bytes(),
            header_block(k, version, len).as_bytes(),
            Some(len as u64),
        )
        .expect("writer");
    w.write(&body(k, version, len)).expect("write");
    w.commit().expect("commit");
}

/// With several cache_dirs, `Writer::commit` commits in one dir and then
/// purges the key from the others; a kill between the two leaves both
/// copies on disk. This builds that disk image without a kill (the window
/// is microseconds wide): v1 is committed through the two-dir store (it
/// lands in the small dir), then v2 is committed into the large dir alone,
/// exactly as the killed commit left it. Reopened, the store must serve
/// the newer commit, not the superseded one.
#[test]
fn a_key_left_in_two_cache_dirs_by_a_kill_resolves_to_the_newest() {
    let tmp = RemovedOnDrop(
        std::env::temp_dir().join(format!("cuttle-crash-dirs-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&tmp.0);
    let small = DirSpec {
        max_size: Some(8000),
        ..spec(&tmp.0.join("small"))
    };
    let large = DirSpec {
        min_size: 8001,
        ..spec(&tmp.0.join("large"))
    };
    let options = StoreOptions {
        maximum_object_size: u64::MAX,
        policy: ReplacementPolicy::Lru,
    };
    let both = [small, large.clone()];
    // Two versions without header padding, so v1's entry fits the small dir.
    let mut plain = (1..).filter(|&v| header_block(7, v, 0).len() < 200);
    let v1 = plain.next().expect("a version without padding");
    let v2 = plain.next().expect("another");
    {
        let (store, _) = Store::open(&both, options).expect("open both dirs");
        put_sized(&store, 7, v1, 1000);
        assert_eq!(store.usage()[0].entries, 1, "v1 is in the small dir");
    }
    {
        // The large dir as the killed `Writer::commit` left it: v2
        // committed there, the small dir's v1 not purged yet.
        let (store, _) = Store::open(std::slice::from_ref(&large), options).expect("open large");
        put_sized(&store, 7, v2, 50_000);
    }
    let (store, report) = Store::open(&both, options).expect("reopen both dirs");
    let hit = store.lookup(&key(7)).expect("key 7 is cached");
    let (version, _) = verify_hit(&hit, 7);
    let copies = store.keys().iter().filter(|k| **k == key(7)).count();
    assert_eq!(
        version, v2,
        "after the kill the store serves v{v1}, which the committed v{v2} replaced \
         (the key is in {copies} cache_dirs; rebuild: {report:?})"
    );
    assert_eq!(copies, 1, "one key, one entry");
}
