//! `bench-flow`: a fan-out of N runs from one run's end, beside N triggers of the same runs.
//!
//! A parent task has `on_success: [{"task": child, "for_each": "items"}]`. Each round ends one
//! parent run (`Store::record_events` with its start and its end, the result holding N items:
//! what the recorder applies) and publishes the jobs that come back (`publish_jobs` to an
//! in-process broker, as the recorder does): the time from the call to the last job published
//! is the row. The peer, in the same round: the same N runs created the way N concurrent
//! triggers create them (`Store::create_run`, group-committed) and published the same way.
//!
//! SQLite in TMPDIR by default, or `--database-url` to an EMPTY PostgreSQL/MariaDB database.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use antcode_core::broker::memory::MemoryBroker;
use antcode_core::dispatch::publish_jobs;
use antcode_core::flow::Next;
use antcode_core::model::*;
use antcode_core::store::{sql::SqlStore, NewRun, Recorded, Store};
use antcode_core::time::now_ms;

mod results;
use results::Flags;

const USAGE: &str = "\
bench-flow: a fan-out of N runs from one run's end, beside N triggers of the same runs

Usage: bench-flow [--children 1000] [--rounds 5] [--database-url URL]
  --children N        runs the fan-out starts (at most 10000)
  --rounds N          rounds of fan-out and peer, alternated
  --database-url URL  an EMPTY PostgreSQL or MariaDB database (default: SQLite in TMPDIR)";

struct Args {
    children: usize,
    rounds: usize,
    database_url: Option<String>,
}

fn parse_args() -> (Args, Flags) {
    let mut a = Args {
        children: 1000,
        rounds: 5,
        database_url: None,
    };
    let mut flags = Flags::from_env("flow", USAGE);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--children" => a.children = flags.value::<usize>(&flag).clamp(1, 10_000),
            "--rounds" => a.rounds = flags.value::<usize>(&flag).max(1),
            "--database-url" => a.database_url = Some(flags.value(&flag)),
            other => flags.unknown(other),
        }
    }
    (a, flags)
}

fn task(project: &str, name: &str, now: i64) -> Task {
    Task {
        id: antcode_core::ids::new_id(),
        name: name.into(),
        project_id: project.into(),
        spec: TaskSpec::default(),
        schedule: None,
        paused: false,
        next_fire_at: None,
        created_at: now,
        updated_at: now,
    }
}

fn event(run: &Run, kind: RunEventKind) -> RunEvent {
    RunEvent {
        trace: None,
        run_id: run.id.clone(),
        attempt: 1,
        lease_token: "bench".into(),
        worker_id: "bench".into(),
        at_ms: now_ms(),
        kind,
    }
}

/// Ends `parent` with a result of `n` items and publishes the runs its end started: the
/// seconds it took.
async fn fan_out(
    store: &dyn Store,
    broker: &MemoryBroker,
    parent: &Run,
    n: usize,
) -> anyhow::Result<f64> {
    let mut o = Outcome::bare(RunState::Succeeded, 1);
    o.result = Some(json!({"items": (0..n).collect::<Vec<_>>()}));
    let events = [
        event(parent, RunEventKind::Started),
        event(parent, RunEventKind::Finished(o)),
    ];
    let t = Instant::now();
    let jobs = match store.record_events(&events).await.pop() {
        Some(Ok(Recorded::Finished { next, .. })) => next,
        other => anyhow::bail!("the parent's end: {other:?}"),
    };
    publish_jobs(store, broker, None, &jobs).await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(jobs.len() == n, "{} runs started of {n}", jobs.len());
    Ok(secs)
}

/// Creates `n` runs of `new` as `n` concurrent triggers would and publishes them: the seconds.
async fn triggers(
    store: &Arc<dyn Store>,
    broker: &MemoryBroker,
    new: &NewRun,
    n: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut created = tokio::task::JoinSet::new();
    for i in 0..n {
        let (store, mut new) = (store.clone(), new.clone());
        new.params = Some(json!({"item": i}));
        created.spawn(async move { store.create_run(&new).await });
    }
    let mut jobs = Vec::with_capacity(n);
    while let Some(done) = created.join_next().await {
        jobs.push(done??.1);
    }
    publish_jobs(store.as_ref(), broker, None, &jobs).await?;
    Ok(t.elapsed().as_secs_f64())
}

fn spread(mut secs: Vec<f64>) -> (f64, f64, f64) {
    secs.sort_by(f64::total_cmp);
    let ms = |s: f64| s * 1000.0;
    (
        ms(secs[0]),
        ms(secs[secs.len() / 2]),
        ms(secs[secs.len() - 1]),
    )
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
    let broker = MemoryBroker::new();

    let now = now_ms();
    let (project, version) = antcode_testkit::fixtures::project("bench", now);
    store.create_project(&project, &version).await?;
    let child = task(&project.id, "child", now);
    store.create_task(&child).await?;
    let mut parent = task(&project.id, "parent", now);
    parent.spec.on_success = vec![Next {
        task: child.id.clone(),
        for_each: Some("items".into()),
    }];
    store.create_task(&parent).await?;
    let run_of = |task: &Task| NewRun::new(task.clone(), version.clone(), "manual");

    let (mut ours, mut peer) = (vec![], vec![]);
    for _ in 0..args.rounds {
        let (run, _) = store.create_run(&run_of(&parent)).await?;
        ours.push(fan_out(store.as_ref(), &broker, &run, args.children).await?);
        peer.push(triggers(&store, &broker, &run_of(&child), args.children).await?);
    }
    let (n, rounds) = (args.children, args.rounds);
    println!("\nbench-flow: {n} runs, {engine}, {rounds} rounds\n");
    println!("| how {n} runs are created and published | min ms | median ms | max ms |");
    println!("|---|---:|---:|---:|");
    let line = |what: &str, (min, med, max): (f64, f64, f64)| {
        println!("| {what} | {min:.1} | {med:.1} | {max:.1} |");
        json!({"what": what, "engine": engine, "runs": n, "rounds": rounds,
               "min_ms": min, "median_ms": med, "max_ms": max})
    };
    let row = line("fan-out from one run's end", spread(ours));
    let peer = line(&format!("{n} concurrent triggers"), spread(peer));
    results::write(&flags, vec![row], peer, json!({"target_ms": 1000}))
}
