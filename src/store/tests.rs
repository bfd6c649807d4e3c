//! Store behaviour through its public API on real files: write, read back,
//! replace, purge, evict, reopen, size limits, locking and bad files.

use std::path::{Path, PathBuf};

use super::*;

pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "cuttle-store-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
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

pub(crate) fn spec(path: &Path, capacity: u64, slot_size: u32) -> DirSpec {
    DirSpec::new(path.to_path_buf(), capacity, slot_size)
}

fn open(path: &Path, capacity: u64, slot_size: u32) -> (Store, RebuildReport) {
    Store::open(
        &[spec(path, capacity, slot_size)],
        StoreOptions {
            maximum_object_size: u64::MAX,
            policy: ReplacementPolicy::Lru,
        },
    )
    .expect("store opens")
}

pub(crate) fn key(n: u64) -> Key {
    cuttle_protocol::key::store_key(
        cuttle_protocol::key::Method::Get,
        format!("http://example.com/{n}").as_bytes(),
    )
}

/// Deterministic body bytes for (n, version).
pub(crate) fn body(n: u64, version: u64, len: usize) -> Vec<u8> {
    let mut x =
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn put(store: &Store, n: u64, version: u64, len: usize) {
    let url = format!("http://example.com/{n}");
    let headers =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nX-Version: {version}\r\n\r\n");
    let times = Times {
        date: 1_700_000_000 + n as u32,
        expires: 1_800_000_000,
        last_modified: 1_600_000_000,
    };
    let mut w = store
        .writer(
            key(n),
            times,
            url.as_bytes(),
            headers.as_bytes(),
            Some(len as u64),
        )
        .expect("writer");
    for chunk in body(n, version, len).chunks(1000) {
        w.write(chunk).expect("write");
    }
    w.commit().expect("commit");
}

fn assert_entry(store: &Store, n: u64, version: u64, len: usize) {
    let hit = store
        .lookup(&key(n))
        .unwrap_or_else(|| panic!("entry {n} missing"));
    assert_eq!(hit.url, format!("http://example.com/{n}").as_bytes());
    let headers = String::from_utf8_lossy(&hit.header_block).into_owned();
    assert!(
        headers.contains(&format!("X-Version: {version}\r\n")),
        "{headers}"
    );
    assert_eq!(hit.body_len, len as u64);
    assert_eq!(hit.body_bytes(), body(n, version, len), "body of {n}");
    assert_eq!(hit.times.date, 1_700_000_000 + n as u32);
}

#[test]
fn write_read_replace_purge_and_reopen() {
    let dir = TempDir::new("basic");
    {
        let (store, report) = open(&dir.0, 4 << 20, 4096);
        assert_eq!(report, RebuildReport::default());
        put(&store, 1, 1, 10);
        put(&store, 2, 1, 100_000);
        put(&store, 3, 1, 4096 - 100);
        assert_entry(&store, 1, 1, 10);
        assert_entry(&store, 2, 1, 100_000);
        assert_entry(&store, 3, 1, 4096 - 100);
        put(&store, 2, 2, 5000);
        assert_entry(&store, 2, 2, 5000);
        assert!(store.purge(&key(3)));
        assert!(!store.purge(&key(3)));
        assert!(store.lookup(&key(3)).is_none());
        assert_eq!(
            store.peek(&key(1)).map(|s| s.times.expires),
            Some(1_800_000_000)
        );
    }
    let (store, report) = open(&dir.0, 4 << 20, 4096);
    assert_eq!(report.entries, 2, "{report:?}");
    assert_eq!(
        report.duplicates + report.bad_chains + report.torn,
        0,
        "{report:?}"
    );
    assert_entry(&store, 1, 1, 10);
    assert_entry(&store, 2, 2, 5000);
    assert!(
        store.lookup(&key(3)).is_none(),
        "a purge survives a restart"
    );
}

#[test]
fn a_large_body_is_one_zero_copy_run_when_slots_are_adjacent() {
    let dir = TempDir::new("runs");
    let (store, _) = open(&dir.0, 4 << 20, 4096);
    put(&store, 7, 1, 50_000);
    let hit = store.lookup(&key(7)).expect("hit");
    assert_eq!(hit.body.len(), 1, "consecutive slots form one Bytes");
    assert_eq!(store.counters().copied_heads.load(Ordering::Relaxed), 0);
}

#[test]
fn eviction_makes_room_and_spares_nothing_it_should_not() {
    let dir = TempDir::new("evict");
    let (store, _) = open(&dir.0, 64 * 4096, 4096);
    for n in 0..200 {
        put(&store, n, 1, 3000);
    }
    let present: Vec<u64> = (0..200)
        .filter(|&n| store.lookup(&key(n)).is_some())
        .collect();
    assert!(
        present.len() >= 50 && present.len() <= 64,
        "{}",
        present.len()
    );
    // LRU: the newest survive.
    assert!(present.iter().all(|&n| n >= 200 - 64), "{present:?}");
    for &n in &present {
        assert_entry(&store, n, 1, 3000);
    }
    assert!(store.counters().evictions.load(Ordering::Relaxed) >= 136);
}

#[test]
fn a_leased_entry_is_not_overwritten_by_eviction() {
    let dir = TempDir::new("lease");
    let (store, _) = open(&dir.0, 16 * 4096, 4096);
    put(&store, 1, 1, 3000);
    let held = store.lookup(&key(1)).expect("hit");
    for n in 2..100 {
        put(&store, n, 1, 3000);
    }
    assert!(store.lookup(&key(1)).is_none(), "evicted from the index");
    assert_eq!(
        held.body_bytes(),
        body(1, 1, 3000),
        "but the bytes held are intact"
    );
    // Entry 1's slot comes back only when the last view is dropped.
    let free_before = store.usage()[0].free_slots;
    drop(held);
    assert_eq!(store.usage()[0].free_slots, free_before + 1);
    for n in 100..140 {
        put(&store, n, 1, 3000);
    }
    for n in 124..140 {
        assert_entry(&store, n, 1, 3000);
    }
}

#[test]
fn cache_replacement_policy_is_honoured() {
    let dir = TempDir::new("lfuda");
    let (store, _) = Store::open(
        &[spec(&dir.0, 16 * 4096, 4096)],
        StoreOptions {
            maximum_object_size: u64::MAX,
            policy: ReplacementPolicy::HeapLfuda,
        },
    )
    .expect("open");
    put(&store, 0, 1, 3000);
    for _ in 0..20 {
        assert!(store.lookup(&key(0)).is_some());
    }
    for n in 1..100 {
        put(&store, n, 1, 3000);
    }
    // LRU would have evicted entry 0 long ago; LFUDA keeps the popular one.
    assert_entry(&store, 0, 1, 3000);
}

#[test]
fn size_limits() {
    let dir = TempDir::new("limits");
    let (store, _) = Store::open(
        &[spec(&dir.0, 1 << 20, 4096)],
        StoreOptions {
            maximum_object_size: 10_000,
            policy: ReplacementPolicy::Lru,
        },
    )
    .expect("open");
    let err = store
        .writer(key(1), Times::default(), b"http://a/", b"", Some(20_000))
        .err()
        .expect("too large up front");
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    let mut w = store
        .writer(key(1), Times::default(), b"http://a/", b"", None)
        .expect("unknown length is accepted");
    assert!(w.write(&[0u8; 9000]).is_ok());
    assert!(matches!(
        w.write(&[0u8; 2000]),
        Err(StoreError::TooLarge { .. })
    ));
    assert!(matches!(w.commit(), Err(StoreError::Aborted)));
    assert!(store.lookup(&key(1)).is_none());
    assert_eq!(
        store.usage()[0].free_slots,
        store.usage()[0].slots,
        "slots given back"
    );
}

#[test]
fn an_uncommitted_writer_leaves_nothing_behind() {
    let dir = TempDir::new("abort");
    {
        let (store, _) = open(&dir.0, 1 << 20, 4096);
        let mut w = store
            .writer(key(9), Times::default(), b"http://a/9", b"H", None)
            .expect("writer");
        w.write(&[1u8; 20_000]).expect("write");
        drop(w);
        assert!(store.lookup(&key(9)).is_none());
        assert_eq!(store.usage()[0].free_slots, store.usage()[0].slots);
    }
    let (store, report) = open(&dir.0, 1 << 20, 4096);
    // Abandoned in a running store, its slots were cleared as they were
    // given back (a crash mid-write is another matter: see
    // orphans_left_by_a_crash_are_reported_once_then_cleared).
    assert_eq!(report, RebuildReport::default());
    assert_eq!(store.usage()[0].free_slots, store.usage()[0].slots);
}

#[test]
fn corruption_is_a_counted_miss_and_the_entry_is_dropped() {
    let dir = TempDir::new("corrupt");
    let file = {
        let (store, _) = open(&dir.0, 1 << 20, 4096);
        put(&store, 1, 1, 10_000);
        put(&store, 2, 1, 10_000);
        store.usage()[0].file.clone()
    };
    // Flip one body byte of entry 1 on disk.
    let image = std::fs::read(&file).expect("read");
    let needle = body(1, 1, 10_000);
    let at = image
        .windows(64)
        .position(|w| w == &needle[5000..5064])
        .expect("body on disk");
    let mut image = image;
    image[at] ^= 0xff;
    std::fs::write(&file, &image).expect("write");

    let (store, _) = open(&dir.0, 1 << 20, 4096);
    assert!(store.lookup(&key(1)).is_none());
    assert_eq!(store.counters().bad.load(Ordering::Relaxed), 1);
    assert!(store.peek(&key(1)).is_none(), "dropped");
    assert_entry(&store, 2, 1, 10_000);
}

#[test]
fn a_second_opener_is_refused_with_the_path() {
    let dir = TempDir::new("lock");
    let (_store, _) = open(&dir.0, 1 << 20, 4096);
    let err = Store::open(&[spec(&dir.0, 1 << 20, 4096)], StoreOptions::default())
        .err()
        .expect("locked");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Locked { .. }), "{text}");
    assert!(text.contains(&dir.0.display().to_string()), "{text}");
    assert!(text.contains("another cuttle"), "{text}");
}

#[test]
fn bad_files_and_dirs_are_clear_errors_naming_the_path() {
    let dir = TempDir::new("bad");
    std::fs::write(
        dir.0.join(DATA_FILE),
        b"this is not a store, but it is long enough to have a header",
    )
    .expect("write");
    let err = Store::open(&[spec(&dir.0, 1 << 20, 4096)], StoreOptions::default())
        .err()
        .expect("bad magic");
    assert!(err.to_string().contains("not a cuttle data file"), "{err}");
    assert!(err.to_string().contains(DATA_FILE), "{err}");

    let other = TempDir::new("geometry");
    drop(open(&other.0, 1 << 20, 4096));
    let err = Store::open(&[spec(&other.0, 2 << 20, 4096)], StoreOptions::default())
        .err()
        .expect("geometry");
    assert!(err.to_string().contains("the config asks for"), "{err}");

    let short = TempDir::new("short");
    drop(open(&short.0, 1 << 20, 4096));
    let file = short.0.join(DATA_FILE);
    let len = std::fs::metadata(&file).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(len - 4096))
        .expect("truncate");
    let err = Store::open(&[spec(&short.0, 1 << 20, 4096)], StoreOptions::default())
        .err()
        .expect("size");
    assert!(err.to_string().contains("but its superblock says"), "{err}");

    let blocker = TempDir::new("notadir");
    let file = blocker.0.join("file");
    std::fs::write(&file, b"x").expect("write");
    let err = Store::open(
        &[spec(&file.join("sub"), 1 << 20, 4096)],
        StoreOptions::default(),
    )
    .err()
    .expect("mkdir");
    assert!(
        err.to_string().contains("cannot create the cache_dir"),
        "{err}"
    );
    assert!(err.to_string().contains("file/sub"), "{err}");
}

#[test]
fn verify_and_list_read_only() {
    let dir = TempDir::new("verify");
    {
        let (store, _) = open(&dir.0, 1 << 20, 4096);
        put(&store, 1, 1, 100);
        put(&store, 2, 1, 9000);
    }
    let (store, rebuild) = Store::open_existing(&dir.0).expect("open existing");
    let mut calls = 0;
    let report = store.verify(rebuild, &mut |done, total| {
        calls += 1;
        assert!(done <= total);
    });
    assert_eq!((report.good, report.bad), (2, 0));
    assert!(report.is_clean());
    assert_eq!(calls, 2);
    let listed = store.list();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].url, "http://example.com/1");
    assert_eq!(listed[1].body_len, 9000);
}

#[test]
fn objects_are_spread_over_cache_dirs_by_size() {
    let small = TempDir::new("small");
    let large = TempDir::new("large");
    let mut small_spec = spec(&small.0, 1 << 20, 4096);
    small_spec.max_size = Some(8000);
    let mut large_spec = spec(&large.0, 4 << 20, 16384);
    large_spec.min_size = 8001;
    let (store, _) = Store::open(
        &[small_spec, large_spec],
        StoreOptions {
            maximum_object_size: u64::MAX,
            policy: ReplacementPolicy::Lru,
        },
    )
    .expect("open");
    put(&store, 1, 1, 1000);
    put(&store, 2, 1, 100_000);
    let usage = store.usage();
    assert_eq!((usage[0].entries, usage[1].entries), (1, 1));
    assert!(store.peek(&key(1)).is_some());
    // A new, larger version of 1 moves to the large dir; the old copy goes.
    put(&store, 1, 2, 50_000);
    let usage = store.usage();
    assert_eq!((usage[0].entries, usage[1].entries), (0, 2));
    assert_entry(&store, 1, 2, 50_000);
    assert_entry(&store, 2, 1, 100_000);
}

#[test]
fn the_writer_that_started_last_wins_in_memory_and_on_disk() {
    let dir = TempDir::new("superseded");
    {
        let (store, _) = open(&dir.0, 1 << 20, 4096);
        let url = b"http://example.com/1";
        let mut older = store
            .writer(key(1), Times::default(), url, b"older", None)
            .expect("writer");
        let mut newer = store
            .writer(key(1), Times::default(), url, b"newer", None)
            .expect("writer");
        newer.write(b"new body").expect("write");
        older.write(b"old body").expect("write");
        newer.commit().expect("commit");
        assert!(matches!(older.commit(), Err(StoreError::Superseded)));
        let hit = store.lookup(&key(1)).expect("hit");
        assert_eq!(&hit.header_block[..], b"newer");
        assert_eq!(store.usage()[0].free_slots, store.usage()[0].slots - 1);
    }
    let (store, _) = open(&dir.0, 1 << 20, 4096);
    assert_eq!(
        &store.lookup(&key(1)).expect("hit").header_block[..],
        b"newer"
    );
}

/// Everything a running store does to free slots: eviction of entries of
/// several slots, replacement, purge, an abandoned writer and a superseded
/// commit. None of it may leave a slot header that a rebuild finds valid
/// but unclaimed (an "orphan"): after a clean close the store is clean.
#[test]
fn freeing_an_entry_clears_every_slot_header_of_its_chain() {
    let dir = TempDir::new("no-orphans");
    {
        let (store, _) = open(&dir.0, 64 * 4096, 4096);
        // 10,000 bytes: three slots each, 21 fit; 100 force evictions.
        for n in 0..100 {
            put(&store, n, 1, 10_000);
        }
        assert!(store.counters().evictions.load(Ordering::Relaxed) > 50);
        put(&store, 99, 2, 9_000);
        assert!(store.purge(&key(98)));
        let mut abandoned = store
            .writer(key(500), Times::default(), b"http://a/500", b"H", None)
            .expect("writer");
        abandoned.write(&[7u8; 20_000]).expect("write");
        drop(abandoned);
        let mut older = store
            .writer(
                key(97),
                Times::default(),
                b"http://example.com/97",
                b"H",
                None,
            )
            .expect("writer");
        older.write(&[8u8; 20_000]).expect("write");
        put(&store, 97, 3, 10_000);
        assert!(matches!(older.commit(), Err(StoreError::Superseded)));
        store.flush().expect("flush");
    }
    let (store, report) = open(&dir.0, 64 * 4096, 4096);
    assert_eq!(
        RebuildReport {
            entries: 0,
            bytes: 0,
            ..report
        },
        RebuildReport::default(),
        "nothing but entries after a clean close"
    );
    assert_entry(&store, 99, 2, 9_000);
    assert_entry(&store, 97, 3, 10_000);
}

/// A crash mid-write (the image as it was while a writer was filling
/// slots) does leave orphans: the rebuild reports them, and frees and
/// clears them, so the next clean close is clean again.
#[test]
fn orphans_left_by_a_crash_are_reported_once_then_cleared() {
    let dir = TempDir::new("crash-orphans");
    let file = dir.0.join(DATA_FILE);
    let crashed = {
        let (store, _) = open(&dir.0, 1 << 20, 4096);
        put(&store, 1, 1, 10_000);
        let mut w = store
            .writer(key(9), Times::default(), b"http://a/9", b"H", None)
            .expect("writer");
        w.write(&[1u8; 20_000]).expect("write");
        // The file as a kill -9 would leave it (the map is shared).
        std::fs::read(&file).expect("read")
    };
    std::fs::write(&file, &crashed).expect("write");
    {
        let (store, report) = open(&dir.0, 1 << 20, 4096);
        assert_eq!(report.entries, 1, "{report:?}");
        assert!(report.orphaned > 0, "reported: {report:?}");
        assert_entry(&store, 1, 1, 10_000);
    }
    let (store, report) = open(&dir.0, 1 << 20, 4096);
    assert_eq!(report.orphaned, 0, "cleared by the rebuild: {report:?}");
    assert_eq!(report.entries, 1, "{report:?}");
    assert_entry(&store, 1, 1, 10_000);
}

/// The bytes `put(n, version, len)` stores: prefix, URL, header block, body.
fn entry_len(n: u64, version: u64, len: usize) -> u64 {
    let url = format!("http://example.com/{n}");
    let headers =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nX-Version: {version}\r\n\r\n");
    (layout::ENTRY_PREFIX_LEN + url.len() + headers.len() + len) as u64
}

#[test]
fn usage_counts_the_bytes_of_entries_not_of_their_slots() {
    let dir = TempDir::new("entry-bytes");
    let bytes = |store: &Store| store.usage()[0].bytes;
    {
        let (store, _) = open(&dir.0, 4 << 20, 4096);
        put(&store, 1, 1, 10);
        put(&store, 2, 1, 100_000);
        assert_eq!(
            bytes(&store),
            entry_len(1, 1, 10) + entry_len(2, 1, 100_000)
        );
        put(&store, 2, 2, 5000);
        assert_eq!(bytes(&store), entry_len(1, 1, 10) + entry_len(2, 2, 5000));
        put(&store, 3, 1, 700);
        assert!(store.purge(&key(3)));
        assert_eq!(bytes(&store), entry_len(1, 1, 10) + entry_len(2, 2, 5000));
    }
    let (store, _) = open(&dir.0, 4 << 20, 4096);
    assert_eq!(
        bytes(&store),
        entry_len(1, 1, 10) + entry_len(2, 2, 5000),
        "a rebuild counts the same"
    );
    // Evictions take their bytes with them.
    let small = TempDir::new("entry-bytes-evict");
    let (store, _) = open(&small.0, 16 * 4096, 4096);
    for n in 0..100 {
        put(&store, n, 1, 3000);
    }
    let held: u64 = (0..100)
        .filter(|&n| store.peek(&key(n)).is_some())
        .map(|n| entry_len(n, 1, 3000))
        .sum();
    assert_eq!(bytes(&store), held);
}

fn memory_options() -> StoreOptions {
    StoreOptions {
        maximum_object_size: u64::MAX,
        policy: ReplacementPolicy::Lru,
    }
}

#[test]
fn a_memory_store_stores_replaces_purges_and_evicts() {
    let slot = u64::from(DEFAULT_SLOT_SIZE);
    let store = Store::open_memory(64 * slot, 512 << 10, memory_options()).expect("memory store");
    assert!(store.is_memory());
    assert_eq!(store.usage()[0].path, Path::new(MEMORY_PATH));
    put(&store, 1, 1, 10);
    put(&store, 2, 1, 100_000);
    assert_entry(&store, 1, 1, 10);
    assert_entry(&store, 2, 1, 100_000);
    put(&store, 2, 2, 5000);
    assert_entry(&store, 2, 2, 5000);
    assert!(store.purge(&key(1)));
    assert!(store.lookup(&key(1)).is_none());
    // Over maximum_object_size_in_memory: not kept.
    assert!(store
        .writer(key(9), Times::default(), b"u", b"h", Some(600 << 10))
        .is_err());
    // 200 one-slot objects in 64 slots: the newest stay (LRU).
    for n in 10..210 {
        put(&store, n, 1, 3000);
    }
    let present: Vec<u64> = (10..210)
        .filter(|&n| store.lookup(&key(n)).is_some())
        .collect();
    assert!(present.len() >= 50 && present.len() <= 64, "{present:?}");
    assert!(present.iter().all(|&n| n >= 210 - 64), "{present:?}");
    for &n in &present {
        assert_entry(&store, n, 1, 3000);
    }
}

#[test]
fn a_config_without_cache_dir_opens_a_memory_store_of_cache_mem() {
    let load = |text: &str| {
        crate::config::load_str(text, "test", &crate::config::LoadOptions::default()).config
    };
    let (store, _) =
        Store::open_config(&load("http_port 3128\ncache_mem 2 MB\n")).expect("memory store");
    assert!(store.is_memory());
    let u = &store.usage()[0];
    assert_eq!(u64::from(u.slots) * u64::from(u.slot_size), 2 << 20);
    // cache_mem 0 and no cache_dir: nothing is cached, as in Squid.
    let (store, _) = Store::open_config(&load("cache_mem 0\n")).expect("no store");
    assert!(!store.is_memory());
    assert!(store.usage().is_empty());
}

/// The change feed (HTCP MON): while on, a commit, a purge and an eviction
/// each leave the key.
#[test]
fn the_change_feed_sees_commits_purges_and_evictions() {
    let store = Store::open_memory(64 * 1024, 64 * 1024, StoreOptions::default()).unwrap();
    let put = |n: u8| {
        let key = [n; 16];
        let mut w = store
            .writer(key, Times::default(), b"http://o/", b"h", Some(20_000))
            .unwrap();
        w.write(&vec![n; 20_000]).unwrap();
        w.commit().unwrap();
        key
    };
    let mut seen = Vec::new();
    put(1);
    store.changes().drain(&mut seen);
    assert!(seen.is_empty(), "off until someone subscribes");
    store.changes().set_enabled(true);
    let a = put(2);
    assert!(store.purge(&a));
    for n in 3..8 {
        put(n);
    }
    store.changes().drain(&mut seen);
    assert_eq!(&seen[..2], &[a, a], "committed, then purged");
    assert!(seen.contains(&[1; 16]), "evicted to make room: {seen:?}");
}
