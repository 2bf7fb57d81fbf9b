//! A reported lease is released with the runner's next lease call, or on its own within the carry
//! window when no call comes, and never left behind on shutdown (in-process broker, real
//! direct source).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use antcode_core::broker::{memory::MemoryBroker, prelude::*, HeartbeatReply, HeldLease, LogChunk};
use antcode_core::model::{BundleFormat, BundleRef, Job, Lease, RunEvent, WorkerStatus};
use antcode_runner::releases::{release_loop, Releases};
use antcode_runner::source::{DirectSource, SourceError, WorkSource};
use tokio_util::sync::CancellationToken;

fn job(run_id: &str) -> Job {
    let bundle = BundleRef {
        key: "bundles/none".into(),
        sha256: "0".repeat(64),
        format: BundleFormat::Py,
        size_bytes: 0,
        file_name: Some("main.py".into()),
    };
    Job {
        prefer: None,
        run_id: run_id.into(),
        ..antcode_testkit::fixtures::job(bundle, "main.py")
    }
}

struct Setup {
    broker: Arc<MemoryBroker>,
    source: Arc<dyn WorkSource>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(MemoryBroker::new());
    let blobs = antcode_core::seams::open_blobs(&dir.path().display().to_string())
        .await
        .unwrap();
    let source = Arc::new(DirectSource::new(
        broker.clone(),
        blobs,
        "w1".into(),
        vec!["default".into()],
        Default::default(),
        Duration::from_secs(30),
    ));
    Setup {
        broker,
        source,
        _dir: dir,
    }
}

impl Setup {
    async fn leased(&self, run_id: &str) -> Lease {
        self.broker.publish(&job(run_id)).await.unwrap();
        let mut got = self.source.lease(1, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 1, "the published job is leased");
        got.remove(0)
    }

    async fn alive(&self, lease: &Lease) -> bool {
        self.broker
            .lease_alive(&lease.job.run_id, &lease.lease_token)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_next_lease_call_carries_the_release() {
    let s = setup().await;
    let releases = Releases::default();
    let first = s.leased("run-1").await;
    releases.add(&first.job.run_id, &first.lease_token);
    s.broker.publish(&job("run-2")).await.unwrap();

    let done = releases.take();
    assert_eq!(done.len(), 1);
    let next = s
        .source
        .release_and_lease(&done, 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job.run_id, "run-2");
    assert!(!s.alive(&first).await, "released by the lease call");
    assert!(s.alive(&next[0]).await);
    assert!(releases.take().is_empty(), "nothing left queued");
}

#[tokio::test]
async fn without_a_lease_call_the_release_goes_out_on_its_own() {
    let s = setup().await;
    let releases = Arc::new(Releases::default());
    let stop = CancellationToken::new();
    let looping = tokio::spawn(release_loop(
        releases.clone(),
        s.source.clone(),
        stop.clone(),
    ));
    let lease = s.leased("run-1").await;
    releases.add(&lease.job.run_id, &lease.lease_token);
    let until = Instant::now() + Duration::from_secs(10);
    while s.alive(&lease).await {
        assert!(Instant::now() < until, "the release never went out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    looping.await.unwrap();
}

#[tokio::test]
async fn stopping_releases_what_is_still_queued() {
    let s = setup().await;
    let releases = Arc::new(Releases::default());
    let lease = s.leased("run-1").await;
    // Queued as a failed lease call would put it back, with the loop already stopped.
    releases.put_back(vec![HeldLease {
        run_id: lease.job.run_id.clone(),
        lease_token: lease.lease_token.clone(),
    }]);
    let stop = CancellationToken::new();
    stop.cancel();
    release_loop(releases.clone(), s.source.clone(), stop).await;
    assert!(!s.alive(&lease).await, "released on the way out");
    assert!(releases.take().is_empty());
}

/// The direct source with its first `failures` releases refused as if the broker were away.
struct FlakyReleases {
    inner: Arc<dyn WorkSource>,
    failures: AtomicUsize,
}

#[async_trait]
impl WorkSource for FlakyReleases {
    async fn lease(&self, max: usize, wait: Duration) -> Result<Vec<Lease>, SourceError> {
        self.inner.lease(max, wait).await
    }
    async fn heartbeat(
        &self,
        held: &[HeldLease],
        status: &WorkerStatus,
        interval: Duration,
    ) -> Result<HeartbeatReply, SourceError> {
        self.inner.heartbeat(held, status, interval).await
    }
    async fn cancels_for(&self, run_ids: &[String]) -> Result<Vec<String>, SourceError> {
        self.inner.cancels_for(run_ids).await
    }
    async fn report(&self, event: &RunEvent) -> Result<(), SourceError> {
        self.inner.report(event).await
    }
    async fn push_logs(&self, run_id: &str, chunks: &[LogChunk]) -> Result<(), SourceError> {
        self.inner.push_logs(run_id, chunks).await
    }
    async fn fetch_bundle(&self, bundle: &BundleRef) -> Result<Bytes, SourceError> {
        self.inner.fetch_bundle(bundle).await
    }
    async fn put_log_archive(
        &self,
        run_id: &str,
        attempt: u32,
        gz: Bytes,
    ) -> Result<String, SourceError> {
        self.inner.put_log_archive(run_id, attempt, gz).await
    }
    async fn release(&self, run_id: &str, lease_token: &str) -> Result<(), SourceError> {
        let refuse = self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Err(SourceError::Unavailable("broker away (test)".into()));
        }
        self.inner.release(run_id, lease_token).await
    }
    async fn hand_back(&self, run_id: &str, lease_token: &str) -> Result<(), SourceError> {
        self.inner.hand_back(run_id, lease_token).await
    }
}

#[tokio::test]
async fn a_release_the_broker_refused_is_retried_until_it_lands() {
    let s = setup().await;
    let flaky: Arc<dyn WorkSource> = Arc::new(FlakyReleases {
        inner: s.source.clone(),
        failures: AtomicUsize::new(3),
    });
    let releases = Arc::new(Releases::default());
    let stop = CancellationToken::new();
    let looping = tokio::spawn(release_loop(releases.clone(), flaky, stop.clone()));
    let lease = s.leased("run-1").await;
    releases.add(&lease.job.run_id, &lease.lease_token);
    let until = Instant::now() + Duration::from_secs(20);
    while s.alive(&lease).await {
        assert!(Instant::now() < until, "the refused release was dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(releases.take().is_empty());
    stop.cancel();
    looping.await.unwrap();
}
