//! A real Squid 5.7 as the child of cuttle, over ICP: Squid's
//! `cache_peer CUTTLE parent HTTP ICP no-digest` queries cuttle for every
//! request (no `no-query`). What cuttle holds comes back as ICP_HIT and
//! Squid fetches it from cuttle (`PARENT_HIT`, origin not contacted again);
//! what cuttle lacks gets ICP_MISS, and Squid sends the request to its only
//! parent anyway (`FIRST_PARENT_MISS`, squid-spec 1.6 and 3.2), with or
//! without `never_direct`; cuttle fetches it from the origin and keeps it,
//! so the next request through Squid is a `PARENT_HIT`. Each node on its
//! own loopback address (127.0.5.x): Squid ignores ICP from its own IP.
//! Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use peer_lab::{
    free_udp_port, get, log_lines, start_cuttle, tail, text_body, text_origin, CuttleNode, Squid,
    STARTUP,
};
use support::TempDir;

/// cuttle on `cuttle_ip` answering ICP on its own address to `squid_ip`
/// only, every ICP reply logged; returns it and its ICP port.
fn start_parent(dir: &Path, cuttle_ip: Ipv4Addr, squid_ip: Ipv4Addr) -> (CuttleNode, u16) {
    let icp_port = free_udp_port(cuttle_ip);
    let cuttle = start_cuttle(
        dir,
        cuttle_ip,
        &format!(
            "icp_port {icp_port}\n\
             udp_incoming_address {cuttle_ip}\n\
             acl squid_child src {squid_ip}/32\n\
             icp_access allow squid_child\n\
             icp_access deny all\n\
             log_icp_queries on"
        ),
    );
    // cuttle prints where ICP listens once the socket is bound.
    cuttle.wait_output(&format!("cuttle: ICP on {cuttle_ip}:{icp_port}"), STARTUP);
    (cuttle, icp_port)
}

/// Squid on `squid_ip` with cuttle as its only parent, ICP-queried.
/// Squid.start already sets the lab musts (pinger off, minimum_direct_rtt 0,
/// udp_incoming/outgoing_address = `squid_ip`, so its queries leave from
/// its own address and icp_port, where cuttle's replies come back). Here:
/// - icp_query_timeout 2000: the dynamic timeout starts at 5 ms (squid-spec
///   1.7); a fixed one keeps a slow test machine from logging TIMEOUT_.
/// - cache deny all: Squid keeps nothing, so every request is selected anew.
/// - server_persistent_connections off: Squid 5.7 logs the hierarchy code
///   of the connection it uses, and a connection reused from its pool keeps
///   the code of the request that opened it (seen: a FIRST_PARENT_MISS
///   request after a PARENT_HIT logged PARENT_HIT, while cache.log said
///   "adding FIRST_PARENT_MISS"). A new connection per request logs the
///   code Squid's selection chose.
/// - debug_options 15,2: cache.log then says when Squid's TCP probe of the
///   parent succeeded; Squid uses no peer before that (squid-spec 1.8).
fn start_child(
    dir: &Path,
    squid_ip: Ipv4Addr,
    cuttle: &CuttleNode,
    icp: u16,
    extra: &str,
) -> Squid {
    let squid = Squid::start(
        dir,
        squid_ip,
        "127.0.0.1/32",
        &format!(
            "cache_peer {} parent {} {icp} no-digest\n\
             icp_query_timeout 2000\n\
             cache deny all\n\
             server_persistent_connections off\n\
             debug_options ALL,1 15,2\n\
             {extra}",
            cuttle.addr.ip(),
            cuttle.addr.port()
        ),
    );
    squid.wait_probed(cuttle.addr);
    squid
}

/// The fields of one access.log line a test compares: client address,
/// result code/status, method and hierarchy code/address, plus the size
/// for ICP lines (HTTP sizes depend on headers and are left out).
type Fields = (String, String, String, String, String);

fn fields(line: &[String]) -> Fields {
    let f = |i: usize| line.get(i).cloned().unwrap_or_default();
    let size = if f(5) == "ICP_QUERY" {
        f(4)
    } else {
        "-".into()
    };
    (f(2), f(3), size, f(5), f(8))
}

/// An ICP reply cuttle logged for `client` (size: 20-byte header, the URL,
/// its NUL; no elapsed time, no hierarchy).
fn icp_line(client: &str, result: &str, url: &str) -> Fields {
    let size = (20 + url.len() + 1).to_string();
    (
        client.into(),
        result.into(),
        size,
        "ICP_QUERY".into(),
        "HIER_NONE/-".into(),
    )
}

/// A GET logged for `client`.
fn get_line(client: &str, result: &str, hierarchy: &str) -> Fields {
    (
        client.into(),
        result.into(),
        "-".into(),
        "GET".into(),
        hierarchy.into(),
    )
}

/// Lines of `log` for `url`: the `want` expected ones, and then nothing
/// more after a moment (an extra query or fetch would show).
fn exactly(log: &Path, url: &str, want: usize) -> Vec<Vec<String>> {
    let lines = log_lines(log, url, want);
    if lines.len() != want {
        return lines;
    }
    std::thread::sleep(Duration::from_millis(300));
    log_lines(log, url, want)
}

/// Squid and its parent cuttle, read through their access.logs.
struct Lab<'a> {
    squid: &'a Squid,
    cuttle: &'a CuttleNode,
}

impl Lab<'_> {
    fn diag(&self) -> String {
        format!(
            "\nsquid access.log:\n{}\ncuttle access.log:\n{}\ncuttle output:\n{}\nsquid cache.log:\n{}",
            tail(&self.squid.access_log(), 10),
            tail(&self.cuttle.log, 12),
            self.cuttle.output(),
            tail(&self.squid.dir.join("cache.log"), 10)
        )
    }

    /// Squid's access.log lines for `url` (`want` of them, then no more).
    fn squid_says(&self, url: &str, want: usize) -> Vec<Fields> {
        exactly(&self.squid.access_log(), url, want)
            .iter()
            .map(|l| fields(l))
            .collect()
    }

    /// cuttle's access.log lines for `url`, `want` in all: its ICP replies
    /// and its HTTP requests, each in order. The two are kept apart because
    /// an ICP reply is logged after it is sent, and Squid's fetch that
    /// follows it may be logged first.
    fn cuttle_says(&self, url: &str, want: usize) -> (Vec<Fields>, Vec<Fields>) {
        let all: Vec<Fields> = exactly(&self.cuttle.log, url, want)
            .iter()
            .map(|l| fields(l))
            .collect();
        all.into_iter().partition(|f| f.3 == "ICP_QUERY")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squid_child_gets_parent_hit_from_cuttle_and_sends_its_miss_through_cuttle() {
    let squid_ip = Ipv4Addr::new(127, 0, 5, 1);
    let cuttle_ip = Ipv4Addr::new(127, 0, 5, 2);
    let (sq, cu) = (squid_ip.to_string(), cuttle_ip.to_string());
    let tmp = TempDir::new("squid-child");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/held", "/lacking"]).await;
    let held = origin.url("/held");
    let lacking = origin.url("/lacking");

    let (cuttle, icp) = start_parent(&tmp.path().join("cuttle"), cuttle_ip, squid_ip);
    // cuttle holds /held before Squid exists.
    assert_eq!(get(cuttle.addr, &held).await, (200, text_body("/held")));
    assert_eq!(origin.count("/held"), 1);

    // never_direct: Squid may only go through its parent.
    let squid = start_child(
        &tmp.path().join("squid"),
        squid_ip,
        &cuttle,
        icp,
        "never_direct allow all",
    );
    let lab = Lab {
        squid: &squid,
        cuttle: &cuttle,
    };
    let parent_hit = format!("PARENT_HIT/{cu}");
    let parent_miss = format!("FIRST_PARENT_MISS/{cu}");

    // 1. What cuttle holds: ICP_HIT, fetched from cuttle, origin untouched.
    assert_eq!(
        get(squid.http_addr(), &held).await,
        (200, text_body("/held")),
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.squid_says(&held, 1),
        [get_line("127.0.0.1", "TCP_MISS/200", &parent_hit)],
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.cuttle_says(&held, 3),
        (
            vec![icp_line(&sq, "UDP_HIT/000", &held)],
            vec![
                get_line("127.0.0.1", "TCP_MISS/200", "HIER_DIRECT/127.0.0.1"),
                get_line(&sq, "TCP_MEM_HIT/200", "HIER_NONE/-"),
            ]
        ),
        "{}",
        lab.diag()
    );
    assert_eq!(
        origin.count("/held"),
        1,
        "the origin was asked again{}",
        lab.diag()
    );

    // 2. What cuttle lacks: ICP_MISS; Squid's only parent is the first
    // parent to miss and gets the request; cuttle fetches and keeps it.
    assert_eq!(
        get(squid.http_addr(), &lacking).await,
        (200, text_body("/lacking")),
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.squid_says(&lacking, 1),
        [get_line("127.0.0.1", "TCP_MISS/200", &parent_miss)],
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.cuttle_says(&lacking, 2),
        (
            vec![icp_line(&sq, "UDP_MISS/000", &lacking)],
            vec![get_line(&sq, "TCP_MISS/200", "HIER_DIRECT/127.0.0.1")]
        ),
        "{}",
        lab.diag()
    );
    assert_eq!(origin.count("/lacking"), 1, "{}", lab.diag());
    let via = origin.last("/lacking").header("via");
    assert!(
        via.contains(&format!("squid-{sq}")) && via.contains(&format!("cuttle-{cu}")),
        "the origin was not reached through Squid and then cuttle: {via:?}"
    );

    // 3. Now cuttle holds it: the next request through Squid is a parent hit.
    assert_eq!(
        get(squid.http_addr(), &lacking).await,
        (200, text_body("/lacking")),
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.squid_says(&lacking, 2)[1..],
        [get_line("127.0.0.1", "TCP_MISS/200", &parent_hit)],
        "{}",
        lab.diag()
    );
    let (icp_lines, http_lines) = lab.cuttle_says(&lacking, 4);
    assert_eq!(
        icp_lines[1..],
        [icp_line(&sq, "UDP_HIT/000", &lacking)],
        "{}",
        lab.diag()
    );
    assert_eq!(
        http_lines[1..],
        [get_line(&sq, "TCP_MEM_HIT/200", "HIER_NONE/-")],
        "{}",
        lab.diag()
    );
    assert_eq!(origin.count("/lacking"), 1, "{}", lab.diag());
}

/// Without never_direct Squid could go DIRECT (direct = MAYBE, squid-spec
/// 3.2), but with `prefer_direct off` (the default) and no NetDB data
/// (pinger off, minimum_direct_rtt 0) the parent that answered MISS comes
/// first: Squid 5.7 still routes the miss through cuttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squid_child_free_to_go_direct_still_sends_its_miss_through_cuttle() {
    let squid_ip = Ipv4Addr::new(127, 0, 5, 3);
    let cuttle_ip = Ipv4Addr::new(127, 0, 5, 4);
    let (sq, cu) = (squid_ip.to_string(), cuttle_ip.to_string());
    let tmp = TempDir::new("squid-child-direct");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/lacking"]).await;
    let lacking = origin.url("/lacking");

    let (cuttle, icp) = start_parent(&tmp.path().join("cuttle"), cuttle_ip, squid_ip);
    let squid = start_child(&tmp.path().join("squid"), squid_ip, &cuttle, icp, "");
    let lab = Lab {
        squid: &squid,
        cuttle: &cuttle,
    };

    for _ in 0..2 {
        assert_eq!(
            get(squid.http_addr(), &lacking).await,
            (200, text_body("/lacking")),
            "{}",
            lab.diag()
        );
    }
    assert_eq!(
        lab.squid_says(&lacking, 2),
        [
            get_line(
                "127.0.0.1",
                "TCP_MISS/200",
                &format!("FIRST_PARENT_MISS/{cu}")
            ),
            get_line("127.0.0.1", "TCP_MISS/200", &format!("PARENT_HIT/{cu}")),
        ],
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.cuttle_says(&lacking, 4),
        (
            vec![
                icp_line(&sq, "UDP_MISS/000", &lacking),
                icp_line(&sq, "UDP_HIT/000", &lacking),
            ],
            vec![
                get_line(&sq, "TCP_MISS/200", "HIER_DIRECT/127.0.0.1"),
                get_line(&sq, "TCP_MEM_HIT/200", "HIER_NONE/-"),
            ]
        ),
        "{}",
        lab.diag()
    );
    // Only cuttle went to the origin, once.
    assert_eq!(origin.count("/lacking"), 1, "{}", lab.diag());
    let via = origin.last("/lacking").header("via");
    assert!(
        via.contains(&format!("squid-{sq}")) && via.contains(&format!("cuttle-{cu}")),
        "the origin was not reached through Squid and then cuttle: {via:?}"
    );
}
