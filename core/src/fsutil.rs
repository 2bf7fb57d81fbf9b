//! Files only their owner may read: keys, credentials, tokens.
//!
//! Both writers create the file with mode 0600 (on Unix) and `fsync` it before returning, so
//! what they wrote is on disk and was never readable by anyone else, not even for a moment.

use std::io::Write;
use std::path::Path;

/// Options that create a file readable and writable by its owner only.
fn private() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `data` to `path`, replacing it whole: the data goes to `path` with the extension
/// `tmp` first and is renamed into place, so a reader sees the old file or the new one.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = private().create(true).truncate(true).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Writes `data` to `path` unless `path` exists; an existing file is kept as it is (another
/// process that started at the same time made it first) and is not an error.
pub fn write_new_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = match private().create_new(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_private_replaces_the_file_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credential.json");
        write_private(&path, b"first").unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn write_new_private_keeps_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        write_new_private(&path, b"first").unwrap();
        write_new_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }
}
