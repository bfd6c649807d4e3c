//! HTCP MON between cuttle peers: a cache subscribes, for a lease, to a
//! peer's cache activity (RFC 2756 MON) and keeps an exact set of the
//! objects the peer holds, which selection uses like a Cache Digest with
//! no false hits from staleness (`MON_SIBLING_HIT`, `MON_PARENT_HIT`).
//! Squid answers no MON, so only peers marked `cuttle` are monitored.
//!
//! The subscriber ([`subscriber`], one task per proxy) keeps a
//! [`MonitorSlot`] per `htcp=monitor` peer; the publisher ([`publisher`],
//! one task per process) answers subscriptions the HTCP responder accepts
//! and streams the store's changes ([`crate::store::ChangeFeed`]).
//!
//! The profile of RFC 2756 MON cuttle speaks (the RFC leaves sequencing,
//! resync and object naming open):
//!
//! - Request: opcode MON, RD set, MINOR 1, TIME = lease seconds wanted
//!   (1-255; 0 ends the subscription), TRANS-ID = the subscription id S,
//!   chosen by the subscriber (never 0). Renewing is the same request
//!   with the same S.
//! - Every response of subscription S carries TRANS-ID S + n, n counting
//!   from 0 with each response sent to it: a subscriber that sees n jump
//!   lost a datagram (a gap). Responses with RESPONSE 0 carry a MON
//!   OP-DATA (TIME = lease seconds left, ACTION, REASON, IDENTITY).
//! - Control responses have no `Store-Key` in CACHE-HDRS: ACTION Added
//!   (n = 0) starts a subscription and says a full resync follows: one
//!   object notice for every object the publisher holds; ACTION Refreshed
//!   says "you are in sync up to here" (the end of a resync, a renewal
//!   after it, and a heartbeat every [`HEARTBEAT`]); ACTION Deleted ends the
//!   subscription (lease over, cancelled, or the publisher lost track).
//! - Object notices name the object by store key, not URL (the store's
//!   index keeps no URLs): CACHE-HDRS `Store-Key: <32 hex>` and, for an
//!   object held, `Store-Times: <date> <expires> <last-modified>` (Unix
//!   seconds); ACTION Added = held with these times, Deleted = gone. The
//!   subscriber judges freshness from the times with the rule an HTCP TST
//!   answer uses, so an object that goes stale needs no notice.
//! - Refusal: RESPONSE 1 (too many subscribers), no OP-DATA. A cuttle
//!   with `htcp_monitor_max_subscribers 0` answers MO set, RESPONSE 2
//!   ("opcode not implemented"); the subscriber logs it and asks again
//!   only after [`REFUSED_RETRY`].
//!
//! Resync: a new subscription (and a publisher restarted, which answers a
//! renewal it does not know with a new Added) starts from an empty set,
//! filled by the resync; the set answers for selection only once the
//! Refreshed after the resync came, and only while the lease runs and the
//! publisher was heard within [`SILENCE_LIMIT`]. A gap, an Added in the
//! middle, a Deleted, an expired lease or silence empties the set and
//! makes the subscriber subscribe again with a new id: a lost or late
//! notification is wrong for at most [`HEARTBEAT`] (the next heartbeat's
//! sequence number shows the gap), a dead publisher for [`SILENCE_LIMIT`].

pub mod publisher;
mod set;
pub mod subscriber;
pub mod wire;

pub use publisher::{Publisher, PublisherStats, SubscriberView};
pub use set::{MonitorSlot, MonitorView, Phase};

use std::time::Duration;

use crate::config::CachePeer;

/// Whether `peer` is monitored (`htcp=monitor`; `cuttle check` refuses it
/// without the `cuttle` option, and a peer without it is never sent MON).
pub fn monitored(peer: &CachePeer) -> bool {
    peer.cuttle && peer.icp_port != 0 && peer.htcp.is_some_and(|h| h.monitor)
}

/// How often the publisher tells a quiet subscriber it is in sync.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A publisher not heard from this long is taken for gone: its set stops
/// answering until a new subscription is synced.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// Lease the subscriber asks for (the publisher may grant less).
pub const LEASE_WANTED: u8 = 60;

/// How long a subscription request waits for its answer before it is sent
/// again (with a new id).
pub const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// After a refusal or "not implemented", the next try.
pub const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// Most objects kept per monitored peer: past this the set is no longer
/// exact, so it is dropped and the peer is queried as without MON (28
/// bytes of key and times per object, about 45 with the table's overhead:
/// some 45 MB at this bound).
pub const MAX_OBJECTS: usize = 1 << 20;
