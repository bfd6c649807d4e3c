//! Decoding captured datagrams for people: ICP and HTCP messages as JSON
//! objects (snake_case fields, numbers as numbers, URLs and header blocks as
//! strings, opaque bytes as hex), and reading hex dumps back into bytes.

use cuttle_protocol::digest::DigestRef;
use cuttle_protocol::htcp::{self, Auth, Detail, Identity, Op, Specifier, TstReply};
use cuttle_protocol::icp::{self, Body};
use cuttle_protocol::{Error, Text};
use serde_json::{json, Map, Value};

/// Decodes one ICP datagram into a JSON object.
pub fn icp_json(datagram: &[u8]) -> Result<Value, Error> {
    let m = icp::parse(datagram)?;
    let mut obj = Map::new();
    obj.insert("protocol".into(), json!("icp"));
    obj.insert("opcode".into(), json!(m.opcode().name()));
    obj.insert("opcode_number".into(), json!(m.opcode().value()));
    obj.insert("version".into(), json!(m.version.value()));
    obj.insert("length".into(), json!(datagram.len()));
    obj.insert("reqnum".into(), json!(m.reqnum));
    obj.insert("options".into(), json!(m.options.0));
    let mut flags = Vec::new();
    if m.options.hit_obj() {
        flags.push("hit_obj");
    }
    if m.options.src_rtt() {
        flags.push("src_rtt");
    }
    obj.insert("option_flags".into(), json!(flags));
    obj.insert("option_data".into(), json!(m.option_data));
    if m.options.src_rtt() {
        let (rtt_ms, hops) = icp::split_src_rtt(m.option_data);
        obj.insert("src_rtt".into(), json!({ "rtt_ms": rtt_ms, "hops": hops }));
    }
    obj.insert("sender".into(), json!(m.sender.to_string()));
    match m.body {
        Body::Query { requester, .. } => {
            obj.insert("requester".into(), json!(requester.to_string()));
        }
        Body::HitObj { object, .. } => {
            obj.insert("object_length".into(), json!(object.len()));
            obj.insert("object_hex".into(), json!(hex::encode(object)));
        }
        Body::Unknown { payload, .. } => {
            // No layout known: no URL, the payload as bytes.
            obj.insert("payload_hex".into(), json!(hex::encode(payload)));
            return Ok(Value::Object(obj));
        }
        _ => {}
    }
    put_text(&mut obj, "url", m.body.url());
    Ok(Value::Object(obj))
}

/// Decodes one HTCP datagram into a JSON object.
pub fn htcp_json(datagram: &[u8]) -> Result<Value, Error> {
    let m = htcp::parse(datagram)?;
    let mut obj = Map::new();
    obj.insert("protocol".into(), json!("htcp"));
    obj.insert("length".into(), json!(datagram.len()));
    obj.insert("major".into(), json!(0));
    obj.insert("minor".into(), json!(m.minor));
    let layout = match m.layout() {
        htcp::Layout::Rfc => "rfc",
        htcp::Layout::Old => "old",
    };
    obj.insert("layout".into(), json!(layout));
    // DATA LENGTH is the datagram minus the header and the AUTH section
    // (which the parse kept whole, even unparsed).
    let data_length = datagram
        .len()
        .saturating_sub(htcp::HEADER_LEN + m.auth.encoded_len());
    obj.insert("data_length".into(), json!(data_length));
    obj.insert("opcode".into(), json!(m.opcode().name()));
    obj.insert("opcode_number".into(), json!(m.opcode().value()));
    obj.insert("rr".into(), json!(m.is_response()));
    obj.insert("response".into(), json!(m.response));
    if let Some(meaning) = response_meaning(&m) {
        obj.insert("response_meaning".into(), json!(meaning));
    }
    let f1_name = if m.is_response() { "mo" } else { "rd" };
    obj.insert(f1_name.into(), json!(m.f1));
    obj.insert("reserved_flags".into(), json!(m.reserved));
    obj.insert("trans_id".into(), json!(m.trans_id));
    match m.op {
        Op::NopRequest | Op::NopResponse | Op::SetResponse | Op::ClrResponse => {}
        Op::MonResponse(None) | Op::TstResponse(TstReply::Empty) => {}
        Op::TstRequest(s) => {
            obj.insert("specifier".into(), specifier_json(&s));
        }
        Op::TstResponse(TstReply::Detail(d)) => {
            obj.insert("detail".into(), detail_json(&d));
        }
        Op::TstResponse(TstReply::CacheHdrs(c)) => {
            put_text(&mut obj, "cache_hdrs", c);
        }
        Op::MonRequest { time } => {
            obj.insert("time".into(), json!(time));
        }
        Op::MonResponse(Some(r)) => {
            obj.insert("time".into(), json!(r.time));
            obj.insert(
                "action".into(),
                json!(format!("{:?}", r.action).to_lowercase()),
            );
            obj.insert(
                "reason".into(),
                json!(format!("{:?}", r.reason).to_lowercase()),
            );
            obj.insert("identity".into(), identity_json(&r.identity));
        }
        Op::SetRequest(id) => {
            obj.insert("identity".into(), identity_json(&id));
        }
        Op::ClrRequest {
            reserved,
            reason,
            specifier,
        } => {
            obj.insert("clr_reserved".into(), json!(reserved));
            obj.insert("reason".into(), json!(reason));
            obj.insert("specifier".into(), specifier_json(&specifier));
        }
        Op::Unknown { op_data, .. } => {
            obj.insert("op_data_hex".into(), json!(hex::encode(op_data)));
        }
    }
    obj.insert("auth".into(), auth_json(&m.auth));
    Ok(Value::Object(obj))
}

fn response_meaning(m: &htcp::Message<'_>) -> Option<&'static str> {
    if !m.is_response() {
        return None;
    }
    if m.is_overall_response() {
        return Some(match m.response {
            htcp::overall::AUTH_REQUIRED => "authentication required",
            htcp::overall::AUTH_FAILED => "authentication failed",
            htcp::overall::OPCODE_NOT_IMPLEMENTED => "opcode not implemented",
            htcp::overall::MAJOR_UNSUPPORTED => "major version not supported",
            htcp::overall::MINOR_UNSUPPORTED => "minor version not supported",
            htcp::overall::INAPPROPRIATE_OPCODE => "inappropriate, disallowed or undesired opcode",
            _ => return None,
        });
    }
    Some(match (m.opcode(), m.response) {
        (htcp::Opcode::Tst, htcp::tst::FOUND) => "found",
        (htcp::Opcode::Tst, htcp::tst::NOT_FOUND) => "not found",
        (htcp::Opcode::Clr, htcp::clr::PURGED) => "purged",
        (htcp::Opcode::Clr, htcp::clr::KEPT) => "kept",
        (htcp::Opcode::Clr, htcp::clr::NOT_FOUND) => "not found",
        (htcp::Opcode::Mon | htcp::Opcode::Set, 0) => "accepted",
        (htcp::Opcode::Mon | htcp::Opcode::Set, 1) => "refused",
        _ => return None,
    })
}

fn specifier_json(s: &Specifier<'_>) -> Value {
    let mut obj = Map::new();
    put_text(&mut obj, "method", s.method);
    put_text(&mut obj, "uri", s.uri);
    put_text(&mut obj, "version", s.version);
    put_text(&mut obj, "req_hdrs", s.req_hdrs);
    Value::Object(obj)
}

fn detail_json(d: &Detail<'_>) -> Value {
    let mut obj = Map::new();
    put_text(&mut obj, "resp_hdrs", d.resp_hdrs);
    put_text(&mut obj, "entity_hdrs", d.entity_hdrs);
    put_text(&mut obj, "cache_hdrs", d.cache_hdrs);
    Value::Object(obj)
}

fn identity_json(id: &Identity<'_>) -> Value {
    json!({ "specifier": specifier_json(&id.specifier), "detail": detail_json(&id.detail) })
}

fn auth_json(auth: &Auth<'_>) -> Value {
    if *auth == Auth::Omitted {
        return Value::Null;
    }
    let mut obj = Map::new();
    obj.insert("length".into(), json!(auth.encoded_len()));
    match auth {
        Auth::Omitted | Auth::None => {}
        Auth::Signed {
            sig_time,
            sig_expire,
            key_name,
            signature,
        } => {
            obj.insert("sig_time".into(), json!(sig_time));
            obj.insert("sig_expire".into(), json!(sig_expire));
            put_text(&mut obj, "key_name", *key_name);
            obj.insert(
                "signature_hex".into(),
                json!(hex::encode(signature.as_bytes())),
            );
        }
        Auth::Unparsed(section) => {
            obj.insert("unparsed_hex".into(), json!(hex::encode(section)));
        }
    }
    Value::Object(obj)
}

/// A Cache Digest's header (every field, as Squid names them) and the share
/// of its mask's bits set; `length` is the bytes of the whole file.
pub fn digest_json(length: usize, d: &DigestRef<'_>) -> Value {
    let h = &d.header;
    json!({
        "current_version": h.current_version,
        "required_version": h.required_version,
        "capacity": h.capacity,
        "count": h.count,
        "del_count": h.del_count,
        "mask_size": h.mask_size,
        "bits_per_entry": h.bits_per_entry,
        "hash_functions": h.hash_functions,
        "length": length,
        "fill_ratio": d.fill_ratio(),
    })
}

/// Text fields are JSON strings; bytes that are not UTF-8 are replaced in the
/// string and given exactly in an extra `<name>_hex` field.
fn put_text(obj: &mut Map<String, Value>, name: &str, text: Text<'_>) {
    obj.insert(name.into(), json!(text.to_string_lossy()));
    if text.to_str().is_none() {
        obj.insert(format!("{name}_hex"), json!(hex::encode(text.as_bytes())));
    }
}

/// Reads hex text (as `xxd -p` writes it): pairs of hex digits, with any
/// ASCII whitespace ignored. The error names the offending character.
pub fn bytes_from_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if let Some((pos, c)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "not a hex digit: {c:?} (hex digit number {})",
            pos + 1
        ));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    hex::decode(&digits).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_text_with_whitespace() {
        assert_eq!(bytes_from_hex("01 02\n0a ff\n"), Ok(vec![1, 2, 10, 255]));
        assert!(bytes_from_hex("0g").unwrap_err().contains("'g'"));
        assert!(bytes_from_hex("abc").unwrap_err().contains("odd"));
    }

    #[test]
    fn unknown_opcodes_are_decoded_by_number_with_their_bytes_in_hex() {
        // An ICP QUERY for http://a/ with opcode 99.
        let mut icp = vec![99, 2, 0, 34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        icp.extend_from_slice(b"\0\0\0\0http://a/\0");
        let v = icp_json(&icp).expect("a well-framed datagram decodes");
        assert_eq!(v["opcode_number"], 99);
        assert_eq!(v["payload_hex"], "00000000687474703a2f2f612f00");
        // An HTCP request with opcode 9, OP-DATA "ab" and an AUTH LENGTH of 9.
        let htcp = [
            0, 18, 0, 1, 0, 10, 0x90, 0, 0, 0, 0, 7, b'a', b'b', 0, 9, 1, 2,
        ];
        let v = htcp_json(&htcp).expect("a well-framed datagram decodes");
        assert_eq!(v["opcode_number"], 9);
        assert_eq!(v["op_data_hex"], "6162");
        assert_eq!(v["data_length"], 10);
        assert_eq!(v["auth"]["unparsed_hex"], "00090102");
    }

    #[test]
    fn non_utf8_text_keeps_its_bytes_in_hex() {
        let mut obj = Map::new();
        put_text(&mut obj, "url", Text(b"http://a/\xff"));
        assert_eq!(obj["url_hex"], json!("687474703a2f2f612fff"));
        let mut obj = Map::new();
        put_text(&mut obj, "url", Text(b"http://a/"));
        assert!(!obj.contains_key("url_hex"));
    }
}
