//! The HTCP responder: answers peers' HTCP messages on `htcp_port` the way a
//! Squid 5.7 peer does (squid-spec 2.1-2.8), so a Squid can use cuttle as an
//! `htcp` cache_peer and purge objects in it with CLR.
//!
//! Shaped like the ICP responder ([`super::icp_server`], both on
//! [`super::responder`]): one OS thread owns the UDP socket, replies go out
//! from it in batches (Squid accepts a TST reply only from the address and
//! port it asked), the decision reads only the store's in-RAM index
//! ([`Store::peek`]) and never waits on disk or the network. CLR purges
//! through [`Store::purge`] (index and slot table, written through).
//!
//! Both header layouts are read: MINOR 1 (Squid today) and MINOR 0 with the
//! opcode in the low nibble (`htcp=oldsquid`, MediaWiki's purger); a reply
//! uses the layout and transaction id of its request. A malformed AUTH
//! section is ignored, as Squid never reads AUTH.
//!
//! | message | answer | access.log |
//! |---|---|---|
//! | not HTCP (length, MAJOR, opcode, section lengths) | nothing (counted) | - |
//! | a response (RR set) | nothing: never answer a reply | - |
//! | TST without RD | nothing (Squid's rule) | - |
//! | TST/CLR whose SPECIFIER has no usable absolute URI | nothing | `UDP_INVALID` |
//! | TST refused by `htcp_access` (no rules: deny) | nothing | `UDP_DENIED` |
//! | TST, fresh object held (10 s margin, request's max-age/min-fresh) | 0 (found) + DETAIL `Age` / `Expires`, `Last-Modified` / empty CACHE-HDRS | `UDP_HIT` |
//! | TST otherwise | 1 (not found) + DETAIL of three empty fields | `UDP_MISS` |
//! | CLR refused by `htcp_clr_access` (no rules: deny) | nothing | `UDP_DENIED` |
//! | CLR | purge; with RD: 0 (purged) or 2 (not held) | `UDP_HIT` / `UDP_MISS` |
//! | NOP with RD, allowed by `htcp_access` | NOP response 0 | - |
//! | MON with RD, allowed, `htcp_monitor_max_subscribers` > 0 | a subscription (`monitor::publisher`) | - |
//! | MON otherwise, SET, with RD, allowed by `htcp_access` | MO set, 2 (opcode not implemented) | - |
//!
//! Where cuttle differs from Squid, knowingly:
//! - CLR naming GET, HEAD, PURGE or any unsafe method (POST, PUT, DELETE,
//!   ...) purges the URL's GET and HEAD entries (a Vary marker takes its
//!   variants along). Squid 5.7 looks up the named method's own key, so the
//!   CLRs Squid sends after a PURGE (method PURGE) or an invalidation
//!   (method POST...) remove nothing there; they do here. A safe method
//!   other than GET/HEAD (OPTIONS, TRACE) names only its own key.
//! - Squid answers NOP, MON and SET with silence and never sets MO; cuttle
//!   answers NOP (an HTCP ping) and says "opcode not implemented" (RFC 2756
//!   overall response 2) to MON and SET, to senders `htcp_access` allows.
//! - A TST reply in the MINOR-0 layout echoes the transaction id (Squid 5.7
//!   sends 0 there, which its own querier then cannot match).
//! - A CLR that `htcp_clr_access` allowed is relayed to the `htcp=forward-clr`
//!   peers as fresh CLRs for GET and HEAD (no reply wanted), never back to
//!   its sender, and a URL relayed in the last [`FORWARD_DEDUP`] is not
//!   relayed again (a ring of forward-clr peers would loop). Squid ≤ 7
//!   relays the datagram verbatim, even one it refused.
//!
//! Freshness from the index alone, as ICP: `Times::expires` as computed
//! when the object was stored. Vary: when the TST carries request headers
//! and the URL's entry is a Vary marker the proxy has met
//! ([`KnownMarkers`]), the answer is about the variant those headers
//! select. Without request headers (Squid never sends them: squid-spec 2.3)
//! the marker's own times answer, as for ICP: the querier's fetch then
//! carries its client's real headers, and a variant we lack is a 504.
//! `Cache-to-Origin` is never sent: cuttle has no NetDB (Squid also leaves
//! it out when its NetDB knows nothing of the origin).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use cuttle_protocol::htcp::{self, Detail, Message, Op, Opcode, Specifier, TstReply};
use cuttle_protocol::key::{store_key, Method as KeyMethod};
use cuttle_protocol::Text;
use http::HeaderMap;

use super::batch_io::SendBatch;
use super::icp_server::{canonical_ip, unix_now, UrlParts};
use super::monitor::publisher::{Immediate, Limits, MonRequest};
use super::monitor::Publisher;
use super::resolve::PeerAddrs;
use super::responder::{AnswerLine, Protocol, Responder, Settings};

mod clr;
use crate::access::{self, Verdict};
use crate::access_log::{Entry, LineBatch, ResultTag};
use crate::caching::{current_age, is_fresh, parse_fields, KnownMarkers, RequestDirectives};
use crate::config::{Config, Setting};
use crate::store::{Key, Store, Summary, Times};
pub use clr::{clr_datagrams, forward_targets, ForwardTarget};

/// Squid's `refreshCheckHTCP` margin: a hit must stay fresh this much longer.
pub const HIT_FRESH_MARGIN_SECS: u64 = 10;

/// Squid reads at most this much of a datagram (and never builds bigger).
pub const MAX_DATAGRAM: usize = 8191;

/// How long a relayed CLR's URL is remembered, so that it is not relayed
/// again (a ring of `forward-clr` peers would pass it round forever).
pub const FORWARD_DEDUP: Duration = Duration::from_secs(2);

/// URLs remembered for [`FORWARD_DEDUP`] at most.
const FORWARD_DEDUP_MAX: usize = 1024;

/// Counters of the responder (HTCP packet totals of mgr:info and more).
/// Shared: they outlive a rebind on reload.
#[derive(Debug, Default)]
pub struct HtcpServerStats {
    /// Datagrams received ("Number of HTCP messages received").
    pub pkts_recv: AtomicU64,
    pub bytes_recv: AtomicU64,
    /// Datagrams sent: replies and relayed CLRs ("Number of HTCP messages sent").
    pub pkts_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// TST requests answered found / not found; refused by htcp_access.
    pub tst_hits: AtomicU64,
    pub tst_misses: AtomicU64,
    pub tst_denied: AtomicU64,
    /// CLR requests that purged something / found nothing; refused.
    pub clr_purged: AtomicU64,
    pub clr_not_found: AtomicU64,
    pub clr_denied: AtomicU64,
    /// CLRs relayed to forward-clr peers (one per datagram sent).
    pub clr_forwarded: AtomicU64,
    /// NOP answered; MON/SET "not implemented"; MON handed to the publisher.
    pub nop_answered: AtomicU64,
    pub not_implemented: AtomicU64,
    pub mon_requests: AtomicU64,
    /// Not HTCP, or a section that does not add up: dropped.
    pub malformed: AtomicU64,
    /// TST/CLR whose SPECIFIER is unusable (logged UDP_INVALID).
    pub invalid: AtomicU64,
    /// Responses received (never answered).
    pub not_requests: AtomicU64,
    /// TST, NOP, MON or SET without RD, or refused NOP/MON/SET: nothing to send.
    pub no_reply: AtomicU64,
    pub send_errors: AtomicU64,
    pub recv_errors: AtomicU64,
}

/// Why a datagram got no reply and no log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a well-formed HTCP message.
    Malformed,
    /// A response: never answered.
    NotARequest,
    /// TST/NOP/MON/SET without RD, or NOP/MON/SET from a sender
    /// htcp_access refuses.
    NoReplyWanted,
}

/// What to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// TST: the object is held; the DETAIL's fields.
    Found {
        age: u64,
        expires: u32,
        last_modified: u32,
    },
    /// TST: not held (three empty DETAIL fields, the only miss Squid takes).
    NotFound,
    /// CLR response code ([`htcp::clr`]).
    Clr(u8),
    /// NOP response.
    Nop,
    /// MO set, RESPONSE 2: MON and SET.
    NotImplemented,
    /// MON taken by the publisher (which answers): TIME wanted.
    Monitor(u8),
}

/// The decision for one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The request's MINOR version and transaction id (the reply's).
    pub minor: u8,
    pub trans_id: u32,
    pub opcode: Option<Opcode>,
    /// What to reply; `None`: nothing.
    pub answer: Option<Answer>,
    /// The access.log result (TST and CLR only).
    pub log: Option<ResultTag>,
    /// The SPECIFIER's URI (empty when unusable) and method, for the log
    /// line's URL and ACLs.
    pub url: String,
    pub method: String,
    /// A CLR allowed here: relay it to the forward-clr peers.
    pub forward: Option<u8>,
    /// Why nothing at all happened (no reply, no log).
    pub dropped: Option<Dropped>,
}

impl Decision {
    fn dropped(why: Dropped) -> Decision {
        Decision {
            minor: htcp::MINOR_RFC,
            trans_id: 0,
            opcode: None,
            answer: None,
            log: None,
            url: String::new(),
            method: String::new(),
            forward: None,
            dropped: Some(why),
        }
    }

    /// The reply datagram, appended to `out` (nothing when there is none).
    pub fn encode_reply(&self, out: &mut Vec<u8>) -> Result<(), cuttle_protocol::Error> {
        let (Some(answer), Some(opcode)) = (&self.answer, self.opcode) else {
            return Ok(());
        };
        let mut reply = Message {
            minor: self.minor,
            response: 0,
            f1: false,
            reserved: 0,
            trans_id: self.trans_id,
            op: Op::NopResponse,
            auth: htcp::Auth::None,
        };
        let (age, dates);
        match answer {
            Answer::Found {
                age: a,
                expires,
                last_modified,
            } => {
                age = format!("Age: {a}\r\n");
                dates = entity_headers(*expires, *last_modified);
                reply.response = htcp::tst::FOUND;
                reply.op = Op::TstResponse(TstReply::Detail(Detail {
                    resp_hdrs: Text(age.as_bytes()),
                    entity_hdrs: Text(dates.as_bytes()),
                    cache_hdrs: Text(b""),
                }));
            }
            Answer::NotFound => {
                reply.response = htcp::tst::NOT_FOUND;
                reply.op = Op::TstResponse(TstReply::Detail(Detail::default()));
            }
            Answer::Clr(code) => {
                reply.response = *code;
                reply.op = Op::ClrResponse;
            }
            Answer::Nop => reply.op = Op::NopResponse,
            Answer::Monitor(_) => return Ok(()),
            Answer::NotImplemented => {
                reply.f1 = true;
                reply.response = htcp::overall::OPCODE_NOT_IMPLEMENTED;
                reply.op = match opcode {
                    Opcode::Mon => Op::MonResponse(None),
                    Opcode::Set => Op::SetResponse,
                    // Only MON and SET get this answer.
                    Opcode::Nop | Opcode::Tst | Opcode::Clr | Opcode::Unknown(_) => Op::NopResponse,
                };
            }
        }
        reply.encode(out)
    }
}

/// ENTITY-HDRS of a hit: `Expires` and `Last-Modified` when known.
fn entity_headers(expires: u32, last_modified: u32) -> String {
    let mut out = String::new();
    for (name, secs) in [("Expires", expires), ("Last-Modified", last_modified)] {
        if secs != 0 {
            let when = UNIX_EPOCH + Duration::from_secs(u64::from(secs));
            out.push_str(&format!("{name}: {}\r\n", httpdate::fmt_http_date(when)));
        }
    }
    out
}

/// What the decision reads and changes in the cache.
pub trait Cache {
    /// The index's view of `key` (never the disk).
    fn peek(&self, key: &Key) -> Option<Summary>;
    /// The Vary marker stored under `key` at `generation`, if known.
    fn marker(&self, key: &Key, generation: u32) -> Option<crate::caching::VaryMarker>;
    /// Removes `key`; true if something was removed.
    fn purge(&self, key: &Key) -> bool;
}

/// The daemon's cache: the store and the proxy's known Vary markers.
pub struct StoreCache<'a> {
    pub store: &'a Store,
    pub markers: &'a KnownMarkers,
}

impl Cache for StoreCache<'_> {
    fn peek(&self, key: &Key) -> Option<Summary> {
        self.store.peek(key)
    }

    fn marker(&self, key: &Key, generation: u32) -> Option<crate::caching::VaryMarker> {
        self.markers.get(key, generation)
    }

    fn purge(&self, key: &Key) -> bool {
        self.store.purge(key)
    }
}

/// What the decision may look at besides the datagram.
pub struct Facts<'a> {
    pub config: &'a Config,
    /// Unix seconds.
    pub now: u64,
}

/// Decides the answer to `datagram` from `from`, purging for an allowed CLR.
/// A malformed AUTH section does not matter (the codec keeps it unparsed;
/// Squid never reads AUTH); an opcode RFC 2756 does not define is malformed,
/// request or response.
pub fn decide(datagram: &[u8], from: IpAddr, facts: &Facts<'_>, cache: &impl Cache) -> Decision {
    let Ok(msg) = htcp::parse(datagram) else {
        return Decision::dropped(Dropped::Malformed);
    };
    if !msg.opcode().is_known() {
        return Decision::dropped(Dropped::Malformed);
    }
    if msg.is_response() {
        return Decision::dropped(Dropped::NotARequest);
    }
    let mut d = Decision {
        minor: msg.minor,
        trans_id: msg.trans_id,
        opcode: Some(msg.opcode()),
        answer: None,
        log: None,
        url: String::new(),
        method: String::new(),
        forward: None,
        dropped: None,
    };
    let config = facts.config;
    match msg.op {
        Op::TstRequest(spec) => {
            if !msg.response_desired() {
                d.dropped = Some(Dropped::NoReplyWanted);
                return d;
            }
            let Some(url) = usable_url(&spec, &mut d) else {
                d.log = Some(ResultTag::UdpInvalid);
                return d;
            };
            let parts_ok = UrlParts::split(&url);
            let allowed = parts_ok.is_some_and(|parts| {
                let mut req = parts.request(from, &url);
                req.method = &d.method;
                access::check(&config.htcp_access, config, &req)
                    .or_if_no_rules(Verdict::Deny)
                    .allowed()
            });
            if !allowed {
                d.log = Some(ResultTag::UdpDenied);
                return d;
            }
            d.answer = Some(match tst_hit(&spec, &d.method, &url, facts.now, cache) {
                Some(times) => {
                    d.log = Some(ResultTag::UdpHit);
                    Answer::Found {
                        age: current_age(&times, facts.now),
                        expires: times.expires,
                        last_modified: times.last_modified,
                    }
                }
                None => {
                    d.log = Some(ResultTag::UdpMiss);
                    Answer::NotFound
                }
            });
            d
        }
        Op::ClrRequest {
            reason, specifier, ..
        } => {
            let Some(url) = usable_url(&specifier, &mut d) else {
                d.log = Some(ResultTag::UdpInvalid);
                return d;
            };
            let allowed = UrlParts::split(&url).is_some_and(|parts| {
                let mut req = parts.request(from, &url);
                req.method = &d.method;
                access::check(&config.htcp_clr_access, config, &req)
                    .or_if_no_rules(Verdict::Deny)
                    .allowed()
            });
            if !allowed {
                d.log = Some(ResultTag::UdpDenied);
                return d;
            }
            let purged = clr_keys(&d.method, &url)
                .iter()
                .fold(false, |any, key| cache.purge(key) | any);
            d.log = Some(if purged {
                ResultTag::UdpHit
            } else {
                ResultTag::UdpMiss
            });
            if msg.response_desired() {
                d.answer = Some(Answer::Clr(if purged {
                    htcp::clr::PURGED
                } else {
                    htcp::clr::NOT_FOUND
                }));
            }
            d.forward = Some(reason);
            d
        }
        Op::NopRequest | Op::MonRequest { .. } | Op::SetRequest(_) => {
            let allowed = msg.response_desired()
                && access::check(
                    &config.htcp_access,
                    config,
                    &UrlParts {
                        scheme: "",
                        host: "",
                        port: 0,
                        path: "",
                    }
                    .request(from, ""),
                )
                .or_if_no_rules(Verdict::Deny)
                .allowed();
            if !allowed {
                d.dropped = Some(Dropped::NoReplyWanted);
                return d;
            }
            d.answer = Some(match msg.op {
                Op::NopRequest => Answer::Nop,
                Op::MonRequest { time } if config.htcp_monitor_max_subscribers.value > 0 => {
                    Answer::Monitor(time)
                }
                _ => Answer::NotImplemented,
            });
            d
        }
        // Responses were dropped above.
        _ => Decision::dropped(Dropped::NotARequest),
    }
}

/// The SPECIFIER's URI when it is an absolute URL of printable ASCII; sets
/// the decision's method (empty counts as GET, as in Squid) and URL.
fn usable_url(spec: &Specifier<'_>, d: &mut Decision) -> Option<String> {
    d.method = match spec.method.to_str() {
        Some("") => "GET".into(),
        Some(m) if m.bytes().all(crate::caching::head::is_tchar) => m.to_ascii_uppercase(),
        _ => "-".into(),
    };
    let uri = spec.uri.as_bytes();
    let printable = !uri.is_empty() && uri.iter().all(|&b| (0x21..0x7f).contains(&b));
    let url = printable.then(|| String::from_utf8_lossy(uri).into_owned())?;
    if d.method == "-" || UrlParts::split(&url).is_none() {
        return None;
    }
    d.url.clone_from(&url);
    Some(url)
}

/// The key a lookup of `method` uses: HEAD is answered from the GET object.
fn lookup_method(method: &str) -> KeyMethod {
    match KeyMethod::from_name(method.as_bytes()) {
        KeyMethod::Head => KeyMethod::Get,
        other => other,
    }
}

/// The times of the object a TST for `spec` finds, if it is fresh for
/// [`HIT_FRESH_MARGIN_SECS`] more seconds under the request's own
/// `max-age` / `min-fresh` (a `no-cache` request finds nothing).
fn tst_hit(
    spec: &Specifier<'_>,
    method: &str,
    url: &str,
    now: u64,
    cache: &impl Cache,
) -> Option<Times> {
    // Unparseable request headers: a miss, as in Squid.
    let headers = parse_fields(spec.req_hdrs.as_bytes()).ok()?;
    let method = lookup_method(method);
    let base = store_key(method, url.as_bytes());
    let found = cache.peek(&base)?;
    let times = if method == KeyMethod::Get && !headers.is_empty() {
        match cache.marker(&base, found.generation) {
            Some(marker) => {
                let variant = marker.variant_url(url, &headers);
                cache
                    .peek(&store_key(KeyMethod::Get, variant.as_bytes()))?
                    .times
            }
            None => found.times,
        }
    } else {
        found.times
    };
    fresh_for(&times, &headers, now).then_some(times)
}

/// Whether a TST without request headers finds an object with `times`
/// at `now` (the simulator's HTCP answers).
pub fn tst_finds(times: &Times, now: u64) -> bool {
    fresh_for(times, &HeaderMap::new(), now)
}

/// Fresh [`HIT_FRESH_MARGIN_SECS`] from `now` for a request with `headers`.
fn fresh_for(times: &Times, headers: &HeaderMap, now: u64) -> bool {
    let req = RequestDirectives::parse(headers);
    let at = now
        .saturating_add(HIT_FRESH_MARGIN_SECS)
        .saturating_add(req.min_fresh.unwrap_or(0));
    let young_enough = req
        .max_age
        .is_none_or(|max| current_age(times, now).saturating_add(HIT_FRESH_MARGIN_SECS) <= max);
    !req.no_cache && young_enough && is_fresh(times, at)
}

/// The keys a CLR for `method` `url` removes: GET, HEAD, PURGE and unsafe
/// methods mean the URL's GET and HEAD entries; another safe method only
/// its own key.
pub fn clr_keys(method: &str, url: &str) -> Vec<Key> {
    let named = KeyMethod::from_name(method.as_bytes());
    let whole_url = match http::Method::from_bytes(method.as_bytes()) {
        Ok(m) => m == http::Method::GET || m == http::Method::HEAD || !crate::caching::is_safe(&m),
        Err(_) => true,
    };
    if whole_url {
        vec![
            store_key(KeyMethod::Get, url.as_bytes()),
            store_key(KeyMethod::Head, url.as_bytes()),
        ]
    } else {
        vec![store_key(named, url.as_bytes())]
    }
}

/// A running HTCP responder ([`Htcp`] on a [`Responder`]); stopped when
/// dropped.
pub type HtcpServer = Responder<Htcp>;

/// URLs relayed lately, oldest first.
type Relayed = VecDeque<(String, Instant)>;

/// The HTCP side of a responder: what the answers read and purge (the
/// store's index and the proxy's known Vary markers), its counters, the
/// reply buffer and the CLRs relayed lately. Settings from the config:
/// htcp_port, udp_incoming_address, htcp_access, htcp_clr_access, the
/// forward-clr peers, log_icp_queries.
pub struct Htcp {
    store: Arc<Store>,
    markers: Arc<KnownMarkers>,
    stats: Arc<HtcpServerStats>,
    /// Takes the MON subscriptions.
    monitor: Arc<Publisher>,
    /// Of the CLRs it relays.
    next_trans_id: u32,
    out: Vec<u8>,
    relayed: Relayed,
    /// Each access.log line is built in this one ([`AnswerLine::log`]).
    line: Entry,
}

impl Htcp {
    /// `stats` outlive a rebind on reload.
    pub fn new(
        store: Arc<Store>,
        markers: Arc<KnownMarkers>,
        stats: Arc<HtcpServerStats>,
        monitor: Arc<Publisher>,
    ) -> Htcp {
        Htcp {
            store,
            markers,
            stats,
            monitor,
            next_trans_id: 1,
            out: Vec::with_capacity(MAX_DATAGRAM),
            relayed: Relayed::new(),
            line: Entry::default(),
        }
    }
}

impl Protocol for Htcp {
    const NAME: &'static str = "HTCP";
    const THREAD: &'static str = "cuttle-htcp";
    const MAX_DATAGRAM: usize = MAX_DATAGRAM;
    /// The forward-clr peers.
    type Derived = Vec<ForwardTarget>;
    type Sent = ();

    fn port(config: &Config) -> &Setting<u16> {
        &config.htcp_port
    }

    /// Responses (the RR bit) answer our TSTs and CLRs.
    fn is_reply(datagram: &[u8]) -> bool {
        htcp::is_response_datagram(datagram)
    }

    fn derive(config: &Config, addrs: &PeerAddrs) -> Vec<ForwardTarget> {
        forward_targets(config, addrs)
    }

    /// Decides, logs, and queues the reply and relayed CLRs of a datagram.
    fn answer(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        settings: &Settings<Vec<ForwardTarget>>,
        replies: &mut SendBatch<()>,
        lines: &mut LineBatch,
    ) {
        let stats = &*self.stats;
        stats.pkts_recv.fetch_add(1, Ordering::Relaxed);
        let len = datagram.len() as u64;
        stats.bytes_recv.fetch_add(len, Ordering::Relaxed);
        let config = &*settings.config;
        let facts = Facts {
            config,
            now: unix_now(),
        };
        let client = canonical_ip(from.ip());
        let cache = StoreCache {
            store: &self.store,
            markers: &self.markers,
        };
        let d = if datagram.len() > MAX_DATAGRAM {
            Decision::dropped(Dropped::Malformed)
        } else {
            decide(datagram, client, &facts, &cache)
        };
        count(stats, &d);
        if let Some(why) = d.dropped {
            tracing::debug!(peer = %from, ?why, "HTCP datagram not answered");
            return;
        }
        let out = &mut self.out;
        out.clear();
        if let Some(Answer::Monitor(time)) = d.answer {
            let (id, minor) = (d.trans_id, d.minor);
            let req = MonRequest {
                from,
                id,
                minor,
                time,
            };
            let limits = Limits {
                max_subscribers: config.htcp_monitor_max_subscribers.value as usize,
                max_lease: config.htcp_monitor_max_lease.value,
            };
            let got = self.monitor.request(req, limits, Instant::now());
            if let Immediate::Refused(code) = got {
                crate::peers::monitor::wire::encode_refusal(d.minor, d.trans_id, code, out);
            }
        }
        match d.encode_reply(out) {
            Ok(()) if out.is_empty() => {}
            Ok(()) => replies.push(out, from, ()),
            Err(e) => {
                // Unreachable: replies are small and fixed in shape.
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %from, error = %e, "HTCP reply not encodable");
            }
        }
        if let (Some(tag), Some(opcode)) = (d.log, d.opcode) {
            if config.log_icp_queries.value {
                log(settings, tag, opcode, &d, client, lines, &mut self.line);
            }
        }
        if let Some(reason) = d.forward {
            // An accepted CLR: MON subscribers hear of it as a change.
            self.monitor.changed(&d.url, Instant::now());
            self.relay(replies, &d.url, reason, from, &settings.derived);
        }
    }

    /// Counts a datagram sent, or refused (dropped).
    fn sent(
        &mut self,
        _tag: (),
        to: SocketAddr,
        outcome: std::io::Result<usize>,
        _settings: &Settings<Vec<ForwardTarget>>,
        _lines: &mut LineBatch,
    ) {
        match outcome {
            Ok(len) => {
                self.stats.pkts_sent.fetch_add(1, Ordering::Relaxed);
                let len = len as u64;
                self.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
            }
            // Full, or the peer is gone: dropped, as ICP's (batch_io).
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %to, error = %e, "HTCP datagram not sent");
            }
        }
    }

    fn recv_error(&mut self) {
        self.stats.recv_errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn count(stats: &HtcpServerStats, d: &Decision) {
    let counter = match (d.dropped, &d.answer, d.log, d.opcode) {
        (Some(Dropped::Malformed), ..) => &stats.malformed,
        (Some(Dropped::NotARequest), ..) => &stats.not_requests,
        (Some(Dropped::NoReplyWanted), ..) => &stats.no_reply,
        (_, _, Some(ResultTag::UdpInvalid), _) => &stats.invalid,
        (_, _, Some(ResultTag::UdpDenied), Some(Opcode::Clr)) => &stats.clr_denied,
        (_, _, Some(ResultTag::UdpDenied), _) => &stats.tst_denied,
        (_, _, Some(ResultTag::UdpHit), Some(Opcode::Clr)) => &stats.clr_purged,
        (_, _, Some(_), Some(Opcode::Clr)) => &stats.clr_not_found,
        (_, Some(Answer::Found { .. }), ..) => &stats.tst_hits,
        (_, Some(Answer::NotFound), ..) => &stats.tst_misses,
        (_, Some(Answer::Nop), ..) => &stats.nop_answered,
        (_, Some(Answer::Monitor(_)), ..) => &stats.mon_requests,
        _ => &stats.not_implemented,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Htcp {
    /// Relays an allowed CLR to the `forward` peers (not its sender),
    /// unless its URL was relayed within [`FORWARD_DEDUP`].
    fn relay(
        &mut self,
        out: &mut SendBatch<()>,
        url: &str,
        reason: u8,
        from: SocketAddr,
        forward: &[ForwardTarget],
    ) {
        let targets: Vec<&ForwardTarget> = forward
            .iter()
            .filter(|t| canonical_ip(t.addr.ip()) != canonical_ip(from.ip()))
            .collect();
        if targets.is_empty() {
            return;
        }
        let (relayed, now) = (&mut self.relayed, Instant::now());
        while relayed
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > FORWARD_DEDUP)
            || relayed.len() >= FORWARD_DEDUP_MAX
        {
            relayed.pop_front();
        }
        if relayed.iter().any(|(u, _)| u == url) {
            tracing::debug!(url, "CLR relayed lately; not relayed again");
            return;
        }
        relayed.push_back((url.to_string(), now));
        for t in targets {
            let next = || {
                let id = self.next_trans_id;
                self.next_trans_id = id.wrapping_add(1);
                id
            };
            for datagram in clr_datagrams(url, reason, t.oldsquid, false, next) {
                out.push(&datagram, t.addr, ());
                self.stats.clr_forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One access.log line per TST or CLR decided (squid-spec 2.4, 2.6): status
/// 000, size 0, method HTCP_TST / HTCP_CLR, elapsed 0, HIER_NONE/-.
fn log(
    settings: &Settings<Vec<ForwardTarget>>,
    tag: ResultTag,
    opcode: Opcode,
    d: &Decision,
    client: IpAddr,
    batch: &mut LineBatch,
    scratch: &mut Entry,
) {
    let line = AnswerLine {
        tag,
        method: opcode.name(),
        url: if d.url.is_empty() { "-" } else { &d.url },
        size: 0,
        client,
        asked: Some(d.method.as_str()),
    };
    line.log(&settings.logger, &settings.config, batch, scratch);
}

#[cfg(test)]
mod tests;
