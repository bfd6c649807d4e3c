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
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::body::{transfer_coding_supported, ClientBody, ProxyBody, RequestBody};
use super::client_io::IncomingBody;
use super::collapse::{self, Answer, Collapser, Event, Failure, Head, Leader, Miss, Window};
use super::errors::{self, ErrorKind};
use super::hot::{HotCache, HotEntry};
use super::server::ConnInfo;
use super::target::{PortKind, Target};
use crate::access;
use crate::access_log::{
    mask_manager_password, Entry, Hierarchy, HierarchyCode, Logger, ResultCode, ResultTag,
};
use crate::caching::{
    self, Exchange, HitDecision, KnownMarkers, Outcome, RequestDirectives, Rule, StoredEntry,
    VaryMarker,
};
use crate::config::{AclData, Config, ForwardedFor};
use crate::mgr::Manager;
use crate::peers::htcp_client::ClrTrigger;
use crate::peers::icp_server::HitOnly;
use crate::peers::netdb::NetDb;
use crate::peers::select::{
    self as peer_select, ClientCredentials, ConnGuard, Neighbours, SelectRequest,
};
use crate::store::{Hit, Key, Store, StoreError};
use crate::upstream::{FetchError, NewConnection, Timeouts, Upstream};
use cuttle_protocol::key::{store_key, Method as KeyMethod};

mod manage;
pub use manage::sampler;

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
}

/// Squid's `X-Cache: HIT from NAME` and `X-Cache-Lookup: HIT from NAME:PORT`.
struct Labels {
    hit: HeaderValue,
    miss: HeaderValue,
    /// Per http_port: (port, hit, miss).
    lookup: Vec<(u16, HeaderValue, HeaderValue)>,
}

impl Labels {
    fn new(name: &str, config: &Config) -> Labels {
        let value = |text: String| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("cuttle"))
        };
        Labels {
            hit: value(format!("HIT from {name}")),
            miss: value(format!("MISS from {name}")),
            lookup: config
                .http_ports
                .iter()
                .map(|p| {
                    (
                        p.port,
                        value(format!("HIT from {name}:{}", p.port)),
                        value(format!("MISS from {name}:{}", p.port)),
                    )
                })
                .collect(),
        }
    }
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
        Proxy {
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
        }
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
        Proxy {
            hot: Arc::clone(&self.hot),
            hit_only: Arc::clone(&self.hit_only),
            known_markers: Arc::clone(&self.known_markers),
            netdb: Arc::clone(&self.netdb),
            mgr: Arc::clone(&self.mgr),
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
        }
        Proxy {
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

    /// A forwarded client request ended with `error` or without (its last
    /// attempt when several sources were tried): feeds the failure ratio that puts
    /// ICP into hit-only mode (squid-spec 1.5). As Squid: DNS, connect and
    /// read errors count as failures, anything else (a read timeout too)
    /// as success; nothing is counted while ICP is off, nor when the
    /// client's own request body failed (no word on the server).
    fn note_forwarding(&self, error: Option<&FetchError>) {
        if self.config.icp_port.value == 0 || matches!(error, Some(FetchError::RequestBody(_))) {
            return;
        }
        let failed = matches!(
            error,
            Some(
                FetchError::Dns { .. }
                    | FetchError::Connect { .. }
                    | FetchError::Read(_)
                    | FetchError::TooBig(_)
            )
        );
        self.hit_only.note_forwarding(failed, unix_now());
    }
}

/// The error page for a failed fetch.
fn error_kind(e: &FetchError) -> ErrorKind {
    match e {
        FetchError::Dns { .. } => ErrorKind::DnsFail,
        FetchError::Connect { .. } => ErrorKind::ConnectFail,
        FetchError::Timeout => ErrorKind::ReadTimeout,
        FetchError::Read(_) => ErrorKind::ReadError,
        FetchError::RequestBody(_) => ErrorKind::InvalidRequest,
        FetchError::TooBig(_) => ErrorKind::TooBig,
    }
}

/// The error page when nothing answered. With no source at all Squid 5.7
/// answers 502 ERR_READ_ERROR ([V]: an accelerator port without
/// allow-direct and without a parent), a status a downstream cache
/// re-forwards; cuttle answers the same.
fn not_forwarded_page(e: &NotForwarded) -> (ErrorKind, String) {
    match e {
        NotForwarded::NoSource => (
            ErrorKind::ReadError,
            "no forwarding destination: nothing may go direct (never_direct, or an accelerator port without allow-direct) and no parent is usable".into(),
        ),
        NotForwarded::Failed(e) => (error_kind(e), e.to_string()),
    }
}

/// Where to connect for a request: a source chosen by peer selection.
#[derive(Debug, Clone)]
struct Route {
    source: peer_select::Source,
    /// tcp_outgoing_address for this request.
    local: Option<IpAddr>,
    /// The ICP wait timed out (`TIMEOUT_` in the log).
    timed_out: bool,
    /// The absolute URL, sent as the request target to proxy peers.
    url: String,
}

/// The kind of http_port a request arrived on, as forwarding sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    Forward,
    /// An accelerator port: without allow-direct nothing of it goes DIRECT
    /// (squid-spec 3.2 step 3), and a user's credentials are in
    /// Authorization.
    Accel {
        allow_direct: bool,
    },
}

impl Arrival {
    fn of(kind: &PortKind) -> Arrival {
        match kind {
            PortKind::Forward => Arrival::Forward,
            PortKind::Accel { allow_direct, .. } => Arrival::Accel {
                allow_direct: *allow_direct,
            },
        }
    }
}

/// One client request to forward, as each attempt along the sources sends
/// it (squid-spec 3.2, 3.6).
struct Forwarding<'a> {
    method: &'a Method,
    target: &'a Target,
    /// The client's fields (with our validators, for a revalidation).
    headers: &'a HeaderMap,
    client: IpAddr,
    arrival: Arrival,
    /// Siblings may be asked and used: not for a client reload nor a
    /// revalidation (squid-spec 3.1).
    siblings_ok: bool,
    /// The client's request body, when the method carries one.
    body: Option<RequestBody>,
}

impl Forwarding<'_> {
    /// Whether a failed attempt may be followed by another: always, unless
    /// the body has been (partly) sent and could not be sent whole again.
    fn replayable(&self) -> bool {
        self.body.as_ref().is_none_or(RequestBody::replayable)
    }
}

/// A response from the source that answered.
struct Fetched {
    resp: Response<crate::upstream::PooledBody<ProxyBody>>,
    /// proxy-only: deliver, do not store.
    proxy_only: bool,
    /// The peer's max-conn slot, held while its body streams.
    _conn_slot: Option<ConnGuard>,
}

/// Why nothing answered.
#[derive(Debug)]
enum NotForwarded {
    /// Selection left no source (never_direct, or an accelerator port
    /// without allow-direct, and no usable parent).
    NoSource,
    /// The last source tried failed so.
    Failed(FetchError),
}

/// Squid's IsReforwardableStatus (squid-spec 3.2): 502 and 504 always
/// move on to the next source, 403, 500, 501 and 503 with retry_on_error.
fn reforwardable(status: StatusCode, retry_on_error: bool) -> bool {
    match status {
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => true,
        StatusCode::FORBIDDEN
        | StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::NOT_IMPLEMENTED
        | StatusCode::SERVICE_UNAVAILABLE => retry_on_error,
        _ => false,
    }
}

/// What the access.log line will say, filled in as the request goes.
struct Txn {
    start: Instant,
    client: IpAddr,
    local_port: u16,
    method: String,
    url: String,
    result: ResultCode,
    hierarchy: Hierarchy,
    /// What the ACLs of `access_log` lines look at; `None` when no line
    /// has ACLs (the common case costs nothing).
    log_scope: Option<Box<LogScope>>,
    /// `miss_access` refuses this client: whatever would be forwarded
    /// (a miss, a revalidation, another method, a tunnel) gets a 403.
    miss_denied: bool,
    arrival: Arrival,
    /// http_reply_access to apply to the reply; `None` when there are no
    /// rules (or for CONNECT and cuttle's own denials, as in Squid).
    reply_check: Option<Box<ReplyCheck>>,
    /// Lists it in `mgr:active_requests` until the transaction ends.
    active: crate::stats::ActiveGuard,
}

/// The request as an `access_log` line's ACLs see it.
struct LogScope {
    config: Arc<Config>,
    local: SocketAddr,
    port_name: Arc<str>,
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl Txn {
    /// `target` is `None` when the request had no usable URL.
    fn new(
        proxy: &Proxy,
        conn: &ConnInfo,
        method: &Method,
        url: String,
        target: Option<&Target>,
    ) -> Txn {
        let log_scope = proxy.logger.has_acl_rules().then(|| {
            Box::new(LogScope {
                config: Arc::clone(&proxy.config),
                local: conn.local,
                port_name: Arc::clone(&conn.port_name),
                scheme: target.map(|t| t.scheme.clone()).unwrap_or_default(),
                host: target.map(|t| t.host.clone()).unwrap_or_default(),
                port: target.map_or(0, |t| t.port),
                path: target.map(|t| t.path_and_query.clone()).unwrap_or_default(),
            })
        });
        let active = proxy
            .stats()
            .begin_request(conn.client, conn.local, method.as_str(), &url);
        Txn {
            active,
            start: Instant::now(),
            client: conn.client.ip(),
            local_port: conn.local.port(),
            method: method.as_str().to_string(),
            url,
            result: ResultCode::new(ResultTag::None),
            hierarchy: Hierarchy::none(),
            log_scope,
            miss_denied: false,
            arrival: Arrival::of(&conn.kind),
            reply_check: None,
        }
    }

    /// Writes the access.log line of this transaction: `entry` is what
    /// happened, the `access_log` lines' ACLs are checked against the request.
    fn log(logger: &Logger, scope: Option<&LogScope>, entry: &Entry) {
        let Some(scope) = scope else {
            logger.log(entry);
            return;
        };
        let req = access::Request {
            client: entry
                .client
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            method: &entry.method,
            scheme: &scope.scheme,
            host: &scope.host,
            port: scope.port,
            path: &scope.path,
            url: &entry.url,
            local_ip: Some(scope.local.ip()),
            local_port: scope.local.port(),
            port_name: &scope.port_name,
            dst_addrs: None,
        };
        logger.log_if(entry, |acls| access::matches_all(acls, &scope.config, &req));
    }

    fn with(mut self, tag: ResultTag) -> Txn {
        self.result = ResultCode::new(tag);
        self
    }
}

/// Bytes of a response head on the wire (status line, fields, blank line).
fn head_size(status: StatusCode, headers: &HeaderMap) -> u64 {
    let line = 9 + 3 + 1 + status.canonical_reason().map_or(0, str::len) + 2;
    let fields: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    (line + fields + 2) as u64
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    caching::remove_hop_by_hop(headers);
}

impl Proxy {
    /// Finishes a transaction: the response goes out with a body that
    /// writes the access.log line when it ends.
    fn respond(
        &self,
        mut txn: Txn,
        status: StatusCode,
        mut headers: HeaderMap,
        body: ProxyBody,
    ) -> Response<ClientBody> {
        if let Some(check) = txn.reply_check.take() {
            if !check.allows(txn.client, &txn.method, status, &headers) {
                // Squid's TCP_DENIED_REPLY: the reply is dropped unsent.
                drop(body);
                return self.error(
                    txn.with(ResultTag::TcpDeniedReply),
                    ErrorKind::AccessDenied,
                    "denied by http_reply_access",
                );
            }
        }
        headers.append(header::VIA, self.via.clone());
        let head_bytes = head_size(status, &headers);
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let logger = self.logger.clone();
        let stats = self.stats();
        // No body goes out for these whatever the fields say.
        let expected = if status == StatusCode::NOT_MODIFIED
            || status == StatusCode::NO_CONTENT
            || txn.method == "HEAD"
        {
            Some(0)
        } else {
            content_length(&headers)
        };
        let progress = Arc::clone(txn.active.request());
        let done = Box::new(move |body_bytes: u64, complete: bool| {
            // Listed as active until its log line is written.
            let _active = txn.active;
            let mut result = txn.result;
            if !complete {
                result = result.aborted();
            }
            let entry = Entry {
                end: SystemTime::now(),
                elapsed: txn.start.elapsed(),
                client: Some(txn.client),
                result,
                status: status.as_u16(),
                size: head_bytes + body_bytes,
                method: txn.method,
                url: txn.url,
                user: None,
                hierarchy: txn.hierarchy,
                content_type,
            };
            stats.note_transaction(&entry);
            Txn::log(&logger, txn.log_scope.as_deref(), &entry);
        });
        let mut resp = Response::new(ClientBody::new(body, expected, done).counting_into(progress));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    fn error(&self, txn: Txn, kind: ErrorKind, detail: &str) -> Response<ClientBody> {
        let (status, mut headers, body) = errors::page(kind, &txn.url, detail, &self.name);
        self.cache_status(&mut headers, false, None);
        self.respond(txn, status, headers, ProxyBody::full(body))
    }

    /// An error after which the client's connection closes: what it sent
    /// next on it cannot be framed (its request body was not or could not
    /// be read).
    fn error_closing(&self, txn: Txn, kind: ErrorKind, detail: &str) -> Response<ClientBody> {
        let mut resp = self.error(txn, kind, detail);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// `miss_access` said no: Squid's 403 ERR_FORWARDING_DENIED, logged
    /// with the transaction's tag (TCP_MISS/403 for a miss, HIER_NONE/-).
    fn forwarding_denied(&self, txn: Txn) -> Response<ClientBody> {
        self.error(txn, ErrorKind::ForwardingDenied, "denied by miss_access")
    }

    fn fetch_error(&self, txn: Txn, e: &FetchError) -> Response<ClientBody> {
        self.error(txn, error_kind(e), &e.to_string())
    }

    fn not_forwarded(&self, txn: Txn, e: &NotForwarded) -> Response<ClientBody> {
        let (kind, detail) = not_forwarded_page(e);
        if matches!(e, NotForwarded::Failed(FetchError::RequestBody(_))) {
            // The rest of its body cannot be framed: the connection goes.
            return self.error_closing(txn, kind, &detail);
        }
        self.error(txn, kind, &detail)
    }

    /// Squid's X-Cache and X-Cache-Lookup. `lookup`: was the object in the
    /// cache (None when the request could not be cached at all).
    fn cache_status(&self, headers: &mut HeaderMap, hit: bool, lookup: Option<(bool, u16)>) {
        let labels = &self.labels;
        headers.insert(
            "x-cache",
            if hit {
                labels.hit.clone()
            } else {
                labels.miss.clone()
            },
        );
        if let Some((found, port)) = lookup {
            let value = match labels.lookup.iter().find(|(p, _, _)| *p == port) {
                Some((_, hit, miss)) => Some(if found { hit.clone() } else { miss.clone() }),
                None => {
                    let word = if found { "HIT" } else { "MISS" };
                    HeaderValue::from_str(&format!("{word} from {}:{port}", self.name)).ok()
                }
            };
            if let Some(v) = value {
                headers.insert("x-cache-lookup", v);
            }
        }
    }

    /// The request to send upstream: origin-form, end-to-end fields of the
    /// client's request, Host, our Via, X-Forwarded-For.
    fn upstream_request(
        &self,
        method: &Method,
        target: &Target,
        client_headers: &HeaderMap,
        client: IpAddr,
        body: ProxyBody,
    ) -> Request<ProxyBody> {
        let mut headers = client_headers.clone();
        remove_hop_by_hop(&mut headers);
        if let Ok(host) = HeaderValue::from_str(&target.host_header()) {
            headers.insert(header::HOST, host);
        }
        headers.append(header::VIA, self.via.clone());
        let previous = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let append = |value: String| match &previous {
            Some(prev) => format!("{prev}, {value}"),
            None => value,
        };
        let xff = match self.config.forwarded_for.value {
            ForwardedFor::On => Some(append(client.to_string())),
            ForwardedFor::Off => Some(append("unknown".into())),
            ForwardedFor::Truncate => Some(client.to_string()),
            ForwardedFor::Transparent => previous.clone(),
            ForwardedFor::Delete => None,
        };
        headers.remove("x-forwarded-for");
        if let Some(v) = xff.and_then(|x| HeaderValue::from_str(&x).ok()) {
            headers.insert("x-forwarded-for", v);
        }
        let mut req = Request::new(body);
        *req.method_mut() = method.clone();
        *req.uri_mut() = target
            .path_and_query
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        *req.headers_mut() = headers;
        req
    }

    /// An upstream response's fields as passed to the client.
    fn client_headers(&self, upstream: &HeaderMap) -> HeaderMap {
        let mut headers = upstream.clone();
        remove_hop_by_hop(&mut headers);
        headers
    }

    fn is_loop(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::VIA)
            .iter()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(&self.loop_marker))
    }

    /// What peer selection looks at for this request.
    fn select_request<'a>(
        &self,
        target: &'a Target,
        client: IpAddr,
        method: &'a Method,
        headers: &HeaderMap,
        siblings_ok: bool,
        arrival: Arrival,
    ) -> SelectRequest<'a> {
        let has_auth = headers.contains_key(header::AUTHORIZATION);
        let hierarchical = peer_select::hierarchical(method.as_str(), has_auth, false, false)
            && !peer_select::stoplisted(&self.config, &target.url);
        SelectRequest {
            access: access::Request {
                client,
                method: method.as_str(),
                scheme: &target.scheme,
                host: &target.host,
                port: target.port,
                path: &target.path_and_query,
                url: &target.url,
                local_ip: None,
                local_port: 0,
                port_name: "",
                dst_addrs: None,
            },
            hierarchical,
            siblings_ok,
            looped: false,
            accel_no_direct: arrival
                == Arrival::Accel {
                    allow_direct: false,
                },
        }
    }

    /// Where `fwd` may go, in order: Squid's peer selection, with ICP
    /// queries to the peers it would ask (none for a non-hierarchical
    /// request unless nothing may go direct; no siblings when
    /// `siblings_ok` is false).
    async fn routes(&self, fwd: &Forwarding<'_>) -> Vec<Route> {
        let req = self.select_request(
            fwd.target,
            fwd.client,
            fwd.method,
            fwd.headers,
            fwd.siblings_ok,
            fwd.arrival,
        );
        let selection = self
            .neighbours
            .select(&self.config, &req, fwd.headers)
            .await;
        let local = peer_select::tcp_outgoing_address(&self.config, &req.access);
        self.neighbours
            .probe_down_peers(local, self.config.peer_connect_timeout.value);
        selection
            .sources
            .into_iter()
            .map(|source| Route {
                source,
                local,
                timed_out: selection.timed_out,
                url: fwd.target.url.clone(),
            })
            .collect()
    }

    /// Squid's forwarding (squid-spec 3.2): selects the sources of `fwd`
    /// and tries them in order until one answers. A failed attempt
    /// (connect, read or timeout) or a re-forwardable status
    /// ([`reforwardable`]) moves on to the next source, for at most
    /// forward_max_tries attempts, and only while the request body is
    /// untouched (an attempt that sent any of it is the last: the body
    /// would be lost or sent twice). The last source's answer is kept
    /// whatever its status; `hierarchy` names the source that gave it.
    async fn forward_along(
        &self,
        fwd: &Forwarding<'_>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Fetched, NotForwarded> {
        let mut routes = self.routes(fwd).await;
        routes.truncate(self.config.forward_max_tries.value.max(1) as usize);
        let count = routes.len();
        let mut last_error = None;
        let mut fetched = None;
        for (n, route) in routes.into_iter().enumerate() {
            let more = n + 1 < count;
            let conn_slot = route.source.peer.map(|id| self.neighbours.open(id));
            match self.send(&route, fwd, hierarchy).await {
                Ok(resp) => {
                    let status = resp.status();
                    if more
                        && reforwardable(status, self.config.retry_on_error.value)
                        && fwd.replayable()
                    {
                        tracing::debug!(url = %mask_manager_password(&fwd.target.url), source = %route.source.host, %status, "trying the next source");
                        continue;
                    }
                    fetched = Some(Fetched {
                        resp,
                        proxy_only: route.source.proxy_only,
                        _conn_slot: conn_slot,
                    });
                    break;
                }
                Err(e) => {
                    // Another cache's manager URL may carry its password: never in our logs.
                    tracing::debug!(url = %mask_manager_password(&fwd.target.url), source = %route.source.host, "fetch failed: {e}");
                    // The client's body failed: no other source would fare better.
                    let clients_fault = matches!(e, FetchError::RequestBody(_));
                    last_error = Some(e);
                    if clients_fault || !fwd.replayable() {
                        break;
                    }
                }
            }
        }
        if count > 0 {
            // No source at all is Squid's HIER_NONE: not counted.
            self.note_forwarding(fetched.is_none().then_some(last_error.as_ref()).flatten());
        }
        match (fetched, last_error) {
            (Some(f), _) => Ok(f),
            (None, Some(e)) => Err(NotForwarded::Failed(e)),
            (None, None) => Err(NotForwarded::NoSource),
        }
    }

    /// One attempt of `fwd` along `route`, noting the server in the log
    /// line: to a proxy peer in absolute-form, to a sibling with
    /// only-if-cached, with the credentials login= calls for; the outcome
    /// feeds the peer's health.
    async fn send(
        &self,
        route: &Route,
        fwd: &Forwarding<'_>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Response<crate::upstream::PooledBody<ProxyBody>>, FetchError> {
        let source = &route.source;
        let body = fwd
            .body
            .as_ref()
            .map_or(ProxyBody::Empty, RequestBody::attempt);
        let mut req = self.upstream_request(fwd.method, fwd.target, fwd.headers, fwd.client, body);
        if source.absolute_form {
            if let Ok(uri) = route.url.parse() {
                *req.uri_mut() = uri;
            }
        }
        if source.absolute_form {
            // As Squid toward any cache peer (squid-spec 3.6): `max-age` of
            // the refresh_pattern unless the client set max-age or
            // no-cache; `only-if-cached` to siblings.
            let headers = req.headers_mut();
            let current: Vec<String> = headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
            let mut directives = current.clone();
            let named = |d: &String, name: &str| {
                d.split('=')
                    .next()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
            };
            if !current
                .iter()
                .any(|d| named(d, "max-age") || named(d, "no-cache"))
            {
                let max = Rule::for_url(&self.config, &route.url).max;
                directives.push(format!("max-age={max}"));
            }
            if source.only_if_cached && !current.iter().any(|d| named(d, "only-if-cached")) {
                directives.push("only-if-cached".to_string());
            }
            if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
                headers.insert(header::CACHE_CONTROL, v);
            }
        }
        let field = |name| fwd.headers.get(name).and_then(|v| v.to_str().ok());
        let credentials = peer_select::credentials(
            source,
            &ClientCredentials {
                proxy_authorization: field(header::PROXY_AUTHORIZATION),
                authorization: field(header::AUTHORIZATION),
                accelerated: fwd.arrival != Arrival::Forward,
            },
        );
        let headers = req.headers_mut();
        for (name, value) in [
            (header::PROXY_AUTHORIZATION, credentials.proxy_authorization),
            (header::AUTHORIZATION, credentials.authorization),
        ] {
            headers.remove(&name);
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, v);
            }
        }
        let sent = self
            .upstream
            .send_from(
                &source.host,
                source.port,
                route.local,
                source.connect_timeout,
                req,
            )
            .await;
        if let Some(id) = source.peer {
            match &sent {
                Ok(_) => self.neighbours.note_connect(id, true),
                Err(FetchError::Connect { .. }) => self.neighbours.note_connect(id, false),
                Err(_) => {}
            }
        } else if let Ok((resp, addr)) = &sent {
            // DIRECT on a new connection: its handshake timed the origin.
            if let Some(c) = resp.extensions().get::<NewConnection>() {
                self.netdb
                    .note_connect(&source.host, addr.ip(), c.handshake);
            }
        }
        let (resp, addr) = sent?;
        let mut h = Hierarchy::new(source.code, Some(addr.ip().to_string()));
        if route.timed_out {
            h = h.timed_out();
        }
        *hierarchy = h;
        Ok(resp)
    }

    fn lookup(&self, key: &Key) -> Option<Hit> {
        // Inline: hot pages cost nothing, and handing the worker off
        // (block_in_place) for every hit costs more than a rare page fault.
        self.store.lookup(key)
    }
}

/// Handles one request.
pub async fn handle(
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
        manage::Addressed::Elsewhere(target) => (target, None, None, false),
    };
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
        &conn,
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
    txn.miss_denied = miss_denied(
        &config,
        &conn,
        &method,
        &target,
        &details.get(req.headers()),
    );
    if method != Method::CONNECT && !config.http_reply_access.is_empty() {
        txn.reply_check = Some(Box::new(ReplyCheck {
            config: Arc::clone(&config),
            local: conn.local,
            port_name: Arc::clone(&conn.port_name),
            target: target.clone(),
            request_headers: req.headers().clone(),
            client_connections: details.client_connections,
            client_name: details.client_name.clone(),
        }));
    }
    if method == Method::CONNECT {
        return tunnel(proxy, txn, target, req).await;
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
    forward(proxy, txn, target, req).await
}

/// What ACLs beyond the request line need from this request's connection:
/// its client's open connections and, when some rule of the list can
/// reach a `srcdomain` ACL, its name (looked up, cached, off the executor)
/// before the rules are checked.
struct RequestDetails {
    client_connections: usize,
    client_name: Option<Arc<str>>,
}

impl RequestDetails {
    async fn of(config: &Config, conn: &ConnInfo) -> RequestDetails {
        let lists = [
            &config.http_access,
            &config.miss_access,
            &config.http_reply_access,
        ];
        let client_name = if lists
            .iter()
            .any(|list| access::needs_client_name(list, config))
        {
            Some(super::client_name::lookup(conn.client.ip()).await)
        } else {
            None
        };
        RequestDetails {
            client_connections: conn.per_client.open_from(conn.client.ip()),
            client_name,
        }
    }

    fn get<'a>(&'a self, headers: &'a HeaderMap) -> access::Details<'a> {
        access::Details {
            request_headers: Some(headers),
            client_connections: self.client_connections,
            client_name: self.client_name.as_deref(),
            ..access::Details::default()
        }
    }
}

/// What http_reply_access looks at once the reply is known.
struct ReplyCheck {
    config: Arc<Config>,
    local: SocketAddr,
    port_name: Arc<str>,
    target: Target,
    request_headers: HeaderMap,
    client_connections: usize,
    client_name: Option<Arc<str>>,
}

impl ReplyCheck {
    /// Squid's http_reply_access (no rules: allow). As Squid, interim and
    /// partial answers (1xx, 206, 304) are always let through.
    fn allows(
        &self,
        client: IpAddr,
        method: &str,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> bool {
        if status.is_informational()
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return true;
        }
        let req = access::Request {
            client,
            method,
            scheme: &self.target.scheme,
            host: &self.target.host,
            port: self.target.port,
            path: &self.target.path_and_query,
            url: &self.target.url,
            local_ip: Some(self.local.ip()),
            local_port: self.local.port(),
            port_name: &self.port_name,
            dst_addrs: None,
        };
        let details = access::Details {
            request_headers: Some(&self.request_headers),
            reply: Some(access::ReplyInfo {
                status: status.as_u16(),
                headers,
            }),
            client_connections: self.client_connections,
            client_name: self.client_name.as_deref(),
            ..access::Details::default()
        };
        access::check_with(&self.config.http_reply_access, &self.config, &req, &details)
            .or_if_no_rules(access::Verdict::Allow)
            .allowed()
    }
}

/// Evaluates an access list, resolving the destination only when a `dst`
/// ACL needs it.
async fn allowed(
    config: &Config,
    list: &[crate::config::Located<crate::config::AccessRule>],
    conn: &ConnInfo,
    method: &Method,
    target: &Target,
    details: &access::Details<'_>,
) -> bool {
    let path = target.path_and_query.as_str();
    let mut req = access::Request {
        client: conn.client.ip(),
        method: method.as_str(),
        scheme: &target.scheme,
        host: &target.host,
        port: target.port,
        path,
        url: &target.url,
        local_ip: Some(conn.local.ip()),
        local_port: conn.local.port(),
        port_name: &conn.port_name,
        dst_addrs: None,
    };
    match access::try_check_with(list, config, &req, details) {
        Ok(decision) => decision.allowed(),
        Err(access::NeedsDst) => {
            let addrs: Vec<IpAddr> =
                tokio::net::lookup_host((target.host.trim_matches(['[', ']']), target.port))
                    .await
                    .map(|it| it.map(|a| a.ip()).collect())
                    .unwrap_or_default();
            req.dst_addrs = Some(&addrs);
            access::check_with(list, config, &req, details).allowed()
        }
    }
}

/// `miss_access` (Squid checks it, without DNS, whenever a request would be
/// forwarded; no rules = allow): true when it refuses this client. So
/// siblings get hits but cannot use us as a parent for their misses.
fn miss_denied(
    config: &Config,
    conn: &ConnInfo,
    method: &Method,
    target: &Target,
    details: &access::Details<'_>,
) -> bool {
    if config.miss_access.is_empty() {
        return false;
    }
    let req = access::Request {
        client: conn.client.ip(),
        method: method.as_str(),
        scheme: &target.scheme,
        host: &target.host,
        port: target.port,
        path: &target.path_and_query,
        url: &target.url,
        local_ip: Some(conn.local.ip()),
        local_port: conn.local.port(),
        port_name: &conn.port_name,
        dst_addrs: None,
    };
    !access::check_with(&config.miss_access, config, &req, details)
        .or_if_no_rules(access::Verdict::Allow)
        .allowed()
}

/// CONNECT: connect to the target, answer 200, then copy bytes both ways.
async fn tunnel(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    req: Request<IncomingBody>,
) -> Response<ClientBody> {
    if txn.miss_denied {
        return proxy.forwarding_denied(txn.with(ResultTag::TcpTunnel));
    }
    let local = {
        let method = Method::CONNECT;
        let req = proxy.select_request(
            &target,
            txn.client,
            &method,
            &HeaderMap::new(),
            false,
            txn.arrival,
        );
        peer_select::tcp_outgoing_address(&proxy.config, &req.access)
    };
    let connecting =
        proxy
            .upstream
            .connect_tcp_from(&target.host, target.port, local, proxy.timeouts.connect);
    let connected = connecting.await;
    proxy.note_forwarding(connected.as_ref().err());
    let (mut server, addr) = match connected {
        Ok(s) => s,
        Err(e) => return proxy.fetch_error(txn.with(ResultTag::TcpTunnel), &e),
    };
    txn.result = ResultCode::new(ResultTag::TcpTunnel);
    txn.hierarchy = Hierarchy::new(HierarchyCode::HierDirect, Some(addr.ip().to_string()));
    let logger = proxy.logger.clone();
    let stats = proxy.stats();
    tokio::spawn(async move {
        let (mut sent, mut status) = (0u64, 200u16);
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                match tokio::io::copy_bidirectional(&mut client, &mut server).await {
                    Ok((_, to_client)) => sent = to_client,
                    Err(e) => tracing::debug!("tunnel to {} ended: {e}", target.url),
                }
            }
            Err(e) => {
                status = 0;
                tracing::debug!("CONNECT upgrade failed: {e}");
            }
        }
        let entry = Entry {
            end: SystemTime::now(),
            elapsed: txn.start.elapsed(),
            client: Some(txn.client),
            result: txn.result,
            status,
            size: sent,
            method: txn.method,
            url: txn.url,
            user: None,
            hierarchy: txn.hierarchy,
            content_type: None,
        };
        stats.note_transaction(&entry);
        Txn::log(&logger, txn.log_scope.as_deref(), &entry);
    });
    let mut resp = Response::new(ClientBody::new(
        ProxyBody::Empty,
        Some(0),
        Box::new(|_, _| {}),
    ));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// The keys a URL's stored objects live under (GET; HEAD is answered from
/// the GET object).
fn url_key(url: &str) -> Key {
    store_key(KeyMethod::Get, url.as_bytes())
}

/// PURGE: remove the URL's object (allowed only where http_access lets the
/// PURGE method through). Squid logs it as TCP_MISS with 200 or 404.
fn purge(proxy: &Proxy, txn: Txn, target: &Target) -> Response<ClientBody> {
    if !proxy.purge_enabled {
        // Squid honours PURGE only when the config names the method in
        // an ACL (its enable_purge); without one it is refused.
        return proxy.error(
            txn.with(ResultTag::TcpDenied),
            ErrorKind::AccessDenied,
            "PURGE is not enabled (no acl ... method PURGE)",
        );
    }
    let store = &proxy.store;
    let removed = tokio::task::block_in_place(|| {
        let get = store.purge(&url_key(&target.url));
        let head = store.purge(&store_key(KeyMethod::Head, target.url.as_bytes()));
        get || head
    });
    // The mesh purges too, whether or not we held it (squid-spec 2.6).
    proxy.neighbours.send_clr(&target.url, ClrTrigger::Purge);
    let status = if removed {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    proxy.respond(
        txn.with(ResultTag::TcpMiss),
        status,
        headers,
        ProxyBody::Empty,
    )
}

/// Any method but GET, HEAD, PURGE and CONNECT: forwarded as is, never
/// stored; a success invalidates what is stored for the URL (RFC 9111 §4.4).
async fn forward(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    req: Request<IncomingBody>,
) -> Response<ClientBody> {
    if txn.miss_denied {
        return proxy.forwarding_denied(txn.with(ResultTag::TcpMiss));
    }
    let (parts, body) = req.into_parts();
    txn.result = ResultCode::new(ResultTag::TcpMiss);
    let fwd = Forwarding {
        method: &parts.method,
        target: &target,
        headers: &parts.headers,
        client: txn.client,
        arrival: txn.arrival,
        siblings_ok: !RequestDirectives::parse(&parts.headers).no_cache,
        body: Some(RequestBody::new(body)),
    };
    let sent = proxy.forward_along(&fwd, &mut txn.hierarchy).await;
    let resp = match sent {
        Ok(f) => f.resp,
        Err(e) => return proxy.not_forwarded(txn, &e),
    };
    let (resp_parts, resp_body) = resp.into_parts();
    let urls = caching::invalidated_urls(
        &parts.method,
        resp_parts.status,
        &target.url,
        &resp_parts.headers,
    );
    if !urls.is_empty() {
        let store = Arc::clone(&proxy.store);
        tokio::task::block_in_place(|| {
            for url in &urls {
                store.purge(&url_key(url));
                store.purge(&store_key(KeyMethod::Head, url.as_bytes()));
            }
        });
        for url in &urls {
            proxy.neighbours.send_clr(url, ClrTrigger::Invalidation);
        }
    }
    let mut headers = proxy.client_headers(&resp_parts.headers);
    proxy.cache_status(&mut headers, false, None);
    proxy.respond(
        txn,
        resp_parts.status,
        headers,
        ProxyBody::Upstream(Box::new(resp_body)),
    )
}

/// A stored entry found for a request, Vary resolved.
struct Found {
    obj: Arc<HotEntry>,
    /// The key it is stored under.
    key: Key,
    /// Served from the memory cache (TCP_MEM_HIT).
    memory: bool,
}

impl Found {
    fn entry(&self) -> &StoredEntry {
        &self.obj.entry
    }
}

/// What lookup found: the entry for this request if any, and the key a new
/// response for this request would be stored under (a variant key when the
/// URL's responses vary).
struct Lookup {
    found: Option<Found>,
    marker: Option<VaryMarker>,
    /// Was anything stored for the URL at all (X-Cache-Lookup).
    anything: bool,
}

/// A request that the memory cache can answer without reading its rules:
/// no cache directives, no conditionals.
fn plain(headers: &HeaderMap) -> bool {
    !(headers.contains_key(header::CACHE_CONTROL)
        || headers.contains_key(header::PRAGMA)
        || headers.contains_key(header::IF_NONE_MATCH)
        || headers.contains_key(header::IF_MODIFIED_SINCE)
        || headers.contains_key(header::AUTHORIZATION))
}

impl Proxy {
    /// A verified store hit made ready to serve, with its freshness under
    /// `rule` precomputed for the memory cache's fast path.
    fn hot_entry(&self, hit: Hit, entry: StoredEntry, rule: &Rule) -> HotEntry {
        let fresh_until = if caching::ResponseDirectives::parse(&entry.headers).revalidate_always()
        {
            0
        } else {
            u64::from(entry.times.date).saturating_add(entry.lifetime(rule).secs)
        };
        HotEntry {
            generation: hit.generation,
            body_len: hit.body_len,
            body: hit.body,
            entry,
            fresh_until,
        }
    }

    fn find(&self, url: &str, request: &HeaderMap, rule: &Rule) -> Lookup {
        let base = url_key(url);
        if let Some(obj) = self.hot.get(&base, &self.store) {
            return Lookup {
                found: Some(Found {
                    obj,
                    key: base,
                    memory: true,
                }),
                marker: None,
                anything: true,
            };
        }
        let Some(hit) = self.lookup(&base) else {
            return Lookup {
                found: None,
                marker: None,
                anything: false,
            };
        };
        if let Some(marker) = VaryMarker::from_head(&hit.header_block) {
            self.known_markers.note(base, hit.generation, &marker);
            let key = url_key(&marker.variant_url(url, request));
            let found = self.lookup(&key).and_then(|hit| {
                let entry = StoredEntry::from_head(&hit.header_block, hit.times).ok()?;
                marker.matches(&entry.headers).then(|| Found {
                    obj: Arc::new(self.hot_entry(hit, entry, rule)),
                    key,
                    memory: self.store.is_memory(),
                })
            });
            return Lookup {
                found,
                marker: Some(marker),
                anything: true,
            };
        }
        match StoredEntry::from_head(&hit.header_block, hit.times) {
            Ok(entry) => {
                let obj = self.hot.insert(base, self.hot_entry(hit, entry, rule));
                Lookup {
                    found: Some(Found {
                        obj,
                        key: base,
                        memory: self.store.is_memory(),
                    }),
                    marker: None,
                    anything: true,
                }
            }
            Err(_) => {
                // Unreadable head: release it and treat as a miss.
                self.store.purge(&base);
                Lookup {
                    found: None,
                    marker: None,
                    anything: false,
                }
            }
        }
    }
}

/// GET and HEAD: the cache.
async fn cached(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    req: Request<IncomingBody>,
    looped: bool,
) -> Response<ClientBody> {
    let (parts, _body) = req.into_parts();
    // The memory cache's fast path: a plain request for a fresh hot object.
    if plain(&parts.headers) {
        let key = url_key(&target.url);
        if let Some(obj) = proxy.hot.get(&key, &proxy.store) {
            let now = unix_now();
            if now < obj.fresh_until {
                txn.result = ResultCode::new(ResultTag::TcpMemHit);
                let age = now.saturating_sub(u64::from(obj.entry.times.date));
                let found = Found {
                    obj,
                    key,
                    memory: true,
                };
                return serve_hit(&proxy, txn, &parts, found, age, Outcome::Hit);
            }
        }
    }
    let directives = RequestDirectives::parse(&parts.headers);
    let rule = Rule::for_url(&proxy.config, &target.url);
    let lookup = proxy.find(&target.url, &parts.headers, &rule);
    let lookup_port = txn.local_port;
    if let Some(found) = lookup.found {
        let now = unix_now();
        let offline = proxy.config.offline();
        // Squid tags a hit from disk TCP_OFFLINE_HIT under offline_mode.
        let hit_tag = match (found.memory, offline) {
            (true, _) => ResultTag::TcpMemHit,
            (false, true) => ResultTag::TcpOfflineHit,
            (false, false) => ResultTag::TcpHit,
        };
        let decision = match caching::decide_hit(found.entry(), &directives, &rule, now) {
            // offline_mode: never validate, whatever made the entry stale
            // (a client reload still fetches).
            HitDecision::Revalidate { .. }
            | HitDecision::ServeStaleWhileRevalidate { .. }
            | HitDecision::OnlyIfCachedMiss
                if offline =>
            {
                HitDecision::Serve {
                    age: found.entry().age(now),
                    stale: true,
                }
            }
            decision => decision,
        };
        match decision {
            HitDecision::Serve { age, .. } => {
                txn.result = ResultCode::new(hit_tag);
                return serve_hit(&proxy, txn, &parts, found, age, Outcome::Hit);
            }
            HitDecision::ServeStaleWhileRevalidate { age, validators } => {
                background_refresh(&proxy, &target, &parts.headers, &found, validators, &txn);
                txn.result = ResultCode::new(hit_tag);
                return serve_hit(&proxy, txn, &parts, found, age, Outcome::Hit);
            }
            HitDecision::OnlyIfCachedMiss => {
                return proxy.error(
                    txn.with(ResultTag::TcpHit),
                    ErrorKind::OnlyIfCachedMiss,
                    "stale and only-if-cached",
                );
            }
            HitDecision::Revalidate { validators, .. } => {
                if looped {
                    return proxy.error(
                        txn.with(ResultTag::TcpMiss),
                        ErrorKind::AccessDenied,
                        "forwarding loop detected",
                    );
                }
                if txn.miss_denied {
                    return proxy.forwarding_denied(txn.with(ResultTag::TcpMiss));
                }
                return revalidate(
                    proxy, txn, target, parts, found, validators, directives, rule,
                )
                .await;
            }
            HitDecision::Reload => {
                txn.result = ResultCode::new(ResultTag::TcpClientRefreshMiss);
            }
        }
    } else {
        txn.result = ResultCode::new(ResultTag::TcpMiss);
        if directives.only_if_cached {
            return proxy.error(
                txn,
                ErrorKind::OnlyIfCachedMiss,
                "not in the cache and only-if-cached",
            );
        }
    }
    if looped {
        return proxy.error(txn, ErrorKind::AccessDenied, "forwarding loop detected");
    }
    if txn.miss_denied {
        return proxy.forwarding_denied(txn);
    }
    if parts.method == Method::HEAD {
        // HEAD misses are forwarded as HEAD and not stored.
        let fwd = Forwarding {
            method: &Method::HEAD,
            target: &target,
            headers: &parts.headers,
            client: txn.client,
            arrival: txn.arrival,
            siblings_ok: !directives.no_cache,
            body: None,
        };
        let sent = proxy.forward_along(&fwd, &mut txn.hierarchy).await;
        let resp = match sent {
            Ok(f) => f.resp,
            Err(e) => return proxy.not_forwarded(txn, &e),
        };
        let (rp, rb) = resp.into_parts();
        let mut headers = proxy.client_headers(&rp.headers);
        proxy.cache_status(&mut headers, false, Some((lookup.anything, lookup_port)));
        return proxy.respond(txn, rp.status, headers, ProxyBody::Upstream(Box::new(rb)));
    }
    miss(
        proxy,
        txn,
        target,
        parts,
        directives,
        rule,
        lookup.marker,
        lookup.anything,
    )
    .await
}

/// Sends a stored entry (or a 304 when the client's own conditional matches).
fn serve_hit(
    proxy: &Proxy,
    mut txn: Txn,
    parts: &http::request::Parts,
    found: Found,
    age: u64,
    outcome: Outcome,
) -> Response<ClientBody> {
    let port = txn.local_port;
    if let Some(cond) =
        caching::client_not_modified(&parts.method, &parts.headers, &found.entry().headers)
    {
        txn.result = ResultCode::new(tag_of(cond));
        let mut headers = caching::not_modified_headers(&found.entry().headers);
        headers.insert(header::AGE, caching::age_value(age));
        proxy.cache_status(&mut headers, true, Some((true, port)));
        return proxy.respond(txn, StatusCode::NOT_MODIFIED, headers, ProxyBody::Empty);
    }
    if txn.result.tag == ResultTag::None {
        txn.result = ResultCode::new(tag_of(outcome));
    }
    // A cached error response (negative caching) is Squid's NEGATIVE_HIT.
    if matches!(
        txn.result.tag,
        ResultTag::TcpHit | ResultTag::TcpMemHit | ResultTag::TcpOfflineHit
    ) && found.entry().status.as_u16() >= 400
    {
        txn.result.tag = ResultTag::TcpNegativeHit;
    }
    let mut headers = found.entry().headers.clone();
    headers.insert(header::AGE, caching::age_value(age));
    proxy.cache_status(&mut headers, true, Some((true, port)));
    // Framed by the bytes sent (HEAD: the bytes a GET would get), never by
    // a stored field: a wrong length would let a pipelining client read
    // part of this body as its next response.
    let body_len = found.obj.body.iter().map(|c| c.len() as u64).sum();
    caching::frame_by_body(&mut headers, found.entry().status, body_len);
    let body = if parts.method == Method::HEAD {
        ProxyBody::Empty
    } else {
        ProxyBody::from_chunks(found.obj.body.iter().cloned())
    };
    proxy.respond(txn, found.entry().status, headers, body)
}

fn tag_of(outcome: Outcome) -> ResultTag {
    match outcome {
        Outcome::Hit => ResultTag::TcpHit,
        Outcome::Miss => ResultTag::TcpMiss,
        Outcome::ClientRefreshMiss => ResultTag::TcpClientRefreshMiss,
        Outcome::RefreshUnmodified => ResultTag::TcpRefreshUnmodified,
        Outcome::RefreshModified => ResultTag::TcpRefreshModified,
        Outcome::RefreshFailOld => ResultTag::TcpRefreshFailOld,
        Outcome::RefreshFailErr => ResultTag::TcpRefreshFailErr,
        Outcome::ImsHit => ResultTag::TcpImsHit,
        Outcome::InmHit => ResultTag::TcpInmHit,
    }
}

/// Stores a new head with the body of `obj` (after a 304).
fn restore(
    store: &Store,
    key: Key,
    url: &str,
    head: &[u8],
    times: crate::store::Times,
    obj: &HotEntry,
) {
    let written = store
        .writer(key, times, url.as_bytes(), head, Some(obj.body_len))
        .and_then(|mut w| {
            for chunk in &obj.body {
                w.write(chunk)?;
            }
            w.commit()
        });
    if let Err(e) = written {
        if !matches!(e, StoreError::Superseded) {
            tracing::debug!(url, "cannot update the stored entry: {e}");
        }
    }
}

/// A stale hit: ask upstream with the validators; a 304 refreshes the
/// stored copy, a new response replaces it, a failure may serve it stale.
#[allow(clippy::too_many_arguments)]
async fn revalidate(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    parts: http::request::Parts,
    found: Found,
    validators: caching::Validators,
    directives: RequestDirectives,
    rule: Rule,
) -> Response<ClientBody> {
    let mut headers = parts.headers.clone();
    // The client's own conditionals are answered here, not upstream.
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    validators.apply(&mut headers);
    let request_time = unix_now();
    // A revalidation may use parents (and ask them with ICP), never
    // siblings (squid-spec 3.1).
    let fwd = Forwarding {
        method: &Method::GET,
        target: &target,
        headers: &headers,
        client: txn.client,
        arrival: txn.arrival,
        siblings_ok: false,
        body: None,
    };
    let sent = proxy
        .forward_along(&fwd, &mut txn.hierarchy)
        .await
        .map(|f| f.resp);
    let now = unix_now();
    let stale_ok = caching::may_serve_stale_on_error(found.entry(), &directives, &rule, now);
    let serve_stale = |proxy: &Proxy, mut txn: Txn, found: Found| {
        txn.result = ResultCode::new(ResultTag::TcpRefreshFailOld);
        let age = found.entry().age(now);
        serve_hit(proxy, txn, &parts, found, age, Outcome::RefreshFailOld)
    };
    let resp = match sent {
        Ok(r) => r,
        Err(_) if stale_ok => return serve_stale(&proxy, txn, found),
        Err(e) => return proxy.not_forwarded(txn.with(ResultTag::TcpRefreshFailErr), &e),
    };
    let exchange = Exchange {
        request_time,
        response_time: now,
    };
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED
        && caching::not_modified_matches(&found.entry().headers, resp.headers())
    {
        let freshened =
            caching::freshen(found.entry(), resp.headers(), &directives, &rule, exchange);
        let store = Arc::clone(&proxy.store);
        match &freshened.store {
            Ok(plan) => tokio::task::block_in_place(|| {
                restore(
                    &store,
                    found.key,
                    &target.url,
                    &plan.head,
                    plan.times,
                    &found.obj,
                )
            }),
            Err(_) => {
                store.purge(&found.key);
            }
        }
        txn.result = ResultCode::new(ResultTag::TcpRefreshUnmodified);
        let age = freshened.entry.age(now);
        proxy.hot.remove(&found.key);
        // The refreshed copy is kept in memory, as the first one was.
        if proxy.hot.admits(found.obj.body_len) {
            tokio::task::block_in_place(|| proxy.remember(found.key, &target.url, &rule));
        }
        let refreshed = Found {
            obj: Arc::new(HotEntry {
                generation: found.obj.generation,
                entry: freshened.entry,
                body: found.obj.body.clone(),
                body_len: found.obj.body_len,
                fresh_until: 0,
            }),
            key: found.key,
            memory: false,
        };
        return serve_hit(
            &proxy,
            txn,
            &parts,
            refreshed,
            age,
            Outcome::RefreshUnmodified,
        );
    }
    if status.is_server_error() {
        if stale_ok {
            return serve_stale(&proxy, txn, found);
        }
        // The origin's own error goes to the client, as Squid does.
        txn.result = ResultCode::new(ResultTag::TcpRefreshFailErr);
        let (rp, rb) = resp.into_parts();
        let mut headers = proxy.client_headers(&rp.headers);
        proxy.cache_status(&mut headers, false, Some((true, txn.local_port)));
        return proxy.respond(txn, rp.status, headers, ProxyBody::Upstream(Box::new(rb)));
    }
    // A new object (or a 304 that did not match: refetch without validators
    // next time; this reply is passed on as it is).
    txn.result = ResultCode::new(ResultTag::TcpRefreshModified);
    let (rp, rb) = resp.into_parts();
    let store_plan = caching::plan_store(
        &Method::GET,
        &directives,
        rp.status,
        &rp.headers,
        &rule,
        exchange,
    );
    let mut headers = proxy.client_headers(&rp.headers);
    proxy.cache_status(&mut headers, false, Some((true, txn.local_port)));
    match store_plan {
        Ok(plan) if plan.vary.is_empty() && rp.status != StatusCode::NOT_MODIFIED => {
            // Store while streaming, as for a miss, through a fetch of its own.
            let (leader, reader) = proxy.collapser.alone_body();
            let (fetcher, url, key) = (Arc::clone(&proxy), target.url.clone(), found.key);
            tokio::spawn(async move {
                stream_and_store(&fetcher, rb, key, &url, plan, rule, leader).await;
            });
            proxy.respond(txn, rp.status, headers, ProxyBody::Shared(reader))
        }
        _ => {
            proxy.store.purge(&found.key);
            proxy.respond(txn, rp.status, headers, ProxyBody::Upstream(Box::new(rb)))
        }
    }
}

/// stale-while-revalidate: refresh `found` in the background (once per key).
fn background_refresh(
    proxy: &Arc<Proxy>,
    target: &Target,
    request: &HeaderMap,
    found: &Found,
    validators: caching::Validators,
    txn: &Txn,
) {
    let (client, arrival) = (txn.client, txn.arrival);
    {
        let mut busy = proxy.refreshing.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(found.key) {
            return;
        }
    }
    let proxy = Arc::clone(proxy);
    let target = target.clone();
    let mut headers = request.clone();
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    validators.apply(&mut headers);
    let entry = found.entry().clone();
    let hit = Arc::clone(&found.obj);
    let key = found.key;
    tokio::spawn(async move {
        let directives = RequestDirectives::parse(&headers);
        let rule = Rule::for_url(&proxy.config, &target.url);
        let request_time = unix_now();
        let fwd = Forwarding {
            method: &Method::GET,
            target: &target,
            headers: &headers,
            client,
            arrival,
            siblings_ok: false,
            body: None,
        };
        let mut hierarchy = Hierarchy::none();
        if let Ok(Fetched { resp, .. }) = proxy.forward_along(&fwd, &mut hierarchy).await {
            let exchange = Exchange {
                request_time,
                response_time: unix_now(),
            };
            if resp.status() == StatusCode::NOT_MODIFIED
                && caching::not_modified_matches(&entry.headers, resp.headers())
            {
                let freshened =
                    caching::freshen(&entry, resp.headers(), &directives, &rule, exchange);
                if let Ok(plan) = freshened.store {
                    let store = Arc::clone(&proxy.store);
                    let url = target.url.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        restore(&store, key, &url, &plan.head, plan.times, &hit)
                    })
                    .await;
                }
            } else if resp.status().is_success() {
                let (rp, rb) = resp.into_parts();
                if let Ok(plan) = caching::plan_store(
                    &Method::GET,
                    &directives,
                    rp.status,
                    &rp.headers,
                    &rule,
                    exchange,
                ) {
                    if plan.vary.is_empty() {
                        // No client reads it: the store alone paces it.
                        let (leader, _) = proxy.collapser.alone_body();
                        stream_and_store(&proxy, rb, key, &target.url, plan, rule, leader).await;
                    }
                }
            }
        }
        proxy
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    });
}

/// Reads an upstream body to the end, storing it under `key` and handing
/// every chunk to the readers of `leader`. Used for revalidations that
/// brought a new object.
async fn stream_and_store(
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

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The limits of every fetch under `config`: Squid's `read_ahead_gap`;
/// latecomers join while the body so far fits what the memory cache would
/// keep of an object (as Squid's collapsed readers read an object in
/// transit from memory); a reader holds the fetch up for `read_timeout` at
/// most.
fn fetch_window(config: &Config) -> Window {
    Window {
        gap: config.read_ahead_gap.value.max(1),
        join_limit: config
            .maximum_object_size_in_memory
            .value
            .min(config.maximum_object_size.value),
        stall: config.read_timeout.value,
    }
}

/// A miss: join the fetch of this key if one runs, else start one.
#[allow(clippy::too_many_arguments)]
async fn miss(
    proxy: Arc<Proxy>,
    mut txn: Txn,
    target: Target,
    parts: http::request::Parts,
    directives: RequestDirectives,
    rule: Rule,
    marker: Option<VaryMarker>,
    anything: bool,
) -> Response<ClientBody> {
    // Requests with credentials or cookies fetch alone: they may get a
    // response meant for them only.
    let private = parts.headers.contains_key(header::AUTHORIZATION)
        || parts.headers.contains_key(header::COOKIE);
    let fetch_key = match &marker {
        Some(m) => url_key(&m.variant_url(&target.url, &parts.headers)),
        None => url_key(&target.url),
    };
    let miss = Miss {
        key: (!private).then_some(fetch_key),
        url: &target.url,
        headers: &parts.headers,
        wait: proxy.timeouts.read,
    };
    let (client, arrival) = (txn.client, txn.arrival);
    let fetch = |leader| {
        FetchJob {
            proxy: Arc::clone(&proxy),
            client,
            arrival,
            target: target.clone(),
            request_headers: parts.headers.clone(),
            directives,
            rule,
            marker,
            leader,
        }
        .spawn();
    };
    let (answer, followed) = match proxy.collapser.forward(miss, fetch).await {
        collapse::Outcome::Lead(r) | collapse::Outcome::Uncollapsed(r) => (r, false),
        collapse::Outcome::GaveUp(r) => {
            txn.result = ResultCode::new(ResultTag::TcpMiss);
            (r, false)
        }
        collapse::Outcome::Follow(r) => (r, true),
        collapse::Outcome::Failed(f) => return proxy.error(txn, f.kind, &f.detail),
        collapse::Outcome::TimedOut { following } => {
            if following {
                txn.result = txn.result.collapsed();
                txn.result.tag = ResultTag::TcpHit;
            }
            let detail = "no response from upstream in time";
            return proxy.error(txn, ErrorKind::ReadTimeout, detail);
        }
    };
    let Answer { head, reader } = answer;
    if followed {
        txn.result = txn.result.collapsed();
        txn.result.tag = ResultTag::TcpHit;
    } else {
        txn.hierarchy = head.hierarchy.clone();
    }
    let mut headers = proxy.client_headers(&head.headers);
    let lookup = Some((anything, txn.local_port));
    proxy.cache_status(&mut headers, followed, lookup);
    proxy.respond(txn, head.status, headers, ProxyBody::Shared(reader))
}

/// One upstream fetch of a miss: streams the response to its readers while
/// storing it when it may be stored. Runs in a task of its own, so a client
/// that goes away neither stops the store write nor corrupts it.
struct FetchJob {
    proxy: Arc<Proxy>,
    client: IpAddr,
    arrival: Arrival,
    target: Target,
    request_headers: HeaderMap,
    directives: RequestDirectives,
    rule: Rule,
    marker: Option<VaryMarker>,
    /// Feeds the readers: the clients that share the fetch, or the one
    /// that fetches alone.
    leader: Leader,
}

impl FetchJob {
    /// Sends the GET upstream in a task of its own, so a client that
    /// leaves does not stop the fetch the others (and the store) wait on.
    fn spawn(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        let FetchJob {
            proxy,
            client,
            arrival,
            target,
            request_headers,
            directives,
            rule,
            marker,
            leader,
        } = self;
        let request_time = unix_now();
        // A client reload must not be answered by a sibling (squid-spec 3.1).
        let fwd = Forwarding {
            method: &Method::GET,
            target: &target,
            headers: &request_headers,
            client,
            arrival,
            siblings_ok: !directives.no_cache,
            body: None,
        };
        let mut hierarchy = Hierarchy::none();
        let fetched = proxy.forward_along(&fwd, &mut hierarchy).await;
        let Fetched {
            resp,
            proxy_only,
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
        // proxy-only: what this peer sends is delivered, not stored.
        let plan = caching::plan_store(
            &Method::GET,
            &directives,
            rp.status,
            &rp.headers,
            &rule,
            exchange,
        )
        .ok()
        .filter(|_| !proxy_only);
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

impl Proxy {
    /// Commits a fetched object and, when the memory cache takes it, puts
    /// it there at once (as Squid keeps a just-fetched object in memory),
    /// so its first hit is a memory hit. Variants stay in the store only:
    /// the memory cache holds objects under their URL's key.
    fn commit_and_remember(&self, writer: crate::store::Writer, url: &str, rule: &Rule) {
        let key = writer.key();
        // The whole entry fitting means its body fits too.
        let fits = self.hot.admits(writer.written());
        if let Err(e) = writer.commit() {
            tracing::debug!(url, "store commit: {e}");
            return;
        }
        if fits {
            self.remember(key, url, rule);
        }
    }

    /// Copies the stored object of `key` into the memory cache when it is
    /// the URL's own entry (not a variant) and fits.
    fn remember(&self, key: Key, url: &str, rule: &Rule) {
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
fn open_writer(
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
