//! A span per API request when traces are exported: a child of the caller's `traceparent`
//! header if it sends one, named by the matched route, current while the handler runs (so a
//! run created by the request is in its trace) and around the request's log lines.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use antcode_core::telemetry::trace::{self, Kind, RunSpan, TRACEPARENT};

pub async fn span(req: Request, next: Next) -> Response {
    if !trace::enabled() {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let parent = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let span = RunSpan::start(
        format!("{} {route}", req.method()),
        Kind::Server,
        parent.as_deref(),
    );
    span.set("http.request.method", req.method().to_string());
    span.set("http.route", route);
    let resp = span
        .attach(next.run(req))
        .instrument(span.logs("request"))
        .await;
    let status = resp.status();
    span.set("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.fail(status.to_string());
    }
    resp
}
