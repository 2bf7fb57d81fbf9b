//! The audit trail: one [`AuditEntry`] per mutation (and per refused mutation), with who, what,
//! which resource, before/after (secrets redacted), from where and how it ended.
//!
//! Entries are written by one task ([`AuditLog`]): a request's entry joins those waiting (the
//! first waits up to `LINGER` for others) and they are stored together, one commit for many,
//! instead of a commit of its own after every mutation. Reading the trail through the API
//! first waits for what was recorded before it, so a caller always sees its own entries;
//! shutdown waits for all of them.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use antcode_core::store::Store;

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
    state.audit.add(entry).await;
}

/// Entries waiting for the writer, at most; a request then waits for room.
const QUEUED_MAX: usize = 4096;
/// Entries stored together, at most.
const BATCH_MAX: usize = 256;
/// How long the first entry of a batch waits for others. Entries live only in memory this
/// long (plus their commit): a crash of the process within it loses them, as it loses the
/// queue; shutdown stores them.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

enum Message {
    Entry(Box<AuditEntry>),
    /// Answered once everything queued before it is stored.
    Flush(oneshot::Sender<()>),
}

/// The audit writer's queue.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Message>,
}

impl AuditLog {
    /// Starts the writer; it stops when the last handle is dropped, after storing what is queued.
    pub fn start(store: Arc<dyn Store>) -> AuditLog {
        let (queue, rx) = mpsc::channel(QUEUED_MAX);
        tokio::spawn(write_loop(store, rx));
        AuditLog { queue }
    }

    async fn add(&self, entry: AuditEntry) {
        let sent = self.queue.send(Message::Entry(Box::new(entry))).await;
        if let Err(mpsc::error::SendError(Message::Entry(e))) = sent {
            tracing::error!(action = %e.action, resource = %e.resource, "the audit writer is gone; entry lost");
        }
    }

    /// Waits until every entry added before this call is stored (or its failure logged).
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = stored.await;
        }
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        take(first, &mut batch, &mut waiting);
        // Linger for company: on SQLite every commit is an fsync on the one write connection,
        // which the next trigger's commit then queues behind. A flush (a reader of the trail,
        // shutdown) or a full batch ends the wait at once.
        let deadline = tokio::time::Instant::now() + LINGER;
        while waiting.is_empty() && batch.len() < BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => take(message, &mut batch, &mut waiting),
                Ok(None) | Err(_) => break,
            }
        }
        // The mutations already happened; a lost audit row is logged loudly rather than
        // undoing them.
        let stored = match batch.is_empty() {
            true => Ok(()),
            false => store.add_audit(&batch).await,
        };
        if let Err(e) = stored {
            for entry in &batch {
                tracing::error!(error = %e, action = %entry.action, resource = %entry.resource, "could not write the audit entry");
            }
        }
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

fn take(message: Message, batch: &mut Vec<AuditEntry>, waiting: &mut Vec<oneshot::Sender<()>>) {
    match message {
        Message::Entry(e) => batch.push(*e),
        Message::Flush(done) => waiting.push(done),
    }
}

pub fn to_value<T: serde::Serialize>(v: &T) -> Option<Value> {
    serde_json::to_value(v).ok()
}
