//! What the kernel grants, found at start: each mechanism probed in a throwaway child, then a
//! whole sandbox tried on `/bin/true` ([`probe`]); and the decision [`start`] takes from it —
//! the sandbox, no sandbox (only when weak ones are allowed or it is turned off for a
//! benchmark), or an error naming every missing guarantee.

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::*;

/// How a runner isolates its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Start even when the kernel refuses part of the sandbox (each missing guarantee is
    /// logged and reported): `--allow-weak-sandbox`.
    pub allow_weak: bool,
    /// Benchmarks and tests only: no sandbox at all (`ANTCODE_BENCH_NO_SANDBOX=1`). Never set
    /// it in production; it is what the sandbox's cost is measured against.
    pub off: bool,
}

/// Turns the sandbox off in benchmarks (and only there).
pub const BENCH_NO_SANDBOX: &str = "ANTCODE_BENCH_NO_SANDBOX";
/// What `--allow-weak-sandbox` sets.
pub const ALLOW_WEAK: &str = "ANTCODE_ALLOW_WEAK_SANDBOX";

impl SandboxConfig {
    /// From the environment: [`ALLOW_WEAK`] and [`BENCH_NO_SANDBOX`] set to `1` or `true`.
    pub fn from_env() -> SandboxConfig {
        let set =
            |name| std::env::var(name).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        SandboxConfig {
            allow_weak: set(ALLOW_WEAK),
            off: set(BENCH_NO_SANDBOX),
        }
    }
}

/// One mechanism's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub mechanism: &'static str,
    /// What a task could do without it.
    pub guards: &'static str,
    /// Why the kernel refused it; `None` when it works.
    pub missing: Option<String>,
}

/// What the kernel grants: one [`Check`] per mechanism. Cgroups are probed by the runner's
/// limits and pushed here too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, mechanism: &'static str, guards: &'static str, missing: Option<String>) {
        self.checks.push(Check {
            mechanism,
            guards,
            missing,
        });
    }

    pub fn missing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.missing.is_some())
    }

    pub(super) fn works(&self, mechanism: &str) -> bool {
        self.checks
            .iter()
            .any(|c| c.mechanism == mechanism && c.missing.is_none())
    }

    /// `full`, or `weak: no landlock, no seccomp` — the worker's `sandbox` label.
    pub fn summary(&self) -> String {
        let missing: Vec<String> = self
            .missing()
            .map(|c| format!("no {}", c.mechanism))
            .collect();
        match missing.is_empty() {
            true => "full".into(),
            false => format!("weak: {}", missing.join(", ")),
        }
    }
}

/// Probes each mechanism in a throwaway child; also runs `/bin/true` (or `/usr/bin/true`) in a
/// whole sandbox, so a refusal that only shows when the steps combine is found at start.
pub fn probe(data_dir: &Path) -> Report {
    let mut report = Report::default();
    let ns = |flags: libc::c_int| try_clone(flags).err().map(|e| e.to_string());
    let user = ns(libc::CLONE_NEWUSER);
    report.push(
        "user namespace",
        "the task runs as another user, without rights on the runner's files",
        user.clone(),
    );
    let with_user = |flag, name, guards, report: &mut Report| {
        let missing = match &user {
            Some(_) => Some("needs a user namespace".into()),
            None => ns(libc::CLONE_NEWUSER | flag),
        };
        report.push(name, guards, missing);
    };
    with_user(
        libc::CLONE_NEWNS,
        "mount namespace",
        "the task sees only its work dir, its virtualenv and the system's read-only files",
        &mut report,
    );
    with_user(
        libc::CLONE_NEWPID,
        "pid namespace",
        "the task cannot see or signal other processes, and its descendants die with it",
        &mut report,
    );
    with_user(
        libc::CLONE_NEWIPC,
        "ipc namespace",
        "the task shares no System V IPC with other processes",
        &mut report,
    );
    with_user(
        libc::CLONE_NEWUTS,
        "uts namespace",
        "the task cannot change the host name",
        &mut report,
    );
    with_user(
        libc::CLONE_NEWNET,
        "network namespace",
        "network policy `none` cuts the task off",
        &mut report,
    );
    // SAFETY: prctl queries without side effects.
    let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    report.push(
        "no_new_privs",
        "no set-user-id program gives the task privileges",
        (nnp < 0).then(|| io::Error::last_os_error().to_string()),
    );
    // SAFETY: as above.
    let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    report.push(
        "seccomp",
        "the task cannot call ptrace, mount, bpf, keyctl, kexec and the like",
        (seccomp < 0).then(|| io::Error::last_os_error().to_string()),
    );
    report.push(
        "landlock",
        "a second, path-based bound on what the task can open, signal and connect to",
        match filter::landlock_abi() {
            Some(_) => None,
            None => Some("not enabled in this kernel".into()),
        },
    );
    if report.works("user namespace")
        && report.works("mount namespace")
        && report.works("pid namespace")
    {
        if let Err(e) = run_true(data_dir, &report) {
            if let Some(c) = report
                .checks
                .iter_mut()
                .find(|c| c.mechanism == "mount namespace")
            {
                c.missing = Some(format!("a whole sandbox failed: {e}"));
            }
        }
    }
    report
}

/// Whether user, mount and PID namespaces (what the sandbox cannot do without) all work.
pub fn usable(report: &Report) -> bool {
    ["user namespace", "mount namespace", "pid namespace"]
        .iter()
        .all(|m| report.works(m))
}

fn run_true(data_dir: &Path, report: &Report) -> io::Result<()> {
    let program = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| io::Error::other("no `true` program to probe with"))?;
    let sandbox = Sandbox::new(data_dir, report)?;
    let dir = data_dir.join("sandbox-probe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    sandbox.hand_over(&dir)?;
    let spawned = sandbox.start(
        &RunSpec {
            program,
            args: &[],
            cwd: &dir,
            env: &BTreeMap::new(),
            limits: &Limits::default(),
            venv: &dir,
            work_dir: &dir,
            tmp_bytes: 1 << 20,
            net: Default::default(),
            before_start: None,
            tool: None,
        },
        None,
    );
    let ended = spawned.and_then(|(pid, out, err, status)| {
        drop((out, err));
        wait_init(pid, status)
    });
    let _ = std::fs::remove_dir_all(&dir);
    match ended? {
        ExitInfo { code: Some(0), .. } => Ok(()),
        other => Err(io::Error::other(format!("`true` ended with {other:?}"))),
    }
}

fn try_clone(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: a fork-like clone whose child only exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_long,
            0,
            0,
            0,
            0,
        )
    };
    if pid == 0 {
        // SAFETY: the child exits at once.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    process::wait_for(pid as i32).map(drop)
}

/// Makes the process non-dumpable: its `/proc/PID/environ`, `mem` and the like are unreadable
/// to processes of the same user, and it cannot be traced without `CAP_SYS_PTRACE`.
pub fn not_dumpable() {
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// Why a runner cannot start with a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Each missing mechanism with the kernel's reason.
    #[error("the kernel refuses part of the sandbox: {0}; start with --allow-weak-sandbox (ANTCODE_ALLOW_WEAK_SANDBOX=1) to run without it")]
    Weak(String),
    #[error("sandbox: {0}")]
    Setup(io::Error),
}

/// Ports never shut out of network `full`, whatever service of the platform listens on them.
pub const WEB_PORTS: [u16; 2] = [80, 443];

/// The sandbox a runner starts with: `None` when it is off or the kernel cannot give one (and
/// weak sandboxes are allowed), an error naming every missing guarantee otherwise. `protected`
/// are the platform's ports, shut out of runs whose network policy is `full`.
pub fn start(
    data_dir: &Path,
    cfg: SandboxConfig,
    protected: &[u16],
) -> Result<(Option<Arc<Sandbox>>, Report), SandboxError> {
    if cfg.off {
        tracing::warn!("sandbox OFF (benchmark setting): tasks run unconfined");
        let mut report = Report::default();
        report.push("sandbox", "everything", Some("turned off".into()));
        return Ok((None, report));
    }
    let report = probe(data_dir);
    for c in report.missing() {
        tracing::warn!(
            mechanism = c.mechanism,
            error = c.missing.as_deref().unwrap_or(""),
            "sandbox: missing; so not guaranteed: {}",
            c.guards
        );
    }
    if report.missing().next().is_some() && !cfg.allow_weak {
        let missing: Vec<String> = report
            .missing()
            .map(|c| format!("{} ({})", c.mechanism, c.missing.as_deref().unwrap_or("")))
            .collect();
        return Err(SandboxError::Weak(missing.join("; ")));
    }
    if !usable(&report) {
        tracing::warn!("sandbox unavailable: tasks run unconfined (--allow-weak-sandbox)");
        return Ok((None, report));
    }
    let mut sandbox = Sandbox::new(data_dir, &report).map_err(SandboxError::Setup)?;
    // Landlock sees ports, not hosts: shutting out 80 or 443 would shut out every web site.
    let (web, protected): (Vec<u16>, Vec<u16>) =
        protected.iter().partition(|p| WEB_PORTS.contains(p));
    if !web.is_empty() {
        tracing::warn!(ports = ?web, "sandbox: a platform service on a web port stays reachable from network `full` (only `none` or an allow-list without it shuts it out)");
    }
    let protected = &protected[..];
    if !protected.is_empty() {
        match sandbox.guard_ports(protected) {
            Ok(()) => {
                tracing::info!(ports = ?protected, "sandbox: the platform's ports are shut out of network `full`")
            }
            Err(e) if cfg.allow_weak => {
                tracing::warn!(error = %e, "sandbox: the platform's ports stay reachable from network `full`")
            }
            Err(e) => {
                return Err(SandboxError::Weak(format!(
                    "platform ports in network full ({e})"
                )))
            }
        }
    }
    tracing::info!(summary = %report.summary(), uid = sandbox.uid, "sandbox ready");
    Ok((Some(Arc::new(sandbox)), report))
}
