//! The schedule plane: turns time and runner reports into run state in SQL.
//!
//! * [`recorder`] applies runner events (started, finished) to the store, fenced by attempt and
//!   lease token. It runs on EVERY instance, sharing the broker's consumer group.
//! * [`leader`] elects one instance through the broker's lock and carries its fencing token.
//! * [`compensation`] (leader only) keeps the broker consistent with SQL: re-publishes queued runs,
//!   reclaims expired leases as `lost`, and detects running runs whose lease vanished.
//! * [`tick`] (leader only) fires schedules, in batches of one transaction each.
//! * [`alerts`] (leader only) turns events into deliveries in the SQL outbox and sends them.
//! * [`pruner`] (leader only) deletes what the retention policies expire.
//!
//! The plane never talks to runners or control directly: only through `Store` and `Broker`.
//!
//! Metrics: `antcode_scheduler_fires_total{outcome}`, `antcode_scheduler_fire_lag_seconds`
//! (SQL write time − due time), `antcode_scheduler_fire_batch_size` (fires written per
//! transaction), `antcode_scheduler_fire_phase_seconds{phase}` (a batch's read, plan, write
//! and publish, and the part of the read the planning did not hide), `antcode_scheduler_leader_changes_total`,
//! `antcode_scheduler_repairs_total{kind}`, `antcode_scheduler_recorder_lag_seconds` (apply time
//! − the event's `at_ms`); [`gauges`] sets the queues' depth, runners and slots.

pub mod alerts;
pub mod compensation;
pub mod gauges;
pub mod leader;
pub mod pruner;
pub mod recorder;
pub mod tick;

use std::sync::Arc;
use std::time::Duration;

use antcode_core::broker::Broker;
use antcode_core::store::Store;
use antcode_core::time::{Clock, SystemClock};
use antcode_core::Shutdown;

#[derive(Clone)]
pub struct SchedulerConfig {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    /// Names this instance in the leader lock and the recorder's consumer group.
    pub instance_id: String,
    /// How often the leader compensates and fires schedules.
    pub tick_interval: Duration,
    /// Leader lock time-to-live; a dead leader is replaced within it.
    pub leader_ttl: Duration,
    /// How long a `running` run may have no live lease before it is declared `lost`.
    pub lost_after: Duration,
    /// Where the log of a lost attempt is archived (what it streamed); without it a lost
    /// attempt keeps no log beyond what the broker holds.
    pub blobs: Option<Arc<dyn antcode_core::blob::BlobStore>>,
    /// Opens task secrets into the jobs this instance publishes (`ANTCODE_SECRET_KEY`); without
    /// it, runs of tasks that declare secrets fail with a message saying so.
    pub secrets: Option<Arc<antcode_core::secrets::SecretBox>>,
    /// Where tick and compensation read "now": due times, misfires, lag, backoff starts, lost
    /// leases and queue timeouts. Tests put a `ManualClock` here and advance it.
    pub clock: Arc<dyn Clock>,
    /// The web UI's address as users reach it, for the run links in alerts
    /// (`ANTCODE_PUBLIC_URL`); without it alerts carry no link.
    pub public_url: Option<String>,
    /// Sends alerts (HTTP client, signing clock, timeout).
    pub notifier: antcode_notify::Sender,
    /// How often the leader sends due alerts.
    pub alert_interval: Duration,
    /// How often the leader prunes what retention expires.
    pub prune_interval: Duration,
    /// Misfires the tick found, for the alert loop.
    pub misfires: Arc<alerts::Misfires>,
}

impl SchedulerConfig {
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>) -> SchedulerConfig {
        SchedulerConfig {
            store,
            broker,
            instance_id: format!("scheduler-{}", antcode_core::ids::new_id()),
            tick_interval: Duration::from_secs(1),
            leader_ttl: Duration::from_secs(10),
            lost_after: Duration::from_secs(15),
            secrets: None,
            blobs: None,
            clock: Arc::new(SystemClock),
            public_url: None,
            notifier: antcode_notify::Sender::default(),
            alert_interval: Duration::from_secs(1),
            prune_interval: Duration::from_secs(60),
            misfires: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("store: {0}")]
    Store(#[from] antcode_core::store::StoreError),
    #[error("broker: {0}")]
    Broker(#[from] antcode_core::broker::BrokerError),
}

/// Runs the recorder and the leader-gated loops until `shutdown`, then releases leadership.
pub async fn run(config: SchedulerConfig, shutdown: Shutdown) -> Result<(), SchedulerError> {
    let config = Arc::new(config);
    let recorder = tokio::spawn(recorder::run(config.clone(), shutdown.clone()));
    let gauges = tokio::spawn(gauges::run(config.clone(), shutdown.clone()));
    let leader = leader::run(config.clone(), shutdown.clone()).await;
    let _ = recorder.await;
    let _ = gauges.await;
    leader
}
