//! Who is calling: the identity comes from the connection (a client certificate verified against
//! the cluster CA during the TLS handshake, or `authorization: Bearer <api key>`), never from a
//! message field. The front resolves it before a call reaches the worker service: credentials are
//! checked by control (`/internal/v1/authenticate`, the edge holds no SQL credentials) and
//! decisions are cached for at most [`CACHE_TTL`], so a revoked worker is refused within about a
//! second. The front hands the result to the service in [`IDENTITY_HEADER`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::{Control, ControlError};

/// Set by the front on calls it passes to the internal worker service: the caller's [`Identity`]
/// as hex-encoded JSON. The front removes every inbound `x-antcode-*` header, so a client cannot
/// supply it.
pub const IDENTITY_HEADER: &str = "x-antcode-identity";

/// How long an authentication decision (either way) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// An authenticated worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub worker_id: String,
    pub name: String,
    /// Queues it may lease from.
    pub queues: Vec<String>,
    /// Its labels as fixed at enrollment (the key's win over what it asked for): what it is
    /// routed by, never what its calls say.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
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

/// Why a caller was not identified.
#[derive(Debug)]
pub enum AuthError {
    /// No credential, or one control refused (unknown, revoked): UNAUTHENTICATED.
    Refused(String),
    /// Control could not be asked: UNAVAILABLE, worth retrying.
    Unavailable(String),
}

/// The API key of an `authorization: Bearer …` header value.
pub fn bearer(value: &str) -> Option<String> {
    value
        .strip_prefix("Bearer ")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

impl Identity {
    /// The value of [`IDENTITY_HEADER`].
    pub fn to_header(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_header(value: &str) -> Option<Identity> {
        serde_json::from_slice(&hex::decode(value).ok()?).ok()
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
    pub async fn identify(&self, creds: &Credentials) -> Result<Arc<Identity>, AuthError> {
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
            return Err(AuthError::Refused(
                "no credential: present the client certificate from enrollment or an API key"
                    .into(),
            ));
        };
        // Concurrent misses for one credential (its runners reconnecting together) share one
        // call to control; a failed call is not cached, so the next request asks again.
        let decision = self
            .cache
            .try_get_with(cache_key, async {
                match self.control.authenticate(&body).await {
                    Ok(id) => Ok(Decision::Allowed(Arc::new(id))),
                    Err(ControlError::Refused(_, why)) => Ok(Decision::Denied(why)),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await;
        match decision {
            Ok(d) => decide(d),
            Err(e) => {
                denied("control_unavailable");
                Err(AuthError::Unavailable(format!(
                    "cannot verify credentials right now: {e}"
                )))
            }
        }
    }
}

fn decide(d: Decision) -> Result<Arc<Identity>, AuthError> {
    match d {
        Decision::Allowed(id) => Ok(id),
        Decision::Denied(why) => {
            denied("rejected");
            Err(AuthError::Refused(format!("credential refused: {why}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_header_round_trips_and_rejects_garbage() {
        let id = Identity {
            worker_id: "w1".into(),
            name: "runner ü".into(),
            queues: vec!["default".into()],
            labels: [("gpu".to_string(), "true".to_string())].into(),
        };
        let back = Identity::from_header(&id.to_header()).expect("round trip");
        assert_eq!(
            (back.worker_id, back.name, back.queues, back.labels),
            (id.worker_id, id.name, id.queues, id.labels)
        );
        assert!(Identity::from_header("not hex").is_none());
        assert!(Identity::from_header(&hex::encode(b"{\"worker_id\":1}")).is_none());
    }

    #[test]
    fn bearer_takes_only_a_sane_api_key() {
        assert_eq!(bearer("Bearer wk_abc").as_deref(), Some("wk_abc"));
        assert_eq!(bearer("Basic wk_abc"), None);
        assert_eq!(bearer("Bearer  "), None);
        assert_eq!(bearer(&format!("Bearer {}", "k".repeat(300))), None);
    }
}
