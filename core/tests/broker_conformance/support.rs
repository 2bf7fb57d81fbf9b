//! The broker under test on each implementation, and the fixtures every module of the suite
//! shares.

use super::*;

pub use antcode_testkit::redis::{redis_base, REDIS_ENV};

/// Short enough for the events test to wait it out, long enough that a fast re-read does not
/// see a redelivery.
pub const REDELIVERY: Duration = Duration::from_millis(800);

pub const TTL: Duration = Duration::from_secs(30);

/// The broker under test, a second handle on the same broker (a second connection for Redis,
/// the same object in process) and what to clean up.
pub struct Subject {
    pub broker: Arc<dyn Broker>,
    pub twin: Arc<dyn Broker>,
    pub redis: Option<(String, String)>,
}

impl Subject {
    pub fn memory() -> Subject {
        let b: Arc<dyn Broker> = Arc::new(MemoryBroker::with_event_redelivery(REDELIVERY));
        Subject {
            broker: b.clone(),
            twin: b,
            redis: None,
        }
    }

    pub async fn redis() -> Subject {
        let url = redis_base();
        let prefix = format!("antcode-test-{}", uuid::Uuid::new_v4().simple());
        let open = || async {
            RedisBroker::connect(&url, &prefix)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "Redis is not reachable at {url} (set {REDIS_ENV} to point elsewhere): {e}"
                    )
                })
                .with_event_redelivery(REDELIVERY)
        };
        let broker: Arc<dyn Broker> = Arc::new(open().await);
        let twin: Arc<dyn Broker> = Arc::new(open().await);
        Subject {
            broker,
            twin,
            redis: Some((url, prefix)),
        }
    }
}

impl Drop for Subject {
    /// Best-effort removal of the test's keys, on a plain blocking connection (no runtime needed).
    fn drop(&mut self) {
        let Some((url, prefix)) = self.redis.take() else {
            return;
        };
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = match redis::cmd("KEYS")
            .arg(format!("{{{prefix}}}:*"))
            .query(&mut con)
        {
            Ok(k) => k,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

pub fn job(run_id: &str, queue: &str) -> Job {
    Job {
        trace: None,
        prefer: None,
        run_id: run_id.to_string(),
        attempt: 1,
        queue: queue.to_string(),
        task_id: format!("task-{run_id}"),
        project_id: "proj-1".into(),
        // Large integers must survive the broker unchanged (Lua numbers are doubles).
        project_version: (1_i64 << 60) + 7,
        bundle: BundleRef {
            key: "bundles/ab/abcdef".into(),
            sha256: "ab".repeat(32),
            format: BundleFormat::Zip,
            size_bytes: 9_007_199_254_740_993,
            file_name: None,
        },
        entrypoint: "main.py".into(),
        requirements: "requests==2.32.3\n".into(),
        // Routed like a label (see `queues::labelled_jobs_go_only_to_runners_that_match`).
        python_version: None,
        args: vec!["--name".into(), "héllo \"wörld\" {x}".into()],
        env: BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]),
        timeout_s: 3600,
        secrets: vec![],
        secret_env: Default::default(),
        warm: false,
        limits: Default::default(),
        network: Default::default(),
        // Not empty, so a broker that dropped them would show.
        params: Some(serde_json::json!({"city": "Zürich", "days": 3})),
        labels: BTreeMap::new(),
        gates: BTreeMap::new(),
    }
}

/// A job of `queue` that only a runner labelled with all of `labels` may take.
pub fn routed_job(run_id: &str, queue: &str, labels: &[(&str, &str)]) -> Job {
    let mut j = job(run_id, queue);
    j.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    j
}

/// [`req`] for a runner labelled `labels` too.
pub fn labelled(worker: &str, queues: &[&str], labels: &[(&str, &str)]) -> LeaseRequest {
    let mut r = req(worker, queues, 10, TTL);
    r.labels
        .extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    r
}

pub fn run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn req(worker: &str, queues: &[&str], max: usize, ttl: Duration) -> LeaseRequest {
    LeaseRequest {
        worker_id: worker.to_string(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        labels: BTreeMap::new(),
        max,
        ttl,
    }
}

pub fn held(l: &antcode_core::model::Lease) -> HeldLease {
    HeldLease {
        run_id: l.job.run_id.clone(),
        lease_token: l.lease_token.clone(),
    }
}

pub fn event(run: &str, n: u32) -> RunEvent {
    RunEvent {
        trace: None,
        run_id: run.to_string(),
        attempt: n,
        lease_token: format!("lt_{n}"),
        worker_id: "w1".into(),
        at_ms: 1_700_000_000_000 + n as i64,
        kind: if n.is_multiple_of(2) {
            RunEventKind::Started
        } else {
            RunEventKind::Finished(Outcome {
                state: RunState::Succeeded,
                exit_code: Some(0),
                signal: None,
                error: None,
                duration_ms: 12,
                peak_rss_kb: Some(2048),
                log_key: Some("logs/x".into()),
                result: Some(serde_json::json!({"ok": true})),
            })
        },
    }
}

pub fn chunk(attempt: u32, seq: u64) -> LogChunk {
    LogChunk {
        attempt,
        seq,
        stream: if seq.is_multiple_of(2) {
            "stderr"
        } else {
            "stdout"
        }
        .into(),
        data: format!("line {seq} of attempt {attempt} ✓\n"),
        at_ms: 1_700_000_000_000 + seq as i64,
    }
}

pub fn worker(id: &str) -> WorkerStatus {
    WorkerStatus {
        id: id.to_string(),
        name: format!("name-{id}"),
        mode: "direct".into(),
        queues: vec!["default".into()],
        labels: BTreeMap::from([("gpu".to_string(), "no".to_string())]),
        slots: 4,
        running: 1,
        cpu_percent: 12.5,
        memory_percent: 40.0,
        disk_percent: 3.0,
        version: "0.1.0".into(),
        draining: false,
        held_leases: vec![],
        last_seen_ms: now_ms(),
    }
}

pub async fn depth(b: &dyn Broker, queue: &str) -> u64 {
    b.queue_depths()
        .await
        .expect("queue_depths")
        .into_iter()
        .find(|(q, _)| q == queue)
        .map(|(_, n)| n)
        .unwrap_or(0)
}
