//! Firing schedules (leader only).
//!
//! A due task gets a run with `due_at` = the fire time it is for. The store's unique index on
//! `(task_id, due_at)` makes a second fire of the same due time impossible, whichever instance or
//! leader generation attempts it — a deposed leader's late write simply conflicts.
//!
//! Misfires (fire times missed while no leader ran): `skip` fires none of them, `fire_once` fires
//! the latest one, `catch_up` fires each of them (at most [`CATCH_UP_MAX`]). A due time within
//! [`MISFIRE_GRACE_MS`] is not a misfire: `skip` and `fire_once` fire the latest one then.

use std::collections::HashMap;

use antcode_core::model::{ProjectVersion, Run, RunState, Task};
use antcode_core::schedule;
use antcode_core::store::{NewRun, RunFilter, StoreError, HELD};
use antcode_core::time::now_ms;

use crate::SchedulerConfig;

/// A fire time older than this when the leader sees it counts as missed.
pub const MISFIRE_GRACE_MS: i64 = 5_000;
pub const CATCH_UP_MAX: usize = 100;

pub async fn fire_due(config: &SchedulerConfig, fence: u64) {
    let now = now_ms();
    let tasks = match config.store.due_tasks(now).await {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::warn!(error = %e, "tick: reading due tasks failed");
            return;
        }
    };
    // One pass reads each project's current version once, not once per task: with many
    // schedules on few projects those two reads were a third of the statements per fire.
    let mut versions = HashMap::new();
    for task in tasks {
        if let Err(e) = fire_task(config, task, now, fence, &mut versions).await {
            tracing::warn!(error = %e, "tick: firing failed; will retry next tick");
        }
    }
}

/// The due times to fire now for `task`, and its next fire time after them.
fn plan(task: &Task, now: i64) -> (Vec<i64>, Option<i64>) {
    let Some(sched) = &task.schedule else {
        return (vec![], None);
    };
    let Some(first) = task.next_fire_at else {
        return (vec![], None);
    };
    let mut missed = vec![first];
    // Interval fires are counted from the pending fire time itself, so they stay evenly spaced
    // across restarts and edits.
    let mut next = schedule::next_after(sched, first, first).ok().flatten();
    while let Some(t) = next.filter(|t| *t <= now) {
        if missed.len() < CATCH_UP_MAX {
            missed.push(t);
        } else {
            missed.remove(0);
            missed.push(t);
        }
        next = schedule::next_after(sched, t, first).ok().flatten();
    }
    let latest = *missed.last().unwrap_or(&first);
    let fire = if task.spec.misfire == "catch_up" {
        // Every due time since the last fire, even when the newest is still within the grace:
        // a failover that took two intervals must not drop the first of them.
        missed
    } else if now - latest <= MISFIRE_GRACE_MS {
        vec![latest]
    } else if task.spec.misfire == "skip" {
        vec![]
    } else {
        vec![latest]
    };
    (fire, next)
}

/// What the overlap policy decides for one fire while earlier runs of the task are active.
enum Overlap {
    Fire,
    Skip,
    /// Create the run but hold it until the active one finishes (`queue_one`).
    Hold,
    /// Cancel the active runs, then fire (`cancel_previous`).
    CancelThenFire(Vec<Run>),
}

async fn overlap(config: &SchedulerConfig, task: &Task) -> Result<Overlap, StoreError> {
    if task.spec.overlap == "allow" {
        return Ok(Overlap::Fire);
    }
    let active = active_runs(config, &task.id).await?;
    if active.is_empty() {
        return Ok(Overlap::Fire);
    }
    Ok(match task.spec.overlap.as_str() {
        "skip" => Overlap::Skip,
        "queue_one" if active.iter().any(|r| r.state == RunState::Queued) => Overlap::Skip,
        "queue_one" => Overlap::Hold,
        "cancel_previous" => Overlap::CancelThenFire(active),
        _ => Overlap::Fire,
    })
}

async fn fire_task(
    config: &SchedulerConfig,
    mut task: Task,
    now: i64,
    fence: u64,
    versions: &mut HashMap<String, ProjectVersion>,
) -> Result<(), StoreError> {
    let (due_times, next) = plan(&task, now);
    let version = match versions.get(&task.project_id) {
        Some(v) => v.clone(),
        None => {
            let v = config
                .store
                .version(&task.project_id, current_version(config, &task).await?)
                .await?;
            versions.insert(task.project_id.clone(), v.clone());
            v
        }
    };
    for due in due_times {
        let decision = overlap(config, &task).await?;
        match &decision {
            Overlap::Skip => {
                metrics::counter!("antcode_scheduler_fires_total", "outcome" => "skipped_overlap")
                    .increment(1);
                continue;
            }
            Overlap::CancelThenFire(active) => cancel_all(config, active).await,
            Overlap::Fire | Overlap::Hold => {}
        }
        let new = NewRun {
            task: task.clone(),
            version: version.clone(),
            trigger: "schedule".into(),
            due_at: Some(due),
        };
        match config
            .store
            .create_fenced_run(&new, crate::leader::LOCK, fence)
            .await
        {
            Ok((run, job)) => {
                metrics::counter!("antcode_scheduler_fires_total", "outcome" => "fired")
                    .increment(1);
                // Lag is measured at the SQL write: that is when the fire became durable.
                metrics::histogram!("antcode_scheduler_fire_lag_seconds")
                    .record((now_ms() - due).max(0) as f64 / 1000.0);
                metrics::counter!("antcode_runs_created_total", "trigger" => "schedule")
                    .increment(1);
                tracing::info!(task = %task.name, due, fence, "tick: fired");
                if matches!(decision, Overlap::Hold) {
                    config.store.defer_run(&run.id, HELD).await?;
                } else if let Err(e) = antcode_core::secrets::publish_job(
                    config.store.as_ref(),
                    config.broker.as_ref(),
                    config.secrets.as_deref(),
                    &job,
                )
                .await
                {
                    // A store or broker error: compensation publishes it from SQL on the next
                    // pass. A secret that cannot be resolved has failed the run already.
                    tracing::warn!(error = %e, "tick: publish failed");
                }
            }
            Err(StoreError::Conflict(_)) => {
                metrics::counter!("antcode_scheduler_fires_total", "outcome" => "duplicate")
                    .increment(1);
            }
            Err(e) => return Err(e),
        }
    }
    task.next_fire_at = next;
    task.updated_at = now;
    config.store.update_task(&task).await
}

async fn cancel_all(config: &SchedulerConfig, runs: &[Run]) {
    for run in runs {
        if let Err(e) = config.store.request_cancel(&run.id, now_ms()).await {
            tracing::warn!(run_id = %run.id, error = %e, "tick: cancelling the previous run failed");
        }
        if let Err(e) = config.broker.cancel(&run.id).await {
            tracing::warn!(run_id = %run.id, error = %e, "tick: cancel signal failed");
        }
    }
}

async fn current_version(config: &SchedulerConfig, task: &Task) -> Result<i64, StoreError> {
    Ok(config
        .store
        .project(&task.project_id)
        .await?
        .current_version)
}

/// The task's queued (including held) and running runs.
pub async fn active_runs(config: &SchedulerConfig, task_id: &str) -> Result<Vec<Run>, StoreError> {
    let mut out = vec![];
    for state in [RunState::Queued, RunState::Running] {
        let filter = RunFilter {
            task_id: Some(task_id.into()),
            state: Some(state),
            ..Default::default()
        };
        out.extend(config.store.list_runs(&filter, 100, None).await?.items);
    }
    Ok(out)
}
