//! The [`Store`] port over the SQLite file.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use flowgate_core::model::{Instance, InstanceCursor, RequestRecord, RequestStatus, Workflow};
use flowgate_core::ports::{
    AuditFacts, AuditGroup, Creation, Enqueued, Outbox, PendingRequest, RequestUpdate, Store,
    UpdateOutcome, Upsert,
};
use flowgate_core::record::{GuardFailed, bound_history};
use flowgate_core::{BackendError, StoreError};

use crate::Embedded;
use crate::codec::{self, INSTANCE_COLS, REQUEST_COLS, WORKFLOW_COLS, at, micros};

/// The keys of up to `?2` finished requests last changed before `?1`, oldest first. The first
/// terms are the partial index `requests_expiry`'s, so it serves the scan; the last keeps a
/// hand-off owed, whatever its `pending_since`.
const EXPIRED: &str = "SELECT tenant, request_id FROM requests \
     WHERE pending_since IS NULL AND status IN ('CREATED', 'DISPATCHED', 'ARCHIVED') \
     AND updated_at < ?1 AND (status <> 'CREATED' OR dispatch IS NULL) \
     ORDER BY updated_at LIMIT ?2";

fn load_request(
    conn: &Connection,
    tenant: &str,
    request_id: &str,
) -> rusqlite::Result<Option<RequestRecord>> {
    let sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE tenant = ?1 AND request_id = ?2");
    conn.prepare_cached(&sql)?
        .query_row(params![tenant, request_id], codec::request)
        .optional()
}

/// Reads a request, applies `update` by the core rule, and writes back what changed.
fn apply_update(
    conn: &Connection,
    tenant: &str,
    request_id: &str,
    update: &RequestUpdate,
) -> rusqlite::Result<UpdateOutcome> {
    let Some(mut record) = load_request(conn, tenant, request_id)? else {
        return Ok(UpdateOutcome::NotFound);
    };
    if let Err(GuardFailed(current)) = record.apply(update) {
        return Ok(UpdateOutcome::Skipped(current));
    }
    let history = codec::to_json(&record.history)?;
    let dispatch = record.dispatch.as_ref().map(codec::to_json).transpose()?;
    conn.prepare_cached(
        "UPDATE requests SET status = ?3, attempts = ?4, last_error = ?5, updated_at = ?6, \
         pending_since = ?7, history = ?8, dispatch = ?9 WHERE tenant = ?1 AND request_id = ?2",
    )?
    .execute(params![
        tenant,
        request_id,
        record.status.as_str(),
        record.attempts,
        record.last_error,
        micros(record.updated_at),
        record.pending_since.map(micros),
        history,
        dispatch,
    ])?;
    Ok(UpdateOutcome::Applied)
}

#[async_trait]
impl Store for Embedded {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<Upsert, BackendError> {
        let w = workflow.clone();
        let schema = serde_json::to_string(&w.params_schema)
            .map_err(|e| BackendError::permanent("store.put_workflow", e))?;
        let target = w.target.as_ref().map(ToString::to_string);
        let (tenant, code) = (workflow.tenant.clone(), workflow.code.clone());
        let outcome = self
            .db
            .write(move |conn| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM workflows WHERE tenant = ?1 AND code = ?2")?
                    .exists(params![w.tenant, w.code])?;
                conn.prepare_cached(
                    "INSERT INTO workflows (tenant, code, name, online, params_schema, version, \
                     created_at, updated_at, ds_code, ds_project_code, target) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (tenant, code) DO UPDATE SET name = excluded.name, \
                     online = excluded.online, params_schema = excluded.params_schema, \
                     version = version + 1, updated_at = excluded.updated_at, \
                     ds_code = excluded.ds_code, ds_project_code = excluded.ds_project_code, \
                     target = excluded.target",
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
        let r = record.clone();
        let outbox = outbox.cloned();
        let with_outbox = outbox.is_some();
        let mut history = r.history.clone();
        let mut pending_since = r.pending_since;
        if let Some(o) = &outbox {
            flowgate_core::record::append(&mut history, o.event.clone());
            pending_since = Some(o.event.at);
        }
        bound_history(&mut history);
        let history = serde_json::to_string(&history)
            .map_err(|e| BackendError::permanent("store.create_request", e))?;
        let spec = serde_json::to_string(&r.spec)
            .map_err(|e| BackendError::permanent("store.create_request", e))?;
        let dispatch = r
            .dispatch
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| BackendError::permanent("store.create_request", e))?;
        let outcome = self
            .db
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO requests (tenant, request_id, instance_id, idempotency_key, \
                         fingerprint, spec, status, attempts, last_error, accepted_at, \
                         updated_at, pending_since, history, dispatch) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                         ON CONFLICT (tenant, request_id) DO NOTHING",
                    )?
                    .execute(params![
                        r.tenant,
                        r.request_id,
                        r.instance_id,
                        r.idempotency_key,
                        r.fingerprint,
                        spec,
                        r.status.as_str(),
                        r.attempts,
                        r.last_error,
                        micros(r.accepted_at),
                        micros(r.updated_at),
                        pending_since.map(micros),
                        history,
                        dispatch,
                    ])?;
                if inserted == 0 {
                    // The loser learns the winner's record in the same transaction.
                    return load_request(conn, &r.tenant, &r.request_id);
                }
                if let Some(outbox) = &outbox {
                    crate::queue::insert_message(conn, &outbox.envelope, micros(outbox.event.at))?;
                }
                Ok(None)
            })
            .await
            .map_err(|e| e.into_backend("store.create_request"))?;
        match outcome {
            None if with_outbox => {
                self.sent.notify_one();
                Ok(Enqueued::Yes)
            }
            None => Ok(Enqueued::No),
            Some(existing) => Err(StoreError::AlreadyExists {
                existing: Box::new(existing),
            }),
        }
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
        self.db
            .write(move |conn| apply_update(conn, &tenant, &request_id, &u))
            .await
            .map_err(|e| e.into_backend("store.update_request"))
    }

    async fn create_instance(
        &self,
        instance: &Instance,
        update: &RequestUpdate,
    ) -> Result<Creation, BackendError> {
        let (i, update) = (instance.clone(), update.clone());
        let params_json = serde_json::to_string(&i.params)
            .map_err(|e| BackendError::permanent("store.create_instance", e))?;
        let outcome = self
            .db
            .write(move |conn| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM requests WHERE tenant = ?1 AND request_id = ?2")?
                    .exists(params![i.tenant, i.request_id])?;
                if !exists {
                    return Ok(None);
                }
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO instances (tenant, instance_id, request_id, workflow, params, \
                         priority, schedule_time, status, created_at, logical_date) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'CREATED', ?8, ?9) \
                         ON CONFLICT (tenant, instance_id) DO NOTHING",
                    )?
                    .execute(params![
                        i.tenant,
                        i.instance_id,
                        i.request_id,
                        i.workflow,
                        params_json,
                        codec::enum_text(&i.priority),
                        i.schedule_time.map(micros),
                        micros(i.created_at),
                        i.logical_date.map(micros),
                    ])?;
                if inserted == 0 {
                    return Ok(Some(Creation::AlreadyExisted));
                }
                apply_update(conn, &i.tenant, &i.request_id, &update)?;
                Ok(Some(Creation::Created))
            })
            .await
            .map_err(|e| e.into_backend("store.create_instance"))?;
        outcome.ok_or_else(|| {
            BackendError::permanent(
                "store.create_instance",
                format!("request {} has no record", instance.request_id),
            )
        })
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
                    "SELECT {INSTANCE_COLS} FROM instances WHERE tenant = ?1 AND instance_id = ?2"
                );
                conn.prepare_cached(&sql)?
                    .query_row(params![tenant, instance_id], codec::instance)
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
                // The first page starts after a position later than any instance.
                let (at, id) = after.unwrap_or((i64::MAX, String::new()));
                let sql = format!(
                    "SELECT {INSTANCE_COLS} FROM instances WHERE tenant = ?1 AND workflow = ?2 \
                     AND (created_at, instance_id) < (?3, ?4) \
                     ORDER BY created_at DESC, instance_id DESC LIMIT ?5"
                );
                conn.prepare_cached(&sql)?
                    .query_map(
                        params![tenant, workflow, at, id, limit as i64],
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
                let sql = format!(
                    "SELECT {REQUEST_COLS} FROM requests WHERE (status = 'ACCEPTED' \
                     OR (status = 'CREATED' AND pending_since IS NOT NULL)) \
                     AND COALESCE(pending_since, accepted_at) < ?1 \
                     ORDER BY COALESCE(pending_since, accepted_at) LIMIT ?2"
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

    async fn expire_requests(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, BackendError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .write(move |conn| {
                let sql = format!("DELETE FROM requests WHERE (tenant, request_id) IN ({EXPIRED})");
                conn.prepare_cached(&sql)?
                    .execute(params![micros(before), limit])
            })
            .await
            .map_err(|e| e.into_backend("store.expire_requests"))
    }
}

/// A tenant's requests accepted in a window (`?1` tenant, `?2` from, `?3` to), read by
/// the `requests_by_accepted` index, each with its workflow and whether its instance row
/// exists.
const WINDOW: &str = "FROM requests r \
     LEFT JOIN instances i ON i.tenant = r.tenant AND i.instance_id = r.instance_id \
     WHERE r.tenant = ?1 AND r.accepted_at >= ?2 AND r.accepted_at < ?3";

/// The audit's groups: (workflow, status, past the cutoff `?4`, instance found, count).
const AUDIT_GROUPS: &str = "SELECT json_extract(r.spec, '$.workflow'), r.status, \
     COALESCE(r.pending_since, r.accepted_at) <= ?4, i.instance_id IS NOT NULL, COUNT(*)";

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
            "SELECT r.request_id, json_extract(r.spec, '$.workflow'), \
             COALESCE(r.pending_since, r.accepted_at) {WINDOW} AND r.status = 'ACCEPTED' \
             AND COALESCE(r.pending_since, r.accepted_at) <= ?4 ORDER BY 3 LIMIT ?5"
        ))?
        .query_map(values, |row| {
            Ok(PendingRequest {
                request_id: row.get(0)?,
                workflow: row.get(1)?,
                since: at(row, 2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let missing_instances = conn
        .prepare_cached(&format!(
            "SELECT r.request_id {WINDOW} AND r.status IN ('CREATED', 'DISPATCHED') \
             AND i.instance_id IS NULL LIMIT ?5"
        ))?
        .query_map(values, |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(AuditFacts {
        groups,
        overdue,
        missing_instances,
        instances_checked: true,
    })
}

#[cfg(test)]
mod tests {
    use crate::{Embedded, EmbeddedConfig};

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
            plan.iter()
                .any(|step| step.contains("requests_by_accepted")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN r")),
            "{plan:?}"
        );
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
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", super::EXPIRED))?;
                let rows = stmt.query_map([0i64, 10], |row| row.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await
            .expect("a plan");
        assert!(
            plan.iter().any(|step| step.contains("requests_expiry")),
            "{plan:?}"
        );
    }
}
