//! Every squid.conf sample under fixtures/squid-conf loads without errors, and its content comes out typed and located; plus file:line reporting through real files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cuttle::config::{
    load_file, AccessRule, AclData, AclRef, Action, CacheDirType, Config, Diagnostic, HtcpOptions,
    ListenAddr, LoadOptions, Loaded, LogDestination, PeerType, PortMode, ReplacementPolicy,
    Severity, VPort,
};

const MIB: u64 = 1 << 20;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/squid-conf")
}

fn load(path: &Path, map: Vec<(PathBuf, PathBuf)>) -> Loaded {
    load_file(path, &LoadOptions { path_map: map })
}

fn assert_no_errors(loaded: &Loaded) {
    let errors: Vec<String> = loaded.errors().map(Diagnostic::to_string).collect();
    assert!(
        errors.is_empty(),
        "unexpected errors:\n{}",
        errors.join("\n")
    );
}

/// Rules as (action, "acl !acl ...") for compact comparison.
fn rules(list: &[cuttle::config::Located<AccessRule>]) -> Vec<(Action, String)> {
    list.iter()
        .map(|r| {
            let names: Vec<String> = r
                .acls
                .iter()
                .map(|a: &AclRef| format!("{}{}", if a.negated { "!" } else { "" }, a.name))
                .collect();
            (r.action, names.join(" "))
        })
        .collect()
}

fn ports(config: &Config, acl: &str) -> Vec<(u16, u16)> {
    match &config.acl(acl).expect("acl defined").data {
        AclData::Port(p) => p.iter().map(|r| (r.first, r.last)).collect(),
        other => panic!("{acl} is {other:?}"),
    }
}

fn warning_lines(loaded: &Loaded, file: &str) -> Vec<usize> {
    loaded
        .warnings()
        .filter(|w| w.location.file.ends_with(file))
        .map(|w| w.location.line)
        .collect()
}

use Action::{Allow, Deny};

fn r(action: Action, acls: &str) -> (Action, String) {
    (action, acls.to_string())
}

#[test]
fn sibling_mesh() {
    let path = samples().join("sibling-mesh.conf");
    let loaded = load(&path, vec![]);
    assert_no_errors(&loaded);
    let c = &loaded.config;

    assert_eq!(c.http_ports.len(), 1);
    assert_eq!(c.http_ports[0].port, 3128);
    assert_eq!(c.http_ports[0].address, ListenAddr::Any);
    assert_eq!(c.http_ports[0].mode, PortMode::Forward);
    assert_eq!(c.icp_port.value, 3130);
    assert_eq!(c.htcp_port.value, 4827);
    assert_eq!(
        c.visible_hostname.value.as_deref(),
        Some("cache1.example.net")
    );

    // The four peers and their options.
    let names: Vec<&str> = c.cache_peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cache2", "cache3", "up1", "up2"]);
    let cache2 = c.peer("cache2").unwrap();
    assert_eq!(
        (cache2.host.as_str(), cache2.peer_type),
        ("10.1.0.2", PeerType::Sibling)
    );
    assert_eq!((cache2.http_port, cache2.icp_port), (3128, 3130));
    assert!(cache2.proxy_only && !cache2.no_digest && cache2.htcp.is_none());
    assert_eq!(cache2.location.line, 18);

    let cache3 = c.peer("cache3").unwrap();
    assert_eq!(cache3.icp_port, 4827);
    assert_eq!(
        cache3.htcp,
        Some(HtcpOptions {
            forward_clr: true,
            ..HtcpOptions::default()
        })
    );
    assert!(cache3.proxy_only && cache3.no_digest);

    let up1 = c.peer("up1").unwrap();
    assert_eq!(up1.peer_type, PeerType::Parent);
    assert!(up1.carp && up1.no_query);
    assert_eq!(up1.weight, 2);
    assert_eq!(up1.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(up1.connect_fail_limit, 10);
    assert_eq!(up1.icp_port, 0);

    let up2 = c.peer("up2").unwrap();
    assert!(up2.carp && up2.no_query);
    assert_eq!(up2.weight, 1);
    assert_eq!(up2.connect_fail_limit, 5);
    assert_eq!(up2.connect_timeout, None);

    // cache_peer_access and neighbor_type_domain attach to their peers.
    assert_eq!(rules(&cache2.access), [r(Deny, "nocache")]);
    assert_eq!(rules(&cache3.access), [r(Deny, "nocache")]);
    assert!(up1.access.is_empty());
    assert_eq!(cache2.type_domains.len(), 1);
    assert_eq!(cache2.type_domains[0].peer_type, PeerType::Parent);
    assert_eq!(cache2.type_domains[0].domains, [".example.org"]);

    // ACLs in definition order after Squid's built-ins.
    let defined: Vec<&str> = c
        .acls
        .iter()
        .filter(|a| !a.builtin)
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        defined,
        [
            "localnet",
            "siblings",
            "parents",
            "SSL_ports",
            "Safe_ports",
            "purge",
            "nocache"
        ]
    );
    assert_eq!(
        ports(c, "Safe_ports"),
        [(80, 80), (443, 443), (1025, 65535)]
    );
    let AclData::Src(localnet) = &c.acl("localnet").unwrap().data else {
        panic!()
    };
    assert!(localnet[0].contains("10.9.8.7".parse().unwrap()));
    assert!(localnet[1].contains("192.168.200.1".parse().unwrap()));
    let AclData::DstDomain { entries, .. } = &c.acl("nocache").unwrap().data else {
        panic!()
    };
    assert!(entries[0].matches("www.internal.example.net"));
    let AclData::Method(m) = &c.acl("purge").unwrap().data else {
        panic!()
    };
    assert_eq!(m[0].value, "PURGE");

    assert_eq!(
        rules(&c.http_access),
        [
            r(Deny, "!Safe_ports"),
            r(Deny, "CONNECT !SSL_ports"),
            r(Allow, "localhost manager"),
            r(Deny, "manager"),
            r(Allow, "purge localhost"),
            r(Deny, "purge"),
            r(Allow, "localnet"),
            r(Allow, "localhost"),
            r(Deny, "all"),
        ]
    );
    assert_eq!(c.http_access[0].location.line, 26);
    assert_eq!(rules(&c.icp_access), [r(Allow, "siblings"), r(Deny, "all")]);
    assert_eq!(
        rules(&c.htcp_access),
        [r(Allow, "siblings"), r(Deny, "all")]
    );
    assert_eq!(
        rules(&c.htcp_clr_access),
        [r(Allow, "siblings"), r(Deny, "all")]
    );
    assert_eq!(
        rules(&c.miss_access),
        [r(Deny, "siblings"), r(Allow, "all")]
    );
    assert_eq!(rules(&c.never_direct), [r(Allow, "!nocache")]);
    assert_eq!(rules(&c.always_direct), [r(Allow, "nocache")]);

    assert!(!c.prefer_direct.value && c.prefer_direct.is_set());
    assert!(c.nonhierarchical_direct.value);
    assert_eq!(c.icp_query_timeout.value, Duration::from_millis(2000));
    assert_eq!(
        c.maximum_icp_query_timeout.value,
        Duration::from_millis(2000)
    );
    assert_eq!(c.dead_peer_timeout.value, Duration::from_secs(10));
    assert_eq!(c.dead_peer_timeout.location.as_ref().unwrap().line, 51);
    assert!(c.icp_hit_stale.value && c.log_icp_queries.value);

    assert_eq!(c.cache_mem.value, 256 * MIB);
    assert_eq!(c.maximum_object_size_in_memory.value, 512 * 1024);
    assert_eq!(c.maximum_object_size.value, 64 * MIB);
    assert_eq!(c.cache_dirs.len(), 2);
    let rock = &c.cache_dirs[0];
    assert_eq!(rock.store_type, CacheDirType::Rock);
    assert_eq!(rock.path, "/var/spool/squid/rock");
    assert_eq!(rock.size_mb, 4096);
    assert_eq!(rock.slot_size, Some(16384));
    assert_eq!(rock.max_size, Some(1_048_576));
    assert_eq!(
        rock.location.line, 58,
        "a continued line keeps its first line number"
    );
    let aufs = &c.cache_dirs[1];
    assert_eq!(aufs.store_type, CacheDirType::Aufs);
    assert_eq!(
        (aufs.size_mb, aufs.l1, aufs.l2),
        (8192, Some(16), Some(256))
    );
    assert_eq!(aufs.min_size, Some(1_048_577));
    assert_eq!(
        c.cache_replacement_policy.value,
        ReplacementPolicy::HeapLfuda
    );
    assert_eq!(
        c.memory_replacement_policy.value,
        ReplacementPolicy::HeapGdsf
    );

    let patterns: Vec<(&str, bool, u64, u32, u64)> = c
        .refresh_patterns
        .iter()
        .map(|p| {
            (
                p.pattern.as_str(),
                p.case_insensitive,
                p.min.as_secs() / 60,
                p.percent,
                p.max.as_secs() / 60,
            )
        })
        .collect();
    assert_eq!(
        patterns,
        [
            ("^ftp:", false, 1440, 20, 10080),
            ("\\.(gif|png|jpg|jpeg|webp)$", true, 10080, 90, 43200),
            ("(/cgi-bin/|\\?)", true, 0, 0, 0),
            (".", false, 0, 20, 4320),
        ]
    );
    assert!(c.refresh_patterns[1].override_expire);
    assert!(c.refresh_patterns[1].regex.is_match("http://x/a.JPG"));

    assert!(c.collapsed_forwarding.value && c.digest_generation.value);
    assert_eq!(c.access_logs.len(), 1);
    assert_eq!(
        c.access_logs[0].destination,
        LogDestination::Daemon("/var/log/squid/access.log".into())
    );
    assert_eq!(c.access_logs[0].format, "squid");
    assert_eq!(c.shutdown_lifetime.value, Duration::from_secs(5));

    // 58 and 60: the rock and aufs dirs are kept in cuttle's own format;
    // then the obsolete refresh option (cache_log, 72, is used now).
    assert_eq!(warning_lines(&loaded, "sibling-mesh.conf"), [58, 60, 65]);
    assert_eq!(loaded.diagnostics.len(), 3);
    let w: Vec<String> = loaded.warnings().map(Diagnostic::to_string).collect();
    assert!(
        w[0].ends_with("Squid's cache files there are neither read nor removed; `cache_dir mmap` is the quiet spelling"),
        "{}",
        w[0]
    );
}

#[test]
fn multicast_accel() {
    let loaded = load(&samples().join("multicast-accel.conf"), vec![]);
    assert_no_errors(&loaded);
    // The only diagnostic: the rock dir is kept in cuttle's own format.
    assert_eq!(warning_lines(&loaded, "multicast-accel.conf"), [20]);
    assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
    let c = &loaded.config;
    let port = &c.http_ports[0];
    assert_eq!((port.port, port.mode), (80, PortMode::Accel));
    assert_eq!(port.defaultsite.as_deref(), Some("www.example.com"));
    assert!(port.vhost);
    assert_eq!(c.mcast_groups.len(), 1);
    assert_eq!(c.mcast_groups[0].value.to_string(), "239.128.16.128");
    assert_eq!(c.mcast_icp_query_timeout.value, Duration::from_millis(2000));

    assert_eq!(c.cache_peers.len(), 4);
    let group = &c.cache_peers[0];
    assert_eq!(group.peer_type, PeerType::Multicast);
    assert_eq!(group.ttl, 8);
    assert!(
        group.no_digest && group.no_netdb_exchange,
        "implied by multicast"
    );
    for p in &c.cache_peers[1..3] {
        assert_eq!(p.peer_type, PeerType::Sibling);
        assert!(p.multicast_responder && p.proxy_only);
    }
    let origin = c.peer("origin").unwrap();
    assert_eq!(origin.host, "origin.example.com");
    assert!(origin.originserver && origin.no_query);
    assert_eq!(rules(&origin.access), [r(Allow, "our_site")]);
    assert_eq!(rules(&c.miss_access), [r(Deny, "mesh")]);
    assert_eq!(c.cache_dirs[0].store_type, CacheDirType::Rock);
    assert_eq!(c.cache_dirs[0].size_mb, 2048);
}

#[test]
fn debian_default_with_conf_d() {
    let root = samples();
    let loaded = load(
        &root.join("debian-default.conf"),
        vec![("/etc/squid/conf.d".into(), root.join("conf.d"))],
    );
    assert_no_errors(&loaded);
    let c = &loaded.config;
    assert_eq!(c.http_ports.len(), 1);
    assert_eq!(c.http_ports[0].port, 3128);
    assert_eq!(
        ports(c, "Safe_ports"),
        [
            (80, 80),
            (21, 21),
            (443, 443),
            (70, 70),
            (210, 210),
            (1025, 65535),
            (280, 280),
            (488, 488),
            (591, 591),
            (777, 777)
        ]
    );
    assert_eq!(ports(c, "SSL_ports"), [(443, 443)]);
    let AclData::Src(localnet) = &c.acl("localnet").unwrap().data else {
        panic!()
    };
    assert_eq!(localnet.len(), 8);
    assert!(
        localnet[0].contains("0.1.2.3".parse().unwrap()),
        "0.0.0.1-0.255.255.255"
    );
    assert!(localnet[6].contains("fd00::1".parse().unwrap()), "fc00::/7");
    assert_eq!(
        rules(&c.http_access),
        [
            r(Deny, "!Safe_ports"),
            r(Deny, "CONNECT !SSL_ports"),
            r(Allow, "localhost manager"),
            r(Deny, "manager"),
            r(Allow, "localhost"),
            r(Deny, "all"),
        ]
    );
    let patterns: Vec<(&str, bool)> = c
        .refresh_patterns
        .iter()
        .map(|p| (p.pattern.as_str(), p.case_insensitive))
        .collect();
    assert_eq!(
        patterns,
        [
            ("^ftp:", false),
            ("^gopher:", false),
            ("(/cgi-bin/|\\?)", true),
            (".", false)
        ]
    );
    assert_eq!(c.refresh_patterns[3].max, Duration::from_secs(4320 * 60));
    // The include was read: its logfile_rotate comes from conf.d/debian.conf.
    assert_eq!(c.logfile_rotate.value, 0);
    let at = c.logfile_rotate.location.as_ref().map(ToString::to_string);
    assert!(
        at.as_deref()
            .is_some_and(|l| l.ends_with("conf.d/debian.conf:6")),
        "{at:?}"
    );
    let w: Vec<String> = loaded.warnings().map(Diagnostic::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].ends_with("debian-default.conf:4894: warning: coredump_dir: ignored: cuttle has no core-dump directory (the system's core_pattern decides where cores go); harmless"), "{}", w[0]);
    // Defaults stay Squid's.
    assert_eq!(c.icp_port.value, 0);
    assert!(c.cache_dirs.is_empty());
    assert_eq!(c.cache_mem.value, 256 * MIB);
}

#[test]
fn debian_default_without_the_map_still_loads() {
    // /etc/squid/conf.d/*.conf matching nothing is a warning (Squid would
    // refuse to start), not an error.
    let loaded = load(
        &samples().join("debian-default.conf"),
        vec![("/etc/squid/conf.d".into(), "/nonexistent/cuttle".into())],
    );
    assert_no_errors(&loaded);
    let warnings: Vec<String> = loaded.warnings().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("debian-default.conf:") && warnings[0].contains("matches no file"),
        "{warnings:?}"
    );
}

#[test]
fn wikimedia_labs_upload() {
    let loaded = load(&samples().join("wikimedia-labs-upload.conf"), vec![]);
    assert_no_errors(&loaded);
    let c = &loaded.config;
    assert_eq!(c.htcp_port.value, 4827);
    assert_eq!(c.icp_port.value, 0);
    assert_eq!(
        c.visible_hostname.value.as_deref(),
        Some("upload.beta.wmflabs.org")
    );
    assert_eq!(
        c.unique_hostname.value.as_deref(),
        Some("upload.beta.wmflabs.org")
    );
    let port = &c.http_ports[0];
    assert_eq!(port.port, 3128);
    assert_eq!(port.mode, PortMode::Accel, "vhost/vport imply accel");
    assert_eq!(port.vport, VPort::Fixed(80));
    assert!(port.vhost);

    assert_eq!(c.cache_peers.len(), 1);
    let p = &c.cache_peers[0];
    assert_eq!(p.name, "deployment-imagescaler01");
    assert_eq!(p.peer_type, PeerType::Parent);
    assert_eq!((p.http_port, p.icp_port), (80, 3130));
    assert!(p.originserver && p.carp && p.no_query && p.no_digest);
    assert_eq!(p.weight, 100);
    assert_eq!(p.connect_timeout, Some(Duration::from_secs(5)));
    assert_eq!(p.max_conn, Some(100));
    assert_eq!(rules(&p.access), [r(Allow, "thumbs"), r(Deny, "all")]);

    assert_eq!(c.negative_ttl.value, Duration::from_secs(300));
    assert_eq!(c.max_stale.value, Duration::from_secs(30 * 86_400));
    assert_eq!(c.dead_peer_timeout.value, Duration::from_secs(10));
    assert_eq!(
        c.icp_query_timeout.value,
        Duration::from_millis(20),
        "no unit = ms"
    );
    assert_eq!(c.cache_mem.value, 10_000 * MIB);
    assert_eq!(c.maximum_object_size.value, 110 * MIB);
    assert_eq!(c.maximum_object_size_in_memory.value, 100 * 1024);
    assert!(c.collapsed_forwarding.value);
    assert!(!c.digest_generation.value);
    assert!(!c.strip_query_terms.value);

    assert_eq!(c.cache_dirs.len(), 2);
    assert_eq!(c.cache_dirs[0].store_type, CacheDirType::Aufs);
    assert_eq!(c.cache_dirs[0].min_size, Some(524_288));
    assert_eq!(
        c.cache_dirs[1].store_type,
        CacheDirType::Other("coss".into())
    );
    let rp = &c.refresh_patterns[0];
    assert_eq!(
        (rp.min.as_secs(), rp.percent, rp.max.as_secs()),
        (300 * 60, 80, 5_184_000 * 60)
    );
    assert!(rp.ignore_reload);

    // cache_access_log is Squid's old name of access_log.
    assert_eq!(c.access_logs.len(), 1);
    assert_eq!(c.access_logs[0].destination, LogDestination::None);
    assert_eq!(c.logformats[0].name, "wikimedia");
    assert!(c.logformats[0]
        .format
        .starts_with("amssq47.esams.wikimedia.org %sn %ts.%03tu"));
    assert!(c.logformats[0].format.ends_with("%{User-Agent}>h"));

    // `acl all src 0.0.0.0/0.0.0.0` adds to Squid's built-in.
    let all = c.acl("all").unwrap();
    assert!(all.builtin);
    let AclData::Src(entries) = &all.data else {
        panic!()
    };
    assert_eq!(entries.len(), 2);
    let AclData::Src(tiertwo) = &c.acl("tiertwo").unwrap().data else {
        panic!()
    };
    assert_eq!(tiertwo.len(), 2);
    assert!(tiertwo[0].contains("10.4.0.77".parse().unwrap()));
    // url_regex and urlpath_regex are evaluated (compiled when loading).
    let AclData::UrlRegex(thumbs) = &c.acl("thumbs").unwrap().data else {
        panic!()
    };
    assert!(thumbs[0]
        .regex
        .is_match(b"http://upload.beta.wmflabs.org/wikipedia/commons/thumb/a/ab/x.png"));
    let AclData::UrlRegex(wpcontent) = &c.acl("wpcontent").unwrap().data else {
        panic!()
    };
    assert!(wpcontent.iter().all(|p| p.case_insensitive));
    let AclData::UrlPathRegex(wpstatic) = &c.acl("wpstatic").unwrap().data else {
        panic!()
    };
    assert_eq!(wpstatic.len(), 2);
    assert_eq!(rules(&c.never_direct), [r(Allow, "all")]);
    assert_eq!(
        rules(&c.htcp_clr_access),
        [r(Allow, "tiertwo"), r(Deny, "all")]
    );
    assert_eq!(
        rules(&c.http_access),
        [
            r(Allow, "purge tiertwo"),
            r(Allow, "tiertwo"),
            r(Deny, "all")
        ]
    );

    let warnings: Vec<String> = loaded.warnings().map(Diagnostic::to_string).collect();
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(
        has("wikimedia-labs-upload.conf:70: warning: cache_dir: type \"coss\" is not supported"),
        "{warnings:#?}"
    );
    assert!(has("wikimedia-labs-upload.conf:72: warning: cache_swap_log (old name of cache_swap_state): ignored: cuttle has no swap state file: its cache_dir keeps its own index; harmless"));
    assert!(has("wikimedia-labs-upload.conf:74: warning: refresh_pattern: option stale-while-revalidate=21600 is obsolete"));
    assert!(has(
        "wikimedia-labs-upload.conf:128: warning: acl: \"all\" is predefined by Squid"
    ));
    assert!(has(
        "wikimedia-labs-upload.conf:96: warning: client_db: ignored: cuttle has no client database (maxconn ACLs count connections whatever this says); harmless"
    ));
    // Whether ignoring a directive matters, per directive and value.
    for (line, text) in [
        (44, "uri_whitespace: ignored: a URL with whitespace is refused (400), as with deny; harmless"),
        (46, "request_body_max_size: ignored: this changes behaviour: request bodies are not limited in size (Squid refuses larger ones with 413)"),
        (49, "half_closed_clients: ignored: a client that half-closes its connection has it closed, as with off; harmless"),
        (50, "pipeline_prefetch: ignored: cuttle has no pipeline prefetch: pipelined requests are answered one at a time, in order; harmless"),
        (56, "quick_abort_min: ignored: this changes behaviour: when the client of a storable miss goes away, cuttle fetches the rest and stores it whatever its size (Squid's quick_abort_min -1)"),
        (84, "cache_effective_user: ignored: this changes behaviour: cuttle does not switch user or group; start it as the account it should run as"),
        (89, "debug_options: ignored: cuttle has no debug sections: its log detail is set with RUST_LOG; harmless"),
        (105, "log_mime_hdrs: ignored: access.log lines carry no headers, as with off; harmless"),
        (120, "cache_store_log: ignored: cuttle has no store log, as with none; harmless"),
    ] {
        let want = format!("wikimedia-labs-upload.conf:{line}: warning: {text}");
        assert!(has(&want), "{want}\nnot in {warnings:#?}");
    }
    assert!(!has("not used by cuttle yet"), "{warnings:#?}");
    assert!(!has("logfile_rotate"), "{warnings:#?}");
    assert!(has("wikimedia-labs-upload.conf:69: warning: cache_dir: type aufs is kept in cuttle's own memory-mapped format"));
    // 20: the five url_regex/urlpath_regex ACLs (145-156) no longer warn,
    // nor do read_timeout (52), read_ahead_gap (59), cache_mgr,
    // request_header_max_size (41) and request_timeout (53), which cuttle
    // now uses, nor logfile_rotate (106) and cache_log (115).
    assert_eq!(warnings.len(), 20, "{warnings:#?}");
    assert_eq!(c.read_timeout.value, Duration::from_secs(60));
    assert_eq!(c.read_ahead_gap.value, 64 * 1024);
    assert_eq!(c.request_timeout.value, Duration::from_secs(60));
    assert_eq!(c.client_idle_pconn_timeout.value, Duration::from_secs(600));
    assert_eq!(c.request_header_max_size.value, 15 * 1024);
    // The untyped directives are kept in order for later use.
    let first: Vec<&str> = c.other.iter().take(3).map(|o| o.name.as_str()).collect();
    assert_eq!(
        first,
        [
            "uri_whitespace",
            "request_body_max_size",
            "half_closed_clients"
        ]
    );
}

fn ualberta_map(u: &Path) -> Vec<(PathBuf, PathBuf)> {
    vec![
        ("/etc/squid/conf.d".into(), u.join("conf.d")),
        // Map the pattern itself: the directory also holds squid.conf,
        // which `*.conf` would match (see the include-loop test below).
        ("/tmp/squid-conf/*.conf".into(), u.join("99-peers.conf")),
        ("/etc/squid/whitelist.txt".into(), u.join("whitelist.txt")),
    ]
}

#[test]
fn ualberta_vulcan() {
    let u = samples().join("ualberta-vulcan");
    let loaded = load(&u.join("squid.conf"), ualberta_map(&u));
    assert_no_errors(&loaded);
    let c = &loaded.config;

    // The four siblings come from the rendered 99-peers.conf.
    let hosts: Vec<&str> = c.cache_peers.iter().map(|p| p.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["172.26.92.3", "172.26.92.4", "172.26.92.5", "172.26.92.6"]
    );
    for (i, p) in c.cache_peers.iter().enumerate() {
        assert_eq!(p.peer_type, PeerType::Sibling);
        assert_eq!((p.http_port, p.icp_port), (3128, 3130));
        assert!(p.proxy_only);
        assert!(p.location.file.ends_with("99-peers.conf"));
        assert_eq!(p.location.line, 7 + i);
    }

    // Whitelist domains come from the quoted file, each with its own line.
    let wl = c.acl("whitelist").unwrap();
    assert!(wl.location.file.ends_with("conf.d/01-whitelist.conf"));
    let AclData::DstDomain { entries, .. } = &wl.data else {
        panic!()
    };
    assert_eq!(entries.len(), 85);
    assert_eq!(entries[0].domain, "amii.ca");
    assert!(entries[0].subdomains);
    assert!(entries[0].location.file.ends_with("whitelist.txt"));
    assert_eq!(entries[0].location.line, 8);
    assert_eq!(entries[84].domain, "httpstat.us");
    assert!(entries.iter().any(|e| e.matches("files.pythonhosted.org")));
    assert!(!entries.iter().any(|e| e.matches("example.com")));

    // Values with trailing comments.
    assert_eq!(c.maximum_object_size.value, 10_240 * MIB);
    assert!(c
        .maximum_object_size
        .location
        .as_ref()
        .unwrap()
        .file
        .ends_with("02-cache.conf"));
    assert_eq!(c.cache_mem.value, 16_384 * MIB);
    assert_eq!(c.minimum_object_size.value, 0);
    assert!(c.minimum_object_size.is_set());
    let dir = &c.cache_dirs[0];
    assert_eq!(
        (dir.store_type.clone(), dir.path.as_str()),
        (CacheDirType::Aufs, "/var/lib/squid")
    );
    assert_eq!(
        (dir.size_mb, dir.l1, dir.l2),
        (500_000, Some(32), Some(512))
    );
    assert!(c.collapsed_forwarding.value);

    assert_eq!(c.http_ports[0].port, 3128);
    assert_eq!(c.icp_port.value, 3130);
    assert_eq!(rules(&c.icp_access), [r(Allow, "localnet"), r(Deny, "all")]);
    // http_access in file order, the includes' rules spliced in where included.
    assert_eq!(
        rules(&c.http_access),
        [
            r(Deny, "!Safe_ports"),
            r(Deny, "CONNECT !SSL_ports"),
            r(Allow, "localnet manager"),
            r(Allow, "localnet digest_request"),
            r(Allow, "localnet netdb_request"),
            r(Allow, "localhost"),
            r(Allow, "localhost purge"),
            r(Deny, "purge"),
            r(Allow, "localnet manager"),
            r(Allow, "vulcan_net"),
            r(Allow, "whitelist"),
            r(Deny, "all"),
            r(Deny, "all"),
        ]
    );
    let AclData::Dst {
        entries: vulcan, ..
    } = &c.acl("vulcan_net").unwrap().data
    else {
        panic!()
    };
    assert!(vulcan[0].contains("172.26.227.1".parse().unwrap()));
    assert!(!vulcan[0].contains("172.26.228.1".parse().unwrap()));

    // conf.d's 22 refresh patterns come before squid.conf's 8.
    assert_eq!(c.refresh_patterns.len(), 30);
    assert_eq!(c.refresh_patterns[0].pattern, "^/cvmfs/");
    assert_eq!(c.refresh_patterns[0].percent, 1);
    assert_eq!(
        c.refresh_patterns[0].max,
        Duration::from_secs(31_536_000 * 60)
    );
    assert_eq!(
        c.refresh_patterns[21].max,
        Duration::from_secs(604_800 * 60)
    );
    assert!(c.refresh_patterns[25].refresh_ims);
    assert_eq!(
        c.access_logs[0].destination,
        LogDestination::Stdio("/dev/stdout".into())
    );

    // 15: the url_regex ACLs at squid.conf:45 and :47 no longer warn, nor
    // pid_filename (72), cache_log (83) and max_filedescriptors
    // (02-cache.conf:35, squid.conf:75: cuttle sets its limit from it).
    assert_eq!(loaded.warnings().count(), 15);
    assert_eq!(c.max_filedescriptors.value, 65536);
    assert_eq!(
        warning_lines(&loaded, "02-cache.conf"),
        [10, 24, 25, 26, 27, 30, 31, 36, 37]
    );
    assert_eq!(
        warning_lines(&loaded, "squid.conf"),
        [69, 76, 77, 78, 79, 84]
    );
    let warnings: Vec<String> = loaded.warnings().map(Diagnostic::to_string).collect();
    let has = |needle: &str| warnings.iter().any(|w| w.ends_with(needle));
    for want in [
        "02-cache.conf:24: warning: workers: ignored: cuttle has no worker processes: one process uses every core; harmless",
        "02-cache.conf:25: warning: ipcache_size: ignored: cuttle has no IP or FQDN cache to size; harmless",
        "02-cache.conf:36: warning: client_persistent_connections: ignored: connections are persistent, as with on; harmless",
        "squid.conf:79: warning: client_lifetime: ignored: this changes behaviour: client connections are not closed after a lifetime (Squid closes them after this long, 1 day by default)",
        "squid.conf:84: warning: cache_store_log: ignored: this changes behaviour: cuttle has no store log; nothing is written to stdio:/dev/stderr",
    ] {
        assert!(has(want), "{want}\nnot in {warnings:#?}");
    }
}

#[test]
fn ualberta_directory_map_is_reported_as_an_include_loop() {
    // Mapping /tmp/squid-conf onto the sample directory makes `*.conf`
    // match squid.conf itself; that loop must be a clear error, not a hang.
    let u = samples().join("ualberta-vulcan");
    let mut map = ualberta_map(&u);
    map[1] = ("/tmp/squid-conf".into(), u.clone());
    let loaded = load(&u.join("squid.conf"), map);
    let errors: Vec<&Diagnostic> = loaded.errors().collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]
        .location
        .file
        .ends_with("ualberta-vulcan/squid.conf"));
    assert_eq!(errors[0].location.line, 55);
    assert!(
        errors[0].message.starts_with("include: include loop: "),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].message.ends_with("ualberta-vulcan/squid.conf"),
        "{}",
        errors[0]
    );
    // 99-peers.conf (sorted before squid.conf) was still read.
    assert_eq!(loaded.config.cache_peers.len(), 4);
}

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cuttle-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn unknown_directives_and_bad_values_name_file_and_line() {
    let dir = Scratch::new("diag");
    dir.write(
        "extra.conf",
        "# extra\n\nsparkle_mode on\ncache_peer p parent 3128 x\n",
    );
    let top = dir.write(
        "squid.conf",
        "http_port 3128\ninclude extra.conf\nworkers 4   # later\ncache_peer q parent x 0\nicp_port 3130\n",
    );
    let loaded = load(&top, vec![]);
    let shown: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect();
    let extra = dir.0.join("extra.conf").display().to_string();
    let main = top.display().to_string();
    assert_eq!(
        shown,
        [
            format!("{extra}:3: warning: sparkle_mode: not a Squid directive; ignored"),
            format!(
                "{extra}:4: error: cache_peer: icp port \"x\" is not a port number or service name"
            ),
            format!("{main}:3: warning: workers: ignored: cuttle has no worker processes: one process uses every core; harmless"),
            format!(
                "{main}:4: error: cache_peer: http port \"x\" is not a port number or service name"
            ),
        ]
    );
    assert!(loaded.has_errors());
    // Good lines around the bad ones are still used.
    assert_eq!(loaded.config.icp_port.value, 3130);
    assert_eq!(loaded.config.http_ports.len(), 1);
    assert_eq!(
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count(),
        2
    );
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let path = samples().join("no-such.conf");
    let loaded = load(&path, vec![]);
    assert!(loaded.has_errors());
    let shown = loaded.diagnostics[0].to_string();
    assert!(
        shown.starts_with(&format!("{}: error: cannot open", path.display())),
        "{shown}"
    );
}
