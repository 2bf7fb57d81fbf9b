//! Packing a project directory into a `.tar.gz` for `projects push`.
//!
//! `.antcodeignore` files (gitignore syntax, in any directory, applying below it) leave paths
//! out; `.git` directories are always left out. Entries are sorted and carry no owner or time,
//! so the same tree packs to the same bytes and the server stores it once. The server's bundle
//! limits are checked while packing, and the archive is refused as soon as it outgrows the
//! upload limit, so nothing too large is ever sent.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The name of the ignore files.
pub const IGNORE_FILE: &str = ".antcodeignore";
/// The server's default upload limit (`ANTCODE_MAX_UPLOAD_BYTES`).
pub const DEFAULT_MAX_UPLOAD: u64 = 64 * 1024 * 1024;
/// The most entries the server accepts in a bundle (`antcode_core::bundle::Limits`).
pub const MAX_ENTRIES: usize = 10_000;
/// The most bytes a bundle may unpack to (`antcode_core::bundle::Limits`).
pub const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;

/// A packed directory.
#[derive(Debug)]
pub struct Packed {
    pub bytes: Vec<u8>,
    /// The paths packed, relative to the directory, in archive order.
    pub files: Vec<String>,
}

/// A writer that fails once more than `max` bytes were written to it.
struct Capped {
    buf: Vec<u8>,
    max: u64,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if (self.buf.len() + data.len()) as u64 > self.max {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The files of `dir` that no `.antcodeignore` leaves out, sorted, relative to `dir`.
pub fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let walker = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    let mut out = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| Error::usage(format!("{}: {e}", dir.display())))?;
        let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
        if is_dir || entry.file_name() == IGNORE_FILE {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).map_err(|_| {
            Error::usage(format!("{}: outside the directory", entry.path().display()))
        })?;
        let name = rel
            .to_str()
            .ok_or_else(|| Error::usage(format!("{}: not UTF-8", rel.display())))?
            .to_string();
        out.push((name, entry.into_path()));
        if out.len() > MAX_ENTRIES {
            return Err(Error::usage(format!(
                "{} has more than {MAX_ENTRIES} files to pack (the server's limit); leave some out in {IGNORE_FILE}",
                dir.display()
            )));
        }
    }
    Ok(out)
}

/// `dir` as a `.tar.gz` of at most `max_bytes`.
pub fn pack_dir(dir: &Path, max_bytes: u64) -> Result<Packed> {
    let files = files(dir)?;
    if files.is_empty() {
        return Err(Error::usage(format!(
            "{} has no files to pack",
            dir.display()
        )));
    }
    let sink = Capped {
        buf: Vec::new(),
        max: max_bytes,
    };
    let gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut unpacked = 0u64;
    let too_large = || {
        Error::usage(format!(
            "{} packs to more than {max_bytes} bytes, the upload limit (--max-bytes); leave files out in {IGNORE_FILE}",
            dir.display()
        ))
    };
    let io = |path: &Path, e: std::io::Error| match e.kind() == std::io::ErrorKind::FileTooLarge {
        true => too_large(),
        false => Error::io(path, e),
    };
    for (name, path) in &files {
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| Error::io(path, e))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, name, &target)
                .map_err(|e| io(path, e))?;
            continue;
        }
        if !meta.is_file() {
            continue; // sockets, fifos, devices: nothing a project runs from
        }
        unpacked += meta.len();
        if unpacked > MAX_UNPACKED_BYTES {
            return Err(Error::usage(format!(
                "{} holds more than {MAX_UNPACKED_BYTES} bytes to pack (the server's limit); leave files out in {IGNORE_FILE}",
                dir.display()
            )));
        }
        let executable = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
        header.set_mode(if executable { 0o755 } else { 0o644 });
        header.set_size(meta.len());
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        tar.append_data(&mut header, name, file)
            .map_err(|e| io(path, e))?;
    }
    let gz = tar.into_inner().map_err(|e| io(dir, e))?;
    let sink = gz.finish().map_err(|e| io(dir, e))?;
    Ok(Packed {
        bytes: sink.buf,
        files: files.into_iter().map(|(n, _)| n).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn names(packed: &Packed) -> Vec<String> {
        let gz = flate2::read::GzDecoder::new(&packed.bytes[..]);
        let mut ar = tar::Archive::new(gz);
        let mut out: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn antcodeignore_leaves_paths_out_in_gitignore_syntax() {
        let dir = tree(&[
            ("main.py", "print(1)"),
            ("lib/util.py", "x = 1"),
            ("lib/cache.pyc", ""),
            ("data/big.csv", "1,2"),
            ("data/keep.csv", "1,2"),
            (".git/HEAD", "ref"),
            ("sub/.antcodeignore", "local.txt\n"),
            ("sub/local.txt", "x"),
            ("sub/other.txt", "x"),
            (".antcodeignore", "*.pyc\ndata/*\n!data/keep.csv\n"),
        ]);
        let packed = pack_dir(dir.path(), DEFAULT_MAX_UPLOAD).unwrap();
        assert_eq!(
            names(&packed),
            ["data/keep.csv", "lib/util.py", "main.py", "sub/other.txt"]
        );
    }

    #[test]
    fn the_same_tree_packs_to_the_same_bytes() {
        let a = tree(&[("main.py", "print(1)"), ("b/c.py", "")]);
        let b = tree(&[("b/c.py", ""), ("main.py", "print(1)")]);
        let (pa, pb) = (
            pack_dir(a.path(), DEFAULT_MAX_UPLOAD).unwrap(),
            pack_dir(b.path(), DEFAULT_MAX_UPLOAD).unwrap(),
        );
        assert_eq!(pa.bytes, pb.bytes);
    }

    #[test]
    fn an_archive_past_the_limit_is_refused_while_packing() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: String = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        let dir = tree(&[("main.py", &noise)]);
        let err = pack_dir(dir.path(), 1024).unwrap_err().to_string();
        assert!(
            err.contains("more than 1024 bytes, the upload limit"),
            "{err}"
        );
    }
}
