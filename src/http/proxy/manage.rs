//! Cache manager requests on the http_ports: which requests are the manager's (and which name this cache without being the manager's), how its pages go out, and the sampling task behind its averages.
//!
//! A request is the manager's (answered here, after http_access, where
//! Squid's `manager` ACL applies) when it is:
//! - `cache_object://HOST/NAME` (squidclient, the Debian exporter; any host,
//!   as Squid), which [`crate::http::client_io`] hands over as `cache-object:`;
//! - origin-form `/squid-internal-mgr/NAME` on any port, as Squid 5 answers
//!   it;
//! - origin-form `/metrics` on a forward-proxy port: the page `metrics`
//!   (on an accelerator port `/metrics` belongs to the site);
//! - absolute-form `/squid-internal-mgr/NAME` or `/metrics`, any scheme,
//!   naming one of this cache's own listening sockets (see [`names_us`]),
//!   or origin-form on an accelerator port whose Host names another one.
//!
//! Other `/squid-internal-*` URLs (origin-form on any port, or
//! absolute-form naming this cache) are what Squid peers ask each other
//! for: the cache digest and the NetDB exchange ([`Internal`]), answered
//! here as a Squid 5.7 answers: the digest built from the store (see
//! [`crate::peers::store_digest`]), and an empty NetDB.
//!
//! Any other such request (or a CONNECT naming one of them) would be
//! forwarded to this cache itself: the inner request would come from this
//! host and pass `allow localhost manager` whatever the real client, so it
//! is a forwarding loop, refused without being sent.
//!
//! Its URL (for ACLs and access.log) is the `cache_object://` URL as sent,
//! or `http://VISIBLE_HOSTNAME:PORT/squid-internal-mgr/NAME`, so `/metrics`
//! is logged, and access-checked, as that manager URL; a password in it is
//! masked (Squid logs it in the clear). Pages are logged as Squid logs
//! them: `TCP_MISS/200 ... HIER_NONE/- text/plain`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use tokio::sync::watch;

use super::ourselves::names_us;
use super::{ClientBody, ConnInfo, ErrorKind, Proxy, ProxyBody, ResultTag, Target, Txn};
use crate::access_log::mask_manager_password;
use crate::http::target::{BadTarget, PortKind};
use crate::mgr::{self, Page, Sources, SAMPLE_PERIOD};

const PREFIX: &str = "/squid-internal-mgr/";
/// Squid's internal URLs' path prefix (internalCheck).
const INTERNAL: &str = "/squid-internal-";
const STORE_DIGEST: &str = "/squid-internal-periodic/store_digest";
const NETDB: &str = "/squid-internal-dynamic/netdb";

/// A `/squid-internal-*` object other than the manager's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Internal {
    /// The cache digest a Squid peer fetches (squid-spec 5.3); with
    /// `digest_generation off`, 404, as a Squid that has not built one.
    StoreDigest,
    /// The NetDB exchange: 200 with no records, as a Squid whose NetDB is
    /// empty (cuttle measures no ICMP RTTs to offer).
    NetDb,
    /// Anything else: Squid's 404 ERR_INVALID_REQ.
    Unknown,
}

impl Internal {
    fn of_path(path_and_query: &str) -> Option<Internal> {
        if !path_and_query.starts_with(INTERNAL) {
            return None;
        }
        let path = path_and_query.split('?').next().unwrap_or_default();
        Some(match path {
            STORE_DIGEST => Internal::StoreDigest,
            NETDB => Internal::NetDb,
            _ => Internal::Unknown,
        })
    }
}
/// Squid's default port for `cache_object://` URLs.
const CACHE_OBJECT_PORT: u16 = 3128;

/// What a manager request asks for: the part of its path that names the
/// page (`NAME[@PASSWORD][?params]`), and whether it came as `cache_object:`.
pub(super) struct MgrPage {
    path: String,
    cache_object: bool,
}

/// What a request is, as far as this cache itself is concerned.
pub(super) enum Addressed {
    /// A cache manager request: answered here, after http_access.
    Manager(Target, MgrPage),
    /// A Squid internal object: answered here, after http_access.
    Internal(Target, Internal),
    /// Names one of this cache's own listening sockets but is not for the
    /// manager: sending it on would send it back here.
    Ourselves(Target),
    /// Anything else: to serve from the cache or forward.
    Elsewhere(Target),
}

/// Sorts `method uri` out: the manager's, one to this cache itself, or
/// one to serve or forward (Err: no usable target).
pub(super) async fn classify(
    proxy: &Proxy,
    conn: &ConnInfo,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Addressed, BadTarget> {
    if let Some((target, page)) = recognise(proxy, conn, uri) {
        return Ok(Addressed::Manager(target, page));
    }
    if uri.scheme().is_none() && method != Method::CONNECT {
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        if let Some(object) = Internal::of_path(path_and_query) {
            return Ok(Addressed::Internal(
                internal_target(proxy, conn.local.port(), path_and_query),
                object,
            ));
        }
    }
    let target = Target::of_request(method, uri, headers, &conn.kind)?;
    // Origin-form on an accelerator port names the site, which may well be
    // this cache on that port (its cache_peer serves it); a site on another
    // of this cache's ports is this cache.
    let absolute = method == Method::CONNECT || uri.scheme().is_some();
    let may_be_us = absolute || target.port != conn.local.port();
    if !may_be_us || !names_us(proxy, &target).await {
        return Ok(Addressed::Elsewhere(target));
    }
    if method != Method::CONNECT {
        if let Some(rest) = manager_page(&target.path_and_query) {
            return Ok(Addressed::Manager(
                manager_target(proxy, target.port, &rest),
                MgrPage {
                    path: rest,
                    cache_object: false,
                },
            ));
        }
        if let Some(object) = Internal::of_path(&target.path_and_query) {
            return Ok(Addressed::Internal(
                internal_target(proxy, target.port, &target.path_and_query),
                object,
            ));
        }
    }
    Ok(Addressed::Ourselves(target))
}

/// The manager's target and page for the forms that need no look-up:
/// `cache_object:` and origin-form.
fn recognise(proxy: &Proxy, conn: &ConnInfo, uri: &Uri) -> Option<(Target, MgrPage)> {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        if scheme.eq_ignore_ascii_case("cache-object")
            || scheme.eq_ignore_ascii_case("cache_object")
        {
            // squidclient puts the password in the URL (`NAME@PASSWORD`).
            let url =
                mask_manager_password(&format!("cache_object://{}{path_and_query}", authority))
                    .into_owned();
            let shown = url
                .get("cache_object://".len() + authority.as_str().len()..)
                .unwrap_or("/")
                .to_string();
            let target = Target {
                scheme: "cache_object".into(),
                host: authority.host().to_ascii_lowercase(),
                port: authority.port_u16().unwrap_or(CACHE_OBJECT_PORT),
                url,
                path_and_query: shown,
            };
            let page = MgrPage {
                path: path_and_query.trim_start_matches('/').to_string(),
                cache_object: true,
            };
            return Some((target, page));
        }
    }
    if uri.scheme().is_some() {
        return None;
    }
    let rest = match path_and_query.strip_prefix(PREFIX) {
        Some(rest) => rest.to_string(),
        None if matches!(conn.kind, PortKind::Forward) => manager_page(path_and_query)?,
        None => return None,
    };
    let target = manager_target(proxy, conn.local.port(), &rest);
    let page = MgrPage {
        path: rest,
        cache_object: false,
    };
    Some((target, page))
}

/// The page a manager path asks for (`NAME[@PASSWORD][?params]`):
/// `/squid-internal-mgr/NAME...`, or `/metrics[?params]` for `metrics`.
fn manager_page(path_and_query: &str) -> Option<String> {
    if let Some(rest) = path_and_query.strip_prefix(PREFIX) {
        return Some(rest.to_string());
    }
    let query = path_and_query.strip_prefix("/metrics")?;
    (query.is_empty() || query.starts_with('?')).then(|| format!("metrics{query}"))
}

/// `http://VISIBLE_HOSTNAME:PORT/squid-internal-mgr/PAGE`, the password in
/// PAGE masked.
fn manager_target(proxy: &Proxy, port: u16, page: &str) -> Target {
    let origin = format!("http://{}:{port}", proxy.name);
    let url = mask_manager_password(&format!("{origin}{PREFIX}{page}")).into_owned();
    let path_and_query = url.get(origin.len()..).unwrap_or(PREFIX).to_string();
    Target {
        scheme: "http".into(),
        host: proxy.name.to_ascii_lowercase(),
        port,
        url,
        path_and_query,
    }
}

/// `http://VISIBLE_HOSTNAME:PORT/squid-internal-...`, as Squid rewrites
/// and logs internal URLs.
fn internal_target(proxy: &Proxy, port: u16, path_and_query: &str) -> Target {
    Target {
        scheme: "http".into(),
        host: proxy.name.to_ascii_lowercase(),
        port,
        url: format!("http://{}:{port}{path_and_query}", proxy.name),
        path_and_query: path_and_query.to_string(),
    }
}

/// How long the digest's mask waits after its header has gone out, so that
/// Squid reads the header alone and the mask lands unshifted (squid-spec
/// 5.5: 20 ms and 300 ms were verified; digests are fetched hourly).
const DIGEST_MASK_PAUSE: Duration = Duration::from_millis(100);

/// Answers a Squid internal object (after http_access allowed it), as
/// Squid 5.7 does: the digest (see [`answer_digest`]) or, with
/// `digest_generation off`, the 404 of a Squid with no digest built; an
/// empty NetDB (seen); logged `TCP_MISS/STATUS ... HIER_NONE/-`.
pub(super) fn answer_internal(
    proxy: &Proxy,
    txn: Txn,
    target: &Target,
    object: Internal,
) -> Response<ClientBody> {
    if object == Internal::StoreDigest && proxy.config.digest_generation.value {
        return answer_digest(proxy, txn);
    }
    let txn = txn.with(ResultTag::TcpMiss);
    let (status, body) = match object {
        Internal::StoreDigest => (
            StatusCode::NOT_FOUND,
            "This cache is currently building its digest.\n",
        ),
        Internal::NetDb => (StatusCode::OK, ""),
        Internal::Unknown => {
            return proxy.error(txn, ErrorKind::NoSuchInternalObject, &target.url);
        }
    };
    let mut headers = HeaderMap::new();
    if !body.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    if let Ok(now) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        headers.insert(header::LAST_MODIFIED, now);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    proxy.cache_status(&mut headers, false, Some((false, txn.local_port)));
    proxy.respond(txn, status, headers, ProxyBody::full(body))
}

/// The store digest as Squid serves it: `200 Cache Digest OK`,
/// `application/cache-digest`, Last-Modified at the build, Expires at the
/// next rebuild (Squid's peers fetch again after it), logged
/// `TCP_HIT/200 ... HIER_NONE/- application/cache-digest`. The mask goes
/// out [`DIGEST_MASK_PAUSE`] after the header (squid-spec 5.5).
fn answer_digest(proxy: &Proxy, txn: Txn) -> Response<ClientBody> {
    let now = SystemTime::now();
    // A due rebuild walks the whole index: off the async worker.
    let served = tokio::task::block_in_place(|| {
        proxy.store_digest.current(&proxy.store, &proxy.config, now)
    });
    let txn = txn.with(ResultTag::TcpHit);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/cache-digest"),
    );
    for (name, at) in [
        (header::DATE, now),
        (header::LAST_MODIFIED, served.built),
        (header::EXPIRES, served.expires),
    ] {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
            headers.insert(name, v);
        }
    }
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(served.bytes.len()),
    );
    proxy.cache_status(&mut headers, true, Some((true, txn.local_port)));
    let body = ProxyBody::paced(served.header_bytes(), DIGEST_MASK_PAUSE, served.mask());
    let mut resp = proxy.respond(txn, StatusCode::OK, headers, body);
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"Cache Digest OK"));
    resp
}

/// Builds the store digest at start (the index is loaded by then) and
/// again each `digest_rebuild_period`, so no peer waits for a build; a
/// request finding it due rebuilds it too. Runs until aborted.
pub async fn digest_builder(proxy: watch::Receiver<Arc<Proxy>>) {
    loop {
        let current = Arc::clone(&proxy.borrow());
        let period = current.config.digest_rebuild_period.value;
        if current.config.digest_generation.value {
            let served = tokio::task::block_in_place(|| {
                current
                    .store_digest
                    .current(&current.store, &current.config, SystemTime::now())
            });
            let left = served
                .expires
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(left.max(Duration::from_secs(1))).await;
        } else {
            tokio::time::sleep(period).await;
        }
    }
}

/// What is held in memory: (objects, bytes, bytes allowed). With no
/// cache_dir that is the memory store (its slots in use), else the memory
/// cache.
fn memory_usage(proxy: &Proxy) -> (usize, u64, u64) {
    if !proxy.store.is_memory() {
        return proxy.hot.usage();
    }
    proxy
        .store
        .usage()
        .iter()
        .fold((0, 0, 0), |(n, used, all), d| {
            let slot = u64::from(d.slot_size);
            (
                n + d.entries,
                used + u64::from(d.slots - d.free_slots) * slot,
                all + u64::from(d.slots) * slot,
            )
        })
}

/// The live parts of `proxy` the manager reads; `memory_keys` only when
/// the page lists them.
fn with_sources<T>(
    proxy: &Proxy,
    memory_keys: bool,
    connections: Option<&(dyn Fn(IpAddr) -> usize + Sync)>,
    f: impl FnOnce(&Sources<'_>) -> T,
) -> T {
    let icp = proxy.neighbours.icp_counters();
    let htcp = proxy.neighbours.htcp_counters();
    let sources = Sources {
        config: &proxy.config,
        store: &proxy.store,
        peers: &proxy.neighbours.table,
        icp_client: icp.as_deref(),
        htcp_server: &proxy.mgr.htcp_server,
        htcp_client: htcp.as_deref(),
        upstream: proxy.upstream.counters(),
        memory: memory_usage(proxy),
        memory_keys: match (memory_keys, proxy.store.is_memory()) {
            (false, _) => Vec::new(),
            (true, false) => proxy.hot.keys(),
            (true, true) => proxy.store.keys(),
        },
        name: &proxy.name,
        store_digest: Some(&proxy.store_digest),
        connections,
        share: Some(&proxy.sharing),
    };
    f(&sources)
}

/// Sends the page (after http_access allowed the request).
pub(super) fn answer(
    proxy: &Proxy,
    txn: Txn,
    target: &Target,
    page: &MgrPage,
    request: &HeaderMap,
    per_client: &crate::http::server::PerClient,
) -> Response<ClientBody> {
    let authorization = request
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let req = mgr::Request::parse(&page.path, authorization);
    let txn = txn.with(ResultTag::TcpMiss);
    // Pages read /proc and the store (`objects` reads every entry's first
    // slot): off the async worker.
    let answer = tokio::task::block_in_place(|| {
        let connections = |ip: IpAddr| per_client.open_from(ip);
        with_sources(proxy, req.action == "vm_objects", Some(&connections), |s| {
            proxy.mgr.page(&req, s)
        })
    });
    let answer = match answer {
        // Its body is the proxy's: the manager knows only its access rules.
        Page::Ok { content_type, .. } if req.action == "hit_metering" => Page::Ok {
            content_type,
            body: proxy.hit_metering_page(),
        },
        Page::Ok {
            content_type,
            mut body,
        } if req.action == "metrics" => {
            body.push_str(&proxy.hit_metering_metrics());
            Page::Ok { content_type, body }
        }
        other => other,
    };
    let mut resp = match answer {
        Page::Ok { content_type, body } => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            let now = httpdate::fmt_http_date(SystemTime::now());
            if let Ok(v) = HeaderValue::from_str(&now) {
                // As Squid: the page is already stale.
                headers.insert(header::EXPIRES, v.clone());
                headers.insert(header::LAST_MODIFIED, v);
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            proxy.cache_status(&mut headers, false, Some((false, txn.local_port)));
            proxy.respond(txn, StatusCode::OK, headers, ProxyBody::full(body))
        }
        Page::Unknown => proxy.error(txn, ErrorKind::NoSuchMgrPage, &target.url),
        Page::NeedsPassword { realm } => {
            let mut resp = proxy.error(txn, ErrorKind::CacheMgrAccessDenied, realm);
            if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            resp
        }
    };
    if page.cache_object {
        // Squid closes after a cache_object answer; its tools read to the end.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Samples every counter every [`SAMPLE_PERIOD`] (the first at once) for
/// the 5- and 60-minute averages and the status page's charts. Runs until
/// aborted.
pub async fn sampler(proxy: watch::Receiver<Arc<Proxy>>) {
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = Arc::clone(&proxy.borrow());
        tokio::task::block_in_place(|| {
            with_sources(&current, false, None, |s| current.mgr.record(s));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_paths() {
        assert_eq!(manager_page("/metrics").as_deref(), Some("metrics"));
        assert_eq!(manager_page("/metrics?a=1").as_deref(), Some("metrics?a=1"));
        assert_eq!(
            manager_page("/squid-internal-mgr/config@pw").as_deref(),
            Some("config@pw")
        );
        for other in [
            "/metricsx",
            "/metrics/x",
            "/x/metrics",
            "/squid-internal-mgr",
        ] {
            assert_eq!(manager_page(other), None, "{other}");
        }
    }
}
