//! CloudWatch Embedded Metric Format: the Lambda functions' metrics sink. Each set of counts
//! becomes one JSON log line that CloudWatch turns into metrics.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use flowgate_core::metrics::Metrics;

/// The metric namespace of Flowgate's custom metrics.
pub const NAMESPACE: &str = "Flowgate";

/// The EMF log line publishing `values` as `Count` metrics in [`NAMESPACE`].
pub fn emf_line(values: &[(&str, u64)], at_millis: i64) -> Value {
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": at_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": values
                    .iter()
                    .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
                    .collect::<Vec<_>>(),
            }]
        }),
    );
    for (name, value) in values {
        line.insert((*name).to_owned(), json!(value));
    }
    Value::Object(line)
}

/// Writes each set of counts as an EMF line to `W` (stdout in a Lambda, where the log
/// picks it up).
pub struct Emf<W: Write + Send>(Mutex<W>);

impl Emf<std::io::Stdout> {
    /// EMF lines on stdout.
    pub fn stdout() -> Self {
        Self(Mutex::new(std::io::stdout()))
    }
}

impl<W: Write + Send> Emf<W> {
    /// EMF lines written to `out`.
    pub fn new(out: W) -> Self {
        Self(Mutex::new(out))
    }
}

impl<W: Write + Send> Metrics for Emf<W> {
    fn counts(&self, values: &[(&'static str, u64)]) {
        let line = emf_line(values, chrono::Utc::now().timestamp_millis());
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A metric line that cannot be written is lost, never a failed invocation.
        let _ = writeln!(out, "{line}");
    }
}
