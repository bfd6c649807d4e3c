//! Unit tests of Squid's text pages.

use super::process::proc_addr;

#[test]
fn proc_net_addresses_parse() {
    assert_eq!(
        proc_addr("0100007F:0CEA"),
        Some("127.0.0.1:3306".parse().expect("addr"))
    );
    assert_eq!(
        proc_addr("00000000000000000000000001000000:0050"),
        Some("[::1]:80".parse().expect("addr"))
    );
    assert_eq!(
        proc_addr("0000000000000000FFFF00000100007F:0050"),
        Some("127.0.0.1:80".parse().expect("addr"))
    );
    assert_eq!(proc_addr("zz:1"), None);
}
