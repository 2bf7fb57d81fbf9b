//! Project bundles: recognising an upload, checking every entry, and unpacking it safely.
//!
//! Control inspects an upload with the same walker the runner later extracts with, so an archive
//! that is accepted is exactly one that can be unpacked. Refused: absolute paths, `..` components,
//! symlinks whose target, resolved through the links before them, leaves the bundle
//! (`tree`), entries written through or over a link, hard links, devices and
//! FIFOs, and archives past the entry-count or unpacked-size caps (decompression bombs are
//! caught while reading, with a byte counter per entry, never buffered or trusted from headers).
//! Extraction writes by descriptor under the destination and never follows a link
//! (`beneath`).

mod beneath;
mod browse;
mod tree;

pub use browse::{list, looks_binary, read, FileBytes, FileEntry, SNIFF_BYTES};

use flate2::read::GzDecoder;
use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};

use crate::model::BundleFormat;
use beneath::Beneath;
use tree::{Kind, Tree};

/// Longest entry path and link target, in bytes (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;
/// Most components in an entry path.
const MAX_DEPTH: usize = 128;
/// Largest `requirements.txt` read from an archive.
pub const MAX_REQUIREMENTS_BYTES: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("not a Python file or a supported archive (.py, .zip, .tar.gz)")]
    UnknownFormat,
    #[error("the archive is corrupt: {0}")]
    Corrupt(String),
    #[error("unsafe entry {0:?}: {1}")]
    Unsafe(String, &'static str),
    #[error("the archive is too large once unpacked (more than {0} bytes)")]
    TooLarge(u64),
    #[error("the archive has too many entries (more than {0})")]
    TooManyEntries(usize),
    #[error("the entrypoint {0:?} is not in the bundle")]
    MissingEntrypoint(String),
    #[error("could not write the bundle: {0}")]
    Io(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_unpacked_bytes: 512 * 1024 * 1024,
        }
    }
}

/// What an upload contains, as far as running it is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<String>,
    /// Contents of a top-level `requirements.txt`, if any.
    pub requirements: Option<String>,
    pub has_pyproject: bool,
    pub has_uv_lock: bool,
}

/// Recognises an upload by its content (magic bytes), using the name only for plain Python.
pub fn detect_format(file_name: &str, data: &[u8]) -> Result<BundleFormat, BundleError> {
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        return Ok(BundleFormat::Zip);
    }
    if data.starts_with(&[0x1f, 0x8b]) {
        return Ok(BundleFormat::TarGz);
    }
    if file_name.ends_with(".py") && std::str::from_utf8(data).is_ok() && !data.contains(&0) {
        return Ok(BundleFormat::Py);
    }
    Err(BundleError::UnknownFormat)
}

enum EntryKind<'a> {
    Dir,
    File(&'a mut dyn Read),
    Symlink(PathBuf),
}

/// Normalises an entry path, refusing anything that is not a plain relative path.
fn safe_path(raw: &str) -> Result<PathBuf, BundleError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(BundleError::Unsafe(
            raw.chars().take(80).collect(),
            "path too long",
        ));
    }
    let path = Path::new(raw);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(BundleError::Unsafe(
                    raw.into(),
                    "parent directory component",
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(BundleError::Unsafe(raw.into(), "absolute path"))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(BundleError::Unsafe(raw.into(), "empty path"));
    }
    if out.components().count() > MAX_DEPTH {
        return Err(BundleError::Unsafe(raw.into(), "path too deep"));
    }
    Ok(out)
}

/// Counts entries and bytes against the limits as they are read.
struct Budget {
    limits: Limits,
    entries: usize,
    bytes: u64,
    tree: Tree,
}

impl Budget {
    fn entry(&mut self) -> Result<(), BundleError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(BundleError::TooManyEntries(self.limits.max_entries));
        }
        Ok(())
    }

    /// Copies `r` into `w`, failing as soon as the running total passes the cap.
    fn copy(&mut self, r: &mut dyn Read, w: &mut dyn std::io::Write) -> Result<(), BundleError> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| BundleError::Corrupt(e.to_string()))?;
            if n == 0 {
                return Ok(());
            }
            self.bytes += n as u64;
            if self.bytes > self.limits.max_unpacked_bytes {
                return Err(BundleError::TooLarge(self.limits.max_unpacked_bytes));
            }
            w.write_all(&buf[..n])
                .map_err(|e| BundleError::Io(e.to_string()))?;
        }
    }
}

/// Checks an entry against the entries before it, then hands it to `visit`.
fn admit(
    path: &Path,
    kind: EntryKind<'_>,
    budget: &mut Budget,
    visit: &mut Visitor<'_>,
) -> Result<(), BundleError> {
    match &kind {
        EntryKind::Dir => budget.tree.admit(path, Kind::Dir, None)?,
        EntryKind::File(_) => budget.tree.admit(path, Kind::File, None)?,
        EntryKind::Symlink(target) => budget.tree.admit(path, Kind::Link, Some(target))?,
    }
    visit(path, kind, budget)
}

type Visitor<'v> = dyn FnMut(&Path, EntryKind<'_>, &mut Budget) -> Result<(), BundleError> + 'v;

fn walk_zip(data: &[u8], budget: &mut Budget, visit: &mut Visitor<'_>) -> Result<(), BundleError> {
    let corrupt = |e: zip::result::ZipError| BundleError::Corrupt(e.to_string());
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(corrupt)?;
    for i in 0..archive.len() {
        budget.entry()?;
        let mut file = archive.by_index(i).map_err(corrupt)?;
        let path = safe_path(file.name())?;
        let mode = file.unix_mode().unwrap_or(0);
        let file_type = mode & 0o170000;
        if file.is_dir() {
            admit(&path, EntryKind::Dir, budget, visit)?;
        } else if file_type == 0o120000 {
            let mut target = String::new();
            file.by_ref()
                .take(MAX_PATH_BYTES as u64)
                .read_to_string(&mut target)
                .map_err(|e| BundleError::Corrupt(e.to_string()))?;
            admit(
                &path,
                EntryKind::Symlink(PathBuf::from(target)),
                budget,
                visit,
            )?;
        } else if file_type == 0 || file_type == 0o100000 {
            admit(&path, EntryKind::File(&mut file), budget, visit)?;
        } else {
            return Err(BundleError::Unsafe(file.name().into(), "special file"));
        }
    }
    Ok(())
}

fn walk_tar_gz(
    data: &[u8],
    budget: &mut Budget,
    visit: &mut Visitor<'_>,
) -> Result<(), BundleError> {
    let corrupt = |e: std::io::Error| BundleError::Corrupt(e.to_string());
    let mut archive = tar::Archive::new(GzDecoder::new(data));
    for entry in archive.entries().map_err(corrupt)? {
        budget.entry()?;
        let mut entry = entry.map_err(corrupt)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = safe_path(&raw)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            admit(&path, EntryKind::Dir, budget, visit)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(corrupt)?
                .ok_or_else(|| BundleError::Corrupt(format!("symlink {raw} without target")))?
                .into_owned();
            if target.as_os_str().len() > MAX_PATH_BYTES {
                return Err(BundleError::Unsafe(raw, "symlink target too long"));
            }
            admit(&path, EntryKind::Symlink(target), budget, visit)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            admit(&path, EntryKind::File(&mut entry), budget, visit)?;
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        } else if kind.is_hard_link() {
            return Err(BundleError::Unsafe(raw, "hard link"));
        } else {
            return Err(BundleError::Unsafe(raw, "special file"));
        }
    }
    Ok(())
}

fn walk(
    format: BundleFormat,
    data: &[u8],
    limits: Limits,
    visit: &mut Visitor<'_>,
) -> Result<(), BundleError> {
    let mut budget = Budget {
        limits,
        entries: 0,
        bytes: 0,
        // Entries, their parent directories and the names link targets walk through.
        tree: Tree::new(limits.max_entries.saturating_mul(4)),
    };
    match format {
        BundleFormat::Zip => walk_zip(data, &mut budget, visit),
        BundleFormat::TarGz => walk_tar_gz(data, &mut budget, visit),
        BundleFormat::Py => Err(BundleError::UnknownFormat),
    }
}

/// Checks every entry of an archive and lists what matters for running it.
pub fn inspect(format: BundleFormat, data: &[u8], limits: Limits) -> Result<Manifest, BundleError> {
    let mut manifest = Manifest::default();
    walk(format, data, limits, &mut |path, kind, budget| {
        let name = path.to_string_lossy().replace('\\', "/");
        match kind {
            EntryKind::Dir => {}
            EntryKind::Symlink(_) => manifest.files.push(name),
            EntryKind::File(reader) => {
                // Only the requirements are kept; every other entry is counted and dropped as
                // it is inflated, so a bomb costs a buffer, not its size.
                if name == "requirements.txt" {
                    let mut content = Vec::new();
                    budget.copy(reader, &mut content)?;
                    if content.len() as u64 > MAX_REQUIREMENTS_BYTES {
                        return Err(BundleError::Unsafe(
                            name,
                            "requirements.txt larger than 256 KiB",
                        ));
                    }
                    manifest.requirements = Some(String::from_utf8_lossy(&content).into_owned());
                } else {
                    budget.copy(reader, &mut std::io::sink())?;
                }
                match name.as_str() {
                    "pyproject.toml" => manifest.has_pyproject = true,
                    "uv.lock" => manifest.has_uv_lock = true,
                    _ => {}
                }
                manifest.files.push(name);
            }
        }
        Ok(())
    })?;
    manifest.files.sort();
    Ok(manifest)
}

/// Unpacks a bundle into `dest` (which must exist and be empty). A single `.py` bundle is written
/// as `file_name`.
pub fn extract(
    format: BundleFormat,
    data: &[u8],
    file_name: Option<&str>,
    dest: &Path,
    limits: Limits,
) -> Result<(), BundleError> {
    let mut create = |path: &Path| std::fs::File::create(path);
    extract_with(format, data, file_name, dest, limits, &mut create)
}

/// Opens a file for writing, empty, at a path that does not exist yet.
pub type CreateFile<'a> = dyn FnMut(&Path) -> std::io::Result<std::fs::File> + 'a;

/// [`extract`], with a single-file bundle opened by `create` (the runner writes into files it
/// recycled, see its `workdirs`). An archive's entries are written by descriptor under `dest`
/// (see `beneath`), so no link, from the archive or already in `dest`, is
/// followed.
pub fn extract_with(
    format: BundleFormat,
    data: &[u8],
    file_name: Option<&str>,
    dest: &Path,
    limits: Limits,
    create: &mut CreateFile<'_>,
) -> Result<(), BundleError> {
    let io = |e: std::io::Error| BundleError::Io(e.to_string());
    if format == BundleFormat::Py {
        let name = safe_path(file_name.unwrap_or("main.py"))?;
        let mut out = create(&dest.join(name)).map_err(io)?;
        return std::io::Write::write_all(&mut out, data).map_err(io);
    }
    let mut root = Beneath::open(dest).map_err(io)?;
    walk(format, data, limits, &mut |path, kind, budget| match kind {
        EntryKind::Dir => root.mkdir(path).map_err(io),
        EntryKind::Symlink(link) => root.symlink(path, &link).map_err(io),
        EntryKind::File(reader) => {
            let mut out = root.create(path).map_err(io)?;
            budget.copy(reader, &mut out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A zip of `entries` (name, bytes), for this module's tests and its children's.
    pub(super) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            for (name, data) in entries {
                w.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    fn tar_gz_of(
        build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>),
    ) -> Vec<u8> {
        let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(enc);
        build(&mut b);
        b.into_inner().unwrap().finish().unwrap()
    }

    fn raw_tar_entry(
        b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_old();
        // Write the name bytes directly: `set_path` itself refuses `..`, which is what we test.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn formats_are_recognised_by_content() {
        assert_eq!(detect_format("a.py", b"print(1)"), Ok(BundleFormat::Py));
        assert_eq!(
            detect_format("a.zip", &zip_of(&[("main.py", b"")])),
            Ok(BundleFormat::Zip)
        );
        assert_eq!(
            detect_format("x.bin", b"\x7fELF"),
            Err(BundleError::UnknownFormat)
        );
        assert_eq!(
            detect_format("a.py", b"\xff\xfe"),
            Err(BundleError::UnknownFormat)
        );
    }

    #[test]
    fn inspect_finds_requirements_and_files() {
        let z = zip_of(&[
            ("main.py", b"print(1)"),
            ("requirements.txt", b"six\n"),
            ("pkg/util.py", b""),
        ]);
        let m = inspect(BundleFormat::Zip, &z, Limits::default()).unwrap();
        assert_eq!(m.files, vec!["main.py", "pkg/util.py", "requirements.txt"]);
        assert_eq!(m.requirements.as_deref(), Some("six\n"));
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let cases: Vec<(Vec<u8>, BundleFormat)> = vec![
            (zip_of(&[("../evil.py", b"")]), BundleFormat::Zip),
            (zip_of(&[("/etc/evil.py", b"")]), BundleFormat::Zip),
            (
                tar_gz_of(|b| raw_tar_entry(b, "../evil.py", tar::EntryType::Regular, None, b"x")),
                BundleFormat::TarGz,
            ),
            (
                tar_gz_of(|b| raw_tar_entry(b, "/abs.py", tar::EntryType::Regular, None, b"x")),
                BundleFormat::TarGz,
            ),
            (
                tar_gz_of(|b| {
                    raw_tar_entry(
                        b,
                        "link",
                        tar::EntryType::Symlink,
                        Some("../../etc/passwd"),
                        b"",
                    )
                }),
                BundleFormat::TarGz,
            ),
            (
                tar_gz_of(|b| {
                    raw_tar_entry(b, "link", tar::EntryType::Symlink, Some("/etc/passwd"), b"")
                }),
                BundleFormat::TarGz,
            ),
            (
                tar_gz_of(|b| raw_tar_entry(b, "hard", tar::EntryType::Link, Some("main.py"), b"")),
                BundleFormat::TarGz,
            ),
            (
                tar_gz_of(|b| raw_tar_entry(b, "dev", tar::EntryType::Char, None, b"")),
                BundleFormat::TarGz,
            ),
        ];
        for (data, format) in cases {
            let err = inspect(format, &data, Limits::default()).unwrap_err();
            assert!(matches!(err, BundleError::Unsafe(..)), "{err:?}");
            let dir = tempfile::tempdir().unwrap();
            assert!(extract(format, &data, None, dir.path(), Limits::default()).is_err());
        }
    }

    #[test]
    fn internal_symlinks_are_allowed() {
        let data = tar_gz_of(|b| {
            raw_tar_entry(b, "real.py", tar::EntryType::Regular, None, b"x = 1");
            raw_tar_entry(
                b,
                "sub/link.py",
                tar::EntryType::Symlink,
                Some("../real.py"),
                b"",
            );
        });
        let dir = tempfile::tempdir().unwrap();
        extract(
            BundleFormat::TarGz,
            &data,
            None,
            dir.path(),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/link.py")).unwrap(),
            "x = 1"
        );
    }

    /// The chain from issue 23: each link looks inside on its own, together they lead four
    /// levels above the root, and a regular file then written at `esc` would land there.
    pub(crate) fn escape_chain() -> Vec<u8> {
        tar_gz_of(|b| {
            raw_tar_entry(
                b,
                "a/b/c/d/up",
                tar::EntryType::Symlink,
                Some("../../../.."),
                b"",
            );
            raw_tar_entry(
                b,
                "esc",
                tar::EntryType::Symlink,
                Some("a/b/c/d/up/../../../../X"),
                b"",
            );
            raw_tar_entry(b, "esc", tar::EntryType::Regular, None, b"owned");
        })
    }

    #[test]
    fn a_symlink_chain_cannot_write_outside_the_root() {
        let top = tempfile::tempdir().unwrap();
        let dest = top.path().join("1/2/3/4/run");
        std::fs::create_dir_all(&dest).unwrap();
        let data = escape_chain();
        let err = inspect(BundleFormat::TarGz, &data, Limits::default()).unwrap_err();
        assert!(
            matches!(err, BundleError::Unsafe(ref p, "symlink pointing outside the bundle") if p == "esc"),
            "{err:?}"
        );
        assert!(extract(BundleFormat::TarGz, &data, None, &dest, Limits::default()).is_err());
        assert!(!top.path().join("1/X").exists(), "written outside the root");
    }

    #[test]
    fn extraction_never_follows_a_link_already_in_the_destination() {
        let dest = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("pkg")).unwrap();
        let data = tar_gz_of(|b| raw_tar_entry(b, "pkg/x.py", tar::EntryType::Regular, None, b"1"));
        assert!(extract(
            BundleFormat::TarGz,
            &data,
            None,
            dest.path(),
            Limits::default()
        )
        .is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_bomb_is_counted_not_buffered() {
        // 64 MiB of zeros in one entry, refused at 32 MiB: before, each entry was read whole
        // into memory first (a 1 GiB bomb cost ~500 MB); now the peak is one read buffer.
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let z = zip_of(&[("big.bin", &zeros)]);
        drop(zeros);
        let limits = Limits {
            max_entries: 10,
            max_unpacked_bytes: 32 * 1024 * 1024,
        };
        let before = peak_reset();
        assert_eq!(
            inspect(BundleFormat::Zip, &z, limits),
            Err(BundleError::TooLarge(32 * 1024 * 1024))
        );
        let grew = peak_kb().saturating_sub(before);
        assert!(
            grew < 16 * 1024,
            "inspecting the bomb grew the peak RSS by {grew} KiB"
        );
    }

    /// Resets the process's peak RSS to its current RSS and returns it, in KiB.
    fn peak_reset() -> u64 {
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        peak_kb()
    }

    fn peak_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn bombs_are_stopped_while_reading() {
        let zeros = vec![0u8; 2 * 1024 * 1024];
        let z = zip_of(&[("big.bin", &zeros)]);
        let small = Limits {
            max_entries: 10,
            max_unpacked_bytes: 1024 * 1024,
        };
        assert_eq!(
            inspect(BundleFormat::Zip, &z, small),
            Err(BundleError::TooLarge(1024 * 1024))
        );
        let many: Vec<(String, &[u8])> = (0..20).map(|i| (format!("f{i}.py"), &b""[..])).collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        assert_eq!(
            inspect(BundleFormat::Zip, &zip_of(&refs), small),
            Err(BundleError::TooManyEntries(10))
        );
    }
}
