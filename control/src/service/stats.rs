//! Run statistics for a window: `GET /stats/runs`. The store counts per bucket
//! (`RunStore::tally_runs`); [`antcode_core::stats`] turns the counts into figures.

use serde::Deserialize;
use serde_json::{json, Value};

use antcode_core::stats::{self, Figures, RunStats};
use antcode_core::time::{now_ms, to_rfc3339};

use super::runs::{self, ListQuery};
use crate::problem::{ApiResult, Problem};
use crate::AppState;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// The longest window and the most buckets one answer covers.
pub const MAX_WINDOW_DAYS: i64 = 400;
pub const MAX_BUCKETS: i64 = 1000;
/// Bucket lengths a default is picked from: the shortest that cuts the window in at most
/// [`DEFAULT_BUCKETS`].
const STEPS_MS: [i64; 9] = [
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    60 * MINUTE_MS,
    3 * 60 * MINUTE_MS,
    6 * 60 * MINUTE_MS,
    12 * 60 * MINUTE_MS,
    DAY_MS,
    7 * DAY_MS,
];
const DEFAULT_BUCKETS: i64 = 60;

/// What `GET /stats/runs` takes: the run filters of `GET /runs` (but `state`) and `bucket`, in
/// seconds.
#[derive(Debug, Default, Deserialize)]
pub struct StatsQuery {
    pub task_id: Option<String>,
    pub worker_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub trigger: Option<String>,
    pub error: Option<String>,
    pub bucket: Option<i64>,
}

/// The window's figures; a bad window or bucket is a 400 naming it.
pub async fn run_stats(state: &AppState, q: StatsQuery) -> ApiResult<Value> {
    let mut filter = runs::filter(ListQuery {
        task_id: q.task_id,
        state: None,
        worker_id: q.worker_id,
        since: q.since,
        until: q.until,
        trigger: q.trigger,
        error: q.error,
    })?;
    let until = filter.until_ms.unwrap_or_else(now_ms);
    let since = filter.since_ms.unwrap_or(until - DAY_MS);
    let bucket = window(since, until, q.bucket)?;
    filter.since_ms = Some(since);
    filter.until_ms = Some(until);
    let tally = state.store.tally_runs(&filter, bucket).await?;
    Ok(to_json(&stats::summarize(&tally, since, until, bucket)))
}

/// Checks the window and picks the bucket (ms): `bucket_s` when given, else the shortest of
/// [`STEPS_MS`] that makes at most [`DEFAULT_BUCKETS`].
fn window(since: i64, until: i64, bucket_s: Option<i64>) -> ApiResult<i64> {
    if until <= since {
        return Err(Problem::bad_request("until: must be after since"));
    }
    if until - since > MAX_WINDOW_DAYS * DAY_MS {
        return Err(Problem::bad_request(format!(
            "since: the window is at most {MAX_WINDOW_DAYS} days"
        )));
    }
    let bucket = match bucket_s {
        Some(s) if !(60..=31 * 86_400).contains(&s) => {
            return Err(Problem::bad_request(
                "bucket: seconds from 60 to 2678400 (31 days)",
            ))
        }
        Some(s) => s * 1000,
        None => STEPS_MS
            .into_iter()
            .find(|b| stats::bucket_count(since, until, *b) as i64 <= DEFAULT_BUCKETS)
            .unwrap_or(7 * DAY_MS),
    };
    let n = stats::bucket_count(since, until, bucket) as i64;
    if n > MAX_BUCKETS {
        return Err(Problem::bad_request(format!(
            "bucket: {n} buckets; at most {MAX_BUCKETS} (a longer bucket or a shorter window)"
        )));
    }
    Ok(bucket)
}

fn to_json(s: &RunStats) -> Value {
    json!({
        "since": to_rfc3339(s.since_ms),
        "until": to_rfc3339(s.until_ms),
        "bucket_seconds": s.bucket_ms / 1000,
        "total": figures(&s.total),
        "buckets": s.buckets.iter().map(|b| {
            let mut v = figures(b);
            v["start"] = json!(to_rfc3339(b.start_ms));
            v
        }).collect::<Vec<_>>(),
    })
}

fn figures(f: &Figures) -> Value {
    serde_json::to_value(f).expect("figures always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_buckets_fit_the_window() {
        let h = 60 * MINUTE_MS;
        assert_eq!(window(0, 24 * h, None).unwrap(), h);
        assert_eq!(window(0, h, None).unwrap(), MINUTE_MS);
        assert_eq!(window(0, 30 * DAY_MS, None).unwrap(), 12 * h);
        assert_eq!(window(0, 400 * DAY_MS, None).unwrap(), 7 * DAY_MS);
    }

    #[test]
    fn bad_windows_are_refused() {
        assert!(window(10, 10, None).is_err());
        assert!(window(0, 401 * DAY_MS, None).is_err());
        assert!(window(0, DAY_MS, Some(59)).is_err());
        assert!(window(0, 30 * DAY_MS, Some(60)).is_err(), "43200 buckets");
        assert_eq!(window(0, DAY_MS, Some(900)).unwrap(), 900_000);
    }
}
