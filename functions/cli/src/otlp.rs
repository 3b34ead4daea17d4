//! Span export through OpenTelemetry OTLP over HTTP: compiled only with the `otlp` feature, so
//! a plain build links no exporter. The exported spans join the request traces: a span
//! that runs in a request's trace becomes a child of the context that trace names, and the
//! context a request hands on (to its message, to a target) is the exported span's own.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use flowgate_core::trace::{Exporter, TraceContext, install_exporter};

/// Flushes the spans not yet sent when the process ends.
pub struct Flush(SdkTracerProvider);

impl Drop for Flush {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// The tracing layer that exports spans to `endpoint` (a base URL; `/v1/traces` is added),
/// and the guard that flushes them at exit. Installs the core's exporter hooks.
pub fn layer<S>(
    endpoint: &str,
) -> Result<(impl tracing_subscriber::Layer<S>, Flush), opentelemetry_otlp::ExporterBuildError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // The exporter's HTTPS client uses rustls on ring, as every other client here.
    flowgate_targets::install_tls_provider();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    let resource = Resource::builder()
        .with_service_name("flowgate")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("flowgate");
    install_exporter(Exporter { join, context_of });
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Flush(provider),
    ))
}

/// Makes `span` a child of `parent` (a remote span: the caller's, or the message's).
fn join(span: &tracing::Span, parent: &TraceContext) {
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(parent.trace_id()),
        SpanId::from_hex(parent.span_id()),
    ) else {
        return;
    };
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(Context::new().with_remote_span_context(context));
}

/// The exported context of `span`.
fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    TraceContext::from_parts(
        &span_context.trace_id().to_string(),
        &span_context.span_id().to_string(),
        span_context.is_sampled(),
    )
}
