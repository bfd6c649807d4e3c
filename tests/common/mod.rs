//! Test objects shared by the store's integration tests: deterministic
//! bodies and header blocks for (key, version, length), so a checker can
//! tell exactly what every byte of an entry must be without keeping copies.

use cuttle::store::Times;

/// The header block of (key, version, length). One in eight carries 4 to
/// 12 KB of padding, so the head spans slots (and, when the free slots are
/// scattered, non-adjacent ones: the copied-head path).
pub fn header_block(k: u64, version: u64, len: usize) -> String {
    let mut pad = String::new();
    if mix(k ^ version.rotate_left(20)).is_multiple_of(8) {
        let n = 4000 + (mix(version) % 8000) as usize;
        pad = "X-Pad: ".to_string();
        pad.extend((0..n).map(|i| char::from(b'a' + (i % 26) as u8)));
        pad.push_str("\r\n");
    }
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nX-Key: {k}\r\n{pad}X-Version: {version}\r\n\r\n"
    )
}

pub fn times(k: u64, version: u64) -> Times {
    Times {
        date: version as u32,
        expires: 2_000_000_000,
        last_modified: k as u32,
    }
}

/// splitmix64: one well-mixed word per call.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The body of (key, version, length): a deterministic function of the
/// three (a word at a time, so debug builds stay quick).
pub fn body(k: u64, version: u64, len: usize) -> Vec<u8> {
    let seed = mix(k ^ mix(version) ^ (len as u64).rotate_left(40));
    let mut out = Vec::with_capacity(len + 8);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(&mix(seed ^ i.wrapping_mul(0xa076_1d64_78bd_642f)).to_le_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// (key, version, length) named by an entry's header block.
pub fn claimed(header_block: &[u8]) -> Option<(u64, u64, usize)> {
    let text = std::str::from_utf8(header_block).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.split("\r\n")
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((
        field("X-Key:")?,
        field("X-Version:")?,
        usize::try_from(field("Content-Length:")?).ok()?,
    ))
}
