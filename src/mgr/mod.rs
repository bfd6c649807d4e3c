//! The cache manager: Squid's `mgr:` pages in Squid's own text format (so `squidclient`, the Prometheus squid exporter and log tools read them unchanged), Prometheus metrics and an HTML status page of the mesh, all built from the counters each component keeps.
//!
//! Layer 5 of DESIGN.md: it reads `config`, `stats`, `store`, `upstream`
//! and `peers`; the HTTP layer recognises manager requests
//! (`cache_object://HOST/NAME`, `/squid-internal-mgr/NAME`, `/metrics`),
//! checks `http_access` (Squid's `manager` ACL), and asks [`Manager::page`].
//!
//! - [`text`]: menu, info, counters, 5min, 60min, service_times,
//!   server_list, storedir, config, objects, vm_objects, utilization,
//!   active_requests, client_list, filedescriptors, ipcache, fqdncache,
//!   events, digest_stats, htcp_monitor (cuttle's HTCP MON).
//! - the actions shutdown, reconfigure, rotate (the daemon's signals sent
//!   to this process) and offline_toggle.
//! - [`metrics`]: the Prometheus text format.
//! - [`status`]: the HTML status page (peers, charts, store, hierarchy codes).
//!
//! Rates and medians (5min, 60min, the charts) come from [`Sample`]s of
//! every counter, taken every [`SAMPLE_PERIOD`] and kept for an hour.
//!
//! HTCP: the pages print Squid's HTCP lines from [`HtcpTotals`] (the
//! responder's and the querier's datagrams) and [`HtcpPeer`] (a peer's TST
//! replies).

pub mod metrics;
pub mod status;
pub mod text;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::config::Config;
use crate::peers::htcp_client::HtcpClientCounters;
use crate::peers::htcp_server::HtcpServerStats;
use crate::peers::icp_client::ClientCounters;
use crate::peers::icp_server::IcpServerStats;
use crate::peers::monitor::Publisher;
use crate::peers::table::{Peer, PeerTable};
use crate::stats::{Stats, Totals};
use crate::store::{Key, Store};
use crate::upstream;

/// How often every counter is sampled.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(10);
/// Samples kept: an hour's worth, plus the one an hour ago.
const HISTORY: usize = 361;

/// What outlives reloads: the process's start, the client-side counters,
/// the ICP responder's counters, and the samples.
#[derive(Debug)]
pub struct Manager {
    pub stats: Arc<Stats>,
    pub icp_server: Arc<IcpServerStats>,
    pub htcp_server: Arc<HtcpServerStats>,
    /// The discovery tree (`mgr:mesh`), filled when mesh_discovery runs.
    pub mesh: Arc<crate::peers::discovery::MeshView>,
    /// The HTCP MON subscriptions to this node.
    pub mon_publisher: Arc<Publisher>,
    pub start: SystemTime,
    history: Mutex<VecDeque<Sample>>,
}

impl Default for Manager {
    fn default() -> Self {
        Manager::new(Arc::default(), Arc::default())
    }
}

/// The live parts of the proxy in charge, borrowed for one page.
pub struct Sources<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub peers: &'a PeerTable,
    /// The ICP client's counters; `None` until it first asked a peer.
    pub icp_client: Option<&'a ClientCounters>,
    /// The HTCP responder's counters.
    pub htcp_server: &'a HtcpServerStats,
    /// The HTCP client's counters; `None` until it first sent a TST or CLR.
    pub htcp_client: Option<&'a HtcpClientCounters>,
    pub upstream: &'a upstream::Counters,
    /// The memory cache: objects, bytes held, bytes allowed.
    pub memory: (usize, u64, u64),
    /// Keys held in the memory cache; filled only for `vm_objects`.
    pub memory_keys: Vec<Key>,
    /// visible_hostname (or the system's).
    pub name: &'a str,
    /// The digest this cache serves (built on demand by `digest_stats`).
    pub store_digest: Option<&'a crate::peers::store_digest::StoreDigest>,
    /// Client connections open from an address now (`client_list`);
    /// `None` where no connection table is at hand (the sampler).
    pub connections: Option<&'a (dyn Fn(std::net::IpAddr) -> usize + Sync)>,
    /// Proxy sharing's log and counters (`share_log`, /metrics).
    pub share: Option<&'a crate::peers::share_log::Sharing>,
}

/// HTCP message totals (`mgr:info`'s "Number of HTCP messages ...").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HtcpTotals {
    pub pkts_recv: u64,
    pub pkts_sent: u64,
}

/// One HTCP peer's TST replies, Squid's two-bucket histogram in
/// `mgr:server_list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HtcpPeer {
    pub misses: u64,
    pub hits: u64,
}

/// HTCP datagrams in and out (Squid's `htcp.pkts_recv` / `pkts_sent`):
/// the responder's and the querier's together, as Squid counts one socket.
pub fn htcp_totals(sources: &Sources<'_>) -> HtcpTotals {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let server = sources.htcp_server;
    let mut totals = HtcpTotals {
        pkts_recv: load(&server.pkts_recv),
        pkts_sent: load(&server.pkts_sent),
    };
    if let Some(c) = sources.htcp_client {
        totals.pkts_sent += load(&c.tst_sent) + load(&c.clr_sent);
        totals.pkts_recv += load(&c.replies_matched)
            + load(&c.malformed)
            + load(&c.from_non_peer)
            + load(&c.unmatched)
            + load(&c.ignored);
    }
    totals
}

/// One peer's HTCP TST replies (hit / miss).
pub fn htcp_peer(peer: &Peer) -> HtcpPeer {
    let [misses, hits] = peer.state().htcp_replies;
    HtcpPeer { misses, hits }
}

/// Every counter the pages report, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: SystemTime,
    /// CPU time used by the process so far.
    pub cpu: Duration,
    pub page_faults: u64,
    pub client: Totals,
    pub client_bytes_in: u64,
    pub server_requests: u64,
    pub server_errors: u64,
    pub server_bytes_in: u64,
    pub server_bytes_out: u64,
    pub icp: IcpTotals,
    pub htcp: HtcpTotals,
    /// Entries committed to the store (`swap.outs`).
    pub swap_outs: u64,
    /// Entries read from the store (`swap.ins`).
    pub swap_ins: u64,
}

/// Squid's `icp.*` counters: both ends, responder and querier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IcpTotals {
    pub queries_sent: u64,
    pub replies_sent: u64,
    pub queries_recv: u64,
    pub replies_recv: u64,
    pub query_bytes_sent: u64,
    pub reply_bytes_sent: u64,
    pub query_bytes_recv: u64,
    pub reply_bytes_recv: u64,
    /// Datagrams received that were neither (malformed, stray replies).
    pub other_recv: u64,
    pub other_bytes_recv: u64,
}

impl IcpTotals {
    pub fn pkts_sent(&self) -> u64 {
        self.queries_sent + self.replies_sent
    }

    pub fn pkts_recv(&self) -> u64 {
        self.queries_recv + self.replies_recv + self.other_recv
    }

    pub fn bytes_sent(&self) -> u64 {
        self.query_bytes_sent + self.reply_bytes_sent
    }

    pub fn bytes_recv(&self) -> u64 {
        self.query_bytes_recv + self.reply_bytes_recv + self.other_bytes_recv
    }
}

/// What `/proc/self` says of the process (Linux; zeros elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    pub cpu: Duration,
    pub page_faults: u64,
    /// Peak resident set, KB.
    pub max_rss_kb: u64,
    pub open_fds: u64,
    pub largest_fd: u64,
    pub max_fds: u64,
}

impl Process {
    pub fn now() -> Process {
        // /proc/PID/stat: fields after the command's closing parenthesis;
        // utime and stime in USER_HZ (100 on Linux), majflt.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let rest = stat.rsplit(") ").next().unwrap_or("");
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |n: usize| fields.get(n).copied().unwrap_or(0);
        // After ")": state=0, ..., majflt=9, utime=11, stime=12.
        let ticks = field(11) + field(12);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let max_rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let fds: Vec<u64> = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or(0);
        Process {
            cpu: Duration::from_millis(ticks * 10),
            page_faults: field(9),
            max_rss_kb,
            open_fds: fds.len() as u64,
            largest_fd: fds.iter().copied().max().unwrap_or(0),
            max_fds,
        }
    }
}

impl Manager {
    pub fn new(icp_server: Arc<IcpServerStats>, htcp_server: Arc<HtcpServerStats>) -> Manager {
        Manager {
            stats: Arc::default(),
            icp_server,
            htcp_server,
            mesh: Arc::default(),
            mon_publisher: Arc::default(),
            start: SystemTime::now(),
            history: Mutex::new(VecDeque::new()),
        }
    }

    /// The same manager, showing `publisher`'s subscribers.
    pub fn with_mon_publisher(mut self, publisher: Arc<Publisher>) -> Manager {
        self.mon_publisher = publisher;
        self
    }

    /// Every counter now.
    pub fn sample(&self, s: &Sources<'_>) -> Sample {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let srv = &self.icp_server;
        let zero = ClientCounters::default();
        let cli = s.icp_client.unwrap_or(&zero);
        let icp = IcpTotals {
            queries_sent: load(&cli.queries_sent),
            replies_sent: load(&srv.replies_sent),
            queries_recv: load(&srv.queries_recv),
            replies_recv: load(&cli.replies_recv),
            query_bytes_sent: load(&cli.query_bytes_sent),
            reply_bytes_sent: load(&srv.reply_bytes_sent),
            query_bytes_recv: load(&srv.query_bytes_recv),
            reply_bytes_recv: load(&cli.reply_bytes_recv),
            other_recv: load(&srv.pkts_recv).saturating_sub(load(&srv.queries_recv)),
            other_bytes_recv: load(&srv.bytes_recv).saturating_sub(load(&srv.query_bytes_recv)),
        };
        let process = Process::now();
        let store = s.store.counters();
        Sample {
            at: SystemTime::now(),
            cpu: process.cpu,
            page_faults: process.page_faults,
            client: self.stats.totals(),
            client_bytes_in: self.stats.bytes_in(),
            server_requests: load(&s.upstream.requests),
            server_errors: load(&s.upstream.errors),
            server_bytes_in: load(&s.upstream.bytes_in),
            server_bytes_out: load(&s.upstream.bytes_out),
            icp,
            htcp: htcp_totals(s),
            swap_outs: load(&store.writes),
            swap_ins: load(&store.hits),
        }
    }

    /// Takes a sample into the history (every [`SAMPLE_PERIOD`]).
    pub fn record(&self, s: &Sources<'_>) {
        let sample = self.sample(s);
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The latest sample and the one `span` before it (the oldest when the
    /// history is shorter), as Squid's 5- and 60-minute averages compare
    /// its minute samples. `None` before the first sample.
    pub fn window(&self, span: Duration) -> Option<(Sample, Sample)> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let last = h.back()?.clone();
        let cutoff = last.at.checked_sub(span).unwrap_or(UNIX_EPOCH);
        let first = h
            .iter()
            .rev()
            .find(|s| s.at <= cutoff)
            .or_else(|| h.front())?
            .clone();
        Some((first, last))
    }

    /// The answer to a manager request.
    pub fn page(&self, req: &Request, s: &Sources<'_>) -> Page {
        let Some(action) = ACTIONS.iter().find(|a| a.name == req.action) else {
            return Page::Unknown;
        };
        if !allowed(s.config, action, req.password.as_deref()) {
            if req.password.is_some() {
                tracing::warn!(action = action.name, "cache manager: incorrect password");
            }
            return Page::NeedsPassword { realm: action.name };
        }
        let (content_type, body) = match action.name {
            "metrics" => (metrics::CONTENT_TYPE, metrics::render(self, s)),
            "shutdown" | "reconfigure" | "rotate" | "offline_toggle" => {
                ("text/plain;charset=utf-8", act(action.name, s.config))
            }
            "status" => ("text/html;charset=utf-8", status::render(self, s)),
            name => ("text/plain;charset=utf-8", text::render(name, self, s)),
        };
        Page::Ok { content_type, body }
    }
}

/// Does what an action page asks, as Squid: `shutdown`, `reconfigure`
/// and `rotate` are the daemon's SIGTERM, SIGHUP and SIGUSR1 sent to this
/// process (handled by the daemon once this answer is on its way);
/// `offline_toggle` flips offline_mode until the next reconfigure. The
/// text is Squid's.
fn act(name: &str, config: &Config) -> String {
    use rustix::process::{getpid, kill_process, Signal};
    let (signal, said) = match name {
        "shutdown" => (Signal::TERM, ""),
        "reconfigure" => (Signal::HUP, "Reconfiguring Squid Process ...."),
        "rotate" => (Signal::USR1, "Rotating Squid Process Logs ...."),
        _ => {
            crate::config::OFFLINE_TOGGLED.fetch_xor(true, Ordering::Relaxed);
            let state = if config.offline() { "ON" } else { "OFF" };
            tracing::info!("cache manager: offline_mode is now {state}");
            return format!("offline_mode is now {state}\n");
        }
    };
    tracing::info!(action = name, "cache manager: signalling this process");
    if let Err(e) = kill_process(getpid(), signal) {
        tracing::error!(
            action = name,
            "cache manager: cannot signal this process: {e}"
        );
    }
    said.to_string()
}

/// What a manager request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The action (page) name; `menu` for an empty one or `index`.
    pub action: String,
    /// From `NAME@PASSWORD` in the URL, else from `Authorization: Basic`.
    pub password: Option<String>,
}

impl Request {
    /// `path` is what follows `cache_object://HOST/` or
    /// `/squid-internal-mgr/` (`NAME[@PASSWORD][?params]`);
    /// `authorization` the request's Authorization field, if any.
    pub fn parse(path: &str, authorization: Option<&str>) -> Request {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let (name, password) = match path.split_once('@') {
            Some((n, p)) => (n, Some(p.to_string())),
            None => (path, None),
        };
        let action = match name {
            "" | "index" => "menu".to_string(),
            n => n.to_string(),
        };
        let password = password.or_else(|| authorization.and_then(basic_password));
        Request { action, password }
    }
}

/// The password of `Basic base64(user:password)`.
fn basic_password(field: &str) -> Option<String> {
    let (scheme, value) = field.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// A manager page or refusal, for the HTTP layer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Ok {
        content_type: &'static str,
        body: String,
    },
    /// No such action: Squid's 404 ERR_INVALID_URL.
    Unknown,
    /// A password is needed (or was wrong): Squid's 401
    /// ERR_CACHE_MGR_ACCESS_DENIED with `WWW-Authenticate: Basic realm="ACTION"`.
    NeedsPassword { realm: &'static str },
}

/// One page of the menu.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    pub name: &'static str,
    pub description: &'static str,
    /// Refused without a password given by `cachemgr_passwd` (Squid marks
    /// these with `*` in squid.conf's documentation).
    pub needs_password: bool,
}

/// The pages cuttle serves, in menu order (Squid's order for the ones it
/// shares; `metrics`, `status` and `hit_metering` are cuttle's; the
/// proxy writes `hit_metering`'s body).
pub const ACTIONS: &[Action] = &[
    Action {
        name: "menu",
        description: "Cache Manager Menu",
        needs_password: false,
    },
    Action {
        name: "offline_toggle",
        description: "Toggle offline_mode setting",
        needs_password: true,
    },
    Action {
        name: "shutdown",
        description: "Shut Down the Squid Process",
        needs_password: true,
    },
    Action {
        name: "reconfigure",
        description: "Reconfigure Squid",
        needs_password: true,
    },
    Action {
        name: "rotate",
        description: "Rotate Squid Logs",
        needs_password: true,
    },
    Action {
        name: "config",
        description: "Current Squid Configuration",
        needs_password: true,
    },
    Action {
        name: "client_list",
        description: "Cache Client List",
        needs_password: false,
    },
    Action {
        name: "ipcache",
        description: "IP Cache Stats and Contents",
        needs_password: false,
    },
    Action {
        name: "fqdncache",
        description: "FQDN Cache Stats and Contents",
        needs_password: false,
    },
    Action {
        name: "info",
        description: "General Runtime Information",
        needs_password: false,
    },
    Action {
        name: "service_times",
        description: "Service Times (Percentiles)",
        needs_password: false,
    },
    Action {
        name: "filedescriptors",
        description: "Process Filedescriptor Allocation",
        needs_password: false,
    },
    Action {
        name: "objects",
        description: "All Cache Objects",
        needs_password: false,
    },
    Action {
        name: "vm_objects",
        description: "In-Memory and In-Transit Objects",
        needs_password: false,
    },
    Action {
        name: "counters",
        description: "Traffic and Resource Counters",
        needs_password: false,
    },
    Action {
        name: "digest_stats",
        description: "Cache Digest and ICP blob",
        needs_password: false,
    },
    Action {
        name: "5min",
        description: "5 Minute Average of Counters",
        needs_password: false,
    },
    Action {
        name: "60min",
        description: "60 Minute Average of Counters",
        needs_password: false,
    },
    Action {
        name: "utilization",
        description: "Cache Utilization",
        needs_password: false,
    },
    Action {
        name: "active_requests",
        description: "Client-side Active Requests",
        needs_password: false,
    },
    Action {
        name: "storedir",
        description: "Store Directory Stats",
        needs_password: false,
    },
    Action {
        name: "events",
        description: "Event Queue",
        needs_password: false,
    },
    Action {
        name: "server_list",
        description: "Peer Cache Statistics",
        needs_password: false,
    },
    Action {
        name: "mesh",
        description: "Mesh discovery tree (cuttle)",
        needs_password: false,
    },
    Action {
        name: "htcp_monitor",
        description: "HTCP MON subscriptions (cuttle)",
        needs_password: false,
    },
    Action {
        name: "metrics",
        description: "Prometheus metrics",
        needs_password: false,
    },
    Action {
        name: "status",
        description: "Status page of the mesh (HTML)",
        needs_password: false,
    },
    Action {
        name: "hit_metering",
        description: "RFC 2227 hit metering totals",
        needs_password: false,
    },
    Action {
        name: "share_log",
        description: "Proxy Sharing Log and Counters",
        needs_password: false,
    },
];

/// The password `cachemgr_passwd` sets for `action`: the first line that
/// names it or `all`.
fn password_for<'c>(config: &'c Config, action: &str) -> Option<&'c str> {
    config
        .cachemgr_passwd
        .iter()
        .find(|line| {
            line.actions
                .iter()
                .any(|a| a == action || a.eq_ignore_ascii_case("all"))
        })
        .map(|line| line.password.as_str())
}

/// Squid's rules (squid.conf, cachemgr_passwd): no password set means
/// allowed unless the action needs one; `disable` refuses; `none` allows;
/// any other word must be given.
fn allowed(config: &Config, action: &Action, given: Option<&str>) -> bool {
    match password_for(config, action.name) {
        None => !action.needs_password,
        Some("disable") => false,
        Some("none") => true,
        Some(set) => given == Some(set),
    }
}

/// How the menu marks an action: `public`, `protected` (needs the
/// password), `hidden` (needs one and none is set) or `disabled`.
pub fn protection(config: &Config, action: &Action) -> &'static str {
    match password_for(config, action.name) {
        None if action.needs_password => "hidden",
        None | Some("none") => "public",
        Some("disable") => "disabled",
        Some(_) => "protected",
    }
}

/// Squid's percentage: rounded, 0 when the whole is 0.
pub fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        0
    } else {
        (part * 200 + whole) / (whole * 2)
    }
}

/// Seconds and microseconds since the epoch, as Squid prints sample times
/// (`%d.%d`: the microseconds are not zero-padded).
pub fn squid_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{}.{}", d.as_secs(), d.subsec_micros())
}

/// An RFC 1123 date.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str_sandboxed;

    fn config(text: &str) -> Config {
        let l = load_str_sandboxed(text, "test");
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.config
    }

    fn action(name: &str) -> &'static Action {
        ACTIONS.iter().find(|a| a.name == name).expect("action")
    }

    #[test]
    fn requests_carry_action_and_password() {
        assert_eq!(
            Request::parse("config@s3cret", None),
            Request {
                action: "config".into(),
                password: Some("s3cret".into())
            }
        );
        assert_eq!(Request::parse("", None).action, "menu");
        assert_eq!(Request::parse("info?x=1", None).action, "info");
        // squidclient -U ops -W pw2: Basic b3BzOnB3Mg==
        let r = Request::parse("info", Some("Basic b3BzOnB3Mg=="));
        assert_eq!(r.password.as_deref(), Some("pw2"));
        assert_eq!(Request::parse("info", Some("Bearer x")).password, None);
    }

    #[test]
    fn passwords_follow_cachemgr_passwd() {
        let none = config("");
        assert!(!allowed(&none, action("config"), None));
        assert!(allowed(&none, action("info"), None));
        assert_eq!(protection(&none, action("config")), "hidden");
        let c = config("cachemgr_passwd s3cret config\ncachemgr_passwd disable objects\ncachemgr_passwd none all\n");
        assert!(!allowed(&c, action("config"), None));
        assert!(!allowed(&c, action("config"), Some("wrong")));
        assert!(allowed(&c, action("config"), Some("s3cret")));
        assert!(!allowed(&c, action("objects"), Some("s3cret")));
        assert!(allowed(&c, action("info"), None));
        assert_eq!(protection(&c, action("config")), "protected");
        assert_eq!(protection(&c, action("objects")), "disabled");
        assert_eq!(protection(&c, action("info")), "public");
        let all = config("cachemgr_passwd top all\n");
        assert!(!allowed(&all, action("info"), None));
        assert!(allowed(&all, action("info"), Some("top")));
    }

    #[test]
    fn percent_rounds_like_squid() {
        assert_eq!(percent(1, 5), 20);
        assert_eq!(percent(4, 5), 80);
        assert_eq!(percent(2, 3), 67);
        assert_eq!(percent(1, 0), 0);
    }

    #[test]
    fn sample_times_are_not_zero_padded() {
        let t = UNIX_EPOCH + Duration::new(1_795_371_626, 28_601_000);
        assert_eq!(squid_time(t), "1795371626.28601");
    }
}
