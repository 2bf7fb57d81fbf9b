//! A task's network policy, applied in the child before it execs.
//!
//! * `none`: the child unshares its network namespace (`CLONE_NEWNET`): it has a loopback
//!   device of its own, down, and no route anywhere — no TCP, UDP, or the host's abstract Unix
//!   sockets.
//! * `{"allow": [...]}`: a Landlock ruleset (ABI 4 or later, Linux 6.7+) that handles TCP
//!   `connect` and allows it to the listed ports only; made by the runner per run (at most 32
//!   rules, microseconds) and applied by the child with `landlock_restrict_self` after
//!   `PR_SET_NO_NEW_PRIVS`. Rulesets stack: the sandbox's own layers are unaffected. Landlock
//!   sees ports, not hosts, so an entry is enforced by its port alone (documented in the API);
//!   UDP is not restricted by a list.
//! * `full`: any address but the platform's ports the runner protects (a cgroup BPF hook, see
//!   `sandbox/guard.rs`).
//!
//! Where the kernel cannot enforce a policy (no Landlock network support, no permission to
//! unshare), the run fails with the reason: a run never starts with less isolation than its
//! task asked for. Warm starts fork from a zygote that is shared by every task of a project
//! version, so a run whose policy is not `full` starts cold.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use antcode_core::model::NetworkPolicy;

const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
const LANDLOCK_ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;
const LANDLOCK_RULE_NET_PORT: libc::c_int = 2;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
}

#[repr(C, packed)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// The Landlock ABI version the kernel offers (0 if none).
pub fn landlock_abi() -> i64 {
    // SAFETY: the documented probe: no attribute, size 0, the version flag.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    r.max(0)
}

/// The network guarantees this runner cannot give: a short name (the worker's
/// `sandbox_missing` label) and a line for the start-up log. `ports_guarded` says whether the
/// platform's ports are shut out of `full` (see `sandbox/guard.rs`).
pub fn missing(ports_guarded: bool) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !ports_guarded {
        out.push((
            "platform ports in network full",
            "network: the platform's own ports are not shut out of `full` (a task that must not reach them needs `none` or an allow-list)".to_string(),
        ));
    }
    let abi = landlock_abi();
    if abi < 4 {
        out.push((
            "network allow-lists",
            format!("network: allow-lists cannot be enforced (Landlock ABI {abi}, 4 needed: Linux 6.7+); runs with one fail"),
        ));
    }
    out
}

/// A policy made ready for one run: what the child must do, and the ruleset it applies.
#[derive(Debug, Default)]
pub struct Prepared {
    ruleset: Option<OwnedFd>,
    new_netns: bool,
}

/// What the child needs, as a copyable value for a pre-exec hook.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    ruleset: RawFd,
    new_netns: bool,
}

impl Hook {
    /// Whether the run gets a network namespace of its own (policy `none`).
    pub fn new_netns(&self) -> bool {
        self.new_netns
    }

    /// The Landlock ruleset the run restricts itself with (an allow-list), or -1.
    pub fn ruleset(&self) -> RawFd {
        self.ruleset
    }
}

impl Default for Hook {
    fn default() -> Self {
        Hook {
            ruleset: -1,
            new_netns: false,
        }
    }
}

/// Why this runner cannot enforce a task's policy (the run fails with it).
#[derive(Debug, thiserror::Error)]
pub enum Unenforceable {
    #[error("network allow-list: this kernel cannot restrict connections by port (Landlock ABI {0}, 4 needed: Linux 6.7+)")]
    NoLandlock(i64),
    #[error("network allow-list: Landlock ruleset: {0}")]
    Ruleset(io::Error),
}

/// Prepares `policy` for one run; an error says why this runner cannot enforce it.
pub fn prepare(policy: &NetworkPolicy) -> Result<Prepared, Unenforceable> {
    match policy {
        NetworkPolicy::Full => Ok(Prepared::default()),
        NetworkPolicy::None => Ok(Prepared {
            ruleset: None,
            new_netns: true,
        }),
        NetworkPolicy::Allow(_) => {
            let ports = policy.allowed_ports().unwrap_or_default();
            let abi = landlock_abi();
            if abi < 4 {
                return Err(Unenforceable::NoLandlock(abi));
            }
            let ruleset = allow_only(&ports).map_err(Unenforceable::Ruleset)?;
            Ok(Prepared {
                ruleset: Some(ruleset),
                new_netns: false,
            })
        }
    }
}

/// A Landlock ruleset that handles TCP connect and allows it to `ports` only.
fn allow_only(ports: &[u16]) -> io::Result<OwnedFd> {
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: LANDLOCK_ACCESS_NET_CONNECT_TCP,
    };
    // SAFETY: a valid attribute of the size passed; the result is a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    for &port in ports {
        let rule = NetPortAttr {
            allowed_access: LANDLOCK_ACCESS_NET_CONNECT_TCP,
            port: port as u64,
        };
        // SAFETY: a valid rule for this rule type, on the ruleset descriptor we own.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                fd.as_raw_fd(),
                LANDLOCK_RULE_NET_PORT,
                &rule as *const NetPortAttr,
                0u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

impl Prepared {
    /// Whether the run must start cold (see the module doc).
    pub fn confines(&self) -> bool {
        self.new_netns || self.ruleset.is_some()
    }

    pub fn hook(&self) -> Hook {
        Hook {
            ruleset: self.ruleset.as_ref().map_or(-1, |f| f.as_raw_fd()),
            new_netns: self.new_netns,
        }
    }
}

/// Applies `hook` to the calling process. Only system calls: safe between fork and exec.
pub fn apply(hook: &Hook) -> io::Result<()> {
    // SAFETY: unshare, prctl and the Landlock call take plain values and a descriptor the
    // parent keeps open until the child has exec'd.
    unsafe {
        if hook.new_netns && libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        if hook.ruleset >= 0 {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, hook.ruleset, 0u32) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
