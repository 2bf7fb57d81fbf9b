//! [`ScheduleStore`] on SQL: due tasks and the scheduler leader's fenced batch of fires.

use super::*;

fn stale(lock: &str, token: i64, current: i64) -> StoreError {
    StoreError::Stale(format!(
        "fencing token {token} of {lock:?} is older than {current}: this leader was deposed"
    ))
}

impl SqlStore {
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
}

#[async_trait]
impl ScheduleStore for SqlStore {
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
        rs.iter().map(read_task).collect()
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
}
