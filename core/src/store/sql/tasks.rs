//! [`TaskStore`] on SQL: tasks, and a task read together with its project's current version.

use super::*;
use crate::flow::{links_of, Link, LinkKind};
use crate::store::rows::{json, opt_text, text};

/// A task and its project's current version, if any, in one row: the task's columns as they
/// are, the version's prefixed `v_`.
pub(super) static TASK_WITH_CURRENT_VERSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "SELECT {}, {} FROM tasks t LEFT JOIN projects p ON p.id = t.project_id \
         LEFT JOIN project_versions v ON v.project_id = p.id AND v.version = p.current_version \
         WHERE t.id = ?",
            each_column(TASK_COLUMNS, |c| format!("t.{c}")),
            each_column(VERSION_COLUMNS, |c| format!("v.{c} AS v_{c}")),
        )
    });

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a task's columns from `name` to `next_fire_at`, in their order in `tasks`.
fn bind_fields<'q>(q: AnyQuery<'q>, t: &'q Task) -> AnyQuery<'q> {
    q.bind(&t.name)
        .bind(&t.project_id)
        .bind(to_json(&t.spec))
        .bind(t.schedule.as_ref().map(to_json))
        .bind(t.paused as i64)
        .bind(t.next_fire_at)
}

#[async_trait]
impl TaskStore for SqlStore {
    async fn create_tasks(&self, tasks: &[Task]) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        let insert = format!("INSERT INTO tasks ({TASK_COLUMNS}) VALUES");
        self.insert_rows(
            &mut tx,
            &insert,
            "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tasks,
            |q, t| {
                bind_fields(q.bind(&t.id), t)
                    .bind(t.created_at)
                    .bind(t.updated_at)
            },
        )
        .await
        .map_err(|e| conflict(e, "task name"))?;
        for t in tasks {
            self.write_links(&mut tx, t).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn task(&self, id: &str) -> StoreResult<Task> {
        read_task(
            &self
                .one(
                    &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"),
                    &[id],
                )
                .await?,
        )
    }

    async fn task_with_current_version(
        &self,
        id: &str,
    ) -> StoreResult<(Task, Option<ProjectVersion>)> {
        let row = self.one(&TASK_WITH_CURRENT_VERSION, &[id]).await?;
        let version = match row.try_get::<Option<i64>, _>("v_version")? {
            Some(_) => Some(read_version_as(&row, "v_")?),
            None => None,
        };
        Ok((read_task(&row)?, version))
    }

    async fn list_tasks(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<Task>> {
        let select = format!("SELECT {TASK_COLUMNS} FROM tasks");
        self.newest_page(&select, limit, cursor, read_task, |t| t.id.clone())
            .await
    }

    async fn update_task(&self, t: &Task) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        let sql = self.q("UPDATE tasks SET name = ?, project_id = ?, spec = ?, schedule = ?, paused = ?, next_fire_at = ?, updated_at = ? WHERE id = ?");
        found(
            bind_fields(sqlx::query(&sql), t)
                .bind(t.updated_at)
                .bind(&t.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict(e, "task name"))?,
        )?;
        self.write_links(&mut tx, t).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Its webhooks and links go in the same transaction, so a deleted task's hooks stop
    /// authenticating when it goes, and no run starts it any more.
    async fn delete_task(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.writes.begin().await?;
        let hooks = self.q("DELETE FROM hooks WHERE task_id = ?");
        sqlx::query(&hooks).bind(id).execute(&mut *tx).await?;
        let links = self.q("DELETE FROM task_links WHERE from_task = ? OR to_task = ?");
        sqlx::query(&links)
            .bind(id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let task = self.q("DELETE FROM tasks WHERE id = ?");
        found(sqlx::query(&task).bind(id).execute(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(())
    }

    async fn task_links(&self) -> StoreResult<Vec<Link>> {
        let sql = "SELECT from_task, to_task, kind, for_each FROM task_links ORDER BY from_task, to_task, kind";
        sqlx::query(sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(read_link)
            .collect()
    }
}

impl SqlStore {
    /// Replaces the links task `t` declared with the ones it declares now, on `tx`: those from
    /// it (`on_*`) and those to it (`needs`).
    async fn write_links(&self, tx: &mut AnyConnection, t: &Task) -> StoreResult<()> {
        let old = self.q("DELETE FROM task_links WHERE (from_task = ? AND kind <> 'needs') OR (to_task = ? AND kind = 'needs')");
        sqlx::query(&old)
            .bind(&t.id)
            .bind(&t.id)
            .execute(&mut *tx)
            .await?;
        let links = links_of(&t.id, &t.spec);
        let insert = "INSERT INTO task_links (from_task, to_task, kind, for_each) VALUES";
        self.insert_rows(tx, insert, "(?, ?, ?, ?)", &links, |q, l| {
            q.bind(&l.from)
                .bind(&l.to)
                .bind(l.kind.as_str())
                .bind(&l.for_each)
        })
        .await
        .map_err(|e| conflict(e, "task link"))
    }
}

pub(super) fn read_link(row: &AnyRow) -> StoreResult<Link> {
    let kind = text(row, "kind")?;
    Ok(Link {
        from: text(row, "from_task")?,
        to: text(row, "to_task")?,
        kind: LinkKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("link kind {kind}")))?,
        for_each: opt_text(row, "for_each")?,
    })
}

pub(super) const TASK_COLUMNS: &str =
    "id, name, project_id, spec, schedule, paused, next_fire_at, created_at, updated_at";

pub(super) fn read_task(row: &AnyRow) -> StoreResult<Task> {
    let spec = text(row, "spec")?;
    let schedule = opt_text(row, "schedule")?;
    Ok(Task {
        id: text(row, "id")?,
        name: text(row, "name")?,
        project_id: text(row, "project_id")?,
        spec: json(&spec, "task spec")?,
        schedule: schedule.map(|s| json(&s, "schedule")).transpose()?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        next_fire_at: row.try_get("next_fire_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
