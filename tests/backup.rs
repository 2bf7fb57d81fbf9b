//! `antcode backup` and `antcode restore`: a live `antcode up` backed up while runs are being
//! triggered, restored into a new data dir, and started again with everything in it: projects,
//! tasks, schedules, runs, their logs, and secrets that still open. A wrong passphrase, a
//! damaged file and a non-empty target each fail in one line and write nothing.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use antcode::backup;
use antcode::up::{self, Up, UpConfig};
use antcode_testkit::api::{terminal, Api};

const PASSWORD: &str = "backup-test-password";
const PASSPHRASE: &str = "correct horse battery staple";
const SECRET: &str = "s3cr3t-value-Ω";

async fn start(data_dir: &Path) -> Up {
    let mut cfg = UpConfig::new(data_dir.to_path_buf());
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    cfg.runner_slots = 2;
    up::start(cfg).await.expect("antcode up starts")
}

async fn wait_done(api: &Api, id: &str) -> Value {
    api.wait_run(
        id,
        "a terminal state",
        Duration::from_secs(120),
        terminal,
        &String::new,
    )
    .await
}

/// The items of a list endpoint, sorted by id, with only the fields an operator wrote (not
/// those that move on by themselves: next fire times, last runs).
async fn items(api: &Api, path: &str, fields: &[&str]) -> Vec<Value> {
    let mut items: Vec<Value> = api.get(path).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            fields
                .iter()
                .map(|f| (f.to_string(), item[*f].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    items.sort_by_key(|v: &Value| v["id"].as_str().unwrap_or_default().to_string());
    items
}

const PROJECT_FIELDS: &[&str] = &["id", "name", "description", "current_version", "created_at"];
const TASK_FIELDS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "schedule",
    "secrets",
    "env",
    "timeout_s",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_instance_is_restored_elsewhere_with_all_it_held() {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, saved) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("backup"),
    );
    let a = start(&a_dir).await;
    let api = Api::login(a.control_addr.port(), PASSWORD).await;
    let (status, body) = api
        .put("/secrets/API_TOKEN", json!({"value": SECRET}))
        .await;
    assert!(status < 300, "{status} {body}");
    // Prints a digest of the secret, never the secret.
    let code = "import hashlib, os\nprint('digest', hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest())\n";
    let schedule = json!({"kind": "cron", "cron": "0 3 * * 1", "timezone": "UTC"});
    let project = api
        .upload("secretive", "secretive.py", code.as_bytes().to_vec(), &[])
        .await;
    let (status, body) = api
        .put(
            "/secrets/API_TOKEN/grants",
            json!({"projects": [project["id"]]}),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    let (status, task) = api
        .post(
            "/tasks",
            json!({"name": "secretive", "project_id": project["id"], "timeout_s": 120,
                "secrets": ["API_TOKEN"], "schedule": schedule}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let task = task["id"].as_str().unwrap().to_string();
    let first = api.triggered(&task).await;
    let first = wait_done(&api, &first).await;
    assert_eq!(first["state"], "succeeded", "{first}");
    let first_log = api
        .text(&format!("/runs/{}/logs", first["id"].as_str().unwrap()))
        .await;
    assert!(first_log.contains("digest "), "{first_log}");

    // Under load: runs are triggered while the backup is taken.
    let loader = {
        let api = Api::login(a.control_addr.port(), PASSWORD).await;
        let task = task.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..20 {
                ids.push(api.triggered(&task).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done = backup::backup(&a_dir, &saved, PASSPHRASE)
        .await
        .expect("backup");
    assert!(done.files >= 3, "{done:?}");
    let triggered = loader.await.unwrap();
    for id in &triggered {
        wait_done(&api, id).await;
    }
    let (projects, tasks) = (
        items(&api, "/projects", PROJECT_FIELDS).await,
        items(&api, "/tasks", TASK_FIELDS).await,
    );
    assert_eq!(tasks[0]["schedule"]["cron"], "0 3 * * 1", "{tasks:?}");
    a.stop().await.unwrap();

    backup::restore(&saved, &b_dir, PASSPHRASE)
        .await
        .expect("restore");
    let b = start(&b_dir).await;
    let restored = Api::login(b.control_addr.port(), PASSWORD).await;
    assert_eq!(
        items(&restored, "/projects", PROJECT_FIELDS).await,
        projects
    );
    assert_eq!(items(&restored, "/tasks", TASK_FIELDS).await, tasks);
    // The run finished before the backup is there, with its log.
    let run = restored
        .get(&format!("/runs/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let log = restored
        .text(&format!("/runs/{}/logs", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(log, first_log);
    // Runs the backup caught queued run after the restore; those it caught running had a lease
    // that is gone, and end `lost` (retried as their policy says, here not at all).
    let runs = restored
        .get(&format!("/runs?task_id={task}&limit=100"))
        .await;
    for r in runs["items"].as_array().unwrap() {
        let r = wait_done(&restored, r["id"].as_str().unwrap()).await;
        let lost = r["state"] == "lost"
            && r["error"]
                .as_str()
                .unwrap_or_default()
                .contains("lease is gone");
        assert!(r["state"] == "succeeded" || lost, "{r}");
    }
    // The secret still opens: the restored key is the one it was sealed under.
    let again = restored.triggered(&task).await;
    let again = wait_done(&restored, &again).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    let log = restored
        .text(&format!("/runs/{}/logs", again["id"].as_str().unwrap()))
        .await;
    let digest = |log: &str| {
        log.lines()
            .find(|l| l.starts_with("digest "))
            .map(str::to_string)
    };
    assert_eq!(digest(&log), digest(&first_log), "{log}");
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_restore_fails_in_one_line_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, saved) = (root.path().join("a"), root.path().join("backup"));
    let mut cfg = UpConfig::new(a_dir.clone());
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    cfg.runner = false;
    let a = up::start(cfg).await.unwrap();
    a.stop().await.unwrap();

    let short = backup::backup(&a_dir, &root.path().join("short"), "too short").await;
    assert!(short.unwrap_err().to_string().contains("at least"));
    assert!(!root.path().join("short").exists());
    let not_empty = root.path().join("full");
    std::fs::create_dir(&not_empty).unwrap();
    std::fs::write(not_empty.join("x"), "x").unwrap();
    let refused = backup::backup(&a_dir, &not_empty, PASSPHRASE)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");
    backup::backup(&a_dir, &saved, PASSPHRASE).await.unwrap();

    let target = root.path().join("b");
    let wrong = backup::restore(&saved, &target, "the wrong passphrase")
        .await
        .unwrap_err();
    assert_eq!(
        wrong.to_string(),
        "the passphrase does not open this backup"
    );
    assert!(!target.exists(), "a failed restore wrote something");
    let refused = backup::restore(&saved, &not_empty, PASSPHRASE)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");
    assert_eq!(std::fs::read_dir(&not_empty).unwrap().count(), 1);

    // One byte changed in the database copy: found before anything is written.
    let db = saved.join("antcode.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&db, bytes).unwrap();
    let damaged = backup::restore(&saved, &target, PASSPHRASE)
        .await
        .unwrap_err();
    assert!(
        damaged.to_string().contains("antcode.db")
            && damaged.to_string().contains("does not match"),
        "{damaged}"
    );
    assert!(!target.exists(), "a failed restore wrote something");
}

/// The same round trip through the commands and a bucket: `antcode backup --to s3://…`, then
/// `antcode restore --from s3://…` into a new data dir that `up` starts from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_goes_to_a_bucket_and_comes_back() {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    let a = start(&a_dir).await;
    let api = Api::login(a.control_addr.port(), PASSWORD).await;
    let project = api
        .upload("kept", "kept.py", b"print('kept')\n".to_vec(), &[])
        .await;
    a.stop().await.unwrap();

    let (endpoint, bucket) = antcode_testkit::s3::s3_bucket("backup").await;
    let url = format!("s3://{bucket}/backups/{}", std::process::id());
    let antcode = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_antcode"))
            .args(args)
            .env("ANTCODE_S3_ENDPOINT", &endpoint)
            .env("ANTCODE_S3_ACCESS_KEY", "test")
            .env("ANTCODE_S3_SECRET_KEY", "test")
            .env("ANTCODE_BACKUP_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap()
    };
    let a_path = a_dir.display().to_string();
    let out = antcode(&["backup", "--data-dir", &a_path, "--to", &url]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("backed up"), "{text}");
    // A prefix holding a backup is not written over.
    let again = antcode(&["backup", "--data-dir", &a_path, "--to", &url]);
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && text.contains("already holds a backup"),
        "{text}"
    );

    let b_path = b_dir.display().to_string();
    let out = antcode(&["restore", "--from", &url, "--data-dir", &b_path]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("restored"), "{text}");
    // No staging directory is left beside the data dir.
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".antcode-backup-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let b = start(&b_dir).await;
    let restored = Api::login(b.control_addr.port(), PASSWORD).await;
    let got = restored
        .get(&format!("/projects/{}", project["id"].as_str().unwrap()))
        .await;
    assert_eq!(got["name"], "kept", "{got}");
    b.stop().await.unwrap();
}
