//! The full route × role × token-scope matrix: every operation of the served OpenAPI document
//! (which is generated from the crate's route table, and another test checks that table against
//! the live router) is called by login sessions of an admin, an operator and a viewer, by API
//! tokens of each scope (`read`, `write`, `admin`) of an admin and a `read` token of an
//! operator, and anonymously. The answer must match the operation's `x-antcode-role` and
//! `x-antcode-scope`:
//!
//! * anonymous on a protected operation → 401;
//! * anyone on a webhook call (its own secret is its credential; the hook is a ghost) → 401;
//! * a caller whose role narrowed by its token's scopes is below the operation's role → 403;
//! * a token whose scope is below the operation's scope → 403 (a `read` token changes nothing,
//!   its own account included);
//! * otherwise anything but 401/403 (ids are unknown, bodies empty: 2xx, 400, 404, 409 are all
//!   "allowed past authorisation").
//!
//! Own-account operations are walked too, on the caller's own account: `PATCH /users/{own id}`
//! (any session or a write token; a read token is refused).
//!
//! Refusals must come before body validation: a viewer posting an empty body to an admin
//! operation is told 403, not which fields are missing.

use antcode_testkit::control::{start, Server};
use serde_json::{json, Value};

const GHOST: &str = "01900000-0000-7000-8000-000000000000";

fn rank(role: &str) -> u8 {
    match role {
        "none" => 0,
        "viewer" | "read" => 1,
        "operator" | "write" => 2,
        "admin" => 3,
        other => panic!("unknown role or scope {other} in the route table"),
    }
}

/// A caller: its user's role and the most its credential's scopes allow (`admin` for a
/// session); `None` is anonymous.
struct Caller {
    name: &'static str,
    role: &'static str,
    scope: &'static str,
    token: Option<String>,
}

/// What `caller` must get from an operation needing `role` and `scope`.
fn expected(caller: &Caller, role: &str, scope: &str) -> Expect {
    if role == "none" {
        Expect::Allowed
    } else if role == "hook" {
        // A webhook takes its own secret only: no session or API token opens it.
        Expect::Status(401)
    } else if caller.token.is_none() {
        Expect::Status(401)
    } else if rank(caller.role).min(rank(caller.scope)) >= rank(role)
        && rank(caller.scope) >= rank(scope)
    {
        Expect::Allowed
    } else {
        Expect::Status(403)
    }
}

#[derive(Debug, PartialEq)]
enum Expect {
    Status(u16),
    Allowed,
}

async fn token(s: &Server, session: &str, scope: &str) -> String {
    let resp = s
        .post_json(
            session,
            "/api/v1/tokens",
            json!({"name": format!("matrix-{scope}"), "scopes": [scope]}),
        )
        .await;
    assert_eq!(resp.status(), 201, "a {scope} token");
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

async fn call(s: &Server, method: &str, url: &str, caller: &Caller) -> (u16, String) {
    let mut req = match method {
        "get" => s.http.get(url),
        "post" => s.http.post(url),
        "put" => s.http.put(url),
        "patch" => s.http.patch(url),
        "delete" => s.http.delete(url),
        other => panic!("unexpected method {other}"),
    };
    if let Some(t) = &caller.token {
        req = req.bearer_auth(t);
    }
    let resp = req.json(&json!({})).send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct)
}

fn judge(failures: &mut Vec<String>, what: &str, got: (u16, String), want: Expect) {
    let (status, ct) = got;
    let seen = match status {
        401 | 403 => Expect::Status(status),
        _ => Expect::Allowed,
    };
    if status >= 500 {
        failures.push(format!("{what}: {status}"));
    } else if seen != want {
        failures.push(format!("{what}: got {status}, want {want:?}"));
    }
    if (status == 401 || status == 403) && ct != "application/problem+json" {
        failures.push(format!("{what}: {status} as {ct}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role_and_scope() {
    let s = start().await;
    let admin = s.admin().await;
    let operator = s.user_with_role(&admin, "op", "operator").await;
    let viewer = s.user_with_role(&admin, "vi", "viewer").await;
    let spec: Value = s
        .http
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // (method, path, least role, least scope); logout last, since it ends the caller's
    // credential.
    let mut ops: Vec<(String, String, String, String)> = vec![];
    for (path, methods) in spec["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let role = op["x-antcode-role"].as_str().unwrap().to_string();
            let scope = op["x-antcode-scope"].as_str().unwrap().to_string();
            ops.push((method.clone(), path.clone(), role, scope));
        }
    }
    ops.sort_by_key(|(_, path, _, _)| path.ends_with("/logout"));
    assert!(
        ops.len() >= 45,
        "the table shrank: {} operations",
        ops.len()
    );

    // Low ranks first, so an allowed mutation by an admin cannot change what they see.
    let callers = [
        Caller {
            name: "anonymous",
            role: "none",
            scope: "none",
            token: None,
        },
        Caller {
            name: "operator's read token",
            role: "operator",
            scope: "read",
            token: Some(token(&s, &operator, "read").await),
        },
        Caller {
            name: "admin's read token",
            role: "admin",
            scope: "read",
            token: Some(token(&s, &admin, "read").await),
        },
        Caller {
            name: "viewer",
            role: "viewer",
            scope: "admin",
            token: Some(viewer),
        },
        Caller {
            name: "admin's write token",
            role: "admin",
            scope: "write",
            token: Some(token(&s, &admin, "write").await),
        },
        Caller {
            name: "operator",
            role: "operator",
            scope: "admin",
            token: Some(operator),
        },
        Caller {
            name: "admin's admin token",
            role: "admin",
            scope: "admin",
            token: Some(token(&s, &admin, "admin").await),
        },
        Caller {
            name: "admin",
            role: "admin",
            scope: "admin",
            token: Some(admin),
        },
    ];

    let mut failures = vec![];
    let mut checks = 0;
    // Own-account operations first, on the caller's own account, while every credential lives.
    for caller in &callers {
        let Some(t) = &caller.token else { continue };
        let me: Value = s.get(t, "/api/v1/auth/me").await.json().await.unwrap();
        let own = format!("/api/v1/users/{}", me["user"]["id"].as_str().unwrap());
        let want = expected(caller, "viewer", "write");
        let got = call(&s, "patch", &s.url(&own), caller).await;
        judge(
            &mut failures,
            &format!("patch own user as {}", caller.name),
            got,
            want,
        );
        checks += 1;
    }
    for (method, path, role, scope) in &ops {
        let url = s.url(
            &path
                .replace("{id}", GHOST)
                .replace("{hook_id}", GHOST)
                .replace("{n}", "1")
                .replace("{name}", "GHOST"),
        );
        for caller in &callers {
            let got = call(&s, method, &url, caller).await;
            let what = format!("{method} {path} (needs {role}/{scope}) as {}", caller.name);
            judge(&mut failures, &what, got, expected(caller, role, scope));
            checks += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checks} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    s.stop().await;
}
