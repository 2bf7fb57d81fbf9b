//! `/internal/v1/*`: what the edge asks of control on a runner's behalf. The edge never holds SQL
//! credentials, so enrollment and credential checks happen here.
//!
//! Every call carries `authorization: Bearer <edge token>` (`ControlConfig::edge_token`), compared
//! in constant time. Without a configured edge token these routes answer 404, as if absent.
//!
//! * `POST /internal/v1/enroll` trades a one-time enrollment key for a worker identity: an API key
//!   (shown once, stored hashed) and, when a CSR is sent and control holds the cluster CA, a client
//!   certificate whose CN and SAN are the worker id (its SHA-256 fingerprint is recorded).
//! * `POST /internal/v1/authenticate` maps an API key or a certificate fingerprint to the worker
//!   (401 if unknown or revoked).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use antcode_core::ids;
use antcode_core::time::now_ms;

use super::{ok, JsonBody};
use crate::audit::{self, to_value};
use crate::auth::Client;
use crate::problem::{ApiResult, Problem};
use crate::service::workers::{self, EnrollBody};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/enroll", post(enroll))
        .route("/internal/v1/authenticate", post(authenticate))
}

/// 404 when no edge token is configured (the routes do not exist), 401 on a wrong token.
fn check_edge(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(expected) = state.edge_token.as_deref() else {
        return Err(Problem::not_found("no such route"));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare hashes so the comparison time depends on neither length nor content.
    let a = ids::token_hash(given);
    let b = ids::token_hash(expected);
    if bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
        Ok(())
    } else {
        Err(Problem::unauthorized("bad edge token"))
    }
}

async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(mut body): JsonBody<EnrollBody>,
) -> ApiResult<Response> {
    check_edge(&state, &headers)?;
    let client = Client {
        address: body.address.take().unwrap_or_else(|| "edge".into()),
        user_agent: "antcode-edge".into(),
    };
    let e = workers::enrollment(&state, body, now_ms())?;
    let stored = match state
        .store
        .redeem_worker_key(&e.key_hash, &e.worker, now_ms())
        .await
    {
        Ok(w) => w,
        Err(err) => {
            let why = workers::refusal(err)?;
            audit::record_as(
                &state,
                &format!("enroll:{}", e.worker.name),
                &client,
                "worker.enroll",
                "-",
                None,
                None,
                why,
            )
            .await;
            return Err(Problem::forbidden(why));
        }
    };
    audit::record_as(
        &state,
        &format!("enroll:{}", stored.name),
        &client,
        "worker.enroll",
        &stored.id,
        None,
        to_value(&stored),
        "ok",
    )
    .await;
    Ok(ok(json!({
        "worker_id": stored.id,
        "name": stored.name,
        "api_key": e.api_key,
        "queues": stored.queues,
        "client_cert_pem": e.client_cert_pem,
        "ca_cert_pem": state.cluster_ca.as_ref().map(|(c, _)| c.clone()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthBody {
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    cert_fingerprint: Option<String>,
}

async fn authenticate(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AuthBody>,
) -> ApiResult<Response> {
    check_edge(&state, &headers)?;
    let w = workers::authenticate(
        &state,
        body.api_key.as_deref(),
        body.cert_fingerprint.as_deref(),
    )
    .await?;
    Ok(ok(json!({
        "worker_id": w.id,
        "name": w.name,
        "queues": w.queues,
        "labels": w.labels,
    })))
}
