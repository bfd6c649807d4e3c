//! The on-disk format of a cache_dir's data file, little-endian throughout:
//!
//! ```text
//! [superblock, 4 KiB][slot header table: 64 B per slot, padded to 4 KiB][slot payloads]
//! ```
//!
//! Headers live in one contiguous table so that a rebuild reads megabytes,
//! not one page per slot. A slot's payload is `slot_size` bytes at
//! `data_offset + slot * slot_size`, so consecutive slots are contiguous.
//! An entry's bytes (meta, URL, header block, body) run through a chain of
//! slots; its first slot's header carries the key, sizes and timestamps the
//! in-memory index needs, and is written last: the commit point.

/// "CUTTLEST" followed by the format version.
pub const MAGIC: [u8; 8] = *b"CUTTLEST";
pub const FORMAT_VERSION: u32 = 1;
pub const SUPERBLOCK_LEN: u64 = 4096;
pub const SLOT_HEADER_LEN: u64 = 64;
pub const PAGE: u64 = 4096;
/// `next` of the last slot of a chain.
pub const NO_SLOT: u32 = u32::MAX;
/// The first slot of an entry (its commit record).
pub const FLAG_FIRST: u32 = 1;
/// Smallest and largest slot sizes accepted.
pub const MIN_SLOT_SIZE: u32 = 512;
pub const MAX_SLOT_SIZE: u32 = 1 << 20;
/// Seeds of the salted CRCs: an all-zero header or payload never verifies.
const HEADER_CRC_SEED: u32 = 0x6375_7474; // "cutt"
const PAYLOAD_CRC_SEED: u32 = 0x6c65_7374; // "lest"

/// Where everything is in a data file of a given geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub slot_size: u32,
    pub slot_count: u32,
}

impl Geometry {
    /// The geometry that fits `capacity` bytes of slots of `slot_size`.
    pub fn for_capacity(capacity: u64, slot_size: u32) -> Geometry {
        let slots = (capacity / u64::from(slot_size)).clamp(1, u64::from(NO_SLOT - 1));
        Geometry {
            slot_size,
            slot_count: slots as u32,
        }
    }

    pub fn table_offset(&self) -> u64 {
        SUPERBLOCK_LEN
    }

    pub fn header_offset(&self, slot: u32) -> u64 {
        self.table_offset() + u64::from(slot) * SLOT_HEADER_LEN
    }

    pub fn data_offset(&self) -> u64 {
        let table = u64::from(self.slot_count) * SLOT_HEADER_LEN;
        self.table_offset() + table.div_ceil(PAGE) * PAGE
    }

    pub fn payload_offset(&self, slot: u32) -> u64 {
        self.data_offset() + u64::from(slot) * u64::from(self.slot_size)
    }

    /// Size of the whole data file.
    pub fn file_len(&self) -> u64 {
        self.data_offset() + u64::from(self.slot_count) * u64::from(self.slot_size)
    }
}

/// The superblock: identifies the file and its geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    pub geometry: Geometry,
    /// Random at creation: tells two stores of the same geometry apart.
    pub creation_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuperblockError {
    /// Not a cuttle data file (or never finished being created).
    BadMagic,
    UnsupportedVersion(u32),
    Corrupt(&'static str),
}

impl Superblock {
    pub fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.geometry.slot_size.to_le_bytes());
        b[16..20].copy_from_slice(&self.geometry.slot_count.to_le_bytes());
        b[20..28].copy_from_slice(&self.creation_id.to_le_bytes());
        b[28..36].copy_from_slice(&self.geometry.file_len().to_le_bytes());
        let crc = salted_crc(HEADER_CRC_SEED, &[&b[0..36]]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Superblock, SuperblockError> {
        let b: &[u8; 40] = b
            .get(..40)
            .and_then(|s| s.try_into().ok())
            .ok_or(SuperblockError::Corrupt("superblock truncated"))?;
        if b[0..8] != MAGIC {
            return Err(SuperblockError::BadMagic);
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(SuperblockError::UnsupportedVersion(version));
        }
        if u32_at(b, 36) != salted_crc(HEADER_CRC_SEED, &[&b[0..36]]) {
            return Err(SuperblockError::Corrupt("superblock checksum mismatch"));
        }
        let geometry = Geometry {
            slot_size: u32_at(b, 12),
            slot_count: u32_at(b, 16),
        };
        if !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&geometry.slot_size)
            || geometry.slot_count == 0
            || geometry.slot_count == NO_SLOT
            || u64_at(b, 28) != geometry.file_len()
        {
            return Err(SuperblockError::Corrupt("impossible geometry"));
        }
        Ok(Superblock {
            geometry,
            creation_id: u64_at(b, 20),
        })
    }
}

/// Times the index keeps for an entry, in seconds since the Unix epoch
/// (0 = unknown). Freshness is computed from them above the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Times {
    /// When the response was received (Squid's entry timestamp).
    pub date: u32,
    pub expires: u32,
    pub last_modified: u32,
}

/// One slot header: 64 bytes in the table.
///
/// ```text
///  0 u64 generation (0 = free)   8 [16] key        24 u32 next
/// 28 u32 payload_len            32 u64 total_len  40 u32 date
/// 44 u32 expires                48 u32 last_mod   52 u32 flags
/// 56 u32 payload_crc            60 u32 header_crc (over bytes 0..60)
/// ```
/// `total_len` and the times are set in first slots only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotHeader {
    pub generation: u64,
    pub key: [u8; 16],
    pub next: u32,
    pub payload_len: u32,
    pub total_len: u64,
    pub times: Times,
    pub flags: u32,
    pub payload_crc: u32,
}

impl SlotHeader {
    pub fn is_first(&self) -> bool {
        self.flags & FLAG_FIRST != 0
    }

    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&self.generation.to_le_bytes());
        b[8..24].copy_from_slice(&self.key);
        b[24..28].copy_from_slice(&self.next.to_le_bytes());
        b[28..32].copy_from_slice(&self.payload_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.total_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.times.date.to_le_bytes());
        b[44..48].copy_from_slice(&self.times.expires.to_le_bytes());
        b[48..52].copy_from_slice(&self.times.last_modified.to_le_bytes());
        b[52..56].copy_from_slice(&self.flags.to_le_bytes());
        b[56..60].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = salted_crc(HEADER_CRC_SEED, &[&b[0..60]]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header in `b`, or `None` when its checksum fails (torn or never
    /// written: an all-zero header fails too).
    pub fn decode(b: &[u8; 64]) -> Option<SlotHeader> {
        if u32_at(b, 60) != salted_crc(HEADER_CRC_SEED, &[&b[0..60]]) {
            return None;
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&b[8..24]);
        Some(SlotHeader {
            generation: u64_at(b, 0),
            key,
            next: u32_at(b, 24),
            payload_len: u32_at(b, 28),
            total_len: u64_at(b, 32),
            times: Times {
                date: u32_at(b, 40),
                expires: u32_at(b, 44),
                last_modified: u32_at(b, 48),
            },
            flags: u32_at(b, 52),
            payload_crc: u32_at(b, 56),
        })
    }
}

/// CRC32 of a slot's payload, salted.
pub fn payload_crc(payload: &[u8]) -> u32 {
    salted_crc(PAYLOAD_CRC_SEED, &[payload])
}

/// A hasher that computes [`payload_crc`] incrementally.
pub fn payload_hasher() -> crc32fast::Hasher {
    crc32fast::Hasher::new_with_initial(PAYLOAD_CRC_SEED)
}

fn salted_crc(seed: u32, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(seed);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The start of an entry's byte stream (in its first slot): the lengths of
/// the URL and the HTTP response header block that follow, then the body.
pub const ENTRY_PREFIX_LEN: usize = 8;

pub fn encode_entry_prefix(url_len: u32, header_len: u32) -> [u8; ENTRY_PREFIX_LEN] {
    let mut b = [0u8; ENTRY_PREFIX_LEN];
    b[0..4].copy_from_slice(&url_len.to_le_bytes());
    b[4..8].copy_from_slice(&header_len.to_le_bytes());
    b
}

pub fn decode_entry_prefix(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < ENTRY_PREFIX_LEN {
        return None;
    }
    Some((u32_at(b, 0), u32_at(b, 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_page_aligned() {
        let g = Geometry::for_capacity(10 << 20, 16384);
        assert_eq!(g.slot_count, 640);
        assert_eq!(g.data_offset() % PAGE, 0);
        assert_eq!(g.data_offset(), 4096 + 640 * 64);
        assert_eq!(g.file_len(), g.data_offset() + 640 * 16384);
        assert_eq!(g.payload_offset(1) - g.payload_offset(0), 16384);
    }

    #[test]
    fn superblock_round_trip_and_damage() {
        let sb = Superblock {
            geometry: Geometry {
                slot_size: 4096,
                slot_count: 100,
            },
            creation_id: 42,
        };
        let mut b = sb.encode();
        assert_eq!(Superblock::decode(&b), Ok(sb));
        b[13] ^= 1;
        assert_eq!(
            Superblock::decode(&b),
            Err(SuperblockError::Corrupt("superblock checksum mismatch"))
        );
        assert_eq!(
            Superblock::decode(&[0u8; 40]),
            Err(SuperblockError::BadMagic)
        );
    }

    #[test]
    fn slot_header_round_trip_and_zero_never_verifies() {
        let h = SlotHeader {
            generation: 7,
            key: [3; 16],
            next: NO_SLOT,
            payload_len: 100,
            total_len: 100,
            times: Times {
                date: 1,
                expires: 2,
                last_modified: 3,
            },
            flags: FLAG_FIRST,
            payload_crc: payload_crc(b"x"),
        };
        let b = h.encode();
        assert_eq!(SlotHeader::decode(&b), Some(h));
        assert_eq!(SlotHeader::decode(&[0u8; 64]), None);
        for i in 0..64 {
            let mut torn = b;
            torn[i] ^= 0x10;
            assert_eq!(SlotHeader::decode(&torn), None, "byte {i}");
        }
        assert_ne!(payload_crc(&[0u8; 512]), 0);
    }
}
