//! Projects synced from Git and the credentials they fetch with.
//!
//! `POST /projects/{id}/sync` syncs now (operator); `POST /projects/{id}/push` is the push
//! webhook a Git server calls (GitHub, Gitea: HMAC of the body; GitLab: the token), which
//! starts a sync in the background; `POST /projects/{id}/push/rotate` mints a new webhook
//! secret. `GET /git-credentials` lists credentials without their secrets;
//! `PUT|DELETE /git-credentials/{name}` (admin only) write them, sealed. A project is created
//! from Git by `POST /projects` with a `git` object (see `projects.rs`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use antcode_core::model::Role;

use super::{created, no_content, ok, LateJson, List, P};
use crate::audit::{self, to_value};
use crate::auth::{Client, Ctx};
use crate::problem::{ApiResult, Problem};
use crate::service::git::{self, CredentialBody};
use crate::service::projects::load;
use crate::AppState;

/// Push webhook calls a project may make a minute (a burst of pushes is one sync anyway).
const PUSH_RATE_PER_MIN: u32 = 30;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects/{id}/sync", post(sync))
        .route("/projects/{id}/push", post(push))
        .route("/projects/{id}/push/rotate", post(rotate))
        .route("/git-credentials", get(list))
        .route("/git-credentials/{name}", put(upsert).delete(remove))
}

async fn sync(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.sync", &id).await?;
    let before = load(&ctx.state, &id).await?;
    let result = git::sync(&ctx.state, &before, "api").await;
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    let after = ctx.state.store.project(&id).await.ok();
    audit::record(
        &ctx,
        "project.sync",
        &id,
        to_value(&before.sync),
        after.as_ref().and_then(|p| to_value(&p.sync)),
        outcome,
    )
    .await;
    Ok(ok(result?))
}

/// The push webhook: see the module doc. Answers 202 when a sync started, 200 when the push
/// does not concern the project (another branch) or is a ping, 401 on a bad signature.
async fn push(
    State(state): State<AppState>,
    client: Client,
    P(id): P<String>,
    headers: HeaderMap,
    raw: LateJson,
) -> Response {
    match answer_push(&state, &client, &id, &headers, &raw.0).await {
        Ok(resp) => resp,
        Err(p) => p.into_response(),
    }
}

/// Refused push calls of one project audited per minute, at most: past that (and for unknown
/// projects) they are only answered, so nobody fills the audit trail with bad signatures.
const DENIALS_AUDITED_PER_MIN: u32 = 10;

async fn answer_push(
    state: &AppState,
    client: &Client,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let (project, push) = match git::verify_push(state, id, headers, body).await {
        Ok(verified) => verified,
        Err(p) => {
            let known = state.store.project(id).await.is_ok();
            let key = format!("push:{id}");
            let now = std::time::Instant::now();
            if known
                && state
                    .hook_denials
                    .take(&key, DENIALS_AUDITED_PER_MIN, now)
                    .is_ok()
            {
                audit::record_as(
                    state,
                    "git-push",
                    client,
                    "project.push",
                    id,
                    None,
                    None,
                    "denied",
                )
                .await;
            }
            return Err(p);
        }
    };
    if push.ping {
        return Ok(ok(json!({"status": "pong"})));
    }
    let reference = project
        .source
        .as_ref()
        .map(|s| s.reference.clone())
        .unwrap_or_default();
    if !git::push_concerns(&reference, push.reference.as_deref()) {
        return Ok(ok(json!({
            "status": "ignored",
            "detail": format!("the project follows {reference:?}; this push was to {:?}", push.reference.unwrap_or_default()),
        })));
    }
    if let Err(wait) = state.hook_buckets.take(
        &format!("push:{id}"),
        PUSH_RATE_PER_MIN,
        std::time::Instant::now(),
    ) {
        return Err(Problem::rate_limited(
            "too many push calls for this project; retry later",
            wait,
        ));
    }
    let (state, id, client) = (state.clone(), id.to_string(), client.clone());
    tokio::spawn(async move {
        let result = git::sync(&state, &project, "webhook").await;
        if let Err(p) = &result {
            tracing::warn!(project = %id, error = %p.detail, "git sync after a push failed");
        }
        git::audit_sync(&state, "git-push", &client, &id, &result).await;
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "syncing"}))).into_response())
}

async fn rotate(ctx: Ctx, P(id): P<String>, headers: HeaderMap) -> ApiResult<Response> {
    ctx.require(Role::Operator, "project.push.rotate", &id)
        .await?;
    let project = load(&ctx.state, &id).await?;
    if project.source.is_none() {
        return Err(Problem::conflict(format!(
            "project {id} is not synced from Git"
        )));
    }
    let (secret, sealed) = git::mint_push_secret(git::push_sealer(&ctx.state)?, &id)?;
    ctx.state.store.set_hook_secret(&id, Some(&sealed)).await?;
    audit::record(&ctx, "project.push.rotate", &id, None, None, "ok").await;
    Ok(ok(push_view(&ctx.state, &headers, &id, Some(secret))))
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    Ok(ok(List::all(ctx.state.store.list_git_credentials().await?)))
}

async fn upsert(ctx: Ctx, P(name): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "git_credential.put", &name)
        .await?;
    let body: CredentialBody = raw.parse()?;
    let sealed = git::seal_credential(&ctx.state, &name, body, ctx.username())?;
    let before = ctx.state.store.git_credential(&name).await.ok();
    let fresh = ctx.state.store.put_git_credential(&sealed).await?;
    let meta = ctx.state.store.git_credential(&name).await?.meta;
    // The secret is never part of the audit entry: only that it changed.
    audit::record(
        &ctx,
        if fresh {
            "git_credential.create"
        } else {
            "git_credential.update"
        },
        &name,
        before.and_then(|b| to_value(&b.meta)),
        to_value(&meta),
        "ok",
    )
    .await;
    Ok(if fresh { created(meta) } else { ok(meta) })
}

async fn remove(ctx: Ctx, P(name): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "git_credential.delete", &name)
        .await?;
    let before = ctx
        .state
        .store
        .git_credential(&name)
        .await
        .map_err(|e| crate::problem::named("git credential", &name)(e))?;
    git::check_unused(&ctx.state, &name).await?;
    ctx.state.store.delete_git_credential(&name).await?;
    audit::record(
        &ctx,
        "git_credential.delete",
        &name,
        to_value(&before.meta),
        None,
        "ok",
    )
    .await;
    Ok(no_content())
}

/// Where a Git server sends project `id`'s pushes, and the secret it signs them with (shown
/// only when minted).
pub(crate) fn push_view(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    secret: Option<String>,
) -> serde_json::Value {
    json!({
        "url": format!("{}/api/v1/projects/{id}/push", super::hooks::public_base(state, headers)),
        "content_type": "application/json",
        "secret": secret,
    })
}
