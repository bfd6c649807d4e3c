//! Squid's public store key: MD5 over one method-id byte and the URL, as
//! Squid 5.7 computes it (squid-spec 5.1). Peers look objects up by this
//! key (cache digests) and by the URL text it hashes, so the URL must
//! already be in Squid's canonical form.

use md5::{Digest, Md5};

/// A 16-byte store key.
pub type StoreKey = [u8; 16];

/// Squid's numeric method ids (`http/MethodType.h`), as hashed into keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get = 1,
    Post = 2,
    Put = 3,
    Head = 4,
    Connect = 5,
    Trace = 6,
    Options = 7,
    Delete = 8,
    Purge = 31,
    /// Any method Squid has no id for.
    Other = 32,
}

impl Method {
    /// The method named by `name` (case-insensitive, as Squid's relaxed
    /// parser matches them); unknown names are [`Method::Other`].
    pub fn from_name(name: &[u8]) -> Method {
        const NAMES: [(&[u8], Method); 9] = [
            (b"GET", Method::Get),
            (b"POST", Method::Post),
            (b"PUT", Method::Put),
            (b"HEAD", Method::Head),
            (b"CONNECT", Method::Connect),
            (b"TRACE", Method::Trace),
            (b"OPTIONS", Method::Options),
            (b"DELETE", Method::Delete),
            (b"PURGE", Method::Purge),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Method::Other, |(_, m)| *m)
    }
}

/// The public key of `url` fetched with `method`.
pub fn store_key(method: Method, url: &[u8]) -> StoreKey {
    let mut md5 = Md5::new();
    md5.update([method as u8]);
    md5.update(url);
    md5.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(key: StoreKey) -> String {
        key.iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn squid_vectors() {
        assert_eq!(
            hex(store_key(Method::Get, b"http://example.com/")),
            "5C9109034C1D089FB6D92F7258B2F5C3"
        );
        assert_eq!(
            hex(store_key(Method::Head, b"http://example.com/")),
            "09F9CBAF232773D5A8D6DC9EC02B1B12"
        );
        assert_eq!(
            hex(store_key(Method::Get, b"http://127.0.0.1:18181/d/1")),
            "FB8B70F47E7082CCB0A75EE94A8E02B8"
        );
    }

    #[test]
    fn method_names() {
        assert_eq!(Method::from_name(b"get"), Method::Get);
        assert_eq!(Method::from_name(b"PURGE"), Method::Purge);
        assert_eq!(Method::from_name(b"BREW"), Method::Other);
    }
}
