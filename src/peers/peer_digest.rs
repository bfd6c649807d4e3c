//! Peers' Cache Digests (squid-spec 5.4): for each `cache_peer` without
//! `no-digest` (multicast peers never have one), cuttle fetches
//! `http://<peer host>:<http port>/squid-internal-periodic/store_digest`
//! (or the peer's `digest-url=`) and keeps the validated bytes, which
//! selection reads through [`DigestSlot::holds`] without copying.
//!
//! Squid's schedule: a peer's digest is first wanted by the first lookup
//! (a hierarchical miss consults it), which makes it due at once; after a
//! success the next fetch is at the reply's `Expires` plus 5 minutes (no
//! Expires: 5 minutes), never sooner than 5 minutes after the last; after
//! a failure (no answer, a status other than 200, a malformed or useless
//! digest) the digest is dropped and the fetch retried after 5, 10, 20 ...
//! minutes. Fetches to all peers together are at least a minute apart. A
//! peer without a digest (404) is a failure like any other: it has no
//! usable digest, so it is asked with ICP or HTCP as before.
//!
//! A digest is refused, with one warning naming the peer and the field,
//! when its header is inconsistent, its mask is not exactly as announced,
//! its Content-Length is beyond the largest mask a reader takes
//! ([`MAX_MASK_LEN`], checked before reading), or more than 65 % of its
//! bits are set (Squid's "useless" rule).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cuttle_protocol::digest::{self, HEADER_LEN, MAX_MASK_LEN};
use cuttle_protocol::key::StoreKey;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};

use crate::config::{CachePeer, PeerType};
use crate::upstream::{Timeouts, TlsClient, Upstream};

/// The path Squid serves its digest at.
pub const DIGEST_PATH: &str = "/squid-internal-periodic/store_digest";
/// At least this long between two fetches from one peer, and the delay
/// after a reply without Expires (Squid's PeerDigestReqMinGap).
pub const PEER_MIN_GAP: Duration = Duration::from_secs(300);
/// At least this long between two fetches from any peers (Squid's
/// GlobDigestReqMinGap).
pub const GLOBAL_MIN_GAP: Duration = Duration::from_secs(60);
/// The first retry after a failure; each further failure doubles it.
pub const FIRST_RETRY: Duration = Duration::from_secs(300);
/// The longest back-off (a day, so the doubling stays finite).
const MAX_RETRY: Duration = Duration::from_secs(24 * 3600);
/// A digest with more of its bits set predicts little but false hits.
pub const MAX_UTILISATION: f64 = 0.65;

/// Whether `p` gets a digest fetched (squid-spec 5.4).
pub fn wants_digest(p: &CachePeer) -> bool {
    !p.no_digest && p.peer_type != PeerType::Multicast && !p.multicast_responder
}

/// Where `p`'s digest is fetched from: (host, port, origin-form path).
pub fn digest_location(p: &CachePeer) -> Option<(String, u16, String)> {
    let Some(url) = &p.digest_url else {
        return Some((
            p.host.to_ascii_lowercase(),
            p.http_port,
            DIGEST_PATH.to_string(),
        ));
    };
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
    Some((host, port, path))
}

/// One peer's digest and its schedule, kept across reloads while the peer
/// stays (same name, host and port).
#[derive(Debug, Default)]
pub struct DigestSlot {
    /// The digest as received, validated: lookups parse the header again
    /// (a few comparisons) and borrow the mask.
    current: RwLock<Option<Received>>,
    schedule: Mutex<Schedule>,
    /// A lookup wanted this digest (Squid fetches only once one did).
    needed: AtomicBool,
    /// Lookups made while a digest was usable, the hits it predicted, and
    /// those the peer then did not have (it answered 504).
    pub lookups: AtomicU64,
    pub hits: AtomicU64,
    pub false_hits: AtomicU64,
    /// What `mgr:digest_stats` reports of the fetches.
    events: Mutex<Events>,
}

/// The history of a peer's digest fetches, for `mgr:digest_stats`.
#[derive(Debug, Clone)]
pub struct Events {
    /// When the slot was made (the peer configured).
    pub initialized: SystemTime,
    /// When a lookup first wanted the digest.
    pub needed: Option<SystemTime>,
    /// When the last fetch started.
    pub requested: Option<SystemTime>,
    /// When the last usable digest arrived.
    pub received: Option<SystemTime>,
    /// A fetch is under way.
    pub in_flight: bool,
    /// Fetches started.
    pub requests: u64,
    /// Digests received, and their bytes.
    pub replies: u64,
    pub reply_bytes: u64,
    /// How long the last fetch took, and what came of it.
    pub last_response_time: Duration,
    pub last_result: String,
    /// The back-off set after the last failure (zero after a success).
    pub last_retry_delay: Duration,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            initialized: SystemTime::now(),
            needed: None,
            requested: None,
            received: None,
            in_flight: false,
            requests: 0,
            replies: 0,
            reply_bytes: 0,
            last_response_time: Duration::ZERO,
            last_result: String::new(),
            last_retry_delay: Duration::ZERO,
        }
    }
}

/// A validated digest.
#[derive(Debug, Clone)]
pub struct Received {
    pub bytes: Arc<[u8]>,
    pub at: Instant,
}

/// When a peer's digest is fetched next.
#[derive(Debug, Default, Clone)]
struct Schedule {
    next_check: Option<Instant>,
    /// Failures in a row (the back-off doubles with each).
    failures: u32,
}

/// What one fetch came to.
#[derive(Debug)]
pub enum Outcome {
    /// A usable digest, and how long its `Expires` said it stays current.
    Digest {
        bytes: Arc<[u8]>,
        expires_in: Option<Duration>,
    },
    /// Anything else, said in the words of the log line.
    Failed(String),
}

impl DigestSlot {
    /// What the digest says of `key`: `None` without a usable one. The
    /// first call marks the digest wanted.
    pub fn holds(&self, key: &StoreKey) -> Option<bool> {
        if !self.needed.swap(true, Ordering::Relaxed) {
            self.events().needed = Some(SystemTime::now());
        }
        let hit = self.predicts(key)?;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        Some(hit)
    }

    /// What the digest says of `key`, neither counted as a lookup nor
    /// marking the digest wanted: for a second look at a choice already
    /// made (the nearest-copy counters), which must not change the
    /// digest's hit and false-hit figures.
    pub fn predicts(&self, key: &StoreKey) -> Option<bool> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let received = current.as_ref()?;
        let parsed = digest::parse(&received.bytes).ok()?;
        Some(parsed.contains(key))
    }

    /// The digest now held, if any.
    pub fn current(&self) -> Option<Received> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a fetch is due at `now`: wanted, and past its next check.
    pub fn due(&self, now: Instant) -> bool {
        if !self.needed.load(Ordering::Relaxed) {
            return false;
        }
        let s = self.schedule();
        s.next_check.is_none_or(|at| now >= at)
    }

    fn events(&self) -> std::sync::MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fetch history (a copy).
    pub fn history(&self) -> Events {
        self.events().clone()
    }

    /// Whether a lookup has wanted the digest yet.
    pub fn is_needed(&self) -> bool {
        self.needed.load(Ordering::Relaxed)
    }

    /// A fetch starts now.
    pub fn note_request(&self) {
        let mut e = self.events();
        e.requested = Some(SystemTime::now());
        e.in_flight = true;
        e.requests += 1;
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a fetch's outcome at `now`: keeps the digest and schedules
    /// the next fetch at Expires + 5 minutes, or drops it and backs off.
    pub fn note(&self, outcome: Outcome, now: Instant) {
        let mut s = self.schedule();
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut e = self.events();
        e.in_flight = false;
        if let Some(asked) = e.requested {
            e.last_response_time = SystemTime::now()
                .duration_since(asked)
                .unwrap_or(Duration::ZERO);
        }
        match outcome {
            Outcome::Digest { bytes, expires_in } => {
                e.received = Some(SystemTime::now());
                e.replies += 1;
                e.reply_bytes += bytes.len() as u64;
                e.last_result = "success".into();
                e.last_retry_delay = Duration::ZERO;
                s.failures = 0;
                let after = expires_in.map_or(PEER_MIN_GAP, |e| e + PEER_MIN_GAP);
                s.next_check = Some(now + after.max(PEER_MIN_GAP));
                *current = Some(Received { bytes, at: now });
            }
            Outcome::Failed(why) => {
                let back_off = FIRST_RETRY
                    .saturating_mul(1u32 << s.failures.min(16))
                    .min(MAX_RETRY);
                e.last_result = why;
                e.last_retry_delay = back_off;
                s.failures = s.failures.saturating_add(1);
                s.next_check = Some(now + back_off);
                *current = None;
            }
        }
    }

    /// A fetch from this peer after a predicted hit got its 504: the
    /// digest claimed what the peer did not have.
    pub fn note_false_hit(&self) {
        self.false_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// When the next fetch is due (for reports and tests).
    pub fn next_check(&self) -> Option<Instant> {
        self.schedule().next_check
    }
}

/// Checks a received body as a digest: its header, its exact mask length
/// and its utilisation. The error names the field.
pub fn validate(body: &[u8]) -> Result<(), String> {
    let parsed = digest::parse(body).map_err(|e| e.to_string())?;
    let used = parsed.fill_ratio();
    if used > MAX_UTILISATION {
        return Err(format!(
            "mask utilisation {:.0} % is over {:.0} % (useless digest) in field mask",
            used * 100.0,
            MAX_UTILISATION * 100.0
        ));
    }
    Ok(())
}

/// The client digests are fetched with (its own pool: the proxy's serves
/// clients' requests).
pub type DigestClient = Upstream<Empty<Bytes>>;

pub fn client(timeouts: Timeouts) -> DigestClient {
    Upstream::new(timeouts)
}

/// Fetches `p`'s digest once. Never panics on what the peer sends: the
/// Content-Length is checked against the largest digest before the body
/// is read, and the body is read with that limit in any case.
pub async fn fetch(
    client: &DigestClient,
    p: &CachePeer,
    tls: Option<&Result<TlsClient, String>>,
    local: Option<IpAddr>,
) -> Outcome {
    let Some((host, port, path)) = digest_location(p) else {
        return Outcome::Failed("digest-url= is not an http URL".into());
    };
    let host_header = if port == 80 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let req = Request::get(path.as_str())
        .header(header::HOST, host_header)
        .header(header::ACCEPT, "application/cache-digest")
        .header(header::ACCEPT, "text/html")
        .body(Empty::<Bytes>::new());
    let req = match req {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("bad request: {e}")),
    };
    // The peer's own digest comes over its TLS link, as its objects do.
    let tls = match tls.filter(|_| host == p.host && port == p.http_port) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Outcome::Failed(format!("TLS: {e}")),
        None => None,
    };
    let resp = match client
        .send_from(&host, port, local, p.connect_timeout, tls, req)
        .await
    {
        Ok((resp, _)) => resp,
        Err(e) => return Outcome::Failed(format!("fetch failed: {e}")),
    };
    if resp.status() != StatusCode::OK {
        return Outcome::Failed(format!("the peer answered {}", resp.status()));
    }
    let limit = HEADER_LEN + MAX_MASK_LEN;
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|l| l > limit as u64) {
        return Outcome::Failed(format!(
            "Content-Length {} is over {limit} bytes in field mask_size",
            length.unwrap_or(0)
        ));
    }
    let expires_in = expires_in(resp.headers(), SystemTime::now());
    let body = match Limited::new(resp.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Outcome::Failed(format!("reading the digest: {e}")),
    };
    match validate(&body) {
        Ok(()) => Outcome::Digest {
            bytes: Arc::from(&body[..]),
            expires_in,
        },
        Err(why) => Outcome::Failed(format!("malformed digest: {why}")),
    }
}

/// How long after `now` the reply's Expires is (0 when past).
fn expires_in(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let at = headers.get(header::EXPIRES)?.to_str().ok()?;
    let at = httpdate::parse_http_date(at).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Fetches, for as long as `newest` yields the newest peer table (and
/// the local address to connect from), every peer's digest when it is
/// due, one at a time and at least [`GLOBAL_MIN_GAP`] apart.
pub async fn run<F>(client: DigestClient, newest: F)
where
    F: Fn() -> Option<(Arc<super::table::PeerTable>, Option<IpAddr>)>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_any: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some((table, local)) = newest() else {
            return;
        };
        let now = Instant::now();
        if last_any.is_some_and(|at| now.saturating_duration_since(at) < GLOBAL_MIN_GAP) {
            continue;
        }
        let due = table
            .peers
            .iter()
            .find(|p| wants_digest(&p.config) && p.digest.due(now));
        let Some(peer) = due else { continue };
        let config = peer.config.clone();
        let tls = peer.tls.clone();
        let slot = Arc::clone(&peer.digest);
        drop(table);
        last_any = Some(now);
        slot.note_request();
        let outcome = fetch(&client, &config, tls.as_ref(), local).await;
        match &outcome {
            Outcome::Digest { bytes, .. } => {
                let entries = digest::parse(bytes).map_or(0, |d| d.header.count);
                tracing::info!(peer = %config.name, bytes = bytes.len(), entries, "peer digest fetched");
            }
            Outcome::Failed(why) => {
                tracing::warn!(peer = %config.name, "peer digest refused: {why}");
            }
        }
        slot.note(outcome, Instant::now());
    }
}
