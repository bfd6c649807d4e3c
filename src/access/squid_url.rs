//! How Squid reads a request's URL and host for ACLs: rfc1738 percent-decoding and numeric hosts in getaddrinfo/inet_aton forms.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Squid's rfc1738_unescape: `%XX` becomes the byte (except `%00`, kept as
/// written), `%%` becomes `%`, a `%` not followed by two hex digits stays.
/// Borrows when there is no `%`.
pub(super) fn rfc1738_unescape(s: &str) -> Cow<'_, [u8]> {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(bytes);
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b != b'%' {
            out.push(b);
            continue;
        }
        if bytes.get(i) == Some(&b'%') {
            out.push(b'%');
            i += 1;
            continue;
        }
        match (hex(bytes.get(i)), hex(bytes.get(i + 1))) {
            (Some(hi), Some(lo)) if hi << 4 | lo != 0 => {
                // hi, lo < 16, so the value fits a byte.
                out.push(u8::try_from(hi << 4 | lo).unwrap_or(b'%'));
                i += 2;
            }
            _ => out.push(b'%'),
        }
    }
    Cow::Owned(out)
}

/// The host as an IP address if it is numeric the way Squid's
/// `Ip::Address::fromHost` reads it (getaddrinfo with AI_NUMERICHOST): an
/// IPv6 address, bracketed or not, or an IPv4 address in inet_aton's forms
/// (`127.0.0.1`, `127.1`, `0x7f.1`, `2130706433`).
pub(super) fn parse_ip_host(host: &str) -> Option<IpAddr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if inner.contains(':') {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    inet_aton(inner).map(IpAddr::V4)
}

/// glibc's inet_aton (exact: nothing may follow): one to four parts, each
/// decimal, octal (leading 0) or hex (0x); the last part fills the
/// remaining bytes.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut n = 0;
    for part in s.split('.') {
        let slot = parts.get_mut(n)?;
        let (digits, radix) =
            if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (h, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (part.get(1..)?, 8)
            } else {
                (part, 10)
            };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        // "0x" alone is 0 for inet_aton.
        *slot = if digits.is_empty() {
            0
        } else if digits.bytes().all(|b| (b as char).is_digit(radix)) {
            u32::from_str_radix(digits, radix).ok()?
        } else {
            return None;
        };
        n += 1;
    }
    let value = match n {
        1 => parts[0],
        2 if parts[0] <= 0xff && parts[1] <= 0xff_ffff => parts[0] << 24 | parts[1],
        3 if parts[0] <= 0xff && parts[1] <= 0xff && parts[2] <= 0xffff => {
            parts[0] << 24 | parts[1] << 16 | parts[2]
        }
        4 if parts.iter().all(|&p| p <= 0xff) => {
            parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]
        }
        _ => return None,
    };
    Some(Ipv4Addr::from(value))
}
