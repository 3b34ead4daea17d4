//! The reconciler Lambda: on each EventBridge schedule, one sweep of overdue pending
//! requests, then the running backfills moved forward for up to [`BACKFILL_BUDGET`]. The
//! sweep reports its counts (`reconciler_found`, by outcome) and the backfills their starts
//! to the function's metrics sink, CloudWatch EMF.

use std::time::Duration;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;

use flowgate_core::usecases::{BackfillRunner, Reconciler, SweepReport};
use flowgate_core::{BackendError, Flowgate, HostPorts};
use flowgate_settings::Settings;

/// How long one run moves backfills forward (the function's timeout is 60 s, its schedule
/// one minute): a backfill advances in steps of [`BACKFILL_TICK`] for most of each minute.
pub const BACKFILL_BUDGET: Duration = Duration::from_secs(45);
/// How often a run steps the backfills (and the period their `rate` is counted over).
pub const BACKFILL_TICK: Duration = Duration::from_secs(1);

/// The function's use cases over `ports`: the sweep, and a backfill runner built like every
/// host's use cases (`Flowgate::build`), so that the dates it starts are validated within
/// the same budget and counted in the same metrics as any start.
pub fn use_cases(settings: &Settings, ports: HostPorts) -> (Reconciler, BackfillRunner) {
    let mut reconciler = Reconciler::new(
        ports.store.clone(),
        ports.queue.clone(),
        settings.reconcile_grace,
    );
    if let Some(metrics) = &ports.metrics {
        reconciler = reconciler.with_metrics(metrics.clone());
    }
    (
        reconciler,
        BackfillRunner::new(Flowgate::build(settings, ports)),
    )
}

/// Handles one scheduled event: one sweep, whose counts go to the reconciler's metrics, then
/// the running backfills (a failed backfill step is logged and retried on the next run).
pub async fn handle(
    reconciler: &Reconciler,
    backfills: Option<&BackfillRunner>,
    event: CloudWatchEvent,
) -> Result<SweepReport, BackendError> {
    tracing::info!(source = ?event.source, detail_type = ?event.detail_type, "scheduled sweep");
    let report = reconciler.sweep().await?;
    if let Some(runner) = backfills {
        match runner.run_for(BACKFILL_BUDGET, BACKFILL_TICK).await {
            Ok(moved) => tracing::info!(moved, "backfills stepped"),
            Err(e) => tracing::warn!(error = %e, "backfill step failed; the next run retries"),
        }
    }
    Ok(report)
}
