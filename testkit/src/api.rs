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
