//! The URL of an ICP query as the responder reads it: cut into the parts an
//! access check looks at ([`UrlParts`]), or escaped for an ERR reply
//! ([`escape_url`]) as Squid does.

use std::net::IpAddr;

use crate::access;

/// Squid's rfc1738 escaping of an unusable URL: controls, space, bytes
/// above 0x7e and the RFC 1738 "unsafe" characters become `%XX`.
pub fn escape_url(url: &[u8]) -> Vec<u8> {
    const UNSAFE: &[u8] = b" \"#%<>{}|\\^~[]`'";
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(url.len() + 16);
    for &b in url {
        if b <= 0x20 || b >= 0x7f || UNSAFE.contains(&b) {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
    out
}

/// An absolute URL cut into what an access check looks at. Borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'u> {
    pub scheme: &'u str,
    /// As written (the access check folds case); IPv6 in brackets.
    pub host: &'u str,
    /// The URL's port, or the scheme's default (0 when it has none).
    pub port: u16,
    /// Path and query; `/` when the URL has none.
    pub path: &'u str,
}

impl<'u> UrlParts<'u> {
    /// `scheme://[user@]host[:port][/path]`, as Squid's URL parser takes a
    /// request-target; `None` for anything else (relative URLs, an empty or
    /// malformed host, a bad port).
    pub fn split(url: &'u str) -> Option<UrlParts<'u>> {
        // Byte scans, not str patterns: this runs for every ICP query.
        let bytes = url.as_bytes();
        if !bytes.first()?.is_ascii_alphabetic() {
            return None;
        }
        let scheme_len = bytes
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.'))?;
        if bytes.get(scheme_len..scheme_len + 3) != Some(b"://".as_slice()) {
            return None;
        }
        let (scheme, rest) = (&url[..scheme_len], &url[scheme_len + 3..]);
        let end = rest
            .bytes()
            .position(|b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = if path.is_empty() { "/" } else { path };
        let hostport = match authority.bytes().rposition(|b| b == b'@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        let (host, port_text) = if let Some(v6) = hostport.strip_prefix('[') {
            let close = v6.find(']')?;
            let inside = &v6[..close];
            if inside.is_empty()
                || !inside
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            let after = &v6[close + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (&hostport[..close + 2], port)
        } else {
            match hostport.bytes().position(|b| b == b':') {
                Some(colon) => (&hostport[..colon], Some(&hostport[colon + 1..])),
                None => (hostport, None),
            }
        };
        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
        if !host_ok {
            return None;
        }
        let port = match port_text {
            None | Some("") => access::default_port(scheme).unwrap_or(0),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return None,
            },
        };
        Some(UrlParts {
            scheme,
            host,
            port,
            path,
        })
    }

    /// Squid's checklist for an ICP query: a GET of the URL from the peer.
    pub fn request(&self, from: IpAddr, url: &'u str) -> access::Request<'u> {
        access::Request {
            client: from,
            method: "GET",
            scheme: self.scheme,
            host: self.host,
            port: self.port,
            path: self.path,
            url,
            local_ip: None,
            local_port: 0,
            port_name: "",
            dst_addrs: None,
        }
    }
}
