//! The cost floor of our own stack, for `bench-edge` only: the same worker service and the same
//! identity check, served by tonic terminating the same TLS itself (no Pingora). Production never
//! runs it; it exists so the edge is always measured against it in the same run (DESIGN §7).
//!
//! A wrapper in front of [`WorkerServiceServer`] resolves the caller with the same
//! [`Authenticator`] the front uses and sets the headers the front would set. It applies no rate
//! limits: it is the floor, not a second edge.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use antcode_core::Shutdown;
use antcode_proto::worker::v1::worker_service_server::WorkerServiceServer;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};

use crate::front::{FRONT_HEADER, PEER_HEADER};
use crate::identity::{self, AuthError, Authenticator, Credentials, IDENTITY_HEADER};
use crate::{control, seal, service, EdgeConfig, EdgeError};

type Inner = WorkerServiceServer<service::Edge>;

#[derive(Clone)]
struct Authenticated {
    inner: Inner,
    auth: Arc<Authenticator>,
    secret: Arc<str>,
}

impl NamedService for Authenticated {
    const NAME: &'static str = <Inner as NamedService>::NAME;
}

impl Service<http::Request<Body>> for Authenticated {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let mut inner = self.inner.clone();
        let (auth, secret) = (self.auth.clone(), self.secret.clone());
        Box::pin(async move {
            let headers = req.headers_mut();
            let api_key = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(identity::bearer);
            let names: Vec<_> = headers
                .keys()
                .filter(|n| n.as_str().starts_with("x-antcode-"))
                .cloned()
                .collect();
            for n in names {
                headers.remove(n);
            }
            let cert_fingerprint = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.peer_certs())
                .and_then(|c| c.first().map(|d| antcode_core::ids::sha256_hex(d)));
            let enroll = req.uri().path().ends_with("/Enroll");
            if !enroll {
                let creds = Credentials {
                    cert_fingerprint,
                    api_key,
                };
                let id = match auth.identify(&creds).await {
                    Ok(id) => id,
                    Err(AuthError::Refused(why)) => {
                        return Ok(tonic::Status::unauthenticated(why).into_http())
                    }
                    Err(AuthError::Unavailable(why)) => {
                        return Ok(tonic::Status::unavailable(why).into_http())
                    }
                };
                if let Ok(v) = id.to_header().parse() {
                    req.headers_mut().insert(IDENTITY_HEADER, v);
                }
            }
            if let Ok(v) = secret.parse() {
                req.headers_mut().insert(FRONT_HEADER, v);
            }
            req.headers_mut()
                .insert(PEER_HEADER, http::HeaderValue::from_static("127.0.0.1"));
            inner.call(req).await
        })
    }
}

/// Serves the worker service with tonic's own TLS on `config.listener` until `shutdown`.
pub async fn serve_tonic_tls(config: EdgeConfig, shutdown: Shutdown) -> Result<(), EdgeError> {
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
    let secret = antcode_core::ids::new_token("front");
    let max = config.limits.max_message_bytes;
    let edge = service::Edge::new(
        config.broker,
        config.blobs,
        control.clone(),
        seal::Sealer::new(&config.edge_token),
        config.limits,
        secret.clone(),
        shutdown.clone(),
    );
    let svc = Authenticated {
        inner: WorkerServiceServer::new(edge)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        auth: Arc::new(Authenticator::new(control)),
        secret: secret.into(),
    };
    config.listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(config.listener)?;
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .add_service(svc)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}
