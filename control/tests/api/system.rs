//! Health, metrics, the OpenAPI document against the router, the web UI's cache and compression
//! headers, and shutdown.

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
    // Without an edge address or a cluster CA, the enrollment facts say so.
    let edge: serde_json::Value = s.get(&t, "/api/v1/edge").await.json().await.unwrap();
    assert_eq!(edge, serde_json::json!({"url": null, "ca": false}));
    assert_eq!(s.get(&t, "/api/v1/edge/ca.pem").await.status(), 404);
    s.stop().await;
}

/// The UI's files: index revalidated, the versioned files it names cached for good and
/// compressed when asked, the old unversioned URLs still answering.
#[tokio::test]
async fn ui_assets_are_versioned_cached_and_compressed() {
    use std::io::Read;

    let s = start().await;
    let get = |path: &str, encoding: Option<&str>| {
        let mut req = s.http.get(s.url(path));
        if let Some(e) = encoding {
            req = req.header("accept-encoding", e);
        }
        req.send()
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let csp_and_vary = |r: &reqwest::Response| {
        assert!(header(r, "content-security-policy")
            .unwrap()
            .contains("script-src 'self'"));
        assert_eq!(header(r, "x-content-type-options").unwrap(), "nosniff");
        assert_eq!(header(r, "vary").unwrap(), "Accept-Encoding");
    };

    let index = get("/", None).await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(header(&index, "cache-control").unwrap(), "no-cache");
    assert!(header(&index, "etag").is_some());
    assert_eq!(header(&index, "content-encoding"), None);
    csp_and_vary(&index);
    let html = index.text().await.unwrap();
    let at = html.find("/ui/v/").expect("index names versioned URLs") + "/ui/v/".len();
    let version = html[at..at + html[at..].find('/').unwrap()].to_string();
    assert_eq!(version.len(), 16, "{html}");
    assert!(
        html.contains(&format!("src=\"/ui/v/{version}/js/app.js\"")),
        "{html}"
    );
    assert!(!html.contains("\"/ui/js/") && !html.contains("\"/ui/app.css"));

    let gz_index = get("/", Some("gzip")).await.unwrap();
    assert_eq!(header(&gz_index, "content-encoding").unwrap(), "gzip");
    assert_eq!(header(&gz_index, "cache-control").unwrap(), "no-cache");

    // The app module under its version: immutable, gzip when asked, identity otherwise.
    let pinned = format!("/ui/v/{version}/js/app.js");
    let plain = get(&pinned, None).await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(
        header(&plain, "cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&plain, "content-encoding"), None);
    assert!(header(&plain, "content-type")
        .unwrap()
        .starts_with("text/javascript"));
    csp_and_vary(&plain);
    let source = plain.bytes().await.unwrap();
    assert!(std::str::from_utf8(&source).unwrap().contains("import"));

    let gz = get(&pinned, Some("gzip, deflate")).await.unwrap();
    assert_eq!(header(&gz, "content-encoding").unwrap(), "gzip");
    assert_eq!(
        header(&gz, "cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );
    csp_and_vary(&gz);
    let gz_tag = header(&gz, "etag").unwrap();
    let packed = gz.bytes().await.unwrap();
    assert!(
        packed.len() * 2 < source.len(),
        "{} of {}",
        packed.len(),
        source.len()
    );
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, source);

    let br = get(&pinned, Some("gzip, deflate, br")).await.unwrap();
    assert_eq!(header(&br, "content-encoding").unwrap(), "br");
    assert!(br.bytes().await.unwrap().len() < packed.len());
    let refused = get(&pinned, Some("gzip;q=0, br;q=0")).await.unwrap();
    assert_eq!(header(&refused, "content-encoding"), None);
    assert_eq!(refused.bytes().await.unwrap(), source);

    // Revalidating the gzip form answers 304 with its own tag.
    let again = s
        .http
        .get(s.url(&pinned))
        .header("accept-encoding", "gzip")
        .header("if-none-match", &gz_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag").unwrap(), gz_tag);

    // A module's relative import stays under the version, and so is pinned too.
    let page = get(&format!("/ui/v/{version}/js/pages/runs.js"), None)
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        header(&page, "cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );

    // The unversioned URL and a stale version still work, revalidated.
    for path in ["/ui/js/app.js", "/ui/v/0123456789abcdef/js/app.js"] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "cache-control").unwrap(), "no-cache", "{path}");
        assert_eq!(r.bytes().await.unwrap(), source, "{path}");
    }
    // index.html is never pinned, whatever the URL.
    let r = get(&format!("/ui/v/{version}/index.html"), None)
        .await
        .unwrap();
    assert_eq!(header(&r, "cache-control").unwrap(), "no-cache");
    assert_eq!(
        get(&format!("/ui/v/{version}/js/nope.js"), None)
            .await
            .unwrap()
            .status(),
        404
    );
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
