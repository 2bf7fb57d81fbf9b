//! End to end, in process: `antcode up` on ephemeral ports with real SQLite, the in-process
//! broker, a local blob directory, and real Python under uv.

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

use antcode::up::{self, Up, UpConfig};
use antcode_testkit::api::{terminal, Api};
use antcode_testkit::fixtures::zip_of;
use antcode_testkit::procs::{marked, process_gone};

const PASSWORD: &str = "e2e-password-not-default";

async fn start(data_dir: &Path, runner: bool) -> Up {
    let mut cfg = UpConfig::new(data_dir.to_path_buf());
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    cfg.runner = runner;
    cfg.lost_after = Duration::from_secs(2);
    up::start(cfg).await.expect("antcode up starts")
}

/// The admin API of an in-process `up`.
async fn login(up: &Up) -> Api {
    Api::login(up.control_addr.port(), PASSWORD).await
}

async fn create_task(c: &Api, name: &str, project: &Value, extra: Value) -> Value {
    let mut body = json!({"name": name, "project_id": project["id"]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, task) = c.post("/tasks", body).await;
    assert_eq!(status, 201, "create task {name}: {task}");
    task
}

async fn trigger(c: &Api, task: &Value) -> Value {
    let (status, run) = c.trigger(task["id"].as_str().unwrap()).await;
    assert_eq!(status, 201, "trigger: {run}");
    assert_eq!(run["state"], "queued");
    run
}

async fn wait_terminal(c: &Api, run: &Value, limit: Duration) -> Value {
    let id = run["id"].as_str().unwrap();
    c.wait_run(id, "a terminal state", limit, terminal, &String::new)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path(), true).await;
    let c = login(&up).await;

    // A zip project whose requirements.txt brings a third-party package.
    let main = "import sys, six\nprint('hello from six', six.__version__, *sys.argv[1:])\nprint('to stderr', file=sys.stderr)\n";
    let project = c
        .upload(
            "deps",
            "deps.zip",
            zip_of(&[
                ("main.py", main.as_bytes()),
                ("requirements.txt", b"six==1.16.0\n"),
            ]),
            &[],
        )
        .await;
    let task = create_task(&c, "deps", &project, json!({"args": ["a b", "c"]})).await;
    let run = wait_terminal(&c, &trigger(&c, &task).await, Duration::from_secs(180)).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0);
    assert!(run["duration_ms"].as_i64().is_some());
    let logs = c
        .text(&format!("/runs/{}/logs", run["id"].as_str().unwrap()))
        .await;
    assert!(logs.contains("hello from six 1.16.0 a b c"), "logs: {logs}");
    assert!(logs.contains("to stderr"), "logs: {logs}");

    // A failing single-file script keeps its exit code.
    let failing = c
        .upload(
            "failing",
            "fail.py",
            b"import sys\nprint('about to fail')\nsys.exit(3)\n".to_vec(),
            &[],
        )
        .await;
    let task = create_task(&c, "failing", &failing, json!({})).await;
    let run = wait_terminal(&c, &trigger(&c, &task).await, Duration::from_secs(60)).await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exit_code"], 3);
    let logs = c
        .text(&format!("/runs/{}/logs", run["id"].as_str().unwrap()))
        .await;
    assert!(logs.contains("about to fail"), "logs: {logs}");

    // Past its timeout the whole process group dies, including a spawned grandchild. The task
    // runs in its own PID namespace, so its processes are found from the host by their run
    // marker, while the run is still going.
    let sleeper = "import subprocess, sys, time\np = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\nprint('spawned', flush=True)\ntime.sleep(300)\n";
    let sleepy = c
        .upload("sleepy", "sleepy.py", sleeper.as_bytes().to_vec(), &[])
        .await;
    let task = create_task(&c, "sleepy", &sleepy, json!({"timeout_s": 5})).await;
    let run = trigger(&c, &task).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pids = marked(&run_id);
    while pids.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the task and its child never ran: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        pids = marked(&run_id);
    }
    let run = wait_terminal(&c, &run, Duration::from_secs(60)).await;
    assert_eq!(run["state"], "timed_out", "{run}");
    let deadline = Instant::now() + Duration::from_secs(15);
    for pid in pids {
        while !process_gone(pid) {
            assert!(
                Instant::now() < deadline,
                "grandchild {pid} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let metrics = reqwest::get(format!("http://{}/metrics", up.control_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("antcode_runs_finished_total"), "{metrics}");
    assert!(
        metrics.contains("antcode_run_duration_seconds"),
        "{metrics}"
    );
    up.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_run_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();

    // First life: no runner, so the triggered run stays queued.
    let up = start(dir.path(), false).await;
    let c = login(&up).await;
    let project = c
        .upload(
            "persist",
            "persist.py",
            b"print('ran after restart')\n".to_vec(),
            &[],
        )
        .await;
    let task = create_task(&c, "persist", &project, json!({})).await;
    let run = trigger(&c, &task).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.get(&format!("/runs/{}", run["id"].as_str().unwrap()))
            .await["state"],
        "queued"
    );
    up.stop().await.unwrap();

    // Second life: everything is still there and the queued run is executed.
    let up = start(dir.path(), true).await;
    let c = login(&up).await;
    assert_eq!(
        c.get(&format!("/tasks/{}", task["id"].as_str().unwrap()))
            .await["name"],
        "persist"
    );
    assert_eq!(
        c.get(&format!("/projects/{}", project["id"].as_str().unwrap()))
            .await["name"],
        "persist"
    );
    let done = wait_terminal(&c, &run, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let logs = c
        .text(&format!("/runs/{}/logs", run["id"].as_str().unwrap()))
        .await;
    assert!(logs.contains("ran after restart"), "logs: {logs}");
    up.stop().await.unwrap();
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let (p, Ok(kind)) = (e.path(), e.file_type()) else {
            continue;
        };
        if kind.is_symlink() {
            continue; // venv links point at the system's Python
        } else if kind.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declared_secrets_reach_only_their_tasks_and_are_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path(), true).await;
    let c = login(&up).await;
    let value = format!("tok-{}-ñ", uuid_like());
    let reversed: String = value.chars().rev().collect();

    let res = c
        .http
        .put(format!("{}/secrets/API_TOKEN", c.base))
        .bearer_auth(&c.token)
        .json(&json!({"value": value}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body = res.text().await.unwrap();
    assert!(!body.contains(&value), "PUT echoed the value: {body}");

    // The script proves it saw the value without printing it: it prints it reversed.
    let script = "import os\nv = os.environ.get('API_TOKEN')\nprint('API_TOKEN', 'absent' if v is None else 'reversed=' + v[::-1])\nprint('RUNNER_ENV', 'ANTCODE_SECRET_KEY' in os.environ)\n";
    let project = c
        .upload("secretive", "secretive.py", script.as_bytes().to_vec(), &[])
        .await;
    let res = c
        .http
        .put(format!("{}/secrets/API_TOKEN/grants", c.base))
        .bearer_auth(&c.token)
        .json(&json!({"projects": [project["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "granting the secret to the project");
    let with = create_task(
        &c,
        "with-secret",
        &project,
        json!({"secrets": ["API_TOKEN"]}),
    )
    .await;
    let without = create_task(&c, "without-secret", &project, json!({})).await;
    let (status, refused) = c
        .post(
            "/tasks",
            json!({"name": "typo", "project_id": project["id"], "secrets": ["API_TOKN"]}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().starts_with("secrets:"),
        "{refused}"
    );

    let run_with = wait_terminal(&c, &trigger(&c, &with).await, Duration::from_secs(120)).await;
    let run_without =
        wait_terminal(&c, &trigger(&c, &without).await, Duration::from_secs(120)).await;
    assert_eq!(run_with["state"], "succeeded", "{run_with}");
    assert_eq!(run_without["state"], "succeeded", "{run_without}");
    let log_with = c
        .text(&format!("/runs/{}/logs", run_with["id"].as_str().unwrap()))
        .await;
    let log_without = c
        .text(&format!(
            "/runs/{}/logs",
            run_without["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        log_with.contains(&format!("API_TOKEN reversed={reversed}")),
        "{log_with}"
    );
    assert!(log_without.contains("API_TOKEN absent"), "{log_without}");
    assert!(log_with.contains("RUNNER_ENV False"), "{log_with}");

    // A secret in use cannot be deleted out from under its task.
    let res = c
        .http
        .delete(format!("{}/secrets/API_TOKEN", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);

    // Nowhere in what the API shows...
    let mut seen = String::new();
    for path in ["/secrets", "/tasks", "/runs", "/audit?limit=500"] {
        seen.push_str(&c.get(path).await.to_string());
    }
    for run in [&run_with, &run_without] {
        seen.push_str(
            &c.get(&format!("/runs/{}", run["id"].as_str().unwrap()))
                .await
                .to_string(),
        );
    }
    assert!(seen.contains("API_TOKEN"), "the names are shown");
    assert!(
        !seen.contains(&value),
        "a secret value reached an API response"
    );
    up.stop().await.unwrap();

    // ...nor in the SQLite database (its WAL included), nor anywhere else in the data dir, but the
    // sealed row is there.
    let db = std::fs::read(dir.path().join("antcode.db")).unwrap();
    assert!(!db.is_empty());
    assert_eq!(
        files_containing(dir.path(), value.as_bytes()),
        Vec::<String>::new()
    );
    assert!(!files_containing(dir.path(), b"API_TOKEN").is_empty());
    let key = std::fs::metadata(dir.path().join("secret.key")).unwrap();
    assert_eq!(key.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }

    // The key file is reused: after a restart the secret still opens.
    let up = start(dir.path(), true).await;
    let c = login(&up).await;
    let again = wait_terminal(&c, &trigger(&c, &with).await, Duration::from_secs(120)).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    let log = c
        .text(&format!("/runs/{}/logs", again["id"].as_str().unwrap()))
        .await;
    assert!(
        log.contains(&format!("API_TOKEN reversed={reversed}")),
        "{log}"
    );
    up.stop().await.unwrap();
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}{}", std::process::id())
}

/// A script that runs for three seconds, saying when it starts and ends.
const THREE_SECONDS: &str =
    "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('done', flush=True)\n";

/// `up` whose runner serves `default` cold and `warm` warm, stopping with `grace`.
async fn start_draining(data_dir: &Path, grace: Duration) -> Up {
    let mut cfg = UpConfig::new(data_dir.to_path_buf());
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    cfg.lost_after = Duration::from_secs(2);
    cfg.queues = vec!["default".into(), "warm".into()];
    cfg.warm_queues = vec!["warm".into()];
    cfg.grace = grace;
    up::start(cfg).await.expect("antcode up starts")
}

/// Triggers `per_queue` runs of [`THREE_SECONDS`] on each of the cold and the warm queue and
/// returns once every one has started its script; the run ids.
async fn runs_in_flight(c: &Api, per_queue: usize) -> Vec<String> {
    let project = c
        .upload("three", "three.py", THREE_SECONDS.as_bytes().to_vec(), &[])
        .await;
    let mut runs = vec![];
    for queue in ["default", "warm"] {
        let task = create_task(
            c,
            &format!("three-{queue}"),
            &project,
            json!({"queue": queue}),
        )
        .await;
        for _ in 0..per_queue {
            runs.push(trigger(c, &task).await["id"].as_str().unwrap().to_string());
        }
    }
    for id in &runs {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !c
            .text(&format!("/runs/{id}/logs"))
            .await
            .contains("started")
        {
            let run = c.get(&format!("/runs/{id}")).await;
            assert!(
                Instant::now() < deadline && !terminal(&run),
                "run {id} never started its script: {run}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    runs
}

/// A stop with runs in flight waits for them: one second into four three-second runs (two
/// cold, two warm), `up` stops, and after a restart every one has succeeded in its first
/// attempt with its whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_lets_running_runs_finish() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_draining(dir.path(), Duration::from_secs(30)).await;
    let c = login(&up).await;
    let runs = runs_in_flight(&c, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    up.stop().await.unwrap();

    let up = start(dir.path(), false).await;
    let c = login(&up).await;
    for id in &runs {
        let run = c.get(&format!("/runs/{id}")).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 1, "{run}");
        let logs = c.text(&format!("/runs/{id}/logs")).await;
        assert!(logs.contains("started") && logs.contains("done"), "{logs}");
    }
    up.stop().await.unwrap();
}

/// Past its grace period a stop interrupts what still runs and hands it back: after the
/// restart each run (cold and warm) runs again as attempt 2 and succeeds, and the interruption
/// used up none of its retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_past_its_grace_hands_runs_back() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_draining(dir.path(), Duration::from_millis(200)).await;
    let c = login(&up).await;
    let runs = runs_in_flight(&c, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    up.stop().await.unwrap();

    let up = start_draining(dir.path(), Duration::from_secs(30)).await;
    let c = login(&up).await;
    for id in &runs {
        let handed_back = c.get(&format!("/runs/{id}")).await;
        assert_ne!(handed_back["state"], "lost", "{handed_back}");
        let run = wait_terminal(&c, &handed_back, Duration::from_secs(60)).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(
            (&run["attempt"], &run["max_attempts"]),
            (&json!(2), &json!(2)),
            "{run}"
        );
        let history = run["history"].as_array().unwrap();
        let interrupted = history
            .iter()
            .find(|h| h["kind"] == "interrupted")
            .unwrap_or_else(|| panic!("no interruption in the history: {run}"));
        assert_eq!(interrupted["attempt"], 1);
        assert!(
            interrupted["detail"]
                .as_str()
                .unwrap()
                .contains("interrupted by runner shutdown"),
            "{interrupted}"
        );
        // Each attempt's log stays reachable: the interrupted one ends with why.
        let first = c.text(&format!("/runs/{id}/logs?attempt=1")).await;
        assert!(first.contains("started"), "{first}");
        assert!(
            first.contains("[antcode] interrupted by runner shutdown"),
            "{first}"
        );
        assert!(!first.contains("done"), "{first}");
        let second = c.text(&format!("/runs/{id}/logs?attempt=2")).await;
        assert!(
            second.contains("started") && second.contains("done"),
            "{second}"
        );
        assert!(!second.contains("interrupted"), "{second}");
    }
    // An attempt the run never had is a 404, a bad value a 400, both problem+json.
    let id = &runs[0];
    for (query, status) in [("3", 404), ("0", 400), ("x", 400), ("-1", 400)] {
        let res = c
            .http
            .get(format!("{}/runs/{id}/logs?attempt={query}", c.base))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "attempt={query}");
        let kind = res.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(kind, "application/problem+json", "attempt={query}");
    }
    up.stop().await.unwrap();
}

/// Run parameters: checked against the task's schema (every bad field named in one 422, nothing
/// created), defaults filled in, delivered to the process as `ANTCODE_PARAMS`, kept on the run
/// and by its retry; cold and warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn params_are_checked_delivered_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path(), true).await;
    let c = login(&up).await;
    // Reads its params from the variable and the file; answers on stdout, or in the result
    // file when MODE says so.
    let code = "import json, os, sys\n\
        p = json.loads(os.environ['ANTCODE_PARAMS'])\n\
        assert json.load(open(os.environ['ANTCODE_PARAMS_FILE'])) == p\n\
        out = {'greeting': 'hi ' + p['city'], 'days': p['days'], 'args': sys.argv[1:], 'mode': os.environ['MODE']}\n\
        if out['mode'] == 'file':\n    json.dump(out, open(os.environ['ANTCODE_RESULT_FILE'], 'w'))\n    print('{\"not\": \"this\"}')\n\
        else:\n    print(json.dumps(out))\n";
    let schema = json!({"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "maxLength": 20},
        "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 3}}});
    let command = json!({"params": schema, "args": ["a"], "env": {"MODE": "line"}});
    for warm in [false, true] {
        let name = format!("weather-{warm}");
        let mut spec = command.clone();
        spec["warm"] = json!(warm);
        let task = c.script_task(&name, code, spec).await;
        let (status, bad) = c
            .post(
                &format!("/tasks/{task}/trigger"),
                json!({"params": {"days": 9, "zone": "x"}}),
            )
            .await;
        assert_eq!(status, 422, "{bad}");
        let detail = bad["detail"].as_str().unwrap();
        for field in ["params.days", "params.zone", "params.city"] {
            assert!(detail.contains(field), "{field} not named: {detail}");
        }
        let (status, bad) = c
            .post(
                &format!("/tasks/{task}/trigger"),
                json!({"params": {"city": "Rome"}, "env": {"NOT A NAME": "x"}}),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
        let runs = c.get(&format!("/runs?task_id={task}")).await;
        assert_eq!(
            runs["items"].as_array().unwrap().len(),
            0,
            "a refused trigger created a run"
        );

        let (status, done) = c
            .post(
                &format!("/tasks/{task}/invoke?wait_s=120"),
                json!({"params": {"city": "Zürich"}}),
            )
            .await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(done["params"], json!({"city": "Zürich", "days": 3}));
        let line = json!({"greeting": "hi Zürich", "days": 3, "args": ["a"], "mode": "line"});
        assert_eq!(done["result"], line, "{done}");

        // Overrides: other args, env over the task's; the result comes from the file.
        let (status, done) = c
            .post(
                &format!("/tasks/{task}/invoke?wait_s=120"),
                json!({"params": {"city": "Oslo", "days": 1}, "args": ["x", "y"],
                    "env": {"MODE": "file"}}),
            )
            .await;
        assert_eq!(status, 200, "{done}");
        let file = json!({"greeting": "hi Oslo", "days": 1, "args": ["x", "y"], "mode": "file"});
        assert_eq!(done["result"], file, "{done}");
        assert_eq!(
            done["overrides"],
            json!({"args": ["x", "y"], "env": {"MODE": "file"}})
        );
        let (status, again) = c
            .post(
                &format!("/runs/{}/retry", done["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        assert_eq!(status, 201, "{again}");
        assert_eq!(again["params"], done["params"], "a retry keeps the params");
        assert_eq!(again["overrides"], done["overrides"], "and the overrides");
        let again = wait_terminal(&c, &again, Duration::from_secs(120)).await;
        assert_eq!(again["result"], file);
    }
    // A task without a schema takes params as they are; an unknown body field is refused.
    let free = c
        .script_task("free", code, json!({"env": {"MODE": "line"}}))
        .await;
    let (status, run) = c
        .post(
            &format!("/tasks/{free}/trigger"),
            json!({"params": {"city": "Oslo", "days": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        wait_terminal(&c, &run, Duration::from_secs(120)).await["result"]["greeting"],
        "hi Oslo"
    );
    let (status, refused) = c
        .post(&format!("/tasks/{free}/trigger"), json!({"prams": {}}))
        .await;
    assert_eq!(status, 400, "{refused}");

    // A result file that is a link is not followed (the runner reads it, the task chose where
    // it points): the run's result is its last JSON line, and the log says why.
    let linker = c
        .script_task(
            "linker",
            "import json, os\nos.symlink('/etc/hostname', os.environ['ANTCODE_RESULT_FILE'])\nprint(json.dumps({'line': 1}))\n",
            json!({}),
        )
        .await;
    let (status, run) = c.post(&format!("/tasks/{linker}/trigger"), json!({})).await;
    assert_eq!(status, 201, "{run}");
    let run = wait_terminal(&c, &run, Duration::from_secs(120)).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["result"], json!({"line": 1}), "{run}");
    let log = c
        .text(&format!("/runs/{}/logs", run["id"].as_str().unwrap()))
        .await;
    assert!(log.contains("result file ignored"), "{log}");

    // Scheduled runs get the task's schedule_params, checked when the task is saved.
    let project = c.get(&format!("/tasks/{free}")).await["project_id"].clone();
    let mut spec = command.clone();
    spec["name"] = json!("scheduled");
    spec["project_id"] = project;
    spec["schedule"] = json!({"kind": "interval", "every_s": 1});
    spec["schedule_params"] = json!({"days": 2});
    let (status, refused) = c.post("/tasks", spec.clone()).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("schedule_params.city: required"),
        "{refused}"
    );
    spec["schedule_params"] = json!({"city": "Rome"});
    let (status, task) = c.post("/tasks", spec).await;
    assert_eq!(status, 201, "{task}");
    let task = task["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let scheduled = loop {
        let runs = c.get(&format!("/runs?task_id={task}")).await;
        if let Some(r) = runs["items"].as_array().unwrap().first() {
            break r.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled run");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(scheduled["trigger"], "schedule");
    assert_eq!(scheduled["params"], json!({"city": "Rome", "days": 3}));
    up.stop().await.unwrap();
}

/// A long log read in parts: its tail by `Range` (206 with `Content-Range`), any range of it,
/// a range past its end (416), a search that gives each matching line's number and offset (a
/// range from there shows the line), and the whole as a gzip file to download.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_log_is_read_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path(), true).await;
    let c = login(&up).await;
    let code = "for i in range(20000):\n    print(f'line {i} ' + ('ERROR here' if i % 1000 == 7 else 'fine'))\n";
    let task = c.script_task("chatty", code, json!({})).await;
    let id = c.triggered(&task).await;
    let run = wait_terminal(&c, &json!({"id": id}), Duration::from_secs(120)).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let whole = c.text(&format!("/runs/{id}/logs")).await;
    assert_eq!(whole.lines().count(), 20000);
    let total = whole.len();
    let get = |range: Option<&str>, query: &str| {
        let mut req = c
            .http
            .get(format!("{}/runs/{id}/logs{query}", c.base))
            .bearer_auth(&c.token);
        if let Some(range) = range {
            req = req.header("range", range);
        }
        req.send()
    };
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };

    let tail = get(Some("bytes=-1000"), "").await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        header(&tail, "content-range"),
        format!("bytes {}-{}/{total}", total - 1000, total - 1)
    );
    assert_eq!(tail.text().await.unwrap(), whole[total - 1000..]);
    let head = get(Some("bytes=0-99"), "").await.unwrap();
    assert_eq!(head.status(), 206);
    assert_eq!(head.text().await.unwrap(), whole[..100]);
    let past = get(Some(&format!("bytes={total}-")), "").await.unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(header(&past, "content-range"), format!("bytes */{total}"));
    let plain = get(None, "").await.unwrap();
    assert_eq!(
        (plain.status().as_u16(), header(&plain, "accept-ranges")),
        (200, "bytes".to_string())
    );

    let found = c.get(&format!("/runs/{id}/logs/search?q=error")).await;
    let matches = found["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 20, "{found}");
    assert_eq!(
        (found["lines"].as_u64(), found["truncated"].as_bool()),
        (Some(20000), Some(false))
    );
    for m in matches {
        let (offset, text) = (m["offset"].as_u64().unwrap(), m["text"].as_str().unwrap());
        let line = m["line"].as_u64().unwrap();
        assert_eq!(text, format!("line {} ERROR here", line - 1));
        let range = format!("bytes={offset}-{}", offset + text.len() as u64 - 1);
        let at = get(Some(&range), "").await.unwrap();
        assert_eq!(at.text().await.unwrap(), text);
    }
    for bad in ["", &"x".repeat(257)] {
        let res = c
            .http
            .get(format!("{}/runs/{id}/logs/search?q={bad}", c.base))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "q={bad}");
    }

    let gz = get(None, "?format=gzip").await.unwrap();
    assert_eq!(header(&gz, "content-type"), "application/gzip");
    assert!(header(&gz, "content-disposition").contains(".log.gz"));
    let bytes = gz.bytes().await.unwrap();
    assert!(bytes.len() < total / 3, "{} of {total}", bytes.len());
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, whole);
    let one = get(None, "?format=gzip&attempt=1").await.unwrap();
    assert_eq!(one.status(), 200);
    let odd = get(None, "?format=zip").await.unwrap();
    assert_eq!(odd.status(), 400);
    up.stop().await.unwrap();
}

/// What an enrolling runner needs besides its key: where the edge is (as `up` runs it) and the
/// cluster CA's certificate, which is the file `up` wrote and never its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_address_and_ca_are_offered_for_enrollment() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path(), false).await;
    let c = login(&up).await;
    let edge = c.get("/edge").await;
    assert_eq!(
        edge,
        json!({"url": format!("https://localhost:{}", up.edge_addr.port()), "ca": true})
    );
    let res = c
        .http
        .get(format!("{}/edge/ca.pem", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-pem-file");
    let pem = res.text().await.unwrap();
    let written = std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap();
    assert_eq!(pem, written);
    assert!(pem.contains("BEGIN CERTIFICATE") && !pem.contains("PRIVATE KEY"));
    up.stop().await.unwrap();
}
