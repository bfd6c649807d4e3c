//! A request's path through cuttle (DESIGN.md, "A request's path"):
//! target URL, http_access, then by method: CONNECT tunnels, PURGE removes,
//! GET and HEAD go through the cache (fresh hits served zero-copy from the
//! store, stale ones revalidated, misses fetched once however many clients
//! ask: collapsed forwarding), anything else is forwarded and invalidates
//! the URL. Whatever is forwarded (a miss, a revalidation, another method)
//! walks the sources peer selection lists, as Squid's forwarding does
//! (`Proxy::forward_along`). Every transaction ends with one access.log
//! line. Cache manager requests are answered by [`manage`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::HeaderValue;
use http::{Method, Request, Response};
use tracing::Instrument;

use super::body::{transfer_coding_supported, ClientBody, ProxyBody};
use super::client_io::IncomingBody;
use super::collapse::Collapser;
use super::errors::ErrorKind;
use super::hot::HotCache;
use super::server::ConnInfo;
use super::target::Target;
use crate::access_log::{mask_manager_password, Logger, ResultTag};
use crate::caching::KnownMarkers;
use crate::config::{AclData, Config};
use crate::mgr::Manager;
use crate::peers::icp_server::HitOnly;
use crate::peers::netdb::NetDb;
use crate::peers::refcount::RefCounts;
use crate::peers::select::Neighbours;
use crate::peers::store_digest::StoreDigest;
use crate::store::{Key, Store};
use crate::upstream::{Timeouts, TlsClients, Upstream};
use cuttle_protocol::key::{store_key, Method as KeyMethod};

mod admit;
mod ahead;
mod cached;
mod cut_through;
mod fetch;
mod forward;
mod headers;
mod hit;
mod lean;
mod lookup;
mod manage;
mod metering;
mod miss;
mod mon_push;
mod ourselves;
mod passthrough;
mod purge;
mod redirect;
mod revalidate;
mod share_owner;
mod share_requester;
mod tunnel;
mod txn;
pub use lean::{lean_hit, LeanAnswer, LeanRequest};
pub use manage::{digest_builder, sampler};
pub use metering::meter_reporter;
pub use mon_push::mon_updater;

use admit::{allowed, miss_denied, ReplyCheck, RequestDetails};
use cached::cached;
use headers::Labels;
use miss::fetch_window;
use passthrough::forward;
use purge::purge;
use tunnel::tunnel;
use txn::Txn;

/// Everything a request needs; one per configuration (a reload makes a new
/// one that shares the store, connection pools and fetches in flight).
pub struct Proxy {
    config: Arc<Config>,
    store: Arc<Store>,
    upstream: Upstream<ProxyBody>,
    collapser: Collapser,
    logger: Logger,
    /// visible_hostname: names this cache in X-Cache and error pages.
    name: String,
    via: HeaderValue,
    /// What a Via entry of ours contains (loop detection).
    loop_marker: String,
    timeouts: Timeouts,
    /// Keys being revalidated in the background (stale-while-revalidate).
    refreshing: Arc<Mutex<HashSet<Key>>>,
    /// The memory cache (cache_mem); kept across reloads.
    hot: Arc<HotCache>,
    /// X-Cache and X-Cache-Lookup values, made once.
    labels: Labels,
    /// Some ACL names the PURGE method (Squid's condition for PURGE).
    purge_enabled: bool,
    /// cache_peers: selection, ICP queries, peer health.
    neighbours: Arc<Neighbours>,
    /// Squid's failure ratio and hit-only mode, shared with the ICP
    /// responder: fed every forwarded request's outcome.
    hit_only: Arc<HitOnly>,
    /// Vary markers met, for the HTCP responder (see [`KnownMarkers`]).
    known_markers: Arc<KnownMarkers>,
    /// Origin RTTs, shared with the ICP responder: fed by DIRECT fetches.
    netdb: Arc<NetDb>,
    /// The cache manager and the counters it reports; fed every
    /// transaction as it is logged.
    mgr: Arc<Manager>,
    /// The Cache Digest served to peers; kept across reloads.
    store_digest: Arc<StoreDigest>,
    /// TLS to https:// origins (tls_outgoing_options), built per config.
    tls: TlsClients,
    /// URLs' reference counts for `peer_store_threshold`; kept across reloads.
    ref_counts: Arc<RefCounts>,
    /// Redirect to the holder: sizes seen (kept across reloads),
    /// selections handed to fetches.
    redirects: redirect::Redirects,
    /// Proxy sharing's log, memory and counters; kept across reloads.
    sharing: Arc<crate::peers::share_log::Sharing>,
    /// Tells this proxy from those before and after it (reloads): the
    /// memory cache's pre-encoded heads carry its Via and X-Cache labels.
    generation: u64,
    /// Hit metering's ledger, totals and report queue; kept across reloads.
    meter: Arc<metering::MeterShared>,
    /// Adaptive objects' hits in their current interval; kept across reloads.
    interval_hits: Arc<ahead::IntervalHits>,
}

/// The next [`Proxy::generation`].
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The memory cache's (bytes, per-object) bounds: cache_mem and
/// maximum_object_size_in_memory, or nothing when the store is itself in
/// memory (no cache_dir), where cache_mem bounds the store instead.
fn hot_bounds(config: &Config, store: &Store) -> (u64, u64) {
    let limit = if store.is_memory() {
        0
    } else {
        config.cache_mem.value
    };
    (limit, config.maximum_object_size_in_memory.value)
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Proxy {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        logger: Logger,
        hit_only: Arc<HitOnly>,
        netdb: Arc<NetDb>,
        mgr: Arc<Manager>,
        query_sockets: Arc<crate::peers::querier::QuerySockets>,
    ) -> Proxy {
        let timeouts = Timeouts {
            connect: config.connect_timeout.value,
            read: config.read_timeout.value,
        };
        let collapser = Collapser::new(fetch_window(&config));
        let neighbours = Arc::new(Neighbours::on_sockets(&config, query_sockets));
        let upstream =
            Upstream::new(timeouts).with_reply_header_max_size(config.reply_header_max_size.value);
        let proxy = Proxy {
            hit_only,
            netdb,
            mgr,
            ..Proxy::assemble(
                config,
                store,
                upstream,
                collapser,
                logger,
                Arc::default(),
                neighbours,
            )
        };
        if proxy.config.hit_metering.value {
            proxy.meter.open_ledger(&proxy.store);
        }
        let update_hits = proxy.config.htcp_monitor_update_hits.value;
        proxy.mgr.mon_publisher.set_update_hits(update_hits);
        let budget = proxy.config.share.log.value.max_memory;
        proxy.sharing.set_budget(budget);
        proxy
    }

    /// The same proxy under a new configuration.
    pub fn with_config(&self, config: Arc<Config>) -> Proxy {
        let neighbours = Arc::new(self.neighbours.reconfigure(&config));
        let collapser = self.collapser.with_window(fetch_window(&config));
        let upstream = self
            .upstream
            .clone()
            .with_reply_header_max_size(config.reply_header_max_size.value);
        // The memory cache stays warm across a reload, within the new bounds.
        let (limit, max_object) = hot_bounds(&config, &self.store);
        self.hot.resize(limit, max_object);
        if config.hit_metering.value {
            self.meter.open_ledger(&self.store);
        }
        let update_hits = config.htcp_monitor_update_hits.value;
        self.mgr.mon_publisher.set_update_hits(update_hits);
        // The share log is kept across the reload, within its new budget.
        self.sharing.set_budget(config.share.log.value.max_memory);
        Proxy {
            meter: Arc::clone(&self.meter),
            hot: Arc::clone(&self.hot),
            hit_only: Arc::clone(&self.hit_only),
            known_markers: Arc::clone(&self.known_markers),
            netdb: Arc::clone(&self.netdb),
            mgr: Arc::clone(&self.mgr),
            store_digest: Arc::clone(&self.store_digest),
            ref_counts: self.kept_ref_counts(&config),
            redirects: self.redirects.reloaded(),
            sharing: Arc::clone(&self.sharing),
            interval_hits: Arc::clone(&self.interval_hits),
            ..Proxy::assemble(
                config,
                Arc::clone(&self.store),
                upstream,
                collapser,
                self.logger.clone(),
                Arc::clone(&self.refreshing),
                neighbours,
            )
        }
    }

    fn assemble(
        config: Arc<Config>,
        store: Arc<Store>,
        upstream: Upstream<ProxyBody>,
        collapser: Collapser,
        logger: Logger,
        refreshing: Arc<Mutex<HashSet<Key>>>,
        neighbours: Arc<Neighbours>,
    ) -> Proxy {
        let name = config
            .visible_hostname
            .value
            .clone()
            .unwrap_or_else(system_hostname);
        let unique = config
            .unique_hostname
            .value
            .clone()
            .unwrap_or_else(|| name.clone());
        let version = env!("CARGO_PKG_VERSION");
        let via = HeaderValue::from_str(&format!("1.1 {unique} (cuttle/{version})"))
            .unwrap_or_else(|_| HeaderValue::from_static("1.1 cuttle"));
        let timeouts = Timeouts {
            connect: config.connect_timeout.value,
            read: config.read_timeout.value,
        };
        let (limit, max_object) = hot_bounds(&config, &store);
        let hot = Arc::new(HotCache::new(limit, max_object));
        let purge_enabled = config.acls.iter().any(|acl| match &acl.data {
            AclData::Method(methods) => methods
                .iter()
                .any(|m| m.value.eq_ignore_ascii_case("PURGE")),
            _ => false,
        });
        // Squid probes its peers' HTTP ports before using them (1.8), and
        // counts its multicast groups' members (1.9).
        if tokio::runtime::Handle::try_current().is_ok() {
            neighbours.probe_down_peers(
                config.tcp_outgoing_address.first().map(|l| l.address),
                config.peer_connect_timeout.value,
            );
            neighbours.start_multicast_counts();
            neighbours.start_monitors();
            neighbours.start_digest_fetches(
                timeouts,
                config.tcp_outgoing_address.first().map(|l| l.address),
            );
        }
        let ref_counts = fetch::new_ref_counts(&config);
        Proxy {
            generation: next_generation(),
            tls: TlsClients::of(&config),
            neighbours,
            hot,
            purge_enabled,
            labels: Labels::new(&name, &config),
            loop_marker: format!(" {unique} (cuttle/"),
            name,
            via,
            config,
            store,
            upstream,
            collapser,
            logger,
            timeouts,
            refreshing,
            // The callers put in the shared ones.
            hit_only: Arc::default(),
            known_markers: Arc::default(),
            netdb: Arc::default(),
            mgr: Arc::default(),
            store_digest: Arc::default(),
            ref_counts,
            redirects: redirect::Redirects::default(),
            meter: Arc::default(),
            sharing: Arc::default(),
            interval_hits: Arc::default(),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config)
    }

    /// The Vary markers this proxy (and those before it, across reloads)
    /// read or wrote: the HTCP responder answers Vary-aware from them.
    pub fn known_markers(&self) -> Arc<KnownMarkers> {
        Arc::clone(&self.known_markers)
    }

    /// The client-side counters (the connection layer counts bytes in).
    pub fn stats(&self) -> Arc<crate::stats::Stats> {
        Arc::clone(&self.mgr.stats)
    }
}

/// The `request` span of `req`: the method now; the URL, the result code
/// and the status are recorded as they are known. Disabled (no subscriber
/// wants it), it costs next to nothing.
pub fn request_span<B>(req: &Request<B>) -> tracing::Span {
    method_span(req.method())
}

/// [`request_span`] for a request of `method`.
pub fn method_span(method: &Method) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %method,
        url = tracing::field::Empty,
        code = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

/// Handles one request in `span` ([`request_span`]). The connection
/// awaits [`dispatch`] itself when the span is disabled: wrapping its large
/// future (in `Instrumented` or another async fn) costs the hit path
/// thousands of instructions a request.
pub async fn handle(
    proxy: Arc<Proxy>,
    conn: ConnInfo,
    req: Request<IncomingBody>,
    span: tracing::Span,
) -> Response<ClientBody> {
    dispatch(proxy, conn, req).instrument(span).await
}

/// Routes a request to its stage: manager, internal object, tunnel, purge,
/// the cache (GET, HEAD) or plain forwarding.
pub async fn dispatch(
    proxy: Arc<Proxy>,
    conn: ConnInfo,
    req: Request<IncomingBody>,
) -> Response<ClientBody> {
    let method = req.method().clone();
    let addressed = match manage::classify(&proxy, &conn, &method, req.uri(), req.headers()).await {
        Ok(addressed) => addressed,
        Err(e) => {
            let txn = Txn::new(&proxy, &conn, &method, req.uri().to_string(), None);
            return proxy.error(txn, ErrorKind::InvalidUrl, &e.0);
        }
    };
    let (target, mgr_page, internal, to_ourselves) = match addressed {
        manage::Addressed::Manager(target, page) => (target, Some(page), None, false),
        manage::Addressed::Internal(target, object) => (target, None, Some(object), false),
        manage::Addressed::Ourselves(target) => (target, None, None, true),
        manage::Addressed::Elsewhere(target) => {
            // Redirected here by a sibling: the marker is not part of the URL.
            let target = redirect::unmarked(target, &method, req.uri(), &conn.kind);
            (target, None, None, false)
        }
    };
    let span = tracing::Span::current();
    if !span.is_disabled() {
        // Another cache's manager URL may carry its password: never in our logs.
        span.record(
            "url",
            tracing::field::display(mask_manager_password(&target.url)),
        );
    }
    let mut txn = Txn::new(&proxy, &conn, &method, target.url.clone(), Some(&target));
    // As Squid, before http_access: logged NONE_NONE/501, HIER_NONE.
    if !transfer_coding_supported(req.headers()) {
        return proxy.error_closing(
            txn,
            ErrorKind::UnsupportedRequest,
            "unsupported Transfer-Encoding: only chunked is implemented",
        );
    }
    let config = Arc::clone(&proxy.config);
    let details = RequestDetails::of(&config, &conn).await;
    if !allowed(
        &config,
        &config.http_access,
        &txn,
        &method,
        &target,
        &details.get(req.headers()),
    )
    .await
    {
        return proxy.error(
            txn.with(ResultTag::TcpDenied),
            ErrorKind::AccessDenied,
            "denied by http_access",
        );
    }
    // Sent on, a request to this cache comes back from this host, and the
    // manager ACL would judge this host instead of the client; a manager
    // request carrying our Via already made that trip.
    if to_ourselves || (mgr_page.is_some() && proxy.is_loop(req.headers())) {
        let tag = if method == Method::CONNECT {
            ResultTag::TcpTunnel
        } else {
            ResultTag::TcpMiss
        };
        return proxy.error(
            txn.with(tag),
            ErrorKind::AccessDenied,
            "forwarding loop detected",
        );
    }
    if let Some(page) = mgr_page {
        return manage::answer(&proxy, txn, &target, &page, req.headers(), &conn.per_client);
    }
    if let Some(object) = internal {
        return manage::answer_internal(&proxy, txn, &target, object);
    }
    // An offer to share: the response decides what it gets (share_owner.rs).
    txn.share_offer = proxy.share_offer_seen(&method, req.headers(), conn.local.ip());
    txn.miss_denied = miss_denied(&config, &txn, &method, &target, &details.get(req.headers()));
    let mut req = req;
    if config.hit_metering.value {
        txn.meter_ask = proxy.meter_intake(&target.url, req.headers_mut());
    }
    if method != Method::CONNECT && !config.http_reply_access.is_empty() {
        txn.reply_check = Some(Box::new(ReplyCheck {
            config: Arc::clone(&config),
            arrival: txn.arrival,
            target: target.clone(),
            request_headers: req.headers().clone(),
            client_connections: details.client_connections,
            client_name: details.client_name.clone(),
        }));
    }
    if method == Method::CONNECT {
        // Boxed, as every large path a hit does not take: inline, its future
        // would grow every request's, which is moved per request.
        return Box::pin(tunnel(proxy, txn, target, req)).await;
    }
    if method.as_str() == "PURGE" {
        return purge(&proxy, txn, &target);
    }
    let looped = proxy.is_loop(req.headers());
    if method == Method::GET || method == Method::HEAD {
        return cached(proxy, txn, target, req, looped).await;
    }
    if looped {
        return proxy.error(
            txn.with(ResultTag::TcpMiss),
            ErrorKind::AccessDenied,
            "forwarding loop detected",
        );
    }
    Box::pin(forward(proxy, txn, target, req)).await
}

/// The keys a URL's stored objects live under (GET; HEAD is answered from
/// the GET object).
fn url_key(url: &str) -> Key {
    store_key(KeyMethod::Get, url.as_bytes())
}
