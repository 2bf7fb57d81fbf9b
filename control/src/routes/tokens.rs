//! `GET|POST /tokens`, `DELETE /tokens/{id}`: API tokens, scoped and expiring, shown once.
//! Creating and revoking them are changes: a `read` token can do neither.

use axum::response::Response;
use axum::routing::{delete, get};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use antcode_core::ids;
use antcode_core::model::{ApiToken, Role};
use antcode_core::time::now_ms;

use super::{created, no_content, ok, LateJson, List, P};
use crate::audit::{self, to_value};
use crate::auth::{self, Ctx};
use crate::problem::{check_id, ApiResult, Problem};
use crate::AppState;

const DEFAULT_TTL_S: u64 = 90 * 24 * 3600;
const MAX_TTL_S: u64 = 366 * 24 * 3600;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    expires_in_s: Option<u64>,
}

async fn create(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require_write("token.create", "").await?;
    let body: NewToken = raw.parse()?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return Err(Problem::bad_request("name must be 1-100 characters"));
    }
    let scopes = body.scopes.unwrap_or_else(|| vec!["read".into()]);
    if scopes.is_empty() {
        return Err(Problem::bad_request("scopes must not be empty"));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| !["read", "write", "admin"].contains(&s.as_str()))
    {
        return Err(Problem::bad_request(format!(
            "unknown scope {bad:?}; use read, write or admin"
        )));
    }
    // A token may not grant more than its creator holds right now: a read-only token cannot
    // mint a write token for its owner.
    if auth::rank(auth::scope_cap(&scopes)) > auth::rank(ctx.who.role) {
        return Err(Problem::forbidden(format!(
            "scopes {scopes:?} exceed your current role ({})",
            ctx.who.role.as_str()
        )));
    }
    let ttl = body.expires_in_s.unwrap_or(DEFAULT_TTL_S);
    if ttl == 0 || ttl > MAX_TTL_S {
        return Err(Problem::bad_request(format!(
            "expires_in_s must be between 1 and {MAX_TTL_S}"
        )));
    }
    let secret = ids::new_token("act");
    let now = now_ms();
    let token = ApiToken {
        id: ids::new_id(),
        user_id: ctx.who.user.id.clone(),
        name,
        kind: "api".into(),
        scopes,
        created_at: now,
        expires_at: now + (ttl as i64) * 1000,
        token_hash: ids::token_hash(&secret),
        // Dead at once if the owner changed since this request authenticated.
        generation: ctx.who.user.generation,
    };
    ctx.state.store.create_token(&token).await?;
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
    let store = &ctx.state.store;
    let mut found = store
        .list_tokens(&ctx.who.user.id)
        .await?
        .into_iter()
        .find(|t| t.id == id);
    // Admins may revoke anyone's token.
    if found.is_none() && ctx.who.role == Role::Admin {
        for user in store.list_users().await? {
            if let Some(t) = store
                .list_tokens(&user.id)
                .await?
                .into_iter()
                .find(|t| t.id == id)
            {
                found = Some(t);
                break;
            }
        }
    }
    let Some(token) = found else {
        return Err(Problem::not_found(format!("token {id} not found")));
    };
    store.delete_token(&id).await?;
    ctx.state.principals.forget_all();
    audit::record(&ctx, "token.delete", &id, to_value(&token), None, "ok").await;
    Ok(no_content())
}
