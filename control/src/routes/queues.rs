//! `GET /queues`: how many jobs wait in each broker queue (any signed-in user may read it; the
//! dashboard shows it). The broker's view, not SQL's: a run in backoff before its retry is
//! `queued` in SQL but not yet in a queue.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use antcode_core::broker::routing;

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
    // Jobs with label requirements or concurrency limits wait in routes of their queue.
    let depths = routing::depths_by_queue(ctx.state.broker.queue_depths().await?);
    let queues: Vec<QueueDepth> = depths
        .into_iter()
        .map(|(name, depth)| QueueDepth { name, depth })
        .collect();
    Ok(ok(List::all(queues)))
}
