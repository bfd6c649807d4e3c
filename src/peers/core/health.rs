//! The liveness rules of squid-spec 1.8 and 3.3 as pure functions of a
//! peer's [`PeerInfo`] and `now`: the table's own checks and the core's
//! use these, so there is one rule.

use std::time::{Duration, Instant};

use super::{PeerInfo, Timing};
use crate::config::PeerType;

/// ICP-dead: a query unanswered for longer than dead_peer_timeout
/// (never for `no-query` peers).
#[inline]
pub fn icp_dead(p: &PeerInfo<'_>, timing: &Timing, now: Instant) -> bool {
    !p.config.no_query
        && p.health
            .icp_probe_start
            .is_some_and(|t| longer_ago(now, t, timing.dead_peer_timeout))
}

/// `now - then > limit` (0 when `then` is later), compared as instants:
/// cheaper than building the duration, and this runs per peer per request.
#[inline]
pub fn longer_ago(now: Instant, then: Instant, limit: Duration) -> bool {
    then.checked_add(limit).is_some_and(|end| now > end)
}

/// Squid's neighborUp: TCP up, not disabled, and not ICP-dead.
#[inline]
pub fn is_up(p: &PeerInfo<'_>, timing: &Timing, now: Instant) -> bool {
    p.health.tcp_up > 0 && !p.health.disabled && !icp_dead(p, timing, now)
}

/// Squid's peerHTTPOkay without the access check: below max-conn and up.
#[inline]
pub fn http_okay(p: &PeerInfo<'_>, timing: &Timing, now: Instant) -> bool {
    http_okay_with(p, || is_up(p, timing, now))
}

/// [`http_okay`] with the caller's `is_up` (which may note a dead peer).
#[inline]
pub fn http_okay_with(p: &PeerInfo<'_>, is_up: impl FnOnce() -> bool) -> bool {
    p.config
        .max_conn
        .is_none_or(|max| p.health.open_conns < max)
        && is_up()
}

/// Whether a ping round at `now` includes this (otherwise eligible) peer:
/// up peers always, down ones when not queried for more than
/// dead_peer_timeout (squid-spec 1.8, 3.3).
#[inline]
pub fn ping_due(p: &PeerInfo<'_>, timing: &Timing, now: Instant) -> bool {
    ping_due_with(p, timing, now, || is_up(p, timing, now))
}

/// [`ping_due`] with the caller's `is_up` (which may note a dead peer).
#[inline]
pub fn ping_due_with(
    p: &PeerInfo<'_>,
    timing: &Timing,
    now: Instant,
    is_up: impl FnOnce() -> bool,
) -> bool {
    if p.health.disabled {
        return false;
    }
    // A multicast group is asked every round: it is never fetched from
    // (no TCP state) and never answers itself (no ICP-dead clock); its
    // responders' replies are what count.
    if p.config.peer_type == PeerType::Multicast {
        return true;
    }
    let quiet = p
        .health
        .last_query
        .is_none_or(|t| longer_ago(now, t, timing.dead_peer_timeout));
    quiet || is_up()
}

/// Whether this peer is queried at all (ICP or HTCP port, not no-query,
/// not a multicast responder, not `htcp=only-clr`, has an address).
#[inline]
pub fn queryable(p: &PeerInfo<'_>) -> bool {
    p.config.icp_port != 0
        && !p.config.no_query
        && !p.config.multicast_responder
        && !p.config.htcp.is_some_and(|h| h.only_clr)
        && p.icp_addr.is_some()
}
