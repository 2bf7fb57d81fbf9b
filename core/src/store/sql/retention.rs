//! [`RetentionStore`] on SQL: the global policy in `settings`, pinned runs, and the pruner's
//! reads and deletes.
//!
//! Every read is a page of an index in its own order, so a pass costs the same with a thousand
//! runs or a hundred million: `(closed_at, id)` for age, `(task_id, closed_at, id)` for a task's
//! age and its `keep_last` boundary, `(at, id)` for the audit trail. Deletes take ids the
//! pruner read, a few hundred at a time, so no statement holds the writer for long.

use super::*;
use crate::alerting::ClosedKey;
use crate::retention::{PrunableRun, RetentionPolicy, TaskRetention};
use crate::store::rows::{json, opt_text, text};

const POLICY: &str = "retention";

impl SqlStore {
    /// Inserts or replaces the setting `name`.
    pub(super) async fn put_setting(&self, name: &str, value: &str, at_ms: i64) -> StoreResult<()> {
        let sql = self.upsert("settings", "name", &["value", "updated_at"]);
        sqlx::query(&self.q(&sql))
            .bind(name)
            .bind(value)
            .bind(at_ms)
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    /// The condition that selects prunable runs: ended, unpinned, before a key, of one task or
    /// of all but some. The key's values are bound first ([`SqlStore::bind_before`]), then the
    /// returned binds.
    fn prunable_where(&self, task_id: Option<&str>, except: &[String]) -> (String, Vec<String>) {
        let mut sql = format!(
            "closed_at IS NOT NULL AND pinned = 0 AND {}",
            match self.dialect {
                Dialect::Mysql => "(closed_at < ? OR (closed_at = ? AND id < ?))",
                _ => "(closed_at, id) < (?, ?)",
            }
        );
        let mut binds = vec![];
        match task_id {
            Some(t) => {
                sql.push_str(" AND task_id = ?");
                binds.push(t.to_string());
            }
            None if !except.is_empty() => {
                sql.push_str(&format!(
                    " AND task_id NOT IN ({})",
                    placeholders(except.len())
                ));
                binds.extend(except.iter().cloned());
            }
            None => {}
        }
        (sql, binds)
    }

    fn bind_before<'q>(&self, mut query: AnyQuery<'q>, before: &'q ClosedKey) -> AnyQuery<'q> {
        query = query.bind(before.closed_at);
        if self.dialect == Dialect::Mysql {
            query = query.bind(before.closed_at);
        }
        query.bind(&before.id)
    }

    /// Ids of `table`'s rows whose `column` is before `before_ms` (and `extra`, a condition
    /// starting with AND), in `(column, id)` order, at most `limit`.
    async fn ids_before(
        &self,
        table: &str,
        column: &str,
        extra: &str,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let sql = self.q(&format!(
            "SELECT id FROM {table} WHERE {column} < ?{extra} ORDER BY {column}, id LIMIT ?"
        ));
        let rs = sqlx::query(&sql)
            .bind(before_ms)
            .bind(page_size(limit) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(|r| text(r, "id")).collect()
    }

    /// `DELETE FROM table WHERE id IN (…) extra` over `ids`, in one transaction after deleting
    /// the rows of `child` (a table and its column) that point at them.
    async fn delete_ids(
        &self,
        table: &str,
        extra: &str,
        child: Option<(&str, &str)>,
        ids: &[String],
    ) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let list = placeholders(ids.len());
        let mut tx = self.writes.begin().await?;
        if let Some((child, column)) = child {
            let sql = self.q(&format!("DELETE FROM {child} WHERE {column} IN ({list})"));
            let mut q = sqlx::query(&sql);
            for id in ids {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        let sql = self.q(&format!("DELETE FROM {table} WHERE id IN ({list}){extra}"));
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        let n = q.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

#[async_trait]
impl RetentionStore for SqlStore {
    async fn retention_policy(&self) -> StoreResult<RetentionPolicy> {
        match self
            .one("SELECT value FROM settings WHERE name = ?", &[POLICY])
            .await
        {
            Ok(row) => json(&text(&row, "value")?, "retention policy"),
            Err(StoreError::NotFound) => Ok(RetentionPolicy::default()),
            Err(e) => Err(e),
        }
    }

    async fn set_retention_policy(&self, policy: &RetentionPolicy, at_ms: i64) -> StoreResult<()> {
        self.put_setting(POLICY, &to_json(policy), at_ms).await
    }

    async fn set_run_pinned(&self, run_id: &str, keep: bool) -> StoreResult<Run> {
        let sql = self.q("UPDATE runs SET pinned = ? WHERE id = ?");
        // Not `found`: MySQL counts only changed rows, and pinning a pinned run changes none.
        sqlx::query(&sql)
            .bind(keep as i64)
            .bind(run_id)
            .execute(&self.writes)
            .await?;
        self.run(run_id).await
    }

    async fn prunable_runs(
        &self,
        task_id: Option<&str>,
        except: &[String],
        before: &ClosedKey,
        after: Option<&ClosedKey>,
        limit: u32,
    ) -> StoreResult<Vec<PrunableRun>> {
        let (cond, binds) = self.prunable_where(task_id, except);
        let key = after.map(|k| (k.closed_at, k.id.as_str()));
        let sql = self.q(&format!(
            "SELECT id, closed_at, log_key FROM runs WHERE {cond}{} ORDER BY closed_at, id LIMIT ?",
            self.after_key("closed_at", key)
        ));
        let mut query = self.bind_before(sqlx::query(&sql), before);
        for b in &binds {
            query = query.bind(b);
        }
        let rs = self
            .bind_key(query, key)
            .bind(page_size(limit) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter()
            .map(|r| {
                Ok(PrunableRun {
                    id: text(r, "id")?,
                    closed_at: r.try_get("closed_at")?,
                    log_key: opt_text(r, "log_key")?,
                })
            })
            .collect()
    }

    async fn keep_last_boundary(
        &self,
        task_id: &str,
        keep_last: u32,
    ) -> StoreResult<Option<ClosedKey>> {
        let sql = self.q(
            "SELECT id, closed_at FROM runs WHERE task_id = ? AND closed_at IS NOT NULL \
             ORDER BY closed_at DESC, id DESC LIMIT 1 OFFSET ?",
        );
        let row = sqlx::query(&sql)
            .bind(task_id)
            .bind(keep_last.saturating_sub(1) as i64)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ClosedKey {
            closed_at: row.try_get("closed_at")?,
            id: text(&row, "id")?,
        }))
    }

    async fn delete_runs(&self, ids: &[String]) -> StoreResult<u64> {
        self.delete_ids(
            "runs",
            " AND pinned = 0 AND closed_at IS NOT NULL",
            Some(("run_history", "run_id")),
            ids,
        )
        .await
    }

    async fn old_audit(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        self.ids_before("audit", "at", "", before_ms, limit).await
    }

    async fn delete_audit(&self, ids: &[String]) -> StoreResult<u64> {
        self.delete_ids("audit", "", None, ids).await
    }

    async fn old_deliveries(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        let not_pending = " AND state <> 'pending'";
        self.ids_before(
            "alert_deliveries",
            "created_at",
            not_pending,
            before_ms,
            limit,
        )
        .await
    }

    async fn delete_deliveries(&self, ids: &[String]) -> StoreResult<u64> {
        self.delete_ids("alert_deliveries", " AND state <> 'pending'", None, ids)
            .await
    }

    async fn count_prunable(
        &self,
        task_id: Option<&str>,
        except: &[String],
        before: &ClosedKey,
    ) -> StoreResult<u64> {
        let (cond, binds) = self.prunable_where(task_id, except);
        let sql = self.q(&format!("SELECT COUNT(*) AS n FROM runs WHERE {cond}"));
        let mut query = self.bind_before(sqlx::query(&sql), before);
        for b in &binds {
            query = query.bind(b);
        }
        let n: i64 = query.fetch_one(&self.pool).await?.try_get("n")?;
        Ok(n as u64)
    }

    async fn count_old_audit(&self, before_ms: i64) -> StoreResult<u64> {
        let sql = self.q("SELECT COUNT(*) AS n FROM audit WHERE at < ?");
        let n: i64 = sqlx::query(&sql)
            .bind(before_ms)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n as u64)
    }

    async fn task_retentions(&self) -> StoreResult<Vec<(String, Option<TaskRetention>)>> {
        let rs = sqlx::query("SELECT id, spec FROM tasks ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rs.iter()
            .map(|r| {
                let spec: TaskSpec = json(&text(r, "spec")?, "task spec")?;
                Ok((text(r, "id")?, spec.retention))
            })
            .collect()
    }
}
