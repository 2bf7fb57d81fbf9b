//! The control plane's REST API end to end over real SQLite, the in-process broker and a local
//! blob directory.

mod common;

use std::time::Duration;

use antcode_core::broker::{LeaseRequest, LogChunk};
use antcode_core::model::{Outcome, RunState};
use antcode_core::time::now_ms;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn login_me_logout_and_wrong_passwords() {
    let s = start().await;
    let token = s.admin().await;
    let me: Value = s.get(&token, "/api/v1/auth/me").await.json().await.unwrap();
    assert_eq!(me["user"]["username"], "admin");
    assert_eq!(me["role"], "admin");
    assert!(me["user"].get("password_hash").is_none());

    let wrong_pw = s
        .post_json(
            "",
            "/api/v1/auth/login",
            json!({"username": "admin", "password": "nope"}),
        )
        .await;
    let a = problem(wrong_pw, 401).await;
    let wrong_user = s
        .post_json(
            "",
            "/api/v1/auth/login",
            json!({"username": "ghost", "password": "nope"}),
        )
        .await;
    let b = problem(wrong_user, 401).await;
    assert_eq!(
        a["detail"], b["detail"],
        "the 401 must not say which part was wrong"
    );

    // No credential, a junk one: 401.
    problem(s.get("", "/api/v1/projects").await, 401).await;
    problem(s.get("acs_junk", "/api/v1/projects").await, 401).await;

    // Logout revokes the token.
    assert_eq!(s.post(&token, "/api/v1/auth/logout").await.status(), 204);
    problem(s.get(&token, "/api/v1/auth/me").await, 401).await;
    s.stop().await;
}

#[tokio::test]
async fn failed_logins_are_throttled() {
    let s = start().await;
    let mut last = 0;
    for _ in 0..12 {
        let resp = s
            .post_json(
                "",
                "/api/v1/auth/login",
                json!({"username": "admin", "password": "bad"}),
            )
            .await;
        last = resp.status().as_u16();
        if last == 429 {
            assert!(resp.headers().get("retry-after").is_some());
            problem(resp, 429).await;
            break;
        }
        assert_eq!(last, 401);
    }
    assert_eq!(last, 429);
    // Even the right password is refused while throttled.
    let resp = s
        .post_json(
            "",
            "/api/v1/auth/login",
            json!({"username": "admin", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(resp.status(), 429);
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("antcode_control_logins_total"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn uploads_py_zip_and_tar_gz_with_versions_and_download() {
    let s = start().await;
    let t = s.admin().await;

    let py = b"print('hello')\n".to_vec();
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("hello.py", py.clone()),
            &[("name", "single"), ("requirements", "six==1.17.0\n")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["current_version"], 1);
    assert_eq!(p["version"]["entrypoint"], "hello.py");
    assert_eq!(p["version"]["requirements"], "six==1.17.0\n");
    assert_eq!(p["version"]["bundle"]["format"], "py");
    let pid = p["id"].as_str().unwrap().to_string();
    let dl = s
        .get(&t, &format!("/api/v1/projects/{pid}/versions/1/download"))
        .await;
    assert_eq!(dl.status(), 200);
    assert_eq!(dl.bytes().await.unwrap().to_vec(), py);

    let zip = zip_of(&[
        ("main.py", b"import lib\n"),
        ("lib.py", b"X=1\n"),
        ("requirements.txt", b"requests\n"),
    ]);
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("proj.zip", zip.clone()),
            &[("name", "zipped")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let z: Value = resp.json().await.unwrap();
    assert_eq!(z["version"]["entrypoint"], "main.py");
    assert_eq!(z["version"]["requirements"], "requests\n");
    assert_eq!(z["version"]["bundle"]["format"], "zip");
    assert_eq!(
        z["version"]["files"],
        json!(["lib.py", "main.py", "requirements.txt"])
    );

    let tgz = tar_gz_of(&[("app/run.py", b"print(1)\n")], &[]);
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("proj.tar.gz", tgz),
            &[("name", "tarred"), ("entrypoint", "app/run.py")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let g: Value = resp.json().await.unwrap();
    assert_eq!(g["version"]["entrypoint"], "app/run.py");
    assert_eq!(g["version"]["bundle"]["format"], "tar.gz");

    // Inline code.
    let resp = s
        .post_json(
            &t,
            "/api/v1/projects",
            json!({"name": "inline", "code": "print(2)\n"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let i: Value = resp.json().await.unwrap();
    assert_eq!(i["version"]["entrypoint"], "main.py");

    // A new version, then a rollback to the first.
    let resp = s
        .upload(
            &t,
            &format!("/api/v1/projects/{pid}/versions"),
            ("hello.py", b"print('v2')\n".to_vec()),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["version"], 2);
    let versions: Value = s
        .get(&t, &format!("/api/v1/projects/{pid}/versions"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    let resp = s
        .http
        .patch(s.url(&format!("/api/v1/projects/{pid}")))
        .bearer_auth(&t)
        .json(&json!({"current_version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back: Value = resp.json().await.unwrap();
    assert_eq!(back["current_version"], 1);
    assert_eq!(back["version"]["version"], 1);

    let list: Value = s
        .get(&t, "/api/v1/projects?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["next_cursor"].is_string());
    s.stop().await;
}

#[tokio::test]
async fn bad_uploads_are_refused_and_write_nothing() {
    let s = start().await;
    let t = s.admin().await;
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("a.py", b"print(1)\n".to_vec()),
            &[("name", "taken")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let files_before = count_files(&s.blob_dir);
    let projects_before: Value = s.get(&t, "/api/v1/projects").await.json().await.unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "blob.bin",
            b"\x7fELF\x02\x01garbage".to_vec(),
            "not a Python file",
        ),
        (
            "evil.zip",
            zip_of(&[("../x.py", b"print(1)")]),
            "parent directory",
        ),
        (
            "abs.tar.gz",
            tar_gz_of(&[("/abs.py", b"print(1)")], &[]),
            "absolute",
        ),
        (
            "link.tar.gz",
            tar_gz_of(&[("main.py", b"print(1)")], &[("pw", "/etc/passwd")]),
            "symlink",
        ),
        (
            // Issue 23: each link looks inside alone; through the first, the second leaves the
            // root, and the file written at `esc` would land above it.
            "chain.tar.gz",
            tar_gz_in_order(&[
                ("main.py", None, b"print(1)"),
                ("a/b/c/d/up", Some("../../../.."), b""),
                ("esc", Some("a/b/c/d/up/../../../../X"), b""),
                ("esc", None, b"owned"),
            ]),
            "outside the bundle",
        ),
        (
            "nomain.zip",
            zip_of(&[("a.py", b"1"), ("b.py", b"2")]),
            "entrypoint",
        ),
        (
            "corrupt.zip",
            b"PK\x03\x04 this is not really a zip".to_vec(),
            "corrupt",
        ),
    ];
    for (i, (name, data, needle)) in cases.into_iter().enumerate() {
        let pname = format!("bad-{i}");
        let resp = s
            .upload(&t, "/api/v1/projects", (name, data), &[("name", &pname)])
            .await;
        let body = problem(resp, 400).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{name}: {detail}");
    }
    // Entry point named but absent.
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("ok.zip", zip_of(&[("main.py", b"1")])),
            &[("name", "x"), ("entrypoint", "nope.py")],
        )
        .await;
    problem(resp, 400).await;
    // Duplicate name.
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("b.py", b"print(2)\n".to_vec()),
            &[("name", "taken")],
        )
        .await;
    problem(resp, 409).await;
    // Too large: 413.
    let big = vec![b'#'; 2 * 1024 * 1024];
    let resp = s
        .upload(&t, "/api/v1/projects", ("big.py", big), &[("name", "big")])
        .await;
    assert_eq!(resp.status(), 413);

    assert_eq!(
        count_files(&s.blob_dir),
        files_before,
        "a refused upload left a blob behind"
    );
    let projects_after: Value = s.get(&t, "/api/v1/projects").await.json().await.unwrap();
    assert_eq!(projects_before["items"], projects_after["items"]);
    s.stop().await;
}

async fn project_and_task(s: &Server, t: &str) -> (String, String) {
    let p: Value = s
        .post_json(
            t,
            "/api/v1/projects",
            json!({"name": "p", "code": "print('hi')\n"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let pid = p["id"].as_str().unwrap().to_string();
    let resp = s
        .post_json(
            t,
            "/api/v1/tasks",
            json!({"name": "job", "project_id": pid, "args": ["a"], "env": {"API_KEY": "s3cret"},
                   "timeout_s": 60, "retry": {"max_attempts": 2, "backoff_s": 1, "max_backoff_s": 5}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["retry"]["max_attempts"], 2);
    assert_eq!(task["queue"], "default");
    assert_eq!(task["warm"], false, "cold starts are the default");
    (pid, task["id"].as_str().unwrap().to_string())
}

/// Plays a runner (see [`play_runner`]), with a small archive if `archive`.
async fn fake_runner(s: &Server, lines: &[&str], archive: bool) -> String {
    play_runner(s, lines, archive.then(|| gzip(b"archived log\n"))).await
}

#[tokio::test]
async fn tasks_runs_cancel_retry_logs() {
    let s = start().await;
    let t = s.admin().await;
    let (pid, tid) = project_and_task(&s, &t).await;

    // Malformed and invalid bodies name the field.
    let resp = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "x", "project_id": pid, "timeout_s": "soon"}),
        )
        .await;
    let body = problem(resp, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("timeout_s"),
        "{body}"
    );
    let resp = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "x", "project_id": pid, "warm": "yes"}),
        )
        .await;
    let body = problem(resp, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("warm"), "{body}");
    let resp = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "x", "project_id": pid, "retry": {"max_attempts": 0}}),
        )
        .await;
    let body = problem(resp, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("max_attempts"),
        "{body}"
    );
    let resp = s
        .http
        .post(s.url("/api/v1/tasks"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    problem(resp, 400).await;
    let ghost = "01900000-0000-7000-8000-000000000000";
    let resp = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "x", "project_id": ghost}),
        )
        .await;
    let body = problem(resp, 404).await;
    assert!(body["detail"].as_str().unwrap().contains("project_id"));

    // Unknown ids.
    problem(s.get(&t, &format!("/api/v1/runs/{ghost}")).await, 404).await;
    problem(s.get(&t, "/api/v1/tasks/not-an-id").await, 404).await;
    problem(
        s.post(&t, &format!("/api/v1/tasks/{ghost}/trigger")).await,
        404,
    )
    .await;
    problem(s.get(&t, "/api/v1/no/such/route").await, 404).await;

    // Trigger: a queued run, and its job in the broker.
    let resp = s.post(&t, &format!("/api/v1/tasks/{tid}/trigger")).await;
    assert_eq!(resp.status(), 201);
    let run: Value = resp.json().await.unwrap();
    assert_eq!(run["state"], "queued");
    assert_eq!(run["attempt"], 1);
    let rid = run["id"].as_str().unwrap().to_string();
    let depths = s.broker.queue_depths().await.unwrap();
    assert!(
        depths.iter().any(|(q, n)| q == "default" && *n == 1),
        "{depths:?}"
    );
    // The same depth through the API, which the dashboard reads.
    let queues: Value = s.get(&t, "/api/v1/queues").await.json().await.unwrap();
    assert_eq!(
        queues["items"],
        json!([{"name": "default", "depth": 1}]),
        "{queues}"
    );

    // Cancel while queued.
    let resp = s.post(&t, &format!("/api/v1/runs/{rid}/cancel")).await;
    assert_eq!(resp.status(), 200);
    let c: Value = resp.json().await.unwrap();
    assert_eq!(c["state"], "cancelled");
    problem(s.post(&t, &format!("/api/v1/runs/{rid}/cancel")).await, 409).await;
    let detail: Value = s
        .get(&t, &format!("/api/v1/runs/{rid}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(detail["history"].as_array().unwrap().len() >= 2);

    // Retry: a new run with trigger "retry", leased by a fake runner that writes logs.
    let resp = s.post(&t, &format!("/api/v1/runs/{rid}/retry")).await;
    assert_eq!(resp.status(), 201);
    let retried: Value = resp.json().await.unwrap();
    assert_eq!(retried["trigger"], "retry");
    let ran = fake_runner(&s, &["line one\n", "line two\n"], false).await;
    assert_eq!(ran, retried["id"].as_str().unwrap());
    let text = s
        .get(&t, &format!("/api/v1/runs/{ran}/logs"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, "line one\nline two\n");

    // With a log archive, the archive is served.
    s.post(&t, &format!("/api/v1/tasks/{tid}/trigger")).await;
    let archived = fake_runner(&s, &["live\n"], true).await;
    let text = s
        .get(&t, &format!("/api/v1/runs/{archived}/logs"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, "archived log\n");

    // Filters.
    let runs: Value = s
        .get(&t, &format!("/api/v1/runs?task_id={tid}&state=succeeded"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(runs["items"].as_array().unwrap().len(), 2);
    problem(s.get(&t, "/api/v1/runs?state=bogus").await, 400).await;
    problem(s.get(&t, "/api/v1/runs?since=yesterday").await, 400).await;
    let stats: Value = s
        .get(&t, &format!("/api/v1/tasks/{tid}/stats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["counts"]["succeeded"], 2);
    assert_eq!(stats["counts"]["cancelled"], 1);

    // Schedules: validated by the shared schedule module; next fire time and preview.
    let resp = s
        .post_json(&t, "/api/v1/tasks", json!({"name": "cronbad", "project_id": pid, "schedule": {"kind": "cron", "cron": "61 * * * *"}}))
        .await;
    let body = problem(resp, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("schedule.cron"),
        "{body}"
    );
    let resp = s
        .post_json(&t, "/api/v1/tasks", json!({"name": "every", "project_id": pid, "schedule": {"kind": "interval", "every_s": 60}}))
        .await;
    assert_eq!(resp.status(), 201);
    let every: Value = resp.json().await.unwrap();
    assert!(every["next_fire_at"].is_string());
    let eid = every["id"].as_str().unwrap();
    let preview: Value = s
        .get(&t, &format!("/api/v1/tasks/{eid}/preview"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["next"].as_array().unwrap().len(), 5);
    // A bounded interval's task: first fire at its start, preview within its bounds; a bad
    // bound is a 400 naming it and creates nothing.
    let bounded = json!({"kind": "interval", "every_s": 86400,
        "start": "2099-01-01T00:00:00Z", "end": "2099-01-03T00:00:00Z"});
    let resp = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "bounded", "project_id": pid, "schedule": bounded}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["next_fire_at"], "2099-01-01T00:00:00.000Z");
    let bid = task["id"].as_str().unwrap();
    let preview: Value = s
        .get(&t, &format!("/api/v1/tasks/{bid}/preview"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["next"].as_array().unwrap().len(), 3, "{preview}");
    let resp = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "badend", "project_id": pid,
            "schedule": {"kind": "interval", "every_s": 60, "end": "never"}}),
        )
        .await;
    let body = problem(resp, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("schedule.end"),
        "{body}"
    );

    // Pause / patch.
    let paused: Value = s
        .post(&t, &format!("/api/v1/tasks/{tid}/pause"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paused["paused"], true);
    let resp = s
        .http
        .patch(s.url(&format!("/api/v1/tasks/{tid}")))
        .bearer_auth(&t)
        .json(&json!({"retry": {"max_attempts": 5}, "timeout_s": 10, "warm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await.unwrap();
    assert_eq!(patched["retry"]["max_attempts"], 5);
    assert_eq!(patched["retry"]["backoff_s"], 1);
    assert_eq!(patched["timeout_s"], 10);
    assert_eq!(patched["warm"], true);
    assert_eq!(patched["paused"], true);

    // A run of a task deleted since is not retried; a deleted task is not triggered.
    let resp = s.delete(&t, &format!("/api/v1/tasks/{tid}")).await;
    assert_eq!(resp.status(), 204);
    let gone = problem(s.post(&t, &format!("/api/v1/runs/{rid}/retry")).await, 409).await;
    assert!(
        gone["detail"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{gone}"
    );
    problem(
        s.post(&t, &format!("/api/v1/tasks/{tid}/trigger")).await,
        404,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn invoke_returns_the_result_and_output() {
    let s = start().await;
    let t = s.admin().await;
    let (_pid, tid) = project_and_task(&s, &t).await;
    let url = format!("/api/v1/tasks/{tid}/invoke?wait_s=30");
    let call = s.post(&t, &url);
    let runner = fake_runner(&s, &["out\n"], false);
    let (resp, _) = tokio::join!(call, runner);
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["state"], "succeeded");
    assert_eq!(body["result"], json!({"answer": 42}));
    assert_eq!(body["output"], "out\n");

    // Nobody runs it: 202 with the queued run.
    let resp = s
        .post(&t, &format!("/api/v1/tasks/{tid}/invoke?wait_s=0"))
        .await;
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["state"], "queued");
    s.stop().await;
}

/// Reads an SSE response to its end and returns `(event, data)` pairs.
async fn read_sse(resp: reqwest::Response) -> Vec<(String, String)> {
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .unwrap()
        .unwrap();
    let mut out = vec![];
    for block in text.split("\n\n") {
        let mut event = String::new();
        let mut data = vec![];
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        if !event.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
}

#[tokio::test]
async fn sse_log_follow_replays_then_tails_for_several_viewers() {
    let s = start().await;
    let t = s.admin().await;
    let (_pid, tid) = project_and_task(&s, &t).await;
    let run: Value = s
        .post(&t, &format!("/api/v1/tasks/{tid}/trigger"))
        .await
        .json()
        .await
        .unwrap();
    let rid = run["id"].as_str().unwrap().to_string();
    let lease = s
        .broker
        .lease(
            &LeaseRequest {
                worker_id: "w1".into(),
                queues: vec!["default".into()],
                max: 1,
                ttl: Duration::from_secs(30),
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .remove(0);
    s.store
        .mark_started(&rid, 1, &lease.lease_token, "w1", now_ms())
        .await
        .unwrap();
    let chunk = |seq: u64, data: &str| LogChunk {
        attempt: 1,
        seq,
        stream: "stdout".into(),
        data: data.into(),
        at_ms: now_ms(),
    };
    s.broker
        .append_log(&rid, &[chunk(1, "early\n")])
        .await
        .unwrap();

    let follow = format!("/api/v1/runs/{rid}/logs?follow=true");
    let first = s.get(&t, &follow).await;
    let second = s.get(&t, &follow).await;
    let events = s.get(&t, &format!("/api/v1/runs/{rid}/events")).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let readers = tokio::spawn(async move {
        (
            read_sse(first).await,
            read_sse(second).await,
            read_sse(events).await,
        )
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    s.broker
        .append_log(&rid, &[chunk(2, "late\n")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = Outcome {
        state: RunState::Failed,
        exit_code: Some(3),
        signal: None,
        error: None,
        duration_ms: 5,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    };
    // max_attempts is 2: the first failure requeues, so end it by cancelling the second attempt.
    s.store
        .finish_attempt(&rid, 1, Some(&lease.lease_token), &outcome, now_ms())
        .await
        .unwrap();
    s.post(&t, &format!("/api/v1/runs/{rid}/cancel")).await;

    // A late joiner gets the whole history at once.
    let late = read_sse(s.get(&t, &follow).await).await;
    let (a, b, ev) = readers.await.unwrap();
    for stream in [&a, &b, &late] {
        let logs: String = stream
            .iter()
            .filter(|(e, _)| e == "log")
            .map(|(_, d)| {
                serde_json::from_str::<Value>(d).unwrap()["data"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(logs, "early\nlate\n");
        assert_eq!(stream.last().unwrap().0, "end");
    }
    let states: Vec<String> = ev
        .iter()
        .filter(|(e, _)| e == "state")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("running"));
    assert_eq!(states.last().map(String::as_str), Some("cancelled"));
    assert_eq!(ev.last().unwrap().0, "end");
    s.stop().await;
}

#[tokio::test]
async fn rbac_tokens_and_audit() {
    let s = start().await;
    let admin = s.admin().await;
    let viewer = s.user_with_role(&admin, "vera", "viewer").await;
    let operator = s.user_with_role(&admin, "otto", "operator").await;

    // Viewer reads but cannot write.
    assert_eq!(s.get(&viewer, "/api/v1/projects").await.status(), 200);
    let resp = s
        .upload(
            &viewer,
            "/api/v1/projects",
            ("a.py", b"print(1)\n".to_vec()),
            &[("name", "v")],
        )
        .await;
    problem(resp, 403).await;
    problem(s.get(&viewer, "/api/v1/users").await, 403).await;
    problem(s.get(&viewer, "/api/v1/audit").await, 403).await;

    // Operator writes projects and tasks but does not manage users.
    let (_pid, tid) = project_and_task(&s, &operator).await;
    problem(
        s.post(&viewer, &format!("/api/v1/tasks/{tid}/trigger"))
            .await,
        403,
    )
    .await;
    assert_eq!(
        s.post(&operator, &format!("/api/v1/tasks/{tid}/trigger"))
            .await
            .status(),
        201
    );
    problem(s.get(&operator, "/api/v1/users").await, 403).await;
    let resp = s
        .post_json(
            &operator,
            "/api/v1/users",
            json!({"username": "x", "password": "password-123", "role": "admin"}),
        )
        .await;
    problem(resp, 403).await;

    // An admin's read-only API token acts as a viewer; shown once, revocable.
    let resp = s
        .post_json(
            &admin,
            "/api/v1/tokens",
            json!({"name": "ci", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let tok: Value = resp.json().await.unwrap();
    let secret = tok["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("act_"));
    assert_eq!(s.get(&secret, "/api/v1/tasks").await.status(), 200);
    // A read-only token cannot mint a stronger one.
    let resp = s
        .post_json(
            &secret,
            "/api/v1/tokens",
            json!({"name": "up", "scopes": ["admin"]}),
        )
        .await;
    problem(resp, 403).await;
    // Anyone may change their own password (knowing the current one), but not their role.
    let me: Value = s
        .get(&viewer, "/api/v1/auth/me")
        .await
        .json()
        .await
        .unwrap();
    let vid = me["user"]["id"].as_str().unwrap().to_string();
    let patch = |body: Value| {
        s.http
            .patch(s.url(&format!("/api/v1/users/{vid}")))
            .bearer_auth(&viewer)
            .json(&body)
            .send()
    };
    problem(patch(json!({"role": "admin"})).await.unwrap(), 403).await;
    assert_eq!(
        patch(json!({"password": "new-password-9", "current_password": "password-123"}))
            .await
            .unwrap()
            .status(),
        200
    );
    s.login("vera", "new-password-9").await;
    problem(
        s.post(&secret, &format!("/api/v1/tasks/{tid}/trigger"))
            .await,
        403,
    )
    .await;
    let listed: Value = s.get(&admin, "/api/v1/tokens").await.json().await.unwrap();
    assert!(listed["items"][0].get("token").is_none());
    let tok_id = tok["id"].as_str().unwrap();
    let resp = s.delete(&admin, &format!("/api/v1/tokens/{tok_id}")).await;
    assert_eq!(resp.status(), 204);
    problem(s.get(&secret, "/api/v1/tasks").await, 401).await;

    // The audit trail has the mutations, the refusals, and no secrets.
    let audit: Value = s
        .get(&admin, "/api/v1/audit?limit=500")
        .await
        .json()
        .await
        .unwrap();
    let items = audit["items"].as_array().unwrap();
    let actions: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    for want in [
        ("admin", "user.create", "ok"),
        ("otto", "project.create", "ok"),
        ("otto", "task.create", "ok"),
        ("otto", "task.trigger", "ok"),
        ("vera", "project.create", "denied"),
        ("admin", "token.create", "ok"),
        ("admin", "token.delete", "ok"),
        ("admin", "auth.login", "ok"),
    ] {
        assert!(actions.contains(&want), "missing {want:?} in {actions:?}");
    }
    let raw = audit.to_string();
    assert!(
        !raw.contains("s3cret"),
        "a task env value reached the audit log"
    );
    assert!(!raw.contains(&secret), "a token reached the audit log");
    assert!(!raw.contains("password-123"));
    let filtered: Value = s
        .get(&admin, "/api/v1/audit?actor=otto&action=task.")
        .await
        .json()
        .await
        .unwrap();
    assert!(filtered["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "otto"));
    assert_eq!(filtered["items"].as_array().unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn system_endpoints_and_every_documented_route_is_routed() {
    let s = start().await;
    let t = s.admin().await;
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        s.http.get(s.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let home = s
        .http
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("/docs"));
    let docs = s
        .http
        .get(s.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(docs.contains("/api/openapi.json") && !docs.contains("https://"));

    let spec: Value = s
        .http
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let validated = &spec["paths"]["/api/v1/schedules/validate"]["post"]["responses"]["200"]
        ["content"]["application/json"]["schema"];
    assert_eq!(
        validated["properties"]["description"]["type"], "string",
        "{validated}"
    );
    let ghost = "01900000-0000-7000-8000-000000000000";
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() > 30);
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            if path.starts_with("/api/v1/auth/") {
                continue; // logging out would end this walk
            }
            let url = s.url(
                &path
                    .replace("{id}", ghost)
                    .replace("{n}", "1")
                    .replace("{name}", "GHOST"),
            );
            let req = match method.as_str() {
                "get" => s.http.get(&url),
                "post" => s.http.post(&url),
                "patch" => s.http.patch(&url),
                "put" => s.http.put(&url),
                "delete" => s.http.delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let resp = req.bearer_auth(&t).json(&json!({})).send().await.unwrap();
            let status = resp.status().as_u16();
            assert_ne!(status, 405, "{method} {path}");
            assert!(status < 500, "{method} {path} answered {status}");
            if status == 404 {
                let body: Value = resp.json().await.unwrap();
                assert_ne!(
                    body["type"], "urn:antcode:problem:no-route",
                    "{method} {path} is not routed"
                );
            }
        }
    }

    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "antcode_control_http_requests_total",
        "antcode_control_http_request_duration_seconds",
        "antcode_control_logins_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert!(
        metrics.contains("route=\"/api/v1/runs/{id}\""),
        "routes are labelled by template"
    );
    assert!(!metrics.contains(ghost), "a raw path reached a label");
    s.stop().await;
}

#[tokio::test]
async fn shutdown_returns() {
    let s = start().await;
    s.shutdown.cancel();
    let res = tokio::time::timeout(Duration::from_secs(20), s.task)
        .await
        .unwrap()
        .unwrap();
    assert!(res.is_ok());
}

#[tokio::test]
async fn schedules_validate_names_the_bad_field_and_previews() {
    let s = start().await;
    let t = s.admin().await;
    let ok = json!({"kind": "cron", "cron": "*/15 * * * *", "timezone": "Asia/Shanghai"});
    let res = s.post_json(&t, "/api/v1/schedules/validate", ok).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["next"].as_array().unwrap().len(), 5, "{body}");
    assert_eq!(body["description"], "Every 15 minutes, Asia/Shanghai");
    // crontab(5)'s weekdays: 1-5 is Monday to Friday, in the schedule's zone.
    let weekdays = json!({"kind": "cron", "cron": "30 8 * * 1-5", "timezone": "Asia/Shanghai"});
    let res = s
        .post_json(&t, "/api/v1/schedules/validate", weekdays)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["description"],
        "At 08:30, Monday through Friday, Asia/Shanghai"
    );
    // 08:30 in Shanghai is 00:30 UTC the same day; 1970-01-01 was a Thursday.
    let mut days: Vec<String> = body["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ms = antcode_core::time::parse_rfc3339(t.as_str().unwrap()).unwrap();
            assert_eq!(ms.rem_euclid(86_400_000), 30 * 60_000, "{body}");
            let weekday = (ms.div_euclid(86_400_000) + 4).rem_euclid(7) as usize;
            ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][weekday].to_string()
        })
        .collect();
    days.sort_by_key(|d| {
        ["Mon", "Tue", "Wed", "Thu", "Fri"]
            .iter()
            .position(|w| w == d)
    });
    assert_eq!(days, ["Mon", "Tue", "Wed", "Thu", "Fri"], "{body}");
    for (bad, field) in [
        (
            json!({"kind": "cron", "cron": "61 * * * *", "timezone": "UTC"}),
            "schedule.cron",
        ),
        (
            json!({"kind": "cron", "cron": "* * * * *", "timezone": "Mars/Base"}),
            "schedule.timezone",
        ),
        (
            json!({"kind": "interval", "every_s": 0}),
            "schedule.every_s",
        ),
        (json!({"kind": "once", "at": "tomorrow"}), "schedule.at"),
        // The error quotes the expression as written, not an internal form.
        (
            json!({"kind": "cron", "cron": "0 9 * * 8", "timezone": "UTC"}),
            "schedule.cron: day-of-week field `8` in `0 9 * * 8`: must be 0-7",
        ),
        (
            json!({"kind": "interval", "every_s": 60, "start": "soon"}),
            "schedule.start",
        ),
        (
            json!({"kind": "interval", "every_s": 60, "start": "2099-01-02T00:00:00Z",
                   "end": "2099-01-01T00:00:00Z"}),
            "schedule.end",
        ),
    ] {
        let body = problem(
            s.post_json(&t, "/api/v1/schedules/validate", bad).await,
            400,
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(field),
            "{body}"
        );
    }
    // An interval counts from its anchor (a task's creation, when the UI edits one).
    let hourly = json!({"kind": "interval", "every_s": 3600});
    let res = s
        .post_json(
            &t,
            "/api/v1/schedules/validate?anchor=2020-01-01T00:00:30Z",
            hourly.clone(),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let next = body["next"].as_array().unwrap();
    assert_eq!(next.len(), 5, "{body}");
    assert!(
        next.iter()
            .all(|t| t.as_str().unwrap().ends_with(":00:30.000Z")),
        "{body}"
    );
    let body = problem(
        s.post_json(&t, "/api/v1/schedules/validate?anchor=yesterday", hourly)
            .await,
        400,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("anchor"),
        "{body}"
    );
    // An interval's bounds: the preview starts at `start` and stops at `end`.
    let bounded = json!({"kind": "interval", "every_s": 3600,
        "start": "2099-01-01T00:00:00Z", "end": "2099-01-01T02:00:00Z"});
    let res = s.post_json(&t, "/api/v1/schedules/validate", bounded).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["next"],
        json!([
            "2099-01-01T00:00:00.000Z",
            "2099-01-01T01:00:00.000Z",
            "2099-01-01T02:00:00.000Z"
        ]),
        "{body}"
    );
    s.stop().await;
}

/// Principals are remembered for a second (`PRINCIPAL_TTL`), but a change through the API
/// takes effect on the next request, and one made behind control's back (the CLI on the
/// database, another replica) within that second.
#[tokio::test]
async fn remembered_principals_follow_user_and_token_changes() {
    let s = start().await;
    let admin = s.admin().await;
    let olga = s.user_with_role(&admin, "olga", "operator").await;
    let me: Value = s.get(&olga, "/api/v1/auth/me").await.json().await.unwrap();
    assert_eq!(me["role"], "operator");
    let id = me["user"]["id"].as_str().unwrap().to_string();
    let patch = |body: Value| {
        s.http
            .patch(s.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };

    // Demoted: the very next request is refused (a role change revokes her sessions), and a
    // new login has the new role.
    assert_eq!(
        patch(json!({"role": "viewer"})).await.unwrap().status(),
        200
    );
    problem(s.get(&olga, "/api/v1/auth/me").await, 401).await;
    let olga = s.login("olga", "password-123").await;
    let me: Value = s.get(&olga, "/api/v1/auth/me").await.json().await.unwrap();
    assert_eq!(me["role"], "viewer");
    // Disabled: refused at once.
    assert_eq!(
        patch(json!({"disabled": true})).await.unwrap().status(),
        200
    );
    problem(s.get(&olga, "/api/v1/auth/me").await, 401).await;

    // A token removed in the database directly, after being used: refused within the TTL.
    let olaf = s.user_with_role(&admin, "olaf", "viewer").await;
    assert_eq!(s.get(&olaf, "/api/v1/auth/me").await.status(), 200);
    let hash = antcode_core::ids::token_hash(&olaf);
    let session = s.store.token_by_hash(&hash).await.unwrap();
    s.store.delete_token(&session.id).await.unwrap();
    tokio::time::sleep(antcode_control::PRINCIPAL_TTL + Duration::from_millis(50)).await;
    problem(s.get(&olaf, "/api/v1/auth/me").await, 401).await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_fields_are_refused_with_422_and_documented() {
    let s = start().await;
    let t = s.admin().await;
    let pid = inline_project(&s, &t, "bounded").await;
    let long = |n: usize| "x".repeat(n);
    let many_env: serde_json::Map<String, Value> =
        (0..257).map(|i| (format!("V{i}"), json!("1"))).collect();
    let many_labels: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("l{i}"), json!("1"))).collect();
    let cases = [
        (json!({"args": vec!["a"; 257]}), "args"),
        (json!({"args": ["ok", long(4097)]}), "args[1]"),
        (json!({"env": many_env}), "env"),
        (json!({"env": {"BIG": long(4097)}}), "env.BIG"),
        (json!({"labels": many_labels}), "labels"),
        (json!({"name": long(101)}), "name"),
        (
            json!({"schedule": {"kind": "cron", "cron": long(300)}}),
            "schedule.cron",
        ),
    ];
    for (extra, field) in cases {
        let mut body = json!({"name": "t", "project_id": pid});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = s.post_json(&t, "/api/v1/tasks", body).await;
        let p = problem(resp, 422).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{field}: {p}"
        );
    }
    let tasks: Value = s.get(&t, "/api/v1/tasks").await.json().await.unwrap();
    assert_eq!(tasks["items"], json!([]), "a refused task was written");

    // A project's description, inline, as a form field and in a PATCH.
    let resp = s
        .post_json(
            &t,
            "/api/v1/projects",
            json!({"name": "d", "code": "print(1)", "description": long(4097)}),
        )
        .await;
    problem(resp, 422).await;
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("a.py", b"print(1)\n".to_vec()),
            &[("name", "d"), ("description", &long(100_000))],
        )
        .await;
    let p = problem(resp, 422).await;
    assert!(p["detail"].as_str().unwrap().starts_with("description: "));
    let resp = s
        .http
        .patch(s.url(&format!("/api/v1/projects/{pid}")))
        .bearer_auth(&t)
        .json(&json!({"description": long(4097)}))
        .send()
        .await
        .unwrap();
    problem(resp, 422).await;
    let projects: Value = s.get(&t, "/api/v1/projects").await.json().await.unwrap();
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);
    assert_eq!(projects["items"][0]["description"], "");

    // The bounds are in the OpenAPI document.
    let doc: Value = s.get(&t, "/api/openapi.json").await.json().await.unwrap();
    let task = &doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"];
    assert_eq!(task["args"]["maxItems"], 256);
    assert_eq!(task["args"]["items"]["maxLength"], 4096);
    assert_eq!(task["env"]["maxProperties"], 256);
    assert_eq!(task["labels"]["maxProperties"], 64);
    let patch = &doc["paths"]["/api/v1/projects/{id}"]["patch"]["requestBody"]["content"]
        ["application/json"]["schema"]["properties"];
    assert_eq!(patch["description"]["maxLength"], 4096);
    s.stop().await;
}

#[tokio::test]
async fn task_limits_and_network_are_bounded_and_reach_the_job() {
    let s = start().await;
    let t = s.admin().await;
    let (pid, tid) = project_and_task(&s, &t).await;
    let task: Value = s
        .get(&t, &format!("/api/v1/tasks/{tid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        task["limits"],
        json!({"memory_mb": 512, "cpu_millicores": 1000, "pids": 256, "tmp_mb": 256}),
        "the defaults"
    );
    assert_eq!(task["network"], "full");

    // Out of bounds, unknown fields, malformed lists: 400 naming the field (422 for a list
    // past its size bound), nothing written.
    let before: Value = s.get(&t, "/api/v1/tasks").await.json().await.unwrap();
    for (body, field, status) in [
        (json!({"limits": {"memory_mb": 0}}), "limits.memory_mb", 400),
        (json!({"limits": {"pids": 1u64 << 40}}), "limits.pids", 400),
        (json!({"limits": {"memory": 1}}), "memory", 400),
        (json!({"network": "open"}), "network", 400),
        (
            json!({"network": {"allow": ["redis"]}}),
            "network.allow",
            400,
        ),
        (
            json!({"network": {"allow": ["h:70000"]}}),
            "network.allow",
            400,
        ),
        (
            json!({"network": {"allow": vec!["h:1"; 33]}}),
            "network.allow",
            422,
        ),
    ] {
        let mut full = json!({"name": "bad", "project_id": pid});
        full.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let problem = problem(s.post_json(&t, "/api/v1/tasks", full).await, status).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{body}: {problem}"
        );
        let path = format!("/api/v1/tasks/{tid}");
        let resp = s.patch_json(&t, &path, body.clone()).await;
        assert_eq!(resp.status(), status, "{body}");
    }
    let after: Value = s.get(&t, "/api/v1/tasks").await.json().await.unwrap();
    assert_eq!(
        before["items"], after["items"],
        "a refused body changed a task"
    );

    // A patch of `limits` merges field by field; the job carries limits and network.
    let body = json!({"limits": {"memory_mb": 64, "pids": 32},
                      "network": {"allow": ["db.example:5432", "*:443"]}});
    let resp = s
        .patch_json(&t, &format!("/api/v1/tasks/{tid}"), body)
        .await;
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await.unwrap();
    assert_eq!(
        patched["limits"],
        json!({"memory_mb": 64, "cpu_millicores": 1000, "pids": 32, "tmp_mb": 256})
    );
    assert_eq!(
        patched["network"],
        json!({"allow": ["db.example:5432", "*:443"]})
    );
    let resp = s.post(&t, &format!("/api/v1/tasks/{tid}/trigger")).await;
    assert_eq!(resp.status(), 201);
    let lease = lease_next(&s).await;
    assert_eq!(lease.job.limits.memory_mb, 64);
    assert_eq!(lease.job.limits.pids, 32);
    assert_eq!(lease.job.network.allowed_ports(), Some(vec![443, 5432]));
    s.stop().await;
}
