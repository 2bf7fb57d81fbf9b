//! Tasks: create one with the schedule builder (the next fire times shown are the scheduler's),
//! pause and resume, edit its schedule into a bounded interval.

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::harness::*;

/// Creates task `long nap` of `project_id` and edits it, ending on its page: the task's id.
pub async fn create_pause_and_edit(
    c: &Client,
    sys: &System,
    admin: &str,
    project_id: &str,
) -> String {
    let base = sys.base.as_str();
    // --- create a task with the schedule builder ------------------------------------------------
    go(c, base, &format!("/tasks/new?project={project_id}")).await;
    heading_is(c, "New task").await;
    fill(c, "#task-form input[name=name]", "long nap").await;
    fill(c, "#task-form textarea[name=args]", "sleep").await;
    css(c, "#task-form select[name=schedule-kind]")
        .await
        .select_by_value("cron")
        .await
        .unwrap();
    css(c, "#task-form select[name=cron-preset]")
        .await
        .select_by_value("daily")
        .await
        .unwrap();
    fill(c, "#task-form input[name=cron-hour]", "3").await;
    fill(c, "#task-form input[name=cron-minute]", "30").await;
    fill(c, "#task-form input[name=timezone]", "Europe/Paris").await;
    wait_js(
        c,
        "return document.querySelector('#task-form input[name=cron]').value === '30 3 * * *' \
         && document.querySelectorAll('#next-fires li').length === 5 \
         && !document.querySelector('#next-fires').hasAttribute('aria-busy')",
        "five next fire times for 30 3 * * *",
    )
    .await;
    // The five times shown are the scheduler's own answer for this schedule.
    let shown = c
        .execute(
            "return [...document.querySelectorAll('#next-fires time')].map(t => t.getAttribute('datetime'))",
            vec![],
        )
        .await
        .unwrap();
    let schedule = json!({"kind": "cron", "cron": "30 3 * * *", "timezone": "Europe/Paris"});
    let expected = sys
        .call(
            admin,
            reqwest::Method::POST,
            "/schedules/validate",
            schedule.clone(),
        )
        .await;
    assert_eq!(shown, expected["next"], "the builder's next fire times");
    // Next to them, the schedule in words.
    let described = c
        .execute(
            "return document.querySelector('#schedule-description').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(described, json!("At 03:30, Europe/Paris"));
    assert_eq!(described, expected["description"]);
    // Each reads as 03:30 somewhere on its line: in the reader's zone if that is Paris, else in
    // the schedule's zone next to it.
    let local_too = c
        .execute(
            "return [...document.querySelectorAll('#next-fires li')].every(li => li.textContent.includes('03:30'))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        local_too,
        json!(true),
        "fire times without the schedule's wall time"
    );
    shot(c, "06-task-new-schedule").await;
    click(c, "#task-form button[type=submit]").await;
    heading_is(c, "long nap").await;
    wait_js(
        c,
        "return document.querySelectorAll('#main .next-times li').length === 5",
        "the saved task's next fire times",
    )
    .await;
    let task_id = current_hash(c)
        .await
        .trim_start_matches("/tasks/")
        .to_string();
    let task = sys.get(admin, &format!("/tasks/{task_id}")).await;
    assert_eq!(task["schedule"], schedule);
    assert_eq!(task["args"], json!(["sleep"]));
    shot(c, "07-task-detail").await;

    // Pause and resume; edit the schedule (the form comes back filled in).
    let button_named = |name: &str| {
        format!(
            "return [...document.querySelectorAll('#main .actions button')].some(b => b.textContent === {})",
            json!(name)
        )
    };
    c.find(Locator::XPath("//main//button[text()='Pause']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(c, &button_named("Resume"), "the Resume button").await;
    assert_eq!(
        sys.get(admin, &format!("/tasks/{task_id}")).await["paused"],
        true
    );
    c.find(Locator::XPath("//main//button[text()='Resume']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(c, &button_named("Pause"), "the Pause button").await;
    assert_eq!(
        sys.get(admin, &format!("/tasks/{task_id}")).await["paused"],
        false
    );
    let task_hash = current_hash(c).await;
    go(c, base, &format!("{task_hash}/edit")).await;
    heading_is(c, "Edit long nap").await;
    let filled = c
        .execute(
            "const f = document.getElementById('task-form'); \
             return [f.querySelector('[name=cron-preset]').value, f.querySelector('[name=cron]').value, \
                     f.querySelector('[name=timezone]').value, f.querySelector('[name=args]').value];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        filled,
        json!(["daily", "30 3 * * *", "Europe/Paris", "sleep"])
    );
    css(c, "#task-form select[name=schedule-kind]")
        .await
        .select_by_value("interval")
        .await
        .unwrap();
    fill(c, "#task-form input[name=every]", "2").await;
    css(c, "#task-form select[name=every-unit]")
        .await
        .select_by_value("3600")
        .await
        .unwrap();
    wait_js(
        c,
        "return document.querySelectorAll('#next-fires li').length === 5 \
         && !document.querySelector('#next-fires').hasAttribute('aria-busy')",
        "five fire times of the interval",
    )
    .await;
    // Bound it: from 05:00 tomorrow to 11:00 the same day (the browser's local time), which
    // leaves exactly four fires. The values are set as a date picker sets them (typing into a
    // datetime-local field depends on the browser's locale); the expected RFC 3339 instants
    // are the browser's own reading of those local times.
    let bounds = c
        .execute(
            "const f = document.getElementById('task-form'); \
             const day = new Date(); day.setDate(day.getDate() + 1); \
             const pad = (n) => String(n).padStart(2, '0'); \
             const date = `${day.getFullYear()}-${pad(day.getMonth() + 1)}-${pad(day.getDate())}`; \
             const out = []; \
             for (const [name, hour] of [['interval-start', '05'], ['interval-end', '11']]) { \
               const input = f.querySelector(`input[name=${name}]`); \
               input.value = `${date}T${hour}:00`; \
               input.dispatchEvent(new Event('input', { bubbles: true })); \
               input.dispatchEvent(new Event('change', { bubbles: true })); \
               out.push(new Date(input.value).toISOString().replace(/\\.\\d{3}Z$/, 'Z')); \
             } \
             return out;",
            vec![],
        )
        .await
        .unwrap();
    let (start, end) = (bounds[0].clone(), bounds[1].clone());
    // The preview is the server's answer for the bounded interval: it begins at the start and
    // stops at the end.
    wait_js(
        c,
        &format!(
            "const t = [...document.querySelectorAll('#next-fires time')].map(t => t.getAttribute('datetime')); \
             return t.length === 4 && new Date(t[0]).getTime() === new Date({start}).getTime() \
               && new Date(t[3]).getTime() === new Date({end}).getTime();"
        ),
        "four fire times from the interval's start to its end",
    )
    .await;
    click(c, "#task-form button[type=submit]").await;
    heading_is(c, "long nap").await;
    wait_js(
        c,
        "return document.getElementById('main').textContent.includes('every 2 h 0 min')",
        "the new schedule",
    )
    .await;
    assert_eq!(
        sys.get(admin, &format!("/tasks/{task_id}")).await["schedule"],
        json!({"kind": "interval", "every_s": 7200, "start": start, "end": end})
    );
    // The edit form comes back with the bounds as saved.
    go(c, base, &format!("{task_hash}/edit")).await;
    heading_is(c, "Edit long nap").await;
    let shown = c
        .execute(
            "const f = document.getElementById('task-form'); \
             return [f.querySelector('[name=interval-start]').value, f.querySelector('[name=interval-end]').value] \
               .map(v => new Date(v).toISOString().replace(/\\.\\d{3}Z$/, 'Z'));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!([start, end]));
    go(c, base, &task_hash).await;
    heading_is(c, "long nap").await;
    task_id
}
