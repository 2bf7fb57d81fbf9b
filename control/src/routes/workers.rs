//! Workers as their heartbeats describe them: `GET /workers`, `GET /workers/{id}`,
//! `POST /workers/{id}/drain` (and `/undrain` to take it back).

use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use antcode_core::model::{Role, WorkerStatus};

use super::{ok, List, P};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::{ApiResult, Problem};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workers", get(list))
        .route("/workers/{id}", get(show))
        .route("/workers/{id}/drain", post(drain))
        .route("/workers/{id}/undrain", post(undrain))
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
