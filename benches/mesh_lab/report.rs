//! The mesh lab's figures: every node's access.log read into per-node
//! counts (hits by kind, origin and peer traffic, errors), the table, and
//! the simulator's prediction beside it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use cuttle::access_log::{HierarchyCode, ResultCode};
use cuttle::sim::Mesh;

use super::{lab_trace_path, LabOptions, CLIENT_ADDRESS, ORIGIN_TTL_SECS};

/// One node's figures, from its access.log (and the origin's count of
/// requests from its address).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFigures {
    pub name: String,
    /// Requests the replayer sent this node.
    pub sent: u64,
    /// Client (replayer) lines in its access.log.
    pub requests: u64,
    pub local_hits: u64,
    /// Misses a sibling answered (SIBLING_HIT, CD_SIBLING_HIT).
    pub sibling_hits: u64,
    /// Misses sent to a parent that the parent answered from its cache.
    pub parent_hits: u64,
    /// Misses sent to a parent (hit there or not).
    pub to_parent: u64,
    /// Requests it sent to the origin (HIER_DIRECT lines, any client).
    pub origin_requests: u64,
    /// Body bytes the origin sent it.
    pub origin_bytes: u64,
    /// Requests from other nodes it served, and their bytes.
    pub peer_requests_served: u64,
    pub peer_bytes_served: u64,
    /// Client lines with an error status, plus replayer failures.
    pub client_errors: u64,
    /// ICP and HTCP queries it answered (UDP lines; Squid logs them only
    /// with log_icp_queries on, the lab's default).
    pub udp_queries: u64,
    /// How long each answered request took, as the replayer saw it,
    /// milliseconds (the origin delay shows here; link latencies do not
    /// exist in the lab).
    pub latencies_ms: Vec<f64>,
}

/// What a lab run measured.
#[derive(Debug, Clone, Default)]
pub struct LabReport {
    pub nodes: Vec<NodeFigures>,
    /// Requests the lab origin answered, and the body bytes it sent.
    pub origin_requests: u64,
    pub origin_bytes: u64,
    /// Requests whose reply the replayer could not use (connection
    /// failures, status other than 200, short bodies), by node.
    pub replay_errors: u64,
    /// The replay errors by cause (`ReplayFailure`'s text), for finding
    /// out why.
    pub replay_failures: std::collections::BTreeMap<String, u64>,
    /// Origin requests from an address that is no node's.
    pub origin_unattributed: u64,
    pub elapsed: Duration,
}

impl LabReport {
    pub fn total(&self) -> NodeFigures {
        let mut t = NodeFigures {
            name: "total".into(),
            ..NodeFigures::default()
        };
        for n in &self.nodes {
            t.sent += n.sent;
            t.requests += n.requests;
            t.local_hits += n.local_hits;
            t.sibling_hits += n.sibling_hits;
            t.parent_hits += n.parent_hits;
            t.to_parent += n.to_parent;
            t.origin_requests += n.origin_requests;
            t.origin_bytes += n.origin_bytes;
            t.peer_requests_served += n.peer_requests_served;
            t.peer_bytes_served += n.peer_bytes_served;
            t.client_errors += n.client_errors;
            t.udp_queries += n.udp_queries;
            t.latencies_ms.extend_from_slice(&n.latencies_ms);
        }
        t
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `mean/p50/p99` of `ms` (nearest rank), or `-` when there are none.
pub fn latency_summary(ms: &[f64]) -> String {
    if ms.is_empty() {
        return "-".into();
    }
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank =
        |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    format!("{mean:.1}/{:.1}/{:.1}", rank(0.50), rank(0.99))
}

/// The lab's table: one row per node and a total.
pub fn table(report: &LabReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>7} {:>7} {:>7} {:>9} {:>13} {:>9} {:>13} {:>8} {:>6} {:>17}",
        "node",
        "requests",
        "local%",
        "sibl%",
        "parent%",
        "origin",
        "origin_bytes",
        "to_parent",
        "peer_served",
        "icp/htcp",
        "errors",
        "ms mean/p50/p99"
    );
    let mut rows: Vec<NodeFigures> = report.nodes.clone();
    rows.push(report.total());
    for n in &rows {
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>7.1} {:>7.1} {:>7.1} {:>9} {:>13} {:>9} {:>13} {:>8} {:>6} {:>17}",
            n.name,
            n.requests,
            percent(n.local_hits, n.requests),
            percent(n.sibling_hits, n.requests),
            percent(n.parent_hits, n.requests),
            n.origin_requests,
            n.origin_bytes,
            n.to_parent,
            format!("{}/{}", n.peer_requests_served, n.peer_bytes_served),
            n.udp_queries,
            n.client_errors,
            latency_summary(&n.latencies_ms),
        );
    }
    let _ = writeln!(
        out,
        "lab origin: {} requests, {} body bytes ({} from no node's address); replay errors: {}; {:.1} s",
        report.origin_requests,
        report.origin_bytes,
        report.origin_unattributed,
        report.replay_errors,
        report.elapsed.as_secs_f64()
    );
    if !report.replay_failures.is_empty() {
        let causes: Vec<String> = report
            .replay_failures
            .iter()
            .map(|(why, n)| format!("{why}: {n}"))
            .collect();
        let _ = writeln!(out, "replay errors by cause: {}", causes.join(", "));
    }
    out
}

/// One TCP line of a native access.log: client, result, status, size,
/// hierarchy code and peer.
struct LogLine {
    client: IpAddr,
    result: ResultCode,
    status: u16,
    size: u64,
    hierarchy: HierarchyCode,
}

fn parse_log_line(line: &str) -> Option<LogLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 9 {
        return None;
    }
    let client = IpAddr::from_str(f[2]).ok()?;
    let (code, status) = f[3].split_once('/')?;
    let result = ResultCode::from_str(code).ok()?;
    let status = status.parse().ok()?;
    let size = f[4].parse().ok()?;
    let (hier, _peer) = f[8].split_once('/')?;
    let hierarchy = HierarchyCode::from_str(hier.trim_start_matches("TIMEOUT_")).ok()?;
    Some(LogLine {
        client,
        result,
        status,
        size,
        hierarchy,
    })
}

fn is_sibling_hit(code: HierarchyCode) -> bool {
    matches!(
        code,
        HierarchyCode::SiblingHit | HierarchyCode::CdSiblingHit
    )
}

fn is_parent(code: HierarchyCode) -> bool {
    use HierarchyCode::*;
    matches!(
        code,
        ParentHit
            | DefaultParent
            | SingleParent
            | FirstUpParent
            | FirstParentMiss
            | ClosestParentMiss
            | ClosestParent
            | RoundrobinParent
            | CdParentHit
            | Carp
            | AnyOldParent
            | UserhashParent
            | SourcehashParent
    )
}

/// What the lab origin counted: requests, body bytes, and both by the
/// address each request came from.
#[derive(Debug, Clone, Default)]
pub struct OriginTotals {
    pub requests: u64,
    pub bytes: u64,
    pub by_source: HashMap<IpAddr, (u64, u64)>,
}

/// Whether `child` has the node at `server` as a parent (a cache_peer
/// line of type parent naming its address).
fn is_parent_of(mesh: &Mesh, child: usize, server: usize) -> bool {
    let address = mesh.nodes[server].address.to_string();
    mesh.nodes[child]
        .config
        .cache_peers
        .iter()
        .any(|p| p.value.peer_type == cuttle::config::PeerType::Parent && p.value.host == address)
}

/// The figures of every node from its access.log (`logs`, in mesh order)
/// and the origin's counts.
pub fn read_logs(mesh: &Mesh, logs: &[PathBuf], origin: &OriginTotals) -> LabReport {
    let client: Option<IpAddr> = CLIENT_ADDRESS.parse().ok();
    let mut nodes: Vec<NodeFigures> = mesh
        .nodes
        .iter()
        .map(|n| NodeFigures {
            name: n.name.clone(),
            ..NodeFigures::default()
        })
        .collect();
    for (server, path) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3).is_some_and(|c| c.starts_with("UDP_")) {
                nodes[server].udp_queries += 1;
                continue;
            }
            // Squid's netdb exchange and digest fetches between nodes
            // are the mesh's own traffic, not the trace's; a connection
            // closed before a request (the lab's and peers' probes) logs
            // `NONE_NONE/000 0 - error:...`.
            if fields
                .get(6)
                .is_some_and(|u| u.contains("/squid-internal-"))
                || fields.get(5) == Some(&"-")
            {
                continue;
            }
            let Some(l) = parse_log_line(line) else {
                continue;
            };
            let figures = &mut nodes[server];
            if l.hierarchy == HierarchyCode::HierDirect {
                figures.origin_requests += 1;
            }
            if Some(l.client) == client {
                figures.requests += 1;
                if l.status != 200 {
                    figures.client_errors += 1;
                } else if l.result.is_hit() {
                    figures.local_hits += 1;
                } else if is_sibling_hit(l.hierarchy) {
                    figures.sibling_hits += 1;
                } else if is_parent(l.hierarchy) {
                    figures.to_parent += 1;
                }
                continue;
            }
            figures.peer_requests_served += 1;
            figures.peer_bytes_served += l.size;
            // A parent's hit for a child's request is the child's parent
            // hit (the child's own line says only that it asked the parent).
            if let Some(child) = mesh.node_at(l.client) {
                if l.status == 200 && l.result.is_hit() && is_parent_of(mesh, child, server) {
                    nodes[child].parent_hits += 1;
                }
            }
        }
    }
    let mut unattributed = 0;
    for (ip, (requests, bytes)) in &origin.by_source {
        match mesh.node_at(*ip) {
            Some(i) => nodes[i].origin_bytes += bytes,
            None => unattributed += requests,
        }
    }
    LabReport {
        nodes,
        origin_requests: origin.requests,
        origin_bytes: origin.bytes,
        origin_unattributed: unattributed,
        ..LabReport::default()
    }
}

/// `cuttle simulate MESH TRACE --json --ttl T` on the trace the lab
/// replayed, when the binary has the subcommand; `None` when it has not.
pub fn simulate(options: &LabOptions) -> Option<Result<serde_json::Value, String>> {
    let has_simulate = Command::new(&options.cuttle)
        .args(["simulate", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_simulate {
        return None;
    }
    let out = Command::new(&options.cuttle)
        .arg("simulate")
        .arg(&options.mesh)
        .arg(lab_trace_path(options))
        .args(["--json", "--ttl", &ORIGIN_TTL_SECS.to_string()])
        .output();
    Some(match out {
        Err(e) => Err(e.to_string()),
        Ok(out) if !out.status.success() => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        Ok(out) => serde_json::from_slice(&out.stdout).map_err(|e| e.to_string()),
    })
}

/// One node's (or the total's) figures as the simulator predicts them:
/// a row of `cuttle simulate --json` (src/sim/report.rs `Row`; only the
/// keys the lab compares are read, the others are ignored).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct PredictionRow {
    pub node: String,
    pub requests: u64,
    /// Fractions of `requests` (0..1), as the simulator gives them.
    pub hit_ratio_local: f64,
    pub hit_ratio_sibling: f64,
    pub hit_ratio_parent: f64,
    pub origin_requests: u64,
    pub origin_bytes: u64,
}

/// One run of `cuttle simulate --json`.
#[derive(Debug, Clone, serde::Deserialize)]
struct SimulatedRun {
    nodes: Vec<PredictionRow>,
    total: PredictionRow,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct SimulateOutput {
    runs: Vec<SimulatedRun>,
}

/// The rows of `cuttle simulate --json`'s first (the lab runs one mesh
/// at a time: only) run: every node in mesh order, then the total (named
/// "total").
pub fn prediction_rows(json: &serde_json::Value) -> Result<Vec<PredictionRow>, String> {
    let output: SimulateOutput = serde_json::from_value(json.clone())
        .map_err(|e| format!("`cuttle simulate --json` output not understood: {e}"))?;
    let run = output
        .runs
        .into_iter()
        .next()
        .ok_or("`cuttle simulate --json` printed no run")?;
    let mut rows = run.nodes;
    rows.push(run.total);
    Ok(rows)
}

/// The issue's bounds on the simulator's error: hit ratios within this
/// many percentage points of the lab's, origin bytes within this percent.
pub const HIT_RATIO_BOUND_POINTS: f64 = 3.0;
pub const ORIGIN_BYTES_BOUND_PERCENT: f64 = 5.0;

/// The lab's figures and the simulator's, node by node, in the lab
/// table's units, then how far apart they are in total against the
/// issue's bounds.
pub fn comparison(report: &LabReport, predicted: &[PredictionRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lab vs simulator (--ttl {ORIGIN_TTL_SECS}), lab/sim:\n{:<10} {:>13} {:>11} {:>11} {:>11} {:>13} {:>23}",
        "node", "requests", "local%", "sibl%", "parent%", "origin", "origin_bytes"
    );
    let mut lab_rows: Vec<NodeFigures> = report.nodes.clone();
    lab_rows.push(report.total());
    for lab in &lab_rows {
        let Some(sim) = predicted.iter().find(|p| p.node == lab.name) else {
            let _ = writeln!(out, "{:<10} (not in the simulator's output)", lab.name);
            continue;
        };
        let pct = |x: f64| x * 100.0;
        let _ = writeln!(
            out,
            "{:<10} {:>13} {:>11} {:>11} {:>11} {:>13} {:>23}",
            lab.name,
            format!("{}/{}", lab.requests, sim.requests),
            format!(
                "{:.1}/{:.1}",
                percent(lab.local_hits, lab.requests),
                pct(sim.hit_ratio_local)
            ),
            format!(
                "{:.1}/{:.1}",
                percent(lab.sibling_hits, lab.requests),
                pct(sim.hit_ratio_sibling)
            ),
            format!(
                "{:.1}/{:.1}",
                percent(lab.parent_hits, lab.requests),
                pct(sim.hit_ratio_parent)
            ),
            format!("{}/{}", lab.origin_requests, sim.origin_requests),
            format!("{}/{}", lab.origin_bytes, sim.origin_bytes),
        );
    }
    if let Some(sim) = predicted.iter().find(|p| p.node == "total") {
        let _ = writeln!(out, "{}", differences(&report.total(), sim));
    }
    out
}

/// `sim - lab` in total: hit ratios in percentage points, origin bytes in
/// percent of the lab's, each marked ok or over against the bounds.
pub fn differences(lab: &NodeFigures, sim: &PredictionRow) -> String {
    let mark = |d: f64, bound: f64| if d.abs() <= bound { "ok" } else { "over" };
    let points =
        |lab_part: u64, sim_ratio: f64| sim_ratio * 100.0 - percent(lab_part, lab.requests);
    let mut parts: Vec<String> = [
        ("local", points(lab.local_hits, sim.hit_ratio_local)),
        ("sibling", points(lab.sibling_hits, sim.hit_ratio_sibling)),
        ("parent", points(lab.parent_hits, sim.hit_ratio_parent)),
    ]
    .iter()
    .map(|(name, d)| format!("{name} {d:+.1} pt {}", mark(*d, HIT_RATIO_BOUND_POINTS)))
    .collect();
    let bytes = if lab.origin_bytes == 0 {
        if sim.origin_bytes == 0 {
            "origin bytes +0.0% ok".to_string()
        } else {
            "origin bytes (none in the lab) over".to_string()
        }
    } else {
        let d =
            (sim.origin_bytes as f64 - lab.origin_bytes as f64) * 100.0 / lab.origin_bytes as f64;
        format!(
            "origin bytes {d:+.1}% {}",
            mark(d, ORIGIN_BYTES_BOUND_PERCENT)
        )
    };
    parts.push(bytes);
    format!(
        "sim - lab (bounds {HIT_RATIO_BOUND_POINTS} pt, {ORIGIN_BYTES_BOUND_PERCENT}%): {}",
        parts.join(", ")
    )
}

/// The lab table, then the simulator's prediction beside it or why there
/// is none.
pub fn full_report(options: &LabOptions, report: &LabReport) -> String {
    let mut out = table(report);
    match simulate(options) {
        None => out.push_str("simulator: not available\n"),
        Some(Err(e)) => {
            let _ = writeln!(out, "simulator: failed: {e}");
        }
        Some(Ok(json)) => match prediction_rows(&json) {
            Ok(rows) => out.push_str(&comparison(report, &rows)),
            Err(e) => {
                let _ = writeln!(out, "simulator: {e}:\n{json}");
            }
        },
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_classified_as_squid_writes_them() {
        let l = parse_log_line("1796569032.014     34 127.18.255.254 TCP_MISS/200 90901 GET http://127.0.0.1:43545/a - FIRST_PARENT_MISS/127.18.5.10 application/octet-stream").unwrap();
        assert_eq!(l.status, 200);
        assert!(!l.result.is_hit());
        assert!(is_parent(l.hierarchy));
        let l = parse_log_line("1796569032.014      0 127.18.255.254 TCP_MEM_HIT/200 4361 GET http://127.0.0.1:43545/a - HIER_NONE/- application/octet-stream").unwrap();
        assert!(l.result.is_hit());
        let l = parse_log_line("1796569032.014      2 127.18.255.254 TCP_CF_HIT/200 4361 GET http://127.0.0.1:43545/a - HIER_NONE/- application/octet-stream").unwrap();
        assert!(l.result.is_hit());
        let l = parse_log_line("1796569032.014      2 127.18.255.254 TCP_MISS/200 4361 GET http://127.0.0.1:43545/a - TIMEOUT_FIRSTUP_PARENT/127.18.5.10 application/octet-stream").unwrap();
        assert!(is_parent(l.hierarchy));
        let l = parse_log_line("1796569032.014      2 127.18.255.254 TCP_MISS/200 4361 GET http://127.0.0.1:43545/a - SIBLING_HIT/127.18.5.2 application/octet-stream").unwrap();
        assert!(is_sibling_hit(l.hierarchy));
    }

    #[test]
    fn the_mesh_s_own_traffic_and_probes_are_left_out() {
        let dir = std::env::temp_dir().join(format!("mesh-lab-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf =
            "http_port 127.18.9.1:3128\npid_filename none\ncache_peer 127.18.9.2 parent 3128 0\n";
        std::fs::write(dir.join("child.conf"), conf).unwrap();
        std::fs::write(
            dir.join("parent.conf"),
            "http_port 127.18.9.2:3128\npid_filename none\n",
        )
        .unwrap();
        let mesh = Mesh::from_str(
            "[nodes.child]\nconfig = \"child.conf\"\naddress = \"127.18.9.1\"\nclients = [\"10.1.0.0/16\"]\n\
             [nodes.parent]\nconfig = \"parent.conf\"\naddress = \"127.18.9.2\"\n",
            &dir.join("mesh.toml"),
        )
        .unwrap();
        let child_log = "\
1.000      5 127.18.255.254 TCP_MISS/200 500 GET http://127.0.0.1:9/a - FIRST_PARENT_MISS/127.18.9.2 -
1.100      0 127.18.255.254 TCP_MEM_HIT/200 500 GET http://127.0.0.1:9/a - HIER_NONE/- -
1.200      5 127.18.255.254 TCP_MISS/200 600 GET http://127.0.0.1:9/b - FIRST_PARENT_MISS/127.18.9.2 -
1.300      0 127.18.9.2 NONE_NONE/000 0 - error:transaction-end-before-headers - HIER_NONE/- -
";
        let parent_log = "\
1.000      5 127.18.9.1 TCP_MISS/200 480 GET http://127.0.0.1:9/a - HIER_DIRECT/127.0.0.1 -
1.200      0 127.18.9.1 TCP_MEM_HIT/200 580 GET http://127.0.0.1:9/b - HIER_NONE/- -
1.300      0 127.18.9.1 UDP_MISS/000 50 ICP_QUERY http://127.0.0.1:9/b - HIER_NONE/- -
1.400      0 127.18.9.1 TCP_MISS/200 375 GET http://127.18.9.2:3128/squid-internal-dynamic/netdb - HIER_DIRECT/127.18.9.2 -
";
        let logs = [dir.join("child.log"), dir.join("parent.log")];
        std::fs::write(&logs[0], child_log).unwrap();
        std::fs::write(&logs[1], parent_log).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let origin = OriginTotals {
            requests: 1,
            bytes: 400,
            by_source: HashMap::from([(ip("127.18.9.2"), (1, 400))]),
        };
        let report = read_logs(&mesh, &logs, &origin);
        let child = &report.nodes[0];
        assert_eq!(
            (
                child.requests,
                child.local_hits,
                child.to_parent,
                child.parent_hits
            ),
            (3, 1, 2, 1)
        );
        assert_eq!(child.peer_requests_served, 0);
        let parent = &report.nodes[1];
        assert_eq!(
            (parent.requests, parent.origin_requests, parent.origin_bytes),
            (0, 1, 400)
        );
        assert_eq!(
            (parent.peer_requests_served, parent.peer_bytes_served),
            (2, 1060)
        );
        assert_eq!(parent.udp_queries, 1);
        assert_eq!(report.origin_unattributed, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `cuttle simulate --json` on examples/mesh5/squid.toml and a
    /// 20,000-request lab trace, as the first full lab run printed it.
    const CAPTURED_SIMULATE_JSON: &str = r#"{"runs":[{"mesh":"/work/main/examples/mesh5/squid.toml","nodes":[{"node":"parent","requests":0,"hit_ratio_local":0.0,"hit_ratio_sibling":0.0,"hit_ratio_parent":0.0,"origin_requests":8221,"origin_bytes":110508486,"bytes_hops":0.0,"latency_mean_ms":0.0,"latency_p50_ms":0.0,"latency_p99_ms":0.0,"icp_sent":11355,"htcp_sent":0,"peer_requests":8221,"failed":0},{"node":"sibling1","requests":6797,"hit_ratio_local":0.4378402236280712,"hit_ratio_sibling":0.1543327938796528,"hit_ratio_parent":0.0,"origin_requests":0,"origin_bytes":0,"bytes_hops":107197222.0,"latency_mean_ms":26.48639106834673,"latency_p50_ms":8.999715848792048,"latency_p99_ms":61.022102961652806,"icp_sent":18997,"htcp_sent":0,"peer_requests":1107,"failed":0},{"node":"sibling2","requests":6626,"hit_ratio_local":0.42680350135828554,"hit_ratio_sibling":0.16163597947479627,"hit_ratio_parent":0.0,"origin_requests":0,"origin_bytes":0,"bytes_hops":77205573.0,"latency_mean_ms":26.77467553909905,"latency_p50_ms":8.999715848792048,"latency_p99_ms":61.022102961652806,"icp_sent":18951,"htcp_sent":0,"peer_requests":1017,"failed":0},{"node":"sibling3","requests":6577,"hit_ratio_local":0.4319598601185951,"hit_ratio_sibling":0.15417363539607723,"hit_ratio_parent":0.0,"origin_requests":0,"origin_bytes":0,"bytes_hops":76936981.0,"latency_mean_ms":26.849931589027697,"latency_p50_ms":8.999715848792048,"latency_p99_ms":61.022102961652806,"icp_sent":18827,"htcp_sent":0,"peer_requests":1010,"failed":0}],"total":{"node":"total","requests":20000,"hit_ratio_local":0.43225,"hit_ratio_sibling":0.1567,"hit_ratio_parent":0.0,"origin_requests":8221,"origin_bytes":110508486,"bytes_hops":261339776.0,"latency_mean_ms":26.70145001373291,"latency_p50_ms":8.999715848792048,"latency_p99_ms":61.022102961652806,"icp_sent":68130,"htcp_sent":0,"peer_requests":11355,"failed":0},"skipped_malformed":0,"skipped_not_cacheable":0,"skipped_errors":0,"unrouted":0}]}"#;

    #[test]
    fn the_simulator_s_json_is_read_node_by_node_and_in_total() {
        let json: serde_json::Value = serde_json::from_str(CAPTURED_SIMULATE_JSON).unwrap();
        let rows = prediction_rows(&json).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(
            names,
            ["parent", "sibling1", "sibling2", "sibling3", "total"]
        );
        assert_eq!(
            rows[1],
            PredictionRow {
                node: "sibling1".into(),
                requests: 6797,
                hit_ratio_local: 0.4378402236280712,
                hit_ratio_sibling: 0.1543327938796528,
                hit_ratio_parent: 0.0,
                origin_requests: 0,
                origin_bytes: 0,
            }
        );
        assert_eq!(
            (rows[0].origin_requests, rows[0].origin_bytes),
            (8221, 110508486)
        );
        assert_eq!(
            (rows[4].requests, rows[4].hit_ratio_local),
            (20000, 0.43225)
        );
        assert!(prediction_rows(&serde_json::json!({"nodes": []})).is_err());
    }

    #[test]
    fn the_differences_are_points_and_percent_marked_against_the_bounds() {
        // The lab's total of the same run: 20000 requests, 8640 local hits
        // (43.2%), 1580 sibling hits (7.9%), 1540 parent hits (7.7%),
        // 110718919 origin bytes.
        let lab = NodeFigures {
            name: "total".into(),
            requests: 20000,
            local_hits: 8640,
            sibling_hits: 1580,
            parent_hits: 1540,
            origin_bytes: 110718919,
            ..NodeFigures::default()
        };
        let json: serde_json::Value = serde_json::from_str(CAPTURED_SIMULATE_JSON).unwrap();
        let sim = prediction_rows(&json).unwrap().pop().unwrap();
        // local 43.225 - 43.2 = +0.025 pt; sibling 15.67 - 7.9 = +7.77 pt;
        // parent 0 - 7.7 = -7.7 pt; bytes (110508486 - 110718919) /
        // 110718919 = -0.19%.
        assert_eq!(
            differences(&lab, &sim),
            "sim - lab (bounds 3 pt, 5%): local +0.0 pt ok, sibling +7.8 pt over, \
             parent -7.7 pt over, origin bytes -0.2% ok"
        );
        let report = LabReport {
            nodes: vec![NodeFigures {
                name: "sibling1".into(),
                ..lab.clone()
            }],
            ..LabReport::default()
        };
        let shown = comparison(&report, &prediction_rows(&json).unwrap());
        assert!(
            shown.contains("sibling1      20000/6797   43.2/43.8    7.9/15.4     7.7/0.0"),
            "{shown}"
        );
    }

    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let ms: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(latency_summary(&ms), "50.5/50.0/99.0");
        assert_eq!(latency_summary(&[7.0]), "7.0/7.0/7.0");
        assert_eq!(latency_summary(&[]), "-");
    }
}
