//! The split deployment as real OS processes: `antcode control`, `antcode scheduler` and
//! `antcode runner --mode direct` on PostgreSQL + Redis + S3 (moto), driven over REST.
//!
//! Covers: a run through the whole split system; `kill -9` of the runner in the middle of a run
//! loses nothing (the attempt is declared lost and retried on a new runner); after a flush of
//! Redis every queued run is re-published from SQL and executed; a runner stopped with SIGTERM
//! lets its runs finish, and a second SIGTERM hands them back to run again.

use serde_json::json;
use std::time::{Duration, Instant};

use antcode_testkit::api::Api;
use antcode_testkit::procs::{split_env, Procs};
use antcode_testkit::redis::flush_redis;

const BIN: &str = env!("CARGO_BIN_EXE_antcode");

const PASSWORD: &str = "split-password-not-default";
/// Redis databases of their own, so flushing one touches nothing but its test.
const SPLIT_DB: u32 = 7;
const FAILOVER_DB: u32 = 8;
const DRAIN_DB: u32 = 9;

/// Control on PostgreSQL + Redis database `db` + S3, ready to serve, on the returned port; no
/// scheduler or runner yet.
async fn start_control(tag: &str, db: u32) -> (Procs, u16) {
    flush_redis(db);
    let redis = format!("redis://127.0.0.1:6379/{db}?prefix={tag}");
    let mut env = split_env(tag, redis, PASSWORD).await;
    env.extend([
        ("ANTCODE_LOST_AFTER_S".into(), "3".into()),
        ("ANTCODE_LEASE_TTL_S".into(), "3".into()),
        ("ANTCODE_HEARTBEAT_S".into(), "1".into()),
    ]);
    let mut d = Procs::new(BIN, env);
    let port = d.spawn_control().await;
    (d, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_survives_a_killed_runner_and_a_redis_flush() {
    let (mut d, port) = start_control("split", SPLIT_DB).await;
    d.spawn_scheduler("scheduler");
    d.spawn_runner("runner-1");
    let api = Api::login(port, PASSWORD).await;

    // 1. A run through the split system.
    let hello = api
        .script_task(
            "hello",
            "import sys\nprint('hello from', sys.argv[1])\n",
            json!({"args": ["split"]}),
        )
        .await;
    let run = api.triggered(&hello).await;
    let done = api.wait_done(&d, &run).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
    let logs = api.text(&format!("/runs/{run}/logs")).await;
    assert!(logs.contains("hello from split"), "{logs}");

    // 2. kill -9 of the runner in the middle of a run: the attempt is lost, then retried.
    // The task runs in a sandbox, so its progress is read from its live log.
    let code = "import time\nprint('working', flush=True)\ntime.sleep(4)\nprint('done')\n";
    let slow = api
        .script_task(
            "slow",
            code,
            json!({"retry": {"max_attempts": 3, "backoff_s": 0, "max_backoff_s": 0}}),
        )
        .await;
    let run = api.triggered(&slow).await;
    // Beside it, a run with no retry: it ends lost and keeps what it streamed.
    let once = api.script_task("once", code, json!({})).await;
    let lost = api.triggered(&once).await;
    for run in [&run, &lost] {
        api.wait_for(&d, run, "running", |r| r["state"] == "running")
            .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !api
            .text(&format!("/runs/{run}/logs"))
            .await
            .contains("working")
        {
            assert!(
                Instant::now() < deadline,
                "the first attempt never started its script\n{}",
                d.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    d.proc("runner-1").kill9();
    d.spawn_runner("runner-2");
    let done = api.wait_done(&d, &run).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
    assert!(
        done["attempt"].as_u64().unwrap() >= 2,
        "the killed attempt was retried: {done}"
    );
    let logs = api.text(&format!("/runs/{run}/logs")).await;
    assert!(logs.contains("done"), "the script ran again: {logs}");
    let lost = api.wait_done(&d, &lost).await;
    assert_eq!(lost["state"], "lost", "{lost}\n{}", d.logs());
    assert!(lost["duration_ms"].as_i64().unwrap() > 0, "{lost}");
    let error = lost["error"].as_str().unwrap();
    assert!(
        error.starts_with("runner runner-1 stopped heartbeating at "),
        "{lost}"
    );
    let logs = api
        .text(&format!("/runs/{}/logs", lost["id"].as_str().unwrap()))
        .await;
    assert!(logs.contains("working"), "{logs}");
    assert!(logs.contains(&format!("[antcode] lost: {error}")), "{logs}");

    // 3. Flush Redis while runs are queued: SQL is the truth, they are published again and run.
    d.proc("runner-2").terminate();
    let mut queued = vec![];
    for _ in 0..3 {
        queued.push(api.triggered(&hello).await);
    }
    flush_redis(SPLIT_DB);
    d.spawn_runner("runner-3");
    for run in &queued {
        let done = api.wait_done(&d, run).await;
        assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
    }
    for name in ["runner-3", "scheduler", "control"] {
        d.proc(name).terminate();
    }
}

async fn is_leader(port: u16) -> bool {
    let Ok(res) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return false;
    };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .any(|l| l.starts_with("antcode_scheduler_leader ") && l.trim_end().ends_with(" 1"))
}

async fn scheduled_due_times(api: &Api, task: &str) -> Vec<String> {
    let page = api.get(&format!("/runs?task_id={task}&limit=500")).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["due_at"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_failover_keeps_firing_once_per_due_time() {
    let (mut d, port) = start_control("failover", FAILOVER_DB).await;
    let ports = [
        d.spawn_scheduler("scheduler-a"),
        d.spawn_scheduler("scheduler-b"),
    ];
    let api = Api::login(port, PASSWORD).await;
    let task = api
        .script_task(
            "tick",
            "print('tick')\n",
            json!({"schedule": {"kind": "interval", "every_s": 1}, "misfire": "catch_up"}),
        )
        .await;

    // Exactly one leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let flags = [is_leader(ports[0]).await, is_leader(ports[1]).await];
        match flags {
            [true, false] => break 0,
            [false, true] => break 1,
            [true, true] => panic!("two leaders at once\n{}", d.logs()),
            _ => assert!(Instant::now() < deadline, "no leader elected\n{}", d.logs()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while scheduled_due_times(&api, &task).await.len() < 2 {
        assert!(Instant::now() < deadline, "no fires\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // kill -9 the leader: the other takes over within the lock TTL and fires the missed times.
    let names = ["scheduler-a", "scheduler-b"];
    d.proc(names[leader]).kill9();
    let killed_at = Instant::now();
    let before = scheduled_due_times(&api, &task).await.len();
    while !is_leader(ports[1 - leader]).await {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no failover\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while scheduled_due_times(&api, &task).await.len() < before + 3 {
        assert!(
            Instant::now() < deadline,
            "fires did not resume after failover\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut due = scheduled_due_times(&api, &task).await;
    let n = due.len();
    due.sort();
    due.dedup();
    assert_eq!(due.len(), n, "a due time fired twice across the failover");
    d.proc(names[1 - leader]).terminate();
    d.proc("control").terminate();
}

/// A script that runs for three seconds, saying when it starts and ends.
const THREE_SECONDS: &str =
    "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('done', flush=True)\n";

/// Triggers `per_task` runs of each task and returns once every one has started its script.
async fn started_runs(api: &Api, d: &Procs, tasks: &[&str], per_task: usize) -> Vec<String> {
    let mut runs = vec![];
    for task in tasks {
        for _ in 0..per_task {
            runs.push(api.triggered(task).await);
        }
    }
    for run in &runs {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !api
            .text(&format!("/runs/{run}/logs"))
            .await
            .contains("started")
        {
            assert!(
                Instant::now() < deadline,
                "run {run} never started its script\n{}",
                d.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_runner_drains_and_hands_back_what_is_left() {
    let (mut d, port) = start_control("drain", DRAIN_DB).await;
    d.spawn_scheduler("scheduler");
    let args = [
        "--queue",
        "default,warm",
        "--warm-queues",
        "warm",
        "--slots",
        "4",
    ];
    d.spawn_runner_with("runner-1", &args);
    let api = Api::login(port, PASSWORD).await;
    let cold = api.script_task("cold", THREE_SECONDS, json!({})).await;
    let warm = api
        .script_task("warm", THREE_SECONDS, json!({"queue": "warm"}))
        .await;

    // 1. SIGTERM one second into four three-second runs (two cold, two warm): the runner
    //    waits for them, and they succeed in their first attempt.
    let runs = started_runs(&api, &d, &[&cold, &warm], 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.proc("runner-1").terminate();
    for run in &runs {
        let done = api.wait_done(&d, run).await;
        assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
        assert_eq!(done["attempt"], 1, "{done}");
    }

    // 2. A second SIGTERM ends the grace period: the runs still going are handed back, queued
    //    again as attempt 2 of 2, and the next runner runs them to success.
    d.spawn_runner_with("runner-2", &args);
    let runs = started_runs(&api, &d, &[&cold, &warm], 1).await;
    let runner = d.proc("runner-2");
    runner.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.sigterm();
    runner.wait_exit();
    for run in &runs {
        let back = api
            .wait_for(&d, run, "handed back", |r| r["attempt"] == 2)
            .await;
        assert_eq!(back["state"], "queued", "{back}\n{}", d.logs());
    }
    d.spawn_runner_with("runner-3", &args);
    for run in &runs {
        let done = api.wait_done(&d, run).await;
        assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
        assert_eq!(
            (&done["attempt"], &done["max_attempts"]),
            (&json!(2), &json!(2)),
            "{done}"
        );
        let history = done["history"].as_array().unwrap();
        assert!(
            history.iter().any(|h| h["kind"] == "interrupted"
                && h["detail"]
                    .as_str()
                    .unwrap()
                    .contains("interrupted by runner shutdown")),
            "{done}"
        );
    }
    for name in ["runner-3", "scheduler", "control"] {
        d.proc(name).terminate();
    }
}

/// The Redis user the compose file gives the runner (`ops/docker-compose.yml`), applied to this
/// Redis with a test name, password and key prefix: a direct runner on it runs a run, and the
/// user can touch nothing outside the deployment's keys nor run admin or dangerous commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_runner_redis_user_is_enough_and_no_more() {
    const DB: u32 = 10;
    let compose = include_str!("../ops/docker-compose.yml");
    let rule = compose
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("- runner on >"))
        .expect("the compose file defines the runner's Redis user");
    // `${REDIS_RUNNER_PASSWORD:?…} ~keys &channels +commands…`: the grants follow the password.
    let (_password, grants) = rule.split_once("} ").unwrap();
    let tag = format!("acl{}", std::process::id());
    let user = format!("runner-{tag}");
    let grants = grants.replace("{antcode}", &format!("{{{tag}}}"));
    let redis = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut setuser = vec!["ACL", "SETUSER", &user, "reset", "on", ">acl-test-password"];
    setuser.extend(grants.split_whitespace());
    assert_eq!(redis(&setuser), "OK", "ACL SETUSER {setuser:?}");

    let (mut d, port) = start_control(&tag, DB).await;
    d.spawn_scheduler("scheduler");
    d.env.retain(|(k, _)| k != "ANTCODE_REDIS_URL");
    d.env.push((
        "ANTCODE_REDIS_URL".into(),
        format!("redis://{user}:acl-test-password@127.0.0.1:6379/{DB}?prefix={tag}"),
    ));
    d.spawn_runner("runner");
    let api = Api::login(port, PASSWORD).await;
    let task = api
        .script_task("acl", "print('ran under the runner user')\n", json!({}))
        .await;
    let run = api.triggered(&task).await;
    let done = api.wait_done(&d, &run).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());

    let db = DB.to_string();
    let as_runner = |cmd: &[&str]| {
        let mut args = vec!["--user", &user, "--pass", "acl-test-password", "-n", &db];
        args.extend(cmd);
        redis(&args)
    };
    for refused in [
        &["GET", "some-other-app:key"][..],
        &["FLUSHALL"],
        &["KEYS", "*"],
        &["CONFIG", "GET", "*"],
    ] {
        let answer = as_runner(refused);
        assert!(answer.contains("NOPERM"), "{refused:?} answered {answer:?}");
    }
    redis(&["ACL", "DELUSER", &user]);
    for name in ["runner", "scheduler", "control"] {
        d.proc(name).terminate();
    }
}
