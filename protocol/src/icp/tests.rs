//! Unit tests of the ICP codec: layout, strict framing, unknown values kept.

use super::*;

fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out).expect("encodable");
    out
}

#[test]
fn query_layout_matches_rfc() {
    let wire = encode(&Message::query(1, b"http://a/"));
    assert_eq!(wire.len(), 20 + 4 + 9 + 1);
    assert_eq!(&wire[..4], &[1, 2, 0, 34]);
    assert_eq!(&wire[4..8], &1u32.to_be_bytes());
    assert_eq!(&wire[20..24], &[0, 0, 0, 0]);
    assert_eq!(&wire[24..], b"http://a/\0");
}

#[test]
fn length_mismatch_names_field_and_offset() {
    let mut wire = encode(&Message::query(1, b"http://a/"));
    wire[3] = 200;
    let err = parse(&wire).unwrap_err();
    assert_eq!(err.field, "length");
    assert_eq!(err.offset, 2);
    assert_eq!(
        err.kind,
        ErrorKind::LengthMismatch {
            declared: 200,
            actual: 34
        }
    );
}

#[test]
fn unknown_opcode_parses_and_keeps_its_value() {
    let mut wire = encode(&Message::query(1, b"http://a/"));
    wire[0] = 99;
    let parsed = parse(&wire).expect("a well-framed datagram with an unknown opcode parses");
    assert_eq!(parsed.opcode(), Opcode::Unknown(99));
    assert_eq!(parsed.opcode().value(), 99);
    assert!(!parsed.opcode().is_known());
    assert_eq!(parsed.reqnum, 1);
    // The payload's layout is unknown: kept whole (requester + URL + NUL).
    assert_eq!(
        parsed.body,
        Body::Unknown {
            opcode: 99,
            payload: &wire[HEADER_LEN..]
        }
    );
    assert_eq!(encode(&parsed), wire, "re-encodes byte for byte");
    // Framing is still checked.
    wire[3] = 200;
    assert_eq!(parse(&wire).unwrap_err().field, "length");
    // Every unnamed value is Unknown; every named one round-trips.
    for value in 0..=u8::MAX {
        let opcode = Opcode::from(value);
        assert_eq!(u8::from(opcode), value);
        assert_eq!(Opcode::from_u8(value).is_some(), opcode.is_known());
    }
}

#[test]
fn unknown_version_parses_and_keeps_its_value() {
    let mut wire = encode(&Message::query(1, b"http://a/"));
    wire[1] = 9;
    let parsed = parse(&wire).expect("a well-framed datagram of an unknown version parses");
    assert_eq!(parsed.version, Version::Unknown(9));
    assert!(!parsed.version.is_known());
    assert_eq!(parsed.body.url(), Text(b"http://a/"));
    assert_eq!(encode(&parsed), wire);
}

#[test]
fn header_parses_alone_when_the_payload_does_not() {
    let mut wire = encode(&Message::query(77, b"http://a/"));
    let last = wire.len() - 1;
    wire[last] = b'x';
    assert_eq!(parse(&wire).unwrap_err().kind, ErrorKind::MissingNul);
    let header = parse_header(&wire).expect("the header is sound");
    assert_eq!((header.opcode, header.reqnum), (Opcode::Query, 77));
    assert_eq!(opcode_of(&wire), Some(Opcode::Query));
    assert_eq!(opcode_of(&[]), None);
    wire[3] = 1;
    assert_eq!(parse_header(&wire).unwrap_err().field, "length");
    assert_eq!(
        parse_header(&[1, 2, 0]).unwrap_err().kind,
        ErrorKind::Truncated
    );
}

#[test]
fn one_byte_is_truncated_in_the_version() {
    let err = parse(&[1]).unwrap_err();
    assert_eq!(
        (err.kind, err.field, err.offset),
        (ErrorKind::Truncated, "version", 1)
    );
}

#[test]
fn url_must_end_with_nul() {
    let mut wire = encode(&Message::query(1, b"http://a/"));
    let last = wire.len() - 1;
    wire[last] = b'x';
    let err = parse(&wire).unwrap_err();
    assert_eq!(
        (err.kind, err.field, err.offset),
        (ErrorKind::MissingNul, "url", 24)
    );
}

#[test]
fn bytes_after_the_nul_are_rejected() {
    let mut wire = encode(&Message::query(1, b"http://a/b"));
    let nul_at = 24 + 8;
    wire[nul_at] = 0; // "http://a" NUL "b" NUL
    let err = parse(&wire).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TrailingData { len: 2 });
    assert_eq!((err.field, err.offset), ("payload", nul_at + 1));
}

#[test]
fn short_header_is_truncated() {
    let err = parse(&[1, 2, 0]).unwrap_err();
    assert_eq!(
        (err.kind, err.field, err.offset),
        (ErrorKind::Truncated, "length", 2)
    );
}

#[test]
fn hit_obj_carries_its_object() {
    let m = Message {
        version: Version::V2,
        reqnum: 9,
        options: Options(Options::HIT_OBJ),
        option_data: 0,
        sender: Ipv4Addr::UNSPECIFIED,
        body: Body::HitObj {
            url: Text(b"http://a/"),
            object: b"HTTP/1.0 200 OK\r\n\r\nhi",
        },
    };
    let wire = encode(&m);
    assert_eq!(parse(&wire).unwrap(), m);
    let mut short = wire.clone();
    short.pop();
    let len = short.len() as u16;
    short[2..4].copy_from_slice(&len.to_be_bytes());
    let err = parse(&short).unwrap_err();
    assert_eq!((err.kind, err.field), (ErrorKind::Truncated, "object"));
}

#[test]
fn encode_refuses_nul_and_oversize() {
    let mut out = Vec::new();
    let err = Message::query(1, b"a\0b").encode(&mut out).unwrap_err();
    assert_eq!((err.field, err.offset), ("url", 25));
    let long = vec![b'a'; MAX_URL_LEN + 1];
    assert!(Message::query(1, &long).encode(&mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn reply_echoes_reqnum_and_url() {
    let q = Message::query(42, b"http://a/");
    let r = q.reply(Opcode::Hit).unwrap();
    assert_eq!(r.reqnum, 42);
    assert_eq!(
        r.body,
        Body::Hit {
            url: Text(b"http://a/")
        }
    );
    assert!(q.reply(Opcode::HitObj).is_none());
    assert!(q.reply(Opcode::Unknown(99)).is_none());
}

#[test]
fn src_rtt_word() {
    assert_eq!(split_src_rtt(0x0002_0005), (5, 2));
    assert_eq!(join_src_rtt(5, 2), 0x0002_0005);
}
