//! `peer_store_threshold N` with real processes (issue 19): node A (cuttle)
//! has one sibling B that holds a URL; A is asked for it K times. The first
//! N peer hits are delivered without being stored (proxy-only for that
//! URL), the next one is stored, and the rest are A's own hits; the origin
//! saw one request in all (B's fetch). B is a cuttle, then a real Squid
//! 5.7; a SIGHUP on A in the middle keeps the counts.
//!
//! Nearest copy: two fake siblings both answer HIT; the one whose HIT
//! arrives first is farther by A's measured RTT (its earlier replies were
//! slow), so A waits for the nearer one's HIT and fetches from it
//! (`SIBLING_HIT/<near>`, counted in A's `mgr:server_list`).

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::icp::{self, Opcode};
use peer_lab::{
    free_udp_port, get, log_lines, mgr_page, start_cuttle, tail, text_body, text_origin,
    wait_peer_up, CuttleNode, Squid, STARTUP,
};
use support::{Req, TempDir};

/// `code/status hierarchy/host` of each of `log`'s lines for `url`, in
/// order, once `want` are there.
fn outcomes(log: &Path, url: &str, want: usize) -> Vec<String> {
    log_lines(log, url, want)
        .iter()
        .map(|f| format!("{} {}", f[3], f[8]))
        .collect()
}

/// Asks `proxy` for `url` with only-if-cached until it answers 200 (it
/// holds the object: its store commits once the body is through);
/// returns how many 504s came first (each is a line in its log).
async fn wait_stored(proxy: SocketAddr, url: &str) -> usize {
    let deadline = Instant::now() + STARTUP;
    let mut misses = 0;
    loop {
        let r = Req::get(url)
            .header("cache-control", "only-if-cached")
            .send_to(proxy)
            .await;
        if r.status == 200 {
            return misses;
        }
        misses += 1;
        assert!(Instant::now() < deadline, "{proxy} never stored {url}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lines A's log must show for `k` requests under threshold `n` when
/// B holds the object: `n` unstored sibling hits, the stored one, the
/// `probes` only-if-cached misses of [`wait_stored`] and its hit, then
/// local hits.
fn expected(n: usize, k: usize, probes: usize, b: Ipv4Addr) -> Vec<String> {
    let sibling = format!("TCP_MISS/200 SIBLING_HIT/{b}");
    let mut out = vec![sibling; n + 1];
    out.extend(std::iter::repeat_n(
        "TCP_MISS/504 HIER_NONE/-".to_string(),
        probes,
    ));
    out.extend(std::iter::repeat_n("HIT".to_string(), k - n));
    out
}

/// Whether `got` matches `want` (a "HIT" entry is any local hit).
fn matches(got: &[String], want: &[String]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            if w == "HIT" {
                g == "TCP_HIT/200 HIER_NONE/-" || g == "TCP_MEM_HIT/200 HIER_NONE/-"
            } else {
                g == w
            }
        })
}

/// A's lines: ICP on its own address, B as its only sibling, `more`.
fn node_a_lines(a: Ipv4Addr, peer: &str, more: &str) -> String {
    format!(
        "{peer}\n\
         udp_outgoing_address {a}\n\
         udp_incoming_address {a}\n\
         icp_port {icp}\n\
         tcp_outgoing_address {a}\n\
         icp_query_timeout 3000\n\
         {more}",
        icp = free_udp_port(a)
    )
}

async fn wait_up(node: &CuttleNode) {
    let addr = node.addr;
    wait_peer_up(async || mgr_page(addr, "server_list").await).await;
}

/// A asks for `url` `k` times, one after the other; between the stored
/// one (the (n+1)th) and the next, waits until A holds it. Returns the
/// number of only-if-cached probes that missed.
async fn ask_k_times(a: &CuttleNode, url: &str, body: &str, n: usize, k: usize) -> usize {
    let mut probes = 0;
    for i in 1..=k {
        let (status, text) = get(a.addr, url).await;
        assert_eq!(status, 200, "request {i}:\n{}", a.output());
        assert_eq!(text, body, "request {i}");
        if i == n + 1 {
            probes = wait_stored(a.addr, url).await;
        }
    }
    probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_a_forwards_n_sibling_hits_from_cuttle_b_then_stores() {
    let (a_ip, b_ip) = (Ipv4Addr::new(127, 0, 19, 1), Ipv4Addr::new(127, 0, 19, 2));
    let tmp = TempDir::new("threshold-cuttle");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/popular"]).await;
    let url = origin.url("/popular");
    let b_icp = free_udp_port(b_ip);
    let b = start_cuttle(
        &tmp.path().join("b"),
        b_ip,
        &format!("icp_port {b_icp}\nudp_incoming_address {b_ip}\nicp_access allow all\n"),
    );
    // B holds the object.
    assert_eq!(get(b.addr, &url).await, (200, text_body("/popular")));
    wait_stored(b.addr, &url).await;
    assert_eq!(origin.count("/popular"), 1);

    let (n, k) = (2, 6);
    let peer = format!(
        "cache_peer {b_ip} sibling {} {b_icp} no-digest",
        b.addr.port()
    );
    let a = start_cuttle(
        &tmp.path().join("a"),
        a_ip,
        &node_a_lines(
            a_ip,
            &peer,
            &format!("peer_store_threshold {n} window=1hour"),
        ),
    );
    wait_up(&a).await;
    let probes = ask_k_times(&a, &url, &text_body("/popular"), n, k).await;
    let want = expected(n, k, probes, b_ip);
    let got = outcomes(&a.log, &url, want.len());
    assert!(
        matches(&got, &want),
        "A's access.log for {url}:\n{got:#?}\nwanted:\n{want:#?}\nA:\n{}",
        a.output()
    );
    assert_eq!(origin.count("/popular"), 1, "the origin saw only B's fetch");
    // B served A n+1 times from its store (its lines: its own fetch and
    // probe, then a query and a GET per peer hit).
    let served: Vec<Vec<String>> = log_lines(&b.log, &url, 2 + 2 * (n + 1))
        .into_iter()
        .filter(|f| f[2] == a_ip.to_string() && f[5] == "GET")
        .collect();
    assert_eq!(served.len(), n + 1, "B's log:\n{}", tail(&b.log, 20));
    // A's server_list counts the hits it delivered without storing.
    let page = mgr_page(a.addr, "server_list").await;
    assert!(
        page.contains(&format!(
            "NOT STORED : {n:>8} peer hits under peer_store_threshold"
        )),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_a_forwards_n_sibling_hits_from_squid_b_then_stores() {
    let (a_ip, squid_ip) = (Ipv4Addr::new(127, 0, 19, 11), Ipv4Addr::new(127, 0, 19, 12));
    let tmp = TempDir::new("threshold-squid");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/squid-held"]).await;
    let url = origin.url("/squid-held");
    let squid = Squid::start(&tmp.path().join("squid"), squid_ip, &a_ip.to_string(), "");
    assert_eq!(
        get(squid.http_addr(), &url).await,
        (200, text_body("/squid-held"))
    );
    assert_eq!(origin.count("/squid-held"), 1);

    let (n, k) = (1, 4);
    let peer = format!(
        "cache_peer {squid_ip} sibling {} {} no-digest",
        squid.http_port, squid.icp_port
    );
    let a = start_cuttle(
        &tmp.path().join("a"),
        a_ip,
        &node_a_lines(a_ip, &peer, &format!("peer_store_threshold {n}")),
    );
    wait_up(&a).await;
    let probes = ask_k_times(&a, &url, &text_body("/squid-held"), n, k).await;
    let want = expected(n, k, probes, squid_ip);
    let got = outcomes(&a.log, &url, want.len());
    assert!(
        matches(&got, &want),
        "A's access.log for {url}:\n{got:#?}\nwanted:\n{want:#?}\nA:\n{}\nsquid:\n{}",
        a.output(),
        tail(&squid.access_log(), 20)
    );
    assert_eq!(
        origin.count("/squid-held"),
        1,
        "the origin saw only Squid's fetch"
    );
    let served = log_lines(&squid.access_log(), &url, 1 + 2 * (n + 1))
        .into_iter()
        .filter(|f| f[2] == a_ip.to_string() && f[5] == "GET")
        .count();
    assert_eq!(served, n + 1, "squid:\n{}", tail(&squid.access_log(), 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_counts_survive_a_reload() {
    let (a_ip, b_ip) = (Ipv4Addr::new(127, 0, 19, 21), Ipv4Addr::new(127, 0, 19, 22));
    let tmp = TempDir::new("threshold-reload");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/kept"]).await;
    let url = origin.url("/kept");
    let b_icp = free_udp_port(b_ip);
    let b = start_cuttle(
        &tmp.path().join("b"),
        b_ip,
        &format!("icp_port {b_icp}\nudp_incoming_address {b_ip}\nicp_access allow all\n"),
    );
    assert_eq!(get(b.addr, &url).await.0, 200);
    wait_stored(b.addr, &url).await;

    let n = 3;
    let peer = format!(
        "cache_peer {b_ip} sibling {} {b_icp} no-digest",
        b.addr.port()
    );
    let lines = node_a_lines(a_ip, &peer, &format!("peer_store_threshold {n}"));
    let a = start_cuttle(&tmp.path().join("a"), a_ip, &lines);
    wait_up(&a).await;
    for _ in 0..2 {
        assert_eq!(get(a.addr, &url).await.0, 200);
    }
    // Same lines: a reload that changes nothing must not forget the two.
    a.reload(&lines);
    wait_up(&a).await;
    assert_eq!(get(a.addr, &url).await.0, 200); // the third: not stored
    assert_eq!(get(a.addr, &url).await.0, 200); // the fourth: stored
    let probes = wait_stored(a.addr, &url).await;
    assert_eq!(get(a.addr, &url).await.0, 200);
    let want = expected(n, 5, probes, b_ip);
    let got = outcomes(&a.log, &url, want.len());
    assert!(
        matches(&got, &want),
        "A's access.log for {url}:\n{got:#?}\nwanted:\n{want:#?}\nA:\n{}",
        a.output()
    );
}

/// A fake ICP sibling: answers every query with `opcode` after a delay
/// that depends on the URL (`slow_path` URLs take `slow`, others `fast`),
/// and serves any GET from "its store" (200, its name in the body).
struct DelayedSibling {
    ip: Ipv4Addr,
    icp_port: u16,
    http_port: u16,
    gets: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<String>>>,
}

impl DelayedSibling {
    async fn start(
        ip: Ipv4Addr,
        opcode_for: fn(&str) -> Opcode,
        delay_for: fn(&str) -> Duration,
    ) -> DelayedSibling {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let udp = Arc::new(tokio::net::UdpSocket::bind((ip, 0)).await.expect("udp"));
        let icp_port = udp.local_addr().expect("addr").port();
        let tcp = tokio::net::TcpListener::bind((ip, 0)).await.expect("tcp");
        let http_port = tcp.local_addr().expect("addr").port();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let q = Arc::clone(&queries);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16384];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = icp::parse(&buf[..n]) else {
                    continue;
                };
                let url = String::from_utf8_lossy(query.body.url().0).to_string();
                q.lock().unwrap().push(url.clone());
                let mut out = Vec::new();
                if let Some(reply) = query.reply(opcode_for(&url)) {
                    reply.encode(&mut out).expect("encode");
                }
                let (udp, delay) = (Arc::clone(&udp), delay_for(&url));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = udp.send_to(&out, from).await;
                });
            }
        });
        let gets = Arc::new(AtomicUsize::new(0));
        let g = Arc::clone(&gets);
        let name = ip.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let (g, name) = (Arc::clone(&g), name.clone());
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return, // a liveness probe
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    }
                    g.fetch_add(1, Ordering::SeqCst);
                    let body = format!("copy held by {name}\n");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        DelayedSibling {
            ip,
            icp_port,
            http_port,
            gets,
            queries,
        }
    }

    fn line(&self) -> String {
        format!(
            "cache_peer {} sibling {} {} no-digest",
            self.ip, self.http_port, self.icp_port
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_holders_the_copy_comes_from_the_nearest_by_rtt() {
    let a_ip = Ipv4Addr::new(127, 0, 19, 31);
    let (near_ip, far_ip) = (Ipv4Addr::new(127, 0, 19, 32), Ipv4Addr::new(127, 0, 19, 33));
    let tmp = TempDir::new("threshold-nearest");
    let origin = text_origin(
        Ipv4Addr::LOCALHOST,
        &["/warm/1", "/warm/2", "/warm/3", "/warm/4", "/warm/5"],
    )
    .await;
    // Warm-up URLs: both miss, the far one slowly (its RTT average grows
    // to ~150 ms, the near one's to ~10 ms). The held URL: the far one's
    // HIT comes at once, the near one's after 60 ms.
    let hit_if_held = |url: &str| {
        if url.contains("/held") {
            Opcode::Hit
        } else {
            Opcode::Miss
        }
    };
    let near = DelayedSibling::start(near_ip, hit_if_held, |url| {
        Duration::from_millis(if url.contains("/held") { 60 } else { 10 })
    })
    .await;
    let far = DelayedSibling::start(far_ip, hit_if_held, |url| {
        Duration::from_millis(if url.contains("/held") { 0 } else { 150 })
    })
    .await;
    let peers = format!("{}\n{}", far.line(), near.line());
    let a = start_cuttle(&tmp.path().join("a"), a_ip, &node_a_lines(a_ip, &peers, ""));
    let addr = a.addr;
    // Both up.
    let deadline = Instant::now() + STARTUP;
    while mgr_page(addr, "server_list")
        .await
        .matches("Status     : Up")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "peers never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_up(&a).await;
    for i in 1..=5 {
        let (status, _) = get(addr, &origin.url(&format!("/warm/{i}"))).await;
        assert_eq!(status, 200);
    }
    let page = mgr_page(addr, "server_list").await;
    let held = origin.url("/held/object");
    let (status, text) = get(addr, &held).await;
    assert_eq!(status, 200, "{}", a.output());
    let diag = format!(
        "server_list before:\n{page}\nA:\n{}\nnear queries {:?}\nfar queries {:?}",
        a.output(),
        near.queries.lock().unwrap(),
        far.queries.lock().unwrap()
    );
    assert_eq!(text, format!("copy held by {near_ip}\n"), "{diag}");
    assert_eq!(far.gets.load(Ordering::SeqCst), 0, "{diag}");
    let got = outcomes(&a.log, &held, 1);
    assert_eq!(
        got,
        [format!("TCP_MISS/200 SIBLING_HIT/{near_ip}")],
        "{diag}"
    );
    let page = mgr_page(addr, "server_list").await;
    assert!(
        page.contains("NEAREST    :        1 of several holders, 1 over an earlier HIT"),
        "{page}"
    );
}

/// `cuttle simulate` on the shipped examples/forwarding, as Squids and as
/// cuttle with threshold 2, over a small generated trace: both run (the
/// conservation checks pass), and the threshold turns local hits into
/// sibling hits (the copies it did not store) while the origin serves no
/// more.
#[test]
fn the_forwarding_example_runs_and_its_threshold_forwards_sibling_hits() {
    let tmp = TempDir::new("threshold-sim");
    let trace = tmp.path().join("trace.log");
    let cuttle = env!("CARGO_BIN_EXE_cuttle");
    let generated = std::process::Command::new(cuttle)
        .args([
            "trace",
            "generate",
            "--requests",
            "4000",
            "--objects",
            "400",
        ])
        .args([
            "--clients",
            "10.1.0.0/16,10.2.0.0/16,10.3.0.0/16,10.4.0.0/16",
            "-o",
        ])
        .arg(&trace)
        .output()
        .expect("run cuttle trace generate");
    assert!(generated.status.success(), "{generated:?}");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/forwarding");
    let total = |mesh: &str| -> serde_json::Value {
        let out = std::process::Command::new(cuttle)
            .arg("simulate")
            .arg(examples.join(mesh))
            .arg(&trace)
            .arg("--json")
            .output()
            .expect("run cuttle simulate");
        assert!(out.status.success(), "{mesh}: {out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["runs"][0].clone()
    };
    let squid = total("squid.toml");
    let t2 = total("cuttle-t2.toml");
    let f = |run: &serde_json::Value, key: &str| run["total"][key].as_f64().unwrap();
    assert!(
        f(&t2, "hit_ratio_sibling") > f(&squid, "hit_ratio_sibling")
            && f(&t2, "hit_ratio_local") < f(&squid, "hit_ratio_local"),
        "squid {squid}\nt2 {t2}"
    );
    assert!(
        f(&t2, "origin_bytes") <= f(&squid, "origin_bytes"),
        "squid {squid}\nt2 {t2}"
    );
    assert!(t2["stored"]["distinct_objects"].as_u64().unwrap() > 0);
}

/// `scope=peers` (the seed's rule, not only peer hits): child A's only
/// source is its caching parent B (no ICP: every fetch is a parent's
/// answer, FIRSTUP_PARENT, hit or miss at B). Under threshold N, A
/// delivers the first N fetches without storing them, stores the next,
/// then serves its own hits; the origin saw one request (B's first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_scope_peers_a_child_forwards_n_fetches_through_its_parent_then_stores() {
    let (a_ip, b_ip) = (Ipv4Addr::new(127, 0, 19, 41), Ipv4Addr::new(127, 0, 19, 42));
    let tmp = TempDir::new("threshold-parent");
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/through-parent"]).await;
    let url = origin.url("/through-parent");
    let b = start_cuttle(&tmp.path().join("b"), b_ip, "");
    let (n, k) = (2, 5);
    let parent = format!(
        "cache_peer {b_ip} parent {} 0 no-query default\n\
         never_direct allow all\n\
         tcp_outgoing_address {a_ip}\n\
         peer_store_threshold {n} scope=peers",
        b.addr.port()
    );
    let a = start_cuttle(&tmp.path().join("a"), a_ip, &parent);
    let body = text_body("/through-parent");
    let mut probes = 0;
    for i in 1..=k {
        let (status, text) = get(a.addr, &url).await;
        assert_eq!(status, 200, "request {i}:\n{}", a.output());
        assert_eq!(text, body, "request {i}");
        if i == 1 {
            // B keeps the first fetch: later ones are its hits.
            wait_stored(b.addr, &url).await;
        }
        if i == n + 1 {
            probes = wait_stored(a.addr, &url).await;
        }
    }
    let mut want = vec![format!("TCP_MISS/200 FIRSTUP_PARENT/{b_ip}"); n + 1];
    want.extend(std::iter::repeat_n(
        "TCP_MISS/504 HIER_NONE/-".to_string(),
        probes,
    ));
    want.extend(std::iter::repeat_n("HIT".to_string(), k - n));
    let got = outcomes(&a.log, &url, want.len());
    assert!(
        matches(&got, &want),
        "A's access.log for {url}:\n{got:#?}\nwanted:\n{want:#?}\nA:\n{}",
        a.output()
    );
    assert_eq!(origin.count("/through-parent"), 1, "only B's first fetch");
    let served = log_lines(&b.log, &url, n + 2)
        .into_iter()
        .filter(|f| f[2] == a_ip.to_string() && f[5] == "GET")
        .count();
    assert_eq!(served, n + 1, "B's log:\n{}", tail(&b.log, 20));
}

/// `examples/worldnet/small` (the Worldnet configs with caches at 1/64)
/// runs in the simulator, as Squids and as cuttle, and a per-node config
/// that includes each shipped one plus `peer_store_threshold 1
/// scope=peers` (as README's loop writes them) keeps fewer copies: the
/// POPs and border routers forward what their parents send until a URL
/// is asked for again.
#[test]
fn the_small_worldnet_example_runs_and_scope_peers_keeps_fewer_copies() {
    let tmp = TempDir::new("threshold-worldnet-small");
    let trace = tmp.path().join("trace.log");
    let cuttle = env!("CARGO_BIN_EXE_cuttle");
    let clients = "172.16.0.0/16,172.17.0.0/16,172.18.0.0/16,172.19.0.0/16,\
                   10.1.0.0/16,10.2.0.0/16,10.3.0.0/16,10.4.0.0/16,10.5.0.0/16,\
                   10.6.0.0/16,10.7.0.0/16,10.8.0.0/16,10.9.0.0/16";
    let generated = std::process::Command::new(cuttle)
        .args(["trace", "generate", "--requests", "3000", "--clients"])
        .arg(clients)
        .arg("-o")
        .arg(&trace)
        .output()
        .expect("run cuttle trace generate");
    assert!(generated.status.success(), "{generated:?}");
    let small = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/worldnet/small");
    let variant = tmp.path().join("peers1");
    std::fs::create_dir_all(&variant).unwrap();
    for entry in std::fs::read_dir(small.join("conf")).unwrap() {
        let path = entry.unwrap().path();
        let conf = format!(
            "include {}\npeer_store_threshold 1 scope=peers\n",
            path.display()
        );
        std::fs::write(variant.join(path.file_name().unwrap()), conf).unwrap();
    }
    let mesh = std::fs::read_to_string(small.join("cuttle.toml"))
        .unwrap()
        .replace("\"conf/", "\"");
    std::fs::write(variant.join("mesh.toml"), mesh).unwrap();
    let run = |mesh: &Path| -> serde_json::Value {
        let out = std::process::Command::new(cuttle)
            .arg("simulate")
            .arg(mesh)
            .arg(&trace)
            .arg("--json")
            .output()
            .expect("run cuttle simulate");
        assert!(out.status.success(), "{}: {out:?}", mesh.display());
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["runs"][0].clone()
    };
    let squid = run(&small.join("squid.toml"));
    let plain = run(&small.join("cuttle.toml"));
    let peers = run(&variant.join("mesh.toml"));
    let requests = |r: &serde_json::Value| r["total"]["requests"].as_u64().unwrap();
    assert_eq!(requests(&squid), 3000);
    assert_eq!(requests(&plain), 3000);
    assert_eq!(requests(&peers), 3000);
    let copies = |r: &serde_json::Value| r["stored"]["copies"].as_u64().unwrap();
    assert!(
        copies(&peers) < copies(&plain),
        "cuttle {plain}\nscope=peers {peers}"
    );
}
