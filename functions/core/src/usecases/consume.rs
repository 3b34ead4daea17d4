//! The consumer: turns each delivery into exactly one instance, a retry, or a dead letter.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, error, error_span, info, warn};

use crate::dead_reason;
use crate::error::BackendError;
use crate::message::{Fire, FireMessage, QueueMessage};
use crate::metrics::{Labels, Metric, Metrics};
use crate::model::{EventKind, HistoryEvent, RequestStatus};
use crate::ports::{Delivery, Dispatcher, Queue, RequestUpdate, Store, UpdateOutcome};
use crate::trace::TraceContext;
use crate::usecases::{Flowgate, Scheduler};

/// How the consumer treats deliveries.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Deliveries allowed before a message is dead-lettered.
    pub max_receive_count: u32,
    /// The queue's visibility timeout: the longest a failed delivery waits before retrying.
    pub visibility_timeout: Duration,
    /// First retry delay; doubles on each further failure, capped by the visibility timeout.
    pub retry_base: Duration,
    /// Messages asked for per receive.
    pub batch_size: usize,
    /// Deliveries handled at once.
    pub max_in_flight: usize,
    /// Longest wait of one receive call (also bounds how long shutdown waits for it).
    pub receive_wait: Duration,
    /// What each hand-off carries for its target to report on the instance.
    pub callbacks: Option<crate::callback::Callbacks>,
}

impl ConsumerConfig {
    /// The consumer a host's settings describe.
    pub fn from_settings(settings: &flowgate_settings::Settings) -> Self {
        Self {
            max_receive_count: settings.max_receive_count,
            visibility_timeout: settings.visibility_timeout,
            retry_base: settings.retry_base,
            // A receive's deliveries are created in one write: larger batches, fewer commits.
            // (The cloud queue hands at most 10 a receive.)
            batch_size: 256,
            max_in_flight: 1024,
            receive_wait: Duration::from_secs(1),
            callbacks: crate::callback::Callbacks::from_settings(settings),
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self::from_settings(&flowgate_settings::Settings::defaults())
    }
}

/// What to do with a delivery once the store side is settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Handled (created now or before): delete the message.
    Ack,
    /// Failed but may succeed later: make it visible again after `delay`.
    Retry {
        /// Why it failed.
        reason: String,
        /// When to try again.
        delay: Duration,
    },
    /// Cannot succeed, or failed too often: move it to the dead-letter queue.
    DeadLetter {
        /// Why.
        reason: String,
    },
}

/// A delivered request's instance to create, with the update that marks its request.
struct Creation {
    /// The delivery's place in its batch.
    at: usize,
    message: QueueMessage,
    instance: crate::model::Instance,
    update: RequestUpdate,
    span: tracing::Span,
}

impl Creation {
    /// The creation `message` asks for on this delivery. A hand-off owed keeps the request
    /// pending (from now) until it is done.
    fn of(message: QueueMessage, delivery: &Delivery, at: usize) -> Self {
        let span = super::request_span(
            "consume",
            &message.tenant,
            &message.spec.workflow,
            &message.request_id,
            &message.instance_id,
            delivery
                .traceparent
                .as_deref()
                .and_then(TraceContext::parse),
        );
        let update = RequestUpdate {
            set_status: Some(RequestStatus::Created),
            set_attempts: Some(delivery.receive_count),
            touch_pending: true,
            sent_at: message.sent_at,
            ..RequestUpdate::event(HistoryEvent::now(
                EventKind::Created,
                crate::model::details::created_on(delivery.receive_count),
            ))
        };
        let instance = message.instance(update.event.at);
        Self {
            at,
            message,
            instance,
            update,
            span,
        }
    }
}

/// Creates instances from queue deliveries, and starts the schedule fires an engine puts on
/// the same queue.
pub struct Consumer {
    pub(super) store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    pub(super) config: ConsumerConfig,
    fires: Option<Flowgate>,
    pub(super) dispatcher: Option<Arc<dyn Dispatcher>>,
    metrics: Option<Arc<dyn Metrics>>,
    reports: Option<(Flowgate, crate::runs::ReportDecoder)>,
}

impl Consumer {
    /// A consumer over these ports.
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>, config: ConsumerConfig) -> Self {
        Self {
            store,
            queue,
            config,
            fires: None,
            dispatcher: None,
            metrics: None,
            reports: None,
        }
    }

    /// Reports what the consumer measures (creations, lag, hand-offs, dead letters).
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub(super) fn measure(&self, metric: Metric, labels: &Labels<'_>, value: f64) {
        crate::metrics::record(self.metrics.as_deref(), metric, labels, value);
    }

    /// Hands each created instance of a workflow with a target to `dispatcher`. Without
    /// one, an instance owed a hand-off is dead-lettered with kind `dispatch`.
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Also starts the schedule fires that arrive on the queue, through `app`'s start path
    /// (for a backend whose engine fires schedules itself). Without it a fire is poison.
    pub fn with_fires(mut self, app: Flowgate) -> Self {
        self.fires = Some(app);
        self
    }

    /// Also records the reports targets send on their own through the queue (the messages
    /// `decode` reads), through `app`'s report path.
    pub fn with_reports(mut self, app: Flowgate, decode: crate::runs::ReportDecoder) -> Self {
        self.reports = Some((app, decode));
        self
    }

    /// Settles one delivery on the store side (creates the instance, or records the failure
    /// or the death) and says what the queue should do with it. Never panics on bad input.
    /// Every host calls this (or [`Consumer::decide_all`]), so a dead letter is counted here.
    pub async fn decide(&self, delivery: &Delivery) -> Disposition {
        self.decide_all(std::slice::from_ref(delivery))
            .await
            .pop()
            .expect("one delivery in, one disposition out")
    }

    /// Settles many deliveries as [`Consumer::decide`] would each, and answers each in
    /// order: their instances are created together (in one write where the store can), and
    /// what follows (a hand-off, a retry) runs for each at once.
    pub async fn decide_all(&self, deliveries: &[Delivery]) -> Vec<Disposition> {
        let mut dispositions: Vec<Option<Disposition>> = Vec::with_capacity(deliveries.len());
        let mut creating = Vec::new();
        for delivery in deliveries {
            match QueueMessage::parse(&delivery.body) {
                Ok(message) => {
                    creating.push(Creation::of(message, delivery, dispositions.len()));
                    dispositions.push(None);
                }
                // Not a request message: a schedule's fire, where this consumer starts them
                // (a request message, the hot path, is parsed once).
                Err(e) => dispositions.push(Some(self.not_a_request(delivery, e).await)),
            }
        }
        let pairs: Vec<(crate::model::Instance, RequestUpdate)> = creating
            .iter()
            .map(|c| (c.instance.clone(), c.update.clone()))
            .collect();
        let created = if pairs.is_empty() {
            Vec::new()
        } else {
            self.store.create_instances(&pairs).await
        };
        let settled =
            futures_util::future::join_all(creating.iter().zip(created).map(|(c, created)| {
                let delivery = &deliveries[c.at];
                self.after_creation(c, delivery, created)
                    .instrument(c.span.clone())
            }))
            .await;
        for (c, disposition) in creating.iter().zip(settled) {
            dispositions[c.at] = Some(disposition);
        }
        deliveries
            .iter()
            .zip(dispositions)
            .map(|(delivery, disposition)| {
                let disposition = disposition.expect("every delivery is settled");
                if let Disposition::DeadLetter { reason } = &disposition {
                    self.measure_death(delivery, reason);
                }
                disposition
            })
            .collect()
    }

    /// A delivery whose body is not a request message: a schedule's fire where this consumer
    /// starts them, or poison.
    async fn not_a_request(&self, delivery: &Delivery, e: impl std::fmt::Display) -> Disposition {
        if let Some((app, decode)) = &self.reports
            && let Some(report) = decode(&delivery.body)
        {
            return match report {
                Ok(report) => self.target_report(app, delivery, report).await,
                Err(why) => self.poison(delivery, why).await,
            };
        }
        match self.fires.as_ref().zip(FireMessage::parse(&delivery.body)) {
            Some((app, Ok((fire, at)))) => self.fire(app, delivery, &fire.fire, at).await,
            Some((_, Err(e))) => self.poison(delivery, e.to_string()).await,
            None => self.poison(delivery, e.to_string()).await,
        }
    }

    /// What follows an instance's creation (or its failure): counted, then acked, handed to
    /// its target, completed, or retried.
    async fn after_creation(
        &self,
        c: &Creation,
        delivery: &Delivery,
        created: Result<crate::ports::Creation, BackendError>,
    ) -> Disposition {
        let message = &c.message;
        let labels = |outcome| Labels::of(&message.tenant, &message.spec.workflow, outcome);
        let fresh = match created {
            Ok(crate::ports::Creation::Created) => {
                debug!(stage = "created", "instance created");
                // The instance id was minted (UUIDv7) when the request was accepted. The
                // count and the lag of one creation are kept together (one line where the sink writes lines).
                let lag = crate::ids::minted_at(&message.instance_id)
                    .map(|accepted| (c.update.event.at - accepted).to_std().unwrap_or_default());
                let values: Vec<(Metric, f64)> = [(Metric::Created, 1.0)]
                    .into_iter()
                    .chain(lag.map(|lag| (Metric::Lag, lag.as_secs_f64())))
                    .collect();
                crate::metrics::record_all(self.metrics.as_deref(), &labels("created"), &values);
                true
            }
            Ok(crate::ports::Creation::AlreadyExisted) => {
                info!(
                    stage = "duplicate",
                    "instance already existed; redelivery absorbed"
                );
                self.measure(Metric::Created, &labels("duplicate"), 1.0);
                false
            }
            Ok(crate::ports::Creation::Waiting(reason)) => {
                info!(stage = "waiting", reason = %reason, "held back by its concurrency limit");
                self.measure(Metric::Runs, &labels("waiting"), 1.0);
                // A slot may have freed while it was held back: whoever is first in line goes.
                self.release_next(message).await;
                return Disposition::Ack;
            }
            Ok(crate::ports::Creation::Skipped(reason)) => {
                info!(stage = "skipped", reason = %reason, "skipped by its concurrency limit");
                self.measure(Metric::Runs, &labels("skipped"), 1.0);
                if message.spec.logical_date.is_some() {
                    // A schedule fire or a backfill date, handled by being skipped.
                    self.measure(Metric::Fired, &labels("skipped"), 1.0);
                }
                return Disposition::Ack;
            }
            Err(e) => return self.failed(message, delivery, e).await,
        };
        match message.dispatch_to {
            None if fresh => Disposition::Ack,
            None => self.complete_existing(message, delivery).await,
            Some(_) => self.hand_off(message, &c.instance, delivery, fresh).await,
        }
    }

    /// A redelivery found the instance: the request is done, unless its record still says
    /// `ACCEPTED` (a creation whose record write was lost), which this delivery completes.
    async fn complete_existing(&self, message: &QueueMessage, delivery: &Delivery) -> Disposition {
        let update = RequestUpdate {
            only_if: Some(RequestStatus::Accepted),
            set_status: Some(RequestStatus::Created),
            set_attempts: Some(delivery.receive_count),
            ..RequestUpdate::event(HistoryEvent::now(
                EventKind::Created,
                format!(
                    "instance found created on delivery {}; request completed",
                    delivery.receive_count
                ),
            ))
        };
        match self
            .store
            .update_request(&message.tenant, &message.request_id, &update)
            .await
        {
            Ok(UpdateOutcome::Applied) => {
                warn!(
                    stage = "created",
                    "instance existed with its request still ACCEPTED; completed"
                );
                let labels = Labels::of(&message.tenant, &message.spec.workflow, "completed");
                self.measure(Metric::Created, &labels, 1.0);
                Disposition::Ack
            }
            Ok(_) => Disposition::Ack,
            Err(e) => self.failed(message, delivery, e).await,
        }
    }

    async fn failed(
        &self,
        message: &QueueMessage,
        delivery: &Delivery,
        err: BackendError,
    ) -> Disposition {
        let reason = err.chain();
        let last = delivery.receive_count >= self.config.max_receive_count;
        if last || !err.is_retryable() {
            let reason = if last {
                dead_reason::exhausted(delivery.receive_count, &reason)
            } else {
                dead_reason::permanent(&reason)
            };
            return self
                .mark_dead(
                    &message.tenant,
                    &message.request_id,
                    delivery,
                    RequestStatus::Accepted,
                    reason,
                )
                .await;
        }
        warn!(stage = "delivery_failed", error = %reason, "delivery failed; will retry");
        let update = RequestUpdate {
            only_if: Some(RequestStatus::Accepted),
            set_attempts: Some(delivery.receive_count),
            set_last_error: Some(reason.clone()),
            touch_pending: true,
            ..RequestUpdate::event(HistoryEvent::now(
                EventKind::DeliveryFailed,
                format!("delivery {} failed: {reason}", delivery.receive_count),
            ))
        };
        if let Err(e) = self
            .store
            .update_request(&message.tenant, &message.request_id, &update)
            .await
        {
            warn!(error = %e.chain(), "could not record the failed delivery");
        }
        Disposition::Retry {
            reason,
            delay: self.retry_delay(delivery.receive_count),
        }
    }

    /// Records the request as `DEAD` (if it is still in status `guard`) before its message
    /// moves, so the reason is never lost. One that went further meanwhile (created, or
    /// handed off) keeps its status, and this copy of its message is dropped.
    pub(super) async fn mark_dead(
        &self,
        tenant: &str,
        request_id: &str,
        delivery: &Delivery,
        guard: RequestStatus,
        reason: String,
    ) -> Disposition {
        let update = RequestUpdate {
            only_if: Some(guard),
            set_status: Some(RequestStatus::Dead),
            set_attempts: Some(delivery.receive_count),
            set_last_error: Some(reason.clone()),
            ..RequestUpdate::event(HistoryEvent::now(EventKind::DeadLettered, reason.clone()))
        };
        match self.store.update_request(tenant, request_id, &update).await {
            Ok(UpdateOutcome::Skipped(s)) if s.has_instance() && s != guard => {
                info!(
                    stage = "duplicate",
                    status = s.as_str(),
                    "request went further meanwhile; dropping this copy"
                );
                Disposition::Ack
            }
            Ok(_) => {
                error!(stage = "dead_lettered", reason = %reason, "request dead-lettered");
                Disposition::DeadLetter { reason }
            }
            Err(e) => {
                warn!(error = %e.chain(), "could not mark the request dead; will retry");
                Disposition::Retry {
                    reason,
                    delay: self.retry_delay(delivery.receive_count),
                }
            }
        }
    }

    /// Starts a delivered fire. Its failures retry and dead-letter as a request's do; there
    /// is no request record yet, so the letter's reason is where the failure shows.
    async fn fire(
        &self,
        app: &Flowgate,
        delivery: &Delivery,
        fire: &Fire,
        at: DateTime<Utc>,
    ) -> Disposition {
        let err = match Scheduler::fire_delivered(app, fire, at).await {
            Ok(_) => return Disposition::Ack,
            Err(e) => e,
        };
        let reason = crate::error::error_chain(&err);
        let last = delivery.receive_count >= self.config.max_receive_count;
        if err.is_retryable() && !last {
            warn!(stage = "delivery_failed", schedule = %fire.schedule_id, logical_date = %at,
                error = %reason, "schedule fire failed; will retry");
            return Disposition::Retry {
                reason,
                delay: self.retry_delay(delivery.receive_count),
            };
        }
        let reason = if last {
            dead_reason::exhausted(delivery.receive_count, &reason)
        } else {
            dead_reason::permanent(&reason)
        };
        error!(stage = "dead_lettered", tenant = %fire.tenant, workflow = %fire.workflow,
            schedule = %fire.schedule_id, logical_date = %at, reason = %reason,
            "schedule fire dead-lettered");
        Disposition::DeadLetter { reason }
    }

    /// A body that does not parse can never succeed: dead-letter it at once.
    /// Lets the starts waiting for `message`'s slot go, where its store leaves that to the
    /// caller (see [`crate::ports::Store::release_waiting`]).
    pub(super) async fn release_next(&self, message: &QueueMessage) {
        super::runs::release_after(
            self.store.as_ref(),
            self.queue.as_ref(),
            &message.tenant,
            &message.spec,
        )
        .await;
    }

    /// Records a target's own report; one that cannot apply (its run already ended
    /// otherwise, its instance is not found) is logged and dropped, a failed store retried.
    async fn target_report(
        &self,
        app: &Flowgate,
        delivery: &Delivery,
        r: crate::runs::TargetReport,
    ) -> Disposition {
        let span = error_span!("request", role = "report", tenant = %r.tenant, instance_id = %r.instance_id);
        let status = r.report.status;
        match app
            .report_from_target(&r.tenant, &r.instance_id, &r.reference, r.report)
            .instrument(span.clone())
            .await
        {
            Ok(_) => Disposition::Ack,
            Err(crate::Error::Backend(e)) if e.is_retryable() => Disposition::Retry {
                reason: e.chain(),
                delay: self.retry_delay(delivery.receive_count),
            },
            Err(e) => {
                span.in_scope(|| {
                    warn!(status = status.as_str(), error = %e, "a target's report changed nothing");
                });
                Disposition::Ack
            }
        }
    }

    async fn poison(&self, delivery: &Delivery, why: String) -> Disposition {
        let reason = dead_reason::poison(&delivery.message_id, &why);
        match (&delivery.tenant, &delivery.request_id) {
            (Some(tenant), Some(request_id)) => {
                let span = error_span!("request", role = "consume", tenant = %tenant, request_id = %request_id);
                self.mark_dead(
                    tenant,
                    request_id,
                    delivery,
                    RequestStatus::Accepted,
                    reason,
                )
                .instrument(span)
                .await
            }
            _ => {
                error!(stage = "dead_lettered", message_id = %delivery.message_id, reason = %reason,
                    "poison message without request attributes dead-lettered");
                Disposition::DeadLetter { reason }
            }
        }
    }

    /// Exponential backoff with jitter: the `n`th failure waits a random time between half
    /// and all of `retry_base × 2^(n-1)`, capped by the visibility timeout, so that many
    /// messages failing together do not come back together.
    pub(super) fn retry_delay(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(16);
        let ceiling = (self.config.retry_base * 2u32.pow(exp)).min(self.config.visibility_timeout);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Settles a delivery and applies the disposition to the queue. A failed queue call is
    /// only logged: the message becomes visible again and is settled on its next delivery.
    pub async fn handle(&self, delivery: Delivery) -> Disposition {
        self.handle_all(vec![delivery])
            .await
            .pop()
            .expect("one delivery in, one disposition out")
    }

    /// Settles deliveries together ([`Consumer::decide_all`]) and applies each one's
    /// disposition to the queue, as [`Consumer::handle`] does.
    pub async fn handle_all(&self, deliveries: Vec<Delivery>) -> Vec<Disposition> {
        let dispositions = self.decide_all(&deliveries).await;
        futures_util::future::join_all(
            deliveries
                .iter()
                .zip(&dispositions)
                .map(|(delivery, disposition)| self.apply(delivery, disposition)),
        )
        .await;
        dispositions
    }

    /// Does to the message what its disposition says.
    async fn apply(&self, delivery: &Delivery, disposition: &Disposition) {
        let result = match disposition {
            Disposition::Ack => self.queue.ack(delivery).await,
            Disposition::Retry { delay, .. } => self.queue.retry_later(delivery, *delay).await,
            Disposition::DeadLetter { reason } => self.queue.dead_letter(delivery, reason).await,
        };
        if let Err(e) = result {
            warn!(message_id = %delivery.message_id, error = %e.chain(),
                "queue call failed; the message will be redelivered");
        }
    }

    /// Counts a dead letter by its workflow (when its body says) and its reason's kind.
    fn measure_death(&self, delivery: &Delivery, reason: &str) {
        let message = QueueMessage::parse(&delivery.body).ok();
        let kind = dead_reason::FailureKind::of(Some(reason), true);
        let labels = Labels {
            tenant: message.as_ref().map(|m| m.tenant.as_str()),
            workflow: message.as_ref().map(|m| m.spec.workflow.as_str()),
            outcome: kind.as_str(),
        };
        self.measure(Metric::DeadLettered, &labels, 1.0);
    }

    /// Receives and handles messages until `shutdown` turns true, then finishes the
    /// deliveries in flight.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(50);
        while !*shutdown.borrow() {
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let max = free.min(self.config.batch_size);
            match self.queue.receive(max, self.config.receive_wait).await {
                Ok(deliveries) if deliveries.is_empty() => {
                    backoff = Duration::from_millis(50);
                }
                Ok(deliveries) => {
                    backoff = Duration::from_millis(50);
                    // At most `free` were asked for, so the permits are there.
                    let n = u32::try_from(deliveries.len()).unwrap_or(u32::MAX);
                    let Ok(permit) = permits.clone().acquire_many_owned(n).await else {
                        break;
                    };
                    let me = self.clone();
                    tasks.spawn(async move {
                        me.handle_all(deliveries).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(error = %e.chain(), "receive failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        info!(
            in_flight = tasks.len(),
            "consumer stopping; finishing deliveries in flight"
        );
        while tasks.join_next().await.is_some() {}
    }
}
