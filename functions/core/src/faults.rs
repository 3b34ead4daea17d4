//! Fault injection: port wrappers that fail a configured fraction of calls (feature `faults`).
//!
//! A plan is written `point=rate[:permanent][:after],...`, for example
//! `queue.send=0.05,store.put=0.05,consumer.create=1.0`. A fault is retryable unless marked
//! `permanent`. It fires before the call unless marked `after`, in which case the call takes
//! effect and its caller is told it failed (an ambiguous failure, like a timeout after commit).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::InvalidParam;
use crate::error::{BackendError, ErrorKind, StoreError};
use crate::model::{Instance, InstanceCursor, RequestRecord, Workflow};
use crate::ports::{
    BackfillRecord, Backfills, Creation, DeadLetter, DeadLetterQueue, Delivery, Enqueued, Envelope,
    Liveness, MoveAll, NewRequest, Outbox, Queue, RequestUpdate, ScheduleRecord, Schedules, Store,
    UpdateOutcome, Upsert,
};
use crate::schedule::ScheduleDefinition;

/// The environment variable `flowgate serve` reads its plan from.
pub const FAULTS_ENV: &str = "FLOWGATE_FAULTS";

/// Every point a fault can be injected at, with the port call it guards.
pub const POINTS: &[(&str, &str)] = &[
    ("store.put_workflow", "Store::put_workflow"),
    ("store.get_workflow", "Store::get_workflow"),
    ("store.workflow_by_ds_code", "Store::workflow_by_ds_code"),
    (
        "store.put",
        "Store::create_request (the API's conditional put)",
    ),
    ("store.get", "Store::get_request"),
    (
        "store.update",
        "Store::update_request (history and status changes)",
    ),
    (
        "consumer.create",
        "Store::create_instance (the consumer's atomic create)",
    ),
    ("store.get_instance", "Store::get_instance"),
    ("store.list_instances", "Store::list_instances"),
    (
        "store.list_pending",
        "Store::list_pending (the reconciler's scan)",
    ),
    ("queue.send", "Queue::send"),
    ("queue.receive", "Queue::receive"),
    ("queue.ack", "Queue::ack"),
    ("queue.retry_later", "Queue::retry_later"),
    ("queue.dead_letter", "Queue::dead_letter"),
    ("queue.liveness", "Queue::liveness"),
    ("dlq.peek", "Queue::dlq_peek"),
    ("dlq.claim", "Queue::dlq_claim"),
    ("dlq.release", "Queue::dlq_release"),
    ("dlq.delete", "Queue::dlq_delete"),
    ("dlq.restore", "Queue::dlq_restore"),
    ("dlq.move_all", "Queue::dlq_move_all"),
    ("backfills.put", "Backfills::put_backfill"),
    ("backfills.get", "Backfills::get_backfill"),
    ("backfills.running", "Backfills::running_backfills"),
    ("backfills.list", "Backfills::list_backfills"),
    ("store.audit", "Store::audit"),
    ("schedules.put", "Schedules::put_schedule"),
    ("schedules.advance", "Schedules::advance_schedule"),
    ("schedules.get", "Schedules::get_schedule"),
    ("schedules.list", "Schedules::list_schedules"),
    ("schedules.list_tenant", "Schedules::list_tenant_schedules"),
    ("schedules.delete", "Schedules::delete_schedule"),
    ("schedules.due", "Schedules::due_schedules"),
];

/// One configured fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// Fraction of calls that fail, 0 to 1.
    pub rate: f64,
    /// What kind of error they get.
    pub kind: ErrorKind,
    /// Whether the call still takes effect before failing.
    pub after: bool,
}

/// A malformed fault plan.
#[derive(Debug, thiserror::Error)]
#[error("invalid fault plan entry {entry:?}: {reason}")]
pub struct PlanError {
    entry: String,
    reason: String,
}

/// The injected error's message.
#[derive(Debug, thiserror::Error)]
#[error("injected fault at {0}")]
pub struct InjectedFault(&'static str);

/// Which calls fail, changeable while running.
#[derive(Debug, Default)]
pub struct FaultPlan {
    faults: RwLock<HashMap<String, Fault>>,
}

impl FaultPlan {
    /// Parses `point=rate[:permanent][:after],...`; an empty text is an empty plan.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let plan = Self::default();
        plan.apply(text)?;
        Ok(plan)
    }

    /// Sets every fault `text` names (same syntax as [`FaultPlan::parse`]), keeping others.
    pub fn apply(&self, text: &str) -> Result<(), PlanError> {
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let err = |reason: &str| PlanError {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            let (point, rest) = entry
                .split_once('=')
                .ok_or_else(|| err("expected point=rate"))?;
            let mut parts = rest.split(':');
            let rate: f64 = parts
                .next()
                .unwrap_or("")
                .parse()
                .map_err(|_| err("rate must be a number from 0 to 1"))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(err("rate must be a number from 0 to 1"));
            }
            let mut fault = Fault {
                rate,
                kind: ErrorKind::Retryable,
                after: false,
            };
            for flag in parts {
                match flag {
                    "permanent" => fault.kind = ErrorKind::Permanent,
                    "after" => fault.after = true,
                    _ => return Err(err("flags are :permanent and :after")),
                }
            }
            self.set(point.trim(), fault).map_err(|r| err(&r))?;
        }
        Ok(())
    }

    /// Sets (or with rate 0, effectively clears) the fault at `point`.
    pub fn set(&self, point: &str, fault: Fault) -> Result<(), String> {
        if !POINTS.iter().any(|(p, _)| *p == point) {
            let known: Vec<&str> = POINTS.iter().map(|(p, _)| *p).collect();
            return Err(format!("unknown point; known points: {}", known.join(", ")));
        }
        self.faults
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(point.to_owned(), fault);
        Ok(())
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.faults
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Whether the plan injects anything.
    pub fn is_empty(&self) -> bool {
        self.faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .all(|f| f.rate <= 0.0)
    }

    /// Whether a fault with a non-zero rate is set at `point`.
    pub fn is_active(&self, point: &str) -> bool {
        self.faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(point)
            .is_some_and(|f| f.rate > 0.0)
    }

    fn roll(&self, point: &'static str) -> Option<Fault> {
        let faults = self.faults.read().unwrap_or_else(|p| p.into_inner());
        let fault = *faults.get(point)?;
        (fault.rate > 0.0 && fastrand::f64() < fault.rate).then_some(fault)
    }

    /// Runs `call` under the fault at `point`.
    async fn guard<T, E: From<BackendError>>(
        &self,
        point: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let Some(fault) = self.roll(point) else {
            return call.await;
        };
        if fault.after {
            call.await?;
        }
        Err(BackendError {
            op: point,
            kind: fault.kind,
            source: Box::new(InjectedFault(point)),
        }
        .into())
    }
}

/// A [`Store`] whose calls fail as the plan says.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    plan: Arc<FaultPlan>,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn put_workflow(&self, w: &Workflow) -> Result<Upsert, BackendError> {
        self.plan
            .guard("store.put_workflow", self.inner.put_workflow(w))
            .await
    }
    async fn get_workflow(&self, t: &str, c: &str) -> Result<Option<Workflow>, BackendError> {
        self.plan
            .guard("store.get_workflow", self.inner.get_workflow(t, c))
            .await
    }
    async fn workflow_by_ds_code(
        &self,
        t: &str,
        ds: i64,
    ) -> Result<Option<Workflow>, BackendError> {
        self.plan
            .guard(
                "store.workflow_by_ds_code",
                self.inner.workflow_by_ds_code(t, ds),
            )
            .await
    }
    async fn create_request(
        &self,
        r: &RequestRecord,
        outbox: Option<&Outbox>,
    ) -> Result<Enqueued, StoreError> {
        // With a send fault configured, bypass the outbox so that every send goes through
        // the (faulty) queue port, as it would on a backend without one.
        let outbox = outbox.filter(|_| !self.plan.is_active("queue.send"));
        self.plan
            .guard("store.put", self.inner.create_request(r, outbox))
            .await
    }
    async fn create_requests(&self, writes: &[NewRequest]) -> Vec<Result<Enqueued, StoreError>> {
        // Faults fall on each start; without any, the backend writes them its own way.
        if self.plan.is_active("store.put") || self.plan.is_active("queue.send") {
            crate::ports::create_one_by_one(self, writes).await
        } else {
            self.inner.create_requests(writes).await
        }
    }
    async fn get_request(&self, t: &str, r: &str) -> Result<Option<RequestRecord>, BackendError> {
        self.plan
            .guard("store.get", self.inner.get_request(t, r))
            .await
    }
    async fn update_request(
        &self,
        t: &str,
        r: &str,
        u: &RequestUpdate,
    ) -> Result<UpdateOutcome, BackendError> {
        self.plan
            .guard("store.update", self.inner.update_request(t, r, u))
            .await
    }
    async fn create_instance(
        &self,
        i: &Instance,
        u: &RequestUpdate,
    ) -> Result<Creation, BackendError> {
        self.plan
            .guard("consumer.create", self.inner.create_instance(i, u))
            .await
    }
    async fn create_instances(
        &self,
        creations: &[(Instance, RequestUpdate)],
    ) -> Vec<Result<Creation, BackendError>> {
        // Faults fall on each creation; without any, the backend writes them its own way.
        if self.plan.is_active("consumer.create") {
            crate::ports::create_instances_one_by_one(self, creations).await
        } else {
            self.inner.create_instances(creations).await
        }
    }
    async fn get_instance(&self, t: &str, i: &str) -> Result<Option<Instance>, BackendError> {
        self.plan
            .guard("store.get_instance", self.inner.get_instance(t, i))
            .await
    }
    async fn list_instances(
        &self,
        t: &str,
        w: &str,
        limit: usize,
        after: Option<&InstanceCursor>,
    ) -> Result<Vec<Instance>, BackendError> {
        self.plan
            .guard(
                "store.list_instances",
                self.inner.list_instances(t, w, limit, after),
            )
            .await
    }
    async fn list_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        self.plan
            .guard(
                "store.list_pending",
                self.inner.list_pending(older_than, limit),
            )
            .await
    }
    async fn release_waiting(
        &self,
        tenant: &str,
        workflow: &str,
        slot: &crate::runs::Slot,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        self.plan
            .guard(
                "store.release_waiting",
                self.inner.release_waiting(tenant, workflow, slot),
            )
            .await
    }
    async fn quiet_runs(
        &self,
        quiet_since: DateTime<Utc>,
        after: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, BackendError> {
        self.plan
            .guard(
                "store.quiet_runs",
                self.inner.quiet_runs(quiet_since, after, limit),
            )
            .await
    }
    async fn overdue_runs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, BackendError> {
        self.plan
            .guard("store.overdue_runs", self.inner.overdue_runs(now, limit))
            .await
    }
    async fn expire_requests(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, BackendError> {
        self.plan
            .guard(
                "store.expire_requests",
                self.inner.expire_requests(before, limit),
            )
            .await
    }
    async fn audit(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<crate::ports::AuditFacts, BackendError> {
        let audit = self.inner.audit(tenant, from, to, cutoff, limit);
        self.plan.guard("store.audit", audit).await
    }
}

/// A [`Queue`] whose calls fail as the plan says.
pub struct FaultyQueue {
    inner: Arc<dyn Queue>,
    plan: Arc<FaultPlan>,
}

impl FaultyQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Queue>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(&self, e: &Envelope) -> Result<(), BackendError> {
        self.plan.guard("queue.send", self.inner.send(e)).await
    }
    async fn send_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), BackendError>> {
        // Faults fall on each message; without any, the queue sends them its own way.
        if self.plan.is_active("queue.send") {
            crate::ports::send_one_by_one(self, envelopes).await
        } else {
            self.inner.send_batch(envelopes).await
        }
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError> {
        self.plan
            .guard("queue.receive", self.inner.receive(max, wait))
            .await
    }
    async fn ack(&self, d: &Delivery) -> Result<(), BackendError> {
        self.plan.guard("queue.ack", self.inner.ack(d)).await
    }
    async fn retry_later(&self, d: &Delivery, delay: Duration) -> Result<(), BackendError> {
        self.plan
            .guard("queue.retry_later", self.inner.retry_later(d, delay))
            .await
    }
    async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), BackendError> {
        self.plan
            .guard("queue.dead_letter", self.inner.dead_letter(d, reason))
            .await
    }
    async fn liveness(&self, t: &str, r: &str) -> Result<Liveness, BackendError> {
        self.plan
            .guard("queue.liveness", self.inner.liveness(t, r))
            .await
    }
}

#[async_trait]
impl DeadLetterQueue for FaultyQueue {
    async fn dlq_peek(&self, max: usize) -> Result<Vec<DeadLetter>, BackendError> {
        self.plan.guard("dlq.peek", self.inner.dlq_peek(max)).await
    }
    async fn dlq_claim(&self, max: usize, hold: Duration) -> Result<Vec<DeadLetter>, BackendError> {
        self.plan
            .guard("dlq.claim", self.inner.dlq_claim(max, hold))
            .await
    }
    async fn dlq_release(&self, l: &DeadLetter) -> Result<(), BackendError> {
        self.plan
            .guard("dlq.release", self.inner.dlq_release(l))
            .await
    }
    async fn dlq_delete(&self, l: &DeadLetter) -> Result<(), BackendError> {
        self.plan
            .guard("dlq.delete", self.inner.dlq_delete(l))
            .await
    }
    async fn dlq_restore(&self, l: &DeadLetter) -> Result<(), BackendError> {
        self.plan
            .guard("dlq.restore", self.inner.dlq_restore(l))
            .await
    }
    async fn dlq_move_all(&self) -> Result<MoveAll, BackendError> {
        self.plan
            .guard("dlq.move_all", self.inner.dlq_move_all())
            .await
    }
}

/// A [`Schedules`] store whose calls fail as the plan says.
pub struct FaultySchedules {
    inner: Arc<dyn Schedules>,
    plan: Arc<FaultPlan>,
}

impl FaultySchedules {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Schedules>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl Schedules for FaultySchedules {
    async fn put_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        let put = self.inner.put_schedule(schedule, expected);
        self.plan.guard("schedules.put", put).await
    }
    async fn advance_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected: u64,
    ) -> Result<bool, BackendError> {
        let advance = self.inner.advance_schedule(schedule, expected);
        self.plan.guard("schedules.advance", advance).await
    }
    async fn get_schedule(
        &self,
        t: &str,
        workflow: &str,
        id: &str,
    ) -> Result<Option<ScheduleRecord>, BackendError> {
        let get = self.inner.get_schedule(t, workflow, id);
        self.plan.guard("schedules.get", get).await
    }
    async fn list_schedules(
        &self,
        t: &str,
        workflow: &str,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        let list = self.inner.list_schedules(t, workflow);
        self.plan.guard("schedules.list", list).await
    }
    async fn list_tenant_schedules(
        &self,
        t: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        let list = self.inner.list_tenant_schedules(t, limit);
        self.plan.guard("schedules.list_tenant", list).await
    }
    async fn delete_schedule(
        &self,
        t: &str,
        workflow: &str,
        id: &str,
    ) -> Result<bool, BackendError> {
        let delete = self.inner.delete_schedule(t, workflow, id);
        self.plan.guard("schedules.delete", delete).await
    }
    fn supports(&self, definition: &ScheduleDefinition) -> Result<(), InvalidParam> {
        self.inner.supports(definition)
    }
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.plan
            .guard("schedules.due", self.inner.due_schedules(now, limit))
            .await
    }
}

/// A [`Backfills`] store whose calls fail as the plan says.
pub struct FaultyBackfills {
    inner: Arc<dyn Backfills>,
    plan: Arc<FaultPlan>,
}

impl FaultyBackfills {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backfills>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl Backfills for FaultyBackfills {
    async fn put_backfill(
        &self,
        b: &BackfillRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        self.plan
            .guard("backfills.put", self.inner.put_backfill(b, expected))
            .await
    }
    async fn get_backfill(
        &self,
        t: &str,
        id: &str,
    ) -> Result<Option<BackfillRecord>, BackendError> {
        self.plan
            .guard("backfills.get", self.inner.get_backfill(t, id))
            .await
    }
    async fn running_backfills(&self, limit: usize) -> Result<Vec<BackfillRecord>, BackendError> {
        self.plan
            .guard("backfills.running", self.inner.running_backfills(limit))
            .await
    }
    async fn list_backfills(
        &self,
        t: &str,
        limit: usize,
    ) -> Result<Vec<BackfillRecord>, BackendError> {
        self.plan
            .guard("backfills.list", self.inner.list_backfills(t, limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plans_and_rejects_bad_entries() {
        let plan =
            FaultPlan::parse("queue.send=0.05, store.put=0.05,consumer.create=1.0:permanent:after");
        assert!(plan.is_ok_and(|p| !p.is_empty()));
        assert!(FaultPlan::parse("").is_ok_and(|p| p.is_empty()));
        assert!(FaultPlan::parse("queue.sned=0.1").is_err());
        assert!(FaultPlan::parse("queue.send=1.5").is_err());
        assert!(FaultPlan::parse("queue.send").is_err());
        assert!(FaultPlan::parse("queue.send=0.1:sometimes").is_err());
    }
}
