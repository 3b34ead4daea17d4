//! The [`Schedules`] port over the SQLite file: the `schedules` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use flowgate_core::BackendError;
use flowgate_core::ports::{ScheduleRecord, Schedules};

use crate::Embedded;
use crate::codec::{at, micros, opt_at, to_json};

const COLUMNS: &str = "tenant, workflow, id, body, version, created_at, updated_at, last_fired, \
     next_due, last_error, next_fires";

fn schedule(row: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    let body: String = row.get(3)?;
    Ok(ScheduleRecord {
        tenant: row.get(0)?,
        workflow: row.get(1)?,
        id: row.get(2)?,
        definition: serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        version: row.get::<_, i64>(4)? as u64,
        created_at: at(row, 5)?,
        updated_at: at(row, 6)?,
        last_fired: opt_at(row, 7)?,
        next_due: opt_at(row, 8)?,
        last_error: row.get(9)?,
        next_fires: match row.get::<_, Option<String>>(10)? {
            None => None,
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, e.into())
            })?),
        },
    })
}

#[async_trait]
impl Schedules for Embedded {
    async fn put_schedule(
        &self,
        s: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        let s = s.clone();
        self.db
            .write(move |conn| {
                let body = to_json(&s.definition)?;
                let next_fires = s.next_fires.as_ref().map(to_json).transpose()?;
                let values = params![
                    s.tenant,
                    s.workflow,
                    s.id,
                    body,
                    s.version as i64,
                    micros(s.created_at),
                    micros(s.updated_at),
                    s.last_fired.map(micros),
                    s.next_due.map(micros),
                    s.last_error,
                    next_fires,
                    s.definition.paused,
                    expected.map(|v| v as i64),
                ];
                let changed = match expected {
                    None => conn
                        .prepare_cached(&format!(
                            "INSERT INTO schedules ({COLUMNS}, paused) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                             ON CONFLICT (tenant, workflow, id) DO NOTHING"
                        ))?
                        .execute(&values[..12])?,
                    Some(_) => conn
                        .prepare_cached(
                            "UPDATE schedules SET body = ?4, version = ?5, updated_at = ?7, \
                             last_fired = ?8, next_due = ?9, last_error = ?10, next_fires = ?11, \
                             paused = ?12 \
                             WHERE tenant = ?1 AND workflow = ?2 AND id = ?3 AND version = ?13 \
                             AND created_at = ?6",
                        )?
                        .execute(values)?,
                };
                Ok(changed == 1)
            })
            .await
            .map_err(|e| e.into_backend("schedules.put"))
    }

    async fn advance_schedule(
        &self,
        s: &ScheduleRecord,
        expected: u64,
    ) -> Result<bool, BackendError> {
        let s = s.clone();
        self.db
            .write(move |conn| {
                let next_fires = s.next_fires.as_ref().map(to_json).transpose()?;
                let changed = conn
                    .prepare_cached(
                        "UPDATE schedules SET version = ?4, updated_at = ?5, last_fired = ?6, \
                         next_due = ?7, last_error = ?8, next_fires = ?9 \
                         WHERE tenant = ?1 AND workflow = ?2 AND id = ?3 AND version = ?10",
                    )?
                    .execute(params![
                        s.tenant,
                        s.workflow,
                        s.id,
                        s.version as i64,
                        micros(s.updated_at),
                        s.last_fired.map(micros),
                        s.next_due.map(micros),
                        s.last_error,
                        next_fires,
                        expected as i64,
                    ])?;
                Ok(changed == 1)
            })
            .await
            .map_err(|e| e.into_backend("schedules.advance"))
    }

    async fn get_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<Option<ScheduleRecord>, BackendError> {
        let (tenant, workflow, id) = (tenant.to_owned(), workflow.to_owned(), id.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM schedules WHERE tenant = ?1 AND workflow = ?2 AND id = ?3"
                ))?
                .query_row(params![tenant, workflow, id], schedule)
                .optional()
            })
            .await
            .map_err(|e| e.into_backend("schedules.get"))
    }

    async fn list_schedules(
        &self,
        tenant: &str,
        workflow: &str,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        let (tenant, workflow) = (tenant.to_owned(), workflow.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM schedules WHERE tenant = ?1 AND workflow = ?2 ORDER BY id"
                ))?
                .query_map(params![tenant, workflow], schedule)?
                .collect()
            })
            .await
            .map_err(|e| e.into_backend("schedules.list"))
    }

    async fn list_tenant_schedules(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        let tenant = tenant.to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM schedules WHERE tenant = ?1 \
                     ORDER BY workflow, id LIMIT ?2"
                ))?
                .query_map(params![tenant, limit as i64], schedule)?
                .collect()
            })
            .await
            .map_err(|e| e.into_backend("schedules.list_tenant"))
    }

    async fn delete_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<bool, BackendError> {
        let (tenant, workflow, id) = (tenant.to_owned(), workflow.to_owned(), id.to_owned());
        self.db
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "DELETE FROM schedules WHERE tenant = ?1 AND workflow = ?2 AND id = ?3",
                    )?
                    .execute(params![tenant, workflow, id])?;
                Ok(n > 0)
            })
            .await
            .map_err(|e| e.into_backend("schedules.delete"))
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND next_due IS NOT NULL \
                     AND next_due <= ?1 ORDER BY next_due LIMIT ?2"
                ))?
                .query_map(params![micros(now), limit as i64], schedule)?
                .collect()
            })
            .await
            .map_err(|e| e.into_backend("schedules.due"))
    }
}
