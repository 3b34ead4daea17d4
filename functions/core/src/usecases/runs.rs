//! Runs: a target's reports on an instance, an operator's cancel, and the reconciler's
//! time-outs, each recorded on the instance's request by the rules of [`crate::runs`].

use chrono::Utc;
use tracing::{info, instrument, warn};

use super::Flowgate;
use crate::error::Error;
use crate::metrics::{Labels, Metric};
use crate::model::{Instance, RequestRecord};
use crate::ports::{Store, UpdateOutcome};
use crate::runs::{self, Report, Run, RunStatus, Verdict};

/// How often a report is judged again when another one changed the run meanwhile.
const RACES: usize = 5;

impl Flowgate {
    /// Records a target's report on an instance: it moves the run on, repeats it (a no-op),
    /// comes out of order (recorded, nothing changes), or conflicts with a different final
    /// status (409). Answers the instance as it is now.
    #[instrument(skip(self, report), fields(tenant = %tenant, instance_id = %instance_id, status = report.status.as_str()))]
    pub async fn report_status(
        &self,
        tenant: &str,
        instance_id: &str,
        report: Report,
    ) -> Result<Instance, Error> {
        let instance = self.get_instance(tenant, instance_id).await?;
        self.run_ports().report(instance, report).await
    }

    /// The ports a report is recorded with.
    fn run_ports(&self) -> RunPorts<'_> {
        RunPorts {
            store: self.store.as_ref(),
            queue: self.queue.as_ref(),
            metrics: self.metrics.as_deref(),
        }
    }

    /// Records a report a target sent on its own (a status-change event), if it is about the
    /// run this instance was handed off as (its reference matches the hand-off's).
    pub async fn report_from_target(
        &self,
        tenant: &str,
        instance_id: &str,
        reference: &str,
        report: Report,
    ) -> Result<Instance, Error> {
        let instance = self.get_instance(tenant, instance_id).await?;
        let handed = instance
            .dispatch
            .as_ref()
            .and_then(|d| d.reference.as_deref());
        if handed.is_none() {
            // The event may come before the hand-off is recorded: it is retried.
            return Err(crate::BackendError::retryable(
                "report.from_target",
                format!("instance {instance_id}'s hand-off is not recorded yet"),
            )
            .into());
        }
        if handed != Some(reference) {
            return Err(Error::Conflict(format!(
                "{reference} is not the run instance {instance_id} was handed off as"
            )));
        }
        self.run_ports().report(instance, report).await
    }

    /// Cancels an instance's run: `CANCELLED` is recorded first, then its target is told
    /// (Step Functions: `StopExecution`; a webhook: a signed `cancel` notice). Cancelling a
    /// cancelled run is a no-op; any other final status is a 409.
    #[instrument(skip(self), fields(tenant = %tenant, instance_id = %instance_id))]
    pub async fn cancel_instance(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Instance, Error> {
        let instance = self.get_instance(tenant, instance_id).await?;
        let record = self.request_of(&instance).await?;
        let ended = end_run(
            self.store.as_ref(),
            &record,
            RunStatus::Cancelled,
            "cancelled by an operator".into(),
        )
        .await?;
        let run = match ended {
            Ended::Now(run) => {
                self.measure_run(&record, Some(&run));
                release_after(
                    self.store.as_ref(),
                    self.queue.as_ref(),
                    &record.tenant,
                    &record.spec,
                )
                .await;
                self.notify_cancel(&record, &instance).await;
                run
            }
            Ended::Already(run) if run.status == RunStatus::Cancelled => run,
            Ended::Already(run) => {
                return Err(Error::Conflict(format!(
                    "instance {instance_id} already ended {}",
                    run.status.as_str()
                )));
            }
        };
        Ok(instance.with_run(Some(run)))
    }

    /// Tells the target of a cancelled instance, and records what it answered.
    async fn notify_cancel(&self, record: &RequestRecord, instance: &Instance) {
        let (Some(dispatcher), Some(dispatch)) = (&self.dispatcher, &record.dispatch) else {
            return;
        };
        let target = match self
            .store
            .get_workflow(&record.tenant, &record.spec.workflow)
            .await
        {
            Ok(Some(w)) => w.target,
            _ => None,
        };
        let Some(target) = target else { return };
        let detail = match dispatcher
            .cancel(&target, instance, dispatch.reference.as_deref())
            .await
        {
            Ok(Some(answer)) => format!("the {} target was told: {answer}", dispatch.target),
            Ok(None) => return,
            Err(e) => format!("the {} target could not be told: {e}", dispatch.target),
        };
        let note = crate::ports::RequestUpdate::event(crate::model::HistoryEvent::now(
            crate::model::EventKind::Cancelled,
            detail,
        ));
        if let Err(e) = self
            .store
            .update_request(&record.tenant, &record.request_id, &note)
            .await
        {
            warn!(error = %e.chain(), "could not record the cancel notice");
        }
    }

    /// The request an instance was made from.
    async fn request_of(&self, instance: &Instance) -> Result<RequestRecord, Error> {
        self.store
            .get_request(&instance.tenant, &instance.request_id)
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "instance {}'s request is past retention; its run can no longer change",
                    instance.instance_id
                ))
            })
    }

    /// Counts a run's change: `running` as it starts, and its duration by outcome as it ends.
    fn measure_run(&self, record: &RequestRecord, run: Option<&Run>) {
        if let Some(run) = run {
            measure_run(self.metrics.as_deref(), record, run);
        }
    }
}

/// The ports a report is recorded with (the API's use cases, or the reconciler's).
pub(crate) struct RunPorts<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) queue: &'a dyn crate::ports::Queue,
    pub(crate) metrics: Option<&'a dyn crate::metrics::Metrics>,
}

impl RunPorts<'_> {
    /// Records `report` on `instance`: it moves the run on, repeats it (a no-op), comes out
    /// of order (recorded, nothing changes), or conflicts with a different final status
    /// (409). A final status gives the slot back, and the next start waiting for it goes.
    pub(crate) async fn report(
        &self,
        instance: Instance,
        report: Report,
    ) -> Result<Instance, Error> {
        let instance_id = instance.instance_id.clone();
        for _ in 0..RACES {
            let record = self
                .store
                .get_request(&instance.tenant, &instance.request_id)
                .await?
                .ok_or_else(|| {
                    Error::Conflict(format!(
                        "instance {instance_id}'s request is past retention; its run can no \
                         longer change"
                    ))
                })?;
            let now = Utc::now();
            let update = match runs::judge(record.run.as_ref(), &report, now) {
                Verdict::Apply(run) => runs::run_update(record.run.as_ref(), run, now, &report.by),
                Verdict::Repeat => return Ok(instance.with_run(record.run)),
                Verdict::Conflict(recorded) => {
                    return Err(Error::Conflict(format!(
                        "instance {instance_id} already ended {}; {} is refused",
                        recorded.as_str(),
                        report.status.as_str()
                    )));
                }
                Verdict::OutOfOrder(recorded) => runs::out_of_order_update(recorded, &report, now),
            };
            match self
                .store
                .update_request(&record.tenant, &record.request_id, &update)
                .await?
            {
                UpdateOutcome::Applied => {
                    if let Some(run) = &update.set_run {
                        measure_run(self.metrics, &record, run);
                        if run.is_final() {
                            release_after(self.store, self.queue, &record.tenant, &record.spec)
                                .await;
                        }
                    }
                    let run = update.set_run.clone().or(record.run);
                    return Ok(instance.with_run(run));
                }
                UpdateOutcome::Skipped(_) => continue,
                UpdateOutcome::NotFound => break,
            }
        }
        Err(Error::Conflict(format!(
            "instance {instance_id}'s run kept changing while this report was recorded; retry"
        )))
    }
}

/// Counts a run's change on `metrics`.
pub(crate) fn measure_run(
    metrics: Option<&dyn crate::metrics::Metrics>,
    record: &RequestRecord,
    run: &Run,
) {
    let outcome = run.status.event().as_str();
    let labels = Labels::of(&record.tenant, &record.spec.workflow, outcome);
    crate::metrics::record(metrics, Metric::Runs, &labels, 1.0);
    if let Some(end) = run.finished_at {
        let took = (end - record.accepted_at).num_milliseconds().max(0) as f64 / 1000.0;
        crate::metrics::record(
            metrics,
            Metric::RunDuration,
            &Labels::outcome(outcome),
            took,
        );
    }
}

/// After a start gave up its slot (its run ended) or was held back: the starts waiting for
/// its key that the store released are sent. A failed send is not lost: a released start is
/// pending, and the reconciler sends it after its grace period.
pub(crate) async fn release_after(
    store: &dyn Store,
    queue: &dyn crate::ports::Queue,
    tenant: &str,
    spec: &crate::model::StartSpec,
) {
    let Some(slot) = spec.policy.as_ref().and_then(|p| p.slot.as_ref()) else {
        return;
    };
    let released = match store.release_waiting(tenant, &spec.workflow, slot).await {
        Ok(released) => released,
        Err(e) => {
            warn!(error = %e.chain(), "could not release the starts waiting for a slot; the next run's end will");
            return;
        }
    };
    for r in released {
        let envelope = crate::message::QueueMessage::envelope_sent(&r);
        match queue.send(&envelope).await {
            Ok(()) => {
                info!(stage = "released", request_id = %r.request_id, "a waiting start was released")
            }
            Err(e) => {
                warn!(request_id = %r.request_id, error = %e.chain(), "released, not sent: the reconciler sends it")
            }
        }
    }
}

/// What ending a run found.
pub(crate) enum Ended {
    /// This call ended it.
    Now(Run),
    /// It had already ended.
    Already(Run),
}

/// Ends `record`'s run with `status` (a time-out or a cancel) unless it has ended already,
/// guarded against a report landing meanwhile.
pub(crate) async fn end_run(
    store: &dyn Store,
    record: &RequestRecord,
    status: RunStatus,
    detail: String,
) -> Result<Ended, Error> {
    let mut record = record.clone();
    for _ in 0..RACES {
        if let Some(run) = record.run.as_ref().filter(|r| r.is_final()) {
            return Ok(Ended::Already(run.clone()));
        }
        let now = Utc::now();
        let run = runs::ended(record.run.as_ref(), status, detail.clone(), now);
        let update = runs::run_update(record.run.as_ref(), run.clone(), now, "Flowgate");
        match store
            .update_request(&record.tenant, &record.request_id, &update)
            .await?
        {
            UpdateOutcome::Applied => {
                info!(stage = "run_ended", status = status.as_str(), "run ended");
                return Ok(Ended::Now(run));
            }
            UpdateOutcome::Skipped(_) => {
                record = store
                    .get_request(&record.tenant, &record.request_id)
                    .await?
                    .ok_or_else(|| Error::RequestNotFound(record.request_id.clone()))?;
            }
            UpdateOutcome::NotFound => return Err(Error::RequestNotFound(record.request_id)),
        }
    }
    Err(Error::Conflict(
        "the run kept changing while it was ended; retry".into(),
    ))
}
