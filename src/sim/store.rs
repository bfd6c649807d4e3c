//! A node's simulated store: which objects it holds, with their times,
//! within the capacity its squid.conf gives (the cache_dir sizes; a node
//! without cache_dir caches in memory, `cache_mem`), evicting with the
//! replacement policy the config names through the real store's policy
//! code (`store::Policy`). Objects are numbered by the engine (one number
//! per store key), so an entry is a slot in a vector: no hashing here.

use crate::config::Config;
use crate::store::{self, new_policy, Policy, Times};

/// What the node holds of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub size: u64,
    pub times: Times,
}

pub struct SimStore {
    capacity: u64,
    used: u64,
    /// Objects larger than this are not stored (maximum_object_size, and a
    /// memory-only node's maximum_object_size_in_memory).
    max_object: u64,
    entries: Vec<Option<Held>>,
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
    pub fn of(config: &Config) -> SimStore {
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
        SimStore::new(capacity, max_object, new_policy(policy))
    }

    fn new(capacity: u64, max_object: u64, policy: Box<dyn Policy>) -> SimStore {
        SimStore {
            capacity,
            used: 0,
            max_object,
            entries: Vec::new(),
            policy,
            held: 0,
        }
    }

    /// What the store holds of `object`, without counting it as a use.
    pub fn peek(&self, object: u32) -> Option<Held> {
        self.entries.get(object as usize).copied().flatten()
    }

    /// `object` was served from here (the policy learns of the use).
    pub fn touch(&mut self, object: u32) {
        if self.peek(object).is_some() {
            self.policy.touch(object);
        }
    }

    /// Stores `object` (replacing what was held of it), evicting by the
    /// policy until it fits. Returns whether it was stored (too big for the
    /// store or for maximum_object_size: not).
    pub fn insert(&mut self, object: u32, held: Held) -> bool {
        self.remove(object);
        if held.size > self.max_object || held.size > self.capacity {
            return false;
        }
        while self.used + held.size > self.capacity {
            let Some(victim) = self.policy.victim() else {
                break;
            };
            self.policy.evict(victim);
            if let Some(old) = self.take(victim) {
                self.used -= old.size;
            }
        }
        let slot = object as usize;
        if self.entries.len() <= slot {
            self.entries.resize(slot + 1, None);
        }
        self.entries[slot] = Some(held);
        self.used += held.size;
        self.held += 1;
        self.policy.insert(object, held.size);
        true
    }

    /// Drops `object` if held.
    pub fn remove(&mut self, object: u32) {
        if let Some(old) = self.take(object) {
            self.used -= old.size;
            self.policy.remove(object);
        }
    }

    fn take(&mut self, object: u32) -> Option<Held> {
        let old = self.entries.get_mut(object as usize)?.take();
        if old.is_some() {
            self.held -= 1;
        }
        old
    }

    /// Every object held (for a digest rebuild).
    pub fn held_objects(&self) -> impl Iterator<Item = (u32, Held)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (i as u32, h)))
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
        let mut s = SimStore::new(300, u64::MAX, new_policy(ReplacementPolicy::Lru));
        assert!(s.insert(0, held(100)));
        assert!(s.insert(1, held(100)));
        assert!(s.insert(2, held(100)));
        s.touch(0);
        assert!(s.insert(3, held(150)));
        // LRU: 1 then 2 leave; 0 was used last.
        assert_eq!(s.peek(1), None);
        assert_eq!(s.peek(2), None);
        assert!(s.peek(0).is_some() && s.peek(3).is_some());
        assert_eq!((s.used(), s.len()), (250, 2));
        assert!(!s.insert(4, held(301)), "bigger than the store");
        assert_eq!(s.used(), 250);
    }
}
