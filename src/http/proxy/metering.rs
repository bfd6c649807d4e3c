//! RFC 2227 hit metering in the proxy (`hit_metering on`; off, none of
//! this runs). Requests upstream offer metering (`Meter:
//! will-report-and-limit`, `Connection: Meter`) and carry the counts owed
//! for their URL (`count=U/R`, reset in the store's ledger before the
//! request leaves); responses' `Meter` directives set the object's terms
//! and are not passed on or stored. Uses served from the cache are counted
//! per URL (a use is a delivery of the stored response to a client; a
//! reuse is one that did not contact the origin); a reached usage limit
//! makes the next use revalidate. Purges, evictions and `timeout`s send
//! the owed counts in a HEAD from a background task ([`meter_reporter`]).
//! Children's `count=` reports are folded into our counts and totalled per
//! URL for `mgr:hit_metering` and /metrics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use tokio::sync::{watch, Notify};

use crate::access_log::Hierarchy;
use crate::caching::meter::{self, Directive, RequestMeter, METER};
use crate::http::body::ProxyBody;
use crate::http::target::Target;
use crate::store::{Key, MeterLedger, MeterReport, Store};

use super::admit::{Arrival, PortUse};
use super::forward::Forwarding;
use super::{unix_now, url_key, Proxy};

/// At most this many URLs are totalled one by one; later ones go to
/// [`OTHER_URLS`].
const MAX_TOTALLED_URLS: usize = 10_000;
const OTHER_URLS: &str = "(other URLs)";
/// Reporter rounds (about a second each) between unconditional sweeps.
const SWEEP_EVERY: u64 = 60;
/// How long after its response came an object missing from the store is
/// taken as still on its way in, not gone (a fetch's body is stored when
/// it ends); past it, the next sweep takes it.
const STORING_GRACE: Duration = Duration::from_secs(60);

/// Per-URL totals of an aggregation point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Totals {
    /// Responses received from upstream for the URL (GET).
    pub origin_fetches: u64,
    /// Uses served from this cache.
    pub local_hits: u64,
    /// Uses and reuses children reported.
    pub downstream_uses: u64,
    pub downstream_reuses: u64,
}

/// What metering keeps across reloads.
#[derive(Default)]
pub(super) struct MeterShared {
    /// Opened when a config first turns metering on.
    ledger: OnceLock<Arc<MeterLedger>>,
    totals: Mutex<HashMap<String, Totals>>,
    /// Reports waiting for the reporter, with the port whose routing
    /// they take.
    queue: Mutex<Vec<(MeterReport, Arrival)>>,
    wake: Notify,
    /// The port of the latest metered fetch: evictions and timeouts are
    /// reported along its routes (the object's own is not kept).
    last_arrival: Mutex<Option<Arrival>>,
    /// Store purges + evictions at the last sweep.
    removals_seen: AtomicU64,
    /// Reporter rounds so far: every [`SWEEP_EVERY`]th sweeps whatever the
    /// store did (objects metered but never stored, or lost in a crash).
    rounds: AtomicU64,
}

impl MeterShared {
    /// The ledger, opened beside the store's first cache_dir (in memory
    /// for a memory store, or when the journal cannot be opened).
    pub(super) fn open_ledger(&self, store: &Store) {
        self.ledger.get_or_init(|| {
            let dir = (!store.is_memory())
                .then(|| store.usage().into_iter().next().map(|u| u.path))
                .flatten();
            let Some(dir) = dir else {
                return Arc::new(MeterLedger::in_memory());
            };
            match MeterLedger::open(&dir) {
                Ok((ledger, load)) => {
                    tracing::info!(dir = %dir.display(), objects = load.objects, torn_bytes = load.torn_bytes, "hit-metering ledger opened");
                    Arc::new(ledger)
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot open the hit-metering ledger; counts are kept in memory only");
                    Arc::new(MeterLedger::in_memory())
                }
            }
        });
    }

    fn total(&self, url: &str, f: impl FnOnce(&mut Totals)) {
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let key = if totals.len() < MAX_TOTALLED_URLS || totals.contains_key(url) {
            url
        } else {
            OTHER_URLS
        };
        f(totals.entry(key.to_string()).or_default());
    }

    fn snapshot(&self) -> Vec<(String, Totals)> {
        let totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, Totals)> = totals.iter().map(|(u, t)| (u.clone(), *t)).collect();
        out.sort();
        out
    }

    fn enqueue(&self, report: MeterReport, arrival: Arrival) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((report, arrival));
        self.wake.notify_one();
    }
}

/// The site (`host:port`) of an absolute URL, for per-site totals.
fn site_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

fn meter_connection(headers: &mut HeaderMap) {
    headers.append(header::CONNECTION, HeaderValue::from_static("meter"));
}

impl Proxy {
    /// The ledger when metering is on.
    pub(super) fn ledger(&self) -> Option<&MeterLedger> {
        if !self.config.hit_metering.value {
            return None;
        }
        self.meter.ledger.get().map(|l| &**l)
    }

    /// Metering is on and `url`'s object is metered (the memory cache's
    /// lean path leaves such requests to the general one, which counts).
    pub(super) fn metered(&self, url: &str) -> bool {
        self.ledger().is_some_and(|l| l.is_metered(&url_key(url)))
    }

    /// A usage limit of `url`'s object is reached: the next use revalidates.
    pub(super) fn meter_limit_reached(&self, url: &str) -> bool {
        self.ledger()
            .is_some_and(|l| l.limit_reached(&url_key(url)))
    }

    /// Counts a use of `url`'s stored response by a client; `reuse` when
    /// the origin was not contacted for it.
    pub(super) fn meter_use(&self, url: &str, reuse: bool) {
        let Some(ledger) = self.ledger() else {
            return;
        };
        if ledger.count(&url_key(url), 1, u32::from(reuse), unix_now()) {
            self.meter.total(url, |t| t.local_hits += 1);
        }
    }

    /// A client's request: its `Meter` fields are read and removed (they
    /// are for this hop); a child's report is folded into our counts and
    /// totalled. True when the child offered to report (see
    /// [`Proxy::meter_ask_child`]).
    pub(super) fn meter_intake(&self, url: &str, headers: &mut HeaderMap) -> bool {
        if self.ledger().is_none() {
            return false;
        }
        let Some(child) = RequestMeter::of(headers) else {
            headers.remove(METER);
            return false;
        };
        headers.remove(METER);
        if let (Some((uses, reuses)), Some(ledger)) = (child.count, self.ledger()) {
            ledger.count(&url_key(url), uses, reuses, unix_now());
            self.meter.total(url, |t| {
                t.downstream_uses += u64::from(uses);
                t.downstream_reuses += u64::from(reuses);
            });
        }
        child.offered && child.will_report
    }

    /// A 200 for a usage-limited URL: no limit is passed on, so shared
    /// caches below get `s-maxage=0` (any other `s-maxage` goes): they
    /// revalidate every use with cuttle, which counts and limits it.
    pub(super) fn meter_shared_caches(
        &self,
        url: &str,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) {
        let limited = self.ledger().is_some_and(|l| l.is_limited(&url_key(url)));
        if status != StatusCode::OK || !limited {
            return;
        }
        let mut directives: Vec<String> = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| d.trim().to_string())
            .filter(|d| {
                !d.is_empty()
                    && !d
                        .split('=')
                        .next()
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case("s-maxage"))
            })
            .collect();
        directives.push("s-maxage=0".to_string());
        if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
            headers.insert(header::CACHE_CONTROL, v);
        }
    }

    /// A response to a child that offered to report: asked to (`Meter:
    /// do-report`) when we are its accelerator (the aggregation point) or
    /// the origin asked us for reports on the URL.
    pub(super) fn meter_ask_child(
        &self,
        url: &str,
        arrival: Arrival,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) {
        let wanted =
            arrival.accelerated() || self.ledger().is_some_and(|l| l.wants_report(&url_key(url)));
        if wanted && status == StatusCode::OK && !headers.contains_key(METER) {
            headers.insert(METER, meter::encode(&[Directive::DoReport]));
            meter_connection(headers);
        }
    }

    /// A request about to go upstream: the offer and the counts owed for
    /// its URL (taken, and their reset committed, now). A request that
    /// already carries a `Meter` field is one of our own reports.
    pub(super) fn meter_request(&self, req: &mut Request<ProxyBody>, fwd: &Forwarding<'_>) {
        let Some(ledger) = self.ledger() else {
            return;
        };
        let headers = req.headers_mut();
        if fwd.headers.contains_key(METER) {
            if let Some(v) = fwd.headers.get(METER) {
                headers.insert(METER, v.clone());
            }
            meter_connection(headers);
            return;
        }
        if *fwd.method != Method::GET && *fwd.method != Method::HEAD {
            return;
        }
        let mut directives = vec![Directive::WillReportAndLimit];
        if let Some(r) = ledger.take_report(&url_key(&fwd.target.url)) {
            directives.push(Directive::Count {
                uses: r.uses,
                reuses: r.reuses,
            });
        }
        headers.insert(METER, meter::encode(&directives));
        meter_connection(headers);
    }

    /// A response from upstream: its `Meter` directives become the
    /// object's terms (a new response without any ends its metering; a
    /// 304 without any keeps them) and leave the response.
    pub(super) fn meter_response(
        &self,
        status: StatusCode,
        headers: &mut HeaderMap,
        fwd: &Forwarding<'_>,
    ) {
        let Some(ledger) = self.ledger() else {
            return;
        };
        let url = &fwd.target.url;
        if *fwd.method == Method::GET && !fwd.headers.contains_key(METER) {
            let terms = meter::response_terms(headers);
            if status == StatusCode::NOT_MODIFIED {
                if terms.is_some() {
                    ledger.set_terms(url_key(url), url, terms);
                }
            } else if status.is_success() {
                ledger.set_terms(url_key(url), url, terms);
            }
            if terms.is_some() {
                *self
                    .meter
                    .last_arrival
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(fwd.arrival);
            }
            self.meter.total(url, |t| t.origin_fetches += 1);
        }
        headers.remove(METER);
    }

    /// `url`'s objects were purged: the counts they owe go out in a HEAD.
    pub(super) fn meter_purged(&self, url: &str, arrival: Arrival) {
        if let Some(report) = self.ledger().and_then(|l| l.remove(&url_key(url))) {
            self.meter.enqueue(report, arrival);
        }
    }

    /// Sends one report: a HEAD for its URL carrying `Meter: count=U/R`,
    /// along the routes a request of `arrival`'s port takes.
    async fn send_report(&self, report: &MeterReport, arrival: Arrival) {
        let Ok(uri) = report.url.parse::<http::Uri>() else {
            return;
        };
        let Ok(target) = Target::of_request(
            &Method::HEAD,
            &uri,
            &HeaderMap::new(),
            &crate::http::target::PortKind::Forward,
        ) else {
            return;
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            METER,
            meter::encode(&[Directive::Count {
                uses: report.uses,
                reuses: report.reuses,
            }]),
        );
        let fwd = Forwarding {
            method: &Method::HEAD,
            target: &target,
            headers: &headers,
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            arrival,
            siblings_ok: false,
            body: None,
            share_offer: false,
        };
        let mut hierarchy = Hierarchy::none();
        match self.forward_along(&fwd, &mut hierarchy).await {
            Ok(f) => {
                tracing::debug!(url = %report.url, uses = report.uses, reuses = report.reuses, status = %f.resp.status(), "hit-metering report sent")
            }
            // Not retried: the reset is committed, so a report is sent at most once.
            Err(e) => {
                tracing::info!(url = %report.url, uses = report.uses, reuses = report.reuses, "hit-metering report not delivered: {e:?}")
            }
        }
    }

    /// The reports owed now: queued ones (purges), objects the store no
    /// longer holds (evicted), and `timeout`s that have passed.
    fn due_reports(&self) -> Vec<(MeterReport, Arrival)> {
        let mut out =
            std::mem::take(&mut *self.meter.queue.lock().unwrap_or_else(|p| p.into_inner()));
        let Some(ledger) = self.ledger() else {
            return out;
        };
        let fallback = *self
            .meter
            .last_arrival
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // No metered fetch yet in this process (counts from the journal):
        // a forward-proxy port's routes.
        let arrival = fallback.unwrap_or(Arrival {
            kind: PortUse::Forward,
            local: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            port_name: "",
        });
        let c = self.store.counters();
        let removals = c.evictions.load(Ordering::Relaxed) + c.purges.load(Ordering::Relaxed);
        let store = &self.store;
        let round = self.meter.rounds.fetch_add(1, Ordering::Relaxed);
        let changed = self.meter.removals_seen.swap(removals, Ordering::Relaxed) != removals;
        if changed || round.is_multiple_of(SWEEP_EVERY) {
            let gone = ledger.take_gone(&|k: &Key| store.peek(k).is_some(), STORING_GRACE);
            out.extend(gone.into_iter().map(|r| (r, arrival)));
        }
        out.extend(
            ledger
                .take_due(unix_now())
                .into_iter()
                .map(|r| (r, arrival)),
        );
        ledger.compact_if_large();
        out
    }

    /// `mgr:hit_metering`: per URL, origin fetches, local hits and the
    /// uses and reuses children reported; then the objects metered now.
    pub(super) fn hit_metering_page(&self) -> String {
        let mut page = String::new();
        let _ = writeln!(
            page,
            "hit_metering {}",
            if self.ledger().is_some() { "on" } else { "off" }
        );
        let _ = writeln!(
            page,
            "\norigin_fetches local_hits downstream_uses downstream_reuses url"
        );
        for (url, t) in self.meter.snapshot() {
            let _ = writeln!(
                page,
                "{} {} {} {} {url}",
                t.origin_fetches, t.local_hits, t.downstream_uses, t.downstream_reuses
            );
        }
        if let Some(ledger) = self.ledger() {
            let _ = writeln!(page, "\nmetered objects: unreported_uses unreported_reuses report max_uses max_reuses timeout_min url");
            let mut lines = ledger.snapshot();
            lines.sort_by(|a, b| a.1.url.cmp(&b.1.url));
            for (_, m) in lines {
                let opt = |v: Option<u32>| v.map_or("-".to_string(), |n| n.to_string());
                let _ = writeln!(
                    page,
                    "{} {} {} {} {} {} {}",
                    m.uses,
                    m.reuses,
                    if m.terms.report { "yes" } else { "no" },
                    opt(m.terms.max_uses),
                    opt(m.terms.max_reuses),
                    opt(m.terms.timeout_minutes),
                    m.url
                );
            }
        }
        page
    }

    /// The per-site totals as Prometheus counters (appended to /metrics).
    pub(super) fn hit_metering_metrics(&self) -> String {
        if self.ledger().is_none() {
            return String::new();
        }
        let mut sites: HashMap<String, Totals> = HashMap::new();
        for (url, t) in self.meter.snapshot() {
            let s = sites.entry(site_of(&url).to_string()).or_default();
            s.origin_fetches += t.origin_fetches;
            s.local_hits += t.local_hits;
            s.downstream_uses += t.downstream_uses;
            s.downstream_reuses += t.downstream_reuses;
        }
        let mut sites: Vec<_> = sites.into_iter().collect();
        sites.sort();
        let mut out = String::new();
        type Field = fn(&Totals) -> u64;
        let series: [(&str, &str, Field); 4] = [
            (
                "origin_fetches",
                "GET responses received from upstream while hit metering is on.",
                |t| t.origin_fetches,
            ),
            (
                "local_hits",
                "Uses of metered objects served from this cache.",
                |t| t.local_hits,
            ),
            (
                "downstream_uses",
                "Uses reported by child caches (Meter: count=U/R).",
                |t| t.downstream_uses,
            ),
            (
                "downstream_reuses",
                "Reuses reported by child caches.",
                |t| t.downstream_reuses,
            ),
        ];
        for (name, help, field) in series {
            let _ = writeln!(out, "# HELP cuttle_hit_metering_{name}_total {help}");
            let _ = writeln!(out, "# TYPE cuttle_hit_metering_{name}_total counter");
            for (site, t) in &sites {
                let site = site.replace(['\\', '"', '\n'], "_");
                let _ = writeln!(
                    out,
                    "cuttle_hit_metering_{name}_total{{site=\"{site}\"}} {}",
                    field(t)
                );
            }
        }
        out
    }
}

/// Sends the reports metering owes (purges at once, evictions and
/// timeouts within a second), one at a time, never holding up the store.
/// Runs until aborted.
pub async fn meter_reporter(proxy: watch::Receiver<Arc<Proxy>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let current = Arc::clone(&proxy.borrow());
        let shared = Arc::clone(&current.meter);
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.wake.notified() => {}
        }
        let current = Arc::clone(&proxy.borrow());
        if current.ledger().is_none() {
            continue;
        }
        let reports = tokio::task::block_in_place(|| current.due_reports());
        for (report, arrival) in reports {
            current.send_report(&report, arrival).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_of_urls() {
        assert_eq!(site_of("http://a.example:8080/x?y"), "a.example:8080");
        assert_eq!(site_of("http://a.example?q"), "a.example");
        assert_eq!(site_of("nothing"), "nothing");
    }
}
