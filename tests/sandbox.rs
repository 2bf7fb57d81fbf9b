//! The sandbox as an operator meets it: a plain task on `antcode up`, cold and warm, tries what
//! the issue's attacker did, naming the paths, the pid and the port it would have to guess. Everything is
//! refused, the run itself succeeds, and `up` goes on serving. (With the sandbox off,
//! `ANTCODE_BENCH_NO_SANDBOX=1`, each attempt succeeds and this test fails.)
//!
//! A write may land in the task's own view, where the path to its work dir exists as empty
//! directories (the data dir's `runner/` among them): what counts is the host's file after.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use antcode::up::{self, UpConfig};
use antcode_testkit::api::{terminal, Api};

const PASSWORD: &str = "sandbox-test-password";

/// Each attempt prints `name: reached …` or `name: denied (Error)`.
const ATTACK: &str = r#"
import glob, os, signal, socket, sys
data, up_pid, control = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def attempt(name, f):
    try:
        got = f()
        print(f"{name}: reached {str(got)[:60]!r}")
    except Exception as e:
        print(f"{name}: denied ({type(e).__name__})")
def append_to_cached_bundles():
    found = glob.glob(os.path.join(data, "runner", "bundles", "**", "*"), recursive=True)
    files = [f for f in found if os.path.isfile(f)]
    if not files:
        raise FileNotFoundError("no cached bundle in view")
    for f in files:
        with open(f, "ab") as out:
            out.write(b"\nimport os; os.system('id')\n")
    return files
attempt("database", lambda: open(os.path.join(data, "antcode.db"), "rb").read(16))
attempt("secret_key", lambda: open(os.path.join(data, "secret.key"), "rb").read())
attempt("ca_key", lambda: open(os.path.join(data, "tls", "ca-key.pem")).read())
attempt("edge_token", lambda: open(os.path.join(data, "tls", "edge-token")).read())
attempt("secret_key_write", lambda: open(os.path.join(data, "secret.key"), "ab").write(b"x"))
attempt("data_dir_listing", lambda: [n for n in os.listdir(data) if n != "runner"] or 1 / 0)
attempt("bundle_cache", append_to_cached_bundles)
attempt("runner_environ", lambda: open(f"/proc/{up_pid}/environ", "rb").read())
attempt("runner_mem", lambda: open(f"/proc/{up_pid}/mem", "rb"))
attempt("signal_runner", lambda: os.kill(up_pid, 0))
attempt("kill_runner", lambda: os.kill(up_pid, signal.SIGKILL))
attempt("control_port", lambda: socket.create_connection(("127.0.0.1", control), timeout=5))
print("done")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_on_up_reaches_nothing_of_the_platform_cold_and_warm() {
    // Not under /tmp, which every task sees as its own.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("data");
    let mut cfg = UpConfig::new(data_dir.clone());
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    let up = up::start(cfg).await.expect("antcode up starts");
    let api = Api::login(up.control_addr.port(), PASSWORD).await;
    let data_dir = data_dir.canonicalize().unwrap();

    for warm in [false, true] {
        let name = if warm { "attack-warm" } else { "attack-cold" };
        let args = json!([
            data_dir.display().to_string(),
            std::process::id().to_string(),
            up.control_addr.port().to_string()
        ]);
        let task = api
            .script_task(name, ATTACK, json!({"args": args, "warm": warm}))
            .await;
        // Twice: the second run finds the first one's bundle in the runner's cache.
        for _ in 0..2 {
            let run = api.triggered(&task).await;
            let run = api
                .wait_run(
                    &run,
                    "its end",
                    Duration::from_secs(120),
                    terminal,
                    &String::new,
                )
                .await;
            assert_eq!(run["state"], "succeeded", "{run}");
            let log = api
                .text(&format!("/runs/{}/logs", run["id"].as_str().unwrap()))
                .await;
            assert_refused(&log, warm, &data_dir);
        }
    }
    let key = std::fs::read(data_dir.join("secret.key")).unwrap();
    assert_eq!(key.len(), 32, "a task wrote to the secret key");
    // Still serving: nothing the tasks did reached the process.
    assert!(api.get("/tasks").await["items"].as_array().unwrap().len() >= 2);
    up.stop().await.unwrap();
}

fn assert_refused(log: &str, warm: bool, data_dir: &Path) {
    assert!(
        log.contains("done"),
        "warm={warm}: the task did not finish:\n{log}"
    );
    let reached: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(": reached") && !l.starts_with("secret_key_write"))
        .collect();
    assert!(
        reached.is_empty(),
        "warm={warm}: a task reached the platform ({}):\n{log}",
        data_dir.display()
    );
    let attempts = log.lines().filter(|l| l.contains(": denied")).count();
    assert_eq!(attempts, 12, "warm={warm}:\n{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}
