//! Users: what a valid username and password are, and the check of one's current password.

use antcode_core::model::User;

use crate::audit;
use crate::auth::{self, Ctx};
use crate::bounds;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::AppState;

pub fn check_username(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= bounds::USERNAME_CHARS
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

pub fn check_password(pw: &str) -> ApiResult<()> {
    if pw.chars().count() < bounds::PASSWORD_MIN_CHARS || pw.len() > bounds::PASSWORD_BYTES {
        return Err(Problem::bad_request(
            "password must be at least 8 characters (and at most 1024 bytes)",
        ));
    }
    Ok(())
}

pub async fn load(state: &AppState, id: &str) -> ApiResult<User> {
    check_id(id, "user")?;
    state.store.user(id).await.map_err(named("user", id))
}

/// One's own password changes only with the current one, checked like a login (throttled per
/// address and user, on the password threads): a stolen session alone cannot take the account.
/// A wrong one is audited as a denied `user.update` of the caller, `ctx`.
pub async fn check_current_password(
    ctx: &Ctx,
    user: &User,
    current: Option<String>,
) -> ApiResult<()> {
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
