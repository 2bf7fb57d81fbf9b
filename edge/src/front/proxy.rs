//! The front's request handling (a Pingora [`ProxyHttp`]): every request is counted against the
//! per-address limit, worker calls are identified and counted against the per-identity limit, and
//! then `Lease` is answered inline ([`super::inline`]) and the rest proxied — worker calls over h2c
//! to the internal worker service, `/api/*` to control.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use pingora_limits::rate::Rate;

use super::inline;
use super::reply::{self, Refusal};
use super::tls::Peer;
use crate::identity::{self, Authenticator, Credentials, Identity, IDENTITY_HEADER};
use crate::service::Edge;
use crate::Limits;

/// The gRPC path prefix of the worker protocol.
const WORKER_SERVICE: &str = "/antcode.worker.v1.WorkerService/";
/// Set by the front on every call to the internal worker service: the per-process secret that
/// tells the service a call came through the front.
pub const FRONT_HEADER: &str = "x-antcode-front";
/// Set by the front: the caller's IP address (the service only sees the front's loopback).
pub const PEER_HEADER: &str = "x-antcode-peer";

/// Where a request goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Worker,
    Api,
}

/// Counts requests in flight, so shutdown can wait for answers already on their way.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Ctx {
    route: Option<Route>,
    grpc: bool,
    peer_ip: String,
    identity: Option<Arc<Identity>>,
    body_bytes: usize,
    _in_flight: InFlight,
}

pub struct FrontApp {
    pub auth: Authenticator,
    pub limits: Limits,
    per_identity: Rate,
    per_address: Rate,
    /// The worker service: called directly for `Lease` ([`inline`]), else proxied to over h2c
    /// on loopback with the secret it expects.
    edge: Arc<Edge>,
    internal: SocketAddr,
    secret: String,
    /// Control for `/api/*`: `host:port`, TLS, SNI.
    control: (String, bool, String),
    pub in_flight: Arc<AtomicUsize>,
}

impl FrontApp {
    pub fn new(
        auth: Authenticator,
        limits: Limits,
        edge: Arc<Edge>,
        internal: SocketAddr,
        secret: String,
        control: (String, bool, String),
    ) -> FrontApp {
        FrontApp {
            auth,
            limits,
            per_identity: Rate::new(Duration::from_secs(1)),
            per_address: Rate::new(Duration::from_secs(1)),
            edge,
            internal,
            secret,
            control,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn over(&self, rate: &Rate, key: &str, limit: u32) -> bool {
        rate.observe(&key, 1) > limit as isize
    }

    /// Why the request may not go on, if it may not.
    async fn check(&self, session: &mut Session, ctx: &mut Ctx) -> Option<Refusal> {
        let path = session.req_header().uri.path().to_string();
        let route = if let Some(method) = path.strip_prefix(WORKER_SERVICE) {
            Some((Route::Worker, method == "Enroll"))
        } else if path.starts_with("/api/") {
            Some((Route::Api, false))
        } else {
            None
        };
        let Some((route, anonymous)) = route else {
            return Some(Refusal::new(
                tonic::Code::Unimplemented,
                404,
                format!("no such endpoint on the edge: {path}"),
            ));
        };
        ctx.route = Some(route);
        let max = self.limits.max_request_bytes;
        let declared = session
            .req_header()
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return Some(Refusal::too_large(max));
        }
        if self.over(&self.per_address, &ctx.peer_ip, self.limits.per_address_rps) {
            return Some(Refusal::rate_limited("address"));
        }
        let api_key = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(identity::bearer);
        match route {
            Route::Api => {
                // API users are limited per token as workers are per identity; control itself
                // authenticates the token.
                let key = api_key.map(|k| format!("api:{}", antcode_core::ids::token_hash(&k)));
                if let Some(key) = key {
                    if self.over(&self.per_identity, &key, self.limits.per_identity_rps) {
                        return Some(Refusal::rate_limited("identity"));
                    }
                }
                None
            }
            Route::Worker if anonymous => None,
            Route::Worker => {
                let cert_fingerprint = session
                    .digest()
                    .and_then(|d| d.ssl_digest.as_ref())
                    .and_then(|d| d.extension.get::<Peer>())
                    .and_then(|p| p.cert_fingerprint.clone());
                let creds = Credentials {
                    cert_fingerprint,
                    api_key,
                };
                let id = match self.auth.identify(&creds).await {
                    Ok(id) => id,
                    Err(identity::AuthError::Refused(why)) => {
                        return Some(Refusal::unauthenticated(why))
                    }
                    Err(identity::AuthError::Unavailable(why)) => {
                        return Some(Refusal::unavailable(why))
                    }
                };
                if self.over(
                    &self.per_identity,
                    &id.worker_id,
                    self.limits.per_identity_rps,
                ) {
                    return Some(Refusal::rate_limited("identity"));
                }
                ctx.identity = Some(id);
                None
            }
        }
    }
}

/// Removes every `x-antcode-*` header: those are the front's to set, never a client's.
fn strip_internal_headers(req: &mut RequestHeader) {
    let names: Vec<String> = req
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-antcode-"))
        .map(|n| n.as_str().to_string())
        .collect();
    for n in names {
        req.remove_header(&n);
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
            _in_flight: InFlight::new(&self.in_flight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.grpc = session
            .req_header()
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        ctx.peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        strip_internal_headers(session.req_header_mut());
        match self.check(session, ctx).await {
            None => match &ctx.identity {
                Some(id) if ctx.grpc && session.req_header().uri.path() == inline::LEASE_PATH => {
                    let id = id.clone();
                    inline::answer_lease(session, &self.edge, &id).await?;
                    Ok(true)
                }
                _ => Ok(false),
            },
            Some(refusal) => {
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
        if ctx.body_bytes > self.limits.max_request_bytes {
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                format!(
                    "request body larger than {} bytes",
                    self.limits.max_request_bytes
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
        strip_internal_headers(upstream);
        if ctx.route == Some(Route::Worker) {
            upstream.insert_header(FRONT_HEADER, &self.secret)?;
            upstream.insert_header(PEER_HEADER, &ctx.peer_ip)?;
            if let Some(id) = &ctx.identity {
                upstream.insert_header(IDENTITY_HEADER, id.to_header())?;
            }
        } else {
            upstream.insert_header("x-forwarded-for", &ctx.peer_ip)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let status = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => 502,
        };
        let refusal = if status == 413 {
            Refusal::too_large(self.limits.max_request_bytes)
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
