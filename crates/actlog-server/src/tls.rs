//! TLS for both listeners (contract section 14), with rustls on ring
//! (TLS 1.2 and 1.3, no post-quantum key exchange).
//!
//! `--tls-cert` and `--tls-key` (PEM) turn on HTTPS and TLS on the
//! PostgreSQL endpoint (`sslmode=require`). `--tls-client-ca` makes both
//! require a client certificate that chains to one of its certificates.
//! A client certificate adds to the bearer token or password; it does not
//! replace it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The files behind `--tls-cert`, `--tls-key` and `--tls-client-ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The acceptors of both listeners, loaded once at start.
#[derive(Clone)]
pub struct Tls {
    /// HTTPS, offering ALPN `http/1.1`.
    pub http: TlsAcceptor,
    /// The PostgreSQL endpoint, offering ALPN `postgresql` (PostgreSQL 17's
    /// direct SSL needs it; the SSLRequest handshake of older clients sends none).
    pub pg: TlsAcceptor,
    /// Whether clients must present a certificate.
    pub client_certs_required: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("client_certs_required", &self.client_certs_required).finish_non_exhaustive()
    }
}

fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn fmt::Display| format!("{flag} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

impl Tls {
    /// Reads and checks the files; every error names the flag and the file.
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        // ring, as pgwire's TLS uses: aws-lc-rs would add post-quantum key
        // exchange (why rustls now marks ring's provider deprecated) at the
        // cost of a second C/CMake build in every cold build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = certificates("--tls-cert", &files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| format!("--tls-key {}: no PEM private key could be read ({e})", files.key.display()))?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certificates("--tls-client-ca", ca)? {
                    roots.add(c).map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
                }
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                        .build()
                        .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("--tls-cert/--tls-key: the key does not fit the certificate or is unusable ({e})"))?;
        let mut http = config.clone();
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut pg = config;
        pg.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Tls {
            http: TlsAcceptor::from(Arc::new(http)),
            pg: TlsAcceptor::from(Arc::new(pg)),
            client_certs_required: files.client_ca.is_some(),
        })
    }
}
