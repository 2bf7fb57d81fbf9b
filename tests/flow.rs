//! Run dependencies end to end on PostgreSQL and Redis, with control, a scheduler and a runner
//! as processes: a run's result fans out into one run per element, and a fan-in runs once after
//! all of them succeeded, while the runner and the scheduler (leader and recorder) are killed
//! with SIGKILL between the steps. No step is lost and none runs twice. The links are checked
//! when a task is saved: unknown tasks and cycles are refused, and nothing is written.

use serde_json::{json, Value};

use antcode_testkit::api::Api;
use antcode_testkit::db::fresh_postgres;
use antcode_testkit::procs::Procs;
use antcode_testkit::redis::redis_url;

const BIN: &str = env!("CARGO_BIN_EXE_antcode");
const PASSWORD: &str = "flow-password-not-default";

async fn start() -> (Procs, Api) {
    let mut p = Procs::new(BIN, vec![]);
    let blobs = p.dir.path().join("blobs").display().to_string();
    p.env = vec![
        ("ANTCODE_DATABASE_URL".into(), fresh_postgres().await),
        ("ANTCODE_REDIS_URL".into(), redis_url(0, "flow")),
        ("ANTCODE_BLOB_URL".into(), format!("file://{blobs}")),
        ("ANTCODE_ADMIN_PASSWORD".into(), PASSWORD.into()),
        (
            "ANTCODE_SECRET_KEY".into(),
            "flow-secret-key-0123456789abcdef".into(),
        ),
        // A killed runner's leases expire, and its runs are retried, within seconds.
        ("ANTCODE_LEASE_TTL_S".into(), "3".into()),
        ("ANTCODE_LOST_AFTER_S".into(), "3".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let port = p.spawn_control().await;
    p.spawn_scheduler("scheduler");
    p.spawn_runner_with("runner", &["--slots", "4"]);
    (p, Api::login(port, PASSWORD).await)
}

/// The runs of `root`'s group, as `GET /runs/{id}/group` shows them.
async fn group(api: &Api, root: &str) -> Value {
    api.get(&format!("/runs/{root}/group")).await
}

fn of_task<'a>(group: &'a Value, task: &str) -> Vec<&'a Value> {
    group["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["task_id"] == task)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_and_its_fan_in_survive_kills_between_steps() {
    let (mut p, api) = start().await;
    let square = api
        .script_task(
            "square",
            "import json, os, time\n\
             n = json.loads(os.environ['ANTCODE_PARAMS'])['item']\n\
             time.sleep(2)\n\
             print(json.dumps({'square': n * n}))\n",
            json!({"retry": {"max_attempts": 3, "backoff_s": 1}}),
        )
        .await;
    let split = api
        .script_task(
            "split",
            "import json\nprint(json.dumps({'items': [1, 2, 3, 4, 5]}))\n",
            json!({"on_success": [{"task": square, "for_each": "items"}]}),
        )
        .await;
    let sum = api
        .script_task(
            "sum",
            "import json\nprint(json.dumps({'done': True}))\n",
            json!({"needs": [square]}),
        )
        .await;

    let root = api.triggered(&split).await;
    let first = api.wait_done(&p, &root).await;
    assert_eq!(first["state"], "succeeded", "{first}\n{}", p.logs());

    // The squares were created with the split's end; kill the scheduler and the runner while
    // they run, then bring both back.
    let squares = of_task(&group(&api, &root).await, &square).len();
    assert_eq!(squares, 5, "one run per element");
    p.proc("scheduler").kill9();
    p.proc("runner").kill9();
    p.spawn_scheduler("scheduler");
    p.spawn_runner_with("runner", &["--slots", "4"]);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let g = loop {
        let g = group(&api, &root).await;
        let done = of_task(&g, &sum).iter().any(|r| r["state"] == "succeeded");
        if done {
            break g;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fan-in never ran: {g}\n{}",
            p.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let squares = of_task(&g, &square);
    assert_eq!(squares.len(), 5, "no element ran twice or was lost: {g}");
    let mut got: Vec<i64> = squares
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "succeeded", "{r}");
            assert_eq!(r["parent_id"], root.as_str());
            r["result"]["square"].as_i64().unwrap()
        })
        .collect();
    got.sort();
    assert_eq!(got, [1, 4, 9, 16, 25], "each got its element as params");
    assert_eq!(of_task(&g, &sum).len(), 1, "the fan-in ran once: {g}");
    let edges = g["edges"].as_array().unwrap();
    assert_eq!(
        edges.iter().filter(|e| e["kind"] == "for_each").count()
            + edges.iter().filter(|e| e["kind"] == "on_success").count(),
        5,
        "{edges:?}"
    );
    assert_eq!(edges.iter().filter(|e| e["kind"] == "needs").count(), 5);
    // Every run's page names its group.
    let joined = of_task(&g, &sum)[0]["id"].as_str().unwrap().to_string();
    let run = api.get(&format!("/runs/{joined}")).await;
    assert_eq!(run["group_id"], root.as_str());
    assert_eq!(run["trigger"], "needs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_to_unknown_tasks_or_in_a_cycle_are_refused() {
    let (p, api) = start().await;
    let code = "print('x')\n";
    let a = api.script_task("a", code, json!({})).await;
    let b = api.script_task("b", code, json!({"on_success": [a]})).await;
    let waits = api.script_task("waits", code, json!({"needs": [a]})).await;
    let before = api.get(&format!("/tasks/{a}")).await;

    let cases = [
        (json!({"on_success": [b]}), "cycle"),
        (json!({"on_failure": [a]}), "cycle"),
        (json!({"needs": [waits]}), "cycle"),
        (
            json!({"on_success": ["01a25068-0000-7000-8000-000000000000"]}),
            "does not exist",
        ),
        (json!({"on_success": [b, b]}), "twice"),
        (
            json!({"on_complete": [{"task": b, "for_each": "a b"}]}),
            "for_each",
        ),
        (json!({"on_success": [{"tsk": b}]}), ""),
    ];
    for (patch, why) in cases {
        let (status, body) = api.patch(&format!("/tasks/{a}"), patch.clone()).await;
        assert!((400..500).contains(&status), "{patch}: {status} {body}");
        let text = body.to_string();
        assert!(text.contains(why), "{patch}: {body}");
    }
    assert_eq!(
        api.get(&format!("/tasks/{a}")).await,
        before,
        "nothing was written"
    );
    // A diamond is no cycle.
    let c = api.script_task("c", code, json!({"on_success": [a]})).await;
    let (status, body) = api
        .post(
            "/tasks",
            json!({"name": "d", "project_id": before["project_id"], "on_success": [b, c]}),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", p.logs());
}
