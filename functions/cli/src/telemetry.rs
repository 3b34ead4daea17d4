//! Log setup for the local process: tracing-subscriber with `RUST_LOG` filtering.

use std::io::IsTerminal;

use flowgate_settings::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber in `format`; `RUST_LOG` filters (default `default`).
pub fn init(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
