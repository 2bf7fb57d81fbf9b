//! The front's TLS: the edge's server certificate from PEM text, client certificates optional but,
//! when presented, verified against the cluster CA during the handshake (a certificate from any
//! other CA fails the handshake). After the handshake the leaf certificate's SHA-256 becomes the
//! connection's [`Peer`], which also counts open connections for the metrics.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// What the handshake established about a connection, kept in the TLS digest's extension.
pub struct Peer {
    /// SHA-256 (hex) of the verified client certificate, if one was presented.
    pub cert_fingerprint: Option<String>,
    _open: OpenConnection,
}

/// Counts a connection in `antcode_edge_connections` for as long as it lives.
struct OpenConnection;

impl OpenConnection {
    fn new() -> OpenConnection {
        metrics::gauge!("antcode_edge_connections").increment(1.0);
        metrics::counter!("antcode_edge_connections_total").increment(1);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("antcode_edge_connections").decrement(1.0);
    }
}

struct Callbacks;

#[async_trait]
impl TlsAccept for Callbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let cert_fingerprint = tls
            .peer_certificate_der()
            .map(antcode_core::ids::sha256_hex);
        Some(Arc::new(Peer {
            cert_fingerprint,
            _open: OpenConnection::new(),
        }))
    }
}

/// Always the one server certificate (the edge has no SNI-dependent certificates).
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("edge TLS settings: {0}")]
pub struct TlsError(String);

fn bad(what: &str) -> impl Fn(String) -> TlsError + '_ {
    move |e| TlsError(format!("{what}: {e}"))
}

/// TLS 1.2/1.3 with HTTP/2 by ALPN, the server certificate `cert_pem`/`key_pem`, and optional
/// client certificates that must chain to `ca_pem`.
pub fn settings(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<TlsSettings, TlsError> {
    let provider = Arc::new(default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("server certificate")(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError(
            "server certificate: no PEM certificate found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| bad("server key")(e.to_string()))?;
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| bad("server certificate and key")(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| bad("cluster CA")(e.to_string()))?;
        roots
            .add(ca)
            .map_err(|e| bad("cluster CA")(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError("cluster CA: no PEM certificate found".into()));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad("client certificate verifier")(e.to_string()))?;
    let mut tls = TlsSettings::with_callbacks(Box::new(Callbacks))
        .map_err(|e| bad("callbacks")(e.to_string()))?;
    tls.set_cert_resolver(Arc::new(OneCertificate(Arc::new(certified))));
    tls.set_client_cert_verifier(verifier);
    tls.enable_h2();
    Ok(tls)
}
