//! The alerts area: a webhook channel made through its form (the form follows the kind), a test
//! alert followed to its outcome, a rule for the channel (created, then edited), the delivery
//! history and its filters; the retention policy and its preview; a run kept from pruning.

use fantoccini::Client;
use serde_json::{json, Value};

use crate::harness::*;

/// The webhook's secret: typed into the form, never on the page again.
const HOOK_SECRET: &str = "hook-secret-0123456789";

/// Channels, rules and deliveries through their pages, each change checked through the API.
pub async fn alerts_pages(c: &Client, sys: &System, admin: &str) {
    // `#/alerts` opens the first tab an admin may see.
    click_xpath(c, "//nav[@id='nav']//a[text()='Alerts']").await;
    heading_is(c, "Alert channels").await;
    assert_eq!(current_hash(c).await, "/alerts/channels");

    // --- a channel: the form's fields follow the kind --------------------------------------------
    fill(c, "#channel-form input[name=channel-name]", "ops-hook").await;
    let kind = css(c, "#channel-form select[name=channel-kind]").await;
    kind.select_by_value("smtp").await.unwrap();
    css(c, "#channel-form input[name=smtp-host]").await;
    css(c, "#channel-form select[name=channel-kind]")
        .await
        .select_by_value("webhook")
        .await
        .unwrap();
    fill(
        c,
        "#channel-form input[name=channel-url]",
        "http://127.0.0.1:9/hook",
    )
    .await;
    fill(c, "#channel-form input[name=channel-secret]", HOOK_SECRET).await;
    click(c, "#channel-form button[type=submit]").await;
    wait_js(
        c,
        "const t = document.querySelector('#main table'); \
         return t && t.textContent.includes('ops-hook') && t.textContent.includes('http://127.0.0.1:9/');",
        "the new channel in the list",
    )
    .await;
    let channels = sys.get(admin, "/notifications/channels").await;
    let channel = channels["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ch| ch["name"] == "ops-hook")
        .unwrap_or_else(|| panic!("no channel ops-hook: {channels}"))
        .clone();
    assert_eq!(
        (
            &channel["kind"],
            &channel["enabled"],
            &channel["summary"]["secret_set"]
        ),
        (&json!("webhook"), &json!(true), &json!(true)),
        "{channel}"
    );
    let channel_id = channel["id"].as_str().unwrap().to_string();
    let source = c.source().await.unwrap();
    assert!(!source.contains(HOOK_SECRET), "the secret is on the page");

    // A test alert: queued (202), then followed on the page until the scheduler settles it. This
    // scheduler has no secret key to open the channel with, so it fails at once and says why.
    click_xpath(
        c,
        "//main//tr[contains(., 'ops-hook')]//button[text()='Send test']",
    )
    .await;
    wait_js(
        c,
        "const r = document.getElementById('test-result'); \
         return r && !r.hidden && r.textContent.includes('Test of ops-hook') \
           && r.querySelector('.badge').textContent === 'failed' && r.textContent.includes('no secret key');",
        "the test alert's outcome",
    )
    .await;
    let path = format!("/notifications/deliveries?channel_id={channel_id}");
    let tests = sys.get(admin, &path).await;
    assert_eq!(
        tests["items"][0]["event"]["kind"], "test",
        "the test delivery: {tests}"
    );
    shot(c, "23-alert-channels").await;

    // --- a rule for the channel, created then edited -----------------------------------------------
    click_xpath(c, "//nav[@aria-label='Alerts']//a[text()='Rules']").await;
    heading_is(c, "Alert rules").await;
    fill(c, "#rule-form input[name=rule-name]", "ops failures").await;
    click_xpath(
        c,
        "//fieldset[@id='rule-channels']//label[contains(., 'ops-hook')]/input",
    )
    .await;
    click(c, "#rule-on input[value=failed]").await;
    click(c, "#rule-on input[value=timed_out]").await;
    click(c, "#rule-form button[type=submit]").await;
    wait_js(
        c,
        "const t = document.querySelector('#main table'); return t && t.textContent.includes('ops failures')",
        "the new rule in the list",
    )
    .await;
    let rules = sys.get(admin, "/notifications/rules").await;
    let rule = rules["items"][0].clone();
    assert_eq!(
        (
            &rule["name"],
            &rule["task_id"],
            &rule["channels"],
            &rule["on"],
            &rule["consecutive"],
            &rule["throttle_s"],
            &rule["enabled"],
        ),
        (
            &json!("ops failures"),
            &Value::Null,
            &json!([channel_id]),
            &json!(["failed", "timed_out"]),
            &json!(3),
            &json!(300),
            &json!(true),
        ),
        "{rule}"
    );
    let rule_id = rule["id"].as_str().unwrap().to_string();
    click_xpath(
        c,
        "//main//tr[contains(., 'ops failures')]//button[text()='Edit']",
    )
    .await;
    wait_js(
        c,
        "return document.querySelector('#rule-form input[name=rule-name]').value === 'ops failures'",
        "the rule in the form",
    )
    .await;
    fill(c, "#rule-form input[name=rule-throttle]", "60").await;
    click(c, "#rule-form button[type=submit]").await;
    let path = format!("/notifications/rules/{rule_id}");
    sys.wait_for(admin, &path, "the edited throttle", |r| {
        r["throttle_s"] == 60 && r["on"] == json!(["failed", "timed_out"])
    })
    .await;
    shot(c, "24-alert-rules").await;
    assert_clean_console(c, "making a channel and a rule").await;
    // A channel a rule uses cannot be deleted: the page says why.
    click_xpath(c, "//nav[@aria-label='Alerts']//a[text()='Channels']").await;
    heading_is(c, "Alert channels").await;
    click_xpath(
        c,
        "//main//tr[contains(., 'ops-hook')]//button[text()='Delete']",
    )
    .await;
    click(c, "dialog.confirm button.danger").await;
    wait_js(
        c,
        "const e = document.querySelector('#main .error'); return e && !e.hidden && e.textContent.includes('ops failures')",
        "the refusal to delete a channel in use",
    )
    .await;
    // The only console entry allowed here is the refused request itself.
    for e in console_errors(c).await {
        assert!(e.contains("409"), "unexpected console error: {e}");
    }
    assert_eq!(
        sys.get(admin, "/notifications/channels").await["items"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "the channel in use is still there"
    );

    // --- the delivery history ----------------------------------------------------------------------
    click_xpath(c, "//nav[@aria-label='Alerts']//a[text()='Deliveries']").await;
    heading_is(c, "Alert deliveries").await;
    wait_js(
        c,
        "return [...document.querySelectorAll('#deliveries tbody tr')].some(r => \
           r.cells[1].textContent === 'ops-hook' && r.cells[3].textContent === 'test' \
           && r.cells[4].textContent.includes('test alert to channel ops-hook'))",
        "the test delivery in the history",
    )
    .await;
    shot(c, "25-alert-deliveries").await;
    // Filtered to the rule: only its deliveries (if a run failed just before it was made).
    css(c, "select[name=rule]")
        .await
        .select_by_value(&rule_id)
        .await
        .unwrap();
    click(c, "form[role=search] button[type=submit]").await;
    wait_js(
        c,
        &format!(
            "if (location.hash !== {} || !document.querySelector('.page[aria-busy=false] #deliveries')) return false; \
             const rows = [...document.querySelectorAll('#deliveries tbody tr')]; \
             return document.querySelector('#deliveries .empty') \
               || (rows.length && rows.every(r => r.cells[2].textContent === 'ops failures'));",
            json!(format!("#/alerts/deliveries?rule={rule_id}"))
        ),
        "the history filtered to the rule",
    )
    .await;
    assert_clean_console(c, "on the alerts pages").await;
}

/// The retention policy saved and previewed, and a run kept from pruning.
pub async fn retention_and_keep(c: &Client, sys: &System, admin: &str, run_id: &str) {
    go(c, &sys.base, "/retention").await;
    heading_is(c, "Retention").await;
    fill(c, "#retention-form input[name=runs_days]", "90").await;
    fill(c, "#retention-form input[name=runs_keep_last]", "").await;
    fill(c, "#retention-form input[name=audit_days]", "365").await;
    click(c, "#retention-form button[type=submit]").await;
    sys.wait_for(admin, "/retention", "the saved policy", |p| {
        *p == json!({"runs_days": 90, "runs_keep_last": null, "audit_days": 365})
    })
    .await;
    click(c, "#retention-preview-button").await;
    wait_js(
        c,
        "const p = document.getElementById('retention-preview'); \
         return p && !p.hidden && p.textContent.includes('The pruner would delete')",
        "the retention preview",
    )
    .await;
    shot(c, "26-retention").await;

    go(c, &sys.base, &format!("/runs/{run_id}")).await;
    wait_js(
        c,
        "return document.querySelector('.page[aria-busy=false] #run-keep')",
        "the keep toggle",
    )
    .await;
    click(c, "#run-keep").await;
    let path = format!("/runs/{run_id}");
    sys.wait_for(admin, &path, "the run kept", |r| r["keep"] == true)
        .await;
    wait_js(
        c,
        "return document.getElementById('run-kept').textContent === 'yes, never pruned' \
           && document.getElementById('run-keep').checked",
        "the run shown as kept",
    )
    .await;
    assert_clean_console(c, "on the retention and run pages").await;
}
