//! Unit tests of directive dispatch and the single-valued settings.

use super::*;
use std::time::Duration;

use crate::config::ReplacementPolicy;
use crate::config::{load_str, LoadOptions, Loaded};

fn load(text: &str) -> Loaded {
    load_str(text, "squid.conf", &LoadOptions::default())
}

#[test]
fn mcast_groups_cuttle_cannot_receive_warn_at_load() {
    let l = load("udp_incoming_address 10.0.0.5\nmcast_groups 239.1.2.3 ff0e::1\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let w: Vec<(usize, String)> = l
        .warnings()
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert_eq!(w[0].0, 2);
    assert!(
        w[0].1.contains("ff0e::1: cuttle joins IPv4 groups only"),
        "{}",
        w[0].1
    );
    assert_eq!(w[1].0, 1);
    assert!(
        w[1].1
            .contains("receives no mcast_groups traffic on Linux; leave it unset"),
        "{}",
        w[1].1
    );
    // Unbound, or no groups: nothing to say.
    assert_eq!(load("mcast_groups 239.1.2.3\n").warnings().count(), 0);
    assert_eq!(
        load("udp_incoming_address 10.0.0.5\n").warnings().count(),
        0
    );
}

#[test]
fn unknown_and_unused_directives_are_worded_differently() {
    let l = load("coredump_dir /var/spool/squid\nfrobnicate 1\ncache_swap_log /x/%s\nhttpd_accel_host x\nHTTP_PORT 3128\nlogfile_rotate 3\nwccp2_router 10.0.0.1\nclient_persistent_connections off\n");
    assert!(!l.has_errors());
    let w: Vec<String> = l.warnings().map(|d| d.to_string()).collect();
    assert_eq!(
        w,
        [
            "squid.conf:1: warning: coredump_dir: ignored: cuttle has no core-dump directory (the system's core_pattern decides where cores go); harmless",
            "squid.conf:2: warning: frobnicate: not a Squid directive; ignored",
            "squid.conf:3: warning: cache_swap_log (old name of cache_swap_state): ignored: cuttle has no swap state file: its cache_dir keeps its own index; harmless",
            "squid.conf:4: warning: httpd_accel_host: obsolete Squid directive, removed from Squid; ignored (delete the line)",
            "squid.conf:5: warning: HTTP_PORT: not a Squid directive; ignored (directive names are case-sensitive: did you mean http_port?)",
            // logfile_rotate (6) is known: no warning.
            "squid.conf:7: warning: wccp2_router: ignored: cuttle does not implement it; check that this config does not rely on it",
            "squid.conf:8: warning: client_persistent_connections: ignored: this changes behaviour: connections stay persistent as with on",
        ]
    );
    let kept: Vec<(&str, &DirectiveStatus)> = l
        .config
        .other
        .iter()
        .map(|o| (o.name.as_str(), &o.status))
        .collect();
    assert_eq!(kept[0], ("coredump_dir", &DirectiveStatus::NotUsed));
    assert_eq!(kept[1], ("frobnicate", &DirectiveStatus::Unknown));
    assert_eq!(l.config.other[0].args, ["/var/spool/squid"]);
}

#[test]
fn typed_aliases_are_read_with_a_warning() {
    let l = load("udp_port 3130\ncache_access_log none\n");
    assert!(!l.has_errors());
    assert_eq!(l.config.icp_port.value, 3130);
    assert_eq!(l.config.access_logs.len(), 1);
    assert_eq!(l.warnings().count(), 2);
}

#[test]
fn read_ahead_gap_is_a_size_with_squids_default() {
    assert_eq!(Config::default().read_ahead_gap.value, 16 * 1024);
    let l = load("read_ahead_gap 64 KB\n");
    assert!(
        !l.has_errors() && l.warnings().count() == 0,
        "{:?}",
        l.diagnostics
    );
    assert_eq!(l.config.read_ahead_gap.value, 64 * 1024);
}

#[test]
fn client_connection_limits() {
    let d = Config::default();
    assert_eq!(d.request_start_timeout.value, Duration::from_secs(300));
    assert_eq!(d.request_timeout.value, Duration::from_secs(300));
    assert_eq!(d.client_idle_pconn_timeout.value, Duration::from_secs(120));
    assert_eq!(d.request_header_max_size.value, 64 * 1024);
    assert_eq!(d.reply_header_max_size.value, 64 * 1024);
    let l = load(
        "request_start_timeout 1 second\nrequest_timeout 2 minutes\n\
             persistent_request_timeout 30 seconds\nrequest_header_max_size 8 KB\n\
             reply_header_max_size 1 MB\n",
    );
    assert!(!l.has_errors());
    // Only the old name persistent_request_timeout is worth a word.
    assert_eq!(l.warnings().count(), 1, "{:?}", l.diagnostics);
    assert_eq!(l.config.request_start_timeout.value, Duration::from_secs(1));
    assert_eq!(l.config.request_timeout.value, Duration::from_secs(120));
    assert_eq!(
        l.config.client_idle_pconn_timeout.value,
        Duration::from_secs(30)
    );
    assert_eq!(l.config.request_header_max_size.value, 8 * 1024);
    assert_eq!(l.config.reply_header_max_size.value, 1024 * 1024);
}

#[test]
fn scalar_settings() {
    let l = load(
        "icp_query_timeout 20\ndead_peer_timeout  10 seconds\nmax_stale 1 month\nnegative_ttl 5 minutes\n\
             cache_mem 16384 MB\nmaximum_object_size 10240 MB           # 10GB\nicp_hit_stale on\n\
             prefer_direct disable\ncache_replacement_policy heap LFUDA\nvisible_hostname cache1.example.net\n\
             mcast_groups 239.128.16.128\noffline_mode on\nquery_icmp on\nforward_max_tries 3\nretry_on_error on\n",
    );
    assert!(
        !l.has_errors() && l.warnings().count() == 0,
        "{:?}",
        l.diagnostics
    );
    let c = &l.config;
    assert_eq!(c.icp_query_timeout.value, Duration::from_millis(20));
    assert_eq!(c.dead_peer_timeout.value, Duration::from_secs(10));
    assert_eq!(
        c.dead_peer_timeout.location,
        Some(Location::new("squid.conf", 2))
    );
    assert_eq!(c.max_stale.value, Duration::from_secs(30 * 86_400));
    assert_eq!(c.negative_ttl.value, Duration::from_secs(300));
    assert_eq!(c.cache_mem.value, 16384 << 20);
    assert_eq!(c.maximum_object_size.value, 10240 << 20);
    assert!(c.icp_hit_stale.value);
    assert!(c.offline_mode.value && !Config::default().offline_mode.value);
    assert_eq!(c.forward_max_tries.value, 3);
    assert_eq!(Config::default().forward_max_tries.value, 25);
    assert!(c.retry_on_error.value && !Config::default().retry_on_error.value);
    assert!(c.query_icmp.value && !Config::default().query_icmp.value);
    assert_eq!(c.query_icmp.location, Some(Location::new("squid.conf", 13)));
    assert!(!c.prefer_direct.value && c.prefer_direct.is_set());
    assert_eq!(
        c.cache_replacement_policy.value,
        ReplacementPolicy::HeapLfuda
    );
    assert_eq!(
        c.visible_hostname.value.as_deref(),
        Some("cache1.example.net")
    );
    assert_eq!(
        c.mcast_groups[0].value,
        "239.128.16.128".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn udp_incoming_address_is_an_ip_or_any() {
    let l = load("udp_incoming_address 127.0.2.2\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(
        l.config.udp_incoming_address.value,
        Some("127.0.2.2".parse().unwrap())
    );
    for any in ["0.0.0.0", "any_addr", "::"] {
        let l = load(&format!("udp_incoming_address {any}\n"));
        assert!(!l.has_errors(), "{any}: {:?}", l.diagnostics);
        assert_eq!(l.config.udp_incoming_address.value, None, "{any}");
        assert!(l.config.udp_incoming_address.is_set());
    }
    let l = load("udp_incoming_address cache.example\n");
    assert!(l.has_errors());
    assert!(!l.config.udp_incoming_address.is_set());
}

#[test]
fn last_setting_wins() {
    let l = load("icp_port 3130\nicp_port 3131\n");
    assert_eq!(l.config.icp_port.value, 3131);
    assert_eq!(l.config.icp_port.location.as_ref().unwrap().line, 2);
}

#[test]
fn bad_values_are_errors_with_file_and_line() {
    let l = load("icp_port x\nhtcp_port\ndead_peer_timeout 10 parsecs\ncache_mem lots\nicp_hit_stale maybe\nvisible_hostname a/b\nmcast_groups 10.0.0.1\ncache_replacement_policy random\n");
    let e: Vec<String> = l.errors().map(|d| d.to_string()).collect();
    assert_eq!(e.len(), 8, "{e:?}");
    assert_eq!(
        e[0],
        "squid.conf:1: error: icp_port: \"x\" is not a port number"
    );
    assert_eq!(e[1], "squid.conf:2: error: htcp_port: missing value");
    assert!(
        e[2].starts_with("squid.conf:3: error: dead_peer_timeout: \"parsecs\" is not a time unit")
    );
    assert!(e[3].starts_with("squid.conf:4: error: cache_mem:"));
    // Settings keep their defaults.
    assert_eq!(l.config.icp_port.value, 0);
    assert!(!l.config.icp_port.is_set());
}

#[test]
fn size_without_unit_and_extra_arguments_warn() {
    let l = load("cache_mem 256\nicp_port 3130 3131\n");
    assert!(!l.has_errors());
    let w: Vec<String> = l.warnings().map(|d| d.message.clone()).collect();
    assert_eq!(
        w,
        [
            "cache_mem: no unit given; assuming 256 bytes",
            "icp_port: extra arguments ignored: 3131"
        ]
    );
    assert_eq!(l.config.cache_mem.value, 256);
}

#[test]
fn quoted_values_setting_changes_acl_reading() {
    let l = load("configuration_includes_quoted_values on\nacl q dstdomain \"example.com\"\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let crate::config::AclData::DstDomain { entries, .. } = &l.config.acl("q").unwrap().data else {
        panic!()
    };
    assert_eq!(entries[0].domain, "example.com");
    let l = load("acl q dstdomain \"/nonexistent/cuttle/list.txt\"\n");
    let e: Vec<_> = l.errors().collect();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].message.contains("/nonexistent/cuttle/list.txt"),
        "{}",
        e[0]
    );
}

#[test]
fn collects_all_errors() {
    let l = load("icp_port x\nhtcp_port y\ncache_peer p parent z 0\nacl a src nonsense!\n");
    assert_eq!(l.errors().count(), 4);
}

#[test]
fn hostile_inputs_do_not_panic() {
    for text in [
        "\"",
        "\\",
        "#",
        "acl",
        "acl a",
        "acl a src",
        "acl a src 1.2.3.4/",
        "acl a src -",
        "acl a src /",
        "acl a port -",
        "acl a dstdomain \"\"",
        "http_access !",
        "http_access allow !",
        "cache_peer",
        "cache_peer a b c d e=f=g",
        "http_port [",
        "http_port [:",
        "http_port :",
        "refresh_pattern",
        "refresh_pattern -i",
        "refresh_pattern ( 1 2 3",
        "cache_dir",
        "cache_dir ufs",
        "cache_dir ufs / 1 1",
        "if",
        "else",
        "endif",
        "if 1 = 99999999999999999999",
        "include",
        "logformat",
        "access_log =",
        "access_log stdio:x logformat=",
        "parameters(\"",
        "acl a src parameters(\"\")",
        "\u{0}\u{ffff}",
        "acl a src 1.2.3.4-",
        "acl a src 1.2.3.4/255.255.255.255.255",
        "icp_query_timeout 1 decade",
        "icp_query_timeout 99999999999 decades",
        "cache_mem 1.7976931348623157e308 GB",
        "neighbor_type_domain",
        "cache_peer_access",
        "mcast_groups",
    ] {
        let _ = crate::config::load_str_sandboxed(text, "fuzz.conf");
    }
}

#[test]
fn digest_settings_and_their_errors() {
    let l = load("digest_bits_per_entry 8\ndigest_rebuild_period 10 minutes\n");
    assert!(
        !l.has_errors() && l.warnings().count() == 0,
        "{:?}",
        l.diagnostics
    );
    assert_eq!(l.config.digest_bits_per_entry.value, 8);
    assert_eq!(
        l.config.digest_rebuild_period.value,
        Duration::from_secs(600)
    );
    let d = Config::default();
    assert_eq!(d.digest_bits_per_entry.value, 5);
    assert_eq!(d.digest_rebuild_period.value, Duration::from_secs(3600));
    let l = load("\ndigest_bits_per_entry 0\ndigest_bits_per_entry 256\ndigest_rebuild_period 0\n");
    let errors: Vec<(usize, String)> = l
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::config::Severity::Error)
        .map(|d| (d.location.line, d.message.clone()))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(errors[0].0, 2);
    assert!(
        errors[0].1.starts_with("digest_bits_per_entry: "),
        "{errors:?}"
    );
    assert_eq!(errors[1].0, 3);
    assert_eq!(errors[2].0, 4);
    assert!(
        errors[2].1.starts_with("digest_rebuild_period: "),
        "{errors:?}"
    );
}

#[test]
fn holder_redirect_rules_and_size_floor() {
    let l = load(
        "acl big urlpath_regex \\.iso$\nholder_redirect allow big\nholder_redirect deny all\n\
         holder_redirect_min_size 1 MB\n",
    );
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(l.config.holder_redirect.len(), 2);
    assert_eq!(l.config.holder_redirect[0].location.line, 2);
    assert_eq!(l.config.holder_redirect_min_size.value, 1 << 20);
    // Off unless configured.
    let l = load("");
    assert!(l.config.holder_redirect.is_empty());
    assert_eq!(l.config.holder_redirect_min_size.value, 0);
    // Rules that can redirect nothing are warned about, at the first.
    let warned = |text: &str| -> Vec<(usize, String)> {
        load(text)
            .warnings()
            .map(|d| (d.location.line, d.message.clone()))
            .filter(|(_, m)| m.starts_with("holder_redirect:"))
            .collect()
    };
    let sibling = "cache_peer 192.0.2.2 sibling 80 3130 public-url=http://b.example.com\n";
    let accel = "http_port 80 accel defaultsite=www.example.com\n";
    assert_eq!(
        warned(&format!("{accel}{sibling}holder_redirect allow all\n")),
        []
    );
    assert_eq!(
        warned(&format!("{accel}holder_redirect allow all\n")),
        [(
            2,
            "holder_redirect: no sibling cache_peer has public-url=, so nothing will be redirected"
                .to_string()
        )]
    );
    assert_eq!(
        warned(&format!("http_port 3128\n{sibling}holder_redirect allow all\n"))[0].1,
        "holder_redirect: no http_port or https_port is an accelerator (accel), so nothing will be redirected"
    );
    // Bad values name their line.
    let l = load("# x\nholder_redirect_min_size lots\nholder_redirect allow nosuchacl\n");
    let lines: Vec<usize> = l.errors().map(|d| d.location.line).collect();
    assert_eq!(lines, [2, 3], "{:?}", l.diagnostics);
}

#[test]
fn hit_metering_is_off_unless_turned_on() {
    let off = load("");
    assert!(!off.config.hit_metering.value);
    let on = load("hit_metering on\n");
    assert!(!on.has_errors(), "{:?}", on.diagnostics);
    assert_eq!(on.warnings().count(), 0, "{:?}", on.diagnostics);
    assert!(on.config.hit_metering.value);
    assert!(load("hit_metering maybe\n").has_errors());
}

#[test]
fn max_filedescriptors_is_a_count_with_errors_at_its_line() {
    let l = load("max_filedescriptors 4096\n");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(l.warnings().count(), 0, "{:?}", l.diagnostics);
    assert_eq!(l.config.max_filedescriptors.value, 4096);
    assert_eq!(load("").config.max_filedescriptors.value, 0);
    let l = load("\nmax_filedescriptors many\n");
    let errors: Vec<String> = l.errors().map(|d| d.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("squid.conf:2: error: max_filedescriptors: "),
        "{}",
        errors[0]
    );
}
