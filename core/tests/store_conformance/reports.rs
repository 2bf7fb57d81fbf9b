//! Runner reports on runs: fenced starts and ends, retries, interruptions, cancels, races
//! and batches.

use super::*;

async fn fenced_start_and_finish(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &f).await;
    assert_not_found(
        s.mark_started(&new_id(), 1, "tok", "w1", 1).await,
        "start unknown run",
    );

    let t0 = now_ms();
    assert_stale(
        s.mark_started(&run.id, 2, "tok-a", "w1", t0).await,
        "start of a future attempt",
    );
    let started = s.mark_started(&run.id, 1, "tok-a", "w1", t0).await.unwrap();
    assert_eq!(started.state, RunState::Running);
    assert_eq!(started.worker_id.as_deref(), Some("w1"));
    assert_eq!(started.lease_token.as_deref(), Some("tok-a"));
    assert_eq!(started.started_at, Some(t0));
    // The same report twice is harmless; another lease's start is stale and changes nothing.
    let repeat = s
        .mark_started(&run.id, 1, "tok-a", "w1", t0 + 5)
        .await
        .unwrap();
    assert_eq!(snapshot(&repeat), snapshot(&started));
    assert_stale(
        s.mark_started(&run.id, 1, "tok-b", "w2", t0 + 6).await,
        "start with another token",
    );
    assert_eq!(snapshot(&s.run(&run.id).await.unwrap()), snapshot(&started));
    assert_eq!(s.running_runs(10).await.unwrap().len(), 1);

    let done = outcome(RunState::Succeeded);
    assert_stale(
        s.finish_attempt(&run.id, 1, Some("tok-b"), &done, t0 + 10)
            .await,
        "finish with a wrong token",
    );
    assert_stale(
        s.finish_attempt(&run.id, 2, Some("tok-a"), &done, t0 + 10)
            .await,
        "finish with a wrong attempt",
    );
    assert_eq!(
        snapshot(&s.run(&run.id).await.unwrap()),
        snapshot(&started),
        "stale reports changed nothing"
    );
    assert_not_found(
        s.finish_attempt(&new_id(), 1, Some("tok-a"), &done, t0)
            .await,
        "finish unknown run",
    );

    let applied = s
        .finish_attempt(&run.id, 1, Some("tok-a"), &done, t0 + 20)
        .await
        .unwrap();
    let FinishApplied::Terminal(fin) = applied else {
        panic!("success must be terminal: {applied:?}");
    };
    assert_eq!(fin.state, RunState::Succeeded);
    assert_eq!(fin.exit_code, Some(0));
    assert_eq!(fin.signal, None);
    assert_eq!(fin.error, None);
    assert_eq!(fin.duration_ms, Some(1500));
    assert_eq!(fin.peak_rss_kb, Some(20480));
    assert_eq!(fin.log_key.as_deref(), Some("logs/run.log.gz"));
    assert_eq!(
        fin.result,
        Some(serde_json::json!({"rows": 42, "ok": true}))
    );
    assert_eq!(fin.finished_at, Some(t0 + 20));
    assert_eq!(s.run(&run.id).await.unwrap().state, RunState::Succeeded);
    // A terminal run takes no more reports, not even from its own lease.
    assert_stale(
        s.finish_attempt(
            &run.id,
            1,
            Some("tok-a"),
            &outcome(RunState::Failed),
            t0 + 30,
        )
        .await,
        "report after terminal",
    );
    assert_stale(
        s.mark_started(&run.id, 1, "tok-a", "w1", t0 + 30).await,
        "start after terminal",
    );
    assert_eq!(s.run(&run.id).await.unwrap().state, RunState::Succeeded);
    assert!(s.running_runs(10).await.unwrap().is_empty());

    let kinds: Vec<_> = s
        .run_history(&run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.kind)
        .collect();
    assert_eq!(kinds, ["queued", "running", "succeeded"]);
}

async fn signal_and_lost_without_token(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &f).await;
    s.mark_started(&run.id, 1, "tok", "w1", 10).await.unwrap();
    // Compensation reports a lost lease without knowing the token.
    let lost = Outcome {
        state: RunState::Lost,
        exit_code: None,
        signal: Some(9),
        error: None,
        duration_ms: 0,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    };
    let FinishApplied::Terminal(fin) = s.finish_attempt(&run.id, 1, None, &lost, 20).await.unwrap()
    else {
        panic!("no attempts left: terminal");
    };
    assert_eq!(fin.state, RunState::Lost);
    assert_eq!(
        (fin.exit_code, fin.signal, fin.error.as_deref(), fin.result),
        (None, Some(9), None, None)
    );
    assert_eq!((fin.peak_rss_kb, fin.log_key.as_deref()), (None, None));
}

async fn retry_requeues_after_backoff(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(3)).await;
    let run = manual_run(s.as_ref(), &f).await;
    let t0 = now_ms();
    s.mark_started(&run.id, 1, "tok-1", "w1", t0).await.unwrap();
    let applied = s
        .finish_attempt(
            &run.id,
            1,
            Some("tok-1"),
            &outcome(RunState::Failed),
            t0 + 100,
        )
        .await
        .unwrap();
    let FinishApplied::Requeued(r) = applied else {
        panic!("a failure with attempts left is requeued: {applied:?}");
    };
    assert_eq!((r.state, r.attempt), (RunState::Queued, 2));
    assert_eq!(
        (
            r.lease_token.as_deref(),
            r.worker_id.as_deref(),
            r.started_at
        ),
        (None, None, None)
    );
    let not_before = r.not_before.expect("backoff sets not_before");
    assert!(
        not_before > t0 + 100,
        "not_before {not_before} is after the failure"
    );
    // Backoff is jittered down by at most a fifth, never past the computed delay.
    let waited = not_before - (t0 + 100);
    assert!(
        (24_000..=30_000).contains(&waited),
        "first retry waits about backoff_s: {waited}"
    );

    let due_ids = |jobs: Vec<Job>| {
        jobs.into_iter()
            .map(|j| (j.run_id, j.attempt))
            .collect::<Vec<_>>()
    };
    assert!(due_ids(s.due_queued_jobs(t0 + 100, 10, None).await.unwrap().jobs).is_empty());
    assert!(due_ids(
        s.due_queued_jobs(not_before - 1, 10, None)
            .await
            .unwrap()
            .jobs
    )
    .is_empty());
    assert_eq!(
        due_ids(s.due_queued_jobs(not_before, 10, None).await.unwrap().jobs),
        [(run.id.clone(), 2)]
    );

    // The zombie of attempt 1 can neither start nor finish the re-queued run.
    assert_stale(
        s.mark_started(&run.id, 1, "tok-1", "w1", t0 + 200).await,
        "old attempt start",
    );
    assert_stale(
        s.finish_attempt(
            &run.id,
            1,
            Some("tok-1"),
            &outcome(RunState::Succeeded),
            t0 + 200,
        )
        .await,
        "old attempt finish",
    );
    assert_eq!(snapshot(&s.run(&run.id).await.unwrap()), snapshot(&r));

    s.mark_started(&run.id, 2, "tok-2", "w2", not_before)
        .await
        .unwrap();
    let FinishApplied::Requeued(r3) = s
        .finish_attempt(
            &run.id,
            2,
            Some("tok-2"),
            &outcome(RunState::TimedOut),
            not_before + 10,
        )
        .await
        .unwrap()
    else {
        panic!("second failure with one attempt left is requeued");
    };
    assert_eq!(r3.attempt, 3);
    let waited = r3.not_before.unwrap() - (not_before + 10);
    assert!(
        (48_000..=60_000).contains(&waited),
        "backoff doubles: {waited}"
    );
    let at = r3.not_before.unwrap();
    s.mark_started(&run.id, 3, "tok-3", "w1", at).await.unwrap();
    let FinishApplied::Terminal(last) = s
        .finish_attempt(
            &run.id,
            3,
            Some("tok-3"),
            &outcome(RunState::Failed),
            at + 10,
        )
        .await
        .unwrap()
    else {
        panic!("the last attempt's failure is terminal");
    };
    assert_eq!((last.state, last.attempt), (RunState::Failed, 3));
    assert_eq!(last.error.as_deref(), Some("attempt ended failed"));
    assert!(s
        .due_queued_jobs(i64::MAX / 2, 10, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
    let attempts: Vec<_> = s
        .run_history(&run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.attempt, h.kind))
        .collect();
    let kinds = |a: u32, k: &str| (a, k.to_string());
    assert_eq!(
        attempts,
        [
            kinds(1, "queued"),
            kinds(1, "running"),
            kinds(1, "failed"),
            kinds(2, "running"),
            kinds(2, "timed_out"),
            kinds(3, "running"),
            kinds(3, "failed"),
        ]
    );
}

async fn cancel_is_never_requeued(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(5)).await;

    // Queued: cancelled at once, no longer due, cannot start.
    let queued = manual_run(s.as_ref(), &f).await;
    let c = s.request_cancel(&queued.id, 50).await.unwrap();
    assert_eq!(c.state, RunState::Cancelled);
    assert!(c.cancel_requested);
    assert_eq!(c.finished_at, Some(50));
    assert!(s
        .due_queued_jobs(i64::MAX / 2, 10, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
    assert_stale(
        s.mark_started(&queued.id, 1, "tok", "w1", 60).await,
        "start a cancelled run",
    );
    assert_stale(
        s.finish_attempt(&queued.id, 1, None, &outcome(RunState::Failed), 60)
            .await,
        "finish a cancelled run",
    );
    assert_eq!(s.run(&queued.id).await.unwrap().state, RunState::Cancelled);
    assert_not_found(s.request_cancel(&new_id(), 1).await, "cancel unknown run");

    // Running: flagged; a retryable failure afterwards ends it instead of requeueing.
    let running = manual_run(s.as_ref(), &f).await;
    s.mark_started(&running.id, 1, "tok", "w1", 70)
        .await
        .unwrap();
    let c = s.request_cancel(&running.id, 80).await.unwrap();
    assert_eq!((c.state, c.cancel_requested), (RunState::Running, true));
    let applied = s
        .finish_attempt(&running.id, 1, Some("tok"), &outcome(RunState::Failed), 90)
        .await
        .unwrap();
    let FinishApplied::Terminal(t) = applied else {
        panic!("a cancel-requested run is never requeued: {applied:?}");
    };
    assert_eq!((t.state, t.attempt), (RunState::Failed, 1));

    // The runner reporting the cancellation itself: terminal even with attempts left.
    let other = manual_run(s.as_ref(), &f).await;
    s.mark_started(&other.id, 1, "tok", "w1", 70).await.unwrap();
    let applied = s
        .finish_attempt(&other.id, 1, Some("tok"), &outcome(RunState::Cancelled), 90)
        .await
        .unwrap();
    assert!(
        matches!(&applied, FinishApplied::Terminal(r) if r.state == RunState::Cancelled && r.attempt == 1),
        "{applied:?}"
    );
    assert!(s
        .due_queued_jobs(i64::MAX / 2, 10, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
}

/// An attempt its runner's shutdown interrupted: fenced like a finish, queued again at once as
/// the next attempt with one more allowed (no retry used up), cancelled if a cancel is pending.
async fn interrupted_attempt_is_queued_again_without_using_a_retry(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let interrupted = |run: &Run, attempt, token: &str, at_ms| {
        let mut o = outcome(RunState::Queued);
        o.error = Some(INTERRUPTED_BY_SHUTDOWN.into());
        o.exit_code = None;
        o.signal = Some(15);
        RunEvent {
            trace: None,
            run_id: run.id.clone(),
            attempt,
            lease_token: token.into(),
            worker_id: "w1".into(),
            at_ms,
            kind: RunEventKind::Interrupted(o),
        }
    };
    let record = |ev: RunEvent| {
        let s = s.clone();
        async move { s.record_events(&[ev]).await.remove(0) }
    };

    let run = manual_run(s.as_ref(), &f).await;
    assert_eq!(run.max_attempts, 1);
    // Not started yet: nothing to interrupt.
    assert_stale(
        record(interrupted(&run, 1, "tok-a", 20)).await,
        "interrupt a queued run",
    );
    s.mark_started(&run.id, 1, "tok-a", "w1", 10).await.unwrap();
    let before = snapshot(&s.run(&run.id).await.unwrap());
    for (attempt, token) in [(1, "tok-b"), (2, "tok-a")] {
        assert_stale(
            record(interrupted(&run, attempt, token, 20)).await,
            "interruption of another lease or attempt",
        );
    }
    assert_eq!(snapshot(&s.run(&run.id).await.unwrap()), before);

    let applied = record(interrupted(&run, 1, "tok-a", 20)).await.unwrap();
    assert_eq!(
        applied,
        Recorded::Interrupted {
            state: RunState::Queued
        }
    );
    let again = s.run(&run.id).await.unwrap();
    assert_eq!(again.state, RunState::Queued);
    assert_eq!((again.attempt, again.max_attempts), (2, 2));
    assert_eq!((again.lease_token, again.worker_id), (None, None));
    assert_eq!(again.started_at, None);
    assert_eq!(again.not_before, Some(20), "due at once, no backoff");
    assert_eq!(again.error.as_deref(), Some(INTERRUPTED_BY_SHUTDOWN));
    let history = s.run_history(&run.id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.kind.as_str(), last.attempt), ("interrupted", 1));
    assert!(last.detail.contains(INTERRUPTED_BY_SHUTDOWN), "{last:?}");
    let due = s.due_queued_jobs(20, 10, None).await.unwrap().jobs;
    assert!(
        due.iter().any(|j| j.run_id == run.id && j.attempt == 2),
        "the next attempt is due: {due:?}"
    );
    // The same report again changes nothing.
    assert_stale(record(interrupted(&run, 1, "tok-a", 30)).await, "repeat");

    // The retry budget is what it was: attempt 2 of 2 failing ends the run.
    s.mark_started(&run.id, 2, "tok-c", "w2", 40).await.unwrap();
    let applied = s
        .finish_attempt(&run.id, 2, Some("tok-c"), &outcome(RunState::Failed), 50)
        .await
        .unwrap();
    assert!(
        matches!(&applied, FinishApplied::Terminal(r) if r.state == RunState::Failed && r.attempt == 2),
        "{applied:?}"
    );

    // A run whose cancel was requested while it ran ends cancelled, not queued again.
    let run = manual_run(s.as_ref(), &f).await;
    s.mark_started(&run.id, 1, "tok-a", "w1", 10).await.unwrap();
    s.request_cancel(&run.id, 15).await.unwrap();
    let applied = record(interrupted(&run, 1, "tok-a", 20)).await.unwrap();
    assert_eq!(
        applied,
        Recorded::Interrupted {
            state: RunState::Cancelled
        }
    );
    let ended = s.run(&run.id).await.unwrap();
    assert_eq!((ended.state, ended.attempt), (RunState::Cancelled, 1));
    assert_eq!(ended.finished_at, Some(20));
}

async fn racing_starts_have_one_winner(db: &TestDb) {
    let a: Arc<dyn Store> = db.open().await;
    let b: Arc<dyn Store> = db.open().await;
    let f = fixture(a.as_ref(), retries(1)).await;
    for round in 0..8 {
        let run = manual_run(a.as_ref(), &f).await;
        let (ra, rb) = {
            let (a, b) = (a.clone(), b.clone());
            let (ia, ib) = (run.id.clone(), run.id.clone());
            let ta = tokio::spawn(async move { a.mark_started(&ia, 1, "tok-a", "wa", 1).await });
            let tb = tokio::spawn(async move { b.mark_started(&ib, 1, "tok-b", "wb", 1).await });
            (ta.await.unwrap(), tb.await.unwrap())
        };
        let winner = match (&ra, &rb) {
            (Ok(r), Err(StoreError::Stale(_))) | (Err(StoreError::Stale(_)), Ok(r)) => r.clone(),
            other => panic!("round {round}: exactly one start must win, got {other:?}"),
        };
        let stored = b.run(&run.id).await.unwrap();
        assert_eq!(stored.lease_token, winner.lease_token, "round {round}");
        assert_eq!(stored.worker_id, winner.worker_id, "round {round}");
        // The loser's report of the end is refused too.
        let loser = if winner.lease_token.as_deref() == Some("tok-a") {
            "tok-b"
        } else {
            "tok-a"
        };
        assert_stale(
            a.finish_attempt(&run.id, 1, Some(loser), &outcome(RunState::Succeeded), 2)
                .await,
            "loser finishing",
        );
    }
}

async fn cancel_racing_a_failure_is_never_requeued(db: &TestDb) {
    let a: Arc<dyn Store> = db.open().await;
    let b: Arc<dyn Store> = db.open().await;
    let f = fixture(a.as_ref(), retries(5)).await;
    for round in 0..8 {
        let run = manual_run(a.as_ref(), &f).await;
        a.mark_started(&run.id, 1, "tok", "w1", 1).await.unwrap();
        let (ia, ib) = (run.id.clone(), run.id.clone());
        let (sa, sb) = (a.clone(), b.clone());
        let fail = tokio::spawn(async move {
            sa.finish_attempt(&ia, 1, Some("tok"), &outcome(RunState::Failed), 2)
                .await
        });
        let cancel = tokio::spawn(async move { sb.request_cancel(&ib, 2).await });
        let applied = fail.await.unwrap().expect("the failure report is applied");
        cancel
            .await
            .unwrap()
            .expect("the cancel request is applied");
        let end = a.run(&run.id).await.unwrap();
        // Either the failure came first (requeued, then the cancel ended the queued run) or
        // the cancel came first (the failure is then final). Never queued or running again.
        assert!(
            end.cancel_requested && end.state.is_terminal(),
            "round {round}: {:?} after {applied:?}",
            end.state
        );
        assert!(
            a.due_queued_jobs(i64::MAX / 2, 100, None)
                .await
                .unwrap()
                .jobs
                .is_empty(),
            "round {round}: a cancelled run is due again"
        );
    }
}

async fn racing_reports_apply_once(db: &TestDb) {
    let a: Arc<dyn Store> = db.open().await;
    let b: Arc<dyn Store> = db.open().await;
    let f = fixture(a.as_ref(), retries(1)).await;
    for round in 0..8 {
        let run = manual_run(a.as_ref(), &f).await;
        a.mark_started(&run.id, 1, "tok", "w1", 1).await.unwrap();
        let (ia, ib) = (run.id.clone(), run.id.clone());
        let (sa, sb) = (a.clone(), b.clone());
        // The runner's own completion against compensation declaring the lease lost.
        let done = tokio::spawn(async move {
            sa.finish_attempt(&ia, 1, Some("tok"), &outcome(RunState::Succeeded), 2)
                .await
        });
        let lost = tokio::spawn(async move {
            sb.finish_attempt(&ib, 1, None, &outcome(RunState::Lost), 2)
                .await
        });
        let results = [done.await.unwrap(), lost.await.unwrap()];
        let applied = results.iter().filter(|r| r.is_ok()).count();
        let stale = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Stale(_))))
            .count();
        assert_eq!((applied, stale), (1, 1), "round {round}: {results:?}");
        let terminal_lines = a
            .run_history(&run.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| h.kind == "succeeded" || h.kind == "lost")
            .count();
        assert_eq!(terminal_lines, 1, "round {round}: one outcome recorded");
    }
}

/// One runner report of a batch: which scenario's run, and what it says.
#[derive(Clone, Copy)]
enum Report {
    Start(u32, &'static str),
    End(u32, &'static str, RunState),
}

/// Writes the runs of `scenarios` on `store` (each scenario's run in its set-up state), then
/// applies `order` (scenario, report) as one batch or one report at a time. Returns, per event,
/// what it applied, and per scenario the run (without its id-seeded retry time) and history.
async fn apply_reports(
    store: &dyn Store,
    f: &Fixture,
    scenarios: &[(&str, Vec<Report>)],
    order: &[(usize, usize)],
    batched: bool,
) -> (Vec<String>, Vec<String>) {
    let mut runs = vec![];
    for (setup, _) in scenarios {
        let run = manual_run(store, f).await;
        match *setup {
            "queued" => {}
            "cancelled" => drop(store.request_cancel(&run.id, 5).await.unwrap()),
            "running" => drop(
                store
                    .mark_started(&run.id, 1, "tok-a", "w1", 5)
                    .await
                    .unwrap(),
            ),
            other => panic!("unknown set-up {other}"),
        }
        runs.push(run.id);
    }
    let events: Vec<RunEvent> = order
        .iter()
        .enumerate()
        .map(|(n, &(scenario, report))| {
            let (attempt, token, kind) = match scenarios[scenario].1[report] {
                Report::Start(a, t) => (a, t, RunEventKind::Started),
                Report::End(a, t, state) => (a, t, RunEventKind::Finished(outcome(state))),
            };
            RunEvent {
                trace: None,
                run_id: runs[scenario].clone(),
                attempt,
                lease_token: token.into(),
                worker_id: "w1".into(),
                at_ms: 10 + n as i64,
                kind,
            }
        })
        .collect();
    let results = if batched {
        store.record_events(&events).await
    } else {
        let mut out = vec![];
        for ev in &events {
            out.push(
                store
                    .record_events(std::slice::from_ref(ev))
                    .await
                    .remove(0),
            );
        }
        out
    };
    let results = results
        .into_iter()
        .map(|r| match r {
            Ok(recorded) => format!("{recorded:?}"),
            Err(StoreError::Stale(_)) => "stale".into(),
            Err(e) => panic!("unexpected error {e:?}"),
        })
        .collect();
    let mut after = vec![];
    for id in &runs {
        let mut r = store.run(id).await.unwrap();
        // A retry's time is seeded by the run's id: only whether it is set compares.
        r.not_before = r.not_before.map(|_| 0);
        let kinds: Vec<_> = store
            .run_history(id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| format!("{}@{}", h.kind, h.attempt))
            .collect();
        after.push(format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{kinds:?}",
            snapshot(&r),
            r.duration_ms,
            r.peak_rss_kb,
            r.log_key,
            r.result
        ));
    }
    (results, after)
}

/// The recorder's batch writes exactly what the same reports would, one at a time: a start and
/// the end of the same attempt, which a batch may write as one, included.
async fn batched_reports_match_one_by_one(db: &TestDb) {
    use Report::{End, Start};
    use RunState::{Cancelled, Failed, Succeeded};
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(2)).await;
    let pair = |attempt, start, end, state| vec![Start(attempt, start), End(attempt, end, state)];
    let scenarios: Vec<(&str, Vec<Report>)> = vec![
        ("queued", pair(1, "tok-a", "tok-a", Succeeded)),
        ("queued", pair(1, "tok-a", "tok-a", Cancelled)),
        ("cancelled", pair(1, "tok-a", "tok-a", Cancelled)),
        ("queued", pair(1, "tok-a", "tok-a", Failed)),
        ("queued", pair(2, "tok-a", "tok-a", Succeeded)),
        (
            "queued",
            [
                vec![Start(1, "tok-a")],
                pair(1, "tok-a", "tok-a", Succeeded),
            ]
            .concat(),
        ),
        ("queued", pair(1, "tok-a", "tok-b", Succeeded)),
        ("running", pair(1, "tok-a", "tok-a", Succeeded)),
        ("running", pair(1, "tok-b", "tok-b", Succeeded)),
        (
            "queued",
            [
                pair(1, "tok-a", "tok-a", Succeeded),
                vec![End(1, "tok-a", Failed)],
            ]
            .concat(),
        ),
    ];
    // Each scenario's reports in order, interleaved with the others'.
    let mut order = vec![];
    for report in 0..3 {
        for (scenario, (_, reports)) in scenarios.iter().enumerate() {
            if report < reports.len() {
                order.push((scenario, report));
            }
        }
    }
    let one_by_one = apply_reports(s.as_ref(), &f, &scenarios, &order, false).await;
    let batched = apply_reports(s.as_ref(), &f, &scenarios, &order, true).await;
    for (n, (a, b)) in one_by_one.0.iter().zip(&batched.0).enumerate() {
        assert_eq!(a, b, "event {n} ({:?}) applied differently", order[n]);
    }
    for (n, (a, b)) in one_by_one.1.iter().zip(&batched.1).enumerate() {
        assert_eq!(a, b, "scenario {n} ends differently");
    }
    assert!(
        batched.1[0].starts_with("Succeeded|1|Some(\"tok-a\")|Some(\"w1\")|Some(0)"),
        "a start and its end in one batch: {}",
        batched.1[0]
    );
    assert!(batched.1[0].ends_with("[\"queued@1\", \"running@1\", \"succeeded@1\"]"));
}

conformance!(
    fenced_start_and_finish,
    signal_and_lost_without_token,
    retry_requeues_after_backoff,
    cancel_is_never_requeued,
    interrupted_attempt_is_queued_again_without_using_a_retry,
    racing_starts_have_one_winner,
    cancel_racing_a_failure_is_never_requeued,
    racing_reports_apply_once,
    batched_reports_match_one_by_one,
);
