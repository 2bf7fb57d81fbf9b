//! Runs: trigger from the keyboard and watch the log live, cancel through the confirm dialog,
//! a finished run's log and download, retry, the attempt picker, and a run group's graph.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// Triggers the task on the page, watches its log live and cancels it: the run's id.
pub async fn live_log_and_cancel(c: &Client, sys: &System, admin: &str) -> String {
    // --- trigger, watch the log live, cancel -----------------------------------------------------
    // Trigger from the keyboard: Enter on the focused button.
    css(c, "#trigger").await;
    c.execute("document.getElementById('trigger').focus()", vec![])
        .await
        .unwrap();
    press(c, ENTER).await;
    wait_js(
        c,
        "return location.hash.startsWith('#/runs/') && document.querySelector('#log')",
        "the run page",
    )
    .await;
    // The focus lands on the new run's heading, not on the page's body.
    page_ready(c, "the new run").await;
    let focused = c
        .execute(
            "const a = document.activeElement; return [a.tagName, a.textContent.startsWith('Run ')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focused, json!(["H1", true]));
    // The line arrives while the run is still running: the tail is live, not a replay.
    wait_js(
        c,
        "return document.querySelector('#log').textContent.includes('hello-from-ui-test') \
         && document.querySelector('#run-state').textContent === 'running'",
        "the first log line while running",
    )
    .await;
    let status = c
        .execute(
            "return document.querySelector('#log-status').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!("live"));
    // Search marks what it finds; "only matching lines" filters the rest out.
    fill(c, "input[name=log-search]", "nothing-matches-this").await;
    wait_js(
        c,
        "return document.querySelector('#log-count').textContent === '0 matches shown' \
         && !document.querySelector('#log mark')",
        "no match",
    )
    .await;
    click(c, "#log-only").await;
    wait_js(
        c,
        "return document.querySelector('#log').textContent === ''",
        "an empty filtered log",
    )
    .await;
    fill(c, "input[name=log-search]", "hello-from").await;
    wait_js(
        c,
        "return document.querySelector('#log').textContent.trim() === 'hello-from-ui-test' \
         && document.querySelector('#log mark').textContent === 'hello-from'",
        "the filtered line, its match marked",
    )
    .await;
    click(c, "#log-only").await;
    shot(c, "08-run-live-log").await;
    let run_id = current_hash(c)
        .await
        .trim_start_matches("/runs/")
        .to_string();
    // Cancel with the keyboard: the dialog opens on its safe choice; Escape closes it and
    // changes nothing; Shift+Tab then Enter confirms.
    css(c, "#cancel-run").await.click().await.unwrap();
    css(c, "dialog.confirm").await;
    c.active_element()
        .await
        .unwrap()
        .send_keys(ESCAPE)
        .await
        .unwrap();
    wait_js(
        c,
        "return !document.querySelector('dialog.confirm')",
        "the dialog to close",
    )
    .await;
    let run = sys.get(admin, &format!("/runs/{run_id}")).await;
    assert_eq!(
        (run["state"].as_str(), run["cancel_requested"].as_bool()),
        (Some("running"), Some(false)),
        "Escape must not cancel: {run}"
    );
    css(c, "#cancel-run").await.click().await.unwrap();
    css(c, "dialog.confirm").await;
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Cancel");
    focused.send_keys(&format!("{SHIFT}{TAB}")).await.unwrap();
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Cancel run");
    focused.send_keys(ENTER).await.unwrap();
    wait_js(
        c,
        "return document.querySelector('#run-state').textContent === 'cancelled'",
        "the cancelled state",
    )
    .await;
    wait_js(
        c,
        "return document.querySelector('#log-status').textContent === 'run ended' && document.querySelector('#retry-run')",
        "the end of the log stream",
    )
    .await;
    // Cancel gave way to Retry, and so did the focus: a keyboard user is where they were.
    let focused = c
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("retry-run"));
    assert_eq!(
        sys.get(admin, &format!("/runs/{run_id}")).await["state"],
        "cancelled"
    );
    shot(c, "09-run-cancelled").await;
    assert_clean_console(c, "on the run page").await;
    run_id
}

/// A run that succeeds (its log, its download), its retry, and a run that succeeded on its
/// second attempt.
pub async fn finished_runs(c: &Client, sys: &System, admin: &str, project_id: &str) {
    let base = sys.base.as_str();
    // A quick run of the same project, through the API, so the dashboard has a success.
    let quick = sys
        .call(
            admin,
            reqwest::Method::POST,
            "/tasks",
            json!({"name": "quick", "project_id": project_id}),
        )
        .await;
    let quick_id = quick["id"].as_str().unwrap().to_string();
    let qrun = sys
        .call(
            admin,
            reqwest::Method::POST,
            &format!("/tasks/{quick_id}/trigger"),
            json!({}),
        )
        .await;
    let qrun_id = qrun["id"].as_str().unwrap().to_string();
    go(c, base, &format!("/runs/{qrun_id}")).await;
    wait_js(
        c,
        "return document.querySelector('#run-state') && document.querySelector('#run-state').textContent === 'succeeded' \
         && document.querySelector('#log').textContent.includes('bye')",
        "the quick run to succeed with its whole log",
    )
    .await;
    wait_js(
        c,
        "return document.querySelectorAll('#timeline li').length >= 2",
        "the state timeline",
    )
    .await;
    shot(c, "10-run-succeeded").await;
    // The download link serves the whole log, gzipped (the session cookie is enough).
    c.execute(
        "window.__log = null; fetch(document.querySelector('#main a[download]').href) \
           .then(r => new Response(r.body.pipeThrough(new DecompressionStream('gzip'))).text() \
           .then(t => { window.__log = r.status + ' ' + t; }));",
        vec![],
    )
    .await
    .unwrap();
    let downloaded = wait_js(c, "return window.__log", "the downloaded log").await;
    let downloaded = downloaded.as_str().unwrap_or_default();
    assert!(
        downloaded.starts_with("200 ")
            && downloaded.contains("hello-from-ui-test")
            && downloaded.contains("bye"),
        "{downloaded}"
    );

    // Retry from the run page: a new run of the same task, which runs to the end too.
    css(c, "#retry-run").await.click().await.unwrap();
    let retried = wait_js(
        c,
        &format!(
            "const h = location.hash; \
             return h.startsWith('#/runs/') && h !== '#/runs/{qrun_id}' && h.slice('#/runs/'.length);"
        ),
        "the retried run's page",
    )
    .await;
    let retried = retried.as_str().unwrap_or_default().to_string();
    let r = sys.get(admin, &format!("/runs/{retried}")).await;
    assert_eq!(
        (r["trigger"].as_str(), r["task_id"].as_str()),
        (Some("retry"), Some(quick_id.as_str())),
        "{r}"
    );
    wait_js(
        c,
        "return document.querySelector('#run-state') && document.querySelector('#run-state').textContent === 'succeeded'",
        "the retried run to succeed",
    )
    .await;
    // Runs made within the same minute share their ids' heads (UUIDv7): the short ids the
    // list shows still tell them apart, and the run page's title names its own.
    go(c, base, "/runs").await;
    let shown = wait_js(
        c,
        &format!(
            "const text = (id) => {{ const a = document.querySelector(`#main a[href='#/runs/${{id}}']`); \
               return a && a.textContent; }}; \
             const a = text('{qrun_id}'), b = text('{retried}'); return a && b && [a, b];"
        ),
        "both runs in the list",
    )
    .await;
    let (a, b) = (shown[0].as_str().unwrap(), shown[1].as_str().unwrap());
    assert_ne!(a, b, "the list tells {qrun_id} and {retried} apart");
    assert!(
        a.ends_with(&qrun_id[qrun_id.len() - 6..]),
        "{a} for {qrun_id}"
    );
    // Ids of the same millisecond differ only in their tails (the two above may not share
    // a head: the clock may have moved on between them).
    c.execute(
        "window.__ids = null; import('/ui/js/dom.js').then(m => { window.__ids = [ \
           m.idText('01900000-0000-7000-8000-0000000000a1'), \
           m.idText('01900000-0000-7000-8000-0000000000b2')]; });",
        vec![],
    )
    .await
    .unwrap();
    let same_ms = wait_js(c, "return window.__ids", "two ids of one millisecond").await;
    assert_ne!(same_ms[0], same_ms[1], "{same_ms}");
    go(c, base, &format!("/runs/{retried}")).await;
    wait_js(
        c,
        &format!(
            "return document.title.includes('{}')",
            &retried[retried.len() - 6..]
        ),
        "the run's own id in the page title",
    )
    .await;

    // A run that failed once and succeeded on its retry: the attempt picker shows each
    // attempt's own log, and "all attempts" goes back to the live view of both.
    let flaky = sys
        .call(
            admin,
            reqwest::Method::POST,
            "/projects",
            json!({"name": "flaky", "code": "import os, sys\na = os.environ['ANTCODE_ATTEMPT']\nprint('this is attempt', a)\nsys.exit(1 if a == '1' else 0)\n", "entrypoint": "main.py"}),
        )
        .await;
    let flaky_task = sys
        .call(
            admin,
            reqwest::Method::POST,
            "/tasks",
            json!({"name": "flaky", "project_id": flaky["id"],
                   "retry": {"max_attempts": 2, "backoff_s": 0, "max_backoff_s": 0}}),
        )
        .await;
    let frun = sys
        .call(
            admin,
            reqwest::Method::POST,
            &format!("/tasks/{}/trigger", flaky_task["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let frun_id = frun["id"].as_str().unwrap().to_string();
    sys.wait_for(
        admin,
        &format!("/runs/{frun_id}"),
        "the retried success",
        |r| r["state"] == "succeeded",
    )
    .await;
    go(c, base, &format!("/runs/{frun_id}")).await;
    wait_js(
        c,
        "return document.querySelector('#run-state') && document.querySelector('#run-state').textContent === 'succeeded' \
         && document.querySelectorAll('#log-attempt option').length === 3",
        "the attempt picker with both attempts",
    )
    .await;
    css(c, "#log-attempt")
        .await
        .select_by_value("1")
        .await
        .unwrap();
    wait_js(
        c,
        "const t = document.querySelector('#log').textContent; \
         return t.includes('this is attempt 1') && !t.includes('this is attempt 2') \
           && document.querySelector('#log-status').textContent === 'attempt 1' \
           && document.querySelector('#main a[download]').href.endsWith('?format=gzip&attempt=1')",
        "attempt 1's log alone",
    )
    .await;
    css(c, "#log-attempt")
        .await
        .select_by_value("")
        .await
        .unwrap();
    wait_js(
        c,
        "const t = document.querySelector('#log').textContent; \
         return t.includes('this is attempt 1') && t.includes('this is attempt 2')",
        "every attempt's log again",
    )
    .await;
    assert_clean_console(c, "on the attempt picker").await;
}

/// A run that started another: both run pages draw the group, each box linking to its run.
pub async fn run_group(c: &Client, sys: &System, admin: &str, project_id: &str) {
    let base = sys.base.as_str();
    let task = |name: &str, extra: serde_json::Value| {
        let mut body = json!({"name": name, "project_id": project_id});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        sys.call(admin, reqwest::Method::POST, "/tasks", body)
    };
    let next = task("next-step", json!({})).await;
    let first = task("first-step", json!({"on_success": [next["id"]]})).await;
    let run = sys
        .call(
            admin,
            reqwest::Method::POST,
            &format!("/tasks/{}/trigger", first["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let run_id = run["id"].as_str().unwrap().to_string();
    go(c, base, &format!("/runs/{run_id}")).await;
    let child = wait_js(
        c,
        "const nodes = document.querySelectorAll('#run-graph svg a.graph-node'); \
         return nodes.length === 2 && document.querySelector('#run-graph figcaption').textContent.includes('2 runs') \
           && nodes[1].getAttribute('href').slice('#/runs/'.length);",
        "the run group with both runs",
    )
    .await;
    let child = child.as_str().unwrap_or_default().to_string();
    let r = sys.get(admin, &format!("/runs/{child}")).await;
    assert_eq!(
        (r["trigger"].as_str(), r["parent_id"].as_str()),
        (Some("on_success"), Some(run_id.as_str())),
        "{r}"
    );
    shot(c, "11-run-group").await;
    // The next run's page draws the same group, its own box marked.
    go(c, base, &format!("/runs/{child}")).await;
    wait_js(
        c,
        &format!(
            "return document.querySelectorAll('#run-graph svg a.graph-node').length === 2 \
               && document.querySelectorAll('#run-graph svg a.current').length === 1 \
               && document.querySelectorAll('#run-graph svg path.graph-edge').length === 1 \
               && document.querySelector('#run-parent').getAttribute('href') === '#/runs/{run_id}'"
        ),
        "the group from the next run's page",
    )
    .await;
    // The first task's page names what its runs start.
    go(
        c,
        base,
        &format!("/tasks/{}", first["id"].as_str().unwrap()),
    )
    .await;
    wait_js(
        c,
        "const a = document.querySelector('dd.task-links a'); \
         return a && a.textContent === 'next-step' && a.getAttribute('href').startsWith('#/tasks/');",
        "the task's on_success link",
    )
    .await;
    assert_clean_console(c, "on the run group").await;
}

/// A 200,000-line log (16 MB): the page opens at its tail without taking the whole, loads
/// earlier parts on demand, finds a line far above on the server and shows it, colours ANSI
/// escapes and stderr. How long the tail took is printed (tests assert no wall-clock time).
pub async fn a_long_log(c: &Client, sys: &System, admin: &str) {
    let base = sys.base.as_str();
    let code = "import sys\n\
        for i in range(200000):\n    print(f'line {i:06d} ' + 'x' * 60 + (' NEEDLE' if i == 1234 else ''))\n\
        print('\\x1b[1;32mgreen and bold\\x1b[0m plain')\n\
        print('to stderr at the end', file=sys.stderr)\n";
    let project = json!({"name": "long-log", "code": code, "entrypoint": "main.py"});
    let (_, _, run_id) = seed_run(sys, admin, project, json!({"name": "long-log"})).await;
    sys.wait_for(
        admin,
        &format!("/runs/{run_id}"),
        "the long log's end",
        |r| r["state"] == "succeeded" && r["log_key"].is_string(),
    )
    .await;
    go(c, base, "/runs").await;
    let started = std::time::Instant::now();
    go(c, base, &format!("/runs/{run_id}")).await;
    wait_js(
        c,
        "const t = document.querySelector('#log') && document.querySelector('#log').textContent; \
         return t && t.includes('plain') && document.querySelector('#log-status').textContent === 'run ended'",
        "the long log's tail",
    )
    .await;
    eprintln!(
        "[ui] a 200,000-line log showed its tail after {:?}",
        started.elapsed()
    );
    let shown = wait_js(
        c,
        "const log = document.querySelector('#log'); \
         const green = [...log.querySelectorAll('.a-fg2.a-bold')].map(e => e.textContent); \
         return {lines: log.querySelectorAll('.line').length, green, \
           earlier: !document.querySelector('#log-earlier').hidden, \
           hasFirst: log.textContent.includes('line 000000'), \
           escapes: log.textContent.includes('\\u001b')};",
        "the tail's lines",
    )
    .await;
    assert!(
        shown["lines"].as_u64().unwrap() < 10_000
            && shown["earlier"] == true
            && shown["hasFirst"] == false
            && shown["escapes"] == false
            && shown["green"] == json!(["green and bold"]),
        "{shown}"
    );
    shot(c, "13-run-long-log-tail").await;
    // Earlier lines on demand, the lines in view kept in view.
    click(c, "#log-earlier").await;
    wait_js(
        c,
        "return document.querySelectorAll('#log .line').length > 5000",
        "an earlier part loaded",
    )
    .await;
    // The search finds the line far above on the server, and the next-match button shows it.
    fill(c, "input[name=log-search]", "needle").await;
    wait_js(
        c,
        "return document.querySelector('#log-count').textContent.startsWith('1 matching lines in the log')",
        "the server's match count",
    )
    .await;
    click(c, "#log-next").await;
    wait_js(
        c,
        "const cur = document.querySelector('#log .line.current'); \
         return cur && cur.textContent.startsWith('line 001234') && cur.querySelector('mark') \
           && cur.querySelector('mark').textContent === 'NEEDLE'",
        "the matching line shown and marked",
    )
    .await;
    shot(c, "14-run-long-log-search").await;
}
