//! ACLs (`acl` lines: typed src/dst/dstdomain/port/method/proto/localport/localip/myportname/url_regex/urlpath_regex/dstdom_regex/browser/referer_regex/req_header/rep_header/http_status/time/maxconn/srcdomain/arp, Squid's built-ins, other types kept untyped) and access rule lists (`allow|deny [!]acl ...`), refusing rules that use an ACL cuttle cannot evaluate.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use regex::bytes::{Regex as BytesRegex, RegexBuilder as BytesRegexBuilder};

use super::directives::Ctx;
use super::lexer::{value_file_words, Line, Token, TokenKind};
use super::{Located, Location};

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

fn parse_addr(s: &str) -> Option<IpAddr> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    inner.parse().ok()
}

fn full_mask(v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::BROADCAST)
    } else {
        IpAddr::V6(Ipv6Addr::from(u128::MAX))
    }
}

fn and(a: IpAddr, m: IpAddr) -> IpAddr {
    match (a, m) {
        (IpAddr::V4(a), IpAddr::V4(m)) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m))),
        (IpAddr::V6(a), IpAddr::V6(m)) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & u128::from(m))),
        (a, _) => a,
    }
}

fn looks_like_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Parse one src/dst value: `all`, `ipv4`, `ipv6`, `ADDR`, `ADDR/BITS`,
/// `ADDR/DOTTED-MASK`, `A-B`, `A-B/MASK`, IPv6 forms, or a host name.
/// Returns the entry and an optional warning.
pub(crate) fn parse_ip_entry(s: &str) -> Result<(IpAclEntry, Option<String>), String> {
    match s {
        "all" => return Ok((IpAclEntry::Any, None)),
        "ipv4" => return Ok((IpAclEntry::AnyV4, None)),
        "ipv6" => return Ok((IpAclEntry::AnyV6, None)),
        _ => {}
    }
    let (addrs, mask) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let (first_s, last_s) = match addrs.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (addrs, None),
    };
    let not_ip = || format!("\"{s}\" is not an IP address, network, range or host name");
    let Some(first) = parse_addr(first_s) else {
        if mask.is_none() && looks_like_hostname(s) {
            return Ok((IpAclEntry::Host(s.to_ascii_lowercase()), None));
        }
        return Err(not_ip());
    };
    let v4 = first.is_ipv4();
    let last = match last_s {
        Some(l) => {
            let l = parse_addr(l).ok_or_else(not_ip)?;
            if l.is_ipv4() != v4 {
                return Err(format!("\"{s}\": the range mixes IPv4 and IPv6"));
            }
            Some(l)
        }
        None => None,
    };
    let mask = match mask {
        None => full_mask(v4),
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            let bits: u32 = m.parse().map_err(|_| not_ip())?;
            let max = if v4 { 32 } else { 128 };
            if bits > max {
                return Err(format!("\"{s}\": a /{bits} mask is longer than {max} bits"));
            }
            if v4 {
                let m = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(m))
            } else {
                let m = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(m))
            }
        }
        Some(m) => {
            let m = parse_addr(m).ok_or_else(|| format!("\"{s}\": \"{m}\" is not a netmask"))?;
            if m.is_ipv4() != v4 {
                return Err(format!("\"{s}\": the netmask is of another address family"));
            }
            m
        }
    };
    match last {
        None => {
            let masked = and(first, mask);
            let warning = (masked != first).then(|| {
                format!("\"{s}\": the netmask masks away part of the address; using {masked}")
            });
            Ok((
                IpAclEntry::Net {
                    first: masked,
                    last: masked,
                    mask,
                },
                warning,
            ))
        }
        Some(last) => {
            let ordered = match (first, last) {
                (IpAddr::V4(a), IpAddr::V4(b)) => a <= b,
                (IpAddr::V6(a), IpAddr::V6(b)) => a <= b,
                _ => false,
            };
            if !ordered {
                return Err(format!("\"{s}\": the range starts after it ends"));
            }
            Ok((IpAclEntry::Net { first, last, mask }, None))
        }
    }
}

/// Parse one dstdomain value.
pub(crate) fn parse_domain(s: &str) -> Result<DomainEntry, String> {
    let lower = s.to_ascii_lowercase();
    let (domain, subdomains) = match lower.strip_prefix('.') {
        Some(rest) => (rest.to_string(), true),
        None => (lower, false),
    };
    let domain = domain
        .strip_suffix('.')
        .map(str::to_string)
        .unwrap_or(domain);
    if domain.is_empty() {
        return Err(format!("\"{s}\" is not a domain name"));
    }
    if domain
        .chars()
        .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("\"{s}\" is not a domain name (a URL or path?)"));
    }
    Ok(DomainEntry { domain, subdomains })
}

/// Parse one port value: `80` or `1025-65535`.
pub(crate) fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let num = |t: &str| -> Result<u16, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("\"{s}\" is not a port or port range"));
        }
        t.parse()
            .map_err(|_| format!("\"{s}\" is not a port or port range (0-65535)"))
    };
    let (first, last) = parse_range(s, num, None)?;
    Ok(PortRange { first, last })
}

/// `N` or `N-M` (and `N-` when `open_end` says where it ends), each number
/// read by `num`; a range that starts after it ends is an error.
fn parse_range(
    s: &str,
    num: impl Fn(&str) -> Result<u16, String>,
    open_end: Option<u16>,
) -> Result<(u16, u16), String> {
    let (first, last) = match (s.split_once('-'), open_end) {
        (Some((a, "")), Some(end)) => (num(a)?, end),
        (Some((a, b)), _) => (num(a)?, num(b)?),
        (None, _) => {
            let n = num(s)?;
            (n, n)
        }
    };
    if first > last {
        return Err(format!("\"{s}\": the range starts after it ends"));
    }
    Ok((first, last))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_method(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(is_tchar) {
        return Err(format!("\"{s}\" is not an HTTP method"));
    }
    Ok(s.to_string())
}

/// Leading option flags of an `acl` line.
#[derive(Debug, Default)]
struct Flags {
    no_lookup: bool,
    /// For regex types: `-i` seen last (until a `+i`).
    case_insensitive: bool,
}

fn is_flag(t: &Token) -> bool {
    t.kind == TokenKind::Bare
        && (matches!(t.text.as_str(), "-i" | "+i" | "-n" | "--") || t.text.starts_with("-m"))
}

/// ACL types cuttle evaluates (typed in [`AclData`]); the other Squid types
/// are kept as [`AclData::Other`].
const EVALUATED_TYPES: &[&str] = &[
    "src",
    "dst",
    "dstdomain",
    "port",
    "method",
    "proto",
    "localport",
    "localip",
    "myportname",
    "url_regex",
    "urlpath_regex",
    "dstdom_regex",
    "browser",
    "referer_regex",
    "req_header",
    "rep_header",
    "http_status",
    "time",
    "maxconn",
    "srcdomain",
    "arp",
];

/// ACL types Squid 5 renamed, read under the new name with Squid's
/// "UPGRADE" warning: (old, current). From Squid's ACL::ParseAclLine.
const RENAMED_TYPES: &[(&str, &str)] = &[
    ("myip", "localip"),
    ("myport", "localport"),
    ("clientside_mark", "client_connection_mark"),
];

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

/// The option flags each evaluated type accepts (Squid's per-type options).
fn flag_allowed(acl_type: &str, flag: &str) -> bool {
    match acl_type {
        "dst" => flag == "-n",
        "dstdomain" => flag == "-n" || flag == "-i",
        "dstdom_regex" => matches!(flag, "-n" | "-i" | "+i"),
        "url_regex" | "urlpath_regex" | "browser" | "referer_regex" => {
            matches!(flag, "-i" | "+i")
        }
        _ => false,
    }
}

/// A regex error message on one line (the regex crate's are multi-line).
fn regex_error_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// Compile one regex ACL pattern the way Squid's regcomp(REG_EXTENDED)
/// reads it as closely as the regex crate allows: bytes, no Unicode
/// classes, ASCII case folding, `.` also matching a newline; with limits so
/// a hostile pattern cannot take unbounded memory.
pub(crate) fn compile_acl_regex(
    pattern: &str,
    case_insensitive: bool,
) -> Result<BytesRegex, String> {
    BytesRegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .unicode(false)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| regex_error_line(&e))
}

/// The values of an `acl` line after its flags: inline tokens, plus the
/// words of any quoted value file (`"path"` when
/// configuration_includes_quoted_values is off, or `parameters("path")`).
fn collect_values(ctx: &mut Ctx<'_, '_>, line: &Line, tokens: &[Token]) -> Vec<Located<String>> {
    let quoted_is_file = !ctx.config.configuration_includes_quoted_values.value;
    let mut values = Vec::new();
    for t in tokens {
        let is_file =
            t.kind == TokenKind::ParamsFile || (t.kind == TokenKind::Quoted && quoted_is_file);
        if !is_file {
            values.push(Located::new(t.text.clone(), line.location.clone()));
            continue;
        }
        let path = ctx.files.resolve(&t.text, &line.location.file);
        match ctx.files.read(&path) {
            Ok(text) => {
                for (n, word) in value_file_words(&text) {
                    values.push(Located::new(word, Location::new(&path, n)));
                }
            }
            Err(reason) => ctx.error(&line.location, format!("acl: {reason}")),
        }
    }
    values
}

/// Parse an `acl NAME TYPE [flags] values...` line into the ACL table.
pub(crate) fn parse_acl(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let args = line.args();
    let Some(name_tok) = args.first() else {
        ctx.error(loc, "acl: missing ACL name".into());
        return;
    };
    let name = name_tok.text.clone();
    let Some(type_tok) = args.get(1) else {
        ctx.error(loc, format!("acl: ACL \"{name}\" has no type"));
        return;
    };
    let mut acl_type = type_tok.text.as_str();
    if !SQUID_ACL_TYPES.contains(&acl_type) {
        ctx.error(loc, format!("acl: \"{acl_type}\" is not an ACL type"));
        return;
    }
    if let Some(&(old, current)) = RENAMED_TYPES.iter().find(|(old, _)| *old == acl_type) {
        ctx.warn(
            loc,
            format!("acl: ACL type {old} has been renamed to {current}; read as {current}"),
        );
        acl_type = current;
    }
    let rest = args.get(2..).unwrap_or(&[]);
    let typed = EVALUATED_TYPES.contains(&acl_type);
    let regex_type = matches!(
        acl_type,
        "url_regex"
            | "urlpath_regex"
            | "dstdom_regex"
            | "browser"
            | "referer_regex"
            | "req_header"
            | "rep_header"
    );

    let mut flags = Flags::default();
    let mut start = 0;
    if typed {
        while let Some(t) = rest.get(start).filter(|t| is_flag(t)) {
            start += 1;
            if t.text == "--" {
                break;
            }
            if !flag_allowed(acl_type, &t.text) {
                ctx.error(
                    loc,
                    format!(
                        "acl: option {} is not supported by ACL type {acl_type}",
                        t.text
                    ),
                );
                continue;
            }
            flags.no_lookup |= t.text == "-n";
            if regex_type && t.text != "-n" {
                flags.case_insensitive = t.text == "-i";
            }
        }
    }
    if regex_type && ctx.config.configuration_includes_quoted_values.value {
        // Squid: "FATAL: Can not read regex expression while
        // configuration_includes_quoted_values is enabled".
        ctx.error(
            loc,
            format!("acl: a {acl_type} ACL cannot be read while configuration_includes_quoted_values is on (Squid refuses it too)"),
        );
        return;
    }
    let values = collect_values(ctx, line, rest.get(start..).unwrap_or(&[]));
    if values.is_empty() {
        ctx.warn(
            loc,
            format!("acl: ACL \"{name}\" ({acl_type}) has no values"),
        );
    }

    // Parse each value with `parse`, reporting failures at the value's place.
    fn each<T>(
        ctx: &mut Ctx<'_, '_>,
        values: Vec<Located<String>>,
        mut parse: impl FnMut(&mut Ctx<'_, '_>, &Located<String>) -> Result<Option<T>, String>,
    ) -> Vec<Located<T>> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            match parse(ctx, &v) {
                Ok(Some(x)) => out.push(Located::new(x, v.location)),
                Ok(None) => {}
                Err(reason) => ctx.error(&v.location, format!("acl: {reason}")),
            }
        }
        out
    }
    let ip = |ctx: &mut Ctx<'_, '_>, v: &Located<String>| -> Result<Option<IpAclEntry>, String> {
        let (entry, warning) = parse_ip_entry(&v.value)?;
        if let Some(w) = warning {
            ctx.warn(&v.location, format!("acl: {w}"));
        }
        Ok(Some(entry))
    };
    let port = |_: &mut Ctx<'_, '_>, v: &Located<String>| parse_port_range(&v.value).map(Some);
    let mut case_insensitive = flags.case_insensitive;
    let mut pattern = |_: &mut Ctx<'_, '_>, v: &Located<String>| match v.value.as_str() {
        // Squid reads -i and +i anywhere among the patterns, for those after.
        "-i" => {
            case_insensitive = true;
            Ok(None)
        }
        "+i" => {
            case_insensitive = false;
            Ok(None)
        }
        p => compile_acl_regex(p, case_insensitive)
            .map(|regex| {
                Some(AclRegex {
                    pattern: p.to_string(),
                    case_insensitive,
                    regex,
                })
            })
            .map_err(|e| format!("bad regular expression \"{p}\": {e}")),
    };

    let data = match acl_type {
        "src" => AclData::Src(each(ctx, values, ip)),
        "dst" => AclData::Dst {
            entries: each(ctx, values, ip),
            no_lookup: flags.no_lookup,
        },
        "localip" => AclData::LocalIp(each(ctx, values, ip)),
        "dstdomain" => AclData::DstDomain {
            entries: each(ctx, values, |_, v| parse_domain(&v.value).map(Some)),
            no_lookup: flags.no_lookup,
            index: DomainIndex::default(),
        },
        "port" => AclData::Port(each(ctx, values, port)),
        "localport" => AclData::LocalPort(each(ctx, values, port)),
        "method" => AclData::Method(each(ctx, values, |_, v| parse_method(&v.value).map(Some))),
        "proto" => AclData::Proto(each(ctx, values, |ctx, v| {
            match PROTOCOL_NAMES
                .iter()
                .find(|p| p.eq_ignore_ascii_case(&v.value))
            {
                Some(p) => Ok(Some(p.to_string())),
                None => {
                    // Squid: "WARNING: Ignoring unknown protocol".
                    ctx.warn(
                        &v.location,
                        format!(
                            "acl: unknown protocol \"{}\" in ACL \"{name}\" ignored, as Squid does",
                            v.value
                        ),
                    );
                    Ok(None)
                }
            }
        })),
        "myportname" => AclData::MyPortName(each(ctx, values, |_, v| Ok(Some(v.value.clone())))),
        "url_regex" => AclData::UrlRegex(each(ctx, values, &mut pattern)),
        "urlpath_regex" => AclData::UrlPathRegex(each(ctx, values, &mut pattern)),
        "dstdom_regex" => AclData::DstDomRegex {
            patterns: each(ctx, values, &mut pattern),
            no_lookup: flags.no_lookup,
        },
        "browser" => AclData::Browser(each(ctx, values, &mut pattern)),
        "referer_regex" => AclData::RefererRegex(each(ctx, values, &mut pattern)),
        "req_header" | "rep_header" => {
            let mut values = values.into_iter();
            let Some(header) = values.next() else {
                ctx.error(loc, format!("acl: {acl_type} needs a header name"));
                return;
            };
            if header.value.is_empty() || !header.value.bytes().all(is_tchar) {
                ctx.error(
                    &header.location,
                    format!("acl: \"{}\" is not a header name", header.value),
                );
                return;
            }
            let patterns = each(ctx, values.collect(), &mut pattern);
            if patterns.is_empty() {
                ctx.error(
                    loc,
                    format!(
                        "acl: {acl_type} {} needs a regular expression",
                        header.value
                    ),
                );
                return;
            }
            let header = header.value.to_ascii_lowercase();
            if acl_type == "req_header" {
                AclData::ReqHeader { header, patterns }
            } else {
                AclData::RepHeader { header, patterns }
            }
        }
        "http_status" => AclData::HttpStatus(each(ctx, values, |_, v| {
            parse_status_range(&v.value).map(Some)
        })),
        "time" => match parse_time_specs(&values) {
            Ok(specs) => AclData::Time(specs),
            Err((at, reason)) => {
                ctx.error(&at, format!("acl: {reason}"));
                return;
            }
        },
        "maxconn" => {
            let mut values = values.into_iter();
            let Some(first) = values.next() else {
                return;
            };
            let Ok(limit) = first.value.parse::<u64>() else {
                ctx.error(
                    &first.location,
                    format!(
                        "acl: maxconn takes a number of connections, not \"{}\"",
                        first.value
                    ),
                );
                return;
            };
            if let Some(extra) = values.next() {
                // Squid: "Ignoring data after max client connections".
                ctx.warn(
                    &extra.location,
                    format!("acl: maxconn takes one number; \"{}\" and what follows are ignored, as Squid does", extra.value),
                );
            }
            AclData::MaxConn(Located::new(limit, first.location))
        }
        "srcdomain" => {
            AclData::SrcDomain(each(ctx, values, |_, v| parse_domain(&v.value).map(Some)))
        }
        "arp" => AclData::Arp(each(ctx, values, |_, v| parse_mac(&v.value).map(Some))),
        other => AclData::Other {
            acl_type: other.to_string(),
            values,
        },
    };
    add_acl(ctx, loc, name, data);
}

/// Parse one `http_status` value: `200`, `300-399`, or `500-` (to 999).
pub(crate) fn parse_status_range(s: &str) -> Result<StatusRange, String> {
    let code = |t: &str| -> Result<u16, String> {
        match t.parse::<u16>() {
            Ok(n) if t.bytes().all(|b| b.is_ascii_digit()) && n <= 999 => Ok(n),
            _ => Err(format!(
                "\"{s}\" is not an HTTP status code or range (e.g. 200, 300-399, 500-)"
            )),
        }
    };
    let (first, last) = parse_range(s, code, Some(999))?;
    Ok(StatusRange { first, last })
}

/// Parse `HH:MM-HH:MM` into minutes since midnight (hours 0-24, minutes 0-59).
fn parse_time_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("\"{s}\" is not a time range h1:m1-h2:m2 (e.g. 08:00-17:30)");
    let minute = |t: &str| -> Result<u16, String> {
        let (h, m) = t.split_once(':').ok_or_else(bad)?;
        let digits =
            |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return Err(bad());
        }
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 24 || m > 59 {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (start, end) = (minute(a)?, minute(b)?);
    if start > end {
        return Err(format!(
            "\"{s}\": the time range is reversed (h1:m1 must be less than h2:m2; split a range across midnight into two ACL lines)"
        ));
    }
    Ok((start, end))
}

/// Parse the values of one `time` line: day letters (S M T W H F A, and
/// Squid's D for Monday to Friday) and `h1:m1-h2:m2` ranges. Each range
/// applies to the days written before it (every day if none); days with
/// no range cover the whole day.
pub(crate) fn parse_time_specs(
    values: &[Located<String>],
) -> Result<Vec<Located<TimeSpec>>, (Location, String)> {
    const ALL_DAYS: u8 = 0x7f;
    let mut days = 0u8;
    let mut specs = Vec::new();
    let mut last_location = None;
    for v in values {
        last_location = Some(v.location.clone());
        if v.value.starts_with(|c: char| c.is_ascii_digit()) {
            let (start, end) = parse_time_range(&v.value).map_err(|e| (v.location.clone(), e))?;
            let days = if days == 0 { ALL_DAYS } else { days };
            specs.push(Located::new(
                TimeSpec { days, start, end },
                v.location.clone(),
            ));
            continue;
        }
        for c in v.value.chars() {
            days |= match c {
                'S' => 1,
                'M' => 1 << 1,
                'T' => 1 << 2,
                'W' => 1 << 3,
                'H' => 1 << 4,
                'F' => 1 << 5,
                'A' => 1 << 6,
                'D' => 0b0011_1110,
                _ => {
                    return Err((
                        v.location.clone(),
                        format!(
                            "\"{}\": '{c}' is not a day letter (S M T W H F A) and this is not a time range h1:m1-h2:m2",
                            v.value
                        ),
                    ))
                }
            };
        }
    }
    if specs.is_empty() {
        if let Some(location) = last_location {
            specs.push(Located::new(
                TimeSpec {
                    days,
                    start: 0,
                    end: 24 * 60,
                },
                location,
            ));
        }
    }
    Ok(specs)
}

/// Parse a MAC address `xx:xx:xx:xx:xx:xx` (one or two hex digits each).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("\"{s}\" is not a MAC address (xx:xx:xx:xx:xx:xx)");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.is_empty() || part.len() > 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Define a new ACL or append to an existing one of the same type.
fn add_acl(ctx: &mut Ctx<'_, '_>, loc: &Location, name: String, data: AclData) {
    let key = name.to_ascii_lowercase();
    let Some(&index) = ctx.acl_index.get(&key) else {
        if let AclData::Other { acl_type, .. } = &data {
            ctx.warn(
                loc,
                format!(
                    "acl: ACL \"{name}\" has type {acl_type}, which cuttle does not evaluate yet"
                ),
            );
        }
        ctx.acl_index.insert(key, ctx.config.acls.len());
        ctx.config.acls.push(Acl {
            name,
            location: loc.clone(),
            data,
            builtin: false,
        });
        return;
    };
    let Some(existing) = ctx.config.acls.get_mut(index) else {
        return;
    };
    let builtin = existing.builtin;
    let old_type = existing.data.type_name().to_string();
    if old_type != data.type_name() {
        let first = existing.location.clone();
        if builtin {
            ctx.warn(
                loc,
                format!(
                    "acl: \"{name}\" is predefined by Squid as a {old_type} ACL; this {} definition is ignored",
                    data.type_name()
                ),
            );
        } else {
            ctx.error(
                loc,
                format!(
                    "acl: ACL \"{name}\" is already defined with type {old_type} at {first}; it cannot be redefined as {}",
                    data.type_name()
                ),
            );
        }
        return;
    }
    let mut header_conflict = None;
    let appended = match (&mut existing.data, data) {
        (AclData::Src(a), AclData::Src(b)) => {
            a.extend(b);
            true
        }
        (
            AclData::Dst {
                entries: a,
                no_lookup: na,
            },
            AclData::Dst {
                entries: b,
                no_lookup: nb,
            },
        ) => {
            a.extend(b);
            *na |= nb;
            true
        }
        (
            AclData::DstDomain {
                entries: a,
                no_lookup: na,
                ..
            },
            AclData::DstDomain {
                entries: b,
                no_lookup: nb,
                ..
            },
        ) => {
            a.extend(b);
            *na |= nb;
            true
        }
        (
            AclData::DstDomRegex {
                patterns: a,
                no_lookup: na,
            },
            AclData::DstDomRegex {
                patterns: b,
                no_lookup: nb,
            },
        ) => {
            a.extend(b);
            *na |= nb;
            true
        }
        (AclData::Port(a), AclData::Port(b)) | (AclData::LocalPort(a), AclData::LocalPort(b)) => {
            a.extend(b);
            true
        }
        (AclData::LocalIp(a), AclData::LocalIp(b)) => {
            a.extend(b);
            true
        }
        (AclData::Method(a), AclData::Method(b))
        | (AclData::Proto(a), AclData::Proto(b))
        | (AclData::MyPortName(a), AclData::MyPortName(b)) => {
            a.extend(b);
            true
        }
        (AclData::UrlRegex(a), AclData::UrlRegex(b))
        | (AclData::UrlPathRegex(a), AclData::UrlPathRegex(b)) => {
            a.extend(b);
            true
        }
        (AclData::Browser(a), AclData::Browser(b))
        | (AclData::RefererRegex(a), AclData::RefererRegex(b)) => {
            a.extend(b);
            true
        }
        (
            AclData::ReqHeader {
                header: ha,
                patterns: a,
            },
            AclData::ReqHeader {
                header: hb,
                patterns: b,
            },
        )
        | (
            AclData::RepHeader {
                header: ha,
                patterns: a,
            },
            AclData::RepHeader {
                header: hb,
                patterns: b,
            },
        ) => {
            if *ha != hb {
                header_conflict = Some(format!("acl: ACL \"{name}\" tests header {ha}; one ACL cannot test another header ({hb}): define a second ACL"));
                false
            } else {
                a.extend(b);
                true
            }
        }
        (AclData::HttpStatus(a), AclData::HttpStatus(b)) => {
            a.extend(b);
            true
        }
        (AclData::Time(a), AclData::Time(b)) => {
            a.extend(b);
            true
        }
        (AclData::MaxConn(a), AclData::MaxConn(b)) => {
            *a = b;
            true
        }
        (AclData::SrcDomain(a), AclData::SrcDomain(b)) => {
            a.extend(b);
            true
        }
        (AclData::Arp(a), AclData::Arp(b)) => {
            a.extend(b);
            true
        }
        (AclData::Other { values: a, .. }, AclData::Other { values: b, .. }) => {
            a.extend(b);
            true
        }
        _ => false,
    };
    if let Some(message) = header_conflict {
        ctx.error(loc, message);
        return;
    }
    // Squid appends to its predefined ACLs silently, but adding to `all` or
    // `localhost` is a leftover from Squid 2.x/3.0 configs worth pointing out.
    // CONNECT is left alone: every Squid 3 config had to define it.
    if builtin && !name.eq_ignore_ascii_case("CONNECT") {
        let what = if appended {
            "this line adds to it"
        } else {
            "this line is ignored"
        };
        ctx.warn(
            loc,
            format!("acl: \"{name}\" is predefined by Squid; {what}"),
        );
    }
}

/// Parse `allow|deny [!]acl ...` (the arguments after any leading fields)
/// and check that every ACL named is defined. Returns `None` (after a
/// diagnostic) when the rule is unusable.
pub(crate) fn parse_rule(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    directive: &str,
    args: &[Token],
) -> Option<AccessRule> {
    let loc = &line.location;
    let Some(action_tok) = args.first() else {
        ctx.error(loc, format!("{directive}: missing allow or deny"));
        return None;
    };
    let action = match action_tok.text.as_str() {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        other => {
            ctx.error(
                loc,
                format!("{directive}: expected allow or deny, got \"{other}\""),
            );
            return None;
        }
    };
    let acls = parse_acl_refs(ctx, line, directive, args.get(1..).unwrap_or(&[]))?;
    if acls.is_empty() {
        // Squid skips such a line ("Access line contains no ACL's").
        ctx.warn(
            loc,
            format!("{directive}: rule names no ACL; Squid skips it"),
        );
        return None;
    }
    // Squid warns at run time ("used in context without an HTTP response.
    // Assuming mismatch"); the config already says so.
    if directive != "http_reply_access" {
        for r in &acls {
            let Some(acl) = ctx.config.acls.get(r.index) else {
                continue;
            };
            if matches!(acl.data, AclData::RepHeader { .. } | AclData::HttpStatus(_)) {
                let message = format!(
                    "{directive}: ACL \"{}\" ({}) looks at the reply, which {directive} does not have: it never matches here (as in Squid); use it in http_reply_access",
                    r.name,
                    acl.data.type_name()
                );
                ctx.warn(loc, message);
            }
        }
    }
    // A rule cuttle cannot evaluate as Squid would is refused: skipping it
    // or guessing could let in what the config keeps out.
    let mut refused = false;
    for r in &acls {
        let Some(acl) = ctx.config.acls.get(r.index) else {
            continue;
        };
        if let Some(reason) = acl.data.unsupported_reason() {
            let message = format!(
                "{directive}: ACL \"{}\" (defined at {}) cannot be evaluated: {reason}; cuttle refuses a config whose access rules it cannot enforce",
                r.name, acl.location
            );
            ctx.error(loc, message);
            refused = true;
        }
    }
    (!refused).then_some(AccessRule { action, acls })
}

/// Parse a list of `[!]acl` names and check each is defined.
pub(crate) fn parse_acl_refs(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    directive: &str,
    args: &[Token],
) -> Option<Vec<AclRef>> {
    let mut refs = Vec::with_capacity(args.len());
    let mut ok = true;
    for t in args {
        let (negated, name) = match t.text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, t.text.as_str()),
        };
        if name.is_empty() {
            ctx.error(
                &line.location,
                format!("{directive}: \"!\" must be followed by an ACL name"),
            );
            ok = false;
            continue;
        }
        if !ctx.require_acl(name, &line.location, directive) {
            ok = false;
        }
        let index = ctx
            .acl_index
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(usize::MAX);
        refs.push(AclRef {
            name: name.to_string(),
            negated,
            index,
        });
    }
    ok.then_some(refs)
}

/// At the end of loading: index every dstdomain ACL for fast lookups.
pub(crate) fn finish(ctx: &mut Ctx<'_, '_>) {
    for acl in &mut ctx.config.acls {
        if let AclData::DstDomain { entries, index, .. } = &mut acl.data {
            *index = DomainIndex::build(entries);
        }
    }
}

/// Squid warns when a dstdomain ACL lists a domain twice or lists a host
/// already covered by a `.domain` entry: the narrower entry is dropped.
pub(crate) fn check_domain_overlaps(ctx: &mut Ctx<'_, '_>) {
    let mut warnings = Vec::new();
    for acl in &ctx.config.acls {
        let AclData::DstDomain { entries, .. } = &acl.data else {
            continue;
        };
        let wildcards: HashSet<&str> = entries
            .iter()
            .filter(|e| e.subdomains)
            .map(|e| e.domain.as_str())
            .collect();
        let mut seen: HashMap<(&str, bool), &Location> = HashMap::new();
        for e in entries {
            let written = |d: &DomainEntry| {
                if d.subdomains {
                    format!(".{}", d.domain)
                } else {
                    d.domain.clone()
                }
            };
            if let Some(first) = seen.get(&(e.domain.as_str(), e.subdomains)) {
                warnings.push((
                    e.location.clone(),
                    format!(
                        "acl: \"{}\" is listed twice in ACL \"{}\" (first at {first})",
                        written(e),
                        acl.name
                    ),
                ));
                continue;
            }
            seen.insert((e.domain.as_str(), e.subdomains), &e.location);
            // Every proper parent domain of this entry, and for an exact host
            // the same name, could cover it.
            let mut covering = None;
            if !e.subdomains && wildcards.contains(e.domain.as_str()) {
                covering = Some(e.domain.as_str());
            }
            let mut rest = e.domain.as_str();
            while covering.is_none() {
                let Some((_, parent)) = rest.split_once('.') else {
                    break;
                };
                if wildcards.contains(parent) {
                    covering = Some(parent);
                }
                rest = parent;
            }
            if let Some(parent) = covering {
                warnings.push((
                    e.location.clone(),
                    format!(
                        "acl: \"{}\" is already matched by \".{parent}\" in ACL \"{}\"; Squid ignores it",
                        written(e),
                        acl.name
                    ),
                ));
            }
        }
    }
    for (loc, message) in warnings {
        ctx.warn(&loc, message);
    }
}

#[cfg(test)]
mod tests;
