//! Outside `/api/v1`: `/healthz`, `/readyz`, `/metrics`,
//! `/api/openapi.json` and `/docs`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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

/// Whether the store and the broker each answer within two seconds.
async fn dependencies(state: &AppState) -> (bool, bool) {
    let limit = Duration::from_secs(2);
    let store = async {
        matches!(
            tokio::time::timeout(limit, state.store.ping()).await,
            Ok(Ok(()))
        )
    };
    let broker = async {
        matches!(
            tokio::time::timeout(limit, state.broker.ping()).await,
            Ok(Ok(()))
        )
    };
    tokio::join!(store, broker)
}

/// Ready when the store and the broker both answer within two seconds.
async fn readyz(State(state): State<AppState>) -> Response {
    let (store, broker) = dependencies(&state).await;
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

/// The registry, after `antcode_ready` and `antcode_dependency_up{dependency}` (`store`,
/// `broker`; 1 up, 0 down) are set from the readiness check, so an alert sees a control plane
/// that answers but cannot reach its database or its broker.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (store, broker) = dependencies(&state).await;
    let one = |ok: bool| if ok { 1.0 } else { 0.0 };
    ::metrics::gauge!("antcode_dependency_up", "dependency" => "store").set(one(store));
    ::metrics::gauge!("antcode_dependency_up", "dependency" => "broker").set(one(broker));
    ::metrics::gauge!("antcode_ready").set(one(store && broker));
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = antcode_core::telemetry::exposition(accept);
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

async fn spec() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn docs() -> Html<&'static str> {
    Html(openapi::DOCS_HTML)
}
