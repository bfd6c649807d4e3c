//! Proxy sharing's state (issue 21), kept across reloads: the owner's
//! share log (per resource, the proxies that fetched it from here and
//! offered to share it), the requester's memory of which servers keep one
//! and which candidates failed its probes, and the counters of both sides
//! (mgr:share_log, /metrics).
//!
//! The log is bounded by the bytes of state it keeps: each entry counts
//! its URL's and its proxy URL's lengths plus [`ENTRY_OVERHEAD`]; past
//! the budget (`share_log ... max_memory=SIZE`, [`crate::config::SHARE_LOG_DEFAULT_MAX_MEMORY`] by
//! default) the oldest entry anywhere goes, and a resource keeps its
//! newest [`PER_RESOURCE`] entries (the paper's budget: about 100 bytes
//! a candidate, 10 candidates a resource).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{OfferTo, Share, ShareLog};

/// Candidates kept per resource.
pub const PER_RESOURCE: usize = 10;
/// Bytes of state an entry costs besides its two URLs.
pub const ENTRY_OVERHEAD: usize = 64;
/// A load at or above this puts a candidate last in a list.
pub const HEAVY_LOAD: f32 = 0.8;
/// Servers remembered as keeping a share log; failed candidates remembered.
const MAX_REMEMBERED: usize = 1024;
/// How long a failed candidate waits to be reported in the next offer.
const FAILED_FOR: Duration = Duration::from_secs(300);
/// Owner: embedded objects remembered per page (from their requests'
/// `Referer`), and pages remembered.
pub const EMBEDDED_PER_PAGE: usize = 16;
const PAGES_REMEMBERED: usize = 1024;
/// Requester: how long the candidates piggybacked on a page stand for its
/// embedded objects (the page's images are asked for right after it).
pub const PIGGYBACK_FOR: Duration = Duration::from_secs(30);

/// A proxy that offered to share a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Where other proxies reach it (its offer's `url`).
    pub proxy_url: String,
    /// The address its offer came from.
    pub ip: IpAddr,
    /// The `share_locality` of that address.
    pub locality: Option<String>,
    pub load: Option<f32>,
    pub expires: Instant,
}

/// Who asks for a list, as the owner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub proxy_url: &'a str,
    pub locality: Option<&'a str>,
    /// The owner's own locality (of the address the request came in on).
    pub owner_locality: Option<&'a str>,
}

/// An offering request as the owner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Offering<'a> {
    pub asker: Asker<'a>,
    /// The address the offer came from.
    pub ip: IpAddr,
    /// The load the offer reported.
    pub load: Option<f32>,
    /// The offer's `ttl`, seconds.
    pub ttl: u32,
}

/// What the owner is about to send an offering request, as far as its
/// answer goes.
#[derive(Debug, Clone, Copy)]
pub struct Offered {
    /// A 200 to a GET.
    pub ok: bool,
    /// Its Content-Length.
    pub length: Option<u64>,
    /// The requester may keep it (no `no-store`, no `private`).
    pub shareable: bool,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    candidate: Candidate,
}

#[derive(Debug)]
struct Log {
    by_url: HashMap<String, VecDeque<Entry>>,
    /// Entry sequence number -> its resource, oldest first.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    bytes: usize,
    /// The most bytes of state kept (`max_memory`); a reload may change it.
    budget: usize,
}

fn entry_bytes(url: &str, c: &Candidate) -> usize {
    url.len() + c.proxy_url.len() + ENTRY_OVERHEAD
}

impl Log {
    fn remove(&mut self, url: &str, seq: u64) {
        self.order.remove(&seq);
        let Some(list) = self.by_url.get_mut(url) else {
            return;
        };
        if let Some(at) = list.iter().position(|e| e.seq == seq) {
            if let Some(e) = list.remove(at) {
                self.bytes = self.bytes.saturating_sub(entry_bytes(url, &e.candidate));
            }
        }
        if list.is_empty() {
            self.by_url.remove(url);
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((&seq, url)) = self.order.iter().next() else {
            return false;
        };
        let url = url.clone();
        self.remove(&url, seq);
        true
    }
}

/// Owner: the pages' embedded objects, oldest page first.
#[derive(Debug, Default)]
struct Pages {
    by_page: HashMap<String, VecDeque<String>>,
    order: VecDeque<String>,
}

/// The counters of both sides.
#[derive(Debug, Default)]
pub struct ShareCounters {
    /// Owner: 300 lists sent.
    pub lists_sent: AtomicU64,
    /// Owner: pages sent with candidates for their embedded objects.
    pub lists_piggybacked: AtomicU64,
    /// Owner: offers logged (the offerer got the body or a list).
    pub offers_logged: AtomicU64,
    /// Requester: offers sent.
    pub offers_sent: AtomicU64,
    /// Requester: lists received.
    pub lists_received: AtomicU64,
    /// Requester: bodies fetched from a candidate.
    pub candidate_fetches: AtomicU64,
    /// Requester: lists that ended in a fetch from the owner.
    pub owner_fallbacks: AtomicU64,
    /// Requester: probes that failed (no answer in time, not 200, other validators).
    pub probes_failed: AtomicU64,
}

/// Proxy sharing's state; one per process.
#[derive(Debug)]
pub struct Sharing {
    log: Mutex<Log>,
    /// Requester: servers (`host:port`) seen to keep a share log.
    owners: Mutex<VecDeque<String>>,
    /// Requester: candidates that failed a probe, to report.
    failed: Mutex<VecDeque<(String, Instant)>>,
    /// Owner: per page, the large objects requested with it as `Referer`.
    pages: Mutex<Pages>,
    /// Requester: per embedded URL, the candidates piggybacked on its page
    /// and until when they stand.
    piggybacked: Mutex<HashMap<String, (Vec<String>, Instant)>>,
    pub counters: ShareCounters,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing::with_budget(crate::config::SHARE_LOG_DEFAULT_MAX_MEMORY)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sharing {
    pub fn with_budget(budget: usize) -> Sharing {
        Sharing {
            log: Mutex::new(Log {
                by_url: HashMap::new(),
                order: BTreeMap::new(),
                next_seq: 0,
                bytes: 0,
                budget,
            }),
            owners: Mutex::default(),
            failed: Mutex::default(),
            pages: Mutex::default(),
            piggybacked: Mutex::default(),
            counters: ShareCounters::default(),
        }
    }

    /// Sets the log's budget (`share_log ... max_memory`, at start and on
    /// reload): a smaller one evicts the oldest entries at once.
    pub fn set_budget(&self, budget: usize) {
        let mut log = lock(&self.log);
        log.budget = budget;
        while log.bytes > budget && log.evict_oldest() {}
    }

    /// Logs `candidate` for `url` (replacing its earlier entry there).
    pub fn offer(&self, url: &str, candidate: Candidate) {
        let mut log = lock(&self.log);
        let cost = entry_bytes(url, &candidate);
        if cost > log.budget {
            return;
        }
        let old: Vec<u64> = log
            .by_url
            .get(url)
            .map(|l| {
                l.iter()
                    .filter(|e| e.candidate.proxy_url == candidate.proxy_url)
                    .map(|e| e.seq)
                    .collect()
            })
            .unwrap_or_default();
        for seq in old {
            log.remove(url, seq);
        }
        while log.by_url.get(url).is_some_and(|l| l.len() >= PER_RESOURCE) {
            let Some(seq) = log.by_url.get(url).and_then(|l| l.front()).map(|e| e.seq) else {
                break;
            };
            log.remove(url, seq);
        }
        while log.bytes + cost > log.budget && log.evict_oldest() {}
        let seq = log.next_seq;
        log.next_seq += 1;
        log.bytes += cost;
        log.order.insert(seq, url.to_string());
        log.by_url
            .entry(url.to_string())
            .or_default()
            .push_back(Entry { seq, candidate });
        self.counters.offers_logged.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops `proxy_urls` from every resource: a requester's probe failed.
    pub fn drop_failed(&self, proxy_urls: &[String]) {
        if proxy_urls.is_empty() {
            return;
        }
        let mut log = lock(&self.log);
        let gone: Vec<(String, u64)> = log
            .by_url
            .iter()
            .flat_map(|(url, l)| {
                l.iter()
                    .filter(|e| proxy_urls.contains(&e.candidate.proxy_url))
                    .map(move |e| (url.clone(), e.seq))
            })
            .collect();
        for (url, seq) in gone {
            log.remove(&url, seq);
        }
    }

    /// Up to `n` candidates for `url` nearer to `asker` than the owner:
    /// in the asker's locality when the owner is not; the asker itself and
    /// expired entries never; heavily loaded ones last, newest first.
    pub fn candidates(&self, url: &str, asker: &Asker<'_>, n: usize, now: Instant) -> Vec<String> {
        let Some(near) = asker.locality else {
            return Vec::new();
        };
        if asker.owner_locality == Some(near) {
            return Vec::new();
        }
        let mut log = lock(&self.log);
        let expired: Vec<u64> = log
            .by_url
            .get(url)
            .map(|l| {
                l.iter()
                    .filter(|e| e.candidate.expires <= now)
                    .map(|e| e.seq)
                    .collect()
            })
            .unwrap_or_default();
        for seq in expired {
            log.remove(url, seq);
        }
        let Some(list) = log.by_url.get(url) else {
            return Vec::new();
        };
        let mut picked: Vec<&Candidate> = list
            .iter()
            .rev()
            .map(|e| &e.candidate)
            .filter(|c| c.proxy_url != asker.proxy_url && c.locality.as_deref() == Some(near))
            .collect();
        // Stable: newest first within each group.
        picked.sort_by_key(|c| c.load.is_some_and(|l| l >= HEAVY_LOAD));
        picked
            .into_iter()
            .take(n)
            .map(|c| c.proxy_url.clone())
            .collect()
    }

    /// The owner's answer to an offering GET for `url` (issue 21; the one
    /// rule the proxy's owner and `cuttle simulate` call): for a 200 of at
    /// least `rules.min_size` bytes, the candidates near the asker (send
    /// them as a list when there is any; empty: send the body), and the
    /// offerer logged, when it may keep a copy (`shareable`), for
    /// `rules.lifetime` or its offer's `ttl` if shorter: from a candidate
    /// or from the owner, it will hold a copy too. A smaller or other
    /// response gets no list and logs nothing.
    pub fn answer_offer(
        &self,
        url: &str,
        offering: &Offering<'_>,
        response: &Offered,
        rules: &ShareLog,
        now: Instant,
    ) -> Vec<String> {
        let large = response.ok && response.length.is_some_and(|l| l >= rules.min_size);
        if !large {
            return Vec::new();
        }
        let asker = &offering.asker;
        let candidates = self.candidates(url, asker, rules.candidates as usize, now);
        if response.shareable {
            let lifetime = rules.lifetime.min(Duration::from_secs(offering.ttl.into()));
            self.offer(
                url,
                Candidate {
                    proxy_url: asker.proxy_url.to_string(),
                    ip: offering.ip,
                    locality: asker.locality.map(str::to_string),
                    load: offering.load,
                    expires: now + lifetime,
                },
            );
        }
        candidates
    }

    /// Entries and bytes of state in the log.
    pub fn size(&self) -> (usize, usize) {
        let log = lock(&self.log);
        (log.order.len(), log.bytes)
    }

    /// The log's budget, bytes of state.
    pub fn budget(&self) -> usize {
        lock(&self.log).budget
    }

    /// Requester: `server` (`host:port`) marked a response as an owner's.
    pub fn note_owner(&self, server: &str) {
        let mut owners = lock(&self.owners);
        if owners.iter().any(|o| o == server) {
            return;
        }
        if owners.len() >= MAX_REMEMBERED {
            owners.pop_front();
        }
        owners.push_back(server.to_string());
    }

    /// Requester: whether `server` (`host:port`) keeps a share log.
    pub fn is_owner(&self, server: &str) -> bool {
        lock(&self.owners).iter().any(|o| o == server)
    }

    /// Requester: whether a GET miss going direct to `server` (`host:port`)
    /// offers this cache's copy: `share_offer on` with a `share_offer_url`,
    /// to a server known to keep a share log (to any with `to=all`).
    pub fn offers_to(&self, share: &Share, server: &str) -> bool {
        let offer = &share.offer.value;
        offer.on
            && share.offer_url.value.is_some()
            && (offer.to == OfferTo::All || self.is_owner(server))
    }

    /// Owner: `url` was requested with `page` as its `Referer`.
    pub fn note_embedded(&self, page: &str, url: &str) {
        let mut pages = lock(&self.pages);
        if !pages.by_page.contains_key(page) {
            if pages.order.len() >= PAGES_REMEMBERED {
                if let Some(old) = pages.order.pop_front() {
                    pages.by_page.remove(&old);
                }
            }
            pages.order.push_back(page.to_string());
        }
        let urls = pages.by_page.entry(page.to_string()).or_default();
        if urls.iter().any(|u| u == url) {
            return;
        }
        if urls.len() >= EMBEDDED_PER_PAGE {
            urls.pop_front();
        }
        urls.push_back(url.to_string());
    }

    /// Owner: the objects seen embedded in `page`.
    pub fn embedded(&self, page: &str) -> Vec<String> {
        lock(&self.pages)
            .by_page
            .get(page)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Requester: `candidates` were piggybacked for `url`; they stand
    /// until `until`.
    pub fn remember_piggybacked(&self, url: &str, candidates: Vec<String>, until: Instant) {
        let mut memory = lock(&self.piggybacked);
        if memory.len() >= MAX_REMEMBERED {
            let now = until.checked_sub(PIGGYBACK_FOR).unwrap_or(until);
            memory.retain(|_, (_, t)| *t > now);
            if memory.len() >= MAX_REMEMBERED {
                return;
            }
        }
        memory.insert(url.to_string(), (candidates, until));
    }

    /// Requester: the candidates piggybacked for `url` that still stand,
    /// forgotten once taken (one fetch follows them).
    pub fn take_piggybacked(&self, url: &str, now: Instant) -> Option<Vec<String>> {
        let (candidates, until) = lock(&self.piggybacked).remove(url)?;
        (until > now && !candidates.is_empty()).then_some(candidates)
    }

    /// Requester: `proxy_url` failed a probe.
    pub fn note_failed(&self, proxy_url: &str, now: Instant) {
        self.counters.probes_failed.fetch_add(1, Ordering::Relaxed);
        let mut failed = lock(&self.failed);
        if failed.iter().any(|(u, _)| u == proxy_url) {
            return;
        }
        if failed.len() >= MAX_REMEMBERED {
            failed.pop_front();
        }
        failed.push_back((proxy_url.to_string(), now));
    }

    /// Requester: the failed candidates to report in the next offer (at
    /// most `max`, recent ones), forgotten once taken.
    pub fn take_failed(&self, max: usize, now: Instant) -> Vec<String> {
        let mut failed = lock(&self.failed);
        failed.retain(|(_, at)| now.saturating_duration_since(*at) < FAILED_FOR);
        let n = failed.len().min(max);
        failed.drain(..n).map(|(u, _)| u).collect()
    }

    /// The mgr:share_log page.
    pub fn render(&self, now: Instant) -> String {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let log = lock(&self.log);
        let _ = writeln!(
            out,
            "Share log: {} entries, {} bytes of {} ({} resources)",
            log.order.len(),
            log.bytes,
            log.budget,
            log.by_url.len()
        );
        let _ = writeln!(
            out,
            "Owner: {} lists sent, {} pages with piggybacked candidates, {} offers logged",
            get(&c.lists_sent),
            get(&c.lists_piggybacked),
            get(&c.offers_logged)
        );
        let _ = writeln!(
            out,
            "Requester: {} offers sent, {} lists received, {} fetched from a candidate, {} from the owner, {} probes failed",
            get(&c.offers_sent),
            get(&c.lists_received),
            get(&c.candidate_fetches),
            get(&c.owner_fallbacks),
            get(&c.probes_failed)
        );
        let mut urls: Vec<&String> = log.by_url.keys().collect();
        urls.sort();
        for url in urls {
            let _ = writeln!(out, "\n{url}");
            for e in log.by_url.get(url).into_iter().flatten() {
                let c = &e.candidate;
                let _ = writeln!(
                    out,
                    "\t{} {} from {} expires in {}s load {}",
                    c.proxy_url,
                    c.locality.as_deref().unwrap_or("-"),
                    c.ip,
                    c.expires.saturating_duration_since(now).as_secs(),
                    c.load.map_or("-".to_string(), |l| format!("{l:.2}")),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(n: u8, locality: &str, load: Option<f32>, now: Instant) -> Candidate {
        Candidate {
            proxy_url: format!("http://10.0.0.{n}:3128/"),
            ip: IpAddr::from([10, 0, 0, n]),
            locality: Some(locality.to_string()),
            load,
            expires: now + Duration::from_secs(60),
        }
    }

    fn asker(n: u8, locality: &'static str) -> (String, &'static str) {
        (format!("http://10.0.0.{n}:3128/"), locality)
    }

    #[test]
    fn candidates_are_near_the_asker_not_the_asker_and_light_first() {
        let now = Instant::now();
        let log = Sharing::default();
        log.offer("u", candidate(1, "east", Some(0.9), now));
        log.offer("u", candidate(2, "east", None, now));
        log.offer("u", candidate(3, "west", None, now));
        log.offer("u", candidate(4, "east", Some(0.1), now));
        let (me, loc) = asker(4, "east");
        let a = Asker {
            proxy_url: &me,
            locality: Some(loc),
            owner_locality: Some("home"),
        };
        assert_eq!(
            log.candidates("u", &a, 5, now),
            ["http://10.0.0.2:3128/", "http://10.0.0.1:3128/"]
        );
        assert_eq!(log.candidates("u", &a, 1, now), ["http://10.0.0.2:3128/"]);
        // The owner is as near: nothing to gain.
        let same = Asker {
            owner_locality: Some("east"),
            ..a
        };
        assert!(log.candidates("u", &same, 5, now).is_empty());
        let nowhere = Asker {
            locality: None,
            ..a
        };
        assert!(log.candidates("u", &nowhere, 5, now).is_empty());
        // Expired entries go when their resource is looked up.
        log.offer("v", candidate(5, "east", None, now));
        let later = now + Duration::from_secs(61);
        assert!(log.candidates("u", &a, 5, later).is_empty());
        assert_eq!(log.size().0, 1, "only the looked-up ones that expired went");
    }

    #[test]
    fn an_offer_for_a_large_response_is_logged_and_may_get_a_list() {
        let now = Instant::now();
        let log = Sharing::default();
        let rules = ShareLog {
            on: true,
            min_size: 1000,
            candidates: 5,
            lifetime: Duration::from_secs(60),
            ..ShareLog::default()
        };
        let offering = |n: u8, ttl: u32| Offering {
            asker: Asker {
                proxy_url: ["", "http://10.0.0.1:3128/", "http://10.0.0.2:3128/"][usize::from(n)],
                locality: Some("east"),
                owner_locality: Some("home"),
            },
            ip: IpAddr::from([10, 0, 0, n]),
            load: None,
            ttl,
        };
        let sent = |length: u64, shareable: bool| Offered {
            ok: true,
            length: Some(length),
            shareable,
        };
        // Under min_size, or a response the offerer may not keep: not logged.
        assert!(log
            .answer_offer("u", &offering(1, 3600), &sent(999, true), &rules, now)
            .is_empty());
        assert!(log
            .answer_offer("u", &offering(1, 3600), &sent(1000, false), &rules, now)
            .is_empty());
        assert_eq!(log.size().0, 0);
        // The first gets the body and is logged; the second a list naming it.
        assert!(log
            .answer_offer("u", &offering(1, 3600), &sent(1000, true), &rules, now)
            .is_empty());
        let list = log.answer_offer("u", &offering(2, 3600), &sent(1000, true), &rules, now);
        assert_eq!(list, ["http://10.0.0.1:3128/"]);
        // An entry stands for the lifetime, or the offer's ttl if shorter.
        let later = now + Duration::from_secs(30);
        assert_eq!(
            log.answer_offer("v", &offering(1, 10), &sent(1000, true), &rules, now)
                .len(),
            0
        );
        assert!(log
            .answer_offer("v", &offering(2, 3600), &sent(1000, true), &rules, later)
            .is_empty());
        let much_later = now + Duration::from_secs(61);
        assert_eq!(
            log.candidates("u", &offering(2, 0).asker, 5, later),
            ["http://10.0.0.1:3128/"]
        );
        assert!(log
            .candidates("u", &offering(2, 0).asker, 5, much_later)
            .is_empty());
    }

    #[test]
    fn the_log_is_bounded_per_resource_and_in_bytes() {
        let now = Instant::now();
        let log = Sharing::default();
        for n in 0..15 {
            log.offer("u", candidate(n, "east", None, now));
        }
        // Re-offering replaces.
        log.offer("u", candidate(14, "east", None, now));
        assert_eq!(log.size().0, PER_RESOURCE);
        let one = entry_bytes("a", &candidate(1, "east", None, now));
        let small = Sharing::with_budget(3 * one);
        for url in ["a", "b", "c", "d"] {
            small.offer(url, candidate(1, "east", None, now));
        }
        assert_eq!(small.size(), (3, 3 * one));
        let page = small.render(now);
        assert!(!page.contains("\na\n"), "the oldest went:\n{page}");
        assert!(page.contains("\nd\n"), "{page}");
        assert!(
            page.starts_with(&format!(
                "Share log: 3 entries, {} bytes of {} ",
                3 * one,
                3 * one
            )),
            "{page}"
        );
        // A reload that lowers the budget evicts the oldest at once; one
        // that raises it keeps what is there.
        small.set_budget(one);
        assert_eq!((small.size(), small.budget()), ((1, one), one));
        assert!(small.render(now).contains("\nd\n"));
        small.set_budget(4 * one);
        for url in ["e", "f", "g"] {
            small.offer(url, candidate(1, "east", None, now));
        }
        assert_eq!(small.size(), (4, 4 * one));
    }

    #[test]
    fn failed_candidates_drop_out_everywhere() {
        let now = Instant::now();
        let log = Sharing::default();
        log.offer("u", candidate(1, "east", None, now));
        log.offer("v", candidate(1, "east", None, now));
        log.offer("v", candidate(2, "east", None, now));
        log.drop_failed(&["http://10.0.0.1:3128/".to_string()]);
        assert_eq!(log.size().0, 1);
    }

    #[test]
    fn pages_and_piggybacked_candidates_are_remembered() {
        let sharing = Sharing::default();
        for n in 0..EMBEDDED_PER_PAGE + 1 {
            sharing.note_embedded("http://s/p.html", &format!("http://s/{n}.jpg"));
        }
        sharing.note_embedded("http://s/p.html", "http://s/16.jpg");
        let urls = sharing.embedded("http://s/p.html");
        assert_eq!(urls.len(), EMBEDDED_PER_PAGE);
        assert_eq!(urls[0], "http://s/1.jpg");
        assert!(sharing.embedded("http://s/other.html").is_empty());

        let now = Instant::now();
        let c = vec!["http://c1:3128/".to_string()];
        sharing.remember_piggybacked("http://s/a.jpg", c.clone(), now + PIGGYBACK_FOR);
        sharing.remember_piggybacked("http://s/b.jpg", c.clone(), now + PIGGYBACK_FOR);
        assert_eq!(sharing.take_piggybacked("http://s/a.jpg", now), Some(c));
        // Taken once; expired ones are not given.
        assert_eq!(sharing.take_piggybacked("http://s/a.jpg", now), None);
        let later = now + PIGGYBACK_FOR + Duration::from_secs(1);
        assert_eq!(sharing.take_piggybacked("http://s/b.jpg", later), None);
    }

    #[test]
    fn requester_memory() {
        let now = Instant::now();
        let s = Sharing::default();
        assert!(!s.is_owner("o:80"));
        s.note_owner("o:80");
        assert!(s.is_owner("o:80"));
        s.note_failed("http://c1/", now);
        s.note_failed("http://c1/", now);
        s.note_failed("http://c2/", now);
        assert_eq!(s.take_failed(16, now), ["http://c1/", "http://c2/"]);
        assert!(s.take_failed(16, now).is_empty());
        s.note_failed("http://c3/", now);
        assert!(s.take_failed(16, now + FAILED_FOR).is_empty());
    }
}
