//! Hit-metering counts (RFC 2227) kept with the store's objects: per store
//! key, the URL, the terms the origin set (report wanted, usage limits,
//! report timeout) and the uses and reuses not yet reported.
//!
//! They live in `cuttle.meter` beside the data file of the first
//! cache_dir, a journal of checksummed records (the last record of a key
//! wins; a removal is a record too), compacted into a fresh file on open
//! and when it has grown well past its live records. The data file's
//! format is untouched, so a store written before metering existed opens
//! as it always did, with no journal: no object is metered until an
//! origin asks again. A memory store keeps its ledger in memory only.
//!
//! Crash behaviour: every change is appended (one `write`) before the
//! call returns, so it survives `kill -9` as the store's own writes do
//! (after a power cut, counts of the last moments may be lost). A report
//! takes the counts and appends their reset, written through to disk
//! (`fdatasync`), *before* the report is sent ([`MeterLedger::take_report`],
//! [`MeterLedger::remove`]): a crash between the two loses that report,
//! and none is ever sent twice, not even after a power cut (at most once).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Key;

/// The journal's name inside the first cache_dir.
pub const METER_FILE: &str = "cuttle.meter";
const MAGIC: &[u8; 8] = b"CUTMETR1";
/// Fixed part of a record body: key, flags, five u32 fields, first use, URL length.
const FIXED: usize = 16 + 4 + 5 * 4 + 8 + 2;
const FLAG_REPORT: u32 = 1;
const FLAG_MAX_USES: u32 = 2;
const FLAG_MAX_REUSES: u32 = 4;
const FLAG_TIMEOUT: u32 = 8;
const FLAG_REMOVED: u32 = 16;
/// Compaction starts once the journal is past this size and four times
/// what its live records need.
const COMPACT_AFTER: u64 = 1 << 20;

/// What the origin asked of a stored object (RFC 2227 response directives).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterTerms {
    /// `do-report` (and no `dont-report`).
    pub report: bool,
    pub max_uses: Option<u32>,
    pub max_reuses: Option<u32>,
    /// `timeout=N`: report within N minutes of the first unreported use.
    pub timeout_minutes: Option<u32>,
}

/// One metered object's ledger line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metered {
    pub url: String,
    pub terms: MeterTerms,
    /// Uses since the last report (or since the response came).
    pub uses: u32,
    /// Of those, the uses that did not contact the origin.
    pub reuses: u32,
    /// Unix seconds of the first use counted in `uses` (0: none).
    pub first_use: u64,
}

impl Metered {
    /// A usage limit is reached: the next use must revalidate.
    pub fn limit_reached(&self) -> bool {
        self.terms.max_uses.is_some_and(|m| self.uses >= m)
            || self.terms.max_reuses.is_some_and(|m| self.reuses >= m)
    }
}

/// Counts to send upstream for a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterReport {
    pub key: Key,
    pub url: String,
    pub uses: u32,
    pub reuses: u32,
}

/// What opening the journal found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerLoad {
    pub objects: usize,
    /// Bytes after the last whole record (a write torn by a crash).
    pub torn_bytes: u64,
}

struct Journal {
    file: File,
    path: PathBuf,
    bytes: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<Key, Metered>,
    /// When this process last set each object's terms, until its first use:
    /// its fetch may still be on its way into the store, so a sweep must
    /// not take it as gone.
    arrived: HashMap<Key, Instant>,
    journal: Option<Journal>,
}

/// The ledger of one store.
#[derive(Default)]
pub struct MeterLedger {
    state: Mutex<State>,
}

fn encode(key: &Key, m: Option<&Metered>) -> Vec<u8> {
    let (flags, url, fields, first_use) = match m {
        None => (FLAG_REMOVED, &[][..], [0u32; 5], 0),
        Some(m) => {
            let t = &m.terms;
            let mut flags = 0;
            for (on, bit) in [
                (t.report, FLAG_REPORT),
                (t.max_uses.is_some(), FLAG_MAX_USES),
                (t.max_reuses.is_some(), FLAG_MAX_REUSES),
                (t.timeout_minutes.is_some(), FLAG_TIMEOUT),
            ] {
                if on {
                    flags |= bit;
                }
            }
            let url = &m.url.as_bytes()[..m.url.len().min(usize::from(u16::MAX))];
            let fields = [
                m.uses,
                m.reuses,
                t.max_uses.unwrap_or(0),
                t.max_reuses.unwrap_or(0),
                t.timeout_minutes.unwrap_or(0),
            ];
            (flags, url, fields, m.first_use)
        }
    };
    let mut body = Vec::with_capacity(FIXED + url.len());
    body.extend_from_slice(key);
    body.extend_from_slice(&flags.to_le_bytes());
    for f in fields {
        body.extend_from_slice(&f.to_le_bytes());
    }
    body.extend_from_slice(&first_use.to_le_bytes());
    body.extend_from_slice(&(url.len() as u16).to_le_bytes());
    body.extend_from_slice(url);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// One record from the front of `b`: (key, line or removal, bytes used);
/// `None` when `b` holds no whole, verified record.
fn decode(b: &[u8]) -> Option<(Key, Option<Metered>, usize)> {
    let len = usize::try_from(u32_at(b.get(..4)?, 0)).ok()?;
    let crc = u32_at(b.get(4..8)?, 0);
    let body = b.get(8..8usize.checked_add(len)?)?;
    if len < FIXED || crc32fast::hash(body) != crc {
        return None;
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&body[..16]);
    let flags = u32_at(body, 16);
    let field = |i: usize| u32_at(body, 20 + 4 * i);
    let mut first = [0u8; 8];
    first.copy_from_slice(&body[40..48]);
    let url_len = usize::from(u16::from_le_bytes([body[48], body[49]]));
    let url = body.get(FIXED..FIXED + url_len)?;
    let used = 8 + len;
    if flags & FLAG_REMOVED != 0 {
        return Some((key, None, used));
    }
    let opt = |bit: u32, v: u32| (flags & bit != 0).then_some(v);
    let m = Metered {
        url: String::from_utf8_lossy(url).into_owned(),
        terms: MeterTerms {
            report: flags & FLAG_REPORT != 0,
            max_uses: opt(FLAG_MAX_USES, field(2)),
            max_reuses: opt(FLAG_MAX_REUSES, field(3)),
            timeout_minutes: opt(FLAG_TIMEOUT, field(4)),
        },
        uses: field(0),
        reuses: field(1),
        first_use: u64::from_le_bytes(first),
    };
    Some((key, Some(m), used))
}

/// Writes `map` as a fresh journal at `path` (through a temporary file
/// renamed over it, so a crash leaves the old or the new one whole).
fn rewrite(path: &Path, map: &HashMap<Key, Metered>) -> io::Result<Journal> {
    let tmp = path.with_extension("meter.new");
    let mut buf = MAGIC.to_vec();
    for (key, m) in map {
        buf.extend_from_slice(&encode(key, Some(m)));
    }
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let file = OpenOptions::new().append(true).open(path)?;
    Ok(Journal {
        file,
        path: path.to_path_buf(),
        bytes: buf.len() as u64,
    })
}

impl MeterLedger {
    /// A ledger kept in memory only (a memory store).
    pub fn in_memory() -> MeterLedger {
        MeterLedger::default()
    }

    /// Opens (or creates) the journal in the cache_dir `dir`, reads what
    /// it holds and compacts it.
    pub fn open(dir: &Path) -> io::Result<(MeterLedger, LedgerLoad)> {
        let path = dir.join(METER_FILE);
        let mut map = HashMap::new();
        let mut load = LedgerLoad::default();
        match File::open(&path) {
            Ok(mut f) => {
                let mut all = Vec::new();
                f.read_to_end(&mut all)?;
                let mut rest = match all.strip_prefix(MAGIC) {
                    Some(rest) => rest,
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{} is not a cuttle meter journal", path.display()),
                        ))
                    }
                };
                while let Some((key, m, used)) = decode(rest) {
                    match m {
                        Some(m) => map.insert(key, m),
                        None => map.remove(&key),
                    };
                    rest = &rest[used..];
                }
                load.torn_bytes = rest.len() as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        load.objects = map.len();
        let journal = rewrite(&path, &map)?;
        let ledger = MeterLedger {
            state: Mutex::new(State {
                map,
                arrived: HashMap::new(),
                journal: Some(journal),
            }),
        };
        Ok((ledger, load))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `key`'s current line (or its removal) to the journal. A
    /// failed write is logged and the ledger goes on in memory.
    fn persist(st: &mut State, key: &Key) {
        let record = encode(key, st.map.get(key));
        if let Some(j) = st.journal.as_mut() {
            match j.file.write_all(&record) {
                Ok(()) => j.bytes += record.len() as u64,
                Err(e) => {
                    tracing::warn!(path = %j.path.display(), error = %e, "cannot write the hit-metering journal; counts are kept in memory only from now on");
                    st.journal = None;
                }
            }
        }
    }

    /// [`MeterLedger::persist`], then on disk before returning: a reset
    /// that a report depends on.
    fn persist_durably(st: &mut State, key: &Key) {
        MeterLedger::persist(st, key);
        if let Some(j) = st.journal.as_ref() {
            if let Err(e) = j.file.sync_data() {
                tracing::warn!(path = %j.path.display(), error = %e, "cannot sync the hit-metering journal");
            }
        }
    }

    /// Sets the terms of `key`'s object as its latest response from the
    /// origin gave them; `None` (the response asked no metering) drops it
    /// from the ledger.
    pub fn set_terms(&self, key: Key, url: &str, terms: Option<MeterTerms>) {
        let mut st = self.lock();
        match terms {
            Some(terms) => {
                st.arrived.insert(key, Instant::now());
                let m = st.map.entry(key).or_insert_with(|| Metered {
                    url: url.to_string(),
                    terms,
                    uses: 0,
                    reuses: 0,
                    first_use: 0,
                });
                if m.terms == terms && m.url == url {
                    return;
                }
                m.terms = terms;
                m.url = url.to_string();
            }
            None => {
                st.arrived.remove(&key);
                if st.map.remove(&key).is_none() {
                    return;
                }
            }
        }
        MeterLedger::persist(&mut st, &key);
    }

    /// Counts `uses` uses of `key`'s object, `reuses` of them without
    /// contacting the origin; false (nothing counted) when it is not
    /// metered.
    pub fn count(&self, key: &Key, uses: u32, reuses: u32, now: u64) -> bool {
        let mut st = self.lock();
        // A use is served from the store: the object is in, no longer
        // arriving (a sweep may take it as soon as it is evicted).
        st.arrived.remove(key);
        let Some(m) = st.map.get_mut(key) else {
            return false;
        };
        m.uses = m.uses.saturating_add(uses);
        m.reuses = m.reuses.saturating_add(reuses);
        if m.first_use == 0 {
            m.first_use = now;
        }
        MeterLedger::persist(&mut st, key);
        true
    }

    /// `key`'s ledger line, if its object is metered.
    pub fn get(&self, key: &Key) -> Option<Metered> {
        self.lock().map.get(key).cloned()
    }

    /// Whether `key`'s object is metered (no copy made: the hit path asks).
    pub fn is_metered(&self, key: &Key) -> bool {
        self.lock().map.contains_key(key)
    }

    /// Whether the origin asked for reports on `key`'s object.
    pub fn wants_report(&self, key: &Key) -> bool {
        self.lock().map.get(key).is_some_and(|m| m.terms.report)
    }

    /// Whether `key`'s object has a usage limit.
    pub fn is_limited(&self, key: &Key) -> bool {
        self.lock()
            .map
            .get(key)
            .is_some_and(|m| m.terms.max_uses.is_some() || m.terms.max_reuses.is_some())
    }

    /// Whether `key`'s object reached a usage limit.
    pub fn limit_reached(&self, key: &Key) -> bool {
        self.lock().map.get(key).is_some_and(Metered::limit_reached)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().map.is_empty()
    }

    /// The counts to report on a request about to go upstream for `key`,
    /// reset first: the reset is in the journal before this returns, so
    /// a report is sent at most once. `None` when there is nothing to
    /// report or the origin wants no report (the counts restart anyway:
    /// the origin is being asked, which ends a usage limit's period).
    pub fn take_report(&self, key: &Key) -> Option<MeterReport> {
        let mut st = self.lock();
        let m = st.map.get_mut(key)?;
        if m.uses == 0 && m.reuses == 0 {
            return None;
        }
        let report = m.terms.report.then(|| MeterReport {
            key: *key,
            url: m.url.clone(),
            uses: m.uses,
            reuses: m.reuses,
        });
        m.uses = 0;
        m.reuses = 0;
        m.first_use = 0;
        if report.is_some() {
            MeterLedger::persist_durably(&mut st, key);
        } else {
            MeterLedger::persist(&mut st, key);
        }
        report
    }

    /// Drops `key` (its object was purged or evicted), its removal in the
    /// journal first; the report its counts still owe, if any.
    pub fn remove(&self, key: &Key) -> Option<MeterReport> {
        let mut st = self.lock();
        st.arrived.remove(key);
        let m = st.map.remove(key)?;
        let owed = m.terms.report && (m.uses > 0 || m.reuses > 0);
        if owed {
            MeterLedger::persist_durably(&mut st, key);
        } else {
            MeterLedger::persist(&mut st, key);
        }
        owed.then_some(MeterReport {
            key: *key,
            url: m.url,
            uses: m.uses,
            reuses: m.reuses,
        })
    }

    /// Removes every object `present` says is no longer stored (evicted
    /// or replaced by nothing) and returns the reports they owe. An object
    /// whose terms were set less than `grace` ago and not used since is
    /// left: its response may not be stored yet (a sweep racing a fetch
    /// would end its metering).
    pub fn take_gone(&self, present: &dyn Fn(&Key) -> bool, grace: Duration) -> Vec<MeterReport> {
        let gone: Vec<Key> = {
            let mut st = self.lock();
            st.arrived.retain(|_, at| at.elapsed() < grace);
            let st = &*st;
            st.map
                .keys()
                .filter(|k| !st.arrived.contains_key(*k) && !present(k))
                .copied()
                .collect()
        };
        gone.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// The reports whose `timeout` has passed at `now` (reset as
    /// [`MeterLedger::take_report`] does).
    pub fn take_due(&self, now: u64) -> Vec<MeterReport> {
        let due: Vec<Key> = self
            .lock()
            .map
            .iter()
            .filter(|(_, m)| {
                m.first_use > 0
                    && m.terms
                        .timeout_minutes
                        .is_some_and(|t| now >= m.first_use.saturating_add(u64::from(t) * 60))
            })
            .map(|(k, _)| *k)
            .collect();
        due.iter().filter_map(|k| self.take_report(k)).collect()
    }

    /// Every metered object.
    pub fn snapshot(&self) -> Vec<(Key, Metered)> {
        self.lock()
            .map
            .iter()
            .map(|(k, m)| (*k, m.clone()))
            .collect()
    }

    /// Rewrites the journal when it has grown past [`COMPACT_AFTER`] and
    /// four times its live records.
    pub fn compact_if_large(&self) {
        let mut st = self.lock();
        let live: u64 = st
            .map
            .values()
            .map(|m| (8 + FIXED + m.url.len()) as u64)
            .sum();
        let Some(j) = st.journal.as_ref() else {
            return;
        };
        if j.bytes < COMPACT_AFTER || j.bytes < live.saturating_mul(4) {
            return;
        }
        let path = j.path.clone();
        match rewrite(&path, &st.map) {
            Ok(j) => st.journal = Some(j),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot compact the hit-metering journal")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "cuttle-meter-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const TERMS: MeterTerms = MeterTerms {
        report: true,
        max_uses: Some(3),
        max_reuses: None,
        timeout_minutes: Some(2),
    };

    #[test]
    fn a_sweep_leaves_an_object_whose_response_just_came() {
        let l = MeterLedger::in_memory();
        let grace = Duration::from_secs(60);
        l.set_terms([1; 16], "http://a/x", Some(TERMS));
        // Not in the store yet (its body is still coming): kept.
        assert!(l.take_gone(&|_| false, grace).is_empty());
        assert!(l.is_metered(&[1; 16]));
        // Used, so stored: once the store no longer has it, it is gone,
        // with the report it owes.
        assert!(l.count(&[1; 16], 1, 1, 10));
        let gone = l.take_gone(&|_| false, grace);
        assert_eq!(gone.len(), 1);
        assert!(!l.is_metered(&[1; 16]));
        // Never used: gone once the grace has passed.
        l.set_terms([2; 16], "http://a/y", Some(TERMS));
        assert!(l.take_gone(&|_| false, grace).is_empty());
        assert!(
            l.take_gone(&|_| false, Duration::ZERO).is_empty(),
            "owes nothing"
        );
        assert!(!l.is_metered(&[2; 16]));
    }

    #[test]
    fn counts_survive_a_reopen_and_a_report_is_taken_once() {
        let d = dir("reopen");
        {
            let (l, load) = MeterLedger::open(&d).unwrap();
            assert_eq!(load, LedgerLoad::default());
            assert!(!l.count(&[1; 16], 1, 1, 10), "not metered yet");
            l.set_terms([1; 16], "http://a/x", Some(TERMS));
            for _ in 0..10 {
                assert!(l.count(&[1; 16], 1, 1, 10));
            }
            assert!(l.get(&[1; 16]).unwrap().limit_reached());
            assert!(l.limit_reached(&[1; 16]) && l.is_metered(&[1; 16]));
            assert!(!l.is_metered(&[2; 16]) && !l.limit_reached(&[2; 16]));
        }
        let (l, load) = MeterLedger::open(&d).unwrap();
        assert_eq!(load.objects, 1);
        let m = l.get(&[1; 16]).unwrap();
        assert_eq!((m.uses, m.reuses, m.terms), (10, 10, TERMS));
        let r = l.take_report(&[1; 16]).unwrap();
        assert_eq!((r.url.as_str(), r.uses, r.reuses), ("http://a/x", 10, 10));
        assert_eq!(l.take_report(&[1; 16]), None);
        drop(l);
        // The reset was committed before the report left: a crash now
        // (reopen) never reports the same counts again.
        let (l, _) = MeterLedger::open(&d).unwrap();
        assert_eq!(l.take_report(&[1; 16]), None);
        assert!(!l.get(&[1; 16]).unwrap().limit_reached());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_removals_stick() {
        let d = dir("torn");
        {
            let (l, _) = MeterLedger::open(&d).unwrap();
            l.set_terms([1; 16], "http://a/1", Some(TERMS));
            l.set_terms([2; 16], "http://a/2", Some(TERMS));
            l.count(&[2; 16], 2, 1, 5);
            assert_eq!(l.remove(&[1; 16]), None, "no counts: nothing owed");
            l.count(&[2; 16], 1, 0, 5);
        }
        // Half a record at the end, as a crash mid-write leaves it.
        let path = d.join(METER_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&encode(&[3; 16], None)[..10]);
        std::fs::write(&path, &bytes).unwrap();
        let (l, load) = MeterLedger::open(&d).unwrap();
        assert_eq!(load.objects, 1);
        assert_eq!(load.torn_bytes, 10);
        assert_eq!(l.get(&[1; 16]), None);
        assert_eq!(l.get(&[2; 16]).unwrap().uses, 3);
        // Gone from the store: the owed report comes once.
        let gone = l.take_gone(&|_| false, Duration::from_secs(60));
        assert_eq!(gone.len(), 1, "loaded from the journal: no grace");
        assert_eq!((gone[0].uses, gone[0].reuses), (3, 1));
        assert!(l.take_gone(&|_| false, Duration::ZERO).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn not_a_journal_is_an_error_and_garbage_records_stop_the_read() {
        let d = dir("bad");
        std::fs::write(d.join(METER_FILE), b"something else").unwrap();
        assert!(MeterLedger::open(&d).is_err());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[0xff; 64]);
        std::fs::write(d.join(METER_FILE), &bytes).unwrap();
        let (l, load) = MeterLedger::open(&d).unwrap();
        assert!(l.is_empty());
        assert_eq!(load.torn_bytes, 64);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_grown_journal_is_compacted_to_its_live_lines() {
        let d = dir("compact");
        let (l, _) = MeterLedger::open(&d).unwrap();
        l.set_terms([1; 16], "http://a/1", Some(TERMS));
        let path = d.join(METER_FILE);
        let record = encode(&[1; 16], l.get(&[1; 16]).as_ref()).len() as u64;
        let counts = COMPACT_AFTER / record + 1;
        for _ in 0..counts {
            l.count(&[1; 16], 1, 0, 1);
        }
        assert!(std::fs::metadata(&path).unwrap().len() > COMPACT_AFTER);
        l.compact_if_large();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, MAGIC.len() as u64 + record, "one live line left");
        // Appends go on into the new file, and it reads back.
        l.count(&[1; 16], 1, 1, 1);
        drop(l);
        let (l, _) = MeterLedger::open(&d).unwrap();
        let m = l.get(&[1; 16]).unwrap();
        assert_eq!((m.uses, m.reuses), (counts as u32 + 1, 1));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn timeouts_fall_due_and_unreported_terms_restart_counts() {
        let l = MeterLedger::in_memory();
        l.set_terms([1; 16], "http://a/1", Some(TERMS));
        l.count(&[1; 16], 1, 1, 1000);
        assert!(l.take_due(1000 + 119).is_empty());
        let due = l.take_due(1000 + 120);
        assert_eq!(due.len(), 1);
        assert!(l.take_due(5000).is_empty(), "reset by the report");
        let limit_only = MeterTerms {
            report: false,
            ..TERMS
        };
        l.set_terms([2; 16], "http://a/2", Some(limit_only));
        l.count(&[2; 16], 3, 3, 1);
        assert!(l.get(&[2; 16]).unwrap().limit_reached());
        assert_eq!(l.take_report(&[2; 16]), None, "no report wanted");
        assert!(
            !l.get(&[2; 16]).unwrap().limit_reached(),
            "but counts restart"
        );
        l.set_terms([2; 16], "http://a/2", None);
        assert_eq!(l.get(&[2; 16]), None);
    }
}
