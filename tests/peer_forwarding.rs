//! Forwarding through peers, with the real binary and fake peers written
//! here (tests/peer_lab) on 127.0.9.x: every forwarded request (HEAD,
//! revalidations, bodies) walks the ordered sources as Squid does, with
//! its retry rules (502/504, retry_on_error, forward_max_tries, a body sent
//! at most once); accelerator ports without allow-direct never go DIRECT;
//! login= gives each parent the credentials Squid would; and the ICP
//! client follows udp_outgoing_address on reload.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};

use cuttle_protocol::icp::Opcode;
use peer_lab::{
    free_tcp_port, free_udp_port, log_lines, start_cuttle, CuttleNode, FakePeer, HttpMode,
    HttpSeen, IcpMode, STARTUP,
};
use support::{Req, TempDir};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 9, last)
}

/// The access.log line for `url` (the only one), as fields.
fn line(cuttle: &CuttleNode, url: &str) -> Vec<String> {
    let lines = log_lines(&cuttle.log, url, 1);
    assert_eq!(lines.len(), 1, "lines for {url}:\n{}", cuttle.output());
    lines[0].clone()
}

/// A URL on `host` where nothing listens.
fn nowhere(host: Ipv4Addr, path: &str) -> String {
    format!("http://{host}:{}{path}", free_tcp_port(host))
}

/// 304 for If-None-Match "v1", else a 200 with that tag; never fresh, so
/// every use of a stored copy is a revalidation.
fn etag_v1(seen: &HttpSeen) -> String {
    if seen.header("if-none-match") == "\"v1\"" {
        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
            .to_string()
    } else {
        "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nCache-Control: no-cache\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv1"
            .to_string()
    }
}

/// 200 saying what body arrived.
fn echo_body(seen: &HttpSeen) -> String {
    let text = format!(
        "got {} bytes: {}",
        seen.body.len(),
        String::from_utf8_lossy(&seen.body)
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_miss_walks_the_parents_without_icp() {
    let a = FakePeer::start(ip(11), IcpMode::Answer(Opcode::Miss), HttpMode::Status(502)).await;
    let b = FakePeer::start(ip(12), IcpMode::Answer(Opcode::Miss), HttpMode::Ok).await;
    let s = FakePeer::start(ip(13), IcpMode::Answer(Opcode::Hit), HttpMode::Ok).await;
    let tmp = TempDir::new("fwd-head");
    let cuttle = start_cuttle(
        tmp.path(),
        ip(10),
        &format!(
            "{}\n{}\n{}\nnonhierarchical_direct off\nudp_incoming_address {me}\nicp_port {icp}\n\
             tcp_outgoing_address {me}\nicp_query_timeout 2000",
            a.line("parent", ""),
            b.line("parent", ""),
            s.line("sibling", ""),
            me = ip(10),
            icp = free_udp_port(ip(10))
        ),
    );
    for p in [&a, &b, &s] {
        p.wait_probed(&cuttle).await;
    }
    // Sources: FIRSTUP_PARENT a, ANY_OLD_PARENT b, DIRECT (never reached).
    let url = nowhere(ip(14), "/h");
    let r = Req::new("HEAD", &url).send_to(cuttle.addr).await;
    assert_eq!(r.status, 200, "{}", cuttle.output());
    let l = line(&cuttle, &url);
    assert_eq!(l[3], "TCP_MISS/200", "{l:?}");
    assert_eq!(l[8], format!("ANY_OLD_PARENT/{}", ip(12)), "{l:?}");
    // HEAD is not hierarchical: nobody was asked with ICP, and the
    // sibling saw nothing at all.
    for p in [&a, &b, &s] {
        assert!(p.queries.lock().unwrap().is_empty(), "ICP to {}", p.ip);
    }
    assert!(s.requests().is_empty());
    for p in [&a, &b] {
        let seen = p.requests();
        assert_eq!(seen.len(), 1, "{}: {seen:?}", p.ip);
        assert_eq!(seen[0].line(), format!("HEAD {url} HTTP/1.1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hierarchy_stoplist_words_keep_a_get_from_the_peers() {
    let s = FakePeer::start(ip(91), IcpMode::Answer(Opcode::Hit), HttpMode::Ok).await;
    let origin = support::Origin::start_on(ip(92)).await;
    for path in ["/cgi-bin/run", "/plain"] {
        origin.route(path, |_| support::Reply::ok("from the origin"));
    }
    let tmp = TempDir::new("fwd-stoplist");
    let cuttle = start_cuttle(
        tmp.path(),
        ip(90),
        &format!(
            "{}
hierarchy_stoplist cgi-bin ?
udp_incoming_address {me}\nicp_port {icp}
             tcp_outgoing_address {me}
icp_query_timeout 2000",
            s.line("sibling", ""),
            me = ip(90),
            icp = free_udp_port(ip(90))
        ),
    );
    s.wait_probed(&cuttle).await;
    // A stoplisted URL: no ICP, no sibling, straight to the origin.
    let stopped = format!("http://{}/cgi-bin/run", origin.addr);
    let r = Req::get(&stopped).send_to(cuttle.addr).await;
    assert_eq!(r.status, 200, "{}", cuttle.output());
    assert_eq!(
        line(&cuttle, &stopped)[8],
        format!("HIER_DIRECT/{}", ip(92))
    );
    assert!(
        s.queries.lock().unwrap().is_empty(),
        "ICP for a stoplisted URL"
    );
    // Any other URL still asks the sibling, and takes its hit.
    let asked = format!("http://{}/plain", origin.addr);
    let r = Req::get(&asked).send_to(cuttle.addr).await;
    assert_eq!(r.status, 200, "{}", cuttle.output());
    assert_eq!(line(&cuttle, &asked)[8], format!("SIBLING_HIT/{}", ip(91)));
    assert_eq!(s.queries.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_asks_and_walks_the_parents_never_a_sibling() {
    let s = FakePeer::start(ip(21), IcpMode::Answer(Opcode::Miss), HttpMode::Ok).await;
    let a = FakePeer::start(
        ip(22),
        IcpMode::Answer(Opcode::Miss),
        HttpMode::GatewayTimeout,
    )
    .await;
    let b = FakePeer::start(
        ip(23),
        IcpMode::Answer(Opcode::Miss),
        HttpMode::Reply(etag_v1),
    )
    .await;
    let tmp = TempDir::new("fwd-reval");
    let cuttle = start_cuttle(
        tmp.path(),
        ip(20),
        &format!(
            "{}\n{}\n{}\nnever_direct allow all\nudp_incoming_address {me}\nicp_port {icp}\n\
             tcp_outgoing_address {me}\nicp_query_timeout 2000",
            s.line("sibling", ""),
            a.line("parent", ""),
            b.line("parent", ""),
            me = ip(20),
            icp = free_udp_port(ip(20))
        ),
    );
    for p in [&s, &a, &b] {
        p.wait_probed(&cuttle).await;
    }
    let url = "http://reval.test/obj";
    // A miss: everyone is asked; a's 504 (if it comes first) moves on to b.
    let r = Req::get(url).send_to(cuttle.addr).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v1"),
        "{}",
        cuttle.output()
    );
    // Now the sibling would claim a HIT: a revalidation must not ask it.
    s.set_icp(IcpMode::Answer(Opcode::Hit));
    let r = Req::get(url).send_to(cuttle.addr).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v1"),
        "{}",
        cuttle.output()
    );
    let lines = log_lines(&cuttle.log, url, 2);
    assert_eq!(lines.len(), 2, "{}", cuttle.output());
    assert_eq!(lines[1][3], "TCP_REFRESH_UNMODIFIED/200", "{lines:?}");
    let used = &lines[1][8];
    assert!(
        used == &format!("FIRST_PARENT_MISS/{}", ip(23))
            || used == &format!("ANY_OLD_PARENT/{}", ip(23)),
        "{lines:?}"
    );
    assert_eq!(
        s.queries.lock().unwrap().len(),
        1,
        "the sibling was asked again"
    );
    assert!(s.requests().is_empty());
    for p in [&a, &b] {
        assert_eq!(
            p.queries.lock().unwrap().len(),
            2,
            "{} not asked twice",
            p.ip
        );
    }
    let last = b.requests().pop().expect("b got the revalidation");
    assert_eq!(last.header("if-none-match"), "\"v1\"", "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_is_sent_once_and_moves_on_only_while_untouched() {
    let p = FakePeer::start(ip(31), IcpMode::Silent, HttpMode::Reply(echo_body)).await;
    let origin = FakePeer::start(ip(33), IcpMode::Silent, HttpMode::Status(502)).await;
    let tmp = TempDir::new("fwd-body");
    let cuttle = start_cuttle(
        tmp.path(),
        ip(30),
        &format!(
            "{}\nprefer_direct on\nnonhierarchical_direct off\ntcp_outgoing_address {}",
            p.line("parent", "no-query"),
            ip(30)
        ),
    );
    p.wait_probed(&cuttle).await;
    // DIRECT (first, prefer_direct) refuses the connection: the body was
    // not touched, so the parent gets it whole.
    let url = nowhere(ip(32), "/p");
    let r = Req::new("POST", &url)
        .body("hello world")
        .send_to(cuttle.addr)
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "got 11 bytes: hello world"),
        "{}",
        cuttle.output()
    );
    assert_eq!(line(&cuttle, &url)[8], format!("FIRSTUP_PARENT/{}", ip(31)));
    let seen = p.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line(), format!("POST {url} HTTP/1.1"));
    // The origin read the body and answered 502: the body cannot be sent
    // again, so the 502 is the answer and the parent gets nothing.
    let url = format!("{}/q", origin.origin());
    let r = Req::new("POST", &url)
        .body("second body")
        .send_to(cuttle.addr)
        .await;
    assert_eq!(r.status, 502, "{}", cuttle.output());
    let l = line(&cuttle, &url);
    assert_eq!(
        (l[3].as_str(), l[8].as_str()),
        ("TCP_MISS/502", format!("HIER_DIRECT/{}", ip(33)).as_str())
    );
    assert_eq!(origin.requests()[0].body, b"second body");
    assert_eq!(p.requests().len(), 1, "the body went out twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_error_and_forward_max_tries_bound_the_walk() {
    let a = FakePeer::start(ip(36), IcpMode::Silent, HttpMode::Status(503)).await;
    let b = FakePeer::start(ip(37), IcpMode::Silent, HttpMode::Ok).await;
    let tmp = TempDir::new("fwd-retry");
    let lines = |extra: &str| {
        format!(
            "{}\n{}\nnever_direct allow all\ntcp_outgoing_address {}\n{extra}",
            a.line("parent", "no-query"),
            b.line("parent", "no-query"),
            ip(35)
        )
    };
    let cuttle = start_cuttle(tmp.path(), ip(35), &lines(""));
    a.wait_probed(&cuttle).await;
    b.wait_probed(&cuttle).await;
    // 503 is final unless retry_on_error.
    let url = "http://retry.test/1";
    assert_eq!(Req::get(url).send_to(cuttle.addr).await.status, 503);
    assert_eq!(line(&cuttle, url)[8], format!("FIRSTUP_PARENT/{}", ip(36)));
    assert!(b.requests().is_empty());
    cuttle.reload(&lines("retry_on_error on"));
    let url = "http://retry.test/2";
    let r = Req::get(url).send_to(cuttle.addr).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "from peer"),
        "{}",
        cuttle.output()
    );
    assert_eq!(line(&cuttle, url)[8], format!("ANY_OLD_PARENT/{}", ip(37)));
    // One try only: a's answer stands.
    cuttle.reload(&lines("retry_on_error on\nforward_max_tries 1"));
    let url = "http://retry.test/3";
    assert_eq!(Req::get(url).send_to(cuttle.addr).await.status, 503);
    assert_eq!(b.requests().len(), 1);
    assert_eq!(a.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accelerator_port_without_allow_direct_never_goes_direct() {
    let origin = FakePeer::start(ip(41), IcpMode::Silent, HttpMode::Ok).await;
    let site = format!("{}:{}", ip(41), origin.http_port);
    let (strict, open) = (free_tcp_port(ip(40)), free_tcp_port(ip(40)));
    let ports = format!(
        "http_port {me}:{strict} accel defaultsite={site}\n\
         http_port {me}:{open} accel defaultsite={site} allow-direct\n\
         tcp_outgoing_address {me}",
        me = ip(40),
    );
    let tmp = TempDir::new("fwd-accel");
    let cuttle = start_cuttle(tmp.path(), ip(40), &ports);
    for port in [strict, open] {
        cuttle.wait_output(&format!("listening on {}:{port}", ip(40)), STARTUP);
    }
    let get = |port: u16, path: &str| {
        Req::get(path)
            .header("host", site.clone())
            .send_to(SocketAddr::from((ip(40), port)))
    };
    // No parent and no allow-direct: nowhere to go (Squid 5.7 answers so).
    let r = get(strict, "/a").await;
    assert_eq!(r.status, 502, "{}", cuttle.output());
    assert_eq!(r.header("x-squid-error"), "ERR_READ_ERROR 0");
    let l = line(&cuttle, &format!("http://{site}/a"));
    assert_eq!(
        (l[3].as_str(), l[8].as_str()),
        ("TCP_MISS/502", "HIER_NONE/-")
    );
    assert!(origin.requests().is_empty(), "the origin was contacted");
    // allow-direct: straight to the origin.
    let r = get(open, "/b").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from peer"));
    assert_eq!(
        line(&cuttle, &format!("http://{site}/b"))[8],
        format!("HIER_DIRECT/{}", ip(41))
    );
    // A failing originserver parent: the strict port stops there, the
    // other falls back to DIRECT.
    let parent = FakePeer::start(ip(42), IcpMode::Silent, HttpMode::Status(502)).await;
    cuttle.reload(&format!(
        "{ports}\n{}",
        parent.line("parent", "no-query originserver")
    ));
    parent.wait_probed(&cuttle).await;
    let r = get(strict, "/c").await;
    assert_eq!(r.status, 502);
    assert_eq!(
        line(&cuttle, &format!("http://{site}/c"))[8],
        format!("FIRSTUP_PARENT/{}", ip(42))
    );
    let r = get(open, "/d").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from peer"));
    assert_eq!(
        line(&cuttle, &format!("http://{site}/d"))[8],
        format!("HIER_DIRECT/{}", ip(41))
    );
    let paths: Vec<String> = origin
        .requests()
        .iter()
        .map(|s| s.line().to_string())
        .collect();
    assert_eq!(paths, ["GET /b HTTP/1.1", "GET /d HTTP/1.1"]);
    let to_parent: Vec<String> = parent
        .requests()
        .iter()
        .map(|s| s.line().to_string())
        .collect();
    assert_eq!(to_parent, ["GET /c HTTP/1.1", "GET /d HTTP/1.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_gives_each_parent_the_credentials_squid_sends() {
    // (login= option, originserver) per parent; parent i serves p{i}.test.
    let logins = [
        ("login=PASSTHRU", false),
        ("login=PASSTHRU", true),
        ("login=*:fixed", false),
        ("login=u%40x:p%%w", false),
        ("", true),
        ("login=NEGOTIATE", false),
        ("login=PASS", false),
    ];
    let mut peers = Vec::new();
    let mut conf = String::from("never_direct allow all\n");
    for (i, (login, origin)) in logins.iter().enumerate() {
        let p = FakePeer::start(ip(51 + i as u8), IcpMode::Silent, HttpMode::Ok).await;
        let options = format!(
            "no-query {login}{}",
            if *origin { " originserver" } else { "" }
        );
        conf.push_str(&format!(
            "acl d{i} dstdomain p{i}.test\n{}\ncache_peer_access {} allow d{i}\ncache_peer_access {} deny all\n",
            p.line("parent", &options),
            p.ip,
            p.ip
        ));
        peers.push(p);
    }
    conf.push_str(&format!("tcp_outgoing_address {}", ip(50)));
    let tmp = TempDir::new("fwd-login");
    let cuttle = start_cuttle(tmp.path(), ip(50), &conf);
    for p in &peers {
        p.wait_probed(&cuttle).await;
    }
    // The warning names the line of login=NEGOTIATE (the header is 8 lines).
    let negotiate_line = 8 + 1 + 5 * 4 + 2;
    assert!(
        cuttle.output().contains(&format!(
            "cuttle.conf:{negotiate_line}: warning: cache_peer: login=NEGOTIATE: cuttle has no Kerberos"
        )),
        "{}",
        cuttle.output()
    );
    let basic = |s: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    let alice = basic("alice:secret");
    for i in 0..logins.len() {
        let url = format!("http://p{i}.test/x");
        let r = Req::get(&url)
            .header("proxy-authorization", alice.clone())
            .header("authorization", "Bearer tok")
            .send_to(cuttle.addr)
            .await;
        assert_eq!(r.status, 200, "{url}: {}", cuttle.output());
    }
    let got = |i: usize| {
        let seen = peers[i].requests();
        assert_eq!(seen.len(), 1, "parent {i}: {seen:?}");
        (
            seen[0].header("proxy-authorization"),
            seen[0].header("authorization"),
            seen[0].line().to_string(),
        )
    };
    let bearer = "Bearer tok".to_string();
    let (pa, a, _) = got(0);
    assert_eq!((pa, a), (alice.clone(), bearer.clone()), "PASSTHRU");
    let (pa, a, request_line) = got(1);
    assert_eq!(
        (pa, a),
        (String::new(), bearer.clone()),
        "PASSTHRU, originserver"
    );
    assert_eq!(request_line, "GET /x HTTP/1.1");
    let (pa, a, _) = got(2);
    assert_eq!((pa, a), (basic("alice:fixed"), bearer.clone()), "*:fixed");
    let (pa, _, _) = got(3);
    assert_eq!(pa, basic("u@x:p%w"), "user:password with escapes");
    let (pa, a, _) = got(4);
    // Unlike Squid, as login=PASSTHRU (issue 16).
    assert_eq!(
        (pa, a),
        (String::new(), bearer.clone()),
        "originserver, no login="
    );
    let (pa, a, _) = got(5);
    assert_eq!((pa, a), (String::new(), bearer.clone()), "NEGOTIATE");
    let (pa, a, _) = got(6);
    assert_eq!((pa, a), (alice.clone(), bearer), "PASS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_icp_client_follows_udp_outgoing_address_on_reload() {
    let s = FakePeer::start(ip(63), IcpMode::Answer(Opcode::Hit), HttpMode::Ok).await;
    // Queries leave from a socket on udp_outgoing_address and the
    // icp_port, as Squid's do.
    let icp = free_udp_port(ip(60));
    let lines = |udp: Ipv4Addr| {
        format!(
            "{}\nicp_port {icp}\nudp_incoming_address {me}\nudp_outgoing_address {udp}\n\
             tcp_outgoing_address {me}\nicp_query_timeout 2000",
            s.line("sibling", ""),
            me = ip(60)
        )
    };
    let tmp = TempDir::new("fwd-icp-reload");
    let cuttle = start_cuttle(tmp.path(), ip(60), &lines(ip(61)));
    s.wait_probed(&cuttle).await;
    for (n, from) in [(1, ip(61)), (2, ip(62))] {
        if n == 2 {
            cuttle.reload(&lines(from));
        }
        let url = format!("http://icp-reload.test/{n}");
        let r = Req::get(&url).send_to(cuttle.addr).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "from peer"),
            "{}",
            cuttle.output()
        );
        // The reply reached the socket that asked: a SIBLING_HIT.
        assert_eq!(line(&cuttle, &url)[8], format!("SIBLING_HIT/{}", ip(63)));
        let sources = s.query_sources.lock().unwrap().clone();
        assert_eq!(sources.len(), n, "{sources:?}");
        assert_eq!(sources[n - 1], SocketAddr::from((from, icp)), "{sources:?}");
    }
}
