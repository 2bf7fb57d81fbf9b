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
use serde_json::Value;

use antcode_core::model::{Project, ProjectVersion, Role};
use antcode_core::time::now_ms;

use super::{created, no_content, ok, JsonBody, List, PageQuery, P, Q};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::ApiResult;
use crate::service::projects::{self, load, ProjectPatch};
use crate::upload::read_form;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list).post(create))
        .route("/projects/{id}", get(show).patch(update).delete(remove))
        .route("/projects/{id}/versions", get(versions).post(new_version))
        .route("/projects/{id}/versions/{n}", get(version))
        .route("/projects/{id}/versions/{n}/download", get(download))
}

/// A project with its current version object.
fn view(project: &Project, version: &ProjectVersion) -> Value {
    let mut v = serde_json::to_value(project).unwrap_or_default();
    v["version"] = serde_json::to_value(version).unwrap_or_default();
    v
}

async fn create(ctx: Ctx, req: Request) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.create", "").await?;
    let form = read_form(req, &ctx.state).await?;
    let (project, version) = projects::create(&ctx.state, &form, now_ms()).await?;
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

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let project = load(&ctx.state, &id).await?;
    let version = ctx
        .state
        .store
        .version(&id, project.current_version)
        .await?;
    Ok(ok(view(&project, &version)))
}

async fn update(
    ctx: Ctx,
    P(id): P<String>,
    JsonBody(patch): JsonBody<ProjectPatch>,
) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.update", &id).await?;
    let before = load(&ctx.state, &id).await?;
    let after = projects::update(&ctx.state, &before, patch, now_ms()).await?;
    let action = if after.moved {
        "project.rollback"
    } else {
        "project.update"
    };
    let body = view(&after.project, &after.version);
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
    let before = load(&ctx.state, &id).await?;
    projects::remove(&ctx.state, &id).await?;
    audit::record(&ctx, "project.delete", &id, to_value(&before), None, "ok").await;
    Ok(no_content())
}

async fn versions(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    load(&ctx.state, &id).await?;
    Ok(ok(List::all(ctx.state.store.list_versions(&id).await?)))
}

async fn new_version(ctx: Ctx, P(id): P<String>, req: Request) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.version.create", &id)
        .await?;
    let project = load(&ctx.state, &id).await?;
    let form = read_form(req, &ctx.state).await?;
    let version = projects::add_version(&ctx.state, &id, &form, now_ms()).await?;
    audit::record(
        &ctx,
        "project.version.create",
        &id,
        to_value(&project),
        to_value(&version),
        "ok",
    )
    .await;
    Ok(created(version))
}

async fn version(ctx: Ctx, P((id, n)): P<(String, i64)>) -> ApiResult<Response> {
    load(&ctx.state, &id).await?;
    Ok(ok(projects::version(&ctx.state, &id, n).await?))
}

async fn download(ctx: Ctx, P((id, n)): P<(String, i64)>) -> ApiResult<Response> {
    let project = load(&ctx.state, &id).await?;
    let v = projects::version(&ctx.state, &id, n).await?;
    let data = ctx.state.blobs.get(&v.bundle.key).await?;
    let (file, mime) = projects::download_name(&project, &v);
    let mut resp = data.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
