//! 100 MB of output through the runner, byte-exact, while the runner's memory stays bounded.
//!
//! Its own test binary (so its own process): the peak RSS it measures (`VmHWM`) must not include
//! other tests running in parallel. The live log goes to a real Redis (per-test key prefix), so
//! the broker's copy of the log lives outside this process too; what remains in the process is
//! the runner.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode_core::blob::local::LocalBlobStore;
use antcode_core::blob::{bundle_key, BlobStore};
use antcode_core::broker::prelude::*;
use antcode_core::broker::redis::RedisBroker;
use antcode_core::model::{BundleFormat, BundleRef, Job, RunEventKind, RunState};
use antcode_core::Shutdown;
use antcode_runner::{run, RunnerConfig};
use sha2::{Digest, Sha256};

const LINES: usize = 1_000_000;
/// The runner's own growth we accept while 100 MB pass through it.
const MAX_GROWTH_KB: u64 = 64 * 1024;

/// Peak resident set of this process so far, in kB.
fn vm_hwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Removes every key of this test's prefix.
async fn cleanup(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query_async(&mut con).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_byte_exact_with_bounded_memory() {
    let url = antcode_testkit::redis::redis_base();
    let prefix = format!("antcode-runner-test-{}", antcode_core::ids::new_id());
    let broker = Arc::new(
        RedisBroker::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| {
                panic!("Redis is not reachable at {url} (set ANTCODE_TEST_REDIS_URL): {e}")
            }),
    );
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(LocalBlobStore::new(dir.path().join("blobs")).unwrap());

    // 1,000,000 lines of 100 bytes, each different, written in large pieces.
    let code = format!(
        r#"
import sys
w = sys.stdout.write
pad = "abcdefghij" * 9
buf = []
for i in range({LINES}):
    buf.append("%08d %s\n" % (i, pad))
    if len(buf) == 1000:
        w("".join(buf))
        buf = []
w("".join(buf))
"#
    );
    let sha = hex::encode(Sha256::digest(code.as_bytes()));
    let key = bundle_key(&sha, "py");
    blobs.put(&key, code.clone().into()).await.unwrap();
    let bundle = BundleRef {
        key,
        sha256: sha,
        format: BundleFormat::Py,
        size_bytes: code.len() as i64,
        file_name: Some("main.py".into()),
    };
    let job = Job {
        prefer: None,
        timeout_s: 300,
        ..antcode_testkit::fixtures::job(bundle, "main.py")
    };

    let before = vm_hwm_kb();
    let mut config = RunnerConfig::new(broker.clone(), blobs.clone(), dir.path().join("data"));
    config.heartbeat_interval = Duration::from_millis(300);
    let shutdown = Shutdown::new();
    let runner = tokio::spawn(run(config, shutdown.clone()));
    assert!(broker.publish(&job).await.unwrap());
    let until = Instant::now() + Duration::from_secs(240);
    let outcome = 'wait: loop {
        assert!(Instant::now() < until, "the run did not finish");
        let got = broker
            .read_events("test", "t", 10, Duration::from_millis(500))
            .await
            .unwrap();
        let ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
        broker.ack_events("test", &ids).await.unwrap();
        for (_, ev) in got {
            if let RunEventKind::Finished(o) = ev.kind {
                break 'wait o;
            }
        }
    };
    let after = vm_hwm_kb();
    shutdown.cancel();
    runner.await.unwrap().unwrap();
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");

    // The archive, streamed to disk and hashed while decompressing.
    let gz = dir.path().join("archive.gz");
    blobs
        .get_to_file(outcome.log_key.as_deref().unwrap(), &gz)
        .await
        .unwrap();
    let mut dec = flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap());
    let mut got = Sha256::new();
    let mut len = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = dec.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        len += n;
        got.update(&buf[..n]);
    }
    let mut expected = Sha256::new();
    let pad = "abcdefghij".repeat(9);
    for i in 0..LINES {
        expected.update(format!("{i:08} {pad}\n").as_bytes());
    }
    cleanup(&url, &prefix).await;
    assert_eq!(len, LINES * 100);
    assert_eq!(
        hex::encode(got.finalize()),
        hex::encode(expected.finalize())
    );
    let growth = after.saturating_sub(before);
    assert!(
        growth < MAX_GROWTH_KB,
        "peak RSS grew by {growth} kB while 100 MB passed through the runner"
    );
    eprintln!("peak RSS growth: {growth} kB (before {before} kB, after {after} kB)");
}
