//! API tokens: what a valid new token is (scoped no wider than its creator's role, expiring),
//! and finding one to revoke.

use serde::Deserialize;

use antcode_core::ids;
use antcode_core::model::{ApiToken, Role};

use crate::auth::{self, Principal};
use crate::problem::{ApiResult, Problem};
use crate::AppState;

const DEFAULT_TTL_S: u64 = 90 * 24 * 3600;
pub(crate) const MAX_TTL_S: u64 = 366 * 24 * 3600;

/// Longest token name, in bytes.
pub const MAX_NAME_BYTES: usize = 100;

/// The body of `POST /tokens`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    expires_in_s: Option<u64>,
}

/// Stores a new API token of `who` made at `now`: the token and its secret, which only its hash
/// is kept of.
pub async fn create(
    state: &AppState,
    who: &Principal,
    body: NewToken,
    now: i64,
) -> ApiResult<(ApiToken, String)> {
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
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
    if auth::rank(auth::scope_cap(&scopes)) > auth::rank(who.role) {
        return Err(Problem::forbidden(format!(
            "scopes {scopes:?} exceed your current role ({})",
            who.role.as_str()
        )));
    }
    let ttl = body.expires_in_s.unwrap_or(DEFAULT_TTL_S);
    if ttl == 0 || ttl > MAX_TTL_S {
        return Err(Problem::bad_request(format!(
            "expires_in_s must be between 1 and {MAX_TTL_S}"
        )));
    }
    let secret = ids::new_token("act");
    let token = ApiToken {
        id: ids::new_id(),
        user_id: who.user.id.clone(),
        name,
        kind: "api".into(),
        scopes,
        created_at: now,
        expires_at: now + (ttl as i64) * 1000,
        token_hash: ids::token_hash(&secret),
        // Dead at once if the owner changed since this request authenticated.
        generation: who.user.generation,
    };
    state.store.create_token(&token).await?;
    Ok((token, secret))
}

/// Token `id` if `who` may revoke it: one of their own, or anyone's for an admin.
pub async fn revocable(state: &AppState, who: &Principal, id: &str) -> ApiResult<ApiToken> {
    let store = &state.store;
    let mut found = store
        .list_tokens(&who.user.id)
        .await?
        .into_iter()
        .find(|t| t.id == id);
    if found.is_none() && who.role == Role::Admin {
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
    found.ok_or_else(|| Problem::not_found(format!("token {id} not found")))
}
