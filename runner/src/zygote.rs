//! Warm starts: a pre-forked Python "zygote" per (virtualenv, project version).
//!
//! A cold run pays the interpreter's start-up (15–30 ms of CPU) before its first line. In warm
//! mode the runner keeps one Python process per (environment, project, version, bundle) that has
//! already started, imported `site` and the project's declared preload modules
//! (`[tool.antcode] preload = [...]` in its `pyproject.toml`), and forks it per run. The script
//! is `zygote.py`, embedded in the binary; it documents the child's side.
//!
//! The zygote's stdin is one end of an anonymous `SOCK_SEQPACKET` socket pair (private: no path
//! in the file system, nothing else can connect). Per run the runner sends one request (NUL-ended
//! fields: cwd, argv, rlimits, then the environment as `K=V` entries, see `request_body`)
//! with three descriptors attached (`SCM_RIGHTS`): a fresh reply
//! socket and the write ends of the stdout and stderr pipes the runner reads; then the run's
//! open `cgroup.procs` files, which the child writes itself into before anything else. The child starts
//! its own session first and then sends its pid on the reply socket, so the runner can
//! `killpg` the run exactly as in cold mode; the zygote, its parent, reaps it and sends the wait
//! status and peak RSS on the same socket. If that socket closes without a status the zygote
//! died mid-flight: the run fails with that reason (and is retried by its task's policy), and
//! the next run starts a new zygote.
//!
//! Zygotes start on first use, stop after an idle TTL, are bounded in number and resident
//! memory (least recently used idle ones go first), are replaced when found dead, and are never
//! shared between projects, versions or environments. A zygote with runs in flight is never
//! stopped. When no zygote can be had (all busy at the bound, or it fails before forking), the
//! run starts cold: warm mode never loses a run.
//!
//! With the sandbox on, each zygote runs in a sandbox of its own and confines each run it forks
//! as a cold run is (see [`crate::sandbox`]): the request also carries the work dir (as a
//! detached mount) and the size of `/tmp`, and the run's pid is the one the kernel attaches to
//! its first reply (`SO_PASSCRED`), since the zygote's PID namespace is not the runner's.
//!
//! Past 800 lines with its unit tests of the request encoding; the pool, the zygote and the fork
//! protocol share one lock and one socket, and read best together.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use antcode_core::model::BundleRef;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};

use crate::bundles::unpack;
use crate::execute::task_env;
use crate::lock;
use crate::process::{self, Limits, Spawned};
use crate::sandbox::{self, RunSpec, Sandbox};
use crate::uv::Venv;

const SCRIPT: &str = include_str!("zygote.py");
/// A variable that reserves room in the zygote's initial environment block, which each child
/// overwrites with the run's environment (see `_rewrite_env_block` in the script).
const PAD_VAR: &str = "ANTCODE_ZYGOTE_ENV_PAD";
const PAD_BYTES: usize = 32 * 1024;
/// How long a request may wait for the child's pid. The first request of a zygote also waits
/// for its start-up and preloads.
const FORK_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest reply message (JSON of a few numbers).
const REPLY_MAX: usize = 4096;
/// Size bound of a sandboxed zygote's own `/tmp` (its runs get theirs).
const ZYGOTE_TMP_BYTES: u64 = 16 << 20;

/// The warm-start policy and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmConfig {
    /// Queues whose runs all start warm; any other run starts warm only if its task says
    /// `warm: true`.
    pub queues: Vec<String>,
    /// A zygote unused this long is stopped.
    pub idle_ttl: Duration,
    /// At most this many zygotes at once.
    pub max_count: usize,
    /// Least recently used idle zygotes are stopped while their resident memory together is
    /// above this.
    pub max_memory_bytes: u64,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig {
            queues: Vec::new(),
            idle_ttl: Duration::from_secs(600),
            max_count: 8,
            max_memory_bytes: 2 << 30,
        }
    }
}

/// What a zygote is for. Two runs share a zygote only if all of it is equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZygoteKey {
    pub venv: PathBuf,
    pub project_id: String,
    pub project_version: i64,
    pub bundle_sha256: String,
}

/// One run to fork: what a cold spawn gets.
pub struct Request {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub limits: Limits,
    /// The run's open `cgroup.procs` files: the child writes itself into each before any
    /// user code (see [`crate::cgroup`]).
    pub cgroup: Vec<std::os::fd::RawFd>,
    /// The run's work dir (handed to a sandboxed zygote as a detached mount) and the size of
    /// its private `/tmp`.
    pub work_dir: PathBuf,
    pub tmp_bytes: u64,
}

/// The runner's zygotes.
pub struct Zygotes {
    /// Private to this pool (0700): the script and one directory per zygote.
    root: PathBuf,
    /// Where runs' work dirs are (see [`crate::workdirs`]).
    work_root: PathBuf,
    cfg: WarmConfig,
    /// Zygotes start in it when it is on (see [`crate::sandbox`]).
    sandbox: Option<Arc<Sandbox>>,
    live: Mutex<HashMap<ZygoteKey, Arc<Zygote>>>,
    started: AtomicU64,
    reaper: std::sync::Once,
}

struct Zygote {
    /// The interpreter's host pid.
    pid: i32,
    control: OwnedFd,
    child: Mutex<Proc>,
    /// Its runs are confined by the zygote itself (see [`crate::sandbox`]).
    sandboxed: bool,
    last_used: Mutex<Instant>,
    dir: PathBuf,
    /// Holds the environment in use, so virtualenv garbage collection leaves it alone.
    _venv: Venv,
}

/// A zygote's process: the interpreter itself, or the sandbox init it runs under (whose end
/// is the zygote's, and whose kill takes the zygote's whole PID namespace with it).
enum Proc {
    Plain(Child),
    Sandboxed {
        init: i32,
        ended: bool,
        _status: File,
    },
}

impl Proc {
    fn alive(&mut self) -> bool {
        match self {
            Proc::Plain(child) => matches!(child.try_wait(), Ok(None)),
            Proc::Sandboxed { init, ended, .. } => {
                if !*ended {
                    let pid = nix::unistd::Pid::from_raw(*init);
                    let flags = Some(nix::sys::wait::WaitPidFlag::WNOHANG);
                    *ended = !matches!(
                        nix::sys::wait::waitpid(pid, flags),
                        Ok(nix::sys::wait::WaitStatus::StillAlive)
                    );
                }
                !*ended
            }
        }
    }

    fn kill(&mut self) {
        match self {
            Proc::Plain(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Proc::Sandboxed { init, ended, .. } => {
                if !*ended {
                    let pid = nix::unistd::Pid::from_raw(*init);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                    let _ = process::wait_for(*init);
                    *ended = true;
                }
            }
        }
    }
}

/// Why a run was not forked from a zygote (the run then starts cold).
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    /// The zygote's directory or script could not be written.
    #[error("zygote directory: {0}")]
    Directory(io::Error),
    #[error("zygote socket: {0}")]
    Socket(nix::Error),
    #[error("could not start the zygote: {0}")]
    Start(io::Error),
    #[error("all {0} zygotes are busy")]
    Busy(usize),
    /// The zygote refused the request, failed to fork it or died.
    #[error("{0}")]
    Fork(String),
    #[error("the runner's blocking pool failed: {0}")]
    Pool(#[from] tokio::task::JoinError),
}

#[derive(Debug)]
enum ForkError {
    /// The zygote is gone (or never answered); no child of this request exists.
    Dead(String),
    Other(String),
}

impl Zygotes {
    /// A pool in its own directory under `data_dir/zygotes` (created on first use, removed
    /// when the pool is dropped; runners may share a data dir).
    pub fn new(data_dir: &Path, cfg: WarmConfig, sandbox: Option<Arc<Sandbox>>) -> Arc<Zygotes> {
        Arc::new(Zygotes {
            root: data_dir.join("zygotes").join(antcode_core::ids::new_id()),
            work_root: data_dir.join("work"),
            cfg,
            sandbox,
            live: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
            reaper: std::sync::Once::new(),
        })
    }

    pub fn config(&self) -> &WarmConfig {
        &self.cfg
    }

    /// Forks `req` from the zygote of `key`, starting one if needed (on a blocking thread; a
    /// running zygote is asked on the runtime, without one). An error means no process was
    /// started for this request (start the run cold).
    pub async fn spawn(
        self: &Arc<Self>,
        key: &ZygoteKey,
        venv: &Venv,
        bundle: (&BundleRef, &Path),
        req: &Request,
    ) -> Result<Spawned, ZygoteError> {
        for retry in [true, false] {
            let (zygote, hit) = match self.running(key) {
                Some(z) => (z, true),
                None => {
                    let (pool, key, venv) = (self.clone(), key.clone(), venv.clone());
                    let (bundle, file) = (bundle.0.clone(), bundle.1.to_path_buf());
                    tokio::task::spawn_blocking(move || pool.get(&key, &venv, (&bundle, &file)))
                        .await??
                }
            };
            match zygote.fork(req).await {
                Ok(spawned) => {
                    let name = if hit {
                        "antcode_runner_zygote_hits_total"
                    } else {
                        "antcode_runner_zygote_misses_total"
                    };
                    metrics::counter!(name).increment(1);
                    return Ok(spawned);
                }
                Err(ForkError::Dead(e)) => {
                    self.forget(key, &zygote, "dead");
                    // A reused zygote may have died while idle: one more try with a new one.
                    if !(hit && retry) {
                        return Err(ZygoteError::Fork(e));
                    }
                }
                Err(ForkError::Other(e)) => return Err(ZygoteError::Fork(e)),
            }
        }
        Err(ZygoteError::Fork("no zygote".into()))
    }

    /// The live zygote of `key`, if there is one.
    fn running(&self, key: &ZygoteKey) -> Option<Arc<Zygote>> {
        self.reuse(&mut lock(&self.live), key)
    }

    /// The live zygote of `key` in `live`, marked used now; dead and idle-expired ones go first.
    fn reuse(
        &self,
        live: &mut HashMap<ZygoteKey, Arc<Zygote>>,
        key: &ZygoteKey,
    ) -> Option<Arc<Zygote>> {
        self.prune(live, Some(key), false);
        let z = live.get(key)?;
        *lock(&z.last_used) = Instant::now();
        Some(z.clone())
    }

    /// The live zygote of `key` (true) or a newly started one (false). Blocking.
    fn get(
        self: &Arc<Self>,
        key: &ZygoteKey,
        venv: &Venv,
        bundle: (&BundleRef, &Path),
    ) -> Result<(Arc<Zygote>, bool), ZygoteError> {
        let mut live = lock(&self.live);
        if let Some(z) = self.reuse(&mut live, key) {
            return Ok((z, true));
        }
        // Memory is weighed only when a zygote is about to start (and on the reaper's tick):
        // reading every zygote's size on each run would cost a file read per zygote per run.
        self.prune(&mut live, Some(key), true);
        if live.len() >= self.cfg.max_count && !evict_lru(&mut live, None) {
            return Err(ZygoteError::Busy(self.cfg.max_count.max(live.len())));
        }
        let z = Arc::new(self.start(venv, bundle)?);
        live.insert(key.clone(), z.clone());
        metrics::gauge!("antcode_runner_zygotes").set(live.len() as f64);
        self.start_reaper();
        Ok((z, false))
    }

    /// Drops dead zygotes, idle ones past the TTL, and (with `weigh`) least recently used idle
    /// ones while over the memory bound (`keep` is about to be used and stays unless dead).
    fn prune(
        &self,
        live: &mut HashMap<ZygoteKey, Arc<Zygote>>,
        keep: Option<&ZygoteKey>,
        weigh: bool,
    ) {
        let dead: Vec<ZygoteKey> = live
            .iter()
            .filter(|(_, z)| !z.alive())
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            live.remove(&k);
            evicted("dead");
        }
        let idle: Vec<ZygoteKey> = live
            .iter()
            .filter(|(k, z)| {
                Some(*k) != keep && z.idle() && lock(&z.last_used).elapsed() >= self.cfg.idle_ttl
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            live.remove(&k);
            evicted("idle");
        }
        while weigh && live.values().map(|z| z.rss_bytes()).sum::<u64>() > self.cfg.max_memory_bytes
        {
            if !evict_lru(live, keep) {
                break;
            }
        }
        metrics::gauge!("antcode_runner_zygotes").set(live.len() as f64);
    }

    /// Removes `zygote` from the pool if it is still the one for `key`.
    fn forget(&self, key: &ZygoteKey, zygote: &Arc<Zygote>, reason: &'static str) {
        let mut live = lock(&self.live);
        if live.get(key).is_some_and(|z| Arc::ptr_eq(z, zygote)) {
            live.remove(key);
            evicted(reason);
        }
    }

    /// Stops idle zygotes past their TTL even when no run comes: a thread that lives as long as
    /// the pool.
    fn start_reaper(self: &Arc<Self>) {
        self.reaper.call_once(|| {
            let weak: Weak<Zygotes> = Arc::downgrade(self);
            let every =
                (self.cfg.idle_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
            let _ = std::thread::Builder::new()
                .name("antcode-zygotes".into())
                .spawn(move || loop {
                    std::thread::sleep(every);
                    let Some(pool) = weak.upgrade() else { return };
                    let mut live = lock(&pool.live);
                    pool.prune(&mut live, None, true);
                });
        });
    }

    fn start(&self, venv: &Venv, bundle: (&BundleRef, &Path)) -> Result<Zygote, ZygoteError> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("z{n}"));
        let script = self.root.join("zygote.py");
        let bundle_dir = dir.join("bundle");
        let prepared = (|| -> io::Result<()> {
            std::fs::create_dir_all(&self.root)?;
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))?;
            if !script.exists() {
                // A name of this start's own: zygotes starting together must not write into
                // one temporary file (one would rename the other's half-written script).
                let tmp = self.root.join(format!("zygote.py.{n}.tmp"));
                std::fs::write(&tmp, SCRIPT)?;
                std::fs::rename(&tmp, &script)?;
            }
            let _ = std::fs::remove_dir_all(&dir);
            unpack(bundle.0, bundle.1, &bundle_dir, &mut |path| {
                File::create(path)
            })
            .map_err(io::Error::other)?;
            std::fs::create_dir_all(dir.join(crate::workdirs::TMP))
        })();
        prepared.map_err(ZygoteError::Directory)?;
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(ZygoteError::Socket)?;
        // The base every run gets (without the run's own variables), so what the interpreter
        // reads at start-up (locale, unbuffered output) is what a cold run would read.
        let mut env = task_env(venv, &dir, &BTreeMap::new());
        env.insert(PAD_VAR.into(), " ".repeat(PAD_BYTES));
        let (pid, proc) = match &self.sandbox {
            Some(sandbox) => self.start_sandboxed(sandbox, venv, &dir, &mut env, &theirs)?,
            None => {
                let child = start_plain(venv, &script, &bundle_dir, &env, theirs)?;
                (child.id() as i32, Proc::Plain(child))
            }
        };
        metrics::counter!("antcode_runner_zygote_starts_total").increment(1);
        tracing::debug!(pid, dir = %dir.display(), "zygote started");
        Ok(Zygote {
            pid,
            control: mine,
            child: Mutex::new(proc),
            sandboxed: self.sandbox.is_some(),
            last_used: Mutex::new(Instant::now()),
            dir,
            _venv: venv.clone(),
        })
    }

    /// Starts the zygote of `dir` in a sandbox of its own: the script, the spec of what its runs
    /// must do and the seccomp program they load are copied into `dir`, which it sees
    /// read-only. Returns the interpreter's pid and its init.
    fn start_sandboxed(
        &self,
        sandbox: &Sandbox,
        venv: &Venv,
        dir: &Path,
        env: &mut BTreeMap<String, String>,
        control: &OwnedFd,
    ) -> Result<(i32, Proc), ZygoteError> {
        let script = dir.join("zygote.py");
        let spec = dir.join("sandbox.spec");
        let written = std::fs::write(&script, SCRIPT)
            .and_then(|()| sandbox.zygote_spec(dir, &self.work_root, &venv.dir))
            .and_then(|text| std::fs::write(&spec, text));
        written.map_err(ZygoteError::Directory)?;
        env.insert("TMPDIR".into(), sandbox.tmp_dir().into());
        let bundle_dir = dir.join("bundle");
        let args = [
            script.display().to_string(),
            bundle_dir.display().to_string(),
            spec.display().to_string(),
        ];
        let init = sandbox
            .start_zygote(
                &RunSpec {
                    program: &venv.python,
                    args: &args,
                    cwd: &bundle_dir,
                    env,
                    limits: &Limits::default(),
                    venv: &venv.dir,
                    work_dir: dir,
                    tmp_bytes: ZYGOTE_TMP_BYTES,
                    net: Default::default(),
                    before_start: None,
                    tool: None,
                },
                &sandbox::Zygote {
                    control: control.as_raw_fd(),
                    work_root: &self.work_root,
                },
            )
            .map_err(ZygoteError::Start)?;
        // The interpreter is the init's one child (forked before its exec was reported).
        let children = format!("/proc/{0}/task/{0}/children", init.pid);
        let pid = std::fs::read_to_string(children)
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or(init.pid);
        Ok((
            pid,
            Proc::Sandboxed {
                init: init.pid,
                ended: false,
                _status: init.status,
            },
        ))
    }
}

/// Starts the zygote as the runner's child, unconfined (the sandbox is off).
fn start_plain(
    venv: &Venv,
    script: &Path,
    bundle_dir: &Path,
    env: &BTreeMap<String, String>,
    control: OwnedFd,
) -> Result<Child, ZygoteError> {
    let mut cmd = Command::new(&venv.python);
    cmd.arg(script)
        .arg(bundle_dir)
        .current_dir(bundle_dir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::from(control))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: setsid is async-signal-safe. Its own session keeps the zygote out of the
    // runner's process group (a terminal's Ctrl-C is not for it).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(ZygoteError::Start)
}

impl Drop for Zygotes {
    fn drop(&mut self) {
        lock(&self.live).clear();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Removes the least recently used idle zygote (not `keep`); false if there is none.
fn evict_lru(live: &mut HashMap<ZygoteKey, Arc<Zygote>>, keep: Option<&ZygoteKey>) -> bool {
    let oldest = live
        .iter()
        .filter(|(k, z)| Some(*k) != keep && z.idle())
        .min_by_key(|(_, z)| *lock(&z.last_used))
        .map(|(k, _)| k.clone());
    match oldest {
        Some(k) => {
            live.remove(&k);
            evicted("lru");
            true
        }
        None => false,
    }
}

fn evicted(reason: &'static str) {
    metrics::counter!("antcode_runner_zygote_evictions_total", "reason" => reason).increment(1);
}

impl Zygote {
    fn alive(&self) -> bool {
        lock(&self.child).alive()
    }

    /// No run in flight: only the pool holds it (each run's waiter holds a clone).
    fn idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
    }

    fn rss_bytes(&self) -> u64 {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        pages * page
    }

    async fn fork(self: &Arc<Self>, req: &Request) -> Result<Spawned, ForkError> {
        let other =
            |what: &str, e: &dyn std::fmt::Display| ForkError::Other(format!("{what}: {e}"));
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| other("reply socket", &e))?;
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| other("pipe", &e))?;
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| other("pipe", &e))?;
        let mut body = Vec::new();
        let mut fds = vec![theirs.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        // A sandboxed zygote's run attaches its work dir from a detached copy made here, and
        // its pid is the one the kernel gives with its reply (the zygote's PID namespace is
        // not the runner's).
        let tree = match self.sandboxed {
            true => {
                let tree =
                    sandbox::detached_tree(&req.work_dir).map_err(|e| other("work dir", &e))?;
                fds.push(tree.as_raw_fd());
                field(&mut body, req.work_dir.as_os_str().as_bytes())?;
                field(&mut body, req.tmp_bytes.max(4096).to_string().as_bytes())?;
                nix::sys::socket::setsockopt(&mine, nix::sys::socket::sockopt::PassCred, &true)
                    .map_err(|e| other("reply socket", &e))?;
                Some(tree)
            }
            false => None,
        };
        body.extend(request_body(req)?);
        let started = Instant::now();
        fds.extend_from_slice(&req.cgroup);
        sendmsg::<()>(
            self.control.as_raw_fd(),
            &[IoSlice::new(&body)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET => {
                ForkError::Dead(format!("the zygote is gone: {e}"))
            }
            e => other("zygote request", &e),
        })?;
        // Only the zygote (and then the child) may hold these now: the reply socket must close
        // when they are gone, and the pipes when the run's processes are.
        drop((theirs, out_w, err_w, tree));
        let reply = UnixDatagram::from(mine);
        reply
            .set_nonblocking(true)
            .map_err(|e| other("reply socket", &e))?;
        let reply =
            tokio::net::UnixDatagram::from_std(reply).map_err(|e| other("reply socket", &e))?;
        let first = match tokio::time::timeout(FORK_TIMEOUT, read_reply_from(&reply)).await {
            Ok(Ok(Some(v))) => v,
            Ok(Ok(None)) => {
                return Err(ForkError::Dead(
                    "the zygote exited before forking".to_string(),
                ))
            }
            Ok(Err(e)) => return Err(ForkError::Dead(format!("the zygote did not answer: {e}"))),
            Err(_) => {
                // Silent for a minute: unusable. It is killed when dropped from the pool.
                return Err(ForkError::Dead(format!(
                    "the zygote did not answer within {FORK_TIMEOUT:?}"
                )));
            }
        };
        let (first, sender) = first;
        if let Some(e) = first.get("error").and_then(|e| e.as_str()) {
            return Err(ForkError::Other(e.to_string()));
        }
        let pid = match self.sandboxed {
            true => sender.filter(|_| first.get("pid").is_some()),
            false => first.get("pid").and_then(|p| p.as_i64()).map(|p| p as i32),
        };
        let Some(pid) = pid else {
            return Err(ForkError::Other(format!("unexpected zygote reply {first}")));
        };
        metrics::histogram!("antcode_runner_zygote_fork_seconds")
            .record(started.elapsed().as_secs_f64());
        *lock(&self.last_used) = Instant::now();
        let zygote = self.clone();
        let wait = async move {
            // Holding the zygote marks it busy until the run has ended.
            let _busy = zygote;
            // A child that died before sending its pid gets its status as the first reply.
            let status = if first.get("status").is_some() {
                Some(first)
            } else {
                read_reply(&reply).await?
            };
            let Some(status) = status else {
                return Err(io::Error::other(
                    "the warm interpreter (zygote) died while the run was in flight; its exit status is unknown",
                ));
            };
            let raw = status.get("status").and_then(|s| s.as_i64()).unwrap_or(-1);
            let rss = status.get("maxrss").and_then(|s| s.as_i64()).unwrap_or(0);
            Ok(process::exit_info(raw as libc::c_int, rss))
        };
        Ok(Spawned {
            pid,
            stdout: File::from(out_r),
            stderr: File::from(err_r),
            wait: Box::pin(wait),
        })
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        lock(&self.child).kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        tracing::debug!(pid = self.pid, "zygote stopped");
    }
}

/// The request as the script reads it: fields each ended by a NUL, namely the working
/// directory; the number of arguments, then the arguments (argv[0] is the entrypoint); the
/// number of limits, then each one's name, soft and hard value; then the environment's `K=V`
/// entries, the run-id markers first (the script writes them over its initial environment
/// block, which may not fit them all). An entry exec could not pass
/// ([`process::exec_can_pass`]) is left out, as `task_env` leaves it out; a NUL in an argument
/// or the directory, which exec could not pass either, refuses the request (the run then
/// starts cold and fails as a cold start does).
fn request_body(req: &Request) -> Result<Vec<u8>, ForkError> {
    let mut body = Vec::new();
    let mut field = |bytes: &[u8]| field(&mut body, bytes);
    field(req.cwd.as_os_str().as_bytes())?;
    field(req.argv.len().to_string().as_bytes())?;
    for arg in &req.argv {
        field(arg.as_bytes())?;
    }
    let limits: Vec<_> = req.limits.rlimits().into_iter().flatten().collect();
    field(limits.len().to_string().as_bytes())?;
    for (_, name, soft, hard) in limits {
        field(name.as_bytes())?;
        field(soft.to_string().as_bytes())?;
        field(hard.to_string().as_bytes())?;
    }
    let markers = [process::RUN_ID_VAR, process::ATTEMPT_VAR];
    let first = markers.iter().filter_map(|k| req.env.get_key_value(*k));
    let rest = req
        .env
        .iter()
        .filter(|(k, _)| !markers.contains(&k.as_str()));
    for (key, value) in first.chain(rest) {
        if process::exec_can_pass(key, value) {
            field(format!("{key}={value}").as_bytes())?;
        }
    }
    Ok(body)
}

/// Appends one NUL-ended field to a request.
fn field(body: &mut Vec<u8>, bytes: &[u8]) -> Result<(), ForkError> {
    if bytes.contains(&0) {
        return Err(ForkError::Other(
            "a NUL in the run's arguments or directory".to_string(),
        ));
    }
    body.extend_from_slice(bytes);
    body.push(0);
    Ok(())
}

/// One reply message as JSON with its sender's pid in the runner's PID namespace, when the
/// socket passes credentials; `None` when the socket was closed without one.
async fn read_reply_from(
    sock: &tokio::net::UnixDatagram,
) -> io::Result<Option<(serde_json::Value, Option<i32>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, UnixCredentials};
    let mut buf = [0u8; REPLY_MAX];
    let (n, sender) = sock
        .async_io(tokio::io::Interest::READABLE, || {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!(UnixCredentials);
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?;
            let sender = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                    _ => None,
                })
            });
            Ok((msg.bytes, sender))
        })
        .await?;
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&buf[..n])
        .map(|v| Some((v, sender)))
        .map_err(|e| io::Error::other(format!("unreadable zygote reply: {e}")))
}

/// One reply message as JSON; `None` when the socket was closed without one.
async fn read_reply(sock: &tokio::net::UnixDatagram) -> io::Result<Option<serde_json::Value>> {
    let mut buf = [0u8; REPLY_MAX];
    let n = sock.recv(&mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&buf[..n])
        .map(Some)
        .map_err(|e| io::Error::other(format!("unreadable zygote reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_puts_the_markers_first_and_leaves_out_what_exec_could_not_pass() {
        let env: BTreeMap<String, String> = [
            ("A", "1"),
            (process::ATTEMPT_VAR, "2"),
            ("B", "x=y\nz"),
            ("BAD=NAME", "v"),
            ("NUL", "a\0b"),
            ("", "empty name"),
            (process::RUN_ID_VAR, "run-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let req = Request {
            argv: vec!["main.py".into(), "line\nbreak".into()],
            env,
            cwd: "/work".into(),
            cgroup: Vec::new(),
            limits: Limits::default(),
            work_dir: "/work".into(),
            tmp_bytes: 0,
        };
        let body = request_body(&req).unwrap();
        assert_eq!(
            body,
            b"/work\x002\x00main.py\x00line\nbreak\x000\x00\
              ANTCODE_RUN_ID=run-1\x00ANTCODE_ATTEMPT=2\x00A=1\x00B=x=y\nz\x00"
                .as_slice()
        );
    }

    #[test]
    fn request_body_carries_the_limits_and_refuses_a_nul_in_an_argument() {
        let mut req = Request {
            argv: vec!["main.py".into()],
            env: BTreeMap::new(),
            cwd: "/w".into(),
            limits: Limits {
                memory_bytes: Some(1024),
                cpu_seconds: Some(5),
                open_files: None,
                file_bytes: None,
            },
            cgroup: Vec::new(),
            work_dir: "/w".into(),
            tmp_bytes: 0,
        };
        let hard_cpu = 5 + process::CPU_KILL_AFTER;
        assert_eq!(
            request_body(&req).unwrap(),
            format!("/w\x001\x00main.py\x002\x00as\x001024\x001024\x00cpu\x005\x00{hard_cpu}\x00")
                .into_bytes()
        );
        req.argv.push("a\0b".into());
        assert!(matches!(request_body(&req), Err(ForkError::Other(_))));
    }
}
