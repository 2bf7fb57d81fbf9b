//! [`WorkerStore`] on SQL: enrollment keys, their one-time redemption, and enrolled workers.

use super::*;
use crate::store::rows::{json, opt_text, text};

#[async_trait]
impl WorkerStore for SqlStore {
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
        rs.iter().map(read_worker_key).collect()
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
        let key = read_worker_key(&row)?;
        if done.rows_affected() != 1 {
            return Err(if key.used_at.is_some() {
                StoreError::Conflict("enrollment key already used".into())
            } else {
                StoreError::Stale("enrollment key expired".into())
            });
        }
        let mut worker = w.clone();
        // What it is allowed and what it is routed by are the admin's, not the runner's claims.
        worker.queues = key.queues.clone();
        worker.labels = key.labels.clone();
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
        read_worker(
            &self
                .one("SELECT * FROM workers WHERE id = ?", &[id])
                .await?,
        )
    }

    async fn worker_by_api_key(&self, api_key_hash: &str) -> StoreResult<WorkerRecord> {
        read_worker(
            &self
                .one(
                    "SELECT * FROM workers WHERE api_key_hash = ?",
                    &[api_key_hash],
                )
                .await?,
        )
    }

    async fn worker_by_fingerprint(&self, fingerprint: &str) -> StoreResult<WorkerRecord> {
        read_worker(
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
        rs.iter().map(read_worker).collect()
    }

    async fn revoke_worker(&self, id: &str) -> StoreResult<WorkerRecord> {
        sqlx::query(&self.q("UPDATE workers SET revoked = 1 WHERE id = ?"))
            .bind(id)
            .execute(&self.writes)
            .await?;
        self.worker_record(id).await
    }
}

fn read_worker_key(row: &AnyRow) -> StoreResult<WorkerKey> {
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

fn read_worker(row: &AnyRow) -> StoreResult<WorkerRecord> {
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
