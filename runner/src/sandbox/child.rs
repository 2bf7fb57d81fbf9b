//! What runs between `clone` and `exec`, in the new namespaces: the run's init (pid 1 of its PID
//! namespace), which builds the file system view and then forks the task.
//!
//! The runner is multithreaded, so the clone child may only make system calls: everything it
//! reads (paths, argv, the environment, the filters) was built by the runner beforehand in a
//! [`Plan`], nothing is allocated, no lock is taken, nothing can panic. A step that fails writes
//! `(stage, errno)` to the error pipe and exits 127; the runner turns it into the spawn's error.

use std::ffi::CString;

use libc::{c_char, c_int, c_long, c_uint, c_void};

use super::filter::{PathBeneath, RulesetAttr, RULE_PATH_BENEATH};
use crate::process::Limits;

/// One read-only (or read-write) bind mount of a host path at the same or another place.
pub(super) struct Bind {
    /// Host path, resolved by the init before it gives up the runner's user.
    pub src: CString,
    /// Where it appears, relative to the new root.
    pub at: CString,
    /// `MOUNT_ATTR_*` set on the mount.
    pub attr: u64,
}

/// Everything the child needs, prepared by the runner.
pub(super) struct Plan {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Whether the init can drop supplementary groups (false when the runner is not root: then
    /// `setgroups` is denied in the namespace, as the kernel requires for an unprivileged map).
    pub setgroups: bool,
    /// A directory of the runner's where the run's root tmpfs is mounted (in the run's own
    /// mount namespace only).
    pub root_dir: CString,
    pub root_opts: CString,
    pub tmp_opts: CString,
    /// Created in the new root, parents first.
    pub dirs: Vec<CString>,
    /// Empty files created as mount points for file binds.
    pub files: Vec<CString>,
    /// (target, link) pairs.
    pub symlinks: Vec<(CString, CString)>,
    pub binds: Vec<Bind>,
    /// One per bind: the detached copy of its source (filled in by the child).
    pub trees: Vec<c_int>,
    pub loopback: bool,
    pub cwd: CString,
    pub program: CString,
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    pub limits: Limits,
    pub cap_last: c_int,
    pub seccomp: Option<libc::sock_fprog>,
    pub landlock: Option<Landlock>,
    /// A zygote: the task keeps `CAP_SYS_ADMIN` in its user namespace (ambient, so it survives
    /// the exec) to make each run's namespaces; everything else is dropped as for a task.
    pub zygote: bool,
    /// The runner's ends are closed in the child; these are the child's.
    pub fds: Fds,
}

pub(super) struct Landlock {
    pub attr: RulesetAttr,
    /// Paths in the new root and the rights under each.
    pub rules: Vec<(CString, u64)>,
}

#[derive(Clone, Copy)]
pub(super) struct Fds {
    pub stdout: c_int,
    pub stderr: c_int,
    pub go: c_int,
    pub error: c_int,
    pub status: c_int,
    /// The network allow-list's Landlock ruleset, or -1.
    pub net: c_int,
    /// The task's stdin (a zygote's control socket), or -1 for `/dev/null`.
    pub stdin: c_int,
}

/// Where the child's descriptors end up: the task's 1 and 2 are its output pipes.
const ERROR_FD: c_int = 3;
const STATUS_FD: c_int = 4;
const GO_FD: c_int = 5;
const NET_FD: c_int = 6;
const STDIN_FD: c_int = 7;

/// `CAP_SYS_ADMIN`, the one capability a zygote keeps.
const CAP_SYS_ADMIN: c_int = 21;

/// Why a run's setup failed, as written on the error pipe (the index in [`STAGES`]).
#[derive(Clone, Copy)]
#[repr(u32)]
pub(super) enum Stage {
    Fds,
    Map,
    Session,
    OpenTree,
    RootTmpfs,
    Ids,
    Mkdir,
    File,
    Symlink,
    SetAttr,
    MoveMount,
    Tmp,
    Proc,
    Loopback,
    PivotRoot,
    ReadOnlyRoot,
    Capabilities,
    NoNewPrivs,
    Cwd,
    Landlock,
    Seccomp,
    Fork,
    Limits,
    Stdin,
    Exec,
}

pub(super) const STAGES: [&str; 25] = [
    "arranging descriptors",
    "waiting for the user namespace's id maps",
    "starting a session",
    "opening a bind mount's source",
    "mounting the root tmpfs",
    "switching to the task's user",
    "making a mount point",
    "making a file mount point",
    "making a symbolic link",
    "setting a bind mount read-only",
    "attaching a bind mount",
    "mounting /tmp",
    "mounting /proc",
    "bringing up the loopback device",
    "pivot_root",
    "remounting the root read-only",
    "dropping capabilities",
    "setting no_new_privs",
    "entering the working directory",
    "applying the Landlock ruleset",
    "loading the seccomp filter",
    "forking the task",
    "setting resource limits",
    "opening /dev/null as stdin",
    "exec",
];

/// The run's init. Never returns.
///
/// # Safety
/// Call only in the child of a `clone` made with the plan's namespaces, with `plan` built by
/// the runner for it.
pub(super) unsafe fn init(plan: &mut Plan) -> ! {
    arrange_fds(plan.fds);
    // Block every signal: the init runs no handler (the runner's are still installed) and is
    // only ever stopped by SIGKILL, which cannot be blocked.
    let mut all: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());

    // Wait for the runner to write the id maps (one byte; none means it failed).
    let mut byte = 0u8;
    let r = retry(|| libc::read(GO_FD, (&mut byte as *mut u8).cast(), 1) as c_long);
    check(r == 1, Stage::Map);
    libc::close(GO_FD);
    check(libc::setsid() != -1, Stage::Session);
    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);

    // Detached copies of every source, taken while this process still has the runner's user
    // and so can reach directories only the runner may enter (its data dir is 0700).
    for (i, bind) in plan.binds.iter().enumerate() {
        let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
        let mut fd = open_tree(&bind.src, flags);
        if fd < 0 && errno() == libc::EINVAL {
            // Mounts below the source (locked to this namespace) must come along.
            fd = open_tree(&bind.src, flags | libc::AT_RECURSIVE as c_uint);
        }
        check(fd >= 0, Stage::OpenTree);
        plan.trees[i] = fd;
    }
    let root = plan.root_dir.as_ptr();
    check(
        libc::mount(
            c"tmpfs".as_ptr(),
            root,
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            plan.root_opts.as_ptr().cast(),
        ) == 0,
        Stage::RootTmpfs,
    );
    check(libc::chdir(root) == 0, Stage::RootTmpfs);

    // From here on the process is the task's user, with capabilities over its namespaces only.
    // Raw system calls: libc's wrappers would signal every thread it believes the process
    // has (the runner's) and wait for them forever; this child has one.
    if plan.setgroups {
        let r = libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
        check(r == 0, Stage::Ids);
    }
    let (u, g) = (plan.uid as c_long, plan.gid as c_long);
    check(libc::syscall(libc::SYS_setresgid, g, g, g) == 0, Stage::Ids);
    check(libc::syscall(libc::SYS_setresuid, u, u, u) == 0, Stage::Ids);
    build_root(plan);
    check(
        libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) == 0,
        Stage::PivotRoot,
    );
    // The old root is stacked on the new one; detaching it leaves nothing of the host but the
    // binds.
    check(
        libc::umount2(c".".as_ptr(), libc::MNT_DETACH) == 0,
        Stage::PivotRoot,
    );
    check(libc::chdir(c"/".as_ptr()) == 0, Stage::PivotRoot);
    check(
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            std::ptr::null(),
        ) == 0,
        Stage::ReadOnlyRoot,
    );
    drop_privileges(plan.cap_last, plan.zygote);
    check(libc::chdir(plan.cwd.as_ptr()) == 0, Stage::Cwd);
    if let Some(landlock) = &plan.landlock {
        restrict(landlock);
    }
    if plan.fds.net >= 0 {
        // The allow-list's own ruleset: a second Landlock layer, on TCP connect.
        check(
            libc::syscall(libc::SYS_landlock_restrict_self, NET_FD, 0) == 0,
            Stage::Landlock,
        );
        libc::close(NET_FD);
    }
    if let Some(prog) = &plan.seccomp {
        check(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                prog as *const libc::sock_fprog,
                0,
                0,
            ) == 0,
            Stage::Seccomp,
        );
    }

    let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as c_long, 0, 0, 0, 0);
    if pid == 0 {
        task(plan);
    }
    check(pid > 0, Stage::Fork);
    // The task holds the output pipes and the error pipe now; the init keeps only the status.
    libc::close(ERROR_FD);
    libc::close(1);
    libc::close(2);
    reap(pid as libc::pid_t)
}

/// Waits for every child (the task and whatever is reparented to pid 1) until the task exits,
/// then reports the task's wait status and peak RSS and exits, which kills the rest of the
/// namespace.
unsafe fn reap(task: libc::pid_t) -> ! {
    loop {
        let mut status: c_int = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(-1, &mut status, 0, &mut usage);
        if r == task {
            let mut rec = [0u8; 12];
            rec[..4].copy_from_slice(&status.to_ne_bytes());
            rec[4..].copy_from_slice(&(usage.ru_maxrss as i64).to_ne_bytes());
            libc::write(STATUS_FD, rec.as_ptr().cast(), rec.len());
            libc::_exit(0);
        }
        if r < 0 && errno() != libc::EINTR {
            libc::_exit(0);
        }
    }
}

/// The task: the run's own process, forked from the init once the view is built.
unsafe fn task(plan: &Plan) -> ! {
    let empty: libc::sigset_t = {
        let mut s = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        s
    };
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    // The runner ignores SIGPIPE; a task gets the default, as any process started from a shell.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    check(
        crate::process::apply_limits(&plan.limits).is_ok(),
        Stage::Limits,
    );
    let null = match plan.fds.stdin {
        -1 => libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY),
        _ => STDIN_FD,
    };
    check(null >= 0, Stage::Stdin);
    if null != 0 {
        check(libc::dup2(null, 0) == 0, Stage::Stdin);
        libc::close(null);
    }
    libc::execve(
        plan.program.as_ptr(),
        plan.argv.as_ptr(),
        plan.envp.as_ptr(),
    );
    fail(Stage::Exec)
}

/// Moves the descriptors the child needs to fixed numbers and closes every other one: the
/// runner's sockets and files must not stay open for as long as the run lasts.
unsafe fn arrange_fds(fds: Fds) {
    // Copies above the fixed numbers first, so no move overwrites a descriptor still needed.
    let high = |fd: c_int| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
    let (out, err, go, error, status) = (
        high(fds.stdout),
        high(fds.stderr),
        high(fds.go),
        high(fds.error),
        high(fds.status),
    );
    let optional = |fd: c_int| match fd {
        -1 => -1,
        fd => high(fd),
    };
    let (net, stdin) = (optional(fds.net), optional(fds.stdin));
    if [out, err, go, error, status].iter().any(|&fd| fd < 0)
        || (fds.net >= 0 && net < 0)
        || (fds.stdin >= 0 && stdin < 0)
    {
        libc::_exit(126);
    }
    // dup2 clears close-on-exec: 1 and 2 are the task's; the pipes to the runner must close at
    // exec (the error pipe's end of file is how the runner learns the exec happened).
    let moved = libc::dup2(out, 1) == 1
        && libc::dup2(err, 2) == 2
        && libc::dup3(error, ERROR_FD, libc::O_CLOEXEC) == ERROR_FD
        && libc::dup3(status, STATUS_FD, libc::O_CLOEXEC) == STATUS_FD
        && libc::dup3(go, GO_FD, libc::O_CLOEXEC) == GO_FD
        && (net < 0 || libc::dup3(net, NET_FD, libc::O_CLOEXEC) == NET_FD)
        && (stdin < 0 || libc::dup3(stdin, STDIN_FD, libc::O_CLOEXEC) == STDIN_FD);
    if !moved {
        libc::_exit(126);
    }
    libc::close(0);
    for (fd, at) in [(net, NET_FD), (stdin, STDIN_FD)] {
        if fd < 0 {
            libc::close(at);
        }
    }
    check(
        libc::syscall(
            libc::SYS_close_range,
            (STDIN_FD + 1) as c_uint,
            c_uint::MAX,
            0,
        ) == 0,
        Stage::Fds,
    );
}

/// Makes the mount points, links and mounts of the new root (the current directory).
unsafe fn build_root(plan: &Plan) {
    // /tmp first: a bind under it (a data dir in /tmp) must land on top of it, not under it.
    check(
        libc::mkdir(c"tmp".as_ptr(), 0o755) == 0 || errno() == libc::EEXIST,
        Stage::Mkdir,
    );
    check(
        libc::mount(
            c"tmpfs".as_ptr(),
            c"tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            plan.tmp_opts.as_ptr().cast(),
        ) == 0,
        Stage::Tmp,
    );
    for dir in &plan.dirs {
        let ok = libc::mkdir(dir.as_ptr(), 0o755) == 0 || errno() == libc::EEXIST;
        check(ok, Stage::Mkdir);
    }
    for file in &plan.files {
        let fd = libc::open(
            file.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        );
        check(fd >= 0, Stage::File);
        libc::close(fd);
    }
    for (target, link) in &plan.symlinks {
        check(
            libc::symlink(target.as_ptr(), link.as_ptr()) == 0,
            Stage::Symlink,
        );
    }
    for (bind, &fd) in plan.binds.iter().zip(&plan.trees) {
        let attr = MountAttr {
            attr_set: bind.attr,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let r = libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        check(r == 0, Stage::SetAttr);
        let r = libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            bind.at.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        );
        check(r == 0, Stage::MoveMount);
        libc::close(fd);
    }
    // A pty is optional: a kernel without devpts instances leaves /dev/pts empty.
    libc::mount(
        c"devpts".as_ptr(),
        c"dev/pts".as_ptr(),
        c"devpts".as_ptr(),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        c"newinstance,ptmxmode=0666,mode=0620".as_ptr().cast(),
    );
    // This init is pid 1 of the new PID namespace, so the proc mounted here shows that
    // namespace only. It must be mounted while the host's /proc is still in this mount
    // namespace (before the old root goes): the kernel lets a user namespace mount a proc only
    // where one is already fully visible.
    check(
        libc::mount(
            c"proc".as_ptr(),
            c"proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) == 0,
        Stage::Proc,
    );
    if plan.loopback {
        loopback_up();
    }
}

/// Brings `lo` up in the run's empty network namespace.
unsafe fn loopback_up() {
    let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    check(sock >= 0, Stage::Loopback);
    let mut req: libc::ifreq = std::mem::zeroed();
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as c_char;
    }
    check(
        libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) == 0,
        Stage::Loopback,
    );
    req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    check(
        libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) == 0,
        Stage::Loopback,
    );
    libc::close(sock);
}

/// Clears the bounding set, locks the secure bits so no exec regains a capability (not even as
/// uid 0 of the namespace), drops every capability, and sets `no_new_privs`. A zygote keeps
/// `CAP_SYS_ADMIN` (in its own user namespace only), raised as an ambient capability before
/// the bits forbid raising one.
unsafe fn drop_privileges(cap_last: c_int, zygote: bool) {
    let header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let admin = 1u32 << CAP_SYS_ADMIN;
    for cap in 0..=cap_last {
        if zygote && cap == CAP_SYS_ADMIN {
            continue;
        }
        let r = libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        check(r == 0 || errno() == libc::EINVAL, Stage::Capabilities);
    }
    if zygote {
        // Inheritable (and still permitted), so it may be raised as ambient.
        let mut data = [CapData::default(); 2];
        check(
            libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) == 0,
            Stage::Capabilities,
        );
        data[0].inheritable = admin;
        data[1].inheritable = 0;
        check(
            libc::syscall(libc::SYS_capset, &header, data.as_ptr()) == 0,
            Stage::Capabilities,
        );
        let r = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE,
            CAP_SYS_ADMIN,
            0,
            0,
        );
        check(r == 0, Stage::Capabilities);
    }
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    check(
        libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) == 0,
        Stage::Capabilities,
    );
    let kept = if zygote { admin } else { 0 };
    let data = [
        CapData {
            effective: kept,
            permitted: kept,
            inheritable: kept,
        },
        CapData::default(),
    ];
    check(
        libc::syscall(libc::SYS_capset, &header, data.as_ptr()) == 0,
        Stage::Capabilities,
    );
    check(
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0,
        Stage::NoNewPrivs,
    );
}

/// Applies the Landlock ruleset to this process (and so to the task it forks).
unsafe fn restrict(landlock: &Landlock) {
    let ruleset = libc::syscall(
        libc::SYS_landlock_create_ruleset,
        &landlock.attr as *const RulesetAttr,
        std::mem::size_of::<RulesetAttr>(),
        0,
    ) as c_int;
    check(ruleset >= 0, Stage::Landlock);
    for (path, access) in &landlock.rules {
        let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        check(fd >= 0, Stage::Landlock);
        let rule = PathBeneath {
            allowed_access: *access,
            parent_fd: fd,
        };
        let r = libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            RULE_PATH_BENEATH,
            &rule as *const PathBeneath,
            0,
        );
        check(r == 0, Stage::Landlock);
        libc::close(fd);
    }
    check(
        libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) == 0,
        Stage::Landlock,
    );
    libc::close(ruleset);
}

#[repr(C)]
pub(super) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

unsafe fn open_tree(path: &CString, flags: c_uint) -> c_int {
    libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) as c_int
}

fn errno() -> c_int {
    // SAFETY: errno is a thread-local the C library always provides.
    unsafe { *libc::__errno_location() }
}

/// Repeats a call interrupted by a signal.
fn retry(mut f: impl FnMut() -> c_long) -> c_long {
    loop {
        let r = f();
        if r != -1 || errno() != libc::EINTR {
            return r;
        }
    }
}

fn check(ok: bool, stage: Stage) {
    if !ok {
        fail(stage)
    }
}

/// Reports `(stage, errno)` on the error pipe and exits.
fn fail(stage: Stage) -> ! {
    let e = errno();
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    rec[4..].copy_from_slice(&e.to_ne_bytes());
    // SAFETY: a write of a local buffer and an exit; nothing else runs after.
    unsafe {
        libc::write(ERROR_FD, rec.as_ptr() as *const c_void, rec.len());
        libc::_exit(127)
    }
}
