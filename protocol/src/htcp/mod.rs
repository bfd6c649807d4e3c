//! HTCP (RFC 2756) as Squid 5.7 speaks it: HEADER, DATA (opcode, response
//! code, flags, transaction id, OP-DATA) and the AUTH section.
//!
//! Squid decides the bit layout of the DATA section's opcode and flag bytes
//! from the header's MINOR version: MINOR 0 is the old layout (opcode in the
//! low nibble, RR = 0x80, F1 = 0x40) used by Squid 2.5, `htcp=oldsquid` and
//! MediaWiki's purger; any other MINOR is the RFC layout (opcode in the high
//! nibble, RR = 0x01, F1 = 0x02). This codec does the same in both
//! directions, so a reply built with the request's `minor` has its layout.
//!
//! ```
//! use cuttle_protocol::htcp::{self, Message, Op, Specifier};
//! let tst = Message::tst_request(1, Specifier::new("GET", "http://example.com/"));
//! let mut wire = Vec::new();
//! tst.encode(&mut wire).unwrap();
//! assert_eq!(htcp::parse(&wire).unwrap(), tst);
//! ```

mod body;

pub use body::{Auth, Detail, Identity, MonAction, MonReason, MonReply, Specifier, TstReply};

use nom::Parser;

use crate::error::{Error, ErrorKind};
use crate::text::Text;
use crate::wire::{bytes_field, fail, finish, u16_field, u32_field, u8_field, PResult};

/// HEADER: LENGTH(2) MAJOR(1) MINOR(1).
pub const HEADER_LEN: usize = 4;
/// DATA before OP-DATA: LENGTH(2) OPCODE/RESPONSE(1) FLAGS(1) TRANS-ID(4).
pub const DATA_HEADER_LEN: usize = 8;
/// The MINOR version Squid sends (RFC bit layout).
pub const MINOR_RFC: u8 = 1;
/// The MINOR version of Squid's old bit layout.
pub const MINOR_OLD: u8 = 0;

/// The 4-bit OPCODE: the five of RFC 2756 by name, 5..=15 kept as
/// [`Opcode::Unknown`] (with their OP-DATA whole in [`Op::Unknown`]), so a
/// well-framed datagram always parses and its receiver decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    Nop,
    Tst,
    Mon,
    Set,
    Clr,
    /// A value RFC 2756 does not define (never 0..=4).
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

    /// The value on the wire.
    pub fn value(self) -> u8 {
        match self {
            Opcode::Nop => 0,
            Opcode::Tst => 1,
            Opcode::Mon => 2,
            Opcode::Set => 3,
            Opcode::Clr => 4,
            Opcode::Unknown(value) => value,
        }
    }

    /// False for [`Opcode::Unknown`].
    pub fn is_known(self) -> bool {
        !matches!(self, Opcode::Unknown(_))
    }

    /// The name Squid logs (`HTCP_TST`, ...); `HTCP_UNKNOWN` for a value
    /// RFC 2756 does not define.
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Nop => "HTCP_NOP",
            Opcode::Tst => "HTCP_TST",
            Opcode::Mon => "HTCP_MON",
            Opcode::Set => "HTCP_SET",
            Opcode::Clr => "HTCP_CLR",
            Opcode::Unknown(_) => "HTCP_UNKNOWN",
        }
    }
}

impl From<u8> for Opcode {
    fn from(value: u8) -> Opcode {
        match value {
            0 => Opcode::Nop,
            1 => Opcode::Tst,
            2 => Opcode::Mon,
            3 => Opcode::Set,
            4 => Opcode::Clr,
            other => Opcode::Unknown(other),
        }
    }
}

impl From<Opcode> for u8 {
    fn from(opcode: Opcode) -> u8 {
        opcode.value()
    }
}

/// Bit layout of DATA bytes 2 and 3, chosen by the header's MINOR version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// MINOR 0: opcode in the low nibble, response in the high; RR 0x80, F1 0x40.
    Old,
    /// Any other MINOR: opcode high nibble, response low; RR 0x01, F1 0x02.
    Rfc,
}

impl Layout {
    pub fn of_minor(minor: u8) -> Layout {
        if minor == MINOR_OLD {
            Layout::Old
        } else {
            Layout::Rfc
        }
    }

    fn split_op_byte(self, byte: u8) -> (u8, u8) {
        match self {
            Layout::Rfc => (byte >> 4, byte & 0x0f),
            Layout::Old => (byte & 0x0f, byte >> 4),
        }
    }

    fn join_op_byte(self, opcode: u8, response: u8) -> u8 {
        match self {
            Layout::Rfc => (opcode << 4) | (response & 0x0f),
            Layout::Old => ((response & 0x0f) << 4) | opcode,
        }
    }

    /// (rr, f1, reserved bits shifted down to 0..=0x3f)
    fn split_flags(self, byte: u8) -> (bool, bool, u8) {
        match self {
            Layout::Rfc => (byte & 0x01 != 0, byte & 0x02 != 0, byte >> 2),
            Layout::Old => (byte & 0x80 != 0, byte & 0x40 != 0, byte & 0x3f),
        }
    }

    fn join_flags(self, rr: bool, f1: bool, reserved: u8) -> u8 {
        let reserved = reserved & 0x3f;
        match self {
            Layout::Rfc => (reserved << 2) | (u8::from(f1) << 1) | u8::from(rr),
            Layout::Old => (u8::from(rr) << 7) | (u8::from(f1) << 6) | reserved,
        }
    }
}

/// OP-DATA, by opcode and direction (the RR bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// NOP request: an HTCP ping; no OP-DATA.
    NopRequest,
    /// NOP response: no OP-DATA.
    NopResponse,
    /// TST request: is the entity named by the SPECIFIER cached?
    TstRequest(Specifier<'a>),
    /// TST response: Squid always sends a three-COUNTSTR DETAIL; the RFC
    /// sends only CACHE-HDRS on a miss; some senders send nothing.
    TstResponse(TstReply<'a>),
    /// MON request: seconds of monitoring wanted (0 cancels).
    MonRequest { time: u8 },
    /// MON response; OP-DATA may be absent when the monitor was refused.
    MonResponse(Option<MonReply<'a>>),
    /// SET request: updated headers for a cached entity.
    SetRequest(Identity<'a>),
    /// SET response: no OP-DATA.
    SetResponse,
    /// CLR request: purge the entity. REASON is the low 4 bits of the first
    /// 16-bit word; the other 12 bits are reserved and kept as received.
    ClrRequest {
        reserved: u16,
        reason: u8,
        specifier: Specifier<'a>,
    },
    /// CLR response: no OP-DATA; the result is the response code.
    ClrResponse,
    /// An opcode RFC 2756 does not define: its layout is unknown, so the
    /// OP-DATA is kept whole, as received.
    Unknown {
        /// The 4-bit opcode (a value [`Opcode::from_u8`] does not know).
        opcode: u8,
        /// The RR bit: a response.
        rr: bool,
        op_data: &'a [u8],
    },
}

impl Op<'_> {
    pub fn opcode(&self) -> Opcode {
        match self {
            Op::NopRequest | Op::NopResponse => Opcode::Nop,
            Op::TstRequest(_) | Op::TstResponse(_) => Opcode::Tst,
            Op::MonRequest { .. } | Op::MonResponse(_) => Opcode::Mon,
            Op::SetRequest(_) | Op::SetResponse => Opcode::Set,
            Op::ClrRequest { .. } | Op::ClrResponse => Opcode::Clr,
            Op::Unknown { opcode, .. } => Opcode::from(*opcode),
        }
    }

    /// The RR bit: true for responses.
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Op::NopResponse
                | Op::TstResponse(_)
                | Op::MonResponse(_)
                | Op::SetResponse
                | Op::ClrResponse
                | Op::Unknown { rr: true, .. }
        )
    }
}

/// TST response codes (RFC 2756 §3.1 with MO = 0).
pub mod tst {
    /// The entity is cached.
    pub const FOUND: u8 = 0;
    /// The entity is not cached.
    pub const NOT_FOUND: u8 = 1;
}

/// CLR response codes (RFC 2756 §6.5, as Squid uses them).
pub mod clr {
    /// "I had it and it is gone now."
    pub const PURGED: u8 = 0;
    /// "I had it and I am keeping it" (Squid never sends this).
    pub const KEPT: u8 = 1;
    /// "I did not have it."
    pub const NOT_FOUND: u8 = 2;
    /// CLR REASON: unspecified (Squid sends this after a PURGE).
    pub const REASON_UNSPECIFIED: u8 = 0;
    /// CLR REASON: the origin says the entity no longer exists (Squid sends
    /// this for any invalidation).
    pub const REASON_GONE: u8 = 1;
}

/// Overall-message response codes, valid when RR = 1 and MO (F1) = 1.
pub mod overall {
    pub const AUTH_REQUIRED: u8 = 0;
    pub const AUTH_FAILED: u8 = 1;
    pub const OPCODE_NOT_IMPLEMENTED: u8 = 2;
    pub const MAJOR_UNSUPPORTED: u8 = 3;
    pub const MINOR_UNSUPPORTED: u8 = 4;
    pub const INAPPROPRIATE_OPCODE: u8 = 5;
}

/// One HTCP datagram. Lengths are not stored: they follow from the contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Header MINOR version (MAJOR is always 0); picks the [`Layout`].
    pub minor: u8,
    /// The 4-bit RESPONSE code (0 in requests).
    pub response: u8,
    /// F1: in a request RD ("response desired"), in a response MO ("the
    /// response code is about the whole message").
    pub f1: bool,
    /// The six reserved flag bits, as received (sent as zero).
    pub reserved: u8,
    pub trans_id: u32,
    pub op: Op<'a>,
    pub auth: Auth<'a>,
}

impl<'a> Message<'a> {
    /// A TST request as Squid sends it: MINOR 1, RD set, no AUTH.
    pub fn tst_request(trans_id: u32, specifier: Specifier<'a>) -> Message<'a> {
        Message {
            minor: MINOR_RFC,
            response: 0,
            f1: true,
            reserved: 0,
            trans_id,
            op: Op::TstRequest(specifier),
            auth: Auth::None,
        }
    }

    /// A CLR request. `response_desired` sets RD (Squid's own CLRs do not).
    pub fn clr_request(
        trans_id: u32,
        reason: u8,
        specifier: Specifier<'a>,
        response_desired: bool,
    ) -> Message<'a> {
        Message {
            minor: MINOR_RFC,
            response: 0,
            f1: response_desired,
            reserved: 0,
            trans_id,
            op: Op::ClrRequest {
                reserved: 0,
                reason,
                specifier,
            },
            auth: Auth::None,
        }
    }

    /// A response to `self` in the request's layout and transaction, MO = 0,
    /// with an empty AUTH (what Squid sends).
    pub fn response<'b>(&self, response: u8, op: Op<'b>) -> Message<'b> {
        Message {
            minor: self.minor,
            response,
            f1: false,
            reserved: 0,
            trans_id: self.trans_id,
            op,
            auth: Auth::None,
        }
    }

    pub fn opcode(&self) -> Opcode {
        self.op.opcode()
    }

    pub fn layout(&self) -> Layout {
        Layout::of_minor(self.minor)
    }

    pub fn is_response(&self) -> bool {
        self.op.is_response()
    }

    /// RD: the sender of a request wants a response.
    pub fn response_desired(&self) -> bool {
        !self.is_response() && self.f1
    }

    /// MO: a response whose code is about the whole message (an error).
    pub fn is_overall_response(&self) -> bool {
        self.is_response() && self.f1
    }

    /// Appends the datagram to `out`. Fails, leaving `out` as it was, when a
    /// string or section is too long for its 16-bit length field or the
    /// response code or an unknown opcode does not fit in 4 bits.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        let result = self.encode_inner(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_inner(&self, out: &mut Vec<u8>, start: usize) -> Result<(), Error> {
        if self.response > 0x0f {
            return Err(Error::new(
                ErrorKind::Invalid("response code does not fit in 4 bits"),
                "response",
                6,
            ));
        }
        if self.reserved > 0x3f {
            return Err(Error::new(
                ErrorKind::Invalid("reserved flag bits do not fit in 6 bits"),
                "flags",
                7,
            ));
        }
        let opcode = self.opcode().value();
        if opcode > 0x0f {
            return Err(Error::new(
                ErrorKind::Invalid("opcode does not fit in 4 bits"),
                "opcode",
                6,
            ));
        }
        let layout = self.layout();
        out.extend_from_slice(&[0, 0, 0, self.minor]);
        let data_at = out.len();
        out.extend_from_slice(&[0, 0]);
        out.push(layout.join_op_byte(opcode, self.response));
        out.push(layout.join_flags(self.is_response(), self.f1, self.reserved));
        out.extend_from_slice(&self.trans_id.to_be_bytes());
        body::encode_op(&self.op, out, start)?;
        crate::wire::patch_len16(out, start, data_at, "data_length")?;
        body::encode_auth(&self.auth, out, start)?;
        crate::wire::patch_len16(out, start, start, "length")?;
        Ok(())
    }
}

/// The RR bit of a datagram, from its header and DATA bytes alone (no
/// parse): true for a response. For telling responses from requests on a
/// socket that gets both; a datagram too short to hold the bit is not one.
pub fn is_response_datagram(datagram: &[u8]) -> bool {
    let (Some(&minor), Some(&flags)) = (datagram.get(3), datagram.get(HEADER_LEN + 3)) else {
        return false;
    };
    Layout::of_minor(minor).split_flags(flags).0
}

/// Parses one HTCP datagram. Strict: the header LENGTH must equal the
/// datagram size, MAJOR must be 0, every COUNTSTR and section of DATA must
/// fit its enclosing length exactly, and nothing may be left over. Not an
/// error: an unknown opcode ([`Op::Unknown`]) and an AUTH section that does
/// not parse ([`Auth::Unparsed`]; Squid never reads AUTH): both are kept.
pub fn parse(datagram: &[u8]) -> Result<Message<'_>, Error> {
    finish(datagram, message(datagram))
}

fn message(datagram: &[u8]) -> PResult<'_, Message<'_>> {
    let (rest, length) = u16_field("length").parse(datagram)?;
    if usize::from(length) != datagram.len() {
        return fail(
            datagram,
            "length",
            ErrorKind::LengthMismatch {
                declared: length.into(),
                actual: datagram.len(),
            },
        );
    }
    let (after_major, major) = u8_field("major").parse(rest)?;
    if major != 0 {
        return fail(rest, "major", ErrorKind::UnknownVersion(major));
    }
    let (data, minor) = u8_field("minor").parse(after_major)?;
    let layout = Layout::of_minor(minor);

    let (_, data_len) = u16_field("data_length").parse(data)?;
    let data_len = usize::from(data_len);
    if data_len < DATA_HEADER_LEN || data_len > data.len() {
        return fail(
            data,
            "data_length",
            ErrorKind::LengthMismatch {
                declared: data_len,
                actual: data.len(),
            },
        );
    }
    let (data_section, auth_section) = data.split_at(data_len);
    let (op_rest, op_byte) = u8_field("opcode").parse(&data_section[2..])?;
    let (raw_opcode, response) = layout.split_op_byte(op_byte);
    let (rest, flags) = u8_field("flags").parse(op_rest)?;
    let (rr, f1, reserved) = layout.split_flags(flags);
    let (op_data, trans_id) = u32_field("trans_id").parse(rest)?;
    let (_, op) = body::op(Opcode::from(raw_opcode), rr, op_data)?;
    // Kept as received when it does not parse: nobody reads AUTH (Squid
    // neither), and a bad one must not cost the message.
    let auth = match body::auth(auth_section) {
        Ok((_, auth)) => auth,
        Err(_) => Auth::Unparsed(auth_section),
    };
    let rest = &auth_section[auth_section.len()..];
    Ok((
        rest,
        Message {
            minor,
            response,
            f1,
            reserved,
            trans_id,
            op,
            auth,
        },
    ))
}

/// A COUNTSTR: 16-bit length, then that many octets.
fn countstr<'a>(
    name: &'static str,
) -> impl Parser<&'a [u8], Output = Text<'a>, Error = crate::wire::PErr<'a>> {
    move |input: &'a [u8]| {
        let (rest, len) = u16_field(name).parse(input)?;
        if usize::from(len) > rest.len() {
            // Point at the length that overruns, which is what is wrong.
            return fail(
                input,
                name,
                ErrorKind::LengthMismatch {
                    declared: len.into(),
                    actual: rest.len(),
                },
            );
        }
        let (rest, text) = bytes_field(name, len.into()).parse(rest)?;
        Ok((rest, Text(text)))
    }
}

fn put_countstr(
    out: &mut Vec<u8>,
    text: Text<'_>,
    field: &'static str,
    start: usize,
) -> Result<(), Error> {
    crate::wire::put_len16(out, text.len(), field, out.len() - start)?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
