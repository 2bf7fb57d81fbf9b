//! The workers page: drain and undrain, enrollment keys, enrolling and revoking a worker.

use std::time::Duration;

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// Drain and undrain the real runner; create an enrollment key, enroll with it as the edge would,
/// and revoke the enrolled worker.
pub async fn workers_page(c: &Client, sys: &System, admin: &str) {
    go(c, &sys.base, "/workers").await;
    heading_is(c, "Workers").await;
    wait_js(
        c,
        "return document.querySelector('#main table') && document.querySelector('#main table').textContent.includes('ui-test-runner')",
        "the runner in the workers table",
    )
    .await;
    let listed = sys.get(admin, "/workers").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "ui-test-runner")
        .cloned()
        .expect("the runner heartbeats");
    // The list says which sandbox guarantees the runner cannot give.
    let missing = listed["labels"]["sandbox_missing"]
        .as_str()
        .unwrap_or_default();
    assert!(
        missing.contains("platform ports in network full"),
        "{listed}"
    );
    let runner_id = listed["id"].as_str().unwrap().to_string();
    let runner = format!("/workers/{runner_id}");
    let row = "//main//tr[contains(., 'ui-test-runner')]";
    click_xpath(c, &format!("{row}//button[text()='Drain']")).await;
    sys.wait_for(admin, &runner, "the runner to drain", |w| {
        w["draining"] == true
    })
    .await;
    click_xpath(c, &format!("{row}//button[text()='Undrain']")).await;
    sys.wait_for(admin, &runner, "the runner to take work again", |w| {
        w["draining"] == false
    })
    .await;

    // An enrollment key, shown once with the runner command ready to copy.
    fill(c, "#key-form input[name=key-note]", "edge box").await;
    fill(c, "#key-form input[name=key-labels]", "gpu=1").await;
    click(c, "#key-form button[type=submit]").await;
    let command = wait_js(
        c,
        "const t = document.querySelector('#key-form textarea'); return t && t.value;",
        "the runner command",
    )
    .await;
    let command = command.as_str().unwrap_or_default();
    assert!(
        command.starts_with("antcode runner --mode gateway")
            && command.contains("--enroll ek_")
            && command.contains("--label gpu=1"),
        "{command}"
    );
    wait_js(
        c,
        "return document.querySelector('#enrollment table') && document.querySelector('#enrollment table').textContent.includes('edge box')",
        "the key in the list",
    )
    .await;
    let keys = sys.get(admin, "/worker-keys").await;
    assert!(
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["note"] == "edge box" && k["labels"] == json!({"gpu": "1"})),
        "{keys}"
    );
    // The key in the command works, once: the edge trades it for a worker identity…
    let key = command
        .split_whitespace()
        .skip_while(|w| *w != "--enroll")
        .nth(1)
        .unwrap();
    let post = reqwest::Method::POST;
    let (status, enrolled) = sys
        .request(
            "",
            post.clone(),
            "/internal/v1/enroll",
            json!({"enrollment_key": key, "name": "edge-box-1", "labels": {"gpu": "1"}}),
        )
        .await;
    assert_eq!(status, 200, "{enrolled}");
    let worker_id = enrolled["worker_id"].as_str().unwrap().to_string();
    let credential = json!({"api_key": enrolled["api_key"]});
    let authenticate = "/internal/v1/authenticate";
    let (status, _) = sys
        .request("", post.clone(), authenticate, credential.clone())
        .await;
    assert_eq!(status, 200);
    // …and relays its heartbeats, which put it on the page.
    let status = antcode_core::model::WorkerStatus {
        id: worker_id.clone(),
        name: "edge-box-1".into(),
        mode: "gateway".into(),
        queues: vec!["default".into()],
        labels: [("gpu".to_string(), "1".to_string())].into(),
        slots: 2,
        cpu_percent: 12.5,
        memory_percent: 40.0,
        disk_percent: 55.0,
        version: "0.1.0".into(),
        last_seen_ms: antcode_core::time::now_ms(),
        ..Default::default()
    };
    sys.broker
        .put_worker(&status, Duration::from_secs(600))
        .await
        .unwrap();
    wait_js(
        c,
        "return document.querySelector('#main table').textContent.includes('edge-box-1')",
        "the enrolled worker in the table",
    )
    .await;
    shot(c, "14-workers").await;
    // The edge's worker heartbeats no more (the test put its status once), so the list keeps
    // saying what it last reported: the page shows a drain from the answer, at once, with the
    // focus on the row's new button.
    let edge_row = "//main//tr[contains(., 'edge-box-1')]";
    for (button, state, next) in [
        ("Drain", "draining", "Undrain"),
        ("Undrain", "active", "Drain"),
    ] {
        click_xpath(c, &format!("{edge_row}//button[text()='{button}']")).await;
        wait_js(
            c,
            &format!(
                "const row = [...document.querySelectorAll('#main tr')].find(r => r.textContent.includes('edge-box-1')); \
                 const b = document.activeElement; \
                 return row && row.cells[1].textContent === {} && b && row.contains(b) && b.textContent === {};",
                json!(state),
                json!(next)
            ),
            &format!("edge-box-1 {state}, focus on {next}"),
        )
        .await;
    }
    click_xpath(
        c,
        "//main//tr[contains(., 'edge-box-1')]//button[text()='Revoke']",
    )
    .await;
    click(c, "dialog.confirm button.danger").await;
    wait_js(
        c,
        "return document.getElementById('toasts').textContent.includes('Worker revoked')",
        "the revocation",
    )
    .await;
    let (status, _) = sys.request("", post, authenticate, credential).await;
    assert_eq!(status, 401, "a revoked worker's credential still works");
    let enrolled = sys.get(admin, "/enrolled-workers").await;
    assert_eq!(
        enrolled["items"][0]["id"].as_str(),
        Some(worker_id.as_str())
    );
    assert_eq!(enrolled["items"][0]["revoked"], true, "{enrolled}");
    // The page says so, and offers no second revoke; the key shows it was used.
    wait_js(
        c,
        "const row = [...document.querySelectorAll('#enrolled tbody tr')].find(r => r.textContent.includes('edge-box-1')); \
         const live = [...document.querySelectorAll('#main tr')].filter(r => r.textContent.includes('edge-box-1')); \
         const keys = document.querySelector('#enrollment table').textContent; \
         return row && row.textContent.includes('revoked') && !live.some(r => r.querySelector('button.danger')) \
           && !keys.includes('unused');",
        "the revoked worker on the page",
    )
    .await;
    shot(c, "14-workers-revoked").await;
}
