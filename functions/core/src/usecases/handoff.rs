//! The dispatch stage: after creation, the consumer hands the instance to its workflow's
//! target on the same delivery, and acknowledges the message only once the target took it.
//! Retries ride on the message's visibility, like a failed creation's; the request record
//! holds the hand-off state, so a redelivery, a replay or the reconciler never hands an
//! instance off twice once it is recorded as dispatched.

use chrono::Utc;
use tracing::{debug, error, info, warn};

use super::consume::{Consumer, Disposition};
use crate::dead_reason;
use crate::message::QueueMessage;
use crate::metrics::{Labels, Metric};
use crate::model::{Dispatch, EventKind, HistoryEvent, Instance, RequestStatus};
use crate::ports::{Delivery, DispatchError, RequestUpdate, UpdateOutcome};
use crate::trace::TraceContext;

/// Where a request stands when its hand-off is tried.
struct Owed {
    /// The status its updates are guarded by.
    status: RequestStatus,
    /// The hand-off so far.
    dispatch: Dispatch,
    /// The instance as stored, when this delivery did not create it (a redelivery's own
    /// copy would carry another creation time).
    stored: Option<Instance>,
}

impl Consumer {
    /// Hands a created instance to its target, unless its request says that was done.
    /// `fresh` is true when this delivery created the instance (nothing to read back).
    pub(super) async fn hand_off(
        &self,
        message: &QueueMessage,
        instance: &Instance,
        delivery: &Delivery,
        fresh: bool,
    ) -> Disposition {
        let kind = message.dispatch_to.clone().unwrap_or_default();
        let owed = if fresh {
            Owed {
                status: RequestStatus::Created,
                dispatch: Dispatch::owed(kind),
                stored: None,
            }
        } else {
            match self.still_owed(message, kind).await {
                Ok(Some(owed)) => owed,
                Ok(None) => return Disposition::Ack,
                Err(e) => return self.hand_off_failed(message, delivery, None, e).await,
            }
        };
        let mut dispatch = owed.dispatch;
        dispatch.attempts += 1;
        // The stored instance, when there is one, with its request's run options, which the
        // target is handed with it (an instance does not store them).
        let mut instance = owed.stored.unwrap_or_else(|| instance.clone());
        instance.options = message.spec.options.clone();
        instance.callback = self
            .config
            .callbacks
            .as_ref()
            .map(|c| c.of(&instance.tenant, &instance.instance_id));
        // The target's span is a child of this delivery's (or starts the trace).
        let fallback = TraceContext::continue_or_start(delivery.traceparent.as_deref());
        let trace = crate::trace::hand_on(&tracing::Span::current(), fallback);
        let result = self.send_to_target(message, &instance, &trace).await;
        match result {
            Ok(reference) => {
                self.dispatched(message, delivery, owed.status, dispatch, reference)
                    .await
            }
            Err(e) => {
                self.hand_off_failed(message, delivery, Some((owed.status, dispatch)), e)
                    .await
            }
        }
    }

    /// The hand-off still owed on a redelivered message, or `None` when there is nothing to
    /// do (already dispatched, or the request has moved on to the dead-letter queue).
    async fn still_owed(
        &self,
        message: &QueueMessage,
        kind: String,
    ) -> Result<Option<Owed>, DispatchError> {
        let record = self
            .store
            .get_request(&message.tenant, &message.request_id)
            .await
            .map_err(|e| DispatchError::retryable(e.chain()))?
            .ok_or_else(|| DispatchError::permanent("the request has no record"))?;
        if record.run.as_ref().is_some_and(|r| r.is_final()) {
            info!(stage = "duplicate", "the run already ended; no hand-off");
            return Ok(None);
        }
        Ok(match record.status {
            RequestStatus::Accepted | RequestStatus::Created => Some(Owed {
                status: record.status,
                dispatch: record.dispatch.unwrap_or_else(|| Dispatch::owed(kind)),
                stored: self
                    .store
                    .get_instance(&message.tenant, &message.instance_id)
                    .await
                    .map_err(|e| DispatchError::retryable(e.chain()))?,
            }),
            RequestStatus::Dispatched => {
                info!(
                    stage = "duplicate",
                    "instance already dispatched; redelivery absorbed"
                );
                None
            }
            RequestStatus::Dead | RequestStatus::Archived => {
                info!(
                    stage = "duplicate",
                    status = record.status.as_str(),
                    "a copy of a dead-lettered request; dropping it"
                );
                None
            }
            RequestStatus::Waiting | RequestStatus::Skipped => {
                info!(
                    stage = "duplicate",
                    status = record.status.as_str(),
                    "a copy of a start its concurrency limit holds back; dropping it"
                );
                None
            }
        })
    }

    /// Reads the workflow's target now (so the secret never travels) and hands it the
    /// instance; answers the target's reference.
    async fn send_to_target(
        &self,
        message: &QueueMessage,
        instance: &Instance,
        trace: &TraceContext,
    ) -> Result<String, DispatchError> {
        let workflow = self
            .store
            .get_workflow(&message.tenant, &message.spec.workflow)
            .await
            .map_err(|e| DispatchError::retryable(e.chain()))?;
        let target = workflow.and_then(|w| w.target).ok_or_else(|| {
            DispatchError::permanent(format!(
                "workflow {} has no target any more; put one back, then replay",
                message.spec.workflow
            ))
        })?;
        let dispatcher = self.dispatcher.as_ref().ok_or_else(|| {
            DispatchError::permanent("this consumer hands instances to no target")
        })?;
        Ok(dispatcher
            .dispatch(&target, instance, Some(trace))
            .await?
            .reference)
    }

    /// Records the hand-off; the message is done even if that write fails after retries,
    /// since a redelivery would hand the instance off again (targets dedupe on its id).
    async fn dispatched(
        &self,
        message: &QueueMessage,
        delivery: &Delivery,
        guard: RequestStatus,
        mut dispatch: Dispatch,
        reference: String,
    ) -> Disposition {
        let now = Utc::now();
        let detail = format!(
            "handed to the {} target on attempt {}: {reference}",
            dispatch.target, dispatch.attempts
        );
        dispatch.reference = Some(reference);
        dispatch.dispatched_at = Some(now);
        let update = RequestUpdate {
            only_if: Some(guard),
            set_status: Some(RequestStatus::Dispatched),
            set_dispatch: Some(dispatch),
            ..RequestUpdate::event(HistoryEvent {
                at: now,
                kind: EventKind::Dispatched,
                detail,
                trace_id: None,
            })
        };
        match self
            .store
            .update_request(&message.tenant, &message.request_id, &update)
            .await
        {
            Ok(_) => {
                debug!(stage = "dispatched", "instance handed to its target");
                let labels = Labels::of(&message.tenant, &message.spec.workflow, "dispatched");
                self.measure(Metric::Dispatched, &labels, 1.0);
                Disposition::Ack
            }
            Err(e) => {
                warn!(error = %e.chain(), "dispatched, but could not record it; will retry");
                Disposition::Retry {
                    reason: e.chain(),
                    delay: self.retry_delay(delivery.receive_count),
                }
            }
        }
    }

    /// Records a failed hand-off, then retries it or dead-letters it with kind `dispatch`.
    async fn hand_off_failed(
        &self,
        message: &QueueMessage,
        delivery: &Delivery,
        owed: Option<(RequestStatus, Dispatch)>,
        err: DispatchError,
    ) -> Disposition {
        let last = delivery.receive_count >= self.config.max_receive_count;
        let dead = !err.retryable || last;
        let labels = Labels::of(&message.tenant, &message.spec.workflow, "failed");
        self.measure(Metric::Dispatched, &labels, 1.0);
        let delay = self.retry_delay(delivery.receive_count);
        let Some((guard, dispatch)) = owed else {
            // The record could not be read: nothing to record it on; the letter keeps it.
            if dead {
                let reason = dead_reason::dispatch(None, &err.reason);
                error!(stage = "dead_lettered", reason = %reason, "hand-off not tried; dead-lettered");
                return Disposition::DeadLetter { reason };
            }
            warn!(stage = "dispatch_failed", error = %err, "hand-off not tried; will retry");
            return Disposition::Retry {
                reason: err.reason,
                delay,
            };
        };
        let detail = if dead {
            format!(
                "hand-off attempt {} to the {} target failed: {}",
                dispatch.attempts, dispatch.target, err.reason
            )
        } else {
            format!(
                "hand-off attempt {} to the {} target failed: {}; retrying in {}s",
                dispatch.attempts,
                dispatch.target,
                err.reason,
                delay.as_secs_f64().ceil()
            )
        };
        let update = RequestUpdate {
            only_if: Some(guard),
            set_status: Some(RequestStatus::Created),
            set_attempts: Some(delivery.receive_count),
            set_last_error: Some(err.reason.clone()),
            set_dispatch: Some(dispatch),
            touch_pending: true,
            ..RequestUpdate::event(HistoryEvent::now(EventKind::DispatchFailed, detail))
        };
        let recorded = self
            .store
            .update_request(&message.tenant, &message.request_id, &update)
            .await;
        match recorded {
            Ok(UpdateOutcome::Applied) => {}
            Ok(_) => return Disposition::Ack,
            Err(e) => {
                warn!(error = %e.chain(), "could not record the failed hand-off; will retry");
                return Disposition::Retry {
                    reason: err.reason,
                    delay,
                };
            }
        }
        if !dead {
            warn!(stage = "dispatch_failed", error = %err, "hand-off failed; will retry");
            return Disposition::Retry {
                reason: err.reason,
                delay,
            };
        }
        let reason = dead_reason::dispatch(
            (err.retryable && last).then_some(delivery.receive_count),
            &err.reason,
        );
        // Its instance stays; a replay re-drives the hand-off only.
        let disposition = self
            .mark_dead(
                &message.tenant,
                &message.request_id,
                delivery,
                RequestStatus::Created,
                reason,
            )
            .await;
        // Nothing runs it now: its slot went back, and the next start waiting for it goes.
        if matches!(disposition, Disposition::DeadLetter { .. }) {
            self.release_next(message).await;
        }
        disposition
    }
}
