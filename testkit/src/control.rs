//! A control plane on an ephemeral port over real SQLite, the in-process broker and a local blob
//! directory, all in a per-test temporary directory; and what its tests do through it (log in,
//! call, check problem+json answers, play a runner).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use antcode_control::{run, ControlConfig};
use antcode_core::blob::local::LocalBlobStore;
use antcode_core::blob::BlobStore;
use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::Broker;
use antcode_core::store::Store;
use antcode_core::Shutdown;
use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const SECRET_KEY: &str = "test secret key of at least 32 characters";

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub blobs: Arc<dyn BlobStore>,
    pub blob_dir: PathBuf,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<Result<(), antcode_control::ControlError>>,
    _tmp: tempfile::TempDir,
}

/// A client with `timeout` per request, once control at `base` answers `/healthz` (or after
/// five seconds: the test's first call then says what is wrong).
pub async fn answering(base: &str, timeout: Duration) -> reqwest::Client {
    let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    http
}

pub async fn start() -> Server {
    start_with(|_| {}).await
}

/// [`start`] with another upload size limit.
pub async fn start_with_upload_limit(max_upload_bytes: usize) -> Server {
    start_with(|c| c.max_upload_bytes = max_upload_bytes).await
}

/// [`start`] with the configuration changed by `edit` first.
pub async fn start_with(edit: impl FnOnce(&mut ControlConfig)) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db.sqlite", tmp.path().display());
    let store = antcode_core::seams::open_store(&url).await.unwrap();
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let blob_dir = tmp.path().join("blobs");
    let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(&blob_dir).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let mut config = ControlConfig {
        listener,
        store: store.clone(),
        broker: broker.clone(),
        blobs: blobs.clone(),
        admin_password: ADMIN_PASSWORD.into(),
        dev: true,
        max_upload_bytes: 1024 * 1024,
        secrets: Some(Arc::new(antcode_control::SecretBox::from_passphrase(
            SECRET_KEY,
        ))),
        edge_token: None,
        cluster_ca: None,
        trusted_proxies: vec![],
        public_url: None,
        edge_url: None,
        git: antcode_control::GitPolicy::default(),
    };
    edit(&mut config);
    let task = tokio::spawn(run(config, shutdown.clone()));
    let http = answering(&base, Duration::from_secs(60)).await;
    Server {
        base,
        http,
        store,
        broker,
        blobs,
        blob_dir,
        shutdown,
        task,
        _tmp: tmp,
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let resp = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "login of {username}");
        let body: Value = resp.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// A request with the bearer `token`, sent.
    async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, token, path, None).await
    }

    pub async fn post_json(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    pub async fn patch_json(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::PATCH, token, path, Some(body))
            .await
    }

    pub async fn put_json(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, token, path, Some(body))
            .await
    }

    pub async fn post(&self, token: &str, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::POST, token, path, None).await
    }

    pub async fn delete(&self, token: &str, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, token, path, None).await
    }

    /// Uploads a project from `(file name, bytes)` plus extra text fields.
    pub async fn upload(
        &self,
        token: &str,
        path: &str,
        file: (&str, Vec<u8>),
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(file.1).file_name(file.0.to_string()),
        );
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Creates a user with `role` and returns a session token for it.
    pub async fn user_with_role(&self, admin: &str, username: &str, role: &str) -> String {
        let resp = self
            .post_json(
                admin,
                "/api/v1/users",
                json!({"username": username, "password": "password-123", "role": role}),
            )
            .await;
        assert_eq!(resp.status(), 201);
        self.login(username, "password-123").await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// Asserts a problem+json answer with `status` and returns its body.
pub async fn problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                1
            }
        })
        .sum()
}

/// A single-file project made from inline code; its id.
pub async fn inline_project(s: &Server, t: &str, name: &str) -> String {
    let p: Value = s
        .post_json(
            t,
            "/api/v1/projects",
            json!({"name": name, "code": "print('hi')\n"}),
        )
        .await
        .json()
        .await
        .unwrap();
    p["id"].as_str().unwrap().to_string()
}

/// The next job of the default queue, leased as worker `w1`.
pub async fn lease_next(s: &Server) -> antcode_core::model::Lease {
    let req = antcode_core::broker::LeaseRequest {
        worker_id: "w1".into(),
        queues: vec!["default".into()],
        labels: Default::default(),
        max: 1,
        ttl: Duration::from_secs(30),
    };
    s.broker
        .lease(&req, Duration::from_secs(10))
        .await
        .unwrap()
        .remove(0)
}

/// Plays a runner: leases the next job, starts it, writes `lines` as log chunks, stores
/// `archive` (gzip) as its log archive if given, and finishes it as succeeded. The run's id.
pub async fn play_runner(s: &Server, lines: &[&str], archive: Option<Vec<u8>>) -> String {
    use antcode_core::broker::LogChunk;
    use antcode_core::model::{Outcome, RunState};
    use antcode_core::time::now_ms;
    let lease = lease_next(s).await;
    let run_id = lease.job.run_id.clone();
    s.store
        .mark_started(&run_id, 1, &lease.lease_token, "w1", now_ms())
        .await
        .unwrap();
    let chunks: Vec<LogChunk> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| LogChunk {
            attempt: 1,
            seq: i as u64 + 1,
            stream: "stdout".into(),
            data: l.to_string(),
            at_ms: now_ms(),
        })
        .collect();
    s.broker.append_log(&run_id, &chunks).await.unwrap();
    let log_key = match archive {
        Some(data) => {
            let key = antcode_core::blob::log_key(&run_id, 1);
            s.blobs.put(&key, data.into()).await.unwrap();
            Some(key)
        }
        None => None,
    };
    let outcome = Outcome {
        state: RunState::Succeeded,
        exit_code: Some(0),
        signal: None,
        error: None,
        duration_ms: 12,
        peak_rss_kb: None,
        log_key,
        result: Some(json!({"answer": 42})),
    };
    s.store
        .finish_attempt(&run_id, 1, Some(&lease.lease_token), &outcome, now_ms())
        .await
        .unwrap();
    run_id
}
