//! The operations endpoint of processes that have no HTTP API of their own (scheduler, runner,
//! edge): `/metrics`, `/healthz` and `/readyz` on a separate port.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{extract::State, routing::get, Router};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use antcode_core::Shutdown;

/// A readiness probe: `Ok` when the process can do its job.
pub type Ready =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The registry, after `antcode_ready` (1 ready, 0 not) is set from the readiness check, so
/// an alert sees a process that answers but cannot work.
async fn metrics(State(check): State<Ready>, headers: HeaderMap) -> impl IntoResponse {
    let ready = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), check()).await,
        Ok(Ok(()))
    );
    ::metrics::gauge!("antcode_ready").set(if ready { 1.0 } else { 0.0 });
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = antcode_core::telemetry::exposition(accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}

async fn ready(State(check): State<Ready>) -> (StatusCode, String) {
    match check().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Serves the operations endpoint on `addr` until `shutdown`.
pub async fn serve(addr: SocketAddr, check: Ready, shutdown: Shutdown) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(check);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("operations endpoint on http://{addr} (/metrics, /healthz, /readyz)");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
