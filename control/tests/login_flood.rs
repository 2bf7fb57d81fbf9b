//! A login flood's memory: 192 concurrent logins of unknown users, each from an address of its
//! own (through a trusted proxy, so the per-address throttle lets every one through to the
//! password check). Each argon2id check holds 19 MiB; on the blocking pool all 192 ran at once
//! and RSS grew by 5 GB. Now a few password threads run them and the rest wait in a bounded
//! queue or are told 503: RSS must grow by less than 300 MB, and no answer may be a 500.
//!
//! Alone in its test binary, so the process's RSS is this test's.

use antcode_control::Cidr;
use antcode_testkit::control::*;
use serde_json::json;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_memory_bounded() {
    let s = start_with(|c| c.trusted_proxies = vec![Cidr::parse("127.0.0.1/32").unwrap()]).await;
    // Warm up: the decoy hash, the first connections, the allocator's first arenas.
    let resp = s
        .post_json(
            "",
            "/api/v1/auth/login",
            json!({"username": "warm", "password": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 401);
    let before = rss_bytes();
    let logins = (0..192).map(|n| {
        s.http
            .post(s.url("/api/v1/auth/login"))
            .header(
                "x-forwarded-for",
                format!("10.9.{}.{}", n / 200, n % 200 + 1),
            )
            .json(&json!({"username": format!("ghost-{n}"), "password": "nope-nope"}))
            .send()
    });
    let mut peak = before;
    let flood = futures::future::join_all(logins);
    tokio::pin!(flood);
    let responses = loop {
        tokio::select! {
            done = &mut flood => break done,
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                peak = peak.max(rss_bytes());
            }
        }
    };
    let after = rss_bytes();
    peak = peak.max(after);
    let mut by_status = std::collections::BTreeMap::new();
    for r in responses {
        let r = r.unwrap();
        let status = r.status().as_u16();
        if status == 503 {
            assert!(r.headers().get("retry-after").is_some());
        }
        *by_status.entry(status).or_insert(0) += 1;
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "192 concurrent unknown-user logins: RSS {:.0} MiB -> peak {:.0} MiB, after {:.0} MiB (growth {:.0} MiB); answers {by_status:?}",
        mib(before),
        mib(peak),
        mib(after),
        mib(peak.saturating_sub(before))
    );
    assert!(
        by_status.keys().all(|s| *s == 401 || *s == 503),
        "{by_status:?}"
    );
    assert!(by_status.get(&401).copied().unwrap_or(0) > 0);
    assert!(
        peak.saturating_sub(before) < 300 * 1024 * 1024,
        "RSS grew by {:.0} MiB",
        mib(peak - before)
    );
    s.stop().await;
}
