//! Per-task webhooks end to end: `antcode up` on ephemeral ports (SQLite, the in-process broker,
//! real Python under uv, the edge on TLS), hooks created and called as an outside service
//! would: with a token, with an HMAC signature, rotated, rate-limited, repeated with an
//! `Idempotency-Key`, waited on, through the edge, revoked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use antcode::up::{self, Up, UpConfig};
use antcode_testkit::api::{terminal, Api};

#[path = "support/edge.rs"]
mod edge;

const PASSWORD: &str = "hooks-password-not-default";

/// Prints its params and arguments as the run's result.
const CODE: &str = "import json, os, sys\n\
    print(json.dumps({'params': json.loads(os.environ.get('ANTCODE_PARAMS') or 'null'), 'args': sys.argv[1:]}))\n";

async fn start(dir: &std::path::Path) -> Up {
    let mut cfg = UpConfig::new(dir.to_path_buf());
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    up::start(cfg).await.expect("antcode up starts")
}

/// A call to a hook: its status, headers and body (JSON, or null).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(api: &Api, url: &str, body: &str, headers: &[(&str, String)]) -> Answer {
    let mut req = api.http.post(url).body(body.to_string());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn bearer(secret: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {secret}"))
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `X-AntCode-Signature` of `body` at `t` under `secret`.
fn signed(secret: &str, t: i64, body: &str) -> (&'static str, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let v1 = hex::encode(mac.finalize().into_bytes());
    ("x-antcode-signature", format!("t={t},v1={v1}"))
}

async fn create_hook(api: &Api, task: &str, body: Value) -> (String, String, String) {
    let (status, made) = api.post(&format!("/tasks/{task}/hooks"), body).await;
    assert_eq!(status, 201, "{made}");
    let id = made["hook"]["id"].as_str().unwrap().to_string();
    let url = made["url"].as_str().unwrap().to_string();
    assert!(url.ends_with(&format!("/api/v1/hooks/{id}")), "{url}");
    assert!(made["hook"].get("secret").is_none(), "{made}");
    (id, url, made["secret"].as_str().unwrap().to_string())
}

/// The runs of `task` started by webhooks.
async fn webhook_runs(api: &Api, task: &str) -> usize {
    let runs = api.get(&format!("/runs?task_id={task}&limit=500")).await;
    runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "webhook")
        .count()
}

fn assert_refused(a: &Answer, what: &str) {
    assert_eq!(a.status, 401, "{what}: {}", a.body);
    assert_eq!(
        a.body["detail"], "missing or invalid hook credentials",
        "{what}: every refusal is the same"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_start_runs_for_their_secret_only() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path()).await;
    let api = Api::login(up.control_addr.port(), PASSWORD).await;
    let task = api.script_task("hooked", CODE, json!({})).await;

    // Bad fields are refused and create nothing.
    for (body, field) in [
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "ci", "auth": "basic"}), "auth"),
        (json!({"name": "ci", "rate_per_min": 0}), "rate_per_min"),
        (json!({"name": "ci", "rate_per_min": 6001}), "rate_per_min"),
        (json!({"name": "ci", "colour": "red"}), "colour"),
    ] {
        let (status, refused) = api.post(&format!("/tasks/{task}/hooks"), body).await;
        assert_eq!(status, 400, "{refused}");
        assert!(
            refused["detail"].as_str().unwrap().contains(field),
            "{refused}"
        );
    }
    let (status, _) = api
        .post(
            "/tasks/01900000-0000-7000-8000-000000000000/hooks",
            json!({"name": "ci"}),
        )
        .await;
    assert_eq!(status, 404);
    let listed = api.get(&format!("/tasks/{task}/hooks")).await;
    assert_eq!(listed["items"], json!([]), "a refused hook was created");

    // A token hook: its secret starts a run with params.
    let (id, url, secret) = create_hook(&api, &task, json!({"name": "ci"})).await;
    let listed = api.get(&format!("/tasks/{task}/hooks")).await;
    let item = &listed["items"][0];
    assert_eq!(item["name"], "ci");
    assert_eq!(item["auth"], "token");
    assert_eq!(item["rate_per_min"], 60);
    assert!(item.get("secret").is_none(), "{listed}");
    assert!(item["created_at"].is_string() && item["last_used_at"].is_null());
    assert!(!listed.to_string().contains(&secret));

    let a = call(
        &api,
        &url,
        r#"{"params": {"city": "Oslo"}}"#,
        &[bearer(&secret)],
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let run_id = a.body["run_id"].as_str().unwrap().to_string();
    assert_eq!(a.body["run"]["id"], run_id.as_str());
    assert_eq!(a.body["run"]["trigger"], "webhook");
    assert_eq!(a.body["run"]["params"], json!({"city": "Oslo"}));
    let done = api
        .wait_run(
            &run_id,
            "an end",
            Duration::from_secs(120),
            terminal,
            &String::new,
        )
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["params"], json!({"city": "Oslo"}));
    let listed = api.get(&format!("/tasks/{task}/hooks")).await;
    assert!(listed["items"][0]["last_used_at"].is_string(), "{listed}");

    // Every bad credential is the same 401, and unknown ids cannot be told apart.
    let ghost = url.replace(&id, "01900000-0000-7000-8000-000000000000");
    for (what, a) in [
        ("no credentials", call(&api, &url, "", &[]).await),
        (
            "a wrong token",
            call(&api, &url, "", &[bearer("ach_nope")]).await,
        ),
        (
            "an unknown hook",
            call(&api, &ghost, "", &[bearer(&secret)]).await,
        ),
        (
            "not an id",
            call(&api, &url.replace(&id, "abc"), "", &[bearer(&secret)]).await,
        ),
        (
            "the admin's session",
            call(&api, &url, "", &[bearer(&api.token)]).await,
        ),
    ] {
        assert_refused(&a, what);
    }
    // Bad input is refused as trigger refuses it, and starts nothing.
    let before = webhook_runs(&api, &task).await;
    let a = call(&api, &url, r#"{"prams": {}}"#, &[bearer(&secret)]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = call(&api, &format!("{url}?wait_s=301"), "", &[bearer(&secret)]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = call(
        &api,
        &url,
        "",
        &[bearer(&secret), ("idempotency-key", "k".repeat(201))],
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(webhook_runs(&api, &task).await, before);

    // ?wait_s answers with the result once the run ended.
    let a = call(
        &api,
        &format!("{url}?wait_s=120"),
        r#"{"args": ["fast"]}"#,
        &[bearer(&secret)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "succeeded");
    assert_eq!(a.body["exit_code"], 0);
    assert_eq!(a.body["result"]["args"], json!(["fast"]));
    assert!(a.body["output"].as_str().unwrap().contains("fast"));
    assert_eq!(a.body["output_truncated"], false);

    // Rotation: the old secret stops at once, the new one works.
    let (status, rotated) = api
        .post(&format!("/tasks/{task}/hooks/{id}/rotate"), json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(rotated["hook"]["rotated_at"].is_string());
    assert_refused(
        &call(&api, &url, "", &[bearer(&secret)]).await,
        "the old secret",
    );
    assert_eq!(
        call(&api, &url, "", &[bearer(&new_secret)]).await.status,
        202
    );

    // Idempotency: a repeat answers with the first run, in sequence or all at once.
    let with_key = |k: &str| [bearer(&new_secret), ("idempotency-key", k.to_string())];
    let first = call(&api, &url, "", &with_key("deploy-1")).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = call(&api, &url, "", &with_key("deploy-1")).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["run_id"], first.body["run_id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let waited = call(
        &api,
        &format!("{url}?wait_s=120"),
        "",
        &with_key("deploy-1"),
    )
    .await;
    assert_eq!(waited.status, 200, "{}", waited.body);
    assert_eq!(waited.body["run_id"], first.body["run_id"]);
    let before = webhook_runs(&api, &task).await;
    let calls = (0..20).map(|_| {
        let (api, url, headers) = (&api, &url, with_key("deploy-2"));
        async move { call(api, url, "", &headers).await }
    });
    let answers = futures::future::join_all(calls).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 202, "{}", a.body);
            a.body["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "20 calls with one key: {ids:?}");
    assert_eq!(webhook_runs(&api, &task).await, before + 1);

    // An hmac hook: a good signature over the body within 300 s, nothing else.
    let (hmac_id, hmac_url, hmac_secret) =
        create_hook(&api, &task, json!({"name": "github", "auth": "hmac"})).await;
    let body = r#"{"params": {"ref": "main"}}"#;
    let a = call(
        &api,
        &hmac_url,
        body,
        &[signed(&hmac_secret, now_s(), body)],
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["run"]["params"], json!({"ref": "main"}));
    for (what, header) in [
        ("another secret", signed("ach_other", now_s(), body)),
        ("another body", signed(&hmac_secret, now_s(), "{}")),
        ("a stale time", signed(&hmac_secret, now_s() - 301, body)),
        ("a future time", signed(&hmac_secret, now_s() + 301, body)),
        ("no v1", ("x-antcode-signature", format!("t={}", now_s()))),
        ("its secret as a token", bearer(&hmac_secret)),
    ] {
        assert_refused(&call(&api, &hmac_url, body, &[header]).await, what);
    }
    // A token hook does not take a signature.
    assert_refused(
        &call(&api, &url, body, &[signed(&new_secret, now_s(), body)]).await,
        "a signature on a token hook",
    );

    // Through the edge's /api, both kinds (the signature header passes the edge).
    let edge = format!("https://127.0.0.1:{}", up.edge_addr.port());
    let ca = std::fs::read_to_string(dir.path().join("tls").join("ca.pem")).unwrap();
    let path = format!("/api/v1/hooks/{id}");
    let (status, answer) =
        edge::request(&edge, &ca, "POST", &path, &[bearer(&new_secret)], "").await;
    assert_eq!(status, 202, "{answer}");
    let path = format!("/api/v1/hooks/{hmac_id}");
    let header = signed(&hmac_secret, now_s(), body);
    let (status, answer) = edge::request(&edge, &ca, "POST", &path, &[header], body).await;
    assert_eq!(status, 202, "{answer}");

    // The rate: two a minute, the third call is told when to come back.
    let (_, slow_url, slow) =
        create_hook(&api, &task, json!({"name": "slow", "rate_per_min": 2})).await;
    for _ in 0..2 {
        assert_eq!(
            call(&api, &slow_url, "", &[bearer(&slow)]).await.status,
            202
        );
    }
    let limited = call(&api, &slow_url, "", &[bearer(&slow)]).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(limited.headers["content-type"], "application/problem+json");

    // Revoked: 401 at once; a deleted task's hooks go with it.
    let (status, _) = api.delete(&format!("/tasks/{task}/hooks/{id}")).await;
    assert_eq!(status, 204);
    assert_refused(
        &call(&api, &url, "", &[bearer(&new_secret)]).await,
        "revoked",
    );
    let (status, _) = api.delete(&format!("/tasks/{task}")).await;
    assert_eq!(status, 204);
    assert_refused(
        &call(
            &api,
            &hmac_url,
            body,
            &[signed(&hmac_secret, now_s(), body)],
        )
        .await,
        "a deleted task's hook",
    );

    // Audited, and counted.
    let audit = api.get("/audit?action=hook.").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["hook.create", "hook.rotate", "hook.delete", "hook.call"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    assert!(!audit.to_string().contains(&new_secret));
    let metrics = format!("http://{}/metrics", up.control_addr);
    let metrics = reqwest::get(metrics).await.unwrap().text().await.unwrap();
    for outcome in ["accepted", "replayed", "unauthorized", "limited", "refused"] {
        let line = format!("antcode_control_hook_calls_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
    up.stop().await.unwrap();
}
