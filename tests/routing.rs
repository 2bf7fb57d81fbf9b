//! Label routing end to end on Redis: control, a scheduler and two direct runners as processes
//! on PostgreSQL and Redis, one labelled `gpu=true`. Runs of a task requiring `gpu=true` all run
//! on it; runs pinned to the other by name run there; a run no live runner can take waits,
//! its page saying why. A project's `python_version` routes like a label: to runners that found
//! that Python. A task that prefers a runner runs there, or anywhere once its fallback passed.
//! (The same contract on the in-process broker is in the broker
//! conformance suite; through the edge, in `gateway.rs`.)

use serde_json::{json, Value};

use antcode_testkit::api::Api;
use antcode_testkit::procs::Procs;

const BIN: &str = env!("CARGO_BIN_EXE_antcode");
const PASSWORD: &str = "routing-password-not-default";

async fn start() -> (Procs, Api) {
    let mut p = Procs::on_postgres_and_redis(BIN, "routing", PASSWORD).await;
    let port = p.spawn_control().await;
    p.spawn_scheduler("scheduler");
    p.spawn_runner_with("gpu-box", &["--label", "gpu=true", "--slots", "2"]);
    p.spawn_runner_with("cpu-box", &["--slots", "2"]);
    (p, Api::login(port, PASSWORD).await)
}

/// The name of the worker that ran `run`.
async fn ran_on(api: &Api, p: &Procs, run: &str) -> String {
    let run = api
        .wait_for(p, run, "the run to end", |r| {
            !["queued", "running"].contains(&r["state"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", p.logs());
    let workers = api.get("/workers").await;
    let worker = run["worker_id"].as_str().unwrap();
    let found = workers
        .as_array()
        .or_else(|| workers["items"].as_array())
        .unwrap()
        .iter()
        .find(|w| w["id"] == worker)
        .cloned()
        .unwrap_or(Value::Null);
    found["name"].as_str().unwrap_or("?").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_go_to_the_runners_their_labels_name() {
    let (p, api) = start().await;
    let code = "print('routed')\n";
    let gpu = api
        .script_task("gpu", code, json!({"labels": {"gpu": "true"}}))
        .await;
    let pinned = api
        .script_task("pinned", code, json!({"labels": {"runner": "cpu-box"}}))
        .await;
    let mut runs = vec![];
    for _ in 0..4 {
        runs.push(("gpu-box", api.triggered(&gpu).await));
        runs.push(("cpu-box", api.triggered(&pinned).await));
    }
    for (want, run) in &runs {
        assert_eq!(ran_on(&api, &p, run).await, *want, "run {run}");
    }

    // Python 3.11 is what CI and this machine have; nobody has 3.4.
    let mut by_python = vec![];
    for (version, name) in [("3.11", "py311"), ("3.4", "py34")] {
        let project = api
            .upload(
                name,
                "main.py",
                b"import sys\nprint(sys.version)\n".to_vec(),
                &[("python_version", version)],
            )
            .await;
        assert_eq!(project["current_version"], 1, "{project}");
        let (status, task) = api
            .post(
                "/tasks",
                json!({"name": name, "project_id": project["id"], "timeout_s": 120}),
            )
            .await;
        assert_eq!(status, 201, "{task}");
        by_python.push(task["id"].as_str().unwrap().to_string());
    }
    let run = api.triggered(&by_python[0]).await;
    let on = ran_on(&api, &p, &run).await;
    assert!(["gpu-box", "cpu-box"].contains(&on.as_str()), "{on}");
    assert!(api
        .text(&format!("/runs/{run}/logs"))
        .await
        .starts_with("3.11"));

    // Nobody has gpu=false; nobody serves queue `nobody`; nobody has Python 3.4.
    let unmatched = api
        .script_task("unmatched", code, json!({"labels": {"gpu": "false"}}))
        .await;
    let unserved = api
        .script_task("unserved", code, json!({"queue": "nobody"}))
        .await;
    for (task, why) in [
        (&unmatched, "no live runner matches gpu=false"),
        (&unserved, "no live runner serves queue nobody"),
        (&by_python[1], "no live runner matches python3.4=yes"),
    ] {
        let run = api.triggered(task).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let page = api.get(&format!("/runs/{run}")).await;
        assert_eq!(page["state"], "queued", "{page}");
        assert_eq!(page["waiting"], why, "{page}");
        let (status, _) = api.post(&format!("/runs/{run}/cancel"), json!({})).await;
        assert_eq!(status, 200);
    }
}

/// A task that prefers a runner runs there while it is up; one preferring a runner nobody has
/// waits for its `fallback_s`, then runs on any runner its labels allow, and its history says
/// it fell back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preferred_runner_is_tried_first_then_any() {
    let (p, api) = start().await;
    let code = "print('preferred')\n";
    let prefer = |runner: &str, fallback_s: u64| json!({"prefer": {"labels": {"runner": runner}, "fallback_s": fallback_s}});
    let to_cpu = api
        .script_task("to-cpu", code, prefer("cpu-box", 600))
        .await;
    let to_nobody = api
        .script_task("to-nobody", code, prefer("nobody", 5))
        .await;
    for _ in 0..3 {
        let run = api.triggered(&to_cpu).await;
        assert_eq!(ran_on(&api, &p, &run).await, "cpu-box", "run {run}");
    }
    let run = api.triggered(&to_nobody).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let waiting = api.get(&format!("/runs/{run}")).await;
    assert_eq!(waiting["state"], "queued", "before its fallback: {waiting}");
    let why = waiting["waiting"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("no live runner matches runner=nobody; from ")
            && why.ends_with(" any runner its labels allow may take it"),
        "{waiting}"
    );
    let on = ran_on(&api, &p, &run).await;
    assert!(["gpu-box", "cpu-box"].contains(&on.as_str()), "{on}");
    let page = api.get(&format!("/runs/{run}")).await;
    let history = page["history"].as_array().unwrap();
    assert!(
        history.iter().any(|e| e["kind"] == "fell_back"),
        "{history:?}"
    );

    // A preference must name labels and a fallback within a day.
    for bad in [
        json!({"prefer": {"labels": {}, "fallback_s": 5}}),
        json!({"prefer": {"labels": {"runner": "x"}, "fallback_s": 0}}),
        json!({"prefer": {"labels": {"runner": "x"}, "fallback_s": 86_401}}),
        json!({"prefer": {"labels": {"runner": "x"}}}),
    ] {
        let (status, body) = api.patch(&format!("/tasks/{to_cpu}"), bad.clone()).await;
        assert!((400..500).contains(&status), "{bad}: {status} {body}");
    }
}
