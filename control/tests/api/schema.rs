//! The request bodies' schemas against the handlers: each bound the document states is where
//! the live server draws it (one past it refused, at it not refused for that field), and each
//! field it says is required is refused when left out.

use serde_json::{json, Value};

use crate::common::*;

/// Sends `body` with `method` to `path`: its status and problem detail (if any).
async fn send(s: &Server, t: &str, method: &str, path: &str, body: &Value) -> (u16, String) {
    let resp = match method {
        "post" => s.post_json(t, path, body.clone()).await,
        "patch" => s.patch_json(t, path, body.clone()).await,
        "put" => s.put_json(t, path, body.clone()).await,
        other => panic!("unexpected method {other}"),
    };
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    (status, answer["detail"].as_str().unwrap_or("").to_string())
}

/// The property `name` of component `component`, resolved through `allOf`/`oneOf` parts.
fn property<'a>(spec: &'a Value, component: &str, name: &str) -> &'a Value {
    fn find<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
        if let Some(p) = schema["properties"].get(name) {
            return Some(p);
        }
        ["oneOf", "anyOf", "allOf"].iter().find_map(|k| {
            schema[*k]
                .as_array()
                .and_then(|parts| parts.iter().find_map(|p| find(p, name)))
        })
    }
    find(&spec["components"]["schemas"][component], name)
        .unwrap_or_else(|| panic!("{component}.{name} is not in the document"))
}

/// A value at `bound` for `keyword` (a string of that many characters, an integer, that many
/// items or properties) and one just past it.
fn at_and_past(keyword: &str, bound: u64) -> (Value, Value) {
    let n = |b: u64| b as usize;
    match keyword {
        "maxLength" => (json!("a".repeat(n(bound))), json!("a".repeat(n(bound) + 1))),
        "maximum" => (json!(bound), json!(bound + 1)),
        "minimum" => (json!(bound), json!(bound as i64 - 1)),
        "maxItems" => (json!(vec!["a"; n(bound)]), json!(vec!["a"; n(bound) + 1])),
        "maxProperties" => {
            let map =
                |k: usize| Value::Object((0..k).map(|i| (format!("K{i}"), json!("v"))).collect());
            (map(n(bound)), map(n(bound) + 1))
        }
        other => panic!("no values for {other}"),
    }
}

/// `body` with `value` at the `/`-separated `at`.
fn with(body: &Value, at: &str, value: Value) -> Value {
    let mut body = body.clone();
    let mut place = &mut body;
    for key in at.split('/') {
        place = &mut place[key];
    }
    *place = value;
    body
}

#[tokio::test]
async fn request_schemas_state_the_bounds_the_handlers_check() {
    let s = start().await;
    let t = s.admin().await;
    let spec: Value = s.get(&t, "/api/openapi.json").await.json().await.unwrap();
    let pid = inline_project(&s, &t, "bounds").await;
    let task: Value = s
        .post_json(&t, "/api/v1/tasks", json!({"name": "b", "project_id": pid}))
        .await
        .json()
        .await
        .unwrap();
    let tid = task["id"].as_str().unwrap().to_string();
    let task_path = format!("/api/v1/tasks/{tid}");
    let hooks_path = format!("{task_path}/hooks");
    let project_path = format!("/api/v1/projects/{pid}");
    let none = json!({});
    let hook = json!({"name": "h"});
    let concurrency = json!({"concurrency": {"key": "k", "limit": 1}});
    let prefer = json!({"prefer": {"labels": {}, "fallback_s": 1}});
    let interval = json!({"kind": "interval", "every_s": 60});
    let user = json!({"password": "long enough", "role": "viewer"});
    let channel = json!({"name": "bounds", "config": {"kind": "webhook",
        "url": "https://hooks.example.com/x", "secret": "0123456789abcdef"}});
    // (method, path, a valid body, "where the value goes, Component.property, keyword"s)
    let cases: Vec<(&str, &str, &Value, &[&str])> = vec![
        (
            "patch",
            &task_path,
            &none,
            &[
                "name TaskBody.name maxLength",
                "queue TaskBody.queue maxLength",
                "args TaskBody.args maxItems",
                "env TaskBody.env maxProperties",
                "labels TaskBody.labels maxProperties",
                "timeout_s TaskBody.timeout_s maximum",
                "timeout_s TaskBody.timeout_s minimum",
                "triggers_per_min TaskBody.triggers_per_min maximum",
                "max_concurrency TaskBody.max_concurrency maximum",
                "max_concurrency TaskBody.max_concurrency minimum",
                "retry/max_attempts RetryPolicy.max_attempts maximum",
                "retry/backoff_s RetryPolicy.backoff_s maximum",
                "limits/memory_mb RunLimits.memory_mb maximum",
                "limits/memory_mb RunLimits.memory_mb minimum",
                "limits/cpu_millicores RunLimits.cpu_millicores maximum",
                "limits/pids RunLimits.pids minimum",
                "limits/tmp_mb RunLimits.tmp_mb maximum",
                "retention/days TaskRetention.days maximum",
                "retention/keep_last TaskRetention.keep_last maximum",
            ],
        ),
        (
            "patch",
            &task_path,
            &prefer,
            &["prefer/fallback_s Preference.fallback_s maximum"],
        ),
        (
            "patch",
            &task_path,
            &concurrency,
            &[
                "concurrency/limit ConcurrencyKey.limit maximum",
                "concurrency/key ConcurrencyKey.key maxLength",
            ],
        ),
        (
            "post",
            "/api/v1/schedules/validate",
            &interval,
            &["every_s Schedule.every_s minimum"],
        ),
        (
            "put",
            "/api/v1/retention",
            &none,
            &[
                "runs_days RetentionPolicy.runs_days maximum",
                "runs_keep_last RetentionPolicy.runs_keep_last maximum",
                "audit_days RetentionPolicy.audit_days minimum",
            ],
        ),
        (
            "post",
            &hooks_path,
            &hook,
            &[
                "rate_per_min HookBody.rate_per_min maximum",
                "rate_per_min HookBody.rate_per_min minimum",
                "name HookBody.name maxLength",
            ],
        ),
        (
            "put",
            "/api/v1/secrets/BOUND",
            &none,
            &["value SecretBody.value maxLength"],
        ),
        (
            "post",
            "/api/v1/tokens",
            &hook,
            &[
                "expires_in_s NewToken.expires_in_s maximum",
                "name NewToken.name maxLength",
            ],
        ),
        (
            "post",
            "/api/v1/worker-keys",
            &none,
            &[
                "note NewKey.note maxLength",
                "queues NewKey.queues maxItems",
                "ttl_s NewKey.ttl_s maximum",
                "ttl_s NewKey.ttl_s minimum",
                "labels NewKey.labels maxProperties",
            ],
        ),
        (
            "post",
            "/api/v1/users",
            &user,
            &["username NewUser.username maxLength"],
        ),
        (
            "post",
            "/api/v1/notifications/channels",
            &channel,
            &[
                "config/secret WebhookConfig.secret maxLength",
                "name ChannelBody.name maxLength",
            ],
        ),
        (
            "patch",
            &project_path,
            &none,
            &[
                "name ProjectPatch.name maxLength",
                "description ProjectPatch.description maxLength",
            ],
        ),
    ];
    let cases = cases.into_iter().flat_map(|(method, path, body, checks)| {
        checks.iter().map(move |check| {
            let [at, stated, keyword] = check.split(' ').collect::<Vec<_>>()[..] else {
                panic!("{check}");
            };
            let (component, name) = stated.split_once('.').unwrap();
            (method, path, body, at, component, name, keyword)
        })
    });
    for (method, path, body, at, component, name, keyword) in cases {
        let stated = property(&spec, component, name);
        let bound = stated[keyword]
            .as_u64()
            .unwrap_or_else(|| panic!("{component}.{name} states no {keyword}: {stated}"));
        let field = at.rsplit('/').next().unwrap();
        let (ok, past) = at_and_past(keyword, bound);
        let (status, detail) = send(&s, &t, method, path, &with(body, at, past)).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path} took {at} past its {keyword} {bound}: {status} {detail}"
        );
        let (status, detail) = send(&s, &t, method, path, &with(body, at, ok)).await;
        assert!(
            status < 400 || !detail.contains(field),
            "{method} {path} refused {at} at its {keyword} {bound}: {status} {detail}"
        );
    }

    // Each required field left out is refused, naming it.
    let required: Vec<(&str, &str, Value, &str)> = vec![
        (
            "post",
            "/api/v1/tasks",
            json!({"name": "r", "project_id": pid}),
            "TaskBody",
        ),
        ("post", &hooks_path, json!({"name": "r"}), "HookBody"),
        ("post", "/api/v1/tokens", json!({"name": "r"}), "NewToken"),
        (
            "post",
            "/api/v1/users",
            json!({"username": "r", "password": "long enough",
            "role": "viewer"}),
            "NewUser",
        ),
        (
            "put",
            "/api/v1/secrets/REQUIRED",
            json!({"value": "v"}),
            "SecretBody",
        ),
        (
            "put",
            "/api/v1/git-credentials/required",
            json!({"kind": "token", "token": "x"}),
            "CredentialBody",
        ),
        (
            "post",
            "/api/v1/notifications/rules",
            json!({"name": "r", "channels": ["c"],
            "on": ["failed"]}),
            "RuleBody",
        ),
    ];
    for (method, path, body, component) in required {
        let names = spec["components"]["schemas"][component]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{component} has no required fields"))
            .clone();
        let names: Vec<&str> = names.iter().map(|n| n.as_str().unwrap()).collect();
        assert!(!names.is_empty(), "{component} states no required field");
        for name in &names {
            assert!(
                body.get(name).is_some(),
                "{component} requires {name}, not sent"
            );
        }
        for name in names {
            let mut without = body.clone();
            without.as_object_mut().unwrap().remove(name);
            let (status, detail) = send(&s, &t, method, path, &without).await;
            assert!(
                (400..500).contains(&status) && detail.contains(name),
                "{method} {path} without {name}: {status} {detail}"
            );
        }
    }
    s.stop().await;
}
