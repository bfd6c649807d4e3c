//! https_port certificates: the `tls-cert=`/`tls-key=` pairs of a line, and
//! reading them (PEM; a key that matches its certificate), done at `cuttle
//! check`, at start and again at each reconfigure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// One certificate of an https_port and where its private key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyFiles {
    /// `tls-cert=` (or `cert=`): the certificate, then any intermediates.
    pub cert: PathBuf,
    /// `tls-key=` (or `key=`); `None`: the key is in the certificate's file,
    /// as Squid assumes without `tls-key=`.
    pub key: Option<PathBuf>,
}

impl CertKeyFiles {
    /// The file the private key is read from.
    pub fn key_path(&self) -> &Path {
        self.key.as_deref().unwrap_or(&self.cert)
    }
}

/// The TLS side of an https_port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPort {
    /// In order: the first is presented when no other matches the client's
    /// SNI name (or the client sends none).
    pub certs: Vec<CertKeyFiles>,
}

/// The rustls crypto provider cuttle uses (aws-lc-rs, never ring).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a certificate chain and its key; the error names the file, in
/// Squid's words where it has them.
pub fn load_certified_key(files: &CertKeyFiles) -> Result<Arc<CertifiedKey>, String> {
    let cert_path = files.cert.display();
    let cert_pem = std::fs::read(&files.cert)
        .map_err(|e| format!("unable to load certificate file '{cert_path}': {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unable to load certificate file '{cert_path}': {e}"))?;
    if chain.is_empty() {
        return Err(format!("missing certificate in '{cert_path}'"));
    }
    let key_path = files.key_path().display();
    let key_pem = match &files.key {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("unable to load private key file '{key_path}': {e}"))?,
        None => cert_pem,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("missing private key in '{key_path}'")
        }
        e => format!("unable to load private key file '{key_path}': {e}"),
    })?;
    let key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("cannot use the private key in '{key_path}': {e}"))?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|_| {
        format!("the private key in '{key_path}' does not match the certificate in '{cert_path}'")
    })?;
    Ok(Arc::new(certified))
}

/// Every certificate of a port, in order, or the first error.
pub fn load_all(tls: &TlsPort) -> Result<Vec<Arc<CertifiedKey>>, String> {
    tls.certs.iter().map(load_certified_key).collect()
}
