//! TLS client options in Squid 5.7's spellings: `cache_peer ... tls
//! tls-cafile=...` (and the legacy `ssl*=` names) and
//! `tls_outgoing_options` (TLS to origin servers, for https:// URLs).
//! The subset cuttle implements is typed here; any other TLS option stays
//! an error, never an option silently ignored on an encrypted link.

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::directives::Ctx;
use super::lexer::Line;
use super::Setting;

/// The lowest TLS version a connection may use. rustls speaks 1.2 and 1.3
/// only, so Squid's 1.0 and 1.1 mean 1.2 in practice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TlsMinVersion {
    #[default]
    Tls12,
    Tls13,
}

/// How cuttle connects over TLS to a peer or an origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsClientOptions {
    /// `tls-domain=` / `domain=`: the name sent as SNI and verified in the
    /// certificate instead of the host's.
    pub domain: Option<String>,
    /// `tls-cafile=` / `cafile=`: extra trusted CAs (PEM), may repeat.
    pub cafiles: Vec<PathBuf>,
    /// `tls-cert=` / `cert=`: client certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// `tls-key=` / `key=`: its private key; without it, `cert` holds both.
    pub key: Option<PathBuf>,
    /// `flags=DONT_VERIFY_PEER`: accept any certificate (loudly warned).
    pub dont_verify_peer: bool,
    /// `tls-default-ca[=off]`, `tls-no-default-ca`: trust the system's CA
    /// store (Squid's default: on).
    pub default_ca: bool,
    pub min_version: TlsMinVersion,
}

impl Default for TlsClientOptions {
    fn default() -> Self {
        TlsClientOptions {
            domain: None,
            cafiles: Vec::new(),
            cert: None,
            key: None,
            dont_verify_peer: false,
            default_ca: true,
            min_version: TlsMinVersion::Tls12,
        }
    }
}

/// What one option did.
pub(crate) enum Applied {
    Done,
    /// Accepted, with a warning for the admin.
    Warn(String),
}

/// Applies one option named without its prefix (`cafile`, `flags`, ...,
/// as `tls_outgoing_options` spells them). `Err` says why it is refused.
pub(crate) fn apply(
    opts: &mut TlsClientOptions,
    key: &str,
    value: Option<&str>,
) -> Result<Applied, String> {
    let needs = |v: Option<&str>| match v {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("{key}= needs a value")),
    };
    match key {
        "domain" => opts.domain = Some(needs(value)?),
        "cafile" => opts.cafiles.push(PathBuf::from(needs(value)?)),
        "cert" => opts.cert = Some(PathBuf::from(needs(value)?)),
        "key" => opts.key = Some(PathBuf::from(needs(value)?)),
        "flags" => {
            for flag in needs(value)?.split([',', ':']) {
                match flag {
                    "DONT_VERIFY_PEER" => opts.dont_verify_peer = true,
                    other => {
                        return Err(format!(
                        "flags={other}: cuttle implements only DONT_VERIFY_PEER; refusing the config rather than ignore a TLS flag"
                    ))
                    }
                }
            }
        }
        "default-ca" => match value {
            None | Some("on") => opts.default_ca = true,
            Some("off") => opts.default_ca = false,
            Some(v) => return Err(format!("default-ca={v}: expected on or off")),
        },
        "no-default-ca" if value.is_none() => opts.default_ca = false,
        "min-version" => match needs(value)?.as_str() {
            "1.2" => opts.min_version = TlsMinVersion::Tls12,
            "1.3" => opts.min_version = TlsMinVersion::Tls13,
            v @ ("1.0" | "1.1") => {
                opts.min_version = TlsMinVersion::Tls12;
                return Ok(Applied::Warn(format!(
                    "min-version={v}: cuttle's TLS (rustls) speaks TLS 1.2 and 1.3 only; a server limited to TLS {v} will be refused"
                )));
            }
            v => return Err(format!("min-version={v}: expected 1.0, 1.1, 1.2 or 1.3")),
        },
        _ => {
            return Err(format!(
                "{key}: cuttle does not implement this TLS option; refusing the config"
            ))
        }
    }
    Ok(Applied::Done)
}

/// The unprefixed name of a `cache_peer` TLS option: `tls-cafile` and the
/// legacy `sslcafile` are `cafile`. `None` for an option that is no TLS
/// option at all.
pub(crate) fn peer_option_name(key: &str) -> Option<&str> {
    if let Some(rest) = key.strip_prefix("tls-") {
        return Some(rest);
    }
    let rest = key.strip_prefix("ssl")?;
    Some(match rest {
        "" => return None,
        other => other,
    })
}

/// The files the options name can be read and hold what they should
/// (certificates, a key): `Err` names the file and why not.
pub(crate) fn check_files(opts: &TlsClientOptions) -> Result<(), String> {
    for ca in &opts.cafiles {
        read_certificates(ca)?;
    }
    if let Some(cert) = &opts.cert {
        read_certificates(cert)?;
        read_key(opts.key.as_ref().unwrap_or(cert))?;
    } else if let Some(key) = &opts.key {
        return Err(format!(
            "key={}: a key without cert= (tls-cert=) has no use",
            key.display()
        ));
    }
    Ok(())
}

/// The certificates in a PEM file; at least one.
pub fn read_certificates(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: no PEM private key in it: {e}", path.display()))
}

/// `tls_outgoing_options option...`: TLS to origin servers. Lines add up,
/// as Squid's do. `domain=` is refused: one name for every origin would
/// fail each other one.
pub(crate) fn parse_tls_outgoing_options(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let mut opts = ctx.config.tls_outgoing_options.value.clone();
    let mut bad = false;
    for word in line.args() {
        let (key, value) = match word.text.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.text.as_str(), None),
        };
        let applied = match key {
            "domain" | "no-default-ca" => Err(format!(
                "{key}: cuttle does not implement this option of tls_outgoing_options; refusing the config"
            )),
            _ => apply(&mut opts, key, value),
        };
        match applied {
            Ok(Applied::Done) => {}
            Ok(Applied::Warn(w)) => ctx.warn(loc, format!("tls_outgoing_options: {w}")),
            Err(e) => {
                ctx.error(loc, format!("tls_outgoing_options: {e}"));
                bad = true;
            }
        }
    }
    if let Err(e) = check_files(&opts) {
        ctx.error(loc, format!("tls_outgoing_options: {e}"));
        bad = true;
    }
    if opts.dont_verify_peer {
        ctx.warn(
            loc,
            "tls_outgoing_options flags=DONT_VERIFY_PEER: certificates of https:// origin servers are NOT verified; anyone on the path can impersonate them".into(),
        );
    }
    if !bad {
        ctx.config.tls_outgoing_options = Setting::at(opts, loc.clone());
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, LoadOptions};

    /// tls_outgoing_options takes the same subset as cache_peer (Squid's
    /// unprefixed names); lines add up; other options stay errors.
    #[test]
    fn tls_outgoing_options_subset() {
        let l = load_str(
            "tls_outgoing_options min-version=1.3 default-ca=off\ntls_outgoing_options flags=DONT_VERIFY_PEER\ntls_outgoing_options cipher=HIGH\ntls_outgoing_options cafile=/nonexistent/ca.pem\ntls_outgoing_options domain=www.example.com\n",
            "squid.conf",
            &LoadOptions::default(),
        );
        let errors: Vec<_> = l
            .errors()
            .map(|d| (d.location.line, d.message.clone()))
            .collect();
        assert_eq!(
            errors.iter().map(|e| e.0).collect::<Vec<_>>(),
            [3, 4, 5],
            "{errors:?}"
        );
        assert!(errors[1].1.contains("/nonexistent/ca.pem"), "{errors:?}");
        let o = &l.config.tls_outgoing_options.value;
        assert_eq!(o.min_version, super::TlsMinVersion::Tls13);
        assert!(!o.default_ca && o.dont_verify_peer);
        assert!(l.warnings().any(|d| d.location.line == 2
            && d.message.contains("DONT_VERIFY_PEER")
            && d.message.contains("NOT verified")));
    }
}
