//! DynamoDB item shapes (mapped with serde_dynamo) and their keys.
//!
//! One table, keys `pk`/`sk`. A start is one item: its request, and its instance once
//! created (`created_at`). Its indexes, each spread over shards so that no partition key is
//! written by every start:
//! - `gsi1`, the pending requests by when they are due, only while the queue will not
//!   deliver one on its own (its send failed, or its hand-off is owed), over
//!   [`PENDING_SHARDS`] partitions;
//! - `gsi5` (keys only), a workflow's instances by creation time, over [`LISTING_SHARDS`]
//!   partitions a workflow, read back merged in order, then the page's items in one batch
//!   read;
//! - `gsi4` (keys only), a tenant's starts by the hour their instance id was minted (at
//!   acceptance) over [`AUDIT_SHARDS`] partitions, sorted by instance id: the audit reads a
//!   window of it, and `GET /v1/instances/{id}` finds a start by its instance id there, the
//!   partition being a function of the id. Written once, at acceptance.
//!
//! Items written before this layout (a request item and a separate instance item listed in
//! `gsi2`, `gsi3` for the audit, one `PENDING` partition) are still read.

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use flowgate_core::model::{
    Dispatch, HistoryEvent, Instance, InstanceStatus, Priority, RequestRecord, RequestStatus,
    Workflow,
};
use flowgate_core::record::bound_history;

/// The partition of pending requests in `gsi1` of items written before it was sharded.
pub const PENDING: &str = "PENDING";

/// How many partitions the pending requests are spread over in `gsi1`.
pub const PENDING_SHARDS: u32 = 16;

/// How many partitions one workflow's instances are spread over in `gsi5`: each takes a
/// sixteenth of the workflow's creations, so one workflow can create 16,000 a second
/// before a partition's 1,000 writes a second bind.
pub const LISTING_SHARDS: u32 = 16;

/// How many partitions one tenant's hour of starts is spread over in `gsi4` (and was in
/// `gsi3`): no partition takes more than this share of a tenant's starts.
pub const AUDIT_SHARDS: u32 = 32;

/// FNV-1a of an id, so that ids spread evenly over shards whatever they look like.
fn fnv(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The `gsi1` partition of a pending request.
pub fn pending_in(request_id: &str) -> String {
    format!("{PENDING}#{:02}", fnv(request_id) % PENDING_SHARDS)
}

/// Every `gsi1` partition the reconciler reads: each shard, and the one of older items.
pub fn pending_partitions() -> Vec<String> {
    (0..PENDING_SHARDS)
        .map(|shard| format!("{PENDING}#{shard:02}"))
        .chain([PENDING.to_owned()])
        .collect()
}

/// The `gsi1` partition of the starts waiting for one slot group of a tenant (in release
/// order by their sort key: priority rank, then acceptance).
pub fn waiting_in(tenant: &str, group: &str) -> String {
    format!("WAIT#{tenant}#{group}")
}

/// The `gsi1` partition of an unfinished run with a time-out (sorted by its deadline).
pub fn run_due_in(request_id: &str) -> String {
    format!("RUNDUE#{:02}", fnv(request_id) % PENDING_SHARDS)
}

/// Every `gsi1` partition of runs with a deadline.
pub fn run_due_partitions() -> Vec<String> {
    (0..PENDING_SHARDS)
        .map(|shard| format!("RUNDUE#{shard:02}"))
        .collect()
}

/// The item of one slot group's holders: the requests holding its slots.
pub fn slot_key(tenant: &str, group: &str) -> String {
    format!("T#{tenant}#SLOT#{group}")
}

/// Where a start sits in `gsi1`: owed work (the pending index), waiting for a slot, or an
/// unfinished run with a deadline (the reconciler's time-out sweep); none otherwise.
fn gsi1_of(
    r: &RequestRecord,
    owed: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
) -> Option<(String, String)> {
    if let Some(due) = owed {
        return Some((
            pending_in(&r.request_id),
            format!("{}#{}", stamp(due), r.request_id),
        ));
    }
    let policy = r.spec.policy.as_ref()?;
    if r.status == RequestStatus::Waiting {
        let slot = policy.slot.as_ref()?;
        let rank = flowgate_core::runs::rank(r.spec.priority);
        return Some((
            waiting_in(&r.tenant, &slot.group(&r.spec.workflow)),
            format!("{rank}#{}#{}", stamp(r.accepted_at), r.request_id),
        ));
    }
    let created = created_at.filter(|_| r.status.has_instance() && !r.run_over())?;
    let timeout = chrono::Duration::seconds(i64::try_from(policy.timeout?).ok()?);
    Some((
        run_due_in(&r.request_id),
        format!("{}#{}", stamp(created + timeout), r.request_id),
    ))
}

/// The `gsi3` partition of a request written before `gsi4`: its tenant, the hour it was
/// accepted, and a shard of its id.
pub fn accepted_in(tenant: &str, hour: DateTime<Utc>, shard: u32) -> String {
    format!("T#{tenant}#A#{}#{shard:02}", hour.format("%Y-%m-%dT%H"))
}

/// A request id's `gsi3` shard.
pub fn audit_shard(request_id: &str) -> u32 {
    fnv(request_id) % AUDIT_SHARDS
}

/// The `gsi4` partition of a start: its tenant, the hour its instance id was minted, and a
/// shard of that id.
pub fn started_in(tenant: &str, hour: DateTime<Utc>, shard: u32) -> String {
    format!("T#{tenant}#S#{}#{shard:02}", hour.format("%Y-%m-%dT%H"))
}

/// The hour an instance id was minted, if the id carries its time (UUIDv7 does).
pub fn minted_hour(instance_id: &str) -> Option<DateTime<Utc>> {
    let minted = flowgate_core::ids::minted_at(instance_id)?;
    minted.duration_trunc(TimeDelta::hours(1)).ok()
}

/// The `gsi4` partition that holds the start of `instance_id`, if the id carries its time.
pub fn start_of(tenant: &str, instance_id: &str) -> Option<String> {
    let hour = minted_hour(instance_id)?;
    Some(started_in(tenant, hour, fnv(instance_id) % AUDIT_SHARDS))
}

/// The `gsi5` partition of an instance: its workflow's, and a shard of its id.
pub fn listed_in(tenant: &str, workflow: &str, instance_id: &str) -> String {
    format!(
        "{}#{:02}",
        instances_of(tenant, workflow),
        fnv(instance_id) % LISTING_SHARDS
    )
}

/// Every `gsi5` partition of a workflow.
pub fn listing_partitions(tenant: &str, workflow: &str) -> Vec<String> {
    (0..LISTING_SHARDS)
        .map(|shard| format!("{}#{shard:02}", instances_of(tenant, workflow)))
        .collect()
}

/// A fixed-width, lexicographically ordered timestamp.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An item that does not read as what it should be: corrupt, or written by something else.
/// Never read as a default.
#[derive(Debug, thiserror::Error)]
#[error("item {key}: {what}")]
pub struct CorruptItem {
    /// The item's partition key.
    pub key: String,
    /// What does not read.
    pub what: String,
}

fn corrupt(key: &str, what: impl std::fmt::Display) -> CorruptItem {
    CorruptItem {
        key: key.to_owned(),
        what: what.to_string(),
    }
}

/// A stamp of one of the item's attributes, read back.
fn parse(key: &str, field: &str, text: &str) -> Result<DateTime<Utc>, CorruptItem> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(key, format!("{field} {text:?} is not a time: {e}")))
}

/// A JSON-text attribute of the item, read back.
fn json<T: serde::de::DeserializeOwned>(
    key: &str,
    field: &str,
    text: &str,
) -> Result<T, CorruptItem> {
    serde_json::from_str(text).map_err(|e| corrupt(key, format!("{field} does not read: {e}")))
}

/// A value written as JSON text.
fn text<T: serde::Serialize>(key: &str, field: &str, value: &T) -> Result<String, CorruptItem> {
    serde_json::to_string(value).map_err(|e| corrupt(key, format!("{field} does not write: {e}")))
}

/// The key of a workflow item.
pub fn workflow_key(tenant: &str, code: &str) -> String {
    format!("T#{tenant}#WF#{code}")
}

/// The key of the alias item that names the workflow carrying a DolphinScheduler code.
pub fn ds_alias_key(tenant: &str, ds_code: i64) -> String {
    format!("T#{tenant}#DS#{ds_code}")
}

/// The key of a request item.
pub fn request_key(tenant: &str, request_id: &str) -> String {
    format!("T#{tenant}#R#{request_id}")
}

/// The key of an instance item.
pub fn instance_key(tenant: &str, instance_id: &str) -> String {
    format!("T#{tenant}#I#{instance_id}")
}

/// The `gsi2` partition of a workflow's instance items written before a start was one
/// item, and the stem of its `gsi5` partitions.
pub fn instances_of(tenant: &str, workflow: &str) -> String {
    format!("T#{tenant}#W#{workflow}")
}

/// The `gsi2` sort key of an instance: newest first when read backwards.
pub fn instance_order(created_at: DateTime<Utc>, instance_id: &str) -> String {
    format!("{}#{instance_id}", stamp(created_at))
}

/// A workflow definition item. The schema is kept as JSON text so that any valid JSON
/// Schema (numbers of any precision, empty keys) round-trips exactly.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkflowItem {
    pub pk: String,
    pub sk: String,
    pub tenant: String,
    pub code: String,
    pub name: String,
    pub online: bool,
    pub params_schema: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_project_code: Option<i64>,
    /// The hand-off target as JSON text (it is client JSON, like the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Its run settings (time-out, concurrency) as JSON text; absent when it sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<String>,
}

impl WorkflowItem {
    pub fn new(w: &Workflow, version: u64, created_at: DateTime<Utc>) -> Self {
        Self {
            pk: workflow_key(&w.tenant, &w.code),
            sk: "WF".into(),
            tenant: w.tenant.clone(),
            code: w.code.clone(),
            name: w.name.clone(),
            online: w.online,
            params_schema: w.params_schema.to_string(),
            version,
            created_at: stamp(created_at),
            updated_at: stamp(w.updated_at),
            ds_code: w.ds_code,
            ds_project_code: w.ds_project_code,
            target: w.target.as_ref().map(ToString::to_string),
            runs: (!w.runs.is_empty()).then(|| serde_json::to_string(&w.runs).unwrap_or_default()),
        }
    }

    pub fn into_workflow(self) -> Result<Workflow, CorruptItem> {
        let key = self.pk;
        Ok(Workflow {
            params_schema: json(&key, "params_schema", &self.params_schema)?,
            created_at: parse(&key, "created_at", &self.created_at)?,
            updated_at: parse(&key, "updated_at", &self.updated_at)?,
            target: self
                .target
                .as_deref()
                .map(|t| json(&key, "target", t))
                .transpose()?,
            runs: self
                .runs
                .as_deref()
                .map(|t| json(&key, "runs", t))
                .transpose()?
                .unwrap_or_default(),
            tenant: self.tenant,
            code: self.code,
            name: self.name,
            online: self.online,
            version: self.version,
            ds_code: self.ds_code,
            ds_project_code: self.ds_project_code,
        })
    }
}

/// A start's item: its request record, with its history inline, and its instance once
/// created (`created_at`; the instance's fields are the request's spec).
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestItem {
    /// `T#{tenant}#R#{request_id}`: the tenant and the request id are read from it.
    pub pk: String,
    pub sk: String,
    /// Only on items the `gsi3` audit reads (written before `gsi4`, or whose instance id
    /// carries no time): that index projects them. Elsewhere the key says them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The payload's fingerprint: its first 128 bits on items written since a start was one
    /// item (`ids::same_payload`), all of it before.
    pub fingerprint: String,
    /// The workflow (also inside `spec`), on the items `gsi3` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The start spec as JSON text (params are client JSON), its absent values left out.
    pub spec: String,
    pub status: RequestStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub accepted_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    pub history: Vec<HistoryEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Dispatch>,
    /// Its instance's run as JSON text (its output is client JSON), once reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// When its instance was created, in this item; absent before, and on items written
    /// before a start was one item (their instance is an item of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Optimistic-concurrency version for read-modify-write updates.
    pub version: u64,
    /// Present only while the reconciler owes it something: the sparse pending index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    /// Present once its instance is created: the workflow's listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi5pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi5sk: Option<String>,
    /// Epoch seconds when DynamoDB may expire the finished start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// The audit's index of items written before `gsi4`, and of a start whose instance id
    /// carries no time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3sk: Option<String>,
    /// The tenant's starts by instance id (audit and instance lookups); set at acceptance,
    /// never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi4pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi4sk: Option<String>,
}

impl RequestItem {
    /// The item for a record (its instance created at `created_at`, if it is), with the
    /// index and TTL attributes its state implies.
    pub fn new(
        r: &RequestRecord,
        version: u64,
        retention_days: u32,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<Self, CorruptItem> {
        let due = r.pending_due();
        // An accepted request whose message was sent is delivered by the queue on its own:
        // it joins the pending index only once a send failed or the reconciler sent it.
        let owed = due.filter(|_| r.status != RequestStatus::Accepted || r.pending_since.is_some());
        let gsi1 = gsi1_of(r, owed, created_at);
        let mut history = r.history.clone();
        bound_history(&mut history);
        let pk = request_key(&r.tenant, &r.request_id);
        let start = start_of(&r.tenant, &r.instance_id);
        let audited_in_gsi3 = start.is_none();
        Ok(Self {
            spec: spec_text(&pk, &r.spec)?,
            pk,
            sk: "R".into(),
            tenant: audited_in_gsi3.then(|| r.tenant.clone()),
            request_id: audited_in_gsi3.then(|| r.request_id.clone()),
            instance_id: r.instance_id.clone(),
            idempotency_key: r.idempotency_key.clone(),
            fingerprint: r
                .fingerprint
                .get(..flowgate_core::ids::SHORT_FINGERPRINT)
                .unwrap_or(&r.fingerprint)
                .to_owned(),
            workflow: audited_in_gsi3.then(|| r.spec.workflow.clone()),
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            accepted_at: stamp(r.accepted_at),
            updated_at: stamp(r.updated_at),
            pending_since: r.pending_since.map(stamp),
            history,
            dispatch: r.dispatch.clone(),
            run: r
                .run
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| corrupt(&pk_of(r), format!("its run does not serialize: {e}")))?,
            created_at: created_at.map(stamp),
            version,
            gsi1pk: gsi1.as_ref().map(|(pk, _)| pk.clone()),
            gsi1sk: gsi1.map(|(_, sk)| sk),
            gsi5pk: created_at.map(|_| listed_in(&r.tenant, &r.spec.workflow, &r.instance_id)),
            gsi5sk: created_at.map(|at| instance_order(at, &r.instance_id)),
            // A dead request waits for an operator, and one owed a hand-off for the
            // consumer, so only finished ones expire.
            // A run holding a slot is not finished: its item stays until its run ends.
            ttl: (due.is_none()
                && (r.status.has_instance()
                    || matches!(r.status, RequestStatus::Archived | RequestStatus::Skipped))
                && (r.spec.policy.is_none() || r.run_over()))
            .then(|| expiry(r.updated_at, retention_days)),
            gsi3pk: start
                .is_none()
                .then(|| accepted_in(&r.tenant, r.accepted_at, audit_shard(&r.request_id))),
            gsi3sk: start
                .is_none()
                .then(|| format!("{}#{}", stamp(r.accepted_at), r.request_id)),
            gsi4sk: start.is_some().then(|| r.instance_id.clone()),
            gsi4pk: start,
        })
    }

    /// When its instance was created in this item, if it was.
    pub fn created_at(&self) -> Result<Option<DateTime<Utc>>, CorruptItem> {
        self.created_at
            .as_deref()
            .map(|t| parse(&self.pk, "created_at", t))
            .transpose()
    }

    pub fn into_record(self) -> Result<RequestRecord, CorruptItem> {
        let (tenant, request_id) = match (self.tenant, self.request_id) {
            (Some(tenant), Some(request_id)) => (tenant, request_id),
            _ => request_of(&self.pk)?,
        };
        let key = self.pk;
        Ok(RequestRecord {
            spec: json(&key, "spec", &self.spec)?,
            accepted_at: parse(&key, "accepted_at", &self.accepted_at)?,
            updated_at: parse(&key, "updated_at", &self.updated_at)?,
            pending_since: self
                .pending_since
                .as_deref()
                .map(|t| parse(&key, "pending_since", t))
                .transpose()?,
            tenant,
            request_id,
            instance_id: self.instance_id,
            idempotency_key: self.idempotency_key,
            fingerprint: self.fingerprint,
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error,
            history: self.history,
            dispatch: self.dispatch,
            run: self
                .run
                .as_deref()
                .map(|t| json(&key, "run", t))
                .transpose()?,
        })
    }
}

fn pk_of(r: &RequestRecord) -> String {
    request_key(&r.tenant, &r.request_id)
}

/// The tenant and request id a request item's key names.
pub fn request_of(pk: &str) -> Result<(String, String), CorruptItem> {
    pk.strip_prefix("T#")
        .and_then(|rest| rest.split_once("#R#"))
        .map(|(tenant, id)| (tenant.to_owned(), id.to_owned()))
        .ok_or_else(|| corrupt(pk, "the key names no tenant and request"))
}

/// A spec as JSON text without its absent (null) values, which read back as absent.
fn spec_text(key: &str, spec: &flowgate_core::model::StartSpec) -> Result<String, CorruptItem> {
    let mut value = serde_json::to_value(spec)
        .map_err(|e| corrupt(key, format!("spec does not write: {e}")))?;
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    text(key, "spec", &value)
}

/// When a finished request expires.
pub fn expiry(finished: DateTime<Utc>, retention_days: u32) -> i64 {
    finished.timestamp() + i64::from(retention_days) * 86_400
}

/// An instance item, as written before a start was one item: read, never written.
#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceItem {
    pub pk: String,
    pub sk: String,
    pub tenant: String,
    pub instance_id: String,
    pub request_id: String,
    pub workflow: String,
    pub params: String,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_time: Option<String>,
    pub status: InstanceStatus,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_date: Option<String>,
    pub gsi2pk: String,
    pub gsi2sk: String,
}

impl InstanceItem {
    pub fn new(i: &Instance) -> Result<Self, CorruptItem> {
        let pk = instance_key(&i.tenant, &i.instance_id);
        Ok(Self {
            params: text(&pk, "params", &i.params)?,
            pk,
            sk: "I".into(),
            tenant: i.tenant.clone(),
            instance_id: i.instance_id.clone(),
            request_id: i.request_id.clone(),
            workflow: i.workflow.clone(),
            priority: i.priority,
            schedule_time: i.schedule_time.map(stamp),
            status: i.status,
            created_at: stamp(i.created_at),
            logical_date: i.logical_date.map(stamp),
            gsi2pk: instances_of(&i.tenant, &i.workflow),
            gsi2sk: instance_order(i.created_at, &i.instance_id),
        })
    }

    pub fn into_instance(self) -> Result<Instance, CorruptItem> {
        let key = self.pk;
        Ok(Instance {
            params: json(&key, "params", &self.params)?,
            schedule_time: self
                .schedule_time
                .as_deref()
                .map(|t| parse(&key, "schedule_time", t))
                .transpose()?,
            created_at: parse(&key, "created_at", &self.created_at)?,
            logical_date: self
                .logical_date
                .as_deref()
                .map(|t| parse(&key, "logical_date", t))
                .transpose()?,
            tenant: self.tenant,
            instance_id: self.instance_id,
            request_id: self.request_id,
            workflow: self.workflow,
            priority: self.priority,
            status: self.status,
            dispatch: None,
            options: Default::default(),
            run: None,
            duration_ms: None,
            callback: None,
        })
    }
}

/// The size DynamoDB bills and limits an item by: attribute names plus values, by
/// DynamoDB's published rules (strings and binaries by UTF-8 length, numbers by digits,
/// one byte for booleans and nulls, three plus one per element for lists and maps).
pub fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    match value {
        V::S(s) => s.len(),
        V::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        V::Bool(_) | V::Null(_) => 1,
        V::L(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        V::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        V::Ss(set) => set.iter().map(String::len).sum(),
        V::Ns(set) => set.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        V::B(b) => b.as_ref().len(),
        V::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use flowgate_core::model::{EventKind, StartSpec};
    use flowgate_core::record::MAX_HISTORY;
    use serde_json::json;

    fn record(history: usize, detail: usize) -> RequestRecord {
        let now = Utc::now();
        RequestRecord {
            tenant: "default".into(),
            request_id: "67f07946-3186-5e3a-97d2-fa60e17ddc57".into(),
            instance_id: "01a20a88-26a7-72f8-ac1c-249792f1c9ac".into(),
            idempotency_key: Some("order-42".into()),
            fingerprint: "ab".repeat(32),
            spec: StartSpec {
                workflow: "orders".into(),
                params: json!({"amount": 3, "customer": "c-1234"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                priority: Priority::High,
                schedule_time: None,
                logical_date: None,
                schedule_id: None,
                backfill_id: None,
                options: Default::default(),
                dry_run: false,
                policy: None,
            },
            status: RequestStatus::Accepted,
            attempts: 0,
            last_error: None,
            accepted_at: now,
            updated_at: now,
            pending_since: Some(now),
            history: (0..history)
                .map(|i| HistoryEvent {
                    at: now,
                    kind: if i == 0 {
                        EventKind::Accepted
                    } else {
                        EventKind::DeliveryFailed
                    },
                    detail: "x".repeat(detail),
                    trace_id: None,
                })
                .collect(),
            dispatch: None,
            run: None,
        }
    }

    fn size(r: &RequestRecord) -> usize {
        item_size(
            &serde_dynamo::to_item(RequestItem::new(r, 1, 7, Some(r.updated_at)).expect("writes"))
                .expect("item"),
        )
    }

    #[test]
    fn a_typical_request_item_is_about_one_kilobyte() {
        let typical = record(3, 20);
        let bytes = size(&typical);
        println!("typical request item: {bytes} bytes");
        assert!((500..1500).contains(&bytes), "{bytes}");
    }

    #[test]
    fn history_is_bounded_inside_the_item_limit() {
        // Far more events than kept, each with an over-long detail.
        let worst = record(1_000, 10_000);
        let item = RequestItem::new(&worst, 1, 7, None).expect("writes");
        assert_eq!(item.history.len(), MAX_HISTORY);
        assert_eq!(
            item.history[0].kind,
            EventKind::Accepted,
            "the first event is kept"
        );
        let bytes = size(&worst);
        println!("worst-case request item: {bytes} bytes");
        assert!(
            bytes < 400 * 1024,
            "{bytes} bytes is over DynamoDB's 400 KB item limit"
        );
    }
}
