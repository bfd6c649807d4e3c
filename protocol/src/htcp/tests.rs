//! Unit tests of the HTCP codec: both layouts, strict sections, unknown
//! opcodes and unparsed AUTH kept, round trips.

use super::*;

fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out).expect("encodable");
    out
}

fn tst() -> Message<'static> {
    Message::tst_request(5, Specifier::new("GET", "http://a/"))
}

fn err_of(wire: &[u8]) -> (ErrorKind, &'static str, usize) {
    let e = parse(wire).expect_err("must not parse");
    (e.kind, e.field, e.offset)
}

#[test]
fn header_length_must_match() {
    let mut wire = encode(&tst());
    wire.push(0);
    let len = wire.len();
    assert_eq!(
        err_of(&wire),
        (
            ErrorKind::LengthMismatch {
                declared: len - 1,
                actual: len
            },
            "length",
            0
        )
    );
}

#[test]
fn major_must_be_zero() {
    let mut wire = encode(&tst());
    wire[2] = 1;
    assert_eq!(err_of(&wire), (ErrorKind::UnknownVersion(1), "major", 2));
}

#[test]
fn data_length_out_of_range() {
    let mut wire = encode(&tst());
    wire[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert!(matches!(
        err_of(&wire),
        (
            ErrorKind::LengthMismatch { declared: 7, .. },
            "data_length",
            4
        )
    ));
    wire[4..6].copy_from_slice(&500u16.to_be_bytes());
    assert!(matches!(
        err_of(&wire),
        (
            ErrorKind::LengthMismatch { declared: 500, .. },
            "data_length",
            4
        )
    ));
}

#[test]
fn unknown_opcode_parses_and_keeps_its_value_in_either_layout() {
    let mut wire = encode(&tst());
    wire[6] = 0x90; // RFC layout: opcode 9
    let parsed = parse(&wire).expect("a well-framed datagram with an unknown opcode parses");
    assert_eq!(parsed.opcode(), Opcode::Unknown(9));
    assert!(!parsed.opcode().is_known());
    assert_eq!(
        parsed.op,
        Op::Unknown {
            opcode: 9,
            rr: false,
            op_data: &wire[12..wire.len() - 2]
        }
    );
    assert!(parsed.response_desired(), "RD is still read");
    assert_eq!(encode(&parsed), wire, "re-encodes byte for byte");
    wire[7] |= 0x01; // RR: an unknown response
    assert!(parse(&wire).expect("parses").is_response());
    wire[3] = 0; // old layout reads the low nibble: 0 = NOP, then OP-DATA is left over
    assert_eq!(err_of(&wire).1, "op_data");
    wire[6] = 0x07;
    let old = parse(&wire).expect("opcode 7 in the old layout");
    assert_eq!(old.opcode(), Opcode::Unknown(7));
    assert_eq!(encode(&old), wire);
    for value in 0..16 {
        assert_eq!(u8::from(Opcode::from(value)), value);
        assert_eq!(Opcode::from_u8(value).is_some(), value < 5);
    }
}

#[test]
fn unknown_opcode_that_does_not_fit_a_nibble_is_not_encoded() {
    let mut m = tst();
    m.op = Op::Unknown {
        opcode: 16,
        rr: false,
        op_data: b"",
    };
    let mut out = Vec::new();
    assert_eq!(m.encode(&mut out).unwrap_err().field, "opcode");
    assert!(out.is_empty());
}

#[test]
fn countstr_overrunning_its_section_is_truncated() {
    let mut wire = encode(&tst());
    // METHOD length 3 -> 60: runs past DATA into AUTH.
    wire[12..14].copy_from_slice(&60u16.to_be_bytes());
    // What DATA holds after the METHOD length: all but header, DATA header,
    // the length itself and the 2-byte AUTH.
    let in_data = wire.len() - 4 - 8 - 2 - 2;
    assert_eq!(
        err_of(&wire),
        (
            ErrorKind::LengthMismatch {
                declared: 60,
                actual: in_data
            },
            "method",
            12
        )
    );
}

#[test]
fn op_data_must_be_consumed_exactly() {
    let mut m = tst();
    m.op = Op::NopRequest;
    let mut wire = encode(&m);
    // Grow DATA by one byte of junk before AUTH.
    wire.insert(12, 0xaa);
    let len = wire.len() as u16;
    wire[0..2].copy_from_slice(&len.to_be_bytes());
    wire[4..6].copy_from_slice(&9u16.to_be_bytes());
    assert_eq!(
        err_of(&wire),
        (ErrorKind::TrailingData { len: 1 }, "op_data", 12)
    );
}

#[test]
fn malformed_auth_is_kept_unparsed() {
    let mut wire = encode(&tst());
    let at = wire.len() - 2;
    wire[at..].copy_from_slice(&4u16.to_be_bytes());
    let parsed = parse(&wire).expect("DATA is sound; AUTH is not read");
    assert_eq!(parsed.auth, Auth::Unparsed(&[0, 4]));
    assert_eq!(parsed.op, tst().op);
    assert_eq!(encode(&parsed), wire, "re-encodes byte for byte");
    // One byte of AUTH, and a signed AUTH whose KEY-NAME overruns.
    for auth in [&[7u8][..], &[0, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 9, 0, 0]] {
        let mut wire = encode(&tst());
        wire.truncate(wire.len() - 2);
        wire.extend_from_slice(auth);
        let len = wire.len() as u16;
        wire[0..2].copy_from_slice(&len.to_be_bytes());
        let parsed = parse(&wire).expect("AUTH is not read");
        assert_eq!(parsed.auth, Auth::Unparsed(auth));
        assert_eq!(parsed.auth.encoded_len(), auth.len());
        assert_eq!(encode(&parsed), wire);
    }
}

#[test]
fn all_opcodes_round_trip_in_both_layouts() {
    let spec = Specifier::new("GET", "http://a/");
    let detail = Detail {
        resp_hdrs: "Age: 1\r\n".into(),
        entity_hdrs: "".into(),
        cache_hdrs: "Cache-Flags: incomplete\r\n".into(),
    };
    let identity = Identity {
        specifier: spec,
        detail,
    };
    let ops = [
        Op::NopRequest,
        Op::NopResponse,
        Op::TstRequest(spec),
        Op::TstResponse(TstReply::Detail(detail)),
        Op::TstResponse(TstReply::CacheHdrs("Cache-Policy: no-cache\r\n".into())),
        Op::TstResponse(TstReply::Empty),
        Op::MonRequest { time: 30 },
        Op::MonResponse(None),
        Op::MonResponse(Some(MonReply {
            time: 29,
            action: MonAction::Replaced,
            reason: MonReason::Expired,
            identity,
        })),
        Op::SetRequest(identity),
        Op::SetResponse,
        Op::ClrRequest {
            reserved: 0,
            reason: clr::REASON_GONE,
            specifier: spec,
        },
        Op::ClrResponse,
        Op::Unknown {
            opcode: 9,
            rr: false,
            op_data: b"\x00\x01x",
        },
        Op::Unknown {
            opcode: 15,
            rr: true,
            op_data: b"",
        },
    ];
    let auths = [
        Auth::None,
        Auth::Omitted,
        Auth::Signed {
            sig_time: 1,
            sig_expire: 2,
            key_name: "k".into(),
            signature: Text(&[0xde, 0xad, 0xbe, 0xef]),
        },
        Auth::Unparsed(&[0, 9, 1]),
    ];
    for minor in [MINOR_OLD, MINOR_RFC, 7] {
        for op in ops {
            for auth in auths {
                let m = Message {
                    minor,
                    response: if op.is_response() { 3 } else { 0 },
                    f1: true,
                    reserved: 0x15,
                    trans_id: 0xfeed_f00d,
                    op,
                    auth,
                };
                let wire = encode(&m);
                assert_eq!(parse(&wire), Ok(m), "{m:?}");
                assert_eq!(is_response_datagram(&wire), op.is_response(), "{m:?}");
                let auth_at = wire.len() - auth.encoded_len();
                assert_eq!(
                    auth_at,
                    usize::from(u16::from_be_bytes([wire[4], wire[5]])) + 4
                );
            }
        }
    }
}

#[test]
fn squids_captures_tell_responses_by_the_rr_bit_alone() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/htcp/");
    for (file, response) in [
        ("tst-request-squid57.bin", false),
        ("tst-request-oldsquid-squid57.bin", false),
        ("clr-request-purge-squid57.bin", false),
        ("tst-response-hit-squid57.bin", true),
        ("tst-response-miss-oldsquid-squid57.bin", true),
        ("clr-response-purged-squid57.bin", true),
    ] {
        let wire = std::fs::read(format!("{dir}{file}")).expect(file);
        assert_eq!(is_response_datagram(&wire), response, "{file}");
    }
    assert!(!is_response_datagram(&[0, 8, 0, 1, 0, 4, 0x20]));
}

#[test]
fn response_uses_request_layout_and_transaction() {
    let mut req = tst();
    req.minor = MINOR_OLD;
    req.trans_id = 0;
    let resp = req.response(
        tst::NOT_FOUND,
        Op::TstResponse(TstReply::Detail(Detail::default())),
    );
    let wire = encode(&resp);
    assert_eq!(
        wire,
        [0, 20, 0, 0, 0, 14, 0x11, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    );
}

#[test]
fn encode_rejects_what_cannot_be_represented() {
    let long = "x".repeat(70_000);
    let m = Message::tst_request(1, Specifier::new("GET", &long));
    let mut out = vec![9];
    let err = m.encode(&mut out).unwrap_err();
    assert_eq!(err.field, "uri");
    assert_eq!(out, [9], "nothing is left behind");
    let mut bad = tst();
    bad.response = 16;
    assert!(bad.encode(&mut out).is_err());
}
