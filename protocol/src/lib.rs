//! Wire formats of Squid's peer protocols, with no I/O, no clock and no
//! runtime: bytes in, typed borrowed messages out, and the reverse. Every
//! parser is strict (lengths must match, nothing left over) and returns an
//! [`Error`] naming the field and byte offset instead of panicking.

#![forbid(unsafe_code)]

pub mod carp;
pub mod digest;
pub mod discovery;
pub mod error;
pub mod htcp;
pub mod icp;
pub mod key;
pub mod share;
pub mod text;
mod wire;

pub use error::{Error, ErrorKind};
pub use text::Text;
