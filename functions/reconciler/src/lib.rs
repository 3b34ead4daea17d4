//! The reconciler Lambda: on each EventBridge schedule, one sweep of overdue pending
//! requests, with the overdue count emitted as a CloudWatch metric (Embedded Metric Format).

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use serde_json::Value;

use flowgate_core::metrics::emf_line;

use flowgate_core::BackendError;
use flowgate_core::usecases::{Reconciler, SweepReport};

pub use flowgate_core::metrics::NAMESPACE;

/// The EMF log line that publishes a sweep's figures as metrics.
pub fn metric_line(report: &SweepReport, at_millis: i64) -> Value {
    emf_line(
        &[
            ("PendingOverGrace", report.overdue as u64),
            ("Reenqueued", report.reenqueued as u64),
            ("ReconcileFailed", report.failed as u64),
        ],
        at_millis,
    )
}

/// Handles one scheduled event: sweeps, prints the metric line, answers the report.
pub async fn handle(
    reconciler: &Reconciler,
    event: CloudWatchEvent,
) -> Result<SweepReport, BackendError> {
    tracing::info!(source = ?event.source, detail_type = ?event.detail_type, "scheduled sweep");
    let report = reconciler.sweep().await?;
    let at = event.time.timestamp_millis();
    println!("{}", metric_line(&report, at));
    Ok(report)
}
