//! [`HookStore`] on SQL: webhooks, and the idempotency keys of the runs they start.
//!
//! A key is claimed by [`SqlStore::claim_key`] inside the transaction that inserts its run
//! (`create.rs`): an "insert or do nothing" on the `(hook_id, idem_key)` primary key, so of two
//! transactions racing for one key exactly one writes a row, and the other learns it lost from
//! the count of rows written, never from a failed statement (which would abort a PostgreSQL
//! transaction and the runs grouped with it). A key older than the window is deleted first.

use super::*;
use crate::hooks::{Hook, HookAuth, RunKey, KEY_WINDOW_MS};
use crate::store::rows::text;

const HOOK_COLUMNS: &str =
    "id, task_id, name, auth, rate_per_min, secret, created_at, rotated_at, last_used_at";

fn read_hook(row: &AnyRow) -> StoreResult<Hook> {
    let auth = text(row, "auth")?;
    Ok(Hook {
        id: text(row, "id")?,
        task_id: text(row, "task_id")?,
        name: text(row, "name")?,
        auth: HookAuth::parse(&auth)
            .ok_or_else(|| StoreError::Corrupt(format!("hook auth {auth}")))?,
        rate_per_min: row.try_get::<i64, _>("rate_per_min")? as u32,
        secret: text(row, "secret")?,
        created_at: row.try_get("created_at")?,
        rotated_at: row.try_get("rotated_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl SqlStore {
    /// Claims `key` for run `run_id` on `tx`, at `at_ms`: false when a run already holds it
    /// (written within [`KEY_WINDOW_MS`]).
    pub(super) async fn claim_key(
        &self,
        tx: &mut AnyConnection,
        key: &RunKey,
        run_id: &str,
        at_ms: i64,
    ) -> StoreResult<bool> {
        let stale =
            self.q("DELETE FROM run_keys WHERE hook_id = ? AND idem_key = ? AND created_at < ?");
        sqlx::query(&stale)
            .bind(&key.hook_id)
            .bind(&key.key)
            .bind(at_ms - KEY_WINDOW_MS)
            .execute(&mut *tx)
            .await?;
        let insert = match self.dialect {
            Dialect::Mysql => "INSERT IGNORE INTO run_keys (hook_id, idem_key, run_id, created_at) VALUES (?, ?, ?, ?)",
            _ => "INSERT INTO run_keys (hook_id, idem_key, run_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        };
        let written = sqlx::query(&self.q(insert))
            .bind(&key.hook_id)
            .bind(&key.key)
            .bind(run_id)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        Ok(written == 1)
    }
}

#[async_trait]
impl HookStore for SqlStore {
    async fn create_hook(&self, h: &Hook) -> StoreResult<()> {
        let sql = self.q(&format!(
            "INSERT INTO hooks ({HOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        sqlx::query(&sql)
            .bind(&h.id)
            .bind(&h.task_id)
            .bind(&h.name)
            .bind(h.auth.as_str())
            .bind(h.rate_per_min as i64)
            .bind(&h.secret)
            .bind(h.created_at)
            .bind(h.rotated_at)
            .bind(h.last_used_at)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "hook id"))?;
        Ok(())
    }

    async fn hook(&self, id: &str) -> StoreResult<Hook> {
        let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE id = ?");
        read_hook(&self.one(&sql, &[id]).await?)
    }

    async fn task_hooks(&self, task_id: &str) -> StoreResult<Vec<Hook>> {
        let sql = self.q(&format!(
            "SELECT {HOOK_COLUMNS} FROM hooks WHERE task_id = ? ORDER BY id"
        ));
        let rows = sqlx::query(&sql)
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read_hook).collect()
    }

    async fn rotate_hook(&self, id: &str, secret: &str, at_ms: i64) -> StoreResult<Hook> {
        let sql = self.q("UPDATE hooks SET secret = ?, rotated_at = ? WHERE id = ?");
        found(
            sqlx::query(&sql)
                .bind(secret)
                .bind(at_ms)
                .bind(id)
                .execute(&self.writes)
                .await?,
        )?;
        self.hook(id).await
    }

    async fn delete_hook(&self, id: &str) -> StoreResult<()> {
        self.delete_where_id("hooks", id).await
    }

    async fn touch_hook(&self, id: &str, at_ms: i64) -> StoreResult<()> {
        let sql = self.q(
            "UPDATE hooks SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        );
        sqlx::query(&sql)
            .bind(at_ms)
            .bind(id)
            .bind(at_ms)
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    async fn keyed_run(&self, key: &RunKey, since_ms: i64) -> StoreResult<Option<String>> {
        let sql = self.q(
            "SELECT run_id FROM run_keys WHERE hook_id = ? AND idem_key = ? AND created_at >= ?",
        );
        let row = sqlx::query(&sql)
            .bind(&key.hook_id)
            .bind(&key.key)
            .bind(since_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| text(&r, "run_id")).transpose()
    }

    async fn old_run_keys(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        let sql = self.q(
            "SELECT run_id FROM run_keys WHERE created_at < ? ORDER BY created_at, run_id LIMIT ?",
        );
        let rows = sqlx::query(&sql)
            .bind(before_ms)
            .bind(page_size(limit) as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| text(r, "run_id")).collect()
    }

    async fn delete_run_keys(&self, run_ids: &[String]) -> StoreResult<u64> {
        if run_ids.is_empty() {
            return Ok(0);
        }
        let sql = self.q(&format!(
            "DELETE FROM run_keys WHERE run_id IN ({})",
            placeholders(run_ids.len())
        ));
        let mut query = sqlx::query(&sql);
        for id in run_ids {
            query = query.bind(id);
        }
        Ok(query.execute(&self.writes).await?.rows_affected())
    }
}
