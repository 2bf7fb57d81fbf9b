//! The control API as an admin client sees it: log in, call, upload, trigger, wait for runs.

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::procs::Procs;

/// How long a test waits for a run to reach a state before it fails, naming the run.
const RUN_WAIT: Duration = Duration::from_secs(120);

/// Whether a run (as the API shows it) has ended.
pub fn terminal(run: &Value) -> bool {
    !["queued", "running"].contains(&run["state"].as_str().unwrap_or("queued"))
}

/// The most of `runs` (as the API shows them) that were running at one instant, by their
/// `started_at` and `finished_at`. A run that ends at the instant another starts is not counted
/// with it: its lease ended before the other's began (a run starts after its lease is taken and
/// ends before its lease is released). Runs that never started are left out.
pub fn peak_running(runs: &[Value]) -> usize {
    let at = |run: &Value, field: &str| {
        run[field]
            .as_str()
            .and_then(antcode_core::time::parse_rfc3339)
    };
    // (instant, +1 for a start, -1 for an end): ends sort before starts at the same instant.
    let mut edges: Vec<(i64, i32)> = runs
        .iter()
        .filter_map(|r| Some([(at(r, "started_at")?, 1), (at(r, "finished_at")?, -1)]))
        .flatten()
        .collect();
    edges.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        peak = peak.max(now);
    }
    peak as usize
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

    /// PATCHes JSON; the status and body of the answer.
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, body).await
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
        let path = format!("/runs/{id}");
        let why = |run: &Value| format!("run {id} never reached {what} within {limit:?}: {run}");
        self.poll(&path, Duration::from_millis(100), limit, done, why, context)
            .await
    }

    /// The runs of `task` (at most 500), once `n` of them have ended; after `limit` fails
    /// naming the task and `context()`.
    pub async fn ended_runs(
        &self,
        task: &str,
        n: usize,
        limit: Duration,
        context: &dyn Fn() -> String,
    ) -> Vec<Value> {
        let ended = |page: &Value| {
            let runs = page["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            runs.iter().filter(|r| terminal(r)).count()
        };
        let path = format!("/runs?task_id={task}&limit=500");
        let why = |page: &Value| {
            let got = ended(page);
            format!("only {got} of {n} runs of task {task} ended within {limit:?}")
        };
        let every = Duration::from_millis(500);
        let page = self
            .poll(&path, every, limit, |page| ended(page) >= n, why, context)
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// GETs `path` every `every` until `done` holds of the answer; after `limit` fails with
    /// `why` of the last answer and `context()`.
    async fn poll(
        &self,
        path: &str,
        every: Duration,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
        why: impl Fn(&Value) -> String,
        context: &dyn Fn() -> String,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let answer = self.get(path).await;
            if done(&answer) {
                return answer;
            }
            assert!(Instant::now() < deadline, "{}\n{}", why(&answer), context());
            tokio::time::sleep(every).await;
        }
    }

    /// Waits until run `id` has ended.
    pub async fn wait_done(&self, p: &Procs, id: &str) -> Value {
        self.wait_for(p, id, "a terminal state", terminal).await
    }
}
