//! Unit tests of acl lines and access rule lists.

use super::values::{parse_domain, parse_port_range};
use super::*;
use crate::config::{load_str, LoadOptions, Severity};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn entry(s: &str) -> IpAclEntry {
    parse_ip_entry(s).unwrap().0
}

#[test]
fn cidr_and_single_addresses() {
    let e = entry("10.0.0.0/8");
    assert_eq!(
        e,
        IpAclEntry::Net {
            first: ip("10.0.0.0"),
            last: ip("10.0.0.0"),
            mask: ip("255.0.0.0")
        }
    );
    assert!(e.contains(ip("10.255.1.2")));
    assert!(!e.contains(ip("11.0.0.1")));
    assert!(
        e.contains(ip("::ffff:10.1.2.3")),
        "IPv4-mapped counts as IPv4"
    );
    let one = entry("10.1.0.2");
    assert!(one.contains(ip("10.1.0.2")));
    assert!(!one.contains(ip("10.1.0.3")));
    assert!(!entry("10.0.0.0/32").contains(ip("10.0.0.1")));
    assert!(entry("0.0.0.0/0").contains(ip("203.0.113.9")));
}

#[test]
fn dotted_netmasks() {
    let all = entry("0.0.0.0/0.0.0.0");
    assert!(all.contains(ip("198.51.100.7")));
    assert!(
        !all.contains(ip("2001:db8::1")),
        "an IPv4 net does not match IPv6"
    );
    let host = entry("127.0.0.1/255.255.255.255");
    assert!(host.contains(ip("127.0.0.1")));
    assert!(!host.contains(ip("127.0.0.2")));
    let net = entry("192.168.0.0/255.255.0.0");
    assert!(net.contains(ip("192.168.44.1")));
    assert!(!net.contains(ip("192.169.0.1")));
}

#[test]
fn ranges() {
    let r = entry("0.0.0.1-0.255.255.255");
    assert!(r.contains(ip("0.0.0.1")));
    assert!(r.contains(ip("0.255.255.255")));
    assert!(!r.contains(ip("0.0.0.0")));
    assert!(!r.contains(ip("1.0.0.0")));
    // a-b/mask: the masked address must fall in the range.
    let rm = entry("10.0.0.0-10.0.3.0/255.255.255.0");
    assert!(rm.contains(ip("10.0.2.77")));
    assert!(!rm.contains(ip("10.0.4.1")));
    assert!(parse_ip_entry("10.0.0.9-10.0.0.1")
        .unwrap_err()
        .contains("starts after"));
    assert!(parse_ip_entry("10.0.0.1-::1")
        .unwrap_err()
        .contains("mixes"));
}

#[test]
fn ipv6() {
    let e = entry("fc00::/7");
    assert!(e.contains(ip("fd12:3456::1")));
    assert!(!e.contains(ip("fe80::1")));
    assert!(entry("fe80::/10").contains(ip("fe80::abcd")));
    assert!(entry("[::1]").contains(ip("::1")));
    assert!(entry("2001:db8::1-2001:db8::ff").contains(ip("2001:db8::10")));
    assert!(parse_ip_entry("fc00::/129")
        .unwrap_err()
        .contains("longer than 128"));
    assert_eq!(entry("all"), IpAclEntry::Any);
    assert!(entry("ipv6").contains(ip("::2")));
    assert!(!entry("ipv6").contains(ip("1.2.3.4")));
}

#[test]
fn netmask_masking_host_bits_warns() {
    let (e, w) = parse_ip_entry("10.1.2.3/8").unwrap();
    assert!(w.unwrap().contains("masks away"));
    assert!(e.contains(ip("10.200.0.1")));
    assert!(parse_ip_entry("10.0.0.0/8").unwrap().1.is_none());
}

#[test]
fn bad_addresses_and_hosts() {
    assert!(parse_ip_entry("10.0.0.0/33").is_err());
    assert!(parse_ip_entry("10.0.0.0/255.0.x.0").is_err());
    assert!(parse_ip_entry("300.1.1.1").is_err());
    assert!(parse_ip_entry("10.0.0.0/ffff::").is_err());
    assert_eq!(
        entry("Proxy-1.Example.net"),
        IpAclEntry::Host("proxy-1.example.net".into())
    );
}

#[test]
fn domains() {
    let d = parse_domain(".Example.COM").unwrap();
    assert_eq!(
        d,
        DomainEntry {
            domain: "example.com".into(),
            subdomains: true
        }
    );
    assert!(d.matches("example.com"));
    assert!(d.matches("www.example.com"));
    assert!(d.matches("A.B.EXAMPLE.com."));
    assert!(!d.matches("badexample.com"));
    let exact = parse_domain("www.example.com").unwrap();
    assert!(exact.matches("www.example.com"));
    assert!(!exact.matches("a.www.example.com"));
    assert!(parse_domain(".").is_err());
    assert!(parse_domain("http://example.com/").is_err());
}

#[test]
fn ports() {
    assert_eq!(
        parse_port_range("80").unwrap(),
        PortRange {
            first: 80,
            last: 80
        }
    );
    let r = parse_port_range("1025-65535").unwrap();
    assert!(r.contains(1025) && r.contains(65535) && !r.contains(1024));
    assert!(parse_port_range("80-70").is_err());
    assert!(parse_port_range("http").is_err());
    assert!(parse_port_range("70000").is_err());
}

fn load(text: &str) -> crate::config::Loaded {
    load_str(text, "t.conf", &LoadOptions::default())
}

#[test]
fn acl_values_accumulate_across_lines() {
    let l = load(
        "acl Safe_ports port 80 # http\nacl Safe_ports port 1025-65535\nacl safe_ports port 443\n",
    );
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let acl = l.config.acl("Safe_ports").unwrap();
    assert_eq!(acl.location, Location::new("t.conf", 1));
    let AclData::Port(ports) = &acl.data else {
        panic!("{acl:?}")
    };
    let got: Vec<(u16, u16, usize)> = ports
        .iter()
        .map(|p| (p.first, p.last, p.location.line))
        .collect();
    assert_eq!(got, [(80, 80, 1), (1025, 65535, 2), (443, 443, 3)]);
}

#[test]
fn redefining_with_another_type_is_an_error() {
    let l = load("acl x src 10.0.0.1\nacl x dst 10.0.0.2\n");
    let errors: Vec<_> = l.errors().collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location.line, 2);
    assert!(
        errors[0]
            .message
            .contains("already defined with type src at t.conf:1"),
        "{}",
        errors[0]
    );
}

#[test]
fn builtins_can_be_added_to_with_a_warning() {
    let l = load("acl all src 0.0.0.0/0.0.0.0\nacl localhost src 127.0.0.1/32\nacl CONNECT method CONNECT\nacl manager proto cache_object\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let warnings: Vec<_> = l.warnings().map(|w| w.location.line).collect();
    assert_eq!(warnings, [1, 2, 4]);
    let AclData::Src(all) = &l.config.acl("all").unwrap().data else {
        panic!()
    };
    assert_eq!(all.len(), 2);
    assert_eq!(l.config.acl("manager").unwrap().data, AclData::Manager);
}

#[test]
fn dstdomain_flags_and_bad_flags() {
    let l = load("acl d dstdomain -n -i .a.org b.org\nacl s src -i 10.0.0.0/8\n");
    let AclData::DstDomain {
        entries, no_lookup, ..
    } = &l.config.acl("d").unwrap().data
    else {
        panic!()
    };
    assert!(*no_lookup);
    assert_eq!(entries.len(), 2);
    let errors: Vec<_> = l.errors().collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]
        .message
        .contains("-i is not supported by ACL type src"));
}

#[test]
fn dstdomain_overlaps_warn() {
    let l = load(
        "acl d dstdomain .example.com www.example.com .a.example.com example.com .example.com\n",
    );
    let w: Vec<String> = l.warnings().map(|d| d.message.clone()).collect();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w.iter().any(|m| m.contains("listed twice")));
    assert!(w
        .iter()
        .any(|m| m.contains("\"www.example.com\" is already matched by \".example.com\"")));
}

#[test]
fn production_acl_types_load_for_access_rules() {
    let l = load(concat!(
        "acl ua browser -i ^Mozilla\n",
        "acl ref referer_regex ^http://intranet/\n",
        "acl tok req_header X-Token -i ^abc\n",
        "acl tok req_header x-token def\n",
        "acl rh rep_header Content-Type ^text/\n",
        "acl st http_status 200 300-399 500-\n",
        "acl work time MTWHF 08:00-12:00 13:00-17:30\n",
        "acl weekend time SA\n",
        "acl many maxconn 10\n",
        "acl names srcdomain .example.com\n",
        "acl mac arp 00:1a:2B:3c:4d:5e\n",
        "http_access allow ua ref tok work !weekend !many names mac\n",
        "http_reply_access deny rh st\n",
        "http_access deny st\n",
    ));
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    let w: Vec<_> = l
        .warnings()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, 14);
    assert!(w[0].1.contains("it never matches here"), "{}", w[0].1);
    assert_eq!(l.config.http_access.len(), 2);
    assert_eq!(l.config.http_reply_access.len(), 1);
    let type_of = |name: &str| l.config.acl(name).unwrap().data.type_name().to_string();
    for (name, t) in [
        ("ua", "browser"),
        ("ref", "referer_regex"),
        ("tok", "req_header"),
        ("rh", "rep_header"),
        ("st", "http_status"),
        ("work", "time"),
        ("many", "maxconn"),
        ("names", "srcdomain"),
        ("mac", "arp"),
    ] {
        assert_eq!(type_of(name), t);
    }
    let AclData::ReqHeader { header, patterns } = &l.config.acl("tok").unwrap().data else {
        panic!()
    };
    assert_eq!(header, "x-token");
    assert_eq!(patterns.len(), 2);
    assert!(patterns[0].case_insensitive && !patterns[1].case_insensitive);
    let AclData::Time(specs) = &l.config.acl("work").unwrap().data else {
        panic!()
    };
    let weekdays = 0b0011_1110;
    assert_eq!(
        specs.iter().map(|s| s.value).collect::<Vec<_>>(),
        [
            TimeSpec {
                days: weekdays,
                start: 480,
                end: 720
            },
            TimeSpec {
                days: weekdays,
                start: 780,
                end: 1050
            },
        ]
    );
    assert!(specs[0].matches(1, 480) && specs[0].matches(5, 720));
    assert!(!specs[0].matches(0, 600) && !specs[0].matches(2, 721));
    let AclData::Time(weekend) = &l.config.acl("weekend").unwrap().data else {
        panic!()
    };
    assert!(weekend[0].matches(6, 0) && weekend[0].matches(0, 1439));
    assert!(!weekend[0].matches(3, 600));
    let AclData::HttpStatus(st) = &l.config.acl("st").unwrap().data else {
        panic!()
    };
    let got: Vec<(u16, u16)> = st.iter().map(|r| (r.first, r.last)).collect();
    assert_eq!(got, [(200, 200), (300, 399), (500, 999)]);
    let AclData::Arp(macs) = &l.config.acl("mac").unwrap().data else {
        panic!()
    };
    assert_eq!(macs[0].value, [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
}

#[test]
fn bad_values_of_production_acl_types_are_errors_at_their_line() {
    let l = load(concat!(
        "acl t1 time MX\n",
        "acl t2 time 17:00-08:00\n",
        "acl t3 time 25:00-26:00\n",
        "acl s1 http_status 2xx\n",
        "acl s2 http_status 500-400\n",
        "acl m maxconn many\n",
        "acl a arp 00:11:22:33:44\n",
        "acl h1 req_header\n",
        "acl h2 rep_header X-A\n",
        "acl b browser (unclosed\n",
        "acl d srcdomain http://x/\n",
        "acl r referer_regex [\n",
        "acl h3 req_header Bad:Name x\n",
    ));
    let errors: Vec<(usize, String)> = l
        .errors()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    let expect = [
        (1, "'X' is not a day letter"),
        (2, "the time range is reversed"),
        (3, "is not a time range h1:m1-h2:m2"),
        (4, "is not an HTTP status code"),
        (5, "the range starts after it ends"),
        (6, "maxconn takes a number of connections"),
        (7, "is not a MAC address"),
        (8, "req_header needs a header name"),
        (9, "rep_header X-A needs a regular expression"),
        (10, "bad regular expression"),
        (11, "is not a domain name"),
        (12, "bad regular expression"),
        (13, "is not a header name"),
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for ((line, message), (want_line, want)) in errors.iter().zip(expect) {
        assert_eq!(*line, want_line, "{message}");
        assert!(message.contains(want), "line {line}: {message}");
    }
}

#[test]
fn maxconn_takes_one_number_and_a_later_line_replaces_it() {
    let l = load("acl m maxconn 5 7\nacl m maxconn 3\n");
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    let w: Vec<_> = l
        .warnings()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].1.contains("takes one number"));
    let AclData::MaxConn(limit) = &l.config.acl("m").unwrap().data else {
        panic!()
    };
    assert_eq!((limit.value, limit.location.line), (3, 2));
}

#[test]
fn one_header_acl_tests_one_header() {
    let l = load("acl h req_header X-A a\nacl h req_header X-B b\n");
    let e: Vec<_> = l
        .errors()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 2);
    assert!(e[0].1.contains("cannot test another header"), "{}", e[0].1);
}

#[test]
fn other_types_are_kept_with_a_warning() {
    // (urlpath_regex, then browser, were the example here until cuttle
    // evaluated them.)
    let l = load("acl w rep_mime_type -i ^text/\nacl w rep_mime_type image/\n");
    assert!(!l.has_errors());
    let acl = l.config.acl("w").unwrap();
    let AclData::Other { acl_type, values } = &acl.data else {
        panic!()
    };
    assert_eq!(acl_type, "rep_mime_type");
    let v: Vec<&str> = values.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(v, ["-i", "^text/", "image/"]);
    // One warning per ACL, not per line.
    assert_eq!(l.warnings().count(), 1);
    assert!(l
        .warnings()
        .next()
        .unwrap()
        .message
        .contains("does not evaluate"));
}

#[test]
fn unknown_acl_type_is_an_error() {
    let l = load("acl x sorc 10.0.0.1\n");
    assert!(l
        .errors()
        .next()
        .unwrap()
        .message
        .contains("\"sorc\" is not an ACL type"));
}

#[test]
fn access_rules_keep_order_and_negation() {
    let l = load("acl a src 10.0.0.0/8\nhttp_access deny !a CONNECT\nhttp_access allow a\nhttp_access deny all\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let rules = &l.config.http_access;
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].action, Action::Deny);
    assert_eq!(
        rules[0].acls,
        [
            AclRef {
                name: "a".into(),
                negated: true,
                index: 6,
            },
            AclRef {
                name: "CONNECT".into(),
                negated: false,
                index: 5,
            }
        ]
    );
    assert_eq!(rules[1].location.line, 3);
    assert_eq!(rules[2].acls[0].name, "all");
}

#[test]
fn undefined_acl_in_rule_is_an_error_with_location() {
    let l = load("http_access allow nosuch\nicp_access allow later\nacl later src 10.0.0.1\n");
    let errors: Vec<_> = l.errors().collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].location, Location::new("t.conf", 1));
    assert!(
        errors[0]
            .message
            .contains("http_access: ACL \"nosuch\" is not defined"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[1].location.line, 2);
    assert!(
        errors[1].message.contains("defined later, at t.conf:3"),
        "{}",
        errors[1]
    );
    assert!(l.config.http_access.is_empty());
    assert!(l.diagnostics.iter().all(|d| d.severity == Severity::Error));
}

#[test]
fn rule_without_acls_or_with_bad_action() {
    let l = load("http_access allow\nhttp_access permit all\n");
    let d: Vec<_> = l
        .diagnostics
        .iter()
        .map(|d| (d.severity, d.location.line))
        .collect();
    assert_eq!(d, [(Severity::Warning, 1), (Severity::Error, 2)]);
}
