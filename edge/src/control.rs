//! The edge's client for control's `/internal/v1/*` endpoints.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control unreachable: {0}")]
    Unreachable(String),
    /// Control answered with a 4xx: the request itself is refused (status, detail).
    #[error("{1}")]
    Refused(u16, String),
}

/// Idle connections to control kept for reuse.
const IDLE_CONNECTIONS: usize = 16;

pub struct Control {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Control {
    pub fn new(base: &str, token: &str) -> Control {
        Control {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // After a burst (runners reconnecting together) the pool would otherwise keep
                // every connection it opened, each with its buffers, for 90 s.
                .pool_max_idle_per_host(IDLE_CONNECTIONS)
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ControlError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json()
                .await
                .map_err(|e| ControlError::Unreachable(format!("bad answer: {e}")));
        }
        let detail = resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or_else(|| status.to_string());
        if status.is_client_error() && status.as_u16() != 404 && status.as_u16() != 429 {
            Err(ControlError::Refused(status.as_u16(), detail))
        } else {
            Err(ControlError::Unreachable(format!("{status}: {detail}")))
        }
    }

    pub async fn authenticate(&self, body: &serde_json::Value) -> Result<Identity, ControlError> {
        self.post("/internal/v1/authenticate", body).await
    }

    pub async fn enroll(
        &self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        self.post("/internal/v1/enroll", body).await
    }
}
