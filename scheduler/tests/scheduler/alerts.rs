//! The leader's alert loop and pruner against the world's store, broker and clock, alerting a
//! webhook receiver on loopback (`antcode_testkit::hook`) that checks every signature.

use super::*;

/// Ends `run` (attempt 1) as `state` with a log archive at `logs/<run>/1.log.gz`.
async fn end_with_log(
    w: &World,
    blobs: &dyn antcode_core::blob::BlobStore,
    run: &Run,
    state: RunState,
) {
    let key = antcode_core::blob::log_key(&run.id, 1);
    blobs
        .put(&key, b"not really gzip".to_vec().into())
        .await
        .unwrap();
    let outcome = Outcome {
        state,
        exit_code: Some(if state == RunState::Succeeded { 0 } else { 3 }),
        signal: None,
        error: None,
        duration_ms: 10,
        peak_rss_kb: None,
        log_key: Some(key),
        result: None,
    };
    w.store
        .finish_attempt(&run.id, 1, None, &outcome, now_ms())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
}

#[tokio::test]
async fn pruning_deletes_expired_runs_with_their_logs_and_keeps_pinned_ones() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let blobs: Arc<dyn antcode_core::blob::BlobStore> =
        Arc::new(antcode_core::blob::local::LocalBlobStore::new(dir.path()).unwrap());
    let spec = TaskSpec {
        retention: Some(antcode_core::retention::TaskRetention {
            days: None,
            keep_last: Some(1),
        }),
        ..Default::default()
    };
    let task = w.task("kept-one", None, None, spec).await;
    let mut runs = vec![];
    for _ in 0..4 {
        let (run, _) = w.manual_run(&task).await;
        end_with_log(&w, blobs.as_ref(), &run, RunState::Failed).await;
        runs.push(run);
    }
    let (running, _) = w.manual_run(&task).await;
    w.store.set_run_pinned(&runs[0].id, true).await.unwrap();
    let mut config = w.config("pruner");
    config.blobs = Some(blobs.clone());

    // An alert delivered long ago goes with the runs of its age (the default 30 days).
    let old = antcode_core::alerting::Delivery::pending(
        None,
        "c1",
        "test:1",
        "test:1",
        serde_json::json!({}),
        1_000,
    );
    w.store
        .enqueue_deliveries(std::slice::from_ref(&old))
        .await
        .unwrap();
    w.store
        .deliveries_sent(std::slice::from_ref(&old.id), &old.id, "ok", 1_000)
        .await
        .unwrap();

    let pruned = antcode_scheduler::pruner::prune(&config).await.unwrap();
    assert_eq!(pruned.runs, 2, "the pinned oldest and the newest stay");
    assert_eq!(pruned.deliveries, 1);
    let left: Vec<String> = w.runs_of(&task).await.into_iter().map(|r| r.id).collect();
    for (run, kept) in [
        (&runs[0], true),
        (&runs[1], false),
        (&runs[2], false),
        (&runs[3], true),
        (&running, true),
    ] {
        assert_eq!(left.contains(&run.id), kept, "{}", run.id);
        let log = blobs
            .exists(&antcode_core::blob::log_key(&run.id, 1))
            .await
            .unwrap();
        assert_eq!(log, kept && run.id != running.id, "log of {}", run.id);
    }
    assert_eq!(
        antcode_scheduler::pruner::prune(&config)
            .await
            .unwrap()
            .runs,
        0
    );
}

#[tokio::test]
async fn pruning_deletes_webhook_keys_after_their_window() {
    let w = world().await;
    let task = w.task("keyed", None, None, TaskSpec::default()).await;
    let key = antcode_core::hooks::RunKey {
        hook_id: antcode_core::ids::new_id(),
        key: "deploy-1".into(),
    };
    let version = w.store.version(&task.project_id, 1).await.unwrap();
    let new = NewRun {
        key: Some(key.clone()),
        ..NewRun::new(task.clone(), version, "webhook")
    };
    let (run, _) = w.store.create_run(&new).await.unwrap();
    let config = w.config("pruner");
    let pruned = antcode_scheduler::pruner::prune(&config).await.unwrap();
    assert_eq!(pruned.run_keys, 0, "a key within its window stays");
    assert_eq!(
        w.store.keyed_run(&key, 0).await.unwrap(),
        Some(run.id.clone())
    );
    w.advance(antcode_core::hooks::KEY_WINDOW_MS + 1_000);
    let pruned = antcode_scheduler::pruner::prune(&config).await.unwrap();
    assert_eq!(pruned.run_keys, 1);
    assert_eq!(w.store.keyed_run(&key, 0).await.unwrap(), None);
    assert_eq!(
        w.runs_of(&task).await.len(),
        1,
        "the run is the policy's to prune"
    );
}

/// A scheduler config whose secret key opens a webhook channel to `hook`, and one enabled rule
/// sending to it: of `task` (or global), on `on`, with `edit` applied to the rest of its spec.
async fn alerting(
    w: &World,
    hook: &antcode_testkit::hook::Hook,
    task: Option<&Task>,
    on: &[antcode_core::alerting::AlertOn],
    edit: impl FnOnce(&mut antcode_core::alerting::RuleSpec),
) -> SchedulerConfig {
    use antcode_core::alerting::*;
    let keys = antcode_core::secrets::SecretBox::from_passphrase("test key");
    let id = antcode_core::ids::new_id();
    let cfg =
        serde_json::json!({"kind": "webhook", "url": hook.url("/hook"), "secret": HOOK_SECRET});
    let channel = AlertChannel {
        sealed: keys.seal(&seal_name(&id), &cfg.to_string()).unwrap(),
        id,
        name: "hook".into(),
        kind: "webhook".into(),
        summary: serde_json::json!({}),
        enabled: true,
        created_at: 0,
        updated_at: 0,
    };
    w.store.create_channel(&channel).await.unwrap();
    let mut spec = RuleSpec {
        channels: vec![channel.id.clone()],
        on: on.to_vec(),
        consecutive: 3,
        long_running_s: None,
        backlog: None,
        queue: None,
        throttle_s: 0,
        title: None,
        body: None,
    };
    edit(&mut spec);
    w.store
        .create_rule(&AlertRule {
            id: antcode_core::ids::new_id(),
            name: "the rule".into(),
            task_id: task.map(|t| t.id.clone()),
            spec,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let mut config = w.config("alerts");
    config.secrets = Some(Arc::new(keys));
    config
}

const HOOK_SECRET: &str = "scheduler-hook-secret-0123";

#[tokio::test]
async fn a_flapping_task_sends_one_alert_then_one_digest_per_window() {
    use antcode_core::alerting::*;
    let hook = antcode_testkit::hook::Hook::start(HOOK_SECRET);
    let received = || hook.received();
    let w = world().await;
    let task = w.task("flapping", None, None, TaskSpec::default()).await;
    let config = alerting(&w, &hook, Some(&task), &[AlertOn::Failed], |spec| {
        spec.throttle_s = 60;
        spec.body = Some("{{summary}} x{{count}}".into());
    })
    .await;
    let mut alerts = antcode_scheduler::alerts::Alerts::new(&config);
    alerts.evaluate().await.unwrap(); // the first pass starts the cursor at now
    let dir = tempfile::tempdir().unwrap();
    let blobs = antcode_core::blob::local::LocalBlobStore::new(dir.path()).unwrap();
    let fail = |n: usize| {
        let (w, blobs, task) = (&w, &blobs, &task);
        async move {
            for _ in 0..n {
                let (run, _) = w.manual_run(task).await;
                end_with_log(w, blobs, &run, RunState::Failed).await;
            }
        }
    };

    fail(1).await;
    assert_eq!(alerts.evaluate().await.unwrap(), 1);
    assert_eq!(alerts.deliver().await.unwrap(), 1);
    // Three more within the window: held, then one digest when it ends.
    fail(3).await;
    assert_eq!(alerts.evaluate().await.unwrap(), 3);
    assert_eq!(
        alerts.evaluate().await.unwrap(),
        0,
        "found again: nothing added"
    );
    assert_eq!(alerts.deliver().await.unwrap(), 0);
    assert_eq!(received().await.len(), 1);
    w.advance(61_000);
    assert_eq!(alerts.deliver().await.unwrap(), 3);
    let got = received().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["payload"]["event"]["count"], 3);
    assert!(
        got[1]["payload"]["text"].as_str().unwrap().ends_with("x3"),
        "{got:?}"
    );
}

#[tokio::test]
async fn long_runs_misfires_backlogs_and_vanished_runners_alert() {
    use antcode_core::alerting::AlertOn;
    let hook = antcode_testkit::hook::Hook::start(HOOK_SECRET);
    let w = world().await;
    let on = [
        AlertOn::LongRunning,
        AlertOn::ScheduleMisfired,
        AlertOn::QueueBacklog,
        AlertOn::WorkerOffline,
    ];
    let config = alerting(&w, &hook, None, &on, |spec| {
        spec.long_running_s = Some(60);
        spec.backlog = Some(2);
    })
    .await;
    // A run started now, a schedule due now whose policy skips missed fires, three queued jobs
    // and a runner whose status expires at once.
    let slow = w.task("slow", None, None, TaskSpec::default()).await;
    let (run, _) = w.manual_run(&slow).await;
    w.store
        .mark_started(&run.id, 1, "token", "w1", w.now())
        .await
        .unwrap();
    let every = Schedule::Interval {
        every_s: 60,
        start: None,
        end: None,
    };
    let skip = TaskSpec {
        misfire: "skip".into(),
        ..Default::default()
    };
    w.task("skipper", Some(every), Some(w.now()), skip).await;
    let busy = w.task("busy", None, None, TaskSpec::default()).await;
    for _ in 0..3 {
        let (_, job) = w.manual_run(&busy).await;
        w.broker.publish(&job).await.unwrap();
    }
    let runner = WorkerStatus {
        id: "w-gone".into(),
        name: "gone".into(),
        ..Default::default()
    };
    w.broker
        .put_worker(&runner, Duration::from_millis(300))
        .await
        .unwrap();

    let mut alerts = antcode_scheduler::alerts::Alerts::new(&config);
    alerts.evaluate().await.unwrap();
    // Ten minutes later: the run is long, the schedule missed ten fires, the runner is gone.
    w.advance(10 * 60_000);
    tick::fire_due(&config, 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        alerts.evaluate().await.unwrap(),
        3,
        "misfire, long run, offline runner"
    );
    assert_eq!(alerts.evaluate().await.unwrap(), 0, "each once");
    assert_eq!(alerts.deliver().await.unwrap(), 4);
    let mut kinds: Vec<String> = hook
        .received()
        .await
        .iter()
        .map(|r| r["payload"]["event"]["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "queue.backlog",
            "run.long_running",
            "schedule.misfired",
            "worker.offline"
        ]
    );
}
