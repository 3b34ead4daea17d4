//! The audit on DynamoDB: a tenant's requests by the hour they were accepted, in `gsi3`,
//! spread over [`AUDIT_SHARDS`] partitions an hour. A window is read as its hours' shards,
//! each a range of the sort key; nothing else of the table is read. The index carries only
//! what the audit counts (its keys, the workflow, the status and the pending time), and
//! instances are not looked up (a read each): a request's status is taken at its word,
//! which the transactional creation keeps true.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::task::JoinSet;

use flowgate_core::BackendError;
use flowgate_core::model::RequestStatus;
use flowgate_core::ports::{AuditFacts, AuditGroup, PendingRequest};

use super::{DynamoStore, Item, s};
use crate::error::classify;
use crate::items::{AUDIT_SHARDS, accepted_in, stamp};

const OP: &str = "store.audit";

/// How many partitions are read at once.
const CONCURRENT_READS: usize = 16;

/// One request as the index shows it.
struct Seen {
    request_id: String,
    workflow: String,
    status: RequestStatus,
    since: DateTime<Utc>,
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, BackendError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| {
            BackendError::permanent(
                OP,
                format!(
                    "an audit index item has no {name}: {:?}",
                    item.get("gsi3sk")
                ),
            )
        })
}

fn time(item: &Item, name: &str) -> Result<DateTime<Utc>, BackendError> {
    let value = text(item, name)?;
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| BackendError::permanent(OP, format!("{name} {value:?}: {e}")))
}

fn seen(item: &Item) -> Result<Seen, BackendError> {
    let status = text(item, "status")?;
    Ok(Seen {
        request_id: text(item, "request_id")?.to_owned(),
        workflow: text(item, "workflow")?.to_owned(),
        status: RequestStatus::parse(status).ok_or_else(|| {
            BackendError::permanent(OP, format!("{status:?} is not a request status"))
        })?,
        since: match item.get("pending_since") {
            Some(_) => time(item, "pending_since")?,
            None => time(item, "accepted_at")?,
        },
    })
}

impl DynamoStore {
    /// Every request of one partition accepted in `[from, to)`.
    async fn accepted_between(
        &self,
        partition: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Seen>, BackendError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi3")
                .key_condition_expression("gsi3pk = :p AND gsi3sk BETWEEN :a AND :b")
                .expression_attribute_values(":p", s(partition.clone()))
                .expression_attribute_values(":a", s(stamp(from)))
                .expression_attribute_values(":b", s(stamp(to)))
                .projection_expression("request_id, workflow, #s, accepted_at, pending_since")
                .expression_attribute_names("#s", "status")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify(OP, e))?;
            for item in out.items.unwrap_or_default() {
                let one = seen(&item)?;
                // BETWEEN takes `to` itself; the window leaves it out.
                if time(&item, "accepted_at")? < to {
                    found.push(one);
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }

    /// The audit's facts of `tenant`'s window.
    pub async fn audit_items(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<AuditFacts, BackendError> {
        let hour = TimeDelta::hours(1);
        let first = from
            .duration_trunc(hour)
            .map_err(|e| BackendError::permanent(OP, e))?;
        let mut partitions = Vec::new();
        let mut at = first;
        while at < to {
            partitions.extend((0..AUDIT_SHARDS).map(|shard| accepted_in(tenant, at, shard)));
            at += hour;
        }
        let mut reads = JoinSet::new();
        let mut seen = Vec::new();
        for partition in partitions {
            if reads.len() >= CONCURRENT_READS {
                seen.extend(joined(&mut reads).await?);
            }
            let store = self.clone();
            reads.spawn(async move { store.accepted_between(partition, from, to).await });
        }
        while !reads.is_empty() {
            seen.extend(joined(&mut reads).await?);
        }
        Ok(facts(seen, cutoff, limit))
    }
}

async fn joined(
    reads: &mut JoinSet<Result<Vec<Seen>, BackendError>>,
) -> Result<Vec<Seen>, BackendError> {
    match reads.join_next().await {
        Some(Ok(read)) => read,
        Some(Err(e)) => Err(BackendError::permanent(OP, e)),
        None => Ok(Vec::new()),
    }
}

/// The groups and the overdue list of what the index showed.
fn facts(seen: Vec<Seen>, cutoff: DateTime<Utc>, limit: usize) -> AuditFacts {
    let mut groups: HashMap<(String, RequestStatus, bool), u64> = HashMap::new();
    let mut overdue = Vec::new();
    for one in seen {
        let past = one.since <= cutoff;
        if one.status == RequestStatus::Accepted && past {
            overdue.push(PendingRequest {
                request_id: one.request_id,
                workflow: one.workflow.clone(),
                since: one.since,
            });
        }
        *groups.entry((one.workflow, one.status, past)).or_default() += 1;
    }
    overdue.sort_by_key(|p| p.since);
    overdue.truncate(limit);
    AuditFacts {
        groups: groups
            .into_iter()
            .map(|((workflow, status, past_grace), count)| AuditGroup {
                workflow,
                instance: status.has_instance(),
                status,
                past_grace,
                count,
            })
            .collect(),
        overdue,
        missing_instances: Vec::new(),
        instances_checked: false,
    }
}
