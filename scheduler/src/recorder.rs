//! The event recorder: applies runner reports to SQL.
//!
//! Events are read at least once through the broker's consumer group `recorder`, so every
//! instance can run this loop and a crashed one loses nothing. Applying is idempotent and fenced:
//! a stale report (wrong attempt or lease token) changes nothing and is acknowledged so it is not
//! retried forever; any other error leaves the event unacknowledged for the broker to redeliver.
//! An unreachable database is retried here too, at once and with a short capped backoff, before
//! anything new is read, so a run's real end is applied as soon as the database returns.

use std::sync::Arc;
use std::time::Duration;

use antcode_core::model::{RunEvent, RunEventKind};
use antcode_core::store::{FinishApplied, StoreError};
use antcode_core::Shutdown;

use crate::SchedulerConfig;

const GROUP: &str = "recorder";
/// Longest pause between two tries of an event the store refused (it was unreachable). Kept
/// well under `lost_after`: once the database is back, the run's real end must be applied
/// before compensation, which also waits for the database, can presume the run lost.
const RETRY_CAP: Duration = Duration::from_secs(1);

pub async fn run(config: Arc<SchedulerConfig>, shutdown: Shutdown) {
    // Events the store could not take yet. They stay unacknowledged (another instance would get
    // them if this one died) but are retried here at once, not after the broker's redelivery.
    let mut failed: Vec<(String, RunEvent)> = Vec::new();
    let mut pause = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let events = if failed.is_empty() {
            pause = Duration::from_millis(100);
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                b = config.broker.read_events(GROUP, &config.instance_id, 256, Duration::from_secs(1)) => b,
            };
            match batch {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "recorder: reading events failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RETRY_CAP);
            std::mem::take(&mut failed)
        };
        let mut done = Vec::with_capacity(events.len());
        for (id, event) in events {
            match apply(&config, &event).await {
                Ok(()) => {
                    // Whoever waits on this run (invoke, the run's SSE stream) re-reads it now.
                    if let Err(e) = config.broker.announce_change(&event.run_id).await {
                        tracing::debug!(error = %e, "recorder: change announcement failed");
                    }
                    // How far SQL trails the runner: apply time minus the event's own time.
                    metrics::histogram!("antcode_scheduler_recorder_lag_seconds").record(
                        (antcode_core::time::now_ms() - event.at_ms).max(0) as f64 / 1000.0,
                    );
                    done.push(id)
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(run_id = %event.run_id, error = %e, "recorder: database unavailable; retrying event");
                    failed.push((id, event));
                }
                // Refused for another reason: left to the broker's redelivery, so one bad
                // event cannot hold up the others.
                Err(e) => {
                    tracing::warn!(run_id = %event.run_id, error = %e, "recorder: will retry event")
                }
            }
        }
        if let Err(e) = config.broker.ack_events(GROUP, &done).await {
            tracing::warn!(error = %e, "recorder: ack failed; events will be applied again (idempotent)");
        }
    }
}

/// Applies one event. `Ok` means "done with it" (applied, or refused as stale).
pub async fn apply(config: &SchedulerConfig, ev: &RunEvent) -> Result<(), StoreError> {
    let result = match &ev.kind {
        RunEventKind::Started => config
            .store
            .mark_started(
                &ev.run_id,
                ev.attempt,
                &ev.lease_token,
                &ev.worker_id,
                ev.at_ms,
            )
            .await
            .map(|_| ()),
        RunEventKind::Finished(outcome) => config
            .store
            .finish_attempt(
                &ev.run_id,
                ev.attempt,
                Some(&ev.lease_token),
                outcome,
                ev.at_ms,
            )
            .await
            .map(|applied| record_finish(&applied, outcome.duration_ms)),
    };
    match result {
        Err(StoreError::Stale(why)) | Err(StoreError::Conflict(why)) => {
            metrics::counter!("antcode_scheduler_stale_reports_total").increment(1);
            tracing::info!(run_id = %ev.run_id, "recorder: refused stale report: {why}");
            Ok(())
        }
        Err(StoreError::NotFound) => Ok(()), // the run was deleted
        other => other,
    }
}

fn record_finish(applied: &FinishApplied, duration_ms: i64) {
    let (run, requeued) = match applied {
        FinishApplied::Terminal(run) => (run, false),
        FinishApplied::Requeued(run) => (run, true),
    };
    if requeued {
        metrics::counter!("antcode_scheduler_retries_total").increment(1);
        return;
    }
    metrics::counter!("antcode_runs_finished_total", "state" => run.state.as_str()).increment(1);
    metrics::histogram!("antcode_run_duration_seconds", "state" => run.state.as_str())
        .record(duration_ms as f64 / 1000.0);
}
