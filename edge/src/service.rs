//! `antcode.worker.v1.WorkerService` over the broker and the blob store, behind the front. A call
//! is served only with the front's secret ([`FRONT_HEADER`]); every call but `Enroll` carries the
//! identity the front resolved from the connection ([`IDENTITY_HEADER`]). Reports are accepted only
//! for leases the caller holds (sealed tokens, see [`crate::seal`]) and still live in the broker.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use rand::Rng;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use antcode_core::blob::{check_log_archive, log_key, BlobStore, MAX_LOG_BYTES};
use antcode_core::broker::{routing, Broker, HeldLease, LeaseRequest as BrokerLease};
use antcode_core::model::{Lease, Outcome, RunEvent, RunEventKind, RunState, WorkerStatus};
use antcode_core::telemetry::trace::{Kind, RunSpan, TRACEPARENT};
use antcode_core::time::now_ms;
use antcode_core::Shutdown;
use antcode_proto::worker::v1 as pb;
use antcode_proto::worker::v1::worker_service_server::WorkerService;

use crate::control::{Control, ControlError};
use crate::front::{FRONT_HEADER, PEER_HEADER};
use crate::identity::{Identity, IDENTITY_HEADER};
use crate::seal::Sealer;
use crate::Limits;

pub struct Edge {
    pub broker: Arc<dyn Broker>,
    pub blobs: Arc<dyn BlobStore>,
    pub control: Arc<Control>,
    pub sealer: Sealer,
    pub limits: Limits,
    /// What the front sends in [`FRONT_HEADER`].
    secret: String,
    pub shutdown: Shutdown,
    long_polls: Mutex<HashMap<String, Arc<Semaphore>>>,
}

fn broker_status(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("broker: {e}"))
}

/// RESOURCE_EXHAUSTED with `retry-after`, counted under `scope` like the front's rate limits.
fn exhausted(scope: &'static str, what: &str) -> Status {
    metrics::counter!("antcode_edge_rate_limited_total", "scope" => scope).increment(1);
    let mut s = Status::resource_exhausted(format!("too many {what}; retry after 1 s"));
    s.metadata_mut().insert(
        "retry-after",
        tonic::metadata::MetadataValue::from_static("1"),
    );
    s
}

impl Edge {
    pub fn new(
        broker: Arc<dyn Broker>,
        blobs: Arc<dyn BlobStore>,
        control: Arc<Control>,
        sealer: Sealer,
        limits: Limits,
        secret: String,
        shutdown: Shutdown,
    ) -> Edge {
        Edge {
            broker,
            blobs,
            control,
            sealer,
            limits,
            secret,
            shutdown,
            long_polls: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses a call that did not come through the front (the internal port is on loopback, but
    /// any local process could reach it).
    fn via_front<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let sent = req
            .metadata()
            .get(FRONT_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Constant time: the comparison must not tell how much of a guess was right.
        let same = sent.len() == self.secret.len()
            && sent
                .iter()
                .zip(self.secret.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            metrics::counter!("antcode_edge_auth_failures_total", "reason" => "bypassed_front")
                .increment(1);
            Err(Status::unauthenticated(
                "the worker service is reached only through the edge's TLS port",
            ))
        }
    }

    /// The identity the front resolved from the connection.
    fn who<T>(&self, req: &Request<T>) -> Result<Identity, Status> {
        self.via_front(req)?;
        req.metadata()
            .get(IDENTITY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Identity::from_header)
            .ok_or_else(|| Status::unauthenticated("no identity for this call"))
    }

    /// The broker token of `lease` if the caller holds it: sealed for this worker, run and
    /// attempt (else PERMISSION_DENIED) and still live in the broker (else FAILED_PRECONDITION).
    async fn held(&self, id: &Identity, lease: Option<&pb::LeaseRef>) -> Result<String, Status> {
        let lease = lease.ok_or_else(|| Status::invalid_argument("lease is required"))?;
        let token = self
            .sealer
            .open(
                &id.worker_id,
                &lease.run_id,
                lease.attempt,
                &lease.lease_token,
            )
            .ok_or_else(|| {
                metrics::counter!("antcode_edge_auth_failures_total", "reason" => "foreign_lease")
                    .increment(1);
                Status::permission_denied(format!(
                    "run {} attempt {} is not leased to this worker",
                    lease.run_id, lease.attempt
                ))
            })?;
        let alive = self
            .broker
            .lease_alive(&lease.run_id, &token)
            .await
            .map_err(broker_status)?;
        if !alive {
            return Err(Status::failed_precondition(format!(
                "the lease on run {} attempt {} is no longer held (stale or expired)",
                lease.run_id, lease.attempt
            )));
        }
        Ok(token)
    }

    fn to_job(&self, id: &Identity, lease: &Lease) -> pb::Job {
        let j = &lease.job;
        pb::Job {
            lease: Some(pb::LeaseRef {
                run_id: j.run_id.clone(),
                attempt: j.attempt,
                lease_token: self.sealer.seal(
                    &id.worker_id,
                    &j.run_id,
                    j.attempt,
                    &lease.lease_token,
                ),
            }),
            queue: j.queue.clone(),
            task_id: j.task_id.clone(),
            project_id: j.project_id.clone(),
            project_version: j.project_version,
            bundle: Some(pb::BundleRef {
                key: j.bundle.key.clone(),
                sha256: j.bundle.sha256.clone(),
                format: serde_json::to_value(j.bundle.format)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                size_bytes: j.bundle.size_bytes,
                file_name: j.bundle.file_name.clone().unwrap_or_default(),
            }),
            entrypoint: j.entrypoint.clone(),
            requirements: j.requirements.clone(),
            python_version: j.python_version.clone().unwrap_or_default(),
            args: j.args.clone(),
            env: j.env.clone().into_iter().collect(),
            timeout_s: j.timeout_s,
            deadline_unix_ms: lease.deadline_ms,
            bundle_mac: self.sealer.bundle_mac(&j.run_id, &j.bundle.key),
            job_json: serde_json::to_string(j).unwrap_or_default(),
        }
    }

    fn long_poll_slot(&self, worker_id: &str) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        let sem = {
            let mut map = self.long_polls.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(worker_id.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.long_polls_per_identity)))
                .clone()
        };
        sem.try_acquire_owned()
            .map_err(|_| exhausted("long_polls", "concurrent long-polls of this identity"))
    }

    /// `Lease` for the worker `id`: a long-poll on the broker over the queues it is allowed. The
    /// one implementation behind both the tonic method (proxied calls) and the front's inline
    /// answer ([`crate::front`]), so the two cannot drift apart.
    pub async fn lease_for(
        &self,
        id: &Identity,
        r: pb::LeaseRequest,
    ) -> Result<pb::LeaseResponse, Status> {
        let _slot = self.long_poll_slot(&id.worker_id)?;
        let queues: Vec<String> = if r.queues.is_empty() {
            id.queues.clone()
        } else {
            r.queues
                .into_iter()
                .filter(|q| id.queues.contains(q))
                .collect()
        };
        if queues.is_empty() {
            return Err(Status::permission_denied(format!(
                "none of the requested queues is allowed; this worker may lease from {:?}",
                id.queues
            )));
        }
        // Jitter spreads the re-polls of many runners that connected together.
        let max_wait = self.limits.lease_wait.as_millis() as u64;
        let jittered = rand::thread_rng().gen_range(max_wait * 4 / 5..=max_wait.max(1));
        let wait = if r.wait_ms == 0 {
            jittered
        } else {
            (r.wait_ms as u64).min(jittered)
        };
        let ask = BrokerLease {
            worker_id: id.worker_id.clone(),
            queues,
            labels: routing::with_runner(&id.labels, &id.name),
            max: (r.max_jobs.clamp(1, 16)) as usize,
            ttl: self.limits.lease_ttl,
        };
        let parked = Parked::new();
        let started = std::time::Instant::now();
        let leased = tokio::select! {
            got = self.broker.lease(&ask, Duration::from_millis(wait)) => got,
            // On shutdown the parked call is answered (empty) rather than cut.
            _ = self.shutdown.cancelled() => Ok(Vec::new()),
        };
        drop(parked);
        let leases = leased.map_err(broker_status)?;
        if !leases.is_empty() {
            metrics::counter!("antcode_edge_leases_total").increment(leases.len() as u64);
            metrics::histogram!("antcode_edge_lease_wait_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        Ok(pb::LeaseResponse {
            jobs: leases.iter().map(|l| self.to_job(id, l)).collect(),
        })
    }

    async fn publish(&self, event: RunEvent) -> Result<(), Status> {
        self.broker
            .publish_event(&event)
            .await
            .map_err(broker_status)
    }
}

/// Counts a parked long-poll in `antcode_edge_long_polls_parked` for as long as it lives, also when
/// the call is dropped mid-wait (the client went away).
struct Parked;

impl Parked {
    fn new() -> Parked {
        metrics::gauge!("antcode_edge_long_polls_parked").increment(1.0);
        Parked
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        metrics::gauge!("antcode_edge_long_polls_parked").decrement(1.0);
    }
}

type BundleStream = Pin<Box<dyn Stream<Item = Result<pb::BundleChunk, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for Edge {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        self.via_front(&req)?;
        let address = req
            .metadata()
            .get(PEER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let r = req.into_inner();
        let body = serde_json::json!({
            "enrollment_key": r.enrollment_key,
            "name": r.name,
            "labels": r.labels,
            "csr_pem": if r.csr_pem.is_empty() { None } else { Some(r.csr_pem) },
            "address": address,
        });
        match self.control.enroll(&body).await {
            Ok(v) => {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                Ok(Response::new(pb::EnrollResponse {
                    worker_id: s("worker_id"),
                    api_key: s("api_key"),
                    client_cert_pem: s("client_cert_pem"),
                    ca_cert_pem: s("ca_cert_pem"),
                }))
            }
            Err(ControlError::Refused(403, why)) => {
                metrics::counter!("antcode_edge_auth_failures_total", "reason" => "enrollment")
                    .increment(1);
                Err(Status::permission_denied(why))
            }
            Err(ControlError::Refused(_, why)) => Err(Status::invalid_argument(why)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let id = self.who(&req)?;
        self.lease_for(&id, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let id = self.who(&req)?;
        let r = req.into_inner();
        let mut held = Vec::new();
        let mut lost = Vec::new();
        for l in r.held.iter().take(1024) {
            match self
                .sealer
                .open(&id.worker_id, &l.run_id, l.attempt, &l.lease_token)
            {
                Some(token) => held.push(HeldLease {
                    run_id: l.run_id.clone(),
                    lease_token: token,
                }),
                None => lost.push(l.run_id.clone()),
            }
        }
        let reply = self
            .broker
            .heartbeat(&id.worker_id, &held, self.limits.lease_ttl)
            .await
            .map_err(broker_status)?;
        let interval = self.limits.heartbeat_interval;
        let status = WorkerStatus {
            id: id.worker_id.clone(),
            name: id.name.clone(),
            mode: "gateway".into(),
            queues: id.queues.clone(),
            // What its enrollment fixed, which it is routed by, and of what it says of itself
            // only its sandbox report: a claimed label would show a routing it does not get.
            labels: r
                .labels
                .into_iter()
                .filter(|(k, _)| k.starts_with("sandbox"))
                .take(4)
                .chain(id.labels.clone())
                .collect(),
            slots: r.slots,
            running: r.running,
            cpu_percent: r.cpu_percent,
            memory_percent: r.memory_percent,
            disk_percent: r.disk_percent,
            version: r.version.chars().take(64).collect(),
            draining: reply.drain,
            held_leases: held.iter().map(|h| h.run_id.clone()).collect(),
            last_seen_ms: now_ms(),
        };
        self.broker
            .put_worker(&status, interval * 3)
            .await
            .map_err(broker_status)?;
        lost.extend(reply.lost);
        Ok(Response::new(pb::HeartbeatResponse {
            cancel_run_ids: reply.cancels,
            lost_run_ids: lost,
            drain: reply.drain,
            next_heartbeat_ms: interval.as_millis() as u32,
        }))
    }

    async fn report_started(
        &self,
        req: Request<pb::ReportStartedRequest>,
    ) -> Result<Response<pb::ReportStartedResponse>, Status> {
        let id = self.who(&req)?;
        let span = report_span(&req, "report started");
        let r = req.into_inner();
        let token = self.held(&id, r.lease.as_ref()).await?;
        let lease = r.lease.unwrap_or_default();
        self.publish(RunEvent {
            trace: span.traceparent(),
            run_id: lease.run_id,
            attempt: lease.attempt,
            lease_token: token,
            worker_id: id.worker_id.clone(),
            at_ms: if r.started_unix_ms > 0 {
                r.started_unix_ms
            } else {
                now_ms()
            },
            kind: RunEventKind::Started,
        })
        .await?;
        Ok(Response::new(pb::ReportStartedResponse {}))
    }

    async fn push_logs(
        &self,
        req: Request<Streaming<pb::LogChunk>>,
    ) -> Result<Response<pb::PushLogsResponse>, Status> {
        let id = self.who(&req)?;
        let mut stream = req.into_inner();
        let mut verified: Option<(String, u32, String)> = None;
        let mut last_seq = 0;
        let mut batch = Vec::new();
        while let Some(chunk) = stream.message().await? {
            let lease = chunk.lease.clone().unwrap_or_default();
            let known = verified.as_ref().is_some_and(|(run, attempt, sealed)| {
                *run == lease.run_id && *attempt == lease.attempt && *sealed == lease.lease_token
            });
            if !known {
                if let Some((run, _, _)) = &verified {
                    self.flush_logs(run, &mut batch).await?;
                }
                self.held(&id, Some(&lease)).await?;
                verified = Some((
                    lease.run_id.clone(),
                    lease.attempt,
                    lease.lease_token.clone(),
                ));
            }
            last_seq = last_seq.max(chunk.seq);
            batch.push(antcode_core::broker::LogChunk {
                attempt: lease.attempt,
                seq: chunk.seq,
                stream: chunk.stream.chars().take(16).collect(),
                data: String::from_utf8_lossy(&chunk.data).into_owned(),
                at_ms: chunk.at_unix_ms,
            });
            if batch.len() >= 256 {
                self.flush_logs(&lease.run_id, &mut batch).await?;
            }
        }
        if let Some((run, _, _)) = &verified {
            self.flush_logs(run, &mut batch).await?;
        }
        Ok(Response::new(pb::PushLogsResponse { last_seq }))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let id = self.who(&req)?;
        let span = report_span(&req, "complete");
        let r = req.into_inner();
        let token = self.held(&id, r.lease.as_ref()).await?;
        let lease = r.lease.clone().unwrap_or_default();
        if r.state == "handed_back" {
            self.broker
                .hand_back(&lease.run_id, &token)
                .await
                .map_err(broker_status)?;
            return Ok(Response::new(pb::CompleteResponse {}));
        }
        let interrupted = r.state == antcode_proto::STATE_INTERRUPTED;
        let state = match interrupted {
            true => Some(RunState::Queued),
            false => RunState::parse(&r.state).filter(|s| s.is_terminal()),
        }
        .ok_or_else(|| {
            Status::invalid_argument(format!("state {:?} is not a final state", r.state))
        })?;
        let mut log = None;
        if !r.log_archive.is_empty() {
            // A small archive can inflate to anything: refuse one that is not gzip or that
            // inflates past what any reader serves, before it is stored.
            let archive = bytes::Bytes::from(r.log_archive.clone());
            let checked = archive.clone();
            tokio::task::spawn_blocking(move || check_log_archive(&checked, MAX_LOG_BYTES))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(Status::invalid_argument)?;
            let key = log_key(&lease.run_id, lease.attempt);
            self.blobs
                .put(&key, archive)
                .await
                .map_err(|e| Status::unavailable(format!("blob store: {e}")))?;
            log = Some(key);
        }
        let result = if r.result_json.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&r.result_json)
                    .map_err(|e| Status::invalid_argument(format!("result_json: {e}")))?,
            )
        };
        let outcome = Outcome {
            state,
            exit_code: r.exit_code,
            signal: r.signal,
            error: Some(r.error).filter(|e| !e.is_empty()),
            duration_ms: r.duration_ms.max(0),
            peak_rss_kb: Some(r.peak_rss_kb).filter(|k| *k > 0),
            log_key: log,
            result,
        };
        self.publish(RunEvent {
            trace: span.traceparent(),
            run_id: lease.run_id.clone(),
            attempt: lease.attempt,
            lease_token: token.clone(),
            worker_id: id.worker_id.clone(),
            at_ms: now_ms(),
            kind: match interrupted {
                true => RunEventKind::Interrupted(outcome),
                false => RunEventKind::Finished(outcome),
            },
        })
        .await?;
        self.broker
            .release(&lease.run_id, &token)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(pb::CompleteResponse {}))
    }

    type FetchBundleStream = BundleStream;

    async fn fetch_bundle(
        &self,
        req: Request<pb::FetchBundleRequest>,
    ) -> Result<Response<BundleStream>, Status> {
        let id = self.who(&req)?;
        let r = req.into_inner();
        self.held(&id, r.lease.as_ref()).await?;
        let run_id = r
            .lease
            .as_ref()
            .map(|l| l.run_id.as_str())
            .unwrap_or_default();
        if !self.sealer.check_bundle(run_id, &r.key, &r.bundle_mac) {
            return Err(Status::permission_denied(
                "this bundle does not belong to the lease",
            ));
        }
        let reader = self.blobs.get_stream(&r.key).await.map_err(|e| match e {
            antcode_core::blob::BlobError::NotFound(k) => {
                Status::not_found(format!("bundle {k} not found"))
            }
            other => Status::unavailable(format!("blob store: {other}")),
        })?;
        let chunks = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
        let stream = futures::StreamExt::map(chunks, |c| {
            c.map(|data| pb::BundleChunk {
                data: data.to_vec(),
            })
            .map_err(|e| Status::unavailable(format!("reading the bundle: {e}")))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl Edge {
    async fn flush_logs(
        &self,
        run_id: &str,
        batch: &mut Vec<antcode_core::broker::LogChunk>,
    ) -> Result<(), Status> {
        if batch.is_empty() {
            return Ok(());
        }
        self.broker
            .append_log(run_id, batch)
            .await
            .map_err(broker_status)?;
        batch.clear();
        Ok(())
    }
}

/// With traces on, the span of a runner's report: a child of the runner's attempt span named by
/// the call's `traceparent` metadata. The event the edge publishes names it in turn.
fn report_span<T>(req: &Request<T>, name: &'static str) -> RunSpan {
    let parent = req
        .metadata()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    match parent {
        Some(parent) => RunSpan::start(name, Kind::Server, Some(parent)),
        None => RunSpan::default(),
    }
}
