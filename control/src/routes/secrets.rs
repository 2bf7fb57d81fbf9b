//! Task secrets: `GET /secrets` (names and timestamps, never values), `PUT /secrets/{name}`
//! `{value}` and `DELETE /secrets/{name}` (admin only), and their grants:
//! `GET|PUT|DELETE /secrets/{name}/grants` (admin only). A grant names a project whose tasks may
//! declare the secret, or every project (`all_projects`); a task is refused a secret not granted
//! to its project, and a run whose grant was revoked since fails instead of getting the value.
//!
//! Values are sealed with the control plane's [`SecretBox`](antcode_core::secrets::SecretBox)
//! before they reach the store and are never returned by any route; the audit trail records
//! who changed which secret, not what it was set to.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use antcode_core::model::Role;
use antcode_core::time::now_ms;

use super::{created, no_content, ok, LateJson, List, P};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::ApiResult;
use crate::service::secrets::{self, existing, GrantsBody};
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

async fn grants(ctx: Ctx, P(name): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.grants.read", &name)
        .await?;
    existing(&ctx.state, &name).await?;
    Ok(ok(List::all(ctx.state.store.secret_grants(&name).await?)))
}

async fn set_grants(ctx: Ctx, P(name): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.grant", &name).await?;
    let body: GrantsBody = raw.parse()?;
    let (before, new) =
        secrets::set_grants(&ctx.state, &name, body, ctx.username(), now_ms()).await?;
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
    let before = secrets::revoke_grants(&ctx.state, &name).await?;
    audit::record(&ctx, "secret.revoke", &name, to_value(&before), None, "ok").await;
    Ok(no_content())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretBody {
    value: String,
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    Ok(ok(List::all(ctx.state.store.list_secrets().await?)))
}

async fn upsert(ctx: Ctx, P(name): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.put", &name).await?;
    secrets::check_name(&name)?;
    let body: SecretBody = raw.parse()?;
    let put = secrets::put(&ctx.state, &name, &body.value, ctx.username(), now_ms()).await?;
    // The value is never part of the audit entry, not even redacted: only that it changed.
    audit::record(
        &ctx,
        if put.fresh {
            "secret.create"
        } else {
            "secret.update"
        },
        &name,
        put.before.as_ref().and_then(to_value),
        to_value(&put.meta),
        "ok",
    )
    .await;
    Ok(if put.fresh {
        created(put.meta)
    } else {
        ok(put.meta)
    })
}

async fn remove(ctx: Ctx, P(name): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "secret.delete", &name).await?;
    let before = secrets::remove(&ctx.state, &name).await?;
    audit::record(&ctx, "secret.delete", &name, to_value(&before), None, "ok").await;
    Ok(no_content())
}
