//! Alerts as the store keeps them: channels (where an alert goes), rules (which events alert,
//! and through which channels) and deliveries (the outbox: one row per event and channel).
//!
//! A channel's configuration is sealed whole with the cluster's `SecretBox` (robot and Slack
//! URLs carry their credential); the store holds the sealed text and a redacted summary, and
//! only the sender opens it. Senders themselves live in `antcode-notify`; the leader's loop that
//! turns events into deliveries and sends them lives in the scheduler.
//!
//! A delivery is unique per `(channel_id, event_key)`: whichever rule, leader or pass finds an
//! event again, the channel gets one row for it, and a row is sent at most once (claimed
//! before sending, marked sent after). `group_key` is what a rule throttles by (a task, a
//! worker, a queue): pending deliveries of one rule, channel and group are sent together as one
//! digest.

use serde::{Deserialize, Serialize};

use crate::time::rfc3339;

/// Longest rule or channel name.
pub const MAX_NAME_LEN: usize = 128;
/// Most channels one rule sends to.
pub const MAX_RULE_CHANNELS: usize = 20;

/// The name a channel's configuration is sealed under (`SecretBox::seal`): control seals it,
/// the scheduler opens it.
pub fn seal_name(channel_id: &str) -> String {
    format!("alert-channel:{channel_id}")
}

/// What a rule alerts on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertOn {
    /// A run ended `failed`.
    Failed,
    /// A run ended `timed_out`.
    TimedOut,
    /// A run ended `lost`.
    Lost,
    /// The task's last `consecutive` ended runs all failed (failed, timed out or lost).
    ConsecutiveFailures,
    /// A run succeeded after one or more failures.
    Recovered,
    /// A run has been running for longer than `long_running_s`.
    LongRunning,
    /// A runner stopped heartbeating.
    WorkerOffline,
    /// A schedule's due time was skipped by its misfire policy.
    ScheduleMisfired,
    /// A queue holds more than `backlog` jobs.
    QueueBacklog,
}

impl AlertOn {
    /// Whether it is found among ended runs (as opposed to running runs, runners, schedules or
    /// queues).
    pub fn on_ended_run(self) -> bool {
        matches!(
            self,
            AlertOn::Failed
                | AlertOn::TimedOut
                | AlertOn::Lost
                | AlertOn::ConsecutiveFailures
                | AlertOn::Recovered
        )
    }

    /// The event kind an alert of this kind carries (`run.failed`, …).
    pub fn event_kind(self) -> &'static str {
        match self {
            AlertOn::Failed => "run.failed",
            AlertOn::TimedOut => "run.timed_out",
            AlertOn::Lost => "run.lost",
            AlertOn::ConsecutiveFailures => "run.consecutive_failures",
            AlertOn::Recovered => "run.recovered",
            AlertOn::LongRunning => "run.long_running",
            AlertOn::WorkerOffline => "worker.offline",
            AlertOn::ScheduleMisfired => "schedule.misfired",
            AlertOn::QueueBacklog => "queue.backlog",
        }
    }
}

/// A place alerts are sent to. `sealed` is the whole configuration, sealed; `summary` is what
/// may be shown of it (`antcode_notify::ChannelConfig::redacted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertChannel {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub summary: serde_json::Value,
    pub enabled: bool,
    #[serde(skip)]
    pub sealed: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// Which events alert, through which channels, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub id: String,
    pub name: String,
    /// The task it watches; `None` watches every task (and the workers and queues).
    pub task_id: Option<String>,
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub enabled: bool,
    #[serde(with = "rfc3339")]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    pub updated_at: i64,
}

impl AlertRule {
    /// Whether the rule watches runs of `task_id`.
    pub fn watches_task(&self, task_id: &str) -> bool {
        self.task_id.as_deref().is_none_or(|t| t == task_id)
    }
}

/// The part of a rule stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleSpec {
    pub channels: Vec<String>,
    pub on: Vec<AlertOn>,
    /// For `consecutive_failures`: how many ended runs in a row.
    #[serde(default = "default_consecutive")]
    pub consecutive: u32,
    /// For `long_running`: seconds.
    #[serde(default)]
    pub long_running_s: Option<u64>,
    /// For `queue_backlog`: jobs waiting.
    #[serde(default)]
    pub backlog: Option<u64>,
    /// For `queue_backlog`: the queue watched (every queue when `None`).
    #[serde(default)]
    pub queue: Option<String>,
    /// At most one alert per this many seconds per rule, channel and task (or worker, queue);
    /// what happens meanwhile is sent as one digest when the window ends.
    #[serde(default = "default_throttle")]
    pub throttle_s: u64,
    /// Title and body templates (`antcode_notify::template`); the defaults when `None`.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

fn default_consecutive() -> u32 {
    3
}

fn default_throttle() -> u64 {
    300
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its `next_at` (its first try, a retry, or the end of a throttle window).
    Pending,
    /// Delivered, on its own or inside the digest of `carried_by`.
    Sent,
    /// Given up: a permanent error, or out of attempts.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "sent" => Some(DeliveryState::Sent),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One event for one channel: a row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    /// The rule that matched; `None` for a test sent by hand.
    pub rule_id: Option<String>,
    pub channel_id: String,
    /// Names the event: a channel gets one delivery per key.
    pub event_key: String,
    /// What the rule throttles by (`task:<id>`, `worker:<id>`, `queue:<name>`).
    pub group_key: String,
    /// The event (`antcode_notify::Event`).
    pub event: serde_json::Value,
    pub state: DeliveryState,
    pub attempts: u32,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub next_at: i64,
    pub last_error: Option<String>,
    /// What the receiver answered to the send that delivered it.
    pub detail: Option<String>,
    /// The delivery whose send carried this one (itself, or the digest it was folded into);
    /// while pending, the token of the last claim that took it.
    pub carried_by: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<i64>,
}

impl Delivery {
    /// A new delivery of `event` (an `antcode_notify::Event` as JSON) to a channel, due at
    /// `now_ms`; `rule_id` is `None` for a test sent by hand.
    pub fn pending(
        rule_id: Option<&str>,
        channel_id: &str,
        event_key: &str,
        group_key: &str,
        event: serde_json::Value,
        now_ms: i64,
    ) -> Delivery {
        Delivery {
            id: crate::ids::new_id(),
            rule_id: rule_id.map(str::to_string),
            channel_id: channel_id.into(),
            event_key: event_key.into(),
            group_key: group_key.into(),
            event,
            state: DeliveryState::Pending,
            attempts: 0,
            next_at: now_ms,
            last_error: None,
            detail: None,
            carried_by: None,
            created_at: now_ms,
            sent_at: None,
        }
    }
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub channel_id: Option<String>,
    pub rule_id: Option<String>,
    pub state: Option<DeliveryState>,
}

/// A position in the order runs ended: `(closed_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedKey {
    pub closed_at: i64,
    pub id: String,
}
