//! Notification senders: one [`Channel`] trait and one implementation per kind of receiver.
//!
//! | kind | receiver | authentication |
//! |---|---|---|
//! | `webhook` | any HTTPS endpoint, JSON body | `X-AntCode-Signature`, HMAC-SHA256 over timestamp and body ([`webhook`]) |
//! | `smtp` | an SMTP server | STARTTLS or implicit TLS, `AUTH` with username and password ([`smtp`]) |
//! | `dingtalk` | DingTalk group robot | `timestamp` + `sign` query parameters (DingTalk's 加签) |
//! | `feishu` | Feishu / Lark custom bot | `timestamp` + `sign` in the body (Feishu's 签名校验) |
//! | `wecom` | WeCom (企业微信) group robot | the `key` in its URL; WeCom robots have no signing |
//! | `slack` | Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, …) | the secret path of its URL |
//!
//! A channel's configuration ([`ChannelConfig`]) is one JSON object tagged by `kind`. All of it is
//! treated as secret — robot and Slack URLs carry their credential — so whoever stores it seals it
//! whole and shows only [`ChannelConfig::redacted`].
//!
//! Sending is one attempt: retries, backoff, rate limits and the once-per-event guarantee belong
//! to the caller's outbox. A failure says whether another attempt can help
//! ([`SendError::retryable`]): timeouts, connection errors, HTTP 429 and 5xx, the robots' "too
//! fast" codes and transient SMTP replies can; a refused signature, a bad URL or a rejected
//! recipient cannot. Robot APIs answer HTTP 200 with an error code in the body, which is read.
//!
//! HTTP requests never follow redirects (a signed body is for the configured URL only), time out
//! after [`Sender::timeout`], and read at most [`MAX_RESPONSE_BYTES`] of a response.

pub mod robots;
pub mod smtp;
pub mod template;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use antcode_core::time::{Clock, SystemClock};
use serde::{Deserialize, Serialize};

pub use template::{Event, Notification, Template, TemplateError};

/// Most of a receiver's response body that is read (for its error message).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// Longest URL a channel may have.
pub const MAX_URL_LEN: usize = 2048;
/// Longest secret, password or SMTP field.
pub const MAX_FIELD_LEN: usize = 512;
/// Most recipients of one SMTP channel.
pub const MAX_RECIPIENTS: usize = 50;

/// A channel's configuration; see the crate doc for each kind.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelConfig {
    Webhook(webhook::WebhookConfig),
    Smtp(smtp::SmtpConfig),
    Dingtalk(robots::DingTalkConfig),
    Feishu(robots::FeishuConfig),
    Wecom(robots::UrlConfig),
    Slack(robots::UrlConfig),
}

impl std::fmt::Debug for ChannelConfig {
    /// Only the redacted form: a logged configuration never shows a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelConfig({})", self.redacted())
    }
}

impl ChannelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Webhook(_) => "webhook",
            ChannelConfig::Smtp(_) => "smtp",
            ChannelConfig::Dingtalk(_) => "dingtalk",
            ChannelConfig::Feishu(_) => "feishu",
            ChannelConfig::Wecom(_) => "wecom",
            ChannelConfig::Slack(_) => "slack",
        }
    }

    /// Refuses a configuration that cannot work, with a message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ChannelConfig::Webhook(c) => c.validate(),
            ChannelConfig::Smtp(c) => c.validate(),
            ChannelConfig::Dingtalk(c) => c.validate(),
            ChannelConfig::Feishu(c) => c.validate(),
            ChannelConfig::Wecom(c) => c.validate("key"),
            ChannelConfig::Slack(c) => c.validate(""),
        }
    }

    /// What may be shown of it: the kind, where it sends to (a URL cut to its scheme and host,
    /// an SMTP server and recipients) and whether a secret is set, never a credential.
    pub fn redacted(&self) -> serde_json::Value {
        use serde_json::json;
        let mut v = match self {
            ChannelConfig::Webhook(c) => {
                json!({"url": redact_url(&c.url), "secret_set": !c.secret.is_empty()})
            }
            ChannelConfig::Smtp(c) => c.redacted(),
            ChannelConfig::Dingtalk(c) => {
                json!({"url": redact_url(&c.url), "secret_set": c.secret.is_some()})
            }
            ChannelConfig::Feishu(c) => {
                json!({"url": redact_url(&c.url), "secret_set": c.secret.is_some()})
            }
            ChannelConfig::Wecom(c) | ChannelConfig::Slack(c) => json!({"url": redact_url(&c.url)}),
        };
        v["kind"] = self.kind().into();
        v
    }
}

/// `https://host:port/…`: where a URL points, without the path or query that may carry a token.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/…", u.scheme()),
            (Some(h), None) => format!("{}://{h}/…", u.scheme()),
            _ => "(invalid URL)".into(),
        },
        Err(_) => "(invalid URL)".into(),
    }
}

/// Checks that `raw` is an absolute `http` or `https` URL of bounded length.
pub(crate) fn check_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("url: longer than {MAX_URL_LEN} bytes"));
    }
    let u = url::Url::parse(raw).map_err(|e| format!("url: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("url: must be an http:// or https:// URL with a host".into());
    }
    Ok(u)
}

pub(crate) fn check_field(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD_LEN {
        return Err(format!("{name}: longer than {MAX_FIELD_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{name}: contains a control character"));
    }
    Ok(())
}

/// Why a send failed, and whether another attempt can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct SendError {
    pub retryable: bool,
    /// What the receiver said, or why it was not reached; bounded, never a credential.
    pub detail: String,
}

impl SendError {
    pub fn retry(detail: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            detail: bounded(detail.into()),
        }
    }

    pub fn permanent(detail: impl Into<String>) -> SendError {
        SendError {
            retryable: false,
            detail: bounded(detail.into()),
        }
    }
}

fn bounded(mut s: String) -> String {
    template::truncate_utf8(&mut s, 1024);
    s
}

/// What the receiver answered to a delivered alert (for the delivery history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub detail: String,
}

/// One way of sending an alert.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    /// One attempt at delivering `n`.
    async fn send(&self, n: &Notification) -> Result<Receipt, SendError>;
}

/// What every channel shares: the HTTP client, the clock that stamps signatures, the timeout.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl Default for Sender {
    fn default() -> Sender {
        Sender::new(Arc::new(SystemClock), Duration::from_secs(10))
    }
}

impl Sender {
    pub fn new(clock: Arc<dyn Clock>, timeout: Duration) -> Sender {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("AntCode/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with rustls builds");
        Sender {
            http,
            clock,
            timeout,
        }
    }

    /// How long one attempt may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The channel for `config`.
    pub fn channel(&self, config: ChannelConfig) -> Box<dyn Channel> {
        match config {
            ChannelConfig::Webhook(c) => Box::new(webhook::Webhook::new(self.clone(), c)),
            ChannelConfig::Smtp(c) => Box::new(smtp::Smtp::new(c, self.timeout)),
            ChannelConfig::Dingtalk(c) => Box::new(self.robot(c)),
            ChannelConfig::Feishu(c) => Box::new(self.robot(c)),
            ChannelConfig::Wecom(c) => Box::new(self.robot(robots::WeComUrl(c))),
            ChannelConfig::Slack(c) => Box::new(self.robot(robots::SlackUrl(c))),
        }
    }

    fn robot<C>(&self, config: C) -> robots::Robot<C> {
        robots::Robot {
            sender: self.clone(),
            config,
        }
    }

    /// Sends `n` through `config` once.
    pub async fn send(
        &self,
        config: &ChannelConfig,
        n: &Notification,
    ) -> Result<Receipt, SendError> {
        self.channel(config.clone()).send(n).await
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// POSTs `body` as JSON with `headers`; returns the status and at most
    /// [`MAX_RESPONSE_BYTES`] of the response. Transport failures are retryable.
    pub(crate) async fn post_json(
        &self,
        url: url::Url,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(reqwest::StatusCode, String), SendError> {
        let mut req = self.http.post(url).header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        );
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut resp = req.body(body).send().await.map_err(transport_error)?;
        let status = resp.status();
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
            let room = MAX_RESPONSE_BYTES - buf.len();
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if buf.len() >= MAX_RESPONSE_BYTES {
                break;
            }
        }
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// A request that did not get an answer. The URL is left out: it may carry a token.
fn transport_error(e: reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        SendError::retry(what)
    } else {
        SendError::retry(format!("{what}: {cause}"))
    }
}

/// The usual reading of an HTTP status: 2xx delivered, 429 and 5xx worth retrying, the rest not.
pub(crate) fn check_status(status: reqwest::StatusCode, body: &str) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let detail = format!("HTTP {}: {}", status.as_u16(), body.trim());
    if status.as_u16() == 429 || status.is_server_error() {
        Err(SendError::retry(detail))
    } else {
        Err(SendError::permanent(detail))
    }
}
