//! Leader election through the broker's lock, and the leader-only loops.
//!
//! The lock is taken with a time-to-live and renewed every third of it. Losing it (a failed
//! renewal, or the broker unreachable past the TTL) stops the leader's work at once: the loops
//! below run inside a `select!` that ends when leadership ends. Each acquisition returns a larger
//! fencing token, carried by everything the leader writes.

use std::sync::Arc;
use std::time::Duration;

use antcode_core::Shutdown;

use crate::{alerts, compensation, pruner, tick, SchedulerConfig, SchedulerError};

/// The leader lock, and the fence whose token guards scheduled-run writes.
pub const LOCK: &str = "scheduler";

pub async fn run(config: Arc<SchedulerConfig>, shutdown: Shutdown) -> Result<(), SchedulerError> {
    let retry = (config.leader_ttl / 3).max(Duration::from_millis(100));
    while !shutdown.is_cancelled() {
        match config
            .broker
            .acquire_leader(LOCK, &config.instance_id, config.leader_ttl)
            .await
        {
            Ok(Some(fence)) => {
                tracing::info!(instance = %config.instance_id, fence, "scheduler: became leader");
                metrics::gauge!("antcode_scheduler_leader").set(1.0);
                metrics::counter!("antcode_scheduler_leader_changes_total").increment(1);
                lead(&config, fence, &shutdown).await;
                metrics::gauge!("antcode_scheduler_leader").set(0.0);
                let _ = config
                    .broker
                    .release_leader(LOCK, &config.instance_id)
                    .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "scheduler: leader election failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => {},
            _ = tokio::time::sleep(retry) => {},
        }
    }
    Ok(())
}

/// Runs the leader's work until leadership is lost or shutdown.
async fn lead(config: &SchedulerConfig, fence: u64, shutdown: &Shutdown) {
    let renew = async {
        let every = config.leader_ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            match config
                .broker
                .renew_leader(LOCK, &config.instance_id, config.leader_ttl)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("scheduler: leadership lost");
                    return;
                }
                Err(e) => {
                    // One failed renewal is not yet a lost lock, but we cannot know; stepping
                    // down is the safe side.
                    tracing::warn!(error = %e, "scheduler: renewal failed; stepping down");
                    return;
                }
            }
        }
    };
    let work = async {
        let mut comp = compensation::Compensator::new(config);
        loop {
            comp.pass().await;
            tick::fire_due(config, fence).await;
            tokio::time::sleep(config.tick_interval).await;
        }
    };
    let alerts = async {
        let mut alerts = alerts::Alerts::new(config);
        loop {
            if let Err(e) = alerts.evaluate().await {
                tracing::warn!(error = %e, "alerts: finding events failed");
            }
            if let Err(e) = alerts.deliver().await {
                tracing::warn!(error = %e, "alerts: sending failed");
            }
            tokio::time::sleep(config.alert_interval).await;
        }
    };
    let prune = async {
        loop {
            if let Err(e) = pruner::prune(config).await {
                tracing::warn!(error = %e, "pruner: pass failed");
            }
            tokio::time::sleep(config.prune_interval).await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {},
        _ = renew => {},
        _ = work => {},
        _ = alerts => {},
        _ = prune => {},
    }
}
