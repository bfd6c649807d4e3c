//! What a simulation counts, per node and in total, the conservation
//! checks every run must pass, and the figures as a table or JSON.

use serde::Serialize;

/// Latencies in a log-bucketed histogram (0.1 % wide buckets from 1 µs):
/// its memory is bounded whatever the trace's length.
#[derive(Debug, Clone)]
pub struct Latencies {
    buckets: Vec<u64>,
    count: u64,
    sum_ms: f64,
}

/// ln(1.001): each bucket is 0.1 % wider than the one before.
const BUCKET_LN: f64 = 0.000_999_500_333;

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            buckets: Vec::new(),
            count: 0,
            sum_ms: 0.0,
        }
    }
}

impl Latencies {
    pub fn add(&mut self, ms: f64) {
        let us = (ms * 1000.0).max(1.0);
        let bucket = (us.ln() / BUCKET_LN) as usize;
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_ms += ms;
    }

    pub fn merge(&mut self, other: &Latencies) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ms += other.sum_ms;
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms / self.count as f64
        }
    }

    /// The `q` quantile (0..=1), to within 0.1 %: the smallest value with
    /// at least `q` of the samples at or below it.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                // The bucket's middle, back in milliseconds.
                let us = ((i as f64 + 0.5) * BUCKET_LN).exp();
                return if us <= 1.0 { 0.0 } else { us / 1000.0 };
            }
        }
        0.0
    }
}

/// One node's counts (or the total's).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStats {
    /// Trace requests this node received from its clients.
    pub requests: u64,
    pub local_hits: u64,
    pub sibling_hits: u64,
    pub parent_hits: u64,
    /// Client requests whose object came from the origin.
    pub misses: u64,
    /// Client requests no source could serve (e.g. never_direct, no parent).
    pub failed: u64,
    /// Bytes of the client requests counted in `misses`.
    pub miss_bytes: u64,
    /// Fetches this node made from the origin (for itself or a child).
    pub origin_requests: u64,
    pub origin_bytes: u64,
    /// Document size x links crossed, for this node's client requests.
    pub bytes_hops: f64,
    /// Requests this node served to other nodes (siblings, children).
    pub peer_requests: u64,
    pub icp_sent: u64,
    pub htcp_sent: u64,
    pub client_bytes: u64,
    /// Body bytes this node sent, to its clients and to other nodes (a
    /// redirected request's go from the holder to the client).
    pub proxy_bytes: u64,
    /// Client requests answered with a 302 to the holder.
    pub redirects: u64,
    #[serde(skip)]
    pub latency: Latencies,
}

impl NodeStats {
    pub fn hits(&self) -> u64 {
        self.local_hits + self.sibling_hits + self.parent_hits
    }

    fn ratio(&self, n: u64) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            n as f64 / self.requests as f64
        }
    }

    pub fn add(&mut self, o: &NodeStats) {
        self.requests += o.requests;
        self.local_hits += o.local_hits;
        self.sibling_hits += o.sibling_hits;
        self.parent_hits += o.parent_hits;
        self.misses += o.misses;
        self.failed += o.failed;
        self.miss_bytes += o.miss_bytes;
        self.origin_requests += o.origin_requests;
        self.origin_bytes += o.origin_bytes;
        self.bytes_hops += o.bytes_hops;
        self.peer_requests += o.peer_requests;
        self.icp_sent += o.icp_sent;
        self.htcp_sent += o.htcp_sent;
        self.client_bytes += o.client_bytes;
        self.proxy_bytes += o.proxy_bytes;
        self.redirects += o.redirects;
        self.latency.merge(&o.latency);
    }
}

/// The figures of one run, as `--json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub node: String,
    pub requests: u64,
    pub hit_ratio_local: f64,
    pub hit_ratio_sibling: f64,
    pub hit_ratio_parent: f64,
    pub origin_requests: u64,
    pub origin_bytes: u64,
    pub bytes_hops: f64,
    /// Body bytes the nodes sent (to clients and to each other).
    pub proxy_bytes: u64,
    pub redirects: u64,
    pub latency_mean_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub icp_sent: u64,
    pub htcp_sent: u64,
    pub peer_requests: u64,
    pub failed: u64,
}

impl Row {
    pub fn of(node: &str, s: &NodeStats) -> Row {
        Row {
            node: node.to_string(),
            requests: s.requests,
            hit_ratio_local: s.ratio(s.local_hits),
            hit_ratio_sibling: s.ratio(s.sibling_hits),
            hit_ratio_parent: s.ratio(s.parent_hits),
            origin_requests: s.origin_requests,
            origin_bytes: s.origin_bytes,
            bytes_hops: s.bytes_hops,
            proxy_bytes: s.proxy_bytes,
            redirects: s.redirects,
            latency_mean_ms: s.latency.mean_ms(),
            latency_p50_ms: s.latency.quantile_ms(0.5),
            latency_p99_ms: s.latency.quantile_ms(0.99),
            icp_sent: s.icp_sent,
            htcp_sent: s.htcp_sent,
            peer_requests: s.peer_requests,
            failed: s.failed,
        }
    }
}

/// A finished run: per node (mesh order) and the total.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mesh: String,
    pub nodes: Vec<Row>,
    pub total: Row,
    /// Trace lines not replayed, by reason.
    pub skipped_malformed: u64,
    pub skipped_not_cacheable: u64,
    pub skipped_errors: u64,
    /// Trace requests whose client no node serves.
    pub unrouted: u64,
    /// What the stores hold at the end (distinct objects, copies).
    pub stored: super::threshold::Stored,
    /// Some node has `holder_redirect` rules: the table says what the
    /// nodes sent and how many requests were redirected.
    pub holder_redirect: bool,
    /// Some node has a `cut_through` line: the races and the miss
    /// latency at depth 2 or more (`sim::cut_through`).
    pub cut_through: Option<super::cut_through::Summary>,
    /// The mesh names an owner keeping a share log: what proxy sharing
    /// did (`sim::sharing`).
    pub sharing: Option<super::sharing::Summary>,
    /// The trace had change lines: stale hits, validations, push notices
    /// (`sim::changes`).
    pub changes: Option<super::changes::Summary>,
}

/// The conservation checks: per node, requests = hits + misses + failed;
/// in total, origin requests and bytes equal the misses and their bytes
/// (each origin fetch serves exactly one client request).
pub fn check_conservation(names: &[&str], per_node: &[NodeStats]) -> Result<(), String> {
    let mut total = NodeStats::default();
    for (name, s) in names.iter().zip(per_node) {
        let accounted = s.hits() + s.misses + s.failed;
        if s.requests != accounted {
            return Err(format!(
                "conservation violated at node {name}: {} requests but {} hits + {} misses + {} failed",
                s.requests,
                s.hits(),
                s.misses,
                s.failed
            ));
        }
        total.add(s);
    }
    if total.origin_requests != total.misses || total.origin_bytes != total.miss_bytes {
        return Err(format!(
            "conservation violated: {} origin fetches of {} bytes, but {} misses of {} bytes",
            total.origin_requests, total.origin_bytes, total.misses, total.miss_bytes
        ));
    }
    Ok(())
}

/// Bytes for people (binary units, one decimal).
fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Report {
    /// Bytes leaving the origin's side: the bodies, and proxy sharing's
    /// lists.
    pub fn owner_bytes(&self) -> u64 {
        self.total.origin_bytes + self.sharing.map_or(0, |s| s.list_bytes)
    }

    /// The table `cuttle simulate` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<10} {:>9} {:>7} {:>7} {:>7} {:>9} {:>10} {:>11} {:>8} {:>8} {:>8} {:>9}\n",
            "node",
            "requests",
            "local%",
            "sibl%",
            "parent%",
            "origin",
            "orig-bytes",
            "bytes*hops",
            "mean-ms",
            "p50-ms",
            "p99-ms",
            "icp+htcp"
        );
        for row in self.nodes.iter().chain(std::iter::once(&self.total)) {
            out.push_str(&format!(
                "{:<10} {:>9} {:>7.2} {:>7.2} {:>7.2} {:>9} {:>10} {:>11} {:>8.1} {:>8.1} {:>8.1} {:>9}\n",
                row.node,
                row.requests,
                row.hit_ratio_local * 100.0,
                row.hit_ratio_sibling * 100.0,
                row.hit_ratio_parent * 100.0,
                row.origin_requests,
                human_bytes(row.origin_bytes as f64),
                human_bytes(row.bytes_hops),
                row.latency_mean_ms,
                row.latency_p50_ms,
                row.latency_p99_ms,
                row.icp_sent + row.htcp_sent
            ));
        }
        out.push_str(&format!(
            "stored at the end: {} distinct objects, {} copies\n",
            self.stored.distinct_objects, self.stored.copies
        ));
        if self.holder_redirect {
            out.push_str(&format!(
                "sent by the nodes: {} of bodies (to clients and to each other); {} redirects to the holder\n",
                human_bytes(self.total.proxy_bytes as f64),
                self.total.redirects
            ));
        }
        if let Some(c) = &self.cut_through {
            out.push_str(&c.lines(self.total.origin_requests));
        }
        if let Some(s) = &self.sharing {
            out.push_str(&format!(
                "proxy sharing: {} offers, {} lists ({}), {} fetched from a candidate, {} back to the owner; bytes leaving the owner (bodies and lists): {}; its log at the end: {} entries, {}\n",
                s.offers,
                s.lists,
                human_bytes(s.list_bytes as f64),
                s.share_hits,
                s.fallbacks,
                human_bytes(self.owner_bytes() as f64),
                s.log_entries,
                human_bytes(s.log_bytes as f64)
            ));
        }
        if let Some(c) = &self.changes {
            out.push_str(&c.lines());
        }
        let skipped = self.skipped_malformed + self.skipped_not_cacheable + self.skipped_errors;
        if skipped + self.unrouted > 0 {
            out.push_str(&format!(
                "skipped trace lines: {} malformed, {} not cacheable (CONNECT, other methods), {} errors; {} requests from clients no node serves\n",
                self.skipped_malformed, self.skipped_not_cacheable, self.skipped_errors, self.unrouted
            ));
        }
        out
    }
}

/// The totals of two runs side by side, with B's change from A.
pub fn compare_lines(a: &Report, b: &Report) -> String {
    let (x, y) = (&a.total, &b.total);
    let hits = |r: &Row| (r.hit_ratio_local + r.hit_ratio_sibling + r.hit_ratio_parent) * 100.0;
    let change = |from: f64, to: f64| {
        if from == 0.0 {
            "-".to_string()
        } else {
            format!("{:+.1}%", (to - from) / from * 100.0)
        }
    };
    let mut out = format!(
        "\n{:<18} {:>14} {:>14} {:>9}\n",
        "total", "A", "B", "B vs A"
    );
    let mut line = |name: &str, va: f64, vb: f64, shown: &dyn Fn(f64) -> String, delta: String| {
        out.push_str(&format!(
            "{:<18} {:>14} {:>14} {:>9}\n",
            name,
            shown(va),
            shown(vb),
            delta
        ));
    };
    line(
        "hit ratio %",
        hits(x),
        hits(y),
        &|v| format!("{v:.2}"),
        format!("{:+.2}pp", hits(y) - hits(x)),
    );
    let bytes = |v: f64| human_bytes(v);
    line(
        "origin bytes",
        x.origin_bytes as f64,
        y.origin_bytes as f64,
        &bytes,
        change(x.origin_bytes as f64, y.origin_bytes as f64),
    );
    line(
        "bytes x hops",
        x.bytes_hops,
        y.bytes_hops,
        &bytes,
        change(x.bytes_hops, y.bytes_hops),
    );
    let ms = |v: f64| format!("{v:.1}");
    line(
        "mean latency ms",
        x.latency_mean_ms,
        y.latency_mean_ms,
        &ms,
        change(x.latency_mean_ms, y.latency_mean_ms),
    );
    line(
        "p99 latency ms",
        x.latency_p99_ms,
        y.latency_p99_ms,
        &ms,
        change(x.latency_p99_ms, y.latency_p99_ms),
    );
    line(
        "icp+htcp sent",
        (x.icp_sent + x.htcp_sent) as f64,
        (y.icp_sent + y.htcp_sent) as f64,
        &|v| format!("{v:.0}"),
        change(
            (x.icp_sent + x.htcp_sent) as f64,
            (y.icp_sent + y.htcp_sent) as f64,
        ),
    );
    if a.sharing.is_some() || b.sharing.is_some() {
        line(
            "owner bytes",
            a.owner_bytes() as f64,
            b.owner_bytes() as f64,
            &bytes,
            change(a.owner_bytes() as f64, b.owner_bytes() as f64),
        );
    }
    if a.holder_redirect || b.holder_redirect {
        line(
            "proxy bytes",
            x.proxy_bytes as f64,
            y.proxy_bytes as f64,
            &bytes,
            change(x.proxy_bytes as f64, y.proxy_bytes as f64),
        );
        line(
            "redirects",
            x.redirects as f64,
            y.redirects as f64,
            &|v| format!("{v:.0}"),
            change(x.redirects as f64, y.redirects as f64),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_tenth_of_a_percent() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.add(f64::from(ms));
        }
        assert!(
            (l.quantile_ms(0.5) - 50.0).abs() < 0.05,
            "{}",
            l.quantile_ms(0.5)
        );
        assert!((l.quantile_ms(0.99) - 99.0).abs() < 0.1);
        assert!((l.mean_ms() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn a_request_neither_hit_nor_missed_violates_conservation() {
        let s = NodeStats {
            requests: 2,
            local_hits: 1,
            ..NodeStats::default()
        };
        let e = check_conservation(&["a"], &[s]).unwrap_err();
        assert!(e.contains("node a: 2 requests but 1 hits"), "{e}");
        let s = NodeStats {
            requests: 1,
            misses: 1,
            miss_bytes: 10,
            origin_requests: 1,
            origin_bytes: 9,
            ..NodeStats::default()
        };
        assert!(check_conservation(&["a"], &[s]).is_err());
    }
}
