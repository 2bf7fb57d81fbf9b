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
//!   long-polls per identity, bounded message sizes.
//!
//! The server is tonic terminating TLS itself (rustls, ring). The Pingora front described in
//! DESIGN §7 is not wired yet; this is the "tonic baseline" of the benchmark.
//!
//! **Architecture invariant:** the edge never holds SQL credentials: it depends on `core` for the
//! broker and blob seams only, and never opens a `Store`.

mod control;
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
use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};

/// Tunables of the edge; [`Limits::default`] is what `antcode up` uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls per second per worker identity.
    pub per_identity_rps: u32,
    /// Calls per second per source IP address (enrollment included).
    pub per_address_rps: u32,
    pub long_polls_per_identity: usize,
    /// Upper bound of a `Lease` long-poll (jittered down to 80 %).
    pub lease_wait: Duration,
    pub lease_ttl: Duration,
    pub heartbeat_interval: Duration,
    /// Largest accepted message (a `Complete` carries the log archive).
    pub max_message_bytes: usize,
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
}

pub async fn run(config: EdgeConfig, shutdown: Shutdown) -> Result<(), EdgeError> {
    config.listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(config.listener)?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let tls = ServerTlsConfig::new()
        .identity(TlsIdentity::from_pem(
            &config.tls_cert_pem,
            &config.tls_key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&config.ca_cert_pem))
        .client_auth_optional(true);
    let control = Arc::new(control::Control::new(
        &config.control_url,
        &config.edge_token,
    ));
    let max = config.limits.max_message_bytes;
    let edge = service::Edge::new(
        config.broker,
        config.blobs,
        control,
        seal::Sealer::new(&config.edge_token),
        config.limits,
        shutdown.clone(),
    );
    let svc = WorkerServiceServer::new(edge)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    tracing::info!(%addr, "edge: serving the worker protocol on TLS");
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    tracing::info!("edge stopped");
    Ok(())
}
