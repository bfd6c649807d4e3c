//! One ACL value as written: addresses and networks, domains, port and status ranges, methods, times of the week, MAC addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{DomainEntry, IpAclEntry, PortRange, StatusRange, TimeSpec};
use crate::config::{Located, Location};

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

pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(super) fn parse_method(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(is_tchar) {
        return Err(format!("\"{s}\" is not an HTTP method"));
    }
    Ok(s.to_string())
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
