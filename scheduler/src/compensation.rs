//! Compensation: the leader's repairs that make "nothing accepted is lost" true.
//!
//! Each pass:
//! 1. re-publishes the due `queued` runs of SQL that the broker does not hold (after a restart or
//!    a Redis flush they come back; publishing is idempotent per attempt, so a race with another
//!    publisher is harmless). A pass checks the next `PAGE` due runs in `(not_before, id)`
//!    order after where the previous pass stopped, and starts again from the start once a page
//!    reaches the end, so a backlog costs each pass one page and every queued run is still
//!    checked once per sweep;
//! 2. reclaims leases whose deadline passed (no heartbeat) as attempt `lost` → retry or fail;
//! 3. declares `lost` a `running` run whose lease has been gone for longer than `lost_after`
//!    (the broker lost it, or the whole process restarted under it);
//! 4. fails queued runs past their queue timeout (`expired`), a page of the
//!    `(state, queue_deadline, id)` index;
//! 5. releases runs held by overlap `queue_one` once their task has nothing running;
//! 6. moves a queued job whose preferred runners did not take it within its task's
//!    `prefer.fallback_s` to the route of its labels alone (checked with step 1's page, so a
//!    backlog of more than a page falls back once per sweep).
//!
//! Only runs the broker does not hold are resolved and re-published.
//!
//! Every repair is a metric and an entry in the run's history.
//!
//! A lost attempt keeps what it showed: its duration is its start to the moment it was
//! declared lost, its error names the runner that stopped heartbeating and when it was last
//! seen, and the output it streamed (what the broker still holds of its live log) is archived
//! as its log, followed by a line saying why it ended. The archive is written only after the
//! verdict applied and only if the attempt has none yet: a runner that archived and reported
//! first keeps its own.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use antcode_core::blob::log_key;
use antcode_core::broker::LogChunk;
use antcode_core::dispatch::{publish_jobs, PublishError};
use antcode_core::model::{Job, Outcome, RunHistoryEntry, RunState};
use antcode_core::store::{QueuedKey, StoreError};
use antcode_core::time::to_rfc3339;

use crate::SchedulerConfig;

/// Rows a pass reads of each kind (queued, running, expired, held).
const PAGE: u32 = 1000;
/// How often the runners' names and last heartbeats are read, for the error of a lost attempt
/// (a runner's status expires from the broker soon after its last heartbeat, before its leases).
const WORKERS_EVERY_MS: i64 = 2_000;
/// How long a runner that stopped heartbeating is remembered.
const RUNNERS_KEPT_MS: i64 = 3_600_000;

pub struct Compensator<'a> {
    config: &'a SchedulerConfig,
    /// Running runs first seen without a live lease, and when (clock ms).
    orphans: HashMap<String, i64>,
    /// Where the previous pass stopped among the due queued runs; `None`: at the start.
    queued_after: Option<QueuedKey>,
    /// The clock at the start of the current sweep over the due queued runs: every page of one
    /// sweep reads runs due by then, so a sweep ends even while new runs keep becoming due
    /// faster than a page a pass (they are the next sweep's).
    sweep_started: i64,
    /// Runners by worker id: their name and when they were last seen (clock ms), and when the
    /// list was last read.
    runners: HashMap<String, (String, i64)>,
    runners_read: i64,
}

/// An attempt about to be declared lost.
struct Lost<'r> {
    run_id: &'r str,
    attempt: u32,
    token: &'r str,
    /// When the attempt started, if it did.
    started_at: Option<i64>,
    why: String,
    /// The repair's metric label.
    kind: &'static str,
}

impl<'a> Compensator<'a> {
    pub fn new(config: &'a SchedulerConfig) -> Compensator<'a> {
        Compensator {
            config,
            orphans: HashMap::new(),
            queued_after: None,
            sweep_started: 0,
            runners: HashMap::new(),
            runners_read: i64::MIN,
        }
    }

    fn now(&self) -> i64 {
        self.config.clock.now_ms()
    }

    pub async fn pass(&mut self) {
        self.read_runners().await;
        if let Err(e) = self.republish_queued().await {
            tracing::warn!(error = %e, "compensation: re-publishing queued runs failed");
        }
        if let Err(e) = self.reclaim_expired().await {
            tracing::warn!(error = %e, "compensation: reclaiming expired leases failed");
        }
        if let Err(e) = self.find_orphans().await {
            tracing::warn!(error = %e, "compensation: checking running runs failed");
        }
        if let Err(e) = self.expire_stale_queued().await {
            tracing::warn!(error = %e, "compensation: expiring queued runs failed");
        }
        if let Err(e) = self.release_held().await {
            tracing::warn!(error = %e, "compensation: releasing held runs failed");
        }
    }

    /// Queued runs past their queue timeout end `failed` (reason `expired`), never retried.
    async fn expire_stale_queued(&self) -> Result<(), crate::SchedulerError> {
        let now = self.now();
        for run in self.config.store.expired_queued_runs(now, PAGE).await? {
            match self
                .config
                .store
                .expire_run(&run.id, run.attempt, now)
                .await
            {
                Ok(_) => {
                    let _ = self.config.broker.cancel(&run.id).await;
                    metrics::counter!("antcode_scheduler_repairs_total", "kind" => "expired")
                        .increment(1);
                }
                Err(StoreError::Stale(_)) => {} // it started meanwhile
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A run held by overlap `queue_one` is released once its task has nothing running.
    async fn release_held(&self) -> Result<(), crate::SchedulerError> {
        let held = self.config.store.held_runs(PAGE).await?;
        if held.is_empty() {
            return Ok(());
        }
        let tasks: Vec<String> = held.iter().map(|r| r.task_id.clone()).collect();
        let active = self.config.store.active_runs(&tasks).await?;
        for run in held {
            let busy = active
                .iter()
                .any(|r| r.task_id == run.task_id && r.state == RunState::Running);
            if !busy {
                match self.config.store.defer_run(&run.id, self.now()).await {
                    Ok(()) | Err(StoreError::Stale(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    async fn republish_queued(&mut self) -> Result<(), crate::SchedulerError> {
        if self.queued_after.is_none() {
            self.sweep_started = self.now();
        }
        let page = self
            .config
            .store
            .due_queued_jobs(self.sweep_started, PAGE, self.queued_after.as_ref())
            .await?;
        self.publish_missing(page.jobs).await?;
        // Only once the page was handled (a failed pass reads it again); after a page that
        // reached the end, the next pass starts a new sweep.
        self.queued_after = page.next;
        Ok(())
    }

    async fn publish_missing(&self, due: Vec<Job>) -> Result<(), crate::SchedulerError> {
        let c = self.config;
        // Only what the broker lacks is resolved (secrets opened) and published: normally that
        // is nothing, so a pass costs one SQL read and one broker read.
        let mut due = due;
        let fell_back = fall_back(&mut due, antcode_core::time::now_ms());
        let held = c.broker.holds(&due).await?;
        self.reroute(&due, &held, &fell_back).await?;
        let jobs: Vec<_> = due
            .into_iter()
            .zip(held)
            .filter(|(_, held)| !held)
            .map(|(job, _)| job)
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        let results = match publish_jobs(
            c.store.as_ref(),
            c.broker.as_ref(),
            c.secrets.as_deref(),
            &jobs,
        )
        .await
        {
            Ok(results) => results,
            Err(PublishError::Store(e)) => return Err(e.into()),
            Err(PublishError::Broker(e)) => return Err(e.into()),
            Err(PublishError::RunFailed(_)) => return Ok(()), // only for one job
        };
        for (job, result) in jobs.iter().zip(results) {
            // Not added: it was in the broker already; failed: the reason is in SQL.
            if !matches!(result, Ok(true)) {
                continue;
            }
            metrics::counter!("antcode_scheduler_repairs_total", "kind" => "republished")
                .increment(1);
            tracing::debug!(run_id = %job.run_id, attempt = job.attempt, "compensation: published queued run");
            self.note(
                &job.run_id,
                job.attempt,
                "published",
                "queued in SQL but missing from the broker: published again",
            )
            .await;
        }
        Ok(())
    }

    /// Moves the jobs among `due` that the broker holds and whose preference just ran out
    /// (`fell_back`) to the route of their labels alone.
    async fn reroute(
        &self,
        due: &[Job],
        held: &[bool],
        fell_back: &[bool],
    ) -> Result<(), crate::SchedulerError> {
        let jobs: Vec<Job> = due
            .iter()
            .zip(held.iter().zip(fell_back))
            .filter(|(_, (held, fell))| **held && **fell)
            .map(|(job, _)| job.clone())
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        let moved = self.config.broker.reroute(&jobs).await?;
        for (job, _) in jobs.iter().zip(moved).filter(|(_, moved)| *moved) {
            metrics::counter!("antcode_scheduler_repairs_total", "kind" => "fell_back")
                .increment(1);
            self.note(
                &job.run_id,
                job.attempt,
                "fell_back",
                "no preferred runner took it in time: any runner its labels allow may take it now",
            )
            .await;
        }
        Ok(())
    }

    /// Refreshes [`Self::runners`] when it is older than [`WORKERS_EVERY_MS`]; runners that
    /// left the list stay, with what was last known of them.
    async fn read_runners(&mut self) {
        let now = self.now();
        if now.saturating_sub(self.runners_read) < WORKERS_EVERY_MS {
            return;
        }
        self.runners_read = now;
        match self.config.broker.workers().await {
            Ok(workers) => {
                for w in workers {
                    self.runners.insert(w.id, (w.name, w.last_seen_ms));
                }
            }
            Err(e) => tracing::debug!(error = %e, "compensation: reading runners failed"),
        }
        // Heartbeats carry the runner's wall clock; a lease outlives its runner's last one by
        // its time to live, far less than this.
        let wall = antcode_core::time::now_ms();
        self.runners
            .retain(|_, (_, seen)| wall.saturating_sub(*seen) < RUNNERS_KEPT_MS);
    }

    /// Why a lease expired, naming its runner and its last heartbeat when they are known.
    fn expired_why(&self, worker_id: &str) -> String {
        match self.runners.get(worker_id) {
            Some((name, seen)) => format!(
                "runner {name} stopped heartbeating at {}; lease expired",
                to_rfc3339(*seen)
            ),
            None => format!("runner {worker_id} stopped heartbeating; lease expired"),
        }
    }

    async fn reclaim_expired(&self) -> Result<(), crate::SchedulerError> {
        for lease in self.config.broker.reap_expired(self.now()).await? {
            let started_at = match self.config.store.run(&lease.job.run_id).await {
                Ok(run) if run.attempt == lease.job.attempt => run.started_at,
                _ => None,
            };
            self.declare_lost(Lost {
                run_id: &lease.job.run_id,
                attempt: lease.job.attempt,
                token: &lease.lease_token,
                started_at,
                why: self.expired_why(&lease.worker_id),
                kind: "lease_expired",
            })
            .await;
        }
        Ok(())
    }

    async fn find_orphans(&mut self) -> Result<(), crate::SchedulerError> {
        let running = self.config.store.running_runs(PAGE).await?;
        let now = self.now();
        let lost_after = self.config.lost_after.as_millis() as i64;
        let mut still = HashMap::new();
        for run in running {
            let token = run.lease_token.clone().unwrap_or_default();
            if self.config.broker.lease_alive(&run.id, &token).await? {
                continue;
            }
            let since = self.orphans.get(&run.id).copied().unwrap_or(now);
            if now - since >= lost_after {
                self.declare_lost(Lost {
                    run_id: &run.id,
                    attempt: run.attempt,
                    token: &token,
                    started_at: run.started_at,
                    why: "the run's lease is gone (its runner or the broker restarted)".into(),
                    kind: "orphaned",
                })
                .await;
            } else {
                still.insert(run.id, since);
            }
        }
        self.orphans = still;
        Ok(())
    }

    /// Adds a line to the run's history so the repair is visible on the run.
    async fn note(&self, run_id: &str, attempt: u32, kind: &str, detail: &str) {
        let entry = RunHistoryEntry {
            id: antcode_core::ids::new_id(),
            run_id: run_id.into(),
            attempt,
            kind: kind.into(),
            detail: detail.into(),
            at: self.now(),
        };
        if let Err(e) = self.config.store.add_history(&entry).await {
            tracing::debug!(run_id, error = %e, "compensation: history note failed");
        }
    }

    async fn declare_lost(&self, lost: Lost<'_>) {
        let Lost {
            run_id,
            attempt,
            token,
            started_at,
            why,
            kind,
        } = lost;
        let now = self.now();
        let mut outcome = Outcome::bare(RunState::Lost, started_at.map_or(0, |t| (now - t).max(0)));
        outcome.error = Some(why.clone());
        let archive = self.streamed_log(run_id, attempt, &why).await;
        if archive.is_some() {
            outcome.log_key = Some(log_key(run_id, attempt));
        }
        let applied = self
            .config
            .store
            .finish_attempt(run_id, attempt, Some(token), &outcome, now)
            .await;
        match applied {
            Ok(_) => {
                metrics::counter!("antcode_scheduler_repairs_total", "kind" => kind).increment(1);
                tracing::warn!(run_id, attempt, "compensation: attempt lost: {why}");
                if let Some(gz) = archive {
                    self.keep_log(run_id, attempt, gz).await;
                }
            }
            // The runner's own report got there first: nothing to repair.
            Err(StoreError::Stale(_)) | Err(StoreError::NotFound) => {}
            Err(e) => {
                tracing::warn!(run_id, error = %e, "compensation: could not record lost attempt")
            }
        }
    }

    /// The attempt's streamed output as the broker still holds it, gzip-compressed, with a last
    /// line saying why it was lost; `None` without a blob store or when nothing was streamed.
    async fn streamed_log(&self, run_id: &str, attempt: u32, why: &str) -> Option<Vec<u8>> {
        self.config.blobs.as_ref()?;
        let chunks = match self.config.broker.read_log(run_id, 0, Duration::ZERO).await {
            Ok(chunks) => chunks,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "compensation: reading a lost run's log failed");
                return None;
            }
        };
        lost_log(&chunks, attempt, why)
    }

    /// Stores a lost attempt's log unless the attempt already has one.
    async fn keep_log(&self, run_id: &str, attempt: u32, gz: Vec<u8>) {
        let Some(blobs) = &self.config.blobs else {
            return;
        };
        let key = log_key(run_id, attempt);
        let stored = match blobs.exists(&key).await {
            Ok(true) => Ok(()),
            Ok(false) => blobs.put(&key, gz.into()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::warn!(run_id, error = %e, "compensation: archiving a lost run's log failed");
        }
    }
}

/// `attempt`'s chunks in order and a last line with `why`, gzip-compressed as a runner archives
/// a log; `None` when the attempt streamed nothing.
fn lost_log(chunks: &[LogChunk], attempt: u32, why: &str) -> Option<Vec<u8>> {
    // Progress steps are live only: they never join an archive.
    let mut ours: Vec<&LogChunk> = chunks
        .iter()
        .filter(|c| c.attempt == attempt && c.stream != antcode_core::broker::PROGRESS_STREAM)
        .collect();
    if ours.is_empty() {
        return None;
    }
    ours.sort_by_key(|c| c.seq);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for c in ours {
        gz.write_all(c.data.as_bytes()).ok()?;
    }
    writeln!(gz, "[antcode] lost: {why}").ok()?;
    gz.finish().ok()
}

/// Drops the preference of each job whose preference ran out by `now_ms` (wall clock, as the
/// job's deadline was set); which ones it dropped.
fn fall_back(jobs: &mut [Job], now_ms: i64) -> Vec<bool> {
    jobs.iter_mut()
        .map(|job| {
            let over = job.prefer.as_ref().is_some_and(|p| p.until_ms <= now_ms);
            if over {
                job.prefer = None;
            }
            over
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn chunk(attempt: u32, seq: u64, data: &str) -> LogChunk {
        LogChunk {
            attempt,
            seq,
            stream: "stdout".into(),
            data: data.into(),
            at_ms: 1,
        }
    }

    #[test]
    fn a_lost_log_is_its_attempts_chunks_in_order_and_why() {
        let chunks = [
            chunk(1, 1, "old\n"),
            chunk(2, 2, "second\n"),
            chunk(2, 1, "first\n"),
        ];
        let gz = lost_log(&chunks, 2, "lease expired").unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "first\nsecond\n[antcode] lost: lease expired\n");
        assert_eq!(lost_log(&chunks, 3, "why"), None);
    }
}
