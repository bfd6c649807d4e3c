//! Squid's text pages, line for line in Squid 5.7's layout (see fixtures/squid-mgr/), so that tools which parse Squid's pages parse cuttle's: menu, info, counters, 5min, 60min, service_times, server_list, storedir, config, objects, vm_objects, utilization, active_requests, client_list, filedescriptors, ipcache, fqdncache, events, digest_stats and cuttle's htcp_monitor.
//!
//! Where cuttle has no such thing (a select loop, memory pools, FTP, DNS
//! timing, a disk-I/O layer) the line is kept with 0, so parsers find every
//! label they expect. The counter pages live in `text/counter_pages.rs`,
//! server_list in `text/peers.rs`, the process pages in `text/process.rs`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::{
    htcp_totals, http_date, percent, protection, squid_time, Manager, Process, Sample, Sources,
    ACTIONS,
};
use crate::stats::Histogram;
use crate::store::Listed;

mod counter_pages;
mod digests;
mod monitor;
mod peers;
mod process;

use counter_pages::{averages, counters, service_classes, service_times};
use digests::digest_stats;
use peers::server_list;
pub use peers::{addresses, flags, server_list_of};
use process::{filedescriptors, fqdncache, ipcache};

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
        "mesh" => m.mesh.render(std::time::Instant::now()),
        "digest_stats" => digest_stats(m, s),
        "htcp_monitor" => monitor::htcp_monitor(m, s),
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
        "share_log" => s
            .share
            .map(|share| share.render(std::time::Instant::now()))
            .unwrap_or_default(),
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
