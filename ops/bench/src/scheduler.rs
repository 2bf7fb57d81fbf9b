//! `bench-scheduler`: N active cron schedules on one scheduler leader (SQLite store by default,
//! or `--database-url` to an EMPTY PostgreSQL/MariaDB database; in-process memory broker, so the
//! numbers are the schedule plane's own cost).
//!
//! Two phases, both driven through `tick::fire_due` exactly as the leader loop calls it:
//! * burst: every schedule due at the same instant; fires/s = N / time to fire them all, and the
//!   lag of each fire (its run's `queued_at` − `due_at`) is queueing behind the others;
//! * steady: each schedule is a 6-field cron firing once a minute at second `i % 60`, so about
//!   N/60 fires are due every second; the leader ticks every 100 ms for `--steady-s` seconds,
//!   each tick a compensation pass and then `fire_due`, in the leader loop's order.
//!
//! The burst also reports where a batch's time goes (`antcode_scheduler_fire_phase_seconds`).
//!
//! Prints a table and writes the same numbers to the results file (`results.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use antcode_core::broker::{memory::MemoryBroker, Broker};
use antcode_core::model::*;
use antcode_core::store::{sql::SqlStore, NextFire, RunFilter, Store};
use antcode_core::time::now_ms;
use antcode_scheduler::{tick, SchedulerConfig};

mod results;
use results::Flags;

const USAGE: &str = "\
bench-scheduler: N active cron schedules on one scheduler leader

Usage: bench-scheduler [--schedules 100000] [--steady-s 30] [--database-url URL]
  --schedules N       active schedules, each firing once a minute
  --steady-s S        seconds of the steady phase
  --database-url URL  an EMPTY PostgreSQL or MariaDB database (default: SQLite in TMPDIR)";

struct Args {
    schedules: usize,
    steady_s: u64,
    database_url: Option<String>,
}

fn parse_args() -> (Args, Flags) {
    let mut a = Args {
        schedules: 100_000,
        steady_s: 30,
        database_url: None,
    };
    let mut flags = Flags::from_env("scheduler", USAGE);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--schedules" => a.schedules = flags.value(&flag),
            "--steady-s" => a.steady_s = flags.value(&flag),
            "--database-url" => a.database_url = Some(flags.value(&flag)),
            other => flags.unknown(other),
        }
    }
    (a, flags)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Lags (ms) of every scheduled run whose due time is in `[from, to)`.
async fn lags(store: &dyn Store, from: i64, to: i64) -> anyhow::Result<Vec<i64>> {
    let mut out = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_runs(&RunFilter::default(), 1000, cursor.as_deref())
            .await?;
        out.extend(
            page.items
                .iter()
                .filter_map(|r| r.due_at.map(|d| (d, r.queued_at)))
                .filter(|(d, _)| *d >= from && *d < to)
                .map(|(d, q)| (q - d).max(0)),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.sort();
    Ok(out)
}

/// Sum and count of each phase of the scheduler's batches so far
/// (`antcode_scheduler_fire_phase_seconds`), from the process's Prometheus registry.
fn phases() -> Vec<(String, f64, u64)> {
    let text = antcode_core::telemetry::prometheus().render();
    let value = |name: &str, phase: &str| -> Option<f64> {
        let prefix = format!("antcode_scheduler_fire_phase_seconds_{name}{{phase=\"{phase}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    ["read", "read_wait", "plan", "write", "publish"]
        .iter()
        .filter_map(|p| Some((p.to_string(), value("sum", p)?, value("count", p)? as u64)))
        .collect()
}

/// The phases of the batches between two [`phases`] snapshots: `phase: mean ms per batch
/// (batches)`.
fn phases_between(
    before: &[(String, f64, u64)],
    after: &[(String, f64, u64)],
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, sum, count) in after {
        let (s0, c0) = before
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, s, c)| (*s, *c))
            .unwrap_or((0.0, 0));
        let batches = count - c0;
        if batches > 0 {
            let mean_ms = (sum - s0) * 1000.0 / batches as f64;
            out.insert(
                name.clone(),
                json!({"mean_ms": (mean_ms * 100.0).round() / 100.0, "batches": batches}),
            );
        }
    }
    out.into()
}

/// Refreshes the planner's statistics of `tasks` after the bulk setup, as autovacuum (PostgreSQL)
/// or InnoDB's automatic statistics would soon after a real bulk change. Without it PostgreSQL
/// plans the due-task read from statistics taken while every schedule was parked, and reads the
/// whole backlog for each batch of 1,000. SQLite's planner needs no statistics here.
async fn analyze_tasks(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let statement = if url.starts_with("postgres") {
        "ANALYZE tasks"
    } else if url.starts_with("mysql") || url.starts_with("mariadb") {
        "ANALYZE TABLE tasks"
    } else {
        return Ok(());
    };
    sqlx::any::install_default_drivers();
    let mut con = sqlx::AnyConnection::connect(url).await?;
    sqlx::query(statement).execute(&mut con).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, flags) = parse_args();
    // The scheduler's phase histograms, read back after the burst.
    antcode_core::telemetry::prometheus();
    let dir = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.sqlite").display()));
    let sql = SqlStore::connect(&url).await?;
    let engine = format!("{:?}", sql.dialect()).to_lowercase();
    let store: Arc<dyn Store> = Arc::new(sql);
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let config = SchedulerConfig::new(store.clone(), broker.clone());
    let fence = broker
        .acquire_leader(
            antcode_scheduler::leader::LOCK,
            &config.instance_id,
            Duration::from_secs(3600),
        )
        .await?
        .context("leader lock")?;

    let now = now_ms();
    let (project, version) = antcode_testkit::fixtures::project("bench", now);
    store.create_project(&project, &version).await?;

    let setup = Instant::now();
    // Created parked far in the future, then all made due at one instant once they exist, so
    // the burst's lag is the leader's own queueing, not the time it took to create them.
    let parked = now_ms() + 86_400_000;
    let tasks: Vec<Task> = (0..args.schedules)
        .map(|i| Task {
            id: antcode_core::ids::new_id(),
            name: format!("cron-{i}"),
            project_id: project.id.clone(),
            spec: TaskSpec::default(),
            schedule: Some(Schedule::Cron {
                cron: format!("{} * * * * *", i % 60),
                timezone: "UTC".into(),
            }),
            paused: false,
            next_fire_at: Some(parked),
            created_at: now,
            updated_at: now,
        })
        .collect();
    // The API's row for each task, written by the store's batched insert (one transaction per
    // chunk) rather than one round trip and commit per task.
    for chunk in tasks.chunks(5_000) {
        store.create_tasks(chunk).await?;
    }
    let burst_due = now_ms() + 5_000;
    let make_due: Vec<NextFire> = tasks
        .into_iter()
        .map(|task| NextFire {
            task_id: task.id,
            from: parked,
            to: Some(burst_due),
        })
        .collect();
    store
        .fire_schedules(
            &[],
            &make_due,
            antcode_scheduler::leader::LOCK,
            fence,
            now_ms(),
        )
        .await?;
    analyze_tasks(&url).await?;
    anyhow::ensure!(
        now_ms() < burst_due,
        "making the schedules due took more than 5 s; the burst lag would include it"
    );
    eprintln!(
        "created {} schedules in {:.1}s",
        args.schedules,
        setup.elapsed().as_secs_f64()
    );
    while now_ms() < burst_due {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Burst: everything due at once.
    let phases0 = phases();
    let t0 = Instant::now();
    tick::fire_due(&config, fence).await;
    let burst_s = t0.elapsed().as_secs_f64();
    let burst_phases = phases_between(&phases0, &phases());
    let burst_lags = lags(store.as_ref(), burst_due, burst_due + 1).await?;
    let burst_rate = burst_lags.len() as f64 / burst_s;

    // Steady: the leader's loop, every 100 ms, over whole seconds of per-second-spread crons.
    let start = (now_ms() / 1000 + 2) * 1000;
    let end = start + args.steady_s as i64 * 1000;
    let t1 = Instant::now();
    // Past the window, keep ticking until every schedule's next fire is after it (when the
    // leader cannot keep up, the window's fires come late and their lag shows it), at most 120 s.
    // Each tick is the leader loop's: a compensation pass, then firing. The compensation passes
    // are timed on their own: they read up to 1,000 queued runs each, and the burst left
    // 100,000 of them queued (no runner takes them here).
    let mut comp = antcode_scheduler::compensation::Compensator::new(&config);
    let mut comp_ms = vec![];
    loop {
        let pass = now_ms();
        let started = Instant::now();
        comp.pass().await;
        comp_ms.push(started.elapsed().as_millis() as i64);
        tick::fire_due(&config, fence).await;
        if pass >= end + 1_000 {
            let behind = !store.due_tasks(end - 1, 1, None).await?.is_empty();
            if !behind || pass > end + 120_000 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let steady_lags = lags(store.as_ref(), start, end).await?;
    let expected = (args.schedules as i64 * args.steady_s as i64 / 60) as usize;
    let steady_rate = steady_lags.len() as f64 / args.steady_s as f64;
    let _ = t1;
    comp_ms.sort();
    let comp_p50 = comp_ms.get(comp_ms.len() / 2).copied().unwrap_or(0);
    let comp_max = comp_ms.last().copied().unwrap_or(0);

    println!("store: {engine}, broker: memory, one leader");
    println!("| phase | schedules | fires | fires/s | lag p50 (s) | lag p99 (s) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| burst (all due at once) | {} | {} | {:.0} | {:.3} | {:.3} |",
        args.schedules,
        burst_lags.len(),
        burst_rate,
        percentile(&burst_lags, 0.5),
        percentile(&burst_lags, 0.99)
    );
    println!(
        "| steady ({} s, ~N/60 due per second) | {} | {} of {} due | {:.0} | {:.3} | {:.3} |",
        args.steady_s,
        args.schedules,
        steady_lags.len(),
        expected,
        steady_rate,
        percentile(&steady_lags, 0.5),
        percentile(&steady_lags, 0.99)
    );
    println!("burst, mean ms per batch of each phase: {burst_phases}");
    println!(
        "steady, compensation pass before each tick: p50 {comp_p50} ms, max {comp_max} ms ({} passes)",
        comp_ms.len()
    );
    let rows = vec![
        json!({"name": "burst", "store": engine, "schedules": args.schedules,
               "fires": burst_lags.len(), "seconds": burst_s, "fires_per_s": burst_rate,
               "lag_p50_s": percentile(&burst_lags, 0.5), "lag_p99_s": percentile(&burst_lags, 0.99),
               "phases": burst_phases}),
        json!({"name": "steady", "store": engine, "schedules": args.schedules,
               "seconds": args.steady_s, "fires": steady_lags.len(), "due": expected,
               "fires_per_s": steady_rate,
               "lag_p50_s": percentile(&steady_lags, 0.5), "lag_p99_s": percentile(&steady_lags, 0.99),
               "compensation_ms": {"p50": comp_p50, "max": comp_max, "passes": comp_ms.len()}}),
    ];
    // No other scheduler runs beside it: the figures are held against the targets.
    let peer = json!({"targets": {"burst_fires_per_s_min": 10_000, "steady_lag_p99_s_max": 1.0}});
    results::write(&flags, rows, peer, json!({"broker": "memory"}))
}
