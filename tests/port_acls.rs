//! The ACLs about the port a request arrived on (`myportname`, `localport`)
//! decide peer selection as they decide http_access: in
//! `cache_peer_access` and `always_direct`, a request on one http_port goes
//! through the parent and one on the other goes DIRECT (as Squid 5.7).

mod support;

use support::{free_port, read_log, Conf, Cuttle, Origin, Req};

/// cuttle with a second http_port named `portb` and `lines`; a parent line
/// for `parent` comes first. Returns cuttle and port b.
fn start(parent: &Origin, lines: &[&str]) -> (Cuttle, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port_b = free_port();
        let mut conf = Conf::new()
            .extra(&format!("http_port 127.0.0.1:{port_b} name=portb"))
            .extra(&format!(
                "cache_peer 127.0.0.1 parent {} 0 no-query name=par",
                parent.port()
            ));
        for line in lines {
            conf = conf.extra(&line.replace("{port_b}", &port_b.to_string()));
        }
        match Cuttle::try_start(&conf) {
            Ok(cuttle) => return (cuttle, port_b),
            Err(e) if e.contains("cannot listen") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free port for cuttle:\n{last}");
}

/// Sends a GET for `url` to cuttle's port `port` and returns its log line's
/// hierarchy code (`FIRSTUP_PARENT`, `HIER_DIRECT`); `lines` is the number
/// of lines the log will have.
async fn hierarchy_via(cuttle: &Cuttle, port: u16, url: &str, lines: usize) -> String {
    Req::get(url)
        .send_to(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await;
    let log = read_log(&cuttle.log_path(), lines).await;
    let line = log
        .iter()
        .find(|l| l.url == url)
        .unwrap_or_else(|| panic!("no log line for {url}: {log:?}"));
    line.hierarchy
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// An origin and a "parent" (an origin too: it answers by path, whatever
/// the request's form), both answering `/a`, `/b` and `/warm1` to
/// `/warm50` uncacheably.
async fn origin_and_parent() -> (Origin, Origin) {
    let origin = Origin::start().await;
    let parent = Origin::start().await;
    for server in [&origin, &parent] {
        let warm = (1..=50).map(|n| format!("/warm{n}"));
        for path in ["/a".to_string(), "/b".to_string()].into_iter().chain(warm) {
            server.route(&path, |_| support::Reply::ok("x").cc("no-store"));
        }
    }
    (origin, parent)
}

/// The ACL that sends `/warm` to the parent on any port.
const WARM: &str = "acl warm urlpath_regex ^/warm";

/// cuttle uses no parent before its probe of the parent's port succeeded
/// (squid-spec 1.8): sends `/warm` requests on the first port until one
/// goes to the parent. Returns the number of log lines written.
async fn wait_parent_up(cuttle: &Cuttle, origin: &Origin) -> usize {
    for n in 1..=50 {
        let url = origin.url(&format!("/warm{n}"));
        if hierarchy_via(cuttle, cuttle.port, &url, n).await == "FIRSTUP_PARENT" {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the parent was never used: {:?}", cuttle.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn myportname_decides_cache_peer_access() {
    let (origin, parent) = origin_and_parent().await;
    let (cuttle, port_b) = start(
        &parent,
        &[
            WARM,
            "acl viab myportname portb",
            "cache_peer_access par allow warm",
            "cache_peer_access par allow viab",
            "cache_peer_access par deny all",
        ],
    );
    let n = wait_parent_up(&cuttle, &origin).await;
    let on_b = hierarchy_via(&cuttle, port_b, &origin.url("/b"), n + 1).await;
    let on_a = hierarchy_via(&cuttle, cuttle.port, &origin.url("/a"), n + 2).await;
    assert_eq!(on_b, "FIRSTUP_PARENT", "the request on port b");
    assert_eq!(on_a, "HIER_DIRECT", "the request on the other port");
    assert_eq!(parent.count("/b"), 1);
    assert_eq!(origin.count("/a"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localport_decides_always_direct() {
    let (origin, parent) = origin_and_parent().await;
    let (cuttle, port_b) = start(
        &parent,
        &["acl viab localport {port_b}", "always_direct allow viab"],
    );
    let n = wait_parent_up(&cuttle, &origin).await;
    let on_b = hierarchy_via(&cuttle, port_b, &origin.url("/b"), n + 1).await;
    let on_a = hierarchy_via(&cuttle, cuttle.port, &origin.url("/a"), n + 2).await;
    assert_eq!(on_b, "HIER_DIRECT", "the request on port b");
    assert_eq!(on_a, "FIRSTUP_PARENT", "the request on the other port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn myportname_decides_never_direct() {
    let (origin, parent) = origin_and_parent().await;
    // The parent is usable only under never_direct (prefer_direct on puts
    // DIRECT first otherwise).
    let (cuttle, port_b) = start(
        &parent,
        &[
            "prefer_direct on",
            WARM,
            "acl viab myportname portb",
            "never_direct allow warm",
            "never_direct allow viab",
        ],
    );
    let n = wait_parent_up(&cuttle, &origin).await;
    let on_b = hierarchy_via(&cuttle, port_b, &origin.url("/b"), n + 1).await;
    let on_a = hierarchy_via(&cuttle, cuttle.port, &origin.url("/a"), n + 2).await;
    assert_eq!(on_b, "FIRSTUP_PARENT", "the request on port b");
    assert_eq!(on_a, "HIER_DIRECT", "the request on the other port");
}
