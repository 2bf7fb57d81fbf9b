//! `GET /queues`: how many jobs wait in each broker queue (any signed-in user may read it; the
//! dashboard shows it). The broker's view, not SQL's: a run in backoff before its retry is
//! `queued` in SQL but not yet in a queue.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::{ok, List};
use crate::auth::Ctx;
use crate::problem::ApiResult;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/queues", get(list))
}

#[derive(Serialize)]
struct QueueDepth {
    name: String,
    depth: u64,
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    let mut queues: Vec<QueueDepth> = ctx
        .state
        .broker
        .queue_depths()
        .await?
        .into_iter()
        .map(|(name, depth)| QueueDepth { name, depth })
        .collect();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ok(List::all(queues)))
}
