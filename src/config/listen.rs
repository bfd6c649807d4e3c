//! `http_port` and `https_port` lines: the listening address and port, the mode (forward proxy, accelerator, interception), accelerator options, an https_port's certificates, and other options kept as key/value.

use std::net::IpAddr;
use std::path::PathBuf;

use super::directives::Ctx;
use super::lexer::Line;
use super::tls_port::{CertKeyFiles, TlsPort};
use super::values::parse_port_number;
use super::Located;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// Port alone: every local address.
    Any,
    Ip(IpAddr),
    /// A host name (Squid resolves it at start).
    Host(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMode {
    /// A forward proxy port (no mode flag).
    Forward,
    /// `accel`: accelerator / reverse proxy.
    Accel,
    /// `intercept` (or the old `transparent`): NAT interception.
    Intercept,
    /// `tproxy`: Linux TPROXY interception.
    Tproxy,
}

/// Virtual port handling in accelerator mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VPort {
    /// Use the port given in the Host header.
    Off,
    /// `vport`: use this http_port's port number.
    ListeningPort,
    /// `vport=N`.
    Fixed(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPort {
    pub address: ListenAddr,
    pub port: u16,
    pub mode: PortMode,
    /// `defaultsite=`: Host to assume when a request has none.
    pub defaultsite: Option<String>,
    /// Use the Host header for virtual hosting (on by default with accel;
    /// `no-vhost` turns it off).
    pub vhost: bool,
    pub vport: VPort,
    /// `name=`, else the port specification as written.
    pub name: String,
    /// `allow-direct`: accelerated requests may go DIRECT; without it they
    /// go only to parents, as under never_direct (squid-spec 3.2 step 3).
    pub allow_direct: bool,
    /// Every other option, in order (key without `=`, value).
    pub options: Vec<(String, Option<String>)>,
    /// An https_port's certificates; `None` on an http_port.
    pub tls: Option<TlsPort>,
}

/// Why an https_port option is refused.
const TLS_OPTION_REFUSED: &str =
    "cuttle does not implement this TLS option; refusing the config rather than run without it";

/// Options Squid 5 documents for http_port that cuttle keeps as key/value.
const OTHER_SQUID_OPTIONS: &[&str] = &[
    "protocol",
    "act-as-origin",
    "ignore-cc",
    "require-proxy-header",
    "tcpkeepalive",
    "connection-auth",
    "disable-pmtu-discovery",
    "worker-queues",
    "generate-host-certificates",
    "dynamic_cert_mem_cache_size",
    "cert",
    "key",
    "cipher",
    "options",
    "clientca",
    "cafile",
    "capath",
    "crlfile",
    "dhparams",
    "sslflags",
    "sslcontext",
    "version",
];

/// Split `[ADDR:]PORT`, `HOST:PORT` or `[IPV6]:PORT`.
fn parse_spec(spec: &str) -> Result<(ListenAddr, u16), String> {
    let (addr, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (inner, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("\"{spec}\" is not [IPv6-address]:port"))?;
        let ip: IpAddr = inner
            .parse()
            .map_err(|_| format!("\"{inner}\" is not an IPv6 address"))?;
        (ListenAddr::Ip(ip), port)
    } else if let Some((host, port)) = spec.rsplit_once(':') {
        if host.contains(':') {
            return Err(format!(
                "\"{spec}\": write an IPv6 address in brackets, as [addr]:port"
            ));
        }
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => ListenAddr::Ip(ip),
            Err(_)
                if !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
            {
                ListenAddr::Host(host.to_ascii_lowercase())
            }
            Err(_) => return Err(format!("\"{host}\" is not an address or host name")),
        };
        (addr, port)
    } else {
        (ListenAddr::Any, spec)
    };
    let port = parse_port_number(port)?;
    if port == 0 {
        return Err(format!("\"{spec}\" needs a non-zero port"));
    }
    Ok((addr, port))
}

/// Parse an `http_port` line.
pub(crate) fn parse_http_port(ctx: &mut Ctx<'_, '_>, line: &Line) {
    parse_port(ctx, line, false);
}

/// Parse an `https_port` line: an http_port with certificates.
pub(crate) fn parse_https_port(ctx: &mut Ctx<'_, '_>, line: &Line) {
    parse_port(ctx, line, true);
}

fn parse_port(ctx: &mut Ctx<'_, '_>, line: &Line, https: bool) {
    let loc = &line.location;
    let directive = if https { "https_port" } else { "http_port" };
    let Some(spec) = line.args().first() else {
        ctx.error(loc, format!("{directive}: missing port"));
        return;
    };
    let (address, port) = match parse_spec(&spec.text) {
        Ok(v) => v,
        Err(reason) => {
            ctx.error(loc, format!("{directive}: {reason}"));
            return;
        }
    };
    let mut p = HttpPort {
        address,
        port,
        mode: PortMode::Forward,
        defaultsite: None,
        vhost: false,
        vport: VPort::Off,
        name: spec.text.clone(),
        allow_direct: false,
        options: Vec::new(),
        tls: None,
    };
    let mut certs: Vec<CertKeyFiles> = Vec::new();
    let mut no_vhost = false;
    let mut implied_accel: Vec<&str> = Vec::new();
    let mut modes: Vec<PortMode> = Vec::new();
    let mut bad = false;
    for opt in line.args().get(1..).unwrap_or(&[]) {
        let text = opt.text.as_str();
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (text, None),
        };
        match (key, value) {
            ("accel", None) => modes.push(PortMode::Accel),
            ("intercept" | "transparent", None) => modes.push(PortMode::Intercept),
            ("tproxy", None) => modes.push(PortMode::Tproxy),
            ("tls-cert" | "cert", Some(v)) if https && !v.is_empty() => certs.push(CertKeyFiles {
                cert: PathBuf::from(v),
                key: None,
            }),
            ("tls-key" | "key", Some(v)) if https && !v.is_empty() => match certs.last_mut() {
                Some(CertKeyFiles {
                    key: key @ None, ..
                }) => *key = Some(PathBuf::from(v)),
                _ => {
                    ctx.error(
                        loc,
                        format!("https_port: {text}: a tls-key= follows the tls-cert= it is for"),
                    );
                    bad = true;
                }
            },
            // TLS options cuttle does not implement: a port asking for one
            // must not run without it.
            (k, _)
                if https
                    && (k.starts_with("tls-")
                        || k.starts_with("ssl")
                        || matches!(
                            k,
                            "cert"
                                | "key"
                                | "generate-host-certificates"
                                | "dynamic_cert_mem_cache_size"
                                | "cipher"
                                | "options"
                                | "clientca"
                                | "cafile"
                                | "capath"
                                | "crlfile"
                                | "dhparams"
                                | "version"
                        )) =>
            {
                ctx.error(loc, format!("https_port: {text}: {TLS_OPTION_REFUSED}"));
                bad = true;
            }
            // No TLS on an http_port: a port asking for it must not run without it.
            (k, _)
                if k.starts_with("tls-")
                    || k.starts_with("ssl")
                    || matches!(
                        k,
                        "cert"
                            | "key"
                            | "generate-host-certificates"
                            | "dynamic_cert_mem_cache_size"
                    ) =>
            {
                ctx.error(loc, format!("http_port: {text}: {}", super::peer::NO_TLS));
                bad = true;
            }
            ("allow-direct", None) => p.allow_direct = true,
            ("defaultsite", Some(v)) => p.defaultsite = Some(v.to_string()),
            ("vhost", None) => {
                p.vhost = true;
                implied_accel.push("vhost");
            }
            ("no-vhost", None) => no_vhost = true,
            ("vport", None) => {
                p.vport = VPort::ListeningPort;
                implied_accel.push("vport");
            }
            ("vport", Some(v)) => match parse_port_number(v) {
                Ok(n) => {
                    p.vport = VPort::Fixed(n);
                    implied_accel.push("vport");
                }
                Err(reason) => {
                    ctx.error(loc, format!("http_port: vport={v}: {reason}"));
                    bad = true;
                }
            },
            ("name", Some(v)) if !v.is_empty() => p.name = v.to_string(),
            (k, v) => {
                let known = OTHER_SQUID_OPTIONS.contains(&k);
                if !known {
                    ctx.warn(
                        loc,
                        format!("{directive}: unknown option \"{text}\" kept but not used"),
                    );
                }
                p.options.push((k.to_string(), v.map(str::to_string)));
            }
        }
    }
    let accel = modes.contains(&PortMode::Accel);
    let intercepting = modes
        .iter()
        .any(|m| matches!(m, PortMode::Intercept | PortMode::Tproxy));
    if accel && intercepting {
        ctx.error(
            loc,
            format!("{directive}: accel cannot be combined with intercept or tproxy on one port"),
        );
        bad = true;
    }
    if modes.contains(&PortMode::Intercept) && modes.contains(&PortMode::Tproxy) {
        ctx.error(
            loc,
            format!("{directive}: intercept and tproxy exclude each other"),
        );
        bad = true;
    }
    p.mode = modes.first().copied().unwrap_or(PortMode::Forward);
    if !implied_accel.is_empty() && !accel {
        // Squid accepts these as the old way of asking for accel mode.
        ctx.warn(
            loc,
            format!(
                "{directive}: {} without accel is deprecated; Squid treats the port as accel",
                implied_accel.join(" and ")
            ),
        );
        if intercepting {
            bad = true;
        } else {
            p.mode = PortMode::Accel;
        }
    }
    if p.defaultsite.is_some() && p.mode != PortMode::Accel {
        ctx.error(loc, format!("{directive}: defaultsite= requires accel"));
        bad = true;
    }
    if p.allow_direct && p.mode != PortMode::Accel {
        ctx.error(loc, format!("{directive}: allow-direct requires accel"));
        bad = true;
    }
    if p.mode == PortMode::Accel {
        p.vhost = !no_vhost;
    }
    if https {
        if certs.is_empty() {
            // Squid: "https_port requires a cert= parameter".
            ctx.error(loc, "https_port requires a tls-cert= parameter".into());
            bad = true;
        }
        // Read now, so `cuttle check` and the start name a bad file.
        if !bad {
            let unreadable: Vec<String> = certs
                .iter()
                .filter_map(|files| super::tls_port::load_certified_key(files).err())
                .collect();
            for reason in unreadable {
                ctx.error(loc, format!("https_port {}: {reason}", spec.text));
                bad = true;
            }
        }
        p.tls = Some(TlsPort { certs });
    }
    if bad {
        return;
    }
    ctx.config.http_ports.push(Located::new(p, loc.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions, Loaded};

    fn load(text: &str) -> Loaded {
        load_str(text, "t.conf", &LoadOptions::default())
    }

    #[test]
    fn address_forms() {
        assert_eq!(parse_spec("3128").unwrap(), (ListenAddr::Any, 3128));
        assert_eq!(
            parse_spec("127.0.0.1:8080").unwrap(),
            (ListenAddr::Ip("127.0.0.1".parse().unwrap()), 8080)
        );
        assert_eq!(
            parse_spec("[::1]:3128").unwrap(),
            (ListenAddr::Ip("::1".parse().unwrap()), 3128)
        );
        assert_eq!(
            parse_spec("Proxy.example:3128").unwrap(),
            (ListenAddr::Host("proxy.example".into()), 3128)
        );
        assert!(parse_spec("::1:3128").unwrap_err().contains("brackets"));
        assert!(parse_spec("[::1]3128").is_err());
        assert!(parse_spec("0").is_err());
        assert!(parse_spec("70000").is_err());
        assert!(parse_spec("x").is_err());
    }

    #[test]
    fn accelerator_options() {
        let l = load("http_port 80 accel defaultsite=www.example.com vhost name=front\nhttp_port 81 accel allow-direct\n");
        assert!(
            !l.has_errors() && l.warnings().count() == 0,
            "{:?}",
            l.diagnostics
        );
        let p = &l.config.http_ports[0];
        assert_eq!(p.mode, PortMode::Accel);
        assert_eq!(p.defaultsite.as_deref(), Some("www.example.com"));
        assert!(p.vhost);
        assert_eq!(p.name, "front");
        assert_eq!(p.vport, VPort::Off);
        assert!(!p.allow_direct && p.options.is_empty());
        assert!(l.config.http_ports[1].allow_direct);
        assert!(l.config.http_ports[1].options.is_empty());
    }

    #[test]
    fn vhost_and_vport_imply_accel_with_a_warning() {
        let l = load("http_port 3128 vhost vport=80\n");
        assert!(!l.has_errors());
        let w: Vec<_> = l.warnings().collect();
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("vhost and vport without accel"));
        let p = &l.config.http_ports[0];
        assert_eq!(p.mode, PortMode::Accel);
        assert_eq!(p.vport, VPort::Fixed(80));
        assert_eq!(p.name, "3128");
    }

    #[test]
    fn other_options_are_kept() {
        let l = load("http_port 3128 intercept tcpkeepalive=60,30,3 sparkle=1\n");
        assert!(!l.has_errors());
        assert_eq!(l.warnings().count(), 1, "only sparkle is unknown to Squid");
        let p = &l.config.http_ports[0];
        assert_eq!(p.mode, PortMode::Intercept);
        assert_eq!(
            p.options,
            [
                ("tcpkeepalive".to_string(), Some("60,30,3".to_string())),
                ("sparkle".to_string(), Some("1".to_string()))
            ]
        );
    }

    /// Until cuttle speaks TLS, a port asking for it is an error naming
    /// the line (issue 17), and so are the TLS-only directives.
    #[test]
    fn tls_refuses_the_config() {
        let l = load(
            "http_port 3128 ssl-bump tls-cert=/c.pem\nhttp_port 3129 cert=/c.pem\nsslproxy_cafile /x.pem\ntls_outgoing_options cipher=HIGH\nhttp_port 3130\n",
        );
        let lines: Vec<usize> = l.errors().map(|d| d.location.line).collect();
        assert_eq!(lines, [1, 1, 2, 3, 4], "{:?}", l.diagnostics);
        assert!(l
            .errors()
            .all(|d| d.message.contains("cuttle does not implement")));
    }

    /// A throwaway certificate and key, as PEM files in a new directory.
    fn cert_files(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("cuttle-listen-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["www.example.com".to_string()]).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        (dir, cert, key)
    }

    #[test]
    fn https_port_takes_certificates_and_the_http_port_options() {
        let (dir, cert, key) = cert_files("ok");
        let both = dir.join("both.pem");
        let text =
            std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap();
        std::fs::write(&both, text).unwrap();
        let l = load(&format!(
            "https_port 127.0.0.1:443 accel defaultsite=www.example.com name=tls tls-cert={c} tls-key={k} cert={b}\nhttps_port 3129 tls-cert={c} key={k}\n",
            c = cert.display(),
            k = key.display(),
            b = both.display()
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            !l.has_errors() && l.warnings().count() == 0,
            "{:?}",
            l.diagnostics
        );
        let p = &l.config.http_ports[0];
        assert_eq!(
            (p.mode, p.name.as_str(), p.vhost),
            (PortMode::Accel, "tls", true)
        );
        let tls = p.tls.as_ref().unwrap();
        assert_eq!(
            tls.certs,
            [
                CertKeyFiles {
                    cert: cert.clone(),
                    key: Some(key.clone())
                },
                CertKeyFiles {
                    cert: both,
                    key: None
                },
            ]
        );
        let forward = &l.config.http_ports[1];
        assert_eq!(forward.mode, PortMode::Forward, "TLS to a forward proxy");
        assert!(forward.tls.is_some());
        assert!(l.config.http_ports.iter().all(|p| p.options.is_empty()));
    }

    #[test]
    fn https_port_errors_name_the_line_and_file() {
        let (dir, cert, key) = cert_files("bad");
        let (other_dir, _, other_key) = cert_files("other");
        let (c, k) = (cert.display(), key.display());
        let l = load(&format!(
            "https_port 443 accel defaultsite=x\n\
             https_port 444 accel defaultsite=x tls-cert={c} tls-key={d}/missing.pem\n\
             https_port 445 accel defaultsite=x tls-cert={c}\n\
             https_port 446 accel defaultsite=x tls-cert={c} tls-key={o}\n\
             https_port 447 accel defaultsite=x tls-key={k} tls-cert={c}\n\
             https_port 448 accel defaultsite=x ssl-bump tls-cert={c} tls-key={k} clientca={c}\n\
             http_port 449 tls-cert={c}\n",
            d = dir.display(),
            o = other_key.display(),
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&other_dir).unwrap();
        let errors: Vec<(usize, &str)> = l
            .errors()
            .map(|d| (d.location.line, d.message.as_str()))
            .collect();
        assert_eq!(errors.len(), 8, "{errors:#?}");
        assert!(errors[0]
            .1
            .contains("https_port requires a tls-cert= parameter"));
        assert!(errors[1].1.contains(&format!(
            "https_port 444: unable to load private key file '{}/missing.pem'",
            dir.display()
        )));
        assert!(errors[2]
            .1
            .contains(&format!("missing private key in '{c}'")));
        assert!(
            errors[3].1.contains("does not match the certificate"),
            "{errors:?}"
        );
        assert!(errors[4]
            .1
            .contains("a tls-key= follows the tls-cert= it is for"));
        assert!(errors[5]
            .1
            .contains("ssl-bump: cuttle does not implement this TLS option"));
        assert!(errors[6].1.contains("clientca="));
        assert_eq!(
            errors.iter().map(|e| e.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 6, 7]
        );
        assert!(l.config.http_ports.is_empty());
    }

    #[test]
    fn errors() {
        let l = load("http_port\nhttp_port 80 defaultsite=x\nhttp_port 80 accel intercept\nhttp_port 80 accel vport=x\nhttp_port 80 allow-direct\n");
        let lines: Vec<usize> = l.errors().map(|d| d.location.line).collect();
        assert_eq!(lines, [1, 2, 3, 4, 5]);
        assert!(l.config.http_ports.is_empty());
    }
}
