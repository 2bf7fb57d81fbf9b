//! Errors as RFC 7807 `application/problem+json`.
//!
//! Every handler returns [`ApiResult`]; whatever goes wrong becomes a [`Problem`] with a stable
//! `type`, a short `title` and a `detail` that names what was wrong. Internal failures are logged
//! with their cause and answered with a generic 500 that leaks nothing.

use axum::extract::multipart::MultipartError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use antcode_core::blob::BlobError;
use antcode_core::broker::BrokerError;
use antcode_core::bundle::BundleError;
use antcode_core::store::StoreError;

pub type ApiResult<T> = Result<T, Problem>;

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// The last segment of the problem `type` URI, e.g. `bad-request`.
    pub kind: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            kind,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", detail)
    }

    pub fn too_many(retry_after: u64) -> Problem {
        Problem::rate_limited(
            format!("too many failed attempts; retry in {retry_after} s"),
            retry_after,
        )
    }

    /// 429 with `Retry-After: retry_after` seconds.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Problem {
        let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail);
        p.retry_after = Some(retry_after);
        p
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// Logs the cause and answers a 500 that says nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %cause, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the cause",
        )
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("urn:antcode:problem:{}", self.kind),
            "title": self.title(),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut resp = (self.status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound => Problem::not_found("not found"),
            StoreError::Conflict(what) => Problem::conflict(format!("{what} already exists")),
            StoreError::Stale(why) => Problem::conflict(why),
            e @ StoreError::LastAdmin => Problem::conflict(e.to_string()),
            other => Problem::internal(other),
        }
    }
}

impl From<BrokerError> for Problem {
    fn from(e: BrokerError) -> Problem {
        match e {
            BrokerError::Unavailable(why) => {
                tracing::warn!(error = %why, "broker unavailable");
                Problem::unavailable("the broker is unavailable; retry shortly")
            }
            other => Problem::internal(other),
        }
    }
}

impl From<BlobError> for Problem {
    fn from(e: BlobError) -> Problem {
        match e {
            BlobError::NotFound(key) => Problem::not_found(format!("blob {key} is missing")),
            other => Problem::internal(other),
        }
    }
}

impl From<BundleError> for Problem {
    fn from(e: BundleError) -> Problem {
        match e {
            BundleError::Io(why) => Problem::internal(why),
            BundleError::TooLarge(_) => Problem::too_large(e.to_string()),
            other => Problem::bad_request(format!("invalid upload: {other}")),
        }
    }
}

impl From<MultipartError> for Problem {
    fn from(e: MultipartError) -> Problem {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(format!("the request body is too large: {}", e.body_text()))
        } else {
            Problem::bad_request(format!("malformed multipart body: {}", e.body_text()))
        }
    }
}

/// Answers routes that do not exist with a problem instead of an empty 404.
pub async fn no_route() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no-route", "no such route")
}

/// Turns a panic inside a handler into a plain 500 problem (no stack trace, no panic text).
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the server log has the cause",
    )
    .into_response()
}

/// Parses a JSON body, naming the offending field on error (`retry.max_attempts: invalid type…`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.is_empty() {
        return Err(Problem::bad_request("a JSON body is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Problem::bad_request(format!("malformed JSON: {inner}"))
        } else {
            Problem::bad_request(format!("malformed JSON at field `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Guards SQL lookups against junk path segments: a malformed id cannot exist.
pub fn check_id(id: &str, what: &str) -> ApiResult<()> {
    if antcode_core::ids::is_valid_id(id) {
        Ok(())
    } else {
        Err(Problem::not_found(format!("{what} {id:?} not found")))
    }
}

/// Maps a store NotFound to a 404 naming the resource.
pub fn named(what: &str, id: &str) -> impl FnOnce(StoreError) -> Problem {
    let msg = format!("{what} {id} not found");
    move |e| match e {
        StoreError::NotFound => Problem::not_found(msg),
        other => other.into(),
    }
}
