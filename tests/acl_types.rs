//! ACL types of production configs, evaluated by the running proxy:
//! `browser`, `time`, `maxconn`, `req_header`, `referer_regex` in
//! http_access, and `rep_header` / `http_status` in `http_reply_access`
//! (a denied reply becomes 403 ERR_ACCESS_DENIED, logged
//! TCP_DENIED_REPLY/403, as Squid does).

mod support;

use support::{Conf, Cuttle, Origin, Reply, Req};

/// Allow localhost only when `acl ok ...` matches; everything else 403.
fn allow_only(acl_line: &str) -> Conf {
    Conf::new().access(&[acl_line, "http_access allow ok", "http_access deny all"])
}

fn origin_ok(origin: &Origin) -> String {
    origin.route("/x", |_| Reply::ok("x\n"));
    origin.url("/x")
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_matches_the_user_agent() {
    let origin = Origin::start().await;
    let url = origin_ok(&origin);
    let cuttle = Cuttle::start(&allow_only("acl ok browser -i ^curl/"));
    let r = Req::get(&url)
        .header("user-agent", "Curl/8.1")
        .send(&cuttle)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = Req::get(&url)
        .header("user-agent", "Mozilla/5.0")
        .send(&cuttle)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    // No User-Agent: the ACL does not match.
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");
}

/// Today's weekday letter in Squid's `time` ACL (S M T W H F A), local time.
fn today_letter() -> char {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    ['S', 'M', 'T', 'W', 'H', 'F', 'A'][tm.tm_wday as usize]
}

#[tokio::test(flavor = "multi_thread")]
async fn time_windows_covering_now_and_not() {
    let origin = Origin::start().await;
    let url = origin_ok(&origin);
    let today = today_letter();
    let cuttle = Cuttle::start(&allow_only(&format!("acl ok time {today} 00:00-23:59")));
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 200, "{r:?}");
    drop(cuttle);

    let other_days: String = "SMTWHFA".chars().filter(|&c| c != today).collect();
    let cuttle = Cuttle::start(&allow_only(&format!("acl ok time {other_days}")));
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn maxconn_counts_the_clients_open_connections() {
    let origin = Origin::start().await;
    let url = origin_ok(&origin);
    let cuttle = Cuttle::start(&Conf::new().access(&[
        "acl localnet src 127.0.0.0/8",
        "acl many maxconn 2",
        "http_access deny many",
        "http_access allow localnet",
        "http_access deny all",
    ]));
    // Two connections open: the second's request is allowed (2 is not more than 2).
    let idle = tokio::net::TcpStream::connect(cuttle.addr()).await.unwrap();
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Three open: denied.
    let idle2 = tokio::net::TcpStream::connect(cuttle.addr()).await.unwrap();
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-squid-error"), "ERR_ACCESS_DENIED 0");
    // Closed connections stop counting.
    drop((idle, idle2));
    let mut last = 0;
    for _ in 0..50 {
        last = Req::get(&url).send(&cuttle).await.status;
        if last == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn req_header_matches_a_named_request_header() {
    let origin = Origin::start().await;
    let url = origin_ok(&origin);
    let cuttle = Cuttle::start(&allow_only("acl ok req_header X-Team -i ^blue$"));
    let r = Req::get(&url).header("x-team", "BLUE").send(&cuttle).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = Req::get(&url).header("x-team", "red").send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn referer_regex_matches_the_referer() {
    let origin = Origin::start().await;
    let url = origin_ok(&origin);
    let cuttle = Cuttle::start(&allow_only(
        "acl ok referer_regex ^http://intranet\\.example/",
    ));
    let r = Req::get(&url)
        .header("referer", "http://intranet.example/page")
        .send(&cuttle)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = Req::get(&url)
        .header("referer", "http://elsewhere.example/")
        .send(&cuttle)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_reply_access_denies_by_rep_header_and_http_status() {
    let origin = Origin::start().await;
    origin.route("/plain", |_| Reply::ok("plain\n"));
    origin.route("/flagged", |_| {
        Reply::ok("secret\n").header("x-classified", "yes")
    });
    origin.route("/gone", |_| Reply::status(410).body("gone\n"));
    origin.route("/unchanged", |_| Reply::status(304));
    let cuttle = Cuttle::start(
        &Conf::new()
            .extra("acl flagged rep_header X-Classified ^yes")
            .extra("acl gone http_status 304 404 410-499")
            .extra("http_reply_access deny flagged")
            .extra("http_reply_access deny gone")
            .extra("http_reply_access allow all"),
    );
    let r = Req::get(&origin.url("/plain")).send(&cuttle).await;
    assert_eq!((r.status, r.text()), (200, "plain\n".to_string()));
    let r = Req::get(&origin.url("/flagged")).send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-squid-error"), "ERR_ACCESS_DENIED 0");
    assert!(!r.text().contains("secret"), "{r:?}");
    let r = Req::get(&origin.url("/gone")).send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");

    // As in Squid, a 304 passes whatever the rules say.
    let r = Req::get(&origin.url("/unchanged")).send(&cuttle).await;
    assert_eq!(r.status, 304, "{r:?}");

    // Squid 5.7 logs these TCP_DENIED_REPLY/403 HIER_DIRECT/127.0.0.1.
    let log = cuttle.log(4).await;
    let got: Vec<(String, String)> = log
        .iter()
        .map(|l| (l.result(), l.hierarchy.clone()))
        .collect();
    let direct = "HIER_DIRECT/127.0.0.1".to_string();
    assert_eq!(
        got,
        [
            ("TCP_MISS/200".to_string(), direct.clone()),
            ("TCP_DENIED_REPLY/403".to_string(), direct.clone()),
            ("TCP_DENIED_REPLY/403".to_string(), direct.clone()),
            ("TCP_MISS/304".to_string(), direct),
        ],
        "{log:#?}"
    );
}
