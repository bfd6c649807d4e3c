//! Replays every fuzz corpus entry (`fuzz/corpus/*`) and every file under
//! `fixtures/` through the parsers, with the fuzz targets' own checks, so an
//! input that once crashed a parser stays fixed without running the fuzzer.

use std::path::{Path, PathBuf};

use cuttle::config::load_str_sandboxed;
use cuttle_protocol::digest::{self, HEADER_LEN};
use cuttle_protocol::key::{store_key, Method};
use cuttle_protocol::{htcp, icp};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The check of the `*_roundtrip` fuzz targets: whatever parses re-encodes
/// to the same bytes. `reencode` is `None` when the input does not parse.
fn roundtrip_check(data: &[u8], path: &Path, reencode: fn(&[u8]) -> Option<Vec<u8>>) {
    if let Some(wire) = reencode(data) {
        assert_eq!(
            wire,
            data,
            "{}: re-encoding changed the bytes",
            path.display()
        );
    }
}

fn icp_reencode(data: &[u8]) -> Option<Vec<u8>> {
    let mut wire = Vec::new();
    let message = icp::parse(data).ok()?;
    message
        .encode(&mut wire)
        .expect("a parsed message is encodable");
    Some(wire)
}

fn htcp_reencode(data: &[u8]) -> Option<Vec<u8>> {
    let mut wire = Vec::new();
    let message = htcp::parse(data).ok()?;
    message
        .encode(&mut wire)
        .expect("a parsed message is encodable");
    Some(wire)
}

/// The checks of the `digest_parse` fuzz target: what parses answers
/// lookups, has a fill ratio in [0, 1], and its header re-encodes to the
/// same first 22 bytes (the rest is reserved) and parses back the same.
fn digest_check(data: &[u8], path: &Path) {
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
    assert!(
        (0.0..=1.0).contains(&ratio),
        "{}: fill ratio {ratio}",
        path.display()
    );
    let mut wire = Vec::new();
    digest::encode_header(&parsed.header, &mut wire);
    assert_eq!(wire[..22], data[..22], "{}: header changed", path.display());
    assert_eq!(digest::parse_header(&wire), Ok(parsed.header));
}

/// The checks of the `discovery_parse` fuzz target: what parses
/// re-encodes (with a MAC for a fixed key when it had one) to an
/// announcement that parses the same; unsigned ones to the same bytes.
fn discovery_check(data: &[u8], path: &Path) -> bool {
    let Ok(parsed) = cuttle_protocol::discovery::parse(data) else {
        return false;
    };
    let _ = parsed.verify(b"fuzz key");
    let key: Option<&[u8]> = parsed.mac.map(|_| &b"fuzz key"[..]);
    let mut wire = Vec::new();
    cuttle_protocol::discovery::encode(&parsed.announcement, key, &mut wire)
        .expect("what parsed encodes");
    let again = cuttle_protocol::discovery::parse(&wire).expect("what was encoded parses");
    assert_eq!(
        again.announcement,
        parsed.announcement,
        "{}",
        path.display()
    );
    if parsed.mac.is_none() {
        assert_eq!(
            wire,
            data,
            "{}: re-encoding changed the bytes",
            path.display()
        );
    }
    true
}

/// The call of the `squid_conf` fuzz target.
fn squid_conf_check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = load_str_sandboxed(&text, "fuzz/squid.conf");
}

/// The `share_parse` target's checks: an offer or a list re-encodes to a
/// value that parses the same; a duplicate link's target re-encodes.
fn share_check(data: &[u8], path: &Path) {
    use cuttle_protocol::share::{self, Share};
    match share::parse(data) {
        Ok(Share::Offer(offer)) => {
            let wire = share::encode_offer(&offer).expect("a parsed offer encodes");
            let Ok(Share::Offer(again)) = share::parse(wire.as_bytes()) else {
                panic!(
                    "{}: re-encoded offer {wire:?} does not parse",
                    path.display()
                );
            };
            assert_eq!(
                (again.url, again.ttl, &again.failed),
                (offer.url, offer.ttl, &offer.failed)
            );
        }
        Ok(Share::List(list)) => {
            let wire = share::encode_list(list);
            let again = share::parse(wire.as_bytes());
            assert_eq!(again, Ok(Share::List(list)), "{}", path.display());
        }
        Ok(Share::Owner) | Err(_) => {}
    }
    if let Ok(links) = share::parse_links(data) {
        for link in links.iter().filter(|l| l.duplicate) {
            if let Some(wire) = share::encode_duplicate(link.target) {
                let again = share::parse_links(wire.as_bytes()).expect("re-encoded link parses");
                assert_eq!(again.len(), 1, "{}", path.display());
                assert_eq!(again[0].target, link.target, "{}", path.display());
            }
        }
    }
}

#[test]
fn fuzz_corpora_replay_cleanly() {
    let corpus = root().join("fuzz/corpus");
    let mut replayed = 0;
    let mut digests_parsed = 0;
    let mut announcements_parsed = 0;
    for target in std::fs::read_dir(&corpus).expect("fuzz/corpus exists") {
        let target = target.expect("entry").path();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for path in files_under(&target) {
            let data = std::fs::read(&path).expect("readable corpus file");
            match name.as_str() {
                "icp_parse" | "icp_roundtrip" => roundtrip_check(&data, &path, icp_reencode),
                "htcp_parse" | "htcp_roundtrip" => roundtrip_check(&data, &path, htcp_reencode),
                "squid_conf" => squid_conf_check(&data),
                "share_parse" => share_check(&data, &path),
                "digest_parse" => {
                    digest_check(&data, &path);
                    digests_parsed += usize::from(digest::parse(&data).is_ok());
                }
                "discovery_parse" => {
                    announcements_parsed += usize::from(discovery_check(&data, &path));
                }
                other => panic!("corpus for unknown target {other}: add it here"),
            }
            replayed += 1;
        }
    }
    assert!(replayed > 100, "only {replayed} corpus files found");
    // The digest seeds include well-formed digests, so the checks past
    // parsing run.
    assert!(digests_parsed >= 3, "{digests_parsed} digest seeds parse");
    assert!(
        announcements_parsed >= 3,
        "{announcements_parsed} announcement seeds parse"
    );
}

#[test]
fn every_fixture_goes_through_every_parser() {
    let files = files_under(&root().join("fixtures"));
    assert!(files.len() > 30, "fixtures missing: {}", files.len());
    for path in files {
        let data = std::fs::read(&path).expect("readable fixture");
        roundtrip_check(&data, &path, icp_reencode);
        roundtrip_check(&data, &path, htcp_reencode);
        digest_check(&data, &path);
        discovery_check(&data, &path);
        squid_conf_check(&data);
    }
}
