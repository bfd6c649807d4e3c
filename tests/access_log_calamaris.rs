//! Writes an access.log of known content through `access_log::Logger` and checks that Debian's calamaris (a Squid log analyser) reports exactly the request, hit and byte totals that were written. Fails, never skips, when calamaris is missing.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use cuttle::access_log::{Entry, Hierarchy, HierarchyCode, Logger, ResultCode, ResultTag};
use cuttle::config::{load_str, LoadOptions};
use support::TempDir;

/// The transactions: hits, misses, a revalidation, denials, ICP answers,
/// from four clients and two ICP peers, to three sites.
fn entries() -> Vec<Entry> {
    let clients = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.5.7"];
    let sites = ["example.com", "www.example.org", "static.example.net"];
    let direct = || Hierarchy::new(HierarchyCode::HierDirect, Some("192.0.2.80"));
    let mut out = Vec::new();
    let mut n: u64 = 0;
    let mut add = |tag: ResultTag,
                   status: u16,
                   size: u64,
                   method: &str,
                   hierarchy: Hierarchy,
                   client: Option<&str>| {
        let udp = tag.is_udp();
        let client = client.unwrap_or(clients[n as usize % clients.len()]);
        let site = sites[n as usize % sites.len()];
        out.push(Entry {
            end: UNIX_EPOCH + Duration::from_millis(1_795_371_307_250 + n * 7_013),
            elapsed: Duration::from_millis(if udp { 0 } else { 3 + n * 11 % 250 }),
            client: Some(client.parse::<IpAddr>().unwrap()),
            result: ResultCode::new(tag),
            status,
            size,
            method: method.into(),
            url: format!("http://{site}/object/{n}?session=abc"),
            user: None,
            hierarchy,
            content_type: (!udp).then(|| "text/html; charset=utf-8".to_string()),
        });
        n += 1;
    };
    for i in 0..6 {
        add(
            ResultTag::TcpHit,
            200,
            1_000 + 137 * i,
            "GET",
            Hierarchy::none(),
            None,
        );
    }
    for i in 0..3 {
        add(
            ResultTag::TcpMemHit,
            200,
            20_000 + 11 * i,
            "GET",
            Hierarchy::none(),
            None,
        );
    }
    for i in 0..2 {
        add(
            ResultTag::TcpRefreshUnmodified,
            200,
            4_321 + i,
            "GET",
            direct(),
            None,
        );
    }
    for i in 0..8 {
        add(
            ResultTag::TcpMiss,
            200,
            50_000 + 999 * i,
            "GET",
            direct(),
            None,
        );
    }
    add(
        ResultTag::TcpMiss,
        200,
        77_777,
        "GET",
        direct().timed_out(),
        None,
    );
    for i in 0..2 {
        let sibling = Hierarchy::new(HierarchyCode::SiblingHit, Some("10.1.0.11"));
        add(ResultTag::TcpMiss, 200, 8_000 + i, "GET", sibling, None);
    }
    for _ in 0..3 {
        add(
            ResultTag::TcpDenied,
            403,
            3_900,
            "GET",
            Hierarchy::none(),
            Some("192.168.5.7"),
        );
    }
    for peer in ["10.1.0.11", "10.1.0.12", "10.1.0.11", "10.1.0.12"] {
        add(
            ResultTag::UdpHit,
            0,
            52,
            "ICP_QUERY",
            Hierarchy::none(),
            Some(peer),
        );
    }
    for peer in [
        "10.1.0.12",
        "10.1.0.12",
        "10.1.0.11",
        "10.1.0.12",
        "10.1.0.11",
    ] {
        add(
            ResultTag::UdpMiss,
            0,
            52,
            "ICP_QUERY",
            Hierarchy::none(),
            Some(peer),
        );
    }
    out
}

/// The numbers of the row `label` in the report section `# title`.
fn row(report: &str, title: &str, label: &str) -> Vec<f64> {
    let section = report
        .split("\n# ")
        .find(|s| s.starts_with(title))
        .unwrap_or_else(|| panic!("no section \"# {title}\" in the report:\n{report}"));
    for line in section.lines() {
        let Some(rest) = line.strip_prefix(label) else {
            continue;
        };
        if !rest.starts_with(' ') {
            continue;
        }
        let numbers: Option<Vec<f64>> = rest.split_whitespace().map(|w| w.parse().ok()).collect();
        if let Some(numbers) = numbers.filter(|n| !n.is_empty()) {
            return numbers;
        }
    }
    panic!("no row \"{label}\" in section \"# {title}\":\n{section}");
}

/// (requests, bytes) of a row of a by-status or by-host section.
fn count_bytes(report: &str, title: &str, label: &str, bytes_column: usize) -> (u64, u64) {
    let r = row(report, title, label);
    (r[0] as u64, r[bytes_column] as u64)
}

/// The value of a Summary line (its last number).
fn summary(report: &str, label: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no summary line \"{label}\" in the report:\n{report}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[derive(Default, Debug, PartialEq, Eq, Clone, Copy)]
struct Tally {
    requests: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, e: &Entry) {
        self.requests += 1;
        self.bytes += e.size;
    }
}

#[test]
fn calamaris_reports_what_the_logger_wrote() {
    let dir = TempDir::new("calamaris");
    let path = dir.path().join("access.log");
    let loaded = load_str(
        &format!("access_log stdio:{} squid\n", path.display()),
        "calamaris.conf",
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let logger = Logger::from_config(&loaded.config).expect("open the log");
    let entries = entries();
    for e in &entries {
        logger.log(e);
    }
    drop(logger); // flushes
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written.lines().count(), entries.len());

    // What calamaris must find, computed from the entries. Its hit rule
    // (`TCP_(\w*HIT|REDIRECT|REFRESH_UNMODIFIED)`) agrees with Squid's
    // `is_hit` on these tags; a TCP line that is not a hit counts as MISS
    // when it was forwarded and as ERROR when its hierarchy is HIER_NONE.
    let mut all = Tally::default();
    let (mut tcp, mut tcp_hit, mut tcp_miss, mut tcp_error) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let (mut udp, mut udp_hit, mut udp_miss) =
        (Tally::default(), Tally::default(), Tally::default());
    let mut by_tag: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_hierarchy: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_tcp_client: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_udp_client: BTreeMap<String, Tally> = BTreeMap::new();
    for e in &entries {
        all.add(e);
        let client = e.client.unwrap().to_string();
        by_tag.entry(e.result.to_string()).or_default().add(e);
        if e.method == "ICP_QUERY" {
            udp.add(e);
            by_udp_client.entry(client).or_default().add(e);
            if e.result.tag == ResultTag::UdpHit {
                udp_hit.add(e)
            } else {
                udp_miss.add(e)
            }
            continue;
        }
        tcp.add(e);
        by_tcp_client.entry(client).or_default().add(e);
        if e.result.is_hit() {
            tcp_hit.add(e);
        } else if e.hierarchy.code == HierarchyCode::HierNone {
            tcp_error.add(e);
        } else {
            tcp_miss.add(e);
        }
        if e.hierarchy.code != HierarchyCode::HierNone {
            let h = e.hierarchy.to_string();
            by_hierarchy
                .entry(h.split('/').next().unwrap().to_string())
                .or_default()
                .add(e);
        }
    }
    // The mix is what this test claims to cover.
    assert_eq!((all.requests, tcp.requests, udp.requests), (34, 25, 9));
    assert_eq!(
        (tcp_hit.requests, tcp_miss.requests, tcp_error.requests),
        (11, 11, 3)
    );
    assert_eq!((udp_hit.requests, udp_miss.requests), (4, 5));
    assert_eq!((by_tcp_client.len(), by_udp_client.len()), (4, 2));

    let log = std::fs::File::open(&path).unwrap();
    let output = match Command::new("calamaris")
        .args([
            "--input-format",
            "squid",
            "--status-report",
            "--requester-report",
            "-1",
            "--requester-report-no-dns-lookup",
        ])
        .stdin(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("calamaris is not installed; this test needs it: apt-get install -y calamaris")
        }
        Err(e) => panic!("cannot run calamaris: {e}"),
    };
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "calamaris failed ({}): {}\n{report}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    println!("{report}"); // shown with --nocapture

    // Summary.
    assert_eq!(
        summary(&report, "lines parsed:") as u64,
        all.requests,
        "{report}"
    );
    assert_eq!(summary(&report, "invalid lines:") as u64, 0, "{report}");
    assert_eq!(
        summary(&report, "Total amount:") as u64,
        all.requests,
        "{report}"
    );
    // calamaris counts the TCP clients here.
    assert_eq!(
        summary(&report, "unique hosts/users:") as usize,
        by_tcp_client.len(),
        "{report}"
    );
    assert_eq!(
        summary(&report, "Total Bandwidth:") as u64,
        all.bytes,
        "{report}"
    );
    assert_eq!(
        summary(&report, "Total amount cached:") as u64,
        tcp_hit.requests + udp_hit.requests,
        "{report}"
    );
    assert_eq!(
        summary(&report, "Bandwidth savings:") as u64,
        tcp_hit.bytes + udp_hit.bytes,
        "{report}"
    );
    let hit_rate = 100.0 * (tcp_hit.requests + udp_hit.requests) as f64 / all.requests as f64;
    assert!(
        (summary(&report, "Request hit rate:") - hit_rate).abs() < 0.006,
        "{report}"
    );

    // Requests by method.
    let method = "Incoming requests by method";
    assert_eq!(
        count_bytes(&report, method, "GET", 3),
        (tcp.requests, tcp.bytes)
    );
    assert_eq!(
        count_bytes(&report, method, "ICP_QUERY", 3),
        (udp.requests, udp.bytes)
    );

    // UDP (ICP) requests: hits and misses, per result code.
    let s = "Incoming UDP-requests by status";
    let t = |x: Tally| (x.requests, x.bytes);
    assert_eq!(count_bytes(&report, s, "HIT", 3), t(udp_hit), "{report}");
    assert_eq!(count_bytes(&report, s, "MISS", 3), t(udp_miss), "{report}");
    assert_eq!(count_bytes(&report, s, "Sum", 3), t(udp), "{report}");
    assert_eq!(count_bytes(&report, s, " UDP_HIT", 3), t(by_tag["UDP_HIT"]));
    assert_eq!(
        count_bytes(&report, s, " UDP_MISS", 3),
        t(by_tag["UDP_MISS"])
    );

    // TCP requests: hits, misses, errors, per result code.
    let s = "Incoming TCP-requests by status";
    assert_eq!(count_bytes(&report, s, "HIT", 3), t(tcp_hit), "{report}");
    assert_eq!(count_bytes(&report, s, "MISS", 3), t(tcp_miss), "{report}");
    assert_eq!(
        count_bytes(&report, s, "ERROR", 3),
        t(tcp_error),
        "{report}"
    );
    assert_eq!(count_bytes(&report, s, "Sum", 3), t(tcp), "{report}");
    for tag in [
        "TCP_HIT",
        "TCP_MEM_HIT",
        "TCP_REFRESH_UNMODIFIED",
        "TCP_DENIED",
    ] {
        assert_eq!(
            count_bytes(&report, s, &format!(" {tag}"), 3),
            t(by_tag[tag]),
            "{tag}"
        );
    }
    // TCP_MISS appears under MISS (forwarded ones) only: the denials are TCP_DENIED.
    assert_eq!(
        count_bytes(&report, s, " TCP_MISS", 3),
        t(by_tag["TCP_MISS"])
    );

    // Where misses went (hierarchy codes).
    let s = "Outgoing requests by status";
    for (code, tally) in &by_hierarchy {
        assert_eq!(
            count_bytes(&report, s, &format!(" {code}"), 3),
            t(*tally),
            "{code}"
        );
    }
    assert_eq!(by_hierarchy.len(), 3); // HIER_DIRECT, TIMEOUT_HIER_DIRECT, SIBLING_HIT

    // Per client.
    for (client, tally) in &by_tcp_client {
        let s = "Incoming TCP-requests by host";
        assert_eq!(count_bytes(&report, s, client, 3), t(*tally), "{client}");
    }
    for (client, tally) in &by_udp_client {
        let s = "Incoming UDP-requests by host";
        assert_eq!(count_bytes(&report, s, client, 2), t(*tally), "{client}");
    }
}
