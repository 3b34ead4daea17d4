//! The [`Store`] port on DynamoDB: a start is one item (see `items.rs`). Its acceptance is
//! a conditional put that returns the winner's record; its creation a versioned put of the
//! same item, which also puts it in its workflow's listing. No transactions (DynamoDB bills
//! them double), and no partition key that every start writes.

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
    CorruptItem, InstanceItem, RequestItem, WorkflowItem, instance_key, instance_order,
    instances_of, listing_partitions, pending_partitions, request_key, stamp, start_of,
    workflow_key,
};

mod audit;
mod backfills;
mod ds_codes;
mod runs;
mod schedules;

type Item = HashMap<String, AttributeValue>;

/// A start's item as read: its request, the item's version, and when its instance was
/// created in it.
pub(crate) struct Stored {
    pub(crate) record: RequestRecord,
    version: u64,
    pub(crate) created_at: Option<DateTime<Utc>>,
}

fn stored(op: &'static str, item: RequestItem) -> Result<Stored, BackendError> {
    let version = item.version;
    let created_at = domain(op, item.created_at())?;
    Ok(Stored {
        record: domain(op, item.into_record())?,
        version,
        created_at,
    })
}

/// An entry of a listing page: a start's request id (its item read after), or an instance
/// item written before a start was one item.
enum Listed {
    Start(String),
    Item(Box<Instance>),
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

    /// Reads a start's item: its request record, the item's version, and when its instance
    /// was created in it.
    async fn read_request(
        &self,
        op: &'static str,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<Stored>, BackendError> {
        let Some(item) = self.get(op, request_key(tenant, request_id), "R").await? else {
            return Ok(None);
        };
        Ok(Some(stored(op, from_item(op, item)?)?))
    }

    /// Requests by id, in one batch read per 100 (never a read each): the starts of an
    /// audit window, and the requests of a listing's instance items written before a start
    /// was one item. A request removed by its TTL is simply absent.
    pub(crate) async fn starts_by_id(
        &self,
        op: &'static str,
        tenant: &str,
        request_ids: &[String],
    ) -> Result<HashMap<String, Stored>, BackendError> {
        let mut found = HashMap::new();
        let mut request_ids = request_ids.to_vec();
        request_ids.sort_unstable();
        request_ids.dedup();
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
                    let start = stored(op, from_item(op, item)?)?;
                    found.insert(start.record.request_id.clone(), start);
                }
                pending = out.unprocessed_keys;
            }
        }
        Ok(found)
    }

    /// Writes a start's item back over the version it was read at: false when another writer
    /// got there first.
    async fn put_stored(&self, op: &'static str, stored: &Stored) -> Result<bool, BackendError> {
        let item = RequestItem::new(
            &stored.record,
            stored.version + 1,
            self.retention_days,
            stored.created_at,
        );
        let item = to_item(op, &domain(op, item)?)?;
        self.put_versioned(op, item, Some(stored.version)).await
    }

    /// The request of the start whose instance id is `instance_id`, from `gsi4`.
    async fn start_by_instance(
        &self,
        op: &'static str,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Option<String>, BackendError> {
        let Some(partition) = start_of(tenant, instance_id) else {
            return Ok(None);
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi4")
            .key_condition_expression("gsi4pk = :p AND gsi4sk = :i")
            .expression_attribute_values(":p", s(partition))
            .expression_attribute_values(":i", s(instance_id))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(out.items.unwrap_or_default().into_iter().find_map(|item| {
            let (owner, id) = crate::items::request_of(item.get("pk")?.as_s().ok()?).ok()?;
            (owner == tenant).then_some(id)
        }))
    }

    /// Up to `limit` entries of one listing partition after `cursor`, newest first, each
    /// with its sort key: request ids from `gsi5`, instance items from `gsi2`.
    async fn listing_page(
        &self,
        op: &'static str,
        index: &'static str,
        partition: String,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, Listed)>, BackendError> {
        let (pk, sk) = (format!("{index}pk"), format!("{index}sk"));
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .expression_attribute_values(":p", s(partition));
        query = match cursor {
            None => query.key_condition_expression(format!("{pk} = :p")),
            Some(c) => query
                .key_condition_expression(format!("{pk} = :p AND {sk} < :c"))
                .expression_attribute_values(":c", s(c)),
        };
        let out = query.send().await.map_err(|e| classify(op, e))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let order = item
                    .get(&sk)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .ok_or_else(|| {
                        BackendError::permanent(op, format!("a listing entry has no {sk}"))
                    })?;
                let listed = if index == "gsi2" {
                    Listed::Item(Box::new(domain(
                        op,
                        from_item::<InstanceItem>(op, item)?.into_instance(),
                    )?))
                } else {
                    let pk = item
                        .get("pk")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default();
                    let (_, id) = domain(op, crate::items::request_of(&pk))?;
                    Listed::Start(id)
                };
                Ok((order, listed))
            })
            .collect()
    }

    /// Up to `limit` starts of one `gsi1` partition (pending, or runs by deadline) due before
    /// `older_than`, each with its sort key.
    pub(crate) async fn due_in(
        &self,
        op: &'static str,
        partition: String,
        older_than: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, RequestRecord)>, BackendError> {
        let items = self
            .query_pages(op, Some(limit), || {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi1")
                    .key_condition_expression("gsi1pk = :p AND gsi1sk < :c")
                    .expression_attribute_values(":p", s(partition.clone()))
                    .expression_attribute_values(":c", s(stamp(older_than)))
            })
            .await?;
        items
            .into_iter()
            .map(|item| {
                let order = item
                    .get("gsi1sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let record = domain(op, from_item::<RequestItem>(op, item)?.into_record())?;
                Ok((order, record))
            })
            .collect()
    }

    /// Every item a query answers, page after page (at most `limit`, when given).
    pub(crate) async fn query_pages(
        &self,
        op: &'static str,
        limit: Option<usize>,
        query: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, BackendError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut page = query().set_exclusive_start_key(start);
            if let Some(limit) = limit {
                page = page.limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX));
            }
            let out = page.send().await.map_err(|e| classify(op, e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() || limit.is_some_and(|limit| items.len() >= limit) {
                return Ok(items);
            }
        }
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
        self.query_pages(op, None, || {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p AND begins_with(sk, :s)")
                .expression_attribute_values(":p", s(pk.clone()))
                .expression_attribute_values(":s", s(prefix))
                .consistent_read(true)
        })
        .await
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
            &domain(OP, RequestItem::new(record, 1, self.retention_days, None))?,
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
            let Some(mut stored) = self.read_request(OP, tenant, request_id).await? else {
                return Ok(UpdateOutcome::NotFound);
            };
            if let Err(GuardFailed(current)) = stored.record.apply(update) {
                return Ok(UpdateOutcome::Skipped(current));
            }
            if self.put_stored(OP, &stored).await? {
                self.settle_slot(OP, &stored.record).await?;
                return Ok(UpdateOutcome::Applied);
            }
        }
        Err(BackendError::retryable(
            OP,
            "too many concurrent updates of this request",
        ))
    }

    /// One versioned put of the start's item: its instance created in it (`created_at`),
    /// its request marked by `update`, and its entry in the workflow's listing. A redelivery
    /// finds `created_at` set and creates nothing.
    async fn create_instance(
        &self,
        instance: &Instance,
        update: &RequestUpdate,
    ) -> Result<Creation, BackendError> {
        const OP: &str = "store.create_instance";
        for _ in 0..MAX_RACES {
            let Some(mut stored) = self
                .read_request(OP, &instance.tenant, &instance.request_id)
                .await?
            else {
                return Err(BackendError::permanent(
                    OP,
                    format!("request {} has no record", instance.request_id),
                ));
            };
            if stored.record.instance_id != instance.instance_id {
                return Err(BackendError::permanent(
                    OP,
                    format!(
                        "request {} names instance {}, not {}",
                        instance.request_id, stored.record.instance_id, instance.instance_id
                    ),
                ));
            }
            // Its instance exists (the id is fixed at acceptance): created by another
            // delivery, or (an item written before a start was one item) an item of its own.
            if stored.created_at.is_some() || stored.record.status.has_instance() {
                return Ok(Creation::AlreadyExisted);
            }
            if matches!(
                stored.record.status,
                flowgate_core::model::RequestStatus::Waiting
                    | flowgate_core::model::RequestStatus::Skipped
            ) {
                // Held back by its limit: a copy of its message creates nothing.
                return Ok(Creation::AlreadyExisted);
            }
            match self.gate(OP, &mut stored, update).await? {
                runs::Gated::Admit => {}
                runs::Gated::HeldBack(creation) => return Ok(creation),
                runs::Gated::Raced => continue,
            }
            // The guard of a creation never fails: an instance makes its request CREATED.
            let _ = stored.record.apply(update);
            stored.created_at = Some(instance.created_at);
            if self.put_stored(OP, &stored).await? {
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
        if let Some(request_id) = self.start_by_instance(OP, tenant, instance_id).await? {
            let Some(stored) = self.read_request(OP, tenant, &request_id).await? else {
                return Ok(None);
            };
            if let Some(created_at) = stored.created_at {
                return Ok(Some(stored.record.instance(created_at)));
            }
            if !stored.record.status.has_instance() {
                return Ok(None);
            }
        }
        // An instance item written before a start was one item.
        let Some(item) = self.get(OP, instance_key(tenant, instance_id), "I").await? else {
            return Ok(None);
        };
        let instance = domain(OP, from_item::<InstanceItem>(OP, item)?.into_instance())?;
        Ok(Some(
            match self.read_request(OP, tenant, &instance.request_id).await? {
                Some(stored) => instance.with_dispatch(&stored.record),
                None => instance,
            },
        ))
    }

    /// A workflow's instances, newest first: the keys of each listing shard from the cursor
    /// on, merged in order, with the partition of instance items written before the shards;
    /// then the page's starts in one batch read.
    async fn list_instances(
        &self,
        tenant: &str,
        workflow: &str,
        limit: usize,
        after: Option<&InstanceCursor>,
    ) -> Result<Vec<Instance>, BackendError> {
        const OP: &str = "store.list_instances";
        let cursor = after.map(|c| instance_order(c.created_at, &c.instance_id));
        let shards = listing_partitions(tenant, workflow)
            .into_iter()
            .map(|partition| ("gsi5", partition))
            .chain([("gsi2", instances_of(tenant, workflow))]);
        let reads = shards.map(|(index, partition)| {
            let cursor = cursor.clone();
            async move { self.listing_page(OP, index, partition, cursor, limit).await }
        });
        let mut found: Vec<(String, Listed)> = Vec::new();
        for page in futures_util::future::join_all(reads).await {
            found.extend(page?);
        }
        found.sort_by(|a, b| b.0.cmp(&a.0));
        found.truncate(limit);
        let ids: Vec<String> = found
            .iter()
            .map(|(_, listed)| match listed {
                Listed::Start(id) => id.clone(),
                Listed::Item(i) => i.request_id.clone(),
            })
            .collect();
        let starts = self.starts_by_id(OP, tenant, &ids).await?;
        let mut page = Vec::with_capacity(found.len());
        for (_, listed) in found {
            match listed {
                // Removed by its TTL since the index was read: gone from the listing too.
                Listed::Start(id) => {
                    let Some(start) = starts.get(&id) else {
                        continue;
                    };
                    let created_at = start.created_at.ok_or_else(|| {
                        BackendError::permanent(OP, format!("listed start {id} has no created_at"))
                    })?;
                    page.push(start.record.instance(created_at));
                }
                Listed::Item(i) => page.push(match starts.get(&i.request_id) {
                    Some(start) => i.with_dispatch(&start.record),
                    None => *i,
                }),
            }
        }
        Ok(page)
    }

    /// The requests the reconciler owes something, due before `older_than`, oldest first:
    /// every shard of the pending index read, and merged.
    async fn list_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        const OP: &str = "store.list_pending";
        let reads = pending_partitions()
            .into_iter()
            .map(|partition| self.due_in(OP, partition, older_than, limit));
        let mut found: Vec<(String, RequestRecord)> = Vec::new();
        for read in futures_util::future::join_all(reads).await {
            found.extend(read?);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found
            .into_iter()
            .take(limit)
            .map(|(_, record)| record)
            .collect())
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
    /// The unfinished runs with a time-out, from their `gsi1` partitions by deadline.
    async fn overdue_runs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, BackendError> {
        self.runs_past_deadline(now, limit).await
    }

    async fn release_waiting(
        &self,
        tenant: &str,
        workflow: &str,
        slot: &flowgate_core::runs::Slot,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        self.release(tenant, workflow, slot).await
    }

    async fn expire_requests(
        &self,
        _before: DateTime<Utc>,
        _limit: usize,
    ) -> Result<usize, BackendError> {
        Ok(0)
    }
}
