//! Concurrency slots and run deadlines on DynamoDB.
//!
//! - A slot group's holders are one item, `T#{tenant}#SLOT#{group}`, with the request ids
//!   holding its slots in a string set: a start claims a slot with a conditional `ADD` (the
//!   set is smaller than the limit, or already holds it) and gives it back with a `DELETE`.
//! - A waiting start is in `gsi1` under `WAIT#{tenant}#{group}`, sorted by priority rank,
//!   then acceptance: the head of that partition is released first. A release claims the
//!   head's slot, then moves it `WAITING` → `ACCEPTED` with a versioned put, so a start is
//!   released once whatever runs it at the same time; the caller sends its message (and the
//!   reconciler re-sends one whose send failed: a released start is pending).
//! - An unfinished run with a time-out is in `gsi1` under `RUNDUE#NN`, sorted by deadline.
//!
//! Only starts of a workflow with a limit or a time-out pay for any of it.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use flowgate_core::BackendError;
use flowgate_core::model::{RequestRecord, RequestStatus};
use flowgate_core::ports::{Creation, RequestUpdate, Store, UpdateOutcome};
use flowgate_core::runs::{self, Gate, OnLimit, Slot};

use super::{DynamoStore, Stored, is_condition_failure, s};
use crate::error::classify;
use crate::items::{request_of, run_due_partitions, slot_key, waiting_in};

/// The most starts one release lets go (each one a claim, a read and a put).
const MAX_RELEASES: usize = 25;

/// What the gate decided for a start at creation.
pub(super) enum Gated {
    /// Create it.
    Admit,
    /// It was written `WAITING` or `SKIPPED`: this is the answer.
    HeldBack(Creation),
    /// Another writer changed the start meanwhile: read it again.
    Raced,
}

impl DynamoStore {
    /// The requests holding `group`'s slots.
    async fn holders(
        &self,
        op: &'static str,
        tenant: &str,
        group: &str,
    ) -> Result<Vec<String>, BackendError> {
        let item = self.get(op, slot_key(tenant, group), "S").await?;
        Ok(item
            .and_then(|mut i| i.remove("holders"))
            .and_then(|h| h.as_ss().ok().cloned())
            .unwrap_or_default())
    }

    /// Claims a slot of `group` for `request_id`: false when every slot is held by others.
    async fn claim(
        &self,
        op: &'static str,
        tenant: &str,
        group: &str,
        request_id: &str,
        limit: u32,
    ) -> Result<bool, BackendError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(slot_key(tenant, group)))
            .key("sk", s("S"))
            .update_expression("ADD holders :r")
            .condition_expression(
                "attribute_not_exists(holders) OR size(holders) < :limit OR contains(holders, :id)",
            )
            .expression_attribute_values(":r", AttributeValue::Ss(vec![request_id.to_owned()]))
            .expression_attribute_values(":id", s(request_id))
            .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => Err(classify(op, e)),
        }
    }

    /// Gives `request_id`'s slot of `group` back.
    pub(super) async fn give_back(
        &self,
        op: &'static str,
        tenant: &str,
        group: &str,
        request_id: &str,
    ) -> Result<(), BackendError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(slot_key(tenant, group)))
            .key("sk", s("S"))
            .update_expression("DELETE holders :r")
            .expression_attribute_values(":r", AttributeValue::Ss(vec![request_id.to_owned()]))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(())
    }

    /// After a write: a start done with its run gives its slot back.
    pub(super) async fn settle_slot(
        &self,
        op: &'static str,
        record: &RequestRecord,
    ) -> Result<(), BackendError> {
        let Some(slot) = record.spec.policy.as_ref().and_then(|p| p.slot.as_ref()) else {
            return Ok(());
        };
        if !record.run_over() {
            return Ok(());
        }
        let group = slot.group(&record.spec.workflow);
        self.give_back(op, &record.tenant, &group, &record.request_id)
            .await
    }

    /// The first starts in line for `group` (the index lags: a start just released may
    /// still show; its status says so once read).
    async fn first_waiting(
        &self,
        op: &'static str,
        tenant: &str,
        group: &str,
    ) -> Result<Vec<String>, BackendError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", s(waiting_in(tenant, group)))
            .limit(5)
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let pk = item.get("pk")?.as_s().ok()?.clone();
                request_of(&pk).ok().map(|(_, id)| id)
            })
            .collect())
    }

    /// The gate a start under a limit meets at creation: a slot it holds (released to it),
    /// or a free one with nobody in line, admits it; otherwise it waits or is skipped.
    pub(super) async fn gate(
        &self,
        op: &'static str,
        stored: &mut Stored,
        creation: &RequestUpdate,
    ) -> Result<Gated, BackendError> {
        let record = &stored.record;
        let Some(slot) = record.spec.policy.as_ref().and_then(|p| p.slot.clone()) else {
            return Ok(Gated::Admit);
        };
        let (tenant, request_id) = (record.tenant.clone(), record.request_id.clone());
        let group = slot.group(&record.spec.workflow);
        let holders = self.holders(op, &tenant, &group).await?;
        if holders.contains(&request_id) {
            return Ok(Gated::Admit);
        }
        let mut held = holders.len() as u64;
        let mut ahead = 0;
        if held < u64::from(slot.limit) {
            ahead = self
                .first_waiting(op, &tenant, &group)
                .await?
                .iter()
                .filter(|id| **id != request_id)
                .count() as u64;
            if ahead == 0 {
                if self
                    .claim(op, &tenant, &group, &request_id, slot.limit)
                    .await?
                {
                    return Ok(Gated::Admit);
                }
                held = u64::from(slot.limit);
            }
        }
        let attempts = creation.set_attempts.unwrap_or(stored.record.attempts);
        let update = match runs::gate(&slot, held, ahead) {
            Gate::Admit => return Ok(Gated::Admit),
            Gate::Wait(reason) => runs::waiting_update(reason, attempts),
            Gate::Skip(reason) => runs::skipped_update(RequestStatus::Accepted, reason),
        };
        if stored.record.apply(&update).is_err() {
            return Ok(Gated::HeldBack(Creation::AlreadyExisted));
        }
        if !self.put_stored(op, stored).await? {
            return Ok(Gated::Raced);
        }
        let reason = update.event.detail.clone();
        if stored.record.status == RequestStatus::Skipped {
            return Ok(Gated::HeldBack(Creation::Skipped(reason)));
        }
        if slot.on_limit == OnLimit::QueueLatest {
            self.supersede(op, &tenant, &group, &request_id).await?;
        }
        Ok(Gated::HeldBack(Creation::Waiting(reason)))
    }

    /// `queue_latest`: the other starts waiting in `group` give way to `newest`.
    async fn supersede(
        &self,
        op: &'static str,
        tenant: &str,
        group: &str,
        newest: &str,
    ) -> Result<(), BackendError> {
        let older = self
            .query_pages(op, None, || {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi1")
                    .key_condition_expression("gsi1pk = :p")
                    .expression_attribute_values(":p", s(waiting_in(tenant, group)))
            })
            .await?;
        for item in older {
            let Some((_, id)) = item
                .get("pk")
                .and_then(|pk| pk.as_s().ok())
                .and_then(|pk| request_of(pk).ok())
            else {
                continue;
            };
            if id == newest {
                continue;
            }
            let update = runs::skipped_update(RequestStatus::Waiting, runs::SUPERSEDED.to_owned());
            self.update_request(tenant, &id, &update).await?;
        }
        Ok(())
    }

    /// Releases the starts waiting for `slot` while its slots are free: each one claims its
    /// slot, then leaves `WAITING`.
    pub(super) async fn release(
        &self,
        tenant: &str,
        workflow: &str,
        slot: &Slot,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        const OP: &str = "store.release_waiting";
        let group = slot.group(workflow);
        let mut released = Vec::new();
        for _ in 0..MAX_RELEASES {
            let holders = self.holders(OP, tenant, &group).await?;
            if holders.len() as u64 >= u64::from(slot.limit) {
                break;
            }
            let line = self.first_waiting(OP, tenant, &group).await?;
            let Some(head) = line.into_iter().find(|id| !holders.contains(id)) else {
                break;
            };
            if !self.claim(OP, tenant, &group, &head, slot.limit).await? {
                break;
            }
            let update = runs::released_update("a slot freed: released for creation");
            match self.update_request(tenant, &head, &update).await? {
                UpdateOutcome::Applied => {
                    if let Some(stored) = self.read_request(OP, tenant, &head).await? {
                        released.push(stored.record);
                    }
                }
                // Skipped meanwhile (superseded), or gone: its claim goes back.
                UpdateOutcome::Skipped(status) if status != RequestStatus::Accepted => {
                    self.give_back(OP, tenant, &group, &head).await?;
                }
                UpdateOutcome::Skipped(_) => {}
                UpdateOutcome::NotFound => self.give_back(OP, tenant, &group, &head).await?,
            }
        }
        Ok(released)
    }

    /// The starts whose run is past its deadline at `now`, most overdue first.
    pub(super) async fn runs_past_deadline(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, BackendError> {
        const OP: &str = "store.overdue_runs";
        let mut due = Vec::new();
        for partition in run_due_partitions() {
            for (order, record) in self.due_in(OP, partition, now, limit).await? {
                due.push((order, (record.tenant, record.request_id)));
            }
        }
        due.sort();
        due.truncate(limit);
        Ok(due.into_iter().map(|(_, pair)| pair).collect())
    }
}
