//! The object store: one or more memory-mapped, checksummed cache_dirs.
//!
//! It stores entries (store key, times, URL, HTTP response header block,
//! body) and hands hits back as zero-copy [`Bytes`] that borrow the map. It
//! knows nothing of HTTP semantics: freshness, Vary and validation live
//! above it. Every `unsafe` is in `map.rs`.
//!
//! Durability: after `kill -9` every committed entry and every purge
//! survives (the page cache keeps the map's writes). After a power cut,
//! entries whose writes were torn fail their checksums and are dropped, and
//! entries committed since the last writeback may be lost; purges are
//! written through to disk before [`Store::purge`] returns.

mod changes;
mod dir;
mod index;
mod layout;
mod map;
mod meter_ledger;
#[cfg(test)]
mod model_tests;
mod policy;
mod slots;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use bytes::Bytes;
pub use changes::{ChangeFeed, FEED_CAPACITY};
pub use dir::{DirSpec, DirWriter, DATA_FILE, DEFAULT_SLOT_SIZE, MEMORY_PATH};
pub use layout::Times;
pub use meter_ledger::{LedgerLoad, MeterLedger, MeterReport, MeterTerms, Metered, METER_FILE};
pub(crate) use policy::{new_policy, Policy};

use crate::config::{self, ReplacementPolicy};
use dir::{Dir, StoreShared};

/// A store key (Squid's: MD5 of method and URL).
pub type Key = [u8; 16];

/// A verified cached entry. Every `Bytes` borrows the map; the entry's
/// slots stay out of reach of eviction until the last of them is dropped.
#[derive(Debug, Clone)]
pub struct Hit {
    pub key: Key,
    /// See [`Summary::generation`].
    pub generation: u32,
    pub times: Times,
    pub url: Bytes,
    /// The HTTP response header block as stored.
    pub header_block: Bytes,
    /// The body, one `Bytes` per run of adjacent slots.
    pub body: Vec<Bytes>,
    pub body_len: u64,
}

impl Hit {
    /// The body in one piece (copies when it spans several runs).
    pub fn body_bytes(&self) -> Bytes {
        match self.body.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => many.concat().into(),
        }
    }
}

/// What the in-memory index knows of an entry (for ICP/HTCP answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub times: Times,
    /// Changes whenever the key's entry is replaced (low bits of its
    /// generation): tells a copy made from a [`Hit`] whether it is current.
    pub generation: u32,
}

/// What a rebuild found in one cache_dir.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub entries: u64,
    pub bytes: u64,
    /// Headers whose checksum failed (torn writes).
    pub torn: u64,
    /// Continuation slots no committed entry claims (interrupted writes).
    pub orphaned: u64,
    /// Committed entries whose chain did not hold together.
    pub bad_chains: u64,
    /// Older commits of a key that has a newer one.
    pub duplicates: u64,
}

impl RebuildReport {
    fn add(&mut self, other: &RebuildReport) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.torn += other.torn;
        self.orphaned += other.orphaned;
        self.bad_chains += other.bad_chains;
        self.duplicates += other.duplicates;
    }
}

/// Counters shared by the cache_dirs of a store.
#[derive(Debug, Default)]
pub struct Counters {
    pub lookups: AtomicU64,
    pub hits: AtomicU64,
    /// Entries that failed verification on read (and were dropped).
    pub bad: AtomicU64,
    /// Lookups that lost a race with a purge or replacement.
    pub raced: AtomicU64,
    pub writes: AtomicU64,
    pub aborted: AtomicU64,
    pub too_large: AtomicU64,
    pub no_space: AtomicU64,
    pub evictions: AtomicU64,
    pub purges: AtomicU64,
    /// Hits whose URL or header block spanned non-adjacent slots (copied).
    pub copied_heads: AtomicU64,
    /// Commits dropped because a writer that started later committed first.
    pub superseded: AtomicU64,
}

#[derive(Debug)]
pub enum StoreError {
    /// An I/O error on `path` while doing `action`.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Another process holds the cache_dir.
    Locked { path: PathBuf },
    /// The disk has no room for the data file.
    Allocate {
        path: PathBuf,
        bytes: u64,
        source: io::Error,
    },
    /// The data file is not what it should be.
    Format { path: PathBuf, reason: String },
    /// The object is bigger than allowed.
    TooLarge { size: u64, limit: u64 },
    /// No slots could be freed (everything is leased or the dir is too small).
    NoSpace,
    /// No cache_dir takes objects of this size.
    NoDir { size: u64 },
    /// The writer failed earlier and was abandoned.
    Aborted,
    /// A writer of the same key that started later has already committed;
    /// this older version is dropped (harmless: the newer one is cached).
    Superseded,
}

impl StoreError {
    fn io(path: &Path, action: &'static str, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            StoreError::Locked { path } => write!(
                f,
                "{} is in use by another cuttle process (it holds the lock); \
                 give each cuttle its own cache_dir",
                path.display()
            ),
            StoreError::Allocate {
                path,
                bytes,
                source,
            } => write!(
                f,
                "cannot reserve {bytes} bytes on disk for {}: {source}",
                path.display()
            ),
            StoreError::Format { path, reason } => write!(f, "{}: {reason}", path.display()),
            StoreError::TooLarge { size, limit } => {
                write!(f, "object of {size} bytes is over the limit of {limit}")
            }
            StoreError::NoSpace => f.write_str("no space: nothing left to evict"),
            StoreError::NoDir { size } => write!(f, "no cache_dir takes objects of {size} bytes"),
            StoreError::Aborted => f.write_str("the write was abandoned"),
            StoreError::Superseded => f.write_str("a newer version of the object was stored first"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } | StoreError::Allocate { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Settings that apply to the whole store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// `maximum_object_size`: bigger objects are passed through, not stored.
    pub maximum_object_size: u64,
    /// `cache_replacement_policy`.
    pub policy: ReplacementPolicy,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            maximum_object_size: 4 << 20,
            policy: ReplacementPolicy::Lru,
        }
    }
}

/// A snapshot of one cache_dir's use.
#[derive(Debug, Clone)]
pub struct DirUsage {
    pub path: PathBuf,
    /// The data file inside `path`.
    pub file: PathBuf,
    pub entries: usize,
    pub slot_size: u32,
    pub slots: u32,
    pub free_slots: u32,
    /// Heap bytes of the index, free-slot set and policy.
    pub index_bytes: usize,
    /// Bytes of the entries held (URL, header block, body and the entry's
    /// own prefix), not of the slots they take.
    pub bytes: u64,
}

/// All cache_dirs of one cuttle.
pub struct Store {
    /// Shared with writers, which outlive any borrow of the store.
    dirs: Arc<[Dir]>,
    options: StoreOptions,
    counters: Arc<Counters>,
    /// Keys committed or removed (HTCP MON's notifications).
    changes: Arc<ChangeFeed>,
    /// Held in memory only (no cache_dir): every hit is a memory hit.
    in_memory: bool,
}

impl Store {
    /// Opens every cache_dir in `specs` (creating the missing ones) and
    /// rebuilds their indexes.
    pub fn open(
        specs: &[DirSpec],
        options: StoreOptions,
    ) -> Result<(Store, RebuildReport), StoreError> {
        let shared = StoreShared::default();
        let mut dirs = Vec::with_capacity(specs.len());
        let mut report = RebuildReport::default();
        for spec in specs {
            let (dir, r) = Dir::open(spec, options.policy, &shared)?;
            tracing::info!(
                dir = %spec.path.display(),
                entries = r.entries,
                torn = r.torn,
                orphaned = r.orphaned,
                bad_chains = r.bad_chains,
                "cache_dir opened"
            );
            if !spec.read_only && r.torn + r.orphaned + r.bad_chains > 0 {
                // Only a crash mid-write leaves these; they are cleared now,
                // so this is their one report.
                tracing::warn!(
                    dir = %spec.path.display(),
                    torn = r.torn,
                    orphaned = r.orphaned,
                    bad_chains = r.bad_chains,
                    "cache_dir had slots left by an unclean stop; freed and cleared"
                );
            }
            report.add(&r);
            dirs.push(dir);
        }
        let settled = settle_duplicates(&dirs);
        report.duplicates += settled;
        report.entries -= settled;
        Ok((
            Store {
                dirs: dirs.into(),
                options,
                counters: shared.counters,
                changes: shared.changes,
                in_memory: false,
            },
            report,
        ))
    }

    /// A store of `capacity` bytes in memory of this process, as Squid's
    /// `cache_mem` with no cache_dir: same slots, lookups and eviction as a
    /// cache_dir, but no file, and nothing survives a restart. Objects over
    /// `max_object` bytes (Squid's `maximum_object_size_in_memory`) are not
    /// kept.
    pub fn open_memory(
        capacity: u64,
        max_object: u64,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let shared = StoreShared::default();
        let dir = Dir::open_memory(
            capacity,
            DEFAULT_SLOT_SIZE,
            max_object,
            options.policy,
            &shared,
        )?;
        Ok(Store {
            dirs: vec![dir].into(),
            options,
            counters: shared.counters,
            changes: shared.changes,
            in_memory: true,
        })
    }

    /// Whether this store lives in memory only (see [`Store::open_memory`]).
    pub fn is_memory(&self) -> bool {
        self.in_memory
    }

    /// The cache_dirs of a config, as specs (see [`specs_from_config`]);
    /// with no cache_dir line at all, a memory store of `cache_mem` bytes
    /// (none when cache_mem is 0), as Squid caches in memory then.
    pub fn open_config(config: &config::Config) -> Result<(Store, RebuildReport), StoreError> {
        let options = StoreOptions {
            maximum_object_size: config.maximum_object_size.value,
            policy: config.cache_replacement_policy.value,
        };
        if memory_only(config) {
            let store = Store::open_memory(
                config.cache_mem.value,
                config.maximum_object_size_in_memory.value,
                options,
            )?;
            return Ok((store, RebuildReport::default()));
        }
        Store::open(&specs_from_config(config), options)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The feed of changed keys (off until someone enables it).
    pub fn changes(&self) -> &Arc<ChangeFeed> {
        &self.changes
    }

    pub fn usage(&self) -> Vec<DirUsage> {
        self.dirs
            .iter()
            .map(|d| {
                let (entries, free_slots, slots, index_bytes, bytes) = d.usage();
                DirUsage {
                    path: d.path().to_path_buf(),
                    file: d.file().to_path_buf(),
                    entries,
                    slot_size: d.geometry().slot_size,
                    slots,
                    free_slots,
                    index_bytes,
                    bytes,
                }
            })
            .collect()
    }

    /// The verified entry for `key`; `None` on a miss (including an entry
    /// that failed verification, which is dropped and counted).
    pub fn lookup(&self, key: &Key) -> Option<Hit> {
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let hit = self.dirs.iter().find_map(|d| d.lookup(key));
        if hit.is_some() {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// [`Store::lookup`] without counting it: for copying an entry into
    /// the memory cache right after it was stored.
    pub fn read(&self, key: &Key) -> Option<Hit> {
        self.dirs.iter().find_map(|d| d.lookup(key))
    }

    /// What the index knows of `key`, without touching the disk: for the
    /// ICP and HTCP answer paths, which must never wait.
    pub fn peek(&self, key: &Key) -> Option<Summary> {
        self.dirs.iter().find_map(|d| d.peek(key))
    }

    /// Removes `key` from every cache_dir; true if anything was removed.
    /// Written through to disk before returning.
    pub fn purge(&self, key: &Key) -> bool {
        let mut any = false;
        for d in self.dirs.iter() {
            any |= d.purge(key);
        }
        if any {
            self.counters.purges.fetch_add(1, Ordering::Relaxed);
        }
        any
    }

    /// Starts storing an entry. `expected_body_len` (from Content-Length)
    /// picks the cache_dir and refuses oversized objects up front; without
    /// it the object goes where the largest objects may go, and the writer
    /// fails with [`StoreError::TooLarge`] once it grows past the limit.
    pub fn writer(
        &self,
        key: Key,
        times: Times,
        url: &[u8],
        header_block: &[u8],
        expected_body_len: Option<u64>,
    ) -> Result<Writer, StoreError> {
        let head = (layout::ENTRY_PREFIX_LEN + url.len() + header_block.len()) as u64;
        let size = expected_body_len.map(|b| head.saturating_add(b));
        if let Some(size) = size {
            if size > self.options.maximum_object_size {
                self.counters.too_large.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::TooLarge {
                    size,
                    limit: self.options.maximum_object_size,
                });
            }
        }
        let chosen = self.pick_dir(size)?;
        let inner = self.dirs[chosen].writer(
            key,
            times,
            url,
            header_block,
            expected_body_len,
            self.options.maximum_object_size,
        )?;
        Ok(Writer {
            inner,
            dirs: Arc::clone(&self.dirs),
            chosen,
        })
    }

    /// Squid's least-load choice among the dirs that take `size`: the one
    /// with the most free slots; with the size unknown, the dir that takes
    /// the largest objects.
    fn pick_dir(&self, size: Option<u64>) -> Result<usize, StoreError> {
        let dirs = self.dirs.iter().enumerate();
        match size {
            Some(size) => dirs
                .filter(|(_, d)| d.accepts(size))
                .max_by_key(|(_, d)| d.usage().1)
                .map(|(i, _)| i)
                .ok_or(StoreError::NoDir { size }),
            None => dirs
                .max_by_key(|(_, d)| (d.max_size(), d.usage().1))
                .map(|(i, _)| i)
                .ok_or(StoreError::NoDir { size: 0 }),
        }
    }

    /// Writes every dirty page back to disk (clean shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        for d in self.dirs.iter() {
            d.flush()?;
        }
        Ok(())
    }

    /// Calls `f` with every entry's key and index times (the cache digest
    /// is built from these): no object is read, and each cache_dir's index
    /// is locked while its entries are visited, so `f` must be quick.
    pub fn for_each_entry(&self, mut f: impl FnMut(&Key, &Times)) {
        for d in self.dirs.iter() {
            d.for_each_entry(&mut f);
        }
    }

    /// Every key in the store.
    pub fn keys(&self) -> Vec<Key> {
        self.dirs.iter().flat_map(|d| d.keys()).collect()
    }
}

/// What `cuttle store verify` found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// What reading the slot header table found (torn, orphaned, ...).
    pub rebuild: RebuildReport,
    /// Entries whose every slot checksum, link and length verified.
    pub good: u64,
    /// Entries that failed.
    pub bad: u64,
    /// Bytes of the good entries.
    pub bytes: u64,
}

impl VerifyReport {
    /// True when nothing at all was wrong.
    pub fn is_clean(&self) -> bool {
        let r = &self.rebuild;
        self.bad == 0 && r.torn == 0 && r.orphaned == 0 && r.bad_chains == 0 && r.duplicates == 0
    }
}

/// One entry, as `cuttle store ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: Key,
    pub url: String,
    pub body_len: u64,
    pub times: Times,
}

impl Store {
    /// Opens the cache_dir at `path` as it is, read-only (shared lock): for
    /// inspection while no cuttle runs on it.
    pub fn open_existing(path: &Path) -> Result<(Store, RebuildReport), StoreError> {
        Store::open(
            &[DirSpec {
                path: path.to_path_buf(),
                capacity: None,
                slot_size: None,
                min_size: 0,
                max_size: None,
                read_only: true,
            }],
            StoreOptions::default(),
        )
    }

    /// Reads every entry through and checks every checksum. `progress` is
    /// called with (entries done, entries in all).
    pub fn verify(
        &self,
        rebuild: RebuildReport,
        progress: &mut dyn FnMut(u64, u64),
    ) -> VerifyReport {
        let keys = self.keys();
        let total = keys.len() as u64;
        let mut report = VerifyReport {
            rebuild,
            ..VerifyReport::default()
        };
        for (done, key) in keys.iter().enumerate() {
            match self.lookup(key) {
                Some(hit) => {
                    report.good += 1;
                    report.bytes +=
                        hit.url.len() as u64 + hit.header_block.len() as u64 + hit.body_len;
                }
                // The lookup logged it.
                None => report.bad += 1,
            }
            progress(done as u64 + 1, total);
        }
        report
    }

    /// Every entry, sorted by URL, read from its first slot only (verified;
    /// a bad one is left out and counted in `counters().bad`). Use
    /// [`Store::verify`] to check whole entries.
    pub fn list(&self) -> Vec<Listed> {
        let mut out: Vec<Listed> = self
            .dirs
            .iter()
            .flat_map(|d| {
                d.keys()
                    .into_iter()
                    .filter_map(|k| d.head(&k).map(|h| (k, h)))
            })
            .map(|(key, (url, body_len, times))| Listed {
                key,
                url,
                body_len,
                times,
            })
            .collect();
        out.sort_by(|a, b| a.url.cmp(&b.url));
        out
    }
}

/// Streams one entry into the store; see [`Store::writer`]. It holds the
/// store's cache_dirs, so it can live in a task of its own.
pub struct Writer {
    inner: DirWriter,
    dirs: Arc<[Dir]>,
    chosen: usize,
}

impl Writer {
    /// Appends body bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.inner.write(data)
    }

    pub fn written(&self) -> u64 {
        self.inner.written()
    }

    /// The key the entry is stored under.
    pub fn key(&self) -> Key {
        self.inner.key()
    }

    /// Makes the entry visible, replacing any older one for the key (in any
    /// cache_dir).
    pub fn commit(self) -> Result<(), StoreError> {
        let key = self.inner.key();
        self.inner.commit()?;
        // An older copy in another dir (the object changed size) goes. Not
        // written through: after a crash the newer generation wins anyway.
        for (i, d) in self.dirs.iter().enumerate() {
            if i != self.chosen {
                d.discard(&key);
            }
        }
        Ok(())
    }
}

/// A key committed in one cache_dir while an older copy lived in another
/// is in both when a crash came between the commit and the removal of the
/// old copy: keep the newest (highest generation), drop the rest. Returns
/// how many were dropped.
fn settle_duplicates(dirs: &[Dir]) -> u64 {
    let mut dropped = 0;
    for (i, dir) in dirs.iter().enumerate() {
        for key in dir.keys() {
            for other in &dirs[i + 1..] {
                let (Some(mine), Some(theirs)) =
                    (dir.generation_of(&key), other.generation_of(&key))
                else {
                    continue;
                };
                let loser = if mine > theirs { other } else { dir };
                if loser.discard(&key) {
                    dropped += 1;
                }
            }
        }
    }
    dropped
}

/// Whether `config` caches in memory only: it has no cache_dir line and
/// some cache_mem.
pub fn memory_only(config: &config::Config) -> bool {
    config.cache_dirs.is_empty() && config.cache_mem.value > 0
}

/// The store's view of the config's `cache_dir` lines: every Squid type is
/// kept in cuttle's own format; `max-size`/`min-size`/`slot-size` apply.
pub fn specs_from_config(config: &config::Config) -> Vec<DirSpec> {
    config
        .cache_dirs
        .iter()
        .filter(|d| !matches!(d.store_type, config::CacheDirType::Other(_)) && !d.no_store)
        .map(|d| DirSpec {
            path: PathBuf::from(&d.path),
            capacity: Some(d.size_mb.saturating_mul(1 << 20)),
            slot_size: d.slot_size.and_then(|s| u32::try_from(s).ok()),
            min_size: d.min_size.unwrap_or(0),
            max_size: d.max_size,
            read_only: false,
        })
        .collect()
}
