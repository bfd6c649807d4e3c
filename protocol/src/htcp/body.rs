//! HTCP OP-DATA bodies (SPECIFIER, DETAIL, IDENTITY and the per-opcode
//! layouts) and the AUTH section.

use nom::Parser;

use super::{countstr, put_countstr, Op, Opcode};
use crate::error::{Error, ErrorKind};
use crate::text::Text;
use crate::wire::{expect_end, fail, u16_field, u32_field, u8_field, PResult};

/// What a request is about: METHOD, URI, VERSION, REQ-HDRS (four COUNTSTRs).
/// Squid sends VERSION as `1/1` and REQ-HDRS empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Specifier<'a> {
    pub method: Text<'a>,
    pub uri: Text<'a>,
    pub version: Text<'a>,
    pub req_hdrs: Text<'a>,
}

impl<'a> Specifier<'a> {
    /// A SPECIFIER in the form Squid sends: VERSION `1/1`, no request headers.
    pub fn new(method: &'a str, uri: &'a str) -> Specifier<'a> {
        Specifier {
            method: method.into(),
            uri: uri.into(),
            version: "1/1".into(),
            req_hdrs: Text::default(),
        }
    }
}

/// Cached entity description: RESP-HDRS, ENTITY-HDRS, CACHE-HDRS (header
/// blocks with CRLF line ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Detail<'a> {
    pub resp_hdrs: Text<'a>,
    pub entity_hdrs: Text<'a>,
    pub cache_hdrs: Text<'a>,
}

/// SPECIFIER followed by DETAIL (MON responses, SET requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity<'a> {
    pub specifier: Specifier<'a>,
    pub detail: Detail<'a>,
}

/// The OP-DATA of a TST response, in the shapes seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TstReply<'a> {
    /// Three COUNTSTRs: what Squid sends for hits and misses alike, and the
    /// only miss form Squid accepts.
    Detail(Detail<'a>),
    /// One COUNTSTR: RFC 2756's miss (CACHE-HDRS only).
    CacheHdrs(Text<'a>),
    /// No OP-DATA.
    Empty,
}

/// MON response ACTION (high nibble of its byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonAction {
    Added,
    Refreshed,
    Replaced,
    Deleted,
    /// A value RFC 2756 does not define, kept for re-encoding.
    Other(u8),
}

impl MonAction {
    fn from_nibble(n: u8) -> MonAction {
        match n {
            0 => MonAction::Added,
            1 => MonAction::Refreshed,
            2 => MonAction::Replaced,
            3 => MonAction::Deleted,
            other => MonAction::Other(other),
        }
    }

    fn nibble(self) -> u8 {
        match self {
            MonAction::Added => 0,
            MonAction::Refreshed => 1,
            MonAction::Replaced => 2,
            MonAction::Deleted => 3,
            MonAction::Other(n) => n & 0x0f,
        }
    }
}

/// MON response REASON (low nibble of the ACTION byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonReason {
    Other,
    ClientFetch,
    ClientFetchNoCache,
    Prefetch,
    Expired,
    PurgedForSpace,
    /// A value RFC 2756 does not define, kept for re-encoding.
    Unknown(u8),
}

impl MonReason {
    fn from_nibble(n: u8) -> MonReason {
        match n {
            0 => MonReason::Other,
            1 => MonReason::ClientFetch,
            2 => MonReason::ClientFetchNoCache,
            3 => MonReason::Prefetch,
            4 => MonReason::Expired,
            5 => MonReason::PurgedForSpace,
            other => MonReason::Unknown(other),
        }
    }

    fn nibble(self) -> u8 {
        match self {
            MonReason::Other => 0,
            MonReason::ClientFetch => 1,
            MonReason::ClientFetchNoCache => 2,
            MonReason::Prefetch => 3,
            MonReason::Expired => 4,
            MonReason::PurgedForSpace => 5,
            MonReason::Unknown(n) => n & 0x0f,
        }
    }
}

/// A MON response's OP-DATA: TIME left, ACTION/REASON, IDENTITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonReply<'a> {
    pub time: u8,
    pub action: MonAction,
    pub reason: MonReason,
    pub identity: Identity<'a>,
}

/// The AUTH section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    /// LENGTH 2 and nothing else: what Squid always sends.
    None,
    /// No AUTH section at all (the datagram ends with DATA). Squid never
    /// reads AUTH and accepts this, so we do too.
    Omitted,
    /// A signed message (HMAC-MD5; Squid ignores it).
    Signed {
        sig_time: u32,
        sig_expire: u32,
        key_name: Text<'a>,
        signature: Text<'a>,
    },
    /// A section that does not parse (its LENGTH disagrees, a COUNTSTR
    /// overruns...), kept as received: Squid never reads AUTH, so a bad one
    /// costs nothing but its own meaning. Never empty when parsed.
    Unparsed(&'a [u8]),
}

impl Auth<'_> {
    /// Bytes the section takes on the wire (its LENGTH field, when present).
    pub fn encoded_len(&self) -> usize {
        match self {
            Auth::Omitted => 0,
            Auth::None => 2,
            Auth::Signed {
                key_name,
                signature,
                ..
            } => 2 + 4 + 4 + 2 + key_name.len() + 2 + signature.len(),
            Auth::Unparsed(section) => section.len(),
        }
    }
}

fn specifier(input: &[u8]) -> PResult<'_, Specifier<'_>> {
    let (rest, (method, uri, version, req_hdrs)) = (
        countstr("method"),
        countstr("uri"),
        countstr("version"),
        countstr("req_hdrs"),
    )
        .parse(input)?;
    Ok((
        rest,
        Specifier {
            method,
            uri,
            version,
            req_hdrs,
        },
    ))
}

fn detail(input: &[u8]) -> PResult<'_, Detail<'_>> {
    let (rest, (resp_hdrs, entity_hdrs, cache_hdrs)) = (
        countstr("resp_hdrs"),
        countstr("entity_hdrs"),
        countstr("cache_hdrs"),
    )
        .parse(input)?;
    Ok((
        rest,
        Detail {
            resp_hdrs,
            entity_hdrs,
            cache_hdrs,
        },
    ))
}

fn identity(input: &[u8]) -> PResult<'_, Identity<'_>> {
    let (rest, (specifier, detail)) = (specifier, detail).parse(input)?;
    Ok((rest, Identity { specifier, detail }))
}

fn tst_reply(input: &[u8]) -> PResult<'_, TstReply<'_>> {
    if input.is_empty() {
        return Ok((input, TstReply::Empty));
    }
    let (rest, first) = countstr("resp_hdrs").parse(input)?;
    if rest.is_empty() {
        return Ok((rest, TstReply::CacheHdrs(first)));
    }
    let (rest, (entity_hdrs, cache_hdrs)) =
        (countstr("entity_hdrs"), countstr("cache_hdrs")).parse(rest)?;
    Ok((
        rest,
        TstReply::Detail(Detail {
            resp_hdrs: first,
            entity_hdrs,
            cache_hdrs,
        }),
    ))
}

/// Parses OP-DATA (exactly `input`) for `opcode` in the direction `rr`.
pub(super) fn op(opcode: Opcode, rr: bool, input: &[u8]) -> PResult<'_, Op<'_>> {
    let (rest, op) = match (opcode, rr) {
        (Opcode::Nop, false) => (input, Op::NopRequest),
        (Opcode::Nop, true) => (input, Op::NopResponse),
        (Opcode::Tst, false) => {
            let (rest, s) = specifier(input)?;
            (rest, Op::TstRequest(s))
        }
        (Opcode::Tst, true) => {
            let (rest, r) = tst_reply(input)?;
            (rest, Op::TstResponse(r))
        }
        (Opcode::Mon, false) => {
            let (rest, time) = u8_field("time").parse(input)?;
            (rest, Op::MonRequest { time })
        }
        (Opcode::Mon, true) if input.is_empty() => (input, Op::MonResponse(None)),
        (Opcode::Mon, true) => {
            let (rest, (time, action_reason, identity)) =
                (u8_field("time"), u8_field("action"), identity).parse(input)?;
            (
                rest,
                Op::MonResponse(Some(MonReply {
                    time,
                    action: MonAction::from_nibble(action_reason >> 4),
                    reason: MonReason::from_nibble(action_reason & 0x0f),
                    identity,
                })),
            )
        }
        (Opcode::Set, false) => {
            let (rest, id) = identity(input)?;
            (rest, Op::SetRequest(id))
        }
        (Opcode::Set, true) => (input, Op::SetResponse),
        (Opcode::Clr, false) => {
            let (rest, (word, specifier)) = (u16_field("reason"), specifier).parse(input)?;
            (
                rest,
                Op::ClrRequest {
                    reserved: word >> 4,
                    reason: (word & 0x0f) as u8,
                    specifier,
                },
            )
        }
        (Opcode::Clr, true) => (input, Op::ClrResponse),
        (Opcode::Unknown(opcode), rr) => (
            &input[input.len()..],
            Op::Unknown {
                opcode,
                rr,
                op_data: input,
            },
        ),
    };
    expect_end(rest, "op_data")?;
    Ok((rest, op))
}

/// Parses the AUTH section: everything after DATA.
pub(super) fn auth(input: &[u8]) -> PResult<'_, Auth<'_>> {
    if input.is_empty() {
        return Ok((input, Auth::Omitted));
    }
    let (rest, len) = u16_field("auth_length").parse(input)?;
    if usize::from(len) != input.len() {
        return fail(
            input,
            "auth_length",
            ErrorKind::LengthMismatch {
                declared: len.into(),
                actual: input.len(),
            },
        );
    }
    if rest.is_empty() {
        return Ok((rest, Auth::None));
    }
    let (rest, (sig_time, sig_expire, key_name, signature)) = (
        u32_field("sig_time"),
        u32_field("sig_expire"),
        countstr("key_name"),
        countstr("signature"),
    )
        .parse(rest)?;
    let (rest, ()) = expect_end(rest, "auth")?;
    Ok((
        rest,
        Auth::Signed {
            sig_time,
            sig_expire,
            key_name,
            signature,
        },
    ))
}

fn put_specifier(out: &mut Vec<u8>, s: &Specifier<'_>, start: usize) -> Result<(), Error> {
    put_countstr(out, s.method, "method", start)?;
    put_countstr(out, s.uri, "uri", start)?;
    put_countstr(out, s.version, "version", start)?;
    put_countstr(out, s.req_hdrs, "req_hdrs", start)
}

fn put_detail(out: &mut Vec<u8>, d: &Detail<'_>, start: usize) -> Result<(), Error> {
    put_countstr(out, d.resp_hdrs, "resp_hdrs", start)?;
    put_countstr(out, d.entity_hdrs, "entity_hdrs", start)?;
    put_countstr(out, d.cache_hdrs, "cache_hdrs", start)
}

fn put_identity(out: &mut Vec<u8>, id: &Identity<'_>, start: usize) -> Result<(), Error> {
    put_specifier(out, &id.specifier, start)?;
    put_detail(out, &id.detail, start)
}

/// Appends OP-DATA; `start` is where the datagram begins in `out` (for error offsets).
pub(super) fn encode_op(op: &Op<'_>, out: &mut Vec<u8>, start: usize) -> Result<(), Error> {
    match op {
        Op::NopRequest | Op::NopResponse | Op::SetResponse | Op::ClrResponse => Ok(()),
        Op::MonResponse(None) => Ok(()),
        Op::Unknown { op_data, .. } => {
            out.extend_from_slice(op_data);
            Ok(())
        }
        Op::TstRequest(s) => put_specifier(out, s, start),
        Op::TstResponse(TstReply::Detail(d)) => put_detail(out, d, start),
        Op::TstResponse(TstReply::CacheHdrs(c)) => put_countstr(out, *c, "cache_hdrs", start),
        Op::TstResponse(TstReply::Empty) => Ok(()),
        Op::MonRequest { time } => {
            out.push(*time);
            Ok(())
        }
        Op::MonResponse(Some(m)) => {
            out.push(m.time);
            out.push((m.action.nibble() << 4) | m.reason.nibble());
            put_identity(out, &m.identity, start)
        }
        Op::SetRequest(id) => put_identity(out, id, start),
        Op::ClrRequest {
            reserved,
            reason,
            specifier,
        } => {
            if *reserved > 0x0fff || *reason > 0x0f {
                return Err(Error::new(
                    ErrorKind::Invalid("CLR reason is 4 bits and its reserved part 12"),
                    "reason",
                    out.len() - start,
                ));
            }
            out.extend_from_slice(&((reserved << 4) | u16::from(*reason)).to_be_bytes());
            put_specifier(out, specifier, start)
        }
    }
}

/// Appends the AUTH section.
pub(super) fn encode_auth(auth: &Auth<'_>, out: &mut Vec<u8>, start: usize) -> Result<(), Error> {
    match auth {
        Auth::Omitted => Ok(()),
        Auth::Unparsed(section) => {
            out.extend_from_slice(section);
            Ok(())
        }
        Auth::None => {
            out.extend_from_slice(&2u16.to_be_bytes());
            Ok(())
        }
        Auth::Signed {
            sig_time,
            sig_expire,
            key_name,
            signature,
        } => {
            let auth_at = out.len();
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&sig_time.to_be_bytes());
            out.extend_from_slice(&sig_expire.to_be_bytes());
            put_countstr(out, *key_name, "key_name", start)?;
            put_countstr(out, *signature, "signature", start)?;
            crate::wire::patch_len16(out, start, auth_at, "auth_length")
        }
    }
}
