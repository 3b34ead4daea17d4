//! CloudWatch Embedded Metric Format: the Lambda functions' metrics sink. Each record
//! becomes one JSON log line that CloudWatch turns into a metric of the same name.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use flowgate_core::metrics::{Kind, Labelled, Labels, Metric, Metrics};

/// The metric namespace of Flowgate's custom metrics.
pub const NAMESPACE: &str = "Flowgate";

/// The EMF log line publishing one value of `metric` in [`NAMESPACE`]: a count by outcome
/// (and by workflow, when there is one), or one observation of a duration or a size.
pub fn emf_line(metric: Metric, labels: &Labels<'_>, value: f64, at_millis: i64) -> Value {
    let mut line = Map::new();
    let dimensions = match (metric.labelled(), labels.workflow) {
        (Labelled::WorkflowOutcome, Some(workflow)) => {
            line.insert("workflow".into(), json!(workflow));
            line.insert("outcome".into(), json!(labels.outcome));
            json!([["outcome"], ["workflow", "outcome"]])
        }
        (Labelled::WorkflowOutcome | Labelled::Outcome, _) => {
            line.insert("outcome".into(), json!(labels.outcome));
            json!([["outcome"]])
        }
        (Labelled::None, _) => json!([[]]),
    };
    let unit = match metric.kind() {
        Kind::Count | Kind::Items => "Count",
        Kind::Seconds => "Seconds",
    };
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": at_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": [{"Name": metric.name(), "Unit": unit}],
            }]
        }),
    );
    line.insert(metric.name().to_owned(), json!(value));
    Value::Object(line)
}

/// Writes each record as an EMF line to `W` (stdout in a Lambda, where the log
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
    fn record(&self, metric: Metric, labels: &Labels<'_>, value: f64) {
        let line = emf_line(metric, labels, value, chrono::Utc::now().timestamp_millis());
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A metric line that cannot be written is lost, never a failed invocation.
        let _ = writeln!(out, "{line}");
    }
}
