//! The local server's Prometheus series: every [`Metric`] as a family of the same name
//! (prefix `flowgate_`), plus the queue gauges sampled at each scrape. Encoded by
//! prometheus-client, never by hand.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use flowgate_core::metrics::{Kind, Labelled, Labels, Metric};
use flowgate_embedded::QueueDepths;

/// The most distinct workflow label values kept; later ones are counted as `_other`, so a
/// tenant that registers workflows without end cannot grow the series without end.
pub const MAX_WORKFLOW_LABELS: usize = 500;

/// The label value of a record that names no workflow.
pub const NO_WORKFLOW: &str = "-";

/// The label value of workflows past [`MAX_WORKFLOW_LABELS`].
pub const OTHER_WORKFLOWS: &str = "_other";

type LabelSet = Vec<(String, String)>;

enum Series {
    Counts(Family<LabelSet, Counter>),
    Histogram(Histogram),
    Histograms(Family<LabelSet, Histogram, fn() -> Histogram>),
}

/// The queue gauges, set from a sample just before each scrape is encoded.
struct Gauges {
    queue: Gauge,
    dlq: Gauge,
    oldest_age: Gauge<f64, AtomicU64>,
    running: Family<LabelSet, Gauge>,
    waiting: Family<LabelSet, Gauge>,
}

/// The registry and its series.
pub struct Prometheus {
    registry: Registry,
    series: HashMap<Metric, Series>,
    gauges: Gauges,
    workflows: Mutex<HashSet<String>>,
}

impl Default for Prometheus {
    fn default() -> Self {
        Self::new()
    }
}

impl Prometheus {
    /// Every metric registered, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flowgate");
        let mut series = HashMap::new();
        for metric in Metric::ALL {
            let one = match metric.kind() {
                Kind::Count => {
                    let family = Family::<LabelSet, Counter>::default();
                    registry.register(metric.name(), metric.help(), family.clone());
                    Series::Counts(family)
                }
                _ if metric.labelled() != Labelled::None => {
                    let family =
                        Family::<LabelSet, Histogram, fn() -> Histogram>::new_with_constructor(
                            run_duration_histogram,
                        );
                    registry.register(metric.name(), metric.help(), family.clone());
                    Series::Histograms(family)
                }
                kind => {
                    let histogram = Histogram::new(buckets(metric, kind));
                    registry.register(metric.name(), metric.help(), histogram.clone());
                    Series::Histogram(histogram)
                }
            };
            series.insert(metric, one);
        }
        let gauges = Gauges {
            queue: Gauge::default(),
            dlq: Gauge::default(),
            oldest_age: Gauge::default(),
            running: Family::default(),
            waiting: Family::default(),
        };
        registry.register(
            "running",
            "Unfinished runs holding a slot, by workflow (workflows with a limit or a time-out)",
            gauges.running.clone(),
        );
        registry.register(
            "waiting",
            "Starts waiting for a slot under their workflow's concurrency limit, by workflow",
            gauges.waiting.clone(),
        );
        registry.register(
            "queue_depth",
            "Messages on the queue, waiting or in flight",
            gauges.queue.clone(),
        );
        registry.register(
            "dlq_depth",
            "Letters in the dead-letter queue",
            gauges.dlq.clone(),
        );
        registry.register(
            "oldest_message_age_seconds",
            "Age of the oldest message on the queue",
            gauges.oldest_age.clone(),
        );
        Self {
            registry,
            series,
            gauges,
            workflows: Mutex::default(),
        }
    }

    /// Adds a record to its series.
    pub fn record(&self, metric: Metric, labels: &Labels<'_>, value: f64) {
        match self.series.get(&metric) {
            Some(Series::Counts(family)) => {
                let set = self.label_set(metric.labelled(), labels);
                family
                    .get_or_create(&set)
                    .inc_by(value.max(0.0).round() as u64);
            }
            Some(Series::Histogram(histogram)) => histogram.observe(value),
            Some(Series::Histograms(family)) => {
                let set = self.label_set(metric.labelled(), labels);
                family.get_or_create(&set).observe(value);
            }
            None => {}
        }
    }

    /// The text exposition, with the gauges set from `depths` (left as they were without).
    pub fn render(&self, depths: Option<QueueDepths>) -> String {
        if let Some(d) = depths {
            self.gauges
                .queue
                .set(i64::try_from(d.queue).unwrap_or(i64::MAX));
            self.gauges
                .dlq
                .set(i64::try_from(d.dlq).unwrap_or(i64::MAX));
            let age = d.oldest_sent_at.map_or(0.0, |at| {
                (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
            });
            self.gauges.oldest_age.set(age);
            self.gauges.running.clear();
            self.gauges.waiting.clear();
            for (workflow, (running, waiting)) in &d.runs {
                let set = vec![("workflow".to_owned(), self.bounded(Some(workflow)))];
                self.gauges
                    .running
                    .get_or_create(&set)
                    .inc_by(i64::try_from(*running).unwrap_or(i64::MAX));
                self.gauges
                    .waiting
                    .get_or_create(&set)
                    .inc_by(i64::try_from(*waiting).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    fn label_set(&self, labelled: Labelled, labels: &Labels<'_>) -> LabelSet {
        let outcome = ("outcome".to_owned(), labels.outcome.to_owned());
        match labelled {
            Labelled::WorkflowOutcome => {
                let workflow = self.bounded(labels.workflow);
                vec![("workflow".to_owned(), workflow), outcome]
            }
            Labelled::Outcome => vec![outcome],
            Labelled::None => Vec::new(),
        }
    }

    /// The workflow's label value, once it is known or while there is room for another.
    fn bounded(&self, workflow: Option<&str>) -> String {
        let Some(workflow) = workflow else {
            return NO_WORKFLOW.to_owned();
        };
        let mut seen = self.workflows.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(workflow) {
            return workflow.to_owned();
        }
        if seen.len() < MAX_WORKFLOW_LABELS {
            seen.insert(workflow.to_owned());
            return workflow.to_owned();
        }
        OTHER_WORKFLOWS.to_owned()
    }
}

/// A run's duration: 1 s to about 9 days.
fn run_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 20))
}

/// Bucket bounds that cover each histogram's range: 0.5 ms to 16 s for an answer, 1 ms to
/// 65 s for the lag, 0.1 ms to 3 s for a commit, 1 to 1,024 jobs for a batch.
fn buckets(metric: Metric, kind: Kind) -> impl Iterator<Item = f64> {
    match (metric, kind) {
        (Metric::Lag, _) => exponential_buckets(0.001, 2.0, 17),
        (Metric::WriterCommit, _) => exponential_buckets(0.0001, 2.0, 16),
        (_, Kind::Items) => exponential_buckets(1.0, 2.0, 11),
        _ => exponential_buckets(0.0005, 2.0, 16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_bounded_labels() {
        let prometheus = Prometheus::new();
        prometheus.record(Metric::Accepted, &Labels::of("t", "etl", "accepted"), 2.0);
        prometheus.record(Metric::AcceptLatency, &Labels::NONE, 0.003);
        for n in 0..MAX_WORKFLOW_LABELS + 5 {
            let name = format!("w{n}");
            prometheus.record(Metric::Created, &Labels::of("t", &name, "created"), 1.0);
        }
        let text = prometheus.render(Some(QueueDepths {
            queue: 3,
            dlq: 1,
            oldest_sent_at: None,
            runs: [("w1".to_owned(), (2, 5))].into_iter().collect(),
        }));
        assert!(
            text.contains(r#"flowgate_running{workflow="w1"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"flowgate_waiting{workflow="w1"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"flowgate_accepted_total{workflow="etl",outcome="accepted"} 2"#),
            "{text}"
        );
        assert!(text.contains("flowgate_accept_latency_seconds_bucket{le=\"0.004\"} 1"));
        assert!(text.contains("flowgate_queue_depth 3"));
        assert!(text.contains("flowgate_dlq_depth 1"));
        assert!(text.contains(r#"flowgate_created_total{workflow="_other",outcome="created"} 6"#));
        let every = Prometheus::new();
        for metric in Metric::ALL {
            every.record(metric, &Labels::of("t", "w", "x"), 1.0);
        }
        let text = every.render(None);
        for metric in Metric::ALL {
            assert!(
                text.contains(&format!("# TYPE flowgate_{} ", metric.name())),
                "{metric:?}"
            );
        }
    }
}
