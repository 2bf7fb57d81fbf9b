//! Runs: creation, reads and pages, queue timeouts and the due queued jobs.

use super::*;

async fn runs_create_and_read(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(2)).await;
    let before = now_ms();
    let (run, job) = s
        .create_run(&NewRun {
            trace: None,
            task: f.task.clone(),
            version: f.version.clone(),
            trigger: "api".into(),
            due_at: None,
            params: None,
            overrides: None,
            key: None,
            parent: None,
        })
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Queued);
    assert_eq!((run.attempt, run.max_attempts), (1, 2));
    assert_eq!(run.task_id, f.task.id);
    assert_eq!(run.project_id, f.task.project_id);
    assert_eq!(run.project_version, 1);
    assert_eq!(run.queue, "default");
    assert_eq!(run.trigger, "api");
    assert!(run.queued_at >= before - 1000 && run.queued_at <= now_ms() + 1000);
    assert_eq!(
        (
            &run.worker_id,
            &run.lease_token,
            run.exit_code,
            run.started_at,
            run.finished_at,
            run.due_at
        ),
        (&None, &None, None, None, None, None)
    );
    assert!(!run.cancel_requested);

    assert_eq!(job.run_id, run.id);
    assert_eq!(job.attempt, 1);
    assert_eq!(
        job.entrypoint, "jobs/run.py",
        "task entrypoint wins over the version's"
    );
    assert_eq!(job.bundle, f.version.bundle);
    assert_eq!(job.env, f.task.spec.env);
    assert_eq!(job.args, f.task.spec.args);
    assert_eq!(job.python_version.as_deref(), Some("3.11"));
    assert_eq!(
        job.gates,
        BTreeMap::from([
            (format!("task:{}", f.task.id), 4),
            ("key:site:example.com".to_string(), 2)
        ]),
        "the task's concurrency limits are the job's gates"
    );

    let again = s.run(&run.id).await.unwrap();
    assert_eq!(snapshot(&again), snapshot(&run));
    assert_not_found(s.run(&new_id()).await, "unknown run");
    let history = s.run_history(&run.id).await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.kind.as_str()).collect::<Vec<_>>(),
        ["queued"]
    );
    assert_eq!(history[0].attempt, 1);

    let jobs = s
        .due_queued_jobs(now_ms() + 1000, 10, None)
        .await
        .unwrap()
        .jobs;
    assert_eq!(jobs, [job]);
    assert!(s.running_runs(10).await.unwrap().is_empty());
}

/// Runs created at the same time (committed together when they queue behind the writer) are
/// each stored exactly as returned, with their history line; one that fails fails alone.
async fn concurrent_creates_land_and_fail_alone(db: &TestDb) {
    let s: Arc<dyn Store> = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let creates: Vec<_> = (0..24)
        .map(|n| {
            let s = s.clone();
            // Two of them for the same due time of the same task: one must be refused.
            let new = NewRun {
                trace: None,
                task: f.task.clone(),
                version: f.version.clone(),
                trigger: format!("manual-{n}"),
                due_at: (n == 5 || n == 17).then_some(1_700_000_000_000),
                params: None,
                overrides: None,
                key: None,
                parent: None,
            };
            tokio::spawn(async move { s.create_run(&new).await })
        })
        .collect();
    let mut created = vec![];
    let mut refused = 0;
    for create in creates {
        match create.await.unwrap() {
            Ok((run, job)) => created.push((run, job)),
            Err(StoreError::Conflict(_)) => refused += 1,
            Err(e) => panic!("an innocent create failed: {e:?}"),
        }
    }
    assert_eq!((created.len(), refused), (23, 1));
    for (run, job) in &created {
        assert_eq!(run, &s.run(&run.id).await.unwrap(), "returned as stored");
        assert_eq!(job.run_id, run.id);
        let history = s.run_history(&run.id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].kind, "queued");
        assert_eq!(history[0].at, run.queued_at);
    }
    let filter = RunFilter {
        task_id: Some(f.task.id.clone()),
        ..RunFilter::default()
    };
    assert_eq!(
        s.list_runs(&filter, 100, None).await.unwrap().items.len(),
        23
    );
}

async fn one_fire_per_due_time(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let due = 1_700_000_300_000;
    let scheduled = |fx: &Fixture, at: Option<i64>| NewRun {
        trace: None,
        task: fx.task.clone(),
        version: fx.version.clone(),
        trigger: if at.is_some() { "schedule" } else { "manual" }.into(),
        due_at: at,
        params: None,
        overrides: None,
        key: None,
        parent: None,
    };
    let (first, _) = s.create_run(&scheduled(&f, Some(due))).await.unwrap();
    assert_eq!(first, s.run(&first.id).await.unwrap(), "returned as stored");
    assert_eq!(first.due_at, Some(due));
    assert_conflict(
        s.create_run(&scheduled(&f, Some(due))).await,
        "second fire of the same due time",
    );
    s.create_run(&scheduled(&f, Some(due + 60_000)))
        .await
        .expect("next due time");
    s.create_run(&scheduled(&g, Some(due)))
        .await
        .expect("another task, same due time");
    s.create_run(&scheduled(&f, None))
        .await
        .expect("manual run");
    s.create_run(&scheduled(&f, None))
        .await
        .expect("second manual run");
    let runs = s
        .list_runs(
            &RunFilter {
                task_id: Some(f.task.id.clone()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert_eq!(runs.items.len(), 4, "the refused fire left no row");
}

async fn list_runs_filters_and_pages(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let mut mine = vec![];
    for _ in 0..7 {
        mine.push(manual_run(s.as_ref(), &f).await.id);
    }
    let theirs = manual_run(s.as_ref(), &g).await;
    s.mark_started(&mine[1], 1, "t1", "w-a", 1).await.unwrap();
    s.mark_started(&mine[4], 1, "t4", "w-b", 1).await.unwrap();
    s.mark_started(&theirs.id, 1, "tg", "w-a", 1).await.unwrap();

    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let by_task = RunFilter {
        task_id: Some(f.task.id.clone()),
        ..Default::default()
    };
    let mut pages = vec![];
    let mut cursor = None;
    loop {
        let page = s.list_runs(&by_task, 3, cursor.as_deref()).await.unwrap();
        pages.push(ids(page.items));
        cursor = page.next_cursor;
        if cursor.is_none() || pages.len() > 5 {
            break;
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let mut newest_first = mine.clone();
    newest_first.reverse();
    assert_eq!(pages.concat(), newest_first);

    let all = s.list_runs(&RunFilter::default(), 100, None).await.unwrap();
    assert_eq!(all.items.len(), 8);
    assert_eq!(all.next_cursor, None);
    assert_eq!(all.items[0].id, theirs.id);

    let running = RunFilter {
        state: Some(RunState::Running),
        ..Default::default()
    };
    let mut got = ids(s.list_runs(&running, 100, None).await.unwrap().items);
    got.sort();
    let mut want = vec![mine[1].clone(), mine[4].clone(), theirs.id.clone()];
    want.sort();
    assert_eq!(got, want);

    let on_a = RunFilter {
        worker_id: Some("w-a".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(s.list_runs(&on_a, 100, None).await.unwrap().items),
        [theirs.id.clone(), mine[1].clone()]
    );
    let mine_running_on_a = RunFilter {
        task_id: Some(f.task.id.clone()),
        state: Some(RunState::Running),
        worker_id: Some("w-a".into()),
        since_ms: None,
        until_ms: None,
        trigger: None,
        error: None,
    };
    assert_eq!(
        ids(s
            .list_runs(&mine_running_on_a, 100, None)
            .await
            .unwrap()
            .items),
        [mine[1].clone()]
    );
    let queued_of_mine = RunFilter {
        task_id: Some(f.task.id.clone()),
        state: Some(RunState::Queued),
        ..Default::default()
    };
    assert_eq!(
        s.list_runs(&queued_of_mine, 100, None)
            .await
            .unwrap()
            .items
            .len(),
        5
    );

    let future = RunFilter {
        since_ms: Some(now_ms() + 60_000),
        ..Default::default()
    };
    assert!(s
        .list_runs(&future, 100, None)
        .await
        .unwrap()
        .items
        .is_empty());
    let past = RunFilter {
        since_ms: Some(now_ms() - 60_000),
        ..Default::default()
    };
    assert_eq!(s.list_runs(&past, 100, None).await.unwrap().items.len(), 8);
    let nobody = RunFilter {
        worker_id: Some("w-zzz".into()),
        ..Default::default()
    };
    let empty = s.list_runs(&nobody, 3, None).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());

    // due_queued_jobs is oldest first and honours its limit.
    let due = s
        .due_queued_jobs(now_ms() + 1000, 3, None)
        .await
        .unwrap()
        .jobs;
    let due: Vec<_> = due.into_iter().map(|j| j.run_id).collect();
    assert_eq!(due, [mine[0].clone(), mine[2].clone(), mine[3].clone()]);
    let running_ids: Vec<_> = ids(s.running_runs(2).await.unwrap());
    assert_eq!(running_ids, [mine[1].clone(), mine[4].clone()]);

    // Queued before a time, by trigger, and by text in the error (case ignored, `%` and `_`
    // plain characters).
    let count = |f: RunFilter| {
        let s = s.clone();
        async move { s.list_runs(&f, 100, None).await.unwrap().items.len() }
    };
    let until = |ms| RunFilter {
        until_ms: Some(ms),
        ..Default::default()
    };
    assert_eq!(count(until(now_ms() - 60_000)).await, 0);
    assert_eq!(count(until(now_ms() + 60_000)).await, 8);
    let by = |trigger: &str| RunFilter {
        trigger: Some(trigger.into()),
        ..Default::default()
    };
    assert_eq!(
        (count(by("manual")).await, count(by("schedule")).await),
        (8, 0)
    );
    for (id, token, error) in [
        (&theirs.id, "tg", "Killed: MEMORY 100%_used!"),
        (&mine[1], "t1", "memory 100%Xused!"),
        (&mine[4], "t4", "Ошибка сети"),
    ] {
        let mut ended = outcome(RunState::Failed);
        ended.error = Some(error.into());
        s.finish_attempt(id, 1, Some(token), &ended, now_ms())
            .await
            .unwrap();
    }
    let erring = |text: &str| RunFilter {
        error: Some(text.into()),
        ..Default::default()
    };
    assert_eq!(count(erring("memory")).await, 2);
    assert_eq!(
        ids(s
            .list_runs(&erring("100%_USED!"), 100, None)
            .await
            .unwrap()
            .items),
        std::slice::from_ref(&theirs.id)
    );
    assert_eq!(count(erring("%")).await, 2);
    assert_eq!(count(erring("nothing like it")).await, 0);
    // Text beyond ASCII is matched as given, the same on every engine.
    assert_eq!(count(erring("Ошибка")).await, 1);
}

async fn queued_runs_expire_after_their_queue_timeout(db: &TestDb) {
    let s = db.open().await;
    let timed = timed_fixture(s.as_ref(), 10, retries(2)).await;
    let untimed = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &timed).await;
    let never = manual_run(s.as_ref(), &untimed).await;
    let queued = run.queued_at;
    assert!(expired_ids(s.as_ref(), queued + 10_000).await.is_empty());
    assert_eq!(
        expired_ids(s.as_ref(), queued + 10_001).await,
        std::slice::from_ref(&run.id)
    );
    assert!(
        !expired_ids(s.as_ref(), HELD * 2).await.contains(&never.id),
        "a run without a queue timeout never expires"
    );

    // Moving not_before moves the deadline; held runs do not expire while held.
    s.defer_run(&run.id, queued + 60_000).await.unwrap();
    assert!(expired_ids(s.as_ref(), queued + 70_000).await.is_empty());
    assert_eq!(
        expired_ids(s.as_ref(), queued + 70_001).await,
        std::slice::from_ref(&run.id)
    );
    s.defer_run(&run.id, HELD).await.unwrap();
    assert!(expired_ids(s.as_ref(), queued + 1_000_000).await.is_empty());
    s.defer_run(&run.id, queued).await.unwrap();

    // A retry queues the run again: its deadline counts from the backoff's end.
    s.mark_started(&run.id, 1, "tok-1", "w1", queued + 1)
        .await
        .unwrap();
    assert!(
        expired_ids(s.as_ref(), queued + 10_001).await.is_empty(),
        "running"
    );
    let applied = s
        .finish_attempt(
            &run.id,
            1,
            Some("tok-1"),
            &outcome(RunState::Failed),
            queued + 2,
        )
        .await
        .unwrap();
    let FinishApplied::Requeued(r) = applied else {
        panic!("requeued: {applied:?}");
    };
    let not_before = r.not_before.unwrap();
    assert!(expired_ids(s.as_ref(), not_before + 10_000)
        .await
        .is_empty());
    assert_eq!(
        expired_ids(s.as_ref(), not_before + 10_001).await,
        std::slice::from_ref(&run.id)
    );
    s.expire_run(&run.id, 2, not_before + 10_001).await.unwrap();
    assert!(
        expired_ids(s.as_ref(), HELD * 2).await.is_empty(),
        "expired once"
    );
}

async fn expired_runs_come_longest_expired_first(db: &TestDb) {
    let s = db.open().await;
    let f = timed_fixture(s.as_ref(), 1, retries(1)).await;
    let mut runs = vec![];
    for _ in 0..4 {
        runs.push(manual_run(s.as_ref(), &f).await);
    }
    // Deadlines in the reverse of id order: the page follows the deadline.
    for (i, r) in runs.iter().enumerate() {
        s.defer_run(&r.id, 1_000_000 - i as i64).await.unwrap();
    }
    let page = s.expired_queued_runs(2_000_000, 3).await.unwrap();
    let got: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<&str> = runs.iter().rev().take(3).map(|r| r.id.as_str()).collect();
    assert_eq!(got, want);
}

async fn due_queued_jobs_page_by_key(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let mut want = vec![];
    for _ in 0..5 {
        want.push(manual_run(s.as_ref(), &f).await.id);
    }
    // Due earlier than the others although created last: it comes first.
    let first = manual_run(s.as_ref(), &f).await;
    s.defer_run(&first.id, 1_000).await.unwrap();
    want.insert(0, first.id);
    let held = manual_run(s.as_ref(), &f).await;
    s.defer_run(&held.id, HELD).await.unwrap();
    let mut got = vec![];
    let mut after: Option<QueuedKey> = None;
    let mut pages = 0;
    loop {
        let page = s
            .due_queued_jobs(now_ms() + 1000, 2, after.as_ref())
            .await
            .unwrap();
        pages += 1;
        assert!(page.jobs.len() <= 2);
        got.extend(page.jobs.iter().map(|j| j.run_id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        got, want,
        "each due queued run once, longest due first, not the held one"
    );
    assert_eq!(
        pages, 4,
        "three full pages, then an empty one that reached the end"
    );
}

async fn tally_runs_counts_by_bucket_state_and_duration(db: &TestDb) {
    // Runs are placed by hand in a window of three one-hour buckets; each engine must count them
    // the same, and the counts must follow the filter.
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let hour = 3_600_000;
    let since = 1_700_000_000_000i64;
    let mut place = vec![];
    // (task, hour, outcome or None for still queued, duration ms)
    let plan: [(&Fixture, i64, Option<RunState>, i64); 7] = [
        (&f, 0, Some(RunState::Succeeded), 40),
        (&f, 0, Some(RunState::Succeeded), 60),
        (&f, 0, Some(RunState::Failed), 2500),
        (&f, 2, Some(RunState::Succeeded), 120_000),
        (&f, 2, None, 0),
        (&g, 1, Some(RunState::Failed), 7),
        (&g, 5, Some(RunState::Succeeded), 7), // after the window
    ];
    for (fx, h, end, duration) in plan {
        let run = manual_run(s.as_ref(), fx).await;
        if let Some(state) = end {
            s.mark_started(&run.id, 1, "t", "w-a", 1).await.unwrap();
            let mut o = outcome(state);
            o.duration_ms = duration;
            s.finish_attempt(&run.id, 1, Some("t"), &o, 2)
                .await
                .unwrap();
        }
        place.push((run.id, since + h * hour + 1000));
    }
    for (id, at) in &place {
        db.exec(&format!(
            "UPDATE runs SET queued_at = {at} WHERE id = '{id}'"
        ))
        .await;
    }
    let window = RunFilter {
        since_ms: Some(since),
        until_ms: Some(since + 3 * hour),
        ..Default::default()
    };
    let mut tally = s.tally_runs(&window, hour).await.unwrap();
    tally.states.sort();
    tally.durations.sort();
    assert_eq!(
        tally.states,
        [
            (0, RunState::Succeeded, 2),
            (0, RunState::Failed, 1),
            (1, RunState::Failed, 1),
            (2, RunState::Queued, 1),
            (2, RunState::Succeeded, 1),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    let bin = |ms: i64| {
        antcode_core::stats::DURATION_BOUNDS
            .iter()
            .position(|&b| ms < b)
            .unwrap()
    };
    let mut want = vec![
        (0, bin(40), 1),
        (0, bin(60), 1),
        (0, bin(2500), 1),
        (1, bin(7), 1),
        (2, bin(120_000), 1),
    ];
    want.sort();
    assert_eq!(tally.durations, want);

    let stats = antcode_core::stats::summarize(&tally, since, since + 3 * hour, hour);
    assert_eq!(stats.total.runs, 6);
    assert_eq!(stats.total.counts["failed"], 2);
    assert_eq!(stats.buckets[0].success_rate, Some(2.0 / 3.0));

    // The filter's task and error apply; its state does not (the counts are by state).
    let only_f_failed = RunFilter {
        task_id: Some(f.task.id.clone()),
        state: Some(RunState::Succeeded),
        error: Some("ENDED FAILED".into()),
        ..window.clone()
    };
    let t = s.tally_runs(&only_f_failed, hour).await.unwrap();
    assert_eq!(t.states, [(0, RunState::Failed, 1)]);
    assert_eq!(t.durations, [(0, bin(2500), 1)]);

    // An empty window counts nothing.
    let later = RunFilter {
        since_ms: Some(since + 10 * hour),
        until_ms: Some(since + 11 * hour),
        ..Default::default()
    };
    assert_eq!(
        s.tally_runs(&later, hour).await.unwrap(),
        antcode_core::stats::RunTally::default()
    );
}

conformance!(
    runs_create_and_read,
    concurrent_creates_land_and_fail_alone,
    one_fire_per_due_time,
    list_runs_filters_and_pages,
    queued_runs_expire_after_their_queue_timeout,
    expired_runs_come_longest_expired_first,
    due_queued_jobs_page_by_key,
    tally_runs_counts_by_bucket_state_and_duration,
);
