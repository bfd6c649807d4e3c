//! nom glue shared by the codecs: an error type that remembers where and in
//! which field a parser stopped, and small field parsers built from nom's
//! `complete` leaves (a datagram is always whole, so short input is an error,
//! never `Incomplete`). Nothing from nom leaves this crate.

use nom::error::{ErrorKind as NomKind, ParseError};
use nom::{Offset, Parser};

use crate::error::{Error, ErrorKind};

/// A parse failure still pointing into the input, so the offset can be
/// computed against the whole datagram at the end.
#[derive(Debug)]
pub(crate) struct PErr<'a> {
    pub at: &'a [u8],
    pub field: &'static str,
    pub kind: ErrorKind,
}

impl<'a> ParseError<&'a [u8]> for PErr<'a> {
    fn from_error_kind(input: &'a [u8], _kind: NomKind) -> Self {
        // Every nom leaf used here fails only for lack of bytes.
        PErr {
            at: input,
            field: "",
            kind: ErrorKind::Truncated,
        }
    }

    fn append(_input: &'a [u8], _kind: NomKind, other: Self) -> Self {
        other
    }
}

pub(crate) type PResult<'a, O> = nom::IResult<&'a [u8], O, PErr<'a>>;

/// A hard failure at `at` (no alternative will be tried).
pub(crate) fn fail<'a, O>(at: &'a [u8], field: &'static str, kind: ErrorKind) -> PResult<'a, O> {
    Err(nom::Err::Failure(PErr { at, field, kind }))
}

/// Runs `parser`, naming `name` as the field of any error that has no name yet.
pub(crate) fn field<'a, O>(
    name: &'static str,
    mut parser: impl Parser<&'a [u8], Output = O, Error = PErr<'a>>,
) -> impl Parser<&'a [u8], Output = O, Error = PErr<'a>> {
    move |input: &'a [u8]| {
        parser.parse(input).map_err(|err| {
            err.map(|mut e| {
                if e.field.is_empty() {
                    e.field = name;
                }
                e
            })
        })
    }
}

pub(crate) fn u8_field<'a>(
    name: &'static str,
) -> impl Parser<&'a [u8], Output = u8, Error = PErr<'a>> {
    field(name, nom::number::complete::be_u8)
}

pub(crate) fn u16_field<'a>(
    name: &'static str,
) -> impl Parser<&'a [u8], Output = u16, Error = PErr<'a>> {
    field(name, nom::number::complete::be_u16)
}

pub(crate) fn u32_field<'a>(
    name: &'static str,
) -> impl Parser<&'a [u8], Output = u32, Error = PErr<'a>> {
    field(name, nom::number::complete::be_u32)
}

pub(crate) fn bytes_field<'a>(
    name: &'static str,
    len: usize,
) -> impl Parser<&'a [u8], Output = &'a [u8], Error = PErr<'a>> {
    field(name, nom::bytes::complete::take(len))
}

/// Fails unless `rest` is empty: a section must be consumed exactly.
pub(crate) fn expect_end<'a>(rest: &'a [u8], field: &'static str) -> PResult<'a, ()> {
    if rest.is_empty() {
        Ok((rest, ()))
    } else {
        fail(rest, field, ErrorKind::TrailingData { len: rest.len() })
    }
}

/// Turns the outcome of a parser run over `whole` into the public result.
pub(crate) fn finish<'a, O>(whole: &'a [u8], result: PResult<'a, O>) -> Result<O, Error> {
    match result {
        Ok((_, out)) => Ok(out),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            Err(Error::new(e.kind, e.field, whole.offset(e.at)))
        }
        // Only streaming parsers report Incomplete; treat it as truncation at the end.
        Err(nom::Err::Incomplete(_)) => {
            Err(Error::new(ErrorKind::Truncated, "datagram", whole.len()))
        }
    }
}

/// `len` as a 16-bit length field, or TooLong naming the field.
fn len16(len: usize, field: &'static str, offset: usize) -> Result<u16, Error> {
    u16::try_from(len).map_err(|_| {
        Error::new(
            ErrorKind::TooLong {
                len,
                max: u16::MAX as usize,
            },
            field,
            offset,
        )
    })
}

/// Appends a big-endian u16 length, failing when `len` does not fit.
pub(crate) fn put_len16(
    out: &mut Vec<u8>,
    len: usize,
    field: &'static str,
    offset: usize,
) -> Result<(), Error> {
    out.extend_from_slice(&len16(len, field, offset)?.to_be_bytes());
    Ok(())
}

/// Overwrites the big-endian u16 placeholder at `at` with the length of
/// everything from `at` to the end of `out` (a self-inclusive section
/// length); `start` is where the datagram begins in `out`.
pub(crate) fn patch_len16(
    out: &mut [u8],
    start: usize,
    at: usize,
    field: &'static str,
) -> Result<(), Error> {
    let len = len16(out.len() - at, field, at - start)?;
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
