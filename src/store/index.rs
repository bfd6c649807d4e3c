//! The in-memory index of one cache_dir: store key -> entry, kept compact
//! (a hash table of 4-byte ids over a slab of fixed-size records) because
//! there is one record per cached object. ICP and HTCP answers read only
//! this, never the map.

use hashbrown::HashTable;

use super::layout::Times;

pub(crate) type EntryId = u32;

/// One cached object, as the index knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub key: [u8; 16],
    pub first_slot: u32,
    /// Low 32 bits of the entry's generation (checked against its slots).
    pub generation_lo: u32,
    pub times: Times,
    /// Live leases; the top bit marks an entry that was removed from the
    /// table while leased (its slots are freed when the last lease ends).
    pins: u32,
}

const ZOMBIE: u32 = 1 << 31;

impl Record {
    pub fn new(key: [u8; 16], first_slot: u32, generation: u64, times: Times) -> Record {
        Record {
            key,
            first_slot,
            generation_lo: generation as u32,
            times,
            pins: 0,
        }
    }

    pub fn is_pinned(&self) -> bool {
        self.pins & !ZOMBIE != 0
    }
}

/// The key's hash: MD5 output is already uniform.
fn hash_of(key: &[u8; 16]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&key[..8]);
    u64::from_le_bytes(w)
}

#[derive(Default)]
pub(crate) struct Index {
    table: HashTable<EntryId>,
    slab: Vec<Record>,
    free_ids: Vec<EntryId>,
    live: usize,
}

impl Index {
    pub fn with_capacity(n: usize) -> Index {
        Index {
            table: HashTable::with_capacity(n),
            slab: Vec::with_capacity(n),
            free_ids: Vec::new(),
            live: 0,
        }
    }

    /// Entries findable by key.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn get(&self, key: &[u8; 16]) -> Option<EntryId> {
        let slab = &self.slab;
        self.table
            .find(hash_of(key), |&id| slab[id as usize].key == *key)
            .copied()
    }

    pub fn record(&self, id: EntryId) -> &Record {
        &self.slab[id as usize]
    }

    /// Adds `record`; the caller has removed any entry with the same key.
    pub fn insert(&mut self, record: Record) -> EntryId {
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.slab[id as usize] = record;
                id
            }
            None => {
                self.slab.push(record);
                (self.slab.len() - 1) as EntryId
            }
        };
        let slab = &self.slab;
        self.table.insert_unique(hash_of(&record.key), id, |&i| {
            hash_of(&slab[i as usize].key)
        });
        self.live += 1;
        id
    }

    /// Takes the entry out of the table so no lookup finds it. Returns true
    /// when it is unpinned and the caller must free its slots and `release`
    /// the id now; otherwise it lingers until its last lease ends.
    pub fn unlink(&mut self, id: EntryId) -> bool {
        let key = self.slab[id as usize].key;
        if let Ok(entry) = self.table.find_entry(hash_of(&key), |&i| i == id) {
            entry.remove();
            self.live -= 1;
        }
        let record = &mut self.slab[id as usize];
        if record.is_pinned() {
            record.pins |= ZOMBIE;
            false
        } else {
            true
        }
    }

    /// Returns the id to the slab (after its slots were freed).
    pub fn release(&mut self, id: EntryId) {
        self.free_ids.push(id);
    }

    pub fn pin(&mut self, id: EntryId) {
        self.slab[id as usize].pins += 1;
    }

    /// Drops one lease. Returns true when the entry was unlinked while
    /// leased and this was the last lease: the caller frees its slots now.
    pub fn unpin(&mut self, id: EntryId) -> bool {
        let record = &mut self.slab[id as usize];
        record.pins -= 1;
        if record.pins == ZOMBIE {
            record.pins = 0;
            true
        } else {
            false
        }
    }

    /// Every entry findable by key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (EntryId, &Record)> + '_ {
        self.table
            .iter()
            .map(move |&id| (id, &self.slab[id as usize]))
    }

    /// Heap bytes held, for the memory-per-entry figure.
    pub fn heap_bytes(&self) -> usize {
        // hashbrown keeps buckets at a power of two, at most 7/8 full, each
        // with one control byte.
        let buckets = (self.table.capacity() * 8 / 7).next_power_of_two();
        buckets * (std::mem::size_of::<EntryId>() + 1)
            + self.slab.capacity() * std::mem::size_of::<Record>()
            + self.free_ids.capacity() * std::mem::size_of::<EntryId>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[0] = n;
        k[15] = n;
        k
    }

    #[test]
    fn insert_find_unlink_release() {
        let mut ix = Index::default();
        let a = ix.insert(Record::new(key(1), 0, 1, Times::default()));
        let b = ix.insert(Record::new(key(2), 1, 2, Times::default()));
        assert_eq!(ix.get(&key(1)), Some(a));
        assert_eq!(ix.get(&key(2)), Some(b));
        assert_eq!(ix.len(), 2);
        assert!(ix.unlink(a));
        ix.release(a);
        assert_eq!(ix.get(&key(1)), None);
        let c = ix.insert(Record::new(key(3), 2, 3, Times::default()));
        assert_eq!(c, a, "slab ids are reused");
        assert_eq!(ix.record(c).first_slot, 2);
    }

    #[test]
    fn pinned_entries_linger_until_the_last_lease() {
        let mut ix = Index::default();
        let a = ix.insert(Record::new(key(1), 0, 1, Times::default()));
        ix.pin(a);
        ix.pin(a);
        assert!(!ix.unlink(a), "still leased");
        assert_eq!(ix.get(&key(1)), None, "but no longer findable");
        assert!(!ix.unpin(a));
        assert!(ix.unpin(a), "last lease frees it");
        let b = ix.insert(Record::new(key(2), 0, 1, Times::default()));
        ix.pin(b);
        assert!(!ix.unpin(b), "an entry still in the table is not freed");
    }

    #[test]
    fn record_is_compact() {
        assert!(
            std::mem::size_of::<Record>() <= 48,
            "{}",
            std::mem::size_of::<Record>()
        );
    }
}
