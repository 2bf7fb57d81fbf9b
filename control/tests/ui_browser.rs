//! The web UI in a real headless Chromium, driven through chromedriver (WebDriver) with
//! fantoccini, against the whole system in-process: control on an ephemeral port over SQLite,
//! the in-process broker and a local blob directory, plus a real runner (real Python under uv)
//! and the scheduler (whose recorder applies the runner's reports).
//!
//! Flows: log in with the keyboard; upload a project (file input set by path); edit its single
//! file into a new version; create a task with the schedule builder (the next five fire times
//! shown are the scheduler's); pause and resume; trigger it and see a log line appear live while
//! it runs; cancel it from the keyboard and see `cancelled`; retry a run; the dashboard's chart and
//! queue depth; drain and undrain a worker; create an enrollment key, enroll with the key from the
//! runner command and revoke that worker; create a user and change their role; create, use and
//! revoke an API token; set and replace a secret (a run receives the new value); filter the audit
//! log from its form; a server error shown as a readable message; every page at phone width
//! without sideways scrolling; a viewer sees no mutating control; an operator may drain but sees
//! no admin control. Keyboard: login, the skip link, trigger with Enter, the confirm dialog
//! (Escape changes nothing, Shift+Tab then Enter confirms), the audit filter submitted with Enter.
//!
//! Each click is checked by its effect through the API (or the edge's internal API), not only by
//! what the page shows. On every page the console stays free of errors, no raw JS value
//! (`undefined`, `[object Object]`) is printed and every control has a label. A screenshot of
//! every page is written to `target/ui-screenshots/`.
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
/// What the (simulated) edge presents on `/internal/v1/*`.
const EDGE_TOKEN: &str = "edge-token-for-the-ui-test";
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
    broker: Arc<dyn Broker>,
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
        edge_token: Some(EDGE_TOKEN.into()),
        cluster_ca: None,
        trusted_proxies: vec![],
    };
    tokio::spawn(run(config, shutdown.clone()));
    let mut runner =
        antcode_runner::RunnerConfig::new(broker.clone(), blobs, tmp.path().join("runner"));
    runner.name = "ui-test-runner".into();
    runner.labels.insert("zone".into(), "test".into());
    runner.kill_grace = Duration::from_secs(1);
    runner.grace = Duration::from_secs(1);
    runner.heartbeat_interval = Duration::from_millis(500);
    tokio::spawn(antcode_runner::run(runner, shutdown.clone()));
    let mut sched = antcode_scheduler::SchedulerConfig::new(store, broker.clone());
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
        broker,
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

    /// `(status, JSON body or Null)` of an API call (`path` under `/api/v1`, or `/internal/…`
    /// with the edge token when `token` is empty).
    async fn request(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let (url, bearer) = if path.starts_with("/internal/") {
            (format!("{}{path}", self.base), EDGE_TOKEN)
        } else {
            (format!("{}/api/v1{path}", self.base), token)
        };
        let mut req = self.api.request(method, url).bearer_auth(bearer);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn call(&self, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
        let (status, body) = self.request(token, method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {body}");
        body
    }

    async fn get(&self, token: &str, path: &str) -> Value {
        self.call(token, reqwest::Method::GET, path, Value::Null)
            .await
    }

    /// Polls `GET path` until `check` holds for its body (the UI's change has reached the API).
    async fn wait_for(&self, token: &str, path: &str, what: &str, check: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (_, body) = self
                .request(token, reqwest::Method::GET, path, Value::Null)
                .await;
            if check(&body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The status of `GET /auth/me` with `token`: 200 while it works, 401 once revoked.
    async fn me_status(&self, token: &str) -> u16 {
        self.request(token, reqwest::Method::GET, "/auth/me", Value::Null)
            .await
            .0
    }

    /// The run's log as text once it has ended.
    async fn finished_log(&self, token: &str, run_id: &str) -> String {
        let path = format!("/runs/{run_id}");
        self.wait_for(token, &path, "the run to end", |r| {
            !matches!(r["state"].as_str(), Some("queued" | "running") | None)
        })
        .await;
        self.api
            .get(format!("{}/api/v1/runs/{run_id}/logs", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
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
    // Every visible control has an accessible name (a label, aria-label or its own text).
    let unnamed = c
        .execute(
            "return [...document.querySelectorAll('#main input, #main select, #main textarea, #main button')] \
               .filter(e => e.type !== 'hidden' && e.getClientRects().length) \
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') \
                 && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim())) \
               .map(e => e.outerHTML.slice(0, 100));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unnamed, json!([]), "{name}: controls without a label");
    picture(c, name).await;
}

async fn picture(c: &Client, name: &str) {
    // Let the last paint settle (toasts, fonts); the picture is an artifact, not an assertion.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Polls a JS expression (a `return …` body) until it is truthy.
/// A script that throws (an element not drawn yet while the page re-renders) counts as false; its
/// last error is reported if the wait times out.
async fn wait_js(c: &Client, script: &str, what: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    let guarded = format!("try {{ {script} }} catch (e) {{ return {{ thrown: String(e) }}; }}");
    let mut thrown = Value::Null;
    loop {
        let mut v = c.execute(&guarded, vec![]).await.expect("execute script");
        if let Some(e) = v.get("thrown") {
            thrown = e.clone();
            v = Value::Null;
        }
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
            panic!(
                "timed out waiting for {what} (last script error: {thrown}); the page says:\n{text}"
            );
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

async fn click(c: &Client, selector: &str) {
    css(c, selector).await.click().await.unwrap();
}

async fn fill(c: &Client, selector: &str, text: &str) {
    let el = css(c, selector).await;
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// Presses one key (down and up) wherever the focus is, as a keyboard would.
async fn press(c: &Client, key: &str) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let key = key.chars().next().expect("a key");
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.expect("press a key");
}

/// Clicks the element at `xpath`, finding it again if a refresh replaced it in between (the
/// workers page redraws every few seconds).
async fn click_xpath(c: &Client, xpath: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(el) = c.find(Locator::XPath(xpath)).await {
            if el.click().await.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "could not click {xpath}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
const ESCAPE: &str = "\u{E00C}";
/// Held until the end of one `send_keys`: SHIFT then TAB moves focus backwards.
const SHIFT: &str = "\u{E008}";

async fn login(c: &Client, base: &str, user: &str, password: &str) {
    go(c, base, "/login").await;
    heading_is(c, "Sign in to AntCode").await;
    // Keyboard only: type, Tab to the password, Enter submits.
    // (After a failed attempt the fields still hold what was typed.)
    css(c, "#login-form input[name=password]")
        .await
        .clear()
        .await
        .unwrap();
    let name = css(c, "#login-form input[name=username]").await;
    name.clear().await.unwrap();
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
    // A wrong password is told plainly, and the form stays.
    fill(c, "#login-form input[name=username]", "admin").await;
    fill(c, "#login-form input[name=password]", "not-the-password").await;
    css(c, "#login-form input[name=password]")
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
    let message = wait_js(
        c,
        "const e = document.querySelector('#login-form .error'); return e && !e.hidden && e.textContent;",
        "the login error",
    )
    .await;
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("invalid username or password")),
        "{message}"
    );
    shot(c, "01-login-error").await;
    for e in console_errors(c).await {
        assert!(e.contains("401"), "unexpected console error: {e}");
    }
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
    // The skip link (the first Tab stop) moves focus to the page's content and keeps the route.
    c.execute("document.querySelector('a.skip').focus()", vec![])
        .await
        .unwrap();
    press(c, ENTER).await;
    wait_js(
        c,
        "return document.activeElement.closest('#main') && location.hash === '#/'",
        "focus in the content after the skip link",
    )
    .await;
    heading_is(c, "Dashboard").await;
    // The test's own view of the truth, to check that each click had its effect.
    let admin = sys.token("admin", ADMIN_PASSWORD).await;

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
    click(c, "#upload-form button[type=submit]").await;
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
    click(c, "#upload-form button[type=submit]").await;
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
    click(c, "#editor-form button[type=submit]").await;
    heading_is(c, "hello").await;
    wait_js(
        c,
        "return document.querySelector('#main .facts').textContent.includes('v2')",
        "version 2 current",
    )
    .await;
    let v2 = sys
        .api
        .get(format!(
            "{}/api/v1/projects/{project_id}/versions/2/download",
            sys.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        v2.contains("hello-from-ui-test") && v2.ends_with("# edited in the browser\n"),
        "version 2 is not the edited file: {v2}"
    );

    // --- upload a version from the project page, then roll back to v2 ------------------------------
    let v3_dir = work.path().join("v3");
    std::fs::create_dir(&v3_dir).unwrap();
    let v3_file = v3_dir.join("hello.py");
    std::fs::write(&v3_file, format!("{SCRIPT}# v3\n")).unwrap();
    css(c, "#version-form input[name=file]")
        .await
        .send_keys(v3_file.to_str().unwrap())
        .await
        .unwrap();
    click(c, "#version-form button[type=submit]").await;
    wait_js(
        c,
        "const f = document.querySelector('.page[aria-busy=false] .facts'); return f && f.textContent.includes('v3')",
        "version 3 current",
    )
    .await;
    let project_path = format!("/projects/{project_id}");
    assert_eq!(sys.get(&admin, &project_path).await["current_version"], 3);
    click_xpath(c, "//main//button[text()='Make v2 current']").await;
    sys.wait_for(&admin, &project_path, "the rollback to v2", |p| {
        p["current_version"] == 2
    })
    .await;
    wait_js(
        c,
        "const f = document.querySelector('.page[aria-busy=false] .facts'); return f && f.textContent.includes('v2') && !f.textContent.includes('v3')",
        "version 2 current again",
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
            &admin,
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
    let task = sys.get(&admin, &format!("/tasks/{task_id}")).await;
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
        sys.get(&admin, &format!("/tasks/{task_id}")).await["paused"],
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
        sys.get(&admin, &format!("/tasks/{task_id}")).await["paused"],
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
        "return document.querySelectorAll('#next-fires li').length === 5",
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
        sys.get(&admin, &format!("/tasks/{task_id}")).await["schedule"],
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
    let run = sys.get(&admin, &format!("/runs/{run_id}")).await;
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
    assert_eq!(
        sys.get(&admin, &format!("/runs/{run_id}")).await["state"],
        "cancelled"
    );
    shot(c, "09-run-cancelled").await;
    eprintln!("[ui] cancelled after {:?}", started.elapsed());
    assert_clean_console(c, "on the run page").await;

    // A quick run of the same project, through the API, so the dashboard has a success.
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
    // The download link serves the whole log (the session cookie is enough).
    c.execute(
        "window.__log = null; fetch(document.querySelector('#main a[download]').href) \
           .then(r => r.text().then(t => { window.__log = r.status + ' ' + t; }));",
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
    let r = sys.get(&admin, &format!("/runs/{retried}")).await;
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

    // A run that failed once and succeeded on its retry: the attempt picker shows each
    // attempt's own log, and "all attempts" goes back to the live view of both.
    let flaky = sys
        .call(
            &admin,
            reqwest::Method::POST,
            "/projects",
            json!({"name": "flaky", "code": "import os, sys\na = os.environ['ANTCODE_ATTEMPT']\nprint('this is attempt', a)\nsys.exit(1 if a == '1' else 0)\n", "entrypoint": "main.py"}),
        )
        .await;
    let flaky_task = sys
        .call(
            &admin,
            reqwest::Method::POST,
            "/tasks",
            json!({"name": "flaky", "project_id": flaky["id"],
                   "retry": {"max_attempts": 2, "backoff_s": 0, "max_backoff_s": 0}}),
        )
        .await;
    let frun = sys
        .call(
            &admin,
            reqwest::Method::POST,
            &format!("/tasks/{}/trigger", flaky_task["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let frun_id = frun["id"].as_str().unwrap().to_string();
    sys.wait_for(
        &admin,
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
           && document.querySelector('#main a[download]').href.endsWith('?attempt=1')",
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

    // A job waits in a queue no runner serves, for the dashboard's queue depth.
    let nightly = sys
        .call(
            &admin,
            reqwest::Method::POST,
            "/tasks",
            json!({"name": "nightly", "project_id": project_id, "queue": "nightly"}),
        )
        .await;
    sys.call(
        &admin,
        reqwest::Method::POST,
        &format!("/tasks/{}/trigger", nightly["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    sys.wait_for(&admin, "/queues", "the nightly job in its queue", |q| {
        q["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|q| q["name"] == "nightly" && q["depth"] == 1))
    })
    .await;

    // --- the other pages -------------------------------------------------------------------------
    go(c, base, "/").await;
    heading_is(c, "Dashboard").await;
    wait_js(
        c,
        "return document.querySelectorAll('#main svg.chart rect').length >= 2",
        "bars in the chart",
    )
    .await;
    wait_js(c, QUEUE_ROW, "the nightly queue's depth on the dashboard").await;
    shot(c, "11-dashboard").await;
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
    workers_page(c, sys, &admin).await;
    users_page(c, sys, &admin).await;
    account_page(c, sys).await;
    secrets_page(c, sys, &admin).await;
    audit_page(c, sys).await;
    eprintln!("[ui] admin pages done after {:?}", started.elapsed());
    assert_clean_console(c, "across the admin pages").await;

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

    // --- a viewer -------------------------------------------------------------------------------------
    switch_user(c, sys, &admin, "vera", "viewer").await;
    // The dashboard's queue depth is readable by a viewer too.
    wait_js(c, QUEUE_ROW, "the queue depth as a viewer").await;
    let nav = c
        .execute("return document.getElementById('nav').textContent", vec![])
        .await
        .unwrap();
    let nav = nav.as_str().unwrap_or_default();
    assert!(
        !nav.contains("Users") && !nav.contains("Audit"),
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
        project_edit.as_str(),
        task_edit.as_str(),
    ] {
        go(c, base, route).await;
        heading_is(c, "Not allowed").await;
    }
    assert_clean_console(c, "as a viewer").await;

    // --- an operator: runs work, but no admin controls ------------------------------------------------
    switch_user(c, sys, &admin, "opal", "operator").await;
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
    assert_clean_console(c, "as an operator").await;
}

/// Creates user `name` with `role` (through the API), logs out and logs in as them.
async fn switch_user(c: &Client, sys: &System, admin: &str, name: &str, role: &str) {
    let password = format!("{name}-password-1");
    sys.call(
        admin,
        reqwest::Method::POST,
        "/users",
        json!({"username": name, "password": password, "role": role}),
    )
    .await;
    css(c, "#logout").await.click().await.unwrap();
    heading_is(c, "Sign in to AntCode").await;
    login(c, &sys.base, name, &password).await;
}

/// The dashboard's queue table shows the `nightly` queue with one job waiting.
const QUEUE_ROW: &str = "return [...document.querySelectorAll('#queues tbody tr')] \
     .some(r => r.cells[0].textContent === 'nightly' && r.cells[1].textContent === '1')";

fn slug(title: &str) -> String {
    title
        .to_lowercase()
        .split(|ch: char| !ch.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Nothing is wider than the window: the page never scrolls sideways (wide tables scroll
/// inside their own box).
async fn assert_fits(c: &Client, page: &str) {
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "{page} scrolls sideways at this width");
}

/// Drain and undrain the real runner; create an enrollment key, enroll with it as the edge would,
/// and revoke the enrolled worker.
async fn workers_page(c: &Client, sys: &System, admin: &str) {
    go(c, &sys.base, "/workers").await;
    heading_is(c, "Workers").await;
    wait_js(
        c,
        "return document.querySelector('#main table') && document.querySelector('#main table').textContent.includes('ui-test-runner')",
        "the runner in the workers table",
    )
    .await;
    let runner_id = sys.get(admin, "/workers").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "ui-test-runner")
        .and_then(|w| w["id"].as_str())
        .expect("the runner heartbeats")
        .to_string();
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

/// Create a user, then change their role from the table.
async fn users_page(c: &Client, sys: &System, admin: &str) {
    go(c, &sys.base, "/users").await;
    heading_is(c, "Users").await;
    fill(c, "#user-form input[name=new-username]", "otto").await;
    fill(c, "#user-form input[name=new-password]", "otto-password-1").await;
    css(c, "#user-form select[name=new-role]")
        .await
        .select_by_value("operator")
        .await
        .unwrap();
    click(c, "#user-form button[type=submit]").await;
    let role_select = "#main select[aria-label='Role of otto']";
    css(c, role_select).await;
    let users = sys.get(admin, "/users").await;
    let otto = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "otto")
        .unwrap_or_else(|| panic!("no user otto: {users}"));
    assert_eq!(otto["role"], "operator");
    let otto = format!("/users/{}", otto["id"].as_str().unwrap());
    css(c, role_select)
        .await
        .select_by_value("viewer")
        .await
        .unwrap();
    sys.wait_for(admin, &otto, "otto to become a viewer", |u| {
        u["role"] == "viewer"
    })
    .await;
    wait_js(
        c,
        &format!(
            "const s = document.querySelector({}); return s && s.value === 'viewer' && !s.disabled",
            json!(role_select)
        ),
        "the table to show the new role",
    )
    .await;
    shot(c, "15-users").await;
}

/// Create an API token (shown once), use it, revoke it from the list: it stops working.
async fn account_page(c: &Client, sys: &System) {
    go(c, &sys.base, "/account").await;
    heading_is(c, "Account & tokens").await;
    fill(c, "#token-form input[name=token-name]", "ci").await;
    click(c, "#token-form button[type=submit]").await;
    let token = wait_js(
        c,
        "const s = document.querySelector('#token-form .secret'); \
         const v = s && !s.hidden && s.querySelector('input').value; return v && v.startsWith('act_') && v;",
        "the new token shown once",
    )
    .await;
    let token = token.as_str().unwrap_or_default().to_string();
    assert_eq!(sys.me_status(&token).await, 200, "the new token works");
    shot(c, "16-account").await;
    let revoke = "//main//button[starts-with(@aria-label, 'Revoke token ci ')]";
    click_xpath(c, revoke).await;
    click(c, "dialog.confirm button.danger").await;
    wait_js(
        c,
        "return ![...document.querySelectorAll('#main button')].some(b => (b.getAttribute('aria-label') || '').startsWith('Revoke token ci '))",
        "the token to leave the list",
    )
    .await;
    assert_eq!(sys.me_status(&token).await, 401, "a revoked token works");
}

/// Set a secret, replace its value, and see a run receive the new value; no value is ever on
/// the page.
async fn secrets_page(c: &Client, sys: &System, admin: &str) {
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

/// Filter the audit trail from its form, with the keyboard.
async fn audit_page(c: &Client, sys: &System) {
    go(c, &sys.base, "/audit").await;
    heading_is(c, "Audit log").await;
    fill(c, "input[name=action]", "run.").await;
    css(c, "input[name=action]")
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
    wait_js(
        c,
        &audit_shows("#/audit?action=run.", &["run.cancel", "run.retry"], "run."),
        "the audit log filtered to run actions",
    )
    .await;
    shot(c, "18-audit").await;
    fill(c, "input[name=actor]", "admin").await;
    fill(c, "input[name=action]", "user.").await;
    css(c, "input[name=action]")
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
    wait_js(
        c,
        &audit_shows(
            "#/audit?actor=admin&action=user.",
            &["user.create", "user.update"],
            "user.",
        ),
        "the audit log filtered to admin's user changes",
    )
    .await;
}

/// A script true once the page at `hash` lists each of `actions` and only actions under `prefix`.
fn audit_shows(hash: &str, actions: &[&str], prefix: &str) -> String {
    format!(
        "if (location.hash !== {hash} || !document.querySelector('.page[aria-busy=false]')) return false; \
         const acts = [...document.querySelectorAll('#main tbody tr')].map(r => r.cells[2].textContent); \
         return acts.every(a => a.startsWith({prefix})) && {wanted}.every(a => acts.includes(a));",
        hash = json!(hash),
        prefix = json!(prefix),
        wanted = json!(actions),
    )
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
    tokio::time::timeout(Duration::from_secs(480), f)
        .await
        .expect("the browser flows took longer than 480 s");
}
