"""AntCode warm-start zygote (embedded in the runner, see runner/src/zygote.rs).

Started as `python zygote.py BUNDLE_DIR` by one runner, for one (virtualenv, project version),
with a SOCK_SEQPACKET control socket as stdin. It imports `site` (by starting) and the project's
declared preload modules, then waits. Each control message is one run, with three file
descriptors attached (the run's reply socket, its stdout pipe, its stderr pipe; then the run's
cgroup.procs files, which the child writes itself into first), made of fields
each ended by a NUL: the working directory; the number of arguments, then the arguments
(argv[0] is the entrypoint); the number of limits, then each limit's name, soft and hard value;
then the run's environment as the kernel lays one out ("K=V" entries, the run-id markers
first). Replies are one line of JSON each. The zygote forks; the child turns itself into the
run exactly as a cold `python ENTRY ARGS...` would be (own session, rlimits, the run's
environment only, working directory, fds 0-2, sys.argv, sys.path[0], __main__), sends its pid
on the reply socket and runs the entrypoint. The zygote is the parent, so it reaps the child
and sends its wait status and peak RSS on the same socket.

Sandboxed (`python zygote.py BUNDLE_DIR SPEC`, see runner/src/sandbox/mod.rs): the zygote runs
in a sandbox of its own, holding CAP_SYS_ADMIN in its user namespace only. A request then starts
with two more fields, the run's work dir and the size of its /tmp, and a fourth descriptor, a
detached mount of the work dir. The zygote forks each run into a new PID namespace (its pid 1);
the child joins the run's cgroups, makes mount, IPC and UTS namespaces of its own, mounts a
private bounded /tmp, its work dir alone on an empty tmpfs where the work dirs are, and a /proc
of its PID namespace, and forks the task, then stays as the run's init: it reaps, sends the
task's status itself and exits, which ends whatever else is left in the namespace. The task
drops the capability, applies the Landlock ruleset and loads the task's seccomp program (from
the spec) before any run code. The runner reads the run's pid from the kernel's credentials on
its reply socket: the zygote's pids are not the runner's.

Single-threaded on purpose: fork() copies only the calling thread. Lean on purpose: every page
the zygote holds is a page table entry each fork copies and each exit clears, so it imports
only C modules beyond what `site` loads (`_socket`, not `socket`; `_signal`, not `signal`; no
`json`, whose `re` and `enum` would double its heap).
"""

import _signal
import _socket
import atexit
import builtins
import gc
import os
import resource
import select
import sys
# The class a cold start gives __main__ as its loader, already loaded (importlib.machinery
# would import the importlib package and warnings into every child's pages).
from _frozen_importlib_external import SourceFileLoader

# A request larger than this (argv + env) is refused; the runner then starts the run cold.
MAX_REQUEST = 1 << 20
RLIMITS = {
    b"as": resource.RLIMIT_AS,
    b"cpu": resource.RLIMIT_CPU,
    b"nofile": resource.RLIMIT_NOFILE,
    b"fsize": resource.RLIMIT_FSIZE,
}
# The reply socket and two pipes, the work dir's mount (sandboxed), then up to one
# cgroup.procs file per hierarchy.
MAX_FDS = 4 + 3
FD_SIZE = 4  # a C int, as SCM_RIGHTS carries descriptors


def _env_block():
    """Address range of this process's initial environment block, the bytes the kernel shows
    in /proc/PID/environ (fields 50 and 51 of /proc/self/stat)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[47]), int(fields[48])
    except (OSError, ValueError, IndexError):
        return 0, 0


ENV_BLOCK = _env_block()

# What a sandboxed zygote's runs confine themselves with (`_load_sandbox`); None unsandboxed.
SB = None
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
MOVE_MOUNT_F_EMPTY_PATH = 4
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = 1, 0o2000000, 0x8000
AT_FDCWD = -100
PR_SET_DUMPABLE, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 4, 22, 2
LANDLOCK_RULE_PATH_BENEATH = 1


class _Sandbox:
    """The spec's values and the C structures the runs pass to the kernel, made once."""


def _load_sandbox(path):
    """Reads the runner's spec (`key value` lines) and prepares what each run needs, so a run
    allocates nearly nothing; makes the zygote's mounts private, so no run's mount reaches it."""
    import ctypes

    spec, rules, keep = {}, [], []
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            key, _, value = line.partition(b" ")
            if key == b"landlock_rule":
                access, _, at = value.partition(b" ")
                rules.append((at, int(access)))
            elif key == b"tmp_keep":
                keep.append(value)
            elif key:
                spec[key.decode()] = value
    sb = _Sandbox()
    sb.ctypes = ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    sb.syscall = libc.syscall
    sb.syscall.restype = ctypes.c_long
    sb.mount = libc.mount
    sb.prctl = libc.prctl
    sb.nr = {k[3:]: int(v) for k, v in spec.items() if k.startswith("nr_")}
    sb.uid, sb.gid = int(spec["uid"]), int(spec["gid"])
    sb.work_root = spec["work_root"]
    sb.tmp_keep = keep
    with open(spec["filter"], "rb") as f:
        program = f.read()
    sb.filter = ctypes.create_string_buffer(program, len(program))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    sb.fprog = Fprog(len(program) // 8, ctypes.addressof(sb.filter))
    sb.cap_header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    sb.cap_data = (ctypes.c_uint32 * 6)()
    sb.handled = int(spec.get("landlock_handled", b"0"))
    sb.ruleset = (ctypes.c_uint64 * 3)(sb.handled, 0, int(spec.get("landlock_scoped", b"0")))
    sb.rules = rules
    sb.pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    sb.request_buffer = (ctypes.c_char * len(REQUEST)).from_buffer(REQUEST)
    sb.request = ctypes.addressof(sb.request_buffer)
    # Nothing of the same user outside the sandbox may read the requests it holds.
    sb.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    global SB
    SB = sb
    _mount(None, b"/", None, MS_REC | MS_PRIVATE, None)


def _sys(name, *args):
    """The system call `name` (its number from the spec); OSError if it fails."""
    c_long = SB.ctypes.c_long
    r = SB.syscall(c_long(SB.nr[name]), *[c_long(a) if type(a) is int else a for a in args])
    if r < 0:
        e = SB.ctypes.get_errno()
        raise OSError(e, "%s: %s" % (name, os.strerror(e)))
    return r


def _mount(source, target, fstype, flags, data):
    if SB.mount(source, target, fstype, SB.ctypes.c_ulong(flags), data) != 0:
        e = SB.ctypes.get_errno()
        raise OSError(e, "mount %s: %s" % (target, os.strerror(e)))


def _confine(work_dir, tmp_bytes, tree):
    """In the run's init (pid 1 of its PID namespace): its own mount, IPC and UTS namespaces, a
    private /tmp of `tmp_bytes`, the work dir (`tree`, a detached mount) alone where the work
    dirs are, and a /proc of the run's PID namespace."""
    _sys("unshare", CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE
    kept = [(at, _sys("open_tree", AT_FDCWD, at, flags)) for at in SB.tmp_keep]
    opts = b"size=%d,mode=1777,uid=%d,gid=%d" % (tmp_bytes, SB.uid, SB.gid)
    _mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opts)
    for at, fd in kept:
        os.makedirs(at, exist_ok=True)
        _sys("move_mount", fd, b"", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH)
        os.close(fd)
    os.makedirs(SB.work_root, exist_ok=True)
    _mount(b"tmpfs", SB.work_root, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64k,mode=0755")
    os.makedirs(work_dir, 0o755)
    _sys("move_mount", tree, b"", AT_FDCWD, work_dir, MOVE_MOUNT_F_EMPTY_PATH)
    os.close(tree)
    _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


def _init(reply, task_fds):
    """Forks the task (which returns) and stays as the run's init: it reaps every process of the
    namespace and, when the task ends, sends its status and exits (the kernel then kills the
    rest of the namespace)."""
    pid = os.fork()
    if pid == 0:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        return
    for fd in task_fds:
        os.close(fd)
    os.closerange(0, reply)
    os.closerange(reply + 1, 1 << 16)
    while True:
        try:
            done, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if done == pid:
            _send(reply, b'{"status": %d, "maxrss": %d}' % (status, usage.ru_maxrss))
            os._exit(0)


def _lock_down(work_dir):
    """The task's last step before its code: no capability, the Landlock ruleset of the run's
    view (its work dir and /tmp writable), the task's seccomp program."""
    ctypes = SB.ctypes
    _sys("capset", ctypes.addressof(SB.cap_header), ctypes.addressof(SB.cap_data))
    if SB.handled:
        size = ctypes.sizeof(SB.ruleset)
        ruleset = _sys("landlock_create_ruleset", ctypes.addressof(SB.ruleset), size, 0)
        for at, access in SB.rules + [(work_dir, SB.handled)]:
            fd = os.open(at, os.O_PATH | os.O_CLOEXEC)
            rule = access.to_bytes(8, sys.byteorder) + fd.to_bytes(4, sys.byteorder, signed=True)
            _sys("landlock_add_rule", ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0)
            os.close(fd)
        _sys("landlock_restrict_self", ruleset, 0)
        os.close(ruleset)
    # As a cold task after its exec: its own /proc files are its own (nothing outside its
    # namespaces can reach it anyway).
    SB.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    fprog = ctypes.addressof(SB.fprog)
    if SB.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_void_p(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "loading the seccomp filter")


def _rewrite_env_block(block):
    """Writes the run's environment (`K=V\\0` entries) over the initial block, so
    /proc/PID/environ of the run and of every process it forks shows the run's variables (the
    runner finds escaped descendants by the run-id marker there, as in cold mode). The zygote
    was started with a padding variable to make room, and zeroed the block once (`_warm_up`):
    a child writes only its own entries, so only the pages they cover are copied. Entries that
    do not fit are left out (the runner sends the markers first). Written through
    /proc/self/mem: no ctypes, whose call machinery a child would otherwise copy page by page."""
    start, end = ENV_BLOCK
    size = end - start
    if size <= 0:
        return
    if len(block) >= size:
        block = block[: block.rfind(b"\0", 0, size - 1) + 1]
    _write_memory(start, block)


def _write_memory(address, data):
    try:
        fd = os.open("/proc/self/mem", os.O_WRONLY)
        try:
            os.pwrite(fd, data, address)
        finally:
            os.close(fd)
    except OSError:
        # Some sandboxes refuse writes through /proc/self/mem: the slower way, in this child only.
        import ctypes

        ctypes.memmove(address, data, len(data))


# Requests are received here, always in the same place: a sandboxed zygote zeroes each after
# forking it, so no later run finds an earlier run's environment in the memory it inherits.
REQUEST = bytearray(MAX_REQUEST)


def _recv_request(ctl):
    """The length of one request (in REQUEST) and its fds; None at end of file (the runner
    closed the socket)."""
    fds = []
    msg, anc, flags, _ = ctl.recvmsg_into([REQUEST], _socket.CMSG_SPACE(MAX_FDS * FD_SIZE))
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            for at in range(0, len(data) - FD_SIZE + 1, FD_SIZE):
                fds.append(int.from_bytes(data[at : at + FD_SIZE], sys.byteorder, signed=True))
    if not msg and not fds:
        return None
    if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC) or len(fds) < 3:
        for fd in fds:
            os.close(fd)
        return "bad", None
    return msg, fds


def _send(fd, reply):
    """Sends one reply (bytes of JSON) on the reply socket `fd` (a plain write, one record);
    a runner that gave up on the run is not told."""
    try:
        os.write(fd, reply)
    except OSError:
        pass


def _error(message):
    """The JSON reply `{"error": message}`, escaped by hand (the zygote has no json module)."""
    escaped = "".join(
        "\\u%04x" % ord(c) if c < " " or c in '"\\' or "\ud800" <= c <= "\udfff" else c
        for c in message
    )
    return ('{"error": "%s"}' % escaped).encode()


def _preload(bundle_dir):
    """Imports the modules the project declares in pyproject.toml under [tool.antcode] preload
    (a list of module names). A failing import is reported on stderr and skipped: the run then
    imports it itself, as cold."""
    path = os.path.join(bundle_dir, "pyproject.toml")
    if not os.path.isfile(path):
        return
    try:
        import tomllib
    except ImportError:
        print("antcode zygote: preload needs Python 3.11+ (tomllib)", file=sys.stderr)
        return
    try:
        with open(path, "rb") as f:
            names = tomllib.load(f).get("tool", {}).get("antcode", {}).get("preload", [])
    except (OSError, ValueError) as e:
        print("antcode zygote: pyproject.toml: %s" % e, file=sys.stderr)
        return
    for name in names if isinstance(names, list) else []:
        try:
            __import__(str(name))
        except BaseException as e:  # noqa: B036 - a preload must never kill the zygote
            print("antcode zygote: preload %r failed: %r" % (name, e), file=sys.stderr)


def _warm_up(bundle_dir):
    """Does once, in the zygote, what each child would otherwise do first: state built on first
    use (the compiler's AST types, the JSON codecs, path functions) then sits in pages every
    child shares, instead of being built again in each, which cost about a millisecond per
    run."""
    compile("pass", "<zygote>", "exec", dont_inherit=True)
    _forget_environment()
    _parse_request(_request_example(bundle_dir))
    os.path.dirname(os.path.realpath(os.path.abspath(bundle_dir)))


def _forget_environment():
    """Empties the zygote's environment, libc's and os.environ's, and zeroes its initial block,
    so that a child adds the run's variables to nothing and writes only its own entries into
    the block. Nothing in the zygote reads the environment after this."""
    for key in list(os.environ._data):
        os.unsetenv(key)
    os.environ._data.clear()
    start, end = ENV_BLOCK
    if end > start:
        _write_memory(start, bytes(end - start))


def _request_example(bundle_dir):
    """A request as the runner sends one, for the warm-up."""
    path = os.fsencode(bundle_dir)
    return b"\0".join([path, b"1", path, b"1", b"nofile", b"1", b"1", b"A=1", b""])


def serve(bundle_dir, spec=None):
    """The zygote's loop. Returns only in a forked child: (request, reply socket fd, stdout fd,
    stderr fd, work dir mount fd or -1)."""
    if spec is not None:
        _load_sandbox(spec)
    sys.path[0] = bundle_dir
    _preload(bundle_dir)
    ctl = _socket.socket(fileno=0)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)
    running = {}  # child pid -> its reply socket's fd
    poller = select.poll()
    poller.register(0, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    _warm_up(bundle_dir)
    # Everything imported so far is shared with every child: keep the collector off those
    # pages so they stay shared instead of being copied on the first collection.
    gc.collect()
    gc.freeze()
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                # One read (poll saw bytes): reading on to the empty pipe would raise, and each
                # exception allocates pages the next fork shares again. What a burst leaves
                # behind wakes the next poll.
                os.read(wake_r, 4096)
                _reap(running)
                continue
            got = _recv_request(ctl)
            if got is None:
                os._exit(0)
            msg, fds = got
            if fds is None:
                continue
            # The request is parsed in the child: everything the zygote allocates between
            # forks is a page the next fork makes copy-on-write again.
            # Kept a plain descriptor: a socket object would cost three system calls to
            # learn what the socket is, and pages of the zygote's heap.
            reply = fds[0]
            fixed = 3 if SB is None else 4
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                if len(fds) < fixed:
                    raise OSError("the request lacks the work dir's mount")
                if SB is not None:
                    # The child is pid 1 of a PID namespace of its own.
                    _sys("unshare", CLONE_NEWPID)
                pid = os.fork()
            except OSError as e:
                if SB is not None:
                    _sys("setns", SB.pidns, CLONE_NEWPID)
                _send(reply, _error("zygote: %s" % e))
                for fd in fds:
                    os.close(fd)
                continue
            if pid == 0:
                # The child: into the run's cgroups first (so all it ever starts is inside),
                # then drop the zygote's loop state.
                _join_cgroups(reply, fds[fixed:])
                _signal.set_wakeup_fd(-1)
                _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
                ctl.detach()
                for fd in running.values():
                    os.close(fd)
                os.close(wake_r)
                os.close(wake_w)
                msg = bytes(REQUEST[:msg])
                if SB is not None:
                    os.close(SB.pidns)
                    return msg, reply, fds[1], fds[2], fds[3]
                return msg, reply, fds[1], fds[2], -1
            if SB is not None:
                # The next fork's PID namespace is made for it.
                _sys("setns", SB.pidns, CLONE_NEWPID)
                SB.ctypes.memset(SB.request, 0, msg)
            for fd in fds[1:]:
                os.close(fd)
            running[pid] = reply


def _join_cgroups(reply, procs):
    """Writes this process into each of the run's `cgroup.procs` files. A child that cannot
    join them never runs: the runner reads the error and starts the run cold."""
    try:
        for fd in procs:
            os.write(fd, b"0")
            os.close(fd)
    except OSError as e:
        _send(reply, _error("zygote: joining the run's cgroup: %s" % e))
        os._exit(127)


def _reap(running):
    # Only while children are left: a wait4 without any raises, which costs allocations.
    while running:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reply = running.pop(pid, None)
        if reply is not None:
            _send(reply, b'{"pid": %d, "status": %d, "maxrss": %d}' % (pid, status, usage.ru_maxrss))
            os.close(reply)


def become(msg, reply, out_fd, err_fd, tree):
    """Turns this forked child into the run, before any user code: the same state a cold
    `python ENTRY ARGS...` spawned by the runner starts in (sandboxed: the same sandbox too).
    Returns the entrypoint's path."""
    os.setsid()
    try:
        if SB is not None:
            work_dir, tmp_bytes, msg = msg.split(b"\0", 2)
            tmp_bytes = int(tmp_bytes)
        cwd, argv, limits, block = _parse_request(msg)
    except ValueError as e:
        # Nothing of the run has started: the runner reads this as a refused request.
        _send(reply, _error("zygote: unreadable request: %s" % e))
        os._exit(127)
    if SB is not None:
        try:
            _confine(work_dir, tmp_bytes, tree)
        except OSError as e:
            _send(reply, _error("zygote: confining the run: %s" % e))
            os._exit(127)
        # The run's init sees no signal (the task, once forked, does).
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    # The runner signals the group: it must exist before the runner learns the pid.
    try:
        os.write(reply, b'{"pid": %d}' % os.getpid())
    except OSError:
        pass  # the runner gave up on this run; it ends on its own
    if SB is not None:
        _init(reply, (out_fd, err_fd))
    os.close(reply)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    # A cold interpreter starts with nothing open past stderr.
    os.closerange(3, 1 << 16)
    # The run's environment only (the zygote emptied its own), in libc's (for subprocesses and
    # C code) and in os.environ's mapping of bytes (shared with os.environb), filled directly:
    # its MutableMapping methods cost a copy-on-write page fault for nearly every object they
    # touch.
    data = os.environ._data
    for entry in block.split(b"\0"):
        if entry:
            key, _, value = entry.partition(b"=")
            os.putenv(key, value)
            data[key] = value
    _rewrite_env_block(block)
    os.chdir(cwd)
    # As the runner's cold spawn: never above the current hard limit (raising needs privileges).
    for res, soft, hard in limits:
        cur = resource.getrlimit(res)[1]
        if cur != resource.RLIM_INFINITY:
            hard = min(hard, cur)
        resource.setrlimit(res, (min(soft, hard), hard))
    # A preload may have cached the zygote's temporary directory.
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None
    if SB is not None:
        _lock_down(work_dir)
    sys.argv[:] = argv
    entry = os.path.abspath(argv[0])
    sys.path[0] = os.path.dirname(os.path.realpath(entry))
    return entry


def _parse_request(msg):
    """(cwd, argv, limits, environment block) of a request; ValueError if it is malformed.
    Arguments are decoded as the interpreter decodes its command line (`os.fsdecode`)."""
    fields = msg.split(b"\0")
    at = 0

    def take():
        nonlocal at
        if at >= len(fields) - 1:  # the last is what follows the final NUL
            raise ValueError("request ends early")
        at += 1
        return fields[at - 1]

    cwd = take()
    argv = [os.fsdecode(take()) for _ in range(int(take()))]
    if not argv:
        raise ValueError("no entrypoint")
    limits = []
    for _ in range(int(take())):
        name, soft, hard = take(), int(take()), int(take())
        if name not in RLIMITS:
            raise ValueError("unknown limit %r" % name)
        limits.append((RLIMITS[name], soft, hard))
    consumed = sum(len(f) + 1 for f in fields[:at])
    return cwd, argv, limits, msg[consumed:]


def run(entry):
    """Runs the entrypoint as the interpreter runs a script: a fresh __main__ module, the
    source compiled under its absolute path, an uncaught exception printed by sys.excepthook
    (without this function's frame) and exit status 1; then exits (see `_exit`)."""
    main = type(sys)("__main__")
    main.__file__ = entry
    main.__builtins__ = builtins
    main.__cached__ = None
    main.__loader__ = SourceFileLoader("__main__", entry)
    sys.modules["__main__"] = main
    status, interrupted = 0, False
    try:
        with open(entry, "rb") as f:
            code = compile(f.read(), entry, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:  # noqa: B036 - the interpreter's own top level does the same
        # Drop this function's frame: the traceback starts in the entrypoint, as cold.
        e.__traceback__ = e.__traceback__.tb_next or e.__traceback__
        sys.excepthook(type(e), e, e.__traceback__)
        status, interrupted = 1, isinstance(e, KeyboardInterrupt)
        del e
    _exit(status, main, interrupted)


def _exit_status(e):
    """The exit status of a SystemExit, printing a non-integer code as the interpreter does."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    try:
        print(e.code, file=sys.stderr)
    except Exception:  # noqa: BLE001 - nothing left to report to
        pass
    return 1


def _exit(status, main, interrupted):
    """The interpreter's exit, without tearing down what the zygote imported: that would touch
    (and so copy) every shared page and costs several milliseconds per run. In the cold order:
    join non-daemon threads, run atexit callbacks, flush stdio; then release what the script's
    own module holds (so its open files are flushed and closed and its finalizers run)."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
    except BaseException:  # noqa: B036 - as the interpreter: report and go on exiting
        sys.excepthook(*sys.exc_info())
    atexit._run_exitfuncs()
    main.__dict__.clear()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: B036
            # The interpreter's status when it cannot flush stdio at exit.
            status = 120
    if interrupted:
        # As the interpreter does: die of SIGINT so the parent sees the signal.
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGINT)
    os._exit(status)


if __name__ == "__main__":
    try:
        child = serve(*sys.argv[1:3])
        entry = become(*child)
    except BaseException as e:  # noqa: B036
        # In the zygote this is fatal (the runner sees it die and starts another); in a child
        # the run fails before any user code, with the reason on its stderr.
        print("antcode zygote: %r" % (e,), file=sys.stderr)
        sys.stderr.flush()
        os._exit(127)
    del child
    run(entry)
