//! Schedules: due tasks, and the scheduler leader's fenced batches of fires.

use super::*;

fn fire(f: &Fixture, due: i64, held: bool) -> Fire {
    Fire {
        run: NewRun {
            trace: None,
            task: f.task.clone(),
            version: f.version.clone(),
            trigger: "schedule".into(),
            due_at: Some(due),
            params: None,
            overrides: None,
            key: None,
            parent: None,
        },
        held,
    }
}

async fn runs_of(s: &dyn Store, f: &Fixture) -> Vec<Run> {
    let filter = RunFilter {
        task_id: Some(f.task.id.clone()),
        ..Default::default()
    };
    s.list_runs(&filter, 2000, None).await.unwrap().items
}

async fn due_tasks_selects_active_due_ones(db: &TestDb) {
    let s = db.open().await;
    let (p, _) = project(s.as_ref(), "etl").await;
    let now = 1_700_000_000_000;
    let make = |name: &str, next: Option<i64>, paused: bool, scheduled: bool| {
        let mut t = task(&p.id, name, retries(1));
        t.next_fire_at = next;
        t.paused = paused;
        if !scheduled {
            t.schedule = None;
        }
        t
    };
    let due_late = make("due-late", Some(now - 1), false, true);
    let due_early = make("due-early", Some(now - 60_000), false, true);
    let due_exact = make("due-exact", Some(now), false, true);
    let future = make("future", Some(now + 1), false, true);
    let paused = make("paused", Some(now - 5), true, true);
    let never = make("never", None, false, false);
    for t in [&due_late, &due_early, &due_exact, &future, &paused, &never] {
        s.create_task(t).await.unwrap();
    }
    // The names of the due tasks, at most `limit`, after the key `after`.
    let due_names = |limit: u32, after: Option<DueKey>| {
        let s = s.clone();
        async move {
            let tasks = s.due_tasks(now, limit, after.as_ref()).await.unwrap();
            tasks.into_iter().map(|t| t.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        due_names(100, None).await,
        ["due-early", "due-late", "due-exact"],
        "due, unpaused, oldest fire first"
    );
    let got = &s.due_tasks(now, 100, None).await.unwrap()[0];
    assert_eq!(got.schedule, due_early.schedule, "schedule JSON survives");
    assert!(s
        .due_tasks(now - 120_000, 100, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        due_names(2, None).await,
        ["due-early", "due-late"],
        "at most `limit`, oldest first"
    );
    // The next batch starts after the last task of the previous one, and the limit then counts
    // the tasks after it.
    let key = |t: &Task| DueKey {
        next_fire_at: t.next_fire_at.unwrap(),
        id: t.id.clone(),
    };
    assert_eq!(
        due_names(2, Some(key(&due_early))).await,
        ["due-late", "due-exact"],
        "the tasks after the key"
    );
    assert!(due_names(2, Some(key(&due_exact))).await.is_empty());
    // Tasks due at the same instant are ordered by id, so a batch boundary among them loses and
    // repeats none: the burst of a cron shared by thousands of tasks.
    let tied: Vec<Task> = (0..5)
        .map(|i| make(&format!("tied-{i}"), Some(now - 30_000), false, true))
        .collect();
    for t in &tied {
        s.create_task(t).await.unwrap();
    }
    let mut walked = vec![];
    let mut after = Some(key(&due_early));
    loop {
        let batch = s.due_tasks(now - 30_000, 2, after.as_ref()).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = Some(key(last));
        walked.extend(batch.into_iter().map(|t| t.name));
    }
    walked.sort();
    let expected: Vec<String> = tied.iter().map(|t| t.name.clone()).collect();
    assert_eq!(walked, expected, "every tied task walked exactly once");
}

async fn fire_schedules_writes_one_batch(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(3)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let (due, at) = (1_700_000_300_000, 1_700_000_301_000);
    let next = vec![
        NextFire {
            task_id: f.task.id.clone(),
            from: 1_700_000_300_000,
            to: Some(1_700_000_600_000),
        },
        NextFire {
            task_id: g.task.id.clone(),
            from: 1_700_000_300_000,
            to: None,
        },
    ];
    let fires = [
        fire(&f, due, false),
        fire(&f, due + 1, true),
        fire(&g, due, false),
    ];
    let jobs = s
        .fire_schedules(&fires, &next, "scheduler", 5, at)
        .await
        .unwrap();
    assert!(jobs.iter().all(Option::is_some), "{jobs:?}");
    let job = jobs[0].clone().unwrap();
    assert_eq!((job.attempt, job.task_id.as_str()), (1, f.task.id.as_str()));
    assert_eq!(job.entrypoint, "jobs/run.py");
    let run = s.run(&job.run_id).await.unwrap();
    assert_eq!(run.state, RunState::Queued);
    assert_eq!((run.due_at, run.queued_at), (Some(due), at));
    assert_eq!(run.max_attempts, 3);
    let history = s.run_history(&job.run_id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].kind.as_str(), history[0].at), ("queued", at));
    let held = s.held_runs(10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        Some(held[0].id.clone()),
        jobs[1].as_ref().map(|j| j.run_id.clone())
    );
    let queued: Vec<String> = s
        .due_queued_jobs(at, 10, None)
        .await
        .unwrap()
        .jobs
        .into_iter()
        .map(|j| j.run_id)
        .collect();
    assert_eq!(queued.len(), 2, "the held fire is not due: {queued:?}");
    assert_eq!(
        s.task(&f.task.id).await.unwrap().next_fire_at,
        Some(1_700_000_600_000)
    );
    assert_eq!(s.task(&g.task.id).await.unwrap().next_fire_at, None);

    // The same due time again is not a second run; the new one next to it is created.
    let again = s
        .fire_schedules(
            &[fire(&f, due, false), fire(&f, due + 2, false)],
            &[],
            "scheduler",
            5,
            at,
        )
        .await
        .unwrap();
    assert!(again[0].is_none() && again[1].is_some(), "{again:?}");
    assert_eq!(runs_of(s.as_ref(), &f).await.len(), 3);

    // A next fire time that changed since it was read (the task was edited) is left alone.
    let stale_move = NextFire {
        task_id: f.task.id.clone(),
        from: 1_700_000_300_000,
        to: Some(1),
    };
    s.fire_schedules(&[], &[stale_move], "scheduler", 5, at)
        .await
        .unwrap();
    assert_eq!(
        s.task(&f.task.id).await.unwrap().next_fire_at,
        Some(1_700_000_600_000)
    );

    // More rows than one statement holds: every one is written.
    let many: Vec<Fire> = (0..1_201).map(|i| fire(&g, due + 10 + i, false)).collect();
    let mut moves: Vec<NextFire> = (0..600)
        .map(|i| NextFire {
            task_id: format!("no-such-task-{i}"),
            from: 0,
            to: Some(0),
        })
        .collect();
    let mut g_again = s.task(&g.task.id).await.unwrap();
    g_again.next_fire_at = Some(due);
    s.update_task(&g_again).await.unwrap();
    moves.push(NextFire {
        task_id: g.task.id.clone(),
        from: due,
        to: Some(due + 99),
    });
    let created = s
        .fire_schedules(&many, &moves, "scheduler", 5, at)
        .await
        .unwrap();
    assert_eq!(created.iter().flatten().count(), 1_201);
    assert_eq!(runs_of(s.as_ref(), &g).await.len(), 1_202);
    assert_eq!(
        s.task(&g.task.id).await.unwrap().next_fire_at,
        Some(due + 99)
    );
}

async fn deposed_leader_cannot_fire(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let due = 1_700_000_300_000;
    let batch = |at: i64| [fire(&f, at, false)];
    s.fire_schedules(&batch(due), &[], "scheduler", 5, due)
        .await
        .expect("first leader");
    s.fire_schedules(&batch(due + 1), &[], "scheduler", 5, due)
        .await
        .expect("same leader again");
    s.fire_schedules(&batch(due + 2), &[], "scheduler", 9, due)
        .await
        .expect("a newer leader");
    let late_move = NextFire {
        task_id: f.task.id.clone(),
        from: 1_700_000_300_000,
        to: Some(42),
    };
    let late = s
        .fire_schedules(&batch(due + 3), &[late_move], "scheduler", 5, due)
        .await;
    assert!(
        matches!(late, Err(StoreError::Stale(_))),
        "deposed leader's write: {late:?}"
    );
    assert_eq!(
        s.task(&f.task.id).await.unwrap().next_fire_at,
        Some(1_700_000_300_000),
        "the refused batch moved no task"
    );
    s.fire_schedules(&batch(due + 3), &[], "other-lock", 1, due)
        .await
        .expect("locks are independent");
    assert_eq!(
        runs_of(s.as_ref(), &f).await.len(),
        4,
        "the refused write left no row"
    );
}

/// One leader's batches write side by side ([`ScheduleStore::fire_writers`] of them): they neither
/// block nor deadlock each other on the fence, and a newer leader's token still refuses every
/// batch of the old one written after it.
async fn one_leaders_batches_write_side_by_side(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let due = 1_700_000_400_000;
    s.fire_schedules(&[fire(&f, due, false)], &[], "scheduler", 5, due)
        .await
        .expect("the leader's first batch advances the fence");
    let writers = s.fire_writers().max(2) as i64;
    let batches = (1..=writers * 4).map(|i| {
        let s = s.clone();
        let fires = [fire(&f, due + i, false)];
        async move { s.fire_schedules(&fires, &[], "scheduler", 5, due).await }
    });
    for written in futures::future::join_all(batches).await {
        assert_eq!(written.expect("same leader, side by side").len(), 1);
    }
    // A newer leader advances the fence while the old one still writes: each old batch either
    // committed before the advance or is refused, and none is refused after it commits.
    let old = {
        let s = s.clone();
        let fires = [fire(&f, due + 100, false)];
        async move { s.fire_schedules(&fires, &[], "scheduler", 5, due).await }
    };
    let newer = [fire(&f, due + 101, false)];
    let new = s.fire_schedules(&newer, &[], "scheduler", 6, due);
    let (old, new) = tokio::join!(old, new);
    new.expect("the newer leader");
    assert!(
        matches!(old, Ok(_) | Err(StoreError::Stale(_))),
        "the old leader's racing batch: {old:?}"
    );
    let late = s
        .fire_schedules(&[fire(&f, due + 102, false)], &[], "scheduler", 5, due)
        .await;
    assert!(
        matches!(late, Err(StoreError::Stale(_))),
        "the old leader's batch after the advance: {late:?}"
    );
    let expected = 1 + writers * 4 + 1 + i64::from(old.is_ok());
    assert_eq!(runs_of(s.as_ref(), &f).await.len() as i64, expected);
}

async fn active_runs_of_tasks(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let other = fixture(s.as_ref(), retries(1)).await;
    let queued = manual_run(s.as_ref(), &f).await;
    let running = manual_run(s.as_ref(), &f).await;
    s.mark_started(&running.id, 1, "lt_1", "w1", now_ms())
        .await
        .unwrap();
    let cancelled = manual_run(s.as_ref(), &f).await;
    s.request_cancel(&cancelled.id, now_ms()).await.unwrap();
    let held = manual_run(s.as_ref(), &g).await;
    s.defer_run(&held.id, HELD).await.unwrap();
    manual_run(s.as_ref(), &other).await;
    let ids = [f.task.id.clone(), g.task.id.clone()];
    let mut got: Vec<String> = s
        .active_runs(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    got.sort();
    let mut want = vec![queued.id, running.id, held.id];
    want.sort();
    assert_eq!(
        got, want,
        "queued, running and held runs of these tasks only"
    );
    assert!(s.active_runs(&[]).await.unwrap().is_empty());
}

conformance!(
    due_tasks_selects_active_due_ones,
    fire_schedules_writes_one_batch,
    deposed_leader_cannot_fire,
    one_leaders_batches_write_side_by_side,
    active_runs_of_tasks,
);
