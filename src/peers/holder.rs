//! Redirect to the holder's rule (issue 19), sans IO: which misses may be
//! answered with a 302 to a sibling that holds the object, and to which
//! sibling. One rule for the proxy (`http::proxy::redirect`) and the
//! simulator (`sim::redirect`), so the simulator's figures are the
//! proxy's decisions.

use crate::access_log::HierarchyCode;
use crate::config::Config;

/// What the rule needs to know about a request, before peers are asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    /// It arrived on an accelerator port.
    pub accelerated: bool,
    /// It is a GET (any other method is served as before).
    pub get: bool,
    /// It has what a redirect must not drop or cannot honour: a Range,
    /// credentials (Authorization, Proxy-Authorization, Cookie) or
    /// `only-if-cached`.
    pub excluded: bool,
    /// It was redirected here (it carries the marker): never again.
    pub marked: bool,
    /// Siblings may serve it (not a reload, not looping).
    pub siblings_ok: bool,
    /// The object's size, when this cache has seen its headers.
    pub size_seen: Option<u64>,
    /// With `peer_store_threshold` N > 0: how many times this cache has
    /// seen the URL within the window, this request included. `None`
    /// without a threshold (every held miss is redirected).
    pub references: Option<u32>,
}

/// Whether a miss `ask` describes may be redirected under `config`, before
/// the peers are asked: `holder_redirect` has rules and a sibling has a
/// `public-url=`, the request qualifies, its size is not known to be under
/// `holder_redirect_min_size`, its reference count does not exceed
/// `peer_store_threshold` (the Worldnet study's forwarding threshold:
/// forward, here redirect, while the count is at most N; past N the miss
/// is fetched from the nearest holder and stored), and `allowed` (the
/// `holder_redirect` ACL verdict, asked last: it is the dearest) says yes.
pub fn may_redirect(config: &Config, ask: &Ask, allowed: impl FnOnce() -> bool) -> bool {
    let floor = config.holder_redirect_min_size.value;
    let threshold = config.peer_store_threshold.value.count;
    !config.holder_redirect.is_empty()
        && ask.accelerated
        && ask.get
        && !ask.excluded
        && !ask.marked
        && ask.siblings_ok
        && !(floor > 0 && ask.size_seen.is_some_and(|size| size < floor))
        && ask.references.is_none_or(|seen| seen <= threshold)
        && config.cache_peers.iter().any(|p| p.public_url.is_some())
        && allowed()
}

/// The holder to redirect to, given the first source selection chose (its
/// hierarchy code and its peer's `public-url=`): a sibling hit (ICP, HTCP
/// or Cache Digest) from a peer with a public URL; else none, and the miss
/// is fetched as before.
pub fn holder_url(code: HierarchyCode, public_url: Option<&str>) -> Option<&str> {
    matches!(
        code,
        HierarchyCode::SiblingHit | HierarchyCode::CdSiblingHit | HierarchyCode::MonSiblingHit
    )
    .then_some(public_url)
    .flatten()
}

/// Whether an accelerator port of `config` receives client requests: the
/// simulator's nodes take their clients' requests on it when one has.
pub fn accelerates(config: &Config) -> bool {
    config
        .http_ports
        .iter()
        .any(|p| p.mode == crate::config::PortMode::Accel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str_sandboxed;

    fn config(text: &str) -> Config {
        load_str_sandboxed(text, "squid.conf").config
    }

    const MIRROR: &str = "http_port 80 accel defaultsite=site.test\npid_filename none\n\
        cache_peer 10.0.0.2 sibling 80 3130 public-url=http://b.site.test\n\
        holder_redirect allow all\nholder_redirect_min_size 1 MB\n";

    fn plain_get() -> Ask {
        Ask {
            accelerated: true,
            get: true,
            siblings_ok: true,
            ..Ask::default()
        }
    }

    #[test]
    fn a_plain_get_miss_of_unknown_or_large_size_may_be_redirected() {
        let c = config(MIRROR);
        assert!(accelerates(&c));
        assert!(may_redirect(&c, &plain_get(), || true));
        let large = Ask {
            size_seen: Some(2 << 20),
            ..plain_get()
        };
        assert!(may_redirect(&c, &large, || true));
        // The ACL verdict decides last.
        assert!(!may_redirect(&c, &plain_get(), || false));
        for ask in [
            Ask {
                size_seen: Some(1000),
                ..plain_get()
            },
            Ask {
                get: false,
                ..plain_get()
            },
            Ask {
                marked: true,
                ..plain_get()
            },
            Ask {
                excluded: true,
                ..plain_get()
            },
            Ask {
                accelerated: false,
                ..plain_get()
            },
            Ask {
                siblings_ok: false,
                ..plain_get()
            },
        ] {
            assert!(!may_redirect(&c, &ask, || true), "{ask:?}");
        }
        // No rules, or no sibling with a public URL: never.
        let no_rules = config(&MIRROR.replace("holder_redirect allow all\n", ""));
        assert!(!may_redirect(&no_rules, &plain_get(), || true));
        let no_url = config(&MIRROR.replace(" public-url=http://b.site.test", ""));
        assert!(!may_redirect(&no_url, &plain_get(), || true));
    }

    #[test]
    fn with_a_threshold_a_url_is_redirected_until_seen_more_than_n_times() {
        let c = config(&format!("{MIRROR}peer_store_threshold 2\n"));
        let seen = |n| Ask {
            references: Some(n),
            ..plain_get()
        };
        assert!(may_redirect(&c, &seen(1), || true));
        assert!(may_redirect(&c, &seen(2), || true));
        // The third reference is fetched (and stored), not redirected.
        assert!(!may_redirect(&c, &seen(3), || true));
        assert!(!may_redirect(&c, &seen(4), || true));
        // Without a count (no threshold): every time.
        assert!(may_redirect(&c, &plain_get(), || true));
    }

    #[test]
    fn only_a_sibling_hit_from_a_peer_with_a_public_url_is_a_holder() {
        use HierarchyCode as H;
        let url = Some("http://b.site.test");
        assert_eq!(holder_url(H::SiblingHit, url), url);
        assert_eq!(holder_url(H::CdSiblingHit, url), url);
        assert_eq!(holder_url(H::SiblingHit, None), None);
        for code in [
            H::ParentHit,
            H::CdParentHit,
            H::HierDirect,
            H::FirstParentMiss,
        ] {
            assert_eq!(holder_url(code, url), None, "{code:?}");
        }
    }
}
