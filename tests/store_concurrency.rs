//! Many readers and writers on one store at once (tokio tasks on four
//! worker threads), with purges, abandoned writes and constant eviction:
//! every hit is checked byte for byte against the version its header block
//! names, a key with one writer never reads older than a finished commit,
//! hits held across thousands of writes and evictions keep their bytes, no
//! slot leaks, and the store reopens to exactly what it held.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use cuttle::config::ReplacementPolicy;
use cuttle::store::{DirSpec, Hit, Key, Store, StoreError, StoreOptions};
use cuttle_protocol::key::{store_key, Method};

mod common;
use common::{body, claimed, header_block, mix, times};

/// 1 MiB of 4 KiB slots (256) against ~300 keys of up to 64 KB: the live
/// data is about twice the store, so eviction never stops.
const CAPACITY: u64 = 1 << 20;
const SLOT_SIZE: u32 = 4096;
const KEYS: u64 = 300;
/// Each writer also owns this many keys of its own (numbered from `KEYS`),
/// whose versions therefore only grow: readers check they never go back.
const OWN_KEYS: u64 = 4;
const WRITERS: usize = 8;
const READERS: usize = 8;
const HOLDERS: usize = 3;
/// How long the tasks run.
const RUN: Duration = Duration::from_secs(3);

fn url(k: u64) -> String {
    format!("http://concurrency.example/{k}")
}

fn key(k: u64) -> Key {
    store_key(Method::Get, url(k).as_bytes())
}

/// Every version ever begun: version -> (key, length). A hit must name one.
type Begun = Mutex<HashMap<u64, (u64, usize)>>;

/// Checks every byte of `hit` (for key `k`) against the version its header
/// block names, and that this version was begun for this key. Returns
/// (version, length).
fn verify(hit: &Hit, k: u64, begun: &Begun) -> (u64, usize) {
    let (hk, version, len) = claimed(&hit.header_block).unwrap_or_else(|| {
        panic!(
            "key {k}: header block is not ours: {:?}",
            String::from_utf8_lossy(&hit.header_block[..hit.header_block.len().min(120)])
        )
    });
    assert_eq!(hk, k, "key {k}: the entry names key {hk}");
    assert_eq!(
        begun.lock().expect("begun lock").get(&version),
        Some(&(k, len)),
        "key {k}: v{version} ({len} bytes) was never written for this key"
    );
    assert_eq!(hit.key, key(k), "key {k} v{version}: Hit::key");
    assert_eq!(hit.url, url(k).as_bytes(), "key {k} v{version}: url");
    assert_eq!(
        hit.header_block,
        header_block(k, version, len).as_bytes(),
        "key {k} v{version}: header block"
    );
    assert_eq!(hit.times, times(k, version), "key {k} v{version}: times");
    assert_eq!(hit.body_len, len as u64, "key {k} v{version}: body_len");
    assert_eq!(
        hit.body.iter().map(|b| b.len() as u64).sum::<u64>(),
        hit.body_len,
        "key {k} v{version}: body segments add up"
    );
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

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    abandoned: AtomicU64,
    no_space: AtomicU64,
    purges: AtomicU64,
    hits: AtomicU64,
    /// Hits whose body came in several runs of slots.
    multi_run: AtomicU64,
    misses: AtomicU64,
    /// Hits on owned keys checked against the newest finished commit.
    ordered_reads: AtomicU64,
    held_verified: AtomicU64,
    /// Held hits whose entry was replaced, purged or evicted while held.
    held_outlived: AtomicU64,
    writers_in_flight: AtomicUsize,
    max_writers_in_flight: AtomicUsize,
}

struct Shared {
    store: Store,
    begun: Begun,
    stats: Stats,
    next_version: AtomicU64,
    /// Per owned key: the newest version whose commit returned, or the
    /// version counter when a purge returned. No read may find older.
    floors: Vec<AtomicU64>,
    /// Keys committed lately: readers pick from these half the time.
    recent: Vec<AtomicU64>,
    deadline: Instant,
    threads: Mutex<HashSet<std::thread::ThreadId>>,
}

fn spec(dir: &Path) -> DirSpec {
    DirSpec::new(dir.to_path_buf(), CAPACITY, SLOT_SIZE)
}

fn options() -> StoreOptions {
    StoreOptions {
        maximum_object_size: u64::MAX,
        policy: ReplacementPolicy::Lru,
    }
}

/// Sizes log-uniform from 10 B to 64 KB (1 to 17 slots).
fn object_len(rng: &mut StdRng) -> usize {
    10f64.powf(rng.gen_range(1.0..4.8)) as usize
}

async fn writer_task(s: Arc<Shared>, id: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while Instant::now() < s.deadline {
        s.threads
            .lock()
            .expect("threads lock")
            .insert(std::thread::current().id());
        let own = rng.gen_ratio(1, 4);
        let k = if own {
            KEYS + id * OWN_KEYS + rng.gen_range(0..OWN_KEYS)
        } else {
            rng.gen_range(0..KEYS)
        };
        if rng.gen_ratio(1, 20) {
            if s.store.purge(&key(k)) {
                s.stats.purges.fetch_add(1, Ordering::Relaxed);
            }
            if own {
                // Every version of k so far is below the counter: none may
                // be seen again.
                let next = s.next_version.load(Ordering::SeqCst);
                s.floors[(k - KEYS) as usize].store(next, Ordering::SeqCst);
            }
            continue;
        }
        let version = s.next_version.fetch_add(1, Ordering::Relaxed);
        let len = object_len(&mut rng);
        s.begun
            .lock()
            .expect("begun lock")
            .insert(version, (k, len));
        let data = body(k, version, len);
        let hb = header_block(k, version, len);
        let known = rng.gen_bool(0.5).then_some(len as u64);
        let mut w = match s.store.writer(
            key(k),
            times(k, version),
            url(k).as_bytes(),
            hb.as_bytes(),
            known,
        ) {
            Ok(w) => w,
            Err(StoreError::NoSpace) => {
                s.stats.no_space.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => panic!("writer for key {k}: {e}"),
        };
        let now = s.stats.writers_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        s.stats
            .max_writers_in_flight
            .fetch_max(now, Ordering::Relaxed);
        let mut at = 0;
        let mut failed = false;
        while at < data.len() {
            let n = rng.gen_range(1..=8192).min(data.len() - at);
            match w.write(&data[at..at + n]) {
                Ok(()) => {}
                Err(StoreError::NoSpace) => {
                    s.stats.no_space.fetch_add(1, Ordering::Relaxed);
                    failed = true;
                    break;
                }
                Err(e) => panic!("write for key {k}: {e}"),
            }
            at += n;
            // Hold the writer across an await: others run meanwhile.
            tokio::task::yield_now().await;
        }
        s.stats.writers_in_flight.fetch_sub(1, Ordering::Relaxed);
        if failed {
            continue;
        }
        if rng.gen_ratio(1, 15) {
            drop(w);
            s.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match w.commit() {
            Ok(()) => {}
            // A writer of the same key that started later committed first:
            // its newer version stays, this one is dropped.
            Err(StoreError::Superseded) => {
                assert!(
                    !own,
                    "key {k} has a single writer; nothing can supersede it"
                );
                continue;
            }
            Err(e) => panic!("commit for key {k}: {e}"),
        }
        s.stats.commits.fetch_add(1, Ordering::Relaxed);
        if own {
            s.floors[(k - KEYS) as usize].store(version, Ordering::SeqCst);
        }
        s.recent[rng.gen_range(0..s.recent.len())].store(k, Ordering::Relaxed);
    }
}

async fn reader_task(s: Arc<Shared>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while Instant::now() < s.deadline {
        s.threads
            .lock()
            .expect("threads lock")
            .insert(std::thread::current().id());
        let k = match rng.gen_range(0..8) {
            0..=3 => s.recent[rng.gen_range(0..s.recent.len())].load(Ordering::Relaxed),
            4..=5 => rng.gen_range(0..KEYS),
            _ => KEYS + rng.gen_range(0..WRITERS as u64 * OWN_KEYS),
        };
        // Read before the lookup: whatever the lookup finds must be at
        // least as new as a commit (or purge) that finished before it.
        let floor = (k >= KEYS).then(|| s.floors[(k - KEYS) as usize].load(Ordering::SeqCst));
        match s.store.lookup(&key(k)) {
            Some(hit) => {
                let (version, _) = verify(&hit, k, &s.begun);
                if let Some(floor) = floor {
                    assert!(
                        version >= floor,
                        "key {k}: read v{version}, older than v{floor} committed (or purged) \
                         before the lookup began"
                    );
                    s.stats.ordered_reads.fetch_add(1, Ordering::Relaxed);
                }
                s.stats.hits.fetch_add(1, Ordering::Relaxed);
                if hit.body.len() > 1 {
                    s.stats.multi_run.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                s.stats.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Takes a hit, holds it (zero-copy views of the map) while the writers
/// churn, then checks its bytes again before letting it go.
async fn holder_task(s: Arc<Shared>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while Instant::now() < s.deadline {
        let k = s.recent[rng.gen_range(0..s.recent.len())].load(Ordering::Relaxed);
        let Some(hit) = s.store.lookup(&key(k)) else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let (version, _) = verify(&hit, k, &s.begun);
        let body_ptrs: Vec<usize> = hit.body.iter().map(|b| b.as_ptr() as usize).collect();
        let commits = s.stats.commits.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(20..120))).await;
        let commits_while_held = s.stats.commits.load(Ordering::Relaxed) - commits;
        verify(&hit, k, &s.begun);
        assert_eq!(
            hit.body
                .iter()
                .map(|b| b.as_ptr() as usize)
                .collect::<Vec<_>>(),
            body_ptrs,
            "held views stay where they were"
        );
        s.stats.held_verified.fetch_add(1, Ordering::Relaxed);
        let now = s
            .store
            .lookup(&key(k))
            .map(|h| claimed(&h.header_block).map(|c| c.1));
        if now != Some(Some(version)) && commits_while_held > 0 {
            s.stats.held_outlived.fetch_add(1, Ordering::Relaxed);
        }
        drop(hit);
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Slots the entry of `hit` takes: its prefix, URL, header block and body.
fn slots_of(hit: &Hit) -> u64 {
    let total = 8 + hit.url.len() as u64 + hit.header_block.len() as u64 + hit.body_len;
    total.div_ceil(u64::from(SLOT_SIZE))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_writers_and_eviction_see_only_whole_entries() {
    let tmp =
        TempDir(std::env::temp_dir().join(format!("cuttle-concurrency-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&tmp.0);
    let (store, _) = Store::open(&[spec(&tmp.0)], options()).expect("open the store");
    let seed = rand::random::<u64>();
    println!("seed {seed}");
    let shared = Arc::new(Shared {
        store,
        begun: Mutex::new(HashMap::new()),
        stats: Stats::default(),
        next_version: AtomicU64::new(1),
        floors: (0..WRITERS as u64 * OWN_KEYS)
            .map(|_| AtomicU64::new(0))
            .collect(),
        recent: (0..16).map(AtomicU64::new).collect(),
        deadline: Instant::now() + RUN,
        threads: Mutex::new(HashSet::new()),
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        tasks.push(tokio::spawn(writer_task(
            Arc::clone(&shared),
            i as u64,
            seed ^ mix(i as u64),
        )));
    }
    for i in 0..READERS {
        tasks.push(tokio::spawn(reader_task(
            Arc::clone(&shared),
            seed ^ mix(100 + i as u64),
        )));
    }
    for i in 0..HOLDERS {
        tasks.push(tokio::spawn(holder_task(
            Arc::clone(&shared),
            seed ^ mix(200 + i as u64),
        )));
    }
    for t in tasks {
        t.await.expect("task did not panic");
    }
    let elapsed = started.elapsed();
    let s = Arc::into_inner(shared).expect("every task is done");
    let st = &s.stats;
    let c = s.store.counters();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let usage = s.store.usage().remove(0);

    // Every entry left verifies, and every slot is either free or an
    // entry's (no slot leaked by a lease, a zombie or an abandoned write).
    let mut held_slots = 0u64;
    let mut versions = HashMap::new();
    for key_bytes in s.store.keys() {
        let k = (0..KEYS + WRITERS as u64 * OWN_KEYS)
            .find(|&k| key(k) == key_bytes)
            .expect("a key we wrote");
        let hit = s
            .store
            .lookup(&key_bytes)
            .expect("an indexed entry verifies");
        versions.insert(k, verify(&hit, k, &s.begun));
        held_slots += slots_of(&hit);
    }
    println!(
        "{:.1?} with {WRITERS} writers, {READERS} readers, {HOLDERS} holders on {} worker threads \
         (up to {} writes in flight at once): {} commits, {} abandoned, {} no-space, {} purges; \
         {} hits ({} with the body in several runs), {} misses ({} raced); {} reads of owned \
         keys in order; {} evictions; {} held hits re-verified, {} outlived a replacement or \
         eviction; store counters: bad {}, copied heads {}; at the end {} entries in {} of {} \
         slots, {} free",
        elapsed,
        s.threads.lock().expect("threads lock").len(),
        st.max_writers_in_flight.load(Ordering::Relaxed),
        get(&st.commits),
        get(&st.abandoned),
        get(&st.no_space),
        get(&st.purges),
        get(&st.hits),
        get(&st.multi_run),
        get(&st.misses),
        get(&c.raced),
        get(&st.ordered_reads),
        get(&c.evictions),
        get(&st.held_verified),
        get(&st.held_outlived),
        get(&c.bad),
        get(&c.copied_heads),
        versions.len(),
        held_slots,
        usage.slots,
        usage.free_slots,
    );
    assert_eq!(get(&c.bad), 0, "no entry may fail verification");
    assert!(get(&st.hits) > 100, "too few hits to mean anything");
    assert!(get(&st.misses) > 0);
    assert!(get(&st.ordered_reads) > 100, "too few reads of owned keys");
    assert!(get(&st.multi_run) > 0, "no body spanned several runs");
    assert!(
        get(&c.copied_heads) > 0,
        "no head spanned non-adjacent slots"
    );
    assert!(get(&st.commits) > 200, "too few commits to mean anything");
    assert!(get(&st.purges) > 0, "no purge removed anything");
    assert!(get(&c.evictions) > 100, "eviction must have run");
    assert!(get(&st.held_verified) > 0, "no hit was held");
    assert!(
        get(&st.held_outlived) > 0,
        "no held hit outlived a replacement or eviction of its entry"
    );
    assert!(
        st.max_writers_in_flight.load(Ordering::Relaxed) >= 2,
        "writes never overlapped"
    );
    assert!(
        s.threads.lock().expect("threads lock").len() >= 2,
        "the tasks ran on one thread only"
    );
    assert_eq!(usage.entries, versions.len());
    assert_eq!(
        held_slots + u64::from(usage.free_slots),
        u64::from(usage.slots),
        "every slot is free or holds an entry: slots leaked"
    );

    // Reopened, the store holds exactly the same entries.
    drop(s);
    let (store, report) = Store::open(&[spec(&tmp.0)], options()).expect("reopen the store");
    println!("reopened: {report:?}");
    assert_eq!(report.entries as usize, versions.len(), "{report:?}");
    assert_eq!(
        report.torn + report.bad_chains + report.duplicates,
        0,
        "{report:?}"
    );
    let begun = Mutex::new(HashMap::new());
    for (&k, &(version, len)) in &versions {
        begun.lock().expect("begun lock").insert(version, (k, len));
        let hit = store.lookup(&key(k)).expect("the entry survives a reopen");
        assert_eq!(verify(&hit, k, &begun), (version, len), "key {k}");
    }
}
