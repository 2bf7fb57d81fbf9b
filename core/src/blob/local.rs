//! [`LocalBlobStore`]: blobs as files under a directory. Writes go to a temporary file and are
//! renamed into place, so a reader never sees half a blob.

use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};

use super::*;

pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> BlobResult<LocalBlobStore> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalBlobStore { root })
    }

    fn path(&self, key: &str) -> BlobResult<PathBuf> {
        valid_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Whether an I/O error just means "no blob here": the path is missing, is a directory (a key
/// prefix, which S3 would not call an object either), or passes through a file.
fn is_absent(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), NotFound | IsADirectory | NotADirectory)
}

fn not_found(e: std::io::Error, key: &str) -> BlobError {
    if is_absent(&e) {
        BlobError::NotFound(key.to_string())
    } else {
        BlobError::Io(e)
    }
}

async fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = temp_beside(path);
    let result = async {
        tokio::fs::write(&tmp, data).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, key: &str, data: Bytes) -> BlobResult<()> {
        let path = self.path(key)?;
        write_atomically(&path, &data).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> BlobResult<Bytes> {
        let path = self.path(key)?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| not_found(e, key))
    }

    async fn exists(&self, key: &str) -> BlobResult<bool> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if is_absent(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> BlobResult<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if !is_absent(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn put_file(&self, key: &str, path: &Path) -> BlobResult<u64> {
        let dest = self.path(key)?;
        // The source is opened first so a missing source is reported as such, not as a missing key.
        let source = tokio::fs::File::open(path).await?;
        Ok(write_file_atomically(Box::pin(source), &dest).await?)
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> BlobResult<u64> {
        let reader = self.get_stream(key).await?;
        Ok(write_file_atomically(reader, path).await?)
    }

    async fn get_stream(&self, key: &str) -> BlobResult<BlobReader> {
        let path = self.path(key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| not_found(e, key))?;
        // Opening a directory succeeds on Unix; it is a key prefix, not a blob.
        if file.metadata().await?.is_dir() {
            return Err(BlobError::NotFound(key.to_string()));
        }
        Ok(Box::pin(file))
    }
}
