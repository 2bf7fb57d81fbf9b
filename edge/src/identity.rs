//! Who is calling: the identity comes from the connection (a client certificate verified against
//! the cluster CA during the TLS handshake, or `authorization: Bearer <api key>`), never from a
//! message field. Credentials are checked by control (`/internal/v1/authenticate`, the edge holds
//! no SQL credentials) and decisions are cached for at most [`CACHE_TTL`], so a revoked worker is
//! refused within about a second.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tonic::Status;

use crate::control::{Control, ControlError};

/// How long an authentication decision (either way) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// An authenticated worker.
#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    pub worker_id: String,
    pub name: String,
    /// Queues it may lease from.
    pub queues: Vec<String>,
}

#[derive(Clone)]
enum Decision {
    Allowed(Arc<Identity>),
    Denied(String),
}

pub struct Authenticator {
    control: Arc<Control>,
    cache: moka::future::Cache<String, Decision>,
}

/// What the connection offered.
pub struct Credentials {
    /// SHA-256 (hex) of the DER client certificate the handshake verified.
    pub cert_fingerprint: Option<String>,
    pub api_key: Option<String>,
}

impl Credentials {
    pub fn from_request<T>(req: &tonic::Request<T>) -> Credentials {
        let cert_fingerprint = req.peer_certs().and_then(|certs| {
            certs
                .first()
                .map(|c| antcode_core::ids::sha256_hex(c.as_ref()))
        });
        let api_key = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && v.len() <= 256);
        Credentials {
            cert_fingerprint,
            api_key,
        }
    }
}

fn denied(reason: &'static str) {
    metrics::counter!("antcode_edge_auth_failures_total", "reason" => reason).increment(1);
}

impl Authenticator {
    pub fn new(control: Arc<Control>) -> Authenticator {
        Authenticator {
            control,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// The worker behind `creds`: the certificate wins over an API key when both are present.
    pub async fn identify(&self, creds: &Credentials) -> Result<Arc<Identity>, Status> {
        let (cache_key, body) = if let Some(fp) = &creds.cert_fingerprint {
            (
                format!("c:{fp}"),
                serde_json::json!({ "cert_fingerprint": fp }),
            )
        } else if let Some(key) = &creds.api_key {
            (
                format!("k:{}", antcode_core::ids::token_hash(key)),
                serde_json::json!({ "api_key": key }),
            )
        } else {
            denied("no_credential");
            return Err(Status::unauthenticated(
                "no credential: present the client certificate from enrollment or an API key",
            ));
        };
        if let Some(d) = self.cache.get(&cache_key).await {
            return decide(d);
        }
        let decision = match self.control.authenticate(&body).await {
            Ok(id) => Decision::Allowed(Arc::new(id)),
            Err(ControlError::Refused(_, why)) => Decision::Denied(why),
            Err(e) => {
                denied("control_unavailable");
                return Err(Status::unavailable(format!(
                    "cannot verify credentials right now: {e}"
                )));
            }
        };
        self.cache.insert(cache_key, decision.clone()).await;
        decide(decision)
    }
}

fn decide(d: Decision) -> Result<Arc<Identity>, Status> {
    match d {
        Decision::Allowed(id) => Ok(id),
        Decision::Denied(why) => {
            denied("rejected");
            Err(Status::unauthenticated(format!(
                "credential refused: {why}"
            )))
        }
    }
}
