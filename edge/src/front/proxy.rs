//! The front's proxying (a Pingora [`ProxyHttp`]): requests the [`Gate`] admits go on, worker
//! calls over h2c to the internal worker service, `/api/*` to control. (`Lease` never gets here
//! over HTTP/2: [`super::server`] answers it itself.)

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use super::gate::{self, Gate, InFlight, Route};
use super::reply::{self, Refusal};
use crate::identity::{Identity, IDENTITY_HEADER};
use crate::service::Edge;

/// Set by the front on every call to the internal worker service: the per-process secret that
/// tells the service a call came through the front.
pub const FRONT_HEADER: &str = "x-antcode-front";
/// Set by the front: the caller's IP address (the service only sees the front's loopback).
/// Control is told it too, on `/api`, next to [`EDGE_HEADER`].
pub const PEER_HEADER: &str = "x-antcode-peer";
/// Set by the front on what it proxies to control: the edge token, which is how control knows
/// that [`PEER_HEADER`] came from the edge and not from any loopback peer.
pub const EDGE_HEADER: &str = "x-antcode-edge";

pub struct Ctx {
    route: Option<Route>,
    grpc: bool,
    peer_ip: String,
    identity: Option<Arc<Identity>>,
    body_bytes: usize,
    _in_flight: InFlight,
}

pub struct FrontApp {
    pub(super) gate: Arc<Gate>,
    /// The worker service, answering `Lease` in [`super::server`]; the other worker calls are
    /// proxied to it over h2c on loopback with the secret it expects.
    pub(super) edge: Arc<Edge>,
    internal: SocketAddr,
    secret: String,
    /// Control for `/api/*`: `host:port`, TLS, SNI.
    control: (String, bool, String),
    /// Vouches for the caller's address to control.
    edge_token: String,
}

impl FrontApp {
    pub fn new(
        auth: crate::identity::Authenticator,
        limits: crate::Limits,
        edge: Arc<Edge>,
        internal: SocketAddr,
        secret: String,
        control: (String, bool, String),
        edge_token: String,
    ) -> FrontApp {
        FrontApp {
            gate: Arc::new(Gate::new(auth, limits)),
            edge,
            internal,
            secret,
            control,
            edge_token,
        }
    }
}

#[async_trait]
impl ProxyHttp for FrontApp {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            route: None,
            grpc: false,
            peer_ip: String::new(),
            identity: None,
            body_bytes: 0,
            _in_flight: self.gate.in_flight(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.grpc = gate::is_grpc(session.req_header());
        ctx.peer_ip = gate::peer_ip(session.client_addr());
        gate::strip_internal_headers(session.req_header_mut());
        let admitted = self
            .gate
            .admit(session.req_header(), session.digest(), &ctx.peer_ip)
            .await;
        match admitted {
            Ok(admitted) => {
                ctx.route = Some(admitted.route);
                ctx.identity = admitted.identity;
                Ok(false)
            }
            Err(refusal) => {
                reply::send(session, ctx.grpc, &refusal).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len());
        if ctx.body_bytes > self.gate.limits.max_request_bytes {
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                format!(
                    "request body larger than {} bytes",
                    self.gate.limits.max_request_bytes
                ),
            );
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(match ctx.route {
            Some(Route::Worker) => {
                let mut peer = HttpPeer::new(self.internal, false, String::new());
                // h2c with prior knowledge; many calls (parked long-polls above all) share one
                // upstream connection instead of pinning one each.
                peer.options.set_http_version(2, 2);
                peer.options.max_h2_streams = 200;
                peer
            }
            _ => {
                let (addr, tls, sni) = &self.control;
                HttpPeer::new(addr.as_str(), *tls, sni.clone())
            }
        }))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        gate::strip_internal_headers(upstream);
        if ctx.route == Some(Route::Worker) {
            upstream.insert_header(FRONT_HEADER, &self.secret)?;
            upstream.insert_header(PEER_HEADER, &ctx.peer_ip)?;
            if let Some(id) = &ctx.identity {
                upstream.insert_header(IDENTITY_HEADER, id.to_header())?;
            }
        } else {
            upstream.insert_header("x-forwarded-for", &ctx.peer_ip)?;
            upstream.insert_header(PEER_HEADER, &ctx.peer_ip)?;
            upstream.insert_header(EDGE_HEADER, &self.edge_token)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let status = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => 502,
        };
        let refusal = if status == 413 {
            Refusal::too_large(self.gate.limits.max_request_bytes)
        } else {
            Refusal::unavailable(format!("the edge could not complete the call: {e}"))
        };
        if session.response_written().is_none() {
            let _ = reply::send(session, ctx.grpc, &refusal).await;
        }
        FailToProxy {
            error_code: refusal.http,
            can_reuse_downstream: false,
        }
    }
}
