//! Projects and their immutable, content-addressed versions.
//!
//! `POST /projects`, `GET /projects`, `GET|PATCH|DELETE /projects/{id}`,
//! `GET|POST /projects/{id}/versions`, `GET /projects/{id}/versions/{n}` and
//! `GET /projects/{id}/versions/{n}/download`; the file browser's
//! `GET /projects/{id}/versions/{n}/files`, `GET /projects/{id}/versions/{n}/files/{*path}` and
//! `GET /projects/{id}/diff?from=N&to=M` (`service::files` has their bounds). A PATCH of `current_version` is a rollback (or
//! roll-forward) to an existing version. `POST /projects` with JSON `{name, git: {url, ref, …}}`
//! creates a project synced from Git (`routes::git` has its sync and push webhook); its answer
//! holds the push webhook's URL and secret, shown only there.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use antcode_core::model::{Project, ProjectVersion, Role};
use antcode_core::time::now_ms;

use super::{attachment, created, no_content, ok, JsonBody, List, PageQuery, P, Q};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::ApiResult;
use crate::service::files;
use crate::service::projects::{self, load, ProjectPatch};
use crate::upload::{inline_form, read_body, read_form, Body};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list).post(create))
        .route("/projects/{id}", get(show).patch(update).delete(remove))
        .route("/projects/{id}/versions", get(versions).post(new_version))
        .route("/projects/{id}/versions/{n}", get(version))
        .route("/projects/{id}/versions/{n}/download", get(download))
        .route("/projects/{id}/versions/{n}/files", get(files))
        .route("/projects/{id}/versions/{n}/files/{*path}", get(file))
        .route("/projects/{id}/diff", get(diff))
}

/// A project with its current version object.
fn view(project: &Project, version: &ProjectVersion) -> Value {
    let mut v = serde_json::to_value(project).unwrap_or_default();
    v["version"] = serde_json::to_value(version).unwrap_or_default();
    v
}

async fn create(ctx: Ctx, headers: HeaderMap, req: Request) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.create", "").await?;
    let (project, version, push) = match read_body(req, &ctx.state).await? {
        Body::Json(raw) if names_git(&raw) => {
            let body: projects::GitCreate = crate::problem::parse_json(&raw)?;
            if projects::needs_admin(None, body.git()) {
                ctx.require(Role::Admin, "project.git.credential", "")
                    .await?;
            }
            let (p, v, secret) = projects::create_from_git(&ctx.state, body, now_ms()).await?;
            let push = super::git::push_view(&ctx.state, &headers, &p.id, secret);
            (p, v, Some(push))
        }
        Body::Json(raw) => {
            let form = inline_form(&raw)?;
            let (p, v) = projects::create(&ctx.state, &form, now_ms()).await?;
            (p, v, None)
        }
        Body::Form(form) => {
            let (p, v) = projects::create(&ctx.state, &form, now_ms()).await?;
            (p, v, None)
        }
    };
    let mut body = view(&project, &version);
    audit::record(
        &ctx,
        "project.create",
        &project.id,
        None,
        Some(body.clone()),
        "ok",
    )
    .await;
    // The push secret is shown once, here, and never audited.
    if let Some(push) = push {
        body["push"] = push;
    }
    Ok(created(body))
}

/// Whether a JSON body is a Git project's (has a top-level `git`), not inline code. The
/// other fields are skipped unread: an inline body may carry megabytes of code, parsed once
/// for real afterwards.
fn names_git(raw: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        git: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(raw).is_ok_and(|p| p.git.is_some())
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
    if patch
        .git()
        .is_some_and(|g| projects::needs_admin(before.source.as_ref(), g))
    {
        ctx.require(Role::Admin, "project.git.credential", &id)
            .await?;
    }
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
    Ok(attachment(data, mime, &file))
}

async fn files(ctx: Ctx, P((id, n)): P<(String, i64)>) -> ApiResult<Response> {
    load(&ctx.state, &id).await?;
    let v = projects::version(&ctx.state, &id, n).await?;
    Ok(ok(&*files::listing(&ctx.state, &v).await?))
}

async fn file(ctx: Ctx, P((id, n, path)): P<(String, i64, String)>) -> ApiResult<Response> {
    let path = files::check_path(&path)?;
    load(&ctx.state, &id).await?;
    let v = projects::version(&ctx.state, &id, n).await?;
    Ok(ok(files::file(&ctx.state, &v, path).await?))
}

/// The two versions `GET /projects/{id}/diff` compares.
#[derive(serde::Deserialize)]
struct DiffQuery {
    from: i64,
    to: i64,
}

async fn diff(ctx: Ctx, P(id): P<String>, Q(q): Q<DiffQuery>) -> ApiResult<Response> {
    load(&ctx.state, &id).await?;
    let a = projects::version(&ctx.state, &id, q.from).await?;
    let b = projects::version(&ctx.state, &id, q.to).await?;
    Ok(ok(files::diff(&ctx.state, &a, &b).await?))
}
