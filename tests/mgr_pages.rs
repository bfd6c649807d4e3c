//! The cache manager pages Squid admins use day to day, with the real
//! binary: utilization, active_requests, client_list, filedescriptors,
//! ipcache, fqdncache and events answer in Squid 5.7's layout with cuttle's
//! data; the actions shutdown, reconfigure, rotate and offline_toggle need
//! their cachemgr_passwd (401 without) and then do what Squid does.
//! Addresses: cuttle's ICP on 127.0.13.1 and 127.0.13.3, askers on
//! 127.0.13.2 and 127.0.13.4.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::{free_udp_port, query, Conf, Cuttle, Origin, Reply, Req, WAIT};

const PASSWORD: &str = "pw13";

/// `GET cache_object://127.0.0.1/PAGE` (with `@PASSWORD` when given): the
/// status code and the body.
async fn mgr(cuttle: &Cuttle, page: &str, password: Option<&str>) -> (u16, String) {
    let name = match password {
        Some(p) => format!("{page}@{p}"),
        None => page.to_string(),
    };
    support::mgr_page(cuttle, &name).await
}

fn with_passwords() -> Conf {
    Conf::new().extra(&format!(
        "cachemgr_passwd {PASSWORD} shutdown reconfigure rotate offline_toggle"
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_answer_with_squids_first_lines_and_the_menu_lists_them() {
    let cuttle = Cuttle::start(&Conf::new());
    for (page, first) in [
        ("utilization", "Cache Utilisation:\n\nLast 5 minutes:\n"),
        ("client_list", "Cache Clients:\n"),
        (
            "filedescriptors",
            "Active file descriptors:\nFile Type   Tout Nread  * Nwrite * Remote Address        Description\n---- ------ ---- -------- -------- --------------------- ------------------------------\n",
        ),
        ("ipcache", "IP Cache Statistics:\nIPcache Entries Cached:  0\n"),
        ("fqdncache", "FQDN Cache Statistics:\nFQDNcache Entries In Use: 0\n"),
        ("events", "Last event to run: "),
        ("active_requests", "Connection: 0x"),
    ] {
        let (status, body) = mgr(&cuttle, page, None).await;
        assert_eq!(status, 200, "{page}: {body}");
        assert!(body.starts_with(first), "{page}:\n{body}");
    }
    let (_, utilization) = mgr(&cuttle, "utilization", None).await;
    assert!(
        utilization.contains("\nTotals since cache startup:\nsample_time = "),
        "{utilization}"
    );
    let (_, events) = mgr(&cuttle, "events", None).await;
    assert!(
        events.contains("\nOperation                \tNext Execution \tWeight\tCallback Valid?\n"),
        "{events}"
    );
    let (_, menu) = mgr(&cuttle, "menu", None).await;
    let protection = |name: &str| -> String {
        menu.lines()
            .find(|l| l.split('\t').next().map(str::trim) == Some(name))
            .and_then(|l| l.rsplit('\t').next())
            .unwrap_or_else(|| panic!("{name} not in the menu:\n{menu}"))
            .to_string()
    };
    for hidden in ["offline_toggle", "shutdown", "reconfigure", "rotate"] {
        assert_eq!(protection(hidden), "hidden", "{menu}");
    }
    for public in [
        "client_list",
        "ipcache",
        "fqdncache",
        "filedescriptors",
        "utilization",
        "active_requests",
        "events",
    ] {
        assert_eq!(protection(public), "public", "{menu}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn active_requests_lists_a_slow_request_in_flight() {
    let origin = Origin::start().await;
    // Held until the pages are read (a 3 s delay could end first on a busy
    // machine).
    let (release, held) = tokio::sync::watch::channel(false);
    origin.route("/slow", move |_| Reply::ok("late").hold(held.clone()));
    let cuttle = Cuttle::start(&Conf::new());
    let url = origin.url("/slow");
    let addr = cuttle.addr();
    let slow = tokio::spawn({
        let url = url.clone();
        async move { Req::get(&url).send_to(addr).await }
    });
    origin.wait_count("/slow", 1).await;
    let (status, page) = mgr(&cuttle, "active_requests", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("\nuri {url}\n")), "{page}");
    assert!(page.contains("\tremote: 127.0.0.1:"), "{page}");
    assert!(
        page.contains(&format!("\tlocal: 127.0.0.1:{}\n", cuttle.port)),
        "{page}"
    );
    assert!(page.contains("\nout.offset 0, out.size 0\n"), "{page}");
    assert!(page.contains(" seconds ago)\n"), "{page}");
    // Its upstream connection, as filedescriptors sees it.
    let (_, fds) = mgr(&cuttle, "filedescriptors", None).await;
    let origin_addr = format!("127.0.0.1:{}", origin.port());
    assert!(
        fds.lines()
            .any(|l| l.contains(&origin_addr) && l.ends_with("Server connection")),
        "{fds}"
    );
    let _ = release.send(true);
    assert_eq!(slow.await.expect("slow request").status, 200);
    // Finished: no longer listed (once its transaction ends, a moment
    // after the client has the last byte).
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, page) = mgr(&cuttle, "active_requests", None).await;
        if !page.contains(&format!("uri {url}")) {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_list_counts_a_clients_requests() {
    let origin = Origin::start().await;
    origin.route("/a", |_| Reply::ok("a").cc("no-store"));
    let cuttle = Cuttle::start(&Conf::new());
    for _ in 0..2 {
        assert_eq!(Req::get(&origin.url("/a")).send(&cuttle).await.status, 200);
    }
    // The log line (and the counts) are written when the body ends.
    let deadline = Instant::now() + WAIT;
    let page = loop {
        let (status, page) = mgr(&cuttle, "client_list", None).await;
        assert_eq!(status, 200, "{page}");
        if page.contains("    HTTP Requests 2\n") || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        page.starts_with("Cache Clients:\nAddress: 127.0.0.1\n"),
        "{page}"
    );
    assert!(page.contains("    HTTP Requests 2\n"), "{page}");
    assert!(
        page.contains("        TCP_MISS                   2 100%\n"),
        "{page}"
    );
    assert!(
        page.contains(
            "\nTOTALS\nICP : 0 Queries, 0 Hits (  0%)\nHTTP: 2 Requests, 0 Hits (  0%)\n"
        ),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filedescriptors_lists_the_listening_socket() {
    let cuttle = Cuttle::start(&Conf::new());
    let (status, page) = mgr(&cuttle, "filedescriptors", None).await;
    assert_eq!(status, 200, "{page}");
    let listen = format!("127.0.0.1:{}", cuttle.port);
    assert!(
        page.lines()
            .any(|l| l.contains(" Socket ") && l.contains(&listen) && l.ends_with("HTTP Socket")),
        "{page}"
    );
    // This request's own connection, and the access.log.
    assert!(
        page.lines()
            .any(|l| l.contains(" Socket ") && l.ends_with("Client connection")),
        "{page}"
    );
    let log = cuttle.log_path().display().to_string();
    assert!(
        page.lines()
            .any(|l| l.contains(" File ") && l.ends_with(&log)),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_refuse_without_their_password() {
    let cuttle = Cuttle::start(&with_passwords());
    for action in ["shutdown", "reconfigure", "rotate", "offline_toggle"] {
        let (status, body) = mgr(&cuttle, action, None).await;
        assert_eq!(status, 401, "{action}: {body}");
        let (status, body) = mgr(&cuttle, action, Some("wrong")).await;
        assert_eq!(status, 401, "{action}: {body}");
    }
    // Nothing happened: still serving, still online.
    let (status, _) = mgr(&cuttle, "info", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_with_the_password_rotates_the_access_log() {
    let origin = Origin::start().await;
    origin.route("/r", |_| Reply::ok("r"));
    let cuttle = Cuttle::start(&with_passwords().extra("logfile_rotate 1"));
    assert_eq!(Req::get(&origin.url("/r")).send(&cuttle).await.status, 200);
    cuttle.log(1).await;
    let (status, body) = mgr(&cuttle, "rotate", Some(PASSWORD)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Rotating Squid Process Logs ....")
    );
    let rotated = cuttle.dir.path().join("access.log.0");
    let deadline = Instant::now() + WAIT;
    while !rotated.exists() {
        assert!(Instant::now() < deadline, "no {}", rotated.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reconfigure_with_the_password_rereads_the_config() {
    let origin = Origin::start().await;
    origin.route("/c", |_| Reply::ok("c").cc("no-store"));
    let conf = with_passwords();
    let cuttle = Cuttle::start(&conf);
    let r = Req::get(&origin.url("/c")).send(&cuttle).await;
    assert!(r.header("via").contains("itest1"), "{r:?}");
    let mut renamed = conf.clone();
    renamed.name = "renamed13".to_string();
    cuttle.rewrite_config(&renamed);
    let (status, body) = mgr(&cuttle, "reconfigure", Some(PASSWORD)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Reconfiguring Squid Process ....")
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let r = Req::get(&origin.url("/c")).send(&cuttle).await;
        if r.header("via").contains("renamed13") {
            break;
        }
        assert!(Instant::now() < deadline, "config not re-read: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_toggle_flips_the_icp_answers() {
    const ICP_MISS: u8 = 3;
    const ICP_MISS_NOFETCH: u8 = 21;
    let icp_ip = Ipv4Addr::new(127, 0, 13, 1);
    let asker_ip = Ipv4Addr::new(127, 0, 13, 2);
    let icp_port = free_udp_port(icp_ip);
    let cuttle = Cuttle::start(
        &with_passwords()
            .extra(&format!("icp_port {icp_port}"))
            .extra(&format!("udp_incoming_address {icp_ip}"))
            .extra("icp_access allow all"),
    );
    let icp = SocketAddr::from((icp_ip, icp_port));
    cuttle
        .wait_output(&format!("cuttle: ICP on {icp}"), false)
        .await;
    let socket = UdpSocket::bind((asker_ip, 0)).expect("bind asker");
    socket.set_read_timeout(Some(WAIT)).expect("read timeout");
    let ask = |n: u32| {
        socket
            .send_to(&query(n, "http://127.0.0.1:9/absent"), icp)
            .expect("send query");
        let mut buf = [0u8; 4096];
        let (len, _) = socket.recv_from(&mut buf).expect("ICP reply");
        assert!(len > 0);
        buf[0]
    };
    assert_eq!(ask(1), ICP_MISS);
    let (status, body) = mgr(&cuttle, "offline_toggle", Some(PASSWORD)).await;
    assert_eq!((status, body.as_str()), (200, "offline_mode is now ON\n"));
    assert_eq!(ask(2), ICP_MISS_NOFETCH);
    let (status, body) = mgr(&cuttle, "offline_toggle", Some(PASSWORD)).await;
    assert_eq!((status, body.as_str()), (200, "offline_mode is now OFF\n"));
    assert_eq!(ask(3), ICP_MISS);
    // Toggled on, then a reconfigure: back to the configured value (off).
    let (_, body) = mgr(&cuttle, "offline_toggle", Some(PASSWORD)).await;
    assert_eq!(body, "offline_mode is now ON\n");
    assert_eq!(ask(4), ICP_MISS_NOFETCH);
    let (status, _) = mgr(&cuttle, "reconfigure", Some(PASSWORD)).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + WAIT;
    let mut n = 5;
    while ask(n) != ICP_MISS {
        assert!(
            Instant::now() < deadline,
            "offline_mode still on after reconfigure"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_with_the_password_stops_the_process_cleanly() {
    let mut cuttle = Cuttle::start(&with_passwords());
    let (status, body) = mgr(&cuttle, "shutdown", Some(PASSWORD)).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let exit = cuttle.wait_exit().await;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_list_counts_a_clients_icp_queries() {
    let icp_ip = Ipv4Addr::new(127, 0, 13, 3);
    let asker_ip = Ipv4Addr::new(127, 0, 13, 4);
    let icp_port = free_udp_port(icp_ip);
    let cuttle = Cuttle::start(
        &Conf::new()
            .extra(&format!("icp_port {icp_port}"))
            .extra(&format!("udp_incoming_address {icp_ip}"))
            .extra("icp_access allow all"),
    );
    let icp = SocketAddr::from((icp_ip, icp_port));
    cuttle
        .wait_output(&format!("cuttle: ICP on {icp}"), false)
        .await;
    let socket = UdpSocket::bind((asker_ip, 0)).expect("bind asker");
    socket.set_read_timeout(Some(WAIT)).expect("read timeout");
    for n in 0..2 {
        socket
            .send_to(&query(n, "http://127.0.0.1:9/absent"), icp)
            .expect("send query");
        let mut buf = [0u8; 4096];
        socket.recv_from(&mut buf).expect("ICP reply");
    }
    let (status, page) = mgr(&cuttle, "client_list", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(
            "Address: 127.0.13.4\nName:    127.0.13.4\nCurrently established connections: 0\n    ICP  Requests 2\n        ICP_MISS                   2 100%\n    HTTP Requests 0\n\n"
        ),
        "{page}"
    );
    assert!(
        page.contains("\nTOTALS\nICP : 2 Queries, 0 Hits (  0%)\n"),
        "{page}"
    );
}
