//! The `acl` line: type names (Squid's, renamed and evaluated ones), option flags, values (inline or from a file), regex compilation, and defining or extending the named ACL.

use regex::bytes::{Regex as BytesRegex, RegexBuilder as BytesRegexBuilder};

use super::values::{
    is_tchar, parse_domain, parse_ip_entry, parse_mac, parse_method, parse_port_range,
    parse_status_range, parse_time_specs,
};
use super::{Acl, AclData, AclRegex, DomainIndex, IpAclEntry, PROTOCOL_NAMES, SQUID_ACL_TYPES};
use crate::config::directives::Ctx;
use crate::config::lexer::{value_file_words, Line, Token, TokenKind};
use crate::config::{Located, Location};

/// Leading option flags of an `acl` line.
#[derive(Debug, Default)]
struct Flags {
    no_lookup: bool,
    /// For regex types: `-i` seen last (until a `+i`).
    case_insensitive: bool,
}

fn is_flag(t: &Token) -> bool {
    t.kind == TokenKind::Bare
        && (matches!(t.text.as_str(), "-i" | "+i" | "-n" | "--") || t.text.starts_with("-m"))
}

/// ACL types cuttle evaluates (typed in [`AclData`]); the other Squid types
/// are kept as [`AclData::Other`].
const EVALUATED_TYPES: &[&str] = &[
    "src",
    "dst",
    "dstdomain",
    "port",
    "method",
    "proto",
    "localport",
    "localip",
    "myportname",
    "url_regex",
    "urlpath_regex",
    "dstdom_regex",
    "browser",
    "referer_regex",
    "req_header",
    "rep_header",
    "http_status",
    "time",
    "maxconn",
    "srcdomain",
    "arp",
];

/// ACL types Squid 5 renamed, read under the new name with Squid's
/// "UPGRADE" warning: (old, current). From Squid's ACL::ParseAclLine.
const RENAMED_TYPES: &[(&str, &str)] = &[
    ("myip", "localip"),
    ("myport", "localport"),
    ("clientside_mark", "client_connection_mark"),
];

/// The option flags each evaluated type accepts (Squid's per-type options).
fn flag_allowed(acl_type: &str, flag: &str) -> bool {
    match acl_type {
        "dst" => flag == "-n",
        "dstdomain" => flag == "-n" || flag == "-i",
        "dstdom_regex" => matches!(flag, "-n" | "-i" | "+i"),
        "url_regex" | "urlpath_regex" | "browser" | "referer_regex" => {
            matches!(flag, "-i" | "+i")
        }
        _ => false,
    }
}

/// A regex error message on one line (the regex crate's are multi-line).
fn regex_error_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// Compile one regex ACL pattern the way Squid's regcomp(REG_EXTENDED)
/// reads it as closely as the regex crate allows: bytes, no Unicode
/// classes, ASCII case folding, `.` also matching a newline; with limits so
/// a hostile pattern cannot take unbounded memory.
pub(crate) fn compile_acl_regex(
    pattern: &str,
    case_insensitive: bool,
) -> Result<BytesRegex, String> {
    BytesRegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .unicode(false)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| regex_error_line(&e))
}

/// The values of an `acl` line after its flags: inline tokens, plus the
/// words of any quoted value file (`"path"` when
/// configuration_includes_quoted_values is off, or `parameters("path")`).
fn collect_values(ctx: &mut Ctx<'_, '_>, line: &Line, tokens: &[Token]) -> Vec<Located<String>> {
    let quoted_is_file = !ctx.config.configuration_includes_quoted_values.value;
    let mut values = Vec::new();
    for t in tokens {
        let is_file =
            t.kind == TokenKind::ParamsFile || (t.kind == TokenKind::Quoted && quoted_is_file);
        if !is_file {
            values.push(Located::new(t.text.clone(), line.location.clone()));
            continue;
        }
        let path = ctx.files.resolve(&t.text, &line.location.file);
        match ctx.files.read(&path) {
            Ok(text) => {
                for (n, word) in value_file_words(&text) {
                    values.push(Located::new(word, Location::new(&path, n)));
                }
            }
            Err(reason) => ctx.error(&line.location, format!("acl: {reason}")),
        }
    }
    values
}

/// Parse an `acl NAME TYPE [flags] values...` line into the ACL table.
pub(crate) fn parse_acl(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let args = line.args();
    let Some(name_tok) = args.first() else {
        ctx.error(loc, "acl: missing ACL name".into());
        return;
    };
    let name = name_tok.text.clone();
    let Some(type_tok) = args.get(1) else {
        ctx.error(loc, format!("acl: ACL \"{name}\" has no type"));
        return;
    };
    let mut acl_type = type_tok.text.as_str();
    if !SQUID_ACL_TYPES.contains(&acl_type) {
        ctx.error(loc, format!("acl: \"{acl_type}\" is not an ACL type"));
        return;
    }
    if let Some(&(old, current)) = RENAMED_TYPES.iter().find(|(old, _)| *old == acl_type) {
        ctx.warn(
            loc,
            format!("acl: ACL type {old} has been renamed to {current}; read as {current}"),
        );
        acl_type = current;
    }
    let rest = args.get(2..).unwrap_or(&[]);
    let typed = EVALUATED_TYPES.contains(&acl_type);
    let regex_type = matches!(
        acl_type,
        "url_regex"
            | "urlpath_regex"
            | "dstdom_regex"
            | "browser"
            | "referer_regex"
            | "req_header"
            | "rep_header"
    );

    let mut flags = Flags::default();
    let mut start = 0;
    if typed {
        while let Some(t) = rest.get(start).filter(|t| is_flag(t)) {
            start += 1;
            if t.text == "--" {
                break;
            }
            if !flag_allowed(acl_type, &t.text) {
                ctx.error(
                    loc,
                    format!(
                        "acl: option {} is not supported by ACL type {acl_type}",
                        t.text
                    ),
                );
                continue;
            }
            flags.no_lookup |= t.text == "-n";
            if regex_type && t.text != "-n" {
                flags.case_insensitive = t.text == "-i";
            }
        }
    }
    if regex_type && ctx.config.configuration_includes_quoted_values.value {
        // Squid: "FATAL: Can not read regex expression while
        // configuration_includes_quoted_values is enabled".
        ctx.error(
            loc,
            format!("acl: a {acl_type} ACL cannot be read while configuration_includes_quoted_values is on (Squid refuses it too)"),
        );
        return;
    }
    let values = collect_values(ctx, line, rest.get(start..).unwrap_or(&[]));
    if values.is_empty() {
        ctx.warn(
            loc,
            format!("acl: ACL \"{name}\" ({acl_type}) has no values"),
        );
    }

    // Parse each value with `parse`, reporting failures at the value's place.
    fn each<T>(
        ctx: &mut Ctx<'_, '_>,
        values: Vec<Located<String>>,
        mut parse: impl FnMut(&mut Ctx<'_, '_>, &Located<String>) -> Result<Option<T>, String>,
    ) -> Vec<Located<T>> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            match parse(ctx, &v) {
                Ok(Some(x)) => out.push(Located::new(x, v.location)),
                Ok(None) => {}
                Err(reason) => ctx.error(&v.location, format!("acl: {reason}")),
            }
        }
        out
    }
    let ip = |ctx: &mut Ctx<'_, '_>, v: &Located<String>| -> Result<Option<IpAclEntry>, String> {
        let (entry, warning) = parse_ip_entry(&v.value)?;
        if let Some(w) = warning {
            ctx.warn(&v.location, format!("acl: {w}"));
        }
        Ok(Some(entry))
    };
    let port = |_: &mut Ctx<'_, '_>, v: &Located<String>| parse_port_range(&v.value).map(Some);
    let mut case_insensitive = flags.case_insensitive;
    let mut pattern = |_: &mut Ctx<'_, '_>, v: &Located<String>| match v.value.as_str() {
        // Squid reads -i and +i anywhere among the patterns, for those after.
        "-i" => {
            case_insensitive = true;
            Ok(None)
        }
        "+i" => {
            case_insensitive = false;
            Ok(None)
        }
        p => compile_acl_regex(p, case_insensitive)
            .map(|regex| {
                Some(AclRegex {
                    pattern: p.to_string(),
                    case_insensitive,
                    regex,
                })
            })
            .map_err(|e| format!("bad regular expression \"{p}\": {e}")),
    };

    let data = match acl_type {
        "src" => AclData::Src(each(ctx, values, ip)),
        "dst" => AclData::Dst {
            entries: each(ctx, values, ip),
            no_lookup: flags.no_lookup,
        },
        "localip" => AclData::LocalIp(each(ctx, values, ip)),
        "dstdomain" => AclData::DstDomain {
            entries: each(ctx, values, |_, v| parse_domain(&v.value).map(Some)),
            no_lookup: flags.no_lookup,
            index: DomainIndex::default(),
        },
        "port" => AclData::Port(each(ctx, values, port)),
        "localport" => AclData::LocalPort(each(ctx, values, port)),
        "method" => AclData::Method(each(ctx, values, |_, v| parse_method(&v.value).map(Some))),
        "proto" => AclData::Proto(each(ctx, values, |ctx, v| {
            match PROTOCOL_NAMES
                .iter()
                .find(|p| p.eq_ignore_ascii_case(&v.value))
            {
                Some(p) => Ok(Some(p.to_string())),
                None => {
                    // Squid: "WARNING: Ignoring unknown protocol".
                    ctx.warn(
                        &v.location,
                        format!(
                            "acl: unknown protocol \"{}\" in ACL \"{name}\" ignored, as Squid does",
                            v.value
                        ),
                    );
                    Ok(None)
                }
            }
        })),
        "myportname" => AclData::MyPortName(each(ctx, values, |_, v| Ok(Some(v.value.clone())))),
        "url_regex" => AclData::UrlRegex(each(ctx, values, &mut pattern)),
        "urlpath_regex" => AclData::UrlPathRegex(each(ctx, values, &mut pattern)),
        "dstdom_regex" => AclData::DstDomRegex {
            patterns: each(ctx, values, &mut pattern),
            no_lookup: flags.no_lookup,
        },
        "browser" => AclData::Browser(each(ctx, values, &mut pattern)),
        "referer_regex" => AclData::RefererRegex(each(ctx, values, &mut pattern)),
        "req_header" | "rep_header" => {
            let mut values = values.into_iter();
            let Some(header) = values.next() else {
                ctx.error(loc, format!("acl: {acl_type} needs a header name"));
                return;
            };
            if header.value.is_empty() || !header.value.bytes().all(is_tchar) {
                ctx.error(
                    &header.location,
                    format!("acl: \"{}\" is not a header name", header.value),
                );
                return;
            }
            let patterns = each(ctx, values.collect(), &mut pattern);
            if patterns.is_empty() {
                ctx.error(
                    loc,
                    format!(
                        "acl: {acl_type} {} needs a regular expression",
                        header.value
                    ),
                );
                return;
            }
            let header = header.value.to_ascii_lowercase();
            if acl_type == "req_header" {
                AclData::ReqHeader { header, patterns }
            } else {
                AclData::RepHeader { header, patterns }
            }
        }
        "http_status" => AclData::HttpStatus(each(ctx, values, |_, v| {
            parse_status_range(&v.value).map(Some)
        })),
        "time" => match parse_time_specs(&values) {
            Ok(specs) => AclData::Time(specs),
            Err((at, reason)) => {
                ctx.error(&at, format!("acl: {reason}"));
                return;
            }
        },
        "maxconn" => {
            let mut values = values.into_iter();
            let Some(first) = values.next() else {
                return;
            };
            let Ok(limit) = first.value.parse::<u64>() else {
                ctx.error(
                    &first.location,
                    format!(
                        "acl: maxconn takes a number of connections, not \"{}\"",
                        first.value
                    ),
                );
                return;
            };
            if let Some(extra) = values.next() {
                // Squid: "Ignoring data after max client connections".
                ctx.warn(
                    &extra.location,
                    format!("acl: maxconn takes one number; \"{}\" and what follows are ignored, as Squid does", extra.value),
                );
            }
            AclData::MaxConn(Located::new(limit, first.location))
        }
        "srcdomain" => {
            AclData::SrcDomain(each(ctx, values, |_, v| parse_domain(&v.value).map(Some)))
        }
        "arp" => AclData::Arp(each(ctx, values, |_, v| parse_mac(&v.value).map(Some))),
        other => AclData::Other {
            acl_type: other.to_string(),
            values,
        },
    };
    add_acl(ctx, loc, name, data);
}

/// Define a new ACL or append to an existing one of the same type.
fn add_acl(ctx: &mut Ctx<'_, '_>, loc: &Location, name: String, data: AclData) {
    let key = name.to_ascii_lowercase();
    let Some(&index) = ctx.acl_index.get(&key) else {
        if let AclData::Other { acl_type, .. } = &data {
            ctx.warn(
                loc,
                format!(
                    "acl: ACL \"{name}\" has type {acl_type}, which cuttle does not evaluate yet"
                ),
            );
        }
        ctx.acl_index.insert(key, ctx.config.acls.len());
        ctx.config.acls.push(Acl {
            name,
            location: loc.clone(),
            data,
            builtin: false,
        });
        return;
    };
    let Some(existing) = ctx.config.acls.get_mut(index) else {
        return;
    };
    let builtin = existing.builtin;
    let old_type = existing.data.type_name().to_string();
    if old_type != data.type_name() {
        let first = existing.location.clone();
        if builtin {
            ctx.warn(
                loc,
                format!(
                    "acl: \"{name}\" is predefined by Squid as a {old_type} ACL; this {} definition is ignored",
                    data.type_name()
                ),
            );
        } else {
            ctx.error(
                loc,
                format!(
                    "acl: ACL \"{name}\" is already defined with type {old_type} at {first}; it cannot be redefined as {}",
                    data.type_name()
                ),
            );
        }
        return;
    }
    let mut header_conflict = None;
    let appended = match (&mut existing.data, data) {
        (AclData::Src(a), AclData::Src(b)) => {
            a.extend(b);
            true
        }
        (
            AclData::Dst {
                entries: a,
                no_lookup: na,
            },
            AclData::Dst {
                entries: b,
                no_lookup: nb,
            },
        ) => {
            a.extend(b);
            *na |= nb;
            true
        }
        (
            AclData::DstDomain {
                entries: a,
                no_lookup: na,
                ..
            },
            AclData::DstDomain {
                entries: b,
                no_lookup: nb,
                ..
            },
        ) => {
            a.extend(b);
            *na |= nb;
            true
        }
        (
            AclData::DstDomRegex {
                patterns: a,
                no_lookup: na,
            },
            AclData::DstDomRegex {
                patterns: b,
                no_lookup: nb,
            },
        ) => {
            a.extend(b);
            *na |= nb;
            true
        }
        (AclData::Port(a), AclData::Port(b)) | (AclData::LocalPort(a), AclData::LocalPort(b)) => {
            a.extend(b);
            true
        }
        (AclData::LocalIp(a), AclData::LocalIp(b)) => {
            a.extend(b);
            true
        }
        (AclData::Method(a), AclData::Method(b))
        | (AclData::Proto(a), AclData::Proto(b))
        | (AclData::MyPortName(a), AclData::MyPortName(b)) => {
            a.extend(b);
            true
        }
        (AclData::UrlRegex(a), AclData::UrlRegex(b))
        | (AclData::UrlPathRegex(a), AclData::UrlPathRegex(b)) => {
            a.extend(b);
            true
        }
        (AclData::Browser(a), AclData::Browser(b))
        | (AclData::RefererRegex(a), AclData::RefererRegex(b)) => {
            a.extend(b);
            true
        }
        (
            AclData::ReqHeader {
                header: ha,
                patterns: a,
            },
            AclData::ReqHeader {
                header: hb,
                patterns: b,
            },
        )
        | (
            AclData::RepHeader {
                header: ha,
                patterns: a,
            },
            AclData::RepHeader {
                header: hb,
                patterns: b,
            },
        ) => {
            if *ha != hb {
                header_conflict = Some(format!("acl: ACL \"{name}\" tests header {ha}; one ACL cannot test another header ({hb}): define a second ACL"));
                false
            } else {
                a.extend(b);
                true
            }
        }
        (AclData::HttpStatus(a), AclData::HttpStatus(b)) => {
            a.extend(b);
            true
        }
        (AclData::Time(a), AclData::Time(b)) => {
            a.extend(b);
            true
        }
        (AclData::MaxConn(a), AclData::MaxConn(b)) => {
            *a = b;
            true
        }
        (AclData::SrcDomain(a), AclData::SrcDomain(b)) => {
            a.extend(b);
            true
        }
        (AclData::Arp(a), AclData::Arp(b)) => {
            a.extend(b);
            true
        }
        (AclData::Other { values: a, .. }, AclData::Other { values: b, .. }) => {
            a.extend(b);
            true
        }
        _ => false,
    };
    if let Some(message) = header_conflict {
        ctx.error(loc, message);
        return;
    }
    // Squid appends to its predefined ACLs silently, but adding to `all` or
    // `localhost` is a leftover from Squid 2.x/3.0 configs worth pointing out.
    // CONNECT is left alone: every Squid 3 config had to define it.
    if builtin && !name.eq_ignore_ascii_case("CONNECT") {
        let what = if appended {
            "this line adds to it"
        } else {
            "this line is ignored"
        };
        ctx.warn(
            loc,
            format!("acl: \"{name}\" is predefined by Squid; {what}"),
        );
    }
}
