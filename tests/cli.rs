//! The `antcode` client commands against a live `antcode up` process, as a user runs them: each
//! call is this build's binary with a config dir of the test's own and nothing of the caller's
//! `ANTCODE_*` settings. Table output is checked for what a person reads, `--output json` is
//! parsed, and exit codes are the ones scripts rely on.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use antcode_testkit::git::{GitHttp, Repo};
use antcode_testkit::procs::{free_port, Procs};

const BIN: &str = env!("CARGO_BIN_EXE_antcode");
const PASSWORD: &str = "cli-test-password";

/// An `antcode up` process on free ports, with `--grace 0` so a stop interrupts runs at once.
struct Server {
    procs: Procs,
    port: u16,
    edge_port: u16,
    starts: usize,
}

impl Server {
    async fn start() -> Server {
        let env = vec![
            ("ANTCODE_ADMIN_PASSWORD".to_string(), PASSWORD.to_string()),
            ("RUST_LOG".to_string(), "warn".to_string()),
            ("ANTCODE_GIT_ALLOW_PRIVATE".to_string(), "1".to_string()),
        ];
        let mut server = Server {
            procs: Procs::new(BIN, env),
            port: free_port(),
            edge_port: free_port(),
            starts: 0,
        };
        server.spawn().await;
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.procs.dir.path().join("data")
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let (name, data) = (format!("up{}", self.starts), self.data_dir());
        let (port, edge_port) = (self.port, self.edge_port);
        self.procs.spawn_up(&name, &data, port, edge_port).await;
    }

    /// SIGTERM, wait for the exit, start again on the same data dir and ports.
    async fn restart(&mut self) {
        let name = format!("up{}", self.starts);
        self.procs.proc(&name).terminate();
        self.spawn().await;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn edge_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.edge_port)
    }
}

/// A user of the client: a home of their own (config dir, project files).
struct User {
    home: tempfile::TempDir,
}

/// What one call of the client did.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }

    /// Panics unless the call succeeded; itself.
    fn ok(self) -> Ran {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.home.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "ANTCODE_URL",
            "ANTCODE_TOKEN",
            "ANTCODE_PROFILE",
            "ANTCODE_OUTPUT",
            "ANTCODE_CA",
            "ANTCODE_USER",
            "NO_COLOR",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `antcode ARGS` with `stdin` written to it.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Ran {
        let mut child = self.command(args, env).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        let out: Output = child.wait_with_output().unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Ran {
        self.run_with(args, &[], "")
    }

    /// `--output json` of a call that must succeed, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.run(&all).ok().json()
    }

    fn login(&self, url: &str, extra: &[&str]) -> Ran {
        let mut args = vec![
            "login",
            "--url",
            url,
            "--username",
            "admin",
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        self.run_with(&args, &[], &format!("{PASSWORD}\n"))
    }
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("a page of items")
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Login, projects, tasks, runs, logs, invoke, workers, keys and completions against one `up`,
/// through control and through the edge's TLS `/api`, one step after the other as a user goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_against_a_live_up() {
    let server = Server::start().await;
    let user = User::new();
    logs_in(&user, &server.url());
    pushes_projects(&user);
    let hello_id = manages_tasks(&user);
    refuses_a_viewer(&user, &server).await;
    runs_and_invokes(&user);
    shows_an_environment_being_built(&user);
    let run_id = lists_runs_and_logs(&user, &hello_id);
    cancels_and_retries(&user, &run_id, &hello_id);
    workers_and_keys(&user);
    says_a_bad_token(&user);
    reaches_the_edge(&user, &server);
    prints_completions(&user);
}

/// Login: a wrong password is said as the server says it; the token is kept mode 0600.
fn logs_in(user: &User, url: &str) {
    let bad = user.run_with(
        &["login", "--url", url, "-u", "admin", "--password-stdin"],
        &[],
        "wrong\n",
    );
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr.trim(),
        "error: 401 Unauthorized: invalid username or password"
    );
    let login = user.login(url, &[]).ok();
    assert!(login.stdout.contains("logged in to"), "{}", login.stdout);
    let config = user.path("config/antcode/config.toml");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(config.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("[profiles.default]") && text.contains("token = \"act_"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "the password was stored");
}

/// projects push: a directory packed without what .antcodeignore names, then a new version.
fn pushes_projects(user: &User) {
    user.write(
        "hello/main.py",
        "import sys\nprint('hello,', ' '.join(sys.argv[1:]))\n",
    );
    user.write("hello/notes.log", "not for the bundle\n");
    user.write("hello/cache/x.bin", "nor this\n");
    user.write("hello/.antcodeignore", "*.log\ncache/\n");
    let created = user.json(&["projects", "push", "hello"]);
    assert_eq!(created["name"], "hello");
    assert_eq!(created["version"]["files"], serde_json::json!(["main.py"]));
    let again = user.json(&["projects", "push", "hello"]);
    assert_eq!(again["version"], 2, "{again}");
    let table = user.run(&["projects", "ls"]).ok();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);
    assert!(!table.stdout.contains('\x1b'), "colour in piped output");
    let list = user.json(&["projects", "ls"]);
    assert!(items(&list).iter().any(|p| p["name"] == "hello"));
    // Too large for the upload limit: refused before anything is sent.
    let big = user.run(&[
        "projects",
        "push",
        "hello",
        "--name",
        "big",
        "--max-bytes",
        "40",
    ]);
    assert_eq!(big.code, 1);
    assert!(big.stderr.contains("the upload limit"), "{}", big.stderr);
    pushes_from_git(user);
    // A single file, named after it.
    let three = user.write("exit3.py", "import sys\nprint('three')\nsys.exit(3)\n");
    assert_eq!(user.json(&["projects", "push", &three])["name"], "exit3");
    let greet = user.write(
        "greet.py",
        "import json, os\np = json.loads(os.environ['ANTCODE_PARAMS'])\nprint(json.dumps({'greeting': 'hello, ' + p['who'], 'times': p['times']}))\n",
    );
    user.json(&["projects", "push", &greet]);
    let sleepy = user.write(
        "sleepy.py",
        "import time\nprint('zz', flush=True)\ntime.sleep(60)\n",
    );
    user.json(&["projects", "push", &sleepy]);
}

/// `projects push --git` creates a project that follows a repository (the server may fetch from
/// loopback: `ANTCODE_GIT_ALLOW_PRIVATE`); pushing again re-points and syncs; `projects sync`.
fn pushes_from_git(user: &User) {
    let git = GitHttp::start(None);
    let repo = Repo::create(git.root(), "jobs.git");
    repo.write("main.py", "print('from git')\n");
    let first = repo.commit("first");
    repo.push("main");
    let url = git.url("jobs.git");
    let created = user
        .run(&["projects", "push", "--git", &url, "--ref", "main"])
        .ok();
    assert!(
        created.stdout.starts_with("created project jobs ("),
        "{}",
        created.stdout
    );
    assert!(created.stdout.contains(&first[..12]), "{}", created.stdout);
    assert!(
        created.stdout.contains("push webhook: http"),
        "{}",
        created.stdout
    );
    let same = user.json(&["projects", "sync", "jobs"]);
    assert_eq!(same["outcome"], "unchanged", "{same}");
    repo.write("main.py", "print('again')\n");
    let second = repo.commit("second");
    repo.push("main");
    let synced = user.run(&["projects", "sync", "jobs"]).ok();
    assert_eq!(
        synced.stdout.trim(),
        format!("synced jobs: version 2 from commit {}", &second[..12])
    );
    // Pushing the same name again re-points the project (here: to a tag) and syncs it.
    repo.tag("v1", None);
    let repointed = user.json(&[
        "projects", "push", "--git", &url, "--ref", "v1", "--name", "jobs",
    ]);
    assert_eq!(repointed["sync"]["outcome"], "unchanged", "{repointed}");
    // A URL the server refuses: one line saying why, exit 1.
    let refused = user.run(&[
        "projects",
        "push",
        "--git",
        "file:///etc",
        "--name",
        "local",
    ]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("git.url"), "{}", refused.stderr);
}

/// tasks create|ls|show|edit|pause|resume, by name.
fn manages_tasks(user: &User) -> String {
    let hello = user.json(&[
        "tasks",
        "create",
        "hello",
        "--project",
        "hello",
        "--arg",
        "world",
        "--timeout-s",
        "60",
    ]);
    let hello_id = hello["id"].as_str().unwrap().to_string();
    for (name, project) in [("exit3", "exit3"), ("greet", "greet"), ("sleepy", "sleepy")] {
        user.json(&["tasks", "create", name, "--project", project]);
    }
    let tasks = user.json(&["tasks", "ls"]);
    assert_eq!(items(&tasks).len(), 4);
    assert_eq!(
        user.json(&["tasks", "show", "hello"])["args"],
        serde_json::json!(["world"])
    );
    let edited = user.json(&[
        "tasks",
        "edit",
        "hello",
        "--timeout-s",
        "30",
        "--set",
        "max_concurrency:=2",
        "--set",
        "limits.pids:=128",
    ]);
    assert_eq!(
        (
            edited["timeout_s"].as_i64(),
            edited["max_concurrency"].as_i64()
        ),
        (Some(30), Some(2))
    );
    assert_eq!(edited["limits"]["pids"], 128);
    let refused = user.run(&["tasks", "edit", "hello", "--set", "max_concurrency:=0"]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr.trim(),
        "error: 422 Unprocessable Entity: max_concurrency: must be between 1 and 10000, got 0"
    );
    let scheduled = user.json(&["tasks", "edit", "hello", "--every-s", "3600"]);
    assert_eq!(scheduled["schedule"]["every_s"], 3600);
    assert_eq!(user.json(&["tasks", "pause", "hello"])["paused"], true);
    assert_eq!(user.json(&["tasks", "resume", &hello_id])["paused"], false);
    let missing = user.run(&["tasks", "show", "nope"]);
    assert_eq!(
        (missing.code, missing.stderr.trim()),
        (1, "error: no task named \"nope\"")
    );
    hello_id
}

/// A viewer logs in to a profile of their own with a read token: they see, and are refused
/// changes with the problem's detail.
async fn refuses_a_viewer(user: &User, server: &Server) {
    let admin = antcode_testkit::api::Api::login(server.port, PASSWORD).await;
    let (status, vera) = admin
        .post(
            "/users",
            serde_json::json!({"username": "vera", "password": "vera-password-1", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{vera}");
    let url = server.url();
    let args = [
        "login",
        "--url",
        &url,
        "-u",
        "vera",
        "--password-stdin",
        "--profile",
        "viewer",
    ];
    user.run_with(&args, &[], "vera-password-1\n").ok();
    assert_eq!(
        items(&user.json(&["tasks", "ls", "--profile", "viewer"])).len(),
        4
    );
    let forbidden = user.run(&["tasks", "pause", "hello", "--profile", "viewer"]);
    assert_eq!(forbidden.code, 1);
    assert!(
        forbidden.stderr.starts_with("error: 403 Forbidden: ")
            && forbidden.stderr.lines().count() == 1,
        "{}",
        forbidden.stderr
    );
}

/// run --follow: the log live, and the run's exit code as the command's.
fn runs_and_invokes(user: &User) {
    let followed = user.run(&["run", "exit3", "--follow"]);
    assert_eq!(followed.code, 3, "{}\n{}", followed.stdout, followed.stderr);
    assert_eq!(followed.stdout, "three\n");
    assert!(
        followed.stderr.contains("failed (exit code 3)"),
        "{}",
        followed.stderr
    );
    let ok = user.run(&["run", "hello", "-f", "--arg", "cli"]).ok();
    assert_eq!(ok.stdout, "hello, cli\n");

    // invoke: the result JSON, or the output when there is none.
    let result = user
        .run(&[
            "invoke", "greet", "--param", "who=cli", "--param", "times:=2",
        ])
        .ok();
    let result: Value = serde_json::from_str(result.stdout.trim()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"greeting": "hello, cli", "times": 2})
    );
    assert_eq!(user.run(&["invoke", "hello"]).ok().stdout, "hello, world\n");
    let invoked = user.run(&["invoke", "exit3", "--output", "json"]);
    assert_eq!(invoked.code, 3, "{}", invoked.stderr);
    let invoked = invoked.json();
    assert_eq!(
        (invoked["state"].as_str(), invoked["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    assert_eq!(invoked["output"], "three\n");
}

/// run --follow while the run's environment is built: each step on standard error (a spinner on
/// a terminal), or as `progress` events with `--output json`; never in the log itself.
fn shows_an_environment_being_built(user: &User) {
    let main = "import six\nprint(six.__name__)\n";
    for (project, requirement) in [("six-json", "six\n"), ("six-plain", "six==1.16.0\n")] {
        user.write(&format!("{project}/main.py"), main);
        user.write(&format!("{project}/requirements.txt"), requirement);
        user.json(&["projects", "push", project]);
        user.json(&["tasks", "create", project, "--project", project]);
    }
    let followed = user
        .run(&["run", "six-json", "--follow", "--output", "json"])
        .ok();
    let events: Vec<Value> = followed
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect();
    let steps: Vec<&str> = events
        .iter()
        .take_while(|e| e["event"] == "progress")
        .map(|e| e["chunk"]["data"].as_str().unwrap())
        .collect();
    assert!(
        steps
            .first()
            .is_some_and(|s| s.starts_with("building the environment: 1 requirement"))
            && steps
                .last()
                .is_some_and(|s| s.starts_with("environment ready in")),
        "{}",
        followed.stdout
    );
    let log: String = events
        .iter()
        .filter(|e| e["event"] == "log")
        .map(|e| e["chunk"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(log, "six\n", "{}", followed.stdout);
    assert_eq!(events.last().unwrap()["state"], "succeeded");
    let run_id = items(&user.json(&["runs", "ls", "--task", "six-json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(user.run(&["logs", &run_id]).ok().stdout, "six\n");

    let plain = user.run(&["run", "six-plain", "--follow"]).ok();
    assert_eq!(plain.stdout, "six\n", "{}", plain.stderr);
    assert!(
        plain
            .stderr
            .contains("antcode: building the environment: 1 requirement")
            && plain.stderr.contains("antcode: environment ready in"),
        "{}",
        plain.stderr
    );
    // Built once: the next run of it waits on nothing.
    let again = user.run(&["run", "six-plain", "--follow"]).ok();
    assert!(!again.stderr.contains("environment"), "{}", again.stderr);
}

/// runs ls with filters, runs show, logs.
fn lists_runs_and_logs(user: &User, hello_id: &str) -> String {
    let runs = user.json(&[
        "runs",
        "ls",
        "--task",
        "hello",
        "--state",
        "succeeded",
        "--since",
        "1h",
    ]);
    assert!(items(&runs).len() >= 2, "{runs}");
    assert!(items(&runs)
        .iter()
        .all(|r| r["task_id"] == hello_id && r["state"] == "succeeded"));
    // Queued before a time, started a given way.
    let manual = user.json(&[
        "runs",
        "ls",
        "--task",
        "hello",
        "--trigger",
        "manual",
        "--until",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(
        !items(&manual).is_empty() && items(&manual).iter().all(|r| r["trigger"] == "manual"),
        "{manual}"
    );
    assert!(items(&user.json(&["runs", "ls", "--trigger", "schedule"])).is_empty());
    assert!(items(&user.json(&["runs", "ls", "--until", "1h"])).is_empty());
    assert!(items(&user.json(&["runs", "ls", "--error", "no such error"])).is_empty());
    let bad = user.run(&["runs", "ls", "--until", "soon"]);
    assert!(
        bad.code == 1 && bad.stderr.contains("--until"),
        "{}",
        bad.stderr
    );
    let table = user.run(&["runs", "ls"]).ok();
    assert!(
        table.stdout.starts_with("ID ") && table.stdout.contains("exit3"),
        "{}",
        table.stdout
    );
    let run_id = items(&runs)[0]["id"].as_str().unwrap().to_string();
    let shown = user.json(&["runs", "show", &run_id]);
    assert!(
        shown["history"].as_array().is_some_and(|h| !h.is_empty()),
        "{shown}"
    );
    assert!(user
        .run(&["runs", "show", &run_id])
        .ok()
        .stdout
        .contains("succeeded"));
    assert!(user
        .run(&["logs", &run_id])
        .ok()
        .stdout
        .starts_with("hello, "));
    let ended = user.run(&["logs", "-f", &run_id]).ok();
    assert!(ended.stdout.starts_with("hello, "), "{}", ended.stdout);
    let unknown = user.run(&["runs", "show", "00000000-0000-7000-8000-000000000000"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.starts_with("error: 404 Not Found: "),
        "{}",
        unknown.stderr
    );
    run_id
}

/// cancel and retry.
fn cancels_and_retries(user: &User, run_id: &str, hello_id: &str) {
    let started = user.json(&["run", "sleepy"]);
    let sleepy_run = started["id"].as_str().unwrap();
    let cancelled = user.json(&["cancel", sleepy_run]);
    assert!(
        cancelled["state"] == "cancelled" || cancelled["cancel_requested"] == true,
        "{cancelled}"
    );
    let retried = user.json(&["retry", run_id]);
    assert_ne!(retried["id"].as_str(), Some(run_id));
    assert_eq!(retried["task_id"], hello_id);
}

/// keys create, workers ls|drain.
fn workers_and_keys(user: &User) {
    let key = user.json(&["keys", "create", "--queue", "remote", "--label", "gpu=yes"]);
    assert!(key["key"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
    assert_eq!(key["labels"]["gpu"], "yes");
    let workers = user.json(&["workers", "ls"]);
    let worker = items(&workers)
        .first()
        .cloned()
        .expect("the embedded runner");
    let name = worker["name"].as_str().unwrap();
    assert_eq!(user.json(&["workers", "drain", name])["draining"], true);
    assert_eq!(
        user.json(&["workers", "drain", name, "--undo"])["draining"],
        false
    );
}

/// A bad token is one line that says what to do.
fn says_a_bad_token(user: &User) {
    let bad = user.run_with(
        &["tasks", "ls"],
        &[("ANTCODE_TOKEN", "act_not-a-token")],
        "",
    );
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr.trim(),
        "error: 401 Unauthorized: token expired or revoked — run antcode login"
    );
}

/// Through the edge's TLS /api: trusted with --ca; the default profile's token is not sent
/// to another URL; a profile of its own logs in there.
fn reaches_the_edge(user: &User, server: &Server) {
    let ca = server.data_dir().join("tls/ca.pem").display().to_string();
    let edge = server.edge_url();
    let untrusted = user.run(&["tasks", "ls", "--url", &edge]);
    assert!(
        untrusted.stderr.contains("cannot reach"),
        "{}",
        untrusted.stderr
    );
    let anonymous = user.run(&["tasks", "ls", "--url", &edge, "--ca", &ca]);
    assert!(
        anonymous.stderr.contains("401 Unauthorized: not logged in"),
        "{}",
        anonymous.stderr
    );
    user.login(&edge, &["--ca", &ca, "--profile", "edge"]).ok();
    let via_edge = user.json(&["tasks", "ls", "--profile", "edge"]);
    // The four of manages_tasks and the two of shows_an_environment_being_built.
    assert_eq!(items(&via_edge).len(), 6);
    let followed = user.run_with(&["run", "exit3", "-f"], &[("ANTCODE_PROFILE", "edge")], "");
    assert_eq!(
        (followed.code, followed.stdout.as_str()),
        (3, "three\n"),
        "{}",
        followed.stderr
    );
}

/// Completions for the shells people use.
fn prints_completions(user: &User) {
    for shell in ["bash", "zsh", "fish"] {
        let script = user.run(&["completions", shell]).ok();
        assert!(
            script.stdout.contains("antcode") && script.stdout.contains("invoke"),
            "{shell}"
        );
    }
}

/// `run --follow` across a restart of `up` mid-run: the stream reconnects, resumes after the
/// last chunk it printed, and the command still exits with the run's exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_survives_a_restart_of_the_server() {
    let mut server = Server::start().await;
    let user = User::new();
    user.login(&server.url(), &[]).ok();
    let slow = user.write(
        "slow.py",
        "import os, sys, time\nprint('attempt', os.environ.get('ANTCODE_ATTEMPT', '?'), flush=True)\ntime.sleep(3)\nprint('done', flush=True)\nsys.exit(3)\n",
    );
    user.json(&["projects", "push", &slow]);
    user.json(&["tasks", "create", "slow", "--project", "slow"]);

    let out_path = user.path("follow.out");
    let err_path = user.path("follow.err");
    let mut follow = user
        .command(&["run", "slow", "--follow"], &[])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read(&out_path).contains("attempt") {
        assert!(
            Instant::now() < deadline,
            "the run never printed:\n{}",
            server.procs.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.restart().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the follow never ended:\n{}\n{}",
            read(&err_path),
            server.procs.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    assert_eq!(status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    // The first attempt was interrupted by the stop (`--grace 0`); the stream goes on with the
    // next one, and nothing is printed twice.
    let order: Vec<Option<usize>> = ["attempt 1", "attempt 2", "done"]
        .iter()
        .map(|line| stdout.find(line))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0].is_some() && w[0] < w[1]),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.matches("attempt 1").count(),
        1,
        "printed twice:\n{stdout}"
    );
    assert_eq!(
        stdout.matches("done").count(),
        1,
        "printed twice:\n{stdout}"
    );
    assert!(stderr.contains("--- attempt 2 ---"), "{stderr}");
}

/// `antcode --help` lists the server commands and the client commands under headings of
/// their own.
#[test]
fn help_groups_server_and_client_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let server = help.find("Server commands:").expect(&help);
    let client = help.find("Client commands:").expect(&help);
    let at = |cmd: &str| {
        help.find(&format!("\n  {cmd} "))
            .unwrap_or_else(|| panic!("{cmd} not listed:\n{help}"))
    };
    for cmd in antcode::cli::SERVER_COMMANDS {
        assert!(
            (server..client).contains(&at(cmd)),
            "{cmd} is not a server command:\n{help}"
        );
    }
    for cmd in antcode_cli::ClientCommand::NAMES {
        assert!(at(cmd) > client, "{cmd} is not a client command:\n{help}");
    }
}

/// The packer refuses what the server would: its limits are the server's bundle limits.
#[test]
fn the_packer_checks_the_server_bundle_limits() {
    let limits = antcode_core::bundle::Limits::default();
    assert_eq!(antcode_cli::pack::MAX_ENTRIES, limits.max_entries);
    assert_eq!(
        antcode_cli::pack::MAX_UNPACKED_BYTES,
        limits.max_unpacked_bytes
    );
}
