#![no_main]
//! Any bytes: HTCP parse returns, never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cuttle_protocol::htcp::parse(data);
});
