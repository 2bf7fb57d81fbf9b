//! `GET|POST /tokens`, `DELETE /tokens/{id}`: API tokens, scoped and expiring, shown once.
//! Creating and revoking them are changes: a `read` token can do neither.

use axum::response::Response;
use axum::routing::{delete, get};
use axum::Router;
use serde_json::json;

use antcode_core::time::now_ms;

use super::{created, no_content, ok, LateJson, List, P};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::{check_id, ApiResult, Problem};
use crate::service::tokens::{self, NewToken};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(remove))
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    Ok(ok(List::all(
        ctx.state.store.list_tokens(&ctx.who.user.id).await?,
    )))
}

async fn create(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require_write("token.create", "").await?;
    let body: NewToken = raw.parse()?;
    let (token, secret) = tokens::create(&ctx.state, &ctx.who, body, now_ms()).await?;
    audit::record(
        &ctx,
        "token.create",
        &token.id,
        None,
        to_value(&token),
        "ok",
    )
    .await;
    let mut body = serde_json::to_value(&token).map_err(Problem::internal)?;
    // Shown once: only its hash is kept.
    body["token"] = json!(secret);
    Ok(created(body))
}

async fn remove(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require_write("token.delete", &id).await?;
    check_id(&id, "token")?;
    let token = tokens::revocable(&ctx.state, &ctx.who, &id).await?;
    ctx.state.store.delete_token(&id).await?;
    ctx.state.principals.forget_all();
    audit::record(&ctx, "token.delete", &id, to_value(&token), None, "ok").await;
    Ok(no_content())
}
