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

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use peer_lab::{free_udp_port, log_lines, start_cuttle, tail, CuttleNode, Squid, STARTUP};
use support::{Origin, Reply, Req, TempDir};

fn body(tag: &str) -> String {
    (0..200).map(|i| format!("{tag} {i:04}\n")).collect()
}

async fn origin_with(paths: &[&str]) -> Origin {
    let origin = Origin::start().await;
    for p in paths {
        let text = body(p);
        origin.route(p, move |_| {
            Reply::ok(text.clone())
                .cc("max-age=3600")
                .header("content-type", "text/plain")
        });
    }
    origin
}

/// GET through a proxy at `addr`; returns (status, body).
async fn get(addr: SocketAddr, url: &str) -> (u16, String) {
    let r = Req::get(url).send_to(addr).await;
    (r.status, r.text())
}

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
    let ready = format!("cuttle: ICP on {cuttle_ip}:{icp_port}");
    let deadline = Instant::now() + STARTUP;
    while !cuttle.output().contains(&ready) {
        assert!(
            Instant::now() < deadline,
            "no ICP socket:\n{}",
            cuttle.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let probed = format!(
        "TCP connection to {}/{} succeeded",
        cuttle.addr.ip(),
        cuttle.addr.port()
    );
    let cache_log = squid.dir.join("cache.log");
    let deadline = Instant::now() + STARTUP;
    while !std::fs::read_to_string(&cache_log)
        .unwrap_or_default()
        .contains(&probed)
    {
        assert!(
            Instant::now() < deadline,
            "Squid's probe of cuttle did not succeed; cache.log:\n{}",
            tail(&cache_log, 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    squid
}

/// (client, result, size, method, hierarchy) of each line.
fn fields(lines: &[Vec<String>]) -> Vec<(String, String, String, String, String)> {
    lines
        .iter()
        .map(|l| {
            let f = |i: usize| l.get(i).cloned().unwrap_or_default();
            (f(2), f(3), f(4), f(5), f(8))
        })
        .collect()
}

fn t(
    client: &str,
    result: &str,
    size: &str,
    method: &str,
    hier: &str,
) -> (String, String, String, String, String) {
    (
        client.to_string(),
        result.to_string(),
        size.to_string(),
        method.to_string(),
        hier.to_string(),
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

/// Checks one request through Squid against both logs.
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

    /// Squid's access.log for `url`: (result, hierarchy) of each line.
    fn squid_says(&self, url: &str, want: usize) -> Vec<(String, String)> {
        fields(&exactly(&self.squid.access_log(), url, want))
            .into_iter()
            .map(|(client, result, _, method, hier)| {
                assert_eq!(
                    (client.as_str(), method.as_str()),
                    ("127.0.0.1", "GET"),
                    "{}",
                    self.diag()
                );
                (result, hier)
            })
            .collect()
    }

    fn cuttle_says(&self, url: &str, want: usize) -> Vec<(String, String, String, String, String)> {
        fields(&exactly(&self.cuttle.log, url, want))
    }
}

/// Size of cuttle's ICP reply: 20-byte header, the URL, its NUL.
fn icp_reply_size(url: &str) -> String {
    (20 + url.len() + 1).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squid_child_gets_parent_hit_from_cuttle_and_sends_its_miss_through_cuttle() {
    let squid_ip = Ipv4Addr::new(127, 0, 5, 1);
    let cuttle_ip = Ipv4Addr::new(127, 0, 5, 2);
    let (sq, cu) = (squid_ip.to_string(), format!("{cuttle_ip}"));
    let tmp = TempDir::new("squid-child");
    let origin = origin_with(&["/held", "/lacking"]).await;
    let held = origin.url("/held");
    let lacking = origin.url("/lacking");

    let (cuttle, icp) = start_parent(&tmp.path().join("cuttle"), cuttle_ip, squid_ip);
    // cuttle holds /held before Squid exists.
    assert_eq!(get(cuttle.addr, &held).await, (200, body("/held")));
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

    // 1. What cuttle holds: ICP_HIT, fetched from cuttle, origin untouched.
    assert_eq!(
        get(squid.http_addr(), &held).await,
        (200, body("/held")),
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.squid_says(&held, 1),
        [("TCP_MISS/200".to_string(), format!("PARENT_HIT/{cu}"))],
        "{}",
        lab.diag()
    );
    let ours = lab.cuttle_says(&held, 3);
    assert_eq!(ours.len(), 3, "{}", lab.diag());
    assert_eq!(ours[0].0, "127.0.0.1", "{}", lab.diag());
    assert_eq!(
        (ours[0].1.as_str(), ours[0].4.as_str()),
        ("TCP_MISS/200", "HIER_DIRECT/127.0.0.1")
    );
    assert_eq!(
        ours[1],
        t(
            &sq,
            "UDP_HIT/000",
            &icp_reply_size(&held),
            "ICP_QUERY",
            "HIER_NONE/-"
        ),
        "{}",
        lab.diag()
    );
    assert_eq!(
        (
            &ours[2].0,
            ours[2].1.as_str(),
            ours[2].3.as_str(),
            ours[2].4.as_str()
        ),
        (&sq, "TCP_HIT/200", "GET", "HIER_NONE/-"),
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
        (200, body("/lacking")),
        "{}",
        lab.diag()
    );
    assert_eq!(
        lab.squid_says(&lacking, 1),
        [(
            "TCP_MISS/200".to_string(),
            format!("FIRST_PARENT_MISS/{cu}")
        )],
        "{}",
        lab.diag()
    );
    let ours = lab.cuttle_says(&lacking, 2);
    assert_eq!(
        ours[0],
        t(
            &sq,
            "UDP_MISS/000",
            &icp_reply_size(&lacking),
            "ICP_QUERY",
            "HIER_NONE/-"
        ),
        "{}",
        lab.diag()
    );
    assert_eq!(
        (
            &ours[1].0,
            ours[1].1.as_str(),
            ours[1].3.as_str(),
            ours[1].4.as_str()
        ),
        (&sq, "TCP_MISS/200", "GET", "HIER_DIRECT/127.0.0.1"),
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
        (200, body("/lacking")),
        "{}",
        lab.diag()
    );
    let theirs = lab.squid_says(&lacking, 2);
    assert_eq!(
        theirs[1],
        ("TCP_MISS/200".to_string(), format!("PARENT_HIT/{cu}")),
        "{}",
        lab.diag()
    );
    let ours = lab.cuttle_says(&lacking, 4);
    assert_eq!(
        ours[2],
        t(
            &sq,
            "UDP_HIT/000",
            &icp_reply_size(&lacking),
            "ICP_QUERY",
            "HIER_NONE/-"
        ),
        "{}",
        lab.diag()
    );
    assert_eq!(
        (&ours[3].0, ours[3].1.as_str(), ours[3].3.as_str()),
        (&sq, "TCP_HIT/200", "GET"),
        "{}",
        lab.diag()
    );
    assert_eq!(origin.count("/lacking"), 1, "{}", lab.diag());
}
