//! The split deployment as real OS processes: `antcode control`, `antcode scheduler` and
//! `antcode runner --mode direct` on PostgreSQL + Redis + S3 (moto), driven over REST.
//!
//! Covers: a run through the whole split system; `kill -9` of the runner in the middle of a run
//! loses nothing (the attempt is declared lost and retried on a new runner); after a flush of
//! Redis every queued run is re-published from SQL and executed.

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_antcode");
const PASSWORD: &str = "split-password-not-default";
/// Redis databases of their own, so flushing one touches nothing but its test.
const SPLIT_DB: u32 = 7;
const FAILOVER_DB: u32 = 8;

struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop within 20 s of SIGTERM", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Deployment {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    control_port: u16,
    procs: Vec<Proc>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn s3_endpoint() -> String {
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

async fn fresh_postgres(tag: &str) -> String {
    let admin = std::env::var("ANTCODE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("antcode_{tag}_{}", std::process::id());
    let status = Command::new("psql")
        .arg(&admin)
        .args([
            "-qc",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .expect("psql (PostgreSQL client) is needed for the split-deployment test");
    assert!(
        status.success(),
        "could not create database {name} through {admin}"
    );
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    format!("{base}/{name}")
}

fn flush_redis(db: u32) {
    let status = Command::new("redis-cli")
        .args(["-n", &db.to_string(), "FLUSHDB"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(status.success());
}

impl Deployment {
    /// Control on PostgreSQL + Redis database `db` + S3, ready to serve; no scheduler or runner yet.
    async fn new(tag: &str, db: u32) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = s3_endpoint();
        let bucket = format!("{tag}-{}", std::process::id());
        // moto accepts any credentials; the bucket is created through the S3 API by a one-off PUT.
        let created = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .expect("S3 server answers");
        assert!(
            created.status().is_success() || created.status() == 409,
            "create bucket: {}",
            created.status()
        );
        flush_redis(db);
        let env = vec![
            ("ANTCODE_DATABASE_URL".into(), fresh_postgres(tag).await),
            (
                "ANTCODE_REDIS_URL".into(),
                format!("redis://127.0.0.1:6379/{db}?prefix={tag}"),
            ),
            ("ANTCODE_BLOB_URL".into(), format!("s3://{bucket}")),
            ("ANTCODE_S3_ENDPOINT".into(), endpoint),
            ("ANTCODE_S3_ACCESS_KEY".into(), "test".into()),
            ("ANTCODE_S3_SECRET_KEY".into(), "test".into()),
            ("ANTCODE_ADMIN_PASSWORD".into(), PASSWORD.into()),
            (
                "ANTCODE_SECRET_KEY".into(),
                "0123456789abcdef0123456789abcdef".into(),
            ),
            ("ANTCODE_LOST_AFTER_S".into(), "3".into()),
            ("ANTCODE_LEASE_TTL_S".into(), "3".into()),
            ("ANTCODE_HEARTBEAT_S".into(), "1".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        let mut d = Deployment {
            dir,
            env,
            control_port: free_port(),
            procs: vec![],
        };
        let listen = format!("127.0.0.1:{}", d.control_port);
        d.spawn("control", &["control", "--listen", &listen]);
        d.wait_ready().await;
        d
    }

    /// Starts a scheduler whose operations endpoint is on the returned port.
    fn start_scheduler(&mut self, name: &str) -> u16 {
        let port = free_port();
        let ops = format!("127.0.0.1:{port}");
        self.spawn(name, &["scheduler", "--ops-listen", &ops]);
        port
    }

    fn spawn(&mut self, name: &str, args: &[&str]) {
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

    fn start_runner(&mut self, name: &str) {
        let data: PathBuf = self.dir.path().join(name);
        let data = data.display().to_string();
        self.spawn(
            name,
            &[
                "runner",
                "--mode",
                "direct",
                "--name",
                name,
                "--data-dir",
                &data,
                "--ops-listen",
                "127.0.0.1:0",
            ],
        );
    }

    fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .rev()
            .find(|p| p.name == name)
            .unwrap()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", p.name)))
                .unwrap_or_default();
            out.push_str(&format!("--- {} ---\n{}\n", p.name, text));
        }
        out
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.control_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("control never became ready\n{}", self.logs());
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(d: &Deployment) -> Api {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}/api/v1", d.control_port);
        let res: Value = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Api {
            http,
            base,
            token: res["token"].as_str().expect("login").to_string(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "POST {path}: {}", res.status());
        res.json().await.unwrap()
    }

    async fn run(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/runs/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn task_for(&self, name: &str, code: &str, extra: Value) -> String {
        let form = Form::new().text("name", name.to_string()).part(
            "file",
            Part::bytes(code.as_bytes().to_vec()).file_name(format!("{name}.py")),
        );
        let res = self
            .http
            .post(format!("{}/projects", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let project: Value = res.json().await.unwrap();
        let mut body = json!({"name": name, "project_id": project["id"], "timeout_s": 120});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.post("/tasks", body).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn trigger(&self, task: &str) -> String {
        self.post(&format!("/tasks/{task}/trigger"), json!({}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn wait_for(
        &self,
        d: &Deployment,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let run = self.run(id).await;
            if done(&run) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} never reached {what}: {run}\n{}",
                d.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn terminal(run: &Value) -> bool {
    !["queued", "running"].contains(&run["state"].as_str().unwrap_or("queued"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_survives_a_killed_runner_and_a_redis_flush() {
    let mut d = Deployment::new("split", SPLIT_DB).await;
    d.start_scheduler("scheduler");
    d.start_runner("runner-1");
    let api = Api::login(&d).await;

    // 1. A run through the split system.
    let hello = api
        .task_for(
            "hello",
            "import sys\nprint('hello from', sys.argv[1])\n",
            json!({"args": ["split"]}),
        )
        .await;
    let run = api.trigger(&hello).await;
    let done = api.wait_for(&d, &run, "a terminal state", terminal).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
    let logs = api
        .http
        .get(format!("{}/runs/{run}/logs", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(logs.contains("hello from split"), "{logs}");

    // 2. kill -9 of the runner in the middle of a run: the attempt is lost, then retried.
    let marker = d.dir.path().join("attempts");
    let code = format!("import time\nopen({:?}, 'a').write('x')\nprint('working', flush=True)\ntime.sleep(4)\nprint('done')\n", marker.display().to_string());
    let slow = api
        .task_for(
            "slow",
            &code,
            json!({"retry": {"max_attempts": 3, "backoff_s": 0, "max_backoff_s": 0}}),
        )
        .await;
    let run = api.trigger(&slow).await;
    api.wait_for(&d, &run, "running", |r| r["state"] == "running")
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&marker).is_ok_and(|m| !m.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the first attempt never started its script\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.proc("runner-1").kill9();
    d.start_runner("runner-2");
    let done = api.wait_for(&d, &run, "a terminal state", terminal).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
    assert!(
        done["attempt"].as_u64().unwrap() >= 2,
        "the killed attempt was retried: {done}"
    );
    assert!(
        std::fs::read_to_string(&marker).unwrap().len() >= 2,
        "the script ran again"
    );

    // 3. Flush Redis while runs are queued: SQL is the truth, they are published again and run.
    d.proc("runner-2").terminate();
    let mut queued = vec![];
    for _ in 0..3 {
        queued.push(api.trigger(&hello).await);
    }
    flush_redis(SPLIT_DB);
    d.start_runner("runner-3");
    for run in &queued {
        let done = api.wait_for(&d, run, "a terminal state", terminal).await;
        assert_eq!(done["state"], "succeeded", "{done}\n{}", d.logs());
    }
    for name in ["runner-3", "scheduler", "control"] {
        d.proc(name).terminate();
    }
}

async fn is_leader(port: u16) -> bool {
    let Ok(res) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return false;
    };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .any(|l| l.starts_with("antcode_scheduler_leader ") && l.trim_end().ends_with(" 1"))
}

async fn scheduled_due_times(api: &Api, task: &str) -> Vec<String> {
    let page: Value = api
        .http
        .get(format!("{}/runs?task_id={task}&limit=500", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["due_at"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_failover_keeps_firing_once_per_due_time() {
    let mut d = Deployment::new("failover", FAILOVER_DB).await;
    let ports = [
        d.start_scheduler("scheduler-a"),
        d.start_scheduler("scheduler-b"),
    ];
    let api = Api::login(&d).await;
    let task = api
        .task_for(
            "tick",
            "print('tick')\n",
            json!({"schedule": {"kind": "interval", "every_s": 1}, "misfire": "catch_up"}),
        )
        .await;

    // Exactly one leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let flags = [is_leader(ports[0]).await, is_leader(ports[1]).await];
        match flags {
            [true, false] => break 0,
            [false, true] => break 1,
            [true, true] => panic!("two leaders at once\n{}", d.logs()),
            _ => assert!(Instant::now() < deadline, "no leader elected\n{}", d.logs()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while scheduled_due_times(&api, &task).await.len() < 2 {
        assert!(Instant::now() < deadline, "no fires\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // kill -9 the leader: the other takes over within the lock TTL and fires the missed times.
    let names = ["scheduler-a", "scheduler-b"];
    d.proc(names[leader]).kill9();
    let killed_at = Instant::now();
    let before = scheduled_due_times(&api, &task).await.len();
    while !is_leader(ports[1 - leader]).await {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no failover\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while scheduled_due_times(&api, &task).await.len() < before + 3 {
        assert!(
            Instant::now() < deadline,
            "fires did not resume after failover\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut due = scheduled_due_times(&api, &task).await;
    let n = due.len();
    due.sort();
    due.dedup();
    assert_eq!(due.len(), n, "a due time fired twice across the failover");
    d.proc(names[1 - leader]).terminate();
    d.proc("control").terminate();
}
