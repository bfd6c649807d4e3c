//! Cache manager requests on the http_ports: which requests are the manager's, how its pages go out, and the sampling task behind its averages.
//!
//! A request is the manager's (answered here, after http_access, where
//! Squid's `manager` ACL applies) when it is:
//! - `cache_object://HOST/NAME` (squidclient, the Debian exporter; any host,
//!   as Squid), which [`crate::http::client_io`] hands over as `cache-object:`;
//! - origin-form `/squid-internal-mgr/NAME` on any port, as Squid 5 answers
//!   it; absolute-form `http://HOST:PORT/squid-internal-mgr/NAME` when HOST
//!   is this cache (visible or unique hostname, or the address the client
//!   connected to) and PORT the port it connected to;
//! - origin-form `/metrics` on a forward-proxy port: the page `metrics`
//!   (on an accelerator port `/metrics` belongs to the site).
//!
//! Its URL (for ACLs and access.log) is the `cache_object://` URL as sent
//! (a password in it masked: Squid logs it in the clear), or `http://VISIBLE_HOSTNAME:PORT/squid-internal-mgr/NAME`, so `/metrics`
//! is logged, and access-checked, as that manager URL. Pages are logged as
//! Squid logs them: `TCP_MISS/200 ... HIER_NONE/- text/plain`.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{Response, StatusCode, Uri};
use tokio::sync::watch;

use super::{ClientBody, ConnInfo, ErrorKind, Proxy, ProxyBody, ResultTag, Target, Txn};
use crate::http::target::PortKind;
use crate::mgr::{self, Page, Sources, SAMPLE_PERIOD};

const PREFIX: &str = "/squid-internal-mgr/";
/// Squid's default port for `cache_object://` URLs.
const CACHE_OBJECT_PORT: u16 = 3128;

/// What a manager request asks for: the part of its path that names the
/// page (`NAME[@PASSWORD][?params]`), and whether it came as `cache_object:`.
pub(super) struct MgrPage {
    path: String,
    cache_object: bool,
}

/// The manager's target and page, when the request is for the manager.
pub(super) fn recognise(proxy: &Proxy, conn: &ConnInfo, uri: &Uri) -> Option<(Target, MgrPage)> {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        if scheme.eq_ignore_ascii_case("cache-object")
            || scheme.eq_ignore_ascii_case("cache_object")
        {
            // squidclient puts the password in the URL (`NAME@PASSWORD`);
            // Squid logs it as is, cuttle masks it.
            let shown = match path_and_query.split_once('@') {
                Some((name, _)) => format!("{name}@XXXXXXXX"),
                None => path_and_query.to_string(),
            };
            let target = Target {
                scheme: "cache_object".into(),
                host: authority.host().to_ascii_lowercase(),
                port: authority.port_u16().unwrap_or(CACHE_OBJECT_PORT),
                url: format!("cache_object://{}{shown}", authority.as_str()),
                path_and_query: shown,
            };
            let page = MgrPage {
                path: path_and_query.trim_start_matches('/').to_string(),
                cache_object: true,
            };
            return Some((target, page));
        }
    }
    let absolute = uri.scheme().is_some();
    if absolute && !uri.authority().is_some_and(|a| is_us(proxy, conn, a)) {
        return None;
    }
    let rest = match path_and_query.strip_prefix(PREFIX) {
        Some(rest) => rest.to_string(),
        None if !absolute && matches!(conn.kind, PortKind::Forward) => {
            let query = path_and_query.strip_prefix("/metrics")?;
            if !(query.is_empty() || query.starts_with('?')) {
                return None;
            }
            format!("metrics{query}")
        }
        None => return None,
    };
    let port = conn.local.port();
    let path_and_query = format!("{PREFIX}{rest}");
    let target = Target {
        scheme: "http".into(),
        host: proxy.name.to_ascii_lowercase(),
        port,
        url: format!("http://{}:{port}{path_and_query}", proxy.name),
        path_and_query,
    };
    let page = MgrPage {
        path: rest,
        cache_object: false,
    };
    Some((target, page))
}

/// Whether an absolute URL's authority names this cache on the port the
/// client connected to.
fn is_us(proxy: &Proxy, conn: &ConnInfo, authority: &Authority) -> bool {
    let port = authority.port_u16().unwrap_or(80);
    if port != conn.local.port() {
        return false;
    }
    let host = authority.host().trim_matches(['[', ']']);
    let unique = proxy.config.unique_hostname.value.as_deref();
    host.eq_ignore_ascii_case(&proxy.name)
        || unique.is_some_and(|u| host.eq_ignore_ascii_case(u))
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == conn.local.ip())
}

/// The live parts of `proxy` the manager reads; `memory_keys` only when
/// the page lists them.
fn with_sources<T>(proxy: &Proxy, memory_keys: bool, f: impl FnOnce(&Sources<'_>) -> T) -> T {
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
        memory: proxy.hot.usage(),
        memory_keys: if memory_keys {
            proxy.hot.keys()
        } else {
            Vec::new()
        },
        name: &proxy.name,
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
) -> Response<ClientBody> {
    let authorization = request
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let req = mgr::Request::parse(&page.path, authorization);
    let txn = txn.with(ResultTag::TcpMiss);
    // Pages read /proc and the store (`objects` reads every entry's first
    // slot): off the async worker.
    let answer = tokio::task::block_in_place(|| {
        with_sources(proxy, req.action == "vm_objects", |s| {
            proxy.mgr.page(&req, s)
        })
    });
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
            with_sources(&current, false, |s| current.mgr.record(s));
        });
    }
}
