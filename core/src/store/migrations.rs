//! Schema migrations, written once with type placeholders and rendered per dialect.
//!
//! `schema_version` holds one row per applied migration. Applying is idempotent; a database that
//! has migrations this binary does not know refuses to start (`StoreError::SchemaTooNew`).
//! `SqlStore::connect` applies them under a lock, so processes starting together migrate once:
//! an advisory lock on PostgreSQL, `GET_LOCK` on MySQL/MariaDB, `BEGIN IMMEDIATE` on SQLite.
//! A migration that rewrites data in Rust does so in [`rewrite_data`], after its statements and
//! in one transaction with its `schema_version` row, so it is applied once or not at all.

use sqlx::{AnyConnection, Row};

use super::sql::Dialect;
use super::StoreResult;

/// Each entry is a list of statements. Placeholders: `{id}` short keys, `{name}` indexed strings,
/// `{text}` unbounded text, `{big}` 64-bit integers.
pub const MIGRATIONS: &[&[&str]] = &[
    // 1: the core entities.
    &[
        "CREATE TABLE users (
        id {id} PRIMARY KEY, username {name} NOT NULL UNIQUE, password_hash {text} NOT NULL,
        role {id} NOT NULL, disabled {big} NOT NULL DEFAULT 0, created_at {big} NOT NULL)",
        "CREATE TABLE tokens (
        id {id} PRIMARY KEY, token_hash {id} NOT NULL UNIQUE, user_id {id} NOT NULL,
        name {name} NOT NULL, kind {id} NOT NULL, scopes {text} NOT NULL,
        created_at {big} NOT NULL, expires_at {big} NOT NULL)",
        "CREATE INDEX tokens_user ON tokens (user_id)",
        "CREATE TABLE projects (
        id {id} PRIMARY KEY, name {name} NOT NULL UNIQUE, description {text} NOT NULL,
        current_version {big} NOT NULL, created_at {big} NOT NULL, updated_at {big} NOT NULL)",
        "CREATE TABLE project_versions (
        project_id {id} NOT NULL, version {big} NOT NULL, bundle {text} NOT NULL,
        entrypoint {name} NOT NULL, requirements {text} NOT NULL, python_version {id},
        files {text} NOT NULL, created_at {big} NOT NULL, PRIMARY KEY (project_id, version))",
        "CREATE TABLE tasks (
        id {id} PRIMARY KEY, name {name} NOT NULL UNIQUE, project_id {id} NOT NULL,
        spec {text} NOT NULL, schedule {text}, paused {big} NOT NULL DEFAULT 0,
        next_fire_at {big}, created_at {big} NOT NULL, updated_at {big} NOT NULL)",
        "CREATE INDEX tasks_due ON tasks (next_fire_at)",
        "CREATE TABLE runs (
        id {id} PRIMARY KEY, task_id {id} NOT NULL, project_id {id} NOT NULL,
        project_version {big} NOT NULL, state {id} NOT NULL, attempt {big} NOT NULL,
        max_attempts {big} NOT NULL, retry {text} NOT NULL, queue {name} NOT NULL,
        run_trigger {id} NOT NULL, job {text} NOT NULL, lease_token {id}, worker_id {id},
        exit_code {big}, exit_signal {big}, error {text}, duration_ms {big}, peak_rss_kb {big},
        log_key {name}, result {text}, cancel_requested {big} NOT NULL DEFAULT 0, due_at {big},
        queued_at {big} NOT NULL, not_before {big}, started_at {big}, finished_at {big})",
        "CREATE UNIQUE INDEX runs_one_fire ON runs (task_id, due_at)",
        "CREATE INDEX runs_state ON runs (state, not_before)",
        "CREATE INDEX runs_task ON runs (task_id, id)",
        "CREATE TABLE run_history (
        id {id} PRIMARY KEY, run_id {id} NOT NULL, attempt {big} NOT NULL, kind {id} NOT NULL,
        detail {text} NOT NULL, at {big} NOT NULL)",
        "CREATE INDEX run_history_run ON run_history (run_id, id)",
        "CREATE TABLE audit (
        id {id} PRIMARY KEY, at {big} NOT NULL, actor {name} NOT NULL, action {name} NOT NULL,
        resource {name} NOT NULL, before_value {text}, after_value {text}, address {name} NOT NULL,
        user_agent {text} NOT NULL, outcome {id} NOT NULL)",
    ],
    // 2: worker identity — one-time enrollment keys and the credentials they are traded for.
    &[
        "CREATE TABLE worker_keys (
        id {id} PRIMARY KEY, key_hash {id} NOT NULL UNIQUE, note {name} NOT NULL,
        queues {text} NOT NULL, labels {text} NOT NULL, created_by {name} NOT NULL,
        created_at {big} NOT NULL, expires_at {big} NOT NULL, used_at {big}, used_by {id})",
        "CREATE TABLE workers (
        id {id} PRIMARY KEY, name {name} NOT NULL, mode {id} NOT NULL, queues {text} NOT NULL,
        labels {text} NOT NULL, api_key_hash {id} UNIQUE, cert_fingerprint {id} UNIQUE,
        revoked {big} NOT NULL DEFAULT 0, created_at {big} NOT NULL, last_seen_at {big})",
    ],
    // 3: task secrets, sealed with an AEAD under the cluster's secret key.
    &["CREATE TABLE secrets (
        name {name} PRIMARY KEY, sealed {text} NOT NULL, created_at {big} NOT NULL,
        updated_at {big} NOT NULL, updated_by {name} NOT NULL)"],
    // 4: the highest scheduler fencing token a write was accepted under, per lock.
    &["CREATE TABLE fences (name {name} PRIMARY KEY, token {big} NOT NULL)"],
    // 5: queue timeouts — a run not started within this long after it became due fails `expired`.
    &["ALTER TABLE runs ADD COLUMN queue_timeout_ms {big} NOT NULL DEFAULT 0"],
    // 6: due tasks are read in `(next_fire_at, id)` order, each batch after the last one's key.
    &[
        "CREATE INDEX tasks_due_key ON tasks (next_fire_at, id)",
        "DROP INDEX tasks_due ON tasks",
    ],
    // 7: compensation's reads of queued runs stop after their own rows, whatever the planner's
    // statistics say. `queue_deadline` is when a queued run expires (`not_before +
    // queue_timeout_ms`, NULL without a queue timeout), kept by every write that queues a run
    // or moves its `not_before`, so expired runs are a range of `(state, queue_deadline, id)`.
    // Due queued runs are a range of `(state, not_before, id)` in that order (the old
    // `(state, not_before)` index made PostgreSQL sort all of them by id); every writer sets
    // `not_before`, and the few old queued rows without one get their `queued_at`, which is
    // what a NULL meant.
    &[
        "ALTER TABLE runs ADD COLUMN queue_deadline {big}",
        "UPDATE runs SET not_before = queued_at WHERE state = 'queued' AND not_before IS NULL",
        // Only queued runs are ever read by their deadline (a held run gets one when it is
        // queued), so history is left as it is.
        "UPDATE runs SET queue_deadline = not_before + queue_timeout_ms
        WHERE state = 'queued' AND queue_timeout_ms > 0 AND not_before IS NOT NULL",
        "CREATE INDEX runs_queue_deadline ON runs (state, queue_deadline, id)",
        "CREATE INDEX runs_due ON runs (state, not_before, id)",
        "DROP INDEX runs_state ON runs",
    ],
    // 8: cron expressions stored for the Quartz reading (weekdays 1 = Sunday … 7 = Saturday)
    // rewritten to crontab(5)'s, in Rust: see `rewrite_data`.
    &[],
    // 9: credential generations. A change to a user's password, role or disabled flag bumps
    // `users.generation`; a token is valid only while its `generation` matches its owner's, so
    // a login that raced the change cannot mint a surviving session.
    &[
        "ALTER TABLE users ADD COLUMN generation {big} NOT NULL DEFAULT 0",
        "ALTER TABLE tokens ADD COLUMN generation {big} NOT NULL DEFAULT 0",
    ],
    // 10: secret grants — a run reads a secret only if its task's project (`project_id`) or
    // every project (`*`) is granted it. Every secret a task declares is granted to the task's
    // project in Rust (see `rewrite_data`), so nothing that ran before stops running.
    &["CREATE TABLE IF NOT EXISTS secret_grants (
        secret {name} NOT NULL, project_id {id} NOT NULL, granted_at {big} NOT NULL,
        granted_by {name} NOT NULL, PRIMARY KEY (secret, project_id))"],
    // 11: alerts and retention. `runs.closed_at` is the store's clock when a run ended (its
    // `finished_at` is the runner's), so "runs that ended since" is a range of
    // `(closed_at, id)` in commit order give or take a transaction: the alert cursor and the
    // pruner both walk it. `pinned` runs are never pruned. Deliveries are unique per event and
    // channel; `settings` holds cluster-wide JSON values (the retention policy).
    &[
        "ALTER TABLE runs ADD COLUMN closed_at {big}",
        "ALTER TABLE runs ADD COLUMN pinned {big} NOT NULL DEFAULT 0",
        "UPDATE runs SET closed_at = finished_at WHERE state NOT IN ('queued', 'running')",
        "CREATE INDEX runs_closed ON runs (closed_at, id)",
        "CREATE INDEX runs_task_closed ON runs (task_id, closed_at, id)",
        "CREATE INDEX audit_at ON audit (at, id)",
        "CREATE TABLE alert_channels (
        id {id} PRIMARY KEY, name {name} NOT NULL UNIQUE, kind {id} NOT NULL,
        summary {text} NOT NULL, sealed {text} NOT NULL, enabled {big} NOT NULL,
        created_at {big} NOT NULL, updated_at {big} NOT NULL)",
        "CREATE TABLE alert_rules (
        id {id} PRIMARY KEY, name {name} NOT NULL UNIQUE, task_id {id}, spec {text} NOT NULL,
        enabled {big} NOT NULL, created_at {big} NOT NULL, updated_at {big} NOT NULL)",
        "CREATE TABLE alert_deliveries (
        id {id} PRIMARY KEY, rule_id {id}, channel_id {id} NOT NULL, event_key {name} NOT NULL,
        group_key {name} NOT NULL, event {text} NOT NULL, state {id} NOT NULL,
        attempts {big} NOT NULL, next_at {big} NOT NULL, last_error {text}, detail {text},
        carried_by {id}, created_at {big} NOT NULL, sent_at {big})",
        "CREATE UNIQUE INDEX alert_deliveries_once ON alert_deliveries (channel_id, event_key)",
        "CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_at, id)",
        "CREATE INDEX alert_deliveries_group ON alert_deliveries (rule_id, channel_id, group_key, sent_at)",
        "CREATE INDEX alert_deliveries_created ON alert_deliveries (created_at, id)",
        "CREATE TABLE settings (
        name {name} PRIMARY KEY, value {text} NOT NULL, updated_at {big} NOT NULL)",
    ],
    // 12: the params a run was triggered with (JSON), as its job carries them.
    &["ALTER TABLE runs ADD COLUMN params {text}"],
    // 13: what a run's trigger changed of its task's arguments and env (JSON).
    &["ALTER TABLE runs ADD COLUMN overrides {text}"],
    // 14: per-task webhooks and the idempotency keys of the runs they start. A key is unique
    // per hook; `run_id` is unique too, which is how the pruner deletes keys by batch.
    &[
        "CREATE TABLE hooks (
        id {id} PRIMARY KEY, task_id {id} NOT NULL, name {name} NOT NULL, auth {id} NOT NULL,
        rate_per_min {big} NOT NULL, secret {text} NOT NULL, created_at {big} NOT NULL,
        rotated_at {big}, last_used_at {big})",
        "CREATE INDEX hooks_task ON hooks (task_id, id)",
        "CREATE TABLE run_keys (
        hook_id {id} NOT NULL, idem_key {name} NOT NULL, run_id {id} NOT NULL,
        created_at {big} NOT NULL, PRIMARY KEY (hook_id, idem_key))",
        "CREATE UNIQUE INDEX run_keys_run ON run_keys (run_id)",
        "CREATE INDEX run_keys_created ON run_keys (created_at, run_id)",
    ],
    // 15: run dependencies. A run started by another's end names its group (the chain's first
    // run), its parent and its depth; `task_links` is what the tasks' `on_*` and `needs` say,
    // one row per link, kept with the task.
    &[
        "ALTER TABLE runs ADD COLUMN group_id {id}",
        "ALTER TABLE runs ADD COLUMN parent_id {id}",
        "ALTER TABLE runs ADD COLUMN depth {big} NOT NULL DEFAULT 0",
        "CREATE INDEX runs_group ON runs (group_id, task_id)",
        "CREATE TABLE task_links (
        from_task {id} NOT NULL, to_task {id} NOT NULL, kind {id} NOT NULL, for_each {name},
        PRIMARY KEY (from_task, to_task, kind))",
        "CREATE INDEX task_links_to ON task_links (to_task)",
    ],
    // 16: projects synced from Git. `source` and `sync_status` are JSON (`crate::git`),
    // `hook_secret` the push webhook's secret sealed; a version's `origin` names its commit.
    // Credentials keep their token or key sealed, the rest in the clear.
    &[
        "ALTER TABLE projects ADD COLUMN source {text}",
        "ALTER TABLE projects ADD COLUMN sync_status {text}",
        "ALTER TABLE projects ADD COLUMN hook_secret {text}",
        "ALTER TABLE project_versions ADD COLUMN origin {text}",
        "CREATE TABLE git_credentials (
        name {name} PRIMARY KEY, kind {id} NOT NULL, username {name} NOT NULL,
        known_hosts {text} NOT NULL, sealed {text} NOT NULL, created_at {big} NOT NULL,
        updated_at {big} NOT NULL, updated_by {name} NOT NULL)",
    ],
    // 17: run statistics count a window of `queued_at` (`crate::stats`); these indexes hold
    // every column the count reads, so it never visits the rows.
    &[
        "CREATE INDEX runs_queued ON runs (queued_at, state, duration_ms)",
        "CREATE INDEX runs_task_queued ON runs (task_id, queued_at, state, duration_ms)",
    ],
];

/// The Rust half of the migrations that have one, run on the migrating connection after the
/// migration's statements and before its version row, in the same transaction.
pub async fn rewrite_data(
    version: i64,
    conn: &mut AnyConnection,
    dialect: Dialect,
) -> StoreResult<()> {
    match version {
        8 => quartz_weekdays(conn, dialect).await,
        10 => grant_declared_secrets(conn, dialect).await,
        _ => Ok(()),
    }
}

/// Migration 8. Cron expressions were read by the `cron` crate: day-of-week 1 = Sunday … 7 =
/// Saturday, `?` for any day, full day and month names, and a day had to match both day
/// fields. Each stored expression is rewritten to mean what its owner meant
/// (`schedule::from_quartz`): a 6-field (Quartz) one keeps its days, a 5-field (crontab) one
/// keeps its numbers and fires on the days crontab(5) reads in them, so its next fire time is
/// worked out again. An expression that restricts both day fields cannot keep its
/// both-must-match meaning (crontab(5) fires on either); it is logged, and the release notes
/// say so.
async fn quartz_weekdays(conn: &mut AnyConnection, dialect: Dialect) -> StoreResult<()> {
    let rows = sqlx::query(
        "SELECT id, schedule, next_fire_at, created_at FROM tasks WHERE schedule IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    let update = match dialect {
        Dialect::Postgres => "UPDATE tasks SET schedule = $1, next_fire_at = $2 WHERE id = $3",
        _ => "UPDATE tasks SET schedule = ?, next_fire_at = ? WHERE id = ?",
    };
    let now = crate::time::now_ms();
    for row in rows {
        let id = super::rows::text(&row, "id")?;
        let text = super::rows::text(&row, "schedule")?;
        let Ok(mut schedule) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if schedule["kind"] != "cron" {
            continue;
        }
        let Some(old) = schedule["cron"].as_str().map(str::to_string) else {
            continue;
        };
        let new = crate::schedule::from_quartz(&old);
        let expr = new.clone().unwrap_or_else(|| old.clone());
        match crate::schedule::Cron::parse(&expr) {
            Err(e) => tracing::warn!(
                task = %id, old = %old,
                "migration 8: this cron expression cannot be read any more ({e}); the task \
                 does not fire until its schedule is edited"
            ),
            Ok(c) if c.either_day_matches() => tracing::warn!(
                task = %id, old = %old, new = ?new,
                "migration 8: this cron expression restricts both day fields; it fired on days \
                 matching both, and now fires on days matching either (crontab(5))"
            ),
            Ok(_) => {}
        }
        let rereads = crate::schedule::reads_differently(&expr);
        if new.is_none() && !rereads {
            continue;
        }
        schedule["cron"] = serde_json::Value::String(expr.clone());
        let mut next: Option<i64> = row.try_get("next_fire_at")?;
        if rereads {
            // The stored next fire was worked out in the old numbering. The next one in the
            // new is due after it or after now, whichever is earlier, so a fire that was
            // already due stays due.
            let created: i64 = row.try_get("created_at")?;
            if let (Some(at), Ok(parsed)) = (next, serde_json::from_value(schedule.clone())) {
                next = crate::schedule::next_after(&parsed, at.min(now) - 1, created)
                    .ok()
                    .flatten();
            }
            tracing::info!(task = %id, cron = %expr, next_fire_at = ?next,
                "migration 8: crontab-form weekdays now read as crontab reads them");
        } else {
            tracing::info!(task = %id, old = %old, new = %expr,
                "migration 8: cron expression rewritten to keep its days");
        }
        sqlx::query(update)
            .bind(schedule.to_string())
            .bind(next)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Migration 10. Grants each secret a task declares to that task's project, as the
/// `migration 10` actor: before grants existed any task could declare any secret, and the tasks
/// that do keep running. Applying it again adds nothing.
async fn grant_declared_secrets(conn: &mut AnyConnection, dialect: Dialect) -> StoreResult<()> {
    let rows = sqlx::query("SELECT project_id, spec FROM tasks")
        .fetch_all(&mut *conn)
        .await?;
    let mut grants = std::collections::BTreeSet::new();
    for row in rows {
        let project = super::rows::text(&row, "project_id")?;
        let spec = super::rows::text(&row, "spec")?;
        let Ok(spec) = serde_json::from_str::<crate::model::TaskSpec>(&spec) else {
            continue;
        };
        for secret in spec.secrets {
            grants.insert((secret, project.clone()));
        }
    }
    let insert = match dialect {
        Dialect::Postgres => {
            "INSERT INTO secret_grants (secret, project_id, granted_at, granted_by) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (secret, project_id) DO NOTHING"
        }
        Dialect::Sqlite => {
            "INSERT INTO secret_grants (secret, project_id, granted_at, granted_by) \
            VALUES (?, ?, ?, ?) ON CONFLICT (secret, project_id) DO NOTHING"
        }
        Dialect::Mysql => {
            "INSERT IGNORE INTO secret_grants (secret, project_id, granted_at, granted_by) \
            VALUES (?, ?, ?, ?)"
        }
    };
    let now = crate::time::now_ms();
    for (secret, project) in grants {
        tracing::info!(secret = %secret, project = %project,
            "migration 10: secret granted to the project of a task that declares it");
        sqlx::query(insert)
            .bind(secret)
            .bind(project)
            .bind(now)
            .bind("migration 10")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub fn render(stmt: &str, dialect: Dialect) -> String {
    let (id, name, text, big) = match dialect {
        Dialect::Sqlite => ("TEXT", "TEXT", "TEXT", "INTEGER"),
        Dialect::Postgres => ("VARCHAR(64)", "VARCHAR(255)", "TEXT", "BIGINT"),
        Dialect::Mysql => ("VARCHAR(64)", "VARCHAR(255)", "LONGTEXT", "BIGINT"),
    };
    let sql = stmt
        .replace("{id}", id)
        .replace("{name}", name)
        .replace("{text}", text)
        .replace("{big}", big);
    // MySQL/MariaDB tables take the server's default charset and collation, which may be latin1
    // (MariaDB) and is case- and accent-insensitive (`*_ci`): "Alice" would then collide with
    // "alice" and emoji would not fit. utf8mb4 with a binary collation compares like SQLite and
    // PostgreSQL do.
    // `DROP INDEX name ON table` is MySQL's spelling; PostgreSQL and SQLite name the index alone.
    if dialect != Dialect::Mysql && sql.starts_with("DROP INDEX") {
        if let Some((drop, _table)) = sql.split_once(" ON ") {
            return drop.to_string();
        }
    }
    if dialect == Dialect::Mysql && sql.trim_start().starts_with("CREATE TABLE") {
        format!("{sql} ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    } else {
        sql
    }
}
