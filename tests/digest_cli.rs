//! `cuttle digest decode` and `cuttle digest lookup` as a user runs them, on
//! Cache Digest files built here with the codec.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use cuttle_protocol::digest::{Digest, HEADER_LEN};
use cuttle_protocol::key::{store_key, Method};
use serde_json::Value;

fn cuttle(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cuttle runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("cuttle exits")
}

fn scratch(name: &str, contents: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("digest_cli");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write scratch file");
    path
}

fn key(url: &str) -> [u8; 16] {
    store_key(Method::Get, url.as_bytes())
}

/// A digest sized for 1000 entries holding http://a.test/0..100, and its
/// wire bytes.
fn sample() -> (Digest, Vec<u8>) {
    let mut d = Digest::new(1000, 5);
    for i in 0..100 {
        d.add(&key(&format!("http://a.test/{i}")));
    }
    let mut wire = Vec::new();
    d.encode(&mut wire);
    (d, wire)
}

fn stderr_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn decode_prints_every_header_field_and_the_fill_ratio() {
    let (d, wire) = sample();
    let path = scratch("sample.digest", &wire);
    let out = cuttle(&["digest", "decode", path.to_str().expect("utf-8")], b"");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    assert_eq!(v["current_version"], 5);
    assert_eq!(v["required_version"], 3);
    assert_eq!(v["capacity"], 1000);
    assert_eq!(v["count"], 100);
    assert_eq!(v["del_count"], 0);
    assert_eq!(v["mask_size"], 625);
    assert_eq!(v["bits_per_entry"], 5);
    assert_eq!(v["hash_functions"], 4);
    assert_eq!(v["length"], wire.len());
    let ratio = v["fill_ratio"].as_f64().expect("fill_ratio is a number");
    assert!((ratio - d.fill_ratio()).abs() < 1e-9, "{ratio}");
    assert!(ratio > 0.0);

    // The same bytes as hex text on stdin.
    let hex: String = wire.iter().map(|b| format!("{b:02x}\n")).collect();
    let out = cuttle(&["digest", "decode", "--hex", "-"], hex.as_bytes());
    let again: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    assert_eq!(again, v);
}

#[test]
fn a_malformed_digest_is_one_line_naming_field_and_offset_and_status_1() {
    let (_, wire) = sample();
    // The mask cut short of what the header announces.
    let path = scratch("short.digest", &wire[..wire.len() - 1]);
    let out = cuttle(&["digest", "decode", path.to_str().expect("utf-8")], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr_line(&out);
    assert!(err.contains("malformed cache digest"), "{err}");
    assert!(
        err.contains(&format!("field mask at offset {HEADER_LEN}")),
        "{err}"
    );

    // A header announcing a mask size its capacity does not give.
    let mut bad = wire.clone();
    bad[19] ^= 1;
    let path = scratch("mask-size.digest", &bad);
    let out = cuttle(&["digest", "decode", path.to_str().expect("utf-8")], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("field mask_size at offset 16"));

    // lookup refuses the same file the same way, printing nothing.
    let out = cuttle(
        &[
            "digest",
            "lookup",
            path.to_str().expect("utf-8"),
            "http://a.test/1",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(stderr_line(&out).contains("field mask_size at offset 16"));

    let out = cuttle(&["digest", "decode", "/nonexistent/cuttle/x.digest"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("cannot read"));
}

#[test]
fn lookup_says_hit_or_miss_per_url_as_the_mask_says() {
    let (d, wire) = sample();
    let path = scratch("lookup.digest", &wire);
    let urls: Vec<String> = (90..130).map(|i| format!("http://a.test/{i}")).collect();
    let expected: String = urls
        .iter()
        .map(|u| {
            let verdict = if d.contains(&key(u)) { "HIT" } else { "MISS" };
            format!("{verdict} {u}\n")
        })
        .collect();
    // Added URLs are hits; most others are misses (a Bloom filter may
    // claim a few falsely: the expectation is the mask's own answer).
    assert!(expected.starts_with("HIT http://a.test/90\n"));
    assert!(expected.contains("MISS "), "{expected}");

    let mut args = vec!["digest", "lookup", path.to_str().expect("utf-8")];
    args.extend(urls.iter().map(String::as_str));
    let out = cuttle(&args, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    // `-` reads the URLs from stdin, one a line, in place among the others.
    let stdin: String = urls[1..].iter().map(|u| format!("{u}\n")).collect();
    let out = cuttle(
        &[
            "digest",
            "lookup",
            path.to_str().expect("utf-8"),
            &urls[0],
            "-",
        ],
        stdin.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn digest_help_has_a_description_and_an_example() {
    for args in [
        vec!["digest", "--help"],
        vec!["digest", "decode", "--help"],
        vec!["digest", "lookup", "--help"],
    ] {
        let out = cuttle(&args, b"");
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Examples:\n  cuttle digest "),
            "{args:?}: no example\n{help}"
        );
    }
}

#[test]
fn lookup_finds_every_object_a_real_squid_put_in_its_digest() {
    // fixtures/digest/README.md: Squid 5.7 had cached obj1..obj40.
    let urls: String = (1..=40)
        .map(|i| format!("http://127.0.0.61:28080/obj{i}\n"))
        .collect();
    let out = cuttle(
        &[
            "digest",
            "lookup",
            "fixtures/digest/store-digest-squid57.bin",
            "-",
        ],
        urls.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 40, "{stdout}");
    assert!(stdout.lines().all(|l| l.starts_with("HIT ")), "{stdout}");

    let out = cuttle(
        &[
            "digest",
            "decode",
            "fixtures/digest/store-digest-squid57.bin",
        ],
        b"",
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    assert_eq!(v["capacity"], 91);
    assert_eq!(v["count"], 91);
    assert_eq!(v["mask_size"], 57);
}
