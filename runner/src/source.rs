//! Where work comes from and where reports go. The engine only talks to a [`WorkSource`], so
//! direct mode (the broker and blob store themselves) and gateway mode (the edge's gRPC protocol)
//! share every line of supervision code.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use antcode_core::blob::{log_key, BlobReader, BlobStore};
use antcode_core::broker::{routing, Broker, HeartbeatReply, HeldLease, LeaseRequest, LogChunk};
use antcode_core::model::{BundleRef, Lease, RunEvent, WorkerStatus};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Worth retrying after a pause (broker down, edge restarting, network).
    #[error("work source unavailable: {0}")]
    Unavailable(String),
    /// The thing asked for does not exist (a bundle missing from the store).
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait WorkSource: Send + Sync + 'static {
    /// Routes work to this runner by `labels` too (what it found at start: its Pythons, its
    /// sandbox). A gateway runner is routed by its enrollment instead, so the default ignores
    /// them.
    fn route_by(&self, _labels: &BTreeMap<String, String>) {}
    /// Waits up to `wait` for up to `max` jobs.
    async fn lease(&self, max: usize, wait: Duration) -> Result<Vec<Lease>, SourceError>;
    /// Extends the held leases and publishes the worker's status.
    async fn heartbeat(
        &self,
        held: &[HeldLease],
        status: &WorkerStatus,
        interval: Duration,
    ) -> Result<HeartbeatReply, SourceError>;
    /// The subset of `run_ids` with a pending cancel; polled often, must be cheap.
    async fn cancels_for(&self, run_ids: &[String]) -> Result<Vec<String>, SourceError>;
    async fn report(&self, event: &RunEvent) -> Result<(), SourceError>;
    async fn push_logs(&self, run_id: &str, chunks: &[LogChunk]) -> Result<(), SourceError>;
    async fn fetch_bundle(&self, bundle: &BundleRef) -> Result<Bytes, SourceError>;
    /// The bundle's content as a stream; what the runner actually calls. The default reads it
    /// whole through [`WorkSource::fetch_bundle`]; sources that can stream override it.
    async fn open_bundle(&self, bundle: &BundleRef) -> Result<BlobReader, SourceError> {
        let data = self.fetch_bundle(bundle).await?;
        Ok(Box::pin(std::io::Cursor::new(data)))
    }
    /// Stores the gzip-compressed log of an attempt; returns its key.
    async fn put_log_archive(
        &self,
        run_id: &str,
        attempt: u32,
        gz: Bytes,
    ) -> Result<String, SourceError>;
    /// Stores the gzip-compressed log in the file at `gz`; what the runner actually calls. The
    /// default reads the file and calls [`WorkSource::put_log_archive`]; sources that can
    /// upload from a file override it.
    async fn put_log_archive_file(
        &self,
        run_id: &str,
        attempt: u32,
        gz: &Path,
    ) -> Result<String, SourceError> {
        let data = tokio::fs::read(gz)
            .await
            .map_err(|e| SourceError::Other(format!("reading the log archive: {e}")))?;
        self.put_log_archive(run_id, attempt, data.into()).await
    }
    async fn release(&self, run_id: &str, lease_token: &str) -> Result<(), SourceError>;
    /// [`WorkSource::release`] of each of `done`, then [`WorkSource::lease`]. On an error some
    /// releases may have happened; releasing again is harmless (each is fenced by its token).
    async fn release_and_lease(
        &self,
        done: &[HeldLease],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Lease>, SourceError> {
        for h in done {
            self.release(&h.run_id, &h.lease_token).await?;
        }
        self.lease(max, wait).await
    }
    async fn hand_back(&self, run_id: &str, lease_token: &str) -> Result<(), SourceError>;
}

/// Direct mode: the runner holds the broker and blob store itself.
pub struct DirectSource {
    broker: Arc<dyn Broker>,
    blobs: Arc<dyn BlobStore>,
    worker_id: String,
    queues: Vec<String>,
    /// What it is routed by: its `--label`s and its name (`antcode_core::broker::routing`),
    /// then what the engine found at start.
    labels: std::sync::Mutex<BTreeMap<String, String>>,
    ttl: Duration,
}

impl DirectSource {
    pub fn new(
        broker: Arc<dyn Broker>,
        blobs: Arc<dyn BlobStore>,
        worker_id: String,
        queues: Vec<String>,
        labels: BTreeMap<String, String>,
        ttl: Duration,
    ) -> DirectSource {
        DirectSource {
            broker,
            blobs,
            worker_id,
            queues,
            labels: std::sync::Mutex::new(labels),
            ttl,
        }
    }

    fn lease_request(&self, max: usize) -> LeaseRequest {
        LeaseRequest {
            worker_id: self.worker_id.clone(),
            queues: self.queues.clone(),
            labels: crate::lock(&self.labels).clone(),
            max,
            ttl: self.ttl,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(e.to_string())
}

fn blob_error(e: antcode_core::blob::BlobError) -> SourceError {
    match e {
        antcode_core::blob::BlobError::NotFound(k) => SourceError::NotFound(k),
        other => SourceError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl WorkSource for DirectSource {
    fn route_by(&self, labels: &BTreeMap<String, String>) {
        let mut mine = crate::lock(&self.labels);
        // Its name stays what pins it, whatever a label says.
        let runner = mine.get(routing::RUNNER_LABEL).cloned();
        mine.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(name) = runner {
            mine.insert(routing::RUNNER_LABEL.into(), name);
        }
    }

    async fn lease(&self, max: usize, wait: Duration) -> Result<Vec<Lease>, SourceError> {
        self.broker
            .lease(&self.lease_request(max), wait)
            .await
            .map_err(unavailable)
    }

    /// One broker call for both (on Redis, one script run).
    async fn release_and_lease(
        &self,
        done: &[HeldLease],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Lease>, SourceError> {
        self.broker
            .release_and_lease(done, &self.lease_request(max), wait)
            .await
            .map_err(unavailable)
    }

    async fn heartbeat(
        &self,
        held: &[HeldLease],
        status: &WorkerStatus,
        interval: Duration,
    ) -> Result<HeartbeatReply, SourceError> {
        let reply = self
            .broker
            .heartbeat(&self.worker_id, held, self.ttl)
            .await
            .map_err(unavailable)?;
        self.broker
            .put_worker(status, interval * 3)
            .await
            .map_err(unavailable)?;
        Ok(reply)
    }

    async fn cancels_for(&self, run_ids: &[String]) -> Result<Vec<String>, SourceError> {
        self.broker.cancels_for(run_ids).await.map_err(unavailable)
    }

    async fn report(&self, event: &RunEvent) -> Result<(), SourceError> {
        self.broker.publish_event(event).await.map_err(unavailable)
    }

    async fn push_logs(&self, run_id: &str, chunks: &[LogChunk]) -> Result<(), SourceError> {
        self.broker
            .append_log(run_id, chunks)
            .await
            .map_err(unavailable)
    }

    async fn fetch_bundle(&self, bundle: &BundleRef) -> Result<Bytes, SourceError> {
        self.blobs.get(&bundle.key).await.map_err(blob_error)
    }

    async fn open_bundle(&self, bundle: &BundleRef) -> Result<BlobReader, SourceError> {
        self.blobs.get_stream(&bundle.key).await.map_err(blob_error)
    }

    async fn put_log_archive(
        &self,
        run_id: &str,
        attempt: u32,
        gz: Bytes,
    ) -> Result<String, SourceError> {
        let key = log_key(run_id, attempt);
        self.blobs.put(&key, gz).await.map_err(blob_error)?;
        Ok(key)
    }

    async fn put_log_archive_file(
        &self,
        run_id: &str,
        attempt: u32,
        gz: &Path,
    ) -> Result<String, SourceError> {
        let key = log_key(run_id, attempt);
        self.blobs.put_file(&key, gz).await.map_err(blob_error)?;
        Ok(key)
    }

    async fn release(&self, run_id: &str, lease_token: &str) -> Result<(), SourceError> {
        self.broker
            .release(run_id, lease_token)
            .await
            .map_err(unavailable)
    }

    async fn hand_back(&self, run_id: &str, lease_token: &str) -> Result<(), SourceError> {
        self.broker
            .hand_back(run_id, lease_token)
            .await
            .map_err(unavailable)
    }
}
