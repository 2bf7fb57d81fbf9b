//! Runs: trigger, cancel, retry, invoke, logs and their live streams.

use std::time::Duration;

use antcode_core::broker::{LeaseRequest, LogChunk, PROGRESS_STREAM};
use antcode_core::model::{Outcome, RunState};
use antcode_core::time::now_ms;
use serde_json::{json, Value};

use crate::common::*;
use crate::{fake_runner, project_and_task};

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
                labels: Default::default(),
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
    // A step the runner tells while the environment is built: not part of the log.
    let step = LogChunk {
        stream: PROGRESS_STREAM.into(),
        ..chunk(2, "building the environment")
    };
    s.broker
        .append_log(&rid, &[chunk(1, "early\n"), step])
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
        .append_log(&rid, &[chunk(3, "late\n")])
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
        let steps: Vec<&str> = stream
            .iter()
            .filter(|(e, _)| e == "progress")
            .map(|(_, d)| d.as_str())
            .collect();
        assert!(
            steps.len() == 1 && steps[0].contains("\"data\":\"building the environment\""),
            "{steps:?}"
        );
        assert_eq!(stream.last().unwrap().0, "end");
    }
    let plain = s.get(&t, &format!("/api/v1/runs/{rid}/logs")).await;
    assert_eq!(plain.text().await.unwrap(), "early\nlate\n");
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
async fn run_stats_count_per_bucket_on_the_server() {
    let s = start().await;
    let t = s.admin().await;
    let (_pid, tid) = project_and_task(&s, &t).await;
    for _ in 0..3 {
        let resp = s.post(&t, &format!("/api/v1/tasks/{tid}/trigger")).await;
        assert_eq!(resp.status(), 201);
    }
    // One ends succeeded after 12 ms; two stay queued.
    fake_runner(&s, &["done"], false).await;
    let viewer = s.user_with_role(&t, "vera", "viewer").await;

    let stats: Value = s
        .get(&viewer, &format!("/api/v1/stats/runs?task_id={tid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["bucket_seconds"], 3600, "24 h in hours: {stats}");
    let buckets = stats["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24);
    let total = &stats["total"];
    assert_eq!(total["runs"], 3);
    assert_eq!(total["counts"]["queued"], 2);
    assert_eq!(total["counts"]["succeeded"], 1);
    assert_eq!(total["counts"]["lost"], 0, "every state is listed");
    assert_eq!(total["success_rate"], 1.0);
    let p50 = total["duration_ms"]["p50"].as_i64().unwrap();
    assert!(
        (10..13).contains(&p50),
        "12 ms lies in the bin [10, 13): {p50}"
    );
    // All three were queued now, so they are in the last bucket.
    assert_eq!(buckets[23]["runs"], 3, "{stats}");
    assert!(buckets[..23].iter().all(|b| b["runs"] == 0));
    assert_eq!(buckets[0]["success_rate"], Value::Null);

    // Another task's runs are not counted; all tasks' are without a task filter.
    let other = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "other", "project_id": _pid}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let oid = other["id"].as_str().unwrap();
    s.post(&t, &format!("/api/v1/tasks/{oid}/trigger")).await;
    let mine: Value = s
        .get(&t, &format!("/api/v1/stats/runs?task_id={tid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"]["runs"], 3);
    let all: Value = s.get(&t, "/api/v1/stats/runs").await.json().await.unwrap();
    assert_eq!(all["total"]["runs"], 4);

    // A window given as since/until with a bucket of a day.
    let since = antcode_core::time::to_rfc3339(now_ms() - 7 * 86_400_000);
    let until = antcode_core::time::to_rfc3339(now_ms() + 60_000);
    let week: Value = s
        .get(
            &t,
            &format!("/api/v1/stats/runs?since={since}&until={until}&bucket=86400"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(week["buckets"].as_array().unwrap().len(), 8, "{week}");
    assert_eq!(week["total"]["runs"], 4);

    // Bad windows and buckets are a 400 that names the parameter.
    let long_error = "e".repeat(300);
    for (query, names) in [
        ("bucket=59".to_string(), "bucket"),
        ("bucket=soon".to_string(), "bucket"),
        (format!("since={until}&until={since}"), "until"),
        (
            "since=2020-01-01T00:00:00Z&until=2022-01-01T00:00:00Z".to_string(),
            "since",
        ),
        (
            "since=2026-01-01T00:00:00Z&until=2026-03-01T00:00:00Z&bucket=60".to_string(),
            "bucket",
        ),
        ("since=yesterday".to_string(), "since"),
        (format!("error={long_error}"), "error"),
    ] {
        let body = problem(s.get(&t, &format!("/api/v1/stats/runs?{query}")).await, 400).await;
        assert!(
            body["detail"].as_str().unwrap_or("").contains(names),
            "{query}: {body}"
        );
    }
}
