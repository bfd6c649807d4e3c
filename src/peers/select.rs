//! Peer selection in Squid's order (squid-spec 3.1-3.4): decide whether a
//! miss may go direct, which peers to ask with ICP, and, from their
//! replies, the ordered list of sources the HTTP layer walks (a peer with
//! its hierarchy code, or DIRECT), falling back down the list on failure.
//!
//! Not implemented: CARP, sourcehash and userhash parents (they need the
//! CARP hash; such parents are still used as first-up/any-old parents),
//! cache digests, NetDB (cuttle has no ICMP data, so CLOSEST_* never
//! happen) and multicast queries (multicast peers are accepted, not asked).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::icp_client::{IcpClient, Replies};
use super::table::{PeerId, PeerTable};
use crate::access::{self, Verdict};
use crate::access_log::HierarchyCode;
use crate::config::{CachePeer, Config, PeerLogin, PeerType};

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
    /// `Proxy-Authorization` (or `Authorization` for originserver) to send.
    pub authorization: Option<String>,
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
            authorization: None,
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
            authorization: match &p.login {
                Some(PeerLogin::Credentials(c)) => Some(format!("Basic {}", base64(&unescape(c)))),
                _ => None,
            },
            connect_timeout: p.connect_timeout,
        }
    }
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
/// never_direct, loop; else MAYBE. (The accelerator rule is left out:
/// cuttle's accelerator ports go direct when no originserver peer applies.)
pub fn direct(config: &Config, req: &SelectRequest<'_>) -> Direct {
    if allow_listed(&config.always_direct, config, &req.access) {
        return Direct::Yes;
    }
    if allow_listed(&config.never_direct, config, &req.access) {
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
        if !p.queryable() || p.config.peer_type == PeerType::Multicast {
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

/// Squid's selectSomeParent: round-robin, weighted-round-robin,
/// first-up, default (the hash-based ones are not implemented).
fn some_parent(
    table: &PeerTable,
    parents: &[PeerId],
    now: Instant,
) -> Option<(PeerId, HierarchyCode)> {
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
                let code = match table.get(id).map(|p| peer_type_for(&p.config, host)) {
                    Some(PeerType::Parent) => HierarchyCode::ParentHit,
                    _ => HierarchyCode::SiblingHit,
                };
                add(&mut sources, id, code);
            } else if let Some(id) = r.first_parent_miss {
                add(&mut sources, id, HierarchyCode::FirstParentMiss);
            }
        }
    }
    let parents = |sources: &mut Vec<Source>| {
        let usable = usable_parents(table, config, req, now);
        if let Some((id, code)) = some_parent(table, &usable, now) {
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

/// The peers layer as the HTTP layer uses it: the table, the ICP client
/// (shared across reloads, made on first use) and the outgoing addresses.
pub struct Neighbours {
    pub table: Arc<PeerTable>,
    icp: Arc<Mutex<Option<Arc<IcpClient>>>>,
    udp_local: Option<IpAddr>,
}

impl Neighbours {
    pub fn new(config: &Config) -> Neighbours {
        Neighbours {
            table: Arc::new(PeerTable::new(config, None)),
            icp: Arc::default(),
            udp_local: config.udp_outgoing_address.value,
        }
    }

    /// The same neighbours under a new config: peers that stay keep their
    /// state; the ICP client is kept (its address changes at restart).
    pub fn reconfigure(&self, config: &Config) -> Neighbours {
        let table = Arc::new(PeerTable::new(config, Some(&self.table)));
        if let Some(c) = self.icp.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            c.set_table(Arc::clone(&table));
        }
        Neighbours {
            table,
            icp: Arc::clone(&self.icp),
            udp_local: self.udp_local,
        }
    }

    /// The ICP client, bound on first use (inside the runtime).
    pub fn icp_client(&self) -> Option<Arc<IcpClient>> {
        let mut slot = self.icp.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            match IcpClient::bind(self.udp_local, Arc::clone(&self.table)) {
                Ok(c) => *slot = Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!("cannot open the ICP client socket: {e}");
                    return None;
                }
            }
        }
        slot.clone()
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

    /// Full selection for a miss: the direct decision, ICP queries to the
    /// peers that would be pinged (when any), then the source list.
    pub async fn select(&self, config: &Config, req: &SelectRequest<'_>) -> Selection {
        let now = Instant::now();
        let direct = direct(config, req);
        let mut replies = None;
        if direct != Direct::Yes && (req.hierarchical || direct == Direct::No) {
            let start = self.table.next_ping_start();
            let targets = to_ping(&self.table, config, req, start, now);
            if !targets.is_empty() {
                if let Some(client) = self.icp_client() {
                    replies = Some(client.query(&self.table, req.access.url, &targets).await);
                }
            }
        }
        select(
            &self.table,
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
        select(&self.table, config, req, direct, None, Instant::now())
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

/// `%XX` escapes in a login= value decoded (Squid allows them).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b.get(i), hex) {
            (Some(b'%'), Some(v)) => {
                out.push(v);
                i += 3;
            }
            (Some(&c), _) => {
                out.push(c);
                i += 1;
            }
            (None, _) => break,
        }
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                let idx = ((n >> (18 - 6 * k)) & 63) as usize;
                out.push(char::from(ALPHABET.get(idx).copied().unwrap_or(b'=')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str_sandboxed;
    use cuttle_protocol::icp::Opcode;
    use std::net::Ipv4Addr;

    fn config(text: &str) -> Config {
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

    fn request<'a>(method: &'a str, host: &'a str, url: &'a str) -> SelectRequest<'a> {
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
        codes(&select(&t, &c, req, d, r, Instant::now()))
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
    fn first_parent_miss_leads_when_no_hit() {
        let r = replies(None, Some(2), true);
        let c = config(MESH);
        let t = table(&c);
        let s = select(&t, &c, &get(), Direct::Maybe, Some(&r), Instant::now());
        assert!(s.timed_out);
        assert_eq!(
            codes(&s),
            vec![
                "FIRST_PARENT_MISS/127.0.0.4",
                "FIRSTUP_PARENT/127.0.0.3",
                "HIER_DIRECT/example.test"
            ]
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
            .map(|_| codes(&select(&t, &c, &get(), Direct::Maybe, None, Instant::now()))[0].clone())
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
        let s = select(&t, &c, &get(), Direct::Maybe, None, Instant::now());
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
            codes(&select(&t, &c, &other, Direct::Maybe, None, Instant::now())),
            vec!["HIER_DIRECT/www.other.test"],
            "the parent is denied, the sibling stays a sibling"
        );
        let s = select(&t, &c, &get(), Direct::Maybe, None, Instant::now());
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
            vec![(0, PeerType::Sibling), (3, PeerType::Parent)]
        );
        // Rotating start.
        assert_eq!(
            to_ping(&t, &c, &get(), 2, now),
            vec![(3, PeerType::Parent), (0, PeerType::Sibling)]
        );
        // Siblings are not asked for a client reload (no-cache).
        let mut reload = get();
        reload.siblings_ok = false;
        assert_eq!(
            to_ping(&t, &c, &reload, 0, now),
            vec![(3, PeerType::Parent)]
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
        assert_eq!(parent.authorization.as_deref(), Some("Basic dXNlcjpwQHNz"));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
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
        let n = Neighbours::new(&c);
        for id in 0..2 {
            n.table.note_tcp_success(id);
        }
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
        let s = select(&n.table, &c, &req, Direct::Maybe, Some(&r), Instant::now());
        assert_eq!(codes(&s)[0], "SIBLING_HIT/127.0.0.1");
    }
}
