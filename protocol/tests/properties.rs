//! Properties of the codecs: for every message type, parse(encode(m)) == m
//! and the encoding is what parse read; parse never panics on arbitrary
//! bytes nor on valid datagrams with bytes flipped, cut or appended; the
//! same for Cache Digests.

use std::net::Ipv4Addr;

use cuttle_protocol::digest::{self, Digest};
use cuttle_protocol::htcp::{
    self, Auth, Detail, Identity, MonAction, MonReason, MonReply, Op, Specifier, TstReply,
};
use cuttle_protocol::icp::{self, Body, Options, Version};
use cuttle_protocol::Text;
use proptest::prelude::*;

/// The parts of an ICP message that own their bytes, so a borrowed
/// `icp::Message` can be built from them inside the test body.
#[derive(Debug, Clone)]
struct IcpParts {
    opcode: u8,
    version: Version,
    reqnum: u32,
    options: u32,
    option_data: u32,
    sender: u32,
    requester: u32,
    url: Vec<u8>,
    object: Vec<u8>,
}

impl IcpParts {
    fn message(&self) -> icp::Message<'_> {
        let url = Text(&self.url);
        let body = match self.opcode {
            1 => Body::Query {
                requester: Ipv4Addr::from(self.requester),
                url,
            },
            23 => Body::HitObj {
                url,
                object: &self.object,
            },
            op => match icp::Opcode::from(op) {
                // Unknown: the payload is anything, kept whole.
                icp::Opcode::Unknown(opcode) => Body::Unknown {
                    opcode,
                    payload: &self.object,
                },
                known => Body::url_only(known, url).expect("a URL-only opcode"),
            },
        };
        icp::Message {
            version: self.version,
            reqnum: self.reqnum,
            options: Options(self.options),
            option_data: self.option_data,
            sender: Ipv4Addr::from(self.sender),
            body,
        }
    }
}

fn url_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z]{1,8}://[a-z0-9.]{1,20}(:[0-9]{1,5})?/[ -~]{0,60}".prop_map(String::into_bytes),
        proptest::collection::vec(1u8..=255, 0..300),
    ]
}

fn icp_parts() -> impl Strategy<Value = IcpParts> {
    (
        prop::sample::select(vec![1u8, 2, 3, 4, 10, 11, 21, 22, 23, 0, 5, 99, 255]),
        prop_oneof![
            Just(Version::V2),
            Just(Version::V3),
            (4u8..=255).prop_map(Version::Unknown)
        ],
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        url_bytes(),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(
            |(opcode, version, reqnum, options, option_data, sender, requester, url, object)| {
                IcpParts {
                    opcode,
                    version,
                    reqnum,
                    options,
                    option_data,
                    sender,
                    requester,
                    url,
                    object,
                }
            },
        )
}

/// Owned strings and structural choices from which any HTCP message is built.
#[derive(Debug, Clone)]
struct HtcpParts {
    minor: u8,
    response: u8,
    f1: bool,
    reserved: u8,
    trans_id: u32,
    op_kind: u8,
    small: (u8, u8, u8, u16),
    strings: Vec<Vec<u8>>,
    auth_kind: u8,
    sig: (u32, u32),
    unparsed_auth: Vec<u8>,
}

impl HtcpParts {
    fn text(&self, i: usize) -> Text<'_> {
        Text(&self.strings[i % self.strings.len()])
    }

    fn specifier(&self) -> Specifier<'_> {
        Specifier {
            method: self.text(0),
            uri: self.text(1),
            version: self.text(2),
            req_hdrs: self.text(3),
        }
    }

    fn detail(&self) -> Detail<'_> {
        Detail {
            resp_hdrs: self.text(4),
            entity_hdrs: self.text(5),
            cache_hdrs: self.text(6),
        }
    }

    fn message(&self) -> htcp::Message<'_> {
        let (time, action, reason, clr_reserved) = self.small;
        let identity = Identity {
            specifier: self.specifier(),
            detail: self.detail(),
        };
        let op = match self.op_kind % 14 {
            0 => Op::NopRequest,
            1 => Op::NopResponse,
            2 => Op::TstRequest(self.specifier()),
            3 => Op::TstResponse(TstReply::Detail(self.detail())),
            4 => Op::TstResponse(TstReply::CacheHdrs(self.text(6))),
            5 => Op::TstResponse(TstReply::Empty),
            6 => Op::MonRequest { time },
            7 => Op::MonResponse(None),
            8 => Op::MonResponse(Some(MonReply {
                time,
                action: match action % 5 {
                    0 => MonAction::Added,
                    1 => MonAction::Refreshed,
                    2 => MonAction::Replaced,
                    3 => MonAction::Deleted,
                    _ => MonAction::Other(4 + action % 12),
                },
                reason: match reason % 7 {
                    0 => MonReason::Other,
                    1 => MonReason::ClientFetch,
                    2 => MonReason::ClientFetchNoCache,
                    3 => MonReason::Prefetch,
                    4 => MonReason::Expired,
                    5 => MonReason::PurgedForSpace,
                    _ => MonReason::Unknown(6 + reason % 10),
                },
                identity,
            })),
            9 => Op::SetRequest(identity),
            10 => Op::SetResponse,
            11 => Op::ClrRequest {
                reserved: clr_reserved & 0x0fff,
                reason: reason & 0x0f,
                specifier: self.specifier(),
            },
            12 => Op::ClrResponse,
            _ => Op::Unknown {
                opcode: 5 + time % 11,
                rr: self.f1,
                op_data: self.text(0).as_bytes(),
            },
        };
        let auth = match self.auth_kind % 4 {
            0 => Auth::None,
            1 => Auth::Omitted,
            // An AUTH LENGTH no section of these sizes has: kept unparsed.
            2 => Auth::Unparsed(&self.unparsed_auth),
            _ => Auth::Signed {
                sig_time: self.sig.0,
                sig_expire: self.sig.1,
                key_name: self.text(7),
                signature: self.text(8),
            },
        };
        htcp::Message {
            minor: self.minor,
            response: self.response & 0x0f,
            f1: self.f1,
            reserved: self.reserved & 0x3f,
            trans_id: self.trans_id,
            op,
            auth,
        }
    }
}

fn htcp_parts() -> impl Strategy<Value = HtcpParts> {
    (
        prop_oneof![Just(0u8), Just(1u8), any::<u8>()],
        any::<u8>(),
        any::<bool>(),
        any::<u8>(),
        any::<u32>(),
        any::<u8>(),
        any::<(u8, u8, u8, u16)>(),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 9),
        any::<u8>(),
        any::<(u32, u32)>(),
    )
        .prop_map(
            |(minor, response, f1, reserved, trans_id, op_kind, small, strings, auth_kind, sig)| {
                let unparsed_auth = [&[0xff, 0xff][..], &strings[7]].concat();
                HtcpParts {
                    minor,
                    response,
                    f1,
                    reserved,
                    trans_id,
                    op_kind,
                    small,
                    strings,
                    auth_kind,
                    sig,
                    unparsed_auth,
                }
            },
        )
}

/// A valid datagram with one of: a byte changed, a cut, junk appended.
fn mutate(mut wire: Vec<u8>, how: u8, at: usize, byte: u8) -> Vec<u8> {
    if wire.is_empty() {
        return wire;
    }
    let at = at % wire.len();
    match how % 3 {
        0 => wire[at] ^= byte | 1,
        1 => wire.truncate(at),
        _ => wire.extend(std::iter::repeat_n(byte, at % 16 + 1)),
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn icp_encode_then_parse_is_identity(parts in icp_parts()) {
        let m = parts.message();
        let mut wire = Vec::new();
        m.encode(&mut wire).expect("strategy yields encodable messages");
        prop_assert_eq!(wire.len(), m.encoded_len());
        prop_assert_eq!(icp::parse(&wire), Ok(m));
    }

    #[test]
    fn htcp_encode_then_parse_is_identity(parts in htcp_parts()) {
        let m = parts.message();
        let mut wire = Vec::new();
        m.encode(&mut wire).expect("strategy yields encodable messages");
        prop_assert_eq!(htcp::parse(&wire), Ok(m));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = icp::parse(&bytes);
        let _ = htcp::parse(&bytes);
    }

    #[test]
    fn icp_parse_of_a_damaged_datagram_never_panics_and_errors_point_inside(
        parts in icp_parts(), how in any::<u8>(), at in any::<usize>(), byte in any::<u8>()
    ) {
        let mut wire = Vec::new();
        parts.message().encode(&mut wire).expect("encodable");
        let damaged = mutate(wire, how, at, byte);
        match icp::parse(&damaged) {
            Ok(m) => {
                // Whatever parses must re-encode to the same bytes.
                let mut again = Vec::new();
                m.encode(&mut again).expect("parsed messages are encodable");
                prop_assert_eq!(again, damaged);
            }
            Err(e) => prop_assert!(e.offset <= damaged.len()),
        }
    }

    #[test]
    fn htcp_parse_of_a_damaged_datagram_never_panics_and_errors_point_inside(
        parts in htcp_parts(), how in any::<u8>(), at in any::<usize>(), byte in any::<u8>()
    ) {
        let mut wire = Vec::new();
        parts.message().encode(&mut wire).expect("encodable");
        let damaged = mutate(wire, how, at, byte);
        match htcp::parse(&damaged) {
            Ok(m) => {
                let mut again = Vec::new();
                m.encode(&mut again).expect("parsed messages are encodable");
                prop_assert_eq!(again, damaged);
            }
            Err(e) => prop_assert!(e.offset <= damaged.len()),
        }
    }

    /// A digest built from any keys holds them all, and its encoding
    /// parses to the same header and mask.
    #[test]
    fn digest_build_encode_parse_is_identity(
        capacity in 1u32..5000,
        bits_per_entry in 1u8..=16,
        keys in proptest::collection::vec(any::<[u8; 16]>(), 0..200),
    ) {
        let mut d = Digest::new(capacity, bits_per_entry);
        for k in &keys {
            d.add(k);
        }
        let mut wire = Vec::new();
        d.encode(&mut wire);
        let read = digest::parse(&wire).expect("own encoding parses");
        prop_assert_eq!(read.header, d.header());
        prop_assert_eq!(read.mask, d.mask());
        prop_assert!(keys.iter().all(|k| read.contains(k)));
    }

    /// A damaged digest (bytes flipped, cut or appended) never panics the
    /// parser, and an error points inside the bytes or at their end.
    #[test]
    fn digest_parse_of_damaged_bytes_never_panics(
        capacity in 1u32..2000,
        how in 0u8..3,
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let mut d = Digest::new(capacity, 5);
        d.add(&[7; 16]);
        let mut wire = Vec::new();
        d.encode(&mut wire);
        let wire = mutate(wire, how, at, byte);
        match digest::parse(&wire) {
            Err(e) => prop_assert!(e.offset <= wire.len().max(digest::HEADER_LEN)),
            Ok(parsed) => prop_assert!((0.0..=1.0).contains(&parsed.fill_ratio())),
        }
    }
}
