//! The [`Store`] port over the SQLite file.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use flowgate_core::model::{
    HistoryEvent, Instance, InstanceCursor, RequestRecord, RequestStatus, Workflow,
};
use flowgate_core::ports::{
    Creation, Enqueued, Outbox, RequestUpdate, Store, UpdateOutcome, Upsert,
};
use flowgate_core::{BackendError, StoreError};

use crate::Embedded;
use crate::codec::{self, INSTANCE_COLS, REQUEST_COLS, WORKFLOW_COLS, micros};

/// The most events a request's history keeps; past it the oldest after `accepted` go.
pub const MAX_HISTORY: usize = 100;

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

fn append_history(
    conn: &Connection,
    tenant: &str,
    request_id: &str,
    event: &HistoryEvent,
) -> rusqlite::Result<()> {
    let event = serde_json::to_string(event)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        "UPDATE requests SET history = json_insert(CASE WHEN json_array_length(history) >= ?4 \
         THEN json_remove(history, '$[1]') ELSE history END, '$[#]', json(?3)) \
         WHERE tenant = ?1 AND request_id = ?2",
    )?
    .execute(params![tenant, request_id, event, MAX_HISTORY as i64])?;
    Ok(())
}

fn current_status(
    conn: &Connection,
    tenant: &str,
    request_id: &str,
) -> rusqlite::Result<Option<RequestStatus>> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM requests WHERE tenant = ?1 AND request_id = ?2")?
        .query_row(params![tenant, request_id], |r| r.get(0))
        .optional()?;
    Ok(status.and_then(|s| RequestStatus::parse(&s)))
}

#[async_trait]
impl Store for Embedded {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<Upsert, BackendError> {
        let w = workflow.clone();
        let schema = serde_json::to_string(&w.params_schema)
            .map_err(|e| BackendError::permanent("store.put_workflow", e))?;
        self.db
            .write(move |conn| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM workflows WHERE tenant = ?1 AND code = ?2")?
                    .exists(params![w.tenant, w.code])?;
                conn.prepare_cached(
                    "INSERT INTO workflows (tenant, code, name, online, params_schema, version, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6) \
                     ON CONFLICT (tenant, code) DO UPDATE SET name = excluded.name, \
                     online = excluded.online, params_schema = excluded.params_schema, \
                     version = version + 1, updated_at = excluded.updated_at",
                )?
                .execute(params![
                    w.tenant,
                    w.code,
                    w.name,
                    w.online,
                    schema,
                    micros(w.updated_at)
                ])?;
                Ok(if exists {
                    Upsert::Updated
                } else {
                    Upsert::Created
                })
            })
            .await
            .map_err(|e| e.into_backend("store.put_workflow"))
    }

    async fn get_workflow(
        &self,
        tenant: &str,
        code: &str,
    ) -> Result<Option<Workflow>, BackendError> {
        let (tenant, code) = (tenant.to_owned(), code.to_owned());
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {WORKFLOW_COLS} FROM workflows WHERE tenant = ?1 AND code = ?2"
                );
                conn.prepare_cached(&sql)?
                    .query_row(params![tenant, code], codec::workflow)
                    .optional()
            })
            .await
            .map_err(|e| e.into_backend("store.get_workflow"))
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
            history.push(o.event.clone());
            pending_since = Some(o.event.at);
        }
        let history = serde_json::to_string(&history)
            .map_err(|e| BackendError::permanent("store.create_request", e))?;
        let spec = serde_json::to_string(&r.spec)
            .map_err(|e| BackendError::permanent("store.create_request", e))?;
        let outcome = self
            .db
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO requests (tenant, request_id, instance_id, idempotency_key, \
                         fingerprint, spec, status, attempts, last_error, accepted_at, \
                         updated_at, pending_since, history) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
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
            .write(move |conn| {
                let Some(current) = current_status(conn, &tenant, &request_id)? else {
                    return Ok(UpdateOutcome::NotFound);
                };
                if let Some(required) = u.only_if
                    && required != current
                {
                    return Ok(UpdateOutcome::Skipped(current));
                }
                let status = u.set_status.unwrap_or(current);
                // `pending_since` only means something while the request is pending.
                let pending = match (status, u.touch_pending) {
                    (RequestStatus::Accepted, true) => Some(Some(micros(u.event.at))),
                    (RequestStatus::Accepted, false) => None,
                    _ => Some(None),
                };
                conn.prepare_cached(
                    "UPDATE requests SET status = ?3, attempts = COALESCE(?4, attempts), \
                     last_error = COALESCE(?5, last_error), updated_at = ?6, \
                     pending_since = CASE WHEN ?7 THEN ?8 ELSE pending_since END \
                     WHERE tenant = ?1 AND request_id = ?2",
                )?
                .execute(params![
                    tenant,
                    request_id,
                    status.as_str(),
                    u.set_attempts,
                    u.set_last_error,
                    micros(u.event.at),
                    pending.is_some(),
                    pending.flatten(),
                ])?;
                append_history(conn, &tenant, &request_id, &u.event)?;
                Ok(UpdateOutcome::Applied)
            })
            .await
            .map_err(|e| e.into_backend("store.update_request"))
    }

    async fn create_instance(
        &self,
        instance: &Instance,
        event: &HistoryEvent,
    ) -> Result<Creation, BackendError> {
        let (i, event) = (instance.clone(), event.clone());
        let params_json = serde_json::to_string(&i.params)
            .map_err(|e| BackendError::permanent("store.create_instance", e))?;
        let outcome = self
            .db
            .write(move |conn| {
                if current_status(conn, &i.tenant, &i.request_id)?.is_none() {
                    return Ok(None);
                }
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO instances (tenant, instance_id, request_id, workflow, params, \
                         priority, schedule_time, status, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'SUBMITTED', ?8) \
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
                    ])?;
                if inserted == 0 {
                    return Ok(Some(Creation::AlreadyExisted));
                }
                conn.prepare_cached(
                    "UPDATE requests SET status = 'CREATED', pending_since = NULL, updated_at = ?3 \
                     WHERE tenant = ?1 AND request_id = ?2",
                )?
                .execute(params![i.tenant, i.request_id, micros(event.at)])?;
                append_history(conn, &i.tenant, &i.request_id, &event)?;
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
                    "SELECT {REQUEST_COLS} FROM requests WHERE status = 'ACCEPTED' \
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
}
