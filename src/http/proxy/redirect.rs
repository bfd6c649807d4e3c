//! Redirect to the holder (issue 19; README "Redirect to the holder"): on
//! an accelerator port, a GET miss that a sibling holds (ICP or HTCP HIT,
//! or its Cache Digest) is answered with `302 Found` to the same path on
//! the sibling's `public-url`, when `holder_redirect` allows it and the
//! object is not known to be under `holder_redirect_min_size`. The client
//! then fetches from the holder: one proxy, not two, carries the bytes.
//!
//! The Location carries [`MARKER`] as its last query parameter (unless the
//! peer is `no-redirect-marker`, e.g. a Squid, which never redirects). An
//! accelerator port strips it before anything else sees the URL (so the
//! cache key, the logs and the origin see the plain URL), and a request
//! that carried it is never redirected again: a holder that lost the
//! object fetches it instead, so no chain forms.
//!
//! With `peer_store_threshold` N, a URL is redirected while this cache
//! has seen it at most N times (redirects counted); past N the miss is
//! fetched from the nearest holder and stored, as the Worldnet study's
//! proxies forward a request until its document proves popular.
//!
//! The peer query made to decide is not repeated when the request is not
//! redirected: its sources are handed to the fetch that follows
//! ([`Handoff`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};

use crate::access;
use crate::access_log::{Hierarchy, ResultCode, ResultTag};
use crate::caching::RequestDirectives;
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::target::{PortKind, Target};
use crate::peers::holder;
use crate::store::Key;

use super::admit::Arrival;
use super::forward::{Forwarding, Route};
use super::headers::content_length;
use super::txn::Txn;
use super::Proxy;

/// The query parameter cuttle appends to the URL it redirects to, with
/// the site (host[:port]) the request was for as its value: a holder
/// recognises the request as redirected by it, and takes the site from it
/// rather than from the Host header (which names the holder's public
/// host), so its cache key is the URL the holder was asked about. Unlikely
/// to clash with a site's own parameters.
pub(super) const MARKER: &str = "cuttle-redirected";

/// `path_and_query` without its trailing [`MARKER`] parameter, and the
/// parameter's value; `None` when it has none.
fn split_marker(path_and_query: &str) -> Option<(&str, &str)> {
    let at = path_and_query.rfind(MARKER)?;
    let (before, after) = path_and_query.split_at(at);
    let site = after.get(MARKER.len()..)?.strip_prefix('=')?;
    let plain = before
        .strip_suffix('?')
        .or_else(|| before.strip_suffix('&'))?;
    (!site.contains('&')).then_some((plain, site))
}

/// The target of a request that arrived on an accelerator port redirected
/// by a sibling (its URL carries the marker): the marker removed, the
/// site taken from it (as a Host header would give it; on a `no-vhost`
/// port defaultsite still decides). So the cache key, the ACLs, the log
/// and the server see the plain URL. Any other request's `target` as is.
pub(super) fn unmarked(target: Target, method: &Method, uri: &Uri, kind: &PortKind) -> Target {
    // Every request passes here, hits too: most have no query at all.
    let Some(query) = uri.query() else {
        return target;
    };
    if !query.contains(MARKER) || !matches!(kind, PortKind::Accel { .. }) || uri.scheme().is_some()
    {
        return target;
    }
    let Some((plain, site)) = uri
        .path_and_query()
        .and_then(|pq| split_marker(pq.as_str()))
    else {
        return target;
    };
    let mut headers = HeaderMap::new();
    if let Ok(host) = HeaderValue::from_str(site) {
        headers.insert(header::HOST, host);
    }
    let rebuilt = plain
        .parse::<Uri>()
        .ok()
        .and_then(|plain| Target::of_request(method, &plain, &headers, kind).ok());
    rebuilt.unwrap_or_else(|| {
        // An unusable site: keep the Host header's, without the marker.
        let cut = target.path_and_query.len().saturating_sub(plain.len());
        let mut target = target;
        target.path_and_query.truncate(plain.len());
        let keep = target.url.len().saturating_sub(cut);
        target.url.truncate(keep);
        target
    })
}

/// The request line carried the marker: it was redirected here.
fn marked(uri: &Uri) -> bool {
    uri.path_and_query()
        .is_some_and(|pq| split_marker(pq.as_str()).is_some())
}

/// Requests never redirected besides non-GETs and marked ones (the rule,
/// [`holder::may_redirect`], says so): Range requests, credentials
/// (Authorization, Proxy-Authorization, and Cookie: the client's cookies
/// are for the site's host name, not the holder's) and `only-if-cached`
/// (the client wants this cache's answer).
fn excluded(parts: &http::request::Parts) -> bool {
    let h = &parts.headers;
    h.contains_key(header::RANGE)
        || h.contains_key(header::AUTHORIZATION)
        || h.contains_key(header::PROXY_AUTHORIZATION)
        || h.contains_key(header::COOKIE)
        || RequestDirectives::parse(h).only_if_cached
}

/// Sizes of objects this cache has seen headers of (a HEAD it forwarded,
/// a fetch it relayed), for the size floor: a fixed table, one 64-bit word
/// per slot (a 24-bit tag of the key and a 40-bit size), so no allocation
/// per URL and no lock. A collision forgets the older size, which only
/// makes that object's size unknown again.
pub(super) struct SizesSeen {
    slots: Box<[AtomicU64]>,
}

const SIZE_SLOTS: usize = 4096;
const SIZE_BITS: u32 = 40;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;

impl Default for SizesSeen {
    fn default() -> Self {
        SizesSeen {
            slots: (0..SIZE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl SizesSeen {
    /// (slot, tag) of `key`; the tag is never 0, so an empty slot matches
    /// nothing.
    fn place(key: &Key) -> (usize, u64) {
        let [a, b, c, d, e, ..] = *key;
        let slot = usize::from(u16::from_le_bytes([a, b])) % SIZE_SLOTS;
        let tag = u64::from(u32::from_le_bytes([c, d, e, 0])).max(1);
        (slot, tag)
    }

    /// Notes the size `headers` announce (Content-Length), when they do.
    pub(super) fn note(&self, key: &Key, headers: &HeaderMap) {
        let Some(size) = content_length(headers).filter(|s| *s <= SIZE_MASK) else {
            return;
        };
        let (slot, tag) = SizesSeen::place(key);
        if let Some(s) = self.slots.get(slot) {
            s.store(tag << SIZE_BITS | size, Ordering::Relaxed);
        }
    }

    /// The size last seen for `key`, if remembered.
    pub(super) fn get(&self, key: &Key) -> Option<u64> {
        let (slot, tag) = SizesSeen::place(key);
        let word = self.slots.get(slot)?.load(Ordering::Relaxed);
        (word >> SIZE_BITS == tag).then_some(word & SIZE_MASK)
    }
}

/// Sources selected (peers asked) for a request that was then not
/// redirected, waiting for the fetch that follows, so the peers are not
/// asked twice. Few and short-lived: the fetch starts at once.
#[derive(Default)]
pub(super) struct Handoff {
    pending: Mutex<Vec<Pending>>,
    /// Set once anything was handed off: until then (no holder_redirect)
    /// a fetch takes no lock to find nothing.
    used: AtomicBool,
}

/// A selection and what it was made for: a fetch takes it only for a
/// request selection would treat the same (same URL, client and port, a
/// GET without credentials), whichever of such requests made it.
struct Pending {
    url: String,
    client: IpAddr,
    arrival: Arrival,
    at: Instant,
    routes: Vec<Route>,
}

/// A handed-off selection older than this is not used (peers' answers age).
const HANDOFF_TTL: Duration = Duration::from_secs(2);
/// At most this many wait (a request that joined another's fetch leaves
/// its selection unused).
const HANDOFF_MAX: usize = 256;

impl Handoff {
    fn put(&self, fwd: &Forwarding<'_>, routes: Vec<Route>) {
        self.used.store(true, Ordering::Relaxed);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pending.retain(|p| now.duration_since(p.at) < HANDOFF_TTL);
        if pending.len() >= HANDOFF_MAX {
            pending.remove(0);
        }
        pending.push(Pending {
            url: fwd.target.url.clone(),
            client: fwd.client,
            arrival: fwd.arrival,
            at: now,
            routes,
        });
    }

    /// The sources selected for `fwd` by [`Proxy::redirect_to_holder`], if
    /// it is the GET miss that selection was made for.
    pub(super) fn take(&self, fwd: &Forwarding<'_>) -> Option<Vec<Route>> {
        if !self.used.load(Ordering::Relaxed)
            || fwd.method != Method::GET
            || !fwd.siblings_ok
            || fwd.body.is_some()
            || fwd.headers.contains_key(header::AUTHORIZATION)
        {
            return None;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            return None;
        }
        let now = Instant::now();
        let at = pending.iter().position(|p| {
            p.url == fwd.target.url
                && p.client == fwd.client
                && p.arrival == fwd.arrival
                && now.duration_since(p.at) < HANDOFF_TTL
        })?;
        Some(pending.swap_remove(at).routes)
    }
}

/// What redirecting keeps: the sizes seen (across reloads) and the
/// selections handed to fetches (per configuration: their peer ids are
/// the peer table's).
#[derive(Default)]
pub(super) struct Redirects {
    pub(super) sizes: Arc<SizesSeen>,
    pub(super) handoff: Handoff,
}

impl Redirects {
    /// For the next configuration: the sizes seen, no selections.
    pub(super) fn reloaded(&self) -> Redirects {
        Redirects {
            sizes: Arc::clone(&self.sizes),
            handoff: Handoff::default(),
        }
    }
}

impl Proxy {
    /// Remembers the size of a 200 response for `url` for the size floor
    /// (when redirects are configured).
    pub(super) fn note_size(&self, url: &str, status: StatusCode, headers: &HeaderMap) {
        if status == StatusCode::OK && self.config.holder_redirect_min_size.value > 0 {
            self.redirects.sizes.note(&super::url_key(url), headers);
        }
    }

    /// The 302 to the holder for a GET miss on an accelerator port, when
    /// every condition holds (see the module documentation); else `txn`
    /// back, to go on with the miss as before.
    pub(super) async fn redirect_to_holder(
        &self,
        mut txn: Txn,
        target: &Target,
        parts: &http::request::Parts,
        siblings_ok: bool,
    ) -> Result<Response<ClientBody>, Txn> {
        let config = &self.config;
        // Most configurations redirect nothing: no header parsed for them.
        if config.holder_redirect.is_empty() {
            return Err(txn);
        }
        let key = super::url_key(&target.url);
        let ask = holder::Ask {
            accelerated: txn.arrival.accelerated(),
            get: parts.method == Method::GET,
            excluded: excluded(parts),
            marked: marked(&parts.uri),
            siblings_ok,
            size_seen: (config.holder_redirect_min_size.value > 0)
                .then(|| self.redirects.sizes.get(&key))
                .flatten(),
            // This request included; it is counted below if redirected,
            // else by the fetch that follows (once either way).
            references: (config.peer_store_threshold.value.count > 0).then(|| {
                self.ref_counts
                    .estimate(&key, Instant::now())
                    .saturating_add(1)
            }),
        };
        let allowed = || {
            let req = txn.arrival.acl_request(txn.client, "GET", target);
            let details = access::Details {
                request_headers: Some(&parts.headers),
                ..access::Details::default()
            };
            access::check_with(&config.holder_redirect, config, &req, &details).allowed()
        };
        if !holder::may_redirect(config, &ask, allowed) {
            return Err(txn);
        }
        let fwd = Forwarding {
            method: &Method::GET,
            target,
            headers: &parts.headers,
            client: txn.client,
            arrival: txn.arrival,
            siblings_ok,
            body: None,
            share_offer: false,
        };
        let routes = self.routes(&fwd).await;
        let holder = routes.first().and_then(|r| {
            let peer = self.neighbours.table.get(r.source.peer?)?;
            let public_url = holder::holder_url(r.source.code, peer.config.public_url.as_deref())?;
            Some((r.source.code, peer, public_url))
        });
        let Some((code, peer, public_url)) = holder else {
            self.redirects.handoff.put(&fwd, routes);
            return Err(txn);
        };
        let mut location = format!("{public_url}{}", target.path_and_query);
        if !peer.config.no_redirect_marker {
            let sep = if target.path_and_query.contains('?') {
                '&'
            } else {
                '?'
            };
            location.push(sep);
            location.push_str(MARKER);
            location.push('=');
            location.push_str(&target.host_header());
        }
        let Ok(location) = HeaderValue::from_str(&location) else {
            self.redirects.handoff.put(&fwd, routes);
            return Err(txn);
        };
        let holder_ip = peer
            .icp_addr
            .map_or_else(|| peer.config.host.clone(), |a| a.ip().to_string());
        // A redirected reference counts toward peer_store_threshold: past
        // N, the next is fetched and stored (the study's forwarding rule).
        self.note_reference(&target.url);
        txn.result = ResultCode::new(ResultTag::TcpMiss);
        txn.hierarchy = Hierarchy::new(code, Some(holder_ip));
        self.mgr.stats.note_holder_redirect();
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, location);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        // Where the object is now, not a lasting answer.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(self.respond(txn, StatusCode::FOUND, headers, ProxyBody::Empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accel() -> PortKind {
        PortKind::Accel {
            defaultsite: None,
            vhost: true,
            vport: None,
            allow_direct: false,
            https: false,
        }
    }

    /// The target of `GET path_and_query` with Host `host` on a vhost
    /// accelerator port, after [`unmarked`].
    fn arrived(host: &str, path_and_query: &str) -> Target {
        let uri: Uri = path_and_query.parse().expect("uri");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("host"));
        let target = Target::of_request(&Method::GET, &uri, &headers, &accel()).expect("target");
        unmarked(target, &Method::GET, &uri, &accel())
    }

    #[test]
    fn the_marker_gives_the_site_and_leaves_the_plain_url() {
        for (given, url) in [
            ("/a?cuttle-redirected=site.test", "http://site.test/a"),
            (
                "/a?x=1&cuttle-redirected=site.test:8080",
                "http://site.test:8080/a?x=1",
            ),
            (
                "/a?x-cuttle-redirected=site.test",
                "http://b.test/a?x-cuttle-redirected=site.test",
            ),
            (
                "/a?cuttle-redirected=site.test&x=1",
                "http://b.test/a?cuttle-redirected=site.test&x=1",
            ),
            ("/a?cuttle-redirected", "http://b.test/a?cuttle-redirected"),
            ("/a", "http://b.test/a"),
        ] {
            assert_eq!(arrived("b.test", given).url, url, "{given}");
        }
        // An unusable site: the Host header's, the marker still removed.
        for given in ["/a?cuttle-redirected=x/y", "/a?cuttle-redirected="] {
            let t = arrived("b.test", given);
            assert_eq!(
                (t.url.as_str(), t.path_and_query.as_str()),
                ("http://b.test/a", "/a")
            );
        }
    }

    #[test]
    fn a_handed_off_selection_goes_to_a_request_selection_treats_the_same() {
        use super::super::admit::PortUse;
        use crate::peers::select::Source;
        let target = arrived("site.test", "/a");
        let arrival = Arrival {
            kind: PortUse::Accel {
                allow_direct: false,
            },
            local: "127.0.0.1:80".parse().expect("addr"),
            port_name: "",
        };
        let plain = HeaderMap::new();
        let mut with_auth = HeaderMap::new();
        with_auth.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpw"),
        );
        let fwd = |headers, client: [u8; 4]| Forwarding {
            method: &Method::GET,
            target: &target,
            headers,
            client: IpAddr::from(client),
            arrival,
            siblings_ok: true,
            body: None,
            share_offer: false,
        };
        let handoff = Handoff::default();
        assert!(handoff.take(&fwd(&plain, [10, 0, 0, 1])).is_none());
        let routes = vec![Route {
            source: Source::direct("origin.test", 80),
            local: None,
            timed_out: false,
            url: target.url.clone(),
        }];
        handoff.put(&fwd(&plain, [10, 0, 0, 1]), routes);
        // Credentials make a request non-hierarchical; another client may
        // be sent elsewhere by ACLs.
        assert!(handoff.take(&fwd(&with_auth, [10, 0, 0, 1])).is_none());
        assert!(handoff.take(&fwd(&plain, [10, 0, 0, 2])).is_none());
        let taken = handoff
            .take(&fwd(&plain, [10, 0, 0, 1]))
            .expect("handed off");
        assert_eq!(&*taken[0].source.host, "origin.test");
        assert!(
            handoff.take(&fwd(&plain, [10, 0, 0, 1])).is_none(),
            "taken once"
        );
    }

    #[test]
    fn sizes_are_remembered_per_key_and_collisions_forget() {
        let sizes = SizesSeen::default();
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1234"));
        let a = [1u8; 16];
        let mut b = a;
        b[4] = 9; // same slot, other tag
        assert_eq!(sizes.get(&a), None);
        sizes.note(&a, &h);
        assert_eq!((sizes.get(&a), sizes.get(&b)), (Some(1234), None));
        sizes.note(&b, &h);
        assert_eq!((sizes.get(&a), sizes.get(&b)), (None, Some(1234)));
    }
}
