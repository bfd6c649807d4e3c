//! One cache_dir: opening (create, lock, allocate, check the superblock),
//! the index rebuild from the slot header table, streaming writers that
//! reserve slots as data arrives and commit by writing the first slot's
//! header last, verified zero-copy lookups under a lease, purge, and
//! eviction. It keeps the slot ownership protocol that `map.rs` relies on:
//! slots are written only while reserved by one writer, and read only while
//! a lease pins the committed entry they belong to. Opening and the rebuild
//! live in `dir/open.rs`, the writer in `dir/writer.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use super::changes::ChangeFeed;
use super::index::{EntryId, Index, Record};
use super::layout::{self, Geometry, SlotHeader, Superblock, Times, ENTRY_PREFIX_LEN, NO_SLOT};
use super::map::Region;
use super::policy::{new_policy, Policy};
use super::slots::FreeSlots;
use super::{Counters, Hit, RebuildReport, StoreError, Summary};
use crate::config::ReplacementPolicy;

mod open;
mod writer;

use open::{creation_id, open_data_file, rebuild};
pub use writer::DirWriter;

/// The data file's name inside a cache_dir.
pub const DATA_FILE: &str = "cuttle.store";
/// What a memory store (no cache_dir) calls its path in reports.
pub const MEMORY_PATH: &str = "(memory)";
/// Slot size when the config gives none (rock's default).
pub const DEFAULT_SLOT_SIZE: u32 = 16 * 1024;

/// What to open: a directory and, when creating or checking against a
/// config, the geometry it should have.
#[derive(Debug, Clone)]
pub struct DirSpec {
    pub path: PathBuf,
    /// Bytes of slots wanted; `None` opens an existing store as it is.
    pub capacity: Option<u64>,
    pub slot_size: Option<u32>,
    /// Objects outside `min_size..=max_size` bytes are not stored here.
    pub min_size: u64,
    pub max_size: Option<u64>,
    /// Open without changing anything (shared lock, read-only map): for
    /// `cuttle store verify` and `ls`. Bad entries are reported, not dropped.
    pub read_only: bool,
}

/// What the cache_dirs of one store share.
#[derive(Default)]
pub(crate) struct StoreShared {
    pub counters: Arc<Counters>,
    /// Keys committed or removed, for HTCP MON subscribers.
    pub changes: Arc<ChangeFeed>,
    /// The next generation to hand out: above every generation on disk in
    /// any of the dirs, so commits are ordered across dirs too.
    pub next_generation: Arc<AtomicU64>,
}

impl DirSpec {
    /// A writable cache_dir of `capacity` bytes of `slot_size`-byte slots
    /// taking objects of any size.
    pub fn new(path: impl Into<PathBuf>, capacity: u64, slot_size: u32) -> DirSpec {
        DirSpec {
            path: path.into(),
            capacity: Some(capacity),
            slot_size: Some(slot_size),
            min_size: 0,
            max_size: None,
            read_only: false,
        }
    }
}

pub(crate) struct Dir {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    file: PathBuf,
    region: Arc<Region>,
    geometry: Geometry,
    min_size: u64,
    max_size: u64,
    state: Mutex<State>,
    /// Shared by every cache_dir of a store, so generations order commits
    /// across dirs too.
    next_generation: Arc<AtomicU64>,
    counters: Arc<Counters>,
    changes: Arc<ChangeFeed>,
}

struct State {
    index: Index,
    free: FreeSlots,
    policy: Box<dyn Policy>,
    /// Bytes of the indexed entries (prefix, URL, header block, body):
    /// what mgr:info's Mean Object Size divides.
    bytes: u64,
}

impl Dir {
    /// Opens (creating when needed) the cache_dir of `spec`, locks it, and
    /// rebuilds its index.
    pub fn open(
        spec: &DirSpec,
        policy: ReplacementPolicy,
        shared_with: &StoreShared,
    ) -> Result<(Dir, RebuildReport), StoreError> {
        let (file, file_path, geometry, fresh) = open_data_file(spec)?;
        let len = geometry.file_len();
        let region = Region::map_file(file, len, !spec.read_only)
            .map_err(|e| StoreError::io(&file_path, "map", e))?;
        Self::from_region(
            spec,
            region,
            geometry,
            fresh,
            policy,
            shared_with,
            file_path,
        )
    }

    /// A store of `capacity` bytes of `slot_size`-byte slots in memory of
    /// this process (no file): for a config without cache_dir. Same slot
    /// format, so everything above works unchanged; nothing survives exit.
    /// Objects over `max_object` bytes are not kept.
    pub fn open_memory(
        capacity: u64,
        slot_size: u32,
        max_object: u64,
        policy: ReplacementPolicy,
        shared_with: &StoreShared,
    ) -> Result<Dir, StoreError> {
        let spec = DirSpec {
            max_size: Some(max_object),
            ..DirSpec::new(MEMORY_PATH, capacity, slot_size)
        };
        let geometry = Geometry::for_capacity(capacity, slot_size);
        let region = Region::anonymous(geometry.file_len())
            .map_err(|e| StoreError::io(&spec.path, "allocate memory for", e))?;
        let path = spec.path.clone();
        let (dir, _) = Self::from_region(&spec, region, geometry, true, policy, shared_with, path)?;
        Ok(dir)
    }

    fn from_region(
        spec: &DirSpec,
        region: Region,
        geometry: Geometry,
        fresh: bool,
        policy: ReplacementPolicy,
        shared_with: &StoreShared,
        file: PathBuf,
    ) -> Result<(Dir, RebuildReport), StoreError> {
        if fresh {
            let sb = Superblock {
                geometry,
                creation_id: creation_id(),
            };
            region.write(0, &sb.encode());
            region
                .flush_range(0, layout::SUPERBLOCK_LEN as usize)
                .map_err(|e| StoreError::io(&file, "write the superblock of", e))?;
        }
        let (state, report, max_generation) = rebuild(&region, geometry, new_policy(policy));
        let capacity = u64::from(geometry.slot_count) * u64::from(geometry.slot_size);
        let shared = Shared {
            dir: spec.path.clone(),
            file,
            region: Arc::new(region),
            geometry,
            min_size: spec.min_size,
            // An object may take at most half the dir, so one object cannot
            // flush everything else out.
            max_size: spec.max_size.unwrap_or(u64::MAX).min(capacity / 2),
            state: Mutex::new(state),
            next_generation: Arc::clone(&shared_with.next_generation),
            counters: Arc::clone(&shared_with.counters),
            changes: Arc::clone(&shared_with.changes),
        };
        shared
            .next_generation
            .fetch_max(max_generation + 1, Ordering::Relaxed);
        Ok((
            Dir {
                shared: Arc::new(shared),
            },
            report,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    pub fn file(&self) -> &Path {
        &self.shared.file
    }

    pub fn geometry(&self) -> Geometry {
        self.shared.geometry
    }

    /// Whether an object of `size` bytes (the whole entry) belongs here.
    pub fn accepts(&self, size: u64) -> bool {
        size >= self.shared.min_size && size <= self.shared.max_size
    }

    pub fn max_size(&self) -> u64 {
        self.shared.max_size
    }

    /// (entries, free slots, slot count, bytes held by the index, bytes
    /// of the entries)
    pub fn usage(&self) -> (usize, u32, u32, usize, u64) {
        let st = self.shared.lock();
        (
            st.index.len(),
            st.free.free_count(),
            self.shared.geometry.slot_count,
            st.index.heap_bytes() + st.free.heap_bytes() + st.policy.heap_bytes(),
            st.bytes,
        )
    }

    /// The index's view of `key`, without touching the map.
    pub fn peek(&self, key: &[u8; 16]) -> Option<Summary> {
        let st = self.shared.lock();
        let r = self.shared.record(&st, st.index.get(key)?);
        Some(Summary {
            times: r.times,
            generation: r.generation_lo,
        })
    }

    /// Calls `f` with each entry's key and times, under the index lock
    /// (the index only, no slot is read): keep `f` short.
    pub fn for_each_entry(&self, f: &mut dyn FnMut(&[u8; 16], &Times)) {
        let st = self.shared.lock();
        for (_, e) in st.index.iter() {
            f(&e.key, &e.times);
        }
    }

    /// Every key in the index.
    pub fn keys(&self) -> Vec<[u8; 16]> {
        let st = self.shared.lock();
        st.index.iter().map(|(_, e)| e.key).collect()
    }

    /// The verified entry for `key`. A checksum or chain failure is a miss:
    /// counted, and the entry is dropped.
    pub fn lookup(&self, key: &[u8; 16]) -> Option<Hit> {
        let shared = &self.shared;
        let record = {
            let mut st = shared.lock();
            let id = st.index.get(key)?;
            let record = shared.record(&st, id);
            st.index.pin(record.first_slot);
            st.policy.touch(id);
            record
        };
        let lease = Arc::new(Lease {
            shared: Arc::clone(shared),
            record,
        });
        match shared.verified_chain(&record) {
            Ok((chain, total)) => shared.build_hit(&record, &chain, total, lease),
            Err(Damage::Gone) => {
                shared.counters.raced.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(Damage::Corrupt) => {
                shared.counters.bad.fetch_add(1, Ordering::Relaxed);
                drop(lease);
                if shared.region.is_writable() {
                    tracing::warn!(file = %shared.file.display(), key = %hex_key(key), "cached entry failed verification; dropped");
                    shared.remove_if_same(key, record.generation_lo, false);
                } else {
                    tracing::warn!(file = %shared.file.display(), key = %hex_key(key), "entry failed verification");
                }
                None
            }
        }
    }

    /// The full generation of `key`'s entry, read from its commit record.
    pub fn generation_of(&self, key: &[u8; 16]) -> Option<u64> {
        let st = self.shared.lock();
        let id = st.index.get(key)?;
        let off = self
            .shared
            .geometry
            .header_offset(st.index.entry(id).first_slot);
        Some(self.shared.region.load_generation(off))
    }

    /// Removes `key` without writing through to disk (the copy is
    /// superseded by a newer commit, which wins after any crash anyway).
    pub fn discard(&self, key: &[u8; 16]) -> bool {
        self.shared.remove(key, false).is_some()
    }

    /// `key`'s URL, body length and times, reading and verifying only its
    /// first slot (a listing need not read every object). A bad first slot
    /// is counted like a failed lookup.
    pub fn head(&self, key: &[u8; 16]) -> Option<(String, u64, Times)> {
        let shared = &self.shared;
        let record = {
            let mut st = shared.lock();
            let record = shared.record(&st, st.index.get(key)?);
            st.index.pin(record.first_slot);
            record
        };
        let lease = Lease {
            shared: Arc::clone(shared),
            record,
        };
        let head = match shared.head(&record) {
            Ok(Some((url, body_len))) => Some((url, body_len, record.times)),
            Ok(None) => {
                drop(lease);
                let hit = self.lookup(key)?;
                return Some((
                    String::from_utf8_lossy(&hit.url).into_owned(),
                    hit.body_len,
                    hit.times,
                ));
            }
            Err(Damage::Gone) => None,
            Err(Damage::Corrupt) => {
                shared.counters.bad.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        drop(lease);
        head
    }

    /// Removes `key`. The slot header table is written through to the disk
    /// before this returns (even when the key was not here: an evicted copy
    /// whose removal is not on disk yet must not come back after a power
    /// cut either), so a purge survives a crash or power cut.
    pub fn purge(&self, key: &[u8; 16]) -> bool {
        let removed = self.shared.remove(key, false).is_some();
        let g = &self.shared.geometry;
        let table = g.data_offset() - g.table_offset();
        if let Err(e) = self
            .shared
            .region
            .flush_range(g.table_offset(), table as usize)
        {
            tracing::error!(file = %self.shared.file.display(), error = %e, "cannot write a purge to disk");
        }
        removed
    }

    /// Starts writing an entry. `expected_len` (the whole entry's bytes when
    /// known from Content-Length) lets an oversized object be refused
    /// before anything is written.
    pub fn writer(
        &self,
        key: [u8; 16],
        times: Times,
        url: &[u8],
        header_block: &[u8],
        expected_body_len: Option<u64>,
        max_object: u64,
    ) -> Result<DirWriter, StoreError> {
        let shared = &self.shared;
        let limit = shared.max_size.min(max_object);
        let url_len = u32::try_from(url.len()).map_err(|_| StoreError::TooLarge {
            size: url.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        let header_len = u32::try_from(header_block.len()).map_err(|_| StoreError::TooLarge {
            size: header_block.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        let head_len = (ENTRY_PREFIX_LEN + url.len() + header_block.len()) as u64;
        if let Some(body) = expected_body_len {
            let size = head_len.saturating_add(body);
            if size > limit {
                shared.counters.too_large.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::TooLarge { size, limit });
            }
        }
        // The head (prefix, URL, header block) goes into consecutive slots
        // when it can, so the header block is one zero-copy view.
        let slot_size = u64::from(shared.geometry.slot_size);
        let head_slots = head_len.div_ceil(slot_size) as u32;
        let run = {
            let mut st = shared.lock();
            let mut run = st.free.take_run(head_slots);
            if run.is_none() && shared.make_room(&mut st, head_slots) {
                run = st.free.take_run(head_slots);
            }
            run
        };
        let mut writer = DirWriter {
            shared: Arc::clone(shared),
            key,
            times,
            generation: shared.next_generation.fetch_add(1, Ordering::Relaxed),
            slots: Vec::new(),
            reserved: run
                .map(|s| (s..s + head_slots).rev().collect())
                .unwrap_or_default(),
            fill: 0,
            crc: layout::payload_hasher(),
            first: (0, 0),
            total: 0,
            limit,
            failed: false,
        };
        writer.write(&layout::encode_entry_prefix(url_len, header_len))?;
        writer.write(url)?;
        writer.write(header_block)?;
        Ok(writer)
    }

    /// Writes every dirty page of the data file back to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared
            .region
            .flush()
            .map_err(|e| StoreError::io(&self.shared.file, "flush", e))
    }

    #[cfg(test)]
    pub(crate) fn region(&self) -> &Region {
        &self.shared.region
    }

    #[cfg(test)]
    pub(crate) fn open_region(
        spec: &DirSpec,
        region: Region,
        geometry: Geometry,
        fresh: bool,
    ) -> (Dir, RebuildReport) {
        Self::from_region(
            spec,
            region,
            geometry,
            fresh,
            ReplacementPolicy::Lru,
            &StoreShared::default(),
            spec.path.join(DATA_FILE),
        )
        .expect("heap regions do not fail")
    }
}

/// Why a chain did not verify.
enum Damage {
    /// The entry was purged or replaced while we looked: a plain miss.
    Gone,
    /// A checksum, key or length does not match: the entry is bad.
    Corrupt,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the index consistent enough
        // to keep serving (every mutation is a few field writes).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn header(&self, slot: u32) -> Option<SlotHeader> {
        SlotHeader::decode(&self.region.read_header(self.geometry.header_offset(slot)))
    }

    /// Walks and verifies the chain of a pinned entry: every header's
    /// checksum, generation, key, links and lengths, and every payload's CRC.
    /// Returns (slot, payload length) per slot, and the entry's length.
    fn verified_chain(&self, record: &Record) -> Result<(Vec<(u32, u32)>, u64), Damage> {
        let g = &self.geometry;
        let mut chain = Vec::new();
        let mut slot = record.first_slot;
        let mut sum = 0u64;
        let mut total = 0u64;
        while slot != NO_SLOT {
            if chain.len() >= g.slot_count as usize {
                return Err(Damage::Corrupt);
            }
            let h = self.verified_slot(slot, record, chain.is_empty())?;
            if chain.is_empty() {
                total = h.total_len;
            }
            sum += u64::from(h.payload_len);
            chain.push((slot, h.payload_len));
            slot = h.next;
        }
        if sum != total {
            return Err(Damage::Corrupt);
        }
        Ok((chain, total))
    }

    /// Verifies one slot of a pinned entry: its header (checksum,
    /// generation, key, position, length) and its payload's CRC.
    fn verified_slot(&self, slot: u32, record: &Record, first: bool) -> Result<SlotHeader, Damage> {
        let g = &self.geometry;
        if slot >= g.slot_count {
            return Err(Damage::Corrupt);
        }
        let raw = self.region.read_header(g.header_offset(slot));
        let generation = u64::from_le_bytes(raw[..8].try_into().map_err(|_| Damage::Corrupt)?);
        if first && generation as u32 != record.generation_lo {
            // The first slot's generation is cleared (or reused) only by a
            // purge or replacement that raced with this lookup.
            return Err(Damage::Gone);
        }
        let h = SlotHeader::decode(&raw).ok_or(Damage::Corrupt)?;
        if h.generation as u32 != record.generation_lo
            || h.key != record.key
            || h.is_first() != first
            || h.payload_len == 0
            || h.payload_len > g.slot_size
        {
            return Err(Damage::Corrupt);
        }
        let payload = self
            .region
            .read(g.payload_offset(slot), h.payload_len as usize);
        if layout::payload_crc(payload) != h.payload_crc {
            return Err(Damage::Corrupt);
        }
        Ok(h)
    }

    /// The URL, body length and times of a pinned entry, from its first
    /// slot alone (verified); `None` when the URL runs past that slot.
    fn head(&self, record: &Record) -> Result<Option<(String, u64)>, Damage> {
        let h = self.verified_slot(record.first_slot, record, true)?;
        let payload = self.region.read(
            self.geometry.payload_offset(record.first_slot),
            h.payload_len as usize,
        );
        let (url_len, header_len) = layout::decode_entry_prefix(payload).ok_or(Damage::Corrupt)?;
        let url_end = ENTRY_PREFIX_LEN + url_len as usize;
        let Some(url) = payload.get(ENTRY_PREFIX_LEN..url_end) else {
            return Ok(None);
        };
        let body_len = h
            .total_len
            .checked_sub(url_end as u64 + u64::from(header_len))
            .ok_or(Damage::Corrupt)?;
        Ok(Some((String::from_utf8_lossy(url).into_owned(), body_len)))
    }

    fn build_hit(
        &self,
        record: &Record,
        chain: &[(u32, u32)],
        total: u64,
        lease: Arc<Lease>,
    ) -> Option<Hit> {
        // Runs of consecutive slots are contiguous in the map: one segment each.
        let mut segments: Vec<(u64, u64)> = Vec::new(); // (map offset, length)
        for &(slot, len) in chain {
            let off = self.geometry.payload_offset(slot);
            match segments.last_mut() {
                Some((start, seg_len)) if *start + *seg_len == off => *seg_len += u64::from(len),
                _ => segments.push((off, u64::from(len))),
            }
        }
        let first = segments.first()?;
        let prefix = self.region.read(first.0, ENTRY_PREFIX_LEN);
        let (url_len, header_len) = layout::decode_entry_prefix(prefix)?;
        let url_at = ENTRY_PREFIX_LEN as u64;
        let header_at = url_at + u64::from(url_len);
        let body_at = header_at + u64::from(header_len);
        if body_at > total {
            self.counters.bad.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let views = |from: u64, to: u64| -> Vec<Bytes> {
            let mut out = Vec::new();
            let mut logical = 0u64;
            for &(off, len) in &segments {
                let (lo, hi) = (from.max(logical), to.min(logical + len));
                if lo < hi {
                    out.push(self.region.view(
                        Arc::clone(&lease),
                        off + (lo - logical),
                        (hi - lo) as usize,
                    ));
                }
                logical += len;
            }
            out
        };
        let one = |parts: Vec<Bytes>| -> Bytes {
            if parts.len() <= 1 {
                return parts.into_iter().next().unwrap_or_default();
            }
            // Spans non-adjacent slots: the one case that copies.
            self.counters.copied_heads.fetch_add(1, Ordering::Relaxed);
            let mut joined = BytesMut::new();
            for p in parts {
                joined.extend_from_slice(&p);
            }
            joined.freeze()
        };
        Some(Hit {
            key: record.key,
            generation: record.generation_lo,
            times: record.times,
            url: one(views(url_at, header_at)),
            header_block: one(views(header_at, body_at)),
            body_len: total - body_at,
            body: views(body_at, total),
        })
    }

    /// Unlinks `key` from the index and clears its commit record on disk.
    /// Returns its first slot. `evicted` picks the policy's bookkeeping.
    fn remove(&self, key: &[u8; 16], evicted: bool) -> Option<u32> {
        let mut st = self.lock();
        let id = st.index.get(key)?;
        Some(self.remove_id(&mut st, id, evicted))
    }

    /// Removes `key` only if it is still the entry of this generation.
    fn remove_if_same(&self, key: &[u8; 16], generation_lo: u32, evicted: bool) {
        let mut st = self.lock();
        if let Some(id) = st.index.get(key) {
            if self.record(&st, id).generation_lo == generation_lo {
                self.remove_id(&mut st, id, evicted);
            }
        }
    }

    fn remove_id(&self, st: &mut State, id: EntryId, evicted: bool) -> u32 {
        let record = self.record(st, id);
        self.changes.note(&record.key);
        st.bytes = st.bytes.saturating_sub(self.entry_len(record.first_slot));
        if evicted {
            st.policy.evict(id);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        } else {
            st.policy.remove(id);
        }
        // Clear the commit record first, so a crash from here on cannot
        // bring the entry back.
        self.region
            .store_generation(self.geometry.header_offset(record.first_slot), 0);
        if st.index.unlink(id) {
            self.free_chain(st, &record);
        }
        record.first_slot
    }

    /// Returns an unlinked, unleased entry's slots to the free set,
    /// clearing each continuation header on the way: a valid header left
    /// on a free slot is an orphan to the next rebuild (a clean stop must
    /// leave none; only a crash between the first slot's clear and these
    /// can).
    fn free_chain(&self, st: &mut State, record: &Record) {
        let mut slot = record.first_slot;
        let mut steps = 0u32;
        // The first slot's generation was cleared; the rest still carry it.
        st.free.release(slot);
        let mut header = self.header_after_clear(slot);
        while let Some(h) = header {
            slot = h.next;
            steps += 1;
            if slot == NO_SLOT
                || slot >= self.geometry.slot_count
                || steps > self.geometry.slot_count
            {
                return;
            }
            match self.header(slot) {
                Some(next)
                    if next.generation as u32 == record.generation_lo
                        && next.key == record.key
                        && !next.is_first() =>
                {
                    self.region
                        .store_generation(self.geometry.header_offset(slot), 0);
                    st.free.release(slot);
                    header = Some(next);
                }
                // A damaged link: the rest of the chain stays unusable
                // until the next rebuild frees it.
                _ => return,
            }
        }
    }

    /// The entry length (`total_len`) in a committed first slot's header.
    /// Read raw: bytes 8..64 stay as committed until the slot is reused.
    fn entry_len(&self, first_slot: u32) -> u64 {
        let raw = self
            .region
            .read_header(self.geometry.header_offset(first_slot));
        raw[32..40].try_into().map(u64::from_le_bytes).unwrap_or(0)
    }

    /// The first slot's header as written at commit (its generation word has
    /// since been cleared, so the checksum no longer holds): only `next` is
    /// read, and only for slots we know were committed.
    fn header_after_clear(&self, slot: u32) -> Option<SlotHeader> {
        let raw = self.region.read_header(self.geometry.header_offset(slot));
        let next = u32::from_le_bytes(raw[24..28].try_into().ok()?);
        Some(SlotHeader {
            next,
            ..SlotHeader::default()
        })
    }

    /// Evicts until `needed` slots are free. False when it cannot (the
    /// store is smaller than asked, or everything left is leased).
    fn make_room(&self, st: &mut State, needed: u32) -> bool {
        let mut tries = st.index.len() + 1;
        while st.free.free_count() < needed && tries > 0 {
            tries -= 1;
            let Some(id) = st.policy.victim() else {
                return false;
            };
            self.remove_id(st, id, true);
        }
        st.free.free_count() >= needed
    }

    /// Takes one slot for a writer, evicting if needed.
    fn reserve(&self, after: Option<u32>) -> Option<u32> {
        let mut st = self.lock();
        if let Some(slot) = st.free.take_one(after) {
            return Some(slot);
        }
        if self.make_room(&mut st, 1) {
            st.free.take_one(after)
        } else {
            None
        }
    }

    fn unpin(&self, record: &Record) {
        let mut st = self.lock();
        if st.index.unpin(record.first_slot) {
            self.free_chain(&mut st, record);
        }
    }

    /// Entry `id` with its generation, read from its commit record (which
    /// holds it while the entry is indexed; the caller holds the lock).
    fn record(&self, st: &State, id: EntryId) -> Record {
        let entry = st.index.entry(id);
        let off = self.geometry.header_offset(entry.first_slot);
        Record::of(entry, self.region.load_generation(off))
    }
}

/// Pins an entry: its slots are not reused while any `Bytes` view lives.
/// Keeps the entry as leased, to free its slots if it is unlinked meanwhile.
struct Lease {
    shared: Arc<Shared>,
    record: Record,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.unpin(&self.record);
    }
}

pub(crate) fn hex_key(key: &[u8; 16]) -> String {
    key.iter().map(|b| format!("{b:02X}")).collect()
}
