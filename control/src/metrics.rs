//! Request metrics. The `route` label is the matched route template (`/api/v1/runs/{id}`), never
//! the raw path, so its cardinality is bounded by the routes the code defines.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use antcode_core::telemetry::{exemplars, trace};

pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(
        "antcode_control_http_requests_total",
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    let took = started.elapsed().as_secs_f64();
    if let Some(trace_id) = trace::current_trace_id() {
        exemplars::note(
            "antcode_control_http_request_duration_seconds",
            &[("route", &route)],
            took,
            &trace_id,
        );
    }
    metrics::histogram!("antcode_control_http_request_duration_seconds", "route" => route)
        .record(took);
    resp
}

pub fn run_created(trigger: &str) {
    let trigger = match trigger {
        "manual" | "invoke" | "retry" | "schedule" | "webhook" => trigger.to_string(),
        _ => "other".to_string(),
    };
    metrics::counter!("antcode_control_runs_created_total", "trigger" => trigger).increment(1);
}

/// A webhook call by how it ended: `accepted` (a run started), `replayed` (an
/// `Idempotency-Key` seen before), `unauthorized`, `limited` (over the hook's rate), `refused`
/// (bad input) or `failed` (a server error).
pub fn hook_call(outcome: &'static str) {
    metrics::counter!("antcode_control_hook_calls_total", "outcome" => outcome).increment(1);
}

pub fn login(outcome: &'static str) {
    metrics::counter!("antcode_control_logins_total", "outcome" => outcome).increment(1);
}

/// A Git sync by how it ended (`created`, `unchanged`, `failed`) and what started it (`create`,
/// `api`, `interval`, `webhook`).
pub fn git_sync(outcome: &'static str, trigger: &'static str) {
    metrics::counter!("antcode_control_git_syncs_total", "outcome" => outcome, "trigger" => trigger)
        .increment(1);
}
