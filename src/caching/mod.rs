//! HTTP caching rules (RFC 9111 with Squid's conventions) as pure functions: no I/O and no
//! clock. Every time is unix seconds (`u64`), passed in by the caller.
//!
//! # How the proxy uses it
//!
//! Per request, with `url` the canonical URL (`http::target`) and `config` the loaded
//! configuration:
//!
//! 1. `let req = RequestDirectives::parse(&parts.headers);` and
//!    `let rule = Rule::for_url(&config, &url);` (first matching refresh_pattern, else
//!    Squid's default 0 20% 3 days).
//! 2. **Unsafe methods.** After forwarding a request, if
//!    [`invalidates`]`(method, status)`, release the GET and HEAD keys of every URL of
//!    [`invalidated_urls`] (the target plus same-origin Location / Content-Location).
//! 3. **Lookup** (GET, and HEAD, which is answered from the stored GET response): read the
//!    entry under `key(GET, url)`. If its head is a [`VaryMarker`]
//!    ([`VaryMarker::from_head`]), read `key(GET, marker.variant_url(&url, &headers))`
//!    instead and use it only if `marker.matches(&variant.headers)`. Parse the entry with
//!    [`StoredEntry::from_head`] (an error: release it, treat as a miss). No entry and
//!    `req.only_if_cached`: answer 504 ERR_ONLY_IF_CACHED_MISS.
//! 4. **Hit.** [`decide_hit`]`(&entry, &req, &rule, now)`:
//!    * `Serve { age, .. }`: send `entry.headers_at(now)` (Age set, framed by the stored
//!      body's real length with [`frame_by_body`], never by the stored fields) and the body. If
//!      [`client_not_modified`] gives an outcome, send a 304 with
//!      [`not_modified_headers`] (+ Age) instead and log that outcome (TCP_IMS_HIT /
//!      TCP_INM_HIT), else TCP_HIT.
//!    * `ServeStaleWhileRevalidate { age, validators }`: the same, then revalidate in the
//!      background as below (no client waiting; collapse with other revalidations).
//!    * `Revalidate { validators, .. }`: forward the request with `validators.apply(&mut
//!      headers)` (as a GET, or a HEAD for a HEAD: RFC 9111 4.3.5, see
//!      [`head_matches`]) and go to 5.
//!    * `Reload` (a client reload of a response without ETag or Last-Modified): forward
//!      without validators, handle as a miss (log
//!      TCP_CLIENT_REFRESH_MISS).
//!    * `OnlyIfCachedMiss`: answer 504 ERR_ONLY_IF_CACHED_MISS.
//! 5. **Revalidation reply** ([`classify_revalidation`], logged by
//!    [`revalidation_outcome`]):
//!    * 304: if [`not_modified_matches`]`(&entry.headers, &reply)`, [`freshen`] gives the
//!      entry to serve (`entry.headers_at(now)`) and what to store in place of the old one
//!      (the same body with the new head and times; `Err` = release the old entry).
//!      Otherwise refetch without validators.
//!    * another status below 500: a new response; treat it as a miss reply (6); if it is
//!      not storable, release the old entry.
//!    * 5xx or no answer: if [`may_serve_stale_on_error`] serve the stale entry
//!      (TCP_REFRESH_FAIL_OLD), else pass the error on (TCP_REFRESH_FAIL_ERR).
//! 6. **Miss reply.** Forward to the client the reply minus [`remove_hop_by_hop`] (the
//!    proxy adds its own fields). To store it: [`plan_store`]`(method, &req, status,
//!    &headers, &rule, Exchange { request_time, response_time })`. `Err(reason)`: do not
//!    store (log the reason at debug level). `Ok(plan)`: if `plan.vary` is empty, store
//!    `plan.head` + body under `key(GET, url)` with `plan.times`; otherwise store a
//!    [`VaryMarker`] under `key(GET, url)` and the response under
//!    `key(GET, marker.variant_url(&url, &request_headers))` (see [`vary`]).
//! 7. **ICP/HTCP** answer from the index alone: fresh iff [`is_fresh`]`(&times, now)`
//!    (`now < times.expires`); the age is [`current_age`]`(&times, now)`.
//!
//! Every response head from upstream (misses, revalidations, 304s) first goes through
//! [`targeted::intake`], which records the RFC 9213 targeted field in force for a request
//! of an accelerator port; every head that leaves cuttle goes through
//! [`targeted::remove_internal`].
//!
//! # Stored times
//!
//! [`store::Times`](crate::store::Times) holds, as [`entry_times`] computes them:
//! `date` = the response's birth time, `response_time − corrected_initial_age`
//! (RFC 9111 §4.2.3; Squid's entry timestamp), so `age = now − date`; `expires` =
//! `date + freshness lifetime` (for `no-cache`/`private` responses: `date`); and
//! `last_modified`. The hit path recomputes the lifetime from the stored header block with
//! the current `rule`; `expires` is the snapshot used where only the index is at hand.
//! Under an `adaptive` refresh_pattern, a heuristic lifetime is the object's poll interval,
//! which only `expires − date` keeps: the hit path reads it from there ([`adaptive`]).

pub mod adaptive;
pub mod directives;
pub mod freshness;
pub mod head;
pub mod hit;
pub mod http_date;
pub mod invalidate;
pub mod meter;
pub mod peer_store;
pub mod plan;
pub mod push;
pub mod range;
pub mod revalidate;
pub mod rule;
pub mod storable;
pub mod targeted;
pub mod vary;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;

pub use directives::{MaxStale, RequestDirectives, ResponseDirectives};
pub use freshness::{
    age_value, birth_time, corrected_initial_age, current_age, entry_times, freshness_lifetime,
    heuristically_cacheable, http_date_value, is_fresh, parse_http_date, Exchange, Lifetime,
    LifetimeSource,
};
pub use head::{
    frame_by_body, is_hop_by_hop, parse_fields, parse_head, remove_hop_by_hop, write_fields,
    write_head, HeadError, HOP_BY_HOP, MAX_FIELDS, MAX_HEAD_LEN,
};
pub use hit::{
    client_not_modified, decide_hit, may_serve_stale_on_error, not_modified_headers, HitDecision,
    RevalidateReason, StoredEntry, Validators,
};
pub use invalidate::{invalidated_urls, invalidates, is_safe};
pub use revalidate::{
    classify_revalidation, freshen, head_matches, merge_not_modified, not_modified_matches,
    revalidation_outcome, Freshened, Outcome, RevalidationReply,
};
pub use rule::Rule;
pub use storable::{check_storable, plan_store, NotStorable, StorePlan, MINIMUM_EXPIRY_TIME};
pub use vary::{variant_key, vary_fields, KnownMarkers, UnusableVary, VaryMarker};
