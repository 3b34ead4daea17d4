//! The audit on DynamoDB: a tenant's starts by the hour their instance id was minted (at
//! acceptance), in `gsi4`, spread over [`AUDIT_SHARDS`] partitions an hour and sorted by
//! instance id (time-ordered). A window is read as its hours' shards, each a range of the
//! sort key, and then the starts' items, a hundred to a batch read. The index holds only
//! keys, so that no later write of a start touches it; a start's status is its item's, in
//! which its instance is created. Requests written before `gsi4` are read from `gsi3`,
//! which carries what the audit counts.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::task::JoinSet;

use flowgate_core::BackendError;
use flowgate_core::model::RequestStatus;
use flowgate_core::ports::{AuditFacts, AuditGroup, PendingRequest};

use super::{DynamoStore, Item, s};
use crate::items::{AUDIT_SHARDS, accepted_in, request_of, stamp, started_in};

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
        let items = self
            .query_pages(OP, None, || {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi3")
                    .key_condition_expression("gsi3pk = :p AND gsi3sk BETWEEN :a AND :b")
                    .expression_attribute_values(":p", s(partition.clone()))
                    .expression_attribute_values(":a", s(stamp(from)))
                    .expression_attribute_values(":b", s(stamp(to)))
                    .projection_expression("request_id, workflow, #s, accepted_at, pending_since")
                    .expression_attribute_names("#s", "status")
            })
            .await?;
        let mut found = Vec::new();
        for item in items {
            // BETWEEN takes `to` itself; the window leaves it out.
            if time(&item, "accepted_at")? < to {
                found.push(seen(&item)?);
            }
        }
        Ok(found)
    }

    /// The request ids of one `gsi4` partition whose instance ids were minted in
    /// `[from, to]` (to the millisecond).
    async fn started_between(
        &self,
        tenant: String,
        partition: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, BackendError> {
        let items = self
            .query_pages(OP, None, || {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi4")
                    .key_condition_expression("gsi4pk = :p AND gsi4sk BETWEEN :a AND :b")
                    .expression_attribute_values(":p", s(partition.clone()))
                    .expression_attribute_values(":a", s(minted_bound(from)))
                    .expression_attribute_values(":b", s(minted_bound(to)))
            })
            .await?;
        items
            .iter()
            .map(|item| {
                let pk = text(item, "pk")?;
                match request_of(pk) {
                    Ok((owner, id)) if owner == tenant => Ok(id),
                    _ => Err(BackendError::permanent(
                        OP,
                        format!("{pk:?} is not a request of {tenant}"),
                    )),
                }
            })
            .collect()
    }

    /// What `gsi4` holds of `tenant`'s window: the starts whose ids were minted around it,
    /// read item by item, kept where they were accepted in it.
    async fn started_window(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Seen>, BackendError> {
        // An id is minted within moments of its acceptance; read a margin either side, and
        // keep what the acceptance time puts in the window.
        let (low, high) = (from - MINT_MARGIN, to + MINT_MARGIN);
        let mut partitions = Vec::new();
        for hour in hours(low, high)? {
            partitions.extend((0..AUDIT_SHARDS).map(|shard| started_in(tenant, hour, shard)));
        }
        let mut reads = JoinSet::new();
        let mut ids = Vec::new();
        for partition in partitions {
            if reads.len() >= CONCURRENT_READS {
                ids.extend(joined(&mut reads).await?);
            }
            let (store, tenant) = (self.clone(), tenant.to_owned());
            reads.spawn(async move { store.started_between(tenant, partition, low, high).await });
        }
        while !reads.is_empty() {
            ids.extend(joined(&mut reads).await?);
        }
        let starts = self.starts_by_id(OP, tenant, &ids).await?;
        if starts.len() != ids.len() {
            // An index entry whose item is gone was removed by its TTL meanwhile.
            tracing::debug!(
                indexed = ids.len(),
                read = starts.len(),
                "audit: items expired"
            );
        }
        Ok(starts
            .into_values()
            .map(|start| start.record)
            .filter(|r| r.accepted_at >= from && r.accepted_at < to)
            .map(|r| Seen {
                since: r.pending_since.unwrap_or(r.accepted_at),
                workflow: r.spec.workflow,
                request_id: r.request_id,
                status: r.status,
            })
            .collect())
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
        let mut partitions = Vec::new();
        for hour in hours(from, to)? {
            partitions.extend((0..AUDIT_SHARDS).map(|shard| accepted_in(tenant, hour, shard)));
        }
        let mut reads = JoinSet::new();
        let mut seen = self.started_window(tenant, from, to).await?;
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

/// How far from its acceptance an instance id may have been minted.
const MINT_MARGIN: TimeDelta = TimeDelta::seconds(5);

/// Every hour that `[from, to)` touches, each as its first instant.
fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>, BackendError> {
    let hour = TimeDelta::hours(1);
    let mut at = from
        .duration_trunc(hour)
        .map_err(|e| BackendError::permanent(OP, e))?;
    let mut all = Vec::new();
    while at < to {
        all.push(at);
        at += hour;
    }
    Ok(all)
}

/// The start of every UUIDv7 text minted at `at` (to the millisecond): its time is the
/// first 12 hex digits, so ids sort by it.
fn minted_bound(at: DateTime<Utc>) -> String {
    let ms = format!("{:012x}", at.timestamp_millis().max(0));
    format!("{}-{}-", &ms[..8], &ms[8..])
}

async fn joined<T: Send + 'static>(
    reads: &mut JoinSet<Result<Vec<T>, BackendError>>,
) -> Result<Vec<T>, BackendError> {
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
