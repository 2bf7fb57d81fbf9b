//! Host load for heartbeats, read from `/proc` (Linux) and `statvfs`. Every reading is best
//! effort: a value that cannot be read is reported as 0 rather than failing a heartbeat.

use std::path::Path;

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "runner".into())
}

/// CPU usage needs two samples of `/proc/stat`; the sampler keeps the previous one.
#[derive(Default)]
pub struct CpuSampler {
    last: Option<(u64, u64)>,
}

impl CpuSampler {
    /// Percent of all CPUs busy since the previous call (0 on the first).
    pub fn sample(&mut self) -> f32 {
        let Some((busy, total)) = read_cpu() else {
            return 0.0;
        };
        let pct = match self.last {
            Some((b0, t0)) if total > t0 => {
                (busy.saturating_sub(b0)) as f32 * 100.0 / (total - t0) as f32
            }
            _ => 0.0,
        };
        self.last = Some((busy, total));
        pct.clamp(0.0, 100.0)
    }
}

fn read_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let vals: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if vals.len() < 4 {
        return None;
    }
    let total: u64 = vals.iter().sum();
    // idle + iowait are not busy.
    let idle = vals[3] + vals.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

pub fn memory_percent() -> f32 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return 0.0;
    };
    let field = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    match (field("MemTotal:"), field("MemAvailable:")) {
        (Some(total), Some(avail)) if total > 0.0 => ((total - avail) * 100.0 / total) as f32,
        _ => 0.0,
    }
}

pub fn disk_percent(path: &Path) -> f32 {
    match fs4::statvfs(path) {
        Ok(s) if s.total_space() > 0 => {
            let used = s.total_space().saturating_sub(s.available_space());
            (used as f64 * 100.0 / s.total_space() as f64) as f32
        }
        _ => 0.0,
    }
}
