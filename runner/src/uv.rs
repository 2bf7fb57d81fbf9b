//! uv: finding it, and the virtualenvs built with it.
//!
//! A virtualenv is keyed by `sha256(python_version + normalized requirements)` and lives in
//! `data_dir/venvs/<key>`. It is built once under an exclusive build lock (so concurrent runs of
//! one project, even from several runner processes sharing the directory, never build twice)
//! into `venvs/.build-<key>` and renamed into place only when complete, so a crash never leaves
//! a half-built environment that a later run would trust. Builds are `--relocatable` so the rename
//! does not break console-script shebangs. Every user of an environment holds a second lock
//! shared ("in use"), which the collector must get exclusively, without waiting, to remove it.
//!
//! uv runs with a cleared environment ([`uv_may_see`]): a requirement's build script
//! (`setup.py`) is task code, and sees none of the runner's variables (credentials, the
//! platform's URLs, the admin password in `up`). With the sandbox on, requirements are first
//! installed from wheels only (`--no-build`: installing a wheel runs none of its code); what
//! must be built from source is built in the sandbox, as the task's user, with the environment
//! being built as its one writable directory and a uv cache of its own ([`Venvs::sandboxed`]).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::lock;
use crate::process::Limits;
use crate::sandbox::{RunSpec, Sandbox};

/// How to invoke uv: a binary, or `python3 -m uv`.
#[derive(Debug, Clone)]
pub struct Uv {
    program: OsString,
    prefix: Vec<OsString>,
}

/// Whether the runner's variable `name` reaches uv (and so every build script of a requirement,
/// which is task code): what uv needs to find interpreters, its cache, an index, a proxy and
/// certificates; nothing of the runner's own (`ANTCODE_*`, credentials, URLs of the platform).
pub fn uv_may_see(name: &str) -> bool {
    const KEEP: &[&str] = &[
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "USER",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
    ];
    KEEP.contains(&name) || name.starts_with("UV_") || name.starts_with("PYENV_")
}

impl Uv {
    /// uv with a cleared environment plus the few variables [`uv_may_see`] lets through.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix)
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(uv_may_see)));
        cmd
    }

    /// The Pythons (`major.minor`, CPython) uv finds installed on this host, which is what
    /// `python_version` may name on this runner; empty when uv cannot tell.
    pub fn pythons(&self) -> Vec<String> {
        let out = self
            .command()
            .args([
                "python",
                "list",
                "--only-installed",
                "--no-python-downloads",
                "--output-format",
                "json",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let listed: Vec<serde_json::Value> = match out {
            Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).unwrap_or_default(),
            _ => vec![],
        };
        let mut versions: Vec<String> = listed
            .iter()
            .filter(|p| p["implementation"].as_str().unwrap_or("cpython") == "cpython")
            .filter_map(|p| p["version"].as_str())
            .filter_map(|v| {
                let mut parts = v.split('.');
                Some(format!("{}.{}", parts.next()?, parts.next()?))
            })
            .collect();
        versions.sort();
        versions.dedup();
        versions
    }

    pub fn describe(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for p in &self.prefix {
            s.push(' ');
            s.push_str(&p.to_string_lossy());
        }
        s
    }

    /// The uv executable itself, for a sandbox to bind: the program when it is one (not a
    /// shell shim such as pyenv's), else the binary the `uv` Python package points to.
    pub fn executable(&self) -> Option<PathBuf> {
        let is_elf = |p: &Path| {
            let mut magic = [0u8; 4];
            File::open(p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok_and(|()| magic == *b"\x7fELF")
        };
        if self.prefix.is_empty() {
            let program = Path::new(&self.program).canonicalize().ok()?;
            if is_elf(&program) {
                return Some(program);
            }
        }
        let out = Command::new("python3")
            .args(["-c", "import uv; print(uv.find_uv_bin())"])
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(uv_may_see)))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let found = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim())
            .canonicalize()
            .ok()?;
        is_elf(&found).then_some(found)
    }

    fn works(&self) -> bool {
        self.command()
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

pub const UV_MISSING: &str =
    "uv is required to run Python tasks and was not found or could not be installed: install it with `pip install uv` and make sure `uv` is on PATH";

/// Finds uv: `explicit`, then `uv` on PATH, then `~/.local/bin/uv`, then `python3 -m uv`. If
/// none works, tries `python3 -m pip install --user uv` once and looks again. Blocking.
pub fn find_uv(explicit: Option<&Path>) -> Result<Uv, UvMissing> {
    if let Some(path) = explicit {
        let uv = Uv {
            program: path.as_os_str().to_owned(),
            prefix: vec![],
        };
        return if uv.works() {
            Ok(uv)
        } else {
            Err(UvMissing(format!(
                "the configured uv binary {} does not run: {UV_MISSING}",
                path.display()
            )))
        };
    }
    if let Some(uv) = discover() {
        return Ok(uv);
    }
    tracing::warn!("uv not found; trying `python3 -m pip install --user uv`");
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "--user", "--quiet", "uv"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    discover().ok_or_else(|| UvMissing(UV_MISSING.to_string()))
}

/// No working uv was found: what was tried and how to install it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UvMissing(String);

fn discover() -> Option<Uv> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("uv")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/bin/uv"));
    }
    for c in candidates {
        if c.is_file() {
            let uv = Uv {
                program: c.into_os_string(),
                prefix: vec![],
            };
            if uv.works() {
                return Some(uv);
            }
        }
    }
    let module = Uv {
        program: "python3".into(),
        prefix: vec!["-m".into(), "uv".into()],
    };
    module.works().then_some(module)
}

/// Builds requirements from source in the runner's sandbox.
#[derive(Clone)]
struct Builder {
    sandbox: Arc<Sandbox>,
    /// How uv was found, to find its executable on the first build from source.
    found: Uv,
    /// uv's executable, bound into the sandbox; `None` when only a shim was found. Looked up
    /// once, when first needed (it may ask Python), not at every runner's start.
    uv: std::sync::OnceLock<Option<PathBuf>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("uv", &self.uv).finish()
    }
}

/// What a sandboxed build may write to `/tmp` (its temporary files go to the environment's
/// directory instead, on disk).
const BUILD_TMP_BYTES: u64 = 64 << 20;

impl Builder {
    /// `uv pip install -r req_file` into the environment `env` (being built), in the sandbox:
    /// `env` is the one writable directory, handed to the task's user for the build and taken
    /// back after it; uv's cache and temporary files live in it and go with the build.
    fn install(&self, env: &Path, req_file: &Path) -> Result<(), VenvError> {
        let Some(uv) = self.uv.get_or_init(|| self.found.executable()) else {
            return Err(VenvError::Install(
                "these requirements must be built from source, and only a shim of uv was found, which the sandbox cannot run; install uv with pip".into(),
            ));
        };
        let (cache, scratch) = (env.join(".antcode-uv-cache"), env.join(".antcode-tmp"));
        std::fs::create_dir_all(&cache)?;
        std::fs::create_dir_all(&scratch)?;
        self.sandbox.hand_over(env)?;
        let mut vars: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| uv_may_see(k) && !k.starts_with("XDG_") && k != "HOME")
            .collect();
        vars.insert("HOME".into(), env.display().to_string());
        vars.insert("TMPDIR".into(), scratch.display().to_string());
        vars.insert("UV_CACHE_DIR".into(), cache.display().to_string());
        vars.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        let args: Vec<String> = ["pip", "install", "--quiet", "--python"]
            .into_iter()
            .map(String::from)
            .chain([
                env.join("bin/python").display().to_string(),
                "-r".into(),
                req_file.display().to_string(),
            ])
            .collect();
        let ran = self.sandbox.run_to_end(&RunSpec {
            program: uv,
            args: &args,
            cwd: env,
            env: &vars,
            limits: &Limits::default(),
            venv: env,
            work_dir: env,
            tmp_bytes: BUILD_TMP_BYTES,
            net: Default::default(),
            before_start: None,
            tool: Some(uv),
        });
        let _ = std::fs::remove_dir_all(&cache);
        let _ = std::fs::remove_dir_all(&scratch);
        self.sandbox.take_back(env)?;
        let (ended, stderr) = ran?;
        match ended.code {
            Some(0) => Ok(()),
            _ => Err(VenvError::Install(last_line(&stderr))),
        }
    }
}

/// Requirement lines without comments, blanks or surrounding space, sorted and deduplicated, so
/// cosmetic differences share one environment.
pub fn normalize_requirements(requirements: &str) -> String {
    let mut lines: Vec<&str> = requirements
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// What a project's environment is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deps {
    /// `requirements.txt` text (empty: a bare interpreter).
    Requirements(String),
    /// A PEP 621 `pyproject.toml` (its `[project] dependencies` are installed, not the project
    /// itself) and, if the bundle has one, the `uv.lock` that pins them exactly.
    Project {
        pyproject: String,
        lock: Option<String>,
    },
}

impl Deps {
    pub fn is_empty(&self) -> bool {
        matches!(self, Deps::Requirements(r) if normalize_requirements(r).is_empty())
    }

    /// What the environment is built from, for a person waiting on it.
    pub fn describe(&self) -> String {
        match self {
            Deps::Requirements(r) => match normalize_requirements(r).lines().count() {
                0 => "no requirements".into(),
                1 => "1 requirement".into(),
                n => format!("{n} requirements"),
            },
            Deps::Project { lock: Some(_), .. } => "pyproject.toml and uv.lock".into(),
            Deps::Project { lock: None, .. } => "pyproject.toml".into(),
        }
    }
}

/// Told each step of an environment build as it happens, in words for a person (a run's live
/// log shows them while the run waits).
pub type Report<'a> = &'a (dyn Fn(String) + Sync);

/// The environment's key: `sha256` of the Python version and what the dependencies come from
/// (normalized requirements, or the exact bytes of `pyproject.toml` and `uv.lock`).
pub fn env_key(python_version: Option<&str>, deps: &Deps) -> String {
    let mut h = Sha256::new();
    h.update(python_version.unwrap_or("").trim().as_bytes());
    h.update(b"\n");
    match deps {
        Deps::Requirements(r) => h.update(normalize_requirements(r).as_bytes()),
        Deps::Project { pyproject, lock } => {
            // Length-prefixed, so no pair of files can collide with another pair or with a
            // requirements text.
            h.update(b"\0pyproject\0");
            h.update((pyproject.len() as u64).to_le_bytes());
            h.update(pyproject.as_bytes());
            if let Some(lock) = lock {
                h.update(b"\0uv.lock\0");
                h.update((lock.len() as u64).to_le_bytes());
                h.update(lock.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    #[error("python {0} is not available on this runner: {1}")]
    Interpreter(String, String),
    #[error("installing requirements failed: {0}")]
    Install(String),
    #[error("uv.lock could not be exported: {0}")]
    Lock(String),
    #[error("virtualenv directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A ready virtualenv. While any clone of it is alive, the environment holds a shared lock and
/// garbage collection leaves it alone (in this process and in any other sharing the directory).
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
    pub python: PathBuf,
    /// True when this call built it, false on a cache hit.
    pub built: bool,
    _in_use: Arc<File>,
}

/// Bounds for [`Venvs::collect_garbage`]: least recently used environments are removed until at
/// most `max_count` remain and they take at most `max_bytes`. Environments in use are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    pub max_count: usize,
    pub max_bytes: u64,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            max_count: 64,
            max_bytes: 20 * 1024 * 1024 * 1024,
        }
    }
}

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Keys of the environments removed.
    pub removed: Vec<String>,
    /// Environments left, and their total size.
    pub kept: usize,
    pub kept_bytes: u64,
}

pub struct Venvs {
    root: PathBuf,
    uv: Uv,
    /// With the sandbox on, builds from source run in it (see [`Venvs::sandboxed`]).
    builder: Option<Builder>,
    gc: GcPolicy,
    /// One collection at a time in this process (others are excluded by the file locks).
    collecting: Mutex<()>,
    /// Environments this process holds in use, by key (see [`Venvs::already_in_use`]).
    in_use: Mutex<HashMap<String, InUse>>,
}

/// One environment's "in use" lock as this process holds it: shared by every [`Venv`] of it.
struct InUse {
    lock: Weak<File>,
    /// When its ready marker was last touched (the collector's least-recently-used order).
    touched: Instant,
}

/// How often an environment held in use all along has its ready marker touched: the collector
/// never takes one in use, so the marker only orders it once it is idle.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

const READY: &str = ".antcode-ready";
/// The environment's size in bytes, measured once when it is built.
const SIZE: &str = ".antcode-size";

impl Venvs {
    pub fn new(root: PathBuf, uv: Uv) -> Venvs {
        Venvs::with_gc(root, uv, GcPolicy::default())
    }

    /// Requirements that need building from source (a `setup.py` is task code) are built in
    /// `sandbox`, with the network, the environment being built, a private uv cache and
    /// nothing of the runner; everything installable from wheels alone is installed without
    /// one, since installing a wheel runs no code of it. Without uv's own executable (a shim
    /// that cannot be bound) such requirements fail rather than build unconfined.
    pub fn sandboxed(mut self, sandbox: Option<Arc<Sandbox>>) -> Venvs {
        self.builder = sandbox.map(|sandbox| Builder {
            found: self.uv.clone(),
            uv: std::sync::OnceLock::new(),
            sandbox,
        });
        self
    }

    pub fn with_gc(root: PathBuf, uv: Uv, gc: GcPolicy) -> Venvs {
        Venvs {
            root,
            uv,
            builder: None,
            gc,
            collecting: Mutex::new(()),
            in_use: Mutex::default(),
        }
    }

    /// The "in use" lock: every holder of a [`Venv`] holds it shared; only the collector takes
    /// it exclusively, and never waits for it. Nobody ever blocks on it exclusively: flock lets
    /// new shared holders in ahead of a waiting exclusive one, and a warm zygote holds its
    /// environment for as long as it lives, so such a waiter could wait for ever.
    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}.lock"))
    }

    /// The build lock: held exclusively (waited for) only while building, so a run that finds
    /// the environment missing waits for the build in progress, which always ends.
    fn build_lock_path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}.build"))
    }

    /// Returns the environment for these dependencies, building it if needed, and holds it
    /// in use until the returned [`Venv`] (and its clones) are dropped. Blocking: call it from
    /// `spawn_blocking`.
    pub fn ensure(&self, python_version: Option<&str>, deps: &Deps) -> Result<Venv, VenvError> {
        self.ensure_reporting(python_version, deps, &|_| {})
    }

    /// [`Venvs::ensure`], telling `report` when the environment has to be waited for or built,
    /// each step of a build, and when it is ready. A cache hit reports nothing.
    pub fn ensure_reporting(
        &self,
        python_version: Option<&str>,
        deps: &Deps,
        report: Report,
    ) -> Result<Venv, VenvError> {
        let key = env_key(python_version, deps);
        if let Some(venv) = self.already_in_use(&key) {
            return Ok(venv);
        }
        std::fs::create_dir_all(&self.root)?;
        let dir = self.root.join(&key);
        let lock_path = self.lock_path(&key);
        let ready = |dir: &Path| dir.join(READY).is_file() && dir.join("bin/python").exists();
        let mut built = false;
        loop {
            if ready(&dir) {
                // Shared: many runs use it at once; only a collector removing it excludes us.
                let guard = lock_file(&lock_path, Mode::Shared)?
                    .ok_or_else(|| std::io::Error::other("shared lock not granted"))?;
                if !ready(&dir) {
                    continue; // collected between the check and the lock: build it again
                }
                touch(&dir.join(READY));
                if built {
                    // Our own build is in use now, so collecting cannot take it.
                    if let Err(e) = self.collect_garbage() {
                        tracing::warn!(error = %e, "virtualenv garbage collection failed");
                    }
                } else {
                    metrics::counter!("antcode_runner_venv_cache_hits_total").increment(1);
                }
                let guard = Arc::new(guard);
                let held = InUse {
                    lock: Arc::downgrade(&guard),
                    touched: Instant::now(),
                };
                let mut in_use = lock(&self.in_use);
                // Environments no run holds any more are forgotten here, so the map stays as
                // small as what is in use.
                in_use.retain(|_, h| h.lock.strong_count() > 0);
                in_use.insert(key, held);
                drop(in_use);
                return Ok(Venv {
                    dir: dir.clone(),
                    python: dir.join("bin/python"),
                    built,
                    _in_use: guard,
                });
            }
            let waited = Instant::now();
            let building = match lock_file(&self.build_lock_path(&key), Mode::TryExclusive)? {
                Some(lock) => lock,
                None => {
                    report("waiting for another run building this environment".into());
                    lock_file(&self.build_lock_path(&key), Mode::Exclusive)?
                        .ok_or_else(|| std::io::Error::other("exclusive lock not granted"))?
                }
            };
            // Someone may have finished the build while we waited for the lock.
            if ready(&dir) {
                report(format!(
                    "environment ready after {}",
                    seconds(waited.elapsed())
                ));
                continue;
            }
            let python = python_version.map(str::trim).filter(|v| !v.is_empty());
            report(format!(
                "building the environment: {}, Python {}",
                deps.describe(),
                python.unwrap_or("3 (the runner's default)")
            ));
            self.build_locked(&key, &dir, python_version, deps, report)?;
            report(format!(
                "environment ready in {}",
                seconds(waited.elapsed())
            ));
            built = true;
            // The loop above takes the environment in use, and copes with a collector slipping
            // in between.
            drop(building);
        }
    }

    /// The environment if a [`Venv`] of it is alive in this process: its shared lock is then
    /// held, so no collector can take it, and a run shares that lock instead of opening and
    /// locking its own (a dozen file system calls per run, one of which writes an inode).
    fn already_in_use(&self, key: &str) -> Option<Venv> {
        let mut in_use = lock(&self.in_use);
        let held = in_use.get_mut(key)?;
        let Some(guard) = held.lock.upgrade() else {
            in_use.remove(key);
            return None;
        };
        let dir = self.root.join(key);
        if held.touched.elapsed() >= TOUCH_EVERY {
            touch(&dir.join(READY));
            held.touched = Instant::now();
        }
        metrics::counter!("antcode_runner_venv_cache_hits_total").increment(1);
        Some(Venv {
            python: dir.join("bin/python"),
            dir,
            built: false,
            _in_use: guard,
        })
    }

    /// Builds `dir` while holding its build lock.
    fn build_locked(
        &self,
        key: &str,
        dir: &Path,
        python_version: Option<&str>,
        deps: &Deps,
        report: Report,
    ) -> Result<(), VenvError> {
        let started = Instant::now();
        let tmp = self.root.join(format!(".build-{key}"));
        self.build(&tmp, python_version, deps, report)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&tmp);
            })?;
        std::fs::write(tmp.join(SIZE), dir_size(&tmp).to_string())?;
        std::fs::write(tmp.join(READY), b"")?;
        // An unready leftover (nobody holds an unready environment in use); the collector may
        // be moving it away at the same moment.
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        std::fs::rename(&tmp, dir)?;
        metrics::counter!("antcode_runner_venv_builds_total").increment(1);
        record_build(&self.root, key, started.elapsed().as_secs_f64());
        metrics::histogram!("antcode_runner_venv_build_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(key = %key, seconds = started.elapsed().as_secs_f64(), "built virtualenv");
        Ok(())
    }

    fn build(
        &self,
        tmp: &Path,
        python_version: Option<&str>,
        deps: &Deps,
        report: Report,
    ) -> Result<(), VenvError> {
        if tmp.exists() {
            // Left by a crash mid-build; we hold the lock, so nobody else is using it.
            std::fs::remove_dir_all(tmp)?;
        }
        let python = python_version.map(str::trim).filter(|v| !v.is_empty());
        let out = self
            .uv
            .command()
            .args([
                "venv",
                "--quiet",
                "--relocatable",
                "--no-python-downloads",
                "--python",
            ])
            .arg(python.unwrap_or("python3"))
            .arg(tmp)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(VenvError::Interpreter(
                python.unwrap_or("python3").to_string(),
                last_line(&out.stderr),
            ));
        }
        let req_file = match deps {
            Deps::Requirements(requirements) => {
                let normalized = normalize_requirements(requirements);
                if normalized.is_empty() {
                    return Ok(());
                }
                let req_file = tmp.join("antcode-requirements.txt");
                std::fs::write(&req_file, &normalized)?;
                req_file
            }
            Deps::Project { pyproject, lock } => {
                let project = tmp.join("antcode-project");
                std::fs::create_dir_all(&project)?;
                std::fs::write(project.join("pyproject.toml"), pyproject)?;
                match lock {
                    // `uv pip install -r pyproject.toml` installs the declared dependencies.
                    None => project.join("pyproject.toml"),
                    Some(lock) => {
                        std::fs::write(project.join("uv.lock"), lock)?;
                        self.export_lock(&project)?
                    }
                }
            }
        };
        let install = |offline: bool, build: bool| -> std::io::Result<std::process::Output> {
            let mut cmd = self.uv.command();
            cmd.args(["pip", "install", "--quiet", "--python"])
                .arg(tmp.join("bin/python"))
                .arg("-r")
                .arg(&req_file)
                .stdin(Stdio::null());
            if offline {
                cmd.arg("--offline");
            }
            if !build {
                cmd.arg("--no-build");
            }
            cmd.output()
        };
        // With a sandbox, first from wheels only: no code of a requirement runs.
        let wheels_only = self.builder.is_some();
        let out = install(false, !wheels_only)?;
        if out.status.success() {
            return Ok(());
        }
        // A slow or unreachable index: what uv's cache already holds may be enough.
        let first = last_line(&out.stderr);
        report("the install failed; trying again offline from the runner's cache".into());
        let retry = install(true, !wheels_only)?;
        if retry.status.success() {
            tracing::warn!(error = %first, "installed requirements from uv's cache after the index failed");
            return Ok(());
        }
        match &self.builder {
            Some(builder) => {
                report("building requirements from source in the sandbox".into());
                builder.install(tmp, &req_file)
            }
            None => Err(VenvError::Install(first)),
        }
    }

    /// Turns `project/uv.lock` into pinned requirements exactly as locked (`--frozen`: the lock
    /// is neither checked against the index nor updated), without the project itself and
    /// without dev dependencies.
    fn export_lock(&self, project: &Path) -> Result<PathBuf, VenvError> {
        let out_file = project.join("requirements.lock.txt");
        let out = self
            .uv
            .command()
            .args([
                "export",
                "--quiet",
                "--frozen",
                "--no-hashes",
                "--no-emit-project",
                "--no-dev",
                "--no-header",
                "--project",
            ])
            .arg(project)
            .arg("--output-file")
            .arg(&out_file)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(VenvError::Lock(last_line(&out.stderr)));
        }
        Ok(out_file)
    }

    /// Removes least recently used environments beyond the [`GcPolicy`], never one in use, plus
    /// leftovers of crashed builds and collections. Blocking.
    pub fn collect_garbage(&self) -> std::io::Result<GcReport> {
        let _one = lock(&self.collecting);
        let mut envs = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(GcReport::default());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".trash-") {
                // A collection died mid-removal; the name is already out of every run's reach.
                let _ = std::fs::remove_dir_all(&path);
            } else if let Some(key) = name.strip_prefix(".build-").filter(|k| is_key(k)) {
                // A build that crashed, unless one is running now (it holds the build lock).
                if let Some(lock) = lock_file(&self.build_lock_path(key), Mode::TryExclusive)? {
                    let _ = std::fs::remove_dir_all(&path);
                    drop(lock);
                }
            } else if is_key(&name) && path.is_dir() {
                let used = std::fs::metadata(path.join(READY))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                let size = std::fs::read_to_string(path.join(SIZE))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or_else(|| dir_size(&path));
                envs.push((used, size, name));
            }
        }
        // Most recently used first: those are kept while they fit.
        envs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
        let mut report = GcReport::default();
        for (_, size, key) in envs {
            let fits = report.kept < self.gc.max_count
                && report.kept_bytes.saturating_add(size) <= self.gc.max_bytes;
            if fits || !self.remove(&key)? {
                report.kept += 1;
                report.kept_bytes = report.kept_bytes.saturating_add(size);
            } else {
                report.removed.push(key);
            }
        }
        if !report.removed.is_empty() {
            metrics::counter!("antcode_runner_venv_collected_total")
                .increment(report.removed.len() as u64);
            tracing::info!(
                removed = report.removed.len(),
                kept = report.kept,
                kept_bytes = report.kept_bytes,
                "collected virtualenvs"
            );
        }
        Ok(report)
    }

    /// Removes one environment if nobody uses it; false if it is in use.
    fn remove(&self, key: &str) -> std::io::Result<bool> {
        let lock_path = self.lock_path(key);
        let Some(lock) = lock_file(&lock_path, Mode::TryExclusive)? else {
            return Ok(false);
        };
        let dir = self.root.join(key);
        // Unready first, then out of the way under another name: a run that looks now finds
        // nothing and builds afresh.
        let _ = std::fs::remove_file(dir.join(READY));
        let trash = self
            .root
            .join(format!(".trash-{key}-{}", antcode_core::ids::new_id()));
        std::fs::rename(&dir, &trash)?;
        // Unlinked while still locked: a waiter notices (see `lock_file`) and opens a new one.
        let _ = std::fs::remove_file(&lock_path);
        let build_lock = self.build_lock_path(key);
        if let Some(building) = lock_file(&build_lock, Mode::TryExclusive)? {
            let _ = std::fs::remove_file(&build_lock);
            drop(building);
        }
        drop(lock);
        let _ = std::fs::remove_dir_all(&trash);
        Ok(true)
    }
}

fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shared,
    Exclusive,
    TryExclusive,
}

/// `4.2 s`: how long a step took, for a person.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Opens (creating) and flocks `path`. The collector unlinks a lock file while holding it, so
/// after locking we check that the path still names the file we locked and start over if not.
/// `None` only for [`Mode::TryExclusive`] when someone else holds it.
fn lock_file(path: &Path, mode: Mode) -> std::io::Result<Option<File>> {
    use fs4::fs_std::FileExt;
    use std::os::unix::fs::MetadataExt;
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match mode {
            Mode::Shared => FileExt::lock_shared(&file)?,
            Mode::Exclusive => FileExt::lock_exclusive(&file)?,
            Mode::TryExclusive => {
                if !FileExt::try_lock_exclusive(&file)? {
                    return Ok(None);
                }
            }
        }
        let held = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(Some(file)),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Bytes on disk under `path` (allocated blocks; symlinks are not followed).
pub fn dir_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// Appends `<unix ms> <key> <seconds>` to `venvs/builds.log`: an operator's history of builds
/// (and how tests prove that concurrent runs built once).
fn record_build(root: &Path, key: &str, seconds: f64) {
    use std::io::Write;
    let line = format!("{} {key} {seconds:.3}\n", antcode_core::time::now_ms());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(BUILDS_LOG))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The build history file inside the venvs directory.
pub const BUILDS_LOG: &str = "builds.log";

fn touch(path: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// The most useful line of a tool's stderr: the last non-empty one, trimmed to a sane length.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no error output");
    line.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_normalize_to_one_key() {
        let req = |s: &str| Deps::Requirements(s.into());
        let a = env_key(
            Some("3.11"),
            &req("six\n# comment\nrequests==2.0  # pinned\n\n"),
        );
        let b = env_key(Some("3.11"), &req("requests==2.0\nsix\nsix\n"));
        assert_eq!(a, b);
        assert_ne!(a, env_key(None, &req("six\nrequests==2.0")));
        assert_ne!(a, env_key(Some("3.11"), &req("six")));
        assert_eq!(normalize_requirements("  \n# x\n"), "");
        let project = |p: &str, l: Option<&str>| Deps::Project {
            pyproject: p.into(),
            lock: l.map(str::to_string),
        };
        let p = env_key(None, &project("[project]", None));
        assert_ne!(p, env_key(None, &project("[project]", Some(""))));
        assert_ne!(p, env_key(None, &project("[project] ", None)));
        assert_ne!(p, env_key(None, &req("[project]")));
    }
}
