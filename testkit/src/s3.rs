//! The S3 test server (moto, started by `ops/scripts/s3-server.sh`) and buckets on it.

use std::path::Path;
use std::process::Command;

/// The S3 test server: `ANTCODE_TEST_S3_ENDPOINT`, or the one `ops/scripts/s3-server.sh`
/// installs and starts.
pub fn s3_endpoint() -> String {
    if let Ok(e) = std::env::var("ANTCODE_TEST_S3_ENDPOINT") {
        return e;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/scripts/s3-server.sh");
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
