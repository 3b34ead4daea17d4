//! Schedule records on DynamoDB: one item per schedule, `T#{tenant}#WF#{workflow}` /
//! `S#{id}`, beside its workflow's item so that a workflow's schedules are one query. The
//! record is kept as JSON text, with its version as a number for the conditional write.

use aws_sdk_dynamodb::types::AttributeValue;

use flowgate_core::BackendError;
use flowgate_core::ports::ScheduleRecord;

use super::{DynamoStore, Item, s};
use crate::error::classify;
use crate::items::workflow_key;

const SORT_PREFIX: &str = "S#";

fn sort_key(id: &str) -> String {
    format!("{SORT_PREFIX}{id}")
}

fn decode(op: &'static str, item: &Item) -> Result<ScheduleRecord, BackendError> {
    let text = item
        .get("record")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| BackendError::permanent(op, "schedule item without its record"))?;
    serde_json::from_str(text).map_err(|e| BackendError::permanent(op, e))
}

impl DynamoStore {
    /// Writes a schedule if its stored version is still `expected` (`None`: if absent).
    pub async fn put_schedule_item(
        &self,
        record: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        const OP: &str = "schedules.put";
        let text = serde_json::to_string(record).map_err(|e| BackendError::permanent(OP, e))?;
        let item = Item::from([
            (
                "pk".to_owned(),
                s(workflow_key(&record.tenant, &record.workflow)),
            ),
            ("sk".to_owned(), s(sort_key(&record.id))),
            (
                "version".to_owned(),
                AttributeValue::N(record.version.to_string()),
            ),
            ("record".to_owned(), s(text)),
            // Every schedule is also listed under its tenant in `gsi2`.
            ("gsi2pk".to_owned(), s(schedules_of(&record.tenant))),
            (
                "gsi2sk".to_owned(),
                s(format!("{}#{}", record.workflow, record.id)),
            ),
        ]);
        self.put_versioned(OP, item, expected).await
    }

    /// Reads a schedule.
    pub async fn get_schedule_item(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<Option<ScheduleRecord>, BackendError> {
        const OP: &str = "schedules.get";
        let item = self
            .get(OP, workflow_key(tenant, workflow), &sort_key(id))
            .await?;
        item.map(|item| decode(OP, &item)).transpose()
    }

    /// A workflow's schedules, by id.
    pub async fn list_schedule_items(
        &self,
        tenant: &str,
        workflow: &str,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        const OP: &str = "schedules.list";
        self.query_prefix(OP, workflow_key(tenant, workflow), SORT_PREFIX)
            .await?
            .iter()
            .map(|item| decode(OP, item))
            .collect()
    }

    /// A tenant's schedules of every workflow, by workflow and id.
    pub async fn list_tenant_schedule_items(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        const OP: &str = "schedules.list_tenant";
        let items = self
            .query_gsi2(OP, schedules_of(tenant), false, limit)
            .await?;
        items.iter().map(|item| decode(OP, item)).collect()
    }

    /// Deletes a schedule; false when there was none.
    pub async fn delete_schedule_item(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<bool, BackendError> {
        const OP: &str = "schedules.delete";
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(workflow_key(tenant, workflow)))
            .key("sk", s(sort_key(id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

/// The `gsi2` partition of a tenant's schedules (no workflow code holds `#`, so it never
/// meets a workflow's instance partition).
fn schedules_of(tenant: &str) -> String {
    format!("T#{tenant}#SCHEDULES")
}
