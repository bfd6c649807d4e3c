//! Opening a cache_dir's data file (create, lock, allocate, check the superblock) and rebuilding the index from its slot header table.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read;
use std::path::PathBuf;

use super::{DirSpec, State, DATA_FILE, DEFAULT_SLOT_SIZE};
use crate::store::index::{Entry, EntryId, Index};
use crate::store::layout::{self, Geometry, SlotHeader, Superblock, SuperblockError, NO_SLOT};
use crate::store::map::{self, Region};
use crate::store::policy::Policy;
use crate::store::slots::{Bits, FreeSlots};
use crate::store::{RebuildReport, StoreError};

/// Opens or creates `DIR/cuttle.store`: the directory created if missing,
/// the file locked, allocated and checked against `spec`.
pub(super) fn open_data_file(
    spec: &DirSpec,
) -> Result<(File, PathBuf, Geometry, bool), StoreError> {
    if spec.read_only {
        // Inspecting must not create anything.
        if !spec.path.is_dir() {
            return Err(StoreError::io(
                &spec.path,
                "open the cache_dir",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
    } else {
        std::fs::create_dir_all(&spec.path)
            .map_err(|e| StoreError::io(&spec.path, "create the cache_dir", e))?;
    }
    let path = spec.path.join(DATA_FILE);
    let wanted = match spec.capacity {
        Some(capacity) => {
            let slot_size = spec.slot_size.unwrap_or(DEFAULT_SLOT_SIZE);
            if !(layout::MIN_SLOT_SIZE..=layout::MAX_SLOT_SIZE).contains(&slot_size)
                || !slot_size.is_multiple_of(512)
            {
                return Err(StoreError::Format {
                    path,
                    reason: format!(
                        "slot-size={slot_size} must be a multiple of 512 between {} and {}",
                        layout::MIN_SLOT_SIZE,
                        layout::MAX_SLOT_SIZE
                    ),
                });
            }
            Some(Geometry::for_capacity(capacity, slot_size))
        }
        None => None,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(!spec.read_only)
        .create(wanted.is_some() && !spec.read_only)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io(&path, "open", e))?;
    let locked = if spec.read_only {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
        Err(TryLockError::Error(e)) => return Err(StoreError::io(&path, "lock", e)),
    }
    let len = file
        .metadata()
        .map_err(|e| StoreError::io(&path, "stat", e))?
        .len();
    let mut head = [0u8; 40];
    let existing = if len >= head.len() as u64 {
        file.read_exact(&mut head)
            .map_err(|e| StoreError::io(&path, "read", e))?;
        match Superblock::decode(&head) {
            Ok(sb) => Some(sb.geometry),
            // Created but never finished (the superblock is written last).
            Err(SuperblockError::BadMagic) if head.iter().all(|&b| b == 0) => None,
            Err(SuperblockError::BadMagic) => {
                return Err(StoreError::Format {
                    path,
                    reason: "not a cuttle data file (no CUTTLEST magic)".into(),
                })
            }
            Err(SuperblockError::UnsupportedVersion(v)) => {
                return Err(StoreError::Format {
                    path,
                    reason: format!(
                        "format version {v}; this cuttle reads version {}",
                        layout::FORMAT_VERSION
                    ),
                })
            }
            Err(SuperblockError::Corrupt(why)) => {
                return Err(StoreError::Format {
                    path,
                    reason: why.into(),
                })
            }
        }
    } else {
        None
    };
    match (existing, wanted) {
        (Some(found), wanted) => {
            if let Some(wanted) = wanted {
                if found != wanted {
                    return Err(StoreError::Format {
                        path,
                        reason: format!(
                            "made for {} slots of {} bytes, but the config asks for {} slots of {} bytes; \
                             move the file away to start this cache_dir afresh",
                            found.slot_count, found.slot_size, wanted.slot_count, wanted.slot_size
                        ),
                    });
                }
            }
            if len != found.file_len() {
                return Err(StoreError::Format {
                    path,
                    reason: format!(
                        "is {len} bytes but its superblock says {}",
                        found.file_len()
                    ),
                });
            }
            Ok((file, path, found, false))
        }
        (None, Some(wanted)) => {
            if len != 0 && len != wanted.file_len() {
                return Err(StoreError::Format {
                    path,
                    reason: format!("has no superblock and an unexpected size ({len} bytes)"),
                });
            }
            map::allocate(&file, wanted.file_len()).map_err(|e| StoreError::Allocate {
                path: path.clone(),
                bytes: wanted.file_len(),
                source: e,
            })?;
            Ok((file, path, wanted, true))
        }
        (None, None) => Err(StoreError::Format {
            path,
            reason: "is not an initialised cuttle data file".into(),
        }),
    }
}

pub(super) fn creation_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Rebuilds the index from the header table: committed first slots whose
/// chains hold together become entries (newest wins per key); everything
/// else is freed and counted, and (unless only inspecting) cleared on disk,
/// so what a crash left is reported once and not again after a clean stop.
/// Payload CRCs are checked when read, not here.
pub(super) fn rebuild(
    region: &Region,
    g: Geometry,
    policy: Box<dyn Policy>,
) -> (State, RebuildReport, u64) {
    let n = g.slot_count;
    // Dropped commits, torn headers and orphans are cleared on disk so they
    // stay dropped (not when only inspecting).
    let clear = |slot: u32| {
        if region.is_writable() {
            region.store_generation(g.header_offset(slot), 0);
        }
    };
    let mut report = RebuildReport::default();
    let mut max_generation = 0u64;
    // (generation, slot) of every committed first slot; headers are decoded
    // again below rather than kept, to hold peak memory down.
    let mut firsts: Vec<(u64, u32)> = Vec::new();
    // Slots holding a valid continuation header: orphans unless claimed.
    let mut continuation = Bits::new(n);
    for slot in 0..n {
        let raw = region.read_header(g.header_offset(slot));
        if raw[..8] == [0u8; 8] {
            continue; // free, or cleared by a purge or eviction
        }
        match SlotHeader::decode(&raw) {
            None => {
                report.torn += 1;
                clear(slot);
            }
            Some(h) => {
                max_generation = max_generation.max(h.generation);
                if h.is_first() {
                    firsts.push((h.generation, slot));
                } else {
                    continuation.set(slot, true);
                }
            }
        }
    }
    // Newest first: for duplicate keys the newest commit wins.
    firsts.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    let mut claimed = Bits::new(n);
    let mut index = Index::with_capacity(firsts.len());
    let mut accepted: Vec<(EntryId, u64)> = Vec::with_capacity(firsts.len());
    let mut chain = Vec::new();
    for &(_, first) in &firsts {
        let Some(h) = SlotHeader::decode(&region.read_header(g.header_offset(first))) else {
            continue; // cannot happen: it decoded a moment ago
        };
        if index.get(&h.key).is_some() {
            report.duplicates += 1;
            clear(first);
            continue;
        }
        chain.clear();
        if chain_holds(region, g, first, &h, &mut claimed, &mut chain) {
            let id = index.insert(Entry {
                key: h.key,
                first_slot: first,
                times: h.times,
            });
            accepted.push((id, h.total_len));
            report.entries += 1;
            report.bytes += h.total_len;
        } else {
            for &s in &chain {
                claimed.set(s, false);
            }
            report.bad_chains += 1;
            clear(first);
        }
    }
    let mut free = FreeSlots::all_used(n);
    for slot in 0..n {
        if !claimed.get(slot) {
            if continuation.get(slot) {
                report.orphaned += 1;
                clear(slot);
            }
            free.release(slot);
        }
    }
    let mut state = State {
        index,
        free,
        policy,
        bytes: report.bytes,
    };
    // Oldest first into the policy, so recency follows commit order.
    for &(id, size) in accepted.iter().rev() {
        state.policy.insert(id, size);
    }
    (state, report, max_generation)
}

/// Whether the chain starting at `first` is whole: links in range, every
/// slot of this entry (generation and key) and claimed by no other, lengths
/// adding up. Claims the slots it walks (the caller unclaims on failure),
/// which also stops cycles.
fn chain_holds(
    region: &Region,
    g: Geometry,
    first: u32,
    h: &SlotHeader,
    claimed: &mut Bits,
    chain: &mut Vec<u32>,
) -> bool {
    let mut sum = 0u64;
    let mut slot = first;
    let mut header = *h;
    loop {
        if header.payload_len == 0 || header.payload_len > g.slot_size || claimed.get(slot) {
            return false;
        }
        claimed.set(slot, true);
        chain.push(slot);
        sum += u64::from(header.payload_len);
        if sum > h.total_len {
            return false;
        }
        if header.next == NO_SLOT {
            return sum == h.total_len;
        }
        slot = header.next;
        if slot >= g.slot_count {
            return false;
        }
        match SlotHeader::decode(&region.read_header(g.header_offset(slot))) {
            Some(next)
                if next.generation == h.generation && next.key == h.key && !next.is_first() =>
            {
                header = next;
            }
            _ => return false,
        }
    }
}
