//! Command-line flags. Every setting is a flag and an `ANTCODE_*` environment variable; the seed
//! deployment's names (`WORKER_NAME`, …) are mapped onto these in the compose file.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "antcode",
    version,
    about = "Store Python projects, run them on schedules or on demand, watch them live"
)]
pub struct Cli {
    /// Log format: human on a terminal, json for log shippers.
    #[arg(
        long,
        global = true,
        env = "ANTCODE_LOG_FORMAT",
        default_value = "human"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process on embedded storage: the laptop and single-box deployment.
    Up(UpArgs),
    /// The control plane (REST API, auth, live logs).
    Control(ControlArgs),
    /// The schedule plane (recorder, leader-elected tick, compensation).
    Scheduler(SchedulerArgs),
    /// The edge gateway for runners outside the network.
    Edge(EdgeArgs),
    /// A runner that executes Python runs.
    Runner(RunnerArgs),
    /// Recovery on the host, against the database: reset a password, promote a user.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Backs up the data dir of `antcode up` (running or not) into a new directory: the
    /// database, the blobs, and the secret key and TLS files sealed with a passphrase read from
    /// ANTCODE_BACKUP_PASSPHRASE or else the first line of stdin.
    Backup(BackupArgs),
    /// Restores a backup into a new or empty data dir, after checking the passphrase and every
    /// file of the backup.
    Restore(RestoreArgs),
    /// The client commands, which talk to a server's API (`antcode-cli`).
    #[command(flatten)]
    Client(antcode_cli::ClientCommand),
}

/// The server commands, listed apart from the client ones in `antcode --help`.
pub const SERVER_COMMANDS: [&str; 8] = [
    "up",
    "control",
    "scheduler",
    "edge",
    "runner",
    "admin",
    "backup",
    "restore",
];

/// The whole command line, its help listing server and client commands under two headings
/// (clap has no heading per subcommand, so the lists are written into the help template).
pub fn command() -> clap::Command {
    let cmd = <Cli as clap::CommandFactory>::command();
    let width = cmd
        .get_subcommands()
        .map(|c| c.get_name().len())
        .max()
        .unwrap_or(0);
    let list = |names: &[&str]| -> String {
        names
            .iter()
            .filter_map(|name| cmd.find_subcommand(name))
            .map(|c| {
                let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
                // A long first paragraph is cut at its colon: `<cmd> --help` has it whole.
                let about = match about.split_once(": ") {
                    Some((head, _)) if about.len() > 100 => head.to_string(),
                    _ => about,
                };
                format!("  {:width$}  {about}\n", c.get_name())
            })
            .collect()
    };
    let (server, client) = (
        list(&SERVER_COMMANDS),
        list(&antcode_cli::ClientCommand::NAMES),
    );
    let h = cmd.get_styles().get_header();
    let template = format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n\
         {h}Server commands:{h:#}\n{server}\n\
         {h}Client commands:{h:#} (they talk to a server's API; start with `antcode login`)\n{client}\n\
         {h}Options:{h:#}\n{{options}}"
    );
    cmd.help_template(template)
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The data dir of `antcode up`.
    #[arg(long, env = "ANTCODE_DATA_DIR", default_value = "./antcode-data")]
    pub data_dir: PathBuf,
    /// Where the backup goes: a new or empty directory, or `s3://BUCKET/PREFIX` (a prefix
    /// without a backup; the S3 settings are the blob store's, `ANTCODE_S3_*`).
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup: a directory written by `antcode backup`, or its `s3://BUCKET/PREFIX`.
    #[arg(long)]
    pub from: PathBuf,
    /// The data dir to restore into: a new or empty directory.
    #[arg(long, env = "ANTCODE_DATA_DIR", default_value = "./antcode-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Sets USER's password (and enables them), revoking their sessions and tokens. The new
    /// password is read from ANTCODE_NEW_PASSWORD or else from the first line of stdin, never
    /// from the command line.
    ResetPassword(AdminArgs),
    /// Makes USER an enabled admin.
    Promote(AdminArgs),
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    pub user: String,
    /// The database of `antcode up`: `DIR/antcode.db`. Ignored when --database-url is given.
    #[arg(long, env = "ANTCODE_DATA_DIR", default_value = "./antcode-data")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH`, `postgres://…` or `mysql://…` (as for `antcode control`).
    #[arg(long, env = "ANTCODE_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Parses a `--trusted-proxy` value.
fn cidr(s: &str) -> Result<antcode_control::Cidr, String> {
    antcode_control::Cidr::parse(s)
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Start even if the kernel refuses part of the task sandbox (user, mount or PID
    /// namespaces, seccomp, Landlock): each missing guarantee is logged and shown in the
    /// worker's `sandbox` label. Without it such a runner refuses to start.
    #[arg(long, env = "ANTCODE_ALLOW_WEAK_SANDBOX", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_weak_sandbox: bool,
    #[arg(long, env = "ANTCODE_DATA_DIR", default_value = "./antcode-data")]
    pub data_dir: PathBuf,
    /// Address of the REST API and web UI.
    #[arg(long, env = "ANTCODE_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    #[arg(long, env = "ANTCODE_EDGE_LISTEN", default_value = "127.0.0.1:50051")]
    pub edge_listen: SocketAddr,
    /// A name (DNS or IP) runners use to reach the edge, added to its certificate; repeatable.
    #[arg(long = "edge-host", env = "ANTCODE_EDGE_HOSTS", value_delimiter = ',')]
    pub edge_hosts: Vec<String>,
    /// Password of the `admin` user created on first start (default `admin`, with a warning).
    #[arg(long, env = "ANTCODE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Concurrent runs of the embedded runner.
    #[arg(long, env = "ANTCODE_SLOTS", default_value_t = 4)]
    pub slots: usize,
    #[command(flatten)]
    pub queues: Queues,
    /// The web UI's address as users reach it, for the run links in alerts
    /// (default: the listen address).
    #[arg(long, env = "ANTCODE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Do not start the embedded runner.
    #[arg(long)]
    pub no_runner: bool,
    /// SQLite's durability per commit: `full` (the default: an fsync per commit, an answered
    /// write survives a power loss) or `normal` (no fsync per commit; the last commits before a
    /// power loss or OS crash may be lost, never the database), or `extra`.
    #[arg(long, env = "ANTCODE_SQLITE_SYNCHRONOUS", value_parser = ["normal", "full", "extra"])]
    pub sqlite_synchronous: Option<String>,
    /// Seconds a stop (SIGTERM, Ctrl-C) waits for running runs before it interrupts them; they
    /// run again after the restart, at no cost to their retries. A second signal stops at once.
    #[arg(long = "grace", env = "ANTCODE_GRACE_S", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub grace_s: u64,
    #[command(flatten)]
    pub ports: PlatformPorts,
    #[command(flatten)]
    pub git: GitArgs,
    /// Queues whose runs the embedded runner starts warm (see `antcode runner --warm-queues`).
    #[arg(long, env = "ANTCODE_WARM_QUEUES", value_delimiter = ',')]
    pub warm_queues: Vec<String>,
    /// A reverse proxy (address or CIDR) whose `X-Forwarded-For` is believed; repeatable. None
    /// by default. The embedded edge needs none.
    #[arg(long = "trusted-proxy", env = "ANTCODE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<antcode_control::Cidr>,
}

/// What control's fetches of Git projects may reach and take.
#[derive(Debug, Clone, Args)]
pub struct GitArgs {
    /// Let Git projects fetch from loopback and private addresses. Refused by default: a
    /// project's URL could otherwise reach services inside the network (SSRF).
    #[arg(long, env = "ANTCODE_GIT_ALLOW_PRIVATE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub git_allow_private: bool,
    /// Largest fetch of a Git project's commit, in MiB.
    #[arg(long, env = "ANTCODE_GIT_MAX_MB", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub git_max_mb: u64,
    /// Longest fetch of a Git project's commit, in seconds.
    #[arg(long, env = "ANTCODE_GIT_TIMEOUT_S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub git_timeout_s: u64,
}

impl GitArgs {
    pub fn policy(&self) -> antcode_control::GitPolicy {
        antcode_control::GitPolicy {
            allow_private: self.git_allow_private,
            max_fetch_bytes: self.git_max_mb * 1024 * 1024,
            timeout: std::time::Duration::from_secs(self.git_timeout_s),
            ..antcode_control::GitPolicy::default()
        }
    }
}

/// The platform's ports, shut out of tasks with network `full`.
#[derive(Debug, Args)]
pub struct PlatformPorts {
    /// Another port of the platform that tasks with network `full` may not reach, such as the
    /// database's (control's, the edge's, the broker's and the blob store's are shut out
    /// already); repeatable.
    #[arg(
        long = "protect-port",
        env = "ANTCODE_PROTECTED_PORTS",
        value_delimiter = ','
    )]
    pub protected_ports: Vec<u16>,
}

impl PlatformPorts {
    /// The ports to shut out: `known` and the extra ones.
    pub fn shut_out(&self, known: impl IntoIterator<Item = u16>) -> Vec<u16> {
        known
            .into_iter()
            .chain(self.protected_ports.iter().copied())
            .collect()
    }
}

/// The queues a runner serves (`up`'s embedded one, or `antcode runner`).
#[derive(Debug, Args)]
pub struct Queues {
    /// A queue to serve; repeatable, or comma-separated.
    #[arg(
        long = "queue",
        env = "ANTCODE_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub queues: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Seams {
    /// `sqlite://PATH`, `postgres://…` or `mysql://…`.
    #[arg(long, env = "ANTCODE_DATABASE_URL")]
    pub database_url: String,
    /// `redis://[:password@]host:port[/db]` or `rediss://…`.
    #[arg(long, env = "ANTCODE_REDIS_URL")]
    pub redis_url: String,
    /// `file://DIR` (or a path) for a local directory.
    #[arg(long, env = "ANTCODE_BLOB_URL")]
    pub blob_url: String,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub seams: Seams,
    #[arg(long, env = "ANTCODE_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    /// Development mode: allows the default admin password and a missing secret key.
    #[arg(long, env = "ANTCODE_DEV", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,
    #[arg(long, env = "ANTCODE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Key that encrypts task secrets at rest (required outside --dev).
    #[arg(long, env = "ANTCODE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    #[arg(long, env = "ANTCODE_MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// A reverse proxy (address or CIDR) whose `X-Forwarded-For` is believed; repeatable. None
    /// by default. The edge needs none (it vouches for the address with the edge token).
    #[arg(long = "trusted-proxy", env = "ANTCODE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<antcode_control::Cidr>,
    /// The API's address as users reach it, for the URLs of webhooks (default: the request's
    /// Host).
    #[arg(long, env = "ANTCODE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where runners reach the edge (`https://EDGE_HOST:50051`), for the enrollment command the
    /// web UI shows.
    #[arg(long, env = "ANTCODE_EDGE_URL")]
    pub edge_url: Option<String>,
    #[command(flatten)]
    pub git: GitArgs,
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Seconds a running run may lack a live lease before it is declared lost.
    #[arg(long, env = "ANTCODE_LOST_AFTER_S", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lost_after_s: u64,
    /// The web UI's address as users reach it, for the run links in alerts.
    #[arg(long, env = "ANTCODE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Address of the operations endpoint (/metrics, /healthz, /readyz).
    #[arg(long, env = "ANTCODE_OPS_LISTEN", default_value = "0.0.0.0:9101")]
    pub ops_listen: SocketAddr,
    #[arg(long, env = "ANTCODE_DATABASE_URL")]
    pub database_url: String,
    #[arg(long, env = "ANTCODE_REDIS_URL")]
    pub redis_url: String,
    /// Where the logs of lost runs are archived (what they streamed before their runner died).
    #[arg(long, env = "ANTCODE_BLOB_URL")]
    pub blob_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// Address of the operations endpoint (/metrics, /healthz, /readyz).
    #[arg(long, env = "ANTCODE_OPS_LISTEN", default_value = "0.0.0.0:9103")]
    pub ops_listen: SocketAddr,
    #[arg(long, env = "ANTCODE_EDGE_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunnerMode {
    Direct,
    Gateway,
}

#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// Start even if the kernel refuses part of the task sandbox (user, mount or PID
    /// namespaces, seccomp, Landlock): each missing guarantee is logged and shown in the
    /// worker's `sandbox` label. Without it such a runner refuses to start.
    #[arg(long, env = "ANTCODE_ALLOW_WEAK_SANDBOX", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_weak_sandbox: bool,
    /// Address of the operations endpoint (/metrics, /healthz, /readyz).
    #[arg(long, env = "ANTCODE_OPS_LISTEN", default_value = "0.0.0.0:9102")]
    pub ops_listen: SocketAddr,
    #[arg(long, env = "ANTCODE_RUNNER_MODE", default_value = "direct")]
    pub mode: RunnerMode,
    #[command(flatten)]
    pub queues: Queues,
    /// Labels as K=V, repeatable. A task that requires labels runs only on a runner that has
    /// them all (or its name, as `runner=NAME`). A gateway runner is routed by its enrollment
    /// key's labels instead: what it says of itself does not count.
    #[arg(long = "label", env = "ANTCODE_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    #[arg(long, env = "ANTCODE_SLOTS", default_value_t = 2)]
    pub slots: usize,
    #[command(flatten)]
    pub ports: PlatformPorts,
    /// Queues whose runs all start warm: forked from a pre-started interpreter of their
    /// project version instead of a fresh one (a task can also ask with `warm: true`).
    #[arg(long, env = "ANTCODE_WARM_QUEUES", value_delimiter = ',')]
    pub warm_queues: Vec<String>,
    /// Seconds a lease lives without a heartbeat (the heartbeat timeout).
    #[arg(long, env = "ANTCODE_LEASE_TTL_S", default_value_t = 15)]
    pub lease_ttl_s: u64,
    /// Seconds between heartbeats.
    #[arg(long, env = "ANTCODE_HEARTBEAT_S", default_value_t = 2)]
    pub heartbeat_s: u64,
    /// Seconds a stop (SIGTERM, Ctrl-C) waits for running runs before it interrupts them; they
    /// are queued again at no cost to their retries. A second signal stops at once.
    #[arg(long = "grace", env = "ANTCODE_GRACE_S", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub grace_s: u64,
    #[arg(long, env = "ANTCODE_WORKER_NAME")]
    pub name: Option<String>,
    /// The most memory a task's `limits.memory_mb` may ask for, MiB (a run above it fails).
    #[arg(long, env = "ANTCODE_MAX_MEMORY_MB", default_value_t = antcode_runner::default_max_limits().memory_mb)]
    pub max_memory_mb: u64,
    /// The most CPU a task's `limits.cpu_millicores` may ask for (1000 = one CPU).
    #[arg(long, env = "ANTCODE_MAX_CPU_MILLICORES", default_value_t = antcode_runner::default_max_limits().cpu_millicores)]
    pub max_cpu_millicores: u64,
    /// The most processes a task's `limits.pids` may ask for.
    #[arg(long, env = "ANTCODE_MAX_PIDS", default_value_t = antcode_runner::default_max_limits().pids)]
    pub max_pids: u64,
    /// The largest file size a task's `limits.tmp_mb` may ask for, MiB.
    #[arg(long, env = "ANTCODE_MAX_TMP_MB", default_value_t = antcode_runner::default_max_limits().tmp_mb)]
    pub max_tmp_mb: u64,
    #[arg(long, env = "ANTCODE_DATA_DIR", default_value = "./antcode-runner")]
    pub data_dir: PathBuf,
    #[arg(long, env = "ANTCODE_REDIS_URL")]
    pub redis_url: Option<String>,
    #[arg(long, env = "ANTCODE_BLOB_URL")]
    pub blob_url: Option<String>,
    /// Gateway mode: the edge's URL, e.g. `https://edge.example:50051`.
    #[arg(long, env = "ANTCODE_EDGE_URL")]
    pub edge: Option<String>,
    /// Gateway mode: the cluster CA certificate (PEM).
    #[arg(long, env = "ANTCODE_EDGE_CA")]
    pub ca: Option<PathBuf>,
    /// Gateway mode: a one-time enrollment key.
    #[arg(long, env = "ANTCODE_ENROLL_KEY", hide_env_values = true)]
    pub enroll: Option<String>,
}

impl RunnerArgs {
    /// The runner-level maximum of each task limit.
    pub fn max_limits(&self) -> antcode_core::model::RunLimits {
        antcode_core::model::RunLimits {
            memory_mb: self.max_memory_mb,
            cpu_millicores: self.max_cpu_millicores,
            pids: self.max_pids,
            tmp_mb: self.max_tmp_mb,
        }
    }
}

/// Parses `K=V` labels; the error names the bad one.
pub fn parse_labels(raw: &[String]) -> Result<std::collections::BTreeMap<String, String>, String> {
    raw.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("--label {kv:?}: expected KEY=VALUE")),
        })
        .collect()
}

/// Makes every relative path of the command absolute against the working directory, once at
/// start, and logs each one it changed: data dirs, local blob and SQLite URLs, the runner's
/// `--ca`, and the PEM files named by environment variables. Nothing later depends on the
/// working directory (runs start in their own).
pub fn resolve_paths(command: &mut Command) {
    match command {
        Command::Up(a) => resolve_path("--data-dir", &mut a.data_dir),
        Command::Backup(a) => {
            resolve_path("--data-dir", &mut a.data_dir);
            if !a.to.starts_with("s3:") {
                resolve_path("--to", &mut a.to);
            }
        }
        Command::Restore(a) => {
            if !a.from.starts_with("s3:") {
                resolve_path("--from", &mut a.from);
            }
            resolve_path("--data-dir", &mut a.data_dir);
        }
        Command::Admin(AdminCommand::ResetPassword(a) | AdminCommand::Promote(a)) => {
            resolve_path("--data-dir", &mut a.data_dir);
            if let Some(url) = a.database_url.as_mut() {
                resolve_url("--database-url", url);
            }
        }
        Command::Control(a) => {
            resolve_url("--database-url", &mut a.seams.database_url);
            resolve_url("--blob-url", &mut a.seams.blob_url);
            resolve_env_paths(&["ANTCODE_CLUSTER_CA_CERT", "ANTCODE_CLUSTER_CA_KEY"]);
        }
        Command::Scheduler(a) => {
            resolve_url("--database-url", &mut a.database_url);
            if let Some(url) = a.blob_url.as_mut() {
                resolve_url("--blob-url", url);
            }
        }
        Command::Edge(_) => resolve_env_paths(&[
            "ANTCODE_TLS_CERT",
            "ANTCODE_TLS_KEY",
            "ANTCODE_CLUSTER_CA_CERT",
            "ANTCODE_BLOB_URL",
        ]),
        Command::Runner(a) => {
            resolve_path("--data-dir", &mut a.data_dir);
            if let Some(ca) = a.ca.as_mut() {
                resolve_path("--ca", ca);
            }
            if let Some(url) = a.blob_url.as_mut() {
                resolve_url("--blob-url", url);
            }
        }
        // A client's paths are its user's, read where they are given.
        Command::Client(_) => {}
    }
}

fn resolve_path(what: &str, path: &mut PathBuf) {
    if path.is_relative() {
        if let Ok(abs) = std::path::absolute(&*path) {
            tracing::info!("{what} {} resolved to {}", path.display(), abs.display());
            *path = abs;
        }
    }
}

fn resolve_url(what: &str, url: &mut String) {
    let abs = antcode_core::seams::absolute_url(url);
    if abs != *url {
        tracing::info!("{what} {url} resolved to {abs}");
        *url = abs;
    }
}

/// Settings read from the environment later on (the edge's PEM files, control's cluster CA).
fn resolve_env_paths(names: &[&str]) {
    for name in names {
        let Ok(value) = std::env::var(name) else {
            continue;
        };
        let abs = antcode_core::seams::absolute_url(&value);
        if abs != value {
            tracing::info!("{name} {value} resolved to {abs}");
            // Single-threaded here: main calls this before the runtime starts.
            std::env::set_var(name, abs);
        }
    }
}

/// A secret a command needs: the variable `var`, else the first line of stdin; never argv,
/// where other users of the host could read it.
pub fn env_or_stdin_line(var: &str, what: &str) -> std::io::Result<String> {
    if let Ok(value) = std::env::var(var) {
        return Ok(value);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| std::io::Error::new(e.kind(), format!("reading {what} from stdin: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The TCP port a service URL names (`redis://…`, `http(s)://…`), its scheme's default if none;
/// `None` for a URL without a network address (`file://`, a path, `memory://`).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let explicit = match host_port.rsplit_once(':') {
        // An IPv6 host without a port ends in `]`.
        Some((_, port)) if !port.ends_with(']') => Some(port.parse().ok()?),
        _ => None,
    };
    let default = match scheme {
        "redis" | "rediss" => Some(6379),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    if host_port.is_empty() {
        return None;
    }
    explicit.or(default)
}

#[cfg(test)]
mod tests {
    use super::url_port;

    #[test]
    fn git_allow_private_reads_one_and_true_from_the_environment() {
        use clap::Parser;
        #[derive(Parser)]
        struct Probe {
            #[command(flatten)]
            git: super::GitArgs,
        }
        for (value, want) in [
            ("1", true),
            ("true", true),
            ("yes", true),
            ("0", false),
            ("false", false),
        ] {
            std::env::set_var("ANTCODE_GIT_ALLOW_PRIVATE", value);
            let probe = Probe::try_parse_from(["antcode"]).expect(value);
            assert_eq!(probe.git.policy().allow_private, want, "{value}");
        }
        std::env::remove_var("ANTCODE_GIT_ALLOW_PRIVATE");
        assert!(
            Probe::try_parse_from(["antcode", "--git-allow-private"])
                .unwrap()
                .git
                .git_allow_private
        );
    }

    #[test]
    fn service_urls_name_their_ports() {
        assert_eq!(
            url_port("redis://:pw@redis.internal:6380/0?prefix=x"),
            Some(6380)
        );
        assert_eq!(url_port("redis://127.0.0.1"), Some(6379));
        assert_eq!(url_port("https://s3.example.com/bucket"), Some(443));
        assert_eq!(url_port("http://[::1]:9000/b"), Some(9000));
        assert_eq!(url_port("http://[::1]/b"), Some(80));
        assert_eq!(url_port("file:///var/blobs"), None);
        assert_eq!(url_port("memory://"), None);
        assert_eq!(url_port("/var/blobs"), None);
    }
}
