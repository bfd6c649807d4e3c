//! The request plan: what the proxy does with a GET or HEAD, given what the
//! cache holds for it. Pure: the request, the lookup result, the refresh
//! rule, the policy knobs and `now` in, a [`Plan`] out; no sockets, store,
//! clock or runtime, so the proxy and a simulator run the same decisions.
//!
//! The rules that used to live inline in the proxy live here: the
//! offline_mode override, the hit tags (memory, offline, negative), "HEAD
//! misses are not stored", "private requests do not collapse", "what a
//! proxy-only peer sends is not stored", when siblings may be used, and
//! what a revalidation's reply does to the stored entry (one rule for the
//! foreground and the background).

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, Method, StatusCode};

use super::adaptive::{self, PollResult};
use super::directives::RequestDirectives;
use super::hit::{client_not_modified, decide_hit, HitDecision, StoredEntry, Validators};
use super::revalidate::{freshen, head_matches, not_modified_matches, Freshened, Outcome};
use super::rule::Rule;
use super::storable::{plan_store, StorePlan};
use super::Exchange;
use crate::access_log::ResultTag;

/// The request as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// GET or HEAD.
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub directives: &'a RequestDirectives,
    /// It carries our own Via: sending it on would loop.
    pub looped: bool,
    /// `miss_access` refuses this client anything forwarded.
    pub miss_denied: bool,
}

/// What the lookup found for the request (Vary resolved).
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub entry: &'a StoredEntry,
    /// In the memory cache (Squid's TCP_MEM_HIT).
    pub memory: bool,
}

/// The configuration the plan reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// offline_mode: a stored entry is never validated.
    pub offline: bool,
    /// collapsed_forwarding: concurrent misses on one key share a fetch.
    pub collapse: bool,
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Serve the stored entry with this `Age`, logged `tag`; `refresh`:
    /// revalidate it in the background with these validators
    /// (stale-while-revalidate).
    Serve {
        tag: ResultTag,
        age: u64,
        refresh: Option<Validators>,
    },
    /// The client's own conditional matches the stored entry: answer 304
    /// (TCP_IMS_HIT, TCP_INM_HIT), revalidating in the background as for
    /// [`Plan::Serve`].
    NotModified {
        tag: ResultTag,
        age: u64,
        refresh: Option<Validators>,
    },
    /// Ask upstream with `validators` (parents only: see [`siblings_ok`]),
    /// as a GET, or a HEAD for a HEAD (RFC 9111 §4.3.5), then apply
    /// [`revalidated`] to the reply.
    Revalidate { validators: Validators },
    /// Fetch from upstream.
    Fetch(Fetch),
    /// Answer with an error, logged `tag`.
    Deny { tag: ResultTag, why: Denial },
}

/// A fetch the plan asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// TCP_MISS, or TCP_CLIENT_REFRESH_MISS for a client reload.
    pub tag: ResultTag,
    /// The response may be stored (when storable): not for HEAD.
    pub store: bool,
    /// Share the fetch with other clients asking for the same key
    /// (collapsed forwarding): not for private requests, nor HEAD.
    pub collapse: bool,
    /// Siblings may be asked and used.
    pub siblings_ok: bool,
}

/// Why the plan answers with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// only-if-cached, and the cache cannot answer alone (504).
    OnlyIfCached,
    /// The request went round: it carries our own Via (403).
    Loop,
    /// `miss_access` refuses this client anything forwarded (403).
    MissAccess,
}

/// What a forwarded request is for, as far as siblings are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A miss, a HEAD miss or another method.
    Fetch,
    /// A revalidation, foreground or background.
    Revalidate,
}

/// Whether siblings may be asked and used (squid-spec 3.1): never for a
/// revalidation, nor for a client reload (no-cache), which a sibling's
/// copy would not honour.
pub fn siblings_ok(purpose: Purpose, directives: &RequestDirectives) -> bool {
    purpose == Purpose::Fetch && !directives.no_cache
}

/// A request whose response may be meant for it only (credentials or
/// cookies): it fetches alone.
pub fn private(headers: &HeaderMap) -> bool {
    headers.contains_key(AUTHORIZATION) || headers.contains_key(COOKIE)
}

/// A fetched response may be stored: it is storable and did not come from
/// a `proxy-only` peer (whose replies are delivered, not kept).
pub fn keeps_fetched(storable: bool, proxy_only: bool) -> bool {
    storable && !proxy_only
}

/// The tag of a hit: a memory hit is TCP_MEM_HIT; from disk, under
/// offline_mode, TCP_OFFLINE_HIT (as Squid), else TCP_HIT; a stored error
/// response (negative caching) is TCP_NEGATIVE_HIT.
pub fn hit_tag(memory: bool, offline: bool, status: StatusCode) -> ResultTag {
    if status.as_u16() >= 400 {
        return ResultTag::TcpNegativeHit;
    }
    match (memory, offline) {
        (true, _) => ResultTag::TcpMemHit,
        (false, true) => ResultTag::TcpOfflineHit,
        (false, false) => ResultTag::TcpHit,
    }
}

/// The access.log tag of a caching outcome.
pub fn tag_of(outcome: Outcome) -> ResultTag {
    match outcome {
        Outcome::Hit => ResultTag::TcpHit,
        Outcome::Miss => ResultTag::TcpMiss,
        Outcome::ClientRefreshMiss => ResultTag::TcpClientRefreshMiss,
        Outcome::RefreshUnmodified => ResultTag::TcpRefreshUnmodified,
        Outcome::RefreshModified => ResultTag::TcpRefreshModified,
        Outcome::RefreshFailOld => ResultTag::TcpRefreshFailOld,
        Outcome::RefreshFailErr => ResultTag::TcpRefreshFailErr,
        Outcome::ImsHit => ResultTag::TcpImsHit,
        Outcome::InmHit => ResultTag::TcpInmHit,
    }
}

/// The plan for a GET or HEAD.
pub fn plan(
    req: &Request<'_>,
    stored: Option<Stored<'_>>,
    rule: &Rule,
    policy: Policy,
    now: u64,
) -> Plan {
    let mut miss_tag = ResultTag::TcpMiss;
    if let Some(stored) = stored {
        let entry = stored.entry;
        let decision = match decide_hit(entry, req.directives, rule, now) {
            // offline_mode: never validate, whatever made the entry stale
            // (a client reload still fetches).
            HitDecision::Revalidate { .. }
            | HitDecision::ServeStaleWhileRevalidate { .. }
            | HitDecision::OnlyIfCachedMiss
                if policy.offline =>
            {
                HitDecision::Serve {
                    age: entry.age(now),
                    stale: true,
                }
            }
            decision => decision,
        };
        let serve = |age: u64, refresh: Option<Validators>| match client_not_modified(
            req.method,
            req.headers,
            &entry.headers,
        ) {
            Some(cond) => Plan::NotModified {
                tag: tag_of(cond),
                age,
                refresh,
            },
            None => Plan::Serve {
                tag: hit_tag(stored.memory, policy.offline, entry.status),
                age,
                refresh,
            },
        };
        match decision {
            HitDecision::Serve { age, .. } => return serve(age, None),
            HitDecision::ServeStaleWhileRevalidate { age, validators } => {
                return serve(age, Some(validators))
            }
            HitDecision::OnlyIfCachedMiss => {
                return Plan::Deny {
                    tag: ResultTag::TcpHit,
                    why: Denial::OnlyIfCached,
                }
            }
            HitDecision::Revalidate { validators, .. } => {
                return match forwarding_denied(req) {
                    Some(why) => Plan::Deny {
                        tag: ResultTag::TcpMiss,
                        why,
                    },
                    None => Plan::Revalidate { validators },
                };
            }
            HitDecision::Reload => miss_tag = ResultTag::TcpClientRefreshMiss,
        }
    } else if req.directives.only_if_cached {
        return Plan::Deny {
            tag: ResultTag::TcpMiss,
            why: Denial::OnlyIfCached,
        };
    }
    if let Some(why) = forwarding_denied(req) {
        return Plan::Deny { tag: miss_tag, why };
    }
    // HEAD misses are forwarded as HEAD: nothing to store or share.
    let get = req.method == Method::GET;
    Plan::Fetch(Fetch {
        tag: miss_tag,
        store: get,
        collapse: policy.collapse && get && !private(req.headers),
        siblings_ok: siblings_ok(Purpose::Fetch, req.directives),
    })
}

/// Whether anything forwarded for `req` is refused, and why.
fn forwarding_denied(req: &Request<'_>) -> Option<Denial> {
    if req.looped {
        Some(Denial::Loop)
    } else if req.miss_denied {
        Some(Denial::MissAccess)
    } else {
        None
    }
}

/// What a revalidation's reply does to the stored entry (Squid's
/// handleIMSReply, RFC 9111 §4.3.3-4.3.4), the same whether a client
/// waits for it or it runs in the background.
#[derive(Debug)]
pub enum Revalidated {
    /// A 304 that selects the stored entry: freshen it (store
    /// `freshened.store`, or release the entry when that is an error);
    /// TCP_REFRESH_UNMODIFIED.
    Unmodified(Freshened),
    /// A 5xx: a failure. The stored entry stays (served stale when
    /// allowed, TCP_REFRESH_FAIL_OLD; else the reply goes on,
    /// TCP_REFRESH_FAIL_ERR).
    Failed,
    /// Any other reply replaces the stored entry (TCP_REFRESH_MODIFIED):
    /// stored in its place when storable (`Some`), else the old entry is
    /// released. A 304 that does not match is passed on and releases the
    /// entry (the next request fetches without validators); a reply that
    /// varies is not stored in the place of the entry it replaces.
    Modified(Option<StorePlan>),
}

/// Applies the revalidation rule to a reply of `status` with `headers` to
/// a request revalidating `entry`: a GET, or a client's HEAD (`head`: the
/// stored body's length). A 200 to a HEAD updates the entry as a 304 does
/// when it describes the same body ([`head_matches`], RFC 9111 §4.3.5);
/// any other reply to a HEAD, having no body to store, releases the entry.
pub fn revalidated(
    entry: &StoredEntry,
    head: Option<u64>,
    status: StatusCode,
    headers: &HeaderMap,
    directives: &RequestDirectives,
    rule: &Rule,
    exchange: Exchange,
) -> Revalidated {
    if status == StatusCode::NOT_MODIFIED && not_modified_matches(&entry.headers, headers) {
        return Revalidated::Unmodified(freshen(entry, headers, directives, rule, exchange));
    }
    if status.is_server_error() {
        return Revalidated::Failed;
    }
    if let Some(stored_len) = head {
        // Only a stored 200 is described by a 200 (not a cached 404).
        if status == StatusCode::OK
            && entry.status == StatusCode::OK
            && head_matches(&entry.headers, stored_len, headers)
        {
            return Revalidated::Unmodified(freshen(entry, headers, directives, rule, exchange));
        }
        return Revalidated::Modified(None);
    }
    // Adaptive polling: a new version, the interval halves.
    let poll = adaptive::poll_of(
        rule,
        entry.lifetime(rule),
        &entry.times,
        PollResult::Changed,
    );
    let plan = plan_store(&Method::GET, directives, status, headers, rule, exchange)
        .ok()
        .filter(|plan| plan.vary.is_empty() && status != StatusCode::NOT_MODIFIED)
        .map(|plan| plan.after_poll(rule, exchange, poll));
    Revalidated::Modified(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::test_support::{date, h, rule};
    use crate::store::Times;
    use http::header::{HeaderValue, DATE};

    const T0: u64 = 1_700_000_000;

    /// A response born at T0 with these extra fields.
    fn entry(status: u16, pairs: &[(&str, &str)]) -> StoredEntry {
        let mut headers = h(pairs);
        headers.insert(DATE, HeaderValue::from_str(&date(T0)).unwrap());
        StoredEntry {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            times: Times {
                date: T0 as u32,
                expires: 0,
                last_modified: 0,
            },
        }
    }

    struct Case {
        method: Method,
        headers: HeaderMap,
        looped: bool,
        miss_denied: bool,
    }

    impl Case {
        fn get(pairs: &[(&str, &str)]) -> Case {
            Case {
                method: Method::GET,
                headers: h(pairs),
                looped: false,
                miss_denied: false,
            }
        }

        fn head() -> Case {
            Case {
                method: Method::HEAD,
                ..Case::get(&[])
            }
        }

        fn plan(&self, stored: Option<Stored<'_>>, offline: bool, now: u64) -> Plan {
            let policy = Policy {
                offline,
                collapse: true,
            };
            self.plan_with(stored, policy, now)
        }

        fn plan_with(&self, stored: Option<Stored<'_>>, policy: Policy, now: u64) -> Plan {
            let directives = RequestDirectives::parse(&self.headers);
            let req = Request {
                method: &self.method,
                headers: &self.headers,
                directives: &directives,
                looped: self.looped,
                miss_denied: self.miss_denied,
            };
            plan(&req, stored, &rule(), policy, now)
        }
    }

    fn on_disk(e: &StoredEntry) -> Option<Stored<'_>> {
        Some(Stored {
            entry: e,
            memory: false,
        })
    }

    fn fetch(p: Plan) -> Fetch {
        match p {
            Plan::Fetch(f) => f,
            other => panic!("not a fetch: {other:?}"),
        }
    }

    #[test]
    fn a_fresh_entry_is_served_with_its_hit_tag() {
        let e = entry(200, &[("cache-control", "max-age=600")]);
        let now = T0 + 10;
        let tag = |p: Plan| match p {
            Plan::Serve { tag, age, refresh } => {
                assert_eq!((age, refresh), (10, None));
                tag
            }
            other => panic!("not served: {other:?}"),
        };
        assert_eq!(
            tag(Case::get(&[]).plan(on_disk(&e), false, now)),
            ResultTag::TcpHit
        );
        let memory = Some(Stored {
            entry: &e,
            memory: true,
        });
        assert_eq!(
            tag(Case::get(&[]).plan(memory, false, now)),
            ResultTag::TcpMemHit
        );
        assert_eq!(
            tag(Case::get(&[]).plan(on_disk(&e), true, now)),
            ResultTag::TcpOfflineHit
        );
        let negative = entry(404, &[("cache-control", "max-age=600")]);
        assert_eq!(
            tag(Case::get(&[]).plan(on_disk(&negative), false, now)),
            ResultTag::TcpNegativeHit
        );
    }

    #[test]
    fn offline_mode_serves_what_would_be_revalidated() {
        let e = entry(200, &[("cache-control", "max-age=10")]);
        let now = T0 + 100;
        assert!(matches!(
            Case::get(&[]).plan(on_disk(&e), false, now),
            Plan::Revalidate { .. }
        ));
        assert_eq!(
            Case::get(&[]).plan(on_disk(&e), true, now),
            Plan::Serve {
                tag: ResultTag::TcpOfflineHit,
                age: 100,
                refresh: None
            }
        );
        // only-if-cached on a stale entry: served too.
        let oic = Case::get(&[("cache-control", "only-if-cached")]);
        assert!(matches!(
            oic.plan(on_disk(&e), false, now),
            Plan::Deny {
                why: Denial::OnlyIfCached,
                ..
            }
        ));
        assert!(matches!(
            oic.plan(on_disk(&e), true, now),
            Plan::Serve { .. }
        ));
        // A client reload still fetches.
        let reload = Case::get(&[("cache-control", "no-cache")]);
        let f = fetch(reload.plan(on_disk(&e), true, now));
        assert_eq!(f.tag, ResultTag::TcpClientRefreshMiss);
        assert!(!f.siblings_ok, "a reload is not answered by a sibling");
    }

    #[test]
    fn the_clients_own_conditional_is_answered_304() {
        let e = entry(200, &[("cache-control", "max-age=600"), ("etag", "\"v1\"")]);
        let p = Case::get(&[("if-none-match", "\"v1\"")]).plan(on_disk(&e), false, T0 + 1);
        assert_eq!(
            p,
            Plan::NotModified {
                tag: ResultTag::TcpInmHit,
                age: 1,
                refresh: None
            }
        );
    }

    #[test]
    fn stale_while_revalidate_serves_and_refreshes() {
        let e = entry(
            200,
            &[
                ("cache-control", "max-age=10, stale-while-revalidate=100"),
                ("etag", "\"v1\""),
            ],
        );
        match Case::get(&[]).plan(on_disk(&e), false, T0 + 20) {
            Plan::Serve {
                tag: ResultTag::TcpHit,
                refresh: Some(v),
                ..
            } => assert!(v.if_none_match.is_some()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_misses_are_not_stored_nor_shared() {
        let f = fetch(Case::head().plan(None, false, T0));
        assert_eq!(f.tag, ResultTag::TcpMiss);
        assert!(!f.store && !f.collapse);
        let f = fetch(Case::get(&[]).plan(None, false, T0));
        assert!(f.store && f.collapse && f.siblings_ok);
    }

    #[test]
    fn private_requests_do_not_collapse() {
        for field in ["authorization", "cookie"] {
            let f = fetch(Case::get(&[(field, "x")]).plan(None, false, T0));
            assert!(!f.collapse, "{field}");
            assert!(f.store, "{field}: storable if the response says so");
        }
    }

    #[test]
    fn collapsed_forwarding_off_collapses_nothing() {
        let policy = Policy {
            offline: false,
            collapse: false,
        };
        let f = fetch(Case::get(&[]).plan_with(None, policy, T0));
        assert!(!f.collapse && f.store);
    }

    #[test]
    fn proxy_only_replies_are_not_kept() {
        assert!(keeps_fetched(true, false));
        assert!(!keeps_fetched(true, true));
        assert!(!keeps_fetched(false, false));
    }

    #[test]
    fn siblings_serve_neither_revalidations_nor_reloads() {
        let plain = RequestDirectives::default();
        let reload = RequestDirectives::parse(&h(&[("pragma", "no-cache")]));
        assert!(siblings_ok(Purpose::Fetch, &plain));
        assert!(!siblings_ok(Purpose::Fetch, &reload));
        assert!(!siblings_ok(Purpose::Revalidate, &plain));
    }

    #[test]
    fn loops_miss_access_and_only_if_cached_are_denied() {
        let stale = entry(200, &[("cache-control", "max-age=10")]);
        let mut looped = Case::get(&[]);
        looped.looped = true;
        let mut refused = Case::get(&[]);
        refused.miss_denied = true;
        for (case, why) in [(&looped, Denial::Loop), (&refused, Denial::MissAccess)] {
            assert_eq!(
                case.plan(None, false, T0),
                Plan::Deny {
                    tag: ResultTag::TcpMiss,
                    why
                }
            );
            assert_eq!(
                case.plan(on_disk(&stale), false, T0 + 100),
                Plan::Deny {
                    tag: ResultTag::TcpMiss,
                    why
                }
            );
        }
        // A fresh hit needs no forwarding: served even so.
        let fresh = entry(200, &[("cache-control", "max-age=600")]);
        assert!(matches!(
            looped.plan(on_disk(&fresh), false, T0 + 1),
            Plan::Serve { .. }
        ));
        assert_eq!(
            Case::get(&[("cache-control", "only-if-cached")]).plan(None, false, T0),
            Plan::Deny {
                tag: ResultTag::TcpMiss,
                why: Denial::OnlyIfCached
            }
        );
    }

    fn exchange() -> Exchange {
        Exchange {
            request_time: T0 + 100,
            response_time: T0 + 100,
        }
    }

    fn reply(stored: &StoredEntry, status: u16, pairs: &[(&str, &str)]) -> Revalidated {
        let mut headers = h(pairs);
        headers.insert(DATE, HeaderValue::from_str(&date(T0 + 100)).unwrap());
        revalidated(
            stored,
            None,
            StatusCode::from_u16(status).unwrap(),
            &headers,
            &RequestDirectives::default(),
            &rule(),
            exchange(),
        )
    }

    #[test]
    fn a_revalidation_reply_updates_the_entry_as_squid_does() {
        let e = entry(200, &[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
        assert!(matches!(
            reply(&e, 304, &[("etag", "\"v1\"")]),
            Revalidated::Unmodified(_)
        ));
        // A 304 for another entity: passed on, the entry released.
        assert!(matches!(
            reply(&e, 304, &[("etag", "\"v2\"")]),
            Revalidated::Modified(None)
        ));
        assert!(matches!(reply(&e, 503, &[]), Revalidated::Failed));
        assert!(matches!(
            reply(&e, 200, &[("cache-control", "max-age=60")]),
            Revalidated::Modified(Some(_))
        ));
        // Not storable, or a varying reply: the old entry goes.
        assert!(matches!(
            reply(&e, 200, &[("cache-control", "no-store")]),
            Revalidated::Modified(None)
        ));
        assert!(matches!(
            reply(
                &e,
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept")]
            ),
            Revalidated::Modified(None)
        ));
        // A 404 replaces the object as any other full response does.
        assert!(matches!(reply(&e, 404, &[]), Revalidated::Modified(_)));
    }

    fn head_reply(stored: &StoredEntry, status: u16, pairs: &[(&str, &str)]) -> Revalidated {
        revalidated(
            stored,
            Some(5),
            StatusCode::from_u16(status).unwrap(),
            &h(pairs),
            &RequestDirectives::default(),
            &rule(),
            exchange(),
        )
    }

    #[test]
    fn a_head_reply_updates_or_releases_the_entry() {
        let e = entry(200, &[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
        let same = [("etag", "\"v1\""), ("cache-control", "max-age=60")];
        assert!(matches!(
            head_reply(&e, 200, &same),
            Revalidated::Unmodified(_)
        ));
        assert!(matches!(
            head_reply(&e, 304, &[("etag", "\"v1\"")]),
            Revalidated::Unmodified(_)
        ));
        // Another entity, another status: nothing to store, the entry goes.
        for (status, pairs) in [
            (200, &[("etag", "\"v2\"")][..]),
            (200, &[("etag", "\"v1\""), ("content-length", "6")][..]),
            (410, &same[..]),
        ] {
            assert!(
                matches!(head_reply(&e, status, pairs), Revalidated::Modified(None)),
                "{status} {pairs:?}"
            );
        }
        assert!(matches!(head_reply(&e, 503, &[]), Revalidated::Failed));
        // A stored 404 is not what a 200 describes.
        let negative = entry(404, &[("cache-control", "max-age=10")]);
        assert!(matches!(
            head_reply(&negative, 200, &[]),
            Revalidated::Modified(None)
        ));
    }

    /// An adaptive object polled every 400 s, born at T0, with a
    /// Last-Modified that gives no heuristic lifetime.
    #[test]
    fn adaptive_polling_doubles_on_a_304_and_halves_on_a_new_version() {
        let r = Rule {
            max: 3600,
            adaptive: Some(0),
            ..rule()
        };
        let mut e = entry(200, &[("etag", "\"v1\""), ("last-modified", &date(T0))]);
        e.times.expires = T0 as u32 + 400;
        let now = T0 + 500;
        let ex = Exchange {
            request_time: now,
            response_time: now,
        };
        assert!(matches!(
            decide_hit(&e, &RequestDirectives::default(), &r, T0 + 399),
            HitDecision::Serve { .. }
        ));
        assert!(matches!(
            decide_hit(&e, &RequestDirectives::default(), &r, T0 + 400),
            HitDecision::Revalidate { .. }
        ));
        let again = |status: u16, pairs: &[(&str, &str)], rule: &Rule| {
            let mut headers = h(pairs);
            headers.insert(DATE, HeaderValue::from_str(&date(now)).unwrap());
            revalidated(
                &e,
                None,
                StatusCode::from_u16(status).unwrap(),
                &headers,
                &RequestDirectives::default(),
                rule,
                ex,
            )
        };
        let interval = |t: Times| u64::from(t.expires - t.date);
        match again(304, &[("etag", "\"v1\"")], &r) {
            Revalidated::Unmodified(f) => {
                assert_eq!(u64::from(f.entry.times.date), now);
                assert_eq!(interval(f.entry.times), 800);
                let plan = f.store.unwrap();
                assert_eq!(
                    (interval(plan.times), plan.polled),
                    (800, Some(PollResult::Unchanged))
                );
            }
            other => panic!("{other:?}"),
        }
        match again(
            200,
            &[("etag", "\"v2\""), ("last-modified", &date(now))],
            &r,
        ) {
            Revalidated::Modified(Some(plan)) => {
                assert_eq!(
                    (interval(plan.times), plan.polled),
                    (200, Some(PollResult::Changed))
                );
            }
            other => panic!("{other:?}"),
        }
        // An explicit lifetime is the origin's: not polled.
        match again(
            200,
            &[("etag", "\"v2\""), ("cache-control", "max-age=60")],
            &r,
        ) {
            Revalidated::Modified(Some(plan)) => {
                assert_eq!((interval(plan.times), plan.polled), (60, None));
            }
            other => panic!("{other:?}"),
        }
        // Squid's fixed heuristic: 20% of the 500 s since Last-Modified.
        let fixed = Rule {
            adaptive: None,
            ..r
        };
        match again(304, &[("etag", "\"v1\"")], &fixed) {
            Revalidated::Unmodified(f) => assert_eq!(interval(f.entry.times), 100),
            other => panic!("{other:?}"),
        }
    }
}
