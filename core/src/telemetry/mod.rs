//! Logging, metrics and trace set-up shared by every process.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;

pub mod exemplars;
pub mod trace;

/// Starts exporting traces when the environment configures it ([`trace::init`]), after
/// [`init_tracing`] and before any async runtime: keep the returned guard until the process
/// ends. A bad exporter setting is logged and ignored.
pub fn export_traces(service: &str) -> Option<trace::Exporting> {
    match trace::init(service) {
        Ok(guard) => {
            if guard.is_some() {
                tracing::info!(service, "exporting traces over OTLP");
            }
            guard
        }
        Err(e) => {
            tracing::warn!(error = %e, "traces are not exported");
            None
        }
    }
}

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

/// The buckets of every `_seconds` histogram.
pub const SECONDS_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// The registry for a scrape whose `Accept` header is `accept`: OpenMetrics with exemplars when
/// it asks for that (Prometheus does), else the text format. Returns the content type and body.
pub fn exposition(accept: Option<&str>) -> (&'static str, String) {
    let text = prometheus().render();
    match accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        true => (exemplars::OPENMETRICS, exemplars::openmetrics(&text)),
        false => ("text/plain; version=0.0.4; charset=utf-8", text),
    }
}

/// The process-wide Prometheus recorder, installed on first use. Every plane in the process
/// renders the same registry at its `/metrics`.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
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
