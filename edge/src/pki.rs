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

/// Loads the certificates from `dir`, or creates them there (keys with mode 0600) when absent.
/// The server certificate names `localhost`, `127.0.0.1` and every entry of `hosts`.
pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<ClusterCerts, PkiError> {
    let io = |e| PkiError::Io(dir.to_path_buf(), e);
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    if paths.iter().all(|p| p.exists()) {
        let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(io);
        return Ok(ClusterCerts {
            ca_cert_pem: read(&paths[0])?,
            ca_key_pem: read(&paths[1])?,
            server_cert_pem: read(&paths[2])?,
            server_key_pem: read(&paths[3])?,
        });
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
    Ok(certs)
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

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    names.dedup();
    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(names)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "antcode edge");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server, 825);
    let server_cert = server.signed_by(&server_key, &issuer)?;
    Ok(ClusterCerts {
        ca_cert_pem,
        ca_key_pem: ca_key.serialize_pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}
