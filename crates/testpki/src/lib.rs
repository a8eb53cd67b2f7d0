//! Certificates for tests: a CA made by rcgen for one test, server and
//! client certificates it signs (PEM, as the edge's configuration files
//! hold them), and the rustls configurations a test's peers use with them.
//! Depends on nothing of ours, so any crate's tests can use it.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A certificate and its private key, both PEM.
pub type CertifiedKey = (String, String);

/// A certificate authority made for one test.
pub struct TestCa {
    /// Its certificate (PEM): what a peer trusts.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA (a fresh P-256 key) with `name` as its common name.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a P-256 key");
        let pem = params.self_signed(&key).expect("a self-signed CA").pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (IP addresses or DNS names; the
    /// first is also its common name), signed by this CA.
    pub fn server(&self, names: &[&str]) -> CertifiedKey {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `names`, signed by this CA.
    pub fn client(&self, names: &[&str]) -> CertifiedKey {
        self.leaf(names, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> CertifiedKey {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("valid names");
        params.extended_key_usages = vec![usage];
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate().expect("a P-256 key");
        let cert = params.signed_by(&key, &self.issuer).expect("a signed leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// The ring provider, the one the edge uses (no aws-lc in this workspace).
fn provider() -> Arc<CryptoProvider> {
    // Deprecated in rustls 0.23.48 for lacking post-quantum key exchange;
    // still supported, and the edge's own choice.
    #[allow(deprecated)]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

/// The certificates in a PEM text.
pub fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// A server presenting `chain` with `key` (PEM), asking nothing of clients.
pub fn server_config(chain: &str, key: &str) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a PEM private key");
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the provider's versions")
            .with_no_client_auth()
            .with_single_cert(certificates(chain), key)
            .expect("a certificate matching its key"),
    )
}

/// A client trusting the CA certificates in `ca_pem`, presenting `cert`
/// (certificate and key, PEM) when given.
pub fn client_config(ca_pem: &str, cert: Option<&CertifiedKey>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in certificates(ca_pem) {
        roots.add(c).expect("a CA certificate");
    }
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the provider's versions")
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                certificates(c),
                PrivateKeyDer::from_pem_slice(k.as_bytes()).expect("a PEM private key"),
            )
            .expect("a certificate matching its key"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// A handshake over loopback between the two configurations; true when
    /// the client reads what the server wrote.
    fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> bool {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(server).unwrap();
            let mut s = rustls::StreamOwned::new(conn, sock);
            let _ = s.write_all(b"hello").and_then(|_| s.flush());
        });
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
        let mut buf = [0u8; 5];
        let ok = s.read_exact(&mut buf).is_ok() && &buf == b"hello";
        drop(s);
        t.join().unwrap();
        ok
    }

    #[test]
    fn a_client_trusting_the_ca_accepts_its_server_certificate_for_an_ip_and_a_name() {
        let ca = TestCa::new("test ca");
        let (cert, key) = ca.server(&["127.0.0.1", "localhost"]);
        for name in ["127.0.0.1", "localhost"] {
            let ok = handshake(
                server_config(&cert, &key),
                client_config(&ca.pem, None),
                name,
            );
            assert!(ok, "{name}");
        }
    }

    #[test]
    fn a_client_trusting_another_ca_refuses_the_server() {
        let (cert, key) = TestCa::new("test ca").server(&["127.0.0.1"]);
        let other = TestCa::new("other ca");
        assert!(!handshake(
            server_config(&cert, &key),
            client_config(&other.pem, None),
            "127.0.0.1"
        ));
    }
}
