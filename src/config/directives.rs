//! Directive dispatch: turns each expanded line into a typed `Config` field (single-valued settings in `directives/settings.rs`, the rest in their own modules) and keeps every directive cuttle does not use yet, with a warning saying which kind it is (`directives/untyped.rs`).

use std::collections::HashMap;

use super::acl::{self};
use super::cache::{self};
use super::lexer::{Files, Line};
use super::squid_names::{classify, Known};
use super::values::{SizeUnit, MILLISECONDS, SECONDS};
use super::{listen, logging, peer, targeted};
use super::{CachemgrPasswd, Config, Diagnostic, Located, Location, Setting, Severity};

mod settings;
mod untyped;

use settings::{
    access_rule, address_setting, args_between, check_mcast_interface, count_setting,
    digest_bits_per_entry, digest_rebuild_period, forwarded_for_setting, hierarchy_stoplist,
    hostname_setting, htcp_monitor_max_lease, mcast_groups, onoff_setting, path_setting,
    policy_setting, port_setting, size_setting, tcp_outgoing_address, time_setting,
};
use untyped::{other, shown};

/// How cuttle treats a directive it keeps untyped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveStatus {
    /// A current Squid directive cuttle does not use yet.
    NotUsed,
    /// An old name of a current Squid directive cuttle does not use yet.
    AliasNotUsed { current: String },
    /// Removed from Squid.
    Obsolete,
    /// Not a Squid directive.
    Unknown,
}

/// A directive kept as written because cuttle does not use it (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherDirective {
    pub name: String,
    pub args: Vec<String>,
    pub status: DirectiveStatus,
}

/// A reference to a name not defined (yet) when it was used; its error
/// message is refined at the end if the name turns up later.
struct Pending {
    is_acl: bool,
    key: String,
    name: String,
    directive: String,
    diagnostic: usize,
}

/// Parsing state shared by the directive parsers.
pub(crate) struct Ctx<'f, 'o> {
    pub config: Config,
    pub files: &'f mut Files<'o>,
    diags: &'f mut Vec<Diagnostic>,
    /// Lower-cased ACL name → index in `config.acls`.
    pub acl_index: HashMap<String, usize>,
    /// Lower-cased peer name → index in `config.cache_peers`.
    pub peer_index: HashMap<String, usize>,
    /// cache_dir path → index in `config.cache_dirs`.
    pub cache_dir_index: HashMap<String, usize>,
    /// logformat name → index in `config.logformats`.
    pub logformat_index: HashMap<String, usize>,
    pending: Vec<Pending>,
}

impl<'f, 'o> Ctx<'f, 'o> {
    fn new(files: &'f mut Files<'o>, diags: &'f mut Vec<Diagnostic>) -> Self {
        let config = Config::default();
        let acl_index = config
            .acls
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.to_ascii_lowercase(), i))
            .collect();
        Ctx {
            config,
            files,
            diags,
            acl_index,
            peer_index: HashMap::new(),
            cache_dir_index: HashMap::new(),
            logformat_index: HashMap::new(),
            pending: Vec::new(),
        }
    }

    pub fn error(&mut self, location: &Location, message: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            location: location.clone(),
            message,
        });
    }

    pub fn warn(&mut self, location: &Location, message: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            location: location.clone(),
            message,
        });
    }

    /// Check that ACL `name` is defined; report an error if not.
    pub fn require_acl(&mut self, name: &str, location: &Location, directive: &str) -> bool {
        let key = name.to_ascii_lowercase();
        if self.acl_index.contains_key(&key) {
            return true;
        }
        self.pending.push(Pending {
            is_acl: true,
            key,
            name: name.to_string(),
            directive: directive.to_string(),
            diagnostic: self.diags.len(),
        });
        self.error(
            location,
            format!("{directive}: ACL \"{name}\" is not defined"),
        );
        false
    }

    /// The index of cache_peer `name`; reports an error if there is none.
    pub fn require_peer(
        &mut self,
        name: &str,
        location: &Location,
        directive: &str,
    ) -> Option<usize> {
        let key = name.to_ascii_lowercase();
        if let Some(&i) = self.peer_index.get(&key) {
            return Some(i);
        }
        self.pending.push(Pending {
            is_acl: false,
            key,
            name: name.to_string(),
            directive: directive.to_string(),
            diagnostic: self.diags.len(),
        });
        self.error(
            location,
            format!("{directive}: no cache_peer named \"{name}\""),
        );
        None
    }

    /// Squid reads the file top to bottom, so a name defined after its use
    /// is still an error; say where it is defined to make the fix obvious.
    fn refine_pending(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            let later = if p.is_acl {
                self.acl_index
                    .get(&p.key)
                    .and_then(|&i| self.config.acls.get(i))
                    .map(|a| a.location.clone())
            } else {
                self.peer_index
                    .get(&p.key)
                    .and_then(|&i| self.config.cache_peers.get(i))
                    .map(|a| a.location.clone())
            };
            let (Some(at), Some(d)) = (later, self.diags.get_mut(p.diagnostic)) else {
                continue;
            };
            let what = if p.is_acl { "ACL" } else { "cache_peer" };
            d.message = format!(
                "{}: {what} \"{}\" is used before it is defined (defined later, at {at}); Squid requires the definition first",
                p.directive, p.name
            );
        }
    }
}

/// Parse expanded lines into a `Config`, adding diagnostics.
pub(crate) fn apply(
    lines: Vec<Line>,
    files: &mut Files<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Config {
    let mut ctx = Ctx::new(files, diags);
    for line in &lines {
        dispatch(&mut ctx, line);
        ctx.config
            .lines
            .push(Located::new(shown(line), line.location.clone()));
    }
    acl::check_domain_overlaps(&mut ctx);
    logging::check_access_logs(&mut ctx);
    check_mcast_interface(&mut ctx);
    acl::finish(&mut ctx);
    peer::warn_never_asked(&mut ctx);
    peer::warn_redirect_nowhere(&mut ctx);
    super::share::warn_offer_nowhere(&mut ctx);
    ctx.refine_pending();
    ctx.config
}

type Field<T> = fn(&mut Config) -> &mut Setting<T>;

fn dispatch(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let written = line.name();
    let name = match classify(written) {
        Known::Current(n) => n,
        Known::Alias(current) => {
            if is_typed(current) {
                ctx.warn(
                    &line.location,
                    format!("{written}: old name of {current}; read as {current}"),
                );
            }
            current
        }
        Known::Obsolete | Known::Unknown => written,
    };
    match name {
        "http_port" => listen::parse_http_port(ctx, line),
        "https_port" => listen::parse_https_port(ctx, line),
        "icp_port" => port_setting(ctx, line, |c| &mut c.icp_port),
        "htcp_port" => port_setting(ctx, line, |c| &mut c.htcp_port),
        "htcp_monitor_max_subscribers" => {
            count_setting(ctx, line, |c| &mut c.htcp_monitor_max_subscribers)
        }
        "htcp_monitor_max_lease" => htcp_monitor_max_lease(ctx, line),
        "htcp_monitor_update_hits" => super::forwarding::parse_htcp_monitor_update_hits(ctx, line),
        "max_filedescriptors" => count_setting(ctx, line, |c| &mut c.max_filedescriptors),
        "udp_incoming_address" => address_setting(ctx, line, |c| &mut c.udp_incoming_address),
        "mcast_groups" => mcast_groups(ctx, line),
        "hierarchy_stoplist" => hierarchy_stoplist(ctx, line),
        "cache_peer" => peer::parse_cache_peer(ctx, line),
        "mesh_discovery" => super::discovery::parse_mesh_discovery(ctx, line),
        "mesh_discovery_key" => super::discovery::parse_mesh_discovery_key(ctx, line),
        "cache_peer_access" => peer::parse_cache_peer_access(ctx, line),
        "neighbor_type_domain" => peer::parse_neighbor_type_domain(ctx, line),
        "icp_query_timeout" => time_setting(ctx, line, MILLISECONDS, |c| &mut c.icp_query_timeout),
        "maximum_icp_query_timeout" => time_setting(ctx, line, MILLISECONDS, |c| {
            &mut c.maximum_icp_query_timeout
        }),
        "minimum_icp_query_timeout" => time_setting(ctx, line, MILLISECONDS, |c| {
            &mut c.minimum_icp_query_timeout
        }),
        "mcast_icp_query_timeout" => {
            time_setting(ctx, line, MILLISECONDS, |c| &mut c.mcast_icp_query_timeout)
        }
        "dead_peer_timeout" => time_setting(ctx, line, SECONDS, |c| &mut c.dead_peer_timeout),
        "background_ping_rate" => time_setting(ctx, line, SECONDS, |c| &mut c.background_ping_rate),
        "peer_connect_timeout" => time_setting(ctx, line, SECONDS, |c| &mut c.peer_connect_timeout),
        "icp_hit_stale" => onoff_setting(ctx, line, |c| &mut c.icp_hit_stale),
        "log_icp_queries" => onoff_setting(ctx, line, |c| &mut c.log_icp_queries),
        "offline_mode" => onoff_setting(ctx, line, |c| &mut c.offline_mode),
        "query_icmp" => onoff_setting(ctx, line, |c| &mut c.query_icmp),
        "prefer_direct" => onoff_setting(ctx, line, |c| &mut c.prefer_direct),
        "nonhierarchical_direct" => onoff_setting(ctx, line, |c| &mut c.nonhierarchical_direct),
        "forward_max_tries" => count_setting(ctx, line, |c| &mut c.forward_max_tries),
        "retry_on_error" => onoff_setting(ctx, line, |c| &mut c.retry_on_error),
        "digest_generation" => onoff_setting(ctx, line, |c| &mut c.digest_generation),
        "digest_bits_per_entry" => digest_bits_per_entry(ctx, line),
        "digest_rebuild_period" => digest_rebuild_period(ctx, line),
        "peer_store_threshold" => super::forwarding::parse_peer_store_threshold(ctx, line),
        "cut_through" => super::cut_through::parse_cut_through(ctx, line),
        "udp_outgoing_address" => address_setting(ctx, line, |c| &mut c.udp_outgoing_address),
        "tcp_outgoing_address" => tcp_outgoing_address(ctx, line),
        "acl" => acl::parse_acl(ctx, line),
        "http_access" => access_rule(ctx, line, |c| &mut c.http_access),
        "icp_access" => access_rule(ctx, line, |c| &mut c.icp_access),
        "htcp_access" => access_rule(ctx, line, |c| &mut c.htcp_access),
        "htcp_clr_access" => access_rule(ctx, line, |c| &mut c.htcp_clr_access),
        "miss_access" => access_rule(ctx, line, |c| &mut c.miss_access),
        "http_reply_access" => access_rule(ctx, line, |c| &mut c.http_reply_access),
        "never_direct" => access_rule(ctx, line, |c| &mut c.never_direct),
        "always_direct" => access_rule(ctx, line, |c| &mut c.always_direct),
        "holder_redirect" => access_rule(ctx, line, |c| &mut c.holder_redirect),
        "share_log" => super::share::parse_share_log(ctx, line),
        "share_locality" => super::share::parse_share_locality(ctx, line),
        "share_offer" => super::share::parse_share_offer(ctx, line),
        "share_offer_url" => super::share::parse_share_offer_url(ctx, line),
        "holder_redirect_min_size" => size_setting(ctx, line, SizeUnit::Bytes, |c| {
            &mut c.holder_redirect_min_size
        }),
        "cache_dir" => cache::parse_cache_dir(ctx, line),
        "cache_mem" => size_setting(ctx, line, SizeUnit::Bytes, |c| &mut c.cache_mem),
        "maximum_object_size" => {
            size_setting(ctx, line, SizeUnit::Bytes, |c| &mut c.maximum_object_size)
        }
        "maximum_object_size_in_memory" => size_setting(ctx, line, SizeUnit::Bytes, |c| {
            &mut c.maximum_object_size_in_memory
        }),
        "minimum_object_size" => {
            size_setting(ctx, line, SizeUnit::Bytes, |c| &mut c.minimum_object_size)
        }
        "cache_replacement_policy" => {
            policy_setting(ctx, line, |c| &mut c.cache_replacement_policy)
        }
        "memory_replacement_policy" => {
            policy_setting(ctx, line, |c| &mut c.memory_replacement_policy)
        }
        "refresh_pattern" => cache::parse_refresh_pattern(ctx, line),
        "negative_ttl" => time_setting(ctx, line, SECONDS, |c| &mut c.negative_ttl),
        "max_stale" => time_setting(ctx, line, SECONDS, |c| &mut c.max_stale),
        "collapsed_forwarding" => onoff_setting(ctx, line, |c| &mut c.collapsed_forwarding),
        "hit_metering" => onoff_setting(ctx, line, |c| &mut c.hit_metering),
        "read_ahead_gap" => size_setting(ctx, line, SizeUnit::Bytes, |c| &mut c.read_ahead_gap),
        "targeted_cache_control" => targeted::parse_targeted_cache_control(ctx, line),
        "access_log" => logging::parse_access_log(ctx, line),
        "logformat" => logging::parse_logformat(ctx, line),
        "strip_query_terms" => onoff_setting(ctx, line, |c| &mut c.strip_query_terms),
        "visible_hostname" => hostname_setting(ctx, line, |c| &mut c.visible_hostname),
        "unique_hostname" => hostname_setting(ctx, line, |c| &mut c.unique_hostname),
        "logfile_rotate" => count_setting(ctx, line, |c| &mut c.logfile_rotate),
        "cache_log" => path_setting(ctx, line, |c| &mut c.cache_log),
        "pid_filename" => path_setting(ctx, line, |c| &mut c.pid_filename),
        "shutdown_lifetime" => time_setting(ctx, line, SECONDS, |c| &mut c.shutdown_lifetime),
        "connect_timeout" => time_setting(ctx, line, SECONDS, |c| &mut c.connect_timeout),
        "read_timeout" => time_setting(ctx, line, SECONDS, |c| &mut c.read_timeout),
        "request_start_timeout" => {
            time_setting(ctx, line, SECONDS, |c| &mut c.request_start_timeout)
        }
        "request_timeout" => time_setting(ctx, line, SECONDS, |c| &mut c.request_timeout),
        "client_idle_pconn_timeout" => {
            time_setting(ctx, line, SECONDS, |c| &mut c.client_idle_pconn_timeout)
        }
        "request_header_max_size" => size_setting(ctx, line, SizeUnit::Bytes, |c| {
            &mut c.request_header_max_size
        }),
        "reply_header_max_size" => {
            size_setting(ctx, line, SizeUnit::Bytes, |c| &mut c.reply_header_max_size)
        }
        "forwarded_for" => forwarded_for_setting(ctx, line),
        "configuration_includes_quoted_values" => {
            onoff_setting(ctx, line, |c| &mut c.configuration_includes_quoted_values)
        }
        "cachemgr_passwd" => cachemgr_passwd(ctx, line),
        "cache_mgr" => {
            if let Some(word) = args_between(ctx, line, 1).and_then(|a| a.first()) {
                ctx.config.cache_mgr = Setting::at(word.text.clone(), line.location.clone());
            }
        }
        "tls_outgoing_options" => super::tls_client::parse_tls_outgoing_options(ctx, line),
        _ if asks_for_tls(name) => ctx.error(
            &line.location,
            format!(
                "{name}: {}, rather than run without the TLS it asks for",
                super::peer::NO_TLS
            ),
        ),
        _ => match refused_feature(name, line) {
            Some(feature) => refuse(ctx, line, feature),
            None => other(ctx, line),
        },
    }
}

/// Directives that only configure TLS cuttle does not implement (Squid
/// 5.7's `sslproxy_*`, `tls_*`, `ssl_*` helpers and options). `ssl_bump` is
/// an access rule and refused as one.
fn asks_for_tls(name: &str) -> bool {
    name.starts_with("sslproxy_")
        || name.starts_with("tls_")
        || (name.starts_with("sslcrtd_") || name.starts_with("sslcrtvalidator_"))
        || name == "ssl_unclean_shutdown"
        || name == "ssl_engine"
}

/// Squid access-control features cuttle does not implement: a directive
/// using one is an error, because ignoring it would let through requests
/// (or replies) that Squid keeps out. Returns what the directive does.
fn refused_feature(name: &str, line: &Line) -> Option<&'static str> {
    // Every rule of the line's list is this exact `action acl` pair: the
    // list then changes nothing (for example `http_reply_access allow all`).
    let only = |action: &str, acl: &str| {
        let args = line.args();
        args.len() == 2
            && args.first().is_some_and(|t| t.is(action))
            && args.get(1).is_some_and(|t| t.is(acl))
    };
    match name {
        "auth_param" => Some("proxy authentication"),
        "external_acl_type" => Some("external ACL helpers"),
        "adapted_http_access" if !only("allow", "all") => {
            Some("access control after adaptation and URL rewriting")
        }
        "follow_x_forwarded_for" if !only("deny", "all") => {
            Some("client addresses taken from X-Forwarded-For (which change what src ACLs match)")
        }
        "ssl_bump" => Some("TLS interception (SslBump)"),
        "url_rewrite_program" => Some("URL rewriting and filtering helpers"),
        "icap_service" | "ecap_service" | "adaptation_access" => {
            Some("ICAP/eCAP content adaptation")
        }
        _ => None,
    }
}

/// Report a directive whose feature cuttle refuses to run without.
fn refuse(ctx: &mut Ctx<'_, '_>, line: &Line, feature: &str) {
    let name = line.name();
    ctx.error(
        &line.location,
        format!(
            "{name}: cuttle does not implement {feature}; refusing the config rather than ignoring it, which could let through what Squid would deny"
        ),
    );
}

/// Directives with a typed home in `Config` (the arms of `dispatch`).
fn is_typed(name: &str) -> bool {
    const TYPED: &[&str] = &[
        "http_port",
        "icp_port",
        "htcp_port",
        "htcp_monitor_max_subscribers",
        "htcp_monitor_max_lease",
        "htcp_monitor_update_hits",
        "max_filedescriptors",
        "udp_incoming_address",
        "mcast_groups",
        "hierarchy_stoplist",
        "cache_peer",
        "mesh_discovery",
        "mesh_discovery_key",
        "cache_peer_access",
        "neighbor_type_domain",
        "icp_query_timeout",
        "maximum_icp_query_timeout",
        "minimum_icp_query_timeout",
        "mcast_icp_query_timeout",
        "dead_peer_timeout",
        "background_ping_rate",
        "peer_connect_timeout",
        "icp_hit_stale",
        "log_icp_queries",
        "offline_mode",
        "query_icmp",
        "prefer_direct",
        "nonhierarchical_direct",
        "forward_max_tries",
        "retry_on_error",
        "digest_generation",
        "digest_bits_per_entry",
        "digest_rebuild_period",
        "peer_store_threshold",
        "cut_through",
        "udp_outgoing_address",
        "tcp_outgoing_address",
        "acl",
        "http_access",
        "icp_access",
        "htcp_access",
        "htcp_clr_access",
        "miss_access",
        "http_reply_access",
        "never_direct",
        "always_direct",
        "holder_redirect",
        "holder_redirect_min_size",
        "share_log",
        "share_locality",
        "share_offer",
        "share_offer_url",
        "cache_dir",
        "cache_mem",
        "maximum_object_size",
        "maximum_object_size_in_memory",
        "minimum_object_size",
        "cache_replacement_policy",
        "memory_replacement_policy",
        "refresh_pattern",
        "negative_ttl",
        "max_stale",
        "collapsed_forwarding",
        "hit_metering",
        "read_ahead_gap",
        "targeted_cache_control",
        "access_log",
        "logformat",
        "strip_query_terms",
        "visible_hostname",
        "unique_hostname",
        "shutdown_lifetime",
        "logfile_rotate",
        "cache_log",
        "pid_filename",
        "connect_timeout",
        "read_timeout",
        "request_start_timeout",
        "request_timeout",
        "client_idle_pconn_timeout",
        "request_header_max_size",
        "reply_header_max_size",
        "forwarded_for",
        "configuration_includes_quoted_values",
        "cachemgr_passwd",
        "cache_mgr",
    ];
    TYPED.contains(&name)
}

/// `cachemgr_passwd PASSWORD ACTION...`.
fn cachemgr_passwd(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let args = line.args();
    let (Some(password), Some(_)) = (args.first(), args.get(1)) else {
        ctx.error(
            &line.location,
            "cachemgr_passwd: needs a password and at least one action".into(),
        );
        return;
    };
    let actions = args
        .get(1..)
        .unwrap_or(&[])
        .iter()
        .map(|t| t.text.clone())
        .collect();
    ctx.config.cachemgr_passwd.push(Located::new(
        CachemgrPasswd {
            password: password.text.clone(),
            actions,
        },
        line.location.clone(),
    ));
}

#[cfg(test)]
mod tests;
