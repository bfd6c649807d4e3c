//! ACLs (`acl` lines: typed src/dst/dstdomain/port/method/proto/localport/localip/myportname/url_regex/urlpath_regex/dstdom_regex/browser/referer_regex/req_header/rep_header/http_status/time/maxconn/srcdomain/arp, Squid's built-ins, other types kept untyped) and access rule lists (`allow|deny [!]acl ...`), refusing rules that use an ACL cuttle cannot evaluate.
//!
//! The types and the built-ins are here; the `acl` line parser is in
//! `acl/parse.rs`, value parsers in `acl/values.rs`, rule lists in
//! `acl/rules.rs`.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use regex::bytes::Regex as BytesRegex;

use super::{Located, Location};

mod parse;
mod rules;
mod values;

pub(crate) use parse::parse_acl;
pub(crate) use rules::{check_domain_overlaps, finish, parse_acl_refs, parse_rule};
pub(crate) use values::parse_ip_entry;
pub use values::parse_mac;

/// The pseudo file name of Squid's predefined ACLs.
pub const BUILTIN_FILE: &str = "<built-in>";

/// A named ACL. Values accumulate across `acl` lines with the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// As first spelled (Squid compares ACL names case-insensitively).
    pub name: String,
    /// The first definition (`<built-in>`:0 for Squid's predefined ACLs).
    pub location: Location,
    pub data: AclData,
    /// Predefined by Squid (all, manager, localhost, to_localhost,
    /// to_linklocal, CONNECT).
    pub builtin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclData {
    /// Client address.
    Src(Vec<Located<IpAclEntry>>),
    /// Address of the URL's host.
    Dst {
        entries: Vec<Located<IpAclEntry>>,
        /// `-n`: never resolve the URL host to match.
        no_lookup: bool,
    },
    /// The URL's host name.
    DstDomain {
        entries: Vec<Located<DomainEntry>>,
        /// `-n`: never reverse-resolve an IP host to match.
        no_lookup: bool,
        /// Hash lookup over `entries`, built when loading ends (an index
        /// that does not cover every entry is ignored, so a hand-built
        /// `DstDomain` may leave it `Default`).
        index: DomainIndex,
    },
    /// Destination port (the URL's, with the scheme's default).
    Port(Vec<Located<PortRange>>),
    /// Request method. Squid (with its default `relaxed_header_parser on`)
    /// matches the methods it knows case-insensitively, others exactly.
    Method(Vec<Located<String>>),
    /// `proto`: the URL scheme, as Squid's upper-case protocol names
    /// (`HTTP`, `HTTPS`, `FTP`, `CACHE_OBJECT`, ...; `NONE` for CONNECT).
    Proto(Vec<Located<String>>),
    /// `localport` (old name `myport`): the port the client connected to.
    LocalPort(Vec<Located<PortRange>>),
    /// `localip` (old name `myip`): the address the client connected to.
    LocalIp(Vec<Located<IpAclEntry>>),
    /// `myportname`: the `name=` of the http_port the request came in on
    /// (by default the port as written, e.g. `3128` or `127.0.0.1:3128`).
    /// Case-sensitive.
    MyPortName(Vec<Located<String>>),
    /// `url_regex`: the percent-decoded absolute URL (`host:port` for CONNECT).
    UrlRegex(Vec<Located<AclRegex>>),
    /// `urlpath_regex`: the percent-decoded path with its query.
    UrlPathRegex(Vec<Located<AclRegex>>),
    /// `dstdom_regex`: the URL's host name.
    DstDomRegex {
        patterns: Vec<Located<AclRegex>>,
        /// `-n`: never reverse-resolve an IP host to match.
        no_lookup: bool,
    },
    /// `browser`: the request's User-Agent header (no header: no match).
    Browser(Vec<Located<AclRegex>>),
    /// `referer_regex`: the request's Referer header (no header: no match).
    RefererRegex(Vec<Located<AclRegex>>),
    /// `req_header NAME regex...`: the named request header, its fields
    /// joined with ", " (no such header: no match).
    ReqHeader {
        /// Lower-case header name.
        header: String,
        patterns: Vec<Located<AclRegex>>,
    },
    /// `rep_header NAME regex...`: the named reply header; only a reply
    /// check (http_reply_access) has one, elsewhere it never matches.
    RepHeader {
        /// Lower-case header name.
        header: String,
        patterns: Vec<Located<AclRegex>>,
    },
    /// `http_status`: the reply's status code; no reply, no match.
    HttpStatus(Vec<Located<StatusRange>>),
    /// `time`: days of the week and a time of day, in local time.
    Time(Vec<Located<TimeSpec>>),
    /// `maxconn N`: the client's address has more than N connections open.
    /// A later line replaces the number, as in Squid.
    MaxConn(Located<u64>),
    /// `srcdomain`: the client's name from a reverse lookup of its address
    /// (`none` when the lookup fails), matched like dstdomain.
    SrcDomain(Vec<Located<DomainEntry>>),
    /// `arp`: the client's MAC address from the kernel's ARP table (IPv4
    /// clients on a directly attached network only).
    Arp(Vec<Located<[u8; 6]>>),
    /// Squid's built-in `manager`: cache manager requests
    /// (`cache_object://` and `/squid-internal-mgr/` URLs).
    Manager,
    /// A type cuttle does not evaluate, kept as written (flags included).
    /// A rule that uses one is refused when loading.
    Other {
        acl_type: String,
        values: Vec<Located<String>>,
    },
}

/// One pattern of a regex ACL, compiled when loading.
#[derive(Debug, Clone)]
pub struct AclRegex {
    /// As written.
    pub pattern: String,
    /// After `-i` (until a `+i`) on its `acl` line.
    pub case_insensitive: bool,
    /// Compiled from `pattern` for bytes, POSIX-like: no Unicode classes,
    /// ASCII case folding, `.` matches a newline (Squid uses regcomp with
    /// REG_EXTENDED and no REG_NEWLINE).
    pub regex: BytesRegex,
}

/// A `time` ACL entry: matches when the local weekday is in `days` and the
/// minute of the day is in `start..=end` (Squid compares whole minutes,
/// both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSpec {
    /// Bit 0 is Sunday ... bit 6 Saturday.
    pub days: u8,
    /// Minutes since midnight.
    pub start: u16,
    pub end: u16,
}

impl TimeSpec {
    /// `weekday`: 0 = Sunday; `minute`: minutes since local midnight.
    pub fn matches(&self, weekday: u32, minute: u16) -> bool {
        weekday < 7 && self.days & (1 << weekday) != 0 && self.start <= minute && minute <= self.end
    }
}

/// An `http_status` item: `200`, `300-399` or `500-` (to 999).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub first: u16,
    pub last: u16,
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        self.first <= status && status <= self.last
    }
}

impl PartialEq for AclRegex {
    fn eq(&self, other: &Self) -> bool {
        // The compiled regex follows from pattern and flag.
        self.pattern == other.pattern && self.case_insensitive == other.case_insensitive
    }
}

impl Eq for AclRegex {}

/// A hash index over a dstdomain ACL's entries: lookups cost a few hash
/// probes per label of the host instead of a scan of the whole list.
/// Derived data: it never makes two ACLs compare unequal.
#[derive(Clone, Default)]
pub struct DomainIndex {
    exact: HashSet<Box<str>>,
    subdomains: HashSet<Box<str>>,
    /// How many entries it was built from.
    covers: usize,
}

impl DomainIndex {
    /// Index `entries`.
    pub fn build(entries: &[Located<DomainEntry>]) -> Self {
        let mut index = DomainIndex {
            covers: entries.len(),
            ..DomainIndex::default()
        };
        for e in entries {
            let set = if e.subdomains {
                &mut index.subdomains
            } else {
                &mut index.exact
            };
            set.insert(e.domain.as_str().into());
        }
        index
    }

    /// Whether the index was built from exactly `n` entries (so it can stand
    /// in for them).
    pub fn covers(&self, n: usize) -> bool {
        self.covers == n && n > 0
    }

    /// Whether `host` (already lower-case, without a trailing dot) matches
    /// an indexed entry, with [`DomainEntry::matches`]'s rules.
    pub fn matches_lowercase(&self, host: &str) -> bool {
        if self.exact.contains(host) || self.subdomains.contains(host) {
            return true;
        }
        host.match_indices('.').any(|(i, _)| {
            host.get(i + 1..)
                .is_some_and(|parent| !parent.is_empty() && self.subdomains.contains(parent))
        })
    }
}

impl PartialEq for DomainIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DomainIndex {}

impl fmt::Debug for DomainIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DomainIndex({} exact, {} with subdomains)",
            self.exact.len(),
            self.subdomains.len()
        )
    }
}

impl AclData {
    /// The Squid type name.
    pub fn type_name(&self) -> &str {
        match self {
            AclData::Src(_) => "src",
            AclData::Dst { .. } => "dst",
            AclData::DstDomain { .. } => "dstdomain",
            AclData::Port(_) => "port",
            AclData::Method(_) => "method",
            AclData::Proto(_) => "proto",
            AclData::LocalPort(_) => "localport",
            AclData::LocalIp(_) => "localip",
            AclData::MyPortName(_) => "myportname",
            AclData::UrlRegex(_) => "url_regex",
            AclData::UrlPathRegex(_) => "urlpath_regex",
            AclData::DstDomRegex { .. } => "dstdom_regex",
            AclData::Browser(_) => "browser",
            AclData::RefererRegex(_) => "referer_regex",
            AclData::ReqHeader { .. } => "req_header",
            AclData::RepHeader { .. } => "rep_header",
            AclData::HttpStatus(_) => "http_status",
            AclData::Time(_) => "time",
            AclData::MaxConn(_) => "maxconn",
            AclData::SrcDomain(_) => "srcdomain",
            AclData::Arp(_) => "arp",
            AclData::Manager => "url_regex",
            AclData::Other { acl_type, .. } => acl_type,
        }
    }

    /// Why cuttle cannot evaluate this ACL, if it cannot: its type is not
    /// implemented, or it lists host names Squid would resolve at start-up.
    pub fn unsupported_reason(&self) -> Option<String> {
        let hosts = |entries: &[Located<IpAclEntry>]| {
            entries
                .iter()
                .find_map(|e| match &e.value {
                    IpAclEntry::Host(h) => Some(h.clone()),
                    _ => None,
                })
                .map(|h| {
                    format!(
                        "it lists the host name \"{h}\", which Squid resolves once at start-up and cuttle does not; list its addresses instead"
                    )
                })
        };
        match self {
            AclData::Src(e) | AclData::LocalIp(e) | AclData::Dst { entries: e, .. } => hosts(e),
            AclData::Other { acl_type, .. } => {
                Some(format!("cuttle does not implement ACL type {acl_type}"))
            }
            _ => None,
        }
    }
}

/// One address item of a src/dst ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpAclEntry {
    /// `all`: every address of either family.
    Any,
    /// `ipv4`: every IPv4 address.
    AnyV4,
    /// `ipv6`: every IPv6 address.
    AnyV6,
    /// Addresses `a` of the same family with `first <= a & mask <= last`.
    /// A single address has `first == last` and a full mask; a network
    /// `A/M` has `first == last == A & M`.
    Net {
        first: IpAddr,
        last: IpAddr,
        mask: IpAddr,
    },
    /// A host name, resolved by Squid at configuration time (kept unresolved).
    Host(String),
}

impl IpAclEntry {
    /// Whether `ip` matches. IPv4-mapped IPv6 addresses count as IPv4.
    /// Host names never match here: they need resolving first.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match self {
            IpAclEntry::Any => true,
            IpAclEntry::AnyV4 => ip.is_ipv4(),
            IpAclEntry::AnyV6 => ip.is_ipv6(),
            IpAclEntry::Host(_) => false,
            IpAclEntry::Net { first, last, mask } => match (ip, first, last, mask) {
                (IpAddr::V4(a), IpAddr::V4(f), IpAddr::V4(l), IpAddr::V4(m)) => {
                    let v = u32::from(a) & u32::from(*m);
                    u32::from(*f) <= v && v <= u32::from(*l)
                }
                (IpAddr::V6(a), IpAddr::V6(f), IpAddr::V6(l), IpAddr::V6(m)) => {
                    let v = u128::from(a) & u128::from(*m);
                    u128::from(*f) <= v && v <= u128::from(*l)
                }
                _ => false,
            },
        }
    }
}

/// One dstdomain item: `.example.com` (the domain and its subdomains) or
/// `www.example.com` (exactly that host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    /// Lower-cased, without the leading dot.
    pub domain: String,
    /// Written with a leading dot.
    pub subdomains: bool,
}

impl DomainEntry {
    /// Whether `host` matches (case-insensitive; a trailing dot is ignored).
    /// Allocates nothing.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
        let domain = self.domain.as_bytes();
        if host.eq_ignore_ascii_case(domain) {
            return true;
        }
        let Some(split) = host.len().checked_sub(domain.len() + 1) else {
            return false;
        };
        self.subdomains
            && host.get(split) == Some(&b'.')
            && host
                .get(split + 1..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(domain))
    }
}

/// An inclusive port range (a single port has `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// A reference to an ACL from a rule, possibly negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRef {
    pub name: String,
    pub negated: bool,
    /// Index of the ACL in `Config::acls`, resolved when loading so an
    /// access check need not look names up. If it does not point at an ACL
    /// of this name (a hand-built rule), evaluation looks the name up.
    pub index: usize,
}

/// `allow|deny acl1 !acl2 ...`: matches when every ACL reference matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub action: Action,
    pub acls: Vec<AclRef>,
}

/// ACL types Squid (5.x, plus older renamed ones) knows; facts from
/// squid.conf.documented. Anything else is not an ACL type at all.
const SQUID_ACL_TYPES: &[&str] = &[
    "adaptation_service",
    "all-of",
    "annotate_client",
    "annotate_transaction",
    "any-of",
    "arp",
    "at_step",
    "browser",
    "ca_cert",
    "client_connection_mark",
    "clientside_mark",
    "connections_encrypted",
    "dst",
    "dst_as",
    "dstdom_regex",
    "dstdomain",
    "eui64",
    "ext_user",
    "ext_user_regex",
    "external",
    "has",
    "hier_code",
    "http_status",
    "ident",
    "ident_regex",
    "localip",
    "localport",
    "max_user_ip",
    "maxconn",
    "method",
    "myip",
    "myport",
    "myportname",
    "note",
    "peername",
    "peername_regex",
    "port",
    "proto",
    "proxy_auth",
    "proxy_auth_regex",
    "random",
    "referer_regex",
    "rep_header",
    "rep_mime_type",
    "req_header",
    "req_mime_type",
    "server_cert_fingerprint",
    "snmp_community",
    "squid_error",
    "src",
    "src_as",
    "srcdom_regex",
    "srcdomain",
    "ssl::server_name",
    "ssl::server_name_regex",
    "ssl_error",
    "tag",
    "time",
    "transaction_initiator",
    "url_regex",
    "urllogin",
    "urlpath_regex",
    "user_cert",
];

fn builtin(name: &str, data: AclData) -> Acl {
    let location = Location::new(BUILTIN_FILE, 0);
    Acl {
        name: name.to_string(),
        location,
        data,
        builtin: true,
    }
}

fn net(s: &str) -> Located<IpAclEntry> {
    // Only called with the constant built-in values below.
    let entry = parse_ip_entry(s)
        .map(|(e, _)| e)
        .unwrap_or(IpAclEntry::Host(s.to_string()));
    Located::new(entry, Location::new(BUILTIN_FILE, 0))
}

/// Squid 5's predefined ACLs.
pub(crate) fn builtin_acls() -> Vec<Acl> {
    vec![
        builtin("all", AclData::Src(vec![net("all")])),
        builtin("manager", AclData::Manager),
        builtin(
            "localhost",
            AclData::Src(vec![net("127.0.0.1"), net("::1")]),
        ),
        builtin(
            "to_localhost",
            AclData::Dst {
                entries: vec![
                    net("127.0.0.0/8"),
                    net("0.0.0.0/32"),
                    net("::1/128"),
                    net("::/128"),
                ],
                no_lookup: false,
            },
        ),
        builtin(
            "to_linklocal",
            AclData::Dst {
                entries: vec![net("169.254.0.0/16"), net("fe80::/10")],
                no_lookup: false,
            },
        ),
        builtin(
            "CONNECT",
            AclData::Method(vec![Located::new(
                "CONNECT".to_string(),
                Location::new(BUILTIN_FILE, 0),
            )]),
        ),
    ]
}

/// Squid 5's protocol names (AnyP::ProtocolType_str, below PROTO_UNKNOWN)
/// that a `proto` ACL accepts, compared case-insensitively; a URL scheme
/// maps to the name it equals case-insensitively (`cache_object` is
/// `CACHE_OBJECT`), CONNECT's authority-form target to `NONE`.
pub const PROTOCOL_NAMES: &[&str] = &[
    "NONE",
    "HTTP",
    "FTP",
    "HTTPS",
    "COAP",
    "COAPS",
    "GOPHER",
    "WAIS",
    "CACHE_OBJECT",
    "ICP",
    "HTCP",
    "URN",
    "WHOIS",
    "ICY",
    "TLS",
    "SSL",
    "AUTHORITY_FORM",
];

#[cfg(test)]
mod tests;
