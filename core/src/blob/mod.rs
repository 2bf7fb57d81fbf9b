//! The `BlobStore` seam: project bundles (content-addressed) and log archives.
//!
//! Keys are relative paths of `[A-Za-z0-9._/-]` segments (checked by [`valid_key`]), so the local
//! directory and S3 agree on what a key may be and no key can escape its root.

pub mod local;

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found: {0}")]
    NotFound(String),
    #[error("invalid blob key: {0}")]
    InvalidKey(String),
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob store: {0}")]
    Backend(String),
}

pub type BlobResult<T> = Result<T, BlobError>;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn put(&self, key: &str, data: Bytes) -> BlobResult<()>;
    async fn get(&self, key: &str) -> BlobResult<Bytes>;
    async fn exists(&self, key: &str) -> BlobResult<bool>;
    async fn delete(&self, key: &str) -> BlobResult<()>;
}

pub fn valid_key(key: &str) -> BlobResult<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(key.to_string()))
    }
}

/// The content-addressed key of a bundle: `bundles/<sha256>.<ext>`.
pub fn bundle_key(sha256: &str, ext: &str) -> String {
    format!("bundles/{sha256}.{ext}")
}

/// The key of a run attempt's compressed log archive.
pub fn log_key(run_id: &str, attempt: u32) -> String {
    format!("logs/{run_id}/{attempt}.log.gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in ["", "/abs", "a/../b", "a//b", "..", "a/./b", "a b", "a\\b"] {
            assert!(valid_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["bundles/abc.zip", "logs/x/1.log.gz"] {
            assert!(valid_key(good).is_ok(), "{good:?} refused");
        }
    }
}
