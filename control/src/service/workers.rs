//! Workers: the heartbeating ones the broker knows, the one-time keys that enroll gateway
//! workers, and enrollment itself (what the edge asks on a runner's behalf).
//!
//! An enrolled worker gets an API key (shown once, stored hashed) and, when it sends a CSR and
//! control holds the cluster CA, a client certificate whose CN and SAN are its worker id; the
//! SHA-256 fingerprint of that certificate is what the edge later presents for it.

use std::collections::BTreeMap;

use serde::Deserialize;

use antcode_core::ids;
use antcode_core::model::{WorkerKey, WorkerRecord, WorkerStatus};
use antcode_core::store::StoreError;

use crate::problem::{ApiResult, Problem};
use crate::AppState;

const DEFAULT_KEY_TTL_S: u64 = 24 * 3600;
/// Longest life of an enrollment key, in seconds.
pub const MAX_KEY_TTL_S: u64 = 30 * 24 * 3600;
/// Longest note of an enrollment key, in bytes.
pub const MAX_KEY_NOTE_BYTES: usize = 200;
/// Most queues an enrollment key names (at least one).
pub const MAX_KEY_QUEUES: usize = 32;
/// Longest queue name, in bytes (letters, digits, `.`, `_`, `-`).
pub const MAX_QUEUE_NAME_BYTES: usize = 64;
/// Most labels of a worker, their longest key and value, in bytes.
pub const WORKER_LABELS: (usize, usize, usize) = (32, 64, 256);

/// A queue name: 1-64 letters, digits, `.`, `_` or `-`.
pub fn queue_name_ok(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= MAX_QUEUE_NAME_BYTES
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A worker's labels: at most 32, keys of 1-64 and values of up to 256 bytes.
fn check_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    let (most, key, value) = WORKER_LABELS;
    if labels.len() > most
        || labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > key || v.len() > value)
    {
        return Err(Problem::bad_request(
            "labels: at most 32, keys 1-64 and values up to 256 characters",
        ));
    }
    Ok(())
}

/// The heartbeating worker `id`, or 404.
pub async fn find(state: &AppState, id: &str) -> ApiResult<WorkerStatus> {
    let shaped = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    let found = if shaped {
        state
            .broker
            .workers()
            .await?
            .into_iter()
            .find(|w| w.id == id)
    } else {
        None
    };
    found
        .ok_or_else(|| Problem::not_found(format!("worker {id:?} not found (or not heartbeating)")))
}

/// The body of `POST /worker-keys`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    queues: Option<Vec<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ttl_s: Option<u64>,
}

/// Stores a new enrollment key made by `by` at `now`: the key and its secret, which only its
/// hash is kept of.
pub async fn create_key(
    state: &AppState,
    body: NewKey,
    by: &str,
    now: i64,
) -> ApiResult<(WorkerKey, String)> {
    let note = body.note.unwrap_or_default().trim().to_string();
    if note.len() > MAX_KEY_NOTE_BYTES {
        return Err(Problem::bad_request("note must be at most 200 characters"));
    }
    let queues = body.queues.unwrap_or_else(|| vec!["default".into()]);
    if queues.is_empty()
        || queues.len() > MAX_KEY_QUEUES
        || !queues.iter().all(|q| queue_name_ok(q))
    {
        return Err(Problem::bad_request(
            "queues: 1-32 names of letters, digits, '.', '_' or '-'",
        ));
    }
    check_labels(&body.labels)?;
    let ttl = body.ttl_s.unwrap_or(DEFAULT_KEY_TTL_S);
    if ttl == 0 || ttl > MAX_KEY_TTL_S {
        return Err(Problem::bad_request(format!(
            "ttl_s must be between 1 and {MAX_KEY_TTL_S}"
        )));
    }
    let secret = ids::new_token("ek");
    let key = WorkerKey {
        id: ids::new_id(),
        note,
        queues,
        labels: body.labels,
        created_by: by.to_string(),
        created_at: now,
        expires_at: now + (ttl as i64) * 1000,
        used_at: None,
        used_by: None,
        key_hash: ids::token_hash(&secret),
    };
    state.store.create_worker_key(&key).await?;
    Ok((key, secret))
}

/// The body of `POST /internal/v1/enroll`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    enrollment_key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    csr_pem: Option<String>,
    /// The runner's address as the edge saw it, for the audit trail.
    #[serde(default)]
    pub address: Option<String>,
}

/// A worker identity made from an enrollment, before the key is redeemed.
pub struct Enrollment {
    pub worker: WorkerRecord,
    pub key_hash: String,
    /// Shown once, in the answer.
    pub api_key: String,
    pub client_cert_pem: Option<String>,
}

/// Checks an enrollment and makes its worker identity (signing the CSR, if any).
pub fn enrollment(state: &AppState, body: EnrollBody, now: i64) -> ApiResult<Enrollment> {
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return Err(Problem::bad_request("name must be 1-100 characters"));
    }
    check_labels(&body.labels)?;
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
        id: worker_id,
        name,
        mode: "gateway".into(),
        queues: Vec::new(),
        labels: body.labels,
        api_key_hash: Some(ids::token_hash(&api_key)),
        cert_fingerprint: fingerprint,
        revoked: false,
        created_at: now,
        last_seen_at: None,
    };
    Ok(Enrollment {
        worker,
        key_hash: ids::token_hash(body.enrollment_key.trim()),
        api_key,
        client_cert_pem,
    })
}

/// Why a redeem of an enrollment key was refused (the store's error as the audit says it), or
/// the error itself when it is not a refusal.
pub fn refusal(e: StoreError) -> Result<&'static str, Problem> {
    match e {
        StoreError::NotFound => Ok("enrollment key unknown"),
        StoreError::Conflict(_) => Ok("enrollment key already used"),
        StoreError::Stale(_) => Ok("enrollment key expired"),
        e => Err(e.into()),
    }
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

/// The enrolled, unrevoked worker an API key or a certificate fingerprint belongs to (the key
/// wins when both are given), or 401.
pub async fn authenticate(
    state: &AppState,
    api_key: Option<&str>,
    cert_fingerprint: Option<&str>,
) -> ApiResult<WorkerRecord> {
    let found = match (api_key, cert_fingerprint) {
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
        Ok(w) if !w.revoked => Ok(w),
        Ok(_) => Err(Problem::unauthorized("worker revoked")),
        Err(StoreError::NotFound) => Err(Problem::unauthorized("unknown worker credential")),
        Err(e) => Err(e.into()),
    }
}
