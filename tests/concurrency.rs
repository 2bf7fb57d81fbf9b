//! Concurrency limits end to end. Two hundred runs triggered at once of four tasks sharing the
//! concurrency key `site:example.com` with limit 3, and runs of a task with `max_concurrency` 2,
//! on runners with more free slots than either limit: never more of them running at once than
//! the limit (read from the runs' `started_at` and `finished_at`), and every run succeeds, none
//! starved. On `antcode up` in process (SQLite, the embedded broker) and on control, a scheduler
//! and two runners as processes on PostgreSQL and Redis. Through the edge: `gateway.rs`. The
//! broker's side of the contract, on both brokers, is the broker conformance suite's `gates`.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use antcode::up::{self, UpConfig};
use antcode_testkit::api::{peak_running, Api};
use antcode_testkit::procs::Procs;

const BIN: &str = env!("CARGO_BIN_EXE_antcode");
const PASSWORD: &str = "concurrency-password-not-default";

/// Runs of the tasks sharing the key, and the key's limit.
const KEY_RUNS: usize = 200;
const KEY_LIMIT: usize = 3;
/// Runs of the task with `max_concurrency`, and that limit.
const CAPPED_RUNS: usize = 20;
const CAPPED_LIMIT: usize = 2;
/// Long enough for every run to end with room to spare on a loaded 2-core machine.
const ALL_ENDED: Duration = Duration::from_secs(600);

/// A short run: long enough that runs of a key overlap when nothing bounds them.
const CODE: &str = "import time\ntime.sleep(0.2)\nprint('done')\n";

/// Refused bodies change nothing and name the field.
async fn refuses_bad_limits(api: &Api) {
    let project = api.upload("bad-limits", "main.py", CODE.into(), &[]).await;
    for (extra, field) in [
        (json!({"max_concurrency": 0}), "max_concurrency"),
        (json!({"max_concurrency": 10_001}), "max_concurrency"),
        (
            json!({"concurrency": {"key": "k", "limit": 0}}),
            "concurrency.limit",
        ),
        (
            json!({"concurrency": {"key": "k".repeat(129), "limit": 1}}),
            "concurrency.key",
        ),
        (
            json!({"concurrency": {"key": "a\u{7}b", "limit": 1}}),
            "concurrency.key",
        ),
    ] {
        let mut body = json!({"name": "bad-limits", "project_id": project["id"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, problem) = api.post("/tasks", body).await;
        assert_eq!(status, 422, "{extra}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(field),
            "{extra}: {problem}"
        );
    }
    let tasks = api.get("/tasks").await;
    assert!(
        !tasks.to_string().contains("bad-limits"),
        "a refused task was created: {tasks}"
    );
}

/// A queued run of `task` says, while the limit holds it back, which limit (`names`): polled,
/// since the runs holding the slots come and go.
async fn waits_name_the_full_limit(api: &Api, task: &str, names: &str) {
    let mut seen = vec![];
    for _ in 0..200 {
        let page = api
            .get(&format!("/runs?task_id={task}&state=queued&limit=1"))
            .await;
        let Some(run) = page["items"][0]["id"].as_str() else {
            break;
        };
        let run = api.get(&format!("/runs/{run}")).await;
        let why = run["waiting"].as_str().unwrap_or_default().to_string();
        if why.contains(names) {
            return;
        }
        seen.push(why);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no queued run of {task} named {names:?} as what it waits for: {seen:?}");
}

/// The scenario on a running system whose runners have more than `KEY_LIMIT + CAPPED_LIMIT`
/// free slots; `context` says what the processes logged, for a failure.
async fn limits_hold_under_a_burst(api: &Api, context: &dyn Fn() -> String) {
    refuses_bad_limits(api).await;
    let site = json!({"concurrency": {"key": "site:example.com", "limit": KEY_LIMIT}});
    let mut keyed = vec![];
    for i in 0..4 {
        keyed.push(
            api.script_task(&format!("site-{i}"), CODE, site.clone())
                .await,
        );
    }
    let capped = api
        .script_task("capped", CODE, json!({"max_concurrency": CAPPED_LIMIT}))
        .await;
    let task = api.get(&format!("/tasks/{capped}")).await;
    assert_eq!(task["max_concurrency"], CAPPED_LIMIT, "{task}");

    // Every trigger at once, the keyed tasks' interleaved with the capped task's.
    let mut triggers: Vec<&String> = (0..KEY_RUNS).map(|i| &keyed[i % keyed.len()]).collect();
    for i in 0..CAPPED_RUNS {
        triggers.insert(i * (KEY_RUNS / CAPPED_RUNS), &capped);
    }
    let runs: Vec<String> = futures::stream::iter(triggers)
        .map(|t| api.triggered(t))
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(runs.len(), KEY_RUNS + CAPPED_RUNS);
    waits_name_the_full_limit(api, &capped, "max_concurrency 2").await;
    waits_name_the_full_limit(api, &keyed[0], "concurrency key site:example.com").await;

    let mut site_runs: Vec<Value> = vec![];
    for t in &keyed {
        site_runs.extend(
            api.ended_runs(t, KEY_RUNS / keyed.len(), ALL_ENDED, context)
                .await,
        );
    }
    let capped_runs = api
        .ended_runs(&capped, CAPPED_RUNS, ALL_ENDED, context)
        .await;
    for (runs, n) in [(&site_runs, KEY_RUNS), (&capped_runs, CAPPED_RUNS)] {
        assert_eq!(runs.len(), n);
        let failed: Vec<&Value> = runs.iter().filter(|r| r["state"] != "succeeded").collect();
        assert!(
            failed.is_empty(),
            "runs did not succeed: {failed:?}\n{}",
            context()
        );
    }
    let (site_peak, capped_peak) = (peak_running(&site_runs), peak_running(&capped_runs));
    assert!(
        site_peak <= KEY_LIMIT,
        "{site_peak} runs of key site:example.com at once, over its limit {KEY_LIMIT}"
    );
    assert!(
        capped_peak <= CAPPED_LIMIT,
        "{capped_peak} runs of the capped task at once, over its max_concurrency {CAPPED_LIMIT}"
    );
    // The limits bound the runs, they do not serialise them: with this many waiting and free
    // slots to spare, runs of each overlapped.
    assert!(
        site_peak >= 2 && capped_peak >= 2,
        "{site_peak}, {capped_peak}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = UpConfig::new(dir.path().join("up"));
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    cfg.runner_slots = 8;
    let up = up::start(cfg).await.expect("antcode up starts");
    let api = Api::login(up.control_addr.port(), PASSWORD).await;
    limits_hold_under_a_burst(&api, &String::new).await;
    up.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_on_postgres_and_redis() {
    let mut p = Procs::on_postgres_and_redis(BIN, "concurrency", PASSWORD).await;
    let port = p.spawn_control().await;
    p.spawn_scheduler("scheduler");
    p.spawn_runner_with("runner-a", &["--slots", "4"]);
    p.spawn_runner_with("runner-b", &["--slots", "4"]);
    let api = Api::login(port, PASSWORD).await;
    limits_hold_under_a_burst(&api, &|| p.logs()).await;
    p.assert_alive();
}
