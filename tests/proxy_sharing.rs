//! Proxy sharing (issue 21): an owner cuttle accelerator in front of an
//! origin keeps a share log of the requester cuttles that fetched a large
//! object and offered to share it, and answers the next offering
//! requester near one of them with a `300` list instead of the body; the
//! requester probes the candidates and fetches from one, falling back to
//! the owner. Real processes, each node on its own loopback address, two
//! localities (`share_locality` CIDRs).

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peer_lab::{free_tcp_port, lines_where, log_lines, mgr_page, spawn_cuttle, Node, STARTUP};
use support::{pattern, Origin, Reply, Req, TempDir};

const MB: usize = 1024 * 1024;

/// Addresses of one lab: 127.NET.1.x is the east locality, 127.NET.2.x
/// the west one, 127.NET.3.x the owner's and the origin's network.
fn east(net: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, net, 1, last)
}
fn west(net: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, net, 2, last)
}
fn home(net: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, net, 3, last)
}

/// One cuttle of the lab.
struct Proxy {
    ip: Ipv4Addr,
    addr: SocketAddr,
    /// A forward port for the cache manager (the owner's main port accelerates).
    mgr: SocketAddr,
    dir: PathBuf,
    node: Node,
}

impl Proxy {
    fn start(
        root: &Path,
        ip: Ipv4Addr,
        ports: &str,
        lines: &str,
    ) -> (String, SocketAddr, SocketAddr, PathBuf) {
        let dir = root.join(ip.to_string());
        std::fs::create_dir_all(&dir).expect("node dir");
        let addr = SocketAddr::from((ip, free_tcp_port(ip)));
        let mgr = SocketAddr::from((ip, free_tcp_port(ip)));
        let d = dir.display();
        let conf = format!(
            "{ports}\n\
             http_port {mgr}\n\
             acl test_clients src 127.0.0.0/8\n\
             acl purge method PURGE\n\
             http_access allow test_clients\n\
             http_access deny all\n\
             cache_mem 48 MB\n\
             maximum_object_size 16 MB\n\
             maximum_object_size_in_memory 16 MB\n\
             tcp_outgoing_address {ip}\n\
             access_log stdio:{d}/access.log squid\n\
             pid_filename {d}/cuttle.pid\n\
             visible_hostname cuttle-{ip}\n\
             {lines}\n",
            ports = ports.replace("ADDR", &addr.to_string()),
            lines = lines.replace("ADDR", &addr.to_string()),
        );
        (conf, addr, mgr, dir)
    }

    fn spawn(root: &Path, ip: Ipv4Addr, ports: &str, lines: &str) -> Proxy {
        let (conf, addr, mgr, dir) = Proxy::start(root, ip, ports, lines);
        let path = dir.join("cuttle.conf");
        std::fs::write(&path, conf).expect("cuttle.conf");
        Proxy {
            ip,
            addr,
            mgr,
            node: spawn_cuttle(&path),
            dir,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    fn output(&self) -> String {
        self.node
            .output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The origin, the owner accelerating it, and requesters.
struct Lab {
    net: u8,
    root: TempDir,
    origin: Origin,
    owner: Proxy,
}

impl Lab {
    /// An origin serving `objects` (path, size), each cacheable for an
    /// hour with its own bytes, and `/warm-up`, never stored; the owner in
    /// front of it with `share_log on` and a 2 MB log.
    async fn start(net: u8, objects: &[(&str, usize)]) -> Lab {
        let root = TempDir::new("proxy-sharing");
        let origin = Origin::start_on(home(net, 2)).await;
        origin.route("/warm-up", |_| Reply::ok("warm").cc("no-store"));
        for (n, (path, size)) in objects.iter().enumerate() {
            let body = bytes::Bytes::from(pattern(n as u8 + 1, *size));
            origin.route(path, move |_| {
                Reply::ok(body.clone())
                    .cc("max-age=3600")
                    .header("content-type", "application/octet-stream")
            });
        }
        let owner = Proxy::spawn(
            root.path(),
            home(net, 1),
            "http_port ADDR accel defaultsite=site.test",
            &format!(
                "cache_peer {} parent {} 0 no-query no-digest originserver name=origin\n\
                 share_log on max_memory=2MB\n\
                 share_locality east 127.{net}.1.0/24\n\
                 share_locality west 127.{net}.2.0/24\n\
                 share_locality home 127.{net}.3.0/24",
                home(net, 2),
                origin.port()
            ),
        );
        Lab {
            net,
            root,
            origin,
            owner,
        }
    }

    /// A requester (forward proxy) on `ip` that offers to share; it has
    /// learnt that the owner keeps a share log (a first request there).
    async fn requester(&self, ip: Ipv4Addr) -> Proxy {
        let r = Proxy::spawn(
            self.root.path(),
            ip,
            "http_port ADDR",
            "share_offer on\nshare_offer_url http://ADDR/",
        );
        let warm = get(&r, &self.url("/warm-up")).await;
        assert_eq!(warm.status, 200, "{}", r.output());
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.owner.addr)
    }

    /// The owner's access.log lines for `path`, waiting up to 5 s for
    /// `want` of them (the URL as the requesters asked it).
    fn owner_lines(&self, path: &str, want: usize) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(self.owner.log()).unwrap_or_default();
            let lines: Vec<Vec<String>> = text
                .lines()
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .filter(|f| f.get(6).is_some_and(|u| *u == self.url(path)))
                .collect();
            if lines.len() >= want || Instant::now() > deadline {
                assert_eq!(lines.len(), want, "owner's log:\n{text}");
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn get(proxy: &Proxy, url: &str) -> support::Resp {
    Req::get(url).send_to(proxy.addr).await
}

/// Waits until `proxy` answers a `HEAD` with only-if-cached for `url`
/// with 200: its copy is committed.
async fn wait_held(proxy: &Proxy, url: &str) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let r = Req::new("HEAD", url)
            .header("cache-control", "only-if-cached")
            .send_to(proxy.addr)
            .await;
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {url}:\n{}",
            proxy.ip,
            proxy.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The hierarchy field (`CODE/host`) of `proxy`'s log line for `url`
/// with status 200.
fn hierarchy(proxy: &Proxy, url: &str) -> String {
    let lines = lines_where(&proxy.log(), url, |l| {
        l[3].ends_with("/200") && l[5] == "GET"
    });
    assert_eq!(lines.len(), 1, "{} lines for {url}: {lines:?}", proxy.ip);
    lines[0][8].clone()
}

/// The statuses of the owner's lines for `path`, in order.
fn statuses(lines: &[Vec<String>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l[3].rsplit('/').next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nearby_requester_serves_the_next_one_and_the_owner_sends_the_body_once() {
    let lab = Lab::start(31, &[("/big", 5 * MB)]).await;
    let net = lab.net;
    let r1 = lab.requester(east(net, 1)).await;
    let r2 = lab.requester(east(net, 2)).await;
    let r3 = lab.requester(west(net, 1)).await;
    let url = lab.url("/big");
    let body = pattern(1, 5 * MB);

    // The first requester gets the body from the owner and is logged.
    let first = get(&r1, &url).await;
    assert_eq!(first.status, 200, "{}", r1.output());
    assert!(first.body == body, "r1's copy differs");
    assert!(hierarchy(&r1, &url).starts_with("HIER_DIRECT/"));
    wait_held(&r1, &url).await;

    // The second, in the same locality, is sent to the first.
    let second = get(&r2, &url).await;
    assert_eq!(second.status, 200, "{}", r2.output());
    assert!(second.body == body, "r2's copy differs");
    assert_eq!(
        hierarchy(&r2, &url),
        format!("SHARE_HIT/{}", r1.ip),
        "r2:\n{}",
        r2.output()
    );
    assert_eq!(lab.origin.count("/big"), 1, "the origin sent it again");
    wait_held(&r2, &url).await;
    let owner = lab.owner_lines("/big", 2);
    assert_eq!(statuses(&owner), ["200", "300"], "owner: {owner:?}");
    let listed: u64 = owner[1][4].parse().expect("size");
    assert!(listed < 4096, "the list carried {listed} bytes");
    // The first requester served it from its cache.
    let served = lines_where(&r1.log(), &url, |l| l[5] == "GET" && l[3].contains("HIT"));
    assert_eq!(served.len(), 1, "r1: {:?}", log_lines(&r1.log(), &url, 0));

    // The third, in the other locality, has no candidate near it: the body.
    let third = get(&r3, &url).await;
    assert_eq!(third.status, 200, "{}", r3.output());
    assert!(third.body == body, "r3's copy differs");
    assert!(
        hierarchy(&r3, &url).starts_with("HIER_DIRECT/"),
        "r3 was sent elsewhere"
    );
    let owner = lab.owner_lines("/big", 3);
    assert_eq!(statuses(&owner), ["200", "300", "200"], "owner: {owner:?}");

    // The owner's log names all three, with their localities: the second
    // offered too and holds the copy it got from the first.
    let page = mgr_page(lab.owner.mgr, "share_log").await;
    assert!(page.contains(&url), "{page}");
    // Its size against the configured max_memory.
    assert!(page.contains(" bytes of 2097152 "), "{page}");
    assert!(
        page.contains(&format!("http://{}/ east", r1.addr)),
        "{page}"
    );
    assert!(
        page.contains(&format!("http://{}/ west", r3.addr)),
        "{page}"
    );
    assert!(
        page.contains(&format!("http://{}/ east", r2.addr)),
        "{page}"
    );
    // The second counts its share hit.
    let metrics = mgr_page(r2.mgr, "metrics").await;
    assert!(
        metrics.contains("cuttle_share_fetches_total{outcome=\"candidate\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evicted_candidate_is_skipped_and_small_objects_are_never_listed() {
    let lab = Lab::start(32, &[("/mid", 64 * 1024), ("/small", 5 * 1024)]).await;
    let net = lab.net;
    let r1 = lab.requester(east(net, 1)).await;
    let r2 = lab.requester(east(net, 2)).await;

    // 5 KB: below min_size, both get the body, nothing is listed.
    let small = lab.url("/small");
    for r in [&r1, &r2] {
        let resp = get(r, &small).await;
        assert_eq!(resp.status, 200, "{}", r.output());
        assert!(resp.body == pattern(2, 5 * 1024));
        wait_held(r, &small).await;
    }
    assert_eq!(statuses(&lab.owner_lines("/small", 2)), ["200", "200"]);
    assert!(hierarchy(&r2, &small).starts_with("HIER_DIRECT/"));

    // r1 fetches /mid, then loses it; r2 is listed r1, whose probe
    // answers 504: r2 falls back to the owner and gets the body.
    let mid = lab.url("/mid");
    assert_eq!(get(&r1, &mid).await.status, 200, "{}", r1.output());
    wait_held(&r1, &mid).await;
    let purged = Req::new("PURGE", &mid).send_to(r1.addr).await;
    assert_eq!(purged.status, 200, "{}", r1.output());
    let resp = get(&r2, &mid).await;
    assert_eq!(resp.status, 200, "{}", r2.output());
    assert!(resp.body == pattern(1, 64 * 1024), "r2's copy differs");
    assert!(
        hierarchy(&r2, &mid).starts_with("HIER_DIRECT/"),
        "r2:\n{}",
        r2.output()
    );
    let owner = lab.owner_lines("/mid", 3);
    assert_eq!(statuses(&owner), ["200", "300", "200"], "owner: {owner:?}");
    // The probe: r2's HEAD (the test's own came from 127.0.0.1).
    let r2_ip = r2.ip.to_string();
    let probes = lines_where(&r1.log(), &mid, |l| l[5] == "HEAD" && l[2] == r2_ip);
    assert_eq!(probes.len(), 1, "r1: {:?}", log_lines(&r1.log(), &mid, 0));
    assert!(probes[0][3].ends_with("/504"), "probe: {:?}", probes[0]);

    // r2's next offer reports r1 failed: the owner drops it.
    let page = mgr_page(lab.owner.mgr, "share_log").await;
    assert!(page.contains(&format!("http://{}/", r1.addr)), "{page}");
    assert_eq!(get(&r2, &lab.url("/warm-up")).await.status, 200);
    let page = mgr_page(lab.owner.mgr, "share_log").await;
    assert!(!page.contains(&format!("http://{}/", r1.addr)), "{page}");
    let metrics = mgr_page(r2.mgr, "metrics").await;
    assert!(
        metrics.contains("cuttle_share_fetches_total{outcome=\"owner\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_names_candidates_for_its_embedded_objects() {
    let lab = Lab::start(33, &[("/img", 64 * 1024)]).await;
    lab.origin.route("/page.html", |_| {
        Reply::ok("<html><img src=\"/img\"></html>")
            .cc("max-age=3600")
            .header("content-type", "text/html; charset=utf-8")
    });
    let net = lab.net;
    let r1 = lab.requester(east(net, 1)).await;
    let r2 = lab.requester(east(net, 2)).await;
    let (page, img) = (lab.url("/page.html"), lab.url("/img"));

    // r1 loads the page and its image (the owner learns the image from
    // the request's Referer, and logs r1 for it).
    assert_eq!(get(&r1, &page).await.status, 200, "{}", r1.output());
    let first = Req::get(&img)
        .header("referer", &page)
        .send_to(r1.addr)
        .await;
    assert_eq!(first.status, 200, "{}", r1.output());
    wait_held(&r1, &img).await;

    // r2's page comes with a candidate for the image: r2 goes to r1 for
    // it without asking the owner.
    let page2 = get(&r2, &page).await;
    assert_eq!(page2.status, 200, "{}", r2.output());
    let second = Req::get(&img)
        .header("referer", &page)
        .send_to(r2.addr)
        .await;
    assert_eq!(second.status, 200, "{}", r2.output());
    assert!(second.body == pattern(1, 64 * 1024), "r2's copy differs");
    assert_eq!(
        hierarchy(&r2, &img),
        format!("SHARE_HIT/{}", r1.ip),
        "r2:\n{}",
        r2.output()
    );
    assert_eq!(statuses(&lab.owner_lines("/img", 1)), ["200"]);
    assert_eq!(lab.origin.count("/img"), 1);
}
