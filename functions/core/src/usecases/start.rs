//! Starting an instance: validate, record durably, enqueue, optionally wait.
//!
//! The answer always matches what will happen: once the record is durable the request is
//! accepted (2xx), even if its enqueue fails, because the reconciler will send it. Only a
//! request of which nothing durable was written fails (retryably).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{Instrument, Span, error, info, instrument, warn};

use super::Flowgate;
use crate::error::{Error, StoreError};
use crate::ids;
use crate::message::QueueMessage;
use crate::metrics::{Labels, Metric};
use crate::model::{
    Dispatch, EventKind, HistoryEvent, RequestRecord, RequestStatus, StartSpec, Workflow,
};
use crate::ports::{BackfillRecord, Enqueued, Outbox, RequestUpdate};
use crate::trace::TraceContext;
use crate::validation::{StartBody, identifier};

/// A start request as the API received it.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Owning tenant.
    pub tenant: String,
    /// Target workflow code.
    pub workflow: String,
    /// The parsed body.
    pub body: StartBody,
    /// The `Idempotency-Key`, already validated.
    pub idempotency_key: Option<String>,
    /// `Prefer: wait=N`: how long to wait for the instance to exist.
    pub wait: Option<Duration>,
    /// What asked for it, when not a client: a schedule's fire or a backfill's date.
    pub origin: Option<Origin>,
    /// Run options to keep with the request, not acted on.
    pub options: BTreeMap<String, String>,
    /// The trace the API's work on it runs in; `None` starts a new one.
    pub trace: Option<TraceContext>,
    /// A dry run: the instance is created and never handed to its target.
    pub dry_run: bool,
}

/// A start that a schedule or a backfill asked for: its logical date keys it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The nominal fire time, in UTC.
    pub logical_date: DateTime<Utc>,
    /// The schedule that fired, if one did.
    pub schedule_id: Option<String>,
    /// The backfill whose date it is, if one asked.
    pub backfill_id: Option<String>,
    /// Key it by (backfill, date) rather than (workflow, date): a backfill that reprocesses.
    pub reprocess: bool,
    /// The first line of the request's history, such as "fired by schedule S for T".
    pub detail: String,
}

impl StartRequest {
    /// The start of (workflow, logical date): its idempotency key is derived from them, so
    /// a duplicate fire is an idempotent replay, never a second instance.
    pub fn fired(tenant: &str, workflow: &str, body: StartBody, origin: Origin) -> Self {
        let backfill = origin.backfill_id.as_deref().filter(|_| origin.reprocess);
        let key = fired_key(workflow, backfill, origin.logical_date);
        Self {
            tenant: tenant.to_owned(),
            workflow: workflow.to_owned(),
            body,
            idempotency_key: Some(key),
            wait: None,
            origin: Some(origin),
            options: BTreeMap::new(),
            trace: None,
            dry_run: false,
        }
    }

    /// The request id that a backfill's date starts under.
    pub fn fired_request_id(backfill: &BackfillRecord, date: DateTime<Utc>) -> String {
        let reprocessed = Some(backfill.id.as_str()).filter(|_| backfill.reprocess);
        let key = fired_key(&backfill.workflow, reprocessed, date);
        ids::request_id(&backfill.tenant, Some(&key))
    }
}

/// The idempotency key of (workflow, logical date), or of (backfill, date) for a backfill
/// that reprocesses dates.
fn fired_key(workflow: &str, reprocessing: Option<&str>, date: DateTime<Utc>) -> String {
    let date = date.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    match reprocessing {
        Some(backfill) => format!("backfill:{backfill}:{date}"),
        None => format!("fire:{workflow}:{date}"),
    }
}

/// What a start request led to.
#[derive(Debug, Clone)]
pub struct StartOutcome {
    /// The request record, as last read or written.
    pub record: RequestRecord,
    /// The key was seen before with the same payload: this is the original request.
    pub replayed: bool,
    /// The request is dead-lettered, yet its instance exists: its hand-off to the target
    /// is what failed.
    pub dead_hand_off: bool,
}

impl StartOutcome {
    /// Whether the instance exists.
    pub fn created(&self) -> bool {
        self.record.status.has_instance() || self.dead_hand_off
    }
}

/// The first event of a new request's history.
fn accepted_event(keyed: bool) -> &'static str {
    if keyed {
        crate::model::details::ACCEPTED_KEYED
    } else {
        crate::model::details::ACCEPTED
    }
}

impl Flowgate {
    /// Accepts a start request: once this returns `Ok`, the request record is durable, so the
    /// instance will be created or dead-lettered with a reason.
    // ERROR level: the span and its ids stay enabled whatever the log filter.
    #[instrument(
        name = "start_instance",
        level = "error",
        skip(self, req),
        fields(tenant = %req.tenant, workflow = %req.workflow, request_id, instance_id, trace_id)
    )]
    pub async fn start_instance(&self, mut req: StartRequest) -> Result<StartOutcome, Error> {
        let began = std::time::Instant::now();
        if req.trace.is_none() {
            // A fire or a backfill date: its own trace, from this span.
            let root = TraceContext::root();
            crate::trace::join(&Span::current(), &root);
            req.trace = Some(crate::trace::hand_on(&Span::current(), root));
        }
        let trace_id = req.trace.as_ref().map_or("-", TraceContext::trace_id);
        Span::current().record("trace_id", trace_id);
        // Admitted on a task of its own: a client that goes away after the durable write
        // drops this future, not the admission, which is still counted as what it was.
        let app = self.clone();
        let admission = tokio::spawn(
            async move {
                let admitted = app.admit(&req).await;
                app.measure_start(&req, &admitted, began.elapsed());
                (req.wait, admitted)
            }
            .instrument(Span::current()),
        );
        let (wait, admitted) = admission.await.map_err(|e| {
            Error::from(crate::BackendError::permanent("start.admit", e.to_string()))
        })?;
        self.finish(admitted?, wait).await
    }

    /// Validates, records and enqueues a start request (or finds the original of a known
    /// key): everything up to the answer but `Prefer: wait`.
    async fn admit(&self, req: &StartRequest) -> Result<StartOutcome, Error> {
        identifier("workflow", &req.workflow)?;
        let mut spec = req.body.clone().into_spec(&req.workflow)?;
        if let Some(origin) = &req.origin {
            spec.logical_date = Some(origin.logical_date);
            spec.schedule_id = origin.schedule_id.clone();
            spec.backfill_id = origin.backfill_id.clone();
        }
        spec.options = req.options.clone();
        spec.dry_run = req.dry_run;
        let request_id = ids::request_id(&req.tenant, req.idempotency_key.as_deref());
        Span::current().record("request_id", request_id.as_str());
        let target = match self.check_startable(&req.tenant, &spec).await {
            Ok(workflow) => workflow.target_kind(),
            Err(refused) => return self.replay_if_known(req, &request_id, &spec, refused).await,
        };
        let fresh_record = new_record(req, request_id, spec, target);
        Span::current().record("instance_id", fresh_record.record.instance_id.as_str());
        self.accept(fresh_record).await
    }

    /// Counts the answer by workflow and outcome, and times it. A workflow that was not
    /// found (or not looked up: invalid input, a failed backend) is not a label: its name
    /// is the caller's, unbounded.
    fn measure_start(
        &self,
        req: &StartRequest,
        admitted: &Result<StartOutcome, Error>,
        took: Duration,
    ) {
        let (outcome, known) = match admitted {
            Ok(o) if o.replayed => ("replayed", true),
            Ok(_) => ("accepted", true),
            Err(Error::Backend(_)) => ("unavailable", false),
            Err(Error::WorkflowNotFound(_) | Error::Invalid { .. }) => ("refused", false),
            Err(_) => ("refused", true),
        };
        let workflow = Some(req.workflow.as_str()).filter(|_| known);
        let labels = Labels {
            tenant: Some(&req.tenant),
            workflow,
            outcome,
        };
        self.measure(Metric::Accepted, &labels, 1.0);
        if req.origin.is_some() {
            let fired = match outcome {
                "accepted" => "started",
                "replayed" => "duplicate",
                _ => "failed",
            };
            self.measure(
                Metric::Fired,
                &Labels {
                    outcome: fired,
                    ..labels
                },
                1.0,
            );
        }
        if admitted.is_ok() {
            self.measure(Metric::AcceptLatency, &labels, took.as_secs_f64());
        }
    }

    /// The workflow, if it can start an instance of `spec`.
    async fn check_startable(&self, tenant: &str, spec: &StartSpec) -> Result<Workflow, Error> {
        let workflow = self
            .store
            .get_workflow(tenant, &spec.workflow)
            .await?
            .ok_or_else(|| Error::WorkflowNotFound(spec.workflow.clone()))?;
        if !workflow.online {
            return Err(Error::WorkflowOffline(spec.workflow.clone()));
        }
        self.schemas
            .check(&workflow, &spec.params, self.validation_budget)
            .await?;
        Ok(workflow)
    }

    /// A retry of an accepted key gets the original answer even if the workflow changed
    /// since (went offline, tightened its schema); anything else keeps its refusal.
    async fn replay_if_known(
        &self,
        req: &StartRequest,
        request_id: &str,
        spec: &StartSpec,
        refused: Error,
    ) -> Result<StartOutcome, Error> {
        let replayable = matches!(
            refused,
            Error::WorkflowNotFound(_) | Error::WorkflowOffline(_) | Error::ParamsInvalid { .. }
        );
        if req.idempotency_key.is_none() || !replayable {
            return Err(refused);
        }
        match self.store.get_request(&req.tenant, request_id).await? {
            Some(existing) => self.replay(existing, spec).await,
            None => Err(refused),
        }
    }

    /// Writes the record (with its message, where the store has an outbox) and makes sure
    /// the message is sent or the reconciler will send it.
    async fn accept(&self, write: RecordToWrite) -> Result<StartOutcome, Error> {
        let RecordToWrite { record, outbox } = write;
        match self.store.create_request(&record, Some(&outbox)).await {
            Ok(Enqueued::Yes) => {
                info!(stage = "accepted", "request recorded");
                info!(stage = "enqueued", "request enqueued with its record");
                let mut record = record;
                record.pending_since = Some(outbox.event.at);
                crate::record::append(&mut record.history, outbox.event);
                Ok(fresh(record))
            }
            Ok(Enqueued::No) => {
                info!(stage = "accepted", "request recorded");
                Ok(fresh(self.enqueue(record).await))
            }
            Err(StoreError::AlreadyExists { existing }) => {
                self.replay(*existing, &record.spec).await
            }
            Err(StoreError::Backend(e)) => self.after_failed_write(record, e).await,
        }
    }

    /// A failed write may still have happened (a timeout after the commit): reading the
    /// record back tells. Written: carry on as accepted. Not written, or unknown: the
    /// client must retry, and nothing durable claims otherwise.
    async fn after_failed_write(
        &self,
        record: RequestRecord,
        failure: crate::BackendError,
    ) -> Result<StartOutcome, Error> {
        error!(stage = "accept_failed", error = %failure.chain(), "could not record request");
        match self
            .store
            .get_request(&record.tenant, &record.request_id)
            .await
        {
            Ok(Some(written)) if written.instance_id == record.instance_id => {
                warn!(
                    stage = "accepted",
                    "the write reported a failure but took effect"
                );
                let outcome = self.replay(written, &record.spec).await?;
                Ok(StartOutcome {
                    replayed: false,
                    ..outcome
                })
            }
            Ok(Some(other)) => self.replay(other, &record.spec).await,
            _ => Err(failure.into()),
        }
    }

    /// The key was used before: same payload gets the original request, and finishes its
    /// enqueue if an earlier attempt never sent it; a different payload is refused.
    async fn replay(
        &self,
        existing: RequestRecord,
        spec: &StartSpec,
    ) -> Result<StartOutcome, Error> {
        Span::current().record("instance_id", existing.instance_id.as_str());
        if existing.fingerprint != ids::fingerprint(spec) {
            warn!(
                stage = "key_reused",
                "idempotency key reused with a different payload"
            );
            return Err(Error::KeyReused {
                request_id: existing.request_id,
            });
        }
        info!(
            stage = "replayed",
            status = existing.status.as_str(),
            "idempotent replay"
        );
        let mut record = existing;
        if record.status == RequestStatus::Accepted && record.pending_since.is_none() {
            record = self.enqueue(record).await;
        }
        Ok(StartOutcome {
            record,
            replayed: true,
            dead_hand_off: false,
        })
    }

    /// Sends the request's message and records that it did. The record is durable already,
    /// so a failed send is recorded (`enqueue_failed`, with the redelivery bound) and the
    /// request stays accepted: the reconciler sends it, as does a retry with the same key.
    async fn enqueue(&self, mut record: RequestRecord) -> RequestRecord {
        let envelope = QueueMessage::envelope_for(&record);
        // Stamped before the send: the consumer may create the instance before the send
        // call returns, and the history must still read enqueued-then-created.
        let sent = HistoryEvent::now(EventKind::Enqueued, crate::model::details::ENQUEUED);
        let update = match self.queue.send(&envelope).await {
            Ok(()) => {
                info!(stage = "enqueued", "request enqueued");
                RequestUpdate {
                    touch_pending: true,
                    ..RequestUpdate::event(sent)
                }
            }
            Err(e) => {
                error!(stage = "enqueue_failed", error = %e.chain(),
                    "could not enqueue; the reconciler will send the request");
                RequestUpdate::event(HistoryEvent::now(
                    EventKind::EnqueueFailed,
                    format!(
                        "{}; the request is recorded, and the reconciler sends it within {}",
                        e.chain(),
                        humantime::format_duration(self.redelivery_bound)
                    ),
                ))
            }
        };
        // Even if this note is lost, the outcome holds: a sent message is delivered, and an
        // unsent request is found by the reconciler (its pending_since is unset).
        match self
            .store
            .update_request(&record.tenant, &record.request_id, &update)
            .await
        {
            Ok(_) => {
                let _ = record.apply(&update);
            }
            Err(e) => warn!(error = %e.chain(), "could not record the enqueue in history"),
        }
        record
    }

    /// Applies `Prefer: wait` to an outcome, then tells a dead-lettered request whose
    /// instance exists (its hand-off failed) from one that has none.
    async fn finish(
        &self,
        outcome: StartOutcome,
        wait: Option<Duration>,
    ) -> Result<StartOutcome, Error> {
        let record = match wait {
            Some(wait) => self.wait_for_outcome(outcome.record, wait).await?,
            None => outcome.record,
        };
        let dead_hand_off = matches!(record.status, RequestStatus::Dead | RequestStatus::Archived)
            && self
                .store
                .get_instance(&record.tenant, &record.instance_id)
                .await?
                .is_some();
        Ok(StartOutcome {
            record,
            dead_hand_off,
            ..outcome
        })
    }

    /// Polls the record until it leaves `ACCEPTED` or `wait` runs out.
    async fn wait_for_outcome(
        &self,
        record: RequestRecord,
        wait: Duration,
    ) -> Result<RequestRecord, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        let mut latest = record;
        while latest.status == RequestStatus::Accepted {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if let Some(fresh) = self
                .store
                .get_request(&latest.tenant, &latest.request_id)
                .await?
            {
                latest = fresh;
            }
        }
        Ok(latest)
    }
}

/// A new record with its queue message, ready for the conditional create.
struct RecordToWrite {
    record: RequestRecord,
    outbox: Outbox,
}

/// The record of a new request; a workflow with a target (of kind `target`) is owed a
/// hand-off of the instance.
fn new_record(
    req: &StartRequest,
    request_id: String,
    spec: StartSpec,
    target: Option<String>,
) -> RecordToWrite {
    let now = Utc::now();
    let trace = req.trace.clone().unwrap_or_else(TraceContext::root);
    let mut detail = match &req.origin {
        Some(origin) => origin.detail.clone(),
        None => accepted_event(req.idempotency_key.is_some()).into(),
    };
    // A dry run owes no hand-off, and its history says why from the first line.
    let target = match target {
        Some(kind) if spec.dry_run => {
            detail.push_str(&format!(
                "; a dry run: its instance is created and never handed to its {kind} target"
            ));
            None
        }
        other => other,
    };
    let record = RequestRecord {
        tenant: req.tenant.clone(),
        request_id,
        instance_id: ids::instance_id(),
        idempotency_key: req.idempotency_key.clone(),
        fingerprint: ids::fingerprint(&spec),
        spec,
        status: RequestStatus::Accepted,
        attempts: 0,
        last_error: None,
        accepted_at: now,
        updated_at: now,
        pending_since: None,
        history: vec![HistoryEvent {
            at: now,
            kind: EventKind::Accepted,
            detail,
            trace_id: Some(trace.trace_id().to_owned()),
        }],
        dispatch: target.map(Dispatch::owed),
    };
    let outbox = Outbox {
        // The API's own context, so that the consumer's span is its child.
        envelope: QueueMessage::for_record(&record).envelope(Some(trace.to_string())),
        event: HistoryEvent::now(EventKind::Enqueued, crate::model::details::ENQUEUED),
    };
    RecordToWrite { record, outbox }
}

fn fresh(record: RequestRecord) -> StartOutcome {
    StartOutcome {
        record,
        replayed: false,
        dead_hand_off: false,
    }
}
