//! The front's HTTP application: a `Lease` over HTTP/2 is answered here by a future of its own
//! ([`inline`]); every other request goes through Pingora's proxy ([`FrontApp`]).
//!
//! Why not in the proxy's `request_filter`: a call parked there keeps the proxy's whole
//! per-request state alive for its 25 s — its `Session` (cache, module and subrequest state) and
//! the request future, which is laid out for the proxy's largest phase. Parked long-polls are
//! most of the edge's connections, so that cost would be most of its memory per idle runner
//! (bench-edge).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::v2::server::HttpSession as H2Session;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;

use super::gate::{self, Gate};
use super::inline;
use super::proxy::FrontApp;
use super::reply;
use crate::service::Edge;

pub struct FrontServer {
    gate: Arc<Gate>,
    edge: Arc<Edge>,
    proxy: Arc<HttpProxy<FrontApp>>,
}

impl FrontServer {
    pub fn new(conf: &Arc<ServerConf>, app: FrontApp) -> FrontServer {
        FrontServer {
            gate: app.gate.clone(),
            edge: app.edge.clone(),
            proxy: Arc::new(pingora::proxy::http_proxy(conf, app)),
        }
    }

    /// Requests shutdown waits for.
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.gate.in_flight.clone()
    }

    /// Admits and answers one `Lease`.
    async fn lease(&self, session: &mut H2Session) -> pingora::Result<()> {
        let _in_flight = self.gate.in_flight();
        let peer_ip = gate::peer_ip(session.client_addr());
        // Boxed: admission (a call to control on a cache miss) is the largest state of this
        // future, and without the box the whole parked call would keep room for it.
        let admitted = Box::pin(
            self.gate
                .admit(session.req_header(), session.digest(), &peer_ip),
        )
        .await;
        match admitted {
            Ok(gate::Admitted {
                identity: Some(id), ..
            }) => inline::answer_lease(session, &self.edge, &id).await,
            // Not reached: the gate identifies every worker call but Enroll.
            Ok(_) => {
                let refusal = reply::Refusal::unauthenticated("no worker identity");
                reply::send_grpc_h2(session, &refusal)
            }
            Err(refusal) => reply::send_grpc_h2(session, &refusal),
        }
    }
}

/// The HTTP/2 stream of a gRPC `Lease` (HTTP/1 requests, whose head has not been read yet, go to
/// the proxy, which reads it).
fn as_lease(session: &mut ServerSession) -> Option<&mut H2Session> {
    match session {
        ServerSession::H2(h2)
            if h2.req_header().uri.path() == inline::LEASE_PATH
                && gate::is_grpc(h2.req_header()) =>
        {
            Some(h2)
        }
        _ => None,
    }
}

#[async_trait]
impl HttpServerApp for FrontServer {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let Some(h2) = as_lease(&mut session) else {
            // Boxed by async_trait: this future holds a pointer to it, not its state.
            return self.proxy.process_new_http(session, shutdown).await;
        };
        if let Err(e) = self.lease(h2).await {
            tracing::debug!(error = %e, "edge: a lease call ended early");
            return None;
        }
        // Ends the stream if the answer did not (HTTP/2 streams are never reused).
        let _ = h2.finish();
        None
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.proxy.h2_options()
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await
    }
}

/// The front with a count of its open connections. A request's handler returns once its answer
/// is queued on the connection; the bytes leave when the connection's own task writes them, so a
/// stop waits for the connections (which close themselves on shutdown: HTTP/2 with a GOAWAY once
/// their streams are done, HTTP/1 at the end of the request) and not only for the requests.
pub struct Counted {
    app: Arc<FrontServer>,
    open: Arc<AtomicUsize>,
}

impl Counted {
    pub fn new(app: FrontServer) -> Counted {
        Counted {
            app: Arc::new(app),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Requests being served, so a stop can wait for their answers.
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.app.in_flight()
    }

    /// Connections open, so a stop can wait for their answers to leave.
    pub fn open(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }
}

#[async_trait]
impl ServerApp for Counted {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = gate::InFlight::enter(&self.open);
        ServerApp::process_new(&self.app, session, shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.app).await
    }
}
