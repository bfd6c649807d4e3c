//! Directive dispatch: turns each expanded line into a typed `Config` field (single-valued settings parsed here, the rest in their own modules) and keeps every directive cuttle does not use yet, with a warning saying which kind it is.

use std::collections::HashMap;
use std::time::Duration;

use super::acl::{self, parse_rule, AccessRule};
use super::cache::{self, ReplacementPolicy};
use super::lexer::{Files, Line};
use super::squid_names::{case_insensitive_match, classify, Known};
use super::values::{
    parse_onoff, parse_port_number, parse_size, parse_time, parse_uint, SizeUnit, TimeSpec,
    MILLISECONDS, SECONDS,
};
use super::{listen, logging, peer};
use super::{
    CachemgrPasswd, Config, Diagnostic, ForwardedFor, Located, Location, Setting, Severity,
};

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
        "icp_port" => port_setting(ctx, line, |c| &mut c.icp_port),
        "htcp_port" => port_setting(ctx, line, |c| &mut c.htcp_port),
        "udp_incoming_address" => address_setting(ctx, line, |c| &mut c.udp_incoming_address),
        "mcast_groups" => mcast_groups(ctx, line),
        "hierarchy_stoplist" => hierarchy_stoplist(ctx, line),
        "cache_peer" => peer::parse_cache_peer(ctx, line),
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
        "read_ahead_gap" => size_setting(ctx, line, SizeUnit::Bytes, |c| &mut c.read_ahead_gap),
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
        _ => match refused_feature(name, line) {
            Some(feature) => refuse(ctx, line, feature),
            None => other(ctx, line),
        },
    }
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
        "udp_incoming_address",
        "mcast_groups",
        "hierarchy_stoplist",
        "cache_peer",
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
        "read_ahead_gap",
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

/// A line as the cache manager's `config` page shows it: its words, with
/// secrets (cachemgr_passwd passwords, the password of a cache_peer
/// `login=user:password`) replaced by `XXXXXXXX`.
fn shown(line: &Line) -> String {
    const MASK: &str = "XXXXXXXX";
    let name = line.name();
    let mut words = vec![name.to_string()];
    for (i, t) in line.args().iter().enumerate() {
        let text = &t.text;
        let masked = if name == "cachemgr_passwd" && i == 0 {
            MASK.to_string()
        } else if name == "cache_peer" && text.starts_with("login=") && text.contains(':') {
            let user = text.split(':').next().unwrap_or("login=");
            format!("{user}:{MASK}")
        } else {
            text.clone()
        };
        words.push(masked);
    }
    words.join(" ")
}

/// Keep a directive cuttle does not use, with a warning saying what it is.
fn other(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let name = line.name();
    let first_arg = line.args().first().map(|t| t.text.as_str()).unwrap_or("");
    let ignored = |name: &str, lookup: &str| {
        match ignored_impact(lookup, first_arg) {
        Some(Impact::Harmless(why)) => format!("{name}: ignored: {why}; harmless"),
        Some(Impact::Changes(what)) => {
            format!("{name}: ignored: this changes behaviour: {what}")
        }
        None => format!(
            "{name}: ignored: cuttle does not implement it; check that this config does not rely on it"
        ),
    }
    };
    let (status, message) = match classify(name) {
        Known::Current(_) => (DirectiveStatus::NotUsed, Some(ignored(name, name))),
        Known::Alias(current) => (
            DirectiveStatus::AliasNotUsed {
                current: current.to_string(),
            },
            Some(ignored(&format!("{name} (old name of {current})"), current)),
        ),
        Known::Obsolete => (
            DirectiveStatus::Obsolete,
            Some(format!(
                "{name}: obsolete Squid directive, removed from Squid; ignored (delete the line)"
            )),
        ),
        Known::Unknown => {
            let hint = case_insensitive_match(name)
                .map(|m| format!(" (directive names are case-sensitive: did you mean {m}?)"))
                .unwrap_or_default();
            (
                DirectiveStatus::Unknown,
                Some(format!("{name}: not a Squid directive; ignored{hint}")),
            )
        }
    };
    if let Some(message) = message {
        ctx.warn(&line.location, message);
    }
    ctx.config.other.push(Located::new(
        OtherDirective {
            name: name.to_string(),
            args: line.args().iter().map(|t| t.text.clone()).collect(),
            status,
        },
        line.location.clone(),
    ));
}

/// What ignoring a Squid directive cuttle does not implement means.
enum Impact {
    /// Nothing the admin would notice: why.
    Harmless(String),
    /// cuttle behaves otherwise than Squid would with it: how.
    Changes(String),
}

/// Whether ignoring `name` (with first argument `arg`) matters, for the
/// directives seen in production configs; `None` when not assessed.
fn ignored_impact(name: &str, arg: &str) -> Option<Impact> {
    use Impact::{Changes, Harmless};
    let h = |s: &str| Some(Harmless(s.to_string()));
    let c = |s: &str| Some(Changes(s.to_string()));
    match name {
        "coredump_dir" => {
            h("cuttle has no core-dump directory (the system's core_pattern decides where cores go)")
        }
        "workers" => h("cuttle has no worker processes: one process uses every core"),
        "ipcache_size" | "ipcache_low" | "ipcache_high" | "fqdncache_size" => {
            h("cuttle has no IP or FQDN cache to size")
        }
        "client_db" => h(
            "cuttle has no client database (maxconn ACLs count connections whatever this says)",
        ),
        "pipeline_prefetch" => h(
            "cuttle has no pipeline prefetch: pipelined requests are answered one at a time, in order",
        ),
        "max_filedescriptors" => c(
            "cuttle uses the open-file limit it is started with; raise that (ulimit -n, LimitNOFILE=) instead",
        ),
        "client_persistent_connections" | "server_persistent_connections" => {
            if arg == "off" {
                c("connections stay persistent as with on")
            } else {
                h("connections are persistent, as with on")
            }
        }
        "client_lifetime" => c(
            "client connections are not closed after a lifetime (Squid closes them after this long, 1 day by default)",
        ),
        "cache_store_log" => {
            if arg == "none" || arg.is_empty() {
                h("cuttle has no store log, as with none")
            } else {
                Some(Changes(format!(
                    "cuttle has no store log; nothing is written to {arg}"
                )))
            }
        }
        "cache_effective_user" | "cache_effective_group" => c(
            "cuttle does not switch user or group; start it as the account it should run as",
        ),
        "debug_options" => h("cuttle has no debug sections: its log detail is set with RUST_LOG"),
        "log_mime_hdrs" => {
            if arg == "on" {
                c("access.log lines lack the request and reply headers Squid appends with on")
            } else {
                h("access.log lines carry no headers, as with off")
            }
        }
        "uri_whitespace" => {
            if arg == "deny" {
                h("a URL with whitespace is refused (400), as with deny")
            } else {
                Some(Changes(format!(
                    "a URL with whitespace is refused (400) rather than handled as {} says",
                    if arg.is_empty() { "strip" } else { arg }
                )))
            }
        }
        "request_body_max_size" => {
            if arg == "0" {
                h("request bodies have no size limit, as with 0")
            } else {
                c("request bodies are not limited in size (Squid refuses larger ones with 413)")
            }
        }
        "half_closed_clients" => {
            if arg == "on" {
                c("a client that half-closes its connection has it closed, not kept open as with on")
            } else {
                h("a client that half-closes its connection has it closed, as with off")
            }
        }
        "quick_abort_min" | "quick_abort_max" | "quick_abort_pct" => c(
            "when the client of a storable miss goes away, cuttle fetches the rest and stores it whatever its size (Squid's quick_abort_min -1)",
        ),
        "cache_swap_state" => {
            h("cuttle has no swap state file: its cache_dir keeps its own index")
        }
        _ => None,
    }
}

/// The single argument of `line`; `max` more are allowed (a unit), extras
/// beyond that are warned about.
fn args_between<'l>(
    ctx: &mut Ctx<'_, '_>,
    line: &'l Line,
    max: usize,
) -> Option<&'l [super::lexer::Token]> {
    let args = line.args();
    if args.is_empty() {
        ctx.error(&line.location, format!("{}: missing value", line.name()));
        return None;
    }
    if args.len() > max {
        let extra: Vec<&str> = args
            .get(max..)
            .unwrap_or(&[])
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        ctx.warn(
            &line.location,
            format!(
                "{}: extra arguments ignored: {}",
                line.name(),
                extra.join(" ")
            ),
        );
    }
    Some(args.get(..max.min(args.len())).unwrap_or(args))
}

/// `forwarded_for on|off|transparent|delete|truncate`.
fn forwarded_for_setting(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    let value = match word.text.to_ascii_lowercase().as_str() {
        "on" => ForwardedFor::On,
        "off" => ForwardedFor::Off,
        "transparent" => ForwardedFor::Transparent,
        "delete" => ForwardedFor::Delete,
        "truncate" => ForwardedFor::Truncate,
        other => {
            ctx.error(
                &line.location,
                format!(
                    "forwarded_for: \"{other}\" is not on, off, transparent, delete or truncate"
                ),
            );
            return;
        }
    };
    ctx.config.forwarded_for = Setting::at(value, line.location.clone());
}

fn onoff_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<bool>) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    match parse_onoff(&word.text) {
        Ok(v) => *field(&mut ctx.config) = Setting::at(v, line.location.clone()),
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

/// A whole number (`forward_max_tries`).
fn count_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<u32>) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    match parse_uint(&word.text)
        .and_then(|n| u32::try_from(n).map_err(|_| format!("\"{}\" is too large", word.text)))
    {
        Ok(v) => *field(&mut ctx.config) = Setting::at(v, line.location.clone()),
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

/// A file path, or `none` for no file (`pid_filename`, `cache_log`).
fn path_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<Option<std::path::PathBuf>>) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    let value = (word.text != "none").then(|| std::path::PathBuf::from(&word.text));
    *field(&mut ctx.config) = Setting::at(value, line.location.clone());
}

fn port_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<u16>) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    match parse_port_number(&word.text) {
        Ok(v) => *field(&mut ctx.config) = Setting::at(v, line.location.clone()),
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

fn time_setting(ctx: &mut Ctx<'_, '_>, line: &Line, spec: TimeSpec, field: Field<Duration>) {
    let Some(args) = args_between(ctx, line, 2) else {
        return;
    };
    let (Some(number), unit) = (args.first(), args.get(1)) else {
        return;
    };
    match parse_time(&number.text, unit.map(|t| t.text.as_str()), spec) {
        Ok((v, _)) => *field(&mut ctx.config) = Setting::at(v, line.location.clone()),
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

fn size_setting(ctx: &mut Ctx<'_, '_>, line: &Line, default: SizeUnit, field: Field<u64>) {
    let Some(args) = args_between(ctx, line, 2) else {
        return;
    };
    let (Some(number), unit) = (args.first(), args.get(1)) else {
        return;
    };
    match parse_size(&number.text, unit.map(|t| t.text.as_str()), default) {
        Ok(size) => {
            if size.unit_missing {
                // Squid warns the same way ("No units on ..., assuming ...").
                ctx.warn(
                    &line.location,
                    format!(
                        "{}: no unit given; assuming {} {}",
                        line.name(),
                        number.text,
                        default.name()
                    ),
                );
            }
            *field(&mut ctx.config) = Setting::at(size.bytes, line.location.clone());
        }
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

fn policy_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<ReplacementPolicy>) {
    let Some(args) = args_between(ctx, line, 2) else {
        return;
    };
    let words: Vec<&str> = args.iter().map(|t| t.text.as_str()).collect();
    match cache::parse_policy(&words) {
        Ok(v) => *field(&mut ctx.config) = Setting::at(v, line.location.clone()),
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

fn hostname_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<Option<String>>) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    let ok = word
        .text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok {
        ctx.error(
            &line.location,
            format!("{}: \"{}\" is not a host name", line.name(), word.text),
        );
        return;
    }
    *field(&mut ctx.config) = Setting::at(Some(word.text.clone()), line.location.clone());
}

/// An address directive (`udp_incoming_address`, `udp_outgoing_address`):
/// an IP literal; the unspecified address (`0.0.0.0`, `::`), Squid's
/// `any_addr`, or 255.255.255.255 (Squid's "not set" for
/// udp_outgoing_address) mean `None`. Squid would also resolve a host name;
/// cuttle asks for the address itself.
fn address_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<Option<std::net::IpAddr>>) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    if word.text == "any_addr" {
        *field(&mut ctx.config) = Setting::at(None, line.location.clone());
        return;
    }
    match word.text.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let unset = match ip {
                std::net::IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast(),
                std::net::IpAddr::V6(v6) => v6.is_unspecified(),
            };
            let value = (!unset).then_some(ip);
            *field(&mut ctx.config) = Setting::at(value, line.location.clone());
        }
        Err(_) => ctx.error(
            &line.location,
            format!(
                "{}: \"{}\" is not an IP address (cuttle does not resolve host names here)",
                line.name(),
                word.text
            ),
        ),
    }
}

/// `tcp_outgoing_address ADDR [[!]acl ...]`.
fn tcp_outgoing_address(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let args = line.args();
    let Some(word) = args.first() else {
        ctx.error(
            &line.location,
            "tcp_outgoing_address: missing address".into(),
        );
        return;
    };
    let Ok(address) = word.text.parse::<std::net::IpAddr>() else {
        ctx.error(
            &line.location,
            format!(
                "tcp_outgoing_address: \"{}\" is not an IP address",
                word.text
            ),
        );
        return;
    };
    let Some(acls) = acl::parse_acl_refs(
        ctx,
        line,
        "tcp_outgoing_address",
        args.get(1..).unwrap_or(&[]),
    ) else {
        return;
    };
    ctx.config.tcp_outgoing_address.push(Located::new(
        super::OutgoingAddress { address, acls },
        line.location.clone(),
    ));
}

fn mcast_groups(ctx: &mut Ctx<'_, '_>, line: &Line) {
    if line.args().is_empty() {
        ctx.error(&line.location, "mcast_groups: missing address".into());
    }
    for t in line.args() {
        match t.text.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_multicast() => {
                if ip.is_ipv6() {
                    ctx.warn(
                        &line.location,
                        format!("mcast_groups: {ip}: cuttle joins IPv4 groups only; this group is skipped (list IPv4 groups)"),
                    );
                }
                ctx.config
                    .mcast_groups
                    .push(Located::new(ip, line.location.clone()))
            }
            Ok(ip) => ctx.error(
                &line.location,
                format!("mcast_groups: {ip} is not a multicast address"),
            ),
            Err(_) => ctx.error(
                &line.location,
                format!("mcast_groups: \"{}\" is not an IP address", t.text),
            ),
        }
    }
}

/// At the end of loading: groups joined on a socket bound to one address
/// receive nothing on Linux (the ICP socket binds udp_incoming_address).
fn check_mcast_interface(ctx: &mut Ctx<'_, '_>) {
    let bound = &ctx.config.udp_incoming_address;
    let Some(std::net::IpAddr::V4(v4)) = bound.value else {
        return;
    };
    if ctx.config.mcast_groups.is_empty() || v4.is_unspecified() {
        return;
    }
    let Some(at) = bound.location.clone() else {
        return;
    };
    ctx.warn(
        &at,
        format!("udp_incoming_address {v4}: the ICP socket is bound to it, which receives no mcast_groups traffic on Linux; leave it unset to get queries sent to the groups"),
    );
}

/// Squid 3.4's `hierarchy_stoplist WORD...`: a URL containing any word is
/// not hierarchical (no peer is asked; DIRECT unless never_direct). Squid
/// 3.5 removed it and Squid 5 refuses a config that has it; cuttle honours
/// it, so an old config keeps its meaning, and says so.
fn hierarchy_stoplist(ctx: &mut Ctx<'_, '_>, line: &Line) {
    if line.args().is_empty() {
        ctx.error(&line.location, "hierarchy_stoplist: missing word".into());
        return;
    }
    ctx.warn(
        &line.location,
        "hierarchy_stoplist: removed from Squid 3.5 (Squid 5 refuses it; use always_direct or \
         cache_peer_access there); cuttle honours it: URLs containing these words ask no peer"
            .into(),
    );
    for t in line.args() {
        ctx.config
            .hierarchy_stoplist
            .push(Located::new(t.text.to_string(), line.location.clone()));
    }
}

fn access_rule(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    field: fn(&mut Config) -> &mut Vec<Located<AccessRule>>,
) {
    let name = line.name().to_string();
    if let Some(rule) = parse_rule(ctx, line, &name, line.args()) {
        field(&mut ctx.config).push(Located::new(rule, line.location.clone()));
    }
}

#[cfg(test)]
mod tests;
