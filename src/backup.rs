//! `antcode backup` and `antcode restore` for the embedded mode (`antcode up`'s data dir).
//!
//! A backup is a directory:
//!
//! * `antcode.db`: the database, copied online and consistently with SQLite's `VACUUM INTO`
//!   (one read transaction; writers go on while it runs);
//! * `blobs/`: bundles and log archives, copied after the database. Blobs are written before
//!   the rows that name them and never rewritten, so every blob the copied database names is
//!   in the copy;
//! * `keys.sealed`: the secret key and the `tls/` directory (cluster CA, edge certificate and
//!   token), each sealed with ChaCha20-Poly1305 under a key derived from the operator's
//!   passphrase with Argon2id (parameters and salt in the manifest);
//! * `manifest.json`: the format, the version that wrote it, and each file's size and SHA-256.
//!
//! Restore checks the passphrase and every file's digest before it writes anything, and writes
//! only into a new or empty data dir. A backup can also live in a blob store (`s3://BUCKET/
//! PREFIX`): it is written to a local directory first and uploaded file by file, the manifest
//! last ([`upload`]), and downloaded the same way before a restore ([`download`]). What `antcode up` rebuilds by itself is not backed up: the
//! runner's caches (`runner/`) and the in-process broker (queued runs are published again from
//! the database).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use antcode_core::blob::BlobStore;
use antcode_core::secrets::SecretBox;

/// The manifest's `format`.
const FORMAT: &str = "antcode-backup/1";
const MANIFEST: &str = "manifest.json";
const KEYS: &str = "keys.sealed";
const DB: &str = "antcode.db";
/// The shortest passphrase accepted for a new backup.
pub const MIN_PASSPHRASE: usize = 12;
/// A manifest or key file larger than this is not one of ours.
const MAX_META_BYTES: u64 = 16 << 20;
/// What a sealed key file may hold (the CA's key, certificates, the edge token).
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// Argon2id's cost: 64 MiB, 3 passes (about a third of a second on one core).
const KDF_M_KIB: u32 = 64 * 1024;
const KDF_T: u32 = 3;
const KDF_P: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    antcode_version: String,
    created_at: String,
    kdf: Kdf,
    /// Every file of the backup but the manifest, by path relative to the backup.
    files: BTreeMap<String, FileDigest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kdf {
    alg: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct FileDigest {
    bytes: u64,
    sha256: String,
}

/// What a backup or restore did, for the command's last line.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
}

/// The passphrase: `ANTCODE_BACKUP_PASSPHRASE`, else the first line of stdin.
pub fn passphrase() -> anyhow::Result<String> {
    Ok(crate::cli::env_or_stdin_line(
        "ANTCODE_BACKUP_PASSPHRASE",
        "the passphrase",
    )?)
}

/// Backs up the data dir `data_dir` of a running or stopped `antcode up` into `to`, a new or
/// empty directory.
pub async fn backup(data_dir: &Path, to: &Path, passphrase: &str) -> anyhow::Result<Summary> {
    if passphrase.chars().count() < MIN_PASSPHRASE {
        bail!("the passphrase must have at least {MIN_PASSPHRASE} characters");
    }
    let db = data_dir.join(DB);
    if !db.is_file() {
        bail!(
            "no database at {} (is --data-dir the data dir of `antcode up`?)",
            db.display()
        );
    }
    claim_empty(to)?;
    let written = write_backup(data_dir, to, passphrase).await;
    if written.is_err() {
        // Nothing half-made is left to be mistaken for a backup.
        let _ = std::fs::remove_dir_all(to);
    }
    written
}

async fn write_backup(data_dir: &Path, to: &Path, passphrase: &str) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    set_private(to)?;
    copy_database(&data_dir.join(DB), &to.join(DB)).await?;
    let blobs = data_dir.join("blobs");
    if blobs.is_dir() {
        copy_tree(&blobs, &to.join("blobs"))?;
    }
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let kdf = Kdf {
        alg: "argon2id".into(),
        m_kib: KDF_M_KIB,
        t: KDF_T,
        p: KDF_P,
        salt: B64.encode(salt),
    };
    let sealer = key_box(passphrase, &kdf)?;
    let mut sealed = BTreeMap::new();
    for (name, bytes) in key_files(data_dir)? {
        let value = sealer
            .seal(&name, &B64.encode(bytes))
            .map_err(|e| anyhow::anyhow!("sealing {name}: {e}"))?;
        sealed.insert(name, value);
    }
    std::fs::write(to.join(KEYS), serde_json::to_vec_pretty(&sealed)?)?;
    let files = digests(to)?;
    let summary = Summary {
        files: files.len(),
        bytes: files.values().map(|f| f.bytes).sum(),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        antcode_version: env!("CARGO_PKG_VERSION").into(),
        created_at: antcode_core::time::to_rfc3339(antcode_core::time::now_ms()),
        kdf,
        files,
    };
    std::fs::write(to.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(summary)
}

/// Restores the backup `from` into `data_dir`, a new or empty directory. The passphrase and
/// every file are checked first; on any error nothing is left in `data_dir`.
pub async fn restore(from: &Path, data_dir: &Path, passphrase: &str) -> anyhow::Result<Summary> {
    let manifest: Manifest = serde_json::from_slice(&read_bounded(&from.join(MANIFEST))?)
        .with_context(|| {
            format!(
                "{} is not an AntCode backup manifest",
                from.join(MANIFEST).display()
            )
        })?;
    if manifest.format != FORMAT {
        bail!(
            "unsupported backup format {:?} (this antcode reads {FORMAT:?})",
            manifest.format
        );
    }
    let keys = open_keys(from, &manifest, passphrase)?;
    let found = digests(from)?;
    for (path, want) in &manifest.files {
        match found.get(path) {
            Some(got) if got == want => {}
            Some(_) => {
                bail!("{path} in the backup does not match its manifest (damaged or altered)")
            }
            None => bail!("{path} is missing from the backup"),
        }
    }
    if let Some(extra) = found.keys().find(|p| !manifest.files.contains_key(*p)) {
        bail!("{extra} in the backup is not in its manifest (altered)");
    }
    claim_empty(data_dir)?;
    let written = write_restore(from, data_dir, &keys);
    match written {
        Ok(()) => Ok(Summary {
            files: manifest.files.len(),
            bytes: manifest.files.values().map(|f| f.bytes).sum(),
        }),
        Err(e) => {
            empty_dir(data_dir);
            Err(e)
        }
    }
}

fn write_restore(
    from: &Path,
    data_dir: &Path,
    keys: &BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    set_private(data_dir)?;
    std::fs::copy(from.join(DB), data_dir.join(DB))?;
    if from.join("blobs").is_dir() {
        copy_tree(&from.join("blobs"), &data_dir.join("blobs"))?;
    }
    for (name, bytes) in keys {
        let path = data_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
            set_private(parent)?;
        }
        antcode_core::fsutil::write_private(&path, bytes)?;
    }
    Ok(())
}

/// The sealed key files of the backup, opened: a wrong passphrase fails here, before anything
/// is written.
fn open_keys(
    from: &Path,
    manifest: &Manifest,
    passphrase: &str,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    if manifest.kdf.alg != "argon2id" {
        bail!("unsupported key derivation {:?}", manifest.kdf.alg);
    }
    let sealed: BTreeMap<String, String> = serde_json::from_slice(&read_bounded(&from.join(KEYS))?)
        .context("the backup's sealed keys are malformed")?;
    let opener = key_box(passphrase, &manifest.kdf)?;
    let mut keys = BTreeMap::new();
    for (name, value) in sealed {
        if !safe_key_name(&name) {
            bail!("the backup names a key file outside the data dir: {name:?}");
        }
        let b64 = opener
            .open(&name, &value)
            .map_err(|_| anyhow::anyhow!("the passphrase does not open this backup"))?;
        let bytes = B64
            .decode(b64)
            .with_context(|| format!("the sealed {name} is malformed"))?;
        keys.insert(name, bytes);
    }
    if !keys.contains_key("secret.key") {
        bail!("the backup holds no secret key: task secrets could not be opened");
    }
    Ok(keys)
}

/// `secret.key` or a plain file name under `tls/`.
fn safe_key_name(name: &str) -> bool {
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']);
    match name.split_once('/') {
        None => name == "secret.key",
        Some(("tls", file)) => plain(file),
        Some(_) => false,
    }
}

/// The secret key and every file of `tls/` (one level: that is all `antcode up` keeps there).
fn key_files(data_dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let key = data_dir.join("secret.key");
    if !key.is_file() {
        bail!(
            "no secret key at {}: without it the backup's task secrets could not be opened",
            key.display()
        );
    }
    out.push(("secret.key".to_string(), read_key_file(&key)?));
    let tls = data_dir.join("tls");
    if tls.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&tls)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_file() && safe_key_name(&format!("tls/{name}")) {
                out.push((format!("tls/{name}"), read_key_file(&entry.path())?));
            }
        }
    }
    Ok(out)
}

fn read_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_KEY_FILE_BYTES {
        bail!("{} is {len} bytes: not a key file", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The sealing key of a backup: Argon2id of the passphrase with the manifest's parameters.
fn key_box(passphrase: &str, kdf: &Kdf) -> anyhow::Result<SecretBox> {
    // Bounded, so a crafted manifest cannot ask for terabytes or hours.
    if kdf.m_kib > 1 << 20 || kdf.t > 16 || kdf.p > 16 {
        bail!("the backup's key derivation parameters are out of range");
    }
    let salt = B64
        .decode(&kdf.salt)
        .context("the backup's salt is malformed")?;
    let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
        .map_err(|e| anyhow::anyhow!("key derivation parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
        .map_err(|e| anyhow::anyhow!("key derivation: {e}"))?;
    Ok(SecretBox::from_key(key))
}

/// A consistent copy of the live SQLite database at `db` into `to`.
async fn copy_database(db: &Path, to: &Path) -> anyhow::Result<()> {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        // Waits out a writer's lock instead of failing at once.
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(to.display().to_string())
        .execute(&mut conn)
        .await
        .with_context(|| format!("copying {}", db.display()))?;
    Ok(())
}

/// Copies the regular files and directories under `from` into `to` (links are skipped: the
/// blob store writes none).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Size and SHA-256 of every regular file under `root` but the manifest, by relative path.
fn digests(root: &Path) -> anyhow::Result<BTreeMap<String, FileDigest>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && path != Path::new(MANIFEST) {
                out.insert(path.to_string_lossy().into_owned(), digest(&entry.path())?);
            }
        }
    }
    Ok(out)
}

fn digest(path: &Path) -> anyhow::Result<FileDigest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{} (is this an AntCode backup?)", path.display()))?
        .len();
    if len > MAX_META_BYTES {
        bail!(
            "{} is {len} bytes: not part of an AntCode backup",
            path.display()
        );
    }
    Ok(std::fs::read(path)?)
}

/// Uploads the backup in `dir` to `store`, each file under its path, the manifest last (a
/// backup without its manifest is not one). Refuses a store that already holds a backup.
pub async fn upload(dir: &Path, store: &dyn BlobStore) -> anyhow::Result<Summary> {
    if store.exists(MANIFEST).await? {
        bail!("the target already holds a backup ({MANIFEST}); give a new prefix");
    }
    let manifest: Manifest = serde_json::from_slice(&read_bounded(&dir.join(MANIFEST))?)?;
    let mut summary = Summary::default();
    for (path, file) in &manifest.files {
        store
            .put_file(path, &dir.join(path))
            .await
            .with_context(|| format!("uploading {path}"))?;
        summary.files += 1;
        summary.bytes += file.bytes;
    }
    store.put_file(MANIFEST, &dir.join(MANIFEST)).await?;
    Ok(summary)
}

/// Downloads the backup in `store` into `dir` (new or empty), as [`upload`] left it; [`restore`]
/// then checks every file against the manifest.
pub async fn download(store: &dyn BlobStore, dir: &Path) -> anyhow::Result<()> {
    claim_empty(dir)?;
    std::fs::create_dir_all(dir)?;
    set_private(dir)?;
    let manifest = dir.join(MANIFEST);
    store
        .get_to_file(MANIFEST, &manifest)
        .await
        .context("the source holds no backup manifest")?;
    let listed: Manifest = serde_json::from_slice(&read_bounded(&manifest)?)
        .context("the source's manifest is not an AntCode backup manifest")?;
    for path in listed.files.keys() {
        // The manifest names the files; none may point outside `dir`.
        if Path::new(path)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("the backup's manifest names an unsafe path: {path:?}");
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        store
            .get_to_file(path, &target)
            .await
            .with_context(|| format!("downloading {path}"))?;
    }
    Ok(())
}

/// Refuses a directory that exists and holds anything.
fn claim_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => bail!(
                "{} is not empty; give a new or empty directory",
                dir.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{}", dir.display())),
    }
}

/// Removes everything in `dir` (what a failed restore wrote into a directory that was empty).
fn empty_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = match entry.file_type().map(|t| t.is_dir()) {
                Ok(true) => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
        }
    }
}

fn set_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_stay_in_the_data_dir() {
        assert!(safe_key_name("secret.key"));
        assert!(safe_key_name("tls/ca-key.pem"));
        for bad in [
            "../secret.key",
            "tls/../x",
            "tls/a/b",
            "/etc/passwd",
            "tls/",
            "tls/..",
            "runner/x",
            "antcode.db",
        ] {
            assert!(!safe_key_name(bad), "{bad}");
        }
    }
}
