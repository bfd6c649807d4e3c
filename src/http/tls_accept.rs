//! TLS on https_ports: the certificates a port presents (chosen by the
//! client's SNI name, replaced on reconfigure without touching established
//! connections) and the rustls server settings (ALPN `http/1.1`).

use std::sync::{Arc, RwLock};

use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::tls_port::{crypto_provider, load_all};
use crate::config::TlsPort;

/// The certificates of one https_port. The first is the default; another
/// is presented when the client's SNI name is one of its names.
#[derive(Debug)]
pub struct PortCerts {
    current: RwLock<Arc<Vec<Arc<CertifiedKey>>>>,
}

impl PortCerts {
    /// Reads the port's certificates; the error names the file.
    pub fn load(tls: &TlsPort) -> Result<Arc<PortCerts>, String> {
        Ok(Arc::new(PortCerts {
            current: RwLock::new(Arc::new(load_all(tls)?)),
        }))
    }

    /// Reads the certificates again (SIGHUP): new handshakes present them.
    /// On error the port keeps the ones it has.
    pub fn reload(&self, tls: &TlsPort) -> Result<(), String> {
        let fresh = Arc::new(load_all(tls)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn certs(&self) -> Arc<Vec<Arc<CertifiedKey>>> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Whether `certified`'s end-entity certificate is valid for `name`.
fn valid_for(certified: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Some(der) = certified.cert.first() else {
        return false;
    };
    webpki::EndEntityCert::try_from(der)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

/// The certificate for a client that asked for `sni`: the first valid for
/// it, else the first of all.
fn choose(certs: &[Arc<CertifiedKey>], sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
    let default = certs.first()?;
    let chosen = match (certs.len(), sni.and_then(|s| ServerName::try_from(s).ok())) {
        (2.., Some(name)) => certs.iter().find(|c| valid_for(c, &name)),
        _ => None,
    };
    Some(Arc::clone(chosen.unwrap_or(default)))
}

impl ResolvesServerCert for PortCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        choose(&self.certs(), hello.server_name())
    }
}

/// The acceptor of a port presenting `certs`.
pub fn acceptor(certs: Arc<PortCerts>) -> Result<TlsAcceptor, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No TLS 1.3 session tickets: Squid 5.7 built with GnuTLS (Debian's)
    // fails its first read after the handshake when tickets follow it
    // (ERR_READ_ERROR, tests/tls_squid.rs), and keep-alive makes
    // resumption worth little.
    config.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    fn certified(names: &[&str]) -> Arc<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).expect("certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.signing_key.serialize_der()));
        let key = crypto_provider()
            .key_provider
            .load_private_key(key)
            .expect("key");
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(c.cert.der().to_vec())],
            key,
        ))
    }

    #[test]
    fn sni_picks_the_certificate_valid_for_the_name() {
        let certs = vec![
            certified(&["www.example.com"]),
            certified(&["img.example.com", "*.static.example.com"]),
        ];
        let pick = |sni| choose(&certs, sni).expect("a certificate");
        assert!(Arc::ptr_eq(&pick(Some("img.example.com")), &certs[1]));
        assert!(Arc::ptr_eq(&pick(Some("a.static.example.com")), &certs[1]));
        assert!(Arc::ptr_eq(&pick(Some("www.example.com")), &certs[0]));
        assert!(
            Arc::ptr_eq(&pick(Some("other.example.org")), &certs[0]),
            "no match: the first"
        );
        assert!(Arc::ptr_eq(&pick(None), &certs[0]), "no SNI: the first");
        assert!(choose(&[], Some("x")).is_none());
    }
}
