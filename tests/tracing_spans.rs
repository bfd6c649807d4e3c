//! Tracing spans as an operator sees them with `RUST_LOG`: every client
//! request runs in a `request` span carrying its URL (once), and a peer
//! query round in a `peer_query` span inside it.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{free_port, Conf, Cuttle, Origin, Reply, Req, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_with_a_peer_query_logs_inside_its_request_span() {
    let origin = Origin::start().await;
    origin.route("/spanned", |_| Reply::ok("object").cc("max-age=60"));
    // A sibling that never answers: the round times out quickly.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let icp_port = silent.local_addr().expect("addr").port();
    let conf = Conf::new()
        .extra(&format!("icp_port {}", free_port()))
        .extra("icp_query_timeout 200")
        .extra(&format!(
            "cache_peer 127.0.0.1 sibling {} {icp_port} name=silent",
            free_port()
        ));
    let dir = TempDir::new("spans");
    let port = free_port();
    let conf_path = dir.path().join("squid.conf");
    std::fs::write(&conf_path, conf.text(dir.path(), port)).expect("write config");
    let args = [
        "run".to_string(),
        "-f".to_string(),
        conf_path.display().to_string(),
    ];
    let proxy = Cuttle::start_raw(
        &args,
        &[("RUST_LOG", Path::new("cuttle=debug"))],
        port,
        dir,
        "spans",
    );
    let url = origin.url("/spanned");
    let r = Req::get(&url).send(&proxy).await;
    assert_eq!(r.status, 200);
    let wanted = format!("peer_query{{url=\"{url}\"}}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        if let Some(l) = proxy.stderr().into_iter().find(|l| l.contains(&wanted)) {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event in a peer_query span:\n{}",
            proxy.stderr().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let request = format!("request{{method=GET url={url}}}:{wanted}");
    assert!(
        line.contains(&request),
        "not inside its request span: {line}"
    );
}
