//! TLS links between cuttle and a real Squid 5.7 (Debian's, built with
//! GnuTLS), both ways, with certificates made at run time: Squid's
//! `https_port` (a TLS-wrapped forward proxy port) as a `tls` parent of
//! cuttle (`cache_peer ... tls tls-cafile=`), and cuttle's `https_port` as
//! a `tls` parent of Squid. Objects flow through each link, and a capture
//! of the link's port on loopback (tcpdump) shows a TLS handshake and no
//! HTTP in the clear. Fails, never skips, when squid or tcpdump is missing.

mod peer_lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peer_lab::{free_tcp_port, get, log_lines, start_cuttle, text_body, text_origin, Squid};
use support::tls::Pki;
use support::{Conf, Cuttle, Origin, Reply, Req, TempDir};

/// tcpdump writing every packet to or from `port` on loopback to a file;
/// stopped (and the file complete) by [`Capture::packets`].
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(dir: &Path, port: u16) -> Capture {
        let file = dir.join(format!("port{port}.pcap"));
        // --immediate-mode: without it this kernel hands tcpdump no packets
        // on lo before it is stopped. -Z root: Debian's tcpdump otherwise
        // drops to user tcpdump, which
        // may not write in the test's directory. -U: each packet written
        // as it comes, so nothing is lost when it is stopped.
        let child = Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-U", "-Z", "root", "-w"])
            .arg(&file)
            .args(["tcp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tcpdump (Debian package tcpdump)");
        // tcpdump says "listening on lo" once the capture is open.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "tcpdump did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Capture { child, file }
    }

    /// Stops the capture and returns the captured file's bytes.
    fn bytes(mut self) -> Vec<u8> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read(&self.file).expect("read capture")
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The capture carried a TLS session (handshake records) and no HTTP in
/// the clear: no request line, no status line, no body text.
fn assert_encrypted(pcap: &[u8], body_text: &str, link: &str) {
    assert!(
        pcap.len() > 2000,
        "{link}: the capture is nearly empty ({} bytes)",
        pcap.len()
    );
    // A TLS handshake record: content type 22, version 3.x.
    assert!(
        contains(pcap, &[0x16, 0x03]),
        "{link}: no TLS handshake in the capture"
    );
    for clear in [&b"HTTP/1.1"[..], b"GET ", b"Host:", body_text.as_bytes()] {
        assert!(
            !contains(pcap, clear),
            "{link}: cleartext {:?} on the wire",
            String::from_utf8_lossy(clear)
        );
    }
}

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
    let capture = Capture::start(tmp.path(), https_port);
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
    assert_encrypted(&capture.bytes(), "object 1", "cuttle -> Squid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_is_a_tls_parent_of_squid() {
    let dir = TempDir::new("tls-cuttle-parent");
    // Squid, running as the proxy user, reads the CA file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pki = Pki::new(dir.path(), "lab");
    std::fs::set_permissions(pki.ca_path(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod CA");
    let cuttle_ip = Ipv4Addr::new(127, 0, 6, 3);
    let squid_ip = Ipv4Addr::new(127, 0, 6, 4);
    let leaf = pki.leaf("cuttle", &["cuttle.test", "127.0.6.3"]);
    let origin = text_origin(Ipv4Addr::LOCALHOST, &["/c"]).await;
    let tls_port = free_tcp_port(cuttle_ip);
    let cuttle = start_cuttle(
        &dir.path().join("cuttle"),
        cuttle_ip,
        &format!(
            "https_port {cuttle_ip}:{tls_port} tls-cert={} tls-key={}",
            leaf.cert_path.display(),
            leaf.key_path.display()
        ),
    );
    // cache deny all: Squid keeps nothing, so both requests reach cuttle.
    let squid = Squid::start(
        &dir.path().join("squid"),
        squid_ip,
        "127.0.0.1/32",
        &format!(
            "cache_peer {cuttle_ip} parent {tls_port} 0 no-query no-digest tls tls-cafile={} tls-domain=cuttle.test\n\
             never_direct allow all\n\
             cache deny all\n\
             debug_options ALL,1 15,2",
            pki.ca_path().display()
        ),
    );
    squid.wait_probed(SocketAddr::from((cuttle_ip, tls_port)));
    let capture = Capture::start(dir.path(), tls_port);
    let url = origin.url("/c");
    for _ in 0..2 {
        let (status, body) = get(squid.http_addr(), &url).await;
        assert_eq!(
            status,
            200,
            "{url} through Squid:\n{}\ncuttle:\n{}",
            squid.cache_log(),
            cuttle.output()
        );
        assert_eq!(body, text_body("/c"));
    }
    let lines = log_lines(&cuttle.log, &url, 2);
    assert_eq!(
        lines.len(),
        2,
        "cuttle's access.log:\n{lines:?}\n{}",
        cuttle.output()
    );
    assert!(lines[0][3].starts_with("TCP_MISS/200"), "{:?}", lines[0]);
    assert!(
        lines[1][3].contains("HIT/200"),
        "the second is cuttle's hit: {:?}",
        lines[1]
    );
    assert_eq!(origin.count("/c"), 1);
    let squid_lines = log_lines(&squid.access_log(), &url, 2);
    assert!(
        squid_lines
            .iter()
            .all(|l| l[8] == format!("FIRSTUP_PARENT/{cuttle_ip}")),
        "Squid went through its TLS parent: {squid_lines:?}"
    );
    assert_encrypted(&capture.bytes(), &text_body("/c"), "Squid -> cuttle");
}
