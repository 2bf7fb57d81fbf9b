//! The pruner (leader only): deletes what the retention policies expire (`core::retention`).
//!
//! A pass works through each expiry in batches of [`BATCH`] runs, read as a page of an index
//! after the previous page and deleted by id: the log archives first, then the rows with their history, so a pass cut
//! short leaves rows whose archive is gone (deleted again next pass), never an archive no row
//! points at. Between batches it pauses [`PAUSE`], which leaves the store's writer to triggers
//! and the recorder: on SQLite every write queues behind one connection. A pass stops after
//! [`MAX_BATCHES`] batches and the next one carries on.
//!
//! Sent and failed alert deliveries are kept as long as runs (`runs_days`). Webhook
//! idempotency keys go once their window (`antcode_core::hooks::KEY_WINDOW_MS`) is over,
//! whatever the policy: the store ignores them from then on anyway.
//!
//! Metrics: `antcode_scheduler_pruned_total{kind="runs"|"audit"|"deliveries"|"run_keys"}`,
//! `antcode_scheduler_prune_batch_seconds`.

use std::time::{Duration, Instant};

use antcode_core::alerting::ClosedKey;
use antcode_core::retention::{cutoff, expiries, PruneCounts};
use antcode_core::store::StoreError;

use crate::SchedulerConfig;

/// Runs (or audit entries) deleted per transaction.
pub const BATCH: u32 = 200;
/// Rest between two batches.
pub const PAUSE: Duration = Duration::from_millis(10);
/// Batches per pass.
pub const MAX_BATCHES: usize = 500;

/// One pass over every policy; returns what it deleted.
pub async fn prune(config: &SchedulerConfig) -> Result<PruneCounts, StoreError> {
    let store = &config.store;
    let now = config.clock.now_ms();
    let policy = store.retention_policy().await?;
    let mut counts = PruneCounts::default();
    let mut batches = 0;
    for expiry in expiries(store.as_ref(), &policy, now).await? {
        // Each page starts after the last one: deleted rows linger in an index until vacuumed
        // (PostgreSQL), and a scan from the start would walk all of them again every batch.
        let mut after: Option<ClosedKey> = None;
        loop {
            if batches >= MAX_BATCHES {
                return Ok(counts);
            }
            let page = store
                .prunable_runs(
                    expiry.task_id.as_deref(),
                    &expiry.except,
                    &expiry.before,
                    after.as_ref(),
                    BATCH,
                )
                .await?;
            if page.is_empty() {
                break;
            }
            let started = Instant::now();
            after = page.last().map(|r| ClosedKey {
                closed_at: r.closed_at,
                id: r.id.clone(),
            });
            if let Some(blobs) = &config.blobs {
                for key in page.iter().filter_map(|r| r.log_key.as_deref()) {
                    if let Err(e) = blobs.delete(key).await {
                        tracing::warn!(key, error = %e, "pruner: deleting a log archive failed; the run is kept");
                        return Ok(counts);
                    }
                }
            }
            let ids: Vec<String> = page.into_iter().map(|r| r.id).collect();
            let n = store.delete_runs(&ids).await?;
            counts.runs += n;
            batches += 1;
            metrics::counter!("antcode_scheduler_pruned_total", "kind" => "runs").increment(n);
            metrics::histogram!("antcode_scheduler_prune_batch_seconds")
                .record(started.elapsed().as_secs_f64());
            tokio::time::sleep(PAUSE).await;
        }
    }
    if let Some(days) = policy.audit_days {
        let before = cutoff(now, days);
        counts.audit = drain(
            "audit",
            &mut batches,
            |limit| store.old_audit(before, limit),
            |ids| async move { store.delete_audit(&ids).await },
        )
        .await?;
    }
    // The alert history is kept as long as runs are.
    if let Some(days) = policy.runs_days {
        let before = cutoff(now, days);
        counts.deliveries = drain(
            "deliveries",
            &mut batches,
            |limit| store.old_deliveries(before, limit),
            |ids| async move { store.delete_deliveries(&ids).await },
        )
        .await?;
    }
    let before = now - antcode_core::hooks::KEY_WINDOW_MS;
    counts.run_keys = drain(
        "run_keys",
        &mut batches,
        |limit| store.old_run_keys(before, limit),
        |ids| async move { store.delete_run_keys(&ids).await },
    )
    .await?;
    if counts.runs + counts.audit + counts.deliveries + counts.run_keys > 0 {
        tracing::info!(
            runs = counts.runs,
            audit = counts.audit,
            "pruner: deleted expired entries"
        );
    }
    Ok(counts)
}

/// Deletes what `read` finds, a batch at a time, while the pass has batches left; returns how
/// many rows went.
async fn drain<R, D>(
    kind: &'static str,
    batches: &mut usize,
    read: impl Fn(u32) -> R,
    delete: impl Fn(Vec<String>) -> D,
) -> Result<u64, StoreError>
where
    R: std::future::Future<Output = Result<Vec<String>, StoreError>>,
    D: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    while *batches < MAX_BATCHES {
        let ids = read(BATCH).await?;
        if ids.is_empty() {
            break;
        }
        let n = delete(ids).await?;
        total += n;
        *batches += 1;
        metrics::counter!("antcode_scheduler_pruned_total", "kind" => kind).increment(n);
        tokio::time::sleep(PAUSE).await;
    }
    Ok(total)
}
