//! Projects and their immutable, content-addressed versions.
//!
//! `POST /projects`, `GET /projects`, `GET|PATCH|DELETE /projects/{id}`,
//! `GET|POST /projects/{id}/versions`, `GET /projects/{id}/versions/{n}` and
//! `GET /projects/{id}/versions/{n}/download`. A PATCH of `current_version` is a rollback (or
//! roll-forward) to an existing version.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use antcode_core::ids;
use antcode_core::model::{BundleFormat, Project, ProjectVersion, Role};
use antcode_core::time::now_ms;

use super::{created, no_content, ok, JsonBody, List, PageQuery, P, Q};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::bounds;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::upload::{prepare, read_form, store_blob, Prepared};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list).post(create))
        .route("/projects/{id}", get(show).patch(update).delete(remove))
        .route("/projects/{id}/versions", get(versions).post(new_version))
        .route("/projects/{id}/versions/{n}", get(version))
        .route("/projects/{id}/versions/{n}/download", get(download))
}

fn check_name(name: &str) -> ApiResult<String> {
    bounds::check_len("name", name, bounds::NAME_CHARS)?;
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "name must be 1-100 printable characters",
        ));
    }
    Ok(name.to_string())
}

/// A project with its current version object.
fn view(project: &Project, version: &ProjectVersion) -> Value {
    let mut v = serde_json::to_value(project).unwrap_or_default();
    v["version"] = serde_json::to_value(version).unwrap_or_default();
    v
}

fn new_version_row(project_id: &str, number: i64, prepared: &Prepared) -> ProjectVersion {
    ProjectVersion {
        project_id: project_id.to_string(),
        version: number,
        bundle: prepared.bundle.clone(),
        entrypoint: prepared.entrypoint.clone(),
        requirements: prepared.requirements.clone(),
        python_version: None,
        files: prepared.files.clone(),
        created_at: now_ms(),
    }
}

async fn forget_blob(ctx: &Ctx, wrote: bool, key: &str) {
    if wrote {
        if let Err(e) = ctx.state.blobs.delete(key).await {
            tracing::warn!(error = %e, key, "could not remove the bundle of a refused upload");
        }
    }
}

async fn create(ctx: Ctx, req: Request) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.create", "").await?;
    let form = read_form(req, &ctx.state).await?;
    let name = check_name(
        form.name
            .as_deref()
            .ok_or_else(|| Problem::bad_request("the `name` field is required"))?,
    )?;
    let description = form.description.clone().unwrap_or_default();
    bounds::check_len("description", &description, bounds::DESCRIPTION_CHARS)?;
    let store = &ctx.state.store;
    match store.project_by_name(&name).await {
        Ok(_) => {
            return Err(Problem::conflict(format!(
                "a project named {name:?} already exists"
            )))
        }
        Err(antcode_core::store::StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let prepared = prepare(&form).await?;
    let wrote = store_blob(&ctx.state, &prepared).await?;
    let now = now_ms();
    let project = Project {
        id: ids::new_id(),
        name,
        description,
        current_version: 1,
        created_at: now,
        updated_at: now,
    };
    let version = new_version_row(&project.id, 1, &prepared);
    if let Err(e) = store.create_project(&project, &version).await {
        forget_blob(&ctx, wrote, &prepared.bundle.key).await;
        return Err(match e {
            antcode_core::store::StoreError::Conflict(_) => {
                Problem::conflict(format!("a project named {:?} already exists", project.name))
            }
            other => other.into(),
        });
    }
    let body = view(&project, &version);
    audit::record(
        &ctx,
        "project.create",
        &project.id,
        None,
        Some(body.clone()),
        "ok",
    )
    .await;
    Ok(created(body))
}

async fn list(ctx: Ctx, Q(page): Q<PageQuery>) -> ApiResult<Response> {
    let items = ctx
        .state
        .store
        .list_projects(page.limit()?, page.cursor()?)
        .await?;
    Ok(ok(items))
}

async fn load(ctx: &Ctx, id: &str) -> ApiResult<Project> {
    check_id(id, "project")?;
    ctx.state
        .store
        .project(id)
        .await
        .map_err(named("project", id))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let project = load(&ctx, &id).await?;
    let version = ctx
        .state
        .store
        .version(&id, project.current_version)
        .await?;
    Ok(ok(view(&project, &version)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectPatch {
    name: Option<String>,
    description: Option<String>,
    current_version: Option<i64>,
}

async fn update(
    ctx: Ctx,
    P(id): P<String>,
    JsonBody(patch): JsonBody<ProjectPatch>,
) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.update", &id).await?;
    let before = load(&ctx, &id).await?;
    let mut project = before.clone();
    if let Some(name) = &patch.name {
        project.name = check_name(name)?;
    }
    if let Some(d) = patch.description {
        bounds::check_len("description", &d, bounds::DESCRIPTION_CHARS)?;
        project.description = d;
    }
    if let Some(n) = patch.current_version {
        ctx.state.store.version(&id, n).await.map_err(|e| match e {
            antcode_core::store::StoreError::NotFound => {
                Problem::bad_request(format!("current_version: project {id} has no version {n}"))
            }
            other => other.into(),
        })?;
        project.current_version = n;
    }
    project.updated_at = now_ms();
    ctx.state
        .store
        .update_project(&project)
        .await
        .map_err(|e| match e {
            antcode_core::store::StoreError::Conflict(_) => {
                Problem::conflict(format!("a project named {:?} already exists", project.name))
            }
            other => other.into(),
        })?;
    let version = ctx
        .state
        .store
        .version(&id, project.current_version)
        .await?;
    let action = if patch
        .current_version
        .is_some_and(|n| n != before.current_version)
    {
        "project.rollback"
    } else {
        "project.update"
    };
    let body = view(&project, &version);
    audit::record(
        &ctx,
        action,
        &id,
        to_value(&before),
        Some(body.clone()),
        "ok",
    )
    .await;
    Ok(ok(body))
}

async fn remove(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.delete", &id).await?;
    let before = load(&ctx, &id).await?;
    // Tasks point at projects; deleting one out from under them would break every later run.
    let mut cursor: Option<String> = None;
    loop {
        let page = ctx.state.store.list_tasks(500, cursor.as_deref()).await?;
        if let Some(t) = page.items.iter().find(|t| t.project_id == id) {
            return Err(Problem::conflict(format!(
                "task {} ({}) uses this project; delete it first",
                t.id, t.name
            )));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ctx.state.store.delete_project(&id).await?;
    // Bundles are content-addressed and may be shared, and past runs name them: they stay.
    audit::record(&ctx, "project.delete", &id, to_value(&before), None, "ok").await;
    Ok(no_content())
}

async fn versions(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    load(&ctx, &id).await?;
    Ok(ok(List::all(ctx.state.store.list_versions(&id).await?)))
}

async fn new_version(ctx: Ctx, P(id): P<String>, req: Request) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.version.create", &id)
        .await?;
    let project = load(&ctx, &id).await?;
    let form = read_form(req, &ctx.state).await?;
    if form.name.is_some() {
        return Err(Problem::bad_request(
            "`name` is not part of a new version; PATCH the project to rename it",
        ));
    }
    let prepared = prepare(&form).await?;
    let wrote = store_blob(&ctx.state, &prepared).await?;
    let row = new_version_row(&id, 0, &prepared);
    let number = match ctx.state.store.add_version(&row).await {
        Ok(n) => n,
        Err(e) => {
            forget_blob(&ctx, wrote, &prepared.bundle.key).await;
            return Err(e.into());
        }
    };
    let version = ctx.state.store.version(&id, number).await?;
    let body = to_value(&version);
    audit::record(
        &ctx,
        "project.version.create",
        &id,
        to_value(&project),
        body.clone(),
        "ok",
    )
    .await;
    Ok(created(version))
}

async fn version(ctx: Ctx, P((id, n)): P<(String, i64)>) -> ApiResult<Response> {
    load(&ctx, &id).await?;
    let v = ctx
        .state
        .store
        .version(&id, n)
        .await
        .map_err(named("version", &n.to_string()))?;
    Ok(ok(v))
}

async fn download(ctx: Ctx, P((id, n)): P<(String, i64)>) -> ApiResult<Response> {
    let project = load(&ctx, &id).await?;
    let v = ctx
        .state
        .store
        .version(&id, n)
        .await
        .map_err(named("version", &n.to_string()))?;
    let data = ctx.state.blobs.get(&v.bundle.key).await?;
    let safe: String = project
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (file, mime) = match v.bundle.format {
        BundleFormat::Py => (
            v.bundle
                .file_name
                .clone()
                .unwrap_or_else(|| "main.py".into()),
            "text/x-python",
        ),
        BundleFormat::Zip => (format!("{safe}-v{n}.zip"), "application/zip"),
        BundleFormat::TarGz => (format!("{safe}-v{n}.tar.gz"), "application/gzip"),
    };
    let mut resp = data.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
