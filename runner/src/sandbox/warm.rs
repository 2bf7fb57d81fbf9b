//! The sandbox of a zygote ([`Sandbox::start_zygote`]), and how each run it forks gets its own
//! work dir into its mount namespace ([`detached_tree`]).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use super::*;

/// What makes a sandboxed task a zygote.
pub struct Zygote<'a> {
    /// The zygote's stdin: its control socket.
    pub control: std::os::fd::RawFd,
    /// Where its runs' work dirs are (each run sees its own only).
    pub work_root: &'a Path,
}

/// A started zygote's init: its host pid and the pipe it reports the zygote's end on.
pub struct ZygoteInit {
    pub pid: i32,
    pub status: File,
}

impl Sandbox {
    /// Starts a zygote (`spec.program` with `spec.args`) in a sandbox of its own, with
    /// `spec.work_dir` (the zygote's directory) read-only. See the module doc.
    pub fn start_zygote(&self, spec: &RunSpec<'_>, zygote: &Zygote<'_>) -> io::Result<ZygoteInit> {
        let (pid, out, err, status) = self.start(spec, Some(zygote))?;
        drop((out, err));
        Ok(ZygoteInit { pid, status })
    }

    /// What a zygote's runs need to confine themselves, as `key value` lines (read by
    /// `zygote.py`): the system call numbers, the task's ids, the Landlock rights, and the
    /// seccomp program's file (`filter`, written here).
    pub fn zygote_spec(&self, dir: &Path, work_root: &Path, venv: &Path) -> io::Result<String> {
        let filter = dir.join("filter.bpf");
        let program = self.seccomp.as_deref().unwrap_or_default();
        std::fs::write(&filter, filter::program_bytes(program))?;
        let mut lines = vec![
            format!("uid {}", self.uid),
            format!("gid {}", self.gid),
            format!("work_root {}", work_root.display()),
            format!("filter {}", filter.display()),
            format!("nr_unshare {}", libc::SYS_unshare),
            format!("nr_setns {}", libc::SYS_setns),
            format!("nr_move_mount {}", libc::SYS_move_mount),
            format!("nr_open_tree {}", libc::SYS_open_tree),
            format!("nr_capset {}", libc::SYS_capset),
            format!(
                "nr_landlock_create_ruleset {}",
                libc::SYS_landlock_create_ruleset
            ),
            format!("nr_landlock_add_rule {}", libc::SYS_landlock_add_rule),
            format!(
                "nr_landlock_restrict_self {}",
                libc::SYS_landlock_restrict_self
            ),
        ];
        // The zygote's binds under /tmp (a data dir in /tmp): a run's own /tmp covers them, so
        // it attaches copies of them again on top.
        let binds = [
            self.interpreter(venv),
            Some(venv.to_path_buf()),
            Some(dir.to_path_buf()),
        ];
        for at in binds.into_iter().flatten() {
            if at.starts_with("/tmp") {
                lines.push(format!("tmp_keep {}", at.display()));
            }
        }
        if let Some(abi) = self.landlock_abi {
            lines.push(format!("landlock_handled {}", filter::handled_fs(abi)));
            let scoped = if abi >= 6 { filter::SCOPES } else { 0 };
            lines.push(format!("landlock_scoped {scoped}"));
            for (path, access) in landlock_rules(abi) {
                lines.push(format!("landlock_rule {access} {}", path.to_string_lossy()));
            }
        }
        lines.push(String::new());
        Ok(lines.join("\n"))
    }
}

/// A detached copy (`open_tree`) of the directory `path`, `nosuid` and `nodev`: how a
/// zygote's run gets its work dir into its mount namespace. Needs the runner to be root.
pub fn detached_tree(path: &Path) -> io::Result<OwnedFd> {
    let path = cstring(path.as_os_str())?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: a path the kernel reads, plain flags; the descriptor is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned here alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = child::MountAttr {
        attr_set: WRITABLE,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the attribute struct outlives the call; its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const child::MountAttr,
            std::mem::size_of::<child::MountAttr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
