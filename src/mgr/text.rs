//! Squid's text pages, line for line in Squid 5.7's layout (see fixtures/squid-mgr/), so that tools which parse Squid's pages parse cuttle's: menu, info, counters, 5min, 60min, service_times, server_list, storedir, config, objects, vm_objects, utilization, active_requests, client_list, filedescriptors, ipcache, fqdncache and events.
//!
//! Where cuttle has no such thing (a select loop, memory pools, FTP, DNS
//! timing, a disk-I/O layer) the line is kept with 0, so parsers find every
//! label they expect.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cuttle_protocol::icp::Opcode;

use super::{
    htcp_peer, htcp_totals, http_date, percent, protection, squid_time, Manager, Process, Sample,
    Sources, ACTIONS,
};
use crate::config::{CachePeer, ConnectionAuth, PeerType};
use crate::peers::table::{Peer, PeerTable};
use crate::stats::Histogram;
use crate::store::Listed;

const FIVE_MIN: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);

/// The page `name` (one of [`ACTIONS`] other than metrics and status).
pub fn render(name: &str, m: &Manager, s: &Sources<'_>) -> String {
    match name {
        "menu" => menu(s),
        "info" => info(m, s),
        "counters" => counters(m, s),
        "5min" => averages(m, s, FIVE_MIN),
        "60min" => averages(m, s, HOUR),
        "service_times" => service_times(m, s),
        "server_list" => server_list(s),
        "storedir" => storedir(s),
        "config" => config(s),
        "objects" => objects(s, false),
        "vm_objects" => objects(s, true),
        "utilization" => utilization(m, s),
        "active_requests" => active_requests(m),
        "client_list" => client_list(m, s),
        "filedescriptors" => filedescriptors(s),
        "ipcache" => ipcache(),
        "fqdncache" => fqdncache(),
        "events" => events(m),
        _ => String::new(),
    }
}

fn kb(bytes: u64) -> u64 {
    bytes >> 10
}

fn menu(s: &Sources<'_>) -> String {
    let mut out = String::new();
    for a in ACTIONS {
        let _ = writeln!(
            out,
            " {:<22}\t{:<32}\t{}",
            a.name,
            a.description,
            protection(s.config, a)
        );
    }
    out
}

/// The latest sample and the one `span` before it; both "now" before the
/// first sample.
fn window(m: &Manager, s: &Sources<'_>, span: Duration) -> (Sample, Sample) {
    m.window(span).unwrap_or_else(|| {
        let now = m.sample(s);
        (now.clone(), now)
    })
}

/// Percentage of `part` in `whole`, as a float (0 when the whole is 0).
fn ratio(part: f64, whole: f64) -> f64 {
    if whole == 0.0 {
        0.0
    } else {
        100.0 * part / whole
    }
}

/// Hit ratios over a window: (requests, bytes, memory of hits, disk of hits).
fn hit_ratios(old: &Sample, new: &Sample) -> (f64, f64, f64, f64) {
    use crate::access_log::ResultTag;
    let d = |f: fn(&Sample) -> u64| f(new).saturating_sub(f(old)) as f64;
    let hits = d(|s| s.client.hits);
    let out = d(|s| s.client.bytes_out);
    // Squid's byte hit ratio: what did not come from servers.
    let server_in = d(|s| s.server_bytes_in);
    let mem = d(|s| s.client.result(ResultTag::TcpMemHit));
    let disk = d(|s| s.client.result(ResultTag::TcpHit));
    (
        ratio(hits, d(|s| s.client.requests)),
        ratio(out - server_in, out),
        ratio(mem, hits),
        ratio(disk, hits),
    )
}

/// Store use: (bytes used, bytes in all, entries).
fn store_use(s: &Sources<'_>) -> (u64, u64, u64) {
    s.store.usage().iter().fold((0, 0, 0), |(u, t, e), d| {
        let slot = u64::from(d.slot_size);
        (
            u + u64::from(d.slots - d.free_slots) * slot,
            t + u64::from(d.slots) * slot,
            e + d.entries as u64,
        )
    })
}

fn seconds_since(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

fn median(new: &Histogram, old: &Histogram) -> f64 {
    new.since(old).percentile(50.0)
}

fn info(m: &Manager, s: &Sources<'_>) -> String {
    let now = SystemTime::now();
    let cur = m.sample(s);
    let (o5, n5) = window(m, s, FIVE_MIN);
    let (o60, n60) = window(m, s, HOUR);
    let process = Process::now();
    let up = seconds_since(m.start, now);
    let minutes = (up / 60.0).max(f64::MIN_POSITIVE);
    let (used, total, entries) = store_use(s);
    let (mem_objects, mem_bytes, mem_limit) = s.memory;
    let htcp = htcp_totals(s);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Squid Object Cache: Version cuttle/{}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(o, "Build Info: cuttle (Rust)");
    let _ = writeln!(o, "Service Name: cuttle");
    let _ = writeln!(o, "Start Time:\t{}", http_date(m.start));
    let _ = writeln!(o, "Current Time:\t{}", http_date(now));
    let _ = writeln!(o, "Connection information for squid:");
    let _ = writeln!(
        o,
        "\tNumber of clients accessing cache:\t{}",
        m.stats.clients()
    );
    let _ = writeln!(
        o,
        "\tNumber of HTTP requests received:\t{}",
        cur.client.requests
    );
    let _ = writeln!(
        o,
        "\tNumber of ICP messages received:\t{}",
        cur.icp.pkts_recv()
    );
    let _ = writeln!(o, "\tNumber of ICP messages sent:\t{}", cur.icp.pkts_sent());
    let _ = writeln!(o, "\tNumber of queued ICP replies:\t0");
    let _ = writeln!(o, "\tNumber of HTCP messages received:\t{}", htcp.pkts_recv);
    let _ = writeln!(o, "\tNumber of HTCP messages sent:\t{}", htcp.pkts_sent);
    let _ = writeln!(o, "\tRequest failure ratio:\t{:5.2}", 0.0);
    let _ = writeln!(
        o,
        "\tAverage HTTP requests per minute since start:\t{:.1}",
        cur.client.requests as f64 / minutes
    );
    let _ = writeln!(
        o,
        "\tAverage ICP messages per minute since start:\t{:.1}",
        (cur.icp.pkts_sent() + cur.icp.pkts_recv()) as f64 / minutes
    );
    let _ = writeln!(o, "\tSelect loop called: 0 times, 0.000 ms avg");
    let _ = writeln!(o, "Cache information for squid:");
    let (r5, b5, m5, d5) = hit_ratios(&o5, &n5);
    let (r60, b60, m60, d60) = hit_ratios(&o60, &n60);
    for (label, a, b) in [
        ("Hits as % of all requests", r5, r60),
        ("Hits as % of bytes sent", b5, b60),
        ("Memory hits as % of hit requests", m5, m60),
        ("Disk hits as % of hit requests", d5, d60),
    ] {
        let _ = writeln!(o, "\t{label}:\t5min: {a:3.1}%, 60min: {b:3.1}%");
    }
    let _ = writeln!(o, "\tStorage Swap size:\t{} KB", kb(used));
    let swap_used = ratio(used as f64, total as f64);
    let _ = writeln!(
        o,
        "\tStorage Swap capacity:\t{:4.1}% used, {:4.1}% free",
        swap_used,
        100.0 - swap_used
    );
    let _ = writeln!(o, "\tStorage Mem size:\t{} KB", kb(mem_bytes));
    let mem_used = ratio(mem_bytes as f64, mem_limit as f64);
    let _ = writeln!(
        o,
        "\tStorage Mem capacity:\t{:4.1}% used, {:4.1}% free",
        mem_used,
        100.0 - mem_used
    );
    // Squid divides the objects' bytes by their count; `used` counts
    // whole slots, so it would say a slot's size for every small object.
    let object_bytes: u64 = s.store.usage().iter().map(|d| d.bytes).sum();
    let mean = if entries == 0 {
        0.0
    } else {
        object_bytes as f64 / 1024.0 / entries as f64
    };
    let _ = writeln!(o, "\tMean Object Size:\t{mean:.2} KB");
    let _ = writeln!(o, "\tRequests given to unlinkd:\t0");
    let _ = writeln!(o, "Median Service Times (seconds)  5 min    60 min:");
    let zero = Histogram::default();
    for (label, pick) in service_classes() {
        let a = pick(&n5).map_or(0.0, |h| median(h, pick(&o5).unwrap_or(&zero)));
        let b = pick(&n60).map_or(0.0, |h| median(h, pick(&o60).unwrap_or(&zero)));
        let _ = writeln!(o, "\t{label:<21} {a:8.5} {b:8.5}");
    }
    let _ = writeln!(o, "Resource usage for squid:");
    let _ = writeln!(o, "\tUP Time:\t{up:.3} seconds");
    let cpu = process.cpu.as_secs_f64();
    let _ = writeln!(o, "\tCPU Time:\t{cpu:.3} seconds");
    let _ = writeln!(o, "\tCPU Usage:\t{:.2}%", ratio(cpu, up));
    for (label, (old, new)) in [("5 minute", (&o5, &n5)), ("60 minute", (&o60, &n60))] {
        let _ = writeln!(
            o,
            "\tCPU Usage, {label} avg:\t{:.2}%",
            ratio(
                new.cpu.saturating_sub(old.cpu).as_secs_f64(),
                seconds_since(old.at, new.at)
            )
        );
    }
    let _ = writeln!(o, "\tMaximum Resident Size: {} KB", process.max_rss_kb);
    let _ = writeln!(
        o,
        "\tPage faults with physical i/o: {}",
        process.page_faults
    );
    let _ = writeln!(o, "Memory accounted for:");
    let _ = writeln!(o, "\t{:<20}{:>9} KB", "Total accounted:", 0);
    let _ = writeln!(o, "\t{:<20}{:>9}", "memPoolAlloc calls:", 0);
    let _ = writeln!(o, "\t{:<20}{:>9}", "memPoolFree calls:", 0);
    let _ = writeln!(o, "File descriptor usage for squid:");
    let free = process.max_fds.saturating_sub(process.open_fds);
    for (label, value) in [
        ("Maximum number of file descriptors:", process.max_fds),
        ("Largest file desc currently in use:", process.largest_fd),
        ("Number of file desc currently in use:", process.open_fds),
        ("Files queued for open:", 0),
        ("Available number of file descriptors:", free),
        ("Reserved number of file descriptors:", 0),
        (
            "Store Disk files open:",
            // A memory store (no cache_dir) has no file.
            if s.store.is_memory() {
                0
            } else {
                s.store.usage().len() as u64
            },
        ),
    ] {
        let _ = writeln!(o, "\t{label:<38}{value:>4}");
    }
    let _ = writeln!(o, "Internal Data Structures:");
    let _ = writeln!(o, "\t{:>6} StoreEntries", entries);
    let _ = writeln!(o, "\t{:>6} StoreEntries with MemObjects", mem_objects);
    let _ = writeln!(o, "\t{:>6} Hot Object Cache Items", mem_objects);
    let _ = writeln!(o, "\t{:>6} on-disk objects", entries);
    o
}

type Pick = fn(&Sample) -> Option<&Histogram>;

/// Squid's service-time classes, with their labels; DNS lookups and ICP
/// queries are not timed by cuttle (`None`: printed as 0).
fn service_classes() -> [(&'static str, Pick); 7] {
    [
        ("HTTP Requests (All):", |s| Some(&s.client.service.all)),
        ("Cache Misses:", |s| Some(&s.client.service.miss)),
        ("Cache Hits:", |s| Some(&s.client.service.hit)),
        ("Near Hits:", |s| Some(&s.client.service.near_hit)),
        ("Not-Modified Replies:", |s| {
            Some(&s.client.service.not_modified)
        }),
        ("DNS Lookups:", |_| None),
        ("ICP Queries:", |_| None),
    ]
}

fn counters(m: &Manager, s: &Sources<'_>) -> String {
    let c = m.sample(s);
    let sampled = m.history().last().map_or(m.start, |h| h.at);
    let t = &c.client;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "sample_time = {} ({})",
        squid_time(sampled),
        http_date(sampled)
    );
    let mut line = |name: &str, v: u64| {
        let _ = writeln!(o, "{name} = {v}");
    };
    line("client_http.requests", t.requests);
    line("client_http.hits", t.hits);
    line("client_http.errors", t.errors);
    line("client_http.kbytes_in", kb(c.client_bytes_in));
    line("client_http.kbytes_out", kb(t.bytes_out));
    line("client_http.hit_kbytes_out", kb(t.hit_bytes_out));
    for proto in ["all", "http", "ftp", "other"] {
        let (r, e, i, out) = if matches!(proto, "all" | "http") {
            (
                c.server_requests,
                c.server_errors,
                kb(c.server_bytes_in),
                kb(c.server_bytes_out),
            )
        } else {
            (0, 0, 0, 0)
        };
        line(&format!("server.{proto}.requests"), r);
        line(&format!("server.{proto}.errors"), e);
        line(&format!("server.{proto}.kbytes_in"), i);
        line(&format!("server.{proto}.kbytes_out"), out);
    }
    let i = &c.icp;
    line("icp.pkts_sent", i.pkts_sent());
    line("icp.pkts_recv", i.pkts_recv());
    line("icp.queries_sent", i.queries_sent);
    line("icp.replies_sent", i.replies_sent);
    line("icp.queries_recv", i.queries_recv);
    line("icp.replies_recv", i.replies_recv);
    line("icp.query_timeouts", t.icp_query_timeouts);
    line("icp.replies_queued", 0);
    line("icp.kbytes_sent", kb(i.bytes_sent()));
    line("icp.kbytes_recv", kb(i.bytes_recv()));
    line("icp.q_kbytes_sent", kb(i.query_bytes_sent));
    line("icp.r_kbytes_sent", kb(i.reply_bytes_sent));
    line("icp.q_kbytes_recv", kb(i.query_bytes_recv));
    line("icp.r_kbytes_recv", kb(i.reply_bytes_recv));
    line("icp.times_used", t.icp_times_used);
    line("cd.times_used", t.cd_times_used);
    for name in [
        "cd.msgs_sent",
        "cd.msgs_recv",
        "cd.memory",
        "cd.local_memory",
        "cd.kbytes_sent",
        "cd.kbytes_recv",
        "unlink.requests",
    ] {
        line(name, 0);
    }
    line("page_faults", c.page_faults);
    line("select_loops", 0);
    let _ = writeln!(o, "cpu_time = {:.6}", c.cpu.as_secs_f64());
    let _ = writeln!(
        o,
        "wall_time = {:.6}",
        seconds_since(sampled, SystemTime::now())
    );
    let _ = writeln!(o, "swap.outs = {}", c.swap_outs);
    let _ = writeln!(o, "swap.ins = {}", c.swap_ins);
    let _ = writeln!(o, "swap.files_cleaned = 0");
    let _ = writeln!(o, "aborted_requests = {}", t.aborted);
    o
}

/// `5min` / `60min`: every counter per second between two samples.
fn averages(m: &Manager, s: &Sources<'_>, span: Duration) -> String {
    let (old, new) = window(m, s, span);
    let dt = seconds_since(old.at, new.at);
    let rate = |d: u64| if dt > 0.0 { d as f64 / dt } else { 0.0 };
    let diff = |f: &dyn Fn(&Sample) -> u64| f(&new).saturating_sub(f(&old));
    let mut o = String::new();
    let _ = writeln!(
        o,
        "sample_start_time = {} ({})",
        squid_time(old.at),
        http_date(old.at)
    );
    let _ = writeln!(
        o,
        "sample_end_time = {} ({})",
        squid_time(new.at),
        http_date(new.at)
    );
    let mut per_sec = |name: &str, d: u64| {
        let _ = writeln!(o, "{name} = {:.6}/sec", rate(d));
    };
    per_sec("client_http.requests", diff(&|s| s.client.requests));
    per_sec("client_http.hits", diff(&|s| s.client.hits));
    per_sec("client_http.errors", diff(&|s| s.client.errors));
    per_sec("client_http.kbytes_in", kb(diff(&|s| s.client_bytes_in)));
    per_sec("client_http.kbytes_out", kb(diff(&|s| s.client.bytes_out)));
    let svc = &new.client.service;
    let svc_old = &old.client.service;
    for (name, n, p) in [
        ("client_http.all_median_svc_time", &svc.all, &svc_old.all),
        ("client_http.miss_median_svc_time", &svc.miss, &svc_old.miss),
        (
            "client_http.nm_median_svc_time",
            &svc.not_modified,
            &svc_old.not_modified,
        ),
        (
            "client_http.nh_median_svc_time",
            &svc.near_hit,
            &svc_old.near_hit,
        ),
        ("client_http.hit_median_svc_time", &svc.hit, &svc_old.hit),
    ] {
        let _ = writeln!(o, "{name} = {:.6} seconds", median(n, p));
    }
    let mut per_sec = |name: &str, d: u64| {
        let _ = writeln!(o, "{name} = {:.6}/sec", rate(d));
    };
    for proto in ["all", "http", "ftp", "other"] {
        let real = matches!(proto, "all" | "http");
        let pick = |d: u64| if real { d } else { 0 };
        per_sec(
            &format!("server.{proto}.requests"),
            pick(diff(&|s| s.server_requests)),
        );
        per_sec(
            &format!("server.{proto}.errors"),
            pick(diff(&|s| s.server_errors)),
        );
        per_sec(
            &format!("server.{proto}.kbytes_in"),
            pick(kb(diff(&|s| s.server_bytes_in))),
        );
        per_sec(
            &format!("server.{proto}.kbytes_out"),
            pick(kb(diff(&|s| s.server_bytes_out))),
        );
    }
    per_sec("icp.pkts_sent", diff(&|s| s.icp.pkts_sent()));
    per_sec("icp.pkts_recv", diff(&|s| s.icp.pkts_recv()));
    per_sec("icp.queries_sent", diff(&|s| s.icp.queries_sent));
    per_sec("icp.replies_sent", diff(&|s| s.icp.replies_sent));
    per_sec("icp.queries_recv", diff(&|s| s.icp.queries_recv));
    per_sec("icp.replies_recv", diff(&|s| s.icp.replies_recv));
    per_sec("icp.replies_queued", 0);
    per_sec("icp.query_timeouts", diff(&|s| s.client.icp_query_timeouts));
    per_sec("icp.kbytes_sent", kb(diff(&|s| s.icp.bytes_sent())));
    per_sec("icp.kbytes_recv", kb(diff(&|s| s.icp.bytes_recv())));
    per_sec("icp.q_kbytes_sent", kb(diff(&|s| s.icp.query_bytes_sent)));
    per_sec("icp.r_kbytes_sent", kb(diff(&|s| s.icp.reply_bytes_sent)));
    per_sec("icp.q_kbytes_recv", kb(diff(&|s| s.icp.query_bytes_recv)));
    per_sec("icp.r_kbytes_recv", kb(diff(&|s| s.icp.reply_bytes_recv)));
    for name in [
        "icp.query_median_svc_time",
        "icp.reply_median_svc_time",
        "dns.median_svc_time",
    ] {
        let _ = writeln!(o, "{name} = {:.6} seconds", 0.0);
    }
    let mut per_sec = |name: &str, d: u64| {
        let _ = writeln!(o, "{name} = {:.6}/sec", rate(d));
    };
    per_sec("unlink.requests", 0);
    per_sec("page_faults", diff(&|s| s.page_faults));
    per_sec("select_loops", 0);
    per_sec("select_fds", 0);
    let _ = writeln!(o, "average_select_fd_period = {:.6}/fd", 0.0);
    let _ = writeln!(o, "median_select_fds = {:.6}", 0.0);
    let mut per_sec = |name: &str, d: u64| {
        let _ = writeln!(o, "{name} = {:.6}/sec", rate(d));
    };
    per_sec("swap.outs", diff(&|s| s.swap_outs));
    per_sec("swap.ins", diff(&|s| s.swap_ins));
    per_sec("swap.files_cleaned", 0);
    per_sec("aborted_requests", diff(&|s| s.client.aborted));
    for name in [
        "syscalls.disk.opens",
        "syscalls.disk.closes",
        "syscalls.disk.reads",
        "syscalls.disk.writes",
        "syscalls.disk.seeks",
        "syscalls.disk.unlinks",
        "syscalls.sock.accepts",
        "syscalls.sock.sockets",
        "syscalls.sock.connects",
        "syscalls.sock.binds",
        "syscalls.sock.closes",
        "syscalls.sock.reads",
        "syscalls.sock.writes",
        "syscalls.sock.recvfroms",
        "syscalls.sock.sendtos",
    ] {
        per_sec(name, 0);
    }
    let cpu = new.cpu.saturating_sub(old.cpu).as_secs_f64();
    let _ = writeln!(o, "cpu_time = {cpu:.6} seconds");
    let _ = writeln!(o, "wall_time = {dt:.6} seconds");
    let _ = writeln!(o, "cpu_usage = {:.6}%", ratio(cpu, dt));
    o
}

fn service_times(m: &Manager, s: &Sources<'_>) -> String {
    let (o5, n5) = window(m, s, FIVE_MIN);
    let (o60, n60) = window(m, s, HOUR);
    let zero = Histogram::default();
    let mut o = String::from("Service Time Percentiles            5 min    60 min:\n");
    for (label, pick) in service_classes() {
        let h5 = pick(&n5).map(|h| h.since(pick(&o5).unwrap_or(&zero)));
        let h60 = pick(&n60).map(|h| h.since(pick(&o60).unwrap_or(&zero)));
        for p in (5..=95).step_by(5) {
            let a = h5.as_ref().map_or(0.0, |h| h.percentile(f64::from(p)));
            let b = h60.as_ref().map_or(0.0, |h| h.percentile(f64::from(p)));
            let _ = writeln!(o, "\t{label:<21}{p:>3}%  {a:8.5} {b:8.5}");
        }
    }
    o
}

/// Squid's name for a peer's type in `server_list`.
fn type_name(t: PeerType) -> &'static str {
    match t {
        PeerType::Parent => "Parent",
        PeerType::Sibling => "Sibling",
        PeerType::Multicast => "Multicast",
    }
}

/// The `Flags` line: the peer's options as squid.conf spells them.
pub fn flags(p: &CachePeer) -> Vec<String> {
    let mut f: Vec<String> = Vec::new();
    let mut on = |set: bool, name: &str| {
        if set {
            f.push(name.to_string());
        }
    };
    on(p.proxy_only, "proxy-only");
    on(p.no_query, "no-query");
    on(p.background_ping, "background-ping");
    on(p.no_digest, "no-digest");
    on(p.default_parent, "default");
    on(p.round_robin, "round-robin");
    on(p.carp, "carp");
    on(p.userhash, "userhash");
    on(p.sourcehash, "sourcehash");
    on(p.weighted_round_robin, "weighted-round-robin");
    on(p.multicast_responder, "multicast-responder");
    on(p.multicast_siblings, "multicast-siblings");
    on(p.closest_only, "closest-only");
    on(p.htcp.is_some(), "htcp");
    on(p.no_netdb_exchange, "no-netdb-exchange");
    on(p.no_delay, "no-delay");
    on(p.allow_miss, "allow-miss");
    on(p.originserver, "originserver");
    if p.weight != 1 {
        f.push(format!("weight={}", p.weight));
    }
    if let Some(max) = p.max_conn {
        f.push(format!("max-conn={max}"));
    }
    if let Some(t) = p.connect_timeout {
        f.push(format!("connect-timeout={}", t.as_secs()));
    }
    if p.connect_fail_limit != 10 {
        f.push(format!("connect-fail-limit={}", p.connect_fail_limit));
    }
    if let Some(d) = &p.forceddomain {
        f.push(format!("forceddomain={d}"));
    }
    f.push(
        match p.connection_auth {
            ConnectionAuth::On => "connection-auth=on",
            ConnectionAuth::Off => "connection-auth=off",
            ConnectionAuth::Auto => "connection-auth=auto",
        }
        .to_string(),
    );
    f.push(if p.tls { "tls" } else { "tls-disable" }.to_string());
    f
}

/// The peer's addresses (its ICP address, else its host if an address).
pub fn addresses(peer: &Peer) -> Vec<String> {
    match peer.icp_addr {
        Some(a) => vec![a.ip().to_string()],
        None => peer
            .config
            .host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map(|ip| vec![ip.to_string()])
            .unwrap_or_default(),
    }
}

/// Seconds between an instant and now; an instant never set is shown as
/// Squid shows a time it never set: seconds since the epoch.
fn ago(t: Option<Instant>) -> u64 {
    match t {
        Some(t) => t.elapsed().as_secs(),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

fn server_list(s: &Sources<'_>) -> String {
    server_list_of(s.peers)
}

/// `mgr:server_list` for a peer table.
pub fn server_list_of(table: &PeerTable) -> String {
    let now = Instant::now();
    let mut o = String::new();
    for (id, p) in table.peers.iter().enumerate() {
        let c = &p.config;
        let st = p.state().clone();
        let _ = writeln!(o, "\n{:<11}: {}", type_name(c.peer_type), c.name);
        let _ = writeln!(o, "Host       : {}/{}/{}", c.host, c.http_port, c.icp_port);
        let _ = writeln!(o, "Flags      : {}", flags(c).join(" "));
        for (i, a) in addresses(p).iter().enumerate() {
            let _ = writeln!(o, "Address[{i}] : {a}");
        }
        let up = if table.is_up(id, now) { "Up" } else { "Down" };
        let _ = writeln!(o, "Status     : {up}");
        let _ = writeln!(o, "FETCHES    : {}", st.fetches);
        let _ = writeln!(o, "OPEN CONNS : {}", st.open_conns);
        let _ = writeln!(o, "AVG RTT    : {} msec", st.rtt_ms);
        if !c.no_query {
            let _ = writeln!(o, "LAST QUERY : {:>8} seconds ago", ago(st.last_query));
            match st.last_reply {
                Some(t) => {
                    let _ = writeln!(o, "LAST REPLY : {:>8} seconds ago", ago(Some(t)));
                }
                None => {
                    let _ = writeln!(o, "LAST REPLY : none received");
                }
            }
            let _ = writeln!(o, "PINGS SENT : {:>8}", st.pings_sent);
            let _ = writeln!(
                o,
                "PINGS ACKED: {:>8} {:>3}%",
                st.pings_acked,
                percent(st.pings_acked, st.pings_sent)
            );
        }
        let _ = writeln!(
            o,
            "IGNORED    : {:>8} {:>3}%",
            st.replies_ignored,
            percent(st.replies_ignored, st.pings_acked)
        );
        if !c.no_query {
            let _ = writeln!(o, "Histogram of PINGS ACKED:");
            if c.htcp.is_some() {
                let h = htcp_peer(p);
                let _ = writeln!(
                    o,
                    "\tMisses\t{:>8} {:>3}%",
                    h.misses,
                    percent(h.misses, st.pings_acked)
                );
                let _ = writeln!(
                    o,
                    "\tHits\t{:>8} {:>3}%",
                    h.hits,
                    percent(h.hits, st.pings_acked)
                );
            } else {
                for (op, &n) in st.replies_by_opcode.iter().enumerate() {
                    if n == 0 {
                        continue;
                    }
                    let name = u8::try_from(op)
                        .ok()
                        .and_then(Opcode::from_u8)
                        .map_or("ICP_INVALID", Opcode::name);
                    let _ = writeln!(
                        o,
                        "    {:>12.12} : {:>8} {:>3}%",
                        name,
                        n,
                        percent(n, st.pings_acked)
                    );
                }
            }
        }
        let _ = writeln!(o, "keep-alive ratio: 0%");
    }
    o
}

fn storedir(s: &Sources<'_>) -> String {
    let dirs = s.store.usage();
    let (used, total, entries) = store_use(s);
    let mut o = String::from("Store Directory Statistics:\n");
    let _ = writeln!(o, "Store Entries          : {entries}");
    let _ = writeln!(o, "Maximum Swap Size      : {} KB", kb(total));
    let _ = writeln!(o, "Current Store Swap Size: {:.2} KB", used as f64 / 1024.0);
    let pct = ratio(used as f64, total as f64);
    let _ = writeln!(
        o,
        "Current Capacity       : {:.2}% used, {:.2}% free",
        pct,
        100.0 - pct
    );
    for (i, d) in dirs.iter().enumerate() {
        let slot = u64::from(d.slot_size);
        let size = u64::from(d.slots) * slot;
        let used_slots = d.slots - d.free_slots;
        let dir_used = u64::from(used_slots) * slot;
        let _ = writeln!(o, "\nStore Directory #{i} (mmap): {}", d.path.display());
        let _ = writeln!(o, "FS Block Size {} Bytes\n", d.slot_size);
        let _ = writeln!(o, "Maximum Size: {} KB", kb(size));
        let _ = writeln!(
            o,
            "Current Size: {:.2} KB {:.2}%",
            dir_used as f64 / 1024.0,
            ratio(dir_used as f64, size as f64)
        );
        let _ = writeln!(o, "Maximum entries: {:>9}", d.slots);
        let _ = writeln!(
            o,
            "Current entries: {:>9} {:.2}%",
            d.entries,
            ratio(d.entries as f64, f64::from(d.slots))
        );
        let _ = writeln!(o, "Maximum slots:   {:>9}", d.slots);
        let _ = writeln!(
            o,
            "Used slots:      {:>9} {:.2}%",
            used_slots,
            ratio(f64::from(used_slots), f64::from(d.slots))
        );
        let _ = writeln!(o, "Pending operations: 0 out of 0");
        let _ = writeln!(o, "Flags:");
    }
    o
}

fn config(s: &Sources<'_>) -> String {
    let mut o = String::new();
    for line in &s.config.lines {
        let _ = writeln!(o, "{}", line.value);
    }
    o
}

/// `objects` (every stored entry) or `vm_objects` (those in the memory
/// cache), in Squid's per-entry layout. Reads each entry's first slot.
fn objects(s: &Sources<'_>, memory_only: bool) -> String {
    let mut o = String::new();
    let entries: Vec<Listed> = s.store.list();
    for e in entries {
        let in_memory = s.memory_keys.contains(&e.key);
        if memory_only && !in_memory {
            continue;
        }
        let t = |v: u32| if v == 0 { -1 } else { i64::from(v) };
        let _ = writeln!(o, "KEY {}", hex::encode_upper(e.key));
        let _ = writeln!(
            o,
            "\t{:<13} {:<13} {:<12} {:<12}",
            "STORE_OK",
            if in_memory {
                "IN_MEMORY"
            } else {
                "NOT_IN_MEMORY"
            },
            "SWAPOUT_DONE",
            "PING_NONE"
        );
        let _ = writeln!(o, "\tVALIDATED");
        let _ = writeln!(
            o,
            "\tLV:{:<9} LU:{:<9} LM:{:<9} EX:{:<9}",
            t(e.times.date),
            t(e.times.date),
            t(e.times.last_modified),
            t(e.times.expires)
        );
        let _ = writeln!(o, "\t0 locks, 0 clients, 0 refs");
        let _ = writeln!(o, "\tGET {}", e.url);
        let _ = writeln!(o, "\tobject_sz: {}\n", e.body_len);
    }
    o
}

/// `utilization`: Squid's periods, each the per-second averages (the
/// `5min` layout) when the samples cover it, then the totals (`counters`).
/// cuttle keeps an hour of samples, so the longer periods are never filled.
fn utilization(m: &Manager, s: &Sources<'_>) -> String {
    let history = m.history();
    let covered = match (history.first(), history.last()) {
        (Some(first), Some(last)) => last.at.duration_since(first.at).unwrap_or(Duration::ZERO),
        _ => Duration::ZERO,
    };
    let mut o = String::from("Cache Utilisation:\n\n");
    for (label, minutes) in [
        ("Last 5 minutes", 5),
        ("Last 15 minutes", 15),
        ("Last hour", 60),
        ("Last 8 hours", 8 * 60),
        ("Last day", 24 * 60),
        ("Last 3 days", 3 * 24 * 60),
    ] {
        let span = Duration::from_secs(minutes * 60);
        let _ = writeln!(o, "{label}:");
        if covered >= span && span <= HOUR {
            o.push_str(&averages(m, s, span));
        } else {
            o.push_str("(no values recorded yet)\n");
        }
        o.push('\n');
    }
    o.push_str("Totals since cache startup:\n");
    o.push_str(&counters(m, s));
    o
}

/// `active_requests`: every request in flight with its client, URL, start
/// and the body bytes sent so far, in Squid's per-request layout. cuttle
/// keeps no descriptor number, read count or memory addresses: those are 0.
fn active_requests(m: &Manager) -> String {
    let now = SystemTime::now();
    let mut o = String::new();
    for r in m.stats.active_requests() {
        let out = r.bytes_out.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(o, "Connection: 0x{:x}", r.id);
        let _ = writeln!(o, "\tFD 0, read 0, wrote {out}");
        let _ = writeln!(o, "\tFD desc: {} {}", r.method, r.url);
        let _ = writeln!(o, "\tin: buf 0x0, used 0, free 0");
        let _ = writeln!(o, "\tremote: {}", r.client);
        let _ = writeln!(o, "\tlocal: {}", r.local);
        let _ = writeln!(o, "\tnrequests: 1");
        let _ = writeln!(o, "uri {}", r.url);
        let _ = writeln!(o, "logType NONE_NONE");
        let _ = writeln!(o, "out.offset {out}, out.size {out}");
        let _ = writeln!(o, "req_sz 0");
        let _ = writeln!(o, "entry 0x0/-");
        let _ = writeln!(
            o,
            "start {} ({:.6} seconds ago)",
            squid_time(r.start),
            seconds_since(r.start, now)
        );
        let _ = writeln!(o, "username -");
        let _ = writeln!(o, "delay_pool 0\n");
    }
    o
}

/// `client_list`: per client address, its open connections, the ICP
/// replies it got by opcode and its HTTP requests by result tag, then the
/// totals.
fn client_list(m: &Manager, s: &Sources<'_>) -> String {
    use crate::access_log::ResultCode;
    use std::collections::BTreeMap;
    // Per address: HTTP requests by result tag, ICP replies by opcode.
    type Counts<'a> = (BTreeMap<String, u64>, BTreeMap<&'a str, u64>);
    let mut clients: BTreeMap<std::net::IpAddr, Counts<'_>> = BTreeMap::new();
    for (ip, by_tag) in m.stats.client_results() {
        clients.entry(ip).or_default().0 = by_tag;
    }
    for (ip, by_opcode) in m.icp_server.client_replies() {
        clients.entry(ip).or_default().1 = by_opcode;
    }
    let mut o = String::from("Cache Clients:\n");
    let (mut requests, mut hits, mut queries, mut icp_hits) = (0u64, 0u64, 0u64, 0u64);
    for (ip, (by_tag, by_opcode)) in clients {
        let open = s.connections.map_or(0, |f| f(ip));
        let _ = writeln!(o, "Address: {ip}");
        // No FQDN cache: Squid prints the address when it has no name.
        let _ = writeln!(o, "Name:    {ip}");
        let _ = writeln!(o, "Currently established connections: {open}");
        let icp: u64 = by_opcode.values().sum();
        let _ = writeln!(o, "    ICP  Requests {icp}");
        for (name, n) in &by_opcode {
            let _ = writeln!(o, "        {name:<20.20} {n:>7} {:>3}%", percent(*n, icp));
            if *name == "ICP_HIT" {
                icp_hits += n;
            }
        }
        let total: u64 = by_tag.values().sum();
        let _ = writeln!(o, "    HTTP Requests {total}");
        for (tag, n) in &by_tag {
            let _ = writeln!(o, "        {tag:<20.20} {n:>7} {:>3}%", percent(*n, total));
            if tag.parse::<ResultCode>().is_ok_and(|c| c.is_hit()) {
                hits += n;
            }
        }
        let _ = writeln!(o);
        requests += total;
        queries += icp;
    }
    let _ = writeln!(o, "TOTALS");
    let _ = writeln!(
        o,
        "ICP : {queries} Queries, {icp_hits} Hits ({:>3}%)",
        percent(icp_hits, queries)
    );
    let _ = writeln!(
        o,
        "HTTP: {requests} Requests, {hits} Hits ({:>3}%)",
        percent(hits, requests)
    );
    o
}

/// A socket of /proc/net/{tcp,udp}{,6}: local, remote, listening.
#[derive(Debug, Clone, Copy)]
struct SocketRow {
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    listening: bool,
    udp: bool,
}

/// `0100007F:0CEA` (IPv4) or 32 hex digits (IPv6, four host-order words)
/// and a port, as /proc/net/* prints addresses.
fn proc_addr(text: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = match ip.len() {
        8 => std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_le_bytes()).into(),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            let v6 = std::net::Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(v6.into(), Into::into)
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// The sockets of this network namespace, by inode.
fn sockets() -> std::collections::HashMap<u64, SocketRow> {
    let mut found = std::collections::HashMap::new();
    for (file, udp) in [
        ("/proc/self/net/tcp", false),
        ("/proc/self/net/tcp6", false),
        ("/proc/self/net/udp", true),
        ("/proc/self/net/udp6", true),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            let (Some(local), Some(remote), Ok(inode)) =
                (proc_addr(local), proc_addr(remote), inode.parse())
            else {
                continue;
            };
            // 0A is TCP_LISTEN.
            let listening = !udp && *state == "0A";
            found.insert(
                inode,
                SocketRow {
                    local,
                    remote,
                    listening,
                    udp,
                },
            );
        }
    }
    found
}

/// `filedescriptors`: the process's open descriptors from /proc/self/fd,
/// each as Squid types and describes it as far as cuttle can tell.
/// cuttle keeps no timeouts or per-descriptor byte counts: those are 0.
fn filedescriptors(s: &Sources<'_>) -> String {
    let mut o = String::from("Active file descriptors:\n");
    o.push_str("File Type   Tout Nread  * Nwrite * Remote Address        Description\n");
    o.push_str(
        "---- ------ ---- -------- -------- --------------------- ------------------------------\n",
    );
    let mut fds: Vec<(u64, String)> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some((fd, target.display().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    // The directory listing's own descriptor is not the process's.
    let listing = format!("/proc/{}/fd", std::process::id());
    fds.retain(|(_, target)| *target != listing);
    fds.sort();
    let table = sockets();
    let http_ports: Vec<u16> = table
        .values()
        .filter(|r| r.listening)
        .map(|r| r.local.port())
        .collect();
    let icp = s.config.icp_port.value;
    let htcp = s.config.htcp_port.value;
    for (fd, target) in fds {
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        let (kind, address, description) = match inode.and_then(|i| table.get(&i)) {
            Some(r) if r.listening => ("Socket", r.local.to_string(), "HTTP Socket".to_string()),
            Some(r) if r.udp => {
                let port = r.local.port();
                let what = if port != 0 && port == icp {
                    "ICP Socket"
                } else if port != 0 && port == htcp {
                    "HTCP Socket"
                } else {
                    "UDP Socket"
                };
                ("Socket", r.local.to_string(), what.to_string())
            }
            Some(r) if http_ports.contains(&r.local.port()) => (
                "Socket",
                r.remote.to_string(),
                "Client connection".to_string(),
            ),
            Some(r) => (
                "Socket",
                r.remote.to_string(),
                "Server connection".to_string(),
            ),
            None if inode.is_some() => ("Socket", String::new(), "Socket".to_string()),
            None if target.starts_with("pipe:") => ("Pipe", String::new(), target),
            None if target.starts_with('/') => ("File", String::new(), target),
            None => ("Unknown", String::new(), target),
        };
        let _ = writeln!(
            o,
            "{fd:>4} {kind:<6.6} {:>4} {:>7}  {:>7}  {address:<21} {description}",
            0, 0, 0
        );
    }
    o
}

/// `ipcache`: Squid's statistics and table header. cuttle resolves names
/// through the system's resolver and keeps no IP cache: every count is 0.
fn ipcache() -> String {
    let mut o = String::from("IP Cache Statistics:\n");
    for (label, pad) in [
        ("Entries Cached:", 2),
        ("Requests:", 1),
        ("Hits:", 12),
        ("Negative Hits:", 7),
        ("Numeric Hits:", 8),
        ("Misses:", 10),
        ("Retrieved A:", 5),
        ("Retrieved AAAA:", 2),
        ("Retrieved CNAME:", 1),
        ("CNAME-Only Response:", 1),
        ("Invalid Request:", 1),
    ] {
        let _ = writeln!(o, "IPcache {label}{:pad$}0", "");
    }
    o.push_str("\n\nIP Cache Contents:\n\n");
    let _ = writeln!(
        o,
        " {:<31.31} {:>3} {:>6} {:>6}  {:>4}",
        "Hostname", "Flg", "lstref", "TTL", "N(b)"
    );
    o
}

/// `fqdncache`: Squid's statistics and table header; cuttle keeps no FQDN
/// cache: every count is 0.
fn fqdncache() -> String {
    let mut o = String::from("FQDN Cache Statistics:\n");
    for label in [
        "Entries In Use",
        "Entries Cached",
        "Requests",
        "Hits",
        "Negative Hits",
        "Misses",
    ] {
        let _ = writeln!(o, "FQDNcache {label}: 0");
    }
    o.push_str("FQDN Cache Contents:\n\n");
    let _ = writeln!(
        o,
        "{:<45.45} {:>3} {:>3} {:>3} Hostnames",
        "Address", "Flg", "TTL", "Cnt"
    );
    o
}

/// `events`: cuttle's one periodic task it can time, the counters sampler
/// (every [`super::SAMPLE_PERIOD`]), in Squid's event-queue layout.
fn events(m: &Manager) -> String {
    let last = m.history().last().map(|s| s.at);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Last event to run: {}\n",
        if last.is_some() { "statAvgTick" } else { "" }
    );
    let _ = writeln!(
        o,
        "{:<25}\t{:<15}\tWeight\tCallback Valid?",
        "Operation", "Next Execution"
    );
    let next = last.map_or(Duration::ZERO, |at| {
        (at + super::SAMPLE_PERIOD)
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    });
    let _ = writeln!(
        o,
        "{:<25}\t{:.3} sec\t{:>5}\t N/A",
        "statAvgTick",
        next.as_secs_f64(),
        1
    );
    o
}

#[cfg(test)]
mod tests;
