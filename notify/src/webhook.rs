//! The generic webhook: a signed JSON POST any service can check.
//!
//! The body is `{"delivery_id", "title", "text", "event": {…}}` (see [`crate::Event`]). Each
//! request carries:
//!
//! * `X-AntCode-Delivery`: the delivery's id, the same on every retry of it;
//! * `X-AntCode-Timestamp`: when it was signed, in seconds since the Unix epoch;
//! * `X-AntCode-Signature`: `sha256=` and the lower-case hex HMAC-SHA256, keyed with the
//!   channel's secret, of the timestamp, a `.`, and the raw body bytes.
//!
//! A receiver recomputes the HMAC over the exact bytes it received, compares in constant time,
//! and refuses a timestamp more than [`REPLAY_WINDOW_S`] seconds from its own clock (either
//! way). Within the window a captured request can be replayed, so a receiver that acts on
//! alerts also drops a `X-AntCode-Delivery` it has already seen; that also absorbs the rare
//! second delivery of an attempt whose answer was lost. [`verify`] does all but the dedup.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    check_field, check_status, check_url, Channel, Notification, Receipt, SendError, Sender,
};

/// How far a receiver lets a timestamp stray from its clock, in seconds.
pub const REPLAY_WINDOW_S: i64 = 300;
/// Shortest accepted secret: an HMAC key guessable by brute force protects nothing.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The HMAC key, shared with the receiver.
    pub secret: String,
}

impl WebhookConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_url(&self.url)?;
        check_field("secret", &self.secret)?;
        if self.secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "secret: at least {MIN_SECRET_LEN} characters (it keys the signature)"
            ));
        }
        Ok(())
    }
}

/// `sha256=<hex>` for `timestamp` and `body` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the timestamp is outside the replay window")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// The receiver's check: the signature over `timestamp` and `body`, and the replay window
/// around `now_s`. Compares in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
    now_s: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now_s - ts).abs() > REPLAY_WINDOW_S {
        return Err(VerifyError::Stale);
    }
    let hex_sig = signature_header
        .strip_prefix("sha256=")
        .ok_or(VerifyError::Mismatch)?;
    let given = hex::decode(hex_sig).map_err(|_| VerifyError::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| VerifyError::Mismatch)
}

pub(crate) struct Webhook {
    sender: Sender,
    config: WebhookConfig,
}

impl Webhook {
    pub(crate) fn new(sender: Sender, config: WebhookConfig) -> Webhook {
        Webhook { sender, config }
    }
}

#[async_trait::async_trait]
impl Channel for Webhook {
    async fn send(&self, n: &Notification) -> Result<Receipt, SendError> {
        let url = check_url(&self.config.url).map_err(SendError::permanent)?;
        let body = serde_json::to_vec(n).map_err(|e| SendError::permanent(e.to_string()))?;
        let ts = self.sender.now_ms().div_euclid(1000);
        let headers = [
            ("X-AntCode-Delivery", n.delivery_id.clone()),
            ("X-AntCode-Timestamp", ts.to_string()),
            (
                "X-AntCode-Signature",
                signature(self.config.secret.as_bytes(), ts, &body),
            ),
        ];
        let (status, text) = self.sender.post_json(url, &headers, body).await?;
        check_status(status, &text)?;
        Ok(Receipt {
            detail: format!("HTTP {}", status.as_u16()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_its_own_signature_inside_the_window_only() {
        let sig = signature(b"0123456789abcdef", 1_000, b"{}");
        assert_eq!(
            verify(b"0123456789abcdef", "1000", b"{}", &sig, 1_300),
            Ok(())
        );
        assert_eq!(
            verify(b"0123456789abcdef", "1000", b"{}", &sig, 700),
            Ok(())
        );
        assert_eq!(
            verify(b"0123456789abcdef", "1000", b"{}", &sig, 1_301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(b"0123456789abcdef", "1000", b"{ }", &sig, 1_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret!!", "1000", b"{}", &sig, 1_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"0123456789abcdef", "1e3", b"{}", &sig, 1_000),
            Err(VerifyError::BadTimestamp)
        );
    }
}
