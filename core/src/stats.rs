//! Run statistics over time: what the store counts ([`RunTally`]) and what the API answers
//! ([`RunStats`]).
//!
//! The store counts in SQL, so an answer costs the same however many runs a window holds: per
//! time bucket, runs by state, and finished runs by duration bin. Durations are not read one by
//! one; their percentiles are estimated from the bins ([`DURATION_BOUNDS`], ten per decade from
//! 1 ms to about 28 hours), interpolating inside the bin, so an estimate is never off by more
//! than one bin's width (26 %) and usually by much less. Every engine returns the same counts,
//! so every engine gives the same estimate.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::RunState;

/// Upper bounds (exclusive, in ms) of the duration bins: bin `i` holds durations in
/// `[DURATION_BOUNDS[i - 1], DURATION_BOUNDS[i])`, bin 0 those under 1 ms, and one more bin past
/// the end those of 10^8 ms and over.
pub const DURATION_BOUNDS: [i64; 81] = duration_bounds();

const fn duration_bounds() -> [i64; 81] {
    // 10^(k/10) for k = 0..=80, rounded; the first decade's repeats are kept (an empty bin
    // costs nothing and keeps the bins one per step).
    const STEPS: [i64; 10] = [1000, 1259, 1585, 1995, 2512, 3162, 3981, 5012, 6310, 7943];
    let mut out = [0i64; 81];
    let mut k = 0;
    while k < 81 {
        let mut scale = 1i64;
        let mut d = 0;
        while d < k / 10 {
            scale *= 10;
            d += 1;
        }
        // STEPS are in thousandths; round to whole ms.
        out[k] = if k == 80 {
            100_000_000
        } else {
            (STEPS[k % 10] * scale + 500) / 1000
        };
        k += 1;
    }
    out
}

/// The SQL expression that puts `column` (a duration in ms) in its bin, the same on every engine.
pub fn duration_bin_sql(column: &str) -> String {
    let mut sql = String::from("CASE");
    for (i, bound) in DURATION_BOUNDS.iter().enumerate() {
        sql.push_str(&format!(" WHEN {column} < {bound} THEN {i}"));
    }
    sql.push_str(&format!(" ELSE {} END", DURATION_BOUNDS.len()));
    sql
}

/// What the store counted for a window cut into buckets of equal length, bucket 0 starting at
/// the window's start. Runs fall in the bucket of their `queued_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTally {
    /// `(bucket, state, runs)`, one entry per pair that has runs.
    pub states: Vec<(i64, RunState, u64)>,
    /// `(bucket, duration bin, runs)` of runs that have a duration, one entry per pair that has
    /// runs.
    pub durations: Vec<(i64, usize, u64)>,
}

/// Duration percentiles, estimated from the bins (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: i64,
    pub p90: i64,
    pub p99: i64,
}

/// One bucket's figures (and the whole window's, in [`RunStats::total`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Start of the bucket (ms); the window's start for the total.
    #[serde(skip)]
    pub start_ms: i64,
    pub runs: u64,
    /// Runs by state; every state is listed, with 0 when none.
    pub counts: BTreeMap<&'static str, u64>,
    /// Succeeded over ended (succeeded, failed, timed out, lost, cancelled); `None` when no run
    /// ended.
    pub success_rate: Option<f64>,
    /// `None` when no run has a duration.
    pub duration_ms: Option<Percentiles>,
}

/// A window's statistics: one [`Figures`] per bucket, oldest first, and the total.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    pub since_ms: i64,
    pub until_ms: i64,
    pub bucket_ms: i64,
    pub total: Figures,
    pub buckets: Vec<Figures>,
}

/// The window `[since_ms, until_ms)` cut into buckets of `bucket_ms`, from what the store
/// counted. The last bucket may reach past `until_ms`.
pub fn summarize(tally: &RunTally, since_ms: i64, until_ms: i64, bucket_ms: i64) -> RunStats {
    let n = bucket_count(since_ms, until_ms, bucket_ms);
    let mut states = vec![BTreeMap::<RunState, u64>::new(); n];
    let mut bins = vec![BTreeMap::<usize, u64>::new(); n];
    let mut all_states = BTreeMap::new();
    let mut all_bins = BTreeMap::new();
    for &(b, state, runs) in &tally.states {
        if let Some(slot) = usize::try_from(b).ok().and_then(|b| states.get_mut(b)) {
            *slot.entry(state).or_default() += runs;
            *all_states.entry(state).or_default() += runs;
        }
    }
    for &(b, bin, runs) in &tally.durations {
        if let Some(slot) = usize::try_from(b).ok().and_then(|b| bins.get_mut(b)) {
            *slot.entry(bin).or_default() += runs;
            *all_bins.entry(bin).or_default() += runs;
        }
    }
    let buckets = (0..n)
        .map(|i| figures(since_ms + i as i64 * bucket_ms, &states[i], &bins[i]))
        .collect();
    RunStats {
        since_ms,
        until_ms,
        bucket_ms,
        total: figures(since_ms, &all_states, &all_bins),
        buckets,
    }
}

/// How many buckets of `bucket_ms` cover `[since_ms, until_ms)`.
pub fn bucket_count(since_ms: i64, until_ms: i64, bucket_ms: i64) -> usize {
    let span = until_ms.saturating_sub(since_ms).max(0);
    let bucket = bucket_ms.max(1);
    (span / bucket + i64::from(span % bucket != 0)) as usize
}

fn figures(
    start_ms: i64,
    states: &BTreeMap<RunState, u64>,
    bins: &BTreeMap<usize, u64>,
) -> Figures {
    let counts: BTreeMap<&'static str, u64> = RunState::ALL
        .iter()
        .map(|s| (s.as_str(), states.get(s).copied().unwrap_or(0)))
        .collect();
    let ended: u64 = states
        .iter()
        .filter(|(s, _)| s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let succeeded = states.get(&RunState::Succeeded).copied().unwrap_or(0);
    Figures {
        start_ms,
        runs: states.values().sum(),
        counts,
        success_rate: (ended > 0).then(|| succeeded as f64 / ended as f64),
        duration_ms: percentiles(bins),
    }
}

fn percentiles(bins: &BTreeMap<usize, u64>) -> Option<Percentiles> {
    let total: u64 = bins.values().sum();
    (total > 0).then(|| Percentiles {
        p50: estimate(bins, total, 0.50),
        p90: estimate(bins, total, 0.90),
        p99: estimate(bins, total, 0.99),
    })
}

/// The duration at quantile `q`: the bin holding that rank, and a value inside it in proportion
/// to the rank's place among the bin's runs (the runs taken as spread evenly across the bin).
fn estimate(bins: &BTreeMap<usize, u64>, total: u64, q: f64) -> i64 {
    // The rank of the q-quantile among `total` sorted values, counting from 1.
    let rank = (q * total as f64).ceil().max(1.0);
    let mut before = 0u64;
    for (&bin, &runs) in bins {
        if (before + runs) as f64 >= rank {
            let (low, high) = bin_range(bin);
            let within = (rank - before as f64 - 0.5) / runs as f64;
            return low + ((high - low) as f64 * within).round() as i64;
        }
        before += runs;
    }
    bin_range(*bins.keys().last().unwrap_or(&0)).1
}

/// The durations bin `bin` holds, `[low, high)` in ms; the last, open bin is taken as one
/// decade wide.
fn bin_range(bin: usize) -> (i64, i64) {
    let low = match bin {
        0 => 0,
        b => DURATION_BOUNDS[(b - 1).min(DURATION_BOUNDS.len() - 1)],
    };
    let high = DURATION_BOUNDS
        .get(bin)
        .copied()
        .unwrap_or(DURATION_BOUNDS[DURATION_BOUNDS.len() - 1] * 10);
    (low, high.max(low + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin_of(ms: i64) -> usize {
        DURATION_BOUNDS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(DURATION_BOUNDS.len())
    }

    #[test]
    fn bounds_rise_ten_per_decade() {
        assert_eq!(DURATION_BOUNDS[0], 1);
        assert_eq!(DURATION_BOUNDS[10], 10);
        assert_eq!(DURATION_BOUNDS[30], 1000);
        assert_eq!(DURATION_BOUNDS[33], 1995);
        assert_eq!(DURATION_BOUNDS[80], 100_000_000);
        assert!(DURATION_BOUNDS.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn estimates_stay_within_a_bin() {
        // 1000 durations spread from 10 ms to 10 s: each estimate lands within 26 % of the exact
        // quantile.
        let exact: Vec<i64> = (0..1000)
            .map(|i| (10.0 * 1000f64.powf(i as f64 / 1000.0)).round() as i64)
            .collect();
        let mut bins = BTreeMap::new();
        for &d in &exact {
            *bins.entry(bin_of(d)).or_insert(0u64) += 1;
        }
        let p = percentiles(&bins).unwrap();
        for (q, got) in [(0.5, p.p50), (0.9, p.p90), (0.99, p.p99)] {
            let want = exact[(q * 1000.0) as usize - 1] as f64;
            let off = (got as f64 - want).abs() / want;
            assert!(off < 0.26, "q{q}: estimated {got}, exact {want}");
        }
    }

    #[test]
    fn one_duration_is_its_own_percentile_within_its_bin() {
        let bins = BTreeMap::from([(bin_of(1500), 1u64)]);
        let p = percentiles(&bins).unwrap();
        let (low, high) = bin_range(bin_of(1500));
        assert!(low <= p.p50 && p.p50 < high && p.p50 == p.p99);
    }

    #[test]
    fn summarize_places_counts_in_their_buckets() {
        let tally = RunTally {
            states: vec![
                (0, RunState::Succeeded, 3),
                (0, RunState::Failed, 1),
                (2, RunState::Running, 2),
                (9, RunState::Failed, 5), // outside the window: ignored
            ],
            durations: vec![(0, bin_of(100), 4)],
        };
        let s = summarize(&tally, 1000, 4000, 1000);
        assert_eq!(s.buckets.len(), 3);
        assert_eq!(s.buckets[0].runs, 4);
        assert_eq!(s.buckets[0].success_rate, Some(0.75));
        assert_eq!(s.buckets[1].runs, 0);
        assert_eq!(s.buckets[1].success_rate, None);
        assert_eq!(s.buckets[1].duration_ms, None);
        assert_eq!(s.buckets[2].counts["running"], 2);
        assert_eq!(s.buckets[2].start_ms, 3000);
        assert_eq!(s.total.runs, 6);
        assert_eq!(s.total.counts["queued"], 0);
        assert_eq!(s.total.success_rate, Some(0.75));
    }

    #[test]
    fn bucket_count_rounds_up() {
        assert_eq!(bucket_count(0, 3600, 3600), 1);
        assert_eq!(bucket_count(0, 3601, 3600), 2);
        assert_eq!(bucket_count(10, 10, 5), 0);
    }
}
