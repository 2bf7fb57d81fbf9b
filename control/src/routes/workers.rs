//! Workers as their heartbeats describe them: `GET /workers`, `GET /workers/{id}`,
//! `POST /workers/{id}/drain` (and `/undrain` to take it back). Enrolled (gateway) worker
//! identities: `POST|GET /worker-keys` (one-time enrollment keys, shown once) and
//! `DELETE /workers/{id}` (revoke: the edge refuses its credential within about a second), and
//! `GET /enrolled-workers`, every enrolled identity, revoked or not, heartbeating or not (so an
//! offline worker's credential can be revoked too). What an enrolling runner needs besides its
//! key: `GET /edge` (where it reaches the edge) and `GET /edge/ca.pem` (the cluster CA's
//! certificate, public).

use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::json;

use antcode_core::model::Role;
use antcode_core::time::now_ms;

use super::{attachment, created, ok, JsonBody, List, P};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::service::workers::{self, NewKey};
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
        .route("/edge", get(edge))
        .route("/edge/ca.pem", get(edge_ca))
}

/// Where runners reach the edge (`--edge-url`; `up` knows its own) and whether the cluster CA
/// can be downloaded: what the enrollment command needs besides the key.
async fn edge(ctx: Ctx) -> ApiResult<Response> {
    Ok(ok(json!({
        "url": ctx.state.edge_url,
        "ca": ctx.state.cluster_ca.is_some(),
    })))
}

/// The cluster CA's certificate (never its key), which a gateway runner trusts the edge by.
async fn edge_ca(ctx: Ctx) -> ApiResult<Response> {
    let Some((cert, _)) = ctx.state.cluster_ca.as_ref() else {
        return Err(Problem::not_found(
            "no cluster CA here: control runs without ANTCODE_CLUSTER_CA_CERT",
        ));
    };
    Ok(attachment(cert.clone(), "application/x-pem-file", "ca.pem"))
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    let mut workers = ctx.state.broker.workers().await?;
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(ok(List::all(workers)))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    Ok(ok(workers::find(&ctx.state, &id).await?))
}

async fn set_drain(ctx: Ctx, id: String, drain: bool) -> ApiResult<Response> {
    let action = if drain {
        "worker.drain"
    } else {
        "worker.undrain"
    };
    ctx.require(Role::Operator, action, &id).await?;
    let mut worker = workers::find(&ctx.state, &id).await?;
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

async fn create_key(ctx: Ctx, JsonBody(body): JsonBody<NewKey>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "worker_key.create", "-").await?;
    let (key, secret) = workers::create_key(&ctx.state, body, ctx.username(), now_ms()).await?;
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
