//! Spawning, signalling and reaping a task process.
//!
//! The child gets its own session (and so its own process group, whose id is its pid), a cleared
//! environment plus exactly what we pass, argv without a shell, and null stdin. Signals go to the
//! whole group with `killpg`, so forked grandchildren are stopped with their parent. The child is
//! reaped with `wait4`, which also reports its peak RSS. Optional rlimits (memory, CPU time, open
//! files) are set between fork and exec.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub peak_rss_kb: Option<i64>,
}

/// A started run: its pid (also its process group id), the read ends of its output pipes, and
/// how to learn its end (a cold child is reaped with [`wait_for`] on a blocking thread; a warm
/// one's status comes from its zygote over a socket, see [`crate::zygote`]).
pub struct Spawned {
    pub pid: i32,
    pub stdout: File,
    pub stderr: File,
    /// Resolves once the process has exited.
    pub wait: Exit,
}

/// A process's end, to be awaited.
pub type Exit = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<ExitInfo>> + Send>>;

/// Resource limits applied to the child before it execs (and so inherited by everything it
/// starts). `None` leaves the runner's own limit in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Address space (`RLIMIT_AS`), bytes. An allocation past it fails (`MemoryError` in Python).
    pub memory_bytes: Option<u64>,
    /// CPU time (`RLIMIT_CPU`), seconds: SIGXCPU at the limit, SIGKILL [`CPU_KILL_AFTER`] later.
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Largest file the process may write (`RLIMIT_FSIZE`), bytes: a write past it fails
    /// with EFBIG (Python ignores SIGXFSZ, so it raises `OSError`).
    pub file_bytes: Option<u64>,
}

/// Seconds between the soft CPU limit (SIGXCPU, which a task may catch to clean up) and the hard
/// one (SIGKILL).
pub const CPU_KILL_AFTER: u64 = 2;

impl Limits {
    /// The tighter of two limits on each resource (a missing one is unlimited).
    pub fn tightest(self, other: Limits) -> Limits {
        fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Limits {
            memory_bytes: min(self.memory_bytes, other.memory_bytes),
            cpu_seconds: min(self.cpu_seconds, other.cpu_seconds),
            open_files: min(self.open_files, other.open_files),
            file_bytes: min(self.file_bytes, other.file_bytes),
        }
    }

    /// Each limit that is set, as (resource, its name in the zygote's request, soft, hard): the
    /// one rule both the cold spawn and the warm fork apply. Allocates nothing (the cold spawn
    /// calls it between fork and exec).
    pub fn rlimits(&self) -> [Option<(Resource, &'static str, u64, u64)>; 4] {
        [
            self.memory_bytes.map(|b| (Resource::RLIMIT_AS, "as", b, b)),
            self.cpu_seconds.map(|s| {
                (
                    Resource::RLIMIT_CPU,
                    "cpu",
                    s,
                    s.saturating_add(CPU_KILL_AFTER),
                )
            }),
            self.open_files
                .map(|n| (Resource::RLIMIT_NOFILE, "nofile", n, n)),
            self.file_bytes
                .map(|b| (Resource::RLIMIT_FSIZE, "fsize", b, b)),
        ]
    }
}

/// Lowers one limit in the child. Never raises the hard limit (which needs privileges): a value
/// above the runner's own hard limit is clamped to it. Only async-signal-safe calls.
fn set_limit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let (_, cur_hard) = getrlimit(resource).map_err(io::Error::from)?;
    let hard = hard.min(cur_hard);
    setrlimit(resource, soft.min(hard), hard).map_err(io::Error::from)
}

pub(crate) fn apply_limits(limits: &Limits) -> io::Result<()> {
    for (resource, _, soft, hard) in limits.rlimits().into_iter().flatten() {
        set_limit(resource, soft, hard)?;
    }
    Ok(())
}

/// Starts `program args…` in `cwd` with exactly `env`, under `limits`.
pub fn spawn(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
) -> io::Result<Spawned> {
    spawn_in(program, args, cwd, env, limits, &Confine::default())
}

/// What confines a run beyond rlimits, applied in the child before it execs (see
/// [`crate::cgroup`]): copyable, so a pre-exec hook can take it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Confine {
    /// The run's cgroups, joined first, so everything the child starts is inside.
    pub cgroup: crate::cgroup::Attach,
    /// The run's network policy (see [`crate::netpolicy`]).
    pub net: crate::netpolicy::Hook,
}

/// [`spawn`] inside `confine`.
pub fn spawn_in(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    confine: &Confine,
) -> io::Result<Spawned> {
    let (limits, confine) = (*limits, *confine);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: write, setsid, unshare, prctl, the Landlock calls, getrlimit and setrlimit are
    // async-signal-safe system calls;
    // `limits` and `confine` are plain copies and nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            crate::cgroup::attach_self(&confine.cgroup)?;
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            crate::netpolicy::apply(&confine.net)?;
            apply_limits(&limits)
        });
    }
    let mut child = cmd.spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("child pipes missing"));
    };
    // The `Child` is dropped without waiting: `wait_for` reaps it by pid.
    let pid = child.id() as i32;
    Ok(Spawned {
        pid,
        stdout: File::from(OwnedFd::from(stdout)),
        stderr: File::from(OwnedFd::from(stderr)),
        wait: Box::pin(async move {
            tokio::task::spawn_blocking(move || wait_for(pid))
                .await
                .map_err(io::Error::other)?
        }),
    })
}

/// Blocks until `pid` exits and reaps it. Call from a blocking thread.
pub fn wait_for(pid: i32) -> io::Result<ExitInfo> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(exit_info(status, usage.ru_maxrss as i64))
}

/// Decodes a `wait` status and `ru_maxrss` (kilobytes on Linux).
pub fn exit_info(status: libc::c_int, max_rss_kb: i64) -> ExitInfo {
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    ExitInfo {
        code,
        signal,
        peak_rss_kb: (max_rss_kb > 0).then_some(max_rss_kb),
    }
}

/// Sends `signal` to the process group led by `pid`. A group that is already gone is fine.
pub fn signal_group(pid: i32, signal: Signal) {
    if pid <= 1 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid), signal);
}

/// Variables that mark every process of one attempt: set in the task's environment and inherited
/// by all its descendants, including those that leave the process group with `setsid()`.
pub const RUN_ID_VAR: &str = "ANTCODE_RUN_ID";
pub const ATTEMPT_VAR: &str = "ANTCODE_ATTEMPT";

/// Whether exec can pass this environment entry: a name that is not empty and holds no `=` or
/// NUL, a value without NUL.
pub fn exec_can_pass(name: &str, value: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !value.contains('\0')
}

/// SIGKILLs every process whose initial environment (`/proc/<pid>/environ`) carries this
/// attempt's marker, and returns how many it killed. This finds descendants that escaped the
/// process group (daemonised with `setsid()`), which `killpg` cannot reach; one that also
/// scrubbed its environment block escapes this too. Repeats while it finds some, in case one
/// forked during the scan. Blocking.
pub fn kill_marked(run_id: &str, attempt: u32) -> usize {
    kill_marked_all(&[(run_id.to_string(), attempt)])
}

/// [`kill_marked`] for several attempts with one walk of `/proc` per pass: the walk reads every
/// process's environment, which is what a sweep costs, whatever the number of attempts.
pub fn kill_marked_all(attempts: &[(String, u32)]) -> usize {
    let wanted: HashSet<(&[u8], Vec<u8>)> = attempts
        .iter()
        .map(|(id, n)| (id.as_bytes(), n.to_string().into_bytes()))
        .collect();
    if wanted.is_empty() {
        return 0;
    }
    let id_prefix = format!("{RUN_ID_VAR}=");
    let attempt_prefix = format!("{ATTEMPT_VAR}=");
    let me = std::process::id() as i32;
    let mut killed = 0;
    for _ in 0..5 {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return killed;
        };
        let mut found = 0;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid <= 1 || pid == me {
                continue;
            }
            // Unreadable (another user's process) or gone: not ours.
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let (mut id, mut attempt) = (None, None);
            for var in environ.split(|&b| b == 0) {
                if let Some(v) = var.strip_prefix(id_prefix.as_bytes()) {
                    id = Some(v);
                } else if let Some(v) = var.strip_prefix(attempt_prefix.as_bytes()) {
                    attempt = Some(v);
                }
            }
            let marked = match (id, attempt) {
                (Some(id), Some(n)) => wanted.contains(&(id, n.to_vec())),
                _ => false,
            };
            if marked {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                found += 1;
            }
        }
        killed += found;
        if found == 0 {
            break;
        }
    }
    killed
}
