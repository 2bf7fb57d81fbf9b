//! Project bundles on the runner: a content-addressed cache under `data_dir/bundles` (a bundle
//! is fetched once per runner, and every read is checked against its SHA-256), and extraction
//! into a fresh per-run directory with the same safe walker control validated the upload with.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use antcode_core::bundle::{extract, Limits};
use antcode_core::model::BundleRef;

use crate::source::{SourceError, WorkSource};

#[derive(Debug, thiserror::Error)]
pub enum BundleFetchError {
    #[error("bundle {0} is missing from the blob store")]
    Missing(String),
    #[error("bundle download failed: {0}")]
    Source(String),
    #[error("bundle checksum mismatch: expected {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
    #[error("invalid bundle checksum {0:?}")]
    BadDigest(String),
    #[error("bundle cache: {0}")]
    Io(#[from] std::io::Error),
    #[error("bundle refused: {0}")]
    Extract(#[from] antcode_core::bundle::BundleError),
}

pub struct BundleCache {
    root: PathBuf,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl BundleCache {
    pub fn new(root: PathBuf) -> BundleCache {
        BundleCache { root }
    }

    /// The bundle's bytes, from the cache or the source, always checked against `bundle.sha256`.
    pub async fn get(
        &self,
        source: &dyn WorkSource,
        bundle: &BundleRef,
    ) -> Result<Bytes, BundleFetchError> {
        let digest = bundle.sha256.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BundleFetchError::BadDigest(bundle.sha256.clone()));
        }
        let path = self.root.join(&digest);
        if let Ok(data) = tokio::fs::read(&path).await {
            if sha256_hex(&data) == digest {
                return Ok(Bytes::from(data));
            }
            // A corrupt cache entry is dropped and fetched again.
            let _ = tokio::fs::remove_file(&path).await;
        }
        let data = source.fetch_bundle(bundle).await.map_err(|e| match e {
            SourceError::NotFound(k) => BundleFetchError::Missing(k),
            other => BundleFetchError::Source(other.to_string()),
        })?;
        let actual = sha256_hex(&data);
        if actual != digest {
            return Err(BundleFetchError::Checksum {
                expected: digest,
                actual,
            });
        }
        tokio::fs::create_dir_all(&self.root).await?;
        let tmp = self
            .root
            .join(format!(".tmp-{}", antcode_core::ids::new_id()));
        tokio::fs::write(&tmp, &data).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(data)
    }
}

/// Unpacks `data` into `dest` (created, must not exist yet). Blocking.
pub fn unpack(bundle: &BundleRef, data: &[u8], dest: &Path) -> Result<(), BundleFetchError> {
    std::fs::create_dir_all(dest)?;
    extract(
        bundle.format,
        data,
        bundle.file_name.as_deref(),
        dest,
        Limits::default(),
    )?;
    Ok(())
}
