//! Environments: requirements, `pyproject.toml` with `uv.lock`, build locks, garbage collection,
//! and build scripts that see nothing of the runner.

use crate::*;

/// The `uv.lock` of a project whose pyproject asks for any `six`, locked at 1.16.0 (made with
/// `uv lock`), so an install that ignored the lock would get a newer one.
const SIX_LOCK: &str = r#"version = 1
revision = 5
requires-python = ">=3.8"

[[package]]
name = "demo"
version = "0.1"
source = { virtual = "." }
dependencies = [
    { name = "six" },
]

[package.metadata]
requires-dist = [{ name = "six" }]

[[package]]
name = "six"
version = "1.16.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/71/39/171f1c67cd00715f190ba0b100d606d440a28c93c7714febeca8b79af85e/six-1.16.0.tar.gz", hash = "sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926", size = 34041, upload-time = "2021-05-05T14:18:18.379Z" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/six-1.16.0-py2.py3-none-any.whl", hash = "sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254", size = 11053, upload-time = "2021-05-05T14:18:17.237Z" },
]
"#;

const SIX_PYPROJECT: &str = "[project]\nname = \"demo\"\nversion = \"0.1\"\nrequires-python = \">=3.8\"\ndependencies = [\"six\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyproject_and_uv_lock_provide_the_dependencies() {
    let mut h = Harness::start(2).await;
    let main: &[u8] = b"import six\nprint('six', six.__version__)\n";
    let locked = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[
                ("main.py", main),
                ("pyproject.toml", SIX_PYPROJECT.as_bytes()),
                ("uv.lock", SIX_LOCK.as_bytes()),
            ]),
            None,
        )
        .await;
    let unlocked = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[
                ("main.py", main),
                ("pyproject.toml", SIX_PYPROJECT.as_bytes()),
            ]),
            None,
        )
        .await;
    let with_lock = job(locked.clone(), "main.py");
    h.publish(&with_lock).await;
    let outcome = h.finished(&with_lock.run_id).await;
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
    assert!(
        log.contains("six 1.16.0\n"),
        "the lock was not honoured: {log}"
    );

    let without_lock = job(unlocked, "main.py");
    h.publish(&without_lock).await;
    let outcome = h.finished(&without_lock.run_id).await;
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
    assert!(log.contains("six 1."), "{log}");
    // Two different inputs, two environments.
    assert_eq!(h.venv_builds(), 2);

    // The locked project again: its environment is reused.
    let again = job(locked, "main.py");
    h.publish(&again).await;
    let outcome = h.finished(&again.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(h.venv_builds(), 2);
    h.stop().await;
}

/// A run that finds its environment being built waits for that build, not for the last user of
/// the environment to leave: a warm zygote keeps its environment in use for as long as it lives,
/// and the runs of its project kept coming, so such a wait never ended (the warm hang of #9).
#[test]
fn a_run_waiting_for_a_build_is_not_starved_by_users_of_the_environment() {
    use antcode_runner::uv::{find_uv, Deps, Venvs};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("venvs");
    let venvs = Arc::new(Venvs::new(root.clone(), find_uv(None).unwrap()));
    let building = || {
        std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".build-"))
            })
            .unwrap_or(false)
    };
    // Each try is a new environment (nothing to install); a try only counts if the second run
    // asked while the first one's build was under way. Whether a wrong wait would hang depends
    // on which of the two gets the lock first after the build, hence several tries.
    let mut caught = 0;
    for i in 0.. {
        assert!(i < 30, "caught only {caught} builds in progress");
        let deps = Deps::Project {
            pyproject: format!(
                "[project]\nname = \"p{i}\"\nversion = \"0.1\"\ndependencies = []\n"
            ),
            lock: None,
        };
        let ensure = |deps: Deps| {
            let (venvs, (tx, rx)) = (venvs.clone(), std::sync::mpsc::channel());
            std::thread::spawn(move || tx.send(venvs.ensure(None, &deps).unwrap()));
            rx
        };
        let first = ensure(deps.clone());
        let until = Instant::now() + PATIENCE;
        while !building() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = ensure(deps);
        let caught_now = building();
        // The builder keeps its environment in use, as a zygote does.
        let in_use = first.recv_timeout(PATIENCE).expect("the build ended");
        assert!(in_use.built);
        let got = second
            .recv_timeout(PATIENCE)
            .expect("the waiting run got the environment while the builder still used it");
        assert_eq!(got.dir, in_use.dir);
        assert!(!got.built, "built once");
        caught += usize::from(caught_now);
        if caught == 5 {
            break;
        }
    }
}

/// Each step of a build is told as it happens (what a followed run shows while it waits): the
/// wait for another run's build, the build, the environment ready. A cache hit tells nothing.
#[test]
fn a_build_tells_each_step() {
    use antcode_runner::uv::{env_key, find_uv, Deps, Venvs};
    use fs4::fs_std::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("venvs");
    std::fs::create_dir_all(&root).unwrap();
    let venvs = Arc::new(Venvs::new(root.clone(), find_uv(None).unwrap()));
    // A bare interpreter: a build that needs no index.
    let deps = Deps::Requirements(String::new());
    let lock = root.join(format!("{}.build", env_key(None, &deps)));
    let held = std::fs::File::create(&lock).unwrap();
    held.lock_exclusive().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let builder = {
        let (venvs, deps) = (venvs.clone(), deps.clone());
        std::thread::spawn(move || {
            let report = move |step: String| drop(tx.send(step));
            venvs.ensure_reporting(None, &deps, &report).unwrap()
        })
    };
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap(),
        "waiting for another run building this environment"
    );
    FileExt::unlock(&held).unwrap();
    drop(held);
    let venv = builder.join().unwrap();
    assert!(venv.built);
    let steps: Vec<String> = rx.iter().collect();
    assert!(
        steps.len() == 2
            && steps[0]
                == "building the environment: no requirements, Python 3 (the runner's default)"
            && steps[1].starts_with("environment ready in "),
        "{steps:?}"
    );
    // In use here, then only on disk: neither is waited for.
    for held in [Some(venv), None] {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let report = move |step: String| drop(tx.send(step));
        venvs.ensure_reporting(None, &deps, &report).unwrap();
        assert_eq!(rx.try_iter().next(), None);
        drop(held);
    }
}

/// Collects until `want` environments are gone (or 50 tries), returning what was removed. A
/// process that another test starts holds a copy of every open lock from its fork to its exec,
/// and the collector rightly reads a lock held for that moment as "in use" and skips it.
fn collect_until(venvs: &antcode_runner::uv::Venvs, want: usize) -> Vec<String> {
    let mut removed = Vec::new();
    for _ in 0..50 {
        removed.extend(venvs.collect_garbage().unwrap().removed);
        if removed.len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    removed
}

#[test]
fn venv_gc_removes_least_recently_used_but_never_one_in_use() {
    use antcode_runner::uv::{find_uv, Deps, GcPolicy, Venvs};
    let dir = tempfile::tempdir().unwrap();
    let uv = find_uv(None).unwrap();
    let root = dir.path().join("venvs");
    // A generous policy while building, so nothing is collected yet.
    let roomy = Venvs::with_gc(root.clone(), uv.clone(), GcPolicy::default());
    // Three environments with distinct keys and nothing to install (a pyproject without
    // dependencies), so the test needs no index.
    let deps = |i: usize| Deps::Project {
        pyproject: format!("[project]\nname = \"p{i}\"\nversion = \"0.1\"\ndependencies = []\n"),
        lock: None,
    };
    let mut keys = Vec::new();
    for i in 0..3 {
        let v = roomy.ensure(None, &deps(i)).unwrap();
        assert!(v.built);
        keys.push(v.dir.file_name().unwrap().to_string_lossy().into_owned());
        // mtimes must differ for the LRU order to be meaningful.
        std::thread::sleep(Duration::from_millis(20));
    }
    // Use the first again: now the second is the least recently used.
    let first_in_use = roomy.ensure(None, &deps(0)).unwrap();
    assert!(!first_in_use.built);

    let tight = Venvs::with_gc(
        root.clone(),
        uv.clone(),
        GcPolicy {
            max_count: 1,
            max_bytes: u64::MAX,
        },
    );
    let removed = collect_until(&tight, 2);
    // One may stay: the most recently used (the first, also in use); the others go.
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed.contains(&keys[1]) && removed.contains(&keys[2]));
    assert!(root.join(&keys[0]).is_dir());
    assert!(!root.join(&keys[1]).exists() && !root.join(&keys[2]).exists());

    // With a zero budget everything unused goes, but an environment in use never does.
    let none = Venvs::with_gc(
        root.clone(),
        uv,
        GcPolicy {
            max_count: 0,
            max_bytes: 0,
        },
    );
    let report = none.collect_garbage().unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.kept, 1);
    assert!(first_in_use.python.exists());
    drop(first_in_use);
    assert_eq!(collect_until(&none, 1), vec![keys[0].clone()]);
    assert!(!root.join(&keys[0]).exists());
    // Collected environments come back on demand.
    let rebuilt = roomy.ensure(None, &deps(0)).unwrap();
    assert!(rebuilt.built && rebuilt.python.exists());
    let leftovers: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".trash-") || n.starts_with(".build-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_collects_venvs_after_a_build() {
    let mut h = Harness::start_with(1, |c| {
        c.venv_gc.max_count = 1;
    })
    .await;
    let a = h
        .put_bundle(
            BundleFormat::Py,
            b"import six\nprint('a')\n".to_vec(),
            Some("main.py"),
        )
        .await;
    let mut first = job(a.clone(), "main.py");
    first.requirements = "six".into();
    h.publish(&first).await;
    assert_eq!(h.finished(&first.run_id).await.state, RunState::Succeeded);
    let b = h.py_job("print('b')\n").await;
    h.publish(&b).await;
    assert_eq!(h.finished(&b.run_id).await.state, RunState::Succeeded);
    let venvs: Vec<_> = std::fs::read_dir(h.data_dir.join("venvs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(venvs.len(), 1, "{venvs:?}");
    assert_eq!(h.venv_builds(), 2);
    // The first project's environment was collected, so it is built again.
    let mut again = job(a, "main.py");
    again.requirements = "six".into();
    h.publish(&again).await;
    assert_eq!(h.finished(&again.run_id).await.state, RunState::Succeeded);
    assert_eq!(h.venv_builds(), 3);
    h.stop().await;
}

/// Serves the files of `dir` over HTTP/1.0 on loopback, one request per connection, for as
/// long as the test runs; the base URL.
fn serve_files(dir: std::path::PathBuf) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let file = dir.join(path.trim_start_matches('/'));
                let (head, body) = match std::fs::read(&file) {
                    Ok(body) => ("200 OK", body),
                    Err(_) => ("404 Not Found", Vec::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.0 {head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    base
}

/// A source distribution holding one file, as uv reads them (GNU headers, uid and gid set).
fn sdist(path: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, path, data).unwrap();
    antcode_testkit::fixtures::gzip(&b.into_inner().unwrap())
}

/// What a requirement's `setup.py` tries while it is built: each attempt is recorded in a
/// module it installs, which the run then prints.
const SETUP_PY: &str = r#"
import json, os, signal
from setuptools import setup
got = {}
def attempt(name, f):
    try:
        got[name] = "ok " + repr(f())[:200]
    except Exception as e:
        got[name] = "refused " + type(e).__name__
runner = int("RUNNER")
attempt("runner variables", lambda: [k for k in os.environ if k.startswith("ANTCODE_")] or 1 / 0)
attempt("read the runner's file", lambda: open(os.path.join("DATA", "runner-secret")).read())
attempt("write the bundle cache", lambda: open(os.path.join("DATA", "bundles", "x.py"), "a").write("x"))
attempt("read the runner's environ", lambda: open(f"/proc/{runner}/environ", "rb").read())
attempt("signal the runner", lambda: os.kill(runner, 0))
open("leakcheck_result.py", "w").write("RESULTS = " + repr(json.dumps(got)) + "\n")
setup(name="leakcheck", version="0.1", py_modules=["leakcheck_result"])
"#;

/// A requirement built from source runs its `setup.py` in the sandbox: it sees none of the
/// runner's variables, files or processes (it could before: the build ran as the runner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requirements_build_script_reaches_nothing_of_the_runner() {
    // A variable of the runner's own, as the admin password or a database URL would be.
    std::env::set_var("ANTCODE_TEST_RUNNER_SECRET", "hunter2");
    let mut h = Harness::start(2).await;
    std::fs::create_dir_all(&h.data_dir).unwrap();
    std::fs::write(h.data_dir.join("runner-secret"), "hunter2").unwrap();
    let setup_py = SETUP_PY
        .replace("DATA", &h.data_dir.display().to_string())
        .replace("RUNNER", &std::process::id().to_string());
    let index = h.dir.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    std::fs::write(
        index.join("leakcheck-0.1.tar.gz"),
        sdist("leakcheck-0.1/setup.py", setup_py.as_bytes()),
    )
    .unwrap();
    let base = serve_files(index);
    let mut job = h
        .py_job("import leakcheck_result\nprint(leakcheck_result.RESULTS)\n")
        .await;
    job.requirements = format!("leakcheck @ {base}/leakcheck-0.1.tar.gz\n");
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
    let got: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(log.lines().last().unwrap_or_default()).expect(&log);
    assert_eq!(got.len(), 5, "{got:?}");
    for (what, result) in &got {
        assert!(
            result.as_str().unwrap_or_default().starts_with("refused"),
            "a build script could {what}: {result}"
        );
    }
    assert!(h.data_dir.join("runner-secret").exists());
    assert!(!h.data_dir.join("bundles/x.py").exists());
    h.stop().await;
}
