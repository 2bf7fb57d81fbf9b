//! Alerts end to end: control, a scheduler and a runner as processes on PostgreSQL and Redis,
//! alerting a webhook receiver on loopback (`antcode_testkit::hook`) that checks each signature.
//! The scheduler, the leader that sends, is killed with SIGKILL while a delivery is committed
//! but not yet delivered; the next leader delivers it, and every event arrives exactly once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use antcode_testkit::api::Api;
use antcode_testkit::db::fresh_postgres;
use antcode_testkit::hook::Hook;
use antcode_testkit::procs::Procs;
use antcode_testkit::redis::redis_url;

const BIN: &str = env!("CARGO_BIN_EXE_antcode");
const PASSWORD: &str = "alerts-password-not-default";
const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef";
const HOOK_SECRET: &str = "hook-secret-0123456789";

/// The accepted alerts: `(event kind, run id, delivery id)`.
async fn received(hook: &Hook) -> Vec<(String, String, String)> {
    hook.received()
        .await
        .iter()
        .map(|r| {
            let e = &r["payload"]["event"];
            let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
            (s(&e["kind"]), s(&e["run_id"]), s(&r["delivery"]))
        })
        .collect()
}

/// Waits until an alert of `kind` for `run` arrived.
async fn wait_for(hook: &Hook, kind: &str, run: &str, p: &Procs) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !received(hook)
        .await
        .iter()
        .any(|(k, r, _)| k == kind && r == run)
    {
        assert!(
            Instant::now() < deadline,
            "no {kind} alert for run {run}; received {:?}\n{}",
            received(hook).await,
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_split() -> (Procs, u16) {
    let mut p = Procs::new(BIN, vec![]);
    let blobs = p.dir.path().join("blobs").display().to_string();
    p.env = vec![
        ("ANTCODE_DATABASE_URL".into(), fresh_postgres().await),
        ("ANTCODE_REDIS_URL".into(), redis_url(0, "alerts")),
        ("ANTCODE_BLOB_URL".into(), format!("file://{blobs}")),
        ("ANTCODE_ADMIN_PASSWORD".into(), PASSWORD.into()),
        ("ANTCODE_SECRET_KEY".into(), SECRET_KEY.into()),
        (
            "ANTCODE_PUBLIC_URL".into(),
            "https://antcode.example".into(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let port = p.spawn_control().await;
    p.spawn_scheduler("scheduler");
    p.spawn_runner("runner");
    (p, port)
}

/// The delivery of `kind` for `run`, once one exists.
async fn delivery_of(api: &Api, kind: &str, run: &str, p: &Procs) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = api.get("/notifications/deliveries?limit=100").await;
        let found = page["items"].as_array().unwrap().iter().find(|d| {
            d["event"]["kind"] == kind
                && d["event"]["run_id"] == run
                && d["attempts"].as_u64() >= Some(1)
        });
        if let Some(d) = found {
            return d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no tried delivery of {kind} for {run}: {page}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_alert_a_signed_webhook_once_across_a_killed_leader() {
    let hook = Hook::start(HOOK_SECRET);
    let (mut p, port) = start_split().await;
    let api = Api::login(port, PASSWORD).await;

    let (status, channel) = api
        .post(
            "/notifications/channels",
            json!({"name": "ops", "config": {"kind": "webhook", "url": hook.url("/hook"), "secret": HOOK_SECRET}}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    assert!(
        !channel.to_string().contains(HOOK_SECRET),
        "the secret never comes back: {channel}"
    );
    let channel = channel["id"].as_str().unwrap().to_string();
    let task = api
        .script_task(
            "flaky",
            "import sys\nsys.exit(int(sys.argv[1]))\n",
            json!({"args": ["3"]}),
        )
        .await;
    // Two rules, so each event is its own alert (one rule's events in one window make a digest).
    for (name, on) in [
        ("failures", json!(["failed"])),
        ("streaks", json!(["consecutive_failures", "recovered"])),
    ] {
        let (status, rule) = api
            .post(
                "/notifications/rules",
                json!({"name": name, "task_id": task, "channels": [channel], "on": on,
                       "consecutive": 2, "throttle_s": 0}),
            )
            .await;
        assert_eq!(status, 201, "{rule}");
    }

    // A failure alerts, signed, with its run, link and log.
    let first = api.triggered(&task).await;
    assert_eq!(api.wait_done(&p, &first).await["state"], "failed");
    wait_for(&hook, "run.failed", &first, &p).await;

    // The receiver goes down: the next failure's alerts are committed and tried, not delivered.
    hook.set_down(true).await;
    let second = api.triggered(&task).await;
    assert_eq!(api.wait_done(&p, &second).await["state"], "failed");
    let pending = delivery_of(&api, "run.consecutive_failures", &second, &p).await;
    assert_eq!(pending["state"], "pending", "{pending}");
    assert!(
        pending["last_error"].as_str().unwrap_or("").contains("503"),
        "{pending}"
    );
    // The leader dies with them undelivered; a new one takes over and delivers them.
    p.proc("scheduler").kill9();
    hook.set_down(false).await;
    p.spawn_scheduler("scheduler");
    wait_for(&hook, "run.failed", &second, &p).await;
    wait_for(&hook, "run.consecutive_failures", &second, &p).await;

    // It recovers.
    let (status, patched) = api
        .patch(&format!("/tasks/{task}"), json!({"args": ["0"]}))
        .await;
    assert_eq!(status, 200, "{patched}");
    let third = api.triggered(&task).await;
    assert_eq!(api.wait_done(&p, &third).await["state"], "succeeded");
    wait_for(&hook, "run.recovered", &third, &p).await;

    // A test from the channel's page goes through the same outbox.
    let (status, test) = api
        .post(
            &format!("/notifications/channels/{channel}/test"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{test}");
    let test_id = test["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = api
            .get(&format!("/notifications/deliveries/{test_id}"))
            .await;
        if d["state"] == "sent" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the test alert was not sent: {d}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every event arrived exactly once, and nothing else did.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got: Vec<(String, String)> = received(&hook)
        .await
        .into_iter()
        .map(|(k, r, _)| (k, r))
        .collect();
    got.sort();
    let mut want = vec![
        ("run.failed".to_string(), first.clone()),
        ("run.failed".to_string(), second.clone()),
        ("run.consecutive_failures".to_string(), second.clone()),
        ("run.recovered".to_string(), third.clone()),
        ("test".to_string(), "-".to_string()),
    ];
    want.sort();
    assert_eq!(got, want, "{}", p.logs());
    let payloads: Vec<Value> = reqwest::get(hook.url("/_received"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let failed = payloads
        .iter()
        .find(|r| r["payload"]["event"]["run_id"] == first.as_str())
        .unwrap();
    assert_eq!(
        failed["payload"]["event"]["run_url"],
        format!("https://antcode.example/#/runs/{first}")
    );
    assert_eq!(failed["payload"]["event"]["exit_code"], 3);
}
