//! Workers as their heartbeats describe them: `GET /workers`, `GET /workers/{id}`,
//! `POST /workers/{id}/drain` (and `/undrain` to take it back). Enrolled (gateway) worker
//! identities: `POST|GET /worker-keys` (one-time enrollment keys, shown once) and
//! `DELETE /workers/{id}` (revoke: the edge refuses its credential within about a second), and
//! `GET /enrolled-workers`, every enrolled identity, revoked or not, heartbeating or not (so an
//! offline worker's credential can be revoked too).

use axum::response::Response;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

use antcode_core::ids;
use antcode_core::model::WorkerKey;
use antcode_core::time::now_ms;
use axum::Router;

use antcode_core::model::{Role, WorkerStatus};

use super::{created, ok, JsonBody, List, P};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workers", get(list))
        .route("/workers/{id}", get(show))
        .route("/workers/{id}/drain", post(drain))
        .route("/workers/{id}/undrain", post(undrain))
        .route("/workers/{id}", delete(revoke))
        .route("/worker-keys", get(list_keys).post(create_key))
        .route("/enrolled-workers", get(list_enrolled))
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    let mut workers = ctx.state.broker.workers().await?;
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(ok(List::all(workers)))
}

async fn find(ctx: &Ctx, id: &str) -> ApiResult<WorkerStatus> {
    let shaped = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    let found = if shaped {
        ctx.state
            .broker
            .workers()
            .await?
            .into_iter()
            .find(|w| w.id == id)
    } else {
        None
    };
    found
        .ok_or_else(|| Problem::not_found(format!("worker {id:?} not found (or not heartbeating)")))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    Ok(ok(find(&ctx, &id).await?))
}

async fn set_drain(ctx: Ctx, id: String, drain: bool) -> ApiResult<Response> {
    let action = if drain {
        "worker.drain"
    } else {
        "worker.undrain"
    };
    ctx.require(Role::Operator, action, &id).await?;
    let mut worker = find(&ctx, &id).await?;
    let before = to_value(&worker);
    ctx.state.broker.set_drain(&id, drain).await?;
    worker.draining = drain;
    audit::record(&ctx, action, &id, before, to_value(&worker), "ok").await;
    Ok(ok(worker))
}

async fn drain(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    set_drain(ctx, id, true).await
}

async fn undrain(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    set_drain(ctx, id, false).await
}

const DEFAULT_KEY_TTL_S: u64 = 24 * 3600;
const MAX_KEY_TTL_S: u64 = 30 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    queues: Option<Vec<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ttl_s: Option<u64>,
}

fn queue_name_ok(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= 64
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

async fn create_key(ctx: Ctx, JsonBody(body): JsonBody<NewKey>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "worker_key.create", "-").await?;
    let note = body.note.unwrap_or_default().trim().to_string();
    if note.len() > 200 {
        return Err(Problem::bad_request("note must be at most 200 characters"));
    }
    let queues = body.queues.unwrap_or_else(|| vec!["default".into()]);
    if queues.is_empty() || queues.len() > 32 || !queues.iter().all(|q| queue_name_ok(q)) {
        return Err(Problem::bad_request(
            "queues: 1-32 names of letters, digits, '.', '_' or '-'",
        ));
    }
    if body.labels.len() > 32
        || body
            .labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
    {
        return Err(Problem::bad_request(
            "labels: at most 32, keys 1-64 and values up to 256 characters",
        ));
    }
    let ttl = body.ttl_s.unwrap_or(DEFAULT_KEY_TTL_S);
    if ttl == 0 || ttl > MAX_KEY_TTL_S {
        return Err(Problem::bad_request(format!(
            "ttl_s must be between 1 and {MAX_KEY_TTL_S}"
        )));
    }
    let secret = ids::new_token("ek");
    let now = now_ms();
    let key = WorkerKey {
        id: ids::new_id(),
        note,
        queues,
        labels: body.labels,
        created_by: ctx.username().to_string(),
        created_at: now,
        expires_at: now + (ttl as i64) * 1000,
        used_at: None,
        used_by: None,
        key_hash: ids::token_hash(&secret),
    };
    ctx.state.store.create_worker_key(&key).await?;
    audit::record(
        &ctx,
        "worker_key.create",
        &key.id,
        None,
        to_value(&key),
        "ok",
    )
    .await;
    let mut body = serde_json::to_value(&key).map_err(Problem::internal)?;
    // Shown once: only its hash is kept.
    body["key"] = json!(secret);
    Ok(created(body))
}

async fn list_keys(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Admin, "worker_key.list", "-").await?;
    Ok(ok(List::all(ctx.state.store.list_worker_keys().await?)))
}

async fn list_enrolled(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Admin, "worker.list_enrolled", "-")
        .await?;
    let mut records = ctx.state.store.list_worker_records().await?;
    records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    Ok(ok(List::all(records)))
}

async fn revoke(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    check_id(&id, "worker")?;
    ctx.require(Role::Admin, "worker.revoke", &id).await?;
    let store = &ctx.state.store;
    let before = store
        .worker_record(&id)
        .await
        .map_err(named("worker", &id))?;
    let after = store.revoke_worker(&id).await?;
    audit::record(
        &ctx,
        "worker.revoke",
        &id,
        to_value(&before),
        to_value(&after),
        "ok",
    )
    .await;
    Ok(ok(after))
}
