//! Tasks: `POST /tasks`, `GET /tasks`, `GET|PATCH|DELETE /tasks/{id}`,
//! `POST /tasks/{id}/pause|resume|trigger|invoke`, `GET /tasks/{id}/stats`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use antcode_core::broker::changed;
use antcode_core::dispatch::{publish_job, PublishError};
use antcode_core::ids;
use antcode_core::model::{
    NetworkPolicy, ProjectVersion, RetryPolicy, Role, Run, RunLimits, RunState, Schedule, Task,
    TaskSpec,
};
use antcode_core::store::{NewRun, RunFilter, StoreError};
use antcode_core::time::{now_ms, parse_rfc3339};

use super::{created, no_content, ok, JsonBody, LateJson, PageQuery, P, Q};
use crate::audit::{self, to_value};
use crate::auth::{self, Ctx};
use crate::bounds::{self, check_count, check_len};
use crate::metrics;
use crate::problem::{check_id, named, parse_json, ApiResult, Problem};
use crate::AppState;

pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
pub const OVERLAP: &[&str] = &["allow", "skip", "queue_one", "cancel_previous"];
pub const MISFIRE: &[&str] = &["fire_once", "skip", "catch_up"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(list).post(create))
        .route("/tasks/{id}", get(show).patch(update).delete(remove))
        .route("/tasks/{id}/pause", post(pause))
        .route("/tasks/{id}/resume", post(resume))
        .route("/tasks/{id}/trigger", post(trigger))
        .route("/tasks/{id}/invoke", post(invoke))
        .route("/tasks/{id}/stats", get(stats))
        .route("/tasks/{id}/preview", get(preview))
        .route("/schedules/validate", post(validate_schedule))
}

fn default_timeout() -> u64 {
    TaskSpec::default().timeout_s
}

/// The body of `POST /tasks` (and, merged over the current task, of `PATCH`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskBody {
    name: String,
    project_id: String,
    #[serde(default)]
    entrypoint: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    public_env: Vec<String>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default)]
    paused: bool,
    #[serde(default = "default_timeout")]
    timeout_s: u64,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    overlap: Option<String>,
    #[serde(default)]
    misfire: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    queue_timeout_s: u64,
    #[serde(default)]
    warm: bool,
    #[serde(default)]
    limits: RunLimits,
    #[serde(default)]
    network: NetworkPolicy,
}

fn env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The bounds of [`crate::bounds`] on a task's fields, before anything else is looked at.
fn check_bounds(b: &TaskBody) -> ApiResult<()> {
    check_len("name", &b.name, bounds::NAME_CHARS)?;
    check_len("project_id", &b.project_id, bounds::NAME_CHARS)?;
    if let Some(ep) = &b.entrypoint {
        check_len("entrypoint", ep, bounds::ENTRYPOINT_CHARS)?;
    }
    check_count("args", b.args.len(), bounds::ARGS, "arguments")?;
    for (i, a) in b.args.iter().enumerate() {
        check_len(&format!("args[{i}]"), a, bounds::ARG_CHARS)?;
    }
    check_count("env", b.env.len(), bounds::ENV_VARS, "variables")?;
    for (k, v) in &b.env {
        check_len("env", k, bounds::ENV_NAME_CHARS)?;
        check_len(&format!("env.{k}"), v, bounds::ENV_VALUE_CHARS)?;
    }
    check_count("public_env", b.public_env.len(), bounds::ENV_VARS, "names")?;
    check_count("secrets", b.secrets.len(), bounds::SECRETS, "secrets")?;
    for k in &b.secrets {
        check_len("secrets", k, antcode_core::secrets::MAX_NAME_LEN)?;
    }
    if let Some(q) = &b.queue {
        check_len("queue", q, bounds::QUEUE_CHARS)?;
    }
    check_count("labels", b.labels.len(), bounds::LABELS, "labels")?;
    for (k, v) in &b.labels {
        check_len("labels", k, bounds::LABEL_KEY_CHARS)?;
        check_len(&format!("labels.{k}"), v, bounds::LABEL_VALUE_CHARS)?;
    }
    match &b.schedule {
        Some(Schedule::Cron { cron, timezone }) => {
            check_len("schedule.cron", cron, bounds::CRON_CHARS)?;
            check_len("schedule.timezone", timezone, bounds::TIMEZONE_CHARS)?;
        }
        Some(Schedule::Once { at }) => check_len("schedule.at", at, bounds::TIME_CHARS)?,
        Some(Schedule::Interval { start, end, .. }) => {
            for (field, t) in [("schedule.start", start), ("schedule.end", end)] {
                check_len(field, t.as_deref().unwrap_or(""), bounds::TIME_CHARS)?;
            }
        }
        None => {}
    }
    if let NetworkPolicy::Allow(entries) = &b.network {
        check_count(
            "network.allow",
            entries.len(),
            NetworkPolicy::MAX_ALLOW,
            "entries",
        )?;
        for e in entries {
            check_len("network.allow", e, NetworkPolicy::MAX_ENTRY_CHARS)?;
        }
    }
    for (field, v) in [("overlap", &b.overlap), ("misfire", &b.misfire)] {
        if let Some(v) = v {
            check_len(field, v, bounds::QUEUE_CHARS)?;
        }
    }
    Ok(())
}

fn bad(field: &str, why: impl std::fmt::Display) -> Problem {
    Problem::bad_request(format!("{field}: {why}"))
}

/// Checks a body and turns it into the task's parts; `project` must exist.
async fn validate(
    state: &AppState,
    b: TaskBody,
) -> ApiResult<(String, String, TaskSpec, Option<Schedule>, bool)> {
    check_bounds(&b)?;
    let name = b.name.trim().to_string();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(bad("name", "must be 1-100 printable characters"));
    }
    if !ids::is_valid_id(&b.project_id) {
        return Err(Problem::not_found(format!(
            "project_id: project {:?} not found",
            b.project_id
        )));
    }
    let project = state
        .store
        .project(&b.project_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                Problem::not_found(format!("project_id: project {} not found", b.project_id))
            }
            other => other.into(),
        })?;
    if let Some(ep) = &b.entrypoint {
        let version = state
            .store
            .version(&project.id, project.current_version)
            .await?;
        if !version.files.iter().any(|f| f == ep) {
            return Err(bad(
                "entrypoint",
                format!("{ep:?} is not in the project's current version"),
            ));
        }
    }
    if b.args.iter().any(|a| a.contains('\0')) {
        return Err(bad("args", "arguments must not contain NUL"));
    }
    if let Some(k) = b.env.keys().find(|k| !env_name(k)) {
        return Err(bad("env", format!("{k:?} is not a valid variable name")));
    }
    if b.env.values().any(|v| v.contains('\0')) {
        return Err(bad("env", "values must not contain NUL"));
    }
    if let Some(k) = b.public_env.iter().find(|k| !b.env.contains_key(*k)) {
        return Err(bad("public_env", format!("{k:?} is not a variable of env")));
    }
    if let Some(k) = b
        .secrets
        .iter()
        .find(|k| !antcode_core::secrets::valid_name(k))
    {
        return Err(bad("secrets", format!("{k:?} is not a valid secret name")));
    }
    // Declared secrets must exist now, so a typo fails here and not at the first run, and be
    // granted to the project: a run checks the grant again when its job is published.
    for k in &b.secrets {
        match state.store.secret_for(k, &project.id).await {
            Ok((_, true)) => {}
            Ok((_, false)) => {
                return Err(Problem::forbidden(format!(
                    "secrets: secret {k} is not granted to project {}; an admin grants it with PUT /api/v1/secrets/{k}/grants",
                    project.id
                )))
            }
            Err(StoreError::NotFound) => {
                return Err(bad(
                    "secrets",
                    format!("secret {k} is not defined; create it with PUT /api/v1/secrets/{k}"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let queue = b.queue.unwrap_or_else(|| "default".into());
    let queue_ok = !queue.is_empty()
        && queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !queue_ok {
        return Err(bad(
            "queue",
            "must be 1-64 characters of letters, digits and . _ -",
        ));
    }
    if b.labels.keys().any(String::is_empty) {
        return Err(bad("labels", "keys must not be empty"));
    }
    if !(1..=MAX_TIMEOUT_S).contains(&b.timeout_s) {
        return Err(bad(
            "timeout_s",
            format!("must be between 1 and {MAX_TIMEOUT_S} (7 days)"),
        ));
    }
    if !(1..=100).contains(&b.retry.max_attempts) {
        return Err(bad("retry.max_attempts", "must be between 1 and 100"));
    }
    if b.retry.backoff_s > 86_400 || b.retry.max_backoff_s > MAX_TIMEOUT_S {
        return Err(bad(
            "retry",
            "backoff_s at most 1 day, max_backoff_s at most 7 days",
        ));
    }
    let overlap = b.overlap.unwrap_or_else(|| TaskSpec::default().overlap);
    if !OVERLAP.contains(&overlap.as_str()) {
        return Err(bad(
            "overlap",
            format!("must be one of {}", OVERLAP.join(", ")),
        ));
    }
    let misfire = b.misfire.unwrap_or_else(|| TaskSpec::default().misfire);
    if !MISFIRE.contains(&misfire.as_str()) {
        return Err(bad(
            "misfire",
            format!("must be one of {}", MISFIRE.join(", ")),
        ));
    }
    if b.queue_timeout_s > MAX_TIMEOUT_S {
        return Err(bad(
            "queue_timeout_s",
            "must be at most 7 days (0 = no limit)",
        ));
    }
    if !(-1000..=1000).contains(&b.priority) {
        return Err(bad("priority", "must be between -1000 and 1000"));
    }
    b.limits.check().map_err(Problem::bad_request)?;
    b.network.check().map_err(Problem::bad_request)?;
    if let Some(schedule) = &b.schedule {
        antcode_core::schedule::validate(schedule)
            .map_err(|e| Problem::bad_request(e.to_string()))?;
    }
    let spec = TaskSpec {
        entrypoint: b.entrypoint,
        args: b.args,
        env: b.env,
        public_env: b.public_env,
        secrets: b.secrets,
        queue,
        labels: b.labels,
        timeout_s: b.timeout_s,
        retry: b.retry,
        overlap,
        misfire,
        priority: b.priority,
        queue_timeout_s: b.queue_timeout_s,
        warm: b.warm,
        limits: b.limits,
        network: b.network,
    };
    Ok((name, b.project_id, spec, b.schedule, b.paused))
}

/// The schedule's first fire time. A `once` in the past is due at once (the scheduler's misfire
/// policy decides what that means); the others count from `anchor` (the task's creation).
fn first_fire(schedule: &Option<Schedule>, now: i64, anchor: i64) -> Option<i64> {
    match schedule {
        None => None,
        Some(Schedule::Once { at }) => parse_rfc3339(at),
        Some(s) => antcode_core::schedule::next_after(s, now, anchor)
            .ok()
            .flatten(),
    }
}

fn body_of(task: &Task) -> Value {
    json!({
        "name": task.name,
        "project_id": task.project_id,
        "entrypoint": task.spec.entrypoint,
        "args": task.spec.args,
        "env": task.spec.env,
        "public_env": task.spec.public_env,
        "secrets": task.spec.secrets,
        "queue": task.spec.queue,
        "labels": task.spec.labels,
        "schedule": task.schedule,
        "paused": task.paused,
        "timeout_s": task.spec.timeout_s,
        "retry": task.spec.retry,
        "overlap": task.spec.overlap,
        "misfire": task.spec.misfire,
        "priority": task.spec.priority,
        "queue_timeout_s": task.spec.queue_timeout_s,
        "warm": task.spec.warm,
        "limits": task.spec.limits,
        "network": task.spec.network,
    })
}

async fn create(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.create", "").await?;
    let body: TaskBody = raw.parse()?;
    let (name, project_id, spec, schedule, paused) = validate(&ctx.state, body).await?;
    let now = now_ms();
    let task = Task {
        id: ids::new_id(),
        name,
        project_id,
        next_fire_at: first_fire(&schedule, now, now),
        spec,
        schedule,
        paused,
        created_at: now,
        updated_at: now,
    };
    ctx.state
        .store
        .create_task(&task)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                Problem::conflict(format!("a task named {:?} already exists", task.name))
            }
            other => other.into(),
        })?;
    audit::record(&ctx, "task.create", &task.id, None, to_value(&task), "ok").await;
    Ok(created(task))
}

/// What a masked env value reads as.
pub const MASKED: &str = "••••";

/// A task as `ctx` may see it: env values are write-only below the operator role (names shown,
/// values masked) unless the task lists the variable in `public_env`.
fn visible(ctx: &Ctx, mut task: Task) -> Task {
    if auth::rank(ctx.who.role) < auth::rank(Role::Operator) {
        let public = std::mem::take(&mut task.spec.public_env);
        for (name, value) in task.spec.env.iter_mut() {
            if !public.contains(name) {
                *value = MASKED.to_string();
            }
        }
        task.spec.public_env = public;
    }
    task
}

async fn list(ctx: Ctx, Q(page): Q<PageQuery>) -> ApiResult<Response> {
    let mut page = ctx
        .state
        .store
        .list_tasks(page.limit()?, page.cursor()?)
        .await?;
    page.items = page.items.into_iter().map(|t| visible(&ctx, t)).collect();
    Ok(ok(page))
}

pub async fn load(state: &AppState, id: &str) -> ApiResult<Task> {
    check_id(id, "task")?;
    state.store.task(id).await.map_err(named("task", id))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let task = load(&ctx.state, &id).await?;
    Ok(ok(visible(&ctx, task)))
}

async fn update(
    ctx: Ctx,
    P(id): P<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.update", &id).await?;
    let before = load(&ctx.state, &id).await?;
    let Value::Object(patch) = patch else {
        return Err(Problem::bad_request(
            "the body must be a JSON object of fields to change",
        ));
    };
    let mut merged = body_of(&before);
    for (k, v) in patch {
        // `retry` and `limits` merge field by field; everything else is replaced whole.
        match (k.as_str(), &mut merged[k.as_str()], v) {
            ("retry" | "limits", Value::Object(cur), Value::Object(new)) => cur.extend(new),
            (_, _, v) => merged[k.as_str()] = v,
        }
    }
    let raw = serde_json::to_vec(&merged).map_err(Problem::internal)?;
    let body: TaskBody = parse_json(&raw)?;
    let (name, project_id, spec, schedule, paused) = validate(&ctx.state, body).await?;
    let mut task = before.clone();
    if schedule != task.schedule {
        task.next_fire_at = first_fire(&schedule, now_ms(), task.created_at);
    }
    task.name = name;
    task.project_id = project_id;
    task.spec = spec;
    task.schedule = schedule;
    task.paused = paused;
    task.updated_at = now_ms();
    ctx.state
        .store
        .update_task(&task)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                Problem::conflict(format!("a task named {:?} already exists", task.name))
            }
            other => other.into(),
        })?;
    audit::record(
        &ctx,
        "task.update",
        &id,
        to_value(&before),
        to_value(&task),
        "ok",
    )
    .await;
    Ok(ok(task))
}

async fn remove(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.delete", &id).await?;
    let before = load(&ctx.state, &id).await?;
    ctx.state.store.delete_task(&id).await?;
    audit::record(&ctx, "task.delete", &id, to_value(&before), None, "ok").await;
    Ok(no_content())
}

async fn set_paused(ctx: Ctx, id: String, paused: bool) -> ApiResult<Response> {
    let action = if paused { "task.pause" } else { "task.resume" };
    ctx.require(Role::Operator, action, &id).await?;
    let before = load(&ctx.state, &id).await?;
    let mut task = before.clone();
    task.paused = paused;
    task.updated_at = now_ms();
    ctx.state.store.update_task(&task).await?;
    audit::record(&ctx, action, &id, to_value(&before), to_value(&task), "ok").await;
    Ok(ok(task))
}

async fn pause(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    set_paused(ctx, id, true).await
}

async fn resume(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    set_paused(ctx, id, false).await
}

/// The task and its project's current version, for a new run of it: one read.
pub async fn load_for_run(state: &AppState, id: &str) -> ApiResult<(Task, ProjectVersion)> {
    check_id(id, "task")?;
    let (task, version) = state
        .store
        .task_with_current_version(id)
        .await
        .map_err(named("task", id))?;
    let version = version.ok_or_else(|| {
        Problem::conflict(format!(
            "the task's project {} no longer exists",
            task.project_id
        ))
    })?;
    Ok((task, version))
}

/// Creates a queued run of `version` (the task's project's current one) and publishes its job.
/// If the broker is down the run stays queued in SQL, where compensation re-publishes it.
pub async fn start_run(
    state: &AppState,
    task: &Task,
    version: ProjectVersion,
    trigger: &str,
) -> ApiResult<Run> {
    let (run, job) = state
        .store
        .create_run(&NewRun {
            task: task.clone(),
            version,
            trigger: trigger.into(),
            due_at: None,
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

async fn trigger(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.trigger", &id).await?;
    let (task, version) = load_for_run(&ctx.state, &id).await?;
    let run = start_run(&ctx.state, &task, version, "manual").await?;
    audit::record(&ctx, "task.trigger", &id, None, to_value(&run), "ok").await;
    Ok(created(run))
}

#[derive(Deserialize)]
struct InvokeQuery {
    wait_s: Option<u64>,
}

/// Most bytes of a run's log an `invoke` answer carries as `output`; the whole log is at
/// `GET /runs/{id}/logs`.
pub const MAX_INVOKE_OUTPUT: u64 = 1024 * 1024;

/// Serverless-style call: trigger, wait up to `wait_s` (default 30, at most 300) for the run to
/// end, then answer 200 with the run, its `result` and its log as `output` (its first
/// [`MAX_INVOKE_OUTPUT`] bytes, `output_truncated` saying whether it was cut); else 202 with the
/// run.
async fn invoke(ctx: Ctx, P(id): P<String>, Q(q): Q<InvokeQuery>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.invoke", &id).await?;
    let wait = q.wait_s.unwrap_or(30);
    if wait > 300 {
        return Err(bad("wait_s", "must be at most 300"));
    }
    let (task, version) = load_for_run(&ctx.state, &id).await?;
    // Watch before the run exists, so no announcement of it can be missed.
    let mut changes = ctx.state.broker.watch_changes();
    let mut run = start_run(&ctx.state, &task, version, "invoke").await?;
    audit::record(&ctx, "task.invoke", &id, None, to_value(&run), "ok").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    while !run.state.is_terminal() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = ctx.state.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {}
            // Announced by the recorder; the fallback re-read covers a lost announcement.
            _ = changed(&mut changes, &run.id, Duration::from_millis(250)) => {}
        }
        run = ctx.state.store.run(&run.id).await?;
    }
    if !run.state.is_terminal() {
        return Ok((StatusCode::ACCEPTED, Json(run)).into_response());
    }
    let (output, cut) = super::runs::log_text(&ctx.state, &run, MAX_INVOKE_OUTPUT).await?;
    let mut body = serde_json::to_value(&run).map_err(Problem::internal)?;
    body["output"] = json!(output);
    body["output_truncated"] = json!(cut);
    Ok(ok(body))
}

/// Counts by state and duration percentiles over the task's latest 1000 runs.
async fn stats(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    load(&ctx.state, &id).await?;
    let filter = RunFilter {
        task_id: Some(id.clone()),
        ..RunFilter::default()
    };
    let page = ctx.state.store.list_runs(&filter, 1000, None).await?;
    let mut counts: BTreeMap<&str, u64> = RunState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut durations: Vec<i64> = vec![];
    for r in &page.items {
        *counts.entry(r.state.as_str()).or_default() += 1;
        if let Some(d) = r.duration_ms {
            durations.push(d);
        }
    }
    durations.sort_unstable();
    let pct = |p: f64| -> Option<i64> {
        if durations.is_empty() {
            return None;
        }
        let idx = ((durations.len() as f64 - 1.0) * p).round() as usize;
        durations.get(idx).copied()
    };
    Ok(ok(json!({
        "task_id": id,
        "runs": page.items.len(),
        "counts": counts,
        "duration_ms_p50": pct(0.5),
        "duration_ms_p95": pct(0.95),
    })))
}

/// The next five fire times of the task's schedule (empty without one), and the schedule in
/// words (null without one).
async fn preview(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let task = load(&ctx.state, &id).await?;
    // The pending fire first, then the ones after it, exactly as the scheduler will count them.
    let times = match (&task.schedule, task.next_fire_at) {
        (Some(s), Some(next)) => {
            let mut times = vec![next];
            times.extend(
                antcode_core::schedule::preview(s, next, next, 4)
                    .map_err(|e| Problem::bad_request(e.to_string()))?,
            );
            times
        }
        _ => vec![],
    };
    let description = match &task.schedule {
        Some(s) => Some(
            antcode_core::schedule::describe(s).map_err(|e| Problem::bad_request(e.to_string()))?,
        ),
        None => None,
    };
    Ok(ok(
        json!({"task_id": id, "paused": task.paused, "description": description,
        "next": rfc3339_all(times)}),
    ))
}

fn rfc3339_all(times: Vec<i64>) -> Vec<String> {
    times
        .into_iter()
        .map(antcode_core::time::to_rfc3339)
        .collect()
}

#[derive(Deserialize)]
struct ValidateQuery {
    /// When an interval starts counting (RFC 3339): a task's creation when editing it; now when
    /// absent or empty.
    anchor: Option<String>,
}

/// `POST /schedules/validate[?anchor=RFC3339]`: 200 with the next five fire times from now and
/// the schedule in words (`description`), or 400 naming the offending field. The UI's schedule builder calls it as you type.
async fn validate_schedule(
    ctx: Ctx,
    Q(q): Q<ValidateQuery>,
    JsonBody(schedule): JsonBody<Schedule>,
) -> ApiResult<Response> {
    ctx.require(Role::Viewer, "schedule.validate", "").await?;
    let now = now_ms();
    let anchor = match q.anchor.as_deref() {
        None | Some("") => now,
        Some(a) => parse_rfc3339(a)
            .ok_or_else(|| bad("anchor", format!("{a:?} is not an RFC 3339 time")))?,
    };
    let times = antcode_core::schedule::preview(&schedule, now, anchor, 5)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let description = antcode_core::schedule::describe(&schedule)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    Ok(ok(
        json!({"valid": true, "schedule": schedule, "description": description,
        "next": rfc3339_all(times)}),
    ))
}
