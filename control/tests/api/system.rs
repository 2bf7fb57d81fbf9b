//! Health, metrics, the OpenAPI document against the router, and shutdown.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

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
