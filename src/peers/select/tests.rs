//! Unit tests of selection: the decision in Squid's order, pings, hash
//! parents, credentials, and rounds over real loopback sockets.

use super::credentials::{base64, unescape};
use super::*;
use crate::config::load_str_sandboxed;
use crate::peers::core::decide::{client_address_text, to_ping};
use crate::peers::resolve::PeerAddrs;
use cuttle_protocol::carp::{carp_key, Carp, CarpKeyParts, CarpMember, SourceHash, UrlParts};
use cuttle_protocol::icp::Opcode;
use std::net::Ipv4Addr;

pub(crate) fn config(text: &str) -> Config {
    let loaded = load_str_sandboxed(text, "test");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config
}

/// A table with every peer TCP-up (probed).
fn table(config: &Config) -> PeerTable {
    let t = PeerTable::new(config, None, Instant::now(), &PeerAddrs::literal_only());
    for id in 0..t.peers.len() {
        t.note_tcp_success(id);
    }
    t
}

/// Neighbours of `config` with every peer TCP-up (probed).
pub(crate) fn neighbours_up(config: &Config) -> Neighbours {
    let n = Neighbours::new(config);
    for id in 0..n.table.peers.len() {
        n.table.note_tcp_success(id);
    }
    n
}

pub(crate) fn request<'a>(method: &'a str, host: &'a str, url: &'a str) -> SelectRequest<'a> {
    SelectRequest {
        access: access::Request {
            client: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            method,
            scheme: "http",
            host,
            port: 80,
            path: "/x",
            url,
            local_ip: None,
            local_port: 0,
            port_name: "",
            dst_addrs: None,
        },
        hierarchical: hierarchical(method, false, false, false),
        siblings_ok: true,
        looped: false,
        accel_no_direct: false,
    }
}

fn get() -> SelectRequest<'static> {
    request("GET", "example.test", "http://example.test/x")
}

/// The selection as `CODE/host` strings.
fn codes(s: &Selection) -> Vec<String> {
    s.sources
        .iter()
        .map(|s| format!("{}/{}", s.code.as_str(), s.host))
        .collect()
}

fn replies(hit: Option<PeerId>, parent_miss: Option<PeerId>, timed_out: bool) -> Replies {
    Replies {
        hit,
        first_parent_miss: parent_miss,
        timed_out,
        ..Replies::default()
    }
}

fn run(text: &str, req: &SelectRequest<'_>, r: Option<&Replies>) -> Vec<String> {
    let c = config(text);
    let t = table(&c);
    let d = direct(&c, req);
    codes(&select_applied(
        &t,
        &HashParents::new(&t),
        &c,
        req,
        d,
        r,
        Instant::now(),
    ))
}

const MESH: &str = "cache_peer 127.0.0.2 sibling 3128 3130\n\
                    cache_peer 127.0.0.3 parent 3128 3130\n\
                    cache_peer 127.0.0.4 parent 3128 3130\n";

#[test]
fn no_peers_goes_direct() {
    assert_eq!(run("", &get(), None), vec!["HIER_DIRECT/example.test"]);
}

#[test]
fn sibling_hit_first_then_parents_then_direct() {
    let r = replies(Some(0), None, false);
    assert_eq!(
        run(MESH, &get(), Some(&r)),
        vec![
            "SIBLING_HIT/127.0.0.2",
            "FIRSTUP_PARENT/127.0.0.3",
            "ANY_OLD_PARENT/127.0.0.4",
            "HIER_DIRECT/example.test"
        ]
    );
}

#[test]
fn parent_hit_is_logged_as_parent_hit() {
    let r = replies(Some(2), None, false);
    assert_eq!(
        run(MESH, &get(), Some(&r))[..2],
        ["PARENT_HIT/127.0.0.4", "FIRSTUP_PARENT/127.0.0.3"]
    );
}

#[test]
fn first_parent_miss_leads_when_no_hit_unless_the_wait_timed_out() {
    let c = config(MESH);
    let t = table(&c);
    let run = |r: &Replies| {
        select_applied(
            &t,
            &HashParents::new(&t),
            &c,
            &get(),
            Direct::Maybe,
            Some(r),
            Instant::now(),
        )
    };
    let s = run(&replies(None, Some(2), false));
    assert!(!s.timed_out);
    assert_eq!(
        codes(&s),
        vec![
            "FIRST_PARENT_MISS/127.0.0.4",
            "FIRSTUP_PARENT/127.0.0.3",
            "HIER_DIRECT/example.test"
        ]
    );
    // Timed out: the MISSes that came are not used (Squid 5.7, seen),
    // for a closest parent neither; the list is logged TIMEOUT_.
    let mut late = replies(None, Some(2), true);
    late.closest_parent_miss = Some(2);
    let s = run(&late);
    assert!(s.timed_out);
    assert_eq!(
        codes(&s),
        vec![
            "FIRSTUP_PARENT/127.0.0.3",
            "ANY_OLD_PARENT/127.0.0.4",
            "HIER_DIRECT/example.test"
        ]
    );
}

#[test]
fn closest_parent_miss_leads_before_first_parent_miss_but_after_a_hit() {
    let mut r = replies(None, Some(1), false);
    r.closest_parent_miss = Some(2);
    assert_eq!(
        run(MESH, &get(), Some(&r)),
        vec![
            "CLOSEST_PARENT_MISS/127.0.0.4",
            "FIRSTUP_PARENT/127.0.0.3",
            "HIER_DIRECT/example.test"
        ]
    );
    r.hit = Some(0);
    assert_eq!(run(MESH, &get(), Some(&r))[0], "SIBLING_HIT/127.0.0.2");
    // never_direct: the closest parent, then the others.
    let text = format!("{MESH}never_direct allow all\n");
    r.hit = None;
    assert_eq!(
        run(&text, &get(), Some(&r)),
        vec!["CLOSEST_PARENT_MISS/127.0.0.4", "FIRSTUP_PARENT/127.0.0.3"]
    );
}

#[test]
fn prefer_direct_puts_direct_before_parents() {
    let text = format!("{MESH}prefer_direct on\n");
    assert_eq!(
        run(&text, &get(), None),
        vec![
            "HIER_DIRECT/example.test",
            "FIRSTUP_PARENT/127.0.0.3",
            "ANY_OLD_PARENT/127.0.0.4"
        ]
    );
}

#[test]
fn always_direct_skips_peers_and_hits() {
    let text = format!("{MESH}always_direct allow all\n");
    let r = replies(Some(0), None, false);
    assert_eq!(
        run(&text, &get(), Some(&r)),
        vec!["HIER_DIRECT/example.test"]
    );
}

#[test]
fn never_direct_lists_parents_only() {
    let text = format!("{MESH}never_direct allow all\n");
    assert_eq!(
        run(&text, &get(), None),
        vec!["FIRSTUP_PARENT/127.0.0.3", "ANY_OLD_PARENT/127.0.0.4"]
    );
    // never_direct beats the loop rule.
    let mut looped = get();
    looped.looped = true;
    assert_eq!(run(&text, &looped, None).len(), 2);
}

#[test]
fn loop_goes_direct() {
    let mut looped = get();
    looped.looped = true;
    assert_eq!(run(MESH, &looped, None), vec!["HIER_DIRECT/example.test"]);
}

#[test]
fn nonhierarchical_requests_go_direct_unless_told_otherwise() {
    let post = request("POST", "example.test", "http://example.test/x");
    assert!(!post.hierarchical);
    assert_eq!(run(MESH, &post, None), vec!["HIER_DIRECT/example.test"]);
    let text = format!("{MESH}nonhierarchical_direct off\n");
    assert_eq!(run(&text, &post, None)[0], "FIRSTUP_PARENT/127.0.0.3");
    assert!(!hierarchical("GET", true, false, false), "credentials");
    assert!(!hierarchical("HEAD", false, false, false));
    assert!(hierarchical("TRACE", false, false, false));
}

#[test]
fn round_robin_parents_alternate() {
    let text = "cache_peer 127.0.0.3 parent 3128 0 round-robin\n\
                cache_peer 127.0.0.4 parent 3128 0 round-robin\n";
    let c = config(text);
    let t = table(&c);
    let firsts: Vec<String> = (0..4)
        .map(|_| {
            codes(&select_applied(
                &t,
                &HashParents::new(&t),
                &c,
                &get(),
                Direct::Maybe,
                None,
                Instant::now(),
            ))[0]
                .clone()
        })
        .collect();
    assert_eq!(
        firsts,
        vec![
            "ROUNDROBIN_PARENT/127.0.0.4",
            "ROUNDROBIN_PARENT/127.0.0.3",
            "ROUNDROBIN_PARENT/127.0.0.4",
            "ROUNDROBIN_PARENT/127.0.0.3"
        ]
    );
}

#[test]
fn default_parent_is_first_up_as_in_squid() {
    let text = "cache_peer 127.0.0.3 parent 3128 0\n\
                cache_peer 127.0.0.4 parent 3128 0 default\n";
    assert_eq!(
        run(text, &get(), None),
        vec![
            "FIRSTUP_PARENT/127.0.0.3",
            "ANY_OLD_PARENT/127.0.0.4",
            "HIER_DIRECT/example.test"
        ]
    );
}

#[test]
fn down_parents_are_skipped() {
    let c = config(MESH);
    let t = PeerTable::new(&c, None, Instant::now(), &PeerAddrs::literal_only());
    t.note_tcp_success(2);
    let s = select_applied(
        &t,
        &HashParents::new(&t),
        &c,
        &get(),
        Direct::Maybe,
        None,
        Instant::now(),
    );
    assert_eq!(
        codes(&s),
        vec!["FIRSTUP_PARENT/127.0.0.4", "HIER_DIRECT/example.test"]
    );
}

#[test]
fn cache_peer_access_and_neighbor_type_domain_apply() {
    let text = "acl other dstdomain .other.test\n\
                cache_peer 127.0.0.3 parent 3128 3130\n\
                cache_peer_access 127.0.0.3 deny other\n\
                cache_peer 127.0.0.4 sibling 3128 3130\n\
                neighbor_type_domain 127.0.0.4 parent .example.test\n";
    let c = config(text);
    let t = table(&c);
    let other = request("GET", "www.other.test", "http://www.other.test/x");
    assert_eq!(
        codes(&select_applied(
            &t,
            &HashParents::new(&t),
            &c,
            &other,
            Direct::Maybe,
            None,
            Instant::now()
        )),
        vec!["HIER_DIRECT/www.other.test"],
        "the parent is denied, the sibling stays a sibling"
    );
    let s = select_applied(
        &t,
        &HashParents::new(&t),
        &c,
        &get(),
        Direct::Maybe,
        None,
        Instant::now(),
    );
    assert_eq!(
        codes(&s),
        vec![
            "FIRSTUP_PARENT/127.0.0.3",
            "ANY_OLD_PARENT/127.0.0.4",
            "HIER_DIRECT/example.test"
        ]
    );
    // A hit from it is a PARENT_HIT for this domain.
    let r = replies(Some(1), None, false);
    assert_eq!(
        codes(&select_applied(
            &t,
            &HashParents::new(&t),
            &c,
            &get(),
            Direct::Maybe,
            Some(&r),
            Instant::now()
        ))[0],
        "PARENT_HIT/127.0.0.4"
    );
    // Pinged: both for example.test; only the sibling for other.test.
    let now = Instant::now();
    assert_eq!(
        to_ping(&t, &c, &get(), 0, now).0,
        vec![(0, PeerType::Parent), (1, PeerType::Parent)]
    );
    assert_eq!(
        to_ping(&t, &c, &other, 0, now).0,
        vec![(1, PeerType::Sibling)]
    );
}

#[test]
fn who_is_pinged() {
    let text = "cache_peer 127.0.0.2 sibling 3128 3130\n\
                cache_peer 127.0.0.3 parent 3128 3130 no-query\n\
                cache_peer 127.0.0.4 parent 3128 0\n\
                cache_peer 127.0.0.5 parent 3128 3130\n\
                cache_peer 239.1.2.3 multicast 3128 3130 ttl=4\n";
    let c = config(text);
    let t = table(&c);
    let now = Instant::now();
    assert_eq!(
        to_ping(&t, &c, &get(), 0, now).0,
        vec![
            (0, PeerType::Sibling),
            (3, PeerType::Parent),
            (4, PeerType::Multicast)
        ]
    );
    // Rotating start.
    assert_eq!(
        to_ping(&t, &c, &get(), 2, now).0,
        vec![
            (3, PeerType::Parent),
            (4, PeerType::Multicast),
            (0, PeerType::Sibling)
        ]
    );
    // Siblings are not asked for a client reload (no-cache).
    let mut reload = get();
    reload.siblings_ok = false;
    assert_eq!(
        to_ping(&t, &c, &reload, 0, now).0,
        vec![(3, PeerType::Parent), (4, PeerType::Multicast)]
    );
}

#[test]
fn multicast_responders_are_never_pinged_directly() {
    let text = "cache_peer 239.255.77.1 multicast 3128 3130 ttl=1
                cache_peer 127.0.0.2 sibling 3128 3130 multicast-responder
                cache_peer 127.0.0.3 parent 3128 3130 multicast-responder
";
    let c = config(text);
    let t = table(&c);
    assert_eq!(
        to_ping(&t, &c, &get(), 0, Instant::now()).0,
        vec![(0, PeerType::Multicast)]
    );
}

#[test]
fn sibling_sources_carry_only_if_cached_and_proxy_only() {
    let text = "cache_peer 127.0.0.2 sibling 3128 3130 proxy-only\n\
                cache_peer 127.0.0.3 sibling 3128 3130 allow-miss\n\
                cache_peer 127.0.0.4 parent 8080 0 originserver login=user:p%40ss\n";
    let c = config(text);
    let t = table(&c);
    let s = select_applied(
        &t,
        &HashParents::new(&t),
        &c,
        &get(),
        Direct::Maybe,
        Some(&replies(Some(0), None, false)),
        Instant::now(),
    );
    let sib = &s.sources[0];
    assert!(sib.only_if_cached && sib.proxy_only && sib.absolute_form);
    let s = select_applied(
        &t,
        &HashParents::new(&t),
        &c,
        &get(),
        Direct::Maybe,
        Some(&replies(Some(1), None, false)),
        Instant::now(),
    );
    assert!(!s.sources[0].only_if_cached, "allow-miss");
    let parent = s
        .sources
        .iter()
        .find(|s| s.peer == Some(2))
        .expect("parent listed");
    assert!(!parent.only_if_cached && !parent.absolute_form);
    assert_eq!(
        parent.login,
        Some(PeerAuth::Basic("Basic dXNlcjpwQHNz".into()))
    );
}

#[test]
fn login_values_are_unescaped_as_squid_does() {
    // %% is %, %XX a byte (but never NUL), anything else stays.
    assert_eq!(unescape("a%%41%41%00%zz%4"), b"a%41A%00%zz%4");
    assert_eq!(unescape("p%40ss%20w"), b"p@ss w");
}

fn b64(s: &str) -> String {
    format!("Basic {}", base64(s.as_bytes()))
}

/// The fields sent to peer `id` of `text`'s config (DIRECT when
/// `None`) for a client with these credentials.
fn creds(
    text: &str,
    id: Option<PeerId>,
    pa: Option<&str>,
    a: Option<&str>,
    accelerated: bool,
) -> (Option<String>, Option<String>) {
    let c = config(text);
    let t = table(&c);
    let source = match id {
        Some(id) => {
            let p = t.get(id).expect("peer");
            Source::peer(
                id,
                &p.config,
                &p.host,
                HierarchyCode::AnyOldParent,
                PeerType::Parent,
            )
        }
        None => Source::direct("example.test", 80),
    };
    let out = credentials(
        &source,
        &ClientCredentials {
            proxy_authorization: pa,
            authorization: a,
            accelerated,
        },
    );
    (out.proxy_authorization, out.authorization)
}

#[test]
fn login_variants_build_the_credentials_squid_sends() {
    let text = "cache_peer 127.0.0.2 parent 3128 0 login=user:p%40ss%%41\n\
                cache_peer 127.0.0.3 parent 3128 0 login=PASSTHRU\n\
                cache_peer 127.0.0.4 parent 80 0 originserver login=PASSTHRU\n\
                cache_peer 127.0.0.5 parent 3128 0 login=*:fixed\n\
                cache_peer 127.0.0.6 parent 3128 0 login=*@edge:fi%20xed\n\
                cache_peer 127.0.0.7 parent 3128 0 login=PASS\n\
                cache_peer 127.0.0.8 parent 80 0 originserver login=PROXYPASS\n\
                cache_peer 127.0.0.9 parent 80 0 originserver\n\
                cache_peer 127.0.0.10 parent 3128 0 login=NEGOTIATE\n\
                cache_peer 127.0.0.11 parent 3128 0\n\
                cache_peer 127.0.0.12 parent 80 0 originserver login=*:fixed\n\
                cache_peer 127.0.0.13 parent 80 0 originserver login=u:p\n";
    let alice = b64("alice:secret");
    let pa = Some(alice.as_str());
    let bearer = Some("Bearer tok");
    let s = |v: &str| Some(v.to_string());
    // Direct: no Proxy-Authorization, the client's Authorization.
    assert_eq!(
        creds(text, None, pa, bearer, false),
        (None, s("Bearer tok"))
    );
    // user:password, %-escapes decoded; Authorization still passes.
    assert_eq!(
        creds(text, Some(0), pa, bearer, false),
        (Some(b64("user:p@ss%41")), s("Bearer tok"))
    );
    // PASSTHRU and PASS relay the client's Proxy-Authorization...
    for id in [1, 5] {
        assert_eq!(
            creds(text, Some(id), pa, bearer, false),
            (Some(alice.clone()), s("Bearer tok"))
        );
        assert_eq!(creds(text, Some(id), None, None, false), (None, None));
    }
    // ...and to an originserver, the Authorization.
    assert_eq!(
        creds(text, Some(2), pa, bearer, false),
        (None, s("Bearer tok"))
    );
    // *:password: the client's user with the fixed password; "-" when
    // the client sent no Basic credentials.
    assert_eq!(
        creds(text, Some(3), pa, bearer, false),
        (Some(b64("alice:fixed")), s("Bearer tok"))
    );
    assert_eq!(
        creds(text, Some(3), Some("Digest x=1"), None, false),
        (Some(b64("-:fixed")), None)
    );
    assert_eq!(
        creds(text, Some(4), pa, None, false),
        (Some(b64("alice@edge:fi xed")), None)
    );
    // PROXYPASS to an originserver: the client's Authorization if
    // any, else its Basic Proxy-Authorization.
    assert_eq!(
        creds(text, Some(6), pa, bearer, false),
        (None, s("Bearer tok"))
    );
    assert_eq!(
        creds(text, Some(6), pa, None, false),
        (None, Some(alice.clone()))
    );
    assert_eq!(
        creds(text, Some(6), Some("Digest x=1"), None, false),
        (None, None)
    );
    // An originserver without login= gets the client's Authorization
    // (Squid sends neither), as with login=PASSTHRU.
    assert_eq!(
        creds(text, Some(7), pa, bearer, false),
        (None, s("Bearer tok"))
    );
    // NEGOTIATE (no Kerberos) and no login=: no Proxy-Authorization.
    for id in [8, 9] {
        assert_eq!(
            creds(text, Some(id), pa, bearer, false),
            (None, s("Bearer tok"))
        );
    }
    // On an accelerator port the user is in Authorization.
    assert_eq!(
        creds(text, Some(10), None, Some(&b64("bob:pw")), true),
        (None, Some(b64("bob:fixed")))
    );
    // user:password to an originserver is its Authorization.
    assert_eq!(
        creds(text, Some(11), pa, bearer, false),
        (None, Some(b64("u:p")))
    );
}

#[test]
fn an_accelerated_request_without_allow_direct_never_goes_direct() {
    let mut req = get();
    req.accel_no_direct = true;
    assert_eq!(
        run(MESH, &req, None),
        vec!["FIRSTUP_PARENT/127.0.0.3", "ANY_OLD_PARENT/127.0.0.4"]
    );
    assert!(run("", &req, None).is_empty(), "no parent: nowhere to go");
    // always_direct is checked first, as in Squid.
    let text = format!("{MESH}always_direct allow all\n");
    assert_eq!(run(&text, &req, None), vec!["HIER_DIRECT/example.test"]);
    // Not hierarchical (HEAD): still parents, never DIRECT.
    let mut head = request("HEAD", "example.test", "http://example.test/x");
    head.accel_no_direct = true;
    assert_eq!(run(MESH, &head, None)[0], "FIRSTUP_PARENT/127.0.0.3");
    assert!(!run(MESH, &head, None)
        .iter()
        .any(|c| c.starts_with("HIER_DIRECT")));
}

#[test]
fn tcp_outgoing_address_picks_the_first_matching_line() {
    let text = "acl other dstdomain .other.test\n\
                tcp_outgoing_address 127.0.3.9 other\n\
                tcp_outgoing_address 127.0.3.8\n\
                udp_outgoing_address 127.0.3.7\n";
    let c = config(text);
    assert_eq!(
        c.udp_outgoing_address.value,
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 7)))
    );
    let other = request("GET", "www.other.test", "http://www.other.test/x");
    assert_eq!(
        tcp_outgoing_address(&c, &other.access),
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 9)))
    );
    assert_eq!(
        tcp_outgoing_address(&c, &get().access),
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 8)))
    );
}

/// CARP parents after a round-robin parent, names unequal to hosts.
const CARP_MESH: &str = "cache_peer 127.0.0.2 parent 3128 0 round-robin\n\
                         cache_peer 127.0.0.3 parent 3128 0 carp name=Alpha weight=1\n\
                         cache_peer 127.0.0.4 parent 3128 0 carp name=beta-2 weight=3\n\
                         cache_peer 127.0.0.5 parent 3128 0 carp name=Gamma weight=2\n";

/// The CARP members of CARP_MESH, in config order (member index 0..3
/// is peer id 1..4).
fn carp_mesh_members() -> Carp {
    Carp::new(&[
        CarpMember {
            name: "Alpha",
            weight: 1,
        },
        CarpMember {
            name: "beta-2",
            weight: 3,
        },
        CarpMember {
            name: "Gamma",
            weight: 2,
        },
    ])
}

const CARP_HOSTS: [&str; 3] = ["127.0.0.3", "127.0.0.4", "127.0.0.5"];

fn urls(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let host = format!("site{}.example.test", i % 17);
            let url = format!("http://{host}/obj/{i}?v={}", i * 7);
            (host, url)
        })
        .collect()
}

/// `request` with the path taken from the URL (the CARP key parts).
fn request_for<'a>(host: &'a str, url: &'a str) -> SelectRequest<'a> {
    let mut r = request("GET", host, url);
    let after_scheme = url.strip_prefix("http://").unwrap_or(url);
    r.access.path = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
    r
}

#[test]
fn hash_member_sets_follow_the_config() {
    let text = format!(
        "{CARP_MESH}cache_peer 127.0.0.6 parent 3128 0 sourcehash\n\
         cache_peer 127.0.0.7 parent 3128 0 userhash\n"
    );
    let c = config(&text);
    let t = table(&c);
    let h = HashParents::new(&t);
    assert_eq!(h.carp_peers(), &[1, 2, 3]);
    assert_eq!(h.sourcehash_peers(), &[4]);
    assert_eq!(h.userhash_peers(), &[5]);
    // A reload rebuilds them from the new lines.
    let n = Neighbours::new(&c);
    assert_eq!(n.hashes.carp_peers(), &[1, 2, 3]);
    let n = n.reconfigure(&config(
        "cache_peer 127.0.0.5 parent 3128 0 carp name=Gamma\n\
         cache_peer 127.0.0.9 parent 3128 0\n",
    ));
    assert_eq!(n.hashes.carp_peers(), &[0]);
    assert!(n.hashes.sourcehash_peers().is_empty());
}

#[test]
fn carp_beats_round_robin_and_first_up_and_matches_the_hash() {
    let c = config(CARP_MESH);
    let t = table(&c);
    let h = HashParents::new(&t);
    let carp = carp_mesh_members();
    let mut per_member = [0usize; 3];
    for (host, url) in urls(300) {
        let req = request_for(&host, &url);
        let got = codes(&select_applied(
            &t,
            &h,
            &c,
            &req,
            Direct::Maybe,
            None,
            Instant::now(),
        ));
        let member = carp.choose(url.as_bytes(), |_| true).expect("a member");
        per_member[member] += 1;
        let first = format!("CARP/{}", CARP_HOSTS[member]);
        assert_eq!(got[0], first, "{url}");
        // Then every other usable parent, in config order, then DIRECT.
        let mut rest: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
            .iter()
            .filter(|&&ip| ip != CARP_HOSTS[member])
            .map(|ip| format!("ANY_OLD_PARENT/{ip}"))
            .collect();
        rest.push(format!("HIER_DIRECT/{host}"));
        assert_eq!(got[1..], rest[..], "{url}");
    }
    assert!(per_member.iter().all(|&n| n > 30), "{per_member:?}");
    // Heavier members get more URLs (weights 1, 3, 2).
    assert!(per_member[1] > per_member[2] && per_member[2] > per_member[0]);
}

#[test]
fn a_dead_or_denied_carp_member_is_skipped_and_only_its_urls_move() {
    let c = config(CARP_MESH);
    let all_up = table(&c);
    let h = HashParents::new(&all_up);
    // beta-2 (peer 2) never came up.
    let t = PeerTable::new(&c, None, Instant::now(), &PeerAddrs::literal_only());
    for id in [0, 1, 3] {
        t.note_tcp_success(id);
    }
    let (mut moved, mut kept) = (0, 0);
    for (host, url) in urls(300) {
        let req = request_for(&host, &url);
        let before = codes(&select_applied(
            &all_up,
            &h,
            &c,
            &req,
            Direct::Maybe,
            None,
            Instant::now(),
        ))[0]
            .clone();
        let after = codes(&select_applied(
            &t,
            &h,
            &c,
            &req,
            Direct::Maybe,
            None,
            Instant::now(),
        ))[0]
            .clone();
        assert!(after.starts_with("CARP/"), "{url}: {after}");
        assert_ne!(after, "CARP/127.0.0.4", "{url}");
        if before == "CARP/127.0.0.4" {
            moved += 1;
            let member = carp_mesh_members()
                .choose(url.as_bytes(), |m| m != 1)
                .expect("a member");
            assert_eq!(after, format!("CARP/{}", CARP_HOSTS[member]), "{url}");
        } else {
            kept += 1;
            assert_eq!(after, before, "{url} moved though its parent is up");
        }
    }
    assert!(moved > 50 && kept > 50, "moved {moved}, kept {kept}");

    // cache_peer_access denying beta-2 for one domain: the same.
    let text = format!(
        "acl deny_site0 dstdomain site0.example.test\n{CARP_MESH}\
         cache_peer_access beta-2 deny deny_site0\n"
    );
    let c = config(&text);
    let t = table(&c);
    let h = HashParents::new(&t);
    let carp = carp_mesh_members();
    let mut denied_moves = 0;
    for (host, url) in urls(300) {
        let req = request_for(&host, &url);
        let first = codes(&select_applied(
            &t,
            &h,
            &c,
            &req,
            Direct::Maybe,
            None,
            Instant::now(),
        ))[0]
            .clone();
        let site0 = host == "site0.example.test";
        let member = carp
            .choose(url.as_bytes(), |m| !(site0 && m == 1))
            .expect("a member");
        if site0 && carp.choose(url.as_bytes(), |_| true) == Some(1) {
            denied_moves += 1;
        }
        assert_eq!(first, format!("CARP/{}", CARP_HOSTS[member]), "{url}");
    }
    assert!(denied_moves > 0, "no site0 URL belonged to beta-2");
}

#[test]
fn carp_falls_through_to_round_robin_when_every_member_is_down() {
    let c = config(CARP_MESH);
    let t = PeerTable::new(&c, None, Instant::now(), &PeerAddrs::literal_only());
    t.note_tcp_success(0);
    let h = HashParents::new(&t);
    assert_eq!(
        codes(&select_applied(
            &t,
            &h,
            &c,
            &get(),
            Direct::Maybe,
            None,
            Instant::now()
        )),
        vec!["ROUNDROBIN_PARENT/127.0.0.2", "HIER_DIRECT/example.test"]
    );
}

#[test]
fn carp_key_selects_the_url_parts_per_member() {
    // Alpha hashes only the host: every URL of one host goes to the
    // same parent when Alpha wins, whatever the path.
    let text = "cache_peer 127.0.0.3 parent 3128 0 carp name=Alpha carp-key=host\n\
                cache_peer 127.0.0.4 parent 3128 0 carp name=beta-2 carp-key=path,params\n\
                cache_peer 127.0.0.5 parent 3128 0 carp name=Gamma\n";
    let c = config(text);
    let t = table(&c);
    let h = HashParents::new(&t);
    let carp = Carp::new(&[
        CarpMember {
            name: "Alpha",
            weight: 1,
        },
        CarpMember {
            name: "beta-2",
            weight: 1,
        },
        CarpMember {
            name: "Gamma",
            weight: 1,
        },
    ]);
    let mut differs_from_plain = 0;
    for (host, url) in urls(300) {
        let req = request_for(&host, &url);
        let parts = UrlParts {
            full: url.as_bytes(),
            scheme: b"http",
            host: host.as_bytes(),
            port: 80,
            path_and_query: req.access.path.as_bytes(),
        };
        let host_only = CarpKeyParts {
            host: true,
            ..CarpKeyParts::default()
        };
        let path_params = CarpKeyParts {
            path: true,
            params: true,
            ..CarpKeyParts::default()
        };
        let member = carp
            .choose_keyed(
                |m| match m {
                    0 => carp_key(host_only, &parts),
                    1 => carp_key(path_params, &parts),
                    _ => std::borrow::Cow::Borrowed(parts.full),
                },
                |_| true,
            )
            .expect("a member");
        if carp.choose(url.as_bytes(), |_| true) != Some(member) {
            differs_from_plain += 1;
        }
        let got = codes(&select_applied(
            &t,
            &h,
            &c,
            &req,
            Direct::Maybe,
            None,
            Instant::now(),
        ));
        assert_eq!(got[0], format!("CARP/{}", CARP_HOSTS[member]), "{url}");
    }
    assert!(
        differs_from_plain > 30,
        "carp-key changed only {differs_from_plain}"
    );
}

#[test]
fn sourcehash_comes_before_carp_and_hashes_the_client_address() {
    let text = format!(
        "{CARP_MESH}cache_peer 127.0.0.6 parent 3128 0 sourcehash name=s1\n\
         cache_peer 127.0.0.7 parent 3128 0 sourcehash name=S2 weight=2\n"
    );
    let c = config(&text);
    let t = table(&c);
    let h = HashParents::new(&t);
    let hash = SourceHash::new(&[
        CarpMember {
            name: "s1",
            weight: 1,
        },
        CarpMember {
            name: "S2",
            weight: 2,
        },
    ]);
    let mut seen = std::collections::BTreeSet::new();
    for last in 1..=40u8 {
        let client = IpAddr::V4(Ipv4Addr::new(127, 0, 4, last));
        let mut req = get();
        req.access.client = client;
        let member = hash
            .choose(client.to_string().as_bytes(), |_| true)
            .expect("a member");
        let want = format!("SOURCEHASH_PARENT/127.0.0.{}", 6 + member);
        let got = codes(&select_applied(
            &t,
            &h,
            &c,
            &req,
            Direct::Maybe,
            None,
            Instant::now(),
        ));
        assert_eq!(got[0], want, "{client}");
        seen.insert(want);
        // An IPv4-mapped IPv6 client hashes as its IPv4 text.
        req.access.client = IpAddr::V6(Ipv4Addr::new(127, 0, 4, last).to_ipv6_mapped());
        let mapped = codes(&select_applied(
            &t,
            &h,
            &c,
            &req,
            Direct::Maybe,
            None,
            Instant::now(),
        ));
        assert_eq!(mapped[0], got[0], "{client} mapped");
    }
    assert_eq!(seen.len(), 2, "40 clients reached one parent: {seen:?}");
    // IPv6 text as Squid prints it: compressed, no brackets.
    assert_eq!(
        client_address_text("2001:db8:0:0:0:0:0:1".parse().expect("ip")),
        "2001:db8::1"
    );
}

#[test]
fn userhash_never_picks_without_a_user() {
    // cuttle has no proxy authentication, so userhash parents are used
    // as Squid uses them for a request without a user: by the later
    // algorithms only.
    let text = "cache_peer 127.0.0.3 parent 3128 0 userhash name=u1\n\
                cache_peer 127.0.0.4 parent 3128 0 userhash name=u2\n\
                cache_peer 127.0.0.5 parent 3128 0 carp\n";
    assert_eq!(
        run(text, &get(), None),
        vec![
            "CARP/127.0.0.5",
            "ANY_OLD_PARENT/127.0.0.3",
            "ANY_OLD_PARENT/127.0.0.4",
            "HIER_DIRECT/example.test"
        ]
    );
    let only_userhash = "cache_peer 127.0.0.3 parent 3128 0 userhash name=u1\n\
                         cache_peer 127.0.0.4 parent 3128 0 userhash name=u2\n";
    assert_eq!(
        run(only_userhash, &get(), None)[0],
        "FIRSTUP_PARENT/127.0.0.3"
    );
}

#[test]
fn a_carp_member_made_a_sibling_for_a_domain_is_skipped_for_a_client_reload() {
    // Squid's peerAllowedToUse: a peer that is a sibling for this host
    // (neighbor_type_domain) is not used for a client reload; CARP
    // itself never asks whether the member is a parent here.
    let text = format!("{CARP_MESH}neighbor_type_domain beta-2 sibling .example.test\n");
    let c = config(&text);
    let t = table(&c);
    let h = HashParents::new(&t);
    let carp = carp_mesh_members();
    let (host, url) = urls(100)
        .into_iter()
        .find(|(_, u)| carp.choose(u.as_bytes(), |_| true) == Some(1))
        .expect("a URL of beta-2");
    let mut req = request_for(&host, &url);
    let first = |req: &SelectRequest<'_>| {
        codes(&select_applied(
            &t,
            &h,
            &c,
            req,
            Direct::Maybe,
            None,
            Instant::now(),
        ))[0]
            .clone()
    };
    assert_eq!(first(&req), "CARP/127.0.0.4");
    req.siblings_ok = false;
    let next = carp.choose(url.as_bytes(), |m| m != 1).expect("a member");
    assert_eq!(first(&req), format!("CARP/{}", CARP_HOSTS[next]));
}

#[test]
fn a_carp_member_at_max_conn_is_skipped() {
    let text = "cache_peer 127.0.0.3 parent 3128 0 carp name=Alpha max-conn=1\n\
                cache_peer 127.0.0.4 parent 3128 0 carp name=beta-2\n";
    let c = config(text);
    let n = neighbours_up(&c);
    // A URL that belongs to Alpha.
    let carp = Carp::new(&[
        CarpMember {
            name: "Alpha",
            weight: 1,
        },
        CarpMember {
            name: "beta-2",
            weight: 1,
        },
    ]);
    let (host, url) = urls(100)
        .into_iter()
        .find(|(_, u)| carp.choose(u.as_bytes(), |_| true) == Some(0))
        .expect("a URL of Alpha");
    let req = request_for(&host, &url);
    let first = |n: &Neighbours| codes(&n.select_without_queries(&c, &req))[0].clone();
    assert_eq!(first(&n), "CARP/127.0.0.3");
    let guard = n.open(0);
    assert_eq!(first(&n), "CARP/127.0.0.4", "Alpha is at max-conn");
    drop(guard);
    assert_eq!(first(&n), "CARP/127.0.0.3");
}

/// Receives one ICP query on each socket, then answers them MISS in
/// the order given (so they arrive in that order at the client's one
/// socket), each with its version and, when given, SRC_RTT option data.
/// Returns each query's options word.
async fn answer_misses(answers: [(&tokio::net::UdpSocket, u8, Option<u32>); 2]) -> [u32; 2] {
    let mut replies = Vec::new();
    for (sock, version, src_rtt) in answers {
        let mut buf = [0u8; 2048];
        let (len, from) = sock.recv_from(&mut buf).await.expect("query");
        let q = cuttle_protocol::icp::parse(&buf[..len]).expect("valid query");
        let mut reply = q.reply(Opcode::Miss).expect("reply");
        if let Some(data) = src_rtt {
            reply.options = cuttle_protocol::icp::Options(cuttle_protocol::icp::Options::SRC_RTT);
            reply.option_data = data;
        }
        let mut out = Vec::new();
        reply.encode(&mut out).expect("encode");
        out[1] = version;
        replies.push((sock, out, from, q.options.0));
    }
    let mut asked = [0; 2];
    for (i, (sock, out, from, options)) in replies.into_iter().enumerate() {
        sock.send_to(&out, from).await.expect("send");
        asked[i] = options;
    }
    asked
}

#[tokio::test]
async fn query_icmp_asks_v2_parents_for_their_rtt_and_the_closest_leads() {
    use tokio::net::UdpSocket;
    let a = UdpSocket::bind("127.0.8.41:0").await.expect("bind");
    let b = UdpSocket::bind("127.0.8.42:0").await.expect("bind");
    let text = format!(
        "query_icmp on\nicp_query_timeout 5000\n\
         cache_peer 127.0.8.41 parent 3128 {} name=a\n\
         cache_peer 127.0.8.42 parent 3128 {} name=b\n",
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port()
    );
    let c = config(&text);
    let n = neighbours_up(&c);
    let client = n.icp_client().expect("client");
    let req = get();
    let flag = cuttle_protocol::icp::Options::SRC_RTT;
    // Round 1: a answers first without an RTT (and as version 3), b
    // next with 7 ms: b is the closest, a only the first.
    let targets = to_ping(n.table.as_ref(), &c, &req, 0, Instant::now()).0;
    let (asked, [qa, qb]) = tokio::join!(
        client.query(&n.table, "http://example.test/x", &targets),
        answer_misses([(&a, 3, None), (&b, 2, Some(7))])
    );
    assert_eq!((qa, qb), (flag, flag), "both peers are version 2 so far");
    assert_eq!(asked.first_parent_miss, Some(0));
    assert_eq!(asked.closest_parent_miss, Some(1));
    let s = select_applied(
        &n.table,
        &n.hashes,
        &c,
        &req,
        Direct::Maybe,
        Some(&asked),
        Instant::now(),
    );
    assert_eq!(codes(&s)[0], "CLOSEST_PARENT_MISS/127.0.8.42");
    // Round 2: a answered version 3, so it is no longer asked.
    let targets = to_ping(n.table.as_ref(), &c, &req, 0, Instant::now()).0;
    let (_, [qa, qb]) = tokio::join!(
        client.query(&n.table, "http://example.test/y", &targets),
        answer_misses([(&a, 2, None), (&b, 2, None)])
    );
    assert_eq!((qa, qb), (0, flag));

    // query_icmp off: nobody is asked, and a reported RTT is ignored.
    let c = config(&text.replace("query_icmp on", "query_icmp off"));
    let n = neighbours_up(&c);
    let client = n.icp_client().expect("client");
    let targets = to_ping(n.table.as_ref(), &c, &req, 0, Instant::now()).0;
    let (asked, [qb, qa]) = tokio::join!(
        client.query(&n.table, "http://example.test/z", &targets),
        answer_misses([(&b, 2, None), (&a, 2, Some(1))])
    );
    assert_eq!((qa, qb), (0, 0));
    assert_eq!(
        (asked.closest_parent_miss, asked.first_parent_miss),
        (None, Some(1))
    );
}

#[tokio::test]
async fn clients_send_from_the_published_responder_sockets_and_follow_them() {
    use crate::peers::querier::{Inbox, QuerySocket, QuerySockets};
    let sockets = Arc::new(QuerySockets::default());
    let n = Neighbours::on_sockets(&config(""), Arc::clone(&sockets));
    // No icp_port, no htcp_port: an ICP client that sends nothing, no
    // HTCP client.
    assert!(n.icp_client().expect("client").local_addr().is_err());
    assert!(n.htcp_client().is_none());
    let lend = |socket: &Arc<std::net::UdpSocket>| QuerySocket {
        socket: Arc::downgrade(socket),
        inbox: Arc::new(Inbox::default()),
    };
    let bind = || Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"));
    let (icp, htcp) = (bind(), bind());
    sockets.icp.set(Some(lend(&icp)));
    sockets.htcp.set(Some(lend(&htcp)));
    let first = n.icp_client().expect("client");
    assert_eq!(first.local_addr().ok(), icp.local_addr().ok());
    assert_eq!(
        n.htcp_client().expect("client").local_addr().ok(),
        htcp.local_addr().ok()
    );
    assert!(Arc::ptr_eq(&first, &n.icp_client().expect("client")));
    // A rebound responder: the next query sends from its new socket.
    let moved = bind();
    sockets.icp.set(Some(lend(&moved)));
    assert_eq!(
        n.icp_client().expect("client").local_addr().ok(),
        moved.local_addr().ok()
    );
    // A stopped one: its socket is closed, nothing is sent from it.
    drop(moved);
    assert!(n.icp_client().expect("client").local_addr().is_err());
}

#[tokio::test]
async fn the_icp_client_is_rebound_when_udp_outgoing_address_changes() {
    use std::sync::atomic::Ordering;
    let at = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 9, last));
    let n1 = Neighbours::new(&config("udp_outgoing_address 127.0.9.71\n"));
    let first = n1.icp_client().expect("bound");
    assert_eq!(first.local_addr().expect("addr").ip(), at(71));
    let n2 = n1.reconfigure(&config(
        "udp_outgoing_address 127.0.9.71\nicp_query_timeout 50\n",
    ));
    let same = n2.icp_client().expect("bound");
    assert!(Arc::ptr_eq(&first, &same), "same address: same socket");
    first.counters.queries_sent.fetch_add(3, Ordering::Relaxed);
    let n3 = n2.reconfigure(&config("udp_outgoing_address 127.0.9.72\n"));
    let moved = n3.icp_client().expect("bound");
    assert_eq!(moved.local_addr().expect("addr").ip(), at(72));
    // The new client counts on from the old one's figures: mgr pages
    // and /metrics never go backwards across a reload.
    let counted = |n: &Neighbours| {
        n.icp_counters()
            .map(|c| c.queries_sent.load(Ordering::Relaxed))
    };
    assert_eq!(moved.counters.queries_sent.load(Ordering::Relaxed), 3);
    assert_eq!(counted(&n3), Some(3));
    // An older generation (a request still in flight) asks from the
    // new socket too; the old one lives while its holders do.
    assert!(Arc::ptr_eq(&moved, &n1.icp_client().expect("bound")));
    assert_eq!(first.local_addr().expect("addr").ip(), at(71));
}

#[tokio::test]
async fn icp_round_over_real_sockets_first_hit_wins_strays_counted() {
    use tokio::net::UdpSocket;
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let text = format!(
        "cache_peer 127.0.0.1 sibling 3128 {} name=a\ncache_peer 127.0.0.1 sibling 3129 {} name=b\nicp_query_timeout 2000\n",
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port()
    );
    let c = config(&text);
    let n = neighbours_up(&c);
    let client = n.icp_client().expect("client");
    let url = "http://example.test/x";
    let req = get();
    let answer = |sock: UdpSocket, op: Opcode, spoof: bool| async move {
        let mut buf = [0u8; 1024];
        let (len, from) = sock.recv_from(&mut buf).await.expect("query");
        let q = cuttle_protocol::icp::parse(&buf[..len]).expect("valid query");
        assert_ne!(q.reqnum, 0);
        assert_eq!(q.body.url().0, b"http://example.test/x");
        let mut out = Vec::new();
        if spoof {
            // Wrong reqnum, then a stranger's socket: both ignored.
            let mut bad = q;
            bad.reqnum = q.reqnum.wrapping_add(7);
            bad.reply(Opcode::Hit)
                .expect("reply")
                .encode(&mut out)
                .expect("encode");
            sock.send_to(&out, from).await.expect("send");
            let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            out.clear();
            q.reply(Opcode::Hit)
                .expect("reply")
                .encode(&mut out)
                .expect("encode");
            stranger.send_to(&out, from).await.expect("send");
            sock.send_to(b"garbage", from).await.expect("send");
            tokio::time::sleep(Duration::from_millis(50)).await;
            out.clear();
        }
        q.reply(op)
            .expect("reply")
            .encode(&mut out)
            .expect("encode");
        sock.send_to(&out, from).await.expect("send");
    };
    let ta = tokio::spawn(answer(a, Opcode::Miss, false));
    let tb = tokio::spawn(answer(b, Opcode::Hit, true));
    let targets = to_ping(n.table.as_ref(), &c, &req, 0, Instant::now()).0;
    assert_eq!(targets.len(), 2);
    let r = client.query(&n.table, url, &targets).await;
    ta.await.expect("a");
    tb.await.expect("b");
    assert_eq!(
        r.hit,
        Some(1),
        "b's HIT wins; its spoofed HIT came first but was dropped"
    );
    assert!(!r.timed_out);
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(client.counters.from_non_peer.load(Relaxed), 1);
    assert_eq!(client.counters.unmatched.load(Relaxed), 1);
    assert_eq!(client.counters.malformed.load(Relaxed), 1);
    let s = select_applied(
        &n.table,
        &n.hashes,
        &c,
        &req,
        Direct::Maybe,
        Some(&r),
        Instant::now(),
    );
    assert_eq!(codes(&s)[0], "SIBLING_HIT/127.0.0.1");
}

/// Selecting never binds a socket: a round needs clients opened by the
/// explicit step ([`Neighbours::open_clients`]); without them no peer is
/// asked and the request goes on as after an empty round.
#[tokio::test]
async fn selecting_binds_no_socket() {
    let c = config("cache_peer 127.0.0.1 parent 3128 3130\nicp_query_timeout 50\n");
    let n = neighbours_up(&c);
    let s = n.select(&c, &get(), &http::HeaderMap::new()).await;
    assert!(lock(&n.icp).client.is_none(), "an ICP socket was bound");
    assert!(s.replies.is_none());
    assert_eq!(codes(&s)[0], "FIRSTUP_PARENT/127.0.0.1");
    n.open_clients();
    assert!(lock(&n.icp).client.is_some());
}
