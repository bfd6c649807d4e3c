//! The memory cache (squid.conf's `cache_mem`): recently served objects
//! kept ready to send, their header block parsed and their body copied
//! into memory of its own right after the store verified it. Like Squid's
//! cache_mem it holds its own copy: what it serves cannot change with the
//! cache_dir file (a write to the file, a bad disk under the page cache),
//! and it pins no store slots. A hit here costs an index check and no
//! parsing, no checksum and no copy; Squid logs such hits as TCP_MEM_HIT.
//! Bounded by `cache_mem` (body bytes held) and
//! `maximum_object_size_in_memory` (per object). An entry is used only
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
    /// (unix seconds); 0 = always check through the full rules.
    pub fresh_until: u64,
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
}

pub struct HotCache {
    inner: Mutex<Inner>,
    limit: u64,
    max_object: u64,
}

impl HotCache {
    pub fn new(limit: u64, max_object: u64) -> HotCache {
        HotCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
            limit,
            max_object,
        }
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
        self.limit > 0 && len <= self.max_object && len <= self.limit
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
        if let Some(old) = inner.map.insert(key, Arc::clone(&entry)) {
            inner.bytes -= old.body_len;
        } else {
            inner.order.push_back(key);
        }
        inner.bytes += entry.body_len;
        while inner.bytes > self.limit {
            let Some(victim) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.map.remove(&victim) {
                inner.bytes -= old.body_len;
            }
        }
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
        (inner.map.len(), inner.bytes, self.limit)
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
