//! Attempts' working directories, recycled.
//!
//! Each attempt runs in a directory of its own under `work/`: its unpacked bundle, its current
//! directory, and a `.tmp` for `TMPDIR`. Making and removing two directories per run is a
//! measurable share of a short run's cost (on ext4 without a journal, a new inode is searched
//! for past every inode freed in the last seconds, so that cost grows with the run rate). So a
//! finished attempt's directory is emptied (its `.tmp` kept, empty) and moved to this runner's
//! spares; a later attempt renames a spare into place instead of making a new one.
//!
//! A spare is handed out only after a sweep for escaped processes (see [`crate::sweeper`]) that
//! started after its attempt finished: a process of that attempt that outlived it is killed
//! before another attempt gets the directory it may still be using. Anything that cannot be
//! emptied, renamed or found falls back to removing and making directories. A
//! recycled directory and its `.tmp` get the mode and times `mkdir` gives, and one that is no
//! longer ours or carries extended attributes is not recycled: nothing a run set on its
//! directory reaches the next attempt. Nor anything added after the give-back (by a process
//! of the attempt that escaped, before the sweep killed it): a spare that holds more than an
//! empty `.tmp` and kept regular files when it is taken is not used.
//!
//! The same holds for the bundle's files: creating a file allocates an inode, with the same
//! search. So emptying keeps up to [`KEEP_FILES`] of the top level's regular files, truncated
//! to nothing, and the next attempt writes its bundle into them ([`Leftovers::create`]) if the
//! bundle is a single file (an archive may need a directory where one stands); what it does
//! not need is removed before its process starts. A kept file is written into only if,
//! opened without following links, it is still a regular file of this user with no other
//! name, empty and without extended attributes (ACLs included); its mode and times are then
//! set as a new file's. Otherwise it is removed and a new file made.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sweeper::Sweeper;

/// The most spares kept: enough for the runs finishing during two sweeps at a few hundred runs a
/// second; more are removed.
const MAX_SPARES: usize = 256;
/// The directory `TMPDIR` points to inside each working directory.
pub const TMP: &str = ".tmp";
/// At most this many files of a finished attempt are kept (emptied) for the next one's bundle.
pub const KEEP_FILES: usize = 16;

struct Spare {
    path: PathBuf,
    /// Handed out once the sweeper has completed this many sweeps.
    after_sweeps: u64,
}

/// One runner's working directories (the spares are its own: runners may share a data dir).
pub struct WorkDirs {
    spare_root: PathBuf,
    spares: Mutex<VecDeque<Spare>>,
    named: AtomicU64,
    sweeper: Arc<Sweeper>,
}

impl WorkDirs {
    pub fn new(data_dir: &Path, sweeper: Arc<Sweeper>) -> WorkDirs {
        WorkDirs {
            spare_root: data_dir
                .join("spare-work")
                .join(antcode_core::ids::new_id()),
            spares: Mutex::default(),
            named: AtomicU64::new(0),
            sweeper,
        }
    }

    /// Makes `dir` (and its `.tmp`) exist, from a spare when one is ready. It is empty but for
    /// the returned leftovers, which the caller writes its files into or removes. Blocking.
    pub fn take(&self, dir: &Path) -> io::Result<Leftovers> {
        if let Some(spare) = self.ready_spare() {
            // Whatever is at `dir` (an earlier try of this attempt) goes only if the rename
            // meets it: an empty directory it replaces, anything else is removed first.
            let renamed = std::fs::rename(&spare, dir).is_ok()
                || (std::fs::remove_dir_all(dir).is_ok() && std::fs::rename(&spare, dir).is_ok());
            let left = (renamed && reset_dir(dir) && reset_dir(&dir.join(TMP)))
                .then(|| Leftovers::in_dir(dir))
                .flatten();
            if let Some(left) = left {
                metrics::counter!("antcode_runner_work_dirs_total", "from" => "spare").increment(1);
                return Ok(left);
            }
            if !renamed {
                let _ = std::fs::remove_dir_all(&spare);
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join(TMP))?;
        metrics::counter!("antcode_runner_work_dirs_total", "from" => "new").increment(1);
        Ok(Leftovers::none(dir))
    }

    /// Empties a finished attempt's `dir` and keeps it as a spare, or removes it. Call it after
    /// the attempt was queued for the sweeper. Blocking.
    pub fn give_back(&self, dir: &Path) {
        let spare = self
            .spare_root
            .join(format!("w{}", self.named.fetch_add(1, Ordering::Relaxed)));
        // The spares' directory is made when a rename first misses it, not tried every time.
        let kept = self.lock().len() < MAX_SPARES
            && empty(dir).is_ok()
            && (std::fs::rename(dir, &spare).is_ok()
                || (std::fs::create_dir_all(&self.spare_root).is_ok()
                    && std::fs::rename(dir, &spare).is_ok()));
        if !kept {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        // The sweep running now may have taken its list before this attempt was queued; the
        // one after it has not.
        let after_sweeps = self.sweeper.sweeps() + 2;
        self.lock().push_back(Spare {
            path: spare,
            after_sweeps,
        });
    }

    fn ready_spare(&self) -> Option<PathBuf> {
        let mut spares = self.lock();
        let ready = spares
            .front()
            .is_some_and(|s| self.sweeper.sweeps() >= s.after_sweeps);
        ready.then(|| spares.pop_front().map(|s| s.path)).flatten()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Spare>> {
        crate::lock(&self.spares)
    }
}

impl Drop for WorkDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.spare_root);
    }
}

/// Removes everything in `dir` but an empty `.tmp`, which must be a directory of its own (not
/// a link), and up to [`KEEP_FILES`] regular files of the top level, truncated to nothing.
fn empty(dir: &Path) -> io::Result<()> {
    let mut has_tmp = false;
    let mut kept = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if entry.file_name() == TMP && kind.is_dir() {
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                remove(&inner.path(), inner.file_type()?.is_dir())?;
            }
            has_tmp = true;
        } else if kind.is_file()
            && entry.file_name() != TMP
            && kept < KEEP_FILES
            && truncate_own(&entry.path())
        {
            kept += 1;
        } else {
            remove(&entry.path(), kind.is_dir())?;
        }
    }
    match has_tmp {
        true => Ok(()),
        false => std::fs::create_dir(dir.join(TMP)),
    }
}

/// Truncates the file at `path` to nothing if it is a regular file of this user with no other
/// name (opened without following a link, nor waiting on a FIFO put in its place).
fn truncate_own(path: &Path) -> bool {
    open_own(path).is_ok_and(|(file, _)| file.set_len(0).is_ok())
}

/// Opens `path` for writing if it is a regular file of this user with no other name; with its
/// metadata.
fn open_own(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    match meta.is_file() && meta.nlink() == 1 && ours(&meta) {
        true => Ok((file, meta)),
        false => Err(io::Error::other("not a file of our own")),
    }
}

/// The emptied files a recycled working directory came with (see the module doc).
pub struct Leftovers {
    dir: PathBuf,
    names: Vec<OsString>,
}

impl Leftovers {
    fn none(dir: &Path) -> Leftovers {
        Leftovers {
            dir: dir.to_path_buf(),
            names: Vec::new(),
        }
    }

    /// The regular files at the top of a recycled `dir`, if it holds nothing else but an empty
    /// `.tmp`: a process of the attempt that escaped may have added something after the
    /// give-back and before the sweep killed it, and the next attempt must not find it.
    fn in_dir(dir: &Path) -> Option<Leftovers> {
        let mut left = Leftovers::none(dir);
        for entry in std::fs::read_dir(dir).ok()? {
            let entry = entry.ok()?;
            let kind = entry.file_type().ok()?;
            if entry.file_name() == TMP && kind.is_dir() {
                std::fs::read_dir(entry.path())
                    .ok()?
                    .next()
                    .is_none()
                    .then_some(())?;
            } else if kind.is_file() && left.names.len() < KEEP_FILES {
                left.names.push(entry.file_name());
            } else {
                return None;
            }
        }
        Some(left)
    }

    /// Opens a new, empty file at `path` (which must not exist but as a leftover) for writing:
    /// a leftover (its own name first, else renamed there) when one passes the checks, else a
    /// new file.
    pub fn create(&mut self, path: &Path) -> io::Result<File> {
        let own = (path.parent() == Some(self.dir.as_path()))
            .then(|| path.file_name())
            .flatten()
            .and_then(|name| self.names.iter().position(|n| n == name));
        let reused = match own {
            Some(at) => {
                self.names.swap_remove(at);
                true
            }
            None => self.rename_one_to(path),
        };
        if reused {
            match reuse(path) {
                Ok(file) => return Ok(file),
                Err(_) => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        File::create(path)
    }

    /// Renames a leftover to `path` unless something is there already.
    fn rename_one_to(&mut self, path: &Path) -> bool {
        while let Some(name) = self.names.pop() {
            let from = self.dir.join(&name);
            if rename_no_replace(&from, path).is_ok() {
                return true;
            }
            let _ = std::fs::remove_file(&from);
        }
        false
    }

    /// Removes the leftovers nothing was written into; `create` then makes new files.
    pub fn remove_rest(&mut self) {
        for name in self.names.drain(..) {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }
}

/// Opens a leftover at `path` for writing if it passes the checks of the module doc, with the
/// mode and times a new file gets.
fn reuse(path: &Path) -> io::Result<File> {
    let (file, meta) = open_own(path)?;
    if meta.len() != 0 {
        return Err(io::Error::other("written to after it was emptied"));
    }
    renew(&file, 0o666)?;
    Ok(file)
}

/// Gives a recycled directory (`dir` or its `.tmp`) what `mkdir` gives a new one, if it is
/// still a directory of this user without extended attributes (a run may have changed its
/// mode, times or attributes; none of that may reach the next attempt).
fn reset_dir(dir: &Path) -> bool {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir);
    let Ok(file) = opened else { return false };
    file.metadata().is_ok_and(|m| ours(&m)) && renew(&file, 0o777).is_ok()
}

/// Whether this process's user, or the user its sandboxed tasks run as, owns the inode.
fn ours(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid cannot fail.
    meta.uid() == unsafe { libc::geteuid() } || Some(meta.uid()) == crate::sandbox::task_uid()
}

/// Refuses an inode with extended attributes (ACLs included); else gives it `mode` less the
/// umask, as a new one gets, and the current time.
fn renew(file: &File, mode: u32) -> io::Result<()> {
    // SAFETY: a null buffer of size 0 asks only for the size of the attribute list.
    let xattrs = unsafe {
        libc::flistxattr(
            std::os::fd::AsRawFd::as_raw_fd(file),
            std::ptr::null_mut(),
            0,
        )
    };
    if xattrs != 0 {
        return Err(io::Error::other("has extended attributes"));
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode & !umask()))?;
    let now = std::time::SystemTime::now();
    file.set_times(
        std::fs::FileTimes::new()
            .set_accessed(now)
            .set_modified(now),
    )
}

/// The process's umask, as /proc shows it (reading it with umask(2) would change it for a
/// moment, for every thread); 022 if it cannot be read.
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("Umask:"))?;
                u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
            })
            .unwrap_or(0o022)
    })
}

/// `rename(2)` that fails if `to` exists.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Removes a directory tree or anything else (a link itself, never what it points to).
fn remove(path: &Path, is_dir: bool) -> io::Result<()> {
    match is_dir {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect();
        names.sort();
        names
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.clone());
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            }
        }
        out
    }

    #[test]
    fn a_spare_is_handed_out_empty_and_only_after_two_more_sweeps() {
        let data = tempfile::tempdir().unwrap();
        let sweeper = Arc::new(Sweeper::default());
        let dirs = WorkDirs::new(data.path(), sweeper.clone());
        let first = data.path().join("work/a-1");
        dirs.take(&first).unwrap();
        assert_eq!(files(&first), [TMP]);
        // What a run leaves behind: files, a tree, a link out, its temporary files.
        std::fs::write(first.join("out.csv"), "x").unwrap();
        std::fs::create_dir_all(first.join("pkg/sub")).unwrap();
        std::fs::write(first.join("pkg/sub/m.py"), "").unwrap();
        std::os::unix::fs::symlink(data.path(), first.join("link")).unwrap();
        std::fs::write(first.join(".tmp/t"), "").unwrap();
        dirs.give_back(&first);
        assert!(!first.exists());

        let second = data.path().join("work/b-1");
        dirs.take(&second).unwrap();
        assert_eq!(files(&second), [TMP], "no sweep yet: a new directory");
        sweeper.completed_sweep();
        let third = data.path().join("work/c-1");
        dirs.take(&third).unwrap();
        assert_eq!(dirs.lock().len(), 1, "one sweep is not enough");
        sweeper.completed_sweep();
        let fourth = data.path().join("work/d-1");
        let mut leftovers = dirs.take(&fourth).unwrap();
        assert_eq!(dirs.lock().len(), 0, "the spare was taken");
        assert_eq!(files(&fourth), [TMP, "out.csv"], "emptied, .tmp too");
        assert_eq!(std::fs::read(fourth.join("out.csv")).unwrap(), b"");
        leftovers.remove_rest();
        assert_eq!(files(&fourth), [TMP]);
        assert!(data.path().exists(), "the link's target is left alone");
        drop(dirs);
        assert!(!data
            .path()
            .join("spare-work")
            .read_dir()
            .unwrap()
            .any(|_| true));
    }

    #[test]
    fn what_an_earlier_try_left_at_the_path_is_gone_whichever_way_it_is_made() {
        for kind in ["empty dir", "full dir", "link"] {
            for with_spare in [true, false] {
                let data = tempfile::tempdir().unwrap();
                let sweeper = Arc::new(Sweeper::default());
                let dirs = WorkDirs::new(data.path(), sweeper.clone());
                if with_spare {
                    let first = data.path().join("work/a-1");
                    drop(dirs.take(&first).unwrap());
                    // Kept, emptied, by the spare: its mark.
                    std::fs::write(first.join("kept"), "x").unwrap();
                    dirs.give_back(&first);
                    sweeper.completed_sweep();
                    sweeper.completed_sweep();
                }
                let dir = data.path().join("work/b-1");
                std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
                match kind {
                    "empty dir" => std::fs::create_dir_all(&dir).unwrap(),
                    "full dir" => {
                        std::fs::create_dir_all(dir.join("old/deep")).unwrap();
                        std::fs::write(dir.join("old/deep/f"), "x").unwrap();
                    }
                    _ => std::os::unix::fs::symlink(data.path(), &dir).unwrap(),
                }
                let mut leftovers = dirs.take(&dir).unwrap();
                let what = format!("{kind}, spare {with_spare}");
                assert!(!dir.is_symlink(), "{what}");
                let expected: &[&str] = if with_spare { &[TMP, "kept"] } else { &[TMP] };
                assert_eq!(
                    files(&dir),
                    expected,
                    "{what}: the spare is used if there is one"
                );
                leftovers.remove_rest();
                assert_eq!(files(&dir), [TMP], "{what}");
            }
        }
    }

    /// A directory given back with `make` done in it, taken again once the sweeps allow.
    fn recycled(make: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf, Leftovers) {
        let data = tempfile::tempdir().unwrap();
        let sweeper = Arc::new(Sweeper::default());
        let dirs = WorkDirs::new(data.path(), sweeper.clone());
        let first = data.path().join("work/a-1");
        drop(dirs.take(&first).unwrap());
        make(&first);
        dirs.give_back(&first);
        sweeper.completed_sweep();
        sweeper.completed_sweep();
        let second = data.path().join("work/b-1");
        let leftovers = dirs.take(&second).unwrap();
        std::mem::forget(dirs); // keep the spare root for the test's own checks
        (data, second, leftovers)
    }

    /// Sets the extended attribute `user.note`, if the file system has them (where it has
    /// none, there is nothing to carry over and the checks hold trivially).
    fn set_note(path: &Path) {
        let (path, name) = (c_path(path), CString::new("user.note").unwrap());
        // SAFETY: NUL-terminated strings and a 1-byte value that live across the call.
        let set =
            unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
        let e = io::Error::last_os_error();
        assert!(set == 0 || e.raw_os_error() == Some(libc::ENOTSUP), "{e}");
    }

    /// The size of `path`'s list of extended attributes (0: none).
    fn attributes(path: &Path) -> isize {
        let path = c_path(path);
        // SAFETY: a NUL-terminated path; a null buffer of size 0 asks for the list's size.
        unsafe { libc::listxattr(path.as_ptr(), std::ptr::null_mut(), 0) }
    }

    fn c_path(path: &Path) -> CString {
        CString::new(path.as_os_str().as_bytes()).unwrap()
    }

    fn ino(path: &Path) -> u64 {
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    #[test]
    fn the_next_bundle_is_written_into_the_files_a_run_left_and_the_rest_removed() {
        let mut inodes = Vec::new();
        let (_data, dir, mut leftovers) = recycled(|d| {
            for name in ["main.py", "old.py", "output.bin"] {
                std::fs::write(d.join(name), vec![7u8; 5000]).unwrap();
                inodes.push(ino(&d.join(name)));
            }
            std::fs::set_permissions(d.join("main.py"), std::fs::Permissions::from_mode(0o4777))
                .unwrap();
        });
        // Its own name: written in place; another name: a leftover renamed there.
        let mut f = leftovers.create(&dir.join("main.py")).unwrap();
        std::io::Write::write_all(&mut f, b"print(1)").unwrap();
        std::fs::create_dir(dir.join("pkg")).unwrap();
        std::io::Write::write_all(&mut leftovers.create(&dir.join("pkg/m.py")).unwrap(), b"x")
            .unwrap();
        leftovers.remove_rest();
        assert_eq!(files(&dir), [TMP, "main.py", "pkg", "pkg/m.py"]);
        assert_eq!(ino(&dir.join("main.py")), inodes[0]);
        assert!(inodes[1..].contains(&ino(&dir.join("pkg/m.py"))));
        assert_eq!(std::fs::read(dir.join("main.py")).unwrap(), b"print(1)");
        assert_eq!(std::fs::read(dir.join("pkg/m.py")).unwrap(), b"x");
        let mode = std::fs::metadata(dir.join("main.py")).unwrap().mode() & 0o7777;
        assert_eq!(
            mode,
            0o666 & !umask(),
            "the mode of a new file, set-user-id gone"
        );
    }

    #[test]
    fn a_leftover_that_fails_a_check_is_replaced_by_a_new_file() {
        let outside = tempfile::tempdir().unwrap();
        let other = outside.path().join("other");
        let (_data, dir, mut leftovers) = recycled(|d| {
            for name in ["linked", "attrs", "late"] {
                std::fs::write(d.join(name), "old").unwrap();
            }
            std::fs::hard_link(d.join("linked"), &other).unwrap();
            set_note(&d.join("attrs"));
        });
        // After the give-back: written to again (as an escaped process could).
        std::fs::write(dir.join("late"), "late").unwrap();
        for name in ["attrs", "late", "linked"] {
            let mut f = leftovers.create(&dir.join(name)).unwrap();
            std::io::Write::write_all(&mut f, b"new").unwrap();
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), b"new");
        }
        // A file with another name was neither kept nor emptied, nor written through.
        assert_eq!(std::fs::read(&other).unwrap(), b"old");
        assert_eq!(attributes(&dir.join("attrs")), 0, "the new file has none");
        leftovers.remove_rest();
        assert_eq!(files(&dir), [TMP, "attrs", "late", "linked"]);
    }

    #[test]
    fn a_leftover_replaced_by_a_link_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        std::fs::write(&target, "target").unwrap();
        let (_data, dir, mut leftovers) =
            recycled(|d| std::fs::write(d.join("main.py"), "").unwrap());
        std::fs::remove_file(dir.join("main.py")).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("main.py")).unwrap();
        let mut f = leftovers.create(&dir.join("main.py")).unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        assert!(!dir.join("main.py").is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"target");
        leftovers.remove_rest();
    }

    #[test]
    fn a_recycled_directory_has_a_new_one_s_mode_and_no_attributes() {
        let (_data, dir, mut leftovers) = recycled(|d| {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
            std::fs::set_permissions(d.join(TMP), std::fs::Permissions::from_mode(0o700)).unwrap();
        });
        leftovers.remove_rest();
        for d in [dir.clone(), dir.join(TMP)] {
            let mode = std::fs::metadata(&d).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o777 & !umask(), "{}", d.display());
        }
        // One with an attribute is not handed out again.
        let (_data, dir, _) = recycled(|d| set_note(&d.join(TMP)));
        assert_eq!(attributes(&dir.join(TMP)), 0, "a new .tmp");
    }

    #[test]
    fn what_appears_in_a_spare_after_its_give_back_makes_it_a_new_directory() {
        type Add = fn(&Path);
        let adds: [(&str, Add); 3] = [
            ("a link", |d| {
                std::os::unix::fs::symlink("/", d.join("link")).unwrap()
            }),
            ("a directory", |d| {
                std::fs::create_dir(d.join("pkg")).unwrap()
            }),
            ("a temporary file", |d| {
                std::fs::write(d.join(TMP).join("t"), "").unwrap()
            }),
        ];
        for (what, add) in adds {
            let data = tempfile::tempdir().unwrap();
            let sweeper = Arc::new(Sweeper::default());
            let dirs = WorkDirs::new(data.path(), sweeper.clone());
            let first = data.path().join("work/a-1");
            drop(dirs.take(&first).unwrap());
            std::fs::write(first.join("main.py"), "x").unwrap();
            dirs.give_back(&first);
            // An escaped process, before the sweeps kill it.
            add(&dirs.lock()[0].path);
            sweeper.completed_sweep();
            sweeper.completed_sweep();
            let second = data.path().join("work/b-1");
            let mut leftovers = dirs.take(&second).unwrap();
            assert_eq!(dirs.lock().len(), 0, "{what}: the spare was used up");
            assert_eq!(files(&second), [TMP], "{what}");
            leftovers.remove_rest();
        }
    }

    #[test]
    fn at_most_keep_files_are_kept() {
        let (_data, dir, mut leftovers) = recycled(|d| {
            for i in 0..KEEP_FILES + 5 {
                std::fs::write(d.join(format!("f{i}")), "x").unwrap();
            }
        });
        assert_eq!(files(&dir).len(), KEEP_FILES + 1, "the files and .tmp");
        leftovers.remove_rest();
        assert_eq!(files(&dir), [TMP]);
    }

    #[test]
    fn a_directory_that_cannot_be_kept_is_removed() {
        let data = tempfile::tempdir().unwrap();
        let dirs = WorkDirs::new(data.path(), Arc::default());
        let dir = data.path().join("work/a-1");
        std::fs::create_dir_all(&dir).unwrap();
        // `.tmp` replaced by a file: emptying keeps nothing that is not a directory of its own.
        std::fs::write(dir.join(TMP), "").unwrap();
        dirs.give_back(&dir);
        assert!(!dir.exists());
        assert_eq!(dirs.lock().len(), 1);
        let spare = dirs.lock()[0].path.clone();
        assert_eq!(files(&spare), [TMP]);
        assert!(spare.join(TMP).is_dir());
    }
}
