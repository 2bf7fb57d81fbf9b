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

/// Reads a text column. MySQL/MariaDB report `TEXT`/`LONGTEXT` as `BLOB` through sqlx `Any`, so
/// a string that arrives as bytes is accepted when it is valid UTF-8.
pub fn opt_text(row: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    match row.try_get::<Option<String>, _>(col) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let bytes: Option<Vec<u8>> = row.try_get(col)?;
            bytes
                .map(|b| {
                    String::from_utf8(b)
                        .map_err(|_| StoreError::Corrupt(format!("{col}: not UTF-8")))
                })
                .transpose()
        }
        Err(e) => Err(e.into()),
    }
}

pub fn text(row: &AnyRow, col: &str) -> StoreResult<String> {
    opt_text(row, col)?.ok_or_else(|| StoreError::Corrupt(format!("{col} is NULL")))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model types always serialize")
}

pub fn user(row: &AnyRow) -> StoreResult<User> {
    let role = text(row, "role")?;
    Ok(User {
        id: text(row, "id")?,
        username: text(row, "username")?,
        password_hash: text(row, "password_hash")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        generation: row.try_get("generation")?,
    })
}

pub fn token(row: &AnyRow) -> StoreResult<ApiToken> {
    let scopes = text(row, "scopes")?;
    Ok(ApiToken {
        id: text(row, "id")?,
        token_hash: text(row, "token_hash")?,
        user_id: text(row, "user_id")?,
        name: text(row, "name")?,
        kind: text(row, "kind")?,
        scopes: json(&scopes, "token scopes")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        generation: row.try_get("generation")?,
    })
}

pub fn project(row: &AnyRow) -> StoreResult<Project> {
    Ok(Project {
        id: text(row, "id")?,
        name: text(row, "name")?,
        description: text(row, "description")?,
        current_version: row.try_get("current_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn version(row: &AnyRow) -> StoreResult<ProjectVersion> {
    version_as(row, "")
}

/// A version whose columns carry `prefix` (`v_bundle`, …), as a join that also returns another
/// table's columns names them.
pub fn version_as(row: &AnyRow, prefix: &str) -> StoreResult<ProjectVersion> {
    let col = |name: &'static str| -> std::borrow::Cow<'static, str> {
        if prefix.is_empty() {
            name.into()
        } else {
            format!("{prefix}{name}").into()
        }
    };
    let bundle = text(row, &col("bundle"))?;
    let files = text(row, &col("files"))?;
    Ok(ProjectVersion {
        project_id: text(row, &col("project_id"))?,
        version: row.try_get(&*col("version"))?,
        bundle: json(&bundle, "bundle")?,
        entrypoint: text(row, &col("entrypoint"))?,
        requirements: text(row, &col("requirements"))?,
        python_version: opt_text(row, &col("python_version"))?,
        files: json(&files, "files")?,
        created_at: row.try_get(&*col("created_at"))?,
    })
}

pub fn task(row: &AnyRow) -> StoreResult<Task> {
    let spec = text(row, "spec")?;
    let schedule = opt_text(row, "schedule")?;
    Ok(Task {
        id: text(row, "id")?,
        name: text(row, "name")?,
        project_id: text(row, "project_id")?,
        spec: json(&spec, "task spec")?,
        schedule: schedule.map(|s| json(&s, "schedule")).transpose()?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        next_fire_at: row.try_get("next_fire_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn run(row: &AnyRow) -> StoreResult<Run> {
    let state = text(row, "state")?;
    let result = opt_text(row, "result")?;
    Ok(Run {
        id: text(row, "id")?,
        task_id: text(row, "task_id")?,
        project_id: text(row, "project_id")?,
        project_version: row.try_get("project_version")?,
        state: RunState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        queue: text(row, "queue")?,
        trigger: text(row, "run_trigger")?,
        lease_token: opt_text(row, "lease_token")?,
        worker_id: opt_text(row, "worker_id")?,
        exit_code: row
            .try_get::<Option<i64>, _>("exit_code")?
            .map(|c| c as i32),
        signal: row
            .try_get::<Option<i64>, _>("exit_signal")?
            .map(|c| c as i32),
        error: opt_text(row, "error")?,
        duration_ms: row.try_get("duration_ms")?,
        peak_rss_kb: row.try_get("peak_rss_kb")?,
        log_key: opt_text(row, "log_key")?,
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
        id: text(row, "id")?,
        run_id: text(row, "run_id")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        kind: text(row, "kind")?,
        detail: text(row, "detail")?,
        at: row.try_get("at")?,
    })
}

pub fn audit(row: &AnyRow) -> StoreResult<AuditEntry> {
    let before = opt_text(row, "before_value")?;
    let after = opt_text(row, "after_value")?;
    Ok(AuditEntry {
        id: text(row, "id")?,
        at: row.try_get("at")?,
        actor: text(row, "actor")?,
        action: text(row, "action")?,
        resource: text(row, "resource")?,
        before: before.map(|b| json(&b, "audit before")).transpose()?,
        after: after.map(|a| json(&a, "audit after")).transpose()?,
        address: text(row, "address")?,
        user_agent: text(row, "user_agent")?,
        outcome: text(row, "outcome")?,
    })
}

pub fn worker_key(row: &AnyRow) -> StoreResult<WorkerKey> {
    Ok(WorkerKey {
        id: text(row, "id")?,
        key_hash: text(row, "key_hash")?,
        note: text(row, "note")?,
        queues: json(&text(row, "queues")?, "worker key queues")?,
        labels: json(&text(row, "labels")?, "worker key labels")?,
        created_by: text(row, "created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        used_by: opt_text(row, "used_by")?,
    })
}

pub fn worker_record(row: &AnyRow) -> StoreResult<WorkerRecord> {
    Ok(WorkerRecord {
        id: text(row, "id")?,
        name: text(row, "name")?,
        mode: text(row, "mode")?,
        queues: json(&text(row, "queues")?, "worker queues")?,
        labels: json(&text(row, "labels")?, "worker labels")?,
        api_key_hash: opt_text(row, "api_key_hash")?,
        cert_fingerprint: opt_text(row, "cert_fingerprint")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}
