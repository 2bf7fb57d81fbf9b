//! The data plane: the gateway public runners talk to over gRPC
//! (`antcode.worker.v1.WorkerService`) on TLS.
//!
//! * TLS from the configured server certificate; client certificates are verified against the
//!   cluster CA during the handshake (optional: a runner may present an API key instead).
//! * Identity from the connection only ([`identity`]), checked by control and cached ≤ 1 s.
//! * Enrollment is forwarded to control, which holds the store and the CA key.
//! * `Lease` is a long-poll on the broker (jittered deadline, answered at shutdown); reports are
//!   accepted only for leases the caller holds ([`seal`]); logs and results become the same
//!   broker events and log streams as direct runners'; `FetchBundle` streams from the blob store.
//! * Rate limits per identity and per source address (pingora-limits), a cap on concurrent
//!   long-polls per identity, bounded request sizes.
//!
//! Two layers in one process: the Pingora front (`front/`) terminates TLS on the edge's port, resolves
//! the caller's identity, applies the limits, answers `Lease` itself and proxies the rest; the
//! worker service (`service.rs`, tonic) listens on an ephemeral loopback port in plain HTTP/2 and
//! accepts only calls that carry the front's per-process secret (`FRONT_HEADER`), so
//! nothing reaches it around the front. [`baseline`] is the bench's tonic-only cost floor.
//!
//! **Architecture invariant:** the edge never holds SQL credentials: it depends on `core` for the
//! broker and blob seams only, and never opens a `Store`.

pub mod baseline;
mod control;
mod front;
pub mod identity;
pub mod pki;
pub mod seal;
mod service;

use std::sync::Arc;
use std::time::Duration;

use antcode_core::blob::BlobStore;
use antcode_core::broker::Broker;
use antcode_core::Shutdown;
use antcode_proto::worker::v1::worker_service_server::WorkerServiceServer;

/// Tunables of the edge; [`Limits::default`] is what `antcode up` uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls per second per worker identity (per API token on `/api/*`).
    pub per_identity_rps: u32,
    /// Calls per second per source IP address (enrollment and `/api/*` included).
    pub per_address_rps: u32,
    pub long_polls_per_identity: usize,
    /// Upper bound of a `Lease` long-poll (jittered down to 80 %).
    pub lease_wait: Duration,
    pub lease_ttl: Duration,
    pub heartbeat_interval: Duration,
    /// Largest accepted gRPC message (a `Complete` carries the log archive).
    pub max_message_bytes: usize,
    /// Largest request body the front passes on (a project upload on `/api/*` included).
    pub max_request_bytes: usize,
    /// On shutdown, how long answers already on their way (open long-polls, answered empty) get
    /// before the remaining connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_identity_rps: 200,
            per_address_rps: 1000,
            long_polls_per_identity: 8,
            lease_wait: Duration::from_secs(25),
            lease_ttl: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(2),
            max_message_bytes: 32 * 1024 * 1024,
            max_request_bytes: 80 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

pub struct EdgeConfig {
    /// Already bound (tests bind `127.0.0.1:0`).
    pub listener: std::net::TcpListener,
    pub tls_cert_pem: String,
    pub tls_key_pem: String,
    /// The cluster CA: client certificates must chain to it.
    pub ca_cert_pem: String,
    /// Base URL of control (`http://127.0.0.1:8000`).
    pub control_url: String,
    /// Presented to control on `/internal/v1/*`; also keys the lease-token MACs, so it must stay
    /// the same across edge restarts for runners to keep their leases.
    pub edge_token: String,
    pub broker: Arc<dyn Broker>,
    pub blobs: Arc<dyn BlobStore>,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("edge transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Tls(#[from] front::TlsError),
    #[error("edge: {0}")]
    Config(String),
    #[error("edge: the front stopped by itself (see the log)")]
    FrontFailed,
}

/// `host:port`, TLS and SNI of control's base URL, for proxying `/api/*`.
fn control_upstream(url: &str) -> Result<(String, bool, String), EdgeError> {
    let bad = |why: &str| EdgeError::Config(format!("control URL {url:?}: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(bad("must be http:// or https://")),
    };
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| bad("no port"))?;
    // An IPv6 host comes bracketed, ready for `host:port`.
    Ok((format!("{host}:{port}"), tls, host.to_string()))
}

/// Serves until `shutdown` is cancelled; then stops accepting, answers open long-polls and
/// returns within [`Limits::shutdown_grace`] and a little more.
pub async fn run(config: EdgeConfig, shutdown: Shutdown) -> Result<(), EdgeError> {
    let addr = config.listener.local_addr()?;
    let tls = front::tls_settings(
        &config.tls_cert_pem,
        &config.tls_key_pem,
        &config.ca_cert_pem,
    )?;
    let upstream = control_upstream(&config.control_url)?;
    let control = Arc::new(control::Control::new(
        &config.control_url,
        &config.edge_token,
    ));
    // Only the front knows it; the worker service refuses calls without it.
    let secret = antcode_core::ids::new_token("front");

    let internal = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let internal_addr = internal.local_addr()?;
    let max = config.limits.max_message_bytes;
    let grace = config.limits.shutdown_grace;
    let edge = Arc::new(service::Edge::new(
        config.broker,
        config.blobs,
        control.clone(),
        seal::Sealer::new(&config.edge_token),
        config.limits.clone(),
        secret.clone(),
        shutdown.clone(),
    ));
    let svc = WorkerServiceServer::from_arc(edge.clone())
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let serving = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY every answer to the front waits out the peer's delayed ACK
            // (~40 ms on Linux): measured by bench-edge.
            tonic::transport::server::TcpIncoming::from(internal).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    // Aborted if this future is dropped, so the service never outlives the edge.
    let mut serving = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(serving));

    let app = front::FrontApp::new(
        identity::Authenticator::new(control),
        config.limits,
        edge,
        internal_addr,
        secret,
        upstream,
        config.edge_token.clone(),
    );
    let mut front = front::Front::start(config.listener, tls, app, grace)?;
    tracing::info!(%addr, internal = %internal_addr, "edge: serving the worker protocol and /api on TLS");

    let outcome = tokio::select! {
        // The service stops on the same token: a cancelled edge is a clean stop, whichever
        // finished first.
        biased;
        _ = shutdown.cancelled() => Ok(()),
        _ = front.failed() => Err(EdgeError::FrontFailed),
        served = &mut serving => match served {
            _ if shutdown.is_cancelled() => Ok(()),
            Ok(Err(e)) => Err(EdgeError::Transport(e)),
            _ => Err(EdgeError::Config("the internal worker service stopped".into())),
        },
    };
    front.stop().await;
    // The service's own graceful stop waits for the front's connections, which are gone now.
    if !serving.is_finished()
        && tokio::time::timeout(Duration::from_secs(5), &mut serving)
            .await
            .is_err()
    {
        tracing::warn!("edge: the worker service did not stop in 5 s; aborting it");
    }
    tracing::info!("edge stopped");
    outcome
}
