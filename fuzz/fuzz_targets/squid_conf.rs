#![no_main]
//! Any text as a squid.conf: the reader returns diagnostics, never panics,
//! loops or allocates without bound.
use cuttle::config::load_str_sandboxed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Sandboxed: `include` and quoted ACL files never touch the filesystem.
    let _ = load_str_sandboxed(&text, "fuzz/squid.conf");
});
