//! Runner reports applied to runs: the fenced `queued → running` write and the attempt's
//! outcome, one at a time ([`RunStore::mark_started`], [`RunStore::finish_attempt`]) or as a batch in
//! one transaction ([`RunStore::record_events`], the recorder's path: one commit, which on SQLite
//! is one `fsync`, for every event that arrived together). In a batch, a run's start and the
//! end of that same attempt (a short run reports both before the recorder's next commit) are
//! written as one `UPDATE` when the start applies as a first start; any other case is written
//! event by event, so the result is always what the events would write one at a time.

use super::*;
use std::collections::HashMap;

/// How often an outcome is re-decided when its run changed between the read and the fenced
/// write (a cancel request landing in between).
const FINISH_TRIES: usize = 4;

impl SqlStore {
    /// A transaction that reads rows and then updates them. On SQLite it takes the write lock
    /// at `BEGIN`: a deferred transaction that has read cannot upgrade once another connection
    /// has written, and would fail instead of waiting.
    pub(super) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.writes.begin_with("BEGIN IMMEDIATE").await?,
            _ => self.writes.begin().await?,
        })
    }

    /// The run and its retry policy, read on `conn` for a decision written on the same
    /// connection. The row is locked until the transaction ends (SQLite: by `BEGIN IMMEDIATE`).
    async fn run_for_update(
        &self,
        conn: &mut AnyConnection,
        run_id: &str,
    ) -> StoreResult<(Run, RetryPolicy)> {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            _ => " FOR UPDATE",
        };
        let sql = self.q(&format!(
            "SELECT {RUN_COLUMNS}, retry FROM runs WHERE id = ?{lock}"
        ));
        let row = sqlx::query(&sql)
            .bind(run_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
        let retry = serde_json::from_str(&rows::text(&row, "retry")?)
            .map_err(|e| StoreError::Corrupt(format!("retry policy of run {run_id}: {e}")))?;
        Ok((read_run(&row)?, retry))
    }

    /// `queued` → `running` for `ev`'s attempt on `conn`; its history entry is added to
    /// `history` (written by the caller in the same transaction). A repeat of the same start is
    /// accepted; anything else that no longer matches is stale.
    pub(super) async fn start_in(
        &self,
        conn: &mut AnyConnection,
        ev: &StartReport<'_>,
        history: &mut Vec<RunHistoryEntry>,
    ) -> StoreResult<()> {
        let sql = self.q("UPDATE runs SET state = 'running', lease_token = ?, worker_id = ?, started_at = ? WHERE id = ? AND attempt = ? AND state = 'queued' AND cancel_requested = 0");
        let done = sqlx::query(&sql)
            .bind(ev.lease_token)
            .bind(ev.worker_id)
            .bind(ev.at_ms)
            .bind(ev.run_id)
            .bind(ev.attempt as i64)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 1 {
            history.push(started_entry(ev));
            return Ok(());
        }
        let run = read_run(
            &sqlx::query(&self.q(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?")))
                .bind(ev.run_id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(StoreError::NotFound)?,
        )?;
        if run.state == RunState::Running
            && run.attempt == ev.attempt
            && run.lease_token.as_deref() == Some(ev.lease_token)
        {
            return Ok(());
        }
        Err(StoreError::Stale(format!(
            "run {} is {} at attempt {}; start of attempt {} refused",
            ev.run_id,
            run.state.as_str(),
            run.attempt,
            ev.attempt
        )))
    }

    /// Applies an attempt's outcome on `conn` if the attempt (and the lease token, when given)
    /// still matches: terminal, or `queued` again for the next attempt when the outcome is
    /// retryable and attempts remain. The history entry goes to `history`.
    pub(super) async fn finish_in(
        &self,
        conn: &mut AnyConnection,
        report: &FinishReport<'_>,
        history: &mut Vec<RunHistoryEntry>,
    ) -> StoreResult<Recorded> {
        let FinishReport {
            run_id,
            attempt,
            lease_token,
            outcome: o,
            at_ms,
        } = *report;
        if !o.state.is_retryable() {
            return self.end_in(conn, report, history).await;
        }
        for _ in 0..FINISH_TRIES {
            let (run, retry) = self.run_for_update(conn, run_id).await?;
            let fenced = run.attempt == attempt
                && !run.state.is_terminal()
                && (lease_token.is_none() || run.lease_token.as_deref() == lease_token);
            if !fenced {
                return Err(StoreError::Stale(format!(
                    "run {run_id} is {} at attempt {}; report for attempt {attempt} refused",
                    run.state.as_str(),
                    run.attempt
                )));
            }
            if attempt >= run.max_attempts || run.cancel_requested {
                // No attempt left, or cancelled: the run ends. The row is locked since the
                // read, so the plain fenced end is exact.
                return self.end_in(conn, report, history).await;
            }
            // Queued again for the next attempt. Fenced on everything the decision read:
            // attempt, state, lease token and the cancel flag.
            let token = lease_token.unwrap_or("");
            let sql = self.q(&format!("UPDATE runs SET {} \
                 WHERE id = ? AND attempt = ? AND state = ? AND cancel_requested = 0 AND (lease_token = ? OR ? = '')", set_next_attempt()));
            let not_before =
                at_ms + retry.jittered_backoff_ms(attempt + 1, jitter_seed(run_id, attempt));
            let done = bind_next_attempt(sqlx::query(&sql), not_before, o)
                .bind(run_id)
                .bind(attempt as i64)
                .bind(run.state.as_str())
                .bind(token)
                .bind(token)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() != 1 {
                // The row changed after the read: decide again on what it is now.
                continue;
            }
            history.push(history_entry(
                run_id,
                attempt,
                o.state.as_str(),
                to_json(o),
                at_ms,
            ));
            return Ok(Recorded::Finished {
                state: RunState::Queued,
                requeued: true,
                next: vec![],
            });
        }
        Err(StoreError::Stale(format!(
            "run {run_id} kept changing while its attempt {attempt} was being recorded"
        )))
    }

    /// [`Self::finish_in`] for an outcome that is never retried (success, cancel): the run
    /// ends whatever its retry policy, so one fenced write does it without reading the run
    /// first; the run is read only to say why a refused report was stale.
    async fn end_in(
        &self,
        conn: &mut AnyConnection,
        report: &FinishReport<'_>,
        history: &mut Vec<RunHistoryEntry>,
    ) -> StoreResult<Recorded> {
        let (run_id, attempt, o, token) = report.parts();
        let sql = self.q(&format!("UPDATE runs SET state = ?, {SET_OUTCOME}, finished_at = ?, closed_at = ? \
             WHERE id = ? AND attempt = ? AND state IN ('queued', 'running') AND (lease_token = ? OR ? = '')"));
        let done = bind_outcome(sqlx::query(&sql).bind(o.state.as_str()), o)
            .bind(report.at_ms)
            .bind(crate::time::now_ms())
            .bind(run_id)
            .bind(attempt as i64)
            .bind(token)
            .bind(token)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() != 1 {
            let (run, _) = self.run_for_update(conn, run_id).await?;
            return Err(StoreError::Stale(format!(
                "run {run_id} is {} at attempt {}; report for attempt {attempt} refused",
                run.state.as_str(),
                run.attempt
            )));
        }
        history.push(history_entry(
            run_id,
            attempt,
            o.state.as_str(),
            to_json(o),
            report.at_ms,
        ));
        Ok(Recorded::Finished {
            state: o.state,
            requeued: false,
            next: vec![],
        })
    }

    /// An attempt its runner's shutdown interrupted, on `conn`: back to `queued` as the next
    /// attempt, due now, with one more attempt allowed so the interruption costs no retry.
    /// Fenced on the running attempt and its lease token; a run with a cancel requested ends
    /// `cancelled` instead (the user asked for it to stop, and it has).
    pub(super) async fn interrupt_in(
        &self,
        conn: &mut AnyConnection,
        report: &FinishReport<'_>,
        history: &mut Vec<RunHistoryEntry>,
    ) -> StoreResult<Recorded> {
        let (run_id, attempt, o, token) = report.parts();
        let sql = self.q(&format!("UPDATE runs SET max_attempts = max_attempts + 1, {} \
             WHERE id = ? AND attempt = ? AND state = 'running' AND cancel_requested = 0 AND lease_token = ?", set_next_attempt()));
        let done = bind_next_attempt(sqlx::query(&sql), report.at_ms, o)
            .bind(run_id)
            .bind(attempt as i64)
            .bind(token)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 1 {
            let mut queued = o.clone();
            queued.state = RunState::Queued;
            history.push(history_entry(
                run_id,
                attempt,
                "interrupted",
                to_json(&queued),
                report.at_ms,
            ));
            return Ok(Recorded::Interrupted {
                state: RunState::Queued,
            });
        }
        let (run, _) = self.run_for_update(conn, run_id).await?;
        let ours = run.attempt == attempt
            && run.state == RunState::Running
            && run.lease_token.as_deref() == report.lease_token;
        if ours && run.cancel_requested {
            let mut cancelled = o.clone();
            cancelled.state = RunState::Cancelled;
            cancelled.error = Some("cancelled".into());
            let end = FinishReport {
                outcome: &cancelled,
                ..*report
            };
            self.end_in(conn, &end, history).await?;
            return Ok(Recorded::Interrupted {
                state: RunState::Cancelled,
            });
        }
        Err(StoreError::Stale(format!(
            "run {run_id} is {} at attempt {}; interruption of attempt {attempt} refused",
            run.state.as_str(),
            run.attempt
        )))
    }

    /// An attempt's outcome in a transaction of its own, with the runs its end starts.
    pub(super) async fn finish_alone(&self, report: &FinishReport<'_>) -> StoreResult<Recorded> {
        let mut tx = self.begin_write().await?;
        let flows = self.flows_of(&mut tx, &[report.run_id]).await?;
        self.lock_groups(&mut tx, &flows).await?;
        let mut history = Vec::with_capacity(1);
        let mut recorded = self.finish_in(&mut tx, report, &mut history).await?;
        if let Recorded::Finished {
            requeued: false,
            next,
            ..
        } = &mut recorded
        {
            *next = self.follow(&mut tx, &flows, report, &mut history).await?;
        }
        self.insert_history(&mut tx, &history).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// [`Self::interrupt_in`] in a transaction of its own.
    pub(super) async fn interrupt_attempt(
        &self,
        ev: &RunEvent,
        outcome: &Outcome,
    ) -> StoreResult<Recorded> {
        let mut tx = self.begin_write().await?;
        let mut history = Vec::with_capacity(1);
        let recorded = self
            .interrupt_in(&mut tx, &FinishReport::of(ev, outcome), &mut history)
            .await?;
        self.insert_history(&mut tx, &history).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// [`RunStore::record_events`] in one transaction. An `Err` means nothing was committed.
    pub(super) async fn record_batch(
        &self,
        events: &[RunEvent],
    ) -> StoreResult<Vec<StoreResult<Recorded>>> {
        let ends = ends_of_starts(events);
        let mut tx = self.begin_write().await?;
        let ending: Vec<&str> = events
            .iter()
            .filter(|e| matches!(e.kind, RunEventKind::Finished(_)))
            .map(|e| e.run_id.as_str())
            .collect();
        let flows = self.flows_of(&mut tx, &ending).await?;
        self.lock_groups(&mut tx, &flows).await?;
        let mut history = Vec::with_capacity(events.len());
        let mut out: Vec<Option<StoreResult<Recorded>>> = events.iter().map(|_| None).collect();
        for (at, ev) in events.iter().enumerate() {
            if out[at].is_some() {
                continue; // a finish already written with its start
            }
            if let Some(end) = ends[at] {
                if let Some(ended) = self
                    .start_and_end_in(&mut tx, ev, &events[end], &mut history)
                    .await?
                {
                    out[at] = Some(Ok(Recorded::Started));
                    out[end] = Some(Ok(ended));
                    continue;
                }
            }
            let applied = match &ev.kind {
                RunEventKind::Started => self
                    .start_in(&mut tx, &StartReport::of(ev), &mut history)
                    .await
                    .map(|()| Recorded::Started),
                RunEventKind::Finished(outcome) => {
                    let report = FinishReport::of(ev, outcome);
                    self.finish_in(&mut tx, &report, &mut history).await
                }
                RunEventKind::Interrupted(outcome) => {
                    let report = FinishReport::of(ev, outcome);
                    self.interrupt_in(&mut tx, &report, &mut history).await
                }
            };
            match applied {
                // The statement failed: PostgreSQL has aborted the transaction, and on any
                // engine the batch is no longer known to be whole. Nothing is committed.
                Err(StoreError::Db(e)) => return Err(StoreError::Db(e)),
                other => out[at] = Some(other),
            }
        }
        for (ev, applied) in events.iter().zip(out.iter_mut()) {
            let (
                RunEventKind::Finished(o),
                Some(Ok(Recorded::Finished {
                    requeued: false,
                    next,
                    ..
                })),
            ) = (&ev.kind, applied)
            else {
                continue;
            };
            let report = FinishReport::of(ev, o);
            *next = self.follow(&mut tx, &flows, &report, &mut history).await?;
        }
        self.insert_history(&mut tx, &history).await?;
        tx.commit().await?;
        Ok(out.into_iter().flatten().collect())
    }

    /// A start and the end of the same attempt, reported together, in one write: what
    /// [`Self::start_in`] then [`Self::end_in`] would write when the start applies (the run is
    /// `queued` at that attempt and not cancelled; the end then matches the token just set).
    /// `None`, with nothing written, when the start does not apply as a first start: the
    /// caller then writes them one at a time, which decides every other case.
    async fn start_and_end_in(
        &self,
        conn: &mut AnyConnection,
        start: &RunEvent,
        end: &RunEvent,
        history: &mut Vec<RunHistoryEntry>,
    ) -> StoreResult<Option<Recorded>> {
        let RunEventKind::Finished(o) = &end.kind else {
            return Ok(None);
        };
        let sql = self.q(&format!("UPDATE runs SET state = ?, lease_token = ?, worker_id = ?, started_at = ?, {SET_OUTCOME}, finished_at = ?, closed_at = ? \
             WHERE id = ? AND attempt = ? AND state = 'queued' AND cancel_requested = 0"));
        let query = sqlx::query(&sql)
            .bind(o.state.as_str())
            .bind(&start.lease_token)
            .bind(&start.worker_id)
            .bind(start.at_ms);
        let done = bind_outcome(query, o)
            .bind(end.at_ms)
            .bind(crate::time::now_ms())
            .bind(&start.run_id)
            .bind(start.attempt as i64)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        history.push(started_entry(&StartReport::of(start)));
        history.push(history_entry(
            &end.run_id,
            end.attempt,
            o.state.as_str(),
            to_json(o),
            end.at_ms,
        ));
        Ok(Some(Recorded::Finished {
            state: o.state,
            requeued: false,
            next: vec![],
        }))
    }
}

/// For each `Started` event, the index of the `Finished` event of the same attempt and lease
/// that directly follows it among its run's events, when that outcome is never retried (so
/// its write needs no read of the run first). Such pairs may be written as one.
fn ends_of_starts(events: &[RunEvent]) -> Vec<Option<usize>> {
    let mut ends = vec![None; events.len()];
    let mut last_of_run: HashMap<&str, usize> = HashMap::new();
    for (at, ev) in events.iter().enumerate() {
        if let (RunEventKind::Finished(o), Some(&before)) =
            (&ev.kind, last_of_run.get(ev.run_id.as_str()))
        {
            let start = &events[before];
            if matches!(start.kind, RunEventKind::Started)
                && start.attempt == ev.attempt
                && start.lease_token == ev.lease_token
                && !o.state.is_retryable()
            {
                ends[before] = Some(at);
            }
        }
        last_of_run.insert(&ev.run_id, at);
    }
    ends
}

/// A `Started` report's fields.
pub(super) struct StartReport<'a> {
    pub run_id: &'a str,
    pub attempt: u32,
    pub lease_token: &'a str,
    pub worker_id: &'a str,
    pub at_ms: i64,
}

impl<'a> StartReport<'a> {
    fn of(ev: &'a RunEvent) -> StartReport<'a> {
        StartReport {
            run_id: &ev.run_id,
            attempt: ev.attempt,
            lease_token: &ev.lease_token,
            worker_id: &ev.worker_id,
            at_ms: ev.at_ms,
        }
    }
}

/// A `Finished` report's fields (`lease_token` is `None` for the scheduler's own verdicts).
#[derive(Clone, Copy)]
pub(super) struct FinishReport<'a> {
    pub run_id: &'a str,
    pub attempt: u32,
    pub lease_token: Option<&'a str>,
    pub outcome: &'a Outcome,
    pub at_ms: i64,
}

impl<'a> FinishReport<'a> {
    /// The run, the attempt, its outcome and the lease token (`""` when the report has none).
    fn parts(&self) -> (&'a str, u32, &'a Outcome, &'a str) {
        let token = self.lease_token.unwrap_or("");
        (self.run_id, self.attempt, self.outcome, token)
    }

    /// A runner's report (always under its lease).
    pub fn of(ev: &'a RunEvent, outcome: &'a Outcome) -> FinishReport<'a> {
        FinishReport {
            run_id: &ev.run_id,
            attempt: ev.attempt,
            lease_token: Some(&ev.lease_token),
            outcome,
            at_ms: ev.at_ms,
        }
    }
}

/// The columns an attempt's outcome sets, bound by [`bind_outcome`] in this order.
const SET_OUTCOME: &str = "exit_code = ?, exit_signal = ?, error = ?, duration_ms = ?, peak_rss_kb = ?, log_key = ?, result = ?";

fn bind_outcome<'q>(query: AnyQuery<'q>, o: &Outcome) -> AnyQuery<'q> {
    query
        .bind(o.exit_code.map(i64::from))
        .bind(o.signal.map(i64::from))
        .bind(o.error.clone())
        .bind(o.duration_ms)
        .bind(o.peak_rss_kb)
        .bind(o.log_key.clone())
        .bind(o.result.as_ref().map(to_json))
}

/// The columns that queue a run again as its next attempt, due at a time and carrying the
/// ended attempt's exit and error; bound by [`bind_next_attempt`] in this order.
fn set_next_attempt() -> String {
    format!("state = 'queued', attempt = attempt + 1, lease_token = NULL, worker_id = NULL, not_before = ?, {SET_QUEUE_DEADLINE}, started_at = NULL, exit_code = ?, exit_signal = ?, error = ?")
}

fn bind_next_attempt<'q>(query: AnyQuery<'q>, not_before: i64, o: &Outcome) -> AnyQuery<'q> {
    query
        .bind(not_before)
        .bind(not_before)
        .bind(o.exit_code.map(i64::from))
        .bind(o.signal.map(i64::from))
        .bind(o.error.clone())
}

/// The history line of an applied start.
fn started_entry(ev: &StartReport<'_>) -> RunHistoryEntry {
    history_entry(
        ev.run_id,
        ev.attempt,
        "running",
        format!("worker {}", ev.worker_id),
        ev.at_ms,
    )
}

fn history_entry(
    run_id: &str,
    attempt: u32,
    kind: &str,
    detail: String,
    at_ms: i64,
) -> RunHistoryEntry {
    RunHistoryEntry {
        id: new_id(),
        run_id: run_id.into(),
        attempt,
        kind: kind.into(),
        detail,
        at: at_ms,
    }
}

/// A per-run, per-attempt number for backoff jitter (stable, so a repeated report is harmless).
fn jitter_seed(run_id: &str, attempt: u32) -> u64 {
    let digest = crate::ids::sha256_hex(format!("{run_id}/{attempt}").as_bytes());
    u64::from_str_radix(&digest[..16], 16).unwrap_or(0)
}
