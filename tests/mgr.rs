//! The cache manager as Squid's tools see it: a cuttle on 127.0.12.x with a real Squid 5.7 as its ICP sibling serves some traffic, then `squidclient mgr:...` reads every page (same labels and order as Squid's own pages in fixtures/squid-mgr/, counters that moved), `config` needs its password, the `manager` ACL keeps other hosts out, `/metrics` has the per-peer series, Debian's `prometheus-squid-exporter` 1.10.3 scrapes cuttle as it scrapes Squid, and headless Chromium renders the status page with the peer table.
//! Fails, never skips, when squid, squidclient, the exporter or chromium is missing (.ci/run installs them).

mod peer_lab;
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use peer_lab::{
    free_tcp_port, free_udp_port, log_lines, spawn_cuttle, tail, text_origin, wait_peer_up, Node,
    Squid,
};
use support::{Origin, Req, TempDir};

const PASSWORD: &str = "s3cret";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/squid-mgr")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The body of a response (after the blank line).
fn body(page: &str) -> &str {
    page.split_once("\r\n\r\n")
        .or_else(|| page.split_once("\n\n"))
        .map_or("", |(_, b)| b)
}

/// A Debian tool: its path, or a failure saying how to get it.
fn tool(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} not found: this test runs Debian's {package}; install it with \
         `apt-get install {package}` (.ci/run does)"
    );
    p
}

/// `squidclient -h IP -p PORT mgr:PAGE` (the whole response, head included).
async fn squidclient(addr: SocketAddr, page: &str) -> String {
    let bin = tool("/usr/bin/squidclient", "squidclient");
    let (host, port, page) = (
        addr.ip().to_string(),
        addr.port().to_string(),
        page.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let out = Command::new(bin)
            .args(["-h", &host, "-p", &port, "-T", "10", &format!("mgr:{page}")])
            .output()
            .expect("run squidclient");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("squidclient task")
}

/// Names of the `name = value` lines of a counters-style page.
fn keys(page: &str) -> Vec<String> {
    body(page)
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_string()))
        .collect()
}

/// A page's lines with numbers and values taken out: what a parser
/// keys on (labels, layout, order).
fn shape(page: &str) -> Vec<String> {
    body(page)
        .lines()
        .map(|l| {
            let label = l.split([':', '=']).next().unwrap_or(l);
            let mut out = String::new();
            for c in label.trim().chars() {
                if c.is_ascii_digit() {
                    if !out.ends_with('#') {
                        out.push('#');
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

/// The value of `name = value` on a counters page.
fn counter(page: &str, name: &str) -> f64 {
    body(page)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .and_then(|v| {
            v.trim_end_matches("/sec")
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} on the page:\n{page}"))
}

/// A raw HTTP exchange from `from` (closing the connection after it).
async fn raw_from(to: SocketAddr, from: Ipv4Addr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind the client address");
    let mut s = socket.connect(to).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(support::WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// cuttle with a real Squid as its ICP sibling, and an origin, all on
/// 127.0.12.`net`+1..3; some traffic has gone through cuttle: a sibling
/// hit, a miss fetched direct, and a local hit.
struct Mesh {
    _tmp: TempDir,
    origin: Origin,
    squid: Squid,
    _cuttle: Node,
    addr: SocketAddr,
    ip: Ipv4Addr,
    log: PathBuf,
}

impl Mesh {
    async fn start(net: u8, tag: &str) -> Mesh {
        let squid_ip = Ipv4Addr::new(127, 0, 12, net + 1);
        let ip = Ipv4Addr::new(127, 0, 12, net + 2);
        let origin_ip = Ipv4Addr::new(127, 0, 12, net + 3);
        let tmp = TempDir::new(tag);
        let origin = text_origin(origin_ip, &["/cached", "/other"]).await;
        let squid = Squid::start(&tmp.path().join("squid"), squid_ip, &ip.to_string(), "");
        // Squid holds /cached.
        let r = Req::get(&origin.url("/cached"))
            .send_to(squid.http_addr())
            .await;
        assert_eq!(r.status, 200);

        let dir = tmp.path().join("cuttle");
        std::fs::create_dir_all(&dir).expect("cuttle dir");
        let port = free_tcp_port(ip);
        let icp = free_udp_port(ip);
        let log = dir.join("access.log");
        let conf = dir.join("cuttle.conf");
        std::fs::write(
            &conf,
            format!(
                "http_port {ip}:{port}\n\
                 icp_port {icp}\n\
                 udp_incoming_address {ip}\n\
                 udp_outgoing_address {ip}\n\
                 tcp_outgoing_address {ip}\n\
                 visible_hostname cuttle-mgr\n\
                 acl test_clients src 127.0.0.0/8\n\
                 http_access allow localhost manager\n\
                 http_access deny manager\n\
                 http_access allow test_clients\n\
                 http_access deny all\n\
                 icp_access allow test_clients\n\
                 cachemgr_passwd {PASSWORD} config\n\
                 cache_peer {squid_ip} sibling {} {} no-digest name=squid-sibling\n\
                 icp_query_timeout 3000\n\
                 cache_dir mmap {}/cache 16\n\
                 pid_filename {}/cuttle.pid\n\
                 access_log stdio:{} squid\n",
                squid.http_port,
                squid.icp_port,
                dir.display(),
                dir.display(),
                log.display()
            ),
        )
        .expect("cuttle.conf");
        let cuttle = spawn_cuttle(&conf);
        let mesh = Mesh {
            _tmp: tmp,
            origin,
            squid,
            _cuttle: cuttle,
            addr: SocketAddr::from((ip, port)),
            ip,
            log,
        };
        wait_peer_up(async || squidclient(mesh.addr, "server_list").await).await;
        let get = |path: &str| Req::get(&mesh.origin.url(path)).send_to(mesh.addr);
        assert_eq!(get("/cached").await.status, 200);
        assert_eq!(get("/other").await.status, 200);
        assert_eq!(get("/other").await.status, 200);
        let cached = log_lines(&mesh.log, &mesh.origin.url("/cached"), 1);
        assert_eq!(
            cached.first().and_then(|l| l.get(8)).map(String::as_str),
            Some(format!("SIBLING_HIT/{squid_ip}").as_str()),
            "the mesh did not route as expected; access.log:\n{}",
            tail(&mesh.log, 10)
        );
        log_lines(&mesh.log, &mesh.origin.url("/other"), 2);
        mesh
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squidclient_reads_every_page_in_squids_format() {
    let mesh = Mesh::start(10, "mgr-pages").await;
    let addr = mesh.addr;

    // menu: Squid's layout, every page of the issue listed, config protected.
    let menu = squidclient(addr, "menu").await;
    assert!(menu.starts_with("HTTP/1.0 200 OK\r\n"), "{menu}");
    assert!(
        menu.contains("content-type: text/plain;charset=utf-8\r\n"),
        "{menu}"
    );
    let entries: Vec<(&str, &str)> = body(&menu)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "menu line {l:?}");
            assert_eq!(f[0].len(), 23, "name column of {l:?}");
            (f[0].trim(), f[2])
        })
        .collect();
    for page in [
        "menu",
        "info",
        "counters",
        "5min",
        "60min",
        "server_list",
        "storedir",
        "config",
        "objects",
        "vm_objects",
        "service_times",
    ] {
        assert!(
            entries.iter().any(|(n, _)| *n == page),
            "{page} missing:\n{menu}"
        );
    }
    assert!(entries.contains(&("config", "protected")), "{menu}");
    assert!(entries.contains(&("info", "public")), "{menu}");

    // counters: Squid's names in Squid's order, and the traffic counted.
    let counters = squidclient(addr, "counters").await;
    assert_eq!(
        keys(&counters),
        keys(&fixture("counters.txt")),
        "{counters}"
    );
    assert!(
        counter(&counters, "client_http.requests") >= 3.0,
        "{counters}"
    );
    assert!(counter(&counters, "client_http.hits") >= 1.0, "{counters}");
    assert!(
        counter(&counters, "client_http.kbytes_out") >= 8.0,
        "{counters}"
    );
    assert!(
        counter(&counters, "client_http.kbytes_in") >= 0.0,
        "{counters}"
    );
    assert!(
        counter(&counters, "server.all.requests") >= 2.0,
        "{counters}"
    );
    assert!(
        counter(&counters, "server.http.kbytes_in") >= 4.0,
        "{counters}"
    );
    assert_eq!(counter(&counters, "icp.queries_sent"), 2.0, "{counters}");
    assert_eq!(counter(&counters, "icp.replies_recv"), 2.0, "{counters}");
    assert_eq!(counter(&counters, "icp.times_used"), 1.0, "{counters}");
    assert!(counter(&counters, "swap.outs") >= 2.0, "{counters}");

    // info, 5min, 60min, service_times: line for line Squid's layout.
    let info = squidclient(addr, "info").await;
    assert_eq!(shape(&info), shape(&fixture("info.txt")), "{info}");
    assert!(
        body(&info).contains("\tNumber of ICP messages sent:\t2\n"),
        "{info}"
    );
    for page in ["5min", "60min"] {
        let avg = squidclient(addr, page).await;
        assert_eq!(keys(&avg), keys(&fixture("5min.txt")), "{avg}");
    }
    let times = squidclient(addr, "service_times").await;
    assert_eq!(
        shape(&times),
        shape(&fixture("service_times.txt")),
        "{times}"
    );

    // server_list: the sibling's block as Squid prints an ICP sibling's,
    // with one HIT and one MISS in the opcode histogram.
    let servers = squidclient(addr, "server_list").await;
    let squid_block: Vec<String> = shape(&fixture("server_list-icp-sibling-htcp-parent.txt"))
        .into_iter()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let ours: Vec<String> = shape(&servers).into_iter().skip(1).collect();
    assert_eq!(ours, squid_block, "{servers}");
    let b = body(&servers);
    assert!(b.starts_with("\nSibling    : squid-sibling\n"), "{servers}");
    let host = format!(
        "Host       : {}/{}/{}\n",
        mesh.squid.ip, mesh.squid.http_port, mesh.squid.icp_port
    );
    assert!(b.contains(&host), "{servers}");
    assert!(b.contains("Status     : Up\n"), "{servers}");
    assert!(b.contains("FETCHES    : 1\n"), "{servers}");
    assert!(b.contains("PINGS SENT :        2\n"), "{servers}");
    assert!(b.contains("PINGS ACKED:        2 100%\n"), "{servers}");
    assert!(
        b.contains("         ICP_HIT :        1  50%\n"),
        "{servers}"
    );
    assert!(
        b.contains("        ICP_MISS :        1  50%\n"),
        "{servers}"
    );

    // storedir and objects: the store as it is.
    let storedir = squidclient(addr, "storedir").await;
    assert!(
        body(&storedir).starts_with("Store Directory Statistics:\nStore Entries          : 2\n"),
        "{storedir}"
    );
    assert!(
        body(&storedir).contains("\nStore Directory #0 (mmap): "),
        "{storedir}"
    );
    let objects = squidclient(addr, "objects").await;
    for path in ["/cached", "/other"] {
        assert!(
            body(&objects).contains(&format!("\tGET {}\n", mesh.origin.url(path))),
            "{objects}"
        );
    }
    assert!(body(&objects).starts_with("KEY "), "{objects}");
    let vm = squidclient(addr, "vm_objects").await;
    assert!(vm.starts_with("HTTP/1.0 200 OK\r\n"), "{vm}");
    assert!(body(&vm).contains("IN_MEMORY"), "{vm}");

    // config: Squid's password rules; the password never shows.
    let denied = squidclient(addr, "config").await;
    assert!(
        denied.starts_with("HTTP/1.0 401 Unauthorized\r\n"),
        "{denied}"
    );
    assert!(
        denied.contains("www-authenticate: Basic realm=\"config\"\r\n"),
        "{denied}"
    );
    assert!(
        denied.contains("x-squid-error: ERR_CACHE_MGR_ACCESS_DENIED 0\r\n"),
        "{denied}"
    );
    let wrong = squidclient(addr, "config@nope").await;
    assert!(wrong.starts_with("HTTP/1.0 401 "), "{wrong}");
    let config = squidclient(addr, &format!("config@{PASSWORD}")).await;
    assert!(config.starts_with("HTTP/1.0 200 OK\r\n"), "{config}");
    assert!(
        body(&config).contains("cachemgr_passwd XXXXXXXX config\n"),
        "{config}"
    );
    assert!(
        body(&config).contains("visible_hostname cuttle-mgr\n"),
        "{config}"
    );
    assert!(!config.contains(PASSWORD), "{config}");
    let unknown = squidclient(addr, "no_such_page").await;
    assert!(
        unknown.starts_with("HTTP/1.0 404 Not Found\r\n"),
        "{unknown}"
    );

    // The other URL forms: /squid-internal-mgr/ (newer tools) and /metrics.
    let internal = raw_from(
        addr,
        Ipv4Addr::LOCALHOST,
        "GET /squid-internal-mgr/counters HTTP/1.1\r\nHost: cuttle-mgr\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(internal.starts_with("HTTP/1.1 200 OK\r\n"), "{internal}");
    assert_eq!(keys(&internal), keys(&fixture("counters.txt")));
    let absolute = raw_from(
        addr,
        Ipv4Addr::LOCALHOST,
        &format!("GET http://{addr}/squid-internal-mgr/menu HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(absolute.starts_with("HTTP/1.1 200 OK\r\n"), "{absolute}");
    assert!(body(&absolute).contains(" server_list "), "{absolute}");

    // The manager ACL: a client that is not localhost is refused, by
    // every URL form, and logged as Squid logs it.
    let other = Ipv4Addr::new(127, 0, 12, 19);
    for request in [
        "GET cache_object://cuttle/info HTTP/1.0\r\n\r\n".to_string(),
        "GET /squid-internal-mgr/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
    ] {
        let r = raw_from(addr, other, &request).await;
        assert!(
            r.starts_with("HTTP/1.") && r.contains(" 403 Forbidden\r\n"),
            "{request}: {r}"
        );
        assert!(r.contains("x-squid-error: ERR_ACCESS_DENIED 0\r\n"), "{r}");
    }
    let refused = log_lines(&mesh.log, "cache_object://cuttle/info", 1);
    assert_eq!(refused.len(), 1, "{}", tail(&mesh.log, 20));
    assert_eq!(refused[0][2], other.to_string());
    assert_eq!(refused[0][3], "TCP_DENIED/403");

    // Pages are logged as Squid logs them.
    let url = format!("cache_object://{}/counters", mesh.ip);
    let logged = log_lines(&mesh.log, &url, 1);
    assert_eq!(logged.len(), 1, "{}", tail(&mesh.log, 20));
    assert_eq!(logged[0][3], "TCP_MISS/200");
    assert_eq!(logged[0][5], "GET");
    assert_eq!(logged[0][8], "HIER_NONE/-");
    assert_eq!(logged[0][9], "text/plain");
    let masked = format!("cache_object://{}/config@XXXXXXXX", mesh.ip);
    assert_eq!(
        log_lines(&mesh.log, &masked, 2).len(),
        2,
        "{}",
        tail(&mesh.log, 20)
    );
}

/// The value of the series `name{labels}` (exact text) on a metrics page.
fn series_opt(page: &str, name_and_labels: &str) -> Option<f64> {
    body(page)
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn series(page: &str, name_and_labels: &str) -> f64 {
    series_opt(page, name_and_labels)
        .unwrap_or_else(|| panic!("no series {name_and_labels}:\n{page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_has_results_ratios_store_and_per_peer_series() {
    let mesh = Mesh::start(20, "mgr-metrics").await;
    let page = raw_from(
        mesh.addr,
        Ipv4Addr::LOCALHOST,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{page}"
    );
    // Every sample line is `name{labels} value` with a TYPE above it.
    let b = body(&page);
    for line in b.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        let family = name.split('{').next().unwrap_or(name);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                family
                    .strip_suffix(s)
                    .filter(|f| b.contains(&format!("# TYPE {f} histogram")))
            })
            .unwrap_or(family);
        assert!(
            b.contains(&format!("# TYPE {family} ")),
            "no TYPE for {line}"
        );
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    // Result codes that did not occur are left out (TCP_HIT and TCP_MISS
    // are always there).
    let r = |tag: &str| {
        let name = format!("cuttle_client_http_requests_total{{result=\"{tag}\"}}");
        series_opt(&page, &name).unwrap_or(0.0)
    };
    // The cache manager's own pages count too (TCP_MISS), as in Squid.
    assert!(r("TCP_MISS") >= 2.0, "{page}");
    assert_eq!(r("TCP_HIT") + r("TCP_MEM_HIT"), 1.0, "{page}");
    assert_eq!(series(&page, "cuttle_client_http_hits_total"), 1.0);
    assert_eq!(
        series(&page, "cuttle_hierarchy_total{code=\"SIBLING_HIT\"}"),
        1.0
    );
    assert_eq!(
        series(&page, "cuttle_hierarchy_total{code=\"HIER_DIRECT\"}"),
        1.0
    );
    assert!(series(&page, "cuttle_client_http_sent_bytes_total") > 8000.0);
    assert!(series(&page, "cuttle_server_received_bytes_total") > 4000.0);
    assert_eq!(series(&page, "cuttle_store_entries"), 2.0);
    let fill = series(&page, "cuttle_store_fill_ratio");
    assert!(fill > 0.0 && fill < 1.0, "{fill}");
    let peer = "peer=\"squid-sibling\",type=\"sibling\"";
    assert_eq!(series(&page, &format!("cuttle_peer_up{{{peer}}}")), 1.0);
    assert_eq!(
        series(&page, &format!("cuttle_peer_queries_sent_total{{{peer}}}")),
        2.0
    );
    assert_eq!(
        series(
            &page,
            &format!("cuttle_peer_replies_total{{{peer},opcode=\"ICP_HIT\"}}")
        ),
        1.0
    );
    assert_eq!(
        series(
            &page,
            &format!("cuttle_peer_replies_total{{{peer},opcode=\"ICP_MISS\"}}")
        ),
        1.0
    );
    assert_eq!(
        series(&page, &format!("cuttle_peer_fetches_total{{{peer}}}")),
        1.0
    );
    assert_eq!(
        series(&page, &format!("cuttle_peer_rtt_seconds_count{{{peer}}}")),
        2.0
    );
    assert_eq!(
        series(
            &page,
            &format!("cuttle_peer_rtt_seconds_bucket{{{peer},le=\"+Inf\"}}")
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_squid_exporter_scrapes_cuttle() {
    let exporter = tool(
        "/usr/bin/prometheus-squid-exporter",
        "prometheus-squid-exporter",
    );
    let mesh = Mesh::start(30, "mgr-exporter").await;
    let listen = SocketAddr::from((mesh.ip, free_tcp_port(mesh.ip)));
    let mut child = Command::new(exporter)
        .args(["-squid-hostname", &mesh.ip.to_string()])
        .args(["-squid-port", &mesh.addr.port().to_string()])
        .args(["-listen", &listen.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus-squid-exporter");
    // Until it listens.
    let deadline = Instant::now() + support::WAIT;
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the exporter did not listen on {listen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scraped = raw_from(listen, Ipv4Addr::LOCALHOST, "GET /metrics HTTP/1.0\r\n\r\n").await;
    let _ = child.kill();
    let _ = child.wait();
    let value = |name: &str| -> f64 {
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{scraped}"))
    };
    assert_eq!(
        value(&format!("squid_up{{host=\"{}\"}}", mesh.ip)),
        1.0,
        "{scraped}"
    );
    assert!(
        value("squid_client_http_requests_total") >= 3.0,
        "{scraped}"
    );
    assert!(value("squid_client_http_hits_total") >= 1.0, "{scraped}");
    assert!(
        value("squid_client_http_kbytes_out_kbytes_total") >= 8.0,
        "{scraped}"
    );
    assert!(value("squid_server_all_requests_total") >= 2.0, "{scraped}");
    assert!(value("squid_swap_outs_total") >= 2.0, "{scraped}");
    // The same series it reports for a real Squid.
    let names = |text: &str| -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("squid_"))
            .map(|l| l.split([' ', '{']).next().unwrap_or("").to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(
        names(&scraped),
        names(&fixture("prometheus-squid-exporter-1.10.3.txt"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_the_peers_in_chromium() {
    let chromium = tool("/usr/bin/chromium", "chromium");
    let mesh = Mesh::start(40, "mgr-status").await;
    let url = format!("http://{}/squid-internal-mgr/status", mesh.addr);
    let profile = TempDir::new("chromium-profile");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mgr-status.png");
    let run = |extra: Vec<String>| {
        let chromium = chromium.clone();
        let profile = profile.path().to_path_buf();
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(extra)
                .arg(url)
                .output()
                .expect("run chromium")
        })
    };
    // Virtual time lets the page's 5 s refresh run once without waiting.
    let dom = run(vec![
        "--virtual-time-budget=6000".into(),
        "--dump-dom".into(),
    ])
    .await
    .expect("chromium task");
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    let diag = || format!("{html}\nstderr:\n{}", String::from_utf8_lossy(&dom.stderr));
    assert!(dom.status.success(), "{}", diag());
    assert!(
        html.contains("<tr class=\"peer alive\" data-peer=\"squid-sibling\"><td>squid-sibling</td><td>sibling</td>"),
        "{}",
        diag()
    );
    assert!(
        html.contains("<td class=\"state\">alive</td>"),
        "{}",
        diag()
    );
    assert!(html.contains("<svg id=\"chart-hit-ratio\""), "{}", diag());
    assert!(
        html.contains("<svg id=\"chart-request-rate\""),
        "{}",
        diag()
    );
    assert!(
        html.contains("<td>SIBLING_HIT</td><td>1</td>"),
        "{}",
        diag()
    );
    assert!(html.contains("id=\"store-fill\""), "{}", diag());
    // The refresh fetched the page again and swapped it in.
    assert!(
        !html.contains("data-refreshes=\"0\""),
        "the page did not refresh itself:\n{}",
        diag()
    );
    let png = run(vec![
        "--window-size=1100,900".into(),
        "--hide-scrollbars".into(),
        format!("--screenshot={}", shot.display()),
    ])
    .await
    .expect("chromium task");
    assert!(
        png.status.success(),
        "{}",
        String::from_utf8_lossy(&png.stderr)
    );
    let bytes = std::fs::read(&shot).expect("screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("status page screenshot: {}", shot.display());
}
