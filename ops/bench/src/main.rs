//! `bench-runs`: a no-op Python task through the whole system, measured beside its peers in
//! the same run: a bare `python3 -c pass` spawn (the floor) and Celery on the machine's Redis with
//! the same number of worker processes.
//!
//! Measures: trigger → `succeeded` visible in the API (p50/p99), 40 sequential tasks (the shape
//! of Windmill's published benchmark), and N tasks through the system (throughput), for a cold
//! task (a fresh interpreter per run) and a warm one (`warm: true`: forked from the project's
//! zygote), both on the same `antcode up`. With `--pairs N`, N more throughput phases of warm
//! AntCode and of Celery follow, alternated, with the median of their ratios.
//!
//! The sandbox's cost: the cold and warm tasks again on an `up` whose runner has no sandbox,
//! `--sandbox-rounds` times, alternated with the sandboxed ones; the summary gives each figure's
//! range over the rounds against the sandbox's targets.
//!
//! Prints a table and writes the results file (`results.rs`): AntCode's variants are its rows,
//! the bare spawn, Celery and the alternated pairs its peer.
//!
//! Past 800 lines: one benchmark's phases, peers and report, which read in order.

mod fork;
mod results;
use results::Flags;

const USAGE: &str = "\
bench-runs: a no-op Python task through the whole system, beside a bare spawn and Celery

Usage: bench-runs [--celery-venv DIR] [--slots 2] [--latency-n 50] [--throughput-n 2000]
                  [--sequential-n 40] [--producers 4] [--pairs N] [--sandbox-rounds 1]
                  [--no-redis] [--warm-only]
  --celery-venv DIR   a virtualenv with Celery and redis: measure Celery too
  --slots N           runner slots, and Celery worker processes
  --latency-n N       sequential triggers timed one by one (p50/p99)
  --throughput-n N    tasks in the throughput phase
  --sequential-n N    tasks run one after another
  --producers N       concurrent submitters in the throughput phase
  --pairs N           N more alternated throughput phases of warm AntCode and Celery
  --sandbox-rounds N  N alternated measurements of the sandbox on and off (0 skips them)
  --no-redis          skip AntCode on the machine's Redis
  --warm-only         skip the cold task";

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use antcode::up::{self, UpConfig};

const PASSWORD: &str = "bench-password";

struct Args {
    slots: usize,
    latency_n: usize,
    throughput_n: usize,
    sequential_n: usize,
    /// Concurrent submitters in the throughput phase, the same for AntCode and Celery.
    producers: usize,
    celery_venv: Option<PathBuf>,
    /// Also measure AntCode on the machine's Redis (`--no-redis` skips it, for profiling).
    redis: bool,
    /// Skip the cold task (`--warm-only`, for profiling the warm path).
    warm_only: bool,
    /// After the table, this many more throughput phases of warm AntCode and Celery, alternated
    /// (`--pairs N`): on a machine whose speed drifts, one phase of each minutes apart is not
    /// a comparison.
    pairs: usize,
    /// Rounds of the sandbox on and off, alternated (`--sandbox-rounds N`).
    sandbox_rounds: usize,
}

fn parse_args() -> (Args, Flags) {
    let mut a = Args {
        slots: 2,
        latency_n: 50,
        throughput_n: 2000,
        sequential_n: 40,
        producers: 4,
        celery_venv: None,
        redis: true,
        warm_only: false,
        pairs: 0,
        sandbox_rounds: 1,
    };
    let mut flags = Flags::from_env("runs", USAGE);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--slots" => a.slots = flags.value(&flag),
            "--latency-n" => a.latency_n = flags.value(&flag),
            "--throughput-n" => a.throughput_n = flags.value(&flag),
            "--sequential-n" => a.sequential_n = flags.value(&flag),
            "--producers" => a.producers = flags.value::<usize>(&flag).max(1),
            "--no-redis" => a.redis = false,
            "--warm-only" => a.warm_only = true,
            "--pairs" => a.pairs = flags.value(&flag),
            "--sandbox-rounds" => a.sandbox_rounds = flags.value(&flag),
            // Absolute: the worker is started from the celery directory, and a relative program
            // path would be resolved against that.
            "--celery-venv" => {
                let v: PathBuf = flags.value(&flag);
                let abs = std::fs::canonicalize(&v)
                    .unwrap_or_else(|e| flags.fail(&format!("--celery-venv {}: {e}", v.display())));
                a.celery_venv = Some(abs);
            }
            other => flags.unknown(other),
        }
    }
    (a, flags)
}

fn pct(samples: &[f64], p: f64) -> f64 {
    let mut xs = samples.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((p / 100.0) * (xs.len() - 1) as f64).round() as usize]
}

/// The median of `sorted`: for an even count, the mean of the two middle values (the nearest
/// rank of [`pct`] would take the upper one, which overstates a small set such as six pairs).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("POST {path}: {} {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    async fn state(&self, run_id: &str) -> anyhow::Result<String> {
        let run: Value = self
            .http
            .get(format!("{}/runs/{run_id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?;
        Ok(run["state"].as_str().unwrap_or_default().to_string())
    }

    async fn trigger(&self, task_id: &str) -> anyhow::Result<String> {
        let run = self
            .post(&format!("/tasks/{task_id}/trigger"), json!({}))
            .await?;
        Ok(run["id"].as_str().context("run id")?.to_string())
    }

    /// One run, trigger to `succeeded`, as a user's serverless-style call: `invoke` answers when
    /// the recorder has applied the run's end (it is woken by the change, it does not poll).
    async fn invoke(&self, task_id: &str) -> anyhow::Result<()> {
        let run = self
            .post(&format!("/tasks/{task_id}/invoke?wait_s=60"), json!({}))
            .await?;
        match run["state"].as_str() {
            Some("succeeded") => Ok(()),
            other => bail!("invoked run ended {other:?}: {run}"),
        }
    }

    /// Waits until the run is terminal on its `events` stream (woken by the recorder's change
    /// announcements, no polling); fails unless it succeeded.
    async fn wait(&self, run_id: &str) -> anyhow::Result<()> {
        let mut res = self
            .http
            .get(format!("{}/runs/{run_id}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("GET /runs/{run_id}/events: {}", res.status());
        }
        let mut text = String::new();
        while let Some(chunk) = res.chunk().await? {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = text.find("event: end") {
                // The `end` event's data line follows it: read until it is complete.
                if text[at..].contains("\n\n") {
                    break;
                }
            }
        }
        match self.state(run_id).await?.as_str() {
            "succeeded" => Ok(()),
            other => bail!("run {run_id} ended {other}"),
        }
    }

    /// The newest run of the task in `state`, if any.
    async fn newest_in(&self, task_id: &str, state: &str) -> anyhow::Result<Option<Value>> {
        let page: Value = self
            .http
            .get(format!(
                "{}/runs?task_id={task_id}&state={state}&limit=1",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?;
        Ok(page["items"].get(0).cloned())
    }

    /// Any run of the task still `queued` or `running` (the newest first), or `None`.
    async fn unfinished(&self, task_id: &str) -> anyhow::Result<Option<String>> {
        for state in ["queued", "running"] {
            if let Some(run) = self.newest_in(task_id, state).await? {
                return Ok(run["id"].as_str().map(str::to_string));
            }
        }
        Ok(None)
    }

    /// Fails if any run of the task ended other than `succeeded`.
    async fn all_succeeded(&self, task_id: &str) -> anyhow::Result<()> {
        for state in ["failed", "timed_out", "cancelled", "lost"] {
            if let Some(run) = self.newest_in(task_id, state).await? {
                bail!("a run ended {state}: {run}");
            }
        }
        Ok(())
    }
}

async fn login(addr: std::net::SocketAddr) -> anyhow::Result<Api> {
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/api/v1");
    let res: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = res["token"].as_str().context("login token")?.to_string();
    Ok(Api { http, base, token })
}

/// The floor: `python -c pass` from an empty virtualenv of the interpreter `python3` really is,
/// which is exactly what the runner starts for a project without requirements. `python3` on
/// PATH may be a shim (pyenv's is a shell script costing hundreds of ms), and the base
/// interpreter's own site-packages can cost tens of ms of `.pth` processing that a venv skips,
/// so neither is a fair floor; both are reported too.
fn floor_pythons() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("running python3")?;
    let real = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    if real.as_os_str().is_empty() {
        bail!("python3 did not report its executable");
    }
    let venv = std::env::current_dir()?.join("target/bench/floor-venv");
    if !venv.join("bin/python").exists() {
        let ok = Command::new("uv")
            .args(["venv", "--quiet", "--python"])
            .arg(&real)
            .arg(&venv)
            .status()
            .context("running uv venv")?
            .success();
        if !ok {
            bail!("uv venv {} failed", venv.display());
        }
    }
    Ok(vec![
        (
            "bare `python -c pass` (empty venv, as the runner starts it)".into(),
            venv.join("bin/python"),
        ),
        (format!("bare `{} -c pass`", real.display()), real),
        ("bare `python3 -c pass` (via PATH)".into(), "python3".into()),
    ])
}

fn bare_spawn(python: &std::path::Path, n: usize) -> anyhow::Result<Vec<f64>> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let ok = Command::new(python)
                .args(["-c", "pass"])
                .status()?
                .success();
            if !ok {
                bail!("python3 -c pass failed");
            }
            Ok(t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect()
}

struct Measured {
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    sequential_s: f64,
    throughput_s: f64,
    /// Mean ms per run of each timed stage during the latency loop (AntCode only).
    breakdown: Vec<(String, f64)>,
    /// The same during the throughput phase.
    throughput_breakdown: Vec<(String, f64)>,
    /// CPU time the whole machine spent per run in the throughput phase (all processes: the
    /// client, the system under test, its Python processes, Redis).
    cpu_ms_per_run: f64,
    /// Context switches on the whole machine per run in the same phase.
    switches_per_run: f64,
}

impl Measured {
    /// A system not measured in this run (`--warm-only`).
    fn skipped() -> Measured {
        Measured {
            p50_ms: f64::NAN,
            p95_ms: f64::NAN,
            p99_ms: f64::NAN,
            sequential_s: f64::NAN,
            throughput_s: f64::NAN,
            breakdown: vec![],
            throughput_breakdown: vec![],
            cpu_ms_per_run: f64::NAN,
            switches_per_run: f64::NAN,
        }
    }
}

/// CPU time spent by the whole machine so far (all cores, user + system), in ms, from
/// `/proc/stat`; NaN where it cannot be read.
/// Context switches on the whole machine so far (`ctxt` in `/proc/stat`); NaN where unreadable.
pub(crate) fn machine_switches() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

pub(crate) fn machine_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next().filter(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system (idle iowait) irq softirq; not steal, which is the hypervisor's
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    // /proc/stat counts in USER_HZ, which is 100 on Linux whatever the kernel's tick.
    busy * 10.0
}

/// Sum and count of every `*_seconds` histogram series in the process's registry, by series
/// (name and labels).
fn histogram_sums() -> std::collections::BTreeMap<String, (f64, f64)> {
    let text = antcode_core::telemetry::prometheus().render();
    let mut out = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        if let Some(base) = name.strip_suffix("_seconds_sum") {
            out.entry(format!("{base}{{{labels}")).or_default().0 = value;
        } else if let Some(base) = name.strip_suffix("_seconds_count") {
            out.entry(format!("{base}{{{labels}")).or_default().1 = value;
        }
    }
    out
}

/// Mean ms per run of each stage between two [`histogram_sums`] snapshots, over `runs` runs
/// (a stage recorded twice per run counts twice).
fn stage_means(
    before: &std::collections::BTreeMap<String, (f64, f64)>,
    after: &std::collections::BTreeMap<String, (f64, f64)>,
    runs: usize,
) -> Vec<(String, f64)> {
    let wanted = [
        "antcode_runner_phase",
        "antcode_runner_zygote_fork",
        "antcode_scheduler_recorder_lag",
    ];
    after
        .iter()
        .filter(|(k, _)| wanted.iter().any(|w| k.starts_with(&format!("{w}{{"))))
        .filter_map(|(k, (sum, count))| {
            let (s0, c0) = before.get(k).copied().unwrap_or_default();
            (count - c0 > 0.0).then(|| {
                let name = k.trim_end_matches(['{', '}']).replace("{phase=\"", ":");
                let name = name.trim_end_matches('"').to_string();
                (name, (sum - s0) * 1000.0 / runs as f64)
            })
        })
        .collect()
}

/// How one `antcode up` is set up for a measurement.
#[derive(Clone, Copy)]
struct Setup<'a> {
    broker_url: &'a str,
    /// SQLite's `synchronous` (its default, `full`, when `None`).
    sqlite_synchronous: Option<&'a str>,
    /// Skip the cold task.
    warm_only: bool,
    /// The runner's sandbox (on in every real deployment).
    sandbox: bool,
}

impl Setup<'static> {
    /// The embedded broker, SQLite's default durability, the sandbox on.
    fn embedded(warm_only: bool) -> Setup<'static> {
        Setup {
            broker_url: "memory://",
            sqlite_synchronous: None,
            warm_only,
            sandbox: true,
        }
    }
}

/// Cold and warm, one task each, on one `antcode up` set up as `setup` says; with
/// `setup.warm_only`, the cold one is skipped.
async fn measure_antcode(a: &Args, setup: Setup<'_>) -> anyhow::Result<(Measured, Measured)> {
    let Setup {
        broker_url,
        sqlite_synchronous,
        warm_only,
        sandbox,
    } = setup;
    let dir = tempfile::tempdir()?;
    let mut cfg = UpConfig::new(dir.path().to_path_buf());
    cfg.broker_url = broker_url.to_string();
    cfg.control_addr = "127.0.0.1:0".parse()?;
    cfg.edge_addr = "127.0.0.1:0".parse()?;
    cfg.admin_password = PASSWORD.into();
    cfg.runner_slots = a.slots;
    cfg.sqlite_synchronous = sqlite_synchronous.map(str::to_string);
    cfg.sandbox_off = !sandbox;
    let running = up::start(cfg).await?;
    let api = login(running.control_addr).await?;
    let form = reqwest::multipart::Form::new().text("name", "noop").part(
        "file",
        reqwest::multipart::Part::bytes(b"pass\n".to_vec()).file_name("noop.py"),
    );
    let project: Value = api
        .http
        .post(format!("{}/projects", api.base))
        .bearer_auth(&api.token)
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    let mut measured = Vec::new();
    for warm in [false, true] {
        if warm_only && !warm {
            measured.push(Measured::skipped());
            continue;
        }
        let task = api
            .post(
                "/tasks",
                json!({"name": if warm { "noop-warm" } else { "noop" }, "project_id": project["id"], "timeout_s": 60, "warm": warm}),
            )
            .await?;
        let task_id = task["id"].as_str().context("task id")?;
        measured.push(measure_task(a, &api, task_id).await?);
    }
    running.stop().await?;
    let warm = measured.pop().context("warm")?;
    let cold = measured.pop().context("cold")?;
    Ok((cold, warm))
}

async fn measure_task(a: &Args, api: &Api, task_id: &str) -> anyhow::Result<Measured> {
    for _ in 0..5 {
        let run = api.trigger(task_id).await?; // warm-up: builds the venv once
        api.wait(&run).await?;
    }
    let mut lat = Vec::with_capacity(a.latency_n);
    let before = histogram_sums();
    for _ in 0..a.latency_n {
        let t = Instant::now();
        api.invoke(task_id).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let breakdown = stage_means(&before, &histogram_sums(), a.latency_n);
    let t = Instant::now();
    for _ in 0..a.sequential_n {
        api.invoke(task_id).await?;
    }
    let sequential_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let before = histogram_sums();
    let (cpu_before, switches_before) = (machine_cpu_ms(), machine_switches());
    // Several producers, each triggering its share one at a time, as Celery's peer submits:
    // one client waiting for each answer measures that client's round trip, not the system.
    let shares = (0..a.producers).map(|i| {
        let share = a.throughput_n / a.producers + usize::from(i < a.throughput_n % a.producers);
        async move {
            for _ in 0..share {
                api.trigger(task_id).await?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(shares).await?;
    // Whether the submitting side was the limit.
    eprintln!(
        "triggered {} runs from {} producers in {:.2} s",
        a.throughput_n,
        a.producers,
        t.elapsed().as_secs_f64()
    );
    // Runs are leased in order, so waiting on the newest unfinished one (on its change
    // stream) usually ends the phase; the check repeats until none is left.
    while let Some(run) = api.unfinished(task_id).await? {
        api.wait(&run).await?;
    }
    let throughput_s = t.elapsed().as_secs_f64();
    let cpu_ms_per_run = (machine_cpu_ms() - cpu_before) / a.throughput_n as f64;
    let switches_per_run = (machine_switches() - switches_before) / a.throughput_n as f64;
    let throughput_breakdown = stage_means(&before, &histogram_sums(), a.throughput_n);
    api.all_succeeded(task_id).await?;
    Ok(Measured {
        p50_ms: pct(&lat, 50.0),
        p95_ms: pct(&lat, 95.0),
        p99_ms: pct(&lat, 99.0),
        sequential_s,
        throughput_s,
        breakdown,
        throughput_breakdown,
        cpu_ms_per_run,
        switches_per_run,
    })
}

fn measure_celery(a: &Args, venv: &std::path::Path) -> anyhow::Result<Measured> {
    let dir = std::env::current_dir()?.join("ops/bench/celery");
    let queue = format!("antcode-bench-{}", std::process::id());
    let mut worker = Command::new(venv.join("bin/celery"))
        .args([
            "-A",
            "tasks",
            "worker",
            "--pool=prefork",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ])
        .arg(format!("--concurrency={}", a.slots))
        .arg(format!("-n=bench{}@localhost", std::process::id()))
        .current_dir(&dir)
        .env("BENCH_QUEUE", &queue)
        .stdout(Stdio::null())
        .spawn()
        .context("starting the celery worker")?;
    std::thread::sleep(Duration::from_secs(3));
    let out = Command::new(venv.join("bin/python"))
        .arg("peer.py")
        .args([
            a.latency_n.to_string(),
            a.throughput_n.to_string(),
            a.sequential_n.to_string(),
            a.producers.to_string(),
        ])
        .current_dir(&dir)
        .env("BENCH_QUEUE", &queue)
        .output();
    let _ = worker.kill();
    let _ = worker.wait();
    let out = out?;
    if !out.status.success() {
        bail!(
            "celery peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(Measured {
        p50_ms: f("p50_ms"),
        p95_ms: f("p95_ms"),
        p99_ms: f("p99_ms"),
        sequential_s: f("sequential_s"),
        throughput_s: f("throughput_s"),
        breakdown: vec![],
        throughput_breakdown: vec![],
        cpu_ms_per_run: f("cpu_ms_per_run"),
        switches_per_run: f("switches_per_run"),
    })
}

/// `a.pairs` pairs of throughput phases, warm AntCode (embedded broker, its own `up` each time,
/// a short latency phase first) and Celery, in alternating order; prints each pair and the
/// median ratio, and returns the (warm, Celery) tasks/s of each pair.
async fn warm_against_celery(a: &Args, venv: &std::path::Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let quick = Args {
        latency_n: 5,
        sequential_n: 1,
        celery_venv: None,
        pairs: 0,
        ..*a
    };
    println!(
        "\nWarm against Celery, {} alternated pairs of {}-task throughput phases\n",
        a.pairs, a.throughput_n
    );
    println!("| pair | warm tasks/s | warm CPU ms/task | Celery tasks/s | Celery CPU ms/task | warm / Celery |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rate = |m: &Measured| a.throughput_n as f64 / m.throughput_s;
    let mut pairs = Vec::with_capacity(a.pairs);
    for i in 1..=a.pairs {
        // Each goes first in every other pair, so a steady drift of the machine's speed does
        // not favour one of them.
        let celery_first = match i % 2 == 0 {
            true => Some(measure_celery(&quick, venv)?),
            false => None,
        };
        let (_, warm) = measure_antcode(&quick, Setup::embedded(true)).await?;
        let celery = match celery_first {
            Some(c) => c,
            None => measure_celery(&quick, venv)?,
        };
        let (w, c) = (rate(&warm), rate(&celery));
        println!(
            "| {i} | {w:.0} | {:.2} | {c:.0} | {:.2} | {:.0}% |",
            warm.cpu_ms_per_run,
            celery.cpu_ms_per_run,
            100.0 * w / c
        );
        pairs.push((w, c));
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|(w, c)| 100.0 * w / c).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "\nWarm / Celery over {} pairs: median {:.1}%, {:.0}–{:.0}% (target ≥ 100%)",
        ratios.len(),
        median(&ratios),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(pairs)
}

/// The cold and warm tasks with the sandbox on and off, round after round.
struct SandboxRounds {
    /// (cold, warm) with the sandbox on; the first is the table's main row.
    on: Vec<(Measured, Measured)>,
    off: Vec<(Measured, Measured)>,
}

/// `a.sandbox_rounds` rounds of the sandbox off and on, in alternating order so a drift of the
/// machine's speed favours neither; `first` is an on-measurement already taken, which opens the
/// first round.
async fn sandbox_rounds(a: &Args, first: (Measured, Measured)) -> anyhow::Result<SandboxRounds> {
    let mut rounds = SandboxRounds {
        on: vec![first],
        off: Vec::new(),
    };
    let off = Setup {
        sandbox: false,
        ..Setup::embedded(a.warm_only)
    };
    let on = Setup::embedded(a.warm_only);
    for i in 0..a.sandbox_rounds {
        // Round 1 is on (already measured) then off, round 2 off then on, and so on.
        if i % 2 == 0 && i > 0 {
            rounds.on.push(measure_antcode(a, on).await?);
        }
        rounds.off.push(measure_antcode(a, off).await?);
        if i % 2 == 1 {
            rounds.on.push(measure_antcode(a, on).await?);
        }
    }
    Ok(rounds)
}

/// The lowest and highest of `xs` (NaN-free), as `a–b`, or one value.
fn range(xs: &[f64], decimals: usize) -> String {
    let xs: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match xs.len() {
        0 => "—".into(),
        _ if (hi - lo).abs() < f64::EPSILON => format!("{lo:.decimals$}"),
        _ => format!("{lo:.decimals$}–{hi:.decimals$}"),
    }
}

impl SandboxRounds {
    /// Each target's figure over the rounds, sandbox on against off.
    fn figures(&self, a: &Args, bare_p50: f64) -> Vec<(&'static str, String, Vec<f64>, Vec<f64>)> {
        let n = a.throughput_n as f64;
        let of = |rounds: &[(Measured, Measured)], f: &dyn Fn(&(Measured, Measured)) -> f64| {
            rounds.iter().map(f).collect::<Vec<f64>>()
        };
        let fig = |name, target: &str, f: &dyn Fn(&(Measured, Measured)) -> f64| {
            (name, target.to_string(), of(&self.on, f), of(&self.off, f))
        };
        vec![
            fig("cold p50 over the bare spawn, ms", "≤ 5", &|r| {
                r.0.p50_ms - bare_p50
            }),
            fig("cold p95, ms", "", &|r| r.0.p95_ms),
            fig("warm p50 end to end, ms", "≤ 3", &|r| r.1.p50_ms),
            fig("warm p95, ms", "", &|r| r.1.p95_ms),
            fig("cold runs/s, 2 slots", "≥ 150", &|r| n / r.0.throughput_s),
            fig("warm runs/s", "on ≥ 90% of off", &|r| {
                n / r.1.throughput_s
            }),
            fig("cold CPU ms per run", "", &|r| r.0.cpu_ms_per_run),
            fig("warm CPU ms per run", "", &|r| r.1.cpu_ms_per_run),
        ]
    }

    /// Prints the sandbox's cost: each figure's range over the rounds, on and off.
    fn summary(&self, a: &Args, bare_p50: f64) {
        if self.off.is_empty() {
            return;
        }
        println!(
            "
The sandbox's cost, {} round(s) each, alternated ({} slots; bare spawn p50 {bare_p50:.1} ms)
",
            self.off.len(),
            a.slots
        );
        println!("| figure | sandbox on | sandbox off | target |");
        println!("|---|---:|---:|---|");
        for (name, target, on, off) in self.figures(a, bare_p50) {
            println!(
                "| {name} | {} | {} | {target} |",
                range(&on, 1),
                range(&off, 1)
            );
        }
        let ratios: Vec<f64> = self
            .on
            .iter()
            .zip(&self.off)
            .map(|(on, off)| 100.0 * off.1.throughput_s / on.1.throughput_s)
            .collect();
        println!(
            "
Warm throughput, sandbox on / off: {}% (target ≥ 90%)",
            range(&ratios, 0)
        );
    }

    fn json(&self, a: &Args, bare_p50: f64) -> Value {
        let figures: Vec<Value> = self
            .figures(a, bare_p50)
            .into_iter()
            .map(|(name, target, on, off)| json!({"figure": name, "target": target, "on": on, "off": off}))
            .collect();
        json!({"rounds": self.off.len(), "figures": figures})
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (a, flags) = parse_args();
    // Off unless asked for: the runner's per-run timeline is logged at debug level.
    if std::env::var_os("RUST_LOG").is_some() {
        antcode_core::telemetry::init_tracing(false);
    }
    let mut floors = Vec::new();
    for (name, python) in floor_pythons()? {
        let xs = bare_spawn(&python, a.latency_n)?;
        floors.push((name, pct(&xs, 50.0), pct(&xs, 99.0)));
    }
    // The first is the fair floor (see `floor_pythons`).
    let bare_p50 = floors[0].1;
    // The warm fork by itself, before the system is up: what the fresh process costs alone.
    let fork_alone = fork::measure(1000).await?;
    let (ours, warm) = measure_antcode(&a, Setup::embedded(a.warm_only)).await?;
    // The same warm task without an fsync per commit: what SQLite's durability costs.
    let normal = Setup {
        sqlite_synchronous: Some("normal"),
        ..Setup::embedded(true)
    };
    let (_, warm_normal) = measure_antcode(&a, normal).await?;
    // The same on the machine's Redis (a database and key prefix of its own), as Celery uses it.
    let on_redis = format!(
        "redis://127.0.0.1:6379/3?prefix=bench-runs-{}",
        std::process::id()
    );
    let redis = match a.redis {
        true => Some(
            measure_antcode(
                &a,
                Setup {
                    broker_url: &on_redis,
                    ..Setup::embedded(a.warm_only)
                },
            )
            .await?,
        ),
        false => None,
    };
    let sandbox = sandbox_rounds(&a, (ours, warm)).await?;
    let (ours, warm) = (&sandbox.on[0].0, &sandbox.on[0].1);
    // Printed now, so a failing peer does not lose our numbers.
    for (name, m) in [("cold", ours), ("warm", warm)] {
        eprintln!(
            "AntCode {name}: p50 {:.1} ms, p99 {:.1} ms, {} sequential {:.2} s, {} tasks {:.1} s (bare spawn p50 {bare_p50:.1} ms)",
            m.p50_ms, m.p99_ms, a.sequential_n, m.sequential_s, a.throughput_n, m.throughput_s
        );
    }
    let celery = match &a.celery_venv {
        Some(v) => Some(measure_celery(&a, v)?),
        None => None,
    };

    println!("\nNo-op Python task, trigger → succeeded, {} slot(s) / worker processes, {} producers in the throughput phase, this machine, one run\n", a.slots, a.producers);
    println!(
        "| system | p50 ms | p99 ms | {} sequential s | {} tasks s | tasks/s | CPU ms/task | switches/task |",
        a.sequential_n, a.throughput_n
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, p50, p99) in &floors {
        println!("| {name} | {p50:.1} | {p99:.1} | — | — | — | — | — |");
    }
    let row = |name: &str, m: &Measured| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.1} | {:.0} | {:.2} | {:.0} |",
            m.p50_ms,
            m.p99_ms,
            m.sequential_s,
            m.throughput_s,
            a.throughput_n as f64 / m.throughput_s,
            m.cpu_ms_per_run,
            m.switches_per_run
        )
    };
    row("AntCode cold (up: embedded broker, SQLite)", ours);
    row("AntCode warm (`warm: true`, forked from the zygote)", warm);
    row(
        "AntCode warm, SQLite `synchronous=normal` (no fsync per commit)",
        &warm_normal,
    );
    for (i, (cold, warm)) in sandbox.off.iter().enumerate() {
        let round = match sandbox.off.len() {
            1 => String::new(),
            _ => format!(", round {}", i + 1),
        };
        row(&format!("AntCode cold, sandbox OFF{round}"), cold);
        row(&format!("AntCode warm, sandbox OFF{round}"), warm);
    }
    for (i, (cold, warm)) in sandbox.on.iter().enumerate().skip(1) {
        row(&format!("AntCode cold, round {}", i + 1), cold);
        row(&format!("AntCode warm, round {}", i + 1), warm);
    }
    if let Some((cold, warm)) = &redis {
        row("AntCode cold (up: Redis broker, SQLite)", cold);
        row("AntCode warm (up: Redis broker, SQLite)", warm);
    }
    if let Some(c) = &celery {
        row("Celery 5 prefork (Redis broker + backend)", c);
    }
    println!(
        "| the warm fork alone (runner's zygote pool, 1000 sequential no-op runs; no API, store or broker) | {:.1} | — | — | — | {:.0} | {:.2} | {:.0} |",
        fork_alone.wall_ms,
        1000.0 / fork_alone.wall_ms,
        fork_alone.cpu_ms,
        fork_alone.switches
    );
    println!("\nAntCode p50 over the bare spawn: {:.1} ms (target ≤ 15 ms); {} sequential: {:.2} s (target ≤ 2 s)", ours.p50_ms - bare_p50, a.sequential_n, ours.sequential_s);
    println!(
        "Warm: p50 {:.1} ms, {:.1} ms below cold; over the bare spawn {:+.1} ms",
        warm.p50_ms,
        ours.p50_ms - warm.p50_ms,
        warm.p50_ms - bare_p50
    );
    println!(
        "Warm overhead: p50 {:.1} ms against the bare spawn's {bare_p50:.1} ms = {:+.1} ms (target ≤ +5 ms)",
        warm.p50_ms,
        warm.p50_ms - bare_p50
    );
    if let Some(c) = &celery {
        println!(
            "Warm against Celery: p50 {:.1} vs {:.1} ms ({:+.1} ms); throughput {:.0} vs {:.0} tasks/s (target ≥ Celery)",
            warm.p50_ms,
            c.p50_ms,
            warm.p50_ms - c.p50_ms,
            a.throughput_n as f64 / warm.throughput_s,
            a.throughput_n as f64 / c.throughput_s
        );
        println!(
            "Warm with SQLite synchronous=normal against Celery: throughput {:.0} vs {:.0} tasks/s",
            a.throughput_n as f64 / warm_normal.throughput_s,
            a.throughput_n as f64 / c.throughput_s
        );
    }
    sandbox.summary(&a, bare_p50);
    let mut staged = vec![
        ("cold, embedded broker", ours),
        ("warm, embedded broker", warm),
        ("warm, synchronous=normal", &warm_normal),
    ];
    if let Some((cold, warm)) = &redis {
        staged.extend([("cold, Redis broker", cold), ("warm, Redis broker", warm)]);
    }
    for (name, m) in staged {
        for (phase, stages) in [
            ("latency", &m.breakdown),
            ("throughput", &m.throughput_breakdown),
        ] {
            let stages: Vec<String> = stages
                .iter()
                .map(|(k, ms)| format!("{} {ms:.2}", k.replace("antcode_", "")))
                .collect();
            println!(
                "Stages, mean ms per run ({name}, {phase}): {}",
                stages.join(", ")
            );
        }
    }

    let pairs = match &a.celery_venv {
        Some(v) if a.pairs > 0 => warm_against_celery(&a, v).await?,
        _ => vec![],
    };
    let n = a.throughput_n;
    let system = |name: &str, m: &Measured| {
        json!({"name": name, "p50_ms": m.p50_ms, "p95_ms": m.p95_ms, "p99_ms": m.p99_ms, "sequential_s": m.sequential_s,
            "throughput_s": m.throughput_s, "tasks_per_s": n as f64 / m.throughput_s,
            "cpu_ms_per_task": m.cpu_ms_per_run, "switches_per_task": m.switches_per_run})
    };
    let mut rows = vec![
        system("AntCode cold, embedded broker", ours),
        system("AntCode warm, embedded broker", warm),
        system("AntCode warm, SQLite synchronous=normal", &warm_normal),
    ];
    for (i, (cold, warm)) in sandbox.off.iter().enumerate() {
        rows.push(system(
            &format!("AntCode cold, sandbox off, round {}", i + 1),
            cold,
        ));
        rows.push(system(
            &format!("AntCode warm, sandbox off, round {}", i + 1),
            warm,
        ));
    }
    for (i, (cold, warm)) in sandbox.on.iter().enumerate().skip(1) {
        rows.push(system(&format!("AntCode cold, round {}", i + 1), cold));
        rows.push(system(&format!("AntCode warm, round {}", i + 1), warm));
    }
    if let Some((cold, warm)) = &redis {
        rows.push(system("AntCode cold, Redis broker", cold));
        rows.push(system("AntCode warm, Redis broker", warm));
    }
    let stages = |m: &Measured| {
        json!({
            "latency": m.breakdown.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "throughput": m.throughput_breakdown.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })
    };
    let peer = json!({
        "floors": floors.iter().map(|(n, p50, p99)| json!({"name": n, "p50_ms": p50, "p99_ms": p99})).collect::<Vec<_>>(),
        "celery": celery.as_ref().map(|c| system("Celery 5 prefork, Redis broker + backend", c)),
        "pairs": pairs.iter().map(|(w, c)| json!({"warm_tasks_per_s": w, "celery_tasks_per_s": c, "ratio": w / c})).collect::<Vec<_>>(),
    });
    let details = json!({
        "slots": a.slots,
        "producers": a.producers,
        "latency_n": a.latency_n,
        "sequential_n": a.sequential_n,
        "throughput_n": n,
        "sandbox": sandbox.json(&a, bare_p50),
        "stages_ms_per_run": {"warm": stages(warm), "cold": stages(ours)},
        "warm_fork_alone": {"cpu_ms_per_run": fork_alone.cpu_ms, "wall_ms_per_run": fork_alone.wall_ms, "switches_per_run": fork_alone.switches},
    });
    println!();
    results::write(&flags, rows, peer, details)
}
