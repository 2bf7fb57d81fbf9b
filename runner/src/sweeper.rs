//! Finished attempts' escaped descendants, swept together.
//!
//! A process a run started can outlive it outside its process group (a daemon that called
//! `setsid()` and closed its output), where `killpg` cannot reach it. It still carries the
//! attempt's marker in its environment, so [`process::kill_marked_all`] finds it by reading every
//! process's environment in `/proc`. That walk costs the same for one attempt as for a hundred,
//! and a busy runner finishes hundreds of runs a second: finished attempts are queued here and
//! swept together, at most one walk every [`SWEEP_EVERY`], instead of one walk per run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::process;

/// How long a finished attempt's escaped processes may live on, at most (plus one walk).
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Finished attempts waiting for the next sweep.
#[derive(Default)]
pub struct Sweeper {
    pending: Mutex<Vec<(String, u32)>>,
    wake: Notify,
    /// Sweeps completed so far (a recycled working directory waits for one, see
    /// [`crate::workdirs`]).
    sweeps: AtomicU64,
}

impl Sweeper {
    /// Queues a finished attempt for the next sweep.
    pub fn add(&self, run_id: &str, attempt: u32) {
        self.lock().push((run_id.to_string(), attempt));
        self.wake.notify_one();
    }

    /// How many sweeps have completed.
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Acquire)
    }

    pub(crate) fn completed_sweep(&self) {
        self.sweeps.fetch_add(1, Ordering::AcqRel);
    }

    fn take(&self) -> Vec<(String, u32)> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, u32)>> {
        crate::lock(&self.pending)
    }
}

/// Sweeps queued attempts until `stop`, then once more for what is still queued.
pub async fn sweep_loop(sweeper: Arc<Sweeper>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = sweeper.wake.notified() => {}
            _ = stop.cancelled() => break,
        }
        // Let the attempts finishing together join this walk.
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.cancelled() => break,
        }
        sweep(sweeper.take()).await;
        sweeper.completed_sweep();
    }
    sweep(sweeper.take()).await;
    sweeper.completed_sweep();
}

async fn sweep(attempts: Vec<(String, u32)>) {
    if attempts.is_empty() {
        return;
    }
    let killed = tokio::task::spawn_blocking(move || process::kill_marked_all(&attempts))
        .await
        .unwrap_or(0);
    if killed > 0 {
        tracing::info!(
            killed,
            "killed processes finished runs left outside their process group"
        );
    }
}
