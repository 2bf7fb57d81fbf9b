//! The front's one admission check, shared by the two ways a request is served (a `Lease`
//! answered by [`super::server`] itself, everything else through the proxy): where the request
//! goes, the request-size bound, the per-address and per-identity rate limits, and who the
//! worker is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::Digest;
use pingora_limits::rate::Rate;

use super::reply::Refusal;
use super::tls::Peer;
use crate::identity::{self, Authenticator, Credentials, Identity};
use crate::Limits;

/// The gRPC path prefix of the worker protocol.
const WORKER_SERVICE: &str = "/antcode.worker.v1.WorkerService/";

/// Where a request goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Worker,
    Api,
}

/// What the gate let through.
pub struct Admitted {
    pub route: Route,
    /// The worker, on every worker call but `Enroll`.
    pub identity: Option<Arc<Identity>>,
}

pub struct Gate {
    auth: Authenticator,
    pub limits: Limits,
    per_identity: Rate,
    per_address: Rate,
    /// Requests being served, so shutdown can wait for answers already on their way.
    pub in_flight: Arc<AtomicUsize>,
}

/// Counts one thing (a request in [`Gate::in_flight`], an open connection) for as long as it
/// lives.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether the request is a gRPC call (refusals then take gRPC's trailers-only form).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The caller's IP address, as the internal service and control are told it.
pub fn peer_ip(addr: Option<&SocketAddr>) -> String {
    addr.and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// The `x-antcode-*` headers that are a client's to send: a webhook call's signature, which
/// control checks against the hook's secret and which vouches for nothing else.
const CLIENT_HEADERS: &[&str] = &["x-antcode-signature"];

/// Removes every `x-antcode-*` header but [`CLIENT_HEADERS`]: those are the front's to set,
/// never a client's.
pub fn strip_internal_headers(req: &mut RequestHeader) {
    let names: Vec<String> = req
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-antcode-") && !CLIENT_HEADERS.contains(&n.as_str()))
        .map(|n| n.as_str().to_string())
        .collect();
    for n in names {
        req.remove_header(&n);
    }
}

impl Gate {
    pub fn new(auth: Authenticator, limits: Limits) -> Gate {
        Gate {
            auth,
            limits,
            per_identity: Rate::new(Duration::from_secs(1)),
            per_address: Rate::new(Duration::from_secs(1)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn in_flight(&self) -> InFlight {
        InFlight::enter(&self.in_flight)
    }

    fn over(&self, rate: &Rate, key: &str, limit: u32) -> bool {
        rate.observe(&key, 1) > limit as isize
    }

    /// Lets the request on, or says why it may not go on. `digest` is the connection's (its TLS
    /// client certificate).
    pub async fn admit(
        &self,
        req: &RequestHeader,
        digest: Option<&Digest>,
        peer_ip: &str,
    ) -> Result<Admitted, Refusal> {
        let path = req.uri.path();
        let (route, anonymous) = if let Some(method) = path.strip_prefix(WORKER_SERVICE) {
            (Route::Worker, method == "Enroll")
        } else if path.starts_with("/api/") {
            (Route::Api, false)
        } else {
            return Err(Refusal::new(
                tonic::Code::Unimplemented,
                404,
                format!("no such endpoint on the edge: {path}"),
            ));
        };
        let max = self.limits.max_request_bytes;
        let declared = req
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(Refusal::too_large(max));
        }
        if self.over(&self.per_address, peer_ip, self.limits.per_address_rps) {
            return Err(Refusal::rate_limited("address"));
        }
        let api_key = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(identity::bearer);
        let identity = match route {
            // API users are limited per token as workers are per identity; control itself
            // authenticates the token.
            Route::Api => {
                if let Some(key) = api_key {
                    let key = format!("api:{}", antcode_core::ids::token_hash(&key));
                    if self.over(&self.per_identity, &key, self.limits.per_identity_rps) {
                        return Err(Refusal::rate_limited("identity"));
                    }
                }
                None
            }
            Route::Worker if anonymous => None,
            Route::Worker => Some(self.identify(digest, api_key).await?),
        };
        Ok(Admitted { route, identity })
    }

    /// The worker behind the connection's certificate or API key, counted against its limit.
    async fn identify(
        &self,
        digest: Option<&Digest>,
        api_key: Option<String>,
    ) -> Result<Arc<Identity>, Refusal> {
        let cert_fingerprint = digest
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<Peer>())
            .and_then(|p| p.cert_fingerprint.clone());
        let creds = Credentials {
            cert_fingerprint,
            api_key,
        };
        let id = self.auth.identify(&creds).await.map_err(|e| match e {
            identity::AuthError::Refused(why) => Refusal::unauthenticated(why),
            identity::AuthError::Unavailable(why) => Refusal::unavailable(why),
        })?;
        if self.over(
            &self.per_identity,
            &id.worker_id,
            self.limits.per_identity_rps,
        ) {
            return Err(Refusal::rate_limited("identity"));
        }
        Ok(id)
    }
}
