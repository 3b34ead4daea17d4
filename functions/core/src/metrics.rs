//! Counts the use cases report (dead-letter replays, archives, restores), and the CloudWatch
//! Embedded Metric Format line that publishes counts from a Lambda's log.

use serde_json::{Map, Value, json};

/// The metric namespace of Flowgate's custom metrics.
pub const NAMESPACE: &str = "Flowgate";

/// Where a host sends the use cases' counts.
pub trait Metrics: Send + Sync {
    /// Records one occurrence of each named count.
    fn counts(&self, values: &[(&'static str, u64)]);
}

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

/// Prints each set of counts as an EMF line on stdout, where Lambda's log picks it up.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmfStdout;

impl Metrics for EmfStdout {
    fn counts(&self, values: &[(&'static str, u64)]) {
        println!(
            "{}",
            emf_line(values, chrono::Utc::now().timestamp_millis())
        );
    }
}
