//! The [`Backfills`] port over the SQLite file: the `backfills` table.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use flowgate_core::BackendError;
use flowgate_core::ports::{BackfillRecord, BackfillState, Backfills};

use crate::Embedded;
use crate::codec::{micros, to_json};

fn state(s: BackfillState) -> &'static str {
    match s {
        BackfillState::Running => "running",
        BackfillState::Paused => "paused",
        BackfillState::Cancelled => "cancelled",
        BackfillState::Done => "done",
    }
}

fn record(text: String) -> rusqlite::Result<BackfillRecord> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

#[async_trait]
impl Backfills for Embedded {
    async fn put_backfill(
        &self,
        b: &BackfillRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        let b = b.clone();
        self.db
            .write(move |conn| {
                let json = to_json(&b)?;
                let changed = match expected {
                    None => conn
                        .prepare_cached(
                            "INSERT INTO backfills (tenant, id, state, version, created_at, record) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant, id) DO NOTHING",
                        )?
                        .execute(params![
                            b.tenant,
                            b.id,
                            state(b.state),
                            b.version as i64,
                            micros(b.created_at),
                            json
                        ])?,
                    Some(v) => conn
                        .prepare_cached(
                            "UPDATE backfills SET state = ?3, version = ?4, record = ?5 \
                             WHERE tenant = ?1 AND id = ?2 AND version = ?6",
                        )?
                        .execute(params![b.tenant, b.id, state(b.state), b.version as i64, json, v as i64])?,
                };
                Ok(changed == 1)
            })
            .await
            .map_err(|e| e.into_backend("backfills.put"))
    }

    async fn get_backfill(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<BackfillRecord>, BackendError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.db
            .read(move |conn| {
                let text: Option<String> = conn
                    .prepare_cached("SELECT record FROM backfills WHERE tenant = ?1 AND id = ?2")?
                    .query_row(params![tenant, id], |r| r.get(0))
                    .optional()?;
                text.map(record).transpose()
            })
            .await
            .map_err(|e| e.into_backend("backfills.get"))
    }

    async fn running_backfills(&self, limit: usize) -> Result<Vec<BackfillRecord>, BackendError> {
        self.db
            .read(move |conn| {
                let texts: Vec<String> = conn
                    .prepare_cached(
                        "SELECT record FROM backfills WHERE state = 'running' \
                         ORDER BY created_at LIMIT ?1",
                    )?
                    .query_map(params![limit as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                texts.into_iter().map(record).collect()
            })
            .await
            .map_err(|e| e.into_backend("backfills.running"))
    }

    async fn list_backfills(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<BackfillRecord>, BackendError> {
        let tenant = tenant.to_owned();
        self.db
            .read(move |conn| {
                let texts: Vec<String> = conn
                    .prepare_cached(
                        "SELECT record FROM backfills WHERE tenant = ?1 \
                         ORDER BY created_at DESC, id DESC LIMIT ?2",
                    )?
                    .query_map(params![tenant, limit as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                texts.into_iter().map(record).collect()
            })
            .await
            .map_err(|e| e.into_backend("backfills.list"))
    }
}
