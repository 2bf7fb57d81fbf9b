//! The Redis the tests run beside: one variable names it (`ANTCODE_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), and each test takes a database number and a key prefix of its own.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const REDIS_ENV: &str = "ANTCODE_TEST_REDIS_URL";
const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";

/// The server, without a database: `ANTCODE_TEST_REDIS_URL` or the local default.
pub fn redis_base() -> String {
    std::env::var(REDIS_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim_end_matches('/').to_string())
        .unwrap_or_else(|| REDIS_DEFAULT.to_string())
}

/// A key prefix no other test of any process uses: `tag`, the process id and a counter.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{}-{n}", std::process::id())
}

/// The broker URL of database `db` with a key prefix of this test's own.
pub fn redis_url(db: u32, tag: &str) -> String {
    format!("{}/{db}?prefix={}", redis_base(), unique_prefix(tag))
}

/// Empties Redis database `db` (each test that flushes owns its database).
pub fn flush_redis(db: u32) {
    let status = Command::new("redis-cli")
        .args(["-u", &format!("{}/{db}", redis_base()), "FLUSHDB"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(status.success());
}
