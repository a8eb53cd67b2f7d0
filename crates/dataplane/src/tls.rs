//! TLS for the stream layer: server configurations from PEM (rustls with
//! the ring provider; TLS 1.3 and 1.2), and how handshake failures are
//! named in the counters.
//!
//! Reloading a certificate is building a new [`ServerConfig`] and handing
//! it to [`super::stream::StreamLayer::set_tls`]: connections open keep
//! theirs, new ones get the new one.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate PEM holds no certificate, or one that does not parse.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The key PEM holds no private key, or one that does not parse.
    #[error("private key: {0}")]
    Key(String),
    /// The client CA PEM holds no usable certificate.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// rustls refused the combination (a key that does not match the
    /// certificate, for instance).
    #[error("{0}")]
    Rustls(String),
}

/// The crypto provider: ring (no aws-lc, no cmake in the build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Deprecated in 0.23.48 for lacking post-quantum key exchange; the ring
    // provider is still supported and is the lean one.
    #[allow(deprecated)]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

/// A server configuration: the certificate chain and key (PEM), and, when
/// `client_ca` is given, client certificates required and verified against
/// it (for trunks).
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsConfigError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsConfigError::Certificate("no certificate in PEM".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsConfigError::Key(e.to_string()))?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TlsConfigError::ClientCa("no certificate in PEM".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Why a TLS handshake (or session) failed, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The peer's certificate was missing, invalid or untrusted.
    Certificate,
    /// The peer spoke something other than the TLS we accept (not TLS at
    /// all, a version or suite we refuse, a message out of place).
    Protocol,
    /// The peer sent an alert (it refused us).
    Alert,
    /// Anything else.
    Other,
}

impl TlsFailure {
    /// The failure a rustls error stands for.
    pub fn of(e: &rustls::Error) -> TlsFailure {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(_) | E::NoCertificatesPresented => TlsFailure::Certificate,
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerIncompatible(_)
            | E::PeerMisbehaved(_)
            | E::DecryptError => TlsFailure::Protocol,
            E::AlertReceived(_) => TlsFailure::Alert,
            _ => TlsFailure::Other,
        }
    }
}

/// A client configuration for dialling TLS upstreams: their certificates
/// must chain to a root in `roots_pem` (and name the IP address dialled).
pub fn client_config(roots_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        let cert = cert.map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::ClientCa("no certificate in PEM".into()));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
