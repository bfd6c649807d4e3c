//! Redirect to the holder (issue 19): cuttle accelerators that are
//! siblings answer a miss another one holds with `302 Found` to the
//! holder's `public-url`, so one proxy, not two, carries the bytes. Real
//! processes on their own loopback addresses, `curl -L` as the client.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use peer_lab::{
    cuttle_query, free_tcp_port, free_udp_port, lines_where, log_lines, mgr_page, spawn_cuttle,
    squid_lab_lines, Node, Squid, STARTUP,
};
use support::{pattern, Origin, Reply, Req, TempDir};

/// The site every node accelerates (defaultsite, no vhost).
const SITE: &str = "site.test";
const MB: usize = 1024 * 1024;
/// curl's arguments for a request to the site at a node's address.
const AS_SITE: [&str; 2] = ["-H", "Host: site.test"];

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 77, 19, last)
}

fn url(path: &str) -> String {
    format!("http://{SITE}{path}")
}

/// An origin on `ip` serving `objects` (path, size), each cacheable for an
/// hour and with its own byte pattern, and `/warm-up`, never stored.
async fn origin(ip: Ipv4Addr, objects: &[(&str, usize)]) -> Origin {
    let origin = Origin::start_on(ip).await;
    origin.route("/warm-up", |_| Reply::ok("warm").cc("no-store"));
    for (n, (path, size)) in objects.iter().enumerate() {
        let body = bytes::Bytes::from(pattern(n as u8 + 1, *size));
        origin.route(path, move |_| {
            Reply::ok(body.clone())
                .cc("max-age=3600")
                .header("content-type", "application/octet-stream")
        });
    }
    origin
}

/// One cuttle accelerator of the mesh: its accelerator port, a forward
/// port for the cache manager, an ICP port.
struct Accel {
    ip: Ipv4Addr,
    port: u16,
    mgr_port: u16,
    icp_port: u16,
    htcp_port: u16,
    dir: PathBuf,
    node: Option<Node>,
}

impl Accel {
    fn plan(root: &Path, ip: Ipv4Addr) -> Accel {
        Accel {
            ip,
            port: free_tcp_port(ip),
            mgr_port: free_tcp_port(ip),
            icp_port: free_udp_port(ip),
            htcp_port: free_udp_port(ip),
            dir: root.join(ip.to_string()),
            node: None,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    fn mgr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.mgr_port))
    }

    fn log(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    /// Its `cache_peer` line as a sibling of the others, with `options`.
    fn sibling_line(&self, options: &str) -> String {
        format!(
            "cache_peer {} sibling {} {} no-digest {options}",
            self.ip, self.port, self.icp_port
        )
    }

    /// Starts it with `lines` after the common ones (origin parent, ICP
    /// with a fixed wait: on a busy machine the wait learnt from loopback
    /// RTTs can be shorter than a sibling's answer; memory store big enough
    /// for the 10 MB object).
    fn start(&mut self, origin: (Ipv4Addr, u16), lines: &str) {
        std::fs::create_dir_all(&self.dir).expect("node dir");
        let (ip, d) = (self.ip, self.dir.display());
        let conf = format!(
            "http_port {ip}:{port} accel defaultsite={SITE}\n\
             http_port {ip}:{mgr}\n\
             icp_port {icp}\n\
             htcp_port {htcp}\n\
             udp_incoming_address {ip}\n\
             udp_outgoing_address {ip}\n\
             tcp_outgoing_address {ip}\n\
             acl test_clients src 127.0.0.0/8\n\
             acl purge method PURGE\n\
             http_access allow test_clients\n\
             http_access deny all\n\
             icp_access allow test_clients\n\
             htcp_access allow test_clients\n\
             icp_query_timeout 3000\n\
             cache_mem 48 MB\n\
             maximum_object_size 16 MB\n\
             maximum_object_size_in_memory 16 MB\n\
             access_log stdio:{d}/access.log squid\n\
             pid_filename {d}/cuttle.pid\n\
             visible_hostname cuttle-{ip}\n\
             cache_peer {origin_ip} parent {origin_port} 0 no-query no-digest originserver name=origin\n\
             {lines}\n",
            port = self.port,
            mgr = self.mgr_port,
            icp = self.icp_port,
            htcp = self.htcp_port,
            origin_ip = origin.0,
            origin_port = origin.1,
        );
        let path = self.dir.join("cuttle.conf");
        std::fs::write(&path, conf).expect("cuttle.conf");
        self.node = Some(spawn_cuttle(&path));
    }

    fn output(&self) -> String {
        self.node.as_ref().map_or_else(String::new, |n| {
            n.output.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// Waits until `want` of its peers are Up: a peer is used only once
    /// its TCP probe succeeded, and a probe is started when selection
    /// consults a down peer, so each round sends a request that does.
    async fn wait_peers_up(&self, want: usize) {
        let deadline = Instant::now() + STARTUP;
        loop {
            let page = mgr_page(self.mgr(), "server_list").await;
            if page.matches("Status     : Up").count() >= want {
                return;
            }
            assert!(Instant::now() < deadline, "peers not up:\n{page}");
            let _ = Req::get("/warm-up")
                .header("host", SITE)
                .send_to(self.addr())
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fetches `path` from this node itself until its ICP answers HIT for
    /// it (the object is committed once its body has gone through). The
    /// marker keeps the node from redirecting to another holder.
    async fn hold(&self, path: &str) {
        let r = Req::get(&format!("{path}?cuttle-redirected={SITE}"))
            .header("host", SITE)
            .send_to(self.addr())
            .await;
        assert_eq!(r.status, 200, "{}", self.output());
        wait_icp(
            SocketAddr::from((self.ip, self.icp_port)),
            &url(path),
            "HIT",
        )
        .await;
    }
}

/// Asks `peer` over ICP about `url` until it answers `answer`.
async fn wait_icp(peer: SocketAddr, url: &str, answer: &str) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let (lines, _, all) = cuttle_query(&["icp", "query"], peer, ip(9), &[url]);
        if lines
            .first()
            .and_then(|l| l.get(1))
            .is_some_and(|a| a.trim_start_matches("ICP_") == answer)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{peer} never answered {answer} for {url}: {all}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `curl` made of a request: status, redirects followed, the URL it
/// ended at, the body.
struct Curled {
    status: u16,
    redirects: u32,
    effective: String,
    body: Vec<u8>,
}

/// `curl -sS [-L] URL` with `args`, the body saved in `dir`.
async fn curl(dir: &Path, url: &str, follow: bool, args: &[&str]) -> Curled {
    let out_file = dir.join("curl.out");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code} %{num_redirects} %{url_effective}"])
        .args(args);
    if follow {
        cmd.args(["-L", "--max-redirs", "5"]);
    }
    cmd.arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run curl");
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = w.split(' ').collect();
    let body = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    Curled {
        status: f.first().and_then(|s| s.parse().ok()).unwrap_or(0),
        redirects: f.get(1).and_then(|s| s.parse().ok()).unwrap_or(99),
        effective: f.get(2).unwrap_or(&"").to_string(),
        body,
    }
}

/// The HTTP client lines (no ICP, no PURGE) of `log` for `url`, waiting
/// for `want` of them: (result/status, bytes, hierarchy).
fn lines_of(log: &Path, url: &str, want: usize) -> Vec<(String, u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines: Vec<Vec<String>> = log_lines(log, url, 0)
            .into_iter()
            .filter(|f| f[5] != "ICP_QUERY" && f[5] != "PURGE")
            .collect();
        if lines.len() >= want || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    lines
        .into_iter()
        .map(|f| {
            (
                f[3].clone(),
                f[4].parse().unwrap_or(0),
                f.get(8).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// A (10 MB object), B (holds it) and C (holds nothing) are sibling
/// accelerators with public URLs; a client of A follows A's redirect to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_of_a_held_object_leave_only_the_holder() {
    let tmp = TempDir::new("redirect-bytes");
    let big = 10 * MB;
    let origin = origin(ip(1), &[("/big", big), ("/nowhere", 1000)]).await;
    let mut nodes: Vec<Accel> = (2..=4).map(|n| Accel::plan(tmp.path(), ip(n))).collect();
    for i in 0..nodes.len() {
        let peers: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.sibling_line(&format!("public-url=http://{}", n.addr())))
            .collect();
        let lines = format!("holder_redirect allow all\n{}", peers.join("\n"));
        nodes[i].start((ip(1), origin.port()), &lines);
    }
    for n in &nodes {
        n.wait_peers_up(3).await;
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    b.hold("/big").await;
    assert_eq!(origin.count("/big"), 1);

    let got = curl(
        tmp.path(),
        &format!("http://{}/big", a.addr()),
        true,
        &AS_SITE,
    )
    .await;
    assert_eq!(
        (got.status, got.redirects),
        (200, 1),
        "A: {}\nB: {}",
        a.output(),
        b.output()
    );
    assert_eq!(
        got.effective,
        format!("http://{}/big?cuttle-redirected={SITE}", b.addr())
    );
    assert!(got.body == pattern(1, big), "the body is the object's");
    // A answered with a redirect naming B; B sent the bytes (its cache key
    // is the plain URL: a hit); C and the origin saw nothing more.
    let at_a = lines_of(&a.log(), &url("/big"), 1);
    assert_eq!(at_a.len(), 1, "{at_a:?}");
    assert_eq!(at_a[0].0, "TCP_MISS/302");
    assert_eq!(at_a[0].2, format!("SIBLING_HIT/{}", b.ip));
    assert!(at_a[0].1 < 1024, "A sent {} bytes", at_a[0].1);
    let at_b = lines_where(&b.log(), &url("/big"), |f| {
        f[5] == "GET" && f[3] != "TCP_MISS/200"
    });
    assert_eq!(at_b.len(), 1, "{at_b:?}");
    assert!(at_b[0][3].ends_with("HIT/200"), "{:?}", at_b[0]);
    assert!(at_b[0][4].parse::<usize>().unwrap_or(0) > big);
    assert!(lines_of(&c.log(), &url("/big"), 0).is_empty());
    assert_eq!(origin.count("/big"), 1);
    // Counted in the cache manager and in /metrics.
    let counters = mgr_page(a.mgr(), "counters").await;
    assert!(
        counters.contains("client_http.holder_redirects = 1"),
        "{counters}"
    );
    let metrics = Req::get(&format!("http://{}/metrics", a.mgr()))
        .send_to(a.mgr())
        .await
        .text();
    assert!(
        metrics.contains("cuttle_holder_redirects_total 1"),
        "{metrics}"
    );
    // Held nowhere: A fetches it, asking its siblings once (the query made
    // to decide on a redirect is the fetch's), not twice.
    let got = curl(
        tmp.path(),
        &format!("http://{}/nowhere", a.addr()),
        true,
        &AS_SITE,
    )
    .await;
    assert_eq!((got.status, got.redirects), (200, 0));
    let at_a = lines_of(&a.log(), &url("/nowhere"), 1);
    assert_eq!(at_a[0].2, format!("FIRSTUP_PARENT/{}", ip(1)));
    for sibling in [b, c] {
        let queries = log_lines(&sibling.log(), &url("/nowhere"), 1);
        assert_eq!(queries.len(), 1, "{queries:?}");
        assert_eq!(queries[0][5], "ICP_QUERY");
    }
}

/// B loses the object between A's query and the client's arrival: B
/// fetches it rather than redirecting again, though C holds it and is B's
/// sibling with a public URL (B relays C's copy); with C's copy gone too,
/// B fetches from the origin, which gets the plain URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_request_is_never_redirected_again() {
    let tmp = TempDir::new("redirect-chain");
    let size = 64 * 1024;
    let origin = origin(ip(11), &[("/obj", size)]).await;
    let mut nodes: Vec<Accel> = (12..=14).map(|n| Accel::plan(tmp.path(), ip(n))).collect();
    for i in 0..nodes.len() {
        let peers: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.sibling_line(&format!("public-url=http://{}", n.addr())))
            .collect();
        // A asks B only (C is not A's peer), so A's redirect names B.
        let peers = if i == 0 {
            vec![peers[0].clone()]
        } else {
            peers
        };
        let lines = format!("holder_redirect allow all\n{}", peers.join("\n"));
        nodes[i].start((ip(11), origin.port()), &lines);
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.wait_peers_up(2).await;
    b.wait_peers_up(3).await;
    c.wait_peers_up(3).await;
    c.hold("/obj").await;
    b.hold("/obj").await;
    let fetched = origin.count("/obj");
    let purge = |node: SocketAddr| async move {
        let r = Req::new("PURGE", "/obj")
            .header("host", SITE)
            .send_to(node)
            .await;
        assert_eq!(r.status, 200, "PURGE at {node}");
    };

    // A's answer, not followed yet.
    let first = curl(
        tmp.path(),
        &format!("http://{}/obj", a.addr()),
        false,
        &AS_SITE,
    )
    .await;
    assert_eq!(first.status, 302, "{}", a.output());
    // Followed without a Host of the site's: the marker names it.
    let location = format!("http://{}/obj?cuttle-redirected={SITE}", b.addr());
    // B purges the object, then the client arrives.
    purge(b.addr()).await;
    let then = curl(tmp.path(), &location, true, &[]).await;
    assert_eq!((then.status, then.redirects), (200, 0), "B: {}", b.output());
    assert!(then.body == pattern(1, size));
    let at_b = lines_of(&b.log(), &url("/obj"), 2);
    assert_eq!(
        at_b.last().map(|l| (l.0.as_str(), l.2.as_str())),
        Some(("TCP_MISS/200", format!("SIBLING_HIT/{}", c.ip).as_str())),
        "{at_b:?}"
    );
    assert_eq!(origin.count("/obj"), fetched);
    // Neither copy left: B goes to the origin, with the plain URL.
    purge(b.addr()).await;
    purge(c.addr()).await;
    let last = curl(tmp.path(), &location, true, &[]).await;
    assert_eq!((last.status, last.redirects), (200, 0), "B: {}", b.output());
    assert!(last.body == pattern(1, size));
    assert_eq!(origin.count("/obj"), fetched + 1);
    assert_eq!(origin.last("/obj").target, "/obj");
    let at_b = lines_of(&b.log(), &url("/obj"), 3);
    assert!(
        at_b.iter().all(|l| l.0 != "TCP_MISS/302"),
        "B redirected: {at_b:?}"
    );
    assert_eq!(
        at_b.last().map(|l| l.2.clone()),
        Some(format!("FIRSTUP_PARENT/{}", ip(11)))
    );
}

/// With `peer_store_threshold 2`, A redirects a URL B holds while A has
/// seen it at most twice (the redirects count), then fetches it from B and
/// stores it, and serves local hits: the Worldnet study's forwarding
/// threshold, with the redirect as its forwarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_threshold_a_url_is_redirected_n_times_then_stored() {
    let tmp = TempDir::new("redirect-threshold");
    let size = 64 * 1024;
    let origin = origin(ip(51), &[("/obj", size)]).await;
    let mut a = Accel::plan(tmp.path(), ip(52));
    let mut b = Accel::plan(tmp.path(), ip(53));
    b.start((ip(51), origin.port()), "");
    let public = format!("public-url=http://{}", b.addr());
    let lines = format!(
        "holder_redirect allow all\npeer_store_threshold 2\n{}",
        b.sibling_line(&public)
    );
    a.start((ip(51), origin.port()), &lines);
    a.wait_peers_up(1).await;
    b.hold("/obj").await;
    let at_a = format!("http://{}/obj", a.addr());
    let mut redirects = Vec::new();
    for _ in 0..5 {
        let got = curl(tmp.path(), &at_a, true, &AS_SITE).await;
        assert_eq!(got.status, 200, "A: {}", a.output());
        assert!(got.body == pattern(1, size), "the body is the object's");
        redirects.push(got.redirects);
    }
    assert_eq!(redirects, [1, 1, 0, 0, 0], "A: {}", a.output());
    let holder = format!("SIBLING_HIT/{}", b.ip);
    let lines = lines_of(&a.log(), &url("/obj"), 5);
    let codes: Vec<(&str, &str)> = lines.iter().map(|l| (l.0.as_str(), l.2.as_str())).collect();
    assert_eq!(
        codes[..3],
        [
            ("TCP_MISS/302", holder.as_str()),
            ("TCP_MISS/302", holder.as_str()),
            ("TCP_MISS/200", holder.as_str()),
        ],
        "{lines:?}"
    );
    // The third was stored: the last two are A's own hits.
    for (result, hierarchy) in &codes[3..] {
        assert!(result.ends_with("HIT/200"), "{lines:?}");
        assert_eq!(*hierarchy, "HIER_NONE/-", "{lines:?}");
    }
    // B served the two redirected clients and A's fetch; the origin only
    // B's first fetch.
    let at_b = lines_of(&b.log(), &url("/obj"), 4);
    let hits = at_b.iter().filter(|l| l.0.ends_with("HIT/200")).count();
    assert_eq!(hits, 3, "{at_b:?}");
    assert_eq!(origin.count("/obj"), 1);
}

/// Holders found by HTCP (TST) and by Cache Digest are redirected to as
/// well: SIBLING_HIT and CD_SIBLING_HIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_found_by_htcp_and_by_digest_are_redirected_to() {
    let tmp = TempDir::new("redirect-htcp-digest");
    let paths: Vec<String> = (0..10).map(|i| format!("/d{i}")).collect();
    let mut objects: Vec<(&str, usize)> = paths.iter().map(|p| (p.as_str(), 2048)).collect();
    objects.push(("/h", 2048));
    let origin = origin(ip(41), &objects).await;
    let from = (ip(41), origin.port());
    let mut b = Accel::plan(tmp.path(), ip(42));
    let mut by_htcp = Accel::plan(tmp.path(), ip(43));
    let mut by_digest = Accel::plan(tmp.path(), ip(44));
    // B rebuilds its digest every second (what it holds stays fresh past
    // the next rebuild: in the digest).
    b.start(from, "digest_rebuild_period 1 second");
    // B holds them all before its digest is first asked for (and built).
    b.hold("/h").await;
    for p in &paths {
        b.hold(p).await;
    }
    // Its digest names them all before anyone fetches it.
    let deadline = Instant::now() + STARTUP;
    while !b.output().contains("cache digest built entries=11 ") {
        assert!(Instant::now() < deadline, "{}", b.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let public = format!("public-url=http://{}", b.addr());
    by_htcp.start(
        from,
        &format!(
            "holder_redirect allow all\ncache_peer {} sibling {} {} htcp no-digest {public}",
            b.ip, b.port, b.htcp_port
        ),
    );
    by_digest.start(
        from,
        &format!(
            "holder_redirect allow all\ncache_peer {} sibling {} 0 no-query {public}",
            b.ip, b.port
        ),
    );
    by_htcp.wait_peers_up(2).await;
    by_digest.wait_peers_up(2).await;
    let got = curl(
        tmp.path(),
        &format!("http://{}/h", by_htcp.addr()),
        true,
        &AS_SITE,
    )
    .await;
    assert_eq!(
        (got.status, got.redirects),
        (200, 1),
        "{}",
        by_htcp.output()
    );
    let at = lines_of(&by_htcp.log(), &url("/h"), 1);
    assert_eq!(
        (at[0].0.as_str(), at[0].2.as_str()),
        ("TCP_MISS/302", format!("SIBLING_HIT/{}", b.ip).as_str())
    );
    // The first lookup wants B's digest, fetched then: a later URL is a
    // digest hit.
    let mut redirected = None;
    for p in &paths {
        let got = curl(
            tmp.path(),
            &format!("http://{}{p}", by_digest.addr()),
            true,
            &AS_SITE,
        )
        .await;
        assert_eq!(got.status, 200, "{p}");
        if got.redirects == 1 {
            redirected = Some(p.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p =
        redirected.unwrap_or_else(|| panic!("no digest hit redirected\n{}", by_digest.output()));
    let at = lines_of(&by_digest.log(), &url(&p), 1);
    assert_eq!(
        (at[0].0.as_str(), at[0].2.as_str()),
        ("TCP_MISS/302", format!("CD_SIBLING_HIT/{}", b.ip).as_str())
    );
}

/// Requests that must not be redirected are served as before: non-GET,
/// Range, credentials, only-if-cached; a peer without public-url; a
/// holder_redirect deny; an object known to be under the size floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_must_not_be_redirected_are_served() {
    let tmp = TempDir::new("redirect-never");
    let paths = [
        "/post", "/range", "/auth", "/cookie", "/oic", "/head", "/denied", "/small", "/unknown",
    ];
    let objects: Vec<(&str, usize)> = paths.iter().map(|p| (*p, 4096)).collect();
    let origin = origin(ip(21), &objects).await;
    let mut a = Accel::plan(tmp.path(), ip(22));
    let mut b = Accel::plan(tmp.path(), ip(23));
    let from = (ip(21), origin.port());
    b.start(from, "");
    a.start(
        from,
        &(format!(
            "acl no_redirect urlpath_regex ^/denied\n\
             holder_redirect deny no_redirect\n\
             holder_redirect allow all\n\
             holder_redirect_min_size 8 KB\n\
             {}",
            b.sibling_line(&format!("public-url=http://{} proxy-only", b.addr()))
        )),
    );
    a.wait_peers_up(2).await;
    for p in paths {
        b.hold(p).await;
    }
    let a_addr = a.addr();
    let at = |p: &str| format!("http://{a_addr}{p}");
    let dir = tmp.path();
    // The size floor: /small's size is known (A forwarded a HEAD for it),
    // /unknown's is not, and nothing in B's ICP answer speaks against it.
    let head = curl(dir, &at("/small"), false, &["-I", AS_SITE[0], AS_SITE[1]]).await;
    assert_eq!(head.status, 200);
    let cases: Vec<(&str, Vec<&str>, u16)> = vec![
        ("/post", vec!["-d", "x=1"], 0),
        ("/range", vec!["-r", "0-99"], 206),
        ("/auth", vec!["-H", "Authorization: Basic dTpw"], 200),
        ("/cookie", vec!["-H", "Cookie: session=1"], 200),
        ("/oic", vec!["-H", "Cache-Control: only-if-cached"], 504),
        ("/head", vec!["-I"], 200),
        ("/denied", vec![], 200),
        ("/small", vec![], 200),
    ];
    for (path, mut args, status) in cases {
        args.extend(AS_SITE);
        let got = curl(dir, &at(path), false, &args).await;
        assert_ne!(got.status, 302, "{path} was redirected\n{}", a.output());
        if status != 0 {
            assert_eq!(got.status, status, "{path}");
        }
        assert!(
            lines_of(&a.log(), &url(path), 1)
                .iter()
                .all(|l| l.0 != "TCP_MISS/302"),
            "{path}"
        );
    }
    let got = curl(dir, &at("/unknown"), false, &AS_SITE).await;
    assert_eq!(got.status, 302, "{}", a.output());
    // A peer without public-url: no redirect to it.
    a.node = None;
    a.start(
        from,
        &(format!(
            "holder_redirect allow all\n{}",
            b.sibling_line("proxy-only")
        )),
    );
    a.wait_peers_up(2).await;
    let got = curl(dir, &at("/unknown"), false, &AS_SITE).await;
    assert_eq!(got.status, 200, "{}", a.output());
}

/// A Squid accelerator is a holder like any other: it serves the
/// redirected request from its cache (cuttle sends it no marker:
/// `no-redirect-marker`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_accelerator_serves_the_redirected_request() {
    let tmp = TempDir::new("redirect-squid");
    let size = 2 * MB;
    let origin = origin(ip(31), &[("/obj", size)]).await;
    let squid_ip = ip(33);
    let (squid_http, squid_icp) = (free_tcp_port(squid_ip), free_udp_port(squid_ip));
    // A forward port too: peer_lab waits for its "Accepting HTTP" line.
    let squid_forward = free_tcp_port(squid_ip);
    let squid_dir = tmp.path().join("squid");
    std::fs::create_dir_all(&squid_dir).expect("squid dir");
    let conf = format!(
        "http_port {squid_ip}:{squid_forward}\n\
         http_port {squid_ip}:{squid_http} accel no-vhost defaultsite={SITE}\n\
         icp_port {squid_icp}\n\
         htcp_port 0\n\
         udp_incoming_address {squid_ip}\n\
         udp_outgoing_address {squid_ip}\n\
         tcp_outgoing_address {squid_ip}\n\
         visible_hostname squid-{squid_ip}\n\
         {lab}\
         cache_mem 16 MB\n\
         maximum_object_size 8 MB\n\
         maximum_object_size_in_memory 8 MB\n\
         cache_peer {origin_ip} parent {origin_port} 0 no-query no-digest originserver name=origin\n\
         acl test_clients src 127.0.0.0/8\n\
         icp_access allow test_clients\n\
         icp_access deny all\n\
         http_access allow test_clients\n\
         http_access deny all\n",
        lab = squid_lab_lines(&squid_dir),
        origin_ip = ip(31),
        origin_port = origin.port(),
    );
    let squid = Squid::start_with_conf(&squid_dir, squid_ip, squid_http, squid_icp, &conf);
    // peer_lab waited for the forward port; the accelerator port opens
    // beside it.
    let deadline = Instant::now() + STARTUP;
    while tokio::net::TcpStream::connect(squid.http_addr())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{}", squid.cache_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = Req::get("/obj")
        .header("host", SITE)
        .send_to(squid.http_addr())
        .await;
    assert_eq!(r.status, 200);
    wait_icp(SocketAddr::from((squid_ip, squid_icp)), &url("/obj"), "HIT").await;
    let mut a = Accel::plan(tmp.path(), ip(32));
    let lines = format!(
        "holder_redirect allow all\n\
         cache_peer {squid_ip} sibling {squid_http} {squid_icp} no-digest name=squid \
         public-url=http://{squid_ip}:{squid_http} no-redirect-marker"
    );
    a.start((ip(31), origin.port()), &lines);
    a.wait_peers_up(2).await;
    let got = curl(
        tmp.path(),
        &format!("http://{}/obj", a.addr()),
        true,
        &AS_SITE,
    )
    .await;
    assert_eq!((got.status, got.redirects), (200, 1), "{}", a.output());
    assert_eq!(got.effective, format!("http://{squid_ip}:{squid_http}/obj"));
    assert!(got.body == pattern(1, size));
    let at_a = lines_of(&a.log(), &url("/obj"), 1);
    assert_eq!(
        at_a.iter()
            .map(|l| (l.0.as_str(), l.2.as_str()))
            .collect::<Vec<_>>(),
        [("TCP_MISS/302", format!("SIBLING_HIT/{squid_ip}").as_str())]
    );
    // Squid served it from its memory: the origin saw one request.
    let at_squid = lines_where(&squid.access_log(), &url("/obj"), |f| {
        f[5] == "GET" && f[3].contains("HIT")
    });
    assert_eq!(
        at_squid.len(),
        1,
        "{}",
        peer_lab::tail(&squid.access_log(), 10)
    );
    assert_eq!(origin.count("/obj"), 1);
}

/// `cuttle check` takes the directives and the peer options, and names the
/// file and line of a bad value.
#[test]
fn cuttle_check_takes_the_directives_and_names_bad_values() {
    let tmp = TempDir::new("redirect-check");
    let check = |text: &str| {
        let path = tmp.path().join("squid.conf");
        std::fs::write(&path, format!("pid_filename none\n{text}")).expect("conf");
        let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["check", "-f"])
            .arg(&path)
            .output()
            .expect("run cuttle check");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let good = "http_port 80 accel defaultsite=www.example.com\n\
                icp_port 3130\n\
                cache_peer 192.0.2.2 sibling 80 3130 public-url=http://b.example.com\n\
                cache_peer 192.0.2.3 sibling 80 3130 public-url=http://c.example.com no-redirect-marker\n\
                holder_redirect allow all\n\
                holder_redirect_min_size 512 KB\n";
    let (ok, text) = check(good);
    assert!(ok && text.contains("0 error(s), 0 warning(s)"), "{text}");
    let bad = "http_port 80 accel defaultsite=www.example.com\n\
               cache_peer 192.0.2.2 sibling 80 3130 public-url=b.example.com\n\
               holder_redirect allow nosuchacl\n\
               holder_redirect_min_size big\n";
    let (ok, text) = check(bad);
    assert!(!ok, "{text}");
    let conf = tmp.path().join("squid.conf");
    for (line, what) in [
        (3, "public-url=b.example.com"),
        (4, "nosuchacl"),
        (5, "holder_redirect_min_size"),
    ] {
        let at = format!("{}:{line}:", conf.display());
        assert!(
            text.lines().any(|l| l.contains(&at) && l.contains(what)),
            "{at} {what} in:\n{text}"
        );
    }
}
