//! `bench-edge`: the edge (Pingora front on TLS → worker service) against two baselines measured
//! in the same run: **direct** (a runner leasing straight from the broker) and **tonic** (tonic
//! terminating the same TLS itself and serving the same worker service with the same identity
//! check — the cost floor of our own stack, `antcode_edge::baseline`).
//!
//!   cargo build --release -p antcode-bench --bin bench-edge
//!   target/release/bench-edge [--samples 1000] [--jobs 20000] [--clients 64] [--idle 2000]
//!
//! * Broker: the in-process memory broker, shared by the publisher, the edge and the tonic
//!   baseline. Redis is not used on purpose: the Redis broker parks every long-poll on a
//!   dedicated connection (`XREADGROUP BLOCK`), so 10,000 parked runners would be 10,000 Redis
//!   connections on a shared server whose `maxclients` is 10,000; the memory broker parks them in
//!   memory, which is what the edge's long-poll is meant to measure here.
//! * Identity: a real API key: control (SQLite in a temporary directory) creates a one-time
//!   enrollment key, the worker enrolls through the edge and presents `authorization: Bearer`.
//! * (1) dispatch latency: one client parks a `Lease`; the bench publishes one job and measures
//!   publish → lease received, `--samples` times per system.
//! * (2) leases/s: `--jobs` jobs are published first, then `--clients` connections (one call in
//!   flight each, like runners) lease them one at a time until all are taken.
//! * (3) RSS per idle runner: the server runs in a child process (this binary re-executed with
//!   `serve edge|tonic`); `--idle` TLS connections each park one `Lease`, and the child's RSS
//!   growth is divided by the connections. Limits are raised so no rate limit trips.
//!
//! Prints a table with ratios to the tonic baseline and writes the results file (`results.rs`):
//! the edge is its row, direct and tonic its peers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Request;

use antcode_core::blob::BlobStore;
use antcode_core::broker::{memory::MemoryBroker, Broker, LeaseRequest};
use antcode_core::model::Job;
use antcode_core::Shutdown;
use antcode_edge::{EdgeConfig, Limits};
use antcode_proto::worker::v1 as pb;
use antcode_proto::worker::v1::worker_service_client::WorkerServiceClient;

mod job;
use job::job;
mod results;
use results::Flags;

const USAGE: &str = "\
bench-edge: the edge against direct leasing and tonic serving TLS itself

Usage: bench-edge [--samples 1000] [--jobs 20000] [--clients 64] [--idle 2000]
  --samples N   publish -> lease latency samples per system
  --jobs N      jobs leased in the throughput phase
  --clients N   connections leasing them, one call in flight each
  --idle N      parked TLS connections for the RSS per idle runner";

const PASSWORD: &str = "bench-edge-password";
const QUEUE: &str = "default";

struct Args {
    samples: usize,
    jobs: usize,
    clients: usize,
    idle: usize,
}

fn parse_args() -> (Args, Flags) {
    let mut a = Args {
        samples: 1000,
        jobs: 20_000,
        clients: 64,
        idle: 2_000,
    };
    let mut flags = Flags::from_env("edge", USAGE);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--samples" => a.samples = flags.value(&flag),
            "--jobs" => a.jobs = flags.value(&flag),
            "--clients" => a.clients = flags.value(&flag),
            "--idle" => a.idle = flags.value(&flag),
            other => flags.unknown(other),
        }
    }
    if a.samples == 0 || a.jobs == 0 || a.clients == 0 || a.idle == 0 {
        flags.fail("--samples, --jobs, --clients and --idle must be positive");
    }
    (a, flags)
}

/// Limits high enough that nothing trips: the checks still run on every call.
fn bench_limits() -> Limits {
    Limits {
        per_identity_rps: 1_000_000_000,
        per_address_rps: 1_000_000_000,
        long_polls_per_identity: 1_000_000,
        lease_wait: Duration::from_secs(300),
        ..Limits::default()
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The PEM files a server needs, and what it authenticates against.
#[derive(Clone)]
struct ServerEnv {
    tls_dir: PathBuf,
    control_url: String,
    edge_token: String,
}

impl ServerEnv {
    fn read(&self, name: &str) -> anyhow::Result<String> {
        let p = self.tls_dir.join(name);
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    fn config(
        &self,
        listener: std::net::TcpListener,
        broker: Arc<dyn Broker>,
        blobs: Arc<dyn BlobStore>,
    ) -> anyhow::Result<EdgeConfig> {
        Ok(EdgeConfig {
            listener,
            tls_cert_pem: self.read("edge.pem")?,
            tls_key_pem: self.read("edge-key.pem")?,
            ca_cert_pem: self.read("ca.pem")?,
            control_url: self.control_url.clone(),
            edge_token: self.edge_token.clone(),
            broker,
            blobs,
            limits: bench_limits(),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Edge,
    Tonic,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Edge => "edge",
            System::Tonic => "tonic",
        }
    }
}

/// Starts `system` on an ephemeral loopback port; returns its address.
fn start_server(
    system: System,
    env: &ServerEnv,
    broker: Arc<dyn Broker>,
    blobs: Arc<dyn BlobStore>,
    shutdown: &Shutdown,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let config = env.config(listener, broker, blobs)?;
    let s = shutdown.clone();
    tokio::spawn(async move {
        let r = match system {
            System::Edge => antcode_edge::run(config, s).await,
            System::Tonic => antcode_edge::baseline::serve_tonic_tls(config, s).await,
        };
        if let Err(e) = r {
            eprintln!("{} server failed: {e}", system.name());
        }
    });
    Ok(addr)
}

/// A worker-protocol client on its own TLS connection.
async fn connect(
    addr: std::net::SocketAddr,
    ca: &str,
) -> anyhow::Result<WorkerServiceClient<Channel>> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(WorkerServiceClient::new(channel))
}

fn lease_call(api_key: &str, wait_ms: u32) -> Request<pb::LeaseRequest> {
    let mut r = Request::new(pb::LeaseRequest {
        max_jobs: 1,
        wait_ms,
        ..Default::default()
    });
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {api_key}").parse().expect("ascii key"),
    );
    r.set_timeout(Duration::from_secs(600));
    r
}

/// Who leases in a measurement: a gRPC client of a server, or the broker itself (direct).
#[derive(Clone)]
enum Lessee {
    Direct(Arc<dyn Broker>),
    Grpc(WorkerServiceClient<Channel>, String),
}

impl Lessee {
    /// Leases at most one job, waiting up to `wait`; returns how many came.
    async fn lease(&mut self, wait: Duration) -> anyhow::Result<usize> {
        match self {
            Lessee::Direct(b) => {
                let req = LeaseRequest {
                    worker_id: "bench-direct".into(),
                    queues: vec![QUEUE.into()],
                    labels: Default::default(),
                    max: 1,
                    ttl: Duration::from_secs(600),
                };
                Ok(b.lease(&req, wait).await?.len())
            }
            Lessee::Grpc(c, key) => Ok(c
                .lease(lease_call(key, wait.as_millis() as u32))
                .await?
                .into_inner()
                .jobs
                .len()),
        }
    }
}

/// (1) publish → lease received by a parked client, in ms.
async fn latency(
    broker: &Arc<dyn Broker>,
    lessee: Lessee,
    samples: usize,
    tag: &str,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let mut l = lessee.clone();
        let call = tokio::spawn(async move {
            let n = l.lease(Duration::from_secs(10)).await;
            (n, Instant::now())
        });
        // Long enough for the call to reach the server and park there.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let published = Instant::now();
        broker
            .publish(&job(format!("lat-{tag}-{i}"), QUEUE))
            .await?;
        let (n, received) = call.await?;
        if n? != 1 {
            bail!("{tag}: the parked lease came back without the job");
        }
        out.push(received.duration_since(published).as_secs_f64() * 1e3);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// (2) leases per second: `jobs` published first, then `lessees` lease them one at a time.
async fn throughput(
    broker: &Arc<dyn Broker>,
    lessees: Vec<Lessee>,
    jobs: usize,
    tag: &str,
) -> anyhow::Result<f64> {
    let batch: Vec<Job> = (0..jobs)
        .map(|i| job(format!("tp-{tag}-{i}"), QUEUE))
        .collect();
    for chunk in batch.chunks(1000) {
        broker.publish_many(chunk).await?;
    }
    let taken = Arc::new(AtomicUsize::new(0));
    // When the last job was taken: the callers still parked then wait out their deadline, which
    // must not count.
    let done = Arc::new(std::sync::OnceLock::new());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut l in lessees {
        let (taken, done) = (taken.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while taken.load(Ordering::Relaxed) < jobs {
                let n = l.lease(Duration::from_millis(200)).await?;
                if n > 0 && taken.fetch_add(n, Ordering::Relaxed) + n >= jobs {
                    let _ = done.set(Instant::now());
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let end = *done.get().context("not every job was leased")?;
    Ok(jobs as f64 / end.duration_since(started).as_secs_f64())
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Raises the soft open-files limit to the hard one (10,000 connections need 10,000+ fds).
fn raise_nofile() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// The server of an RSS measurement, in a process of its own; killed when dropped.
struct ServerProcess {
    child: Child,
    addr: std::net::SocketAddr,
}

impl ServerProcess {
    fn spawn(system: System, env: &ServerEnv) -> anyhow::Result<ServerProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", system.name()])
            .env("BENCH_EDGE_TLS_DIR", &env.tls_dir)
            .env("BENCH_EDGE_CONTROL_URL", &env.control_url)
            .env("BENCH_EDGE_TOKEN", &env.edge_token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .with_context(|| format!("{} server said {line:?}", system.name()))?
            .parse()?;
        Ok(ServerProcess { child, addr })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects `n` more clients to `addr`, each parking one `Lease`; returns the clients (kept alive
/// by the caller) and the parked calls.
async fn park(
    addr: std::net::SocketAddr,
    ca: &str,
    api_key: &str,
    n: usize,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut parked = Vec::with_capacity(n);
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut connecting = Vec::with_capacity(n);
    for _ in 0..n {
        let (ca, sem) = (ca.to_string(), sem.clone());
        connecting.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            connect(addr, &ca).await
        }));
    }
    for c in connecting {
        let mut client = c.await??;
        let key = api_key.to_string();
        parked.push(tokio::spawn(async move {
            // Parks until the child is killed: its answer is never needed.
            let _ = client.lease(lease_call(&key, 0)).await;
        }));
    }
    Ok(parked)
}

/// (3) KB of server RSS per idle long-polling TLS runner: the child's growth from `base`
/// connections to `base + idle`, divided by `idle`.
async fn idle_rss(
    system: System,
    env: &ServerEnv,
    ca: &str,
    api_key: &str,
    idle: usize,
) -> anyhow::Result<(f64, u64, u64)> {
    let server = ServerProcess::spawn(system, env)?;
    let pid = server.child.id();
    // A few connections first so one-time costs (runtimes, caches, the first TLS session) are in
    // the base, not in the per-connection figure.
    let warm = park(server.addr, ca, api_key, 16).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kb(pid)?;
    let calls = park(server.addr, ca, api_key, idle).await?;
    // Settle: every call has reached the server and parked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kb(pid)?;
    for c in warm.into_iter().chain(calls) {
        c.abort();
    }
    drop(server);
    Ok((
        (after.saturating_sub(before)) as f64 / idle as f64,
        before,
        after,
    ))
}

/// `bench-edge serve edge|tonic`: one server on an ephemeral port, until stdin closes.
async fn serve_child(system: &str) -> anyhow::Result<()> {
    raise_nofile()?;
    let system = match system {
        "edge" => System::Edge,
        "tonic" => System::Tonic,
        other => bail!("serve what? {other:?} (edge or tonic)"),
    };
    let env = ServerEnv {
        tls_dir: std::env::var("BENCH_EDGE_TLS_DIR")?.into(),
        control_url: std::env::var("BENCH_EDGE_CONTROL_URL")?,
        edge_token: std::env::var("BENCH_EDGE_TOKEN")?,
    };
    let dir = tempfile::tempdir()?;
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let blobs = antcode_core::seams::open_blobs(&dir.path().display().to_string()).await?;
    let shutdown = Shutdown::new();
    let addr = start_server(system, &env, broker, blobs, &shutdown)?;
    println!("listening {addr}");
    // Ends when the parent closes stdin or kills us.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await?;
    shutdown.cancel();
    Ok(())
}

/// Control on SQLite with the cluster CA in `dir/tls`; returns its URL and the edge token.
async fn start_control(
    dir: &Path,
    broker: Arc<dyn Broker>,
    blobs: Arc<dyn BlobStore>,
    shutdown: &Shutdown,
) -> anyhow::Result<(String, String)> {
    let certs = antcode_edge::pki::load_or_create(&dir.join("tls"), &[])?;
    let edge_token = antcode_core::ids::new_token("et");
    let store =
        antcode_core::seams::open_store(&format!("sqlite://{}", dir.join("antcode.db").display()))
            .await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let config = antcode_control::ControlConfig {
        listener,
        store,
        broker,
        blobs,
        admin_password: PASSWORD.into(),
        dev: true,
        max_upload_bytes: antcode_control::DEFAULT_MAX_UPLOAD_BYTES,
        secrets: None,
        edge_token: Some(edge_token.clone()),
        cluster_ca: Some((certs.ca_cert_pem, certs.ca_key_pem)),
        trusted_proxies: vec![],
        public_url: None,
        edge_url: None,
        git: antcode_control::GitPolicy::default(),
    };
    let s = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = antcode_control::run(config, s).await {
            eprintln!("control failed: {e}");
        }
    });
    Ok((url, edge_token))
}

/// An API key for a worker enrolled through the edge with a one-time key from control.
async fn enroll(control_url: &str, edge: std::net::SocketAddr, ca: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let api = format!("{control_url}/api/v1");
    let mut token = None;
    for _ in 0..100 {
        if let Ok(r) = http
            .post(format!("{api}/auth/login"))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
        {
            if r.status().is_success() {
                token = r.json::<serde_json::Value>().await?["token"]
                    .as_str()
                    .map(str::to_string);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = token.context("cannot log in to control")?;
    let key: serde_json::Value = http
        .post(format!("{api}/worker-keys"))
        .bearer_auth(&token)
        .json(&json!({"note": "bench-edge", "ttl_s": 600}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = key["key"].as_str().context("no enrollment key")?;
    let mut client = connect(edge, ca).await?;
    let r = client
        .enroll(pb::EnrollRequest {
            enrollment_key: key.to_string(),
            name: "bench-edge".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.api_key)
}

struct Row {
    p50: f64,
    p99: f64,
    leases_per_s: f64,
    rss: Option<(f64, u64, u64)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("serve") {
        return serve_child(argv.get(2).map(String::as_str).unwrap_or("")).await;
    }
    let (args, flags) = parse_args();
    let nofile = raise_nofile()?;
    if (nofile as usize) < args.idle + 256 {
        bail!(
            "--idle {} needs more open files than the hard limit {nofile}",
            args.idle
        );
    }
    let dir = tempfile::tempdir()?;
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let blobs =
        antcode_core::seams::open_blobs(&dir.path().join("blobs").display().to_string()).await?;
    let shutdown = Shutdown::new();
    let (control_url, edge_token) =
        start_control(dir.path(), broker.clone(), blobs.clone(), &shutdown).await?;
    let env = ServerEnv {
        tls_dir: dir.path().join("tls"),
        control_url,
        edge_token,
    };
    let ca = env.read("ca.pem")?;
    let edge = start_server(System::Edge, &env, broker.clone(), blobs.clone(), &shutdown)?;
    let tonic = start_server(
        System::Tonic,
        &env,
        broker.clone(),
        blobs.clone(),
        &shutdown,
    )?;
    let api_key = enroll(&env.control_url, edge, &ca).await?;

    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for name in ["direct", "tonic", "edge"] {
        let addr = match name {
            "edge" => Some(edge),
            "tonic" => Some(tonic),
            _ => None,
        };
        let one = match addr {
            Some(a) => Lessee::Grpc(connect(a, &ca).await?, api_key.clone()),
            None => Lessee::Direct(broker.clone()),
        };
        // Warm-up: a few round trips before measuring.
        latency(&broker, one.clone(), 10, &format!("warm-{name}")).await?;
        let lat = latency(&broker, one, args.samples, name).await?;
        let mut lessees = Vec::new();
        for _ in 0..args.clients {
            lessees.push(match addr {
                Some(a) => Lessee::Grpc(connect(a, &ca).await?, api_key.clone()),
                None => Lessee::Direct(broker.clone()),
            });
        }
        let tp = throughput(&broker, lessees, args.jobs, name).await?;
        let rss = match name {
            "edge" => Some(idle_rss(System::Edge, &env, &ca, &api_key, args.idle).await?),
            "tonic" => Some(idle_rss(System::Tonic, &env, &ca, &api_key, args.idle).await?),
            _ => None,
        };
        eprintln!(
            "{name}: p50 {:.3} ms, p99 {:.3} ms, {:.0} leases/s, rss {:?}",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            tp,
            rss
        );
        rows.insert(
            name,
            Row {
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                leases_per_s: tp,
                rss,
            },
        );
    }
    shutdown.cancel();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let t = &rows["tonic"];
    println!(
        "\nbench-edge: {} latency samples, {} jobs over {} clients, {} idle runners; load {}",
        args.samples,
        args.jobs,
        args.clients,
        args.idle,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| system | p50 ms | p99 ms | p99 − tonic ms | leases/s | % of tonic | KB RSS per idle runner | × tonic |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut out = serde_json::Map::new();
    for name in ["direct", "tonic", "edge"] {
        let r = &rows[name];
        let (rss, rss_ratio) = match (r.rss, t.rss) {
            (Some((kb, _, _)), Some((tkb, _, _))) => {
                (format!("{kb:.1}"), format!("{:.2}", kb / tkb))
            }
            _ => ("n/a".into(), "n/a".into()),
        };
        println!(
            "| {name} | {:.3} | {:.3} | {:+.3} | {:.0} | {:.0}% | {rss} | {rss_ratio} |",
            r.p50,
            r.p99,
            r.p99 - t.p99,
            r.leases_per_s,
            100.0 * r.leases_per_s / t.leases_per_s
        );
        out.insert(
            name.to_string(),
            json!({
                "p50_ms": r.p50,
                "p99_ms": r.p99,
                "leases_per_s": r.leases_per_s,
                "leases_vs_tonic": r.leases_per_s / t.leases_per_s,
                "rss_kb_per_idle_runner": r.rss.map(|x| x.0),
                "rss_kb_before": r.rss.map(|x| x.1),
                "rss_kb_after": r.rss.map(|x| x.2),
            }),
        );
    }
    let e = &rows["edge"];
    let rss_ok = match (e.rss, t.rss) {
        (Some(a), Some(b)) => a.0 <= 1.5 * b.0,
        _ => false,
    };
    let targets = json!({
        "p99_le_10ms": e.p99 <= 10.0,
        "p99_within_0_5ms_of_tonic": e.p99 <= t.p99 + 0.5,
        "leases_ge_70pct_of_tonic": e.leases_per_s >= 0.7 * t.leases_per_s,
        "rss_le_1_5x_tonic": rss_ok,
    });
    println!("targets: {targets}");
    let details = json!({
        "samples": args.samples,
        "jobs": args.jobs,
        "clients": args.clients,
        "idle_runners": args.idle,
        "broker": "memory",
        "targets": targets,
    });
    let row = |name: &str| {
        let mut v = out[name].clone();
        v["name"] = json!(name);
        v
    };
    let peer = json!({"direct": row("direct"), "tonic": row("tonic")});
    results::write(&flags, vec![row("edge")], peer, details)
}
