//! `antcode`: one binary for every process of the platform. See `antcode --help`.

use anyhow::{bail, Context};
use clap::FromArgMatches;
use std::sync::Arc;

use antcode::cli::{self, AdminCommand, Cli, Command, LogFormat, RunnerMode};
use antcode::{ops_http, up};
use antcode_core::{seams, shutdown, telemetry, Shutdown};

const DEFAULT_ADMIN_PASSWORD: &str = "admin";

fn main() {
    let mut cli = parse_args();
    cli.command = match cli.command {
        Command::Client(command) => run_client(command),
        server => server,
    };
    telemetry::init_tracing(matches!(cli.log_format, LogFormat::Json));
    // Dropped after the runtime, so the spans still buffered are sent on the way out.
    let _traces = telemetry::export_traces(service_name(&cli.command));
    cli::resolve_paths(&mut cli.command);
    // Install the metrics recorder before any plane records anything.
    telemetry::prometheus();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("antcode: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(dispatch(cli.command)) {
        eprintln!("antcode: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The process's name in traces (`OTEL_SERVICE_NAME` overrides it).
fn service_name(command: &Command) -> &'static str {
    match command {
        Command::Up(_) => "antcode",
        Command::Control(_) => "antcode-control",
        Command::Scheduler(_) => "antcode-scheduler",
        Command::Edge(_) => "antcode-edge",
        Command::Runner(_) => "antcode-runner",
        _ => "antcode-cli",
    }
}

/// A client command, on a runtime of its own thread; exits with its exit code.
fn run_client(command: antcode_cli::ClientCommand) -> ! {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(antcode_cli::run(command, cli::command));
    std::process::exit(code)
}

/// The command line, or an exit: `--help` and `--version` print to standard output; a bad flag
/// is refused in one line on standard error (exit 2) that names it and points at `--help`.
fn parse_args() -> Cli {
    let parsed = cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("antcode: {first} (see antcode --help)");
            std::process::exit(2);
        }
    }
}

/// The settings named in start-up errors, so a bad value points at the variable to fix.
const DB: &str = "ANTCODE_DATABASE_URL";
const REDIS: &str = "ANTCODE_REDIS_URL";
const BLOB: &str = "ANTCODE_BLOB_URL";

/// The error chain on one line. Error types that both print and return their source would
/// repeat it (`a: b: b`), so a cause already contained in the text before it is left out.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => run_up(args).await,
        Command::Control(args) => run_control(args).await,
        Command::Scheduler(args) => run_scheduler(args).await,
        Command::Edge(args) => run_edge(args).await,
        Command::Runner(args) => run_runner(args).await,
        Command::Admin(cmd) => run_admin(cmd).await,
        Command::Backup(a) => {
            let passphrase = antcode::backup::passphrase()?;
            let to = a.to.to_string_lossy().into_owned();
            let done = match to.starts_with("s3://") {
                false => antcode::backup::backup(&a.data_dir, &a.to, &passphrase).await?,
                true => {
                    let store = seams::open_blobs(&to).await.context(BLOB)?;
                    let local = staging(&a.data_dir)?;
                    let dir = local.path().join("backup");
                    antcode::backup::backup(&a.data_dir, &dir, &passphrase).await?;
                    antcode::backup::upload(&dir, store.as_ref()).await?
                }
            };
            println!(
                "backed up {} into {to}: {} files, {} bytes; keep the passphrase, it is the only way to restore the keys",
                a.data_dir.display(),
                done.files,
                done.bytes
            );
            Ok(())
        }
        Command::Client(_) => unreachable!("client commands run before the server runtime"),
        Command::Restore(a) => {
            let passphrase = antcode::backup::passphrase()?;
            let from = a.from.to_string_lossy().into_owned();
            let done = match from.starts_with("s3://") {
                false => antcode::backup::restore(&a.from, &a.data_dir, &passphrase).await?,
                true => {
                    let store = seams::open_blobs(&from).await.context(BLOB)?;
                    let local = staging(&a.data_dir)?;
                    let dir = local.path().join("backup");
                    antcode::backup::download(store.as_ref(), &dir).await?;
                    antcode::backup::restore(&dir, &a.data_dir, &passphrase).await?
                }
            };
            println!(
                "restored {} into {}: {} files, {} bytes; start it with `antcode up --data-dir {}`",
                a.from.display(),
                a.data_dir.display(),
                done.files,
                done.bytes,
                a.data_dir.display()
            );
            Ok(())
        }
    }
}

/// `antcode admin …`: recovery on the host, against the configured database, audited with the
/// host account as the actor.
async fn run_admin(cmd: AdminCommand) -> anyhow::Result<()> {
    let (args, reset) = match cmd {
        AdminCommand::ResetPassword(a) => (a, true),
        AdminCommand::Promote(a) => (a, false),
    };
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.data_dir.join("antcode.db").display()),
    };
    if url.starts_with("sqlite:") && args.database_url.is_none() {
        let path = args.data_dir.join("antcode.db");
        if !path.exists() {
            bail!(
                "no database at {} (use --data-dir or --database-url)",
                path.display()
            );
        }
    }
    let store = seams::open_store(&url).await.context(DB)?;
    let actor = format!("host:{}", os_user());
    let user = if reset {
        let password = new_password()?;
        antcode_control::reset_password(store.as_ref(), &args.user, &password, &actor).await?
    } else {
        antcode_control::promote(store.as_ref(), &args.user, &actor).await?
    };
    let what = if reset {
        "password reset"
    } else {
        "promoted to admin"
    };
    println!(
        "{}: {what}; their sessions and tokens are revoked (running control processes notice within {} s)",
        user.username,
        antcode_control::PRINCIPAL_TTL.as_secs().max(1)
    );
    Ok(())
}

/// A private directory beside `data_dir` for a backup on its way to or from a blob store
/// (beside it, not in /tmp: it is as large as the data dir); removed when dropped.
fn staging(data_dir: &std::path::Path) -> anyhow::Result<tempfile::TempDir> {
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent)?;
    tempfile::Builder::new()
        .prefix(".antcode-backup-")
        .tempdir_in(parent)
        .with_context(|| format!("a staging directory in {}", parent.display()))
}

/// The new password: `ANTCODE_NEW_PASSWORD`, else the first line of stdin.
fn new_password() -> anyhow::Result<String> {
    Ok(cli::env_or_stdin_line(
        "ANTCODE_NEW_PASSWORD",
        "the new password",
    )?)
}

/// Who runs this, for the audit trail: `$USER`, else the numeric uid.
fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m).to_string())
                .unwrap_or_else(|_| "unknown".into())
        })
}

/// A shutdown token cancelled by SIGINT or SIGTERM.
fn on_signal() -> Shutdown {
    let token = Shutdown::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        tracing::info!("signal received: shutting down gracefully");
        t.cancel();
    });
    token
}

async fn run_up(args: cli::UpArgs) -> anyhow::Result<()> {
    // Nothing of this process (environment, memory) is readable by another of the same user.
    antcode_runner::sandbox::not_dumpable();
    let password = match args.admin_password {
        Some(p) if !p.is_empty() => p,
        _ => {
            tracing::warn!("ANTCODE_ADMIN_PASSWORD is not set: the admin password is the default `admin`. Set it before exposing this instance.");
            DEFAULT_ADMIN_PASSWORD.to_string()
        }
    };
    let mut cfg = up::UpConfig::new(args.data_dir);
    cfg.control_addr = args.listen;
    cfg.edge_addr = args.edge_listen;
    cfg.edge_hosts = args.edge_hosts;
    cfg.public_url = args.public_url;
    cfg.admin_password = password;
    cfg.runner = !args.no_runner;
    cfg.runner_slots = args.slots;
    cfg.queues = args.queues.queues;
    cfg.sqlite_synchronous = args.sqlite_synchronous;
    cfg.grace = std::time::Duration::from_secs(args.grace_s);
    cfg.warm_queues = args.warm_queues;
    cfg.protected_ports = args.ports.protected_ports;
    cfg.trusted_proxies = args.trusted_proxies;
    cfg.allow_weak_sandbox = args.allow_weak_sandbox;
    cfg.git = args.git.policy();
    let data_dir = cfg.data_dir.clone();
    let running = up::start(cfg).await?;
    println!("AntCode is up.");
    println!("  API and web UI : http://{}/", running.control_addr);
    println!("  API docs       : http://{}/docs", running.control_addr);
    println!("  edge (gRPC)    : {}", running.edge_addr);
    println!("  data dir       : {}", data_dir.display());
    println!("  admin login    : admin / (ANTCODE_ADMIN_PASSWORD, or `admin` if unset; only used on first start)");
    println!("Press Ctrl-C to stop.");
    running.run_until(shutdown::Signals::from_os()).await
}

async fn run_control(args: cli::ControlArgs) -> anyhow::Result<()> {
    let password = args.admin_password.clone().unwrap_or_default();
    if !args.dev {
        if password.is_empty() || password == DEFAULT_ADMIN_PASSWORD {
            bail!("refusing to start in production mode with no or the default admin password: set ANTCODE_ADMIN_PASSWORD (or pass --dev)");
        }
        if args.secret_key.as_deref().unwrap_or("").len() < 32 {
            bail!("refusing to start in production mode without ANTCODE_SECRET_KEY (at least 32 characters), which encrypts task secrets (or pass --dev)");
        }
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let config = antcode_control::ControlConfig {
        listener,
        store: seams::open_store(&args.seams.database_url)
            .await
            .context(DB)?,
        broker: seams::open_broker(&args.seams.redis_url)
            .await
            .context(REDIS)?,
        blobs: seams::open_blobs(&args.seams.blob_url)
            .await
            .context(BLOB)?,
        admin_password: if password.is_empty() {
            DEFAULT_ADMIN_PASSWORD.into()
        } else {
            password
        },
        dev: args.dev,
        max_upload_bytes: args.max_upload_bytes,
        secrets: args
            .secret_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| Arc::new(antcode_control::SecretBox::from_passphrase(k))),
        // The split deployment's edge authenticates to control with this shared token, and
        // control signs runners' client certificates with the cluster CA (PEM files).
        edge_token: std::env::var("ANTCODE_EDGE_TOKEN").ok(),
        cluster_ca: match (
            std::env::var("ANTCODE_CLUSTER_CA_CERT"),
            std::env::var("ANTCODE_CLUSTER_CA_KEY"),
        ) {
            (Ok(cert), Ok(key)) => Some((
                std::fs::read_to_string(&cert).with_context(|| format!("reading {cert}"))?,
                std::fs::read_to_string(&key).with_context(|| format!("reading {key}"))?,
            )),
            _ => None,
        },
        trusted_proxies: args.trusted_proxies,
        public_url: args.public_url,
        edge_url: args.edge_url,
        git: args.git.policy(),
    };
    tracing::info!("control listening on http://{}", args.listen);
    antcode_control::run(config, on_signal()).await?;
    Ok(())
}

async fn run_scheduler(args: cli::SchedulerArgs) -> anyhow::Result<()> {
    let store = seams::open_store(&args.database_url).await.context(DB)?;
    let broker = seams::open_broker(&args.redis_url).await.context(REDIS)?;
    let blobs = match &args.blob_url {
        Some(url) => Some(seams::open_blobs(url).await.context(BLOB)?),
        None => None,
    };
    let shutdown = on_signal();
    let (s, b) = (store.clone(), broker.clone());
    let ready: ops_http::Ready = Arc::new(move || {
        let (s, b) = (s.clone(), b.clone());
        Box::pin(async move {
            s.ping().await.map_err(|e| e.to_string())?;
            b.ping().await.map_err(|e| e.to_string())
        })
    });
    let ops = tokio::spawn(ops_http::serve(args.ops_listen, ready, shutdown.clone()));
    antcode_scheduler::run(
        {
            let mut c = antcode_scheduler::SchedulerConfig::new(store, broker);
            c.lost_after = std::time::Duration::from_secs(args.lost_after_s.max(1));
            c.blobs = blobs;
            c.public_url = args.public_url;
            // The scheduler publishes runs too, so it opens their secrets with control's key.
            c.secrets = std::env::var("ANTCODE_SECRET_KEY")
                .ok()
                .filter(|k| !k.is_empty())
                .map(|k| Arc::new(antcode_core::secrets::SecretBox::from_passphrase(&k)));
            c
        },
        shutdown.clone(),
    )
    .await?;
    shutdown.cancel();
    ops.await??;
    Ok(())
}

async fn run_edge(args: cli::EdgeArgs) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let env = |name: &str| std::env::var(name).with_context(|| format!("the edge needs {name}"));
    let read = |name: &str| -> anyhow::Result<String> {
        let path = env(name)?;
        std::fs::read_to_string(&path).with_context(|| format!("reading {name}={path}"))
    };
    let config = antcode_edge::EdgeConfig {
        listener,
        tls_cert_pem: read("ANTCODE_TLS_CERT")?,
        tls_key_pem: read("ANTCODE_TLS_KEY")?,
        ca_cert_pem: read("ANTCODE_CLUSTER_CA_CERT")?,
        control_url: env("ANTCODE_CONTROL_URL")?,
        edge_token: env("ANTCODE_EDGE_TOKEN")?,
        broker: seams::open_broker(&env(REDIS)?).await.context(REDIS)?,
        blobs: seams::open_blobs(&env(BLOB)?).await.context(BLOB)?,
        limits: antcode_edge::Limits::default(),
    };
    let shutdown = on_signal();
    let ready: ops_http::Ready = Arc::new(|| Box::pin(async { Ok(()) }));
    let ops = tokio::spawn(ops_http::serve(args.ops_listen, ready, shutdown.clone()));
    antcode_edge::run(config, shutdown.clone()).await?;
    shutdown.cancel();
    ops.await??;
    Ok(())
}

async fn run_runner(args: cli::RunnerArgs) -> anyhow::Result<()> {
    antcode_runner::sandbox::not_dumpable();
    let labels = cli::parse_labels(&args.labels).map_err(anyhow::Error::msg)?;
    if args.mode == RunnerMode::Gateway {
        return run_gateway_runner(args, labels).await;
    }
    let redis = args
        .redis_url
        .as_deref()
        .context("direct mode needs --redis-url (ANTCODE_REDIS_URL)")?;
    let blob = args
        .blob_url
        .as_deref()
        .context("direct mode needs --blob-url (ANTCODE_BLOB_URL)")?;
    let broker = seams::open_broker(redis).await.context(REDIS)?;
    let blobs = seams::open_blobs(blob).await.context(BLOB)?;
    let mut config = antcode_runner::RunnerConfig::new(broker, blobs, args.data_dir.clone());
    config.queues = args.queues.queues.clone();
    // The broker's and the blob store's ports are the platform's (an `s3://` store's is its
    // endpoint's).
    let s3 = blob.starts_with("s3://").then(s3_endpoint_port).flatten();
    config.protected_ports = args.ports.shut_out(
        cli::url_port(redis)
            .into_iter()
            .chain(cli::url_port(blob))
            .chain(s3),
    );
    let shutdown = runner_settings(&mut config, &args, labels).stop;
    let b = config.broker.clone();
    let ready: ops_http::Ready = Arc::new(move || {
        let b = b.clone();
        Box::pin(async move { b.ping().await.map_err(|e| e.to_string()) })
    });
    let ops = tokio::spawn(ops_http::serve(args.ops_listen, ready, shutdown.clone()));
    antcode_runner::run(config, shutdown.clone()).await?;
    shutdown.cancel();
    ops.await??;
    Ok(())
}

/// The port of the S3 endpoint the blob store is configured with (`ANTCODE_S3_ENDPOINT` or
/// `MINIO_ENDPOINT`, with or without a scheme).
fn s3_endpoint_port() -> Option<u16> {
    let endpoint = antcode_core::blob::s3::ENV_ENDPOINT
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))?;
    match endpoint.contains("://") {
        true => cli::url_port(&endpoint),
        false => cli::url_port(&format!("http://{endpoint}")),
    }
}

/// What both runner modes take from their flags; the OS signals that stop the runner.
fn runner_settings(
    config: &mut antcode_runner::RunnerConfig,
    args: &cli::RunnerArgs,
    labels: std::collections::BTreeMap<String, String>,
) -> shutdown::Signals {
    use std::time::Duration;
    config.labels = labels;
    config.max_limits = args.max_limits();
    config.slots = args.slots;
    config.sandbox.allow_weak |= args.allow_weak_sandbox;
    config.warm.queues = args.warm_queues.clone();
    config.lease_ttl = Duration::from_secs(args.lease_ttl_s.max(1));
    config.heartbeat_interval = Duration::from_secs(args.heartbeat_s.max(1));
    if let Some(name) = &args.name {
        config.name = name.clone();
    }
    let signals = shutdown::Signals::from_os();
    config.grace = Duration::from_secs(args.grace_s);
    config.hurry = signals.hurry.clone();
    signals
}

/// `antcode runner --mode gateway --edge URL --ca FILE [--enroll KEY]`: the same engine as direct
/// mode, with work, reports and bundles through the edge only.
async fn run_gateway_runner(
    args: cli::RunnerArgs,
    labels: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    use antcode_runner::gateway::{self, GatewayConfig, GatewaySource};
    let edge = args
        .edge
        .clone()
        .context("gateway mode needs --edge https://HOST:50051")?;
    let ca_path = args
        .ca
        .clone()
        .context("gateway mode needs --ca FILE (the cluster CA)")?;
    let ca_pem = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("reading --ca {}", ca_path.display()))?;
    let mut config = antcode_runner::RunnerConfig::new(
        // Unused in gateway mode: the engine only talks to the gateway source.
        Arc::new(antcode_core::broker::memory::MemoryBroker::new()),
        seams::open_blobs(&args.data_dir.join("unused-blobs").display().to_string()).await?,
        args.data_dir.clone(),
    );
    let signals = runner_settings(&mut config, &args, labels.clone());
    config.protected_ports = args.ports.shut_out(cli::url_port(&edge));
    let gw = GatewayConfig {
        edge_url: edge,
        ca_pem,
        data_dir: args.data_dir.clone(),
        enroll_key: args.enroll,
        name: config.name.clone(),
        labels,
        queues: Vec::new(),
    };
    let cred = gateway::credential(&gw).await?;
    let source = Arc::new(GatewaySource::new(&gw, cred)?);
    let mut engine = config.engine_config();
    engine.worker_id = source.worker_id().to_string();
    engine.mode = "gateway".into();
    let shutdown = signals.stop;
    let ready: ops_http::Ready = Arc::new(|| Box::pin(async { Ok(()) }));
    let ops = tokio::spawn(ops_http::serve(args.ops_listen, ready, shutdown.clone()));
    antcode_runner::run_with_source(engine, source, shutdown.clone()).await?;
    shutdown.cancel();
    ops.await??;
    Ok(())
}
