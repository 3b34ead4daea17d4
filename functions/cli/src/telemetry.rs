//! Log setup for the local process: tracing-subscriber with `RUST_LOG` filtering, and, in a
//! build with the `otlp` feature, span export through OpenTelemetry OTLP.

use std::io::IsTerminal;

use flowgate_settings::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Why the telemetry could not start as configured.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `--otlp-endpoint` is set on a build without the exporter, or the exporter failed.
    #[error("--otlp-endpoint (FLOWGATE_OTLP_ENDPOINT): {0}")]
    Otlp(String),
}

/// Keeps the span exporter alive; dropping it flushes what is left.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    _flush: Option<crate::otlp::Flush>,
}

/// Installs the global subscriber in `format`; `RUST_LOG` filters (default `default`).
pub fn init(default: &str, format: LogFormat) {
    let _ = init_exporting(default, format, "");
}

/// As [`init`], and exports spans to `otlp_endpoint` when it is not empty.
pub fn init_exporting(
    default: &str,
    format: LogFormat,
    otlp_endpoint: &str,
) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let logs = logs.with_filter(filter);
    exporting(logs, otlp_endpoint)
}

#[cfg(feature = "otlp")]
fn exporting<L>(logs: L, endpoint: &str) -> Result<Telemetry, TelemetryError>
where
    L: Layer<Registry> + Send + Sync,
{
    if endpoint.is_empty() {
        let _ = tracing_subscriber::registry().with(logs).try_init();
        return Ok(Telemetry { _flush: None });
    }
    let (spans, flush) =
        crate::otlp::layer(endpoint).map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    // Flowgate's own spans are at INFO and above; the libraries' DEBUG and TRACE spans (each
    // HTTP frame, each pool checkout) would swamp a collector.
    let spans = spans.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    Ok(Telemetry {
        _flush: Some(flush),
    })
}

/// Without the `otlp` feature, refuses an endpoint rather than ignore it.
#[cfg(not(feature = "otlp"))]
fn exporting<L>(logs: L, endpoint: &str) -> Result<Telemetry, TelemetryError>
where
    L: Layer<Registry> + Send + Sync,
{
    let _ = tracing_subscriber::registry().with(logs).try_init();
    if endpoint.is_empty() {
        return Ok(Telemetry {});
    }
    Err(TelemetryError::Otlp(
        "set, but this build exports no spans: build with `--features otlp`".into(),
    ))
}
