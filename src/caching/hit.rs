//! What to do with a stored response on a hit (RFC 9111 §4, §4.2.4, RFC 5861, with
//! Squid's refreshCheck order), the conditional fields to revalidate it with, and the
//! answer to a client's own conditional request.

use http::header::{
    HeaderMap, HeaderValue, AGE, CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, VARY,
};
use http::{Method, StatusCode};

use super::directives::{MaxStale, RequestDirectives};
use super::freshness::{
    age_value, current_age, parse_http_date, stored_lifetime_of, Facts, Lifetime,
};
use super::head::{parse_head, write_head, HeadError};
use super::revalidate::Outcome;
use super::rule::Rule;
use crate::store::Times;

/// A stored response as read back from the store: its status and fields
/// (the header block re-parsed) and its index times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub times: Times,
}

impl StoredEntry {
    /// Parses the stored header block (a block that does not parse is a
    /// store miss for the proxy: release the entry).
    pub fn from_head(head: &[u8], times: Times) -> Result<StoredEntry, HeadError> {
        let (status, headers) = parse_head(head)?;
        Ok(StoredEntry {
            status,
            headers,
            times,
        })
    }

    /// The header block to store.
    pub fn head(&self) -> Vec<u8> {
        write_head(self.status, &self.headers)
    }

    /// Its age at `now`.
    pub fn age(&self, now: u64) -> u64 {
        current_age(&self.times, now)
    }

    /// Its freshness lifetime under `rule` (recomputed from the stored
    /// fields, so a reloaded refresh_pattern applies at once; an adaptive
    /// pattern's poll interval is read from its times).
    pub fn lifetime(&self, rule: &Rule) -> Lifetime {
        stored_lifetime_of(self.status, &Facts::parse(&self.headers), rule, &self.times)
    }

    /// The conditional fields to revalidate it with.
    pub fn validators(&self) -> Validators {
        Validators::of(&self.headers)
    }

    /// Its fields as sent to a client at `now`: the stored ones with `Age`
    /// set to its current age (RFC 9111 §5.1). The proxy adds its own
    /// (Via, X-Cache, ...).
    pub fn headers_at(&self, now: u64) -> HeaderMap {
        let mut h = self.headers.clone();
        h.insert(AGE, age_value(self.age(now)));
        h
    }
}

/// The fields of a conditional request that revalidates a stored response
/// (RFC 9111 §4.3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// The stored ETag, when it is a well-formed entity-tag.
    pub if_none_match: Option<HeaderValue>,
    /// The stored Last-Modified; without it (and without an ETag), the
    /// stored Date, as Squid does (its "effective" modification time;
    /// RFC 9110 §13.1.3 allows it).
    pub if_modified_since: Option<HeaderValue>,
}

fn is_entity_tag(v: &[u8]) -> bool {
    let opaque = v.strip_prefix(b"W/").unwrap_or(v);
    opaque.len() >= 2
        && opaque.starts_with(b"\"")
        && opaque.ends_with(b"\"")
        && !opaque[1..opaque.len() - 1].contains(&b'"')
}

impl Validators {
    /// The validators of a stored response's fields.
    pub fn of(stored: &HeaderMap) -> Validators {
        let if_none_match = stored
            .get(ETAG)
            .filter(|v| is_entity_tag(v.as_bytes().trim_ascii()))
            .cloned();
        let last_modified = stored
            .get(LAST_MODIFIED)
            .filter(|v| parse_http_date(v).is_some());
        let if_modified_since = match (last_modified, &if_none_match) {
            (Some(lm), _) => Some(lm.clone()),
            (None, None) => stored
                .get(DATE)
                .filter(|v| parse_http_date(v).is_some())
                .cloned(),
            (None, Some(_)) => None,
        };
        Validators {
            if_none_match,
            if_modified_since,
        }
    }

    /// No validator: the revalidation is a plain fetch.
    pub fn is_empty(&self) -> bool {
        self.if_none_match.is_none() && self.if_modified_since.is_none()
    }

    /// Puts these validators on the request to send upstream, replacing the
    /// client's own conditional fields (the proxy evaluates those itself
    /// against the result, with [`client_not_modified`]). Also removes
    /// If-Match, If-Unmodified-Since and If-Range, which would change the
    /// meaning of the revalidation, and Range: the revalidation asks for the
    /// whole object, whose reply may replace the stored one (a client's
    /// range is cut from the stored object afterwards).
    pub fn apply(&self, request: &mut HeaderMap) {
        for name in [
            http::header::RANGE,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            http::header::IF_MATCH,
            http::header::IF_UNMODIFIED_SINCE,
            http::header::IF_RANGE,
        ] {
            request.remove(name);
        }
        if let Some(v) = &self.if_none_match {
            request.insert(IF_NONE_MATCH, v.clone());
        }
        if let Some(v) = &self.if_modified_since {
            request.insert(IF_MODIFIED_SINCE, v.clone());
        }
    }
}

/// The response carries a validator of the origin's (a well-formed ETag or
/// a Last-Modified date), not only the Date [`Validators::of`] falls back to.
fn has_own_validator(stored: &HeaderMap) -> bool {
    stored
        .get(ETAG)
        .is_some_and(|v| is_entity_tag(v.as_bytes().trim_ascii()))
        || stored
            .get(LAST_MODIFIED)
            .is_some_and(|v| parse_http_date(v).is_some())
}

/// Why a hit must be revalidated before it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidateReason {
    /// Stale (and not allowed to be served stale).
    Stale,
    /// Stale with `must-revalidate`, `proxy-revalidate` or `s-maxage`.
    MustRevalidate,
    /// The response has `no-cache` (or `private`, stored under
    /// `ignore-private`): every use is revalidated.
    NoCache,
    /// The client's `max-age` is exceeded (or is 0).
    ClientMaxAge,
    /// A client reload under refresh_pattern `reload-into-ims`.
    ReloadIntoIms,
    /// A client reload (`no-cache`) of a response with a validator of its
    /// own (ETag or Last-Modified): RFC 9111 §5.2.1.4 asks only that the
    /// stored response be validated, and a 304 spares the body.
    ClientNoCache,
    /// A client If-Modified-Since under `refresh-ims`.
    RefreshIms,
}

/// What the proxy does with a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HitDecision {
    /// Serve the stored response with this `Age` (TCP_HIT). `stale` when
    /// the client's `max-stale` accepted a stale response.
    Serve { age: u64, stale: bool },
    /// Serve the stale response now (TCP_HIT) and revalidate it in the
    /// background with `validators` (RFC 5861 `stale-while-revalidate`).
    ServeStaleWhileRevalidate { age: u64, validators: Validators },
    /// Revalidate first: send the request upstream with `validators` added
    /// ([`Validators::apply`]; empty = a plain fetch), then handle the reply
    /// as [`super::revalidate`] says.
    Revalidate {
        validators: Validators,
        reason: RevalidateReason,
    },
    /// A client reload (`no-cache`, `Pragma: no-cache`) of a response with no
    /// validator of its own: fetch afresh with no validators and replace the
    /// entry (TCP_CLIENT_REFRESH_MISS).
    Reload,
    /// `only-if-cached` and the entry cannot be used without the origin:
    /// answer 504 (ERR_ONLY_IF_CACHED_MISS).
    OnlyIfCachedMiss,
}

/// Decides a hit on `entry` for a request with `request` directives at
/// `now`, under `rule`. The order is Squid's refreshCheck:
///
/// 1. client reload (`no-cache`): ignored under `ignore-reload`; a
///    revalidation under `reload-into-ims` or when the response has an ETag
///    or Last-Modified; else [`HitDecision::Reload`];
/// 2. response `no-cache`/`private`: always revalidate; stale with
///    `must-revalidate`/`proxy-revalidate`/`s-maxage`: revalidate, nothing
///    may serve it stale;
/// 3. client If-Modified-Since under `refresh-ims`: revalidate;
/// 4. client `max-age=N`: revalidate if age > N or N = 0 (Squid treats 0 as
///    a reload), unless the response is `immutable` or `ignore-reload`
///    applies to `max-age=0`;
/// 5. fresh (age + `min-fresh` < lifetime): serve;
/// 6. stale: serve if the client's `max-stale` allows the staleness; serve
///    and revalidate in the background within `stale-while-revalidate`;
///    else revalidate.
///
/// Under `only-if-cached`, every outcome that needs the origin becomes
/// [`HitDecision::OnlyIfCachedMiss`].
pub fn decide_hit(
    entry: &StoredEntry,
    request: &RequestDirectives,
    rule: &Rule,
    now: u64,
) -> HitDecision {
    let f = Facts::parse(&entry.headers);
    let age = entry.age(now);
    let lifetime = stored_lifetime_of(entry.status, &f, rule, &entry.times).secs;
    let effective_age = age.saturating_add(request.min_fresh.unwrap_or(0));
    let fresh = effective_age < lifetime;
    let staleness = effective_age.saturating_sub(lifetime);
    let needs_origin = |d: HitDecision| {
        if request.only_if_cached {
            HitDecision::OnlyIfCachedMiss
        } else {
            d
        }
    };
    let revalidate = |reason| {
        needs_origin(HitDecision::Revalidate {
            validators: entry.validators(),
            reason,
        })
    };

    if request.no_cache && !rule.ignore_reload {
        return if rule.reload_into_ims {
            revalidate(RevalidateReason::ReloadIntoIms)
        } else if has_own_validator(&entry.headers) {
            revalidate(RevalidateReason::ClientNoCache)
        } else {
            needs_origin(HitDecision::Reload)
        };
    }
    if f.cc.revalidate_always() {
        return revalidate(RevalidateReason::NoCache);
    }
    if !fresh && f.cc.revalidate_when_stale() {
        return revalidate(RevalidateReason::MustRevalidate);
    }
    if request.if_modified_since && rule.refresh_ims {
        return revalidate(RevalidateReason::RefreshIms);
    }
    if let Some(max_age) = request.max_age {
        let ignored = f.cc.immutable || (rule.ignore_reload && max_age == 0);
        if !ignored && (age > max_age || max_age == 0) {
            return revalidate(RevalidateReason::ClientMaxAge);
        }
    }
    if fresh {
        return HitDecision::Serve { age, stale: false };
    }
    let client_accepts = match request.max_stale {
        Some(MaxStale::Any) => true,
        Some(MaxStale::Secs(n)) => staleness <= n,
        None => false,
    };
    if client_accepts {
        return HitDecision::Serve { age, stale: true };
    }
    if f.cc.stale_while_revalidate.is_some_and(|n| staleness <= n) {
        return HitDecision::ServeStaleWhileRevalidate {
            age,
            validators: entry.validators(),
        };
    }
    revalidate(RevalidateReason::Stale)
}

/// Whether the stale `entry` may be served when its revalidation failed
/// (upstream unreachable, or a 5xx reply): TCP_REFRESH_FAIL_OLD if so,
/// else the error goes to the client (TCP_REFRESH_FAIL_ERR).
///
/// Never for `no-cache`, `private`, `must-revalidate`, `proxy-revalidate`
/// or `s-maxage` responses (RFC 9111 §4.2.4; Squid's
/// failOnValidationError). With `stale-if-error=N` in the response or the
/// request (RFC 5861): when the staleness is within either N. Otherwise
/// Squid's default: when the staleness is within the pattern's `max-stale`
/// (else the global `max_stale`, 1 week by default).
pub fn may_serve_stale_on_error(
    entry: &StoredEntry,
    request: &RequestDirectives,
    rule: &Rule,
    now: u64,
) -> bool {
    let f = Facts::parse(&entry.headers);
    if f.cc.revalidate_always() || f.cc.revalidate_when_stale() {
        return false;
    }
    let lifetime = stored_lifetime_of(entry.status, &f, rule, &entry.times).secs;
    let staleness = entry.age(now).saturating_sub(lifetime);
    let by_response = f.cc.stale_if_error.map(|n| staleness <= n);
    let by_request = request.stale_if_error.map(|n| staleness <= n);
    match (by_response, by_request) {
        (None, None) => staleness <= rule.max_stale,
        _ => by_response == Some(true) || by_request == Some(true),
    }
}

/// Weak comparison of two entity-tags (RFC 9110 §8.8.3.2).
pub(crate) fn weak_match(a: &[u8], b: &[u8]) -> bool {
    let a = a.trim_ascii();
    let b = b.trim_ascii();
    let a = a.strip_prefix(b"W/").unwrap_or(a);
    let b = b.strip_prefix(b"W/").unwrap_or(b);
    is_entity_tag(a) && a == b
}

/// Splits an If-None-Match list into its entity-tags (commas inside the
/// quotes do not split).
fn entity_tags(v: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in v.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(v[start..i].trim_ascii());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim_ascii());
    out.retain(|t| !t.is_empty());
    out
}

/// A client's own conditional GET or HEAD answered from a stored (fresh,
/// or just revalidated) response (RFC 9111 §4.3.2, RFC 9110 §13.2.2):
/// `Some(TCP_INM_HIT)` when If-None-Match matches the stored ETag (weak
/// comparison, `*` matches anything, and a malformed ETag matches itself), `Some(TCP_IMS_HIT)` when there is no
/// If-None-Match and the stored Last-Modified (else Date) is not after
/// If-Modified-Since; answer 304 with [`not_modified_headers`]. `None`:
/// send the full response.
pub fn client_not_modified(
    method: &Method,
    request: &HeaderMap,
    stored: &HeaderMap,
) -> Option<Outcome> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    if request.contains_key(IF_NONE_MATCH) {
        let etag = stored.get(ETAG)?;
        let stored_tag = etag.as_bytes().trim_ascii();
        // A malformed ETag (unquoted, `w/`, ...) still matches the very
        // same characters: the client is echoing what it was given, as most
        // caches in the cache-tests table accept.
        let matched = request.get_all(IF_NONE_MATCH).iter().any(|v| {
            entity_tags(v.as_bytes())
                .iter()
                .any(|t| *t == b"*" || weak_match(t, stored_tag) || *t == stored_tag)
        });
        return matched.then_some(Outcome::InmHit);
    }
    let since = request.get(IF_MODIFIED_SINCE).and_then(parse_http_date)?;
    let modified = stored
        .get(LAST_MODIFIED)
        .and_then(parse_http_date)
        .or_else(|| stored.get(DATE).and_then(parse_http_date))?;
    (modified <= since).then_some(Outcome::ImsHit)
}

/// The fields of a 304 sent to a client from a stored response (RFC 9110
/// §15.4.5): Cache-Control, Content-Location, Date, ETag, Expires, Vary, and
/// Last-Modified when there is no ETag. Set `Age` as for a hit.
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, VARY] {
        for v in stored.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    if !stored.contains_key(ETAG) {
        if let Some(v) = stored.get(LAST_MODIFIED) {
            out.insert(LAST_MODIFIED, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
