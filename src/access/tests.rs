//! Unit tests of access control: rule lists, every ACL type, and Squid's first-match order, against parsed squid.conf text.

use super::*;
use crate::config::{load_file, load_str, LoadOptions, Loaded, Severity};
use std::path::{Path, PathBuf};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn load(text: &str) -> Config {
    let l = load_str(text, "t.conf", &LoadOptions::default());
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    l.config
}

/// A request from `client` on port 3128 for `url` (absolute, or
/// `host:port` for CONNECT), split the way the HTTP layer would.
fn req<'a>(client: &str, method: &'a str, url: &'a str) -> Request<'a> {
    let (scheme, rest) = if method == "CONNECT" {
        ("", url)
    } else {
        let (s, r) = url.split_once("://").unwrap();
        (s, r)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) if method != "CONNECT" => (&rest[..i], &rest[i..]),
        _ => (rest, if method == "CONNECT" { "" } else { "/" }),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().unwrap()),
        _ => (authority, default_port(scheme).unwrap_or(443)),
    };
    Request {
        client: ip(client),
        method,
        scheme,
        host,
        port,
        path,
        url,
        local_ip: Some(ip("10.0.0.254")),
        local_port: 3128,
        port_name: "3128",
        dst_addrs: None,
    }
}

fn get<'a>(client: &str, url: &'a str) -> Request<'a> {
    req(client, "GET", url)
}

/// The verdict and the line of the deciding rule (0 for none).
fn verdict(list: &[Located<AccessRule>], config: &Config, r: &Request<'_>) -> (Verdict, usize) {
    let d = check(list, config, r);
    (d.verdict, d.location().map_or(0, |l| l.line))
}

use Verdict::{Allow, Deny};

// ---- the list rules

#[test]
fn first_match_wins() {
    let c = load("acl a src 10.0.0.0/8\nacl b src 10.1.0.0/16\nhttp_access deny b\nhttp_access allow a\nhttp_access deny all\n");
    let list = &c.http_access;
    assert_eq!(verdict(list, &c, &get("10.1.2.3", "http://x/")), (Deny, 3));
    assert_eq!(verdict(list, &c, &get("10.2.2.3", "http://x/")), (Allow, 4));
    assert_eq!(verdict(list, &c, &get("192.0.2.1", "http://x/")), (Deny, 5));
    let d = check(list, &c, &get("10.2.2.3", "http://x/"));
    assert_eq!(d.reason, Reason::Rule(&list[1].location));
    assert!(d.allowed());
}

#[test]
fn no_match_is_the_inverse_of_the_last_rule() {
    // Last rule allow: the implicit answer is deny.
    let c = load("acl a src 10.0.0.0/8\nhttp_access allow a\n");
    let d = check(&c.http_access, &c, &get("192.0.2.1", "http://x/"));
    assert_eq!(d.verdict, Deny);
    assert_eq!(d.reason, Reason::Implicit(&c.http_access[0].location));
    // Last rule deny: the implicit answer is allow (Squid's rule; this
    // is why configs end with "deny all").
    let c = load(
        "acl a src 10.0.0.0/8\nacl b src 10.1.0.0/16\nhttp_access allow a\nhttp_access deny b\n",
    );
    let d = check(&c.http_access, &c, &get("192.0.2.1", "http://x/"));
    assert_eq!(d.verdict, Allow);
    assert_eq!(d.reason, Reason::Implicit(&c.http_access[1].location));
    assert_eq!(d.location().unwrap().line, 4);
}

#[test]
fn an_empty_list_denies_unless_the_directive_defaults_to_allow() {
    let c = load("http_port 3128\n");
    let r = get("127.0.0.1", "http://x/");
    let d = check(&c.http_access, &c, &r);
    assert_eq!(
        (d.verdict, d.reason, d.location()),
        (Deny, Reason::NoRules, None)
    );
    // miss_access and cache_peer_access allow without rules.
    let d = check(&c.miss_access, &c, &r).or_if_no_rules(Allow);
    assert_eq!((d.verdict, d.reason), (Allow, Reason::NoRules));
    // ... but rules, when present, decide.
    let c = load("acl a src 10.0.0.0/8\nmiss_access deny a\n");
    let d = check(&c.miss_access, &c, &get("10.0.0.1", "http://x/")).or_if_no_rules(Allow);
    assert_eq!(d.verdict, Deny);
}

#[test]
fn acls_in_a_rule_are_anded_values_ored_and_negation_flips() {
    let c = load(
        "acl net src 10.0.0.0/8 192.168.0.0/16\nacl get method GET HEAD\n\
             http_access allow net get\nhttp_access allow !net\nhttp_access deny all\n",
    );
    let l = &c.http_access;
    assert_eq!(verdict(l, &c, &get("192.168.1.1", "http://x/")), (Allow, 3));
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "HEAD", "http://x/")),
        (Allow, 3)
    );
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "POST", "http://x/")),
        (Deny, 5)
    );
    assert_eq!(
        verdict(l, &c, &req("172.16.0.1", "POST", "http://x/")),
        (Allow, 4)
    );
}

#[test]
fn the_same_evaluator_serves_every_list() {
    let c = load(
        "acl sib src 10.1.0.2\nacl nocache dstdomain .internal.example.net\n\
             cache_peer 10.1.0.2 sibling 3128 3130 name=s1\ncache_peer_access s1 deny nocache\n\
             icp_access allow sib\nhtcp_access allow sib\nhtcp_clr_access deny all\n\
             never_direct allow !nocache\nalways_direct allow nocache\n",
    );
    let from_sib = get("10.1.0.2", "http://www.example.com/");
    assert!(check(&c.icp_access, &c, &from_sib).allowed());
    assert!(!check(&c.icp_access, &c, &get("10.1.0.9", "http://a/")).allowed());
    assert!(check(&c.htcp_access, &c, &from_sib).allowed());
    assert!(!check(&c.htcp_clr_access, &c, &from_sib).allowed());
    let inside = get("10.9.0.1", "http://db.internal.example.net/");
    let outside = get("10.9.0.1", "http://www.example.com/");
    let peer = &c.peer("s1").unwrap().access;
    assert!(!check(peer, &c, &inside).or_if_no_rules(Allow).allowed());
    assert!(check(peer, &c, &outside).or_if_no_rules(Allow).allowed());
    assert!(check(&c.never_direct, &c, &outside).allowed());
    assert!(!check(&c.never_direct, &c, &inside).allowed());
    assert!(check(&c.always_direct, &c, &inside).allowed());
    assert!(!check(&c.always_direct, &c, &outside).allowed());
}

#[test]
fn unevaluable_acls_fail_closed() {
    // The loader refuses such rules; a hand-built one denies.
    let mut c = load("acl u proxy_auth REQUIRED\nacl a src 10.0.0.0/8\n");
    let rule = |action, name: &str, index| {
        Located::new(
            AccessRule {
                action,
                acls: vec![AclRef {
                    name: name.into(),
                    negated: true,
                    index,
                }],
            },
            Location::new("hand.conf", 7),
        )
    };
    c.http_access = vec![rule(Action::Allow, "u", usize::MAX)];
    let d = check(&c.http_access, &c, &get("10.0.0.1", "http://x/"));
    assert_eq!((d.verdict, d.location().unwrap().line), (Deny, 7));
    assert!(matches!(d.reason, Reason::Unevaluable(_)));
    c.http_access = vec![rule(Action::Deny, "nosuch", 0)];
    assert!(matches!(
        check(&c.http_access, &c, &get("10.0.0.1", "http://x/")).reason,
        Reason::Unevaluable(_)
    ));
    // A stale index falls back to the name.
    c.http_access = vec![rule(Action::Deny, "a", 0)];
    assert_eq!(
        check(&c.http_access, &c, &get("192.0.2.1", "http://x/")).reason,
        Reason::Rule(&c.http_access[0].location)
    );
}

#[test]
fn access_log_conditions() {
    let c = load("acl a src 10.0.0.0/8\nacl g method GET\n");
    let refs = |names: &[(&str, bool)]| -> Vec<AclRef> {
        names
            .iter()
            .map(|&(n, negated)| AclRef {
                name: n.into(),
                negated,
                index: usize::MAX,
            })
            .collect()
    };
    let r = get("10.0.0.1", "http://x/");
    assert!(matches_all(&refs(&[("a", false), ("g", false)]), &c, &r));
    assert!(!matches_all(&refs(&[("a", false), ("g", true)]), &c, &r));
    assert!(matches_all(&[], &c, &r));
}

// ---- each ACL type

#[test]
fn src_ipv4_ipv6_and_builtins() {
    let c = load("acl v6 src 2001:db8::/32\nacl v4 src 192.0.2.0/24\n");
    let one = |name: &str, client: &str| {
        let acl = c.acl(name).unwrap();
        eval_acl(
            acl,
            &Eval::new(&get(client, "http://x/"), &Details::default(), false),
        ) == Match::Yes
    };
    assert!(one("v6", "2001:db8::1"));
    assert!(!one("v6", "2001:db9::1"));
    assert!(!one("v6", "192.0.2.1"));
    assert!(one("v4", "192.0.2.77"));
    assert!(one("v4", "::ffff:192.0.2.77"), "IPv4-mapped counts as IPv4");
    assert!(one("localhost", "127.0.0.1"));
    assert!(one("localhost", "::1"));
    assert!(!one("localhost", "127.0.0.2"), "Squid 5: 127.0.0.1/32 ::1");
    assert!(one("all", "203.0.113.9"));
    assert!(one("all", "2001:db8::5"));
}

#[test]
fn dst_uses_the_literal_or_the_callers_addresses_and_never_dns() {
    let c = load("acl d dst 172.26.226.0/23 2001:db8::/32\nacl n dst -n 172.26.226.0/23\nhttp_access allow d\nhttp_access deny all\n");
    let l = &c.http_access;
    // An IP-literal host is its own address.
    assert_eq!(
        verdict(l, &c, &get("192.0.2.1", "http://172.26.227.9/")),
        (Allow, 3)
    );
    assert_eq!(
        verdict(l, &c, &get("192.0.2.1", "http://[2001:db8::7]/")),
        (Allow, 3)
    );
    // A name without addresses: no match (Squid's answer when the lookup
    // failed or a fast check cannot wait).
    let mut r = get("192.0.2.1", "http://vulcan.example/");
    assert_eq!(verdict(l, &c, &r), (Deny, 4));
    assert_eq!(try_check(l, &c, &r), Err(NeedsDst));
    let addrs = [ip("198.51.100.1"), ip("172.26.226.4")];
    r.dst_addrs = Some(&addrs);
    assert_eq!(verdict(l, &c, &r), (Allow, 3));
    assert_eq!(try_check(l, &c, &r).unwrap().verdict, Allow);
    r.dst_addrs = Some(&[]);
    assert_eq!(verdict(l, &c, &r), (Deny, 4));
    // -n: only a literal host can match.
    let n = c.acl("n").unwrap();
    let named = Request {
        dst_addrs: Some(&addrs),
        ..get("192.0.2.1", "http://vulcan.example/")
    };
    assert_eq!(
        eval_acl(n, &Eval::new(&named, &Details::default(), true)),
        Match::No
    );
    let literal = get("192.0.2.1", "http://172.26.226.4/");
    assert_eq!(
        eval_acl(n, &Eval::new(&literal, &Details::default(), true)),
        Match::Yes
    );
}

#[test]
fn negated_dst_without_addresses_matches_as_in_squid() {
    let c = load("acl d dst 10.0.0.0/8\nhttp_access deny !d\nhttp_access allow all\n");
    let r = get("192.0.2.1", "http://name.example/");
    assert_eq!(verdict(&c.http_access, &c, &r), (Deny, 2));
    assert_eq!(try_check(&c.http_access, &c, &r), Err(NeedsDst));
}

#[test]
fn try_check_asks_for_addresses_only_when_a_rule_reaches_dst() {
    let c = load("acl local src 10.0.0.0/8\nacl d dst 10.0.0.0/8\nhttp_access allow local\nhttp_access deny d\nhttp_access allow all\n");
    let l = &c.http_access;
    assert!(needs_dst(l, &c));
    let inside = get("10.0.0.1", "http://name.example/");
    assert_eq!(try_check(l, &c, &inside).unwrap().verdict, Allow);
    assert_eq!(
        try_check(l, &c, &get("192.0.2.1", "http://name.example/")),
        Err(NeedsDst)
    );
    // A literal host needs no lookup.
    let lit = get("192.0.2.1", "http://10.1.1.1/");
    assert_eq!(try_check(l, &c, &lit).unwrap().verdict, Deny);
}

#[test]
fn needs_dst_knows_the_builtins_and_minus_n() {
    let c = load("acl n dst -n 10.0.0.0/8\nacl s src 10.0.0.0/8\nhttp_access deny n\nhttp_access allow s\nicp_access deny to_localhost\nmiss_access deny !to_linklocal\n");
    assert!(!needs_dst(&c.http_access, &c));
    assert!(needs_dst(&c.icp_access, &c));
    assert!(needs_dst(&c.miss_access, &c));
    assert!(!needs_dst(&c.htcp_access, &c));
}

#[test]
fn to_localhost_and_to_linklocal() {
    let c = load(
        "http_access deny to_localhost\nhttp_access deny to_linklocal\nhttp_access allow all\n",
    );
    let l = &c.http_access;
    for url in [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0x7f.0.0.1/",
        "http://2130706433/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::]/",
        "http://localhost./",
    ] {
        let mut r = get("10.0.0.1", url);
        let lo = [ip("127.0.0.1")];
        if r.host.starts_with("localhost") {
            r.dst_addrs = Some(&lo);
        }
        assert_eq!(verdict(l, &c, &r), (Deny, 1), "{url}");
    }
    assert_eq!(
        verdict(l, &c, &get("10.0.0.1", "http://169.254.169.254/latest/")),
        (Deny, 2)
    );
    assert_eq!(
        verdict(l, &c, &get("10.0.0.1", "http://[fe80::1]/")),
        (Deny, 2)
    );
    assert_eq!(
        verdict(l, &c, &get("10.0.0.1", "http://93.184.216.34/")),
        (Allow, 3)
    );
}

#[test]
fn dstdomain_dot_means_subdomains_and_case_is_ignored() {
    let c = load(
        "acl d dstdomain .example.com www.example.org\nhttp_access allow d\nhttp_access deny all\n",
    );
    let l = &c.http_access;
    for (url, allowed) in [
        ("http://example.com/", true),
        ("http://www.example.com/", true),
        ("http://a.b.example.com:8080/x", true),
        ("http://WWW.Example.COM./", true),
        ("http://badexample.com/", false),
        ("http://example.com.evil.net/", false),
        ("http://www.example.org/", true),
        ("http://example.org/", false),
        ("http://a.www.example.org/", false),
        ("http://com/", false),
    ] {
        assert_eq!(
            check(l, &c, &get("10.0.0.1", url)).allowed(),
            allowed,
            "{url}"
        );
    }
}

#[test]
fn dstdomain_matches_an_ip_host_by_its_text_only() {
    let c = load("acl d dstdomain 192.0.2.10 .example.com [2001:db8::1]\nhttp_access allow d\nhttp_access deny all\n");
    let l = &c.http_access;
    assert!(check(l, &c, &get("10.0.0.1", "http://192.0.2.10/")).allowed());
    // Squid keeps a numeric host in canonical form.
    assert!(check(l, &c, &get("10.0.0.1", "http://0xc0.0.2.10/")).allowed());
    assert!(check(l, &c, &get("10.0.0.1", "http://[2001:DB8:0::1]/")).allowed());
    // No reverse DNS, even if 192.0.2.11 were www.example.com.
    let addrs = [ip("192.0.2.11")];
    let r = Request {
        dst_addrs: Some(&addrs),
        ..get("10.0.0.1", "http://192.0.2.11/")
    };
    assert!(!check(l, &c, &r).allowed());
}

#[test]
fn dstdomain_without_an_index_scans_the_entries() {
    let mut c = load("acl d dstdomain .example.com\nhttp_access allow d\nhttp_access deny all\n");
    let r = get("10.0.0.1", "http://www.Example.com/");
    assert!(check(&c.http_access, &c, &r).allowed());
    let AclData::DstDomain { index, .. } = &mut c.acls.last_mut().unwrap().data else {
        panic!()
    };
    *index = crate::config::DomainIndex::default();
    assert!(check(&c.http_access, &c, &r).allowed());
    assert!(!check(&c.http_access, &c, &get("10.0.0.1", "http://example.net/")).allowed());
}

#[test]
fn a_large_dstdomain_list_is_indexed() {
    let mut text = String::from("acl big dstdomain");
    for i in 0..50_000 {
        text.push_str(&format!(" .d{i}.example"));
    }
    text.push_str("\nhttp_access allow big\nhttp_access deny all\n");
    let c = load(&text);
    let AclData::DstDomain { entries, index, .. } = &c.acl("big").unwrap().data else {
        panic!()
    };
    // Checks then probe the hash sets, one per label of the host.
    assert!(index.covers(entries.len()));
    assert!(check(
        &c.http_access,
        &c,
        &get("10.0.0.1", "http://a.d49999.example/")
    )
    .allowed());
    assert!(check(&c.http_access, &c, &get("10.0.0.1", "http://d0.example/")).allowed());
    assert!(!check(
        &c.http_access,
        &c,
        &get("10.0.0.1", "http://a.b.c.example/")
    )
    .allowed());
    assert!(!check(&c.http_access, &c, &get("10.0.0.1", "http://example/")).allowed());
}

#[test]
fn port_is_the_urls_port() {
    let c =
        load("acl safe port 80 443 1025-65535\nhttp_access deny !safe\nhttp_access allow all\n");
    let l = &c.http_access;
    assert_eq!(verdict(l, &c, &get("10.0.0.1", "http://x/")).0, Allow);
    assert_eq!(verdict(l, &c, &get("10.0.0.1", "https://x/")).0, Allow);
    assert_eq!(verdict(l, &c, &get("10.0.0.1", "http://x:8080/")).0, Allow);
    assert_eq!(verdict(l, &c, &get("10.0.0.1", "ftp://x/")).0, Deny, "21");
    assert_eq!(verdict(l, &c, &req("10.0.0.1", "CONNECT", "x:25")).0, Deny);
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "CONNECT", "x:443")).0,
        Allow
    );
}

#[test]
fn method_case_follows_squids_relaxed_parser() {
    let c = load("acl purge method PURGE\nacl odd method FROB\nhttp_access deny purge\nhttp_access deny odd\nhttp_access allow all\n");
    let l = &c.http_access;
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "PURGE", "http://x/")),
        (Deny, 3)
    );
    // Squid parses a known method in any case (relaxed_header_parser
    // is on by default), so "purge" is PURGE.
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "purge", "http://x/")),
        (Deny, 3)
    );
    // Extension methods are compared exactly.
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "FROB", "http://x/")),
        (Deny, 4)
    );
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "frob", "http://x/")),
        (Allow, 5)
    );
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "GET", "http://x/")),
        (Allow, 5)
    );
    // The built-in CONNECT.
    let c = load("http_access deny CONNECT\nhttp_access allow all\n");
    assert_eq!(
        verdict(&c.http_access, &c, &req("10.0.0.1", "CONNECT", "x:443")),
        (Deny, 1)
    );
}

#[test]
fn proto_is_the_scheme_and_none_for_connect() {
    let l = load_str(
        "acl web proto HTTP https\nacl ftp proto FTP\nacl none proto NONE\nacl mgr proto cache_object\nacl junk proto SMTP\n\
             http_access allow web\nhttp_access allow ftp\nhttp_access allow none\nhttp_access allow mgr\nhttp_access deny all\n",
        "t.conf",
        &LoadOptions::default(),
    );
    assert!(!l.has_errors());
    // Squid ignores an unknown protocol name with a warning.
    let w: Vec<_> = l.warnings().collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].message.contains("unknown protocol \"SMTP\""));
    assert_eq!(w[0].location.line, 5);
    let c = &l.config;
    let l = &c.http_access;
    assert_eq!(verdict(l, c, &get("10.0.0.1", "http://x/")), (Allow, 6));
    assert_eq!(verdict(l, c, &get("10.0.0.1", "HTTPS://x/")), (Allow, 6));
    assert_eq!(verdict(l, c, &get("10.0.0.1", "ftp://x/")), (Allow, 7));
    assert_eq!(
        verdict(l, c, &req("10.0.0.1", "CONNECT", "x:443")),
        (Allow, 8)
    );
    assert_eq!(
        verdict(l, c, &get("10.0.0.1", "cache_object://x/info")),
        (Allow, 9)
    );
    assert_eq!(verdict(l, c, &get("10.0.0.1", "gopher://x/")), (Deny, 10));
    assert_eq!(verdict(l, c, &get("10.0.0.1", "foo://x/")), (Deny, 10));
}

#[test]
fn localport_localip_and_myportname() {
    let l = load_str(
        "http_port 3128\nhttp_port 127.0.0.1:8080\nhttp_port 8081 name=admin\n\
             acl p3128 localport 3128\nacl old myport 8080-8081\nacl lo myip 127.0.0.0/8\n\
             acl byname myportname 127.0.0.1:8080 admin\n",
        "t.conf",
        &LoadOptions::default(),
    );
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    // Squid's UPGRADE warnings for the renamed types.
    let w: Vec<&str> = l.warnings().map(|d| d.message.as_str()).collect();
    assert_eq!(
        w,
        [
            "acl: ACL type myport has been renamed to localport; read as localport",
            "acl: ACL type myip has been renamed to localip; read as localip"
        ]
    );
    let c = &l.config;
    assert!(matches!(c.acl("old").unwrap().data, AclData::LocalPort(_)));
    // The default port name is the port as written.
    let names: Vec<&str> = c.http_ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["3128", "127.0.0.1:8080", "admin"]);
    let is = |acl: &str, r: &Request<'_>| {
        eval_acl(
            c.acl(acl).unwrap(),
            &Eval::new(r, &Details::default(), false),
        )
    };
    let base = get("10.0.0.1", "http://x/");
    assert_eq!(is("p3128", &base), Match::Yes);
    assert_eq!(is("old", &base), Match::No);
    let on_8080 = Request {
        local_ip: Some(ip("127.0.0.1")),
        local_port: 8080,
        port_name: names[1],
        ..base
    };
    assert_eq!(is("old", &on_8080), Match::Yes);
    assert_eq!(is("lo", &on_8080), Match::Yes);
    assert_eq!(is("lo", &base), Match::No);
    assert_eq!(is("byname", &on_8080), Match::Yes);
    assert_eq!(is("byname", &base), Match::No);
    assert_eq!(
        is(
            "byname",
            &Request {
                port_name: "ADMIN",
                ..base
            }
        ),
        Match::No,
        "case-sensitive"
    );
    // ICP/HTCP: no client connection.
    let icp = Request {
        local_ip: None,
        local_port: 0,
        port_name: "",
        ..base
    };
    assert_eq!(is("lo", &icp), Match::No);
    assert_eq!(is("p3128", &icp), Match::No);
    assert_eq!(is("byname", &icp), Match::No);
}

#[test]
fn url_regex_with_case_flags_and_decoding() {
    let c = load(
        "acl u url_regex ^http://[^/]+/squid-internal-periodic/store_digest$ -i \\.EXE$ +i /CaseSensitive\n\
             http_access deny u\nhttp_access allow all\n",
    );
    let l = &c.http_access;
    let denied = |url: &str| !check(l, &c, &get("10.0.0.1", url)).allowed();
    assert!(denied(
        "http://10.0.0.2:3128/squid-internal-periodic/store_digest"
    ));
    assert!(!denied(
        "http://10.0.0.2:3128/squid-internal-periodic/store_digest/x"
    ));
    assert!(denied("http://x/setup.exe"));
    assert!(
        denied("http://x/setup.ExE"),
        "-i applies to the patterns after it"
    );
    assert!(denied("http://x/CaseSensitive"));
    assert!(!denied("http://x/casesensitive"), "+i turns it back off");
    // Squid matches the percent-decoded URL.
    assert!(denied("http://x/setup%2Eexe"));
    assert!(denied("http://x/squid-internal-periodic%2fstore_digest"));
    let AclData::UrlRegex(p) = &c.acl("u").unwrap().data else {
        panic!()
    };
    let flags: Vec<bool> = p.iter().map(|p| p.case_insensitive).collect();
    assert_eq!(flags, [false, true, false]);
}

#[test]
fn urlpath_regex_sees_path_and_query_but_not_connect() {
    let c = load(
        "acl css urlpath_regex -i \\.css$ ^/w/api\\.php\nacl any_path urlpath_regex .\nacl q urlpath_regex action=raw\n\
             http_access deny css\nhttp_access deny q\nhttp_access allow !any_path\nhttp_access deny all\n",
    );
    let l = &c.http_access;
    assert_eq!(
        verdict(l, &c, &get("10.0.0.1", "http://x/a/b.CSS")),
        (Deny, 4)
    );
    assert_eq!(
        verdict(l, &c, &get("10.0.0.1", "http://x/w/api.php?x=1")),
        (Deny, 4)
    );
    assert_eq!(
        verdict(
            l,
            &c,
            &get("10.0.0.1", "http://x/index.php?title=a&action=raw")
        ),
        (Deny, 5)
    );
    assert_eq!(
        verdict(l, &c, &get("10.0.0.1", "http://x/w/index.php")),
        (Deny, 7)
    );
    // CONNECT has no path: urlpath_regex never matches it.
    assert_eq!(
        verdict(l, &c, &req("10.0.0.1", "CONNECT", "x:443")),
        (Allow, 6)
    );
}

#[test]
fn dstdom_regex_matches_the_host() {
    let c = load("acl r dstdom_regex -n -i (^|\\.)ads\\. tracker\nhttp_access deny r\nhttp_access allow all\n");
    let l = &c.http_access;
    assert!(!check(l, &c, &get("10.0.0.1", "http://ads.example.com/")).allowed());
    assert!(!check(l, &c, &get("10.0.0.1", "http://x.ADS.example.com/")).allowed());
    assert!(!check(l, &c, &get("10.0.0.1", "http://tracker.example/")).allowed());
    assert!(check(l, &c, &get("10.0.0.1", "http://loads.example.com/")).allowed());
    let AclData::DstDomRegex { no_lookup, .. } = &c.acl("r").unwrap().data else {
        panic!()
    };
    assert!(*no_lookup);
}

#[test]
fn manager_requests() {
    let c = load(
        "http_access allow localhost manager\nhttp_access deny manager\nhttp_access allow all\n",
    );
    let l = &c.http_access;
    for url in [
        "cache_object://cache1/info",
        "CACHE_OBJECT://cache1/info",
        "http://cache1:3128/squid-internal-mgr/menu",
        "https://cache1:3128/squid-internal-mgr/info",
        "http://cache1:3128/Squid-Internal-Mgr/info",
        "http://cache1:3128/squid%2Dinternal-mgr/info",
        // CVE-2019-12524: the decoded userinfo hides the path from the
        // regex; the path itself still says manager.
        "https://jeriko.one%252f@g64:3128/squid-internal-mgr/active_requests",
    ] {
        assert_eq!(verdict(l, &c, &get("10.0.0.1", url)), (Deny, 2), "{url}");
        assert_eq!(verdict(l, &c, &get("127.0.0.1", url)), (Allow, 1), "{url}");
    }
    for url in [
        "http://cache1/squid-internal-mgrx/menu",
        "http://cache1/x/squid-internal-mgr/menu",
        "http://cache1/squid-internal-periodic/store_digest",
    ] {
        assert_eq!(verdict(l, &c, &get("10.0.0.1", url)), (Allow, 3), "{url}");
    }
}

#[test]
fn percent_decoding_is_squids() {
    assert_eq!(&*rfc1738_unescape("/a%20b"), b"/a b");
    assert_eq!(&*rfc1738_unescape("100%%"), b"100%");
    assert_eq!(&*rfc1738_unescape("%zz%4"), b"%zz%4");
    assert_eq!(&*rfc1738_unescape("a%00b"), b"a%00b", "NUL is not decoded");
    assert_eq!(&*rfc1738_unescape("%ff%2F"), b"\xff/");
    assert!(matches!(rfc1738_unescape("/plain"), Cow::Borrowed(_)));
}

#[test]
fn numeric_hosts_as_getaddrinfo_reads_them() {
    assert_eq!(parse_ip_host("127.0.0.1"), Some(ip("127.0.0.1")));
    assert_eq!(parse_ip_host("127.1"), Some(ip("127.0.0.1")));
    assert_eq!(parse_ip_host("10.1.2"), Some(ip("10.1.0.2")));
    assert_eq!(parse_ip_host("0x7f.0.0.01"), Some(ip("127.0.0.1")));
    assert_eq!(parse_ip_host("017700000001"), Some(ip("127.0.0.1")));
    assert_eq!(parse_ip_host("2130706433"), Some(ip("127.0.0.1")));
    assert_eq!(parse_ip_host("[::1]"), Some(ip("::1")));
    assert_eq!(
        parse_ip_host("::ffff:10.0.0.1"),
        Some(ip("::ffff:10.0.0.1"))
    );
    // Squid's fromHost strips brackets before reading the address.
    assert_eq!(parse_ip_host("[1.2.3.4]"), Some(ip("1.2.3.4")));
    for name in [
        "example.com",
        "1.2.3.4.5",
        "256.0.0.1",
        "1..2",
        "09.1.1.1",
        "",
        "1.2.3.4x",
        "[::1",
    ] {
        assert_eq!(parse_ip_host(name), None, "{name}");
    }
}

#[test]
fn default_ports() {
    assert_eq!(default_port("http"), Some(80));
    assert_eq!(default_port("HTTPS"), Some(443));
    assert_eq!(default_port("ftp"), Some(21));
    assert_eq!(default_port("nope"), None);
}

// ---- what the loader refuses

fn errors(l: &Loaded) -> Vec<String> {
    l.errors().map(|d| d.to_string()).collect()
}

fn loaded(text: &str) -> Loaded {
    load_str(text, "t.conf", &LoadOptions::default())
}

#[test]
fn rules_using_unsupported_acl_types_are_refused_with_file_and_line() {
    let l = loaded(
        "acl users proxy_auth REQUIRED\nacl hours ext_user -i worker\nacl net src 10.0.0.0/8\n\
             http_access allow net users\nicp_access deny !hours\nhttp_access deny all\n",
    );
    let e = errors(&l);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("t.conf:4: error: http_access: ACL \"users\" (defined at t.conf:1) cannot be evaluated: cuttle does not implement ACL type proxy_auth"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("t.conf:5: error: icp_access: ACL \"hours\" (defined at t.conf:2)"),
        "{}",
        e[1]
    );
    assert!(e[1].contains("ACL type ext_user"));
    // The refused rules are not kept.
    assert_eq!(l.config.http_access.len(), 1);
    assert!(l.config.icp_access.is_empty());
}

#[test]
fn unused_unsupported_acls_stay_warnings() {
    let l = loaded("acl users proxy_auth REQUIRED\nacl ua rep_mime_type -i ^text/\nacl net src 10.0.0.0/8\nhttp_access allow net\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let w: Vec<usize> = l.warnings().map(|d| d.location.line).collect();
    assert_eq!(w, [1, 2]);
    assert!(l
        .warnings()
        .all(|d| d.message.contains("does not evaluate")));
}

#[test]
fn cache_peer_access_and_other_lists_are_checked_too() {
    let l = loaded("cache_peer p parent 3128 0\nacl ext external check\nacl any any-of a b\ncache_peer_access p allow ext\nnever_direct allow any\n");
    let e = errors(&l);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("t.conf:4: error: cache_peer_access: ACL \"ext\""),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("t.conf:5: error: never_direct: ACL \"any\""),
        "{}",
        e[1]
    );
    assert!(e[1].contains("ACL type any-of"));
}

#[test]
fn host_names_in_address_acls_are_refused_when_used() {
    let l = loaded("acl bad dst www.example.com\nacl ok dst 10.0.0.1\nhttp_access deny bad\nhttp_access allow ok\n");
    let e = errors(&l);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("t.conf:3: error: http_access: ACL \"bad\""),
        "{}",
        e[0]
    );
    assert!(e[0].contains("host name \"www.example.com\""), "{}", e[0]);
}

#[test]
fn access_control_directives_cuttle_lacks_are_refused() {
    let l = loaded(
        "auth_param basic program /usr/lib/squid/basic_ncsa_auth /etc/squid/passwd\n\
             external_acl_type t %SRC /bin/true\nhttp_reply_access deny !all\nadapted_http_access deny all\n\
             ssl_bump peek all\nfollow_x_forwarded_for allow localhost\nredirect_program /bin/squidGuard\n\
             icap_service s reqmod_precache icap://127.0.0.1:1344/x\nadaptation_access s allow all\n\
             coredump_dir /var/spool/squid\n",
    );
    let e: Vec<usize> = l.errors().map(|d| d.location.line).collect();
    // http_reply_access (line 3) is implemented.
    assert_eq!(e, [1, 2, 4, 5, 6, 7, 8, 9]);
    let first = l.errors().next().unwrap();
    assert_eq!(
        first.to_string(),
        "t.conf:1: error: auth_param: cuttle does not implement proxy authentication; refusing the config rather than ignoring it, which could let through what Squid would deny"
    );
    assert!(l
        .errors()
        .nth(5)
        .unwrap()
        .message
        .starts_with("redirect_program: cuttle does not implement URL rewriting"));
    // A harmless unknown directive stays a warning.
    let w: Vec<usize> = l.warnings().map(|d| d.location.line).collect();
    assert_eq!(w, [10]);
}

#[test]
fn no_op_forms_of_refused_directives_only_warn() {
    let l = loaded("adapted_http_access allow all\nfollow_x_forwarded_for deny all\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(l.warnings().count(), 2);
    let l = loaded("follow_x_forwarded_for deny badguys\nadapted_http_access allow localhost\n");
    assert_eq!(l.errors().count(), 2);
}

#[test]
fn bad_regexes_are_errors_with_file_and_line() {
    let l = loaded(
        "acl ok url_regex ^http://\nacl bad url_regex -i ok (unclosed\nacl p urlpath_regex [z-a]\n",
    );
    let e: Vec<(usize, String)> = l
        .errors()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, 2);
    assert!(
        e[0].1
            .starts_with("acl: bad regular expression \"(unclosed\": "),
        "{}",
        e[0].1
    );
    assert_eq!(e[1].0, 3);
    // A pattern from a value file is reported at its own line there.
    let dir = std::env::temp_dir().join(format!("cuttle-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("patterns.txt");
    std::fs::write(&list, "# patterns\n\\.exe$\n*bad\n").unwrap();
    let text = format!("acl f url_regex -i \"{}\"\n", list.display());
    let l = loaded(&text);
    let e: Vec<_> = l.errors().collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].location, Location::new(&list, 3));
}

#[test]
fn regex_acls_and_quoted_values_conflict_as_in_squid() {
    let l = loaded("configuration_includes_quoted_values on\nacl u url_regex x\n");
    let e = errors(&l);
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("configuration_includes_quoted_values"));
}

#[test]
fn flags_are_checked_per_type() {
    let l = loaded("acl a proto -i HTTP\nacl b localport -n 80\nacl c urlpath_regex -n x\nacl d dstdom_regex -n -i x\n");
    let e: Vec<usize> = l.errors().map(|d| d.location.line).collect();
    assert_eq!(e, [1, 2, 3]);
    assert!(l
        .diagnostics
        .iter()
        .all(|d| d.severity == Severity::Error || d.location.line != 4));
}

// ---- the samples, with realistic requests

fn sample(path: &str, map: Vec<(PathBuf, PathBuf)>) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/squid-conf");
    let l = load_file(&root.join(path), &LoadOptions { path_map: map });
    assert!(!l.has_errors(), "{:#?}", l.errors().collect::<Vec<_>>());
    l.config
}

#[test]
fn sibling_mesh_http_access() {
    let c = sample("sibling-mesh.conf", vec![]);
    let l = &c.http_access;
    let v = |r: Request<'_>| verdict(l, &c, &r);
    assert_eq!(v(get("10.20.30.40", "http://example.com/")), (Allow, 32));
    assert_eq!(
        v(get("192.168.1.5", "http://example.com:8080/a?b")),
        (Allow, 32)
    );
    assert_eq!(v(get("203.0.113.7", "http://example.com/")), (Deny, 34));
    // CONNECT: only to 443; port 25 is not even a safe port.
    assert_eq!(
        v(req("10.20.30.40", "CONNECT", "mail.example.com:25")),
        (Deny, 26)
    );
    assert_eq!(
        v(req("10.20.30.40", "CONNECT", "example.com:8443")),
        (Deny, 27)
    );
    assert_eq!(
        v(req("10.20.30.40", "CONNECT", "example.com:443")),
        (Allow, 32)
    );
    assert_eq!(v(get("10.20.30.40", "http://example.com:25/")), (Deny, 26));
    // PURGE only from localhost.
    assert_eq!(
        v(req("127.0.0.1", "PURGE", "http://example.com/x")),
        (Allow, 30)
    );
    assert_eq!(
        v(req("10.20.30.40", "PURGE", "http://example.com/x")),
        (Deny, 31)
    );
    assert_eq!(v(req("::1", "PURGE", "http://example.com/x")), (Allow, 30));
    // The cache manager only from localhost.
    assert_eq!(
        v(get("127.0.0.1", "cache_object://cache1.example.net/info")),
        (Allow, 28)
    );
    assert_eq!(
        v(get(
            "10.20.30.40",
            "http://cache1.example.net:3128/squid-internal-mgr/info"
        )),
        (Deny, 29)
    );
    assert_eq!(
        v(get(
            "127.0.0.1",
            "http://cache1.example.net:3128/squid-internal-mgr/info"
        )),
        (Allow, 28)
    );

    // The peer-facing lists.
    let sib = get("10.1.0.2", "http://example.com/");
    let stranger = get("10.1.0.9", "http://example.com/");
    for list in [&c.icp_access, &c.htcp_access, &c.htcp_clr_access] {
        assert!(check(list, &c, &sib).allowed());
        assert!(!check(list, &c, &stranger).allowed());
    }
    assert_eq!(verdict(&c.miss_access, &c, &sib), (Deny, 42));
    assert_eq!(verdict(&c.miss_access, &c, &stranger), (Allow, 43));
    let internal = get("10.20.30.40", "http://wiki.internal.example.net/");
    assert!(check(&c.always_direct, &c, &internal).allowed());
    assert!(!check(&c.never_direct, &c, &internal).allowed());
    assert!(check(&c.never_direct, &c, &sib).allowed());
    let cache2 = &c.peer("cache2").unwrap().access;
    assert!(!check(cache2, &c, &internal).allowed());
    assert!(
        check(cache2, &c, &sib).allowed(),
        "implicit allow after a last deny"
    );
    let up1 = &c.peer("up1").unwrap().access;
    assert!(check(up1, &c, &internal).or_if_no_rules(Allow).allowed());
    assert!(!needs_dst(l, &c));
}

#[test]
fn debian_default_allows_only_localhost() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/squid-conf");
    let c = sample(
        "debian-default.conf",
        vec![("/etc/squid/conf.d".into(), root.join("conf.d"))],
    );
    let l = &c.http_access;
    assert_eq!(
        verdict(l, &c, &get("127.0.0.1", "http://deb.debian.org/")),
        (Allow, 1553)
    );
    assert_eq!(
        verdict(l, &c, &get("10.0.0.5", "http://deb.debian.org/")),
        (Deny, 1556)
    );
    assert_eq!(
        verdict(l, &c, &get("127.0.0.1", "http://x:22/")),
        (Deny, 1530)
    );
    assert_eq!(
        verdict(l, &c, &get("10.0.0.5", "cache_object://localhost/info")),
        (Deny, 1537)
    );
}

#[test]
fn ualberta_vulcan_http_access() {
    let u = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/squid-conf/ualberta-vulcan");
    let c = sample(
        "ualberta-vulcan/squid.conf",
        vec![
            ("/etc/squid/conf.d".into(), u.join("conf.d")),
            ("/tmp/squid-conf/*.conf".into(), u.join("99-peers.conf")),
            ("/etc/squid/whitelist.txt".into(), u.join("whitelist.txt")),
        ],
    );
    let l = &c.http_access;
    let line = |r: &Request<'_>| {
        let d = check(l, &c, r);
        (
            d.verdict,
            d.location().map(|l| {
                (
                    l.file.file_name().unwrap().to_str().unwrap().to_string(),
                    l.line,
                )
            }),
        )
    };
    let at = |v, f: &str, n| (v, Some((f.to_string(), n)));
    // A sibling fetching the store digest (url_regex in http_access).
    let digest = get(
        "172.26.92.4",
        "http://172.26.92.3:3128/squid-internal-periodic/store_digest",
    );
    assert_eq!(line(&digest), at(Allow, "squid.conf", 46));
    // Whitelisted domains from the value file, for anyone.
    let mut pypi = get(
        "203.0.113.5",
        "https://files.pythonhosted.org/packages/x.whl",
    );
    assert!(needs_dst(l, &c));
    // vulcan_net (dst) comes before the whitelist: resolve only then.
    assert_eq!(try_check(l, &c, &pypi), Err(NeedsDst));
    let addrs = [ip("151.101.0.223")];
    pypi.dst_addrs = Some(&addrs);
    assert_eq!(line(&pypi), at(Allow, "01-whitelist.conf", 19));
    // Addresses in the Vulcan network, by literal or by lookup.
    assert_eq!(
        line(&get("203.0.113.5", "http://172.26.227.10/")),
        at(Allow, "01-whitelist.conf", 18)
    );
    let inside = [ip("172.26.93.1")];
    let named = Request {
        dst_addrs: Some(&inside),
        ..get("203.0.113.5", "http://node1.vulcan.example/")
    };
    assert_eq!(line(&named), at(Allow, "01-whitelist.conf", 18));
    let elsewhere = [ip("93.184.216.34")];
    let other = Request {
        dst_addrs: Some(&elsewhere),
        ..get("203.0.113.5", "http://example.com/")
    };
    assert_eq!(line(&other), at(Deny, "01-whitelist.conf", 20));
    // localhost (rule 51) is allowed before the include's PURGE rules.
    assert_eq!(
        line(&req("127.0.0.1", "PURGE", "http://x/")),
        at(Allow, "squid.conf", 51)
    );
    assert_eq!(
        line(&req("10.0.0.9", "PURGE", "http://pypi.org/")),
        at(Deny, "01-whitelist.conf", 10)
    );
    assert_eq!(
        line(&req("10.0.0.9", "CONNECT", "pypi.org:22")),
        at(Deny, "squid.conf", 40)
    );
    // ICP from the local network only.
    assert!(check(&c.icp_access, &c, &get("172.26.92.4", "http://x/")).allowed());
    assert!(!check(&c.icp_access, &c, &get("203.0.113.5", "http://x/")).allowed());
}

#[test]
fn wikimedia_and_multicast_samples() {
    let c = sample("wikimedia-labs-upload.conf", vec![]);
    let l = &c.http_access;
    assert_eq!(
        verdict(
            l,
            &c,
            &req("10.4.0.9", "PURGE", "http://upload.beta.wmflabs.org/x")
        ),
        (Allow, 190)
    );
    assert_eq!(
        verdict(
            l,
            &c,
            &req("10.5.0.9", "PURGE", "http://upload.beta.wmflabs.org/x")
        ),
        (Deny, 195)
    );
    let peer = &c.peer("deployment-imagescaler01").unwrap().access;
    let thumb = get(
        "10.4.0.9",
        "http://upload.beta.wmflabs.org/wikipedia/commons/thumb/a/ab/x.jpg/120px-x.jpg",
    );
    assert_eq!(verdict(peer, &c, &thumb), (Allow, 167));
    assert_eq!(
        verdict(
            peer,
            &c,
            &get(
                "10.4.0.9",
                "http://upload.beta.wmflabs.org/wikipedia/commons/a/ab/x.jpg"
            )
        ),
        (Deny, 168)
    );
    assert!(check(&c.htcp_clr_access, &c, &get("127.0.0.1", "http://x/")).allowed());
    assert!(!check(&c.htcp_clr_access, &c, &get("10.9.0.1", "http://x/")).allowed());

    let c = sample("multicast-accel.conf", vec![]);
    let l = &c.http_access;
    assert_eq!(
        verdict(l, &c, &get("198.51.100.1", "http://www.example.com/")),
        (Allow, 13)
    );
    assert_eq!(
        verdict(l, &c, &get("198.51.100.1", "http://evil.example.com/")),
        (Deny, 14)
    );
    // miss_access: the mesh may only hit; the last rule is a deny, so
    // everyone else gets the implicit allow.
    assert_eq!(
        verdict(
            &c.miss_access,
            &c,
            &get("10.3.0.11", "http://www.example.com/")
        ),
        (Deny, 18)
    );
    let d = check(
        &c.miss_access,
        &c,
        &get("198.51.100.1", "http://www.example.com/"),
    );
    assert_eq!(d.verdict, Allow);
    assert!(matches!(d.reason, Reason::Implicit(_)));
}

// ---- ACL types that look beyond the request line

fn decide(c: &Config, r: &Request<'_>, d: &Details<'_>) -> Verdict {
    check_with(&c.http_access, c, r, d).verdict
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

#[test]
fn browser_and_referer_match_their_headers() {
    let c = load(
        "acl ua browser -i ^mozilla\nacl ref referer_regex ^http://in/\nhttp_access allow ua ref\n",
    );
    let r = get("10.0.0.1", "http://x/");
    let both = headers(&[("user-agent", "Mozilla/5.0"), ("referer", "http://in/a")]);
    let with = |h| Details {
        request_headers: Some(h),
        ..Details::default()
    };
    assert_eq!(decide(&c, &r, &with(&both)), Allow);
    let no_ref = headers(&[("user-agent", "Mozilla/5.0")]);
    assert_eq!(decide(&c, &r, &with(&no_ref)), Deny);
    let other_ua = headers(&[("user-agent", "curl"), ("referer", "http://in/a")]);
    assert_eq!(decide(&c, &r, &with(&other_ua)), Deny);
    // No headers at all (ICP): no match.
    assert_eq!(decide(&c, &r, &Details::default()), Deny);
}

#[test]
fn req_header_joins_repeated_fields() {
    let c = load("acl h req_header Accept-Language (^|,)[[:space:]]*fr\nhttp_access allow h\n");
    let r = get("10.0.0.1", "http://x/");
    let h = headers(&[("accept-language", "en"), ("Accept-Language", "fr-CA")]);
    let d = Details {
        request_headers: Some(&h),
        ..Details::default()
    };
    assert_eq!(decide(&c, &r, &d), Allow);
    let h = headers(&[("accept-language", "en")]);
    let d = Details {
        request_headers: Some(&h),
        ..Details::default()
    };
    assert_eq!(decide(&c, &r, &d), Deny);
}

#[test]
fn reply_acls_need_a_reply() {
    let c = load("acl rh rep_header Content-Type -i ^video/\nacl st http_status 400-499\nhttp_reply_access deny rh\nhttp_reply_access deny st\nhttp_reply_access allow all\n");
    let list = &c.http_reply_access;
    let r = get("10.0.0.1", "http://x/");
    let video = headers(&[("content-type", "Video/mp4")]);
    let html = headers(&[("content-type", "text/html")]);
    let reply = |status, headers| Details {
        reply: Some(ReplyInfo { status, headers }),
        ..Details::default()
    };
    assert_eq!(check_with(list, &c, &r, &reply(200, &video)).verdict, Deny);
    assert_eq!(check_with(list, &c, &r, &reply(200, &html)).verdict, Allow);
    assert_eq!(check_with(list, &c, &r, &reply(404, &html)).verdict, Deny);
    // Without a reply (an http_access check) neither matches.
    assert_eq!(check_with(list, &c, &r, &Details::default()).verdict, Allow);
}

#[test]
fn time_matches_local_weekday_and_minute() {
    let c = load("acl work time MTWHF 09:00-17:00\nhttp_access allow work\n");
    let r = get("10.0.0.1", "http://x/");
    let at = |weekday, minute| Details {
        local_time: Some((weekday, minute)),
        ..Details::default()
    };
    assert_eq!(decide(&c, &r, &at(1, 9 * 60)), Allow);
    assert_eq!(decide(&c, &r, &at(5, 17 * 60)), Allow);
    assert_eq!(decide(&c, &r, &at(5, 17 * 60 + 1)), Deny);
    assert_eq!(decide(&c, &r, &at(0, 12 * 60)), Deny);
    assert_eq!(decide(&c, &r, &at(6, 12 * 60)), Deny);
}

#[test]
fn maxconn_matches_above_the_limit() {
    let c = load("acl many maxconn 2\nhttp_access deny many\nhttp_access allow all\n");
    let r = get("10.0.0.1", "http://x/");
    let open = |n| Details {
        client_connections: n,
        ..Details::default()
    };
    assert_eq!(decide(&c, &r, &open(2)), Allow);
    assert_eq!(decide(&c, &r, &open(3)), Deny);
    assert_eq!(decide(&c, &r, &open(0)), Allow);
}

#[test]
fn srcdomain_matches_the_client_name() {
    let c = load("acl ours srcdomain .example.com\nacl unnamed srcdomain none\nhttp_access allow ours\nhttp_access deny unnamed\nhttp_access allow all\n");
    assert!(needs_client_name(&c.http_access, &c));
    assert!(!needs_client_name(&c.icp_access, &c));
    let r = get("10.0.0.1", "http://x/");
    let named = |n| Details {
        client_name: Some(n),
        ..Details::default()
    };
    let d = check_with(&c.http_access, &c, &r, &named("pc7.Example.com"));
    assert_eq!((d.verdict, d.location().unwrap().line), (Allow, 3));
    // A failed lookup is Squid's "none".
    let d = check_with(&c.http_access, &c, &r, &named("none"));
    assert_eq!((d.verdict, d.location().unwrap().line), (Deny, 4));
    // Not looked up: no srcdomain ACL matches.
    let d = check_with(&c.http_access, &c, &r, &Details::default());
    assert_eq!((d.verdict, d.location().unwrap().line), (Allow, 5));
}

#[test]
fn arp_reads_complete_entries_of_the_table() {
    let table = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/proc/net-arp"),
    )
    .unwrap();
    assert_eq!(
        arp_lookup(&table, ip("192.168.1.1")),
        Some([0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e])
    );
    assert_eq!(arp_lookup(&table, ip("192.168.1.7")), None, "incomplete");
    assert_eq!(
        arp_lookup(&table, ip("::ffff:192.168.1.9")),
        Some([0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5])
    );
    assert_eq!(arp_lookup(&table, ip("192.168.1.2")), None);
    assert_eq!(arp_lookup(&table, ip("fe80::1")), None);

    let c = load("acl mac arp 00:1A:2b:3c:4d:5e\nhttp_access allow mac\n");
    let d = Details {
        arp_table: Some(&table),
        ..Details::default()
    };
    assert_eq!(decide(&c, &get("192.168.1.1", "http://x/"), &d), Allow);
    assert_eq!(decide(&c, &get("192.168.1.9", "http://x/"), &d), Deny);
    // Loopback has no ARP entry: never matches.
    assert_eq!(decide(&c, &get("127.0.0.1", "http://x/"), &d), Deny);
}
