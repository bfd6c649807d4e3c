//! Pushed invalidation and update over HTCP MON (issue 22), the proxy's
//! part. As the notifier: the stages that learn an object changed (a
//! revalidation's new version, PURGE, an unsafe method) call
//! [`Proxy::mon_changed`] and every GET or HEAD counts a use
//! ([`Proxy::note_mon_use`]); `peers::monitor::publisher` does the rest.
//! As a subscriber: [`mon_updater`] takes the change notices each
//! monitored peer's slot queued, drops this cache's copy of an
//! invalidated URL at once and refetches an updated one from the peer
//! that sent the update, in the background, one at a time per peer, on a
//! CS1-marked connection (as cut_through's background race), over the
//! copy it replaces ([`super::revalidate::refetch_from`]). A drop or a
//! refetch here is not told to this cache's own subscribers: the
//! notifier told them itself, and two caches monitoring each other would
//! otherwise pass one change back and forth.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Uri};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access_log::HierarchyCode;
use crate::caching::Rule;
use crate::config::PeerType;
use crate::http::target::{PortKind, Target};
use crate::peers::monitor::monitored;
use crate::peers::select::Source;

use super::forward::Route;
use super::revalidate::refetch_from;
use super::{url_key, Proxy};

/// How often the updater looks for change notices.
pub const TICK: Duration = Duration::from_millis(10);

/// How often it looks while no peer is monitored.
const IDLE: Duration = Duration::from_secs(1);

impl Proxy {
    /// The object of `url` changed here: MON subscribers are told.
    pub(super) fn mon_changed(&self, url: &str) {
        self.mgr.mon_publisher.changed(url, Instant::now());
    }

    /// A GET or HEAD for `url`: one use, which decides whether a change
    /// is pushed as an update (nothing while nobody subscribes).
    pub(super) fn note_mon_use(&self, url: &str) {
        let publisher = &self.mgr.mon_publisher;
        if publisher.has_subscribers() {
            publisher.note_use(&url_key(url), Instant::now());
        }
    }

    /// An invalidation from a monitored peer: this cache's GET and HEAD
    /// objects of `url` are removed (as by PURGE, without its CLRs).
    fn drop_copies(&self, url: &str) {
        tokio::task::block_in_place(|| self.remove_url(url));
    }
}

/// Runs for the life of the process on the newest proxy: every [`TICK`],
/// each monitored peer's invalidations are applied and, when no refetch
/// from that peer runs, its next update is refetched.
pub async fn mon_updater(proxy: watch::Receiver<Arc<Proxy>>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The refetch running per peer (by name: ids change on reload).
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        tick.tick().await;
        let current = Arc::clone(&proxy.borrow());
        let table = Arc::clone(&current.neighbours.table);
        running.retain(|_, job| !job.is_finished());
        let mut any = false;
        for (id, peer) in table.peers.iter().enumerate() {
            if !monitored(&peer.config) {
                continue;
            }
            any = true;
            for url in peer.mon.take_invalidations() {
                current.drop_copies(&url);
            }
            if running.contains_key(peer.name()) {
                continue;
            }
            let Some(url) = peer.mon.next_update() else {
                continue;
            };
            let code = match peer.config.peer_type {
                PeerType::Parent => HierarchyCode::MonParentHit,
                _ => HierarchyCode::MonSiblingHit,
            };
            let source = Source::peer(id, &peer.config, &peer.host, code, peer.config.peer_type);
            let (proxy, slot) = (Arc::clone(&current), Arc::clone(&peer.mon));
            let job = tokio::spawn(async move {
                if let Some(done) = refetch(&proxy, source, &url).await {
                    slot.note_refetch(done);
                    if !done {
                        // Never keep a copy the peer said is outdated.
                        proxy.drop_copies(&url);
                    }
                }
            });
            running.insert(peer.name().to_string(), job);
        }
        if !any {
            // Nobody monitored: a reload may add one.
            tokio::time::sleep(IDLE).await;
        }
    }
}

/// Refetches `url` from `source` over this cache's copy: `None` when this
/// cache holds none (nothing to update), else whether it is current now.
async fn refetch(proxy: &Arc<Proxy>, source: Source, url: &str) -> Option<bool> {
    let uri: Uri = url.parse().ok()?;
    let plain = HeaderMap::new();
    let target = Target::of_request(&Method::GET, &uri, &plain, &PortKind::Forward).ok()?;
    let rule = Rule::for_url(&proxy.config, &target.url);
    let found = proxy.find(&target.url, &plain, &rule).found?;
    let route = Route {
        source,
        local: proxy.config.tcp_outgoing_address.first().map(|l| l.address),
        timed_out: false,
        url: target.url.clone(),
    };
    Some(refetch_from(proxy, &route, &target, &found).await)
}
