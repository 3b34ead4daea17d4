//! Starting an instance: validate, record durably, enqueue, optionally wait.
//!
//! The answer always matches what will happen: once the record is durable the request is
//! accepted (2xx), even if its enqueue fails, because the reconciler will send it. Only a
//! request of which nothing durable was written fails (retryably).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::{Instrument, Span, debug, error, info, instrument, warn};

use super::Flowgate;
use crate::error::{Error, StoreError};
use crate::ids;
use crate::message::QueueMessage;
use crate::metrics::{Labels, Metric};
use crate::model::{
    Dispatch, EventKind, HistoryEvent, RequestRecord, RequestStatus, StartSpec, Workflow,
};
use crate::ports::{BackfillRecord, Enqueued, NewRequest, Outbox, RequestUpdate};
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
        if req.trace.is_none() {
            // A fire or a backfill date: its own trace, from this span.
            let root = TraceContext::root();
            crate::trace::join(&Span::current(), &root);
            req.trace = Some(crate::trace::hand_on(&Span::current(), root));
        }
        let trace_id = req.trace.as_ref().map_or("-", TraceContext::trace_id);
        Span::current().record("trace_id", trace_id);
        let wait = req.wait;
        let admitted = self
            .admitted(vec![(req, Span::current())])
            .await
            .pop()
            .expect("one answer per start");
        self.finish(admitted?, wait).await
    }

    /// Starts each of `starts` as [`Flowgate::start_instance`] would (without waiting for the
    /// instances), and answers each in order: the accepted ones are recorded together (in
    /// one transaction where the store can), and one refused start never refuses another.
    #[instrument(name = "start_batch", level = "error", skip_all, fields(starts = starts.len()))]
    pub async fn start_batch(&self, starts: Vec<StartRequest>) -> Vec<Result<StartOutcome, Error>> {
        let items: Vec<(StartRequest, Span)> = starts
            .into_iter()
            .map(|req| {
                let span = tracing::error_span!(
                    "start_instance",
                    tenant = %req.tenant,
                    workflow = %req.workflow,
                    request_id = tracing::field::Empty,
                    instance_id = tracing::field::Empty,
                    trace_id = req.trace.as_ref().map_or("-", TraceContext::trace_id),
                );
                (req, span)
            })
            .collect();
        let admitted = self.admitted(items).await;
        let mut answers = Vec::with_capacity(admitted.len());
        for admitted in admitted {
            answers.push(match admitted {
                Ok(outcome) => self.finish(outcome, None).await,
                Err(e) => Err(e),
            });
        }
        answers
    }

    /// Admits `starts` on a task of their own: a client that goes away after the durable
    /// write drops this future, not the admission, which is still counted as what it was.
    async fn admitted(
        &self,
        starts: Vec<(StartRequest, Span)>,
    ) -> Vec<Result<StartOutcome, Error>> {
        let n = starts.len();
        let app = self.clone();
        match tokio::spawn(async move { app.admit(starts).await }.instrument(Span::current())).await
        {
            Ok(answers) => answers,
            Err(failed) => (0..n)
                .map(|_| {
                    Err(crate::BackendError::permanent("start.admit", failed.to_string()).into())
                })
                .collect(),
        }
    }

    /// Validates, records and enqueues start requests (or finds the original of a known
    /// key), each in its own span: everything up to the answers but `Prefer: wait`.
    async fn admit(&self, starts: Vec<(StartRequest, Span)>) -> Vec<Result<StartOutcome, Error>> {
        let began = std::time::Instant::now();
        let mut answers: Vec<Option<Result<StartOutcome, Error>>> =
            Vec::with_capacity(starts.len());
        let mut writes = Vec::new();
        for (req, span) in &starts {
            match self.prepare(req).instrument(span.clone()).await {
                Ok(Prepared::Write(write)) => {
                    writes.push((answers.len(), write));
                    answers.push(None);
                }
                Ok(Prepared::Answered(outcome)) => answers.push(Some(Ok(outcome))),
                Err(refused) => answers.push(Some(Err(refused))),
            }
        }
        for (at, answer) in self.accept(writes, &starts).await {
            answers[at] = Some(answer);
        }
        let took = began.elapsed();
        starts
            .iter()
            .zip(answers)
            .map(|((req, _), answer)| {
                let answer = answer.expect("every start is answered");
                self.measure_start(req, &answer, took);
                answer
            })
            .collect()
    }

    /// Checks a start and builds its record, or answers it: refused, or the original of a
    /// known key when the workflow can no longer start it.
    async fn prepare(&self, req: &StartRequest) -> Result<Prepared, Error> {
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
        match self.check_startable(&req.tenant, &spec).await {
            Ok(workflow) => {
                spec.policy = crate::runs::for_start(&workflow.runs, &spec.params)?;
                let write = new_record(req, request_id, spec, workflow.target_kind());
                Span::current().record("instance_id", write.record.instance_id.as_str());
                Ok(Prepared::Write(write))
            }
            Err(refused) => self
                .replay_if_known(req, &request_id, &spec, refused)
                .await
                .map(Prepared::Answered),
        }
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
        // The count and the answer time of one start, kept together (one line where the sink writes lines).
        let latency = [(Metric::AcceptLatency, took.as_secs_f64())];
        let timed = if admitted.is_ok() { &latency[..] } else { &[] };
        let values: Vec<(Metric, f64)> = [(Metric::Accepted, 1.0)]
            .into_iter()
            .chain(timed.iter().copied())
            .collect();
        crate::metrics::record_all(self.metrics.as_deref(), &labels, &values);
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

    /// Writes the records (each with its message, where the store has an outbox) and makes
    /// sure each message is sent or the reconciler will send it; answers each by its place.
    async fn accept(
        &self,
        writes: Vec<(usize, NewRequest)>,
        starts: &[(StartRequest, Span)],
    ) -> Vec<(usize, Result<StartOutcome, Error>)> {
        if writes.is_empty() {
            return Vec::new();
        }
        let (places, writes): (Vec<usize>, Vec<NewRequest>) = writes.into_iter().unzip();
        let created = self.store.create_requests(&writes).await;
        let mut answers = Vec::with_capacity(writes.len());
        let mut unsent = Vec::new();
        for ((at, write), created) in places.into_iter().zip(writes).zip(created) {
            let span = &starts[at].1;
            let NewRequest { mut record, outbox } = write;
            let answer = match created {
                Ok(Enqueued::Yes) => {
                    span.in_scope(|| {
                        debug!(stage = "accepted", "request recorded");
                        debug!(stage = "enqueued", "request enqueued with its record");
                    });
                    record.pending_since = Some(outbox.event.at);
                    crate::record::append(&mut record.history, outbox.event);
                    Ok(fresh(record))
                }
                Ok(Enqueued::No) => {
                    span.in_scope(|| debug!(stage = "accepted", "request recorded"));
                    unsent.push((at, record));
                    continue;
                }
                Err(StoreError::AlreadyExists { existing }) => {
                    self.replay(*existing, &record.spec)
                        .instrument(span.clone())
                        .await
                }
                Err(StoreError::Backend(e)) => {
                    self.after_failed_write(record, e)
                        .instrument(span.clone())
                        .await
                }
            };
            answers.push((at, answer));
        }
        let (places, records): (Vec<usize>, Vec<RequestRecord>) = unsent.into_iter().unzip();
        let spans: Vec<&Span> = places.iter().map(|&at| &starts[at].1).collect();
        let sent = self.enqueue_all(records, &spans).await;
        answers.extend(
            places
                .into_iter()
                .zip(sent)
                .map(|(at, r)| (at, r.map(fresh))),
        );
        answers
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
        if !ids::same_payload(&existing.fingerprint, &ids::fingerprint(spec)) {
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
        // Not known to be sent (its send failed, or the store keeps no note of a send that
        // succeeded): send it again; the consumer absorbs a duplicate.
        if record.status == RequestStatus::Accepted && !record.was_sent() {
            record = self.enqueue(record).await?;
        }
        Ok(StartOutcome {
            record,
            replayed: true,
            dead_hand_off: false,
        })
    }

    /// Sends the request's message: [`Flowgate::enqueue_all`] of one.
    async fn enqueue(&self, record: RequestRecord) -> Result<RequestRecord, Error> {
        let span = Span::current();
        self.enqueue_all(vec![record], &[&span])
            .await
            .pop()
            .expect("one record in, one out")
    }

    /// Sends the requests' messages (together, where the queue can). A sent message is
    /// delivered, and its creation notes when it was sent (`enqueued`), so a send that
    /// succeeds writes nothing more. The records are durable already, so a failed send is
    /// noted (`enqueue_failed`, with the redelivery bound, and the request marked as pending
    /// from then) and the request stays accepted: the reconciler sends it, as does a retry
    /// with the same key. If that note cannot be written either, nothing would ever send the
    /// request, so it is not acknowledged: 503, and a retry with its key sends it.
    async fn enqueue_all(
        &self,
        records: Vec<RequestRecord>,
        spans: &[&Span],
    ) -> Vec<Result<RequestRecord, Error>> {
        if records.is_empty() {
            return Vec::new();
        }
        let envelopes: Vec<_> = records.iter().map(QueueMessage::envelope_sent).collect();
        let sent = self.queue.send_batch(&envelopes).await;
        let failed: Vec<(usize, RequestUpdate)> = sent
            .into_iter()
            .zip(spans)
            .enumerate()
            .filter_map(|(i, (result, span))| {
                span.in_scope(|| self.unsent_update(result)).map(|u| (i, u))
            })
            .collect();
        let noted: Vec<_> = futures_util::stream::iter(0..failed.len())
            .map(|k| {
                let (i, update) = &failed[k];
                let r = &records[*i];
                self.store
                    .update_request(&r.tenant, &r.request_id, update)
                    .instrument(spans[*i].clone())
            })
            .buffered(crate::ports::BATCH_PARALLELISM)
            .collect()
            .await;
        let mut answers: Vec<Result<RequestRecord, Error>> = records.into_iter().map(Ok).collect();
        for ((i, update), noted) in failed.into_iter().zip(noted) {
            match noted {
                Ok(_) => {
                    if let Ok(record) = &mut answers[i] {
                        let _ = record.apply(&update);
                    }
                }
                Err(e) => {
                    spans[i].in_scope(|| {
                        error!(error = %e.chain(),
                            "neither sent nor noted for the reconciler: not acknowledged")
                    });
                    answers[i] = Err(e.into());
                }
            }
        }
        answers
    }

    /// The note of a failed send, or `None` when it was sent.
    fn unsent_update(&self, result: Result<(), crate::BackendError>) -> Option<RequestUpdate> {
        match result {
            Ok(()) => {
                debug!(stage = "enqueued", "request enqueued");
                None
            }
            Err(e) => {
                error!(stage = "enqueue_failed", error = %e.chain(),
                    "could not enqueue; the reconciler will send the request");
                Some(RequestUpdate {
                    touch_pending: true,
                    ..RequestUpdate::event(HistoryEvent::now(
                        EventKind::EnqueueFailed,
                        format!(
                            "{}; the request is recorded, and the reconciler sends it within {}",
                            e.chain(),
                            humantime::format_duration(self.redelivery_bound)
                        ),
                    ))
                })
            }
        }
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

/// A start checked: its record to write, or its answer already.
enum Prepared {
    Write(NewRequest),
    Answered(StartOutcome),
}

/// The record of a new request; a workflow with a target (of kind `target`) is owed a
/// hand-off of the instance.
fn new_record(
    req: &StartRequest,
    request_id: String,
    spec: StartSpec,
    target: Option<String>,
) -> NewRequest {
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
        run: None,
    };
    let outbox = Outbox {
        // The API's own context, so that the consumer's span is its child.
        envelope: QueueMessage::for_record(&record).envelope(Some(trace.to_string())),
        event: HistoryEvent::now(EventKind::Enqueued, crate::model::details::ENQUEUED),
    };
    NewRequest { record, outbox }
}

fn fresh(record: RequestRecord) -> StartOutcome {
    StartOutcome {
        record,
        replayed: false,
        dead_hand_off: false,
    }
}
