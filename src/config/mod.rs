//! squid.conf reader: parses Squid's configuration syntax once into a typed `Config`, every value keeping the file:line it came from, and reports problems as diagnostics instead of stopping at the first one.
//!
//! Layer 1 of DESIGN.md: nothing else in `src/` is imported here, and nothing
//! outside this module looks at a raw directive string.
//!
//! Entry points: [`load_file`] and [`load_str`]. Both always return a
//! [`Loaded`]; a config is usable when [`Loaded::has_errors`] is false.

mod acl;
mod cache;
mod cut_through;
mod directives;
mod discovery;
mod forwarding;
mod lexer;
mod listen;
mod logging;
mod peer;
mod share;
mod squid_names;
mod targeted;
mod tls_client;
pub mod tls_port;
mod values;

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use acl::{
    parse_mac, AccessRule, Acl, AclData, AclRef, AclRegex, Action, DomainEntry, DomainIndex,
    IpAclEntry, PortRange, StatusRange, TimeSpec, BUILTIN_FILE, PROTOCOL_NAMES,
};
pub use cache::{CacheDir, CacheDirType, RefreshPattern, ReplacementPolicy, ADAPTIVE_POPULAR_HITS};
pub use cut_through::{CutThrough, CutThroughMode};
pub use directives::{DirectiveStatus, OtherDirective};
pub use discovery::{Mesh, MeshDiscovery, MeshRole};
pub use forwarding::{MonitorUpdateHits, PeerStoreThreshold, ThresholdScope};
pub use listen::{HttpPort, ListenAddr, PortMode, VPort};
pub use logging::{AccessLog, LogDestination, LogFormat, LogOnError};
pub use peer::{
    CachePeer, CarpKey, ConnectionAuth, FrontEndHttps, HtcpOptions, PeerLogin, PeerType, TypeDomain,
};
pub use share::{
    Locality, OfferTo, Share, ShareLog, ShareOffer,
    DEFAULT_MAX_MEMORY as SHARE_LOG_DEFAULT_MAX_MEMORY,
};
pub use targeted::TargetedCacheControl;
pub use tls_client::{read_certificates, read_key, TlsClientOptions, TlsMinVersion};
pub use tls_port::{CertKeyFiles, TlsPort};

/// Where a value came from: a file and a 1-based line number. Line 0 means
/// "the file as a whole" (for example a file that cannot be opened).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl Location {
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// A value together with the place in the configuration that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub location: Location,
}

impl<T> Located<T> {
    pub fn new(value: T, location: Location) -> Self {
        Located { value, location }
    }
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Debian's Squid 5.7 default `pid_filename` (`--with-pidfile`).
pub const DEFAULT_PID_FILENAME: &str = "/run/squid.pid";

/// A single-valued directive: its effective value, and where it was set
/// (`None` when Squid's default applies). The last occurrence wins, as in Squid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub location: Option<Location>,
}

impl<T> Setting<T> {
    /// Squid's default, not set by any line.
    pub fn default_value(value: T) -> Self {
        Setting {
            value,
            location: None,
        }
    }

    /// Set by the line at `location`.
    pub fn at(value: T, location: Location) -> Self {
        Setting {
            value,
            location: Some(location),
        }
    }

    /// True when a configuration line set this value.
    pub fn is_set(&self) -> bool {
        self.location.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found while loading, with the file:line it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {}: {}", self.location, level, self.message)
    }
}

/// How to find files named inside the configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Prefix rewrites `(from, to)` applied to `include` paths and to quoted
    /// value files, so a config written for `/etc/squid` can be loaded from
    /// elsewhere. Prefixes match whole path components; the longest wins.
    pub path_map: Vec<(PathBuf, PathBuf)>,
}

/// The result of loading: the typed configuration (as complete as the input
/// allowed) and every diagnostic, in the order found.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

/// `forwarded_for`: the X-Forwarded-For field of forwarded requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFor {
    /// Append the client's address (Squid's default).
    On,
    /// Append `unknown`.
    Off,
    /// Leave the field as the client sent it.
    Transparent,
    /// Remove the field.
    Delete,
    /// Replace the field with the client's address alone.
    Truncate,
}

/// An ordered list of `allow`/`deny` rules (http_access and friends).
pub type AccessList = Vec<Located<AccessRule>>;

/// Everything cuttle understands from squid.conf. Fields hold Squid's
/// defaults until a line sets them. Directives cuttle does not use yet are
/// kept, in order, in `other`; giving one a typed field later does not
/// reshape anything else.
#[derive(Debug, Clone)]
pub struct Config {
    // -- listening ports
    pub http_ports: Vec<Located<HttpPort>>,
    /// 0 = ICP disabled (Squid's default).
    pub icp_port: Setting<u16>,
    /// 0 = HTCP disabled (Squid's default).
    pub htcp_port: Setting<u16>,
    /// `htcp_monitor_max_subscribers` (cuttle's own): HTCP MON
    /// subscriptions this node keeps at once; 0 (the default) answers MON
    /// "not implemented", as before.
    pub htcp_monitor_max_subscribers: Setting<u32>,
    /// `max_filedescriptors N`: the open-file (soft) limit set at start, at
    /// most the hard limit; 0 (the default) = the hard limit.
    pub max_filedescriptors: Setting<u32>,
    /// `htcp_monitor_max_lease` (cuttle's own): the longest lease granted
    /// to a MON subscriber (at most 255 s: MON's TIME is one byte).
    pub htcp_monitor_max_lease: Setting<Duration>,
    /// `htcp_monitor_update_hits N [window=TIME]` (cuttle's own): which
    /// changes are pushed to MON subscribers as updates; `None` without
    /// the line (`caching::push`'s defaults).
    pub htcp_monitor_update_hits: Setting<Option<MonitorUpdateHits>>,
    /// `udp_incoming_address`: where the ICP (and HTCP) sockets listen;
    /// `None` = every address (Squid's default).
    pub udp_incoming_address: Setting<Option<std::net::IpAddr>>,
    pub mcast_groups: Vec<Located<std::net::IpAddr>>,
    /// Words that make a URL non-hierarchical (Squid 3.4's
    /// `hierarchy_stoplist`; removed from Squid 3.5).
    pub hierarchy_stoplist: Vec<Located<String>>,

    // -- neighbours
    pub cache_peers: Vec<Located<CachePeer>>,
    /// `mesh_discovery` and `mesh_discovery_key` (cuttle's own).
    pub mesh: Mesh,
    /// `tls_outgoing_options`: TLS to origin servers (https:// URLs).
    pub tls_outgoing_options: Setting<TlsClientOptions>,
    /// 0 = dynamic (Squid's default).
    pub icp_query_timeout: Setting<Duration>,
    pub maximum_icp_query_timeout: Setting<Duration>,
    pub minimum_icp_query_timeout: Setting<Duration>,
    pub mcast_icp_query_timeout: Setting<Duration>,
    pub dead_peer_timeout: Setting<Duration>,
    pub background_ping_rate: Setting<Duration>,
    pub peer_connect_timeout: Setting<Duration>,
    pub icp_hit_stale: Setting<bool>,
    pub log_icp_queries: Setting<bool>,
    /// `offline_mode`: never revalidate cached objects (stale hits are
    /// served as TCP_OFFLINE_HIT); the ICP responder answers misses
    /// MISS_NOFETCH.
    pub offline_mode: Setting<bool>,
    /// `query_icmp`: ask ICP peers for their RTT to the origin (SRC_RTT)
    /// and send a miss to the parent that reports the smallest one
    /// (CLOSEST_PARENT_MISS).
    pub query_icmp: Setting<bool>,
    pub prefer_direct: Setting<bool>,
    pub nonhierarchical_direct: Setting<bool>,
    /// `forward_max_tries`: at most this many sources are tried for one
    /// request (Squid's default 25).
    pub forward_max_tries: Setting<u32>,
    /// `retry_on_error`: a 403, 500, 501 or 503 also moves on to the next
    /// source (502 and 504 always do).
    pub retry_on_error: Setting<bool>,
    pub digest_generation: Setting<bool>,
    /// `digest_bits_per_entry`: mask bits per entry of the served digest
    /// (1-255: one byte in the digest header).
    pub digest_bits_per_entry: Setting<u32>,
    /// `digest_rebuild_period`: how often the served digest is rebuilt
    /// (and the Expires it announces); more than 0.
    pub digest_rebuild_period: Setting<Duration>,
    /// `peer_store_threshold N [window=TIME] [scope=hits|peers]`: peer
    /// hits (with `scope=peers`, any peer reply) are not stored until the
    /// URL was seen more than N times within the window.
    pub peer_store_threshold: Setting<PeerStoreThreshold>,
    /// `cut_through on|off [min_depth=N] [depth=N] [background|foreground]`:
    /// misses going to a parent race an origin request (issue 20).
    pub cut_through: Setting<CutThrough>,
    /// `udp_outgoing_address`: the source address of ICP queries; `None`
    /// = Squid's 255.255.255.255 (the kernel's choice).
    pub udp_outgoing_address: Setting<Option<std::net::IpAddr>>,
    /// `tcp_outgoing_address ADDR [acl...]` lines in order: the first whose
    /// ACLs match gives the local address of connections to servers and peers.
    pub tcp_outgoing_address: Vec<Located<OutgoingAddress>>,

    // -- access control (ACLs in definition order, Squid's built-ins first)
    pub acls: Vec<Acl>,
    pub http_access: AccessList,
    pub icp_access: AccessList,
    pub htcp_access: AccessList,
    pub htcp_clr_access: AccessList,
    pub miss_access: AccessList,
    /// Checked against each reply before it goes to the client (no rules:
    /// allow); a denied reply becomes 403 ERR_ACCESS_DENIED.
    pub http_reply_access: AccessList,
    pub never_direct: AccessList,
    pub always_direct: AccessList,
    /// `holder_redirect` (cuttle's own; no rules: never): which accelerated
    /// misses a sibling holds are redirected to its `public-url`.
    pub holder_redirect: AccessList,
    /// `holder_redirect_min_size`, bytes: objects known to be smaller are
    /// not redirected (the client's extra round trip would cost more).
    pub holder_redirect_min_size: Setting<u64>,
    /// Proxy sharing (`share_log`, `share_locality`, `share_offer`, `share_offer_url`).
    pub share: Share,

    // -- storage and freshness
    pub cache_dirs: Vec<Located<CacheDir>>,
    /// Bytes.
    pub cache_mem: Setting<u64>,
    /// Bytes.
    pub maximum_object_size: Setting<u64>,
    /// Bytes.
    pub maximum_object_size_in_memory: Setting<u64>,
    /// Bytes.
    pub minimum_object_size: Setting<u64>,
    pub cache_replacement_policy: Setting<ReplacementPolicy>,
    pub memory_replacement_policy: Setting<ReplacementPolicy>,
    pub refresh_patterns: Vec<Located<RefreshPattern>>,
    pub negative_ttl: Setting<Duration>,
    pub max_stale: Setting<Duration>,
    pub collapsed_forwarding: Setting<bool>,
    /// `hit_metering on|off` (cuttle's own, off by default): RFC 2227 hit
    /// metering and usage limiting (README, "Hit metering").
    pub hit_metering: Setting<bool>,
    /// `read_ahead_gap`, bytes: how far a fetch may read from the server
    /// ahead of the slowest client it feeds.
    pub read_ahead_gap: Setting<u64>,
    /// `targeted_cache_control` (cuttle's own): the RFC 9213 fields obeyed on
    /// accelerator ports; `CDN-Cache-Control` unless set.
    pub targeted_cache_control: Setting<TargetedCacheControl>,

    // -- logging
    /// Empty means Squid's default: `access_log daemon:/var/log/squid/access.log squid`.
    pub access_logs: Vec<Located<AccessLog>>,
    pub logformats: Vec<Located<LogFormat>>,
    pub strip_query_terms: Setting<bool>,
    /// `logfile_rotate N`: how many old access.log (and cache_log) files
    /// `-k rotate` (SIGUSR1) keeps, as FILE.0 (newest) to FILE.N-1; 0 only
    /// reopens them (Debian's default, for logrotate).
    pub logfile_rotate: Setting<u32>,
    /// `cache_log PATH`: where operational messages go besides stderr;
    /// `None` (no line, or `none`): stderr only.
    pub cache_log: Setting<Option<PathBuf>>,

    // -- identity and process
    /// `None` = the system host name (Squid's default).
    pub visible_hostname: Setting<Option<String>>,
    /// `None` = same as visible_hostname.
    pub unique_hostname: Setting<Option<String>>,
    pub shutdown_lifetime: Setting<Duration>,
    /// `pid_filename PATH`; `None` for `pid_filename none`. The embedded
    /// default configuration sets none.
    pub pid_filename: Setting<Option<PathBuf>>,
    /// `connect_timeout`: how long to wait for a server's TCP handshake.
    pub connect_timeout: Setting<Duration>,
    /// `read_timeout`: how long a server may stay silent, and a client
    /// that is sending a request body.
    pub read_timeout: Setting<Duration>,

    // -- client connections
    /// `request_start_timeout`: how long a new connection may wait before
    /// its first byte.
    pub request_start_timeout: Setting<Duration>,
    /// `request_timeout`: how long after the connection's start (or, on a
    /// kept-alive connection, the next request's first byte) the request
    /// head must be complete.
    pub request_timeout: Setting<Duration>,
    /// `client_idle_pconn_timeout`: how long a kept-alive connection may
    /// wait for its next request.
    pub client_idle_pconn_timeout: Setting<Duration>,
    /// `request_header_max_size`: bytes of a request's line and fields.
    pub request_header_max_size: Setting<u64>,
    /// `reply_header_max_size`: bytes of a server reply's line and fields.
    pub reply_header_max_size: Setting<u64>,
    /// `forwarded_for`: what to do with X-Forwarded-For.
    pub forwarded_for: Setting<ForwardedFor>,
    pub configuration_includes_quoted_values: Setting<bool>,

    // -- cache manager
    /// `cachemgr_passwd` lines in order: the first naming an action (or
    /// `all`) gives its password.
    pub cachemgr_passwd: Vec<Located<CachemgrPasswd>>,
    /// `cache_mgr`: the administrator's e-mail address (Squid's default
    /// `webmaster`).
    pub cache_mgr: Setting<String>,

    /// Directives read but not (yet) typed, in file order.
    pub other: Vec<Located<OtherDirective>>,
    /// Every directive line as read (includes expanded, comments dropped),
    /// passwords masked: what the cache manager's `config` page shows.
    pub lines: Vec<Located<String>>,
}

/// One `cachemgr_passwd PASSWORD ACTION...` line. `disable` and `none` are
/// the password words Squid gives a meaning (refuse always, no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachemgrPasswd {
    pub password: String,
    pub actions: Vec<String>,
}

/// One `tcp_outgoing_address` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAddress {
    pub address: std::net::IpAddr,
    /// All must match (none = always).
    pub acls: Vec<AclRef>,
}

const MB: u64 = 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            http_ports: Vec::new(),
            icp_port: Setting::default_value(0),
            htcp_port: Setting::default_value(0),
            htcp_monitor_max_subscribers: Setting::default_value(0),
            max_filedescriptors: Setting::default_value(0),
            htcp_monitor_max_lease: Setting::default_value(Duration::from_secs(60)),
            htcp_monitor_update_hits: Setting::default_value(None),
            udp_incoming_address: Setting::default_value(None),
            mcast_groups: Vec::new(),
            hierarchy_stoplist: Vec::new(),
            cache_peers: Vec::new(),
            mesh: Mesh::default(),
            tls_outgoing_options: Setting::default_value(TlsClientOptions::default()),
            icp_query_timeout: Setting::default_value(Duration::ZERO),
            maximum_icp_query_timeout: Setting::default_value(Duration::from_millis(2000)),
            minimum_icp_query_timeout: Setting::default_value(Duration::from_millis(5)),
            mcast_icp_query_timeout: Setting::default_value(Duration::from_millis(2000)),
            dead_peer_timeout: Setting::default_value(Duration::from_secs(10)),
            background_ping_rate: Setting::default_value(Duration::from_secs(10)),
            peer_connect_timeout: Setting::default_value(Duration::from_secs(30)),
            icp_hit_stale: Setting::default_value(false),
            log_icp_queries: Setting::default_value(true),
            offline_mode: Setting::default_value(false),
            query_icmp: Setting::default_value(false),
            prefer_direct: Setting::default_value(false),
            nonhierarchical_direct: Setting::default_value(true),
            forward_max_tries: Setting::default_value(25),
            retry_on_error: Setting::default_value(false),
            digest_generation: Setting::default_value(true),
            digest_bits_per_entry: Setting::default_value(5),
            digest_rebuild_period: Setting::default_value(Duration::from_secs(3600)),
            peer_store_threshold: Setting::default_value(PeerStoreThreshold::default()),
            cut_through: Setting::default_value(CutThrough::default()),
            udp_outgoing_address: Setting::default_value(None),
            tcp_outgoing_address: Vec::new(),
            acls: acl::builtin_acls(),
            http_access: Vec::new(),
            icp_access: Vec::new(),
            htcp_access: Vec::new(),
            htcp_clr_access: Vec::new(),
            miss_access: Vec::new(),
            http_reply_access: Vec::new(),
            never_direct: Vec::new(),
            always_direct: Vec::new(),
            holder_redirect: Vec::new(),
            holder_redirect_min_size: Setting::default_value(0),
            share: Share::default(),
            cache_dirs: Vec::new(),
            cache_mem: Setting::default_value(256 * MB),
            maximum_object_size: Setting::default_value(4 * MB),
            maximum_object_size_in_memory: Setting::default_value(512 * 1024),
            minimum_object_size: Setting::default_value(0),
            cache_replacement_policy: Setting::default_value(ReplacementPolicy::Lru),
            memory_replacement_policy: Setting::default_value(ReplacementPolicy::Lru),
            refresh_patterns: Vec::new(),
            negative_ttl: Setting::default_value(Duration::ZERO),
            max_stale: Setting::default_value(Duration::from_secs(7 * 24 * 3600)),
            // On unless turned off: Squid's default is off (README, "Coming from Squid").
            collapsed_forwarding: Setting::default_value(true),
            hit_metering: Setting::default_value(false),
            read_ahead_gap: Setting::default_value(16 * 1024),
            targeted_cache_control: Setting::default_value(TargetedCacheControl::default()),
            access_logs: Vec::new(),
            logformats: Vec::new(),
            strip_query_terms: Setting::default_value(true),
            logfile_rotate: Setting::default_value(0),
            cache_log: Setting::default_value(None),
            visible_hostname: Setting::default_value(None),
            unique_hostname: Setting::default_value(None),
            shutdown_lifetime: Setting::default_value(Duration::from_secs(30)),
            pid_filename: Setting::default_value(Some(PathBuf::from(DEFAULT_PID_FILENAME))),
            connect_timeout: Setting::default_value(Duration::from_secs(60)),
            read_timeout: Setting::default_value(Duration::from_secs(15 * 60)),
            request_start_timeout: Setting::default_value(Duration::from_secs(5 * 60)),
            request_timeout: Setting::default_value(Duration::from_secs(5 * 60)),
            client_idle_pconn_timeout: Setting::default_value(Duration::from_secs(2 * 60)),
            request_header_max_size: Setting::default_value(64 * 1024),
            reply_header_max_size: Setting::default_value(64 * 1024),
            forwarded_for: Setting::default_value(ForwardedFor::On),
            configuration_includes_quoted_values: Setting::default_value(false),
            cachemgr_passwd: Vec::new(),
            cache_mgr: Setting::default_value("webmaster".to_string()),
            other: Vec::new(),
            lines: Vec::new(),
        }
    }
}

/// `mgr:offline_toggle` flipped offline_mode at run time (Squid's toggle
/// of its global setting); a reconfigure clears it, as Squid re-reads the
/// setting then. One per process, as the setting is in Squid.
pub static OFFLINE_TOGGLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl Config {
    /// Whether offline_mode is on now: the configured value, flipped by
    /// each `mgr:offline_toggle` since the last (re)configuration.
    pub fn offline(&self) -> bool {
        self.offline_mode.value ^ OFFLINE_TOGGLED.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The ACL with this name (Squid compares ACL names case-insensitively).
    pub fn acl(&self, name: &str) -> Option<&Acl> {
        self.acls.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The cache_peer with this name (case-insensitive, as in Squid).
    pub fn peer(&self, name: &str) -> Option<&Located<CachePeer>> {
        self.cache_peers
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// Load the configuration file at `path` (and everything it includes).
/// Never panics; a file that cannot be read is an error diagnostic.
pub fn load_file(path: &Path, options: &LoadOptions) -> Loaded {
    let mut files = lexer::Files::new(options, false);
    let mut diagnostics = Vec::new();
    match files.read_top(path) {
        Ok(text) => {
            let lines = lexer::expand(&text, path, &mut files, &mut diagnostics);
            let config = directives::apply(lines, &mut files, &mut diagnostics);
            Loaded {
                config,
                diagnostics,
            }
        }
        Err(reason) => {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                location: Location::new(path, 0),
                message: reason,
            });
            Loaded {
                config: Config::default(),
                diagnostics,
            }
        }
    }
}

/// Parse `text` as if it were the file `origin` (relative includes resolve
/// against `origin`'s directory). Never panics, and its work is bounded by
/// the size of `text` plus the size limits on files it is allowed to read.
pub fn load_str(text: &str, origin: &str, options: &LoadOptions) -> Loaded {
    load_text(text, origin, lexer::Files::new(options, false))
}

/// Like [`load_str`], but never reads any file: each `include` or quoted
/// value file is an error diagnostic instead. For fuzzing and for checking
/// untrusted text.
pub fn load_str_sandboxed(text: &str, origin: &str) -> Loaded {
    let options = LoadOptions::default();
    load_text(text, origin, lexer::Files::new(&options, true))
}

fn load_text(text: &str, origin: &str, mut files: lexer::Files<'_>) -> Loaded {
    let mut diagnostics = Vec::new();
    let lines = lexer::expand(text, Path::new(origin), &mut files, &mut diagnostics);
    let config = directives::apply(lines, &mut files, &mut diagnostics);
    Loaded {
        config,
        diagnostics,
    }
}

#[cfg(test)]
mod tests;
