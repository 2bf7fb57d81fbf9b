//! The fleet's state as gauges, for dashboards and alerts: how many jobs wait in each queue and
//! who serves it. Every instance reads the broker's view every [`EVERY`] and sets:
//!
//! * `antcode_queue_depth{queue}`: jobs waiting, over all the queue's routes;
//! * `antcode_queue_runners{queue}`: live runners serving the queue, draining ones left out;
//! * `antcode_queue_slots{queue, state}`: those runners' slots, `busy` or `free` (a runner that
//!   serves several queues counts in each).
//!
//! Every instance sets the same values, so a dashboard takes `max by (queue)`. A queue seen once
//! stays at zero when it empties, so an alert on a queue with no runner sees the zero.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use antcode_core::broker::routing;
use antcode_core::model::WorkerStatus;
use antcode_core::Shutdown;

use crate::SchedulerConfig;

/// How often the gauges are refreshed.
pub const EVERY: Duration = Duration::from_secs(5);

/// Per queue: waiting jobs, live runners, busy slots, free slots.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueGauges {
    pub depth: u64,
    pub runners: u64,
    pub busy: u64,
    pub free: u64,
}

/// The gauges of every queue named by `depths` (per route), `workers` or `known` (queues seen
/// before, kept at zero).
pub fn measure(
    depths: Vec<(String, u64)>,
    workers: &[WorkerStatus],
    known: &BTreeSet<String>,
) -> BTreeMap<String, QueueGauges> {
    let mut out: BTreeMap<String, QueueGauges> = known
        .iter()
        .map(|q| (q.clone(), QueueGauges::default()))
        .collect();
    for (queue, depth) in routing::depths_by_queue(depths) {
        out.entry(queue).or_default().depth = depth;
    }
    for w in workers.iter().filter(|w| !w.draining) {
        for queue in &w.queues {
            let g = out.entry(queue.clone()).or_default();
            g.runners += 1;
            let busy = u64::from(w.running.min(w.slots));
            g.busy += busy;
            g.free += u64::from(w.slots) - busy;
        }
    }
    out
}

/// Refreshes the gauges until `shutdown`.
pub async fn run(config: Arc<SchedulerConfig>, shutdown: Shutdown) {
    let mut known = BTreeSet::new();
    loop {
        let depths = config.broker.queue_depths().await;
        let workers = config.broker.workers().await;
        match (depths, workers) {
            (Ok(depths), Ok(workers)) => {
                for (queue, g) in measure(depths, &workers, &known) {
                    let q = queue.clone();
                    metrics::gauge!("antcode_queue_depth", "queue" => q.clone())
                        .set(g.depth as f64);
                    metrics::gauge!("antcode_queue_runners", "queue" => q.clone())
                        .set(g.runners as f64);
                    metrics::gauge!("antcode_queue_slots", "queue" => q.clone(), "state" => "busy")
                        .set(g.busy as f64);
                    metrics::gauge!("antcode_queue_slots", "queue" => q, "state" => "free")
                        .set(g.free as f64);
                    known.insert(queue);
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "gauges: reading the broker failed")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(queues: &[&str], slots: u32, running: u32, draining: bool) -> WorkerStatus {
        WorkerStatus {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            slots,
            running,
            draining,
            ..Default::default()
        }
    }

    #[test]
    fn queues_count_their_routes_runners_and_slots_and_stay_known() {
        let known = BTreeSet::from(["gone".to_string()]);
        let workers = [
            worker(&["default", "gpu"], 4, 1, false),
            worker(&["default"], 2, 2, false),
            worker(&["default"], 8, 0, true),
        ];
        let depths = vec![
            ("default".to_string(), 1),
            ("default@os=linux".to_string(), 2),
            ("empty".to_string(), 0),
        ];
        let g = measure(depths, &workers, &known);
        let q = |busy, free, runners, depth| QueueGauges {
            depth,
            runners,
            busy,
            free,
        };
        assert_eq!(g["default"], q(3, 3, 2, 3));
        assert_eq!(g["gpu"], q(1, 3, 1, 0));
        assert_eq!(g["empty"], q(0, 0, 0, 0));
        assert_eq!(g["gone"], q(0, 0, 0, 0));
        assert_eq!(g.len(), 4);
    }
}
