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
        password_hash: auth::hash_new_password(&ctx.state, body.password).await?,
        generation: 0,
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
    check_id(&id, "user")?;
    let before = ctx
        .state
        .store
        .user(&id)
        .await
        .map_err(named("user", &id))?;
    let password_hash = match patch.password {
        None => None,
        Some(pw) => {
            check_password(&pw)?;
            if own {
                check_current_password(&ctx, &before, patch.current_password).await?;
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

/// One's own password changes only with the current one, checked like a login (throttled per
/// address and user, on the password threads): a stolen session alone cannot take the account.
async fn check_current_password(ctx: &Ctx, user: &User, current: Option<String>) -> ApiResult<()> {
    let Some(current) = current else {
        return Err(Problem::bad_request(
            "current_password is required to change your own password",
        ));
    };
    let attempt = ctx
        .state
        .throttle
        .admit(&user.username, &ctx.client.address)
        .map_err(Problem::too_many)?;
    let hash = Some(user.password_hash.clone());
    let verified = match auth::verify_password(&ctx.state, current, hash).await {
        Ok(v) => v,
        Err(busy) => {
            attempt.withdraw();
            return Err(busy);
        }
    };
    if verified {
        attempt.succeeded();
        return Ok(());
    }
    attempt.failed();
    audit::record(ctx, "user.update", &user.id, None, None, "denied").await;
    Err(Problem::forbidden("the current password is wrong"))
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
    ctx.state
        .store
        .delete_user(&id)
        .await
        .map_err(named("user", &id))?;
    ctx.state.principals.forget_all();
    audit::record(&ctx, "user.delete", &id, to_value(&before), None, "ok").await;
    Ok(no_content())
}
