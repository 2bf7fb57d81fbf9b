//! [`ProjectStore`] on SQL: projects and their numbered versions.

use super::*;
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
        let sql = self.q("INSERT INTO projects (id, name, description, current_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.description)
            .bind(first.version)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "project name"))?;
        let sql = self.q(&format!(
            "INSERT INTO project_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        sqlx::query(&sql)
            .bind(&p.id)
            .bind(first.version)
            .bind(to_json(&first.bundle))
            .bind(&first.entrypoint)
            .bind(&first.requirements)
            .bind(first.python_version.clone())
            .bind(to_json(&first.files))
            .bind(first.created_at)
            .execute(&mut *tx)
            .await?;
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
        let sql = self.q("UPDATE projects SET name = ?, description = ?, current_version = ?, updated_at = ? WHERE id = ?");
        found(
            sqlx::query(&sql)
                .bind(&p.name)
                .bind(&p.description)
                .bind(p.current_version)
                .bind(p.updated_at)
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
        // Lock the project row before reading the latest number: concurrent uploads to one
        // project queue here instead of picking the same number (on SQLite this first write
        // also takes the database write lock before any read, so no stale snapshot is used).
        found(
            sqlx::query(&self.q("UPDATE projects SET updated_at = ? WHERE id = ?"))
                .bind(v.created_at)
                .bind(&v.project_id)
                .execute(&mut *tx)
                .await?,
        )?;
        let latest: Option<i64> = sqlx::query(
            &self.q("SELECT MAX(version) AS v FROM project_versions WHERE project_id = ?"),
        )
        .bind(&v.project_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
        let number = latest.unwrap_or(0) + 1;
        let sql = self.q(&format!(
            "INSERT INTO project_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
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
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "project version"))?;
        sqlx::query(&self.q("UPDATE projects SET current_version = ? WHERE id = ?"))
            .bind(number)
            .bind(&v.project_id)
            .execute(&mut *tx)
            .await?;
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
    "project_id, version, bundle, entrypoint, requirements, python_version, files, created_at";

fn read_project(row: &AnyRow) -> StoreResult<Project> {
    Ok(Project {
        id: text(row, "id")?,
        name: text(row, "name")?,
        description: text(row, "description")?,
        current_version: row.try_get("current_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
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
    })
}
