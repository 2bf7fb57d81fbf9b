//! [`SecretStore`] on SQL: sealed secrets and their grants to projects.

use super::*;

#[async_trait]
impl SecretStore for SqlStore {
    async fn put_secret(&self, s: &crate::secrets::SealedSecret) -> StoreResult<bool> {
        let m = &s.meta;
        let existed = match self.secret(&m.name).await {
            Ok(_) => true,
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(e),
        };
        let sql = self.upsert(
            "secrets",
            "name",
            &["sealed", "created_at", "updated_at", "updated_by"],
        );
        sqlx::query(&self.q(&sql))
            .bind(&m.name)
            .bind(&s.sealed)
            .bind(m.created_at)
            .bind(m.updated_at)
            .bind(&m.updated_by)
            .execute(&self.writes)
            .await?;
        Ok(!existed)
    }

    async fn secret(&self, name: &str) -> StoreResult<crate::secrets::SealedSecret> {
        let row = self
            .one(
                "SELECT name, sealed, created_at, updated_at, updated_by FROM secrets WHERE name = ?",
                &[name],
            )
            .await?;
        Ok(crate::secrets::SealedSecret {
            meta: secret_meta(&row)?,
            sealed: rows::text(&row, "sealed")?,
        })
    }

    async fn list_secrets(&self) -> StoreResult<Vec<crate::secrets::SecretMeta>> {
        let rs = sqlx::query(
            "SELECT name, created_at, updated_at, updated_by FROM secrets ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rs.iter().map(secret_meta).collect()
    }

    async fn delete_secret(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        sqlx::query(&self.q("DELETE FROM secret_grants WHERE secret = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        found(
            sqlx::query(&self.q("DELETE FROM secrets WHERE name = ?"))
                .bind(name)
                .execute(&mut *tx)
                .await?,
        )?;
        tx.commit().await?;
        Ok(())
    }

    async fn secret_for(
        &self,
        name: &str,
        project_id: &str,
    ) -> StoreResult<(crate::secrets::SealedSecret, bool)> {
        let row = self
            .one(
                "SELECT name, sealed, created_at, updated_at, updated_by, \
                 (SELECT COUNT(*) FROM secret_grants g WHERE g.secret = secrets.name \
                  AND g.project_id IN (?, '*')) AS grants FROM secrets WHERE name = ?",
                &[project_id, name],
            )
            .await?;
        let grants: i64 = row.try_get("grants")?;
        let secret = crate::secrets::SealedSecret {
            meta: secret_meta(&row)?,
            sealed: rows::text(&row, "sealed")?,
        };
        Ok((secret, grants > 0))
    }

    async fn secret_grants(&self, name: &str) -> StoreResult<Vec<crate::secrets::SecretGrant>> {
        let rs = sqlx::query(&self.q(
            "SELECT secret, project_id, granted_at, granted_by FROM secret_grants \
             WHERE secret = ? ORDER BY project_id",
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut grants = rs
            .iter()
            .map(|row| {
                let project = rows::text(row, "project_id")?;
                Ok(crate::secrets::SecretGrant {
                    secret: rows::text(row, "secret")?,
                    project_id: (project != ALL_PROJECTS).then_some(project),
                    granted_at: row.try_get("granted_at")?,
                    granted_by: rows::text(row, "granted_by")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        grants.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        Ok(grants)
    }

    async fn set_secret_grants(
        &self,
        name: &str,
        grants: &[crate::secrets::SecretGrant],
    ) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        sqlx::query(&self.q("DELETE FROM secret_grants WHERE secret = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let insert = self.q(
            "INSERT INTO secret_grants (secret, project_id, granted_at, granted_by) VALUES (?, ?, ?, ?)",
        );
        for g in grants {
            sqlx::query(&insert)
                .bind(name)
                .bind(g.project_id.as_deref().unwrap_or(ALL_PROJECTS))
                .bind(g.granted_at)
                .bind(&g.granted_by)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `secret_grants.project_id` of a grant to every project.
const ALL_PROJECTS: &str = "*";

fn secret_meta(row: &AnyRow) -> StoreResult<crate::secrets::SecretMeta> {
    Ok(crate::secrets::SecretMeta {
        name: rows::text(row, "name")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: rows::text(row, "updated_by")?,
    })
}
