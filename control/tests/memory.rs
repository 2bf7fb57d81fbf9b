//! Memory bounds under inputs that inflate: a huge log read by several viewers at once, and a
//! zip bomb uploaded as a project. The control plane runs in this process, so its peak RSS
//! (`VmHWM`, reset through `/proc/self/clear_refs` once the inputs are built) is what a request
//! mix costs the server. The tests take one lock: a figure must not include another test's.
//! Each prints its figure.

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use antcode_testkit::control::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Resets the peak RSS to the current RSS; returns it, in KiB.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    status_kb("VmHWM:")
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A finished run whose archived log is `archive` (gzip).
async fn run_with_archive(s: &Server, t: &str, archive: Vec<u8>) -> String {
    let pid = inline_project(s, t, "p").await;
    let task: Value = s
        .post_json(
            t,
            "/api/v1/tasks",
            json!({"name": "loud", "project_id": pid}),
        )
        .await
        .json()
        .await
        .unwrap();
    let tid = task["id"].as_str().unwrap();
    let resp = s.post(t, &format!("/api/v1/tasks/{tid}/trigger")).await;
    assert_eq!(resp.status(), 201);
    play_runner(s, &[], Some(archive)).await
}

/// ~200 MB of log lines, gzipped: lines with a counter between repeated text, as a chatty
/// program prints them.
fn loud_log(bytes: usize) -> (Vec<u8>, usize) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let filler =
        "INFO worker.step processed the batch without surprises; moving on to the next one\n"
            .repeat(200);
    let mut written = 0;
    let mut i = 0u64;
    while written < bytes {
        let block = format!("progress {i}\n{filler}");
        std::io::Write::write_all(&mut gz, block.as_bytes()).unwrap();
        written += block.len();
        i += 1;
    }
    (gz.finish().unwrap(), written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_readers_of_a_200_mb_log_stay_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start().await;
    let t = s.admin().await;
    let (archive, size) = loud_log(200 * 1000 * 1000);
    let gz_len = archive.len();
    let run_id = run_with_archive(&s, &t, archive).await;
    let before = reset_peak();
    let readers = (0..6).map(|_| {
        let (http, url, t) = (
            s.http.clone(),
            s.url(&format!("/api/v1/runs/{run_id}/logs")),
            t.clone(),
        );
        tokio::spawn(async move {
            let resp = http.get(url).bearer_auth(t).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.bytes_stream();
            let mut n = 0usize;
            while let Some(piece) = body.next().await {
                n += piece.unwrap().len();
            }
            n
        })
    });
    for r in futures::future::join_all(readers).await {
        assert_eq!(r.unwrap(), size, "every reader gets the whole log");
    }
    let grew_mb = status_kb("VmHWM:").saturating_sub(before) / 1024;
    println!(
        "6 concurrent readers of a {} MB log ({} MB gzipped): peak RSS grew by {grew_mb} MB",
        size / 1_000_000,
        gz_len / 1_000_000
    );
    assert!(grew_mb < 300, "peak RSS grew by {grew_mb} MB");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_zip_bomb_is_refused_in_bounded_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start_with_upload_limit(8 * 1024 * 1024).await;
    let t = s.admin().await;
    let bomb = {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("main.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"print(1)\n").unwrap();
        let opts = zip::write::SimpleFileOptions::default()
            .compression_level(Some(9))
            .large_file(true);
        w.start_file("zeros.bin", opts).unwrap();
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..1024 {
            w.write_all(&zeros).unwrap();
        }
        w.finish().unwrap().into_inner()
    };
    let before = reset_peak();
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("bomb.zip", bomb.clone()),
            &[("name", "bomb")],
        )
        .await;
    let body = problem(resp, 413).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("too large once unpacked"),
        "{body}"
    );
    let grew_mb = status_kb("VmHWM:").saturating_sub(before) / 1024;
    println!(
        "a 1 GiB zip bomb ({} KB) refused: peak RSS grew by {grew_mb} MB",
        bomb.len() / 1000
    );
    assert!(grew_mb < 50, "peak RSS grew by {grew_mb} MB");
    s.stop().await;
}
