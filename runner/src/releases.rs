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
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Releases what is queued, one call each.
    pub async fn release_now(&self, source: &dyn WorkSource) {
        for h in self.take() {
            if let Err(e) = source.release(&h.run_id, &h.lease_token).await {
                tracing::warn!(run_id = %h.run_id, error = %e, "could not release lease");
            }
        }
    }
}

/// Releases what no lease call carried within [`CARRY_WINDOW`]; on `stop`, releases the rest
/// and returns.
pub async fn release_loop(
    releases: Arc<Releases>,
    source: Arc<dyn WorkSource>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = releases.added.notified() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(CARRY_WINDOW) => {}
        }
        releases.release_now(source.as_ref()).await;
    }
    releases.release_now(source.as_ref()).await;
}
