//! The REST API over HTTP(S): one [`Api`] per command, with the token and CA of its target.
//!
//! Every answer is read with a size cap, and every error status becomes one [`Error::Api`] line
//! carrying the problem's `detail`; a 401 to a request that carried a token says to log in again.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::time::Duration;

use crate::config::Target;
use crate::error::{Error, Result, Status};

/// The largest JSON answer read (a page of 500 runs with their params fits many times over).
pub const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;
/// The largest error body read for its `detail`.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// The largest CA file read.
const MAX_CA_BYTES: u64 = 1024 * 1024;
/// How long an ordinary call may take, answer included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read may stall; live streams send a keep-alive every 15 s.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one server.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(target: &Target) -> Result<Api> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("antcode-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT);
        if let Some(ca) = &target.ca {
            let meta = std::fs::metadata(ca).map_err(|e| Error::io(ca, e))?;
            if meta.len() > MAX_CA_BYTES {
                return Err(Error::usage(format!(
                    "--ca {}: larger than {MAX_CA_BYTES} bytes",
                    ca.display()
                )));
            }
            let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::usage(format!("--ca {}: not a PEM certificate: {e}", ca.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api {
            http,
            base: target.url.clone(),
            token: target.token.clone(),
        })
    }

    /// The server's URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `/api/v1{path}`, with the token if there is one.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(token) = &self.token {
            let mut headers = HeaderMap::new();
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
            req = req.headers(headers);
        }
        req
    }

    /// Sends `req`; an error status becomes an [`Error::Api`] with the problem's detail.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.refusal(resp).await)
    }

    /// `req` sent within [`CALL_TIMEOUT`]: the answer's status and JSON body (`null` when empty).
    pub async fn call(&self, req: RequestBuilder) -> Result<(u16, Value)> {
        let resp = self.send(req.timeout(CALL_TIMEOUT)).await?;
        let status = resp.status().as_u16();
        Ok((status, self.json(resp).await?))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        Ok(self.call(self.request(Method::GET, path)).await?.1)
    }

    pub async fn get_query(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let req = self.request(Method::GET, path).query(query);
        Ok(self.call(req).await?.1)
    }

    /// POST with a JSON `body`, or none.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = self.request(Method::POST, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        Ok(self.call(req).await?.1)
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let req = self.request(Method::PATCH, path).json(body);
        Ok(self.call(req).await?.1)
    }

    /// The answer's body as JSON, at most [`MAX_JSON_BYTES`].
    pub async fn json(&self, resp: Response) -> Result<Value> {
        let body = self.bounded(resp, MAX_JSON_BYTES).await?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body)
            .map_err(|e| Error::usage(format!("{}: the answer is not JSON: {e}", self.base)))
    }

    /// At most `max` bytes of the answer's body; more is an error, never a truncation.
    async fn bounded(&self, mut resp: Response, max: usize) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(&e))? {
            if body.len() + chunk.len() > max {
                return Err(Error::usage(format!(
                    "{}: the answer is larger than {max} bytes",
                    self.base
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// An error status as one line: the problem's `detail`, or the start of the body.
    async fn refusal(&self, resp: Response) -> Error {
        let status = Status(resp.status().as_u16());
        let logging_in = resp.url().path().ends_with("/auth/login");
        let body = self
            .bounded(resp, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        let detail = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| first_line(&String::from_utf8_lossy(&body)));
        let detail = match (status.0, &self.token) {
            (401, _) if logging_in && !detail.is_empty() => detail,
            (401, Some(_)) => "token expired or revoked — run antcode login".to_string(),
            (401, None) => "not logged in — run antcode login (or set ANTCODE_TOKEN)".to_string(),
            _ if detail.is_empty() => "no detail given".to_string(),
            _ => detail,
        };
        Error::Api { status, detail }
    }

    pub fn unreachable(&self, e: &reqwest::Error) -> Error {
        Error::Unreachable {
            url: self.base.clone(),
            cause: cause(e),
        }
    }

    /// The same server without a token: for logging in.
    pub fn anonymous(&self) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            token: None,
        }
    }

    /// The same server with `token`.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.to_string()),
        }
    }
}

/// The innermost causes of a transport error (`Connection refused (os error 111)`, a TLS
/// failure), without reqwest's URL-bearing outer text.
fn cause(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if e.is_timeout() {
        parts.push("timed out".into());
    }
    match parts.is_empty() {
        true => e.to_string(),
        false => parts.join(": "),
    }
}

/// The first non-blank line of `text`, at most 200 characters.
fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.unwrap_or("").chars().take(200).collect()
}
