//! Domain types. Store rows, API bodies and broker messages are all these same structs, so a
//! field added here shows up everywhere at once. Times are `i64` milliseconds (see [`crate::time`]).
//! Past 800 lines with its tests; the types stay together because each is used by every plane.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::time::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(skip)]
    pub password_hash: String,
    /// Bumped by every change that revokes the user's credentials (password, role, disabled);
    /// a token minted under an older generation is dead.
    #[serde(skip)]
    pub generation: i64,
}

/// What [`crate::store::UserStore::change_user`] changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

/// A bearer credential: a login session or a named API token. Only its hash is stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// `session` for logins, `api` for tokens created through `/tokens`.
    pub kind: String,
    pub scopes: Vec<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: i64,
    #[serde(skip)]
    pub token_hash: String,
    /// The owner's [`User::generation`] when this was minted; valid only while they match.
    #[serde(skip)]
    pub generation: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum BundleFormat {
    #[serde(rename = "py")]
    Py,
    #[serde(rename = "zip")]
    Zip,
    #[serde(rename = "tar.gz")]
    TarGz,
}

impl BundleFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleFormat::Py => "py",
            BundleFormat::Zip => "zip",
            BundleFormat::TarGz => "tar.gz",
        }
    }

    pub fn parse(s: &str) -> Option<BundleFormat> {
        match s {
            "py" => Some(BundleFormat::Py),
            "zip" => Some(BundleFormat::Zip),
            "tar.gz" => Some(BundleFormat::TarGz),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: String,
    pub current_version: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// The Git repository the project syncs from; none for an uploaded project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::git::GitSource>,
    /// How its last sync went (Git projects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::git::SyncStatus>,
}

/// An immutable, content-addressed upload (or Git sync) of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectVersion {
    pub project_id: String,
    pub version: i64,
    pub bundle: BundleRef,
    pub entrypoint: String,
    /// Requirement lines (from `requirements.txt` or the upload's `requirements` field), empty if none.
    pub requirements: String,
    pub python_version: Option<String>,
    pub files: Vec<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// The commit a synced version was taken from; none for an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::git::GitOrigin>,
}

/// Where a bundle lives in the BlobStore and how to check and unpack it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleRef {
    pub key: String,
    pub sha256: String,
    pub format: BundleFormat,
    pub size_bytes: i64,
    /// For a single `.py` upload: the file name inside the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Once {
        at: String,
    },
    Interval {
        every_s: u64,
        /// First fire (RFC 3339); the interval counts from it. Without it, from the task's
        /// creation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<String>,
        /// No fire after this time (RFC 3339); the task then has no next fire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<String>,
    },
    Cron {
        cron: String,
        #[serde(default = "utc")]
        timezone: String,
    },
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_s: u64,
    pub max_backoff_s: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff_s: 5,
            max_backoff_s: 300,
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `next_attempt`, jittered down by up to a fifth so retries of
    /// many runs that failed together do not arrive together. `seed` picks the jitter (any value
    /// unique to the run and attempt).
    pub fn jittered_backoff_ms(&self, next_attempt: u32, seed: u64) -> i64 {
        let base = self.backoff_ms(next_attempt);
        let spread = base / 5;
        if spread == 0 {
            return base;
        }
        base - (seed % (spread as u64 + 1)) as i64
    }

    /// Exponential backoff before attempt `next_attempt` (2, 3, …), capped, in milliseconds.
    pub fn backoff_ms(&self, next_attempt: u32) -> i64 {
        let exp = next_attempt.saturating_sub(2).min(20);
        let secs = self
            .backoff_s
            .saturating_mul(1u64 << exp)
            .min(self.max_backoff_s);
        (secs as i64) * 1000
    }
}

/// What a task runs and how. Stored as JSON on the task row and copied into each job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub entrypoint: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Names of `env` variables whose values anyone who can read the task sees; the others'
    /// values are shown only to operators and admins.
    #[serde(default)]
    pub public_env: Vec<String>,
    pub secrets: Vec<String>,
    pub queue: String,
    pub labels: BTreeMap<String, String>,
    pub timeout_s: u64,
    pub retry: RetryPolicy,
    pub overlap: String,
    pub misfire: String,
    pub priority: i32,
    /// A run not started within this many seconds of being queued fails with reason `expired`
    /// (0 = wait forever).
    #[serde(default)]
    pub queue_timeout_s: u64,
    /// Start runs warm: forked from a pre-started interpreter of the project version instead
    /// of a fresh one (same isolation; see the runner's `zygote` module).
    #[serde(default)]
    pub warm: bool,
    /// Kernel-enforced bounds of each run (defaults: [`RunLimits::default`]).
    #[serde(default)]
    pub limits: RunLimits,
    /// What each run may connect to (default `full`).
    #[serde(default)]
    pub network: NetworkPolicy,
    /// How long this task's ended runs are kept, over the global policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::retention::TaskRetention>,
    /// The params its runs take (`crate::params`); without one a trigger's params are passed
    /// as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<crate::params::ParamSchema>,
    /// The params its scheduled runs get, checked against `params` when the task is saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Most runs a minute its triggers, invokes and webhook calls may start (schedules are not
    /// counted); past it they are answered 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers_per_min: Option<u32>,
    /// Tasks its runs start when they succeed (`crate::flow`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<crate::flow::Next>,
    /// Tasks its runs start when they fail, time out, are lost or expire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<crate::flow::Next>,
    /// Tasks its runs start when they end, but for a cancel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_complete: Vec<crate::flow::Next>,
    /// Fan-in: it runs once in a run group, after every one of these tasks succeeded in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Runners to try first: a run waits up to `fallback_s` for a runner that also has these
    /// labels, then goes to any runner its `labels` allow (`crate::broker::routing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<Preference>,
    /// Most runs of this task leased at once, on all runners together (`None`: no bound but the
    /// runners' slots). Enforced by the broker at lease time (`crate::broker::routing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// A bound shared by every task that names the same key: at most `limit` of their runs
    /// leased at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyKey>,
}

/// A task's preferred runners (see [`TaskSpec::prefer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub labels: BTreeMap<String, String>,
    pub fallback_s: u64,
}

impl Preference {
    /// The longest `fallback_s`: a day.
    pub const MAX_FALLBACK_S: u64 = 86_400;
}

/// A concurrency key and its limit (see [`TaskSpec::concurrency`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyKey {
    pub key: String,
    pub limit: u32,
}

impl ConcurrencyKey {
    /// The longest key, in bytes.
    pub const MAX_KEY_BYTES: usize = 128;
    /// The largest limit (also the largest `max_concurrency`).
    pub const MAX_LIMIT: u32 = 10_000;

    /// A key that is empty, longer than [`ConcurrencyKey::MAX_KEY_BYTES`] or holds a control
    /// character, or a limit outside `1..=MAX_LIMIT`, as a message naming the field.
    pub fn check(&self) -> Result<(), String> {
        if self.key.trim().is_empty()
            || self.key.len() > Self::MAX_KEY_BYTES
            || self.key.chars().any(char::is_control)
        {
            return Err(format!(
                "concurrency.key: must be 1-{} bytes of printable characters",
                Self::MAX_KEY_BYTES
            ));
        }
        check_limit("concurrency.limit", self.limit)
    }
}

/// A concurrency limit outside `1..=ConcurrencyKey::MAX_LIMIT`, as a message naming `field`.
pub fn check_limit(field: &str, limit: u32) -> Result<(), String> {
    let max = ConcurrencyKey::MAX_LIMIT;
    if !(1..=max).contains(&limit) {
        return Err(format!("{field}: must be between 1 and {max}, got {limit}"));
    }
    Ok(())
}

impl TaskSpec {
    /// The gates of the jobs of task `task_id` (`crate::broker::routing`): its
    /// `max_concurrency` and its concurrency key, each with its limit.
    pub fn gates(&self, task_id: &str) -> BTreeMap<String, u32> {
        use crate::broker::routing;
        let mut gates = BTreeMap::new();
        if let Some(n) = self.max_concurrency {
            gates.insert(routing::task_gate(task_id), n);
        }
        if let Some(c) = &self.concurrency {
            gates.insert(routing::key_gate(&c.key), c.limit);
        }
        gates
    }
}

/// The bounds the kernel enforces on one run (the runner's `cgroup` module): memory, CPU,
/// processes and the size of any file it writes. A field a body leaves out takes its default;
/// a runner refuses a run that asks for more than its configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunLimits {
    /// Memory of all the run's processes together (page cache included), MiB. Past it the
    /// kernel's OOM killer ends the run, which fails with "memory limit N MiB exceeded".
    pub memory_mb: u64,
    /// CPU time per wall-clock time, in thousandths of a CPU (1000 = one whole CPU).
    pub cpu_millicores: u64,
    /// Processes and threads alive at once (a fork past it fails with EAGAIN).
    pub pids: u64,
    /// Largest file the run may write, MiB (its `/tmp` is bounded by the same size where the
    /// sandbox mounts one). A write past it fails with EFBIG.
    pub tmp_mb: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            memory_mb: 512,
            cpu_millicores: 1000,
            pids: 256,
            tmp_mb: 256,
        }
    }
}

impl RunLimits {
    /// What any task may ask for, whatever the runner (a runner's own maximum may be lower):
    /// (field, least, most).
    pub const BOUNDS: [(&'static str, u64, u64); 4] = [
        ("memory_mb", 16, 1 << 20),
        ("cpu_millicores", 10, 1_024_000),
        ("pids", 8, 1 << 20),
        ("tmp_mb", 1, 1 << 20),
    ];

    /// Each field as (name, value), in [`RunLimits::BOUNDS`]'s order.
    pub fn fields(&self) -> [(&'static str, u64); 4] {
        [
            ("memory_mb", self.memory_mb),
            ("cpu_millicores", self.cpu_millicores),
            ("pids", self.pids),
            ("tmp_mb", self.tmp_mb),
        ]
    }

    /// A field outside [`RunLimits::BOUNDS`], as a message naming it.
    pub fn check(&self) -> Result<(), String> {
        for ((name, value), (_, least, most)) in self.fields().into_iter().zip(Self::BOUNDS) {
            if !(least..=most).contains(&value) {
                return Err(format!(
                    "limits.{name}: must be between {least} and {most}, got {value}"
                ));
            }
        }
        Ok(())
    }

    /// The first field above the same field of `max`, as a message naming both values.
    pub fn above(&self, max: &RunLimits) -> Option<String> {
        self.fields()
            .into_iter()
            .zip(max.fields())
            .find(|((_, v), (_, m))| v > m)
            .map(|((name, v), (_, m))| {
                format!("limits.{name} {v} is above this runner's maximum {m}")
            })
    }

    pub fn is_default(&self) -> bool {
        *self == RunLimits::default()
    }
}

/// What a run may connect to.
///
/// * `full` (default): any address but the platform's own ports (control, edge, broker, blob
///   store, and any the runner is told), which are shut out on every host;
/// * `none`: nothing; the run has a network namespace of its own with only a loopback device;
/// * `{"allow": ["host:port", …]}`: TCP connections to the listed ports only (at most
///   [`NetworkPolicy::MAX_ALLOW`]). **Enforced by port only**: the kernel sees addresses, not
///   names, so `db.example:5432` allows port 5432 on any host. A platform port is reachable
///   only when listed. UDP (DNS) is not restricted by a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum NetworkPolicy {
    #[default]
    Full,
    None,
    Allow(Vec<String>),
}

impl NetworkPolicy {
    pub const MAX_ALLOW: usize = 32;
    /// The longest allow-list entry: a 253-character name, `:` and a port.
    pub const MAX_ENTRY_CHARS: usize = 260;

    pub fn is_full(&self) -> bool {
        *self == NetworkPolicy::Full
    }

    /// Checks an allow-list: at most [`NetworkPolicy::MAX_ALLOW`] entries of `host:port`
    /// (`host` a name, an IPv4 address, `[IPv6]` or `*`; `port` 1-65535).
    pub fn check(&self) -> Result<(), String> {
        let NetworkPolicy::Allow(entries) = self else {
            return Ok(());
        };
        if entries.len() > Self::MAX_ALLOW {
            return Err(format!(
                "network.allow: at most {} entries",
                Self::MAX_ALLOW
            ));
        }
        for entry in entries {
            allow_port(entry).ok_or_else(|| {
                format!("network.allow: {entry:?} is not host:port (host a name, an address, [IPv6] or *; port 1-65535)")
            })?;
        }
        Ok(())
    }

    /// The ports an allow-list lets through, sorted, without duplicates; `None` for `full` and
    /// `none`. Entries that do not parse are left out (they are refused when the task is saved).
    pub fn allowed_ports(&self) -> Option<Vec<u16>> {
        let NetworkPolicy::Allow(entries) = self else {
            return None;
        };
        let mut ports: Vec<u16> = entries.iter().filter_map(|e| allow_port(e)).collect();
        ports.sort_unstable();
        ports.dedup();
        Some(ports)
    }
}

/// The port of an allow-list entry `host:port`, if the entry is well formed.
fn allow_port(entry: &str) -> Option<u16> {
    if entry.len() > NetworkPolicy::MAX_ENTRY_CHARS {
        return None;
    }
    let (host, port) = entry.rsplit_once(':')?;
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            host == "*"
                || (!host.is_empty()
                    && host.len() <= 253
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        }
    };
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    host_ok.then_some(port)
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            entrypoint: None,
            args: vec![],
            env: BTreeMap::new(),
            public_env: vec![],
            secrets: vec![],
            queue: "default".into(),
            labels: BTreeMap::new(),
            timeout_s: 3600,
            retry: RetryPolicy::default(),
            overlap: "allow".into(),
            misfire: "fire_once".into(),
            priority: 0,
            queue_timeout_s: 0,
            warm: false,
            limits: RunLimits::default(),
            network: NetworkPolicy::Full,
            retention: None,
            params: None,
            schedule_params: None,
            triggers_per_min: None,
            on_success: vec![],
            on_failure: vec![],
            on_complete: vec![],
            needs: vec![],
            prefer: None,
            max_concurrency: None,
            concurrency: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub project_id: String,
    #[serde(flatten)]
    pub spec: TaskSpec,
    pub schedule: Option<Schedule>,
    pub paused: bool,
    #[serde(with = "rfc3339::option")]
    pub next_fire_at: Option<i64>,
    #[serde(with = "rfc3339")]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    pub updated_at: i64,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Lost,
}

impl RunState {
    pub const ALL: [RunState; 7] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Cancelled,
        RunState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Cancelled => "cancelled",
            RunState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }

    /// Failed, timed-out and lost attempts are retried while attempts remain; success and
    /// cancellation never are.
    pub fn is_retryable(self) -> bool {
        matches!(self, RunState::Failed | RunState::TimedOut | RunState::Lost)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: String,
    pub task_id: String,
    pub project_id: String,
    pub project_version: i64,
    pub state: RunState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub queue: String,
    pub trigger: String,
    pub worker_id: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub peak_rss_kb: Option<i64>,
    pub log_key: Option<String>,
    pub result: Option<serde_json::Value>,
    pub cancel_requested: bool,
    /// Pinned: never pruned by retention.
    #[serde(default)]
    pub keep: bool,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<i64>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub queued_at: i64,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_before: Option<i64>,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<i64>,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<i64>,
    /// When the store recorded the run's end (its clock, not the runner's): the order alerts
    /// and retention walk ended runs in.
    #[serde(skip)]
    pub closed_at: Option<i64>,
    /// The params it was triggered with (`crate::params`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// What its trigger changed of the task's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<RunOverrides>,
    /// The run group it belongs to: the id of the run that started its chain (`crate::flow`);
    /// `None` for a run no other run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The run whose end started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Steps from its group's first run.
    #[serde(skip)]
    pub depth: u32,
    #[serde(skip)]
    pub lease_token: Option<String>,
}

/// What one trigger changes of its task's command: arguments in place of the task's, and
/// variables over the task's env (declared secrets still win over both).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl RunOverrides {
    pub fn is_empty(&self) -> bool {
        self.args.is_none() && self.env.is_empty()
    }

    /// The arguments and env of a task changed by these overrides.
    pub fn apply(&self, args: &mut Vec<String>, env: &mut BTreeMap<String, String>) {
        if let Some(a) = &self.args {
            args.clone_from(a);
        }
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// The message a queue carries: everything a runner needs to execute one attempt of a run
/// without reading SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub run_id: String,
    pub attempt: u32,
    pub queue: String,
    pub task_id: String,
    pub project_id: String,
    pub project_version: i64,
    pub bundle: BundleRef,
    pub entrypoint: String,
    pub requirements: String,
    pub python_version: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_s: u64,
    /// Names of the task's declared secrets (copied from the task when the run is created).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Their values, filled only in the message a publisher hands the broker
    /// ([`crate::dispatch::publish_job`]); empty in the job SQL stores.
    #[serde(default, skip_serializing_if = "crate::secrets::SecretEnv::is_empty")]
    pub secret_env: crate::secrets::SecretEnv,
    /// Copied from the task: start warm (a runner also starts every run of its warm queues warm).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
    /// Copied from the task (left out of the message when they are the defaults).
    #[serde(default, skip_serializing_if = "RunLimits::is_default")]
    pub limits: RunLimits,
    #[serde(default, skip_serializing_if = "NetworkPolicy::is_full")]
    pub network: NetworkPolicy,
    /// The params the run was triggered with, checked against the task's schema and with its
    /// defaults filled in; the process reads them as JSON from `ANTCODE_PARAMS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// Copied from the task: what a runner's labels must include to take it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Labels it also requires until `until_ms` (the task's `prefer`): past it, [`Job::route`]
    /// leaves them out, and compensation moves a queued job to the route of `labels` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<JobPreference>,
    /// The W3C `traceparent` of the span that created the run (in SQL, so every attempt is in
    /// one trace) or published this attempt (in the broker's message); only when traces are
    /// exported (`crate::telemetry::trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// From the task when the run was created ([`TaskSpec::gates`]): gate name → limit. A broker
    /// leases the job only while each of its gates has fewer live leases than its limit, and
    /// counts the lease under each until the lease ends (`crate::broker::routing`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, u32>,
}

/// The preferred labels of a job and until when they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPreference {
    pub labels: BTreeMap<String, String>,
    pub until_ms: i64,
}

impl Job {
    /// The queue the broker keeps it in: its queue, or a route of it when it requires labels
    /// (its preferred ones too, while it has them), a Python version, or gates
    /// (`crate::broker::routing`).
    pub fn route(&self) -> std::borrow::Cow<'_, str> {
        use crate::broker::routing;
        let mut needs = routing::requirements(&self.labels, self.python_version.as_deref());
        // A preference counts until its deadline, wherever the route is worked out (a publish,
        // a hand back), not only where compensation moves the job.
        let now = crate::time::now_ms();
        if let Some(p) = self.prefer.as_ref().filter(|p| p.until_ms > now) {
            routing::with_preferred(&mut needs, &p.labels);
        }
        routing::route(&self.queue, &needs, &self.gates)
    }
}

/// A job handed to one runner, fenced by `(run_id, attempt, lease_token)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub job: Job,
    pub lease_token: String,
    pub worker_id: String,
    pub deadline_ms: i64,
}

/// How an attempt ended, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub peak_rss_kb: Option<i64>,
    pub log_key: Option<String>,
    pub result: Option<serde_json::Value>,
}

impl Outcome {
    /// An outcome with nothing but its state and duration: no process facts, log or result.
    pub fn bare(state: RunState, duration_ms: i64) -> Outcome {
        Outcome {
            state,
            exit_code: None,
            signal: None,
            error: None,
            duration_ms,
            peak_rss_kb: None,
            log_key: None,
            result: None,
        }
    }
}

/// A state change reported by a runner; applied to SQL by the recorder only if
/// `(attempt, lease_token)` still matches the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub run_id: String,
    pub attempt: u32,
    pub lease_token: String,
    pub worker_id: String,
    pub at_ms: i64,
    pub kind: RunEventKind,
    /// The `traceparent` of the span that reported it, when traces are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEventKind {
    Started,
    Finished(Outcome),
    /// The runner stopped the attempt because it was shutting down (its grace period ran out):
    /// the run is queued again as a new attempt that does not use up one of its retries. The
    /// outcome says what the attempt did (exit, log, duration); its `state` is not applied.
    Interrupted(Outcome),
}

/// The error of an attempt its runner's shutdown interrupted (see [`RunEventKind::Interrupted`]).
pub const INTERRUPTED_BY_SHUTDOWN: &str = "interrupted by runner shutdown";

/// A line in a run's history (state changes, repairs) as shown by the API.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunHistoryEntry {
    pub id: String,
    pub run_id: String,
    pub attempt: u32,
    pub kind: String,
    pub detail: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub address: String,
    pub user_agent: String,
    pub outcome: String,
}

/// Live state of a runner as its heartbeats describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerStatus {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub slots: u32,
    pub running: u32,
    pub cpu_percent: f32,
    pub memory_percent: f32,
    pub disk_percent: f32,
    pub version: String,
    pub draining: bool,
    pub held_leases: Vec<String>,
    pub last_seen_ms: i64,
}

/// A page of results: `{items, next_cursor}` on the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A one-time enrollment key: an admin creates it, a gateway runner trades it once for its own
/// credential. Only the key's hash is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerKey {
    pub id: String,
    pub note: String,
    /// Queues the enrolled worker may lease from.
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub created_by: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: i64,
    /// When it was redeemed (`None` while unused).
    pub used_at: Option<i64>,
    /// The worker it was traded for.
    pub used_by: Option<String>,
    #[serde(skip)]
    pub key_hash: String,
}

/// A worker identity known to the cluster (gateway runners enroll one; the credential hashes
/// and the client certificate fingerprint are how the edge recognises it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerRecord {
    pub id: String,
    pub name: String,
    /// `gateway` for enrolled runners.
    pub mode: String,
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub api_key_hash: Option<String>,
    /// SHA-256 (hex) of the DER client certificate, when one was issued.
    pub cert_fingerprint: Option<String>,
    pub revoked: bool,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_round_trip_through_their_names() {
        for st in RunState::ALL {
            assert_eq!(RunState::parse(st.as_str()), Some(st));
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        assert_eq!(RunState::parse("bogus"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            backoff_s: 2,
            max_backoff_s: 10,
        };
        assert_eq!(p.backoff_ms(2), 2000);
        assert_eq!(p.backoff_ms(3), 4000);
        assert_eq!(p.backoff_ms(4), 8000);
        assert_eq!(p.backoff_ms(5), 10000);
        assert_eq!(p.backoff_ms(60), 10000);
    }

    #[test]
    fn network_policies_read_as_the_api_writes_them() {
        let read = |j: &str| serde_json::from_str::<NetworkPolicy>(j);
        assert_eq!(read(r#""full""#).unwrap(), NetworkPolicy::Full);
        assert_eq!(read(r#""none""#).unwrap(), NetworkPolicy::None);
        let allow = read(r#"{"allow": ["db.example:5432", "[::1]:80", "*:443", "10.0.0.1:5432"]}"#)
            .unwrap();
        assert_eq!(allow.check(), Ok(()));
        assert_eq!(allow.allowed_ports(), Some(vec![80, 443, 5432]));
        assert_eq!(
            serde_json::to_string(&NetworkPolicy::None).unwrap(),
            r#""none""#
        );
        for bad in [r#""open""#, r#"{"deny": []}"#, r#"{"allow": "x:1"}"#] {
            assert!(read(bad).is_err(), "{bad}");
        }
        for entry in [
            "x", "x:0", "x:65536", ":80", "a b:80", "[zz]:80", "x:-1", "x:80/tcp",
        ] {
            let p = NetworkPolicy::Allow(vec![entry.into()]);
            assert!(p.check().is_err(), "{entry}");
        }
        let many = NetworkPolicy::Allow(vec!["h:1".into(); NetworkPolicy::MAX_ALLOW + 1]);
        assert!(many.check().is_err());
    }

    #[test]
    fn limits_default_field_by_field_and_are_bounded() {
        let l: RunLimits = serde_json::from_str(r#"{"memory_mb": 1024}"#).unwrap();
        assert_eq!(
            l,
            RunLimits {
                memory_mb: 1024,
                ..RunLimits::default()
            }
        );
        assert!(serde_json::from_str::<RunLimits>(r#"{"memory": 1}"#).is_err());
        assert_eq!(RunLimits::default().check(), Ok(()));
        let zero = RunLimits {
            pids: 0,
            ..RunLimits::default()
        };
        assert!(zero.check().unwrap_err().contains("limits.pids"));
        let max = RunLimits {
            memory_mb: 512,
            ..RunLimits::default()
        };
        assert_eq!(RunLimits::default().above(&max), None);
        assert_eq!(
            l.above(&max).as_deref(),
            Some("limits.memory_mb 1024 is above this runner's maximum 512")
        );
        // An older task or job without the fields reads as the defaults, and a job with the
        // defaults leaves them out.
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "entrypoint": null, "args": [], "env": {}, "secrets": [], "queue": "default",
            "labels": {}, "timeout_s": 1, "retry": RetryPolicy::default(), "overlap": "allow",
            "misfire": "skip", "priority": 0}))
        .unwrap();
        assert_eq!(
            (spec.limits, spec.network),
            (RunLimits::default(), NetworkPolicy::Full)
        );
    }
}
