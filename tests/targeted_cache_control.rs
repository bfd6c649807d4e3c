//! Targeted cache-control fields (RFC 9213): on an accelerator port the first field of
//! `targeted_cache_control` (default `CDN-Cache-Control`) that is present and valid decides
//! cuttle's own caching instead of Cache-Control and Expires; forward-proxy traffic is
//! unchanged; `remove=on` keeps the fields from the client; `none` turns them off.

mod support;

use std::process::Command;

use support::{free_port, http_date, Conf, Cuttle, Origin, Reply, Req, Resp, TempDir};

/// cuttle with an accelerator port (going direct to the Host it is given) and a forward
/// port, plus `extra` lines.
struct Setup {
    proxy: Cuttle,
    forward: u16,
}

fn setup(extra: &[&str]) -> Setup {
    let forward = free_port();
    let mut conf = Conf::new()
        .port_line("http_port 127.0.0.1:{port} accel vhost allow-direct")
        .extra(&format!("http_port 127.0.0.1:{forward}"));
    for line in extra {
        conf = conf.extra(line);
    }
    Setup {
        proxy: Cuttle::start(&conf),
        forward,
    }
}

impl Setup {
    /// A GET of `path` through the accelerator port for `origin`'s site.
    async fn accel(&self, origin: &Origin, path: &str) -> Resp {
        Req::get(path)
            .header("host", format!("127.0.0.1:{}", origin.port()))
            .send(&self.proxy)
            .await
    }

    /// A GET of `path` at `origin` through the forward-proxy port.
    async fn forward(&self, origin: &Origin, path: &str) -> Resp {
        Req::get(&origin.url(path))
            .send_to(([127, 0, 0, 1], self.forward).into())
            .await
    }
}

/// Two accelerated GETs of `path`: how many reached the origin.
async fn fetches_for_two(s: &Setup, origin: &Origin, path: &str) -> usize {
    s.accel(origin, path).await;
    s.accel(origin, path).await;
    origin.count(path)
}

const PAST: &str = "Mon, 01 Jan 2001 00:00:00 GMT";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_max_age_is_used_instead_of_cache_control_and_expires() {
    let origin = Origin::start().await;
    origin.route("/long-over-no-store", |_| {
        Reply::ok("a")
            .cc("no-store")
            .header("cdn-cache-control", "max-age=10000")
    });
    origin.route("/long-over-past-expires", |_| {
        Reply::ok("b")
            .header("date", http_date(0))
            .header("expires", PAST)
            .header("cdn-cache-control", "max-age=3600")
    });
    origin.route("/short-over-long", |_| {
        Reply::ok("c")
            .cc("max-age=3600")
            .header("date", http_date(-30))
            .header("cdn-cache-control", "max-age=1")
    });
    origin.route("/zero-over-future-expires", |_| {
        Reply::ok("d")
            .header("date", http_date(0))
            .header("expires", http_date(10000))
            .header("cdn-cache-control", "max-age=0")
    });
    let s = setup(&[]);
    assert_eq!(fetches_for_two(&s, &origin, "/long-over-no-store").await, 1);
    assert_eq!(
        fetches_for_two(&s, &origin, "/long-over-past-expires").await,
        1
    );
    assert_eq!(fetches_for_two(&s, &origin, "/short-over-long").await, 2);
    assert_eq!(
        fetches_for_two(&s, &origin, "/zero-over-future-expires").await,
        2
    );
    // A hit keeps the fields as the origin sent them, and says its Age.
    let hit = s.accel(&origin, "/long-over-past-expires").await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(hit.has("age"));
    assert_eq!(hit.header("cdn-cache-control"), "max-age=3600");
    assert_eq!(hit.header("expires"), PAST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_private_no_cache_and_no_store_override_a_fresh_cache_control() {
    let origin = Origin::start().await;
    for (path, targeted) in [
        ("/private", "private"),
        ("/no-cache", "no-cache"),
        ("/no-store", "no-store"),
    ] {
        origin.route(path, move |_| {
            Reply::ok(targeted)
                .cc("max-age=10000")
                .header("date", http_date(0))
                .header("expires", http_date(10000))
                .header("cdn-cache-control", targeted)
        });
    }
    let s = setup(&[]);
    for path in ["/private", "/no-cache", "/no-store"] {
        assert_eq!(fetches_for_two(&s, &origin, path).await, 2, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_targeted_field_is_ignored_for_the_next_one_or_cache_control() {
    let origin = Origin::start().await;
    // The first listed field is invalid (a String where an Integer belongs): the next is used.
    origin.route("/next", |_| {
        Reply::ok("n")
            .cc("no-store")
            .header("cuttle-cache-control", "max-age=\"10000\"")
            .header("cdn-cache-control", "max-age=10000")
    });
    // The first listed field is valid: it wins over the second.
    origin.route("/first", |_| {
        Reply::ok("f")
            .cc("max-age=10000")
            .header("cuttle-cache-control", "no-store")
            .header("cdn-cache-control", "max-age=10000")
    });
    // No valid field at all: Cache-Control decides.
    for path in ["/unknown-type", "/upper-case-key", "/space-before-equals"] {
        origin.route(path, move |_| {
            let targeted = match path {
                "/unknown-type" => "max-age=10000, &&&&&",
                "/upper-case-key" => "MaX-aGe=10000",
                _ => "max-age =10000",
            };
            Reply::ok("u")
                .cc("no-store")
                .header("cdn-cache-control", targeted)
        });
    }
    let s = setup(&["targeted_cache_control Cuttle-Cache-Control CDN-Cache-Control"]);
    assert_eq!(fetches_for_two(&s, &origin, "/next").await, 1);
    assert_eq!(fetches_for_two(&s, &origin, "/first").await, 2);
    for path in ["/unknown-type", "/upper-case-key", "/space-before-equals"] {
        assert_eq!(fetches_for_two(&s, &origin, path).await, 2, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_proxy_traffic_ignores_targeted_fields() {
    let origin = Origin::start().await;
    for path in ["/accel", "/forward"] {
        origin.route(path, |_| {
            Reply::ok("x")
                .cc("no-store")
                .header("cdn-cache-control", "max-age=10000")
        });
    }
    let s = setup(&[]);
    assert_eq!(fetches_for_two(&s, &origin, "/accel").await, 1);
    let first = s.forward(&origin, "/forward").await;
    let second = s.forward(&origin, "/forward").await;
    assert_eq!(origin.count("/forward"), 2);
    for r in [first, second] {
        assert_eq!(r.header("cdn-cache-control"), "max-age=10000");
    }
}

/// Every field name of a response, for the assertion messages.
fn names(r: &Resp) -> Vec<String> {
    r.headers.keys().map(|k| k.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_fields_are_forwarded_by_default_and_removed_with_remove_on() {
    let origin = Origin::start().await;
    origin.route("/r", |_| {
        Reply::ok("r")
            .cc("max-age=1")
            .header("cdn-cache-control", "max-age=10000")
            .header("cuttle-cache-control", "max-age=10000")
    });
    let kept = setup(&[]);
    let miss = kept.accel(&origin, "/r").await;
    let hit = kept.accel(&origin, "/r").await;
    assert_eq!(hit.x_cache(), "HIT");
    for r in [&miss, &hit] {
        assert_eq!(r.header("cdn-cache-control"), "max-age=10000");
        assert!(
            names(r).iter().all(|n| !n.starts_with("cuttle-targeted")),
            "cuttle's record of the field left it: {:?}",
            names(r)
        );
    }
    drop(kept);

    let origin = Origin::start().await;
    origin.route("/r", |_| {
        Reply::ok("r")
            .cc("max-age=1")
            .header("cdn-cache-control", "max-age=10000")
            .header("cuttle-cache-control", "max-age=10000")
            .header("other-cache-control", "max-age=5")
    });
    let removed =
        setup(&["targeted_cache_control Cuttle-Cache-Control CDN-Cache-Control remove=on"]);
    let miss = removed.accel(&origin, "/r").await;
    let hit = removed.accel(&origin, "/r").await;
    assert_eq!(hit.x_cache(), "HIT", "the removed fields still decide");
    for r in [&miss, &hit] {
        assert!(!r.has("cdn-cache-control"), "{:?}", names(r));
        assert!(!r.has("cuttle-cache-control"), "{:?}", names(r));
        // A field not on the list passes through (RFC 9213 §2.1).
        assert_eq!(r.header("other-cache-control"), "max-age=5");
        assert_eq!(r.header("cache-control"), "max-age=1");
    }
}

/// `cuttle check -f` on `lines` (after a minimal config): its exit success and output.
fn check(lines: &[&str]) -> (bool, String) {
    let dir = TempDir::new("targeted-check");
    let path = dir.path().join("squid.conf");
    let mut text = format!("pid_filename {}/cuttle.pid\n", dir.path().display());
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["check", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_accepts_the_directive_and_names_the_line_of_a_bad_value() {
    for good in [
        "targeted_cache_control CDN-Cache-Control",
        "targeted_cache_control Cuttle-Cache-Control CDN-Cache-Control remove=on",
        "targeted_cache_control none",
    ] {
        let (ok, text) = check(&["http_port 3128", good]);
        assert!(ok, "{good}: {text}");
        assert!(!text.contains("targeted_cache_control"), "{good}: {text}");
    }
    for (bad, says) in [
        ("targeted_cache_control", "missing"),
        ("targeted_cache_control Bad/Name", "Bad/Name"),
        (
            "targeted_cache_control CDN-Cache-Control remove=maybe",
            "remove=maybe",
        ),
        ("targeted_cache_control none CDN-Cache-Control", "none"),
        ("targeted_cache_control Cache-Control", "Cache-Control"),
    ] {
        let (ok, text) = check(&["http_port 3128", bad]);
        assert!(!ok, "{bad}: {text}");
        let line = text
            .lines()
            .find(|l| l.contains("targeted_cache_control"))
            .unwrap_or_else(|| panic!("{bad}: {text}"));
        assert!(line.contains("squid.conf:3: error: "), "{bad}: {line}");
        assert!(line.contains(says), "{bad}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directive_none_turns_targeted_fields_off() {
    let origin = Origin::start().await;
    origin.route("/n", |_| {
        Reply::ok("n")
            .cc("max-age=10000")
            .header("cdn-cache-control", "no-store")
    });
    let s = setup(&["targeted_cache_control none"]);
    assert_eq!(fetches_for_two(&s, &origin, "/n").await, 1);
    assert!(
        s.proxy
            .stderr()
            .iter()
            .all(|l| !l.contains("targeted_cache_control")),
        "{:?}",
        s.proxy.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_updates_the_targeted_field_or_keeps_the_stored_one() {
    let origin = Origin::start().await;
    // Stale by its targeted field at once; each 304 brings a long one.
    origin.route("/renewed", |s| {
        let reply = if s.has("if-none-match") {
            Reply::status(304)
        } else {
            Reply::ok("r")
        };
        reply
            .header("etag", "\"r1\"")
            .cc("max-age=10000")
            .header("date", http_date(0))
            .header(
                "cdn-cache-control",
                if s.n == 1 {
                    "max-age=0"
                } else {
                    "max-age=10000"
                },
            )
    });
    // Stale by its targeted field; the 304s bring only Cache-Control, which must not win.
    origin.route("/kept", |s| {
        let reply = if s.has("if-none-match") {
            Reply::status(304)
        } else {
            Reply::ok("k").header("cdn-cache-control", "max-age=0")
        };
        reply
            .header("etag", "\"k1\"")
            .cc("max-age=10000")
            .header("date", http_date(0))
    });
    let s = setup(&[]);
    for _ in 0..3 {
        assert_eq!(s.accel(&origin, "/renewed").await.text(), "r");
        assert_eq!(s.accel(&origin, "/kept").await.text(), "k");
    }
    // /renewed: the first fetch, one revalidation, then hits.
    assert_eq!(origin.count("/renewed"), 2);
    // /kept: revalidated every time.
    assert_eq!(origin.count("/kept"), 3);
}
