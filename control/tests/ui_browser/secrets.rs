//! The secrets page: set and replace a secret, and a run receiving the new value.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// Set a secret, replace its value, and see a run receive the new value; no value is ever on
/// the page.
pub async fn secrets_page(c: &Client, sys: &System, admin: &str) {
    go(c, &sys.base, "/secrets").await;
    heading_is(c, "Secrets").await;
    fill(c, "#secret-form input[name=secret-name]", "API_KEY").await;
    fill(
        c,
        "#secret-form textarea[name=secret-value]",
        "s3cr3t-value-never-shown",
    )
    .await;
    click(c, "#secret-form button[type=submit]").await;
    wait_js(
        c,
        "const t = document.querySelector('#main table'); return t && t.textContent.includes('API_KEY')",
        "the secret's name in the list",
    )
    .await;
    let first = sys.get(admin, "/secrets").await["items"][0].clone();
    assert_eq!(first["name"], "API_KEY");
    // Replace: the form takes the name and puts the cursor in the value.
    click_xpath(
        c,
        "//main//tr[contains(., 'API_KEY')]//button[text()='Replace']",
    )
    .await;
    let ready = c
        .execute(
            "return [document.querySelector('#secret-form input[name=secret-name]').value, document.activeElement.name]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ready, json!(["API_KEY", "secret-value"]));
    c.active_element()
        .await
        .unwrap()
        .send_keys("replaced-value-2")
        .await
        .unwrap();
    click(c, "#secret-form button[type=submit]").await;
    sys.wait_for(admin, "/secrets", "the replaced secret", |b| {
        b["items"][0]["updated_at"] != first["updated_at"]
    })
    .await;
    let source = c.source().await.unwrap();
    assert!(!source.contains("s3cr3t-value-never-shown") && !source.contains("replaced-value-2"));
    shot(c, "17-secrets").await;
    // A run of a task that declares the secret receives the new value.
    let post = reqwest::Method::POST;
    let project = sys
        .call(
            admin,
            post.clone(),
            "/projects",
            json!({"name": "echo-secret", "code": "import os\nprint('secret is', os.environ['API_KEY'])\n"}),
        )
        .await;
    sys.call(
        admin,
        reqwest::Method::PUT,
        "/secrets/API_KEY/grants",
        json!({"projects": [project["id"]]}),
    )
    .await;
    let task = sys
        .call(
            admin,
            post.clone(),
            "/tasks",
            json!({"name": "echo-secret", "project_id": project["id"], "secrets": ["API_KEY"]}),
        )
        .await;
    let run = sys
        .call(
            admin,
            post,
            &format!("/tasks/{}/trigger", task["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let log = sys.finished_log(admin, run["id"].as_str().unwrap()).await;
    assert!(log.contains("secret is replaced-value-2"), "{log}");
}
