//! The one error type of the wire codecs: what is wrong, in which field, at
//! which byte offset. A bad datagram is diagnosed from this value alone.

use std::fmt;

/// A datagram (or a message being encoded) that does not fit the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub kind: ErrorKind,
    /// The wire field where it was found, in snake_case (`url`, `data_length`, ...).
    pub field: &'static str,
    /// Byte offset of that field from the start of the datagram.
    pub offset: usize,
}

/// The ways a datagram can be malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The datagram ends inside the field.
    Truncated,
    /// A length field disagrees with the bytes that are there.
    LengthMismatch { declared: usize, actual: usize },
    /// An opcode this protocol does not define. No codec reports it now:
    /// unknown opcodes are kept as values (`Opcode::Unknown`).
    UnknownOpcode(u8),
    /// A protocol version we do not speak (HTCP's MAJOR; ICP keeps an
    /// unknown version as a value).
    UnknownVersion(u8),
    /// A string that must end with a NUL byte has none.
    MissingNul,
    /// A field (or the whole datagram) is longer than the protocol allows.
    TooLong { len: usize, max: usize },
    /// Bytes are left over after the last field.
    TrailingData { len: usize },
    /// A section holds a shape the protocol does not allow.
    Invalid(&'static str),
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, field: &'static str, offset: usize) -> Self {
        Error {
            kind,
            field,
            offset,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated => f.write_str("truncated"),
            ErrorKind::LengthMismatch { declared, actual } => {
                write!(f, "length {declared} declared but {actual} bytes present")
            }
            ErrorKind::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            ErrorKind::UnknownVersion(v) => write!(f, "unknown version {v}"),
            ErrorKind::MissingNul => f.write_str("string not NUL-terminated"),
            ErrorKind::TooLong { len, max } => {
                write!(f, "{len} bytes is longer than the limit of {max}")
            }
            ErrorKind::TrailingData { len } => write!(f, "{len} unexpected trailing bytes"),
            ErrorKind::Invalid(what) => f.write_str(what),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in field {} at offset {}",
            self.kind, self.field, self.offset
        )
    }
}

impl std::error::Error for Error {}
