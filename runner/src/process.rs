//! Spawning, signalling and reaping a task process.
//!
//! The child gets its own session (and so its own process group, whose id is its pid), a cleared
//! environment plus exactly what we pass, argv without a shell, and null stdin. Signals go to the
//! whole group with `killpg`, so forked grandchildren are stopped with their parent. The child is
//! reaped with `wait4`, which also reports its peak RSS.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub peak_rss_kb: Option<i64>,
}

pub struct Spawned {
    pub pid: i32,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Starts `program args…` in `cwd` with exactly `env`.
pub fn spawn(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> io::Result<Spawned> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("child pipes missing"));
    };
    // The `Child` is dropped without waiting: `wait_for` reaps it by pid.
    Ok(Spawned {
        pid: child.id() as i32,
        stdout,
        stderr,
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
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    // ru_maxrss is in kilobytes on Linux.
    let rss = usage.ru_maxrss as i64;
    Ok(ExitInfo {
        code,
        signal,
        peak_rss_kb: (rss > 0).then_some(rss),
    })
}

/// Sends `signal` to the process group led by `pid`. A group that is already gone is fine.
pub fn signal_group(pid: i32, signal: Signal) {
    if pid <= 1 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid), signal);
}
