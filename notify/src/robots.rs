//! Chat robots: DingTalk, Feishu/Lark, WeCom and Slack-compatible incoming webhooks.
//!
//! Each gets a plain-text message (the title, a blank line, the text), cut to its vendor's size
//! limit, and each vendor's own authentication:
//!
//! * **DingTalk** (custom robot, 加签): the string to sign is the timestamp in milliseconds, a
//!   newline and the secret (`SEC…`); the signature is the Base64 of its HMAC-SHA256 keyed with
//!   the secret, URL-encoded, and both go into the query: `…&timestamp=T&sign=S`. DingTalk refuses
//!   a timestamp more than an hour from its clock. Body `{"msgtype":"text","text":{"content"}}`;
//!   the answer is `{"errcode":0,"errmsg":"ok"}`, an error code otherwise (still HTTP 200).
//! * **Feishu / Lark** (custom bot, 签名校验): the *key* is the timestamp in seconds, a newline
//!   and the secret; the signature is the Base64 of the HMAC-SHA256 of an empty message under that
//!   key. Both go into the body: `{"timestamp":"T","sign":"S","msg_type":"text","content":{"text"}}`.
//!   The answer is `{"code":0,…}`; 19021 means a bad signature or a stale timestamp.
//! * **WeCom** (企业微信 group robot): no signature; the `key` query parameter of the URL is the
//!   credential. Body `{"msgtype":"text","text":{"content"}}` of at most 2,048 bytes; answer
//!   `{"errcode":0,"errmsg":"ok"}`.
//! * **Slack-compatible**: no signature; the URL's path is the credential. Body `{"text"}`; the
//!   answer is HTTP 200 `ok`, an HTTP error otherwise.
//!
//! The robots' rate-limit answers (DingTalk 130101, Feishu 11232 and 230020, WeCom 45009, any
//! HTTP 429) and "system busy" (-1) are retryable; every other error code is not.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use crate::template::truncate_utf8;
use crate::{
    check_field, check_status, check_url, Channel, Notification, Receipt, SendError, Sender,
};

/// Largest message text per vendor, in bytes (WeCom documents 2,048; the others allow more
/// than an alert needs).
const DINGTALK_MAX: usize = 16 * 1024;
const FEISHU_MAX: usize = 16 * 1024;
const WECOM_MAX: usize = 2048;
const SLACK_MAX: usize = 16 * 1024;

/// A DingTalk custom robot: its webhook URL (with `access_token`) and, if it signs, its secret.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl DingTalkConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        require_query(&self.url, "access_token")?;
        if let Some(s) = &self.secret {
            check_field("secret", s)?;
        }
        Ok(())
    }
}

/// A Feishu / Lark custom bot: its webhook URL and, if it signs, its secret.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeishuConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl FeishuConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_url(&self.url)?;
        if let Some(s) = &self.secret {
            check_field("secret", s)?;
        }
        Ok(())
    }
}

/// A robot whose URL is its whole credential (WeCom, Slack-compatible).
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlConfig {
    pub url: String,
}

impl UrlConfig {
    /// `query`: a parameter the URL must carry (`key` for WeCom), or `""`.
    pub(crate) fn validate(&self, query: &str) -> Result<(), String> {
        if query.is_empty() {
            check_url(&self.url).map(drop)
        } else {
            require_query(&self.url, query)
        }
    }
}

fn require_query(raw: &str, name: &str) -> Result<(), String> {
    let u = check_url(raw)?;
    if u.query_pairs().any(|(k, v)| k == name && !v.is_empty()) {
        Ok(())
    } else {
        Err(format!("url: must carry the robot's {name}=… parameter"))
    }
}

/// The message a robot shows, cut to `max` bytes.
fn plain(n: &Notification, max: usize) -> String {
    let mut s = format!("{}\n\n{}", n.title, n.text);
    truncate_utf8(&mut s, max);
    s
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    B64.encode(mac.finalize().into_bytes())
}

/// DingTalk's signature for `timestamp_ms` (see the module doc), before URL encoding.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    hmac_b64(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    )
}

/// Feishu's signature for `timestamp_s` (see the module doc).
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    hmac_b64(format!("{timestamp_s}\n{secret}").as_bytes(), b"")
}

/// Reads a robot's JSON answer: `code_field` 0 is delivered, `retry_codes` are worth another
/// attempt, anything else is not.
fn robot_answer(
    status: reqwest::StatusCode,
    body: &str,
    code_field: &str,
    msg_field: &str,
    retry_codes: &[i64],
) -> Result<Receipt, SendError> {
    check_status(status, body)?;
    let v: serde_json::Value = serde_json::from_str(body).map_err(|_| {
        SendError::permanent(format!(
            "HTTP {}: not a robot's answer: {}",
            status.as_u16(),
            body.trim()
        ))
    })?;
    // Feishu's older answers say `StatusCode`/`StatusMessage`.
    let code = v[code_field]
        .as_i64()
        .or_else(|| v["StatusCode"].as_i64())
        .unwrap_or(-1);
    let msg = v[msg_field]
        .as_str()
        .or_else(|| v["StatusMessage"].as_str())
        .unwrap_or("");
    match code {
        0 => Ok(Receipt {
            detail: format!("{code_field} 0 {msg}").trim_end().to_string(),
        }),
        c if c == -1 || retry_codes.contains(&c) => {
            Err(SendError::retry(format!("{code_field} {c}: {msg}")))
        }
        c => Err(SendError::permanent(format!("{code_field} {c}: {msg}"))),
    }
}

/// A robot of the kind its configuration names.
pub(crate) struct Robot<C> {
    pub(crate) sender: Sender,
    pub(crate) config: C,
}

/// The URL of a WeCom robot (one type per kind, so each gets its own [`Channel`]).
pub(crate) struct WeComUrl(pub(crate) UrlConfig);
/// The URL of a Slack-compatible webhook.
pub(crate) struct SlackUrl(pub(crate) UrlConfig);

#[async_trait::async_trait]
impl Channel for Robot<DingTalkConfig> {
    async fn send(&self, n: &Notification) -> Result<Receipt, SendError> {
        let mut url = check_url(&self.config.url).map_err(SendError::permanent)?;
        if let Some(secret) = &self.config.secret {
            let ts = self.sender.now_ms();
            url.query_pairs_mut()
                .append_pair("timestamp", &ts.to_string())
                .append_pair("sign", &dingtalk_sign(secret, ts));
        }
        let body = json!({"msgtype": "text", "text": {"content": plain(n, DINGTALK_MAX)}});
        let (status, text) = self
            .sender
            .post_json(url, &[], body.to_string().into())
            .await?;
        robot_answer(status, &text, "errcode", "errmsg", &[130101])
    }
}

#[async_trait::async_trait]
impl Channel for Robot<FeishuConfig> {
    async fn send(&self, n: &Notification) -> Result<Receipt, SendError> {
        let url = check_url(&self.config.url).map_err(SendError::permanent)?;
        let mut body = json!({"msg_type": "text", "content": {"text": plain(n, FEISHU_MAX)}});
        if let Some(secret) = &self.config.secret {
            let ts = self.sender.now_ms().div_euclid(1000);
            body["timestamp"] = ts.to_string().into();
            body["sign"] = feishu_sign(secret, ts).into();
        }
        let (status, text) = self
            .sender
            .post_json(url, &[], body.to_string().into())
            .await?;
        robot_answer(status, &text, "code", "msg", &[11232, 230020])
    }
}

#[async_trait::async_trait]
impl Channel for Robot<WeComUrl> {
    async fn send(&self, n: &Notification) -> Result<Receipt, SendError> {
        let url = check_url(&self.config.0.url).map_err(SendError::permanent)?;
        let body = json!({"msgtype": "text", "text": {"content": plain(n, WECOM_MAX)}});
        let (status, text) = self
            .sender
            .post_json(url, &[], body.to_string().into())
            .await?;
        robot_answer(status, &text, "errcode", "errmsg", &[45009])
    }
}

#[async_trait::async_trait]
impl Channel for Robot<SlackUrl> {
    async fn send(&self, n: &Notification) -> Result<Receipt, SendError> {
        let url = check_url(&self.config.0.url).map_err(SendError::permanent)?;
        let body = json!({"text": plain(n, SLACK_MAX)});
        let (status, text) = self
            .sender
            .post_json(url, &[], body.to_string().into())
            .await?;
        check_status(status, &text)?;
        Ok(Receipt {
            detail: format!("HTTP {} {}", status.as_u16(), text.trim()),
        })
    }
}
