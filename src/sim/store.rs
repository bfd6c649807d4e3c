//! A node's simulated store: which objects it holds, with their times,
//! within the capacity its squid.conf gives (the cache_dir sizes; a node
//! without cache_dir caches in memory, `cache_mem`), evicting with the
//! replacement policy the config names through the real store's policy
//! code (`store::Policy`). Objects are numbered by the engine (one number
//! per store key), and what every node holds lives in one object-major
//! table ([`Holdings`]): a request that asks several nodes about one
//! object (a query round, a parent chain) reads neighbouring memory.

use crate::config::Config;
use crate::store::{self, new_policy, Policy, Times};

/// What the node holds of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub size: u64,
    pub times: Times,
}

/// One node's entry for one object: 16 bytes, `size == EMPTY` when none.
#[derive(Debug, Clone, Copy)]
struct Slot {
    size: u32,
    date: u32,
    expires: u32,
    last_modified: u32,
}

const EMPTY: u32 = u32::MAX;

const NONE: Slot = Slot {
    size: EMPTY,
    date: 0,
    expires: 0,
    last_modified: 0,
};

/// What every node holds of every object, object by object.
#[derive(Debug, Clone)]
pub struct Holdings {
    nodes: usize,
    slots: Vec<Slot>,
}

impl Holdings {
    pub fn new(nodes: usize) -> Holdings {
        Holdings {
            nodes: nodes.max(1),
            slots: Vec::new(),
        }
    }

    fn index(&self, node: usize, object: u32) -> usize {
        object as usize * self.nodes + node
    }

    #[inline]
    pub fn get(&self, node: usize, object: u32) -> Option<Held> {
        let slot = self.slots.get(self.index(node, object))?;
        (slot.size != EMPTY).then_some(Held {
            size: u64::from(slot.size),
            times: Times {
                date: slot.date,
                expires: slot.expires,
                last_modified: slot.last_modified,
            },
        })
    }

    fn set(&mut self, node: usize, object: u32, held: Option<Held>) {
        let i = self.index(node, object);
        if self.slots.len() <= i {
            let objects = object as usize + 1;
            self.slots.resize(objects * self.nodes, NONE);
        }
        self.slots[i] = match held {
            Some(h) => Slot {
                size: h.size as u32,
                date: h.times.date,
                expires: h.times.expires,
                last_modified: h.times.last_modified,
            },
            None => NONE,
        };
    }

    /// The objects `node` holds.
    pub fn held_by(&self, node: usize) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .skip(node)
            .step_by(self.nodes)
            .enumerate()
            .filter(|(_, s)| s.size != EMPTY)
            .map(|(i, _)| i as u32)
    }
}

pub struct SimStore {
    node: usize,
    capacity: u64,
    used: u64,
    /// Objects larger than this are not stored (maximum_object_size, and a
    /// memory-only node's maximum_object_size_in_memory; never 4 GiB or
    /// more, the table's limit).
    max_object: u64,
    policy: Box<dyn Policy>,
    held: usize,
}

impl std::fmt::Debug for SimStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStore")
            .field("capacity", &self.capacity)
            .field("used", &self.used)
            .field("held", &self.held)
            .finish()
    }
}

impl SimStore {
    /// The store `config` describes: its cache_dirs' total size with
    /// cache_replacement_policy, or, with no cache_dir, cache_mem with
    /// memory_replacement_policy (as the proxy's store opens).
    pub fn of(config: &Config, node: usize) -> SimStore {
        let specs = store::specs_from_config(config);
        let (capacity, policy, mut max_object) = if specs.is_empty() {
            (
                config.cache_mem.value,
                config.memory_replacement_policy.value,
                config.maximum_object_size_in_memory.value,
            )
        } else {
            (
                specs.iter().filter_map(|s| s.capacity).sum(),
                config.cache_replacement_policy.value,
                u64::MAX,
            )
        };
        max_object = max_object.min(config.maximum_object_size.value);
        SimStore::new(node, capacity, max_object, new_policy(policy))
    }

    fn new(node: usize, capacity: u64, max_object: u64, policy: Box<dyn Policy>) -> SimStore {
        SimStore {
            node,
            capacity,
            used: 0,
            max_object: max_object.min(u64::from(EMPTY - 1)),
            policy,
            held: 0,
        }
    }

    /// What the store holds of `object`, without counting it as a use.
    #[inline]
    pub fn peek(&self, table: &Holdings, object: u32) -> Option<Held> {
        table.get(self.node, object)
    }

    /// `object` was served from here (the policy learns of the use).
    pub fn touch(&mut self, table: &Holdings, object: u32) {
        if self.peek(table, object).is_some() {
            self.policy.touch(object);
        }
    }

    /// Stores `object` (replacing what was held of it), evicting by the
    /// policy until it fits. Returns whether it was stored (too big for the
    /// store or for maximum_object_size: not).
    pub fn insert(&mut self, table: &mut Holdings, object: u32, held: Held) -> bool {
        self.remove(table, object);
        if held.size > self.max_object || held.size > self.capacity {
            return false;
        }
        while self.used + held.size > self.capacity {
            let Some(victim) = self.policy.victim() else {
                break;
            };
            self.policy.evict(victim);
            if let Some(old) = table.get(self.node, victim) {
                table.set(self.node, victim, None);
                self.used -= old.size;
                self.held -= 1;
            }
        }
        table.set(self.node, object, Some(held));
        self.used += held.size;
        self.held += 1;
        self.policy.insert(object, held.size);
        true
    }

    /// Drops `object` if held.
    pub fn remove(&mut self, table: &mut Holdings, object: u32) {
        if let Some(old) = table.get(self.node, object) {
            table.set(self.node, object, None);
            self.used -= old.size;
            self.held -= 1;
            self.policy.remove(object);
        }
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplacementPolicy;

    fn held(size: u64) -> Held {
        Held {
            size,
            times: Times::default(),
        }
    }

    #[test]
    fn evicts_by_the_policy_until_the_new_object_fits() {
        let mut t = Holdings::new(2);
        let mut s = SimStore::new(1, 300, u64::MAX, new_policy(ReplacementPolicy::Lru));
        assert!(s.insert(&mut t, 0, held(100)));
        assert!(s.insert(&mut t, 1, held(100)));
        assert!(s.insert(&mut t, 2, held(100)));
        s.touch(&t, 0);
        assert!(s.insert(&mut t, 3, held(150)));
        // LRU: 1 then 2 leave; 0 was used last.
        assert_eq!(s.peek(&t, 1), None);
        assert_eq!(s.peek(&t, 2), None);
        assert!(s.peek(&t, 0).is_some() && s.peek(&t, 3).is_some());
        assert_eq!((s.used(), s.len()), (250, 2));
        assert!(!s.insert(&mut t, 4, held(301)), "bigger than the store");
        assert_eq!(s.used(), 250);
        // Node 0's column is its own.
        assert_eq!(t.get(0, 0), None);
        assert_eq!(t.held_by(1).collect::<Vec<_>>(), [0, 3]);
    }
}
