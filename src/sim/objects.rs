//! The trace's distinct URLs, interned: each gets a number the first time
//! it is seen, and what every request for it needs is worked out then,
//! once: its store key (the MD5 digests hold), its synthetic
//! Last-Modified, and its parts as the access checks read them (the
//! proxy's own `UrlParts::split`, host folded to lower case as Squid keeps
//! it). A request then costs one hash of its URL, not an MD5 and a parse.

use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use cuttle_protocol::key::{store_key, Method as KeyMethod, StoreKey};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use crate::peers::icp_server::UrlParts;

/// An absolute URL's parts, kept beside it (shared: a request holds them
/// without copying).
#[derive(Debug, Clone)]
pub struct Url {
    pub full: Rc<str>,
    /// The host in lower case (Squid's access checks see it so); shared
    /// (Arc) because it is also DIRECT's host in every selection for it.
    pub host: Arc<str>,
    scheme: Range<usize>,
    /// `None`: the URL has no path, which the checks read as `/`.
    path: Option<Range<usize>>,
    pub port: u16,
}

impl Url {
    /// `url`'s parts, as [`UrlParts::split`] cuts them; `None` for a URL
    /// that is not absolute.
    fn of(full: Rc<str>) -> Option<Url> {
        let parts = UrlParts::split(&full)?;
        let offset = |s: &str| {
            let start = s.as_ptr() as usize - full.as_ptr() as usize;
            start..start + s.len()
        };
        let host = if parts.host.bytes().any(|b| b.is_ascii_uppercase()) {
            Arc::from(parts.host.to_ascii_lowercase())
        } else {
            Arc::from(parts.host)
        };
        // UrlParts gives "/" for a URL without a path: not a slice of it.
        let path = (!parts.path.is_empty()
            && parts.path.as_ptr() >= full.as_ptr()
            && (parts.path.as_ptr() as usize) < full.as_ptr() as usize + full.len())
        .then(|| offset(parts.path));
        let scheme = offset(parts.scheme);
        let port = parts.port;
        Some(Url {
            host,
            scheme,
            path,
            port,
            full,
        })
    }

    pub fn scheme(&self) -> &str {
        &self.full[self.scheme.clone()]
    }

    pub fn path(&self) -> &str {
        match &self.path {
            Some(r) => &self.full[r.clone()],
            None => "/",
        }
    }
}

/// One distinct URL of the trace.
#[derive(Debug)]
pub struct Object {
    pub full: Rc<str>,
    /// `None`: not absolute (fetched direct, no selection).
    pub url: Option<Url>,
    pub last_modified: u64,
}

/// The interned URLs: an object's number indexes [`Objects::keys`] and
/// every per-object table of the simulation.
#[derive(Default)]
pub struct Objects {
    by_url: HashTable<u32>,
    hasher: DefaultHashBuilder,
    objects: Vec<Object>,
    /// Each object's store key (what digests hold), by object id.
    keys: Vec<StoreKey>,
}

impl Objects {
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn get(&self, id: u32) -> &Object {
        &self.objects[id as usize]
    }

    pub fn keys(&self) -> &[StoreKey] {
        &self.keys
    }

    pub fn key(&self, id: u32) -> &StoreKey {
        &self.keys[id as usize]
    }

    /// A change at the origin: `id`'s Last-Modified becomes `lm` (unix
    /// seconds), or one second after the one it had if that is not
    /// earlier, so that every change makes a new version.
    pub fn set_modified(&mut self, id: u32, lm: u64, first: bool) {
        let o = &mut self.objects[id as usize];
        o.last_modified = if first {
            lm
        } else {
            lm.max(o.last_modified + 1)
        };
    }

    /// `url`'s number; a URL seen for the first time gets the next one,
    /// with its Last-Modified `modified_before(key)` seconds before `epoch`.
    pub fn intern(&mut self, url: &str, epoch: f64, modified_before: fn(&StoreKey) -> u64) -> u32 {
        let hash = self.hasher.hash_one(url);
        let objects = &self.objects;
        if let Some(&id) = self
            .by_url
            .find(hash, |&id| &*objects[id as usize].full == url)
        {
            return id;
        }
        let id = self.objects.len() as u32;
        let key = store_key(KeyMethod::Get, url.as_bytes());
        let full: Rc<str> = Rc::from(url);
        self.keys.push(key);
        self.objects.push(Object {
            url: Url::of(full.clone()),
            full,
            last_modified: (epoch as u64).saturating_sub(modified_before(&key)),
        });
        let (objects, hasher) = (&self.objects, &self.hasher);
        self.by_url
            .insert_unique(hash, id, |&id| hasher.hash_one(&*objects[id as usize].full));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> Option<(String, String, u16, String)> {
        Url::of(Rc::from(url)).map(|u| {
            (
                u.scheme().to_string(),
                u.host.to_string(),
                u.port,
                u.path().to_string(),
            )
        })
    }

    #[test]
    fn parts_are_the_proxy_split_with_the_host_folded() {
        for url in [
            "http://Example.COM:8080/a/b?c",
            "http://example.com",
            "http://user@[::1]/x",
            "ftp://h.example/",
            "/relative",
            "http://bad host/",
        ] {
            let expected = UrlParts::split(url).map(|p| {
                (
                    p.scheme.to_string(),
                    p.host.to_ascii_lowercase(),
                    p.port,
                    p.path.to_string(),
                )
            });
            assert_eq!(parts(url), expected, "{url}");
        }
    }

    #[test]
    fn a_url_is_numbered_once() {
        let mut o = Objects::default();
        let a = o.intern("http://a.example/1", 1e9, |_| 60);
        let b = o.intern("http://a.example/2", 1e9, |_| 60);
        assert_eq!((a, b), (0, 1));
        assert_eq!(o.intern("http://a.example/1", 2e9, |_| 60), 0);
        assert_eq!(o.len(), 2);
        assert_eq!(o.get(0).last_modified, 1_000_000_000 - 60);
        assert_eq!(*o.key(1), store_key(KeyMethod::Get, b"http://a.example/2"));
    }
}
