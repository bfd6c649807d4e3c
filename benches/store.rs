//! Store benchmarks: a verified 4 KiB hit, an insert into a full store
//! (eviction on every write), the memory cache (a hit verified and copied
//! into it, against a hit verified alone and a hit from it, at 4 KiB and
//! 256 KiB), the index rebuild of a 1,000,000-entry cache_dir (page cache
//! warm and cold), and the index's bytes per entry.
//!
//! Run with `cargo bench --bench store`. The cache_dirs live under the
//! system temp dir and are removed at the end; the big one is ~600 MB.
//! `CUTTLE_STORE_FILL=DIR,MIB,ENTRIES` instead fills a cache_dir of MIB
//! MiB of 512-byte slots with ENTRIES entries as the rebuild's, and runs no
//! bench (`benches/rss.sh` measures cuttle's idle memory over it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};

use cuttle::caching::StoredEntry;
use cuttle::config::ReplacementPolicy;
use cuttle::http::hot::{HotCache, HotEntry};
use cuttle::peers::store_digest;
use cuttle::store::{DirSpec, Key, Store, StoreOptions, Times, DATA_FILE};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("cuttle-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec(path: &Path, capacity: u64, slot_size: u32) -> DirSpec {
    DirSpec::new(path.to_path_buf(), capacity, slot_size)
}

fn open(spec: &DirSpec) -> Store {
    let options = StoreOptions {
        maximum_object_size: 4 << 20,
        policy: ReplacementPolicy::Lru,
    };
    Store::open(std::slice::from_ref(spec), options)
        .expect("store opens")
        .0
}

/// A well-spread key for `n` (the index hashes the first 8 bytes, as it
/// would an MD5): splitmix64 of `n`, then `n`.
fn key(n: u64) -> Key {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&z.to_le_bytes());
    k[8..].copy_from_slice(&n.to_le_bytes());
    k
}

const HEADERS: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n";

fn put(store: &Store, n: u64, body: &[u8]) {
    let url = format!("http://bench.example/object/{n}");
    // Fresh far past the bench's clock, so the digest build takes every entry.
    let times = Times {
        date: 1_700_000_000,
        expires: 4_000_000_000,
        last_modified: 0,
    };
    let mut w = store
        .writer(
            key(n),
            times,
            url.as_bytes(),
            HEADERS,
            Some(body.len() as u64),
        )
        .expect("writer");
    w.write(body).expect("write");
    w.commit().expect("commit");
}

/// (a) Lookup of a 4 KiB object: index, lease, every slot header and the
/// payload CRC verified, zero-copy views built. The page cache is warm.
fn lookup(c: &mut Criterion) {
    let dir = TempDir::new("lookup");
    let store = open(&spec(&dir.0, 64 << 20, 16 * 1024));
    let body = vec![0x5au8; 4096];
    for n in 0..1000 {
        put(&store, n, &body);
    }
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("lookup 4 KiB hit (CRC verified)", |b| {
        b.iter(|| {
            n = (n + 1) % 1000;
            let hit = store.lookup(black_box(&key(n))).expect("a hit");
            // Touch the body: its length and its first and last bytes.
            let first = hit.body.first().and_then(|b| b.first().copied());
            let last = hit.body.last().and_then(|b| b.last().copied());
            black_box((hit.body_len, first, last))
        })
    });
    group.finish();
}

/// (b) Insert of a 4 KiB object (writer, write, commit) into a full store:
/// every insert evicts the least recently used entry first.
fn insert(c: &mut Criterion) {
    let dir = TempDir::new("insert");
    // 16 KiB slots (rock's default), 4096 of them: one object per slot.
    let store = open(&spec(&dir.0, 64 << 20, 16 * 1024));
    let body = vec![0xa5u8; 4096];
    let mut n = 0u64;
    while store.usage().iter().map(|u| u.free_slots).sum::<u32>() > 0 {
        put(&store, n, &body);
        n += 1;
    }
    let before = store
        .counters()
        .evictions
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("insert 4 KiB into a full store (evicts)", |b| {
        b.iter(|| {
            put(&store, n, black_box(&body));
            n += 1;
        })
    });
    group.finish();
    let evictions = store
        .counters()
        .evictions
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    eprintln!("insert: {evictions} evictions while measuring");
}

/// (c) The memory cache, per object size: a store hit (lookup, CRC
/// checked) for comparison; the same hit admitted to the memory cache,
/// which copies the body out of the map (paid once per object, by the
/// TCP_HIT that brings it in); and a hit from the memory cache
/// (TCP_MEM_HIT: index check, no checksum, no copy). Timed in this
/// thread's CPU time, so that time the thread spends descheduled on a
/// busy machine does not skew the ratios between the three.
fn memory_cache(c: &mut Criterion) {
    const OBJECTS: u64 = 64;
    for (name, len) in [("4 KiB", 4096usize), ("256 KiB", 256 << 10)] {
        let dir = TempDir::new("memory");
        let store = open(&spec(&dir.0, 64 << 20, 16 * 1024));
        let body = vec![0x3cu8; len];
        for n in 0..OBJECTS {
            put(&store, n, &body);
        }
        let hot = HotCache::new(1 << 30, 1 << 20);
        let entry = |hit: &cuttle::store::Hit| HotEntry {
            generation: hit.generation,
            entry: StoredEntry {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                times: hit.times,
            },
            body: hit.body.clone(),
            body_len: hit.body_len,
            fresh_until: u64::MAX,
            ahead_hits: 0,
            lean_head: std::sync::Mutex::default(),
        };
        let mut group = c.benchmark_group("memory cache");
        group.throughput(Throughput::Elements(1));
        let mut n = 0u64;
        group.bench_function(format!("{name}: store hit (CRC verified)"), |b| {
            b.iter_custom(|iters| {
                cpu_time(iters, || {
                    n = (n + 1) % OBJECTS;
                    let hit = store.lookup(black_box(&key(n))).expect("a hit");
                    black_box(entry(&hit));
                })
            })
        });
        group.bench_function(
            format!("{name}: store hit admitted (verified, copied)"),
            |b| {
                b.iter_custom(|iters| {
                    cpu_time(iters, || {
                        n = (n + 1) % OBJECTS;
                        let hit = store.lookup(black_box(&key(n))).expect("a hit");
                        black_box(hot.insert(key(n), entry(&hit)));
                    })
                })
            },
        );
        group.bench_function(format!("{name}: memory hit"), |b| {
            b.iter_custom(|iters| {
                cpu_time(iters, || {
                    n = (n + 1) % OBJECTS;
                    black_box(hot.get(black_box(&key(n)), &store).expect("in memory"));
                })
            })
        });
        group.finish();
    }
}

/// This thread's CPU time for `iters` calls of `f`.
fn cpu_time(iters: u64, mut f: impl FnMut()) -> Duration {
    fn now() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
    let start = now();
    for _ in 0..iters {
        f();
    }
    now() - start
}

const REBUILD_ENTRIES: u64 = 1_000_000;
const REBUILD_SLOT: u32 = 512;

/// (c) Index rebuild (`Store::open`) of a cache_dir of 1,000,000 entries,
/// one 512-byte slot each, and (d) the index's heap bytes per entry.
fn rebuild(c: &mut Criterion) {
    let dir = TempDir::new("rebuild");
    let spec = spec(
        &dir.0,
        REBUILD_ENTRIES * u64::from(REBUILD_SLOT),
        REBUILD_SLOT,
    );
    let started = Instant::now();
    fill(&spec, REBUILD_ENTRIES);
    let file = dir.0.join(DATA_FILE);
    let file_len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "rebuild: built {REBUILD_ENTRIES} entries ({} MB data file) in {:.1?}",
        file_len >> 20,
        started.elapsed()
    );

    {
        // Counts only what the open allocates and frees (it frees nothing it
        // did not allocate, so the live figure stays exact).
        LIVE_BYTES.store(0, Ordering::Relaxed);
        PEAK_BYTES.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        let store = open(&spec);
        COUNTING.store(false, Ordering::Relaxed);
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        let peak = PEAK_BYTES.load(Ordering::Relaxed);
        eprintln!(
            "heap held after open: {:.1} bytes per entry; peak while rebuilding: {:.1} bytes per entry (counted by the allocator)",
            live as f64 / REBUILD_ENTRIES as f64,
            peak as f64 / REBUILD_ENTRIES as f64
        );
        for u in store.usage() {
            eprintln!(
                "index bytes per entry: {:.1} ({} bytes for {} entries in {} slots)",
                u.index_bytes as f64 / u.entries.max(1) as f64,
                u.index_bytes,
                u.entries,
                u.slots
            );
            assert_eq!(u.entries as u64, REBUILD_ENTRIES, "every entry rebuilt");
        }
    }

    let mut group = c.benchmark_group("store");
    // One rebuild reads the 64 MB slot header table and builds a
    // million-entry index: hundreds of milliseconds, so criterion's
    // default 100 samples would take minutes for no better an estimate.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(REBUILD_ENTRIES));
    group.bench_function("rebuild 1M entries (page cache warm)", |b| {
        b.iter_batched(|| (), |()| open(&spec), BatchSize::PerIteration)
    });
    // The same with the data file dropped from the page cache before each
    // open (it is clean after the flush above, so the kernel drops it
    // without root): the header table comes from the disk, as at boot.
    group.bench_function("rebuild 1M entries (page cache cold)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                drop_from_page_cache(&file);
                let t = Instant::now();
                let store = open(&spec);
                total += t.elapsed();
                drop(store);
            }
            total
        })
    });
    // The Cache Digest cuttle serves, built from the same million-entry
    // index (every entry fresh: each one is added).
    let store = open(&spec);
    let now = 1_700_000_000;
    let period = Duration::from_secs(3600);
    let digest = store_digest::build(&store, 5, now, period);
    eprintln!(
        "digest of {} entries: {} bytes of mask",
        digest.header().count,
        digest.mask().len()
    );
    group.bench_function("digest build from the 1M-entry index", |b| {
        b.iter(|| store_digest::build(&store, 5, now, period))
    });
    group.finish();
}

/// Puts `entries` entries of one 512-byte slot each into the cache_dir of
/// `spec`, and writes them to disk.
fn fill(spec: &DirSpec, entries: u64) {
    let store = open(spec);
    let body = vec![0x33u8; 200];
    for n in 0..entries {
        put(&store, n, &body);
    }
    store.flush().expect("flush");
}

/// `CUTTLE_STORE_FILL`'s "DIR,MIB,ENTRIES": a cache_dir as `cache_dir mmap
/// DIR MIB slot-size=512` makes it, filled with ENTRIES entries.
fn fill_from(arg: &str) -> Result<(), String> {
    let parts: Vec<&str> = arg.split(',').collect();
    let [dir, mib, entries] = parts[..] else {
        return Err(format!("'{arg}': DIR,MIB,ENTRIES expected"));
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|e| format!("'{s}' in '{arg}': {e}"))
    };
    let (mib, entries) = (number(mib)?, number(entries)?);
    if entries * u64::from(REBUILD_SLOT) > mib << 20 {
        return Err(format!(
            "{entries} entries of {REBUILD_SLOT} bytes do not fit in {mib} MiB"
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    fill(&spec(Path::new(dir), mib << 20, REBUILD_SLOT), entries);
    Ok(())
}

/// Asks the kernel to drop the clean pages of `path` from the page cache.
fn drop_from_page_cache(path: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(path) else {
        return;
    };
    // SAFETY: posix_fadvise only reads the descriptor, which `f` keeps open.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        eprintln!("posix_fadvise failed: {rc}");
    }
}

/// Counts live and peak heap bytes, for the index-memory figures.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts sizes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        // Off except around the measured open, to keep the timings clean.
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            let now = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    if let Ok(arg) = std::env::var("CUTTLE_STORE_FILL") {
        if let Err(e) = fill_from(&arg) {
            eprintln!("CUTTLE_STORE_FILL: {e}");
            std::process::exit(2);
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    lookup(&mut c);
    insert(&mut c);
    memory_cache(&mut c);
    rebuild(&mut c);
    c.final_summary();
}
