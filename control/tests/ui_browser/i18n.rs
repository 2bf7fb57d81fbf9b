//! The UI in Simplified Chinese, in its own browser whose language is zh-CN: with nothing
//! chosen the UI follows `navigator.languages`; every page (and the sign-in page) shows no
//! English word outside data (names the test made, ids, code), product names and units; the
//! header's switch goes to English and back without a reload, the choice survives one and is
//! kept in localStorage as a preference only. Screenshots of the pages in zh-CN, the dashboard
//! and a run page in light and dark.

use std::time::Duration;

use fantoccini::Client;
use futures::FutureExt;
use serde_json::{json, Value};

use crate::harness::*;

/// Words that may stay in Latin letters in the Chinese UI: product and protocol names,
/// acronyms, units, file names and formats of the examples in hints, and the language switch's
/// "English" (a language is named in its own language). Matched case-sensitively, whole words.
const ALLOWED: &[&str] = &[
    "AntCode",
    "Git",
    "Python",
    "cron",
    "Cron",
    "SMTP",
    "STARTTLS",
    "TLS",
    "URL",
    "API",
    "JSON",
    "CPU",
    "SSE",
    "UTC",
    "IANA",
    "HTTP",
    "HTTPS",
    "https",
    "ssh",
    "SCP",
    "HMAC",
    "POST",
    "ID",
    "Webhook",
    "Slack",
    "CA",
    "KEY",
    "VALUE",
    "ms",
    "KiB",
    "MiB",
    "GiB",
    "KB",
    "English",
    // File names and formats in the upload hints: main.py, requirements.txt, pyproject.toml,
    // uv.lock, .zip, .tar.gz, ca.pem; a version's bundle format (`py`); sha256.
    "main",
    "py",
    "requirements",
    "txt",
    "pyproject",
    "toml",
    "uv",
    "lock",
    "zip",
    "tar",
    "gz",
    "ca",
    "pem",
    "sha",
    "application",
    "json",
    "Asia",
    "Shanghai",
    // The audit filter's example prefixes are the API's action names (`task.`, `run.cancel`).
    "task",
    "run",
    "cancel",
    // Key names in the code editor's hint.
    "Tab",
    "Esc",
];

/// Every English word on the page outside data: visible text (SVG included), the options of
/// visible selects, placeholder / aria-label / title attributes, and the document's title.
/// `data` (arguments[0]) are strings the test made or the system names (removed first);
/// `code`, `pre` and `[translate=no]` hold data and are skipped.
const ENGLISH_WORDS: &str = "
  const [data, allowed] = arguments;
  const skip = (el) => !el || el.closest('code, pre, [translate=no], script, style, noscript');
  const found = [];
  const check = (text, where) => {
    let t = text;
    for (const d of data) t = t.split(d).join(' ');
    for (const m of t.matchAll(/[A-Za-z]{2,}/g)) {
      if (!allowed.includes(m[0])) found.push(`${m[0]} in ${where}: ${text.trim().slice(0, 80)}`);
    }
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || skip(el) || el.closest('option')) continue;
    if (!el.getClientRects().length && !(el instanceof SVGElement)) continue;
    if (el.closest('[hidden]')) continue;
    check(n.textContent, `<${el.tagName.toLowerCase()}>`);
  }
  for (const s of document.querySelectorAll('select')) {
    if (!s.getClientRects().length || skip(s)) continue;
    for (const o of s.options) if (!skip(o)) check(o.textContent, `option of ${s.name || s.id}`);
  }
  for (const el of document.body.querySelectorAll('[placeholder], [aria-label], [title]')) {
    if (skip(el)) continue;
    for (const a of ['placeholder', 'aria-label', 'title']) {
      const v = el.getAttribute(a);
      if (v) check(v, `${a} of <${el.tagName.toLowerCase()}>`);
    }
  }
  check(document.title, 'the title');
  return found;";

async fn assert_no_english(c: &Client, route: &str, data: &[&str]) {
    let found = c
        .execute(ENGLISH_WORDS, vec![json!(data), json!(ALLOWED)])
        .await
        .unwrap();
    assert_eq!(found, json!([]), "{route}: English left in the zh-CN UI");
}

async fn lang_state(c: &Client) -> Value {
    c.execute(
        "return [document.documentElement.lang, localStorage.getItem('antcode.lang')]",
        vec![],
    )
    .await
    .unwrap()
}

async fn choose_language(c: &Client, lang: &str, heading: &str) {
    css(c, "#lang").await.select_by_value(lang).await.unwrap();
    heading_is(c, heading).await;
}

async fn flow(c: &Client, sys: &System) {
    let base = sys.base.as_str();
    let admin = sys.token("admin", ADMIN_PASSWORD).await;
    // Something on every list, named in Chinese as a Chinese team would (the names are data
    // either way): a project, a task no runner serves (its run stays queued), that run, a
    // secret, an alert channel and a rule.
    let project = json!({"name": "示例项目", "description": "每日报表", "code": "print('hi')\n"});
    let (project, task_id, run_id) = seed_run(sys, &admin, project, unserved("夜间任务")).await;
    second_version(sys, &admin, &project).await;
    sys.call(
        &admin,
        reqwest::Method::PUT,
        "/secrets/DB_PASSWORD",
        json!({"value": "s3cret"}),
    )
    .await;
    let channel = sys
        .call(
            &admin,
            reqwest::Method::POST,
            "/notifications/channels",
            json!({"name": "运维群", "enabled": true, "config": {
                "kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}}),
        )
        .await;
    sys.call(
        &admin,
        reqwest::Method::POST,
        "/notifications/rules",
        json!({"name": "失败告警", "task_id": null, "channels": [channel["id"]],
               "on": ["failed", "consecutive_failures"], "throttle_s": 300, "enabled": true}),
    )
    .await;
    // Data the pages show: the run's id (its heading names it, shortened), the seeded admin's
    // name, the runner's name and labels, the queue.
    let short_run = format!("{}…{}", &run_id[..8], &run_id[run_id.len() - 6..]);
    let data = [
        short_run.as_str(),
        "ui-test-runner",
        "zone=test",
        "zone=mars",
        "admin",
        "default",
        "127.0.0.1",
    ];

    // Nothing chosen: the browser's zh-CN, on the sign-in page too.
    emulate_color_scheme(c, "light").await;
    go(c, base, "/login").await;
    heading_is(c, "登录 AntCode").await;
    assert_eq!(lang_state(c).await, json!(["zh-CN", null]));
    assert_no_english(c, "/login", &data).await;
    shot(c, "zh-00-login").await;
    let name = css(c, "#login-form input[name=username]").await;
    name.send_keys("admin").await.unwrap();
    css(c, "#login-form input[name=password]")
        .await
        .send_keys(&format!("{ADMIN_PASSWORD}{ENTER}"))
        .await
        .unwrap();
    heading_is(c, "仪表盘").await;

    let run_page = format!("/runs/{run_id}");
    for (i, (route, name)) in every_page(&project, &task_id, &run_id)
        .into_iter()
        .enumerate()
    {
        let route = route.as_str();
        go(c, base, route).await;
        page_ready(c, route).await;
        match name {
            "dashboard" => {
                css(c, "#queues").await;
            }
            "task" => {
                css(c, "#analysis svg.chart").await;
                c.execute(
                    "document.querySelector('#analysis').scrollIntoView()",
                    vec![],
                )
                .await
                .unwrap();
            }
            "workers" => {
                wait_js(
                    c,
                    "const t = document.querySelector('#main table'); return t && t.textContent.includes('ui-test-runner')",
                    "the runner on the workers page",
                )
                .await;
            }
            "project" => {
                css(c, "#file-view pre.code-view").await;
            }
            "project-compare" => {
                css(c, "#diff .line.add").await;
            }
            "run" => {
                wait_js(
                    c,
                    "return document.querySelector('#log-status').textContent === '实时'",
                    "the live log",
                )
                .await;
            }
            "new-task" => {
                wait_js(
                    c,
                    "return document.querySelector('#next-msg').textContent.startsWith('未设置调度')",
                    "the schedule preview",
                )
                .await;
            }
            _ => {}
        }
        // The retention preview and the task form's interval fields are in the walk too.
        if name == "retention" {
            click(c, "#retention-preview-button").await;
            css(c, "#retention-preview:not([hidden])").await;
        }
        assert_no_english(c, route, &data).await;
        shot(c, &format!("zh-{:02}-{name}", i + 1)).await;
    }

    // The schedule builder's other kinds and presets (a valid one each: the server's reasons
    // for an invalid schedule are English for now). The reading in words is the page's own.
    go(c, base, "/tasks/new").await;
    page_ready(c, "/tasks/new").await;
    for (kind, preset) in [("cron", "weekly"), ("interval", "")] {
        css(c, "select[name=schedule-kind]")
            .await
            .select_by_value(kind)
            .await
            .unwrap();
        if !preset.is_empty() {
            css(c, "select[name=cron-preset]")
                .await
                .select_by_value(preset)
                .await
                .unwrap();
        }
        wait_js(
            c,
            "return document.querySelector('#next-fires li') && !document.querySelector('#next-fires[aria-busy]')",
            "the next fire times",
        )
        .await;
        let reading = wait_js(
            c,
            "const d = document.getElementById('schedule-description'); return !d.lang && d.textContent;",
            "the schedule read in Chinese",
        )
        .await;
        assert!(
            reading.as_str().is_some_and(|r| r.starts_with('每')),
            "{kind}: {reading}"
        );
        assert_no_english(c, &format!("/tasks/new ({kind})"), &data).await;
    }

    // Light and dark pictures of the dashboard and the run page.
    for (route, name) in [("/", "dashboard"), (run_page.as_str(), "run")] {
        go(c, base, route).await;
        page_ready(c, route).await;
        for theme in ["light", "dark"] {
            css(c, "#theme").await.select_by_value(theme).await.unwrap();
            picture(c, &format!("zh-{theme}-{name}")).await;
        }
        css(c, "#theme")
            .await
            .select_by_value("system")
            .await
            .unwrap();
    }

    // The switch: English at once (no reload: the page keeps its state), kept over a reload.
    go(c, base, "/").await;
    heading_is(c, "仪表盘").await;
    c.execute("window.__same_page = true", vec![])
        .await
        .unwrap();
    choose_language(c, "en", "Dashboard").await;
    assert_eq!(lang_state(c).await, json!(["en", "en"]));
    assert_eq!(
        c.execute(
            "return [window.__same_page === true, document.getElementById('nav').textContent.includes('Projects'), \
                     document.querySelector('#theme-switch span').textContent, document.title]",
            vec![]
        )
        .await
        .unwrap(),
        json!([true, true, "Theme", "Dashboard · AntCode"])
    );
    c.refresh().await.unwrap();
    heading_is(c, "Dashboard").await;
    // Only the preference is stored: never a token.
    let stored = local_storage(c).await;
    assert_eq!(stored, json!([["antcode.lang", "en"]]));
    choose_language(c, "zh-CN", "仪表盘").await;
    assert_eq!(lang_state(c).await, json!(["zh-CN", "zh-CN"]));
    assert_eq!(
        c.execute("return document.title", vec![]).await.unwrap(),
        json!("仪表盘 · AntCode")
    );

    // Signed out, the sign-in page has the switch too and says why in Chinese.
    css(c, "#logout").await.click().await.unwrap();
    heading_is(c, "登录 AntCode").await;
    css(c, "#login-lang")
        .await
        .select_by_value("en")
        .await
        .unwrap();
    heading_is(c, "Sign in to AntCode").await;
    css(c, "#login-lang")
        .await
        .select_by_value("zh-CN")
        .await
        .unwrap();
    heading_is(c, "登录 AntCode").await;
    assert_no_english(c, "/login again", &data).await;
    assert_clean_console(c, "across the zh-CN pages").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_simplified_chinese() {
    in_own_browser("i18n", Some("zh-CN"), Duration::from_secs(240), |c, sys| {
        flow(c, sys).boxed()
    })
    .await;
}
