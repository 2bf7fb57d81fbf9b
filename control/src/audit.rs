//! The audit trail: one [`AuditEntry`] per mutation (and per refused mutation), with who, what,
//! which resource, before/after (secrets redacted), from where and how it ended.

use serde_json::Value;

use antcode_core::ids::new_id;
use antcode_core::model::AuditEntry;
use antcode_core::time::now_ms;

use crate::auth::{Client, Ctx};
use crate::AppState;

/// Keys whose values never reach the audit log.
const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "token",
    "token_hash",
    "secret",
    "secret_value",
    "value",
];

/// Replaces secret values with `"***"`. Task `env` values are redacted wholesale: people put
/// credentials there even though `secrets` exists for them.
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if SECRET_KEYS.contains(&k.as_str()) {
                        Value::String("***".into())
                    } else if k == "env" {
                        match v {
                            Value::Object(env) => Value::Object(
                                env.into_iter()
                                    .map(|(ek, _)| (ek, Value::String("***".into())))
                                    .collect(),
                            ),
                            other => redact(other),
                        }
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

pub async fn record(
    ctx: &Ctx,
    action: &str,
    resource: &str,
    before: Option<Value>,
    after: Option<Value>,
    outcome: &str,
) {
    record_as(
        &ctx.state,
        ctx.username(),
        &ctx.client,
        action,
        resource,
        before,
        after,
        outcome,
    )
    .await
}

/// Audit with an explicit actor (logins, where nobody is authenticated yet).
#[allow(clippy::too_many_arguments)]
pub async fn record_as(
    state: &AppState,
    actor: &str,
    client: &Client,
    action: &str,
    resource: &str,
    before: Option<Value>,
    after: Option<Value>,
    outcome: &str,
) {
    let entry = AuditEntry {
        id: new_id(),
        at: now_ms(),
        actor: actor.chars().take(200).collect(),
        action: action.into(),
        resource: resource.chars().take(200).collect(),
        before: before.map(redact),
        after: after.map(redact),
        address: client.address.clone(),
        user_agent: client.user_agent.clone(),
        outcome: outcome.into(),
    };
    // The mutation already happened; a lost audit row is logged loudly rather than undoing it.
    if let Err(e) = state.store.add_audit(&entry).await {
        tracing::error!(error = %e, action, resource, "could not write the audit entry");
    }
}

pub fn to_value<T: serde::Serialize>(v: &T) -> Option<Value> {
    serde_json::to_value(v).ok()
}
