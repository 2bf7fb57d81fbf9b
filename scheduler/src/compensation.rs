//! Compensation: the leader's repairs that make "nothing accepted is lost" true.
//!
//! Each pass:
//! 1. re-publishes the due `queued` runs of SQL that the broker does not hold (after a restart or
//!    a Redis flush they come back; publishing is idempotent per attempt, so a race with another
//!    publisher is harmless). A pass checks the next [`PAGE`] due runs in `(not_before, id)`
//!    order after where the previous pass stopped, and starts again from the start once a page
//!    reaches the end, so a backlog costs each pass one page and every queued run is still
//!    checked once per sweep;
//! 2. reclaims leases whose deadline passed (no heartbeat) as attempt `lost` → retry or fail;
//! 3. declares `lost` a `running` run whose lease has been gone for longer than `lost_after`
//!    (the broker lost it, or the whole process restarted under it);
//! 4. fails queued runs past their queue timeout (`expired`), a page of the
//!    `(state, queue_deadline, id)` index;
//! 5. releases runs held by overlap `queue_one` once their task has nothing running.
//!
//! Only runs the broker does not hold are resolved and re-published.
//!
//! Every repair is a metric and an entry in the run's history.

use std::collections::HashMap;

use antcode_core::model::{Job, Outcome, RunHistoryEntry, RunState};
use antcode_core::secrets::{publish_jobs, PublishError};
use antcode_core::store::{QueuedKey, StoreError};

use crate::SchedulerConfig;

/// Rows a pass reads of each kind (queued, running, expired, held).
const PAGE: u32 = 1000;

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
}

fn lost(error: String) -> Outcome {
    Outcome {
        state: RunState::Lost,
        exit_code: None,
        signal: None,
        error: Some(error),
        duration_ms: 0,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    }
}

impl<'a> Compensator<'a> {
    pub fn new(config: &'a SchedulerConfig) -> Compensator<'a> {
        Compensator {
            config,
            orphans: HashMap::new(),
            queued_after: None,
            sweep_started: 0,
        }
    }

    fn now(&self) -> i64 {
        self.config.clock.now_ms()
    }

    pub async fn pass(&mut self) {
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
        let held = c.broker.holds(&due).await?;
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

    async fn reclaim_expired(&self) -> Result<(), crate::SchedulerError> {
        for lease in self.config.broker.reap_expired(self.now()).await? {
            let why = format!(
                "lease expired: no heartbeat from worker {}",
                lease.worker_id
            );
            self.declare_lost(
                &lease.job.run_id,
                lease.job.attempt,
                &lease.lease_token,
                why,
                "lease_expired",
            )
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
                let why =
                    "the run's lease is gone (its runner or the broker restarted)".to_string();
                self.declare_lost(&run.id, run.attempt, &token, why, "orphaned")
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

    async fn declare_lost(
        &self,
        run_id: &str,
        attempt: u32,
        token: &str,
        why: String,
        kind: &'static str,
    ) {
        let applied = self
            .config
            .store
            .finish_attempt(run_id, attempt, Some(token), &lost(why.clone()), self.now())
            .await;
        match applied {
            Ok(_) => {
                metrics::counter!("antcode_scheduler_repairs_total", "kind" => kind).increment(1);
                tracing::warn!(run_id, attempt, "compensation: attempt lost: {why}");
            }
            // The runner's own report got there first: nothing to repair.
            Err(StoreError::Stale(_)) | Err(StoreError::NotFound) => {}
            Err(e) => {
                tracing::warn!(run_id, error = %e, "compensation: could not record lost attempt")
            }
        }
    }
}
