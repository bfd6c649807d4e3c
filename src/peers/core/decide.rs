//! The decision of peer selection (squid-spec 3.1-3.4, 4): whether the
//! request may go direct, which peers a round asks, and from the round's
//! replies the ordered sources with their hierarchy codes. Pure: it reads
//! peers through a [`PeerView`] and returns the round-robin steps and
//! resets as [`Effect`]s instead of touching the table.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use super::round::{answer_type, Replies};
use super::{health, Effect, PeerId, PeerInfo, PeerView, Timing};
use crate::access::{self, Verdict};
use crate::access_log::HierarchyCode;
use crate::config::{CachePeer, Config, PeerType};
use crate::peers::select::{SelectRequest, Selection, Source};

#[cfg(test)]
pub(crate) use super::hash_parents::client_address_text;
pub use super::hash_parents::HashParents;

/// Round-robin counters are reset this often (Squid's peerClearRR event).
pub const RR_RESET_PERIOD: std::time::Duration = std::time::Duration::from_secs(300);
/// Weighted-round-robin counters are reset past this value.
const WRR_COUNT_LIMIT: u64 = 1_000_000;

/// Squid's "direct" decision (peer_select.cc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    Yes,
    No,
    Maybe,
}

/// A decision: the sources in order, and what to apply to the table.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub selection: Selection,
    pub effects: Vec<Effect>,
}

/// The view at one `now`, collecting the effects of what it is asked
/// (peers found dead, round-robin steps and resets).
pub(super) struct At<'v, V> {
    pub(super) view: &'v V,
    timing: Timing,
    pub(super) now: Instant,
    effects: RefCell<Vec<Effect>>,
    /// Round-robin counters as this decision changed them (a reset zeroes
    /// every one; a step adds to one).
    rr: RefCell<RoundRobin>,
    /// Whether the 5-minute reset is due: fixed for a decision (its `now`
    /// and the table's last reset do not change), so worked out once, and
    /// false once this decision has reset.
    rr_reset_due: std::cell::Cell<Option<bool>>,
}

#[derive(Default)]
struct RoundRobin {
    zeroed: bool,
    steps: Vec<(PeerId, u64)>,
}

impl<'v, V: PeerView> At<'v, V> {
    fn new(view: &'v V, now: Instant) -> At<'v, V> {
        At {
            view,
            timing: view.timing(),
            now,
            effects: RefCell::default(),
            rr: RefCell::default(),
            rr_reset_due: std::cell::Cell::new(None),
        }
    }

    pub(super) fn peer(&self, id: PeerId) -> Option<PeerInfo<'v>> {
        self.view.peer(id)
    }

    fn note(&self, effect: Effect) {
        let mut effects = self.effects.borrow_mut();
        // A dead peer is reported once per decision.
        if matches!(effect, Effect::FoundDead { .. }) && effects.contains(&effect) {
            return;
        }
        effects.push(effect);
    }

    /// Squid's neighborUp for peer `id` as read (`p`); a peer found
    /// ICP-dead is reported. The `_of` checks take the caller's read and
    /// are inlined: a loop reads only the fields the rules test.
    #[inline(always)]
    fn is_up_of(&self, id: PeerId, p: &PeerInfo<'_>) -> bool {
        if health::icp_dead(p, &self.timing, self.now) {
            self.note_dead(id);
        }
        health::is_up(p, &self.timing, self.now)
    }

    #[cold]
    #[inline(never)]
    fn note_dead(&self, id: PeerId) {
        self.note(Effect::FoundDead { peer: id });
    }

    #[inline(always)]
    pub(super) fn http_okay_of(&self, id: PeerId, p: &PeerInfo<'_>) -> bool {
        health::http_okay_with(p, || self.is_up_of(id, p))
    }

    /// [`At::http_okay_of`] reading the peer again (after a call out).
    fn http_okay(&self, id: PeerId) -> bool {
        self.peer(id).is_some_and(|p| self.http_okay_of(id, &p))
    }

    #[inline(always)]
    fn ping_due_of(&self, id: PeerId, p: &PeerInfo<'_>) -> bool {
        health::ping_due_with(p, &self.timing, self.now, || self.is_up_of(id, p))
    }

    /// The round-robin counter of peer `id` (read as `p`) as this
    /// decision sees it.
    fn rr_count_of(&self, id: PeerId, p: &PeerInfo<'_>) -> u64 {
        let rr = self.rr.borrow();
        let base = if rr.zeroed { 0 } else { p.health.rr_count };
        base + rr
            .steps
            .iter()
            .filter(|(p, _)| *p == id)
            .map(|(_, by)| by)
            .sum::<u64>()
    }

    /// Squid's 5-minute peerClearRR, checked before each pick: inlined
    /// for the usual answer, known not due; the rest out of line.
    #[inline(always)]
    fn maybe_reset_rr(&self) {
        if self.rr_reset_due.get() != Some(false) {
            self.reset_rr_if_due();
        }
    }

    #[inline(never)]
    fn reset_rr_if_due(&self) {
        let due = self.rr_reset_due.get().unwrap_or_else(|| {
            // now - reset_at >= period, compared as instants.
            let due = self
                .view
                .rr_reset_at()
                .checked_add(RR_RESET_PERIOD)
                .is_some_and(|due_at| self.now >= due_at);
            self.rr_reset_due.set(Some(due));
            due
        });
        if due {
            // Once per decision: after it, no longer due.
            self.rr_reset_due.set(Some(false));
            self.zero_rr();
            self.note(Effect::ResetRoundRobin { at: self.now });
        }
    }

    fn zero_rr(&self) {
        let mut rr = self.rr.borrow_mut();
        rr.zeroed = true;
        rr.steps.clear();
    }

    fn step_rr(&self, peer: PeerId, by: u64) {
        self.rr.borrow_mut().steps.push((peer, by));
        self.note(Effect::RoundRobinStep { peer, by });
    }

    /// Round-robin among `candidates` (each peer as read): the smallest
    /// rr_count / weight, ties to the later peer; its counter goes up by one.
    fn pick_round_robin<'p>(
        &self,
        candidates: impl Iterator<Item = (PeerId, PeerInfo<'p>)>,
    ) -> Option<PeerId> {
        self.maybe_reset_rr();
        let mut best: Option<(PeerId, u64, u64)> = None;
        for (id, p) in candidates {
            let count = self.rr_count_of(id, &p);
            let weight = u64::from(p.config.weight.max(1));
            // count/weight <= best_count/best_weight, compared without division.
            let better = match best {
                None => true,
                Some((_, bc, bw)) => count * bw <= bc * weight,
            };
            if better {
                best = Some((id, count, weight));
            }
        }
        let (id, _, _) = best?;
        self.step_rr(id, 1);
        Some(id)
    }

    /// Weighted round-robin: the smallest rr_count, ties to the later peer;
    /// it grows by max(1, (rtt - basetime) / weight).
    fn pick_weighted_round_robin<'p>(
        &self,
        candidates: impl Iterator<Item = (PeerId, PeerInfo<'p>)>,
    ) -> Option<PeerId> {
        self.maybe_reset_rr();
        let mut best: Option<(PeerId, u64, PeerInfo<'p>)> = None;
        for (id, p) in candidates {
            let count = self.rr_count_of(id, &p);
            if best.as_ref().is_none_or(|(_, bc, _)| count <= *bc) {
                best = Some((id, count, p));
            }
        }
        let (id, count, p) = best?;
        let base = p.config.basetime.as_millis() as u64;
        let step =
            (p.health.rtt_ms.saturating_sub(base) / u64::from(p.config.weight.max(1))).max(1);
        self.step_rr(id, step);
        if count + step > WRR_COUNT_LIMIT {
            self.zero_rr();
            self.note(Effect::ClearRoundRobin);
        }
        Some(id)
    }

    fn finish(self) -> Vec<Effect> {
        self.effects.into_inner()
    }
}

/// The list has rules and allows the request (always_direct's and
/// never_direct's reading).
pub fn allow_listed(
    list: &crate::config::AccessList,
    config: &Config,
    req: &access::Request<'_>,
) -> bool {
    !list.is_empty() && access::check(list, config, req).allowed()
}

/// Steps 1-6 of squid-spec 3.2 that cuttle can evaluate: always_direct,
/// never_direct, an accelerated request on a port without allow-direct,
/// loop; else MAYBE (no NetDB here).
pub fn direct(config: &Config, req: &SelectRequest<'_>) -> Direct {
    direct_by(
        || allow_listed(&config.always_direct, config, &req.access),
        || allow_listed(&config.never_direct, config, &req.access),
        req,
    )
}

/// [`direct`] with the always_direct and never_direct verdicts from the
/// caller (each asked at most once, in that order): a caller that knows
/// them without the access check (the simulator, for lists that match
/// every request) skips it.
#[inline]
pub fn direct_by(
    always_direct: impl FnOnce() -> bool,
    never_direct: impl FnOnce() -> bool,
    req: &SelectRequest<'_>,
) -> Direct {
    if always_direct() {
        return Direct::Yes;
    }
    if never_direct() || req.accel_no_direct {
        return Direct::No;
    }
    if req.looped {
        return Direct::Yes;
    }
    Direct::Maybe
}

/// Whether this request makes a query round at all (squid-spec 3.2 c).
pub fn queries_wanted(direct: Direct, req: &SelectRequest<'_>) -> bool {
    direct != Direct::Yes && (req.hierarchical || direct == Direct::No)
}

/// The peer's type for this host after `neighbor_type_domain` (the last
/// matching line wins, as Squid walks the list keeping the last match).
#[inline(always)]
pub fn peer_type_for(p: &CachePeer, host: &str) -> PeerType {
    // Most peers have no neighbor_type_domain: no host to fold then, and
    // this test inlined into the per-peer loops.
    if p.type_domains.is_empty() {
        return p.peer_type;
    }
    peer_type_by_domain(p, host)
}

#[inline(never)]
fn peer_type_by_domain(p: &CachePeer, host: &str) -> PeerType {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut t = p.peer_type;
    for td in &p.type_domains {
        if td.domains.iter().any(|d| domain_matches(d, &host)) {
            t = td.peer_type;
        }
    }
    t
}

fn domain_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// cache_peer_access (no rules = allowed).
#[inline]
pub fn peer_allowed(config: &Config, p: &CachePeer, req: &access::Request<'_>) -> bool {
    // Most peers have no cache_peer_access: allowed without building a check.
    if p.access.is_empty() {
        return true;
    }
    access::check(&p.access, config, req)
        .or_if_no_rules(Verdict::Allow)
        .allowed()
}

/// Squid's peerWouldBePinged for every peer, in Squid's rotating order
/// starting at `start`: the peers to ask, with their type for this URL,
/// and the effects of looking (peers found dead).
pub fn to_ping(
    view: &impl PeerView,
    config: &Config,
    req: &SelectRequest<'_>,
    start: usize,
    now: Instant,
) -> (Vec<(PeerId, PeerType)>, Vec<Effect>) {
    // Sized once: growing a Vec from empty costs more than allocating it.
    let mut out = Vec::with_capacity(view.peer_count());
    let effects = to_ping_into(view, config, req, start, now, &mut out);
    (out, effects)
}

/// [`to_ping`] into the caller's list `out` (emptied first), kept across
/// requests by a caller that makes many; returns the effects.
pub fn to_ping_into(
    view: &impl PeerView,
    config: &Config,
    req: &SelectRequest<'_>,
    start: usize,
    now: Instant,
    out: &mut Vec<(PeerId, PeerType)>,
) -> Vec<Effect> {
    let at = At::new(view, now);
    let n = view.peer_count();
    out.clear();
    for k in 0..n {
        let id = (start + k) % n;
        let Some(p) = at.peer(id) else { continue };
        // A multicast group is asked with one datagram to the group; its
        // responders are never asked directly (not queryable).
        if !health::queryable(&p) {
            continue;
        }
        let t = peer_type_for(p.config, req.access.host);
        if t == PeerType::Sibling && !(req.hierarchical && req.siblings_ok) {
            continue;
        }
        if p.config.background_ping {
            let recent = p.health.last_query.is_some_and(|q| {
                now.saturating_duration_since(q) < config.background_ping_rate.value
            });
            if recent {
                continue;
            }
        }
        if !peer_allowed(config, p.config, &req.access) {
            continue;
        }
        // A peer whose digest said miss is still asked, as Squid 5.7 does
        // (squid-spec 3.2): objects it stored since its digest was built
        // are not in the digest. A synced MON set is exact: its miss is
        // not asked.
        if view.mon_holds(id, req.access.url) == Some(false) {
            continue;
        }
        if !at.ping_due_of(id, &p) {
            continue;
        }
        out.push((id, t));
    }
    at.finish()
}

/// Squid's neighborsDigestSelect (squid-spec 3.2 a, 5.4), for a
/// hierarchical request that may use peers: every peer with a usable
/// digest is looked up, in the rotating order starting at `start`; of
/// those predicting a hit and usable by HTTP (and, for siblings, allowed
/// to use siblings), the one with the smallest known RTT, else the first.
/// Returns it with its type for this URL, and the effects of looking.
pub fn digest_choice(
    view: &impl PeerView,
    config: &Config,
    req: &SelectRequest<'_>,
    start: usize,
    now: Instant,
) -> (Option<(PeerId, PeerType)>, Vec<Effect>) {
    holder_choice(view, config, req, start, now, |v, id, url| {
        v.digest_holds(id, url)
    })
}

/// [`digest_choice`] for HTCP MON sets (`htcp=monitor` peers): a synced
/// set that holds a fresh copy picks its peer the same way.
pub fn mon_choice(
    view: &impl PeerView,
    config: &Config,
    req: &SelectRequest<'_>,
    start: usize,
    now: Instant,
) -> (Option<(PeerId, PeerType)>, Vec<Effect>) {
    holder_choice(view, config, req, start, now, |v, id, url| {
        v.mon_holds(id, url)
    })
}

/// The choice among the peers `holds` says have the URL.
fn holder_choice<V: PeerView>(
    view: &V,
    config: &Config,
    req: &SelectRequest<'_>,
    start: usize,
    now: Instant,
    holds: impl Fn(&V, PeerId, &str) -> Option<bool>,
) -> (Option<(PeerId, PeerType)>, Vec<Effect>) {
    let at = At::new(view, now);
    if !req.hierarchical {
        return (None, at.finish());
    }
    let n = view.peer_count();
    let mut best: Option<(PeerId, PeerType, u64)> = None;
    for k in 0..n {
        let id = (start + k) % n;
        let Some(p) = at.peer(id) else { continue };
        if p.config.peer_type == PeerType::Multicast {
            continue;
        }
        let t = peer_type_for(p.config, req.access.host);
        if t == PeerType::Sibling && !req.siblings_ok {
            continue;
        }
        if !peer_allowed(config, p.config, &req.access) {
            continue;
        }
        if holds(view, id, req.access.url) != Some(true) || !at.http_okay(id) {
            continue;
        }
        let rtt = p.health.rtt_ms;
        let better = match best {
            None => true,
            Some((_, _, b)) => rtt > 0 && (b == 0 || rtt < b),
        };
        if better {
            best = Some((id, t, rtt));
        }
    }
    (best.map(|(id, t, _)| (id, t)), at.finish())
}

/// Parents usable by HTTP for this request, in config order.
fn usable_parents<V: PeerView>(
    at: &At<'_, V>,
    config: &Config,
    req: &SelectRequest<'_>,
    into: &mut Vec<PeerId>,
) {
    into.clear();
    into.extend((0..at.view.peer_count()).filter(|&id| {
        at.peer(id).is_some_and(|p| {
            p.config.peer_type != PeerType::Multicast
                && peer_type_for(p.config, req.access.host) == PeerType::Parent
                && peer_allowed(config, p.config, &req.access)
                && at.http_okay_of(id, &p)
        })
    }));
}

/// Squid's selectSomeParent: sourcehash, userhash, CARP, round-robin,
/// weighted-round-robin, first-up (default is never reached, squid-spec
/// 3.2).
fn some_parent<V: PeerView>(
    at: &At<'_, V>,
    hashes: &HashParents,
    config: &Config,
    req: &SelectRequest<'_>,
    parents: &[PeerId],
) -> Option<(PeerId, HierarchyCode)> {
    if let Some(chosen) = hashes.choose(at, config, req) {
        return Some(chosen);
    }
    // The candidates are read as picked, not listed first: what they are
    // depends on the configuration only, which a pick does not change.
    let with = |f: fn(&CachePeer) -> bool| {
        parents
            .iter()
            .filter_map(move |&id| at.peer(id).filter(|p| f(p.config)).map(|p| (id, p)))
    };
    if let Some(id) = at.pick_round_robin(with(|p| p.round_robin)) {
        return Some((id, HierarchyCode::RoundrobinParent));
    }
    if let Some(id) = at.pick_weighted_round_robin(with(|p| p.weighted_round_robin)) {
        return Some((id, HierarchyCode::RoundrobinParent));
    }
    if let Some(&id) = parents.first() {
        return Some((id, HierarchyCode::FirstUpParent));
    }
    None
}

/// The ordered sources (squid-spec 3.2), given the round's replies if
/// any (copied into the selection: [`decide_with_digest`] moves them),
/// and the effects to apply (round-robin steps, resets, dead peers).
pub fn decide(
    view: &impl PeerView,
    hashes: &HashParents,
    config: &Config,
    req: &SelectRequest<'_>,
    direct: Direct,
    replies: Option<&Replies>,
    now: Instant,
) -> Decision {
    decide_with_digest(
        view,
        hashes,
        config,
        req,
        direct,
        None,
        replies.cloned(),
        now,
    )
}

/// [`decide`] after a digest lookup: a peer whose digest predicted a hit
/// ([`digest_choice`]) comes first, as CD_SIBLING_HIT or CD_PARENT_HIT.
/// The round's replies move into the selection.
#[allow(clippy::too_many_arguments)]
pub fn decide_with_digest(
    view: &impl PeerView,
    hashes: &HashParents,
    config: &Config,
    req: &SelectRequest<'_>,
    direct: Direct,
    digest_hit: Option<(PeerId, PeerType)>,
    replies: Option<Replies>,
    now: Instant,
) -> Decision {
    let kept = Kept {
        // At most every peer once, and DIRECT.
        sources: Vec::with_capacity(view.peer_count() + 1),
        direct_host: None,
        parents: None,
    };
    decide_in(
        view, hashes, config, req, direct, digest_hit, replies, now, kept,
    )
}

/// What a caller that decides again and again (the simulator) keeps
/// between decisions so that one allocates neither.
pub struct Kept<'k> {
    /// An empty list the sources go into (its capacity reused).
    pub sources: Vec<Source>,
    /// DIRECT's host, made once per URL: `req.access.host` as shared text.
    pub direct_host: Option<&'k Arc<str>>,
    /// A list for the usable parents, filled (after clearing) when needed.
    pub parents: Option<&'k mut Vec<PeerId>>,
}

/// [`decide_with_digest`] into the caller's list, with DIRECT's host
/// given (the same decision, without the two allocations). Inlined: the
/// round's replies and the decision then move in place, not through
/// copies on the stack.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn decide_in(
    view: &impl PeerView,
    hashes: &HashParents,
    config: &Config,
    req: &SelectRequest<'_>,
    direct: Direct,
    digest_hit: Option<(PeerId, PeerType)>,
    replies: Option<Replies>,
    now: Instant,
    kept: Kept<'_>,
) -> Decision {
    let at = At::new(view, now);
    let mut sources = kept.sources;
    sources.clear();
    let host = req.access.host;
    let port = req.access.port;
    let add = |sources: &mut Vec<Source>, id: PeerId, code: HierarchyCode| {
        if sources.iter().any(|s| s.peer == Some(id)) {
            return;
        }
        if let Some(p) = at.peer(id) {
            let t = peer_type_for(p.config, host);
            sources.push(Source::peer(id, p.config, p.host, code, t));
        }
    };
    if direct != Direct::Yes {
        if let Some((id, t)) = digest_hit {
            let code = match t {
                PeerType::Parent => HierarchyCode::CdParentHit,
                _ => HierarchyCode::CdSiblingHit,
            };
            add(&mut sources, id, code);
        }
        if let Some(r) = &replies {
            if let Some(id) = r.hit {
                let code = match answer_type(view, &r.asked, id, host) {
                    PeerType::Parent => HierarchyCode::ParentHit,
                    _ => HierarchyCode::SiblingHit,
                };
                add(&mut sources, id, code);
            } else if r.timed_out {
                // Squid 5.7 reads no MISS after a timeout (see select's doc).
            } else if let Some(id) = r.closest_parent_miss {
                add(&mut sources, id, HierarchyCode::ClosestParentMiss);
            } else if let Some(id) = r.first_parent_miss {
                add(&mut sources, id, HierarchyCode::FirstParentMiss);
            }
        }
    }
    let mut own_list = Vec::new();
    let usable = kept.parents.unwrap_or(&mut own_list);
    let mut parents = |sources: &mut Vec<Source>| {
        usable_parents(&at, config, req, usable);
        if let Some((id, code)) = some_parent(&at, hashes, config, req, usable) {
            add(sources, id, code);
        }
        for &id in usable.iter() {
            add(sources, id, HierarchyCode::AnyOldParent);
        }
        // Squid then appends the default parent as DEFAULT_PARENT; it is
        // always already listed (squid-spec 3.2), so nothing changes.
    };
    let direct_source = match kept.direct_host {
        Some(shared) => Source::direct_shared(Arc::clone(shared), port),
        None => Source::direct(host, port),
    };
    match direct {
        Direct::Yes => sources.push(direct_source),
        Direct::No => parents(&mut sources),
        Direct::Maybe => {
            let prefer = config.prefer_direct.value;
            if prefer {
                sources.push(direct_source.clone());
            }
            if req.hierarchical || !config.nonhierarchical_direct.value {
                parents(&mut sources);
            }
            if !prefer {
                sources.push(direct_source);
            }
        }
    }
    Decision {
        selection: Selection {
            sources,
            timed_out: replies.as_ref().is_some_and(|r| r.timed_out),
            replies,
        },
        effects: at.finish(),
    }
}
