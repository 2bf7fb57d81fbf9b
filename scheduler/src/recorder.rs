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

use antcode_core::dispatch::publish_jobs;
use antcode_core::model::{Job, RunEvent, RunEventKind, RunState};
use antcode_core::store::{Recorded, StoreError};
use antcode_core::telemetry::exemplars;
use antcode_core::telemetry::trace::{self, Kind, RunSpan};
use antcode_core::Shutdown;

use crate::SchedulerConfig;

const GROUP: &str = "recorder";
/// Events applied together, at most.
const BATCH_MAX: usize = 256;
/// How long a batch with a start whose end it lacks waits for company (see `with_company`).
const STARTS_LINGER: Duration = Duration::from_millis(10);
/// How long each read of the shutdown drain waits for more events.
const DRAIN_WAIT: Duration = Duration::from_millis(50);
/// The most batches the shutdown drain applies.
const DRAIN_READS: usize = 64;
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
        run_once(&config, &shutdown, &mut failed, &mut pause).await;
    }
    drain(&config).await;
}

/// On shutdown, what was already published is applied before the recorder stops: a runner that
/// drained in the same process (`antcode up`, whose broker dies with it) reported its last
/// outcomes just before. Bounded: it stops at the first empty read, or after [`DRAIN_READS`].
async fn drain(config: &SchedulerConfig) {
    for _ in 0..DRAIN_READS {
        let events = match config
            .broker
            .read_events(GROUP, &config.instance_id, BATCH_MAX, DRAIN_WAIT)
            .await
        {
            Ok(events) if !events.is_empty() => events,
            _ => return,
        };
        let mut failed = Vec::new();
        apply_batch(config, events, &mut failed).await;
        if !failed.is_empty() {
            return; // the database is unreachable: the events stay unacknowledged
        }
    }
}

/// Reads (or retries) and applies one batch.
async fn run_once(
    config: &SchedulerConfig,
    shutdown: &Shutdown,
    failed: &mut Vec<(String, RunEvent)>,
    pause: &mut Duration,
) {
    let events = if failed.is_empty() {
        *pause = Duration::from_millis(100);
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            b = config.broker.read_events(GROUP, &config.instance_id, BATCH_MAX, Duration::from_secs(1)) => b,
        };
        match batch {
            Ok(events) => with_company(config, events).await,
            Err(e) => {
                tracing::warn!(error = %e, "recorder: reading events failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
        }
    } else {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(*pause) => {}
        }
        *pause = (*pause * 2).min(RETRY_CAP);
        std::mem::take(failed)
    };
    apply_batch(config, events, failed).await;
}

/// Applies `events` and acknowledges what is done with; those the database could not take
/// (unreachable) go to `failed`.
async fn apply_batch(
    config: &SchedulerConfig,
    events: Vec<(String, RunEvent)>,
    failed: &mut Vec<(String, RunEvent)>,
) {
    let (ids, events): (Vec<String>, Vec<RunEvent>) = events.into_iter().unzip();
    // With traces on, each traced event's write is a span of its run's trace.
    let spans: Vec<RunSpan> = match trace::enabled() {
        true => events.iter().map(write_span).collect(),
        false => Vec::new(),
    };
    let mut results = config.store.record_events(&events).await;
    publish_next(config, &mut results).await;
    let mut done = Vec::with_capacity(events.len());
    let mut changed: Vec<String> = Vec::with_capacity(events.len());
    for (i, ((id, event), result)) in ids.into_iter().zip(events).zip(results).enumerate() {
        // The lines logged for a traced event name its trace (nothing below awaits).
        let logs = spans
            .get(i)
            .map_or_else(tracing::Span::none, |s| s.logs("record"));
        let _in = logs.enter();
        match settle(&event, result) {
            Ok(()) => {
                // How far SQL trails the runner: apply time minus the event's own time.
                let lag = (antcode_core::time::now_ms() - event.at_ms).max(0) as f64 / 1000.0;
                metrics::histogram!("antcode_scheduler_recorder_lag_seconds").record(lag);
                if let Some(trace_id) = event.trace.as_deref().and_then(trace::trace_id_of) {
                    exemplars::note(
                        "antcode_scheduler_recorder_lag_seconds",
                        &[],
                        lag,
                        &trace_id,
                    );
                }
                if !changed.contains(&event.run_id) {
                    changed.push(event.run_id.clone());
                }
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
    // Whoever waits on these runs (invoke, a run's SSE stream) re-reads them now.
    if let Err(e) = config.broker.announce_changes(&changed).await {
        tracing::debug!(error = %e, "recorder: change announcement failed");
    }
    if let Err(e) = config.broker.ack_events(GROUP, &done).await {
        tracing::warn!(error = %e, "recorder: ack failed; events will be applied again (idempotent)");
    }
}

/// The span of `event`'s write, under the span that reported it.
fn write_span(event: &RunEvent) -> RunSpan {
    let Some(parent) = event.trace.as_deref() else {
        return RunSpan::default();
    };
    let span = RunSpan::start("record", Kind::Consumer, Some(parent));
    span.set("antcode.run_id", event.run_id.clone());
    span.set("antcode.attempt", i64::from(event.attempt));
    let kind = match event.kind {
        RunEventKind::Started => "started",
        RunEventKind::Finished(_) => "finished",
        RunEventKind::Interrupted(_) => "interrupted",
    };
    span.set("antcode.event", kind);
    span
}

/// Publishes the jobs of the runs that the ended runs started (`antcode_core::flow`). They
/// are queued in SQL already: if this fails, compensation publishes them.
async fn publish_next(config: &SchedulerConfig, results: &mut [Result<Recorded, StoreError>]) {
    let jobs: Vec<Job> = results
        .iter_mut()
        .filter_map(|r| match r {
            Ok(Recorded::Finished { next, .. }) => Some(std::mem::take(next)),
            _ => None,
        })
        .flatten()
        .collect();
    if jobs.is_empty() {
        return;
    }
    metrics::counter!("antcode_scheduler_next_runs_total").increment(jobs.len() as u64);
    let secrets = config.secrets.as_deref();
    let store = config.store.as_ref();
    if let Err(e) = publish_jobs(store, config.broker.as_ref(), secrets, &jobs).await {
        tracing::warn!(error = %e, runs = jobs.len(), "recorder: publishing the next runs failed; compensation will");
    }
}

/// A batch that holds a run's start without that attempt's end waits up to [`STARTS_LINGER`]
/// (from its first read) for more events before it is applied, and is applied as soon as every
/// start in it has its end: a short run's start and end then share one commit (on SQLite an
/// fsync on the one write connection, which triggers queue behind) and one `UPDATE`
/// (`RunStore::record_events`). Nobody waits on a start the way `invoke` waits on an end; an end
/// waits only beside another run's start, and at most the linger. A batch of ends alone (or
/// of finished pairs) is applied at once, so a lone run's end is not delayed.
async fn with_company(
    config: &SchedulerConfig,
    mut events: Vec<(String, RunEvent)>,
) -> Vec<(String, RunEvent)> {
    let deadline = tokio::time::Instant::now() + STARTS_LINGER;
    while events.len() < BATCH_MAX && has_open_start(&events) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match config
            .broker
            .read_events(GROUP, &config.instance_id, BATCH_MAX - events.len(), left)
            .await
        {
            Ok(more) if !more.is_empty() => events.extend(more),
            // Nothing more came, or the broker failed: apply what we have (a failure shows up
            // again on the next read).
            _ => break,
        }
    }
    events
}

/// Whether some start in `events` lacks the end of the same attempt.
fn has_open_start(events: &[(String, RunEvent)]) -> bool {
    let ended: std::collections::HashSet<(&str, u32)> = events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e.kind,
                RunEventKind::Finished(_) | RunEventKind::Interrupted(_)
            )
        })
        .map(|(_, e)| (e.run_id.as_str(), e.attempt))
        .collect();
    events.iter().any(|(_, e)| {
        matches!(e.kind, RunEventKind::Started) && !ended.contains(&(e.run_id.as_str(), e.attempt))
    })
}

/// Applies one event. `Ok` means "done with it" (applied, or refused as stale).
pub async fn apply(config: &SchedulerConfig, ev: &RunEvent) -> Result<(), StoreError> {
    let mut results = config.store.record_events(std::slice::from_ref(ev)).await;
    publish_next(config, &mut results).await;
    settle(ev, results.pop().unwrap_or(Ok(Recorded::Started)))
}

/// What an event's result means for the recorder: `Ok` when done with it (applied, or refused
/// as stale, or its run is gone), the error when it must be tried again.
fn settle(ev: &RunEvent, result: Result<Recorded, StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(Recorded::Finished {
            state, requeued, ..
        }) => {
            if let RunEventKind::Finished(outcome) = &ev.kind {
                record_finish(state, requeued, outcome.duration_ms, ev.trace.as_deref());
            }
            Ok(())
        }
        Ok(Recorded::Started) => Ok(()),
        Ok(Recorded::Interrupted { .. }) => {
            metrics::counter!("antcode_scheduler_interrupted_total").increment(1);
            Ok(())
        }
        Err(StoreError::Stale(why)) | Err(StoreError::Conflict(why)) => {
            metrics::counter!("antcode_scheduler_stale_reports_total").increment(1);
            tracing::info!(run_id = %ev.run_id, "recorder: refused stale report: {why}");
            Ok(())
        }
        Err(StoreError::NotFound) => Ok(()), // the run was deleted
        Err(e) => Err(e),
    }
}

fn record_finish(state: RunState, requeued: bool, duration_ms: i64, trace: Option<&str>) {
    if requeued {
        metrics::counter!("antcode_scheduler_retries_total").increment(1);
        return;
    }
    let secs = duration_ms as f64 / 1000.0;
    metrics::counter!("antcode_runs_finished_total", "state" => state.as_str()).increment(1);
    metrics::histogram!("antcode_run_duration_seconds", "state" => state.as_str()).record(secs);
    if let Some(trace_id) = trace.and_then(trace::trace_id_of) {
        let labels = [("state", state.as_str())];
        exemplars::note("antcode_run_duration_seconds", &labels, secs, &trace_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antcode_core::model::Outcome;

    fn event(run: &str, attempt: u32, end: bool) -> (String, RunEvent) {
        let kind = if end {
            RunEventKind::Finished(Outcome::bare(RunState::Succeeded, 1))
        } else {
            RunEventKind::Started
        };
        let ev = RunEvent {
            trace: None,
            run_id: run.into(),
            attempt,
            lease_token: "tok".into(),
            worker_id: "w".into(),
            at_ms: 1,
            kind,
        };
        ("id".into(), ev)
    }

    /// `(run, attempt, is an end)`.
    type Batch = &'static [(&'static str, u32, bool)];

    #[test]
    fn a_batch_waits_while_a_start_lacks_its_end() {
        let cases: &[(Batch, bool)] = &[
            (&[], false),
            (&[("a", 1, false)], true),
            (&[("a", 1, true)], false),
            (&[("a", 1, false), ("a", 1, true)], false),
            (&[("a", 1, false), ("b", 1, true)], true),
            (&[("a", 1, false), ("a", 2, true)], true),
            (
                &[
                    ("b", 1, true),
                    ("a", 1, false),
                    ("c", 1, false),
                    ("a", 1, true),
                ],
                true,
            ),
            (
                &[
                    ("a", 1, false),
                    ("c", 1, false),
                    ("c", 1, true),
                    ("a", 1, true),
                ],
                false,
            ),
        ];
        for (events, open) in cases {
            let batch: Vec<_> = events.iter().map(|&(r, a, e)| event(r, a, e)).collect();
            assert_eq!(has_open_start(&batch), *open, "{events:?}");
        }
    }
}
