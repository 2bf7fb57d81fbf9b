//! The platform's ports, shut out of runs whose network policy is `full`.
//!
//! A cgroup v2 directory of the runner's own carries a small BPF program on its `connect4`,
//! `connect6`, `sendmsg4` and `sendmsg6` hooks: a TCP or UDP connect, or a UDP datagram, from a
//! process in it to one of the platform's ports (control, the edge, the broker, the blob store,
//! the database: whatever the runner is told) fails with `EPERM`, on any host; everything else
//! goes on. Each sandboxed
//! `full` run and each zygote is put in the directory before it may start, and what they fork
//! stays there; the task cannot leave (no cgroup filesystem is in its view). The cost per run is
//! one write to `cgroup.procs`. Runs with an allow-list are left out: the list is what the task
//! asked for, platform ports included.
//!
//! This works where cgroup v2 is mounted at all, even with no controller enabled in it (the v1
//! hybrid layout: BPF programs attach to v2 directories regardless). Landlock could shut the
//! ports out too, but it can only allow ports: a domain allowing all others holds some 65,000
//! rules, and every run's own Landlock layer would copy them (about 8 ms per run, measured).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_INET4_CONNECT: u32 = 10;
const BPF_CGROUP_INET6_CONNECT: u32 = 11;
const BPF_CGROUP_UDP4_SENDMSG: u32 = 14;
const BPF_CGROUP_UDP6_SENDMSG: u32 = 15;
/// The hooks the program is attached to: TCP and UDP connects, and UDP datagrams sent without
/// a connect.
const HOOKS: [u32; 4] = [
    BPF_CGROUP_INET4_CONNECT,
    BPF_CGROUP_INET6_CONNECT,
    BPF_CGROUP_UDP4_SENDMSG,
    BPF_CGROUP_UDP6_SENDMSG,
];
/// `offsetof(struct bpf_sock_addr, user_port)`: the destination port, network byte order.
const USER_PORT: i16 = 24;

/// One BPF instruction, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type` (the rest zero).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    rest: [u8; 56],
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    rest: [u8; 112],
}

/// The program: `return port in ports ? 0 : 1` (0 refuses the connect).
fn program(ports: &[u16]) -> Vec<Insn> {
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
                           // r2 = ctx->user_port (r1 is the context); dst in the low nibble, src in the high one.
    let mut insns = vec![Insn {
        code: LDX_W,
        regs: 2 | (1 << 4),
        off: USER_PORT,
        imm: 0,
    }];
    let n = ports.len() as i16;
    for (i, port) in ports.iter().enumerate() {
        // The port as the context holds it: its network-order bytes read as a host u32.
        let wanted = u16::from_ne_bytes(port.to_be_bytes()) as i32;
        insns.push(Insn {
            code: JEQ_K,
            regs: 2,
            // To the refusal, past the remaining tests and the two allowing instructions.
            off: n - i as i16 - 1 + 2,
            imm: wanted,
        });
    }
    for ret in [1, 0] {
        insns.push(Insn {
            code: MOV64_K,
            regs: 0,
            off: 0,
            imm: ret,
        });
        insns.push(Insn {
            code: EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        });
    }
    insns
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` of the command's layout and size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

fn load(insns: &[Insn], attach: u32) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *b"antcode_ports\0\0\0",
        prog_ifindex: 0,
        expected_attach_type: attach,
        rest: [0; 56],
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo`.
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        fs.starts_with("cgroup2 ")
            .then(|| mount.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// Removes the empty directories of guards whose process is gone: a runner that exits without
/// dropping its sandbox (or crashes) leaves its own.
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("antcode-ports-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Fails, and so keeps it, while a process is still in it.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// The runner's cgroup v2 directory with the programs attached.
pub struct PortGuard {
    dir: PathBuf,
    procs: PathBuf,
    ports: Vec<u16>,
    _programs: Vec<OwnedFd>,
}

impl PortGuard {
    /// Makes the directory (named after this process and this guard) and attaches the programs
    /// that refuse connects to `ports`.
    pub fn start(ports: &[u16]) -> io::Result<PortGuard> {
        let root = cgroup2_root().ok_or_else(|| io::Error::other("cgroup v2 is not mounted"))?;
        sweep(&root);
        // One per guard: a process may hold several runners (tests, benchmarks), and each
        // removes its own directory when it stops.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.join(format!("antcode-ports-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let attached = Self::attach(&dir, ports);
        if attached.is_err() {
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(PortGuard {
            procs: dir.join("cgroup.procs"),
            dir,
            ports: ports.to_vec(),
            _programs: attached?,
        })
    }

    fn attach(dir: &Path, ports: &[u16]) -> io::Result<Vec<OwnedFd>> {
        let target = std::fs::File::open(dir)?;
        let insns = program(ports);
        let mut programs = Vec::with_capacity(HOOKS.len());
        for hook in HOOKS {
            let prog = load(&insns, hook)?;
            let mut attr = ProgAttach {
                target_fd: target.as_raw_fd() as u32,
                attach_bpf_fd: prog.as_raw_fd() as u32,
                attach_type: hook,
                attach_flags: 0,
                rest: [0; 112],
            };
            bpf(BPF_PROG_ATTACH, &mut attr)?;
            programs.push(prog);
        }
        Ok(programs)
    }

    /// The ports shut out.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Puts `pid` (and what it forks from now on) under the guard.
    pub fn join(&self, pid: i32) -> io::Result<()> {
        std::fs::write(&self.procs, pid.to_string())
            .map_err(|e| io::Error::new(e.kind(), format!("joining the ports' guard: {e}")))
    }
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        // Only an empty directory goes; one that still holds a process stays until it ends.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_jumps_to_the_refusal_from_every_test() {
        let insns = program(&[5432, 6379]);
        // load, two tests, allow (mov, exit), refuse (mov, exit)
        assert_eq!(insns.len(), 7);
        let refusal = insns.len() - 2;
        for (i, insn) in insns.iter().enumerate().skip(1).take(2) {
            assert_eq!(i + 1 + insn.off as usize, refusal, "test {i}");
        }
        assert_eq!(insns[refusal].imm, 0);
        assert_eq!(insns[refusal - 2].imm, 1);
        assert_eq!(
            insns[1].imm,
            u16::from_ne_bytes(5432u16.to_be_bytes()) as i32
        );
    }
}
