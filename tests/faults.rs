//! Bad input and faults, with real processes: a wrong or unreachable engine at start is one line
//! naming the setting and a non-zero exit; Redis going away under a running split deployment
//! (control + scheduler + runner on PostgreSQL, a private `redis-server`, a local blob directory)
//! makes control report not ready without anything crashing, and everything recovers on its
//! own when Redis returns — including a run triggered while it was down; the database going away
//! (connections cut, new ones refused) under a running run does the same, and the run's end,
//! reported while the database was gone, is recorded once it returns.

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use antcode_testkit::api::Api;
use antcode_testkit::db::fresh_postgres;
use antcode_testkit::procs::{free_port, readyz, wait_readyz, Procs};

const BIN: &str = env!("CARGO_BIN_EXE_antcode");

const PASSWORD: &str = "faults-password-not-default";
const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// Runs `antcode control` against the given URLs and returns (exit code, stderr).
fn control_exit(database_url: &str, redis_url: &str, blob_dir: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(["control", "--listen", "127.0.0.1:0"])
        .env("ANTCODE_DATABASE_URL", database_url)
        .env("ANTCODE_REDIS_URL", redis_url)
        .env("ANTCODE_BLOB_URL", format!("file://{blob_dir}"))
        .env("ANTCODE_ADMIN_PASSWORD", PASSWORD)
        .env("ANTCODE_SECRET_KEY", SECRET)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn antcode control");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("antcode control kept running with {database_url} / {redis_url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_engine_url_at_start_is_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs").display().to_string();
    let sqlite = format!("sqlite://{}/db.sqlite", dir.path().display());
    let closed = free_port(); // bound and released: nothing listens there
    let cases = [
        (
            "nosql://x".to_string(),
            "redis://127.0.0.1:6379/0".to_string(),
            "ANTCODE_DATABASE_URL",
        ),
        (
            sqlite.clone(),
            format!("redis://127.0.0.1:{closed}/0"),
            "ANTCODE_REDIS_URL",
        ),
        (sqlite, "amqp://127.0.0.1/".to_string(), "ANTCODE_REDIS_URL"),
        (
            format!("postgres://postgres@127.0.0.1:{closed}/antcode"),
            "redis://127.0.0.1:6379/0".to_string(),
            "ANTCODE_DATABASE_URL",
        ),
    ];
    for (db, redis, setting) in cases {
        let (code, stderr) = control_exit(&db, &redis, &blobs);
        assert!(
            code.is_some_and(|c| c != 0),
            "{db} / {redis}: exit {code:?}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{db} / {redis}: one line, got {stderr:?}");
        assert!(
            lines[0].contains(setting),
            "{db} / {redis}: the line names {setting}: {stderr:?}"
        );
    }
}

/// A `redis-server` of this test's own, so it can be killed and brought back on the same port.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let mut r = PrivateRedis { port, child: None };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for the fault tests");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Control, a scheduler and a direct runner as OS processes on `database_url` and `redis_url`,
/// with short lease and heartbeat times; returns them and control's port once it is ready.
async fn start_split(database_url: String, redis_url: String) -> (Procs, u16) {
    let mut p = Procs::new(BIN, vec![]);
    let blobs = p.dir.path().join("blobs").display().to_string();
    p.env = vec![
        ("ANTCODE_DATABASE_URL".into(), database_url),
        ("ANTCODE_REDIS_URL".into(), redis_url),
        ("ANTCODE_BLOB_URL".into(), format!("file://{blobs}")),
        ("ANTCODE_ADMIN_PASSWORD".into(), PASSWORD.into()),
        ("ANTCODE_SECRET_KEY".into(), SECRET.into()),
        ("ANTCODE_LOST_AFTER_S".into(), "5".into()),
        ("ANTCODE_LEASE_TTL_S".into(), "5".into()),
        ("ANTCODE_HEARTBEAT_S".into(), "1".into()),
        (
            "RUST_LOG".into(),
            std::env::var("FAULTS_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ];
    let port = p.spawn_control().await;
    p.spawn_scheduler("scheduler");
    p.spawn_runner("runner");
    (p, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_is_not_ready_then_recovers_and_loses_nothing() {
    let mut redis = PrivateRedis::start(free_port());
    let redis_url = format!("redis://127.0.0.1:{}/0?prefix=faults", redis.port);
    let (mut p, port) = start_split(fresh_postgres().await, redis_url).await;
    let api = Api::login(port, PASSWORD).await;
    let task = api
        .script_task("hello", "print('hello through faults')\n", json!({}))
        .await;

    // Before: a run goes through.
    let run = api.triggered(&task).await;
    let done = api.wait_done(&p, &run).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", p.logs());

    // Redis goes away: control says not ready, nothing crashes.
    redis.kill();
    wait_readyz(&p, port, 503).await;
    let (status, while_down) = api.trigger(&task).await;
    // The run is accepted into SQL (the truth) and published once the broker is back.
    assert!(
        (200..300).contains(&status),
        "a trigger while Redis is down is accepted into SQL: {status} {while_down}\n{}",
        p.logs()
    );
    let while_down = while_down["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.assert_alive();
    assert_eq!(readyz(port).await, Some(503));

    // Redis returns (empty, as after a crash without persistence): ready again, and the run
    // accepted while it was down is executed, as is a new one.
    redis.up();
    wait_readyz(&p, port, 200).await;
    let done = api.wait_done(&p, &while_down).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", p.logs());
    let after = api.triggered(&task).await;
    let done = api.wait_done(&p, &after).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", p.logs());
    p.assert_alive();
}

/// A TCP relay in front of the shared PostgreSQL that the test can cut: `down` drops every
/// relayed connection and stops listening (new connections are refused, as from a database that
/// is gone), `up` listens again on the same port.
struct Outage {
    port: u16,
    target: String,
    relay: Option<tokio::task::JoinHandle<()>>,
}

impl Outage {
    async fn start(target: &str) -> Outage {
        let mut o = Outage {
            port: free_port(),
            target: target.to_string(),
            relay: None,
        };
        o.up().await;
        o
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the relay port is free again");
        let target = self.target.clone();
        self.relay = Some(tokio::spawn(async move {
            // Dropping this set (when the relay task is aborted) aborts every relayed connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    fn down(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_going_away_is_not_ready_then_recovers_and_loses_nothing() {
    // The services reach the database only through the relay.
    let direct = fresh_postgres().await;
    let (base, name) = direct.rsplit_once('/').unwrap();
    let host_port = base
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or("127.0.0.1:5432");
    let mut db = Outage::start(host_port).await;
    let user = base
        .split("//")
        .nth(1)
        .and_then(|r| r.split_once('@'))
        .map(|(u, _)| u);
    let via_relay = format!(
        "postgres://{}@127.0.0.1:{}/{name}",
        user.unwrap_or("postgres"),
        db.port
    );
    let redis_url = format!(
        "redis://127.0.0.1:6379/0?prefix=faults-db-{}",
        std::process::id()
    );
    let (mut p, port) = start_split(via_relay, redis_url).await;
    let api = Api::login(port, PASSWORD).await;
    let task = api
        .script_task(
            "slow",
            "import time\ntime.sleep(4)\nprint('survived the outage')\n",
            json!({}),
        )
        .await;

    // A run is executing when the database goes away.
    let run = api.triggered(&task).await;
    api.wait_for(&p, &run, "running", |r| r["state"] == "running")
        .await;
    db.down();
    wait_readyz(&p, port, 503).await;

    // Refused clearly, not crashed: a request that needs the database is a 5xx problem.
    let (status, body) = api.trigger(&task).await;
    assert!(
        status >= 500,
        "a trigger without a database is refused: {status} {body}"
    );
    // The run ends while the database is down; its report waits in the broker.
    tokio::time::sleep(Duration::from_secs(6)).await;
    p.assert_alive();
    assert_eq!(readyz(port).await, Some(503));

    // The database returns: ready again without a restart, the run's end is recorded, and a
    // new run goes through.
    db.up().await;
    wait_readyz(&p, port, 200).await;
    let done = api.wait_done(&p, &run).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", p.logs());
    let after = api.triggered(&task).await;
    let done = api.wait_done(&p, &after).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", p.logs());
    p.assert_alive();
}
