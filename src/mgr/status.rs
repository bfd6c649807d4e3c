//! The status page (`/squid-internal-mgr/status`): one HTML page showing the mesh as this cache sees it, the "routing status page" of self-configuring hierarchies: the peer table (with each peer's digest age and false-hit ratio), hit ratio and request rate of the last minutes as inline SVG charts, the store's fill and the hierarchy codes seen. A small script fetches the page again every few seconds and swaps in its `<main>`, so it stays live without a reload.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::text::addresses;
use super::{http_date, Manager, Sample, Sources};
use crate::access_log::HierarchyCode;
use crate::peers::peer_digest::wants_digest;
use crate::peers::table::Peer;

/// How far back the charts go.
const CHART_SPAN: Duration = Duration::from_secs(600);
/// How often the page refreshes itself.
const REFRESH_MS: u64 = 5000;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One chart point per interval between samples: (end time, requests per
/// second, hit ratio in %, or `None` without requests).
fn points(history: &[Sample]) -> Vec<(SystemTime, f64, Option<f64>)> {
    history
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (w.first()?, w.get(1)?);
            let dt = b.at.duration_since(a.at).ok()?.as_secs_f64();
            if dt <= 0.0 {
                return None;
            }
            let req = b.client.requests.saturating_sub(a.client.requests);
            let hits = b.client.hits.saturating_sub(a.client.hits);
            let ratio = (req > 0).then(|| 100.0 * hits as f64 / req as f64);
            Some((b.at, req as f64 / dt, ratio))
        })
        .collect()
}

/// A small line chart: `values` over the chart span ending `now`.
fn chart(
    id: &str,
    title: &str,
    unit: &str,
    now: SystemTime,
    values: &[(SystemTime, f64)],
) -> String {
    const W: f64 = 320.0;
    const H: f64 = 90.0;
    let top = values
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(if unit == "%" { 100.0 } else { 1.0 });
    let x = |t: SystemTime| {
        let back = now
            .duration_since(t)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        (W * (1.0 - back / CHART_SPAN.as_secs_f64())).clamp(0.0, W)
    };
    let y = |v: f64| H - 4.0 - (H - 12.0) * v / top;
    let line: Vec<String> = values
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let last = values
        .last()
        .map_or("no data yet".to_string(), |(_, v)| format!("{v:.1} {unit}"));
    let mut svg = format!(
        "<figure class=\"chart\"><figcaption>{title} <b>{last}</b></figcaption>\
         <svg id=\"{id}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{title}\">\
         <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" class=\"bg\"/>\
         <line x1=\"0\" y1=\"{base:.1}\" x2=\"{W}\" y2=\"{base:.1}\" class=\"axis\"/>\
         <text x=\"4\" y=\"12\" class=\"tick\">{top:.0} {unit}</text>\
         <text x=\"4\" y=\"{bottom:.1}\" class=\"tick\">-10 min</text>\
         <text x=\"{right:.1}\" y=\"{bottom:.1}\" class=\"tick\" text-anchor=\"end\">now</text>",
        base = y(0.0),
        bottom = H - 6.0,
        right = W - 4.0,
    );
    if line.len() > 1 {
        let _ = write!(
            svg,
            "<polyline points=\"{}\" class=\"line\"/>",
            line.join(" ")
        );
    }
    for p in &line {
        if let Some((px, py)) = p.split_once(',') {
            let _ = write!(
                svg,
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"2\" class=\"dot\"/>"
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

pub fn render(m: &Manager, s: &Sources<'_>) -> String {
    let now_sample = m.sample(s);
    let now = now_sample.at;
    let mut history: Vec<Sample> = m
        .history()
        .into_iter()
        .filter(|h| now.duration_since(h.at).unwrap_or(Duration::ZERO) <= CHART_SPAN)
        .collect();
    history.push(now_sample.clone());
    let pts = points(&history);
    let rate: Vec<(SystemTime, f64)> = pts.iter().map(|(t, r, _)| (*t, *r)).collect();
    let ratio: Vec<(SystemTime, f64)> = pts
        .iter()
        .filter_map(|(t, _, h)| h.map(|h| (*t, h)))
        .collect();
    let t = &now_sample.client;
    let up = now
        .duration_since(m.start)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let name = esc(s.name);

    let mut used = 0u64;
    let mut total = 0u64;
    let mut entries = 0u64;
    for d in s.store.usage() {
        let slot = u64::from(d.slot_size);
        used += u64::from(d.slots - d.free_slots) * slot;
        total += u64::from(d.slots) * slot;
        entries += d.entries as u64;
    }
    let fill = if total == 0 {
        0.0
    } else {
        100.0 * used as f64 / total as f64
    };
    let (mem_objects, mem_bytes, mem_limit) = s.memory;
    let all_ratio = if t.requests == 0 {
        0.0
    } else {
        100.0 * t.hits as f64 / t.requests as f64
    };

    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>cuttle status: {name}</title><style>{STYLE}</style></head>\n<body data-refreshes=\"0\">\n"
    );
    let _ = write!(
        o,
        "<main id=\"live\">\n<header><h1>cuttle <span class=\"name\">{name}</span></h1>\
         <p>up {}h {:02}m · {} · cuttle/{} · refreshes every {} s</p></header>\n",
        up / 3600,
        (up % 3600) / 60,
        http_date(now),
        env!("CARGO_PKG_VERSION"),
        REFRESH_MS / 1000
    );
    let _ = writeln!(
        o,
        "<section class=\"cards\">\
         <div class=\"card\"><h3>Requests</h3><p id=\"requests\">{}</p><small>{} hits, {:.1}% since start</small></div>\
         <div class=\"card\"><h3>Store</h3><p id=\"store-fill\">{fill:.1}%</p>\
         <div class=\"bar\"><div style=\"width:{fill:.1}%\"></div></div>\
         <small>{} objects, {:.1} of {:.1} MB</small></div>\
         <div class=\"card\"><h3>Memory cache</h3><p>{}</p><small>objects, {:.1} of {:.1} MB</small></div>\
         </section>",
        t.requests,
        t.hits,
        all_ratio,
        entries,
        mb(used),
        mb(total),
        mem_objects,
        mb(mem_bytes),
        mb(mem_limit),
    );
    let _ = writeln!(
        o,
        "<section class=\"charts\">{}{}</section>",
        chart("chart-hit-ratio", "Hit ratio", "%", now, &ratio),
        chart("chart-request-rate", "Requests", "req/s", now, &rate)
    );

    o.push_str(
        "<section><h2>Peers</h2><table id=\"peers\"><thead><tr><th>Peer</th><th>Type</th>\
         <th>Address</th><th>Status</th><th>RTT</th><th>Queries</th><th>Replies</th>\
         <th>Hits served</th><th>Hits taken</th><th>Fetches</th><th>Digest age</th><th>False hits</th>\
         </tr></thead><tbody>\n",
    );
    let table = s.peers;
    let instant = Instant::now();
    for (id, p) in table.peers.iter().enumerate() {
        let c = &p.config;
        let st = p.state().clone();
        let alive = table.is_up(id, instant);
        let addrs = addresses(p);
        let (served, taken) = addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .map(|ip| m.stats.host(ip))
            .fold((0, 0), |(s, t), h| (s + h.hits_served, t + h.hits_taken));
        let protocol = if c.htcp.is_some() {
            "HTCP"
        } else if c.icp_port == 0 || c.no_query {
            "no query"
        } else {
            "ICP"
        };
        let _ = writeln!(
            o,
            "<tr class=\"peer {cls}\" data-peer=\"{n}\"><td>{n}</td><td>{ty}</td>\
             <td>{host}:{http}/{icp} <small>{protocol}</small></td>\
             <td class=\"state\">{state}</td><td>{rtt} ms</td><td>{sent}</td><td>{acked}</td>\
             <td>{served}</td><td>{taken}</td><td>{fetches}</td>{digest}</tr>",
            cls = if alive { "alive" } else { "dead" },
            n = esc(&c.name),
            ty = if c.discovered {
                format!("{} (discovered)", c.peer_type.name())
            } else {
                c.peer_type.name().to_string()
            },
            host = esc(&c.host),
            http = c.http_port,
            icp = c.icp_port,
            state = if alive { "alive" } else { "dead" },
            rtt = st.rtt_ms,
            sent = st.pings_sent,
            acked = st.pings_acked,
            fetches = st.fetches,
            digest = digest_cells(p, instant),
        );
    }
    if table.peers.is_empty() {
        o.push_str("<tr><td colspan=\"12\">no cache_peer configured</td></tr>\n");
    }
    o.push_str("</tbody></table></section>\n");
    // The discovery tree as mgr:mesh shows it, when mesh_discovery runs.
    let mesh = m.mesh.render(instant);
    if !mesh.starts_with("mesh_discovery is off") {
        let _ = writeln!(
            o,
            "<section><h2>Mesh</h2><pre id=\"mesh\">{}</pre></section>",
            esc(&mesh)
        );
    }
    htcp_monitor(&mut o, m, s, instant);

    o.push_str(
        "<section><h2>Hierarchy codes seen</h2><table id=\"hierarchy\"><thead><tr>\
         <th>Code</th><th>Requests</th><th>Share</th></tr></thead><tbody>\n",
    );
    let total_codes: u64 = t.by_hierarchy.iter().sum();
    for code in HierarchyCode::ALL {
        let n = t.hierarchy(code);
        if n == 0 {
            continue;
        }
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{n}</td><td>{:.1}%</td></tr>",
            code.as_str(),
            100.0 * n as f64 / total_codes.max(1) as f64
        );
    }
    if total_codes == 0 {
        o.push_str("<tr><td colspan=\"3\">no requests yet</td></tr>\n");
    }
    o.push_str("</tbody></table></section>\n");
    if s.config.cut_through.value.enabled {
        let c = &t.cut_through;
        let _ = writeln!(
            o,
            "<section><h2>Cut-through misses</h2><table id=\"cut-through\"><tbody>\
             <tr><td>requests</td><td>{}</td></tr><tr><td>won by origin</td><td>{}</td></tr>\
             <tr><td>won by hierarchy</td><td>{}</td></tr></tbody></table></section>",
            c.requests, c.won_by_origin, c.won_by_hierarchy
        );
    }
    o.push_str("</main>\n");
    let _ = write!(o, "<script>{}</script>\n</body></html>\n", script());
    o
}

/// HTCP MON, when this node monitors a peer or has subscribers: each
/// monitored peer's subscription, then this node's subscribers.
fn htcp_monitor(o: &mut String, m: &Manager, s: &Sources<'_>, now: Instant) {
    let monitored: Vec<&Peer> = s
        .peers
        .peers
        .iter()
        .filter(|p| crate::peers::monitor::monitored(&p.config))
        .collect();
    let subscribers = m.mon_publisher.subscribers(now);
    if monitored.is_empty() && subscribers.is_empty() {
        return;
    }
    o.push_str(
        "<section><h2>HTCP MON</h2><table id=\"htcp-monitor\"><thead><tr><th>Monitored peer</th>\
         <th>State</th><th>Lease left</th><th>Objects</th><th>Notifications/s</th>\
         <th>Resyncs</th><th>MON hits</th><th>False hits</th></tr></thead><tbody>\n",
    );
    for p in monitored {
        let v = p.mon.view(now);
        let _ = writeln!(
            o,
            "<tr data-peer=\"{n}\"><td>{n}</td><td>{state}</td><td>{lease} s</td><td>{objects}</td>\
             <td>{rate:.1}</td><td>{resyncs}</td><td>{hits}</td><td>{false_hits}</td></tr>",
            n = esc(&p.config.name),
            state = if v.usable { "synced" } else { v.phase.name() },
            lease = v.lease_left.as_secs(),
            objects = v.objects,
            rate = v.notifications_per_sec,
            resyncs = v.resyncs,
            hits = v.hits,
            false_hits = v.false_hits,
        );
    }
    o.push_str(
        "</tbody></table><table id=\"htcp-subscribers\"><thead><tr><th>Subscriber</th>\
         <th>Lease left</th><th>Notices</th><th>Bytes</th><th>Backlog</th></tr></thead><tbody>\n",
    );
    for sub in subscribers {
        let _ = writeln!(
            o,
            "<tr class=\"subscriber\"><td>{}</td><td>{} s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            sub.addr,
            sub.lease_left.as_secs(),
            sub.notices,
            sub.bytes,
            sub.backlog,
        );
    }
    o.push_str("</tbody></table></section>\n");
}

/// Fetches the page again and swaps in its `<main>`; counts successful
/// refreshes in `body[data-refreshes]`.
/// A peer's digest cells: how old the digest held is, and how many of the
/// hits it predicted were false (the peer answered 504).
fn digest_cells(p: &Peer, now: Instant) -> String {
    if !wants_digest(&p.config) {
        return "<td class=\"digest-age\">no-digest</td><td class=\"false-hits\">-</td>".into();
    }
    let age = match p.digest.current() {
        Some(d) => format!("{} s", now.saturating_duration_since(d.at).as_secs()),
        None => "none".into(),
    };
    let hits = p.digest.hits.load(Ordering::Relaxed);
    let false_hits = p.digest.false_hits.load(Ordering::Relaxed);
    let ratio = if hits == 0 {
        0.0
    } else {
        false_hits as f64 * 100.0 / hits as f64
    };
    format!(
        "<td class=\"digest-age\">{age}</td><td class=\"false-hits\">{false_hits}/{hits} ({ratio:.1}%)</td>"
    )
}

fn script() -> String {
    format!(
        "(function(){{\n\
         async function refresh(){{\n\
           try {{\n\
             const r = await fetch(location.href, {{cache: 'no-store'}});\n\
             if (!r.ok) return;\n\
             const doc = new DOMParser().parseFromString(await r.text(), 'text/html');\n\
             const fresh = doc.getElementById('live');\n\
             if (!fresh) return;\n\
             document.getElementById('live').replaceWith(fresh);\n\
             document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);\n\
           }} catch (e) {{}}\n\
         }}\n\
         setInterval(refresh, {REFRESH_MS});\n\
         }})();"
    )
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#f6f7f9}\
h1{font-size:1.4em;margin:0}h1 .name{color:#52607a;font-weight:normal}\
header p{color:#667;margin:.2em 0 1em}h2{font-size:1.1em;margin:1.2em 0 .4em}\
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:.6em 1em;min-width:12em}\
.card h3{margin:0;font-size:.85em;color:#667;font-weight:600}.card p{font-size:1.6em;margin:.1em 0}\
.bar{height:6px;background:#e4e7ee;border-radius:3px;overflow:hidden}.bar div{height:6px;background:#3b7ddd}\
.charts{display:flex;gap:1.5em;flex-wrap:wrap;margin-top:1em}figure{margin:0}figcaption{color:#445;margin-bottom:.2em}\
svg .bg{fill:#fff;stroke:#dde}svg .axis{stroke:#bbc}svg .line{fill:none;stroke:#3b7ddd;stroke-width:2}\
svg .dot{fill:#3b7ddd}svg .tick{font-size:9px;fill:#889}\
table{border-collapse:collapse;background:#fff;border:1px solid #dde}th,td{padding:.3em .7em;text-align:left;border-bottom:1px solid #eef}\
th{background:#eef1f6;font-weight:600}td small{color:#889}\
tr.alive td.state{color:#177a3c;font-weight:600}tr.dead td.state{color:#b3261e;font-weight:600}";
