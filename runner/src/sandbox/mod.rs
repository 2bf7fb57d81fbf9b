//! The sandbox every run's process starts in: kernel mechanisms set up by the runner itself,
//! between `clone` and `exec`, with no helper binary.
//!
//! A run is a `clone` of the runner with new user, mount, PID, IPC and UTS namespaces (and a
//! network namespace when its policy is `none`). The clone child is the run's init (pid 1 of
//! the new PID namespace, see `child.rs`); the runner writes its id maps, and the init:
//!
//! * takes detached copies (`open_tree`) of what the run may see, while it still has the
//!   runner's user: the system directories on [`SYSTEM`]'s allow-list, a few files of `/etc`,
//!   the interpreter the virtualenv points to, the virtualenv, the run's work dir, and
//!   `/dev/{null,zero,full,random,urandom,tty}`;
//! * mounts a small tmpfs as the new root, becomes the task's user (`nobody`, 65534, when the
//!   runner is root; the runner's own user otherwise) and attaches the copies at their host
//!   paths (read-only, `nosuid`, `nodev`; the work dir alone writable), a private tmpfs `/tmp`
//!   bounded in size (`TMPDIR` points there; `/dev/shm` links to it), a devpts instance and a
//!   `/proc` of the new PID namespace;
//! * `pivot_root`s into it, detaches the host's tree and remounts the root read-only;
//! * clears the capability bounding set, locks the secure bits, drops every capability, sets
//!   `no_new_privs`, applies a Landlock ruleset mirroring the view (read and execute under `/`;
//!   writing only in the work dir, `/tmp` and `/dev`; no signal to, and no abstract socket of,
//!   a process outside the run) and a seccomp filter (see [`filter`]);
//! * forks the task, which sets its rlimits and execs Python; the init reaps everything and,
//!   when the task exits, reports its status and exits, and the kernel kills whatever else is
//!   left in the namespace (a daemonised grandchild included).
//!
//! So a task sees nothing of the runner's data dir but its own work dir and virtualenv, no other
//! run's files or processes, no process of the host (its `/proc` holds its own namespace), and
//! as a different user it has no rights on the runner's files even if it left the mount view.
//! The init is a copy of the runner and so holds its memory: it is not dumpable, it runs no
//! signal handler, and a task (without capabilities, under seccomp) can neither trace it nor
//! read its `/proc` entries.
//!
//! ## Warm runs
//!
//! A zygote ([`crate::zygote`]) is started by the same init, as the task of a sandbox of its
//! own, one per (virtualenv, project, version, bundle): its view is the system part, the
//! interpreter, the virtualenv, and its own directory (the script, its copy of the bundle, the
//! spec below) read-only; it runs as the task's user, not dumpable, in its own PID namespace,
//! under a seccomp program of its own ([`filter::zygote_seccomp_program`]). It differs from a
//! task's sandbox in two ways, both so it can make each run's namespaces: it keeps
//! `CAP_SYS_ADMIN` in its own user namespace (ambient, over nothing of the host's), and it has no
//! Landlock ruleset (Landlock refuses every mount). Per run, in `zygote.py`:
//!
//! * the zygote forks the child into a new PID namespace, whose pid 1 it is;
//! * the child joins the run's cgroup, unshares mount, IPC and UTS namespaces, mounts a private
//!   `/tmp` of `tmp_mb`, an empty tmpfs over the work dirs' parent with only its own work dir on
//!   it (a detached mount the runner makes with [`detached_tree`] and passes with the request),
//!   and a `/proc` of its PID namespace; then it forks the task and stays as the run's init
//!   (reaps, reports the task's status, and exits, which kills what is left in the namespace);
//! * the task drops the capability, applies the Landlock ruleset a cold task gets (from the
//!   spec [`Sandbox::zygote_spec`] writes: signal and abstract-socket scopes included) and
//!   loads the cold task's seccomp program, before any code of the run.
//!
//! So a warm task has the guarantees of a cold one: it runs as the task's user without
//! capabilities, under the same two filters, sees its own work dir, `/tmp` and processes only,
//! cannot see or signal the zygote, the runner or another run (they are outside its PID
//! namespace and its Landlock domain), and its cgroup is killed whole at the end.
//!
//! What a zygote's runs share, and why it is safe: the zygote serves one project version only,
//! so all it holds (the preloaded modules, the requests with their environments) is that
//! project's; no zygote ever serves two projects. Its pages reach each run copy-on-write: a
//! run's writes stay its own, and the request buffer is zeroed after each fork, so no run finds
//! an earlier run's environment in the memory it inherits. Its directory and the virtualenv are
//! read-only binds of root's files, its `/tmp` is covered by each run's own. What stays open
//! is the code the zygote itself runs, the project's `preload` modules: it runs with the
//! zygote's capability in the zygote's own namespaces (it may mount there, never make a user
//! or network namespace), and a thread it leaves behind would see the next requests of that
//! project version. That is the project's own code seeing its own runs, never another
//! project's.
//!
//! Attaching the work dir takes a runner that is root; otherwise warm runs start cold.
//!
//! At start the runner probes each mechanism ([`probe`]); what is missing is logged with the
//! guarantee it costs, shown in the worker's `sandbox` label, and the runner refuses to start
//! unless weak sandboxes are allowed.

mod child;
pub mod filter;
mod guard;
mod probe;
mod warm;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use child::{Bind, Fds, Plan, STAGES};

use crate::process::{self, ExitInfo, Limits, Spawned};

pub use probe::{
    not_dumpable, probe, start, usable, Check, Report, SandboxConfig, SandboxError, ALLOW_WEAK,
    BENCH_NO_SANDBOX,
};
pub use warm::{detached_tree, Zygote, ZygoteInit};

/// Host paths a task may read (and execute), when they exist: system programs and libraries,
/// certificates, time zones, and the `/etc` files name resolution, the dynamic linker and
/// Python's standard library read. Nothing else of `/etc` (no shadow, no keys, no configs).
pub const SYSTEM: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/mime.types",
    "/etc/os-release",
];

/// Device nodes a task may open.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The host user (and group) a task runs as when the runner is root.
pub const NOBODY: u32 = 65534;

/// Default size bound of a run's `/tmp`.
pub const DEFAULT_TMP_BYTES: u64 = 256 << 20;

/// `MOUNT_ATTR_*` of the read-only binds.
const READ_ONLY: u64 = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
const WRITABLE: u64 = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
const DEVICE: u64 = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC;

/// The host uid tasks run as, once a sandbox is set up (`u32::MAX`: none). Work dirs owned by
/// it are the runner's to recycle (see [`crate::workdirs`]).
static TASK_UID: AtomicU32 = AtomicU32::new(u32::MAX);

/// The host uid sandboxed tasks run as, if the sandbox is on.
pub fn task_uid() -> Option<u32> {
    let uid = TASK_UID.load(Ordering::Relaxed);
    (uid != u32::MAX).then_some(uid)
}

/// The runner's sandbox: the plan every run's view is built from, prepared once.
pub struct Sandbox {
    /// Host ids of the task (65534 when the runner is root, else the runner's own).
    uid: u32,
    gid: u32,
    root: bool,
    /// Where each run mounts its root tmpfs, in its own mount namespace.
    root_dir: CString,
    /// The system part of every run's view.
    system: Vec<Item>,
    namespaces: libc::c_int,
    seccomp: Option<Vec<libc::sock_filter>>,
    /// A zygote's program (see [`filter::zygote_seccomp_program`]).
    zygote_seccomp: Option<Vec<libc::sock_filter>>,
    landlock_abi: Option<i32>,
    cap_last: libc::c_int,
    /// Each virtualenv's interpreter installation, when it is outside the system binds.
    interpreters: Mutex<HashMap<PathBuf, Option<PathBuf>>>,
    /// The thread that starts `full` runs with the platform's ports shut out (see `guard.rs`).
    guard: Option<guard::PortGuard>,
}

/// One entry of a view, at the same path as on the host.
#[derive(Debug, Clone)]
enum Item {
    Bind {
        src: PathBuf,
        at: PathBuf,
        attr: u64,
    },
    /// A bind of a file (its mount point is a file).
    BindFile {
        src: PathBuf,
        at: PathBuf,
        attr: u64,
    },
    Symlink {
        target: PathBuf,
        at: PathBuf,
    },
}

/// The runner's effective user.
fn runner_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// What one run needs besides the sandbox.
pub struct RunSpec<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub limits: &'a Limits,
    /// The virtualenv (read-only) and the work dir (read-write, `cwd` or its parent).
    pub venv: &'a Path,
    pub work_dir: &'a Path,
    pub tmp_bytes: u64,
    /// The task's network policy: `none` is a network namespace of its own with only `lo`
    /// (up); an allow-list is a Landlock ruleset the init applies (see [`crate::netpolicy`]).
    pub net: crate::netpolicy::Hook,
    /// Called with the init's host pid before it may go on (e.g. to put it in a cgroup).
    pub before_start: Option<&'a (dyn Fn(i32) -> io::Result<()> + Sync)>,
    /// A program outside the system view, bound read-only at its path (uv, for a build).
    pub tool: Option<&'a Path>,
}

impl Sandbox {
    /// Prepares the sandbox of a runner whose data dir is `data_dir`, with what `report` says
    /// works. Only call when user, mount and PID namespaces work.
    pub fn new(data_dir: &Path, report: &Report) -> io::Result<Sandbox> {
        // SAFETY: getters without preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let root = euid == 0;
        let (uid, gid) = if root { (NOBODY, NOBODY) } else { (euid, egid) };
        let root_dir = data_dir.join("sandbox-root");
        std::fs::create_dir_all(&root_dir)?;
        let mut namespaces = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
        if report.works("ipc namespace") {
            namespaces |= libc::CLONE_NEWIPC;
        }
        if report.works("uts namespace") {
            namespaces |= libc::CLONE_NEWUTS;
        }
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        TASK_UID.store(uid, Ordering::Relaxed);
        Ok(Sandbox {
            uid,
            gid,
            root,
            root_dir: cstring(root_dir.as_os_str())?,
            system: system_items(),
            namespaces,
            seccomp: report.works("seccomp").then(filter::seccomp_program),
            zygote_seccomp: report.works("seccomp").then(filter::zygote_seccomp_program),
            landlock_abi: report
                .works("landlock")
                .then(filter::landlock_abi)
                .flatten(),
            cap_last,
            interpreters: Mutex::default(),
            guard: None,
        })
    }

    /// The host user and group tasks run as.
    pub fn task_ids(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// Gives `path` and everything under it to the task's user (not following links), so the
    /// task may change its own files. Nothing to do when the task runs as the runner's user.
    pub fn hand_over(&self, path: &Path) -> io::Result<()> {
        self.give(path, self.uid, self.gid)
    }

    /// Gives `path` and everything under it back to the runner's user (after a sandboxed build).
    pub fn take_back(&self, path: &Path) -> io::Result<()> {
        // SAFETY: getegid has no preconditions.
        let gid = unsafe { libc::getegid() };
        self.give(path, runner_uid(), gid)
    }

    /// `lchown` of `path` and everything under it, unless the task is the runner's user.
    fn give(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        if self.uid == runner_uid() {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(path)?;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.give(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }

    /// Runs `spec.program` in a new sandbox to its end, blocking: how it ended, and what it
    /// wrote to stderr (at most the last 64 KiB; stdout is dropped).
    pub fn run_to_end(&self, spec: &RunSpec<'_>) -> io::Result<(ExitInfo, Vec<u8>)> {
        let (pid, stdout, mut stderr, status) = self.start(spec, None)?;
        // Drained on a thread of its own, so a chatty stdout cannot block the program.
        let drain = std::thread::spawn(move || {
            let _ = std::io::copy(&mut { stdout }, &mut std::io::sink());
        });
        let mut err = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match stderr.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            err.extend_from_slice(&buf[..n]);
            if err.len() > 128 << 10 {
                err.drain(..err.len() - (64 << 10));
            }
        }
        let info = wait_init(pid, status)?;
        let _ = drain.join();
        Ok((info, err))
    }

    /// The `TMPDIR` of a sandboxed task.
    pub fn tmp_dir(&self) -> &'static str {
        "/tmp"
    }

    /// Starts `spec.program` in a new sandbox. Returns once it has exec'd (or failed to).
    pub fn spawn(&self, spec: &RunSpec<'_>) -> io::Result<Spawned> {
        let (pid, stdout, stderr, status) = self.start(spec, None)?;
        Ok(Spawned {
            pid,
            stdout,
            stderr,
            wait: Box::pin(async move {
                tokio::task::spawn_blocking(move || wait_init(pid, status))
                    .await
                    .map_err(io::Error::other)?
            }),
        })
    }

    /// Shuts `ports` out of every run whose network policy is `full` from now on, and out of
    /// zygotes (see `guard.rs`). Needs cgroup v2 mounted and BPF.
    pub fn guard_ports(&mut self, ports: &[u16]) -> io::Result<()> {
        self.guard = Some(guard::PortGuard::start(ports)?);
        Ok(())
    }

    /// The ports shut out of `full` runs, if any are.
    pub fn guarded_ports(&self) -> Option<&[u16]> {
        self.guard.as_ref().map(|g| g.ports())
    }

    /// [`Sandbox::spawn`]'s work: the init's pid, the output pipes and the status pipe. With
    /// `zygote`, the task is a zygote (see [`Zygote`]) and the pipes are dummies. A run whose
    /// network policy is `full` joins the ports' guard before it may start, when there is one.
    fn start(
        &self,
        spec: &RunSpec<'_>,
        zygote: Option<&Zygote<'_>>,
    ) -> io::Result<(i32, File, File, File)> {
        let strings = Strings::new(spec)?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        // A zygote writes to the runner's stderr, and its stdout goes nowhere.
        let null = match zygote {
            Some(_) => Some(File::options().write(true).open("/dev/null")?),
            None => None,
        };
        let (stdout, stderr) = match &null {
            Some(null) => (null.as_raw_fd(), io::stderr().as_raw_fd()),
            None => (out_w.as_raw_fd(), err_w.as_raw_fd()),
        };
        let (go_r, go_w) = pipe()?;
        let (fail_r, fail_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let fds = Fds {
            stdout,
            stderr,
            go: go_r.as_raw_fd(),
            error: fail_w.as_raw_fd(),
            status: status_w.as_raw_fd(),
            net: spec.net.ruleset(),
            stdin: zygote.map_or(-1, |z| z.control),
        };
        let mut plan = self.plan(spec, &strings, fds, zygote)?;
        let mut flags = self.namespaces;
        if spec.net.new_netns() {
            flags |= libc::CLONE_NEWNET;
        }
        // SAFETY: a fork-like clone (no new stack, no shared memory). The child runs only
        // `child::init`, which makes system calls on memory prepared above and never returns.
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
            // SAFETY: this is the clone child `plan` was built for.
            unsafe { child::init(&mut plan) }
        }
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        let pid = pid as i32;
        drop((out_w, err_w, go_r, fail_w, status_w, null));
        let mut go = File::from(go_w);
        let full = spec.net.ruleset() < 0 && !spec.net.new_netns();
        let started = self
            .write_maps(pid)
            .and_then(|()| match &self.guard {
                Some(guard) if full => guard.join(pid),
                _ => Ok(()),
            })
            .and_then(|()| spec.before_start.map_or(Ok(()), |f| f(pid)))
            .and_then(|()| go.write_all(b"g"));
        drop(go);
        let mut failure = Vec::with_capacity(8);
        let read = File::from(fail_r).read_to_end(&mut failure);
        if let Err(e) = started.and(read.map(drop)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = process::wait_for(pid);
            return Err(e);
        }
        if failure.len() >= 8 {
            let _ = process::wait_for(pid);
            let stage = u32::from_ne_bytes(failure[..4].try_into().unwrap_or_default()) as usize;
            let errno = i32::from_ne_bytes(failure[4..8].try_into().unwrap_or_default());
            let what = STAGES.get(stage).copied().unwrap_or("setting up");
            let e = io::Error::from_raw_os_error(errno);
            return Err(io::Error::new(e.kind(), format!("sandbox: {what}: {e}")));
        }
        Ok((
            pid,
            File::from(out_r),
            File::from(err_r),
            File::from(status_r),
        ))
    }

    fn write_maps(&self, pid: i32) -> io::Result<()> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if !self.root {
            // An unprivileged gid map needs setgroups denied first.
            std::fs::write(proc.join("setgroups"), "deny")?;
        }
        std::fs::write(proc.join("uid_map"), format!("{0} {0} 1\n", self.uid))?;
        std::fs::write(proc.join("gid_map"), format!("{0} {0} 1\n", self.gid))?;
        Ok(())
    }

    /// The run's view: the system part, the interpreter, the virtualenv, the work dir (a
    /// zygote's directory, read-only, for a zygote).
    fn plan(
        &self,
        spec: &RunSpec<'_>,
        strings: &Strings,
        fds: Fds,
        zygote: Option<&Zygote<'_>>,
    ) -> io::Result<Plan> {
        let mut items = self.system.clone();
        if let Some(prefix) = self.interpreter(spec.venv) {
            items.push(Item::Bind {
                src: prefix.clone(),
                at: prefix,
                attr: READ_ONLY,
            });
        }
        items.push(Item::Bind {
            src: spec.venv.to_path_buf(),
            at: spec.venv.to_path_buf(),
            attr: READ_ONLY,
        });
        if let Some(tool) = spec.tool {
            items.push(Item::BindFile {
                src: tool.to_path_buf(),
                at: tool.to_path_buf(),
                attr: READ_ONLY,
            });
        }
        items.push(Item::Bind {
            src: spec.work_dir.to_path_buf(),
            at: spec.work_dir.to_path_buf(),
            attr: if zygote.is_some() {
                READ_ONLY
            } else {
                WRITABLE
            },
        });
        let mut dirs: BTreeSet<PathBuf> = ["tmp", "proc", "dev", "dev/pts"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if let Some(z) = zygote {
            // Where each run's work dir is attached (on a tmpfs of the run's own).
            let mut at = Some(relative(z.work_root));
            while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
                at = p.parent().map(Path::to_path_buf);
                dirs.insert(p);
            }
        }
        let (mut binds, mut files, mut symlinks) = (vec![], vec![], vec![]);
        for item in &items {
            let (Item::Bind { at, .. } | Item::BindFile { at, .. } | Item::Symlink { at, .. }) =
                item;
            let rel = relative(at);
            let mut parent = rel.parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(p.to_path_buf());
                parent = p.parent();
            }
            match item {
                Item::Bind { src, attr, .. } => {
                    dirs.insert(rel.clone());
                    binds.push(bind(src, &rel, *attr)?);
                }
                Item::BindFile { src, attr, .. } => {
                    files.push(cstring(rel.as_os_str())?);
                    binds.push(bind(src, &rel, *attr)?);
                }
                Item::Symlink { target, .. } => {
                    symlinks.push((cstring(target.as_os_str())?, cstring(rel.as_os_str())?));
                }
            }
        }
        for (target, at) in [
            ("/proc/self/fd", "dev/fd"),
            ("/proc/self/fd/0", "dev/stdin"),
            ("/proc/self/fd/1", "dev/stdout"),
            ("/proc/self/fd/2", "dev/stderr"),
            ("/tmp", "dev/shm"),
            ("pts/ptmx", "dev/ptmx"),
        ] {
            symlinks.push((cstring(OsStr::new(target))?, cstring(OsStr::new(at))?));
        }
        let trees = vec![-1; binds.len()];
        // A zygote makes mounts for its runs, which Landlock forbids: each run applies the
        // ruleset itself, once its mounts are made.
        let landlock_abi = self.landlock_abi.filter(|_| zygote.is_none());
        let landlock = landlock_abi.map(|abi| {
            let handled = filter::handled_fs(abi);
            let mut rules: Vec<(CString, u64)> = landlock_rules(abi)
                .into_iter()
                .map(|(path, access)| (path.to_owned(), access))
                .collect();
            if let Ok(work) = cstring(spec.work_dir.as_os_str()) {
                rules.push((work, handled));
            }
            child::Landlock {
                attr: filter::RulesetAttr {
                    handled_access_fs: handled,
                    handled_access_net: 0,
                    scoped: if abi >= 6 { filter::SCOPES } else { 0 },
                },
                rules,
            }
        });
        Ok(Plan {
            uid: self.uid,
            gid: self.gid,
            setgroups: self.root,
            root_dir: self.root_dir.clone(),
            root_opts: cstring(OsStr::new(&format!(
                "size=1m,nr_inodes=1024,mode=0755,uid={},gid={}",
                self.uid, self.gid
            )))?,
            tmp_opts: cstring(OsStr::new(&format!(
                "size={},mode=1777,uid={},gid={}",
                spec.tmp_bytes.max(4096),
                self.uid,
                self.gid
            )))?,
            dirs: dirs
                .iter()
                .map(|d| cstring(d.as_os_str()))
                .collect::<io::Result<_>>()?,
            files,
            symlinks,
            binds,
            trees,
            loopback: spec.net.new_netns(),
            cwd: cstring(spec.cwd.as_os_str())?,
            program: strings.program.clone(),
            argv: strings.argv_ptrs(),
            envp: strings.envp_ptrs(),
            limits: *spec.limits,
            cap_last: self.cap_last,
            zygote: zygote.is_some(),
            seccomp: match zygote {
                Some(_) => self.zygote_seccomp.as_ref(),
                None => self.seccomp.as_ref(),
            }
            .map(|p| libc::sock_fprog {
                len: p.len() as libc::c_ushort,
                filter: p.as_ptr() as *mut libc::sock_filter,
            }),
            landlock,
            fds,
        })
    }

    /// The installation the virtualenv's interpreter belongs to (`home` in `pyvenv.cfg`, less
    /// its `bin`), unless the system binds already hold it.
    fn interpreter(&self, venv: &Path) -> Option<PathBuf> {
        let mut cache = crate::lock(&self.interpreters);
        cache
            .entry(venv.to_path_buf())
            .or_insert_with(|| {
                let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
                let home = cfg.lines().find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == "home").then(|| PathBuf::from(v.trim()))
                })?;
                let home = home.canonicalize().unwrap_or(home);
                let prefix = match home.file_name() == Some(OsStr::new("bin")) {
                    true => home.parent()?.to_path_buf(),
                    false => home,
                };
                let covered = self.system.iter().any(|item| match item {
                    Item::Bind { at, .. } => prefix.starts_with(at),
                    _ => false,
                });
                (!covered && prefix.is_absolute() && prefix != Path::new("/")).then_some(prefix)
            })
            .clone()
    }
}

/// The Landlock rules of every run's view but its work dir (which gets every handled right):
/// read and execute under `/`, everything in `/tmp`, devices read and written, `/proc` read
/// and written (a process writes its own `/proc/self/*`).
fn landlock_rules(abi: i32) -> [(&'static std::ffi::CStr, u64); 4] {
    let handled = filter::handled_fs(abi);
    [
        (c"/", filter::fs::READ & handled),
        (c"/tmp", handled),
        (
            c"/dev",
            (filter::fs::READ_FILE
                | filter::fs::WRITE_FILE
                | filter::fs::READ_DIR
                | filter::fs::TRUNCATE
                | filter::fs::IOCTL_DEV)
                & handled,
        ),
        (
            c"/proc",
            (filter::fs::READ_FILE | filter::fs::READ_DIR | filter::fs::WRITE_FILE) & handled,
        ),
    ]
}

/// Reaps the init and returns the task's end as the init reported it (or the init's own, if it
/// was killed before it could).
fn wait_init(pid: i32, mut status: File) -> io::Result<ExitInfo> {
    let init = process::wait_for(pid)?;
    let mut rec = [0u8; 12];
    match status.read_exact(&mut rec) {
        Ok(()) => {
            let code = i32::from_ne_bytes(rec[..4].try_into().unwrap_or_default());
            let rss = i64::from_ne_bytes(rec[4..].try_into().unwrap_or_default());
            Ok(process::exit_info(code, rss))
        }
        Err(_) => Ok(init),
    }
}

/// The system part of every view: what exists of [`SYSTEM`] and the device nodes. A link is
/// copied as a link when what it points to is in the view anyway (`/bin -> usr/bin`), else the
/// file it points to is bound.
fn system_items() -> Vec<Item> {
    let mut items = vec![];
    for path in SYSTEM.iter().map(Path::new) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        let in_view = |p: &Path| {
            SYSTEM[..7]
                .iter()
                .any(|d| p.starts_with(d) && !Path::new(d).is_symlink())
        };
        if meta.file_type().is_symlink() && in_view(&real) {
            if let Ok(target) = std::fs::read_link(path) {
                items.push(Item::Symlink {
                    target,
                    at: path.to_path_buf(),
                });
            }
            continue;
        }
        let (src, at) = (real.clone(), path.to_path_buf());
        items.push(match real.is_dir() {
            true => Item::Bind {
                src,
                at,
                attr: READ_ONLY,
            },
            false => Item::BindFile {
                src,
                at,
                attr: READ_ONLY,
            },
        });
    }
    for dev in DEVICES {
        let path = Path::new("/dev").join(dev);
        if path.exists() {
            items.push(Item::BindFile {
                src: path.clone(),
                at: path,
                attr: DEVICE,
            });
        }
    }
    items
}

/// A path of the view relative to its root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn bind(src: &Path, at: &Path, attr: u64) -> io::Result<Bind> {
    Ok(Bind {
        src: cstring(src.as_os_str())?,
        at: cstring(at.as_os_str())?,
        attr,
    })
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::other(format!("NUL in {s:?}")))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The program, argv and environment as C strings, alive for as long as the pointers to them.
struct Strings {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Strings {
    fn new(spec: &RunSpec<'_>) -> io::Result<Strings> {
        let program = cstring(spec.program.as_os_str())?;
        let mut argv = vec![program.clone()];
        for a in spec.args {
            argv.push(cstring(OsStr::new(a))?);
        }
        let envp = spec
            .env
            .iter()
            .filter(|(k, v)| process::exec_can_pass(k, v))
            .map(|(k, v)| cstring(OsStr::new(&format!("{k}={v}"))))
            .collect::<io::Result<_>>()?;
        Ok(Strings {
            program,
            argv,
            envp,
        })
    }

    fn argv_ptrs(&self) -> Vec<*const libc::c_char> {
        null_ended(&self.argv)
    }

    fn envp_ptrs(&self) -> Vec<*const libc::c_char> {
        null_ended(&self.envp)
    }
}

fn null_ended(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}
