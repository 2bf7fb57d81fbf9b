//! The cluster's certificates: a CA that signs the edge's server certificate and (through
//! control) runners' client certificates. `antcode up` creates them in its data dir on first
//! start and reuses them after.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate files in {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// PEM text of the cluster CA and of the edge's server certificate.
#[derive(Clone)]
pub struct ClusterCerts {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

const FILES: [&str; 4] = ["ca.pem", "ca-key.pem", "edge.pem", "edge-key.pem"];
/// The names `edge.pem` was issued for.
const NAMES: &str = "edge.names";

/// Loads the certificates from `dir`, or creates them there (keys with mode 0600) when absent.
/// The server certificate names `localhost`, `127.0.0.1` and every entry of `hosts`; when a
/// loaded one lacks a name of `hosts`, a new one is issued by the same CA (runners' credentials
/// stay valid).
pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<ClusterCerts, PkiError> {
    let io = |e| PkiError::Io(dir.to_path_buf(), e);
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    if paths.iter().all(|p| p.exists()) {
        let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(io);
        let mut certs = ClusterCerts {
            ca_cert_pem: read(&paths[0])?,
            ca_key_pem: read(&paths[1])?,
            server_cert_pem: read(&paths[2])?,
            server_key_pem: read(&paths[3])?,
        };
        let issued = issued_names(dir);
        if server_names(hosts).iter().any(|n| !issued.contains(n)) {
            let ca_key = KeyPair::from_pem(&certs.ca_key_pem)?;
            let issuer = Issuer::from_ca_cert_pem(&certs.ca_cert_pem, &ca_key)?;
            (certs.server_cert_pem, certs.server_key_pem) = server_cert(&issuer, hosts)?;
            for (path, text) in [
                (&paths[2], &certs.server_cert_pem),
                (&paths[3], &certs.server_key_pem),
            ] {
                antcode_core::fsutil::write_private(path, text.as_bytes()).map_err(io)?;
            }
            write_names(dir, hosts).map_err(io)?;
        }
        return Ok(certs);
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let certs = generate(hosts)?;
    let texts = [
        &certs.ca_cert_pem,
        &certs.ca_key_pem,
        &certs.server_cert_pem,
        &certs.server_key_pem,
    ];
    for (path, text) in paths.iter().zip(texts) {
        antcode_core::fsutil::write_private(path, text.as_bytes()).map_err(io)?;
    }
    write_names(dir, hosts).map_err(io)?;
    Ok(certs)
}

fn write_names(dir: &Path, hosts: &[String]) -> std::io::Result<()> {
    let names = server_names(hosts).join("\n");
    antcode_core::fsutil::write_private(&dir.join(NAMES), names.as_bytes())
}

/// The names the edge certificate in `dir` was issued for, one per line in `edge.names` beside
/// it (a certificate without that file was issued for the two defaults only).
fn issued_names(dir: &Path) -> Vec<String> {
    match std::fs::read_to_string(dir.join(NAMES)) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(_) => vec!["localhost".into(), "127.0.0.1".into()],
    }
}

/// `localhost`, `127.0.0.1` and `hosts`, each once.
fn server_names(hosts: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for host in hosts.iter().filter(|h| !h.is_empty()) {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    names
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(days);
}

/// A fresh CA and a server certificate it signed.
pub fn generate(hosts: &[String]) -> Result<ClusterCerts, PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "antcode cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, 3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_cert_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, &ca_key);

    let (server_cert_pem, server_key_pem) = server_cert(&issuer, hosts)?;
    Ok(ClusterCerts {
        ca_cert_pem,
        ca_key_pem: ca_key.serialize_pem(),
        server_cert_pem,
        server_key_pem,
    })
}

/// A server certificate for `localhost`, `127.0.0.1` and `hosts`, signed by `issuer`; its PEM
/// and its key's.
fn server_cert(
    issuer: &Issuer<'_, &KeyPair>,
    hosts: &[String],
) -> Result<(String, String), PkiError> {
    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(server_names(hosts))?;
    server
        .distinguished_name
        .push(DnType::CommonName, "antcode edge");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server, 825);
    let cert = server.signed_by(&server_key, issuer)?;
    Ok((cert.pem(), server_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_missing_host_gets_a_new_edge_cert_from_the_same_ca() {
        let dir = std::env::temp_dir().join(format!("antcode-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(&dir, &[]).unwrap();
        let host = vec!["edge.example".to_string()];

        let second = load_or_create(&dir, &host).unwrap();
        assert_eq!(second.ca_cert_pem, first.ca_cert_pem);
        assert_ne!(second.server_cert_pem, first.server_cert_pem);
        assert!(issued_names(&dir).contains(&host[0]));
        // The new certificate verifies under the same CA for the new name.
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            let der =
                rustls::pki_types::CertificateDer::from_pem_slice(second.ca_cert_pem.as_bytes());
            r.add(der.unwrap()).unwrap();
            std::sync::Arc::new(r)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf =
            rustls::pki_types::CertificateDer::from_pem_slice(second.server_cert_pem.as_bytes())
                .unwrap();
        let name = rustls::pki_types::ServerName::try_from("edge.example").unwrap();
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            &leaf,
            &[],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .expect("the re-issued certificate is valid for the new name under the same CA");
        // Named already: loaded as it is.
        let third = load_or_create(&dir, &host).unwrap();
        assert_eq!(third.server_cert_pem, second.server_cert_pem);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
