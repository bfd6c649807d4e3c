//! Counting nearest-copy choices (issue 19) for `mgr:server_list`: when
//! several peers held a URL, the one used and whether it overtook an
//! earlier HIT.

use super::{Neighbours, Replies, Selection};
use crate::peers::peer_digest::wants_digest;
use crate::peers::table::PeerId;
use cuttle_protocol::key::{store_key, Method};

impl Neighbours {
    /// Counts a choice among several peers that answered HIT: the one
    /// used (the nearest by RTT), and whether another's HIT came first.
    pub(super) fn note_nearest_reply(&self, replies: &Replies, selection: &Selection) {
        let (Some(hit), true) = (replies.hit, replies.hits.len() > 1) else {
            return;
        };
        if selection.sources.first().and_then(|s| s.peer) != Some(hit) {
            return;
        }
        self.note_nearest(hit, replies.hits.first() != Some(&hit));
    }

    /// Counts a digest choice when several peers' digests predicted a hit
    /// (`digest_choice` took the nearest by RTT).
    pub(super) fn note_nearest_digest(&self, chosen: PeerId, url: &str) {
        // Not `digest_holds`: that counts a lookup, and this choice was
        // already counted when it was made.
        let key = store_key(Method::Get, url.as_bytes());
        let holders = self
            .table
            .peers
            .iter()
            .filter(|p| wants_digest(&p.config) && p.digest.predicts(&key) == Some(true))
            .count();
        if holders > 1 {
            self.note_nearest(chosen, false);
        }
    }

    fn note_nearest(&self, id: PeerId, over_first: bool) {
        if let Some(p) = self.table.get(id) {
            let mut s = p.state();
            s.nearest_chosen += 1;
            s.nearest_over_first += u64::from(over_first);
        }
    }
}
