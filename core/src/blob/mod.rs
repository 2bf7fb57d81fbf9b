//! The `BlobStore` seam: project bundles (content-addressed) and log archives.
//!
//! Keys are relative paths of `[A-Za-z0-9._/-]` segments (checked by [`valid_key`]), so the local
//! directory and S3 agree on what a key may be and no key can escape its root.
//!
//! Two implementations pass the same conformance suite (`core/tests/blob_conformance.rs`):
//! [`local::LocalBlobStore`] (a directory, the embedded default) and [`s3::S3BlobStore`] (any
//! S3 API: AWS, MinIO, moto).
//!
//! Small blobs go through [`BlobStore::put`] / [`BlobStore::get`] as [`Bytes`]. Anything that may
//! be large goes through the streaming methods, which never hold a whole object in memory:
//! [`BlobStore::put_file`] uploads from a file (S3: multipart above [`s3::PART_SIZE`]),
//! [`BlobStore::get_to_file`] writes to a file, and [`BlobStore::get_stream`] hands out a reader
//! (e.g. to stream a bundle to a runner). There is deliberately no `put` from an arbitrary
//! stream: a content-addressed key is only known once the whole content has been hashed, so the
//! writer spools to a temporary file first anyway, and an upload from a file knows its length,
//! which S3 needs.

pub mod local;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::AsyncRead;

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
    /// A setting is missing or malformed; the message names it.
    #[error("blob store configuration: {0}")]
    Config(String),
}

pub type BlobResult<T> = Result<T, BlobError>;

/// A blob's content being read. Errors in the middle of a download surface as I/O errors.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `data` under `key`, replacing what was there. Readers see the old or the new
    /// content, never a mix.
    async fn put(&self, key: &str, data: Bytes) -> BlobResult<()>;
    /// The whole content of `key` in memory; [`BlobError::NotFound`] if there is none. Use
    /// [`BlobStore::get_to_file`] or [`BlobStore::get_stream`] for anything large.
    async fn get(&self, key: &str) -> BlobResult<Bytes>;
    async fn exists(&self, key: &str) -> BlobResult<bool>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> BlobResult<()>;

    /// Uploads the file at `path` as `key`, streaming it from disk; returns its size in bytes.
    async fn put_file(&self, key: &str, path: &Path) -> BlobResult<u64>;
    /// Streams `key` into a file at `path` (created or replaced; its directory is created).
    /// The file appears whole or not at all: it is written beside `path` and renamed.
    /// Returns the number of bytes written.
    async fn get_to_file(&self, key: &str, path: &Path) -> BlobResult<u64>;
    /// A reader over the content of `key`; [`BlobError::NotFound`] (before any byte) if there is none.
    async fn get_stream(&self, key: &str) -> BlobResult<BlobReader>;
}

/// A temporary name in the same directory as `path`, so that a rename onto `path` is atomic.
pub(crate) fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", crate::ids::new_id()))
}

/// Copies `reader` into a temporary file beside `dest`, flushes it to disk and renames it onto
/// `dest`. On any error the temporary file is removed and `dest` is left untouched.
pub(crate) async fn write_file_atomically(
    mut reader: BlobReader,
    dest: &Path,
) -> std::io::Result<u64> {
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = temp_beside(dest);
    let result = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let n = tokio::io::copy(&mut reader, &mut file).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, dest).await?;
        Ok(n)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

pub fn valid_key(key: &str) -> BlobResult<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
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

/// Most bytes a log archive may inflate to: a runner keeps at most 256 MiB of a run's output,
/// and readers stop here whatever an archive holds.
pub const MAX_LOG_BYTES: u64 = 512 * 1024 * 1024;

/// Checks that `archive` is gzip that inflates to at most `limit` bytes, inflating it into
/// nothing (a 64 KiB buffer, whatever its size); the inflated size. Blocking: a worker's
/// archive is checked before it is stored.
pub fn check_log_archive(archive: &[u8], limit: u64) -> Result<u64, String> {
    use std::io::Read;
    if !archive.starts_with(&[0x1f, 0x8b]) {
        return Err("the log archive is not gzip".into());
    }
    let mut gz = flate2::read::MultiGzDecoder::new(archive).take(limit + 1);
    let n = std::io::copy(&mut gz, &mut std::io::sink())
        .map_err(|e| format!("the log archive is corrupt: {e}"))?;
    if n > limit {
        return Err(format!("the log archive inflates past {limit} bytes"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_archives_are_checked_with_a_bound() {
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(check_log_archive(&gz(b"hello\n"), 100), Ok(6));
        let bomb = gz(&vec![0u8; 4 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert!(check_log_archive(&bomb, 1 << 20)
            .unwrap_err()
            .contains("past"));
        assert!(check_log_archive(b"plain text", 100).is_err());
        assert!(check_log_archive(&bomb[..bomb.len() / 2], 8 << 20).is_err());
    }

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
