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

/// One node's (or the total's) figures as the simulator predicts them.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    pub node: String,
    /// Every number the simulator gives for it, by its JSON key.
    pub figures: Vec<(String, f64)>,
}

/// THE ONE PLACE TO ADAPT to `cuttle simulate --json`'s output (the
/// simulator is another work item; no key names were agreed): rows to
/// show beside the lab's table. It reads a `nodes` array (each with a
/// `name`) or object (keyed by node name) and a `total` object, and keeps
/// every number of each, so whatever keys the simulator uses are shown.
pub fn prediction_rows(json: &serde_json::Value) -> Vec<PredictionRow> {
    let row = |node: String, v: &serde_json::Value| PredictionRow {
        node,
        figures: v
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut rows = Vec::new();
    match json.get("nodes") {
        Some(serde_json::Value::Array(items)) => {
            for v in items {
                let name = v.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                rows.push(row(name.to_string(), v));
            }
        }
        Some(serde_json::Value::Object(map)) => {
            for (name, v) in map {
                rows.push(row(name.clone(), v));
            }
        }
        _ => {}
    }
    if let Some(total) = json.get("total") {
        rows.push(row("total".into(), total));
    }
    rows
}

/// The lab table, then the simulator's prediction or why there is none.
pub fn full_report(options: &LabOptions, report: &LabReport) -> String {
    let mut out = table(report);
    match simulate(options) {
        None => out.push_str("simulator: not available\n"),
        Some(Err(e)) => {
            let _ = writeln!(out, "simulator: failed: {e}");
        }
        Some(Ok(json)) => {
            let rows = prediction_rows(&json);
            if rows.is_empty() {
                let _ = writeln!(out, "simulator (JSON not recognised):\n{json}");
            } else {
                let _ = writeln!(out, "simulator (--ttl {ORIGIN_TTL_SECS}):");
                for row in rows {
                    let _ = write!(out, "{:<10}", row.node);
                    for (key, value) in row.figures {
                        let _ = write!(out, " {key}={value}");
                    }
                    out.push('\n');
                }
            }
        }
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

    #[test]
    fn every_number_of_the_simulator_s_nodes_and_total_is_kept() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"nodes": [{"name": "a", "hit_ratio": 0.5, "note": "x"}], "total": {"origin_bytes": 10}}"#,
        )
        .unwrap();
        let rows = prediction_rows(&json);
        assert_eq!(
            rows,
            vec![
                PredictionRow {
                    node: "a".into(),
                    figures: vec![("hit_ratio".into(), 0.5)]
                },
                PredictionRow {
                    node: "total".into(),
                    figures: vec![("origin_bytes".into(), 10.0)]
                },
            ]
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
