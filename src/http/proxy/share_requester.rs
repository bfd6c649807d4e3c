//! Proxy sharing, the requester's side (`share_offer on`; issue 21): a GET
//! miss going direct (or to an `originserver` peer) to a server known to
//! keep a share log (one of its
//! responses said `Cache-Share: log`; every server with `to=all`) offers
//! this cache's copy (`Cache-Share: url="<share_offer_url>"; ttl=3600`,
//! with the candidates that failed since the last offer). A `300` share
//! list in answer is followed: up to `probes` candidates are asked at once
//! with `HEAD` + `Cache-Control: only-if-cached` (each within
//! `probe_timeout`); the body comes from the first that answers 200 with
//! the owner's validators, as a proxy request for the absolute URL
//! (logged `SHARE_HIT/<candidate address>`). On any failure the owner is
//! asked again without the offer, so the client sees only what the owner
//! would have sent. A `Cache-Share` field a client sent is never
//! forwarded.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use tokio::task::JoinSet;

use cuttle_protocol::share::{self, Share};

use crate::access_log::{Hierarchy, HierarchyCode};
use crate::http::body::ProxyBody;
use crate::http::target::Target;
use crate::upstream::{FetchError, PooledBody};

use super::forward::{Fetched, Forwarding, NotForwarded};
use super::Proxy;

/// A share list: the owner's length and validators, and the candidates.
#[derive(Debug)]
pub(super) struct ShareList {
    length: Option<u64>,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    candidates: Vec<String>,
    /// Piggybacked on a page: no validators came with it.
    piggybacked: bool,
}

/// The share list `resp` is, if it is one (a 300 with `Cache-Share:
/// candidates=`); its candidates are the `rel=duplicate` links.
pub(super) fn share_list<B>(resp: &Response<B>) -> Option<ShareList> {
    if resp.status() != StatusCode::MULTIPLE_CHOICES {
        return None;
    }
    let headers = resp.headers();
    let Ok(Share::List(list)) = share::parse(headers.get(share::FIELD)?.as_bytes()) else {
        return None;
    };
    let candidates = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| share::parse_links(v.as_bytes()).ok())
        .flatten()
        .filter(|l| l.duplicate && l.anchor.is_none() && share::is_proxy_url(l.target))
        .map(|l| l.target.to_string())
        .collect();
    Some(ShareList {
        length: list.length,
        etag: headers.get(header::ETAG).cloned(),
        last_modified: headers.get(header::LAST_MODIFIED).cloned(),
        candidates,
        piggybacked: false,
    })
}

/// The candidates an owner's page piggybacked for its embedded objects
/// (`Link: <CANDIDATE>; rel=duplicate; anchor="URL"`), per URL.
fn piggybacked(headers: &HeaderMap) -> Vec<(String, Vec<String>)> {
    let mut per_url: Vec<(String, Vec<String>)> = Vec::new();
    let links = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| share::parse_links(v.as_bytes()).ok())
        .flatten();
    for link in links.filter(|l| l.duplicate && share::is_proxy_url(l.target)) {
        let Some(url) = link.anchor else { continue };
        match per_url.iter_mut().find(|(u, _)| u == url) {
            Some((_, c)) => c.push(link.target.to_string()),
            None => per_url.push((url.to_string(), vec![link.target.to_string()])),
        }
    }
    per_url
}

impl ShareList {
    /// A list from the candidates piggybacked for a URL.
    pub(super) fn piggybacked(candidates: Vec<String>) -> ShareList {
        ShareList {
            length: None,
            etag: None,
            last_modified: None,
            candidates,
            piggybacked: true,
        }
    }
}

impl ShareList {
    /// Whether a candidate's response describes the owner's copy: every
    /// validator the owner gave matches, and it gave at least one.
    fn matches(&self, headers: &HeaderMap) -> bool {
        // Piggybacked candidates come without the owner's validators: a
        // candidate's cached copy (only-if-cached) is taken as any
        // shared cache's would be.
        if self.piggybacked {
            return true;
        }
        let same = |owner: &Option<HeaderValue>, name| {
            owner.as_ref().is_none_or(|v| headers.get(name) == Some(v))
        };
        let length = self
            .length
            .is_none_or(|l| super::headers::content_length(headers) == Some(l));
        (self.length.is_some() || self.etag.is_some() || self.last_modified.is_some())
            && length
            && same(&self.etag, header::ETAG)
            && same(&self.last_modified, header::LAST_MODIFIED)
    }
}

/// Whether `url` is on the server `host:port`.
fn on_server(url: &str, host: &str, port: u16) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let default = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    uri.host().is_some_and(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
    }) && uri.port_u16().unwrap_or(default) == port
}

/// `host` and `port` of a candidate's proxy URL.
fn host_port(proxy_url: &str) -> Option<(String, u16)> {
    let uri: http::Uri = proxy_url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), uri.port_u16().unwrap_or(80)))
}

impl Proxy {
    /// The offer to send on a GET miss going direct to `host:port`, if
    /// this cache offers there (and counted).
    pub(super) fn share_offer_header(&self, host: &str, port: u16) -> Option<HeaderValue> {
        let settings = &self.config.share;
        let url = settings.offer_url.value.as_deref()?;
        if !self.sharing.offers_to(settings, &format!("{host}:{port}")) {
            return None;
        }
        let failed = self.sharing.take_failed(share::MAX_FAILED, Instant::now());
        let value = share::encode_offer(&share::Offer {
            url,
            ttl: share::DEFAULT_TTL,
            load: None,
            failed: failed.iter().map(String::as_str).collect(),
        })?;
        let value = HeaderValue::from_str(&value).ok()?;
        self.sharing
            .counters
            .offers_sent
            .fetch_add(1, Ordering::Relaxed);
        Some(value)
    }

    /// Remembers `host:port` as an owner when its response says so.
    pub(super) fn note_share_owner(&self, host: &str, port: u16, headers: &HeaderMap) {
        if !self.config.share.offer.value.on {
            return;
        }
        let owner = headers.get(share::FIELD).is_some_and(|v| {
            matches!(
                share::parse(v.as_bytes()),
                Ok(Share::Owner | Share::List(_))
            )
        });
        if owner {
            self.sharing.note_owner(&format!("{host}:{port}"));
            let until = Instant::now() + crate::peers::share_log::PIGGYBACK_FOR;
            // An owner speaks for its own objects only: candidates for
            // another server's URLs would let it steer those fetches.
            for (url, candidates) in piggybacked(headers) {
                if on_server(&url, host, port) {
                    self.sharing.remember_piggybacked(&url, candidates, until);
                }
            }
        }
    }

    /// One request for `target` to the candidate proxy `proxy_url`, in
    /// absolute form, with only-if-cached.
    async fn ask_candidate(
        &self,
        proxy_url: &str,
        method: &Method,
        (target, client_headers, client): (&Target, &HeaderMap, IpAddr),
    ) -> Result<(Response<PooledBody<ProxyBody>>, std::net::SocketAddr), FetchError> {
        let Some((host, port)) = host_port(proxy_url) else {
            return Err(FetchError::Read(format!("bad candidate URL {proxy_url}")));
        };
        let mut req =
            self.upstream_request(method, target, client_headers, client, ProxyBody::Empty);
        if let Ok(uri) = target.url.parse() {
            *req.uri_mut() = uri;
        }
        let headers = req.headers_mut();
        headers.remove(share::FIELD);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("only-if-cached"),
        );
        let local = self.config.tcp_outgoing_address.first().map(|l| l.address);
        self.upstream
            .send_from(
                &host,
                port,
                local,
                Some(self.config.peer_connect_timeout.value),
                None,
                req,
            )
            .await
    }

    /// Follows a share list (see the module's doc): the body from a
    /// candidate, or from the owner again without the offer.
    pub(super) async fn follow_share_list(
        self: &Arc<Self>,
        list: ShareList,
        fwd: &Forwarding<'_>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Fetched, NotForwarded> {
        let counters = &self.sharing.counters;
        counters.lists_received.fetch_add(1, Ordering::Relaxed);
        let offer = &self.config.share.offer.value;
        let list = Arc::new(list);
        let mut probes = JoinSet::new();
        for candidate in list.candidates.iter().take(offer.probes as usize) {
            let (proxy, list, candidate) = (Arc::clone(self), Arc::clone(&list), candidate.clone());
            let (target, headers, client) = (fwd.target.clone(), fwd.headers.clone(), fwd.client);
            let timeout = offer.probe_timeout;
            probes.spawn(async move {
                let asked = tokio::time::timeout(
                    timeout,
                    proxy.ask_candidate(&candidate, &Method::HEAD, (&target, &headers, client)),
                )
                .await;
                let ok = matches!(&asked, Ok(Ok((resp, _)))
                    if resp.status() == StatusCode::OK && list.matches(resp.headers()));
                (candidate, ok)
            });
        }
        let now = Instant::now();
        let mut winner = None;
        while let Some(joined) = probes.join_next().await {
            let Ok((candidate, ok)) = joined else {
                continue;
            };
            if ok {
                winner = Some(candidate);
                break;
            }
            self.sharing.note_failed(&candidate, now);
        }
        // The slower probes are not waited for.
        probes.abort_all();
        if let Some(candidate) = winner {
            match self
                .ask_candidate(
                    &candidate,
                    &Method::GET,
                    (fwd.target, fwd.headers, fwd.client),
                )
                .await
            {
                Ok((resp, addr))
                    if resp.status() == StatusCode::OK && list.matches(resp.headers()) =>
                {
                    counters.candidate_fetches.fetch_add(1, Ordering::Relaxed);
                    *hierarchy =
                        Hierarchy::new(HierarchyCode::ShareHit, Some(addr.ip().to_string()));
                    return Ok(Fetched {
                        resp,
                        proxy_only: false,
                        peer: None,
                        _conn_slot: None,
                    });
                }
                _ => self.sharing.note_failed(&candidate, Instant::now()),
            }
        }
        counters.owner_fallbacks.fetch_add(1, Ordering::Relaxed);
        let plain = Forwarding {
            share_offer: false,
            body: None,
            ..*fwd
        };
        self.forward_along(&plain, hierarchy).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_response(fields: &[(&str, &str)]) -> Response<()> {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::MULTIPLE_CHOICES;
        for (name, value) in fields {
            resp.headers_mut().append(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        resp
    }

    #[test]
    fn a_share_list_names_its_duplicate_links() {
        let resp = list_response(&[
            ("cache-share", "candidates=2; length=100"),
            (
                "link",
                "<http://c1:3128/>; rel=duplicate, <http://x/>; rel=next",
            ),
            ("link", "<http://c2:3128/>; rel=\"duplicate\""),
            ("link", "<ftp://c3/>; rel=duplicate"),
            ("etag", "\"v1\""),
        ]);
        let list = share_list(&resp).expect("a share list");
        assert_eq!(list.candidates, ["http://c1:3128/", "http://c2:3128/"]);
        assert_eq!(list.length, Some(100));
        // A 300 without the share field, or another status, is not one.
        let plain = list_response(&[("link", "<http://c1:3128/>; rel=duplicate")]);
        assert!(share_list(&plain).is_none());
        let mut ok = list_response(&[("cache-share", "candidates=1")]);
        *ok.status_mut() = StatusCode::OK;
        assert!(share_list(&ok).is_none());
    }

    #[test]
    fn a_candidate_copy_matches_the_owners_validators() {
        let resp = list_response(&[
            ("cache-share", "candidates=1; length=100"),
            ("link", "<http://c1:3128/>; rel=duplicate"),
            ("etag", "\"v1\""),
        ]);
        let list = share_list(&resp).expect("a share list");
        let copy = |fields: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in fields {
                h.insert(
                    http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        assert!(list.matches(&copy(&[("content-length", "100"), ("etag", "\"v1\"")])));
        assert!(!list.matches(&copy(&[("content-length", "100"), ("etag", "\"v2\"")])));
        assert!(!list.matches(&copy(&[("content-length", "99"), ("etag", "\"v1\"")])));
        assert!(!list.matches(&copy(&[("etag", "\"v1\"")])));
        // A list without any validator matches nothing.
        let bare = share_list(&list_response(&[("cache-share", "candidates=1")])).expect("list");
        assert!(!bare.matches(&copy(&[("content-length", "100")])));
    }

    #[test]
    fn piggybacked_links_are_grouped_by_their_anchor() {
        let resp = list_response(&[
            (
                "link",
                "<http://c1:3128/>; rel=duplicate; anchor=\"http://s/a.jpg\"",
            ),
            (
                "link",
                "<http://c2:3128/>; rel=duplicate; anchor=\"http://s/a.jpg\", <http://c1:3128/>; rel=duplicate; anchor=\"http://s/b.jpg\"",
            ),
            ("link", "<http://c3:3128/>; rel=duplicate"),
            ("link", "<http://c4:3128/>; rel=next; anchor=\"http://s/a.jpg\""),
        ]);
        assert_eq!(
            piggybacked(resp.headers()),
            [
                (
                    "http://s/a.jpg".to_string(),
                    vec!["http://c1:3128/".to_string(), "http://c2:3128/".to_string()]
                ),
                (
                    "http://s/b.jpg".to_string(),
                    vec!["http://c1:3128/".to_string()]
                ),
            ]
        );
        // An anchored link is not a candidate for the response's own URL.
        let mut list = resp;
        list.headers_mut()
            .insert("cache-share", HeaderValue::from_static("candidates=1"));
        assert_eq!(
            share_list(&list).expect("list").candidates,
            ["http://c3:3128/"]
        );
    }

    #[test]
    fn piggybacked_urls_must_be_the_owners() {
        assert!(on_server("http://s/a.jpg", "s", 80));
        assert!(on_server("http://S:8080/a.jpg", "s", 8080));
        assert!(on_server("https://s/a.jpg", "s", 443));
        assert!(!on_server("http://other/a.jpg", "s", 80));
        assert!(!on_server("http://s:8080/a.jpg", "s", 80));
        assert!(!on_server("not a url", "s", 80));
    }

    #[test]
    fn candidate_urls_give_host_and_port() {
        assert_eq!(host_port("http://c1:3128/"), Some(("c1".into(), 3128)));
        assert_eq!(host_port("http://10.0.0.1/"), Some(("10.0.0.1".into(), 80)));
        assert_eq!(host_port("http://[::1]:8080/"), Some(("::1".into(), 8080)));
        assert_eq!(host_port("not a url"), None);
    }
}
