//! https_port (issue 17): cuttle terminating TLS as an accelerator in front
//! of a plain-HTTP origin: misses and hits over one TLS connection, the
//! certificate chosen by SNI, failed handshakes in cache.log only, bad key
//! files refused by `check` and `run`, and certificates re-read on SIGHUP.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use support::tls::{self, Leaf, Pki};
use support::{Conf, Conn, Cuttle, Origin, Reply, Req, TempDir};

/// cuttle's https_port line presenting `certs` (in order), as an
/// accelerator for www.example.com.
fn https_port(certs: &[&Leaf]) -> String {
    let mut line = "https_port 127.0.0.1:{port} accel defaultsite=www.example.com".to_string();
    for c in certs {
        line.push_str(&format!(
            " tls-cert={} tls-key={}",
            c.cert_path.display(),
            c.key_path.display()
        ));
    }
    line
}

/// An accelerator conf on an https_port, `origin` its originserver parent,
/// with a cache.log in its temp dir.
fn accelerator(origin: &Origin, certs: &[&Leaf]) -> Conf {
    Conf::new()
        .port_line(&https_port(certs))
        .extra(&format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query no-digest originserver name=origin",
            origin.port()
        ))
        .extra("cache_log {dir}/cache.log")
}

fn get(path: &str) -> Req {
    Req::new("GET", path).header("host", "www.example.com")
}

/// The end-entity certificate in the PEM file `path`.
fn cert_in(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("certificate PEM")
}

/// The certificate cuttle presents to a client sending `sni` and trusting
/// `ca`, or why the handshake failed.
async fn presented(
    proxy: &Cuttle,
    sni: &str,
    ca: &Path,
) -> Result<CertificateDer<'static>, String> {
    let stream = tls::connect(proxy.addr(), sni, ca).await?;
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates");
    Ok(certs[0].clone().into_owned())
}

/// Waits until the cache.log in `dir` has a line containing `needle`.
async fn cache_log_line(dir: &Path, needle: &str) -> String {
    let path = dir.join("cache.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no cache.log line containing {needle:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_then_a_hit_on_one_tls_connection() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    origin.route("/obj", |s| {
        Reply::ok(format!("body {}", s.n)).cc("max-age=600")
    });
    let proxy = Cuttle::start(&accelerator(&origin, &[&leaf]));

    let mut conn = Conn::open_tls(proxy.addr(), "www.example.com", pki.ca_path()).await;
    let first = conn.send(get("/obj")).await;
    let second = conn.send(get("/obj")).await;
    assert_eq!((first.status, first.text()), (200, "body 1".to_string()));
    assert_eq!((second.status, second.text()), (200, "body 1".to_string()));
    assert_eq!(origin.count("/obj"), 1, "the second came from the cache");
    let log = proxy.log(2).await;
    let results: Vec<String> = log.iter().map(|l| l.result()).collect();
    assert_eq!(results[0], "TCP_MISS/200");
    assert!(results[1].ends_with("HIT/200"), "{results:?}");
    // Squid's URL for a request on an https_port.
    assert_eq!(log[0].url, "https://www.example.com/obj");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_of_the_name_asked_for() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let www = pki.leaf("www", &["www.example.com"]);
    let img = pki.leaf("img", &["img.example.com"]);
    let origin = Origin::start().await;
    let proxy = Cuttle::start(&accelerator(&origin, &[&www, &img]));

    let got = presented(&proxy, "img.example.com", pki.ca_path()).await;
    assert_eq!(got.expect("handshake as img"), cert_in(&img.cert_path));
    let got = presented(&proxy, "www.example.com", pki.ca_path()).await;
    assert_eq!(got.expect("handshake as www"), cert_in(&www.cert_path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handshake_is_in_cache_log_not_access_log() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let other = Pki::new(certs.path(), "other");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    origin.route("/obj", |_| Reply::ok("x"));
    let proxy = Cuttle::start(&accelerator(&origin, &[&leaf]));

    let refused = presented(&proxy, "www.example.com", other.ca_path()).await;
    assert!(refused.is_err(), "a client trusting another CA must refuse");
    let line = cache_log_line(proxy.dir.path(), "TLS handshake with 127.0.0.1:").await;
    assert!(line.contains("failed"), "{line}");

    let mut conn = Conn::open_tls(proxy.addr(), "www.example.com", pki.ca_path()).await;
    assert_eq!(conn.send(get("/obj")).await.status, 200);
    let log = proxy.log(1).await;
    assert_eq!(log.len(), 1, "only the request that came: {log:?}");
    assert_eq!(log[0].url, "https://www.example.com/obj");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_file_fails_check_and_run_naming_it() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let key = leaf.key_path.display().to_string();
    std::fs::remove_file(&leaf.key_path).expect("remove key");
    let origin = Origin::start().await;
    let conf = accelerator(&origin, &[&leaf]);

    let conf_path = certs.path().join("squid.conf");
    std::fs::write(&conf_path, conf.text(certs.path(), 3443)).expect("write conf");
    let check = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["check", "-f"])
        .arg(&conf_path)
        .output()
        .expect("run cuttle check");
    let said = String::from_utf8_lossy(&check.stderr).to_string()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "check passed:\n{said}");
    assert!(
        said.contains(&format!("unable to load private key file '{key}'")),
        "{said}"
    );

    let failed = Cuttle::try_start(&conf).err().expect("run must fail");
    assert!(
        failed.contains(&format!("unable to load private key file '{key}'")),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_presents_a_new_certificate_and_keeps_old_connections() {
    let certs = TempDir::new("https-port-certs");
    let old_ca = Pki::new(certs.path(), "old");
    let new_ca = Pki::new(certs.path(), "new");
    let leaf = old_ca.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    origin.route("/obj", |s| Reply::ok(format!("body {}", s.n)));
    let conf = accelerator(&origin, &[&leaf]);
    let proxy = Cuttle::start(&conf);
    let mut old = Conn::open_tls(proxy.addr(), "www.example.com", old_ca.ca_path()).await;
    assert_eq!(old.send(get("/obj")).await.status, 200);

    // The same files, now holding a certificate of the new CA.
    let renewed = new_ca.leaf("www", &["www.example.com"]);
    assert_eq!(renewed.cert_path, leaf.cert_path);
    proxy.signal("HUP");
    proxy.wait_output("configuration reloaded", false).await;

    let got = presented(&proxy, "www.example.com", new_ca.ca_path()).await;
    assert_eq!(
        got.expect("the renewed certificate"),
        cert_in(&renewed.cert_path)
    );
    let r = old.send(get("/obj")).await;
    assert_eq!(r.status, 200, "the connection made before the reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_accel_it_is_a_forward_proxy_over_tls() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("proxy", &["proxy.example.com"]);
    let origin = Origin::start().await;
    origin.route("/fwd", |_| Reply::ok("forwarded").cc("max-age=600"));
    let conf = Conf::new().port_line(&format!(
        "https_port 127.0.0.1:{{port}} tls-cert={} tls-key={}",
        leaf.cert_path.display(),
        leaf.key_path.display()
    ));
    let proxy = Cuttle::start(&conf);
    let mut conn = Conn::open_tls(proxy.addr(), "proxy.example.com", pki.ca_path()).await;
    let r = conn.send(Req::get(&origin.url("/fwd"))).await;
    assert_eq!((r.status, r.text()), (200, "forwarded".to_string()));
    assert_eq!(proxy.log(1).await[0].url, origin.url("/fwd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_an_unreadable_key_keeps_the_old_certificate() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    let proxy = Cuttle::start(&accelerator(&origin, &[&leaf]));

    std::fs::remove_file(&leaf.key_path).expect("remove key");
    proxy.signal("HUP");
    proxy
        .wait_output(
            "the new configuration has errors; keeping the old one",
            true,
        )
        .await;
    let said = proxy.stderr().join("\n");
    assert!(
        said.contains(&format!(
            "unable to load private key file '{}'",
            leaf.key_path.display()
        )),
        "{said}"
    );
    let got = presented(&proxy, "www.example.com", pki.ca_path()).await;
    assert_eq!(got.expect("the old certificate"), cert_in(&leaf.cert_path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_client_and_a_silent_one_are_cache_log_lines() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    let proxy =
        Cuttle::start(&accelerator(&origin, &[&leaf]).extra("request_start_timeout 1 second"));

    let answer = support::raw(
        proxy.addr(),
        b"GET /obj HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
    )
    .await;
    assert!(
        !answer.contains("HTTP/1.1"),
        "no HTTP answer in cleartext: {answer:?}"
    );
    let line = cache_log_line(proxy.dir.path(), "TLS handshake with 127.0.0.1:").await;
    assert!(line.contains("failed"), "{line}");

    // A client that sends nothing is cut at request_start_timeout.
    let mut silent = support::connect(proxy.addr(), None).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut buf),
    )
    .await;
    assert!(read.is_ok(), "the silent connection stayed open");
    cache_log_line(proxy.dir.path(), "(request_start_timeout)").await;
    assert!(
        std::fs::read_to_string(proxy.log_path())
            .unwrap_or_default()
            .is_empty(),
        "neither is an access.log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_naming_other_certificate_files_uses_them_without_a_restart() {
    let certs = TempDir::new("https-port-certs");
    let old_ca = Pki::new(certs.path(), "old");
    let new_ca = Pki::new(certs.path(), "new");
    let leaf = old_ca.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    let proxy = Cuttle::start(&accelerator(&origin, &[&leaf]));

    let renewed = new_ca.leaf("www-2027", &["www.example.com"]);
    proxy.rewrite_config(&accelerator(&origin, &[&renewed]));
    proxy.signal("HUP");
    proxy.wait_output("configuration reloaded", false).await;
    let got = presented(&proxy, "www.example.com", new_ca.ca_path()).await;
    assert_eq!(
        got.expect("the new files' certificate"),
        cert_in(&renewed.cert_path)
    );
    let said = proxy.stderr().join("\n");
    assert!(
        !said.contains("take effect at the next restart"),
        "new certificate files need no restart:\n{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_in_progress_does_not_hold_up_shutdown() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    // Far longer than the test waits: only a dropped handshake lets it end.
    let conf = accelerator(&origin, &[&leaf]).extra("shutdown_lifetime 1 minute");
    let mut proxy = Cuttle::start(&conf);
    let _silent = support::connect(proxy.addr(), None).await;
    cache_log_line(proxy.dir.path(), "listening on").await;
    tokio::time::sleep(Duration::from_millis(200)).await; // accepted, handshaking
    proxy.signal("TERM");
    assert!(proxy.wait_exit().await.success());
    let said = proxy.stderr().join("\n");
    assert!(!said.contains("still in flight"), "{said}");
}

/// `allow-direct` on an accelerating https_port: its URLs are https://, so
/// DIRECT fetches them over TLS (verified with tls_outgoing_options' CA),
/// never in cleartext, as Squid does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_direct_fetches_the_https_site_over_tls() {
    let certs = TempDir::new("https-port-direct");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("site", &["localhost"]);
    let origin = Origin::start_tls(&leaf).await;
    origin.route("/obj", |s| {
        Reply::ok(format!("tls body {}", s.n)).cc("max-age=600")
    });
    let site = format!("localhost:{}", origin.port());
    let conf = Conf::new()
        .port_line(&format!(
            "https_port 127.0.0.1:{{port}} accel allow-direct defaultsite={site} tls-cert={} tls-key={}",
            leaf.cert_path.display(),
            leaf.key_path.display()
        ))
        .extra(&format!("tls_outgoing_options cafile={}", pki.ca_path().display()));
    let proxy = Cuttle::start(&conf);
    let mut conn = Conn::open_tls(proxy.addr(), "localhost", pki.ca_path()).await;
    for _ in 0..2 {
        let r = conn
            .send(Req::new("GET", "/obj").header("host", site.as_str()))
            .await;
        assert_eq!((r.status, r.text()), (200, "tls body 1".to_string()));
    }
    assert_eq!(origin.count("/obj"), 1, "fetched once over TLS, then a hit");
    let log = proxy.log(2).await;
    assert_eq!(log[0].url, format!("https://{site}/obj"));
    assert!(log[0].hierarchy.starts_with("HIER_DIRECT/"), "{:?}", log[0]);
}

/// A peer's TCP probe (connect, then close without a byte: Squid probes
/// its peers' ports so) is no handshake failure: no cache.log warning,
/// while a real failure after it still is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_sends_nothing_is_not_a_handshake_failure() {
    let certs = TempDir::new("https-port-certs");
    let pki = Pki::new(certs.path(), "test");
    let leaf = pki.leaf("www", &["www.example.com"]);
    let origin = Origin::start().await;
    let proxy = Cuttle::start(&accelerator(&origin, &[&leaf]));

    // A client that does not trust the certificate (a real failure), a
    // probe, and that client again: the probe's line, if any, comes
    // before the second failure's.
    let other = Pki::new(certs.path(), "other");
    let log_path = proxy.dir.path().join("cache.log");
    let failures = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("TLS handshake with"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for probe in [false, true, false] {
        if probe {
            drop(support::connect(proxy.addr(), None).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let before = failures().len();
        assert!(
            tls::connect(proxy.addr(), "www.example.com", other.ca_path())
                .await
                .is_err()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while failures().len() == before {
            assert!(Instant::now() < deadline, "no failure line");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let lines = failures();
    assert_eq!(
        lines.len(),
        2,
        "only the untrusting client fails: {lines:#?}"
    );
}
