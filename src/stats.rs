//! Traffic counters of the client side, as Squid keeps them for its cache manager (`client_http.*`, service-time histograms, hierarchy and result codes): fed once per transaction, when its access.log line is written.
//!
//! Layer 2 of DESIGN.md: it uses only `access_log`'s code types. Other
//! components count their own traffic (the store, the upstream client, the
//! ICP endpoints); the cache manager (`mgr`) reads them all.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use crate::access_log::{Entry, HierarchyCode, ResultTag};

/// Buckets of a [`Histogram`].
const BUCKETS: usize = 48;
/// Upper edge of bucket 0, in microseconds; each next bucket is 1.5 times wider.
const FIRST_EDGE_US: f64 = 100.0;
const GROWTH: f64 = 1.5;
/// Hosts remembered (clients for "Number of clients accessing cache", as
/// Squid's client_db; peers for hits served and taken); past this, new
/// ones are not counted.
const MAX_HOSTS: usize = 65_536;

/// Service times on a log scale (100 µs to about 15 minutes), so that
/// percentiles can be read from the difference of two snapshots, as Squid
/// reads its 5- and 60-minute medians.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

/// Lower edge of bucket `i` in seconds.
fn edge(i: usize) -> f64 {
    if i == 0 {
        0.0
    } else {
        FIRST_EDGE_US * GROWTH.powi(i as i32 - 1) / 1e6
    }
}

impl Histogram {
    pub fn add(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let i = if us < FIRST_EDGE_US {
            0
        } else {
            ((us / FIRST_EDGE_US).ln() / GROWTH.ln()) as usize + 1
        };
        if let Some(c) = self.counts.get_mut(i.min(BUCKETS - 1)) {
            *c += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What was added since `older` (a snapshot of the same histogram).
    pub fn since(&self, older: &Histogram) -> Histogram {
        let mut out = Histogram::default();
        for (o, (n, p)) in out
            .counts
            .iter_mut()
            .zip(self.counts.iter().zip(older.counts.iter()))
        {
            *o = n.saturating_sub(*p);
        }
        out
    }

    /// The `p`-th percentile (0..=100) in seconds, interpolated inside its
    /// bucket; 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let want = total as f64 * p / 100.0;
        let mut seen = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            let c = c as f64;
            if c > 0.0 && seen + c >= want {
                let (lo, hi) = (edge(i), edge(i + 1));
                return lo + (hi - lo) * ((want - seen) / c).clamp(0.0, 1.0);
            }
            seen += c;
        }
        edge(BUCKETS)
    }
}

/// Squid's service-time classes (`client_http.*_median_svc_time`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTimes {
    /// Every request.
    pub all: Histogram,
    /// TCP_MISS, TCP_CLIENT_REFRESH_MISS.
    pub miss: Histogram,
    /// "Not-Modified Replies" (Squid's near misses): TCP_IMS_HIT, TCP_INM_HIT.
    pub not_modified: Histogram,
    /// "Near Hits": TCP_REFRESH_UNMODIFIED.
    pub near_hit: Histogram,
    /// TCP_HIT, TCP_MEM_HIT, TCP_OFFLINE_HIT.
    pub hit: Histogram,
}

/// The client-side totals since start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Squid's hit classification ([`ResultTag::is_hit`]).
    pub hits: u64,
    /// Requests cuttle answered with an error of its own (status ≥ 400
    /// without a server behind it: denials, failed fetches, bad URLs).
    pub errors: u64,
    /// Bytes sent to clients, headers included (the access.log size field).
    pub bytes_out: u64,
    /// Of those, bytes of hits.
    pub hit_bytes_out: u64,
    /// Transactions the client left before the end (`_ABORTED`).
    pub aborted: u64,
    /// By result tag, in [`ResultTag::ALL`] order.
    pub by_result: [u64; ResultTag::ALL.len()],
    /// By hierarchy code, in [`HierarchyCode::ALL`] order.
    pub by_hierarchy: [u64; HierarchyCode::ALL.len()],
    /// Transactions whose source was chosen by ICP (SIBLING_HIT,
    /// PARENT_HIT, FIRST_PARENT_MISS, CLOSEST_PARENT_MISS): `icp.times_used`.
    pub icp_times_used: u64,
    /// Of those, the ones whose ICP wait ended by timeout: `icp.query_timeouts`.
    pub icp_query_timeouts: u64,
    /// CD_PARENT_HIT, CD_SIBLING_HIT: `cd.times_used`.
    pub cd_times_used: u64,
    /// CLOSEST_PARENT, CLOSEST_DIRECT: `netdb.times_used`.
    pub netdb_times_used: u64,
    /// Misses answered with a redirect to the sibling holding the object
    /// (`holder_redirect`): `client_http.holder_redirects`.
    pub holder_redirects: u64,
    /// Misses raced up the hierarchy and to the origin (`cut_through`).
    pub cut_through: CutThroughTotals,
    /// Adaptive polling (`refresh_pattern ... adaptive`).
    pub adaptive: AdaptiveTotals,
    pub service: ServiceTimes,
}

/// Adaptive polling (issue 22): revalidations that set an object's poll
/// interval, and background revalidations ahead of expiry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdaptiveTotals {
    /// A 304: the interval doubled (up to the pattern's max).
    pub doubled: u64,
    /// A new version: the interval halved (down to the pattern's min).
    pub halved: u64,
    /// Popular objects revalidated in the background before they expired.
    pub ahead: u64,
}

/// What adaptive polling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdaptiveEvent {
    Doubled,
    Halved,
    Ahead,
}

/// Cut-through misses (issue 20): how many raced, and who answered first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutThroughTotals {
    pub requests: u64,
    pub won_by_origin: u64,
    pub won_by_hierarchy: u64,
}

/// Who answered a cut-through miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutThroughWinner {
    Origin,
    Hierarchy,
    /// Neither with a usable answer (both failed).
    Neither,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            requests: 0,
            hits: 0,
            errors: 0,
            bytes_out: 0,
            hit_bytes_out: 0,
            aborted: 0,
            by_result: [0; ResultTag::ALL.len()],
            by_hierarchy: [0; HierarchyCode::ALL.len()],
            icp_times_used: 0,
            icp_query_timeouts: 0,
            cd_times_used: 0,
            netdb_times_used: 0,
            holder_redirects: 0,
            cut_through: CutThroughTotals::default(),
            adaptive: AdaptiveTotals::default(),
            service: ServiceTimes::default(),
        }
    }
}

impl Totals {
    /// Transactions logged with `tag`.
    pub fn result(&self, tag: ResultTag) -> u64 {
        ResultTag::ALL
            .iter()
            .position(|t| *t == tag)
            .and_then(|i| self.by_result.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Transactions logged with hierarchy `code`.
    pub fn hierarchy(&self, code: HierarchyCode) -> u64 {
        HierarchyCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.by_hierarchy.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// What one address did: as a client, and as the server of hits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// It sent us requests.
    pub client: bool,
    /// Hits we served it (a sibling fetching what we hold).
    pub hits_served: u64,
    /// Requests we fetched from it as a peer hit (SIBLING_HIT, PARENT_HIT,
    /// CD_SIBLING_HIT, CD_PARENT_HIT).
    pub hits_taken: u64,
    /// Its HTTP requests by result tag (`mgr:client_list`).
    pub by_result: BTreeMap<ResultTag, u64>,
}

/// The client-side counters of one cuttle process: shared by every
/// configuration it runs (a reload keeps them).
#[derive(Debug, Default)]
pub struct Stats {
    totals: Mutex<Totals>,
    hosts: Mutex<HashMap<IpAddr, Host>>,
    /// Bytes read from client connections (requests, headers and bodies):
    /// `client_http.kbytes_in`. Counted by the connection, not the
    /// transaction, so it is an atomic of its own.
    bytes_in: AtomicU64,
    /// Requests in flight (`mgr:active_requests`), by registration number.
    active: Mutex<BTreeMap<u64, Weak<ActiveRequest>>>,
    next_active: AtomicU64,
}

/// A request in flight, as `mgr:active_requests` lists it.
#[derive(Debug)]
pub struct ActiveRequest {
    pub id: u64,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub method: String,
    pub url: String,
    pub start: SystemTime,
    /// Body bytes sent to the client so far.
    pub bytes_out: AtomicU64,
}

/// Keeps a request listed as active until dropped (with its transaction).
#[derive(Debug)]
pub struct ActiveGuard {
    request: Arc<ActiveRequest>,
    stats: Weak<Stats>,
}

impl ActiveGuard {
    pub fn request(&self) -> &Arc<ActiveRequest> {
        &self.request
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.upgrade() {
            let mut active = stats.active.lock().unwrap_or_else(|p| p.into_inner());
            active.remove(&self.request.id);
        }
    }
}

impl Stats {
    /// A request started: listed until the guard is dropped.
    pub fn begin_request(
        self: &Arc<Self>,
        client: SocketAddr,
        local: SocketAddr,
        method: &str,
        url: &str,
    ) -> ActiveGuard {
        let id = self.next_active.fetch_add(1, Ordering::Relaxed);
        let request = Arc::new(ActiveRequest {
            id,
            client,
            local,
            method: method.to_string(),
            url: url.to_string(),
            start: SystemTime::now(),
            bytes_out: AtomicU64::new(0),
        });
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.insert(id, Arc::downgrade(&request));
        ActiveGuard {
            request,
            stats: Arc::downgrade(self),
        }
    }

    /// The requests in flight, oldest first.
    pub fn active_requests(&self) -> Vec<Arc<ActiveRequest>> {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.values().filter_map(Weak::upgrade).collect()
    }

    /// Per client address: its HTTP requests by result tag (Squid's names).
    pub fn client_results(&self) -> Vec<(IpAddr, BTreeMap<String, u64>)> {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = hosts
            .iter()
            .filter(|(_, h)| h.client)
            .map(|(ip, h)| {
                let by_name = h
                    .by_result
                    .iter()
                    .map(|(tag, n)| (crate::access_log::ResultCode::new(*tag).to_string(), *n))
                    .collect();
                (*ip, by_name)
            })
            .collect();
        list.sort_by_key(|(ip, _)| *ip);
        list
    }

    /// One HTTP transaction ended (its access.log line is `entry`).
    pub fn note_transaction(&self, entry: &Entry) {
        let tag = entry.result.tag;
        let hit = entry.result.is_hit();
        use HierarchyCode as H;
        let code = entry.hierarchy.code;
        let taken_from = matches!(
            code,
            H::SiblingHit
                | H::ParentHit
                | H::CdSiblingHit
                | H::CdParentHit
                | H::MonSiblingHit
                | H::MonParentHit
        )
        .then(|| entry.hierarchy.host.as_deref()?.parse::<IpAddr>().ok())
        .flatten();
        {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            let mut note = |ip: IpAddr, f: &dyn Fn(&mut Host)| {
                let len = hosts.len();
                match hosts.get_mut(&ip) {
                    Some(h) => f(h),
                    None if len < MAX_HOSTS => f(hosts.entry(ip).or_default()),
                    None => {}
                }
            };
            if let Some(ip) = entry.client {
                note(ip, &|h| {
                    h.client = true;
                    h.hits_served += u64::from(hit);
                    *h.by_result.entry(tag).or_default() += 1;
                });
            }
            if let Some(ip) = taken_from {
                note(ip, &|h| h.hits_taken += 1);
            }
        }
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.requests += 1;
        t.bytes_out += entry.size;
        if hit {
            t.hits += 1;
            t.hit_bytes_out += entry.size;
        }
        if entry.status >= 400 && entry.hierarchy.code == HierarchyCode::HierNone {
            t.errors += 1;
        }
        if entry.result.aborted {
            t.aborted += 1;
        }
        if let Some(i) = ResultTag::ALL.iter().position(|x| *x == tag) {
            t.by_result[i] += 1;
        }
        if let Some(i) = HierarchyCode::ALL.iter().position(|x| *x == code) {
            t.by_hierarchy[i] += 1;
        }
        match code {
            H::SiblingHit | H::ParentHit | H::FirstParentMiss | H::ClosestParentMiss => {
                t.icp_times_used += 1;
                if entry.hierarchy.timed_out {
                    t.icp_query_timeouts += 1;
                }
            }
            H::CdParentHit | H::CdSiblingHit => t.cd_times_used += 1,
            H::ClosestParent | H::ClosestDirect => t.netdb_times_used += 1,
            _ => {}
        }
        let s = &mut t.service;
        s.all.add(entry.elapsed);
        use ResultTag as R;
        match tag {
            R::TcpMiss | R::TcpClientRefreshMiss => s.miss.add(entry.elapsed),
            R::TcpImsHit | R::TcpInmHit => s.not_modified.add(entry.elapsed),
            R::TcpRefreshUnmodified => s.near_hit.add(entry.elapsed),
            R::TcpHit | R::TcpMemHit | R::TcpOfflineHit => s.hit.add(entry.elapsed),
            _ => {}
        }
    }

    /// A miss was answered with a redirect to its holder.
    pub fn note_holder_redirect(&self) {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .holder_redirects += 1;
    }

    /// A cut-through miss ended, won by `winner`.
    pub fn note_cut_through(&self, winner: CutThroughWinner) {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.cut_through.requests += 1;
        match winner {
            CutThroughWinner::Origin => t.cut_through.won_by_origin += 1,
            CutThroughWinner::Hierarchy => t.cut_through.won_by_hierarchy += 1,
            CutThroughWinner::Neither => {}
        }
    }

    /// Adaptive polling set an interval, or revalidated an object ahead.
    pub fn note_adaptive(&self, event: AdaptiveEvent) {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let counter = match event {
            AdaptiveEvent::Doubled => &mut t.adaptive.doubled,
            AdaptiveEvent::Halved => &mut t.adaptive.halved,
            AdaptiveEvent::Ahead => &mut t.adaptive.ahead,
        };
        *counter += 1;
    }

    /// `n` bytes arrived on a client connection.
    pub fn note_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// A copy of the totals.
    pub fn totals(&self) -> Totals {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Distinct client addresses seen (up to 65536).
    pub fn clients(&self) -> usize {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.values().filter(|h| h.client).count()
    }

    /// What `ip` did (zero when never seen).
    pub fn host(&self, ip: IpAddr) -> Host {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.get(&ip).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::{Hierarchy, ResultCode};

    fn entry(tag: ResultTag, status: u16, code: HierarchyCode, ms: u64) -> Entry {
        Entry {
            result: ResultCode::new(tag),
            status,
            size: 1000,
            hierarchy: Hierarchy::new(code, Some("127.0.0.1")),
            elapsed: Duration::from_millis(ms),
            client: Some("127.0.0.1".parse().expect("ip")),
            ..Entry::default()
        }
    }

    #[test]
    fn transactions_count_as_squid_counts_them() {
        let s = Stats::default();
        s.note_transaction(&entry(
            ResultTag::TcpMemHit,
            200,
            HierarchyCode::HierNone,
            0,
        ));
        s.note_transaction(&entry(
            ResultTag::TcpMiss,
            200,
            HierarchyCode::SiblingHit,
            20,
        ));
        let mut timed_out = entry(ResultTag::TcpMiss, 200, HierarchyCode::FirstParentMiss, 30);
        timed_out.hierarchy = timed_out.hierarchy.timed_out();
        s.note_transaction(&timed_out);
        s.note_transaction(&entry(
            ResultTag::TcpDenied,
            403,
            HierarchyCode::HierNone,
            0,
        ));
        s.note_transaction(&entry(
            ResultTag::TcpMiss,
            404,
            HierarchyCode::HierDirect,
            5,
        ));
        let t = s.totals();
        assert_eq!((t.requests, t.hits, t.errors), (5, 1, 1));
        assert_eq!((t.bytes_out, t.hit_bytes_out), (5000, 1000));
        assert_eq!((t.icp_times_used, t.icp_query_timeouts), (2, 1));
        assert_eq!(t.result(ResultTag::TcpMiss), 3);
        assert_eq!(t.hierarchy(HierarchyCode::SiblingHit), 1);
        assert_eq!(t.service.all.total(), 5);
        assert_eq!(t.service.miss.total(), 3);
        assert_eq!(t.service.hit.total(), 1);
        assert_eq!(s.clients(), 1);
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        let host = s.host(local);
        assert_eq!(
            (host.client, host.hits_served, host.hits_taken),
            (true, 1, 1)
        );
        assert_eq!(host.by_result.values().sum::<u64>(), 5, "{host:?}");
        assert_eq!(
            s.client_results()[0].1.values().sum::<u64>(),
            5,
            "client_list's counts come from the same place"
        );
    }

    #[test]
    fn percentiles_fall_in_the_right_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), 0.0);
        for _ in 0..99 {
            h.add(Duration::from_millis(10));
        }
        h.add(Duration::from_secs(2));
        let median = h.percentile(50.0);
        assert!((0.006..=0.015).contains(&median), "{median}");
        let top = h.percentile(100.0);
        assert!((1.3..=3.0).contains(&top), "{top}");
        let older = h.clone();
        h.add(Duration::from_millis(1));
        assert_eq!(h.since(&older).total(), 1);
    }
}
