//! Task secrets and their grants: what a valid name and value are, sealing a value, and what
//! a delete must not break.
//!
//! Values are sealed with the control plane's [`SecretBox`](antcode_core::secrets::SecretBox)
//! before they reach the store and are never returned. A grant names a project whose tasks may
//! declare the secret, or every project (`all_projects`).

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use antcode_core::ids;
use antcode_core::secrets::{self, SealedSecret, SecretGrant, SecretMeta};
use antcode_core::store::StoreError;

use super::tasks;
use crate::bounds;
use crate::problem::{ApiResult, Problem};
use crate::AppState;

/// The body of `PUT /secrets/{name}/grants`: the whole set of grants after the call.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsBody {
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    all_projects: bool,
}

/// The secret's metadata, or 404 (a malformed name cannot exist).
pub async fn existing(state: &AppState, name: &str) -> ApiResult<SecretMeta> {
    if !secrets::valid_name(name) {
        return Err(Problem::not_found(format!("secret {name:?} not found")));
    }
    match state.store.secret(name).await {
        Ok(s) => Ok(s.meta),
        Err(StoreError::NotFound) => Err(Problem::not_found(format!("secret {name} not found"))),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the grants of secret `name` by `body`'s, made by `by` at `now`: the grants before
/// and after. Every project named must exist (422 otherwise).
pub async fn set_grants(
    state: &AppState,
    name: &str,
    body: GrantsBody,
    by: &str,
    now: i64,
) -> ApiResult<(Vec<SecretGrant>, Vec<SecretGrant>)> {
    bounds::check_count("projects", body.projects.len(), bounds::GRANTS, "projects")?;
    existing(state, name).await?;
    let mut projects: Vec<String> = body.projects;
    projects.sort();
    projects.dedup();
    for id in &projects {
        let known = ids::is_valid_id(id)
            && match state.store.project(id).await {
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
    let grant = |project_id: Option<String>| SecretGrant {
        secret: name.to_string(),
        project_id,
        granted_at: now,
        granted_by: by.to_string(),
    };
    let mut new: Vec<SecretGrant> = projects.into_iter().map(|p| grant(Some(p))).collect();
    if body.all_projects {
        new.insert(0, grant(None));
    }
    let before = state.store.secret_grants(name).await?;
    state.store.set_secret_grants(name, &new).await?;
    Ok((before, new))
}

/// Removes every grant of secret `name`: the grants before.
pub async fn revoke_grants(state: &AppState, name: &str) -> ApiResult<Vec<SecretGrant>> {
    existing(state, name).await?;
    let before = state.store.secret_grants(name).await?;
    state.store.set_secret_grants(name, &[]).await?;
    Ok(before)
}

pub fn check_name(name: &str) -> ApiResult<()> {
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

/// What a `PUT` of a secret did: its metadata before (None when new) and after.
pub struct Put {
    pub before: Option<SecretMeta>,
    pub meta: SecretMeta,
    pub fresh: bool,
}

/// Seals `value` as secret `name` (checked by [`check_name`]), set by `by` at `now`.
pub async fn put(state: &AppState, name: &str, value: &str, by: &str, now: i64) -> ApiResult<Put> {
    if value.len() > secrets::MAX_VALUE_LEN {
        return Err(Problem::bad_request(format!(
            "value: at most {} bytes",
            secrets::MAX_VALUE_LEN
        )));
    }
    if value.contains('\0') {
        return Err(Problem::bad_request(
            "value: must not contain NUL (it becomes an environment variable)",
        ));
    }
    let Some(sbox) = state.secrets.as_deref() else {
        return Err(Problem::conflict(
            "this control plane has no secret key (ANTCODE_SECRET_KEY), so it cannot store secrets",
        ));
    };
    let before = match state.store.secret(name).await {
        Ok(s) => Some(s.meta),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let meta = SecretMeta {
        name: name.to_string(),
        created_at: before.as_ref().map_or(now, |b| b.created_at),
        updated_at: now,
        updated_by: by.to_string(),
    };
    let sealed = sbox.seal(name, value).map_err(Problem::internal)?;
    let fresh = state
        .store
        .put_secret(&SealedSecret {
            meta: meta.clone(),
            sealed,
        })
        .await?;
    Ok(Put {
        before,
        meta,
        fresh,
    })
}

/// Deletes secret `name` unless a task declares it: its metadata before.
pub async fn remove(state: &AppState, name: &str) -> ApiResult<SecretMeta> {
    let before = existing(state, name).await?;
    // At most ten of them, for the error message.
    let users = tasks::tasks_where(state, 10, |t| t.spec.secrets.iter().any(|s| s == name)).await?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|t| t.name.as_str()).collect();
        return Err(Problem::conflict(format!(
            "secret {name} is declared by task(s) {}; remove it from them first",
            json!(names)
        )));
    }
    match state.store.delete_secret(name).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(before)
}
