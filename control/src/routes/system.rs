//! Outside `/api/v1`: `/healthz`, `/readyz`, `/metrics`,
//! `/api/openapi.json` and `/docs`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::openapi;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(spec))
        .route("/docs", get(docs))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store and the broker both answer within two seconds.
async fn readyz(State(state): State<AppState>) -> Response {
    let limit = Duration::from_secs(2);
    let store = matches!(
        tokio::time::timeout(limit, state.store.ping()).await,
        Ok(Ok(()))
    );
    let broker = matches!(
        tokio::time::timeout(limit, state.broker.ping()).await,
        Ok(Ok(()))
    );
    let status = if store && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(
            json!({"status": word(store && broker), "store": word(store), "broker": word(broker)}),
        ),
    )
        .into_response()
}

async fn metrics() -> Response {
    let mut resp = antcode_core::telemetry::prometheus()
        .render()
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn spec() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn docs() -> Html<&'static str> {
    Html(openapi::DOCS_HTML)
}
