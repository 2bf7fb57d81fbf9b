//! Task secrets: `GET /secrets` (names and timestamps, never values), `PUT /secrets/{name}`
//! `{value}` and `DELETE /secrets/{name}` (admin only), and their grants:
//! `GET|PUT|DELETE /secrets/{name}/grants` (admin only). A grant names a project whose tasks may
//! declare the secret, or every project (`all_projects`); a task is refused a secret not granted
//! to its project, and a run whose grant was revoked since fails instead of getting the value.
//!
//! Values are sealed with the control plane's [`SecretBox`](antcode_core::secrets::SecretBox)
//! before they reach the store and are never returned by any route; the audit trail records
//! who changed which secret, not what it was set to.

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use antcode_core::ids;
use antcode_core::model::Role;
use antcode_core::secrets::{self, SealedSecret, SecretGrant, SecretMeta};
use antcode_core::store::StoreError;
use antcode_core::time::now_ms;

use super::{created, no_content, ok, LateJson, List, P};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::bounds;
use crate::problem::{ApiResult, Problem};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/secrets", get(list))
        .route("/secrets/{name}", axum::routing::put(upsert).delete(remove))
        .route(
            "/secrets/{name}/grants",
            get(grants).put(set_grants).delete(revoke_grants),
        )
}

/// The body of `PUT /secrets/{name}/grants`: the whole set of grants after the call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsBody {
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    all_projects: bool,
}

/// The secret's metadata, or 404 (a malformed name cannot exist).
async fn existing(state: &AppState, name: &str) -> ApiResult<SecretMeta> {
    if !secrets::valid_name(name) {
        return Err(Problem::not_found(format!("secret {name:?} not found")));
    }
    match state.store.secret(name).await {
        Ok(s) => Ok(s.meta),
        Err(StoreError::NotFound) => Err(Problem::not_found(format!("secret {name} not found"))),
        Err(e) => Err(e.into()),
    }
}

async fn grants(ctx: Ctx, P(name): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.grants.read", &name)
        .await?;
    existing(&ctx.state, &name).await?;
    Ok(ok(List::all(ctx.state.store.secret_grants(&name).await?)))
}

async fn set_grants(ctx: Ctx, P(name): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.grant", &name).await?;
    let body: GrantsBody = raw.parse()?;
    bounds::check_count("projects", body.projects.len(), bounds::GRANTS, "projects")?;
    existing(&ctx.state, &name).await?;
    let mut projects: Vec<String> = body.projects;
    projects.sort();
    projects.dedup();
    for id in &projects {
        let known = ids::is_valid_id(id)
            && match ctx.state.store.project(id).await {
                Ok(_) => true,
                Err(StoreError::NotFound) => false,
                Err(e) => return Err(e.into()),
            };
        if !known {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-project",
                format!("projects: project {id:?} not found"),
            ));
        }
    }
    let now = now_ms();
    let grant = |project_id: Option<String>| SecretGrant {
        secret: name.clone(),
        project_id,
        granted_at: now,
        granted_by: ctx.username().to_string(),
    };
    let mut new: Vec<SecretGrant> = projects.into_iter().map(|p| grant(Some(p))).collect();
    if body.all_projects {
        new.insert(0, grant(None));
    }
    let before = ctx.state.store.secret_grants(&name).await?;
    ctx.state.store.set_secret_grants(&name, &new).await?;
    audit::record(
        &ctx,
        "secret.grant",
        &name,
        to_value(&before),
        to_value(&new),
        "ok",
    )
    .await;
    Ok(ok(List::all(new)))
}

async fn revoke_grants(ctx: Ctx, P(name): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.revoke", &name).await?;
    existing(&ctx.state, &name).await?;
    let before = ctx.state.store.secret_grants(&name).await?;
    ctx.state.store.set_secret_grants(&name, &[]).await?;
    audit::record(&ctx, "secret.revoke", &name, to_value(&before), None, "ok").await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

fn check_name(name: &str) -> ApiResult<()> {
    if secrets::valid_name(name) {
        Ok(())
    } else {
        Err(Problem::bad_request(format!(
            "name: {:?} is not a valid secret name ([A-Z_][A-Z0-9_]*, at most {} characters)",
            name.chars().take(160).collect::<String>(),
            secrets::MAX_NAME_LEN
        )))
    }
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    Ok(ok(List::all(ctx.state.store.list_secrets().await?)))
}

async fn upsert(ctx: Ctx, P(name): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.put", &name).await?;
    check_name(&name)?;
    let body: SecretBody = raw.parse()?;
    if body.value.len() > secrets::MAX_VALUE_LEN {
        return Err(Problem::bad_request(format!(
            "value: at most {} bytes",
            secrets::MAX_VALUE_LEN
        )));
    }
    if body.value.contains('\0') {
        return Err(Problem::bad_request(
            "value: must not contain NUL (it becomes an environment variable)",
        ));
    }
    let Some(sbox) = ctx.state.secrets.as_deref() else {
        return Err(Problem::conflict(
            "this control plane has no secret key (ANTCODE_SECRET_KEY), so it cannot store secrets",
        ));
    };
    let before = match ctx.state.store.secret(&name).await {
        Ok(s) => Some(s.meta),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let now = now_ms();
    let meta = SecretMeta {
        name: name.clone(),
        created_at: before.as_ref().map_or(now, |b| b.created_at),
        updated_at: now,
        updated_by: ctx.username().to_string(),
    };
    let sealed = sbox.seal(&name, &body.value).map_err(Problem::internal)?;
    let fresh = ctx
        .state
        .store
        .put_secret(&SealedSecret {
            meta: meta.clone(),
            sealed,
        })
        .await?;
    // The value is never part of the audit entry, not even redacted: only that it changed.
    audit::record(
        &ctx,
        if fresh {
            "secret.create"
        } else {
            "secret.update"
        },
        &name,
        before.as_ref().and_then(to_value),
        to_value(&meta),
        "ok",
    )
    .await;
    Ok(if fresh { created(meta) } else { ok(meta) })
}

/// Names of the tasks that declare `name` (at most a few, for the error message).
async fn tasks_using(state: &AppState, name: &str) -> ApiResult<Vec<String>> {
    let mut users = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let page = state.store.list_tasks(500, cursor.as_deref()).await?;
        users.extend(
            page.items
                .iter()
                .filter(|t| t.spec.secrets.iter().any(|s| s == name))
                .map(|t| t.name.clone()),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(users),
        }
    }
}

async fn remove(ctx: Ctx, P(name): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.delete", &name).await?;
    let before = existing(&ctx.state, &name).await?;
    let users = tasks_using(&ctx.state, &name).await?;
    if !users.is_empty() {
        return Err(Problem::conflict(format!(
            "secret {name} is declared by task(s) {}; remove it from them first",
            json!(users.iter().take(10).collect::<Vec<_>>())
        )));
    }
    match ctx.state.store.delete_secret(&name).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    audit::record(&ctx, "secret.delete", &name, to_value(&before), None, "ok").await;
    Ok(no_content())
}
