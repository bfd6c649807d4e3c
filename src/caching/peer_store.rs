//! `peer_store_threshold`'s store decision (issue 19): which replies from
//! peers a cache delivers without storing while their URL's reference
//! count is low. The proxy's fetch path and the simulator both ask
//! [`peer_reply_forwarded`], so the simulator models what cuttle does.

use crate::access_log::HierarchyCode;
use crate::config::{PeerStoreThreshold, ThresholdScope};

/// A copy a peer said it holds (SIBLING_HIT, PARENT_HIT, CD_SIBLING_HIT,
/// CD_PARENT_HIT, MON_SIBLING_HIT, MON_PARENT_HIT): what `peer_store_threshold` may keep from being stored.
/// A parent's answer to a miss (FIRST_PARENT_MISS, DEFAULT_PARENT, ...) is
/// a fresh fetch from the origin, stored as always.
pub fn peer_hit(code: HierarchyCode) -> bool {
    matches!(
        code,
        HierarchyCode::SiblingHit
            | HierarchyCode::ParentHit
            | HierarchyCode::CdSiblingHit
            | HierarchyCode::CdParentHit
            | HierarchyCode::MonSiblingHit
            | HierarchyCode::MonParentHit
    )
}

/// A reply that came through a `cache_peer`, whatever the peer held: its
/// hits and a parent's answer to a miss (FIRST_PARENT_MISS,
/// DEFAULT_PARENT, FIRSTUP_PARENT, CARP, ...). Not the origin (HIER_DIRECT,
/// CLOSEST_DIRECT, ORIGINAL_DST), and not PINNED (either).
pub fn peer_reply(code: HierarchyCode) -> bool {
    use HierarchyCode as H;
    matches!(
        code,
        H::SiblingHit
            | H::ParentHit
            | H::DefaultParent
            | H::SingleParent
            | H::FirstUpParent
            | H::FirstParentMiss
            | H::ClosestParentMiss
            | H::ClosestParent
            | H::RoundrobinParent
            | H::CdParentHit
            | H::CdSiblingHit
            | H::Carp
            | H::AnyOldParent
            | H::UserhashParent
            | H::SourcehashParent
            | H::StandbyPool
            | H::CacheDigestHit
            | H::MonParentHit
            | H::MonSiblingHit
    )
}

/// `peer_store_threshold`: a peer's reply within the threshold's scope
/// (peer hits; with `scope=peers`, any [`peer_reply`]) for a URL this
/// cache has `seen` times within the window (this request included) is
/// delivered without being stored until `seen` exceeds the count; a
/// count of 0 stores every one. The proxy's store decision and the
/// simulator's both ask this.
pub fn peer_reply_forwarded(
    code: HierarchyCode,
    threshold: &PeerStoreThreshold,
    seen: u32,
) -> bool {
    let in_scope = match threshold.scope {
        ThresholdScope::PeerHits => peer_hit(code),
        ThresholdScope::Peers => peer_reply(code),
    };
    threshold.count > 0 && in_scope && seen <= threshold.count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_hits_are_forwarded_until_the_url_is_seen_more_than_threshold_times() {
        use HierarchyCode as H;
        let t = |count| PeerStoreThreshold {
            count,
            ..PeerStoreThreshold::default()
        };
        for code in [H::SiblingHit, H::ParentHit, H::CdSiblingHit, H::CdParentHit] {
            assert!(peer_reply_forwarded(code, &t(2), 1));
            assert!(peer_reply_forwarded(code, &t(2), 2));
            assert!(!peer_reply_forwarded(code, &t(2), 3));
            // 0: Squid's behaviour, every peer hit stored.
            assert!(!peer_reply_forwarded(code, &t(0), 1));
        }
        for code in [H::HierDirect, H::FirstParentMiss, H::DefaultParent, H::Carp] {
            assert!(!peer_reply_forwarded(code, &t(2), 1));
        }
    }

    #[test]
    fn with_scope_peers_a_parents_miss_is_forwarded_too_but_not_the_origins_reply() {
        use HierarchyCode as H;
        let t = |count| PeerStoreThreshold {
            count,
            scope: ThresholdScope::Peers,
            ..PeerStoreThreshold::default()
        };
        for code in [
            H::SiblingHit,
            H::ParentHit,
            H::FirstParentMiss,
            H::DefaultParent,
            H::FirstUpParent,
            H::Carp,
            H::RoundrobinParent,
        ] {
            assert!(peer_reply_forwarded(code, &t(1), 1), "{code:?}");
            assert!(!peer_reply_forwarded(code, &t(1), 2), "{code:?}");
            assert!(!peer_reply_forwarded(code, &t(0), 1), "{code:?}");
        }
        for code in [
            H::HierDirect,
            H::ClosestDirect,
            H::OriginalDst,
            H::Pinned,
            H::HierNone,
        ] {
            assert!(!peer_reply_forwarded(code, &t(1), 1), "{code:?}");
        }
    }
}
