//! What the browser test stands on: chromedriver and Chromium, the whole system in-process,
//! and the helpers every page uses (waiting on the page, keys, screenshots, the console).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use antcode_control::{run, ControlConfig};
use antcode_core::blob::local::LocalBlobStore;
use antcode_core::blob::BlobStore;
use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::Broker;
use antcode_core::Shutdown;

pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// What the (simulated) edge presents on `/internal/v1/*`.
pub const EDGE_TOKEN: &str = "edge-token-for-the-ui-test";

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Upper bound for anything the test waits for (never a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(45);

/// The project the test uploads: a line at once, then (with `sleep`) a long nap.
pub const SCRIPT: &str = "import sys, time\n\
print('hello-from-ui-test', flush=True)\n\
if len(sys.argv) > 1 and sys.argv[1] == 'sleep':\n    time.sleep(60)\n\
print('bye', flush=True)\n";

/// chromedriver on an ephemeral port, killed when dropped.
pub struct Driver {
    pub child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn start_chromedriver(log: &Path) -> Driver {
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

/// Headless Chromium at 1280×900 through `driver`, with its own profile directory and the
/// browser console kept for [`console_errors`]. Its language is American English whatever the
/// machine's locale (the UI follows `navigator.languages`; the flows read English labels).
pub async fn open_browser(driver: &Driver, profile: &Path, log: &Path) -> Client {
    open_browser_in(driver, profile, log, "en-US").await
}

/// [`open_browser`] with the browser's language `lang` (a BCP 47 tag: what
/// `navigator.languages` starts with).
pub async fn open_browser_in(driver: &Driver, profile: &Path, log: &Path, lang: &str) -> Client {
    let primary = lang.split('-').next().unwrap_or(lang);
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
                format!("--lang={lang}"),
            ],
            "prefs": {"intl": {"accept_languages": format!("{lang},{primary}")}},
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "could not start headless Chromium through chromedriver: {e} (see {})",
                log.display()
            )
        })
}

/// `POST /session/{id}/goog/cdp/execute`: one Chrome DevTools Protocol command, through
/// chromedriver's own endpoint (no second connection to the browser).
#[derive(Debug)]
pub struct Cdp(pub Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// Makes the page see `prefers-color-scheme: scheme` ("light" or "dark"), as the system
/// setting would.
pub async fn emulate_color_scheme(c: &Client, scheme: &str) {
    c.issue_cmd(Cdp(json!({
        "cmd": "Emulation.setEmulatedMedia",
        "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    })))
    .await
    .expect("emulate prefers-color-scheme");
}

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console log (errors,
/// failed loads, CSP violations), drained on each read.
#[derive(Debug)]
pub struct BrowserLog;

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
pub async fn console_errors(c: &Client) -> Vec<String> {
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

pub async fn assert_clean_console(c: &Client, when: &str) {
    let errors = console_errors(c).await;
    assert!(
        errors.is_empty(),
        "browser console errors {when}: {errors:#?}"
    );
}

/// The whole system in-process.
pub struct System {
    pub base: String,
    pub api: reqwest::Client,
    pub broker: Arc<dyn Broker>,
    pub shutdown: Shutdown,
    pub _tmp: tempfile::TempDir,
}

pub async fn start_system() -> System {
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
        public_url: None,
        edge_url: None,
        // The Git project flow fetches from a server on loopback.
        git: antcode_control::GitPolicy {
            allow_private: true,
            ..Default::default()
        },
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
    let api = antcode_testkit::control::answering(&base, Duration::from_secs(30)).await;
    System {
        base,
        api,
        broker,
        shutdown,
        _tmp: tmp,
    }
}

impl System {
    pub async fn token(&self, user: &str, password: &str) -> String {
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
    pub async fn request(
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

    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Value {
        let (status, body) = self.request(token, method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {body}");
        body
    }

    pub async fn get(&self, token: &str, path: &str) -> Value {
        self.call(token, reqwest::Method::GET, path, Value::Null)
            .await
    }

    /// Polls `GET path` until `check` holds for its body (the UI's change has reached the API).
    pub async fn wait_for(
        &self,
        token: &str,
        path: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) {
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
    pub async fn me_status(&self, token: &str) -> u16 {
        self.request(token, reqwest::Method::GET, "/auth/me", Value::Null)
            .await
            .0
    }

    /// The run's log as text once it has ended.
    pub async fn finished_log(&self, token: &str, run_id: &str) -> String {
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

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn shot(c: &Client, name: &str) {
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

pub async fn picture(c: &Client, name: &str) {
    // Let the last paint settle (toasts, fonts); the picture is an artifact, not an assertion.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// What the page keeps in localStorage, as `[[key, value], …]`.
pub async fn local_storage(c: &Client) -> Value {
    c.execute(
        "return Object.keys(localStorage).map((k) => [k, localStorage.getItem(k)])",
        vec![],
    )
    .await
    .unwrap()
}

/// Polls a JS expression (a `return …` body) until it is truthy.
/// A script that throws (an element not drawn yet while the page re-renders) counts as false; its
/// last error is reported if the wait times out.
pub async fn wait_js(c: &Client, script: &str, what: &str) -> Value {
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

pub async fn heading_is(c: &Client, text: &str) {
    let script = format!(
        "const h = document.querySelector('#main h1'); \
         return h && document.querySelector('.page[aria-busy=false]') && h.textContent === {};",
        json!(text)
    );
    wait_js(c, &script, &format!("the page heading {text:?}")).await;
}

pub async fn go(c: &Client, base: &str, route: &str) {
    c.goto(&format!("{base}/#{route}")).await.expect("navigate");
}

pub async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
}

pub async fn click(c: &Client, selector: &str) {
    css(c, selector).await.click().await.unwrap();
}

pub async fn fill(c: &Client, selector: &str, text: &str) {
    let el = css(c, selector).await;
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// Presses one key (down and up) wherever the focus is, as a keyboard would.
pub async fn press(c: &Client, key: &str) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let key = key.chars().next().expect("a key");
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.expect("press a key");
}

/// Clicks the element at `xpath`, finding it again if a refresh replaced it in between (the
/// workers page redraws every few seconds).
pub async fn click_xpath(c: &Client, xpath: &str) {
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

pub async fn current_hash(c: &Client) -> String {
    c.current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap_or_default()
        .to_string()
}

pub const ENTER: &str = "\u{E007}";

pub const TAB: &str = "\u{E004}";

pub const ESCAPE: &str = "\u{E00C}";

/// Held until the end of one `send_keys`: SHIFT then TAB moves focus backwards.
pub const SHIFT: &str = "\u{E008}";

pub async fn login(c: &Client, base: &str, user: &str, password: &str) {
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
pub async fn assert_read_only(c: &Client, page: &str) {
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

/// Creates user `name` with `role` (through the API), logs out and logs in as them.
pub async fn switch_user(c: &Client, sys: &System, admin: &str, name: &str, role: &str) {
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
pub const QUEUE_ROW: &str = "return [...document.querySelectorAll('#queues tbody tr')] \
     .some(r => r.cells[0].textContent === 'nightly' && r.cells[1].textContent === '1')";

pub fn slug(title: &str) -> String {
    title
        .to_lowercase()
        .split(|ch: char| !ch.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Nothing is wider than the window: the page never scrolls sideways (wide tables scroll
/// inside their own box).
pub async fn assert_fits(c: &Client, page: &str) {
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "{page} scrolls sideways at this width");
}

/// The page's heading is drawn and the page is no longer busy.
pub async fn page_ready(c: &Client, route: &str) {
    wait_js(
        c,
        "const h = document.querySelector('#main h1'); \
         return h && h.textContent && document.querySelector('.page[aria-busy=false]');",
        &format!("the page {route}"),
    )
    .await;
}

/// A project (`project`, a create body), a task on it (`task`, a create body without the
/// project) and a run of it, through the API: the project as created, the task's id and the
/// run's id.
pub async fn seed_run(
    sys: &System,
    admin: &str,
    project: Value,
    mut task: Value,
) -> (Value, String, String) {
    let project = sys
        .call(admin, reqwest::Method::POST, "/projects", project)
        .await;
    task["project_id"] = project["id"].clone();
    let task = sys.call(admin, reqwest::Method::POST, "/tasks", task).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let run = sys
        .call(
            admin,
            reqwest::Method::POST,
            &format!("/tasks/{task_id}/trigger"),
            Value::Null,
        )
        .await;
    let run_id = run["id"].as_str().unwrap().to_string();
    (project, task_id, run_id)
}

/// A task body no runner serves (its runs stay queued, with a badge and an empty live log).
pub fn unserved(name: &str) -> Value {
    json!({"name": name, "labels": {"zone": "mars"}})
}

/// Gives the seeded project (created with `print('hi')`) a second version that changes a line
/// and adds one, for the compare page of [`every_page`].
pub async fn second_version(sys: &System, admin: &str, project: &Value) {
    let path = format!("/projects/{}/versions", project["id"].as_str().unwrap());
    let body = json!({"code": "print('hi there')\nprint('bye')\n"});
    sys.call(admin, reqwest::Method::POST, &path, body).await;
}

/// Every page an admin reaches, with the seeded project (in two versions, see
/// [`second_version`]), task and run: `(route, short name)`.
pub fn every_page(project: &Value, task_id: &str, run_id: &str) -> Vec<(String, &'static str)> {
    let project_page = format!("/projects/{}", project["id"].as_str().unwrap());
    [
        ("/".to_string(), "dashboard"),
        ("/projects".into(), "projects"),
        (project_page.clone(), "project"),
        (
            format!("{project_page}/compare?from=1&to=2"),
            "project-compare",
        ),
        ("/tasks".into(), "tasks"),
        (format!("/tasks/{task_id}"), "task"),
        ("/tasks/new".into(), "new-task"),
        ("/runs".into(), "runs"),
        (format!("/runs/{run_id}"), "run"),
        ("/workers".into(), "workers"),
        ("/users".into(), "users"),
        ("/account".into(), "account"),
        ("/secrets".into(), "secrets"),
        ("/audit".into(), "audit"),
        ("/alerts/channels".into(), "alert-channels"),
        ("/alerts/rules".into(), "alert-rules"),
        ("/alerts/deliveries".into(), "alert-deliveries"),
        ("/retention".into(), "retention"),
    ]
    .into()
}

/// Runs `flow` against a system of its own in a browser of its own (in language `lang`, or
/// en-US), within `limit`; on failure keeps a picture named after `name` and fails as the flow
/// did.
pub async fn in_own_browser(
    name: &str,
    lang: Option<&str>,
    limit: Duration,
    flow: impl for<'a> FnOnce(&'a Client, &'a System) -> futures::future::BoxFuture<'a, ()>,
) {
    use futures::FutureExt;
    let sys = start_system().await;
    let log = screenshot_dir().join(format!("chromedriver-{name}.log"));
    let driver = start_chromedriver(&log).await;
    let profile = tempfile::tempdir().unwrap();
    let client = match lang {
        Some(lang) => open_browser_in(&driver, profile.path(), &log, lang).await,
        None => open_browser(&driver, profile.path(), &log).await,
    };
    let outcome = std::panic::AssertUnwindSafe(async {
        tokio::time::timeout(limit, flow(&client, &sys))
            .await
            .unwrap_or_else(|_| panic!("the {name} flow took longer than {limit:?}"))
    })
    .catch_unwind()
    .await;
    if outcome.is_err() {
        picture(&client, &format!("zz-{name}-failure")).await;
    }
    let _ = client.close().await;
    drop(driver);
    sys.shutdown.cancel();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
