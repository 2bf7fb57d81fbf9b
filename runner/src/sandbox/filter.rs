//! The two kernel filters a task starts under: a seccomp program (system calls) and a Landlock
//! ruleset (file system access, signals, abstract sockets). Both are built in the runner, once
//! per runner (seccomp) or per run (Landlock paths), and only loaded in the child.

use libc::{c_long, sock_filter};

/// `AUDIT_ARCH_X86_64`: the only ABI a task may call the kernel with.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// x32 system calls are numbered from here; they would bypass a filter written for x86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Every `CLONE_NEW*` flag: a task may fork and make threads, never new namespaces (a user
/// namespace would hand it a full set of capabilities over whatever it creates inside).
pub const NAMESPACE_FLAGS: u32 = 0x0000_0080 // CLONE_NEWTIME
    | 0x0002_0000 // CLONE_NEWNS
    | 0x0200_0000 // CLONE_NEWCGROUP
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000; // CLONE_NEWNET

/// System calls a job never needs: tracing and reading other processes, mounting, loading
/// code into the kernel, keyrings, kernel-wide clocks and switches, and the large attack
/// surfaces (io_uring, userfaultfd, perf) that sandboxes routinely close. Each fails with EPERM.
const DENIED: &[c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_settimeofday,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Offsets in `struct seccomp_data`: the call number, the ABI, the low half of the first argument.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// The seccomp program: another ABI kills the process; x32 calls and the `DENIED` ones fail
/// with EPERM; `clone` and `unshare` fail with EPERM when asked for a namespace; `clone3`
/// (whose flags sit behind a pointer a filter cannot read) fails with ENOSYS, which makes libc
/// fall back to `clone`; everything else is allowed.
pub fn seccomp_program() -> Vec<sock_filter> {
    program(&[], 0)
}

/// Namespaces a zygote makes for each run it forks (`unshare` only; `clone` gets none): PID
/// (before the fork), then mount, IPC and UTS (in the child). Never a user or network
/// namespace: a zygote holds `CAP_SYS_ADMIN` in its own user namespace, and a network
/// namespace owned by it would hand it `CAP_NET_ADMIN` over a network stack.
pub const ZYGOTE_NAMESPACES: u32 = 0x0002_0000 // CLONE_NEWNS
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x2000_0000; // CLONE_NEWPID

/// The zygote's program: the task's, except that `mount`, `open_tree`, `move_mount` and
/// `setns` are allowed, and `unshare` may ask for [`ZYGOTE_NAMESPACES`]. Each forked run loads the task's
/// program on top (filters stack), before any of its code runs.
pub fn zygote_seccomp_program() -> Vec<sock_filter> {
    program(
        &[
            libc::SYS_mount,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_setns,
        ],
        ZYGOTE_NAMESPACES,
    )
}

/// The program with `allowed` taken off [`DENIED`] and `unshare` allowed the `ns` flags.
fn program(allowed: &[c_long], ns: u32) -> Vec<sock_filter> {
    let deny = errno(libc::EPERM);
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, deny),
        jump(JEQ_K, libc::SYS_clone3 as u32, 0, 1),
        stmt(RET_K, errno(libc::ENOSYS)),
    ];
    for &nr in DENIED.iter().filter(|nr| !allowed.contains(nr)) {
        p.push(jump(JEQ_K, nr as u32, 0, 1));
        p.push(stmt(RET_K, deny));
    }
    for (nr, ok) in [(libc::SYS_clone, 0), (libc::SYS_unshare, ns)] {
        p.extend([
            jump(JEQ_K, nr as u32, 0, 4),
            stmt(LD_W_ABS, ARG0_LOW),
            jump(JSET_K, NAMESPACE_FLAGS & !ok, 0, 1),
            stmt(RET_K, deny),
            stmt(RET_K, libc::SECCOMP_RET_ALLOW),
        ]);
    }
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    p
}

/// A program as the kernel reads it (`struct sock_filter` after `struct sock_filter`), for a
/// process that loads it itself (a zygote's runs).
pub fn program_bytes(p: &[sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len() * 8);
    for ins in p {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.extend([ins.jt, ins.jf]);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// Landlock's file system rights (`LANDLOCK_ACCESS_FS_*`).
pub mod fs {
    pub const EXECUTE: u64 = 1 << 0;
    pub const WRITE_FILE: u64 = 1 << 1;
    pub const READ_FILE: u64 = 1 << 2;
    pub const READ_DIR: u64 = 1 << 3;
    /// Everything ABI 1 knows (bits 0-12: the above plus removing and making entries).
    pub const ABI1: u64 = (1 << 13) - 1;
    pub const REFER: u64 = 1 << 13;
    pub const TRUNCATE: u64 = 1 << 14;
    pub const IOCTL_DEV: u64 = 1 << 15;
    pub const READ: u64 = EXECUTE | READ_FILE | READ_DIR;
}

/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL` (ABI 6): no connecting to an
/// abstract socket made outside the sandbox, no signal to a process outside it.
pub const SCOPES: u64 = 0b11;

/// The file system rights an ABI version knows.
pub fn handled_fs(abi: i32) -> u64 {
    let mut all = fs::ABI1;
    if abi >= 2 {
        all |= fs::REFER;
    }
    if abi >= 3 {
        all |= fs::TRUNCATE;
    }
    if abi >= 5 {
        all |= fs::IOCTL_DEV;
    }
    all
}

/// `struct landlock_ruleset_attr` (the scope field from ABI 6; an older kernel accepts the
/// longer struct as long as the fields it does not know are zero).
#[repr(C)]
pub struct RulesetAttr {
    pub handled_access_fs: u64,
    pub handled_access_net: u64,
    pub scoped: u64,
}

/// `struct landlock_path_beneath_attr`.
#[repr(C, packed)]
pub struct PathBeneath {
    pub allowed_access: u64,
    pub parent_fd: i32,
}

pub const RULE_PATH_BENEATH: libc::c_int = 1;
const CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The Landlock ABI the kernel offers, if any.
pub fn landlock_abi() -> Option<i32> {
    // SAFETY: the version query reads no memory (null attribute, size 0).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        for p in [seccomp_program(), zygote_seccomp_program()] {
            check(&p);
        }
    }

    fn check(p: &[sock_filter]) {
        assert!(p.len() < 4096, "BPF_MAXINSNS");
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == libc::BPF_JMP as u16 {
                assert!(
                    i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(),
                    "jump at {i}"
                );
            }
        }
        assert_eq!(p.last().unwrap().k, libc::SECCOMP_RET_ALLOW);
    }
}
