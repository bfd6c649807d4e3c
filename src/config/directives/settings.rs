//! The single-valued settings (on/off, counts, paths, ports, times, sizes, replacement policies, host names, addresses) and the few directives with a syntax of their own (forwarded_for, tcp_outgoing_address, mcast_groups, hierarchy_stoplist, access rule lists).

use std::time::Duration;

use super::{Ctx, Field};
use crate::config::acl::{self, parse_rule, AccessRule};
use crate::config::cache::{self, ReplacementPolicy};
use crate::config::lexer::Line;
use crate::config::values::{
    parse_onoff, parse_port_number, parse_size, parse_time, parse_uint, SizeUnit, TimeSpec, SECONDS,
};
use crate::config::{Config, ForwardedFor, Located, Setting};

/// The single argument of `line`; `max` more are allowed (a unit), extras
/// beyond that are warned about.
pub(super) fn args_between<'l>(
    ctx: &mut Ctx<'_, '_>,
    line: &'l Line,
    max: usize,
) -> Option<&'l [crate::config::lexer::Token]> {
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
pub(super) fn forwarded_for_setting(ctx: &mut Ctx<'_, '_>, line: &Line) {
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

pub(super) fn onoff_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<bool>) {
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
pub(super) fn count_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<u32>) {
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

/// `digest_bits_per_entry N`: 1 to 255, as the digest header holds it in
/// one byte.
pub(super) fn digest_bits_per_entry(ctx: &mut Ctx<'_, '_>, line: &Line) {
    count_setting(ctx, line, |c| &mut c.digest_bits_per_entry);
    let bits = ctx.config.digest_bits_per_entry.value;
    if !(1..=255).contains(&bits) {
        ctx.error(
            &line.location,
            format!("digest_bits_per_entry: {bits} is not between 1 and 255"),
        );
        ctx.config.digest_bits_per_entry = Setting::default_value(5);
    }
}

/// `digest_rebuild_period TIME`: more than 0 (the digest is rebuilt, and
/// fetched again, at that pace).
pub(super) fn digest_rebuild_period(ctx: &mut Ctx<'_, '_>, line: &Line) {
    time_setting(ctx, line, SECONDS, |c| &mut c.digest_rebuild_period);
    if ctx.config.digest_rebuild_period.value.is_zero() {
        ctx.error(
            &line.location,
            "digest_rebuild_period: must be more than 0".to_string(),
        );
        ctx.config.digest_rebuild_period = Setting::default_value(Duration::from_secs(3600));
    }
}

/// `htcp_monitor_max_lease TIME`: 1 to 255 seconds (HTCP MON's TIME is
/// one byte of seconds).
pub(super) fn htcp_monitor_max_lease(ctx: &mut Ctx<'_, '_>, line: &Line) {
    time_setting(ctx, line, SECONDS, |c| &mut c.htcp_monitor_max_lease);
    let lease = ctx.config.htcp_monitor_max_lease.value;
    if lease < Duration::from_secs(1) || lease > Duration::from_secs(255) {
        ctx.error(
            &line.location,
            format!("htcp_monitor_max_lease: {lease:?} is not between 1 and 255 seconds (HTCP MON counts seconds in one byte)"),
        );
        ctx.config.htcp_monitor_max_lease = Setting::default_value(Duration::from_secs(60));
    }
}

/// A file path, or `none` for no file (`pid_filename`, `cache_log`).
pub(super) fn path_setting(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    field: Field<Option<std::path::PathBuf>>,
) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    let value = (word.text != "none").then(|| std::path::PathBuf::from(&word.text));
    *field(&mut ctx.config) = Setting::at(value, line.location.clone());
}

pub(super) fn port_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<u16>) {
    let Some(args) = args_between(ctx, line, 1) else {
        return;
    };
    let Some(word) = args.first() else { return };
    match parse_port_number(&word.text) {
        Ok(v) => *field(&mut ctx.config) = Setting::at(v, line.location.clone()),
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

pub(super) fn time_setting(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    spec: TimeSpec,
    field: Field<Duration>,
) {
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

pub(super) fn size_setting(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    default: SizeUnit,
    field: Field<u64>,
) {
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

pub(super) fn policy_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<ReplacementPolicy>) {
    let Some(args) = args_between(ctx, line, 2) else {
        return;
    };
    let words: Vec<&str> = args.iter().map(|t| t.text.as_str()).collect();
    match cache::parse_policy(&words) {
        Ok(v) => *field(&mut ctx.config) = Setting::at(v, line.location.clone()),
        Err(reason) => ctx.error(&line.location, format!("{}: {reason}", line.name())),
    }
}

pub(super) fn hostname_setting(ctx: &mut Ctx<'_, '_>, line: &Line, field: Field<Option<String>>) {
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
pub(super) fn address_setting(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    field: Field<Option<std::net::IpAddr>>,
) {
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
pub(super) fn tcp_outgoing_address(ctx: &mut Ctx<'_, '_>, line: &Line) {
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
        crate::config::OutgoingAddress { address, acls },
        line.location.clone(),
    ));
}

pub(super) fn mcast_groups(ctx: &mut Ctx<'_, '_>, line: &Line) {
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
pub(super) fn check_mcast_interface(ctx: &mut Ctx<'_, '_>) {
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
pub(super) fn hierarchy_stoplist(ctx: &mut Ctx<'_, '_>, line: &Line) {
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

pub(super) fn access_rule(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    field: fn(&mut Config) -> &mut Vec<Located<AccessRule>>,
) {
    let name = line.name().to_string();
    if let Some(rule) = parse_rule(ctx, line, &name, line.args()) {
        field(&mut ctx.config).push(Located::new(rule, line.location.clone()));
    }
}
