//! The in-memory index of one cache_dir: store key -> entry, kept compact
//! because there is one entry per cached object: 32-byte entries in a slab,
//! found through a Robin Hood table of 6-byte buckets sized by load factor
//! (not by powers of two), and the few leased entries in a side map. ICP
//! and HTCP answers read only this and the entry's commit word, never an
//! object.

use hashbrown::HashMap;

use super::layout::{Times, NO_SLOT};

pub(crate) type EntryId = u32;

/// What the index keeps per entry (32 bytes). The generation is not kept:
/// the first slot's commit word in the map holds it for exactly as long as
/// the entry is indexed (committed before the insert, cleared before the
/// unlink, both under the index lock), so it is read from there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub key: [u8; 16],
    /// `NO_SLOT` marks a free slab place.
    pub first_slot: u32,
    pub times: Times,
}

/// An entry with the low 32 bits of its generation, as lookups, leases and
/// removals use it (the generation read under the index lock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub key: [u8; 16],
    pub first_slot: u32,
    /// Low 32 bits of the entry's generation (checked against its slots).
    pub generation_lo: u32,
    pub times: Times,
}

impl Record {
    pub fn of(entry: &Entry, generation: u64) -> Record {
        Record {
            key: entry.key,
            first_slot: entry.first_slot,
            generation_lo: generation as u32,
            times: entry.times,
        }
    }
}

/// A lease count's top bit: the entry was unlinked while leased (its slots
/// are freed when the last lease ends).
const ZOMBIE: u32 = 1 << 31;

/// One table bucket: 6 bytes, aligned to 2. `meta` is 0 when empty, else
/// (distance from the home bucket + 1) << 8 | an 8-bit tag of the hash, so
/// a probe compares a slab key only when the tag matches.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    meta: u16,
    id: [u16; 2],
}

/// A distance past this makes the table grow (with a seeded hash of MD5
/// keys it does not happen before the load factor does).
const MAX_DISTANCE: u16 = 254;

impl Bucket {
    fn new(tag: u8, distance: u16, id: EntryId) -> Bucket {
        Bucket {
            meta: ((distance + 1) << 8) | u16::from(tag),
            id: [id as u16, (id >> 16) as u16],
        }
    }
    fn is_empty(self) -> bool {
        self.meta == 0
    }
    fn distance(self) -> u16 {
        (self.meta >> 8) - 1
    }
    fn tag(self) -> u8 {
        self.meta as u8
    }
    fn id(self) -> EntryId {
        u32::from(self.id[0]) | (u32::from(self.id[1]) << 16)
    }
    fn with_distance(self, distance: u16) -> Bucket {
        Bucket::new(self.tag(), distance, self.id())
    }
}

/// Load factors (in percent): a rebuild sizes the table for its entries at
/// `SIZED`; an insert past `MAX` grows it to `GROWN`, so growth is by about
/// 30% (amortised O(1) inserts) and memory tracks the entries.
const LOAD_SIZED: usize = 85;
const LOAD_GROWN: usize = 70;
const LOAD_MAX: usize = 92;

fn buckets_for(entries: usize, load_percent: usize) -> usize {
    (entries * 100 / load_percent).max(16)
}

pub(crate) struct Index {
    buckets: Vec<Bucket>,
    slab: Vec<Entry>,
    free_ids: Vec<EntryId>,
    live: usize,
    /// Per index, so no one can choose URLs whose keys pile into one run.
    seed: u64,
    /// Live lease counts by first slot (a first slot names one entry, live
    /// or unlinked, until its slots are freed).
    leases: HashMap<u32, u32>,
}

impl Default for Index {
    fn default() -> Index {
        Index::with_capacity(0)
    }
}

impl Index {
    pub fn with_capacity(n: usize) -> Index {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Index {
            buckets: vec![Bucket::default(); buckets_for(n, LOAD_SIZED)],
            slab: Vec::with_capacity(n),
            free_ids: Vec::new(),
            live: 0,
            seed,
            leases: HashMap::new(),
        }
    }

    /// Entries findable by key.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The key's hash: both halves of the MD5, seeded, mixed (splitmix64's
    /// finaliser), so keys that are not MD5s spread too.
    fn hash(&self, key: &[u8; 16]) -> u64 {
        let half = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&key[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut z = half(0) ^ half(8).rotate_left(32) ^ self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The hash's home bucket (its high bits scaled to the table) and tag.
    fn home(&self, hash: u64) -> (usize, u8) {
        let home = ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize;
        (home, hash as u8)
    }

    fn next(&self, pos: usize) -> usize {
        if pos + 1 == self.buckets.len() {
            0
        } else {
            pos + 1
        }
    }

    pub fn get(&self, key: &[u8; 16]) -> Option<EntryId> {
        let (mut pos, tag) = self.home(self.hash(key));
        for distance in 0..=MAX_DISTANCE {
            let b = self.buckets[pos];
            // Robin Hood order: past a bucket nearer its home than we are
            // to ours, the key cannot be.
            if b.is_empty() || b.distance() < distance {
                return None;
            }
            if b.tag() == tag && self.slab[b.id() as usize].key == *key {
                return Some(b.id());
            }
            pos = self.next(pos);
        }
        None
    }

    pub fn entry(&self, id: EntryId) -> &Entry {
        &self.slab[id as usize]
    }

    /// Adds `entry`; the caller has removed any entry with the same key.
    pub fn insert(&mut self, entry: Entry) -> EntryId {
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.slab[id as usize] = entry;
                id
            }
            None => {
                if self.slab.len() == self.slab.capacity() {
                    // By a quarter, not doubling: the slab is most of the
                    // index's memory.
                    self.slab.reserve_exact((self.slab.len() / 4).max(64));
                }
                self.slab.push(entry);
                (self.slab.len() - 1) as EntryId
            }
        };
        self.live += 1;
        if self.live * 100 > self.buckets.len() * LOAD_MAX || !self.place(id) {
            self.resize(buckets_for(self.live, LOAD_GROWN));
        }
        id
    }

    /// Puts `id` in the table, Robin Hood style. False when a distance
    /// would pass `MAX_DISTANCE` (the table then holds every entry but one,
    /// and the caller rebuilds it from the slab).
    fn place(&mut self, id: EntryId) -> bool {
        let (mut pos, tag) = self.home(self.hash(&self.slab[id as usize].key));
        let mut carried = Bucket::new(tag, 0, id);
        let mut distance = 0u16;
        loop {
            let b = self.buckets[pos];
            if b.is_empty() {
                self.buckets[pos] = carried.with_distance(distance);
                return true;
            }
            if b.distance() < distance {
                self.buckets[pos] = carried.with_distance(distance);
                distance = b.distance();
                carried = b;
            }
            if distance == MAX_DISTANCE {
                return false;
            }
            distance += 1;
            pos = self.next(pos);
        }
    }

    /// Rebuilds the table at `len` buckets (or more, until every distance
    /// fits) from the slab's live entries, in slab order.
    fn resize(&mut self, mut len: usize) {
        'sizes: loop {
            self.buckets.clear();
            self.buckets.shrink_to(0);
            self.buckets.resize(len, Bucket::default());
            for id in 0..self.slab.len() as EntryId {
                if self.slab[id as usize].first_slot != NO_SLOT && !self.place(id) {
                    len += len / 4;
                    continue 'sizes;
                }
            }
            return;
        }
    }

    /// Takes the entry out of the table so no lookup finds it, and frees its
    /// id. Returns true when it is unleased and the caller must free its
    /// slots now; otherwise they are freed when its last lease ends.
    pub fn unlink(&mut self, id: EntryId) -> bool {
        let entry = self.slab[id as usize];
        let (mut pos, _) = self.home(self.hash(&entry.key));
        for _ in 0..=MAX_DISTANCE {
            let b = self.buckets[pos];
            if b.is_empty() {
                break;
            }
            if b.id() == id {
                self.shift_back(pos);
                self.live -= 1;
                self.slab[id as usize].first_slot = NO_SLOT;
                self.free_ids.push(id);
                break;
            }
            pos = self.next(pos);
        }
        match self.leases.get_mut(&entry.first_slot) {
            Some(count) => {
                *count |= ZOMBIE;
                false
            }
            None => true,
        }
    }

    /// Empties bucket `hole`, moving each following bucket that is away
    /// from its home one step back (so no tombstones are needed).
    fn shift_back(&mut self, mut hole: usize) {
        loop {
            let next = self.next(hole);
            let b = self.buckets[next];
            if b.is_empty() || b.distance() == 0 {
                self.buckets[hole] = Bucket::default();
                return;
            }
            self.buckets[hole] = b.with_distance(b.distance() - 1);
            hole = next;
        }
    }

    /// One more lease on the entry whose first slot is `first_slot`.
    pub fn pin(&mut self, first_slot: u32) {
        *self.leases.entry(first_slot).or_insert(0) += 1;
    }

    /// Drops one lease. Returns true when the entry was unlinked while
    /// leased and this was the last lease: the caller frees its slots now.
    pub fn unpin(&mut self, first_slot: u32) -> bool {
        let Some(count) = self.leases.get_mut(&first_slot) else {
            return false;
        };
        *count -= 1;
        let (left, zombie) = (*count & !ZOMBIE, *count & ZOMBIE != 0);
        if left == 0 {
            self.leases.remove(&first_slot);
        }
        left == 0 && zombie
    }

    /// Every entry findable by key, in slab order.
    pub fn iter(&self) -> impl Iterator<Item = (EntryId, &Entry)> + '_ {
        (0..self.slab.len() as EntryId)
            .map(move |id| (id, &self.slab[id as usize]))
            .filter(|(_, e)| e.first_slot != NO_SLOT)
    }

    /// Heap bytes held, for the memory-per-entry figure.
    pub fn heap_bytes(&self) -> usize {
        // hashbrown keeps buckets at a power of two, at most 7/8 full, each
        // with one control byte.
        let lease_buckets = (self.leases.capacity() * 8 / 7).next_power_of_two();
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self.slab.capacity() * std::mem::size_of::<Entry>()
            + self.free_ids.capacity() * std::mem::size_of::<EntryId>()
            + lease_buckets * (std::mem::size_of::<(u32, u32)>() + 1)
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

    fn entry(n: u8, first_slot: u32) -> Entry {
        Entry {
            key: key(n),
            first_slot,
            times: Times::default(),
        }
    }

    #[test]
    fn insert_find_unlink_release() {
        let mut ix = Index::default();
        let a = ix.insert(entry(1, 0));
        let b = ix.insert(entry(2, 1));
        assert_eq!(ix.get(&key(1)), Some(a));
        assert_eq!(ix.get(&key(2)), Some(b));
        assert_eq!(ix.len(), 2);
        assert!(ix.unlink(a));
        assert_eq!(ix.get(&key(1)), None);
        let c = ix.insert(entry(3, 2));
        assert_eq!(c, a, "slab ids are reused");
        assert_eq!(ix.entry(c).first_slot, 2);
        assert_eq!(ix.iter().count(), 2);
    }

    #[test]
    fn leased_entries_linger_until_the_last_lease() {
        let mut ix = Index::default();
        let a = ix.insert(entry(1, 7));
        ix.pin(7);
        ix.pin(7);
        assert!(!ix.unlink(a), "still leased");
        assert_eq!(ix.get(&key(1)), None, "but no longer findable");
        assert!(!ix.unpin(7));
        assert!(ix.unpin(7), "last lease frees it");
        ix.insert(entry(2, 8));
        ix.pin(8);
        assert!(!ix.unpin(8), "an entry still in the table is not freed");
        assert!(ix.leases.is_empty());
    }

    /// A slab-ordered model of which keys are in: every key in is found,
    /// every key out is not, through growth, Robin Hood displacement and
    /// backward shifts.
    #[test]
    fn many_inserts_and_unlinks_keep_every_key_findable() {
        let key_of = |n: u32| {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&n.to_le_bytes());
            k
        };
        let mut ix = Index::default();
        let mut ids = std::collections::HashMap::new();
        for n in 0..20_000u32 {
            ids.insert(
                n,
                ix.insert(Entry {
                    key: key_of(n),
                    first_slot: n,
                    times: Times::default(),
                }),
            );
            if n % 3 == 0 {
                let gone = n / 2;
                if let Some(id) = ids.remove(&gone) {
                    assert!(ix.unlink(id));
                }
            }
        }
        assert_eq!(ix.len(), ids.len());
        for n in 0..20_000u32 {
            assert_eq!(ix.get(&key_of(n)), ids.get(&n).copied(), "key {n}");
        }
        assert_eq!(ix.iter().count(), ids.len());
        let load = ix.len() * 100 / ix.buckets.len();
        assert!((40..=LOAD_MAX).contains(&load), "load {load}%");
    }

    #[test]
    fn entry_and_bucket_are_compact() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        assert_eq!(std::mem::size_of::<Bucket>(), 6);
    }
}
