//! Reading a stored bundle's files without unpacking it to disk: the listing a file browser
//! shows, and the bytes of chosen files.
//!
//! Both go through the same walker as [`super::inspect`], so a bundle is read exactly as the
//! runner would unpack it (a later entry of the same path replaces an earlier one). Every file
//! is streamed: a listing keeps a digest and the first [`SNIFF_BYTES`] of each file, a read keeps
//! at most the caller's byte bound of the files it asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use sha2::{Digest, Sha256};

use super::{walk, BundleError, EntryKind, Limits};
use crate::model::BundleFormat;

/// Bytes at the start of a file looked at to tell text from binary.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// One entry of a bundle as a file browser lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path, `/`-separated, normalised (no `.` or empty components).
    pub path: String,
    pub size: u64,
    /// Not UTF-8 text, or holds a NUL, judged by its first [`SNIFF_BYTES`].
    pub binary: bool,
    /// A symlink's target (inside the bundle: the walker refuses others).
    pub link: Option<String>,
    /// SHA-256 of the content (of the target path, for a link).
    pub sha256: String,
}

/// A file's bytes, at most the bound asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBytes {
    pub data: Vec<u8>,
    /// The file's whole size; `data` is shorter when the file passed the bound.
    pub size: u64,
    /// A symlink's target; `data` is then empty.
    pub link: Option<String>,
}

/// Whether `head`, the start of a file, looks like binary content: a NUL, or bytes that are not
/// UTF-8 (a multi-byte character cut by the end of `head` does not count).
pub fn looks_binary(head: &[u8]) -> bool {
    if head.contains(&0) {
        return true;
    }
    match std::str::from_utf8(head) {
        Ok(_) => false,
        Err(e) => e.error_len().is_some(),
    }
}

/// Hashes what is written and keeps its first [`SNIFF_BYTES`].
#[derive(Default)]
struct Probe {
    hasher: Sha256,
    head: Vec<u8>,
    size: u64,
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        let room = SNIFF_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..room.min(buf.len())]);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps at most `limit` bytes of what is written, counting all of it.
struct Capped {
    data: Vec<u8>,
    limit: usize,
    size: u64,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.data.len());
        self.data.extend_from_slice(&buf[..room.min(buf.len())]);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn slash_path(path: &std::path::Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Every file and symlink of an archive, sorted by path. A single `.py` bundle is listed by its
/// caller, which knows the file's name.
pub fn list(
    format: BundleFormat,
    data: &[u8],
    limits: Limits,
) -> Result<Vec<FileEntry>, BundleError> {
    let mut out: BTreeMap<String, FileEntry> = BTreeMap::new();
    walk(format, data, limits, &mut |path, kind, budget| {
        let path = slash_path(path);
        let entry = match kind {
            EntryKind::Dir => {
                out.remove(&path);
                return Ok(());
            }
            EntryKind::Symlink(target) => {
                let target = slash_path(&target);
                FileEntry {
                    path: path.clone(),
                    size: 0,
                    binary: false,
                    sha256: hex::encode(Sha256::digest(target.as_bytes())),
                    link: Some(target),
                }
            }
            EntryKind::File(reader) => {
                let mut probe = Probe::default();
                budget.copy(reader, &mut probe)?;
                FileEntry {
                    path: path.clone(),
                    size: probe.size,
                    binary: looks_binary(&probe.head),
                    link: None,
                    sha256: hex::encode(probe.hasher.finalize()),
                }
            }
        };
        out.insert(path, entry);
        Ok(())
    })?;
    Ok(out.into_values().collect())
}

/// The files of an archive named in `wanted` (normalised paths, as [`list`] gives them), each
/// cut at `max_bytes`. A path the archive lacks is absent from the answer.
pub fn read(
    format: BundleFormat,
    data: &[u8],
    wanted: &BTreeSet<String>,
    max_bytes: usize,
    limits: Limits,
) -> Result<BTreeMap<String, FileBytes>, BundleError> {
    let mut out = BTreeMap::new();
    walk(format, data, limits, &mut |path, kind, budget| {
        let path = slash_path(path);
        if !wanted.contains(&path) {
            // Still inflated and counted: the budget guards the whole walk.
            if let EntryKind::File(reader) = kind {
                budget.copy(reader, &mut io::sink())?;
            }
            return Ok(());
        }
        let file = match kind {
            EntryKind::Dir => {
                out.remove(&path);
                return Ok(());
            }
            EntryKind::Symlink(target) => FileBytes {
                data: vec![],
                size: 0,
                link: Some(slash_path(&target)),
            },
            EntryKind::File(reader) => {
                let mut capped = Capped {
                    data: Vec::new(),
                    limit: max_bytes,
                    size: 0,
                };
                budget.copy(reader, &mut capped)?;
                FileBytes {
                    data: capped.data,
                    size: capped.size,
                    link: None,
                }
            }
        };
        out.insert(path, file);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::tests::zip_of;

    #[test]
    fn lists_sorted_with_sizes_and_binary_flags() {
        let z = zip_of(&[
            ("pkg/b.py", b"x = 1\n"),
            ("a.bin", b"\x00\x01\x02"),
            ("./c.txt", "caf\u{e9}\n".as_bytes()),
        ]);
        let files = list(BundleFormat::Zip, &z, Limits::default()).unwrap();
        let got: Vec<(&str, u64, bool)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.size, f.binary))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.bin", 3, true),
                ("c.txt", 6, false),
                ("pkg/b.py", 6, false)
            ]
        );
        assert_eq!(files[2].sha256, hex::encode(Sha256::digest(b"x = 1\n")));
    }

    #[test]
    fn reads_only_what_is_asked_within_the_bound() {
        let z = zip_of(&[("a.py", b"0123456789"), ("b.py", b"skip")]);
        let wanted = BTreeSet::from(["a.py".to_string(), "nope.py".to_string()]);
        let got = read(BundleFormat::Zip, &z, &wanted, 4, Limits::default()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got["a.py"].data, b"0123");
        assert_eq!(got["a.py"].size, 10);
    }

    #[test]
    fn a_cut_character_is_not_binary() {
        let text = "é".repeat(10);
        assert!(!looks_binary(&text.as_bytes()[..5]));
        assert!(looks_binary(b"\xff\xfeA"));
        assert!(looks_binary(b"a\0b"));
    }
}
