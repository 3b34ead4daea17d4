//! The [`Store`] port over the SQLite file.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use flowgate_core::model::{Instance, InstanceCursor, RequestRecord, RequestStatus, Workflow};
use flowgate_core::ports::{
    AuditFacts, AuditGroup, Creation, Enqueued, NewRequest, Outbox, PendingRequest, RequestUpdate,
    Store, UpdateOutcome, Upsert,
};
use flowgate_core::record::{GuardFailed, bound_history};
use flowgate_core::{BackendError, StoreError};

use crate::Embedded;
use crate::codec::{self, START_COLS, WORKFLOW_COLS, at, micros};
use crate::compact;
use crate::handoff::Queued;
use crate::queue::{LIVE, LIVE_KEY, us};
use crate::row::write_back;

/// The finished starts last changed before `?1`, at most `?2`, oldest first: the partial
/// index `starts_expiry` serves the scan; the `CREATED` term keeps a hand-off owed, whatever
/// its `pending_since`, and a start holding a run slot (its run unfinished) is kept.
const EXPIRED_STARTS: &str = "SELECT seq FROM starts \
     WHERE pending_since IS NULL AND status IN ('CREATED', 'DISPATCHED', 'ARCHIVED', 'SKIPPED') \
     AND updated_at < ?1 AND (status <> 'CREATED' OR dispatch IS NULL) \
     AND NOT EXISTS (SELECT 1 FROM run_slots WHERE run_slots.seq = starts.seq) \
     ORDER BY updated_at LIMIT ?2";

use crate::codec::Loaded;

/// The start of (tenant, request id), if it has a request (retention keeps only the
/// instance of an expired one).
pub(crate) fn load_start(
    conn: &Connection,
    tenant: &str,
    request_id: &str,
) -> rusqlite::Result<Option<Loaded>> {
    let sql = format!(
        "SELECT {START_COLS} FROM starts WHERE tenant = ?1 AND request_id = ?2 \
         AND status <> 'EXPIRED'"
    );
    conn.prepare_cached(&sql)?
        .query_row(params![tenant, compact::id(request_id)], |row| {
            Ok(Loaded {
                record: codec::request(row)?,
                created: row.get::<_, Option<i64>>(14)?.is_some(),
                seq: row.get(15)?,
            })
        })
        .optional()
}

fn load_request(
    conn: &Connection,
    tenant: &str,
    request_id: &str,
) -> rusqlite::Result<Option<RequestRecord>> {
    Ok(load_start(conn, tenant, request_id)?.map(|l| l.record))
}

/// Reads a request, applies `update` by the core rule, and writes back what changed.
fn apply_update(
    conn: &Connection,
    tenant: &str,
    request_id: &str,
    update: &RequestUpdate,
) -> rusqlite::Result<(UpdateOutcome, Option<i64>)> {
    let Some(Loaded {
        seq, mut record, ..
    }) = load_start(conn, tenant, request_id)?
    else {
        return Ok((UpdateOutcome::NotFound, None));
    };
    if let Err(GuardFailed(current)) = record.apply(update) {
        return Ok((UpdateOutcome::Skipped(current), None));
    }
    let settled = write_back(conn, seq, &record, None)?;
    crate::runs::settle(conn, seq, &record)?;
    Ok((UpdateOutcome::Applied, settled))
}

/// Creates `instance` and applies `update` to its start, unless it exists: the creation, and
/// the row whose delivery it settles; `None` when the start has no request.
fn create_one(
    conn: &Connection,
    instance: &Instance,
    update: &RequestUpdate,
) -> rusqlite::Result<Option<(Creation, Option<i64>)>> {
    let Some(Loaded {
        seq,
        mut record,
        created,
    }) = load_start(conn, &instance.tenant, &instance.request_id)?
    else {
        return Ok(None);
    };
    if created {
        return Ok(Some((Creation::AlreadyExisted, None)));
    }
    if matches!(
        record.status,
        RequestStatus::Waiting | RequestStatus::Skipped
    ) {
        // Held back by its limit: a copy of its message creates nothing.
        return Ok(Some((Creation::AlreadyExisted, None)));
    }
    if let Some(held_back) = crate::runs::gate(conn, seq, &mut record, update)? {
        return Ok(Some((held_back, Some(seq))));
    }
    // The core rule decides; a guard that fails leaves the start as it is (its instance is
    // not made without its request moving on).
    if record.apply(update).is_err() {
        return Ok(Some((Creation::AlreadyExisted, None)));
    }
    let settled = write_back(conn, seq, &record, Some(instance.created_at))?;
    crate::runs::occupy(conn, seq, &record, instance.created_at)?;
    Ok(Some((Creation::Created, settled)))
}

#[async_trait]
impl Store for Embedded {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<Upsert, BackendError> {
        let w = workflow.clone();
        let schema = serde_json::to_string(&w.params_schema)
            .map_err(|e| BackendError::permanent("store.put_workflow", e))?;
        let target = w.target.as_ref().map(ToString::to_string);
        let runs = (!w.runs.is_empty())
            .then(|| serde_json::to_string(&w.runs))
            .transpose()
            .map_err(|e| BackendError::permanent("store.put_workflow", e))?;
        let (tenant, code) = (workflow.tenant.clone(), workflow.code.clone());
        let outcome = self
            .db
            .write(move |conn| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM workflows WHERE tenant = ?1 AND code = ?2")?
                    .exists(params![w.tenant, w.code])?;
                conn.prepare_cached(
                    "INSERT INTO workflows (tenant, code, name, online, params_schema, version, \
                     created_at, updated_at, ds_code, ds_project_code, target, runs) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (tenant, code) DO UPDATE SET name = excluded.name, \
                     online = excluded.online, params_schema = excluded.params_schema, \
                     version = version + 1, updated_at = excluded.updated_at, \
                     ds_code = excluded.ds_code, ds_project_code = excluded.ds_project_code, \
                     target = excluded.target, runs = excluded.runs",
                )?
                .execute(params![
                    w.tenant,
                    w.code,
                    w.name,
                    w.online,
                    schema,
                    micros(w.updated_at),
                    w.ds_code,
                    w.ds_project_code,
                    target,
                    runs,
                ])?;
                Ok(if exists {
                    Upsert::Updated
                } else {
                    Upsert::Created
                })
            })
            .await
            .map_err(|e| e.into_backend("store.put_workflow"));
        // Forgotten after the write, whatever its outcome: the next start reads the row.
        self.workflows.forget(&tenant, &code);
        outcome
    }

    async fn get_workflow(
        &self,
        tenant: &str,
        code: &str,
    ) -> Result<Option<Workflow>, BackendError> {
        if let Some(cached) = self.workflows.get(tenant, code) {
            return Ok(cached);
        }
        let read_at = std::time::Instant::now();
        let (t, c) = (tenant.to_owned(), code.to_owned());
        let workflow = self
            .db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {WORKFLOW_COLS} FROM workflows WHERE tenant = ?1 AND code = ?2"
                );
                conn.prepare_cached(&sql)?
                    .query_row(params![t, c], codec::workflow)
                    .optional()
            })
            .await
            .map_err(|e| e.into_backend("store.get_workflow"))?;
        self.workflows.put(tenant, code, read_at, workflow.clone());
        Ok(workflow)
    }

    async fn workflow_by_ds_code(
        &self,
        tenant: &str,
        ds_code: i64,
    ) -> Result<Option<Workflow>, BackendError> {
        let tenant = tenant.to_owned();
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {WORKFLOW_COLS} FROM workflows WHERE tenant = ?1 AND ds_code = ?2"
                );
                conn.prepare_cached(&sql)?
                    .query_row(params![tenant, ds_code], codec::workflow)
                    .optional()
            })
            .await
            .map_err(|e| e.into_backend("store.workflow_by_ds_code"))
    }

    async fn create_request(
        &self,
        record: &RequestRecord,
        outbox: Option<&Outbox>,
    ) -> Result<Enqueued, StoreError> {
        let row = self
            .start_row(record, outbox)
            .map_err(|e| BackendError::permanent(CREATE_OP, e))?;
        self.insert_starts(vec![row])
            .await
            .pop()
            .expect("one row in, one answer out")
    }

    async fn create_requests(&self, writes: &[NewRequest]) -> Vec<Result<Enqueued, StoreError>> {
        let encoded: Vec<_> = writes
            .iter()
            .map(|w| self.start_row(&w.record, Some(&w.outbox)))
            .collect();
        let rows = encoded.iter().filter(|e| e.is_ok()).count();
        let mut written = Vec::with_capacity(rows);
        let mut failed = Vec::new();
        for (at, row) in encoded.into_iter().enumerate() {
            match row {
                Ok(row) => written.push(row),
                Err(e) => failed.push((at, BackendError::permanent(CREATE_OP, e))),
            }
        }
        let mut answers = self.insert_starts(written).await;
        for (at, e) in failed {
            answers.insert(at, Err(e.into()));
        }
        answers
    }

    async fn get_request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<RequestRecord>, BackendError> {
        let (tenant, request_id) = (tenant.to_owned(), request_id.to_owned());
        self.db
            .read(move |conn| load_request(conn, &tenant, &request_id))
            .await
            .map_err(|e| e.into_backend("store.get_request"))
    }

    async fn update_request(
        &self,
        tenant: &str,
        request_id: &str,
        update: &RequestUpdate,
    ) -> Result<UpdateOutcome, BackendError> {
        let (tenant, request_id, u) = (tenant.to_owned(), request_id.to_owned(), update.clone());
        let (outcome, settled) = self
            .db
            .write(move |conn| apply_update(conn, &tenant, &request_id, &u))
            .await
            .map_err(|e| e.into_backend("store.update_request"))?;
        if let Some(seq) = settled {
            self.settled.insert(seq);
        }
        Ok(outcome)
    }

    async fn create_instance(
        &self,
        instance: &Instance,
        update: &RequestUpdate,
    ) -> Result<Creation, BackendError> {
        self.create_instances(&[(instance.clone(), update.clone())])
            .await
            .pop()
            .expect("one creation in, one answer out")
    }

    async fn create_instances(
        &self,
        creations: &[(Instance, RequestUpdate)],
    ) -> Vec<Result<Creation, BackendError>> {
        const OP: &str = "store.create_instance";
        let work = creations.to_vec();
        let written = self
            .db
            .write(move |conn| {
                work.iter()
                    .map(|(instance, update)| create_one(conn, instance, update))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(|e| e.into_backend(OP));
        let outcomes = match written {
            Ok(outcomes) => outcomes,
            Err(e) => return creations.iter().map(|_| Err(e.echo())).collect(),
        };
        outcomes
            .into_iter()
            .zip(creations)
            .map(|(outcome, (instance, _))| match outcome {
                Some((creation, settled)) => {
                    if let Some(seq) = settled {
                        self.settled.insert(seq);
                    }
                    Ok(creation)
                }
                None => Err(BackendError::permanent(
                    OP,
                    format!("request {} has no record", instance.request_id),
                )),
            })
            .collect()
    }

    async fn get_instance(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Option<Instance>, BackendError> {
        let (tenant, instance_id) = (tenant.to_owned(), instance_id.to_owned());
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {START_COLS} FROM starts WHERE tenant = ?1 AND instance_id = ?2 \
                     AND created_at IS NOT NULL"
                );
                conn.prepare_cached(&sql)?
                    .query_row(params![tenant, compact::id(&instance_id)], codec::instance)
                    .optional()
            })
            .await
            .map_err(|e| e.into_backend("store.get_instance"))
    }

    async fn list_instances(
        &self,
        tenant: &str,
        workflow: &str,
        limit: usize,
        after: Option<&InstanceCursor>,
    ) -> Result<Vec<Instance>, BackendError> {
        let (tenant, workflow) = (tenant.to_owned(), workflow.to_owned());
        let after = after.map(|c| (micros(c.created_at), c.instance_id.clone()));
        self.db
            .read(move |conn| {
                // Newest first, by (creation time, row). A page goes on after the cursor's
                // instance, found by its id; the first page starts after a position later
                // than any instance.
                let (at, id) = after.unwrap_or((i64::MAX, String::new()));
                let id = compact::id(&id);
                conn.prepare_cached(&list_instances_sql())?
                    .query_map(
                        params![tenant, workflow, at, id, limit as i64, i64::MAX],
                        codec::instance,
                    )?
                    .collect()
            })
            .await
            .map_err(|e| e.into_backend("store.list_instances"))
    }

    async fn list_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, BackendError> {
        self.db
            .read(move |conn| {
                // The live index: a start on the queue counts from when it is due (one
                // delivered in time is not overdue), any other from its pending time.
                let sql = format!(
                    "SELECT {START_COLS} FROM starts WHERE {LIVE} AND {LIVE_KEY} < ?1 \
                     ORDER BY {LIVE_KEY} LIMIT ?2"
                );
                conn.prepare_cached(&sql)?
                    .query_map(params![micros(older_than), limit as i64], codec::request)?
                    .collect()
            })
            .await
            .map_err(|e| e.into_backend("store.list_pending"))
    }

    async fn audit(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<AuditFacts, BackendError> {
        let tenant = tenant.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                let tx = conn.unchecked_transaction()?;
                let facts = audit_facts(
                    &tx,
                    &[&tenant, &micros(from), &micros(to), &micros(cutoff), &limit],
                )?;
                tx.finish()?;
                Ok(facts)
            })
            .await
            .map_err(|e| e.into_backend("store.audit"))
    }

    /// A finished start with an instance keeps it: only its request goes (its history,
    /// key and hand-off), and its key may be used again. One without an instance (an
    /// archived dead letter) goes whole.
    async fn quiet_runs(
        &self,
        quiet_since: DateTime<Utc>,
        after: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, BackendError> {
        self.db
            .read(move |conn| crate::runs::quiet(conn, quiet_since, after, limit))
            .await
            .map_err(|e| e.into_backend("store.quiet_runs"))
    }

    async fn overdue_runs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, BackendError> {
        self.db
            .read(move |conn| crate::runs::overdue(conn, now, limit))
            .await
            .map_err(|e| e.into_backend("store.overdue_runs"))
    }

    async fn expire_requests(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, BackendError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .write(move |conn| {
                let seqs: Vec<i64> = conn
                    .prepare_cached(EXPIRED_STARTS)?
                    .query_map(params![micros(before), limit], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for seq in &seqs {
                    let removed = conn
                        .prepare_cached("DELETE FROM starts WHERE seq = ?1 AND created_at IS NULL")?
                        .execute(params![seq])?;
                    if removed == 0 {
                        conn.prepare_cached(
                            "UPDATE starts SET status = 'EXPIRED', history = '[]', \
                             idempotency_key = NULL, last_error = NULL, dispatch = NULL, \
                             fingerprint = '' WHERE seq = ?1",
                        )?
                        .execute(params![seq])?;
                    }
                }
                Ok(seqs.len())
            })
            .await
            .map_err(|e| e.into_backend("store.expire_requests"))
    }
}

/// A tenant's requests accepted in a window (`?1` tenant, `?2` from, `?3` to), read by
/// the `starts_by_accepted` index, each with its workflow and whether its instance row
/// exists.
const WINDOW: &str = "FROM starts r \
     WHERE r.tenant = ?1 AND r.accepted_at >= ?2 AND r.accepted_at < ?3 \
     AND r.status <> 'EXPIRED'";

/// The audit's groups: (workflow, status, past the cutoff `?4`, instance found, count).
const AUDIT_GROUPS: &str = "SELECT r.workflow, r.status, \
     COALESCE(r.pending_since, r.accepted_at) <= ?4, r.created_at IS NOT NULL, COUNT(*)";

/// Reads the audit's facts of one window: `?1` tenant, `?2` from, `?3` to, `?4` cutoff,
/// `?5` limit of the lists.
fn audit_facts(
    conn: &rusqlite::Connection,
    values: &[&dyn rusqlite::ToSql; 5],
) -> rusqlite::Result<AuditFacts> {
    let groups = conn
        .prepare_cached(&format!("{AUDIT_GROUPS} {WINDOW} GROUP BY 1, 2, 3, 4"))?
        .query_map(&values[..4], |row| {
            let status: String = row.get(1)?;
            Ok(AuditGroup {
                workflow: row.get(0)?,
                status: RequestStatus::parse(&status).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        format!("a request's status {status:?} is not a status").into(),
                    )
                })?,
                past_grace: row.get(2)?,
                instance: row.get(3)?,
                count: row.get::<_, i64>(4)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let overdue = conn
        .prepare_cached(&format!(
            "SELECT r.request_id, r.workflow, \
             COALESCE(r.pending_since, r.accepted_at) {WINDOW} AND r.status = 'ACCEPTED' \
             AND COALESCE(r.pending_since, r.accepted_at) <= ?4 ORDER BY 3 LIMIT ?5"
        ))?
        .query_map(values, |row| {
            Ok(PendingRequest {
                request_id: compact::id_at(row, 0)?,
                workflow: row.get(1)?,
                since: at(row, 2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let missing_instances = conn
        .prepare_cached(&format!(
            "SELECT r.request_id {WINDOW} AND r.status IN ('CREATED', 'DISPATCHED') \
             AND r.created_at IS NULL LIMIT ?5"
        ))?
        .query_map(values, |row| compact::id_at(row, 0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(AuditFacts {
        groups,
        overdue,
        missing_instances,
        instances_checked: true,
    })
}

/// A page of a workflow's instances, newest first by (creation time, row), after the row
/// of instance `?4` created at `?3` (or, when no instance has that id, after every instance
/// created at `?3` and later); `?5` at most; `?6` is `i64::MAX`.
fn list_instances_sql() -> String {
    format!(
        "SELECT {START_COLS} FROM starts WHERE tenant = ?1 AND workflow = ?2 \
         AND created_at IS NOT NULL AND (created_at, seq) < (?3, COALESCE( \
         (SELECT seq FROM starts WHERE tenant = ?1 AND instance_id = ?4 \
         AND created_at IS NOT NULL), ?6)) \
         ORDER BY created_at DESC, seq DESC LIMIT ?5"
    )
}

const CREATE_OP: &str = "store.create_request";

/// A new start's row, encoded for the writer.
struct StartRow {
    r: RequestRecord,
    spec: String,
    history: String,
    dispatch: Option<String>,
    pending_since: Option<i64>,
    due_at: Option<i64>,
    deliveries: i64,
}

/// Where a new start's message goes once its row is durable.
struct Delivered<'a> {
    queue: Queued<'a>,
    envelope: Option<flowgate_core::ports::Envelope>,
}

impl Embedded {
    /// Encodes a new start's row: with its outbox, the request is its own message, handed
    /// to a consumer in this process in memory once durable (as its first delivery); the row
    /// is due again only if that delivery is not settled within the visibility timeout (a
    /// crash), when a receive finds it.
    fn start_row(
        &self,
        record: &RequestRecord,
        outbox: Option<&Outbox>,
    ) -> rusqlite::Result<(StartRow, Delivered<'_>)> {
        let mut history = record.history.clone();
        let mut pending_since = record.pending_since;
        if let Some(o) = outbox {
            flowgate_core::record::append(&mut history, o.event.clone());
            pending_since = Some(o.event.at);
        }
        bound_history(&mut history);
        let queue = match outbox {
            None => Queued::No,
            Some(o) => match self.handoff.reserve(&record.tenant) {
                Some(slot) => Queued::Handed(
                    slot,
                    micros(o.event.at) + us(self.config.visibility_timeout),
                ),
                None => Queued::Due(micros(o.event.at)),
            },
        };
        let (due_at, deliveries) = match &queue {
            Queued::No => (None, 0),
            Queued::Due(at) => (Some(*at), 0),
            Queued::Handed(_, at) => (Some(*at), 1),
        };
        let row = StartRow {
            r: record.clone(),
            spec: compact::spec(&record.spec)?,
            history: compact::history(&history, record.accepted_at)?,
            dispatch: record.dispatch.as_ref().map(codec::to_json).transpose()?,
            pending_since: pending_since.map(micros),
            due_at,
            deliveries,
        };
        let delivered = Delivered {
            queue,
            envelope: outbox.map(|o| o.envelope.clone()),
        };
        Ok((row, delivered))
    }

    /// Inserts new starts in one writer job (one transaction), each unless its (tenant,
    /// request id) is taken, and then hands those that carry their message to the consumer.
    async fn insert_starts(
        &self,
        starts: Vec<(StartRow, Delivered<'_>)>,
    ) -> Vec<Result<Enqueued, StoreError>> {
        if starts.is_empty() {
            return Vec::new();
        }
        let (values, rows): (Vec<StartRow>, Vec<Delivered>) = starts.into_iter().unzip();
        let written = self
            .db
            .write(move |conn| {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO starts (tenant, request_id, instance_id, idempotency_key, \
                     fingerprint, workflow, spec, status, attempts, last_error, \
                     accepted_at, updated_at, pending_since, history, dispatch, due_at, \
                     deliveries) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16, ?17) \
                     ON CONFLICT (tenant, request_id) WHERE status <> 'EXPIRED' DO NOTHING",
                )?;
                let mut outcomes = Vec::with_capacity(values.len());
                for v in values {
                    let r = &v.r;
                    let inserted = insert.execute(params![
                        r.tenant,
                        compact::id(&r.request_id),
                        compact::id(&r.instance_id),
                        r.idempotency_key,
                        compact::digest(&r.fingerprint),
                        r.spec.workflow,
                        v.spec,
                        r.status.as_str(),
                        r.attempts,
                        r.last_error,
                        micros(r.accepted_at),
                        micros(r.updated_at),
                        v.pending_since,
                        v.history,
                        v.dispatch,
                        v.due_at,
                        v.deliveries,
                    ])?;
                    outcomes.push(if inserted == 0 {
                        // The loser learns the winner's record in the same transaction.
                        Err(load_request(conn, &r.tenant, &r.request_id)?)
                    } else {
                        Ok(conn.last_insert_rowid())
                    });
                }
                Ok(outcomes)
            })
            .await;
        let outcomes = match written {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let e = e.into_backend(CREATE_OP);
                return rows.iter().map(|_| Err(e.echo().into())).collect();
            }
        };
        let mut any_queued = false;
        let answers = rows
            .into_iter()
            .zip(outcomes)
            .map(|(row, outcome)| match (outcome, row.queue) {
                (Ok(seq), Queued::Handed(slot, _)) => {
                    let envelope = row.envelope.as_ref().expect("handed only with an outbox");
                    self.handoff
                        .hand(slot, crate::queue::first_delivery(seq, envelope));
                    any_queued = true;
                    Ok(Enqueued::Yes)
                }
                (Ok(_), Queued::Due(_)) => {
                    any_queued = true;
                    Ok(Enqueued::Yes)
                }
                (Ok(_), Queued::No) => Ok(Enqueued::No),
                (Err(Some(existing)), _) => Err(StoreError::AlreadyExists {
                    existing: Box::new(existing),
                }),
                (Err(None), _) => Err(BackendError::retryable(
                    CREATE_OP,
                    "the request's key is taken by a start that is being removed; retry",
                )
                .into()),
            })
            .collect();
        if any_queued {
            self.sent.notify_one();
        }
        answers
    }
}

#[cfg(test)]
mod tests {
    use crate::{Embedded, EmbeddedConfig};

    /// A page of a workflow's instances is read from its index in order: no sort, no scan.
    #[tokio::test]
    async fn a_listing_reads_the_workflow_index_in_order() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("a store");
        let plan = store
            .db
            .read(|conn| {
                let sql = format!("EXPLAIN QUERY PLAN {}", super::list_instances_sql());
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(
                    rusqlite::params!["t", "w", 0i64, "i", 10i64, i64::MAX],
                    |row| row.get::<_, String>(3),
                )?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await
            .expect("a plan");
        assert!(
            plan.iter().any(|step| step.contains("starts_by_workflow")),
            "{plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|step| step.contains("TEMP B-TREE") || step.starts_with("SCAN starts")),
            "{plan:?}"
        );
    }

    /// An instance is found by its id through its index, never by a scan.
    #[tokio::test]
    async fn an_instance_is_found_by_its_index() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("a store");
        let plan = store
            .db
            .read(|conn| {
                let sql = format!(
                    "EXPLAIN QUERY PLAN SELECT {} FROM starts WHERE tenant = ?1 \
                     AND instance_id = ?2 AND created_at IS NOT NULL",
                    super::START_COLS
                );
                let mut stmt = conn.prepare(&sql)?;
                let rows =
                    stmt.query_map(rusqlite::params!["t", "i"], |row| row.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await
            .expect("a plan");
        assert!(
            plan.iter().any(|step| step.contains("starts_by_instance")),
            "{plan:?}"
        );
    }

    /// The audit reads a tenant's window by its index, never the whole table.
    #[tokio::test]
    async fn the_audit_reads_its_window_by_the_index() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("a store");
        let plan = store
            .db
            .read(|conn| {
                let sql = format!(
                    "EXPLAIN QUERY PLAN {} {} GROUP BY 1, 2, 3, 4",
                    super::AUDIT_GROUPS,
                    super::WINDOW
                );
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(rusqlite::params!["t", 0i64, 10i64, 5i64], |row| {
                    row.get::<_, String>(3)
                })?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await
            .expect("a plan");
        assert!(
            plan.iter().any(|step| step.contains("starts_by_accepted")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN r")),
            "{plan:?}"
        );
    }

    /// The queue's receive and the reconciler's scan read the live index, never the table.
    #[tokio::test]
    async fn the_queue_and_the_reconciler_read_the_live_index() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("a store");
        for sql in [
            format!(
                "SELECT seq FROM starts WHERE {} <= ?1 AND {} AND due_at IS NOT NULL \
                 ORDER BY {} LIMIT ?2",
                super::LIVE_KEY,
                super::LIVE,
                super::LIVE_KEY
            ),
            format!(
                "SELECT seq FROM starts WHERE {} AND {} < ?1 ORDER BY {} LIMIT ?2",
                super::LIVE,
                super::LIVE_KEY,
                super::LIVE_KEY
            ),
        ] {
            let plan = store
                .db
                .read(move |conn| {
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = stmt.query_map([0i64, 10], |row| row.get::<_, String>(3))?;
                    rows.collect::<rusqlite::Result<Vec<String>>>()
                })
                .await
                .expect("a plan");
            assert!(
                plan.iter().any(|step| step.contains("starts_live")),
                "{plan:?}"
            );
        }
    }

    /// The retention sweep reads the partial index, never the whole table (it runs on the
    /// writer thread, which a scan of a large file would hold for seconds).
    #[tokio::test]
    async fn the_retention_sweep_reads_its_index() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("a store");
        let plan = store
            .db
            .read(|conn| {
                let mut stmt =
                    conn.prepare(&format!("EXPLAIN QUERY PLAN {}", super::EXPIRED_STARTS))?;
                let rows = stmt.query_map([0i64, 10], |row| row.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await
            .expect("a plan");
        assert!(
            plan.iter().any(|step| step.contains("starts_expiry")),
            "{plan:?}"
        );
    }
}
