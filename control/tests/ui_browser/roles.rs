//! Lesser roles: a viewer sees no mutating control and is told which pages are above their
//! role; an operator may drain a worker but sees no admin control.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;
use crate::Ids;

/// Signs in as a new viewer, then as a new operator, and looks at every page.
pub async fn viewer_and_operator(c: &Client, sys: &System, admin: &str, ids: &Ids) {
    let base = sys.base.as_str();
    let (project_id, task_id, run_id) = (&ids.project_id, &ids.task_id, &ids.run_id);
    let project_page = format!("/projects/{project_id}");
    let task_page = format!("/tasks/{task_id}");
    let task_edit = format!("/tasks/{task_id}/edit");
    // --- a viewer -------------------------------------------------------------------------------------
    switch_user(c, sys, admin, "vera", "viewer").await;
    // The dashboard's queue depth is readable by a viewer too.
    wait_js(c, QUEUE_ROW, "the queue depth as a viewer").await;
    let nav = c
        .execute("return document.getElementById('nav').textContent", vec![])
        .await
        .unwrap();
    let nav = nav.as_str().unwrap_or_default();
    assert!(
        !nav.contains("Users") && !nav.contains("Audit") && !nav.contains("Alerts"),
        "viewer nav: {nav}"
    );
    let run_page = format!("/runs/{run_id}");
    let pages = [
        ("/", "Dashboard"),
        ("/projects", "Projects"),
        (project_page.as_str(), "hello"),
        ("/tasks", "Tasks"),
        (task_page.as_str(), "long nap"),
        ("/runs", "Runs"),
        (run_page.as_str(), ""),
        ("/workers", "Workers"),
        ("/secrets", "Secrets"),
    ];
    for (route, title) in pages {
        go(c, base, route).await;
        if title.is_empty() {
            wait_js(
                c,
                "return document.querySelector('.page[aria-busy=false] #run-state')",
                "the run page",
            )
            .await;
        } else {
            heading_is(c, title).await;
        }
        assert_read_only(c, route).await;
    }
    shot(c, "21-viewer-run").await;
    go(c, base, &task_page).await;
    heading_is(c, "long nap").await;
    assert_read_only(c, "the task page").await;
    shot(c, "22-viewer-task-detail").await;
    // Pages above the viewer's role say so instead of failing.
    let project_edit = format!("{project_page}/edit");
    for route in [
        "/users",
        "/audit",
        "/alerts",
        "/alerts/rules",
        "/retention",
        project_edit.as_str(),
        task_edit.as_str(),
    ] {
        go(c, base, route).await;
        heading_is(c, "Not allowed").await;
    }
    assert_clean_console(c, "as a viewer").await;

    // --- an operator: runs work, but no admin controls ------------------------------------------------
    switch_user(c, sys, admin, "opal", "operator").await;
    go(c, base, "/workers").await;
    heading_is(c, "Workers").await;
    let controls = wait_js(
        c,
        "const t = document.querySelector('#main table'); if (!t || !t.textContent.includes('edge-box-1')) return false; \
         return [[...t.querySelectorAll('button')].some(b => b.textContent === 'Drain'), \
                 [...document.querySelectorAll('#main button')].some(b => b.textContent === 'Revoke'), \
                 !!document.querySelector('#enrolled, #enrollment')];",
        "the workers table as an operator",
    )
    .await;
    assert_eq!(controls, json!([true, false, false]), "operator controls");
    go(c, base, "/secrets").await;
    heading_is(c, "Secrets").await;
    assert_read_only(c, "the secrets page as an operator").await;
    // Alerts: an operator lands on the rules (channels are an admin's), sees the global rule
    // without controls to change it, and reads the deliveries.
    go(c, base, "/alerts").await;
    heading_is(c, "Alert rules").await;
    let seen = wait_js(
        c,
        "const t = document.querySelector('#main table'); if (!t || !t.textContent.includes('ops failures')) return false; \
         return [[...document.querySelectorAll('nav.tabs a')].map(a => a.textContent), \
                 [...t.querySelectorAll('button')].length];",
        "the rules as an operator",
    )
    .await;
    assert_eq!(
        seen,
        json!([["Rules", "Deliveries"], 0]),
        "operator rules page"
    );
    go(c, base, "/alerts/deliveries").await;
    heading_is(c, "Alert deliveries").await;
    go(c, base, "/alerts/channels").await;
    heading_is(c, "Not allowed").await;
    assert_clean_console(c, "as an operator").await;
}
