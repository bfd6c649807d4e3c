//! The simulator's ICP/HTCP query round: the core's round run on the
//! virtual clock, the queried nodes answering from their stores.

use cuttle_protocol::icp::Opcode;

use super::*;
use crate::peers::core::round::{QueryRound, Step};
use crate::peers::htcp_server::tst_finds;
use crate::peers::icp_server::answers_hit;
use crate::sim::verdicts::Protocol as Asked;

impl<'m> Engine<'m> {
    /// One ICP/HTCP round run by the core at `ready` (`now` as an instant),
    /// the queried nodes answering from their stores; returns the replies
    /// and when the wait ended (ms).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn query_round(
        &mut self,
        at: usize,
        object: u32,
        req: &SelectRequest<'_>,
        host: &str,
        mut targets: Vec<(usize, crate::config::PeerType)>,
        ready: f64,
        now: Instant,
    ) -> (Option<Replies>, f64) {
        let epoch = self.epoch.unwrap_or(0.0);
        let config = self.nodes[at].config;
        // No icp_port: the proxy's ICP client sends nothing (Squid's "ICP
        // is disabled!"); no htcp_port: HTCP peers are not asked.
        if config.icp_port.value == 0 {
            self.lists.targets = targets;
            return (None, ready);
        }
        if config.htcp_port.value == 0 {
            let icp_only = |&(id, _): &(usize, crate::config::PeerType)| {
                config
                    .cache_peers
                    .get(id)
                    .is_some_and(|cp| cp.value.htcp.is_none())
            };
            // Most meshes ask no HTCP peer: nothing to take out then.
            if !targets.iter().all(icp_only) {
                targets.retain(icp_only);
            }
        }
        let view = View::new(&self.nodes, at, self.objects.key(object));
        let mut queries = std::mem::take(&mut self.lists.queries);
        let mut effects = std::mem::take(&mut self.lists.effects);
        let spare = std::mem::take(&mut self.lists.spare);
        let mut round = QueryRound::start_in(
            &view,
            host,
            targets,
            spare,
            true,
            now,
            &mut queries,
            &mut effects,
        );
        round.note_sent(queries.len());
        let from = self.nodes[at].address;
        let unix_now = unix(epoch, ready);
        self.replies.clear();
        // The responders' checklist: the asking node's address for the client's.
        let mut asking = req.access;
        asking.client = from;
        asking.local_ip = None;
        for q in &queries {
            let htcp = matches!(q.protocol, crate::peers::core::round::Protocol::Htcp);
            if htcp {
                self.stats[at].htcp_sent += 1;
            } else {
                self.stats[at].icp_sent += 1;
            }
            let Some(peer) = self.nodes[at].peers.get(q.peer).and_then(|p| p.node) else {
                continue;
            };
            let path = self.topology.path(at, peer);
            if path.unreachable {
                continue;
            }
            let answerer = &self.nodes[peer];
            let held = answerer.store.peek(&self.holdings, object);
            let verdicts = &mut self.verdicts;
            let mut rule_of = |asked| verdicts.allowed(asked, peer, at, answerer.config, &asking);
            let opcode = if htcp {
                if answerer.config.htcp_port.value == 0 || !rule_of(Asked::Htcp) {
                    continue;
                }
                match held {
                    Some(h) if tst_finds(&h.times, unix_now) => Opcode::Hit,
                    _ => Opcode::Miss,
                }
            } else {
                if answerer.config.icp_port.value == 0 {
                    continue;
                }
                if !rule_of(Asked::Icp) {
                    Opcode::Denied
                } else {
                    match held {
                        Some(h) if answers_hit(answerer.config, &h.times, unix_now) => Opcode::Hit,
                        _ if answerer.config.offline() => Opcode::MissNoFetch,
                        _ => Opcode::Miss,
                    }
                }
            };
            if htcp {
                self.stats[peer].htcp_sent += 1;
            } else {
                self.stats[peer].icp_sent += 1;
            }
            // Equally near peers race: scheduling noise, not the order the
            // queries left in, decides whose reply comes first.
            let mut rtt_ms = 2.0 * path.latency_ms;
            if self.mesh.reply_jitter_ms > 0.0 {
                rtt_ms += self.mesh.reply_jitter_ms * self.jitter.gen::<f64>();
            }
            self.replies.push((
                rtt_ms,
                Reply {
                    peer: q.peer,
                    opcode,
                    rtt: Duration::from_nanos((rtt_ms * 1e6) as u64),
                    src_rtt: None,
                },
            ));
        }
        self.replies.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut step = round.step();
        let mut ended = ready;
        for (rtt_ms, reply) in &self.replies {
            let Step::Wait { deadline } = step else { break };
            let at_ms = ready + rtt_ms;
            let arrived = self.instant(at_ms);
            if arrived > deadline {
                break;
            }
            ended = at_ms;
            step = round.on_reply(&view, *reply, arrived);
        }
        if let Step::Wait { deadline } = step {
            ended = ready + deadline.saturating_duration_since(now).as_secs_f64() * 1000.0;
            step = round.on_timeout(deadline);
        }
        if let Step::Wait { .. } = step {
            step = round.on_closed();
        }
        let Step::Done(replies) = step else {
            return (None, ended);
        };
        let node = &mut self.nodes[at];
        node.apply_all(&effects);
        for q in &queries {
            node.apply(&q.effect);
        }
        self.lists.queries = queries;
        self.lists.effects = effects;
        // Replies after the round still revive the peer; their RTT counts
        // only if they come while the request is in flight (see `forward`).
        for (rtt_ms, reply) in &self.replies {
            if ready + rtt_ms <= ended {
                node.note_reply(reply.peer, Some(*rtt_ms as u64));
            } else {
                self.late.push((ready + rtt_ms, reply.peer, *rtt_ms as u64));
            }
        }
        (Some(replies), ended)
    }
}
