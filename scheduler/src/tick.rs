//! Firing schedules (leader only).
//!
//! A due task gets a run with `due_at` = the fire time it is for. The store's unique index on
//! `(task_id, due_at)` makes a second fire of the same due time impossible, whichever instance or
//! leader generation attempts it — a deposed leader's late write simply conflicts.
//!
//! Misfires (fire times missed while no leader ran): `skip` fires none of them, `fire_once` fires
//! the latest one, `catch_up` fires each of them (at most [`CATCH_UP_MAX`]).

use antcode_core::model::{RunState, Task};
use antcode_core::schedule;
use antcode_core::store::{NewRun, RunFilter, StoreError};
use antcode_core::time::now_ms;

use crate::SchedulerConfig;

/// A fire time older than this when the leader sees it counts as missed.
const MISFIRE_GRACE_MS: i64 = 5_000;
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
    for task in tasks {
        if let Err(e) = fire_task(config, task, now, fence).await {
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
    let fire = if now - latest <= MISFIRE_GRACE_MS {
        vec![latest]
    } else {
        match task.spec.misfire.as_str() {
            "skip" => vec![],
            "catch_up" => missed,
            _ => vec![latest],
        }
    };
    (fire, next)
}

async fn fire_task(
    config: &SchedulerConfig,
    mut task: Task,
    now: i64,
    fence: u64,
) -> Result<(), StoreError> {
    let (due_times, next) = plan(&task, now);
    let version = config
        .store
        .version(&task.project_id, current_version(config, &task).await?)
        .await?;
    for due in due_times {
        if task.spec.overlap == "skip" && has_active_run(config, &task.id).await? {
            metrics::counter!("antcode_scheduler_fires_total", "outcome" => "skipped_overlap")
                .increment(1);
            continue;
        }
        let new = NewRun {
            task: task.clone(),
            version: version.clone(),
            trigger: "schedule".into(),
            due_at: Some(due),
        };
        match config.store.create_run(&new).await {
            Ok((_, job)) => {
                metrics::counter!("antcode_scheduler_fires_total", "outcome" => "fired")
                    .increment(1);
                metrics::counter!("antcode_runs_created_total", "trigger" => "schedule")
                    .increment(1);
                tracing::info!(task = %task.name, due, fence, "tick: fired");
                if let Err(e) = config.broker.publish(&job).await {
                    // Compensation publishes it from SQL on the next pass.
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

async fn current_version(config: &SchedulerConfig, task: &Task) -> Result<i64, StoreError> {
    Ok(config
        .store
        .project(&task.project_id)
        .await?
        .current_version)
}

async fn has_active_run(config: &SchedulerConfig, task_id: &str) -> Result<bool, StoreError> {
    for state in [RunState::Queued, RunState::Running] {
        let filter = RunFilter {
            task_id: Some(task_id.into()),
            state: Some(state),
            ..Default::default()
        };
        if !config
            .store
            .list_runs(&filter, 1, None)
            .await?
            .items
            .is_empty()
        {
            return Ok(true);
        }
    }
    Ok(false)
}
