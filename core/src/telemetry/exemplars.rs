//! Exemplars: the trace of a recent observation, per histogram bucket, so a latency panel links
//! to a run's trace. Prometheus keeps them only from an OpenMetrics exposition, so a scrape that
//! asks for `application/openmetrics-text` gets the registry rewritten to it ([`openmetrics`])
//! with the exemplars on their bucket lines; any other scrape gets the plain text format.
//!
//! Only observations made inside a traced run carry one ([`note`]); the store keeps the latest
//! per bucket of each series, so it is bounded by the series the code defines.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::SECONDS_BUCKETS;

struct Exemplar {
    trace_id: String,
    value: f64,
    at: f64,
}

/// Series (`name{labels}` as the registry renders it, without `le`) → one slot per bucket,
/// the last for `+Inf`.
static EXEMPLARS: Mutex<Option<HashMap<String, Vec<Option<Exemplar>>>>> = Mutex::new(None);

/// Keeps `value`, observed in the trace `trace_id` on the `_seconds` histogram `name` with
/// `labels` (in the order the `histogram!` call gives them), as its bucket's exemplar.
pub fn note(name: &str, labels: &[(&str, &str)], value: f64, trace_id: &str) {
    let mut key = String::with_capacity(name.len() + 32);
    key.push_str(name);
    key.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        let _ = write!(key, "{k}=\"{}\"", escape(v));
    }
    key.push('}');
    let bucket = SECONDS_BUCKETS
        .iter()
        .position(|le| value <= *le)
        .unwrap_or(SECONDS_BUCKETS.len());
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut store = EXEMPLARS.lock().unwrap_or_else(|p| p.into_inner());
    let slots = store
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| (0..=SECONDS_BUCKETS.len()).map(|_| None).collect());
    slots[bucket] = Some(Exemplar {
        trace_id: trace_id.to_string(),
        value,
        at,
    });
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// The media type of [`openmetrics`]'s output.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `text` (the Prometheus text format the registry renders) as OpenMetrics 1.0: counter
/// families named without `_total` (or typed `unknown` when their samples lack it), no blank
/// lines, `# EOF` at the end, and the kept exemplars on their bucket lines.
pub fn openmetrics(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let store = EXEMPLARS.lock().unwrap_or_else(|p| p.into_inner());
    let exemplars = store.as_ref();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(meta) = line
            .strip_prefix("# TYPE ")
            .or_else(|| line.strip_prefix("# HELP "))
        {
            let name = meta.split(' ').next().unwrap_or("");
            if counters.contains(name) {
                let is_type = line.starts_with("# TYPE ");
                match name.strip_suffix("_total") {
                    Some(family) => {
                        out.push_str(&line.replacen(name, family, 1));
                    }
                    None if is_type => {
                        let _ = write!(out, "# TYPE {name} unknown");
                    }
                    None => out.push_str(line),
                }
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        if let Some(e) = exemplars.and_then(|store| bucket_exemplar(store, line)) {
            let _ = write!(
                out,
                " # {{trace_id=\"{}\"}} {} {:.3}",
                e.trace_id, e.value, e.at
            );
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

/// The exemplar kept for the bucket a sample line such as
/// `antcode_runner_phase_seconds_bucket{phase="venv",le="0.5"} 3` counts.
fn bucket_exemplar<'a>(
    store: &'a HashMap<String, Vec<Option<Exemplar>>>,
    line: &str,
) -> Option<&'a Exemplar> {
    if line.starts_with('#') {
        return None;
    }
    let (name, rest) = line.split_once("_bucket{")?;
    let (labels, _) = rest.rsplit_once('}')?;
    let (before, le) = labels.rsplit_once("le=\"")?;
    let le = le.strip_suffix('"')?;
    let bucket = match le {
        "+Inf" => SECONDS_BUCKETS.len(),
        le => {
            let le: f64 = le.parse().ok()?;
            SECONDS_BUCKETS.iter().position(|b| *b == le)?
        }
    };
    let key = format!("{name}{{{}}}", before.trim_end_matches(','));
    store.get(&key)?.get(bucket)?.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP antcode_runs_total Runs.\n# TYPE antcode_runs_total counter\nantcode_runs_total{state=\"ok\"} 3\n\n# TYPE antcode_hits counter\nantcode_hits 1\n\n# TYPE antcode_ex_seconds histogram\nantcode_ex_seconds_bucket{phase=\"venv\",le=\"0.005\"} 0\nantcode_ex_seconds_bucket{phase=\"venv\",le=\"0.5\"} 1\nantcode_ex_seconds_bucket{phase=\"venv\",le=\"+Inf\"} 1\nantcode_ex_seconds_sum{phase=\"venv\"} 0.3\nantcode_ex_seconds_count{phase=\"venv\"} 1\n";

    #[test]
    fn openmetrics_renames_counters_and_ends_with_eof() {
        let om = openmetrics(TEXT);
        assert!(om.contains("# HELP antcode_runs Runs.\n# TYPE antcode_runs counter\nantcode_runs_total{state=\"ok\"} 3\n"), "{om}");
        assert!(
            om.contains("# TYPE antcode_hits unknown\nantcode_hits 1\n"),
            "{om}"
        );
        assert!(!om.contains("\n\n"), "{om}");
        assert!(om.ends_with("\n# EOF\n"), "{om}");
    }

    #[test]
    fn an_exemplar_goes_on_its_bucket_line_only() {
        note(
            "antcode_ex_seconds",
            &[("phase", "venv")],
            0.3,
            "4bf92f3577b34da6a3ce929d0e0e4736",
        );
        let om = openmetrics(TEXT);
        let line = om
            .lines()
            .find(|l| l.contains("le=\"0.5\""))
            .expect("bucket line");
        assert!(
            line.starts_with("antcode_ex_seconds_bucket{phase=\"venv\",le=\"0.5\"} 1 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.3 "),
            "{line}"
        );
        assert_eq!(om.matches("trace_id").count(), 1, "{om}");
        // Another label value is another series.
        note(
            "antcode_ex_seconds",
            &[("phase", "exec")],
            0.3,
            "aaaa2f3577b34da6a3ce929d0e0e4736",
        );
        assert_eq!(openmetrics(TEXT).matches("trace_id").count(), 1);
    }
}
