//! [`AlertStore`] on SQL: channels, rules, the delivery outbox, and the reads the alert loop
//! makes of ended runs.
//!
//! The outbox's once-per-event guarantee is the unique index on `(channel_id, event_key)`:
//! `enqueue_deliveries` inserts with "on conflict do nothing", so finding an event twice (after
//! a restart, by a second leader, by two rules) adds it once. A send is claimed first: one
//! conditional update moves the rows' `next_at` past the send's deadline and marks them with
//! the claim's token; a sender that lost the race gets fewer rows back and sends only those.

use super::*;
use crate::alerting::*;
use crate::store::rows::{json, opt_text, text};

const CHANNEL_COLUMNS: &str = "id, name, kind, summary, sealed, enabled, created_at, updated_at";
const RULE_COLUMNS: &str = "id, name, task_id, spec, enabled, created_at, updated_at";
const DELIVERY_COLUMNS: &str = "id, rule_id, channel_id, event_key, group_key, event, state, \
    attempts, next_at, last_error, detail, carried_by, created_at, sent_at";

fn read_channel(row: &AnyRow) -> StoreResult<AlertChannel> {
    Ok(AlertChannel {
        id: text(row, "id")?,
        name: text(row, "name")?,
        kind: text(row, "kind")?,
        summary: json(&text(row, "summary")?, "channel summary")?,
        sealed: text(row, "sealed")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn read_rule(row: &AnyRow) -> StoreResult<AlertRule> {
    Ok(AlertRule {
        id: text(row, "id")?,
        name: text(row, "name")?,
        task_id: opt_text(row, "task_id")?,
        spec: json(&text(row, "spec")?, "rule spec")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn read_delivery(row: &AnyRow) -> StoreResult<Delivery> {
    let state = text(row, "state")?;
    Ok(Delivery {
        id: text(row, "id")?,
        rule_id: opt_text(row, "rule_id")?,
        channel_id: text(row, "channel_id")?,
        event_key: text(row, "event_key")?,
        group_key: text(row, "group_key")?,
        event: json(&text(row, "event")?, "delivery event")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state}")))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_at: row.try_get("next_at")?,
        last_error: opt_text(row, "last_error")?,
        detail: opt_text(row, "detail")?,
        carried_by: opt_text(row, "carried_by")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

fn bind_delivery<'q>(q: AnyQuery<'q>, d: &'q Delivery) -> AnyQuery<'q> {
    q.bind(&d.id)
        .bind(&d.rule_id)
        .bind(&d.channel_id)
        .bind(&d.event_key)
        .bind(&d.group_key)
        .bind(d.event.to_string())
        .bind(d.state.as_str())
        .bind(d.attempts as i64)
        .bind(d.next_at)
        .bind(&d.last_error)
        .bind(&d.detail)
        .bind(&d.carried_by)
        .bind(d.created_at)
        .bind(d.sent_at)
}

impl SqlStore {
    /// Runs `sql`, which ends in `id IN (…)`, with `first` bound before the ids.
    async fn update_ids(
        &self,
        sql: &str,
        first: &[Option<String>],
        ids: &[String],
    ) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let sql = self.q(&format!("{sql} ({})", placeholders(ids.len())));
        let mut query = sqlx::query(&sql);
        for f in first {
            query = query.bind(f.clone());
        }
        for id in ids {
            query = query.bind(id);
        }
        Ok(query.execute(&self.writes).await?.rows_affected())
    }
}

#[async_trait]
impl AlertStore for SqlStore {
    async fn create_channel(&self, c: &AlertChannel) -> StoreResult<()> {
        let sql = self.q(&format!(
            "INSERT INTO alert_channels ({CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        sqlx::query(&sql)
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.kind)
            .bind(c.summary.to_string())
            .bind(&c.sealed)
            .bind(c.enabled as i64)
            .bind(c.created_at)
            .bind(c.updated_at)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, &format!("channel {}", c.name)))?;
        Ok(())
    }

    async fn channel(&self, id: &str) -> StoreResult<AlertChannel> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM alert_channels WHERE id = ?");
        read_channel(&self.one(&sql, &[id]).await?)
    }

    async fn list_channels(&self) -> StoreResult<Vec<AlertChannel>> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM alert_channels ORDER BY name");
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(read_channel).collect()
    }

    async fn update_channel(&self, c: &AlertChannel) -> StoreResult<()> {
        let sql = self.q("UPDATE alert_channels SET name = ?, kind = ?, summary = ?, sealed = ?, enabled = ?, updated_at = ? WHERE id = ?");
        found(
            sqlx::query(&sql)
                .bind(&c.name)
                .bind(&c.kind)
                .bind(c.summary.to_string())
                .bind(&c.sealed)
                .bind(c.enabled as i64)
                .bind(c.updated_at)
                .bind(&c.id)
                .execute(&self.writes)
                .await
                .map_err(|e| conflict(e, &format!("channel {}", c.name)))?,
        )
    }

    async fn delete_channel(&self, id: &str) -> StoreResult<()> {
        self.delete_where_id("alert_channels", id).await
    }

    async fn create_rule(&self, r: &AlertRule) -> StoreResult<()> {
        let sql = self.q(&format!(
            "INSERT INTO alert_rules ({RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ));
        sqlx::query(&sql)
            .bind(&r.id)
            .bind(&r.name)
            .bind(&r.task_id)
            .bind(to_json(&r.spec))
            .bind(r.enabled as i64)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, &format!("rule {}", r.name)))?;
        Ok(())
    }

    async fn rule(&self, id: &str) -> StoreResult<AlertRule> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = ?");
        read_rule(&self.one(&sql, &[id]).await?)
    }

    async fn list_rules(&self) -> StoreResult<Vec<AlertRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY name");
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(read_rule).collect()
    }

    async fn update_rule(&self, r: &AlertRule) -> StoreResult<()> {
        let sql = self.q("UPDATE alert_rules SET name = ?, task_id = ?, spec = ?, enabled = ?, updated_at = ? WHERE id = ?");
        found(
            sqlx::query(&sql)
                .bind(&r.name)
                .bind(&r.task_id)
                .bind(to_json(&r.spec))
                .bind(r.enabled as i64)
                .bind(r.updated_at)
                .bind(&r.id)
                .execute(&self.writes)
                .await
                .map_err(|e| conflict(e, &format!("rule {}", r.name)))?,
        )
    }

    async fn delete_rule(&self, id: &str) -> StoreResult<()> {
        self.delete_where_id("alert_rules", id).await
    }

    async fn enqueue_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<usize> {
        const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let (head, tail) = match self.dialect {
            Dialect::Mysql => ("INSERT IGNORE INTO", ""),
            _ => (
                "INSERT INTO",
                " ON CONFLICT (channel_id, event_key) DO NOTHING",
            ),
        };
        let mut added = 0;
        let mut tx = self.writes.begin().await?;
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let sql = self.q(&format!(
                "{head} alert_deliveries ({DELIVERY_COLUMNS}) VALUES {}{tail}",
                rows_of(ROW, chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for d in chunk {
                query = bind_delivery(query, d);
            }
            added += query.execute(&mut *tx).await?.rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn due_deliveries(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<Delivery>> {
        let sql = self.q(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries \
             WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?"
        ));
        let rs = sqlx::query(&sql)
            .bind(now_ms)
            .bind(page_size(limit) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(read_delivery).collect()
    }

    async fn claim_deliveries(
        &self,
        ids: &[String],
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Vec<String>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        // The claim marks the rows it takes with a token of its own, read back in the same
        // transaction: a claim that raced it took the others.
        let token = new_id();
        let mut tx = self.writes.begin().await?;
        let list = placeholders(ids.len());
        let sql = self.q(&format!(
            "UPDATE alert_deliveries SET next_at = ?, attempts = attempts + 1, carried_by = ? \
             WHERE state = 'pending' AND next_at <= ? AND id IN ({list})"
        ));
        let mut query = sqlx::query(&sql).bind(until_ms).bind(&token).bind(now_ms);
        for id in ids {
            query = query.bind(id);
        }
        query.execute(&mut *tx).await?;
        let sql = self.q("SELECT id FROM alert_deliveries WHERE carried_by = ? ORDER BY id");
        let rs = sqlx::query(&sql).bind(&token).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rs.iter().map(|r| text(r, "id")).collect()
    }

    async fn deliveries_sent(
        &self,
        ids: &[String],
        carrier: &str,
        detail: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        let sql = format!(
            "UPDATE alert_deliveries SET state = 'sent', carried_by = ?, detail = ?, sent_at = {at_ms}, \
             last_error = NULL WHERE state = 'pending' AND id IN"
        );
        self.update_ids(&sql, &[Some(carrier.into()), Some(detail.into())], ids)
            .await?;
        Ok(())
    }

    async fn deliveries_failed(
        &self,
        ids: &[String],
        error: &str,
        retry_at: Option<i64>,
    ) -> StoreResult<()> {
        let sql = match retry_at {
            Some(at) => format!(
                "UPDATE alert_deliveries SET last_error = ?, next_at = {at} WHERE state = 'pending' AND id IN"
            ),
            None => "UPDATE alert_deliveries SET last_error = ?, state = 'failed' WHERE state = 'pending' AND id IN"
                .to_string(),
        };
        self.update_ids(&sql, &[Some(error.into())], ids).await?;
        Ok(())
    }

    async fn defer_deliveries(&self, ids: &[String], until_ms: i64) -> StoreResult<()> {
        let sql = format!(
            "UPDATE alert_deliveries SET next_at = {until_ms} WHERE state = 'pending' AND id IN"
        );
        self.update_ids(&sql, &[], ids).await?;
        Ok(())
    }

    async fn last_sent(
        &self,
        rule_id: &str,
        channel_id: &str,
        group_key: &str,
    ) -> StoreResult<Option<i64>> {
        let row = self
            .one(
                "SELECT MAX(sent_at) AS at FROM alert_deliveries \
                 WHERE rule_id = ? AND channel_id = ? AND group_key = ? AND sent_at IS NOT NULL",
                &[rule_id, channel_id, group_key],
            )
            .await?;
        Ok(row.try_get("at")?)
    }

    async fn delivery(&self, id: &str) -> StoreResult<Delivery> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE id = ?");
        read_delivery(&self.one(&sql, &[id]).await?)
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Delivery>> {
        let limit = page_size(limit);
        let mut sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE {}",
            after_cursor(cursor)
        );
        let mut binds: Vec<String> = cursor.into_iter().map(str::to_string).collect();
        for (column, value) in [
            ("channel_id", filter.channel_id.clone()),
            ("rule_id", filter.rule_id.clone()),
            ("state", filter.state.map(|s| s.as_str().to_string())),
        ] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                binds.push(v);
            }
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let sql = self.q(&sql);
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rs = query.bind(limit as i64 + 1).fetch_all(&self.pool).await?;
        let items = rs
            .iter()
            .map(read_delivery)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page(items, limit, |d| d.id.clone()))
    }

    async fn closed_runs(&self, after: &ClosedKey, limit: u32) -> StoreResult<Vec<Run>> {
        let key = Some((after.closed_at, after.id.as_str()));
        let sql = self.q(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE closed_at IS NOT NULL{} ORDER BY closed_at, id LIMIT ?",
            self.after_key("closed_at", key)
        ));
        let rs = self
            .bind_key(sqlx::query(&sql), key)
            .bind(page_size(limit) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(read_run).collect()
    }

    async fn last_outcomes(
        &self,
        task_id: &str,
        at: &ClosedKey,
        limit: u32,
    ) -> StoreResult<Vec<RunState>> {
        let sql = self.q("SELECT state FROM runs WHERE task_id = ? \
             AND state IN ('succeeded', 'failed', 'timed_out', 'lost') \
             AND (closed_at < ? OR (closed_at = ? AND id <= ?)) \
             ORDER BY closed_at DESC, id DESC LIMIT ?");
        let rs = sqlx::query(&sql)
            .bind(task_id)
            .bind(at.closed_at)
            .bind(at.closed_at)
            .bind(&at.id)
            .bind(page_size(limit) as i64)
            .fetch_all(&self.pool)
            .await?;
        rs.iter()
            .map(|r| {
                let s = text(r, "state")?;
                RunState::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("state {s}")))
            })
            .collect()
    }

    async fn cursor(&self, name: &str) -> StoreResult<Option<ClosedKey>> {
        match self
            .one("SELECT value FROM settings WHERE name = ?", &[name])
            .await
        {
            Ok(row) => Ok(Some(json(&text(&row, "value")?, "cursor")?)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn set_cursor(&self, name: &str, key: &ClosedKey) -> StoreResult<()> {
        self.put_setting(name, &to_json(key), crate::time::now_ms())
            .await
    }
}
