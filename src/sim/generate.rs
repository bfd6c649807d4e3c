//! Synthetic traces (`cuttle trace generate`): a Squid native access.log
//! whose popularity follows Zipf over a set of documents, whose sizes are
//! heavy-tailed, whose requests arrive as a Poisson process and whose
//! clients are drawn from address ranges.
//!
//! Every document has one URL and one size for the whole trace (both are
//! functions of the seed and the document's popularity rank), so a cache
//! replaying the trace sees the same object each time it is asked for.
//!
//! With a change rate ([`TraceSpec::change_rate`]), each document also
//! changes at the origin as a Poisson process of its own mean interval
//! (see [`Generator::mean_change_interval`]), written as `#change` lines
//! ([`write_change`]) between the requests, in time order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Pareto, Zipf};

use crate::access_log::{
    write_native, Entry, FormatOptions, Hierarchy, HierarchyCode, ResultCode, ResultTag,
};
use crate::sim::ClientRange;

/// Zipf exponent of the default trace. With [`DEFAULT_OBJECTS_PER_REQUEST`]
/// it reproduces the popularity measured in proxy traces (the top 1% of the
/// documents seen draw 20-35% of the requests, the top 10% draw 45-55%,
/// 25-40% of them draw 70% and 70-80% draw 90%).
pub const DEFAULT_ZIPF: f64 = 0.8;
/// Documents in the catalogue per request of the trace when `--objects` is
/// not given (many documents are asked for once, as in real traces).
pub const DEFAULT_OBJECTS_PER_REQUEST: f64 = 1.0;
/// The first request's time stamp when none is given (2023-11-14 22:13:20
/// UTC): a fixed instant keeps a seed's trace identical from run to run.
pub const DEFAULT_START: f64 = 1_700_000_000.0;

/// Median body of the lognormal part of the size distribution, bytes.
const SIZE_MEDIAN: f64 = 4000.0;
/// Spread (sigma of the underlying normal) of the lognormal part.
const SIZE_SIGMA: f64 = 1.2;
/// Share of documents in the Pareto tail.
const TAIL_SHARE: f64 = 0.07;
/// Where the Pareto tail starts, bytes.
const TAIL_SCALE: f64 = 20_000.0;
/// Pareto shape of the tail: below 2, the tail dominates the byte volume,
/// as it does in measured traces.
const TAIL_SHAPE: f64 = 1.2;
/// Spread (sigma of the underlying normal) of the documents' mean times
/// between changes around the median `1 / --change-rate` days: with a
/// median of 5 days (`--change-rate 0.2`) about 21% of the documents
/// change at least daily and 6% less often than every 4 months, close to
/// what Cho and Garcia-Molina measured crawling 720,000 pages daily for 4
/// months (2000: 23% changed daily; the .com pages faster).
const CHANGE_SIGMA: f64 = 2.0;
/// Documents per host name (URLs are spread over many hosts so that CARP
/// and digests see realistic keys).
const DOCUMENTS_PER_HOST: u64 = 40;

/// What to generate.
#[derive(Debug, Clone)]
pub struct TraceSpec {
    /// Distinct documents in the catalogue (not all are asked for).
    pub objects: u64,
    /// Lines to write.
    pub requests: u64,
    /// Zipf exponent of popularity over the catalogue.
    pub zipf: f64,
    /// Client address ranges, each drawn equally often.
    pub clients: Vec<ClientRange>,
    pub seed: u64,
    /// Seconds over which the requests are spread.
    pub duration: f64,
    /// Time stamp (seconds since the epoch) the trace starts at.
    pub start: f64,
    /// Largest document size, bytes (the Pareto tail is cut there).
    pub max_size: u64,
    /// Changes per document per day at the median document (`None`: the
    /// documents never change and no `#change` line is written).
    pub change_rate: Option<f64>,
}

impl TraceSpec {
    /// Checks the numbers a user can get wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.objects == 0 {
            return Err("--objects must be at least 1".into());
        }
        if !(self.zipf.is_finite() && self.zipf > 0.0) {
            return Err("--zipf must be a number above 0".into());
        }
        if self.clients.is_empty() {
            return Err("--clients needs at least one range".into());
        }
        if !(self.duration.is_finite() && self.duration > 0.0) {
            return Err("--duration must be above 0 seconds".into());
        }
        if !(self.start.is_finite() && self.start >= 0.0) {
            return Err("--start must be 0 or more".into());
        }
        if self.max_size == 0 {
            return Err("--max-size must be at least 1".into());
        }
        if let Some(rate) = self.change_rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--change-rate must be a number of changes per day above 0".into());
            }
        }
        Ok(())
    }
}

/// One generated request: a document (by popularity rank, 1 = the most
/// popular) asked for by a client at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRequest {
    pub time: f64,
    pub client: IpAddr,
    pub rank: u64,
    pub url: String,
    pub size: u64,
}

/// The requests of a [`TraceSpec`], in time order.
pub struct Generator {
    spec: TraceSpec,
    rng: StdRng,
    popularity: Zipf<f64>,
    arrivals: Exp<f64>,
    hosts: u64,
    time: f64,
    left: u64,
}

/// A document's modification at the origin, at a time (seconds since the
/// epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedChange {
    pub time: f64,
    pub url: String,
}

/// One line of a trace with changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Request(GeneratedRequest),
    Change(GeneratedChange),
}

/// The lines of a [`TraceSpec`] with a change rate: the requests, and
/// before each the changes due by its time; a document's first request is
/// preceded by its last change before it (its Last-Modified, which may be
/// earlier than lines already written). A document's changes are
/// generated from its first request on (before that no cache can hold
/// it).
pub struct Lines {
    generator: Generator,
    /// Median mean interval between changes, seconds.
    median_interval: f64,
    next: Option<GeneratedRequest>,
    started: HashSet<u64>,
    /// Changes due: (ms since the epoch, rank, the document's change count).
    due: BinaryHeap<Reverse<(u64, u64, u64)>>,
}

/// A number in (0, 1) from a hash.
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

impl Lines {
    /// The document's own mean time between changes, seconds: the median
    /// times a lognormal factor (sigma [`CHANGE_SIGMA`]), fixed by the seed
    /// and the rank.
    pub fn mean_change_interval(&self, rank: u64) -> f64 {
        let h = mix(rank ^ mix(self.generator.spec.seed ^ 0x00c4_a46e));
        // Box-Muller: a standard normal from two uniforms.
        let z = (-2.0 * unit(h).ln()).sqrt() * (std::f64::consts::TAU * unit(mix(h))).cos();
        self.median_interval * (CHANGE_SIGMA * z).exp()
    }

    /// The `k`th exponential gap of the document's change process, seconds.
    fn gap(&self, rank: u64, k: u64) -> f64 {
        let h = mix(mix(rank ^ mix(self.generator.spec.seed ^ 0x6a9)).wrapping_add(k));
        -unit(h).ln() * self.mean_change_interval(rank)
    }

    fn schedule(&mut self, rank: u64, k: u64, from: f64) {
        let at = from + self.gap(rank, k);
        // Past what a time stamp holds: the document changes no more.
        if at.is_finite() && at < 1e15 {
            self.due
                .push(Reverse(((at * 1000.0).round() as u64, rank, k)));
        }
    }
}

impl Iterator for Lines {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        if self.next.is_none() {
            self.next = self.generator.next();
        }
        let request = self.next.as_ref()?;
        let (time, rank) = (request.time, request.rank);
        if self.generator.spec.change_rate.is_none() {
            return self.next.take().map(Line::Request);
        }
        if let Some(&Reverse((ms, due_rank, k))) = self.due.peek() {
            let at = ms as f64 / 1000.0;
            if at <= time {
                self.due.pop();
                self.schedule(due_rank, k + 1, at);
                return Some(Line::Change(GeneratedChange {
                    time: at,
                    url: self.generator.url_of(due_rank),
                }));
            }
        }
        if self.started.insert(rank) {
            // Memoryless: the last change before now is an exponential gap
            // back, the next one a gap ahead.
            let last = (time - self.gap(rank, 0)).max(0.0);
            self.schedule(rank, 1, time);
            return Some(Line::Change(GeneratedChange {
                time: (last * 1000.0).floor() / 1000.0,
                url: self.generator.url_of(rank),
            }));
        }
        self.next.take().map(Line::Request)
    }
}

impl Generator {
    /// The trace as lines: requests, and with a change rate the
    /// documents' changes between them.
    pub fn lines(self) -> Lines {
        let median_interval = 86_400.0 / self.spec.change_rate.unwrap_or(f64::MIN_POSITIVE);
        Lines {
            generator: self,
            median_interval,
            next: None,
            started: HashSet::new(),
            due: BinaryHeap::new(),
        }
    }

    pub fn new(spec: TraceSpec) -> Result<Generator, String> {
        spec.validate()?;
        let popularity = Zipf::new(spec.objects, spec.zipf).map_err(|e| format!("--zipf: {e}"))?;
        // Poisson arrivals: exponential gaps at the mean rate.
        let rate = spec.requests.max(1) as f64 / spec.duration;
        let arrivals = Exp::new(rate).map_err(|e| format!("--duration: {e}"))?;
        Ok(Generator {
            rng: StdRng::seed_from_u64(spec.seed),
            popularity,
            arrivals,
            hosts: spec.objects.div_ceil(DOCUMENTS_PER_HOST),
            time: spec.start,
            left: spec.requests,
            spec,
        })
    }

    /// The URL of the document of popularity `rank`: a host among many and
    /// a path unique to the document. Ranks are scrambled (a bijection of
    /// u64), so popular documents are spread over the hosts.
    pub fn url_of(&self, rank: u64) -> String {
        let id = mix(rank ^ mix(self.spec.seed));
        let host = id % self.hosts;
        let ext = match id >> 60 {
            0..=5 => "html",
            6..=10 => "jpg",
            11..=13 => "gif",
            14 => "js",
            _ => "css",
        };
        format!(
            "http://www{host}.site{}.example/d/{id:016x}.{ext}",
            host % 97
        )
    }

    /// The size of the document of popularity `rank`, the same every time:
    /// a lognormal body with a Pareto tail, cut at `max_size`.
    pub fn size_of(&self, rank: u64) -> u64 {
        let mut rng = StdRng::seed_from_u64(mix(rank ^ mix(!self.spec.seed)));
        let size = if rng.gen_bool(TAIL_SHARE) {
            Pareto::new(TAIL_SCALE, TAIL_SHAPE)
                .map(|d| d.sample(&mut rng))
                .unwrap_or(TAIL_SCALE)
        } else {
            LogNormal::new(SIZE_MEDIAN.ln(), SIZE_SIGMA)
                .map(|d| d.sample(&mut rng))
                .unwrap_or(SIZE_MEDIAN)
        };
        (size.round() as u64).clamp(1, self.spec.max_size)
    }

    fn client(&mut self) -> IpAddr {
        let range = self.spec.clients[self.rng.gen_range(0..self.spec.clients.len())];
        match range.network {
            IpAddr::V4(net) => {
                let host_bits = 32 - u32::from(range.prefix);
                let base = u32::from(net) & !low_mask32(host_bits);
                let host = self.rng.gen::<u32>() & low_mask32(host_bits);
                IpAddr::V4(Ipv4Addr::from(base | host))
            }
            IpAddr::V6(net) => {
                let host_bits = 128 - u32::from(range.prefix);
                let base = u128::from(net) & !low_mask128(host_bits);
                let host = self.rng.gen::<u128>() & low_mask128(host_bits);
                IpAddr::V6(Ipv6Addr::from(base | host))
            }
        }
    }
}

fn low_mask32(bits: u32) -> u32 {
    u32::MAX
        .checked_shr(32 - bits)
        .filter(|_| bits > 0)
        .unwrap_or(0)
}

fn low_mask128(bits: u32) -> u128 {
    u128::MAX
        .checked_shr(128 - bits)
        .filter(|_| bits > 0)
        .unwrap_or(0)
}

/// SplitMix64's finaliser: a bijection of u64 that scatters neighbours.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Iterator for Generator {
    type Item = GeneratedRequest;

    fn next(&mut self) -> Option<GeneratedRequest> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.time += self.arrivals.sample(&mut self.rng);
        let rank = (self.popularity.sample(&mut self.rng) as u64).clamp(1, self.spec.objects);
        let client = self.client();
        Some(GeneratedRequest {
            time: self.time,
            client,
            rank,
            url: self.url_of(rank),
            size: self.size_of(rank),
        })
    }
}

/// Writes `change` as a trace line of its own: `#change TIME URL`. Squid
/// log tools see a comment (or a malformed line) and skip it; `cuttle
/// simulate` reads it as the document's modification at TIME.
pub fn write_change(change: &GeneratedChange, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "#change {:.3} {}", change.time, change.url)
}

/// Writes `request` as the native access.log line a cache with nothing
/// cached would have logged for it (a miss fetched from the origin).
pub fn write_line(request: &GeneratedRequest, out: &mut impl Write) -> std::io::Result<()> {
    let host = request.url.split('/').nth(2).unwrap_or("-").to_string();
    let content_type = match request.url.rsplit('.').next() {
        Some("html") => "text/html",
        Some("jpg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("js") => "application/javascript",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    };
    // --start and --duration are the user's: a time past what a
    // SystemTime holds is an error, not a panic.
    let end = Duration::try_from_secs_f64(request.time)
        .ok()
        .and_then(|since| UNIX_EPOCH.checked_add(since))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("time stamp {} is out of range", request.time),
            )
        })?;
    let entry = Entry {
        end,
        // A plausible service time: a round trip plus transfer at ~1 MB/s.
        elapsed: Duration::from_millis(40 + request.size / 1000),
        client: Some(request.client),
        result: ResultCode::new(ResultTag::TcpMiss),
        status: 200,
        size: request.size,
        method: "GET".into(),
        url: request.url.clone(),
        user: None,
        hierarchy: Hierarchy::new(HierarchyCode::HierDirect, Some(host)),
        content_type: Some(content_type.into()),
    };
    let mut line = String::with_capacity(160);
    write_native(&entry, &FormatOptions::default(), &mut line);
    line.push('\n');
    out.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::parse_line;

    fn spec(seed: u64) -> TraceSpec {
        TraceSpec {
            objects: 1000,
            requests: 500,
            zipf: DEFAULT_ZIPF,
            clients: vec![
                ClientRange::parse("10.1.0.0/16").unwrap(),
                ClientRange::parse("10.2.3.4").unwrap(),
            ],
            seed,
            duration: 60.0,
            start: DEFAULT_START,
            max_size: 1 << 20,
            change_rate: None,
        }
    }

    #[test]
    fn a_seed_gives_the_same_trace_and_documents_keep_their_url_and_size() {
        let a: Vec<_> = Generator::new(spec(7)).unwrap().collect();
        let b: Vec<_> = Generator::new(spec(7)).unwrap().collect();
        let c: Vec<_> = Generator::new(spec(8)).unwrap().collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 500);
        let mut seen = std::collections::HashMap::new();
        for r in &a {
            let (url, size) = seen.entry(r.rank).or_insert((r.url.clone(), r.size));
            assert_eq!((url.as_str(), *size), (r.url.as_str(), r.size));
        }
        assert!(a.windows(2).all(|w| w[0].time <= w[1].time));
        assert!(a
            .iter()
            .all(|r| r.time >= DEFAULT_START && r.time < DEFAULT_START + 120.0));
        let range = ClientRange::parse("10.1.0.0/16").unwrap();
        let single: IpAddr = "10.2.3.4".parse().unwrap();
        assert!(a
            .iter()
            .all(|r| range.contains(r.client) || r.client == single));
        assert!(a.iter().any(|r| r.client == single));
    }

    #[test]
    fn lines_read_back_as_the_requests_written() {
        let generator = Generator::new(spec(1)).unwrap();
        for request in generator.take(50) {
            let mut out = Vec::new();
            write_line(&request, &mut out).unwrap();
            let line = String::from_utf8(out).unwrap();
            let read = parse_line(&line).unwrap();
            assert_eq!(read.url, request.url);
            assert_eq!(read.size, request.size);
            assert_eq!(read.client, request.client);
            assert!((read.time - request.time).abs() < 0.001, "{line}");
        }
    }

    #[test]
    fn changes_are_written_in_time_order_after_each_documents_last_modified() {
        let with = |rate: Option<f64>| {
            let mut s = spec(3);
            s.duration = 86_400.0;
            s.change_rate = rate;
            Generator::new(s).unwrap().lines().collect::<Vec<_>>()
        };
        let lines = with(Some(1.0));
        assert_eq!(lines, with(Some(1.0)), "a seed gives the same changes");
        let without = with(None);
        assert!(without.iter().all(|l| matches!(l, Line::Request(_))));
        assert_eq!(without.len(), 500);
        let mut seen = std::collections::HashSet::new();
        let mut last_time = 0.0;
        let mut later_changes = 0;
        for (i, line) in lines.iter().enumerate() {
            match line {
                Line::Request(r) => {
                    if seen.insert(r.url.clone()) {
                        // Its Last-Modified comes just before it.
                        let Line::Change(c) = &lines[i - 1] else {
                            panic!("no change before the first request of {}", r.url)
                        };
                        assert_eq!(c.url, r.url);
                        assert!(c.time <= r.time);
                    }
                    assert!(r.time >= last_time);
                    last_time = r.time;
                }
                Line::Change(c) if seen.contains(&c.url) => {
                    assert!(c.time >= last_time - 0.001, "{c:?} before {last_time}");
                    later_changes += 1;
                }
                Line::Change(_) => {}
            }
        }
        // A median document changes daily: over a day, hundreds of the
        // few hundred documents asked for change again.
        assert!(later_changes > 100, "{later_changes}");
        let mut out = Vec::new();
        let Line::Change(c) = &lines[0] else { panic!() };
        write_change(c, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let read = crate::sim::trace::parse_change(&text).unwrap().unwrap();
        assert_eq!(read.url, c.url);
        assert!((read.time - c.time).abs() < 0.001);
    }
}
