//! Recovery run on the host against the database (`antcode admin reset-password USER`,
//! `antcode admin promote USER`): the way back in when no admin can log in. Both go through the
//! same store calls as the API, so they revoke the user's credentials like any change and
//! never leave the users without an enabled admin, and both are audited with the host account
//! that ran them as the actor (`host:<os user>`).

use antcode_core::ids::new_id;
use antcode_core::model::{AuditEntry, Role, User, UserChange};
use antcode_core::store::{Store, StoreError};
use antcode_core::time::now_ms;

use crate::audit::to_value;
use crate::auth::hash_on_blocking_pool;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("the new password must be at least 8 characters (and at most 1024 bytes)")]
    WeakPassword,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Sets `username`'s password (and enables them); every session and token they had is revoked.
pub async fn reset_password(
    store: &dyn Store,
    username: &str,
    password: &str,
    actor: &str,
) -> Result<User, RecoveryError> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(RecoveryError::WeakPassword);
    }
    let before = find(store, username).await?;
    let hash = hash_on_blocking_pool(password)
        .await
        .map_err(RecoveryError::Hash)?;
    let change = UserChange {
        disabled: Some(false),
        password_hash: Some(hash),
        ..UserChange::default()
    };
    let after = store.change_user(&before.id, &change).await?;
    audit(store, actor, "user.reset_password", &before, &after).await?;
    Ok(after)
}

/// Makes `username` an enabled admin; their sessions and tokens are revoked if that changed
/// anything.
pub async fn promote(
    store: &dyn Store,
    username: &str,
    actor: &str,
) -> Result<User, RecoveryError> {
    let before = find(store, username).await?;
    let change = UserChange {
        role: Some(Role::Admin),
        disabled: Some(false),
        password_hash: None,
    };
    let after = store.change_user(&before.id, &change).await?;
    audit(store, actor, "user.promote", &before, &after).await?;
    Ok(after)
}

async fn find(store: &dyn Store, username: &str) -> Result<User, RecoveryError> {
    match store.user_by_name(username).await {
        Ok(u) => Ok(u),
        Err(StoreError::NotFound) => Err(RecoveryError::NoSuchUser(username.to_string())),
        Err(e) => Err(e.into()),
    }
}

async fn audit(
    store: &dyn Store,
    actor: &str,
    action: &str,
    before: &User,
    after: &User,
) -> Result<(), StoreError> {
    let entry = AuditEntry {
        id: new_id(),
        at: now_ms(),
        actor: actor.chars().take(200).collect(),
        action: action.into(),
        resource: before.id.clone(),
        before: to_value(before),
        // A user serialises without its password hash.
        after: to_value(after),
        address: "host".into(),
        user_agent: "antcode admin".into(),
        outcome: "ok".into(),
    };
    store.add_audit(&[entry]).await
}
