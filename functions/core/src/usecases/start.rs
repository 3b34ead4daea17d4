//! Starting an instance: validate, record durably, enqueue, optionally wait.

use std::time::Duration;

use chrono::Utc;
use tracing::{Span, error, info, instrument, warn};

use super::Flowgate;
use crate::api_error::ApiError;
use crate::error::StoreError;
use crate::ids;
use crate::message::QueueMessage;
use crate::model::{EventKind, HistoryEvent, RequestRecord, RequestStatus, StartSpec};
use crate::ports::{Enqueued, Outbox, RequestUpdate};
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
}

/// What a start request led to.
#[derive(Debug, Clone)]
pub struct StartOutcome {
    /// The request record, as last read or written.
    pub record: RequestRecord,
    /// The key was seen before with the same payload: this is the original request.
    pub replayed: bool,
}

impl StartOutcome {
    /// Whether the instance exists.
    pub fn created(&self) -> bool {
        self.record.status == RequestStatus::Created
    }
}

impl Flowgate {
    /// Accepts a start request: once this returns `Ok`, the request record and its queue
    /// message are durable, so the instance will be created or dead-lettered with a reason.
    // ERROR level: the span and its ids stay enabled whatever the log filter.
    #[instrument(
        name = "start_instance",
        level = "error",
        skip(self, req),
        fields(tenant = %req.tenant, workflow = %req.workflow, request_id, instance_id)
    )]
    pub async fn start_instance(&self, req: StartRequest) -> Result<StartOutcome, ApiError> {
        identifier("workflow", &req.workflow)?;
        let spec = req.body.clone().into_spec(&req.workflow)?;
        let request_id = ids::request_id(&req.tenant, req.idempotency_key.as_deref());
        Span::current().record("request_id", request_id.as_str());

        if let Err(e) = self.check_startable(&req.tenant, &spec).await {
            // A retry of an accepted key must get the original answer even if the workflow
            // changed since (went offline, tightened its schema).
            if req.idempotency_key.is_some()
                && matches!(
                    e,
                    ApiError::WorkflowNotFound(_)
                        | ApiError::WorkflowOffline(_)
                        | ApiError::ParamsInvalid { .. }
                )
                && let Some(existing) = self.store.get_request(&req.tenant, &request_id).await?
            {
                return self.replay(existing, &spec, req.wait).await;
            }
            return Err(e);
        }

        let now = Utc::now();
        let record = RequestRecord {
            tenant: req.tenant.clone(),
            request_id: request_id.clone(),
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
                detail: match &req.idempotency_key {
                    Some(_) => "accepted with an idempotency key".into(),
                    None => "accepted".into(),
                },
            }],
        };
        let outbox = Outbox {
            envelope: QueueMessage::for_record(&record).envelope(),
            event: HistoryEvent::now(EventKind::Enqueued, "sent to the queue"),
        };
        let enqueued = match self.store.create_request(&record, Some(&outbox)).await {
            Ok(enqueued) => enqueued,
            Err(StoreError::AlreadyExists { existing }) => {
                return self.replay(*existing, &record.spec, req.wait).await;
            }
            Err(StoreError::Backend(e)) => {
                error!(stage = "accept_failed", error = %e.chain(), "could not record request");
                return Err(e.into());
            }
        };
        Span::current().record("instance_id", record.instance_id.as_str());
        info!(stage = "accepted", "request recorded");
        let mut record = match enqueued {
            Enqueued::Yes => {
                info!(stage = "enqueued", "request enqueued with its record");
                let mut record = record;
                record.pending_since = Some(outbox.event.at);
                record.history.push(outbox.event);
                record
            }
            Enqueued::No => self.enqueue(record).await?,
        };
        if let Some(wait) = req.wait {
            record = self.wait_for_outcome(record, wait).await?;
        }
        Ok(StartOutcome {
            record,
            replayed: false,
        })
    }

    async fn check_startable(&self, tenant: &str, spec: &StartSpec) -> Result<(), ApiError> {
        let workflow = self
            .store
            .get_workflow(tenant, &spec.workflow)
            .await?
            .ok_or_else(|| ApiError::WorkflowNotFound(spec.workflow.clone()))?;
        if !workflow.online {
            return Err(ApiError::WorkflowOffline(spec.workflow.clone()));
        }
        self.schemas.check(&workflow, &spec.params)
    }

    /// The key was used before: same payload gets the original request, and finishes its
    /// enqueue if an earlier attempt failed there; a different payload is refused.
    async fn replay(
        &self,
        existing: RequestRecord,
        spec: &StartSpec,
        wait: Option<Duration>,
    ) -> Result<StartOutcome, ApiError> {
        Span::current().record("instance_id", existing.instance_id.as_str());
        if existing.fingerprint != ids::fingerprint(spec) {
            warn!(
                stage = "key_reused",
                "idempotency key reused with a different payload"
            );
            return Err(ApiError::KeyReused {
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
            record = self.enqueue(record).await?;
        }
        if let Some(wait) = wait {
            record = self.wait_for_outcome(record, wait).await?;
        }
        Ok(StartOutcome {
            record,
            replayed: true,
        })
    }

    /// Sends the request's message and records that it did. A failed send is a 503: the
    /// record stays `ACCEPTED` and unsent, so a retry with the same key (or the reconciler)
    /// sends it again.
    async fn enqueue(&self, mut record: RequestRecord) -> Result<RequestRecord, ApiError> {
        let envelope = QueueMessage::for_record(&record).envelope();
        // Stamped before the send: the consumer may create the instance before the send
        // call returns, and the history must still read enqueued-then-created.
        let event = HistoryEvent::now(EventKind::Enqueued, "sent to the queue");
        if let Err(e) = self.queue.send(&envelope).await {
            error!(stage = "enqueue_failed", error = %e.chain(), "could not enqueue request");
            let event = HistoryEvent::now(EventKind::EnqueueFailed, e.chain());
            if let Err(e2) = self
                .store
                .update_request(
                    &record.tenant,
                    &record.request_id,
                    &RequestUpdate::event(event),
                )
                .await
            {
                warn!(error = %e2.chain(), "could not record the enqueue failure");
            }
            return Err(e.into());
        }
        record.pending_since = Some(event.at);
        let update = RequestUpdate {
            touch_pending: true,
            ..RequestUpdate::event(event.clone())
        };
        // The message is durable, so the request is accepted even if this note is lost: at
        // worst a retry or the reconciler sends it again, and the consumer absorbs duplicates.
        match self
            .store
            .update_request(&record.tenant, &record.request_id, &update)
            .await
        {
            Ok(_) => record.history.push(event),
            Err(e) => warn!(error = %e.chain(), "could not record the enqueue in history"),
        }
        info!(stage = "enqueued", "request enqueued");
        Ok(record)
    }

    /// Polls the record until it leaves `ACCEPTED` or `wait` runs out.
    async fn wait_for_outcome(
        &self,
        record: RequestRecord,
        wait: Duration,
    ) -> Result<RequestRecord, ApiError> {
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
