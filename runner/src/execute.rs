//! One attempt, end to end: report `Started`, fetch and unpack the bundle, get the virtualenv
//! (held in use until the process is gone),
//! spawn the entrypoint, supervise it (timeout, cancel, lost lease, shutdown), collect its output,
//! archive the log, report `Finished`, release the lease, remove the work dir.
//!
//! The slot is given back as soon as the process is gone and its output collected, so on a
//! busy runner the next lease call usually starts before this attempt's report. Archiving,
//! reporting and cleaning up continue beside the next run, bounded to as many attempts as there
//! are slots.
//!
//! One file, past 800 lines, because an attempt's life reads top to bottom here: prepare,
//! confine, spawn, watch, end, report; each step is a short function of its own.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use antcode_core::model::{
    BundleFormat, Lease, Outcome, RunEvent, RunEventKind, RunState, INTERRUPTED_BY_SHUTDOWN,
};
use antcode_core::telemetry::exemplars;
use antcode_core::telemetry::trace::{self, Kind, RunSpan};
use antcode_core::time::now_ms;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bundles::{unpack, BundleCache, BundleFetchError};
use crate::cgroup::{Cgroups, RunCgroup};
use crate::engine::EngineConfig;
use crate::logs::{pump, Line, LogSink, CHANNEL_LINES, FLUSH_EVERY};
use crate::netpolicy;
use crate::process::{self, ExitInfo};
use crate::releases::Releases;
use crate::sandbox::{RunSpec, Sandbox};
use crate::source::WorkSource;
use crate::sweeper::Sweeper;
use crate::uv::{normalize_requirements, Deps, Venv, VenvError, Venvs};
use crate::workdirs::{WorkDirs, TMP};
use crate::zygote::{self, ZygoteKey, Zygotes};

/// Why the runner stops an attempt from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The run was cancelled through the API.
    Cancel,
    /// The lease is gone (reclaimed after missed heartbeats): stop, report nothing.
    Lost,
    /// The runner is shutting down and the grace period is over: report it interrupted.
    Shutdown,
}

/// What every attempt shares.
pub struct Ctx {
    pub cfg: EngineConfig,
    pub source: Arc<dyn WorkSource>,
    pub venvs: Arc<Venvs>,
    pub bundles: BundleCache,
    pub zygotes: Arc<Zygotes>,
    /// Attempts whose process is gone but which are still being archived, reported and
    /// cleaned up: as many as there are slots, so a slow report cannot pile up work dirs.
    pub finishing: Arc<Semaphore>,
    /// Reported leases waiting to be released (see [`crate::releases`]).
    pub releases: Arc<Releases>,
    /// Finished attempts whose escaped descendants are still to be killed (see
    /// [`crate::sweeper`]).
    pub sweeper: Arc<Sweeper>,
    /// Working directories, recycled (see [`crate::workdirs`]).
    pub work_dirs: Arc<WorkDirs>,
    /// Where runs' cgroups are made (see [`crate::cgroup`]).
    pub cgroups: Arc<Cgroups>,
    /// Every run starts in it (see [`crate::sandbox`]); `None` only when it is off or weak.
    pub sandbox: Option<Arc<Sandbox>>,
}

/// How long to wait for the output pipes to close after the process group was killed. Only a
/// descendant that left our session can hold them open longer.
const PIPE_DRAIN: Duration = Duration::from_secs(2);
/// How many times a `Finished` report is tried (with doubling pauses from 0.5 s) before giving up.
const REPORT_ATTEMPTS: u32 = 5;
/// How long the pipes may stay open after the process group is gone before we look for escaped
/// descendants holding them.
const PIPES_QUIET: Duration = Duration::from_millis(100);
/// Grace for a shutdown or a lost lease: the normal grace already ran out, or nobody waits.
const SHORT_GRACE: Duration = Duration::from_secs(1);

/// Where an attempt's time goes: each phase is recorded in `antcode_runner_phase_seconds`
/// (label `phase`, a fixed set) and the whole timeline logged at debug level.
/// With traces on, each phase is also a child span of the attempt's ([`Timeline::trace`]).
struct Timeline {
    last: Instant,
    /// The wall-clock time the first phase started at: phases follow each other.
    began: SystemTime,
    phases: Vec<(&'static str, f64)>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            last: Instant::now(),
            began: SystemTime::now(),
            phases: Vec::with_capacity(8),
        }
    }

    /// Ends the current phase, named `phase`.
    fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        let took = now.duration_since(self.last);
        self.last = now;
        self.record(phase, took);
    }

    /// Ends the current phase as two: `first` took `first_took` of it, `second` the rest.
    fn mark_split(&mut self, first: &'static str, first_took: Duration, second: &'static str) {
        let now = Instant::now();
        let whole = now.duration_since(self.last);
        self.last = now;
        self.record(first, first_took);
        self.record(second, whole.saturating_sub(first_took));
    }

    fn record(&mut self, phase: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        metrics::histogram!("antcode_runner_phase_seconds", "phase" => phase).record(secs);
        self.phases.push((phase, secs));
    }

    /// Keeps each phase's duration as an exemplar of `antcode_runner_phase_seconds`.
    fn exemplars(&self, trace_id: &str) {
        for (phase, secs) in &self.phases {
            exemplars::note(
                "antcode_runner_phase_seconds",
                &[("phase", phase)],
                *secs,
                trace_id,
            );
        }
    }

    /// Writes the phases as `span`'s children; their times are added up from the start, so
    /// they tile the attempt without gaps.
    fn trace(&self, span: &RunSpan) {
        let mut at = self.began;
        for (phase, secs) in &self.phases {
            let end = at + Duration::from_secs_f64(*secs);
            span.child(phase, at, end);
            at = end;
        }
    }

    fn log(&self, run_id: &str) {
        let ms: Vec<String> = self
            .phases
            .iter()
            .map(|(p, s)| format!("{p}={:.2}ms", s * 1000.0))
            .collect();
        tracing::debug!(run_id, phases = %ms.join(" "), "run timeline");
    }
}

enum Ended {
    Exited(ExitInfo),
    /// The kernel's OOM killer killed a process of the run, which then did not succeed: the
    /// limit in MiB.
    OutOfMemory(ExitInfo, u64),
    Stopped(StopReason, Option<ExitInfo>),
    TimedOut(Option<ExitInfo>),
    Failed(StartError),
}

/// Why a leased run could not be started or watched: the run fails with this, in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid entrypoint {0:?}")]
    Entrypoint(String),
    #[error("the entrypoint {0:?} is not in the bundle")]
    NotInBundle(String),
    #[error(transparent)]
    Bundle(#[from] BundleFetchError),
    #[error("work dir: {0}")]
    WorkDir(std::io::Error),
    #[error("environment build failed: {0}")]
    Environment(#[from] VenvError),
    /// Limits above the runner's maximum, or a malformed `ANTCODE_LIMIT_*` variable.
    #[error("{0}")]
    Limits(String),
    #[error("could not make the run's cgroup: {0}")]
    Cgroup(std::io::Error),
    #[error(transparent)]
    Network(#[from] netpolicy::Unenforceable),
    #[error("could not start python: {0}")]
    Spawn(std::io::Error),
    #[error("waiting for the process failed: {0}")]
    Wait(std::io::Error),
    #[error("the runner's blocking pool failed: {0}")]
    Pool(#[from] tokio::task::JoinError),
}

/// Runs one leased attempt. Never panics on input; every failure becomes an `Outcome`. `slot`
/// is given back as soon as the process is gone and its output collected, so the next run
/// starts while this one is archived, reported and cleaned up.
///
/// With traces on, the attempt is a span under the job's publish, its phases are children of
/// it, its events name it (so the recorder's write hangs under it), and its log lines carry
/// the trace id.
pub async fn execute(
    ctx: Arc<Ctx>,
    lease: Lease,
    stop: watch::Receiver<Option<StopReason>>,
    slot: OwnedSemaphorePermit,
) {
    let job = &lease.job;
    let span = RunSpan::start("run", Kind::Consumer, job.trace.as_deref());
    if trace::enabled() {
        span.set("antcode.run_id", job.run_id.clone());
        span.set("antcode.attempt", i64::from(job.attempt));
        span.set("antcode.task_id", job.task_id.clone());
        span.set("antcode.worker_id", ctx.cfg.worker_id.clone());
        span.set("antcode.queue", job.queue.clone());
    }
    let logs = span.logs("run");
    attempt(ctx, &lease, stop, slot, span)
        .instrument(logs)
        .await
}

async fn attempt(
    ctx: Arc<Ctx>,
    lease: &Lease,
    mut stop: watch::Receiver<Option<StopReason>>,
    slot: OwnedSemaphorePermit,
    span: RunSpan,
) {
    let job = &lease.job;
    let started = Instant::now();
    let mut timeline = Timeline::new();
    let traceparent = span.traceparent();
    let event = |kind| RunEvent {
        run_id: job.run_id.clone(),
        attempt: job.attempt,
        lease_token: lease.lease_token.clone(),
        worker_id: ctx.cfg.worker_id.clone(),
        at_ms: now_ms(),
        kind,
        trace: traceparent.clone(),
    };
    if let Err(e) = ctx.source.report(&event(RunEventKind::Started)).await {
        tracing::warn!(run_id = %job.run_id, error = %e, "could not report started");
    }
    tracing::info!(run_id = %job.run_id, attempt = job.attempt, "run started");
    timeline.mark("report_started");

    let work_root = ctx.cfg.data_dir.join("work");
    let name = format!("{}-{}", safe_name(&job.run_id), job.attempt);
    let work_dir = work_root.join(&name);
    let sink = LogSink::new(
        ctx.source.clone(),
        &job.run_id,
        job.attempt,
        work_root.join(format!("{name}.log")),
    );

    let (ended, mut sink) = supervise(&ctx, lease, &work_dir, sink, &mut stop, &mut timeline).await;
    // The process is gone: hand the slot to the next run, once this attempt holds one of the
    // bounded finishing places.
    let _finishing = ctx.finishing.clone().acquire_owned().await;
    drop(slot);

    let mut outcome = Outcome {
        state: RunState::Failed,
        exit_code: None,
        signal: None,
        error: None,
        duration_ms: 0,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    };
    let result = match read_result(&work_dir) {
        Ok(Some(r)) => Some(r),
        Ok(None) => sink.result(),
        Err(why) => {
            sink.note(&format!("result file ignored: {why}"));
            sink.result()
        }
    };
    let ran = |o: &mut Outcome, info: Option<ExitInfo>| {
        if let Some(info) = info {
            o.exit_code = info.code;
            o.signal = info.signal;
            o.peak_rss_kb = info.peak_rss_kb;
        }
        o.result = result.clone();
    };
    let (mut reclaimed, mut interrupted) = (false, false);
    match ended {
        Ended::Exited(info) => {
            ran(&mut outcome, Some(info));
            outcome.state = match (info.code, info.signal) {
                (Some(0), _) => RunState::Succeeded,
                _ => RunState::Failed,
            };
            if let Some(sig) = info.signal {
                outcome.error = Some(format!("killed by signal {}", signal_name(sig)));
            }
        }
        Ended::OutOfMemory(info, mb) => {
            ran(&mut outcome, Some(info));
            let msg = format!("memory limit {mb} MiB exceeded");
            sink.note(&msg);
            outcome.error = Some(msg);
        }
        Ended::TimedOut(info) => {
            ran(&mut outcome, info);
            outcome.state = RunState::TimedOut;
            let msg = format!("timed out after {} s", job.timeout_s);
            sink.note(&msg);
            outcome.error = Some(msg);
        }
        Ended::Stopped(reason, info) => {
            ran(&mut outcome, info);
            match reason {
                StopReason::Cancel => {
                    outcome.state = RunState::Cancelled;
                    sink.note("cancelled");
                    outcome.error = Some("cancelled".into());
                }
                StopReason::Shutdown => {
                    // The run is queued again; this outcome only describes the attempt.
                    outcome.state = RunState::Queued;
                    sink.note(INTERRUPTED_BY_SHUTDOWN);
                    outcome.error = Some(INTERRUPTED_BY_SHUTDOWN.into());
                    interrupted = true;
                }
                StopReason::Lost => reclaimed = true,
            }
        }
        Ended::Failed(e) => {
            let msg = e.to_string();
            sink.note(&msg);
            outcome.error = Some(msg);
        }
    }

    // Descendants that escaped the process group and closed their pipes may still be around;
    // the sweep reads /proc, so it runs beside the reporting, together with other attempts'.
    ctx.sweeper.add(&job.run_id, job.attempt);
    // The work dir goes after the report (emptying it is not part of the run's latency) but
    // before the finishing place is freed, so a runner never piles up directories.
    let (work_dirs, work_dir_done) = (ctx.work_dirs.clone(), work_dir.clone());
    let give_back_work_dir = || async move {
        let _ = tokio::task::spawn_blocking(move || work_dirs.give_back(&work_dir_done)).await;
    };
    if reclaimed {
        give_back_work_dir().await;
        // Another runner may already own the next attempt: report nothing, archive nothing.
        metrics::counter!("antcode_runner_runs_total", "outcome" => "reclaimed").increment(1);
        tracing::warn!(run_id = %job.run_id, "lease lost; attempt abandoned");
        return;
    }
    outcome.log_key = sink.finish().await;
    timeline.mark("archive");
    outcome.duration_ms = started.elapsed().as_millis() as i64;
    let label = match interrupted {
        true => "interrupted",
        false => outcome.state.as_str(),
    };
    metrics::counter!("antcode_runner_runs_total", "outcome" => label).increment(1);
    let took = started.elapsed().as_secs_f64();
    metrics::histogram!("antcode_runner_run_duration_seconds").record(took);
    if let Some(trace_id) = span.trace_id() {
        exemplars::note("antcode_runner_run_duration_seconds", &[], took, &trace_id);
        span.set("antcode.state", label);
        if !matches!(outcome.state, RunState::Succeeded) {
            span.fail(outcome.error.clone().unwrap_or_else(|| label.to_string()));
        }
    }
    tracing::info!(run_id = %job.run_id, state = label, exit_code = ?outcome.exit_code, "run finished");
    // The outcome is what the attempt was for: retry the report through a short outage. If it
    // still cannot be delivered, keep the lease unreleased: it expires and the scheduler treats
    // the attempt as lost (and retries it), which is better than a run stuck in `running`.
    let finished = event(match interrupted {
        true => RunEventKind::Interrupted(outcome),
        false => RunEventKind::Finished(outcome),
    });
    let mut pause = Duration::from_millis(500);
    for attempt in 1..=REPORT_ATTEMPTS {
        match ctx.source.report(&finished).await {
            Ok(()) => {
                timeline.mark("report_finished");
                // Released with the runner's next lease call, or on its own shortly after.
                ctx.releases.add(&job.run_id, &lease.lease_token);
                break;
            }
            Err(e) => {
                tracing::warn!(run_id = %job.run_id, attempt, error = %e, "could not report finished");
                if attempt < REPORT_ATTEMPTS {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
    give_back_work_dir().await;
    timeline.mark("cleanup");
    timeline.log(&job.run_id);
    if let Some(trace_id) = span.trace_id() {
        timeline.exemplars(&trace_id);
        timeline.trace(&span);
    }
}

/// Prepares and runs the process; returns how it ended and the sink with its output.
async fn supervise(
    ctx: &Arc<Ctx>,
    lease: &Lease,
    work_dir: &Path,
    mut sink: LogSink,
    stop: &mut watch::Receiver<Option<StopReason>>,
    timeline: &mut Timeline,
) -> (Ended, LogSink) {
    let job = &lease.job;
    // An environment being built is told in the live log as it goes.
    let (steps, mut told) = mpsc::unbounded_channel();
    let prepared = {
        let preparing = prepare(ctx, lease, work_dir, timeline, steps);
        tokio::pin!(preparing);
        loop {
            tokio::select! {
                p = &mut preparing => break p,
                Some(step) = told.recv() => {
                    sink.progress(&step);
                    sink.flush().await;
                }
                reason = stopped(stop) => return (Ended::Stopped(reason, None), sink),
            }
        }
    };
    while let Ok(step) = told.try_recv() {
        sink.progress(&step);
    }
    let (venv, entry, bundle_file) = match prepared {
        Ok(p) => p,
        Err(msg) => return (Ended::Failed(msg), sink),
    };

    let limits = match task_limits(ctx.cfg.limits, &job.env) {
        Ok(l) => l,
        Err(msg) => return (Ended::Failed(msg), sink),
    };
    let (limits, cgroup, net) = match confine(ctx, job, limits, work_dir).await {
        Ok(c) => c,
        Err(msg) => return (Ended::Failed(msg), sink),
    };
    // Declared secrets (resolved by the publisher, never stored in SQL) join the task's own env.
    let job_env = job
        .env
        .clone()
        .into_iter()
        .chain(job.secret_env.0.clone())
        .collect();
    let mut env = task_env(&venv, work_dir, &job_env);
    if let Some(sandbox) = &ctx.sandbox {
        env.insert("TMPDIR".into(), sandbox.tmp_dir().into());
    }
    if let Err(e) = run_files(work_dir, job.params.as_ref(), &mut env) {
        return (Ended::Failed(StartError::WorkDir(e)), sink);
    }
    // Last, so the task cannot override them: they mark every process of this attempt.
    env.insert(process::RUN_ID_VAR.into(), job.run_id.clone());
    env.insert(process::ATTEMPT_VAR.into(), job.attempt.to_string());
    let mut argv = vec![entry];
    argv.extend(job.args.iter().cloned());
    // A zygote serves every task of a project version: a network policy of its own starts
    // cold.
    let warm = (job.warm || ctx.zygotes.config().queues.contains(&job.queue)) && !net.confines();
    let tmp_bytes = job.limits.tmp_mb.saturating_mul(1 << 20);
    let forked = match warm {
        true => {
            let req = zygote::Request {
                argv: argv.clone(),
                env: env.clone(),
                cwd: work_dir.to_path_buf(),
                limits,
                cgroup: cgroup.procs_fds(),
                work_dir: work_dir.to_path_buf(),
                tmp_bytes,
            };
            spawn_warm(ctx, job, &venv, &bundle_file, req).await
        }
        false => None,
    };
    let cold = || match &ctx.sandbox {
        Some(sandbox) => {
            // The cgroup is joined from outside, by the init's pid, before the init goes on.
            let join = |pid: i32| cgroup.add(pid);
            sandbox.spawn(&RunSpec {
                program: &venv.python,
                args: &argv,
                cwd: work_dir,
                env: &env,
                limits: &limits,
                venv: &venv.dir,
                work_dir,
                tmp_bytes,
                net: net.hook(),
                before_start: Some(&join),
                tool: None,
            })
        }
        None => {
            let confine = process::Confine {
                cgroup: cgroup.attach(),
                net: net.hook(),
            };
            process::spawn_in(&venv.python, &argv, work_dir, &env, &limits, &confine)
        }
    };
    let spawned = match forked.map_or_else(cold, Ok) {
        Ok(s) => s,
        Err(e) => return (Ended::Failed(StartError::Spawn(e)), sink),
    };
    // The child holds what it needed: the ruleset descriptor can go.
    drop(net);
    let pid = spawned.pid;
    timeline.mark("spawn");
    let (tx, rx) = mpsc::channel::<Line>(CHANNEL_LINES);
    tokio::spawn(pump(spawned.stdout, "stdout", tx.clone()));
    tokio::spawn(pump(spawned.stderr, "stderr", tx.clone()));
    drop(tx);
    let collector_stop = CancellationToken::new();
    let collector = tokio::spawn(collect(sink, rx, collector_stop.clone()));
    let mut exit = spawned.wait;

    let timeout = (job.timeout_s > 0).then(|| Duration::from_secs(job.timeout_s));
    let deadline =
        tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(100 * 365 * 86400));
    enum Why {
        Timeout,
        Stop(StopReason),
    }
    let why = tokio::select! {
        r = &mut exit => Err(r),
        _ = tokio::time::sleep_until(deadline) => Ok(Why::Timeout),
        reason = stopped(stop) => Ok(Why::Stop(reason)),
    };
    let result: Result<ExitInfo, StartError> = match why {
        Err(r) => {
            timeline.mark("process");
            flatten(r)
        }
        Ok(why) => {
            let grace = match why {
                Why::Timeout | Why::Stop(StopReason::Cancel) => ctx.cfg.kill_grace,
                Why::Stop(_) => SHORT_GRACE.min(ctx.cfg.kill_grace),
            };
            process::signal_group(pid, Signal::SIGTERM);
            let r = match tokio::time::timeout(grace, &mut exit).await {
                Ok(r) => r,
                Err(_) => {
                    process::signal_group(pid, Signal::SIGKILL);
                    exit.await
                }
            };
            let info = flatten(r).ok();
            // Grandchildren that outlived the leader must not outlive the attempt.
            process::signal_group(pid, Signal::SIGKILL);
            let (info, _) = end_cgroup(cgroup, info).await;
            let sink = drain(collector, collector_stop, (&job.run_id, job.attempt)).await;
            let ended = match why {
                Why::Timeout => Ended::TimedOut(info),
                Why::Stop(reason) => Ended::Stopped(reason, info),
            };
            return (ended, sink);
        }
    };
    process::signal_group(pid, Signal::SIGKILL);
    let (info, oom) = end_cgroup(cgroup, result.as_ref().ok().copied()).await;
    let sink = drain(collector, collector_stop, (&job.run_id, job.attempt)).await;
    timeline.mark("drain");
    match (result, info) {
        (Ok(_), Some(info)) if oom.is_some() && info.code != Some(0) => {
            (Ended::OutOfMemory(info, oom.unwrap_or(0)), sink)
        }
        (Ok(_), Some(info)) => (Ended::Exited(info), sink),
        (Ok(info), None) => (Ended::Exited(info), sink),
        (Err(msg), _) => (Ended::Failed(msg), sink),
    }
}

/// The run's bounds beyond `limits`: refuses a run above the runner's maximum, makes its
/// cgroup, adds the rlimits that stand in for a missing controller (RLIMIT_AS for memory) and
/// that bound file sizes (RLIMIT_FSIZE, `tmp_mb`), and prepares its network policy (refused
/// if this runner cannot enforce it).
async fn confine(
    ctx: &Arc<Ctx>,
    job: &antcode_core::model::Job,
    limits: process::Limits,
    work_dir: &Path,
) -> Result<(process::Limits, RunCgroup, netpolicy::Prepared), StartError> {
    if let Some(msg) = job.limits.above(&ctx.cfg.max_limits) {
        return Err(StartError::Limits(msg));
    }
    let net = netpolicy::prepare(&job.network)?;
    let mb = |n: u64| Some(n.saturating_mul(1 << 20));
    let floor = process::Limits {
        memory_bytes: mb(job.limits.memory_mb).filter(|_| !ctx.cgroups.has("memory")),
        file_bytes: mb(job.limits.tmp_mb),
        ..process::Limits::default()
    };
    let (cgroups, limits_wanted) = (ctx.cgroups.clone(), job.limits);
    let name = work_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup = tokio::task::spawn_blocking(move || cgroups.create(&name, &limits_wanted))
        .await?
        .map_err(StartError::Cgroup)?;
    Ok((limits.tightest(floor), cgroup, net))
}

/// Kills every process left in the run's cgroup, reads its peak memory into `info` and whether
/// the OOM killer struck (the limit in MiB), and removes it.
async fn end_cgroup(
    mut cgroup: RunCgroup,
    info: Option<ExitInfo>,
) -> (Option<ExitInfo>, Option<u64>) {
    tokio::task::spawn_blocking(move || {
        cgroup.kill_all();
        let info = info.map(|mut i| {
            i.peak_rss_kb = cgroup.peak_kb().or(i.peak_rss_kb);
            i
        });
        let oom = (cgroup.oom_kills() > 0).then(|| cgroup.memory_mb());
        cgroup.remove();
        (info, oom)
    })
    .await
    .unwrap_or((info, None))
}

/// The run forked from its project's zygote, or `None` (logged) if no zygote could fork it, in
/// which case the caller starts it cold.
async fn spawn_warm(
    ctx: &Arc<Ctx>,
    job: &antcode_core::model::Job,
    venv: &Venv,
    bundle_file: &Path,
    req: zygote::Request,
) -> Option<process::Spawned> {
    let key = ZygoteKey {
        venv: venv.dir.clone(),
        project_id: job.project_id.clone(),
        project_version: job.project_version,
        bundle_sha256: job.bundle.sha256.clone(),
    };
    let forked = ctx
        .zygotes
        .spawn(&key, venv, (&job.bundle, bundle_file), &req)
        .await;
    match forked {
        Ok(s) => Some(s),
        Err(e) => {
            metrics::counter!("antcode_runner_zygote_fallbacks_total").increment(1);
            tracing::warn!(run_id = %job.run_id, error = %e, "warm start failed; starting cold");
            None
        }
    }
}

/// [`process::kill_marked`] on a blocking thread.
async fn sweep(run_id: &str, attempt: u32) -> usize {
    let run_id = run_id.to_string();
    tokio::task::spawn_blocking(move || process::kill_marked(&run_id, attempt))
        .await
        .unwrap_or(0)
}

fn flatten(r: std::io::Result<ExitInfo>) -> Result<ExitInfo, StartError> {
    r.map_err(StartError::Wait)
}

/// Waits for the log pipes to close, but not forever: a descendant that escaped the process
/// group could hold them open.
async fn drain(
    mut collector: tokio::task::JoinHandle<LogSink>,
    stop: CancellationToken,
    marker: (&str, u32),
) -> LogSink {
    let joined = match tokio::time::timeout(PIPES_QUIET, &mut collector).await {
        Ok(r) => r,
        Err(_) => {
            // Still open after the group is gone: likely a descendant that escaped with
            // setsid(). Kill what carries this attempt's marker, then give the pipes a moment.
            let killed = sweep(marker.0, marker.1).await;
            if killed > 0 {
                tracing::info!(
                    run_id = marker.0,
                    killed,
                    "killed processes that left the run's process group"
                );
            }
            match tokio::time::timeout(PIPE_DRAIN, &mut collector).await {
                Ok(r) => r,
                Err(_) => {
                    stop.cancel();
                    collector.await
                }
            }
        }
    };
    match joined {
        Ok(sink) => sink,
        // The collector does not panic on input; if it did, propagating is the honest option.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn collect(
    mut sink: LogSink,
    mut rx: mpsc::Receiver<Line>,
    stop: CancellationToken,
) -> LogSink {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    if sink.push(line) {
                        sink.flush().await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => sink.flush().await,
            _ = stop.cancelled() => {
                while let Ok(line) = rx.try_recv() {
                    sink.push(line);
                }
                break;
            }
        }
    }
    sink
}

/// Resolves when a stop reason is set (at once if one already is).
async fn stopped(stop: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            // The engine dropped the sender: nobody can stop us any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Bundle and environment; returns the venv, the entrypoint path relative to the work dir and
/// the cached bundle file.
async fn prepare(
    ctx: &Arc<Ctx>,
    lease: &Lease,
    work_dir: &Path,
    timeline: &mut Timeline,
    steps: mpsc::UnboundedSender<String>,
) -> Result<(Venv, String, PathBuf), StartError> {
    let job = &lease.job;
    let entry = safe_relative(&job.entrypoint)
        .ok_or_else(|| StartError::Entrypoint(job.entrypoint.clone()))?;
    let file = ctx.bundles.get(ctx.source.as_ref(), &job.bundle).await?;
    timeline.mark("bundle");
    let (bundle, dir, bundle_file) = (job.bundle.clone(), work_dir.to_path_buf(), file.clone());
    let (requirements, python) = (job.requirements.clone(), job.python_version.clone());
    let (venvs, entrypoint, in_bundle) = (ctx.venvs.clone(), job.entrypoint.clone(), entry.clone());
    let work_dirs = ctx.work_dirs.clone();
    let sandbox = ctx.sandbox.clone();
    // One trip to the blocking pool for both steps: each trip is two thread switches.
    let (venv, unpacked) = tokio::task::spawn_blocking(move || -> Result<_, StartError> {
        let started = Instant::now();
        let mut leftovers = work_dirs.take(&dir).map_err(StartError::WorkDir)?;
        // Only a single-file bundle writes into them: an archive may need a directory where a
        // leftover stands.
        if bundle.format != BundleFormat::Py {
            leftovers.remove_rest();
        }
        let unpacked = unpack(&bundle, &file, &dir, &mut |path| leftovers.create(path));
        // What the bundle did not need is gone before the process starts.
        leftovers.remove_rest();
        unpacked?;
        if let Some(sandbox) = &sandbox {
            sandbox.hand_over(&dir).map_err(StartError::WorkDir)?;
        }
        let deps = project_deps(&dir, requirements);
        if !dir.join(&in_bundle).is_file() {
            return Err(StartError::NotInBundle(entrypoint));
        }
        let unpacked = started.elapsed();
        let report = move |step: String| {
            let _ = steps.send(step);
        };
        let venv = venvs.ensure_reporting(python.as_deref(), &deps, &report)?;
        Ok((venv, unpacked))
    })
    .await??;
    timeline.mark_split("unpack", unpacked, "venv");
    Ok((venv, entry.to_string_lossy().into_owned(), bundle_file))
}

/// Where the environment comes from, in order: the job's requirements (control copies the
/// bundle's `requirements.txt` there), a `requirements.txt` in the unpacked bundle, its
/// `pyproject.toml` with `uv.lock` if present, else nothing beyond the interpreter.
fn project_deps(dir: &Path, job_requirements: String) -> Deps {
    if !normalize_requirements(&job_requirements).is_empty() {
        return Deps::Requirements(job_requirements);
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    if let Some(req) = read("requirements.txt").filter(|r| !normalize_requirements(r).is_empty()) {
        return Deps::Requirements(req);
    }
    match read("pyproject.toml") {
        Some(pyproject) => Deps::Project {
            pyproject,
            lock: read("uv.lock"),
        },
        None => Deps::Requirements(String::new()),
    }
}

/// The task's whole environment: a minimal base, then the task's own variables. Nothing of the
/// runner's environment leaks in.
pub fn task_env(
    venv: &Venv,
    work_dir: &Path,
    job_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let bin = venv.dir.join("bin");
    env.insert(
        "PATH".into(),
        format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
    );
    env.insert("HOME".into(), work_dir.display().to_string());
    env.insert("LANG".into(), "C.UTF-8".into());
    env.insert("VIRTUAL_ENV".into(), venv.dir.display().to_string());
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    env.insert("TMPDIR".into(), work_dir.join(TMP).display().to_string());
    for (k, v) in job_env {
        // Skipped rather than failing the spawn.
        if process::exec_can_pass(k, v) {
            env.insert(k.clone(), v.clone());
        }
    }
    env
}

/// The run's params as one JSON object (`antcode_core::params`), when it was given any.
pub const PARAMS_VAR: &str = "ANTCODE_PARAMS";
/// The path of a file holding the same JSON (for params too large for a comfortable variable).
pub const PARAMS_FILE_VAR: &str = "ANTCODE_PARAMS_FILE";
/// The path where a run may write its result as JSON; it wins over the last JSON line printed.
pub const RESULT_FILE_VAR: &str = "ANTCODE_RESULT_FILE";
/// The names of those files in the attempt's working directory.
const PARAMS_FILE: &str = ".antcode-params.json";
const RESULT_FILE: &str = ".antcode-result.json";
/// The largest result file read; a larger one is ignored, with a note in the log.
pub const MAX_RESULT_BYTES: u64 = 256 * 1024;

/// Writes the params file (when the run has params) and clears any result file a bundle or an
/// earlier attempt left, and names both in `env`. Nothing already at either path is followed:
/// a link is replaced, not written through.
fn run_files(
    work_dir: &Path,
    params: Option<&serde_json::Value>,
    env: &mut BTreeMap<String, String>,
) -> std::io::Result<()> {
    let result = work_dir.join(RESULT_FILE);
    remove_if_any(&result)?;
    env.insert(RESULT_FILE_VAR.into(), result.display().to_string());
    let Some(params) = params else {
        return Ok(());
    };
    let path = work_dir.join(PARAMS_FILE);
    remove_if_any(&path)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)?;
    std::io::Write::write_all(&mut file, params.to_string().as_bytes())?;
    env.insert(PARAMS_VAR.into(), params.to_string());
    env.insert(PARAMS_FILE_VAR.into(), path.display().to_string());
    Ok(())
}

fn remove_if_any(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The result file the run wrote, if it wrote one: JSON, a regular file of one name (not
/// followed if a link), at most [`MAX_RESULT_BYTES`]. An error says why one that is there was
/// not taken.
fn read_result(work_dir: &Path) -> Result<Option<serde_json::Value>, String> {
    use std::io::Read;
    let path = work_dir.join(RESULT_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it ({e})")),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    // A second name could be a file the run may not read, linked where it may write.
    if !meta.is_file() || meta.nlink() != 1 {
        return Err("not a regular file with one name".into());
    }
    let mut text = Vec::new();
    file.take(MAX_RESULT_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_RESULT_BYTES {
        return Err(format!("larger than {MAX_RESULT_BYTES} bytes"));
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| format!("not JSON ({e})"))
}

/// Per-task limit variables: memory in MiB, CPU time in seconds, open files.
pub const LIMIT_MEMORY_MB: &str = "ANTCODE_LIMIT_MEMORY_MB";
pub const LIMIT_CPU_SECONDS: &str = "ANTCODE_LIMIT_CPU_SECONDS";
pub const LIMIT_OPEN_FILES: &str = "ANTCODE_LIMIT_OPEN_FILES";

/// The limits of one run: the runner's, tightened by any `ANTCODE_LIMIT_*` the task's env sets.
/// A task cannot loosen what the operator configured; a malformed value fails the run.
pub fn task_limits(
    runner: process::Limits,
    job_env: &BTreeMap<String, String>,
) -> Result<process::Limits, StartError> {
    let read = |name: &str| -> Result<Option<u64>, StartError> {
        match job_env.get(name).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(StartError::Limits(format!(
                    "{name} must be a positive integer, got {v:?}"
                ))),
            },
        }
    };
    let task = process::Limits {
        memory_bytes: read(LIMIT_MEMORY_MB)?.map(|mb| mb.saturating_mul(1024 * 1024)),
        cpu_seconds: read(LIMIT_CPU_SECONDS)?,
        open_files: read(LIMIT_OPEN_FILES)?,
        file_bytes: None,
    };
    Ok(runner.tightest(task))
}

fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| path.to_path_buf())
}

/// Run ids are UUIDs, but the directory name must be safe whatever a broker hands us.
fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| sig.to_string())
}
