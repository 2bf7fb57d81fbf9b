//! Tasks: what a valid task is, and the operations on tasks the routes share.
//!
//! [`validate`] turns the body of `POST /tasks` (and of `PATCH /tasks/{id}`, merged over the
//! current task by [`merge_patch`]) into a [`ValidatedTask`]: bounds first (cheap, before any
//! read), then the fields, then what must exist in the store (the project, its entry point, the
//! declared secrets and their grants). Nothing is written before all of it passed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use antcode_core::flow::{self, Link, LinkKind, Next};
use antcode_core::ids;
use antcode_core::model::{
    check_limit, ConcurrencyKey, NetworkPolicy, Preference, ProjectVersion, RetryPolicy, Role, Run,
    RunLimits, RunState, Schedule, Task, TaskSpec,
};
use antcode_core::params::{self, ParamSchema};
use antcode_core::retention::TaskRetention;
use antcode_core::store::{RunFilter, StoreError};
use antcode_core::time::{parse_rfc3339, to_rfc3339};

use super::{bad, name_taken};
use crate::auth;
use crate::bounds::{self, check_count, check_len};
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::AppState;

/// The longest `timeout_s`, `queue_timeout_s` and `retry.max_backoff_s`: 7 days.
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
pub const OVERLAP: &[&str] = &["allow", "skip", "queue_one", "cancel_previous"];
pub const MISFIRE: &[&str] = &["fire_once", "skip", "catch_up"];
/// The most `triggers_per_min` may say.
pub const MAX_TRIGGERS_PER_MIN: u32 = 6000;
/// What a masked env value reads as.
pub const MASKED: &str = "••••";

/// A task's parts as a user sent them, checked: what [`validate`] returns.
#[derive(Debug)]
pub struct ValidatedTask {
    pub name: String,
    pub project_id: String,
    pub spec: TaskSpec,
    pub schedule: Option<Schedule>,
    pub paused: bool,
}

fn default_timeout() -> u64 {
    TaskSpec::default().timeout_s
}

/// The body of `POST /tasks` (and, merged over the current task, of `PATCH`).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
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
    /// How long this task's ended runs are kept, over the global policy.
    #[serde(default)]
    retention: Option<TaskRetention>,
    /// The params its runs take.
    #[serde(default)]
    params: Option<ParamSchema>,
    /// The params its scheduled runs get.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schedule_params: Option<Map<String, Value>>,
    /// Most manual runs a minute.
    #[serde(default)]
    triggers_per_min: Option<u32>,
    /// Tasks its runs start when they end (`antcode_core::flow`).
    #[serde(default)]
    on_success: Vec<Next>,
    #[serde(default)]
    on_failure: Vec<Next>,
    #[serde(default)]
    on_complete: Vec<Next>,
    /// Fan-in: the tasks that must all succeed in a run group before it runs there.
    #[serde(default)]
    needs: Vec<String>,
    /// Runners to try first, for `fallback_s`.
    #[serde(default)]
    prefer: Option<Preference>,
    /// Most runs of the task leased at once.
    #[serde(default)]
    max_concurrency: Option<u32>,
    /// A concurrency key shared with other tasks, and its limit.
    #[serde(default)]
    concurrency: Option<ConcurrencyKey>,
}

/// A label map's bounds: how many, and each key's and value's length.
fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> ApiResult<()> {
    check_count(field, labels.len(), bounds::LABELS, "labels")?;
    for (k, v) in labels {
        check_len(field, k, bounds::LABEL_KEY_CHARS)?;
        check_len(&format!("{field}.{k}"), v, bounds::LABEL_VALUE_CHARS)?;
    }
    Ok(())
}

fn env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Arguments and environment variables, of a task or of one trigger's overrides: bounded,
/// without NUL, the names valid variable names.
pub fn check_command(args: &[String], env: &BTreeMap<String, String>) -> ApiResult<()> {
    check_count("args", args.len(), bounds::ARGS, "arguments")?;
    for (i, a) in args.iter().enumerate() {
        check_len(&format!("args[{i}]"), a, bounds::ARG_CHARS)?;
    }
    check_count("env", env.len(), bounds::ENV_VARS, "variables")?;
    for (k, v) in env {
        check_len("env", k, bounds::ENV_NAME_CHARS)?;
        check_len(&format!("env.{k}"), v, bounds::ENV_VALUE_CHARS)?;
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(bad("args", "arguments must not contain NUL"));
    }
    if let Some(k) = env.keys().find(|k| !env_name(k)) {
        return Err(bad("env", format!("{k:?} is not a valid variable name")));
    }
    if env.values().any(|v| v.contains('\0')) {
        return Err(bad("env", "values must not contain NUL"));
    }
    Ok(())
}

/// The bounds of [`crate::bounds`] on a task's fields, before anything else is looked at.
fn check_bounds(b: &TaskBody) -> ApiResult<()> {
    check_len("name", &b.name, bounds::NAME_CHARS)?;
    check_len("project_id", &b.project_id, bounds::NAME_CHARS)?;
    if let Some(ep) = &b.entrypoint {
        check_len("entrypoint", ep, bounds::ENTRYPOINT_CHARS)?;
    }
    check_command(&b.args, &b.env)?;
    check_count("public_env", b.public_env.len(), bounds::ENV_VARS, "names")?;
    check_count("secrets", b.secrets.len(), bounds::SECRETS, "secrets")?;
    for k in &b.secrets {
        check_len("secrets", k, antcode_core::secrets::MAX_NAME_LEN)?;
    }
    if let Some(q) = &b.queue {
        check_len("queue", q, bounds::QUEUE_CHARS)?;
    }
    check_labels("labels", &b.labels)?;
    if let Some(p) = &b.prefer {
        check_labels("prefer.labels", &p.labels)?;
        if p.labels.is_empty() || p.labels.keys().any(String::is_empty) {
            return Err(bad(
                "prefer.labels",
                "name at least one label, none with an empty key",
            ));
        }
        if !(1..=Preference::MAX_FALLBACK_S).contains(&p.fallback_s) {
            let max = Preference::MAX_FALLBACK_S;
            return Err(bad(
                "prefer.fallback_s",
                format!("must be between 1 and {max}"),
            ));
        }
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

/// Checks a body and turns it into the task's parts; its project must exist. The checks run in
/// a fixed order and the first failure is the answer.
pub async fn validate(state: &AppState, b: TaskBody) -> ApiResult<ValidatedTask> {
    check_bounds(&b)?;
    let name = b.name.trim().to_string();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(bad("name", "must be 1-100 printable characters"));
    }
    if let Some(r) = &b.retention {
        r.validate().map_err(Problem::bad_request)?;
    }
    if let Some(p) = &b.params {
        p.validate().map_err(Problem::bad_request)?;
    }
    if b.triggers_per_min
        .is_some_and(|n| !(1..=MAX_TRIGGERS_PER_MIN).contains(&n))
    {
        return Err(bad(
            "triggers_per_min",
            format!("must be between 1 and {MAX_TRIGGERS_PER_MIN}"),
        ));
    }
    check_concurrency(&b)?;
    if b.schedule_params.is_some() {
        // As a trigger's params are checked, so a schedule never fires runs a trigger could
        // not start.
        params::resolve(b.params.as_ref(), b.schedule_params.as_ref()).map_err(|errors| {
            let errors: Vec<String> = errors.iter().map(|e| format!("schedule_{e}")).collect();
            Problem::bad_request(errors.join("; "))
        })?;
    }
    let project_id = check_project(state, &b).await?;
    check_env(&b)?;
    check_secrets(state, &project_id, &b.secrets).await?;
    let (queue, overlap, misfire) = check_policies(&b)?;
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
        retention: b.retention.filter(|r| !r.is_empty()),
        params: b.params,
        schedule_params: b.schedule_params,
        triggers_per_min: b.triggers_per_min,
        on_success: b.on_success,
        on_failure: b.on_failure,
        on_complete: b.on_complete,
        needs: b.needs,
        prefer: b.prefer,
        max_concurrency: b.max_concurrency,
        concurrency: b.concurrency,
    };
    check_links(state, &spec).await?;
    Ok(ValidatedTask {
        name,
        project_id: b.project_id,
        spec,
        schedule: b.schedule,
        paused: b.paused,
    })
}

/// The links of `spec`: their shape, and that every task they name exists.
async fn check_links(state: &AppState, spec: &TaskSpec) -> ApiResult<()> {
    flow::check_links(spec).map_err(Problem::bad_request)?;
    for link in flow::links_of("", spec) {
        let (field, other) = match link.kind {
            LinkKind::Needs => ("needs", &link.from),
            kind => (kind.as_str(), &link.to),
        };
        if check_id(other, "task").is_err() {
            return Err(bad(field, format!("{other:?} is not a task id")));
        }
        match state.store.task(other).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(bad(field, format!("task {other} does not exist")))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `max_concurrency` and `concurrency`: a limit outside 1-10,000 or a key that is empty, past
/// 128 bytes or not printable is a 422 naming the field.
fn check_concurrency(b: &TaskBody) -> ApiResult<()> {
    let unprocessable = |detail: String| {
        Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-concurrency",
            detail,
        )
    };
    if let Some(n) = b.max_concurrency {
        check_limit("max_concurrency", n).map_err(unprocessable)?;
    }
    if let Some(c) = &b.concurrency {
        c.check().map_err(unprocessable)?;
    }
    Ok(())
}

/// Refuses `task`'s links if, with the others', they close a cycle (a chain that would never
/// end). A task that is new cannot close one: nothing links to it yet.
async fn check_acyclic(state: &AppState, task: &Task) -> ApiResult<()> {
    let mine = |l: &Link| {
        (l.from == task.id && l.kind != LinkKind::Needs)
            || (l.to == task.id && l.kind == LinkKind::Needs)
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let others = state.store.task_links().await?;
    let links = others.into_iter().filter(|l| !mine(l));
    for l in links.chain(flow::links_of(&task.id, &task.spec)) {
        edges.entry(l.from).or_default().insert(l.to);
    }
    match flow::find_cycle(&edges) {
        None => Ok(()),
        Some(cycle) => Err(Problem::bad_request(format!(
            "on_success/on_failure/on_complete/needs: these links close a cycle: {}",
            cycle.join(" → ")
        ))),
    }
}

/// The project of `b` and, if `b` names one, its entry point in the current version: the
/// project's id.
async fn check_project(state: &AppState, b: &TaskBody) -> ApiResult<String> {
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
    Ok(project.id)
}

/// Arguments, environment variables and the names of the declared secrets.
fn check_env(b: &TaskBody) -> ApiResult<()> {
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
    Ok(())
}

/// Declared secrets must exist now, so a typo fails here and not at the first run, and be
/// granted to the project: a run checks the grant again when its job is published.
async fn check_secrets(state: &AppState, project_id: &str, secrets: &[String]) -> ApiResult<()> {
    for k in secrets {
        match state.store.secret_for(k, project_id).await {
            Ok((_, true)) => {}
            Ok((_, false)) => {
                return Err(Problem::forbidden(format!(
                    "secrets: secret {k} is not granted to project {project_id}; an admin grants it with PUT /api/v1/secrets/{k}/grants",
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
    Ok(())
}

/// Queue, labels, timeouts, retries, overlap and misfire policies, priority, limits, network
/// and schedule: the queue and the policies, defaults filled in.
fn check_policies(b: &TaskBody) -> ApiResult<(String, String, String)> {
    let queue = b.queue.clone().unwrap_or_else(|| "default".into());
    // `check_bounds` has refused a name past `bounds::QUEUE_CHARS` already.
    if !super::workers::queue_name_ok(&queue) {
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
    let overlap = b
        .overlap
        .clone()
        .unwrap_or_else(|| TaskSpec::default().overlap);
    if !OVERLAP.contains(&overlap.as_str()) {
        return Err(bad(
            "overlap",
            format!("must be one of {}", OVERLAP.join(", ")),
        ));
    }
    let misfire = b
        .misfire
        .clone()
        .unwrap_or_else(|| TaskSpec::default().misfire);
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
        antcode_core::schedule::validate(schedule).map_err(schedule_err)?;
    }
    Ok((queue, overlap, misfire))
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

/// A task as a body of `POST /tasks`: what a `PATCH` is merged over.
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
        "retention": task.spec.retention,
        "params": task.spec.params,
        "schedule_params": task.spec.schedule_params,
        "triggers_per_min": task.spec.triggers_per_min,
        "on_success": task.spec.on_success,
        "on_failure": task.spec.on_failure,
        "on_complete": task.spec.on_complete,
        "needs": task.spec.needs,
        "prefer": task.spec.prefer,
        "max_concurrency": task.spec.max_concurrency,
        "concurrency": task.spec.concurrency,
    })
}

/// The body a `PATCH` of `before` stands for: its fields over the task's. `retry` and `limits`
/// merge field by field; everything else is replaced whole.
pub fn merge_patch(before: &Task, patch: Value) -> ApiResult<TaskBody> {
    super::merge_patch(body_of(before), patch, &["retry", "limits", "retention"])
}

/// Stores a new task made of `v`, created at `now`.
pub async fn create(state: &AppState, v: ValidatedTask, now: i64) -> ApiResult<Task> {
    let task = Task {
        id: ids::new_id(),
        name: v.name,
        project_id: v.project_id,
        next_fire_at: first_fire(&v.schedule, now, now),
        spec: v.spec,
        schedule: v.schedule,
        paused: v.paused,
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .create_task(&task)
        .await
        .map_err(name_taken("task", &task.name))?;
    Ok(task)
}

/// Stores `before` changed to `v` at `now`; a changed schedule fires next as a new one would.
pub async fn update(
    state: &AppState,
    before: &Task,
    v: ValidatedTask,
    now: i64,
) -> ApiResult<Task> {
    let mut task = before.clone();
    if v.schedule != task.schedule {
        task.next_fire_at = first_fire(&v.schedule, now, task.created_at);
    }
    task.name = v.name;
    task.project_id = v.project_id;
    task.spec = v.spec;
    task.schedule = v.schedule;
    task.paused = v.paused;
    task.updated_at = now;
    check_acyclic(state, &task).await?;
    state
        .store
        .update_task(&task)
        .await
        .map_err(name_taken("task", &task.name))?;
    Ok(task)
}

/// Pauses or resumes task `id`: the task before and after.
pub async fn set_paused(
    state: &AppState,
    id: &str,
    paused: bool,
    now: i64,
) -> ApiResult<(Task, Task)> {
    let before = load(state, id).await?;
    let mut task = before.clone();
    task.paused = paused;
    task.updated_at = now;
    state.store.update_task(&task).await?;
    Ok((before, task))
}

/// A task as a caller of `role` may see it: env values are write-only below the operator role
/// (names shown, values masked) unless the task lists the variable in `public_env`.
pub fn visible(role: Role, mut task: Task) -> Task {
    if auth::rank(role) < auth::rank(Role::Operator) {
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

pub async fn load(state: &AppState, id: &str) -> ApiResult<Task> {
    check_id(id, "task")?;
    state.store.task(id).await.map_err(named("task", id))
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

/// The first `max` tasks, in list order, that `hit` selects: what a delete of something tasks
/// refer to checks.
pub async fn tasks_where(
    state: &AppState,
    max: usize,
    hit: impl Fn(&Task) -> bool,
) -> ApiResult<Vec<Task>> {
    let mut found = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let page = state.store.list_tasks(500, cursor.as_deref()).await?;
        found.extend(page.items.into_iter().filter(|t| hit(t)));
        match page.next_cursor {
            Some(c) if found.len() < max => cursor = Some(c),
            _ => {
                found.truncate(max);
                return Ok(found);
            }
        }
    }
}

/// Counts by state and duration percentiles (p50, p95) of `runs`, the task's latest.
pub fn stats(task_id: &str, runs: &[Run]) -> Value {
    let mut counts: BTreeMap<&str, u64> = RunState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut durations: Vec<i64> = vec![];
    for r in runs {
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
    json!({
        "task_id": task_id,
        "runs": runs.len(),
        "counts": counts,
        "duration_ms_p50": pct(0.5),
        "duration_ms_p95": pct(0.95),
    })
}

/// The latest 1000 runs of task `id`, what [`stats`] counts.
pub async fn latest_runs(state: &AppState, id: &str) -> ApiResult<Vec<Run>> {
    let filter = RunFilter {
        task_id: Some(id.to_string()),
        ..RunFilter::default()
    };
    Ok(state.store.list_runs(&filter, 1000, None).await?.items)
}

/// The next five fire times of the task's schedule (empty without one) and the schedule in
/// words (None without one). The pending fire comes first, then the ones after it, exactly as
/// the scheduler will count them.
pub fn preview(task: &Task) -> ApiResult<(Vec<String>, Option<String>)> {
    let times = match (&task.schedule, task.next_fire_at) {
        (Some(s), Some(next)) => {
            let mut times = vec![next];
            times.extend(antcode_core::schedule::preview(s, next, next, 4).map_err(schedule_err)?);
            times
        }
        _ => vec![],
    };
    let description = match &task.schedule {
        Some(s) => Some(antcode_core::schedule::describe(s).map_err(schedule_err)?),
        None => None,
    };
    Ok((rfc3339_all(times), description))
}

/// The next five fire times of `schedule` from `now`, an interval counting from `anchor`
/// (RFC 3339; `now` when absent or empty), and the schedule in words.
pub fn try_schedule(
    schedule: &Schedule,
    anchor: Option<&str>,
    now: i64,
) -> ApiResult<(Vec<String>, String)> {
    let anchor = match anchor {
        None | Some("") => now,
        Some(a) => parse_rfc3339(a)
            .ok_or_else(|| bad("anchor", format!("{a:?} is not an RFC 3339 time")))?,
    };
    let times = antcode_core::schedule::preview(schedule, now, anchor, 5).map_err(schedule_err)?;
    let description = antcode_core::schedule::describe(schedule).map_err(schedule_err)?;
    Ok((rfc3339_all(times), description))
}

fn schedule_err(e: impl std::fmt::Display) -> Problem {
    Problem::bad_request(e.to_string())
}

fn rfc3339_all(times: Vec<i64>) -> Vec<String> {
    times.into_iter().map(to_rfc3339).collect()
}
