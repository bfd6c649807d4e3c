//! Mesh discovery announcements (cuttle's own, no Squid equivalent): what a
//! node multicasts so that others can build a parent tree with it (issue
//! 20, after LSAM's request routing), parsed with nom and encoded back, and
//! optionally authenticated with HMAC-SHA256 over a shared secret.
//!
//! Version 1, all integers big-endian:
//!
//! ```text
//! offset  size  field
//!  0      4     magic "CTLD"
//!  4      1     version (1)
//!  5      1     flags: bit 0 = a 32-byte MAC ends the datagram; others 0
//!  6      1     role: 0 client, 1 exit, 2 auto
//!  7      1     depth: hops to an exit (exits 0; 255 = no path yet)
//!  8      2     http_port
//! 10      2     icp_port (0 = none)
//! 12      2     htcp_port (0 = none)
//! 14      2     load (client requests in the last interval, saturated)
//! 16      4     seq: counts the node's announcements
//! 20      1     address_family: 0 none (use the datagram's source), 4, 6
//! 21      0/4/16 address: where the node's ports listen
//!  .      1+n   name: length (1-255), visible ASCII; the node's unique name
//!  .      1+n   parent: length (0-255), visible ASCII; its parent now, "" none
//!  .      32    mac (flag bit 0): HMAC-SHA256 of every byte before it
//! ```
//!
//! A version other than 1 is an error (the reader ignores the datagram):
//! a later version may change any field after the version byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aws_lc_rs::hmac;
use nom::Parser;

use crate::error::{Error, ErrorKind};
use crate::wire::{bytes_field, expect_end, fail, finish, u16_field, u32_field, u8_field, PResult};

/// The first bytes of every announcement.
pub const MAGIC: [u8; 4] = *b"CTLD";
/// The version this module reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of the HMAC-SHA256 that ends an authenticated announcement.
pub const MAC_LEN: usize = 32;
/// The depth of a node that has no path to an exit (yet).
pub const NO_DEPTH: u8 = 255;
const FLAG_MAC: u8 = 1;

/// What a node says it is (LSAM's two stated roles, and the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Serves its own users; takes a parent, is never one.
    Client,
    /// Goes to origins directly: depth 0, the root of a tree.
    Exit,
    /// Picks its parent among the nodes it hears.
    Auto,
}

impl Role {
    fn wire(self) -> u8 {
        match self {
            Role::Client => 0,
            Role::Exit => 1,
            Role::Auto => 2,
        }
    }

    fn from_wire(byte: u8) -> Option<Role> {
        match byte {
            0 => Some(Role::Client),
            1 => Some(Role::Exit),
            2 => Some(Role::Auto),
            _ => None,
        }
    }

    /// The word used in squid.conf and on the mgr pages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Exit => "exit",
            Role::Auto => "auto",
        }
    }
}

/// One announcement, borrowing its names from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement<'a> {
    pub name: &'a str,
    /// Where the node's ports listen; `None`: the datagram's source.
    pub addr: Option<IpAddr>,
    pub http_port: u16,
    pub icp_port: u16,
    pub htcp_port: u16,
    pub role: Role,
    /// Hops to an exit; [`NO_DEPTH`] when the node has no path.
    pub depth: u8,
    pub load: u16,
    pub seq: u32,
    /// The node's parent now (its name), "" for none.
    pub parent: &'a str,
}

/// A parsed datagram: the announcement, and what its MAC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub announcement: Announcement<'a>,
    /// The bytes the MAC is computed over (all before it).
    pub signed: &'a [u8],
    pub mac: Option<&'a [u8]>,
}

impl Parsed<'_> {
    /// True when the announcement carries a MAC and it is right for `key`
    /// (compared in constant time by aws-lc-rs).
    pub fn verify(&self, key: &[u8]) -> bool {
        let Some(mac) = self.mac else {
            return false;
        };
        hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), self.signed, mac).is_ok()
    }
}

/// Names are single visible-ASCII words: they go into `cache_peer name=`.
fn is_name(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii_graphic())
}

fn name_field<'a>(input: &'a [u8], field: &'static str, min: usize) -> PResult<'a, &'a str> {
    let (rest, len) = u8_field(field).parse(input)?;
    if usize::from(len) < min {
        return fail(input, field, ErrorKind::Invalid("empty name"));
    }
    let (after, bytes) = bytes_field(field, usize::from(len)).parse(rest)?;
    match std::str::from_utf8(bytes) {
        Ok(text) if is_name(bytes) => Ok((after, text)),
        _ => fail(rest, field, ErrorKind::Invalid("not a visible-ASCII word")),
    }
}

fn address(input: &[u8]) -> PResult<'_, Option<IpAddr>> {
    let (rest, family) = u8_field("address_family").parse(input)?;
    match family {
        0 => Ok((rest, None)),
        4 => {
            let (rest, b) = bytes_field("address", 4).parse(rest)?;
            let octets: [u8; 4] = [b[0], b[1], b[2], b[3]];
            Ok((rest, Some(IpAddr::V4(Ipv4Addr::from(octets)))))
        }
        6 => {
            let (rest, b) = bytes_field("address", 16).parse(rest)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            Ok((rest, Some(IpAddr::V6(Ipv6Addr::from(octets)))))
        }
        _ => fail(input, "address_family", ErrorKind::Invalid("not 0, 4 or 6")),
    }
}

fn datagram(input: &[u8]) -> PResult<'_, Parsed<'_>> {
    let whole = input;
    let (rest, magic) = bytes_field("magic", 4).parse(input)?;
    if magic != MAGIC {
        return fail(
            input,
            "magic",
            ErrorKind::Invalid("not a cuttle announcement"),
        );
    }
    let (after, version) = u8_field("version").parse(rest)?;
    if version != VERSION {
        return fail(rest, "version", ErrorKind::UnknownVersion(version));
    }
    let (after_flags, flags) = u8_field("flags").parse(after)?;
    if flags & !FLAG_MAC != 0 {
        return fail(after, "flags", ErrorKind::Invalid("unknown flag bits"));
    }
    let (after_role, role) = u8_field("role").parse(after_flags)?;
    let Some(role) = Role::from_wire(role) else {
        return fail(after_flags, "role", ErrorKind::Invalid("not 0, 1 or 2"));
    };
    let (rest, (depth, http_port, icp_port, htcp_port, load, seq)) = (
        u8_field("depth"),
        u16_field("http_port"),
        u16_field("icp_port"),
        u16_field("htcp_port"),
        u16_field("load"),
        u32_field("seq"),
    )
        .parse(after_role)?;
    let (rest, addr) = address(rest)?;
    let (rest, name) = name_field(rest, "name", 1)?;
    let (rest, parent) = name_field(rest, "parent", 0)?;
    let signed = &whole[..whole.len() - rest.len()];
    let (rest, mac) = if flags & FLAG_MAC != 0 {
        let (rest, mac) = bytes_field("mac", MAC_LEN).parse(rest)?;
        (rest, Some(mac))
    } else {
        (rest, None)
    };
    let (rest, ()) = expect_end(rest, "datagram")?;
    let announcement = Announcement {
        name,
        addr,
        http_port,
        icp_port,
        htcp_port,
        role,
        depth,
        load,
        seq,
        parent,
    };
    Ok((
        rest,
        Parsed {
            announcement,
            signed,
            mac,
        },
    ))
}

/// Parses one announcement datagram. It is not authenticated yet: call
/// [`Parsed::verify`] when a key is configured.
pub fn parse(datagram_bytes: &[u8]) -> Result<Parsed<'_>, Error> {
    finish(datagram_bytes, datagram(datagram_bytes))
}

fn put_name(
    out: &mut Vec<u8>,
    name: &str,
    field: &'static str,
    min: usize,
    offset: usize,
) -> Result<(), Error> {
    let len = name.len();
    if len > 255 {
        return Err(Error::new(
            ErrorKind::TooLong { len, max: 255 },
            field,
            offset,
        ));
    }
    if len < min || !is_name(name.as_bytes()) {
        return Err(Error::new(
            ErrorKind::Invalid("not a visible-ASCII word"),
            field,
            offset,
        ));
    }
    out.push(len as u8);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Appends `a` to `out`, with a MAC when `key` is given. On error `out`
/// is left as it was.
pub fn encode(a: &Announcement<'_>, key: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    let result = encode_into(a, key, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_into(
    a: &Announcement<'_>,
    key: Option<&[u8]>,
    out: &mut Vec<u8>,
    start: usize,
) -> Result<(), Error> {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(if key.is_some() { FLAG_MAC } else { 0 });
    out.push(a.role.wire());
    out.push(a.depth);
    for n in [a.http_port, a.icp_port, a.htcp_port, a.load] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&a.seq.to_be_bytes());
    match a.addr {
        None => out.push(0),
        Some(IpAddr::V4(v4)) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    put_name(out, a.name, "name", 1, out.len() - start)?;
    put_name(out, a.parent, "parent", 0, out.len() - start)?;
    if let Some(key) = key {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &out[start..]);
        out.extend_from_slice(tag.as_ref());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn sample() -> Announcement<'static> {
        Announcement {
            name: "node-a.example",
            addr: Some("127.0.9.2".parse().unwrap()),
            http_port: 3128,
            icp_port: 3130,
            htcp_port: 4827,
            role: Role::Auto,
            depth: 2,
            load: 17,
            seq: 99,
            parent: "exit-1",
        }
    }

    fn wire(a: &Announcement<'_>, key: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(a, key, &mut out).unwrap();
        out
    }

    #[test]
    fn an_announcement_roundtrips_without_and_with_a_mac() {
        let a = sample();
        let plain = wire(&a, None);
        let parsed = parse(&plain).unwrap();
        assert_eq!(parsed.announcement, a);
        assert!(parsed.mac.is_none());
        assert!(!parsed.verify(b"secret"));

        let signed = wire(&a, Some(b"secret"));
        assert_eq!(signed.len(), plain.len() + MAC_LEN);
        let parsed = parse(&signed).unwrap();
        assert_eq!(parsed.announcement, a);
        assert!(parsed.verify(b"secret"));
        assert!(!parsed.verify(b"other secret"));
    }

    #[test]
    fn ipv6_no_address_no_parent_and_every_role_roundtrip() {
        for (role, addr) in [
            (Role::Client, None),
            (Role::Exit, Some("::1".parse().unwrap())),
            (Role::Auto, Some("10.1.2.3".parse().unwrap())),
        ] {
            let a = Announcement {
                role,
                addr,
                parent: "",
                depth: NO_DEPTH,
                ..sample()
            };
            assert_eq!(parse(&wire(&a, None)).unwrap().announcement, a);
        }
    }

    #[test]
    fn a_changed_byte_breaks_the_mac() {
        let mut signed = wire(&sample(), Some(b"k"));
        signed[7] = 0; // depth 2 -> 0: a node claiming to be an exit
        let parsed = parse(&signed).unwrap();
        assert_eq!(parsed.announcement.depth, 0);
        assert!(!parsed.verify(b"k"));
    }

    #[test]
    fn malformed_announcements_name_the_field_and_offset() {
        let good = wire(&sample(), None);
        let err = |bytes: &[u8]| parse(bytes).unwrap_err();

        let e = err(&good[..3]);
        assert_eq!(
            (e.field, e.offset, e.kind),
            ("magic", 0, ErrorKind::Truncated)
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(err(&bad).field, "magic");
        let mut bad = good.clone();
        bad[4] = 2;
        let e = err(&bad);
        assert_eq!(
            (e.field, e.offset, e.kind),
            ("version", 4, ErrorKind::UnknownVersion(2))
        );
        let mut bad = good.clone();
        bad[5] = 0x80;
        assert_eq!((err(&bad).field, err(&bad).offset), ("flags", 5));
        let mut bad = good.clone();
        bad[6] = 7;
        assert_eq!((err(&bad).field, err(&bad).offset), ("role", 6));
        let mut bad = good.clone();
        bad[20] = 5;
        assert_eq!((err(&bad).field, err(&bad).offset), ("address_family", 20));
        // The name's length byte follows the 4 address bytes.
        let mut bad = good.clone();
        bad[25] = 0;
        assert_eq!((err(&bad).field, err(&bad).offset), ("name", 25));
        let mut bad = good.clone();
        bad[26] = b' ';
        assert_eq!((err(&bad).field, err(&bad).offset), ("name", 26));
        let e = err(&good[..good.len() - 1]);
        assert_eq!((e.field, e.kind), ("parent", ErrorKind::Truncated));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(err(&long).kind, ErrorKind::TrailingData { len: 1 });
        // The MAC flag set, but the MAC cut short.
        let signed = wire(&sample(), Some(b"k"));
        let e = err(&signed[..signed.len() - 1]);
        assert_eq!((e.field, e.kind), ("mac", ErrorKind::Truncated));
    }

    #[test]
    fn encoding_refuses_names_that_do_not_fit() {
        let mut out = Vec::new();
        let long = "n".repeat(256);
        let a = Announcement {
            name: &long,
            ..sample()
        };
        assert_eq!(encode(&a, None, &mut out).unwrap_err().field, "name");
        let a = Announcement {
            name: "",
            ..sample()
        };
        assert_eq!(encode(&a, None, &mut out).unwrap_err().field, "name");
        let a = Announcement {
            parent: "has space",
            ..sample()
        };
        assert_eq!(encode(&a, None, &mut out).unwrap_err().field, "parent");
    }
}
