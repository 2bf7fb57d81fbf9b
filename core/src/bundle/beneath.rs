//! Writing under a root directory by descriptor, never following a link.
//!
//! Every directory on the way to an entry is opened from its parent's descriptor with
//! `O_DIRECTORY | O_NOFOLLOW`, and every file, link and directory is made relative to its
//! parent's descriptor, so a symlink in the tree (from the archive, or put there by anything
//! else) makes the write fail instead of leading it elsewhere. This is `openat2`'s
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` done one component at a time, which every Unix has.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::other("NUL in a path"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_at(dir: &OwnedFd, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let name = cstr(name)?;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string that outlives the
    // call; a non-negative result is a new descriptor nothing else owns.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A root directory and the last directory an entry was written in (archives list a
/// directory's entries together, so most entries reuse it).
pub(super) struct Beneath {
    root: OwnedFd,
    last: Option<(PathBuf, OwnedFd)>,
}

impl Beneath {
    pub(super) fn open(root: &Path) -> io::Result<Beneath> {
        let root = File::open(root)?;
        if !root.metadata()?.is_dir() {
            return Err(io::Error::other("the destination is not a directory"));
        }
        Ok(Beneath {
            root: root.into(),
            last: None,
        })
    }

    /// The descriptor of directory `dir` (relative to the root), made if missing.
    fn dir(&mut self, dir: &Path) -> io::Result<&OwnedFd> {
        if self.last.as_ref().is_none_or(|(p, _)| p != dir) {
            let mut fd: Option<OwnedFd> = None;
            for name in dir.iter() {
                let parent = fd.as_ref().unwrap_or(&self.root);
                let next = subdir(parent, name)?;
                fd = Some(next);
            }
            let fd = match fd {
                Some(fd) => fd,
                None => self.root.try_clone()?,
            };
            self.last = Some((dir.to_path_buf(), fd));
        }
        Ok(&self.last.as_ref().expect("just set").1)
    }

    fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => Ok((parent, name)),
            _ => Err(io::Error::other("not a plain relative path")),
        }
    }

    pub(super) fn mkdir(&mut self, path: &Path) -> io::Result<()> {
        let (parent, name) = Self::split(path)?;
        subdir(self.dir(parent)?, name).map(drop)
    }

    /// Creates (or truncates) the regular file at `path`; a link there is an error.
    pub(super) fn create(&mut self, path: &Path) -> io::Result<File> {
        let (parent, name) = Self::split(path)?;
        let fd = open_at(
            self.dir(parent)?,
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o666,
        )?;
        Ok(File::from(fd))
    }

    pub(super) fn symlink(&mut self, path: &Path, target: &Path) -> io::Result<()> {
        let (parent, name) = Self::split(path)?;
        let (target, name) = (cstr(target.as_os_str())?, cstr(name)?);
        let dir = self.dir(parent)?;
        // SAFETY: both strings are NUL-terminated and outlive the call; `dir` is open.
        check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
    }
}

/// Opens directory `name` in `parent`, making it first if it does not exist. A link or
/// anything but a directory there is an error.
fn subdir(parent: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    match open_at(parent, name, flags, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        opened => return opened,
    }
    let c = cstr(name)?;
    // SAFETY: `c` is NUL-terminated and outlives the call; `parent` is open.
    let made = check(unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o777) });
    match made {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_at(parent, name, flags, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_written_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("f")).unwrap();
        let mut b = Beneath::open(root.path()).unwrap();
        assert!(b.create(Path::new("out/x")).is_err());
        assert!(b.mkdir(Path::new("out/y")).is_err());
        assert!(b.create(Path::new("f")).is_err());
        assert!(b.symlink(Path::new("out/l"), Path::new("z")).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // Plain entries are fine.
        b.mkdir(Path::new("a/b")).unwrap();
        std::io::Write::write_all(&mut b.create(Path::new("a/b/c.py")).unwrap(), b"x").unwrap();
        b.symlink(Path::new("a/l"), Path::new("b/c.py")).unwrap();
        assert_eq!(std::fs::read(root.path().join("a/l")).unwrap(), b"x");
    }
}
