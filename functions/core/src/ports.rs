//! The ports: the storage and queue contracts every backend implements.
//!
//! They are shaped to fit both a managed key-value store with a managed queue and a single
//! local SQLite file: every write is one conditional item operation or one transaction, and
//! the queue is at-least-once, with a visibility timeout, a receive count and a dead-letter
//! queue.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{BackendError, InvalidParam, StoreError};
use crate::model::{
    HistoryEvent, Instance, InstanceCursor, RequestRecord, RequestStatus, Workflow,
};
pub use crate::record::RequestUpdate;
use crate::schedule::ScheduleDefinition;

/// Whether `put_workflow` created a new definition or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The workflow did not exist.
    Created,
    /// An existing definition was replaced.
    Updated,
}

/// Whether `create_instance` made the instance or found it already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    /// This call created the instance and marked the request `CREATED`.
    Created,
    /// The instance already existed: a redelivery, which counts as done.
    AlreadyExisted,
    /// Its workflow's concurrency limit held it back: it waits (`WAITING`), with this reason.
    Waiting(String),
    /// Its workflow's concurrency limit skipped it (`SKIPPED`), with this reason.
    Skipped(String),
}

/// A queue message offered to [`Store::create_request`] for a transactional outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbox {
    /// The message.
    pub envelope: Envelope,
    /// The `enqueued` event to record if the store enqueues it.
    pub event: HistoryEvent,
}

/// A new request record with its queue message, for [`Store::create_requests`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    /// The record to create.
    pub record: RequestRecord,
    /// Its queue message.
    pub outbox: Outbox,
}

/// How many item writes (or sends) a batch keeps in flight at once on a store (or queue)
/// that takes them one by one.
pub const BATCH_PARALLELISM: usize = 32;

/// [`Store::create_requests`] by [`Store::create_request`], [`BATCH_PARALLELISM`] at a time.
pub async fn create_one_by_one<S: Store + ?Sized>(
    store: &S,
    writes: &[NewRequest],
) -> Vec<Result<Enqueued, StoreError>> {
    use futures_util::StreamExt;
    // By index: a closure over the slice's items would not be `Send` to async_trait.
    futures_util::stream::iter(0..writes.len())
        .map(|i| store.create_request(&writes[i].record, Some(&writes[i].outbox)))
        .buffered(BATCH_PARALLELISM)
        .collect()
        .await
}

/// [`Store::create_instances`] by [`Store::create_instance`], [`BATCH_PARALLELISM`] at a
/// time.
pub async fn create_instances_one_by_one<S: Store + ?Sized>(
    store: &S,
    creations: &[(Instance, RequestUpdate)],
) -> Vec<Result<Creation, BackendError>> {
    use futures_util::StreamExt;
    futures_util::stream::iter(0..creations.len())
        .map(|i| store.create_instance(&creations[i].0, &creations[i].1))
        .buffered(BATCH_PARALLELISM)
        .collect()
        .await
}

/// [`Queue::send_batch`] by [`Queue::send`], [`BATCH_PARALLELISM`] at a time.
pub async fn send_one_by_one<Q: Queue + ?Sized>(
    queue: &Q,
    envelopes: &[Envelope],
) -> Vec<Result<(), BackendError>> {
    use futures_util::StreamExt;
    futures_util::stream::iter(0..envelopes.len())
        .map(|i| queue.send(&envelopes[i]))
        .buffered(BATCH_PARALLELISM)
        .collect()
        .await
}

/// Whether [`Store::create_request`] enqueued the outbox message itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The message was committed with the record.
    Yes,
    /// The store has no outbox: the caller must send the message.
    No,
}

/// The outcome of [`Store::update_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The update was applied.
    Applied,
    /// `only_if` did not hold; nothing changed. Carries the current status.
    Skipped(RequestStatus),
    /// There is no such request.
    NotFound,
}

/// The requests of one status a tenant accepted in an audit's window, with the same
/// workflow, the same side of the grace cutoff, and the same instance (found or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditGroup {
    /// The workflow they start.
    pub workflow: String,
    /// Where they are.
    pub status: RequestStatus,
    /// Whether their pending time (last send, or acceptance) is at or before the cutoff.
    pub past_grace: bool,
    /// Whether their instance exists (as the store found it, or as their status says where
    /// the store cannot look: see [`AuditFacts::instances_checked`]).
    pub instance: bool,
    /// How many.
    pub count: u64,
}

/// A request still `ACCEPTED` past the grace cutoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingRequest {
    /// Its id.
    pub request_id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// Its pending time: its last send, or its acceptance if never sent.
    pub since: DateTime<Utc>,
}

/// What a store knows of the requests one tenant accepted in a window, for an audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFacts {
    /// Every request of the window, in groups.
    pub groups: Vec<AuditGroup>,
    /// Requests still `ACCEPTED` past the cutoff, oldest first, at most the limit asked.
    pub overdue: Vec<PendingRequest>,
    /// Requests whose status says their instance exists where the store holds none, at
    /// most the limit asked.
    pub missing_instances: Vec<String>,
    /// Whether the store looked each instance up (false: a status is taken at its word).
    pub instances_checked: bool,
}

/// Durable storage of workflows, request records and instances.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers or replaces a workflow definition. The store assigns `version` and keeps
    /// the original `created_at` on update.
    async fn put_workflow(&self, workflow: &Workflow) -> Result<Upsert, BackendError>;

    /// Reads a workflow definition.
    async fn get_workflow(
        &self,
        tenant: &str,
        code: &str,
    ) -> Result<Option<Workflow>, BackendError>;

    /// Reads the workflow whose `ds_code` is `ds_code`.
    async fn workflow_by_ds_code(
        &self,
        tenant: &str,
        ds_code: i64,
    ) -> Result<Option<Workflow>, BackendError>;

    /// Creates a request record if no record with its (tenant, request_id) exists.
    /// Fails with [`StoreError::AlreadyExists`] carrying the existing record otherwise.
    ///
    /// `outbox` is the request's queue message. A store that shares a transaction with its
    /// queue (the embedded one) commits the message, the `enqueued` event and
    /// `pending_since` atomically with the record and answers [`Enqueued::Yes`]. Any other
    /// store ignores it and answers [`Enqueued::No`]; the caller then sends the message.
    async fn create_request(
        &self,
        record: &RequestRecord,
        outbox: Option<&Outbox>,
    ) -> Result<Enqueued, StoreError>;

    /// Creates many request records, each exactly as [`Store::create_request`] would
    /// (with its outbox), and answers each in order. A store that can commit them together
    /// (the embedded one, in one transaction) does; by default, they are written
    /// [`BATCH_PARALLELISM`] at a time.
    async fn create_requests(&self, writes: &[NewRequest]) -> Vec<Result<Enqueued, StoreError>> {
        create_one_by_one(self, writes).await
    }

    /// Reads a request record with its history.
    async fn get_request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<RequestRecord>, BackendError>;

    /// Applies `update` to a request record atomically, by [`RequestRecord::apply`].
    async fn update_request(
        &self,
        tenant: &str,
        request_id: &str,
        update: &RequestUpdate,
    ) -> Result<UpdateOutcome, BackendError>;

    /// Atomically creates `instance` and applies `update` (which marks the request
    /// `CREATED`) to its request, by [`RequestRecord::apply`]. When the instance already
    /// exists, changes nothing and answers [`Creation::AlreadyExisted`]. Fails permanently
    /// when the request record is missing.
    async fn create_instance(
        &self,
        instance: &Instance,
        update: &RequestUpdate,
    ) -> Result<Creation, BackendError>;

    /// Creates many instances, each exactly as [`Store::create_instance`] would with its
    /// update, and answers each in order. A store that can do them in one write (the
    /// embedded one) does; by default, they are written [`BATCH_PARALLELISM`] at a time.
    async fn create_instances(
        &self,
        creations: &[(Instance, RequestUpdate)],
    ) -> Vec<Result<Creation, BackendError>> {
        create_instances_one_by_one(self, creations).await
    }

    /// Reads an instance, with its hand-off as its request holds it (the one place it is
    /// kept; a request removed by retention leaves the instance without it).
    async fn get_instance(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Option<Instance>, BackendError>;

    /// Lists up to `limit` of a workflow's instances, newest first (by `created_at`, then
    /// `instance_id`), starting strictly after `after`, each with its hand-off as in
    /// [`Store::get_instance`]: one query for the page (and at most one batch read of its
    /// requests), never a read per instance.
    async fn list_instances(
        &self,
        tenant: &str,
        workflow: &str,
        limit: usize,
        after: Option<&InstanceCursor>,
    ) -> Result<Vec<Instance>, BackendError>;

    /// Requests still `ACCEPTED` whose `pending_since` (or `accepted_at`, if never sent) is
    /// older than `older_than`, oldest first, across all tenants.
    async fn list_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, BackendError>;

    /// What the store holds of the requests `tenant` accepted at or after `from` and before
    /// `to`, grouped (see [`AuditGroup`]), with the pending ones at or before `cutoff`
    /// listed (at most `limit`, oldest first), and the ones whose instance is missing (at
    /// most `limit`). It reads only the window, never the whole store.
    async fn audit(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<AuditFacts, BackendError>;

    /// Releases the starts waiting for `slot` of `workflow` while its slots are free, first
    /// in line first, and answers the ones released (now `ACCEPTED`, each holding its slot)
    /// for the caller to send. A store that gives a slot back and releases the next start in
    /// the write that ended a run, queued in the same commit (the embedded one), answers none.
    async fn release_waiting(
        &self,
        tenant: &str,
        workflow: &str,
        slot: &crate::runs::Slot,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        let _ = (tenant, workflow, slot);
        Ok(Vec::new())
    }

    /// Up to `limit` unfinished runs handed to a target that can be asked where they are (a
    /// Step Functions execution), not yet at a final status, whose start last changed before `quiet_since` and after `after`, oldest change
    /// first: (tenant, request id, last change). The reconciler asks their targets where they
    /// are. A store whose host learns of them otherwise (status events) lists none.
    async fn quiet_runs(
        &self,
        quiet_since: DateTime<Utc>,
        after: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, BackendError> {
        let _ = (quiet_since, after, limit);
        Ok(Vec::new())
    }

    /// Up to `limit` requests whose instance's run has gone past its time-out (created at
    /// or before `now` minus the time-out its start carries) without a final status, across
    /// tenants: (tenant, request id) pairs, most overdue first.
    async fn overdue_runs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, BackendError>;

    /// Removes up to `limit` finished requests (`CREATED` or `DISPATCHED` with nothing owed,
    /// and `ARCHIVED`) last changed before `before`, oldest first; answers how many. `DEAD`
    /// requests wait for an operator and never expire; instances are kept. A backend whose
    /// records expire by themselves (a time-to-live it sets at each write) removes none here.
    async fn expire_requests(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, BackendError>;
}

/// A message as sent: a body plus the attributes a queue keeps beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Owning tenant (a message attribute).
    pub tenant: String,
    /// The request it carries (a message attribute).
    pub request_id: String,
    /// The serialized [`crate::message::QueueMessage`]; opaque to the queue.
    pub body: String,
    /// The W3C `traceparent` of the work that sent it (a message attribute).
    pub traceparent: Option<String>,
}

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The queue's id of the message.
    pub message_id: String,
    /// Identifies this delivery for `ack`, `retry_later` and `dead_letter`.
    pub receipt: String,
    /// How many times the message has been delivered, this time included.
    pub receive_count: u32,
    /// Tenant attribute, if the sender set it.
    pub tenant: Option<String>,
    /// Request id attribute, if the sender set it.
    pub request_id: Option<String>,
    /// The raw body, which may not parse.
    pub body: String,
    /// The `traceparent` attribute, if the sender set it.
    pub traceparent: Option<String>,
}

/// What the queue knows of a request's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// A message for it is waiting or in flight on the main queue.
    Live,
    /// Its message is in the dead-letter queue, with this reason.
    DeadLettered(String),
    /// The queue holds no message for it.
    Absent,
    /// The queue cannot tell (it cannot look messages up by attribute).
    Unknown,
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The queue's id of the message (in the dead-letter queue).
    pub message_id: String,
    /// Identifies this claim for `dlq_release` and `dlq_delete`; empty when only peeked.
    #[serde(skip)]
    pub receipt: String,
    /// Tenant attribute, if the sender set it.
    pub tenant: Option<String>,
    /// Request id attribute, if the sender set it.
    pub request_id: Option<String>,
    /// The raw body, which may not parse.
    pub body: String,
    /// Why it was dead-lettered; `None` when the queue's own redrive moved it.
    pub reason: Option<String>,
    /// Deliveries on the main queue before it was dead-lettered.
    pub receive_count: u32,
    /// When it entered the dead-letter queue.
    pub dead_lettered_at: DateTime<Utc>,
    /// The `traceparent` attribute, if the sender set it (a replay carries it on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The outcome of [`Queue::dlq_move_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveAll {
    /// The queue moved every dead letter back to the main queue itself; carries how many.
    Moved(u64),
    /// The queue has no native bulk move; carries why, for the operator.
    Unsupported(String),
}

/// The dead-letter queue beside a [`Queue`], as the operator's tools use it.
#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// Up to `max` dead letters, oldest first, without claiming or changing any of them.
    async fn dlq_peek(&self, max: usize) -> Result<Vec<DeadLetter>, BackendError>;

    /// Claims up to `max` (at most 10) unclaimed dead letters for `hold`: no other claim
    /// sees them until they are released, deleted, or the hold runs out.
    async fn dlq_claim(&self, max: usize, hold: Duration) -> Result<Vec<DeadLetter>, BackendError>;

    /// Ends a claim without changing the letter.
    async fn dlq_release(&self, letter: &DeadLetter) -> Result<(), BackendError>;

    /// Deletes a claimed dead letter. A stale claim (the hold ran out and another claim took
    /// the letter) may leave it in place, never delete a newer claim's letter wrongly.
    async fn dlq_delete(&self, letter: &DeadLetter) -> Result<(), BackendError>;

    /// Puts a letter (from an archive) back in the dead-letter queue, with its reason.
    async fn dlq_restore(&self, letter: &DeadLetter) -> Result<(), BackendError>;

    /// Moves every dead letter back to the main queue with the queue's native bulk move,
    /// if it has one. Callers must fall back to letter-by-letter replay on `Unsupported`.
    async fn dlq_move_all(&self) -> Result<MoveAll, BackendError> {
        Ok(MoveAll::Unsupported(
            "this queue has no native bulk move".into(),
        ))
    }
}

/// An at-least-once queue with a dead-letter queue.
#[async_trait]
pub trait Queue: DeadLetterQueue + Send + Sync + 'static {
    /// Durably enqueues a message.
    async fn send(&self, envelope: &Envelope) -> Result<(), BackendError>;

    /// Durably enqueues many messages, and answers each in order. By default they are
    /// sent [`BATCH_PARALLELISM`] at a time; a queue with a batch call uses it.
    async fn send_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), BackendError>> {
        send_one_by_one(self, envelopes).await
    }

    /// Receives up to `max` visible messages, waiting up to `wait` for the first. Each one
    /// becomes invisible for the queue's visibility timeout.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError>;

    /// Deletes a delivered message: it was handled.
    async fn ack(&self, delivery: &Delivery) -> Result<(), BackendError>;

    /// Makes a delivered message visible again after `delay`.
    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), BackendError>;

    /// Moves a delivered message to the dead-letter queue with `reason`.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), BackendError>;

    /// What the queue knows of the message for a request.
    async fn liveness(&self, tenant: &str, request_id: &str) -> Result<Liveness, BackendError> {
        let _ = (tenant, request_id);
        Ok(Liveness::Unknown)
    }
}

/// An API token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// A short public id, for listing and revoking.
    pub id: String,
    /// SHA-256 of the whole token, hex.
    pub hash: String,
    /// The tenant the token acts for.
    pub tenant: String,
    /// What it may do.
    pub scopes: Vec<crate::auth::Scope>,
    /// Its own requests-per-second limit, if any.
    pub rate: Option<u32>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Durable storage of API tokens (the embedded host's credentials).
#[async_trait]
pub trait Tokens: Send + Sync + 'static {
    /// Stores a new token.
    async fn put_token(&self, token: &TokenRecord) -> Result<(), BackendError>;

    /// The token with this hash, revoked or not.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, BackendError>;

    /// Every token, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, BackendError>;

    /// Marks the token `id` revoked at `at`; false when there is no such token.
    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, BackendError>;
}

/// A schedule as stored: its definition, and where the scheduler is in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Owning tenant.
    pub tenant: String,
    /// The workflow it starts.
    pub workflow: String,
    /// Its id, unique per workflow.
    pub id: String,
    /// What the client put, checked.
    pub definition: ScheduleDefinition,
    /// Incremented on every change; guards concurrent writers.
    pub version: u64,
    /// When it was first put.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The latest fire time the scheduler has handled (fired or skipped).
    pub last_fired: Option<DateTime<Utc>>,
    /// When it next fires; `None` when it never will again.
    pub next_due: Option<DateTime<Utc>>,
    /// Its next fire times (a few, soonest first), worked out when it was put and at each
    /// fire, so that a read never works them out; `None` on a record stored before they
    /// were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fires: Option<Vec<DateTime<Utc>>>,
    /// Why its last fire could not start an instance, if it could not.
    pub last_error: Option<String>,
}

/// Durable storage of schedules, with the scheduler's position in each.
#[async_trait]
pub trait Schedules: Send + Sync + 'static {
    /// Writes `schedule` if the stored version is still `expected` (`None`: only if it does
    /// not exist). Answers false when another writer got there first.
    async fn put_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError>;

    /// Writes where the scheduler is in `schedule` (`last_fired`, `next_due`, `next_fires`,
    /// `last_error`, `version`, `updated_at`) if the stored version is still `expected`,
    /// leaving its definition, and any engine that fires it, as they are. Answers false
    /// when another writer got there first.
    async fn advance_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected: u64,
    ) -> Result<bool, BackendError>;

    /// Reads a schedule.
    async fn get_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<Option<ScheduleRecord>, BackendError>;

    /// A workflow's schedules, by id.
    async fn list_schedules(
        &self,
        tenant: &str,
        workflow: &str,
    ) -> Result<Vec<ScheduleRecord>, BackendError>;

    /// `tenant`'s schedules of every workflow, by workflow and id, at most `limit` of them.
    async fn list_tenant_schedules(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError>;

    /// Deletes a schedule; false when there was none.
    async fn delete_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<bool, BackendError>;

    /// Whether this backend can run `definition`'s timing. A backend whose engine is coarser
    /// than Flowgate's expressions refuses what it cannot run (naming the field and why),
    /// and never rounds it.
    fn supports(&self, definition: &ScheduleDefinition) -> Result<(), InvalidParam> {
        let _ = definition;
        Ok(())
    }

    /// Unpaused schedules due at or before `now`, soonest first, across tenants. A backend
    /// whose engine fires schedules itself answers none: nothing is left for a sweep.
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError>;
}

/// Where a backfill is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackfillState {
    /// Starting its dates.
    Running,
    /// Stopped by an operator; resumable.
    Paused,
    /// Stopped for good; dates not started stay unstarted.
    Cancelled,
    /// Every date started and settled.
    Done,
}

/// A backfill as stored: its dates, how far it got, and what became of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Its id.
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// Its logical dates, in the order they start.
    pub dates: Vec<DateTime<Utc>>,
    /// The params of each instance.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Their priority.
    pub priority: crate::model::Priority,
    /// Run options kept with each date's request.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub options: std::collections::BTreeMap<String, String>,
    /// Key each date by (backfill, date), so that dates that already have an instance get
    /// another.
    pub reprocess: bool,
    /// Each date's instance is created and never handed to its target (a DolphinScheduler
    /// dry run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_hand_off: bool,
    /// The most dates in flight (started, not yet created or dead) at once.
    pub max_in_flight: usize,
    /// At most this many dates started per second.
    pub rate: Option<f64>,
    /// Where it is.
    pub state: BackfillState,
    /// How many dates have been started (the next one to start is `dates[started]`).
    pub started: usize,
    /// Dates whose instance was created.
    pub created: usize,
    /// Dates that already had an instance, and were not started again.
    pub skipped: usize,
    /// Dates whose request was dead-lettered, or could not start.
    pub dead: usize,
    /// The request ids of the dates in flight.
    pub in_flight: Vec<String>,
    /// Incremented on every change; guards concurrent runners.
    pub version: u64,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl BackfillRecord {
    /// Whether `other` asks for the same backfill: the same workflow, dates, instances and
    /// pace (what a retried call with the same idempotency key must repeat).
    pub fn asks_the_same(&self, other: &BackfillRecord) -> bool {
        (
            &self.workflow,
            &self.dates,
            &self.params,
            self.priority,
            &self.options,
            self.reprocess,
            self.no_hand_off,
            self.max_in_flight,
        ) == (
            &other.workflow,
            &other.dates,
            &other.params,
            other.priority,
            &other.options,
            other.reprocess,
            other.no_hand_off,
            other.max_in_flight,
        ) && self.rate.map(f64::to_bits) == other.rate.map(f64::to_bits)
    }
}

/// Durable storage of backfills.
#[async_trait]
pub trait Backfills: Send + Sync + 'static {
    /// Writes `backfill` if the stored version is still `expected` (`None`: only if new).
    async fn put_backfill(
        &self,
        backfill: &BackfillRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError>;

    /// Reads a backfill.
    async fn get_backfill(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<BackfillRecord>, BackendError>;

    /// Running backfills, oldest first, across tenants.
    async fn running_backfills(&self, limit: usize) -> Result<Vec<BackfillRecord>, BackendError>;

    /// `tenant`'s backfills, newest first, at most `limit` of them.
    async fn list_backfills(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<BackfillRecord>, BackendError>;
}

/// What a target answered when it took an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The target's reference: an HTTP status, an execution ARN, an event id.
    pub reference: String,
}

/// Why a hand-off failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DispatchError {
    /// Whether a later attempt may succeed (a timeout, a 5xx, a throttle).
    pub retryable: bool,
    /// What went wrong, safe to record (never a secret).
    pub reason: String,
}

impl DispatchError {
    /// A failure that a later attempt may not have.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self {
            retryable: true,
            reason: reason.into(),
        }
    }

    /// A failure that every attempt would have.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            retryable: false,
            reason: reason.into(),
        }
    }
}

/// Hands created instances to the systems that run them. A target is a JSON object whose
/// `type` names its kind; the kinds, their fields and their checks live in the adapter.
#[async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Checks a workflow's target before it is stored, and answers it as it should be kept
    /// (defaults filled in), or why it is refused.
    fn check(&self, target: &serde_json::Value) -> Result<serde_json::Value, String>;

    /// Hands `instance` to `target`. Handing the same instance twice must not make the
    /// target run it twice where the target can tell (an idempotency key, a unique name).
    async fn dispatch(
        &self,
        target: &serde_json::Value,
        instance: &Instance,
        trace: Option<&crate::trace::TraceContext>,
    ) -> Result<Receipt, DispatchError>;

    /// Asks `target` where the run it took as `reference` is: a report when the target can
    /// say (a Step Functions execution's status), `None` when its kind cannot be asked.
    async fn status(
        &self,
        target: &serde_json::Value,
        instance: &Instance,
        reference: &str,
    ) -> Result<Option<crate::runs::Report>, DispatchError> {
        let _ = (target, instance, reference);
        Ok(None)
    }

    /// Tells `target` that `instance` (handed off with `reference`, if it was) is cancelled:
    /// answers what the target said, or `None` when its kind has no way to be told.
    async fn cancel(
        &self,
        target: &serde_json::Value,
        instance: &Instance,
        reference: Option<&str>,
    ) -> Result<Option<String>, DispatchError> {
        let _ = (target, instance, reference);
        Ok(None)
    }
}
