#![no_main]
//! What ICP parses re-encodes to the same bytes and parses to the same message.
use cuttle_protocol::icp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = icp::parse(data) {
        let mut wire = Vec::new();
        message
            .encode(&mut wire)
            .expect("a parsed message is encodable");
        assert_eq!(wire, data, "re-encoding changed the bytes");
        assert_eq!(icp::parse(&wire), Ok(message));
    }
});
