//! The `cuttle` binary as a user runs it: packet decoding to JSON, hex
//! input, one-line errors with exit status 1, `check`, and help texts.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn cuttle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cuttle runs")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON value")
}

fn scratch(name: &str, contents: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write scratch file");
    path
}

#[test]
fn icp_decode_prints_the_fields_as_json() {
    let v = json_of(&cuttle(&[
        "icp",
        "decode",
        "fixtures/icp/v2-query-squid57.bin",
    ]));
    assert_eq!(v["protocol"], "icp");
    assert_eq!(v["opcode"], "ICP_QUERY");
    assert_eq!(v["opcode_number"], 1);
    assert_eq!(v["version"], 2);
    assert_eq!(v["length"], 54);
    assert_eq!(v["reqnum"], 1);
    assert_eq!(v["options"], 0);
    assert_eq!(v["requester"], "0.0.0.0");
    assert_eq!(v["url"], "http://127.0.0.1:18080/obj/5k");

    let v = json_of(&cuttle(&[
        "icp",
        "decode",
        "fixtures/icp/v2-hit-src-rtt-squid57.bin",
    ]));
    assert_eq!(v["opcode"], "ICP_HIT");
    assert_eq!(v["option_flags"], serde_json::json!(["src_rtt"]));
    assert_eq!(v["src_rtt"]["rtt_ms"], 1);
    assert_eq!(v["src_rtt"]["hops"], 0);
}

#[test]
fn htcp_decode_prints_the_fields_as_json() {
    let v = json_of(&cuttle(&[
        "htcp",
        "decode",
        "fixtures/htcp/tst-request-squid57.bin",
    ]));
    assert_eq!(v["protocol"], "htcp");
    assert_eq!(v["opcode"], "HTCP_TST");
    assert_eq!(v["minor"], 1);
    assert_eq!(v["layout"], "rfc");
    assert_eq!(v["rr"], false);
    assert_eq!(v["rd"], true);
    assert_eq!(v["trans_id"], 1);
    assert_eq!(v["specifier"]["method"], "GET");
    assert_eq!(v["specifier"]["uri"], "http://127.0.0.1:18080/obj/5k");
    assert_eq!(v["specifier"]["version"], "1/1");
    assert_eq!(v["auth"]["length"], 2);

    let v = json_of(&cuttle(&[
        "htcp",
        "decode",
        "fixtures/htcp/clr-response-not-found-squid57.bin",
    ]));
    assert_eq!(v["opcode"], "HTCP_CLR");
    assert_eq!(v["rr"], true);
    assert_eq!(v["response"], 2);
    assert_eq!(v["response_meaning"], "not found");
}

#[test]
fn hex_input_and_opaque_bytes_as_hex() {
    // A HIT_OBJ whose object is two bytes, written as hex text with spaces and newlines.
    let mut wire = vec![
        23, 2, 0, 0, 0, 0, 0, 9, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    wire.extend_from_slice(b"http://a/\0");
    wire.extend_from_slice(&[0, 2, 0xca, 0xfe]);
    let len = wire.len() as u16;
    wire[2..4].copy_from_slice(&len.to_be_bytes());
    let text: String = wire
        .chunks(8)
        .map(|c| c.iter().map(|b| format!("{b:02x} ")).collect::<String>() + "\n")
        .collect();
    let path = scratch("hit-obj.hex", text.as_bytes());
    let v = json_of(&cuttle(&[
        "icp",
        "decode",
        "--hex",
        path.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(v["opcode"], "ICP_HIT_OBJ");
    assert_eq!(v["option_flags"], serde_json::json!(["hit_obj"]));
    assert_eq!(v["object_length"], 2);
    assert_eq!(v["object_hex"], "cafe");
    assert_eq!(v["url"], "http://a/");
}

#[test]
fn a_malformed_packet_is_one_line_and_status_1() {
    let path = scratch("bad.hex", b"01 02 00 10 00");
    let out = cuttle(&["icp", "decode", "--hex", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("malformed ICP datagram"), "{err}");
    assert!(err.contains("field length at offset 2"), "{err}");

    // An ICP datagram is not an HTCP one: its first two bytes are read as HTCP's length.
    let out = cuttle(&["htcp", "decode", "fixtures/icp/v2-query-squid57.bin"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("field length at offset 0"), "{err}");

    let out = cuttle(&["icp", "decode", "/nonexistent/cuttle/file.bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn check_reports_file_line_and_fails_on_errors() {
    let out = cuttle(&["check", "-f", "fixtures/squid-conf/sibling-mesh.conf"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fixtures/squid-conf/sibling-mesh.conf:65: warning: refresh_pattern"),
        "{err}"
    );

    let conf = scratch(
        "bad.conf",
        b"http_port 3128\ncache_peer 10.0.0.1 sibling notaport 3130\nfrobnicate yes\n",
    );
    let out = cuttle(&["check", "-f", conf.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:2: error:"), "{err}");
    assert!(err.contains("notaport"), "{err}");
    assert!(err.contains("bad.conf:3: warning:"), "{err}");

    let out = cuttle(&[
        "check",
        "-f",
        "fixtures/squid-conf/debian-default.conf",
        "--map",
        "/etc/squid=fixtures/squid-conf",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    // The mapped include was found (its logfile_rotate is known: silent).
    assert!(!err.contains("matches no file"), "{err}");
    assert!(err.contains("0 error(s), 1 warning(s)"), "{err}");
}

#[test]
fn help_has_a_description_and_an_example_everywhere() {
    for args in [
        vec!["--help"],
        vec!["icp", "--help"],
        vec!["htcp", "--help"],
        vec!["icp", "decode", "--help"],
        vec!["htcp", "decode", "--help"],
        vec!["check", "--help"],
        vec!["run", "--help"],
        vec!["store", "--help"],
        vec!["store", "verify", "--help"],
        vec!["store", "ls", "--help"],
    ] {
        let out = cuttle(&args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        let first = help.lines().next().unwrap_or("");
        assert!(!first.trim().is_empty(), "{args:?}: no description");
        assert!(
            help.contains("Examples:\n  cuttle "),
            "{args:?}: no example\n{help}"
        );
    }
}
