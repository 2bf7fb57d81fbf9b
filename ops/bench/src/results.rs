//! What every bench binary shares (`mod results;`): its command line and its results file.
//!
//! [`Flags`] answers `--help` and `--version`, takes `--json-out PATH`, and refuses an unknown
//! flag or a bad value in one line with exit status 2. [`write()`] stores a run as
//! `ops/bench/results/YYYY-MM-DD-<bench>.json` (the default of `--json-out`, relative to the
//! repository root the benches run from):
//!
//! ```json
//! {"date": "2026-12-06", "commit": "…", "machine": {"cores": 2, "mem": "23.5 GiB", "kernel": "…"},
//!  "load_avg": [1.2, 1.5], "bench": "api", "command": "bench-api --connections 16",
//!  "rows": [{"name": "…", "p50_ms": 18.4, …}], "peer": {…}, "details": {…}}
//! ```
//!
//! `load_avg` is the one-minute load average at the start and at the end of the run: on a
//! shared machine it says how far to trust the figures. `peer` holds the figures of what the
//! bench is measured against in the same run.

use std::path::PathBuf;
use std::str::FromStr;

use serde_json::{json, Value};

/// A bench's command line, read flag by flag.
pub struct Flags {
    /// The bench's short name: `api` for `bench-api`.
    bench: &'static str,
    usage: &'static str,
    args: std::vec::IntoIter<String>,
    json_out: Option<PathBuf>,
    command: String,
    load_at_start: Option<f64>,
}

impl Flags {
    /// The process's arguments. `usage` is printed by `--help`; it lists the bench's own flags
    /// (the shared ones are appended).
    pub fn from_env(bench: &'static str, usage: &'static str) -> Flags {
        Flags::new(bench, usage, std::env::args().skip(1).collect())
    }

    fn new(bench: &'static str, usage: &'static str, args: Vec<String>) -> Flags {
        let command = std::iter::once(format!("bench-{bench}"))
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        Flags {
            bench,
            usage,
            args: args.into_iter(),
            json_out: None,
            command,
            load_at_start: load_avg(),
        }
    }

    /// The next flag the bench must handle itself; `--help`, `--version` and `--json-out` are
    /// handled here.
    pub fn next(&mut self) -> Option<String> {
        loop {
            let flag = self.args.next()?;
            match flag.as_str() {
                "-h" | "--help" => {
                    println!("{}\n\n{}", self.usage.trim_end(), SHARED_USAGE);
                    std::process::exit(0);
                }
                "-V" | "--version" => {
                    println!("bench-{} {}", self.bench, env!("CARGO_PKG_VERSION"));
                    std::process::exit(0);
                }
                "--json-out" => self.json_out = Some(self.value::<PathBuf>(&flag)),
                _ => return Some(flag),
            }
        }
    }

    /// The value after `flag`, parsed; a missing or bad one ends the process in one line.
    pub fn value<T: FromStr>(&mut self, flag: &str) -> T
    where
        T::Err: std::fmt::Display,
    {
        let Some(text) = self.args.next() else {
            self.fail(&format!("{flag} needs a value"));
        };
        text.parse()
            .unwrap_or_else(|e| self.fail(&format!("{flag} {text:?}: {e}")))
    }

    /// Refuses a flag the bench does not know.
    pub fn unknown(&self, flag: &str) -> ! {
        self.fail(&format!("unknown flag {flag}"))
    }

    /// Ends the process with `message` in one line and exit status 2 (a usage error).
    pub fn fail(&self, message: &str) -> ! {
        eprintln!(
            "bench-{}: {message} (see bench-{} --help)",
            self.bench, self.bench
        );
        std::process::exit(2)
    }

    /// Where the results go: `--json-out`, or `ops/bench/results/<date>-<bench>.json`.
    pub fn json_out(&self) -> PathBuf {
        self.json_out.clone().unwrap_or_else(|| {
            PathBuf::from(format!("ops/bench/results/{}-{}.json", today(), self.bench))
        })
    }
}

const SHARED_USAGE: &str = "\
Every bench:
  --json-out PATH   where the results go (default ops/bench/results/<date>-<bench>.json)
  -h, --help        this text
  -V, --version     the version";

/// Writes one run's results (see the module doc) and says where.
pub fn write(flags: &Flags, rows: Vec<Value>, peer: Value, details: Value) -> anyhow::Result<()> {
    let doc = json!({
        "date": today(),
        "commit": commit(),
        "machine": {"cores": cores(), "mem": mem(), "kernel": kernel()},
        "load_avg": [flags.load_at_start, load_avg()],
        "bench": flags.bench,
        "command": flags.command,
        "rows": rows,
        "peer": peer,
        "details": details,
    });
    let path = flags.json_out();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!("JSON: {}", path.display());
    Ok(())
}

/// Today's date in UTC, `YYYY-MM-DD`.
fn today() -> String {
    antcode_core::time::to_rfc3339(antcode_core::time::now_ms())[..10].to_string()
}

/// The checked-out commit, with `-dirty` when the tree has changes; `None` outside git.
fn commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Total memory, as `/proc/meminfo` states it, in GiB.
fn mem() -> Option<String> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
}

fn kernel() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

/// The one-minute load average.
fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
