//! The streaming writer of one cache_dir: reserves slots as data arrives and commits by writing the first slot's header last; dropped uncommitted, it gives its slots back.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;
use crate::store::index::Entry;
use crate::store::layout::{self, SlotHeader, Times, FLAG_FIRST, NO_SLOT};
use crate::store::StoreError;

/// Streams one entry into the store. Dropped without [`DirWriter::commit`],
/// it gives its slots back and nothing becomes visible.
pub struct DirWriter {
    pub(super) shared: Arc<Shared>,
    pub(super) key: [u8; 16],
    pub(super) times: Times,
    pub(super) generation: u64,
    /// The chain so far.
    pub(super) slots: Vec<u32>,
    /// Slots taken in advance (a run for the head), used from the back.
    pub(super) reserved: Vec<u32>,
    /// Bytes used in the last slot, and the CRC of those bytes.
    pub(super) fill: u32,
    pub(super) crc: crc32fast::Hasher,
    /// The first slot's (payload length, CRC), kept until the commit.
    pub(super) first: (u32, u32),
    pub(super) total: u64,
    /// The most bytes this entry may have.
    pub(super) limit: u64,
    pub(super) failed: bool,
}

impl DirWriter {
    /// Appends `data` to the entry.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Aborted);
        }
        let limit = self.limit;
        if self.total.saturating_add(data.len() as u64) > limit {
            self.failed = true;
            self.shared
                .counters
                .too_large
                .fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::TooLarge {
                size: self.total + data.len() as u64,
                limit,
            });
        }
        let g = self.shared.geometry;
        while !data.is_empty() {
            if self.slots.is_empty() || self.fill == g.slot_size {
                if let Err(e) = self.advance() {
                    self.failed = true;
                    return Err(e);
                }
            }
            let Some(&slot) = self.slots.last() else {
                return Err(StoreError::Aborted);
            };
            let n = (g.slot_size - self.fill).min(data.len() as u32) as usize;
            let (now, rest) = data.split_at(n);
            self.shared
                .region
                .write(g.payload_offset(slot) + u64::from(self.fill), now);
            self.crc.update(now);
            self.fill += n as u32;
            self.total += n as u64;
            data = rest;
        }
        Ok(())
    }

    pub fn key(&self) -> [u8; 16] {
        self.key
    }

    /// Bytes written so far (prefix, URL, header block and body).
    pub fn written(&self) -> u64 {
        self.total
    }

    /// Moves to a new slot, finishing the header of the full one before it.
    fn advance(&mut self) -> Result<(), StoreError> {
        let next = match self.reserved.pop() {
            Some(slot) => slot,
            None => self
                .shared
                .reserve(self.slots.last().copied())
                .ok_or_else(|| {
                    self.shared
                        .counters
                        .no_space
                        .fetch_add(1, Ordering::Relaxed);
                    StoreError::NoSpace
                })?,
        };
        // A reused slot may hold a stale header: mark it free until ours is done.
        self.shared
            .region
            .store_generation(self.shared.geometry.header_offset(next), 0);
        if let Some(&full) = self.slots.last() {
            self.finish_slot(full, next);
        }
        self.slots.push(next);
        Ok(())
    }

    /// Finishes the header of the last slot written, linking it to `next`.
    /// The first slot's header waits for the commit.
    fn finish_slot(&mut self, slot: u32, next: u32) {
        let crc = std::mem::replace(&mut self.crc, layout::payload_hasher()).finalize();
        if self.slots.len() == 1 {
            self.first = (self.fill, crc);
        } else {
            self.publish(slot, next, self.fill, crc, 0, 0, Times::default());
        }
        self.fill = 0;
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        slot: u32,
        next: u32,
        payload_len: u32,
        payload_crc: u32,
        flags: u32,
        total_len: u64,
        times: Times,
    ) {
        let header = SlotHeader {
            generation: self.generation,
            key: self.key,
            next,
            payload_len,
            total_len,
            times,
            flags,
            payload_crc,
        };
        let off = self.shared.geometry.header_offset(slot);
        self.shared.region.write_header_body(off, &header.encode());
        self.shared.region.store_generation(off, self.generation);
    }

    /// Makes the entry visible: the last slot's header, then the first
    /// slot's (the commit point), then the index, replacing any older
    /// entry for the key.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Aborted);
        }
        let Some(&first) = self.slots.first() else {
            return Err(StoreError::Aborted);
        };
        let last_crc = std::mem::replace(&mut self.crc, layout::payload_hasher()).finalize();
        let (first_len, first_crc) = if self.slots.len() == 1 {
            (self.fill, last_crc)
        } else {
            let last = self.slots[self.slots.len() - 1];
            self.publish(last, NO_SLOT, self.fill, last_crc, 0, 0, Times::default());
            self.first
        };
        let next = self.slots.get(1).copied().unwrap_or(NO_SLOT);

        // Under the lock, so memory and disk agree on which commit of a key
        // is the newest: the one with the highest generation.
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        if let Some(old) = st.index.get(&self.key) {
            let theirs = shared.record(&st, old).generation_lo;
            // Serial-number comparison of the low 32 bits.
            if theirs.wrapping_sub(self.generation as u32) as i32 > 0 {
                drop(st);
                shared.counters.superseded.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Superseded);
            }
        }
        self.publish(
            first, next, first_len, first_crc, FLAG_FIRST, self.total, self.times,
        );
        if let Some(old) = st.index.get(&self.key) {
            shared.remove_id(&mut st, old, false);
        }
        let id = st.index.insert(Entry {
            key: self.key,
            first_slot: first,
            times: self.times,
        });
        st.policy.insert(id, self.total);
        st.bytes += self.total;
        shared.changes.note(&self.key);
        // Slots now belong to the entry; give back any taken in advance.
        self.slots.clear();
        for slot in self.reserved.drain(..) {
            st.free.release(slot);
        }
        shared.counters.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if self.slots.is_empty() && self.reserved.is_empty() {
            return;
        }
        self.shared.counters.aborted.fetch_add(1, Ordering::Relaxed);
        let mut st = self.shared.lock();
        for &slot in self.slots.iter().chain(&self.reserved) {
            // Full slots already carry their header: clear it, or the next
            // rebuild finds an orphan. Ours to write until released.
            self.shared
                .region
                .store_generation(self.shared.geometry.header_offset(slot), 0);
            st.free.release(slot);
        }
    }
}
