//! `/metrics`: the same counters in Prometheus' text exposition format (0.0.4): requests by result code, hit ratios, bytes, store and memory-cache fill, hierarchy codes, ICP/HTCP totals, and per peer its queries, replies by opcode, RTT histogram, fetches and up/down state.

use std::fmt::Write as _;
use std::time::{Duration, Instant, UNIX_EPOCH};

use cuttle_protocol::icp::Opcode;

use super::{htcp_peer, Manager, Sample, Sources};
use crate::access_log::{HierarchyCode, ResultTag};
use crate::peers::table::RTT_BUCKETS_US;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.value(name, "", v);
    }
}

/// Hit ratio (requests) between two samples; 0 without requests.
fn hit_ratio(old: &Sample, new: &Sample) -> f64 {
    let req = new.client.requests.saturating_sub(old.client.requests);
    let hits = new.client.hits.saturating_sub(old.client.hits);
    if req == 0 {
        0.0
    } else {
        hits as f64 / req as f64
    }
}

pub fn render(m: &Manager, s: &Sources<'_>) -> String {
    let now = m.sample(s);
    let mut o = Out(String::new());
    o.family("cuttle_build_info", "gauge", "cuttle's version.");
    o.value(
        "cuttle_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1,
    );
    o.one(
        "cuttle_start_time_seconds",
        "gauge",
        "When the process started (Unix time).",
        m.start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    o.one(
        "cuttle_cpu_seconds_total",
        "counter",
        "CPU time used by the process.",
        now.cpu.as_secs_f64(),
    );

    let t = &now.client;
    o.family(
        "cuttle_client_http_requests_total",
        "counter",
        "Client HTTP transactions by result code (access.log's %Ss tag).",
    );
    for tag in ResultTag::ALL {
        let n = t.result(tag);
        if n > 0 || matches!(tag, ResultTag::TcpHit | ResultTag::TcpMiss) {
            let name = crate::access_log::ResultCode::new(tag).to_string();
            o.value(
                "cuttle_client_http_requests_total",
                &format!("result=\"{name}\""),
                n,
            );
        }
    }
    o.one(
        "cuttle_client_http_hits_total",
        "counter",
        "Client requests answered from the cache (Squid's hit classification).",
        t.hits,
    );
    o.one(
        "cuttle_client_http_errors_total",
        "counter",
        "Client requests answered with an error of cuttle's own.",
        t.errors,
    );
    o.one(
        "cuttle_client_http_received_bytes_total",
        "counter",
        "Bytes read from clients.",
        now.client_bytes_in,
    );
    o.one(
        "cuttle_client_http_sent_bytes_total",
        "counter",
        "Bytes sent to clients, headers included.",
        t.bytes_out,
    );
    o.one(
        "cuttle_client_http_hit_sent_bytes_total",
        "counter",
        "Bytes of hits sent to clients.",
        t.hit_bytes_out,
    );
    o.one(
        "cuttle_holder_redirects_total",
        "counter",
        "Misses answered with a redirect to the sibling holding the object (holder_redirect).",
        t.holder_redirects,
    );
    o.family(
        "cuttle_cut_through_total",
        "counter",
        "Cut-through misses (cut_through) by who answered first: origin, hierarchy, or none.",
    );
    let c = &t.cut_through;
    let neither = c
        .requests
        .saturating_sub(c.won_by_origin + c.won_by_hierarchy);
    for (won_by, n) in [
        ("origin", c.won_by_origin),
        ("hierarchy", c.won_by_hierarchy),
        ("none", neither),
    ] {
        o.value(
            "cuttle_cut_through_total",
            &format!("won_by=\"{won_by}\""),
            n,
        );
    }
    o.family(
        "cuttle_adaptive_revalidations_total",
        "counter",
        "Revalidations of adaptive refresh_pattern objects by what they did to the poll interval: doubled (304) or halved (a new version).",
    );
    for (interval, n) in [
        ("doubled", t.adaptive.doubled),
        ("halved", t.adaptive.halved),
    ] {
        o.value(
            "cuttle_adaptive_revalidations_total",
            &format!("interval=\"{interval}\""),
            n,
        );
    }
    o.one(
        "cuttle_adaptive_revalidations_ahead_total",
        "counter",
        "Popular adaptive objects revalidated in the background before they expired.",
        t.adaptive.ahead,
    );
    o.family(
        "cuttle_hit_ratio",
        "gauge",
        "Share of client requests that were hits over the last 5 and 60 minutes.",
    );
    for (window, span) in [("5min", 300), ("60min", 3600)] {
        let ratio = m
            .window(Duration::from_secs(span))
            .map_or(0.0, |(a, b)| hit_ratio(&a, &b));
        o.value("cuttle_hit_ratio", &format!("window=\"{window}\""), ratio);
    }
    o.family(
        "cuttle_hierarchy_total",
        "counter",
        "Client transactions by hierarchy code (how the object was fetched).",
    );
    for code in HierarchyCode::ALL {
        let n = t.hierarchy(code);
        if n > 0 {
            o.value(
                "cuttle_hierarchy_total",
                &format!("code=\"{}\"", code.as_str()),
                n,
            );
        }
    }
    if let Some(share) = s.share {
        share_metrics(&mut o, share);
    }
    o.one(
        "cuttle_server_requests_total",
        "counter",
        "Requests sent to origin servers and peers.",
        now.server_requests,
    );
    o.one(
        "cuttle_server_errors_total",
        "counter",
        "Requests to servers and peers that failed.",
        now.server_errors,
    );
    o.one(
        "cuttle_server_received_bytes_total",
        "counter",
        "Bytes read from servers and peers.",
        now.server_bytes_in,
    );
    o.one(
        "cuttle_server_sent_bytes_total",
        "counter",
        "Bytes sent to servers and peers.",
        now.server_bytes_out,
    );

    let i = &now.icp;
    for (name, help, v) in [
        (
            "cuttle_icp_queries_sent_total",
            "ICP queries sent.",
            i.queries_sent,
        ),
        (
            "cuttle_icp_replies_received_total",
            "ICP replies received.",
            i.replies_recv,
        ),
        (
            "cuttle_icp_queries_received_total",
            "ICP queries received.",
            i.queries_recv,
        ),
        (
            "cuttle_icp_replies_sent_total",
            "ICP replies sent.",
            i.replies_sent,
        ),
        (
            "cuttle_icp_query_timeouts_total",
            "Transactions routed by ICP whose wait ended by timeout.",
            t.icp_query_timeouts,
        ),
        (
            "cuttle_htcp_messages_sent_total",
            "HTCP messages sent.",
            now.htcp.pkts_sent,
        ),
        (
            "cuttle_htcp_messages_received_total",
            "HTCP messages received.",
            now.htcp.pkts_recv,
        ),
    ] {
        o.one(name, "counter", help, v);
    }

    let (mut used, mut total, mut entries) = (0u64, 0u64, 0u64);
    for d in s.store.usage() {
        let slot = u64::from(d.slot_size);
        used += u64::from(d.slots - d.free_slots) * slot;
        total += u64::from(d.slots) * slot;
        entries += d.entries as u64;
    }
    o.one(
        "cuttle_store_bytes",
        "gauge",
        "Bytes of cache_dir slots in use.",
        used,
    );
    o.one(
        "cuttle_store_capacity_bytes",
        "gauge",
        "Bytes of cache_dir slots in all.",
        total,
    );
    o.one(
        "cuttle_store_entries",
        "gauge",
        "Objects in the cache_dirs.",
        entries,
    );
    o.one(
        "cuttle_store_fill_ratio",
        "gauge",
        "Share of the cache_dirs in use.",
        if total == 0 {
            0.0
        } else {
            used as f64 / total as f64
        },
    );
    let (objects, bytes, limit) = s.memory;
    o.one(
        "cuttle_memory_cache_objects",
        "gauge",
        "Objects in the memory cache.",
        objects,
    );
    o.one(
        "cuttle_memory_cache_bytes",
        "gauge",
        "Body bytes in the memory cache.",
        bytes,
    );
    o.one(
        "cuttle_memory_cache_limit_bytes",
        "gauge",
        "Bytes the memory cache may hold.",
        limit,
    );
    peers(&mut o, s);
    htcp_monitor(&mut o, m, s);
    o.0
}

fn peers(o: &mut Out, s: &Sources<'_>) {
    let table = s.peers;
    let now = Instant::now();
    let ids: Vec<(usize, String)> = table
        .peers
        .iter()
        .enumerate()
        .map(|(id, p)| {
            (
                id,
                format!(
                    "peer=\"{}\",type=\"{}\"",
                    label(&p.config.name),
                    p.config.peer_type.name()
                ),
            )
        })
        .collect();
    let families: [(&str, &str, &str); 7] = [
        (
            "cuttle_peer_up",
            "gauge",
            "1 when the peer is usable (Squid's Up).",
        ),
        (
            "cuttle_peer_queries_sent_total",
            "counter",
            "ICP/HTCP queries sent to the peer.",
        ),
        (
            "cuttle_peer_replies_acked_total",
            "counter",
            "Replies received from the peer.",
        ),
        (
            "cuttle_peer_replies_ignored_total",
            "counter",
            "Replies from the peer that matched no query in flight.",
        ),
        (
            "cuttle_peer_fetches_total",
            "counter",
            "Requests forwarded to the peer.",
        ),
        (
            "cuttle_peer_open_connections",
            "gauge",
            "Requests to the peer in progress.",
        ),
        (
            "cuttle_peer_rtt_avg_seconds",
            "gauge",
            "Squid's running RTT average of the peer (1 ms resolution).",
        ),
    ];
    for (n, (name, kind, help)) in families.iter().enumerate() {
        o.family(name, kind, help);
        for (id, labels) in &ids {
            let Some(p) = table.get(*id) else { continue };
            let st = p.state().clone();
            let v: f64 = match n {
                0 => f64::from(u8::from(table.is_up(*id, now))),
                1 => st.pings_sent as f64,
                2 => st.pings_acked as f64,
                3 => st.replies_ignored as f64,
                4 => st.fetches as f64,
                5 => f64::from(st.open_conns),
                _ => st.rtt_ms as f64 / 1000.0,
            };
            o.value(name, labels, v);
        }
    }
    o.family(
        "cuttle_peer_replies_total",
        "counter",
        "Replies from the peer by ICP opcode (HTCP: HTCP_HIT, HTCP_MISS).",
    );
    for (id, labels) in &ids {
        let Some(p) = table.get(*id) else { continue };
        if p.config.htcp.is_some() {
            let h = htcp_peer(p);
            o.value(
                "cuttle_peer_replies_total",
                &format!("{labels},opcode=\"HTCP_HIT\""),
                h.hits,
            );
            o.value(
                "cuttle_peer_replies_total",
                &format!("{labels},opcode=\"HTCP_MISS\""),
                h.misses,
            );
            continue;
        }
        let counts = p.state().replies_by_opcode;
        for (op, n) in counts.iter().enumerate() {
            let Some(code) = u8::try_from(op).ok().and_then(Opcode::from_u8) else {
                continue;
            };
            if *n > 0 || matches!(code, Opcode::Hit | Opcode::Miss) {
                o.value(
                    "cuttle_peer_replies_total",
                    &format!("{labels},opcode=\"{}\"", code.name()),
                    n,
                );
            }
        }
    }
    o.family(
        "cuttle_peer_rtt_seconds",
        "histogram",
        "Round-trip times of the peer's replies to queries.",
    );
    for (id, labels) in &ids {
        let Some(p) = table.get(*id) else { continue };
        let h = p.state().rtt_histogram.clone();
        let mut cumulative = 0;
        for (bound, n) in RTT_BUCKETS_US.iter().zip(h.buckets.iter()) {
            cumulative += n;
            let le = *bound as f64 / 1e6;
            o.value(
                "cuttle_peer_rtt_seconds_bucket",
                &format!("{labels},le=\"{le}\""),
                cumulative,
            );
        }
        o.value(
            "cuttle_peer_rtt_seconds_bucket",
            &format!("{labels},le=\"+Inf\""),
            h.count,
        );
        o.value("cuttle_peer_rtt_seconds_sum", labels, h.sum_us as f64 / 1e6);
        o.value("cuttle_peer_rtt_seconds_count", labels, h.count);
    }
}

/// Proxy sharing's counters (issue 21): both sides, whichever this cache plays.
fn share_metrics(o: &mut Out, share: &crate::peers::share_log::Sharing) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &share.counters;
    o.family(
        "cuttle_share_fetches_total",
        "counter",
        "Share lists followed, by where the body came from (a candidate proxy, or the owner after the candidates failed).",
    );
    o.value(
        "cuttle_share_fetches_total",
        "outcome=\"candidate\"",
        c.candidate_fetches.load(Relaxed),
    );
    o.value(
        "cuttle_share_fetches_total",
        "outcome=\"owner\"",
        c.owner_fallbacks.load(Relaxed),
    );
    for (name, help, v) in [
        (
            "cuttle_share_offers_sent_total",
            "Offers to share sent to owners.",
            &c.offers_sent,
        ),
        (
            "cuttle_share_lists_received_total",
            "Share lists received from owners.",
            &c.lists_received,
        ),
        (
            "cuttle_share_probes_failed_total",
            "Candidate probes that failed.",
            &c.probes_failed,
        ),
        (
            "cuttle_share_lists_sent_total",
            "Share lists sent (owner side).",
            &c.lists_sent,
        ),
        (
            "cuttle_share_offers_logged_total",
            "Offers logged (owner side).",
            &c.offers_logged,
        ),
    ] {
        o.one(name, "counter", help, v.load(Relaxed));
    }
    let (entries, bytes) = share.size();
    o.one(
        "cuttle_share_log_entries",
        "gauge",
        "Entries in the share log.",
        entries,
    );
    o.one(
        "cuttle_share_log_bytes",
        "gauge",
        "Bytes of state the share log counts.",
        bytes,
    );
}

/// HTCP MON: per `htcp=monitor` peer (the `mgr:htcp_monitor` figures),
/// then this node's subscribers.
fn htcp_monitor(o: &mut Out, m: &Manager, s: &Sources<'_>) {
    let now = Instant::now();
    let views: Vec<(String, crate::peers::monitor::MonitorView)> = s
        .peers
        .peers
        .iter()
        .filter(|p| crate::peers::monitor::monitored(&p.config))
        .map(|p| {
            (
                format!("peer=\"{}\"", label(&p.config.name)),
                p.mon.view(now),
            )
        })
        .collect();
    type Get = fn(&crate::peers::monitor::MonitorView) -> f64;
    let families: [(&str, &str, &str, Get); 12] = [
        (
            "cuttle_htcp_monitor_usable",
            "gauge",
            "1 when the peer's MON set is synced and answers selection.",
            |v| f64::from(u8::from(v.usable)),
        ),
        (
            "cuttle_htcp_monitor_lease_remaining_seconds",
            "gauge",
            "Seconds left on the MON lease the peer granted.",
            |v| v.lease_left.as_secs_f64(),
        ),
        (
            "cuttle_htcp_monitor_objects",
            "gauge",
            "Objects the peer's MON set says it holds.",
            |v| v.objects as f64,
        ),
        (
            "cuttle_htcp_monitor_notifications_total",
            "counter",
            "Object notifications received from the peer.",
            |v| v.notifications as f64,
        ),
        (
            "cuttle_htcp_monitor_resyncs_total",
            "counter",
            "Full resyncs of the peer's set (subscriptions started).",
            |v| v.resyncs as f64,
        ),
        (
            "cuttle_htcp_monitor_gaps_total",
            "counter",
            "Sequence gaps (lost notifications) seen from the peer.",
            |v| v.gaps as f64,
        ),
        (
            "cuttle_htcp_monitor_hits_total",
            "counter",
            "Requests sent to the peer because its set held the object.",
            |v| v.hits as f64,
        ),
        (
            "cuttle_htcp_monitor_false_hits_total",
            "counter",
            "Of those, the peer answered 504 (it did not have it).",
            |v| v.false_hits as f64,
        ),
        (
            "cuttle_htcp_monitor_invalidations_received_total",
            "counter",
            "Pushed invalidations from the peer applied (this cache's copies of the URL dropped).",
            |v| v.invalidations as f64,
        ),
        (
            "cuttle_htcp_monitor_updates_received_total",
            "counter",
            "Pushed updates from the peer (refetched in the background).",
            |v| v.updates as f64,
        ),
        (
            "cuttle_htcp_monitor_refetches_done_total",
            "counter",
            "Background refetches of updated objects from the peer that left this cache's copy current.",
            |v| v.refetches_done as f64,
        ),
        (
            "cuttle_htcp_monitor_refetches_failed_total",
            "counter",
            "Background refetches from the peer that failed (the copy was dropped).",
            |v| v.refetches_failed as f64,
        ),
    ];
    for (name, kind, help, get) in families {
        o.family(name, kind, help);
        for (labels, v) in &views {
            o.value(name, labels, get(v));
        }
    }
    let subs = m.mon_publisher.subscribers(now);
    o.one(
        "cuttle_htcp_monitor_subscribers",
        "gauge",
        "HTCP MON subscribers of this node.",
        subs.len(),
    );
    o.family(
        "cuttle_htcp_monitor_subscriber_bytes_total",
        "counter",
        "Notification bytes sent to the subscriber (this subscription).",
    );
    for sub in &subs {
        o.value(
            "cuttle_htcp_monitor_subscriber_bytes_total",
            &format!("subscriber=\"{}\"", sub.addr),
            sub.bytes,
        );
    }
    let st = &m.mon_publisher.stats;
    o.one(
        "cuttle_htcp_monitor_notices_sent_total",
        "counter",
        "MON responses sent to all subscribers.",
        st.notices_sent.load(std::sync::atomic::Ordering::Relaxed),
    );
    o.one(
        "cuttle_htcp_monitor_bytes_sent_total",
        "counter",
        "Bytes of MON responses sent to all subscribers.",
        st.bytes_sent.load(std::sync::atomic::Ordering::Relaxed),
    );
    o.one(
        "cuttle_htcp_monitor_invalidations_sent_total",
        "counter",
        "Pushed invalidations sent (one per subscriber told).",
        st.invalidations_sent
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    o.one(
        "cuttle_htcp_monitor_updates_sent_total",
        "counter",
        "Pushed updates sent (one per subscriber told).",
        st.updates_sent.load(std::sync::atomic::Ordering::Relaxed),
    );
}
