//! The metrics port: what the use cases and stores measure, named once. Each host plugs in
//! its own sink (the local server keeps Prometheus series; the cloud functions write their
//! provider's metric lines; see the host crates). Every metric any host publishes is a
//! [`Metric`] here, so dashboards and alarms can be checked against [`Metric::ALL`].

/// What a metric's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A count of occurrences (each record adds its value).
    Count,
    /// A duration in seconds (each record is one observation, of a histogram).
    Seconds,
    /// A number of items (each record is one observation, of a histogram).
    Items,
}

/// Which labels a metric carries. Every label value comes from a bounded set: a registered
/// workflow's code or a fixed outcome word, never a request id or a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labelled {
    /// `workflow` and `outcome`.
    WorkflowOutcome,
    /// `outcome` only.
    Outcome,
    /// None.
    None,
}

/// Every metric Flowgate publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Start requests answered, by outcome: `accepted`, `replayed` (a known key), `refused`
    /// (a 4xx), `unavailable` (nothing durable was written).
    Accepted,
    /// Deliveries that settled an instance, by outcome: `created`, `duplicate` (a redelivery
    /// absorbed), `completed` (the instance existed; its request is now complete).
    Created,
    /// Hand-offs to a target, by outcome: `dispatched`, `failed` (will retry).
    Dispatched,
    /// Requests and messages dead-lettered, by outcome: the reason's kind (`permanent`,
    /// `exhausted`, `poison`, `dispatch`).
    DeadLettered,
    /// Dead letters replayed, by outcome: `replayed`, `skipped` (already created), `failed`.
    Replayed,
    /// Schedule fires and backfill dates started, by outcome: `started`, `duplicate` (that
    /// date already had a request), `failed`.
    Fired,
    /// Dead letters archived or restored, by outcome: `archived`, `archive_failed`,
    /// `restored`, `restore_failed`.
    DlqArchive,
    /// What the reconciler's sweeps found, by outcome: `overdue` (accepted, not created, past
    /// the grace period), `reenqueued`, `failed`, `expired` (finished requests removed).
    ReconcilerFound,
    /// How long a start request took to answer.
    AcceptLatency,
    /// From a request's acceptance to its instance's creation.
    Lag,
    /// Jobs the embedded store's writer committed together.
    WriterBatch,
    /// How long the embedded store's writer took to commit a batch (its fsync).
    WriterCommit,
    /// Runs and starts under a concurrency limit changing state, by workflow and outcome:
    /// `running`, `succeeded`, `failed`, `timed_out`, `cancelled` (a run's status), `waiting`,
    /// `skipped` (a start held back, or skipped, by its limit).
    Runs,
    /// How long runs took, from acceptance to their final status, by outcome.
    RunDuration,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 14] = [
        Metric::Accepted,
        Metric::Created,
        Metric::Dispatched,
        Metric::DeadLettered,
        Metric::Replayed,
        Metric::Fired,
        Metric::DlqArchive,
        Metric::ReconcilerFound,
        Metric::AcceptLatency,
        Metric::Lag,
        Metric::WriterBatch,
        Metric::WriterCommit,
        Metric::Runs,
        Metric::RunDuration,
    ];

    /// Its name: the same on every host (Prometheus adds the `flowgate_` prefix and, for a
    /// count, the `_total` suffix its format requires; the cloud host puts it in the `Flowgate`
    /// namespace).
    pub const fn name(self) -> &'static str {
        match self {
            Metric::Accepted => "accepted",
            Metric::Created => "created",
            Metric::Dispatched => "dispatched",
            Metric::DeadLettered => "dead_lettered",
            Metric::Replayed => "replayed",
            Metric::Fired => "fired",
            Metric::DlqArchive => "dlq_archive",
            Metric::ReconcilerFound => "reconciler_found",
            Metric::AcceptLatency => "accept_latency_seconds",
            Metric::Lag => "lag_seconds",
            Metric::WriterBatch => "writer_batch_jobs",
            Metric::WriterCommit => "writer_commit_seconds",
            Metric::Runs => "runs",
            Metric::RunDuration => "run_duration_seconds",
        }
    }

    /// What its values are.
    pub const fn kind(self) -> Kind {
        match self {
            Metric::AcceptLatency | Metric::Lag | Metric::WriterCommit | Metric::RunDuration => {
                Kind::Seconds
            }
            Metric::WriterBatch => Kind::Items,
            _ => Kind::Count,
        }
    }

    /// Which labels it carries.
    pub const fn labelled(self) -> Labelled {
        match self.kind() {
            Kind::Count => match self {
                Metric::DlqArchive | Metric::ReconcilerFound => Labelled::Outcome,
                _ => Labelled::WorkflowOutcome,
            },
            Kind::Seconds if matches!(self, Metric::RunDuration) => Labelled::Outcome,
            Kind::Seconds | Kind::Items => Labelled::None,
        }
    }

    /// One line saying what it measures (the Prometheus `# HELP`).
    pub const fn help(self) -> &'static str {
        match self {
            Metric::Accepted => "Start requests answered, by workflow and outcome",
            Metric::Created => "Deliveries that settled an instance, by workflow and outcome",
            Metric::Dispatched => "Hand-offs to a target, by workflow and outcome",
            Metric::DeadLettered => "Requests dead-lettered, by workflow and reason kind",
            Metric::Replayed => "Dead letters replayed, by workflow and outcome",
            Metric::Fired => "Schedule fires and backfill dates started, by workflow and outcome",
            Metric::DlqArchive => "Dead letters archived or restored, by outcome",
            Metric::ReconcilerFound => "What the reconciler's sweeps found, by outcome",
            Metric::AcceptLatency => "Time to answer a start request",
            Metric::Lag => "Time from a request's acceptance to its instance's creation",
            Metric::WriterBatch => "Jobs the embedded writer committed together",
            Metric::WriterCommit => "Time the embedded writer took to commit a batch",
            Metric::Runs => "Runs and held-back starts changing state, by workflow and outcome",
            Metric::RunDuration => {
                "Time from a start's acceptance to its run's final status, by outcome"
            }
        }
    }

    /// The outcome words its records carry (empty for a histogram).
    pub const fn outcomes(self) -> &'static [&'static str] {
        match self {
            Metric::Accepted => &["accepted", "replayed", "refused", "unavailable"],
            Metric::Created => &["created", "duplicate", "completed"],
            Metric::Dispatched => &["dispatched", "failed"],
            Metric::DeadLettered => &["permanent", "exhausted", "poison", "dispatch", "unknown"],
            Metric::Replayed => &["replayed", "skipped", "failed"],
            Metric::Fired => &["started", "duplicate", "failed", "skipped"],
            Metric::DlqArchive => &["archived", "archive_failed", "restored", "restore_failed"],
            Metric::ReconcilerFound => &[
                "overdue",
                "reenqueued",
                "failed",
                "expired",
                "timed_out",
                "polled",
            ],
            Metric::Runs => &[
                "running",
                "succeeded",
                "failed",
                "timed_out",
                "cancelled",
                "waiting",
                "skipped",
            ],
            Metric::RunDuration => &["succeeded", "failed", "timed_out", "cancelled"],
            Metric::AcceptLatency | Metric::Lag | Metric::WriterBatch | Metric::WriterCommit => &[],
        }
    }

    /// The metric named `name`, if any.
    pub fn named(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Who and what one record is about. The tenant is never a published label; a sink may use
/// it to keep per-tenant views (the operator page shows a tenant only its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels<'a> {
    /// The tenant, when one is known.
    pub tenant: Option<&'a str>,
    /// The workflow's code, when one is known and registered.
    pub workflow: Option<&'a str>,
    /// The outcome word (see each [`Metric`]); empty for histograms.
    pub outcome: &'a str,
}

impl<'a> Labels<'a> {
    /// No labels (a histogram, or a process-wide count).
    pub const NONE: Labels<'static> = Labels {
        tenant: None,
        workflow: None,
        outcome: "",
    };

    /// An outcome of no particular workflow.
    pub const fn outcome(outcome: &'a str) -> Self {
        Labels {
            tenant: None,
            workflow: None,
            outcome,
        }
    }

    /// An outcome of `workflow` of `tenant`.
    pub const fn of(tenant: &'a str, workflow: &'a str, outcome: &'a str) -> Self {
        Labels {
            tenant: Some(tenant),
            workflow: Some(workflow),
            outcome,
        }
    }
}

/// Where a host sends what the use cases and stores measure.
pub trait Metrics: Send + Sync {
    /// Records `value`: added to a count, or one observation of a histogram.
    fn record(&self, metric: Metric, labels: &Labels<'_>, value: f64);

    /// Records several values of one event under the same labels (a start's count and its
    /// answer time, say): each as [`Metrics::record`] does, unless the sink can keep them
    /// together (one log line instead of one each).
    fn record_all(&self, labels: &Labels<'_>, values: &[(Metric, f64)]) {
        for (metric, value) in values {
            self.record(*metric, labels, *value);
        }
    }
}

/// Records into `metrics`, when there is a sink.
pub fn record(metrics: Option<&dyn Metrics>, metric: Metric, labels: &Labels<'_>, value: f64) {
    if let Some(m) = metrics {
        m.record(metric, labels, value);
    }
}

/// Records several values of one event into `metrics`, when there is a sink.
pub fn record_all(metrics: Option<&dyn Metrics>, labels: &Labels<'_>, values: &[(Metric, f64)]) {
    if let Some(m) = metrics {
        m.record_all(labels, values);
    }
}

/// Records a count of each outcome of `metric` (of no particular workflow), zeros included,
/// so that a dashboard sees the outcome that did not happen as 0, not as missing.
pub fn record_outcomes(metrics: Option<&dyn Metrics>, metric: Metric, counts: &[(&str, u64)]) {
    for (outcome, n) in counts {
        record(metrics, metric, &Labels::outcome(outcome), *n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_safe() {
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        for m in Metric::ALL {
            assert_eq!(Metric::named(m.name()), Some(m));
        }
    }

    #[test]
    fn histograms_carry_no_labels_and_units_are_named() {
        for m in Metric::ALL {
            match m.kind() {
                Kind::Seconds => {
                    assert!(m.name().ends_with("_seconds"), "{m:?}");
                    assert_ne!(m.labelled(), Labelled::WorkflowOutcome, "{m:?}");
                }
                Kind::Items => assert_eq!(m.labelled(), Labelled::None),
                Kind::Count => assert_ne!(m.labelled(), Labelled::None),
            }
        }
    }
}
