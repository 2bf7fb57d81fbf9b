//! Tasks: schedules, bounds on every field, limits and network policy.

use serde_json::{json, Value};

use crate::common::*;
use crate::project_and_task;

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
    let body = |method: &str, path: &str| {
        let schema =
            &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
        let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        doc["components"]["schemas"][name]["properties"].clone()
    };
    let task = body("post", "/api/v1/tasks");
    assert_eq!(task["args"]["maxItems"], 256);
    assert_eq!(task["args"]["items"]["maxLength"], 4096);
    assert_eq!(task["env"]["maxProperties"], 256);
    assert_eq!(task["labels"]["maxProperties"], 64);
    let patch = body("patch", "/api/v1/projects/{id}");
    assert_eq!(patch["description"]["maxLength"], 4096);
    s.stop().await;
}

/// A task's `triggers_per_min` answers 429 with Retry-After past its rate, and creates nothing.
#[tokio::test]
async fn triggers_past_a_task_rate_are_answered_429() {
    let s = start().await;
    let t = s.admin().await;
    let (_, tid) = project_and_task(&s, &t).await;
    let path = format!("/api/v1/tasks/{tid}");
    let resp = s
        .patch_json(&t, &path, json!({"triggers_per_min": 2}))
        .await;
    assert_eq!(resp.status(), 200);
    for _ in 0..2 {
        let resp = s.post(&t, &format!("{path}/trigger")).await;
        assert_eq!(resp.status(), 201);
    }
    let resp = s.post(&t, &format!("{path}/trigger")).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=30).contains(&wait),
        "two a minute: one in 30 s at most, got {wait}"
    );
    let runs: Value = s
        .get(&t, &format!("/api/v1/runs?task_id={tid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(runs["items"].as_array().unwrap().len(), 2, "{runs}");
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
        (json!({"triggers_per_min": 0}), "triggers_per_min", 400),
        (json!({"triggers_per_min": 6001}), "triggers_per_min", 400),
        (json!({"max_concurrency": 0}), "max_concurrency", 422),
        (json!({"max_concurrency": 10_001}), "max_concurrency", 422),
        (
            json!({"concurrency": {"key": " ", "limit": 1}}),
            "concurrency.key",
            422,
        ),
        (
            json!({"concurrency": {"key": "k", "limit": 0}}),
            "concurrency.limit",
            422,
        ),
        (
            json!({"concurrency": {"key": "k", "limits": 1}}),
            "limits",
            400,
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

    // A patch of `limits` merges field by field; the job carries limits, network and the
    // concurrency limits as its gates.
    let body = json!({"limits": {"memory_mb": 64, "pids": 32},
                      "network": {"allow": ["db.example:5432", "*:443"]},
                      "max_concurrency": 4, "concurrency": {"key": "site:a", "limit": 2}});
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
    assert_eq!(
        lease.job.gates,
        std::collections::BTreeMap::from([
            (format!("task:{tid}"), 4),
            ("key:site:a".to_string(), 2)
        ])
    );
    assert_eq!(patched["concurrency"], json!({"key": "site:a", "limit": 2}));
    s.stop().await;
}
