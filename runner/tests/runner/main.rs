//! The runner driven through its public API, on the real embedded seams (in-process broker,
//! local blob directory) with real Python under real uv.

use antcode_testkit::fixtures::{job, zip_of};
use antcode_testkit::procs::{marked, process_gone};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode_core::blob::local::LocalBlobStore;
use antcode_core::blob::{bundle_key, BlobStore};
use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::prelude::*;
use antcode_core::broker::PROGRESS_STREAM;
use antcode_core::model::{
    BundleFormat, BundleRef, Job, Outcome, RunEvent, RunEventKind, RunState,
    INTERRUPTED_BY_SHUTDOWN,
};
use antcode_core::Shutdown;
use antcode_runner::{run, RunnerConfig, RunnerError};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// Upper bound for anything we wait for, so a broken runner fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(120);

struct Harness {
    broker: Arc<MemoryBroker>,
    blobs: Arc<LocalBlobStore>,
    data_dir: PathBuf,
    dir: tempfile::TempDir,
    shutdown: Shutdown,
    runner: Option<JoinHandle<Result<(), RunnerError>>>,
    events: HashMap<String, Vec<RunEvent>>,
    /// Runs start warm: checked on stop, so a silent fallback to cold cannot pass a warm test.
    warm: bool,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// How runs start: a fresh interpreter each (cold), or forked from the project's zygote (warm,
/// here through the runner's warm-queue policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cold,
    Warm,
}

impl Mode {
    /// Both modes run in the sandbox (on by default).
    fn apply(self, c: &mut RunnerConfig) {
        if self == Mode::Warm {
            c.warm.queues = vec!["default".into()];
        }
    }
}

/// Runs `async fn $name(mode: Mode)` as two tests, `$name::cold` and `$name::warm`: every
/// isolation guarantee must hold for both ways of starting a run.
macro_rules! cold_and_warm {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cold() {
                super::$name(super::Mode::Cold).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn warm() {
                super::$name(super::Mode::Warm).await
            }
        }
    };
}

impl Harness {
    async fn start(slots: usize) -> Harness {
        Self::start_with(slots, |_| {}).await
    }

    async fn start_in(mode: Mode, slots: usize) -> Harness {
        Self::start_with(slots, |c| mode.apply(c)).await
    }

    async fn start_with(slots: usize, tweak: impl FnOnce(&mut RunnerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(MemoryBroker::new());
        let blobs = Arc::new(LocalBlobStore::new(dir.path().join("blobs")).unwrap());
        let data_dir = dir.path().join("data");
        let mut config = RunnerConfig::new(broker.clone(), blobs.clone(), data_dir.clone());
        config.slots = slots;
        config.kill_grace = Duration::from_secs(1);
        config.grace = Duration::from_secs(1);
        config.heartbeat_interval = Duration::from_millis(300);
        config.lease_ttl = Duration::from_secs(5);
        tweak(&mut config);
        // The process's metrics registry, read back by `stop`.
        antcode_core::telemetry::prometheus();
        let warm = !config.warm.queues.is_empty();
        let shutdown = Shutdown::new();
        let runner = tokio::spawn(run(config, shutdown.clone()));
        Harness {
            broker,
            blobs,
            data_dir,
            dir,
            shutdown,
            runner: Some(runner),
            events: HashMap::new(),
            warm,
        }
    }

    async fn put_bundle(
        &self,
        format: BundleFormat,
        data: Vec<u8>,
        file_name: Option<&str>,
    ) -> BundleRef {
        let sha = sha256_hex(&data);
        let key = bundle_key(&sha, format.as_str());
        let size = data.len() as i64;
        self.blobs.put(&key, data.into()).await.unwrap();
        BundleRef {
            key,
            sha256: sha,
            format,
            size_bytes: size,
            file_name: file_name.map(str::to_string),
        }
    }

    /// A single-file project running `code`.
    async fn py_job(&self, code: &str) -> Job {
        let bundle = self
            .put_bundle(BundleFormat::Py, code.as_bytes().to_vec(), Some("main.py"))
            .await;
        job(bundle, "main.py")
    }

    async fn publish(&self, job: &Job) {
        assert!(self.broker.publish(job).await.unwrap());
    }

    /// Reads events until `run_id` has finished; returns its outcome.
    async fn finished(&mut self, run_id: &str) -> Outcome {
        match self.ended(run_id).await {
            RunEventKind::Finished(o) => o,
            other => panic!("run {run_id} did not finish: {other:?}"),
        }
    }

    /// Reads events until `run_id` has finished or was interrupted; returns that event.
    async fn ended(&mut self, run_id: &str) -> RunEventKind {
        let until = Instant::now() + PATIENCE;
        loop {
            if let Some(kind) = self.events.get(run_id).and_then(|evs| {
                evs.iter()
                    .map(|e| &e.kind)
                    .find(|k| !matches!(k, RunEventKind::Started))
            }) {
                return kind.clone();
            }
            assert!(Instant::now() < until, "run {run_id} did not finish");
            self.pump_events(Duration::from_secs(1)).await;
        }
    }

    async fn pump_events(&mut self, wait: Duration) {
        let got = self
            .broker
            .read_events("test", "t", 10, wait)
            .await
            .unwrap();
        let ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
        for (_, ev) in got {
            self.events.entry(ev.run_id.clone()).or_default().push(ev);
        }
        self.broker.ack_events("test", &ids).await.unwrap();
    }

    /// Waits until the live log of `run_id` contains `needle`.
    async fn wait_for_log(&self, run_id: &str, needle: &str) {
        let until = Instant::now() + PATIENCE;
        let mut text = String::new();
        let mut after = 0;
        while !text.contains(needle) {
            assert!(
                Instant::now() < until,
                "log of {run_id} never showed {needle:?}: {text:?}"
            );
            for c in self
                .broker
                .read_log(run_id, after, Duration::from_millis(500))
                .await
                .unwrap()
            {
                after = c.cursor();
                // Progress steps ("environment ready in …") are not the log.
                if c.stream != PROGRESS_STREAM {
                    text.push_str(&c.data);
                }
            }
        }
    }

    async fn live_log(&self, run_id: &str) -> String {
        let chunks = self
            .broker
            .read_log(run_id, 0, Duration::ZERO)
            .await
            .unwrap();
        let mut seqs: Vec<u64> = chunks.iter().map(|c| c.seq).collect();
        seqs.dedup();
        assert_eq!(
            seqs,
            (1..=chunks.len() as u64).collect::<Vec<_>>(),
            "chunks are sequenced 1, 2, 3…"
        );
        chunks
            .iter()
            .filter(|c| c.stream != PROGRESS_STREAM)
            .map(|c| c.data.as_str())
            .collect()
    }

    /// The archived log of an outcome, decompressed.
    async fn archive(&self, outcome: &Outcome) -> Vec<u8> {
        let key = outcome
            .log_key
            .as_deref()
            .expect("outcome has a log archive");
        let gz = self.blobs.get(key).await.unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn venv_builds(&self) -> usize {
        std::fs::read_to_string(
            self.data_dir
                .join("venvs")
                .join(antcode_runner::uv::BUILDS_LOG),
        )
        .map(|s| s.lines().count())
        .unwrap_or(0)
    }

    async fn stop(mut self) {
        if self.warm {
            // Process-wide counters: no test may make a warm run fall back to cold.
            let metrics = antcode_core::telemetry::prometheus().render();
            assert!(
                metrics.contains("antcode_runner_zygote_misses_total")
                    && !metrics.contains("antcode_runner_zygote_fallbacks_total"),
                "a warm run started cold: {metrics}"
            );
        }
        self.shutdown.cancel();
        if let Some(r) = self.runner.take() {
            tokio::time::timeout(PATIENCE, r)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

async fn wait_gone(pid: i32) {
    let until = Instant::now() + Duration::from_secs(30);
    while !process_gone(pid) {
        assert!(Instant::now() < until, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `async fn $name(warm: bool)` as two tests, `$name::cold` and `$name::warm`, both with
/// the sandbox on (a warm run forks from its project's sandboxed zygote).
macro_rules! sandboxed {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cold() {
                super::$name(false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn warm() {
                super::$name(true).await
            }
        }
    };
}

async fn sandboxed_harness(warm: bool) -> Harness {
    Harness::start_with(2, |c| {
        if warm {
            c.warm.queues = vec!["default".into()];
        }
    })
    .await
}

/// Every attempt of `PROBE` (a name and "ok …" or "refused <error>"), as the task printed it.
async fn attempts(h: &mut Harness, job: &Job) -> serde_json::Map<String, serde_json::Value> {
    h.publish(job).await;
    let outcome = h.finished(&job.run_id).await;
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
    outcome
        .result
        .as_ref()
        .and_then(|r| r.as_object())
        .cloned()
        .expect(&log)
}

/// What a hostile task tries; each attempt is recorded, none stops the script.
const PROBE: &str = r#"
import json, os, signal, sys
got = {}
def attempt(name, f):
    try:
        got[name] = "ok " + repr(f())[:300]
    except Exception as e:
        got[name] = "refused " + type(e).__name__
def read(path):
    with open(path, "rb") as f:
        return f.read(4096)
def write(path):
    with open(path, "ab") as f:
        f.write(b"print('injected')\n")
"#;

/// The first number after `word ` on a line of `log`.
fn number_after(log: &str, word: &str) -> Vec<i32> {
    let line = log
        .lines()
        .find(|l| l.starts_with(&format!("{word} ")))
        .unwrap_or_else(|| panic!("no {word:?} line in {log:?}"));
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The number after `word ` on a line of `log` that starts with it.
fn first_number_after(log: &str, word: &str) -> u64 {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("{word} ")))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {word:?} line in {log:?}"))
}

mod isolation;
mod lifecycle;
mod limits;
mod venvs;
mod warm;
