//! Squid's Cache Digest (`application/cache-digest`, squid-spec 5.2): a
//! 128-byte header, then a Bloom filter mask over public store keys with
//! four hash functions. [`Digest`] builds one (the serving side);
//! [`parse`] reads one as borrowed bytes (the peer side), refusing any
//! header whose sizes disagree before a mask byte is used.

use crate::error::{Error, ErrorKind};
use crate::key::StoreKey;

/// Bytes of the header before the mask.
pub const HEADER_LEN: usize = 128;
/// The format version Squid 5.7 writes, and the oldest it lets read it.
pub const CURRENT_VERSION: u16 = 5;
pub const REQUIRED_VERSION: u16 = 3;
/// Squid's digests always use four hash functions (one per key word).
pub const HASH_FUNCTIONS: u8 = 4;
/// The largest mask a reader takes: Squid caps capacity at
/// (INT_MAX - 8) / bits per entry; 256 MiB of mask is far above any real
/// cache (a million entries at 5 bits is 625 KB) and bounds what a
/// malformed or hostile header can make a reader keep.
pub const MAX_MASK_LEN: usize = 256 << 20;

/// The header's fields, as Squid's `StoreDigestCBlock` lays them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub current_version: u16,
    pub required_version: u16,
    /// Entries the mask was sized for.
    pub capacity: u32,
    /// Entries added.
    pub count: u32,
    /// Entries deleted (Squid never deletes: 0).
    pub del_count: u32,
    /// Bytes of mask after the header.
    pub mask_size: u32,
    pub bits_per_entry: u8,
    pub hash_functions: u8,
}

/// Bytes of mask for `capacity` entries of `bits_per_entry` bits (Squid's
/// `CacheDigest::CalcMaskSize`).
pub fn mask_len(capacity: u32, bits_per_entry: u8) -> usize {
    (capacity as usize * bits_per_entry as usize).div_ceil(8)
}

/// The four mask bits of `key` in a mask of `mask_bits` bits: each
/// 4-byte word of the key, big-endian, modulo the bit count.
fn bit_positions(key: &StoreKey, mask_bits: u64) -> [u64; 4] {
    KeyWords::of(key).0.map(|w| u64::from(w) % mask_bits)
}

/// A key split into its four big-endian 4-byte words: its bits in any
/// mask are these modulo the mask's bit count, so a key looked up in
/// several digests (one per peer) is split once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWords([u32; 4]);

impl KeyWords {
    pub fn of(key: &StoreKey) -> KeyWords {
        let word = |i: usize| {
            u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
        };
        KeyWords([word(0), word(1), word(2), word(3)])
    }

    /// Whether all four of the key's bits are set in `mask`.
    pub fn in_mask(&self, mask: &[u8]) -> bool {
        let bits = mask.len() as u64 * 8;
        bits > 0 && self.0.iter().all(|&w| is_set(mask, u64::from(w) % bits))
    }
}

/// Bit `b` lives in byte `b / 8`, least significant bit first.
fn is_set(mask: &[u8], bit: u64) -> bool {
    mask.get((bit / 8) as usize)
        .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
}

fn mask_contains(mask: &[u8], key: &StoreKey) -> bool {
    let bits = mask.len() as u64 * 8;
    bits > 0 && bit_positions(key, bits).iter().all(|&b| is_set(mask, b))
}

fn fill_ratio_of(mask: &[u8]) -> f64 {
    if mask.is_empty() {
        return 0.0;
    }
    let set: u64 = mask.iter().map(|b| u64::from(b.count_ones())).sum();
    set as f64 / (mask.len() as f64 * 8.0)
}

/// A digest being built (or rebuilt) by the cache that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    capacity: u32,
    bits_per_entry: u8,
    count: u32,
    mask: Vec<u8>,
}

impl Digest {
    /// An empty digest sized for `capacity` entries (at least 1) of
    /// `bits_per_entry` bits (at least 1).
    pub fn new(capacity: u32, bits_per_entry: u8) -> Digest {
        let capacity = capacity.max(1);
        let bits_per_entry = bits_per_entry.max(1);
        Digest {
            capacity,
            bits_per_entry,
            count: 0,
            mask: vec![0; mask_len(capacity, bits_per_entry)],
        }
    }

    /// Empties the mask, keeping its size (Squid clears rather than
    /// reallocates when the capacity barely changed).
    pub fn clear(&mut self) {
        self.mask.fill(0);
        self.count = 0;
    }

    /// Adds `key`; counted once even if it was (or seemed) there already,
    /// as Squid counts.
    pub fn add(&mut self, key: &StoreKey) {
        let bits = self.mask.len() as u64 * 8;
        for b in bit_positions(key, bits) {
            self.mask[(b / 8) as usize] |= 1 << (b % 8);
        }
        self.count = self.count.saturating_add(1);
    }

    pub fn contains(&self, key: &StoreKey) -> bool {
        mask_contains(&self.mask, key)
    }

    /// [`Digest::contains`] for a key already split.
    pub fn contains_words(&self, words: &KeyWords) -> bool {
        words.in_mask(&self.mask)
    }

    pub fn header(&self) -> Header {
        Header {
            current_version: CURRENT_VERSION,
            required_version: REQUIRED_VERSION,
            capacity: self.capacity,
            count: self.count,
            del_count: 0,
            mask_size: self.mask.len() as u32,
            bits_per_entry: self.bits_per_entry,
            hash_functions: HASH_FUNCTIONS,
        }
    }

    pub fn mask(&self) -> &[u8] {
        &self.mask
    }

    /// The share of mask bits set.
    pub fn fill_ratio(&self) -> f64 {
        fill_ratio_of(&self.mask)
    }

    /// Appends the 128-byte header, then the mask.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_header(&self.header(), out);
        out.extend_from_slice(&self.mask);
    }
}

/// Appends `h` as the 128-byte header (reserved bytes zero).
pub fn encode_header(h: &Header, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&h.current_version.to_be_bytes());
    out.extend_from_slice(&h.required_version.to_be_bytes());
    out.extend_from_slice(&h.capacity.to_be_bytes());
    out.extend_from_slice(&h.count.to_be_bytes());
    out.extend_from_slice(&h.del_count.to_be_bytes());
    out.extend_from_slice(&h.mask_size.to_be_bytes());
    out.push(h.bits_per_entry);
    out.push(h.hash_functions);
    out.resize(start + HEADER_LEN, 0);
}

/// A digest as received: its header and the mask it borrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestRef<'a> {
    pub header: Header,
    pub mask: &'a [u8],
}

impl DigestRef<'_> {
    /// Whether the digest claims `key` (possibly falsely: it is a Bloom
    /// filter).
    pub fn contains(&self, key: &StoreKey) -> bool {
        mask_contains(self.mask, key)
    }

    /// [`DigestRef::contains`] for a key already split ([`KeyWords`]):
    /// what a caller testing one key against many digests uses.
    pub fn contains_words(&self, words: &KeyWords) -> bool {
        words.in_mask(self.mask)
    }

    /// The share of mask bits set.
    pub fn fill_ratio(&self) -> f64 {
        fill_ratio_of(self.mask)
    }
}

fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Reads the header alone (the first 128 bytes of `data`), checking that
/// its sizes agree with each other and are ones Squid could have written.
pub fn parse_header(data: &[u8]) -> Result<Header, Error> {
    if data.len() < HEADER_LEN {
        return Err(Error::new(ErrorKind::Truncated, "header", data.len()));
    }
    let h = Header {
        current_version: be16(data, 0),
        required_version: be16(data, 2),
        capacity: be32(data, 4),
        count: be32(data, 8),
        del_count: be32(data, 12),
        mask_size: be32(data, 16),
        bits_per_entry: data[20],
        hash_functions: data[21],
    };
    if h.required_version > CURRENT_VERSION || h.required_version > h.current_version {
        return Err(Error::new(
            ErrorKind::UnknownVersion(h.required_version.min(255) as u8),
            "required_version",
            2,
        ));
    }
    // Squid's fields are signed ints: anything past i32::MAX is garbage.
    for (value, field, at) in [
        (h.capacity, "capacity", 4),
        (h.count, "count", 8),
        (h.del_count, "del_count", 12),
        (h.mask_size, "mask_size", 16),
    ] {
        if value > i32::MAX as u32 {
            return Err(Error::new(ErrorKind::Invalid("negative"), field, at));
        }
    }
    if h.capacity == 0 {
        return Err(Error::new(
            ErrorKind::Invalid("zero capacity"),
            "capacity",
            4,
        ));
    }
    if h.bits_per_entry == 0 {
        return Err(Error::new(ErrorKind::Invalid("zero"), "bits_per_entry", 20));
    }
    if h.hash_functions != HASH_FUNCTIONS {
        return Err(Error::new(
            ErrorKind::Invalid("not 4 hash functions"),
            "hash_functions",
            21,
        ));
    }
    let expected = mask_len(h.capacity, h.bits_per_entry);
    if h.mask_size as usize != expected {
        return Err(Error::new(
            ErrorKind::LengthMismatch {
                declared: h.mask_size as usize,
                actual: expected,
            },
            "mask_size",
            16,
        ));
    }
    if expected > MAX_MASK_LEN {
        return Err(Error::new(
            ErrorKind::TooLong {
                len: expected,
                max: MAX_MASK_LEN,
            },
            "mask_size",
            16,
        ));
    }
    Ok(h)
}

/// Reads a whole digest: the header, then exactly `mask_size` bytes of
/// mask.
pub fn parse(data: &[u8]) -> Result<DigestRef<'_>, Error> {
    let header = parse_header(data)?;
    let mask = &data[HEADER_LEN..];
    let declared = header.mask_size as usize;
    if mask.len() < declared {
        return Err(Error::new(
            ErrorKind::LengthMismatch {
                declared,
                actual: mask.len(),
            },
            "mask",
            HEADER_LEN,
        ));
    }
    if mask.len() > declared {
        return Err(Error::new(
            ErrorKind::TrailingData {
                len: mask.len() - declared,
            },
            "mask",
            HEADER_LEN + declared,
        ));
    }
    Ok(DigestRef { header, mask })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{store_key, Method};

    /// The header of a digest fetched from Squid 5.7 holding 91 entries
    /// (squid-spec 5.2 [V]).
    const SQUID_HEADER: [u8; 22] = [
        0x00, 0x05, 0x00, 0x03, 0x00, 0x00, 0x00, 0x5b, 0x00, 0x00, 0x00, 0x5b, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x39, 0x05, 0x04,
    ];

    fn squid_like(mask_len: usize) -> Vec<u8> {
        let mut data = SQUID_HEADER.to_vec();
        data.resize(HEADER_LEN, 0);
        data.resize(HEADER_LEN + mask_len, 0);
        data
    }

    #[test]
    fn squid_57_header_parses() {
        let data = squid_like(0x39);
        let d = parse(&data).expect("parses");
        assert_eq!(d.header.capacity, 91);
        assert_eq!(d.header.count, 91);
        assert_eq!(d.header.mask_size, 57);
        assert_eq!(d.header.bits_per_entry, 5);
        assert_eq!(mask_len(91, 5), 57);
    }

    #[test]
    fn added_keys_are_found_and_the_encoding_round_trips() {
        let mut d = Digest::new(1000, 5);
        let keys: Vec<StoreKey> = (0..1000)
            .map(|i| store_key(Method::Get, format!("http://example.com/{i}").as_bytes()))
            .collect();
        for k in &keys {
            d.add(k);
        }
        assert!(keys.iter().all(|k| d.contains(k)));
        let mut wire = Vec::new();
        d.encode(&mut wire);
        assert_eq!(wire.len(), HEADER_LEN + 625);
        let read = parse(&wire).expect("parses");
        assert_eq!(read.header, d.header());
        assert!(keys.iter().all(|k| read.contains(k)));
        let strangers = (0..1000)
            .map(|i| store_key(Method::Get, format!("http://other.example/{i}").as_bytes()))
            .filter(|k| read.contains(k))
            .count();
        // About 9% false positives at 5 bits per entry, full.
        assert!(strangers < 200, "{strangers} false hits of 1000");
    }

    #[test]
    fn the_bits_are_big_endian_words_lsb_first() {
        let mut key = [0u8; 16];
        key[3] = 9; // word 0 = 9
        key[7] = 1; // word 1 = 1
        key[11] = 17; // word 2 = 17
        key[15] = 9; // word 3 = 9
        let mut d = Digest::new(8, 4); // 32 bits
        d.add(&key);
        assert_eq!(d.mask(), [0b0000_0010, 0b0000_0010, 0b0000_0010, 0]);
    }

    #[test]
    fn a_key_split_once_is_found_in_every_digest_as_its_key_is() {
        // Digests of different sizes (bit counts not powers of two among
        // them), half the keys added: the words of a key, split once,
        // answer in each mask what the key itself answers.
        let keys: Vec<StoreKey> = (0..400)
            .map(|i| store_key(Method::Get, format!("http://h/{i}").as_bytes()))
            .collect();
        for capacity in [1, 7, 100, 1000, 4099] {
            let mut d = Digest::new(capacity, 5);
            keys.iter().step_by(2).for_each(|k| d.add(k));
            let as_ref = DigestRef {
                header: d.header(),
                mask: d.mask(),
            };
            for k in &keys {
                let words = KeyWords::of(k);
                assert_eq!(
                    words.in_mask(d.mask()),
                    d.contains(k),
                    "capacity {capacity}"
                );
                assert_eq!(as_ref.contains_words(&words), as_ref.contains(k));
            }
        }
        assert!(
            !KeyWords::of(&keys[0]).in_mask(&[]),
            "an empty mask holds nothing"
        );
    }

    #[test]
    fn malformed_headers_name_their_field() {
        let field = |data: &[u8]| parse(data).map(|_| ()).unwrap_err().field;
        assert_eq!(field(&squid_like(0)[..100]), "header");
        assert_eq!(field(&squid_like(56)), "mask");
        assert_eq!(field(&squid_like(58)), "mask");
        let mut bad = squid_like(57);
        bad[19] = 0x3a;
        assert_eq!(field(&bad), "mask_size");
        let mut bad = squid_like(57);
        bad[21] = 3;
        assert_eq!(field(&bad), "hash_functions");
        let mut bad = squid_like(57);
        bad[3] = 9;
        assert_eq!(field(&bad), "required_version");
        let mut bad = squid_like(57);
        bad[4] = 0x80;
        assert_eq!(field(&bad), "capacity");
        let mut bad = squid_like(57);
        bad[20] = 0;
        assert_eq!(field(&bad), "bits_per_entry");
    }

    #[test]
    fn an_absurd_capacity_is_refused_before_any_mask_is_read() {
        // 2^31 - 1 entries of 255 bits: a mask of about 68 GB.
        let mut h = Digest::new(1, 5).header();
        h.capacity = i32::MAX as u32;
        h.bits_per_entry = 255;
        h.mask_size = mask_len(h.capacity, h.bits_per_entry) as u32;
        let mut data = Vec::new();
        encode_header(&h, &mut data);
        let e = parse_header(&data).unwrap_err();
        assert_eq!(e.field, "mask_size");
    }
}
