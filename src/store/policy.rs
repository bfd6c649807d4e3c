//! Replacement policies behind one trait, as Squid's
//! `cache_replacement_policy` names them: `lru` (the default, a list), and
//! `heap GDSF`, `heap LFUDA`, `heap LRU` (priority heaps with Squid's
//! dynamic aging: the key of each eviction becomes the age added to new
//! keys, so old popular objects do not stay forever).

use std::collections::BTreeSet;

use super::index::EntryId;
use crate::config::ReplacementPolicy;

/// Decides which entry leaves when the store is full.
pub(crate) trait Policy: Send {
    /// A new entry of `size` bytes.
    fn insert(&mut self, id: EntryId, size: u64);
    /// The entry was served.
    fn touch(&mut self, id: EntryId);
    /// The entry left the store (purged or replaced).
    fn remove(&mut self, id: EntryId);
    /// The entry was evicted to make room (heaps age on this).
    fn evict(&mut self, id: EntryId) {
        self.remove(id);
    }
    /// The entry to evict next, if any.
    fn victim(&self) -> Option<EntryId>;
    /// Heap bytes held, for the memory-per-entry figure.
    fn heap_bytes(&self) -> usize;
}

pub(crate) fn new_policy(kind: ReplacementPolicy) -> Box<dyn Policy> {
    match kind {
        ReplacementPolicy::Lru => Box::<Lru>::default(),
        ReplacementPolicy::HeapGdsf => Box::new(Heap::new(HeapKind::Gdsf)),
        ReplacementPolicy::HeapLfuda => Box::new(Heap::new(HeapKind::Lfuda)),
        ReplacementPolicy::HeapLru => Box::new(Heap::new(HeapKind::Lru)),
    }
}

const NIL: u32 = u32::MAX;

/// A doubly linked list threaded through a vector indexed by entry id:
/// 8 bytes per entry, O(1) everything.
pub(crate) struct Lru {
    /// (prev, next) per id; head = most recently used.
    links: Vec<(u32, u32)>,
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for Lru {
    fn default() -> Self {
        Lru {
            links: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl Lru {
    fn ensure(&mut self, id: EntryId) {
        let needed = id as usize + 1;
        if self.links.len() < needed {
            if needed > self.links.capacity() {
                // By a quarter, not doubling, as the index's slab grows.
                let more = (needed - self.links.len()).max(self.links.len() / 4);
                self.links.reserve_exact(more);
            }
            self.links.resize(needed, (NIL, NIL));
        }
    }

    fn push_front(&mut self, id: EntryId) {
        self.ensure(id);
        let old = self.head;
        self.links[id as usize] = (NIL, old);
        if old != NIL {
            self.links[old as usize].0 = id;
        } else {
            self.tail = id;
        }
        self.head = id;
        self.len += 1;
    }

    fn unlink(&mut self, id: EntryId) {
        let Some(&(prev, next)) = self.links.get(id as usize) else {
            return;
        };
        if prev == NIL && next == NIL && self.head != id {
            return; // not in the list
        }
        if prev != NIL {
            self.links[prev as usize].1 = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.links[next as usize].0 = prev;
        } else {
            self.tail = prev;
        }
        self.links[id as usize] = (NIL, NIL);
        self.len -= 1;
    }
}

impl Policy for Lru {
    fn insert(&mut self, id: EntryId, _size: u64) {
        self.unlink(id);
        self.push_front(id);
    }

    fn touch(&mut self, id: EntryId) {
        self.unlink(id);
        self.push_front(id);
    }

    fn remove(&mut self, id: EntryId) {
        self.unlink(id);
    }

    fn victim(&self) -> Option<EntryId> {
        (self.len > 0 && self.tail != NIL).then_some(self.tail)
    }

    fn heap_bytes(&self) -> usize {
        self.links.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HeapKind {
    Gdsf,
    Lfuda,
    Lru,
}

/// A priority heap (an ordered set, so keys can change) with dynamic aging.
struct Heap {
    kind: HeapKind,
    /// (key bits, id): keys are non-negative f64, whose bit patterns order
    /// like the numbers.
    order: BTreeSet<(u64, EntryId)>,
    /// Per id: current key bits, reference count (0 = not present), size.
    state: Vec<(u64, u32, u64)>,
    /// The key of the last victim (Squid's heap age).
    age: f64,
    /// Logical clock for heap LRU.
    clock: u64,
}

impl Heap {
    fn new(kind: HeapKind) -> Heap {
        Heap {
            kind,
            order: BTreeSet::new(),
            state: Vec::new(),
            age: 0.0,
            clock: 0,
        }
    }

    fn key(&mut self, refs: u32, size: u64) -> f64 {
        match self.kind {
            // Greedy-Dual Size Frequency: small, often used objects stay.
            HeapKind::Gdsf => self.age + f64::from(refs) / (size.max(1) as f64),
            // LFU with dynamic aging: often used objects stay.
            HeapKind::Lfuda => self.age + f64::from(refs),
            HeapKind::Lru => {
                self.clock += 1;
                self.clock as f64
            }
        }
    }

    fn set(&mut self, id: EntryId, refs: u32, size: u64) {
        if self.state.len() <= id as usize {
            self.state.resize(id as usize + 1, (0, 0, 0));
        }
        let (old_bits, old_refs, _) = self.state[id as usize];
        if old_refs != 0 {
            self.order.remove(&(old_bits, id));
        }
        let bits = self.key(refs, size).to_bits();
        self.order.insert((bits, id));
        self.state[id as usize] = (bits, refs, size);
    }
}

impl Policy for Heap {
    fn insert(&mut self, id: EntryId, size: u64) {
        self.set(id, 1, size);
    }

    fn touch(&mut self, id: EntryId) {
        let (_, refs, size) = self.state.get(id as usize).copied().unwrap_or_default();
        if refs != 0 {
            self.set(id, refs.saturating_add(1), size);
        }
    }

    fn remove(&mut self, id: EntryId) {
        if let Some(&(bits, refs, _)) = self.state.get(id as usize) {
            if refs != 0 {
                self.order.remove(&(bits, id));
            }
            self.state[id as usize] = (0, 0, 0);
        }
    }

    fn evict(&mut self, id: EntryId) {
        // Aging: the key of what is evicted sets the floor for what comes.
        if let Some(&(bits, refs, _)) = self.state.get(id as usize) {
            if refs != 0 && self.kind != HeapKind::Lru {
                self.age = self.age.max(f64::from_bits(bits));
            }
        }
        self.remove(id);
    }

    fn victim(&self) -> Option<EntryId> {
        self.order.first().map(|&(_, id)| id)
    }

    fn heap_bytes(&self) -> usize {
        // A B-tree node holds up to 11 keys; count ~1.5 nodes' share per key.
        self.order.len() * (std::mem::size_of::<(u64, EntryId)>() * 3 / 2)
            + self.state.capacity() * std::mem::size_of::<(u64, u32, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut dyn Policy) -> Vec<EntryId> {
        let mut out = Vec::new();
        while let Some(v) = p.victim() {
            out.push(v);
            p.evict(v);
        }
        out
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut p = new_policy(ReplacementPolicy::Lru);
        for id in 0..4 {
            p.insert(id, 100);
        }
        p.touch(0);
        p.remove(2);
        assert_eq!(drain(p.as_mut()), [1, 3, 0]);
        assert_eq!(p.victim(), None);
        p.insert(7, 1);
        assert_eq!(drain(p.as_mut()), [7]);
    }

    #[test]
    fn heap_lru_matches_lru_order() {
        let mut p = new_policy(ReplacementPolicy::HeapLru);
        for id in 0..4 {
            p.insert(id, 100);
        }
        p.touch(0);
        assert_eq!(drain(p.as_mut()), [1, 2, 3, 0]);
    }

    #[test]
    fn lfuda_keeps_popular_objects() {
        let mut p = new_policy(ReplacementPolicy::HeapLfuda);
        p.insert(0, 100);
        p.insert(1, 100);
        for _ in 0..5 {
            p.touch(0);
        }
        assert_eq!(p.victim(), Some(1));
    }

    #[test]
    fn gdsf_prefers_evicting_large_objects() {
        let mut p = new_policy(ReplacementPolicy::HeapGdsf);
        p.insert(0, 1_000_000);
        p.insert(1, 1_000);
        assert_eq!(p.victim(), Some(0));
        // Enough hits make the large one worth keeping over a cold small one.
        p.insert(2, 1_000);
        p.remove(0);
        p.insert(0, 1_000_000);
        assert_eq!(p.victim(), Some(0));
    }

    #[test]
    fn aging_lets_new_objects_compete() {
        let mut p = new_policy(ReplacementPolicy::HeapLfuda);
        p.insert(0, 1);
        for _ in 0..10 {
            p.touch(0);
        }
        p.insert(1, 1);
        p.evict(1); // evicted at key 1: age becomes 1
        p.insert(2, 1); // key = age + 1 = 2
        p.touch(2);
        assert_eq!(p.victim(), Some(2), "0 still has key 11");
    }
}
