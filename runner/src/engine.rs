//! The runner loop: lease as many jobs as there are free slots, run each on its own task, keep
//! the leases alive from a separate heartbeat task, poll for cancels, honour drain, and shut
//! down within a bounded grace period.
//!
//! Shutdown drains: leasing stops at once (a job leased but not started is handed back
//! untouched), running attempts get [`EngineConfig::grace`] to end on their own, and
//! [`EngineConfig::hurry`] ends that wait early. What is still running then is stopped (SIGTERM,
//! SIGKILL a second later) and reported `Interrupted`: the recorder queues the run again as a
//! new attempt that uses up none of its retries. Only a runner that dies without this (kill -9,
//! power loss) leaves runs for compensation to declare lost.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use antcode_core::broker::{HeartbeatReply, HeldLease};
use antcode_core::model::WorkerStatus;
use antcode_core::time::now_ms;
use antcode_core::Shutdown;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bundles::BundleCache;
use crate::execute::{execute, Ctx, StopReason};
use crate::releases::release_loop;
use crate::source::WorkSource;
use crate::stats;
use crate::sweeper::sweep_loop;
use crate::uv::{find_uv, Venvs};
use crate::workdirs::WorkDirs;
use crate::RunnerError;
use antcode_core::broker::routing;

/// The transport-independent settings; [`crate::RunnerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub worker_id: String,
    pub name: String,
    /// `direct` or `gateway`, as shown in the worker list.
    pub mode: String,
    /// Queues served, default `["default"]`.
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Concurrent runs, default 2.
    pub slots: usize,
    /// `venvs/`, `bundles/` and `work/` live under it.
    pub data_dir: PathBuf,
    /// Default 2 s.
    pub heartbeat_interval: Duration,
    /// Default 15 s: a lease not renewed for this long is reclaimed by the scheduler.
    pub lease_ttl: Duration,
    /// Default 10 s: SIGTERM to the process group, then SIGKILL after this long.
    pub kill_grace: Duration,
    /// Default 30 s: how long a shutdown waits for running attempts before it interrupts them.
    pub grace: Duration,
    /// Cancelled to cut the shutdown's grace period short (a second stop signal).
    pub hurry: Shutdown,
    /// An explicit uv binary; otherwise discovered (see [`crate::uv::find_uv`]).
    pub uv: Option<PathBuf>,
    /// rlimits for every run, default: 4096 open files, memory and CPU time unlimited. A task
    /// may tighten them (never loosen) through `ANTCODE_LIMIT_*` variables in its env (see
    /// [`crate::execute::task_limits`]).
    pub limits: crate::process::Limits,
    /// Virtualenv garbage collection bounds (least recently used go first), default 64
    /// environments and 20 GiB.
    pub venv_gc: crate::uv::GcPolicy,
    /// Warm starts: which queues start warm, and the zygotes' idle TTL and bounds (default: no
    /// queue; a task may still ask with `warm: true`).
    pub warm: crate::zygote::WarmConfig,
    /// The most a task's `limits` may ask for; a run above it fails with a message naming the
    /// field. Default: 8 GiB of memory, 4 CPUs, 4,096 processes, 8 GiB files (see
    /// [`crate::cgroup`]).
    pub max_limits: antcode_core::model::RunLimits,
    /// On unless turned off for a benchmark; a weak one only when allowed (see
    /// [`crate::sandbox`]).
    pub sandbox: crate::sandbox::SandboxConfig,
    /// The platform's ports (control, the edge, the broker, the database, the blob store):
    /// runs whose network policy is `full` cannot connect to them, on any host (Landlock sees
    /// ports, not addresses). An allow-list that names one reaches it. Empty by default: each
    /// sandboxed run costs about 8 ms more with any (see `sandbox/guard.rs`).
    pub protected_ports: Vec<u16>,
}

/// How long one lease call may park waiting for work.
const LEASE_WAIT: Duration = Duration::from_secs(20);
/// How often held runs are checked for a cancel (a cancel must reach the process within 1 s).
const CANCEL_POLL: Duration = Duration::from_millis(200);

struct Held {
    token: String,
    stop: watch::Sender<Option<StopReason>>,
}

type HeldMap = Arc<Mutex<HashMap<String, Held>>>;

fn lock(held: &HeldMap) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
    crate::lock(held)
}

/// Sets the stop reason of a held run unless it already has one (the first reason wins).
fn stop_run(held: &HeldMap, run_id: &str, reason: StopReason) {
    if let Some(h) = lock(held).get(run_id) {
        h.stop.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Runs the engine over any work source until `shutdown`, then drains.
pub async fn run_with_source(
    mut cfg: EngineConfig,
    source: Arc<dyn WorkSource>,
    shutdown: Shutdown,
) -> Result<(), RunnerError> {
    for sub in ["venvs", "bundles", "work"] {
        let dir = cfg.data_dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| RunnerError::DataDir(dir, e))?;
    }
    sweep_stale_work(&cfg.data_dir.join("work"));
    let (data_dir, sandbox_cfg, ports) = (
        cfg.data_dir.clone(),
        cfg.sandbox,
        cfg.protected_ports.clone(),
    );
    let (sandbox, report) =
        tokio::task::spawn_blocking(move || crate::sandbox::start(&data_dir, sandbox_cfg, &ports))
            .await??;
    let ports_guarded = sandbox
        .as_ref()
        .is_some_and(|s| s.guarded_ports().is_some());
    let net_missing = crate::netpolicy::missing(ports_guarded);
    // Shown in the worker list: `full` or `weak: …`, and each guarantee this runner cannot give.
    cfg.labels.insert("sandbox".into(), report.summary());
    // Names only: a label holds at most 256 bytes; the start-up log says what each one means.
    let missing: Vec<&str> = report
        .missing()
        .map(|c| c.mechanism)
        .chain(net_missing.iter().map(|m| m.0))
        .collect();
    if !missing.is_empty() {
        cfg.labels
            .insert("sandbox_missing".into(), missing.join(", "));
    }
    let explicit = cfg.uv.clone();
    let uv = tokio::task::spawn_blocking(move || find_uv(explicit.as_deref())).await??;
    let pythons = {
        let uv = uv.clone();
        tokio::task::spawn_blocking(move || uv.pythons()).await?
    };
    // A project's `python_version` routes its runs to runners that have that Python.
    for v in &pythons {
        if let Some(label) = routing::python_label(v) {
            cfg.labels.insert(label, routing::HAS.into());
        }
    }
    source.route_by(&cfg.labels);
    tracing::info!(
        worker_id = %cfg.worker_id, uv = %uv.describe(), slots = cfg.slots, queues = ?cfg.queues,
        pythons = ?pythons, "runner started"
    );
    let venvs = Venvs::with_gc(cfg.data_dir.join("venvs"), uv, cfg.venv_gc);
    let venvs = Arc::new(venvs.sandboxed(sandbox.clone()));
    let collector = venvs.clone();
    match tokio::task::spawn_blocking(move || collector.collect_garbage()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "virtualenv garbage collection failed"),
        Err(e) => tracing::warn!(error = %e, "virtualenv garbage collection task failed"),
    }
    let sweeper: Arc<crate::sweeper::Sweeper> = Arc::default();
    for (_, line) in &net_missing {
        tracing::warn!("{line}");
    }
    let ctx = Arc::new(Ctx {
        venvs,
        bundles: BundleCache::new(cfg.data_dir.join("bundles")),
        source: source.clone(),
        zygotes: crate::zygote::Zygotes::new(&cfg.data_dir, cfg.warm.clone(), sandbox.clone()),
        finishing: Arc::new(Semaphore::new(cfg.slots.max(1))),
        releases: Arc::default(),
        work_dirs: Arc::new(WorkDirs::new(&cfg.data_dir, sweeper.clone())),
        sweeper,
        cgroups: Arc::new(crate::cgroup::Cgroups::for_runner(&cfg.worker_id)),
        sandbox,
        cfg: cfg.clone(),
    });
    let held: HeldMap = Arc::default();
    let draining = Arc::new(AtomicBool::new(false));
    let background = CancellationToken::new();
    let heartbeats = tokio::spawn(heartbeat_loop(
        cfg.clone(),
        source.clone(),
        held.clone(),
        draining.clone(),
        background.clone(),
    ));
    let cancels = tokio::spawn(cancel_loop(
        source.clone(),
        held.clone(),
        background.clone(),
    ));
    let sweeping = tokio::spawn(sweep_loop(ctx.sweeper.clone(), background.clone()));
    let releasing = tokio::spawn(release_loop(
        ctx.releases.clone(),
        source.clone(),
        background.clone(),
    ));

    let slots = Arc::new(Semaphore::new(cfg.slots.max(1)));
    let mut runs: JoinSet<()> = JoinSet::new();
    let mut backoff = crate::backoff::Backoff::default();
    loop {
        while runs.try_join_next().is_some() {}
        if shutdown.is_cancelled() {
            break;
        }
        if draining.load(Ordering::Relaxed) {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(cfg.heartbeat_interval) => continue,
            }
        }
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        // Finished runs' releases ride on this call.
        let done = ctx.releases.take();
        let leased = tokio::select! {
            r = source.release_and_lease(&done, permits.len(), LEASE_WAIT) => r,
            _ = shutdown.cancelled() => {
                ctx.releases.put_back(done);
                break;
            }
        };
        let leases = match leased {
            Ok(l) => {
                backoff.reset();
                l
            }
            Err(e) => {
                ctx.releases.put_back(done);
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in = ?wait, "lease failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        for lease in leases {
            let permit = permits.pop();
            let stopping = shutdown.is_cancelled() || draining.load(Ordering::Relaxed);
            let Some(permit) = permit.filter(|_| !stopping) else {
                // Not started: back to the queue untouched.
                if let Err(e) = source
                    .hand_back(&lease.job.run_id, &lease.lease_token)
                    .await
                {
                    tracing::warn!(run_id = %lease.job.run_id, error = %e, "hand back failed");
                }
                continue;
            };
            let (tx, rx) = watch::channel(None);
            let run_id = lease.job.run_id.clone();
            lock(&held).insert(
                run_id.clone(),
                Held {
                    token: lease.lease_token.clone(),
                    stop: tx,
                },
            );
            let ctx = ctx.clone();
            let held = held.clone();
            runs.spawn(async move {
                // The permit goes back once the process is gone (see `execute`).
                execute(ctx, lease, rx, permit).await;
                lock(&held).remove(&run_id);
            });
        }
    }

    // Shutdown: no more leases; running attempts get the grace period (cut short by `hurry`),
    // then are stopped and handed back as interrupted, each to be run again as a new attempt
    // that costs its run no retry. Heartbeats go on meanwhile, so no lease expires.
    if !runs.is_empty() {
        tracing::info!(running = runs.len(), grace = ?cfg.grace, "runner draining");
        let deadline = tokio::time::Instant::now() + cfg.grace;
        while !runs.is_empty() {
            tokio::select! {
                _ = runs.join_next() => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = cfg.hurry.cancelled() => break,
            }
        }
        let ids: Vec<String> = lock(&held).keys().cloned().collect();
        if !ids.is_empty() {
            tracing::info!(
                running = ids.len(),
                "grace period over: interrupting the runs still going"
            );
        }
        for id in &ids {
            stop_run(&held, id, StopReason::Shutdown);
        }
        while runs.join_next().await.is_some() {}
    }
    background.cancel();
    let _ = heartbeats.await;
    let _ = cancels.await;
    let _ = sweeping.await;
    // Last: the loop releases whatever is still queued before it returns.
    let _ = releasing.await;
    tracing::info!(worker_id = %cfg.worker_id, "runner stopped");
    Ok(())
}

/// Removes work dirs and spill files a crashed runner left behind. Only entries untouched for
/// [`STALE_WORK`] go, so a runner sharing the data dir never loses a live run's files.
fn sweep_stale_work(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_WORK);
        if old {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

const STALE_WORK: Duration = Duration::from_secs(6 * 3600);

async fn heartbeat_loop(
    cfg: EngineConfig,
    source: Arc<dyn WorkSource>,
    held: HeldMap,
    draining: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(cfg.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu = stats::CpuSampler::default();
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let leases: Vec<HeldLease> = lock(&held)
            .iter()
            .map(|(run_id, h)| HeldLease {
                run_id: run_id.clone(),
                lease_token: h.token.clone(),
            })
            .collect();
        let status = WorkerStatus {
            id: cfg.worker_id.clone(),
            name: cfg.name.clone(),
            mode: cfg.mode.clone(),
            queues: cfg.queues.clone(),
            labels: cfg.labels.clone(),
            slots: cfg.slots as u32,
            running: leases.len() as u32,
            cpu_percent: cpu.sample(),
            memory_percent: stats::memory_percent(),
            disk_percent: stats::disk_percent(&cfg.data_dir),
            version: env!("CARGO_PKG_VERSION").to_string(),
            draining: draining.load(Ordering::Relaxed),
            held_leases: leases.iter().map(|l| l.run_id.clone()).collect(),
            last_seen_ms: now_ms(),
        };
        // Bounded, so a hung broker call cannot stall the loop past the lease TTL unnoticed.
        let call = source.heartbeat(&leases, &status, cfg.heartbeat_interval);
        match tokio::time::timeout(cfg.lease_ttl / 2, call).await {
            Ok(Ok(reply)) => {
                last_ok = Instant::now();
                apply_reply(&held, &draining, reply);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat failed"),
            Err(_) => tracing::warn!("heartbeat timed out"),
        }
        metrics::gauge!("antcode_runner_heartbeat_age_seconds")
            .set(last_ok.elapsed().as_secs_f64());
    }
}

fn apply_reply(held: &HeldMap, draining: &AtomicBool, reply: HeartbeatReply) {
    for run_id in &reply.cancels {
        stop_run(held, run_id, StopReason::Cancel);
    }
    for run_id in &reply.lost {
        stop_run(held, run_id, StopReason::Lost);
    }
    let was = draining.swap(reply.drain, Ordering::Relaxed);
    if was != reply.drain {
        tracing::info!(drain = reply.drain, "drain flag changed");
    }
}

async fn cancel_loop(source: Arc<dyn WorkSource>, held: HeldMap, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CANCEL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ids: Vec<String> = lock(&held).keys().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        match source.cancels_for(&ids).await {
            Ok(cancelled) => {
                for id in cancelled {
                    stop_run(&held, &id, StopReason::Cancel);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cancel poll failed"),
        }
    }
}
