//! [`SqlStore`]: the `Store` seam on sqlx `Any`, for SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! Queries are written once with `?` placeholders; [`SqlStore::q`] rewrites them to `$n` for
//! PostgreSQL. Only portable types cross the driver: text, 64-bit integers (times are epoch ms,
//! booleans 0/1) and JSON as text.
//!
//! On SQLite, writes go through a pool of one connection, so writers queue in order instead of
//! sleeping in SQLite's busy handler; reads use the other connections. A pooled SQLite
//! connection is not checked before each use (see `connect_with`). Durability is the URL's
//! choice (`?synchronous=normal|full|extra`, see `take_synchronous`); unset, it stays `full`,
//! an `fsync` per commit, which on one writer connection is what bounds one client's trigger
//! rate.
//!
//! `runs.queue_deadline` (`not_before + queue_timeout_ms`, NULL without a queue timeout) is set
//! by every write that queues a run or moves its `not_before` (`insert_runs`, the retry requeue
//! in `record.rs`, `defer_run`), so expired queued runs are a range of the
//! `(state, queue_deadline, id)` index. Every queued run has a `not_before`, and the due runs
//! compensation re-checks are a keyset on `(state, not_before, id)`. Both reads stop after
//! their page however many runs are queued, whatever the planner's statistics.
//!
//! Per trigger the store costs one read ([`Store::task_with_current_version`]: the task, its
//! project and the current version joined) and a share of one write transaction
//! ([`Store::create_run`], a group commit: `sql/create.rs`).

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use std::time::Duration;

use super::migrations::{render, rewrite_data, MIGRATIONS};
use super::rows::{self, to_json, RUN_COLUMNS, TASK_COLUMNS, VERSION_COLUMNS};
use super::*;
use crate::ids::new_id;

mod create;
mod record;

use record::{FinishReport, StartReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?;
        match scheme {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct SqlStore {
    /// Reads.
    pool: AnyPool,
    /// Writes. On SQLite, which has one writer at a time, a pool of one connection: writers
    /// then queue here, in order, instead of in SQLite's busy handler, which sleeps 1, 2, 5,
    /// 10… ms between tries (measured: hundreds of such sleeps per thousand runs, each on the
    /// path of a run's recording). Elsewhere the same pool as reads.
    writes: AnyPool,
    dialect: Dialect,
    /// Manual runs waiting for their group commit (`create`).
    pending_runs: std::sync::Arc<create::PendingRuns>,
}

/// A per-run, per-attempt number for backoff jitter (stable, so a repeated report is harmless).
fn jitter_seed(run_id: &str, attempt: u32) -> u64 {
    let digest = crate::ids::sha256_hex(format!("{run_id}/{attempt}").as_bytes());
    u64::from_str_radix(&digest[..16], 16).unwrap_or(0)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn conflict(e: sqlx::Error, what: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(what.to_string())
    } else {
        StoreError::Db(e)
    }
}

fn page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next_cursor }
}

fn stale(lock: &str, token: i64, current: i64) -> StoreError {
    StoreError::Stale(format!(
        "fencing token {token} of {lock:?} is older than {current}: this leader was deposed"
    ))
}

/// Page sizes below one would make a page that cannot name its successor.
fn page_size(limit: u32) -> u32 {
    limit.max(1)
}

/// Rows per multi-row statement: keeps every statement well under the bind limits (SQLite
/// 32,766, PostgreSQL and MySQL 65,535) at up to 16 binds a row.
const ROWS_PER_STATEMENT: usize = 500;

/// A statement with its bound values, as the helpers that bind them pass it along.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Sets `queue_deadline` for a `not_before` bound to its `?` (not read from the column: MySQL
/// would see a `not_before` assigned earlier in the same `SET`, the others the old one). Every
/// write that queues a run or moves its `not_before` carries it, so that expired queued runs are
/// a range of the `(state, queue_deadline)` index.
const SET_QUEUE_DEADLINE: &str =
    "queue_deadline = CASE WHEN queue_timeout_ms > 0 THEN ? + queue_timeout_ms ELSE NULL END";

/// When a run queued with `not_before` and this queue timeout expires; `None` without one.
fn queue_deadline(not_before: i64, timeout_ms: i64) -> Option<i64> {
    (timeout_ms > 0).then(|| not_before.saturating_add(timeout_ms))
}

/// `?, ?, …` with `n` placeholders.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `row, row, …`: `n` copies of a `VALUES` tuple.
fn rows_of(row: &str, n: usize) -> String {
    vec![row; n].join(", ")
}

/// The run `create_run` inserts, as reading it back would return it (the conformance suite
/// checks that): answering from memory saves a read per trigger.
fn queued_run(id: String, new: &NewRun, now: i64) -> Run {
    let spec = &new.task.spec;
    Run {
        id,
        task_id: new.task.id.clone(),
        project_id: new.task.project_id.clone(),
        project_version: new.version.version,
        state: RunState::Queued,
        attempt: 1,
        max_attempts: spec.retry.max_attempts.max(1),
        queue: spec.queue.clone(),
        trigger: new.trigger.clone(),
        worker_id: None,
        exit_code: None,
        signal: None,
        error: None,
        duration_ms: None,
        peak_rss_kb: None,
        log_key: None,
        result: None,
        cancel_requested: false,
        due_at: new.due_at,
        queued_at: now,
        not_before: Some(now),
        started_at: None,
        finished_at: None,
        lease_token: None,
    }
}

/// The job a new run publishes for its first attempt.
fn first_job(run_id: &str, new: &NewRun) -> Job {
    let (task, version) = (&new.task, &new.version);
    Job {
        run_id: run_id.into(),
        attempt: 1,
        queue: task.spec.queue.clone(),
        task_id: task.id.clone(),
        project_id: task.project_id.clone(),
        project_version: version.version,
        bundle: version.bundle.clone(),
        entrypoint: task
            .spec
            .entrypoint
            .clone()
            .unwrap_or_else(|| version.entrypoint.clone()),
        requirements: version.requirements.clone(),
        python_version: version.python_version.clone(),
        args: task.spec.args.clone(),
        env: task.spec.env.clone(),
        timeout_s: task.spec.timeout_s,
        secrets: task.spec.secrets.clone(),
        secret_env: Default::default(),
        warm: task.spec.warm,
        limits: task.spec.limits,
        network: task.spec.network.clone(),
    }
}

/// A history line written when a run is created.
fn queued_entry(run_id: &str, trigger: &str, at_ms: i64) -> RunHistoryEntry {
    RunHistoryEntry {
        id: new_id(),
        run_id: run_id.into(),
        attempt: 1,
        kind: "queued".into(),
        detail: format!("trigger: {trigger}"),
        at: at_ms,
    }
}

/// The keyset condition of a page: ids are time-ordered, so "older than the cursor" is the next
/// page. No cursor means no condition at all: a sentinel such as `id < '~'` only works under byte
/// order, and natural-language collations (ICU, glibc en_US, MySQL's `*_ai_ci`) sort punctuation
/// before digits, which made every first page empty.
fn after_cursor(cursor: Option<&str>) -> &'static str {
    match cursor {
        Some(_) => "id < ?",
        None => "1 = 1",
    }
}

/// Retries `op` while SQLite answers "database is locked" (code 5): processes starting together
/// on one new file race to switch it to WAL and migrate it, and under load the loser can wait
/// longer than its busy timeout. Gives up after a minute.
async fn while_locked<T, F, Fut>(mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match op().await {
            Err(StoreError::Db(sqlx::Error::Database(e)))
                if e.code().as_deref() == Some("5") && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Each of `columns` (a comma-separated list) written as `each` makes it, joined again.
fn each_column(columns: &str, each: impl Fn(&str) -> String) -> String {
    columns
        .split(',')
        .map(|c| each(c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A project's current version: the project and its version row joined.
static CURRENT_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM projects p JOIN project_versions v \
         ON v.project_id = p.id AND v.version = p.current_version WHERE p.id = ?",
        each_column(VERSION_COLUMNS, |c| format!("v.{c}"))
    )
});

/// A task and its project's current version, if any, in one row: the task's columns as they
/// are, the version's prefixed `v_`.
static TASK_WITH_CURRENT_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, {} FROM tasks t LEFT JOIN projects p ON p.id = t.project_id \
         LEFT JOIN project_versions v ON v.project_id = p.id AND v.version = p.current_version \
         WHERE t.id = ?",
        each_column(TASK_COLUMNS, |c| format!("t.{c}")),
        each_column(VERSION_COLUMNS, |c| format!("v.{c} AS v_{c}")),
    )
});

/// The values of one audit row, in the column order of `add_audit`.
fn bind_audit<'q>(q: AnyQuery<'q>, a: &'q AuditEntry) -> AnyQuery<'q> {
    q.bind(&a.id)
        .bind(a.at)
        .bind(&a.actor)
        .bind(&a.action)
        .bind(&a.resource)
        .bind(a.before.as_ref().map(to_json))
        .bind(a.after.as_ref().map(to_json))
        .bind(&a.address)
        .bind(&a.user_agent)
        .bind(&a.outcome)
}

/// Takes `synchronous=…` out of a SQLite URL (sqlx does not know it): `normal`, `full` or
/// `extra`, applied to every pooled connection. Unset, SQLite's default for our connections
/// holds: `full`, an fsync per commit, so an answered write survives a power loss. `normal` is
/// SQLite's advice for WAL databases: no fsync per commit, never a corrupt database, but the
/// last commits before a power loss or OS crash (not a crash of antcode) may be rolled back.
/// `off` is refused: it can corrupt the database on such a crash.
fn take_synchronous(url: &str) -> StoreResult<(String, Option<&'static str>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut level = None;
    let mut kept = Vec::new();
    for param in query.split('&') {
        let Some(value) = param.strip_prefix("synchronous=") else {
            kept.push(param);
            continue;
        };
        level = Some(match value.to_ascii_lowercase().as_str() {
            "normal" => "NORMAL",
            "full" => "FULL",
            "extra" => "EXTRA",
            _ => {
                return Err(StoreError::Config(format!(
                    "sqlite synchronous={value:?} is not supported; use normal, full or extra"
                )))
            }
        });
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, level))
}

async fn set_synchronous(
    conn: &mut sqlx::AnyConnection,
    level: Option<&'static str>,
) -> Result<(), sqlx::Error> {
    if let Some(level) = level {
        sqlx::query(&format!("PRAGMA synchronous = {level}"))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Key of the PostgreSQL advisory lock that serialises migrations (per database).
const PG_MIGRATION_LOCK: i64 = 0x0061_6e74_636f_6465; // "antcode"

impl SqlStore {
    /// Connects and migrates. `url` is `sqlite://PATH`, `postgres://…` or `mysql://…`.
    pub async fn connect(url: &str) -> StoreResult<SqlStore> {
        let max = if Dialect::from_url(url) == Some(Dialect::Sqlite) {
            4
        } else {
            10
        };
        SqlStore::connect_with(url, max).await
    }

    /// Like [`SqlStore::connect`] with an explicit pool size.
    pub async fn connect_with(url: &str, max_connections: u32) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        // Name only the scheme: the URL itself may carry a password.
        let dialect = Dialect::from_url(url).ok_or_else(|| {
            StoreError::Config(format!(
                "unsupported database url scheme {:?}; use sqlite://, postgres:// or mysql://",
                url.split(':').next().unwrap_or("")
            ))
        })?;
        let (url, synchronous) = match dialect {
            Dialect::Sqlite => take_synchronous(url)?,
            _ => (url.to_string(), None),
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url,
        };
        // A pooled SQLite connection is a file handle on a thread of its own: it cannot go stale
        // the way a network connection does, and a check before each use would cost a round
        // trip to that thread per statement.
        let check_before_use = dialect != Dialect::Sqlite;
        let pool = AnyPoolOptions::new()
            .after_connect(move |conn, _| Box::pin(set_synchronous(conn, synchronous)))
            .max_connections(max_connections.max(1))
            // Fail a request (and the start) after a few seconds without a connection instead
            // of sqlx's 30 s: callers retry, /readyz reports it, and a wrong URL is named quickly.
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(check_before_use)
            .connect(&url)
            .await?;
        let writes = match dialect {
            Dialect::Sqlite => {
                AnyPoolOptions::new()
                    .after_connect(move |conn, _| Box::pin(set_synchronous(conn, synchronous)))
                    .max_connections(1)
                    // Waiting here is queueing behind other writes, not an unreachable server.
                    .acquire_timeout(Duration::from_secs(30))
                    .test_before_acquire(false)
                    .connect(&url)
                    .await?
            }
            _ => pool.clone(),
        };
        let store = SqlStore {
            pool,
            writes,
            dialect,
            pending_runs: Default::default(),
        };
        if dialect == Dialect::Sqlite {
            // WAL lets readers proceed while the recorder writes.
            while_locked(|| async {
                sqlx::query("PRAGMA journal_mode=WAL")
                    .execute(&store.pool)
                    .await
                    .map(|_| ())
                    .map_err(StoreError::from)
            })
            .await?;
            while_locked(|| store.migrate(&url)).await?;
            if let Some(level) = synchronous {
                tracing::info!("sqlite: synchronous={level} on every connection");
            }
        } else {
            store.migrate(&url).await?;
        }
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// SQLite's `PRAGMA synchronous` on a pooled connection (0 off, 1 normal, 2 full, 3
    /// extra); `None` on the servers: what `?synchronous=` on the URL chose, for diagnostics and
    /// the tests.
    pub async fn sqlite_synchronous(&self) -> StoreResult<Option<i64>> {
        if self.dialect != Dialect::Sqlite {
            return Ok(None);
        }
        let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&self.writes)
            .await?;
        Ok(Some(level))
    }

    /// Rewrites `?` placeholders for the dialect (PostgreSQL wants `$1, $2, …`).
    fn q(&self, sql: &str) -> String {
        if self.dialect != Dialect::Postgres {
            return sql.to_string();
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Applies missing migrations on a dedicated connection that holds a lock for the whole
    /// run, so processes starting together (control and scheduler of a split deployment) do not
    /// both try to create the same tables. Closing that connection ends the lock (or rolls back
    /// the SQLite transaction) whatever happened.
    async fn migrate(&self, url: &str) -> StoreResult<()> {
        let mut conn = AnyConnection::connect(url).await?;
        let result = self.migrate_locked(&mut conn).await;
        let _ = conn.close().await;
        result
    }

    async fn migrate_locked(&self, conn: &mut AnyConnection) -> StoreResult<()> {
        match self.dialect {
            // SQLite DDL is transactional: the whole migration commits or nothing does.
            Dialect::Sqlite => {
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            }
            Dialect::Postgres => {
                sqlx::query(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
                    .execute(&mut *conn)
                    .await?;
            }
            Dialect::Mysql => {
                let got: Option<i64> =
                    sqlx::query("SELECT GET_LOCK(CONCAT('antcode_migrate.', DATABASE()), 60) AS l")
                        .fetch_one(&mut *conn)
                        .await?
                        .try_get("l")?;
                if got != Some(1) {
                    return Err(StoreError::Config(
                        "timed out after 60 s waiting for another process to finish migrating"
                            .into(),
                    ));
                }
            }
        }
        let create = render(
            "CREATE TABLE schema_version (version {big} PRIMARY KEY, applied_at {big} NOT NULL)",
            self.dialect,
        )
        .replacen("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1);
        sqlx::query(&create).execute(&mut *conn).await?;
        let found: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM schema_version")
            .fetch_one(&mut *conn)
            .await?
            .try_get("v")?;
        let found = found.unwrap_or(0);
        let supported = MIGRATIONS.len() as i64;
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        for (i, statements) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as i64 + 1;
            // MySQL commits each DDL statement implicitly; the version row is written last so
            // a migration is only marked applied once all its statements ran.
            for stmt in statements.iter() {
                sqlx::query(&render(stmt, self.dialect))
                    .execute(&mut *conn)
                    .await?;
            }
            // A migration's data rewrite and its version row commit together: applied once or
            // not at all (SQLite is inside one transaction already).
            if self.dialect == Dialect::Sqlite {
                self.finish_migration(version, conn).await?;
            } else {
                let mut tx = conn.begin().await?;
                self.finish_migration(version, &mut tx).await?;
                tx.commit().await?;
            }
        }
        match self.dialect {
            Dialect::Sqlite => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
            }
            Dialect::Postgres => {
                sqlx::query(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
                    .execute(&mut *conn)
                    .await?;
            }
            Dialect::Mysql => {
                sqlx::query("SELECT RELEASE_LOCK(CONCAT('antcode_migrate.', DATABASE()))")
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs migration `version`'s data rewrite, if it has one, and records it as applied.
    async fn finish_migration(&self, version: i64, conn: &mut AnyConnection) -> StoreResult<()> {
        rewrite_data(version, conn, self.dialect).await?;
        let insert = self.q("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)");
        sqlx::query(&insert)
            .bind(version)
            .bind(crate::time::now_ms())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// The condition of a keyset read on a `(column, id)` index: rows after `key` in that
    /// order, or every row without one. PostgreSQL and SQLite seek an index with a row-value
    /// comparison; MariaDB/MySQL do not use an index for one, but do for the same condition
    /// spelled out. Its values are bound by [`SqlStore::bind_key`].
    fn after_key(&self, column: &str, key: Option<(i64, &str)>) -> String {
        match (key, self.dialect) {
            (None, _) => String::new(),
            (Some(_), Dialect::Mysql) => {
                format!(" AND ({column} > ? OR ({column} = ? AND id > ?))")
            }
            (Some(_), _) => format!(" AND ({column}, id) > (?, ?)"),
        }
    }

    fn bind_key<'q>(&self, mut query: AnyQuery<'q>, key: Option<(i64, &'q str)>) -> AnyQuery<'q> {
        if let Some((value, id)) = key {
            query = query.bind(value);
            if self.dialect == Dialect::Mysql {
                query = query.bind(value);
            }
            query = query.bind(id);
        }
        query
    }

    async fn one(&self, sql: &str, binds: &[&str]) -> StoreResult<AnyRow> {
        let sql = self.q(sql);
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(*b);
        }
        query
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// One page of `select` (which has no WHERE), newest first, one row more than `limit` so
    /// [`page`] can tell whether another page follows.
    /// One page of `select` (a query without WHERE), newest first, after `cursor`: the shape of
    /// every list endpoint. `row` maps a row, `id` gives the cursor of an item.
    async fn newest_page<T>(
        &self,
        select: &str,
        limit: u32,
        cursor: Option<&str>,
        row: fn(&AnyRow) -> StoreResult<T>,
        id: fn(&T) -> String,
    ) -> StoreResult<Page<T>> {
        let limit = page_size(limit);
        let sql = self.q(&format!(
            "{select} WHERE {} ORDER BY id DESC LIMIT ?",
            after_cursor(cursor)
        ));
        let mut query = sqlx::query(&sql);
        if let Some(c) = cursor {
            query = query.bind(c);
        }
        let rs = query.bind(limit as i64 + 1).fetch_all(&self.pool).await?;
        let items = rs.iter().map(row).collect::<StoreResult<Vec<_>>>()?;
        Ok(page(items, limit, id))
    }

    async fn delete_where_id(&self, table: &str, id: &str) -> StoreResult<()> {
        let sql = self.q(&format!("DELETE FROM {table} WHERE id = ?"));
        let done = sqlx::query(&sql).bind(id).execute(&self.writes).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Writes history lines on `conn` (one statement per [`ROWS_PER_STATEMENT`]), so callers can
    /// put them in the same transaction as the state change they record.
    async fn insert_history(
        &self,
        conn: &mut AnyConnection,
        entries: &[RunHistoryEntry],
    ) -> StoreResult<()> {
        let insert = "INSERT INTO run_history (id, run_id, attempt, kind, detail, at) VALUES";
        self.insert_rows(conn, insert, "(?, ?, ?, ?, ?, ?)", entries, |q, e| {
            q.bind(&e.id)
                .bind(&e.run_id)
                .bind(e.attempt as i64)
                .bind(&e.kind)
                .bind(&e.detail)
                .bind(e.at)
        })
        .await
        .map_err(StoreError::from)
    }

    /// `insert` (`INSERT INTO table (columns) VALUES`) of `items` on `conn`, one statement of
    /// `row` placeholders per [`ROWS_PER_STATEMENT`] items, each item's values bound by `bind`.
    async fn insert_rows<T: Sync>(
        &self,
        conn: &mut AnyConnection,
        insert: &str,
        row: &str,
        items: &[T],
        bind: impl for<'q> Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
    ) -> Result<(), sqlx::Error> {
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            let sql = self.q(&format!("{insert} {}", rows_of(row, chunk.len())));
            let mut query = sqlx::query(&sql);
            for item in chunk {
                query = bind(query, item);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn history_in(
        &self,
        conn: &mut AnyConnection,
        run_id: &str,
        attempt: u32,
        kind: &str,
        detail: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        let entry = RunHistoryEntry {
            id: new_id(),
            run_id: run_id.into(),
            attempt,
            kind: kind.into(),
            detail: detail.into(),
            at: at_ms,
        };
        self.insert_history(conn, &[entry]).await
    }

    /// Inserts queued runs on `tx`, at most [`ROWS_PER_STATEMENT`] per statement: `(id, new run,
    /// its job, not_before)`. With `skip_duplicates` a run whose `(task_id, due_at)` already
    /// exists is left out silently; without it the statement fails with `Conflict`. Returns the
    /// rows the database reports affected: the runs inserted, except on MySQL/MariaDB, whose
    /// count (found rows) includes the duplicates it skipped.
    async fn insert_runs(
        &self,
        tx: &mut AnyConnection,
        runs: &[(String, &NewRun, Job, i64)],
        at_ms: i64,
        skip_duplicates: bool,
    ) -> StoreResult<u64> {
        let mut affected = 0;
        let row = "(?, ?, ?, ?, 'queued', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        for chunk in runs.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("INSERT INTO runs (id, task_id, project_id, project_version, state, attempt, max_attempts, retry, queue, run_trigger, job, due_at, queued_at, not_before, queue_timeout_ms, queue_deadline) VALUES {}", rows_of(row, chunk.len()));
            if skip_duplicates {
                sql.push_str(match self.dialect {
                    Dialect::Mysql => " ON DUPLICATE KEY UPDATE id = id",
                    _ => " ON CONFLICT DO NOTHING",
                });
            }
            let sql = self.q(&sql);
            let mut query = sqlx::query(&sql);
            for (id, new, job, not_before) in chunk {
                let spec = &new.task.spec;
                let timeout_ms = spec
                    .queue_timeout_s
                    .saturating_mul(1000)
                    .min(i64::MAX as u64) as i64;
                query = query
                    .bind(id)
                    .bind(&new.task.id)
                    .bind(&new.task.project_id)
                    .bind(new.version.version)
                    .bind(spec.retry.max_attempts.max(1) as i64)
                    .bind(to_json(&spec.retry))
                    .bind(&spec.queue)
                    .bind(&new.trigger)
                    .bind(to_json(job))
                    .bind(new.due_at)
                    .bind(at_ms)
                    .bind(*not_before)
                    .bind(timeout_ms)
                    .bind(queue_deadline(*not_before, timeout_ms));
            }
            affected += query
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict(e, "a run for this task and due time"))?
                .rows_affected();
        }
        Ok(affected)
    }

    /// The ids among `ids` that have a row in `runs`, read on `tx`.
    async fn existing_runs(
        &self,
        tx: &mut AnyConnection,
        ids: &[&str],
    ) -> StoreResult<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = self.q(&format!(
                "SELECT id FROM runs WHERE id IN ({})",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                out.insert(rows::text(&row, "id")?);
            }
        }
        Ok(out)
    }

    /// Moves each task's `next_fire_at` if it still is `from`, at most [`ROWS_PER_STATEMENT`]
    /// tasks per statement: an update joined to the `(id, from, to)` rows. (It was one portable
    /// `CASE id WHEN … END` per column, but each row searches its `CASE` from the top, so a
    /// statement of 500 rows did 250,000 comparisons: on SQLite 38 µs a task against 10 µs.)
    async fn move_next_fires(
        &self,
        tx: &mut AnyConnection,
        next: &[NextFire],
        at_ms: i64,
    ) -> StoreResult<()> {
        for chunk in next.chunks(ROWS_PER_STATEMENT) {
            let sql = match self.dialect {
                // MariaDB has neither a CTE before UPDATE nor column names for a VALUES table.
                Dialect::Mysql => format!(
                    "UPDATE tasks JOIN (SELECT ? AS id, ? AS prev, ? AS nxt{}) AS v \
                     ON tasks.id = v.id SET tasks.next_fire_at = v.nxt, tasks.updated_at = ? \
                     WHERE tasks.next_fire_at = v.prev",
                    " UNION ALL SELECT ?, ?, ?".repeat(chunk.len() - 1)
                ),
                Dialect::Sqlite | Dialect::Postgres => format!(
                    "WITH v (id, prev, nxt) AS (VALUES {}) \
                     UPDATE tasks SET next_fire_at = v.nxt, updated_at = ? \
                     FROM v WHERE tasks.id = v.id AND tasks.next_fire_at = v.prev",
                    rows_of("(?, ?, ?)", chunk.len())
                ),
            };
            let sql = self.q(&sql);
            let mut query = sqlx::query(&sql);
            for n in chunk {
                query = query.bind(&n.task_id).bind(n.from).bind(n.to);
            }
            query.bind(at_ms).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// The token the fence of `lock` holds, read on `tx` with `locking` (a locking clause, or
    /// empty); `None` before the first one was accepted.
    async fn fence_token(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        lock: &str,
        locking: &str,
    ) -> StoreResult<Option<i64>> {
        let sql = self.q(&format!("SELECT token FROM fences WHERE name = ?{locking}"));
        Ok(sqlx::query(&sql)
            .bind(lock)
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| row.try_get("token"))
            .transpose()?)
    }

    /// Checks `token` against the fence of `lock` on `tx`, first in the transaction, and
    /// advances the fence to it when it is newer; `Stale` when a newer token was accepted.
    ///
    /// On PostgreSQL and MySQL/MariaDB a token equal to the fence's takes a SHARED lock on the
    /// fence row until `tx` ends: one leader's batches write side by side, while a new leader's
    /// advance (an exclusive lock) waits for them, and every batch of the old one after it finds
    /// the newer token. SQLite has one writer at a time anyway, and there the first statement
    /// must be the write: a transaction that read first cannot become the writer once another
    /// one committed.
    async fn advance_fence(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        lock: &str,
        token: u64,
    ) -> StoreResult<()> {
        let token = token as i64;
        let shared = match self.dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(" FOR SHARE"),
            Dialect::Mysql => Some(" LOCK IN SHARE MODE"),
        };
        if let Some(shared) = shared {
            match self.fence_token(tx, lock, shared).await? {
                Some(current) if current == token => return Ok(()),
                Some(current) if current > token => return Err(stale(lock, token, current)),
                // Older or no fence yet: advanced below, exclusively.
                _ => {}
            }
        }
        let sql = self.q("UPDATE fences SET token = ? WHERE name = ? AND token <= ?");
        let moved = sqlx::query(&sql)
            .bind(token)
            .bind(lock)
            .bind(token)
            .execute(&mut **tx)
            .await?;
        if moved.rows_affected() == 1 {
            return Ok(());
        }
        match self.fence_token(tx, lock, "").await? {
            Some(current) if current > token => Err(stale(lock, token, current)),
            // MySQL reports 0 affected rows when the token is unchanged.
            Some(_) => Ok(()),
            None => {
                let sql = self.q("INSERT INTO fences (name, token) VALUES (?, ?)");
                sqlx::query(&sql)
                    .bind(lock)
                    .bind(token)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| conflict(e, "fence"))?;
                Ok(())
            }
        }
    }

    /// Deletes the row `id` of `table` and the rows of `child` whose `key` points at it, in one
    /// transaction; `NotFound` if there was no such row.
    async fn delete_cascade(
        &self,
        table: &str,
        id: &str,
        child: &str,
        key: &str,
    ) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        let done = sqlx::query(&self.q(&format!("DELETE FROM {table} WHERE id = ?")))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(&self.q(&format!("DELETE FROM {child} WHERE {key} = ?")))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl SqlStore {
    /// Begins a change to user `id`: returns the transaction, the enabled admins' ids and the
    /// user, read so that no other change to users can alter them before the transaction ends.
    /// On PostgreSQL and MySQL/MariaDB the admins' rows and then the user's are locked, always
    /// in that order and the admins by id, so two such transactions queue instead of
    /// deadlocking (and a locked row that another one changed meanwhile is read as committed).
    /// On SQLite the first statement is a write that changes nothing: it makes the transaction
    /// the database's one writer until it ends, so what it reads next cannot change under it.
    async fn lock_users(
        &self,
        id: &str,
    ) -> StoreResult<(sqlx::Transaction<'static, sqlx::Any>, Vec<String>, User)> {
        let mut tx = self.writes.begin().await?;
        let locking = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query(&self.q("UPDATE users SET generation = generation WHERE id = ?"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                ""
            }
            Dialect::Postgres | Dialect::Mysql => " FOR UPDATE",
        };
        let admins = sqlx::query(&format!(
            "SELECT id FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY id{locking}"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
        let sql = self.q(&format!("SELECT * FROM users WHERE id = ?{locking}"));
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok((tx, admins, rows::user(&row)?))
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").fetch_all(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, u: &User) -> StoreResult<()> {
        let sql = self.q("INSERT INTO users (id, username, password_hash, role, disabled, created_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&u.id)
            .bind(&u.username)
            .bind(&u.password_hash)
            .bind(u.role.as_str())
            .bind(u.disabled as i64)
            .bind(u.created_at)
            .bind(u.generation)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "username"))?;
        Ok(())
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<User> {
        rows::user(
            &self
                .one("SELECT * FROM users WHERE username = ?", &[username])
                .await?,
        )
    }

    async fn user(&self, id: &str) -> StoreResult<User> {
        rows::user(&self.one("SELECT * FROM users WHERE id = ?", &[id]).await?)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rs = sqlx::query("SELECT * FROM users")
            .fetch_all(&self.pool)
            .await?;
        let mut users = rs.iter().map(rows::user).collect::<StoreResult<Vec<_>>>()?;
        // Sorted here, not by ORDER BY: the database's collation (ICU, *_ci) would order names
        // differently per engine.
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }

    async fn change_user(&self, id: &str, change: &UserChange) -> StoreResult<User> {
        let (mut tx, admins, before) = self.lock_users(id).await?;
        let mut after = before.clone();
        if let Some(role) = change.role {
            after.role = role;
        }
        if let Some(disabled) = change.disabled {
            after.disabled = disabled;
        }
        if let Some(hash) = &change.password_hash {
            after.password_hash = hash.clone();
        }
        let enabled_admin = |u: &User| u.role == Role::Admin && !u.disabled;
        if enabled_admin(&before) && !enabled_admin(&after) && !admins.iter().any(|a| a != id) {
            return Err(StoreError::LastAdmin);
        }
        let revoke = after.role != before.role
            || after.disabled != before.disabled
            || change.password_hash.is_some();
        if revoke {
            after.generation += 1;
        }
        let sql = self.q(
            "UPDATE users SET password_hash = ?, role = ?, disabled = ?, generation = ? WHERE id = ?",
        );
        sqlx::query(&sql)
            .bind(&after.password_hash)
            .bind(after.role.as_str())
            .bind(after.disabled as i64)
            .bind(after.generation)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if revoke {
            sqlx::query(&self.q("DELETE FROM tokens WHERE user_id = ?"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let (mut tx, admins, before) = self.lock_users(id).await?;
        if before.role == Role::Admin && !before.disabled && !admins.iter().any(|a| a != id) {
            return Err(StoreError::LastAdmin);
        }
        for sql in [
            "DELETE FROM tokens WHERE user_id = ?",
            "DELETE FROM users WHERE id = ?",
        ] {
            sqlx::query(&self.q(sql)).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_token(&self, t: &ApiToken) -> StoreResult<()> {
        let sql = self.q("INSERT INTO tokens (id, token_hash, user_id, name, kind, scopes, created_at, expires_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&t.id)
            .bind(&t.token_hash)
            .bind(&t.user_id)
            .bind(&t.name)
            .bind(&t.kind)
            .bind(to_json(&t.scopes))
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.generation)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "token"))?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<ApiToken> {
        rows::token(
            &self
                .one("SELECT * FROM tokens WHERE token_hash = ?", &[hash])
                .await?,
        )
    }

    async fn list_tokens(&self, user_id: &str) -> StoreResult<Vec<ApiToken>> {
        let sql =
            self.q("SELECT * FROM tokens WHERE user_id = ? AND kind = 'api' ORDER BY id DESC");
        let rs = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::token).collect()
    }

    async fn delete_token(&self, id: &str) -> StoreResult<()> {
        self.delete_where_id("tokens", id).await
    }

    async fn create_project(&self, p: &Project, first: &ProjectVersion) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        let sql = self.q("INSERT INTO projects (id, name, description, current_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.description)
            .bind(first.version)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "project name"))?;
        let sql = self.q(&format!(
            "INSERT INTO project_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        sqlx::query(&sql)
            .bind(&p.id)
            .bind(first.version)
            .bind(to_json(&first.bundle))
            .bind(&first.entrypoint)
            .bind(&first.requirements)
            .bind(first.python_version.clone())
            .bind(to_json(&first.files))
            .bind(first.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn project(&self, id: &str) -> StoreResult<Project> {
        rows::project(
            &self
                .one("SELECT * FROM projects WHERE id = ?", &[id])
                .await?,
        )
    }

    async fn project_by_name(&self, name: &str) -> StoreResult<Project> {
        rows::project(
            &self
                .one("SELECT * FROM projects WHERE name = ?", &[name])
                .await?,
        )
    }

    async fn list_projects(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<Project>> {
        self.newest_page(
            "SELECT * FROM projects",
            limit,
            cursor,
            rows::project,
            |p| p.id.clone(),
        )
        .await
    }

    async fn update_project(&self, p: &Project) -> StoreResult<()> {
        let sql = self.q("UPDATE projects SET name = ?, description = ?, current_version = ?, updated_at = ? WHERE id = ?");
        let done = sqlx::query(&sql)
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.current_version)
            .bind(p.updated_at)
            .bind(&p.id)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "project name"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_project(&self, id: &str) -> StoreResult<()> {
        self.delete_cascade("projects", id, "project_versions", "project_id")
            .await
    }

    async fn add_version(&self, v: &ProjectVersion) -> StoreResult<i64> {
        let mut tx = self.writes.begin().await?;
        // Lock the project row before reading the latest number: concurrent uploads to one
        // project queue here instead of picking the same number (on SQLite this first write
        // also takes the database write lock before any read, so no stale snapshot is used).
        let locked = sqlx::query(&self.q("UPDATE projects SET updated_at = ? WHERE id = ?"))
            .bind(v.created_at)
            .bind(&v.project_id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let latest: Option<i64> = sqlx::query(
            &self.q("SELECT MAX(version) AS v FROM project_versions WHERE project_id = ?"),
        )
        .bind(&v.project_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
        let number = latest.unwrap_or(0) + 1;
        let sql = self.q(&format!(
            "INSERT INTO project_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        sqlx::query(&sql)
            .bind(&v.project_id)
            .bind(number)
            .bind(to_json(&v.bundle))
            .bind(&v.entrypoint)
            .bind(&v.requirements)
            .bind(v.python_version.clone())
            .bind(to_json(&v.files))
            .bind(v.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "project version"))?;
        sqlx::query(&self.q("UPDATE projects SET current_version = ? WHERE id = ?"))
            .bind(number)
            .bind(&v.project_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(number)
    }

    async fn version(&self, project_id: &str, version: i64) -> StoreResult<ProjectVersion> {
        let sql = self.q(&format!(
            "SELECT {VERSION_COLUMNS} FROM project_versions WHERE project_id = ? AND version = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(project_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::version(&row)
    }

    async fn current_version(&self, project_id: &str) -> StoreResult<ProjectVersion> {
        rows::version(&self.one(&CURRENT_VERSION, &[project_id]).await?)
    }

    async fn list_versions(&self, project_id: &str) -> StoreResult<Vec<ProjectVersion>> {
        let sql = self.q(&format!("SELECT {VERSION_COLUMNS} FROM project_versions WHERE project_id = ? ORDER BY version DESC"));
        let rs = sqlx::query(&sql)
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::version).collect()
    }

    async fn create_tasks(&self, tasks: &[Task]) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        let insert = format!("INSERT INTO tasks ({TASK_COLUMNS}) VALUES");
        self.insert_rows(
            &mut tx,
            &insert,
            "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tasks,
            |q, t| {
                q.bind(&t.id)
                    .bind(&t.name)
                    .bind(&t.project_id)
                    .bind(to_json(&t.spec))
                    .bind(t.schedule.as_ref().map(to_json))
                    .bind(t.paused as i64)
                    .bind(t.next_fire_at)
                    .bind(t.created_at)
                    .bind(t.updated_at)
            },
        )
        .await
        .map_err(|e| conflict(e, "task name"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn task(&self, id: &str) -> StoreResult<Task> {
        rows::task(
            &self
                .one(
                    &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"),
                    &[id],
                )
                .await?,
        )
    }

    async fn task_with_current_version(
        &self,
        id: &str,
    ) -> StoreResult<(Task, Option<ProjectVersion>)> {
        let row = self.one(&TASK_WITH_CURRENT_VERSION, &[id]).await?;
        let version = match row.try_get::<Option<i64>, _>("v_version")? {
            Some(_) => Some(rows::version_as(&row, "v_")?),
            None => None,
        };
        Ok((rows::task(&row)?, version))
    }

    async fn list_tasks(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<Task>> {
        let select = format!("SELECT {TASK_COLUMNS} FROM tasks");
        self.newest_page(&select, limit, cursor, rows::task, |t| t.id.clone())
            .await
    }

    async fn update_task(&self, t: &Task) -> StoreResult<()> {
        let sql = self.q("UPDATE tasks SET name = ?, project_id = ?, spec = ?, schedule = ?, paused = ?, next_fire_at = ?, updated_at = ? WHERE id = ?");
        let done = sqlx::query(&sql)
            .bind(&t.name)
            .bind(&t.project_id)
            .bind(to_json(&t.spec))
            .bind(t.schedule.as_ref().map(to_json))
            .bind(t.paused as i64)
            .bind(t.next_fire_at)
            .bind(t.updated_at)
            .bind(&t.id)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "task name"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_task(&self, id: &str) -> StoreResult<()> {
        self.delete_where_id("tasks", id).await
    }

    async fn due_tasks(
        &self,
        now_ms: i64,
        limit: u32,
        after: Option<&DueKey>,
    ) -> StoreResult<Vec<Task>> {
        // A keyset on the `(next_fire_at, id)` index: each batch starts where the previous one
        // ended, so it costs its own rows whatever the planner's statistics say (leaving the
        // previous batch out by id made PostgreSQL read the whole backlog when its statistics
        // were stale).
        let key = after.map(|k| (k.next_fire_at, k.id.as_str()));
        let keyset = self.after_key("next_fire_at", key);
        let sql = self.q(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE paused = 0 AND next_fire_at IS NOT NULL AND next_fire_at <= ?{keyset} ORDER BY next_fire_at, id LIMIT ?"));
        let query = self.bind_key(sqlx::query(&sql).bind(now_ms), key);
        let rs = query
            .bind(limit.max(1) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::task).collect()
    }

    async fn create_run(&self, new: &NewRun) -> StoreResult<(Run, Job)> {
        self.create_run_queued(new).await
    }

    /// Two on the servers: while one batch waits for its commit (an fsync) or its statements,
    /// the other keeps the server's second core busy. The batches of one leader touch disjoint
    /// tasks and share the fence row's lock (see `advance_fence`).
    fn fire_writers(&self) -> usize {
        match self.dialect {
            Dialect::Sqlite => 1,
            Dialect::Postgres | Dialect::Mysql => 2,
        }
    }

    async fn fire_schedules(
        &self,
        fires: &[Fire],
        next: &[NextFire],
        lock: &str,
        token: u64,
        at_ms: i64,
    ) -> StoreResult<Vec<Option<Job>>> {
        if fires.is_empty() && next.is_empty() {
            return Ok(vec![]);
        }
        let runs: Vec<(String, &NewRun, Job, i64)> = fires
            .iter()
            .map(|f| {
                let id = new_id();
                let job = first_job(&id, &f.run);
                let not_before = if f.held { HELD } else { at_ms };
                (id, &f.run, job, not_before)
            })
            .collect();
        let mut tx = self.writes.begin().await?;
        // The fence first: its row lock (shared by this leader's batches, exclusive for a new
        // leader's advance) queues a racing leader's batch behind this one, or this one behind
        // the new leader's advance, which it then finds and is refused.
        self.advance_fence(&mut tx, lock, token).await?;
        let inserted = self.insert_runs(&mut tx, &runs, at_ms, true).await?;
        // Which runs were created: all of them when as many rows were inserted (duplicates are
        // rare: a due time fired already, by this leader or a deposed one); otherwise, and on
        // MySQL whose count cannot tell, the ids read back.
        let created = if inserted == runs.len() as u64 && self.dialect != Dialect::Mysql {
            None
        } else {
            let ids: Vec<&str> = runs.iter().map(|(id, ..)| id.as_str()).collect();
            Some(self.existing_runs(&mut tx, &ids).await?)
        };
        let was_created = |id: &String| created.as_ref().is_none_or(|c| c.contains(id));
        let history: Vec<RunHistoryEntry> = runs
            .iter()
            .filter(|(id, ..)| was_created(id))
            .map(|(id, new, ..)| queued_entry(id, &new.trigger, at_ms))
            .collect();
        self.insert_history(&mut tx, &history).await?;
        self.move_next_fires(&mut tx, next, at_ms).await?;
        tx.commit().await?;
        Ok(runs
            .into_iter()
            .map(|(id, _, job, _)| was_created(&id).then_some(job))
            .collect())
    }

    async fn active_runs(&self, task_ids: &[String]) -> StoreResult<Vec<Run>> {
        let mut out = vec![];
        for chunk in task_ids.chunks(ROWS_PER_STATEMENT) {
            let sql = self.q(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE task_id IN ({}) AND state IN ('queued', 'running') ORDER BY id",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(rows::run(&row)?);
            }
        }
        Ok(out)
    }

    async fn run(&self, id: &str) -> StoreResult<Run> {
        rows::run(
            &self
                .one(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"),
                    &[id],
                )
                .await?,
        )
    }

    async fn list_runs(
        &self,
        f: &RunFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Run>> {
        let limit = page_size(limit);
        let mut sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE {}",
            after_cursor(cursor)
        );
        let mut binds: Vec<String> = cursor.iter().map(|c| c.to_string()).collect();
        if let Some(t) = &f.task_id {
            sql.push_str(" AND task_id = ?");
            binds.push(t.clone());
        }
        if let Some(s) = f.state {
            sql.push_str(" AND state = ?");
            binds.push(s.as_str().to_string());
        }
        if let Some(w) = &f.worker_id {
            sql.push_str(" AND worker_id = ?");
            binds.push(w.clone());
        }
        sql.push_str(" AND queued_at >= ? ORDER BY id DESC LIMIT ?");
        let sql = self.q(&sql);
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b.as_str());
        }
        let rs = query
            .bind(f.since_ms.unwrap_or(0))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rs.iter().map(rows::run).collect::<StoreResult<Vec<_>>>()?;
        Ok(page(items, limit, |r| r.id.clone()))
    }

    async fn due_queued_jobs(
        &self,
        now_ms: i64,
        limit: u32,
        after: Option<&QueuedKey>,
    ) -> StoreResult<DueJobs> {
        // A keyset on the `(state, not_before, id)` index, as in `due_tasks`: the read stops
        // after its page however many runs are queued, and a page starts after the last one.
        let key = after.map(|k| (k.not_before, k.id.as_str()));
        let keyset = self.after_key("not_before", key);
        let sql = self.q(&format!("SELECT job, attempt, not_before, id FROM runs WHERE state = 'queued' AND not_before <= ?{keyset} ORDER BY not_before, id LIMIT ?"));
        let query = self.bind_key(sqlx::query(&sql).bind(now_ms), key);
        let limit = limit.max(1);
        let rs = query.bind(limit as i64).fetch_all(&self.pool).await?;
        let jobs = rs
            .iter()
            .map(|row| {
                let raw = rows::text(row, "job")?;
                let mut job: Job = serde_json::from_str(&raw)
                    .map_err(|e| StoreError::Corrupt(format!("job: {e}")))?;
                job.attempt = row.try_get::<i64, _>("attempt")? as u32;
                Ok(job)
            })
            .collect::<StoreResult<Vec<Job>>>()?;
        let next = match rs.last() {
            Some(row) if rs.len() == limit as usize => Some(QueuedKey {
                not_before: row.try_get("not_before")?,
                id: rows::text(row, "id")?,
            }),
            _ => None,
        };
        Ok(DueJobs { jobs, next })
    }

    async fn running_runs(&self, limit: u32) -> StoreResult<Vec<Run>> {
        let sql = self.q(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state = 'running' ORDER BY id LIMIT ?"
        ));
        let rs = sqlx::query(&sql)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::run).collect()
    }

    async fn mark_started(
        &self,
        run_id: &str,
        attempt: u32,
        lease_token: &str,
        worker_id: &str,
        at_ms: i64,
    ) -> StoreResult<Run> {
        let report = StartReport {
            run_id,
            attempt,
            lease_token,
            worker_id,
            at_ms,
        };
        let mut tx = self.begin_write().await?;
        let mut history = Vec::with_capacity(1);
        self.start_in(&mut tx, &report, &mut history).await?;
        self.insert_history(&mut tx, &history).await?;
        tx.commit().await?;
        self.run(run_id).await
    }

    async fn finish_attempt(
        &self,
        run_id: &str,
        attempt: u32,
        lease_token: Option<&str>,
        o: &Outcome,
        at_ms: i64,
    ) -> StoreResult<FinishApplied> {
        let mut tx = self.begin_write().await?;
        let mut history = Vec::with_capacity(1);
        let report = FinishReport {
            run_id,
            attempt,
            lease_token,
            outcome: o,
            at_ms,
        };
        let recorded = self.finish_in(&mut tx, &report, &mut history).await?;
        self.insert_history(&mut tx, &history).await?;
        tx.commit().await?;
        let run = self.run(run_id).await?;
        Ok(match recorded {
            Recorded::Finished { requeued: true, .. } => FinishApplied::Requeued(run),
            _ => FinishApplied::Terminal(run),
        })
    }

    async fn record_events(&self, events: &[RunEvent]) -> Vec<StoreResult<Recorded>> {
        if events.is_empty() {
            return vec![];
        }
        let failed = match self.record_batch(events).await {
            Ok(results) => return results,
            Err(e) => e,
        };
        if events.len() == 1 {
            return vec![Err(failed)];
        }
        // Nothing was committed. One by one, so that one event's failure stays its own.
        tracing::debug!(error = %failed, events = events.len(), "batch of run events failed; applying them one by one");
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            out.push(match &ev.kind {
                RunEventKind::Started => self
                    .mark_started(
                        &ev.run_id,
                        ev.attempt,
                        &ev.lease_token,
                        &ev.worker_id,
                        ev.at_ms,
                    )
                    .await
                    .map(|_| Recorded::Started),
                RunEventKind::Finished(o) => self
                    .finish_attempt(&ev.run_id, ev.attempt, Some(&ev.lease_token), o, ev.at_ms)
                    .await
                    .map(|applied| match applied {
                        FinishApplied::Terminal(run) => Recorded::Finished {
                            state: run.state,
                            requeued: false,
                        },
                        FinishApplied::Requeued(run) => Recorded::Finished {
                            state: run.state,
                            requeued: true,
                        },
                    }),
                RunEventKind::Interrupted(o) => self.interrupt_attempt(ev, o).await,
            });
        }
        out
    }

    async fn request_cancel(&self, run_id: &str, at_ms: i64) -> StoreResult<Run> {
        // One statement decides queued → cancelled or running → flagged, so a run that changes
        // state meanwhile cannot slip between two checks. `state` is assigned last because
        // MySQL evaluates SET left to right with the new values; the others see the old state
        // on every engine.
        let mut tx = self.writes.begin().await?;
        let sql = self.q("UPDATE runs SET cancel_requested = 1, \
             finished_at = CASE WHEN state = 'queued' THEN ? ELSE finished_at END, \
             error = CASE WHEN state = 'queued' THEN 'cancelled before it started' ELSE error END, \
             state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END \
             WHERE id = ? AND state IN ('queued', 'running')");
        let done = sqlx::query(&sql)
            .bind(at_ms)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            let attempt: i64 = sqlx::query(&self.q("SELECT attempt FROM runs WHERE id = ?"))
                .bind(run_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("attempt")?;
            self.history_in(
                &mut tx,
                run_id,
                attempt as u32,
                "cancel_requested",
                "",
                at_ms,
            )
            .await?;
        }
        tx.commit().await?;
        // Already finished runs are returned as they are: cancelling them is a no-op.
        self.run(run_id).await
    }

    async fn run_history(&self, run_id: &str) -> StoreResult<Vec<RunHistoryEntry>> {
        let sql = self.q("SELECT * FROM run_history WHERE run_id = ? ORDER BY id");
        let rs = sqlx::query(&sql).bind(run_id).fetch_all(&self.pool).await?;
        rs.iter().map(rows::history).collect()
    }

    async fn add_history(&self, e: &RunHistoryEntry) -> StoreResult<()> {
        let mut conn = self.writes.acquire().await?;
        self.insert_history(&mut conn, std::slice::from_ref(e))
            .await
    }

    async fn add_audit(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        const INSERT: &str = "INSERT INTO audit (id, at, actor, action, resource, before_value, after_value, address, user_agent, outcome) VALUES";
        const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        if entries.len() <= ROWS_PER_STATEMENT {
            // One statement is atomic on its own: no BEGIN and COMMIT round trips.
            let mut conn = self.writes.acquire().await?;
            self.insert_rows(&mut conn, INSERT, ROW, entries, bind_audit)
                .await?;
            return Ok(());
        }
        let mut tx = self.writes.begin().await?;
        self.insert_rows(&mut tx, INSERT, ROW, entries, bind_audit)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<AuditEntry>> {
        self.newest_page("SELECT * FROM audit", limit, cursor, rows::audit, |a| {
            a.id.clone()
        })
        .await
    }

    async fn create_worker_key(&self, k: &WorkerKey) -> StoreResult<()> {
        let sql = self.q("INSERT INTO worker_keys (id, key_hash, note, queues, labels, created_by, created_at, expires_at, used_at, used_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)");
        sqlx::query(&sql)
            .bind(&k.id)
            .bind(&k.key_hash)
            .bind(&k.note)
            .bind(to_json(&k.queues))
            .bind(to_json(&k.labels))
            .bind(&k.created_by)
            .bind(k.created_at)
            .bind(k.expires_at)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "worker key"))?;
        Ok(())
    }

    async fn list_worker_keys(&self) -> StoreResult<Vec<WorkerKey>> {
        let rs = sqlx::query("SELECT * FROM worker_keys ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::worker_key).collect()
    }

    async fn redeem_worker_key(
        &self,
        key_hash: &str,
        w: &WorkerRecord,
        now_ms: i64,
    ) -> StoreResult<WorkerRecord> {
        let mut tx = self.writes.begin().await?;
        // One conditional UPDATE decides the winner: the row lock (or SQLite's write lock)
        // serialises concurrent redemptions and only the first sees `used_at IS NULL`.
        let done = sqlx::query(&self.q("UPDATE worker_keys SET used_at = ?, used_by = ? \
             WHERE key_hash = ? AND used_at IS NULL AND expires_at > ?"))
        .bind(now_ms)
        .bind(&w.id)
        .bind(key_hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&self.q("SELECT * FROM worker_keys WHERE key_hash = ?"))
            .bind(key_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let key = rows::worker_key(&row)?;
        if done.rows_affected() != 1 {
            return Err(if key.used_at.is_some() {
                StoreError::Conflict("enrollment key already used".into())
            } else {
                StoreError::Stale("enrollment key expired".into())
            });
        }
        let mut worker = w.clone();
        worker.queues = key.queues.clone();
        for (k, v) in &key.labels {
            worker.labels.insert(k.clone(), v.clone());
        }
        sqlx::query(&self.q("INSERT INTO workers (id, name, mode, queues, labels, api_key_hash, cert_fingerprint, revoked, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&worker.id)
            .bind(&worker.name)
            .bind(&worker.mode)
            .bind(to_json(&worker.queues))
            .bind(to_json(&worker.labels))
            .bind(worker.api_key_hash.as_deref())
            .bind(worker.cert_fingerprint.as_deref())
            .bind(worker.revoked as i64)
            .bind(worker.created_at)
            .bind(worker.last_seen_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "worker"))?;
        tx.commit().await?;
        Ok(worker)
    }

    async fn worker_record(&self, id: &str) -> StoreResult<WorkerRecord> {
        rows::worker_record(
            &self
                .one("SELECT * FROM workers WHERE id = ?", &[id])
                .await?,
        )
    }

    async fn worker_by_api_key(&self, api_key_hash: &str) -> StoreResult<WorkerRecord> {
        rows::worker_record(
            &self
                .one(
                    "SELECT * FROM workers WHERE api_key_hash = ?",
                    &[api_key_hash],
                )
                .await?,
        )
    }

    async fn worker_by_fingerprint(&self, fingerprint: &str) -> StoreResult<WorkerRecord> {
        rows::worker_record(
            &self
                .one(
                    "SELECT * FROM workers WHERE cert_fingerprint = ?",
                    &[fingerprint],
                )
                .await?,
        )
    }

    async fn list_worker_records(&self) -> StoreResult<Vec<WorkerRecord>> {
        let rs = sqlx::query("SELECT * FROM workers ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::worker_record).collect()
    }

    async fn revoke_worker(&self, id: &str) -> StoreResult<WorkerRecord> {
        sqlx::query(&self.q("UPDATE workers SET revoked = 1 WHERE id = ?"))
            .bind(id)
            .execute(&self.writes)
            .await?;
        self.worker_record(id).await
    }

    async fn expired_queued_runs(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<Run>> {
        // A range of the `(state, queue_deadline)` index in its own order: it stops after its
        // rows however many runs are queued (NULL deadlines, no queue timeout, are outside it).
        let sql = self.q(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE state = 'queued' AND queue_deadline < ? ORDER BY queue_deadline, id LIMIT ?"));
        let rs = sqlx::query(&sql)
            .bind(now_ms)
            .bind(limit.max(1) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::run).collect()
    }

    async fn expire_run(&self, run_id: &str, attempt: u32, at_ms: i64) -> StoreResult<Run> {
        let mut tx = self.writes.begin().await?;
        let sql = self.q("UPDATE runs SET state = 'failed', error = 'expired: not started within its queue timeout', finished_at = ? WHERE id = ? AND attempt = ? AND state = 'queued'");
        let done = sqlx::query(&sql)
            .bind(at_ms)
            .bind(run_id)
            .bind(attempt as i64)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Stale(format!(
                "run {run_id} is no longer queued at attempt {attempt}"
            )));
        }
        self.history_in(
            &mut tx,
            run_id,
            attempt,
            "expired",
            "not started within its queue timeout",
            at_ms,
        )
        .await?;
        tx.commit().await?;
        self.run(run_id).await
    }

    async fn defer_run(&self, run_id: &str, until_ms: i64) -> StoreResult<()> {
        let sql = self.q(&format!(
            "UPDATE runs SET not_before = ?, {SET_QUEUE_DEADLINE} WHERE id = ? AND state = 'queued'"
        ));
        let done = sqlx::query(&sql)
            .bind(until_ms)
            .bind(until_ms)
            .bind(run_id)
            .execute(&self.writes)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Stale(format!(
                "run {run_id} is no longer queued"
            )));
        }
        Ok(())
    }

    async fn held_runs(&self, limit: u32) -> StoreResult<Vec<Run>> {
        let sql = self.q(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE state = 'queued' AND not_before >= ? ORDER BY id LIMIT ?"));
        let rs = sqlx::query(&sql)
            .bind(crate::store::HELD)
            .bind(limit.max(1) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::run).collect()
    }
    async fn put_secret(&self, s: &crate::secrets::SealedSecret) -> StoreResult<bool> {
        let m = &s.meta;
        let existed = match self.secret(&m.name).await {
            Ok(_) => true,
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(e),
        };
        // One statement per dialect so two writers of the same name never collide on the key.
        let sql = match self.dialect {
            Dialect::Mysql => "INSERT INTO secrets (name, sealed, created_at, updated_at, updated_by) VALUES (?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE sealed = VALUES(sealed), updated_at = VALUES(updated_at), updated_by = VALUES(updated_by)",
            _ => "INSERT INTO secrets (name, sealed, created_at, updated_at, updated_by) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        };
        sqlx::query(&self.q(sql))
            .bind(&m.name)
            .bind(&s.sealed)
            .bind(m.created_at)
            .bind(m.updated_at)
            .bind(&m.updated_by)
            .execute(&self.writes)
            .await?;
        Ok(!existed)
    }

    async fn secret(&self, name: &str) -> StoreResult<crate::secrets::SealedSecret> {
        let row = self
            .one(
                "SELECT name, sealed, created_at, updated_at, updated_by FROM secrets WHERE name = ?",
                &[name],
            )
            .await?;
        Ok(crate::secrets::SealedSecret {
            meta: secret_meta(&row)?,
            sealed: rows::text(&row, "sealed")?,
        })
    }

    async fn list_secrets(&self) -> StoreResult<Vec<crate::secrets::SecretMeta>> {
        let rs = sqlx::query(
            "SELECT name, created_at, updated_at, updated_by FROM secrets ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rs.iter().map(secret_meta).collect()
    }

    async fn delete_secret(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        sqlx::query(&self.q("DELETE FROM secret_grants WHERE secret = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(&self.q("DELETE FROM secrets WHERE name = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn secret_for(
        &self,
        name: &str,
        project_id: &str,
    ) -> StoreResult<(crate::secrets::SealedSecret, bool)> {
        let row = self
            .one(
                "SELECT name, sealed, created_at, updated_at, updated_by, \
                 (SELECT COUNT(*) FROM secret_grants g WHERE g.secret = secrets.name \
                  AND g.project_id IN (?, '*')) AS grants FROM secrets WHERE name = ?",
                &[project_id, name],
            )
            .await?;
        let grants: i64 = row.try_get("grants")?;
        let secret = crate::secrets::SealedSecret {
            meta: secret_meta(&row)?,
            sealed: rows::text(&row, "sealed")?,
        };
        Ok((secret, grants > 0))
    }

    async fn secret_grants(&self, name: &str) -> StoreResult<Vec<crate::secrets::SecretGrant>> {
        let rs = sqlx::query(&self.q(
            "SELECT secret, project_id, granted_at, granted_by FROM secret_grants \
             WHERE secret = ? ORDER BY project_id",
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut grants = rs
            .iter()
            .map(|row| {
                let project = rows::text(row, "project_id")?;
                Ok(crate::secrets::SecretGrant {
                    secret: rows::text(row, "secret")?,
                    project_id: (project != ALL_PROJECTS).then_some(project),
                    granted_at: row.try_get("granted_at")?,
                    granted_by: rows::text(row, "granted_by")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        grants.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        Ok(grants)
    }

    async fn set_secret_grants(
        &self,
        name: &str,
        grants: &[crate::secrets::SecretGrant],
    ) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        sqlx::query(&self.q("DELETE FROM secret_grants WHERE secret = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let insert = self.q(
            "INSERT INTO secret_grants (secret, project_id, granted_at, granted_by) VALUES (?, ?, ?, ?)",
        );
        for g in grants {
            sqlx::query(&insert)
                .bind(name)
                .bind(g.project_id.as_deref().unwrap_or(ALL_PROJECTS))
                .bind(g.granted_at)
                .bind(&g.granted_by)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `secret_grants.project_id` of a grant to every project.
const ALL_PROJECTS: &str = "*";

fn secret_meta(row: &AnyRow) -> StoreResult<crate::secrets::SecretMeta> {
    Ok(crate::secrets::SecretMeta {
        name: rows::text(row, "name")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: rows::text(row, "updated_by")?,
    })
}
