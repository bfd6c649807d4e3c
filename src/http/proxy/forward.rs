//! Squid's forwarding: peer selection's sources for a request, tried in
//! order until one answers (squid-spec 3.2, 3.6).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::access_log::{mask_manager_password, Hierarchy};
use crate::caching::Rule;
use crate::http::body::{ProxyBody, RequestBody};
use crate::http::target::Target;
use crate::peers::select::{self as peer_select, ClientCredentials, ConnGuard, SelectRequest};
use crate::upstream::{FetchError, NewConnection, Upstream};

use super::admit::Arrival;
use super::{unix_now, Proxy};

/// Where to connect for a request: a source chosen by peer selection.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) source: peer_select::Source,
    /// tcp_outgoing_address for this request.
    pub(super) local: Option<IpAddr>,
    /// The ICP wait timed out (`TIMEOUT_` in the log).
    pub(super) timed_out: bool,
    /// The absolute URL, sent as the request target to proxy peers.
    pub(super) url: String,
}

/// One client request to forward, as each attempt along the sources sends
/// it (squid-spec 3.2, 3.6).
pub(super) struct Forwarding<'a> {
    pub(super) method: &'a Method,
    pub(super) target: &'a Target,
    /// The client's fields (with our validators, for a revalidation).
    pub(super) headers: &'a HeaderMap,
    pub(super) client: IpAddr,
    pub(super) arrival: Arrival,
    /// Siblings may be asked and used: not for a client reload nor a
    /// revalidation (squid-spec 3.1).
    pub(super) siblings_ok: bool,
    /// The client's request body, when the method carries one.
    pub(super) body: Option<RequestBody>,
    /// A GET miss: offer to share the copy when it goes direct to an
    /// owner (share_requester.rs).
    pub(super) share_offer: bool,
}

impl Forwarding<'_> {
    /// Whether a failed attempt may be followed by another: always, unless
    /// the body has been (partly) sent and could not be sent whole again.
    pub(super) fn replayable(&self) -> bool {
        self.body.as_ref().is_none_or(RequestBody::replayable)
    }
}

/// A response from the source that answered.
pub(super) struct Fetched {
    pub(super) resp: Response<crate::upstream::PooledBody<ProxyBody>>,
    /// proxy-only: deliver, do not store.
    pub(super) proxy_only: bool,
    /// The peer that answered (`None`: the origin).
    pub(super) peer: Option<crate::peers::table::PeerId>,
    /// The peer's max-conn slot, held while its body streams.
    pub(super) _conn_slot: Option<ConnGuard>,
}

/// Why nothing answered.
#[derive(Debug)]
pub(super) enum NotForwarded {
    /// Selection left no source (never_direct, or an accelerator port
    /// without allow-direct, and no usable parent).
    NoSource,
    /// The last source tried failed so.
    Failed(FetchError),
}

/// Squid's IsReforwardableStatus (squid-spec 3.2): 502 and 504 always
/// move on to the next source, 403, 500, 501 and 503 with retry_on_error.
pub(super) fn reforwardable(status: StatusCode, retry_on_error: bool) -> bool {
    match status {
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => true,
        StatusCode::FORBIDDEN
        | StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::NOT_IMPLEMENTED
        | StatusCode::SERVICE_UNAVAILABLE => retry_on_error,
        _ => false,
    }
}

impl Proxy {
    /// A forwarded client request ended with `error` or without (its last
    /// attempt when several sources were tried): feeds the failure ratio that puts
    /// ICP into hit-only mode (squid-spec 1.5). As Squid: DNS, connect and
    /// read errors count as failures, anything else (a read timeout too)
    /// as success; nothing is counted while ICP is off, nor when the
    /// client's own request body failed (no word on the server).
    pub(super) fn note_forwarding(&self, error: Option<&FetchError>) {
        if self.config.icp_port.value == 0 || matches!(error, Some(FetchError::RequestBody(_))) {
            return;
        }
        let failed = matches!(
            error,
            Some(
                FetchError::Dns { .. }
                    | FetchError::Connect { .. }
                    | FetchError::SecureConnect { .. }
                    | FetchError::Read(_)
                    | FetchError::TooBig(_)
            )
        );
        self.hit_only.note_forwarding(failed, unix_now());
    }

    /// What peer selection looks at for this request.
    pub(super) fn select_request<'a>(
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
            access: arrival.acl_request(client, method.as_str(), target),
            hierarchical,
            siblings_ok,
            looped: false,
            accel_no_direct: arrival.no_direct(),
        }
    }

    /// Where `fwd` may go, in order: Squid's peer selection, with ICP
    /// queries to the peers it would ask (none for a non-hierarchical
    /// request unless nothing may go direct; no siblings when
    /// `siblings_ok` is false).
    pub(super) async fn routes(&self, fwd: &Forwarding<'_>) -> Vec<Route> {
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
    pub(super) async fn forward_along(
        &self,
        fwd: &Forwarding<'_>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Fetched, NotForwarded> {
        let routes = self.routes_of(fwd).await;
        self.forward_routes(fwd, routes, hierarchy).await
    }

    /// The sources of `fwd`: the peers a holder redirect already asked
    /// (redirect.rs), not again, else a selection.
    pub(super) async fn routes_of(&self, fwd: &Forwarding<'_>) -> Vec<Route> {
        match self.redirects.handoff.take(fwd) {
            Some(routes) => routes,
            None => self.routes(fwd).await,
        }
    }

    /// [`Proxy::forward_along`] on sources already selected.
    pub(super) async fn forward_routes(
        &self,
        fwd: &Forwarding<'_>,
        mut routes: Vec<Route>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Fetched, NotForwarded> {
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
                    if status == StatusCode::GATEWAY_TIMEOUT && route.source.code.is_digest_hit() {
                        if let Some(id) = route.source.peer {
                            self.neighbours.note_digest_false_hit(id);
                        }
                    }
                    if status == StatusCode::GATEWAY_TIMEOUT && route.source.code.is_mon_hit() {
                        if let Some(id) = route.source.peer {
                            self.neighbours.note_mon_false_hit(id);
                        }
                    }
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
                        peer: route.source.peer,
                        _conn_slot: conn_slot,
                    });
                    break;
                }
                Err(e) => {
                    // Another cache's manager URL may carry its password: never in our logs.
                    tracing::debug!(url = %mask_manager_password(&fwd.target.url), source = %route.source.host, error = %e, "fetch failed");
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
    pub(super) async fn send(
        &self,
        route: &Route,
        fwd: &Forwarding<'_>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Response<crate::upstream::PooledBody<ProxyBody>>, FetchError> {
        self.send_via(&self.upstream, route, fwd, hierarchy).await
    }

    /// [`Proxy::send`] through `upstream` (a low-priority client, for one).
    pub(super) async fn send_via(
        &self,
        upstream: &Upstream<ProxyBody>,
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
        // A client's offer is not ours to forward; ours goes to owners only.
        req.headers_mut().remove(cuttle_protocol::share::FIELD);
        // Direct or to an originserver peer: an owner may be there.
        if fwd.share_offer && !source.absolute_form {
            if let Some(offer) = self.share_offer_header(&source.host, source.port) {
                req.headers_mut()
                    .insert(cuttle_protocol::share::FIELD, offer);
            }
        }
        let field = |name| fwd.headers.get(name).and_then(|v| v.to_str().ok());
        let credentials = peer_select::credentials(
            source,
            &ClientCredentials {
                proxy_authorization: field(header::PROXY_AUTHORIZATION),
                authorization: field(header::AUTHORIZATION),
                accelerated: fwd.arrival.accelerated(),
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
        self.meter_request(&mut req, fwd);
        // A TLS peer, or an https:// URL going direct, is spoken to over
        // TLS; a client that could not be built fails the attempt (never
        // cleartext instead).
        let peer = source.peer.and_then(|id| self.neighbours.table.get(id));
        let tls = match (source.peer, peer) {
            (Some(_), Some(p)) => p.tls.as_ref().map(|t| t.as_ref().map_err(String::as_str)),
            (Some(_), None) => Some(Err("the peer is no longer configured")),
            (None, _) if fwd.target.scheme == "https" => Some(self.tls.origins()),
            (None, _) => None,
        };
        let tls = match tls {
            Some(Err(reason)) => {
                return Err(FetchError::SecureConnect {
                    host: source.host.to_string(),
                    reason: reason.to_string(),
                })
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
        let started = std::time::Instant::now();
        let sent = upstream
            .send_from(
                &source.host,
                source.port,
                route.local,
                source.connect_timeout,
                tls,
                req,
            )
            .await;
        if let Err(e @ FetchError::SecureConnect { .. }) = &sent {
            // Squid logs these at level 1 too: the admin must see them.
            let name = peer.map_or(&*source.host, |p| p.name());
            tracing::warn!(peer = %name, "TLS connection to {name} failed: {e}");
        }
        if sent.is_ok() {
            self.neighbours.note_service(source.peer, started.elapsed());
        }
        if let Some(id) = source.peer {
            match &sent {
                Ok(_) => self.neighbours.note_connect(id, true),
                // A refused handshake is a failed connect (dead-peer rules).
                Err(FetchError::Connect { .. } | FetchError::SecureConnect { .. }) => {
                    self.neighbours.note_connect(id, false)
                }
                Err(_) => {}
            }
        } else if let Ok((resp, addr)) = &sent {
            // DIRECT on a new connection: its handshake timed the origin.
            if let Some(c) = resp.extensions().get::<NewConnection>() {
                self.netdb
                    .note_connect(&source.host, addr.ip(), c.handshake);
            }
        }
        let (mut resp, addr) = sent?;
        if !source.absolute_form {
            self.note_share_owner(&source.host, source.port, resp.headers());
        }
        self.take_targeted(resp.headers_mut(), fwd.arrival);
        self.meter_response(resp.status(), resp.headers_mut(), fwd);
        let mut h = Hierarchy::new(source.code, Some(addr.ip().to_string()));
        if route.timed_out {
            h = h.timed_out();
        }
        *hierarchy = h;
        Ok(resp)
    }
}
