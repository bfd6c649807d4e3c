//! Power-cut model test: random writes, overwrites, purges, flushes and
//! abandoned writes run against a cache_dir on test memory that journals
//! every write since the last flush. A "power cut" keeps the flushed image
//! plus a random subset of the later writes, some torn at a random byte
//! count (a disk may persist them in any order). After recovery every entry
//! the store returns must be a version that was committed, byte for byte,
//! no older than what a flush had made durable, never one a purge removed;
//! and entries made durable and still present before the cut must survive.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dir::{Dir, DirSpec};
use super::layout::{Geometry, Times};
use super::map::Region;
use super::tests::{body, key};
use super::RebuildReport;

const KEYS: u64 = 12;

/// What the model knows of one key.
#[derive(Default, Clone)]
struct KeyModel {
    /// Versions committed for the key, oldest first.
    committed: Vec<u64>,
    /// The newest version whose commit record (slot header) was written
    /// through, if any: nothing older may come back.
    durable: Option<u64>,
    /// The newest version committed before the last full flush, if any:
    /// its bytes are all on disk.
    flushed: Option<u64>,
    /// Versions below this were purged (purges are written through).
    purged_below: u64,
}

impl KeyModel {
    /// Versions the store may return after a power cut.
    fn allowed(&self, version: u64) -> bool {
        self.committed.contains(&version)
            && version >= self.purged_below
            && self.durable.is_none_or(|d| version >= d)
    }
}

fn geometry() -> Geometry {
    Geometry {
        slot_size: 512,
        slot_count: 48,
    }
}

fn spec() -> DirSpec {
    DirSpec {
        path: "/model".into(),
        capacity: None,
        slot_size: None,
        min_size: 0,
        max_size: None,
        read_only: false,
    }
}

fn open(region: Region, fresh: bool) -> (Dir, RebuildReport) {
    Dir::open_region(&spec(), region, geometry(), fresh)
}

/// (version, body length) claimed by an entry's header block.
fn claimed(header_block: &[u8]) -> Option<(u64, usize)> {
    let text = std::str::from_utf8(header_block).ok()?;
    let mut parts = text.trim().split(' ');
    let version = parts.next()?.strip_prefix("v=")?.parse().ok()?;
    let len = parts.next()?.strip_prefix("len=")?.parse().ok()?;
    Some((version, len))
}

/// The version of `n` the store returns, checking every byte.
fn read_version(dir: &Dir, n: u64) -> Option<u64> {
    let hit = dir.lookup(&key(n))?;
    let (version, len) = claimed(&hit.header_block).expect("header block is ours");
    assert_eq!(hit.url, format!("http://example.com/{n}").as_bytes());
    assert_eq!(hit.body_len, len as u64);
    assert_eq!(
        hit.body_bytes(),
        body(n, version, len),
        "key {n} v{version}: body bytes"
    );
    Some(version)
}

fn put(dir: &Dir, rng: &mut StdRng, n: u64, version: u64, model: &mut HashMap<u64, KeyModel>) {
    let len = match rng.gen_range(0..10) {
        0..=5 => rng.gen_range(0..400),
        6..=8 => rng.gen_range(400..2000),
        _ => rng.gen_range(2000..6000),
    };
    let header = format!("v={version} len={len}\n");
    let url = format!("http://example.com/{n}");
    let Ok(mut w) = dir.writer(
        key(n),
        Times::default(),
        url.as_bytes(),
        header.as_bytes(),
        None,
        u64::MAX,
    ) else {
        return;
    };
    let data = body(n, version, len);
    let mut written = 0;
    while written < data.len() {
        let step = rng.gen_range(1..=700).min(data.len() - written);
        if w.write(&data[written..written + step]).is_err() {
            return;
        }
        written += step;
    }
    if rng.gen_range(0..12) == 0 {
        return; // abandoned before the commit
    }
    if w.commit().is_ok() {
        model.entry(n).or_default().committed.push(version);
    }
}

/// Every slot header written so far is on disk now (a purge does this).
fn mark_headers_durable(model: &mut HashMap<u64, KeyModel>) {
    for m in model.values_mut() {
        m.durable = m.committed.last().copied().or(m.durable);
    }
}

/// Everything written so far is on disk now.
fn mark_flushed(model: &mut HashMap<u64, KeyModel>) {
    mark_headers_durable(model);
    for m in model.values_mut() {
        m.flushed = m.committed.last().copied().or(m.flushed);
    }
}

/// The image a power cut leaves: the flushed image plus each later write
/// kept with probability 1/2, and a kept write torn at a random length with
/// probability 1/4.
fn crash_image(region: &Region, rng: &mut StdRng) -> (Vec<u8>, usize, usize) {
    let journal = region.take_journal();
    let mut image = journal.durable;
    let (mut kept, mut torn) = (0, 0);
    for (off, bytes) in journal.pending {
        if rng.gen_bool(0.5) {
            continue;
        }
        kept += 1;
        let len = if rng.gen_range(0..4) == 0 {
            torn += 1;
            rng.gen_range(0..=bytes.len())
        } else {
            bytes.len()
        };
        let at = off as usize;
        image[at..at + len].copy_from_slice(&bytes[..len]);
    }
    (image, kept, torn)
}

fn run(seed: u64) -> (usize, usize, RebuildReport) {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = geometry().file_len() as usize;
    let (mut dir, _) = open(Region::heap(&vec![0u8; len]), true);
    let mut model: HashMap<u64, KeyModel> = HashMap::new();
    let mut version = 1u64;
    let mut verified = 0;
    let mut survived = 0;
    let mut totals = RebuildReport::default();
    for _cut in 0..6 {
        for _op in 0..rng.gen_range(5..60) {
            let n = rng.gen_range(0..KEYS);
            match rng.gen_range(0..20) {
                0 => {
                    // A purge writes the slot header table through.
                    dir.purge(&key(n));
                    mark_headers_durable(&mut model);
                    let m = model.entry(n).or_default();
                    m.purged_below = version;
                    m.durable = None;
                    m.flushed = None;
                }
                1 => {
                    dir.flush().expect("heap flush");
                    mark_flushed(&mut model);
                }
                2..=4 => {
                    read_version(&dir, n);
                }
                _ => {
                    put(&dir, &mut rng, n, version, &mut model);
                    version += 1;
                }
            }
        }
        // What must survive: flushed versions still present now.
        let must: Vec<(u64, u64)> = (0..KEYS)
            .filter_map(|n| {
                let present = read_version(&dir, n)?;
                (model.get(&n)?.flushed == Some(present)).then_some((n, present))
            })
            .collect();

        let (image, _, _) = crash_image(dir.region(), &mut rng);
        let (recovered, report) = open(Region::heap(&image), false);
        totals.torn += report.torn;
        totals.orphaned += report.orphaned;
        totals.bad_chains += report.bad_chains;
        totals.duplicates += report.duplicates;
        dir = recovered;

        for n in 0..KEYS {
            let got = read_version(&dir, n);
            let m = model.get(&n).cloned().unwrap_or_default();
            if let Some(v) = got {
                assert!(
                    m.allowed(v),
                    "seed {seed}: key {n} came back as v{v}; committed {:?}, durable {:?}, flushed {:?}, purged below {}",
                    m.committed,
                    m.durable,
                    m.flushed,
                    m.purged_below
                );
                verified += 1;
            }
            if let Some(&(_, v)) = must.iter().find(|(k, _)| *k == n) {
                assert_eq!(
                    got,
                    Some(v),
                    "seed {seed}: key {n} was durable as v{v} and is gone"
                );
                survived += 1;
            }
            // The recovered state is the new truth once flushed below.
            let entry = model.entry(n).or_default();
            *entry = KeyModel {
                committed: got.into_iter().collect(),
                durable: got,
                flushed: got,
                purged_below: 0,
            };
        }
        dir.flush().expect("heap flush");
    }
    (verified, survived, totals)
}

#[test]
fn power_cuts_never_return_torn_or_uncommitted_data() {
    let (mut verified, mut survived) = (0, 0);
    let mut totals = RebuildReport::default();
    for seed in 0..300 {
        let (v, s, r) = run(seed);
        verified += v;
        survived += s;
        totals.torn += r.torn;
        totals.orphaned += r.orphaned;
        totals.bad_chains += r.bad_chains;
        totals.duplicates += r.duplicates;
    }
    eprintln!(
        "power-cut model: {verified} entries verified after recovery, {survived} durable entries checked to survive; \
         rebuilds dropped {} torn headers, {} orphaned slots, {} bad chains, {} duplicates",
        totals.torn, totals.orphaned, totals.bad_chains, totals.duplicates
    );
    // The cuts really tore things, and recovery really returned data.
    assert!(verified > 1000 && survived > 100, "{verified} {survived}");
    assert!(
        totals.torn > 0 && totals.bad_chains + totals.orphaned > 0,
        "{totals:?}"
    );
}
