//! The metrics port: where the use cases report their counts. Each host plugs in its own
//! sink (the cloud functions write their provider's metric lines; see the backend crates).

/// Where a host sends the use cases' counts.
pub trait Metrics: Send + Sync {
    /// Records one occurrence of each named count.
    fn counts(&self, values: &[(&'static str, u64)]);
}

/// Every count name the use cases report. Dashboards and alarms may refer only to these.
pub const COUNT_NAMES: &[&str] = &[
    "DlqReplayed",
    "DlqReplaySkipped",
    "DlqReplayFailed",
    "DlqArchived",
    "DlqArchiveFailed",
    "DlqRestored",
    "DlqRestoreFailed",
    "PendingOverGrace",
    "Reenqueued",
    "ReconcileFailed",
];
