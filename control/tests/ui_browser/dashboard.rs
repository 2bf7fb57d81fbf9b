//! The dashboard (chart, server-counted runs, queue depth), a task's run analysis, the runs list filtered from its form, a page whose data
//! cannot load, and the tasks list.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// A job waiting in a queue no runner serves, then the dashboard and the lists.
pub async fn dashboard_and_lists(c: &Client, sys: &System, admin: &str, project_id: &str) {
    let base = sys.base.as_str();
    // A job waits in a queue no runner serves, for the dashboard's queue depth.
    let nightly = sys
        .call(
            admin,
            reqwest::Method::POST,
            "/tasks",
            json!({"name": "nightly", "project_id": project_id, "queue": "nightly"}),
        )
        .await;
    sys.call(
        admin,
        reqwest::Method::POST,
        &format!("/tasks/{}/trigger", nightly["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    sys.wait_for(admin, "/queues", "the nightly job in its queue", |q| {
        q["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|q| q["name"] == "nightly" && q["depth"] == 1))
    })
    .await;

    // --- the other pages -------------------------------------------------------------------------
    let before = sys.get(admin, "/stats/runs").await["total"]["runs"]
        .as_u64()
        .unwrap();
    go(c, base, "/").await;
    heading_is(c, "Dashboard").await;
    wait_js(
        c,
        "return document.querySelectorAll('#main svg.chart rect').length >= 2",
        "bars in the chart",
    )
    .await;
    wait_js(c, QUEUE_ROW, "the nightly queue's depth on the dashboard").await;
    // The counts are the server's (`/stats/runs`), not the browser's over a page of runs. A
    // scheduled run may land meanwhile, so the page's count lies between two reads.
    let shown = wait_js(
        c,
        "const v = document.querySelector('#main .stat .stat-value'); return v && v.textContent",
        "the day's run count",
    )
    .await;
    let after = sys.get(admin, "/stats/runs").await["total"]["runs"]
        .as_u64()
        .unwrap();
    let shown: u64 = shown.as_str().unwrap().parse().unwrap();
    assert!(
        before >= 2 && (before..=after).contains(&shown),
        "{before} ≤ {shown} ≤ {after}"
    );
    shot(c, "11-dashboard").await;

    // A task's page charts its runs: by state, durations and success rate, for a chosen window.
    let done = sys.get(admin, "/runs?state=succeeded&limit=1").await;
    let task_id = done["items"][0]["task_id"].as_str().unwrap().to_string();
    go(c, base, &format!("/tasks/{task_id}")).await;
    wait_js(
        c,
        "const a = document.querySelector('#analysis'); \
         return a && a.querySelectorAll('svg.chart rect').length >= 1 \
           && a.querySelectorAll('svg.chart circle.dot').length >= 1 \
           && a.textContent.includes('succeeded')",
        "the task's bars, duration points and success rate",
    )
    .await;
    css(c, "#analysis-window")
        .await
        .select_by_value("month")
        .await
        .unwrap();
    wait_js(
        c,
        "const a = document.querySelector('#analysis'); \
         return a.querySelectorAll('svg.chart rect').length >= 1 \
           && [...a.querySelectorAll('svg.chart text.axis')].some(t => /[A-Z][a-z]{2} \\d/.test(t.textContent))",
        "the month's chart, its buckets labelled by day",
    )
    .await;
    c.execute(
        "document.querySelector('#analysis').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot(c, "11b-task-analysis").await;
    go(c, base, "/runs").await;
    heading_is(c, "Runs").await;
    // Filter by state from the form: only the cancelled run is left.
    css(c, "#main form[role=search] select[name=state]")
        .await
        .select_by_value("cancelled")
        .await
        .unwrap();
    click(c, "#main form[role=search] button[type=submit]").await;
    wait_js(
        c,
        "if (location.hash !== '#/runs?state=cancelled' || !document.querySelector('.page[aria-busy=false]')) return false; \
         const rows = [...document.querySelectorAll('#main tbody tr')]; \
         return rows.length === 1 && rows[0].querySelector('.badge').textContent === 'cancelled';",
        "the runs filtered to the cancelled one",
    )
    .await;
    shot(c, "12-runs").await;
    // Filters apply as they change and stay in the URL, without a new page.
    fill(
        c,
        "#main form[role=search] input[name=error]",
        "no such error",
    )
    .await;
    wait_js(
        c,
        "return location.hash === '#/runs?state=cancelled&error=no+such+error' \
           && document.querySelector('#main section.card').textContent.includes('No runs match.')",
        "no run with that error, said in the URL",
    )
    .await;
    go(c, base, "/runs?trigger=schedule").await;
    wait_js(
        c,
        "return document.querySelector('#main select[name=trigger]').value === 'schedule' \
           && document.querySelector('#main section.card').textContent.includes('No runs match.')",
        "the trigger filter read from the URL",
    )
    .await;
    // A page whose data cannot load says why, readably.
    go(c, base, "/runs/01900000-0000-7000-8000-000000000000").await;
    let message = wait_js(
        c,
        "const e = document.querySelector('#main .error'); return e && !e.hidden && e.textContent;",
        "the not-found message",
    )
    .await;
    assert!(
        message.as_str().is_some_and(|m| m.contains("not found")),
        "{message}"
    );
    for e in console_errors(c).await {
        assert!(e.contains("404"), "unexpected console error: {e}");
    }
    go(c, base, "/tasks").await;
    heading_is(c, "Tasks").await;
    shot(c, "13-tasks").await;
}
