//! What a fetch from a peer leaves in the peer table: its max-conn slot
//! (held by a [`ConnGuard`]), fetch and hit counts, its service time for
//! `load-aware` CARP, and connect outcomes for the dead-peer rules.

use std::sync::Arc;
use std::time::Duration;

use super::Neighbours;
use crate::peers::table::{PeerId, PeerTable};

impl Neighbours {
    /// A fetch from peer `id` is starting: counts it against max-conn
    /// until the guard drops.
    pub fn open(&self, id: PeerId) -> ConnGuard {
        if let Some(p) = self.table.get(id) {
            let mut s = p.state();
            s.open_conns += 1;
            s.fetches += 1;
        }
        ConnGuard {
            table: Arc::clone(&self.table),
            id,
        }
    }

    /// Peer `id`'s hit was delivered without being stored
    /// (`peer_store_threshold`).
    pub fn note_hit_not_stored(&self, id: PeerId) {
        if let Some(p) = self.table.get(id) {
            p.state().hits_not_stored += 1;
        }
    }

    /// A fetch from peer `id` (`None`: an origin) got its response head
    /// after `took`: the peer's load meter and this process's own.
    pub fn note_service(&self, id: Option<PeerId>, took: Duration) {
        crate::peers::load::note_own_service(took);
        let peer = id.and_then(|id| Some((self.table.get(id)?, self.hashes.load_scale(id))));
        if let Some((p, scale)) = peer {
            p.state().load.note_service(took, scale);
        }
    }

    /// The outcome of connecting to peer `id`.
    pub fn note_connect(&self, id: PeerId, ok: bool) {
        if ok {
            self.table.note_tcp_success(id);
        } else {
            self.table.note_tcp_failure(id);
        }
    }
}

/// Holds one of a peer's max-conn slots.
pub struct ConnGuard {
    table: Arc<PeerTable>,
    id: PeerId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(p) = self.table.get(self.id) {
            let mut s = p.state();
            s.open_conns = s.open_conns.saturating_sub(1);
        }
    }
}
