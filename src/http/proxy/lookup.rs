//! Finding a request's stored entry: the memory cache, the store, the
//! Vary variant.

use std::sync::Arc;

use http::header::{self, HeaderMap};

use crate::caching::{self, Rule, StoredEntry, VaryMarker};
use crate::http::hot::HotEntry;
use crate::store::{Hit, Key};

use super::{url_key, Proxy};

/// A stored entry found for a request, Vary resolved.
pub(super) struct Found {
    pub(super) obj: Arc<HotEntry>,
    /// The key it is stored under.
    pub(super) key: Key,
    /// Served from the memory cache (TCP_MEM_HIT).
    pub(super) memory: bool,
}

impl Found {
    pub(super) fn entry(&self) -> &StoredEntry {
        &self.obj.entry
    }
}

/// What lookup found: the entry for this request if any, and the key a new
/// response for this request would be stored under (a variant key when the
/// URL's responses vary).
pub(super) struct Lookup {
    pub(super) found: Option<Found>,
    pub(super) marker: Option<VaryMarker>,
    /// Was anything stored for the URL at all (X-Cache-Lookup).
    pub(super) anything: bool,
}

/// A request that the memory cache can answer without reading its rules:
/// no cache directives, no conditionals.
pub(super) fn plain(headers: &HeaderMap) -> bool {
    // One pass over the few fields a request has: cheaper than five
    // hashed look-ups.
    !headers.keys().any(|name| {
        [
            header::CACHE_CONTROL,
            header::PRAGMA,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::AUTHORIZATION,
        ]
        .contains(name)
    })
}

impl Proxy {
    pub(super) fn lookup(&self, key: &Key) -> Option<Hit> {
        // Inline: hot pages cost nothing, and handing the worker off
        // (block_in_place) for every hit costs more than a rare page fault.
        self.store.lookup(key)
    }
}

impl Proxy {
    /// A verified store hit made ready to serve, with its freshness under
    /// `rule` precomputed for the memory cache's fast path.
    pub(super) fn hot_entry(&self, hit: Hit, entry: StoredEntry, rule: &Rule) -> HotEntry {
        let lifetime = entry.lifetime(rule);
        // Revalidated ahead: the fast paths stop at the last tenth, where
        // the plan's path counts and revalidates (ahead.rs).
        let ahead_hits = match rule.adaptive {
            Some(n) if caching::adaptive::applies(rule, lifetime) => n,
            _ => 0,
        };
        let fresh_for = if ahead_hits > 0 {
            caching::adaptive::ahead_from(lifetime.secs)
        } else {
            lifetime.secs
        };
        let fresh_until = if caching::ResponseDirectives::parse(&entry.headers).revalidate_always()
        {
            0
        } else {
            u64::from(entry.times.date).saturating_add(fresh_for)
        };
        HotEntry {
            generation: hit.generation,
            body_len: hit.body_len,
            body: hit.body,
            entry,
            fresh_until,
            ahead_hits,
            lean_head: std::sync::Mutex::default(),
        }
    }

    pub(super) fn find(&self, url: &str, request: &HeaderMap, rule: &Rule) -> Lookup {
        let base = url_key(url);
        if let Some(obj) = self.hot.get(&base, &self.store) {
            return Lookup {
                found: Some(Found {
                    obj,
                    key: base,
                    memory: true,
                }),
                marker: None,
                anything: true,
            };
        }
        let Some(hit) = self.lookup(&base) else {
            return Lookup {
                found: None,
                marker: None,
                anything: false,
            };
        };
        if let Some(marker) = VaryMarker::from_head(&hit.header_block) {
            self.known_markers.note(base, hit.generation, &marker);
            let key = url_key(&marker.variant_url(url, request));
            let found = self.lookup(&key).and_then(|hit| {
                let entry = StoredEntry::from_head(&hit.header_block, hit.times).ok()?;
                marker.matches(&entry.headers).then(|| Found {
                    obj: Arc::new(self.hot_entry(hit, entry, rule)),
                    key,
                    memory: self.store.is_memory(),
                })
            });
            return Lookup {
                found,
                marker: Some(marker),
                anything: true,
            };
        }
        match StoredEntry::from_head(&hit.header_block, hit.times) {
            Ok(entry) => {
                let obj = self.hot.insert(base, self.hot_entry(hit, entry, rule));
                Lookup {
                    found: Some(Found {
                        obj,
                        key: base,
                        memory: self.store.is_memory(),
                    }),
                    marker: None,
                    anything: true,
                }
            }
            Err(_) => {
                // Unreadable head: release it and treat as a miss.
                self.store.purge(&base);
                Lookup {
                    found: None,
                    marker: None,
                    anything: false,
                }
            }
        }
    }
}
