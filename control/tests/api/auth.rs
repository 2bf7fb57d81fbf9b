//! Logging in, the login throttle, roles and tokens, and how fast a changed credential
//! takes effect.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::project_and_task;

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
