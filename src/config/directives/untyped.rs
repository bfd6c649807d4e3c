//! Directives cuttle keeps but does not use: how the config page shows them (secrets masked) and the warning saying whether ignoring each is harmless or changes behaviour.

use super::{Ctx, DirectiveStatus, OtherDirective};
use crate::config::lexer::Line;
use crate::config::squid_names::{case_insensitive_match, classify, Known};
use crate::config::Located;

/// A line as the cache manager's `config` page shows it: its words, with
/// secrets (cachemgr_passwd passwords, the password of a cache_peer
/// `login=user:password`) replaced by `XXXXXXXX`.
pub(super) fn shown(line: &Line) -> String {
    const MASK: &str = "XXXXXXXX";
    let name = line.name();
    let mut words = vec![name.to_string()];
    for (i, t) in line.args().iter().enumerate() {
        let text = &t.text;
        let masked = if (name == "cachemgr_passwd" || name == "mesh_discovery_key") && i == 0 {
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
pub(super) fn other(ctx: &mut Ctx<'_, '_>, line: &Line) {
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
