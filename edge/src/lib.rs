//! The data plane: the gateway that public runners talk to over gRPC
//! (`antcode.worker.v1.WorkerService`).
//!
//! This is the minimal edge of the foundation: it listens on its port, answers the worker
//! protocol with `UNIMPLEMENTED` (so a gateway runner gets a clear status instead of a refused
//! connection), and exposes health and metrics. The Pingora gateway with TLS/mTLS, enrollment,
//! API keys, rate limits and long-poll leasing replaces the body of [`service`].
//!
//! **Architecture invariant:** the edge never holds SQL credentials: it depends on `core` for the
//! broker and blob seams only, and never opens a `Store`.

mod service;

use antcode_core::Shutdown;
use antcode_proto::worker::v1::worker_service_server::WorkerServiceServer;

pub struct EdgeConfig {
    /// Already bound (tests bind `127.0.0.1:0`).
    pub listener: std::net::TcpListener,
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
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tracing::info!("edge: serving the worker protocol (minimal: gateway mode not enabled yet)");
    tonic::transport::Server::builder()
        .add_service(WorkerServiceServer::new(service::MinimalEdge))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}
