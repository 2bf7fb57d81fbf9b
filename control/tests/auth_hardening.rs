//! The holes of issue 23 in accounts, sessions, login and requests, each tried as an attacker
//! would and refused: a read-only token changing its owner's password, credentials that
//! survive a password change, live streams that outlive their credential, concurrent wrong
//! passwords that all get checked, a spoofed `X-Forwarded-For`, login CSRF, a CSRF token from
//! another session, and bodies larger than a route needs.

use std::time::{Duration, Instant};

use antcode_control::Cidr;
use antcode_testkit::control::*;
use serde_json::{json, Value};

const EDGE_TOKEN: &str = "et_test_edge_token";

async fn user_id(s: &Server, token: &str) -> String {
    let me: Value = s.get(token, "/api/v1/auth/me").await.json().await.unwrap();
    me["user"]["id"].as_str().unwrap().to_string()
}

async fn patch(s: &Server, token: &str, path: &str, body: Value) -> reqwest::Response {
    s.http
        .patch(s.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn login_status(s: &Server, username: &str, password: &str) -> u16 {
    s.post_json(
        "",
        "/api/v1/auth/login",
        json!({"username": username, "password": password}),
    )
    .await
    .status()
    .as_u16()
}

/// A queued run (nothing runs it), whose event stream stays open until it ends.
async fn queued_run(s: &Server, admin: &str) -> String {
    let resp = s
        .upload(
            admin,
            "/api/v1/projects",
            ("job.py", b"print(1)\n".to_vec()),
            &[("name", "streamed")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let pid = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = s
        .post_json(
            admin,
            "/api/v1/tasks",
            json!({"name": "streamed", "project_id": pid}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let tid = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = s.post(admin, &format!("/api/v1/tasks/{tid}/trigger")).await;
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Opens the run's event stream as `token` and returns it once its first event arrived.
async fn open_stream(s: &Server, token: &str, run: &str) -> reqwest::Response {
    let mut resp = s.get(token, &format!("/api/v1/runs/{run}/events")).await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("a first event");
    assert!(String::from_utf8_lossy(&first).contains("event: state"));
    resp
}

/// How long the stream took to end, or `None` if it was still open after `bound`.
async fn ends_within(mut resp: reqwest::Response, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let drained = async { while let Ok(Some(_)) = resp.chunk().await {} };
    tokio::time::timeout(bound, drained).await.ok()?;
    Some(start.elapsed())
}

#[tokio::test]
async fn a_read_token_cannot_change_its_own_account() {
    let s = start().await;
    let admin = s.admin().await;
    let admin_id = user_id(&s, &admin).await;
    let resp = s
        .post_json(
            &admin,
            "/api/v1/tokens",
            json!({"name": "ro", "scopes": ["read"]}),
        )
        .await;
    let ro: Value = resp.json().await.unwrap();
    let (ro, ro_id) = (
        ro["token"].as_str().unwrap().to_string(),
        ro["id"].as_str().unwrap().to_string(),
    );
    let take_over = json!({"password": "attacker-pw-1", "current_password": ADMIN_PASSWORD});
    problem(
        patch(&s, &ro, &format!("/api/v1/users/{admin_id}"), take_over).await,
        403,
    )
    .await;
    // Nor mint or revoke tokens, even read-only ones.
    problem(
        s.post_json(&ro, "/api/v1/tokens", json!({"name": "more"}))
            .await,
        403,
    )
    .await;
    problem(s.delete(&ro, &format!("/api/v1/tokens/{ro_id}")).await, 403).await;
    assert_eq!(login_status(&s, "admin", ADMIN_PASSWORD).await, 200);
    assert_eq!(login_status(&s, "admin", "attacker-pw-1").await, 401);
    // A write token may, with the current password.
    let rw: Value = s
        .post_json(
            &admin,
            "/api/v1/tokens",
            json!({"name": "rw", "scopes": ["write"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let rw = rw["token"].as_str().unwrap();
    let own = json!({"password": "admin-password-2", "current_password": ADMIN_PASSWORD});
    let resp = patch(&s, rw, &format!("/api/v1/users/{admin_id}"), own).await;
    assert_eq!(resp.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_revokes_everything() {
    let s = start().await;
    let admin = s.admin().await;
    let first = s.user_with_role(&admin, "pat", "operator").await;
    let second = s.login("pat", "password-123").await;
    let api: Value = s
        .post_json(
            &first,
            "/api/v1/tokens",
            json!({"name": "ci", "scopes": ["write"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let api = api["token"].as_str().unwrap().to_string();
    let path = format!("/api/v1/users/{}", user_id(&s, &first).await);

    let without = patch(&s, &first, &path, json!({"password": "new-password-1"})).await;
    let body = problem(without, 400).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("current_password"));
    let wrong = json!({"password": "new-password-1", "current_password": "not-it-at-all"});
    problem(patch(&s, &first, &path, wrong).await, 403).await;
    for t in [&first, &second, &api] {
        assert_eq!(s.get(t, "/api/v1/auth/me").await.status(), 200);
    }

    let right = json!({"password": "new-password-1", "current_password": "password-123"});
    assert_eq!(patch(&s, &first, &path, right).await.status(), 200);
    for t in [&first, &second, &api] {
        problem(s.get(t, "/api/v1/auth/me").await, 401).await;
    }
    assert_eq!(login_status(&s, "pat", "password-123").await, 401);
    assert_eq!(login_status(&s, "pat", "new-password-1").await, 200);
    s.stop().await;
}

#[tokio::test]
async fn live_streams_end_when_their_credential_does() {
    let s = start().await;
    let admin = s.admin().await;
    let run = queued_run(&s, &admin).await;
    let bound = Duration::from_secs(2);

    // An admin resets the user's password.
    let vic = s.user_with_role(&admin, "vic", "viewer").await;
    let vic_path = format!("/api/v1/users/{}", user_id(&s, &vic).await);
    let stream = open_stream(&s, &vic, &run).await;
    let reset = patch(&s, &admin, &vic_path, json!({"password": "reset-by-admin"})).await;
    assert_eq!(reset.status(), 200);
    let took = ends_within(stream, bound).await;
    println!("stream end after a password reset: {took:?}");
    assert!(took.is_some(), "the stream outlived the reset by {bound:?}");

    // The user logs out.
    let vic = s.login("vic", "reset-by-admin").await;
    let stream = open_stream(&s, &vic, &run).await;
    assert_eq!(s.post(&vic, "/api/v1/auth/logout").await.status(), 204);
    let took = ends_within(stream, bound).await;
    println!("stream end after logout: {took:?}");
    assert!(took.is_some(), "the stream outlived the logout");

    // The user is disabled, then deleted.
    let vic = s.login("vic", "reset-by-admin").await;
    let stream = open_stream(&s, &vic, &run).await;
    assert_eq!(
        patch(&s, &admin, &vic_path, json!({"disabled": true}))
            .await
            .status(),
        200
    );
    assert!(ends_within(stream, bound).await.is_some(), "disable");
    assert_eq!(s.delete(&admin, &vic_path).await.status(), 204);

    // A session deleted behind control's back (another replica, the CLI): seen within the
    // principal cache's lifetime and one re-check.
    let wes = s.user_with_role(&admin, "wes", "viewer").await;
    let stream = open_stream(&s, &wes, &run).await;
    let session = s
        .store
        .token_by_hash(&antcode_core::ids::token_hash(&wes))
        .await
        .unwrap();
    s.store.delete_token(&session.id).await.unwrap();
    let took = ends_within(stream, bound).await;
    println!("stream end after a deletion in the database: {took:?}");
    assert!(took.is_some(), "the stream outlived its deleted session");

    // Nothing was cut short for anyone else: the admin's stream is still open.
    let mut stream = open_stream(&s, &admin, &run).await;
    let still = tokio::time::timeout(Duration::from_millis(1200), stream.chunk()).await;
    assert!(still.is_err(), "the admin's stream ended: {still:?}");
    s.stop().await;
}

#[tokio::test]
async fn patch_users_refuses_before_reading_the_body() {
    let s = start().await;
    let admin = s.admin().await;
    let admin_id = user_id(&s, &admin).await;
    let viewer = s.user_with_role(&admin, "vi", "viewer").await;
    for body in [json!({"bogus": 1}), json!({"role": 7}), json!([1, 2])] {
        let resp = patch(&s, &viewer, &format!("/api/v1/users/{admin_id}"), body).await;
        let p = problem(resp, 403).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(
            !detail.contains("bogus") && !detail.contains("field"),
            "{detail}"
        );
    }
    s.stop().await;
}

/// 64 wrong passwords at once from one address: the throttle counts each before its check,
/// so at most 10 are checked (401) and the rest refused (429). The owner, from another
/// address, still logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_stop_at_the_limit() {
    let s = start_with(|c| c.trusted_proxies = vec![Cidr::parse("127.0.0.1").unwrap()]).await;
    let attempts = (0..64).map(|_| {
        s.http
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", "203.0.113.5")
            .json(&json!({"username": "admin", "password": "guess"}))
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    println!("64 concurrent wrong passwords: {checked} checked, {refused} refused");
    assert_eq!(checked + refused, 64, "{statuses:?}");
    assert!(checked <= 10, "{checked} passwords were checked");
    let owner = s
        .http
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(owner.status(), 200, "the owner was locked out");
    s.stop().await;
}

async fn failed_login_addresses(s: &Server, admin: &str) -> Vec<String> {
    let audit: Value = s
        .get(admin, "/api/v1/audit?limit=500&action=auth.login")
        .await
        .json()
        .await
        .unwrap();
    audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect()
}

/// Without a trusted proxy, `X-Forwarded-For` changes nothing: not the throttle's key, not the
/// audited address (any process on the host is a loopback peer).
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let s = start_with(|c| c.edge_token = Some(EDGE_TOKEN.into())).await;
    let admin = s.admin().await;
    let mut last = 0;
    for n in 0..11 {
        last = s
            .http
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("192.0.2.{n}"))
            .json(&json!({"username": format!("ghost{n}"), "password": "x"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(last, 429, "a fresh X-Forwarded-For escaped the throttle");
    let addresses = failed_login_addresses(&s, &admin).await;
    assert!(!addresses.is_empty());
    assert!(addresses.iter().all(|a| a == "127.0.0.1"), "{addresses:?}");

    // The edge's header counts only with the edge token.
    let s2 = start_with(|c| c.edge_token = Some(EDGE_TOKEN.into())).await;
    let admin2 = s2.admin().await;
    for (token, peer) in [("wrong", "192.0.2.77"), (EDGE_TOKEN, "192.0.2.88")] {
        let resp = s2
            .http
            .post(s2.url("/api/v1/auth/login"))
            .header("x-antcode-edge", token)
            .header("x-antcode-peer", peer)
            .json(&json!({"username": "nobody", "password": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let mut addresses = failed_login_addresses(&s2, &admin2).await;
    addresses.sort();
    assert_eq!(addresses, ["127.0.0.1", "192.0.2.88"]);
    s.stop().await;
    s2.stop().await;
}

#[tokio::test]
async fn login_takes_json_only() {
    let s = start().await;
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = s.http.post(s.url("/api/v1/auth/login")).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        problem(req.send().await.unwrap(), 415).await;
    }
    let ok = s
        .http
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    s.stop().await;
}

fn cookie_value(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string()
}

async fn cookie_login(s: &Server) -> (String, String) {
    let resp = s
        .post_json(
            "",
            "/api/v1/auth/login",
            json!({"username": "admin", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    (
        cookie_value(&resp, "antcode_session"),
        cookie_value(&resp, "antcode_csrf"),
    )
}

/// A CSRF token works only with the session it was issued with: a cookie tossed in from
/// another session (the attacker's own login) is refused.
#[tokio::test]
async fn csrf_tokens_are_bound_to_their_session() {
    let s = start().await;
    let (session_a, csrf_a) = cookie_login(&s).await;
    let (session_b, csrf_b) = cookie_login(&s).await;
    let post = |session: &str, cookie_csrf: &str, header: &str| {
        s.http
            .post(s.url("/api/v1/tokens"))
            .header(
                "cookie",
                format!("antcode_session={session}; antcode_csrf={cookie_csrf}"),
            )
            .header("x-csrf-token", header)
            .json(&json!({"name": "t"}))
            .send()
    };
    problem(post(&session_b, &csrf_a, &csrf_a).await.unwrap(), 403).await;
    problem(post(&session_b, &csrf_b, "").await.unwrap(), 403).await;
    assert_eq!(
        post(&session_b, &csrf_b, &csrf_b).await.unwrap().status(),
        201
    );
    assert_eq!(
        post(&session_a, &csrf_a, &csrf_a).await.unwrap().status(),
        201
    );
    s.stop().await;
}

/// Login and the edge's internal calls take a few KiB, JSON routes 1 MiB, uploads the
/// configured maximum; past a limit the answer is 413 problem+json, declared length or not.
#[tokio::test]
async fn bodies_are_bounded_per_route() {
    let s = start_with(|c| {
        c.max_upload_bytes = 8 * 1024 * 1024;
        c.edge_token = Some(EDGE_TOKEN.into());
    })
    .await;
    let admin = s.admin().await;
    let pad = |n: usize| "x".repeat(n);

    let login = json!({"username": "admin", "password": pad(9 * 1024)});
    problem(s.post_json("", "/api/v1/auth/login", login).await, 413).await;
    let enroll = json!({"enrollment_key": pad(20 * 1024)});
    let resp = s
        .http
        .post(s.url("/internal/v1/enroll"))
        .bearer_auth(EDGE_TOKEN)
        .json(&enroll)
        .send()
        .await
        .unwrap();
    problem(resp, 413).await;
    let task = json!({"name": "big", "project_id": "x", "description": pad(1536 * 1024)});
    problem(s.post_json(&admin, "/api/v1/tasks", task).await, 413).await;
    // Streamed without a declared length: cut off all the same.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"username\":\"admin\",\"password\":\"".to_vec()),
        Ok(pad(16 * 1024).into_bytes()),
        Ok(b"\"}".to_vec()),
    ];
    let resp = s
        .http
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    problem(resp, 413).await;
    // An upload of 2 MiB is fine.
    let code = format!("# {}\nprint(1)\n", pad(2 * 1024 * 1024));
    let resp = s
        .upload(
            &admin,
            "/api/v1/projects",
            ("big.py", code.into_bytes()),
            &[("name", "big")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    s.stop().await;
}
