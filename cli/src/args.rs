//! The client's flags: one [`ClientCommand`] per verb, each carrying the [`Conn`] flags (server,
//! profile, output) as global arguments, so they may come before or after a sub-verb.

use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The client commands of `antcode`, flattened into the binary's command list.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Log in to a server and keep an API token for it in a profile.
    ///
    /// Asks for the URL, the user and the password (without echo) when they are not given. The
    /// password is traded for an API token with the user's role as its scope; only the token is
    /// kept, in `$XDG_CONFIG_HOME/antcode/config.toml` (else `~/.config/antcode/`), mode 0600.
    Login(LoginArgs),
    /// Push and list projects.
    Projects(Projects),
    /// List, show, create, change, pause and resume tasks.
    Tasks(Tasks),
    /// Start a run of TASK (a name or an id); with --follow, stream its log and exit with its
    /// exit code.
    Run(RunArgs),
    /// Run TASK and wait for its end; print its result JSON (or its output when it has none).
    Invoke(InvokeArgs),
    /// List and show runs.
    Runs(Runs),
    /// Print a run's log; -f follows it live until the run ends.
    Logs(LogsArgs),
    /// Cancel a run.
    Cancel(RunRef),
    /// Start a new run of a run's task, with the same input.
    Retry(RunRef),
    /// List runners, or drain one.
    Workers(Workers),
    /// Create a one-time enrollment key for a gateway runner.
    Keys(Keys),
    /// Print a shell completion script (e.g. `antcode completions bash > /etc/bash_completion.d/antcode`).
    Completions(CompletionsArgs),
}

impl ClientCommand {
    /// The names of the client commands, for the binary's grouped help.
    pub const NAMES: [&'static str; 12] = [
        "login",
        "projects",
        "tasks",
        "run",
        "invoke",
        "runs",
        "logs",
        "cancel",
        "retry",
        "workers",
        "keys",
        "completions",
    ];
}

/// Where the server is and how to show its answers; every client command takes these.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The profile of the config file to use (`default` if unset).
    #[arg(long, global = true, env = "ANTCODE_PROFILE")]
    pub profile: Option<String>,
    /// The server: control (`http://HOST:8000`) or the edge (`https://HOST:50051`); overrides
    /// the profile's. The token comes from ANTCODE_TOKEN, or from the profile when its URL is
    /// this one.
    #[arg(long, global = true, env = "ANTCODE_URL")]
    pub url: Option<String>,
    /// A PEM file of the CA to trust for an https URL (the edge's `ca.pem`).
    #[arg(long, global = true, env = "ANTCODE_CA")]
    pub ca: Option<PathBuf>,
    /// `table` for people, `json` for scripts (the API's answer as it is).
    #[arg(
        long,
        short = 'o',
        global = true,
        env = "ANTCODE_OUTPUT",
        default_value = "table"
    )]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The user to log in as (asked on the terminal if missing).
    #[arg(long, short = 'u', env = "ANTCODE_USER")]
    pub username: Option<String>,
    /// Read the password from the first line of standard input instead of the terminal.
    #[arg(long)]
    pub password_stdin: bool,
    /// Days until the stored API token expires (1-366).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=366))]
    pub days: u64,
}

#[derive(Debug, Args)]
pub struct Projects {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: ProjectsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Upload PATH as a new project, or as a new version of the project of that name. A
    /// directory is packed as a .tar.gz, leaving out what its `.antcodeignore` names
    /// (gitignore syntax); a file (.py, .zip, .tar.gz) is sent as it is.
    Push(Box<PushArgs>),
    /// List projects.
    Ls(Page),
    /// Sync a Git project now: a new version if its ref's files changed.
    Sync {
        /// The project's name or id.
        project: String,
    },
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A directory, or a .py, .zip or .tar.gz file.
    pub path: Option<PathBuf>,
    /// The project's name (default: the directory's or file's name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// The script to run, relative to the bundle's root (default: main.py, or the only .py).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The Python its runs need (`major.minor`).
    #[arg(long)]
    pub python_version: Option<String>,
    /// A description for a new project.
    #[arg(long)]
    pub description: Option<String>,
    /// The largest archive to send, in bytes (the server's ANTCODE_MAX_UPLOAD_BYTES default).
    #[arg(long, default_value_t = crate::pack::DEFAULT_MAX_UPLOAD)]
    pub max_bytes: u64,
    /// A Git repository URL instead of a path: creates a project that syncs from it, or
    /// points the project of that name at it and syncs it now.
    #[arg(long, conflicts_with = "path")]
    pub git: Option<String>,
    /// With --git: the branch, tag or commit to follow (default: the remote's default branch).
    #[arg(long = "ref", requires = "git")]
    pub reference: Option<String>,
    /// With --git: the project's directory inside the repository.
    #[arg(long, requires = "git")]
    pub subdir: Option<String>,
    /// With --git: the Git credential to fetch with (`PUT /git-credentials/NAME`).
    #[arg(long, requires = "git")]
    pub credential: Option<String>,
    /// With --git: sync automatically this often, in seconds (60 or more).
    #[arg(long, requires = "git")]
    pub interval: Option<u64>,
}

/// One page of a list.
#[derive(Debug, Args)]
pub struct Page {
    /// At most this many items (1-500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl Page {
    /// The page's query parameters.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![("limit", self.limit.to_string())];
        if let Some(c) = &self.cursor {
            query.push(("cursor", c.clone()));
        }
        query
    }
}

#[derive(Debug, Args)]
pub struct Tasks {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: TasksCommand,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks.
    Ls(Page),
    /// Show a task (a name or an id).
    Show(TaskRef),
    /// Create a task of a project.
    Create(TaskCreate),
    /// Change fields of a task (a JSON merge patch of the fields given).
    Edit(TaskEdit),
    /// Pause a task's schedule.
    Pause(TaskRef),
    /// Resume a task's schedule.
    Resume(TaskRef),
}

#[derive(Debug, Args)]
pub struct TaskRef {
    /// A task's name or id.
    pub task: String,
}

/// Task fields as flags; `--set FIELD=VALUE` reaches any other field of the API.
#[derive(Debug, Args)]
pub struct TaskFields {
    /// An argument of the script (repeatable; replaces the task's arguments).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Seconds a run may take.
    #[arg(long)]
    pub timeout_s: Option<u64>,
    /// The queue its runs go to.
    #[arg(long)]
    pub queue: Option<String>,
    /// A cron schedule (five fields, UTC).
    #[arg(long, conflicts_with = "every_s")]
    pub cron: Option<String>,
    /// An interval schedule, in seconds.
    #[arg(long)]
    pub every_s: Option<u64>,
    /// Any field: `FIELD=TEXT` sets a string, `FIELD:=JSON` any JSON value (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TaskCreate {
    /// The task's name.
    pub name: String,
    /// The project it runs (a name or an id).
    #[arg(long)]
    pub project: String,
    #[command(flatten)]
    pub fields: TaskFields,
}

#[derive(Debug, Args)]
pub struct TaskEdit {
    /// A task's name or id.
    pub task: String,
    /// Rename it.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub fields: TaskFields,
}

/// What a run gets besides its task's own settings.
#[derive(Debug, Args)]
pub struct RunInput {
    /// A param: `KEY=TEXT` for a string, `KEY:=JSON` for any JSON value (repeatable).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// An argument in place of the task's (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// An environment variable over the task's, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// A task's name or id.
    pub task: String,
    #[command(flatten)]
    pub input: RunInput,
    /// Stream the run's log until it ends, then exit with its exit code.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// A task's name or id.
    pub task: String,
    #[command(flatten)]
    pub input: RunInput,
    /// Seconds to wait for the run's end (1-300).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub wait_s: u64,
}

#[derive(Debug, Args)]
pub struct Runs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    Ls(RunsLs),
    /// Show a run with its history.
    Show(RunId),
}

#[derive(Debug, Args)]
pub struct RunsLs {
    /// Only the runs of this task (a name or an id).
    #[arg(long)]
    pub task: Option<String>,
    /// Only runs in this state (queued, running, succeeded, failed, timed_out, cancelled, lost).
    #[arg(long)]
    pub state: Option<String>,
    /// Only runs queued since: an RFC 3339 time, or an age such as `90s`, `15m`, `2h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// Only runs queued before: an RFC 3339 time, or an age as for `--since`.
    #[arg(long)]
    pub until: Option<String>,
    /// Only runs started this way (manual, schedule, webhook, retry, …).
    #[arg(long)]
    pub trigger: Option<String>,
    /// Only runs whose error contains this text (case ignored).
    #[arg(long)]
    pub error: Option<String>,
    /// Only runs on this worker (its id).
    #[arg(long)]
    pub worker: Option<String>,
    #[command(flatten)]
    pub page: Page,
}

#[derive(Debug, Args)]
pub struct RunId {
    /// A run's id.
    pub run: String,
}

#[derive(Debug, Args)]
pub struct RunRef {
    #[command(flatten)]
    pub conn: Conn,
    /// A run's id.
    pub run: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// A run's id.
    pub run: String,
    /// Follow the log live until the run ends, then exit with its exit code.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One attempt's log (1 is the first); not with --follow.
    #[arg(long, conflicts_with = "follow")]
    pub attempt: Option<u32>,
}

#[derive(Debug, Args)]
pub struct Workers {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: WorkersCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List live runners.
    Ls,
    /// Ask a runner (a name or an id) to take no more runs; --undo takes that back.
    Drain(DrainArgs),
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// A runner's name or id.
    pub worker: String,
    /// Take back the drain request.
    #[arg(long)]
    pub undo: bool,
}

#[derive(Debug, Args)]
pub struct Keys {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a one-time enrollment key (shown once) for `antcode runner --mode gateway --enroll`.
    Create(KeyCreate),
}

#[derive(Debug, Args)]
pub struct KeyCreate {
    /// A note saying what the key is for.
    #[arg(long)]
    pub note: Option<String>,
    /// A queue the runner may serve (repeatable; default: `default`).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// A label the runner is routed by, `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Seconds until the key expires unused.
    #[arg(long)]
    pub ttl_s: Option<u64>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}
