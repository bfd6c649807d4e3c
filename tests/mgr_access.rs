//! The cache manager's ACL holds whatever way a client names cuttle: a
//! client that `http_access deny manager` refuses cannot reach a manager
//! page through an absolute URL naming cuttle itself (cuttle fetching from
//! itself would make the inner request come from 127.0.0.1 and pass `allow
//! localhost manager`), and a request to cuttle's own address that is not a
//! manager URL is refused as a forwarding loop without any request being
//! made. Every case is proved by the access.log: one line per client
//! request, none for an inner one. Also: the cache manager password of
//! `config@PASSWORD` never reaches access.log or cuttle's own log output.
//! The refused client binds 127.0.0.2. Two of cuttle's http_ports are
//! wildcards (0.0.0.0, and a bare port), as the item asks; its ACLs let
//! only loopback clients in, and every request is sent over loopback (to
//! this host's interface address too, which the kernel keeps local).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;

use support::{connect, free_port, read_log, Conf, Cuttle, Origin, Req, TempDir, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "mgrself";
/// unique_hostname: names cuttle too, and its Via entry.
const UNIQUE: &str = "mgrself-1";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LAN: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A response as the raw exchange saw it.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` from `from` on a new connection and reads to the end.
async fn raw_from(to: SocketAddr, from: IpAddr, request: &str) -> Raw {
    let mut s = connect(to, Some(from)).await;
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response to {request:?} (got {text:?})"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The X-Squid-Error field of a response head, if any.
fn squid_error(head: &str) -> Option<&str> {
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-squid-error:"))
}

/// `METHOD TARGET` with a Host naming `host`, closing after the answer.
fn request(method: &str, target: &str, host: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// This machine's address on the interface a default route would use (a
/// wildcard http_port accepts on it too), if it has one. UDP connect sends
/// nothing.
fn interface_address() -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
        _ => None,
    }
}

/// Whether the machine has IPv6 loopback.
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// cuttle on 127.0.0.1:{port}, on 0.0.0.0:`wild`, on every address
/// (`http_port PORT`, [::] dual-stack) :`any`, and an accelerator that may
/// go direct on 127.0.0.1:`accel`; managers only from localhost, other
/// loopback clients may proxy.
fn self_conf(ports: Ports, extra: &[&str]) -> Conf {
    let Ports { wild, any, accel } = ports;
    let mut conf = Conf::new()
        .port_line(&format!(
            "http_port 127.0.0.1:{{port}}\nhttp_port 0.0.0.0:{wild}\nhttp_port {any}\n\
             http_port 127.0.0.1:{accel} accel vhost allow-direct"
        ))
        .access(&[
            "acl loopback src 127.0.0.0/8 ::1",
            "http_access allow localhost manager",
            "http_access deny manager",
            "http_access allow loopback",
            "http_access deny all",
        ]);
    conf.name = NAME.to_string();
    conf = conf.extra(&format!("unique_hostname {UNIQUE}"));
    for line in extra {
        conf = conf.extra(line);
    }
    conf
}

/// cuttle started on `self_conf` with `extra`, on ports found free; new
/// ones are picked when another test took one between the probe and
/// cuttle's bind.
fn start_self(extra: &[&str]) -> (Cuttle, Ports) {
    let mut last = String::new();
    for _ in 0..5 {
        let ports = Ports::free();
        match Cuttle::try_start(&self_conf(ports, extra)) {
            Ok(cuttle) => return (cuttle, ports),
            Err(e) if e.contains("cannot listen") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free ports for cuttle:\n{last}");
}

/// cuttle's listening ports besides {port}.
#[derive(Clone, Copy)]
struct Ports {
    wild: u16,
    any: u16,
    accel: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            wild: free_port(),
            any: free_port(),
            accel: free_port(),
        }
    }
}

/// Ways an absolute URL's authority can name one of cuttle's listening
/// sockets (`port`: 127.0.0.1, `wild`: 0.0.0.0, `any`: every address).
fn own_authorities(port: u16, wild: u16, any: u16) -> Vec<String> {
    let mut out = vec![
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:0{port}"),
        format!("127.1:{port}"),
        format!("2130706433:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost.:{port}"),
        format!("{NAME}:{port}"),
        format!("{}.:{port}", NAME.to_ascii_uppercase()),
        format!("{UNIQUE}:{port}"),
        format!("127.0.0.1:{wild}"),
        format!("127.0.0.9:{wild}"),
        format!("0.0.0.0:{wild}"),
        format!("localhost:{wild}"),
        format!("{NAME}:{wild}"),
        format!("127.0.0.3:{any}"),
        format!("localhost.:{any}"),
        format!("{NAME}:{any}"),
    ];
    if has_ipv6_loopback() {
        out.push(format!("[::1]:{any}"));
    }
    if let Some(ip) = interface_address() {
        out.push(format!("{ip}:{wild}"));
        out.push(format!("{ip}:{any}"));
    }
    out
}

/// Item 4 of issue 12: no manager page for a client the manager ACL
/// refuses, however the request names cuttle; the same URLs from localhost
/// get the page from cuttle itself (one access.log line each: no
/// self-fetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_urls_naming_cuttle_are_checked_against_the_client() {
    let (cuttle, ports) = start_self(&[]);
    let Ports { wild, any, accel } = ports;
    let port = cuttle.port;
    let mut lines = 0;
    let mut failures = Vec::new();

    // Refused: origin-form and cache_object on every listening socket.
    let mut refused = Vec::new();
    for p in [port, wild, any] {
        for path in [
            "/metrics",
            "/squid-internal-mgr/info",
            "/squid-internal-mgr/status",
        ] {
            refused.push((p, request("GET", path, &format!("127.0.0.1:{p}"))));
        }
        refused.push((
            p,
            "GET cache_object://127.0.0.1/info HTTP/1.0\r\n\r\n".to_string(),
        ));
        refused.push((
            p,
            format!("GET cache_object://{NAME}/info HTTP/1.0\r\n\r\n"),
        ));
    }
    // Refused: an accelerated site that is another of cuttle's sockets.
    let accel_sites = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{wild}"),
        format!("{NAME}:{any}"),
    ];
    for site in &accel_sites {
        refused.push((accel, request("GET", "/metrics", site)));
        refused.push((accel, request("GET", "/squid-internal-mgr/info", site)));
    }
    // Refused: absolute-form, every name of every socket, any scheme.
    let authorities = own_authorities(port, wild, any);
    for authority in &authorities {
        for (scheme, path) in [
            ("http", "/metrics"),
            ("HTTP", "/metrics?x=1"),
            ("https", "/metrics"),
            ("ftp", "/metrics"),
            ("http", "/squid-internal-mgr/info"),
            ("http", "/squid-internal-mgr/status"),
        ] {
            let url = format!("{scheme}://{authority}{path}");
            refused.push((port, request("GET", &url, authority)));
        }
    }
    for (p, req) in &refused {
        let to = SocketAddr::new(LOCALHOST, *p);
        let got = raw_from(to, LAN, req).await;
        lines += 1;
        if got.status != 403 || !got.head.contains("ERR_ACCESS_DENIED") {
            failures.push(format!(
                "from {LAN} to :{p}: {:?} -> {} {:?}",
                req.lines().next().unwrap_or(""),
                got.status,
                squid_error(&got.head)
            ));
        }
    }

    // Allowed from localhost: the page comes from cuttle itself.
    let mut allowed = 0;
    let mut pages: Vec<(u16, String)> = authorities
        .iter()
        .map(|a| (port, request("GET", &format!("http://{a}/metrics"), a)))
        .collect();
    pages.extend(
        accel_sites
            .iter()
            .map(|site| (accel, request("GET", "/metrics", site))),
    );
    for (p, req) in &pages {
        let got = raw_from(SocketAddr::new(LOCALHOST, *p), LOCALHOST, req).await;
        lines += 1;
        allowed += 1;
        if got.status != 200 || !got.body.contains("# TYPE ") {
            failures.push(format!(
                "from localhost to :{p}: {:?} -> {} {:?}",
                req.lines().next().unwrap_or(""),
                got.status,
                squid_error(&got.head)
            ));
        }
    }

    let log = read_log(&cuttle.log_path(), lines).await;
    let denied = log
        .iter()
        .filter(|l| l.result() == "TCP_DENIED/403")
        .count();
    let served = log
        .iter()
        .filter(|l| {
            l.result() == "TCP_MISS/200"
                && l.hierarchy == "HIER_NONE/-"
                && l.client == "127.0.0.1"
                && l.url.ends_with("/squid-internal-mgr/metrics")
                && l.url.starts_with(&format!("http://{NAME}:"))
        })
        .count();
    assert!(
        failures.is_empty() && log.len() == lines && denied == refused.len() && served == allowed,
        "{} of {} requests answered wrongly:\n{}\n\
         access.log: {} lines for {lines} requests ({denied} TCP_DENIED/403 of {} refused, \
         {served} manager pages of {allowed} from localhost):\n{}",
        failures.len(),
        lines,
        failures.join("\n"),
        log.len(),
        refused.len(),
        log.iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Item 4 of issue 12: a request to cuttle's own address and port that is
/// not a manager URL is refused as a forwarding loop (403
/// ERR_ACCESS_DENIED) and never sent: one access.log line per request.
/// Requests to another port of the same address still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_cuttle_itself_are_refused_as_loops() {
    let (cuttle, ports) = start_self(&[]);
    let Ports { wild, any, accel } = ports;
    let port = cuttle.port;
    let origin = Origin::start().await;
    origin.route("/fine", |_| support::Reply::ok("fine"));
    let mut lines = 0;
    let mut failures = Vec::new();

    for authority in own_authorities(port, wild, any) {
        for (method, target) in [
            ("GET", format!("http://{authority}/some/other")),
            ("HEAD", format!("http://{authority}/")),
            // (`/squid-internal-*` paths are answered here, as Squid's
            // internal objects: tests/internal_urls.rs.)
            (
                "GET",
                format!("http://{authority}/x/squid-internal-mgr/info"),
            ),
            ("POST", format!("http://{authority}/form")),
            ("CONNECT", authority.clone()),
        ] {
            let mut req = request(method, &target, &authority);
            if method == "POST" {
                req = req.replace("\r\n\r\n", "\r\nContent-Length: 2\r\n\r\nhi");
            }
            let got = raw_from(cuttle.addr(), LOCALHOST, &req).await;
            lines += 1;
            if got.status != 403 || !got.head.contains("ERR_ACCESS_DENIED") {
                failures.push(format!(
                    "{method} {target} -> {} {:?}",
                    got.status,
                    squid_error(&got.head)
                ));
            }
        }
    }
    // An accelerated site that is another of cuttle's sockets.
    for site in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{wild}"),
        format!("{NAME}:{any}"),
    ] {
        let req = request("GET", "/some/other", &site);
        let got = raw_from(SocketAddr::new(LOCALHOST, accel), LOCALHOST, &req).await;
        lines += 1;
        if got.status != 403 || !got.head.contains("ERR_ACCESS_DENIED") {
            failures.push(format!(
                "to the accelerator: GET /some/other, Host {site} -> {} {:?}",
                got.status,
                squid_error(&got.head)
            ));
        }
    }
    // Another port on the same address is not cuttle, proxied or
    // accelerated.
    let fine = Req::get(&origin.url("/fine")).send(&cuttle).await;
    lines += 1;
    assert_eq!(fine.status, 200, "a request to {}", origin.url("/fine"));
    let site = format!("127.0.0.1:{}", origin.port());
    let fine = raw_from(
        SocketAddr::new(LOCALHOST, accel),
        LOCALHOST,
        &request("GET", "/fine", &site),
    )
    .await;
    lines += 1;
    assert_eq!(fine.status, 200, "GET /fine for {site} to the accelerator");

    let log = read_log(&cuttle.log_path(), lines).await;
    // Refused, not fetched: no hierarchy code but HIER_NONE.
    let loops = log
        .iter()
        .filter(|l| {
            let want = if l.method == "CONNECT" {
                "TCP_TUNNEL/403"
            } else {
                "TCP_MISS/403"
            };
            l.result() == want && l.hierarchy == "HIER_NONE/-"
        })
        .count();
    assert!(
        failures.is_empty() && log.len() == lines && loops == lines - 2,
        "{} requests answered wrongly:\n{}\naccess.log: {} lines ({loops} refused loops) for {lines} requests:\n{}",
        failures.len(),
        failures.join("\n"),
        log.len(),
        log.iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A manager request that already went through cuttle (its Via says so)
/// came through a loop (a peer, a redirect, a name cuttle does not know
/// resolving to it): its client is not the one the ACL must judge, so it
/// is refused as a loop rather than answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_request_that_came_through_cuttle_is_a_loop() {
    let (cuttle, _) = start_self(&[]);
    let via = format!("1.1 {UNIQUE} (cuttle/0.1)");
    let plain = raw_from(
        cuttle.addr(),
        LOCALHOST,
        &request("GET", "/metrics", &format!("127.0.0.1:{}", cuttle.port)),
    )
    .await;
    assert_eq!(plain.status, 200, "GET /metrics from localhost");
    for target in [
        "/metrics",
        "/squid-internal-mgr/info",
        "cache_object://127.0.0.1/info",
    ] {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nVia: {via}\r\nConnection: close\r\n\r\n",
            cuttle.port
        );
        let got = raw_from(cuttle.addr(), LOCALHOST, &req).await;
        assert!(
            got.status == 403 && got.head.contains("ERR_ACCESS_DENIED"),
            "GET {target} with Via: {via} -> {}:\n{}",
            got.status,
            got.head
        );
    }
}

const PASSWORD: &str = "s3cretPW";
const WRONG: &str = "wr0ngPW";

/// Item 11 of issue 12: `config@PASSWORD`, in every form a client sends it,
/// is logged masked (Squid 5.7 logs it in the clear), and no log output of
/// cuttle's (RUST_LOG=trace) shows it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_password_is_never_logged() {
    // One port: this test starts cuttle itself (for RUST_LOG) and so
    // cannot pick new ports for the others if one was taken.
    let conf = self_conf(
        Ports::free(),
        &[
            &format!("cachemgr_passwd {PASSWORD} config"),
            "cachemgr_passwd none all",
        ],
    )
    .port_line("http_port 127.0.0.1:{port}");
    let dir = TempDir::new("mgrpw");
    let port = free_port();
    let conf_path = dir.path().join("squid.conf");
    std::fs::write(&conf_path, conf.text(dir.path(), port)).expect("write config");
    let args = [
        "run".to_string(),
        "-f".to_string(),
        conf_path.display().to_string(),
    ];
    let cuttle = Cuttle::start_raw(&args, &[("RUST_LOG", Path::new("trace"))], port, dir, NAME);

    let here = format!("127.0.0.1:{port}");
    let mut cases = vec![
        (
            request(
                "GET",
                &format!("/squid-internal-mgr/config@{PASSWORD}"),
                &here,
            ),
            200,
            format!("http://{NAME}:{port}/squid-internal-mgr/config@XXXXXXXX"),
        ),
        (
            request(
                "GET",
                &format!("http://{here}/squid-internal-mgr/config@{PASSWORD}?x=1"),
                &here,
            ),
            200,
            format!("http://{NAME}:{port}/squid-internal-mgr/config@XXXXXXXX?"),
        ),
        (
            format!("GET cache_object://127.0.0.1/config@{PASSWORD} HTTP/1.0\r\n\r\n"),
            200,
            "cache_object://127.0.0.1/config@XXXXXXXX".to_string(),
        ),
        (
            request("GET", &format!("/squid-internal-mgr/config@{WRONG}"), &here),
            401,
            format!("http://{NAME}:{port}/squid-internal-mgr/config@XXXXXXXX"),
        ),
        (
            format!("GET cache_object://{NAME}/config@{WRONG} HTTP/1.0\r\n\r\n"),
            401,
            format!("cache_object://{NAME}/config@XXXXXXXX"),
        ),
    ];
    // A refused client's request is logged (TCP_DENIED) masked too.
    cases.push((
        request(
            "GET",
            &format!("/squid-internal-mgr/config@{PASSWORD}"),
            &here,
        ),
        403,
        format!("http://{NAME}:{port}/squid-internal-mgr/config@XXXXXXXX"),
    ));
    let mut want_urls = Vec::new();
    for (i, (req, status, url)) in cases.iter().enumerate() {
        let from = if i == cases.len() - 1 { LAN } else { LOCALHOST };
        let got = raw_from(cuttle.addr(), from, req).await;
        assert_eq!(
            got.status,
            *status,
            "{:?}:\n{}",
            req.lines().next(),
            got.head
        );
        want_urls.push(url.clone());
    }
    // squidclient, as operators use it.
    let out = Command::new("/usr/bin/squidclient")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            &format!("mgr:config@{PASSWORD}"),
        ])
        .output()
        .expect("run /usr/bin/squidclient (apt-get install squidclient)");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.lines().next().is_some_and(|l| l.contains(" 200 ")),
        "squidclient mgr:config@PASSWORD:\n{page}"
    );
    want_urls.push("cache_object://127.0.0.1/config@XXXXXXXX".to_string());

    let log = read_log(&cuttle.log_path(), want_urls.len()).await;
    let raw_log = std::fs::read_to_string(cuttle.log_path()).expect("access.log");
    let urls: Vec<&str> = log.iter().map(|l| l.url.as_str()).collect();
    assert!(
        !raw_log.contains(PASSWORD) && !raw_log.contains(WRONG) && urls == want_urls,
        "access.log shows a manager password or other URLs than expected:\nwant {want_urls:#?}\n{raw_log}"
    );
    let output = [cuttle.stdout(), cuttle.stderr()].concat().join("\n");
    assert!(
        !output.contains(PASSWORD) && !output.contains(WRONG),
        "cuttle's own log output shows the password:\n{output}"
    );
}
