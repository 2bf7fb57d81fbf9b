//! The schedule plane against real SQLite and the in-process broker.
//!
//! Time comes from a `ManualClock` the tests advance (due times, misfires, lost leases, backoff,
//! queue timeouts): only the test of two live schedulers runs on the wall clock, because leader
//! election is what it tests.
//!
//! Past 800 lines: the scheduler's scenarios share one harness of store, broker and clock;
//! the alert loop's and the pruner's are in `alerts.rs`.

use std::sync::Arc;
use std::time::Duration;

use antcode_core::broker::{memory::MemoryBroker, Broker, LeaseRequest};
use antcode_core::model::*;
use antcode_core::store::{sql::SqlStore, FinishApplied, Fire, NewRun, RunFilter, Store};
use antcode_core::time::{now_ms, Clock, ManualClock, SystemClock};
use antcode_core::Shutdown;
use antcode_scheduler::compensation::Compensator;
use antcode_scheduler::{recorder, tick, SchedulerConfig};

mod alerts;

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: ManualClock,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&url).await.unwrap());
    World {
        _dir: dir,
        store,
        broker: Arc::new(MemoryBroker::new()),
        clock: ManualClock::new(now_ms()),
    }
}

impl World {
    /// A scheduler on the world's manual clock.
    fn config(&self, name: &str) -> SchedulerConfig {
        let mut c = SchedulerConfig::new(self.store.clone(), self.broker.clone());
        c.instance_id = name.into();
        c.tick_interval = Duration::from_millis(100);
        c.leader_ttl = Duration::from_millis(600);
        c.lost_after = Duration::from_secs(30);
        c.clock = Arc::new(self.clock.clone());
        c
    }

    /// A scheduler on the wall clock, for tests of live leader election.
    fn live_config(&self, name: &str) -> SchedulerConfig {
        SchedulerConfig {
            clock: Arc::new(SystemClock),
            ..self.config(name)
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Moves the clock forward by `ms` and returns the new time.
    fn advance(&self, ms: i64) -> i64 {
        self.clock.advance_ms(ms)
    }

    async fn task(
        &self,
        name: &str,
        schedule: Option<Schedule>,
        next_fire_at: Option<i64>,
        spec: TaskSpec,
    ) -> Task {
        let now = self.now();
        let (project, version) = antcode_testkit::fixtures::project(&format!("p-{name}"), now);
        self.store.create_project(&project, &version).await.unwrap();
        let task = Task {
            id: antcode_core::ids::new_id(),
            name: name.into(),
            project_id: project.id,
            spec,
            schedule,
            paused: false,
            next_fire_at,
            created_at: now,
            updated_at: now,
        };
        self.store.create_task(&task).await.unwrap();
        task
    }

    async fn runs_of(&self, task: &Task) -> Vec<Run> {
        let filter = RunFilter {
            task_id: Some(task.id.clone()),
            ..Default::default()
        };
        self.store
            .list_runs(&filter, 500, None)
            .await
            .unwrap()
            .items
    }

    async fn counts(&self, tasks: &[Task]) -> Vec<usize> {
        let mut out = vec![];
        for t in tasks {
            out.push(self.runs_of(t).await.len());
        }
        out
    }

    async fn manual_run(&self, task: &Task) -> (Run, Job) {
        let version = self.store.version(&task.project_id, 1).await.unwrap();
        let new = NewRun::new(task.clone(), version, "manual");
        self.store.create_run(&new).await.unwrap()
    }
}

fn lease_req(ttl: Duration) -> LeaseRequest {
    LeaseRequest {
        worker_id: "w1".into(),
        queues: vec!["default".into()],
        labels: Default::default(),
        max: 10,
        ttl,
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn two_schedulers_fire_each_due_time_once() {
    let w = world().await;
    let every = Schedule::Interval {
        every_s: 1,
        start: None,
        end: None,
    };
    let task = w
        .task(
            "every-second",
            Some(every),
            Some(now_ms()),
            TaskSpec::default(),
        )
        .await;
    let shutdown = Shutdown::new();
    let a = tokio::spawn(antcode_scheduler::run(w.live_config("a"), shutdown.clone()));
    let b = tokio::spawn(antcode_scheduler::run(w.live_config("b"), shutdown.clone()));
    eventually("three fires", || async {
        w.runs_of(&task).await.len() >= 3
    })
    .await;
    shutdown.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    let runs = w.runs_of(&task).await;
    let mut due: Vec<i64> = runs
        .iter()
        .map(|r| r.due_at.expect("scheduled runs carry due_at"))
        .collect();
    let n = due.len();
    due.sort();
    due.dedup();
    assert_eq!(due.len(), n, "a due time fired twice: {due:?}");
    for pair in due.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "fires are one interval apart: {due:?}"
        );
    }
}

#[tokio::test]
async fn misfire_policies() {
    let w = world().await;
    let every = Schedule::Interval {
        every_s: 60,
        start: None,
        end: None,
    };
    let first_due = w.now();
    let mut tasks = vec![];
    for policy in ["skip", "fire_once", "catch_up"] {
        let spec = TaskSpec {
            misfire: policy.into(),
            ..Default::default()
        };
        tasks.push(
            w.task(policy, Some(every.clone()), Some(first_due), spec)
                .await,
        );
    }
    // The scheduler was down for ten due times (the last one 59 s ago).
    w.advance(10 * 60_000 - 1_000);
    let config = w.config("solo");
    tick::fire_due(&config, 1).await;
    assert_eq!(w.counts(&tasks).await, vec![0, 1, 10]);
    for t in &tasks {
        let t = w.store.task(&t.id).await.unwrap();
        assert!(
            t.next_fire_at.unwrap() > w.now(),
            "{} advanced past now",
            t.name
        );
    }
    // Firing again right away fires nothing new.
    tick::fire_due(&config, 1).await;
    assert_eq!(w.counts(&tasks).await, vec![0, 1, 10]);
}

/// An interval with a start and an end fires on its grid from the start and never after the end.
#[tokio::test]
async fn an_interval_fires_between_its_start_and_end() {
    let w = world().await;
    let start = w.now() + 30_000;
    let end = start + 120_000;
    let every = Schedule::Interval {
        every_s: 60,
        start: Some(antcode_core::time::to_rfc3339(start)),
        end: Some(antcode_core::time::to_rfc3339(end)),
    };
    let first = antcode_core::schedule::next_after(&every, w.now(), w.now())
        .unwrap()
        .unwrap();
    assert_eq!(first, start, "nothing before the start");
    let task = w
        .task("bounded", Some(every), Some(first), TaskSpec::default())
        .await;
    let config = w.config("solo");
    tick::fire_due(&config, 1).await;
    assert!(w.runs_of(&task).await.is_empty(), "not yet at the start");
    for step in [30_000, 60_000, 60_000, 60_000, 600_000] {
        w.advance(step);
        tick::fire_due(&config, 1).await;
    }
    let mut due: Vec<i64> = w
        .runs_of(&task)
        .await
        .iter()
        .filter_map(|r| r.due_at)
        .collect();
    due.sort();
    assert_eq!(due, [start, start + 60_000, end]);
    assert_eq!(w.store.task(&task.id).await.unwrap().next_fire_at, None);

    // A pending fire that an edit left after the end is dropped, not fired.
    let mut t = w.store.task(&task.id).await.unwrap();
    t.next_fire_at = Some(end + 60_000);
    w.store.update_task(&t).await.unwrap();
    tick::fire_due(&config, 1).await;
    assert_eq!(w.runs_of(&task).await.len(), 3);
    assert_eq!(w.store.task(&task.id).await.unwrap().next_fire_at, None);
}

#[tokio::test]
async fn a_once_schedule_fires_once_and_overlap_skip_holds_back() {
    let w = world().await;
    let once = Schedule::Once {
        at: antcode_core::time::to_rfc3339(w.now() - 100),
    };
    let task = w
        .task("once", Some(once), Some(w.now() - 100), TaskSpec::default())
        .await;
    let config = w.config("solo");
    tick::fire_due(&config, 1).await;
    tick::fire_due(&config, 1).await;
    assert_eq!(w.runs_of(&task).await.len(), 1);
    assert_eq!(w.store.task(&task.id).await.unwrap().next_fire_at, None);

    let spec = TaskSpec {
        overlap: "skip".into(),
        ..Default::default()
    };
    let every = Schedule::Interval {
        every_s: 1,
        start: None,
        end: None,
    };
    let task = w.task("no-overlap", Some(every), Some(w.now()), spec).await;
    tick::fire_due(&config, 1).await;
    assert_eq!(w.runs_of(&task).await.len(), 1);
    w.advance(1_000);
    tick::fire_due(&config, 1).await;
    assert_eq!(
        w.runs_of(&task).await.len(),
        1,
        "the first run is still queued: the next fire is skipped"
    );
}

#[tokio::test]
async fn recorder_applies_fenced_reports_only() {
    let w = world().await;
    let task = w.task("fenced", None, None, TaskSpec::default()).await;
    let (run, job) = w.manual_run(&task).await;
    w.broker.publish(&job).await.unwrap();
    let lease = w
        .broker
        .lease(&lease_req(Duration::from_secs(30)), Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    let config = w.config("rec");
    let ev = |kind, token: &str| RunEvent {
        trace: None,
        run_id: run.id.clone(),
        attempt: 1,
        lease_token: token.into(),
        worker_id: "w1".into(),
        at_ms: now_ms(),
        kind,
    };
    recorder::apply(&config, &ev(RunEventKind::Started, &lease.lease_token))
        .await
        .unwrap();
    assert_eq!(w.store.run(&run.id).await.unwrap().state, RunState::Running);

    let outcome = Outcome {
        state: RunState::Succeeded,
        exit_code: Some(0),
        signal: None,
        error: None,
        duration_ms: 5,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    };
    // A zombie's report with another token changes nothing.
    recorder::apply(
        &config,
        &ev(RunEventKind::Finished(outcome.clone()), "lt_zombie"),
    )
    .await
    .unwrap();
    assert_eq!(w.store.run(&run.id).await.unwrap().state, RunState::Running);
    recorder::apply(
        &config,
        &ev(RunEventKind::Finished(outcome), &lease.lease_token),
    )
    .await
    .unwrap();
    let done = w.store.run(&run.id).await.unwrap();
    assert_eq!(done.state, RunState::Succeeded);
    assert_eq!(done.exit_code, Some(0));
}

/// Retry and backoff through compensation on a manual clock: a worker dies holding attempt 1,
/// its lease expires, the attempt is lost, and attempt 2 is published only once its jittered
/// backoff has passed on the clock.
#[tokio::test]
async fn an_expired_lease_is_lost_then_retried_after_its_backoff() {
    let w = world().await;
    let retry = RetryPolicy {
        max_attempts: 2,
        backoff_s: 10,
        max_backoff_s: 60,
    };
    let spec = TaskSpec {
        retry: retry.clone(),
        ..Default::default()
    };
    let task = w.task("flaky-worker", None, None, spec).await;
    let (run, job) = w.manual_run(&task).await;
    w.broker.publish(&job).await.unwrap();
    let config = w.config("s");
    let mut comp = Compensator::new(&config);

    // A worker leases with a 20 s ttl, reports started, then dies (no heartbeats).
    let lease = w
        .broker
        .lease(&lease_req(Duration::from_secs(20)), Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    let started = RunEvent {
        trace: None,
        run_id: run.id.clone(),
        attempt: 1,
        lease_token: lease.lease_token.clone(),
        worker_id: "w1".into(),
        at_ms: w.now(),
        kind: RunEventKind::Started,
    };
    recorder::apply(&config, &started).await.unwrap();
    comp.pass().await;
    assert_eq!(
        w.store.run(&run.id).await.unwrap().state,
        RunState::Running,
        "the lease is alive"
    );

    // Past the lease's deadline: attempt 1 is lost and the run is queued as attempt 2 ...
    let lost_at = w.advance(21_000);
    comp.pass().await;
    let requeued = w.store.run(&run.id).await.unwrap();
    assert_eq!((requeued.state, requeued.attempt), (RunState::Queued, 2));
    let history = w.store.run_history(&run.id).await.unwrap();
    assert!(
        history.iter().any(|h| h.kind == "lost" && h.attempt == 1),
        "{history:?}"
    );
    // ... but not published before its backoff (10 s, less at most a fifth of jitter) ...
    let leasable = || async {
        w.broker
            .lease(&lease_req(Duration::from_secs(30)), Duration::ZERO)
            .await
            .unwrap()
    };
    w.clock.set_ms(lost_at + retry.backoff_ms(2) * 4 / 5 - 1);
    comp.pass().await;
    assert!(leasable().await.is_empty(), "published before its backoff");
    // ... and published once it has passed.
    w.clock.set_ms(lost_at + retry.backoff_ms(2));
    comp.pass().await;
    let again = leasable().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job.attempt, 2);
    let notes = w.store.run_history(&run.id).await.unwrap();
    assert!(
        notes
            .iter()
            .any(|h| h.kind == "published" && h.attempt == 2),
        "the republish is visible on the run: {notes:?}"
    );
}

#[tokio::test]
async fn compensation_sweeps_a_backlog_larger_than_a_pass() {
    // 1,500 queued runs the broker lost (a Redis flush): a pass checks 1,000 of them, the next
    // pass the rest, and the one after starts again from the first (all held by then).
    let w = world().await;
    let task = w.task("backlog", None, None, TaskSpec::default()).await;
    let version = w.store.version(&task.project_id, 1).await.unwrap();
    let fires: Vec<Fire> = (0..1_500)
        .map(|due| Fire {
            run: NewRun {
                due_at: Some(due),
                ..NewRun::new(task.clone(), version.clone(), "schedule")
            },
            held: false,
        })
        .collect();
    w.store
        .fire_schedules(&fires, &[], "backlog-test", 1, w.now())
        .await
        .unwrap();
    let config = w.config("s");
    let mut comp = Compensator::new(&config);
    let mut req = lease_req(Duration::from_secs(60));
    req.max = 2_000;
    let mut published = vec![];
    for expected in [1_000, 500, 0] {
        comp.pass().await;
        let leased = w.broker.lease(&req, Duration::ZERO).await.unwrap();
        assert_eq!(leased.len(), expected);
        // Back in the broker as leased: not missing, and not leasable again.
        published.extend(leased.into_iter().map(|l| l.job.run_id));
    }
    published.sort();
    published.dedup();
    assert_eq!(published.len(), 1_500, "every queued run published once");
}

#[tokio::test]
async fn a_deposed_leader_cannot_fire() {
    let w = world().await;
    let every = Schedule::Interval {
        every_s: 60,
        start: None,
        end: None,
    };
    let task = w
        .task(
            "fenced-fire",
            Some(every),
            Some(w.now()),
            TaskSpec::default(),
        )
        .await;
    let config = w.config("new-leader");
    tick::fire_due(&config, 10).await;
    assert_eq!(w.runs_of(&task).await.len(), 1);
    // The old leader (token 9) wakes up late with a due time of its own: refused at the SQL write.
    w.advance(60_000);
    let pending = w.store.task(&task.id).await.unwrap().next_fire_at;
    tick::fire_due(&config, 9).await;
    assert_eq!(
        w.runs_of(&task).await.len(),
        1,
        "the deposed leader's fire was refused"
    );
    assert_eq!(
        w.store.task(&task.id).await.unwrap().next_fire_at,
        pending,
        "and it moved no next fire time"
    );
    tick::fire_due(&config, 10).await;
    assert_eq!(
        w.runs_of(&task).await.len(),
        2,
        "the current leader fires it"
    );
}

#[tokio::test]
async fn overlap_queue_one_holds_then_releases_and_cancel_previous_cancels() {
    let w = world().await;
    let spec = TaskSpec {
        overlap: "queue_one".into(),
        ..Default::default()
    };
    let task = w
        .task(
            "queue-one",
            Some(Schedule::Interval {
                every_s: 1,
                start: None,
                end: None,
            }),
            Some(w.now()),
            spec,
        )
        .await;
    let config = w.config("solo");
    // The next one-second due time comes.
    let refire = || async {
        w.advance(1_000);
        tick::fire_due(&config, 1).await;
    };
    tick::fire_due(&config, 1).await;
    let first = w
        .broker
        .lease(&lease_req(Duration::from_secs(30)), Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    w.store
        .mark_started(&first.job.run_id, 1, &first.lease_token, "w1", now_ms())
        .await
        .unwrap();
    refire().await; // held behind the running one
    refire().await; // one is already waiting: skipped
    assert_eq!(w.runs_of(&task).await.len(), 2);
    assert_eq!(w.store.held_runs(10).await.unwrap().len(), 1);
    let mut comp = Compensator::new(&config);
    comp.pass().await;
    assert!(
        w.broker
            .lease(&lease_req(Duration::from_secs(30)), Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "held while the first runs"
    );
    let outcome = Outcome {
        exit_code: Some(0),
        ..Outcome::bare(RunState::Succeeded, 1)
    };
    w.store
        .finish_attempt(
            &first.job.run_id,
            1,
            Some(&first.lease_token),
            &outcome,
            now_ms(),
        )
        .await
        .unwrap();
    comp.pass().await; // released
    comp.pass().await; // published
    let second = w
        .broker
        .lease(&lease_req(Duration::from_secs(30)), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "released after the first finished");

    let spec = TaskSpec {
        overlap: "cancel_previous".into(),
        ..Default::default()
    };
    let task = w
        .task(
            "cancel-prev",
            Some(Schedule::Interval {
                every_s: 1,
                start: None,
                end: None,
            }),
            Some(w.now()),
            spec,
        )
        .await;
    tick::fire_due(&config, 1).await;
    refire().await;
    let runs = w.runs_of(&task).await;
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs.iter()
            .filter(|r| r.state == RunState::Cancelled)
            .count(),
        1,
        "{runs:?}"
    );
}

#[tokio::test]
async fn a_run_not_started_within_its_queue_timeout_expires() {
    let w = world().await;
    let spec = TaskSpec {
        queue_timeout_s: 1,
        retry: RetryPolicy {
            max_attempts: 3,
            backoff_s: 0,
            max_backoff_s: 0,
        },
        ..Default::default()
    };
    let task = w.task("expiring", None, None, spec).await;
    let (run, job) = w.manual_run(&task).await;
    w.broker.publish(&job).await.unwrap();
    let config = w.config("s");
    let mut comp = Compensator::new(&config);
    comp.pass().await;
    assert_eq!(
        w.store.run(&run.id).await.unwrap().state,
        RunState::Queued,
        "within its queue timeout"
    );
    w.advance(2_000);
    comp.pass().await;
    let r = w.store.run(&run.id).await.unwrap();
    assert_eq!(r.state, RunState::Failed);
    assert_eq!(r.attempt, 1, "an expired run is not retried");
    assert!(r.error.unwrap().contains("expired"));
    assert!(
        w.broker
            .lease(&lease_req(Duration::from_secs(30)), Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "its job was withdrawn"
    );
}

/// Every misfire policy against every overlap policy, through `tick::fire_due`: a task whose
/// previous run is still RUNNING missed ten one-minute due times.
#[tokio::test]
async fn misfire_by_overlap_matrix() {
    // (misfire, overlap, runs created, of them still active afterwards)
    let table: [(&str, &str, usize, usize); 12] = [
        ("skip", "allow", 0, 0),
        ("skip", "skip", 0, 0),
        ("skip", "queue_one", 0, 0),
        ("skip", "cancel_previous", 0, 0),
        ("fire_once", "allow", 1, 1),
        ("fire_once", "skip", 0, 0),
        ("fire_once", "queue_one", 1, 1),
        ("fire_once", "cancel_previous", 1, 1),
        ("catch_up", "allow", 10, 10),
        ("catch_up", "skip", 0, 0),
        // One waits behind the running run; the other nine find it waiting and are skipped.
        ("catch_up", "queue_one", 1, 1),
        // Each fire cancels the one before: only the newest is left.
        ("catch_up", "cancel_previous", 10, 1),
    ];
    for (misfire, overlap, created, active) in table {
        let w = world().await;
        let spec = TaskSpec {
            misfire: misfire.into(),
            overlap: overlap.into(),
            ..Default::default()
        };
        let task = w
            .task(
                "matrix",
                Some(Schedule::Interval {
                    every_s: 60,
                    start: None,
                    end: None,
                }),
                Some(w.now()),
                spec,
            )
            .await;
        let (previous, job) = w.manual_run(&task).await;
        w.broker.publish(&job).await.unwrap();
        let lease = w
            .broker
            .lease(&lease_req(Duration::from_secs(30)), Duration::from_secs(1))
            .await
            .unwrap()
            .remove(0);
        w.store
            .mark_started(&previous.id, 1, &lease.lease_token, "w1", now_ms())
            .await
            .unwrap();

        // Ten due times pass while the previous run runs (the last one 59 s ago).
        w.advance(10 * 60_000 - 1_000);
        tick::fire_due(&w.config("solo"), 1).await;

        let fired: Vec<Run> = w
            .runs_of(&task)
            .await
            .into_iter()
            .filter(|r| r.id != previous.id)
            .collect();
        let cell = format!("misfire {misfire} × overlap {overlap}");
        assert_eq!(fired.len(), created, "{cell}: runs created");
        let still_active = fired.iter().filter(|r| r.state == RunState::Queued).count();
        assert_eq!(still_active, active, "{cell}: runs still queued");
        let previous = w.store.run(&previous.id).await.unwrap();
        let cancel_asked = previous.state == RunState::Cancelled || previous.cancel_requested;
        assert_eq!(
            cancel_asked,
            overlap == "cancel_previous" && created > 0,
            "{cell}: previous run cancelled: {previous:?}"
        );
        let held = w.store.held_runs(10).await.unwrap().len();
        assert_eq!(
            held,
            usize::from(overlap == "queue_one" && created > 0),
            "{cell}: held runs"
        );
        let next = w.store.task(&task.id).await.unwrap().next_fire_at.unwrap();
        assert!(next > w.now(), "{cell}: next fire moved past now");
    }
}

/// Retries and backoff, driven by the times passed to the store (no sleeping): a failed
/// attempt comes back only after its jittered exponential backoff, capped; a cancelled run is
/// never retried.
#[tokio::test]
async fn retries_wait_their_backoff_and_cancelled_runs_are_not_retried() {
    let w = world().await;
    let retry = RetryPolicy {
        max_attempts: 5,
        backoff_s: 10,
        max_backoff_s: 15,
    };
    let spec = TaskSpec {
        retry: retry.clone(),
        ..Default::default()
    };
    let task = w.task("retrying", None, None, spec).await;
    let (run, job) = w.manual_run(&task).await;
    w.broker.publish(&job).await.unwrap();
    let failed = |_at: i64| Outcome {
        state: RunState::Failed,
        exit_code: Some(1),
        signal: None,
        error: Some("boom".into()),
        duration_ms: 1,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    };
    let mut clock = now_ms();
    for attempt in 1..=3u32 {
        let lease = w
            .broker
            .lease(&lease_req(Duration::from_secs(30)), Duration::from_secs(1))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(lease.job.attempt, attempt);
        w.store
            .mark_started(&run.id, attempt, &lease.lease_token, "w1", clock)
            .await
            .unwrap();
        let applied = w
            .store
            .finish_attempt(
                &run.id,
                attempt,
                Some(&lease.lease_token),
                &failed(clock),
                clock,
            )
            .await
            .unwrap();
        assert!(matches!(applied, FinishApplied::Requeued(_)), "{attempt}");
        w.broker
            .release(&lease.job.run_id, &lease.lease_token)
            .await
            .unwrap();
        // 10 s, then 20 s capped to 15 s; jitter takes off at most a fifth.
        let base = retry.backoff_ms(attempt + 1);
        assert_eq!(base, [10_000, 15_000, 15_000][attempt as usize - 1]);
        let due = |t: i64| {
            let store = w.store.clone();
            let id = run.id.clone();
            async move {
                store
                    .due_queued_jobs(t, 100, None)
                    .await
                    .unwrap()
                    .jobs
                    .iter()
                    .any(|j| j.run_id == id)
            }
        };
        assert!(
            !due(clock + base * 4 / 5 - 1).await,
            "attempt {attempt}: too early"
        );
        assert!(
            due(clock + base).await,
            "attempt {attempt}: due after the backoff"
        );
        clock += base;
        let next = w
            .store
            .due_queued_jobs(clock, 100, None)
            .await
            .unwrap()
            .jobs
            .remove(0);
        assert_eq!(next.attempt, attempt + 1);
        w.broker.publish(&next).await.unwrap();
    }
    // Attempt 4 is cancelled while it runs: it ends cancelled, though attempt 5 was allowed.
    let lease = w
        .broker
        .lease(&lease_req(Duration::from_secs(30)), Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    w.store
        .mark_started(&run.id, 4, &lease.lease_token, "w1", clock)
        .await
        .unwrap();
    w.store.request_cancel(&run.id, clock).await.unwrap();
    let cancelled = Outcome {
        state: RunState::Cancelled,
        ..failed(clock)
    };
    let applied = w
        .store
        .finish_attempt(&run.id, 4, Some(&lease.lease_token), &cancelled, clock)
        .await
        .unwrap();
    assert!(matches!(applied, FinishApplied::Terminal(_)));
    assert_eq!(
        w.store.run(&run.id).await.unwrap().state,
        RunState::Cancelled
    );
    assert!(w
        .store
        .due_queued_jobs(clock + 3_600_000, 100, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
}

/// More due tasks than one batch: a pass reads the next batch while it writes the current one,
/// and still fires every task exactly once for its due time, then nothing is due.
#[tokio::test]
async fn a_pass_of_several_batches_fires_every_due_task_once() {
    let w = world().await;
    let due = w.now();
    let every = Schedule::Interval {
        every_s: 60,
        start: None,
        end: None,
    };
    let first = w
        .task("many-0", Some(every), Some(due), TaskSpec::default())
        .await;
    let count = tick::FIRE_BATCH as usize * 2 + 500;
    let mut ids = std::collections::HashSet::from([first.id.clone()]);
    for i in 1..count {
        let task = Task {
            id: antcode_core::ids::new_id(),
            name: format!("many-{i}"),
            ..first.clone()
        };
        w.store.create_task(&task).await.unwrap();
        ids.insert(task.id);
    }
    w.advance(1_000);
    tick::fire_due(&w.config("solo"), 1).await;

    let mut fired = std::collections::HashMap::<String, Vec<Option<i64>>>::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = w
            .store
            .list_runs(&RunFilter::default(), 1000, cursor.as_deref())
            .await
            .unwrap();
        for run in page.items {
            fired.entry(run.task_id).or_default().push(run.due_at);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(fired.len(), count, "every task fired");
    assert!(fired.keys().all(|id| ids.contains(id)));
    assert!(
        fired.values().all(|dues| dues == &[Some(due)]),
        "each task once, for its due time"
    );
    assert!(w
        .store
        .due_tasks(w.now(), 10, None)
        .await
        .unwrap()
        .is_empty());
    // Nothing is due again until the next minute.
    tick::fire_due(&w.config("solo"), 1).await;
    let all = w
        .store
        .list_runs(&RunFilter::default(), 5000, None)
        .await
        .unwrap();
    assert_eq!(all.items.len(), count);
}
