//! `GET|POST /users`, `GET|PATCH|DELETE /users/{id}` (admin only).

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use antcode_core::ids;
use antcode_core::model::{Role, User};
use antcode_core::time::now_ms;

use super::{created, no_content, ok, JsonBody, LateJson, List, P};
use crate::audit::{self, to_value};
use crate::auth::{self, Ctx};
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", get(show).patch(update).delete(remove))
}

fn check_username(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "username must be 1-64 characters of letters, digits and . _ @ -",
        ))
    }
}

fn check_password(pw: &str) -> ApiResult<()> {
    if pw.chars().count() < 8 || pw.len() > 1024 {
        return Err(Problem::bad_request(
            "password must be at least 8 characters (and at most 1024 bytes)",
        ));
    }
    Ok(())
}

async fn hash(pw: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Admin, "user.list", "").await?;
    Ok(ok(List::all(ctx.state.store.list_users().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    role: Role,
}

async fn create(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "user.create", "").await?;
    let body: NewUser = raw.parse()?;
    check_username(&body.username)?;
    check_password(&body.password)?;
    let user = User {
        id: ids::new_id(),
        username: body.username,
        role: body.role,
        disabled: false,
        created_at: now_ms(),
        password_hash: hash(body.password).await?,
    };
    ctx.state.store.create_user(&user).await?;
    audit::record(&ctx, "user.create", &user.id, None, to_value(&user), "ok").await;
    Ok(created(user))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "user.read", &id).await?;
    check_id(&id, "user")?;
    Ok(ok(ctx
        .state
        .store
        .user(&id)
        .await
        .map_err(named("user", &id))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    password: Option<String>,
    role: Option<Role>,
    disabled: Option<bool>,
}

/// True when no enabled admin other than `except` would remain.
async fn last_admin(ctx: &Ctx, except: &str) -> ApiResult<bool> {
    let users = ctx.state.store.list_users().await?;
    Ok(!users
        .iter()
        .any(|u| u.id != except && u.role == Role::Admin && !u.disabled))
}

async fn update(
    ctx: Ctx,
    P(id): P<String>,
    JsonBody(patch): JsonBody<UserPatch>,
) -> ApiResult<Response> {
    // Anyone may change their own password; everything else is for admins.
    let own_password = id == ctx.who.user.id && patch.role.is_none() && patch.disabled.is_none();
    if !own_password {
        ctx.require(Role::Admin, "user.update", &id).await?;
    }
    check_id(&id, "user")?;
    let before = ctx
        .state
        .store
        .user(&id)
        .await
        .map_err(named("user", &id))?;
    let mut user = before.clone();
    if let Some(role) = patch.role {
        user.role = role;
    }
    if let Some(disabled) = patch.disabled {
        user.disabled = disabled;
    }
    let loses_admin = before.role == Role::Admin && (user.role != Role::Admin || user.disabled);
    if loses_admin && last_admin(&ctx, &id).await? {
        return Err(Problem::conflict("that would leave no enabled admin"));
    }
    if let Some(pw) = patch.password {
        check_password(&pw)?;
        user.password_hash = hash(pw).await?;
    }
    ctx.state.store.update_user(&user).await?;
    ctx.state.principals.forget_all();
    audit::record(
        &ctx,
        "user.update",
        &id,
        to_value(&before),
        to_value(&user),
        "ok",
    )
    .await;
    Ok(ok(user))
}

async fn remove(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "user.delete", &id).await?;
    check_id(&id, "user")?;
    let before = ctx
        .state
        .store
        .user(&id)
        .await
        .map_err(named("user", &id))?;
    if id == ctx.who.user.id {
        return Err(Problem::conflict("you cannot delete yourself"));
    }
    if before.role == Role::Admin && last_admin(&ctx, &id).await? {
        return Err(Problem::conflict("that would leave no enabled admin"));
    }
    ctx.state.store.delete_user(&id).await?;
    ctx.state.principals.forget_all();
    audit::record(&ctx, "user.delete", &id, to_value(&before), None, "ok").await;
    Ok(no_content())
}
