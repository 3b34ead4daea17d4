//! The reconciler Lambda: on each EventBridge schedule, one sweep of overdue pending
//! requests. The sweep reports its counts (`PendingOverGrace`, `Reenqueued`,
//! `ReconcileFailed`) to the reconciler's metrics sink, CloudWatch EMF in the function.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;

use flowgate_core::BackendError;
use flowgate_core::usecases::{Reconciler, SweepReport};

/// Handles one scheduled event: one sweep, whose counts go to the reconciler's metrics.
pub async fn handle(
    reconciler: &Reconciler,
    event: CloudWatchEvent,
) -> Result<SweepReport, BackendError> {
    tracing::info!(source = ?event.source, detail_type = ?event.detail_type, "scheduled sweep");
    reconciler.sweep().await
}
