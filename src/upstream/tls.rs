//! TLS toward peers (`cache_peer ... tls`) and origin servers (https://
//! URLs, `tls_outgoing_options`): the rustls client configs, built once
//! per configuration load, and the system CA store, read once per process.
//!
//! The system store is read with rustls-native-certs: on Debian it is the
//! same /etc/ssl/certs bundle Squid's TLS library trusts, so CAs an admin
//! adds with `update-ca-certificates` are honoured here too (a compiled-in
//! list such as webpki-roots would ignore them).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{read_certificates, read_key, TlsClientOptions, TlsMinVersion};

/// How to speak TLS to one peer, or to origin servers.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    /// `tls-domain=`: the name sent as SNI and verified instead of the host.
    domain: Option<String>,
    /// What the keep-alive pool tells TLS connections apart by: the
    /// options they were made with (so a reload with other TLS settings
    /// never reuses a connection made under the old ones).
    identity: Arc<str>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("identity", &self.identity)
            .finish()
    }
}

impl TlsClient {
    /// A client for `opts`; `Err` says which file or setting failed.
    pub fn build(opts: &TlsClientOptions) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.min_version {
            TlsMinVersion::Tls12 => rustls::DEFAULT_VERSIONS,
            TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?;
        let builder = if opts.dont_verify_peer {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            if opts.default_ca {
                roots.roots.extend(system_roots().roots.iter().cloned());
            }
            for file in &opts.cafiles {
                for cert in read_certificates(file)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &opts.cert {
            Some(cert) => {
                let chain = read_certificates(cert)?;
                let key = read_key(opts.key.as_ref().unwrap_or(cert))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{}: {e}", cert.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        // cuttle speaks HTTP/1.1 upstream.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            config: Arc::new(config),
            domain: opts.domain.clone(),
            identity: format!("{opts:?}").into(),
        })
    }

    pub(super) fn identity(&self) -> &Arc<str> {
        &self.identity
    }

    pub(super) fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The name verified (and sent as SNI) for a connection to `host`:
    /// tls-domain= when given; an IP address is verified against the
    /// certificate's IP addresses and sends no SNI (rustls does so).
    pub(super) fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self
            .domain
            .as_deref()
            .unwrap_or(host)
            .trim_matches(['[', ']']);
        ServerName::try_from(name.to_string())
            .map_err(|e| format!("\"{name}\" is no TLS server name: {e}"))
    }
}

/// The TLS error (an alert the server sent, ...) behind a failed exchange,
/// if that is what failed it. tokio-rustls hands rustls errors up inside
/// an `io::Error`, whose own `source()` skips them: look inside.
pub(super) fn refusal(e: &hyper::Error) -> Option<String> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if let Some(tls) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Some(tls.to_string());
        }
        cause = c.source();
    }
    None
}

/// The system's trusted CAs, read once (the count is logged).
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("system CA store: {e}");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            // Every certificate not signed by a tls-cafile= CA will fail.
            tracing::warn!("no CA certificate found in the system store (is ca-certificates installed?); TLS to peers and origins trusts only tls-cafile= / cafile=");
        } else {
            tracing::info!(
                added,
                ignored,
                "loaded {added} CA certificates from the system store for TLS to peers and origins"
            );
        }
        roots
    })
}

/// `DONT_VERIFY_PEER`: any certificate is accepted (the handshake's
/// signatures are still checked, so the session keys are the server's).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS clients of one configuration: one per `tls` peer (by its
/// index) and one for https:// origins. A client that could not be built
/// (a file gone since the config was checked) keeps the reason: its
/// connections fail with it instead of going out in cleartext.
pub struct TlsClients {
    origins: Result<TlsClient, String>,
}

impl TlsClients {
    pub fn of(config: &crate::config::Config) -> TlsClients {
        let origins = TlsClient::build(&config.tls_outgoing_options.value);
        if let Err(e) = &origins {
            tracing::error!("tls_outgoing_options: {e}; https:// URLs will fail");
        }
        TlsClients { origins }
    }

    /// The client for https:// origin servers.
    pub fn origins(&self) -> Result<&TlsClient, &str> {
        self.origins.as_ref().map_err(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Empty};
    use rustls::pki_types::PrivateKeyDer;

    use super::*;
    use crate::upstream::{FetchError, Timeouts, Upstream};

    /// A keep-alive HTTPS server for "localhost" on 127.0.8.3 answering
    /// "ok"; its port, the count of handshakes completed, and the PEM of
    /// the (self-signed) certificate it presents.
    async fn https_server() -> (u16, Arc<AtomicUsize>, String) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let pem = made.cert.pem();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.8.3", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&handshakes);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), Arc::clone(&count));
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    crate::upstream::tests::answer_ok(s).await;
                });
            }
        });
        (port, handshakes, pem)
    }

    fn get() -> Request<Empty<Bytes>> {
        Request::get("/")
            .header("host", "localhost")
            .body(Empty::new())
            .unwrap()
    }

    /// The pool keys connections by TLS identity: a TLS connection is
    /// reused by the same client, never by another TLS client nor by a
    /// cleartext request to the same host and port.
    #[tokio::test]
    async fn the_pool_keeps_tls_connections_apart_by_identity() {
        let (port, handshakes, pem) = https_server().await;
        let dir = std::env::temp_dir().join(format!("cuttle-upstream-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let verified = TlsClient::build(&TlsClientOptions {
            cafiles: vec![ca],
            default_ca: false,
            domain: Some("localhost".into()),
            ..TlsClientOptions::default()
        })
        .unwrap();
        let unverified = TlsClient::build(&TlsClientOptions {
            dont_verify_peer: true,
            ..TlsClientOptions::default()
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let up: Upstream<Empty<Bytes>> = Upstream::new(Timeouts::default());
        let send = |tls: Option<&TlsClient>| {
            let up = up.clone();
            let tls = tls.cloned();
            async move {
                let (resp, _) = up
                    .send_from("127.0.8.3", port, None, None, tls.as_ref(), get())
                    .await?;
                let body = resp.into_body().collect().await;
                Ok::<_, FetchError>(body.map(|b| b.to_bytes()).unwrap_or_default())
            }
        };
        for _ in 0..2 {
            assert_eq!(send(Some(&verified)).await.unwrap(), "ok");
        }
        assert_eq!(handshakes.load(Ordering::SeqCst), 1, "reused");
        assert_eq!(send(Some(&unverified)).await.unwrap(), "ok");
        assert_eq!(handshakes.load(Ordering::SeqCst), 2, "another identity");
        // Cleartext to a TLS port fails: it took no pooled TLS connection.
        assert!(send(None).await.is_err());
        assert_eq!(handshakes.load(Ordering::SeqCst), 2);
    }

    /// A certificate the client does not trust is a handshake failure
    /// (ERR_SECURE_CONNECT_FAIL), not a read error.
    #[tokio::test]
    async fn an_untrusted_certificate_is_a_secure_connect_failure() {
        let (port, handshakes, _) = https_server().await;
        let strict = TlsClient::build(&TlsClientOptions {
            default_ca: false,
            domain: Some("localhost".into()),
            ..TlsClientOptions::default()
        })
        .unwrap();
        let up: Upstream<Empty<Bytes>> = Upstream::new(Timeouts::default());
        match up
            .send_from("127.0.8.3", port, None, None, Some(&strict), get())
            .await
        {
            Err(FetchError::SecureConnect { reason, .. }) => {
                assert!(reason.contains("UnknownIssuer"), "{reason}")
            }
            other => panic!("{:?}", other.map(|(r, _)| r.status())),
        }
        assert_eq!(handshakes.load(Ordering::SeqCst), 0);
    }
}
