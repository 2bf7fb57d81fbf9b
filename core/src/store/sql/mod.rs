//! [`SqlStore`]: the `Store` seam on sqlx `Any`, for SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! This file holds the struct, connecting, the dialect, migrations and the statement helpers
//! every aggregate shares. Each sub-trait of `Store` is implemented, with its SQL and its row
//! mapping, in a file of its own: `users.rs`, `projects.rs`, `tasks.rs`, `schedules.rs`,
//! `runs.rs` (its fenced reports in `record.rs`, its group commit in `create.rs`), `audit.rs`,
//! `workers.rs`, `secrets.rs`, `alerts.rs` and `retention.rs`.
//!
//! Queries are written once with `?` placeholders; `SqlStore::q` rewrites them to `$n` for
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
//! Per trigger the store costs one read ([`TaskStore::task_with_current_version`]: the task, its
//! project and the current version joined) and a share of one write transaction
//! ([`RunStore::create_run`], a group commit: `sql/create.rs`).

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use std::time::Duration;

use super::migrations::{render, rewrite_data, MIGRATIONS};
use super::rows::{self, to_json};
use super::*;
use crate::ids::new_id;

mod alerts;
mod audit;
mod create;
mod flow;
mod hooks;
mod projects;
mod record;
mod retention;
mod runs;
mod schedules;
mod secrets;
mod tasks;
mod users;
mod workers;

use projects::{read_version_as, VERSION_COLUMNS};
use record::{FinishReport, StartReport};
use runs::{first_job, queued_entry, queued_run, read_run, RUN_COLUMNS, SET_QUEUE_DEADLINE};
use tasks::{read_task, TASK_COLUMNS};

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

/// The outcome of a write of one row by its key: `NotFound` when it touched none.
fn found(done: sqlx::any::AnyQueryResult) -> StoreResult<()> {
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
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

/// `?, ?, …` with `n` placeholders.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `row, row, …`: `n` copies of a `VALUES` tuple.
fn rows_of(row: &str, n: usize) -> String {
    vec![row; n].join(", ")
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
    /// `INSERT INTO table (key, columns…)` that, when a row of the same `key` exists, replaces
    /// its `columns` but `created_at`: one statement per dialect, so two writers of one key
    /// never collide on it. Placeholders are `?` (run it through [`SqlStore::q`]).
    fn upsert(&self, table: &str, key: &str, columns: &[&str]) -> String {
        let all = std::iter::once(key)
            .chain(columns.iter().copied())
            .collect::<Vec<_>>();
        let marks = vec!["?"; all.len()].join(", ");
        let replaced = columns.iter().filter(|c| **c != "created_at");
        let set = match self.dialect {
            Dialect::Mysql => replaced
                .map(|c| format!("{c} = VALUES({c})"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => replaced
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let on_conflict = match self.dialect {
            Dialect::Mysql => format!("ON DUPLICATE KEY UPDATE {set}"),
            _ => format!("ON CONFLICT ({key}) DO UPDATE SET {set}"),
        };
        format!(
            "INSERT INTO {table} ({}) VALUES ({marks}) {on_conflict}",
            all.join(", ")
        )
    }

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
        found(sqlx::query(&sql).bind(id).execute(&self.writes).await?)
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
        found(
            sqlx::query(&self.q(&format!("DELETE FROM {table} WHERE id = ?")))
                .bind(id)
                .execute(&mut *tx)
                .await?,
        )?;
        sqlx::query(&self.q(&format!("DELETE FROM {child} WHERE {key} = ?")))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl HealthStore for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").fetch_all(&self.pool).await?;
        Ok(())
    }
}
