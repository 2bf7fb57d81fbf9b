//! [`UserStore`] on SQL: users and their API and session tokens, and the lock that keeps
//! one enabled admin.

use super::*;
use crate::store::rows::{json, text};

impl SqlStore {
    /// Begins a change to user `id`: returns the transaction, the enabled admins' ids and the
    /// user, read so that no other change to users can alter them before the transaction ends.
    /// On PostgreSQL and MySQL/MariaDB the admins' rows and then the user's are locked, always
    /// in that order and the admins by id, so two such transactions queue instead of
    /// deadlocking (and a locked row that another one changed meanwhile is read as committed).
    /// On SQLite the first statement is a write that changes nothing: it makes the transaction
    /// the database's one writer until it ends, so what it reads next cannot change under it.
    async fn lock_users(
        &self,
        id: &str,
    ) -> StoreResult<(sqlx::Transaction<'static, sqlx::Any>, Vec<String>, User)> {
        let mut tx = self.writes.begin().await?;
        let locking = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query(&self.q("UPDATE users SET generation = generation WHERE id = ?"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                ""
            }
            Dialect::Postgres | Dialect::Mysql => " FOR UPDATE",
        };
        let admins = sqlx::query(&format!(
            "SELECT id FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY id{locking}"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
        let sql = self.q(&format!("SELECT * FROM users WHERE id = ?{locking}"));
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok((tx, admins, read_user(&row)?))
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, u: &User) -> StoreResult<()> {
        let sql = self.q("INSERT INTO users (id, username, password_hash, role, disabled, created_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&u.id)
            .bind(&u.username)
            .bind(&u.password_hash)
            .bind(u.role.as_str())
            .bind(u.disabled as i64)
            .bind(u.created_at)
            .bind(u.generation)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "username"))?;
        Ok(())
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<User> {
        read_user(
            &self
                .one("SELECT * FROM users WHERE username = ?", &[username])
                .await?,
        )
    }

    async fn user(&self, id: &str) -> StoreResult<User> {
        read_user(&self.one("SELECT * FROM users WHERE id = ?", &[id]).await?)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rs = sqlx::query("SELECT * FROM users")
            .fetch_all(&self.pool)
            .await?;
        let mut users = rs.iter().map(read_user).collect::<StoreResult<Vec<_>>>()?;
        // Sorted here, not by ORDER BY: the database's collation (ICU, *_ci) would order names
        // differently per engine.
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }

    async fn change_user(&self, id: &str, change: &UserChange) -> StoreResult<User> {
        let (mut tx, admins, before) = self.lock_users(id).await?;
        let mut after = before.clone();
        if let Some(role) = change.role {
            after.role = role;
        }
        if let Some(disabled) = change.disabled {
            after.disabled = disabled;
        }
        if let Some(hash) = &change.password_hash {
            after.password_hash = hash.clone();
        }
        let enabled_admin = |u: &User| u.role == Role::Admin && !u.disabled;
        if enabled_admin(&before) && !enabled_admin(&after) && !admins.iter().any(|a| a != id) {
            return Err(StoreError::LastAdmin);
        }
        let revoke = after.role != before.role
            || after.disabled != before.disabled
            || change.password_hash.is_some();
        if revoke {
            after.generation += 1;
        }
        let sql = self.q(
            "UPDATE users SET password_hash = ?, role = ?, disabled = ?, generation = ? WHERE id = ?",
        );
        sqlx::query(&sql)
            .bind(&after.password_hash)
            .bind(after.role.as_str())
            .bind(after.disabled as i64)
            .bind(after.generation)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if revoke {
            sqlx::query(&self.q("DELETE FROM tokens WHERE user_id = ?"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let (mut tx, admins, before) = self.lock_users(id).await?;
        if before.role == Role::Admin && !before.disabled && !admins.iter().any(|a| a != id) {
            return Err(StoreError::LastAdmin);
        }
        for sql in [
            "DELETE FROM tokens WHERE user_id = ?",
            "DELETE FROM users WHERE id = ?",
        ] {
            sqlx::query(&self.q(sql)).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_token(&self, t: &ApiToken) -> StoreResult<()> {
        let sql = self.q("INSERT INTO tokens (id, token_hash, user_id, name, kind, scopes, created_at, expires_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&t.id)
            .bind(&t.token_hash)
            .bind(&t.user_id)
            .bind(&t.name)
            .bind(&t.kind)
            .bind(to_json(&t.scopes))
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.generation)
            .execute(&self.writes)
            .await
            .map_err(|e| conflict(e, "token"))?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<ApiToken> {
        read_token(
            &self
                .one("SELECT * FROM tokens WHERE token_hash = ?", &[hash])
                .await?,
        )
    }

    async fn list_tokens(&self, user_id: &str) -> StoreResult<Vec<ApiToken>> {
        let sql =
            self.q("SELECT * FROM tokens WHERE user_id = ? AND kind = 'api' ORDER BY id DESC");
        let rs = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(read_token).collect()
    }

    async fn delete_token(&self, id: &str) -> StoreResult<()> {
        self.delete_where_id("tokens", id).await
    }
}

fn read_user(row: &AnyRow) -> StoreResult<User> {
    let role = text(row, "role")?;
    Ok(User {
        id: text(row, "id")?,
        username: text(row, "username")?,
        password_hash: text(row, "password_hash")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        generation: row.try_get("generation")?,
    })
}

fn read_token(row: &AnyRow) -> StoreResult<ApiToken> {
    let scopes = text(row, "scopes")?;
    Ok(ApiToken {
        id: text(row, "id")?,
        token_hash: text(row, "token_hash")?,
        user_id: text(row, "user_id")?,
        name: text(row, "name")?,
        kind: text(row, "kind")?,
        scopes: json(&scopes, "token scopes")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        generation: row.try_get("generation")?,
    })
}
