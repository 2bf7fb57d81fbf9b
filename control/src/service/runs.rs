//! Runs: how one starts (from a trigger, an invoke or a retry), how one is cancelled, and its
//! log as text.
//!
//! A run is created queued in SQL first and its job published to the broker second. If the
//! broker is down the run stays queued, where compensation re-publishes it: [`start_run`] never
//! fails for a publish.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use tokio::sync::mpsc;

use antcode_core::blob::{log_key, BlobError};
use antcode_core::broker::{changed, routing, RunChanges, PROGRESS_STREAM};
use antcode_core::dispatch::{publish_job, PublishError};
use antcode_core::flow::LinkKind;
use antcode_core::hooks::RunKey;
use antcode_core::model::{ProjectVersion, Role, Run, RunOverrides, RunState, Task};
use antcode_core::params;
use antcode_core::store::{NewRun, RunFilter, RunParent};
use antcode_core::time::parse_rfc3339;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::tasks;
use crate::auth;
use crate::inflate;
use crate::metrics;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::AppState;

pub async fn load(state: &AppState, id: &str) -> ApiResult<Run> {
    check_id(id, "run")?;
    state.store.run(id).await.map_err(named("run", id))
}

/// The filter of `GET /runs` from its query's fields; empty ones filter nothing.
/// What `GET /runs` filters by, as its query gives it.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    pub task_id: Option<String>,
    pub state: Option<String>,
    pub worker_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub trigger: Option<String>,
    pub error: Option<String>,
}

/// Longest `trigger` and `error` filter.
pub const MAX_TRIGGER_CHARS: usize = 32;
pub const MAX_ERROR_FILTER_CHARS: usize = 256;

/// The store's filter for `q`; a bad value is a 400 naming it.
pub fn filter(q: ListQuery) -> ApiResult<RunFilter> {
    let time = |name: &str, v: Option<&str>| -> ApiResult<Option<i64>> {
        match v {
            None | Some("") => Ok(None),
            Some(s) => parse_rfc3339(s).map(Some).ok_or_else(|| {
                Problem::bad_request(format!("{name}: {s:?} is not an RFC 3339 time"))
            }),
        }
    };
    let text = |name: &str, v: Option<String>, most: usize| -> ApiResult<Option<String>> {
        match v.filter(|s| !s.is_empty()) {
            Some(s) if s.chars().count() > most => Err(Problem::bad_request(format!(
                "{name}: at most {most} characters"
            ))),
            v => Ok(v),
        }
    };
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunState::parse(s).ok_or_else(|| {
            Problem::bad_request(format!(
                "state: {s:?} is not one of queued, running, succeeded, failed, timed_out, cancelled, lost"
            ))
        })?),
    };
    Ok(RunFilter {
        task_id: q.task_id.filter(|s| !s.is_empty()),
        state,
        worker_id: q.worker_id.filter(|s| !s.is_empty()),
        since_ms: time("since", q.since.as_deref())?,
        until_ms: time("until", q.until.as_deref())?,
        trigger: text("trigger", q.trigger, MAX_TRIGGER_CHARS)?,
        error: text("error", q.error, MAX_ERROR_FILTER_CHARS)?,
    })
}

/// Creates a queued run of `version` (the task's project's current one) and publishes its job.
/// If the broker is down the run stays queued in SQL, where compensation re-publishes it. With
/// a `key` already used the store refuses the run (`StoreError::Conflict`), creating nothing.
pub async fn start_run(
    state: &AppState,
    task: &Task,
    version: ProjectVersion,
    trigger: &str,
    input: Checked,
    key: Option<RunKey>,
) -> ApiResult<Run> {
    let (run, job) = state
        .store
        .create_run(&NewRun {
            task: task.clone(),
            version,
            trigger: trigger.into(),
            due_at: None,
            params: input.params,
            overrides: input.overrides,
            key,
            parent: input.parent,
            trace: antcode_core::telemetry::trace::current_traceparent(),
        })
        .await?;
    metrics::run_created(trigger);
    // Secrets are resolved into the broker message only; the job in SQL holds their names.
    let secrets = state.secrets.as_deref();
    match publish_job(state.store.as_ref(), state.broker.as_ref(), secrets, &job).await {
        Ok(_) => Ok(run),
        // The run was failed with a message naming the secret: show it as it is now.
        Err(PublishError::RunFailed(_)) => Ok(state.store.run(&run.id).await?),
        Err(e) => {
            tracing::warn!(error = %e, run_id = %run.id, "publish failed; the run stays queued for compensation");
            Ok(run)
        }
    }
}

/// The body of `POST /tasks/{id}/trigger` and `…/invoke`, all of it optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    /// Checked against the task's `params` schema, its defaults filled in.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    /// Arguments in place of the task's.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Variables over the task's env.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl RunInput {
    /// An empty body is no input at all.
    pub fn parse(body: &[u8]) -> ApiResult<RunInput> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(RunInput::default());
        }
        crate::problem::parse_json(body)
    }
}

/// What a run of `task` starts with for `input`, checked.
pub struct Checked {
    pub params: Option<Value>,
    pub overrides: Option<RunOverrides>,
    /// Its place in a run group: a retry keeps its run's, so its chain goes on from it.
    pub parent: Option<RunParent>,
}

/// Checks `input` for a run of `task`: its params against the task's schema, its arguments and
/// env as a task's own are checked.
pub fn check_input(task: &Task, input: RunInput) -> ApiResult<Checked> {
    let args = input.args.as_deref().unwrap_or_default();
    tasks::check_command(args, &input.env)?;
    let overrides = RunOverrides {
        args: input.args,
        env: input.env,
    };
    Ok(Checked {
        params: run_params(task, input.params)?,
        overrides: (!overrides.is_empty()).then_some(overrides),
        parent: None,
    })
}

/// The params a run of `task` gets for `given` (see [`params::resolve`]): a 422 names every
/// bad field.
fn run_params(task: &Task, given: Option<Map<String, Value>>) -> ApiResult<Option<Value>> {
    params::resolve(task.spec.params.as_ref(), given.as_ref())
        .map_err(|errors| invalid_params(errors.join("; ")))
}

fn invalid_params(detail: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-params", detail)
}

/// Why no runner can take queued `run` now, if none can: no live runner serves its queue, or
/// none that does has the labels its task requires (or its project's Python). `None` also when
/// that cannot be told.
pub async fn unservable(state: &AppState, run: &Run) -> Option<String> {
    let task = state.store.task(&run.task_id).await.ok()?;
    let version = state
        .store
        .version(&run.project_id, run.project_version)
        .await
        .ok()?;
    let workers = state.broker.workers().await.ok()?;
    let serving: Vec<_> = workers
        .iter()
        .filter(|w| !w.draining && w.queues.contains(&run.queue))
        .map(|w| routing::with_runner(&w.labels, &w.name))
        .collect();
    if serving.is_empty() {
        return Some(format!("no live runner serves queue {}", run.queue));
    }
    let needs = routing::requirements(&task.spec.labels, version.python_version.as_deref());
    if let Some(n) = routing::unmet(&needs, &serving) {
        return Some(format!("no live runner matches {n}"));
    }
    if let Some(full) = full_limit(state, &task).await {
        return Some(full);
    }
    // Before its fallback, a run waits for a preferred runner too.
    let prefer = task.spec.prefer.as_ref()?;
    let until = run
        .queued_at
        .saturating_add(prefer.fallback_s.saturating_mul(1000) as i64);
    if until <= antcode_core::time::now_ms() {
        return None;
    }
    let mut preferred = needs;
    routing::with_preferred(&mut preferred, &prefer.labels);
    routing::unmet(&preferred, &serving).map(|n| {
        format!(
            "no live runner matches {n}; from {} any runner its labels allow may take it",
            antcode_core::time::to_rfc3339(until)
        )
    })
}

/// Tasks read, at most, to find the ones sharing a concurrency key.
const KEY_TASKS_SCANNED: u32 = 10_000;

/// Which of `task`'s concurrency limits is full now, if one is: its `max_concurrency`, or its
/// key's limit over every task under that key, against their runs in `running`. A run leased
/// but not yet started holds a slot too, so a full limit may go unnamed for a moment.
async fn full_limit(state: &AppState, task: &Task) -> Option<String> {
    if let Some(limit) = task.spec.max_concurrency {
        let running = running_of(state, &task.id, limit).await?;
        if running >= limit {
            return Some(format!(
                "waiting for a slot: its task's max_concurrency {limit} is reached ({running} running)"
            ));
        }
    }
    let key = task.spec.concurrency.as_ref()?;
    let mut running = 0;
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = state.store.list_tasks(500, cursor.as_deref()).await.ok()?;
        scanned += page.items.len() as u32;
        for t in &page.items {
            if t.spec
                .concurrency
                .as_ref()
                .is_some_and(|c| c.key == key.key)
            {
                running += running_of(state, &t.id, key.limit - running).await?;
                if running >= key.limit {
                    return Some(format!(
                        "waiting for a slot: concurrency key {} is at its limit {} ({running} running)",
                        key.key, key.limit
                    ));
                }
            }
        }
        match page.next_cursor {
            Some(next) if scanned < KEY_TASKS_SCANNED => cursor = Some(next),
            _ => return None,
        }
    }
}

/// Runs of task `task_id` in `running`, counted up to `limit`.
async fn running_of(state: &AppState, task_id: &str, limit: u32) -> Option<u32> {
    let filter = RunFilter {
        task_id: Some(task_id.to_string()),
        state: Some(RunState::Running),
        ..RunFilter::default()
    };
    let page = state.store.list_runs(&filter, limit, None).await.ok()?;
    Some(page.items.len() as u32)
}

/// Masks what a caller of `role` may not read of `run`: as for a task's env, the values of a
/// trigger's env overrides are write-only below the operator role.
pub fn mask(role: Role, run: &mut Run) {
    if auth::rank(role) >= auth::rank(Role::Operator) {
        return;
    }
    if let Some(o) = &mut run.overrides {
        for value in o.env.values_mut() {
            *value = tasks::MASKED.to_string();
        }
    }
}

/// Takes a manual run of `task` from its `triggers_per_min`, or answers 429 with the seconds
/// until one is allowed.
pub fn admit(state: &AppState, task: &Task) -> ApiResult<()> {
    let Some(rate) = task.spec.triggers_per_min else {
        return Ok(());
    };
    state
        .task_buckets
        .take(&task.id, rate, std::time::Instant::now())
        .map_err(|wait| {
            Problem::rate_limited(
                format!(
                    "task {} starts at most {rate} runs a minute; retry in {wait} s",
                    task.name
                ),
                wait,
            )
        })
}

/// Starts a run of task `id` for `trigger` (`manual`, `invoke`, `webhook`) with `input`.
pub async fn trigger(state: &AppState, id: &str, trigger: &str, input: RunInput) -> ApiResult<Run> {
    let (task, version) = tasks::load_for_run(state, id).await?;
    admit(state, &task)?;
    let input = check_input(&task, input)?;
    start_run(state, &task, version, trigger, input, None).await
}

/// Starts a new run of the task of `old`, a run that ended.
pub async fn retry(state: &AppState, old: &Run) -> ApiResult<Run> {
    if !old.state.is_terminal() {
        return Err(Problem::conflict(format!(
            "run {} is still {}; cancel it or wait for it to end",
            old.id,
            old.state.as_str()
        )));
    }
    let (task, version) = tasks::load_for_run(state, &old.task_id)
        .await
        .map_err(|p| match p.status {
            StatusCode::NOT_FOUND => {
                Problem::conflict(format!("the run's task {} no longer exists", old.task_id))
            }
            _ => p,
        })?;
    // A retry runs with the params and overrides the run had, in its run group.
    let input = Checked {
        params: old.params.clone(),
        overrides: old.overrides.clone(),
        parent: old.group_id.as_ref().map(|group| RunParent {
            group_id: group.clone(),
            run_id: old.parent_id.clone().unwrap_or_else(|| group.clone()),
            depth: old.depth,
        }),
    };
    start_run(state, &task, version, "retry", input, None).await
}

/// Most runs `GET /runs/{id}/group` shows.
const GROUP_SHOWN: u32 = 1000;

/// The run group of `run` as a caller of `role` sees it: `{group, runs, edges, truncated}`,
/// an edge `{from, to, kind}` for each run another's end started and, for a fan-in, one from
/// each run it waited for.
pub async fn group(state: &AppState, role: Role, run: &Run) -> ApiResult<Value> {
    let group = run.group_id.clone().unwrap_or_else(|| run.id.clone());
    let mut runs = state.store.group_runs(&group, GROUP_SHOWN + 1).await?;
    let truncated = runs.len() > GROUP_SHOWN as usize;
    runs.truncate(GROUP_SHOWN as usize);
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs
        .iter()
        .filter(|r| r.trigger == LinkKind::Needs.as_str())
    {
        if !needs.contains_key(&r.task_id) {
            let task = state.store.task(&r.task_id).await.ok();
            needs.insert(
                r.task_id.clone(),
                task.map(|t| t.spec.needs).unwrap_or_default(),
            );
        }
    }
    let mut edges = vec![];
    for r in &runs {
        let waited = needs
            .get(&r.task_id)
            .filter(|_| r.trigger == LinkKind::Needs.as_str());
        match waited {
            Some(tasks) => edges.extend(
                runs.iter()
                    .filter(|from| tasks.contains(&from.task_id))
                    .map(|from| json!({"from": from.id, "to": r.id, "kind": "needs"})),
            ),
            None => edges.extend(
                r.parent_id
                    .iter()
                    .map(|from| json!({"from": from, "to": r.id, "kind": r.trigger})),
            ),
        }
    }
    for r in &mut runs {
        mask(role, r);
    }
    Ok(json!({"group": group, "runs": runs, "edges": edges, "truncated": truncated}))
}

/// Asks for `before`, a run that has not ended, to be cancelled: the run as it is then.
pub async fn cancel(state: &AppState, before: &Run, now: i64) -> ApiResult<Run> {
    let id = &before.id;
    if before.state.is_terminal() {
        return Err(Problem::conflict(format!(
            "run {id} already ended ({})",
            before.state.as_str()
        )));
    }
    let run = state.store.request_cancel(id, now).await?;
    // The store is the truth; the broker signal is what a runner holding the lease sees.
    if let Err(e) = state.broker.cancel(id).await {
        tracing::warn!(error = %e, run_id = %id, "could not signal the cancel through the broker");
    }
    Ok(run)
}

/// The longest `wait_s` an invoke or a webhook call may ask for.
pub const MAX_WAIT_S: u64 = 300;

/// A caller's `wait_s`, at most [`MAX_WAIT_S`].
pub fn check_wait(wait_s: u64) -> ApiResult<Duration> {
    if wait_s > MAX_WAIT_S {
        return Err(super::bad(
            "wait_s",
            format!("must be at most {MAX_WAIT_S}"),
        ));
    }
    Ok(Duration::from_secs(wait_s))
}

/// Waits up to `wait` for `run` to end: the run as it is then. `changes` was watched before
/// the run was created, so no announcement of it can be missed.
pub async fn wait_for_end(
    state: &AppState,
    mut run: Run,
    mut changes: RunChanges,
    wait: Duration,
) -> ApiResult<Run> {
    let deadline = tokio::time::Instant::now() + wait;
    while !run.state.is_terminal() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {}
            // Announced by the recorder; the fallback re-read covers a lost announcement.
            _ = changed(&mut changes, &run.id, Duration::from_millis(250)) => {}
        }
        run = state.store.run(&run.id).await?;
    }
    Ok(run)
}

/// The archived log of a finished run as a stream of pieces (see [`crate::inflate`]), if it
/// has one.
pub async fn archived(
    state: &AppState,
    run: &Run,
) -> ApiResult<Option<mpsc::Receiver<std::io::Result<Bytes>>>> {
    match &run.log_key {
        Some(key) => archive_at(state, key).await,
        None => Ok(None),
    }
}

/// The archive of attempt `n` of `run` as a stream of pieces, if there is one: each attempt's
/// log is stored under its own key.
pub async fn attempt_archive(
    state: &AppState,
    run: &Run,
    n: u32,
) -> ApiResult<Option<mpsc::Receiver<std::io::Result<Bytes>>>> {
    archive_at(state, &log_key(&run.id, n)).await
}

/// The archive stored under `key` as a stream of pieces, if there is one.
async fn archive_at(
    state: &AppState,
    key: &str,
) -> ApiResult<Option<mpsc::Receiver<std::io::Result<Bytes>>>> {
    match state.blobs.get_stream(key).await {
        Ok(blob) => Ok(Some(inflate::inflate(blob, inflate::MAX_LOG_BYTES))),
        Err(BlobError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The log of a run, its first `limit` bytes (then a marker line): its archive when finished,
/// else the live chunks in the broker. The flag says whether it was cut.
pub async fn log_text(state: &AppState, run: &Run, limit: u64) -> ApiResult<(String, bool)> {
    let mut text = Vec::new();
    let mut cut = false;
    if let Some(mut pieces) = archived(state, run).await? {
        while let Some(piece) = pieces.recv().await {
            let piece = piece.map_err(Problem::internal)?;
            if !append_upto(&mut text, &piece, limit) {
                cut = true;
                break;
            }
        }
    } else {
        let chunks = state.broker.read_log(&run.id, 0, Duration::ZERO).await?;
        // Progress steps are not the log.
        for c in chunks.iter().filter(|c| c.stream != PROGRESS_STREAM) {
            if !append_upto(&mut text, c.data.as_bytes(), limit) {
                cut = true;
                break;
            }
        }
    }
    let mut text = String::from_utf8_lossy(&text).into_owned();
    if cut {
        text.push_str(&inflate::cut_marker(limit));
    }
    Ok((text, cut))
}

/// Appends as much of `piece` as fits `text` in `limit` bytes; false when some did not fit.
fn append_upto(text: &mut Vec<u8>, piece: &[u8], limit: u64) -> bool {
    let room = (limit as usize).saturating_sub(text.len());
    let fits = piece.len() <= room;
    text.extend_from_slice(&piece[..piece.len().min(room)]);
    fits
}
