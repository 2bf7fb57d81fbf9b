//! `GET|POST /users`, `GET|PATCH|DELETE /users/{id}` (admin only), except that anyone may
//! change their own password with a credential that can write (a login session or a `write` /
//! `admin` token) by sending the current one.
//!
//! A change of password, role or disabled flag, and a delete, revoke every session and token
//! of the user (in the store, in one transaction with the change), and their open live streams
//! end. An admin resetting someone else's password needs no current password: the admin role
//! (and, for a token, the `admin` scope, which is what keeps an admin role) is the authority.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use antcode_core::ids;
use antcode_core::model::{Role, User, UserChange};
use antcode_core::time::now_ms;

use super::{created, no_content, ok, LateJson, List, P};
use crate::audit::{self, to_value};
use crate::auth::{self, Ctx};
use crate::problem::{named, ApiResult, Problem};
use crate::service::users;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", get(show).patch(update).delete(remove))
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Admin, "user.list", "").await?;
    Ok(ok(List::all(ctx.state.store.list_users().await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    role: Role,
}

async fn create(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "user.create", "").await?;
    let body: NewUser = raw.parse()?;
    users::check_username(&body.username)?;
    users::check_password(&body.password)?;
    let user = User {
        id: ids::new_id(),
        username: body.username,
        role: body.role,
        disabled: false,
        created_at: now_ms(),
        password_hash: auth::hash_new_password(&ctx.state, body.password).await?,
        generation: 0,
    };
    ctx.state.store.create_user(&user).await?;
    audit::record(&ctx, "user.create", &user.id, None, to_value(&user), "ok").await;
    Ok(created(user))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "user.read", &id).await?;
    Ok(ok(users::load(&ctx.state, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPatch {
    password: Option<String>,
    /// Required to change one's own password.
    current_password: Option<String>,
    role: Option<Role>,
    disabled: Option<bool>,
}

async fn update(ctx: Ctx, P(id): P<String>, raw: LateJson) -> ApiResult<Response> {
    // Authorisation comes before the body is read, so a caller without the right learns nothing
    // from the answer: someone else's account is for admins, one's own needs a credential that
    // can write.
    let own = id == ctx.who.user.id;
    if own {
        ctx.require_write("user.update", &id).await?;
    } else {
        ctx.require(Role::Admin, "user.update", &id).await?;
    }
    let patch: UserPatch = raw.parse()?;
    if patch.role.is_some() || patch.disabled.is_some() {
        ctx.require(Role::Admin, "user.update", &id).await?;
    }
    let before = users::load(&ctx.state, &id).await?;
    let password_hash = match patch.password {
        None => None,
        Some(pw) => {
            users::check_password(&pw)?;
            if own {
                users::check_current_password(&ctx, &before, patch.current_password).await?;
            }
            Some(auth::hash_new_password(&ctx.state, pw).await?)
        }
    };
    let change = UserChange {
        role: patch.role,
        disabled: patch.disabled,
        password_hash,
    };
    let user = ctx
        .state
        .store
        .change_user(&id, &change)
        .await
        .map_err(named("user", &id))?;
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
    let before = users::load(&ctx.state, &id).await?;
    if id == ctx.who.user.id {
        return Err(Problem::conflict("you cannot delete yourself"));
    }
    ctx.state
        .store
        .delete_user(&id)
        .await
        .map_err(named("user", &id))?;
    ctx.state.principals.forget_all();
    audit::record(&ctx, "user.delete", &id, to_value(&before), None, "ok").await;
    Ok(no_content())
}
