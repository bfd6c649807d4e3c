//! `load-aware` CARP in the simulator: each node measures the service
//! time of its fetches from a peer (from sending to the response head
//! arriving, on the virtual clock) into the same `LoadMeter` the proxy
//! keeps, and the selection core reads it through the node's `PeerView`,
//! so a slow node (`service_ms` in the mesh file: a FIFO server) sheds
//! part of its CARP share exactly as peers/load.rs rules. The ICP RTT
//! the node already averages counts too; self-reports are not simulated.

use std::time::{Duration, Instant};

use super::node::SimNode;
use crate::peers::core::PeerId;

/// Node's fetch from its peer `peer` sent at `sent_ms` got its answer at
/// `answered_ms` (virtual milliseconds).
pub fn note_fetch(node: &mut SimNode<'_>, peer: PeerId, sent_ms: f64, answered_ms: f64) {
    // Nothing reads a peer's load without a load-aware CARP member.
    if !node.hashes.load_aware() {
        return;
    }
    let scale = node.hashes.load_scale(peer);
    if let Some(p) = node.peers.get_mut(peer) {
        let took = (answered_ms - sent_ms).max(0.0);
        p.load
            .note_service(Duration::from_nanos((took * 1e6) as u64), scale);
    }
}

/// What the selection core reads: the peer's load as the proxy weighs it.
pub fn load_ms(node: &SimNode<'_>, peer: PeerId, now: Instant) -> Option<f64> {
    let p = node.peers.get(peer)?;
    p.load.load_ms(p.health.rtt_ms, now)
}

#[cfg(test)]
mod tests;
