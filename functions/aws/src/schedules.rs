//! The [`Schedules`] port on AWS: the records on DynamoDB, and each schedule kept in step
//! in EventBridge Scheduler, which fires it. There is no sweep here: EventBridge Scheduler
//! is the engine, so [`Schedules::due_schedules`] answers none.
//!
//! Order of writes: a put writes the record, then the scheduler's schedule; a delete
//! removes the scheduler's schedule, then the record. A failure between the two answers a
//! retryable error, and the client's retry of the same `PUT` or `DELETE` finishes the job
//! (the record never claims a schedule that fires differently for long).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use flowgate_core::ports::{ScheduleRecord, Schedules};
use flowgate_core::schedule::ScheduleDefinition;
use flowgate_core::{BackendError, InvalidParam};

use crate::DynamoStore;
use crate::scheduler::{EventBridgeSchedules, expression};

/// Schedules kept on DynamoDB and fired by EventBridge Scheduler.
#[derive(Debug, Clone)]
pub struct AwsSchedules {
    store: DynamoStore,
    engine: EventBridgeSchedules,
}

impl AwsSchedules {
    /// Records in `store`, schedules in `engine`.
    pub fn new(store: DynamoStore, engine: EventBridgeSchedules) -> Self {
        Self { store, engine }
    }
}

#[async_trait]
impl Schedules for AwsSchedules {
    async fn put_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        if !self.store.put_schedule_item(schedule, expected).await? {
            return Ok(false);
        }
        self.engine.upsert(schedule).await?;
        Ok(true)
    }

    /// The position only: the record on DynamoDB (its stored definition kept, by a read
    /// of the version expected), and EventBridge Scheduler left as it is.
    async fn advance_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected: u64,
    ) -> Result<bool, BackendError> {
        let current = self
            .store
            .get_schedule_item(&schedule.tenant, &schedule.workflow, &schedule.id)
            .await?;
        let Some(current) = current.filter(|c| c.version == expected) else {
            return Ok(false);
        };
        let advanced = ScheduleRecord {
            definition: current.definition,
            created_at: current.created_at,
            ..schedule.clone()
        };
        self.store
            .put_schedule_item(&advanced, Some(expected))
            .await
    }

    async fn get_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<Option<ScheduleRecord>, BackendError> {
        self.store.get_schedule_item(tenant, workflow, id).await
    }

    async fn list_schedules(
        &self,
        tenant: &str,
        workflow: &str,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.store.list_schedule_items(tenant, workflow).await
    }

    async fn list_tenant_schedules(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.store.list_tenant_schedule_items(tenant, limit).await
    }

    async fn delete_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<bool, BackendError> {
        self.engine.delete(tenant, workflow, id).await?;
        self.store.delete_schedule_item(tenant, workflow, id).await
    }

    fn supports(&self, definition: &ScheduleDefinition) -> Result<(), InvalidParam> {
        expression::expression(definition).map(|_| ())
    }

    async fn due_schedules(
        &self,
        _now: DateTime<Utc>,
        _limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        Ok(Vec::new())
    }
}
