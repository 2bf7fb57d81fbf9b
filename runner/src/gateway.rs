//! Gateway mode: the runner talks only to the edge, over gRPC on TLS
//! (`antcode.worker.v1.WorkerService`), and holds nothing but its own credential.
//!
//! On first start it trades a one-time enrollment key (`--enroll KEY`) for a credential: an API
//! key plus a client certificate signed by the cluster CA for a key pair generated here (only the
//! CSR leaves the machine). The credential is kept in `<data dir>/gateway-credential.json` with
//! mode 0600 and reused after. Every call then presents the certificate (mTLS) and the API key.
//!
//! Transport errors are [`SourceError::Unavailable`], so the engine retries them with backoff; a
//! server that refuses our certificate (foreign CA, revoked worker) is reported in plain words.
//! Every call has a deadline ([`CALL_TIMEOUT`], longer for bundles and long-polls), so a call on
//! a connection that died with the edge (a restart) fails and is retried instead of hanging.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status};

use antcode_core::blob::log_key;
use antcode_core::broker::{HeartbeatReply, HeldLease, LogChunk};
use antcode_core::model::{BundleRef, Job, Lease, RunEvent, RunEventKind, WorkerStatus};
use antcode_core::telemetry::trace::TRACEPARENT;
use antcode_proto::worker::v1 as pb;
use antcode_proto::worker::v1::worker_service_client::WorkerServiceClient;

use crate::lock;
use crate::source::{SourceError, WorkSource};

/// Deadline of a report, a log push, a heartbeat or a hand-back.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of a bundle download or of a `Complete` carrying the log archive.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

/// File name of the stored credential inside the runner's data dir.
pub const CREDENTIAL_FILE: &str = "gateway-credential.json";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(String),
    /// The edge refused the enrollment key (used, expired or unknown).
    #[error("enrollment refused: {0}")]
    Enrollment(String),
    #[error("cannot reach the edge at {0}: {1}")]
    Unreachable(String, String),
    #[error("credential file {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// What a gateway runner keeps between starts.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credential {
    pub worker_id: String,
    pub api_key: String,
    #[serde(default)]
    pub cert_pem: String,
    #[serde(default)]
    pub key_pem: String,
}

pub struct GatewayConfig {
    /// `https://HOST:PORT` of the edge.
    pub edge_url: String,
    /// PEM of the CA the edge's certificate chains to.
    pub ca_pem: String,
    pub data_dir: PathBuf,
    pub enroll_key: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Queues asked for; empty = every queue this worker is allowed.
    pub queues: Vec<String>,
}

fn channel(cfg: &GatewayConfig, cred: Option<&Credential>) -> Result<Channel, GatewayError> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cfg.ca_pem));
    if let Some(c) = cred.filter(|c| !c.cert_pem.is_empty()) {
        tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
    }
    let endpoint = Channel::from_shared(cfg.edge_url.clone())
        .map_err(|e| GatewayError::Config(format!("--edge {}: {e}", cfg.edge_url)))?
        .tls_config(tls)
        .map_err(|e| GatewayError::Config(format!("TLS settings: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    // Lazy: the first call connects, and a dropped connection is re-established by later calls.
    Ok(endpoint.connect_lazy())
}

/// Loads the stored credential, or enrolls with `cfg.enroll_key` and stores it (mode 0600).
pub async fn credential(cfg: &GatewayConfig) -> Result<Credential, GatewayError> {
    let path = cfg.data_dir.join(CREDENTIAL_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).map_err(|e| {
            GatewayError::Config(format!(
                "{} is corrupt ({e}); delete it and enroll again",
                path.display()
            ))
        });
    }
    let key = cfg
        .enroll_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            GatewayError::Config(format!(
            "not enrolled yet (no {}): pass --enroll KEY with a key from POST /api/v1/worker-keys",
            path.display()
        ))
        })?;
    let key_pair = rcgen::KeyPair::generate().map_err(|e| GatewayError::Config(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| GatewayError::Config(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cfg.name.clone());
    let csr = params
        .serialize_request(&key_pair)
        .and_then(|c| c.pem())
        .map_err(|e| GatewayError::Config(format!("building the CSR: {e}")))?;
    let mut client = WorkerServiceClient::new(channel(cfg, None)?);
    let reply = client
        .enroll(pb::EnrollRequest {
            enrollment_key: key.to_string(),
            name: cfg.name.clone(),
            csr_pem: csr,
            labels: cfg.labels.clone().into_iter().collect(),
        })
        .await
        .map_err(|s| match s.code() {
            Code::PermissionDenied | Code::InvalidArgument => {
                GatewayError::Enrollment(s.message().to_string())
            }
            _ => GatewayError::Unreachable(cfg.edge_url.clone(), describe(&s)),
        })?
        .into_inner();
    let cred = Credential {
        worker_id: reply.worker_id,
        api_key: reply.api_key,
        key_pem: if reply.client_cert_pem.is_empty() {
            String::new()
        } else {
            key_pair.serialize_pem()
        },
        cert_pem: reply.client_cert_pem,
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| GatewayError::Io(cfg.data_dir.clone(), e))?;
    antcode_core::fsutil::write_private(
        &path,
        serde_json::to_string_pretty(&cred)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| GatewayError::Io(path.clone(), e))?;
    tracing::info!(worker_id = %cred.worker_id, "enrolled with the edge; credential stored");
    Ok(cred)
}

/// A status in plain words; TLS refusals get a hint instead of a bare "transport error".
fn describe(s: &Status) -> String {
    let mut text = s.message().to_string();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownca") || lower.contains("alert") {
        text.push_str(
            " (TLS refused: check that --ca is the cluster CA and that this runner's certificate was issued by it)",
        );
    }
    text
}

fn source_error(s: Status) -> SourceError {
    match s.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Aborted
        | Code::Internal => SourceError::Unavailable(describe(&s)),
        Code::Unauthenticated => SourceError::Unavailable(format!(
            "the edge refused this runner's credential ({}); it may have been revoked",
            s.message()
        )),
        Code::NotFound => SourceError::NotFound(s.message().to_string()),
        _ => SourceError::Other(format!("{:?}: {}", s.code(), s.message())),
    }
}

struct HeldRef {
    lease: pb::LeaseRef,
    bundle_key: String,
    bundle_mac: String,
}

/// The [`WorkSource`] of a gateway runner.
pub struct GatewaySource {
    client: WorkerServiceClient<Channel>,
    cred: Credential,
    queues: Vec<String>,
    held: Mutex<HashMap<String, HeldRef>>,
    cancels: Mutex<HashSet<String>>,
    /// Log archives waiting to ride along with their `Complete`, by log key.
    archives: Mutex<HashMap<String, Bytes>>,
}

impl GatewaySource {
    pub fn new(cfg: &GatewayConfig, cred: Credential) -> Result<GatewaySource, GatewayError> {
        let client = WorkerServiceClient::new(channel(cfg, Some(&cred))?)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        Ok(GatewaySource {
            client,
            cred,
            queues: cfg.queues.clone(),
            held: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashSet::new()),
            archives: Mutex::new(HashMap::new()),
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.cred.worker_id
    }

    /// A call carrying the API key, with the default deadline.
    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.cred.api_key).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r.set_timeout(CALL_TIMEOUT);
        r
    }

    fn lease_ref(&self, run_id: &str) -> Result<pb::LeaseRef, SourceError> {
        lock(&self.held)
            .get(run_id)
            .map(|h| h.lease.clone())
            .ok_or_else(|| SourceError::Other(format!("run {run_id} is not held by this runner")))
    }
}

/// `r` with the `traceparent` of the span that reports `event`, if it has one, so the edge's
/// span and the recorder's write join the run's trace.
fn traced<T>(mut r: Request<T>, event: &RunEvent) -> Request<T> {
    if let Some(v) = event.trace.as_deref().and_then(|t| t.parse().ok()) {
        r.metadata_mut().insert(TRACEPARENT, v);
    }
    r
}

fn to_lease(job: pb::Job, worker_id: &str) -> Result<(Lease, HeldRef), SourceError> {
    let lease_ref = job
        .lease
        .clone()
        .ok_or_else(|| SourceError::Other("the edge sent a job without a lease".into()))?;
    let parsed: Job = serde_json::from_str(&job.job_json)
        .map_err(|e| SourceError::Other(format!("the edge sent an unreadable job: {e}")))?;
    let held = HeldRef {
        lease: lease_ref.clone(),
        bundle_key: parsed.bundle.key.clone(),
        bundle_mac: job.bundle_mac,
    };
    Ok((
        Lease {
            job: parsed,
            lease_token: lease_ref.lease_token,
            worker_id: worker_id.to_string(),
            deadline_ms: job.deadline_unix_ms,
        },
        held,
    ))
}

#[async_trait]
impl WorkSource for GatewaySource {
    async fn lease(&self, max: usize, wait: Duration) -> Result<Vec<Lease>, SourceError> {
        let mut req = self.req(pb::LeaseRequest {
            queues: self.queues.clone(),
            max_jobs: max as u32,
            wait_ms: wait.as_millis() as u32,
        });
        req.set_timeout(wait + Duration::from_secs(15));
        let reply = self
            .client
            .clone()
            .lease(req)
            .await
            .map_err(source_error)?
            .into_inner();
        let mut out = Vec::new();
        for job in reply.jobs {
            let (lease, held) = to_lease(job, &self.cred.worker_id)?;
            lock(&self.held).insert(lease.job.run_id.clone(), held);
            out.push(lease);
        }
        Ok(out)
    }

    async fn heartbeat(
        &self,
        held: &[HeldLease],
        status: &WorkerStatus,
        _interval: Duration,
    ) -> Result<HeartbeatReply, SourceError> {
        let refs: Vec<pb::LeaseRef> = {
            let map = lock(&self.held);
            held.iter()
                .filter_map(|h| map.get(&h.run_id).map(|r| r.lease.clone()))
                .collect()
        };
        let req = self.req(pb::HeartbeatRequest {
            cpu_percent: status.cpu_percent,
            memory_percent: status.memory_percent,
            disk_percent: status.disk_percent,
            running: status.running,
            slots: status.slots,
            version: status.version.clone(),
            labels: status.labels.clone().into_iter().collect(),
            held: refs,
        });
        let r = self
            .client
            .clone()
            .heartbeat(req)
            .await
            .map_err(source_error)?
            .into_inner();
        *lock(&self.cancels) = r.cancel_run_ids.iter().cloned().collect();
        Ok(HeartbeatReply {
            cancels: r.cancel_run_ids,
            lost: r.lost_run_ids,
            drain: r.drain,
        })
    }

    async fn cancels_for(&self, run_ids: &[String]) -> Result<Vec<String>, SourceError> {
        // Cancels arrive with heartbeats; this answers from the last one.
        let c = lock(&self.cancels);
        Ok(run_ids.iter().filter(|r| c.contains(*r)).cloned().collect())
    }

    async fn report(&self, event: &RunEvent) -> Result<(), SourceError> {
        let lease = self.lease_ref(&event.run_id)?;
        match &event.kind {
            RunEventKind::Started => {
                self.client
                    .clone()
                    .report_started(traced(
                        self.req(pb::ReportStartedRequest {
                            lease: Some(lease),
                            started_unix_ms: event.at_ms,
                        }),
                        event,
                    ))
                    .await
                    .map_err(source_error)?;
            }
            RunEventKind::Finished(o) | RunEventKind::Interrupted(o) => {
                let state = match &event.kind {
                    RunEventKind::Interrupted(_) => antcode_proto::STATE_INTERRUPTED.to_string(),
                    _ => o.state.as_str().to_string(),
                };
                let archive = o
                    .log_key
                    .as_ref()
                    .and_then(|k| lock(&self.archives).get(k).cloned())
                    .unwrap_or_default();
                let mut req = self.req(pb::CompleteRequest {
                    lease: Some(lease),
                    state,
                    exit_code: o.exit_code,
                    signal: o.signal,
                    error: o.error.clone().unwrap_or_default(),
                    duration_ms: o.duration_ms,
                    peak_rss_kb: o.peak_rss_kb.unwrap_or(0),
                    log_key: o.log_key.clone().unwrap_or_default(),
                    result_json: o.result.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    log_archive: archive.to_vec(),
                });
                req.set_timeout(TRANSFER_TIMEOUT);
                self.client
                    .clone()
                    .complete(traced(req, event))
                    .await
                    .map_err(source_error)?;
                if let Some(k) = &o.log_key {
                    lock(&self.archives).remove(k);
                }
            }
        }
        Ok(())
    }

    async fn push_logs(&self, run_id: &str, chunks: &[LogChunk]) -> Result<(), SourceError> {
        let lease = self.lease_ref(run_id)?;
        let msgs: Vec<pb::LogChunk> = chunks
            .iter()
            .map(|c| pb::LogChunk {
                lease: Some(lease.clone()),
                seq: c.seq,
                stream: c.stream.clone(),
                data: c.data.clone().into_bytes(),
                at_unix_ms: c.at_ms,
            })
            .collect();
        self.client
            .clone()
            .push_logs(self.req(futures::stream::iter(msgs)))
            .await
            .map_err(source_error)?;
        Ok(())
    }

    async fn fetch_bundle(&self, bundle: &BundleRef) -> Result<Bytes, SourceError> {
        let found = lock(&self.held)
            .values()
            .find(|h| h.bundle_key == bundle.key)
            .map(|h| (h.lease.clone(), h.bundle_mac.clone()));
        let (lease, mac) = found.ok_or_else(|| {
            SourceError::Other(format!("bundle {} belongs to no held lease", bundle.key))
        })?;
        let mut req = self.req(pb::FetchBundleRequest {
            lease: Some(lease),
            key: bundle.key.clone(),
            bundle_mac: mac,
        });
        req.set_timeout(TRANSFER_TIMEOUT);
        let download = async {
            let mut stream = self
                .client
                .clone()
                .fetch_bundle(req)
                .await
                .map_err(source_error)?
                .into_inner();
            let mut data = Vec::new();
            while let Some(chunk) = stream.message().await.map_err(source_error)? {
                data.extend_from_slice(&chunk.data);
            }
            Ok(data.into())
        };
        // The call's deadline covers the response headers; this one covers the whole stream.
        tokio::time::timeout(TRANSFER_TIMEOUT, download)
            .await
            .map_err(|_| SourceError::Unavailable("downloading the bundle timed out".into()))?
    }

    async fn put_log_archive(
        &self,
        run_id: &str,
        attempt: u32,
        gz: Bytes,
    ) -> Result<String, SourceError> {
        // A gateway runner cannot reach the blob store: the archive rides along with Complete.
        let key = log_key(run_id, attempt);
        lock(&self.archives).insert(key.clone(), gz);
        Ok(key)
    }

    async fn release(&self, run_id: &str, _lease_token: &str) -> Result<(), SourceError> {
        // The edge released the broker lease when it accepted Complete.
        lock(&self.held).remove(run_id);
        Ok(())
    }

    async fn hand_back(&self, run_id: &str, _lease_token: &str) -> Result<(), SourceError> {
        let lease = self.lease_ref(run_id)?;
        self.client
            .clone()
            .complete(self.req(pb::CompleteRequest {
                lease: Some(lease),
                state: "handed_back".into(),
                ..Default::default()
            }))
            .await
            .map_err(source_error)?;
        lock(&self.held).remove(run_id);
        Ok(())
    }
}
