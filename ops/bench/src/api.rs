//! `bench-api`: control-plane API throughput and latency under load, per core.
//!
//! Starts `antcode up` in process (embedded broker, SQLite, no runner, so triggered runs stay
//! queued and only the control plane is measured), seeds runs, then drives two endpoints with
//! `--connections` concurrent keep-alive connections for a fixed number of requests each:
//! `GET /api/v1/runs?limit=50` (a full page of 50) and `POST /api/v1/tasks/{id}/trigger`.
//! Prints a table (p50/p99 ms, req/s, req/s per core) and writes the results file
//! (`results.rs`).
//! The load generator runs on the same machine and shares its cores with the server.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode::up::{self, UpConfig};

mod results;
use results::Flags;

const PASSWORD: &str = "bench-password";

struct Args {
    connections: usize,
    requests: usize,
    seed_runs: usize,
}

const USAGE: &str = "\
bench-api: control-plane API throughput and latency under load

Usage: bench-api [--connections 16] [--requests 5000] [--seed-runs 500]
  --connections N   concurrent keep-alive connections per endpoint
  --requests N      requests per endpoint
  --seed-runs N     runs created before the measurement";

fn parse_args() -> (Args, Flags) {
    let mut a = Args {
        connections: 16,
        requests: 5000,
        seed_runs: 500,
    };
    let mut flags = Flags::from_env("api", USAGE);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--connections" => a.connections = flags.value(&flag),
            "--requests" => a.requests = flags.value(&flag),
            "--seed-runs" => a.seed_runs = flags.value(&flag),
            other => flags.unknown(other),
        }
    }
    if a.connections == 0 || a.requests == 0 {
        flags.fail("--connections and --requests must be at least 1");
    }
    (a, flags)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

struct Result {
    name: &'static str,
    n: usize,
    elapsed_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Result {
    fn rps(&self) -> f64 {
        self.n as f64 / self.elapsed_s
    }
}

/// A client that keeps one connection per worker (the pool holds at most one idle connection).
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Sends `total` requests built by `make` over `connections` workers; every answer must be 2xx.
async fn load(
    name: &'static str,
    connections: usize,
    total: usize,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
) -> anyhow::Result<Result> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (next, make) = (next.clone(), make.clone());
        let http = client()?;
        workers.spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let t = Instant::now();
                let res = make(&http).send().await?;
                let status = res.status();
                res.bytes().await?;
                if !status.is_success() {
                    bail!("{name}: answer {status}");
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(done) = workers.join_next().await {
        all.extend(done??);
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    Ok(Result {
        name,
        n: all.len(),
        elapsed_s,
        p50_ms: pct(&all, 50.0),
        p99_ms: pct(&all, 99.0),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (a, flags) = parse_args();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir()?;
    let mut cfg = UpConfig::new(dir.path().to_path_buf());
    cfg.control_addr = "127.0.0.1:0".parse()?;
    cfg.edge_addr = "127.0.0.1:0".parse()?;
    cfg.admin_password = PASSWORD.into();
    cfg.runner = false;
    let running = up::start(cfg).await?;
    let base = format!("http://{}/api/v1", running.control_addr);
    let http = client()?;
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("login token")?.to_string();
    let project: Value = http
        .post(format!("{base}/projects"))
        .bearer_auth(&token)
        .json(&json!({"name": "noop", "code": "pass\n"}))
        .send()
        .await?
        .json()
        .await?;
    let task: Value = http
        .post(format!("{base}/tasks"))
        .bearer_auth(&token)
        .json(&json!({"name": "noop", "project_id": project["id"], "timeout_s": 60}))
        .send()
        .await?
        .json()
        .await?;
    let task_id = task["id"].as_str().context("task id")?.to_string();
    let trigger_url = format!("{base}/tasks/{task_id}/trigger");
    let runs_url = format!("{base}/runs?limit=50");

    for _ in 0..a.seed_runs {
        let res = http.post(&trigger_url).bearer_auth(&token).send().await?;
        if !res.status().is_success() {
            bail!("seeding: trigger answered {}", res.status());
        }
    }
    let page: Value = http
        .get(&runs_url)
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let items = page
        .as_array()
        .or_else(|| page["items"].as_array())
        .map_or(0, |v| v.len());
    if a.seed_runs >= 50 && items != 50 {
        bail!("GET /runs?limit=50 returned {items} runs, not a page of 50: {page}");
    }

    let t = token.clone();
    let list = load(
        "GET /api/v1/runs?limit=50",
        a.connections,
        a.requests,
        Arc::new(move |h| h.get(&runs_url).bearer_auth(&t)),
    )
    .await?;
    let t = token.clone();
    let trigger = load(
        "POST /api/v1/tasks/{id}/trigger",
        a.connections,
        a.requests,
        Arc::new(move |h| h.post(&trigger_url).bearer_auth(&t)),
    )
    .await?;
    running.stop().await?;

    println!(
        "\nControl API under load: {} connections, {} requests per endpoint, {} seeded runs, {cores} core(s) shared by server and load generator\n",
        a.connections, a.requests, a.seed_runs
    );
    println!("| endpoint | requests | p50 ms | p99 ms | req/s | req/s per core |");
    println!("|---|---|---|---|---|---|");
    let mut rows = vec![];
    for r in [&list, &trigger] {
        println!(
            "| `{}` | {} | {:.2} | {:.2} | {:.0} | {:.0} |",
            r.name,
            r.n,
            r.p50_ms,
            r.p99_ms,
            r.rps(),
            r.rps() / cores as f64
        );
        rows.push(json!({"name": r.name, "requests": r.n, "elapsed_s": r.elapsed_s,
            "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "rps": r.rps(), "rps_per_core": r.rps() / cores as f64}));
    }
    // No peer runs beside it: the API is measured against its own targets.
    let details =
        json!({"connections": a.connections, "requests": a.requests, "seed_runs": a.seed_runs});
    println!();
    results::write(&flags, rows, Value::Null, details)
}
