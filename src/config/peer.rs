//! `cache_peer` lines with every option Squid documents and Squid's rules for them, plus the per-peer `cache_peer_access` and `neighbor_type_domain` directives.

use std::time::Duration;

use super::acl::{parse_rule, AccessRule};
use super::directives::Ctx;
use super::lexer::Line;
use super::tls_client::{self, Applied, TlsClientOptions};
use super::values::{parse_int, parse_service, parse_uint, Proto};
use super::Located;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    Parent,
    Sibling,
    Multicast,
}

impl PeerType {
    pub fn name(self) -> &'static str {
        match self {
            PeerType::Parent => "parent",
            PeerType::Sibling => "sibling",
            PeerType::Multicast => "multicast",
        }
    }
}

/// HTCP settings of a peer queried with HTCP (`htcp` / `htcp=a,b`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HtcpOptions {
    /// MINOR 0 and the old bit layout toward this peer.
    pub oldsquid: bool,
    /// Never send CLR to it.
    pub no_clr: bool,
    /// Send only CLR, never TST (the peer is then not queried).
    pub only_clr: bool,
    /// Send CLR for invalidations but not for PURGE.
    pub no_purge_clr: bool,
    /// Relay CLRs we receive to this peer.
    pub forward_clr: bool,
    /// `htcp=monitor` (cuttle's own): subscribe to the peer's cache
    /// activity with HTCP MON and choose it from what it says it holds
    /// (`peers::monitor`). Needs the `cuttle` option: Squid ignores MON.
    pub monitor: bool,
}

/// `login=` variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerLogin {
    /// `login=user:password` as written (may contain URL escapes).
    Credentials(String),
    /// `login=*:password` (or `*suffix:password`): the client's user name
    /// (plus the suffix) with a fixed password; holds the text after `*`.
    ClientUser(String),
    /// `login=PASS`.
    Pass,
    /// `login=PASSTHRU`.
    PassThru,
    /// `login=PROXYPASS`.
    ProxyPass,
    /// `login=NEGOTIATE[:principal]`.
    Negotiate(Option<String>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConnectionAuth {
    On,
    Off,
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEndHttps {
    On,
    Auto,
}

/// `carp-key=`: which URL parts feed the CARP hash (all when unset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarpKey {
    pub scheme: bool,
    pub host: bool,
    pub port: bool,
    pub path: bool,
    pub params: bool,
}

/// `neighbor_type_domain PEER parent|sibling domain...`: treat the peer as
/// this type for requests to these domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDomain {
    pub peer_type: PeerType,
    /// Lower-cased, as written (a leading dot means the domain and below).
    pub domains: Vec<String>,
}

/// One `cache_peer HOST TYPE HTTP_PORT ICP_PORT [options]` line after
/// Squid's normalisation (host lower-cased, weight >= 1, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePeer {
    /// Lower-cased host name or address.
    pub host: String,
    /// `name=`, else the host as written; unique case-insensitively.
    pub name: String,
    pub peer_type: PeerType,
    pub http_port: u16,
    /// ICP port, or HTCP port for `htcp` peers; 0 = no ICP/HTCP.
    pub icp_port: u16,

    pub proxy_only: bool,
    pub no_query: bool,
    pub no_digest: bool,
    /// `closest-only`: an ICP MISS makes this parent the next source only
    /// as the closest parent (SRC_RTT, CLOSEST_PARENT_MISS), never as the
    /// first to answer (FIRST_PARENT_MISS).
    pub closest_only: bool,
    pub background_ping: bool,
    pub round_robin: bool,
    pub weighted_round_robin: bool,
    pub carp: bool,
    /// `load-aware` (cuttle's, on `carp` parents): the CARP share follows
    /// the parent's measured load (peers/load.rs).
    pub load_aware: bool,
    pub userhash: bool,
    pub sourcehash: bool,
    /// `default` (documented "last-resort parent").
    pub default_parent: bool,
    /// At least 1.
    pub weight: u32,
    /// Subtracted from RTTs by weighted-round-robin (milliseconds, like RTTs).
    pub basetime: Duration,
    /// Multicast TTL for queries to a multicast peer, 0-128.
    pub ttl: u8,
    pub multicast_responder: bool,
    pub multicast_siblings: bool,
    /// `Some` when the peer is queried with HTCP instead of ICP.
    pub htcp: Option<HtcpOptions>,
    pub allow_miss: bool,
    /// Per-peer connect timeout; `None` = peer_connect_timeout.
    pub connect_timeout: Option<Duration>,
    /// At least 1 (default 10).
    pub connect_fail_limit: u32,
    /// `None` = no per-peer limit.
    pub max_conn: Option<u32>,
    pub standby: Option<u32>,
    pub originserver: bool,
    pub forceddomain: Option<String>,
    pub login: Option<PeerLogin>,
    pub connection_auth: ConnectionAuth,
    pub auth_no_keytab: bool,
    pub digest_url: Option<String>,
    pub carp_key: Option<CarpKey>,
    pub no_netdb_exchange: bool,
    pub no_delay: bool,
    pub no_tproxy: bool,
    /// `tls` (or legacy `ssl`, or any `tls-*`/`ssl*` option, as in
    /// Squid): connect to the peer over TLS.
    pub tls: bool,
    /// `tls-*=`, `ssl*=` options (meaningful when `tls`).
    pub tls_options: TlsClientOptions,
    pub front_end_https: Option<FrontEndHttps>,
    /// `public-url=` (cuttle's own): where clients reach this peer, for
    /// `holder_redirect`; scheme and authority (and a path prefix), no
    /// trailing slash. Without it, nothing is redirected to the peer.
    pub public_url: Option<String>,
    /// `no-redirect-marker` (cuttle's own): redirects to this peer carry
    /// no marker (a peer that never redirects, e.g. a Squid).
    pub no_redirect_marker: bool,
    /// Found by `mesh_discovery`, not written in squid.conf.
    pub discovered: bool,
    /// `cuttle` (cuttle's own): the admin says this peer runs cuttle, so
    /// it may be sent what only cuttle answers (`htcp=monitor`).
    pub cuttle: bool,

    /// `cache_peer_access` rules for this peer, in order.
    pub access: Vec<Located<AccessRule>>,
    /// `neighbor_type_domain` lines for this peer.
    pub type_domains: Vec<Located<TypeDomain>>,
}

impl CachePeer {
    /// A peer with Squid's defaults for every option.
    pub fn new(
        host: String,
        name: String,
        peer_type: PeerType,
        http_port: u16,
        icp_port: u16,
    ) -> Self {
        CachePeer {
            host,
            name,
            peer_type,
            http_port,
            icp_port,
            proxy_only: false,
            no_query: false,
            no_digest: false,
            closest_only: false,
            background_ping: false,
            round_robin: false,
            weighted_round_robin: false,
            carp: false,
            load_aware: false,
            userhash: false,
            sourcehash: false,
            default_parent: false,
            weight: 1,
            basetime: Duration::ZERO,
            ttl: 0,
            multicast_responder: false,
            multicast_siblings: false,
            htcp: None,
            allow_miss: false,
            connect_timeout: None,
            connect_fail_limit: 10,
            max_conn: None,
            standby: None,
            originserver: false,
            forceddomain: None,
            login: None,
            connection_auth: ConnectionAuth::Auto,
            auth_no_keytab: false,
            digest_url: None,
            carp_key: None,
            no_netdb_exchange: false,
            no_delay: false,
            no_tproxy: false,
            tls: false,
            tls_options: TlsClientOptions::default(),
            front_end_https: None,
            public_url: None,
            no_redirect_marker: false,
            discovered: false,
            cuttle: false,
            access: Vec::new(),
            type_domains: Vec::new(),
        }
    }
}

fn parse_peer_type(s: &str) -> Option<PeerType> {
    match s {
        "parent" => Some(PeerType::Parent),
        // "neighbor"/"neighbour" are Squid's old spellings of sibling.
        "sibling" | "neighbor" | "neighbour" => Some(PeerType::Sibling),
        "multicast" => Some(PeerType::Multicast),
        _ => None,
    }
}

fn valid_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

/// Apply one `htcp=` item (or the part after a deprecated `htcp-`).
fn htcp_item(h: &mut HtcpOptions, item: &str) -> bool {
    match item {
        "oldsquid" => h.oldsquid = true,
        "no-clr" => h.no_clr = true,
        "only-clr" => h.only_clr = true,
        "no-purge-clr" => h.no_purge_clr = true,
        "forward-clr" => h.forward_clr = true,
        "monitor" => h.monitor = true,
        _ => return false,
    }
    true
}

fn parse_login(v: &str) -> Option<PeerLogin> {
    Some(match v {
        "" => return None,
        "PASS" => PeerLogin::Pass,
        "PASSTHRU" => PeerLogin::PassThru,
        "PROXYPASS" => PeerLogin::ProxyPass,
        "NEGOTIATE" => PeerLogin::Negotiate(None),
        _ => {
            if let Some(p) = v.strip_prefix("NEGOTIATE:") {
                PeerLogin::Negotiate(Some(p.to_string()))
            } else if let Some(rest) = v.strip_prefix('*') {
                PeerLogin::ClientUser(rest.to_string())
            } else {
                PeerLogin::Credentials(v.to_string())
            }
        }
    })
}

fn parse_carp_key(v: &str) -> Result<CarpKey, String> {
    let mut key = CarpKey::default();
    for part in v.split(',') {
        match part {
            "scheme" => key.scheme = true,
            "host" => key.host = true,
            "port" => key.port = true,
            "path" => key.path = true,
            "params" => key.params = true,
            other => {
                return Err(format!(
                    "carp-key: \"{other}\" is not one of scheme, host, port, path, params"
                ))
            }
        }
    }
    Ok(key)
}

/// `public-url=`: an absolute http or https URL with a host, perhaps a
/// path prefix, no query or fragment; kept without its trailing slash, so
/// a request's path is appended as it is.
fn parse_public_url(v: &str) -> Result<String, String> {
    let uri: http::Uri = v.parse().map_err(|e| format!("not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("expected an http:// or https:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if uri.query().is_some() || v.contains('#') {
        return Err("the URL may not have a query or fragment".into());
    }
    Ok(v.trim_end_matches('/').to_string())
}

/// Squid options that take no value, and the flag each sets.
fn set_flag(p: &mut CachePeer, option: &str) -> bool {
    let flag = match option {
        "proxy-only" => &mut p.proxy_only,
        "no-query" => &mut p.no_query,
        "no-digest" => &mut p.no_digest,
        "closest-only" => &mut p.closest_only,
        "background-ping" => &mut p.background_ping,
        "round-robin" => &mut p.round_robin,
        "weighted-round-robin" => &mut p.weighted_round_robin,
        "carp" => &mut p.carp,
        "load-aware" => &mut p.load_aware,
        "userhash" => &mut p.userhash,
        "sourcehash" => &mut p.sourcehash,
        "default" => &mut p.default_parent,
        "multicast-responder" => &mut p.multicast_responder,
        "multicast-siblings" => &mut p.multicast_siblings,
        "allow-miss" => &mut p.allow_miss,
        "originserver" => &mut p.originserver,
        "auth-no-keytab" => &mut p.auth_no_keytab,
        "no-netdb-exchange" => &mut p.no_netdb_exchange,
        "no-delay" => &mut p.no_delay,
        "no-tproxy" => &mut p.no_tproxy,
        "tls" | "ssl" => &mut p.tls,
        "no-redirect-marker" => &mut p.no_redirect_marker,
        "cuttle" => &mut p.cuttle,
        _ => return false,
    };
    *flag = true;
    true
}

/// Why a TLS option cuttle does not implement refuses the config.
pub(crate) const NO_TLS: &str = "cuttle does not implement TLS yet; refusing the config";

/// Parse a `cache_peer` line and add the peer.
pub(crate) fn parse_cache_peer(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let args = line.args();
    let (Some(host_t), Some(type_t), Some(http_t), Some(icp_t)) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        ctx.error(
            loc,
            "cache_peer: expected HOST TYPE HTTP_PORT ICP_PORT [options]".into(),
        );
        return;
    };
    let mut bad = false;
    if !valid_host(&host_t.text) {
        ctx.error(
            loc,
            format!(
                "cache_peer: \"{}\" is not a host name or address",
                host_t.text
            ),
        );
        bad = true;
    }
    let peer_type = parse_peer_type(&type_t.text);
    if peer_type.is_none() {
        ctx.error(
            loc,
            format!(
                "cache_peer: peer type \"{}\" is not parent, sibling or multicast",
                type_t.text
            ),
        );
        bad = true;
    }
    let http_port = match parse_service(&http_t.text, Proto::Tcp) {
        Ok(0) => {
            ctx.error(loc, "cache_peer: http port 0 is not usable".into());
            bad = true;
            0
        }
        Ok(p) => p,
        Err(reason) => {
            ctx.error(loc, format!("cache_peer: http port {reason}"));
            bad = true;
            0
        }
    };
    let icp_port = match parse_service(&icp_t.text, Proto::Udp) {
        Ok(p) => p,
        Err(reason) => {
            ctx.error(loc, format!("cache_peer: icp port {reason}"));
            bad = true;
            0
        }
    };
    let Some(peer_type) = peer_type else {
        return;
    };
    let mut p = CachePeer::new(
        host_t.text.to_ascii_lowercase(),
        host_t.text.clone(),
        peer_type,
        http_port,
        icp_port,
    );

    for opt in args.get(4..).unwrap_or(&[]) {
        let text = opt.text.as_str();
        if set_flag(&mut p, text) {
            continue;
        }
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (text, None),
        };
        let mut option_error = |ctx: &mut Ctx<'_, '_>, reason: String| {
            ctx.error(loc, format!("cache_peer: {reason}"));
            bad = true;
        };
        match (key, value) {
            ("htcp", None) => {
                p.htcp.get_or_insert_with(HtcpOptions::default);
            }
            ("htcp", Some(list)) => {
                let h = p.htcp.get_or_insert_with(HtcpOptions::default);
                for item in list.split(',') {
                    if !htcp_item(h, item) {
                        option_error(ctx, format!("\"{item}\" is not an htcp option (oldsquid, no-clr, only-clr, no-purge-clr, forward-clr, monitor)"));
                    }
                }
            }
            (k, None) if k.starts_with("htcp-") => {
                let item = k.get(5..).unwrap_or("");
                let h = p.htcp.get_or_insert_with(HtcpOptions::default);
                if htcp_item(h, item) {
                    ctx.warn(
                        loc,
                        format!("cache_peer: option {k} is deprecated; write htcp={item}"),
                    );
                } else {
                    option_error(ctx, format!("\"{k}\" is not an htcp option"));
                }
            }
            ("weight", Some(v)) => match parse_int(v) {
                // Squid raises weights below 1 to 1.
                Ok(w) => p.weight = u32::try_from(w.max(1)).unwrap_or(u32::MAX),
                Err(e) => option_error(ctx, format!("weight={v}: {e}")),
            },
            ("basetime", Some(v)) => match parse_uint(v) {
                Ok(ms) => p.basetime = Duration::from_millis(ms),
                Err(e) => option_error(ctx, format!("basetime={v}: {e}")),
            },
            ("ttl", Some(v)) => match parse_int(v) {
                // Squid clamps the multicast TTL to 0-128.
                Ok(t) => p.ttl = u8::try_from(t.clamp(0, 128)).unwrap_or(128),
                Err(e) => option_error(ctx, format!("ttl={v}: {e}")),
            },
            ("connect-timeout", Some(v)) => match parse_uint(v) {
                Ok(s) => p.connect_timeout = Some(Duration::from_secs(s)),
                Err(e) => option_error(ctx, format!("connect-timeout={v}: {e}")),
            },
            ("connect-fail-limit", Some(v)) => match parse_int(v) {
                // Squid replaces a limit below 1 with the default, 10.
                Ok(n) if n < 1 => p.connect_fail_limit = 10,
                Ok(n) => p.connect_fail_limit = u32::try_from(n).unwrap_or(u32::MAX),
                Err(e) => option_error(ctx, format!("connect-fail-limit={v}: {e}")),
            },
            ("max-conn", Some(v)) => match parse_uint(v) {
                Ok(n) => p.max_conn = Some(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => option_error(ctx, format!("max-conn={v}: {e}")),
            },
            ("standby", Some(v)) => match parse_uint(v) {
                Ok(n) => p.standby = Some(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => option_error(ctx, format!("standby={v}: {e}")),
            },
            ("name", Some(v)) => {
                if v.is_empty() {
                    option_error(ctx, "name= needs a value".into());
                } else {
                    p.name = v.to_string();
                }
            }
            ("forceddomain", Some(v)) => p.forceddomain = Some(v.to_string()),
            ("login", Some(v)) => match parse_login(v) {
                Some(l) => {
                    if matches!(l, PeerLogin::Negotiate(_)) {
                        // Kept so the config loads as Squid's would; the
                        // admin must know the peer will see no credentials.
                        ctx.warn(
                            loc,
                            format!("cache_peer: {text}: cuttle has no Kerberos (Negotiate) support; requests to this peer carry no credentials"),
                        );
                    }
                    p.login = Some(l);
                }
                None => option_error(ctx, "login= needs a value".into()),
            },
            ("connection-auth", Some(v)) => match v {
                "on" => p.connection_auth = ConnectionAuth::On,
                "off" => p.connection_auth = ConnectionAuth::Off,
                "auto" => p.connection_auth = ConnectionAuth::Auto,
                _ => option_error(
                    ctx,
                    format!("connection-auth={v}: expected on, off or auto"),
                ),
            },
            ("digest-url", Some(v)) => p.digest_url = Some(v.to_string()),
            ("public-url", Some(v)) => match parse_public_url(v) {
                Ok(url) => p.public_url = Some(url),
                Err(e) => option_error(ctx, format!("public-url={v}: {e}")),
            },
            ("carp-key", Some(v)) => match parse_carp_key(v) {
                Ok(k) => p.carp_key = Some(k),
                Err(e) => option_error(ctx, e),
            },
            ("front-end-https", None) => p.front_end_https = Some(FrontEndHttps::On),
            ("front-end-https", Some(v)) => match v {
                "on" => p.front_end_https = Some(FrontEndHttps::On),
                "auto" => p.front_end_https = Some(FrontEndHttps::Auto),
                "off" => p.front_end_https = None,
                _ => option_error(
                    ctx,
                    format!("front-end-https={v}: expected on, off or auto"),
                ),
            },
            (k, v) if tls_client::peer_option_name(k).is_some() => {
                let name = tls_client::peer_option_name(k).unwrap_or(k);
                // Squid: any TLS option asks for TLS to the peer.
                p.tls = true;
                match tls_client::apply(&mut p.tls_options, name, v) {
                    Ok(Applied::Done) => {}
                    Ok(Applied::Warn(w)) => {
                        ctx.warn(loc, format!("cache_peer {}: {k}: {w}", p.name))
                    }
                    Err(e) => option_error(ctx, format!("{} {k}: {e}", p.name)),
                }
            }
            _ => ctx.warn(
                loc,
                format!("cache_peer: unknown option \"{text}\" ignored"),
            ),
        }
    }

    // Squid's consistency rules.
    for (on, what) in [
        (p.carp, "carp"),
        (p.userhash, "userhash"),
        (p.sourcehash, "sourcehash"),
    ] {
        if on && p.peer_type != PeerType::Parent {
            ctx.error(
                loc,
                format!(
                    "cache_peer: {what} is only allowed on parent peers, not on a {}",
                    p.peer_type.name()
                ),
            );
            bad = true;
        }
    }
    if p.public_url.is_some() && p.peer_type == PeerType::Parent {
        ctx.warn(
            loc,
            "cache_peer: public-url= serves redirects to siblings that hold an object; a parent is never redirected to".into(),
        );
    }
    if p.load_aware && !p.carp {
        ctx.error(
            loc,
            "cache_peer: load-aware requires the carp option".into(),
        );
        bad = true;
    }
    if p.carp_key.is_some() && !p.carp {
        ctx.error(loc, "cache_peer: carp-key= requires the carp option".into());
        bad = true;
    }
    if let Some(h) = p.htcp {
        if h.no_clr && h.only_clr {
            ctx.error(
                loc,
                "cache_peer: htcp options no-clr and only-clr exclude each other".into(),
            );
            bad = true;
        }
        if h.monitor && !p.cuttle {
            ctx.error(
                loc,
                format!("cache_peer {}: htcp=monitor subscribes with HTCP MON, which only cuttle answers (Squid ignores MON, so the peer would never be known); add the option `cuttle` if {} runs cuttle, else remove monitor", p.name, p.name),
            );
            bad = true;
        }
    }
    if let (Some(standby), Some(max)) = (p.standby, p.max_conn) {
        if max > 0 && standby > max {
            ctx.error(
                loc,
                format!("cache_peer: standby={standby} exceeds max-conn={max}"),
            );
            bad = true;
        }
    }
    if p.tls {
        if let Err(e) = tls_client::check_files(&p.tls_options) {
            ctx.error(loc, format!("cache_peer {}: {e}", p.name));
            bad = true;
        }
        if p.tls_options.dont_verify_peer {
            ctx.warn(
                loc,
                format!("cache_peer {}: DONT_VERIFY_PEER: its TLS certificate is NOT verified; anyone on the path can impersonate this peer", p.name),
            );
        }
    }
    if p.peer_type == PeerType::Multicast {
        // A multicast group has no digest or netdb to fetch.
        p.no_digest = true;
        p.no_netdb_exchange = true;
    }
    let key = p.name.to_ascii_lowercase();
    if let Some(&index) = ctx.peer_index.get(&key) {
        let first = ctx
            .config
            .cache_peers
            .get(index)
            .map(|q| q.location.to_string())
            .unwrap_or_default();
        ctx.error(
            loc,
            format!(
                "cache_peer: name \"{}\" is already used by the cache_peer at {first} (names are compared case-insensitively; use name= to tell them apart)",
                p.name
            ),
        );
        return;
    }
    if bad {
        return;
    }
    ctx.peer_index.insert(key, ctx.config.cache_peers.len());
    ctx.config.cache_peers.push(Located::new(p, loc.clone()));
}

/// `cache_peer_access PEER allow|deny [!]acl...`
/// Warns about each `cache_peer` that would be queried but never will be:
/// ICP and HTCP queries leave from the icp_port / htcp_port socket, and
/// with no such port Squid (and cuttle) sends none ("ICP is disabled!").
pub(crate) fn warn_never_asked(ctx: &mut Ctx<'_, '_>) {
    let (icp, htcp) = (ctx.config.icp_port.value, ctx.config.htcp_port.value);
    let mut warnings = Vec::new();
    for p in &ctx.config.cache_peers {
        let queried = p.icp_port != 0
            && !p.no_query
            && !p.multicast_responder
            && !p.htcp.is_some_and(|h| h.only_clr);
        let missing = match p.htcp {
            _ if !queried => continue,
            Some(_) if htcp == 0 => ("HTCP", "htcp_port"),
            None if icp == 0 => ("ICP", "icp_port"),
            _ => continue,
        };
        warnings.push((
            p.location.clone(),
            format!(
                "cache_peer {} will never be asked: {} is disabled (no {}); add {}, or mark the peer no-query",
                p.host, missing.0, missing.1, missing.1
            ),
        ));
    }
    for (at, message) in warnings {
        ctx.warn(&at, message);
    }
}

/// Warns when `holder_redirect` rules can never redirect anything: no
/// sibling has a `public-url=`, or no port accelerates.
pub(crate) fn warn_redirect_nowhere(ctx: &mut Ctx<'_, '_>) {
    let Some(first) = ctx.config.holder_redirect.first() else {
        return;
    };
    let at = first.location.clone();
    let holders = ctx
        .config
        .cache_peers
        .iter()
        .any(|p| p.public_url.is_some() && p.peer_type == PeerType::Sibling);
    let accel = ctx
        .config
        .http_ports
        .iter()
        .any(|p| p.mode == super::listen::PortMode::Accel);
    let missing = match (holders, accel) {
        (true, true) => return,
        (false, _) => "no sibling cache_peer has public-url=",
        (true, false) => "no http_port or https_port is an accelerator (accel)",
    };
    ctx.warn(
        &at,
        format!("holder_redirect: {missing}, so nothing will be redirected"),
    );
}

pub(crate) fn parse_cache_peer_access(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let Some(name_t) = line.args().first() else {
        ctx.error(loc, "cache_peer_access: missing cache_peer name".into());
        return;
    };
    let peer = ctx.require_peer(&name_t.text, loc, "cache_peer_access");
    let rule = parse_rule(
        ctx,
        line,
        "cache_peer_access",
        line.args().get(1..).unwrap_or(&[]),
    );
    if let (Some(index), Some(rule)) = (peer, rule) {
        if let Some(p) = ctx.config.cache_peers.get_mut(index) {
            p.value.access.push(Located::new(rule, loc.clone()));
        }
    }
}

/// `neighbor_type_domain PEER parent|sibling domain...`
pub(crate) fn parse_neighbor_type_domain(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let args = line.args();
    let (Some(name_t), Some(type_t)) = (args.first(), args.get(1)) else {
        ctx.error(
            loc,
            "neighbor_type_domain: expected PEER parent|sibling domain...".into(),
        );
        return;
    };
    let peer = ctx.require_peer(&name_t.text, loc, "neighbor_type_domain");
    let peer_type = match type_t.text.as_str() {
        "parent" => PeerType::Parent,
        "sibling" => PeerType::Sibling,
        other => {
            ctx.error(
                loc,
                format!("neighbor_type_domain: \"{other}\" is not parent or sibling"),
            );
            return;
        }
    };
    let domains: Vec<String> = args
        .get(2..)
        .unwrap_or(&[])
        .iter()
        .map(|t| t.text.to_ascii_lowercase())
        .collect();
    if domains.is_empty() {
        ctx.warn(loc, "neighbor_type_domain: no domains listed".into());
    }
    if let Some(p) = peer.and_then(|i| ctx.config.cache_peers.get_mut(i)) {
        p.value
            .type_domains
            .push(Located::new(TypeDomain { peer_type, domains }, loc.clone()));
    }
}

#[cfg(test)]
mod tests;
