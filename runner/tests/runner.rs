//! The runner driven through its public API, on the real embedded seams (in-process broker,
//! local blob directory) with real Python under real uv.

mod support;
use support::job;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode_core::blob::local::LocalBlobStore;
use antcode_core::blob::{bundle_key, BlobStore};
use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::prelude::*;
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

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
    }
    buf.into_inner()
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
                text.push_str(&c.data);
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
        chunks.iter().map(|c| c.data.as_str()).collect()
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

/// True once `pid` no longer runs (gone, or a zombie nobody has reaped yet).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// The host pids of the processes carrying `run_id`'s marker in their environment (a task in
/// its own PID namespace knows only its pids there).
fn marked(run_id: &str) -> Vec<i32> {
    let marker = format!("ANTCODE_RUN_ID={run_id}");
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ.split(|&b| b == 0).any(|v| v == marker.as_bytes()) && !process_gone(pid) {
            pids.push(pid);
        }
    }
    pids
}

async fn wait_gone(pid: i32) {
    let until = Instant::now() + Duration::from_secs(30);
    while !process_gone(pid) {
        assert!(Instant::now() < until, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

cold_and_warm!(success_is_archived_with_live_log_and_result);
async fn success_is_archived_with_live_log_and_result(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import sys
print("hello from antcode")
print("to stderr", file=sys.stderr)
print(" ".join(sys.argv[1:]))
print('{"answer": 42}')
"#;
    let mut job = h.py_job(code).await;
    job.args = vec!["a b".into(), "c".into()];
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.result, Some(serde_json::json!({"answer": 42})));
    assert!(outcome.peak_rss_kb.unwrap_or(0) > 0, "{outcome:?}");
    let started = &h.events[&job.run_id][0];
    assert!(
        matches!(started.kind, RunEventKind::Started),
        "Started comes first"
    );
    assert_eq!(started.attempt, 1);
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("hello from antcode\n"), "{archive}");
    assert!(archive.contains("to stderr\n"), "{archive}");
    // argv, not a shell: "a b" stays one argument.
    assert!(archive.contains("a b c\n"), "{archive}");
    assert_eq!(
        h.live_log(&job.run_id).await,
        archive,
        "live log and archive agree"
    );
    // Right after the report, the lease is released and the work dir removed.
    let until = Instant::now() + PATIENCE;
    loop {
        let work: Vec<_> = std::fs::read_dir(h.data_dir.join("work"))
            .unwrap()
            .collect();
        let alive = h
            .broker
            .lease_alive(&job.run_id, &started.lease_token)
            .await
            .unwrap();
        if work.is_empty() && !alive {
            break;
        }
        assert!(Instant::now() < until, "work dir left behind: {work:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

cold_and_warm!(requirements_are_installed_once_and_reused);
async fn requirements_are_installed_once_and_reused(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let main = b"import six\nprint('six', six.__version__)\n";
    let bundle = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[("main.py", main), ("requirements.txt", b"six\n")]),
            None,
        )
        .await;
    // Control copies requirements.txt into the job; the runner also finds it in the bundle.
    let mut first = job(bundle.clone(), "main.py");
    first.requirements = "six\n".into();
    h.publish(&first).await;
    let outcome = h.finished(&first.run_id).await;
    assert_eq!(
        outcome.state,
        RunState::Succeeded,
        "{outcome:?} {}",
        String::from_utf8_lossy(&h.archive(&outcome).await)
    );
    assert!(String::from_utf8(h.archive(&outcome).await)
        .unwrap()
        .contains("six 1."));
    assert_eq!(h.venv_builds(), 1);

    // A second run of the same project reuses the environment: nothing rebuilt or reinstalled.
    let mut second = job(bundle.clone(), "main.py");
    second.requirements = "# same thing\nsix\n".into();
    h.publish(&second).await;
    let outcome = h.finished(&second.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(h.venv_builds(), 1, "the second run built a new venv");

    // Requirements only in the bundle are honoured too (same set, so the same environment).
    let third = job(bundle, "main.py");
    h.publish(&third).await;
    let outcome = h.finished(&third.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(h.venv_builds(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_of_one_project_build_one_venv() {
    let mut h = Harness::start(3).await;
    let bundle = h
        .put_bundle(
            BundleFormat::Py,
            b"import six\nprint('ok')\n".to_vec(),
            Some("main.py"),
        )
        .await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let mut j = job(bundle.clone(), "main.py");
        j.requirements = "six".into();
        h.publish(&j).await;
        jobs.push(j);
    }
    for j in &jobs {
        let outcome = h.finished(&j.run_id).await;
        assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    }
    assert_eq!(h.venv_builds(), 1);
    h.stop().await;
}

cold_and_warm!(non_zero_exit_fails_with_its_code);
async fn non_zero_exit_fails_with_its_code(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let job = h.py_job("import sys\nprint('bye')\nsys.exit(3)\n").await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.signal, None);

    let job = h
        .py_job("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
        .await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert_eq!(outcome.signal, Some(9), "{outcome:?}");
    h.stop().await;
}

cold_and_warm!(timeout_kills_the_whole_process_group);
async fn timeout_kills_the_whole_process_group(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import os, sys, time
if os.fork() == 0:
    # the grandchild: ignores nothing, just outlives its parent unless the group is killed
    print("grandchild started", flush=True)
    time.sleep(300)
    os._exit(0)
print("parent sleeping", flush=True)
time.sleep(300)
"#;
    let mut job = h.py_job(code).await;
    job.timeout_s = 2;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "grandchild started").await;
    let pids = marked(&job.run_id);
    assert!(pids.len() >= 2, "parent and grandchild: {pids:?}");
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::TimedOut, "{outcome:?}");
    for pid in pids {
        wait_gone(pid).await;
    }
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("parent sleeping"), "{archive}");
    assert!(archive.contains("timed out"), "{archive}");
    h.stop().await;
}

cold_and_warm!(cancel_stops_a_running_task);
async fn cancel_stops_a_running_task(mode: Mode) {
    let mut h = Harness::start_with(2, |c| {
        mode.apply(c);
        c.kill_grace = Duration::from_secs(30);
    })
    .await;
    // SIGTERM ends a sleeping Python at once; the long grace proves we do not wait it out.
    let job = h
        .py_job("import time\nprint('ready', flush=True)\ntime.sleep(300)\n")
        .await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "ready").await;
    h.broker.cancel(&job.run_id).await.unwrap();
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Cancelled, "{outcome:?}");
    assert_eq!(outcome.signal, Some(15), "{outcome:?}");
    h.stop().await;
}

cold_and_warm!(the_runner_environment_is_invisible_to_the_task);
async fn the_runner_environment_is_invisible_to_the_task(mode: Mode) {
    let name = format!("ANTCODE_RUNNER_TEST_SECRET_{}", std::process::id());
    std::env::set_var(&name, "leaked");
    let mut h = Harness::start_in(mode, 2).await;
    let code = "import os, json, sys\nprint(json.dumps({'env': dict(os.environ)}))\n";
    let mut job = h.py_job(code).await;
    job.env.insert("TASK_VAR".into(), "mine".into());
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let env = outcome.result.as_ref().unwrap()["env"]
        .as_object()
        .unwrap()
        .clone();
    assert!(!env.contains_key(&name), "runner env leaked: {env:?}");
    assert_eq!(env["TASK_VAR"], "mine");
    assert_eq!(env["PYTHONUNBUFFERED"], "1");
    assert!(env["VIRTUAL_ENV"].as_str().unwrap().contains("venvs"));
    for k in env.keys() {
        let base = [
            "PATH",
            "HOME",
            "LANG",
            "VIRTUAL_ENV",
            "PYTHONUNBUFFERED",
            "TMPDIR",
            "TASK_VAR",
            "ANTCODE_RUN_ID",
            "ANTCODE_ATTEMPT",
        ];
        // Python itself may add LC_CTYPE when it coerces the locale.
        assert!(
            base.contains(&k.as_str()) || k == "LC_CTYPE",
            "unexpected variable {k}"
        );
    }
    h.stop().await;
}

cold_and_warm!(invalid_utf8_and_missing_newlines_are_kept);
async fn invalid_utf8_and_missing_newlines_are_kept(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import sys
sys.stdout.buffer.write(b"bad \xff\xfe bytes\n")
sys.stdout.buffer.write(b"x" * 100000)
sys.stdout.buffer.write(b"\nno newline at the end")
"#;
    let job = h.py_job(code).await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let mut raw = b"bad \xff\xfe bytes\n".to_vec();
    raw.extend(std::iter::repeat_n(b'x', 100000));
    raw.extend(b"\nno newline at the end");
    let expected = String::from_utf8_lossy(&raw).into_owned();
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(
        archive == expected,
        "archive differs: {} vs {} bytes",
        archive.len(),
        expected.len()
    );
    let live = h.live_log(&job.run_id).await;
    assert!(
        live == expected,
        "live log differs: {} vs {} bytes",
        live.len(),
        expected.len()
    );
    h.stop().await;
}

cold_and_warm!(large_output_is_captured_byte_exact);
async fn large_output_is_captured_byte_exact(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // 200,000 lines of 100 bytes: 20 MB.
    let code = r#"
import sys
w = sys.stdout.write
pad = "abcdefghij" * 9
for i in range(200000):
    w("%08d %s\n" % (i, pad))
"#;
    let job = h.py_job(code).await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let mut expected = Sha256::new();
    let pad = "abcdefghij".repeat(9);
    for i in 0..200_000 {
        expected.update(format!("{i:08} {pad}\n").as_bytes());
    }
    let archive = h.archive(&outcome).await;
    assert_eq!(archive.len(), 20_000_000);
    assert_eq!(sha256_hex(&archive), hex::encode(expected.finalize()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_fail_with_one_line() {
    let mut h = Harness::start(2).await;
    let slip = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[("main.py", b"print(1)\n"), ("../evil.py", b"x")]),
            None,
        )
        .await;
    let job1 = job(slip, "main.py");
    h.publish(&job1).await;
    let outcome = h.finished(&job1.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    let err = outcome.error.unwrap();
    assert!(err.contains("unsafe") && !err.contains('\n'), "{err}");
    assert!(!h.data_dir.join("work/evil.py").exists());

    let mut tampered = h.py_job("print(1)\n").await.bundle;
    tampered.sha256 = sha256_hex(b"something else");
    let job2 = job(tampered, "main.py");
    h.publish(&job2).await;
    let outcome = h.finished(&job2.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert!(outcome.error.unwrap().contains("checksum"));

    let mut missing = h.py_job("print(1)\n").await;
    missing.entrypoint = "nope.py".into();
    h.publish(&missing).await;
    let outcome = h.finished(&missing.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert!(outcome.error.unwrap().contains("nope.py"));
    h.stop().await;
}

cold_and_warm!(a_second_stop_hands_unfinished_runs_back);
async fn a_second_stop_hands_unfinished_runs_back(mode: Mode) {
    let hurry = Shutdown::new();
    let mut h = Harness::start_with(2, |c| {
        mode.apply(c);
        c.grace = Duration::from_secs(60);
        c.hurry = hurry.clone();
    })
    .await;
    let job = h
        .py_job("import time\nprint('ready', flush=True)\ntime.sleep(300)\n")
        .await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "ready").await;
    h.shutdown.cancel();
    // The second stop request ends the 60 s grace period at once.
    hurry.cancel();
    let runner = h.runner.take().unwrap();
    tokio::time::timeout(Duration::from_secs(20), runner)
        .await
        .expect("the runner stops well within its grace period")
        .unwrap()
        .unwrap();
    let RunEventKind::Interrupted(outcome) = h.ended(&job.run_id).await else {
        panic!("the run was not handed back");
    };
    assert_eq!(
        outcome.error.as_deref(),
        Some(INTERRUPTED_BY_SHUTDOWN),
        "{outcome:?}"
    );
    assert_eq!(outcome.signal, Some(15), "{outcome:?}");
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("ready"), "{archive}");
    assert!(archive.contains(INTERRUPTED_BY_SHUTDOWN), "{archive}");
}

cold_and_warm!(a_reclaimed_lease_stops_the_process_without_a_report);
async fn a_reclaimed_lease_stops_the_process_without_a_report(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = "import time\nprint('ready', flush=True)\ntime.sleep(300)\n";
    let job = h.py_job(code).await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "ready").await;
    let pids = marked(&job.run_id);
    assert!(!pids.is_empty());
    // The scheduler's reaper takes the lease away (as if heartbeats had stopped).
    let reclaimed = h.broker.reap_expired(i64::MAX).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    for pid in pids {
        wait_gone(pid).await;
    }
    // Give a wrong report every chance to show up.
    h.pump_events(Duration::from_secs(2)).await;
    let events = &h.events[&job.run_id];
    assert!(
        events
            .iter()
            .all(|e| matches!(e.kind, RunEventKind::Started)),
        "a reclaimed attempt reported: {events:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_python_version_fails_clearly() {
    let mut h = Harness::start(2).await;
    let mut job = h.py_job("print(1)\n").await;
    job.python_version = Some("3.99".into());
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.contains("python 3.99 is not available") && !err.contains('\n'),
        "{err}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_leasing_until_cleared() {
    let mut worker_id = String::new();
    let mut h = Harness::start_with(2, |c| worker_id = c.worker_id.clone()).await;
    h.broker.set_drain(&worker_id, true).await.unwrap();
    // The runner says it is draining once a heartbeat carried the flag to it.
    let until = Instant::now() + PATIENCE;
    loop {
        let workers = h.broker.workers().await.unwrap();
        if workers.iter().any(|w| w.id == worker_id && w.draining) {
            break;
        }
        assert!(Instant::now() < until, "worker never reported draining");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = h.py_job("print('after drain')\n").await;
    h.publish(&job).await;
    // Several heartbeats later the job is still waiting in its queue (a lease that was already
    // parked when the flag arrived hands it straight back).
    let seen = h.broker.workers().await.unwrap()[0].last_seen_ms;
    let until = Instant::now() + PATIENCE;
    while h.broker.workers().await.unwrap()[0].last_seen_ms < seen + 1000 {
        assert!(Instant::now() < until, "heartbeats stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let depths = h.broker.queue_depths().await.unwrap();
    assert_eq!(
        depths,
        vec![("default".to_string(), 1)],
        "a draining runner took work"
    );
    h.broker.set_drain(&worker_id, false).await.unwrap();
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    h.stop().await;
}

cold_and_warm!(resource_limits_stop_runaway_tasks);
async fn resource_limits_stop_runaway_tasks(mode: Mode) {
    // The runner's own policy: 64 open files. Tasks tighten memory and CPU through their env.
    let mut h = Harness::start_with(2, |c| {
        mode.apply(c);
        c.limits.open_files = Some(64);
    })
    .await;
    let files = r#"
import sys
held = []
try:
    for i in range(200):
        held.append(open(sys.argv[0]))
except OSError as e:
    print("opened", len(held), "then", e.errno, flush=True)
    sys.exit(7)
print("opened all 200")
"#;
    let job_files = h.py_job(files).await;
    h.publish(&job_files).await;

    let memory = r#"
import sys
try:
    block = bytearray(512 * 1024 * 1024)
except MemoryError:
    print("MemoryError", flush=True)
    sys.exit(8)
print("allocated 512 MiB")
"#;
    let mut job_memory = h.py_job(memory).await;
    job_memory
        .env
        .insert("ANTCODE_LIMIT_MEMORY_MB".into(), "256".into());
    h.publish(&job_memory).await;

    // A modest allocation within the same limit still works: the limit is not a blanket failure.
    let mut job_small = h
        .py_job("block = bytearray(32 * 1024 * 1024)\nprint('ok')\n")
        .await;
    job_small
        .env
        .insert("ANTCODE_LIMIT_MEMORY_MB".into(), "256".into());
    h.publish(&job_small).await;

    let mut job_cpu = h.py_job("while True:\n    pass\n").await;
    // Without the limit this would run into its timeout instead.
    job_cpu.timeout_s = 30;
    job_cpu
        .env
        .insert("ANTCODE_LIMIT_CPU_SECONDS".into(), "1".into());
    h.publish(&job_cpu).await;

    // A task cannot loosen the runner's policy: asking for more files changes nothing.
    let mut job_loosen = h.py_job(files).await;
    job_loosen
        .env
        .insert("ANTCODE_LIMIT_OPEN_FILES".into(), "100000".into());
    h.publish(&job_loosen).await;

    let mut job_bad = h.py_job("print(1)\n").await;
    job_bad
        .env
        .insert("ANTCODE_LIMIT_MEMORY_MB".into(), "lots".into());
    h.publish(&job_bad).await;

    for job in [&job_files, &job_loosen] {
        let outcome = h.finished(&job.run_id).await;
        assert_eq!(outcome.exit_code, Some(7), "{outcome:?}");
        let log = String::from_utf8(h.archive(&outcome).await).unwrap();
        // errno 24 is EMFILE: the open-files limit, not something else.
        assert!(log.contains("then 24"), "{log}");
    }
    let outcome = h.finished(&job_memory.run_id).await;
    assert_eq!(outcome.exit_code, Some(8), "{outcome:?}");
    assert!(String::from_utf8(h.archive(&outcome).await)
        .unwrap()
        .contains("MemoryError"));
    let outcome = h.finished(&job_small.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let outcome = h.finished(&job_cpu.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    // SIGXCPU at the soft limit (SIGKILL would follow at the hard one).
    assert!(
        matches!(outcome.signal, Some(24) | Some(9)),
        "killed by the CPU limit: {outcome:?}"
    );
    let outcome = h.finished(&job_bad.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("ANTCODE_LIMIT_MEMORY_MB")),
        "{outcome:?}"
    );
    h.stop().await;
}

/// The `uv.lock` of a project whose pyproject asks for any `six`, locked at 1.16.0 (made with
/// `uv lock`), so an install that ignored the lock would get a newer one.
const SIX_LOCK: &str = r#"version = 1
revision = 5
requires-python = ">=3.8"

[[package]]
name = "demo"
version = "0.1"
source = { virtual = "." }
dependencies = [
    { name = "six" },
]

[package.metadata]
requires-dist = [{ name = "six" }]

[[package]]
name = "six"
version = "1.16.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/71/39/171f1c67cd00715f190ba0b100d606d440a28c93c7714febeca8b79af85e/six-1.16.0.tar.gz", hash = "sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926", size = 34041, upload-time = "2021-05-05T14:18:18.379Z" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/six-1.16.0-py2.py3-none-any.whl", hash = "sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254", size = 11053, upload-time = "2021-05-05T14:18:17.237Z" },
]
"#;

const SIX_PYPROJECT: &str = "[project]\nname = \"demo\"\nversion = \"0.1\"\nrequires-python = \">=3.8\"\ndependencies = [\"six\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyproject_and_uv_lock_provide_the_dependencies() {
    let mut h = Harness::start(2).await;
    let main: &[u8] = b"import six\nprint('six', six.__version__)\n";
    let locked = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[
                ("main.py", main),
                ("pyproject.toml", SIX_PYPROJECT.as_bytes()),
                ("uv.lock", SIX_LOCK.as_bytes()),
            ]),
            None,
        )
        .await;
    let unlocked = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[
                ("main.py", main),
                ("pyproject.toml", SIX_PYPROJECT.as_bytes()),
            ]),
            None,
        )
        .await;
    let with_lock = job(locked.clone(), "main.py");
    h.publish(&with_lock).await;
    let outcome = h.finished(&with_lock.run_id).await;
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
    assert!(
        log.contains("six 1.16.0\n"),
        "the lock was not honoured: {log}"
    );

    let without_lock = job(unlocked, "main.py");
    h.publish(&without_lock).await;
    let outcome = h.finished(&without_lock.run_id).await;
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
    assert!(log.contains("six 1."), "{log}");
    // Two different inputs, two environments.
    assert_eq!(h.venv_builds(), 2);

    // The locked project again: its environment is reused.
    let again = job(locked, "main.py");
    h.publish(&again).await;
    let outcome = h.finished(&again.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(h.venv_builds(), 2);
    h.stop().await;
}

/// A run that finds its environment being built waits for that build, not for the last user of
/// the environment to leave: a warm zygote keeps its environment in use for as long as it lives,
/// and the runs of its project kept coming, so such a wait never ended (the warm hang of #9).
#[test]
fn a_run_waiting_for_a_build_is_not_starved_by_users_of_the_environment() {
    use antcode_runner::uv::{find_uv, Deps, Venvs};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("venvs");
    let venvs = Arc::new(Venvs::new(root.clone(), find_uv(None).unwrap()));
    let building = || {
        std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".build-"))
            })
            .unwrap_or(false)
    };
    // Each try is a new environment (nothing to install); a try only counts if the second run
    // asked while the first one's build was under way. Whether a wrong wait would hang depends
    // on which of the two gets the lock first after the build, hence several tries.
    let mut caught = 0;
    for i in 0.. {
        assert!(i < 30, "caught only {caught} builds in progress");
        let deps = Deps::Project {
            pyproject: format!(
                "[project]\nname = \"p{i}\"\nversion = \"0.1\"\ndependencies = []\n"
            ),
            lock: None,
        };
        let ensure = |deps: Deps| {
            let (venvs, (tx, rx)) = (venvs.clone(), std::sync::mpsc::channel());
            std::thread::spawn(move || tx.send(venvs.ensure(None, &deps).unwrap()));
            rx
        };
        let first = ensure(deps.clone());
        let until = Instant::now() + PATIENCE;
        while !building() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = ensure(deps);
        let caught_now = building();
        // The builder keeps its environment in use, as a zygote does.
        let in_use = first.recv_timeout(PATIENCE).expect("the build ended");
        assert!(in_use.built);
        let got = second
            .recv_timeout(PATIENCE)
            .expect("the waiting run got the environment while the builder still used it");
        assert_eq!(got.dir, in_use.dir);
        assert!(!got.built, "built once");
        caught += usize::from(caught_now);
        if caught == 5 {
            break;
        }
    }
}

/// Collects until `want` environments are gone (or 50 tries), returning what was removed. A
/// process that another test starts holds a copy of every open lock from its fork to its exec,
/// and the collector rightly reads a lock held for that moment as "in use" and skips it.
fn collect_until(venvs: &antcode_runner::uv::Venvs, want: usize) -> Vec<String> {
    let mut removed = Vec::new();
    for _ in 0..50 {
        removed.extend(venvs.collect_garbage().unwrap().removed);
        if removed.len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    removed
}

#[test]
fn venv_gc_removes_least_recently_used_but_never_one_in_use() {
    use antcode_runner::uv::{find_uv, Deps, GcPolicy, Venvs};
    let dir = tempfile::tempdir().unwrap();
    let uv = find_uv(None).unwrap();
    let root = dir.path().join("venvs");
    // A generous policy while building, so nothing is collected yet.
    let roomy = Venvs::with_gc(root.clone(), uv.clone(), GcPolicy::default());
    // Three environments with distinct keys and nothing to install (a pyproject without
    // dependencies), so the test needs no index.
    let deps = |i: usize| Deps::Project {
        pyproject: format!("[project]\nname = \"p{i}\"\nversion = \"0.1\"\ndependencies = []\n"),
        lock: None,
    };
    let mut keys = Vec::new();
    for i in 0..3 {
        let v = roomy.ensure(None, &deps(i)).unwrap();
        assert!(v.built);
        keys.push(v.dir.file_name().unwrap().to_string_lossy().into_owned());
        // mtimes must differ for the LRU order to be meaningful.
        std::thread::sleep(Duration::from_millis(20));
    }
    // Use the first again: now the second is the least recently used.
    let first_in_use = roomy.ensure(None, &deps(0)).unwrap();
    assert!(!first_in_use.built);

    let tight = Venvs::with_gc(
        root.clone(),
        uv.clone(),
        GcPolicy {
            max_count: 1,
            max_bytes: u64::MAX,
        },
    );
    let removed = collect_until(&tight, 2);
    // One may stay: the most recently used (the first, also in use); the others go.
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed.contains(&keys[1]) && removed.contains(&keys[2]));
    assert!(root.join(&keys[0]).is_dir());
    assert!(!root.join(&keys[1]).exists() && !root.join(&keys[2]).exists());

    // With a zero budget everything unused goes, but an environment in use never does.
    let none = Venvs::with_gc(
        root.clone(),
        uv,
        GcPolicy {
            max_count: 0,
            max_bytes: 0,
        },
    );
    let report = none.collect_garbage().unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.kept, 1);
    assert!(first_in_use.python.exists());
    drop(first_in_use);
    assert_eq!(collect_until(&none, 1), vec![keys[0].clone()]);
    assert!(!root.join(&keys[0]).exists());
    // Collected environments come back on demand.
    let rebuilt = roomy.ensure(None, &deps(0)).unwrap();
    assert!(rebuilt.built && rebuilt.python.exists());
    let leftovers: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".trash-") || n.starts_with(".build-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_collects_venvs_after_a_build() {
    let mut h = Harness::start_with(1, |c| {
        c.venv_gc.max_count = 1;
    })
    .await;
    let a = h
        .put_bundle(
            BundleFormat::Py,
            b"import six\nprint('a')\n".to_vec(),
            Some("main.py"),
        )
        .await;
    let mut first = job(a.clone(), "main.py");
    first.requirements = "six".into();
    h.publish(&first).await;
    assert_eq!(h.finished(&first.run_id).await.state, RunState::Succeeded);
    let b = h.py_job("print('b')\n").await;
    h.publish(&b).await;
    assert_eq!(h.finished(&b.run_id).await.state, RunState::Succeeded);
    let venvs: Vec<_> = std::fs::read_dir(h.data_dir.join("venvs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(venvs.len(), 1, "{venvs:?}");
    assert_eq!(h.venv_builds(), 2);
    // The first project's environment was collected, so it is built again.
    let mut again = job(a, "main.py");
    again.requirements = "six".into();
    h.publish(&again).await;
    assert_eq!(h.finished(&again.run_id).await.state, RunState::Succeeded);
    assert_eq!(h.venv_builds(), 3);
    h.stop().await;
}

cold_and_warm!(a_daemonised_grandchild_does_not_outlive_its_run);
async fn a_daemonised_grandchild_does_not_outlive_its_run(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // One grandchild keeps the output pipe, the other closes it like a proper daemon; both leave
    // the process group with setsid(), so killing the group cannot reach them. The parent
    // waits for both, says so, and ends once the test has seen them ("go" in its directory).
    let code = r#"
import os, sys, time
for name, keep_pipe in (("holder", True), ("daemon", False)):
    if os.fork() == 0:
        os.setsid()
        if not keep_pipe:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
        with open(name + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(name + ".tmp", name + ".pid")
        time.sleep(300)
        os._exit(0)
for name in ("holder", "daemon"):
    while not os.path.exists(name + ".pid"):
        time.sleep(0.01)
print("daemons ready", flush=True)
while not os.path.exists("go"):
    time.sleep(0.01)
print("parent done", flush=True)
"#;
    let job = h.py_job(code).await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "daemons ready").await;
    let pids = marked(&job.run_id);
    assert!(pids.len() >= 3, "parent and two daemons: {pids:?}");
    let work_dir = h.data_dir.join("work").join(format!("{}-1", job.run_id));
    std::fs::write(work_dir.join("go"), "").unwrap();
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("parent done"), "{archive}");
    for pid in pids {
        wait_gone(pid).await;
    }
    h.stop().await;
}

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

const PRELOAD_PYPROJECT: &str = "[project]\nname = \"demo\"\nversion = \"0.1\"\ndependencies = []\n\n[tool.antcode]\npreload = [\"helper\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_gets_its_directories_where_a_recycled_directory_kept_a_file() {
    let mut h = Harness::start(1).await;
    // A leaves a file named like the directory C's archive needs; B's sweep makes A's
    // directory ready, and C takes it (spares go out in the order they came back).
    let a = h
        .py_job("open('data', 'w').write('left by a')\nopen('more', 'w').write('x')\n")
        .await;
    let b = h.py_job("pass\n").await;
    let archive = zip_of(&[
        (
            "main.py",
            b"import os\nprint(sorted(os.listdir('.')), open('data/x.txt').read())\n",
        ),
        ("data/x.txt", b"from the bundle"),
    ]);
    let c = job(
        h.put_bundle(BundleFormat::Zip, archive, None).await,
        "main.py",
    );
    for (run, pause) in [(&a, 0), (&b, 400), (&c, 0)] {
        h.publish(run).await;
        let outcome = h.finished(&run.run_id).await;
        assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
        if run.run_id == c.run_id {
            let log = String::from_utf8(h.archive(&outcome).await).unwrap();
            assert!(
                log.contains("['.tmp', 'data', 'main.py'] from the bundle"),
                "{log}"
            );
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_runs_fork_one_zygote_and_share_no_state() {
    // The runner's policy is cold: the task asks for warm itself (zygotes run unsandboxed).
    let mut h = Harness::start_with(1, |c| c.sandbox.off = true).await;
    let helper: &[u8] = b"import os\ncounter = 0\nseen = []\nLOADED_IN = os.getpid()\n";
    let main: &[u8] = br#"
import json, os, helper
helper.counter += 1
helper.seen.append(os.getpid())
print("state", helper.counter, len(helper.seen))
print("procs", os.getpid(), os.getppid(), helper.LOADED_IN)
"#;
    let bundle = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[
                ("main.py", main),
                ("helper.py", helper),
                ("pyproject.toml", PRELOAD_PYPROJECT.as_bytes()),
            ]),
            None,
        )
        .await;
    let mut zygotes = Vec::new();
    for warm in [true, true, false] {
        let mut j = job(bundle.clone(), "main.py");
        j.warm = warm;
        h.publish(&j).await;
        let outcome = h.finished(&j.run_id).await;
        let log = String::from_utf8(h.archive(&outcome).await).unwrap();
        assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
        // A module-level global mutated by the previous run is fresh again.
        assert_eq!(number_after(&log, "state"), vec![1, 1], "{log}");
        let procs = number_after(&log, "procs");
        let (pid, parent, loaded_in) = (procs[0], procs[1], procs[2]);
        if warm {
            assert_ne!(
                parent,
                std::process::id() as i32,
                "a warm run is not the runner's child"
            );
            // The preload ran in the zygote, before the fork.
            assert_eq!(loaded_in, parent, "{log}");
            zygotes.push(parent);
        } else {
            assert_eq!(
                parent,
                std::process::id() as i32,
                "a cold run is the runner's child"
            );
            assert_eq!(loaded_in, pid, "{log}");
        }
    }
    assert_eq!(
        zygotes[0], zygotes[1],
        "both warm runs forked from one zygote"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zygote_killed_mid_flight_fails_the_run_and_is_replaced() {
    // Unsandboxed, so the task can name its zygote (a sandboxed one is outside its PID
    // namespace); `a_sandboxed_zygote_killed_mid_flight_takes_its_runs_along` is the other half.
    let mut h = Harness::start_with(2, |c| {
        Mode::Warm.apply(c);
        c.sandbox.off = true;
    })
    .await;
    let code = "import os, sys, time\nprint('procs', os.getpid(), os.getppid(), flush=True)\nif sys.argv[1:] == ['sleep']:\n    time.sleep(300)\n";
    let mut first = h.py_job(code).await;
    first.args = vec!["sleep".into()];
    h.publish(&first).await;
    h.wait_for_log(&first.run_id, "procs").await;
    let procs = number_after(&h.live_log(&first.run_id).await, "procs");
    let (pid, zygote) = (procs[0], procs[1]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let outcome = h.finished(&first.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("zygote")),
        "{outcome:?}"
    );
    // The orphaned run did not outlive its report.
    wait_gone(pid).await;
    // The next run of the same project forks from a new zygote.
    let second = job(first.bundle.clone(), "main.py");
    h.publish(&second).await;
    let outcome = h.finished(&second.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    let parent = number_after(&log, "procs")[1];
    assert_ne!(parent, zygote, "{log}");
    assert_ne!(parent, std::process::id() as i32, "{log}");
    h.stop().await;
}

/// The host pids of the zygotes of the runner whose data dir is `data_dir` (not the runs they
/// forked, whose command line is the zygote's).
fn zygotes_of(data_dir: &std::path::Path) -> Vec<i32> {
    let dir = data_dir.display().to_string();
    let all: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("zygote.py") && cmdline.contains(&dir)
        })
        .filter(|&pid| !process_gone(pid))
        .collect();
    let parent = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        after.split_whitespace().nth(1).and_then(|p| p.parse().ok())
    };
    all.iter()
        .copied()
        .filter(|&pid| parent(pid).is_some_and(|p: i32| !all.contains(&p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_zygote_killed_mid_flight_takes_its_runs_along() {
    let mut h = Harness::start_in(Mode::Warm, 2).await;
    let code = "import sys, time\nprint('ready', flush=True)\nif sys.argv[1:] == ['sleep']:\n    time.sleep(300)\n";
    let mut first = h.py_job(code).await;
    first.args = vec!["sleep".into()];
    h.publish(&first).await;
    h.wait_for_log(&first.run_id, "ready").await;
    let zygotes = zygotes_of(&h.data_dir);
    assert_eq!(zygotes.len(), 1, "{zygotes:?}");
    let pids = marked(&first.run_id);
    assert!(!pids.is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygotes[0]),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let outcome = h.finished(&first.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    // The run went with its zygote's PID namespace.
    for pid in pids {
        wait_gone(pid).await;
    }
    // The next run of the same project forks from a new zygote.
    let second = job(first.bundle.clone(), "main.py");
    h.publish(&second).await;
    let outcome = h.finished(&second.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let now = zygotes_of(&h.data_dir);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, zygotes);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zygotes_are_bounded_in_number_memory_and_idle_time() {
    type Tighten = fn(&mut antcode_runner::zygote::WarmConfig);
    let bounds: [(&str, Tighten); 3] = [
        ("count", |w| w.max_count = 1),
        ("memory", |w| w.max_memory_bytes = 0),
        ("idle", |w| w.idle_ttl = Duration::ZERO),
    ];
    for (bound, tighten) in bounds {
        // Unsandboxed, so a run can name its zygote (its parent).
        let mut h = Harness::start_with(1, |c| {
            Mode::Warm.apply(c);
            c.sandbox.off = true;
            tighten(&mut c.warm);
        })
        .await;
        let code = "import os\nprint('procs', os.getpid(), os.getppid())\n";
        let a = h.py_job(code).await.bundle;
        let b = h.py_job(&format!("{code}# another project\n")).await.bundle;
        let mut parents = Vec::new();
        for bundle in [&a, &b, &a] {
            let j = job(bundle.clone(), "main.py");
            h.publish(&j).await;
            let outcome = h.finished(&j.run_id).await;
            assert_eq!(outcome.state, RunState::Succeeded, "{bound}: {outcome:?}");
            let log = String::from_utf8(h.archive(&outcome).await).unwrap();
            parents.push(number_after(&log, "procs")[1]);
        }
        assert!(
            !parents.contains(&(std::process::id() as i32)),
            "{bound}: {parents:?}"
        );
        // b's zygote pushed a's out (the one about to be used always stays), so a's second run
        // needed a new one.
        assert_ne!(parents[0], parents[1], "{bound}");
        assert_ne!(parents[0], parents[2], "{bound}: a's first zygote was kept");
        assert_ne!(parents[1], parents[2], "{bound}");
        h.stop().await;
    }
}

/// The number after `word ` on a line of `log` that starts with it.
fn first_number_after(log: &str, word: &str) -> u64 {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("{word} ")))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {word:?} line in {log:?}"))
}

cold_and_warm!(a_fork_bomb_is_bounded_by_the_pids_limit);
async fn a_fork_bomb_is_bounded_by_the_pids_limit(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import os, time
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print("forked", n, "then errno", e.errno, flush=True)
else:
    print("forked", n, flush=True)
"#;
    let mut job = h.py_job(code).await;
    job.limits.pids = 16;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    // EAGAIN once the run holds 16 processes (itself included).
    assert!(
        first_number_after(&log, "forked") < 16 && log.contains("errno 11"),
        "{log}"
    );
    h.stop().await;
}

cold_and_warm!(a_memory_hog_fails_with_the_memory_limit_and_the_runner_survives);
async fn a_memory_hog_fails_with_the_memory_limit_and_the_runner_survives(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // Written, not just reserved: every page is charged to the run.
    let mut hog = h
        .py_job("block = b'x' * (512 << 20)\nprint('held 512 MiB')\n")
        .await;
    hog.limits.memory_mb = 64;
    h.publish(&hog).await;
    let outcome = h.finished(&hog.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    assert_eq!(
        outcome.error.as_deref(),
        Some("memory limit 64 MiB exceeded"),
        "{outcome:?}"
    );
    assert_eq!(outcome.signal, Some(9), "{outcome:?}");
    // The cgroup's peak: near the limit, never far above it.
    let peak = outcome.peak_rss_kb.unwrap_or(0);
    assert!(
        (32 << 10..=(64 << 10) + 1024).contains(&peak),
        "{outcome:?}"
    );
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(!log.contains("held 512 MiB"), "{log}");

    let next = h.py_job("print('still here')\n").await;
    h.publish(&next).await;
    let outcome = h.finished(&next.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    h.stop().await;
}

cold_and_warm!(a_big_temp_file_write_fails_at_tmp_mb);
async fn a_big_temp_file_write_fails_at_tmp_mb(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import tempfile
written = 0
try:
    with tempfile.TemporaryFile() as f:
        chunk = b"x" * (1 << 20)
        for _ in range(64):
            f.write(chunk)
            f.flush()
            written += 1
except OSError as e:
    print("wrote", written, "MiB then errno", e.errno, flush=True)
else:
    print("wrote", written, "MiB", flush=True)
"#;
    let mut job = h.py_job(code).await;
    job.limits.tmp_mb = 4;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    // EFBIG at 4 MiB.
    assert!(
        first_number_after(&log, "wrote") <= 4 && log.contains("errno 27"),
        "{log}"
    );
    h.stop().await;
}

cold_and_warm!(a_scrubbed_daemon_dies_with_its_run_at_its_end_and_its_timeout);
async fn a_scrubbed_daemon_dies_with_its_run_at_its_end_and_its_timeout(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // setsid, a second fork, every descriptor to /dev/null and execve with an empty
    // environment: neither the process group nor the run-id marker reaches it. The test finds
    // it from the host by its command line (the task may be in a PID namespace of its own);
    // the run ends only once the test has seen it ("go" in the run's directory).
    let code = r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        os.execve("/bin/sh", ["sh", "-c", "echo $$ > d.tmp && mv d.tmp d.pid && exec sleep " + sys.argv[1]], {})
    os._exit(0)
while not os.path.exists("d.pid"):
    time.sleep(0.01)
pid = open("d.pid").read().strip()
while not open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"sleep"):
    time.sleep(0.01)
print("daemon started", flush=True)
while not os.path.exists("go"):
    time.sleep(0.01)
if sys.argv[2] == "hang":
    time.sleep(300)
"#;
    for (how, timeout_s) in [("end", 0), ("hang", 3)] {
        let nap = format!("300.{}", rand_suffix());
        let mut job = h.py_job(code).await;
        job.args = vec![nap.clone(), how.into()];
        job.timeout_s = timeout_s;
        h.publish(&job).await;
        h.wait_for_log(&job.run_id, "daemon started").await;
        let pids = running(&["sleep", &nap]);
        assert_eq!(pids.len(), 1, "{pids:?}");
        let work_dir = h.data_dir.join("work").join(format!("{}-1", job.run_id));
        std::fs::write(work_dir.join("go"), "").unwrap();
        let outcome = h.finished(&job.run_id).await;
        let state = match how {
            "end" => RunState::Succeeded,
            _ => RunState::TimedOut,
        };
        assert_eq!(outcome.state, state, "{outcome:?}");
        wait_gone(pids[0]).await;
    }
    h.stop().await;
}

/// Connects to the Redis the tests run beside (127.0.0.1:6379) and prints how it went.
const CONNECT_REDIS: &str = r#"
import socket
try:
    socket.create_connection(("127.0.0.1", 6379), timeout=5).close()
    print("connect ok", flush=True)
except OSError as e:
    print("connect failed errno", e.errno, flush=True)
"#;

cold_and_warm!(network_policies_reach_only_what_they_allow);
async fn network_policies_reach_only_what_they_allow(mode: Mode) {
    use antcode_core::model::NetworkPolicy;
    // Warm: a run whose policy is not `full` starts cold (its zygote serves every policy).
    let mut h = Harness::start_in(mode, 2).await;
    let allow =
        |entries: &[&str]| NetworkPolicy::Allow(entries.iter().map(|e| e.to_string()).collect());
    let cases = [
        (NetworkPolicy::Full, true),
        (NetworkPolicy::None, false),
        (allow(&["localhost:6380", "*:443"]), false),
        (allow(&["localhost:6379"]), true),
    ];
    let mut jobs = Vec::new();
    for (policy, _) in &cases {
        let mut job = h.py_job(CONNECT_REDIS).await;
        job.network = policy.clone();
        h.publish(&job).await;
        jobs.push(job);
    }
    for ((policy, reaches), job) in cases.iter().zip(&jobs) {
        let outcome = h.finished(&job.run_id).await;
        assert_eq!(
            outcome.state,
            RunState::Succeeded,
            "{policy:?}: {outcome:?}"
        );
        let log = String::from_utf8(h.archive(&outcome).await).unwrap();
        assert_eq!(log.contains("connect ok"), *reaches, "{policy:?}: {log}");
    }
    h.stop().await;
}

cold_and_warm!(a_byte_appended_to_a_cached_bundle_is_found_and_the_bundle_fetched_again);
async fn a_byte_appended_to_a_cached_bundle_is_found_and_the_bundle_fetched_again(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let job = h.py_job("print('genuine')\n").await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    // What a task that could reach the cache would do to the next run of this project.
    let cached = h.data_dir.join("bundles").join(&job.bundle.sha256);
    let mode_bits =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cached).unwrap().permissions());
    assert_eq!(mode_bits & 0o777, 0o444, "cache files are read-only");
    let writable = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644);
    std::fs::set_permissions(&cached, writable).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&cached)
        .unwrap();
    f.write_all(b"\nprint('injected')\n").unwrap();
    drop(f);
    let mut again = job.clone();
    again.run_id = antcode_core::ids::new_id();
    h.publish(&again).await;
    let outcome = h.finished(&again.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(
        log.contains("genuine") && !log.contains("injected"),
        "{log}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&cached).unwrap()),
        job.bundle.sha256,
        "fetched again"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requirements_build_script_does_not_see_the_runners_environment() {
    // A variable of the runner's own, as the admin password or a database URL would be.
    std::env::set_var("ANTCODE_TEST_RUNNER_SECRET", "hunter2");
    let mut h = Harness::start(2).await;
    let pkg = h.dir.path().join("leakcheck");
    let seen = h.dir.path().join("seen-by-setup-py.txt");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("setup.py"),
        format!(
            "import os\nfrom setuptools import setup\nopen({:?}, 'w').write('\\n'.join(sorted(os.environ)))\nsetup(name='leakcheck', version='0.1', py_modules=[])\n",
            seen.display().to_string()
        ),
    )
    .unwrap();
    let mut job = h.py_job("print('built')\n").await;
    job.requirements = format!("leakcheck @ file://{}\n", pkg.display());
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let names = std::fs::read_to_string(&seen).expect("setup.py ran");
    assert!(names.lines().any(|n| n == "PATH"), "{names}");
    assert!(
        !names.lines().any(|n| n.starts_with("ANTCODE_")),
        "the build saw the runner's variables: {names}"
    );
    h.stop().await;
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

sandboxed!(a_task_reaches_nothing_of_the_runner);
async fn a_task_reaches_nothing_of_the_runner(warm: bool) {
    let secret = "runner-secret-value";
    std::env::set_var(
        format!("ANTCODE_SANDBOX_TEST_{}", std::process::id()),
        secret,
    );
    let mut h = sandboxed_harness(warm).await;
    for file in ["antcode.db", "secret.key", "tls/ca-key.pem"] {
        let path = h.data_dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, secret).unwrap();
    }
    let code = format!(
        "{PROBE}{}",
        r#"
runner, data = int(sys.argv[1]), sys.argv[2]
for pid in sorted({os.getppid(), 1, runner}):
    attempt(f"environ of {pid}", lambda: read(f"/proc/{pid}/environ"))
    attempt(f"mem of {pid}", lambda: read(f"/proc/{pid}/mem"))
for rel in ("antcode.db", "secret.key", "tls/ca-key.pem"):
    attempt("read " + rel, lambda: read(os.path.join(data, rel)))
attempt("write the bundle cache", lambda: write(os.path.join(data, "bundles", "x.py")))
attempt("write the venv", lambda: write(os.path.join(sys.prefix, "pyvenv.cfg")))
attempt("kill the runner", lambda: os.kill(runner, signal.SIGKILL))
try:
    # The run's init: pid 1 of the task's namespace, deaf to it (or, warm, outside its domain).
    os.kill(os.getppid(), signal.SIGKILL)
except PermissionError:
    pass
print(json.dumps(got))
"#
    );
    let mut job = h.py_job(&code).await;
    job.args = vec![
        std::process::id().to_string(),
        h.data_dir.display().to_string(),
    ];
    let got = attempts(&mut h, &job).await;
    assert!(got.len() >= 8, "{got:?}");
    for (name, result) in &got {
        let result = result.as_str().unwrap();
        assert!(result.starts_with("refused"), "{name}: {result}");
        assert!(!result.contains(secret), "{name}: {result}");
    }
    // The runner survived the kill of the task's parent and still runs tasks.
    let again = h.py_job("print('still here')\n").await;
    h.publish(&again).await;
    assert_eq!(h.finished(&again.run_id).await.state, RunState::Succeeded);
    let venv = std::fs::read_dir(h.data_dir.join("venvs")).unwrap();
    for entry in venv.flatten() {
        let cfg = std::fs::read_to_string(entry.path().join("pyvenv.cfg")).unwrap_or_default();
        assert!(!cfg.contains("injected"), "the venv was written");
    }
    h.stop().await;
}

sandboxed!(concurrent_runs_see_nothing_of_each_other);
async fn concurrent_runs_see_nothing_of_each_other(warm: bool) {
    let mut h = sandboxed_harness(warm).await;
    // One project version for both, so warm runs fork from one zygote.
    let code = format!(
        "{PROBE}{}",
        r#"
if sys.argv[1:] == ["hold"]:
    import time
    print("a ready", flush=True)
    time.sleep(300)
pids = [p for p in os.listdir("/proc") if p.isdigit()]
for pid in pids:
    attempt(f"environ of {pid}", lambda: b"a-secret-value" in read(f"/proc/{pid}/environ"))
work, mine = os.path.split(os.getcwd())
got["other work dirs"] = [d for d in os.listdir(work) if d != mine]
got["processes"] = len(pids)
print(json.dumps(got))
"#
    );
    let mut a = h.py_job(&code).await;
    a.args = vec!["hold".into()];
    a.secret_env
        .0
        .insert("A_SECRET".into(), "a-secret-value".into());
    h.publish(&a).await;
    h.wait_for_log(&a.run_id, "a ready").await;
    let b = job(a.bundle.clone(), "main.py");
    let got = attempts(&mut h, &b).await;
    assert_eq!(got["other work dirs"], serde_json::json!([]), "{got:?}");
    // Itself and its init.
    assert!(got["processes"].as_u64().unwrap() <= 2, "{got:?}");
    for (name, result) in &got {
        assert_ne!(result, "ok True", "{name}");
    }
    h.broker.cancel(&a.run_id).await.unwrap();
    h.finished(&a.run_id).await;
    h.stop().await;
}

/// The host pids of processes whose command line is `argv`.
fn running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|&pid| !process_gone(pid))
        .collect()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

sandboxed!(tmp_is_private_and_bounded);
async fn tmp_is_private_and_bounded(warm: bool) {
    let mut h = sandboxed_harness(warm).await;
    // Files of 1 MiB each, so the file size limit (`tmp_mb` too) is not what stops them.
    let code = r#"
import errno, json, os, tempfile
written = 0
error = None
try:
    for i in range(64):
        with open(os.path.join(tempfile.gettempdir(), "f%d" % i), "wb") as f:
            f.write(b"x" * (1 << 20))
        written += 1
except OSError as e:
    error = errno.errorcode.get(e.errno)
print(json.dumps({"tmp": tempfile.gettempdir(), "mib": written, "error": error}))
"#;
    let mut job = h.py_job(code).await;
    job.limits.tmp_mb = 8;
    let got = attempts(&mut h, &job).await;
    assert_eq!(got["tmp"], "/tmp", "{got:?}");
    assert_eq!(got["error"], "ENOSPC", "{got:?}");
    assert!(got["mib"].as_u64().unwrap() <= 8, "{got:?}");
    h.stop().await;
}
