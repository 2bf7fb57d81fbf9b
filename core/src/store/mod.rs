//! The `Store` seam: SQL, the source of truth for users, projects, tasks, runs and audit.
//!
//! [`Store`] is the sum of one sub-trait per aggregate ([`UserStore`], [`ProjectStore`],
//! [`TaskStore`], [`ScheduleStore`], [`RunStore`], [`AuditStore`], [`WorkerStore`],
//! [`SecretStore`], [`AlertStore`], [`RetentionStore`], [`HookStore`], [`GitStore`], and
//! [`HealthStore`] for the liveness check); every type that implements them all is a `Store`. Methods called on `dyn Store` need no import; on a concrete store they need
//! the sub-traits, which [`prelude`] brings in.
//!
//! One implementation, [`sql::SqlStore`], speaks SQLite (embedded default), PostgreSQL and
//! MySQL/MariaDB through sqlx's `Any` driver; the dialect only changes DDL types and placeholders.
//! Every run transition that a runner causes is fenced by `(attempt, lease_token)` here, at the
//! SQL write, so a stale report can never overwrite a re-leased run.

mod migrations;
mod rows;
pub mod sql;

use async_trait::async_trait;

use crate::alerting::*;
use crate::hooks::{Hook, RunKey};
use crate::model::*;
use crate::retention::{PrunableRun, RetentionPolicy, TaskRetention};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists: {0}")]
    Conflict(String),
    /// A fenced write whose attempt or lease token no longer matches.
    #[error("stale: {0}")]
    Stale(String),
    #[error("database schema version {found} is newer than this binary supports ({supported}); upgrade antcode")]
    SchemaTooNew { found: i64, supported: i64 },
    /// The store cannot be opened as configured (bad URL scheme, migration lock not granted).
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A change to users that would leave no enabled admin.
    #[error("that would leave no enabled admin")]
    LastAdmin,
}

impl StoreError {
    /// The database could not be reached (as opposed to refusing the statement): worth retrying
    /// soon, and no reason to believe the statement itself is wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Db(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}

impl StoreError {
    /// The database ended the transaction to break a deadlock or a serialization conflict with
    /// another (SQLSTATE 40001, PostgreSQL's 40P01): the same transaction again may well pass.
    pub fn is_deadlock(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01"))
            }
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A `not_before` that means "held until released": a queued run waiting for its task's
/// previous run to finish (overlap policy `queue_one`).
pub const HELD: i64 = 32_503_680_000_000; // 3000-01-01

/// Filters for `list_runs`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub task_id: Option<String>,
    pub state: Option<RunState>,
    pub worker_id: Option<String>,
    /// Queued at or after.
    pub since_ms: Option<i64>,
    /// Queued before.
    pub until_ms: Option<i64>,
    /// How it was started (`manual`, `schedule`, `webhook`, `retry`, …).
    pub trigger: Option<String>,
    /// Text its error contains, ignoring case (`%` and `_` are plain characters).
    pub error: Option<String>,
}

/// A run to create: either a fresh trigger or a scheduled fire (with `due_at`, unique per task).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub task: Task,
    pub version: ProjectVersion,
    pub trigger: String,
    pub due_at: Option<i64>,
    /// The run's params, already checked (`crate::params`).
    pub params: Option<serde_json::Value>,
    /// What the trigger changed of the task's command, already checked.
    pub overrides: Option<crate::model::RunOverrides>,
    /// The idempotency key it is created under (a webhook call's), written with it.
    pub key: Option<RunKey>,
    /// The run whose end starts it (`crate::flow`); `None` for a run nothing started.
    pub parent: Option<RunParent>,
    /// The `traceparent` of the span creating it, when traces are exported; its jobs carry it.
    pub trace: Option<String>,
}

impl NewRun {
    /// A run of `task` at `version` started by `trigger`, with nothing more: no due time,
    /// params, overrides, key or parent (set those with struct update syntax).
    pub fn new(task: Task, version: ProjectVersion, trigger: &str) -> NewRun {
        NewRun {
            task,
            version,
            trigger: trigger.into(),
            due_at: None,
            params: None,
            overrides: None,
            key: None,
            parent: None,
            trace: None,
        }
    }
}

/// Where a run started by another's end sits in its run group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunParent {
    /// The group: the id of the run that started the chain.
    pub group_id: String,
    /// The run whose end starts it.
    pub run_id: String,
    /// Steps from the group's first run (which is 0).
    pub depth: u32,
}

/// One due time of a schedule for [`ScheduleStore::fire_schedules`].
#[derive(Debug, Clone)]
pub struct Fire {
    /// The run to create; `due_at` must be set (it is what makes the fire unique).
    pub run: NewRun,
    /// Created held ([`HELD`]) behind the task's running run (overlap `queue_one`).
    pub held: bool,
}

/// A task's place in the order of due tasks: `(next_fire_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueKey {
    pub next_fire_at: i64,
    pub id: String,
}

/// A queued run's place in the order [`RunStore::due_queued_jobs`] reads them: `(not_before, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedKey {
    pub not_before: i64,
    pub id: String,
}

/// A page of [`RunStore::due_queued_jobs`].
#[derive(Debug, Clone, Default)]
pub struct DueJobs {
    pub jobs: Vec<Job>,
    /// Where the next page starts (pass it as `after`); `None` when this page reached the end.
    pub next: Option<QueuedKey>,
}

/// Moves a task's `next_fire_at` from `from` to `to`, only if it still is `from`: an edit of the
/// task made after the scheduler read it wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextFire {
    pub task_id: String,
    pub from: i64,
    pub to: Option<i64>,
}

/// What [`RunStore::record_events`] applied for one runner report.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// `queued` → `running` (or a repeat of the same start).
    Started,
    /// The attempt's outcome: the run's state now, whether it was queued for another attempt,
    /// and the jobs of the runs its end started (`crate::flow`), to publish.
    Finished {
        state: RunState,
        requeued: bool,
        next: Vec<Job>,
    },
    /// An interrupted attempt: the run is queued again (or cancelled, when a cancel was
    /// requested meanwhile).
    Interrupted { state: RunState },
}

/// What the recorder decided when it applied a `Finished` event.
#[derive(Debug, Clone)]
pub enum FinishApplied {
    /// The run reached a terminal state.
    Terminal(Run),
    /// The attempt failed but attempts remain: the run is `queued` again with `attempt + 1`.
    Requeued(Run),
}

/// Whether the database answers.
#[async_trait]
pub trait HealthStore: Send + Sync + 'static {
    async fn ping(&self) -> StoreResult<()>;
}

/// Users and their credentials (API tokens and session tokens).
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn user_by_name(&self, username: &str) -> StoreResult<User>;
    async fn user(&self, id: &str) -> StoreResult<User>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Applies `change` to user `id` and returns the user as written. A change of password,
    /// role or disabled flag also revokes every credential of the user (their tokens are
    /// deleted and their generation bumped, in the same transaction). Refused with
    /// [`StoreError::LastAdmin`] when no enabled admin would remain: the check and the write
    /// are one transaction that holds the enabled admins' rows, so two admins demoting each
    /// other at once cannot both succeed.
    async fn change_user(&self, id: &str, change: &UserChange) -> StoreResult<User>;
    /// Deletes a user and their tokens; [`StoreError::LastAdmin`] as for [`UserStore::change_user`].
    async fn delete_user(&self, id: &str) -> StoreResult<()>;
    async fn create_token(&self, token: &ApiToken) -> StoreResult<()>;
    async fn token_by_hash(&self, hash: &str) -> StoreResult<ApiToken>;
    async fn list_tokens(&self, user_id: &str) -> StoreResult<Vec<ApiToken>>;
    async fn delete_token(&self, id: &str) -> StoreResult<()>;
}

/// Projects and their numbered versions.
#[async_trait]
pub trait ProjectStore: Send + Sync + 'static {
    async fn create_project(&self, project: &Project, first: &ProjectVersion) -> StoreResult<()>;
    async fn project(&self, id: &str) -> StoreResult<Project>;
    async fn project_by_name(&self, name: &str) -> StoreResult<Project>;
    async fn list_projects(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<Project>>;
    async fn update_project(&self, project: &Project) -> StoreResult<()>;
    async fn delete_project(&self, id: &str) -> StoreResult<()>;
    /// Adds a version numbered after the latest one and makes it current; returns its number.
    async fn add_version(&self, version: &ProjectVersion) -> StoreResult<i64>;
    async fn version(&self, project_id: &str, version: i64) -> StoreResult<ProjectVersion>;
    /// The project's current version, in one read; `NotFound` if the project is gone.
    async fn current_version(&self, project_id: &str) -> StoreResult<ProjectVersion>;
    async fn list_versions(&self, project_id: &str) -> StoreResult<Vec<ProjectVersion>>;
}

/// Projects synced from Git (`crate::git`): their versions, sync status, push-webhook secret,
/// and the sealed credentials their fetches use.
#[async_trait]
pub trait GitStore: Send + Sync + 'static {
    /// Adds `version` as [`ProjectStore::add_version`] does, unless the project's latest version
    /// came from the same tree and runs it the same way (then nothing is written: `None`).
    /// Decided under the project's row lock, so two syncs of one change make one version.
    async fn add_synced_version(&self, version: &ProjectVersion) -> StoreResult<Option<i64>>;
    /// Sets the project's last sync status.
    async fn record_sync(
        &self,
        project_id: &str,
        status: &crate::git::SyncStatus,
    ) -> StoreResult<()>;
    /// Every project with a Git source, by id.
    async fn git_projects(&self) -> StoreResult<Vec<Project>>;
    /// Sets (or with `None` clears) the project's push-webhook secret, as sealed.
    async fn set_hook_secret(&self, project_id: &str, sealed: Option<&str>) -> StoreResult<()>;
    async fn hook_secret(&self, project_id: &str) -> StoreResult<Option<String>>;
    /// Inserts or replaces the credential called `meta.name`; true when it was created.
    async fn put_git_credential(
        &self,
        credential: &crate::git::SealedGitCredential,
    ) -> StoreResult<bool>;
    async fn git_credential(&self, name: &str) -> StoreResult<crate::git::SealedGitCredential>;
    /// Everything but the secrets, by name.
    async fn list_git_credentials(&self) -> StoreResult<Vec<crate::git::GitCredentialMeta>>;
    async fn delete_git_credential(&self, name: &str) -> StoreResult<()>;
}

/// Tasks: what runs, from which project, on which schedule.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    async fn create_task(&self, task: &Task) -> StoreResult<()> {
        self.create_tasks(std::slice::from_ref(task)).await
    }
    /// Inserts the tasks in one transaction: all of them, or none when one fails (a name taken
    /// is a `Conflict`).
    async fn create_tasks(&self, tasks: &[Task]) -> StoreResult<()>;
    async fn task(&self, id: &str) -> StoreResult<Task>;
    /// The task and its project's current version in one read (what a trigger needs); the
    /// version is `None` when the project has none (it is gone).
    async fn task_with_current_version(
        &self,
        id: &str,
    ) -> StoreResult<(Task, Option<ProjectVersion>)>;
    async fn list_tasks(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<Task>>;
    /// Writes the task and, in the same transaction, the links its `on_*` and `needs` declare
    /// (`crate::flow`), replacing the ones it declared before.
    async fn update_task(&self, task: &Task) -> StoreResult<()>;
    /// Deletes the task, its webhooks and every link from or to it.
    async fn delete_task(&self, id: &str) -> StoreResult<()>;
    /// Every link between tasks (bounded by the tasks' own bounds), for checking a graph.
    async fn task_links(&self) -> StoreResult<Vec<crate::flow::Link>>;
}

/// What the scheduler leader reads and writes to fire due schedules.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Active (unpaused) tasks with a schedule whose next fire time is at or before `now_ms`,
    /// ordered by `(next_fire_at, id)`, at most `limit`, and only those after `after` in that
    /// order: the key of the last task of the previous batch, so the scheduler reads the next
    /// batch while it writes the current one (whose tasks stay due until it commits).
    async fn due_tasks(
        &self,
        now_ms: i64,
        limit: u32,
        after: Option<&DueKey>,
    ) -> StoreResult<Vec<Task>>;
    /// How many [`ScheduleStore::fire_schedules`] transactions a scheduler leader may have in flight at
    /// once. One by default: an engine with one writer at a time (SQLite) would only make a
    /// second one wait for the first.
    fn fire_writers(&self) -> usize {
        1
    }
    /// A scheduler leader's batch, in ONE transaction: creates the `queued` run of each fire
    /// (queued at `at_ms`; held ones with `not_before` = [`HELD`]) and moves each task's next
    /// fire time per `next`. The whole batch is refused as `Stale`, changing nothing, when a newer
    /// leader's fencing token for `lock` has already been accepted (a deposed leader's late
    /// write). A fire whose `(task, due_at)` already has a run is not created again: its entry in
    /// the result, which lines up with `fires`, is `None`; the others carry the created job.
    async fn fire_schedules(
        &self,
        fires: &[Fire],
        next: &[NextFire],
        lock: &str,
        token: u64,
        at_ms: i64,
    ) -> StoreResult<Vec<Option<Job>>>;
}

/// Runs: creation, the queue, fenced runner reports, cancels and history.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Inserts a `queued` run. A second scheduled run for the same `(task, due_at)` is a
    /// `Conflict`, and so is a run whose [`NewRun::key`] already started one within
    /// [`crate::hooks::KEY_WINDOW_MS`] (see [`HookStore::keyed_run`]); a key older than that
    /// is replaced. The key is written in the run's transaction.
    async fn create_run(&self, new: &NewRun) -> StoreResult<(Run, Job)>;
    /// The `queued` (held ones included) and `running` runs of these tasks, by id.
    async fn active_runs(&self, task_ids: &[String]) -> StoreResult<Vec<Run>>;
    /// Queued runs whose queue timeout passed without a start, the longest expired first.
    async fn expired_queued_runs(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<Run>>;
    /// `queued` → `failed` with reason `expired`, for this attempt only; never retried.
    async fn expire_run(&self, run_id: &str, attempt: u32, at_ms: i64) -> StoreResult<Run>;
    /// Moves a queued run's `not_before`; [`HELD`] holds it until released (overlap `queue_one`).
    async fn defer_run(&self, run_id: &str, until_ms: i64) -> StoreResult<()>;
    /// Queued runs held back with [`HELD`].
    async fn held_runs(&self, limit: u32) -> StoreResult<Vec<Run>>;
    async fn run(&self, id: &str) -> StoreResult<Run>;
    async fn list_runs(
        &self,
        filter: &RunFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Run>>;
    /// Counts the runs `filter` matches (its `state` ignored; `since_ms` is required), per bucket
    /// of `bucket_ms` from `since_ms` by `queued_at`: by state, and those with a duration by
    /// duration bin ([`crate::stats`]). Counted in the database: the answer's size depends on
    /// the buckets, not on the runs.
    async fn tally_runs(
        &self,
        filter: &RunFilter,
        bucket_ms: i64,
    ) -> StoreResult<crate::stats::RunTally>;
    /// Jobs of queued runs whose `not_before` has passed (what must be in the broker), longest
    /// due first: ordered by `(not_before, id)`, at most `limit`, only those after `after` (the
    /// previous page's `next`).
    async fn due_queued_jobs(
        &self,
        now_ms: i64,
        limit: u32,
        after: Option<&QueuedKey>,
    ) -> StoreResult<DueJobs>;
    /// Runs in `running` state (used by compensation to find lost leases).
    async fn running_runs(&self, limit: u32) -> StoreResult<Vec<Run>>;
    /// `queued` → `running` for this attempt, binding the lease token. Stale if the run moved on.
    async fn mark_started(
        &self,
        run_id: &str,
        attempt: u32,
        lease_token: &str,
        worker_id: &str,
        at_ms: i64,
    ) -> StoreResult<Run>;
    /// Applies an attempt's outcome if `(attempt, lease_token)` still matches; requeues when the
    /// outcome is retryable and attempts remain. A run that ends starts, in the same
    /// transaction, the runs its task's links say (`crate::flow`); they are created queued,
    /// and published by whoever re-publishes queued runs.
    async fn finish_attempt(
        &self,
        run_id: &str,
        attempt: u32,
        lease_token: Option<&str>,
        outcome: &Outcome,
        at_ms: i64,
    ) -> StoreResult<FinishApplied>;
    /// Applies runner reports in order, each fenced exactly as [`RunStore::mark_started`] and
    /// [`RunStore::finish_attempt`] would, but written in one transaction: one commit for the
    /// events that arrived together. Results line up with `events`. An `Interrupted` report,
    /// fenced by the running attempt and its lease token, queues the run again at once as
    /// `attempt + 1` with `max_attempts + 1`, so the interruption uses up no retry; a run whose
    /// cancel was requested ends `cancelled` instead. A run that ends starts the runs its
    /// task's links say in the same transaction; their jobs come back in
    /// [`Recorded::Finished::next`] for the caller to publish.
    async fn record_events(&self, events: &[RunEvent]) -> Vec<StoreResult<Recorded>>;
    /// The runs of run group `group_id` (its first run and every run it started, directly or
    /// not), in the order they were queued, at most `limit`.
    async fn group_runs(&self, group_id: &str, limit: u32) -> StoreResult<Vec<Run>>;
    /// Flags a cancel request; a queued run is cancelled at once (returned state tells which).
    async fn request_cancel(&self, run_id: &str, at_ms: i64) -> StoreResult<Run>;
    async fn run_history(&self, run_id: &str) -> StoreResult<Vec<RunHistoryEntry>>;
    async fn add_history(&self, entry: &RunHistoryEntry) -> StoreResult<()>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends entries, all or none (one statement per up to a few hundred rows, in one
    /// transaction), so a writer that batches them pays one commit for many.
    async fn add_audit(&self, entries: &[AuditEntry]) -> StoreResult<()>;
    async fn list_audit(&self, limit: u32, cursor: Option<&str>) -> StoreResult<Page<AuditEntry>>;
}

/// Worker identity: enrollment keys and enrolled workers.
#[async_trait]
pub trait WorkerStore: Send + Sync + 'static {
    async fn create_worker_key(&self, key: &WorkerKey) -> StoreResult<()>;
    async fn list_worker_keys(&self) -> StoreResult<Vec<WorkerKey>>;
    /// Trades an unused, unexpired key for `worker` in one transaction: the key is marked used
    /// by `worker.id` and the worker is inserted with the key's queues and labels (what it asked
    /// for is not kept: it is routed by them). Of two concurrent redemptions exactly one wins. Unknown key: `NotFound`;
    /// used: `Conflict`; expired: `Stale`.
    async fn redeem_worker_key(
        &self,
        key_hash: &str,
        worker: &WorkerRecord,
        now_ms: i64,
    ) -> StoreResult<WorkerRecord>;
    async fn worker_record(&self, id: &str) -> StoreResult<WorkerRecord>;
    async fn worker_by_api_key(&self, api_key_hash: &str) -> StoreResult<WorkerRecord>;
    async fn worker_by_fingerprint(&self, fingerprint: &str) -> StoreResult<WorkerRecord>;
    async fn list_worker_records(&self) -> StoreResult<Vec<WorkerRecord>>;
    /// Marks the worker revoked (idempotent); returns it as it is now.
    async fn revoke_worker(&self, id: &str) -> StoreResult<WorkerRecord>;
}

/// Task secrets (sealed values; see `crate::secrets`) and their grants to projects.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Inserts or replaces the secret called `secret.meta.name`, keeping the original
    /// `created_at` on replace. Returns true when it was created.
    async fn put_secret(&self, secret: &crate::secrets::SealedSecret) -> StoreResult<bool>;
    async fn secret(&self, name: &str) -> StoreResult<crate::secrets::SealedSecret>;
    /// Names and timestamps only, by name.
    async fn list_secrets(&self) -> StoreResult<Vec<crate::secrets::SecretMeta>>;
    /// Removes the secret and its grants.
    async fn delete_secret(&self, name: &str) -> StoreResult<()>;
    /// The secret called `name` and whether a task of `project_id` may read it (it is granted
    /// to that project or to every project), in one read.
    async fn secret_for(
        &self,
        name: &str,
        project_id: &str,
    ) -> StoreResult<(crate::secrets::SealedSecret, bool)>;
    /// The grants of secret `name`, the all-projects one first, then by project.
    async fn secret_grants(&self, name: &str) -> StoreResult<Vec<crate::secrets::SecretGrant>>;
    /// Replaces the grants of secret `name` with `grants`, all or none.
    async fn set_secret_grants(
        &self,
        name: &str,
        grants: &[crate::secrets::SecretGrant],
    ) -> StoreResult<()>;
}

/// Alert channels, rules and the delivery outbox (`crate::alerting`).
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// A name taken is a `Conflict`.
    async fn create_channel(&self, channel: &AlertChannel) -> StoreResult<()>;
    async fn channel(&self, id: &str) -> StoreResult<AlertChannel>;
    async fn list_channels(&self) -> StoreResult<Vec<AlertChannel>>;
    async fn update_channel(&self, channel: &AlertChannel) -> StoreResult<()>;
    async fn delete_channel(&self, id: &str) -> StoreResult<()>;
    async fn create_rule(&self, rule: &AlertRule) -> StoreResult<()>;
    async fn rule(&self, id: &str) -> StoreResult<AlertRule>;
    /// Every rule, by name.
    async fn list_rules(&self) -> StoreResult<Vec<AlertRule>>;
    async fn update_rule(&self, rule: &AlertRule) -> StoreResult<()>;
    async fn delete_rule(&self, id: &str) -> StoreResult<()>;
    /// Adds deliveries to the outbox, skipping any whose `(channel_id, event_key)` is already
    /// there (whatever its state); returns how many were added.
    async fn enqueue_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<usize>;
    /// Pending deliveries whose `next_at` has come, oldest due first.
    async fn due_deliveries(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<Delivery>>;
    /// Takes pending, due deliveries for one send: their `next_at` moves to `until_ms` (when a
    /// sender that died holding them is presumed dead) and their attempts grow by one. Returns
    /// the ids it took; a delivery another sender took first is left out.
    async fn claim_deliveries(
        &self,
        ids: &[String],
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Vec<String>>;
    /// Marks deliveries sent, carried by the send of `carrier`.
    async fn deliveries_sent(
        &self,
        ids: &[String],
        carrier: &str,
        detail: &str,
        at_ms: i64,
    ) -> StoreResult<()>;
    /// Records a failed send: retried at `retry_at`, or `failed` for good when `None`.
    async fn deliveries_failed(
        &self,
        ids: &[String],
        error: &str,
        retry_at: Option<i64>,
    ) -> StoreResult<()>;
    /// Moves pending deliveries' `next_at` (a throttle window that has not ended).
    async fn defer_deliveries(&self, ids: &[String], until_ms: i64) -> StoreResult<()>;
    /// When this rule last sent to this channel for this group, if ever.
    async fn last_sent(
        &self,
        rule_id: &str,
        channel_id: &str,
        group_key: &str,
    ) -> StoreResult<Option<i64>>;
    async fn delivery(&self, id: &str) -> StoreResult<Delivery>;
    /// Newest first.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Delivery>>;
    /// Ended runs in `(closed_at, id)` order after `after`, at most `limit`.
    async fn closed_runs(&self, after: &ClosedKey, limit: u32) -> StoreResult<Vec<Run>>;
    /// The states of the task's last `limit` runs that ended failed, timed out, lost or
    /// succeeded (cancelled ones are neither), at or before `at`, newest first.
    async fn last_outcomes(
        &self,
        task_id: &str,
        at: &ClosedKey,
        limit: u32,
    ) -> StoreResult<Vec<RunState>>;
    /// A named position kept across restarts and leaders (the alert loop's cursor).
    async fn cursor(&self, name: &str) -> StoreResult<Option<ClosedKey>>;
    async fn set_cursor(&self, name: &str, key: &ClosedKey) -> StoreResult<()>;
}

/// Retention: the global policy, pinned runs, and the pruner's bounded reads and deletes.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// The global policy ([`RetentionPolicy::default`] until one is set).
    async fn retention_policy(&self) -> StoreResult<RetentionPolicy>;
    async fn set_retention_policy(&self, policy: &RetentionPolicy, at_ms: i64) -> StoreResult<()>;
    /// Pins (or unpins) a run: a pinned run is never pruned.
    async fn set_run_pinned(&self, run_id: &str, keep: bool) -> StoreResult<Run>;
    /// Ended, unpinned runs before `before` in `(closed_at, id)` order (an age cutoff is
    /// `ClosedKey { closed_at: cutoff, id: "" }`), in that order after `after`, at most `limit`:
    /// of one task, or of every task but `except` when `task_id` is `None`.
    async fn prunable_runs(
        &self,
        task_id: Option<&str>,
        except: &[String],
        before: &ClosedKey,
        after: Option<&ClosedKey>,
        limit: u32,
    ) -> StoreResult<Vec<PrunableRun>>;
    /// The key of the oldest of a task's newest `keep_last` ended runs (the runs before it are
    /// beyond the count), or `None` when it has fewer.
    async fn keep_last_boundary(
        &self,
        task_id: &str,
        keep_last: u32,
    ) -> StoreResult<Option<ClosedKey>>;
    /// Deletes these runs and their history in one transaction (never a pinned or unended
    /// one); returns how many runs went.
    async fn delete_runs(&self, ids: &[String]) -> StoreResult<u64>;
    /// Ids of audit entries older than `before_ms`, oldest first, at most `limit`.
    async fn old_audit(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>>;
    async fn delete_audit(&self, ids: &[String]) -> StoreResult<u64>;
    /// How many runs [`RetentionStore::prunable_runs`] would select, all pages together.
    async fn count_prunable(
        &self,
        task_id: Option<&str>,
        except: &[String],
        before: &ClosedKey,
    ) -> StoreResult<u64>;
    /// Ids of sent or failed alert deliveries created before `before_ms`, oldest first, at most
    /// `limit` (pending ones are never pruned).
    async fn old_deliveries(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>>;
    async fn delete_deliveries(&self, ids: &[String]) -> StoreResult<u64>;
    /// How many audit entries are older than `before_ms`.
    async fn count_old_audit(&self, before_ms: i64) -> StoreResult<u64>;
    /// Every task's id and its own retention policy, if it has one.
    async fn task_retentions(&self) -> StoreResult<Vec<(String, Option<TaskRetention>)>>;
}

/// Per-task webhooks (`crate::hooks`) and the idempotency keys of the runs they start.
#[async_trait]
pub trait HookStore: Send + Sync + 'static {
    async fn create_hook(&self, hook: &Hook) -> StoreResult<()>;
    async fn hook(&self, id: &str) -> StoreResult<Hook>;
    /// A task's hooks, oldest first.
    async fn task_hooks(&self, task_id: &str) -> StoreResult<Vec<Hook>>;
    /// Replaces the hook's secret (as [`Hook::secret`] holds it) and sets `rotated_at`; the
    /// hook as it is now.
    async fn rotate_hook(&self, id: &str, secret: &str, at_ms: i64) -> StoreResult<Hook>;
    async fn delete_hook(&self, id: &str) -> StoreResult<()>;
    /// Sets `last_used_at`, unless it is already at or after `at_ms`.
    async fn touch_hook(&self, id: &str, at_ms: i64) -> StoreResult<()>;
    /// The id of the run `key` started, if it was written at or after `since_ms`.
    async fn keyed_run(&self, key: &RunKey, since_ms: i64) -> StoreResult<Option<String>>;
    /// Run ids of keys written before `before_ms`, oldest first, at most `limit`.
    async fn old_run_keys(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>>;
    /// Deletes the keys of these runs; how many went.
    async fn delete_run_keys(&self, run_ids: &[String]) -> StoreResult<u64>;
}

crate::seams::seam_of!(
    /// The whole seam: every aggregate's store. Implemented for every type that implements the
    /// sub-traits, so an implementation only writes those; `dyn Store` offers all their methods.
    Store:
    HealthStore,
    UserStore,
    ProjectStore,
    GitStore,
    TaskStore,
    ScheduleStore,
    RunStore,
    AuditStore,
    WorkerStore,
    SecretStore,
    AlertStore,
    RetentionStore,
    HookStore,
);
