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

/// One EMF line publishing several values of one event under the same labels: each metric
/// keeps its own directive (its own dimension sets), and the labels are written once.
/// CloudWatch Logs bills the bytes, so one line instead of one each costs about half.
pub fn emf_lines_joined(labels: &Labels<'_>, values: &[(Metric, f64)], at_millis: i64) -> Value {
    let mut joined = Map::new();
    let mut directives = Vec::new();
    for (metric, value) in values {
        let Value::Object(mut line) = emf_line(*metric, labels, *value, at_millis) else {
            continue;
        };
        if let Some(directive) = line
            .remove("_aws")
            .and_then(|mut aws| aws["CloudWatchMetrics"].as_array_mut().map(std::mem::take))
        {
            directives.extend(directive);
        }
        joined.extend(line);
    }
    joined.insert(
        "_aws".into(),
        json!({"Timestamp": at_millis, "CloudWatchMetrics": directives}),
    );
    Value::Object(joined)
}

impl<W: Write + Send> Emf<W> {
    fn write(&self, line: &Value) {
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A metric line that cannot be written is lost, never a failed invocation.
        let _ = writeln!(out, "{line}");
    }
}

impl<W: Write + Send> Metrics for Emf<W> {
    fn record(&self, metric: Metric, labels: &Labels<'_>, value: f64) {
        self.write(&emf_line(
            metric,
            labels,
            value,
            chrono::Utc::now().timestamp_millis(),
        ));
    }

    fn record_all(&self, labels: &Labels<'_>, values: &[(Metric, f64)]) {
        let at = chrono::Utc::now().timestamp_millis();
        self.write(&emf_lines_joined(labels, values, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_one_event_are_one_line_each_metric_with_its_own_dimensions() {
        let labels = Labels {
            tenant: Some("t"),
            workflow: Some("orders"),
            outcome: "created",
        };
        let line = emf_lines_joined(
            &labels,
            &[(Metric::Created, 1.0), (Metric::Lag, 0.25)],
            1_000,
        );
        assert_eq!(line["created"], json!(1.0));
        assert_eq!(line["lag_seconds"], json!(0.25));
        assert_eq!(line["workflow"], "orders");
        assert_eq!(line["outcome"], "created");
        assert!(
            line.get("tenant").is_none(),
            "a tenant is never a dimension"
        );
        let directives = line["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[0]["Metrics"][0]["Name"], "created");
        assert_eq!(
            directives[0]["Dimensions"],
            json!([["outcome"], ["workflow", "outcome"]])
        );
        assert_eq!(directives[1]["Metrics"][0]["Name"], "lag_seconds");
        assert_eq!(directives[1]["Dimensions"], json!([[]]));
        assert!(directives.iter().all(|d| d["Namespace"] == NAMESPACE));
        assert_eq!(line["_aws"]["Timestamp"], 1_000);
    }
}
