//! `miss_access`: a client it refuses (a sibling, in Squid's recipe
//! `miss_access deny siblings`) gets hits but never makes cuttle fetch:
//! misses, other methods and CONNECT get 403 ERR_FORWARDING_DENIED, logged
//! TCP_MISS/403 HIER_NONE/- as a Squid 5.7 sibling logs it (squid-spec 3.6).
//! The sibling's address is 127.0.2.10; everyone else is 127.0.0.1.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use support::{Conf, Cuttle, Origin, Reply, Req};

const SIBLING: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 10));

fn conf() -> Conf {
    Conf::new()
        .extra(&format!("acl siblings src {SIBLING}"))
        .extra("miss_access deny siblings")
        .extra("miss_access allow all")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_client_gets_hits_but_no_fetches() {
    let origin = Origin::start().await;
    origin.route("/obj", |_| Reply::ok("object\n").cc("max-age=3600"));
    origin.route("/post", |_| Reply::ok("posted\n"));
    let cuttle = Cuttle::start(&conf());
    let url = origin.url("/obj");

    // A miss for the sibling: refused, nothing fetched.
    let r = Req::get(&url).from(SIBLING).send(&cuttle).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-squid-error"), "ERR_FORWARDING_DENIED 0");
    assert_eq!(origin.count("/obj"), 0);
    // Other methods are forwarded only for allowed clients too.
    let r = Req::new("POST", &origin.url("/post"))
        .body("x")
        .from(SIBLING)
        .send(&cuttle)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(origin.count("/post"), 0);

    // Anyone else fetches it; then the sibling gets the hit.
    let r = Req::get(&url).send(&cuttle).await;
    assert_eq!((r.status, r.text()), (200, "object\n".to_string()));
    let r = Req::get(&url).from(SIBLING).send(&cuttle).await;
    assert_eq!((r.status, r.text()), (200, "object\n".to_string()));
    assert_eq!(origin.count("/obj"), 1);

    let log = cuttle.log(4).await;
    let got: Vec<(String, String, String)> = log
        .iter()
        .map(|l| (l.client.clone(), l.result(), l.hierarchy.clone()))
        .collect();
    let sib = SIBLING.to_string();
    let local = "127.0.0.1".to_string();
    assert_eq!(
        got[0],
        (sib.clone(), "TCP_MISS/403".into(), "HIER_NONE/-".into())
    );
    assert_eq!(
        got[1],
        (sib.clone(), "TCP_MISS/403".into(), "HIER_NONE/-".into())
    );
    assert_eq!(
        got[2],
        (local, "TCP_MISS/200".into(), "HIER_DIRECT/127.0.0.1".into())
    );
    assert_eq!(got[3].0, sib);
    assert!(
        matches!(got[3].1.as_str(), "TCP_HIT/200" | "TCP_MEM_HIT/200"),
        "{log:#?}"
    );
    assert_eq!(log.len(), 4, "{log:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_miss_access_rules_everyone_may_fetch() {
    let origin = Origin::start().await;
    origin.route("/obj", |_| Reply::ok("object\n").cc("max-age=3600"));
    let cuttle = Cuttle::start(&Conf::new());
    let r = Req::get(&origin.url("/obj"))
        .from(SIBLING)
        .send(&cuttle)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(origin.count("/obj"), 1);
}
