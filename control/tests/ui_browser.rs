//! The web UI in a real headless Chromium, driven through chromedriver (WebDriver) with
//! fantoccini, against the whole system in-process: control on an ephemeral port over SQLite,
//! the in-process broker and a local blob directory, plus a real runner (real Python under uv)
//! and the scheduler (whose recorder applies the runner's reports).
//!
//! Flows: log in with the keyboard; upload a project (file input set by path); edit its single
//! file into a new version; create a task with the schedule builder (next five fire times shown);
//! trigger it and see a log line appear live while it runs; cancel it and see `cancelled`; a
//! server error is shown as a readable message; phone width; a viewer sees no mutating control.
//! The browser's console must stay free of errors throughout. A screenshot of every page is
//! written to `target/ui-screenshots/`.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (Debian: `chromium chromium-driver`;
//! `ops/test.sh` installs them). Missing, the test fails and says so: it never skips.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use antcode_control::{run, ControlConfig};
use antcode_core::blob::local::LocalBlobStore;
use antcode_core::blob::BlobStore;
use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::Broker;
use antcode_core::Shutdown;

const ADMIN_PASSWORD: &str = "admin-password-1";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Upper bound for anything the test waits for (never a timing assertion).
const PATIENCE: Duration = Duration::from_secs(45);

/// The project the test uploads: a line at once, then (with `sleep`) a long nap.
const SCRIPT: &str = "import sys, time\n\
print('hello-from-ui-test', flush=True)\n\
if len(sys.argv) > 1 and sys.argv[1] == 'sleep':\n    time.sleep(60)\n\
print('bye', flush=True)\n";

/// chromedriver on an ephemeral port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_chromedriver(log: &Path) -> Driver {
    for bin in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: install Debian's `chromium` and `chromium-driver` \
             (apt-get install -y chromium chromium-driver; ops/test.sh does it)"
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_file = std::fs::File::create(log).unwrap();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}/"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{}status", driver.url)).send().await {
            if r.status().is_success() {
                return driver;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console log (errors,
/// failed loads, CSP violations), drained on each read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// The SEVERE entries of the browser console since the last call.
async fn console_errors(c: &Client) -> Vec<String> {
    let logs = c.issue_cmd(BrowserLog).await.expect("read the browser log");
    logs.as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn assert_clean_console(c: &Client, when: &str) {
    let errors = console_errors(c).await;
    assert!(
        errors.is_empty(),
        "browser console errors {when}: {errors:#?}"
    );
}

/// The whole system in-process.
struct System {
    base: String,
    api: reqwest::Client,
    shutdown: Shutdown,
    _tmp: tempfile::TempDir,
}

async fn start_system() -> System {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db.sqlite", tmp.path().display());
    let store = antcode_core::seams::open_store(&url).await.unwrap();
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let blobs: Arc<dyn BlobStore> =
        Arc::new(LocalBlobStore::new(tmp.path().join("blobs")).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let config = ControlConfig {
        listener,
        store: store.clone(),
        broker: broker.clone(),
        blobs: blobs.clone(),
        admin_password: ADMIN_PASSWORD.into(),
        dev: true,
        max_upload_bytes: 4 * 1024 * 1024,
        secrets: Some(Arc::new(antcode_core::secrets::SecretBox::from_key(
            [7; 32],
        ))),
        edge_token: None,
        cluster_ca: None,
    };
    tokio::spawn(run(config, shutdown.clone()));
    let mut runner =
        antcode_runner::RunnerConfig::new(broker.clone(), blobs, tmp.path().join("runner"));
    runner.name = "ui-test-runner".into();
    runner.labels.insert("zone".into(), "test".into());
    runner.kill_grace = Duration::from_secs(1);
    runner.heartbeat_interval = Duration::from_millis(500);
    tokio::spawn(antcode_runner::run(runner, shutdown.clone()));
    let mut sched = antcode_scheduler::SchedulerConfig::new(store, broker);
    sched.tick_interval = Duration::from_millis(250);
    tokio::spawn(antcode_scheduler::run(sched, shutdown.clone()));
    let api = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for _ in 0..200 {
        if api.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    System {
        base,
        api,
        shutdown,
        _tmp: tmp,
    }
}

impl System {
    async fn token(&self, user: &str, password: &str) -> String {
        let r: Value = self
            .api
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["token"].as_str().expect("login token").to_string()
    }

    async fn call(&self, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .api
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    // A value the page forgot to format shows up as text; no page may print one.
    let leaked = c
        .execute(
            "const t = document.getElementById('main').innerText; \
             const m = t.match(/\\b(null|undefined|NaN)\\b|\\[object Object\\]/); \
             return m ? t.slice(Math.max(0, m.index - 60), m.index + 20) : '';",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(leaked, json!(""), "{name}: the page shows a raw JS value");
    picture(c, name).await;
}

async fn picture(c: &Client, name: &str) {
    // Let the last paint settle (toasts, fonts); the picture is an artifact, not an assertion.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Polls a JS expression (a `return …` body) until it is truthy.
async fn wait_js(c: &Client, script: &str, what: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = c.execute(script, vec![]).await.expect("execute script");
        let truthy = match &v {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return v;
        }
        if Instant::now() > deadline {
            let text = c
                .execute("return document.getElementById('main').innerText", vec![])
                .await
                .unwrap_or_default();
            panic!("timed out waiting for {what}; the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn heading_is(c: &Client, text: &str) {
    let script = format!(
        "const h = document.querySelector('#main h1'); \
         return h && document.querySelector('.page[aria-busy=false]') && h.textContent === {};",
        json!(text)
    );
    wait_js(c, &script, &format!("the page heading {text:?}")).await;
}

async fn go(c: &Client, base: &str, route: &str) {
    c.goto(&format!("{base}/#{route}")).await.expect("navigate");
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
}

async fn fill(c: &Client, selector: &str, text: &str) {
    let el = css(c, selector).await;
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

async fn current_hash(c: &Client) -> String {
    c.current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap_or_default()
        .to_string()
}

const ENTER: &str = "\u{E007}";
const TAB: &str = "\u{E004}";

async fn login(c: &Client, base: &str, user: &str, password: &str) {
    go(c, base, "/login").await;
    heading_is(c, "Sign in to AntCode").await;
    // Keyboard only: type, Tab to the password, Enter submits.
    let name = css(c, "#login-form input[name=username]").await;
    name.send_keys(&format!("{user}{TAB}")).await.unwrap();
    let active = c.active_element().await.unwrap();
    assert_eq!(
        active.attr("name").await.unwrap().as_deref(),
        Some("password")
    );
    active
        .send_keys(&format!("{password}{ENTER}"))
        .await
        .unwrap();
    heading_is(c, "Dashboard").await;
}

/// Every mutating control of the UI carries `data-mutates`; a viewer must see none of them and
/// no button that reads like one.
async fn assert_read_only(c: &Client, page: &str) {
    let found = c
        .execute(
            "const bad = /^(upload|create|save|trigger|pause|resume|cancel run|retry|drain|undrain|delete|revoke|edit|new task|make v)/i; \
             const marked = [...document.querySelectorAll('#main [data-mutates]')].map(e => e.outerHTML.slice(0, 80)); \
             const named = [...document.querySelectorAll('#main button, #main a.button')].map(b => b.textContent.trim()).filter(t => bad.test(t)); \
             return marked.concat(named);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        found,
        json!([]),
        "a viewer sees mutating controls on {page}"
    );
}

async fn flows(c: &Client, sys: &System) {
    let started = Instant::now();
    let base = sys.base.as_str();
    let work = tempfile::tempdir().unwrap();

    // --- login -------------------------------------------------------------------------------
    go(c, base, "/").await;
    heading_is(c, "Sign in to AntCode").await;
    assert!(current_hash(c).await.starts_with("/login"));
    shot(c, "01-login").await;
    login(c, base, "admin", ADMIN_PASSWORD).await;
    assert_clean_console(c, "after login").await;
    // No token in script-readable storage: the session is the HttpOnly cookie.
    let storage = c
        .execute(
            "return [localStorage.length, sessionStorage.length, document.cookie.includes('antcode_session')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(storage, json!([0, 0, false]));

    // --- upload a project --------------------------------------------------------------------
    go(c, base, "/projects").await;
    heading_is(c, "Projects").await;
    let script = work.path().join("hello.py");
    std::fs::write(&script, SCRIPT).unwrap();
    fill(c, "#upload-form input[name=name]", "hello").await;
    css(c, "#upload-form input[name=file]")
        .await
        .send_keys(script.to_str().unwrap())
        .await
        .unwrap();
    shot(c, "02-projects-upload").await;
    css(c, "#upload-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    heading_is(c, "hello").await;
    let project_id = current_hash(c)
        .await
        .trim_start_matches("/projects/")
        .to_string();
    wait_js(
        c,
        "return document.querySelector('#main .files').textContent.includes('hello.py')",
        "the project's file list",
    )
    .await;
    shot(c, "03-project-detail").await;

    // A server error is shown readably (problem+json title and detail): same name again.
    go(c, base, "/projects").await;
    heading_is(c, "Projects").await;
    fill(c, "#upload-form input[name=name]", "hello").await;
    css(c, "#upload-form input[name=file]")
        .await
        .send_keys(script.to_str().unwrap())
        .await
        .unwrap();
    css(c, "#upload-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let message = wait_js(
        c,
        "const e = document.querySelector('#upload-form .error'); return e && !e.hidden && e.textContent;",
        "the conflict message",
    )
    .await;
    let message = message.as_str().unwrap_or_default();
    assert!(
        message.contains("Conflict") && message.contains("already exists"),
        "{message}"
    );
    shot(c, "04-error-message").await;
    // The only console entry allowed here is the failed request itself.
    for e in console_errors(c).await {
        assert!(e.contains("409"), "unexpected console error: {e}");
    }

    // --- edit the single file into a new version -----------------------------------------------
    go(c, base, &format!("/projects/{project_id}/edit")).await;
    heading_is(c, "Edit hello").await;
    wait_js(
        c,
        "return document.querySelector('#editor-form textarea[name=code]').value.includes('hello-from-ui-test')",
        "the code in the editor",
    )
    .await;
    c.execute(
        "const t = document.querySelector('#editor-form textarea[name=code]'); t.value += '# edited in the browser\\n';",
        vec![],
    )
    .await
    .unwrap();
    shot(c, "05-project-editor").await;
    css(c, "#editor-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    heading_is(c, "hello").await;
    wait_js(
        c,
        "return document.querySelector('#main .facts').textContent.includes('v2')",
        "version 2 current",
    )
    .await;

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
         && document.querySelectorAll('#next-fires li').length === 5",
        "five next fire times for 30 3 * * *",
    )
    .await;
    shot(c, "06-task-new-schedule").await;
    css(c, "#task-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    heading_is(c, "long nap").await;
    wait_js(
        c,
        "return document.querySelectorAll('#main .next-times li').length === 5",
        "the saved task's next fire times",
    )
    .await;
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
    c.find(Locator::XPath("//main//button[text()='Resume']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(c, &button_named("Pause"), "the Pause button").await;
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
        "return document.querySelectorAll('#next-fires li').length === 5",
        "five fire times of the interval",
    )
    .await;
    css(c, "#task-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    heading_is(c, "long nap").await;
    wait_js(
        c,
        "return document.getElementById('main').textContent.includes('every 2 h 0 min')",
        "the new schedule",
    )
    .await;

    // --- trigger, watch the log live, cancel -----------------------------------------------------
    css(c, "#trigger").await.click().await.unwrap();
    wait_js(
        c,
        "return location.hash.startsWith('#/runs/') && document.querySelector('#log')",
        "the run page",
    )
    .await;
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
    // Search filters the lines.
    fill(c, "input[name=log-search]", "nothing-matches-this").await;
    wait_js(
        c,
        "return document.querySelector('#log').textContent === ''",
        "an empty filtered log",
    )
    .await;
    fill(c, "input[name=log-search]", "hello-from").await;
    wait_js(
        c,
        "return document.querySelector('#log').textContent.trim() === 'hello-from-ui-test'",
        "the filtered line",
    )
    .await;
    shot(c, "08-run-live-log").await;
    let run_id = current_hash(c)
        .await
        .trim_start_matches("/runs/")
        .to_string();
    css(c, "#cancel-run").await.click().await.unwrap();
    css(c, "dialog.confirm button.danger")
        .await
        .click()
        .await
        .unwrap();
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
    shot(c, "09-run-cancelled").await;
    eprintln!("[ui] cancelled after {:?}", started.elapsed());
    assert_clean_console(c, "on the run page").await;

    // A quick run of the same project, through the API, so the dashboard has a success.
    let admin = sys.token("admin", ADMIN_PASSWORD).await;
    let quick = sys
        .call(
            &admin,
            reqwest::Method::POST,
            "/tasks",
            json!({"name": "quick", "project_id": project_id}),
        )
        .await;
    let quick_id = quick["id"].as_str().unwrap().to_string();
    let qrun = sys
        .call(
            &admin,
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

    // --- the other pages -------------------------------------------------------------------------
    go(c, base, "/").await;
    heading_is(c, "Dashboard").await;
    wait_js(
        c,
        "return document.querySelectorAll('#main svg.chart rect').length >= 2",
        "bars in the chart",
    )
    .await;
    shot(c, "11-dashboard").await;
    go(c, base, "/runs").await;
    heading_is(c, "Runs").await;
    shot(c, "12-runs").await;
    go(c, base, "/tasks").await;
    heading_is(c, "Tasks").await;
    shot(c, "13-tasks").await;
    go(c, base, "/workers").await;
    heading_is(c, "Workers").await;
    wait_js(
        c,
        "return document.querySelector('#main table') && document.querySelector('#main table').textContent.includes('ui-test-runner')",
        "the runner in the workers table",
    )
    .await;
    // An enrollment key, shown once with the runner command ready to copy.
    fill(c, "#key-form input[name=key-note]", "edge box").await;
    fill(c, "#key-form input[name=key-labels]", "gpu=1").await;
    css(c, "#key-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
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
    shot(c, "14-workers").await;
    go(c, base, "/users").await;
    heading_is(c, "Users").await;
    shot(c, "15-users").await;
    go(c, base, "/account").await;
    heading_is(c, "Account & tokens").await;
    fill(c, "#token-form input[name=token-name]", "ci").await;
    css(c, "#token-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_js(
        c,
        "const s = document.querySelector('#token-form .secret'); return s && !s.hidden && s.querySelector('input').value.startsWith('act_')",
        "the new token shown once",
    )
    .await;
    shot(c, "16-account").await;
    go(c, base, "/secrets").await;
    heading_is(c, "Secrets").await;
    fill(c, "#secret-form input[name=secret-name]", "API_KEY").await;
    fill(
        c,
        "#secret-form textarea[name=secret-value]",
        "s3cr3t-value-never-shown",
    )
    .await;
    css(c, "#secret-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_js(
        c,
        "const t = document.querySelector('#main table'); return t && t.textContent.includes('API_KEY')",
        "the secret's name in the list",
    )
    .await;
    let source = c.source().await.unwrap();
    assert!(!source.contains("s3cr3t-value-never-shown"));
    shot(c, "17-secrets").await;
    go(c, base, "/audit?action=run.").await;
    heading_is(c, "Audit log").await;
    wait_js(
        c,
        "const t = document.querySelector('#main table'); return t && t.textContent.includes('run.cancel') && !t.textContent.includes('task.create')",
        "the audit log filtered to run actions",
    )
    .await;
    shot(c, "18-audit").await;
    eprintln!("[ui] admin pages done after {:?}", started.elapsed());
    assert_clean_console(c, "across the admin pages").await;

    // --- phone width --------------------------------------------------------------------------------
    c.set_window_size(390, 844).await.unwrap();
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
             return [getComputedStyle(t).display !== 'none', getComputedStyle(n).display, \
                     document.documentElement.scrollWidth <= window.innerWidth + 1];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(layout, json!([true, "none", true]), "phone layout");
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

    // --- a viewer -------------------------------------------------------------------------------------
    sys.call(
        &admin,
        reqwest::Method::POST,
        "/users",
        json!({"username": "vera", "password": "viewer-pass-1", "role": "viewer"}),
    )
    .await;
    css(c, "#logout").await.click().await.unwrap();
    heading_is(c, "Sign in to AntCode").await;
    login(c, base, "vera", "viewer-pass-1").await;
    let nav = c
        .execute("return document.getElementById('nav').textContent", vec![])
        .await
        .unwrap();
    let nav = nav.as_str().unwrap_or_default();
    assert!(
        !nav.contains("Users") && !nav.contains("Audit"),
        "viewer nav: {nav}"
    );
    let task_id = sys
        .call(&admin, reqwest::Method::GET, "/tasks", json!(null))
        .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "long nap")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .unwrap();
    let pages = [
        ("/", "Dashboard"),
        ("/projects", "Projects"),
        (&format!("/projects/{project_id}") as &str, "hello"),
        ("/tasks", "Tasks"),
        (&format!("/tasks/{task_id}"), "long nap"),
        ("/runs", "Runs"),
        (&format!("/runs/{run_id}"), ""),
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
    shot(c, "21-viewer-task").await;
    go(c, base, &format!("/tasks/{task_id}")).await;
    heading_is(c, "long nap").await;
    assert_read_only(c, "the task page").await;
    shot(c, "22-viewer-task-detail").await;
    // A page above the viewer's role says so instead of failing.
    go(c, base, "/users").await;
    heading_is(c, "Not allowed").await;
    assert_clean_console(c, "as a viewer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_ui_in_a_real_browser() {
    let sys = start_system().await;
    let log = screenshot_dir().join("chromedriver.log");
    let driver = start_chromedriver(&log).await;
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "could not start headless Chromium through chromedriver: {e} (see {})",
                log.display()
            )
        });
    // Run the flows, then always close the browser before reporting the outcome.
    let outcome = std::panic::AssertUnwindSafe(with_deadline(flows(&client, &sys)))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        picture(&client, "zz-failure").await;
    }
    let _ = client.close().await;
    drop(driver);
    sys.shutdown.cancel();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The flows must end within a bound, so a broken page fails the test instead of hanging it.
async fn with_deadline(f: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(240), f)
        .await
        .expect("the browser flows took longer than 240 s");
}
