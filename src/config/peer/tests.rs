//! Unit tests of cache_peer lines, cache_peer_access and neighbor_type_domain.

use super::*;
use crate::config::{load_str, LoadOptions, Loaded};

fn load(text: &str) -> Loaded {
    load_str(text, "squid.conf", &LoadOptions::default())
}

fn one_peer(text: &str) -> CachePeer {
    let l = load(text);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(l.config.cache_peers.len(), 1);
    l.config.cache_peers[0].value.clone()
}

#[test]
fn basic_fields_and_defaults() {
    let p = one_peer("cache_peer Cache2.Example.NET sibling 3128 3130\n");
    assert_eq!(p.host, "cache2.example.net");
    assert_eq!(p.name, "Cache2.Example.NET");
    assert_eq!(p.peer_type, PeerType::Sibling);
    assert_eq!((p.http_port, p.icp_port), (3128, 3130));
    assert_eq!(p.weight, 1);
    assert_eq!(p.connect_fail_limit, 10);
    assert_eq!(p.connection_auth, ConnectionAuth::Auto);
    assert!(p.htcp.is_none() && !p.proxy_only && p.connect_timeout.is_none());
}

#[test]
fn every_flag_option() {
    let p = one_peer(
        "cache_peer p parent 80 0 proxy-only no-query no-digest closest-only background-ping \
             round-robin weighted-round-robin carp userhash sourcehash default multicast-responder \
             multicast-siblings allow-miss originserver auth-no-keytab no-netdb-exchange no-delay no-tproxy\n",
    );
    assert!(p.proxy_only && p.no_query && p.no_digest && p.closest_only && p.background_ping);
    assert!(p.round_robin && p.weighted_round_robin && p.carp && p.userhash && p.sourcehash);
    assert!(p.default_parent && p.multicast_responder && p.multicast_siblings && p.allow_miss);
    assert!(p.originserver && p.auth_no_keytab && p.no_netdb_exchange && p.no_delay && p.no_tproxy);
}

#[test]
fn valued_options() {
    let p = one_peer(
        "cache_peer p parent 3128 3130 weight=5 basetime=20 connect-timeout=2 connect-fail-limit=3 \
             max-conn=100 standby=4 name=up1 forceddomain=www.example.com login=u:p%20w \
             connection-auth=off digest-url=http://p/d carp carp-key=host,path \
             front-end-https=auto\n",
    );
    assert_eq!(p.weight, 5);
    assert_eq!(p.basetime, Duration::from_millis(20));
    assert_eq!(p.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(p.connect_fail_limit, 3);
    assert_eq!((p.max_conn, p.standby), (Some(100), Some(4)));
    assert_eq!(p.name, "up1");
    assert_eq!(p.forceddomain.as_deref(), Some("www.example.com"));
    assert_eq!(p.login, Some(PeerLogin::Credentials("u:p%20w".into())));
    assert_eq!(p.connection_auth, ConnectionAuth::Off);
    assert_eq!(p.digest_url.as_deref(), Some("http://p/d"));
    assert_eq!(
        p.carp_key,
        Some(CarpKey {
            host: true,
            path: true,
            ..CarpKey::default()
        })
    );
    assert_eq!(p.front_end_https, Some(FrontEndHttps::Auto));
}

/// A scratch directory with a throwaway certificate and key (rcgen),
/// removed when dropped.
struct Pem {
    dir: std::path::PathBuf,
}

impl Pem {
    fn new(tag: &str) -> Pem {
        let dir =
            std::env::temp_dir().join(format!("cuttle-peer-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("client.key"), cert.signing_key.serialize_pem()).unwrap();
        Pem { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Pem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Squid 5.7's TLS options of cache_peer, and their legacy ssl* names,
/// typed; DONT_VERIFY_PEER is a loud warning naming the peer.
#[test]
fn tls_options_are_typed_in_both_spellings() {
    let pem = Pem::new("typed");
    let (ca, cert, key) = (
        pem.path("ca.pem"),
        pem.path("client.pem"),
        pem.path("client.key"),
    );
    let l = load(&format!(
        "cache_peer a parent 443 0 originserver tls tls-cafile={ca} tls-domain=www.example.com tls-cert={cert} tls-key={key} tls-min-version=1.3 tls-no-default-ca\n\
         cache_peer b parent 3128 0 ssl sslcafile={ca} ssldomain=b.example.com sslcert={cert} sslkey={key} sslflags=DONT_VERIFY_PEER tls-default-ca=off\n\
         cache_peer c sibling 3128 0 tls-cafile={ca}\n\
         cache_peer d sibling 3128 0\n"
    ));
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let peers: Vec<&CachePeer> = l.config.cache_peers.iter().map(|p| &p.value).collect();
    let a = &peers[0];
    assert!(a.tls);
    assert_eq!(a.tls_options.cafiles, [std::path::PathBuf::from(&ca)]);
    assert_eq!(a.tls_options.domain.as_deref(), Some("www.example.com"));
    assert_eq!(a.tls_options.cert, Some(cert.clone().into()));
    assert_eq!(a.tls_options.key, Some(key.clone().into()));
    assert_eq!(
        a.tls_options.min_version,
        crate::config::TlsMinVersion::Tls13
    );
    assert!(!a.tls_options.default_ca && !a.tls_options.dont_verify_peer);
    let b = &peers[1];
    assert!(b.tls && b.tls_options.dont_verify_peer && !b.tls_options.default_ca);
    assert_eq!(b.tls_options.domain.as_deref(), Some("b.example.com"));
    assert_eq!(b.tls_options.cert, Some(cert.into()));
    // Any TLS option asks for TLS, as in Squid: never cleartext.
    assert!(peers[2].tls && peers[2].tls_options.default_ca);
    assert!(!peers[3].tls);
    let warnings: Vec<_> = l
        .warnings()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].0, 2);
    assert!(
        warnings[0]
            .1
            .contains("cache_peer b: DONT_VERIFY_PEER: its TLS certificate is NOT verified"),
        "{warnings:?}"
    );
}

/// TLS options cuttle does not implement stay errors with the line, so
/// no TLS setting is ever silently ignored (issue 17).
#[test]
fn unimplemented_tls_options_refuse_the_config() {
    let l = load(
        "cache_peer a parent 443 0 tls tls-capath=/etc/ssl/certs\n\
         cache_peer b parent 3128 0 ssl sslcipher=HIGH\n\
         cache_peer c sibling 3128 3130 tls-flags=DONT_VERIFY_DOMAIN\n\
         cache_peer e sibling 3128 3130 tls-min-version=2.0\n\
         cache_peer f sibling 3128 3130 tls-options=NO_TICKET\n\
         cache_peer d sibling 3128 3130\n",
    );
    let errors: Vec<_> = l
        .errors()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5],
        "{errors:?}"
    );
    assert!(
        errors[0]
            .1
            .contains("tls-capath: capath: cuttle does not implement this TLS option"),
        "{errors:?}"
    );
    assert!(
        errors[2].1.contains("flags=DONT_VERIFY_DOMAIN"),
        "{errors:?}"
    );
    assert_eq!(l.config.cache_peers.len(), 1);
}

/// A CA file, certificate or key that cannot be read is an error naming
/// the file (at check and at run: both load the config).
#[test]
fn unreadable_tls_files_are_errors_naming_them() {
    let pem = Pem::new("files");
    let ca = pem.path("ca.pem");
    let l = load(&format!(
        "cache_peer a parent 443 0 tls tls-cafile=/nonexistent/ca.pem\n\
         cache_peer b parent 443 0 tls tls-cert={ca} tls-key=/nonexistent/b.key\n\
         cache_peer c parent 443 0 tls tls-cafile={key}\n",
        key = pem.path("client.key")
    ));
    let errors: Vec<_> = l
        .errors()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "{errors:?}"
    );
    assert!(errors[0].1.contains("/nonexistent/ca.pem"), "{errors:?}");
    assert!(errors[1].1.contains("/nonexistent/b.key"), "{errors:?}");
    assert!(errors[2].1.contains("client.key"), "{errors:?}");
}

#[test]
fn login_variants() {
    assert_eq!(parse_login("PASSTHRU"), Some(PeerLogin::PassThru));
    assert_eq!(
        parse_login("NEGOTIATE:HTTP/p@R"),
        Some(PeerLogin::Negotiate(Some("HTTP/p@R".into())))
    );
    assert_eq!(
        parse_login("*:secret"),
        Some(PeerLogin::ClientUser(":secret".into()))
    );
    assert_eq!(parse_login(""), None);
}

#[test]
fn login_negotiate_is_kept_with_a_warning_naming_the_line() {
    let l = load("\ncache_peer p parent 3128 0 login=NEGOTIATE:HTTP/p@R\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let w: Vec<String> = l.warnings().map(|d| d.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(
            "squid.conf:2: warning: cache_peer: login=NEGOTIATE:HTTP/p@R: cuttle has no Kerberos"
        ),
        "{}",
        w[0]
    );
    assert_eq!(
        l.config.cache_peers[0].login,
        Some(PeerLogin::Negotiate(Some("HTTP/p@R".into())))
    );
    assert_eq!(
        load("cache_peer p parent 3128 0 login=PASS\n")
            .warnings()
            .count(),
        0
    );
}

#[test]
fn squid_normalisations() {
    let p = one_peer("cache_peer m multicast 3128 3130 weight=0 connect-fail-limit=0 ttl=300\n");
    assert_eq!(p.weight, 1);
    assert_eq!(p.connect_fail_limit, 10);
    assert_eq!(p.ttl, 128);
    // multicast implies no-digest and no-netdb-exchange.
    assert!(p.no_digest && p.no_netdb_exchange);
    assert_eq!(one_peer("cache_peer m multicast 3128 3130 ttl=-4\n").ttl, 0);
    assert_eq!(one_peer("cache_peer m parent 3128 0 weight=-7\n").weight, 1);
}

#[test]
fn htcp_options_comma_separated_and_deprecated_spelling() {
    let p = one_peer("cache_peer s sibling 3128 4827 htcp=oldsquid,no-purge-clr,forward-clr\n");
    assert_eq!(
        p.htcp,
        Some(HtcpOptions {
            oldsquid: true,
            no_purge_clr: true,
            forward_clr: true,
            ..Default::default()
        })
    );
    assert_eq!(
        one_peer("cache_peer s sibling 3128 4827 htcp\n").htcp,
        Some(HtcpOptions::default())
    );
    let l = load("cache_peer s sibling 3128 4827 htcp-oldsquid htcp-only-clr\n");
    assert!(!l.has_errors());
    assert_eq!(l.warnings().count(), 2);
    let h = l.config.cache_peers[0].htcp.unwrap();
    assert!(h.oldsquid && h.only_clr);
}

#[test]
fn htcp_no_clr_with_only_clr_is_an_error() {
    let l = load("cache_peer s sibling 3128 4827 htcp=no-clr,only-clr\n");
    let e: Vec<_> = l.errors().collect();
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("no-clr and only-clr"));
    assert!(l.config.cache_peers.is_empty());
    assert!(load("cache_peer s sibling 3128 4827 htcp=bogus\n").has_errors());
}

#[test]
fn htcp_monitor_needs_the_cuttle_marker() {
    // Squid ignores MON: refused unless the admin says the peer is cuttle.
    let l = load("cache_peer s sibling 3128 4827 htcp=monitor\n");
    let e: Vec<_> = l.errors().collect();
    assert_eq!(e.len(), 1, "{:?}", l.diagnostics);
    assert!(
        e[0].message.contains("only cuttle answers"),
        "{}",
        e[0].message
    );
    assert!(e[0].message.contains("add the option `cuttle`"));
    let p = one_peer("cache_peer s sibling 3128 4827 htcp=monitor,no-clr cuttle\n");
    assert!(p.cuttle && p.htcp.is_some_and(|h| h.monitor && h.no_clr));
}

#[test]
fn htcp_monitor_limits() {
    let l = load("htcp_monitor_max_subscribers 8\nhtcp_monitor_max_lease 2 minutes\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(l.config.htcp_monitor_max_subscribers.value, 8);
    assert_eq!(
        l.config.htcp_monitor_max_lease.value,
        Duration::from_secs(120)
    );
    let l = load("htcp_monitor_max_lease 5 minutes\n");
    assert!(l
        .errors()
        .any(|e| e.message.contains("between 1 and 255 seconds")));
    let d = load("").config;
    assert_eq!(d.htcp_monitor_max_subscribers.value, 0, "off by default");
    assert_eq!(d.htcp_monitor_max_lease.value, Duration::from_secs(60));
}

#[test]
fn hashing_on_non_parents_is_an_error() {
    for opt in ["carp", "userhash", "sourcehash"] {
        let l = load(&format!("cache_peer s sibling 3128 3130 {opt}\n"));
        let e: Vec<_> = l.errors().collect();
        assert_eq!(e.len(), 1, "{opt}");
        assert!(
            e[0].message
                .contains(&format!("{opt} is only allowed on parent peers")),
            "{}",
            e[0]
        );
    }
}

#[test]
fn carp_key_requires_carp() {
    let l = load("cache_peer p parent 3128 0 carp-key=host\n");
    assert!(l
        .errors()
        .next()
        .unwrap()
        .message
        .contains("requires the carp option"));
    assert!(load("cache_peer p parent 3128 0 carp carp-key=host,bogus\n").has_errors());
}

#[test]
fn load_aware_goes_with_carp() {
    assert!(one_peer("cache_peer p parent 3128 0 carp load-aware\n").load_aware);
    assert!(!one_peer("cache_peer p parent 3128 0 carp\n").load_aware);
    let l = load("cache_peer p parent 3128 0 round-robin load-aware\n");
    let e: Vec<_> = l.errors().collect();
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("load-aware requires the carp option"));
}

#[test]
fn names_must_be_unique_case_insensitively() {
    let l = load("cache_peer a.example sibling 3128 3130\ncache_peer A.EXAMPLE parent 3128 0\ncache_peer A.EXAMPLE parent 3128 0 name=other\n");
    let e: Vec<_> = l.errors().collect();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].location.line, 2);
    assert!(
        e[0].message
            .contains("already used by the cache_peer at squid.conf:1"),
        "{}",
        e[0]
    );
    assert_eq!(l.config.cache_peers.len(), 2);
}

#[test]
fn bad_ports_and_types() {
    let l = load("cache_peer p parent x 3130\n");
    assert_eq!(
        l.errors().next().unwrap().to_string(),
        "squid.conf:1: error: cache_peer: http port \"x\" is not a port number or service name"
    );
    let l = load(
        "cache_peer p parnet 3128 3130\ncache_peer q parent 3128 70000\ncache_peer r parent 3128\n",
    );
    let lines: Vec<usize> = l.errors().map(|d| d.location.line).collect();
    assert_eq!(lines, [1, 2, 3]);
    assert!(l.config.cache_peers.is_empty());
    // Service names are accepted.
    let p = one_peer("cache_peer p parent http icp\n");
    assert_eq!((p.http_port, p.icp_port), (80, 3130));
}

#[test]
fn bad_option_values_and_unknown_options() {
    let l = load("cache_peer p parent 3128 0 weight=x connect-timeout=-1 connection-auth=maybe\n");
    assert_eq!(l.errors().count(), 3);
    let l = load("cache_peer p parent 3128 0 monitorurl=http://x/ sparkle\n");
    assert!(!l.has_errors());
    let w: Vec<_> = l.warnings().map(|d| d.message.clone()).collect();
    assert_eq!(w.len(), 2);
    assert!(w[0].contains("unknown option \"monitorurl=http://x/\""));
}

#[test]
fn standby_cannot_exceed_max_conn() {
    assert!(load("cache_peer p parent 3128 0 max-conn=2 standby=5\n").has_errors());
    assert!(!load("cache_peer p parent 3128 0 max-conn=5 standby=5\n").has_errors());
}

#[test]
fn cache_peer_access_and_type_domains() {
    let l = load(
        "acl n dstdomain .internal\ncache_peer 10.1.0.2 sibling 3128 3130 name=cache2\n\
             cache_peer_access CACHE2 deny n\ncache_peer_access cache2 allow all\n\
             neighbor_type_domain cache2 parent .Example.org\n",
    );
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let p = l.config.peer("cache2").unwrap();
    assert_eq!(p.access.len(), 2);
    assert_eq!(p.access[0].location.line, 3);
    assert_eq!(p.access[0].acls[0].name, "n");
    assert_eq!(p.type_domains[0].peer_type, PeerType::Parent);
    assert_eq!(p.type_domains[0].domains, [".example.org"]);
}

#[test]
fn cache_peer_access_needs_an_existing_peer() {
    let l = load("cache_peer_access nosuch allow all\ncache_peer_access late deny all\ncache_peer x parent 1 0 name=late\n");
    let e: Vec<_> = l.errors().collect();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].message.contains("no cache_peer named \"nosuch\""),
        "{}",
        e[0]
    );
    assert!(
        e[1].message.contains("defined later, at squid.conf:3"),
        "{}",
        e[1]
    );
}

#[test]
fn public_url_and_no_redirect_marker() {
    let p =
        one_peer("cache_peer b sibling 3128 3130 public-url=https://b.example.com:8443/mirror/\n");
    assert_eq!(
        p.public_url.as_deref(),
        Some("https://b.example.com:8443/mirror")
    );
    assert!(!p.no_redirect_marker);
    let p = one_peer(
        "cache_peer s sibling 3128 3130 public-url=http://s.example.com no-redirect-marker\n",
    );
    assert_eq!(p.public_url.as_deref(), Some("http://s.example.com"));
    assert!(p.no_redirect_marker);
    assert!(one_peer("cache_peer c sibling 3128 3130\n")
        .public_url
        .is_none());
}

#[test]
fn bad_public_urls_are_errors_naming_the_line() {
    for bad in [
        "ftp://b.example.com",
        "b.example.com",
        "/path",
        "http://b.example.com/?x=1",
        "http://b.example.com/#top",
    ] {
        let l = load(&format!(
            "# a mesh\ncache_peer b sibling 3128 3130 public-url={bad}\n"
        ));
        let e: Vec<_> = l.errors().collect();
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].location.line, 2, "{bad}");
        assert!(e[0].message.contains("public-url="), "{}", e[0]);
    }
    // On a parent it is accepted and never used: said so.
    let l = load("cache_peer p parent 3128 0 public-url=http://p.example.com\n");
    assert!(!l.has_errors());
    assert!(l
        .warnings()
        .any(|w| w.message.contains("never redirected to")));
}
