//! Row ⇄ struct mapping for [`super::sql::SqlStore`]. Kept apart so the queries stay readable.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{StoreError, StoreResult};
use crate::model::*;

pub const RUN_COLUMNS: &str = "id, task_id, project_id, project_version, state, attempt, \
    max_attempts, queue, run_trigger, lease_token, worker_id, exit_code, exit_signal, error, \
    duration_ms, peak_rss_kb, log_key, result, cancel_requested, due_at, queued_at, not_before, \
    started_at, finished_at";

pub const TASK_COLUMNS: &str =
    "id, name, project_id, spec, schedule, paused, next_fire_at, created_at, updated_at";

pub const VERSION_COLUMNS: &str =
    "project_id, version, bundle, entrypoint, requirements, python_version, files, created_at";

fn json<T: serde::de::DeserializeOwned>(raw: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model types always serialize")
}

pub fn user(row: &AnyRow) -> StoreResult<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

pub fn token(row: &AnyRow) -> StoreResult<ApiToken> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiToken {
        id: row.try_get("id")?,
        token_hash: row.try_get("token_hash")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        scopes: json(&scopes, "token scopes")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub fn project(row: &AnyRow) -> StoreResult<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        current_version: row.try_get("current_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn version(row: &AnyRow) -> StoreResult<ProjectVersion> {
    let bundle: String = row.try_get("bundle")?;
    let files: String = row.try_get("files")?;
    Ok(ProjectVersion {
        project_id: row.try_get("project_id")?,
        version: row.try_get("version")?,
        bundle: json(&bundle, "bundle")?,
        entrypoint: row.try_get("entrypoint")?,
        requirements: row.try_get("requirements")?,
        python_version: row.try_get("python_version")?,
        files: json(&files, "files")?,
        created_at: row.try_get("created_at")?,
    })
}

pub fn task(row: &AnyRow) -> StoreResult<Task> {
    let spec: String = row.try_get("spec")?;
    let schedule: Option<String> = row.try_get("schedule")?;
    Ok(Task {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        project_id: row.try_get("project_id")?,
        spec: json(&spec, "task spec")?,
        schedule: schedule.map(|s| json(&s, "schedule")).transpose()?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        next_fire_at: row.try_get("next_fire_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn run(row: &AnyRow) -> StoreResult<Run> {
    let state: String = row.try_get("state")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(Run {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        project_id: row.try_get("project_id")?,
        project_version: row.try_get("project_version")?,
        state: RunState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        queue: row.try_get("queue")?,
        trigger: row.try_get("run_trigger")?,
        lease_token: row.try_get("lease_token")?,
        worker_id: row.try_get("worker_id")?,
        exit_code: row.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
        signal: row.try_get::<Option<i64>, _>("exit_signal")?.map(|c| c as i32),
        error: row.try_get("error")?,
        duration_ms: row.try_get("duration_ms")?,
        peak_rss_kb: row.try_get("peak_rss_kb")?,
        log_key: row.try_get("log_key")?,
        result: result.map(|r| json(&r, "result")).transpose()?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        due_at: row.try_get("due_at")?,
        queued_at: row.try_get("queued_at")?,
        not_before: row.try_get("not_before")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

pub fn history(row: &AnyRow) -> StoreResult<RunHistoryEntry> {
    Ok(RunHistoryEntry {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        kind: row.try_get("kind")?,
        detail: row.try_get("detail")?,
        at: row.try_get("at")?,
    })
}

pub fn audit(row: &AnyRow) -> StoreResult<AuditEntry> {
    let before: Option<String> = row.try_get("before_value")?;
    let after: Option<String> = row.try_get("after_value")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        resource: row.try_get("resource")?,
        before: before.map(|b| json(&b, "audit before")).transpose()?,
        after: after.map(|a| json(&a, "audit after")).transpose()?,
        address: row.try_get("address")?,
        user_agent: row.try_get("user_agent")?,
        outcome: row.try_get("outcome")?,
    })
}
