//! Password hashing and verification on a few threads of their own.
//!
//! An argon2id call holds 19 MiB for tens of milliseconds. On tokio's blocking pool (up to 512
//! threads) a login flood ran hundreds at once, and the allocator kept every thread's 19 MiB
//! afterwards (192 unknown-user logins: 263 MB -> 5.4 GB RSS). Here a fixed number of threads
//! run them ([`Kdf::sized_to_host`]: two per core, at most a quarter of the available memory,
//! at least two), so the memory they hold is bounded by the thread count however many logins
//! arrive. A call waits in a bounded queue; past it, or after waiting [`MAX_WAIT`], the caller
//! is told 503 with `Retry-After` instead of queueing without end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::problem::{ApiResult, Problem};

/// Memory one argon2id call holds with the crate's default parameters (m = 19 MiB).
const CALL_BYTES: u64 = 19 * 1024 * 1024;
/// How many calls may wait per thread before new ones are refused.
const WAITING_PER_THREAD: usize = 8;
/// The longest a call waits for a thread before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads for argon2 calls with a bounded queue in front.
pub struct Kdf {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Calls admitted (running or waiting).
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
    threads: usize,
}

impl Kdf {
    /// `threads` workers; at most `threads * WAITING_PER_THREAD` more calls wait.
    pub fn new(threads: usize) -> Kdf {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("antcode-kdf-{n}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, not while running it.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match job {
                        Ok(job) => job(),
                        // The pool was dropped.
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Kdf {
            jobs: Mutex::new(tx),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: threads * (1 + WAITING_PER_THREAD),
            threads,
        }
    }

    /// Two threads per core, no more than a quarter of the available memory's worth of calls,
    /// at least two.
    pub fn sized_to_host() -> Kdf {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let by_memory = available_memory().map_or(usize::MAX, |m| (m / (4 * CALL_BYTES)) as usize);
        Kdf::new(threads_for(cores, by_memory))
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a pool thread and returns its result; 503 when the queue is full or the
    /// call waited longer than [`MAX_WAIT`]. Once admitted, `f` runs even if the caller goes
    /// away, so the pool's memory bound holds whatever the callers do.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let slot = Admitted::take(&self.admitted, self.max_admitted).ok_or_else(busy)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _slot = slot;
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| Problem::unavailable("password checks are shutting down"))?;
        match tokio::time::timeout(MAX_WAIT, rx).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(Problem::internal("a password hashing thread failed")),
            Err(_) => Err(busy()),
        }
    }
}

/// The pool size for `cores` and room for `by_memory` concurrent calls.
fn threads_for(cores: usize, by_memory: usize) -> usize {
    (cores * 2).min(by_memory).max(2)
}

fn busy() -> Problem {
    let mut p = Problem::unavailable("too many password checks at once; retry shortly");
    p.retry_after = Some(1);
    p
}

/// One admitted call; gives its place back when dropped.
struct Admitted(Arc<AtomicUsize>);

impl Admitted {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Admitted> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Admitted(count.clone()))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_follows_cores_and_memory() {
        assert_eq!(threads_for(2, usize::MAX), 4);
        assert_eq!(threads_for(64, 10), 10);
        assert_eq!(threads_for(8, 0), 2);
        assert_eq!(threads_for(1, 1), 2);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_queued() {
        let kdf = Kdf::new(1);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(Mutex::new(hold));
        let mut calls = vec![];
        for _ in 0..kdf.max_admitted {
            let hold = hold.clone();
            let kdf = &kdf;
            calls.push(async move {
                kdf.run(move || {
                    let _ = hold.lock().unwrap().recv();
                })
                .await
            });
        }
        let running = futures::future::join_all(calls);
        tokio::pin!(running);
        // One poll admits every call (they wait on the held thread); one more is refused.
        assert!(futures::poll!(&mut running).is_pending());
        let refused = kdf.run(|| ()).await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 503);
        assert_eq!(refused.retry_after, Some(1));
        for _ in 0..kdf.max_admitted {
            release.send(()).unwrap();
        }
        assert!(running.await.iter().all(|r| r.is_ok()));
        // Every place was given back.
        assert_eq!(kdf.admitted.load(Ordering::Acquire), 0);
        kdf.run(|| ()).await.unwrap();
    }
}
