//! ICP (RFC 2186/2187) as Squid 5.7 speaks it: a 20-byte header, then a URL
//! (a QUERY puts a 4-byte requester address first; a HIT_OBJ appends the
//! object). Version 2 is written; version 3 queries are accepted on read.
//! An opcode or version this codec has no name for is kept as a value
//! ([`Opcode::Unknown`], [`Version::Unknown`]; the payload of an unknown
//! opcode whole, in [`Body::Unknown`]), as rustls keeps unknown values: a
//! well-framed datagram always parses, and its receiver decides what to do.
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

/// The ICP opcode in byte 0. The opcodes Squid 5.7 sends or receives are
/// named; any other value (the historic SEND/DATA*, NOTIFY/INVALIDATE/DELETE,
/// unassigned ones) is kept as [`Opcode::Unknown`], so a well-framed datagram
/// with such an opcode still parses and the receiver decides what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    Query,
    Hit,
    Miss,
    Err,
    Secho,
    Decho,
    MissNoFetch,
    Denied,
    HitObj,
    /// A value this codec gives no name to (never one of the above).
    Unknown(u8),
}

impl Opcode {
    /// The named opcode with this value; `None` for any other.
    pub fn from_u8(value: u8) -> Option<Opcode> {
        match Opcode::from(value) {
            Opcode::Unknown(_) => None,
            known => Some(known),
        }
    }

    /// The byte on the wire.
    pub fn value(self) -> u8 {
        match self {
            Opcode::Query => 1,
            Opcode::Hit => 2,
            Opcode::Miss => 3,
            Opcode::Err => 4,
            Opcode::Secho => 10,
            Opcode::Decho => 11,
            Opcode::MissNoFetch => 21,
            Opcode::Denied => 22,
            Opcode::HitObj => 23,
            Opcode::Unknown(value) => value,
        }
    }

    /// False for [`Opcode::Unknown`].
    pub fn is_known(self) -> bool {
        !matches!(self, Opcode::Unknown(_))
    }

    /// Squid's name, as in its logs and `mgr:counters` (`ICP_QUERY`, ...);
    /// `ICP_INVALID` for an unknown value.
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
            Opcode::Unknown(_) => "ICP_INVALID",
        }
    }
}

impl From<u8> for Opcode {
    fn from(value: u8) -> Opcode {
        match value {
            1 => Opcode::Query,
            2 => Opcode::Hit,
            3 => Opcode::Miss,
            4 => Opcode::Err,
            10 => Opcode::Secho,
            11 => Opcode::Decho,
            21 => Opcode::MissNoFetch,
            22 => Opcode::Denied,
            23 => Opcode::HitObj,
            other => Opcode::Unknown(other),
        }
    }
}

impl From<Opcode> for u8 {
    fn from(opcode: Opcode) -> u8 {
        opcode.value()
    }
}

/// Protocol version in byte 1; a version other than 2 and 3 is kept as
/// [`Version::Unknown`] (its payload is read by the opcode's layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 2186; the only version Squid sends.
    V2,
    /// Harvest's; Squid answers it with version-2 replies.
    V3,
    /// Any other value (never 2 or 3).
    Unknown(u8),
}

impl Version {
    /// The byte on the wire.
    pub fn value(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
            Version::Unknown(value) => value,
        }
    }

    /// False for [`Version::Unknown`].
    pub fn is_known(self) -> bool {
        !matches!(self, Version::Unknown(_))
    }
}

impl From<u8> for Version {
    fn from(value: u8) -> Version {
        match value {
            2 => Version::V2,
            3 => Version::V3,
            other => Version::Unknown(other),
        }
    }
}

impl From<Version> for u8 {
    fn from(version: Version) -> u8 {
        version.value()
    }
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
    /// An opcode [`Opcode`] does not name: its layout is unknown, so the
    /// payload is kept whole, as received.
    Unknown {
        /// The opcode byte (a value [`Opcode::from_u8`] does not know).
        opcode: u8,
        /// Everything after the header.
        payload: &'a [u8],
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
            Body::Unknown { opcode, .. } => Opcode::from(*opcode),
        }
    }

    /// The URL; empty for [`Body::Unknown`], whose layout is not known.
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
            Body::Unknown { .. } => Text(b""),
        }
    }

    /// A body of a URL-only opcode; `None` for QUERY and HIT_OBJ, which
    /// carry more than a URL, and for an unknown opcode.
    pub fn url_only(opcode: Opcode, url: Text<'a>) -> Option<Body<'a>> {
        Some(match opcode {
            Opcode::Hit => Body::Hit { url },
            Opcode::Miss => Body::Miss { url },
            Opcode::Err => Body::Err { url },
            Opcode::Secho => Body::Secho { url },
            Opcode::Decho => Body::Decho { url },
            Opcode::MissNoFetch => Body::MissNoFetch { url },
            Opcode::Denied => Body::Denied { url },
            Opcode::Query | Opcode::HitObj | Opcode::Unknown(_) => return None,
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
    /// `None` when `opcode` is QUERY, HIT_OBJ (cuttle never sends HIT_OBJ)
    /// or unknown.
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
                Body::Unknown { payload, .. } => payload.len(),
                _ => url,
            }
    }

    /// Appends the datagram to `out`. Fails, writing nothing, when the
    /// message cannot be represented: a URL with a NUL in it or longer than
    /// [`MAX_URL_LEN`], or a datagram over [`MAX_DATAGRAM`]. An unknown
    /// opcode's payload is written as it is.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        if let Body::Unknown { payload, .. } = self.body {
            return self.encode_header(out, payload.len()).map(|()| {
                out.extend_from_slice(payload);
            });
        }
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
        self.encode_header(out, self.encoded_len() - HEADER_LEN)?;
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

    /// Appends the header of a datagram whose payload is `payload_len`
    /// bytes, or fails, writing nothing, when the whole would be over
    /// [`MAX_DATAGRAM`].
    fn encode_header(&self, out: &mut Vec<u8>, payload_len: usize) -> Result<(), Error> {
        let len = HEADER_LEN + payload_len;
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
        out.push(self.opcode().value());
        out.push(self.version.value());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&self.reqnum.to_be_bytes());
        out.extend_from_slice(&self.options.0.to_be_bytes());
        out.extend_from_slice(&self.option_data.to_be_bytes());
        out.extend_from_slice(&self.sender.octets());
        Ok(())
    }
}

/// The fixed 20-byte header of a datagram, read on its own: what is known
/// of a datagram whose payload does not parse (a QUERY with a broken URL is
/// answered ERR with its reqnum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: Opcode,
    pub version: Version,
    pub reqnum: u32,
    pub options: Options,
    pub option_data: u32,
    pub sender: Ipv4Addr,
}

/// The opcode of `datagram` from its first byte alone, with no other check
/// (`None` when it is empty). For sorting datagrams on a socket that gets
/// queries and replies, and counting what arrives, before any parse.
pub fn opcode_of(datagram: &[u8]) -> Option<Opcode> {
    datagram.first().map(|&b| Opcode::from(b))
}

/// Parses the header of `datagram` and nothing after it. Fails as
/// [`parse`] does on a datagram over [`MAX_DATAGRAM`], a short header or a
/// length field that is not the datagram's size.
pub fn parse_header(datagram: &[u8]) -> Result<Header, Error> {
    check_size(datagram)?;
    finish(datagram, header(datagram))
}

/// Parses one ICP datagram. Strict: the length field must equal the datagram
/// size, the URL must be NUL-terminated and at most [`MAX_URL_LEN`] bytes,
/// and nothing may follow the last field. An unknown opcode or version is
/// no error: it is kept.
pub fn parse(datagram: &[u8]) -> Result<Message<'_>, Error> {
    check_size(datagram)?;
    finish(datagram, message(datagram))
}

fn check_size(datagram: &[u8]) -> Result<(), Error> {
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
    Ok(())
}

// Inlined into `message`: a call returning the header through memory cost
// the ICP responder's parse about 15 % (codecs bench, icp/parse/query).
#[inline(always)]
fn header(datagram: &[u8]) -> PResult<'_, Header> {
    let (rest, opcode) = u8_field("opcode").parse(datagram)?;
    let (after_version, version) = u8_field("version").parse(rest)?;
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
    Ok((
        rest,
        Header {
            opcode: Opcode::from(opcode),
            version: Version::from(version),
            reqnum,
            options: Options(options),
            option_data,
            sender: Ipv4Addr::from(sender),
        },
    ))
}

fn message(datagram: &[u8]) -> PResult<'_, Message<'_>> {
    let (rest, header) = header(datagram)?;
    let (rest, body) = match header.opcode {
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
        Opcode::Unknown(opcode) => (
            &rest[rest.len()..],
            Body::Unknown {
                opcode,
                payload: rest,
            },
        ),
        url_only => {
            let (rest, url) = nul_terminated_url(rest)?;
            // `url_only` is never Query, HitObj or Unknown here.
            let body = Body::url_only(url_only, url).unwrap_or(Body::Err { url });
            (rest, body)
        }
    };
    let (rest, ()) = expect_end(rest, "payload")?;
    Ok((
        rest,
        Message {
            version: header.version,
            reqnum: header.reqnum,
            options: header.options,
            option_data: header.option_data,
            sender: header.sender,
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
mod tests;
