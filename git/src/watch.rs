//! Bounds a fetch in time and size.
//!
//! The work runs on its own thread while the calling thread watches it: every 50 ms it checks the
//! clock and the size of the temporary directory, where the incoming packs are written while they
//! stream; it holds the repository and any submodules', so the limits cover them together. Past a limit it raises gix's interrupt flag and kills the `ssh` process if there is
//! one, then returns at once; the abandoned thread ends at its next read and removes its
//! temporary directory itself.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Policy};

const POLL: Duration = Duration::from_millis(50);

/// How much longer than the deadline a connection's own timeouts are.
const GRACE: Duration = Duration::from_secs(1);

/// What a job shares with its watcher.
#[derive(Clone, Default)]
pub(crate) struct Job {
    /// When the watcher gives up; connections bound their waits by it.
    pub deadline: Option<Instant>,
    /// gix checks this flag while it receives a pack.
    pub interrupt: Arc<AtomicBool>,
    /// The `ssh` process of an SSH fetch, killed when the watcher gives up.
    pub child: Arc<Mutex<Option<Child>>>,
}

impl Job {
    /// How long a connection may wait: the time left until the deadline, and a second more so
    /// that the watcher, not a socket timeout, reports the end of the time. The bound matters
    /// for a job the watcher abandoned: its thread ends instead of waiting forever.
    pub fn remaining(&self) -> Duration {
        let left = self.deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        left + GRACE
    }

    /// Kills the `ssh` process, if any, so that reads from it end.
    pub fn kill_child(&self) {
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            let _ = child.kill();
        }
    }

    /// Kills and reaps the `ssh` process; the job calls it when it is done with the connection.
    pub fn reap_child(&self) {
        let taken = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `work` on a thread, ending it after `policy.timeout` or once `watched` grows past
/// `policy.max_fetch_bytes`.
pub(crate) fn run<T, F>(policy: &Policy, watched: Option<PathBuf>, work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&Job) -> Result<T, Error> + Send + 'static,
{
    let deadline = Instant::now() + policy.timeout;
    let job = Job {
        deadline: Some(deadline),
        ..Job::default()
    };
    let (done, result) = mpsc::channel();
    let worker_job = job.clone();
    std::thread::Builder::new()
        .name("antcode-git".into())
        .spawn(move || {
            let outcome = work(&worker_job);
            worker_job.reap_child();
            let _ = done.send(outcome);
        })
        .map_err(|e| Error::Remote(format!("cannot start the fetch thread: {e}")))?;

    loop {
        match result.recv_timeout(POLL) {
            // A connection's own timeout may end the job just after the deadline.
            Ok(Err(_)) if Instant::now() >= deadline => return Err(Error::Timeout),
            Ok(outcome) => return outcome,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Remote("the fetch thread panicked".into()))
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            stop(&job);
            return Err(Error::Timeout);
        }
        if let Some(dir) = &watched {
            if let Err(e) = within_download_cap(dir, policy) {
                stop(&job);
                return Err(e);
            }
        }
    }
}

/// Refuses once the files under `dir` pass `policy.max_fetch_bytes`. The job calls it too after
/// each submodule's fetch, so that the total is checked even when a fetch ends between two of
/// the watcher's looks.
pub(crate) fn within_download_cap(dir: &Path, policy: &Policy) -> Result<(), Error> {
    if dir_size(dir) > policy.max_fetch_bytes {
        return Err(Error::Refused(format!(
            "the repository is larger than the {} cap on downloads; \
             fetch a smaller repository or raise the limit",
            human(policy.max_fetch_bytes)
        )));
    }
    Ok(())
}

fn stop(job: &Job) {
    job.interrupt.store(true, Ordering::SeqCst);
    job.kill_child();
}

/// The bytes of all files under `dir`; files that vanish while it counts are skipped.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// `100 MiB`, `512 KiB`, or bytes.
pub(crate) fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}
