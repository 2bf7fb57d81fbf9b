//! Memory bounds under inputs that inflate: a zip bomb uploaded as a project. The control
//! plane runs in this process, so its peak RSS (`VmHWM`, reset through `/proc/self/clear_refs`
//! once the inputs are built) is what a request costs the server. The tests take one lock: a
//! figure must not include another test's. Each prints its figure.

mod common;

use tokio::sync::Mutex;

use common::*;

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
            .compression_level(Some(1))
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
