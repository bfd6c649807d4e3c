//! One upstream fetch of a miss or a revalidation: its body streamed to
//! the readers and into the store.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::HeaderMap;
use http::Method;

use tracing::Instrument;

use crate::access_log::Hierarchy;
use crate::caching::peer_store::{peer_hit, peer_reply_forwarded};
use crate::caching::plan::keeps_fetched;
use crate::caching::{
    self, Exchange, KnownMarkers, RequestDirectives, Rule, StoredEntry, VaryMarker,
};
use crate::http::body::ProxyBody;
use crate::http::collapse::{Event, Failure, Head, Leader};

use crate::http::target::Target;
use crate::peers::refcount::RefCounts;
use crate::store::{Key, Store};

use super::admit::Arrival;
use super::forward::{Fetched, Forwarding};
use super::headers::content_length;
use super::share_requester::{share_list, ShareList};
use super::txn::not_forwarded_page;
use super::{unix_now, url_key, Proxy};

/// Reads an upstream body to the end, storing it under `key` and handing
/// every chunk to the readers of `leader`. Used for revalidations that
/// brought a new object.
pub(super) async fn stream_and_store(
    proxy: &Proxy,
    body: crate::upstream::PooledBody<ProxyBody>,
    key: Key,
    url: &str,
    plan: caching::StorePlan,
    rule: Rule,
    leader: Leader,
) {
    let content_length = content_length(&plan.headers);
    let writer = proxy
        .store
        .writer(key, plan.times, url.as_bytes(), &plan.head, content_length)
        .ok();
    let stored = |writer| proxy.commit_and_remember(writer, url, &rule);
    leader
        .pump(body, writer, proxy.timeouts.read, &stored)
        .await;
}

/// One upstream fetch of a miss: streams the response to its readers while
/// storing it when it may be stored. Runs in a task of its own, so a client
/// that goes away neither stops the store write nor corrupts it.
pub(super) struct FetchJob {
    pub(super) proxy: Arc<Proxy>,
    pub(super) client: IpAddr,
    pub(super) arrival: Arrival,
    pub(super) target: Target,
    pub(super) request_headers: HeaderMap,
    pub(super) directives: RequestDirectives,
    pub(super) rule: Rule,
    pub(super) marker: Option<VaryMarker>,
    /// Siblings may be asked and used (the plan's `siblings_ok`).
    pub(super) siblings_ok: bool,
    /// Feeds the readers: the clients that share the fetch, or the one
    /// that fetches alone.
    pub(super) leader: Leader,
}

impl FetchJob {
    /// Sends the GET upstream in a task of its own, so a client that
    /// leaves does not stop the fetch the others (and the store) wait on.
    pub(super) fn spawn(self) {
        // In the request's span, so its peer query round and events are
        // seen under the request that started the fetch; relaying interim
        // responses to the client that started it (none to followers).
        let interim = crate::upstream::interim_target();
        tokio::spawn(crate::upstream::relaying_interim(interim, self.run()).in_current_span());
    }

    pub(super) async fn run(self) {
        let FetchJob {
            proxy,
            client,
            arrival,
            target,
            request_headers,
            directives,
            rule,
            marker,
            siblings_ok,
            leader,
        } = self;
        let request_time = unix_now();
        let seen = proxy.note_reference(&target.url);
        // siblings_ok is the plan's: never for a client reload (squid-spec 3.1).
        let fwd = Forwarding {
            method: &Method::GET,
            target: &target,
            headers: &request_headers,
            client,
            arrival,
            siblings_ok,
            body: None,
            share_offer: proxy.config.share.offer.value.on,
        };
        let mut hierarchy = Hierarchy::none();
        // cut_through may race the parent and the origin (cut_through.rs).
        // Candidates piggybacked on the page this object is embedded in:
        // tried before the owner is asked (share_requester.rs).
        let piggybacked = fwd
            .share_offer
            .then(|| {
                proxy
                    .sharing
                    .take_piggybacked(&target.url, std::time::Instant::now())
            })
            .flatten();
        let fetched = match piggybacked {
            Some(candidates) => {
                let list = ShareList::piggybacked(candidates);
                proxy.follow_share_list(list, &fwd, &mut hierarchy).await
            }
            None => proxy.forward_miss(&fwd, &mut hierarchy).await,
        };
        let fetched = match fetched {
            // A share list: the body from a candidate, or the owner.
            Ok(f) if fwd.share_offer => match share_list(&f.resp) {
                Some(list) => {
                    drop(f);
                    proxy.follow_share_list(list, &fwd, &mut hierarchy).await
                }
                None => Ok(f),
            },
            other => other,
        };
        let Fetched {
            resp,
            proxy_only,
            peer,
            _conn_slot,
        } = match fetched {
            Ok(f) => f,
            Err(e) => {
                let (kind, detail) = not_forwarded_page(&e);
                leader.finish(Event::Failed(Failure::new(kind, detail)));
                return;
            }
        };
        let exchange = Exchange {
            request_time,
            response_time: unix_now(),
        };
        let (rp, body) = resp.into_parts();
        // peer_store_threshold: a peer's copy of a URL not seen often
        // enough yet is delivered, not stored (a per-URL proxy-only).
        let threshold = &proxy.config.peer_store_threshold.value;
        let forwarded = peer_reply_forwarded(hierarchy.code, threshold, seen);
        let storable = caching::plan_store(
            &Method::GET,
            &directives,
            rp.status,
            &rp.headers,
            &rule,
            exchange,
        )
        .ok();
        // Counted as hits not stored: a parent's miss (scope=peers) is not
        // a hit.
        if forwarded && peer_hit(hierarchy.code) && !proxy_only && storable.is_some() {
            if let Some(id) = peer {
                proxy.neighbours.note_hit_not_stored(id);
            }
        }
        // proxy-only: what this peer sends is delivered, not stored.
        let plan = storable.filter(|_| keeps_fetched(true, proxy_only || forwarded));
        let (vary, vary_star) = match caching::vary_fields(&rp.headers) {
            Ok(fields) if fields.is_empty() => (None, false),
            Ok(fields) => {
                let key = caching::variant_key(&fields, &request_headers);
                (Some((fields, key)), false)
            }
            Err(_) => (None, true),
        };
        let head = Head {
            status: rp.status,
            headers: rp.headers.clone(),
            storable: plan.is_some(),
            hierarchy,
            vary,
            vary_star,
        };
        // Where to store: a variant under a marker when the response varies.
        let mut writer = None;
        if let Some(plan) = plan {
            let store = Arc::clone(&proxy.store);
            let url = target.url.clone();
            writer = open_writer(
                &store,
                &proxy.known_markers,
                &url,
                &request_headers,
                plan,
                marker.as_ref(),
            );
        }
        leader.head(head);
        let stored = |writer| proxy.commit_and_remember(writer, &target.url, &rule);
        leader
            .pump(body, writer, proxy.timeouts.read, &stored)
            .await;
    }
}

/// The reference counter of a first configuration (an empty one).
pub(super) fn new_ref_counts(config: &crate::config::Config) -> Arc<RefCounts> {
    let window = config.peer_store_threshold.value.window;
    Arc::new(RefCounts::new(window, Instant::now()))
}

impl Proxy {
    /// The reference counts under a new configuration: the same counts
    /// (a reload forgets nothing), in its window.
    pub(super) fn kept_ref_counts(&self, config: &crate::config::Config) -> Arc<RefCounts> {
        self.ref_counts
            .set_window(config.peer_store_threshold.value.window);
        Arc::clone(&self.ref_counts)
    }

    /// One more reference to `url` (a miss about to be fetched) under
    /// `peer_store_threshold`: how many within the window; 0 (and nothing
    /// counted, nothing allocated) without a threshold.
    pub(super) fn note_reference(&self, url: &str) -> u32 {
        if self.config.peer_store_threshold.value.count == 0 {
            return 0;
        }
        self.ref_counts.note(&url_key(url), Instant::now())
    }

    /// Commits a fetched object and, when the memory cache takes it, puts
    /// it there at once (as Squid keeps a just-fetched object in memory),
    /// so its first hit is a memory hit. Variants stay in the store only:
    /// the memory cache holds objects under their URL's key.
    pub(super) fn commit_and_remember(&self, writer: crate::store::Writer, url: &str, rule: &Rule) {
        let key = writer.key();
        // The whole entry fitting means its body fits too.
        let fits = self.hot.admits(writer.written());
        if let Err(e) = writer.commit() {
            tracing::debug!(url, error = %e, "store commit failed");
            return;
        }
        if fits {
            self.remember(key, url, rule);
        }
    }

    /// Copies the stored object of `key` into the memory cache when it is
    /// the URL's own entry (not a variant) and fits.
    pub(super) fn remember(&self, key: Key, url: &str, rule: &Rule) {
        if key != url_key(url) {
            return;
        }
        let Some(hit) = self.store.read(&key) else {
            return;
        };
        if !self.hot.admits(hit.body_len) {
            return;
        }
        if let Ok(entry) = StoredEntry::from_head(&hit.header_block, hit.times) {
            self.hot.insert(key, self.hot_entry(hit, entry, rule));
        }
    }
}

/// Opens the store writer for a response that may be stored: directly
/// under the URL, or (when it varies) as a variant under a marker.
pub(super) fn open_writer(
    store: &Arc<Store>,
    known_markers: &KnownMarkers,
    url: &str,
    request_headers: &HeaderMap,
    plan: caching::StorePlan,
    marker: Option<&VaryMarker>,
) -> Option<crate::store::Writer> {
    let content_length = content_length(&plan.headers);
    let key = if plan.vary.is_empty() {
        url_key(url)
    } else {
        let marker = match marker {
            Some(m) if m.fields == plan.vary => m.clone(),
            _ => {
                let fresh = VaryMarker {
                    fields: plan.vary.clone(),
                    epoch: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(1),
                };
                let head = fresh.head();
                let written = store
                    .writer(url_key(url), plan.times, url.as_bytes(), &head, Some(0))
                    .and_then(|w| w.commit());
                if written.is_err() {
                    return None;
                }
                // Best effort: a writer racing us may have replaced it already,
                // which costs the HTCP responder at most a false hit.
                if let Some(now) = store.peek(&url_key(url)) {
                    known_markers.note(url_key(url), now.generation, &fresh);
                }
                fresh
            }
        };
        url_key(&marker.variant_url(url, request_headers))
    };
    store
        .writer(key, plan.times, url.as_bytes(), &plan.head, content_length)
        .ok()
}
