//! [`ProjectStore`] on SQL: projects and their numbered versions.

use super::*;
use crate::git::{GitCredentialKind, GitCredentialMeta, SealedGitCredential, SyncStatus};
use crate::store::rows::{json, opt_text, text};

/// A project's current version: the project and its version row joined.
static CURRENT_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM projects p JOIN project_versions v \
         ON v.project_id = p.id AND v.version = p.current_version WHERE p.id = ?",
        each_column(VERSION_COLUMNS, |c| format!("v.{c}"))
    )
});

#[async_trait]
impl ProjectStore for SqlStore {
    async fn create_project(&self, p: &Project, first: &ProjectVersion) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        let sql = self.q("INSERT INTO projects (id, name, description, current_version, created_at, updated_at, source, sync_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.description)
            .bind(first.version)
            .bind(p.created_at)
            .bind(p.updated_at)
            .bind(p.source.as_ref().map(to_json))
            .bind(p.sync.as_ref().map(to_json))
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "project name"))?;
        insert_version(self, &mut tx, first, first.version).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn project(&self, id: &str) -> StoreResult<Project> {
        read_project(
            &self
                .one("SELECT * FROM projects WHERE id = ?", &[id])
                .await?,
        )
    }

    async fn project_by_name(&self, name: &str) -> StoreResult<Project> {
        read_project(
            &self
                .one("SELECT * FROM projects WHERE name = ?", &[name])
                .await?,
        )
    }

    async fn list_projects(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<Project>> {
        self.newest_page("SELECT * FROM projects", limit, cursor, read_project, |p| {
            p.id.clone()
        })
        .await
    }

    async fn update_project(&self, p: &Project) -> StoreResult<()> {
        let sql = self.q("UPDATE projects SET name = ?, description = ?, current_version = ?, updated_at = ?, source = ? WHERE id = ?");
        found(
            sqlx::query(&sql)
                .bind(&p.name)
                .bind(&p.description)
                .bind(p.current_version)
                .bind(p.updated_at)
                .bind(p.source.as_ref().map(to_json))
                .bind(&p.id)
                .execute(&self.writes)
                .await
                .map_err(|e| conflict(e, "project name"))?,
        )
    }

    async fn delete_project(&self, id: &str) -> StoreResult<()> {
        self.delete_cascade("projects", id, "project_versions", "project_id")
            .await
    }

    async fn add_version(&self, v: &ProjectVersion) -> StoreResult<i64> {
        let mut tx = self.writes.begin().await?;
        let latest = lock_latest(self, &mut tx, v).await?;
        let number = latest.map_or(0, |l| l.version) + 1;
        insert_version(self, &mut tx, v, number).await?;
        make_current(self, &mut tx, &v.project_id, number).await?;
        tx.commit().await?;
        Ok(number)
    }

    async fn version(&self, project_id: &str, version: i64) -> StoreResult<ProjectVersion> {
        let sql = self.q(&format!(
            "SELECT {VERSION_COLUMNS} FROM project_versions WHERE project_id = ? AND version = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(project_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        read_version(&row)
    }

    async fn current_version(&self, project_id: &str) -> StoreResult<ProjectVersion> {
        read_version(&self.one(&CURRENT_VERSION, &[project_id]).await?)
    }

    async fn list_versions(&self, project_id: &str) -> StoreResult<Vec<ProjectVersion>> {
        let sql = self.q(&format!("SELECT {VERSION_COLUMNS} FROM project_versions WHERE project_id = ? ORDER BY version DESC"));
        let rs = sqlx::query(&sql)
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(read_version).collect()
    }
}

pub(super) const VERSION_COLUMNS: &str =
    "project_id, version, bundle, entrypoint, requirements, python_version, files, created_at, origin";

/// Locks project `v.project_id`'s row and reads its latest version, if any.
///
/// Concurrent writers of one project's versions queue on the row lock instead of picking the
/// same number (on SQLite this first write also takes the database write lock before any read,
/// so no stale snapshot is used).
async fn lock_latest(
    store: &SqlStore,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    v: &ProjectVersion,
) -> StoreResult<Option<ProjectVersion>> {
    found(
        sqlx::query(&store.q("UPDATE projects SET updated_at = ? WHERE id = ?"))
            .bind(v.created_at)
            .bind(&v.project_id)
            .execute(&mut **tx)
            .await?,
    )?;
    let sql = store.q(&format!(
        "SELECT {VERSION_COLUMNS} FROM project_versions WHERE project_id = ? \
         ORDER BY version DESC LIMIT 1"
    ));
    let row = sqlx::query(&sql)
        .bind(&v.project_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(read_version).transpose()
}

async fn insert_version(
    store: &SqlStore,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    v: &ProjectVersion,
    number: i64,
) -> StoreResult<()> {
    let sql = store.q(&format!(
        "INSERT INTO project_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ));
    sqlx::query(&sql)
        .bind(&v.project_id)
        .bind(number)
        .bind(to_json(&v.bundle))
        .bind(&v.entrypoint)
        .bind(&v.requirements)
        .bind(v.python_version.clone())
        .bind(to_json(&v.files))
        .bind(v.created_at)
        .bind(v.origin.as_ref().map(to_json))
        .execute(&mut **tx)
        .await
        .map_err(|e| conflict(e, "project version"))?;
    Ok(())
}

async fn make_current(
    store: &SqlStore,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project_id: &str,
    number: i64,
) -> StoreResult<()> {
    sqlx::query(&store.q("UPDATE projects SET current_version = ? WHERE id = ?"))
        .bind(number)
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Whether `new` holds what `latest` holds: the same tree (and so the same submodule commits),
/// the same files (a tree with submodules fetched or not), run the same way.
fn same_files(latest: &ProjectVersion, new: &ProjectVersion) -> bool {
    let tree = |v: &ProjectVersion| v.origin.as_ref().map(|o| o.tree.clone());
    tree(latest).is_some()
        && tree(latest) == tree(new)
        && latest.files == new.files
        && latest.entrypoint == new.entrypoint
        && latest.requirements == new.requirements
        && latest.python_version == new.python_version
}

#[async_trait]
impl GitStore for SqlStore {
    async fn add_synced_version(&self, v: &ProjectVersion) -> StoreResult<Option<i64>> {
        let mut tx = self.writes.begin().await?;
        let latest = lock_latest(self, &mut tx, v).await?;
        if latest.as_ref().is_some_and(|l| same_files(l, v)) {
            // Nothing is written; the lock goes with the transaction.
            tx.rollback().await?;
            return Ok(None);
        }
        let number = latest.map_or(0, |l| l.version) + 1;
        insert_version(self, &mut tx, v, number).await?;
        make_current(self, &mut tx, &v.project_id, number).await?;
        tx.commit().await?;
        Ok(Some(number))
    }

    async fn record_sync(&self, project_id: &str, status: &SyncStatus) -> StoreResult<()> {
        let sql = self.q("UPDATE projects SET sync_status = ? WHERE id = ?");
        found(
            sqlx::query(&sql)
                .bind(to_json(status))
                .bind(project_id)
                .execute(&self.writes)
                .await?,
        )
    }

    async fn git_projects(&self) -> StoreResult<Vec<Project>> {
        let rs = sqlx::query("SELECT * FROM projects WHERE source IS NOT NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(read_project).collect()
    }

    async fn set_hook_secret(&self, project_id: &str, sealed: Option<&str>) -> StoreResult<()> {
        let sql = self.q("UPDATE projects SET hook_secret = ? WHERE id = ?");
        found(
            sqlx::query(&sql)
                .bind(sealed.map(str::to_string))
                .bind(project_id)
                .execute(&self.writes)
                .await?,
        )
    }

    async fn hook_secret(&self, project_id: &str) -> StoreResult<Option<String>> {
        let row = self
            .one(
                "SELECT hook_secret FROM projects WHERE id = ?",
                &[project_id],
            )
            .await?;
        opt_text(&row, "hook_secret")
    }

    async fn put_git_credential(&self, c: &SealedGitCredential) -> StoreResult<bool> {
        let m = &c.meta;
        let existed = match self.git_credential(&m.name).await {
            Ok(_) => true,
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(e),
        };
        let sql = self.upsert(
            "git_credentials",
            "name",
            &[
                "kind",
                "username",
                "known_hosts",
                "sealed",
                "created_at",
                "updated_at",
                "updated_by",
            ],
        );
        sqlx::query(&self.q(&sql))
            .bind(&m.name)
            .bind(m.kind.as_str())
            .bind(&m.username)
            .bind(&m.known_hosts)
            .bind(&c.sealed)
            .bind(m.created_at)
            .bind(m.updated_at)
            .bind(&m.updated_by)
            .execute(&self.writes)
            .await?;
        Ok(!existed)
    }

    async fn git_credential(&self, name: &str) -> StoreResult<SealedGitCredential> {
        let row = self
            .one("SELECT * FROM git_credentials WHERE name = ?", &[name])
            .await?;
        Ok(SealedGitCredential {
            meta: read_credential(&row)?,
            sealed: text(&row, "sealed")?,
        })
    }

    async fn list_git_credentials(&self) -> StoreResult<Vec<GitCredentialMeta>> {
        let rs = sqlx::query("SELECT * FROM git_credentials ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(read_credential).collect()
    }

    async fn delete_git_credential(&self, name: &str) -> StoreResult<()> {
        found(
            sqlx::query(&self.q("DELETE FROM git_credentials WHERE name = ?"))
                .bind(name)
                .execute(&self.writes)
                .await?,
        )
    }
}

fn read_credential(row: &AnyRow) -> StoreResult<GitCredentialMeta> {
    let kind = text(row, "kind")?;
    Ok(GitCredentialMeta {
        name: text(row, "name")?,
        kind: GitCredentialKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("git credential kind {kind:?}")))?,
        username: text(row, "username")?,
        known_hosts: text(row, "known_hosts")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: text(row, "updated_by")?,
    })
}

fn read_project(row: &AnyRow) -> StoreResult<Project> {
    Ok(Project {
        id: text(row, "id")?,
        name: text(row, "name")?,
        description: text(row, "description")?,
        current_version: row.try_get("current_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        source: opt_json(row, "source")?,
        sync: opt_json(row, "sync_status")?,
    })
}

/// A nullable JSON column.
fn opt_json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> StoreResult<Option<T>> {
    opt_text(row, col)?.map(|raw| json(&raw, col)).transpose()
}

pub(super) fn read_version(row: &AnyRow) -> StoreResult<ProjectVersion> {
    read_version_as(row, "")
}

/// A version whose columns carry `prefix` (`v_bundle`, …), as a join that also returns another
/// table's columns names them.
pub(super) fn read_version_as(row: &AnyRow, prefix: &str) -> StoreResult<ProjectVersion> {
    let col = |name: &'static str| -> std::borrow::Cow<'static, str> {
        if prefix.is_empty() {
            name.into()
        } else {
            format!("{prefix}{name}").into()
        }
    };
    let bundle = text(row, &col("bundle"))?;
    let files = text(row, &col("files"))?;
    Ok(ProjectVersion {
        project_id: text(row, &col("project_id"))?,
        version: row.try_get(&*col("version"))?,
        bundle: json(&bundle, "bundle")?,
        entrypoint: text(row, &col("entrypoint"))?,
        requirements: text(row, &col("requirements"))?,
        python_version: opt_text(row, &col("python_version"))?,
        files: json(&files, "files")?,
        created_at: row.try_get(&*col("created_at"))?,
        origin: opt_json(row, &col("origin"))?,
    })
}
