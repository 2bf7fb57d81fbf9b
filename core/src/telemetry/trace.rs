//! Traces: one per run, from the request or schedule fire that created it, through the broker
//! and the runner's phases, to the recorder's write. Exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise
//! every call here is a branch on a `OnceLock` and nothing is allocated.
//!
//! A run's trace context travels as a W3C `traceparent` string: in the job (`Job::trace`,
//! persisted with the run, so a retry or a re-publish stays in the same trace), in the runner's
//! events (`RunEvent::trace`), in a gateway runner's gRPC metadata, and in an HTTP request's
//! header. Spans whose times are known only afterwards (a runner's phases) are written with
//! explicit start and end times.
//!
//! The standard variables apply: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`, and
//! `OTEL_SDK_DISABLED=true` turns exporting off.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use opentelemetry::trace::SpanKind as Kind;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The W3C header (and metadata key) a trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

/// Keeps the exporter alive; dropping it sends the spans still buffered (bounded by
/// `OTEL_BSP_EXPORT_TIMEOUT`), so a process that stops on SIGTERM loses none.
pub struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("antcode: flushing traces failed: {e}");
        }
    }
}

/// Starts exporting if the environment configures an OTLP endpoint. `service` names the
/// process (`antcode-control`, …) unless `OTEL_SERVICE_NAME` does. Call it before any async
/// runtime starts: the exporter's blocking HTTP client must not be built inside one.
pub fn init(service: &str) -> Result<Option<Exporting>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let configured =
        set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if !configured || disabled || TRACER.get().is_some() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service.to_string());
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let _ = TRACER.set(provider.tracer("antcode"));
    Ok(Some(Exporting(provider)))
}

/// Whether spans are being exported.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// A span of a run's trace, ended when dropped; nothing at all when traces are off.
#[derive(Default)]
pub struct RunSpan {
    cx: Option<Context>,
}

impl RunSpan {
    /// Starts `name` under `parent` (a `traceparent`; a new trace when `None` or malformed).
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&str>,
    ) -> RunSpan {
        let Some(tracer) = TRACER.get() else {
            return RunSpan::default();
        };
        let parent = parent.map(extract).unwrap_or_default();
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(tracer, &parent);
        RunSpan {
            cx: Some(parent.with_span(span)),
        }
    }

    /// The context to pass on to the run's next hop.
    pub fn traceparent(&self) -> Option<String> {
        traceparent_of(self.cx.as_ref()?)
    }

    /// The trace's id, 32 hex digits, as logs and exemplars show it.
    pub fn trace_id(&self) -> Option<String> {
        let cx = self.cx.as_ref()?;
        Some(cx.span().span_context().trace_id().to_string())
    }

    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with `why`.
    pub fn fail(&self, why: impl Into<String>) {
        if let Some(cx) = &self.cx {
            cx.span().set_status(Status::error(why.into()));
        }
    }

    /// Writes a finished child span (a phase measured before it could be written).
    pub fn child(&self, name: &'static str, start: SystemTime, end: SystemTime) {
        let (Some(cx), Some(tracer)) = (&self.cx, TRACER.get()) else {
            return;
        };
        let mut span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .start_with_context(tracer, cx);
        span.end_with_timestamp(end);
    }

    /// Wraps `fut` so that [`current_traceparent`] and [`current_trace_id`] inside it see this
    /// span.
    pub fn attach<F: std::future::Future>(&self, fut: F) -> opentelemetry::context::WithContext<F> {
        use opentelemetry::context::FutureExt;
        fut.with_context(self.cx.clone().unwrap_or_default())
    }

    /// A `tracing` span for the log lines written under this one: they name its `trace_id`.
    /// `tracing::Span::none()` when traces are off.
    pub fn logs(&self, name: &'static str) -> tracing::Span {
        match self.trace_id() {
            Some(trace_id) => tracing::info_span!("trace", span = name, trace_id = %trace_id),
            None => tracing::Span::none(),
        }
    }
}

impl Drop for RunSpan {
    /// Ends the span now, even if a context cloned from it ([`RunSpan::attach`]) lives on.
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

/// The `traceparent` of the span current in this task, if any.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    traceparent_of(&Context::current())
}

/// The `traceparent` of `cx`'s span; `None` when it has none.
fn traceparent_of(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::with_capacity(1);
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The trace id of the span current in this task, if any.
pub fn current_trace_id() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = Context::current();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The trace id in a `traceparent`, if it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let cx = extract(traceparent);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// A context carrying the remote span `traceparent` names; empty if it is malformed.
fn extract(traceparent: &str) -> Context {
    if traceparent.len() > 256 {
        return Context::new();
    }
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_names_its_trace() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id_of(tp).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-xyz",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad:?}");
        }
        assert_eq!(trace_id_of(&"0".repeat(300)), None);
    }

    #[test]
    fn spans_are_nothing_when_traces_are_off() {
        let span = RunSpan::start(
            "run",
            SpanKind::Consumer,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(span.traceparent(), None);
        assert_eq!(span.trace_id(), None);
        assert!(span.logs("run").is_none());
        assert_eq!(current_traceparent(), None);
    }
}
