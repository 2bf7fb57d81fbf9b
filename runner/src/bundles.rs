//! Project bundles on the runner: a content-addressed cache under `data_dir/bundles` (a bundle
//! is downloaded once per runner, streamed to disk and hashed on the way, never held whole in
//! memory), and extraction into a fresh per-run directory with the same safe walker control
//! validated the upload with.
//!
//! A cache file is only ever created by renaming a fully downloaded and verified temporary file
//! onto its digest, so its content matches its name, and is read-only (0444). Each runner
//! process re-hashes a cached file the first time it uses it (catching corruption on disk from
//! before it started) and remembers the file's stamp (inode, size, modification and change
//! times); every later use compares one `stat` against it and hashes again if anything changed,
//! so a byte appended by anyone (a task that could reach the cache, a disk error) is found
//! before the bundle is used, and the file is fetched again. The change time cannot be set back
//! by an unprivileged process, so a write cannot hide behind restored times.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use antcode_core::bundle::{extract_with, CreateFile, Limits};
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
    /// Digests whose cache file this process has hashed (or written) and found right, with the
    /// file's stamp then.
    verified: Mutex<HashMap<String, Stamp>>,
}

/// What changes whenever a file's content does: inode, size, modification and change times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    Some(Stamp {
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

const BUF: usize = 256 * 1024;

/// SHA-256 of a file, read in pieces. Blocking.
fn hash_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(hex::encode(h.finalize()))
}

impl BundleCache {
    pub fn new(root: PathBuf) -> BundleCache {
        BundleCache {
            root,
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn is_verified(&self, digest: &str, now: Stamp) -> bool {
        crate::lock(&self.verified).get(digest) == Some(&now)
    }

    /// Remembers the file of `digest` as right while its stamp stays `then`.
    fn mark_verified(&self, digest: &str, then: Option<Stamp>) {
        let mut verified = crate::lock(&self.verified);
        match then {
            Some(s) => verified.insert(digest.to_string(), s),
            None => verified.remove(digest),
        };
    }

    /// The path of the bundle's cache file, downloading it first if needed; its content always
    /// matches `bundle.sha256`.
    pub async fn get(
        &self,
        source: &dyn WorkSource,
        bundle: &BundleRef,
    ) -> Result<PathBuf, BundleFetchError> {
        let digest = bundle.sha256.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BundleFetchError::BadDigest(bundle.sha256.clone()));
        }
        let path = self.root.join(&digest);
        if let Some(before) = stamp(&path) {
            if self.is_verified(&digest, before) {
                return Ok(path);
            }
            let p = path.clone();
            let actual = tokio::task::spawn_blocking(move || hash_file(&p))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            // Right, and not changed while it was read.
            if actual.ok().as_deref() == Some(digest.as_str()) && stamp(&path) == Some(before) {
                self.mark_verified(&digest, Some(before));
                return Ok(path);
            }
            // A corrupt or changed cache entry is dropped and fetched again.
            tracing::warn!(digest, "cached bundle changed on disk; fetching it again");
            metrics::counter!("antcode_runner_bundle_refetches_total").increment(1);
            self.mark_verified(&digest, None);
            let _ = tokio::fs::remove_file(&path).await;
        }
        self.download(source, bundle, &digest, &path).await?;
        self.mark_verified(&digest, stamp(&path));
        Ok(path)
    }

    /// Streams the bundle into a temporary file, hashing as it goes, and renames it into place
    /// only if the digest matches.
    async fn download(
        &self,
        source: &dyn WorkSource,
        bundle: &BundleRef,
        digest: &str,
        path: &Path,
    ) -> Result<(), BundleFetchError> {
        let source_error = |e: SourceError| match e {
            SourceError::NotFound(k) => BundleFetchError::Missing(k),
            other => BundleFetchError::Source(other.to_string()),
        };
        let mut reader = source.open_bundle(bundle).await.map_err(source_error)?;
        tokio::fs::create_dir_all(&self.root).await?;
        let tmp = self
            .root
            .join(format!(".tmp-{}", antcode_core::ids::new_id()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; BUF];
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(|e| BundleFetchError::Source(e.to_string()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                file.write_all(&buf[..n]).await?;
            }
            file.flush().await?;
            drop(file);
            let actual = hex::encode(h.finalize());
            if actual != digest {
                return Err(BundleFetchError::Checksum {
                    expected: digest.to_string(),
                    actual,
                });
            }
            // Read-only: only a rename by the runner ever replaces it.
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444)).await?;
            tokio::fs::rename(&tmp, path).await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

/// Unpacks the bundle file at `file` into `dest` (created if missing, empty otherwise), each
/// file opened by `create`. A large file is memory-mapped, so it costs page cache, not heap.
/// Blocking.
pub fn unpack(
    bundle: &BundleRef,
    file: &Path,
    dest: &Path,
    create: &mut CreateFile<'_>,
) -> Result<(), BundleFetchError> {
    std::fs::create_dir_all(dest)?;
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    // A small bundle is read: mapping and unmapping it would cost more than the copy (an unmap
    // in this many-threaded process interrupts every core running one of its threads).
    let read;
    let map;
    let bytes: &[u8] = if len <= READ_BELOW {
        let mut buf = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut f, &mut buf)?;
        read = buf;
        &read
    } else {
        // SAFETY: cache files are never written in place: they are created by renaming a
        // complete temporary file and only ever unlinked, which leaves an existing mapping
        // intact.
        map = unsafe { memmap2::Mmap::map(&f)? };
        &map
    };
    extract_with(
        bundle.format,
        bytes,
        bundle.file_name.as_deref(),
        dest,
        Limits::default(),
        create,
    )?;
    Ok(())
}

/// Bundles up to this size are read into memory to be unpacked, larger ones mapped.
const READ_BELOW: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use antcode_core::model::BundleFormat;

    /// Issue 23's chain: `a/b/c/d/up → ../../../..`, `esc → a/b/c/d/up/../../../../X`, then a
    /// regular file `esc`, unpacked as a run's bundle is.
    #[test]
    fn a_symlink_chain_is_not_unpacked_outside_the_work_dir() {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, link) in [
            ("a/b/c/d/up", Some("../../../..")),
            ("esc", Some("a/b/c/d/up/../../../../X")),
            ("esc", None),
        ] {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_mode(0o644);
            let data: &[u8] = if link.is_some() { b"" } else { b"owned" };
            h.set_size(data.len() as u64);
            match link {
                Some(l) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name_literal(l).unwrap();
                }
                None => h.set_entry_type(tar::EntryType::Regular),
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        let data = b.into_inner().unwrap().finish().unwrap();
        let top = tempfile::tempdir().unwrap();
        let file = top.path().join("bundle.tar.gz");
        std::fs::write(&file, &data).unwrap();
        let dest = top.path().join("1/2/3/4/work");
        let bundle = BundleRef {
            key: "k".into(),
            sha256: String::new(),
            format: BundleFormat::TarGz,
            size_bytes: data.len() as i64,
            file_name: None,
        };
        let err = unpack(&bundle, &file, &dest, &mut |p| std::fs::File::create(p)).unwrap_err();
        assert!(err.to_string().contains("outside the bundle"), "{err}");
        assert!(
            !top.path().join("1/X").exists(),
            "written outside the work dir"
        );
    }
}
