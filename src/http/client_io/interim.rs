//! The queue of 1xx interim responses a client connection writes before
//! the final response of its request in flight (see the parent module).

use http::{HeaderMap, StatusCode};
use std::task::Waker;

/// Interim responses waiting to be written before the final response of
/// the request in flight.
#[derive(Debug, Default)]
pub(super) struct InterimQueue {
    /// Their bytes, complete responses one after the other.
    pub(super) bytes: Vec<u8>,
    /// How much of `bytes` is written.
    pub(super) written: usize,
    /// The connection's task, to write them when they come.
    pub(super) flusher: Option<Waker>,
    /// The request's service, waiting for them before its final response.
    pub(super) waiter: Option<Waker>,
}

/// More queued interim bytes than this (a server sending 1xx after 1xx to
/// a client that does not read) and further ones are dropped.
pub(super) const MAX_INTERIM_QUEUED: usize = 64 * 1024;

/// Where a request stands about interim responses, in the low bits of
/// [`Activity::interim_phase`] (the request's number is above them): none
/// yet and they may come;
pub(super) const INTERIM_IDLE: u64 = 0;
/// a fetch may relay them (the connection's flushes look at the queue);
pub(super) const INTERIM_ARMED: u64 = 1;
/// the final response is on its way: no more.
pub(super) const INTERIM_FINAL: u64 = 2;
pub(super) const INTERIM_PHASE_BITS: u32 = 2;

pub(super) fn interim_phase(request: u64, phase: u64) -> u64 {
    (request << INTERIM_PHASE_BITS) | phase
}

/// An interim response as written to the client: its status line and its
/// fields but the hop-by-hop ones (a 1xx has no content to frame).
pub(super) fn interim_head(status: StatusCode, fields: &HeaderMap) -> Vec<u8> {
    let mut fields = fields.clone();
    crate::caching::remove_hop_by_hop(&mut fields);
    fields.remove(http::header::CONTENT_LENGTH);
    let reason = status.canonical_reason().unwrap_or("");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).into_bytes();
    for (name, value) in &fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}
