//! `antcode up`: control, scheduler, edge and one runner in one process, on SQLite in the data
//! dir, the in-process broker and a local blob directory.
//!
//! Restart-safe because SQL is the truth: queued runs are re-published by the scheduler's
//! compensation on start, and runs that were running when the process died are declared lost
//! (and retried per their policy) once their lease is found missing.
//!
//! A stop drains: the embedded runner stops first — it waits up to `grace` for its runs, then
//! interrupts the rest, which are queued again — while control and the scheduler keep going, so
//! the recorder applies its last reports before the other planes stop. The in-process broker
//! dies with the process; nothing a drained stop leaves depends on it.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinSet;

use antcode_core::shutdown::Signals;
use antcode_core::{seams, Shutdown};

#[derive(Debug, Clone)]
pub struct UpConfig {
    pub data_dir: PathBuf,
    pub control_addr: SocketAddr,
    pub edge_addr: SocketAddr,
    /// Names besides `localhost` and `127.0.0.1` in the edge's certificate.
    pub edge_hosts: Vec<String>,
    /// The web UI's address for links in alerts; `http://` and the control address when `None`.
    pub public_url: Option<String>,
    pub admin_password: String,
    /// Run the embedded runner (tests turn it off to keep runs queued).
    pub runner: bool,
    pub runner_slots: usize,
    pub queues: Vec<String>,
    /// How long a running run may lack a live lease before it is declared lost.
    pub lost_after: Duration,
    /// Rate limits and long-poll bounds of the edge.
    pub edge_limits: antcode_edge::Limits,
    /// The broker: the in-process one by default; a `redis://` URL runs the same single process
    /// on Redis Streams (the benchmarks compare both).
    pub broker_url: String,
    /// SQLite's `synchronous` for the database (`normal`, `full`, `extra`); `None` keeps
    /// `full`, an fsync per commit (see `take_synchronous` in the store).
    pub sqlite_synchronous: Option<String>,
    /// How long a stop waits for running runs before it interrupts them (default 30 s).
    pub grace: Duration,
    /// Queues whose runs the embedded runner starts warm.
    pub warm_queues: Vec<String>,
    /// Shut the platform's ports (control's, the edge's, a broker server's, and
    /// `protected_ports`) out of network `full` (on by default).
    pub shut_out_platform_ports: bool,
    /// More ports to shut out (`--protect-port`).
    pub protected_ports: Vec<u16>,
    /// Reverse proxies in front of control believed about `X-Forwarded-For`; none by default.
    /// The embedded edge needs no entry (it vouches for the address with the edge token).
    pub trusted_proxies: Vec<antcode_control::Cidr>,
    /// Run tasks even where the kernel refuses part of the sandbox (`--allow-weak-sandbox`).
    pub allow_weak_sandbox: bool,
    /// What Git projects' fetches may reach and take (`--git-allow-private`, …).
    pub git: antcode_control::GitPolicy,
    /// Benchmarks only: runs without any sandbox, what the sandbox's cost is measured against
    /// (as `ANTCODE_BENCH_NO_SANDBOX=1` does for any runner).
    pub sandbox_off: bool,
}

impl UpConfig {
    pub fn new(data_dir: PathBuf) -> UpConfig {
        UpConfig {
            data_dir,
            control_addr: ([127, 0, 0, 1], 8000).into(),
            edge_addr: ([127, 0, 0, 1], 50051).into(),
            edge_hosts: Vec::new(),
            public_url: None,
            admin_password: "admin".into(),
            runner: true,
            runner_slots: 4,
            allow_weak_sandbox: false,
            git: antcode_control::GitPolicy::default(),
            sandbox_off: false,
            queues: vec!["default".into()],
            lost_after: Duration::from_secs(15),
            edge_limits: antcode_edge::Limits::default(),
            broker_url: "memory://".into(),
            sqlite_synchronous: None,
            grace: Duration::from_secs(30),
            warm_queues: Vec::new(),
            shut_out_platform_ports: true,
            protected_ports: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// A running `up`: its bound addresses and the handle to stop it.
pub struct Up {
    pub control_addr: SocketAddr,
    pub edge_addr: SocketAddr,
    /// Stops every plane but the runner.
    shutdown: Shutdown,
    planes: JoinSet<(&'static str, anyhow::Result<()>)>,
    /// Stops the embedded runner, which drains first.
    runner_stop: Shutdown,
    /// Ends the runner's grace period at once.
    hurry: Shutdown,
    runner: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Where runners reach the in-process edge: the first `--edge-host`, else `localhost` (which its
/// certificate names), at the port it listens on.
fn edge_url(addr: SocketAddr, hosts: &[String]) -> String {
    let host = hosts.first().map(String::as_str).unwrap_or("localhost");
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host.to_string(),
    };
    format!("https://{host}:{}", addr.port())
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} for {what} (is another antcode running? use --listen / --edge-listen)"))
}

pub async fn start(cfg: UpConfig) -> anyhow::Result<Up> {
    antcode_core::telemetry::prometheus();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let data_dir = cfg.data_dir.canonicalize()?;
    let mut db_url = format!("sqlite://{}", data_dir.join("antcode.db").display());
    if let Some(level) = &cfg.sqlite_synchronous {
        db_url.push_str(&format!("?synchronous={level}"));
    }
    let store = seams::open_store(&db_url).await?;
    let broker = seams::open_broker(&cfg.broker_url).await?;
    let blobs = seams::open_blobs(&data_dir.join("blobs").display().to_string()).await?;
    // Task secrets are sealed under a random key kept next to the database (created once, 0600).
    let secrets = std::sync::Arc::new(antcode_core::secrets::SecretBox::from_key_file(
        &data_dir.join("secret.key"),
    )?);

    let control_listener = bind(cfg.control_addr, "control")?;
    let edge_listener = bind(cfg.edge_addr, "the edge")?;
    let control_addr = control_listener.local_addr()?;
    // Where users reach the API: the links in alerts and the URLs of webhooks.
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{control_addr}"));
    let edge_addr = edge_listener.local_addr()?;

    // The cluster CA and the edge's server certificate, created on first start and reused; the
    // edge token (edge -> control, and the key of lease-token MACs) likewise.
    let certs = antcode_edge::pki::load_or_create(&data_dir.join("tls"), &cfg.edge_hosts)?;
    let token_path = data_dir.join("tls").join("edge-token");
    let edge_token = match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let t = antcode_core::ids::new_token("et");
            antcode_core::fsutil::write_private(&token_path, t.as_bytes())?;
            t
        }
    };

    let shutdown = Shutdown::new();
    let mut planes = JoinSet::new();

    let control = antcode_control::ControlConfig {
        listener: control_listener,
        store: store.clone(),
        broker: broker.clone(),
        blobs: blobs.clone(),
        admin_password: cfg.admin_password.clone(),
        dev: true,
        max_upload_bytes: 64 * 1024 * 1024,
        secrets: Some(secrets.clone()),
        edge_token: Some(edge_token.clone()),
        cluster_ca: Some((certs.ca_cert_pem.clone(), certs.ca_key_pem.clone())),
        trusted_proxies: cfg.trusted_proxies.clone(),
        public_url: Some(public_url.clone()),
        edge_url: Some(edge_url(edge_addr, &cfg.edge_hosts)),
        git: cfg.git.clone(),
    };
    let s = shutdown.clone();
    planes.spawn(async move {
        (
            "control",
            antcode_control::run(control, s).await.map_err(Into::into),
        )
    });

    let mut scheduler = antcode_scheduler::SchedulerConfig::new(store.clone(), broker.clone());
    scheduler.lost_after = cfg.lost_after;
    scheduler.secrets = Some(secrets.clone());
    scheduler.blobs = Some(blobs.clone());
    scheduler.public_url = Some(public_url);
    let s = shutdown.clone();
    planes.spawn(async move {
        (
            "scheduler",
            antcode_scheduler::run(scheduler, s)
                .await
                .map_err(Into::into),
        )
    });

    let edge = antcode_edge::EdgeConfig {
        listener: edge_listener,
        tls_cert_pem: certs.server_cert_pem.clone(),
        tls_key_pem: certs.server_key_pem.clone(),
        ca_cert_pem: certs.ca_cert_pem.clone(),
        control_url: format!("http://{control_addr}"),
        edge_token,
        broker: broker.clone(),
        blobs: blobs.clone(),
        limits: cfg.edge_limits.clone(),
    };
    let s = shutdown.clone();
    planes.spawn(async move { ("edge", antcode_edge::run(edge, s).await.map_err(Into::into)) });

    let (runner_stop, hurry) = (Shutdown::new(), Shutdown::new());
    let runner = cfg.runner.then(|| {
        let mut runner = antcode_runner::RunnerConfig::new(
            broker.clone(),
            blobs.clone(),
            data_dir.join("runner"),
        );
        runner.name = "embedded".into();
        runner.slots = cfg.runner_slots;
        runner.queues = cfg.queues.clone();
        runner.warm.queues = cfg.warm_queues.clone();
        // The platform's own ports: control's and the edge's (the broker and the database are
        // in process unless `broker_url` names a server).
        if cfg.shut_out_platform_ports {
            runner.protected_ports = [control_addr.port(), edge_addr.port()]
                .into_iter()
                .chain(crate::cli::url_port(&cfg.broker_url))
                .chain(cfg.protected_ports.iter().copied())
                .collect();
        }
        runner.grace = cfg.grace;
        runner.sandbox.allow_weak |= cfg.allow_weak_sandbox;
        runner.sandbox.off |= cfg.sandbox_off;
        runner.hurry = hurry.clone();
        let s = runner_stop.clone();
        tokio::spawn(async move { antcode_runner::run(runner, s).await.map_err(Into::into) })
    });
    Ok(Up {
        control_addr,
        edge_addr,
        shutdown,
        planes,
        runner_stop,
        hurry,
        runner,
    })
}

impl Up {
    /// Stops gracefully: the runner drains (bounded by its grace period), then every other plane
    /// stops (bounded by their own grace periods).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let runner = self.stop_runner().await;
        self.shutdown.cancel();
        let rest = self.join_all().await;
        runner.and(rest)
    }

    /// Ends the runner's grace period at once: what still runs is interrupted (a second signal).
    pub fn hurry(&self) {
        self.hurry.cancel();
    }

    /// Runs until `signals.stop`, or until a plane fails, then stops everything; `signals.hurry`
    /// cuts the runner's grace period short.
    pub async fn run_until(mut self, signals: Signals) -> anyhow::Result<()> {
        let hurry = self.hurry.clone();
        let on_hurry = signals.hurry.clone();
        tokio::spawn(async move {
            on_hurry.cancelled().await;
            hurry.cancel();
        });
        let failed = {
            let (planes, runner) = (&mut self.planes, &mut self.runner);
            let runner_ended = async move {
                match runner.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signals.stop.cancelled() => {
                    tracing::info!("shutting down");
                    None
                }
                Some(done) = planes.join_next() => Some(done?),
                ended = runner_ended => Some(("runner", ended.map_err(anyhow::Error::from).and_then(|r| r))),
            }
        };
        let Some((name, result)) = failed else {
            return self.stop().await;
        };
        if name == "runner" {
            self.runner = None; // ended: its handle must not be awaited again
        }
        self.hurry.cancel();
        let runner = self.stop_runner().await;
        self.shutdown.cancel();
        let rest = self.join_all().await.and(runner);
        result.with_context(|| format!("{name} stopped"))?;
        anyhow::bail!(
            "{name} stopped unexpectedly{}",
            rest.err().map(|e| format!("; {e}")).unwrap_or_default()
        );
    }

    /// Stops the embedded runner and waits for it to drain.
    async fn stop_runner(&mut self) -> anyhow::Result<()> {
        self.runner_stop.cancel();
        let Some(runner) = self.runner.take() else {
            return Ok(());
        };
        match runner.await? {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!("runner: {e:#}");
                Err(e.context("runner"))
            }
        }
    }

    async fn join_all(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(done) = self.planes.join_next().await {
            let (name, result) = done?;
            if let Err(e) = result {
                tracing::error!("{name}: {e:#}");
                first_error.get_or_insert(e.context(name));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
