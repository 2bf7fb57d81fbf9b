//! [`AuditStore`] on SQL: appending audit entries in batches and reading them newest first.

use super::*;
use crate::store::rows::{json, opt_text, text};

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

#[async_trait]
impl AuditStore for SqlStore {
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
        self.newest_page("SELECT * FROM audit", limit, cursor, read_audit, |a| {
            a.id.clone()
        })
        .await
    }
}

fn read_audit(row: &AnyRow) -> StoreResult<AuditEntry> {
    let before = opt_text(row, "before_value")?;
    let after = opt_text(row, "after_value")?;
    Ok(AuditEntry {
        id: text(row, "id")?,
        at: row.try_get("at")?,
        actor: text(row, "actor")?,
        action: text(row, "action")?,
        resource: text(row, "resource")?,
        before: before.map(|b| json(&b, "audit before")).transpose()?,
        after: after.map(|a| json(&a, "audit after")).transpose()?,
        address: text(row, "address")?,
        user_agent: text(row, "user_agent")?,
        outcome: text(row, "outcome")?,
    })
}
