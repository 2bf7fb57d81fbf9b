//! Firing schedules (leader only).
//!
//! A pass reads the due tasks in batches of [`FIRE_BATCH`], the oldest fire time first. Each
//! batch is planned in memory (the misfire and overlap policies of every task, against one read
//! of the batch's active runs), written in ONE fenced transaction (`Store::fire_schedules`: the
//! runs and every task's next fire time) and its jobs published in one broker call. Batching is
//! what lets one leader keep up with 100,000 schedules: a fire costs a row in a multi-row
//! statement, not a transaction and three round trips of its own.
//!
//! A due task gets a run with `due_at` = the fire time it is for. The store's unique index on
//! `(task_id, due_at)` makes a second fire of the same due time impossible, whichever instance or
//! leader generation attempts it, and the fence refuses a deposed leader's batch as a whole.
//!
//! Misfires (fire times missed while no leader ran): `skip` fires none of them, `fire_once` fires
//! the latest one, `catch_up` fires each of them (at most [`CATCH_UP_MAX`]). A due time within
//! [`MISFIRE_GRACE_MS`] is not a misfire: `skip` and `fire_once` fire the latest one then.

use std::borrow::Cow;
use std::collections::HashMap;

use antcode_core::model::{ProjectVersion, Run, RunState, Schedule, Task};
use antcode_core::schedule::Compiled;
use antcode_core::secrets::publish_jobs;
use antcode_core::store::{Fire, NewRun, NextFire, StoreError};
use tokio_util::task::AbortOnDropHandle;

use crate::SchedulerConfig;

/// A fire time older than this when the leader sees it counts as missed.
pub const MISFIRE_GRACE_MS: i64 = 5_000;
pub const CATCH_UP_MAX: usize = 100;
/// Due tasks read, planned and written per transaction.
pub const FIRE_BATCH: u32 = 1_000;

/// Fires everything due now, batch after batch, until nothing is due.
///
/// The next batch is read while the current one is planned and written (two connections, and
/// on a multi-threaded runtime two cores): a batch's tasks stay due until its transaction
/// commits, so that read leaves them out by id. Every earlier batch has committed by then.
pub async fn fire_due(config: &SchedulerConfig, fence: u64) {
    // Each project's current version is read once per pass, not once per task: with many
    // schedules on few projects those reads were a third of the statements per fire.
    let mut versions = HashMap::new();
    let mut schedules = Schedules::default();
    let mut now = config.clock.now_ms();
    let mut tasks = match config.store.due_tasks(now, FIRE_BATCH, &[]).await {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::warn!(error = %e, "tick: reading due tasks failed");
            return;
        }
    };
    loop {
        // A full batch means more may be due.
        let next_read = (tasks.len() == FIRE_BATCH as usize).then(|| {
            let store = config.store.clone();
            let skip: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
            let at = config.clock.now_ms();
            let read = tokio::spawn(async move { store.due_tasks(at, FIRE_BATCH, &skip).await });
            // Dropped unawaited when the pass ends early (leadership lost, a failed batch).
            (at, AbortOnDropHandle::new(read))
        });
        let batch = fire_batch(config, tasks, now, fence, &mut versions, &mut schedules).await;
        match batch {
            // A batch that moved no task would only read the same tasks again (after this
            // one): they wait for the next tick.
            Ok(moved) if moved > 0 => {}
            Ok(_) => return,
            Err(StoreError::Stale(e)) => {
                tracing::warn!(fence, error = %e, "tick: batch refused: this leader was deposed");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "tick: firing failed; will retry next tick");
                return;
            }
        }
        let Some((at, mut read)) = next_read else {
            return;
        };
        tasks = match (&mut read).await {
            Ok(Ok(tasks)) if !tasks.is_empty() => tasks,
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "tick: reading due tasks failed");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "tick: the read of due tasks ended abnormally");
                return;
            }
        };
        now = at;
    }
}

/// Schedules parsed once per pass: many tasks share a cron expression (and before, each fire
/// parsed its task's expression twice).
#[derive(Default)]
struct Schedules {
    cron: HashMap<(String, String), Compiled>,
}

impl Schedules {
    fn get(&mut self, s: &Schedule) -> Option<Cow<'_, Compiled>> {
        match s {
            Schedule::Cron { cron, timezone } => {
                let key = (cron.clone(), timezone.clone());
                if !self.cron.contains_key(&key) {
                    self.cron.insert(key.clone(), Compiled::new(s).ok()?);
                }
                self.cron.get(&key).map(Cow::Borrowed)
            }
            _ => Compiled::new(s).ok().map(Cow::Owned),
        }
    }
}

/// The due times to fire now for `task`, and its next fire time after them.
fn plan(task: &Task, now: i64, schedules: &mut Schedules) -> (Vec<i64>, Option<i64>) {
    let Some(sched) = task.schedule.as_ref().and_then(|s| schedules.get(s)) else {
        return (vec![], None);
    };
    let Some(first) = task.next_fire_at else {
        return (vec![], None);
    };
    let mut missed = vec![first];
    // Interval fires are counted from the pending fire time itself, so they stay evenly spaced
    // across restarts and edits.
    let mut next = sched.next_after(first, first);
    while let Some(t) = next.filter(|t| *t <= now) {
        if missed.len() < CATCH_UP_MAX {
            missed.push(t);
        } else {
            missed.remove(0);
            missed.push(t);
        }
        next = sched.next_after(t, first);
    }
    // A pending fire outside the schedule's bounds (an interval's `end` moved before it) is
    // dropped, never fired.
    missed.retain(|t| sched.within_bounds(*t));
    let Some(&latest) = missed.last() else {
        return (vec![], next);
    };
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

/// One fire the overlap policy let through.
#[derive(Debug, Default)]
struct Planned {
    due: i64,
    /// Created held until the running run finishes (`queue_one`).
    held: bool,
    /// Cancelled right after it is created: a later fire of the same pass replaces it
    /// (`cancel_previous` catching up).
    superseded: bool,
    /// Active runs to cancel once this fire is created (`cancel_previous`).
    cancel: Vec<Run>,
}

/// Applies the overlap policy to a task's due times, given its active runs. Returns the fires
/// to create and how many were skipped. Each created fire counts as active for the next.
fn overlap(policy: &str, due_times: &[i64], mut active: Vec<Run>) -> (Vec<Planned>, usize) {
    let mut queued = active.iter().any(|r| r.state == RunState::Queued);
    let running = active.iter().any(|r| r.state == RunState::Running);
    let mut fires: Vec<Planned> = vec![];
    let mut skipped = 0;
    for &due in due_times {
        let mut fire = Planned {
            due,
            ..Default::default()
        };
        match policy {
            "skip" | "queue_one" if queued => {
                skipped += 1;
                continue;
            }
            "skip" if running => {
                skipped += 1;
                continue;
            }
            "queue_one" => fire.held = running,
            "cancel_previous" => {
                fire.cancel = std::mem::take(&mut active);
                if let Some(previous) = fires.last_mut() {
                    previous.superseded = true;
                }
            }
            _ => {}
        }
        queued = true;
        fires.push(fire);
    }
    (fires, skipped)
}

/// Plans, writes and publishes one batch of due tasks; returns how many tasks it moved on.
async fn fire_batch(
    config: &SchedulerConfig,
    tasks: Vec<Task>,
    now: i64,
    fence: u64,
    versions: &mut HashMap<String, ProjectVersion>,
    schedules: &mut Schedules,
) -> Result<usize, StoreError> {
    let guarded: Vec<String> = tasks
        .iter()
        .filter(|t| t.spec.overlap != "allow")
        .map(|t| t.id.clone())
        .collect();
    let mut active: HashMap<String, Vec<Run>> = HashMap::new();
    if !guarded.is_empty() {
        for run in config.store.active_runs(&guarded).await? {
            active.entry(run.task_id.clone()).or_default().push(run);
        }
    }
    let mut fires = vec![];
    let mut plans = vec![];
    let mut next = vec![];
    let mut skipped = 0;
    for task in tasks {
        let Some(from) = task.next_fire_at else {
            continue;
        };
        let version = match version_of(config, &task, versions).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(task = %task.name, error = %e, "tick: cannot read the task's project version; will retry next tick");
                continue;
            }
        };
        let (due_times, to) = plan(&task, now, schedules);
        let task_active = active.remove(&task.id).unwrap_or_default();
        let (planned, skips) = overlap(&task.spec.overlap, &due_times, task_active);
        skipped += skips;
        for p in planned {
            let run = NewRun {
                task: task.clone(),
                version: version.clone(),
                trigger: "schedule".into(),
                due_at: Some(p.due),
            };
            fires.push(Fire { run, held: p.held });
            plans.push(p);
        }
        next.push(NextFire {
            task_id: task.id,
            from,
            to,
        });
    }
    metrics::counter!("antcode_scheduler_fires_total", "outcome" => "skipped_overlap")
        .increment(skipped as u64);
    let created = config
        .store
        .fire_schedules(&fires, &next, crate::leader::LOCK, fence, now)
        .await?;
    metrics::histogram!("antcode_scheduler_fire_batch_size").record(fires.len() as f64);
    // Lag is measured once the batch is durable: that is when its fires happened.
    let written = config.clock.now_ms();
    let mut publish = vec![];
    for (plan, job) in plans.iter().zip(created) {
        let Some(job) = job else {
            metrics::counter!("antcode_scheduler_fires_total", "outcome" => "duplicate")
                .increment(1);
            continue;
        };
        metrics::counter!("antcode_scheduler_fires_total", "outcome" => "fired").increment(1);
        metrics::counter!("antcode_runs_created_total", "trigger" => "schedule").increment(1);
        metrics::histogram!("antcode_scheduler_fire_lag_seconds")
            .record((written - plan.due).max(0) as f64 / 1000.0);
        tracing::debug!(task_id = %job.task_id, due = plan.due, fence, "tick: fired");
        cancel_all(config, &plan.cancel).await;
        if plan.superseded {
            if let Err(e) = config.store.request_cancel(&job.run_id, written).await {
                tracing::warn!(run_id = %job.run_id, error = %e, "tick: cancelling a superseded fire failed");
            }
        } else if !plan.held {
            publish.push(job);
        }
    }
    if !publish.is_empty() {
        let c = config;
        // A store or broker error: compensation publishes them from SQL on its next pass. A
        // secret that cannot be resolved has failed its run already.
        if let Err(e) = publish_jobs(
            c.store.as_ref(),
            c.broker.as_ref(),
            c.secrets.as_deref(),
            &publish,
        )
        .await
        {
            tracing::warn!(error = %e, jobs = publish.len(), "tick: publish failed");
        }
    }
    Ok(next.len())
}

async fn version_of(
    config: &SchedulerConfig,
    task: &Task,
    cache: &mut HashMap<String, ProjectVersion>,
) -> Result<ProjectVersion, StoreError> {
    if let Some(v) = cache.get(&task.project_id) {
        return Ok(v.clone());
    }
    let project = config.store.project(&task.project_id).await?;
    let v = config
        .store
        .version(&task.project_id, project.current_version)
        .await?;
    cache.insert(task.project_id.clone(), v.clone());
    Ok(v)
}

async fn cancel_all(config: &SchedulerConfig, runs: &[Run]) {
    let now = config.clock.now_ms();
    for run in runs {
        if let Err(e) = config.store.request_cancel(&run.id, now).await {
            tracing::warn!(run_id = %run.id, error = %e, "tick: cancelling the previous run failed");
        }
        if let Err(e) = config.broker.cancel(&run.id).await {
            tracing::warn!(run_id = %run.id, error = %e, "tick: cancel signal failed");
        }
    }
}
