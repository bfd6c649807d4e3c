//! Peer selection in Squid's order (squid-spec 3.1-3.4): decide whether a
//! request may go direct (always_direct, never_direct, an accelerator
//! port without allow-direct, a loop), which peers to ask with ICP, and,
//! from their replies, the ordered list of sources the HTTP layer walks (a
//! peer with its hierarchy code, or DIRECT), falling back down the list on
//! failure. Each source carries what the peer's `login=` makes of the
//! client's credentials ([`credentials`], squid-spec 3.6).
//!
//! The "some parent" step tries sourcehash, userhash and CARP parents
//! before round-robin and first-up, as Squid does (squid-spec 3.2, 3.4, 4):
//! the member sets ([`HashParents`]) are built once per configuration and
//! scored with `cuttle_protocol::carp`, so cuttle sends a URL (or a client
//! address) to the same parent a Squid with the same `cache_peer` lines
//! would. `userhash` never picks by hash: cuttle has no proxy
//! authentication (configs with `proxy_auth` are refused), so there is never
//! a user name, and Squid skips userhash for a request without one; such
//! parents are still used by the later algorithms (first-up, any-old).
//!
//! Multicast (squid-spec 1.9): a `multicast` peer is asked with one query
//! to its group; replies come from the `multicast-responder` peers, which
//! are never asked directly and are the ones fetched from (SIBLING_HIT or
//! PARENT_HIT by their type; `multicast-siblings` makes them siblings).
//! The multicast peer itself is never a source. How many responders a
//! query waits for is counted by a background probe of each group
//! ([`Neighbours::start_multicast_counts`]), never by client queries.
//!
//! CLOSEST_PARENT_MISS (squid-spec 3.2): with `query_icmp on`, a parent
//! whose ICP MISS reported the smallest origin RTT (SRC_RTT) is the next
//! source, before the first parent to answer (FIRST_PARENT_MISS); see
//! [`super::icp_client::ParentMisses`]. Neither is used when the wait ran
//! out: Squid 5.7 then skips the replies that did arrive and goes on with
//! the parent algorithms, logged with the TIMEOUT_ prefix (seen: a parent
//! that answered MISS with SRC_RTT while another stayed silent gave
//! `TIMEOUT_FIRSTUP_PARENT/<first parent in config order>`).
//!
//! Not implemented: cache digests, and the decisions Squid takes from its
//! own NetDB: CLOSEST_PARENT (no queries), CLOSEST_DIRECT (the origin
//! nearer than the closest parent's report) and `minimum_direct_rtt`.
//! cuttle's NetDB (from its own DIRECT handshakes) only answers peers.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::htcp_client::{ClrTrigger, HtcpClient};
use super::icp_client::{IcpClient, Replies};
use super::querier::{lock, QuerySocket, QuerySockets};
use super::table::{PeerId, PeerTable};
use crate::access::{self, Verdict};
use crate::access_log::HierarchyCode;
use crate::config::{CachePeer, Config, PeerLogin, PeerType};
use cuttle_protocol::carp::{carp_key, Carp, CarpKeyParts, CarpMember, SourceHash, UrlParts};

/// Squid's "direct" decision (peer_select.cc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    Yes,
    No,
    Maybe,
}

/// What selection looks at besides the config.
#[derive(Debug, Clone, Copy)]
pub struct SelectRequest<'a> {
    /// The request as ACLs see it (never_direct, cache_peer_access, ...).
    pub access: access::Request<'a>,
    /// Squid's clientHierarchical (see [`hierarchical`]).
    pub hierarchical: bool,
    /// Siblings may be used (no client reload, not a revalidation, no loop).
    pub siblings_ok: bool,
    /// Our Via was in the request.
    pub looped: bool,
    /// Accelerated, on an http_port without `allow-direct` (Squid's
    /// noDirect): parents only, as under never_direct.
    pub accel_no_direct: bool,
}

/// Squid's clientHierarchical (squid-spec 3.1): GET (or TRACE), no
/// credentials (Authorization header or user-info in the URL), no loop.
pub fn hierarchical(
    method: &str,
    has_authorization: bool,
    url_has_userinfo: bool,
    looped: bool,
) -> bool {
    (method == "GET" || method == "TRACE") && !has_authorization && !url_has_userinfo && !looped
}

/// The URL holds a `hierarchy_stoplist` word (Squid 3.4's rule): it is
/// not hierarchical then.
pub fn stoplisted(config: &Config, url: &str) -> bool {
    config
        .hierarchy_stoplist
        .iter()
        .any(|word| url.contains(word.value.as_str()))
}

/// One place to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `None` = DIRECT (the URL's own host).
    pub peer: Option<PeerId>,
    pub code: HierarchyCode,
    pub host: String,
    pub port: u16,
    /// Send `Cache-Control: only-if-cached` (a sibling without allow-miss).
    pub only_if_cached: bool,
    /// Send absolute-form (any peer but an originserver one).
    pub absolute_form: bool,
    /// proxy-only: do not store what this peer sends.
    pub proxy_only: bool,
    /// What `login=` makes of the client's credentials (see [`credentials`]).
    pub login: Option<PeerAuth>,
    /// connect-timeout= of the peer.
    pub connect_timeout: Option<Duration>,
}

impl Source {
    fn direct(host: &str, port: u16) -> Source {
        Source {
            peer: None,
            code: HierarchyCode::HierDirect,
            host: host.to_string(),
            port,
            only_if_cached: false,
            absolute_form: false,
            proxy_only: false,
            login: None,
            connect_timeout: None,
        }
    }

    fn peer(id: PeerId, p: &CachePeer, code: HierarchyCode, peer_type: PeerType) -> Source {
        Source {
            peer: Some(id),
            code,
            host: p.host.clone(),
            port: p.http_port,
            only_if_cached: peer_type == PeerType::Sibling && !p.allow_miss,
            absolute_form: !p.originserver,
            proxy_only: p.proxy_only,
            login: p.login.as_ref().and_then(PeerAuth::of),
            connect_timeout: p.connect_timeout,
        }
    }
}

/// A peer's `login=` as it is applied to each request (squid-spec 3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// `login=user:password`: these Basic credentials, ready to send.
    Basic(String),
    /// `login=*SUFFIX:password`: the client's user name, then these bytes
    /// (SUFFIX, `:`, password), as Basic credentials.
    ClientUser(Vec<u8>),
    /// `login=PASSTHRU`, and `login=PASS` (which differs only with
    /// external ACL credentials, and cuttle has no external ACLs): the
    /// client's credentials go through.
    Relay,
    /// `login=PROXYPASS`: as Relay, and an originserver peer gets the
    /// client's Basic Proxy-Authorization as its Authorization.
    ProxyPass,
}

impl PeerAuth {
    /// `None` for `login=NEGOTIATE` (no Kerberos here; the config reader
    /// warned): such a peer gets no credentials.
    fn of(login: &PeerLogin) -> Option<PeerAuth> {
        Some(match login {
            PeerLogin::Credentials(c) => PeerAuth::Basic(format!("Basic {}", base64(&unescape(c)))),
            PeerLogin::ClientUser(rest) => PeerAuth::ClientUser(unescape(rest)),
            PeerLogin::Pass | PeerLogin::PassThru => PeerAuth::Relay,
            PeerLogin::ProxyPass => PeerAuth::ProxyPass,
            PeerLogin::Negotiate(_) => return None,
        })
    }
}

/// The credential fields of the request a client sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCredentials<'a> {
    pub proxy_authorization: Option<&'a str>,
    pub authorization: Option<&'a str>,
    /// Arrived on an accelerator port, where a user's credentials are in
    /// Authorization (on a forward port, in Proxy-Authorization).
    pub accelerated: bool,
}

/// The `Proxy-Authorization` and `Authorization` fields of a request to
/// `source` (`None`: the field is not sent), as Squid builds them
/// (squid-spec 3.6): the client's Proxy-Authorization goes only to a proxy
/// peer whose login= relays (PASS, PASSTHRU, PROXYPASS), its Authorization
/// to the origin and proxy peers, and to an originserver peer only when
/// login= relays; then, when the peer's own field (Proxy-Authorization, or
/// Authorization for an originserver) is still empty, login= fills it.
pub fn credentials(source: &Source, client: &ClientCredentials<'_>) -> Credentials {
    let relays = matches!(source.login, Some(PeerAuth::Relay | PeerAuth::ProxyPass));
    let to_peer = source.peer.is_some();
    let to_origin_peer = to_peer && !source.absolute_form;
    let mut out = Credentials {
        proxy_authorization: client
            .proxy_authorization
            .filter(|_| to_peer && !to_origin_peer && relays)
            .map(str::to_string),
        authorization: client
            .authorization
            .filter(|_| !to_origin_peer || relays)
            .map(str::to_string),
    };
    if !to_peer {
        return out;
    }
    let field = if to_origin_peer {
        &mut out.authorization
    } else {
        &mut out.proxy_authorization
    };
    if field.is_some() {
        return out;
    }
    *field = match &source.login {
        None | Some(PeerAuth::Relay) => None,
        Some(PeerAuth::ProxyPass) => client
            .proxy_authorization
            .filter(|v| to_origin_peer && basic_token(v).is_some())
            .map(str::to_string),
        Some(PeerAuth::ClientUser(rest)) => {
            // Squid sends "-" when it knows no user name.
            let user = client_user(client).unwrap_or_else(|| b"-".to_vec());
            let mut plain = user;
            plain.extend_from_slice(rest);
            Some(format!("Basic {}", base64(&plain)))
        }
        Some(PeerAuth::Basic(value)) => Some(value.clone()),
    };
    out
}

/// The fields [`credentials`] decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub proxy_authorization: Option<String>,
    pub authorization: Option<String>,
}

/// The token of a `Basic` credentials field.
fn basic_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then(|| token.trim())
}

/// The user name in the client's Basic credentials: Proxy-Authorization,
/// or Authorization on an accelerator port. Squid takes the name its own
/// proxy authentication verified; cuttle has none, so this is the name
/// the client claims.
fn client_user(client: &ClientCredentials<'_>) -> Option<Vec<u8>> {
    let field = if client.accelerated {
        client.authorization
    } else {
        client.proxy_authorization
    }?;
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD
        .decode(basic_token(field)?)
        .ok()?;
    let user = match plain.iter().position(|&b| b == b':') {
        Some(colon) => plain.get(..colon)?.to_vec(),
        None => plain,
    };
    (!user.is_empty()).then_some(user)
}

/// The ordered sources, and whether the ICP wait timed out (`TIMEOUT_`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub sources: Vec<Source>,
    pub timed_out: bool,
    /// The ICP round, when one was made.
    pub replies: Option<Replies>,
}

fn allow_listed(
    list: &crate::config::AccessList,
    config: &Config,
    req: &access::Request<'_>,
) -> bool {
    !list.is_empty() && access::check(list, config, req).allowed()
}

/// Steps 1-6 of squid-spec 3.2 that cuttle can evaluate: always_direct,
/// never_direct, an accelerated request on a port without allow-direct,
/// loop; else MAYBE (no NetDB here).
pub fn direct(config: &Config, req: &SelectRequest<'_>) -> Direct {
    if allow_listed(&config.always_direct, config, &req.access) {
        return Direct::Yes;
    }
    if allow_listed(&config.never_direct, config, &req.access) || req.accel_no_direct {
        return Direct::No;
    }
    if req.looped {
        return Direct::Yes;
    }
    Direct::Maybe
}

/// The peer's type for this host after `neighbor_type_domain` (the last
/// matching line wins, as Squid walks the list keeping the last match).
pub fn peer_type_for(p: &CachePeer, host: &str) -> PeerType {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut t = p.peer_type;
    for td in &p.type_domains {
        if td.domains.iter().any(|d| domain_matches(d, &host)) {
            t = td.peer_type;
        }
    }
    t
}

fn domain_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// cache_peer_access (no rules = allowed).
pub fn peer_allowed(config: &Config, p: &CachePeer, req: &access::Request<'_>) -> bool {
    access::check(&p.access, config, req)
        .or_if_no_rules(Verdict::Allow)
        .allowed()
}

/// Squid's peerWouldBePinged for every peer, in Squid's rotating order
/// starting at `start`: the peers to ask, with their type for this URL.
pub fn to_ping(
    table: &PeerTable,
    config: &Config,
    req: &SelectRequest<'_>,
    start: usize,
    now: Instant,
) -> Vec<(PeerId, PeerType)> {
    let n = table.peers.len();
    let mut out = Vec::new();
    for k in 0..n {
        let id = (start + k) % n;
        let Some(p) = table.get(id) else { continue };
        // A multicast group is asked with one datagram to the group; its
        // responders are never asked directly (not queryable).
        if !p.queryable() {
            continue;
        }
        let t = peer_type_for(&p.config, req.access.host);
        if t == PeerType::Sibling && !(req.hierarchical && req.siblings_ok) {
            continue;
        }
        if p.config.background_ping {
            let recent = p.state().last_query.is_some_and(|q| {
                now.saturating_duration_since(q) < config.background_ping_rate.value
            });
            if recent {
                continue;
            }
        }
        if !peer_allowed(config, &p.config, &req.access) {
            continue;
        }
        if !table.ping_due(id, now) {
            continue;
        }
        out.push((id, t));
    }
    out
}

/// Parents usable by HTTP for this request, in config order.
fn usable_parents(
    table: &PeerTable,
    config: &Config,
    req: &SelectRequest<'_>,
    now: Instant,
) -> Vec<PeerId> {
    (0..table.peers.len())
        .filter(|&id| {
            table.get(id).is_some_and(|p| {
                p.config.peer_type != PeerType::Multicast
                    && peer_type_for(&p.config, req.access.host) == PeerType::Parent
                    && peer_allowed(config, &p.config, &req.access)
            }) && table.http_okay(id, now)
        })
        .collect()
}

/// The hash-based parent sets of one configuration (squid-spec 4.2, 4.5):
/// the `sourcehash`, `userhash` and `carp` parents in configuration order
/// with their member hashes and load multipliers. Built with the peer
/// table, so a reload rebuilds them; liveness is not part of them (a down
/// member is skipped per request, after scoring, as Squid does).
#[derive(Debug, Clone, Default)]
pub struct HashParents {
    carp: MemberSet<Carp>,
    sourcehash: MemberSet<SourceHash>,
    /// Built like Squid, never consulted: there is no authenticated user.
    userhash: MemberSet<SourceHash>,
}

/// One algorithm's member table and, per member index, its peer.
#[derive(Debug, Clone, Default)]
struct MemberSet<T> {
    hash: T,
    peers: Vec<PeerId>,
}

impl<T> MemberSet<T> {
    fn build(
        table: &PeerTable,
        member: fn(&CachePeer) -> bool,
        new: fn(&[CarpMember<'_>]) -> T,
    ) -> MemberSet<T> {
        let peers: Vec<PeerId> = (0..table.peers.len())
            .filter(|&id| table.get(id).is_some_and(|p| member(&p.config)))
            .collect();
        let members: Vec<CarpMember<'_>> = peers
            .iter()
            .filter_map(|&id| table.get(id))
            .map(|p| CarpMember {
                name: &p.config.name,
                weight: p.config.weight,
            })
            .collect();
        MemberSet {
            hash: new(&members),
            peers,
        }
    }
}

impl HashParents {
    /// The member sets of `table`'s configuration. The config reader only
    /// accepts `carp`, `sourcehash` and `userhash` on parents, as Squid.
    pub fn new(table: &PeerTable) -> HashParents {
        HashParents {
            carp: MemberSet::build(table, |p| p.carp, Carp::new),
            sourcehash: MemberSet::build(table, |p| p.sourcehash, SourceHash::new),
            userhash: MemberSet::build(table, |p| p.userhash, SourceHash::new),
        }
    }

    /// The CARP members' peers, by member index.
    pub fn carp_peers(&self) -> &[PeerId] {
        &self.carp.peers
    }

    /// The sourcehash members' peers, by member index.
    pub fn sourcehash_peers(&self) -> &[PeerId] {
        &self.sourcehash.peers
    }

    /// The userhash members' peers, by member index.
    pub fn userhash_peers(&self) -> &[PeerId] {
        &self.userhash.peers
    }

    /// Squid's peerSourceHashSelectParent, peerUserHashSelectParent and
    /// carpSelectParent, in that order: the first that picks a parent.
    fn choose(
        &self,
        table: &PeerTable,
        config: &Config,
        req: &SelectRequest<'_>,
        now: Instant,
    ) -> Option<(PeerId, HierarchyCode)> {
        let eligible = |set_peers: &[PeerId], member: usize| {
            set_peers
                .get(member)
                .is_some_and(|&id| hash_parent_okay(table, config, req, id, now))
        };
        if !self.sourcehash.peers.is_empty() {
            let key = client_address_text(req.access.client);
            let peers = &self.sourcehash.peers;
            if let Some(id) = self
                .sourcehash
                .hash
                .choose(key.as_bytes(), |m| eligible(peers, m))
                .and_then(|m| peers.get(m))
            {
                return Some((*id, HierarchyCode::SourcehashParent));
            }
        }
        // userhash: Squid hashes the authenticated user name and skips the
        // algorithm when the request has none. cuttle refuses proxy_auth,
        // so no request has one and userhash never picks here.
        if !self.carp.peers.is_empty() {
            let url = UrlParts {
                full: req.access.url.as_bytes(),
                scheme: req.access.scheme.as_bytes(),
                host: req.access.host.as_bytes(),
                port: req.access.port,
                path_and_query: req.access.path.as_bytes(),
            };
            let peers = &self.carp.peers;
            let key_of = |m: usize| {
                let parts = peers
                    .get(m)
                    .and_then(|&id| table.get(id))
                    .and_then(|p| p.config.carp_key);
                match parts {
                    Some(k) => carp_key(
                        CarpKeyParts {
                            scheme: k.scheme,
                            host: k.host,
                            port: k.port,
                            path: k.path,
                            params: k.params,
                        },
                        &url,
                    ),
                    None => std::borrow::Cow::Borrowed(url.full),
                }
            };
            if let Some(id) = self
                .carp
                .hash
                .choose_keyed(key_of, |m| eligible(peers, m))
                .and_then(|m| peers.get(m))
            {
                return Some((*id, HierarchyCode::Carp));
            }
        }
        None
    }
}

/// Squid's peerHTTPOkay for a hash member: up, below max-conn, allowed by
/// cache_peer_access and, should neighbor_type_domain make it a sibling
/// for this host, allowed to use siblings. Like Squid, the hash algorithms
/// do not ask whether the member is a parent for this host.
fn hash_parent_okay(
    table: &PeerTable,
    config: &Config,
    req: &SelectRequest<'_>,
    id: PeerId,
    now: Instant,
) -> bool {
    let Some(p) = table.get(id) else {
        return false;
    };
    let sibling_here = peer_type_for(&p.config, req.access.host) == PeerType::Sibling;
    (!sibling_here || req.siblings_ok)
        && peer_allowed(config, &p.config, &req.access)
        && table.http_okay(id, now)
}

/// The client address as Squid prints it for the sourcehash key: dotted
/// IPv4 (also for IPv4-mapped IPv6 clients of a dual-stack port), IPv6
/// compressed and without brackets.
fn client_address_text(client: IpAddr) -> String {
    client.to_canonical().to_string()
}

/// Squid's selectSomeParent: sourcehash, userhash, CARP, round-robin,
/// weighted-round-robin, first-up (default is never reached, squid-spec
/// 3.2).
fn some_parent(
    table: &PeerTable,
    hashes: &HashParents,
    config: &Config,
    req: &SelectRequest<'_>,
    parents: &[PeerId],
    now: Instant,
) -> Option<(PeerId, HierarchyCode)> {
    if let Some(chosen) = hashes.choose(table, config, req, now) {
        return Some(chosen);
    }
    let with = |f: fn(&CachePeer) -> bool| -> Vec<PeerId> {
        parents
            .iter()
            .copied()
            .filter(|&id| table.get(id).is_some_and(|p| f(&p.config)))
            .collect()
    };
    if let Some(id) = table.pick_round_robin(&with(|p| p.round_robin), now) {
        return Some((id, HierarchyCode::RoundrobinParent));
    }
    if let Some(id) = table.pick_weighted_round_robin(&with(|p| p.weighted_round_robin), now) {
        return Some((id, HierarchyCode::RoundrobinParent));
    }
    if let Some(&id) = parents.first() {
        return Some((id, HierarchyCode::FirstUpParent));
    }
    None
}

/// The ordered sources (squid-spec 3.2), given the ICP replies if any.
pub fn select(
    table: &PeerTable,
    hashes: &HashParents,
    config: &Config,
    req: &SelectRequest<'_>,
    direct: Direct,
    replies: Option<&Replies>,
    now: Instant,
) -> Selection {
    let mut sources: Vec<Source> = Vec::new();
    let host = req.access.host;
    let port = req.access.port;
    let add = |sources: &mut Vec<Source>, id: PeerId, code: HierarchyCode| {
        if sources.iter().any(|s| s.peer == Some(id)) {
            return;
        }
        if let Some(p) = table.get(id) {
            let t = peer_type_for(&p.config, host);
            sources.push(Source::peer(id, &p.config, code, t));
        }
    };
    if direct != Direct::Yes {
        if let Some(r) = replies {
            if let Some(id) = r.hit {
                let as_sibling = table.get(id).is_some_and(|p| {
                    p.config.multicast_responder
                        && table.peers.iter().any(|g| {
                            g.config.peer_type == PeerType::Multicast && g.config.multicast_siblings
                        })
                });
                let code = match table.get(id).map(|p| peer_type_for(&p.config, host)) {
                    _ if as_sibling => HierarchyCode::SiblingHit,
                    Some(PeerType::Parent) => HierarchyCode::ParentHit,
                    _ => HierarchyCode::SiblingHit,
                };
                add(&mut sources, id, code);
            } else if r.timed_out {
                // Squid 5.7 reads no MISS after a timeout (see the module doc).
            } else if let Some(id) = r.closest_parent_miss {
                add(&mut sources, id, HierarchyCode::ClosestParentMiss);
            } else if let Some(id) = r.first_parent_miss {
                add(&mut sources, id, HierarchyCode::FirstParentMiss);
            }
        }
    }
    let parents = |sources: &mut Vec<Source>| {
        let usable = usable_parents(table, config, req, now);
        if let Some((id, code)) = some_parent(table, hashes, config, req, &usable, now) {
            add(sources, id, code);
        }
        for &id in &usable {
            add(sources, id, HierarchyCode::AnyOldParent);
        }
        // Squid then appends the default parent as DEFAULT_PARENT; it is
        // always already listed (squid-spec 3.2), so nothing changes.
    };
    let direct_source = Source::direct(host, port);
    match direct {
        Direct::Yes => sources.push(direct_source),
        Direct::No => parents(&mut sources),
        Direct::Maybe => {
            let prefer = config.prefer_direct.value;
            if prefer {
                sources.push(direct_source.clone());
            }
            if req.hierarchical || !config.nonhierarchical_direct.value {
                parents(&mut sources);
            }
            if !prefer {
                sources.push(direct_source);
            }
        }
    }
    Selection {
        sources,
        timed_out: replies.is_some_and(|r| r.timed_out),
        replies: replies.cloned(),
    }
}

/// The peers layer as the HTTP layer uses it: the table and its hash
/// member sets (both rebuilt on reload) and the ICP client (shared across
/// reloads, made on first use).
pub struct Neighbours {
    pub table: Arc<PeerTable>,
    /// The hash-based parent sets of `table`'s configuration.
    pub hashes: Arc<HashParents>,
    icp: Arc<Mutex<IcpShared>>,
}

/// What every generation of [`Neighbours`] shares: the ICP and HTCP
/// clients, the responders' sockets they send from (or, in tests, the
/// address they bind their own to: udp_outgoing_address of the newest
/// configuration), and the task counting multicast groups.
struct IcpShared {
    local: Option<IpAddr>,
    /// The responders' sockets the clients send from (the daemon's);
    /// `None`: each client binds an ephemeral socket of its own (tests).
    sockets: Option<Arc<QuerySockets>>,
    /// The sockets the current clients were made on.
    icp_on: Option<QuerySocket>,
    htcp_on: Option<QuerySocket>,
    /// The newest table: replies that match no query are credited to it,
    /// and its multicast groups are the ones counted.
    table: Arc<PeerTable>,
    client: Option<Arc<IcpClient>>,
    htcp: Option<Arc<HtcpClient>>,
    /// The clients' counters, kept across the clients a reload makes anew
    /// (mgr pages and /metrics never go backwards).
    icp_counters: Arc<super::icp_client::ClientCounters>,
    htcp_counters: Arc<super::htcp_client::HtcpClientCounters>,
    counter: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for IcpShared {
    fn drop(&mut self) {
        if let Some(task) = self.counter.take() {
            task.abort();
        }
    }
}

/// Counts the responders of every multicast group of the newest table
/// when its count is due (squid-spec 1.9), for as long as any generation
/// of [`Neighbours`] lives.
async fn count_multicast_groups(shared: std::sync::Weak<Mutex<IcpShared>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (table, client) = {
            let mut icp = lock(&shared);
            let table = Arc::clone(&icp.table);
            if !table
                .peers
                .iter()
                .any(|p| p.config.peer_type == PeerType::Multicast)
            {
                continue;
            }
            (table, icp.client())
        };
        drop(shared);
        let Some(client) = client else { continue };
        for id in table.mcast_counts_due(Instant::now()) {
            let (client, table) = (Arc::clone(&client), Arc::clone(&table));
            tokio::spawn(async move { client.count_group(&table, id).await });
        }
    }
}

impl IcpShared {
    /// The ICP client, made on first use (inside the runtime) and again
    /// when the ICP responder's socket changed. With no icp_port it is
    /// one that sends no ICP query (Squid's "ICP is disabled!").
    fn client(&mut self) -> Option<Arc<IcpClient>> {
        let Some(sockets) = &self.sockets else {
            return bound_once(&mut self.client, "ICP", || {
                IcpClient::bind(
                    self.local,
                    Arc::clone(&self.table),
                    Arc::clone(&self.icp_counters),
                )
            });
        };
        let now = sockets.icp.get();
        if self.client.is_none() || !same_socket(&now, &self.icp_on) {
            self.client = Some(Arc::new(IcpClient::on(
                now.as_ref(),
                self.local,
                Arc::clone(&self.table),
                Arc::clone(&self.icp_counters),
            )));
            self.icp_on = now;
        }
        self.client.clone()
    }

    /// The HTCP client, made on first use (inside the runtime) and again
    /// when the HTCP responder's socket changed; none without htcp_port.
    fn htcp_client(&mut self) -> Option<Arc<HtcpClient>> {
        let Some(sockets) = &self.sockets else {
            return bound_once(&mut self.htcp, "HTCP", || {
                HtcpClient::bind(
                    self.local,
                    Arc::clone(&self.table),
                    Arc::clone(&self.htcp_counters),
                )
            });
        };
        let now = sockets.htcp.get();
        if self.htcp.is_none() || !same_socket(&now, &self.htcp_on) {
            self.htcp = now.as_ref().map(|q| {
                Arc::new(HtcpClient::on(
                    q,
                    Arc::clone(&self.table),
                    Arc::clone(&self.htcp_counters),
                ))
            });
            self.htcp_on = now;
        }
        self.htcp.clone()
    }
}

fn same_socket(a: &Option<QuerySocket>, b: &Option<QuerySocket>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same(b),
        _ => false,
    }
}

/// The client in `slot`, bound by `bind` first when there is none yet; a
/// failure is logged and left for the next use to retry.
fn bound_once<C>(
    slot: &mut Option<Arc<C>>,
    protocol: &str,
    bind: impl FnOnce() -> std::io::Result<C>,
) -> Option<Arc<C>> {
    if slot.is_none() {
        match bind() {
            Ok(c) => *slot = Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!("cannot open the {protocol} client socket: {e}");
                return None;
            }
        }
    }
    slot.clone()
}

impl Neighbours {
    /// Neighbours whose ICP and HTCP clients bind ephemeral sockets of
    /// their own on udp_outgoing_address (tests).
    pub fn new(config: &Config) -> Neighbours {
        Neighbours::build(config, None)
    }

    /// Neighbours whose queries leave from the responders' sockets in
    /// `sockets`, as Squid's do (the daemon's).
    pub fn on_sockets(config: &Config, sockets: Arc<QuerySockets>) -> Neighbours {
        Neighbours::build(config, Some(sockets))
    }

    fn build(config: &Config, sockets: Option<Arc<QuerySockets>>) -> Neighbours {
        let table = Arc::new(PeerTable::new(config, None));
        Neighbours {
            hashes: Arc::new(HashParents::new(&table)),
            icp: Arc::new(Mutex::new(IcpShared {
                sockets,
                icp_on: None,
                htcp_on: None,
                local: config.udp_outgoing_address.value,
                table: Arc::clone(&table),
                client: None,
                htcp: None,
                icp_counters: Arc::default(),
                htcp_counters: Arc::default(),
                counter: None,
            })),
            table,
        }
    }

    /// The same neighbours under a new config: peers that stay keep their
    /// state. The ICP and HTCP clients are kept unless udp_outgoing_address
    /// changed: then the next query makes new ones (on the responders'
    /// sockets, which the daemon rebinds; in tests, on new sockets of their
    /// own). Queries in flight hold the old clients; replies that reach
    /// them later are dropped (their queries are over).
    pub fn reconfigure(&self, config: &Config) -> Neighbours {
        let table = Arc::new(PeerTable::new(config, Some(&self.table)));
        {
            let mut icp = lock(&self.icp);
            icp.table = Arc::clone(&table);
            let local = config.udp_outgoing_address.value;
            if icp.local != local {
                icp.local = local;
                icp.client = None;
                icp.htcp = None;
            } else {
                if let Some(c) = &icp.client {
                    c.set_table(Arc::clone(&table));
                }
                if let Some(c) = &icp.htcp {
                    c.set_table(Arc::clone(&table));
                }
            }
        }
        Neighbours {
            hashes: Arc::new(HashParents::new(&table)),
            table,
            icp: Arc::clone(&self.icp),
        }
    }

    /// The ICP client, bound on first use (inside the runtime).
    pub fn icp_client(&self) -> Option<Arc<IcpClient>> {
        lock(&self.icp).client()
    }

    /// The ICP client's counters, across every client a reload made
    /// (never binds one).
    pub fn icp_counters(&self) -> Option<Arc<super::icp_client::ClientCounters>> {
        Some(Arc::clone(&lock(&self.icp).icp_counters))
    }

    /// The HTCP client's counters, as [`Neighbours::icp_counters`].
    pub fn htcp_counters(&self) -> Option<Arc<super::htcp_client::HtcpClientCounters>> {
        Some(Arc::clone(&lock(&self.icp).htcp_counters))
    }

    /// Starts counting multicast groups' responders in the background
    /// (inside the runtime), once for all generations, when this one has a
    /// multicast peer. Client queries never count: they wait for the
    /// average of these counts (squid-spec 1.9).
    pub fn start_multicast_counts(&self) {
        let multicast = self
            .table
            .peers
            .iter()
            .any(|p| p.config.peer_type == PeerType::Multicast);
        let mut icp = lock(&self.icp);
        if multicast && icp.counter.is_none() {
            icp.counter = Some(tokio::spawn(count_multicast_groups(Arc::downgrade(
                &self.icp,
            ))));
        }
    }

    /// The HTCP client, bound on first use (inside the runtime).
    pub fn htcp_client(&self) -> Option<Arc<HtcpClient>> {
        lock(&self.icp).htcp_client()
    }

    /// Sends HTCP CLRs for `url` to the `htcp` peers whose options allow it
    /// (squid-spec 2.6); returns how many datagrams went out.
    pub fn send_clr(&self, url: &str, trigger: ClrTrigger) -> usize {
        if !self.table.peers.iter().any(|p| p.speaks_htcp()) {
            return 0;
        }
        self.htcp_client()
            .map_or(0, |c| c.send_clr(&self.table, url, trigger))
    }

    /// Starts TCP liveness probes of peers that are down (at most one per
    /// peer per second), as Squid does whenever it consults a down peer.
    pub fn probe_down_peers(&self, tcp_local: Option<IpAddr>, default_timeout: Duration) {
        if self.table.peers.is_empty() {
            return;
        }
        for id in self.table.probes_due(Instant::now()) {
            let timeout = self
                .table
                .get(id)
                .and_then(|p| p.config.connect_timeout)
                .unwrap_or(default_timeout);
            tokio::spawn(Arc::clone(&self.table).probe(id, tcp_local, timeout));
        }
    }

    /// Full selection for a miss: the direct decision, ICP queries (HTCP
    /// TST for `htcp` peers, carrying the request's `headers`) to the peers
    /// that would be pinged (when any), then the source list.
    pub async fn select(
        &self,
        config: &Config,
        req: &SelectRequest<'_>,
        headers: &http::HeaderMap,
    ) -> Selection {
        let now = Instant::now();
        let direct = direct(config, req);
        let mut replies = None;
        if direct != Direct::Yes && (req.hierarchical || direct == Direct::No) {
            let start = self.table.next_ping_start();
            let mut targets = to_ping(&self.table, config, req, start, now);
            if !targets.is_empty() {
                if let Some(client) = self.icp_client() {
                    let htcp_peers: Vec<PeerId> = targets
                        .iter()
                        .map(|(id, _)| *id)
                        .filter(|id| self.table.get(*id).is_some_and(|p| p.speaks_htcp()))
                        .collect();
                    let htcp = if htcp_peers.is_empty() {
                        None
                    } else {
                        self.htcp_client()
                    };
                    if htcp.is_none() {
                        // No HTCP socket: its peers are not asked nor
                        // waited for, and Squid says so for each.
                        targets.retain(|(id, _)| {
                            let asked = !htcp_peers.contains(id);
                            if !asked {
                                tracing::warn!(
                                    "HTCP is disabled! Cannot send HTCP request to peer."
                                );
                            }
                            asked
                        });
                    }
                    let round = htcp
                        .as_ref()
                        .map(|c| c.round(&self.table, req.access.url, headers));
                    let send = |at: Instant, tx: &_| {
                        round.as_ref().map_or(0, |r| r.send(&htcp_peers, at, tx))
                    };
                    let co: Option<&super::icp_client::CoQuery<'_>> =
                        round.is_some().then_some(&send);
                    replies = Some(
                        client
                            .query_with(&self.table, req.access.url, &targets, co)
                            .await,
                    );
                }
            }
        }
        select(
            &self.table,
            &self.hashes,
            config,
            req,
            direct,
            replies.as_ref(),
            Instant::now(),
        )
    }

    /// Selection without ICP (revalidations, other methods).
    pub fn select_without_queries(&self, config: &Config, req: &SelectRequest<'_>) -> Selection {
        let direct = direct(config, req);
        select(
            &self.table,
            &self.hashes,
            config,
            req,
            direct,
            None,
            Instant::now(),
        )
    }

    /// A fetch from peer `id` is starting: counts it against max-conn
    /// until the guard drops.
    pub fn open(&self, id: PeerId) -> ConnGuard {
        if let Some(p) = self.table.get(id) {
            let mut s = p.state();
            s.open_conns += 1;
            s.fetches += 1;
        }
        ConnGuard {
            table: Arc::clone(&self.table),
            id,
        }
    }

    /// The outcome of connecting to peer `id`.
    pub fn note_connect(&self, id: PeerId, ok: bool) {
        if ok {
            self.table.note_tcp_success(id);
        } else {
            self.table.note_tcp_failure(id);
        }
    }
}

/// Holds one of a peer's max-conn slots.
pub struct ConnGuard {
    table: Arc<PeerTable>,
    id: PeerId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(p) = self.table.get(self.id) {
            let mut s = p.state();
            s.open_conns = s.open_conns.saturating_sub(1);
        }
    }
}

/// `tcp_outgoing_address`: the first line whose ACLs all match.
pub fn tcp_outgoing_address(config: &Config, req: &access::Request<'_>) -> Option<IpAddr> {
    config
        .tcp_outgoing_address
        .iter()
        .find(|line| access::matches_all(&line.acls, config, req))
        .map(|line| line.address)
}

/// A login= value with its %-escapes decoded as Squid decodes them: `%%`
/// is `%`, `%XX` is that byte unless it is 0; anything else stays as it is.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        i += 1;
        if c != b'%' {
            out.push(c);
            continue;
        }
        if b.get(i) == Some(&b'%') {
            out.push(b'%');
            i += 1;
            continue;
        }
        let hex = b
            .get(i..i + 2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|d| d.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) if v != 0 => {
                out.push(v);
                i += 2;
            }
            _ => out.push(b'%'),
        }
    }
    out
}

fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::load_str_sandboxed;
    use cuttle_protocol::icp::Opcode;
    use std::net::Ipv4Addr;

    pub(crate) fn config(text: &str) -> Config {
        let loaded = load_str_sandboxed(text, "test");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.config
    }

    /// A table with every peer TCP-up (probed).
    fn table(config: &Config) -> PeerTable {
        let t = PeerTable::new(config, None);
        for id in 0..t.peers.len() {
            t.note_tcp_success(id);
        }
        t
    }

    /// Neighbours of `config` with every peer TCP-up (probed).
    pub(crate) fn neighbours_up(config: &Config) -> Neighbours {
        let n = Neighbours::new(config);
        for id in 0..n.table.peers.len() {
            n.table.note_tcp_success(id);
        }
        n
    }

    pub(crate) fn request<'a>(method: &'a str, host: &'a str, url: &'a str) -> SelectRequest<'a> {
        SelectRequest {
            access: access::Request {
                client: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                method,
                scheme: "http",
                host,
                port: 80,
                path: "/x",
                url,
                local_ip: None,
                local_port: 0,
                port_name: "",
                dst_addrs: None,
            },
            hierarchical: hierarchical(method, false, false, false),
            siblings_ok: true,
            looped: false,
            accel_no_direct: false,
        }
    }

    fn get() -> SelectRequest<'static> {
        request("GET", "example.test", "http://example.test/x")
    }

    /// The selection as `CODE/host` strings.
    fn codes(s: &Selection) -> Vec<String> {
        s.sources
            .iter()
            .map(|s| format!("{}/{}", s.code.as_str(), s.host))
            .collect()
    }

    fn replies(hit: Option<PeerId>, parent_miss: Option<PeerId>, timed_out: bool) -> Replies {
        Replies {
            hit,
            first_parent_miss: parent_miss,
            timed_out,
            ..Replies::default()
        }
    }

    fn run(text: &str, req: &SelectRequest<'_>, r: Option<&Replies>) -> Vec<String> {
        let c = config(text);
        let t = table(&c);
        let d = direct(&c, req);
        codes(&select(
            &t,
            &HashParents::new(&t),
            &c,
            req,
            d,
            r,
            Instant::now(),
        ))
    }

    const MESH: &str = "cache_peer 127.0.0.2 sibling 3128 3130\n\
                        cache_peer 127.0.0.3 parent 3128 3130\n\
                        cache_peer 127.0.0.4 parent 3128 3130\n";

    #[test]
    fn no_peers_goes_direct() {
        assert_eq!(run("", &get(), None), vec!["HIER_DIRECT/example.test"]);
    }

    #[test]
    fn sibling_hit_first_then_parents_then_direct() {
        let r = replies(Some(0), None, false);
        assert_eq!(
            run(MESH, &get(), Some(&r)),
            vec![
                "SIBLING_HIT/127.0.0.2",
                "FIRSTUP_PARENT/127.0.0.3",
                "ANY_OLD_PARENT/127.0.0.4",
                "HIER_DIRECT/example.test"
            ]
        );
    }

    #[test]
    fn parent_hit_is_logged_as_parent_hit() {
        let r = replies(Some(2), None, false);
        assert_eq!(
            run(MESH, &get(), Some(&r))[..2],
            ["PARENT_HIT/127.0.0.4", "FIRSTUP_PARENT/127.0.0.3"]
        );
    }

    #[test]
    fn first_parent_miss_leads_when_no_hit_unless_the_wait_timed_out() {
        let c = config(MESH);
        let t = table(&c);
        let run = |r: &Replies| {
            select(
                &t,
                &HashParents::new(&t),
                &c,
                &get(),
                Direct::Maybe,
                Some(r),
                Instant::now(),
            )
        };
        let s = run(&replies(None, Some(2), false));
        assert!(!s.timed_out);
        assert_eq!(
            codes(&s),
            vec![
                "FIRST_PARENT_MISS/127.0.0.4",
                "FIRSTUP_PARENT/127.0.0.3",
                "HIER_DIRECT/example.test"
            ]
        );
        // Timed out: the MISSes that came are not used (Squid 5.7, seen),
        // for a closest parent neither; the list is logged TIMEOUT_.
        let mut late = replies(None, Some(2), true);
        late.closest_parent_miss = Some(2);
        let s = run(&late);
        assert!(s.timed_out);
        assert_eq!(
            codes(&s),
            vec![
                "FIRSTUP_PARENT/127.0.0.3",
                "ANY_OLD_PARENT/127.0.0.4",
                "HIER_DIRECT/example.test"
            ]
        );
    }

    #[test]
    fn closest_parent_miss_leads_before_first_parent_miss_but_after_a_hit() {
        let mut r = replies(None, Some(1), false);
        r.closest_parent_miss = Some(2);
        assert_eq!(
            run(MESH, &get(), Some(&r)),
            vec![
                "CLOSEST_PARENT_MISS/127.0.0.4",
                "FIRSTUP_PARENT/127.0.0.3",
                "HIER_DIRECT/example.test"
            ]
        );
        r.hit = Some(0);
        assert_eq!(run(MESH, &get(), Some(&r))[0], "SIBLING_HIT/127.0.0.2");
        // never_direct: the closest parent, then the others.
        let text = format!("{MESH}never_direct allow all\n");
        r.hit = None;
        assert_eq!(
            run(&text, &get(), Some(&r)),
            vec!["CLOSEST_PARENT_MISS/127.0.0.4", "FIRSTUP_PARENT/127.0.0.3"]
        );
    }

    #[test]
    fn prefer_direct_puts_direct_before_parents() {
        let text = format!("{MESH}prefer_direct on\n");
        assert_eq!(
            run(&text, &get(), None),
            vec![
                "HIER_DIRECT/example.test",
                "FIRSTUP_PARENT/127.0.0.3",
                "ANY_OLD_PARENT/127.0.0.4"
            ]
        );
    }

    #[test]
    fn always_direct_skips_peers_and_hits() {
        let text = format!("{MESH}always_direct allow all\n");
        let r = replies(Some(0), None, false);
        assert_eq!(
            run(&text, &get(), Some(&r)),
            vec!["HIER_DIRECT/example.test"]
        );
    }

    #[test]
    fn never_direct_lists_parents_only() {
        let text = format!("{MESH}never_direct allow all\n");
        assert_eq!(
            run(&text, &get(), None),
            vec!["FIRSTUP_PARENT/127.0.0.3", "ANY_OLD_PARENT/127.0.0.4"]
        );
        // never_direct beats the loop rule.
        let mut looped = get();
        looped.looped = true;
        assert_eq!(run(&text, &looped, None).len(), 2);
    }

    #[test]
    fn loop_goes_direct() {
        let mut looped = get();
        looped.looped = true;
        assert_eq!(run(MESH, &looped, None), vec!["HIER_DIRECT/example.test"]);
    }

    #[test]
    fn nonhierarchical_requests_go_direct_unless_told_otherwise() {
        let post = request("POST", "example.test", "http://example.test/x");
        assert!(!post.hierarchical);
        assert_eq!(run(MESH, &post, None), vec!["HIER_DIRECT/example.test"]);
        let text = format!("{MESH}nonhierarchical_direct off\n");
        assert_eq!(run(&text, &post, None)[0], "FIRSTUP_PARENT/127.0.0.3");
        assert!(!hierarchical("GET", true, false, false), "credentials");
        assert!(!hierarchical("HEAD", false, false, false));
        assert!(hierarchical("TRACE", false, false, false));
    }

    #[test]
    fn round_robin_parents_alternate() {
        let text = "cache_peer 127.0.0.3 parent 3128 0 round-robin\n\
                    cache_peer 127.0.0.4 parent 3128 0 round-robin\n";
        let c = config(text);
        let t = table(&c);
        let firsts: Vec<String> = (0..4)
            .map(|_| {
                codes(&select(
                    &t,
                    &HashParents::new(&t),
                    &c,
                    &get(),
                    Direct::Maybe,
                    None,
                    Instant::now(),
                ))[0]
                    .clone()
            })
            .collect();
        assert_eq!(
            firsts,
            vec![
                "ROUNDROBIN_PARENT/127.0.0.4",
                "ROUNDROBIN_PARENT/127.0.0.3",
                "ROUNDROBIN_PARENT/127.0.0.4",
                "ROUNDROBIN_PARENT/127.0.0.3"
            ]
        );
    }

    #[test]
    fn default_parent_is_first_up_as_in_squid() {
        let text = "cache_peer 127.0.0.3 parent 3128 0\n\
                    cache_peer 127.0.0.4 parent 3128 0 default\n";
        assert_eq!(
            run(text, &get(), None),
            vec![
                "FIRSTUP_PARENT/127.0.0.3",
                "ANY_OLD_PARENT/127.0.0.4",
                "HIER_DIRECT/example.test"
            ]
        );
    }

    #[test]
    fn down_parents_are_skipped() {
        let c = config(MESH);
        let t = PeerTable::new(&c, None);
        t.note_tcp_success(2);
        let s = select(
            &t,
            &HashParents::new(&t),
            &c,
            &get(),
            Direct::Maybe,
            None,
            Instant::now(),
        );
        assert_eq!(
            codes(&s),
            vec!["FIRSTUP_PARENT/127.0.0.4", "HIER_DIRECT/example.test"]
        );
    }

    #[test]
    fn cache_peer_access_and_neighbor_type_domain_apply() {
        let text = "acl other dstdomain .other.test\n\
                    cache_peer 127.0.0.3 parent 3128 3130\n\
                    cache_peer_access 127.0.0.3 deny other\n\
                    cache_peer 127.0.0.4 sibling 3128 3130\n\
                    neighbor_type_domain 127.0.0.4 parent .example.test\n";
        let c = config(text);
        let t = table(&c);
        let other = request("GET", "www.other.test", "http://www.other.test/x");
        assert_eq!(
            codes(&select(
                &t,
                &HashParents::new(&t),
                &c,
                &other,
                Direct::Maybe,
                None,
                Instant::now()
            )),
            vec!["HIER_DIRECT/www.other.test"],
            "the parent is denied, the sibling stays a sibling"
        );
        let s = select(
            &t,
            &HashParents::new(&t),
            &c,
            &get(),
            Direct::Maybe,
            None,
            Instant::now(),
        );
        assert_eq!(
            codes(&s),
            vec![
                "FIRSTUP_PARENT/127.0.0.3",
                "ANY_OLD_PARENT/127.0.0.4",
                "HIER_DIRECT/example.test"
            ]
        );
        // A hit from it is a PARENT_HIT for this domain.
        let r = replies(Some(1), None, false);
        assert_eq!(
            codes(&select(
                &t,
                &HashParents::new(&t),
                &c,
                &get(),
                Direct::Maybe,
                Some(&r),
                Instant::now()
            ))[0],
            "PARENT_HIT/127.0.0.4"
        );
        // Pinged: both for example.test; only the sibling for other.test.
        let now = Instant::now();
        assert_eq!(
            to_ping(&t, &c, &get(), 0, now),
            vec![(0, PeerType::Parent), (1, PeerType::Parent)]
        );
        assert_eq!(
            to_ping(&t, &c, &other, 0, now),
            vec![(1, PeerType::Sibling)]
        );
    }

    #[test]
    fn who_is_pinged() {
        let text = "cache_peer 127.0.0.2 sibling 3128 3130\n\
                    cache_peer 127.0.0.3 parent 3128 3130 no-query\n\
                    cache_peer 127.0.0.4 parent 3128 0\n\
                    cache_peer 127.0.0.5 parent 3128 3130\n\
                    cache_peer 239.1.2.3 multicast 3128 3130 ttl=4\n";
        let c = config(text);
        let t = table(&c);
        let now = Instant::now();
        assert_eq!(
            to_ping(&t, &c, &get(), 0, now),
            vec![
                (0, PeerType::Sibling),
                (3, PeerType::Parent),
                (4, PeerType::Multicast)
            ]
        );
        // Rotating start.
        assert_eq!(
            to_ping(&t, &c, &get(), 2, now),
            vec![
                (3, PeerType::Parent),
                (4, PeerType::Multicast),
                (0, PeerType::Sibling)
            ]
        );
        // Siblings are not asked for a client reload (no-cache).
        let mut reload = get();
        reload.siblings_ok = false;
        assert_eq!(
            to_ping(&t, &c, &reload, 0, now),
            vec![(3, PeerType::Parent), (4, PeerType::Multicast)]
        );
    }

    #[test]
    fn multicast_responders_are_never_pinged_directly() {
        let text = "cache_peer 239.255.77.1 multicast 3128 3130 ttl=1
                    cache_peer 127.0.0.2 sibling 3128 3130 multicast-responder
                    cache_peer 127.0.0.3 parent 3128 3130 multicast-responder
";
        let c = config(text);
        let t = table(&c);
        assert_eq!(
            to_ping(&t, &c, &get(), 0, Instant::now()),
            vec![(0, PeerType::Multicast)]
        );
    }

    #[test]
    fn sibling_sources_carry_only_if_cached_and_proxy_only() {
        let text = "cache_peer 127.0.0.2 sibling 3128 3130 proxy-only\n\
                    cache_peer 127.0.0.3 sibling 3128 3130 allow-miss\n\
                    cache_peer 127.0.0.4 parent 8080 0 originserver login=user:p%40ss\n";
        let c = config(text);
        let t = table(&c);
        let s = select(
            &t,
            &HashParents::new(&t),
            &c,
            &get(),
            Direct::Maybe,
            Some(&replies(Some(0), None, false)),
            Instant::now(),
        );
        let sib = &s.sources[0];
        assert!(sib.only_if_cached && sib.proxy_only && sib.absolute_form);
        let s = select(
            &t,
            &HashParents::new(&t),
            &c,
            &get(),
            Direct::Maybe,
            Some(&replies(Some(1), None, false)),
            Instant::now(),
        );
        assert!(!s.sources[0].only_if_cached, "allow-miss");
        let parent = s
            .sources
            .iter()
            .find(|s| s.peer == Some(2))
            .expect("parent listed");
        assert!(!parent.only_if_cached && !parent.absolute_form);
        assert_eq!(
            parent.login,
            Some(PeerAuth::Basic("Basic dXNlcjpwQHNz".into()))
        );
    }

    #[test]
    fn login_values_are_unescaped_as_squid_does() {
        // %% is %, %XX a byte (but never NUL), anything else stays.
        assert_eq!(unescape("a%%41%41%00%zz%4"), b"a%41A%00%zz%4");
        assert_eq!(unescape("p%40ss%20w"), b"p@ss w");
    }

    fn b64(s: &str) -> String {
        format!("Basic {}", base64(s.as_bytes()))
    }

    /// The fields sent to peer `id` of `text`'s config (DIRECT when
    /// `None`) for a client with these credentials.
    fn creds(
        text: &str,
        id: Option<PeerId>,
        pa: Option<&str>,
        a: Option<&str>,
        accelerated: bool,
    ) -> (Option<String>, Option<String>) {
        let c = config(text);
        let t = table(&c);
        let source = match id {
            Some(id) => {
                let p = t.get(id).expect("peer");
                Source::peer(id, &p.config, HierarchyCode::AnyOldParent, PeerType::Parent)
            }
            None => Source::direct("example.test", 80),
        };
        let out = credentials(
            &source,
            &ClientCredentials {
                proxy_authorization: pa,
                authorization: a,
                accelerated,
            },
        );
        (out.proxy_authorization, out.authorization)
    }

    #[test]
    fn login_variants_build_the_credentials_squid_sends() {
        let text = "cache_peer 127.0.0.2 parent 3128 0 login=user:p%40ss%%41\n\
                    cache_peer 127.0.0.3 parent 3128 0 login=PASSTHRU\n\
                    cache_peer 127.0.0.4 parent 80 0 originserver login=PASSTHRU\n\
                    cache_peer 127.0.0.5 parent 3128 0 login=*:fixed\n\
                    cache_peer 127.0.0.6 parent 3128 0 login=*@edge:fi%20xed\n\
                    cache_peer 127.0.0.7 parent 3128 0 login=PASS\n\
                    cache_peer 127.0.0.8 parent 80 0 originserver login=PROXYPASS\n\
                    cache_peer 127.0.0.9 parent 80 0 originserver\n\
                    cache_peer 127.0.0.10 parent 3128 0 login=NEGOTIATE\n\
                    cache_peer 127.0.0.11 parent 3128 0\n\
                    cache_peer 127.0.0.12 parent 80 0 originserver login=*:fixed\n\
                    cache_peer 127.0.0.13 parent 80 0 originserver login=u:p\n";
        let alice = b64("alice:secret");
        let pa = Some(alice.as_str());
        let bearer = Some("Bearer tok");
        let s = |v: &str| Some(v.to_string());
        // Direct: no Proxy-Authorization, the client's Authorization.
        assert_eq!(
            creds(text, None, pa, bearer, false),
            (None, s("Bearer tok"))
        );
        // user:password, %-escapes decoded; Authorization still passes.
        assert_eq!(
            creds(text, Some(0), pa, bearer, false),
            (Some(b64("user:p@ss%41")), s("Bearer tok"))
        );
        // PASSTHRU and PASS relay the client's Proxy-Authorization...
        for id in [1, 5] {
            assert_eq!(
                creds(text, Some(id), pa, bearer, false),
                (Some(alice.clone()), s("Bearer tok"))
            );
            assert_eq!(creds(text, Some(id), None, None, false), (None, None));
        }
        // ...and to an originserver, the Authorization.
        assert_eq!(
            creds(text, Some(2), pa, bearer, false),
            (None, s("Bearer tok"))
        );
        // *:password: the client's user with the fixed password; "-" when
        // the client sent no Basic credentials.
        assert_eq!(
            creds(text, Some(3), pa, bearer, false),
            (Some(b64("alice:fixed")), s("Bearer tok"))
        );
        assert_eq!(
            creds(text, Some(3), Some("Digest x=1"), None, false),
            (Some(b64("-:fixed")), None)
        );
        assert_eq!(
            creds(text, Some(4), pa, None, false),
            (Some(b64("alice@edge:fi xed")), None)
        );
        // PROXYPASS to an originserver: the client's Authorization if
        // any, else its Basic Proxy-Authorization.
        assert_eq!(
            creds(text, Some(6), pa, bearer, false),
            (None, s("Bearer tok"))
        );
        assert_eq!(
            creds(text, Some(6), pa, None, false),
            (None, Some(alice.clone()))
        );
        assert_eq!(
            creds(text, Some(6), Some("Digest x=1"), None, false),
            (None, None)
        );
        // An originserver without a relaying login= gets neither.
        assert_eq!(creds(text, Some(7), pa, bearer, false), (None, None));
        // NEGOTIATE (no Kerberos) and no login=: no Proxy-Authorization.
        for id in [8, 9] {
            assert_eq!(
                creds(text, Some(id), pa, bearer, false),
                (None, s("Bearer tok"))
            );
        }
        // On an accelerator port the user is in Authorization.
        assert_eq!(
            creds(text, Some(10), None, Some(&b64("bob:pw")), true),
            (None, Some(b64("bob:fixed")))
        );
        // user:password to an originserver is its Authorization.
        assert_eq!(
            creds(text, Some(11), pa, bearer, false),
            (None, Some(b64("u:p")))
        );
    }

    #[test]
    fn an_accelerated_request_without_allow_direct_never_goes_direct() {
        let mut req = get();
        req.accel_no_direct = true;
        assert_eq!(
            run(MESH, &req, None),
            vec!["FIRSTUP_PARENT/127.0.0.3", "ANY_OLD_PARENT/127.0.0.4"]
        );
        assert!(run("", &req, None).is_empty(), "no parent: nowhere to go");
        // always_direct is checked first, as in Squid.
        let text = format!("{MESH}always_direct allow all\n");
        assert_eq!(run(&text, &req, None), vec!["HIER_DIRECT/example.test"]);
        // Not hierarchical (HEAD): still parents, never DIRECT.
        let mut head = request("HEAD", "example.test", "http://example.test/x");
        head.accel_no_direct = true;
        assert_eq!(run(MESH, &head, None)[0], "FIRSTUP_PARENT/127.0.0.3");
        assert!(!run(MESH, &head, None)
            .iter()
            .any(|c| c.starts_with("HIER_DIRECT")));
    }

    #[test]
    fn tcp_outgoing_address_picks_the_first_matching_line() {
        let text = "acl other dstdomain .other.test\n\
                    tcp_outgoing_address 127.0.3.9 other\n\
                    tcp_outgoing_address 127.0.3.8\n\
                    udp_outgoing_address 127.0.3.7\n";
        let c = config(text);
        assert_eq!(
            c.udp_outgoing_address.value,
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 7)))
        );
        let other = request("GET", "www.other.test", "http://www.other.test/x");
        assert_eq!(
            tcp_outgoing_address(&c, &other.access),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 9)))
        );
        assert_eq!(
            tcp_outgoing_address(&c, &get().access),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 8)))
        );
    }

    /// CARP parents after a round-robin parent, names unequal to hosts.
    const CARP_MESH: &str = "cache_peer 127.0.0.2 parent 3128 0 round-robin\n\
                             cache_peer 127.0.0.3 parent 3128 0 carp name=Alpha weight=1\n\
                             cache_peer 127.0.0.4 parent 3128 0 carp name=beta-2 weight=3\n\
                             cache_peer 127.0.0.5 parent 3128 0 carp name=Gamma weight=2\n";

    /// The CARP members of CARP_MESH, in config order (member index 0..3
    /// is peer id 1..4).
    fn carp_mesh_members() -> Carp {
        Carp::new(&[
            CarpMember {
                name: "Alpha",
                weight: 1,
            },
            CarpMember {
                name: "beta-2",
                weight: 3,
            },
            CarpMember {
                name: "Gamma",
                weight: 2,
            },
        ])
    }

    const CARP_HOSTS: [&str; 3] = ["127.0.0.3", "127.0.0.4", "127.0.0.5"];

    fn urls(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let host = format!("site{}.example.test", i % 17);
                let url = format!("http://{host}/obj/{i}?v={}", i * 7);
                (host, url)
            })
            .collect()
    }

    /// `request` with the path taken from the URL (the CARP key parts).
    fn request_for<'a>(host: &'a str, url: &'a str) -> SelectRequest<'a> {
        let mut r = request("GET", host, url);
        let after_scheme = url.strip_prefix("http://").unwrap_or(url);
        r.access.path = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
        r
    }

    #[test]
    fn hash_member_sets_follow_the_config() {
        let text = format!(
            "{CARP_MESH}cache_peer 127.0.0.6 parent 3128 0 sourcehash\n\
             cache_peer 127.0.0.7 parent 3128 0 userhash\n"
        );
        let c = config(&text);
        let t = table(&c);
        let h = HashParents::new(&t);
        assert_eq!(h.carp_peers(), &[1, 2, 3]);
        assert_eq!(h.sourcehash_peers(), &[4]);
        assert_eq!(h.userhash_peers(), &[5]);
        // A reload rebuilds them from the new lines.
        let n = Neighbours::new(&c);
        assert_eq!(n.hashes.carp_peers(), &[1, 2, 3]);
        let n = n.reconfigure(&config(
            "cache_peer 127.0.0.5 parent 3128 0 carp name=Gamma\n\
             cache_peer 127.0.0.9 parent 3128 0\n",
        ));
        assert_eq!(n.hashes.carp_peers(), &[0]);
        assert!(n.hashes.sourcehash_peers().is_empty());
    }

    #[test]
    fn carp_beats_round_robin_and_first_up_and_matches_the_hash() {
        let c = config(CARP_MESH);
        let t = table(&c);
        let h = HashParents::new(&t);
        let carp = carp_mesh_members();
        let mut per_member = [0usize; 3];
        for (host, url) in urls(300) {
            let req = request_for(&host, &url);
            let got = codes(&select(
                &t,
                &h,
                &c,
                &req,
                Direct::Maybe,
                None,
                Instant::now(),
            ));
            let member = carp.choose(url.as_bytes(), |_| true).expect("a member");
            per_member[member] += 1;
            let first = format!("CARP/{}", CARP_HOSTS[member]);
            assert_eq!(got[0], first, "{url}");
            // Then every other usable parent, in config order, then DIRECT.
            let mut rest: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
                .iter()
                .filter(|&&ip| ip != CARP_HOSTS[member])
                .map(|ip| format!("ANY_OLD_PARENT/{ip}"))
                .collect();
            rest.push(format!("HIER_DIRECT/{host}"));
            assert_eq!(got[1..], rest[..], "{url}");
        }
        assert!(per_member.iter().all(|&n| n > 30), "{per_member:?}");
        // Heavier members get more URLs (weights 1, 3, 2).
        assert!(per_member[1] > per_member[2] && per_member[2] > per_member[0]);
    }

    #[test]
    fn a_dead_or_denied_carp_member_is_skipped_and_only_its_urls_move() {
        let c = config(CARP_MESH);
        let all_up = table(&c);
        let h = HashParents::new(&all_up);
        // beta-2 (peer 2) never came up.
        let t = PeerTable::new(&c, None);
        for id in [0, 1, 3] {
            t.note_tcp_success(id);
        }
        let (mut moved, mut kept) = (0, 0);
        for (host, url) in urls(300) {
            let req = request_for(&host, &url);
            let before = codes(&select(
                &all_up,
                &h,
                &c,
                &req,
                Direct::Maybe,
                None,
                Instant::now(),
            ))[0]
                .clone();
            let after = codes(&select(
                &t,
                &h,
                &c,
                &req,
                Direct::Maybe,
                None,
                Instant::now(),
            ))[0]
                .clone();
            assert!(after.starts_with("CARP/"), "{url}: {after}");
            assert_ne!(after, "CARP/127.0.0.4", "{url}");
            if before == "CARP/127.0.0.4" {
                moved += 1;
                let member = carp_mesh_members()
                    .choose(url.as_bytes(), |m| m != 1)
                    .expect("a member");
                assert_eq!(after, format!("CARP/{}", CARP_HOSTS[member]), "{url}");
            } else {
                kept += 1;
                assert_eq!(after, before, "{url} moved though its parent is up");
            }
        }
        assert!(moved > 50 && kept > 50, "moved {moved}, kept {kept}");

        // cache_peer_access denying beta-2 for one domain: the same.
        let text = format!(
            "acl deny_site0 dstdomain site0.example.test\n{CARP_MESH}\
             cache_peer_access beta-2 deny deny_site0\n"
        );
        let c = config(&text);
        let t = table(&c);
        let h = HashParents::new(&t);
        let carp = carp_mesh_members();
        let mut denied_moves = 0;
        for (host, url) in urls(300) {
            let req = request_for(&host, &url);
            let first = codes(&select(
                &t,
                &h,
                &c,
                &req,
                Direct::Maybe,
                None,
                Instant::now(),
            ))[0]
                .clone();
            let site0 = host == "site0.example.test";
            let member = carp
                .choose(url.as_bytes(), |m| !(site0 && m == 1))
                .expect("a member");
            if site0 && carp.choose(url.as_bytes(), |_| true) == Some(1) {
                denied_moves += 1;
            }
            assert_eq!(first, format!("CARP/{}", CARP_HOSTS[member]), "{url}");
        }
        assert!(denied_moves > 0, "no site0 URL belonged to beta-2");
    }

    #[test]
    fn carp_falls_through_to_round_robin_when_every_member_is_down() {
        let c = config(CARP_MESH);
        let t = PeerTable::new(&c, None);
        t.note_tcp_success(0);
        let h = HashParents::new(&t);
        assert_eq!(
            codes(&select(
                &t,
                &h,
                &c,
                &get(),
                Direct::Maybe,
                None,
                Instant::now()
            )),
            vec!["ROUNDROBIN_PARENT/127.0.0.2", "HIER_DIRECT/example.test"]
        );
    }

    #[test]
    fn carp_key_selects_the_url_parts_per_member() {
        // Alpha hashes only the host: every URL of one host goes to the
        // same parent when Alpha wins, whatever the path.
        let text = "cache_peer 127.0.0.3 parent 3128 0 carp name=Alpha carp-key=host\n\
                    cache_peer 127.0.0.4 parent 3128 0 carp name=beta-2 carp-key=path,params\n\
                    cache_peer 127.0.0.5 parent 3128 0 carp name=Gamma\n";
        let c = config(text);
        let t = table(&c);
        let h = HashParents::new(&t);
        let carp = Carp::new(&[
            CarpMember {
                name: "Alpha",
                weight: 1,
            },
            CarpMember {
                name: "beta-2",
                weight: 1,
            },
            CarpMember {
                name: "Gamma",
                weight: 1,
            },
        ]);
        let mut differs_from_plain = 0;
        for (host, url) in urls(300) {
            let req = request_for(&host, &url);
            let parts = UrlParts {
                full: url.as_bytes(),
                scheme: b"http",
                host: host.as_bytes(),
                port: 80,
                path_and_query: req.access.path.as_bytes(),
            };
            let host_only = CarpKeyParts {
                host: true,
                ..CarpKeyParts::default()
            };
            let path_params = CarpKeyParts {
                path: true,
                params: true,
                ..CarpKeyParts::default()
            };
            let member = carp
                .choose_keyed(
                    |m| match m {
                        0 => carp_key(host_only, &parts),
                        1 => carp_key(path_params, &parts),
                        _ => std::borrow::Cow::Borrowed(parts.full),
                    },
                    |_| true,
                )
                .expect("a member");
            if carp.choose(url.as_bytes(), |_| true) != Some(member) {
                differs_from_plain += 1;
            }
            let got = codes(&select(
                &t,
                &h,
                &c,
                &req,
                Direct::Maybe,
                None,
                Instant::now(),
            ));
            assert_eq!(got[0], format!("CARP/{}", CARP_HOSTS[member]), "{url}");
        }
        assert!(
            differs_from_plain > 30,
            "carp-key changed only {differs_from_plain}"
        );
    }

    #[test]
    fn sourcehash_comes_before_carp_and_hashes_the_client_address() {
        let text = format!(
            "{CARP_MESH}cache_peer 127.0.0.6 parent 3128 0 sourcehash name=s1\n\
             cache_peer 127.0.0.7 parent 3128 0 sourcehash name=S2 weight=2\n"
        );
        let c = config(&text);
        let t = table(&c);
        let h = HashParents::new(&t);
        let hash = SourceHash::new(&[
            CarpMember {
                name: "s1",
                weight: 1,
            },
            CarpMember {
                name: "S2",
                weight: 2,
            },
        ]);
        let mut seen = std::collections::BTreeSet::new();
        for last in 1..=40u8 {
            let client = IpAddr::V4(Ipv4Addr::new(127, 0, 4, last));
            let mut req = get();
            req.access.client = client;
            let member = hash
                .choose(client.to_string().as_bytes(), |_| true)
                .expect("a member");
            let want = format!("SOURCEHASH_PARENT/127.0.0.{}", 6 + member);
            let got = codes(&select(
                &t,
                &h,
                &c,
                &req,
                Direct::Maybe,
                None,
                Instant::now(),
            ));
            assert_eq!(got[0], want, "{client}");
            seen.insert(want);
            // An IPv4-mapped IPv6 client hashes as its IPv4 text.
            req.access.client = IpAddr::V6(Ipv4Addr::new(127, 0, 4, last).to_ipv6_mapped());
            let mapped = codes(&select(
                &t,
                &h,
                &c,
                &req,
                Direct::Maybe,
                None,
                Instant::now(),
            ));
            assert_eq!(mapped[0], got[0], "{client} mapped");
        }
        assert_eq!(seen.len(), 2, "40 clients reached one parent: {seen:?}");
        // IPv6 text as Squid prints it: compressed, no brackets.
        assert_eq!(
            client_address_text("2001:db8:0:0:0:0:0:1".parse().expect("ip")),
            "2001:db8::1"
        );
    }

    #[test]
    fn userhash_never_picks_without_a_user() {
        // cuttle has no proxy authentication, so userhash parents are used
        // as Squid uses them for a request without a user: by the later
        // algorithms only.
        let text = "cache_peer 127.0.0.3 parent 3128 0 userhash name=u1\n\
                    cache_peer 127.0.0.4 parent 3128 0 userhash name=u2\n\
                    cache_peer 127.0.0.5 parent 3128 0 carp\n";
        assert_eq!(
            run(text, &get(), None),
            vec![
                "CARP/127.0.0.5",
                "ANY_OLD_PARENT/127.0.0.3",
                "ANY_OLD_PARENT/127.0.0.4",
                "HIER_DIRECT/example.test"
            ]
        );
        let only_userhash = "cache_peer 127.0.0.3 parent 3128 0 userhash name=u1\n\
                             cache_peer 127.0.0.4 parent 3128 0 userhash name=u2\n";
        assert_eq!(
            run(only_userhash, &get(), None)[0],
            "FIRSTUP_PARENT/127.0.0.3"
        );
    }

    #[test]
    fn a_carp_member_made_a_sibling_for_a_domain_is_skipped_for_a_client_reload() {
        // Squid's peerAllowedToUse: a peer that is a sibling for this host
        // (neighbor_type_domain) is not used for a client reload; CARP
        // itself never asks whether the member is a parent here.
        let text = format!("{CARP_MESH}neighbor_type_domain beta-2 sibling .example.test\n");
        let c = config(&text);
        let t = table(&c);
        let h = HashParents::new(&t);
        let carp = carp_mesh_members();
        let (host, url) = urls(100)
            .into_iter()
            .find(|(_, u)| carp.choose(u.as_bytes(), |_| true) == Some(1))
            .expect("a URL of beta-2");
        let mut req = request_for(&host, &url);
        let first = |req: &SelectRequest<'_>| {
            codes(&select(
                &t,
                &h,
                &c,
                req,
                Direct::Maybe,
                None,
                Instant::now(),
            ))[0]
                .clone()
        };
        assert_eq!(first(&req), "CARP/127.0.0.4");
        req.siblings_ok = false;
        let next = carp.choose(url.as_bytes(), |m| m != 1).expect("a member");
        assert_eq!(first(&req), format!("CARP/{}", CARP_HOSTS[next]));
    }

    #[test]
    fn a_carp_member_at_max_conn_is_skipped() {
        let text = "cache_peer 127.0.0.3 parent 3128 0 carp name=Alpha max-conn=1\n\
                    cache_peer 127.0.0.4 parent 3128 0 carp name=beta-2\n";
        let c = config(text);
        let n = neighbours_up(&c);
        // A URL that belongs to Alpha.
        let carp = Carp::new(&[
            CarpMember {
                name: "Alpha",
                weight: 1,
            },
            CarpMember {
                name: "beta-2",
                weight: 1,
            },
        ]);
        let (host, url) = urls(100)
            .into_iter()
            .find(|(_, u)| carp.choose(u.as_bytes(), |_| true) == Some(0))
            .expect("a URL of Alpha");
        let req = request_for(&host, &url);
        let first = |n: &Neighbours| codes(&n.select_without_queries(&c, &req))[0].clone();
        assert_eq!(first(&n), "CARP/127.0.0.3");
        let guard = n.open(0);
        assert_eq!(first(&n), "CARP/127.0.0.4", "Alpha is at max-conn");
        drop(guard);
        assert_eq!(first(&n), "CARP/127.0.0.3");
    }

    /// Receives one ICP query on each socket, then answers them MISS in
    /// the order given (so they arrive in that order at the client's one
    /// socket), each with its version and, when given, SRC_RTT option data.
    /// Returns each query's options word.
    async fn answer_misses(answers: [(&tokio::net::UdpSocket, u8, Option<u32>); 2]) -> [u32; 2] {
        let mut replies = Vec::new();
        for (sock, version, src_rtt) in answers {
            let mut buf = [0u8; 2048];
            let (len, from) = sock.recv_from(&mut buf).await.expect("query");
            let q = cuttle_protocol::icp::parse(&buf[..len]).expect("valid query");
            let mut reply = q.reply(Opcode::Miss).expect("reply");
            if let Some(data) = src_rtt {
                reply.options =
                    cuttle_protocol::icp::Options(cuttle_protocol::icp::Options::SRC_RTT);
                reply.option_data = data;
            }
            let mut out = Vec::new();
            reply.encode(&mut out).expect("encode");
            out[1] = version;
            replies.push((sock, out, from, q.options.0));
        }
        let mut asked = [0; 2];
        for (i, (sock, out, from, options)) in replies.into_iter().enumerate() {
            sock.send_to(&out, from).await.expect("send");
            asked[i] = options;
        }
        asked
    }

    #[tokio::test]
    async fn query_icmp_asks_v2_parents_for_their_rtt_and_the_closest_leads() {
        use tokio::net::UdpSocket;
        let a = UdpSocket::bind("127.0.8.41:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.8.42:0").await.expect("bind");
        let text = format!(
            "query_icmp on\nicp_query_timeout 5000\n\
             cache_peer 127.0.8.41 parent 3128 {} name=a\n\
             cache_peer 127.0.8.42 parent 3128 {} name=b\n",
            a.local_addr().expect("addr").port(),
            b.local_addr().expect("addr").port()
        );
        let c = config(&text);
        let n = neighbours_up(&c);
        let client = n.icp_client().expect("client");
        let req = get();
        let flag = cuttle_protocol::icp::Options::SRC_RTT;
        // Round 1: a answers first without an RTT (and as version 3), b
        // next with 7 ms: b is the closest, a only the first.
        let targets = to_ping(&n.table, &c, &req, 0, Instant::now());
        let (asked, [qa, qb]) = tokio::join!(
            client.query(&n.table, "http://example.test/x", &targets),
            answer_misses([(&a, 3, None), (&b, 2, Some(7))])
        );
        assert_eq!((qa, qb), (flag, flag), "both peers are version 2 so far");
        assert_eq!(asked.first_parent_miss, Some(0));
        assert_eq!(asked.closest_parent_miss, Some(1));
        let s = select(
            &n.table,
            &n.hashes,
            &c,
            &req,
            Direct::Maybe,
            Some(&asked),
            Instant::now(),
        );
        assert_eq!(codes(&s)[0], "CLOSEST_PARENT_MISS/127.0.8.42");
        // Round 2: a answered version 3, so it is no longer asked.
        let targets = to_ping(&n.table, &c, &req, 0, Instant::now());
        let (_, [qa, qb]) = tokio::join!(
            client.query(&n.table, "http://example.test/y", &targets),
            answer_misses([(&a, 2, None), (&b, 2, None)])
        );
        assert_eq!((qa, qb), (0, flag));

        // query_icmp off: nobody is asked, and a reported RTT is ignored.
        let c = config(&text.replace("query_icmp on", "query_icmp off"));
        let n = neighbours_up(&c);
        let client = n.icp_client().expect("client");
        let targets = to_ping(&n.table, &c, &req, 0, Instant::now());
        let (asked, [qb, qa]) = tokio::join!(
            client.query(&n.table, "http://example.test/z", &targets),
            answer_misses([(&b, 2, None), (&a, 2, Some(1))])
        );
        assert_eq!((qa, qb), (0, 0));
        assert_eq!(
            (asked.closest_parent_miss, asked.first_parent_miss),
            (None, Some(1))
        );
    }

    #[tokio::test]
    async fn clients_send_from_the_published_responder_sockets_and_follow_them() {
        use crate::peers::querier::{Inbox, QuerySocket, QuerySockets};
        let sockets = Arc::new(QuerySockets::default());
        let n = Neighbours::on_sockets(&config(""), Arc::clone(&sockets));
        // No icp_port, no htcp_port: an ICP client that sends nothing, no
        // HTCP client.
        assert!(n.icp_client().expect("client").local_addr().is_err());
        assert!(n.htcp_client().is_none());
        let lend = |socket: &Arc<std::net::UdpSocket>| QuerySocket {
            socket: Arc::downgrade(socket),
            inbox: Arc::new(Inbox::default()),
        };
        let bind = || Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let (icp, htcp) = (bind(), bind());
        sockets.icp.set(Some(lend(&icp)));
        sockets.htcp.set(Some(lend(&htcp)));
        let first = n.icp_client().expect("client");
        assert_eq!(first.local_addr().ok(), icp.local_addr().ok());
        assert_eq!(
            n.htcp_client().expect("client").local_addr().ok(),
            htcp.local_addr().ok()
        );
        assert!(Arc::ptr_eq(&first, &n.icp_client().expect("client")));
        // A rebound responder: the next query sends from its new socket.
        let moved = bind();
        sockets.icp.set(Some(lend(&moved)));
        assert_eq!(
            n.icp_client().expect("client").local_addr().ok(),
            moved.local_addr().ok()
        );
        // A stopped one: its socket is closed, nothing is sent from it.
        drop(moved);
        assert!(n.icp_client().expect("client").local_addr().is_err());
    }

    #[tokio::test]
    async fn the_icp_client_is_rebound_when_udp_outgoing_address_changes() {
        use std::sync::atomic::Ordering;
        let at = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 9, last));
        let n1 = Neighbours::new(&config("udp_outgoing_address 127.0.9.71\n"));
        let first = n1.icp_client().expect("bound");
        assert_eq!(first.local_addr().expect("addr").ip(), at(71));
        let n2 = n1.reconfigure(&config(
            "udp_outgoing_address 127.0.9.71\nicp_query_timeout 50\n",
        ));
        let same = n2.icp_client().expect("bound");
        assert!(Arc::ptr_eq(&first, &same), "same address: same socket");
        first.counters.queries_sent.fetch_add(3, Ordering::Relaxed);
        let n3 = n2.reconfigure(&config("udp_outgoing_address 127.0.9.72\n"));
        let moved = n3.icp_client().expect("bound");
        assert_eq!(moved.local_addr().expect("addr").ip(), at(72));
        // The new client counts on from the old one's figures: mgr pages
        // and /metrics never go backwards across a reload.
        let counted = |n: &Neighbours| {
            n.icp_counters()
                .map(|c| c.queries_sent.load(Ordering::Relaxed))
        };
        assert_eq!(moved.counters.queries_sent.load(Ordering::Relaxed), 3);
        assert_eq!(counted(&n3), Some(3));
        // An older generation (a request still in flight) asks from the
        // new socket too; the old one lives while its holders do.
        assert!(Arc::ptr_eq(&moved, &n1.icp_client().expect("bound")));
        assert_eq!(first.local_addr().expect("addr").ip(), at(71));
    }

    #[tokio::test]
    async fn icp_round_over_real_sockets_first_hit_wins_strays_counted() {
        use tokio::net::UdpSocket;
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let text = format!(
            "cache_peer 127.0.0.1 sibling 3128 {} name=a\ncache_peer 127.0.0.1 sibling 3129 {} name=b\nicp_query_timeout 2000\n",
            a.local_addr().expect("addr").port(),
            b.local_addr().expect("addr").port()
        );
        let c = config(&text);
        let n = neighbours_up(&c);
        let client = n.icp_client().expect("client");
        let url = "http://example.test/x";
        let req = get();
        let answer = |sock: UdpSocket, op: Opcode, spoof: bool| async move {
            let mut buf = [0u8; 1024];
            let (len, from) = sock.recv_from(&mut buf).await.expect("query");
            let q = cuttle_protocol::icp::parse(&buf[..len]).expect("valid query");
            assert_ne!(q.reqnum, 0);
            assert_eq!(q.body.url().0, b"http://example.test/x");
            let mut out = Vec::new();
            if spoof {
                // Wrong reqnum, then a stranger's socket: both ignored.
                let mut bad = q;
                bad.reqnum = q.reqnum.wrapping_add(7);
                bad.reply(Opcode::Hit)
                    .expect("reply")
                    .encode(&mut out)
                    .expect("encode");
                sock.send_to(&out, from).await.expect("send");
                let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                out.clear();
                q.reply(Opcode::Hit)
                    .expect("reply")
                    .encode(&mut out)
                    .expect("encode");
                stranger.send_to(&out, from).await.expect("send");
                sock.send_to(b"garbage", from).await.expect("send");
                tokio::time::sleep(Duration::from_millis(50)).await;
                out.clear();
            }
            q.reply(op)
                .expect("reply")
                .encode(&mut out)
                .expect("encode");
            sock.send_to(&out, from).await.expect("send");
        };
        let ta = tokio::spawn(answer(a, Opcode::Miss, false));
        let tb = tokio::spawn(answer(b, Opcode::Hit, true));
        let targets = to_ping(&n.table, &c, &req, 0, Instant::now());
        assert_eq!(targets.len(), 2);
        let r = client.query(&n.table, url, &targets).await;
        ta.await.expect("a");
        tb.await.expect("b");
        assert_eq!(
            r.hit,
            Some(1),
            "b's HIT wins; its spoofed HIT came first but was dropped"
        );
        assert!(!r.timed_out);
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(client.counters.from_non_peer.load(Relaxed), 1);
        assert_eq!(client.counters.unmatched.load(Relaxed), 1);
        assert_eq!(client.counters.malformed.load(Relaxed), 1);
        let s = select(
            &n.table,
            &n.hashes,
            &c,
            &req,
            Direct::Maybe,
            Some(&r),
            Instant::now(),
        );
        assert_eq!(codes(&s)[0], "SIBLING_HIT/127.0.0.1");
    }
}
