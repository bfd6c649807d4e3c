//! The counter pages: counters, 5min and 60min (averages over a window of samples), service_times.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::mgr::{http_date, squid_time, Manager, Sample, Sources};

use super::{kb, median, ratio, seconds_since, window, FIVE_MIN, HOUR};
use crate::stats::Histogram;

pub(super) type Pick = fn(&Sample) -> Option<&Histogram>;

/// Squid's service-time classes, with their labels; DNS lookups and ICP
/// queries are not timed by cuttle (`None`: printed as 0).
pub(super) fn service_classes() -> [(&'static str, Pick); 7] {
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

pub(super) fn counters(m: &Manager, s: &Sources<'_>) -> String {
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
    // cuttle's own, last and only where configured: a Squid config's page
    // keeps Squid's lines exactly.
    if !s.config.holder_redirect.is_empty() {
        let _ = writeln!(o, "client_http.holder_redirects = {}", t.holder_redirects);
    }
    if s.config.cut_through.value.enabled {
        let c = &t.cut_through;
        let _ = writeln!(o, "cut_through.requests = {}", c.requests);
        let _ = writeln!(o, "cut_through.won_by_origin = {}", c.won_by_origin);
        let _ = writeln!(o, "cut_through.won_by_hierarchy = {}", c.won_by_hierarchy);
    }
    if s.config
        .refresh_patterns
        .iter()
        .any(|p| p.adaptive.is_some())
    {
        let a = &t.adaptive;
        let _ = writeln!(o, "refresh.adaptive_doubled = {}", a.doubled);
        let _ = writeln!(o, "refresh.adaptive_halved = {}", a.halved);
        let _ = writeln!(o, "refresh.adaptive_ahead = {}", a.ahead);
    }
    o
}

/// `5min` / `60min`: every counter per second between two samples.
pub(super) fn averages(m: &Manager, s: &Sources<'_>, span: Duration) -> String {
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

pub(super) fn service_times(m: &Manager, s: &Sources<'_>) -> String {
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
