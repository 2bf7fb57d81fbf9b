//! [`RunStore`] on SQL: inserting queued runs, reading them, the fenced reports (applied in
//! `record.rs`), cancels, queue timeouts, holds and run history.

use super::*;
use crate::stats::RunTally;
use crate::store::rows::{json, opt_text, text};

/// Sets `queue_deadline` for a `not_before` bound to its `?` (not read from the column: MySQL
/// would see a `not_before` assigned earlier in the same `SET`, the others the old one). Every
/// write that queues a run or moves its `not_before` carries it, so that expired queued runs are
/// a range of the `(state, queue_deadline)` index.
pub(super) const SET_QUEUE_DEADLINE: &str =
    "queue_deadline = CASE WHEN queue_timeout_ms > 0 THEN ? + queue_timeout_ms ELSE NULL END";

/// When a run queued with `not_before` and this queue timeout expires; `None` without one.
fn queue_deadline(not_before: i64, timeout_ms: i64) -> Option<i64> {
    (timeout_ms > 0).then(|| not_before.saturating_add(timeout_ms))
}

/// The run `create_run` inserts, as reading it back would return it (the conformance suite
/// checks that): answering from memory saves a read per trigger.
pub(super) fn queued_run(id: String, new: &NewRun, now: i64) -> Run {
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
        keep: false,
        closed_at: None,
        params: new.params.clone(),
        overrides: new.overrides.clone(),
        group_id: new.parent.as_ref().map(|p| p.group_id.clone()),
        parent_id: new.parent.as_ref().map(|p| p.run_id.clone()),
        depth: new.parent.as_ref().map_or(0, |p| p.depth),
        due_at: new.due_at,
        queued_at: now,
        not_before: Some(now),
        started_at: None,
        finished_at: None,
        lease_token: None,
    }
}

/// The job a new run publishes for its first attempt.
pub(super) fn first_job(run_id: &str, new: &NewRun) -> Job {
    let (task, version) = (&new.task, &new.version);
    let mut job = Job {
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
        params: new.params.clone(),
        labels: task.spec.labels.clone(),
        prefer: task.spec.prefer.as_ref().map(|p| JobPreference {
            labels: p.labels.clone(),
            until_ms: crate::time::now_ms()
                .saturating_add(p.fallback_s.saturating_mul(1000) as i64),
        }),
        gates: task.spec.gates(&task.id),
        trace: new.trace.clone(),
    };
    if let Some(o) = &new.overrides {
        o.apply(&mut job.args, &mut job.env);
    }
    job
}

/// A history line written when a run is created.
pub(super) fn queued_entry(run_id: &str, trigger: &str, at_ms: i64) -> RunHistoryEntry {
    RunHistoryEntry {
        id: new_id(),
        run_id: run_id.into(),
        attempt: 1,
        kind: "queued".into(),
        detail: format!("trigger: {trigger}"),
        at: at_ms,
    }
}

impl SqlStore {
    /// Writes history lines on `conn` (one statement per [`ROWS_PER_STATEMENT`]), so callers can
    /// put them in the same transaction as the state change they record.
    pub(super) async fn insert_history(
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
    pub(super) async fn insert_runs(
        &self,
        tx: &mut AnyConnection,
        runs: &[(String, &NewRun, Job, i64)],
        at_ms: i64,
        skip_duplicates: bool,
    ) -> StoreResult<u64> {
        let mut affected = 0;
        let row = "(?, ?, ?, ?, 'queued', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        for chunk in runs.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("INSERT INTO runs (id, task_id, project_id, project_version, state, attempt, max_attempts, retry, queue, run_trigger, job, due_at, queued_at, not_before, queue_timeout_ms, queue_deadline, params, overrides, group_id, parent_id, depth) VALUES {}", rows_of(row, chunk.len()));
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
                    .bind(queue_deadline(*not_before, timeout_ms))
                    .bind(new.params.as_ref().map(|p| p.to_string()))
                    .bind(new.overrides.as_ref().map(to_json))
                    .bind(new.parent.as_ref().map(|p| p.group_id.clone()))
                    .bind(new.parent.as_ref().map(|p| p.run_id.clone()))
                    .bind(new.parent.as_ref().map_or(0, |p| p.depth as i64));
            }
            affected += query
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict(e, "a run for this task and due time"))?
                .rows_affected();
        }
        Ok(affected)
    }
}

#[async_trait]
impl RunStore for SqlStore {
    async fn create_run(&self, new: &NewRun) -> StoreResult<(Run, Job)> {
        self.create_run_queued(new).await
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
                out.push(read_run(&row)?);
            }
        }
        Ok(out)
    }

    async fn run(&self, id: &str) -> StoreResult<Run> {
        read_run(
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
        let (clauses, mut binds) = filter_clauses(f);
        let mut sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE {}{clauses}",
            after_cursor(cursor)
        );
        binds.splice(0..0, cursor.iter().map(|c| c.to_string()));
        if let Some(s) = f.state {
            sql.push_str(" AND state = ?");
            binds.push(s.as_str().to_string());
        }
        sql.push_str(" AND queued_at >= ? AND queued_at < ? ORDER BY id DESC LIMIT ?");
        let sql = self.q(&sql);
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b.as_str());
        }
        let rs = query
            .bind(f.since_ms.unwrap_or(0))
            .bind(f.until_ms.unwrap_or(i64::MAX))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rs.iter().map(read_run).collect::<StoreResult<Vec<_>>>()?;
        Ok(page(items, limit, |r| r.id.clone()))
    }

    async fn tally_runs(&self, f: &RunFilter, bucket_ms: i64) -> StoreResult<RunTally> {
        // The bucket is `offset - offset % size` (its start's offset) rather than a division:
        // `/` is exact division on MySQL/MariaDB and integer division elsewhere, `%` is the
        // same everywhere.
        let since = f.since_ms.unwrap_or(0);
        let bucket = bucket_ms.max(1);
        let (clauses, binds) = filter_clauses(f);
        let offset = "(queued_at - ?)";
        let start = format!("({offset} - {offset} % ?)");
        let window = format!("queued_at >= ? AND queued_at < ?{clauses}");
        let read = |sql: String| {
            let sql = self.q(&sql);
            let binds = binds.clone();
            let until = f.until_ms.unwrap_or(i64::MAX);
            async move {
                let mut query = sqlx::query(&sql)
                    .bind(since)
                    .bind(since)
                    .bind(bucket)
                    .bind(since)
                    .bind(until);
                for b in &binds {
                    query = query.bind(b.clone());
                }
                query.fetch_all(&self.pool).await
            }
        };
        let by_state = read(format!(
            "SELECT {start} AS b, state, COUNT(*) AS n FROM runs WHERE {window} GROUP BY b, state"
        ))
        .await?;
        let bin = crate::stats::duration_bin_sql("duration_ms");
        let by_duration = read(format!(
            "SELECT {start} AS b, {bin} AS d, COUNT(*) AS n FROM runs \
             WHERE {window} AND duration_ms IS NOT NULL GROUP BY b, d"
        ))
        .await?;
        let mut tally = RunTally::default();
        for row in &by_state {
            let state = rows::text(row, "state")?;
            let state = RunState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown run state {state:?}")))?;
            let (b, n) = (rows::int(row, "b")?, rows::int(row, "n")?);
            tally.states.push((b / bucket, state, n as u64));
        }
        for row in &by_duration {
            let (b, d, n) = (
                rows::int(row, "b")?,
                rows::int(row, "d")?,
                rows::int(row, "n")?,
            );
            tally.durations.push((b / bucket, d as usize, n as u64));
        }
        Ok(tally)
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
        rs.iter().map(read_run).collect()
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
        let recorded = self
            .finish_alone(&FinishReport {
                run_id,
                attempt,
                lease_token,
                outcome: o,
                at_ms,
            })
            .await?;
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
                RunEventKind::Finished(o) => self.finish_alone(&FinishReport::of(ev, o)).await,
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
             closed_at = CASE WHEN state = 'queued' THEN ? ELSE closed_at END, \
             error = CASE WHEN state = 'queued' THEN 'cancelled before it started' ELSE error END, \
             state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END \
             WHERE id = ? AND state IN ('queued', 'running')");
        let done = sqlx::query(&sql)
            .bind(at_ms)
            .bind(crate::time::now_ms())
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

    async fn group_runs(&self, group_id: &str, limit: u32) -> StoreResult<Vec<Run>> {
        let sql = self.q(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE group_id = ? OR id = ? ORDER BY queued_at, id LIMIT ?"));
        let rs = sqlx::query(&sql)
            .bind(group_id)
            .bind(group_id)
            .bind(limit.max(1) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(read_run).collect()
    }

    async fn run_history(&self, run_id: &str) -> StoreResult<Vec<RunHistoryEntry>> {
        let sql = self.q("SELECT * FROM run_history WHERE run_id = ? ORDER BY id");
        let rs = sqlx::query(&sql).bind(run_id).fetch_all(&self.pool).await?;
        rs.iter().map(read_history).collect()
    }

    async fn add_history(&self, e: &RunHistoryEntry) -> StoreResult<()> {
        let mut conn = self.writes.acquire().await?;
        self.insert_history(&mut conn, std::slice::from_ref(e))
            .await
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
        rs.iter().map(read_run).collect()
    }

    async fn expire_run(&self, run_id: &str, attempt: u32, at_ms: i64) -> StoreResult<Run> {
        let mut tx = self.begin_write().await?;
        let flows = self.flows_of(&mut tx, &[run_id]).await?;
        self.lock_groups(&mut tx, &flows).await?;
        let sql = self.q("UPDATE runs SET state = 'failed', error = 'expired: not started within its queue timeout', finished_at = ?, closed_at = ? WHERE id = ? AND attempt = ? AND state = 'queued'");
        let done = sqlx::query(&sql)
            .bind(at_ms)
            .bind(crate::time::now_ms())
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
        // Its next runs are published by compensation, which expired it.
        let mut history = vec![];
        let ended = FinishReport {
            run_id,
            attempt,
            lease_token: None,
            outcome: &Outcome::bare(RunState::Failed, 0),
            at_ms,
        };
        self.follow(&mut tx, &flows, &ended, &mut history).await?;
        self.insert_history(&mut tx, &history).await?;
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
        rs.iter().map(read_run).collect()
    }
}

pub(super) const RUN_COLUMNS: &str = "id, task_id, project_id, project_version, state, attempt, \
    max_attempts, queue, run_trigger, lease_token, worker_id, exit_code, exit_signal, error, \
    duration_ms, peak_rss_kb, log_key, result, cancel_requested, due_at, queued_at, not_before, \
    started_at, finished_at, closed_at, pinned, params, overrides, group_id, parent_id, depth";

pub(super) fn read_run(row: &AnyRow) -> StoreResult<Run> {
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
        keep: row.try_get::<i64, _>("pinned")? != 0,
        due_at: row.try_get("due_at")?,
        queued_at: row.try_get("queued_at")?,
        not_before: row.try_get("not_before")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        closed_at: row.try_get("closed_at")?,
        params: opt_text(row, "params")?
            .map(|p| json(&p, "params"))
            .transpose()?,
        overrides: opt_text(row, "overrides")?
            .map(|o| json(&o, "overrides"))
            .transpose()?,
        group_id: opt_text(row, "group_id")?,
        parent_id: opt_text(row, "parent_id")?,
        depth: row.try_get::<i64, _>("depth")?.max(0) as u32,
    })
}

fn read_history(row: &AnyRow) -> StoreResult<RunHistoryEntry> {
    Ok(RunHistoryEntry {
        id: text(row, "id")?,
        run_id: text(row, "run_id")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        kind: text(row, "kind")?,
        detail: text(row, "detail")?,
        at: row.try_get("at")?,
    })
}

/// The `AND …` clauses of a run filter other than its state and time window, with their
/// binds in order.
fn filter_clauses(f: &RunFilter) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut binds = vec![];
    if let Some(t) = &f.task_id {
        sql.push_str(" AND task_id = ?");
        binds.push(t.clone());
    }
    if let Some(w) = &f.worker_id {
        sql.push_str(" AND worker_id = ?");
        binds.push(w.clone());
    }
    if let Some(t) = &f.trigger {
        sql.push_str(" AND run_trigger = ?");
        binds.push(t.clone());
    }
    if let Some(e) = &f.error {
        // `!` escapes LIKE's wildcards the same way on every engine (a backslash does not).
        // Case is ignored for ASCII letters: SQLite's LOWER folds only those, so other text
        // is matched as given (PostgreSQL would fold it, SQLite not).
        let folded = e.is_ascii();
        sql.push_str(match folded {
            true => " AND LOWER(error) LIKE ? ESCAPE '!'",
            false => " AND error LIKE ? ESCAPE '!'",
        });
        let given = match folded {
            true => e.to_ascii_lowercase(),
            false => e.clone(),
        };
        let escaped = given
            .replace('!', "!!")
            .replace('%', "!%")
            .replace('_', "!_");
        binds.push(format!("%{escaped}%"));
    }
    (sql, binds)
}
