//! The HTTP routes, one module per resource. [`api`] is everything under `/api/v1`.

pub mod audit;
pub mod auth;
pub mod git;
pub mod hooks;
pub mod internal;
pub mod notifications;
pub mod projects;
pub mod queues;
pub mod retention;
pub mod runs;
pub mod secrets;
pub mod system;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod workers;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::problem::{ApiResult, Problem};
use crate::AppState;

pub fn api() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(projects::router())
        .merge(git::router())
        .merge(tasks::router())
        .merge(runs::router())
        .merge(workers::router())
        .merge(queues::router())
        .merge(audit::router())
        .merge(secrets::router())
        .merge(notifications::router())
        .merge(retention::router())
        .merge(hooks::router())
}

/// `Query` whose rejection is problem+json.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// `Path` whose rejection is problem+json.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// `limit` (default 50, at most 500) and an opaque `cursor` (the last id of the previous page).
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> ApiResult<u32> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=500) => Ok(n),
            Some(n) => Err(Problem::bad_request(format!(
                "limit must be between 1 and 500, got {n}"
            ))),
        }
    }

    pub fn cursor(&self) -> ApiResult<Option<&str>> {
        match self.cursor.as_deref() {
            None | Some("") => Ok(None),
            Some(c) if antcode_core::ids::is_valid_id(c) => Ok(Some(c)),
            Some(c) => Err(Problem::bad_request(format!("invalid cursor {c:?}"))),
        }
    }
}

/// `{items, next_cursor}` for lists that are not paginated in the store.
#[derive(Serialize)]
pub struct List<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn all(items: Vec<T>) -> List<T> {
        List {
            items,
            next_cursor: None,
        }
    }
}

pub fn created<T: Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `body` as a file to save: its media type and `Content-Disposition: attachment` with `file`
/// (a name the server made, never a user's string).
pub fn attachment(body: impl IntoResponse, mime: &'static str, file: &str) -> Response {
    use axum::http::{header, HeaderValue};
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

pub fn ok<T: Serialize>(body: T) -> Response {
    Json(body).into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A JSON body parsed with field-naming errors (`retry.max_attempts: invalid type…`) and a 413
/// past the body limit, all as problem+json.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        let body = read_body(req, state).await?;
        crate::problem::parse_json(&body).map(JsonBody)
    }
}

/// A JSON body read but not yet parsed: handlers call [`LateJson::parse`] after their role
/// check, so a caller without the role is told 403 and learns nothing about the body's shape.
pub struct LateJson(pub bytes::Bytes);

impl LateJson {
    pub fn parse<T: DeserializeOwned>(&self) -> ApiResult<T> {
        crate::problem::parse_json(&self.0)
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for LateJson {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        read_body(req, state).await.map(LateJson)
    }
}

/// The request's body, a 413 problem past the body limit.
async fn read_body<S: Send + Sync>(
    req: axum::extract::Request,
    state: &S,
) -> Result<bytes::Bytes, Problem> {
    use axum::extract::FromRequest;
    bytes::Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large("the request body is too large")
        } else {
            Problem::bad_request(e.body_text())
        }
    })
}
