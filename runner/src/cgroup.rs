//! Per-run control groups: the kernel's bounds on a run's memory, CPU and processes, its peak
//! memory, out-of-memory detection, and killing every process of a run at its end.
//!
//! Each run gets its own cgroup, made when the run starts and removed when it is over (making
//! and removing the directories costs about 0.1-0.3 ms per run, so there is no pool). They live
//! under a directory the runner owns, below the runner's own cgroup in each hierarchy (so a
//! runner started inside a container or a service's cgroup stays inside it):
//!
//! * **cgroup v1** (one hierarchy per controller): `<mount>/<own>/antcode/<runner>/<run>` in each
//!   of the `memory`, `pids` and `cpu` hierarchies, with `memory.limit_in_bytes` (and
//!   `memory.memsw.limit_in_bytes` where swap is accounted, so a run cannot swap past it),
//!   `pids.max`, `cpu.cfs_quota_us` over `cpu.cfs_period_us` and `cpu.shares`;
//! * **cgroup v2** (one unified hierarchy): one directory with `memory.max`, `memory.swap.max`
//!   (0), `pids.max`, `cpu.max` and `cpu.weight`; the controllers are enabled down the path
//!   (`cgroup.subtree_control`). A runner whose own v2 cgroup holds processes first moves itself
//!   into a leaf `antcode-runner` beside it (the kernel lets controllers be delegated only from a
//!   cgroup without processes).
//!
//! Each controller is looked up on its own: a machine may mount some controllers as v1 and the
//! rest in the v2 hierarchy. A controller that is missing, or whose directories the runner
//! cannot write, is left out and named by [`Cgroups::missing`] (the start-up report); the
//! rlimits of [`crate::process::Limits`] stay as the floor either way.
//!
//! The child joins its cgroups **before it execs** (or, warm, before the zygote's child runs any
//! user code): the runner opens each `cgroup.procs` of the run and the child writes `0` (itself)
//! into each ([`attach_self`], async-signal-safe), so everything it ever starts is inside.
//!
//! At the end of a run (exit, timeout, cancel, shutdown) [`RunCgroup::kill_all`] kills every
//! process in the cgroup, whatever it did to its session, process group or environment: v2
//! writes `cgroup.kill`; v1 (and v2 before 5.14) first sets `pids.max` to 0, so nothing in the
//! cgroup can fork any more, then SIGKILLs what `cgroup.procs` lists until it lists nothing.
//! Then the directories are removed.
//!
//! Peak memory is `memory.max_usage_in_bytes` (v1) or `memory.peak` (v2): all the run's
//! processes together, page cache included. Out-of-memory kills are counted by the kernel
//! (`oom_kill` in `memory.oom_control` for v1, in `memory.events` for v2); the run then fails
//! with "memory limit N MiB exceeded". The OOM killer only ever picks processes inside the
//! run's cgroup, never the runner.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use antcode_core::model::RunLimits;

/// The controllers a run is bounded by.
pub const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// `cpu.cfs_period_us` and the period of `cpu.max`, microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// How long [`RunCgroup::kill_all`] keeps killing before it gives up (a process stuck in the
/// kernel, e.g. on a dead NFS mount, cannot be killed sooner than it returns).
const KILL_FOR: Duration = Duration::from_secs(5);

/// Which cgroup interface a directory speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where one controller's runs are made: the runner's directory in that controller's
/// hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    version: Version,
    /// `<mount>/<own>/antcode/<runner>`.
    dir: PathBuf,
    /// The controllers this directory carries (one for v1; every v2 one found).
    controllers: Vec<&'static str>,
}

/// The runner's cgroups: where each controller's run directories go, and what is missing.
#[derive(Debug)]
pub struct Cgroups {
    places: Vec<Place>,
    missing: Vec<String>,
}

/// One mounted hierarchy, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    version: Version,
    path: PathBuf,
    /// v1: the controllers it carries (from the super options).
    controllers: Vec<String>,
}

/// Parses `/proc/self/mountinfo` for cgroup mounts.
fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(path) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next(), right.next(), right.next().unwrap_or(""));
        let version = match fstype {
            Some("cgroup") => Version::V1,
            Some("cgroup2") => Version::V2,
            _ => continue,
        };
        mounts.push(Mount {
            version,
            path: PathBuf::from(unescape_mount(path)),
            controllers: options.split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses `/proc/self/cgroup`: (v1 controllers or empty for v2, the path in that hierarchy).
fn parse_own(proc_cgroup: &str) -> Vec<(Vec<String>, String)> {
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let ctrls = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((ctrls, path.to_string()))
        })
        .collect()
}

/// `<mount>/<own path>`, the own path taken as relative.
fn join_own(mount: &Path, own: &str) -> PathBuf {
    mount.join(own.trim_start_matches('/'))
}

/// For each controller: the v1 hierarchy carrying it and the runner's place in it, else the v2
/// hierarchy if it offers the controller. Pure: the v2 check is `v2_offers`.
fn plan(
    mounts: &[Mount],
    own: &[(Vec<String>, String)],
    v2_offers: &dyn Fn(&Path, &str) -> bool,
) -> Vec<(&'static str, Version, PathBuf)> {
    let mut out = Vec::new();
    for ctrl in CONTROLLERS {
        let v1 = mounts
            .iter()
            .find(|m| m.version == Version::V1 && m.controllers.iter().any(|c| c == ctrl));
        if let Some(m) = v1 {
            // The runner's path in this hierarchy; a hierarchy also mounted elsewhere is the
            // same tree, so the first mount will do.
            let path = own
                .iter()
                .find(|(c, _)| c.iter().any(|c| c == ctrl))
                .map(|(_, p)| p.as_str())
                .unwrap_or("/");
            out.push((ctrl, Version::V1, join_own(&m.path, path)));
            continue;
        }
        let v2 = mounts.iter().find(|m| m.version == Version::V2);
        if let Some(m) = v2 {
            let path = own
                .iter()
                .find(|(c, _)| c.is_empty())
                .map(|(_, p)| p.as_str())
                .unwrap_or("/");
            let dir = join_own(&m.path, path);
            if v2_offers(&dir, ctrl) {
                out.push((ctrl, Version::V2, dir));
            }
        }
    }
    out
}

/// Whether the v2 cgroup `dir` can hand `ctrl` to its children.
fn v2_offers(dir: &Path, ctrl: &str) -> bool {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().any(|c| c == ctrl))
        .unwrap_or(false)
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Runner and run names as directory names.
fn dir_name(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .take(100)
        .collect()
}

/// Enables `controllers` for the children of the v2 cgroup `dir`. If `dir` holds processes (the
/// kernel refuses then, EBUSY), they are first moved into a leaf `antcode-runner` below it.
fn v2_delegate(dir: &Path, controllers: &[&str]) -> io::Result<()> {
    let line: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    let line = line.join(" ");
    match write(&dir.join("cgroup.subtree_control"), &line) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let leaf = dir.join("antcode-runner");
            mkdir(&leaf)?;
            for pid in fs::read_to_string(dir.join("cgroup.procs"))?.split_whitespace() {
                // A process that exited meanwhile is fine.
                let _ = write(&leaf.join("cgroup.procs"), pid);
            }
            write(&dir.join("cgroup.subtree_control"), &line)
        }
        r => r,
    }
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

impl Cgroups {
    /// Finds the hierarchies and makes the runner's directory in each (`runner` names it,
    /// normally the worker id). What cannot be made is reported by [`Cgroups::missing`].
    pub fn for_runner(runner: &str) -> Cgroups {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let planned = plan(&parse_mounts(&mountinfo), &parse_own(&own), &v2_offers);
        Cgroups::make(planned, runner)
    }

    /// No cgroups at all (every guarantee they give is reported missing).
    pub fn none() -> Cgroups {
        Cgroups::make(Vec::new(), "")
    }

    fn make(planned: Vec<(&'static str, Version, PathBuf)>, runner: &str) -> Cgroups {
        let mut places: Vec<Place> = Vec::new();
        let mut missing = Vec::new();
        let runner = dir_name(runner);
        // The v2 controllers share one directory.
        let v2: Vec<&'static str> = planned
            .iter()
            .filter(|(_, v, _)| *v == Version::V2)
            .map(|(c, _, _)| *c)
            .collect();
        let mut v2_done = false;
        for (ctrl, version, own) in &planned {
            if *version == Version::V2 && v2_done {
                continue;
            }
            let controllers = match version {
                Version::V1 => vec![*ctrl],
                Version::V2 => v2.clone(),
            };
            let made = (|| -> io::Result<PathBuf> {
                let top = own.join("antcode");
                let dir = top.join(&runner);
                if *version == Version::V2 {
                    v2_delegate(own, &controllers)?;
                    mkdir(&top)?;
                    v2_delegate(&top, &controllers)?;
                    mkdir(&dir)?;
                    v2_delegate(&dir, &controllers)?;
                } else {
                    mkdir(&top)?;
                    mkdir(&dir)?;
                }
                Ok(dir)
            })();
            match made {
                Ok(dir) => places.push(Place {
                    version: *version,
                    dir,
                    controllers,
                }),
                Err(e) => {
                    for c in &controllers {
                        missing.push(format!("cgroup {c} controller unusable ({e})"));
                    }
                }
            }
            if *version == Version::V2 {
                v2_done = true;
            }
        }
        for ctrl in CONTROLLERS {
            let found = planned.iter().any(|(c, _, _)| *c == ctrl);
            if !found {
                missing.push(format!("cgroup {ctrl} controller not mounted"));
            }
        }
        let cg = Cgroups { places, missing };
        for m in &cg.missing {
            tracing::warn!("{m}: {}", consequence_of(m));
        }
        cg
    }

    /// The guarantees this runner cannot give, one line each with what it means (for the
    /// start-up report and `GET /workers`). Empty when every controller is in place.
    pub fn missing(&self) -> Vec<String> {
        self.missing
            .iter()
            .map(|m| format!("{m}: {}", consequence_of(m)))
            .collect()
    }

    /// Whether `ctrl` bounds runs here.
    pub fn has(&self, ctrl: &str) -> bool {
        self.places.iter().any(|p| p.controllers.contains(&ctrl))
    }

    /// Makes the cgroup of one run (`name` unique per attempt), with `limits` written. If any
    /// step fails, what was made is removed and the error returned (the caller fails the run:
    /// starting it unbounded would break the guarantees the start-up report promised).
    pub fn create(&self, name: &str, limits: &RunLimits) -> io::Result<RunCgroup> {
        let name = dir_name(name);
        let mut run = RunCgroup {
            dirs: Vec::with_capacity(self.places.len()),
            procs: Vec::with_capacity(self.places.len()),
            memory_mb: limits.memory_mb,
        };
        for place in &self.places {
            let dir = place.dir.join(&name);
            if let Err(e) = fs::create_dir(&dir) {
                // Left by a runner that died mid-run: whatever is still in it goes, then the
                // directory, which is made again.
                let retried = match e.kind() {
                    io::ErrorKind::AlreadyExists => {
                        drop(RunCgroup::one(place, dir.clone()));
                        fs::create_dir(&dir)
                    }
                    _ => Err(e),
                };
                if let Err(e) = retried {
                    run.remove();
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display())));
                }
            }
            run.dirs
                .push((place.version, place.controllers.clone(), dir.clone()));
            let set = || -> io::Result<OwnedFd> {
                for (file, value) in settings(place.version, &place.controllers, limits) {
                    let path = dir.join(file);
                    // Optional files (swap accounting off, an older kernel) are skipped.
                    if file_is_optional(file) && !path.exists() {
                        continue;
                    }
                    write(&path, &value)?;
                }
                let procs = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(dir.join("cgroup.procs"))?;
                Ok(OwnedFd::from(procs))
            };
            match set() {
                Ok(fd) => run.procs.push(fd),
                Err(e) => {
                    run.remove();
                    return Err(e);
                }
            }
        }
        Ok(run)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        // Only empty directories go: a run still being cleaned up keeps its own.
        for place in &self.places {
            let _ = fs::remove_dir(&place.dir);
        }
    }
}

/// What a missing controller means for runs.
fn consequence_of(missing: &str) -> &'static str {
    if missing.contains("memory") {
        "runs' memory is bounded only by RLIMIT_AS per process, out-of-memory is not reported as such and peak memory is per process"
    } else if missing.contains("pids") {
        "the number of processes a run may start is not bounded (a fork bomb is stopped only by the host's limits)"
    } else {
        "runs' CPU use is not bounded"
    }
}

/// Files whose absence is not an error.
fn file_is_optional(file: &str) -> bool {
    matches!(
        file,
        "memory.memsw.limit_in_bytes" | "memory.swap.max" | "cpu.shares" | "cpu.weight"
    )
}

/// The files and values that bound one run, for a directory of `version` carrying
/// `controllers`. Pure: the one place the numbers are chosen.
pub fn settings(
    version: Version,
    controllers: &[&str],
    limits: &RunLimits,
) -> Vec<(&'static str, String)> {
    let bytes = limits.memory_mb.saturating_mul(1 << 20).to_string();
    let quota = (limits.cpu_millicores.saturating_mul(CPU_PERIOD_US) / 1000).max(1000);
    let mut out = Vec::new();
    for ctrl in controllers {
        match (version, *ctrl) {
            (Version::V1, "memory") => {
                out.push(("memory.limit_in_bytes", bytes.clone()));
                out.push(("memory.memsw.limit_in_bytes", bytes.clone()));
            }
            (Version::V2, "memory") => {
                out.push(("memory.max", bytes.clone()));
                out.push(("memory.swap.max", "0".into()));
            }
            (_, "pids") => out.push(("pids.max", limits.pids.to_string())),
            (Version::V1, "cpu") => {
                out.push(("cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
                out.push(("cpu.cfs_quota_us", quota.to_string()));
                let shares = (limits.cpu_millicores.saturating_mul(1024) / 1000).max(2);
                out.push(("cpu.shares", shares.to_string()));
            }
            (Version::V2, "cpu") => {
                out.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}")));
                let weight = (limits.cpu_millicores / 10).clamp(1, 10_000);
                out.push(("cpu.weight", weight.to_string()));
            }
            _ => {}
        }
    }
    out
}

/// One run's cgroup: a directory per hierarchy, and its open `cgroup.procs` files for the child
/// to join through.
#[derive(Debug)]
pub struct RunCgroup {
    dirs: Vec<(Version, Vec<&'static str>, PathBuf)>,
    procs: Vec<OwnedFd>,
    memory_mb: u64,
}

/// The most hierarchies a run can be in (one per controller, v1).
pub const MAX_FDS: usize = CONTROLLERS.len();

/// The descriptors a child writes itself into, as a copyable value for a pre-exec hook.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attach {
    fds: [RawFd; MAX_FDS],
    len: usize,
}

/// Moves the calling process into each cgroup of `attach`. Only `write(2)`: safe between fork
/// and exec.
pub fn attach_self(attach: &Attach) -> io::Result<()> {
    for &fd in &attach.fds[..attach.len] {
        // SAFETY: writing one byte from a static buffer to a descriptor the parent keeps open
        // until the child has exec'd.
        let r = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if r != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl RunCgroup {
    fn one(place: &Place, dir: PathBuf) -> RunCgroup {
        RunCgroup {
            dirs: vec![(place.version, place.controllers.clone(), dir)],
            procs: Vec::new(),
            memory_mb: 0,
        }
    }

    /// What a pre-exec hook needs to join this cgroup ([`attach_self`]).
    pub fn attach(&self) -> Attach {
        let mut a = Attach::default();
        for (slot, fd) in a.fds.iter_mut().zip(&self.procs) {
            *slot = fd.as_raw_fd();
            a.len += 1;
        }
        a
    }

    /// The open `cgroup.procs` files (for a warm child, which receives them over its socket).
    pub fn procs_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// Moves process `pid` into this cgroup (from the parent's side).
    pub fn add(&self, pid: i32) -> io::Result<()> {
        for fd in &self.procs {
            let mut f = File::from(fd.try_clone()?);
            f.write_all(pid.to_string().as_bytes())?;
        }
        Ok(())
    }

    fn dir_of(&self, ctrl: &str) -> Option<(Version, &Path)> {
        self.dirs
            .iter()
            .find(|(_, c, _)| c.contains(&ctrl))
            .map(|(v, _, d)| (*v, d.as_path()))
    }

    /// The memory limit, MiB (for the error message).
    pub fn memory_mb(&self) -> u64 {
        self.memory_mb
    }

    /// The most memory the run's processes held together, in KiB, if the memory controller
    /// bounds this run.
    pub fn peak_kb(&self) -> Option<i64> {
        let (version, dir) = self.dir_of("memory")?;
        let file = match version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        let bytes: i64 = fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(bytes / 1024)
    }

    /// How many processes of the run the kernel's OOM killer killed (0 if it killed none or
    /// the memory controller does not bound this run).
    pub fn oom_kills(&self) -> u64 {
        let Some((version, dir)) = self.dir_of("memory") else {
            return 0;
        };
        let file = match version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        fs::read_to_string(dir.join(file))
            .map(|s| oom_kill_count(&s))
            .unwrap_or(0)
    }

    /// Kills every process in the run's cgroup and waits until it is empty (bounded by
    /// `KILL_FOR`); returns how many were signalled. Blocking.
    pub fn kill_all(&self) -> usize {
        let Some((version, _, dir)) = self.dirs.first() else {
            return 0;
        };
        // Nothing in the cgroup may fork from now on (v1 has no cgroup.kill).
        if let Some((_, pids)) = self.dir_of("pids") {
            let _ = write(&pids.join("pids.max"), "0");
        }
        if *version == Version::V2 && write(&dir.join("cgroup.kill"), "1").is_ok() {
            wait_empty(dir);
            return 0;
        }
        let started = Instant::now();
        let mut killed = 0;
        loop {
            let pids = list_procs(dir);
            if pids.is_empty() || started.elapsed() > KILL_FOR {
                return killed;
            }
            for pid in pids {
                // SAFETY: kill(2) with a pid read from the run's own cgroup.
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    killed += 1;
                }
            }
            // Give the dying a moment to leave the list.
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Kills what is left and removes the directories. Blocking.
    pub fn remove(&mut self) {
        self.kill_all();
        self.procs.clear();
        for (_, _, dir) in self.dirs.drain(..) {
            // A process that was just killed can hold the directory for a moment.
            let started = Instant::now();
            while let Err(e) = fs::remove_dir(&dir) {
                if e.kind() == io::ErrorKind::NotFound {
                    break;
                }
                if started.elapsed() > KILL_FOR {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a run's cgroup");
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            self.remove();
        }
    }
}

fn list_procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_empty(dir: &Path) {
    let started = Instant::now();
    while !list_procs(dir).is_empty() && started.elapsed() < KILL_FOR {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The `oom_kill N` line of `memory.oom_control` (v1) or `memory.events` (v2).
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
40 35 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 35 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
42 35 0:37 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn v1_controllers_are_found_in_their_own_hierarchies_below_the_runners_cgroup() {
        let own = parse_own("4:memory:/svc/a\n3:pids:/\n2:cpu,cpuacct:/svc\n0::/\n");
        let planned = plan(&parse_mounts(MOUNTINFO), &own, &|_, _| true);
        assert_eq!(
            planned,
            vec![
                (
                    "memory",
                    Version::V1,
                    PathBuf::from("/sys/fs/cgroup/memory/svc/a")
                ),
                ("pids", Version::V1, PathBuf::from("/sys/fs/cgroup/pids")),
                (
                    "cpu",
                    Version::V1,
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/svc")
                ),
            ]
        );
    }

    #[test]
    fn v2_serves_what_v1_does_not_mount_if_it_offers_it() {
        let mountinfo = "36 35 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
             40 35 0:35 / /sys/fs/cgroup\\040v1/memory rw - cgroup cgroup rw,memory\n";
        let own = parse_own("4:memory:/\n0::/user.slice/x.service\n");
        let offers = |dir: &Path, ctrl: &str| {
            dir == Path::new("/sys/fs/cgroup/user.slice/x.service") && ctrl == "pids"
        };
        let planned = plan(&parse_mounts(mountinfo), &own, &offers);
        assert_eq!(
            planned,
            vec![
                (
                    "memory",
                    Version::V1,
                    PathBuf::from("/sys/fs/cgroup v1/memory")
                ),
                (
                    "pids",
                    Version::V2,
                    PathBuf::from("/sys/fs/cgroup/user.slice/x.service")
                ),
            ],
            "cpu is offered nowhere"
        );
    }

    #[test]
    fn limits_become_the_files_of_each_version() {
        let limits = RunLimits {
            memory_mb: 512,
            cpu_millicores: 1500,
            pids: 64,
            tmp_mb: 1,
        };
        let v2 = settings(Version::V2, &["memory", "pids", "cpu"], &limits);
        let expect = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            pairs.iter().map(|(f, v)| (*f, v.to_string())).collect()
        };
        assert_eq!(
            v2,
            expect(&[
                ("memory.max", "536870912"),
                ("memory.swap.max", "0"),
                ("pids.max", "64"),
                ("cpu.max", "150000 100000"),
                ("cpu.weight", "150"),
            ])
        );
        let v1 = settings(
            Version::V1,
            &["cpu"],
            &RunLimits {
                cpu_millicores: 1,
                ..limits
            },
        );
        assert_eq!(
            v1,
            expect(&[
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "1000"),
                ("cpu.shares", "2"),
            ]),
            "the kernel's least quota is 1 ms"
        );
        assert_eq!(
            settings(Version::V1, &["memory"], &limits)[1],
            ("memory.memsw.limit_in_bytes", "536870912".to_string())
        );
    }

    #[test]
    fn oom_kills_are_read_from_either_version() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }
}
