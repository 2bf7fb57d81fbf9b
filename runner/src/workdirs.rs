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
//! emptied, renamed or found falls back to removing and making directories, as before.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sweeper::Sweeper;

/// The most spares kept: enough for the runs finishing during two sweeps at a few hundred runs a
/// second; more are removed.
const MAX_SPARES: usize = 256;
/// The directory `TMPDIR` points to inside each working directory.
pub const TMP: &str = ".tmp";

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

    /// Makes `dir` (and its `.tmp`) exist and be empty, from a spare when one is ready.
    /// Blocking.
    pub fn take(&self, dir: &Path) -> io::Result<()> {
        let _ = std::fs::remove_dir_all(dir);
        if let Some(spare) = self.ready_spare() {
            if std::fs::rename(&spare, dir).is_ok() {
                metrics::counter!("antcode_runner_work_dirs_total", "from" => "spare").increment(1);
                return Ok(());
            }
            let _ = std::fs::remove_dir_all(&spare);
        }
        std::fs::create_dir_all(dir.join(TMP))?;
        metrics::counter!("antcode_runner_work_dirs_total", "from" => "new").increment(1);
        Ok(())
    }

    /// Empties a finished attempt's `dir` and keeps it as a spare, or removes it. Call it after
    /// the attempt was queued for the sweeper. Blocking.
    pub fn give_back(&self, dir: &Path) {
        let spare = self
            .spare_root
            .join(format!("w{}", self.named.fetch_add(1, Ordering::Relaxed)));
        let kept = self.lock().len() < MAX_SPARES
            && empty(dir).is_ok()
            && std::fs::create_dir_all(&self.spare_root).is_ok()
            && std::fs::rename(dir, &spare).is_ok();
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
/// a link).
fn empty(dir: &Path) -> io::Result<()> {
    let mut has_tmp = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let is_dir = entry.file_type()?.is_dir();
        if entry.file_name() == TMP && is_dir {
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                remove(&inner.path(), inner.file_type()?.is_dir())?;
            }
            has_tmp = true;
        } else {
            remove(&entry.path(), is_dir)?;
        }
    }
    match has_tmp {
        true => Ok(()),
        false => std::fs::create_dir(dir.join(TMP)),
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
        dirs.take(&fourth).unwrap();
        assert_eq!(dirs.lock().len(), 0, "the spare was taken");
        assert_eq!(files(&fourth), [TMP], "emptied, .tmp too");
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
