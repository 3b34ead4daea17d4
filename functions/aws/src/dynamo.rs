//! The [`Store`] port on DynamoDB: conditional puts that return the winner's record, an
//! instance created by a conditional put and then its request moved on (no transaction:
//! see `create_instance`), and a sparse GSI for the reconciler.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use flowgate_core::model::{Instance, InstanceCursor, RequestRecord, Workflow};
use flowgate_core::ports::{
    Creation, Enqueued, Outbox, RequestUpdate, Store, UpdateOutcome, Upsert,
};
use flowgate_core::record::GuardFailed;
use flowgate_core::{BackendError, StoreError};

use crate::error::classify;
use crate::items::{
    CorruptItem, InstanceItem, PENDING, RequestItem, WorkflowItem, instance_key, instance_order,
    instances_of, request_key, stamp, workflow_key,
};

mod audit;
mod backfills;
mod ds_codes;
mod schedules;

type Item = HashMap<String, AttributeValue>;

/// What a creation that found its request's instance made.
fn creation(created_here: bool) -> Creation {
    if created_here {
        Creation::Created
    } else {
        Creation::AlreadyExisted
    }
}

/// How often an optimistic read-modify-write is retried when it races.
const MAX_RACES: usize = 8;

/// The store on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention_days: u32,
}

fn to_item<T: serde::Serialize>(op: &'static str, value: &T) -> Result<Item, BackendError> {
    serde_dynamo::to_item(value).map_err(|e| BackendError::permanent(op, e))
}

fn from_item<T: DeserializeOwned>(op: &'static str, item: Item) -> Result<T, BackendError> {
    serde_dynamo::from_item(item).map_err(|e| BackendError::permanent(op, e))
}

/// A domain value out of an item's shape, or a permanent error naming the item: corrupt
/// data is never read as a default.
fn domain<T>(op: &'static str, read: Result<T, CorruptItem>) -> Result<T, BackendError> {
    read.map_err(|e| BackendError::permanent(op, e))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>, retention_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            retention_days,
        }
    }

    async fn get(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
    ) -> Result<Option<Item>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(out.item)
    }

    /// Reads a request record with its item version.
    async fn read_request(
        &self,
        op: &'static str,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<(RequestRecord, u64)>, BackendError> {
        let Some(item) = self.get(op, request_key(tenant, request_id), "R").await? else {
            return Ok(None);
        };
        let stored: RequestItem = from_item(op, item)?;
        let version = stored.version;
        Ok(Some((domain(op, stored.into_record())?, version)))
    }

    /// The requests of a page of instances, by id, in one batch read per 100 (so a listing
    /// is one query and one batch, never a read per instance). A request removed by its TTL
    /// is simply absent.
    async fn hand_offs(
        &self,
        op: &'static str,
        tenant: &str,
        request_ids: &[String],
    ) -> Result<HashMap<String, RequestRecord>, BackendError> {
        let mut found = HashMap::new();
        for chunk in request_ids.chunks(100) {
            let mut keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder();
            for id in chunk {
                keys = keys.keys(Item::from([
                    ("pk".to_owned(), s(request_key(tenant, id))),
                    ("sk".to_owned(), s("R")),
                ]));
            }
            let mut pending = Some(HashMap::from([(
                self.table.clone(),
                keys.build().map_err(|e| BackendError::permanent(op, e))?,
            )]));
            while let Some(request) = pending.take().filter(|r| !r.is_empty()) {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(|e| classify(op, e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let record = domain(op, from_item::<RequestItem>(op, item)?.into_record())?;
                    found.insert(record.request_id.clone(), record);
                }
                pending = out.unprocessed_keys;
            }
        }
        Ok(found)
    }

    /// Puts the instance if it does not exist yet: true when this call wrote it.
    async fn put_instance(&self, instance: &Instance) -> Result<bool, BackendError> {
        const OP: &str = "store.create_instance";
        let item = to_item(OP, &domain(OP, InstanceItem::new(instance))?)?;
        self.put_versioned(OP, item, None).await
    }

    /// Puts `item` if the stored version is still `expected` (or absent, for `None`).
    /// Answers false when another writer got there first.
    /// Reads a workflow definition.
    async fn workflow(&self, tenant: &str, code: &str) -> Result<Option<Workflow>, BackendError> {
        const OP: &str = "store.get_workflow";
        match self.get(OP, workflow_key(tenant, code), "WF").await? {
            None => Ok(None),
            Some(item) => Ok(Some(domain(
                OP,
                from_item::<WorkflowItem>(OP, item)?.into_workflow(),
            )?)),
        }
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, in sort-key order
    /// (consistent reads, every page).
    /// Up to `limit` items of one `gsi2` partition, in sort-key order (newest first when
    /// `backwards`). The index lags the table: callers that need the latest state read each
    /// item again.
    async fn query_gsi2(
        &self,
        op: &'static str,
        partition: String,
        backwards: bool,
        limit: usize,
    ) -> Result<Vec<Item>, BackendError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi2")
            .key_condition_expression("gsi2pk = :p")
            .expression_attribute_values(":p", s(partition))
            .scan_index_forward(!backwards)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(out.items.unwrap_or_default())
    }

    async fn query_prefix(
        &self,
        op: &'static str,
        pk: String,
        prefix: &str,
    ) -> Result<Vec<Item>, BackendError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p AND begins_with(sk, :s)")
                .expression_attribute_values(":p", s(pk.clone()))
                .expression_attribute_values(":s", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify(op, e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    async fn put_versioned(
        &self,
        op: &'static str,
        item: Item,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => Err(classify(op, e)),
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<Upsert, BackendError> {
        const OP: &str = "store.put_workflow";
        let (tenant, code) = (&workflow.tenant, &workflow.code);
        if let Some(ds_code) = workflow.ds_code {
            self.claim_ds_code(tenant, code, ds_code).await?;
        }
        for _ in 0..MAX_RACES {
            let old = self.workflow(tenant, code).await?;
            let (expected, version, created_at, upsert) = match &old {
                None => (None, 1, workflow.created_at, Upsert::Created),
                Some(old) => (
                    Some(old.version),
                    old.version + 1,
                    old.created_at,
                    Upsert::Updated,
                ),
            };
            let item = to_item(OP, &WorkflowItem::new(workflow, version, created_at))?;
            if self.put_versioned(OP, item, expected).await? {
                if let Some(dropped) = old.and_then(|o| o.ds_code)
                    && workflow.ds_code != Some(dropped)
                {
                    self.release_ds_code(tenant, code, dropped).await?;
                }
                return Ok(upsert);
            }
        }
        Err(BackendError::retryable(
            OP,
            "too many concurrent updates of this workflow",
        ))
    }

    async fn get_workflow(
        &self,
        tenant: &str,
        code: &str,
    ) -> Result<Option<Workflow>, BackendError> {
        self.workflow(tenant, code).await
    }

    async fn workflow_by_ds_code(
        &self,
        tenant: &str,
        ds_code: i64,
    ) -> Result<Option<Workflow>, BackendError> {
        self.find_by_ds_code(tenant, ds_code).await
    }

    async fn create_request(
        &self,
        record: &RequestRecord,
        _outbox: Option<&Outbox>,
    ) -> Result<Enqueued, StoreError> {
        const OP: &str = "store.create_request";
        let item = to_item(
            OP,
            &domain(OP, RequestItem::new(record, 1, self.retention_days))?,
        )?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            // DynamoDB shares no transaction with SQS: the caller sends the message.
            Ok(_) => Ok(Enqueued::No),
            Err(e) => {
                if let Some(PutItemError::ConditionalCheckFailedException(failed)) =
                    e.as_service_error()
                {
                    // The loser learns the winner's record in the same round trip.
                    let old = failed.item().cloned().ok_or_else(|| {
                        BackendError::permanent(OP, "conditional put failed without ALL_OLD")
                    })?;
                    let existing = domain(OP, from_item::<RequestItem>(OP, old)?.into_record())?;
                    return Err(StoreError::AlreadyExists {
                        existing: Box::new(existing),
                    });
                }
                Err(StoreError::Backend(classify(OP, e)))
            }
        }
    }

    async fn get_request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<RequestRecord>, BackendError> {
        const OP: &str = "store.get_request";
        match self.get(OP, request_key(tenant, request_id), "R").await? {
            None => Ok(None),
            Some(item) => Ok(Some(domain(
                OP,
                from_item::<RequestItem>(OP, item)?.into_record(),
            )?)),
        }
    }

    async fn update_request(
        &self,
        tenant: &str,
        request_id: &str,
        update: &RequestUpdate,
    ) -> Result<UpdateOutcome, BackendError> {
        const OP: &str = "store.update_request";
        for _ in 0..MAX_RACES {
            let Some((mut record, version)) = self.read_request(OP, tenant, request_id).await?
            else {
                return Ok(UpdateOutcome::NotFound);
            };
            if let Err(GuardFailed(current)) = record.apply(update) {
                return Ok(UpdateOutcome::Skipped(current));
            }
            let item = to_item(
                OP,
                &domain(
                    OP,
                    RequestItem::new(&record, version + 1, self.retention_days),
                )?,
            )?;
            if self.put_versioned(OP, item, Some(version)).await? {
                return Ok(UpdateOutcome::Applied);
            }
        }
        Err(BackendError::retryable(
            OP,
            "too many concurrent updates of this request",
        ))
    }

    /// The instance's conditional put, then the request's versioned put: two single-item
    /// writes, not a transaction, which DynamoDB bills double (4 WRU for the pair instead of
    /// 2). Between the two, the instance exists and its request still says `ACCEPTED`; the
    /// message is not acknowledged yet, so its redelivery completes the request (see
    /// `Consumer::complete_existing`), as the reconciler does for a lost message.
    async fn create_instance(
        &self,
        instance: &Instance,
        update: &RequestUpdate,
    ) -> Result<Creation, BackendError> {
        const OP: &str = "store.create_instance";
        let mut created_here = false;
        for _ in 0..MAX_RACES {
            let Some((mut record, version)) = self
                .read_request(OP, &instance.tenant, &instance.request_id)
                .await?
            else {
                return Err(BackendError::permanent(
                    OP,
                    format!("request {} has no record", instance.request_id),
                ));
            };
            // Its instance exists (the id is fixed at acceptance): done, by this call or
            // another delivery.
            if record.status.has_instance() {
                return Ok(creation(created_here));
            }
            if !created_here && !self.put_instance(instance).await? {
                // Created by an earlier delivery whose request write was lost: that
                // delivery's redelivery (this one) completes the request.
                return Ok(Creation::AlreadyExisted);
            }
            created_here = true;
            // The guard of a creation never fails: an instance makes its request CREATED.
            let _ = record.apply(update);
            let item = to_item(
                OP,
                &domain(
                    OP,
                    RequestItem::new(&record, version + 1, self.retention_days),
                )?,
            )?;
            if self.put_versioned(OP, item, Some(version)).await? {
                return Ok(Creation::Created);
            }
        }
        Err(BackendError::retryable(
            OP,
            "too many concurrent updates of this request",
        ))
    }

    async fn get_instance(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Option<Instance>, BackendError> {
        const OP: &str = "store.get_instance";
        let Some(item) = self.get(OP, instance_key(tenant, instance_id), "I").await? else {
            return Ok(None);
        };
        let instance = domain(OP, from_item::<InstanceItem>(OP, item)?.into_instance())?;
        Ok(Some(
            match self.read_request(OP, tenant, &instance.request_id).await? {
                Some((record, _)) => instance.with_dispatch(&record),
                None => instance,
            },
        ))
    }

    async fn list_instances(
        &self,
        tenant: &str,
        workflow: &str,
        limit: usize,
        after: Option<&InstanceCursor>,
    ) -> Result<Vec<Instance>, BackendError> {
        const OP: &str = "store.list_instances";
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi2")
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .expression_attribute_values(":p", s(instances_of(tenant, workflow)));
        query = match after {
            None => query.key_condition_expression("gsi2pk = :p"),
            Some(c) => query
                .key_condition_expression("gsi2pk = :p AND gsi2sk < :c")
                .expression_attribute_values(":c", s(instance_order(c.created_at, &c.instance_id))),
        };
        let out = query.send().await.map_err(|e| classify(OP, e))?;
        let instances = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| domain(OP, from_item::<InstanceItem>(OP, item)?.into_instance()))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<String> = instances.iter().map(|i| i.request_id.clone()).collect();
        let records = self.hand_offs(OP, tenant, &ids).await?;
        Ok(instances
            .into_iter()
            .map(|i| match records.get(&i.request_id) {
                Some(record) => i.with_dispatch(record),
                None => i,
            })
            .collect())
    }

    async fn list_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        const OP: &str = "store.list_pending";
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :p AND gsi1sk < :c")
                .expression_attribute_values(":p", s(PENDING))
                .expression_attribute_values(":c", s(stamp(older_than)))
                .limit(i32::try_from(limit - records.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify(OP, e))?;
            for item in out.items.unwrap_or_default() {
                records.push(domain(
                    OP,
                    from_item::<RequestItem>(OP, item)?.into_record(),
                )?);
            }
            start = out.last_evaluated_key;
            if start.is_none() || records.len() >= limit {
                return Ok(records);
            }
        }
    }

    async fn audit(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<flowgate_core::ports::AuditFacts, BackendError> {
        self.audit_items(tenant, from, to, cutoff, limit).await
    }

    /// Finished request items carry a `ttl` (see `RequestItem::new`): DynamoDB removes them
    /// itself, so this removes none.
    async fn expire_requests(
        &self,
        _before: DateTime<Utc>,
        _limit: usize,
    ) -> Result<usize, BackendError> {
        Ok(0)
    }
}
