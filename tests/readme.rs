//! The README's shell walkthroughs, run as written: the quick start (`up`, then the walkthrough
//! with curl and with the `antcode` client),
//! gateway runner enrollment against that `up`, and the split deployment on PostgreSQL + Redis +
//! the S3 test server followed by the same walkthrough.
//!
//! Each block is the fenced `sh` block after a `<!-- readme-test: NAME -->` marker. Only
//! hosts, ports and credentials are substituted (listed per test), every process starts in a
//! fresh directory with the README's relative defaults, and `antcode` is this build's binary on
//! `PATH`. A line ending in `# → TEXT` promises TEXT in the output; the promises must appear in
//! order. `cargo run --release --` and `cargo install` stand for this build's binary: a release
//! build would take the suite's whole time budget.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use antcode_testkit::db::fresh_postgres;
use antcode_testkit::procs::{free_port, readyz};
use antcode_testkit::s3::s3_bucket;

const BIN: &str = env!("CARGO_BIN_EXE_antcode");

const README: &str = include_str!("../README.md");
/// How long one walkthrough may take (the first run of a project builds its environment).
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// The `sh` block after `<!-- readme-test: NAME -->`.
fn block(name: &str) -> String {
    let marker = format!("<!-- readme-test: {name} -->");
    let after = README
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .unwrap_or_else(|| panic!("{marker} is not followed by a ```sh block"));
    body[..body.find("\n```").expect("unclosed block") + 1].to_string()
}

/// The outputs a block promises (`# → TEXT`), in order.
fn promises(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.split_once("# → ").map(|(_, p)| p.trim().to_string()))
        .collect()
}

/// `text` with every `(from, to)` replaced; each `from` must occur, so a README edit that drops
/// a substituted value fails here instead of running against a real host.
fn substitute(text: &str, pairs: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "README block no longer contains {from:?}"
        );
        out = out.replace(from, to);
    }
    out
}

/// The client's config dir (`XDG_CONFIG_HOME`) inside `dir`, so a walkthrough's `antcode login`
/// writes there and never to the user's own.
fn config_home(dir: &Path) -> (&'static str, String) {
    ("XDG_CONFIG_HOME", dir.join("config").display().to_string())
}

/// A directory holding `antcode` (this build), to put first on `PATH`.
fn bin_dir(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("antcode")).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A process group: the script and whatever it left in the background, killed together.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// Runs `script` with bash (`set -euo pipefail`) in `dir` with `env`; its output (stdout and
/// stderr, with the background processes' logs) and the group to kill when done with it.
fn run_script(dir: &Path, env: &[(&str, String)], script: &str) -> (bool, String, Group) {
    use std::os::unix::process::CommandExt;
    let path = dir.join("walkthrough.sh");
    std::fs::write(&path, format!("set -euo pipefail\n{script}")).unwrap();
    let out = dir.join("walkthrough.out");
    let log = std::fs::File::create(&out).unwrap();
    let mut child = Command::new("bash")
        .arg(&path)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("bash");
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (ok, std::fs::read_to_string(&out).unwrap(), Group(child))
}

/// Panics unless the script succeeded and printed every promise in order.
fn assert_promises_kept(ok: bool, output: &str, script: &str, context: &str) {
    assert!(ok, "the walkthrough failed:\n{output}\n{context}");
    let mut rest = output;
    for p in promises(script) {
        let at = rest.find(&p).unwrap_or_else(|| {
            panic!("the README promises {p:?}, not printed in order:\n{output}\n{context}")
        });
        rest = &rest[at + p.len()..];
    }
}

async fn wait_ready(port: u16, what: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while readyz(port).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "{what} never got ready:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The quick start exactly as the README shows it: `up` with its relative default data dir, the
/// walkthrough, its concurrency limits, webhooks and dependencies, then a gateway runner (relative data dir and `--ca`) enrolled with a key and
/// running a task of its queue. Substituted: the API and edge ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_walkthrough_and_gateway_runner_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (port, edge_port) = (free_port(), free_port());

    let two = block("two-commands");
    let up_line = two.lines().next().unwrap();
    let args = up_line
        .split('#')
        .next()
        .unwrap()
        .trim()
        .strip_prefix("cargo run --release -- ")
        .expect("the first command is `cargo run --release -- …`");
    let (mut up, up_log) = spawn_up(dir.path(), args, port, edge_port);
    let up_text = || std::fs::read_to_string(&up_log).unwrap_or_default();
    wait_ready(port, "up", &up_text).await;

    let script = substitute(
        &format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            block("walkthrough"),
            block("walkthrough-cli"),
            block("concurrency"),
            block("hooks"),
            block("flow"),
            block("alerts"),
            block("gateway"),
            block("backup")
        ),
        &[
            ("127.0.0.1:8000", format!("127.0.0.1:{port}")),
            ("EDGE_HOST:50051", format!("127.0.0.1:{edge_port}")),
        ],
    );
    let env = [
        ("PATH", bin_dir(dir.path())),
        ("ANTCODE_OPS_LISTEN", "127.0.0.1:0".into()),
        config_home(dir.path()),
    ];
    let (ok, output, _group) = run_script(dir.path(), &env, &script);
    assert_promises_kept(ok, &output, &script, &up_text());

    let text = up_text();
    assert!(text.contains("AntCode is up."), "{text}");
    assert!(
        dir.path().join("antcode-data/antcode.db").exists(),
        "state is not in ./antcode-data"
    );
    assert!(
        text.contains("resolved to"),
        "the relative data dir was not logged as resolved:\n{text}"
    );
    assert!(
        !text.contains('\x1b') && !output.contains('\x1b'),
        "colour codes in logs written to a file:\n{text}"
    );
    assert!(
        dir.path().join("antcode-runner").is_dir(),
        "the gateway runner did not use its relative default data dir"
    );
    // The backup of the live instance restored: a data dir `up` can start from.
    assert!(dir.path().join("antcode-restored/antcode.db").is_file());
    assert!(dir.path().join("antcode-restored/secret.key").is_file());
    let _ = up.kill();
    let _ = up.wait();
}

/// `antcode ARGS` (an `up`) in `dir` on these ports, its output in `dir/up.log`.
fn spawn_up(dir: &Path, args: &str, port: u16, edge_port: u16) -> (Child, std::path::PathBuf) {
    let up_log = dir.join("up.log");
    let log = std::fs::File::create(&up_log).unwrap();
    let up = Command::new(BIN)
        .args(args.split_whitespace())
        .current_dir(dir)
        .env("ANTCODE_LISTEN", format!("127.0.0.1:{port}"))
        .env("ANTCODE_EDGE_LISTEN", format!("127.0.0.1:{edge_port}"))
        .env_remove("ANTCODE_ADMIN_PASSWORD")
        .env_remove("NO_COLOR")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    (up, up_log)
}

/// Projects from Git as the README shows them: `up` started as that section says, a repository
/// served by `git daemon`, a project following it, a pushed change synced by hand and by the
/// push webhook. Substituted: the API, edge and git daemon ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_projects_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (port, edge_port, git_port) = (free_port(), free_port(), free_port());
    let start = "start `up` with\n`cargo run --release -- up --git-allow-private`";
    let line = README
        .split_once("start `up` with\n`cargo run --release -- ")
        .unwrap_or_else(|| panic!("README.md no longer says {start:?}"))
        .1;
    let args = &line[..line.find('`').unwrap()];
    assert_eq!(args, "up --git-allow-private");
    let (mut up, up_log) = spawn_up(dir.path(), args, port, edge_port);
    let up_text = || std::fs::read_to_string(&up_log).unwrap_or_default();
    wait_ready(port, "up", &up_text).await;
    let script = substitute(
        &format!("{}\n{}", block("walkthrough"), block("git")),
        &[
            ("127.0.0.1:8000", format!("127.0.0.1:{port}")),
            ("127.0.0.1:9418", format!("127.0.0.1:{git_port}")),
            ("--port=9418", format!("--port={git_port}")),
        ],
    );
    let env = [("PATH", bin_dir(dir.path()))];
    let (ok, output, _group) = run_script(dir.path(), &env, &script);
    assert_promises_kept(ok, &output, &script, &up_text());
    let _ = up.kill();
    let _ = up.wait();
}

/// The split deployment exactly as the README shows it (control, scheduler and a runner with
/// its relative default data dir and none of the other planes' credentials), then the
/// walkthrough against it, with curl and with the client. Substituted: the database, Redis and S3 addresses and control's port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_walkthrough_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (endpoint, bucket) = s3_bucket("readme").await;

    let split = block("split");
    let install = split.lines().next().unwrap();
    assert!(
        install.starts_with("cargo install --locked --path ."),
        "{install}"
    );
    let split = split.replacen(install, "", 1);
    let host = endpoint.trim_start_matches("http://").to_string();
    let script = substitute(
        &format!(
            "{split}\nuntil curl -sf http://127.0.0.1:{port}/readyz >/dev/null; do sleep 0.2; done\n{}\n{}",
            block("walkthrough"),
            block("walkthrough-cli")
        ),
        &[
            (
                "postgres://antcode:secret@db.internal/antcode",
                fresh_postgres().await,
            ),
            (
                "redis://:secret@redis.internal:6379/0",
                format!("redis://127.0.0.1:6379/0?prefix=readme-{}", std::process::id()),
            ),
            ("s3://antcode", format!("s3://{bucket}")),
            ("minio.internal:9000", host),
            ("127.0.0.1:8000", format!("127.0.0.1:{port}")),
        ],
    );
    let env = [
        ("PATH", bin_dir(dir.path())),
        ("ANTCODE_LISTEN", format!("127.0.0.1:{port}")),
        ("ANTCODE_OPS_LISTEN", "127.0.0.1:0".into()),
        config_home(dir.path()),
    ];
    let (ok, output, _group) = run_script(dir.path(), &env, &script);
    assert_promises_kept(ok, &output, &script, "");
    assert!(
        dir.path().join("antcode-runner").is_dir(),
        "the runner did not use its relative default data dir"
    );
}

/// The alert rules' checks as the README shows them, in a directory linking the repository's
/// `ops/` (`promtool` is Debian's `prometheus`; `./ops/test.sh` installs it). A rule that no
/// longer parses, or a unit test of it that fails, fails here.
#[test]
fn alert_rule_checks_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(root.join("ops"), dir.path().join("ops")).unwrap();
    let script = block("alert-rules");
    let (ok, output, _group) = run_script(dir.path(), &[], &script);
    assert_promises_kept(ok, &output, &script, "");
}

#[test]
fn every_marked_block_has_promises_or_commands() {
    for name in [
        "two-commands",
        "walkthrough",
        "walkthrough-cli",
        "git",
        "concurrency",
        "hooks",
        "flow",
        "alerts",
        "split",
        "gateway",
        "backup",
        "alert-rules",
    ] {
        assert!(!block(name).trim().is_empty(), "{name}");
    }
    assert_eq!(
        promises(&block("walkthrough")),
        ["succeeded", "hello, world", "hello, world"]
    );
    // The client's walkthrough shows the same steps and ends the same way.
    assert_eq!(
        promises(&block("walkthrough-cli")),
        [
            "created project hello-cli",
            "hello, world",
            "succeeded",
            "hello, cli",
            "hello, world"
        ]
    );
}
