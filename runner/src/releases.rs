//! Leases whose outcome has been reported, waiting to be released. A busy runner asks for its
//! next jobs right after finishing one, so the release rides on that lease call
//! ([`WorkSource::release_and_lease`]: one broker round trip, one Redis script run, instead of
//! two). If no lease call comes within [`CARRY_WINDOW`] (every slot busy, or the loop parked in
//! a long-poll that started earlier), the releases go out on their own: a finished run's lease
//! never waits long, whatever the lease loop is doing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use antcode_core::broker::HeldLease;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::source::WorkSource;

/// How long a release waits for a lease call to carry it.
pub const CARRY_WINDOW: Duration = Duration::from_millis(20);

#[derive(Default)]
pub struct Releases {
    pending: Mutex<Vec<HeldLease>>,
    added: Notify,
}

impl Releases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HeldLease>> {
        crate::lock(&self.pending)
    }

    /// Queues the release of a lease whose outcome was reported.
    pub fn add(&self, run_id: &str, lease_token: &str) {
        self.lock().push(HeldLease {
            run_id: run_id.to_string(),
            lease_token: lease_token.to_string(),
        });
        self.added.notify_one();
    }

    /// Everything queued, for a lease call to carry.
    pub fn take(&self) -> Vec<HeldLease> {
        std::mem::take(&mut *self.lock())
    }

    /// Queues again what a failed lease call may not have released.
    pub fn put_back(&self, done: Vec<HeldLease>) {
        if !done.is_empty() {
            self.lock().extend(done);
            self.added.notify_one();
        }
    }

    /// Releases what is queued, one call each. What the source could not release stays queued
    /// (a dropped release would leave the lease to expire, and the run could be declared lost);
    /// returns whether everything went out.
    pub async fn release_now(&self, source: &dyn WorkSource) -> bool {
        let mut failed = Vec::new();
        for h in self.take() {
            if let Err(e) = source.release(&h.run_id, &h.lease_token).await {
                tracing::warn!(run_id = %h.run_id, error = %e, "could not release lease; will retry");
                failed.push(h);
            }
        }
        let done = failed.is_empty();
        // Not announced: the loop retries on its own schedule instead of at once.
        self.lock().extend(failed);
        done
    }
}

/// The longest wait between retries of releases the broker did not take: well inside a lease's
/// time to live, so a release delayed by an outage still lands before its lease expires.
pub const RETRY_CAP: Duration = Duration::from_secs(2);

/// Releases what no lease call carried within [`CARRY_WINDOW`], retrying what the broker did not
/// take (doubling waits up to [`RETRY_CAP`]); on `stop`, tries the rest once more and returns.
pub async fn release_loop(
    releases: Arc<Releases>,
    source: Arc<dyn WorkSource>,
    stop: CancellationToken,
) {
    'outer: loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = releases.added.notified() => {}
        }
        let mut wait = CARRY_WINDOW;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break 'outer,
                _ = tokio::time::sleep(wait) => {}
            }
            if releases.release_now(source.as_ref()).await {
                break;
            }
            wait = (wait * 2).max(Duration::from_millis(100)).min(RETRY_CAP);
        }
    }
    releases.release_now(source.as_ref()).await;
}
