//! Email over SMTP, with lettre on rustls.
//!
//! `tls` chooses how the connection is protected: `starttls` (the default, port 587) upgrades
//! the connection and refuses to go on if the server does not offer STARTTLS; `tls` (port 465)
//! speaks TLS from the first byte; `none` (port 25) is for a relay on the same host and is
//! refused together with a username, so a password never crosses the network in the clear.
//! The server's certificate is checked against the Mozilla roots, plus `ca_pem` when the relay
//! has a private CA. With a username the client authenticates (`PLAIN` or `LOGIN`, whichever the
//! server offers) and fails if the server offers neither.
//!
//! The mail is plain text: the alert's title as the subject and its text as the body. A 4xx
//! reply or a broken connection is retryable; a 5xx reply (a refused recipient, bad credentials)
//! is not.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::{check_field, Channel, Notification, Receipt, SendError, MAX_RECIPIENTS};

/// Largest `ca_pem`, in bytes.
pub const MAX_CA_PEM_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// 587 for `starttls`, 465 for `tls`, 25 for `none` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The sender, `name <addr>` or `addr`.
    pub from: String,
    pub to: Vec<String>,
    /// A CA certificate (PEM) to trust besides the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        check_field("host", &self.host)?;
        if self.host.is_empty() {
            return Err("host: required".into());
        }
        if self.port == Some(0) {
            return Err("port: 1 to 65535".into());
        }
        for (name, v) in [("username", &self.username), ("password", &self.password)] {
            if let Some(v) = v {
                check_field(name, v)?;
            }
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("username and password: give both or neither".into());
        }
        if self.tls == SmtpTls::None && self.username.is_some() {
            return Err("tls: `none` with a username would send the password in the clear; use `starttls` or `tls`".into());
        }
        check_field("from", &self.from)?;
        self.from
            .parse::<Mailbox>()
            .map_err(|e| format!("from: {e}"))?;
        if self.to.is_empty() || self.to.len() > MAX_RECIPIENTS {
            return Err(format!("to: 1 to {MAX_RECIPIENTS} addresses"));
        }
        for to in &self.to {
            check_field("to", to)?;
            to.parse::<Mailbox>()
                .map_err(|e| format!("to {to:?}: {e}"))?;
        }
        if let Some(pem) = &self.ca_pem {
            if pem.len() > MAX_CA_PEM_LEN {
                return Err(format!("ca_pem: longer than {MAX_CA_PEM_LEN} bytes"));
            }
            Certificate::from_pem(pem.as_bytes()).map_err(|e| format!("ca_pem: {e}"))?;
        }
        Ok(())
    }

    pub(crate) fn redacted(&self) -> serde_json::Value {
        serde_json::json!({
            "host": self.host,
            "port": self.port(),
            "tls": self.tls,
            "username": self.username,
            "password_set": self.password.is_some(),
            "from": self.from,
            "to": self.to,
            "ca_pem_set": self.ca_pem.is_some(),
        })
    }
}

pub(crate) struct Smtp {
    config: SmtpConfig,
    timeout: Duration,
}

impl Smtp {
    pub(crate) fn new(config: SmtpConfig, timeout: Duration) -> Smtp {
        Smtp { config, timeout }
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let c = &self.config;
        let tls_params = || -> Result<TlsParameters, SendError> {
            let mut b = TlsParameters::builder(c.host.clone());
            if let Some(pem) = &c.ca_pem {
                let cert = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| SendError::permanent(format!("ca_pem: {e}")))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls()
                .map_err(|e| SendError::permanent(format!("TLS settings: {e}")))
        };
        let tls = match c.tls {
            SmtpTls::Starttls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
            SmtpTls::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
            .port(c.port())
            .tls(tls)
            .timeout(Some(self.timeout));
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(b.build())
    }

    fn message(&self, n: &Notification) -> Result<Message, SendError> {
        let bad = |e: String| SendError::permanent(e);
        let mut m = Message::builder()
            .from(
                self.config
                    .from
                    .parse()
                    .map_err(|e| bad(format!("from: {e}")))?,
            )
            .subject(n.title.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.config.to {
            m = m.to(to.parse().map_err(|e| bad(format!("to: {e}")))?);
        }
        m.body(n.text.clone()).map_err(|e| bad(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Channel for Smtp {
    async fn send(&self, n: &Notification) -> Result<Receipt, SendError> {
        let message = self.message(n)?;
        let transport = self.transport()?;
        // lettre's timeout covers each read and write; this bounds the whole exchange.
        let sent = tokio::time::timeout(self.timeout * 3, transport.send(message))
            .await
            .map_err(|_| SendError::retry("SMTP exchange timed out"))?;
        match sent {
            Ok(resp) => Ok(Receipt {
                detail: format!(
                    "{} {}",
                    resp.code(),
                    resp.message().collect::<Vec<_>>().join(" ")
                ),
            }),
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::retry(format!("SMTP: {e}"))),
        }
    }
}
