//! The memory cache (squid.conf's `cache_mem`): recently stored or served
//! objects kept ready to send, their header block parsed and their body
//! copied into memory of its own right after the store verified it (read
//! back when the object is stored, or on a store hit). Like Squid's
//! cache_mem it holds its own copy: what it serves cannot change with the
//! cache_dir file (a write to the file, a bad disk under the page cache),
//! and it pins no store slots. A hit here costs an index check and no
//! parsing, no checksum and no copy; Squid logs such hits as TCP_MEM_HIT.
//! Bounded by `cache_mem` (body bytes held) and
//! `maximum_object_size_in_memory` (per object); both may change at a
//! reload, which keeps what fits. With no cache_dir the store itself is
//! in memory and `cache_mem` bounds it, so this cache is off (limit 0)
//! rather than hold a second copy. An entry is used only
//! while the store still holds the same generation of its key, so a
//! replacement, purge or eviction in the store retires it at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use crate::caching::StoredEntry;
use crate::store::{Key, Store, Times};

/// One object ready to serve.
pub struct HotEntry {
    pub generation: u32,
    pub entry: StoredEntry,
    /// Views into the store's map until the entry is admitted here; one
    /// owned copy once it is.
    pub body: Vec<Bytes>,
    pub body_len: u64,
    /// When it stops being fresh under the rules in force when it came in
    /// (unix seconds); 0 = always check through the full rules. For an
    /// object that may be revalidated ahead, the start of its interval's
    /// last tenth.
    pub fresh_until: u64,
    /// Adaptive polling's popular-hits threshold for it under the rules in
    /// force when it came in: its hits are counted and it is revalidated
    /// ahead of expiry (`http::proxy::ahead`); 0 = neither.
    pub ahead_hits: u32,
    /// Its hit's response head, encoded at its first lean hit (see
    /// `http::lean`) and again when a hit comes for another port or
    /// configuration; `None` inside when a hit of it must go through hyper.
    pub lean_head: Mutex<Option<LeanHeadFor>>,
}

/// A [`LeanHead`], or that there is none, for one configuration and port.
pub struct LeanHeadFor {
    /// The [`crate::http::proxy::Proxy`] generation and the local port.
    pub made_for: (u64, u16),
    pub head: Option<Arc<LeanHead>>,
}

/// A hit's response head as hyper would write it, encoded once: the
/// status line and fields with the Age value left out, to splice in per
/// hit. Made for one configuration and port (X-Cache-Lookup names the
/// port, Via the configured host name).
pub struct LeanHead {
    /// Up to the Age value.
    pub before_age: Bytes,
    /// After the Age value, to the blank line that ends the head.
    pub after_age: Bytes,
    /// The head's size as access.log counts it, less the Age digits.
    pub logged_size: u64,
    pub content_type: Option<String>,
}

impl HotEntry {
    pub fn status(&self) -> StatusCode {
        self.entry.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.entry.headers
    }

    pub fn times(&self) -> Times {
        self.entry.times
    }
}

struct Inner {
    map: HashMap<Key, Arc<HotEntry>>,
    /// Insertion order, for eviction (first in, first out: a hot object
    /// that leaves comes back at its next hit).
    order: VecDeque<Key>,
    bytes: u64,
    limit: u64,
    max_object: u64,
}

impl Inner {
    /// Drops the oldest objects until the rest fit the limit.
    fn shrink_to_limit(&mut self) {
        while self.bytes > self.limit {
            let Some(victim) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.map.remove(&victim) {
                self.bytes -= old.body_len;
            }
        }
    }

    fn admits(&self, len: u64) -> bool {
        self.limit > 0 && len <= self.max_object && len <= self.limit
    }
}

pub struct HotCache {
    inner: Mutex<Inner>,
}

impl HotCache {
    pub fn new(limit: u64, max_object: u64) -> HotCache {
        HotCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                limit,
                max_object,
            }),
        }
    }

    /// New bounds (a reload): objects that no longer fit leave, the
    /// oldest first; the rest stay.
    pub fn resize(&self, limit: u64, max_object: u64) {
        let mut inner = self.lock();
        inner.limit = limit;
        inner.max_object = max_object;
        let too_big: Vec<Key> = inner
            .map
            .iter()
            .filter(|(_, e)| e.body_len > max_object)
            .map(|(k, _)| *k)
            .collect();
        for key in too_big {
            if let Some(old) = inner.map.remove(&key) {
                inner.bytes -= old.body_len;
                inner.order.retain(|k| *k != key);
            }
        }
        inner.shrink_to_limit();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object for `key` if it is here and still the store's current one.
    pub fn get(&self, key: &Key, store: &Store) -> Option<Arc<HotEntry>> {
        let hot = Arc::clone(self.lock().map.get(key)?);
        match store.peek(key) {
            Some(s) if s.generation == hot.generation => Some(hot),
            _ => {
                self.remove(key);
                None
            }
        }
    }

    /// Whether an object of `len` body bytes may be kept here.
    pub fn admits(&self, len: u64) -> bool {
        self.lock().admits(len)
    }

    /// Keeps `entry` (a verified store hit) if it is admitted, its body
    /// copied out of the map; returns it to serve either way.
    pub fn insert(&self, key: Key, mut entry: HotEntry) -> Arc<HotEntry> {
        if !self.admits(entry.body_len) {
            return Arc::new(entry);
        }
        entry.body = owned_copy(&entry.body);
        let entry = Arc::new(entry);
        let mut inner = self.lock();
        // Checked again: a reload may have changed the bounds meanwhile.
        if !inner.admits(entry.body_len) {
            return entry;
        }
        if let Some(old) = inner.map.insert(key, Arc::clone(&entry)) {
            inner.bytes -= old.body_len;
        } else {
            inner.order.push_back(key);
        }
        inner.bytes += entry.body_len;
        inner.shrink_to_limit();
        entry
    }

    pub fn remove(&self, key: &Key) {
        let mut inner = self.lock();
        if let Some(old) = inner.map.remove(key) {
            inner.bytes -= old.body_len;
            inner.order.retain(|k| k != key);
        }
    }

    /// (objects, body bytes held, bytes allowed).
    pub fn usage(&self) -> (usize, u64, u64) {
        let inner = self.lock();
        (inner.map.len(), inner.bytes, inner.limit)
    }

    /// The keys held (the cache manager's `vm_objects`).
    pub fn keys(&self) -> Vec<Key> {
        self.lock().map.keys().copied().collect()
    }
}

/// The body in one buffer of its own, so nothing the store's file goes
/// through can change it (and dropping the views unpins the store slots).
fn owned_copy(body: &[Bytes]) -> Vec<Bytes> {
    let len = body.iter().map(Bytes::len).sum();
    if len == 0 {
        return Vec::new();
    }
    let mut copy = BytesMut::with_capacity(len);
    for part in body {
        copy.extend_from_slice(part);
    }
    vec![copy.freeze()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::StoredEntry;

    fn entry(len: usize) -> HotEntry {
        HotEntry {
            generation: 1,
            entry: StoredEntry {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                times: Times::default(),
            },
            body: vec![Bytes::from(vec![b'x'; len])],
            body_len: len as u64,
            fresh_until: 0,
            ahead_hits: 0,
            lean_head: Mutex::default(),
        }
    }

    fn held(hot: &HotCache) -> Vec<u8> {
        let mut keys: Vec<u8> = hot.keys().iter().map(|k| k[0]).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn resize_keeps_what_fits_and_drops_the_oldest_first() {
        let hot = HotCache::new(1000, 500);
        for (n, len) in [(1u8, 300), (2, 300), (3, 100), (4, 200)] {
            hot.insert([n; 16], entry(len));
        }
        assert_eq!(held(&hot), [1, 2, 3, 4]);
        // A smaller per-object bound drops the big ones only.
        hot.resize(1000, 250);
        assert_eq!(held(&hot), [3, 4]);
        assert_eq!(hot.usage(), (2, 300, 1000));
        // A smaller cache_mem drops the oldest until the rest fit.
        hot.resize(250, 250);
        assert_eq!(held(&hot), [4]);
        assert!(!hot.admits(300));
        // Off (a memory store): nothing is kept.
        hot.resize(0, 250);
        assert_eq!(hot.usage(), (0, 0, 0));
        hot.insert([5; 16], entry(10));
        assert!(held(&hot).is_empty());
    }
}
