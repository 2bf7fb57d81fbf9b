//! `bench-broker`: the Redis broker's job round trip (publish → lease → release) beside the raw
//! `XADD` rate `redis-benchmark` gets from the same server in the same run.
//!
//!   cargo run --release -p antcode-bench --bin bench-broker -- [--redis-url URL] [-n N] [-c C]
//!
//! Each of C concurrent clients (redis-benchmark's `-c`) works on its own queue, so a lease
//! always finds the job that client just published; with `--batch B` > 1 a client publishes B jobs
//! and leases them with one `LeaseRequest { max: B }`. Every round trip is several Redis commands
//! (idempotency check and `XADD`, `XREADGROUP` + lease bookkeeping, release), so the ratio to one
//! bare `XADD` is the cost of the broker's guarantees.

use anyhow::{bail, Context};
use futures::future::try_join_all;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode_core::broker::{redis::RedisBroker, Broker, LeaseRequest};
use antcode_core::model::Job;

mod job;
use job::job;

struct Args {
    redis_url: String,
    host: String,
    port: u16,
    n: usize,
    clients: usize,
    batches: Vec<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        redis_url: String::new(),
        host: "127.0.0.1".into(),
        port: 6379,
        n: 200_000,
        clients: 50,
        batches: vec![1, 10, 50],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => a.host = value()?,
            "--port" => a.port = value()?.parse()?,
            "--redis-url" => a.redis_url = value()?,
            "-n" => a.n = value()?.parse()?,
            "-c" => a.clients = value()?.parse()?,
            "--batch" => {
                a.batches = value()?
                    .split(',')
                    .map(|b| b.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            other => {
                bail!("unknown flag {other} (--host, --port, --redis-url, -n, -c, --batch 1,10,50)")
            }
        }
    }
    if a.redis_url.is_empty() {
        // A database and key prefix of its own: nothing of a deployment on the same server is touched.
        a.redis_url = format!("redis://{}:{}/15?prefix=bench-broker", a.host, a.port);
    }
    Ok(a)
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

/// Round trips per second with `clients` concurrent clients each leasing `batch` jobs at a time.
async fn round_trips(a: &Args, broker: Arc<RedisBroker>, batch: usize) -> anyhow::Result<f64> {
    let per_client = (a.n / a.clients / batch).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            let queue = format!("bench-{c}");
            let req = LeaseRequest {
                worker_id: format!("bench-worker-{c}"),
                queues: vec![queue.clone()],
                max: batch,
                ttl: Duration::from_secs(60),
            };
            let mut done = 0usize;
            for i in 0..per_client {
                // A batch's publishes (and later its releases) go out together: the multiplexed
                // connection pipelines them, one write and one read for the lot.
                let jobs: Vec<Job> = (0..batch)
                    .map(|j| job(format!("run-{batch}-{c}-{i}-{j}"), &queue))
                    .collect();
                try_join_all(jobs.iter().map(|j| broker.publish(j))).await?;
                let mut got = 0;
                while got < batch {
                    // The job is already there (a busy queue), so the lease's one-call
                    // read-and-claim finds it; it would block only on an empty queue.
                    let leases = broker.lease(&req, Duration::from_millis(100)).await?;
                    try_join_all(
                        leases
                            .iter()
                            .map(|l| broker.release(&l.job.run_id, &l.lease_token)),
                    )
                    .await?;
                    got += leases.len();
                }
                done += got;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let broker = Arc::new(
        RedisBroker::open(&a.redis_url)
            .await
            .with_context(|| format!("opening {}", a.redis_url))?,
    );
    let xadd = raw_xadd(&a)?;
    println!(
        "redis-benchmark XADD (150-byte field, -n {} -c {}): {xadd:.0} req/s",
        a.n, a.clients
    );
    println!();
    println!("| broker round trip (publish → lease → release) | jobs/s | % of raw XADD |");
    println!("|---|---:|---:|");
    for &batch in &a.batches {
        let rate = round_trips(&a, broker.clone(), batch.max(1)).await?;
        println!(
            "| lease max = {batch}, {} clients | {rate:.0} | {:.1}% |",
            a.clients,
            100.0 * rate / xadd
        );
    }
    Ok(())
}
