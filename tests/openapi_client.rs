//! The API document is usable, not just valid: a Python client generated from the live
//! `/api/openapi.json` by openapi-python-client (a well-known generator, the pinned version run
//! with `uvx`; uv is installed by `ops/test.sh`) logs in, uploads a project, creates a task, triggers it and reads
//! the run to its end against `antcode up` (`tests/openapi/client_round_trip.py`).

use std::path::Path;
use std::process::Command;

use antcode::up::{self, UpConfig};

const PASSWORD: &str = "generated-client-password";
/// The generator's version: the one the document is checked against.
const GENERATOR: &str = "openapi-python-client@0.29.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_generated_from_the_document_drives_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = UpConfig::new(dir.path().join("up"));
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    let up = up::start(cfg).await.expect("antcode up starts");
    let base = format!("http://{}", up.control_addr);
    let doc = reqwest::get(format!("{base}/api/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, doc).unwrap();

    let out = dir.path().join("gen");
    std::fs::create_dir_all(&out).unwrap();
    let generated = Command::new("uvx")
        .arg(GENERATOR)
        .args(["generate", "--meta", "none", "--path"])
        .arg(&spec)
        .arg("--output-path")
        .arg(out.join("antcode_client"))
        .output()
        .expect("uvx (uv; ops/test.sh installs it)");
    let said = String::from_utf8_lossy(&generated.stdout).to_string()
        + &String::from_utf8_lossy(&generated.stderr);
    assert!(generated.status.success(), "{said}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/client_round_trip.py");
    // The client's own dependencies, in a throwaway environment.
    let ran = tokio::process::Command::new("uv")
        .args(["run", "--no-project", "--quiet"])
        .args([
            "--with",
            "httpx",
            "--with",
            "attrs",
            "--with",
            "python-dateutil",
        ])
        .arg("python3")
        .arg(script)
        .env("PYTHONPATH", &out)
        .env("ANTCODE_URL", &base)
        .env("ANTCODE_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    let said =
        String::from_utf8_lossy(&ran.stdout).to_string() + &String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{said}");
    assert!(said.contains(" succeeded"), "{said}");
    up.stop().await.unwrap();
}
