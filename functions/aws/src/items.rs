//! DynamoDB item shapes (mapped with serde_dynamo) and their keys.
//!
//! One table, keys `pk`/`sk`. Two sparse GSIs: `gsi1` lists pending requests by age for the
//! reconciler (only `ACCEPTED` requests carry `gsi1pk`/`gsi1sk`), `gsi2` lists a workflow's
//! instances newest first.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use flowgate_core::model::{
    Dispatch, HistoryEvent, Instance, InstanceStatus, Priority, RequestRecord, RequestStatus,
    Workflow,
};
use flowgate_core::record::bound_history;

/// The partition of pending requests in `gsi1`.
pub const PENDING: &str = "PENDING";

/// How many partitions one tenant's hour of accepted requests is spread over in `gsi3`: no
/// partition takes more than this share of a tenant's starts.
pub const AUDIT_SHARDS: u32 = 32;

/// The `gsi3` partition of a request: its tenant, the hour it was accepted, and a shard of
/// its id.
pub fn accepted_in(tenant: &str, hour: DateTime<Utc>, shard: u32) -> String {
    format!("T#{tenant}#A#{}#{shard:02}", hour.format("%Y-%m-%dT%H"))
}

/// A request id's `gsi3` shard: FNV-1a of the id, so that requests spread evenly whatever
/// their ids look like.
pub fn audit_shard(request_id: &str) -> u32 {
    let hash = request_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % AUDIT_SHARDS
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

/// The `gsi2` partition of a workflow's instances.
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

/// A request record item, with its history inline.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestItem {
    pub pk: String,
    pub sk: String,
    pub tenant: String,
    pub request_id: String,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    /// The workflow (also inside `spec`): the audit's index carries it. Absent on items
    /// written before the audit existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The start spec as JSON text (params are client JSON).
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
    /// Optimistic-concurrency version for read-modify-write updates.
    pub version: u64,
    /// Present only while pending (see `RequestRecord::pending_due`): the sparse index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    /// Epoch seconds when DynamoDB may expire the finished request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// The audit's index: the tenant's requests by the hour they were accepted, sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3sk: Option<String>,
}

impl RequestItem {
    /// The item for a record, with the index and TTL attributes its status implies.
    pub fn new(r: &RequestRecord, version: u64, retention_days: u32) -> Result<Self, CorruptItem> {
        let due = r.pending_due();
        let mut history = r.history.clone();
        bound_history(&mut history);
        let pk = request_key(&r.tenant, &r.request_id);
        Ok(Self {
            spec: text(&pk, "spec", &r.spec)?,
            pk,
            sk: "R".into(),
            tenant: r.tenant.clone(),
            request_id: r.request_id.clone(),
            instance_id: r.instance_id.clone(),
            idempotency_key: r.idempotency_key.clone(),
            fingerprint: r.fingerprint.clone(),
            workflow: Some(r.spec.workflow.clone()),
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            accepted_at: stamp(r.accepted_at),
            updated_at: stamp(r.updated_at),
            pending_since: r.pending_since.map(stamp),
            history,
            dispatch: r.dispatch.clone(),
            version,
            gsi1pk: due.map(|_| PENDING.to_owned()),
            gsi1sk: due.map(|due| format!("{}#{}", stamp(due), r.request_id)),
            // A dead request waits for an operator, and one owed a hand-off for the
            // consumer, so only finished ones expire.
            ttl: (due.is_none()
                && (r.status.has_instance() || r.status == RequestStatus::Archived))
                .then(|| expiry(r.updated_at, retention_days)),
            gsi3pk: Some(accepted_in(
                &r.tenant,
                r.accepted_at,
                audit_shard(&r.request_id),
            )),
            gsi3sk: Some(format!("{}#{}", stamp(r.accepted_at), r.request_id)),
        })
    }

    pub fn into_record(self) -> Result<RequestRecord, CorruptItem> {
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
            tenant: self.tenant,
            request_id: self.request_id,
            instance_id: self.instance_id,
            idempotency_key: self.idempotency_key,
            fingerprint: self.fingerprint,
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error,
            history: self.history,
            dispatch: self.dispatch,
        })
    }
}

/// When a finished request expires.
pub fn expiry(finished: DateTime<Utc>, retention_days: u32) -> i64 {
    finished.timestamp() + i64::from(retention_days) * 86_400
}

/// An instance item.
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
        })
    }
}

#[cfg(test)]
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

#[cfg(test)]
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
        }
    }

    fn size(r: &RequestRecord) -> usize {
        item_size(&serde_dynamo::to_item(RequestItem::new(r, 1, 7).expect("writes")).expect("item"))
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
        let item = RequestItem::new(&worst, 1, 7).expect("writes");
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
