//! antcode-control: the control plane.
//!
//! An axum REST API under `/api/v1` (the paths of DESIGN §5) over the three core seams: users,
//! sessions and API tokens with role-based access (admin / operator / viewer), projects and their
//! immutable content-addressed versions (uploaded, or synced from Git), tasks and their webhooks, runs (trigger, invoke, cancel,
//! retry, live logs and state events over SSE), workers, queue depths, and an audit trail of every mutation. Outside the API it
//! serves `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`, `/docs` and the web UI
//! at `/` (see `ui.rs`). Errors are RFC 7807 problem+json everywhere.
//!
//! Entry point: [`run`] with a [`ControlConfig`]; it serves until the shutdown token is cancelled,
//! then lets in-flight requests finish (live streams end at shutdown too) and returns.

mod audit;
mod auth;
mod bounds;
mod client;
mod inflate;
mod kdf;
mod logread;
mod metrics;
mod openapi;
mod problem;
mod ratelimit;
mod recovery;
mod routes;
mod service;
mod traces;
mod ui;
mod upload;

/// How long control may go on accepting a credential changed behind its back.
pub use auth::PRINCIPAL_TTL;
pub use client::Cidr;
pub use recovery::{promote, reset_password, RecoveryError};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use antcode_core::blob::BlobStore;
use antcode_core::broker::Broker;
use antcode_core::store::{Store, StoreError};
use antcode_core::Shutdown;

pub use antcode_core::secrets::SecretBox;

pub use problem::Problem;

/// Everything the control plane needs; the seams are shared with the other planes of the process.
pub struct ControlConfig {
    /// Already bound (tests bind `127.0.0.1:0`); made non-blocking here.
    pub listener: std::net::TcpListener,
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub blobs: Arc<dyn BlobStore>,
    /// Used only to create user `admin` (role admin) when the users table is empty.
    pub admin_password: String,
    pub dev: bool,
    /// Largest accepted request body (uploads); past it the answer is 413 problem+json.
    pub max_upload_bytes: usize,
    /// Seals task secrets (`ANTCODE_SECRET_KEY`); without it `PUT /secrets` is refused and runs
    /// of tasks that declare secrets fail.
    pub secrets: Option<Arc<SecretBox>>,
    /// Bearer token the edge presents on `/internal/v1/*`; `None` disables those routes (404).
    pub edge_token: Option<String>,
    /// The cluster CA `(cert_pem, key_pem)` that signs runners' client certificates at enrollment.
    pub cluster_ca: Option<(String, String)>,
    /// Reverse proxies believed about `X-Forwarded-For` (`--trusted-proxy`); none by default.
    /// The edge needs no entry: it vouches for the address it forwards with the edge token.
    pub trusted_proxies: Vec<Cidr>,
    /// The address users reach the API at (`ANTCODE_PUBLIC_URL`), for the URLs of webhooks;
    /// without it they are built from the request's `Host`.
    pub public_url: Option<String>,
    /// What Git fetches may reach and how much they may take (`--git-allow-private`, …).
    pub git: GitPolicy,
    /// Where runners reach the edge (`--edge-url`), for the enrollment command the UI shows.
    pub edge_url: Option<String>,
}

/// The limits of a Git project's fetches: private addresses (refused by default), size, time.
pub use antcode_git::Policy as GitPolicy;

/// Default for [`ControlConfig::max_upload_bytes`]: 64 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Largest body of `POST /auth/login`.
pub const LOGIN_BODY_BYTES: usize = 8 * 1024;
/// Largest body of `/internal/v1/*` (an enrollment: a CSR and up to 32 labels).
pub const INTERNAL_BODY_BYTES: usize = 16 * 1024;
/// Largest body of every other request but uploads.
pub const JSON_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("control store: {0}")]
    Store(#[from] StoreError),
    #[error("could not hash the admin password: {0}")]
    Password(String),
}

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub blobs: Arc<dyn BlobStore>,
    pub dev: bool,
    pub max_upload_bytes: usize,
    pub edge_token: Option<String>,
    pub cluster_ca: Option<(String, String)>,
    pub secrets: Option<Arc<SecretBox>>,
    pub shutdown: Shutdown,
    pub throttle: auth::Throttle,
    pub kdf: kdf::Kdf,
    pub principals: auth::Principals,
    pub trusted_proxies: Vec<Cidr>,
    pub audit: audit::AuditLog,
    pub public_url: Option<String>,
    pub edge_url: Option<String>,
    pub hook_buckets: ratelimit::Buckets,
    /// How many refused calls of each hook are still audited this minute.
    pub hook_denials: ratelimit::Buckets,
    /// The triggers of tasks that set `triggers_per_min`.
    pub task_buckets: ratelimit::Buckets,
    pub git: GitPolicy,
    pub git_syncs: service::git::Syncs,
    /// Recent bundle listings of the file browser.
    pub listings: service::files::Listings,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Serves the control plane on `config.listener` until `shutdown` is cancelled.
pub async fn run(config: ControlConfig, shutdown: Shutdown) -> Result<(), ControlError> {
    // Install the process-wide recorder before the first metric is recorded.
    let _ = antcode_core::telemetry::prometheus();
    config.listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(config.listener)?;
    auth::ensure_admin(config.store.as_ref(), &config.admin_password).await?;
    let audit = audit::AuditLog::start(config.store.clone());
    let state = AppState(Arc::new(Inner {
        store: config.store,
        broker: config.broker,
        blobs: config.blobs,
        dev: config.dev,
        max_upload_bytes: config.max_upload_bytes.max(1024),
        edge_token: config.edge_token.filter(|t| !t.is_empty()),
        cluster_ca: config.cluster_ca,
        secrets: config.secrets,
        shutdown: shutdown.clone(),
        throttle: auth::Throttle::default(),
        kdf: kdf::Kdf::sized_to_host(),
        principals: auth::Principals::default(),
        trusted_proxies: config.trusted_proxies,
        audit: audit.clone(),
        public_url: config
            .public_url
            .map(|u| u.trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty()),
        edge_url: config
            .edge_url
            .map(|u| u.trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty()),
        hook_buckets: ratelimit::Buckets::default(),
        hook_denials: ratelimit::Buckets::default(),
        task_buckets: ratelimit::Buckets::default(),
        // A bundle past the upload walker's entry limit would only be refused after the fetch.
        git: GitPolicy {
            max_files: config
                .git
                .max_files
                .min(antcode_core::bundle::Limits::default().max_entries),
            ..config.git
        },
        git_syncs: service::git::Syncs::default(),
        listings: service::files::Listings::default(),
    }));
    service::git::spawn_interval_syncs(state.clone());
    let state_threads = state.kdf.threads();
    let app = router(state);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, password_threads = state_threads, "control plane listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await?;
    audit.flush().await;
    tracing::info!("control plane stopped");
    Ok(())
}

fn router(state: AppState) -> Router {
    let limit = state.max_upload_bytes;
    Router::new()
        .merge(routes::system::router())
        .merge(ui::router())
        .merge(routes::internal::router())
        .nest("/api/v1", routes::api())
        .fallback(problem::no_route)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(traces::span))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_body,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(problem::panic_response))
        .with_state(state)
}

/// The largest body `method path` may send: uploads the configured maximum, login and the
/// edge's internal calls a few KiB, everything else [`JSON_BODY_BYTES`].
fn body_limit(method: &Method, path: &str, max_upload: usize) -> usize {
    // `POST /projects` is an upload, or JSON naming a Git source.
    let upload = *method == Method::POST
        && (path == "/api/v1/projects"
            || path
                .strip_prefix("/api/v1/projects/")
                .and_then(|rest| rest.strip_suffix("/versions"))
                .is_some_and(|id| !id.contains('/')));
    if path == "/api/v1/auth/login" {
        LOGIN_BODY_BYTES
    } else if path.starts_with("/internal/") {
        INTERNAL_BODY_BYTES
    } else if upload {
        max_upload
    } else {
        JSON_BODY_BYTES.min(max_upload)
    }
}

/// Applies [`body_limit`]: a declared length past it is refused before anything is read, and
/// the body is cut off there whatever it declares (the extractors answer 413 problem+json).
async fn limit_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = body_limit(req.method(), req.uri().path(), state.max_upload_bytes);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Problem::too_large(format!(
            "the request body is larger than this route accepts ({limit} bytes)"
        ))
        .into_response();
    }
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(req).await
}
