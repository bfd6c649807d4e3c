#![no_main]
//! Any bytes as a Cache Digest: parse returns, never panics; what parses
//! answers lookups and its fill ratio, and its header re-encodes to bytes
//! that parse to the same header.
use cuttle_protocol::digest::{self, HEADER_LEN};
use cuttle_protocol::key::{store_key, Method};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = digest::parse(data) else {
        return;
    };
    let mut keys = vec![
        [0u8; 16],
        [0xff; 16],
        store_key(Method::Get, b"http://example.com/"),
    ];
    if let Some(bytes) = data.get(HEADER_LEN..HEADER_LEN + 16) {
        keys.push(bytes.try_into().expect("16 bytes"));
    }
    for key in &keys {
        let _ = parsed.contains(key);
    }
    let ratio = parsed.fill_ratio();
    assert!((0.0..=1.0).contains(&ratio), "fill ratio {ratio}");
    let mut wire = Vec::new();
    digest::encode_header(&parsed.header, &mut wire);
    assert_eq!(wire.len(), HEADER_LEN);
    // Bytes 22..128 are reserved: what Squid reads is the first 22.
    assert_eq!(wire[..22], data[..22], "re-encoding changed the header");
    assert_eq!(digest::parse_header(&wire), Ok(parsed.header));
});
