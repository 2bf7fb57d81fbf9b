//! uv: finding it, and the virtualenvs built with it.
//!
//! A virtualenv is keyed by `sha256(python_version + normalized requirements)` and lives in
//! `data_dir/venvs/<key>`. It is built once under an exclusive file lock (so concurrent runs of
//! one project, even from several runner processes sharing the directory, never build twice)
//! into `venvs/.build-<key>` and renamed into place only when complete, so a crash never leaves
//! a half-built environment that a later run would trust. Builds are `--relocatable` so the rename
//! does not break console-script shebangs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// How to invoke uv: a binary, or `python3 -m uv`.
#[derive(Debug, Clone)]
pub struct Uv {
    program: OsString,
    prefix: Vec<OsString>,
}

impl Uv {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix);
        cmd
    }

    pub fn describe(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for p in &self.prefix {
            s.push(' ');
            s.push_str(&p.to_string_lossy());
        }
        s
    }

    fn works(&self) -> bool {
        self.command()
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

pub const UV_MISSING: &str =
    "uv is required to run Python tasks and was not found or could not be installed: install it with `pip install uv` and make sure `uv` is on PATH";

/// Finds uv: `explicit`, then `uv` on PATH, then `~/.local/bin/uv`, then `python3 -m uv`. If
/// none works, tries `python3 -m pip install --user uv` once and looks again. Blocking.
pub fn find_uv(explicit: Option<&Path>) -> Result<Uv, String> {
    if let Some(path) = explicit {
        let uv = Uv {
            program: path.as_os_str().to_owned(),
            prefix: vec![],
        };
        return if uv.works() {
            Ok(uv)
        } else {
            Err(format!(
                "the configured uv binary {} does not run: {UV_MISSING}",
                path.display()
            ))
        };
    }
    if let Some(uv) = discover() {
        return Ok(uv);
    }
    tracing::warn!("uv not found; trying `python3 -m pip install --user uv`");
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "--user", "--quiet", "uv"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    discover().ok_or_else(|| UV_MISSING.to_string())
}

fn discover() -> Option<Uv> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("uv")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/bin/uv"));
    }
    for c in candidates {
        if c.is_file() {
            let uv = Uv {
                program: c.into_os_string(),
                prefix: vec![],
            };
            if uv.works() {
                return Some(uv);
            }
        }
    }
    let module = Uv {
        program: "python3".into(),
        prefix: vec!["-m".into(), "uv".into()],
    };
    module.works().then_some(module)
}

/// Requirement lines without comments, blanks or surrounding space, sorted and deduplicated, so
/// cosmetic differences share one environment.
pub fn normalize_requirements(requirements: &str) -> String {
    let mut lines: Vec<&str> = requirements
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

pub fn env_key(python_version: Option<&str>, requirements: &str) -> String {
    let mut h = Sha256::new();
    h.update(python_version.unwrap_or("").trim().as_bytes());
    h.update(b"\n");
    h.update(normalize_requirements(requirements).as_bytes());
    hex::encode(h.finalize())
}

#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    #[error("python {0} is not available on this runner: {1}")]
    Interpreter(String, String),
    #[error("installing requirements failed: {0}")]
    Install(String),
    #[error("virtualenv directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A ready virtualenv.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
    pub python: PathBuf,
    /// True when this call built it, false on a cache hit.
    pub built: bool,
}

pub struct Venvs {
    root: PathBuf,
    uv: Uv,
}

const READY: &str = ".antcode-ready";

impl Venvs {
    pub fn new(root: PathBuf, uv: Uv) -> Venvs {
        Venvs { root, uv }
    }

    /// Returns the environment for these requirements, building it if needed. Blocking: call it
    /// from `spawn_blocking`.
    pub fn ensure(
        &self,
        python_version: Option<&str>,
        requirements: &str,
    ) -> Result<Venv, VenvError> {
        std::fs::create_dir_all(&self.root)?;
        let key = env_key(python_version, requirements);
        let dir = self.root.join(&key);
        let ready = |dir: &Path| dir.join(READY).is_file() && dir.join("bin/python").exists();
        let venv = |built| Venv {
            dir: dir.clone(),
            python: dir.join("bin/python"),
            built,
        };
        if ready(&dir) {
            touch(&dir.join(READY));
            metrics::counter!("antcode_runner_venv_cache_hits_total").increment(1);
            return Ok(venv(false));
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(format!("{key}.lock")))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock)?;
        // Someone may have finished the build while we waited for the lock.
        if ready(&dir) {
            metrics::counter!("antcode_runner_venv_cache_hits_total").increment(1);
            return Ok(venv(false));
        }
        let started = Instant::now();
        let tmp = self.root.join(format!(".build-{key}"));
        self.build(&tmp, python_version, requirements)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&tmp);
            })?;
        std::fs::write(tmp.join(READY), b"")?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&tmp, &dir)?;
        metrics::counter!("antcode_runner_venv_builds_total").increment(1);
        record_build(&self.root, &key, started.elapsed().as_secs_f64());
        metrics::histogram!("antcode_runner_venv_build_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(key = %key, seconds = started.elapsed().as_secs_f64(), "built virtualenv");
        drop(lock);
        Ok(venv(true))
    }

    fn build(
        &self,
        tmp: &Path,
        python_version: Option<&str>,
        requirements: &str,
    ) -> Result<(), VenvError> {
        if tmp.exists() {
            // Left by a crash mid-build; we hold the lock, so nobody else is using it.
            std::fs::remove_dir_all(tmp)?;
        }
        let python = python_version.map(str::trim).filter(|v| !v.is_empty());
        let out = self
            .uv
            .command()
            .args([
                "venv",
                "--quiet",
                "--relocatable",
                "--no-python-downloads",
                "--python",
            ])
            .arg(python.unwrap_or("python3"))
            .arg(tmp)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(VenvError::Interpreter(
                python.unwrap_or("python3").to_string(),
                last_line(&out.stderr),
            ));
        }
        let normalized = normalize_requirements(requirements);
        if normalized.is_empty() {
            return Ok(());
        }
        let req_file = tmp.join("antcode-requirements.txt");
        std::fs::write(&req_file, &normalized)?;
        let install = |offline: bool| -> std::io::Result<std::process::Output> {
            let mut cmd = self.uv.command();
            cmd.args(["pip", "install", "--quiet", "--python"])
                .arg(tmp.join("bin/python"))
                .arg("-r")
                .arg(&req_file)
                .stdin(Stdio::null());
            if offline {
                cmd.arg("--offline");
            }
            cmd.output()
        };
        let out = install(false)?;
        if out.status.success() {
            return Ok(());
        }
        // A slow or unreachable index: what uv's cache already holds may be enough.
        let first = last_line(&out.stderr);
        let retry = install(true)?;
        if retry.status.success() {
            tracing::warn!(error = %first, "installed requirements from uv's cache after the index failed");
            return Ok(());
        }
        Err(VenvError::Install(first))
    }
}

/// Appends `<unix ms> <key> <seconds>` to `venvs/builds.log`: an operator's history of builds
/// (and how tests prove that concurrent runs built once).
fn record_build(root: &Path, key: &str, seconds: f64) {
    use std::io::Write;
    let line = format!("{} {key} {seconds:.3}\n", antcode_core::time::now_ms());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(BUILDS_LOG))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The build history file inside the venvs directory.
pub const BUILDS_LOG: &str = "builds.log";

fn touch(path: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// The most useful line of a tool's stderr: the last non-empty one, trimmed to a sane length.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no error output");
    line.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_normalize_to_one_key() {
        let a = env_key(Some("3.11"), "six\n# comment\nrequests==2.0  # pinned\n\n");
        let b = env_key(Some("3.11"), "requests==2.0\nsix\nsix\n");
        assert_eq!(a, b);
        assert_ne!(a, env_key(None, "six\nrequests==2.0"));
        assert_ne!(a, env_key(Some("3.11"), "six"));
        assert_eq!(normalize_requirements("  \n# x\n"), "");
    }
}
