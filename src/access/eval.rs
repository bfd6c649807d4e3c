//! Whether one ACL matches the request: each ACL type's test (addresses, domains, ports, methods, regexes, headers, time, maxconn, arp, the built-in manager).

use std::net::{IpAddr, Ipv4Addr};

use http::HeaderMap;

use super::{Eval, Match, Request};
use crate::config::{Acl, AclData, AclRegex, IpAclEntry, Located, PortRange, PROTOCOL_NAMES};

pub(super) fn eval_acl(acl: &Acl, ev: &Eval<'_, '_>) -> Match {
    let req = ev.req;
    match &acl.data {
        AclData::Src(entries) => ip_match(entries, req.client),
        AclData::Dst { entries, no_lookup } => dst_match(entries, *no_lookup, ev),
        AclData::DstDomain { entries, index, .. } => {
            let host = ev.host();
            if index.covers(entries.len()) {
                index.matches_lowercase(host).into()
            } else {
                entries.iter().any(|e| e.matches(host)).into()
            }
        }
        AclData::Port(ranges) => in_ranges(ranges, req.port),
        AclData::Method(methods) => methods
            .iter()
            .any(|m| method_matches(&m.value, req.method))
            .into(),
        AclData::Proto(names) => {
            let proto = request_protocol(req);
            names.iter().any(|n| Some(n.as_str()) == proto).into()
        }
        AclData::LocalPort(ranges) => in_ranges(ranges, req.local_port),
        AclData::LocalIp(entries) => match req.local_ip {
            Some(ip) => ip_match(entries, ip),
            None => Match::No,
        },
        AclData::MyPortName(names) => {
            (!req.port_name.is_empty() && names.iter().any(|n| n.value == req.port_name)).into()
        }
        AclData::UrlRegex(patterns) => regex_match(patterns, ev.url()),
        // Squid: an empty path (CONNECT) never matches.
        AclData::UrlPathRegex(patterns) => {
            if req.path.is_empty() {
                Match::No
            } else {
                regex_match(patterns, ev.path())
            }
        }
        AclData::DstDomRegex { patterns, .. } => regex_match(patterns, ev.host().as_bytes()),
        AclData::Browser(patterns) => header_match(
            ev.details.request_headers,
            http::header::USER_AGENT.as_str(),
            patterns,
        ),
        AclData::RefererRegex(patterns) => header_match(
            ev.details.request_headers,
            http::header::REFERER.as_str(),
            patterns,
        ),
        AclData::ReqHeader { header, patterns } => {
            header_match(ev.details.request_headers, header, patterns)
        }
        AclData::RepHeader { header, patterns } => {
            header_match(ev.details.reply.map(|r| r.headers), header, patterns)
        }
        AclData::HttpStatus(ranges) => ev
            .details
            .reply
            .is_some_and(|r| ranges.iter().any(|s| s.contains(r.status)))
            .into(),
        AclData::Time(specs) => {
            let (weekday, minute) = ev.details.local_time.unwrap_or_else(local_time_now);
            specs.iter().any(|s| s.matches(weekday, minute)).into()
        }
        AclData::MaxConn(limit) => {
            (u64::try_from(ev.details.client_connections).unwrap_or(u64::MAX) > limit.value).into()
        }
        AclData::SrcDomain(entries) => ev
            .details
            .client_name
            .is_some_and(|name| entries.iter().any(|e| e.matches(name)))
            .into(),
        AclData::Arp(macs) => {
            let mac = match ev.details.arp_table {
                Some(table) => arp_lookup(table, req.client),
                None => std::fs::read_to_string("/proc/net/arp")
                    .ok()
                    .and_then(|table| arp_lookup(&table, req.client)),
            };
            mac.is_some_and(|mac| macs.iter().any(|m| m.value == mac))
                .into()
        }
        AclData::Manager => is_manager(ev).into(),
        AclData::Other { .. } => Match::Unevaluable,
    }
}

/// A regex header ACL: the header's fields joined with ", " (Squid's
/// combined value); no such header, no match.
fn header_match(headers: Option<&HeaderMap>, name: &str, patterns: &[Located<AclRegex>]) -> Match {
    let Some(headers) = headers else {
        return Match::No;
    };
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Match::No;
    };
    let rest: Vec<&[u8]> = values.map(|v| v.as_bytes()).collect();
    if rest.is_empty() {
        return regex_match(patterns, first.as_bytes());
    }
    let mut joined = first.as_bytes().to_vec();
    for v in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v);
    }
    regex_match(patterns, &joined)
}

/// The local weekday (0 = Sunday) and minute of the day, now.
fn local_time_now() -> (u32, u16) {
    use chrono::{Datelike, Timelike};
    let now = chrono::Local::now();
    let minute = now.hour() * 60 + now.minute();
    (
        now.weekday().num_days_from_sunday(),
        u16::try_from(minute).unwrap_or(0),
    )
}

/// The MAC address of `ip` in a /proc/net/arp table: complete entries only
/// (flag ATF_COM, 0x2). IPv6 clients have no ARP entry.
pub fn arp_lookup(table: &str, ip: IpAddr) -> Option<[u8; 6]> {
    let IpAddr::V4(ip) = ip.to_canonical() else {
        return None;
    };
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let addr: Ipv4Addr = fields.next()?.parse().ok()?;
        let _hw_type = fields.next()?;
        let flags = u32::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
        let mac = fields.next()?;
        if addr != ip || flags & 0x2 == 0 {
            return None;
        }
        crate::config::parse_mac(mac).ok()
    })
}

/// Whether `ip` is in any entry. Host-name entries cannot be evaluated
/// (Squid resolves them at start-up): if nothing else matched, say so.
fn ip_match(entries: &[Located<IpAclEntry>], ip: IpAddr) -> Match {
    if entries.iter().any(|e| e.contains(ip)) {
        return Match::Yes;
    }
    if entries
        .iter()
        .any(|e| matches!(e.value, IpAclEntry::Host(_)))
    {
        return Match::Unevaluable;
    }
    Match::No
}

fn dst_match(entries: &[Located<IpAclEntry>], no_lookup: bool, ev: &Eval<'_, '_>) -> Match {
    // Squid: a numeric host is its own address, with or without -n.
    if let Some(ip) = ev.literal() {
        return ip_match(entries, ip);
    }
    if no_lookup {
        return Match::No;
    }
    match ev.req.dst_addrs {
        Some(addrs) => {
            let mut result = Match::No;
            for &ip in addrs {
                match ip_match(entries, ip) {
                    Match::Yes => return Match::Yes,
                    Match::Unevaluable => result = Match::Unevaluable,
                    _ => {}
                }
            }
            result
        }
        None if ev.lazy_dst => Match::NeedDst,
        None => Match::No,
    }
}

fn in_ranges(ranges: &[Located<PortRange>], port: u16) -> Match {
    ranges.iter().any(|r| r.contains(port)).into()
}

fn regex_match(patterns: &[Located<AclRegex>], subject: &[u8]) -> Match {
    patterns.iter().any(|p| p.regex.is_match(subject)).into()
}

/// The methods Squid 5 knows (Http::MethodType). With Squid's default
/// `relaxed_header_parser on` these parse case-insensitively, in the config
/// and in requests alike; any other method is compared exactly.
const KNOWN_METHODS: &[&str] = &[
    "GET",
    "POST",
    "PUT",
    "HEAD",
    "CONNECT",
    "TRACE",
    "OPTIONS",
    "DELETE",
    "CHECKOUT",
    "CHECKIN",
    "UNCHECKOUT",
    "MKWORKSPACE",
    "VERSION-CONTROL",
    "REPORT",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "SEARCH",
    "PURGE",
];

fn method_matches(acl_method: &str, request_method: &str) -> bool {
    acl_method == request_method
        || (acl_method.eq_ignore_ascii_case(request_method)
            && KNOWN_METHODS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(acl_method)))
}

/// Squid's protocol name for the request: `NONE` for CONNECT (Squid's URL
/// parser leaves an authority-form target without a scheme), else the
/// scheme's name, `None` for a scheme Squid does not know.
fn request_protocol(req: &Request<'_>) -> Option<&'static str> {
    if method_matches("CONNECT", req.method) || req.scheme.is_empty() {
        return Some("NONE");
    }
    PROTOCOL_NAMES
        .iter()
        .copied()
        .filter(|&p| p != "NONE")
        .find(|p| p.eq_ignore_ascii_case(req.scheme))
}

/// Squid's built-in `manager`: `url_regex -i ^cache_object:// +i
/// ^[^:]+://[^/]+/squid-internal-mgr/` over the decoded URL. cuttle also
/// looks at the scheme and the decoded path directly, and ignores case
/// throughout, so a URL crafted to dodge the regex (a `%2F` in the
/// userinfo, CVE-2019-12524) is still a manager request.
fn is_manager(ev: &Eval<'_, '_>) -> bool {
    const MGR: &[u8] = b"/squid-internal-mgr/";
    if ev.req.scheme.eq_ignore_ascii_case("cache_object") || starts_with_ci(ev.path(), MGR) {
        return true;
    }
    let url = ev.url();
    if starts_with_ci(url, b"cache_object://") {
        return true;
    }
    // ^[^:]+://[^/]+/squid-internal-mgr/
    let Some(colon) = url.iter().position(|&b| b == b':') else {
        return false;
    };
    let Some(rest) = url.get(colon..).and_then(|r| r.strip_prefix(b"://")) else {
        return false;
    };
    match rest.iter().position(|&b| b == b'/') {
        Some(slash) if colon > 0 && slash > 0 => rest
            .get(slash..)
            .is_some_and(|tail| starts_with_ci(tail, MGR)),
        _ => false,
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}
