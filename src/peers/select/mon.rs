//! Selection from HTCP MON sets (`htcp=monitor` peers, `peers::monitor`):
//! starting the subscriber, choosing a peer whose synced set holds the
//! object (MON_SIBLING_HIT, MON_PARENT_HIT) and counting its false hits.

use std::sync::Arc;
use std::time::Instant;

use super::{lock, Direct, Neighbours, SelectRequest, Selection};
use crate::access_log::HierarchyCode;
use crate::config::Config;
use crate::peers::core::decide::{decide_with_digest, mon_choice};
use crate::peers::table::PeerId;

impl Neighbours {
    /// Starts the HTCP MON subscriber (inside the runtime), once for all
    /// generations, when this one has an `htcp=monitor` peer; it follows
    /// the newest table and sends from udp_outgoing_address.
    pub fn start_monitors(&self) {
        let wanted = self
            .table
            .peers
            .iter()
            .any(|p| crate::peers::monitor::monitored(&p.config));
        let mut icp = lock(&self.icp);
        if wanted && icp.monitors.is_none() {
            let shared = Arc::downgrade(&self.icp);
            let newest = move || shared.upgrade().map(|s| Arc::clone(&lock(&s).table));
            let local = icp.local;
            icp.monitors = Some(tokio::spawn(crate::peers::monitor::subscriber::run(
                newest, local,
            )));
        }
    }

    /// Notes that peer `id` answered a fetch its MON set predicted as a
    /// hit with 504 (it did not have the object).
    pub fn note_mon_false_hit(&self, id: PeerId) {
        if let Some(p) = self.table.get(id) {
            p.mon.note_false_hit();
        }
    }

    /// Before digests and queries: a peer whose MON set holds a fresh copy
    /// is the first source, decided as a digest's hit, coded as MON's.
    pub(super) fn mon_selection(
        &self,
        config: &Config,
        req: &SelectRequest<'_>,
        direct: Direct,
        start: usize,
        now: Instant,
    ) -> Option<Selection> {
        // Most meshes monitor nobody: no ACL is evaluated for them here.
        let monitored =
            |p: &&crate::peers::table::Peer| crate::peers::monitor::monitored(&p.config);
        self.table.peers.iter().find(monitored)?;
        let (hit, effects) = mon_choice(self.table.as_ref(), config, req, start, now);
        self.table.apply_all(&effects);
        let hit = hit?;
        if let Some(p) = self.table.get(hit.0) {
            p.mon.note_hit();
        }
        let mut decision = decide_with_digest(
            self.table.as_ref(),
            &self.hashes,
            config,
            req,
            direct,
            Some(hit),
            None,
            now,
        );
        self.table.apply_all(&decision.effects);
        as_mon_hit(&mut decision.selection, hit.0);
        Some(decision.selection)
    }
}

/// The source a MON set chose gets MON's hierarchy code.
fn as_mon_hit(selection: &mut Selection, peer: PeerId) {
    for s in selection
        .sources
        .iter_mut()
        .filter(|s| s.peer == Some(peer))
    {
        s.code = match s.code {
            HierarchyCode::CdParentHit => HierarchyCode::MonParentHit,
            HierarchyCode::CdSiblingHit => HierarchyCode::MonSiblingHit,
            other => other,
        };
    }
}
