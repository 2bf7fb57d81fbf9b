//! The `Broker` seam: the fast path between planes. Queues of jobs, leases with deadlines,
//! runner events for the recorder, bounded live logs, cancel and drain signals, worker status and
//! the leader lock with a fencing token.
//!
//! [`Broker`] is the sum of one sub-trait per concern: [`QueueBroker`] (publishing jobs),
//! [`LeaseBroker`] (leasing them, heartbeats, release, reaping), [`CancelBroker`] (cancel
//! signals), [`EventBroker`] (runner events for the recorder), [`ChangeBroker`] (run change
//! announcements), [`LogBroker`] (live logs), [`WorkerBroker`] (worker status and drain),
//! [`LeaderBroker`] (the leader lock), and [`HealthBroker`] for the liveness check; every type
//! that implements them all is a `Broker`. Methods called on `dyn Broker` need no import; on a
//! concrete broker they need the sub-traits, which [`prelude`] brings in.
//!
//! The broker is never the source of truth: everything in it can be rebuilt from SQL (queued runs
//! are re-published by compensation, running runs without a live lease are declared lost). That is
//! what makes the in-process implementation safe across restarts and a Redis `FLUSHALL` survivable.

pub mod memory;
pub mod redis;
pub mod routing;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::model::{Job, Lease, RunEvent, WorkerStatus};

/// Announcements of runs that changed in SQL, as run ids (see [`ChangeBroker::watch_changes`]).
pub type RunChanges = tokio::sync::broadcast::Receiver<String>;

/// How many announcements a slow watcher may fall behind before it is told it lagged.
pub const CHANGES_BUFFER: usize = 1024;

/// Waits until `run_id` is announced on `changes` or `fallback` passes, whichever comes first.
/// Either way the caller re-reads SQL: announcements are a fast path, never the truth. A watcher
/// that lagged behind returns at once, since the announcement it waits for may be among those lost.
pub async fn changed(changes: &mut RunChanges, run_id: &str, fallback: Duration) {
    use tokio::sync::broadcast::error::RecvError;
    let announced = async {
        loop {
            match changes.recv().await {
                Ok(id) if id == run_id => return,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    let _ = tokio::time::timeout(fallback, announced).await;
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt broker message: {0}")]
    Corrupt(String),
}

pub type BrokerResult<T> = Result<T, BrokerError>;

/// What a runner asks for when it wants work.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub worker_id: String,
    pub queues: Vec<String>,
    /// The runner's labels, its name under `runner` included: it is given jobs of these queues
    /// whose requirements its labels meet ([`routing`]).
    pub labels: std::collections::BTreeMap<String, String>,
    pub max: usize,
    pub ttl: Duration,
}

/// A held lease as a heartbeat names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLease {
    pub run_id: String,
    pub lease_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Held runs whose cancellation was requested.
    pub cancels: Vec<String>,
    /// Held runs whose lease is gone (expired and reclaimed, or unknown): stop them.
    pub lost: Vec<String>,
    /// The operator asked this worker to drain.
    pub drain: bool,
}

/// One sequenced piece of a run's output. `seq` starts at 1 and is unique per run and attempt,
/// so a chunk sent twice is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub attempt: u32,
    pub seq: u64,
    pub stream: String,
    pub data: String,
    pub at_ms: i64,
}

impl LogChunk {
    /// Position of the chunk in its run's log across attempts; readers resume after it.
    pub fn cursor(&self) -> u64 {
        ((self.attempt as u64) << 40) | self.seq
    }
}

/// The stream of chunks that tell what a run is waiting on before its process starts (an
/// environment being built). They are live only: the archive and plain logs leave them out.
pub const PROGRESS_STREAM: &str = "progress";

/// How many chunks of a run the broker keeps for live tailing; the archive has the rest.
pub const LIVE_LOG_CHUNKS: usize = 10_000;

/// Whether the broker answers.
#[async_trait]
pub trait HealthBroker: Send + Sync + 'static {
    async fn ping(&self) -> BrokerResult<()>;
}

/// Jobs waiting on named queues: publishing them (idempotently) and counting them.
#[async_trait]
pub trait QueueBroker: Send + Sync + 'static {
    /// Enqueues a job. Idempotent per `(run_id, attempt)`: a job already queued or leased is not
    /// added again (returns false), so compensation may re-publish freely.
    async fn publish(&self, job: &Job) -> BrokerResult<bool> {
        let added = self.publish_many(std::slice::from_ref(job)).await?;
        Ok(added.first().copied().unwrap_or(false))
    }
    /// [`QueueBroker::publish`] of many jobs in few round trips (the scheduler's batches); the
    /// result lines up with `jobs`. Not atomic as a whole: on an error some may have been added,
    /// which is harmless because publishing again is idempotent.
    async fn publish_many(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>>;
    /// For each job, whether its `(run_id, attempt)` is queued or leased here — exactly when
    /// publishing it would add nothing. Lets compensation resolve and publish only what is
    /// missing; the result lines up with `jobs`.
    async fn holds(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>>;
    /// Moves each job's queued attempt to the route the job names now ([`Job::route`]), at its
    /// end: how a job whose preferred runners did not take it in time goes to the others. True
    /// when it moved; false when it is not queued (leased, or gone) or is there already. The
    /// result lines up with `jobs`.
    async fn reroute(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>>;
    /// Number of jobs waiting per route: a queue, or a route of it (`routing`;
    /// [`routing::depths_by_queue`] sums them per queue).
    async fn queue_depths(&self) -> BrokerResult<Vec<(String, u64)>>;
}

/// Leases: taking queued jobs with a deadline, keeping them alive, ending them, and reaping the
/// ones whose deadline passed.
#[async_trait]
pub trait LeaseBroker: Send + Sync + 'static {
    /// Waits up to `wait` for jobs on any of the queues and leases up to `max` of them.
    async fn lease(&self, req: &LeaseRequest, wait: Duration) -> BrokerResult<Vec<Lease>>;
    /// Extends the worker's leases; reports cancels, lost leases and the drain flag.
    async fn heartbeat(
        &self,
        worker_id: &str,
        held: &[HeldLease],
        ttl: Duration,
    ) -> BrokerResult<HeartbeatReply>;
    /// Ends a lease after its outcome was reported.
    async fn release(&self, run_id: &str, lease_token: &str) -> BrokerResult<()>;
    /// [`LeaseBroker::release`] of each of `done`, then [`LeaseBroker::lease`]: a runner that
    /// finished its jobs asks for the next ones in one call (one Redis script run instead of
    /// two). The releases happen even when no job comes; on an error some may have happened,
    /// which is harmless because each is fenced by its token and releasing again changes
    /// nothing.
    async fn release_and_lease(
        &self,
        done: &[HeldLease],
        req: &LeaseRequest,
        wait: Duration,
    ) -> BrokerResult<Vec<Lease>> {
        for h in done {
            self.release(&h.run_id, &h.lease_token).await?;
        }
        self.lease(req, wait).await
    }
    /// Gives a leased job back to its queue untouched (a draining runner that did not start it).
    /// A run cancelled while leased is not queued again: its lease just ends.
    async fn hand_back(&self, run_id: &str, lease_token: &str) -> BrokerResult<()>;
    /// Removes and returns leases whose deadline passed.
    async fn reap_expired(&self, now_ms: i64) -> BrokerResult<Vec<Lease>>;
    /// True while `(run_id, lease_token)` is a live lease.
    async fn lease_alive(&self, run_id: &str, lease_token: &str) -> BrokerResult<bool>;
}

/// Cancel signals for queued and leased runs.
#[async_trait]
pub trait CancelBroker: Send + Sync + 'static {
    /// Flags a run as cancelled: a queued job is dropped, a leased one is reported on heartbeat.
    async fn cancel(&self, run_id: &str) -> BrokerResult<()>;
    /// The subset of `run_ids` with a pending cancel (runners poll this for sub-second cancels).
    async fn cancels_for(&self, run_ids: &[String]) -> BrokerResult<Vec<String>>;
}

/// The stream of runner events (run reports) that recorder groups read at least once.
#[async_trait]
pub trait EventBroker: Send + Sync + 'static {
    async fn publish_event(&self, event: &RunEvent) -> BrokerResult<()>;
    /// Reads runner events for `group`, at least once: unacknowledged events are redelivered.
    async fn read_events(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> BrokerResult<Vec<(String, RunEvent)>>;
    async fn ack_events(&self, group: &str, ids: &[String]) -> BrokerResult<()>;
}

/// Announcements that a run changed in SQL, to every watcher in every process.
#[async_trait]
pub trait ChangeBroker: Send + Sync + 'static {
    /// Tells every watcher, in every process, that `run_id` changed in SQL (the recorder calls it
    /// after applying an event). Best effort and not durable: a watcher re-reads SQL after an
    /// announcement, and now and then without one, so a lost announcement costs only latency.
    async fn announce_change(&self, run_id: &str) -> BrokerResult<()>;
    /// [`ChangeBroker::announce_change`] for several runs; a broker may send them in one round
    /// trip.
    async fn announce_changes(&self, run_ids: &[String]) -> BrokerResult<()> {
        for id in run_ids {
            self.announce_change(id).await?;
        }
        Ok(())
    }
    /// Announcements made from now on. Subscribe before reading the state you wait to see change.
    fn watch_changes(&self) -> RunChanges;
}

/// The bounded live tail of each run's log.
#[async_trait]
pub trait LogBroker: Send + Sync + 'static {
    async fn append_log(&self, run_id: &str, chunks: &[LogChunk]) -> BrokerResult<()>;
    /// Chunks whose [`LogChunk::cursor`] is past `after`, waiting up to `wait` for a new one.
    async fn read_log(
        &self,
        run_id: &str,
        after: u64,
        wait: Duration,
    ) -> BrokerResult<Vec<LogChunk>>;
}

/// Live worker status (with a time to live) and the drain flags an operator sets.
#[async_trait]
pub trait WorkerBroker: Send + Sync + 'static {
    async fn put_worker(&self, status: &WorkerStatus, ttl: Duration) -> BrokerResult<()>;
    async fn workers(&self) -> BrokerResult<Vec<WorkerStatus>>;
    async fn set_drain(&self, worker_id: &str, drain: bool) -> BrokerResult<()>;
}

/// Named leader locks with a fencing token.
#[async_trait]
pub trait LeaderBroker: Send + Sync + 'static {
    /// Takes the named lock if free; returns a fencing token larger than any handed out before.
    async fn acquire_leader(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> BrokerResult<Option<u64>>;
    /// Extends the lock if `holder` still has it; false means leadership is lost.
    async fn renew_leader(&self, name: &str, holder: &str, ttl: Duration) -> BrokerResult<bool>;
    async fn release_leader(&self, name: &str, holder: &str) -> BrokerResult<()>;
}

crate::seams::seam_of!(
    /// The whole seam: every concern's broker. Implemented for every type that implements the
    /// sub-traits, so an implementation only writes those; `dyn Broker` offers all their methods.
    Broker:
    HealthBroker,
    QueueBroker,
    LeaseBroker,
    CancelBroker,
    EventBroker,
    ChangeBroker,
    LogBroker,
    WorkerBroker,
    LeaderBroker,
);
