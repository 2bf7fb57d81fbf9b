//! Run dependencies: the runs an end starts, created in the transaction that records it
//! (`antcode_core::flow`).

use super::*;
use antcode_core::flow::{Link, LinkKind, Next, MAX_DEPTH};
use antcode_core::store::RunParent;
use serde_json::json;

/// A task of project `f` that takes any params and links as `edit` says; stored.
async fn linked(s: &dyn Store, f: &Fixture, name: &str, edit: impl FnOnce(&mut TaskSpec)) -> Task {
    let mut t = task(
        &f.task.project_id,
        &format!("{name}-{}", new_id()),
        retries(1),
    );
    t.spec.secrets.clear();
    t.spec.params = None;
    t.spec.schedule_params = None;
    t.schedule = None;
    t.next_fire_at = None;
    edit(&mut t.spec);
    s.create_task(&t).await.expect("create linked task");
    t
}

fn next(task: &Task) -> Next {
    Next {
        task: task.id.clone(),
        for_each: None,
    }
}

async fn start(s: &dyn Store, f: &Fixture, task: &Task) -> Run {
    let (run, _) = s
        .create_run(&plain_run(task, &f.version))
        .await
        .expect("create run");
    run
}

fn event(run: &Run, kind: RunEventKind) -> RunEvent {
    RunEvent {
        trace: None,
        run_id: run.id.clone(),
        attempt: run.attempt,
        lease_token: format!("tok-{}", run.id),
        worker_id: "w1".into(),
        at_ms: now_ms(),
        kind,
    }
}

/// Starts and ends `run` as a runner would report it: the jobs its end started.
async fn end(
    s: &dyn Store,
    run: &Run,
    state: RunState,
    result: Option<serde_json::Value>,
) -> Vec<Job> {
    let mut o = outcome(state);
    o.result = result;
    let events = [
        event(run, RunEventKind::Started),
        event(run, RunEventKind::Finished(o)),
    ];
    let mut out = s.record_events(&events).await;
    match out.pop() {
        Some(Ok(Recorded::Finished {
            state: got,
            requeued: false,
            next,
        })) => {
            assert_eq!(got, state);
            next
        }
        other => panic!("end of {}: {other:?}", run.id),
    }
}

/// The runs of `group` but its first.
async fn started(s: &dyn Store, group: &str) -> Vec<Run> {
    let mut runs = s.group_runs(group, 10_000).await.unwrap();
    runs.retain(|r| r.id != group);
    runs
}

async fn an_end_starts_the_runs_its_links_say(db: &TestDb) {
    let s = db.open().await;
    let s = s.as_ref();
    let f = fixture(s, retries(1)).await;
    let b = linked(s, &f, "b", |_| {}).await;
    let c = linked(s, &f, "c", |_| {}).await;
    let on_fail = linked(s, &f, "f", |_| {}).await;
    let a = linked(s, &f, "a", |spec| {
        spec.on_success = vec![next(&b)];
        spec.on_failure = vec![next(&on_fail)];
        spec.on_complete = vec![next(&c)];
    })
    .await;

    let ok = start(s, &f, &a).await;
    let result = json!({"rows": 42, "ok": true});
    let jobs = end(s, &ok, RunState::Succeeded, Some(result.clone())).await;
    let runs = started(s, &ok.id).await;
    let mut tasks: Vec<&str> = runs.iter().map(|r| r.task_id.as_str()).collect();
    tasks.sort();
    let mut want = vec![b.id.as_str(), c.id.as_str()];
    want.sort();
    assert_eq!(tasks, want, "success starts on_success and on_complete");
    assert_eq!(jobs.len(), 2, "their jobs come back to be published");
    for r in &runs {
        assert_eq!(r.state, RunState::Queued);
        assert_eq!(r.group_id.as_deref(), Some(ok.id.as_str()));
        assert_eq!(r.parent_id.as_deref(), Some(ok.id.as_str()));
        assert_eq!(
            r.params.as_ref(),
            Some(&result),
            "the result is the next run's params"
        );
        assert_eq!(r.depth, 1);
        let job = jobs
            .iter()
            .find(|j| j.run_id == r.id)
            .expect("a job per run");
        assert_eq!(job.params.as_ref(), Some(&result));
        let kind = if r.task_id == b.id {
            "on_success"
        } else {
            "on_complete"
        };
        assert_eq!(r.trigger, kind);
    }

    // A repeated report is stale and starts nothing more.
    let again = s
        .record_events(&[event(
            &ok,
            RunEventKind::Finished(outcome(RunState::Succeeded)),
        )])
        .await;
    assert!(matches!(again[0], Err(StoreError::Stale(_))), "{again:?}");
    assert_eq!(started(s, &ok.id).await.len(), 2);

    // A failure through the scheduler's own path (no lease) starts on_failure and on_complete.
    let bad = start(s, &f, &a).await;
    s.finish_attempt(&bad.id, 1, None, &outcome(RunState::Failed), now_ms())
        .await
        .unwrap();
    let mut tasks: Vec<String> = started(s, &bad.id)
        .await
        .into_iter()
        .map(|r| r.task_id)
        .collect();
    tasks.sort();
    let mut want = vec![on_fail.id.clone(), c.id.clone()];
    want.sort();
    assert_eq!(tasks, want, "a failure starts on_failure and on_complete");

    // A cancelled run starts nothing.
    let cancelled = start(s, &f, &a).await;
    assert!(end(s, &cancelled, RunState::Cancelled, None)
        .await
        .is_empty());
    assert!(started(s, &cancelled.id).await.is_empty());

    // The next runs' own ends go on in the same group, one step further.
    let b_run = runs.iter().find(|r| r.task_id == b.id).unwrap();
    assert!(end(s, b_run, RunState::Succeeded, None).await.is_empty());
    let group = s.group_runs(&ok.id, 100).await.unwrap();
    assert_eq!(
        group.len(),
        3,
        "the group is its first run and the two it started"
    );
    assert_eq!(group[0].id, ok.id, "in queued order, the first first");
}

async fn a_fan_out_starts_one_run_per_element(db: &TestDb) {
    let s = db.open().await;
    let s = s.as_ref();
    let f = fixture(s, retries(1)).await;
    let w = linked(s, &f, "w", |spec| {
        spec.params = Some(
            serde_json::from_value(json!({
                "properties": {"n": {"type": "integer"}, "tag": {"type": "string", "default": "x"}},
                "required": ["n"]
            }))
            .unwrap(),
        );
    })
    .await;
    let p = linked(s, &f, "p", |spec| {
        spec.on_success = vec![Next {
            task: w.id.clone(),
            for_each: Some("items".into()),
        }];
    })
    .await;

    let run = start(s, &f, &p).await;
    let items = json!({"items": [{"n": 1, "other": true}, {"n": 2}, {"n": "three"}, 4]});
    let jobs = end(s, &run, RunState::Succeeded, Some(items)).await;
    let runs = started(s, &run.id).await;
    assert_eq!(runs.len(), 4, "one run per element");
    let params: Vec<_> = runs.iter().filter_map(|r| r.params.clone()).collect();
    assert!(params.contains(&json!({"n": 1, "tag": "x"})), "{params:?}");
    assert!(params.contains(&json!({"n": 2, "tag": "x"})), "{params:?}");
    let failed: Vec<&Run> = runs
        .iter()
        .filter(|r| r.state == RunState::Failed)
        .collect();
    assert_eq!(
        failed.len(),
        2,
        "the elements that do not fit start failed runs"
    );
    for r in failed {
        let error = r.error.as_deref().unwrap_or("");
        assert!(
            error.contains("params from run") && error.contains("params.n"),
            "{error}"
        );
    }
    assert_eq!(jobs.len(), 2, "only the runs that can start are published");

    // A result without the array starts nothing, and the run's history says why.
    let none = start(s, &f, &p).await;
    assert!(
        end(s, &none, RunState::Succeeded, Some(json!({"count": 3})))
            .await
            .is_empty()
    );
    let history = s.run_history(&none.id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| e.kind == "next" && e.detail.contains("no array")),
        "{history:?}"
    );
}

async fn a_fan_in_starts_once_when_all_it_needs_succeeded(db: &TestDb) {
    let s = db.open().await;
    let s = s.as_ref();
    let f = fixture(s, retries(1)).await;
    let a = linked(s, &f, "a", |_| {}).await;
    let b = linked(s, &f, "b", |_| {}).await;
    let p = linked(s, &f, "p", |spec| {
        spec.on_success = vec![next(&a), next(&b)]
    })
    .await;
    let j = linked(s, &f, "j", |spec| {
        spec.needs = vec![a.id.clone(), b.id.clone()]
    })
    .await;

    // One after the other: the second end starts the fan-in.
    let root = start(s, &f, &p).await;
    end(s, &root, RunState::Succeeded, None).await;
    let runs = started(s, &root.id).await;
    let of = |t: &Task| runs.iter().find(|r| r.task_id == t.id).unwrap().clone();
    assert!(end(s, &of(&a), RunState::Succeeded, None).await.is_empty());
    let jobs = end(s, &of(&b), RunState::Succeeded, None).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].task_id, j.id);
    let joined = s.run(&jobs[0].run_id).await.unwrap();
    assert_eq!(joined.trigger, "needs");
    assert_eq!(joined.group_id.as_deref(), Some(root.id.as_str()));

    // Both at once, in two transactions: exactly one of them starts it, every time.
    for _ in 0..6 {
        let root = start(s, &f, &p).await;
        end(s, &root, RunState::Succeeded, None).await;
        let runs = started(s, &root.id).await;
        let (ra, rb) = (
            runs.iter().find(|r| r.task_id == a.id).unwrap(),
            runs.iter().find(|r| r.task_id == b.id).unwrap(),
        );
        let (ja, jb) = tokio::join!(
            end(s, ra, RunState::Succeeded, None),
            end(s, rb, RunState::Succeeded, None)
        );
        assert_eq!(ja.len() + jb.len(), 1, "one fan-in run per group");
        let joins = started(s, &root.id).await;
        assert_eq!(joins.iter().filter(|r| r.task_id == j.id).count(), 1);
    }

    // A failed input holds the fan-in back, until a retry of it (same parent, same params, in
    // the group: what control's retry creates) succeeds.
    let root = start(s, &f, &p).await;
    end(s, &root, RunState::Succeeded, None).await;
    let runs = started(s, &root.id).await;
    let of = |t: &Task| runs.iter().find(|r| r.task_id == t.id).unwrap().clone();
    let failed = of(&a);
    end(s, &failed, RunState::Failed, None).await;
    assert!(end(s, &of(&b), RunState::Succeeded, None).await.is_empty());
    let mut retry = plain_run(&a, &f.version);
    retry.trigger = "retry".into();
    retry.params = failed.params.clone();
    retry.parent = Some(RunParent {
        group_id: root.id.clone(),
        run_id: root.id.clone(),
        depth: failed.depth,
    });
    let (retry, _) = s.create_run(&retry).await.unwrap();
    let jobs = end(s, &retry, RunState::Succeeded, None).await;
    assert_eq!(jobs.len(), 1, "the retry's success starts the fan-in");
    assert_eq!(jobs[0].task_id, j.id);
}

async fn a_chain_stops_at_its_depth_bound(db: &TestDb) {
    let s = db.open().await;
    let s = s.as_ref();
    let f = fixture(s, retries(1)).await;
    // A task that starts itself: control refuses such a cycle, but two racing edits could
    // still build one, and the depth bound ends it.
    let mut t = linked(s, &f, "loop", |_| {}).await;
    t.spec.on_success = vec![next(&t)];
    s.update_task(&t).await.unwrap();
    let root = start(s, &f, &t).await;
    let mut run = root.clone();
    let mut steps = 0;
    loop {
        let jobs = end(s, &run, RunState::Succeeded, None).await;
        let Some(job) = jobs.first() else { break };
        run = s.run(&job.run_id).await.unwrap();
        steps += 1;
        assert!(steps <= MAX_DEPTH, "the chain went on past its bound");
    }
    assert_eq!(steps, MAX_DEPTH);
    let history = s.run_history(&run.id).await.unwrap();
    assert!(
        history.iter().any(|e| e.detail.contains("started nothing")),
        "{history:?}"
    );
}

async fn links_are_kept_with_their_task(db: &TestDb) {
    let s = db.open().await;
    let s = s.as_ref();
    let f = fixture(s, retries(1)).await;
    let b = linked(s, &f, "b", |_| {}).await;
    let mut a = linked(s, &f, "a", |spec| {
        spec.on_success = vec![Next {
            task: b.id.clone(),
            for_each: Some("items".into()),
        }];
    })
    .await;
    let j = linked(s, &f, "j", |spec| spec.needs = vec![a.id.clone()]).await;
    let mine = |links: Vec<Link>| -> Vec<Link> {
        links
            .into_iter()
            .filter(|l| [&a.id, &b.id, &j.id].contains(&&l.from))
            .collect()
    };
    let links = mine(s.task_links().await.unwrap());
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links.contains(&Link {
        from: a.id.clone(),
        to: b.id.clone(),
        kind: LinkKind::Success,
        for_each: Some("items".into()),
    }));
    assert!(links.contains(&Link {
        from: a.id.clone(),
        to: j.id.clone(),
        kind: LinkKind::Needs,
        for_each: None,
    }));

    // An edit of `a` replaces its own links and keeps the ones others declared to it.
    a.spec.on_success = vec![];
    a.spec.on_failure = vec![next(&b)];
    s.update_task(&a).await.unwrap();
    let links = mine(s.task_links().await.unwrap());
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links
        .iter()
        .any(|l| l.kind == LinkKind::Failure && l.to == b.id));
    assert!(links
        .iter()
        .any(|l| l.kind == LinkKind::Needs && l.to == j.id));

    // Deleting a task deletes every link from and to it.
    s.delete_task(&a.id).await.unwrap();
    assert!(mine(s.task_links().await.unwrap()).is_empty());
}

conformance!(
    an_end_starts_the_runs_its_links_say,
    a_fan_out_starts_one_run_per_element,
    a_fan_in_starts_once_when_all_it_needs_succeeded,
    a_chain_stops_at_its_depth_bound,
    links_are_kept_with_their_task,
);
