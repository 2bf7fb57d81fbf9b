//! Run dependencies on SQL (`crate::flow`): the runs an ended run starts, created in the
//! transaction that records its end.
//!
//! A transaction that ends runs does three things around its fenced writes:
//! 1. before them, it reads the links of the runs' tasks ([`SqlStore::flows_of`], one statement;
//!    most batches find none and cost nothing more) and locks the group of each run a fan-in
//!    waits for ([`SqlStore::lock_groups`]: its first run's row, in id order);
//! 2. it applies the reports;
//! 3. for each run that ended, it creates the runs its links start ([`SqlStore::follow`]).
//!
//! The group lock is what makes a fan-in exact: two runs of the same group that end at once
//! (two recorders, or the recorder and compensation) decide in turn, and the second sees the
//! first's end, so exactly one of them starts the waiting task. Every transaction that may
//! start a fan-in takes its group locks before any run row, so they cannot deadlock. On
//! MySQL/MariaDB the fan-in check reads with a shared lock, which reads what is committed
//! (a plain read would see the transaction's snapshot, taken before the lock was granted).

use std::collections::HashMap;

use serde_json::Value;

use super::*;
use crate::flow::{self, Link, LinkKind};
use crate::store::rows::text;

/// A run about to end, as its links see it.
#[derive(Debug)]
pub(super) struct Ending {
    /// Its group: its own id for a run nothing started.
    group_id: String,
    depth: u32,
    links: Vec<Link>,
}

/// The runs of a transaction that have links, by run id.
pub(super) type Flows = HashMap<String, Ending>;

/// What a retry keeps of the run it retries: its task, parent and params (as stored).
type Slot = (String, Option<String>, Option<String>);

/// A run to create and, when its params do not fit, why it is created failed.
struct Planned {
    new: NewRun,
    unfit: Option<String>,
}

impl SqlStore {
    /// The links of the tasks of `run_ids` (runs this transaction may end), read on `conn`.
    pub(super) async fn flows_of(
        &self,
        conn: &mut AnyConnection,
        run_ids: &[&str],
    ) -> StoreResult<Flows> {
        let mut flows = Flows::new();
        for chunk in run_ids.chunks(ROWS_PER_STATEMENT) {
            let sql = self.q(&format!(
                "SELECT r.id, r.task_id, r.group_id, r.depth, l.to_task, l.kind, l.for_each \
                 FROM runs r JOIN task_links l ON l.from_task = r.task_id WHERE r.id IN ({})",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *conn).await? {
                let id = text(&row, "id")?;
                let kind = text(&row, "kind")?;
                let link = Link {
                    from: text(&row, "task_id")?,
                    to: text(&row, "to_task")?,
                    kind: LinkKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("link kind {kind}")))?,
                    for_each: rows::opt_text(&row, "for_each")?,
                };
                let group_id = rows::opt_text(&row, "group_id")?.unwrap_or_else(|| id.clone());
                let depth = row.try_get::<i64, _>("depth")?.max(0) as u32;
                flows
                    .entry(id)
                    .or_insert_with(|| Ending {
                        group_id,
                        depth,
                        links: vec![],
                    })
                    .links
                    .push(link);
            }
        }
        Ok(flows)
    }

    /// Locks, in id order, the group of each run in `flows` that a fan-in waits for. SQLite
    /// has one writer at a time already.
    pub(super) async fn lock_groups(
        &self,
        conn: &mut AnyConnection,
        flows: &Flows,
    ) -> StoreResult<()> {
        let lock = match self.dialect {
            Dialect::Sqlite => return Ok(()),
            _ => " FOR UPDATE",
        };
        let mut groups: Vec<&str> = flows
            .values()
            .filter(|e| e.links.iter().any(|l| l.kind == LinkKind::Needs))
            .map(|e| e.group_id.as_str())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let sql = self.q(&format!("SELECT id FROM runs WHERE id = ?{lock}"));
        for group in groups {
            sqlx::query(&sql)
                .bind(group)
                .fetch_optional(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Creates, on `conn`, the runs that the end `report` records (its run ended
    /// `report.outcome.state`) starts; their jobs are returned, what could not start is said
    /// in the ended run's history.
    pub(super) async fn follow(
        &self,
        conn: &mut AnyConnection,
        flows: &Flows,
        report: &FinishReport<'_>,
        history: &mut Vec<RunHistoryEntry>,
    ) -> StoreResult<Vec<Job>> {
        let FinishReport {
            run_id,
            attempt,
            outcome,
            at_ms,
            ..
        } = *report;
        let (state, result) = (outcome.state, outcome.result.as_ref());
        let Some(ending) = flows.get(run_id) else {
            return Ok(vec![]);
        };
        let links: Vec<&Link> = ending
            .links
            .iter()
            .filter(|l| l.kind.fires(state))
            .collect();
        if links.is_empty() {
            return Ok(vec![]);
        }
        let mut note = |detail: String| {
            history.push(flow_entry(run_id, attempt, detail, at_ms));
        };
        if ending.depth >= flow::MAX_DEPTH {
            note(format!(
                "started nothing: {} steps from its group's first run, at most {}",
                ending.depth,
                flow::MAX_DEPTH
            ));
            return Ok(vec![]);
        }
        let parent = RunParent {
            group_id: ending.group_id.clone(),
            run_id: run_id.into(),
            depth: ending.depth + 1,
        };
        let mut planned = vec![];
        for link in links {
            let (task, version) = match self.target(conn, &link.to).await? {
                Ok(found) => found,
                Err(why) => {
                    note(format!(
                        "{}: did not start task {}: {why}",
                        link.kind.as_str(),
                        link.to
                    ));
                    continue;
                }
            };
            let schema = task.spec.params.as_ref();
            let mut plan = |params: Result<Option<Value>, Vec<String>>| {
                let (params, unfit) = match params {
                    Ok(p) => (p, None),
                    Err(errors) => (None, Some(errors.join("; "))),
                };
                planned.push(Planned {
                    new: NewRun {
                        params,
                        parent: Some(parent.clone()),
                        ..NewRun::new(task.clone(), version.clone(), link.kind.as_str())
                    },
                    unfit,
                });
            };
            match (link.kind, &link.for_each) {
                (LinkKind::Needs, _) => {
                    if self.join_ready(conn, &ending.group_id, &task).await? {
                        plan(flow::next_params(schema, None, "result"));
                    }
                }
                (_, Some(field)) => match flow::fan_out(result, field) {
                    Ok(items) => {
                        for item in items {
                            plan(flow::next_params(schema, Some(item), "item"));
                        }
                    }
                    Err(why) => note(format!(
                        "{}: did not start task {}: {why}",
                        link.kind.as_str(),
                        task.id
                    )),
                },
                (_, None) => plan(flow::next_params(schema, result, "result")),
            }
        }
        if planned.is_empty() {
            return Ok(vec![]);
        }
        let in_group = self.group_size(conn, &ending.group_id).await?;
        if in_group + planned.len() as u64 > flow::MAX_GROUP_RUNS {
            note(format!(
                "started nothing: its group holds {in_group} runs, and {} more would pass {}",
                planned.len(),
                flow::MAX_GROUP_RUNS
            ));
            return Ok(vec![]);
        }
        self.create_next(conn, run_id, planned, at_ms, history)
            .await
    }

    /// Inserts the `planned` runs that `run_id`'s end starts, and fails at once those whose
    /// params did not fit; the jobs of the others.
    async fn create_next(
        &self,
        conn: &mut AnyConnection,
        run_id: &str,
        planned: Vec<Planned>,
        at_ms: i64,
        history: &mut Vec<RunHistoryEntry>,
    ) -> StoreResult<Vec<Job>> {
        let rows: Vec<(String, &NewRun, Job, i64)> = planned
            .iter()
            .map(|p| {
                let id = new_id();
                let job = first_job(&id, &p.new);
                (id, &p.new, job, at_ms)
            })
            .collect();
        self.insert_runs(conn, &rows, at_ms, false).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        let fail = self.q("UPDATE runs SET state = 'failed', error = ?, finished_at = ?, closed_at = ? WHERE id = ? AND state = 'queued'");
        for ((id, new, job, _), p) in rows.into_iter().zip(&planned) {
            history.push(RunHistoryEntry {
                kind: "queued".into(),
                ..flow_entry(
                    &id,
                    1,
                    format!("trigger: {} of run {run_id}", new.trigger),
                    at_ms,
                )
            });
            match &p.unfit {
                None => jobs.push(job),
                Some(why) => {
                    let error = format!("not started: params from run {run_id}: {why}");
                    sqlx::query(&fail)
                        .bind(&error)
                        .bind(at_ms)
                        .bind(crate::time::now_ms())
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    history.push(RunHistoryEntry {
                        kind: "failed".into(),
                        ..flow_entry(&id, 1, error, at_ms)
                    });
                }
            }
        }
        Ok(jobs)
    }

    /// Task `id` and its project's current version, read on `conn`; or why a run of it cannot
    /// start.
    async fn target(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> StoreResult<Result<(Task, ProjectVersion), &'static str>> {
        let sql = self.q(&super::tasks::TASK_WITH_CURRENT_VERSION);
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(Err("it was deleted"));
        };
        if row.try_get::<Option<i64>, _>("v_version")?.is_none() {
            return Ok(Err("its project has no version"));
        }
        Ok(Ok((read_task(&row)?, read_version_as(&row, "v_")?)))
    }

    /// Whether fan-in `task` may start in `group`: it has no run there yet, and every task it
    /// needs has runs there, all succeeded (a run a retry replaced does not count). The caller
    /// holds the group's lock.
    async fn join_ready(
        &self,
        conn: &mut AnyConnection,
        group: &str,
        task: &Task,
    ) -> StoreResult<bool> {
        let shared = match self.dialect {
            Dialect::Mysql => " LOCK IN SHARE MODE",
            _ => "",
        };
        let sql = self.q(&format!(
            "SELECT id FROM runs WHERE group_id = ? AND task_id = ? LIMIT 1{shared}"
        ));
        let started = sqlx::query(&sql)
            .bind(group)
            .bind(&task.id)
            .fetch_optional(&mut *conn)
            .await?;
        if started.is_some() || task.spec.needs.is_empty() {
            return Ok(false);
        }
        let sql = self.q(&format!(
            "SELECT id, task_id, state, parent_id, params FROM runs WHERE (group_id = ? OR id = ?) AND task_id IN ({}){shared}",
            placeholders(task.spec.needs.len())
        ));
        let mut query = sqlx::query(&sql).bind(group).bind(group);
        for needed in &task.spec.needs {
            query = query.bind(needed);
        }
        // A retry replaces the run it retries: the same task, parent and params. Of each such
        // slot only the newest run counts (ids grow with time).
        let mut newest: HashMap<Slot, (String, bool)> = HashMap::new();
        for row in query.fetch_all(&mut *conn).await? {
            let id = text(&row, "id")?;
            let ok = text(&row, "state")? == RunState::Succeeded.as_str();
            let slot = (
                text(&row, "task_id")?,
                rows::opt_text(&row, "parent_id")?,
                rows::opt_text(&row, "params")?,
            );
            let kept = newest.entry(slot).or_insert_with(|| (id.clone(), ok));
            if id > kept.0 {
                *kept = (id, ok);
            }
        }
        let mut succeeded: HashMap<&str, bool> = HashMap::new();
        for ((task_id, ..), (_, ok)) in &newest {
            *succeeded.entry(task_id).or_insert(true) &= ok;
        }
        Ok(task
            .spec
            .needs
            .iter()
            .all(|n| succeeded.get(n.as_str()).copied().unwrap_or(false)))
    }

    /// Runs in `group` besides its first.
    async fn group_size(&self, conn: &mut AnyConnection, group: &str) -> StoreResult<u64> {
        let sql = self.q("SELECT COUNT(*) AS n FROM runs WHERE group_id = ?");
        let row = sqlx::query(&sql).bind(group).fetch_one(&mut *conn).await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }
}

/// A history line about what a run's end started.
fn flow_entry(run_id: &str, attempt: u32, detail: String, at_ms: i64) -> RunHistoryEntry {
    RunHistoryEntry {
        id: new_id(),
        run_id: run_id.into(),
        attempt,
        kind: "next".into(),
        detail,
        at: at_ms,
    }
}
