//! The control plane's REST API end to end over real SQLite, the in-process broker and a local
//! blob directory: one test binary, a module per resource.

#[path = "../common/mod.rs"]
mod common {
    pub use antcode_testkit::control::*;
    pub use antcode_testkit::fixtures::*;
}

mod auth;
mod git;
mod projects;
mod runs;
mod schema;
mod system;
mod tasks;

use serde_json::{json, Value};

use common::*;

async fn project_and_task(s: &Server, t: &str) -> (String, String) {
    let p: Value = s
        .post_json(
            t,
            "/api/v1/projects",
            json!({"name": "p", "code": "print('hi')\n"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let pid = p["id"].as_str().unwrap().to_string();
    let resp = s
        .post_json(
            t,
            "/api/v1/tasks",
            json!({"name": "job", "project_id": pid, "args": ["a"], "env": {"API_KEY": "s3cret"},
                   "timeout_s": 60, "retry": {"max_attempts": 2, "backoff_s": 1, "max_backoff_s": 5}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["retry"]["max_attempts"], 2);
    assert_eq!(task["queue"], "default");
    assert_eq!(task["warm"], false, "cold starts are the default");
    (pid, task["id"].as_str().unwrap().to_string())
}

/// Plays a runner (see [`play_runner`]), with a small archive if `archive`.
async fn fake_runner(s: &Server, lines: &[&str], archive: bool) -> String {
    play_runner(s, lines, archive.then(|| gzip(b"archived log\n"))).await
}
