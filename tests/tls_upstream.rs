//! TLS from cuttle to origins and peers (issue 17): an accelerator in
//! front of an HTTPS origin (`cache_peer ... originserver tls`), a TLS
//! parent proxy, and https:// URLs in forward-proxy mode
//! (`tls_outgoing_options`). Certificates are made at run time
//! (tests/support/tls.rs). The test origin speaks only TLS, so whatever it
//! answered came over TLS.

mod support;

use std::time::{Duration, Instant};

use support::tls::{Leaf, Pki};
use support::{read_log, Conf, Cuttle, LogLine, Origin, Reply, Req, TempDir};

/// An HTTPS origin presenting `leaf`, with /obj fresh for an hour, /etag
/// always stale with a validator (304 when it matches) and /nocache
/// never stored.
async fn https_origin(leaf: &Leaf) -> Origin {
    let origin = Origin::start_tls(leaf).await;
    routes(&origin);
    origin
}

fn routes(origin: &Origin) {
    origin.route("/obj", |s| {
        Reply::ok(format!("object {}", s.n)).cc("max-age=3600")
    });
    origin.route("/etag", |s| {
        if s.header("if-none-match") == "\"v1\"" {
            Reply::status(304).header("etag", "\"v1\"").cc("max-age=0")
        } else {
            Reply::ok("tagged").header("etag", "\"v1\"").cc("max-age=0")
        }
    });
    origin.route("/nocache", |s| {
        Reply::ok(format!("fresh {}", s.n)).cc("no-store")
    });
}

/// cuttle as an accelerator whose only parent is `origin`, an
/// originserver `tls` peer named "origin" with `tls_options`, once its
/// peer is up.
async fn accelerator(origin: &Origin, tls_options: &str) -> Cuttle {
    started(&accel_conf(origin, tls_options)).await
}

fn accel_conf(origin: &Origin, tls_options: &str) -> Conf {
    Conf::new()
        .port_line("http_port 127.0.0.1:{port} accel defaultsite=localhost no-vhost")
        .extra(&format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query no-digest originserver tls {tls_options} name=origin",
            origin.port()
        ))
}

/// Starts cuttle and waits until its TCP probe found its peer up: a peer
/// is used only after that (squid-spec 1.8), so a request sent sooner
/// would find no parent.
async fn started(conf: &Conf) -> Cuttle {
    let proxy = Cuttle::start(conf);
    let page = format!(
        "http://127.0.0.1:{}/squid-internal-mgr/server_list",
        proxy.port
    );
    let deadline = Instant::now() + support::WAIT;
    loop {
        let text = Req::get(&page).send(&proxy).await.text();
        if text.contains("Status     : Up") {
            return proxy;
        }
        assert!(Instant::now() < deadline, "the peer never came up:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first `n` access.log lines of client requests (the manager pages
/// [`started`] asked for left out).
async fn requests_logged(proxy: &Cuttle, n: usize) -> Vec<LogLine> {
    let deadline = Instant::now() + support::WAIT;
    loop {
        let all = read_log(&proxy.log_path(), 0).await;
        let lines: Vec<LogLine> = all
            .into_iter()
            .filter(|l| !l.url.contains("/squid-internal-mgr/"))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn accel_get(path: &str) -> Req {
    Req::new("GET", path).header("host", "localhost")
}

fn ca_option(pki: &Pki) -> String {
    format!(
        "tls-cafile={} tls-domain=localhost",
        pki.ca_path().display()
    )
}

/// Everything cuttle wrote (its cache.log goes to stdout/stderr).
fn output(cuttle: &Cuttle) -> String {
    [cuttle.stdout(), cuttle.stderr()].concat().join("\n")
}

fn dir(tag: &str) -> TempDir {
    TempDir::new(&format!("tls-upstream-{tag}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_behind_the_accelerator_misses_hits_and_revalidates() {
    let tmp = dir("accel");
    let pki = Pki::new(tmp.path(), "origin");
    let origin = https_origin(&pki.leaf("origin", &["localhost"])).await;
    let proxy = accelerator(&origin, &ca_option(&pki)).await;

    for want in ["TCP_MISS/200", "TCP_MEM_HIT/200"] {
        let r = accel_get("/obj").send(&proxy).await;
        assert_eq!(
            (r.status, r.text()),
            (200, "object 1".to_string()),
            "{}",
            output(&proxy)
        );
        let line = requests_logged(&proxy, 1).await.pop().expect("a log line");
        assert!(
            line.result() == want || (want == "TCP_MEM_HIT/200" && line.result() == "TCP_HIT/200"),
            "{line:?}"
        );
    }
    assert_eq!(origin.count("/obj"), 1);

    // Stale with a validator: revalidated over TLS, the origin says 304.
    let first = accel_get("/etag").send(&proxy).await;
    assert_eq!((first.status, first.text()), (200, "tagged".to_string()));
    let second = accel_get("/etag").send(&proxy).await;
    assert_eq!((second.status, second.text()), (200, "tagged".to_string()));
    assert_eq!(origin.count("/etag"), 2);
    assert_eq!(origin.last("/etag").header("if-none-match"), "\"v1\"");
    let results: Vec<String> = requests_logged(&proxy, 4)
        .await
        .iter()
        .map(|l| l.result())
        .collect();
    assert_eq!(results[3], "TCP_REFRESH_UNMODIFIED/200", "{results:?}");
}

/// Squid 5.7 answers a refused certificate with 503 ERR_SECURE_CONNECT_FAIL;
/// cache.log names the peer and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_with_squids_error() {
    let tmp = dir("other-ca");
    let trusted = Pki::new(tmp.path(), "trusted");
    let other = Pki::new(tmp.path(), "other");
    let origin = https_origin(&other.leaf("origin", &["localhost"])).await;
    let proxy = accelerator(&origin, &ca_option(&trusted)).await;

    let r = accel_get("/obj").send(&proxy).await;
    assert_eq!(r.status, 503, "{}\n{}", r.text(), output(&proxy));
    assert_eq!(r.header("x-squid-error"), "ERR_SECURE_CONNECT_FAIL 0");
    assert!(r.text().contains("ERR_SECURE_CONNECT_FAIL"), "{}", r.text());
    let line = requests_logged(&proxy, 1).await.pop().expect("a log line");
    assert_eq!(line.result(), "TCP_MISS/503", "{line:?}");
    assert_eq!(origin.count("/obj"), 0);
    proxy
        .wait_output("TLS connection to origin failed", true)
        .await;
    let out = output(&proxy);
    let said = out
        .lines()
        .find(|l| l.contains("TLS connection to origin failed"))
        .expect("logged");
    assert!(said.contains("UnknownIssuer"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let tmp = dir("expired");
    let pki = Pki::new(tmp.path(), "origin");
    let origin = https_origin(&pki.expired_leaf("origin", &["localhost"])).await;
    let proxy = accelerator(&origin, &ca_option(&pki)).await;

    let r = accel_get("/obj").send(&proxy).await;
    assert_eq!(r.status, 503, "{}\n{}", r.text(), output(&proxy));
    assert_eq!(r.header("x-squid-error"), "ERR_SECURE_CONNECT_FAIL 0");
    assert_eq!(origin.count("/obj"), 0);
    proxy
        .wait_output("TLS connection to origin failed", true)
        .await;
    assert!(
        output(&proxy).contains("certificate expired"),
        "{}",
        output(&proxy)
    );
}

/// tls-flags=DONT_VERIFY_PEER: any certificate is accepted, and both
/// `cuttle check` and the start say so loudly, naming the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dont_verify_peer_accepts_any_certificate_and_is_warned() {
    let tmp = dir("dont-verify");
    let other = Pki::new(tmp.path(), "other");
    let origin = https_origin(&other.expired_leaf("origin", &["elsewhere.example"])).await;
    let proxy = accelerator(&origin, "tls-flags=DONT_VERIFY_PEER").await;

    let r = accel_get("/obj").send(&proxy).await;
    assert_eq!((r.status, r.text()), (200, "object 1".to_string()));
    let warning =
        "warning: cache_peer origin: DONT_VERIFY_PEER: its TLS certificate is NOT verified";
    assert!(output(&proxy).contains(warning), "{}", output(&proxy));

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["check", "-f"])
        .arg(&proxy.conf_path)
        .output()
        .expect("cuttle check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{text}");
    assert!(text.contains(warning), "{text}");
}

/// tls-cert=/tls-key= are presented when the origin asks for a client
/// certificate; without them the origin refuses the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_sent_when_the_origin_asks() {
    let tmp = dir("client-cert");
    let pki = Pki::new(tmp.path(), "origin");
    let clients = Pki::new(tmp.path(), "clients");
    let client = clients.leaf("cuttle-client", &["cuttle.example"]);
    let acceptor = pki
        .leaf("origin", &["localhost"])
        .acceptor_requiring_client_cert(clients.ca_path());
    let origin = Origin::start_tls_acceptor(acceptor).await;
    routes(&origin);

    // Without one the origin refuses. In TLS 1.3 the client's handshake
    // is over before the server judges its certificate: its refusal (an
    // alert) arrives with the first read and is ERR_SECURE_CONNECT_FAIL,
    // unless the server's reset of the connection overtakes the alert
    // (a read error, 502).
    let without = accelerator(&origin, &ca_option(&pki)).await;
    let r = accel_get("/obj").send(&without).await;
    assert!(
        [502, 503].contains(&r.status),
        "{}\n{}",
        r.text(),
        output(&without)
    );
    assert_eq!(origin.count("/obj"), 0);

    let with = accelerator(
        &origin,
        &format!(
            "{} tls-cert={} tls-key={}",
            ca_option(&pki),
            client.cert_path.display(),
            client.key_path.display()
        ),
    )
    .await;
    let r = accel_get("/obj").send(&with).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "object 1".to_string()),
        "{}",
        output(&with)
    );
}

/// Keep-alive works over TLS: two requests, one handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_share_one_tls_connection() {
    let tmp = dir("reuse");
    let pki = Pki::new(tmp.path(), "origin");
    let origin = https_origin(&pki.leaf("origin", &["localhost"])).await;
    let proxy = accelerator(&origin, &ca_option(&pki)).await;
    for n in 1..=2 {
        let r = accel_get("/nocache").send(&proxy).await;
        assert_eq!((r.status, r.text()), (200, format!("fresh {n}")));
    }
    assert_eq!(origin.connections(), 1);
}

/// A `tls` parent proxy (not an originserver) gets the absolute-form
/// request over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_parent_proxy_gets_the_absolute_url_over_tls() {
    let tmp = dir("parent");
    let pki = Pki::new(tmp.path(), "parent");
    let parent = https_origin(&pki.leaf("parent", &["localhost"])).await;
    let conf = Conf::new()
        .extra(&format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query no-digest {} name=parent",
            parent.port(),
            ca_option(&pki)
        ))
        .extra("never_direct allow all");
    let proxy = started(&conf).await;
    let r = Req::get("http://example.test/obj").send(&proxy).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "object 1".to_string()),
        "{}",
        output(&proxy)
    );
    assert_eq!(parent.last("/obj").uri, "http://example.test/obj");
    assert_eq!(parent.connections(), 1);
    let line = requests_logged(&proxy, 1).await.pop().expect("a log line");
    assert_eq!(line.hierarchy, "FIRSTUP_PARENT/127.0.0.1", "{line:?}");
}

/// A forward proxy fetches `GET https://...` (absolute form, not CONNECT)
/// over TLS, as Squid does, and caches it under its https:// URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_proxy_fetches_https_urls_over_tls_and_caches_them() {
    let tmp = dir("forward");
    let pki = Pki::new(tmp.path(), "origin");
    let origin = https_origin(&pki.leaf("origin", &["localhost"])).await;
    let conf = Conf::new().extra(&format!(
        "tls_outgoing_options cafile={}",
        pki.ca_path().display()
    ));
    let proxy = Cuttle::start(&conf);
    let url = format!("https://localhost:{}/obj", origin.port());
    for _ in 0..2 {
        let r = Req::get(&url).send(&proxy).await;
        assert_eq!(
            (r.status, r.text()),
            (200, "object 1".to_string()),
            "{}",
            output(&proxy)
        );
    }
    assert_eq!(origin.count("/obj"), 1);
    let lines = proxy.log(2).await;
    assert_eq!(lines[0].url, url);
    assert_eq!(lines[0].result(), "TCP_MISS/200");
    assert!(lines[1].result().contains("HIT/200"), "{lines:?}");

    // Without the test CA among the trusted ones: refused.
    let strict = Cuttle::start(&Conf::new().extra("tls_outgoing_options default-ca=on"));
    let r = Req::get(&format!("https://localhost:{}/nocache", origin.port()))
        .send(&strict)
        .await;
    assert_eq!(r.status, 503, "{}\n{}", r.text(), output(&proxy));
    assert_eq!(r.header("x-squid-error"), "ERR_SECURE_CONNECT_FAIL 0");
    assert_eq!(origin.count("/nocache"), 0);
}

/// A refused handshake counts against the peer like a refused TCP
/// connection: after connect-fail-limit of them it is dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_make_the_peer_dead() {
    let tmp = dir("dead");
    let trusted = Pki::new(tmp.path(), "trusted");
    let other = Pki::new(tmp.path(), "other");
    let origin = https_origin(&other.leaf("origin", &["localhost"])).await;
    let proxy = accelerator(
        &origin,
        &format!("{} connect-fail-limit=2", ca_option(&trusted)),
    )
    .await;
    let dead = "Detected DEAD Parent: origin";
    assert_eq!(accel_get("/obj").send(&proxy).await.status, 503);
    proxy
        .wait_output("TLS connection to origin failed", true)
        .await;
    assert!(!output(&proxy).contains(dead), "{}", output(&proxy));
    assert_eq!(accel_get("/obj").send(&proxy).await.status, 503);
    proxy.wait_output(dead, true).await;
}

/// The options cuttle implements pass `cuttle check`; the others (and a
/// missing file) still fail it with file:line.
#[test]
fn check_accepts_the_implemented_options_and_refuses_the_rest() {
    let tmp = dir("check");
    let pki = Pki::new(tmp.path(), "ca");
    let client = pki.leaf("client", &["client.example"]);
    let write = |text: &str| {
        let path = tmp.path().join("squid.conf");
        std::fs::write(&path, format!("pid_filename none\n{text}")).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["check", "-f"])
            .arg(&path)
            .output()
            .expect("cuttle check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let ca = pki.ca_path().display().to_string();
    let good = format!(
        "http_port 3128\ncache_peer p.example parent 443 0 no-query originserver tls tls-cafile={ca} tls-domain=www.example tls-cert={} tls-key={} tls-min-version=1.2\ntls_outgoing_options cafile={ca} min-version=1.3\n",
        client.cert_path.display(),
        client.key_path.display()
    );
    let (ok, text) = write(&good);
    assert!(ok, "{text}");
    for (bad, says) in [
        (
            "cache_peer p parent 443 0 no-query tls tls-capath=/etc/ssl/certs\n",
            "squid.conf:3",
        ),
        (
            "cache_peer p parent 443 0 no-query ssl sslcafile=/nonexistent.pem\n",
            "/nonexistent.pem",
        ),
        (
            "tls_outgoing_options flags=DONT_VERIFY_DOMAIN\n",
            "DONT_VERIFY_DOMAIN",
        ),
    ] {
        let (ok, text) = write(&format!("http_port 3128\n{bad}"));
        assert!(!ok, "{bad}: {text}");
        assert!(text.contains(says), "{bad}: {text}");
    }
}

/// A `tls` sibling's Cache Digest is fetched over its TLS link too: the
/// test peer speaks only TLS, so a request it counted came over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_siblings_digest_is_fetched_over_tls() {
    let tmp = dir("digest");
    let pki = Pki::new(tmp.path(), "sibling");
    let sibling = https_origin(&pki.leaf("sibling", &["localhost"])).await;
    let origin = Origin::start().await;
    origin.route("/first", |_| Reply::ok("from origin"));
    let held = origin.url("/held");
    let digest = support::digest_of(1000, std::slice::from_ref(&held));
    sibling.route("/squid-internal-periodic/store_digest", move |_| {
        Reply::ok(digest.clone())
            .header("Content-Type", "application/cache-digest")
            .header("Expires", support::http_date(3600))
    });
    let proxy = started(&Conf::new().extra(&format!(
        "cache_peer 127.0.0.1 sibling {} 0 no-query {} name=sibling",
        sibling.port(),
        ca_option(&pki)
    )))
    .await;
    // The first lookup wants the digest.
    assert_eq!(
        Req::get(&origin.url("/first")).send(&proxy).await.status,
        200
    );
    sibling
        .wait_count("/squid-internal-periodic/store_digest", 1)
        .await;
}

/// Without tls-domain= a peer named by its IP address is verified against
/// the certificate's IP addresses (no SNI is sent for an address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_peer_is_verified_against_the_certificates_ip_addresses() {
    let tmp = dir("ip-san");
    let pki = Pki::new(tmp.path(), "origin");
    let cafile = format!("tls-cafile={}", pki.ca_path().display());
    let by_ip = https_origin(&pki.leaf("by-ip", &["127.0.0.1"])).await;
    let proxy = accelerator(&by_ip, &cafile).await;
    let r = accel_get("/obj").send(&proxy).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "object 1".to_string()),
        "{}",
        output(&proxy)
    );

    let by_name = https_origin(&pki.leaf("by-name", &["localhost"])).await;
    let proxy = accelerator(&by_name, &cafile).await;
    let r = accel_get("/obj").send(&proxy).await;
    assert_eq!(r.status, 503, "{}\n{}", r.text(), output(&proxy));
    proxy
        .wait_output("TLS connection to origin failed", true)
        .await;
    assert!(
        output(&proxy).contains("certificate not valid for name \"127.0.0.1\""),
        "{}",
        output(&proxy)
    );
}

/// `cuttle run` refuses a config whose CA file cannot be read, naming it.
#[test]
fn run_refuses_an_unreadable_ca_file_naming_it() {
    let conf = Conf::new().extra(
        "cache_peer 127.0.0.1 parent 3128 0 no-query tls tls-cafile=/nonexistent/peer-ca.pem",
    );
    let e = Cuttle::try_start(&conf)
        .err()
        .expect("cuttle refused to run");
    assert!(e.contains("/nonexistent/peer-ca.pem"), "{e}");
}

/// TLS settings are read again on reload (the clients are built per
/// configuration): trusting the right CA after SIGHUP makes the peer work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_tls_settings() {
    let tmp = dir("reload");
    let trusted = Pki::new(tmp.path(), "trusted");
    let other = Pki::new(tmp.path(), "other");
    let origin = https_origin(&trusted.leaf("origin", &["localhost"])).await;
    let proxy = accelerator(&origin, &ca_option(&other)).await;
    assert_eq!(accel_get("/obj").send(&proxy).await.status, 503);
    proxy.rewrite_config(&accel_conf(&origin, &ca_option(&trusted)));
    proxy.signal("HUP");
    proxy.wait_output("configuration reloaded", false).await;
    let r = accel_get("/obj").send(&proxy).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "object 1".to_string()),
        "{}",
        output(&proxy)
    );
}
