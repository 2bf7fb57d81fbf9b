//! Task secrets through the API: validated names, admin-only writes, values that never come
//! back (responses, audit, the database file), tasks that may only declare existing secrets,
//! and runs whose broker message — and only that — carries the value.

use std::path::Path;
use std::time::Duration;

use antcode_core::broker::LeaseRequest;
use antcode_testkit::control::*;
use serde_json::{json, Value};

const VALUE: &str = "hunter2-Ω-very-secret-0451";

async fn put(s: &Server, token: &str, name: &str, body: Value) -> reqwest::Response {
    s.http
        .put(s.url(&format!("/api/v1/secrets/{name}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn grant(s: &Server, token: &str, name: &str, body: Value) -> reqwest::Response {
    s.http
        .put(s.url(&format!("/api/v1/secrets/{name}/grants")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The audit trail, and the actions recorded on `resource`.
async fn audited(s: &Server, admin: &str, resource: &str) -> (Value, Vec<String>) {
    let audit: Value = s
        .get(admin, "/api/v1/audit?limit=500")
        .await
        .json()
        .await
        .unwrap();
    let actions = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"] == resource)
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    (audit, actions)
}

async fn delete(s: &Server, token: &str, name: &str) -> reqwest::Response {
    s.delete(token, &format!("/api/v1/secrets/{name}")).await
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p) {
            // (SQLite's -shm/-journal files come and go; one gone meanwhile holds nothing.)
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

async fn project(s: &Server, t: &str) -> String {
    inline_project(s, t, "p").await
}

#[tokio::test]
async fn secrets_are_written_by_admins_and_never_shown() {
    let s = start().await;
    let admin = s.admin().await;
    let operator = s.user_with_role(&admin, "op", "operator").await;
    let viewer = s.user_with_role(&admin, "vi", "viewer").await;
    let mut seen = String::new();

    // Names are environment variable names; values are bounded text without NUL.
    for bad in ["api_token", "1TOKEN", "API-TOKEN", &"A".repeat(129)] {
        let resp = put(&s, &admin, bad, json!({"value": "x"})).await;
        problem(resp, 400).await;
    }
    for bad in [
        json!({}),
        json!({"value": 7}),
        json!({"value": "x", "extra": 1}),
        json!({"value": "a\u{0}b"}),
        json!({"value": "x".repeat(64 * 1024 + 1)}),
    ] {
        let body = problem(put(&s, &admin, "API_TOKEN", bad).await, 400).await;
        seen.push_str(&body.to_string());
    }
    assert!(
        s.store.list_secrets().await.unwrap().is_empty(),
        "refusals wrote nothing"
    );

    // Only admins write; anyone signed in may read the names.
    problem(
        put(&s, &operator, "API_TOKEN", json!({"value": VALUE})).await,
        403,
    )
    .await;
    problem(
        put(&s, &viewer, "API_TOKEN", json!({"value": VALUE})).await,
        403,
    )
    .await;
    let resp = put(&s, &admin, "API_TOKEN", json!({"value": VALUE})).await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["name"], "API_TOKEN");
    assert_eq!(created["updated_by"], "admin");
    seen.push_str(&created.to_string());
    let resp = put(
        &s,
        &admin,
        "API_TOKEN",
        json!({"value": format!("{VALUE}-2")}),
    )
    .await;
    assert_eq!(resp.status(), 200, "a second PUT replaces");
    seen.push_str(&resp.text().await.unwrap());
    let list: Value = s
        .get(&viewer, "/api/v1/secrets")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["items"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["created_at", "name", "updated_at", "updated_by"]
    );
    seen.push_str(&list.to_string());

    // Deletes: admin only, unknown is 404, in use is 409.
    problem(delete(&s, &operator, "API_TOKEN").await, 403).await;
    problem(delete(&s, &admin, "NOPE").await, 404).await;
    problem(delete(&s, &admin, "not-a-name").await, 404).await;
    let pid = project(&s, &admin).await;
    let resp = grant(&s, &admin, "API_TOKEN", json!({"projects": [pid]})).await;
    assert_eq!(resp.status(), 200);
    let resp = s
        .post_json(
            &operator,
            "/api/v1/tasks",
            json!({"name": "t", "project_id": pid, "secrets": ["API_TOKEN"]}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let task: Value = resp.json().await.unwrap();
    seen.push_str(&task.to_string());
    let body = problem(delete(&s, &admin, "API_TOKEN").await, 409).await;
    assert!(body["detail"].as_str().unwrap().contains("\"t\""));
    let tid = task["id"].as_str().unwrap();
    let resp = s
        .http
        .patch(s.url(&format!("/api/v1/tasks/{tid}")))
        .bearer_auth(&operator)
        .json(&json!({"secrets": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(delete(&s, &admin, "API_TOKEN").await.status(), 204);
    assert!(s.store.list_secrets().await.unwrap().is_empty());

    // The audit trail says who changed which secret, never to what.
    let (audit, actions) = audited(&s, &admin, "API_TOKEN").await;
    let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
    for a in ["secret.create", "secret.update", "secret.delete"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    assert!(
        actions.contains(&"secret.put"),
        "denied writes are audited too"
    );
    seen.push_str(&audit.to_string());

    assert!(
        !seen.contains(VALUE),
        "a secret value reached an API answer"
    );
    let data_dir = s.blob_dir.parent().unwrap().to_path_buf();
    s.stop().await;
    assert_eq!(
        files_containing(&data_dir, VALUE.as_bytes()),
        Vec::<String>::new(),
        "a secret value is stored in clear"
    );
}

#[tokio::test]
async fn runs_get_values_in_the_broker_message_only_and_fail_without_them() {
    let s = start().await;
    let admin = s.admin().await;
    let pid = project(&s, &admin).await;

    // A task may only declare secrets that exist, on create and on patch.
    let body = problem(
        s.post_json(
            &admin,
            "/api/v1/tasks",
            json!({"name": "t", "project_id": pid, "secrets": ["DB_PASSWORD"]}),
        )
        .await,
        400,
    )
    .await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .starts_with("secrets: secret DB_PASSWORD is not defined"));
    for bad in [json!(["db_password"]), json!("DB_PASSWORD"), json!([1])] {
        let resp = s
            .post_json(
                &admin,
                "/api/v1/tasks",
                json!({"name": "t", "project_id": pid, "secrets": bad}),
            )
            .await;
        problem(resp, 400).await;
    }
    assert_eq!(
        put(&s, &admin, "DB_PASSWORD", json!({"value": VALUE}))
            .await
            .status(),
        201
    );
    let resp = grant(&s, &admin, "DB_PASSWORD", json!({"projects": [pid]})).await;
    assert_eq!(resp.status(), 200);
    let task: Value = s
        .post_json(
            &admin,
            "/api/v1/tasks",
            json!({"name": "t", "project_id": pid, "secrets": ["DB_PASSWORD"], "env": {"PLAIN": "1"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let tid = task["id"].as_str().unwrap().to_string();
    let resp = s
        .http
        .patch(s.url(&format!("/api/v1/tasks/{tid}")))
        .bearer_auth(&admin)
        .json(&json!({"secrets": ["DB_PASSWORD", "OTHER"]}))
        .send()
        .await
        .unwrap();
    problem(resp, 400).await;

    // Trigger: the broker's job carries the value, SQL's job only the name.
    let run: Value = s
        .post(&admin, &format!("/api/v1/tasks/{tid}/trigger"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(run["state"], "queued");
    let req = LeaseRequest {
        worker_id: "w1".into(),
        queues: vec!["default".into()],
        labels: Default::default(),
        max: 1,
        ttl: Duration::from_secs(30),
    };
    let leased = s.broker.lease(&req, Duration::from_secs(5)).await.unwrap();
    assert_eq!(leased.len(), 1);
    let job = &leased[0].job;
    assert_eq!(job.secrets, ["DB_PASSWORD"]);
    assert_eq!(
        job.secret_env.0.get("DB_PASSWORD").map(String::as_str),
        Some(VALUE)
    );
    assert!(!job.env.contains_key("DB_PASSWORD"));
    assert!(
        !format!("{job:?}").contains(VALUE),
        "Debug output shows a value"
    );
    let stored = s
        .store
        .due_queued_jobs(antcode_core::time::now_ms() + 1000, 10, None)
        .await
        .unwrap()
        .jobs;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].secret_env.is_empty());
    assert_eq!(stored[0].secrets, ["DB_PASSWORD"]);
    let shown = s
        .get(
            &admin,
            &format!("/api/v1/runs/{}", run["id"].as_str().unwrap()),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(!shown.contains(VALUE));

    // The secret vanishes behind the API's back: the next run fails, naming it, and never
    // reaches the broker.
    s.store.delete_secret("DB_PASSWORD").await.unwrap();
    let run: Value = s
        .post(&admin, &format!("/api/v1/tasks/{tid}/trigger"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("DB_PASSWORD"),
        "{run}"
    );
    let more = s
        .broker
        .lease(&req, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(more.is_empty(), "a run without its secret was published");
    s.stop().await;
}

#[tokio::test]
async fn secrets_are_read_only_where_granted_checked_twice_and_audited() {
    let s = start().await;
    let admin = s.admin().await;
    let operator = s.user_with_role(&admin, "op", "operator").await;
    let viewer = s.user_with_role(&admin, "vi", "viewer").await;
    let pid = project(&s, &admin).await;
    let other = inline_project(&s, &admin, "other").await;
    put(&s, &admin, "DB_PASSWORD", json!({"value": VALUE})).await;
    let task_body = |project: &str| json!({"name": format!("t-{project}"), "project_id": project, "secrets": ["DB_PASSWORD"]});

    // Declared without a grant: 403, nothing written.
    let body = problem(
        s.post_json(&operator, "/api/v1/tasks", task_body(&pid))
            .await,
        403,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("not granted"),
        "{body}"
    );
    assert!(s.store.list_tasks(10, None).await.unwrap().items.is_empty());

    // Grants: admin only, on existing secrets and projects.
    for who in [&operator, &viewer] {
        problem(
            grant(&s, who, "DB_PASSWORD", json!({"projects": [pid]})).await,
            403,
        )
        .await;
        problem(s.get(who, "/api/v1/secrets/DB_PASSWORD/grants").await, 403).await;
    }
    problem(
        grant(&s, &admin, "NOPE", json!({"projects": [pid]})).await,
        404,
    )
    .await;
    let ghost = "01900000-0000-7000-8000-000000000000";
    problem(
        grant(&s, &admin, "DB_PASSWORD", json!({"projects": [ghost]})).await,
        422,
    )
    .await;
    problem(
        grant(&s, &admin, "DB_PASSWORD", json!({"project": pid})).await,
        400,
    )
    .await;
    let resp = grant(&s, &admin, "DB_PASSWORD", json!({"projects": [pid, pid]})).await;
    assert_eq!(resp.status(), 200);
    let listed: Value = s
        .get(&admin, "/api/v1/secrets/DB_PASSWORD/grants")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["project_id"], pid.as_str());
    assert_eq!(listed["items"][0]["granted_by"], "admin");

    // Granted to `pid` only: its task is accepted and its run gets the value; another
    // project's task is refused.
    let task: Value = s
        .post_json(&operator, "/api/v1/tasks", task_body(&pid))
        .await
        .json()
        .await
        .unwrap();
    problem(
        s.post_json(&operator, "/api/v1/tasks", task_body(&other))
            .await,
        403,
    )
    .await;
    let tid = task["id"].as_str().unwrap().to_string();
    let trigger = || async {
        let run: Value = s
            .post(&operator, &format!("/api/v1/tasks/{tid}/trigger"))
            .await
            .json()
            .await
            .unwrap();
        run
    };
    assert_eq!(trigger().await["state"], "queued");
    let leased = lease_next(&s).await;
    assert_eq!(leased.job.secret_env.0["DB_PASSWORD"], VALUE);

    // Revoked: the task still declares it, but its next run fails instead of getting it.
    assert_eq!(
        s.delete(&admin, "/api/v1/secrets/DB_PASSWORD/grants")
            .await
            .status(),
        204
    );
    let run = trigger().await;
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("not granted"),
        "{run}"
    );
    let depths = s.broker.queue_depths().await.unwrap();
    assert!(depths.iter().all(|(_, n)| *n == 0), "{depths:?}");

    // Granted to every project.
    let resp = grant(&s, &admin, "DB_PASSWORD", json!({"all_projects": true})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.post_json(&operator, "/api/v1/tasks", task_body(&other))
            .await
            .status(),
        201
    );
    assert_eq!(trigger().await["state"], "queued");

    let (audit, actions) = audited(&s, &admin, "DB_PASSWORD").await;
    for a in ["secret.grant", "secret.revoke"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    assert!(!audit.to_string().contains(VALUE));
    s.stop().await;
}

#[tokio::test]
async fn viewers_see_env_names_with_values_masked_unless_public() {
    let s = start().await;
    let admin = s.admin().await;
    let operator = s.user_with_role(&admin, "op", "operator").await;
    let viewer = s.user_with_role(&admin, "vi", "viewer").await;
    let pid = project(&s, &admin).await;
    let body = json!({"name": "t", "project_id": pid,
        "env": {"DB_PASSWORD": "pw-123", "LOG_LEVEL": "debug"}, "public_env": ["LOG_LEVEL"]});
    let task: Value = s
        .post_json(&operator, "/api/v1/tasks", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["public_env"], json!(["LOG_LEVEL"]));
    let tid = task["id"].as_str().unwrap();
    let one = format!("/api/v1/tasks/{tid}");
    for path in [one.as_str(), "/api/v1/tasks"] {
        let seen = s.get(&viewer, path).await.text().await.unwrap();
        assert!(
            !seen.contains("pw-123"),
            "a viewer read an env value: {seen}"
        );
        let seen: Value = serde_json::from_str(&seen).unwrap();
        let t = if path == "/api/v1/tasks" {
            &seen["items"][0]
        } else {
            &seen
        };
        assert_eq!(t["env"]["DB_PASSWORD"], "••••");
        assert_eq!(t["env"]["LOG_LEVEL"], "debug", "a public variable is shown");
        let shown: Value = s.get(&operator, path).await.json().await.unwrap();
        let t = if path == "/api/v1/tasks" {
            &shown["items"][0]
        } else {
            &shown
        };
        assert_eq!(t["env"]["DB_PASSWORD"], "pw-123", "operators see values");
    }
    // A trigger's env overrides are masked the same way: on the run, in the list and in its
    // live events.
    let run: Value = s
        .post_json(
            &operator,
            &format!("{one}/trigger"),
            json!({"env": {"DB_PASSWORD": "pw-override"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let rid = run["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/runs/{rid}"),
        format!("/api/v1/runs?task_id={tid}"),
    ] {
        let seen = s.get(&viewer, &path).await.text().await.unwrap();
        assert!(
            !seen.contains("pw-override"),
            "a viewer read an override: {seen}"
        );
        assert!(seen.contains("••••"), "{seen}");
    }
    let mut events = s.get(&viewer, &format!("/api/v1/runs/{rid}/events")).await;
    let first = tokio::time::timeout(Duration::from_secs(10), events.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("event: state") && first.contains("••••") && !first.contains("pw-override"),
        "{first}"
    );
    let shown = s.get(&operator, &format!("/api/v1/runs/{rid}")).await;
    assert!(shown.text().await.unwrap().contains("pw-override"));
    // Only variables of env can be public.
    let resp = s
        .post_json(
            &operator,
            "/api/v1/tasks",
            json!({"name": "u", "project_id": pid, "public_env": ["NOPE"]}),
        )
        .await;
    problem(resp, 400).await;
    s.stop().await;
}
