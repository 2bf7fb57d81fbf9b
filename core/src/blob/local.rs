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

fn not_found(e: std::io::Error, key: &str) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound(key.to_string())
    } else {
        BlobError::Io(e)
    }
}

async fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension(format!("tmp-{}", crate::ids::new_id()));
    tokio::fs::write(&tmp, data).await?;
    tokio::fs::rename(&tmp, path).await
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
        tokio::fs::read(&path).await.map(Bytes::from).map_err(|e| not_found(e, key))
    }

    async fn exists(&self, key: &str) -> BlobResult<bool> {
        Ok(tokio::fs::try_exists(self.path(key)?).await?)
    }

    async fn delete(&self, key: &str) -> BlobResult<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
