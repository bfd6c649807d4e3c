//! Logging directives: `access_log` (destination module and place, log format, options, ACLs) and `logformat` definitions.

use super::acl::{parse_acl_refs, AclData, AclRef};
use super::directives::Ctx;
use super::lexer::Line;
use super::values::{parse_size_word, parse_uint};
use super::Located;

/// Where an access_log writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// `none`: do not log what the ACLs match.
    None,
    /// `stdio:PATH` (also a bare path, as Squid assumes).
    Stdio(String),
    /// `daemon:PATH`, via Squid's log_file_daemon helper.
    Daemon(String),
    /// `syslog[:facility.priority]`.
    Syslog(String),
    /// `udp://host:port`.
    Udp(String),
    /// `tcp://host:port`.
    Tcp(String),
    /// Another `module:place`.
    Other { module: String, place: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOnError {
    Die,
    Drop,
}

/// `access_log MODULE:PLACE [options] [format] [acl ...]` or `access_log none [acl ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    pub destination: LogDestination,
    /// A built-in (`squid`, `common`, `combined`, `referrer`, `useragent`,
    /// `icap_squid`) or a `logformat` name. Default `squid`.
    pub format: String,
    /// `buffer-size=`, bytes.
    pub buffer_size: Option<u64>,
    pub on_error: Option<LogOnError>,
    /// `rotate=N`.
    pub rotate: Option<u32>,
    /// Log only transactions matching all of these.
    pub acls: Vec<AclRef>,
}

/// `logformat NAME FORMAT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub name: String,
    /// The format specification as written (rest of the line).
    pub format: String,
}

/// Log formats Squid has without a `logformat` line.
pub(crate) const BUILTIN_FORMATS: &[&str] = &[
    "squid",
    "common",
    "combined",
    "referrer",
    "useragent",
    "icap_squid",
];

fn format_known(ctx: &Ctx<'_, '_>, name: &str) -> bool {
    BUILTIN_FORMATS.contains(&name) || ctx.logformat_index.contains_key(name)
}

fn parse_destination(ctx: &mut Ctx<'_, '_>, line: &Line, spec: &str) -> LogDestination {
    if spec == "none" {
        return LogDestination::None;
    }
    if spec == "syslog" {
        return LogDestination::Syslog(String::new());
    }
    if let Some((module, place)) = spec.split_once(':') {
        let place = place.to_string();
        match module {
            "stdio" => return LogDestination::Stdio(place),
            "daemon" => return LogDestination::Daemon(place),
            "syslog" => return LogDestination::Syslog(place),
            "udp" => return LogDestination::Udp(place),
            "tcp" => return LogDestination::Tcp(place),
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                ctx.warn(
                    &line.location,
                    format!("access_log: \"{m}\" is not a Squid log module (stdio, daemon, syslog, udp, tcp); nothing is logged there"),
                );
                return LogDestination::Other {
                    module: m.to_string(),
                    place,
                };
            }
            _ => {}
        }
    }
    ctx.warn(
        &line.location,
        format!("access_log: \"{spec}\" names no module; Squid assumes stdio:{spec}"),
    );
    LogDestination::Stdio(spec.to_string())
}

/// Parse an `access_log` line (also its old name `cache_access_log`).
pub(crate) fn parse_access_log(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let args = line.args();
    let Some(spec) = args.first() else {
        ctx.error(
            loc,
            "access_log: missing destination (module:place or none)".into(),
        );
        return;
    };
    let destination = parse_destination(ctx, line, &spec.text);
    let mut log = AccessLog {
        destination,
        format: "squid".to_string(),
        buffer_size: None,
        on_error: None,
        rotate: None,
        acls: Vec::new(),
    };
    let mut bad = false;
    let mut index = 1;
    let is_none = log.destination == LogDestination::None;
    if !is_none {
        // Either `key=value` options, or one legacy format name; what follows
        // is the ACL list (Squid's documented rule).
        match args.get(1) {
            Some(t) if !t.text.contains('=') && format_known(ctx, &t.text) => {
                log.format = t.text.clone();
                index = 2;
            }
            _ => {}
        }
        while let Some((key, value)) = args.get(index).and_then(|t| t.text.split_once('=')) {
            index += 1;
            match key {
                "logformat" => {
                    if format_known(ctx, value) {
                        log.format = value.to_string();
                    } else {
                        ctx.error(
                            loc,
                            format!("access_log: log format \"{value}\" is not defined"),
                        );
                        bad = true;
                    }
                }
                "buffer-size" => match parse_size_word(value) {
                    Ok(n) => log.buffer_size = Some(n),
                    Err(e) => {
                        ctx.error(loc, format!("access_log: buffer-size={value}: {e}"));
                        bad = true;
                    }
                },
                "on-error" => match value {
                    "die" => log.on_error = Some(LogOnError::Die),
                    "drop" => log.on_error = Some(LogOnError::Drop),
                    _ => {
                        ctx.error(
                            loc,
                            format!("access_log: on-error={value}: expected die or drop"),
                        );
                        bad = true;
                    }
                },
                "rotate" => match parse_uint(value)
                    .and_then(|n| u32::try_from(n).map_err(|e| e.to_string()))
                {
                    Ok(n) => log.rotate = Some(n),
                    Err(e) => {
                        ctx.error(loc, format!("access_log: rotate={value}: {e}"));
                        bad = true;
                    }
                },
                _ => {
                    ctx.error(loc, format!("access_log: unknown option \"{key}={value}\""));
                    bad = true;
                }
            }
        }
    }
    match parse_acl_refs(ctx, line, "access_log", args.get(index..).unwrap_or(&[])) {
        Some(refs) => log.acls = refs,
        None => bad = true,
    }
    if !bad {
        ctx.config.access_logs.push(Located::new(log, loc.clone()));
    }
}

impl LogDestination {
    /// How warnings name it: `module syslog (local4.info)`, `stdio:PATH`.
    pub fn describe(&self) -> String {
        match self {
            LogDestination::Syslog(p) if p.is_empty() => "module syslog".into(),
            LogDestination::Syslog(p) => format!("module syslog ({p})"),
            LogDestination::Udp(p) => format!("module udp ({p})"),
            LogDestination::Tcp(p) => format!("module tcp ({p})"),
            LogDestination::Other { module, place } => format!("module {module} ({place})"),
            LogDestination::None => "none".into(),
            LogDestination::Stdio(p) => format!("stdio:{p}"),
            LogDestination::Daemon(p) => format!("daemon:{p}"),
        }
    }
}

/// At the end of loading: what the access.log writer will not do as the
/// config asks, so that `cuttle check` says it as `cuttle run` would.
pub(crate) fn check_access_logs(ctx: &mut Ctx<'_, '_>) {
    let squid_redefined = ctx
        .config
        .logformats
        .iter()
        .find(|f| f.name == "squid")
        .map(|f| f.location.clone());
    let mut warnings = Vec::new();
    for log in &ctx.config.access_logs {
        let at = log.location.clone();
        // The log line's ACLs see the request line and client only.
        for r in &log.acls {
            let Some(acl) = ctx.config.acls.get(r.index) else {
                continue;
            };
            if matches!(
                acl.data,
                AclData::Browser(_)
                    | AclData::RefererRegex(_)
                    | AclData::ReqHeader { .. }
                    | AclData::RepHeader { .. }
                    | AclData::HttpStatus(_)
                    | AclData::MaxConn(_)
                    | AclData::SrcDomain(_)
            ) {
                warnings.push((
                    at.clone(),
                    format!(
                        "access_log: ACL \"{}\" ({}) never matches in an access_log line: cuttle checks these against the request line and client address only; use another ACL type here",
                        r.name,
                        acl.data.type_name()
                    ),
                ));
            }
        }
        match &log.destination {
            // An unknown module was warned about when read.
            LogDestination::None | LogDestination::Other { .. } => continue,
            LogDestination::Stdio(_) | LogDestination::Daemon(_) => {}
            other => {
                warnings.push((
                    at,
                    format!(
                        "access_log: {} is not supported by cuttle; nothing is logged there (log to stdio:PATH and ship that file instead)",
                        other.describe()
                    ),
                ));
                continue;
            }
        }
        if log.format != "squid" {
            warnings.push((
                at.clone(),
                format!(
                    "access_log: log format \"{}\" is not supported yet; writing the native squid format instead (name the format squid, or none, to say so)",
                    log.format
                ),
            ));
        } else if let Some(def) = &squid_redefined {
            warnings.push((
                at.clone(),
                format!(
                    "access_log: the \"logformat squid\" redefinition at {def} is not supported; writing the native squid format (delete the redefinition to say so)"
                ),
            ));
        }
    }
    for (at, message) in warnings {
        ctx.warn(&at, message);
    }
}

/// Parse a `logformat NAME FORMAT...` line.
pub(crate) fn parse_logformat(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let Some(name) = line.args().first() else {
        ctx.error(loc, "logformat: missing name".into());
        return;
    };
    let format = line.rest_from(2).to_string();
    if format.is_empty() {
        ctx.error(loc, format!("logformat: \"{}\" has no format", name.text));
        return;
    }
    if BUILTIN_FORMATS.contains(&name.text.as_str()) {
        ctx.warn(
            loc,
            format!(
                "logformat: \"{}\" is a built-in format name; this definition replaces it",
                name.text
            ),
        );
    }
    let first = ctx
        .logformat_index
        .get(&name.text)
        .and_then(|&i| ctx.config.logformats.get(i))
        .map(|f| f.location.clone());
    if let Some(at) = first {
        ctx.error(
            loc,
            format!("logformat: \"{}\" is already defined at {at}", name.text),
        );
        return;
    }
    ctx.logformat_index
        .insert(name.text.clone(), ctx.config.logformats.len());
    ctx.config.logformats.push(Located::new(
        LogFormat {
            name: name.text.clone(),
            format,
        },
        loc.clone(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions, Loaded};

    fn load(text: &str) -> Loaded {
        load_str(text, "t.conf", &LoadOptions::default())
    }

    #[test]
    fn modules_and_legacy_format() {
        let l = load("access_log daemon:/var/log/squid/access.log squid\naccess_log stdio:/dev/stdout\naccess_log none all\naccess_log syslog:local4.info common\n");
        // The one warning: cuttle does not write to syslog.
        let w: Vec<_> = l
            .warnings()
            .map(|d| (d.location.line, d.message.clone()))
            .collect();
        assert!(!l.has_errors() && w.len() == 1, "{:?}", l.diagnostics);
        assert_eq!(w[0].0, 4);
        assert!(w[0]
            .1
            .contains("module syslog (local4.info) is not supported by cuttle"));
        let a = &l.config.access_logs;
        assert_eq!(
            a[0].destination,
            LogDestination::Daemon("/var/log/squid/access.log".into())
        );
        assert_eq!(a[0].format, "squid");
        assert!(a[0].acls.is_empty());
        assert_eq!(
            a[1].destination,
            LogDestination::Stdio("/dev/stdout".into())
        );
        assert_eq!(a[2].destination, LogDestination::None);
        assert_eq!(a[2].acls[0].name, "all");
        assert_eq!(
            a[3].destination,
            LogDestination::Syslog("local4.info".into())
        );
        assert_eq!(a[3].format, "common");
    }

    #[test]
    fn options_custom_format_and_acls() {
        let l = load("logformat mine %ts %ru  # c\nacl lan src 10.0.0.0/8\naccess_log tcp://10.0.0.9:514 logformat=mine buffer-size=64KB on-error=drop rotate=3 lan !localhost\n");
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        // tcp is not written (and so neither is its format nor rotation).
        assert_eq!(l.warnings().count(), 1, "{:?}", l.diagnostics);
        assert_eq!(l.config.logformats[0].format, "%ts %ru");
        let a = &l.config.access_logs[0];
        assert_eq!(a.destination, LogDestination::Tcp("//10.0.0.9:514".into()));
        assert_eq!(a.format, "mine");
        assert_eq!(a.buffer_size, Some(65536));
        assert_eq!(a.on_error, Some(LogOnError::Drop));
        assert_eq!(a.rotate, Some(3));
        assert_eq!(a.acls.len(), 2);
        assert!(a.acls[1].negated);
    }

    #[test]
    fn a_non_format_word_starts_the_acl_list() {
        let l =
            load("acl lan src 10.0.0.0/8\naccess_log stdio:/x lan\naccess_log stdio:/y nosuch\n");
        let e: Vec<_> = l.errors().collect();
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("ACL \"nosuch\" is not defined"));
        assert_eq!(l.config.access_logs[0].acls[0].name, "lan");
    }

    #[test]
    fn errors_and_warnings() {
        let l = load("access_log\naccess_log stdio:/x logformat=nosuch\naccess_log stdio:/x on-error=maybe\naccess_log /var/log/a.log\naccess_log kafka:topic\n");
        let e: Vec<usize> = l.errors().map(|d| d.location.line).collect();
        assert_eq!(e, [1, 2, 3]);
        let w: Vec<usize> = l.warnings().map(|d| d.location.line).collect();
        assert_eq!(w, [4, 5]);
        assert_eq!(
            l.config.access_logs[0].destination,
            LogDestination::Stdio("/var/log/a.log".into())
        );
    }

    #[test]
    fn what_the_writer_does_otherwise_is_a_warning_at_load() {
        let l = load("logformat mine %ts\nlogformat squid %ts %ru\naccess_log stdio:/a logformat=mine rotate=2\naccess_log stdio:/b combined\naccess_log stdio:/c\naccess_log udp://10.0.0.1:514\n");
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        let w: Vec<(usize, String)> = l
            .warnings()
            .map(|d| (d.location.line, d.message.clone()))
            .collect();
        let lines: Vec<usize> = w.iter().map(|(l, _)| *l).collect();
        // rotate=2 is honoured at SIGUSR1: no word about it.
        assert_eq!(lines, [2, 3, 4, 5, 6], "{w:#?}");
        assert!(w[1].1.contains("log format \"mine\" is not supported yet; writing the native squid format instead (name the format squid"));
        assert!(!w.iter().any(|(_, m)| m.contains("rotate=")), "{w:#?}");
        assert!(w[2].1.contains("log format \"combined\""));
        assert!(w[3]
            .1
            .contains("the \"logformat squid\" redefinition at t.conf:2 is not supported"));
        assert!(w[4]
            .1
            .contains("module udp (//10.0.0.1:514) is not supported by cuttle"));
    }

    #[test]
    fn access_log_acls_needing_headers_warn() {
        let l = load("acl ua browser curl\nacl lan src 10.0.0.0/8\naccess_log stdio:/a lan\naccess_log stdio:/b ua\n");
        let w: Vec<(usize, String)> = l
            .warnings()
            .map(|d| (d.location.line, d.message.clone()))
            .collect();
        assert_eq!(w.len(), 1, "{w:#?}");
        assert_eq!(w[0].0, 4);
        assert!(w[0]
            .1
            .contains("ACL \"ua\" (browser) never matches in an access_log line"));
    }

    #[test]
    fn logformat_duplicates() {
        let l = load("logformat a %ts\nlogformat a %tr\nlogformat squid %ts\nlogformat b\n");
        let d: Vec<_> = l
            .diagnostics
            .iter()
            .map(|d| (d.location.line, d.severity))
            .collect();
        use crate::config::Severity::*;
        assert_eq!(d, [(2, Error), (3, Warning), (4, Error)]);
    }
}
