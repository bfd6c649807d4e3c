//! One ICP/HTCP query round as a state machine (squid-spec 1.6, 1.7,
//! 1.9, 2.5): [`QueryRound::start`] says which peers to ask, how, and
//! until when; every matched reply goes in through
//! [`QueryRound::on_reply`] and the deadline through
//! [`QueryRound::on_timeout`]; the round ends on the first HIT ("first
//! HIT wins"), when every expected reply arrived (up peers, plus each
//! multicast group's average count of responders; DENIED does not count),
//! or at the dynamic timeout. Parents' MISSes pick the first parent miss
//! and, with `query_icmp on`, the closest parent ([`ParentMisses`]).
//!
//! Nearest copy (issue 19): a HIT ends the round unless a peer still to
//! answer is nearer by the table's RTT average than every HIT so far; then
//! the round waits for it (at most to its deadline, as it would have
//! without the HIT), and of the HITs the nearest is used, the first of
//! equals. With one holder, or holders no nearer peer could beat, this
//! is Squid's "first HIT wins".

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cuttle_protocol::icp::Opcode;

use super::decide::peer_type_for;
use super::health;
use super::{Effect, PeerId, PeerView};
use crate::config::{CachePeer, PeerType};
use crate::peers::netdb::SrcRtt;
use crate::peers::table::{query_timeout_of, ExpectedRtts};

/// One reply that matched a query in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub peer: PeerId,
    pub opcode: Opcode,
    /// From sending the queries to receiving this reply.
    pub rtt: Duration,
    /// The reply carried ICP_FLAG_SRC_RTT: the peer's RTT to the origin.
    pub src_rtt: Option<SrcRtt>,
}

/// What a round of queries brought back.
#[derive(Debug, Clone, Default)]
pub struct Replies {
    /// The peer to fetch from: of the peers that answered HIT, the nearest
    /// by the table's RTT (the first of equals).
    pub hit: Option<PeerId>,
    /// Every peer that answered HIT, in arrival order.
    pub hits: Vec<PeerId>,
    /// The parent whose MISS came first (by weighted time). Like the
    /// closest, set even when the wait then timed out; selection decides.
    pub first_parent_miss: Option<PeerId>,
    /// The parent whose MISS reported the smallest origin RTT (SRC_RTT,
    /// `query_icmp on`).
    pub closest_parent_miss: Option<PeerId>,
    /// The wait ended by timeout rather than by all expected replies (or a HIT).
    pub timed_out: bool,
    /// Every matched reply, in arrival order.
    pub replies: Vec<Reply>,
    /// Queries sent / replies expected (up peers among them).
    pub sent: usize,
    pub expected: usize,
    /// How long the wait was allowed to last.
    pub timeout: Duration,
    /// The peers asked, with their type for the URL (a multicast group as
    /// itself): what a responder's reply counts as depends on them.
    pub asked: Vec<(PeerId, PeerType)>,
}

/// How a query goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// An ICP_QUERY; `src_rtt`: with ICP_FLAG_SRC_RTT set.
    Icp { src_rtt: bool },
    /// An HTCP TST.
    Htcp,
}

/// One query the caller sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub peer: PeerId,
    pub to: SocketAddr,
    pub protocol: Protocol,
    /// A multicast group: one datagram to the group with this TTL.
    pub multicast_ttl: Option<u8>,
    /// What to apply to the table when it goes out.
    pub effect: Effect,
}

/// What the caller does next.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait for replies until `deadline`, then call `on_timeout`.
    Wait { deadline: Instant },
    /// The round is over: its replies, moved out of the round (a call
    /// after this one answers `Done` with empty replies; no caller makes
    /// one).
    Done(Replies),
}

/// A round in progress, about a request for `host` (borrowed: the round
/// lives no longer than the request it serves).
#[derive(Debug, Clone)]
pub struct QueryRound<'h> {
    host: &'h str,
    query_icmp: bool,
    started: Instant,
    deadline: Instant,
    counted: usize,
    misses: ParentMisses,
    out: Replies,
    done: bool,
}

impl<'h> QueryRound<'h> {
    /// A round asking `targets` (peer and its type for the URL of `host`)
    /// at `now`; `icp` and `htcp` say which protocols can be sent (a peer
    /// whose protocol cannot is neither asked nor waited for: the caller
    /// leaves it out of `targets`). Returns the round, its queries, and
    /// the effects of looking (peers found dead are not waited for).
    pub fn start(
        view: &impl PeerView,
        host: &'h str,
        targets: &[(PeerId, PeerType)],
        icp: bool,
        now: Instant,
    ) -> (QueryRound<'h>, Vec<Query>, Vec<Effect>) {
        let mut queries = Vec::with_capacity(targets.len());
        let mut effects = Vec::new();
        let spare = Replies {
            replies: Vec::with_capacity(targets.len()),
            ..Replies::default()
        };
        let round = QueryRound::start_in(
            view,
            host,
            targets.to_vec(),
            spare,
            icp,
            now,
            &mut queries,
            &mut effects,
        );
        (round, queries, effects)
    }

    /// [`QueryRound::start`] for a caller that runs many rounds and keeps
    /// its lists: `targets` becomes the round's `asked`, the lists of
    /// `spare` (a finished round's [`Replies`], or a default one) are
    /// emptied and reused, and the queries and effects are written into
    /// `queries` and `effects` (emptied first).
    #[allow(clippy::too_many_arguments)]
    pub fn start_in(
        view: &impl PeerView,
        host: &'h str,
        targets: Vec<(PeerId, PeerType)>,
        spare: Replies,
        icp: bool,
        now: Instant,
        queries: &mut Vec<Query>,
        effects: &mut Vec<Effect>,
    ) -> QueryRound<'h> {
        let timing = view.timing();
        // Unicast peers count when up; a group counts the whole part of
        // its average number of responders (squid-spec 1.7, 1.9).
        let mut expected_rtts = ExpectedRtts::default();
        let mut expected = 0usize;
        queries.clear();
        effects.clear();
        for &(id, t) in &targets {
            let Some(p) = view.peer(id) else { continue };
            let group = p.config.peer_type == PeerType::Multicast;
            if group {
                let n = p.health.mcast_avg_members as u64;
                expected += n as usize;
                if n > 0 {
                    expected_rtts.add(PeerType::Multicast, p.health.rtt_ms);
                }
            } else if health::icp_dead(&p, &timing, now) {
                effects.push(Effect::FoundDead { peer: id });
            } else if health::is_up(&p, &timing, now) {
                expected += 1;
                expected_rtts.add(t, p.health.rtt_ms);
            }
            let Some(to) = p.icp_addr else { continue };
            let protocol = if p.config.htcp.is_some() {
                Protocol::Htcp
            } else if icp {
                // Squid stops asking a peer that answered version 3; a peer
                // not heard yet counts as version 2.
                Protocol::Icp {
                    src_rtt: view.query_icmp() && p.health.icp_version == 2,
                }
            } else {
                continue;
            };
            queries.push(Query {
                peer: id,
                to,
                protocol,
                multicast_ttl: group.then_some(p.config.ttl),
                effect: Effect::QuerySent {
                    peer: id,
                    at: now,
                    multicast: group,
                },
            });
        }
        let timeout = query_timeout_of(&timing, &expected_rtts);
        let Replies {
            mut hits,
            mut replies,
            ..
        } = spare;
        hits.clear();
        replies.clear();
        QueryRound {
            host,
            query_icmp: view.query_icmp(),
            started: now,
            deadline: now + timeout,
            counted: 0,
            misses: ParentMisses::default(),
            out: Replies {
                hits,
                replies,
                expected,
                timeout,
                asked: targets,
                ..Replies::default()
            },
            done: false,
        }
    }

    /// When the queries went out (replies' RTTs count from here).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// How many queries actually left (the caller's count).
    pub fn note_sent(&mut self, sent: usize) {
        self.out.sent = sent;
    }

    /// The step after sending: done at once when no reply is expected.
    pub fn step(&mut self) -> Step {
        if self.out.expected == 0 {
            return self.finish(false);
        }
        Step::Wait {
            deadline: self.deadline,
        }
    }

    /// A matched reply at `now`.
    pub fn on_reply(&mut self, view: &impl PeerView, reply: Reply, now: Instant) -> Step {
        if self.done {
            return Step::Done(Replies::default());
        }
        self.out.replies.push(reply);
        let peer_type = answer_type(view, &self.out.asked, reply.peer, self.host);
        match reply.opcode {
            Opcode::Hit => {
                if !self.out.hits.contains(&reply.peer) {
                    self.out.hits.push(reply.peer);
                }
                let rtt = |id: PeerId| view.peer(id).map_or(u64::MAX, |p| p.health.rtt_ms);
                // min_by_key keeps the first of equals: the earlier reply.
                self.out.hit = self.out.hits.iter().copied().min_by_key(|&id| rtt(id));
            }
            Opcode::Miss | Opcode::Decho if peer_type == PeerType::Parent => {
                if let Some(p) = view.peer(reply.peer) {
                    self.misses.note(&reply, p.config, self.query_icmp);
                }
            }
            _ => {}
        }
        if reply.opcode != Opcode::Denied {
            self.counted += 1;
        }
        if self.counted >= self.out.expected {
            return self.finish(false);
        }
        if !self.out.hits.is_empty() && !self.nearer_pending(view, now) {
            return self.finish(false);
        }
        Step::Wait {
            deadline: self.deadline,
        }
    }

    /// The smallest table RTT among the HITs so far.
    fn best_hit_rtt(&self, view: &impl PeerView) -> Option<u64> {
        self.out
            .hits
            .iter()
            .filter_map(|&id| view.peer(id).map(|p| p.health.rtt_ms))
            .min()
    }

    /// Whether a peer asked directly, up, and not heard yet is nearer by
    /// RTT than every HIT so far (a multicast group's members are not
    /// known in advance: never waited for past a HIT).
    fn nearer_pending(&self, view: &impl PeerView, now: Instant) -> bool {
        let Some(best) = self.best_hit_rtt(view) else {
            return false;
        };
        let timing = view.timing();
        self.out.asked.iter().any(|&(id, _)| {
            let Some(p) = view.peer(id) else { return false };
            p.config.peer_type != PeerType::Multicast
                && p.health.rtt_ms < best
                && !self.out.replies.iter().any(|r| r.peer == id)
                && !health::icp_dead(&p, &timing, now)
                && health::is_up(&p, &timing, now)
        })
    }

    /// The deadline passed (a wake-up before it changes nothing).
    pub fn on_timeout(&mut self, now: Instant) -> Step {
        if self.done {
            return Step::Done(Replies::default());
        }
        if now < self.deadline {
            return Step::Wait {
                deadline: self.deadline,
            };
        }
        self.finish(true)
    }

    /// The replies channel closed before the end: what arrived counts.
    pub fn on_closed(&mut self) -> Step {
        self.finish(false)
    }

    /// The end of the round: its replies move out to the caller (once).
    fn finish(&mut self, timed_out: bool) -> Step {
        if self.done {
            return Step::Done(Replies::default());
        }
        self.done = true;
        // A wait for a nearer copy that did not come still had a HIT
        // in hand: not a timed-out round (no TIMEOUT_ in the log).
        self.out.timed_out = timed_out && self.out.hit.is_none();
        self.out.first_parent_miss = self.misses.first.map(|(id, _)| id);
        self.out.closest_parent_miss = self.misses.closest.map(|(id, _)| id);
        Step::Done(std::mem::take(&mut self.out))
    }
}

/// The type `peer`'s reply counts as for a request about `host` whose
/// round asked `asked`: a peer asked directly answers as the type it was
/// asked as; a `multicast-responder` (Squid matches the reply's sender
/// against its neighbours) answers as a sibling when a group asked in
/// this round has `multicast-siblings`, else as its own type for this
/// host; anyone else as its own type for this host.
pub fn answer_type(
    view: &impl PeerView,
    asked: &[(PeerId, PeerType)],
    peer: PeerId,
    host: &str,
) -> PeerType {
    if let Some(&(_, t)) = asked.iter().find(|(id, _)| *id == peer) {
        return t;
    }
    let Some(p) = view.peer(peer) else {
        return PeerType::Sibling;
    };
    if !p.config.multicast_responder {
        return peer_type_for(p.config, host);
    }
    let sibling_group = asked.iter().any(|(id, _)| {
        view.peer(*id).is_some_and(|g| {
            g.config.peer_type == PeerType::Multicast && g.config.multicast_siblings
        })
    });
    if sibling_group {
        PeerType::Sibling
    } else {
        peer_type_for(p.config, host)
    }
}

/// Squid's handleIcpParentMiss over one round of queries (squid-spec 1.3,
/// 1.6): fed every MISS or DECHO from a peer that is a parent for the URL,
/// in arrival order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParentMisses {
    /// The parent that reported the smallest non-zero origin RTT, and it.
    pub closest: Option<(PeerId, u16)>,
    /// The parent whose MISS came first by weighted time, and that time:
    /// max(1, (ms since the queries went out - basetime) / weight).
    pub first: Option<(PeerId, u64)>,
}

impl ParentMisses {
    /// One parent's MISS (or DECHO). Its RTT report counts only with
    /// `query_icmp` on; a smaller one replaces the closest, a tie keeps the
    /// earlier. It is a first-parent-miss candidate unless it is
    /// `closest-only` or a closest parent is known by now.
    pub fn note(&mut self, reply: &Reply, parent: &CachePeer, query_icmp: bool) {
        if let Some(r) = reply.src_rtt.filter(|_| query_icmp) {
            if r.rtt_ms != 0 && self.closest.is_none_or(|(_, best)| r.rtt_ms < best) {
                self.closest = Some((reply.peer, r.rtt_ms));
            }
        }
        if parent.closest_only || self.closest.is_some() {
            return;
        }
        let base = parent.basetime.as_millis() as u64;
        let w = ((reply.rtt.as_millis() as u64).saturating_sub(base)
            / u64::from(parent.weight.max(1)))
        .max(1);
        if self.first.is_none_or(|(_, best)| w < best) {
            self.first = Some((reply.peer, w));
        }
    }
}
