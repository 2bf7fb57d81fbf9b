//! Per-task webhooks as the store keeps them: a [`Hook`] starts runs of one task for whoever
//! holds its secret, and a [`RunKey`] makes a repeated call with the same `Idempotency-Key`
//! answer with the run the first one started.
//!
//! A `token` hook's secret is kept as its SHA-256 (it is compared, never needed again); an
//! `hmac` hook's is sealed with the cluster's `SecretBox` under [`seal_name`], because checking a
//! signature needs the secret itself. Neither ever leaves the store through the API.
//!
//! A key is unique per hook in the store (`run_keys`), and is written in the same transaction
//! as its run, so no key exists without its run nor a run without its key.

use serde::{Deserialize, Serialize};

use crate::time::rfc3339;

/// Longest hook name.
pub const MAX_NAME_LEN: usize = 100;
/// Longest `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 200;
/// How long a key holds: a call with a key older than this starts a new run, and the
/// scheduler's pruner deletes such keys.
pub const KEY_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// The bounds of [`Hook::rate_per_min`].
pub const RATE_PER_MIN: (u32, u32) = (1, 6000);

/// The name an `hmac` hook's secret is sealed under (`SecretBox::seal`).
pub fn seal_name(hook_id: &str) -> String {
    format!("hook:{hook_id}")
}

/// How a caller proves it holds a hook's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HookAuth {
    /// `Authorization: Bearer <secret>`.
    Token,
    /// `X-AntCode-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    Hmac,
}

impl HookAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            HookAuth::Token => "token",
            HookAuth::Hmac => "hmac",
        }
    }

    pub fn parse(s: &str) -> Option<HookAuth> {
        match s {
            "token" => Some(HookAuth::Token),
            "hmac" => Some(HookAuth::Hmac),
            _ => None,
        }
    }
}

/// A webhook of one task.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Hook {
    pub id: String,
    pub task_id: String,
    pub name: String,
    pub auth: HookAuth,
    /// Calls a minute it accepts, on average (a token bucket that holds as many).
    pub rate_per_min: u32,
    /// The secret's SHA-256 (`token`) or the secret sealed under [`seal_name`] (`hmac`).
    #[serde(skip)]
    pub secret: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub rotated_at: Option<i64>,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<i64>,
}

/// An idempotency key a run is created under: at most one run per `(hook_id, key)` within
/// [`KEY_WINDOW_MS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    pub hook_id: String,
    pub key: String,
}
