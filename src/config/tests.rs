//! The config reader's own tests: locations, defaults, files, limits.

use super::*;

#[test]
fn diagnostic_display_names_file_and_line() {
    let d = Diagnostic {
        severity: Severity::Error,
        location: Location::new("squid.conf", 12),
        message: "cache_peer: http port \"x\" is not a port number or service name".into(),
    };
    assert_eq!(
        d.to_string(),
        "squid.conf:12: error: cache_peer: http port \"x\" is not a port number or service name"
    );
    let w = Diagnostic {
        severity: Severity::Warning,
        location: Location::new("/etc/squid/squid.conf", 3),
        message: "m".into(),
    };
    assert_eq!(w.to_string(), "/etc/squid/squid.conf:3: warning: m");
    let whole = Diagnostic {
        severity: Severity::Error,
        location: Location::new("missing.conf", 0),
        message: "m".into(),
    };
    assert_eq!(whole.to_string(), "missing.conf: error: m");
}

#[test]
fn defaults_are_squids() {
    let c = Config::default();
    assert_eq!(c.icp_port.value, 0);
    assert_eq!(c.htcp_port.value, 0);
    assert!(!c.icp_port.is_set());
    assert!(c.http_ports.is_empty());
    assert_eq!(c.cache_mem.value, 256 * MB);
    assert_eq!(c.maximum_object_size.value, 4 * MB);
    assert_eq!(c.dead_peer_timeout.value, Duration::from_secs(10));
    assert_eq!(c.icp_query_timeout.value, Duration::ZERO);
    assert_eq!(c.max_stale.value, Duration::from_secs(604_800));
    for name in [
        "all",
        "manager",
        "localhost",
        "to_localhost",
        "to_linklocal",
        "CONNECT",
    ] {
        assert!(c.acl(name).is_some(), "built-in ACL {name}");
    }
}

#[test]
fn missing_top_file_is_an_error_naming_it() {
    let loaded = load_file(
        Path::new("/nonexistent/cuttle/squid.conf"),
        &LoadOptions::default(),
    );
    assert!(loaded.has_errors());
    let d = &loaded.diagnostics[0];
    assert_eq!(d.location.file, Path::new("/nonexistent/cuttle/squid.conf"));
    assert!(
        d.to_string().contains("/nonexistent/cuttle/squid.conf"),
        "{d}"
    );
    assert!(d.message.contains("cannot open"), "{d}");
}

/// Words that exercise every parser, glued into lines at random.
const VOCABULARY: &[&str] = &[
    "acl",
    "a",
    "b",
    "src",
    "dst",
    "dstdomain",
    "port",
    "method",
    "url_regex",
    "-n",
    "-i",
    "http_access",
    "icp_access",
    "allow",
    "deny",
    "!a",
    "!",
    "all",
    "cache_peer",
    "parent",
    "sibling",
    "multicast",
    "3128",
    "0",
    "x",
    "htcp=no-clr,only-clr",
    "carp",
    "carp-key=host",
    "weight=0",
    "ttl=999",
    "name=a",
    "cache_peer_access",
    "http_port",
    "[::1]:3128",
    "accel",
    "vport=80",
    "defaultsite=x",
    "cache_dir",
    "rock",
    "ufs",
    "/d",
    "16",
    "256",
    "slot-size=0",
    "refresh_pattern",
    "(",
    ".",
    "20%",
    "max-stale=9",
    "access_log",
    "none",
    "daemon:/x",
    "logformat=q",
    "logformat",
    "q",
    "%ts",
    "cache_mem",
    "10",
    "MB",
    "dead_peer_timeout",
    "seconds",
    "decades",
    "icp_port",
    "on",
    "include",
    "/nonexistent/*.conf",
    "if",
    "true",
    "else",
    "endif",
    "\"",
    "\"q\"",
    "#",
    "\\",
    "parameters(\"/x\")",
    "10.0.0.0/8",
    "1.2.3.4-1.2.3.9/255.0.0.0",
    "fc00::/7",
    ".example.com",
    "1025-65535",
    "\u{e9}",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_loads_without_panicking(text in "\\PC{0,300}") {
        let loaded = load_str_sandboxed(&text, "fuzz.conf");
        proptest::prop_assert_eq!(
            loaded.has_errors(),
            loaded.diagnostics.iter().any(|d| d.severity == Severity::Error)
        );
    }

    #[test]
    fn token_soup_loads_without_panicking(
        lines in proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(VOCABULARY), 0..8), 0..12)
    ) {
        let text: String = lines.iter().map(|l| l.join(" ") + "\n").collect();
        let loaded = load_str_sandboxed(&text, "fuzz.conf");
        for d in &loaded.diagnostics {
            // Every diagnostic points into the input (or at the whole file).
            proptest::prop_assert!(d.location.line <= lines.len());
        }
    }
}

#[test]
fn large_inputs_stay_linear() {
    // Would take minutes if any per-line lookup were quadratic.
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!(
            "cache_dir rock /d{i} 1\nlogformat f{i} %ts\nacl a{i} src 10.0.0.{}\ncache_peer p{i} parent 3128 0\nhttp_access allow a{i}\n",
            i % 256
        ));
    }
    let loaded = load_str_sandboxed(&text, "big.conf");
    assert!(!loaded.has_errors());
    assert_eq!(loaded.config.cache_dirs.len(), 20_000);
    assert_eq!(loaded.config.cache_peers.len(), 20_000);
    assert_eq!(loaded.config.http_access.len(), 20_000);
}

#[test]
fn sandboxed_loading_reads_no_file() {
    let loaded = load_str_sandboxed(
        "include /etc/hostname\nacl w dstdomain \"/etc/hostname\"\n",
        "t.conf",
    );
    let errors: Vec<_> = loaded.errors().collect();
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| e.message.contains("file access is disabled")));
}

#[test]
fn setting_records_location() {
    let loaded = load_str(
        "icp_port 3130\n\nhtcp_port 4827\n",
        "t.conf",
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.config.icp_port.value, 3130);
    assert_eq!(
        loaded.config.icp_port.location,
        Some(Location::new("t.conf", 1))
    );
    assert_eq!(
        loaded.config.htcp_port.location,
        Some(Location::new("t.conf", 3))
    );
}
