#![no_main]
//! Any bytes as a mesh discovery announcement: parse returns, never
//! panics; what parses re-encodes (with the MAC it had, if any, for a fixed
//! key) to bytes that parse to the same announcement, and verifying never
//! panics.
use cuttle_protocol::discovery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = discovery::parse(data) else {
        return;
    };
    let _ = parsed.verify(b"fuzz key");
    let key: Option<&[u8]> = parsed.mac.map(|_| &b"fuzz key"[..]);
    let mut wire = Vec::new();
    discovery::encode(&parsed.announcement, key, &mut wire).expect("what parsed encodes");
    let again = discovery::parse(&wire).expect("what was encoded parses");
    assert_eq!(again.announcement, parsed.announcement);
    if parsed.mac.is_none() {
        assert_eq!(wire, data, "re-encoding changed the bytes");
    } else {
        assert!(again.verify(b"fuzz key"));
        assert_eq!(wire[..wire.len() - 32], data[..data.len() - 32]);
    }
});
