//! `bench-broker`: the Redis broker's job round trip (publish → lease → release) beside the raw
//! `XADD` rate `redis-benchmark` gets from the same server in the same run.
//!
//!   cargo run --release -p antcode-bench --bin bench-broker -- [--redis-url URL] [-n N] [-c C]
//!
//! Each of C concurrent clients (redis-benchmark's `-c`) works on its own queue, so a lease
//! always finds the job that client just published; with `--batch B` > 1 a client publishes B jobs
//! and leases them with one `LeaseRequest { max: B }`. Every round trip is several Redis commands
//! (idempotency check and `XADD`, `XREADGROUP` + lease bookkeeping, release), so the ratio to one
//! bare `XADD` is the cost of the broker's guarantees. Each batch size runs twice: releasing on
//! the next `release_and_lease` (2 calls a job) and with a `release` per lease (3 calls a job);
//! each row prints the CPU it cost per job in Redis and in this process. With `--labels` each
//! batch size also runs with labels: every job requires two labels (`gpu`, and a zone of its
//! client's) and every lease carries them, so each client reads a route of its queue
//! (`antcode_core::broker::routing`) among 2·C known queues — routing's cost beside the same
//! rows without it. With `--gates` each batch size also runs with gated jobs: every job carries
//! a concurrency key of its client's (limit 2·B, so it is counted and checked at every lease but
//! never full), so each lease checks the gate before it reads and counts what it claims, and
//! each release frees the slot — the cost of concurrency limits beside the same rows without
//! them; with both flags, also with labels and gates together. `--rounds N` runs each row's
//! variants N times, alternated (plain, gated; gated, plain; …), and ends with each variant's
//! jobs/s over plain's of the same round, so a drift of the machine reaches both sides of a ratio.
//! The results file (`results.rs`) holds the rows and the `redis-benchmark` peer.

use anyhow::{bail, Context};
use futures::future::try_join_all;
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode_core::broker::{prelude::*, redis::RedisBroker, HeldLease, LeaseRequest};
use antcode_core::model::Job;

mod job;
use job::job;
mod results;
use results::Flags;

const USAGE: &str = "\
bench-broker: the Redis broker's job round trip beside redis-benchmark's bare XADD

Usage: bench-broker [--redis-url URL | --host 127.0.0.1 --port 6379] [-n 200000] [-c 50]
                    [--batch 1,10,50] [--labels] [--gates] [--rounds 1]
  --redis-url URL   the broker's URL (default: database 15, key prefix bench-broker)
  --host, --port    the Redis server, for redis-benchmark too
  -n N              jobs per row (and XADDs for redis-benchmark)
  -c N              concurrent clients
  --batch LIST      lease sizes to measure, comma-separated
  --labels          also measure each batch size with label-routed jobs
  --gates           also measure each batch size with jobs under a concurrency key
  --rounds N        each row's variants N times, alternated, then their ratios to plain";

struct Args {
    redis_url: String,
    host: String,
    port: u16,
    n: usize,
    clients: usize,
    batches: Vec<usize>,
    labels: bool,
    gates: bool,
    rounds: usize,
}

fn parse_args() -> (Args, Flags) {
    let mut a = Args {
        redis_url: String::new(),
        host: "127.0.0.1".into(),
        port: 6379,
        n: 200_000,
        clients: 50,
        batches: vec![1, 10, 50],
        labels: false,
        gates: false,
        rounds: 1,
    };
    let mut flags = Flags::from_env("broker", USAGE);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--host" => a.host = flags.value(&flag),
            "--port" => a.port = flags.value(&flag),
            "--redis-url" => a.redis_url = flags.value(&flag),
            "-n" => a.n = flags.value(&flag),
            "-c" => a.clients = flags.value(&flag),
            "--batch" => {
                let list: String = flags.value(&flag);
                a.batches = list
                    .split(',')
                    .map(|b| b.trim().parse())
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| flags.fail(&format!("--batch {list:?}: {e}")));
            }
            "--labels" => a.labels = true,
            "--gates" => a.gates = true,
            "--rounds" => a.rounds = flags.value::<usize>(&flag).max(1),
            other => flags.unknown(other),
        }
    }
    if a.redis_url.is_empty() {
        // A database and key prefix of its own: nothing of a deployment on the same server is touched.
        a.redis_url = format!("redis://{}:{}/15?prefix=bench-broker", a.host, a.port);
    }
    (a, flags)
}

/// CPU time spent so far, to split a row's cost between Redis and its client: Redis's own
/// `used_cpu_*` and the time inside `EVALSHA` from `INFO` (server-wide, so other traffic on a
/// shared server counts too), and this process's and its children's from `/proc/self/stat`.
#[derive(Clone, Copy)]
struct Cpu {
    redis_s: f64,
    evalsha_s: f64,
    own_s: f64,
    children_s: f64,
}

impl Cpu {
    fn now(a: &Args) -> anyhow::Result<Cpu> {
        let out = Command::new("redis-cli")
            .args(["-h", &a.host, "-p", &a.port.to_string(), "INFO", "all"])
            .output()
            .context("redis-cli")?;
        let info = String::from_utf8_lossy(&out.stdout);
        let num = |key: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let evalsha_us = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
            .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("usec=")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        // Fields 14-17 of /proc/self/stat: utime, stime, cutime, cstime in clock ticks (100/s).
        let stat = std::fs::read_to_string("/proc/self/stat").context("/proc/self/stat")?;
        let after_name = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let ticks: Vec<f64> = after_name
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|t| t.parse().unwrap_or(0.0))
            .collect();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / 100.0;
        Ok(Cpu {
            redis_s: num("used_cpu_sys:") + num("used_cpu_user:"),
            evalsha_s: evalsha_us / 1e6,
            own_s: tick(0) + tick(1),
            children_s: tick(2) + tick(3),
        })
    }

    /// Microseconds per operation of each part between `self` and `later`.
    fn per_op(&self, later: &Cpu, ops: f64) -> [f64; 4] {
        let us = |a: f64, b: f64| (b - a) * 1e6 / ops;
        [
            us(self.redis_s, later.redis_s),
            us(self.evalsha_s, later.evalsha_s),
            us(self.own_s, later.own_s),
            us(self.children_s, later.children_s),
        ]
    }
}

/// `redis-benchmark ... -q XADD bench '*' f <150 bytes>`: requests per second.
fn raw_xadd(a: &Args) -> anyhow::Result<f64> {
    let payload = "x".repeat(150);
    let out = Command::new("redis-benchmark")
        .args(["-h", &a.host, "-p", &a.port.to_string()])
        .args(["-n", &a.n.to_string(), "-c", &a.clients.to_string(), "-q"])
        .args(["XADD", "antcode-bench-xadd", "*", "f", &payload])
        .output()
        .context("redis-benchmark (apt-get install redis-tools)")?;
    if !out.status.success() {
        bail!("redis-benchmark: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // redis-benchmark rewrites its progress line with \r; the last line holds the result:
    // "XADD antcode-bench-xadd * f xxx...: 81234.57 requests per second, p50=0.311 msec"
    let last = text
        .rsplit(['\r', '\n'])
        .find(|l| l.contains("requests per second"));
    let rate = last
        .and_then(|l| l.split(": ").last())
        .and_then(|l| l.split_whitespace().next())
        .and_then(|r| r.parse::<f64>().ok())
        .with_context(|| format!("cannot parse redis-benchmark output {text:?}"))?;
    let _ = Command::new("redis-cli")
        .args([
            "-h",
            &a.host,
            "-p",
            &a.port.to_string(),
            "DEL",
            "antcode-bench-xadd",
        ])
        .output();
    Ok(rate)
}

/// How a client ends its leases.
#[derive(Clone, Copy)]
enum Release {
    /// `release` per lease after the lease call: publish, lease, release — three calls a job.
    Apart,
    /// Handed to the next `release_and_lease`, as a runner asking for its next job does:
    /// publish, release-and-lease — two calls a job.
    WithNextLease,
}

/// What the jobs of a row carry besides the plain job.
#[derive(Clone, Copy, PartialEq)]
struct Variant {
    /// Two label requirements, met by the lease.
    labelled: bool,
    /// A concurrency key of the client's, limit twice the batch (never full).
    gated: bool,
}

impl Variant {
    /// The variant's row name suffix and its queues' suffix.
    fn names(self) -> (&'static str, &'static str) {
        match (self.labelled, self.gated) {
            (false, false) => ("", ""),
            (true, false) => (", labelled", "-l"),
            (false, true) => (", gated", "-g"),
            (true, true) => (", labelled and gated", "-lg"),
        }
    }

    fn name(self) -> &'static str {
        self.names().0
    }
}

/// Jobs done and round trips per second with `clients` concurrent clients each leasing `batch`
/// jobs at a time.
async fn round_trips(
    a: &Args,
    broker: Arc<RedisBroker>,
    batch: usize,
    release: Release,
    variant: Variant,
) -> anyhow::Result<(usize, f64)> {
    let Variant { labelled, gated } = variant;
    let per_client = (a.n / a.clients / batch).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            // A queue of each variant's own: a plain lease never reads a gated route, and a
            // gated one reads its gated route alone.
            let queue = format!("bench-{c}{}", variant.names().1);
            let labels: std::collections::BTreeMap<String, String> = if labelled {
                [("gpu", "true".to_string()), ("zone", format!("z{c}"))]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            } else {
                Default::default()
            };
            let req = LeaseRequest {
                worker_id: format!("bench-worker-{c}"),
                queues: vec![queue.clone()],
                labels: labels.clone(),
                max: batch,
                ttl: Duration::from_secs(60),
            };
            let gates: std::collections::BTreeMap<String, u32> = if gated {
                [(format!("key:bench-{c}"), 2 * batch as u32)].into()
            } else {
                Default::default()
            };
            let mut done = 0usize;
            // Leases finished but not yet released (`Release::WithNextLease`).
            let mut finished: Vec<HeldLease> = Vec::new();
            for i in 0..per_client {
                // A batch's publishes (and later its releases) go out together: the multiplexed
                // connection pipelines them, one write and one read for the lot.
                let jobs: Vec<Job> = (0..batch)
                    .map(|j| {
                        let mut job = job(
                            format!("run-{batch}-{labelled}-{gated}-{c}-{i}-{j}"),
                            &queue,
                        );
                        job.labels = labels.clone();
                        job.gates = gates.clone();
                        job
                    })
                    .collect();
                try_join_all(jobs.iter().map(|j| broker.publish(j))).await?;
                let mut got = 0;
                while got < batch {
                    // The job is already there (a busy queue), so the lease's one-call
                    // read-and-claim finds it; it would block only on an empty queue.
                    let wait = Duration::from_millis(100);
                    let leases = match release {
                        Release::Apart => {
                            let leases = broker.lease(&req, wait).await?;
                            try_join_all(
                                leases
                                    .iter()
                                    .map(|l| broker.release(&l.job.run_id, &l.lease_token)),
                            )
                            .await?;
                            leases
                        }
                        Release::WithNextLease => {
                            let leases = broker
                                .release_and_lease(&std::mem::take(&mut finished), &req, wait)
                                .await?;
                            finished.extend(leases.iter().map(|l| HeldLease {
                                run_id: l.job.run_id.clone(),
                                lease_token: l.lease_token.clone(),
                            }));
                            leases
                        }
                    };
                    got += leases.len();
                }
                done += got;
            }
            // The last ones have no next lease to ride on.
            for h in finished {
                broker.release(&h.run_id, &h.lease_token).await?;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, total as f64 / started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (a, flags) = parse_args();
    let broker = Arc::new(
        RedisBroker::open(&a.redis_url)
            .await
            .with_context(|| format!("opening {}", a.redis_url))?,
    );
    let before = Cpu::now(&a)?;
    let xadd = raw_xadd(&a)?;
    let [xadd_redis, _, _, xadd_client] = before.per_op(&Cpu::now(&a)?, a.n as f64);
    println!(
        "redis-benchmark XADD (150-byte field, -n {} -c {}): {xadd:.0} req/s; CPU per request: \
         Redis {xadd_redis:.1} µs, redis-benchmark {xadd_client:.1} µs",
        a.n, a.clients
    );
    println!();
    println!(
        "| broker round trip (publish → lease → release) | jobs/s | % of raw XADD \
         | Redis CPU µs/job | of it in EVALSHA | bench client CPU µs/job |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rows = vec![];
    let variants: Vec<Variant> = [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .filter(|&(l, g)| (!l || a.labels) && (!g || a.gates))
        .map(|(labelled, gated)| Variant { labelled, gated })
        .collect();
    // Per row, each variant's jobs/s in each round.
    let mut rates: Vec<(String, Vec<Vec<f64>>)> = vec![];
    for &batch in &a.batches {
        for (release, how) in [
            (
                Release::WithNextLease,
                "release with the next lease (2 calls/job)",
            ),
            (Release::Apart, "release apart (3 calls/job)"),
        ] {
            let mut row_rates = vec![vec![]; variants.len()];
            for round in 0..a.rounds {
                // Every other round in the reverse order: a variant that always ran second
                // would carry whatever the first left behind.
                let mut order: Vec<usize> = (0..variants.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for v in order {
                    let variant = variants[v];
                    let how = format!("{how}{}", variant.name());
                    let before = Cpu::now(&a)?;
                    let (jobs, rate) =
                        round_trips(&a, broker.clone(), batch.max(1), release, variant).await?;
                    let [redis, evalsha, client, _] = before.per_op(&Cpu::now(&a)?, jobs as f64);
                    println!(
                        "| lease max = {batch}, {} clients, {how} | {rate:.0} | {:.1}% \
                         | {redis:.1} | {evalsha:.1} | {client:.1} |",
                        a.clients,
                        100.0 * rate / xadd
                    );
                    row_rates[v].push(rate);
                    rows.push(
                        json!({"name": format!("lease max = {batch}, {how}"), "round": round + 1,
                        "jobs_per_s": rate, "pct_of_xadd": 100.0 * rate / xadd,
                        "redis_cpu_us_per_job": redis, "evalsha_us_per_job": evalsha,
                        "client_cpu_us_per_job": client}),
                    );
                }
            }
            rates.push((format!("lease max = {batch}, {how}"), row_rates));
        }
    }
    let ratios = print_ratios(&variants, &rates);
    println!();
    let peer = json!({"name": "redis-benchmark XADD, 150-byte field", "req_per_s": xadd,
        "redis_cpu_us_per_req": xadd_redis, "client_cpu_us_per_req": xadd_client});
    let details = json!({"n": a.n, "clients": a.clients, "batches": a.batches, "labels": a.labels,
        "gates": a.gates, "rounds": a.rounds, "ratios_to_plain": ratios});
    results::write(&flags, rows, peer, details)
}

/// Prints, per row and variant, its jobs/s over plain's of the same round: every round's
/// ratio, their range and median. Returns them for the results file.
fn print_ratios(variants: &[Variant], rates: &[(String, Vec<Vec<f64>>)]) -> serde_json::Value {
    if variants.len() < 2 {
        return json!([]);
    }
    println!();
    println!("| jobs/s over plain, same round | variant | per round | range | median |");
    println!("|---|---|---|---:|---:|");
    let mut out = vec![];
    for (row, per_variant) in rates {
        let plain = &per_variant[0];
        for (v, variant) in variants.iter().enumerate().skip(1) {
            let mut ratios: Vec<f64> = per_variant[v]
                .iter()
                .zip(plain)
                .map(|(r, p)| r / p)
                .collect();
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            ratios.sort_by(f64::total_cmp);
            let median = ratios[ratios.len() / 2];
            let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
            let name = variant.name().trim_start_matches(", ").to_string();
            println!(
                "| {row} | {name} | {} | {lo:.2}–{hi:.2} | {median:.2} |",
                each.join(", ")
            );
            out.push(json!({"row": row, "variant": name, "ratios": ratios, "median": median}));
        }
    }
    json!(out)
}
