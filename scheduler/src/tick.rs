//! Firing schedules (leader only).
//!
//! A pass reads the due tasks in batches of [`FIRE_BATCH`], the oldest fire time first. Each
//! batch is planned in memory (the misfire and overlap policies of every task, against one read
//! of the batch's active runs), written in ONE fenced transaction (`ScheduleStore::fire_schedules`: the
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
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use antcode_core::dispatch::publish_jobs;
use antcode_core::model::{ProjectVersion, Run, RunState, Schedule, Task};
use antcode_core::params;
use antcode_core::schedule::Compiled;
use antcode_core::store::{DueKey, Fire, NewRun, NextFire, StoreError};
use antcode_core::telemetry::trace::{self, Kind, RunSpan};
use tokio_util::task::AbortOnDropHandle;

use crate::SchedulerConfig;

/// A fire time older than this when the leader sees it counts as missed.
pub const MISFIRE_GRACE_MS: i64 = 5_000;
pub const CATCH_UP_MAX: usize = 100;
/// Due tasks read, planned and written per transaction.
pub const FIRE_BATCH: u32 = 1_000;

/// Fires everything due now, batch after batch, until nothing is due.
///
/// Three things overlap so that the SQL server, the network and the leader's CPU all work at
/// once: the read of the next batch, the planning of the current one, and the writes of the
/// batches before it (up to [`antcode_core::store::ScheduleStore::fire_writers`] transactions in flight, each publishing its
/// jobs once it commits). A batch's tasks stay due until its transaction commits, so the next
/// read starts after the current batch's last task in the order of due tasks (a keyset on
/// `(next_fire_at, id)`): each read costs its own rows however large the backlog, and no task is
/// in two batches of a pass. A task that becomes due behind the keyset during the pass (edited,
/// or moved to a due time already past) is read by the next pass.
pub async fn fire_due(config: &SchedulerConfig, fence: u64) {
    // The writes run as tasks of their own, so that they progress while this one plans.
    let shared = Arc::new(config.clone());
    let writers = config.store.fire_writers().max(1);
    // Writes in flight, oldest first. Dropped (and so aborted, rolled back if uncommitted) when
    // the pass ends early: leadership lost, a batch refused.
    let mut writes: VecDeque<AbortOnDropHandle<Result<(), StoreError>>> = VecDeque::new();
    // Until one batch of this pass has committed, writes go one at a time: the first may have
    // to advance the fence, which locks its row exclusively, and two of them doing that at
    // once would deadlock each other.
    let mut committed = false;
    // Each project's current version is read once per pass, not once per task: with many
    // schedules on few projects those reads were a third of the statements per fire.
    let mut versions = HashMap::new();
    let mut schedules = Schedules::default();
    let mut now = config.clock.now_ms();
    let mut tasks = match config.store.due_tasks(now, FIRE_BATCH, None).await {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::warn!(error = %e, "tick: reading due tasks failed");
            return;
        }
    };
    'pass: loop {
        // A full batch means more may be due.
        let next_read = tasks
            .last()
            .filter(|_| tasks.len() == FIRE_BATCH as usize)
            .and_then(|last| {
                let after = DueKey {
                    next_fire_at: last.next_fire_at?,
                    id: last.id.clone(),
                };
                let store = config.store.clone();
                let at = config.clock.now_ms();
                let read = tokio::spawn(async move {
                    let started = Instant::now();
                    let tasks = store.due_tasks(at, FIRE_BATCH, Some(&after)).await;
                    phase("read", started);
                    tasks
                });
                // Dropped unawaited when the pass ends early.
                Some((at, AbortOnDropHandle::new(read)))
            });
        let batch = match plan_batch(config, tasks, now, &mut versions, &mut schedules).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "tick: planning a batch failed; will retry next tick");
                break 'pass;
            }
        };
        let limit = if committed { writers } else { 1 };
        while writes.len() >= limit {
            let Some(write) = writes.pop_front() else {
                break;
            };
            match finish(write, fence).await {
                Written::Ok => committed = true,
                // The rest waits for the next tick.
                Written::Failed => break 'pass,
                Written::Deposed => return,
            }
        }
        let write = tokio::spawn(write_batch(shared.clone(), batch, fence));
        writes.push_back(AbortOnDropHandle::new(write));
        let Some((at, mut read)) = next_read else {
            break;
        };
        let waited = Instant::now();
        tasks = match (&mut read).await {
            Ok(Ok(tasks)) if !tasks.is_empty() => tasks,
            Ok(Ok(_)) => break,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "tick: reading due tasks failed");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "tick: the read of due tasks ended abnormally");
                break;
            }
        };
        // The part of the read that the planning did not hide.
        phase("read_wait", waited);
        now = at;
    }
    // The pass ends once the writes it started have ended.
    while let Some(write) = writes.pop_front() {
        if let Written::Deposed = finish(write, fence).await {
            return;
        }
    }
}

/// How a batch's write ended.
enum Written {
    Ok,
    /// An error that the next tick may not see again: the batch's tasks are still due.
    Failed,
    /// This leader's fence was refused: a newer leader writes now.
    Deposed,
}

/// Awaits one write in flight and logs how it ended.
async fn finish(write: AbortOnDropHandle<Result<(), StoreError>>, fence: u64) -> Written {
    match write.await {
        Ok(Ok(())) => Written::Ok,
        Ok(Err(StoreError::Stale(e))) => {
            tracing::warn!(fence, error = %e, "tick: batch refused: this leader was deposed");
            Written::Deposed
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "tick: firing failed; will retry next tick");
            Written::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, "tick: a batch's write ended abnormally");
            Written::Failed
        }
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
/// A due time the misfire policy dropped is added to `misfires`.
fn plan(
    task: &Task,
    now: i64,
    schedules: &mut Schedules,
    misfires: &mut Vec<crate::alerts::Misfire>,
) -> (Vec<i64>, Option<i64>) {
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
    let missed_count = missed.len();
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
    if fire.len() < missed_count {
        let count = missed_count - fire.len();
        metrics::counter!("antcode_scheduler_fires_total", "outcome" => "skipped_misfire")
            .increment(count as u64);
        misfires.push(crate::alerts::Misfire {
            task_id: task.id.clone(),
            task_name: task.name.clone(),
            latest,
            count,
        });
    }
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

/// Records how long one phase of a batch took (`antcode_scheduler_fire_phase_seconds`): where a
/// batch's time goes (read, plan, write, publish) is what decides the next optimisation.
fn phase(name: &'static str, started: Instant) {
    metrics::histogram!("antcode_scheduler_fire_phase_seconds", "phase" => name)
        .record(started.elapsed().as_secs_f64());
}

/// The root span of a fire of task `task_id` due at `due_ms`.
fn fire_span(task_id: &str, due_ms: i64) -> RunSpan {
    let span = RunSpan::start("schedule fire", Kind::Producer, None);
    span.set("antcode.task_id", task_id.to_string());
    span.set("antcode.due_ms", due_ms);
    span
}

/// One batch planned: the runs to create and every task's next fire time.
struct Batch {
    /// The time the batch's tasks were read at, which its plans are against.
    now: i64,
    fires: Vec<Fire>,
    /// What to do after each fire is created, in the order of `fires`.
    plans: Vec<Planned>,
    next: Vec<NextFire>,
    /// The fires' spans when traces are on (else empty), ended once the batch is published.
    spans: Vec<RunSpan>,
}

/// Plans one batch of due tasks: their misfire and overlap policies, against one read of the
/// batch's active runs.
async fn plan_batch(
    config: &SchedulerConfig,
    tasks: Vec<Task>,
    now: i64,
    versions: &mut HashMap<String, ProjectVersion>,
    schedules: &mut Schedules,
) -> Result<Batch, StoreError> {
    let started = Instant::now();
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
    let mut misfires = vec![];
    let mut spans = vec![];
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
        let (due_times, to) = plan(&task, now, schedules, &mut misfires);
        let params = schedule_params(&task);
        let task_active = active.remove(&task.id).unwrap_or_default();
        let (planned, skips) = overlap(&task.spec.overlap, &due_times, task_active);
        skipped += skips;
        for p in planned {
            // With traces on, each fire starts its run's trace; the span lasts until it is
            // published (`write_batch`). Off, a fire costs nothing more.
            let span = trace::enabled().then(|| fire_span(&task.id, p.due));
            let run = NewRun {
                due_at: Some(p.due),
                params: params.clone(),
                trace: span.as_ref().and_then(RunSpan::traceparent),
                ..NewRun::new(task.clone(), version.clone(), "schedule")
            };
            spans.extend(span);
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
    config.misfires.add(misfires);
    phase("plan", started);
    Ok(Batch {
        now,
        fires,
        plans,
        spans,
        next,
    })
}

/// Writes one planned batch in ONE fenced transaction, then publishes its jobs.
async fn write_batch(
    config: Arc<SchedulerConfig>,
    batch: Batch,
    fence: u64,
) -> Result<(), StoreError> {
    let config = config.as_ref();
    let Batch {
        now,
        fires,
        plans,
        next,
        spans: _spans,
    } = batch;
    let started = Instant::now();
    let created = config
        .store
        .fire_schedules(&fires, &next, crate::leader::LOCK, fence, now)
        .await?;
    phase("write", started);
    let started = Instant::now();
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
    phase("publish", started);
    Ok(())
}

/// The params of the task's scheduled runs: its `schedule_params` with the schema's defaults.
/// They were checked when the task was saved; should they fit no longer, the run gets them as
/// they are rather than not run.
fn schedule_params(task: &Task) -> Option<serde_json::Value> {
    let given = task.spec.schedule_params.as_ref();
    params::resolve(task.spec.params.as_ref(), given).unwrap_or_else(|errors| {
        tracing::warn!(task = %task.name, errors = %errors.join("; "), "tick: schedule params do not fit the task's schema");
        given.cloned().map(serde_json::Value::Object)
    })
}

async fn version_of(
    config: &SchedulerConfig,
    task: &Task,
    cache: &mut HashMap<String, ProjectVersion>,
) -> Result<ProjectVersion, StoreError> {
    if let Some(v) = cache.get(&task.project_id) {
        return Ok(v.clone());
    }
    let v = config.store.current_version(&task.project_id).await?;
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
