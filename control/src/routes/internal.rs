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

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use antcode_core::ids;
use antcode_core::model::WorkerRecord;
use antcode_core::store::StoreError;
use antcode_core::time::now_ms;

use super::{ok, JsonBody};
use crate::audit::{self, to_value};
use crate::auth::Client;
use crate::problem::{ApiResult, Problem};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    enrollment_key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    csr_pem: Option<String>,
    /// The runner's address as the edge saw it, for the audit trail.
    #[serde(default)]
    address: Option<String>,
}

async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EnrollBody>,
) -> ApiResult<Response> {
    check_edge(&state, &headers)?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return Err(Problem::bad_request("name must be 1-100 characters"));
    }
    if body.labels.len() > 32
        || body
            .labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
    {
        return Err(Problem::bad_request(
            "labels: at most 32, keys 1-64 and values up to 256 characters",
        ));
    }
    let worker_id = ids::new_id();
    let (client_cert_pem, fingerprint) = match body.csr_pem.as_deref().filter(|c| !c.is_empty()) {
        None => (None, None),
        Some(csr) => {
            let Some((ca_cert, ca_key)) = state.cluster_ca.as_ref() else {
                return Err(Problem::bad_request(
                    "this cluster does not issue client certificates; enroll without a CSR",
                ));
            };
            let (pem, fp) = sign_csr(csr, &worker_id, ca_cert, ca_key)?;
            (Some(pem), Some(fp))
        }
    };
    let api_key = ids::new_token("wk");
    let worker = WorkerRecord {
        id: worker_id.clone(),
        name,
        mode: "gateway".into(),
        queues: Vec::new(),
        labels: body.labels,
        api_key_hash: Some(ids::token_hash(&api_key)),
        cert_fingerprint: fingerprint,
        revoked: false,
        created_at: now_ms(),
        last_seen_at: None,
    };
    let key_hash = ids::token_hash(body.enrollment_key.trim());
    let client = Client {
        address: body.address.unwrap_or_else(|| "edge".into()),
        user_agent: "antcode-edge".into(),
    };
    let stored = match state
        .store
        .redeem_worker_key(&key_hash, &worker, now_ms())
        .await
    {
        Ok(w) => w,
        Err(e) => {
            let why = match &e {
                StoreError::NotFound => "enrollment key unknown",
                StoreError::Conflict(_) => "enrollment key already used",
                StoreError::Stale(_) => "enrollment key expired",
                _ => return Err(e.into()),
            };
            audit::record_as(
                &state,
                &format!("enroll:{}", worker.name),
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
        "api_key": api_key,
        "queues": stored.queues,
        "client_cert_pem": client_cert_pem,
        "ca_cert_pem": state.cluster_ca.as_ref().map(|(c, _)| c.clone()),
    })))
}

/// Signs `csr_pem` with the cluster CA. Only the CSR's public key is used: subject, SAN and usages
/// are ours (the worker id, client auth), so a runner cannot ask for a name it does not own.
/// Returns the certificate PEM and the SHA-256 (hex) of its DER.
fn sign_csr(
    csr_pem: &str,
    worker_id: &str,
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> ApiResult<(String, String)> {
    use rcgen::{
        CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose,
        Issuer, KeyPair, KeyUsagePurpose,
    };
    if csr_pem.len() > 16 * 1024 {
        return Err(Problem::bad_request("csr_pem is too large"));
    }
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| Problem::bad_request(format!("csr_pem is not a valid CSR: {e}")))?;
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(Problem::internal)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(Problem::internal)?;
    let mut params =
        CertificateParams::new(vec![worker_id.to_string()]).map_err(Problem::internal)?;
    params
        .distinguished_name
        .push(DnType::CommonName, worker_id.to_string());
    params
        .distinguished_name
        .push(DnType::OrganizationName, "antcode worker");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    csr.params = params;
    let cert = csr.signed_by(&issuer).map_err(Problem::internal)?;
    let fp = ids::sha256_hex(cert.der());
    Ok((cert.pem(), fp))
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
    let found = match (body.api_key.as_deref(), body.cert_fingerprint.as_deref()) {
        (Some(key), _) if !key.is_empty() => {
            state.store.worker_by_api_key(&ids::token_hash(key)).await
        }
        (_, Some(fp)) if !fp.is_empty() => {
            state
                .store
                .worker_by_fingerprint(&fp.to_ascii_lowercase())
                .await
        }
        _ => return Err(Problem::bad_request("give api_key or cert_fingerprint")),
    };
    match found {
        Ok(w) if !w.revoked => Ok(ok(json!({
            "worker_id": w.id,
            "name": w.name,
            "queues": w.queues,
            "labels": w.labels,
        }))),
        Ok(_) => Err(Problem::unauthorized("worker revoked")),
        Err(StoreError::NotFound) => Err(Problem::unauthorized("unknown worker credential")),
        Err(e) => Err(e.into()),
    }
}
