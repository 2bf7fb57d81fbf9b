//! Every page at phone width: no sideways scrolling, and the menu behind its toggle.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;
use crate::Ids;

/// Every page at 390 px wide, the run page `run_id` and its menu.
pub async fn every_page_fits(c: &Client, sys: &System, ids: &Ids) {
    let base = sys.base.as_str();
    let (project_id, task_id, run_id) = (&ids.project_id, &ids.task_id, &ids.run_id);
    // --- phone width --------------------------------------------------------------------------------
    c.set_window_size(390, 844).await.unwrap();
    let project_page = format!("/projects/{project_id}");
    let task_page = format!("/tasks/{task_id}");
    let task_edit = format!("/tasks/{task_id}/edit");
    let phone_pages = [
        ("/", "Dashboard"),
        ("/projects", "Projects"),
        (project_page.as_str(), "hello"),
        ("/tasks", "Tasks"),
        (task_page.as_str(), "long nap"),
        (task_edit.as_str(), "Edit long nap"),
        ("/runs", "Runs"),
        ("/workers", "Workers"),
        ("/users", "Users"),
        ("/account", "Account & tokens"),
        ("/secrets", "Secrets"),
        ("/audit", "Audit log"),
        ("/alerts/channels", "Alert channels"),
        ("/alerts/rules", "Alert rules"),
        ("/alerts/deliveries", "Alert deliveries"),
        ("/retention", "Retention"),
    ];
    for (i, (route, title)) in phone_pages.into_iter().enumerate() {
        go(c, base, route).await;
        heading_is(c, title).await;
        assert_fits(c, route).await;
        shot(c, &format!("p{:02}-phone-{}", i + 1, slug(title))).await;
    }
    go(c, base, &format!("/runs/{run_id}")).await;
    wait_js(
        c,
        "return document.querySelector('#run-state')",
        "the run page",
    )
    .await;
    let layout = c
        .execute(
            "const t = document.getElementById('menu-toggle'); const n = document.getElementById('nav'); \
             return [getComputedStyle(t).display !== 'none', getComputedStyle(n).display];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(layout, json!([true, "none"]), "phone layout");
    assert_fits(c, "the run page").await;
    shot(c, "19-phone-run").await;
    css(c, "#menu-toggle").await.click().await.unwrap();
    wait_js(
        c,
        "return getComputedStyle(document.getElementById('nav')).display === 'block'",
        "the opened menu",
    )
    .await;
    shot(c, "20-phone-menu").await;
    c.set_window_size(1280, 900).await.unwrap();
    assert_clean_console(c, "at phone width").await;
}
