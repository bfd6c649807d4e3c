//! A real Squid 5.7 (Debian's, built with GnuTLS) as a `tls` parent of
//! cuttle: Squid's `https_port` (a TLS-wrapped forward proxy port) with a
//! certificate made at run time, and cuttle's `cache_peer ... tls
//! tls-cafile=`. The port speaks only TLS, so an answer through it proves
//! the link was encrypted; Squid's access.log shows the request it got.

mod peer_lab;
mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use peer_lab::{free_tcp_port, log_lines, Squid};
use support::tls::Pki;
use support::{Conf, Cuttle, Origin, Reply, Req, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_https_port_is_a_tls_parent_of_cuttle() {
    let tmp = TempDir::new("tls-squid");
    let squid_dir = tmp.path().join("squid");
    std::fs::create_dir_all(&squid_dir).expect("squid dir");
    let pki = Pki::new(&squid_dir, "squid");
    let leaf = pki.leaf("squid", &["localhost"]);
    let origin = Origin::start().await;
    origin.route("/obj", |s| {
        Reply::ok(format!("object {}", s.n)).cc("max-age=3600")
    });

    let ip = Ipv4Addr::new(127, 0, 17, 1);
    let https_port = free_tcp_port(ip);
    let squid = Squid::start(
        &squid_dir,
        ip,
        "127.0.0.0/8",
        &format!(
            "https_port {ip}:{https_port} tls-cert={} tls-key={}",
            leaf.cert_path.display(),
            leaf.key_path.display()
        ),
    );
    let proxy = Cuttle::start(
        &Conf::new()
            .extra(&format!(
                "cache_peer {ip} parent {https_port} 0 no-query no-digest tls tls-cafile={} tls-domain=localhost name=squid",
                pki.ca_path().display()
            ))
            .extra("never_direct allow all"),
    );
    // The parent is used once cuttle's TCP probe found it up.
    let page = format!(
        "http://127.0.0.1:{}/squid-internal-mgr/server_list",
        proxy.port
    );
    let deadline = Instant::now() + support::WAIT;
    while !Req::get(&page)
        .send(&proxy)
        .await
        .text()
        .contains("Status     : Up")
    {
        assert!(Instant::now() < deadline, "Squid's port never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = origin.url("/obj");
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(
        r.status,
        200,
        "{}\n{}\n{}",
        r.text(),
        proxy.stderr().join("\n"),
        std::fs::read_to_string(squid_dir.join("cache.log")).unwrap_or_default()
    );
    assert_eq!(r.text(), "object 1");
    let lines = log_lines(&squid.access_log(), &url, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(origin.count("/obj"), 1);
}
