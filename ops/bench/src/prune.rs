//! `bench-prune`: the retention pruner on N expired runs (SQLite by default, or `--database-url`
//! to an EMPTY PostgreSQL/MariaDB database), with triggers going on meanwhile.
//!
//! Three phases, each with a trigger (`Store::create_run`, what `POST /tasks/{id}/trigger`
//! writes) every `--trigger-ms` from one client, whose latencies are the table's p50/p99:
//! * idle: no pruning, for `--idle-s` seconds;
//! * pruner: `pruner::prune` passes, as the scheduler leader runs them, until the N seeded runs
//!   are gone: rows/s is N / that time;
//! * peer: the same N runs seeded again and deleted by one plain `DELETE … WHERE closed_at < ?`,
//!   the statement a cron job of an operator would run.
//!
//! Runs are seeded with direct multi-row inserts (ended 60 days ago, each with one history
//! row) so that seeding a million takes seconds, not the hours of a million real runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;

use antcode_core::broker::memory::MemoryBroker;
use antcode_core::model::*;
use antcode_core::retention::RetentionPolicy;
use antcode_core::store::{sql::SqlStore, NewRun, Store};
use antcode_core::time::now_ms;
use antcode_scheduler::SchedulerConfig;

mod results;
use results::Flags;

const USAGE: &str = "\
bench-prune: the retention pruner on N expired runs while triggers go on

Usage: bench-prune [--runs 1000000] [--idle-s 10] [--trigger-ms 20] [--database-url URL]
  --runs N            expired runs to seed (each with one history row)
  --idle-s S          seconds of triggers without pruning (the baseline)
  --trigger-ms MS     one trigger every MS milliseconds in every phase
  --database-url URL  an EMPTY PostgreSQL or MariaDB database (default: SQLite in TMPDIR)";

struct Args {
    runs: usize,
    idle_s: u64,
    trigger_ms: u64,
    database_url: Option<String>,
}

fn parse_args() -> (Args, Flags) {
    let mut a = Args {
        runs: 1_000_000,
        idle_s: 10,
        trigger_ms: 20,
        database_url: None,
    };
    let mut flags = Flags::from_env("prune", USAGE);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--runs" => a.runs = flags.value(&flag),
            "--idle-s" => a.idle_s = flags.value(&flag),
            "--trigger-ms" => a.trigger_ms = flags.value::<u64>(&flag).max(1),
            "--database-url" => a.database_url = Some(flags.value(&flag)),
            other => flags.unknown(other),
        }
    }
    (a, flags)
}

/// Inserts `n` runs of `task` that ended 60 days ago, each with a history row.
async fn seed(url: &str, task: &Task, n: usize) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let mut con = sqlx::AnyConnection::connect(url).await?;
    let ended = now_ms() - 60 * 86_400_000;
    const CHUNK: usize = 500;
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        let mut runs = String::from(
            "INSERT INTO runs (id, task_id, project_id, project_version, state, attempt, \
             max_attempts, retry, queue, run_trigger, job, queued_at, finished_at, closed_at) VALUES ",
        );
        let mut history =
            String::from("INSERT INTO run_history (id, run_id, attempt, kind, detail, at) VALUES ");
        for i in 0..k {
            let id = antcode_core::ids::new_id();
            let sep = if i == 0 { "" } else { ", " };
            runs.push_str(&format!(
                "{sep}('{id}', '{}', '{}', 1, 'succeeded', 1, 1, '{{}}', 'default', 'manual', '{{}}', {ended}, {ended}, {ended})",
                task.id, task.project_id
            ));
            history.push_str(&format!(
                "{sep}('{}', '{id}', 1, 'finished', '', {ended})",
                antcode_core::ids::new_id()
            ));
        }
        let mut tx = con.begin().await?;
        sqlx::query(&runs).execute(&mut *tx).await?;
        sqlx::query(&history).execute(&mut *tx).await?;
        tx.commit().await?;
        left -= k;
    }
    // Fresh statistics, as autovacuum (PostgreSQL) would take soon after a bulk load: planned
    // from the statistics of an empty `run_history`, deleting a batch's history scans it whole.
    if url.starts_with("postgres") {
        for table in ["runs", "run_history"] {
            sqlx::query(&format!("ANALYZE {table}"))
                .execute(&mut con)
                .await?;
        }
    }
    Ok(())
}

/// Triggers every `every` while `work` runs (as a task of its own, so that it progresses while a
/// trigger waits, as the scheduler's pruner does beside control); returns each trigger's latency
/// in µs and what `work` returned.
async fn triggers<T: Send + 'static>(
    store: &Arc<dyn Store>,
    new: &NewRun,
    every: Duration,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> anyhow::Result<(Vec<u64>, T)> {
    let mut lat = vec![];
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = tokio::spawn(work);
    loop {
        tokio::select! {
            out = &mut stop => return Ok((lat, out?)),
            _ = tick.tick() => {
                let t = Instant::now();
                store.create_run(new).await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn row(phase: &str, runs: usize, secs: Option<f64>, mut lat: Vec<u64>) -> serde_json::Value {
    lat.sort_unstable();
    let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
    let rate = secs.map(|s| runs as f64 / s);
    println!(
        "| {phase} | {} | {} | {} | {p50:.2} | {p99:.2} |",
        secs.map_or("-".into(), |s| format!("{s:.1}")),
        rate.map_or("-".into(), |r| format!("{r:.0}")),
        lat.len(),
    );
    json!({"phase": phase, "runs": runs, "seconds": secs, "rows_per_s": rate,
           "triggers": lat.len(), "trigger_p50_ms": p50, "trigger_p99_ms": p99})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, flags) = parse_args();
    let dir = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.sqlite").display()));
    let sql = SqlStore::connect(&url).await?;
    let engine = format!("{:?}", sql.dialect()).to_lowercase();
    let store: Arc<dyn Store> = Arc::new(sql);
    let config = SchedulerConfig::new(store.clone(), Arc::new(MemoryBroker::new()));
    store
        .set_retention_policy(&RetentionPolicy::default(), now_ms())
        .await?;

    let now = now_ms();
    let (project, version) = antcode_testkit::fixtures::project("bench", now);
    store.create_project(&project, &version).await?;
    let task = Task {
        id: antcode_core::ids::new_id(),
        name: "bench".into(),
        project_id: project.id.clone(),
        spec: TaskSpec::default(),
        schedule: None,
        paused: false,
        next_fire_at: None,
        created_at: now,
        updated_at: now,
    };
    store.create_task(&task).await?;
    let new = NewRun::new(task.clone(), version, "manual");
    let every = Duration::from_millis(args.trigger_ms);

    let t = Instant::now();
    seed(&url, &task, args.runs).await?;
    eprintln!(
        "seeded {} runs in {:.1}s",
        args.runs,
        t.elapsed().as_secs_f64()
    );

    println!(
        "\nbench-prune: {} expired runs, {engine}, a trigger every {} ms\n",
        args.runs, args.trigger_ms
    );
    println!("| phase | seconds | rows/s | triggers | trigger p50 ms | trigger p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (idle, _) = triggers(
        &store,
        &new,
        every,
        tokio::time::sleep(Duration::from_secs(args.idle_s)),
    )
    .await?;
    let idle = row("idle", 0, None, idle);

    let started = Instant::now();
    let config = Arc::new(config);
    let pruning = config.clone();
    let prune = async move {
        let config = pruning;
        let mut total = 0;
        loop {
            let n = antcode_scheduler::pruner::prune(&config).await?.runs;
            total += n;
            if n == 0 {
                return anyhow::Ok(total);
            }
        }
    };
    let (lat, pruned) = triggers(&store, &new, every, prune).await?;
    let secs = started.elapsed().as_secs_f64();
    let pruned = pruned? as usize;
    anyhow::ensure!(
        pruned == args.runs,
        "the pruner deleted {pruned} of {} runs",
        args.runs
    );
    let pruner = row("pruner (batches of 200)", pruned, Some(secs), lat);

    seed(&url, &task, args.runs).await?;
    let cutoff = now_ms() - 30 * 86_400_000;
    let started = Instant::now();
    let peer_url = url.clone();
    let naive = async move {
        let url = peer_url;
        sqlx::any::install_default_drivers();
        let mut con = sqlx::AnyConnection::connect(&url).await?;
        let history =
            "DELETE FROM run_history WHERE run_id IN (SELECT id FROM runs WHERE closed_at < "
                .to_string()
                + &cutoff.to_string()
                + ")";
        sqlx::query(&history).execute(&mut con).await?;
        let done = sqlx::query(&format!("DELETE FROM runs WHERE closed_at < {cutoff}"))
            .execute(&mut con)
            .await?;
        anyhow::Ok(done.rows_affected() as usize)
    };
    let (lat, deleted) = triggers(&store, &new, every, naive).await?;
    let secs = started.elapsed().as_secs_f64();
    let peer = row("peer: one DELETE statement", deleted?, Some(secs), lat);
    println!();
    results::write(
        &flags,
        vec![idle, pruner],
        peer,
        json!({"engine": engine, "runs": args.runs, "trigger_ms": args.trigger_ms,
               "batch": antcode_scheduler::pruner::BATCH,
               "pause_ms": antcode_scheduler::pruner::PAUSE.as_millis() as u64}),
    )
}
