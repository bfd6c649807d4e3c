//! The Cache Digest this cache serves to its peers (squid-spec 5.3): a
//! Bloom filter over the store keys of the objects a peer could get from
//! us as a hit, built from the store's index alone (no object is read),
//! kept unchanged until the next rebuild so the Expires it announces holds.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cuttle_protocol::digest::{Digest, Header, HEADER_LEN};

use crate::caching::freshness::is_fresh;
use crate::config::Config;
use crate::store::Store;

/// Squid's `store_avg_object_size` default: sizes the digest of a cache
/// whose entry count says little (empty, or holding few large objects).
pub const AVG_OBJECT_SIZE: u64 = 13 * 1024;

/// The digest's capacity as Squid sizes it: the number of entries (or, for
/// an empty store, what the whole cache would hold at the average object
/// size), at least one more than the stored bytes at that size, at most
/// what keeps the mask's bit count within an `i32`.
pub fn capacity(entries: u64, stored_bytes: u64, cache_bytes: u64, bits_per_entry: u8) -> u32 {
    let by_count = if entries == 0 {
        cache_bytes / AVG_OBJECT_SIZE
    } else {
        entries
    };
    let at_least = 1 + stored_bytes / AVG_OBJECT_SIZE;
    let most = (i32::MAX as u64 - 8) / u64::from(bits_per_entry.max(1));
    u32::try_from(by_count.max(at_least).min(most)).unwrap_or(u32::MAX)
}

/// A digest of the entries of `store` still fresh at `now + period` (a
/// peer trusts it until the next rebuild; Squid leaves out what expires
/// sooner). The store holds only cachable responses within
/// maximum_object_size, under their public GET key. The index knows no
/// status: a cached error response fresh that long is in too (Squid
/// leaves out those it caches by `negative_ttl` alone).
pub fn build(store: &Store, bits_per_entry: u8, now: u64, period: Duration) -> Digest {
    let (entries, stored, whole) = store.usage().iter().fold((0, 0, 0), |(n, b, all), d| {
        (
            n + d.entries as u64,
            b + d.bytes,
            all + u64::from(d.slots) * u64::from(d.slot_size),
        )
    });
    let mut digest = Digest::new(
        capacity(entries, stored, whole, bits_per_entry),
        bits_per_entry,
    );
    let horizon = now.saturating_add(period.as_secs());
    store.for_each_entry(|key, times| {
        if is_fresh(times, horizon) {
            digest.add(key);
        }
    });
    digest
}

/// A built digest as it is served.
#[derive(Debug)]
pub struct Served {
    /// The 128-byte header, then the mask.
    pub bytes: Bytes,
    pub header: Header,
    /// Last-Modified.
    pub built: SystemTime,
    /// Expires: the next rebuild.
    pub expires: SystemTime,
    /// Entries in the store when it was built (those not added were
    /// left out as not fresh long enough: `mgr:digest_stats`' "rejected").
    pub considered: u64,
    /// The settings it was built under (a reload changing them rebuilds).
    bits_per_entry: u8,
    period: Duration,
}

impl Served {
    /// The 128-byte digest header as sent (see [`Served::mask`]).
    pub fn header_bytes(&self) -> Bytes {
        self.bytes.slice(..HEADER_LEN.min(self.bytes.len()))
    }

    pub fn mask(&self) -> Bytes {
        self.bytes.slice(HEADER_LEN.min(self.bytes.len())..)
    }
}

/// The served digest, rebuilt when older than `digest_rebuild_period`;
/// kept across reloads.
#[derive(Debug, Default)]
pub struct StoreDigest {
    current: Mutex<Option<Arc<Served>>>,
}

fn bits_per_entry_of(config: &Config) -> u8 {
    u8::try_from(config.digest_bits_per_entry.value.clamp(1, 255)).unwrap_or(5)
}

impl StoreDigest {
    /// The digest to serve at `now`, (re)built first when there is none,
    /// it is due, or the settings changed. Callers wait for a rebuild in
    /// progress rather than starting another.
    pub fn current(&self, store: &Store, config: &Config, now: SystemTime) -> Arc<Served> {
        let bits_per_entry = bits_per_entry_of(config);
        let period = config.digest_rebuild_period.value;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(served) = current.as_ref() {
            if served.bits_per_entry == bits_per_entry
                && served.period == period
                && now < served.expires
            {
                return Arc::clone(served);
            }
        }
        let started = Instant::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let considered = store.usage().iter().map(|d| d.entries as u64).sum();
        let digest = build(store, bits_per_entry, secs, period);
        let mut bytes = Vec::with_capacity(HEADER_LEN + digest.mask().len());
        digest.encode(&mut bytes);
        let header = digest.header();
        tracing::info!(
            entries = header.count,
            capacity = header.capacity,
            mask_bytes = header.mask_size,
            bits_per_entry,
            fill = format!("{:.3}", digest.fill_ratio()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "cache digest built"
        );
        let served = Arc::new(Served {
            bytes: bytes.into(),
            header,
            built: now,
            expires: now + period,
            considered,
            bits_per_entry,
            period,
        });
        *current = Some(Arc::clone(&served));
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplacementPolicy;
    use crate::store::{StoreOptions, Times};
    use cuttle_protocol::digest::parse;
    use cuttle_protocol::key::{store_key, Method};

    const NOW: u64 = 1_800_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn memory_store() -> Store {
        Store::open_memory(
            8 << 20,
            1 << 20,
            StoreOptions {
                maximum_object_size: 1 << 20,
                policy: ReplacementPolicy::Lru,
            },
        )
        .expect("memory store")
    }

    fn put(store: &Store, url: &str, expires: u64) {
        let key = store_key(Method::Get, url.as_bytes());
        let times = Times {
            date: NOW as u32,
            expires: expires as u32,
            last_modified: 0,
        };
        let mut w = store
            .writer(
                key,
                times,
                url.as_bytes(),
                b"HTTP/1.1 200 OK\r\n\r\n",
                Some(5),
            )
            .expect("writer");
        w.write(b"hello").expect("write");
        w.commit().expect("commit");
    }

    fn has(digest: &Digest, url: &str) -> bool {
        digest.contains(&store_key(Method::Get, url.as_bytes()))
    }

    #[test]
    fn capacity_as_squid_sizes_it() {
        // The entry count, when the stored bytes do not say more.
        assert_eq!(capacity(1000, 1000 * 1024, 1 << 30, 5), 1000);
        // Empty: what the cache would hold at 13 KB an object.
        assert_eq!(capacity(0, 0, 13 * 1024 * 100, 5), 100);
        assert_eq!(capacity(0, 0, 0, 5), 1);
        // Few large objects: at least one per 13 KB stored, plus one.
        assert_eq!(capacity(2, 13 * 1024 * 10, 1 << 30, 5), 11);
        // Capped where the mask's bit count would overflow Squid's int.
        assert_eq!(
            capacity(u64::MAX / 2, 0, 0, 5),
            ((i32::MAX as u64 - 8) / 5) as u32
        );
    }

    #[test]
    fn holds_what_stays_fresh_past_the_next_rebuild() {
        let store = memory_store();
        let long = NOW + 2 * 3600;
        for i in 0..50 {
            put(&store, &format!("http://example.com/long/{i}"), long);
        }
        // Stale already, and stale before the next rebuild.
        put(&store, "http://example.com/stale", NOW - 1);
        put(&store, "http://example.com/soon", NOW + 600);
        let digest = build(&store, 5, NOW, HOUR);
        let header = digest.header();
        assert_eq!(header.count, 50);
        assert!(header.capacity >= 52, "{header:?}");
        assert_eq!(header.bits_per_entry, 5);
        for i in 0..50 {
            assert!(has(&digest, &format!("http://example.com/long/{i}")));
        }
        assert!(!has(&digest, "http://example.com/stale"));
        assert!(!has(&digest, "http://example.com/soon"));
        let absent = (0..1000)
            .filter(|i| has(&digest, &format!("http://example.org/absent/{i}")))
            .count();
        assert!(absent < 300, "{absent} of 1000 absent URLs claimed");
        // A shorter period lets the soon-stale one in.
        let short = build(&store, 5, NOW, Duration::from_secs(60));
        assert!(has(&short, "http://example.com/soon"));
    }

    #[test]
    fn served_bytes_parse_and_stay_until_due() {
        let store = memory_store();
        put(&store, "http://example.com/a", NOW + 7200);
        let config = Config::default();
        let digests = StoreDigest::default();
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        let first = digests.current(&store, &config, at);
        let parsed = parse(&first.bytes).expect("served digest parses");
        assert_eq!(parsed.header, first.header);
        assert!(parsed.contains(&store_key(Method::Get, b"http://example.com/a")));
        assert_eq!(first.header_bytes().len(), HEADER_LEN);
        assert_eq!(first.mask().len(), first.header.mask_size as usize);
        assert_eq!(first.expires, at + HOUR);
        // Added after the build: not in until the next one.
        put(&store, "http://example.com/b", NOW + 3 * 3600);
        let b = store_key(Method::Get, b"http://example.com/b");
        let again = digests.current(&store, &config, at + Duration::from_secs(10));
        assert!(Arc::ptr_eq(&first, &again));
        let due = digests.current(&store, &config, at + HOUR);
        assert!(!Arc::ptr_eq(&first, &due));
        assert!(parse(&due.bytes).expect("parses").contains(&b));
    }
}
