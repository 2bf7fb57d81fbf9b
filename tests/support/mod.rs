//! What the root integration tests that run `antcode` as OS processes share: the processes
//! with their logs, a fresh PostgreSQL database, the S3 test server, and an API client logged in
//! as admin. Each test file includes it with `mod support;`, so not every item is used by each.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_antcode");

/// How long a test waits for a run to reach a state before it fails, naming the run.
const RUN_WAIT: Duration = Duration::from_secs(120);

/// A port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new, empty PostgreSQL database (`ANTCODE_TEST_POSTGRES_URL` names the server's admin
/// database); its URL. The name carries the process id and a counter, so tests running in
/// parallel, in this process or another, never share one.
pub fn fresh_postgres(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var("ANTCODE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("antcode_{tag}_{}_{n}", std::process::id());
    let status = Command::new("psql")
        .arg(&admin)
        .args([
            "-qc",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .expect("psql (PostgreSQL client) is needed for these tests");
    assert!(
        status.success(),
        "could not create database {name} through {admin}"
    );
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    format!("{base}/{name}")
}

/// The S3 test server: `ANTCODE_TEST_S3_ENDPOINT`, or the one `ops/scripts/s3-server.sh`
/// installs and starts.
pub fn s3_endpoint() -> String {
    if let Ok(e) = std::env::var("ANTCODE_TEST_S3_ENDPOINT") {
        return e;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/scripts/s3-server.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run ops/scripts/s3-server.sh");
    assert!(
        out.status.success(),
        "the S3 test server could not be started: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A bucket of the S3 test server named after `tag` and this process: the endpoint and the
/// bucket (moto accepts any credentials; the bucket is created by a one-off PUT).
pub async fn s3_bucket(tag: &str) -> (String, String) {
    let endpoint = s3_endpoint();
    let bucket = format!("{tag}-{}", std::process::id());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("S3 server answers");
    assert!(
        created.status().is_success() || created.status() == 409,
        "create bucket {bucket}: {}",
        created.status()
    );
    (endpoint, bucket)
}

/// One `antcode` process; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then waits for a graceful exit (fails the test after 20 s).
    pub fn terminate(&mut self) {
        self.sigterm();
        self.wait_exit();
    }

    /// Waits for the process to exit (fails the test after 20 s).
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop within 20 s", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `antcode` processes started with one environment, each logging to `NAME.log` in a temporary
/// directory that [`Procs::logs`] reads back for failure messages.
pub struct Procs {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    procs: Vec<Proc>,
}

impl Procs {
    pub fn new(env: Vec<(String, String)>) -> Procs {
        Procs {
            dir: tempfile::tempdir().unwrap(),
            env,
            procs: vec![],
        }
    }

    pub fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        self.procs.push(Proc {
            name: name.into(),
            child,
        });
    }

    /// Starts `antcode runner --mode direct` named `name`, with a data dir of its own.
    pub fn spawn_runner(&mut self, name: &str) {
        self.spawn_runner_with(name, &[]);
    }

    /// [`Procs::spawn_runner`] with `extra` arguments.
    pub fn spawn_runner_with(&mut self, name: &str, extra: &[&str]) {
        let data = self.dir.path().join(name).display().to_string();
        let mut args = vec![
            "runner",
            "--mode",
            "direct",
            "--name",
            name,
            "--data-dir",
            &data,
            "--ops-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        self.spawn(name, &args);
    }

    /// The latest process started under `name`.
    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .rev()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process named {name}"))
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", p.name)))
                .unwrap_or_default();
            out.push_str(&format!("--- {} ---\n{text}\n", p.name));
        }
        out
    }

    /// Panics naming every process that has exited.
    pub fn assert_alive(&mut self) {
        let mut dead = vec![];
        for p in &mut self.procs {
            if let Ok(Some(status)) = p.child.try_wait() {
                dead.push(format!("{} exited: {status}", p.name));
            }
        }
        assert!(dead.is_empty(), "{dead:?}\n{}", self.logs());
    }
}

/// The HTTP status of control's `/readyz` on `port`, or `None` when it does not answer.
pub async fn readyz(port: u16) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    http.get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Waits (up to 60 s) until control's `/readyz` on `port` answers `want`.
pub async fn wait_readyz(p: &Procs, port: u16, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while readyz(port).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "control /readyz never answered {want}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a run (as the API shows it) has ended.
pub fn terminal(run: &Value) -> bool {
    !["queued", "running"].contains(&run["state"].as_str().unwrap_or("queued"))
}

/// The control API on `127.0.0.1:PORT`, logged in as admin.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn login(port: u16, password: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let res: Value = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = res["token"].as_str().expect("login").to_string();
        Api { http, base, token }
    }

    /// POSTs JSON; the status and body of the answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// PUTs JSON; the status and body of the answer.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// DELETEs `path`; the status and body of the answer.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let res = self
            .http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path`, which must succeed; the body as text.
    pub async fn text(&self, path: &str) -> String {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.text().await.unwrap()
    }

    /// GETs `path`, which must succeed; the body as JSON.
    pub async fn get(&self, path: &str) -> Value {
        serde_json::from_str(&self.text(path).await).unwrap()
    }

    /// Uploads a project (`data` as `file_name`, with `extra` form fields), which must be
    /// accepted; the project as the API shows it.
    pub async fn upload(
        &self,
        name: &str,
        file_name: &str,
        data: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> Value {
        let mut form = Form::new()
            .text("name", name.to_string())
            .part("file", Part::bytes(data).file_name(file_name.to_string()));
        for (k, v) in extra {
            form = form.text(k.to_string(), v.to_string());
        }
        let res = self
            .http
            .post(format!("{}/projects", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 201, "upload project {name}: {body}");
        body
    }

    /// A task of a one-file project holding `code`, with a 120 s timeout and `extra` fields;
    /// its id.
    pub async fn script_task(&self, name: &str, code: &str, extra: Value) -> String {
        let file = format!("{name}.py");
        let project = self
            .upload(name, &file, code.as_bytes().to_vec(), &[])
            .await;
        let mut body = json!({"name": name, "project_id": project["id"], "timeout_s": 120});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, task) = self.post("/tasks", body).await;
        assert_eq!(status, 201, "create task {name}: {task}");
        task["id"].as_str().unwrap().to_string()
    }

    /// Triggers a run of `task`; the status and body of the answer.
    pub async fn trigger(&self, task: &str) -> (u16, Value) {
        self.post(&format!("/tasks/{task}/trigger"), json!({}))
            .await
    }

    /// Triggers a run of `task`, which must be accepted; the run's id.
    pub async fn triggered(&self, task: &str) -> String {
        let (status, run) = self.trigger(task).await;
        assert!((200..300).contains(&status), "trigger: {status} {run}");
        run["id"].as_str().unwrap().to_string()
    }

    /// Polls run `id` until `done` holds (failing after two minutes with `p`'s logs).
    pub async fn wait_for(
        &self,
        p: &Procs,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_run(id, what, RUN_WAIT, done, &|| p.logs()).await
    }

    /// Polls run `id` until `done` holds; after `limit` fails naming `what` and `context()`.
    pub async fn wait_run(
        &self,
        id: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
        context: &dyn Fn() -> String,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let run = self.get(&format!("/runs/{id}")).await;
            if done(&run) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} never reached {what} within {limit:?}: {run}\n{}",
                context()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until run `id` has ended.
    pub async fn wait_done(&self, p: &Procs, id: &str) -> Value {
        self.wait_for(p, id, "a terminal state", terminal).await
    }
}

/// Empties Redis database `db` (each test that flushes owns its database).
pub fn flush_redis(db: u32) {
    let status = Command::new("redis-cli")
        .args(["-n", &db.to_string(), "FLUSHDB"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(status.success());
}
