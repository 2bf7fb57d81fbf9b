//! The ONE conformance suite of the `BlobStore` seam.
//!
//! Every behaviour below is a plain `async fn(&TestBlobs)`; the `conformance!` macro at the bottom
//! stamps each one out as a test per implementation (`local::` on a temporary directory, `s3::` on
//! a fresh bucket of a real S3-protocol server), so both are held to the same contract.
//!
//! The S3 server: `ANTCODE_TEST_S3_ENDPOINT` (with `ANTCODE_TEST_S3_ACCESS_KEY` /
//! `ANTCODE_TEST_S3_SECRET_KEY`, default `test`/`test`) if set; otherwise the suite runs
//! `ops/scripts/s3-server.sh`, which installs moto and starts it on 127.0.0.1:19000 unless it is
//! already answering there. If no server can be had the S3 tests fail, naming the cause: a
//! missing server is a broken environment, never a reason to skip.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use antcode_core::blob::local::LocalBlobStore;
use antcode_core::blob::s3::{S3BlobStore, S3Config, PART_SIZE};
use antcode_core::blob::{BlobError, BlobStore};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENDPOINT_ENV: &str = "ANTCODE_TEST_S3_ENDPOINT";
const SERVER_PORT: u16 = 19000;

// ---------------------------------------------------------------- fixtures

/// A blob store that lives as long as the test, with a scratch directory for files.
struct TestBlobs {
    store: Arc<dyn BlobStore>,
    scratch: tempfile::TempDir,
    /// For S3: the config, so a test can open more stores on the same bucket.
    s3: Option<S3Config>,
}

impl TestBlobs {
    async fn local() -> TestBlobs {
        let scratch = tempfile::tempdir().expect("temporary directory");
        let store = LocalBlobStore::new(scratch.path().join("blobs")).expect("local blob store");
        TestBlobs {
            store: Arc::new(store),
            scratch,
            s3: None,
        }
    }

    async fn s3() -> TestBlobs {
        let config = s3_config(&format!("antcode-t-{}", uuid::Uuid::new_v4().simple()), "");
        let store = S3BlobStore::new(config.clone()).expect("S3 client");
        store
            .create_bucket_if_missing()
            .await
            .unwrap_or_else(|e| panic!("create test bucket at {:?}: {e}", config.endpoint));
        TestBlobs {
            store: Arc::new(store),
            scratch: tempfile::tempdir().expect("temporary directory"),
            s3: Some(config),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.scratch.path().join("files").join(name)
    }
}

fn s3_config(bucket: &str, prefix: &str) -> S3Config {
    let endpoint = s3_endpoint().to_string();
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    S3Config {
        bucket: bucket.to_string(),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        path_style: true,
        access_key: var("ANTCODE_TEST_S3_ACCESS_KEY", "test"),
        secret_key: var("ANTCODE_TEST_S3_SECRET_KEY", "test"),
        session_token: None,
        prefix: prefix.to_string(),
    }
}

/// The endpoint of the S3 server the tests use, started once per test binary if need be.
fn s3_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        if let Ok(endpoint) = std::env::var(ENDPOINT_ENV) {
            return endpoint;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/scripts/s3-server.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(SERVER_PORT.to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        if !out.status.success() {
            panic!(
                "no S3 server for the tests: {} {SERVER_PORT} failed ({}):\n{}\n\
                 Set {ENDPOINT_ENV} to use another server.",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// Deterministic pseudo-random bytes (xorshift), so a large object has no repeating pattern
/// that could hide a misplaced part.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` bytes of noise to `path` one MiB at a time; returns their sha256.
async fn write_noise_file(path: &Path, len: usize) -> String {
    tokio::fs::create_dir_all(path.parent().unwrap())
        .await
        .unwrap();
    let mut file = tokio::fs::File::create(path).await.unwrap();
    let mut hash = Sha256::new();
    let mut written = 0;
    let mut seed = 7;
    while written < len {
        let chunk = noise(seed, (len - written).min(1 << 20));
        hash.update(&chunk);
        file.write_all(&chunk).await.unwrap();
        written += chunk.len();
        seed += 1;
    }
    file.flush().await.unwrap();
    hex::encode(hash.finalize())
}

async fn sha256_file(path: &Path) -> String {
    let mut file = tokio::fs::File::open(path).await.unwrap();
    sha256_reader(&mut file).await
}

async fn sha256_reader(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            return hex::encode(hash.finalize());
        }
        hash.update(&buf[..n]);
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, BlobError>, what: &str) {
    match result {
        Err(BlobError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, BlobError>, what: &str) {
    match result {
        Err(BlobError::InvalidKey(_)) => {}
        other => panic!("{what}: expected InvalidKey, got {other:?}"),
    }
}

// ---------------------------------------------------------------- the contract

async fn round_trip_is_byte_exact(t: &TestBlobs) {
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let cases: [(&str, Bytes); 3] = [
        ("bundles/every-byte.bin", Bytes::from(every_byte)),
        ("logs/run-1/1.log.gz", Bytes::from_static(b"hello\n\0\xff")),
        ("empty", Bytes::new()),
    ];
    for (key, data) in &cases {
        t.store.put(key, data.clone()).await.unwrap();
    }
    for (key, data) in &cases {
        assert_eq!(&t.store.get(key).await.unwrap(), data, "{key}");
        assert!(t.store.exists(key).await.unwrap(), "{key}");
        let mut reader = t.store.get_stream(key).await.unwrap();
        let mut streamed = Vec::new();
        reader.read_to_end(&mut streamed).await.unwrap();
        assert_eq!(&streamed[..], &data[..], "{key} streamed");
    }
}

async fn overwrite_replaces_content(t: &TestBlobs) {
    t.store
        .put("a/b.txt", Bytes::from_static(b"first, and longer"))
        .await
        .unwrap();
    t.store
        .put("a/b.txt", Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(&t.store.get("a/b.txt").await.unwrap()[..], b"second");

    let src = t.file("third.txt");
    tokio::fs::create_dir_all(src.parent().unwrap())
        .await
        .unwrap();
    tokio::fs::write(&src, b"third").await.unwrap();
    assert_eq!(t.store.put_file("a/b.txt", &src).await.unwrap(), 5);
    assert_eq!(&t.store.get("a/b.txt").await.unwrap()[..], b"third");
}

async fn exists_and_delete(t: &TestBlobs) {
    let key = "logs/x/1.log.gz";
    assert!(!t.store.exists(key).await.unwrap());
    t.store.put(key, Bytes::from_static(b"log")).await.unwrap();
    assert!(t.store.exists(key).await.unwrap());
    t.store.delete(key).await.unwrap();
    assert!(!t.store.exists(key).await.unwrap());
    assert_not_found(t.store.get(key).await, "get after delete");
    // Deleting what is not there is not an error (retries and cleanups rely on it).
    t.store.delete(key).await.unwrap();
    t.store.delete("never/was/here").await.unwrap();
}

async fn missing_key_is_not_found(t: &TestBlobs) {
    assert_not_found(t.store.get("bundles/missing.zip").await, "get");
    assert_not_found(
        t.store.get_stream("bundles/missing.zip").await.map(|_| ()),
        "get_stream",
    );
    let dest = t.file("out/missing.zip");
    assert_not_found(
        t.store.get_to_file("bundles/missing.zip", &dest).await,
        "get_to_file",
    );
    assert!(!dest.exists(), "get_to_file of a missing key left a file");
}

async fn key_prefixes_are_not_blobs(t: &TestBlobs) {
    t.store
        .put("dir/sub/leaf", Bytes::from_static(b"x"))
        .await
        .unwrap();
    for prefix in ["dir", "dir/sub"] {
        assert!(!t.store.exists(prefix).await.unwrap(), "{prefix} exists");
        assert_not_found(t.store.get(prefix).await, prefix);
        assert_not_found(t.store.get_stream(prefix).await.map(|_| ()), prefix);
        t.store.delete(prefix).await.unwrap();
    }
    assert!(
        t.store.exists("dir/sub/leaf").await.unwrap(),
        "deleting a prefix removed a blob"
    );
    assert!(!t.store.exists("dir/sub/leaf/deeper").await.unwrap());
}

async fn invalid_keys_are_refused_everywhere(t: &TestBlobs) {
    let src = t.file("src.txt");
    tokio::fs::create_dir_all(src.parent().unwrap())
        .await
        .unwrap();
    tokio::fs::write(&src, b"payload").await.unwrap();
    let dest = t.file("dest.txt");
    for bad in [
        "../x",
        "/abs",
        "",
        "a/../b",
        "a//b",
        "a/./b",
        "a b",
        "a\\b",
        "trailing/",
    ] {
        let data = Bytes::from_static(b"payload");
        assert_invalid(t.store.put(bad, data).await, &format!("put {bad:?}"));
        assert_invalid(t.store.get(bad).await, &format!("get {bad:?}"));
        assert_invalid(t.store.exists(bad).await, &format!("exists {bad:?}"));
        assert_invalid(t.store.delete(bad).await, &format!("delete {bad:?}"));
        assert_invalid(
            t.store.put_file(bad, &src).await,
            &format!("put_file {bad:?}"),
        );
        assert_invalid(
            t.store.get_to_file(bad, &dest).await,
            &format!("get_to_file {bad:?}"),
        );
        let stream = t.store.get_stream(bad).await.map(|_| ());
        assert_invalid(stream, &format!("get_stream {bad:?}"));
    }
    assert!(!dest.exists());
    // The local root is `scratch/blobs`, so an escaping "../x" would have landed here.
    assert!(!t.scratch.path().join("x").exists());
}

async fn large_object_streams_through_files(t: &TestBlobs) {
    // 40 MiB + a ragged tail: three full 16 MiB parts would be 48, so this is two full parts and
    // a short last one, the shape where offset arithmetic goes wrong.
    let len = 40 * 1024 * 1024 + 12_345;
    assert!(
        len as u64 > 2 * PART_SIZE,
        "the large object must span several S3 parts"
    );
    let src = t.file("large.bin");
    let sha = write_noise_file(&src, len).await;
    let key = format!("bundles/{sha}.bin");

    assert_eq!(t.store.put_file(&key, &src).await.unwrap(), len as u64);
    assert!(t.store.exists(&key).await.unwrap());

    let dest = t.file("download/large.bin");
    assert_eq!(t.store.get_to_file(&key, &dest).await.unwrap(), len as u64);
    assert_eq!(sha256_file(&dest).await, sha, "get_to_file content differs");

    let mut reader = t.store.get_stream(&key).await.unwrap();
    assert_eq!(
        sha256_reader(&mut reader).await,
        sha,
        "get_stream content differs"
    );

    // get_to_file replaces an existing file whole.
    tokio::fs::write(&dest, b"stale and much shorter")
        .await
        .unwrap();
    t.store
        .put("small", Bytes::from_static(b"fresh"))
        .await
        .unwrap();
    assert_eq!(t.store.get_to_file("small", &dest).await.unwrap(), 5);
    assert_eq!(tokio::fs::read(&dest).await.unwrap(), b"fresh");

    t.store.delete(&key).await.unwrap();
    assert!(!t.store.exists(&key).await.unwrap());
}

async fn put_file_of_missing_source_changes_nothing(t: &TestBlobs) {
    let missing = t.file("no-such-file");
    match t.store.put_file("k", &missing).await {
        Err(BlobError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(!t.store.exists("k").await.unwrap());
}

async fn concurrent_puts_of_different_keys(t: &TestBlobs) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u64 {
        let store = t.store.clone();
        tasks.spawn(async move {
            let data = Bytes::from(noise(i + 100, 50_000 + i as usize * 1000));
            store.put(&format!("concurrent/{i}"), data).await.map(|_| i)
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task panicked").expect("put");
    }
    for i in 0..16u64 {
        let got = t.store.get(&format!("concurrent/{i}")).await.unwrap();
        assert_eq!(
            &got[..],
            &noise(i + 100, 50_000 + i as usize * 1000)[..],
            "key {i}"
        );
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::TestBlobs::local().await).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::TestBlobs::s3().await).await;
                }
            )*
        }
    };
}

conformance!(
    round_trip_is_byte_exact,
    overwrite_replaces_content,
    exists_and_delete,
    missing_key_is_not_found,
    key_prefixes_are_not_blobs,
    invalid_keys_are_refused_everywhere,
    large_object_streams_through_files,
    put_file_of_missing_source_changes_nothing,
    concurrent_puts_of_different_keys,
);

// ---------------------------------------------------------------- S3 only

/// Stores with different prefixes on one bucket do not see each other's keys, and the prefix
/// really is where the objects land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefixes_partition_a_bucket() {
    let t = TestBlobs::s3().await;
    let bucket = t.s3.as_ref().unwrap().bucket.clone();
    let team_a = S3BlobStore::new(s3_config(&bucket, "team-a/blobs")).unwrap();
    let team_b = S3BlobStore::new(s3_config(&bucket, "team-b")).unwrap();
    team_a.put("k", Bytes::from_static(b"a")).await.unwrap();
    assert!(!team_b.exists("k").await.unwrap());
    assert_not_found(team_b.get("k").await, "other prefix");
    assert_eq!(&t.store.get("team-a/blobs/k").await.unwrap()[..], b"a");
}

/// `connect` checks the bucket, so a wrong setting fails at start with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_connect_reports_a_missing_bucket_or_server() {
    let missing = format!("antcode-missing-{}", uuid::Uuid::new_v4().simple());
    let err = S3BlobStore::connect(s3_config(&missing, ""))
        .await
        .err()
        .expect("missing bucket accepted");
    assert!(err.to_string().contains(&missing), "{err}");

    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = s3_config("antcode-any", "");
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    let err = S3BlobStore::connect(config)
        .await
        .err()
        .expect("dead endpoint accepted");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let err = S3BlobStore::new(s3_config("Not_A_Bucket", ""))
        .err()
        .expect("bad name accepted");
    assert!(matches!(err, BlobError::Config(_)), "{err:?}");
}
