//! ICP (RFC 2186/2187) as Squid 5.7 speaks it: a 20-byte header, then a URL
//! (a QUERY puts a 4-byte requester address first; a HIT_OBJ appends the
//! object). Version 2 is written; version 3 queries are accepted on read.
//!
//! ```
//! use cuttle_protocol::icp::{self, Body, Message};
//! let query = Message::query(7, b"http://example.com/");
//! let mut wire = Vec::new();
//! query.encode(&mut wire).unwrap();
//! let parsed = icp::parse(&wire).unwrap();
//! assert_eq!(parsed.reqnum, 7);
//! assert!(matches!(parsed.body, Body::Query { .. }));
//! ```

use std::net::Ipv4Addr;

use nom::Parser;

use crate::error::{Error, ErrorKind};
use crate::text::Text;
use crate::wire::{bytes_field, expect_end, fail, finish, u16_field, u32_field, u8_field, PResult};

/// Bytes before the payload.
pub const HEADER_LEN: usize = 20;
/// RFC 2186: "The maximum ICP message length is 16384 octets."
pub const MAX_DATAGRAM: usize = 16384;
/// Squid's MAX_URL: longer URLs are refused before any lookup.
pub const MAX_URL_LEN: usize = 8192;

/// The opcodes Squid 5.7 sends or receives. The historic SEND/DATA*,
/// NOTIFY/INVALIDATE/DELETE and unassigned values parse as
/// [`ErrorKind::UnknownOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    Query = 1,
    Hit = 2,
    Miss = 3,
    Err = 4,
    Secho = 10,
    Decho = 11,
    MissNoFetch = 21,
    Denied = 22,
    HitObj = 23,
}

impl Opcode {
    pub fn from_u8(value: u8) -> Option<Opcode> {
        Some(match value {
            1 => Opcode::Query,
            2 => Opcode::Hit,
            3 => Opcode::Miss,
            4 => Opcode::Err,
            10 => Opcode::Secho,
            11 => Opcode::Decho,
            21 => Opcode::MissNoFetch,
            22 => Opcode::Denied,
            23 => Opcode::HitObj,
            _ => return None,
        })
    }

    /// Squid's name, as in its logs and `mgr:counters` (`ICP_QUERY`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Query => "ICP_QUERY",
            Opcode::Hit => "ICP_HIT",
            Opcode::Miss => "ICP_MISS",
            Opcode::Err => "ICP_ERR",
            Opcode::Secho => "ICP_SECHO",
            Opcode::Decho => "ICP_DECHO",
            Opcode::MissNoFetch => "ICP_MISS_NOFETCH",
            Opcode::Denied => "ICP_DENIED",
            Opcode::HitObj => "ICP_HIT_OBJ",
        }
    }
}

/// Protocol version in byte 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 2186; the only version Squid sends.
    V2 = 2,
    /// Harvest's; Squid answers it with version-2 replies.
    V3 = 3,
}

/// The 32-bit option flags. Unknown bits are kept so a message re-encodes
/// byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Options(pub u32);

impl Options {
    /// ICP_FLAG_HIT_OBJ: the querier would accept the object in a HIT_OBJ.
    pub const HIT_OBJ: u32 = 0x8000_0000;
    /// ICP_FLAG_SRC_RTT: the querier wants the responder's RTT to the origin.
    pub const SRC_RTT: u32 = 0x4000_0000;

    pub fn hit_obj(self) -> bool {
        self.0 & Self::HIT_OBJ != 0
    }

    pub fn src_rtt(self) -> bool {
        self.0 & Self::SRC_RTT != 0
    }
}

/// The option data word when SRC_RTT is in use: Squid puts the RTT in
/// milliseconds in the low 16 bits and its hop count in the high 16 bits.
pub fn split_src_rtt(option_data: u32) -> (u16, u16) {
    ((option_data & 0xffff) as u16, (option_data >> 16) as u16)
}

/// The inverse of [`split_src_rtt`].
pub fn join_src_rtt(rtt_ms: u16, hops: u16) -> u32 {
    (u32::from(hops) << 16) | u32::from(rtt_ms)
}

/// What follows the header, by opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// ICP_OP_QUERY: requester address (Squid sends 0), then the URL.
    Query {
        requester: Ipv4Addr,
        url: Text<'a>,
    },
    Hit {
        url: Text<'a>,
    },
    Miss {
        url: Text<'a>,
    },
    Err {
        url: Text<'a>,
    },
    Secho {
        url: Text<'a>,
    },
    Decho {
        url: Text<'a>,
    },
    MissNoFetch {
        url: Text<'a>,
    },
    Denied {
        url: Text<'a>,
    },
    /// ICP_OP_HIT_OBJ: the URL, then a 16-bit length and the object itself.
    HitObj {
        url: Text<'a>,
        object: &'a [u8],
    },
}

impl<'a> Body<'a> {
    pub fn opcode(&self) -> Opcode {
        match self {
            Body::Query { .. } => Opcode::Query,
            Body::Hit { .. } => Opcode::Hit,
            Body::Miss { .. } => Opcode::Miss,
            Body::Err { .. } => Opcode::Err,
            Body::Secho { .. } => Opcode::Secho,
            Body::Decho { .. } => Opcode::Decho,
            Body::MissNoFetch { .. } => Opcode::MissNoFetch,
            Body::Denied { .. } => Opcode::Denied,
            Body::HitObj { .. } => Opcode::HitObj,
        }
    }

    pub fn url(&self) -> Text<'a> {
        match *self {
            Body::Query { url, .. }
            | Body::Hit { url }
            | Body::Miss { url }
            | Body::Err { url }
            | Body::Secho { url }
            | Body::Decho { url }
            | Body::MissNoFetch { url }
            | Body::Denied { url }
            | Body::HitObj { url, .. } => url,
        }
    }

    /// A body of a URL-only opcode; `None` for QUERY and HIT_OBJ, which
    /// carry more than a URL.
    pub fn url_only(opcode: Opcode, url: Text<'a>) -> Option<Body<'a>> {
        Some(match opcode {
            Opcode::Hit => Body::Hit { url },
            Opcode::Miss => Body::Miss { url },
            Opcode::Err => Body::Err { url },
            Opcode::Secho => Body::Secho { url },
            Opcode::Decho => Body::Decho { url },
            Opcode::MissNoFetch => Body::MissNoFetch { url },
            Opcode::Denied => Body::Denied { url },
            Opcode::Query | Opcode::HitObj => return None,
        })
    }
}

/// One ICP datagram. The length field is not stored: it is the datagram's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub version: Version,
    /// Request number: the querier's; echoed in replies.
    pub reqnum: u32,
    pub options: Options,
    /// Option data (RTT data with SRC_RTT; Squid's "pad").
    pub option_data: u32,
    /// Sender host address; Squid sends 0 and ignores it.
    pub sender: Ipv4Addr,
    pub body: Body<'a>,
}

impl<'a> Message<'a> {
    /// A version-2 QUERY as Squid sends it: no options, zero addresses.
    pub fn query(reqnum: u32, url: &'a [u8]) -> Message<'a> {
        Message {
            version: Version::V2,
            reqnum,
            options: Options::default(),
            option_data: 0,
            sender: Ipv4Addr::UNSPECIFIED,
            body: Body::Query {
                requester: Ipv4Addr::UNSPECIFIED,
                url: Text(url),
            },
        }
    }

    /// A version-2 reply to `self` (a query) that echoes its reqnum and URL.
    /// `None` when `opcode` is QUERY or HIT_OBJ (cuttle never sends HIT_OBJ).
    pub fn reply(&self, opcode: Opcode) -> Option<Message<'a>> {
        Some(Message {
            version: Version::V2,
            reqnum: self.reqnum,
            options: Options::default(),
            option_data: 0,
            sender: Ipv4Addr::UNSPECIFIED,
            body: Body::url_only(opcode, self.body.url())?,
        })
    }

    pub fn opcode(&self) -> Opcode {
        self.body.opcode()
    }

    /// The size of the encoded datagram.
    pub fn encoded_len(&self) -> usize {
        let url = self.body.url().len() + 1;
        HEADER_LEN
            + match self.body {
                Body::Query { .. } => 4 + url,
                Body::HitObj { object, .. } => url + 2 + object.len(),
                _ => url,
            }
    }

    /// Appends the datagram to `out`. Fails, writing nothing, when the
    /// message cannot be represented: a URL with a NUL in it or longer than
    /// [`MAX_URL_LEN`], or a datagram over [`MAX_DATAGRAM`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let url = self.body.url().as_bytes();
        let url_at = HEADER_LEN
            + if matches!(self.body, Body::Query { .. }) {
                4
            } else {
                0
            };
        if url.len() > MAX_URL_LEN {
            return Err(Error::new(
                ErrorKind::TooLong {
                    len: url.len(),
                    max: MAX_URL_LEN,
                },
                "url",
                url_at,
            ));
        }
        if let Some(nul) = url.iter().position(|&b| b == 0) {
            return Err(Error::new(
                ErrorKind::Invalid("NUL byte inside the URL"),
                "url",
                url_at + nul,
            ));
        }
        let len = self.encoded_len();
        if len > MAX_DATAGRAM {
            return Err(Error::new(
                ErrorKind::TooLong {
                    len,
                    max: MAX_DATAGRAM,
                },
                "length",
                2,
            ));
        }
        out.reserve(len);
        out.push(self.opcode() as u8);
        out.push(self.version as u8);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&self.reqnum.to_be_bytes());
        out.extend_from_slice(&self.options.0.to_be_bytes());
        out.extend_from_slice(&self.option_data.to_be_bytes());
        out.extend_from_slice(&self.sender.octets());
        if let Body::Query { requester, .. } = self.body {
            out.extend_from_slice(&requester.octets());
        }
        out.extend_from_slice(url);
        out.push(0);
        if let Body::HitObj { object, .. } = self.body {
            // Fits: the whole datagram is under MAX_DATAGRAM.
            out.extend_from_slice(&(object.len() as u16).to_be_bytes());
            out.extend_from_slice(object);
        }
        Ok(())
    }
}

/// Parses one ICP datagram. Strict: the length field must equal the datagram
/// size, the URL must be NUL-terminated and at most [`MAX_URL_LEN`] bytes,
/// and nothing may follow the last field.
pub fn parse(datagram: &[u8]) -> Result<Message<'_>, Error> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(Error::new(
            ErrorKind::TooLong {
                len: datagram.len(),
                max: MAX_DATAGRAM,
            },
            "datagram",
            0,
        ));
    }
    finish(datagram, message(datagram))
}

fn message(datagram: &[u8]) -> PResult<'_, Message<'_>> {
    let input = datagram;
    let (rest, raw_opcode) = u8_field("opcode").parse(input)?;
    let Some(opcode) = Opcode::from_u8(raw_opcode) else {
        return fail(input, "opcode", ErrorKind::UnknownOpcode(raw_opcode));
    };
    let (after_version, raw_version) = u8_field("version").parse(rest)?;
    let version = match raw_version {
        2 => Version::V2,
        3 => Version::V3,
        other => return fail(rest, "version", ErrorKind::UnknownVersion(other)),
    };
    let (rest, length) = u16_field("length").parse(after_version)?;
    if usize::from(length) != datagram.len() {
        return fail(
            after_version,
            "length",
            ErrorKind::LengthMismatch {
                declared: length.into(),
                actual: datagram.len(),
            },
        );
    }
    let (rest, (reqnum, options, option_data, sender)) = (
        u32_field("reqnum"),
        u32_field("options"),
        u32_field("option_data"),
        u32_field("sender"),
    )
        .parse(rest)?;

    let (rest, body) = match opcode {
        Opcode::Query => {
            let (rest, requester) = u32_field("requester").parse(rest)?;
            let (rest, url) = nul_terminated_url(rest)?;
            (
                rest,
                Body::Query {
                    requester: Ipv4Addr::from(requester),
                    url,
                },
            )
        }
        Opcode::HitObj => {
            let (rest, url) = nul_terminated_url(rest)?;
            let (rest, object_len) = u16_field("object_length").parse(rest)?;
            let (rest, object) = bytes_field("object", object_len.into()).parse(rest)?;
            (rest, Body::HitObj { url, object })
        }
        url_only => {
            let (rest, url) = nul_terminated_url(rest)?;
            // `url_only` is never Query or HitObj here.
            match Body::url_only(url_only, url) {
                Some(body) => (rest, body),
                None => return fail(input, "opcode", ErrorKind::UnknownOpcode(raw_opcode)),
            }
        }
    };
    let (rest, ()) = expect_end(rest, "payload")?;
    Ok((
        rest,
        Message {
            version,
            reqnum,
            options: Options(options),
            option_data,
            sender: Ipv4Addr::from(sender),
            body,
        },
    ))
}

/// The URL up to its NUL; the NUL is consumed.
fn nul_terminated_url(input: &[u8]) -> PResult<'_, Text<'_>> {
    let Some(nul) = input.iter().position(|&b| b == 0) else {
        return fail(input, "url", ErrorKind::MissingNul);
    };
    if nul > MAX_URL_LEN {
        return fail(
            input,
            "url",
            ErrorKind::TooLong {
                len: nul,
                max: MAX_URL_LEN,
            },
        );
    }
    Ok((&input[nul + 1..], Text(&input[..nul])))
}

#[cfg(test)]
mod tests {
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
    fn unknown_opcode_and_version() {
        let mut wire = encode(&Message::query(1, b"http://a/"));
        wire[0] = 99;
        let err = parse(&wire).unwrap_err();
        assert_eq!(
            (err.kind, err.field, err.offset),
            (ErrorKind::UnknownOpcode(99), "opcode", 0)
        );
        wire[0] = 1;
        wire[1] = 1;
        let err = parse(&wire).unwrap_err();
        assert_eq!(
            (err.kind, err.field, err.offset),
            (ErrorKind::UnknownVersion(1), "version", 1)
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
    }

    #[test]
    fn src_rtt_word() {
        assert_eq!(split_src_rtt(0x0002_0005), (5, 2));
        assert_eq!(join_src_rtt(5, 2), 0x0002_0005);
    }
}
