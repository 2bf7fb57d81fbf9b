//! The full role × endpoint matrix: every operation of the served OpenAPI document (which is
//! generated from the crate's route table, and another test checks that table against the live
//! router) is called as admin, operator, viewer and anonymous, and the answer must match the
//! operation's `x-antcode-role`:
//!
//! * anonymous on a protected operation → 401;
//! * a role below the operation's → 403;
//! * otherwise anything but 401/403 (ids are unknown, bodies empty: 2xx, 400, 404, 409 are all
//!   "allowed past authorisation").
//!
//! Refusals must come before body validation: a viewer posting an empty body to an admin
//! operation is told 403, not which fields are missing.

mod common;

use common::start;
use serde_json::{json, Value};

const GHOST: &str = "01900000-0000-7000-8000-000000000000";

fn rank(role: &str) -> u8 {
    match role {
        "none" => 0,
        "viewer" => 1,
        "operator" => 2,
        "admin" => 3,
        other => panic!("unknown role {other} in the route table"),
    }
}

/// What a caller of `caller` rank must get from an operation needing `needed`.
fn expected(caller: &str, needed: &str) -> Expect {
    if needed == "none" {
        Expect::Allowed
    } else if caller == "anonymous" {
        Expect::Status(401)
    } else if rank(caller) >= rank(needed) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role() {
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

    // (method, path, least role); logout last, since it ends the caller's session.
    let mut ops: Vec<(String, String, String)> = vec![];
    for (path, methods) in spec["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let role = op["x-antcode-role"].as_str().unwrap().to_string();
            ops.push((method.clone(), path.clone(), role));
        }
    }
    ops.sort_by_key(|(_, path, _)| path.ends_with("/logout"));
    assert!(
        ops.len() >= 45,
        "the table shrank: {} operations",
        ops.len()
    );

    let callers = [
        ("admin", Some(admin.as_str())),
        ("operator", Some(operator.as_str())),
        ("viewer", Some(viewer.as_str())),
        ("anonymous", None),
    ];
    let mut failures = vec![];
    for (method, path, needed) in &ops {
        let url = s.url(
            &path
                .replace("{id}", GHOST)
                .replace("{n}", "1")
                .replace("{name}", "GHOST"),
        );
        // Low roles first, so an allowed mutation by an admin cannot change what they see.
        for (caller, token) in callers.iter().rev() {
            let mut req = match method.as_str() {
                "get" => s.http.get(&url),
                "post" => s.http.post(&url),
                "put" => s.http.put(&url),
                "patch" => s.http.patch(&url),
                "delete" => s.http.delete(&url),
                other => panic!("unexpected method {other}"),
            };
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.json(&json!({})).send().await.unwrap();
            let status = resp.status().as_u16();
            let got = match status {
                401 | 403 => Expect::Status(status),
                _ => Expect::Allowed,
            };
            let want = expected(caller, needed);
            if status >= 500 {
                failures.push(format!("{method} {path} as {caller}: {status}"));
            } else if got != want {
                failures.push(format!(
                    "{method} {path} (needs {needed}) as {caller}: got {status}, want {want:?}"
                ));
            }
            if status == 401 || status == 403 {
                let ct = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if ct != "application/problem+json" {
                    failures.push(format!("{method} {path} as {caller}: {status} as {ct}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        ops.len() * callers.len(),
        failures.join("\n")
    );
    s.stop().await;
}
