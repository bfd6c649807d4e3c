//! Pushed invalidation and update (issue 22): when an object changes at a
//! node with MON subscribers, each subscriber that may hold it is told. A
//! rarely used object gets an invalidation (the subscriber drops its copy
//! and fetches again on its next request); an object used at least
//! `htcp_monitor_update_hits N [window=TIME]` times within the window gets
//! an update notice (the subscriber refetches the new version in the
//! background, from the notifier, at low priority), since its next request
//! is likely soon. The proxy's publisher and `cuttle simulate` both ask
//! [`push_kind`].

/// `htcp_monitor_update_hits` without a line: objects used this often in
/// the window are pushed as updates.
pub const DEFAULT_UPDATE_HITS: u32 = 4;

/// `htcp_monitor_update_hits N` without `window=`, in seconds.
pub const DEFAULT_UPDATE_WINDOW_SECS: u64 = 3600;

/// What a subscriber is told when an object changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// Drop the copy (HTCP MON DELETED).
    Invalidate,
    /// Refetch the new version in the background.
    Update,
}

/// The notice for an object used `recent_uses` times within the window
/// (the change itself not counted), under `update_hits` (0: invalidations
/// only).
pub fn push_kind(recent_uses: u32, update_hits: u32) -> PushKind {
    if update_hits > 0 && recent_uses >= update_hits {
        PushKind::Update
    } else {
        PushKind::Invalidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popular_objects_are_updated_and_the_rest_invalidated() {
        assert_eq!(push_kind(4, 4), PushKind::Update);
        assert_eq!(push_kind(3, 4), PushKind::Invalidate);
        assert_eq!(push_kind(1000, 0), PushKind::Invalidate);
    }
}
