//! The reconciler: finds requests stuck in `ACCEPTED`, or `CREATED` with a hand-off owed,
//! and sends their messages again.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tracing::{Instrument, error, info, warn};

use crate::error::BackendError;
use crate::message::QueueMessage;
use crate::metrics::{Metric, Metrics};
use crate::model::{EventKind, HistoryEvent, RequestRecord, RequestStatus};
use crate::ports::{Liveness, Queue, RequestUpdate, Store};

/// Batches of requests past retention one sweep removes at most: 20 × 500 = 10,000, so the
/// removals keep up with 1,000 starts/s at the default 10 s interval.
const EXPIRE_BATCHES: usize = 20;

/// What one sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Pending requests older than the grace period.
    pub overdue: usize,
    /// Sent again.
    pub reenqueued: usize,
    /// Left alone: their message is still on the queue.
    pub live: usize,
    /// Found in the dead-letter queue and marked `DEAD`.
    pub dead: usize,
    /// Could not be handled this time; retried on the next sweep.
    pub failed: usize,
    /// Finished requests past retention, removed (where the store does not expire them
    /// itself).
    pub expired: usize,
    /// Runs that went past their workflow's `run_timeout`, now `TIMED_OUT`.
    pub timed_out: usize,
    /// Quiet runs whose target was asked where they are (Step Functions executions).
    pub polled: usize,
}

/// The most quiet runs one sweep asks their targets about: the rate at which the reconciler
/// calls a target's API is bounded by it (20 per sweep: 2 a second at the default interval).
pub const POLL_BATCH: usize = 20;

/// Re-drives requests whose message went missing (say, a crash between record and send).
pub struct Reconciler {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    grace: Duration,
    batch: usize,
    metrics: Option<Arc<dyn Metrics>>,
    retention: Option<Duration>,
    dispatcher: Option<Arc<dyn crate::ports::Dispatcher>>,
    /// Where the last poll stopped: the next one goes on after it, so every quiet run is
    /// asked in turn.
    poll_after: std::sync::Mutex<Option<chrono::DateTime<Utc>>>,
}

impl Reconciler {
    /// A reconciler that treats requests pending longer than `grace` as stuck.
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>, grace: Duration) -> Self {
        Self {
            store,
            queue,
            grace,
            batch: 500,
            metrics: None,
            retention: None,
            dispatcher: None,
            poll_after: std::sync::Mutex::new(None),
        }
    }

    /// Also asks the targets of quiet unfinished runs where they are (a Step Functions
    /// execution whose status change was not reported), [`POLL_BATCH`] a sweep at most.
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn crate::ports::Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Also removes, each sweep, finished requests last changed more than `retention` ago
    /// (see [`Store::expire_requests`]).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Reports what each sweep found ([`Metric::ReconcilerFound`]).
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn report(&self, report: &SweepReport) {
        let counts = [
            ("overdue", report.overdue as u64),
            ("reenqueued", report.reenqueued as u64),
            ("failed", report.failed as u64),
            ("expired", report.expired as u64),
            ("timed_out", report.timed_out as u64),
            ("polled", report.polled as u64),
        ];
        let metrics = self.metrics.as_deref();
        crate::metrics::record_outcomes(metrics, Metric::ReconcilerFound, &counts);
        if report.overdue > 0 || report.expired > 0 || report.timed_out > 0 {
            info!(stage = "reconciled", ?report, "reconciler sweep");
        }
    }

    /// Examines up to one batch of overdue requests.
    pub async fn sweep(&self) -> Result<SweepReport, BackendError> {
        let grace = chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now() - grace;
        let overdue = self.store.list_pending(cutoff, self.batch).await?;
        let mut report = SweepReport {
            overdue: overdue.len(),
            ..SweepReport::default()
        };
        for record in overdue {
            let span = super::request_span(
                "reconcile",
                &record.tenant,
                &record.spec.workflow,
                &record.request_id,
                &record.instance_id,
                record.trace(),
            );
            match self.reconcile(&record).instrument(span).await {
                Ok(Liveness::Live) => report.live += 1,
                Ok(Liveness::DeadLettered(_)) => report.dead += 1,
                Ok(_) => report.reenqueued += 1,
                Err(e) => {
                    warn!(request_id = %record.request_id, error = %e.chain(), "reconcile failed");
                    report.failed += 1;
                }
            }
        }
        report.expired = self.expire().await;
        report.timed_out = self.time_out().await;
        report.polled = self.poll(cutoff).await;
        self.report(&report);
        Ok(report)
    }

    /// Asks the targets of up to [`POLL_BATCH`] runs quiet since `quiet_since` where they are,
    /// and records what they say; answers how many were asked.
    async fn poll(&self, quiet_since: chrono::DateTime<Utc>) -> usize {
        let Some(dispatcher) = &self.dispatcher else {
            return 0;
        };
        let after = *self
            .poll_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let quiet = match self.store.quiet_runs(quiet_since, after, POLL_BATCH).await {
            Ok(quiet) => quiet,
            Err(e) => {
                warn!(error = %e.chain(), "could not list the quiet runs");
                return 0;
            }
        };
        *self
            .poll_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = if quiet.len() < POLL_BATCH {
            None
        } else {
            quiet.last().map(|q| q.2)
        };
        let ports = super::runs::RunPorts {
            store: self.store.as_ref(),
            queue: self.queue.as_ref(),
            metrics: self.metrics.as_deref(),
        };
        let mut asked = 0;
        for (tenant, request_id, _) in quiet {
            match self
                .ask(dispatcher.as_ref(), &ports, &tenant, &request_id)
                .await
            {
                Ok(()) => asked += 1,
                Err(e) => {
                    warn!(%request_id, error = %e, "could not ask a run's target where it is")
                }
            }
        }
        asked
    }

    /// Asks one run's target where it is, and records the answer.
    async fn ask(
        &self,
        dispatcher: &dyn crate::ports::Dispatcher,
        ports: &super::runs::RunPorts<'_>,
        tenant: &str,
        request_id: &str,
    ) -> Result<(), crate::Error> {
        let Some(record) = self.store.get_request(tenant, request_id).await? else {
            return Ok(());
        };
        let Some(reference) = record.dispatch.as_ref().and_then(|d| d.reference.clone()) else {
            return Ok(());
        };
        let Some(instance) = self.store.get_instance(tenant, &record.instance_id).await? else {
            return Ok(());
        };
        let Some(target) = self
            .store
            .get_workflow(tenant, &record.spec.workflow)
            .await?
            .and_then(|w| w.target)
        else {
            return Ok(());
        };
        let answer = dispatcher
            .status(&target, &instance, &reference)
            .await
            .map_err(|e| crate::Error::Conflict(e.reason))?;
        if let Some(report) = answer {
            ports.report(instance, report).await?;
        }
        Ok(())
    }

    /// Ends the runs past their time-out, one batch a sweep; a failure waits for the next.
    async fn time_out(&self) -> usize {
        let overdue = match self.store.overdue_runs(Utc::now(), self.batch).await {
            Ok(overdue) => overdue,
            Err(e) => {
                warn!(error = %e.chain(), "could not list runs past their time-out");
                return 0;
            }
        };
        let mut ended = 0;
        for (tenant, request_id) in overdue {
            let record = match self.store.get_request(&tenant, &request_id).await {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e) => {
                    warn!(%request_id, error = %e.chain(), "time-out: could not read the request");
                    continue;
                }
            };
            let timeout = record
                .spec
                .policy
                .as_ref()
                .and_then(|p| p.timeout)
                .unwrap_or(0);
            let detail = format!(
                "no final status within its workflow's run_timeout of {timeout} s; the \
                 reconciler ended it"
            );
            match super::runs::end_run(
                self.store.as_ref(),
                &record,
                crate::runs::RunStatus::TimedOut,
                detail,
            )
            .await
            {
                Ok(super::runs::Ended::Now(run)) => {
                    super::runs::measure_run(self.metrics.as_deref(), &record, &run);
                    super::runs::release_after(
                        self.store.as_ref(),
                        self.queue.as_ref(),
                        &record.tenant,
                        &record.spec,
                    )
                    .await;
                    ended += 1;
                }
                Ok(super::runs::Ended::Already(_)) => {}
                Err(e) => warn!(%request_id, error = %e, "time-out: could not end the run"),
            }
        }
        ended
    }

    /// Removes requests past retention, a batch at a time (each its own write, so other
    /// writes go on between them), up to `EXPIRE_BATCHES`; a failure waits for the next
    /// sweep.
    async fn expire(&self) -> usize {
        let Some(retention) = self.retention else {
            return 0;
        };
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let Some(before) = Utc::now().checked_sub_signed(retention) else {
            return 0;
        };
        let mut expired = 0;
        for _ in 0..EXPIRE_BATCHES {
            match self.store.expire_requests(before, self.batch).await {
                Ok(n) => {
                    expired += n;
                    if n < self.batch {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e.chain(), "could not remove requests past retention");
                    break;
                }
            }
        }
        expired
    }

    async fn reconcile(&self, record: &RequestRecord) -> Result<Liveness, BackendError> {
        let liveness = self
            .queue
            .liveness(&record.tenant, &record.request_id)
            .await?;
        match &liveness {
            Liveness::Live => {}
            Liveness::DeadLettered(reason) => {
                let update = RequestUpdate {
                    only_if: Some(record.status),
                    set_status: Some(RequestStatus::Dead),
                    set_last_error: Some(reason.clone()),
                    ..RequestUpdate::event(HistoryEvent::now(
                        EventKind::DeadLettered,
                        format!("found in the dead-letter queue by the reconciler: {reason}"),
                    ))
                };
                self.store
                    .update_request(&record.tenant, &record.request_id, &update)
                    .await?;
                error!(stage = "dead_lettered", reason = %reason, "request found dead-lettered");
            }
            Liveness::Absent | Liveness::Unknown => {
                let age = Utc::now() - record.pending_since.unwrap_or(record.accepted_at);
                // Stamped before the send, so it precedes anything the consumer then records.
                let owed = if record.status == RequestStatus::Accepted {
                    "pending"
                } else {
                    "created, its hand-off owed"
                };
                let update = RequestUpdate {
                    only_if: Some(record.status),
                    touch_pending: true,
                    ..RequestUpdate::event(HistoryEvent::now(
                        EventKind::Reenqueued,
                        format!(
                            "re-enqueued by the reconciler after {}s {owed}",
                            age.num_seconds()
                        ),
                    ))
                };
                self.queue.send(&QueueMessage::envelope_for(record)).await?;
                self.store
                    .update_request(&record.tenant, &record.request_id, &update)
                    .await?;
                warn!(stage = "reenqueued", "stuck request re-enqueued");
            }
        }
        Ok(liveness)
    }

    /// Sweeps every `interval` until `shutdown` turns true.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if let Err(e) = self.sweep().await {
                warn!(error = %e.chain(), "reconciler sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
