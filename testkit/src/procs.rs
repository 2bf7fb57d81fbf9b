//! `antcode` processes for the tests that run it as the operator would: each logs to a file in
//! a temporary directory, is killed when dropped, and is read back for failure messages.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment of a split deployment named `tag` on real engines: a fresh PostgreSQL
/// database (first, as `ANTCODE_DATABASE_URL`), `redis` as the broker, a new bucket of the S3
/// test server, `password` the admin's, a fixed secret key and warnings only in the logs.
pub async fn split_env(tag: &str, redis: String, password: &str) -> Vec<(String, String)> {
    let (endpoint, bucket) = crate::s3::s3_bucket(tag).await;
    vec![
        (
            "ANTCODE_DATABASE_URL".into(),
            crate::db::fresh_postgres().await,
        ),
        ("ANTCODE_REDIS_URL".into(), redis),
        ("ANTCODE_BLOB_URL".into(), format!("s3://{bucket}")),
        ("ANTCODE_S3_ENDPOINT".into(), endpoint),
        ("ANTCODE_S3_ACCESS_KEY".into(), "test".into()),
        ("ANTCODE_S3_SECRET_KEY".into(), "test".into()),
        ("ANTCODE_ADMIN_PASSWORD".into(), password.into()),
        (
            "ANTCODE_SECRET_KEY".into(),
            "0123456789abcdef0123456789abcdef".into(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ]
}

/// One `antcode` process; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then waits for a graceful exit (fails the test after 20 s).
    pub fn terminate(&mut self) {
        self.sigterm();
        self.wait_exit();
    }

    /// Waits for the process to exit (fails the test after 20 s).
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop within 20 s", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `antcode` processes started with one environment, each logging to `NAME.log` in a temporary
/// directory that [`Procs::logs`] reads back for failure messages.
pub struct Procs {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// The `antcode` binary (`env!("CARGO_BIN_EXE_antcode")` in the root package's tests).
    bin: String,
    procs: Vec<Proc>,
}

impl Procs {
    pub fn new(bin: &str, env: Vec<(String, String)>) -> Procs {
        Procs {
            dir: tempfile::tempdir().unwrap(),
            env,
            bin: bin.to_string(),
            procs: vec![],
        }
    }

    /// Processes of a split deployment named `tag`: a fresh PostgreSQL database, Redis database
    /// 0 under a key prefix of `tag`'s, a blob directory of their own, `password` the admin's,
    /// and warnings only in the logs. Nothing is started yet.
    pub async fn on_postgres_and_redis(bin: &str, tag: &str, password: &str) -> Procs {
        let mut p = Procs::new(bin, vec![]);
        let blobs = p.dir.path().join("blobs").display().to_string();
        p.env = vec![
            (
                "ANTCODE_DATABASE_URL".into(),
                crate::db::fresh_postgres().await,
            ),
            ("ANTCODE_REDIS_URL".into(), crate::redis::redis_url(0, tag)),
            ("ANTCODE_BLOB_URL".into(), format!("file://{blobs}")),
            ("ANTCODE_ADMIN_PASSWORD".into(), password.into()),
            (
                "ANTCODE_SECRET_KEY".into(),
                format!("{tag}-secret-key-0123456789abcdef"),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ];
        p
    }

    pub fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(&self.bin)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        self.procs.push(Proc {
            name: name.into(),
            child,
        });
    }

    /// Starts `antcode runner --mode direct` named `name`, with a data dir of its own.
    pub fn spawn_runner(&mut self, name: &str) {
        self.spawn_runner_with(name, &[]);
    }

    /// [`Procs::spawn_runner`] with `extra` arguments.
    pub fn spawn_runner_with(&mut self, name: &str, extra: &[&str]) {
        let data = self.dir.path().join(name).display().to_string();
        let mut args = vec![
            "runner",
            "--mode",
            "direct",
            "--name",
            name,
            "--data-dir",
            &data,
            "--ops-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        self.spawn(name, &args);
    }

    /// Starts `antcode control` on a free loopback port and waits until it is ready; returns
    /// the port.
    pub async fn spawn_control(&mut self) -> u16 {
        let port = free_port();
        self.spawn(
            "control",
            &["control", "--listen", &format!("127.0.0.1:{port}")],
        );
        wait_readyz(self, port, 200).await;
        port
    }

    /// Starts `antcode up` named `name` on the data dir `data`, control on `port` and the edge
    /// on `edge_port`, interrupting runs at once when stopped (`--grace 0`), and waits until it
    /// is ready. Starting it again under another name on the same dir and ports is a restart.
    pub async fn spawn_up(
        &mut self,
        name: &str,
        data: &std::path::Path,
        port: u16,
        edge_port: u16,
    ) {
        let (data, listen, edge) = (
            data.display().to_string(),
            format!("127.0.0.1:{port}"),
            format!("127.0.0.1:{edge_port}"),
        );
        let args = [
            "up",
            "--data-dir",
            &data,
            "--listen",
            &listen,
            "--edge-listen",
            &edge,
            "--grace",
            "0",
        ];
        self.spawn(name, &args);
        wait_readyz(self, port, 200).await;
    }

    /// Starts `antcode scheduler` named `name`; returns the port of its operations endpoint.
    pub fn spawn_scheduler(&mut self, name: &str) -> u16 {
        let port = free_port();
        self.spawn(
            name,
            &["scheduler", "--ops-listen", &format!("127.0.0.1:{port}")],
        );
        port
    }

    /// The latest process started under `name`.
    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .rev()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process named {name}"))
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", p.name)))
                .unwrap_or_default();
            out.push_str(&format!("--- {} ---\n{text}\n", p.name));
        }
        out
    }

    /// Panics naming every process that has exited.
    pub fn assert_alive(&mut self) {
        let mut dead = vec![];
        for p in &mut self.procs {
            if let Ok(Some(status)) = p.child.try_wait() {
                dead.push(format!("{} exited: {status}", p.name));
            }
        }
        assert!(dead.is_empty(), "{dead:?}\n{}", self.logs());
    }
}

/// The HTTP status of control's `/readyz` on `port`, or `None` when it does not answer.
pub async fn readyz(port: u16) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    http.get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Waits (up to 60 s) until control's `/readyz` on `port` answers `want`.
pub async fn wait_readyz(p: &Procs, port: u16, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while readyz(port).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "control /readyz never answered {want}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True once `pid` no longer runs: gone, or a zombie nobody has reaped yet (a killed process
/// reparented to an init that does not reap stays one: dead all the same).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// The host pids of the live processes carrying `run_id`'s marker in their environment (a
/// task in its own PID namespace knows only its pids there).
pub fn marked(run_id: &str) -> Vec<i32> {
    let marker = format!("ANTCODE_RUN_ID={run_id}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()))
        })
        .filter(|&pid| !process_gone(pid))
        .collect()
}
