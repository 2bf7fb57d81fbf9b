//! Logging and metrics set-up shared by every process.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;

/// Human logs, JSON with `--log-format json`. `RUST_LOG` overrides the level. Human logs are
/// coloured only when standard error is a terminal and `NO_COLOR` is unset or empty, so a log
/// written to a file or a pipe holds no escape codes.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_color(std::io::stderr().is_terminal(), no_color))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Colour only for a person at a terminal who has not asked for none (<https://no-color.org>).
fn use_color(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. Every plane in the process
/// renders the same registry at its `/metrics`.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            1800.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("static bucket list is valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several test harnesses in one process);
        // then this handle still renders, just without those metrics.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(super::use_color(true, false));
        assert!(!super::use_color(false, false));
        assert!(!super::use_color(true, true));
    }
}
